//! The engine: runs compiled workflows against registered agents.
//!
//! [`Engine`] keeps workflows (compiled once, by id and version), the agent registry,
//! the clock and the subscribers of run events. A run is a future the caller drives on
//! its own executor (tokio, async-std, smol, `futures::executor::block_on`, or a
//! [`VirtualClock`](crate::clock::VirtualClock)'s `block_on` in tests and simulations);
//! inside it, ready steps are advanced together with `FuturesUnordered`.
//!
//! # Semantics
//! Exactly those of `docs/workflow-format.md` (WORKFLOW.md): ordering by the plan's
//! edges; `SEQUENTIAL` runs one step at a time in plan order; a step is skipped when its
//! `condition` is false, its `skipCondition` true, or a step it binds to did not
//! complete (a skipped step does not block steps that only follow it in order); retries
//! with exponential backoff and seeded jitter; `STOP_ON_FAILURE` cancels running steps
//! and `CONTINUE_ON_FAILURE` skips the failed step's dependents; a failed `optional` step
//! does not fail the run. Choices where the format is silent:
//! - Steps that never started when a run ends are reported `SKIPPED`, with the reason.
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
//! With a [`RunStore`] ([`EngineBuilder::store`]), every
//! transition is journaled before the engine acts on it outside the run: the call's
//! `StepStarted` (with its idempotency key, and every transition before it) is in the
//! store before the agent is called, the answer before an approval is acted on, the end
//! before the report is returned. What a run does in one wake-up shares one append (group
//! commit): concurrent steps' completions and the starts they release cost one sync. A
//! crash can lose only transitions nothing outside acted on: such a step runs again with
//! the same idempotency key. Events are emitted as transitions are decided (at least once
//! across a crash). An append that fails is retried on the engine's clock (10 ms doubling
//! to 1 s) until it succeeds.
//! [`Engine::recover`] continues the store's unfinished runs after a restart: completed
//! steps keep their outputs and are not called again; calls that were in flight are made
//! again with the same idempotency key; waiting approvals wait again; paused runs stay
//! paused ([`Engine::pause_workflow`], [`Engine::resume_workflow`],
//! [`Engine::cancel_workflow`] are journaled). Known limits: the
//! host [`Context`] is not journaled (recovered runs see an empty one), timers of running
//! steps start again from the recovery, and a `parallel` or `loop` step in flight runs
//! again from its first item or iteration (with the same keys).
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
//!   wait for resources. A step that waits is `RUNNING` in the report and announces
//!   `StepStarted` only once it has its resources and calls an agent.
//! - Waiting steps and runs are served lower `priority` number first, in order of
//!   arrival within a priority ([`PriorityResourceManager`]: strict order, so a large
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
//! # Cost
//! Per step: one boxed future, one agent selection (O(agents of the type)), the
//! parameter template resolved once, and events only when someone subscribes. A step
//! without `resourceRequirements`, or any step when the engine has no resource manager,
//! costs nothing more; one with them adds a few small allocations (the request, its
//! guard) and one lock when it starts and one when it ends.

mod call;
mod control;
mod durable;
mod event;
mod heal;
mod report;
mod run;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context as TaskContext, Poll};

use futures::channel::oneshot;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::agent::{Agent, AgentId, AgentRegistry, LoadBalancer, RegistryError, balancer_for};
use crate::clock::{Clock, SystemClock};
use crate::decision::{DecisionEngine, DecisionLog};
use crate::definition::{LoadBalancing, StepId, ValidationErrors, WorkflowDefinition};
use crate::expr::Context;
use crate::plan::ExecutionPlan;
use crate::resource::{CapacityError, PriorityResourceManager, ResourceManager, ResourcePool};
use crate::run::RunId;
use crate::store::{RunState as Journaled, RunStore, StoreError};

/// The run vocabulary, defined in [`run`](crate::run) and used here by name.
pub use crate::run::{FailureKind, RecoveryDecision, RunError, RunStatus, StepError, StepStatus};
pub use durable::RecoveryError;
pub use event::{EventStream, RunEvent};
pub use heal::MAX_RECOVERIES;
pub use report::{RunReport, StepReport};

