//! One run: the executor over a compiled plan.
//!
//! The run keeps, per step, a status, the output (shared, so snapshots are cheap) and the
//! report, all indexed by step index. A step becomes ready when every predecessor has
//! ended; ready steps start in plan order (one at a time under `SEQUENTIAL`), and the
//! steps in flight are driven together by a `FuturesUnordered` inside the run's future.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use std::future::poll_fn;
use std::task::Poll;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use serde_json::{Map, Value};

use super::call::{Failure, Snapshot, StepCtx, StepResult, Success, run_step};
use super::control::{Command, ControlGuard};
use super::report::{
    FailureKind, RunError, RunReport, RunStatus, StepError, StepReport, StepStatus,
};
use super::{Answer, Inner, RunEvent};
use crate::agent::RunId;
use crate::decision::DecisionRecord;
use crate::definition::{Concurrency, FailureHandling, StepId};
use crate::expr::{BindingValues, Context};
use crate::plan::{ExecutionPlan, PlanStep, StepKind};
use crate::store::{JournalEntry, RunState as Journaled, StepState};

type Running = FuturesUnordered<BoxFuture<'static, (usize, StepResult)>>;

pub(super) async fn execute(
    inner: Arc<Inner>,
    plan: Arc<ExecutionPlan>,
    run_id: RunId,
    input: Value,
    context: Arc<Context>,
    seed: u64,
    control: ControlGuard,
) -> RunReport {
    let started_at = inner.clock.now();
    let identity = Identity {
        run_id,
        input,
        seed,
        started_at,
    };
    let run = RunState::new(inner, plan, identity, context, control);
    run.drive(Start::Fresh).await
}

/// Continues a run from its journal's fold: steps that ended keep their status, output
/// and report; the others run as usual (calls re-made with the same idempotency keys).
pub(super) async fn resume(
    inner: Arc<Inner>,
    plan: Arc<ExecutionPlan>,
    journaled: Journaled,
    context: Arc<Context>,
    control: ControlGuard,
) -> RunReport {
    let Journaled {
        run_id,
        input,
        seed,
        started_at,
        steps,
        status,
        cancelled_by,
        ..
    } = journaled;
    let identity = Identity {
        run_id,
        input,
        seed,
        started_at,
    };
    let mut run = RunState::new(inner, plan, identity, context, control);
    run.paused = status == RunStatus::Paused;
    run.cancelled = cancelled_by.is_some();
    let began = !steps.is_empty();
    let plan = Arc::clone(&run.plan);
    for (id, step) in steps {
        let Some(index) = plan.index_of(id.as_str()) else {
            continue;
        };
        match step.status {
            StepStatus::Completed | StepStatus::Skipped | StepStatus::Failed => {
                run.restore(index, step);
            }
            // Answered but not yet acted on: the step uses the answer instead of waiting.
            _ => {
                if let Some(answer) = step.answer {
                    run.answers.insert(
                        index,
                        Answer {
                            approved: answer.approved,
                            by: answer.by,
                            comment: answer.comment,
                        },
                    );
                }
            }
        }
    }
    run.drive(Start::Resumed { began }).await
}

/// What a run is, from its start: fresh or journaled.
struct Identity {
    run_id: RunId,
    input: Value,
    seed: u64,
    started_at: DateTime<Utc>,
}

/// How a run's future begins.
#[derive(Clone, Copy)]
enum Start {
    /// A new run: journal `runStarted`, check the workflow's conditions.
    Fresh,
    /// A run recovered from its journal; `began` when a step entry was journaled (the
    /// workflow's conditions were checked then).
    Resumed { began: bool },
}

