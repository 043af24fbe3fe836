//! The run's book: everything a run knows, kept synchronously, indexed by step index.
//!
//! Per step: a status, the output (shared, so snapshots are cheap) and the report; the
//! count of predecessors that have not ended, and the ready set (steps whose
//! predecessors have all ended, lowest index first). Per run: the first failure of a
//! required step, the status the run must end with once something decided it, whether
//! the host paused it, and self-healing's bookkeeping.
//!
//! The book changes only through [`Transition`](super::transition::Transition)s (applied
//! in `transition.rs`) and the few primitives here, none of which waits or does I/O, so
//! it is tested on its own (below) without an engine, a clock or an agent.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::definition::{FailureHandling, StepId};
use crate::engine::heal::{Healing, RollbackScope};
use crate::engine::report::{DecisionReport, RunReport, StepReport};
use crate::engine::step::{Progress, Snapshot};
use crate::expr::BindingValues;
use crate::plan::{ExecutionPlan, PlanStep};
use crate::run::{RunError, RunId, RunStatus, StepStatus};
use crate::store::{DecisionState, StepState};

/// A run's state: see the [module docs](self).
pub(super) struct Book {
    pub(super) plan: Arc<ExecutionPlan>,
    input: Arc<Value>,
    status: Vec<StepStatus>,
    outputs: Vec<Option<Arc<Value>>>,
    /// Each step's report, in plan order (outputs join them at the end; see `outputs`).
    reports: Vec<(StepId, StepReport)>,
    unfinished_predecessors: Vec<usize>,
    /// Steps whose predecessors have all ended, lowest index first.
    ready: BinaryHeap<Reverse<usize>>,
    /// The first failure of a required step (or of the run itself).
    pub(super) error: Option<RunError>,
    /// Set when the run must stop starting steps and end with this status.
    pub(super) end: Option<RunStatus>,
    /// Paused by the host: no step starts.
    pub(super) paused: bool,
    /// Self-healing's bookkeeping.
    pub(super) healing: Healing,
    /// What each running step has journaled since it last started (its future tells),
    /// for the report of a step the run's end stops.
    progress: Vec<Option<Arc<Progress>>>,
    /// What `decision` steps with a `decision` block chose (and, at the end, their
    /// rewards), by step index.
    pub(super) decisions: BTreeMap<usize, DecisionState>,
    /// The adaptations applied to each step as it started (journaled), by step index.
    pub(super) adaptations: BTreeMap<usize, Vec<String>>,
}

impl BindingValues for Book {
    fn input(&self) -> &Value {
        &self.input
    }

    fn step_output(&self, index: usize) -> Option<&Value> {
        match self.status.get(index) {
            Some(StepStatus::Completed) => self.outputs.get(index)?.as_deref(),
            _ => None,
        }
    }
}

impl Book {
    /// A run of `plan` with `input`, every step pending and nothing ready yet
    /// ([`recount`](Self::recount) finds the ready steps).
    pub(super) fn new(plan: Arc<ExecutionPlan>, input: Value) -> Self {
        let count = plan.steps().len();
        let reports = plan
            .steps()
            .iter()
            .map(|step| (step.id().clone(), StepReport::default()))
            .collect();
        Self {
            plan,
            input: Arc::new(input),
            status: vec![StepStatus::Pending; count],
            outputs: vec![None; count],
            reports,
            unfinished_predecessors: vec![0; count],
            ready: BinaryHeap::new(),
            error: None,
            end: None,
            paused: false,
            healing: Healing::default(),
            progress: vec![None; count],
            decisions: BTreeMap::new(),
            adaptations: BTreeMap::new(),
        }
    }

    /// The run's input.
    pub(super) fn input_value(&self) -> &Arc<Value> {
        &self.input
    }

    /// Step `index`'s status (`PENDING` for an index out of range).
    pub(super) fn status(&self, index: usize) -> StepStatus {
        self.status.get(index).copied().unwrap_or_default()
    }

    /// Step `index`'s report, to change it.
    pub(super) fn report_mut(&mut self, index: usize) -> Option<&mut StepReport> {
        self.reports.get_mut(index).map(|(_, report)| report)
    }

