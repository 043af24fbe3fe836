//! The kill switch: a replayed trading day whose drawdown crosses 5 % at noon.
//!
//! ```text
//! cargo run --example kill_switch
//! ```
//!
//! The workflow `algo` (tagged `live`) places an order every hour (a `SCHEDULED`
//! trigger); its order step is marked `"sideEffects": true`. The engine has one kill
//! switch rule, `drawdown`: when `pnl.drawdown > 0.05`, every `live` workflow is halted
//! and `flatten-positions` runs once. The day is a timeline whose `pnl.drawdown` metric
//! is 0.01 at 10:30, 0.06 at 12:00 (the rule trips) and 0.08 at 14:00 (it is already
//! tripped: nothing more happens). The morning's runs complete; from noon on the
//! firings are refused with `HALTED`; the flatten run closes the positions once.
//!
//! Everything runs on a [`VirtualClock`]: a day takes a few milliseconds, and the output
//! is the same on every machine. Exits with 0 when the day went as described; 1 otherwise.

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;

use tradeflow::clock::VirtualClock;
use tradeflow::engine::{Engine, RunIds, RunStatus};
use tradeflow::plan::ExecutionPlan;
use tradeflow::safety::KillSwitchRule;
use tradeflow::scheduler::{Timeline, Triggers};
use tradeflow::sim::{AgentsFile, scripted_agents};

const ALGO: &str = r#"{"id": "algo", "tags": ["live"],
  "steps": [{"id": "order", "type": "task", "agentCriteria": {"type": "TRADING_EXECUTION"},
             "task": {"type": "ORDER_EXECUTION"}, "sideEffects": true}],
  "triggers": [{"type": "SCHEDULED", "schedule": "0 * * * *"}]}"#;

const FLATTEN: &str = r#"{"id": "flatten-positions", "tags": ["live"],
  "steps": [{"id": "close-all", "type": "task", "agentCriteria": {"type": "TRADING_EXECUTION"},
             "task": {"type": "CLOSE_POSITIONS"}, "sideEffects": true}]}"#;

const AGENTS: &str = r#"{"agents": [{"id": "exec-1", "type": "TRADING_EXECUTION",
  "tasks": {"ORDER_EXECUTION": {"output": {"filled": true}, "delayMs": 40},
            "CLOSE_POSITIONS": {"output": {"closed": 3}, "delayMs": 120}}}]}"#;

const DAY: &str = r#"{"start": "2026-11-23T09:00:00Z", "end": "2026-11-23T16:30:00Z",
  "metrics": [
    {"at": "2026-11-23T10:30:00Z", "name": "pnl.drawdown", "value": 0.01},
    {"at": "2026-11-23T12:00:00Z", "name": "pnl.drawdown", "value": 0.06},
    {"at": "2026-11-23T14:00:00Z", "name": "pnl.drawdown", "value": 0.08}
  ]}"#;

fn main() -> ExitCode {
    match replay_day() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("kill_switch: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Replays the day and prints what ran and what was refused; whether it went as
/// described.
fn replay_day() -> Result<bool, Box<dyn Error>> {
    let timeline = Timeline::from_json(DAY)?;
    let clock = VirtualClock::starting_at(timeline.start);
    let rule = KillSwitchRule::new("drawdown", "pnl.drawdown > 0.05")
        .scope_tags(["live"])
        .flatten("flatten-positions");
    let engine = Engine::builder()
        .clock(clock.clone())
        .run_ids(RunIds::Numbered)
        .kill_switch(&[rule])?
        .build();
    for agent in scripted_agents(&AgentsFile::from_json(AGENTS)?, Arc::new(clock.clone())) {
        engine.register_agent(agent)?;
    }
    engine.add_plan(ExecutionPlan::from_json(FLATTEN)?);
    let algo = engine.add_plan(ExecutionPlan::from_json(ALGO)?);
    let triggers = Triggers::new(&engine, &algo.id)?;
    let day = clock.block_on(timeline.play(&triggers));

    for run in &day.runs {
        println!(
            "{}  {:<26} {:?}",
            run.fired_at.format("%H:%M"),
            run.trigger,
            run.report.status
        );
    }
    for refused in &day.refused {
        println!(
            "{}  {:<26} refused {}: {}",
            refused.fired_at.format("%H:%M"),
            refused.trigger,
            refused.refused,
            refused.reason
        );
    }
    let flattened = day
        .runs
        .iter()
        .filter(|run| run.trigger.starts_with("killSwitch"))
        .count();
    let morning = day
        .runs
        .iter()
        .filter(|run| run.report.status == RunStatus::Completed)
        .count();
    // 09:00, 10:00, 11:00 and the flatten run complete; 12:00 to 16:00 are refused.
    Ok(flattened == 1 && morning == 4 && day.refused.len() == 5)
}
