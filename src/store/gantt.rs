//! A run drawn as a Mermaid `gantt` chart: its steps on the run's clock
//! ([`RunState::gantt`], which says what each line shows).
//!
//! # Cost
//! O(steps × log steps).

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::{RunState, StepState};
use crate::definition::StepId;
use crate::run::StepStatus;

impl RunState {
    /// The run as a Mermaid `gantt` chart of its steps.
    ///
    /// One line per step that began or ended, in the order the steps began (ties in the
    /// definition's order, then by step id), from [`StepState::started_at`] to
    /// [`StepState::ended_at`]; the chart's title names the run, its workflow, status and
    /// duration. Each line's tag says how the step ended, so that a failure stands out at
    /// a glance:
    ///
    /// | step | drawn as |
    /// |---|---|
    /// | completed | `done` bar |
    /// | failed | `crit` bar (red) |
    /// | cancelled | `crit` bar, labelled `cancelled` |
    /// | running or waiting (the run has not ended) | `active` bar up to the latest time the journal knows |
    /// | skipped (after calls or without any) | `milestone` (a diamond) at the time it was skipped, labelled `skipped` |
    /// | ended without beginning (a condition) | `done` milestone |
    ///
    /// A line's label is the step id, then what else a reader needs: the number of calls
    /// when there was more than one, the status when it is not `completed`. Steps the
    /// journal does not mention (not reached) are named in a `%%` comment, since they have
    /// no time to be drawn at. Times are written with milliseconds (`dateFormat YYYY-MM-DD
    /// HH:mm:ss.SSS`); characters Mermaid reads as syntax (`#`, `:`, `;`, `%`, line breaks) are
    /// replaced in labels.
    ///
    /// `steps` are the steps of the run's definition, in its order: they order the steps
    /// that began at one instant, and those the journal does not mention are listed in a
    /// comment as not reached. Pass `&[]` when the definition is not known.
    ///
    /// # Complexity
    /// O((steps + definition steps) × log steps).
    ///
    /// # Examples
    /// ```
    /// # use serde_json::json;
    /// # use tradeflow::store::{JournalEntry, RunState};
    /// let at = |ms| "2026-01-05T09:00:00Z".parse::<chrono::DateTime<chrono::Utc>>().unwrap()
    ///     + chrono::TimeDelta::milliseconds(ms);
    /// let state = RunState::fold(&[
    ///     JournalEntry::RunStarted {
    ///         run_id: "run-1".into(), workflow_id: "momentum".into(), version: "1".into(),
    ///         input: json!({}), seed: 7, at: at(0),
    ///     },
    ///     JournalEntry::StepStarted {
    ///         step_id: "signal".into(), item: None, iteration: None, attempt: 1,
    ///         agent_id: "sig-1".into(), idempotency_key: "run-1/signal/1".into(), at: at(5),
    ///     },
    ///     JournalEntry::StepFailed {
    ///         step_id: "signal".into(), kind: tradeflow::engine::FailureKind::Permanent,
    ///         message: "no data".into(), attempts: 1, at: at(250),
    ///     },
    /// ])?;
    /// let chart = state.gantt(&["signal".into(), "trade".into()]);
    /// assert!(chart.starts_with("gantt\n"));
    /// assert!(chart.ends_with("%% not reached: trade\n"));
    /// assert!(chart.contains(
    ///     "signal (failed) :crit, s0, 2026-01-05 09:00:00.005, 2026-01-05 09:00:00.250\n"
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn gantt(&self, steps: &[StepId]) -> String {
        let positions: HashMap<&StepId, usize> =
            steps.iter().enumerate().map(|(n, id)| (id, n)).collect();
        let position = |id: &StepId| positions.get(id).copied();
        let mut drawn: Vec<(DateTime<Utc>, usize, &StepId, &StepState)> = self
            .steps
            .iter()
            .filter_map(|(id, step)| {
                let at = step.started_at.or(step.ended_at)?;
                // Steps the definition does not name come after those it does.
                Some((at, position(id).unwrap_or(usize::MAX), id, step))
            })
            .collect();
        drawn.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
        let pending: Vec<&StepId> = steps
            .iter()
            .filter(|id| !self.steps.contains_key(*id))
            .collect();
        let latest = self.latest();

        let mut out = String::from("gantt\n");
        let duration = self.ended_at.map_or_else(String::new, |ended| {
            format!(
                " in {}",
                millis((ended - self.started_at).num_milliseconds())
            )
        });
        let _ = writeln!(
            out,
            "    title {} of {} v{}, {}{duration}",
            label(self.run_id.as_str()),
            label(&self.workflow_id),
            label(&self.version),
            self.status,
        );
        out.push_str("    dateFormat YYYY-MM-DD HH:mm:ss.SSS\n");
        out.push_str("    axisFormat %H:%M:%S\n");
        out.push_str("    todayMarker off\n");
        for (n, (_, _, id, step)) in drawn.iter().enumerate() {
            let (tag, start, end) = match (step.started_at, step.ended_at) {
                // Skipped, after its calls or without any: a diamond when it was skipped.
                (_, Some(end)) if step.status == StepStatus::Skipped => ("milestone", end, end),
                (Some(start), Some(end)) => (bar_tag(step.status), start, end),
                (Some(start), None) => ("active", start, latest.max(start)),
                (None, Some(end)) => (milestone_tag(step.status), end, end),
                (None, None) => continue,
            };
            let _ = writeln!(
                out,
                "    {} :{tag}, s{n}, {}, {}",
                step_label(id, step),
                time(start),
                time(end)
            );
        }
        if !pending.is_empty() {
            let names: Vec<String> = pending.iter().map(|id| label(id.as_str())).collect();
            let _ = writeln!(out, "    %% not reached: {}", names.join(", "));
        }
        out
    }

