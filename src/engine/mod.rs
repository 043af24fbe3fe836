//! The engine: runs compiled workflows against registered agents.
//!
//! [`Engine`] keeps workflows (compiled once, by id and version), the agent registry,
//! the clock and the subscribers of run events. A run is a future the caller drives on
//! its own executor (tokio, async-std, smol, `futures::executor::block_on`, or a
//! [`VirtualClock`](crate::clock::VirtualClock)'s `block_on` in tests and simulations);
//! inside it, ready steps are advanced together with `FuturesUnordered`.
//!
//! # Semantics
//! Exactly those of `docs/workflow-format.md`: ordering by the plan's
//! edges; `SEQUENTIAL` runs one step at a time in plan order; a step is skipped when its
//! `condition` is false, its `skipCondition` true, or a step it binds to did not
//! complete (a skipped step does not block steps that only follow it in order); retries
//! with exponential backoff and seeded jitter; `STOP_ON_FAILURE` cancels running steps
//! and `CONTINUE_ON_FAILURE` skips the failed step's dependents; a failed `optional` step
//! does not fail the run. Choices where the format is silent:
//! - Steps that never started when a run ends are reported `SKIPPED`, with the reason;
//!   so is a step launched that had journaled nothing yet (it waited for resources or an
//!   agent's slot). Steps that had begun are `CANCELLED`.
//! - A `loop` step's `timeout` bounds the whole loop; when it passes after at least one
//!   iteration, the loop ends with the last output (as `maxIterations` does).
//! - An agent that panics fails that attempt; it is retried as a `TEMPORARY` failure
//!   would be, and reported with kind `PANIC` if the retries run out;
//!   an agent that hangs is cut off by the step `timeout` (without one, it is waited for).
//! - A `human_approval` step without a `timeout` waits until it is answered.
//! - Self-healing ([`heal`](RecoveryDecision)): once a step's retries are spent, the run
//!   applies the best-scoring recovery that fits (`SKIP`, `SUBSTITUTE`, `ROLLBACK`,
//!   `ALTERNATIVE_PATH`; see docs/workflow-format.md), journals it and reports it in the
//!   step's `recoveries`. An `optional` step that fails is skipped that way.
//! - Idempotency keys are `run/step/item/iteration`: one per logical call. Retries of a
//!   call carry the same key (its `attempt` tells them apart), so an agent can recognise
//!   an order it already accepted when a timed-out call is retried.
//!
//! # Durability
//! With a [`RunStore`](crate::store::RunStore) ([`EngineBuilder::store`]), every
//! transition is journaled before the engine acts on it outside the run: the call's
//! `StepStarted` (with its idempotency key, and every transition before it) is in the
//! store before the agent is called, the answer before an approval is acted on, the end
//! before the report is returned. What a run does in one wake-up shares one append (group
//! commit): concurrent steps' completions and the starts they release cost one sync. A
//! crash can lose only transitions nothing outside acted on: such a step runs again with
//! the same idempotency key. Events are emitted as transitions are decided (at least once
//! across a crash). Appends are made by the engine's journal writer thread; an append
//! that keeps failing (after about a second; a busy store, about two) stops the run,
//! `FAILED` with kind `STORE` (see `EngineBuilder::store`).
//! [`Engine::recover`] continues the store's unfinished runs after a restart: completed
//! steps keep their outputs and are not called again; calls that were in flight are made
//! again with the same idempotency key, from the attempt they were at (the cut-off call
//! counts against `maxAttempts`); waiting approvals wait again; paused runs stay
//! paused ([`Engine::pause_workflow`], [`Engine::resume_workflow`],
//! [`Engine::cancel_workflow`] are journaled). Known limits: the
//! host [`Context`](crate::expr::Context) is not journaled (recovered runs see an empty one), timers of running
//! steps start again from the recovery, and a `parallel` or `loop` step in flight runs
//! again from its first item or iteration (with the same keys).
//!
//! A workflow's `sensitive` field names are journaled as `"***"` (see
//! [`Sensitive`](crate::plan::Sensitive)): [`Engine::recover`] restores them through the
//! host's [`Secrets`] ([`EngineBuilder::secrets`]) before a run goes on, and leaves in the
//! store a run whose secrets it cannot restore ([`RecoveryError::NoSecrets`],
//! [`RecoveryError::SecretUnavailable`]); see [`Secrets`] for which values must come back.
//!
//! # Tracing
//! Each run's future is instrumented with a `tradeflow.run` span (target
//! `tradeflow::run`, info level; fields `run_id`, `workflow_id`, `trigger`), each attempt
//! of a call with a `tradeflow.step` span inside it (`step_id`, `agent_id`, `attempt`,
//! `idempotency_key`), closed when the attempt ends. Events in them: `call failed;
//! retrying` (warn, `step_id`, `attempt`, `kind`, `delay_ms`), `step failed` (warn, `step_id`, `kind`, `attempts`, `recovery` when
//! self-healing recovers it), `rolled back to a checkpoint`, `step adapted`, `decision
//! made`, `approval requested`, `approval answered` (`approved`, `by`), `run paused`,
//! `run resumed`, `run cancelled` (`by`), `run ended` (`status`, `kind`), all at info
//! level, and `step completed`, `step skipped` at debug level. No value of a run and no
//! message is logged; a span or event no subscriber wants computes none of its fields.
//!
//! # Resources
//! With a [`ResourceManager`] ([`EngineBuilder::resources`] or
//! [`EngineBuilder::resource_pool`]), `resourceRequirements` are acted on:
//! - A run takes the workflow's requirements, all entries together as one all-or-nothing
//!   request (amounts added up, at the lowest `priority` among them), before its first
//!   step, and holds them until it ends, however it ends. One request rather than one per
//!   entry: a run never holds part of its needs while it waits for the rest. While it
//!   waits, it starts no step; commands and the workflow's `timeout` apply as usual.
//! - A step with requirements takes them when it starts and gives them back when it ends:
//!   the wait is part of the step's future (the run goes on with its other steps
//!   meanwhile), and the guard is dropped with that future, so a step that completes,
//!   fails, panics, times out or is cancelled (`STOP_ON_FAILURE`, a cancelled run, the
//!   workflow's timeout) gives everything back. The requirements are held across the
//!   step's retries and their delays; the step's `timeout` bounds each attempt, not the
//!   wait for resources. A step that waits is `RUNNING` and announces `StepStarted`
//!   only once it has its resources and calls an agent; if the run ends while it still
//!   waits, it did not start: it is reported `SKIPPED` ("not started"), as its journal
//!   says.
//! - Waiting steps and runs are served lower `priority` number first, in order of
//!   arrival within a priority ([`PriorityResourceManager`](crate::resource::PriorityResourceManager): strict order, so a large
//!   request is not starved; see [`crate::resource`] for its bounded backfill).
//! - Kinds the pool does not have are not limited (a pool of `cpu` alone leaves
//!   `memory` and `network` free).
//! - [`Engine::create_workflow`] rejects a workflow whose requirements the pool could
//!   never grant ([`EngineError::OverCapacity`], naming the step and the resource): a
//!   step's requirement together with what its run holds, or the workflow's own. A run
//!   of a plan that was not checked ([`Engine::add_plan`], [`Engine::start_plan`], a
//!   recovered run) is checked when it starts and fails at once, with kind `RESOURCES`,
//!   instead of waiting forever.
//!
//! Without a manager (the default), requirements are validated but not enforced. Known
//! limit: runs that hold workflow-level resources while their steps wait for more of the
//! same pool can wait for each other (each run alone always fits; several together may
//! not); size the pool for them, or give workflow-level and step-level needs different
//! kinds.
//!
//! # Agents
//! A step finds its agent when it is reached ([`crate::agent`]): a step no registered
//! agent can take fails then, with kind `NO_AGENT`, after the steps before it ran.
//! [`Engine::check_agents`] names every such step of a workflow at once, and
//! [`AgentCheck::BeforeStart`] ([`EngineBuilder::agent_check`]) makes [`Engine::start`]
//! refuse the run ([`EngineError::NoAgents`]) before anything runs. The check is made
//! against the agents registered when the run starts; recovered runs are not checked,
//! since a bot registers its agents after [`Engine::recover`] returns
//! ([`Engine::check_plan_agents`] checks them once it has).
//!
//! # Audit
//! With an audit log ([`EngineBuilder::audit`]; see [`crate::audit`] for the entries and
//! the chain), the engine appends an entry for each workflow defined, fresh run started
//! and run ended, approval and rejection, pause, resume and cancel, adaptation added,
//! rebalancing, kill switch trip and reset, and permission refused. What a person asks
//! that the engine can still refuse is appended **before** it is done, and not done when
//! the append fails: [`Engine::create_workflow`], [`Engine::approve`],
//! [`Engine::reject`], [`Engine::pause_workflow`], [`Engine::resume_workflow`],
//! [`Engine::cancel_workflow`] and [`Engine::adapt_workflow`] return
//! [`EngineError::Audit`] (the workflow not kept, the step still waiting, nothing sent,
//! no rule added), and a fresh run stops before any step, `FAILED` with kind `STORE`.
//! What has already happened (a run's end, a trip, a rebalancing or reset made, a
//! refusal, a plan kept with [`Engine::add_plan`]) is appended **after**; when that
//! fails, the entry waits in memory, in order, is logged (`tracing`, target
//! `tradeflow::audit`) and is appended before any later entry, so that while the log
//! fails nothing audited proceeds ([`Engine::rebalance_workload`] and
//! [`Engine::reset_kill_switch`] return the error too, though what they did stands). At
//! most [`MAX_WAITING_AUDIT_ENTRIES`] wait; waiting entries die with the process.
//! Without a log (the default), nothing is audited.
//!
//! # Cost
//! Per step: one boxed future, one agent selection (O(agents of the type)), the
//! parameter template resolved once, and events only when someone subscribes. A step
//! without `resourceRequirements`, or any step when the engine has no resource manager,
//! costs nothing more; one with them adds a few small allocations (the request, its
//! guard) and one lock when it starts and one when it ends.

