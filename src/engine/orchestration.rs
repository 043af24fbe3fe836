//! The engine's contract, [`OrchestrationEngine`], for hosts that substitute or wrap it.
//!
//! [`Engine`] implements it by forwarding to its own methods. A host wraps the engine to
//! add what this crate does not decide for it (permissions, auditing, rate limits, a
//! remote engine): the wrapper implements the trait and calls the engine inside.
//!
//! What takes the trait, so that a wrapper sees every run they start:
//! [`Triggers`](crate::scheduler::Triggers) (built with
//! [`Triggers::on`](crate::scheduler::Triggers::on)) and the task
//! [`Dispatcher`](crate::scheduler::Dispatcher) start their runs with
//! [`start`](OrchestrationEngine::start) and sleep on its
//! [`clock`](OrchestrationEngine::clock). A start the wrapper refuses (an `Err`) is
//! reported by them, never a panic: a trigger's [`Firing`](crate::scheduler::Firing)
//! says [`NotFiredReason::StartRefused`](crate::scheduler::NotFiredReason::StartRefused).
//!
//! The methods, by what they do:
//! - workflows: [`create_workflow`](OrchestrationEngine::create_workflow),
//!   [`workflow`](OrchestrationEngine::workflow);
//! - runs: [`start`](OrchestrationEngine::start) (a run as a future, driven by the
//!   caller), [`execute_workflow`](OrchestrationEngine::execute_workflow) (to its end),
//!   [`pause_workflow`](OrchestrationEngine::pause_workflow),
//!   [`resume_workflow`](OrchestrationEngine::resume_workflow),
//!   [`cancel_workflow`](OrchestrationEngine::cancel_workflow),
//!   [`approve`](OrchestrationEngine::approve), [`reject`](OrchestrationEngine::reject);
//! - the engine's resources: [`allocate_resources`](OrchestrationEngine::allocate_resources)
//!   (from its [`ResourceManager`](crate::resource::ResourceManager));
//! - conditions: [`adapt_to_conditions`](OrchestrationEngine::adapt_to_conditions);
//! - agents: [`coordinate_agents`](OrchestrationEngine::coordinate_agents) (one task to
//!   named agents, their answers combined),
//!   [`rebalance_workload`](OrchestrationEngine::rebalance_workload) (drain, undrain,
//!   weights, a utilization ceiling);
//! - time: [`clock`](OrchestrationEngine::clock).

use std::sync::Arc;

use serde_json::Value;

use super::{
    Coordinated, Engine, EngineError, HeldAdaptation, Run, RunOptions, RunReport, WorkflowRef,
};
use crate::agent::{AgentId, RebalanceCriteria, RebalanceReport, TaskRequest};
use crate::clock::Clock;
use crate::coordinate::Mode;
use crate::definition::WorkflowDefinition;
use crate::plan::ExecutionPlan;
use crate::resource::{AllocationGuard, ResourceRequest};
use crate::run::RunId;