struct RunState {
    inner: Arc<Inner>,
    plan: Arc<ExecutionPlan>,
    run_id: RunId,
    input: Arc<Value>,
    context: Arc<Context>,
    seed: u64,
    started_at: DateTime<Utc>,
    status: Vec<StepStatus>,
    outputs: Vec<Option<Arc<Value>>>,
    /// Each step's report, in plan order (outputs join them at the end; see `outputs`).
    reports: Vec<(StepId, StepReport)>,
    unfinished_predecessors: Vec<usize>,
    /// Steps whose predecessors have all ended, lowest index first.
    ready: BinaryHeap<Reverse<usize>>,
    /// The parameters of running `decision` steps, recorded with their decision.
    decision_parameters: HashMap<usize, Value>,
    /// The first failure of a required step.
    error: Option<RunError>,
    /// Set when the run must stop starting steps and end with this status.
    end: Option<RunStatus>,
    /// Answers journaled before a restart, for approval steps that had not acted on them.
    answers: HashMap<usize, Answer>,
    /// The host's pause, resume and cancel commands.
    control: ControlGuard,
    /// Paused by the host: no step starts.
    paused: bool,
    /// Cancelled before a restart: the recovered run ends `CANCELLED` at once.
    cancelled: bool,
}

impl BindingValues for RunState {
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

/// The run's values plus a step's own output (for `outputMapping`).
struct WithOwn<'a> {
    run: &'a RunState,
    own: &'a Value,
}

impl BindingValues for WithOwn<'_> {
    fn input(&self) -> &Value {
        self.run.input()
    }

    fn step_output(&self, index: usize) -> Option<&Value> {
        self.run.step_output(index)
    }

    fn own_output(&self) -> Option<&Value> {
        Some(self.own)
    }
}

impl RunState {
    fn new(
        inner: Arc<Inner>,
        plan: Arc<ExecutionPlan>,
        identity: Identity,
        context: Arc<Context>,
        control: ControlGuard,
    ) -> Self {
        let Identity {
            run_id,
            input,
            seed,
            started_at,
        } = identity;
        let count = plan.steps().len();
        let reports = plan
            .steps()
            .iter()
            .map(|step| (step.id().clone(), StepReport::default()))
            .collect();
        RunState {
            inner,
            plan,
            run_id,
            input: Arc::new(input),
            context,
            seed,
            started_at,
            status: vec![StepStatus::Pending; count],
            outputs: vec![None; count],
            reports,
            unfinished_predecessors: vec![0; count],
            ready: BinaryHeap::new(),
            decision_parameters: HashMap::new(),
            error: None,
            end: None,
            answers: HashMap::new(),
            control,
            paused: false,
            cancelled: false,
        }
    }

    /// Step `index` ended before a restart, as its journal says.
    fn restore(&mut self, index: usize, step: StepState) {
        let plan = Arc::clone(&self.plan);
        let Some(plan_step) = plan.step(index) else {
            return;
        };
        let report = &mut self.reports[index].1;
        report.status = step.status;
        report.attempts = plan_step.agent_task().is_some().then_some(step.attempts);
        report.agent_id = step.agent_id;
        report.agent_ids = step.agent_ids;
        report.approved_by = step.approved_by;
        report.reason = step.reason;
        report.error = step.error;
        self.status[index] = step.status;
        self.outputs[index] = step.output.map(Arc::new);
        if step.status == StepStatus::Failed && !plan_step.is_optional() {
            if self.error.is_none() {
                self.error = report.error.as_ref().map(|error| RunError {
                    step_id: Some(plan_step.id().clone()),
                    kind: error.kind,
                    message: error.message.clone(),
                });
            }
            if self.plan.policy().failure_handling == FailureHandling::StopOnFailure {
                self.end = Some(RunStatus::Failed);
            }
        }
    }