    /// Step `index`'s status, to change it.
    pub(super) fn set_status(&mut self, index: usize, status: StepStatus) {
        if let Some(slot) = self.status.get_mut(index) {
            *slot = status;
        }
    }

    /// Step `index`'s output, to change it.
    pub(super) fn set_output(&mut self, index: usize, output: Option<Arc<Value>>) {
        if let Some(slot) = self.outputs.get_mut(index) {
            *slot = output;
        }
    }

    /// Step `index` ended before a restart, as its journal says.
    pub(super) fn restore(&mut self, index: usize, step: StepState) {
        let plan = Arc::clone(&self.plan);
        let Some(plan_step) = plan.step(index) else {
            return;
        };
        self.set_status(index, step.status);
        self.set_output(index, step.output.map(Arc::new));
        let Some(report) = self.report_mut(index) else {
            return;
        };
        report.status = step.status;
        report.attempts = plan_step.agent_task().is_some().then_some(step.attempts);
        report.agent_id = step.agent_id;
        report.agent_ids = step.agent_ids;
        report.approved_by = step.approved_by;
        report.reason = step.reason;
        report.error = step.error;
        let error = report.error.clone();
        if step.status == StepStatus::Failed && !plan_step.is_optional() {
            if self.error.is_none() {
                self.error = error.map(|error| RunError {
                    step_id: Some(plan_step.id().clone()),
                    kind: error.kind,
                    message: error.message,
                });
            }
            if self.plan.policy().failure_handling == FailureHandling::StopOnFailure {
                self.end = Some(RunStatus::Failed);
            }
        }
    }

    /// Recounts every pending step's unfinished predecessors and which are ready. Steps
    /// that ended (also those restored as ended) do not hold their successors back.
    pub(super) fn recount(&mut self) {
        self.ready.clear();
        for index in 0..self.status.len() {
            if self.status[index] != StepStatus::Pending {
                continue;
            }
            let count = self
                .plan
                .predecessors(index)
                .filter(|&(predecessor, _)| !self.status(predecessor).is_final())
                .count();
            self.unfinished_predecessors[index] = count;
            if count == 0 {
                self.ready.push(Reverse(index));
            }
        }
    }

    /// The next ready step, lowest index first; none when nothing is ready, the run must
    /// end, or (`one_at_a_time`) a step is still running.
    pub(super) fn next_ready(&mut self, one_at_a_time: bool) -> Option<usize> {
        if self.end.is_some() || one_at_a_time {
            return None;
        }
        let Reverse(index) = self.ready.pop()?;
        debug_assert_eq!(self.status(index), StepStatus::Pending, "ready once");
        Some(index)
    }

    /// Step `index`, taken with [`Book::next_ready`] and not started, is ready again.
    pub(super) fn ready_again(&mut self, index: usize) {
        self.ready.push(Reverse(index));
    }

    /// Whether no step is ready.
    pub(super) fn nothing_ready(&self) -> bool {
        self.ready.is_empty()
    }

    /// Step `index` started: `WAITING` for a person, else `RUNNING`. Returns where its
    /// future tells what it has journaled.
    pub(super) fn start(&mut self, index: usize, waiting: bool) -> Arc<Progress> {
        let progress = Arc::new(Progress::default());
        if let Some(slot) = self.progress.get_mut(index) {
            *slot = Some(Arc::clone(&progress));
        }
        self.mark_started(index, waiting);
        progress
    }

    /// Step `index`'s launch is settled: what its future counted is no longer its own.
    pub(super) fn settled(&mut self, index: usize) {
        if let Some(slot) = self.progress.get_mut(index) {
            *slot = None;
        }
    }

    fn mark_started(&mut self, index: usize, waiting: bool) {
        let status = if waiting {
            StepStatus::Waiting
        } else {
            StepStatus::Running
        };
        self.set_status(index, status);
    }

    /// Step `index` ended: its successors may now be ready.
    pub(super) fn release(&mut self, index: usize) {
        let plan = Arc::clone(&self.plan);
        for (successor, _) in plan.successors(index) {
            self.release_edge(successor);
        }
    }

