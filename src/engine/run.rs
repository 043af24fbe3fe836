//! One run: the executor over a compiled plan.
//!
//! The run keeps, per step, a status, the output (shared, so snapshots are cheap) and the
//! report, all indexed by step index. A step becomes ready when every predecessor has
//! ended; ready steps start in plan order (one at a time under `SEQUENTIAL`), and the
//! steps in flight are driven together by a `FuturesUnordered` inside the run's future.
//! With a resource manager, the run first waits for the workflow's
//! `resourceRequirements` (polled beside host commands and the deadline, so a run that
//! waits can still be cancelled or time out), and the future of a step with requirements
//! waits for them before the step's work, holding the guard until that work ends.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
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
use super::durable::Batch;
use super::heal::{self, Healing};
use super::report::{RunReport, StepReport};
use super::{Answer, Inner, RunEvent};
use crate::agent::AgentId;
use crate::decision::DecisionRecord;
use crate::definition::{Concurrency, FailureHandling, RecoveryStrategy, StepId};
use crate::expr::{BindingValues, Context};
use crate::plan::{ExecutionPlan, PlanStep, Resources, StepKind};
use crate::resource::{AllocationGuard, ResourceError, ResourceManager, ResourceRequest};
use crate::run::{
    FailureKind, RecoveryDecision, RunError, RunId, RunStatus, StepError, StepStatus,
};
use crate::store::{JournalEntry, RunState as Journaled, StepState};

type Running = FuturesUnordered<BoxFuture<'static, (usize, StepResult)>>;

/// The wait for the workflow's `resourceRequirements`.
type Admission = BoxFuture<'static, Result<AllocationGuard, ResourceError>>;

