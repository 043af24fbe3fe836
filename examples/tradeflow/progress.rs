//! Progress on stderr: one line per run event, stamped with the run's clock, and the
//! summary line of each run.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use tradeflow::agent::RunId;
use tradeflow::definition::StepId;
use tradeflow::engine::{EngineError, RunEvent, RunReport};
use tradeflow::plan::{ExecutionPlan, StepKind};
use tradeflow::sim::{AgentsFile, ApprovalObserver};

use crate::NOT_COMPLETED;

/// Formats run events as progress lines on stderr, and remembers which steps wait for
/// an answer.
#[derive(Debug)]
pub(crate) struct Progress {
    start: DateTime<Utc>,
    /// Whether times are virtual (said in the summary).
    virtual_time: bool,
    /// The width of the step column: the longest step id.
    width: usize,
    /// The `parallel` steps of each run shown: their completion names no single agent.
    parallel: BTreeMap<RunId, BTreeSet<StepId>>,
    /// Whether lines name their run (when there are several).
    name_runs: bool,
    /// Steps with a scripted answer.
    scripted: BTreeSet<String>,
    /// Steps waiting for an answer now.
    waiting: RefCell<BTreeSet<(RunId, StepId)>>,
}

/// What a progress line says: the step, when, what happened and the details.
type Parts<'e> = (&'e StepId, &'e DateTime<Utc>, &'static str, String);

