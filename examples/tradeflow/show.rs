//! `show`: one run of a store, step by step, as text, JSON or a Mermaid gantt chart.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use tradeflow::agent::RunId;
use tradeflow::definition::StepId;
use tradeflow::plan::ExecutionPlan;
use tradeflow::store::{RunState, RunStore, StepState};

use crate::runs::duration;
use crate::{Problems, cli, files, store};

/// The line of `show` in the usage.
pub(crate) const USAGE: &str =
    "tradeflow show RUN_ID --store sqlite:PATH [--format text|json|mermaid]";

/// The arguments of `show` as clap reads them (its help is in [`crate::cli::Verb`]).
#[derive(Debug, clap::Args)]
#[command(override_usage = USAGE)]
pub(crate) struct Args {
    /// The run (an id `runs` lists).
    #[arg(value_name = "RUN_ID")]
    run: Option<String>,
    /// Too many: said as `unexpected argument`.
    #[arg(hide = true)]
    unexpected: Vec<String>,
    /// The store of the run, sqlite:PATH (required).
    #[arg(long, value_name = "sqlite:PATH", allow_hyphen_values = true)]
    store: Option<String>,
    /// `text` (the default), `json` or `mermaid` (a gantt chart of the steps).
    #[arg(long, value_name = "text|json|mermaid", allow_hyphen_values = true)]
    format: Option<String>,
}

/// How `show` prints the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Json,
    Mermaid,
}

/// The arguments of `show`, checked.
#[derive(Debug)]
struct Show {
    run: RunId,
    /// The store's file (the `PATH` of `sqlite:PATH`).
    store: String,
    format: Format,
}

impl Args {
    fn check(self) -> Result<Show, Problems> {
        let run = match (self.run, self.unexpected.first()) {
            (None, _) => return Err(cli::usage("show needs a RUN_ID")),
            (Some(_), Some(extra)) => return Err(cli::unexpected(extra)),
            (Some(run), None) => RunId::from(run),
        };
        let store = cli::store("show", self.store.as_deref())?;
        let format = match self.format.as_deref() {
            None | Some("text") => Format::Text,
            Some("json") => Format::Json,
            Some("mermaid") => Format::Mermaid,
            Some(other) => {
                return Err(cli::usage(&format!(
                    "--format `{other}`: expected text, json or mermaid"
                )));
            }
        };
        Ok(Show { run, store, format })
    }
}

/// `show`: prints the run as asked and returns 0; an unknown run is a problem (exit 2).
pub(crate) fn show(args: Args) -> Result<u8, Problems> {
    let args = args.check()?;
    let store = store::inspect(&args.store, "show")?;
    let entries = store
        .load(&args.run)
        .map_err(|error| store::problem(&args.store, &error))?;
    if entries.is_empty() {
        return Err(vec![format!(
            "{}: no run `{}` in the store (`tradeflow runs` lists them)",
            args.store, args.run
        )]);
    }
    let state = RunState::fold(&entries).map_err(|error| {
        vec![format!(
            "{}: run `{}`: the journal does not describe a run: {}",
            args.store,
            args.run,
            files::chain(&error)
        )]
    })?;
    let order = step_order(&store, &state, &args.store);
    match args.format {
        Format::Text => print!("{}", text(&state, &order)),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&state, &order)).unwrap_or_default()
        ),
        Format::Mermaid => print!("{}", state.gantt(&order)),
    }
    Ok(0)
}

/// The run's steps in its definition's order (kept in the store), those the journal
/// does not mention included; without the definition (said on stderr), the steps the
/// journal mentions, in the order they began.
fn step_order(store: &dyn RunStore, state: &RunState, store_path: &str) -> Vec<StepId> {
    let plan = store
        .definition(&state.workflow_id, &state.version)
        .map_err(|error| files::chain(&error))
        .and_then(|text| text.ok_or_else(|| "the store does not keep it".to_owned()))
        .and_then(|text| ExecutionPlan::from_json(&text).map_err(|error| error.to_string()));
    match plan {
        Ok(plan) => plan.steps().iter().map(|step| step.id().clone()).collect(),
        Err(why) => {
            eprintln!(
                "{store_path}: the definition of workflow `{}` version `{}` cannot be read \
                 ({why}): showing the steps the journal mentions",
                state.workflow_id, state.version
            );
            let mut steps: Vec<(&StepId, &StepState)> = state.steps.iter().collect();
            steps.sort_by_key(|(id, step)| (step.started_at.or(step.ended_at), *id));
            steps.into_iter().map(|(id, _)| id.clone()).collect()
        }
    }
}

/// A time as `show` prints it: RFC 3339, UTC, milliseconds.
fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Milliseconds from `from` to `to`.
fn took(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    (to - from).num_milliseconds()
}

/// The run as text: a header, then one block per step.
fn text(state: &RunState, order: &[StepId]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "run {} of {} (version {}): {}",
        state.run_id, state.workflow_id, state.version, state.status
    );
    let _ = write!(out, "  started {}", time(state.started_at));
    match state.ended_at {
        Some(ended) => {
            let _ = writeln!(
                out,
                ", ended {}, took {}",
                time(ended),
                duration(took(state.started_at, ended))
            );
        }
        None => out.push_str(", not ended\n"),
    }
    if let Some(trigger) = &state.trigger {
        let _ = writeln!(out, "  trigger: {trigger}");
    }
    if let Some(by) = &state.cancelled_by {
        let _ = writeln!(out, "  cancelled by {by}");
    }
    if let Some(error) = &state.error {
        let _ = writeln!(out, "  error: {error}");
    }
    let pending = StepState::default();
    for id in order {
        out.push('\n');
        step_text(&mut out, state, id, state.steps.get(id).unwrap_or(&pending));
    }
    out
}