mod adapt;
mod approvals;
mod audit;
mod budgets;
mod builder;
mod catalogue;
mod control;
mod coordinated;
mod durable;
mod error;
mod event;
mod guard;
mod heal;
mod inner;
mod kill;
mod options;
mod orchestration;
mod outcome;
mod preflight;
mod recover;
mod report;
mod run;
mod secrets;
mod step;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use futures::future::BoxFuture;
use serde_json::Value;
use tracing::Instrument as _;

use crate::agent::{Agent, AgentId, AgentRegistry, RebalanceCriteria, RebalanceReport};
use crate::clock::Clock;
use crate::decision::DecisionEngine;
use crate::plan::ExecutionPlan;
use crate::resource::ResourceManager;
use crate::run::RunId;
use crate::run::seed::mix;
use crate::store::RunState as Journaled;

/// The run vocabulary, defined in [`run`](crate::run) and used here by name.
pub use crate::run::{FailureKind, RecoveryDecision, RunError, RunStatus, StepError, StepStatus};
pub use adapt::{HeldAdaptation, MAX_ADDED_ADAPTATIONS};
pub use audit::MAX_WAITING as MAX_WAITING_AUDIT_ENTRIES;
pub use builder::EngineBuilder;
pub use catalogue::WorkflowRef;
pub use coordinated::{CoordinateError, Coordinated};
pub use error::{EngineError, RecoveryError};
pub use event::{EventStream, RunEvent, RunEvents};
pub use heal::MAX_RECOVERIES;
pub use kill::Tripped;
pub use options::{RunIds, RunOptions};
pub use orchestration::OrchestrationEngine;
pub use outcome::{MAX_REMEMBERED, OutcomeError, Relearned};
pub use preflight::{AgentCheck, MissingAgent, missing_agents};
pub use recover::{HeldRun, Recovery};
pub use report::{DecisionReport, RunReport, StepReport};
pub use secrets::{SecretField, SecretLocation, SecretSource, Secrets};