    /// One edge into `to` no longer holds it back.
    pub(super) fn release_edge(&mut self, to: usize) {
        if let Some(count) = self.unfinished_predecessors.get_mut(to) {
            *count = count.saturating_sub(1);
            // A step that ran already (a fallback, a step a rollback reset) is not
            // made ready twice.
            if *count == 0 && self.status.get(to) == Some(&StepStatus::Pending) {
                self.ready.push(Reverse(to));
            }
        }
    }

    /// Step `index` runs again (a `RETRY` or `SUBSTITUTE` recovery).
    pub(super) fn again(&mut self, index: usize) {
        self.set_status(index, StepStatus::Pending);
        self.ready.push(Reverse(index));
    }

    /// The run ends `status` with `error`, whatever failed before (the workflow's
    /// timeout, a workflow condition or input that stops the run before any step).
    pub(super) fn end_with(&mut self, status: RunStatus, error: RunError) {
        self.error = Some(error);
        self.end = Some(status);
    }

    /// The run ends `FAILED` with `error`, unless a failure was recorded before.
    pub(super) fn fail_run(&mut self, error: RunError) {
        self.error.get_or_insert(error);
        self.end = Some(RunStatus::Failed);
    }

    /// Gives every step's report `reason` (a run that does not start).
    pub(super) fn explain_all(&mut self, reason: &str) {
        for (_, report) in &mut self.reports {
            report.reason = Some(reason.to_owned());
        }
    }

    /// The input and the outputs of the steps `step` binds to, for its `loop.until`.
    pub(super) fn snapshot(&self, step: &PlanStep) -> Snapshot {
        Snapshot {
            input: Arc::clone(&self.input),
            outputs: step
                .data_inputs()
                .iter()
                .filter_map(|&index| Some((index, Arc::clone(self.outputs.get(index)?.as_ref()?))))
                .collect(),
        }
    }

    /// What a rollback for step `index` would redo: its completed direct predecessors,
    /// everything after them that has started or ended, and the step itself. `None`
    /// when a step to redo is still running, or no predecessor completed.
    pub(super) fn rollback_scope(&self, index: usize) -> Option<RollbackScope> {
        let roots: Vec<usize> = self
            .plan
            .predecessors(index)
            .map(|(predecessor, _)| predecessor)
            .filter(|&predecessor| self.status(predecessor) == StepStatus::Completed)
            .collect();
        if roots.is_empty() {
            return None;
        }
        let mut redo = vec![false; self.status.len()];
        let mut stack = roots;
        while let Some(at) = stack.pop() {
            if std::mem::replace(redo.get_mut(at)?, true) {
                continue;
            }
            stack.extend(self.plan.successors(at).map(|(successor, _)| successor));
        }
        let redo: Vec<usize> = (0..redo.len())
            .filter(|&at| redo[at] && (at == index || self.status(at) != StepStatus::Pending))
            .collect();
        let busy = |at: usize| matches!(self.status(at), StepStatus::Running | StepStatus::Waiting);
        if redo.iter().any(|&at| at != index && busy(at)) {
            return None;
        }
        // The checkpoint before the first of them completed.
        let completed = &self.healing.completed;
        let first = completed.iter().position(|done| redo.contains(done))?;
        let checkpoint = first
            .checked_sub(1)
            .and_then(|before| completed.get(before).copied());
        Some(RollbackScope { redo, checkpoint })
    }

    /// The run ends `status`: steps running or waiting are cancelled, steps not started
    /// are reported skipped. A step launched but not begun (its future journaled nothing
    /// yet: it waited for resources or an agent, or was never polled) did not start
    /// either. Returns those steps, `true` for the cancelled ones.
    pub(super) fn stop(&mut self, status: RunStatus) -> Vec<(usize, bool)> {
        let mut stopped = Vec::new();
        for index in 0..self.status.len() {
            let began = match self.status[index] {
                StepStatus::Running | StepStatus::Waiting => self.has_begun(index),
                StepStatus::Pending => false,
                _ => continue,
            };
            // The calls it made count, those before a recovery or a restart too.
            let made = self.progress[index]
                .as_ref()
                .map_or(0, |progress| progress.calls());
            let calls = self.healing.prior_attempts(index).saturating_add(made);
            let report = &mut self.reports[index].1;
            if calls > 0 {
                report.attempts = Some(calls);
            }
            if began {
                self.status[index] = StepStatus::Cancelled;
                report.status = StepStatus::Cancelled;
                report.reason = Some(format!("the run ended {status}"));
            } else {
                report.status = StepStatus::Skipped;
                report
                    .reason
                    .get_or_insert_with(|| format!("not started: the run ended {status}"));
            }
            stopped.push((index, began));
        }
        stopped
    }