impl Progress {
    /// Progress of `runs` (each with its plan), with times of day from `start`'s day on.
    pub(crate) fn new<'p>(
        start: DateTime<Utc>,
        virtual_time: bool,
        agents: &AgentsFile,
        runs: impl IntoIterator<Item = (&'p RunId, &'p ExecutionPlan)>,
    ) -> Self {
        let mut width = 0;
        let parallel: BTreeMap<RunId, BTreeSet<StepId>> = runs
            .into_iter()
            .map(|(run, plan)| {
                for step in plan.steps() {
                    width = width.max(step.id().as_str().len());
                }
                let parallel = plan
                    .steps()
                    .iter()
                    .filter(|step| matches!(step.kind(), StepKind::Parallel { .. }))
                    .map(|step| step.id().clone())
                    .collect();
                (run.clone(), parallel)
            })
            .collect();
        Self {
            start,
            virtual_time,
            width,
            name_runs: parallel.len() > 1,
            parallel,
            scripted: agents.approvals.keys().cloned().collect(),
            waiting: RefCell::new(BTreeSet::new()),
        }
    }

    /// The time of the day, with the date once the run is past its first day.
    pub(crate) fn time(&self, at: DateTime<Utc>) -> String {
        if at.date_naive() == self.start.date_naive() {
            at.format("%H:%M:%S%.3f").to_string()
        } else {
            at.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
        }
    }

    /// The line of `event`, if it has one.
    fn line(&self, event: &RunEvent) -> Option<String> {
        let run = event.run_id();
        let (step, at, verb, detail) = match event {
            // The first and last lines are printed by the verb, which knows the seed
            // and the report.
            RunEvent::RunStarted { .. } | RunEvent::RunEnded { .. } => return None,
            RunEvent::StepStarted { .. } => started(event)?,
            RunEvent::StepRetrying { .. } => retrying(event)?,
            RunEvent::StepCompleted { .. } => self.completed(event)?,
            RunEvent::StepFailed {
                step_id,
                kind,
                message,
                at,
                ..
            } => (step_id, at, "failed", format!("{kind}: {message}")),
            RunEvent::StepSkipped {
                step_id,
                reason,
                at,
                ..
            } => (step_id, at, "skipped", reason.clone()),
            RunEvent::StepCancelled { step_id, at, .. } => {
                self.stops_waiting(run, step_id);
                (step_id, at, "cancelled", String::new())
            }
            RunEvent::StepWaiting { step_id, at, .. } => self.waiting(run, step_id, at),
            RunEvent::StepAnswered { .. } => self.answered(event)?,
            RunEvent::StepAdapted {
                step_id, ids, at, ..
            } => (step_id, at, "adapted", ids.join(", ")),
            RunEvent::StepDecided {
                step_id,
                option,
                context_key,
                policy,
                at,
                ..
            } => {
                let context = if context_key.is_empty() {
                    String::new()
                } else {
                    format!(", context {context_key}")
                };
                (
                    step_id,
                    at,
                    "decided",
                    format!("{option} ({}{context})", policy.as_str()),
                )
            }
            RunEvent::CircuitOpened { .. }
            | RunEvent::CircuitHalfOpen { .. }
            | RunEvent::CircuitClosed { .. } => self.circuit(event)?,
            // Events added to the engine later: shown as they serialize.
            other => return Some(serde_json::to_string(other).unwrap_or_default()),
        };
        let run = if self.name_runs {
            format!("{run}  ")
        } else {
            String::new()
        };
        // `StepId`'s `Display` ignores widths: pad the text.
        let line = format!(
            "{}  {run}{:<width$}  {verb:<9} {detail}",
            self.time(*at),
            step.as_str(),
            width = self.width
        );
        Some(line.trim_end().to_owned())
    }

    /// The line of a circuit breaker's change: the agent, and what changed.
    fn circuit<'e>(&self, event: &'e RunEvent) -> Option<Parts<'e>> {
        let (step_id, at, detail) = match event {
            RunEvent::CircuitOpened {
                step_id,
                agent_id,
                failures,
                until,
                at,
                ..
            } => {
                let until = self.time(*until);
                let detail =
                    format!("{agent_id} open until {until} ({failures} failures in a row)");
                (step_id, at, detail)
            }
            RunEvent::CircuitHalfOpen {
                step_id,
                agent_id,
                at,
                ..
            } => (
                step_id,
                at,
                format!("{agent_id} half open: this call probes it"),
            ),
            RunEvent::CircuitClosed {
                step_id,
                agent_id,
                at,
                ..
            } => (step_id, at, format!("{agent_id} closed: it answered again")),
            _ => return None,
        };
        Some((step_id, at, "circuit", detail))
    }

    /// The line of a `StepCompleted`: its agent (none for a `parallel` step) and how
    /// many calls it took.
    fn completed<'e>(&self, event: &'e RunEvent) -> Option<Parts<'e>> {
        let RunEvent::StepCompleted {
            run_id,
            step_id,
            agent_id,
            attempts,
            at,
            ..
        } = event
        else {
            return None;
        };
        let calls = match attempts {
            0 => String::new(),
            1 => "1 call".to_owned(),
            n => format!("{n} calls"),
        };
        let parallel = self
            .parallel
            .get(run_id)
            .is_some_and(|steps| steps.contains(step_id));
        let detail = match agent_id {
            Some(agent) if !parallel => format!("{agent} ({calls})"),
            _ if calls.is_empty() => String::new(),
            _ => format!("({calls})"),
        };
        Some((step_id, at, "completed", detail))
    }

    /// A step starts waiting for an answer: remembered, and its line.
    fn waiting<'e>(&self, run: &RunId, step: &'e StepId, at: &'e DateTime<Utc>) -> Parts<'e> {
        self.waiting
            .borrow_mut()
            .insert((run.clone(), step.clone()));
        let detail = if self.scripted.contains(step.as_str()) {
            "for approval"
        } else {
            "for approval (no scripted answer: waits for its timeout)"
        };
        (step, at, "waiting", detail.to_owned())
    }

    /// `step` of `run` waits for an answer no more.
    fn stops_waiting(&self, run: &RunId, step: &StepId) {
        self.waiting
            .borrow_mut()
            .remove(&(run.clone(), step.clone()));
    }

    /// The line of a `StepAnswered`; the step waits no more.
    fn answered<'e>(&self, event: &'e RunEvent) -> Option<Parts<'e>> {
        let RunEvent::StepAnswered {
            run_id,
            step_id,
            approved,
            by,
            comment,
            at,
            ..
        } = event
        else {
            return None;
        };
        self.stops_waiting(run_id, step_id);
        let verb = if *approved { "approved" } else { "rejected" };
        let comment = comment
            .as_deref()
            .map(|comment| format!(": {comment}"))
            .unwrap_or_default();
        Some((step_id, at, verb, format!("by {by}{comment}")))
    }

    /// Says that `run` is stuck at `at`, its waiting steps named, `hint` after; returns
    /// [`NOT_COMPLETED`].
    pub(crate) fn stuck(&self, run: &RunId, at: DateTime<Utc>, hint: &str) -> u8 {
        eprintln!(
            "{}  run {run} is stuck: {} waits for an approval that has no scripted answer \
             and no timeout{hint}",
            self.time(at),
            self.unanswered(run),
        );
        NOT_COMPLETED
    }

    /// The steps of `run` waiting for an answer, for the message of a stalled run.
    fn unanswered(&self, run: &RunId) -> String {
        let waiting = self.waiting.borrow();
        let steps: Vec<String> = waiting
            .iter()
            .filter(|(waiting_run, _)| waiting_run == run)
            .map(|(_, step)| format!("step `{step}`"))
            .collect();
        if steps.is_empty() {
            return "a step".to_owned();
        }
        steps.join(", ")
    }

    /// The last progress line of a run: how it ended, how long it took, and its error.
    pub(crate) fn summary(&self, report: &RunReport) -> String {
        let elapsed = (report.ended_at - report.started_at).num_milliseconds();
        let error = report
            .error
            .as_ref()
            .map(|error| {
                let step = error
                    .step_id
                    .as_ref()
                    .map(|step| format!("{step}: "))
                    .unwrap_or_default();
                format!(": {step}{}: {}", error.kind, error.message)
            })
            .unwrap_or_default();
        // The adaptations that applied to some step, each once, in the order they first
        // did.
        let mut adapted: Vec<&str> = Vec::new();
        for id in report.steps.iter().flat_map(|(_, step)| &step.adaptations) {
            if !adapted.contains(&id.as_str()) {
                adapted.push(id);
            }
        }
        let adapted = if adapted.is_empty() {
            String::new()
        } else {
            format!(", adapted: {}", adapted.join(", "))
        };
        format!(
            "{}  run {} {} in {}.{:02} s{}{adapted}{error}",
            self.time(report.ended_at),
            report.run_id,
            report.status,
            elapsed / 1000,
            elapsed % 1000 / 10,
            if self.virtual_time { " (virtual)" } else { "" },
        )
    }
}