/// Why the engine refused a request.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The definition is invalid.
    #[error("invalid workflow definition:\n{0}")]
    Invalid(#[from] ValidationErrors),
    /// No workflow has this id.
    #[error("unknown workflow `{id}`")]
    UnknownWorkflow {
        /// The id asked for.
        id: String,
    },
    /// No step of this run waits for an answer under this id.
    #[error("run `{run}` has no step `{step}` waiting for approval")]
    NoPendingApproval {
        /// The run.
        run: RunId,
        /// The step.
        step: String,
    },
    /// The run is not live in this engine: it ended, never started, or was started by
    /// another engine (recover it first).
    #[error("run `{run}` is not running in this engine")]
    NotRunning {
        /// The run.
        run: RunId,
    },
    /// An agent could not be registered.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The run store failed (keeping a definition, listing the runs to recover).
    #[error("the run store failed")]
    Store {
        /// The store's error (shared: store errors carry their backend's error).
        #[source]
        source: Arc<StoreError>,
    },
    /// A run could not be recovered from the store.
    #[error("cannot recover run `{run}`")]
    Recovery {
        /// The run.
        run: RunId,
        /// Why.
        #[source]
        reason: RecoveryError,
    },
    /// The workflow needs more of a resource than the engine's pool has: a step (or the
    /// workflow itself) could never run.
    #[error("workflow `{workflow}` needs more than the engine's resource pool has:\n{}", lines(.problems))]
    OverCapacity {
        /// The workflow id.
        workflow: String,
        /// Every requirement the pool can never grant, each naming the step (or the
        /// workflow) and the resource.
        problems: Vec<CapacityError>,
    },
}

fn lines(problems: &[CapacityError]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl PartialEq for EngineError {
    /// Store errors are equal only when they are the same error (they carry a backend's).
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Invalid(a), Self::Invalid(b)) => a == b,
            (Self::UnknownWorkflow { id: a }, Self::UnknownWorkflow { id: b }) => a == b,
            (
                Self::NoPendingApproval { run: a, step: s },
                Self::NoPendingApproval { run: b, step: t },
            ) => a == b && s == t,
            (Self::NotRunning { run: a }, Self::NotRunning { run: b }) => a == b,
            (Self::Registry(a), Self::Registry(b)) => a == b,
            (Self::Store { source: a }, Self::Store { source: b }) => Arc::ptr_eq(a, b),
            (Self::Recovery { run: a, reason: x }, Self::Recovery { run: b, reason: y }) => {
                a == b && x == y
            }
            (
                Self::OverCapacity {
                    workflow: a,
                    problems: x,
                },
                Self::OverCapacity {
                    workflow: b,
                    problems: y,
                },
            ) => a == b && x == y,
            _ => false,
        }
    }
}

/// A workflow the engine keeps: its id and version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkflowRef {
    /// The workflow id.
    pub id: String,
    /// Its version (free text; empty when the definition has none).
    pub version: String,
}

/// What a run starts with.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    input: Value,
    context: Context,
    seed: Option<u64>,
    run_id: Option<RunId>,
    trigger: Option<String>,
}

impl RunOptions {
    /// Options with `input` as the run's input (`${input…}`).
    pub fn new(input: Value) -> Self {
        Self {
            input,
            ..Self::default()
        }
    }

    /// Records that a trigger started the run (`triggers[0] (SCHEDULED)`): journaled
    /// (`runTriggered`) and in the `RunStarted` event.
    #[must_use]
    pub fn triggered_by(mut self, trigger: impl Into<String>) -> Self {
        self.trigger = Some(trigger.into());
        self
    }

    /// The host context of conditions (`market.isOpen()`). Defaults to empty.
    #[must_use]
    pub fn context(mut self, context: Context) -> Self {
        self.context = context;
        self
    }

    /// The seed of the run's random choices (balancers, jitter). Defaults to the
    /// engine's seed mixed with the run id.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The run id. Defaults to `run-N`, N counting the engine's runs from 1.
    #[must_use]
    pub fn run_id(mut self, run_id: impl Into<RunId>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }
}