    async fn drive(mut self, start: Start) -> RunReport {
        let inner = Arc::clone(&self.inner);
        if let Start::Fresh = start {
            inner
                .journal(&self.run_id, || {
                    vec![JournalEntry::RunStarted {
                        run_id: self.run_id.clone(),
                        workflow_id: self.plan.workflow_id().to_owned(),
                        version: self.plan.definition().version.clone().unwrap_or_default(),
                        input: (*self.input).clone(),
                        seed: self.seed,
                        at: self.started_at,
                    }]
                })
                .await;
        }
        inner.emit(|| RunEvent::RunStarted {
            run_id: self.run_id.clone(),
            workflow_id: self.plan.workflow_id().to_owned(),
            at: self.started_at,
        });
        if self.cancelled {
            return self.finish(RunStatus::Cancelled).await;
        }
        if !matches!(start, Start::Resumed { began: true }) {
            if let Some(early) = self.check_start() {
                return self.finish(early).await;
            }
        }
        for index in 0..self.plan.steps().len() {
            // Steps restored as ended do not hold their successors back.
            let count = self
                .plan
                .predecessors(index)
                .filter(|&(predecessor, _)| !self.status[predecessor].is_final())
                .count();
            self.unfinished_predecessors[index] = count;
            if count == 0 && self.status[index] == StepStatus::Pending {
                self.ready.push(Reverse(index));
            }
        }
        let mut running: Running = FuturesUnordered::new();
        let deadline = self.plan.timeout().map(|timeout| {
            let at = chrono::Duration::from_std(timeout)
                .ok()
                .and_then(|timeout| self.started_at.checked_add_signed(timeout));
            match at {
                // A recovered run keeps the deadline it started with.
                Some(at) => inner.clock.sleep_until(at),
                None => inner.clock.sleep(timeout),
            }
        });
        let mut deadline = deadline.map(FutureExt::fuse);
        loop {
            if !self.paused {
                self.start_ready(&mut running).await;
            }
            // A paused run waits for its host, unless nothing is left to start.
            if self.end.is_some() || (running.is_empty() && (!self.paused || self.ready.is_empty()))
            {
                break;
            }
            let control = self.control.control();
            let wake = poll_fn(|cx| {
                if let Poll::Ready(command) = control.poll_command(cx) {
                    return Poll::Ready(Wake::Command(command));
                }
                if let Some(timer) = deadline.as_mut() {
                    if timer.poll_unpin(cx).is_ready() {
                        return Poll::Ready(Wake::Deadline);
                    }
                }
                match running.poll_next_unpin(cx) {
                    Poll::Ready(Some(finished)) => Poll::Ready(Wake::Ended(finished)),
                    // Nothing runs (the run is paused): wait for a command or the deadline.
                    Poll::Ready(None) | Poll::Pending => Poll::Pending,
                }
            })
            .await;
            match wake {
                Wake::Ended((index, result)) => self.step_ended(index, result).await,
                Wake::Command(command) => self.command(command).await,
                Wake::Deadline => {
                    self.end = Some(RunStatus::TimedOut);
                    self.error = Some(RunError {
                        step_id: None,
                        kind: FailureKind::WorkflowTimeout,
                        message: format!(
                            "the workflow's timeout of {} ms passed",
                            self.plan.timeout().map_or(0, |timeout| timeout.as_millis())
                        ),
                    });
                    break;
                }
            }
        }
        // Whatever still runs is stopped: dropping the futures frees agents' slots.
        drop(running);
        let status = self.end.unwrap_or(if self.error.is_some() {
            RunStatus::Failed
        } else {
            RunStatus::Completed
        });
        self.finish(status).await
    }

    /// Acts on a host command, journaled first.
    async fn command(&mut self, command: Command) {
        let now = self.inner.clock.now();
        match command {
            Command::Pause if !self.paused => {
                self.inner
                    .journal(&self.run_id, || vec![JournalEntry::RunPaused { at: now }])
                    .await;
                self.paused = true;
                self.inner.emit(|| RunEvent::RunPaused {
                    run_id: self.run_id.clone(),
                    at: now,
                });
            }
            Command::Resume if self.paused => {
                self.inner
                    .journal(&self.run_id, || vec![JournalEntry::RunResumed { at: now }])
                    .await;
                self.paused = false;
                self.inner.emit(|| RunEvent::RunResumed {
                    run_id: self.run_id.clone(),
                    at: now,
                });
            }
            Command::Pause | Command::Resume => {}
            Command::Cancel { by } => {
                self.inner
                    .journal(&self.run_id, || {
                        vec![JournalEntry::RunCancelled {
                            by: by.clone(),
                            at: now,
                        }]
                    })
                    .await;
                self.inner.emit(|| RunEvent::RunCancelled {
                    run_id: self.run_id.clone(),
                    by,
                    at: now,
                });
                self.end = Some(RunStatus::Cancelled);
            }
        }
    }