    /// The latest time the journal's fold knows: what a step still running is drawn up
    /// to.
    fn latest(&self) -> DateTime<Utc> {
        self.steps
            .values()
            .flat_map(|step| {
                let calls = step.in_flight.iter().map(|call| call.started_at);
                [step.started_at, step.ended_at]
                    .into_iter()
                    .flatten()
                    .chain(calls)
            })
            .chain(self.ended_at)
            .fold(self.started_at, DateTime::max)
    }
}

/// The tag of a step that began and ended (not skipped).
fn bar_tag(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Failed | StepStatus::Cancelled => "crit",
        _ => "done",
    }
}

/// The tag of a step that ended without beginning (not skipped).
fn milestone_tag(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Failed | StepStatus::Cancelled => "crit, milestone",
        _ => "done, milestone",
    }
}

/// `id`, then the calls when more than one, then the status when not completed.
fn step_label(id: &StepId, step: &StepState) -> String {
    let mut notes = Vec::new();
    if step.status != StepStatus::Completed {
        notes.push(step.status.as_str().to_ascii_lowercase());
    }
    if step.attempts > 1 {
        notes.push(format!("{} calls", step.attempts));
    }
    if notes.is_empty() {
        label(id.as_str())
    } else {
        format!("{} ({})", label(id.as_str()), notes.join(", "))
    }
}