/// The engine's contract, for hosts that want to substitute or wrap it.
#[async_trait::async_trait]
pub trait OrchestrationEngine: Send + Sync {
    /// Validates, compiles and keeps a workflow (by id and version).
    ///
    /// # Errors
    /// [`EngineError::Invalid`] with every problem of the definition;
    /// [`EngineError::OverCapacity`] when its `resourceRequirements` could never be
    /// granted by the engine's resource pool.
    fn create_workflow(&self, definition: WorkflowDefinition) -> Result<WorkflowRef, EngineError>;

    /// Runs the latest version of workflow `workflow_id` with `input` to its end.
    ///
    /// # Errors
    /// [`EngineError::UnknownWorkflow`]. A run that fails is not an error: its report
    /// says how it ended.
    async fn execute_workflow(
        &self,
        workflow_id: &str,
        input: Value,
    ) -> Result<RunReport, EngineError>;

    /// Approves the waiting step `step` of run `run`.
    ///
    /// # Errors
    /// [`EngineError::NoPendingApproval`] when that step is not waiting.
    fn approve(
        &self,
        run: &RunId,
        step: &str,
        by: &str,
        comment: Option<&str>,
    ) -> Result<(), EngineError>;

    /// Rejects the waiting step `step` of run `run` (the step fails).
    ///
    /// # Errors
    /// [`EngineError::NoPendingApproval`] when that step is not waiting.
    fn reject(
        &self,
        run: &RunId,
        step: &str,
        by: &str,
        comment: Option<&str>,
    ) -> Result<(), EngineError>;

    /// Pauses a run: it starts no new step until resumed; steps in flight finish.
    ///
    /// # Errors
    /// [`EngineError::NotRunning`] when the run is not live.
    fn pause_workflow(&self, run: &RunId) -> Result<(), EngineError>;

    /// Resumes a paused run.
    ///
    /// # Errors
    /// [`EngineError::NotRunning`] when the run is not live.
    fn resume_workflow(&self, run: &RunId) -> Result<(), EngineError>;

    /// Cancels a run: steps in flight are stopped and the run ends `CANCELLED`.
    ///
    /// # Errors
    /// [`EngineError::NotRunning`] when the run is not live.
    fn cancel_workflow(&self, run: &RunId, by: &str) -> Result<(), EngineError>;
}

/// A person's answer to a waiting step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) approved: bool,
    pub(crate) by: String,
    pub(crate) comment: Option<String>,
}

impl Answer {
    fn new(approved: bool, by: &str, comment: Option<&str>) -> Self {
        Self {
            approved,
            by: by.to_owned(),
            comment: comment.map(str::to_owned),
        }
    }
}

pub(crate) struct Inner {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) registry: Arc<AgentRegistry>,
    pub(crate) decisions: Arc<dyn DecisionEngine>,
    listeners: event::Listeners,
    workflows: RwLock<HashMap<String, Vec<Arc<ExecutionPlan>>>>,
    approvals: Mutex<HashMap<(RunId, StepId), oneshot::Sender<Answer>>>,
    /// One balancer of each kind, shared by runs (round robin keeps its position).
    balancers: [Arc<dyn LoadBalancer>; 4],
    pub(crate) default_balancing: LoadBalancing,
    seed: u64,
    runs: AtomicU64,
    pub(crate) max_output_bytes: usize,
    /// Where runs are journaled; none: nothing is.
    store: Option<Arc<dyn RunStore>>,
    /// The live runs' controls (pause, resume, cancel).
    controls: Arc<control::Controls>,
    /// Where `resourceRequirements` are taken from; none: they are not enforced.
    pub(crate) resources: Option<Arc<dyn ResourceManager>>,
}

impl Inner {
    pub(crate) fn balancer(&self, kind: Option<LoadBalancing>) -> &dyn LoadBalancer {
        let index = match kind.unwrap_or(self.default_balancing) {
            LoadBalancing::RoundRobin => 0,
            LoadBalancing::Weighted => 1,
            LoadBalancing::LeastConnections => 2,
            LoadBalancing::PowerOfTwoChoices => 3,
        };
        &*self.balancers[index]
    }

    pub(crate) fn emit(&self, event: impl FnOnce() -> RunEvent) {
        if self.listeners.active() {
            self.listeners.emit(event());
        }
    }

