//! [`ScriptedApprover`]: the human of a dry run, answering `human_approval` steps as an
//! agents file's `approvals` say.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::select_biased;
use futures::stream::{FusedStream, FuturesUnordered, StreamExt};

use super::ScriptedApproval;
use crate::agent::RunId;
use crate::clock::add_saturating;
use crate::definition::StepId;
use crate::engine::{Engine, EngineError, RunEvent};

/// What a [`ScriptedApprover`] tells its host while it answers: the events it reads and
/// the answers the engine refused. Both methods do nothing by default.
///
/// Called on the thread that polls the approver, never at the same time (`&self`: an
/// observer that keeps state uses a `Cell` or `RefCell`). `()` observes nothing.
pub trait ApprovalObserver {
    /// An event the approver read, in the order of the engine's events, before the
    /// approver acts on it: a progress printer shows it here.
    fn event(&self, _event: &RunEvent) {}

    /// The engine refused the scripted answer to `step` of `run`, given at `at`, with
    /// `error`. An answer that came after the step stopped waiting (it timed out, or the
    /// run ended) is not refused: it is dropped silently.
    fn refused(&self, _run: &RunId, _step: &StepId, _at: DateTime<Utc>, _error: &EngineError) {}
}

impl ApprovalObserver for () {}

/// Answers `human_approval` steps as scripted: when a step starts waiting
/// ([`RunEvent::StepWaiting`]) and the script has an answer for its step id, the
/// approver approves or rejects it ([`Engine::approve`], [`Engine::reject`]) as `by`,
/// with the comment, `afterMs` after the step started waiting, on the engine's clock. A
/// waiting step with no scripted answer waits for its timeout.
///
/// The approver reads the engine's events from a stream subscribed before the runs
/// start ([`Engine::subscribe`]), so that no waiting step is missed, and is polled next
/// to the runs (`join`, `select`) on the same executor. Events are read before answers
/// are given (a biased select), so on a [`VirtualClock`](crate::clock::VirtualClock) the
/// same files give the same answers at the same instants every time. Several answers can
/// be pending at once, each a sleep on the engine's clock.
///
/// # Examples
/// A sign-off that comes a minute after the step starts waiting, in no real time:
/// ```
/// use chrono::{TimeDelta, TimeZone, Utc};
/// use futures::future::join;
/// use serde_json::json;
/// use tradeflow::clock::VirtualClock;
/// use tradeflow::engine::{Engine, RunOptions, RunStatus};
/// use tradeflow::plan::ExecutionPlan;
/// use tradeflow::sim::{AgentsFile, ScriptedApprover};
///
/// let script = AgentsFile::from_json(r#"{"agents": [], "approvals": {
///     "sign-off": {"approved": true, "by": "pm@desk", "afterMs": 60000}}}"#)?;
/// let clock = VirtualClock::starting_at(Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap());
/// let engine = Engine::builder().clock(clock.clone()).build();
/// let workflow = engine.add_plan(ExecutionPlan::from_json(r#"{"id": "w", "steps": [
///     {"id": "sign-off", "type": "human_approval", "task": {"type": "APPROVAL_REQUEST"}}]}"#)?);
///
/// let approver = ScriptedApprover::new(&engine, script.approvals);
/// let events = engine.subscribe(); // Before the run starts.
/// let run = engine.start(&workflow.id, RunOptions::new(json!({})))?;
/// let runs = [run.id().clone()];
/// let (report, ()) = clock.block_on(join(run, approver.answer_runs(events, runs, &())));
///
/// assert_eq!(report.status, RunStatus::Completed);
/// assert_eq!(report.step("sign-off").unwrap().approved_by.as_deref(), Some("pm@desk"));
/// assert_eq!(report.ended_at - report.started_at, TimeDelta::minutes(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct ScriptedApprover {
    engine: Engine,
    approvals: BTreeMap<String, ScriptedApproval>,
}

impl ScriptedApprover {
    /// An approver answering the waiting steps of `engine`'s runs as `approvals` (by step
    /// id, as in [`AgentsFile::approvals`](super::AgentsFile::approvals)) say.
    pub fn new(engine: &Engine, approvals: BTreeMap<String, ScriptedApproval>) -> Self {
        Self {
            engine: engine.clone(),
            approvals,
        }
    }