/// `text` with the characters Mermaid reads as syntax replaced.
fn label(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '#' | ':' | ';' | '%' => '_',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

/// A time as the chart's `dateFormat` reads it.
fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// `ms` milliseconds as a person reads them: `250 ms`, `2.35 s`.
fn millis(ms: i64) -> String {
    if ms.unsigned_abs() < 1000 {
        format!("{ms} ms")
    } else {
        let seconds = format!("{:.3}", ms as f64 / 1000.0);
        format!("{} s", seconds.trim_end_matches('0').trim_end_matches('.'))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use serde_json::json;

    use super::*;
    use crate::run::{FailureKind, RunStatus};
    use crate::store::JournalEntry;

    fn at(ms: i64) -> DateTime<Utc> {
        "2026-01-05T09:00:00Z".parse::<DateTime<Utc>>().unwrap() + TimeDelta::milliseconds(ms)
    }

    fn call(step: &str, attempt: u32, ms: i64) -> JournalEntry {
        JournalEntry::StepStarted {
            step_id: step.into(),
            item: None,
            iteration: None,
            attempt,
            agent_id: "a-1".into(),
            idempotency_key: format!("run-1/{step}/{attempt}"),
            at: at(ms),
        }
    }

    fn done(step: &str, attempts: u32, ms: i64) -> JournalEntry {
        JournalEntry::StepCompleted {
            step_id: step.into(),
            output: json!({}),
            attempts,
            agent_id: Some("a-1".into()),
            agent_ids: None,
            approved_by: None,
            at: at(ms),
        }
    }

    fn journal() -> Vec<JournalEntry> {
        vec![
            JournalEntry::RunStarted {
                run_id: "run-1".into(),
                workflow_id: "momentum".into(),
                version: "2".into(),
                input: json!({}),
                seed: 0,
                at: at(0),
            },
            call("fetch", 1, 1),
            done("fetch", 1, 200),
            JournalEntry::StepSkipped {
                step_id: "hedge".into(),
                reason: "condition is false".into(),
                at: at(200),
            },
            call("trade", 1, 201),
            call("trade", 2, 400),
            JournalEntry::StepFailed {
                step_id: "trade".into(),
                kind: FailureKind::Permanent,
                message: "rejected".into(),
                attempts: 2,
                at: at(2350),
            },
        ]
    }

    #[test]
    fn steps_are_drawn_in_the_order_they_began_tagged_by_how_they_ended() {
        let mut entries = journal();
        entries.push(JournalEntry::RunEnded {
            status: RunStatus::Failed,
            error: None,
            at: at(2350),
        });
        let state = RunState::fold(&entries).unwrap();
        let steps = ["fetch", "trade", "hedge", "report"].map(StepId::from);
        assert_eq!(
            state.gantt(&steps),
            "gantt
    title run-1 of momentum v2, FAILED in 2.35 s
    dateFormat YYYY-MM-DD HH:mm:ss.SSS
    axisFormat %H:%M:%S
    todayMarker off
    fetch :done, s0, 2026-01-05 09:00:00.001, 2026-01-05 09:00:00.200
    hedge (skipped) :milestone, s1, 2026-01-05 09:00:00.200, 2026-01-05 09:00:00.200
    trade (failed, 2 calls) :crit, s2, 2026-01-05 09:00:00.201, 2026-01-05 09:00:02.350
    %% not reached: report
"
        );
    }

    #[test]
    fn a_step_still_running_is_active_up_to_the_latest_time_known() {
        let mut entries = journal();
        entries.truncate(5);
        entries.push(call("trade", 2, 400));
        let state = RunState::fold(&entries).unwrap();
        let chart = state.gantt(&[]);
        assert!(
            chart.contains("    title run-1 of momentum v2, RUNNING\n"),
            "{chart}"
        );
        assert!(
            chart.contains(
                "    trade (running, 2 calls) :active, s2, 2026-01-05 09:00:00.201, 2026-01-05 09:00:00.400\n"
            ),
            "{chart}"
        );
        assert!(!chart.contains("%%"), "{chart}");
    }

    #[test]
    fn a_cancelled_step_is_critical_and_says_so() {
        let mut entries = journal();
        entries.truncate(5);
        entries.push(JournalEntry::RunEnded {
            status: RunStatus::Cancelled,
            error: None,
            at: at(900),
        });
        let chart = RunState::fold(&entries).unwrap().gantt(&[]);
        assert!(
            chart.contains(
                "    trade (cancelled) :crit, s2, 2026-01-05 09:00:00.201, 2026-01-05 09:00:00.900\n"
            ),
            "{chart}"
        );
    }

    #[test]
    fn labels_cannot_break_the_chart() {
        assert_eq!(label("a:b;c#d%e\nf"), "a_b_c_d_e f");
        assert_eq!(millis(250), "250 ms");
        assert_eq!(millis(2000), "2 s");
        assert_eq!(millis(61_005), "61.005 s");
    }
}