    /// Registers a waiting step; the returned guard unregisters it when dropped.
    pub(crate) fn wait_for_answer(
        self: &Arc<Self>,
        run: &RunId,
        step: &StepId,
    ) -> (oneshot::Receiver<Answer>, ApprovalGuard) {
        let (sender, receiver) = oneshot::channel();
        let key = (run.clone(), step.clone());
        self.approvals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone(), sender);
        (
            receiver,
            ApprovalGuard {
                inner: Arc::clone(self),
                key,
            },
        )
    }

    fn answer(&self, run: &RunId, step: &str, answer: Answer) -> Result<(), EngineError> {
        let sender = self
            .approvals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(run.clone(), StepId::new(step)));
        let missing = || EngineError::NoPendingApproval {
            run: run.clone(),
            step: step.to_owned(),
        };
        sender
            .ok_or_else(missing)?
            .send(answer)
            .map_err(|_| missing())
    }
}

/// Removes a waiting step's registration when the wait ends (answered, timed out or
/// cancelled).
pub(crate) struct ApprovalGuard {
    inner: Arc<Inner>,
    key: (RunId, StepId),
}

impl Drop for ApprovalGuard {
    fn drop(&mut self) {
        self.inner
            .approvals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

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
/// #[async_trait::async_trait]
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

/// Builds an [`Engine`].
pub struct EngineBuilder {
    clock: Arc<dyn Clock>,
    registry: Option<Arc<AgentRegistry>>,
    decisions: Arc<dyn DecisionEngine>,
    callbacks: Vec<event::EventCallback>,
    balancing: LoadBalancing,
    seed: u64,
    max_output_bytes: usize,
    store: Option<Arc<dyn RunStore>>,
    resources: Option<Arc<dyn ResourceManager>>,
}

impl fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("clock", &self.clock)
            .field("balancing", &self.balancing)
            .field("seed", &self.seed)
            .field("store", &self.store)
            .field("resources", &self.resources.is_some())
            .finish_non_exhaustive()
    }
}

impl EngineBuilder {
    /// Where time comes from. Defaults to [`SystemClock`].
    #[must_use]
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The agent registry, to share one between engines. Defaults to a new, empty one.
    #[must_use]
    pub fn registry(mut self, registry: Arc<AgentRegistry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Where `decision` steps are recorded. Defaults to an in-memory [`DecisionLog`].
    #[must_use]
    pub fn decisions(mut self, decisions: Arc<dyn DecisionEngine>) -> Self {
        self.decisions = decisions;
        self
    }

    /// Calls `callback` with every event of every run, synchronously, in order (keep it
    /// quick). Defaults to none; [`Engine::subscribe`] gives a stream instead.
    #[must_use]
    pub fn on_event(mut self, callback: impl Fn(&RunEvent) + Send + Sync + 'static) -> Self {
        self.callbacks.push(Arc::new(callback));
        self
    }

    /// The balancer of steps that name none. Defaults to `LEAST_CONNECTIONS`.
    #[must_use]
    pub fn load_balancing(mut self, balancing: LoadBalancing) -> Self {
        self.balancing = balancing;
        self
    }

    /// The seed runs derive their random choices from. Defaults to 0.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The largest agent output accepted, in bytes of JSON. Defaults to 1 MiB.
    #[must_use]
    pub fn max_output_bytes(mut self, bytes: usize) -> Self {
        self.max_output_bytes = bytes;
        self
    }

    /// Where runs are journaled, so that [`Engine::recover`] can continue them after a
    /// restart: every transition of a run is appended before the engine acts on it, and
    /// every workflow the engine keeps is stored with its version. An append that fails
    /// is retried on the engine's clock (10 ms, doubling to 1 s) until it succeeds; the
    /// run waits meanwhile. Defaults to none: nothing is journaled, and runs do not
    /// survive the process.
    #[must_use]
    pub fn store(mut self, store: impl RunStore + 'static) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Where steps and runs take their `resourceRequirements` from: a step waits until
    /// its requirements are granted and gives them back when it ends; a run holds the
    /// workflow's for its whole length (see [Resources](self#resources)). Pass an
    /// `Arc` to keep a handle ([`Engine::resources`] gives one too). Defaults to none:
    /// requirements are validated but not enforced.
    #[must_use]
    pub fn resources(mut self, manager: impl ResourceManager + 'static) -> Self {
        self.resources = Some(Arc::new(manager));
        self
    }

    /// Takes `resourceRequirements` from `pool`, with a [`PriorityResourceManager`]
    /// (strict priority order); the same as `resources(PriorityResourceManager::new(pool))`.
    /// Defaults to none: requirements are validated but not enforced.
    #[must_use]
    pub fn resource_pool(self, pool: ResourcePool) -> Self {
        self.resources(PriorityResourceManager::new(pool))
    }

    /// The engine.
    pub fn build(self) -> Engine {
        let balancers = [
            balancer_for(LoadBalancing::RoundRobin),
            balancer_for(LoadBalancing::Weighted),
            balancer_for(LoadBalancing::LeastConnections),
            balancer_for(LoadBalancing::PowerOfTwoChoices),
        ];
        Engine {
            inner: Arc::new(Inner {
                clock: self.clock,
                registry: self.registry.unwrap_or_default(),
                decisions: self.decisions,
                listeners: event::Listeners::new(self.callbacks),
                workflows: RwLock::new(HashMap::new()),
                approvals: Mutex::new(HashMap::new()),
                balancers,
                default_balancing: self.balancing,
                seed: self.seed,
                runs: AtomicU64::new(0),
                max_output_bytes: self.max_output_bytes,
                store: self.store,
                controls: Arc::default(),
                resources: self.resources,
            }),
        }
    }
}

impl Engine {
    /// A builder, with every setting at its default.
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
            clock: Arc::new(SystemClock),
            registry: None,
            decisions: Arc::new(DecisionLog::new()),
            callbacks: Vec::new(),
            balancing: LoadBalancing::LeastConnections,
            seed: 0,
            max_output_bytes: 1 << 20,
            store: None,
            resources: None,
        }
    }