/// Prints each event's line, and the scripted answers the engine refused.
impl ApprovalObserver for Progress {
    fn event(&self, event: &RunEvent) {
        if let Some(line) = self.line(event) {
            eprintln!("{line}");
        }
    }

    fn refused(&self, _run: &RunId, step: &StepId, at: DateTime<Utc>, error: &EngineError) {
        eprintln!(
            "{}  {step}: scripted answer refused: {error}",
            self.time(at)
        );
    }
}

/// The line of a `StepStarted`: the agent, item, iteration, attempt and score.
fn started(event: &RunEvent) -> Option<Parts<'_>> {
    let RunEvent::StepStarted {
        step_id,
        item,
        iteration,
        attempt,
        agent_id,
        score,
        at,
        ..
    } = event
    else {
        return None;
    };
    let item = item
        .map(|item| format!("item {item}, "))
        .unwrap_or_default();
    let iteration = iteration
        .map(|n| format!("iteration {n}, "))
        .unwrap_or_default();
    let detail = format!(
        "{agent_id} ({item}{iteration}attempt {attempt}, score {:.2})",
        score.total
    );
    Some((step_id, at, "started", detail))
}

/// The line of a `StepRetrying`: the item, the delay and why.
fn retrying(event: &RunEvent) -> Option<Parts<'_>> {
    let RunEvent::StepRetrying {
        step_id,
        item,
        kind,
        message,
        delay_ms,
        at,
        ..
    } = event
    else {
        return None;
    };
    let item = item.map(|item| format!("item {item} ")).unwrap_or_default();
    let detail = format!("{item}in {delay_ms} ms: {kind} {message}");
    Some((step_id, at, "retrying", detail))
}