    /// Workflow conditions and input paths, checked before any step runs.
    fn check_start(&mut self) -> Option<RunStatus> {
        let plan = Arc::clone(&self.plan);
        for condition in plan.conditions() {
            match condition.evaluate(&*self, &self.context) {
                Ok(true) => {}
                Ok(false) => {
                    let reason = format!("workflow condition false: {}", condition.text());
                    self.skip_all(&reason);
                    return Some(RunStatus::Skipped);
                }
                Err(error) => {
                    self.error = Some(RunError {
                        step_id: None,
                        kind: FailureKind::Condition,
                        message: format!("workflow condition: {error}"),
                    });
                    return Some(RunStatus::Failed);
                }
            }
        }
        for binding in plan.input_bindings() {
            if let Err(error) = binding.resolve(&*self) {
                self.error = Some(RunError {
                    step_id: None,
                    kind: FailureKind::Binding,
                    message: format!("missing input: {error}"),
                });
                return Some(RunStatus::Failed);
            }
        }
        None
    }

    fn skip_all(&mut self, reason: &str) {
        for (_, report) in &mut self.reports {
            report.reason = Some(reason.to_owned());
        }
    }

    /// Starts ready steps (or settles them at once: skipped, failed, condition steps).
    async fn start_ready(&mut self, running: &mut Running) {
        let sequential = self.plan.policy().concurrency == Concurrency::Sequential;
        while let Some(&Reverse(index)) = self.ready.peek() {
            if self.end.is_some() || (sequential && !running.is_empty()) {
                return;
            }
            self.ready.pop();
            debug_assert_eq!(self.status[index], StepStatus::Pending, "ready once");
            let plan = Arc::clone(&self.plan);
            let Some(step) = plan.step(index) else {
                continue;
            };
            match self.prepare(step) {
                Prepared::Skip(reason) => self.skip(index, reason).await,
                Prepared::Fail(kind, message) => {
                    self.fail(
                        index,
                        Failure {
                            kind,
                            message,
                            attempts: 0,
                            agent: None,
                        },
                    )
                    .await;
                }
                Prepared::Done(output) => {
                    self.complete(
                        index,
                        Success {
                            output,
                            attempts: 0,
                            agent: None,
                            agents: None,
                            approved_by: None,
                        },
                    )
                    .await;
                }
                Prepared::Start(parameters) => {
                    let waiting = matches!(step.kind(), StepKind::HumanApproval { .. });
                    self.status[index] = if waiting {
                        StepStatus::Waiting
                    } else {
                        StepStatus::Running
                    };
                    if matches!(step.kind(), StepKind::Decision(_)) {
                        self.decision_parameters.insert(index, parameters.clone());
                    }
                    let ctx = StepCtx {
                        inner: Arc::clone(&self.inner),
                        plan: Arc::clone(&self.plan),
                        run_id: self.run_id.clone(),
                        index,
                        seed: self.seed,
                        context: Arc::clone(&self.context),
                        snapshot: matches!(step.kind(), StepKind::Loop { .. })
                            .then(|| self.snapshot(step)),
                        answer: if self.answers.is_empty() {
                            None
                        } else {
                            self.answers.remove(&index)
                        },
                    };
                    running.push(
                        run_step(ctx, parameters)
                            .map(move |result| (index, result))
                            .boxed(),
                    );
                }
            }
        }
    }