    /// The agent registry (agents may join and leave while runs go on).
    pub fn registry(&self) -> &Arc<AgentRegistry> {
        &self.inner.registry
    }

    /// The engine's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Where `decision` steps are recorded.
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

    /// Keeps an already compiled plan (by id and version). A plan with the same id and
    /// version replaces the one kept. With a store, the definition is stored too; a
    /// store that fails is logged (`tracing::warn!`): [`create_workflow`] reports it.
    /// The plan is not checked against the resource pool: a run of it whose requirements
    /// the pool can never grant fails when it starts (kind `RESOURCES`).
    ///
    /// [`create_workflow`]: Self::create_workflow
    pub fn add_plan(&self, plan: ExecutionPlan) -> WorkflowRef {
        if let Err(error) = self.put_definition(&plan) {
            tracing::warn!(
                workflow = plan.workflow_id(),
                error = &error as &dyn std::error::Error,
                "cannot store the workflow's definition; runs of it recover only while the engine keeps it"
            );
        }
        self.keep(plan)
    }

    /// Stores `plan`'s definition under its id and version, when the engine has a store.
    fn put_definition(&self, plan: &ExecutionPlan) -> Result<(), StoreError> {
        let Some(store) = &self.inner.store else {
            return Ok(());
        };
        let definition = plan.definition();
        store.put_definition(
            plan.workflow_id(),
            definition.version.as_deref().unwrap_or_default(),
            &definition.to_json(),
        )
    }

    fn keep(&self, plan: ExecutionPlan) -> WorkflowRef {
        let reference = WorkflowRef {
            id: plan.workflow_id().to_owned(),
            version: plan.definition().version.clone().unwrap_or_default(),
        };
        let mut workflows = self
            .inner
            .workflows
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let versions = workflows.entry(reference.id.clone()).or_default();
        versions.retain(|kept| {
            kept.definition().version.clone().unwrap_or_default() != reference.version
        });
        versions.push(Arc::new(plan));
        reference
    }

    /// The latest version of workflow `id`.
    pub fn workflow(&self, id: &str) -> Option<Arc<ExecutionPlan>> {
        self.inner
            .workflows
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .and_then(|versions| versions.last().cloned())
    }

