//! The library depends on no async runtime: the same durable workflow, with a retry that
//! sleeps on the system clock and an approval answered from another task, runs to its end
//! on tokio (multi-threaded) and on smol.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tradeflow::prelude::*;
use tradeflow::store::MemoryStore;

/// Fails its first call (retried after 5 ms), then answers.
struct Flaky {
    descriptor: AgentDescriptor,
    calls: AtomicUsize,
}

#[async_trait]
impl Agent for Flaky {
    fn descriptor(&self) -> &AgentDescriptor {
        &self.descriptor
    }

    async fn execute(&self, request: TaskRequest) -> Result<Value, AgentError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(AgentError::temporary("venue busy"));
        }
        Ok(json!({"filled": true, "step": request.step_id.as_str()}))
    }
}

/// An engine on the system clock, journaling, with workflow `w`: a trade retried once,
/// then an approval.
fn engine() -> Engine {
    let engine = Engine::builder().store(MemoryStore::new()).build();
    let agent = Flaky {
        descriptor: AgentDescriptor::new("exec-1", "EXEC"),
        calls: AtomicUsize::new(0),
    };
    engine.register_agent(Arc::new(agent)).unwrap();
    let definition = WorkflowDefinition::from_value(&json!({"id": "w", "steps": [
        {"id": "trade", "type": "task", "agentCriteria": {"type": "EXEC"},
         "task": {"type": "ORDER"},
         "retryPolicy": {"maxAttempts": 2, "initialDelayMs": 5}},
        {"id": "confirm", "type": "human_approval"}
    ]}))
    .unwrap();
    engine.create_workflow(definition).unwrap();
    engine
}

/// Runs `w`, approving `confirm` as soon as it waits (watching the run's events).
async fn run_and_approve(engine: Engine) -> RunReport {
    let run = engine.start("w", RunOptions::new(json!({}))).unwrap();
    let id = run.id().clone();
    let mut events = run.events();
    let approver = async move {
        while let Some(event) = events.next().await {
            if let RunEvent::StepWaiting { step_id, .. } = event {
                engine.approve(&id, step_id.as_str(), "pm", None).unwrap();
            }
        }
    };
    let (report, ()) = futures::future::join(run, approver).await;
    report
}

fn assert_completed(report: &RunReport) {
    assert_eq!(
        report.status,
        RunStatus::Completed,
        "{}",
        report.to_json_pretty()
    );
    assert_eq!(report.step("trade").and_then(|step| step.attempts), Some(2));
    assert_eq!(
        report
            .step("confirm")
            .and_then(|step| step.approved_by.as_deref()),
        Some("pm")
    );
}

#[test]
fn a_durable_run_completes_on_tokio() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let report = runtime
        .block_on(async { tokio::spawn(run_and_approve(engine())).await })
        .unwrap();
    assert_completed(&report);
}

#[test]
fn a_durable_run_completes_on_smol() {
    let report = smol::block_on(async {
        let task = smol::spawn(run_and_approve(engine()));
        smol::Timer::after(Duration::from_millis(1)).await;
        task.await
    });
    assert_completed(&report);
}