pub(crate) use inner::Inner;

/// The default engine: see the [module docs](self).
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use serde_json::{Value, json};
/// use tradeflow::agent::{Agent, AgentDescriptor, AgentError, TaskRequest};
/// use tradeflow::definition::WorkflowDefinition;
/// use tradeflow::engine::{Engine, RunStatus};
///
/// struct Doubler(AgentDescriptor);
///
/// #[tradeflow::async_trait]
/// impl Agent for Doubler {
///     fn descriptor(&self) -> &AgentDescriptor { &self.0 }
///     async fn execute(&self, request: TaskRequest) -> Result<Value, AgentError> {
///         let x = request.parameters["x"].as_f64().unwrap_or(0.0);
///         Ok(json!({"y": x * 2.0}))
///     }
/// }
///
/// let engine = Engine::builder().build();
/// engine.register_agent(Arc::new(Doubler(AgentDescriptor::new("d-1", "MATH"))))?;
/// engine.create_workflow(WorkflowDefinition::from_json(r#"{"id": "double", "steps": [
///     {"id": "twice", "type": "task", "agentCriteria": {"type": "MATH"},
///      "task": {"type": "DOUBLE", "parameters": {"x": "${input.x}"}}}]}"#)?)?;
/// let report = futures::executor::block_on(engine.execute_workflow("double", json!({"x": 21})))?;
/// assert_eq!(report.status, RunStatus::Completed);
/// assert_eq!(report.step("twice").unwrap().output, Some(json!({"y": 42.0})));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("clock", &self.inner.clock)
            .field("registry", &self.inner.registry)
            .field("listeners", &self.inner.listeners)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// The agent registry (agents may join and leave while runs go on).
    pub fn registry(&self) -> &Arc<AgentRegistry> {
        &self.inner.registry
    }

    /// The engine's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Where `decision` steps choose, learn and are recorded.
    pub fn decisions(&self) -> &Arc<dyn DecisionEngine> {
        &self.inner.decisions
    }

    /// Where `resourceRequirements` are taken from, if anywhere
    /// ([`EngineBuilder::resources`]): to monitor the pool, or optimize it.
    pub fn resources(&self) -> Option<&Arc<dyn ResourceManager>> {
        self.inner.resources.as_ref()
    }

    /// Registers an agent.
    ///
    /// # Errors
    /// [`EngineError::Registry`] for a duplicate id or an invalid descriptor.
    pub fn register_agent(&self, agent: Arc<dyn Agent>) -> Result<(), EngineError> {
        Ok(self.inner.registry.register(agent)?)
    }

    /// Removes an agent: its calls in flight finish; it gets no new ones.
    pub fn deregister_agent(&self, id: &AgentId) -> bool {
        self.inner.registry.deregister(id)
    }

    /// Rebalances the engine's agents: drains (no new calls; calls in flight finish),
    /// undrains, reweighs them and sets the utilization ceiling, as `criteria` asks,
    /// and returns what changed; see
    /// [`AgentRegistry::rebalance`] and [Rebalancing](crate::agent#rebalancing).
    /// Logged with `by`, the user who asked, not journaled: a rebalancing is the engine's
    /// state, not a run's.
    ///
    /// # Errors
    /// [`EngineError::Rebalance`] naming the unknown agent, the invalid weight or
    /// ceiling, or an agent both drained and undrained; [`EngineError::Security`] when
    /// the engine checks permissions and `by` may not `rebalance` (nothing changed then);
    /// [`EngineError::Audit`] when the audit log fails: before (entries wait for it;
    /// nothing changed) or after the rebalancing (it stands; its entry waits).
    pub fn rebalance_workload(
        &self,
        criteria: &RebalanceCriteria,
        by: &str,
    ) -> Result<RebalanceReport, EngineError> {
        self.inner
            .permit(Some(by), crate::security::Action::Rebalance, None)?;
        self.inner.audit_ready()?;
        let report = self.inner.registry.rebalance(criteria)?;
        if !report.is_empty() {
            tracing::info!(target: "tradeflow::rebalance", by, "rebalancing asked by");
        }
        // What changed is known only now: the entry follows the change.
        self.inner
            .audit_done(Some(by), || crate::audit::AuditEvent::WorkloadRebalanced {
                changes: serde_json::to_value(&report).unwrap_or_default(),
            })?;
        Ok(report)
    }

    /// Starts a run of the latest version of workflow `workflow_id` (or the version
    /// [`RunOptions::version`] names). The run makes progress only while the returned
    /// [`Run`] is polled.
    ///
    /// With [`AgentCheck::BeforeStart`] ([`EngineBuilder::agent_check`]), every step is
    /// first checked against the agents registered now ([`Engine::check_agents`]).
    ///
    /// With permissions ([`EngineBuilder::permissions`]), the run's user
    /// ([`RunOptions::user`]) must be allowed to `execute` the workflow, and every step's
    /// `resourceRequirements` must be within the user's caps; then the engine's
    /// analyzers are asked ([`EngineBuilder::analyzer`]). See [`crate::security`].
    ///
    /// # Errors
    /// [`EngineError::Security`] when a check refuses the run (nothing runs, nothing is
    /// journaled, no agent is called);
    /// [`EngineError::UnknownWorkflow`]; [`EngineError::Halted`] when a tripped kill
    /// switch rule covers the workflow; with [`AgentCheck::BeforeStart`],
    /// [`EngineError::NoAgents`] naming every step no registered agent can take (then
    /// nothing runs, nothing is journaled and no agent is called);
    /// [`EngineError::UnknownVersion`] for a version the engine does not keep.
    pub fn start(&self, workflow_id: &str, options: RunOptions) -> Result<Run, EngineError> {
        let plan = match &options.version {
            None => self.known_workflow(workflow_id)?,
            Some(version) => self.workflow_version(workflow_id, version).ok_or_else(|| {
                EngineError::UnknownVersion {
                    id: workflow_id.to_owned(),
                    version: version.clone(),
                }
            })?,
        };
        self.permit_start(&plan, &options)?;
        if let Some(rule) = self
            .inner
            .kill_switch
            .halting(plan.workflow_id(), plan.tags())
        {
            return Err(EngineError::Halted {
                rule,
                workflow: workflow_id.to_owned(),
            });
        }
        if self.inner.agent_check == AgentCheck::BeforeStart {
            self.check_plan_agents(&plan)?;
        }
        self.analyze_start(&plan, &options)?;
        Ok(self.start_plan(plan, options))
    }

    /// Starts a run of `plan` (which need not be kept by the engine). Its agents are not
    /// checked, whatever the [`AgentCheck`]: call [`Engine::check_plan_agents`] first to.
    pub fn start_plan(&self, plan: Arc<ExecutionPlan>, options: RunOptions) -> Run {
        let started_at = self.inner.clock.now();
        let id = options
            .run_id
            .unwrap_or_else(|| self.inner.new_run_id(started_at));
        let seed = options
            .seed
            .unwrap_or_else(|| mix(self.inner.seed, id.as_str()));
        let owner = control::Owner {
            workflow: plan.workflow_id().to_owned(),
            started_by: options.user.clone(),
        };
        let control = self.inner.controls.register(&id, owner);
        let (input, refused_input) = run::checked_input(options.input);
        let identity = run::Identity {
            run_id: id.clone(),
            input,
            seed,
            started_at,
            trigger: options.trigger,
            data_as_of: options.data_as_of,
            user: options.user,
            lease: None,
        };
        let plan_for_run = Arc::clone(&plan);
        let span = run_span(&id, plan.workflow_id(), identity.trigger.as_deref());
        let future = run::execute(
            Arc::clone(&self.inner),
            plan,
            identity,
            Arc::new(options.context),
            control,
            refused_input,
        );
        Run {
            id,
            inner: Arc::clone(&self.inner),
            plan: Arc::clone(&plan_for_run),
            resumed: None,
            future: Box::pin(future.instrument(span)),
        }
    }

    /// Runs the latest version of `workflow_id` with `options` to its end.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub async fn run(
        &self,
        workflow_id: &str,
        options: RunOptions,
    ) -> Result<RunReport, EngineError> {
        Ok(self.start(workflow_id, options)?.await)
    }

    /// Runs the latest version of `workflow_id` with `input` to its end.
    ///
    /// # Errors
    /// As [`start`](Self::start). A run that fails is not an error: its report says how
    /// it ended.
    pub async fn execute_workflow(
        &self,
        workflow_id: &str,
        input: Value,
    ) -> Result<RunReport, EngineError> {
        self.run(workflow_id, RunOptions::new(input)).await
    }

    /// How the engine's workflows and agents performed since it was built: per workflow,
    /// runs, success rate and duration percentiles; per agent, calls and utilization
    /// (see [`crate::metrics`] for what each number means and its precision). Aggregated
    /// by the engine itself, whether or not a metrics recorder is installed.
    ///
    /// # Examples
    /// ```
    /// use tradeflow::engine::Engine;
    ///
    /// let engine = Engine::builder().build();
    /// let report = engine.generate_performance_report();
    /// assert!(report.workflows.is_empty() && report.agents.is_empty());
    /// ```
    pub fn generate_performance_report(&self) -> crate::metrics::PerformanceReport {
        self.inner.telemetry.report(self.inner.clock.now())
    }

    /// A stream of every event of every run from now on. Dropping it unsubscribes.
    pub fn subscribe(&self) -> EventStream {
        self.inner.listeners.subscribe()
    }
}