/// The engine's contract, for hosts that want to substitute or wrap it.
///
/// [`Engine`] implements it by forwarding to its own methods. A host wraps the engine to
/// add what this crate does not decide for it (permissions, auditing, rate limits, a
/// remote engine): the wrapper implements the trait and calls the engine inside.
///
/// What takes the trait, so that a wrapper sees every run they start:
/// [`Triggers`](crate::scheduler::Triggers) (built with
/// [`Triggers::on`](crate::scheduler::Triggers::on)) and the task
/// [`Dispatcher`](crate::scheduler::Dispatcher) start their runs with
/// [`start`](OrchestrationEngine::start) and sleep on its
/// [`clock`](OrchestrationEngine::clock). A start the wrapper refuses (an `Err`) is
/// reported by them, never a panic: a trigger's [`Firing`](crate::scheduler::Firing)
/// says [`NotFiredReason::StartRefused`](crate::scheduler::NotFiredReason::StartRefused).
///
/// The methods, by what they do:
/// - workflows: [`create_workflow`](OrchestrationEngine::create_workflow),
///   [`workflow`](OrchestrationEngine::workflow);
/// - runs: [`start`](OrchestrationEngine::start) (a run as a future, driven by the
///   caller), [`execute_workflow`](OrchestrationEngine::execute_workflow) (to its end),
///   [`pause_workflow`](OrchestrationEngine::pause_workflow),
///   [`resume_workflow`](OrchestrationEngine::resume_workflow),
///   [`cancel_workflow`](OrchestrationEngine::cancel_workflow),
///   [`approve`](OrchestrationEngine::approve), [`reject`](OrchestrationEngine::reject);
/// - the engine's resources: [`allocate_resources`](OrchestrationEngine::allocate_resources)
///   (from its [`ResourceManager`](crate::resource::ResourceManager));
/// - conditions: [`adapt_to_conditions`](OrchestrationEngine::adapt_to_conditions);
/// - agents: [`coordinate_agents`](OrchestrationEngine::coordinate_agents) (one task to
///   named agents, their answers combined),
///   [`rebalance_workload`](OrchestrationEngine::rebalance_workload) (drain, undrain,
///   weights, a utilization ceiling);
/// - time: [`clock`](OrchestrationEngine::clock).
///
/// # Examples
/// A wrapper that refuses to start one workflow and forwards everything else:
/// ```
/// use std::sync::Arc;
/// use serde_json::Value;
/// use tradeflow::agent::{AgentId, RebalanceCriteria, RebalanceReport, TaskRequest};
/// use tradeflow::clock::Clock;
/// use tradeflow::coordinate::Mode;
/// use tradeflow::definition::WorkflowDefinition;
/// use tradeflow::engine::{
///     Coordinated, Engine, EngineError, HeldAdaptation, OrchestrationEngine, Run, RunOptions,
///     RunReport, Tripped, WorkflowRef,
/// };
/// use tradeflow::plan::ExecutionPlan;
/// use tradeflow::resource::{AllocationGuard, ResourceRequest};
/// use tradeflow::run::RunId;
///
/// struct NoLiquidation(Engine);
///
/// #[tradeflow::async_trait]
/// impl OrchestrationEngine for NoLiquidation {
///     fn start(&self, workflow_id: &str, options: RunOptions) -> Result<Run, EngineError> {
///         if workflow_id == "liquidate" {
///             return Err(EngineError::Refused {
///                 request: format!("start of workflow `{workflow_id}`"),
///                 reason: "liquidation needs a second signature".into(),
///             });
///         }
///         self.0.start(workflow_id, options)
///     }
///     async fn execute_workflow(&self, id: &str, input: Value) -> Result<RunReport, EngineError> {
///         Ok(OrchestrationEngine::start(self, id, RunOptions::new(input))?.await)
///     }
///     fn clock(&self) -> &Arc<dyn Clock> { self.0.clock() }
///     fn workflow(&self, id: &str) -> Option<Arc<ExecutionPlan>> { self.0.workflow(id) }
///     fn create_workflow(&self, d: WorkflowDefinition) -> Result<WorkflowRef, EngineError> {
///         self.0.create_workflow(d)
///     }
///     fn approve(&self, run: &RunId, step: &str, by: &str, comment: Option<&str>)
///         -> Result<(), EngineError> { self.0.approve(run, step, by, comment) }
///     fn reject(&self, run: &RunId, step: &str, by: &str, comment: Option<&str>)
///         -> Result<(), EngineError> { self.0.reject(run, step, by, comment) }
///     fn pause_workflow(&self, run: &RunId, by: &str) -> Result<(), EngineError> {
///         self.0.pause_workflow(run, by)
///     }
///     fn resume_workflow(&self, run: &RunId, by: &str) -> Result<(), EngineError> {
///         self.0.resume_workflow(run, by)
///     }
///     fn cancel_workflow(&self, run: &RunId, by: &str) -> Result<(), EngineError> {
///         self.0.cancel_workflow(run, by)
///     }
///     async fn allocate_resources(&self, request: ResourceRequest)
///         -> Result<AllocationGuard, EngineError> {
///         OrchestrationEngine::allocate_resources(&self.0, request).await
///     }
///     fn adapt_to_conditions(&self, conditions: Vec<(String, Value)>) -> Vec<HeldAdaptation> {
///         self.0.adapt_to_conditions(conditions)
///     }
///     fn check_kill_switch(&self) -> Vec<Tripped> {
///         self.0.check_kill_switch()
///     }
///     async fn coordinate_agents(&self, agents: &[AgentId], task: TaskRequest, mode: &Mode)
///         -> Result<Coordinated, EngineError> {
///         Ok(self.0.coordinate_agents(agents, task, mode).await?)
///     }
///     fn rebalance_workload(&self, criteria: &RebalanceCriteria, by: &str)
///         -> Result<RebalanceReport, EngineError> {
///         Ok(self.0.rebalance_workload(criteria, by)?)
///     }
/// }
///
/// let engine: Arc<dyn OrchestrationEngine> = Arc::new(NoLiquidation(Engine::builder().build()));
/// let refused = engine.start("liquidate", RunOptions::new(Value::Null)).unwrap_err();
/// assert!(matches!(refused, EngineError::Refused { .. }));
/// ```
#[async_trait::async_trait]
pub trait OrchestrationEngine: Send + Sync {
    /// The engine's clock: what [`Triggers`](crate::scheduler::Triggers) and the
    /// [`Dispatcher`](crate::scheduler::Dispatcher) sleep on.
    fn clock(&self) -> &Arc<dyn Clock>;