    /// Decides what a ready step does: skip, fail, finish at once, or start.
    fn prepare(&self, step: &PlanStep) -> Prepared {
        if let Some(reason) = self.skip_reason(step) {
            return Prepared::Skip(reason);
        }
        let condition_failed = |which: &str, error: crate::expr::EvalError| {
            Prepared::Fail(
                FailureKind::Condition,
                format!("step `{}`: {which}: {error}", step.id()),
            )
        };
        if let Some(condition) = step.condition() {
            match condition.evaluate(self, &self.context) {
                Ok(true) => {}
                Ok(false) => {
                    return Prepared::Skip(format!("condition false: {}", condition.text()));
                }
                Err(error) => return condition_failed("condition", error),
            }
        }
        if let Some(condition) = step.skip_condition() {
            match condition.evaluate(self, &self.context) {
                Ok(false) => {}
                Ok(true) => {
                    return Prepared::Skip(format!("skip condition true: {}", condition.text()));
                }
                Err(error) => return condition_failed("skipCondition", error),
            }
        }
        let parameters = match step.kind() {
            StepKind::Condition { branches, default } => {
                for branch in branches.iter() {
                    match branch.when.evaluate(self, &self.context) {
                        Ok(true) => {
                            return Prepared::Done(serde_json::json!({"branch": branch.name}));
                        }
                        Ok(false) => {}
                        Err(error) => {
                            return condition_failed(&format!("branch `{}`", branch.name), error);
                        }
                    }
                }
                return Prepared::Done(serde_json::json!({"branch": default}));
            }
            StepKind::HumanApproval { parameters, .. } => parameters,
            _ => match step.agent_task() {
                Some(task) => &task.parameters,
                None => {
                    return Prepared::Fail(FailureKind::Permanent, "step has no task".to_owned());
                }
            },
        };
        match parameters.resolve(self) {
            Ok(parameters) => Prepared::Start(parameters),
            Err(error) => Prepared::Fail(
                FailureKind::Binding,
                format!("step `{}`: {error}", step.id()),
            ),
        }
    }

    /// Why a step cannot run because of its predecessors, if it cannot.
    fn skip_reason(&self, step: &PlanStep) -> Option<String> {
        for &input in step.data_inputs() {
            let status = self.status.get(input).copied().unwrap_or_default();
            if status != StepStatus::Completed {
                let id = self
                    .plan
                    .step(input)
                    .map(|input| input.id().as_str())
                    .unwrap_or("?");
                return Some(format!("bound step `{id}` {}", ended_how(status)));
            }
        }
        if self.plan.policy().failure_handling == FailureHandling::ContinueOnFailure {
            for (predecessor, _) in self.plan.predecessors(step.index()) {
                let Some(before) = self.plan.step(predecessor) else {
                    continue;
                };
                if self.status.get(predecessor) == Some(&StepStatus::Failed)
                    && !before.is_optional()
                {
                    return Some(format!("depends on failed step `{}`", before.id()));
                }
            }
        }
        None
    }

    /// The input and the outputs of the steps `step` binds to, for its `loop.until`.
    fn snapshot(&self, step: &PlanStep) -> Snapshot {
        Snapshot {
            input: Arc::clone(&self.input),
            outputs: step
                .data_inputs()
                .iter()
                .filter_map(|&index| Some((index, Arc::clone(self.outputs.get(index)?.as_ref()?))))
                .collect(),
        }
    }

    async fn step_ended(&mut self, index: usize, result: StepResult) {
        match result {
            Ok(success) => self.complete(index, success).await,
            Err(failure) => self.fail(index, failure).await,
        }
    }