/// The span of run `id` of `workflow_id` (`tradeflow.run`, target `tradeflow::run`, info
/// level): the run's future is polled inside it, so every span and event of its steps is
/// its child. Its fields are computed only when a subscriber wants it.
fn run_span(id: &RunId, workflow_id: &str, trigger: Option<&str>) -> tracing::Span {
    tracing::info_span!(
        target: "tradeflow::run",
        "tradeflow.run",
        run_id = id.as_str(),
        workflow_id,
        trigger,
    )
}

/// A run in progress: a future of its [`RunReport`], and its id (for approvals).
#[must_use = "a run makes progress only while it is polled"]
pub struct Run {
    id: RunId,
    inner: Arc<Inner>,
    plan: Arc<ExecutionPlan>,
    resumed: Option<Resumed>,
    future: BoxFuture<'static, RunReport>,
}

impl Run {
    /// The run's id.
    pub fn id(&self) -> &RunId {
        &self.id
    }

    /// The run's own events, from now on: create the stream before the run is first
    /// polled to see every one (see [`RunEvents`]).
    pub fn events(&self) -> RunEvents {
        RunEvents::new(self.inner.listeners.subscribe(), self.id.clone())
    }

    /// The plan the run executes (for a recovered run: the version it started with).
    pub fn plan(&self) -> &Arc<ExecutionPlan> {
        &self.plan
    }