    /// The latest version of workflow `id`, if the engine keeps it.
    fn workflow(&self, id: &str) -> Option<Arc<ExecutionPlan>>;

    /// Validates, compiles and keeps a workflow (by id and version).
    ///
    /// # Errors
    /// [`EngineError::Invalid`] with every problem of the definition;
    /// [`EngineError::OverCapacity`] when its `resourceRequirements` could never be
    /// granted by the engine's resource pool.
    fn create_workflow(&self, definition: WorkflowDefinition) -> Result<WorkflowRef, EngineError>;

    /// Starts a run of the latest version of workflow `workflow_id` (or the version
    /// [`RunOptions::version`] names); the run makes progress only while the returned
    /// [`Run`] is polled, on the caller's executor.
    ///
    /// # Errors
    /// [`EngineError::UnknownWorkflow`], [`EngineError::UnknownVersion`];
    /// [`EngineError::NoAgents`] when the engine checks agents before a run; a wrapper's
    /// own refusal ([`EngineError::Refused`]).
    fn start(&self, workflow_id: &str, options: RunOptions) -> Result<Run, EngineError>;

    /// Runs the latest version of workflow `workflow_id` with `input` to its end.
    ///
    /// # Errors
    /// [`EngineError::UnknownWorkflow`]; [`EngineError::NoAgents`] when the engine checks
    /// agents before a run ([`AgentCheck::BeforeStart`](super::AgentCheck::BeforeStart)).
    /// A run that fails is not an error: its report says how it ended.
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

    /// Pauses a run on behalf of `by`: it starts no new step until resumed; steps in
    /// flight finish.
    ///
    /// # Errors
    /// [`EngineError::NotRunning`] when the run is not live.
    fn pause_workflow(&self, run: &RunId, by: &str) -> Result<(), EngineError>;

    /// Resumes a paused run on behalf of `by`.
    ///
    /// # Errors
    /// [`EngineError::NotRunning`] when the run is not live.
    fn resume_workflow(&self, run: &RunId, by: &str) -> Result<(), EngineError>;

    /// Cancels a run: steps in flight are stopped and the run ends `CANCELLED`.
    ///
    /// # Errors
    /// [`EngineError::NotRunning`] when the run is not live.
    fn cancel_workflow(&self, run: &RunId, by: &str) -> Result<(), EngineError>;

    /// Takes `request` from the engine's resource pool, waiting until all of it can be
    /// granted at once (lower `priority` first, as the engine's manager orders them);
    /// the guard gives it back when dropped. Runs' `resourceRequirements` draw on the
    /// same pool, so a host can hold resources its runs then wait for.
    ///
    /// # Errors
    /// [`EngineError::NoResourceManager`] when the engine was built without one;
    /// [`EngineError::Resource`] at once when the request could never be granted.
    async fn allocate_resources(
        &self,
        request: ResourceRequest,
    ) -> Result<AllocationGuard, EngineError>;

    /// Sets market conditions (each a name and a JSON value) that adaptations read from
    /// now on, and returns the adaptations that hold now, by workflow then listed order
    /// (see [`Engine::adapt_to_conditions`]).
    fn adapt_to_conditions(&self, conditions: Vec<(String, Value)>) -> Vec<HeldAdaptation>;

    /// Evaluates the engine's armed kill switch rules over its conditions now, and
    /// returns the rules that tripped, with their flatten runs (see
    /// [`Engine::check_kill_switch`]). A timeline's replay calls it after each metric and
    /// context change.
    fn check_kill_switch(&self) -> Vec<super::Tripped>;

    /// Gives `task` to each of the named agents and combines their answers as `mode`
    /// says (see [`Engine::coordinate_agents`]).
    ///
    /// # Errors
    /// [`EngineError::Coordinate`] with the [`CoordinateError`](super::CoordinateError)
    /// (no agent named, an unknown or repeated one, no quorum, every call failed); a
    /// wrapper's own refusal ([`EngineError::Refused`]).
    async fn coordinate_agents(
        &self,
        agent_ids: &[AgentId],
        task: TaskRequest,
        mode: &Mode,
    ) -> Result<Coordinated, EngineError>;

    /// Drains, undrains and reweighs agents and sets the utilization ceiling on behalf
    /// of `by`, returning what changed (see [`Engine::rebalance_workload`]).
    ///
    /// # Errors
    /// [`EngineError::Rebalance`] naming the unknown agent or invalid value (nothing
    /// changed); a wrapper's own refusal ([`EngineError::Refused`]).
    fn rebalance_workload(
        &self,
        criteria: &RebalanceCriteria,
        by: &str,
    ) -> Result<RebalanceReport, EngineError>;
}

#[async_trait::async_trait]
impl OrchestrationEngine for Engine {
    fn clock(&self) -> &Arc<dyn Clock> {
        Engine::clock(self)
    }