    /// Workflow `id` at `version`.
    pub fn workflow_version(&self, id: &str, version: &str) -> Option<Arc<ExecutionPlan>> {
        self.inner
            .workflows
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)?
            .iter()
            .find(|plan| plan.definition().version.as_deref().unwrap_or_default() == version)
            .cloned()
    }

    /// Starts a run of the latest version of workflow `workflow_id`. The run makes
    /// progress only while the returned [`Run`] is polled.
    ///
    /// # Errors
    /// [`EngineError::UnknownWorkflow`].
    pub fn start(&self, workflow_id: &str, options: RunOptions) -> Result<Run, EngineError> {
        let plan = self
            .workflow(workflow_id)
            .ok_or_else(|| EngineError::UnknownWorkflow {
                id: workflow_id.to_owned(),
            })?;
        Ok(self.start_plan(plan, options))
    }

    /// Starts a run of `plan` (which need not be kept by the engine).
    pub fn start_plan(&self, plan: Arc<ExecutionPlan>, options: RunOptions) -> Run {
        let number = self.inner.runs.fetch_add(1, Ordering::Relaxed) + 1;
        let id = options
            .run_id
            .unwrap_or_else(|| RunId::new(format!("run-{number}")));
        let seed = options
            .seed
            .unwrap_or_else(|| mix(self.inner.seed, id.as_str()));
        let control = self.inner.controls.register(&id);
        let identity = run::Identity {
            run_id: id.clone(),
            input: options.input,
            seed,
            started_at: self.inner.clock.now(),
            trigger: options.trigger,
        };
        let plan_for_run = Arc::clone(&plan);
        let future = run::execute(
            Arc::clone(&self.inner),
            plan,
            identity,
            Arc::new(options.context),
            control,
        );
        Run {
            id,
            plan: Arc::clone(&plan_for_run),
            resumed: None,
            future: Box::pin(future),
        }
    }

    /// Runs the latest version of `workflow_id` with `options` to its end.
    ///
    /// # Errors
    /// [`EngineError::UnknownWorkflow`].
    pub async fn run(
        &self,
        workflow_id: &str,
        options: RunOptions,
    ) -> Result<RunReport, EngineError> {
        Ok(self.start(workflow_id, options)?.await)
    }

    /// Validates, compiles and keeps a workflow (by id and version); see
    /// [`OrchestrationEngine::create_workflow`]. With a store, the definition is stored
    /// first (a version never changes once stored).
    ///
    /// With a resource manager, the workflow's `resourceRequirements` are checked against
    /// its pool ([`ResourceManager::check_plan`]).
    ///
    /// # Errors
    /// [`EngineError::Invalid`] with every problem of the definition;
    /// [`EngineError::OverCapacity`] naming every step (or the workflow) whose
    /// requirements the pool could never grant, and the resource;
    /// [`EngineError::Store`] when the store fails or keeps this version with other text
    /// (then the engine does not keep it either).
    pub fn create_workflow(
        &self,
        definition: WorkflowDefinition,
    ) -> Result<WorkflowRef, EngineError> {
        let plan = ExecutionPlan::compile(definition)?;
        if let Some(manager) = &self.inner.resources {
            manager
                .check_plan(&plan)
                .map_err(|problems| EngineError::OverCapacity {
                    workflow: plan.workflow_id().to_owned(),
                    problems,
                })?;
        }
        self.put_definition(&plan).map_err(durable::store_failed)?;
        Ok(self.keep(plan))
    }

    /// Continues every run the store lists as unfinished, as it was when the previous
    /// engine stopped: returns their [`Run`]s, which make progress only while polled.
    ///
    /// Each run is its journal's fold ([`RunState::fold`](crate::store::RunState::fold)),
    /// under its journaled id and seed, on the plan of the version it started with (the
    /// engine's, else the definition the store keeps, compiled and kept). Steps that
    /// completed, were skipped or failed keep their status, output and report and do not
    /// run again. Steps that were running or pending run as usual: a call cut off by the
    /// restart is made again with the same idempotency key (keys are
    /// `run/step/item/iteration`), so an agent that honours keys acts once. A step that
    /// waited for approval waits again (`StepWaiting` is emitted again and
    /// [`approve`](Self::approve) answers it), unless its answer was journaled: then it
    /// acts on that answer. Recovered runs see an empty host [`Context`]; timeouts of
    /// steps restart, the workflow's timeout keeps its deadline. Without a store, there
    /// is nothing to recover.
    ///
    /// # Errors
    /// [`EngineError::Store`] when the store cannot list its runs;
    /// [`EngineError::Recovery`] naming the first run that cannot be loaded, whose
    /// journal does not fold, or whose definition is missing or invalid (no run is
    /// returned then).
    pub fn recover(&self) -> Result<Vec<Run>, EngineError> {
        let Some(store) = &self.inner.store else {
            return Ok(Vec::new());
        };
        let unfinished = store.unfinished_runs().map_err(durable::store_failed)?;
        let mut recovered = Vec::with_capacity(unfinished.len());
        for run in unfinished {
            let failed = |reason| durable::recovery(&run, reason);
            let entries = store
                .load(&run)
                .map_err(|error| failed(RecoveryError::Store(Arc::new(error))))?;
            let journaled =
                Journaled::fold(&entries).map_err(|error| failed(RecoveryError::Journal(error)))?;
            let plan = self
                .recovered_plan(store.as_ref(), &journaled)
                .map_err(failed)?;
            recovered.push((plan, journaled));
        }
        Ok(recovered
            .into_iter()
            .map(|(plan, journaled)| {
                // Runs this engine numbers must not reuse a recovered run's id.
                if let Some(number) = journaled
                    .run_id
                    .as_str()
                    .strip_prefix("run-")
                    .and_then(|number| number.parse::<u64>().ok())
                {
                    self.inner.runs.fetch_max(number, Ordering::Relaxed);
                }
                let id = journaled.run_id.clone();
                let resumed = Resumed::of(&journaled);
                let control = self.inner.controls.register(&id);
                let future = run::resume(
                    Arc::clone(&self.inner),
                    Arc::clone(&plan),
                    journaled,
                    Arc::new(Context::default()),
                    control,
                );
                Run {
                    id,
                    plan,
                    resumed: Some(resumed),
                    future: Box::pin(future),
                }
            })
            .collect())
    }

    /// The plan a recovered run started with: the engine's, else the store's definition.
    fn recovered_plan(
        &self,
        store: &dyn RunStore,
        journaled: &Journaled,
    ) -> Result<Arc<ExecutionPlan>, RecoveryError> {
        let (id, version) = (&journaled.workflow_id, &journaled.version);
        if let Some(plan) = self.workflow_version(id, version) {
            return Ok(plan);
        }
        let json = store
            .definition(id, version)
            .map_err(|error| RecoveryError::Store(Arc::new(error)))?
            .ok_or_else(|| RecoveryError::NoDefinition {
                workflow_id: id.clone(),
                version: version.clone(),
            })?;
        let plan = ExecutionPlan::from_json(&json).map_err(|source| RecoveryError::Definition {
            workflow_id: id.clone(),
            version: version.clone(),
            source,
        })?;
        self.keep(plan);
        self.workflow_version(id, version)
            .ok_or_else(|| RecoveryError::NoDefinition {
                workflow_id: id.clone(),
                version: version.clone(),
            })
    }

    /// Runs the latest version of `workflow_id` with `input` to its end.
    ///
    /// # Errors
    /// [`EngineError::UnknownWorkflow`]. A run that fails is not an error: its report
    /// says how it ended.
    pub async fn execute_workflow(
        &self,
        workflow_id: &str,
        input: Value,
    ) -> Result<RunReport, EngineError> {
        self.run(workflow_id, RunOptions::new(input)).await
    }

    /// Approves the waiting step `step` of run `run`, as `by`, with an optional comment.
    ///
    /// # Errors
    /// [`EngineError::NoPendingApproval`] when that step is not waiting.
    pub fn approve(
        &self,
        run: &RunId,
        step: &str,
        by: &str,
        comment: Option<&str>,
    ) -> Result<(), EngineError> {
        self.inner.answer(run, step, Answer::new(true, by, comment))
    }

    /// Rejects the waiting step `step` of run `run`: the step fails with kind `REJECTED`.
    ///
    /// # Errors
    /// [`EngineError::NoPendingApproval`] when that step is not waiting.
    pub fn reject(
        &self,
        run: &RunId,
        step: &str,
        by: &str,
        comment: Option<&str>,
    ) -> Result<(), EngineError> {
        self.inner
            .answer(run, step, Answer::new(false, by, comment))
    }

    /// Pauses run `run`: it starts no new step (steps in flight finish, approvals can
    /// still be answered) until [`resume_workflow`](Self::resume_workflow). The pause is
    /// journaled, so a run recovered after a restart is still paused; it then starts
    /// nothing, not even the calls the restart cut off, until resumed. A paused run's
    /// workflow `timeout` keeps running. Pausing a paused run does nothing.
    ///
    /// # Errors
    /// [`EngineError::NotRunning`] when the run is not live in this engine.
    pub fn pause_workflow(&self, run: &RunId) -> Result<(), EngineError> {
        self.control(run, control::Command::Pause)
    }

    /// Resumes a paused run (journaled). Resuming a run that is not paused does nothing.
    ///
    /// # Errors
    /// [`EngineError::NotRunning`] when the run is not live in this engine.
    pub fn resume_workflow(&self, run: &RunId) -> Result<(), EngineError> {
        self.control(run, control::Command::Resume)
    }

    /// Cancels run `run` on behalf of `by`: the cancellation is journaled, the steps in
    /// flight are stopped (`CANCELLED`), those not started are `SKIPPED`, and the run
    /// ends `CANCELLED`. A paused run can be cancelled. A cancellation journaled before a
    /// restart ends the recovered run at once.
    ///
    /// # Errors
    /// [`EngineError::NotRunning`] when the run is not live in this engine.
    pub fn cancel_workflow(&self, run: &RunId, by: &str) -> Result<(), EngineError> {
        self.control(run, control::Command::Cancel { by: by.to_owned() })
    }

    fn control(&self, run: &RunId, command: control::Command) -> Result<(), EngineError> {
        if self.inner.controls.send(run, command) {
            Ok(())
        } else {
            Err(EngineError::NotRunning { run: run.clone() })
        }
    }

    /// A stream of every event of every run from now on. Dropping it unsubscribes.
    pub fn subscribe(&self) -> EventStream {
        self.inner.listeners.subscribe()
    }
}