    async fn complete(&mut self, index: usize, success: Success) {
        let plan = Arc::clone(&self.plan);
        let Some(step) = plan.step(index) else { return };
        let Success {
            output,
            attempts,
            agent,
            agents,
            approved_by,
        } = success;
        let output = match step.output_mapping() {
            None => output,
            Some(mapping) => {
                let mapped = mapping.resolve(&WithOwn {
                    run: self,
                    own: &output,
                });
                match mapped {
                    Ok(Value::Object(extra)) => with_fields(output, extra),
                    Ok(_) => output,
                    Err(error) => {
                        return self
                            .fail(
                                index,
                                Failure {
                                    kind: FailureKind::Binding,
                                    message: format!(
                                        "step `{}`: outputMapping: {error}",
                                        step.id()
                                    ),
                                    attempts,
                                    agent,
                                },
                            )
                            .await;
                    }
                }
            }
        };
        let now = self.inner.clock.now();
        // Journaled before successors can read the output (or a decision is recorded).
        self.inner
            .journal(&self.run_id, || {
                vec![JournalEntry::StepCompleted {
                    step_id: step.id().clone(),
                    output: output.clone(),
                    attempts,
                    agent_id: agent.clone(),
                    agent_ids: agents.clone(),
                    approved_by: approved_by.clone(),
                    at: now,
                }]
            })
            .await;
        if let Some(parameters) = self.decision_parameters.remove(&index) {
            self.inner.decisions.record(DecisionRecord {
                run_id: self.run_id.clone(),
                workflow_id: self.plan.workflow_id().to_owned(),
                step_id: step.id().clone(),
                task_type: step
                    .agent_task()
                    .map(|task| task.task_type.clone())
                    .unwrap_or_else(|| "".into()),
                agent_id: agent.clone(),
                parameters,
                decision: output.clone(),
                at: now,
            });
        }
        let calls_agents = step.agent_task().is_some();
        let report = &mut self.reports[index].1;
        report.status = StepStatus::Completed;
        report.attempts = calls_agents.then_some(attempts);
        report.agent_id = agent.clone();
        report.agent_ids = agents;
        report.approved_by = approved_by;
        self.status[index] = StepStatus::Completed;
        self.outputs[index] = Some(Arc::new(output));
        self.inner.emit(|| RunEvent::StepCompleted {
            run_id: self.run_id.clone(),
            step_id: step.id().clone(),
            agent_id: agent,
            attempts,
            at: now,
        });
        self.release(index);
    }

    async fn fail(&mut self, index: usize, failure: Failure) {
        let plan = Arc::clone(&self.plan);
        let Some(step) = plan.step(index) else { return };
        self.decision_parameters.remove(&index);
        let Failure {
            kind,
            message,
            attempts,
            agent,
        } = failure;
        self.inner
            .journal(&self.run_id, || {
                vec![JournalEntry::StepFailed {
                    step_id: step.id().clone(),
                    kind,
                    message: message.clone(),
                    attempts,
                    at: self.inner.clock.now(),
                }]
            })
            .await;
        let report = &mut self.reports[index].1;
        report.status = StepStatus::Failed;
        report.attempts = step.agent_task().is_some().then_some(attempts);
        report.agent_id = agent;
        report.error = Some(StepError {
            kind,
            message: message.clone(),
        });
        self.status[index] = StepStatus::Failed;
        self.inner.emit(|| RunEvent::StepFailed {
            run_id: self.run_id.clone(),
            step_id: step.id().clone(),
            kind,
            message: message.clone(),
            at: self.inner.clock.now(),
        });
        if !step.is_optional() {
            if self.error.is_none() {
                self.error = Some(RunError {
                    step_id: Some(step.id().clone()),
                    kind,
                    message,
                });
            }
            if self.plan.policy().failure_handling == FailureHandling::StopOnFailure {
                self.end = Some(RunStatus::Failed);
                return;
            }
        }
        self.release(index);
    }

    async fn skip(&mut self, index: usize, reason: String) {
        let plan = Arc::clone(&self.plan);
        let Some(step) = plan.step(index) else { return };
        self.inner
            .journal(&self.run_id, || {
                vec![JournalEntry::StepSkipped {
                    step_id: step.id().clone(),
                    reason: reason.clone(),
                    at: self.inner.clock.now(),
                }]
            })
            .await;
        self.status[index] = StepStatus::Skipped;
        self.inner.emit(|| RunEvent::StepSkipped {
            run_id: self.run_id.clone(),
            step_id: step.id().clone(),
            reason: reason.clone(),
            at: self.inner.clock.now(),
        });
        let report = &mut self.reports[index].1;
        report.status = StepStatus::Skipped;
        report.reason = Some(reason);
        self.release(index);
    }