    /// For a run [`Engine::recover`] continues: where its journal left it. `None` for a
    /// run started by this engine.
    pub fn resumed(&self) -> Option<&Resumed> {
        self.resumed.as_ref()
    }
}

/// Where a recovered run's journal left it, as [`Run::resumed`] tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    started_at: chrono::DateTime<chrono::Utc>,
    steps_ended: usize,
    calls_to_remake: usize,
}

impl Resumed {
    pub(super) fn of(journaled: &Journaled) -> Self {
        Self {
            started_at: journaled.started_at,
            steps_ended: journaled
                .steps
                .values()
                .filter(|step| step.status.is_final())
                .count(),
            calls_to_remake: journaled
                .steps
                .values()
                .map(|step| step.in_flight.len())
                .sum(),
        }
    }

    /// When the run first started (before the restart).
    pub fn started_at(&self) -> chrono::DateTime<chrono::Utc> {
        self.started_at
    }

    /// How many of its steps had ended (completed, skipped, failed).
    pub fn steps_ended(&self) -> usize {
        self.steps_ended
    }

    /// How many calls were in flight when the previous engine stopped: they are made
    /// again, with the same idempotency keys.
    pub fn calls_to_remake(&self) -> usize {
        self.calls_to_remake
    }
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Future for Run {
    type Output = RunReport;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<RunReport> {
        self.future.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + 'static>() {}
    fn assert_send<T: Send + 'static>() {}

    #[test]
    fn engine_types_are_shareable() {
        assert_send_sync::<Engine>();
        assert_send::<Run>();
        assert_send_sync::<RunReport>();
        fn _object_safe(_: &dyn OrchestrationEngine) {}
    }
}