#[async_trait::async_trait]
impl OrchestrationEngine for Engine {
    fn create_workflow(&self, definition: WorkflowDefinition) -> Result<WorkflowRef, EngineError> {
        Engine::create_workflow(self, definition)
    }

    async fn execute_workflow(
        &self,
        workflow_id: &str,
        input: Value,
    ) -> Result<RunReport, EngineError> {
        Engine::execute_workflow(self, workflow_id, input).await
    }

    fn approve(
        &self,
        run: &RunId,
        step: &str,
        by: &str,
        comment: Option<&str>,
    ) -> Result<(), EngineError> {
        Engine::approve(self, run, step, by, comment)
    }

    fn reject(
        &self,
        run: &RunId,
        step: &str,
        by: &str,
        comment: Option<&str>,
    ) -> Result<(), EngineError> {
        Engine::reject(self, run, step, by, comment)
    }

    fn pause_workflow(&self, run: &RunId) -> Result<(), EngineError> {
        Engine::pause_workflow(self, run)
    }

    fn resume_workflow(&self, run: &RunId) -> Result<(), EngineError> {
        Engine::resume_workflow(self, run)
    }

    fn cancel_workflow(&self, run: &RunId, by: &str) -> Result<(), EngineError> {
        Engine::cancel_workflow(self, run, by)
    }
}

/// A run in progress: a future of its [`RunReport`], and its id (for approvals).
#[must_use = "a run makes progress only while it is polled"]
pub struct Run {
    id: RunId,
    plan: Arc<ExecutionPlan>,
    resumed: Option<Resumed>,
    future: BoxFuture<'static, RunReport>,
}

impl Run {
    /// The run's id.
    pub fn id(&self) -> &RunId {
        &self.id
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
    fn of(journaled: &Journaled) -> Self {
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

/// A seed for `text` derived from `seed` (FNV-1a), stable across platforms and releases.
pub(crate) fn mix(seed: u64, text: &str) -> u64 {
    text.bytes()
        .fold(seed ^ 0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
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

    #[test]
    fn seeds_mix_deterministically() {
        assert_eq!(mix(7, "run-1"), mix(7, "run-1"));
        assert_ne!(mix(7, "run-1"), mix(7, "run-2"));
        assert_ne!(mix(7, "run-1"), mix(8, "run-1"));
    }
}