    /// Step `index` ended: its successors may now be ready.
    fn release(&mut self, index: usize) {
        let successors: Vec<usize> = self
            .plan
            .successors(index)
            .map(|(successor, _)| successor)
            .collect();
        for successor in successors {
            if let Some(count) = self.unfinished_predecessors.get_mut(successor) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.ready.push(Reverse(successor));
                }
            }
        }
    }

    async fn finish(mut self, status: RunStatus) -> RunReport {
        let now = self.inner.clock.now();
        let plan = Arc::clone(&self.plan);
        // Steps the end stops (`true`: cancelled while running) or leaves unstarted.
        let mut stopped: Vec<(usize, bool)> = Vec::new();
        for index in 0..plan.steps().len() {
            match self.status[index] {
                StepStatus::Running | StepStatus::Waiting => {
                    self.status[index] = StepStatus::Cancelled;
                    self.reports[index].1.status = StepStatus::Cancelled;
                    self.reports[index].1.reason = Some(format!("the run ended {status}"));
                    stopped.push((index, true));
                }
                StepStatus::Pending => {
                    let report = &mut self.reports[index].1;
                    report.status = StepStatus::Skipped;
                    report
                        .reason
                        .get_or_insert_with(|| format!("not started: the run ended {status}"));
                    stopped.push((index, false));
                }
                _ => {}
            }
        }
        // One append for the end: unstarted steps skipped, then `runEnded` (which
        // cancels, in the fold, the steps still running).
        self.inner
            .journal(&self.run_id, || {
                let skipped =
                    stopped
                        .iter()
                        .filter(|&&(_, cancelled)| !cancelled)
                        .map(|&(index, _)| JournalEntry::StepSkipped {
                            step_id: self.reports[index].0.clone(),
                            reason: self.reports[index].1.reason.clone().unwrap_or_default(),
                            at: now,
                        });
                skipped
                    .chain([JournalEntry::RunEnded {
                        status,
                        error: self.error.clone(),
                        at: now,
                    }])
                    .collect()
            })
            .await;
        for &(index, cancelled) in &stopped {
            let step_id = &self.reports[index].0;
            if cancelled {
                self.inner.emit(|| RunEvent::StepCancelled {
                    run_id: self.run_id.clone(),
                    step_id: step_id.clone(),
                    at: now,
                });
            } else {
                self.inner.emit(|| RunEvent::StepSkipped {
                    run_id: self.run_id.clone(),
                    step_id: step_id.clone(),
                    reason: self.reports[index].1.reason.clone().unwrap_or_default(),
                    at: now,
                });
            }
        }
        // Outputs join their reports now (kept once, shared, while the run went on).
        for ((_, report), output) in self.reports.iter_mut().zip(&mut self.outputs) {
            report.output = output
                .take()
                .map(|output| Arc::try_unwrap(output).unwrap_or_else(|shared| (*shared).clone()));
        }
        self.inner.emit(|| RunEvent::RunEnded {
            run_id: self.run_id.clone(),
            status,
            at: now,
        });
        RunReport {
            run_id: self.run_id,
            workflow_id: plan.workflow_id().to_owned(),
            status,
            started_at: self.started_at,
            ended_at: now,
            steps: self.reports,
            error: self.error,
        }
    }
}

/// What woke the run's loop.
enum Wake {
    /// A step's future ended.
    Ended((usize, StepResult)),
    /// The host sent a command.
    Command(Command),
    /// The workflow's timeout passed.
    Deadline,
}

enum Prepared {
    Skip(String),
    Fail(FailureKind, String),
    Done(Value),
    Start(Value),
}

fn ended_how(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Skipped => "was skipped",
        StepStatus::Failed => "failed",
        StepStatus::Cancelled => "was cancelled",
        _ => "did not complete",
    }
}

/// `output` with `extra` fields added (an output that is not an object becomes `value`).
fn with_fields(output: Value, extra: Map<String, Value>) -> Value {
    let mut fields = match output {
        Value::Object(fields) => fields,
        other => Map::from_iter([("value".to_owned(), other)]),
    };
    fields.extend(extra);
    Value::Object(fields)
}
