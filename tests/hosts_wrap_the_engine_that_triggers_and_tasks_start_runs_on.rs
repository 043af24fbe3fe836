//! `OrchestrationEngine` is what `Triggers` and the task `Dispatcher` take: a host's
//! wrapper around the engine sees every run they start and may refuse one (the firing
//! then says so); the trait's `allocate_resources` and `adapt_to_conditions` forward to
//! the engine's.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use serde_json::{Value, json};
use support::engine::{Harness, assert_status, step_on};
use tradeflow::agent::{AgentId, RebalanceCriteria, RebalanceReport, TaskRequest};
use tradeflow::clock::Clock;
use tradeflow::coordinate::Mode;
use tradeflow::definition::WorkflowDefinition;
use tradeflow::engine::{
    Coordinated, Engine, EngineError, HeldAdaptation, OrchestrationEngine, Run, RunOptions,
    RunReport, RunStatus, WorkflowRef,
};
use tradeflow::plan::ExecutionPlan;
use tradeflow::resource::{AllocationGuard, ResourcePool, ResourceRequest};
use tradeflow::run::RunId;
use tradeflow::scheduler::{
    DispatchOutcome, Dispatcher, NotFiredReason, SchedulePolicy, Task, TaskQueue, TaskScheduler,
    Triggers, WorkflowTask,
};

/// Counts the runs it starts and refuses those of workflow `forbidden`.
struct Guarded {
    engine: Engine,
    forbidden: String,
    starts: AtomicUsize,
}

#[async_trait::async_trait]
impl OrchestrationEngine for Guarded {
    fn clock(&self) -> &Arc<dyn Clock> {
        self.engine.clock()
    }

    fn workflow(&self, id: &str) -> Option<Arc<ExecutionPlan>> {
        self.engine.workflow(id)
    }

    fn create_workflow(&self, definition: WorkflowDefinition) -> Result<WorkflowRef, EngineError> {
        self.engine.create_workflow(definition)
    }

    fn start(&self, workflow_id: &str, options: RunOptions) -> Result<Run, EngineError> {
        if workflow_id == self.forbidden {
            return Err(EngineError::Refused {
                request: format!("start of workflow `{workflow_id}`"),
                reason: "not allowed".to_owned(),
            });
        }
        self.starts.fetch_add(1, Ordering::SeqCst);
        self.engine.start(workflow_id, options)
    }

    async fn execute_workflow(&self, id: &str, input: Value) -> Result<RunReport, EngineError> {
        Ok(OrchestrationEngine::start(self, id, RunOptions::new(input))?.await)
    }

    fn approve(
        &self,
        run: &RunId,
        step: &str,
        by: &str,
        c: Option<&str>,
    ) -> Result<(), EngineError> {
        self.engine.approve(run, step, by, c)
    }

    fn reject(
        &self,
        run: &RunId,
        step: &str,
        by: &str,
        c: Option<&str>,
    ) -> Result<(), EngineError> {
        self.engine.reject(run, step, by, c)
    }

    fn pause_workflow(&self, run: &RunId, by: &str) -> Result<(), EngineError> {
        self.engine.pause_workflow(run, by)
    }

    fn resume_workflow(&self, run: &RunId, by: &str) -> Result<(), EngineError> {
        self.engine.resume_workflow(run, by)
    }

    fn cancel_workflow(&self, run: &RunId, by: &str) -> Result<(), EngineError> {
        self.engine.cancel_workflow(run, by)
    }

    async fn allocate_resources(
        &self,
        request: ResourceRequest,
    ) -> Result<AllocationGuard, EngineError> {
        OrchestrationEngine::allocate_resources(&self.engine, request).await
    }

    fn adapt_to_conditions(&self, conditions: Vec<(String, Value)>) -> Vec<HeldAdaptation> {
        self.engine.adapt_to_conditions(conditions)
    }

    fn check_kill_switch(&self) -> Vec<tradeflow::engine::Tripped> {
        self.engine.check_kill_switch()
    }

    async fn coordinate_agents(
        &self,
        agent_ids: &[AgentId],
        task: TaskRequest,
        mode: &Mode,
    ) -> Result<Coordinated, EngineError> {
        OrchestrationEngine::coordinate_agents(&self.engine, agent_ids, task, mode).await
    }

    fn rebalance_workload(
        &self,
        criteria: &RebalanceCriteria,
        by: &str,
    ) -> Result<RebalanceReport, EngineError> {
        OrchestrationEngine::rebalance_workload(&self.engine, criteria, by)
    }
}

fn guarded(h: &Harness, forbidden: &str) -> Arc<Guarded> {
    Arc::new(Guarded {
        engine: h.engine.clone(),
        forbidden: forbidden.to_owned(),
        starts: AtomicUsize::new(0),
    })
}

fn on_signal(id: &str) -> Value {
    json!({"id": id, "steps": [step_on("s", "T")],
           "triggers": [{"type": "EVENT", "eventType": "SIGNAL"}]})
}