    /// The scripted answers, by step id.
    pub fn approvals(&self) -> &BTreeMap<String, ScriptedApproval> {
        &self.approvals
    }

    /// Answers the waiting steps of `runs` until every one of them has ended
    /// ([`RunEvent::RunEnded`]) or `events` end; answers not yet given then are dropped.
    /// Events of other runs are skipped; `observer` sees every event of `runs` in order.
    pub async fn answer_runs(
        &self,
        mut events: impl FusedStream<Item = RunEvent> + Unpin,
        runs: impl IntoIterator<Item = RunId>,
        observer: &(impl ApprovalObserver + ?Sized),
    ) {
        let mut running: BTreeSet<RunId> = runs.into_iter().collect();
        let mut answers = FuturesUnordered::new();
        while !running.is_empty() {
            // Biased: events first, so that what is observed and answered never depends
            // on which of two ready futures a random pick chose.
            select_biased! {
                event = events.next() => {
                    let Some(event) = event else { break };
                    if !running.contains(event.run_id()) {
                        continue;
                    }
                    observer.event(&event);
                    if let RunEvent::RunEnded { run_id, .. } = &event {
                        running.remove(run_id);
                    } else if let Some(answer) = self.answer_to(event, observer) {
                        answers.push(answer);
                    }
                }
                () = answers.select_next_some() => {}
            }
        }
    }

    /// Answers the waiting steps of every run, those started later included, until
    /// `events` end, then gives the answers still pending. `observer` sees every event.
    /// Callers usually stop polling it sooner, when the runs they watch have ended.
    pub async fn answer_all(
        &self,
        mut events: impl FusedStream<Item = RunEvent> + Unpin,
        observer: &(impl ApprovalObserver + ?Sized),
    ) {
        let mut answers = FuturesUnordered::new();
        loop {
            // Biased, as in `answer_runs`.
            select_biased! {
                event = events.next() => {
                    let Some(event) = event else { break };
                    observer.event(&event);
                    if let Some(answer) = self.answer_to(event, observer) {
                        answers.push(answer);
                    }
                }
                () = answers.select_next_some() => {}
            }
        }
        while answers.next().await.is_some() {}
    }

    /// The scripted answer to `event`, if it is a waiting step with one.
    fn answer_to<'a>(
        &'a self,
        event: RunEvent,
        observer: &'a (impl ApprovalObserver + ?Sized),
    ) -> Option<impl Future<Output = ()> + 'a> {
        let RunEvent::StepWaiting {
            run_id,
            step_id,
            at,
            ..
        } = event
        else {
            return None;
        };
        let script = self.approvals.get(step_id.as_str())?;
        Some(self.answer(run_id, step_id, script, at, observer))
    }

    /// Gives `script`'s answer to `step` of `run`, `afterMs` after it started waiting.
    async fn answer(
        &self,
        run: RunId,
        step: StepId,
        script: &ScriptedApproval,
        waiting_since: DateTime<Utc>,
        observer: &(impl ApprovalObserver + ?Sized),
    ) {
        // On the virtual clock, events are read before the clock moves on (block_on
        // polls every woken future before it fires a timer), so this is `afterMs` from
        // now; on the real clock, from when the step started waiting.
        let deadline = add_saturating(waiting_since, Duration::from_millis(script.after_ms));
        let clock = self.engine.clock();
        clock.sleep_until(deadline).await;
        let comment = script.comment.as_deref();
        let answered = if script.approved {
            self.engine
                .approve(&run, step.as_str(), &script.by, comment)
        } else {
            self.engine.reject(&run, step.as_str(), &script.by, comment)
        };
        match answered {
            // The step timed out, or the run ended, before the answer came.
            Ok(()) | Err(EngineError::NoPendingApproval { .. }) => {}
            Err(error) => observer.refused(&run, &step, clock.now(), &error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn _object_safe(_: &dyn ApprovalObserver) {}

    #[test]
    fn approvers_are_shareable_and_observers_can_be_trait_objects() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<ScriptedApprover>();
        let engine = Engine::builder().build();
        let approver = ScriptedApprover::new(&engine, BTreeMap::new());
        let observer: &dyn ApprovalObserver = &();
        let (_sender, events) = futures::channel::mpsc::unbounded::<RunEvent>();
        // No run to follow: done at once.
        futures::executor::block_on(approver.answer_runs(events, [], observer));
        assert!(approver.approvals().is_empty());
    }
}