/// One step's block of [`text`].
fn step_text(out: &mut String, state: &RunState, id: &StepId, step: &StepState) {
    let _ = writeln!(out, "{id}: {}", step.status);
    let agents = match (&step.agent_ids, &step.agent_id) {
        (Some(ids), _) => {
            let ids: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
            format!("agents {}, ", ids.join(", "))
        }
        (None, Some(agent)) => format!("agent {agent}, "),
        (None, None) => String::new(),
    };
    if step.attempts > 0 || !agents.is_empty() {
        let calls = if step.attempts == 1 { "call" } else { "calls" };
        let _ = writeln!(out, "  {agents}{} {calls}", step.attempts);
    }
    match (step.started_at, step.ended_at) {
        (Some(start), Some(end)) => {
            let _ = writeln!(
                out,
                "  {} to {} ({})",
                time(start),
                time(end),
                duration(took(start, end))
            );
        }
        (Some(start), None) => {
            let _ = writeln!(out, "  began {}, not ended", time(start));
        }
        (None, Some(end)) => {
            let _ = writeln!(out, "  ended {}", time(end));
        }
        (None, None) => {}
    }
    if let Some(reason) = &step.reason {
        let _ = writeln!(out, "  skipped: {reason}");
    }
    if let Some(by) = &step.approved_by {
        let _ = writeln!(out, "  approved by {by}");
    }
    if let Some(error) = &step.error {
        let _ = writeln!(out, "  error: {error}");
    }
    for recovery in &step.recoveries {
        let _ = writeln!(
            out,
            "  recovered by {} (score {}) from {}: {}",
            json_name(&recovery.strategy),
            recovery.score,
            recovery.kind,
            recovery.message
        );
    }
    if let Some(decision) = state.decisions.get(id) {
        let reward = decision
            .reward
            .map(|reward| format!(", reward {reward}"))
            .or_else(|| {
                decision
                    .reward_missing
                    .as_ref()
                    .map(|why| format!(", no reward ({why})"))
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  decided {} (policy {}, context `{}`){reward}",
            decision.option,
            json_name(&decision.policy),
            decision.context_key
        );
    }
    if let Some(ids) = state.adaptations.get(id).filter(|ids| !ids.is_empty()) {
        let _ = writeln!(out, "  adapted: {}", ids.join(", "));
    }
    for call in &step.in_flight {
        let item = call
            .item
            .map(|item| format!(" item {item}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  in flight:{item} attempt {} on {}, key {}, since {}",
            call.attempt,
            call.agent_id,
            call.idempotency_key,
            time(call.started_at)
        );
    }
}

/// The name serde gives `value` (`RETRY`, `THOMPSON`).
fn json_name(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => name,
        other => format!("{other:?}"),
    }
}

/// The run as JSON: its summary, then `steps`, an array in `order`.
fn to_json(state: &RunState, order: &[StepId]) -> Value {
    let pending = StepState::default();
    let steps: Vec<Value> = order
        .iter()
        .map(|id| step_json(state, id, state.steps.get(id).unwrap_or(&pending)))
        .collect();
    json!({
        "runId": state.run_id,
        "workflowId": state.workflow_id,
        "version": state.version,
        "status": state.status,
        "trigger": state.trigger,
        "cancelledBy": state.cancelled_by,
        "startedAt": time(state.started_at),
        "endedAt": state.ended_at.map(time),
        "durationMs": state.ended_at.map(|ended| took(state.started_at, ended)),
        "error": state.error,
        "steps": steps,
    })
}

/// One step of [`to_json`].
fn step_json(state: &RunState, id: &StepId, step: &StepState) -> Value {
    let decision = state.decisions.get(id).map(|decision| {
        json!({
            "option": decision.option,
            "contextKey": decision.context_key,
            "policy": decision.policy,
            "priorScores": decision.prior_scores,
            "reward": decision.reward,
            "rewardMissing": decision.reward_missing,
        })
    });
    let in_flight: Vec<Value> = step
        .in_flight
        .iter()
        .map(|call| {
            json!({
                "item": call.item,
                "iteration": call.iteration,
                "attempt": call.attempt,
                "agentId": call.agent_id,
                "idempotencyKey": call.idempotency_key,
                "startedAt": time(call.started_at),
            })
        })
        .collect();
    json!({
        "stepId": id,
        "status": step.status,
        "agentId": step.agent_id,
        "agentIds": step.agent_ids,
        "attempts": step.attempts,
        "startedAt": step.started_at.map(time),
        "endedAt": step.ended_at.map(time),
        "durationMs": step.started_at.zip(step.ended_at).map(|(start, end)| took(start, end)),
        "reason": step.reason,
        "approvedBy": step.approved_by,
        "error": step.error,
        "recoveries": step.recoveries,
        "decision": decision,
        "adaptations": state.adaptations.get(id).cloned().unwrap_or_default(),
        "inFlight": in_flight,
        "output": step.output,
    })
}