pub(super) async fn execute(
    inner: Arc<Inner>,
    plan: Arc<ExecutionPlan>,
    identity: Identity,
    context: Arc<Context>,
    control: ControlGuard,
) -> RunReport {
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
        checkpoints,
        trigger,
        ..
    } = journaled;
    let identity = Identity {
        run_id,
        input,
        seed,
        started_at,
        trigger,
    };
    let mut run = RunState::new(inner, plan, identity, context, control);
    run.paused = status == RunStatus::Paused;
    run.cancelled = cancelled_by.is_some();
    let began = !steps.is_empty();
    let plan = Arc::clone(&run.plan);
    for (id, mut step) in steps {
        let Some(index) = plan.index_of(id.as_str()) else {
            continue;
        };
        run.healing.set_generation(index, step.generation);
        run.reports[index].1.recoveries = std::mem::take(&mut step.recoveries);
        match step.status {
            StepStatus::Completed | StepStatus::Skipped | StepStatus::Failed => {
                run.restore(index, step);
            }
            // Answered but not yet acted on: the step uses the answer instead of waiting.
            _ => {
                // Calls made before the restart count (a cut-off call was made).
                run.healing.set_prior_attempts(index, step.attempts);
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
    // Checkpoints, in order, are the steps completed (and not rolled back since).
    run.healing.completed = checkpoints
        .iter()
        .filter_map(|id| plan.index_of(id.as_str()))
        .collect();
    run.drive(Start::Resumed { began }).await
}

/// What a run is, from its start: fresh or journaled.
pub(super) struct Identity {
    pub(super) run_id: RunId,
    pub(super) input: Value,
    pub(super) seed: u64,
    pub(super) started_at: DateTime<Utc>,
    /// The trigger that started it, if one did.
    pub(super) trigger: Option<String>,
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
    /// Self-healing's bookkeeping.
    healing: Healing,
    /// The trigger that started the run, if one did.
    trigger: Option<String>,
    /// With a store: the entries journaled and not yet appended (group commit).
    batch: Option<Arc<Batch>>,
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
            trigger,
        } = identity;
        let count = plan.steps().len();
        let reports = plan
            .steps()
            .iter()
            .map(|step| (step.id().clone(), StepReport::default()))
            .collect();
        RunState {
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
            healing: Healing::default(),
            trigger,
            batch: inner.has_store().then(Arc::default),
            inner,
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
            inner.defer(&self.batch, || {
                vec![JournalEntry::RunStarted {
                    run_id: self.run_id.clone(),
                    workflow_id: self.plan.workflow_id().to_owned(),
                    version: self.plan.definition().version.clone().unwrap_or_default(),
                    input: (*self.input).clone(),
                    seed: self.seed,
                    at: self.started_at,
                }]
                .into_iter()
                .chain(
                    self.trigger
                        .clone()
                        .map(|trigger| JournalEntry::RunTriggered {
                            trigger,
                            at: self.started_at,
                        }),
                )
                .collect()
            });
        }
        inner.emit(|| RunEvent::RunStarted {
            run_id: self.run_id.clone(),
            workflow_id: self.plan.workflow_id().to_owned(),
            trigger: self.trigger.clone(),
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
        // The workflow's resources: no step starts before they are granted; held to the end.
        let mut admission = self.admission();
        let mut held: Option<AllocationGuard> = None;
        loop {
            if !self.paused && admission.is_none() {
                self.start_ready(&mut running).await;
            }
            // A paused run waits for its host, unless nothing is left to start.
            if self.end.is_some()
                || (admission.is_none()
                    && running.is_empty()
                    && (!self.paused || self.ready.is_empty()))
            {
                break;
            }
            let control = self.control.control();
            let batch = self.batch.as_deref();
            let wake = poll_fn(|cx| {
                if let Poll::Ready(command) = control.poll_command(cx) {
                    return Poll::Ready(Wake::Command(command));
                }
                if let Some(timer) = deadline.as_mut() {
                    if timer.poll_unpin(cx).is_ready() {
                        return Poll::Ready(Wake::Deadline);
                    }
                }
                if let Some(Poll::Ready(granted)) =
                    admission.as_mut().map(|waiting| waiting.poll_unpin(cx))
                {
                    return Poll::Ready(Wake::Admitted(granted));
                }
                if let Poll::Ready(Some(finished)) = running.poll_next_unpin(cx) {
                    return Poll::Ready(Wake::Ended(finished));
                }
                // The run would wait: what it journaled since it last did is appended
                // now, in one transaction (and the steps waiting for it go on).
                if batch.is_some_and(|batch| batch.is_pending()) {
                    return Poll::Ready(Wake::Flush);
                }
                // Nothing runs, or nothing ends yet: wait for it, a command or the
                // deadline.
                Poll::Pending
            })
            .await;
            match wake {
                Wake::Ended((index, result)) => self.step_ended(index, result).await,
                Wake::Command(command) => self.command(command).await,
                Wake::Flush => self.flush().await,
                Wake::Admitted(granted) => {
                    admission = None;
                    match granted {
                        Ok(guard) => held = Some(guard),
                        Err(error) => self.cannot_run(
                            None,
                            format!("the workflow's resourceRequirements: {error}"),
                        ),
                    }
                }
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
        // Whatever still runs is stopped: dropping the futures frees agents' slots and
        // the steps' resources; then the run's own resources go back.
        drop(running);
        drop(admission);
        drop(held);
        let status = self.end.unwrap_or(if self.error.is_some() {
            RunStatus::Failed
        } else {
            RunStatus::Completed
        });
        self.finish(status).await
    }

    /// The wait for the workflow's `resourceRequirements`, when the engine has a resource
    /// manager and the workflow asks for some of what it pools. A plan the pool can never
    /// serve (one not checked when it was added) ends the run `FAILED` at once instead.
    fn admission(&mut self) -> Option<Admission> {
        let manager = Arc::clone(self.inner.resources.as_ref()?);
        if let Err(problems) = manager.check_plan(&self.plan) {
            let step = problems
                .first()
                .and_then(|problem| problem.at.step_id().cloned());
            let message = problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            self.cannot_run(step, message);
            return None;
        }
        let request = request_for(&*manager, self.plan.resources())?;
        Some(async move { manager.allocate_resources(request).await }.boxed())
    }

    /// The run ends `FAILED`: its resources can never be granted.
    fn cannot_run(&mut self, step_id: Option<StepId>, message: String) {
        self.error.get_or_insert(RunError {
            step_id,
            kind: FailureKind::Resources,
            message,
        });
        self.end = Some(RunStatus::Failed);
    }

    /// Appends what the batch holds (group commit); see `durable`.
    async fn flush(&self) {
        if let Some(batch) = &self.batch {
            self.inner.flush(&self.run_id, batch, Vec::new()).await;
        }
    }

    /// Acts on a host command, journaled first.
    async fn command(&mut self, command: Command) {
        let now = self.inner.clock.now();
        match command {
            Command::Pause if !self.paused => {
                self.inner
                    .defer(&self.batch, || vec![JournalEntry::RunPaused { at: now }]);
                self.paused = true;
                self.inner.emit(|| RunEvent::RunPaused {
                    run_id: self.run_id.clone(),
                    at: now,
                });
            }
            Command::Resume if self.paused => {
                self.inner
                    .defer(&self.batch, || vec![JournalEntry::RunResumed { at: now }]);
                self.paused = false;
                self.inner.emit(|| RunEvent::RunResumed {
                    run_id: self.run_id.clone(),
                    at: now,
                });
            }
            Command::Pause | Command::Resume => {}
            Command::Cancel { by } => {
                self.inner.defer(&self.batch, || {
                    vec![JournalEntry::RunCancelled {
                        by: by.clone(),
                        at: now,
                    }]
                });
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
                        excluded: self.healing.failed_agents(index).to_vec(),
                        generation: self.healing.generation(index),
                        batch: self.batch.clone(),
                    };
                    let work = run_step(ctx, parameters);
                    let requirements = step.resources().and_then(|needs| {
                        let manager = self.inner.resources.as_ref()?;
                        Some((Arc::clone(manager), request_for(&**manager, [needs])?))
                    });
                    running.push(match requirements {
                        None => work.map(move |result| (index, result)).boxed(),
                        Some((manager, request)) => {
                            holding(manager, request, step.id().clone(), work)
                                .map(move |result| (index, result))
                                .boxed()
                        }
                    });
                }
            }
        }
    }

    /// Decides what a ready step does: skip, fail, finish at once, or start.
    fn prepare(&self, step: &PlanStep) -> Prepared {
        if let Some(owner) = step.fallback_for() {
            if !self.healing.standing_in.contains_key(&step.index()) {
                let owner = self
                    .plan
                    .step(owner)
                    .map_or("?", |owner| owner.id().as_str());
                return Prepared::Skip(format!("fallback of `{owner}`: not needed"));
            }
        }
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
                        let failure = Failure {
                            kind: FailureKind::Binding,
                            message: format!("step `{}`: outputMapping: {error}", step.id()),
                            attempts,
                            agent,
                        };
                        return self.fail(index, failure).await;
                    }
                }
            }
        };
        let attempts = attempts + self.healing.prior_attempts(index);
        // A fallback that completes completes the step it stands in for, too.
        let owner = self.healing.standing_in.remove(&index);
        let owner_output = owner.map(|_| output.clone());
        let owner_agent = owner.and(agent.clone());
        self.record_completion(index, output, attempts, agent, agents, approved_by)
            .await;
        if let (Some(owner), Some(output)) = (owner, owner_output) {
            self.healing.failures.remove(&owner);
            let attempts = self.healing.prior_attempts(owner);
            self.record_completion(owner, output, attempts, owner_agent, None, None)
                .await;
        }
    }

    /// Step `index` completed with `output`: journaled (with a checkpoint), then visible.
    async fn record_completion(
        &mut self,
        index: usize,
        output: Value,
        attempts: u32,
        agent: Option<AgentId>,
        agents: Option<Vec<AgentId>>,
        approved_by: Option<String>,
    ) {
        let plan = Arc::clone(&self.plan);
        let Some(step) = plan.step(index) else { return };
        let now = self.inner.clock.now();
        // Journaled before successors can read the output (or a decision is recorded).
        self.inner.defer(&self.batch, || {
            vec![
                JournalEntry::StepCompleted {
                    step_id: step.id().clone(),
                    output: output.clone(),
                    attempts,
                    agent_id: agent.clone(),
                    agent_ids: agents.clone(),
                    approved_by: approved_by.clone(),
                    at: now,
                },
                JournalEntry::Checkpoint {
                    after_step: step.id().clone(),
                    at: now,
                },
            ]
        });
        self.healing.completed.push(index);
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
        report.error = None;
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

    /// Step `index` failed: self-healing recovers it if a strategy fits, else it fails
    /// for good (and a fallback that fails fails the step it stands in for).
    async fn fail(&mut self, index: usize, failure: Failure) {
        let mut next = Some((index, failure));
        while let Some((index, failure)) = next.take() {
            next = self.fail_one(index, failure).await;
        }
    }

    /// Handles one failure; returns the failure of the step a failed fallback stood in
    /// for, which is handled next.
    async fn fail_one(&mut self, index: usize, failure: Failure) -> Option<(usize, Failure)> {
        let plan = Arc::clone(&self.plan);
        let step = plan.step(index)?;
        self.decision_parameters.remove(&index);
        let Failure {
            kind,
            message,
            attempts,
            agent,
        } = failure;
        let attempts = attempts + self.healing.prior_attempts(index);
        let now = self.inner.clock.now();
        let failed = JournalEntry::StepFailed {
            step_id: step.id().clone(),
            kind,
            message: message.clone(),
            attempts,
            at: now,
        };
        if let Some(agent) = &agent {
            self.healing.failed_agent(index, agent);
        }
        if let Some(recovery) = self.heal(step, kind, &message) {
            self.inner.defer(&self.batch, || {
                vec![
                    failed,
                    JournalEntry::RecoveryDecided {
                        step_id: step.id().clone(),
                        decision: recovery.decision.clone(),
                        at: now,
                    },
                ]
            });
            self.reports[index]
                .1
                .recoveries
                .push(recovery.decision.clone());
            self.healing.set_prior_attempts(index, attempts);
            self.inner.emit(|| RunEvent::StepRecovering {
                run_id: self.run_id.clone(),
                step_id: step.id().clone(),
                decision: recovery.decision.clone(),
                at: now,
            });
            let failure = Failure {
                kind,
                message,
                attempts: 0,
                agent,
            };
            self.recover(index, recovery, failure).await;
            return None;
        }
        self.inner.defer(&self.batch, || vec![failed]);
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
            at: now,
        });
        // A fallback that failed: the step it stood in for fails with its own failure.
        let owner = self.healing.standing_in.remove(&index).and_then(|owner| {
            let mut failure = self.healing.failures.remove(&owner)?;
            failure.message = format!(
                "{}; its fallback step `{}` failed too: {message}",
                failure.message,
                step.id()
            );
            Some((owner, failure))
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
                return owner;
            }
        }
        self.release(index);
        owner
    }

    /// The recovery self-healing chooses for step `step`'s failure, if one fits.
    fn heal(&self, step: &PlanStep, kind: FailureKind, message: &str) -> Option<heal::Chosen> {
        let index = step.index();
        let untried_agent = step.calls_one_agent()
            && step.agent_task().is_some_and(|task| {
                !self
                    .inner
                    .registry
                    .candidates(task, self.healing.failed_agents(index))
                    .is_empty()
            });
        let rollback = if step.recovery().allows(RecoveryStrategy::Rollback) {
            self.rollback_scope(index)
        } else {
            None
        };
        let fallback = step.recovery().fallback.filter(|&fallback| {
            self.status.get(fallback) == Some(&StepStatus::Pending)
                && !self.healing.standing_in.contains_key(&fallback)
        });
        let situation = heal::Situation {
            step,
            kind,
            applied: self.healing.applied(index),
            untried_agent,
            rollback: rollback.as_ref().map(|scope| scope.redo.len()),
            fallback: fallback.is_some(),
        };
        let candidate = heal::choose(&situation)?;
        Some(heal::Chosen {
            decision: RecoveryDecision {
                strategy: candidate.strategy,
                confidence: candidate.confidence,
                cost: candidate.cost,
                score: candidate.score,
                kind,
                message: message.to_owned(),
            },
            rollback: rollback.filter(|_| candidate.strategy == RecoveryStrategy::Rollback),
            fallback: fallback.filter(|_| candidate.strategy == RecoveryStrategy::AlternativePath),
        })
    }

    /// Applies a recovery journaled for step `index`.
    async fn recover(&mut self, index: usize, recovery: heal::Chosen, failure: Failure) {
        let strategy = recovery.decision.strategy;
        self.healing.applied_now(index, strategy);
        match strategy {
            RecoveryStrategy::Retry | RecoveryStrategy::Substitute => {
                if strategy == RecoveryStrategy::Retry {
                    self.healing.clear_failed_agents(index);
                }
                self.again(index);
            }
            RecoveryStrategy::Skip => {
                let reason = format!(
                    "recovered by SKIP (the step is optional) after: {}",
                    failure.message
                );
                self.skip(index, reason).await;
            }
            RecoveryStrategy::AlternativePath => {
                let Some(fallback) = recovery.fallback else {
                    return;
                };
                // The step waits, running in spirit, while its fallback stands in.
                self.status[index] = StepStatus::Running;
                self.healing.standing_in.insert(fallback, index);
                self.healing.failures.insert(index, failure);
                self.release_edge(fallback);
            }
            RecoveryStrategy::Rollback => {
                let Some(scope) = recovery.rollback else {
                    return;
                };
                self.roll_back(index, scope).await;
            }
        }
    }

    /// Step `index` runs again (a `RETRY` or `SUBSTITUTE` recovery).
    fn again(&mut self, index: usize) {
        self.status[index] = StepStatus::Pending;
        self.ready.push(Reverse(index));
    }

    /// What a rollback for step `index` would redo: its completed direct predecessors,
    /// everything after them that has started or ended, and the step itself. `None`
    /// when a step to redo is still running, or no predecessor completed.
    fn rollback_scope(&self, index: usize) -> Option<heal::RollbackScope> {
        let roots: Vec<usize> = self
            .plan
            .predecessors(index)
            .map(|(predecessor, _)| predecessor)
            .filter(|&predecessor| self.status.get(predecessor) == Some(&StepStatus::Completed))
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
            .filter(|&at| redo[at] && (at == index || self.status[at] != StepStatus::Pending))
            .collect();
        if redo.iter().any(|&at| {
            at != index && matches!(self.status[at], StepStatus::Running | StepStatus::Waiting)
        }) {
            return None;
        }
        // The checkpoint before the first of them completed.
        let first = self
            .healing
            .completed
            .iter()
            .position(|done| redo.contains(done))?;
        let checkpoint = first
            .checked_sub(1)
            .and_then(|before| self.healing.completed.get(before).copied());
        Some(heal::RollbackScope { redo, checkpoint })
    }

    /// Returns the steps of `scope` to pending (journaled), to run again.
    async fn roll_back(&mut self, index: usize, scope: heal::RollbackScope) {
        let plan = Arc::clone(&self.plan);
        let id = |at: usize| plan.step(at).map(|step| step.id().clone());
        let Some(step_id) = id(index) else { return };
        let redo: Vec<StepId> = scope.redo.iter().filter_map(|&at| id(at)).collect();
        let to_checkpoint = scope.checkpoint.and_then(id);
        let now = self.inner.clock.now();
        self.inner.defer(&self.batch, || {
            vec![JournalEntry::RolledBack {
                step_id,
                to_checkpoint,
                redo,
                at: now,
            }]
        });
        for &at in &scope.redo {
            self.status[at] = StepStatus::Pending;
            self.outputs[at] = None;
            let report = &mut self.reports[at].1;
            let recoveries = std::mem::take(&mut report.recoveries);
            *report = StepReport {
                recoveries,
                ..StepReport::default()
            };
            self.healing.reset(at);
        }
        self.healing
            .completed
            .retain(|done| !scope.redo.contains(done));
        self.recount();
    }

    /// Recounts every pending step's unfinished predecessors and which are ready.
    fn recount(&mut self) {
        self.ready.clear();
        for index in 0..self.status.len() {
            if self.status[index] != StepStatus::Pending {
                continue;
            }
            let count = self
                .plan
                .predecessors(index)
                .filter(|&(predecessor, _)| !self.status[predecessor].is_final())
                .count();
            self.unfinished_predecessors[index] = count;
            if count == 0 {
                self.ready.push(Reverse(index));
            }
        }
    }

    async fn skip(&mut self, index: usize, reason: String) {
        let plan = Arc::clone(&self.plan);
        let Some(step) = plan.step(index) else { return };
        self.inner.defer(&self.batch, || {
            vec![JournalEntry::StepSkipped {
                step_id: step.id().clone(),
                reason: reason.clone(),
                at: self.inner.clock.now(),
            }]
        });
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
        let plan = Arc::clone(&self.plan);
        for (successor, _) in plan.successors(index) {
            self.release_edge(successor);
        }
    }

    /// One edge into `to` no longer holds it back.
    fn release_edge(&mut self, to: usize) {
        if let Some(count) = self.unfinished_predecessors.get_mut(to) {
            *count = count.saturating_sub(1);
            // A step that ran already (a fallback, a step a rollback reset) is not
            // made ready twice.
            if *count == 0 && self.status.get(to) == Some(&StepStatus::Pending) {
                self.ready.push(Reverse(to));
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
        // One append for the end: what the batch holds, unstarted steps skipped, then
        // `runEnded` (which cancels, in the fold, the steps still running).
        self.inner.defer(&self.batch, || {
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
        });
        self.flush().await;
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

/// `requirements` as one request for the kinds `manager` pools (the others are not
/// limited); none when that leaves nothing to ask for.
fn request_for<'a>(
    manager: &dyn ResourceManager,
    requirements: impl IntoIterator<Item = &'a Resources>,
) -> Option<ResourceRequest> {
    let mut request = ResourceRequest::from_requirements(requirements);
    request.retain_kinds(|kind| manager.capacity(kind).is_some());
    (!request.is_empty()).then_some(request)
}

/// A step's work, run once its resources are granted; they go back when the work ends
/// or this future is dropped (the run cancelled it).
async fn holding(
    manager: Arc<dyn ResourceManager>,
    request: ResourceRequest,
    step: StepId,
    work: impl Future<Output = StepResult>,
) -> StepResult {
    match manager.allocate_resources(request).await {
        Ok(guard) => {
            let result = work.await;
            drop(guard);
            result
        }
        Err(error) => Err(Failure {
            kind: FailureKind::Resources,
            message: format!("step `{step}`: resourceRequirements: {error}"),
            attempts: 0,
            agent: None,
        }),
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
    /// The run would wait with journal entries not yet appended.
    Flush,
    /// The wait for the workflow's resources ended.
    Admitted(Result<AllocationGuard, ResourceError>),
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