    /// Whether running step `index` began: it journaled a call or a wait, or it stands
    /// aside for its fallback (journaled with its recovery).
    fn has_begun(&self, index: usize) -> bool {
        self.healing
            .standing_in
            .values()
            .any(|&owner| owner == index)
            || self.progress[index]
                .as_ref()
                .is_some_and(|progress| progress.has_begun())
    }

    /// Step `index`'s id and report.
    pub(super) fn report(&self, index: usize) -> Option<&(StepId, StepReport)> {
        self.reports.get(index)
    }

    /// The run's report; outputs join their reports now (kept once, shared, while the
    /// run went on).
    pub(super) fn into_report(
        self,
        run_id: RunId,
        status: RunStatus,
        started_at: DateTime<Utc>,
        ended_at: DateTime<Utc>,
        scrubber: Option<&crate::plan::Scrubber>,
    ) -> RunReport {
        let mut steps = self.reports;
        let sensitive = self.plan.sensitive();
        for ((_, report), output) in steps.iter_mut().zip(self.outputs) {
            report.output = output.map(|output| {
                let mut output = Arc::try_unwrap(output).unwrap_or_else(|shared| (*shared).clone());
                sensitive.redact_in_place(&mut output);
                if let Some(scrubber) = scrubber {
                    scrubber.scrub_value(&mut output);
                }
                output
            });
        }
        for (index, ids) in self.adaptations {
            if let Some((_, report)) = steps.get_mut(index) {
                report.adaptations = ids;
            }
        }
        for (index, decision) in self.decisions {
            if let Some((_, report)) = steps.get_mut(index) {
                report.reward_missing = decision.reward_missing;
                report.decision = Some(DecisionReport {
                    option: decision.option,
                    context_key: decision.context_key,
                    policy: decision.policy,
                    prior_scores: decision.prior_scores,
                    reward: decision.reward,
                });
            }
        }
        RunReport {
            run_id,
            workflow_id: self.plan.workflow_id().to_owned(),
            status,
            started_at,
            ended_at,
            steps,
            error: self.error,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::definition::RecoveryStrategy;
    use crate::engine::run::transition::Transition;
    use crate::engine::step::{Failure, Success};
    use crate::run::{FailureKind, RecoveryDecision};

    /// A book over task steps of type `T`, given as `(id, after, extra fields)`: each
    /// runs after the steps it names (a `dependencies` edge from each).
    fn book(policy: &str, steps: &[(&str, &[&str], &str)]) -> Book {
        let mut edges = Vec::new();
        let steps: Vec<String> = steps
            .iter()
            .map(|(id, after, extra)| {
                edges.extend(
                    after
                        .iter()
                        .map(|from| format!(r#"{{"from": "{from}", "to": "{id}"}}"#)),
                );
                format!(
                    r#"{{"id": "{id}", "type": "task",
                        "agentCriteria": {{"type": "T"}}, "task": {{"type": "T"}}{extra}}}"#
                )
            })
            .collect();
        let json = format!(
            r#"{{"id": "w", {policy} "steps": [{}], "dependencies": [{}]}}"#,
            steps.join(", "),
            edges.join(", ")
        );
        let plan = ExecutionPlan::from_json(&json).unwrap_or_else(|errors| panic!("{errors}"));
        let mut book = Book::new(Arc::new(plan), json!({"x": 1}));
        book.recount();
        book
    }

    /// A diamond: a → b, a → c, b and c → d.
    fn diamond(policy: &str) -> Book {
        book(
            policy,
            &[
                ("a", &[], ""),
                ("b", &["a"], ""),
                ("c", &["a"], ""),
                ("d", &["b", "c"], ""),
            ],
        )
    }

    fn ready(book: &mut Book) -> Vec<usize> {
        std::iter::from_fn(|| book.next_ready(false)).collect()
    }

    fn completed(index: usize, output: serde_json::Value) -> Transition {
        Transition::Completed {
            index,
            success: Success {
                attempts: 1,
                ..Success::without_calls(output)
            },
        }
    }

    fn failed(index: usize) -> Transition {
        Transition::Failed {
            index,
            failure: Failure {
                kind: FailureKind::Permanent,
                message: "no".into(),
                attempts: 2,
                agent: None,
            },
        }
    }

    #[test]
    fn steps_become_ready_when_every_predecessor_ended_lowest_index_first() {
        let mut book = diamond("");
        assert_eq!(ready(&mut book), [0]);
        book.start(0, false);
        assert_eq!(book.status(0), StepStatus::Running);
        book.apply(completed(0, json!({"v": 1})));
        assert_eq!(ready(&mut book), [1, 2]);
        book.apply(completed(1, json!(null)));
        assert!(book.nothing_ready(), "d still waits for c");
        book.apply(Transition::Skipped {
            index: 2,
            reason: "condition false".into(),
        });
        assert_eq!(
            ready(&mut book),
            [3],
            "a skipped step releases its successors"
        );
    }

    #[test]
    fn only_completed_steps_have_outputs_for_bindings() {
        let mut book = diamond("");
        assert_eq!(book.input(), &json!({"x": 1}));
        book.start(0, false);
        assert_eq!(book.step_output(0), None, "running: no output yet");
        book.apply(completed(0, json!({"v": 1})));
        assert_eq!(book.step_output(0), Some(&json!({"v": 1})));
        assert_eq!(book.step_output(9), None);
        let report = book.report(0).map(|(_, report)| report.clone()).unwrap();
        assert_eq!(report.status, StepStatus::Completed);
        assert_eq!(report.attempts, Some(1));
        assert_eq!(book.healing.completed, [0], "a checkpoint after the step");
    }

    #[test]
    fn a_required_failure_stops_the_run_under_stop_on_failure() {
        let mut book = diamond("");
        ready(&mut book);
        book.apply(failed(0));
        assert_eq!(book.end, Some(RunStatus::Failed));
        let error = book.error.clone().unwrap();
        assert_eq!(error.step_id.as_ref().map(StepId::as_str), Some("a"));
        assert_eq!(error.kind, FailureKind::Permanent);
        assert!(book.nothing_ready(), "nothing after it is released");
        assert_eq!(book.next_ready(false), None);
    }

    #[test]
    fn a_required_failure_releases_its_successors_under_continue_on_failure() {
        let policy = r#""executionPolicy": {"failureHandling": "CONTINUE_ON_FAILURE"},"#;
        let mut book = diamond(policy);
        ready(&mut book);
        book.apply(failed(0));
        assert_eq!(book.end, None);
        assert!(book.error.is_some(), "the run will fail");
        assert_eq!(ready(&mut book), [1, 2], "the start decides to skip them");
    }

    #[test]
    fn an_optional_failure_does_not_fail_the_run() {
        let mut book = book(
            "",
            &[("a", &[], r#", "optional": true"#), ("b", &["a"], "")],
        );
        ready(&mut book);
        book.apply(failed(0));
        assert_eq!((book.end, book.error.is_none()), (None, true));
        assert_eq!(ready(&mut book), [1]);
    }

    #[test]
    fn host_commands_pause_resume_and_cancel() {
        let mut book = diamond("");
        book.apply(Transition::Paused { by: "ops".into() });
        assert!(book.paused);
        book.apply(Transition::Resumed { by: "ops".into() });
        assert!(!book.paused);
        book.apply(Transition::Cancelled { by: "ops".into() });
        assert_eq!(book.end, Some(RunStatus::Cancelled));
        assert_eq!(book.next_ready(false), None, "an ending run starts nothing");
    }

    #[test]
    fn recoveries_are_reported_and_count_earlier_calls() {
        let mut book = diamond("");
        ready(&mut book);
        let decision = RecoveryDecision {
            strategy: RecoveryStrategy::Substitute,
            confidence: 0.8,
            cost: 0.2,
            score: 0.6,
            kind: FailureKind::Temporary,
            message: "busy".into(),
        };
        book.apply(Transition::Recovering {
            index: 0,
            failure: Failure::before_calls(FailureKind::Temporary, "busy".into()),
            decision: decision.clone(),
        });
        assert_eq!(book.healing.applied(0), [RecoveryStrategy::Substitute]);
        let report = book.report(0).map(|(_, report)| report.clone()).unwrap();
        assert_eq!(report.recoveries, [decision]);
        book.again(0);
        assert_eq!(ready(&mut book), [0], "the step runs again");
    }

    #[test]
    fn a_rollback_redoes_completed_predecessors_from_their_checkpoint() {
        let mut book = book("", &[("a", &[], ""), ("b", &["a"], ""), ("c", &["b"], "")]);
        for index in 0..2 {
            ready(&mut book);
            book.apply(completed(index, json!({"n": index})));
        }
        ready(&mut book);
        book.start(2, false);
        let scope = book.rollback_scope(2).expect("b completed before c");
        assert_eq!(scope.redo, [1, 2]);
        assert_eq!(scope.checkpoint, Some(0), "back to the checkpoint after a");
        book.apply(Transition::RolledBack { index: 2, scope });
        assert_eq!(book.status(1), StepStatus::Pending);
        assert_eq!(book.step_output(1), None);
        assert_eq!(book.healing.completed, [0]);
        assert_eq!(ready(&mut book), [1]);
    }

    #[test]
    fn no_rollback_without_a_completed_predecessor() {
        let mut book = diamond("");
        assert!(book.rollback_scope(0).is_none());
        ready(&mut book);
        book.start(0, false);
        assert!(book.rollback_scope(1).is_none(), "a is still running");
    }

    #[test]
    fn restored_steps_keep_their_outputs_and_release_their_successors() {
        let mut book = diamond("");
        book.restore(
            0,
            StepState {
                status: StepStatus::Completed,
                output: Some(json!({"v": 7})),
                attempts: 3,
                ..StepState::default()
            },
        );
        book.recount();
        assert_eq!(ready(&mut book), [1, 2]);
        assert_eq!(book.step_output(0), Some(&json!({"v": 7})));
        let report = book.report(0).map(|(_, report)| report.clone()).unwrap();
        assert_eq!(report.attempts, Some(3));
    }

    #[test]
    fn the_end_cancels_running_steps_and_skips_the_rest_into_the_report() {
        let mut book = diamond("");
        ready(&mut book);
        book.apply(completed(0, json!({"v": 1})));
        ready(&mut book);
        book.start(1, false).called();
        book.start(2, true).began();
        let stopped = book.stop(RunStatus::Cancelled);
        assert_eq!(stopped, [(1, true), (2, true), (3, false)]);
        let at = Utc::now();
        let report = book.into_report(RunId::from("run-1"), RunStatus::Cancelled, at, at, None);
        let statuses: Vec<StepStatus> = report.steps.iter().map(|(_, r)| r.status).collect();
        assert_eq!(
            statuses,
            [
                StepStatus::Completed,
                StepStatus::Cancelled,
                StepStatus::Cancelled,
                StepStatus::Skipped
            ]
        );
        assert_eq!(report.steps[0].1.output, Some(json!({"v": 1})));
        assert_eq!(
            report.steps[3].1.reason.as_deref(),
            Some("not started: the run ended CANCELLED")
        );
        assert_eq!(
            report.steps[1].1.attempts,
            Some(1),
            "the call it made counts"
        );
    }

    #[test]
    fn a_step_launched_but_not_begun_when_the_run_ends_did_not_start() {
        let mut book = diamond("");
        ready(&mut book);
        let _progress = book.start(0, false);
        assert_eq!(
            book.stop(RunStatus::Failed),
            [(0, false), (1, false), (2, false), (3, false)]
        );
        let at = Utc::now();
        let report = book.into_report(RunId::from("run-1"), RunStatus::Failed, at, at, None);
        assert_eq!(report.steps[0].1.status, StepStatus::Skipped);
        assert_eq!(report.steps[0].1.attempts, None);
    }
}