#[test]
fn triggers_start_runs_through_the_hosts_wrapper_which_may_refuse_them() {
    let h = Harness::new();
    h.register(h.agent("a-1").of_type("T"));
    h.workflow(&on_signal("allowed"));
    h.workflow(&on_signal("forbidden"));
    let host = guarded(&h, "forbidden");
    let allowed =
        Triggers::on(Arc::clone(&host) as Arc<dyn OrchestrationEngine>, "allowed").unwrap();
    let forbidden = Triggers::on(
        Arc::clone(&host) as Arc<dyn OrchestrationEngine>,
        "forbidden",
    )
    .unwrap();

    let refused = forbidden.publish_event("SIGNAL", json!({})).remove(0);
    let fired = allowed.publish_event("SIGNAL", json!({})).remove(0);

    match refused.not_fired() {
        Some(NotFiredReason::StartRefused(EngineError::Refused { reason, .. })) => {
            assert_eq!(reason, "not allowed");
        }
        other => panic!("expected the wrapper's refusal, got {other:?}"),
    }
    assert_eq!(
        refused.not_fired().unwrap().to_string(),
        "the engine refused to start the run: start of workflow `forbidden` refused: not allowed"
    );
    let report = h
        .clock
        .block_on(fired.into_run().expect("the trigger fired"));
    assert_status(&report, RunStatus::Completed);
    assert_eq!(host.starts.load(Ordering::SeqCst), 1);
}

#[test]
fn the_dispatcher_starts_runs_through_the_hosts_wrapper() {
    let h = Harness::new();
    h.register(h.agent("a-1").of_type("T"));
    h.workflow(&on_signal("allowed"));
    h.workflow(&on_signal("forbidden"));
    let host = guarded(&h, "forbidden");
    let queue = Arc::new(TaskQueue::new(h.clock.clone()));
    let after = |secs| SchedulePolicy::after(std::time::Duration::from_secs(secs));
    queue
        .schedule_task(
            Task::new("a", WorkflowTask::new("forbidden", json!({}))),
            after(1),
        )
        .unwrap();
    queue
        .schedule_task(
            Task::new("b", WorkflowTask::new("allowed", json!({}))),
            after(2),
        )
        .unwrap();
    let dispatcher = Dispatcher::new(host.clone(), queue as Arc<dyn TaskScheduler<_>>);

    let mut dispatched: Vec<_> = h.clock.block_on(dispatcher.run().take(2).collect());

    let allowed = dispatched.pop().unwrap();
    let forbidden = dispatched.pop().unwrap();
    assert!(matches!(
        forbidden.outcome,
        DispatchOutcome::Refused(EngineError::Refused { .. })
    ));
    assert_status(
        &h.clock.block_on(allowed.into_run().unwrap()),
        RunStatus::Completed,
    );
    assert_eq!(host.starts.load(Ordering::SeqCst), 1);
}

#[test]
fn allocate_resources_forwards_to_the_engines_manager_or_says_it_has_none() {
    let without = Harness::new();
    let refused = without
        .clock
        .block_on(OrchestrationEngine::allocate_resources(
            &without.engine,
            ResourceRequest::new().with_amount("cpu", 1.0),
        ));
    assert!(matches!(refused, Err(EngineError::NoResourceManager)));

    let with =
        Harness::with(|builder| builder.resource_pool(ResourcePool::new([("cpu", 2.0)]).unwrap()));
    let engine: Arc<dyn OrchestrationEngine> = Arc::new(with.engine.clone());
    let guard = with
        .clock
        .block_on(engine.allocate_resources(ResourceRequest::new().with_amount("cpu", 1.5)))
        .expect("the pool has 2 cpu");
    let usage = with.engine.resources().unwrap().monitor_resource_usage();
    assert_eq!(usage.in_use(&"cpu".into()), 1.5);
    let too_much = with
        .clock
        .block_on(engine.allocate_resources(ResourceRequest::new().with_amount("cpu", 3.0)));
    assert!(matches!(too_much, Err(EngineError::Resource(_))));
    drop(guard);
    let usage = with.engine.resources().unwrap().monitor_resource_usage();
    assert_eq!(usage.in_use(&"cpu".into()), 0.0);
}

#[test]
fn adapt_to_conditions_through_the_trait_says_which_adaptations_hold() {
    let h = Harness::new();
    h.workflow(&json!({"id": "w", "steps": [step_on("risk", "T")],
        "adaptations": [{"id": "volatile", "when": "volatility > 0.5",
                         "changes": [{"stepId": "risk", "timeout": 5000}]}]}));
    let engine: Arc<dyn OrchestrationEngine> = guarded(&h, "none");

    assert!(
        engine
            .adapt_to_conditions(vec![("volatility".to_owned(), json!(0.2))])
            .is_empty()
    );
    let held = engine.adapt_to_conditions(vec![("volatility".to_owned(), json!(0.8))]);

    assert_eq!(held.len(), 1);
    assert_eq!(
        (held[0].workflow_id.as_str(), held[0].adaptation_id.as_str()),
        ("w", "volatile")
    );
}
