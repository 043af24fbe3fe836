//! Adaptations: a replayed week in which volatility spikes on Wednesday, and the daily
//! risk check and position sizing change with it.
//!
//! ```text
//! cargo run --example volatility_adaptation
//! ```
//!
//! The workflow (`examples/workflows/volatility-adaptation.json`) runs every weekday at
//! 14:00 UTC (a `SCHEDULED` trigger): a market analysis, a risk check with a 2 s timeout
//! and 2 attempts, and a position sizing capped at `maxPositionSize` 0.05. Its
//! `adaptations` change the last two steps as each is about to start:
//!
//! - `high-volatility`, when `volatility.level > 0.5`: the risk check gets twice its
//!   timeout and `volatilityAdjustment` 0.5; positions are capped at 0.02;
//! - `extreme-volatility`, when `volatility.level > 0.8`: the risk check may try 4 times;
//!   positions are capped at 0.01 (listed later, it wins over `high-volatility`).
//!
//! The week is `examples/timelines/volatility-adaptation.json`, played as `tradeflow
//! replay` plays it: a [`VirtualClock`] at the timeline's start, the workflow's
//! [`Triggers`], and [`Timeline::play`], which sets each context change at its instant
//! and fires the triggers when they are due; a run gets the context of the moment it
//! fired, and its adaptations read it. Volatility is 0.22 on Monday, 0.31 on Tuesday (below
//! both thresholds), 0.64 from Wednesday morning, 0.87 on Thursday and 0.58 on Friday. The
//! agents are the scripted ones of `examples/agents/volatility-adaptation.json`, whose
//! outputs echo the parameters they were called with.
//!
//! For each run the example prints the volatility it fired in, the risk check's
//! effective timeout and attempts — what [`tradeflow::adapt::overrides`] makes of the
//! adaptations the report lists, which is what the engine applied — the
//! `volatilityAdjustment` and `maxPositionSize` the agents were called with, and the
//! adaptations that applied. A week of virtual time takes a few milliseconds, and the
//! output is the same on every machine.
//!
//! Exits with 0 when every run completes; 1 otherwise.

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tradeflow::clock::VirtualClock;
use tradeflow::engine::{Engine, RunIds, RunReport, RunStatus};
use tradeflow::plan::{Adaptation, ExecutionPlan};
use tradeflow::scheduler::{Timeline, Triggers};
use tradeflow::sim::{AgentsFile, scripted_agents};

const WORKFLOW: &str = include_str!("workflows/volatility-adaptation.json");
const AGENTS: &str = include_str!("agents/volatility-adaptation.json");
const TIMELINE: &str = include_str!("timelines/volatility-adaptation.json");

/// The host context name the adaptations read.
const VOLATILITY: &str = "volatility.level";
const RISK: &str = "risk-assessment";
const SIZING: &str = "position-sizing";

fn main() -> ExitCode {
    match replay_week() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Replays the week and prints each run; whether every run completed.
fn replay_week() -> Result<bool, Box<dyn Error>> {
    let plan = ExecutionPlan::from_json(WORKFLOW)?;
    let agents = AgentsFile::from_json(AGENTS)?;
    let timeline = Timeline::from_json(TIMELINE)?;

    let clock = VirtualClock::starting_at(timeline.start);
    let engine = Engine::builder()
        .clock(clock.clone())
        .seed(7)
        .run_ids(RunIds::Numbered)
        .build();
    for agent in scripted_agents(&agents, Arc::new(clock.clone())) {
        engine.register_agent(agent)?;
    }
    let workflow = engine.add_plan(plan);
    let triggers = Triggers::new(&engine, &workflow.id)?;
    let replayed = clock.block_on(timeline.play(&triggers));
    let plan = triggers.plan();

    println!(
        "{:<16} {:>10}  {:<9}  {:>12} {:>8}  {:>9} {:>7}  adaptations",
        "fired", "volatility", "run", "risk timeout", "attempts", "vol. adj.", "max pos"
    );
    let mut all_completed = true;
    for run in &replayed.runs {
        let report = &run.report;
        all_completed &= report.status == RunStatus::Completed;
        let adaptations = applied(report);
        let risk = plan
            .index_of(RISK)
            .and_then(|index| plan.step(index))
            .ok_or("the workflow has no risk-assessment step")?;
        let rules: Vec<&Adaptation> = plan
            .adaptations()
            .iter()
            .map(|rule| &**rule)
            .filter(|rule| step_adaptations(report, RISK).contains(&rule.id()))
            .collect();
        let overrides = tradeflow::adapt::overrides(&rules, risk.id(), risk.timeout());
        let timeout = overrides.timeout.or(risk.timeout()).map_or_else(
            || "none".to_owned(),
            |timeout: Duration| format!("{} ms", timeout.as_millis()),
        );
        let attempts = overrides
            .retry
            .as_ref()
            .unwrap_or(risk.retry())
            .max_attempts;
        println!(
            "{:<16} {:>10}  {:<9}  {:>12} {:>8}  {:>9} {:>7}  {}",
            run.fired_at.format("%a %m-%d %H:%M"),
            volatility_at(&timeline, run.fired_at),
            format!("{} {}", report.run_id, short(report.status)),
            timeout,
            attempts,
            called_with(report, RISK, "volatilityAdjustment"),
            called_with(report, SIZING, "maxPositionSize"),
            if adaptations.is_empty() {
                "-".to_owned()
            } else {
                adaptations.join(", ")
            },
        );
    }
    Ok(all_completed)
}

/// The adaptations that applied to some step of `report`, each once, in the order they
/// first did.
fn applied(report: &RunReport) -> Vec<&str> {
    let mut ids: Vec<&str> = Vec::new();
    for (_, step) in &report.steps {
        for id in &step.adaptations {
            if !ids.contains(&id.as_str()) {
                ids.push(id);
            }
        }
    }
    ids
}

/// The adaptations that applied to step `id` of `report`.
fn step_adaptations<'r>(report: &'r RunReport, id: &str) -> Vec<&'r str> {
    report
        .steps
        .iter()
        .filter(|(step, _)| step.as_str() == id)
        .flat_map(|(_, step)| step.adaptations.iter().map(String::as_str))
        .collect()
}

/// Parameter `name` that step `id`'s agent was called with: the scripted agents echo
/// it in their output.
fn called_with(report: &RunReport, id: &str, name: &str) -> String {
    report
        .steps
        .iter()
        .find(|(step, _)| step.as_str() == id)
        .and_then(|(_, step)| step.output.as_ref())
        .and_then(|output| output.get(name))
        .map_or_else(|| "-".to_owned(), Value::to_string)
}

/// The volatility the timeline had set at `at`: its last change at or before `at`, or
/// its starting context.
fn volatility_at(timeline: &Timeline, at: DateTime<Utc>) -> String {
    timeline
        .changes
        .iter()
        .filter(|change| change.at <= at)
        .filter_map(|change| change.set.get(VOLATILITY))
        .next_back()
        .or_else(|| timeline.context.get(VOLATILITY))
        .map_or_else(|| "-".to_owned(), Value::to_string)
}

/// A run's status, short enough for the table.
fn short(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Completed => "ok",
        RunStatus::Failed => "FAILED",
        _ => "NOT DONE",
    }
}