    fn workflow(&self, id: &str) -> Option<Arc<ExecutionPlan>> {
        Engine::workflow(self, id)
    }

    fn start(&self, workflow_id: &str, options: RunOptions) -> Result<Run, EngineError> {
        Engine::start(self, workflow_id, options)
    }

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

    fn pause_workflow(&self, run: &RunId, by: &str) -> Result<(), EngineError> {
        Engine::pause_workflow(self, run, by)
    }

    fn resume_workflow(&self, run: &RunId, by: &str) -> Result<(), EngineError> {
        Engine::resume_workflow(self, run, by)
    }

    fn cancel_workflow(&self, run: &RunId, by: &str) -> Result<(), EngineError> {
        Engine::cancel_workflow(self, run, by)
    }

    async fn allocate_resources(
        &self,
        request: ResourceRequest,
    ) -> Result<AllocationGuard, EngineError> {
        let manager = self.resources().ok_or(EngineError::NoResourceManager)?;
        Ok(manager.allocate_resources(request).await?)
    }

    fn adapt_to_conditions(&self, conditions: Vec<(String, Value)>) -> Vec<HeldAdaptation> {
        Engine::adapt_to_conditions(self, conditions)
    }

    fn check_kill_switch(&self) -> Vec<super::Tripped> {
        Engine::check_kill_switch(self)
    }

    async fn coordinate_agents(
        &self,
        agent_ids: &[AgentId],
        task: TaskRequest,
        mode: &Mode,
    ) -> Result<Coordinated, EngineError> {
        Ok(Engine::coordinate_agents(self, agent_ids, task, mode).await?)
    }

    fn rebalance_workload(
        &self,
        criteria: &RebalanceCriteria,
        by: &str,
    ) -> Result<RebalanceReport, EngineError> {
        Engine::rebalance_workload(self, criteria, by)
    }
}

macro_rules! forward {
    ($pointer:ident) => {
        #[async_trait::async_trait]
        impl<E: OrchestrationEngine + ?Sized> OrchestrationEngine for $pointer<E> {
            fn clock(&self) -> &Arc<dyn Clock> {
                (**self).clock()
            }

            fn workflow(&self, id: &str) -> Option<Arc<ExecutionPlan>> {
                (**self).workflow(id)
            }

            fn create_workflow(
                &self,
                definition: WorkflowDefinition,
            ) -> Result<WorkflowRef, EngineError> {
                (**self).create_workflow(definition)
            }

            fn start(&self, workflow_id: &str, options: RunOptions) -> Result<Run, EngineError> {
                (**self).start(workflow_id, options)
            }

            async fn execute_workflow(
                &self,
                workflow_id: &str,
                input: Value,
            ) -> Result<RunReport, EngineError> {
                (**self).execute_workflow(workflow_id, input).await
            }

            fn approve(
                &self,
                run: &RunId,
                step: &str,
                by: &str,
                comment: Option<&str>,
            ) -> Result<(), EngineError> {
                (**self).approve(run, step, by, comment)
            }

            fn reject(
                &self,
                run: &RunId,
                step: &str,
                by: &str,
                comment: Option<&str>,
            ) -> Result<(), EngineError> {
                (**self).reject(run, step, by, comment)
            }

            fn pause_workflow(&self, run: &RunId, by: &str) -> Result<(), EngineError> {
                (**self).pause_workflow(run, by)
            }

            fn resume_workflow(&self, run: &RunId, by: &str) -> Result<(), EngineError> {
                (**self).resume_workflow(run, by)
            }

            fn cancel_workflow(&self, run: &RunId, by: &str) -> Result<(), EngineError> {
                (**self).cancel_workflow(run, by)
            }

            async fn allocate_resources(
                &self,
                request: ResourceRequest,
            ) -> Result<AllocationGuard, EngineError> {
                (**self).allocate_resources(request).await
            }

            fn adapt_to_conditions(&self, conditions: Vec<(String, Value)>) -> Vec<HeldAdaptation> {
                (**self).adapt_to_conditions(conditions)
            }

            fn check_kill_switch(&self) -> Vec<super::Tripped> {
                (**self).check_kill_switch()
            }

            async fn coordinate_agents(
                &self,
                agent_ids: &[AgentId],
                task: TaskRequest,
                mode: &Mode,
            ) -> Result<Coordinated, EngineError> {
                (**self).coordinate_agents(agent_ids, task, mode).await
            }

            fn rebalance_workload(
                &self,
                criteria: &RebalanceCriteria,
                by: &str,
            ) -> Result<RebalanceReport, EngineError> {
                (**self).rebalance_workload(criteria, by)
            }
        }
    };
}

forward!(Arc);
forward!(Box);
