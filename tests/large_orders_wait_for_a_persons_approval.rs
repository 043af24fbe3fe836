//! A `NotionalGuard` (a `SecurityAnalyzer`) holds an agent step whose orders add up to
//! more than its limit: the step waits for a person's approval before it calls its
//! agent, as a `human_approval` step would; smaller orders go straight through.

mod support;

use std::sync::Arc;

use serde_json::{Value, json};
use support::engine::{Harness, TestAgent, assert_status, step, step_on, t0, waiting_steps};
use support::with;
use tradeflow::clock::VirtualClock;
use tradeflow::engine::{FailureKind, RunOptions, RunStatus, StepStatus};
use tradeflow::security::NotionalGuard;

/// `sizing` (answers the input's orders) → `order-execution` (sends them).
fn workflow() -> Value {
    json!({"id": "algo", "steps": [
        with(step_on("sizing", "SIZER"),
             json!({"task": {"type": "SIZE", "parameters": {"orders": "${input.orders}"}}})),
        with(step_on("order-execution", "EXEC"),
             json!({"task": {"type": "SEND", "parameters": {"orders": "${sizing.output.orders}"}}})),
    ]})
}

fn harness() -> (Harness, Arc<TestAgent>) {
    let clock = VirtualClock::starting_at(t0());
    let guard = NotionalGuard::new("order-*", "orders[*].notional", 1_000_000.0).expect("valid");
    let h = Harness::on_clock(clock, |b| b.analyzer(Arc::new(guard)));
    h.register(
        h.agent("sizer-1")
            .of_type("SIZER")
            .replies(|request, _| support::engine::Reply::ok(request.parameters.clone())),
    );
    let exec = h.register(
        h.agent("exec-1")
            .of_type("EXEC")
            .answers(json!({"sent": true})),
    );
    h.workflow(&workflow());
    (h, exec)
}

fn orders(notionals: &[f64]) -> Value {
    json!({"orders": notionals.iter().map(|n| json!({"notional": n})).collect::<Vec<_>>()})
}

fn waited(h: &Harness) -> Vec<String> {
    waiting_steps(&h.events())
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn orders_over_the_limit_wait_for_approval_before_the_agent_is_called() {
    let (h, exec) = harness();
    let mut run = h
        .engine
        .start("algo", RunOptions::new(orders(&[600_000.0, 500_000.0])))
        .expect("starts");
    assert!(h.clock.run_until_stalled(&mut run).is_pending(), "held");
    assert_eq!(waited(&h), ["order-execution"]);
    assert!(exec.calls().is_empty(), "not sent before the approval");
    h.engine
        .approve(run.id(), "order-execution", "risk-desk", None)
        .expect("the step waits");
    let report = h.clock.block_on(run);
    assert_status(&report, RunStatus::Completed);
    assert_eq!(exec.calls().len(), 1);
    assert_eq!(
        step(&report, "order-execution").approved_by.as_deref(),
        Some("risk-desk")
    );
}

#[test]
fn orders_within_the_limit_go_straight_through() {
    let (h, exec) = harness();
    let report = h.clock.block_on(
        h.engine
            .start("algo", RunOptions::new(orders(&[600_000.0, 400_000.0])))
            .expect("starts"),
    );
    assert_status(&report, RunStatus::Completed);
    assert!(waited(&h).is_empty());
    assert_eq!(exec.calls().len(), 1);
}

#[test]
fn a_rejected_large_order_is_never_sent() {
    let (h, exec) = harness();
    let mut run = h
        .engine
        .start("algo", RunOptions::new(orders(&[2_000_000.0])))
        .expect("starts");
    assert!(h.clock.run_until_stalled(&mut run).is_pending());
    h.engine
        .reject(run.id(), "order-execution", "risk-desk", Some("too large"))
        .expect("the step waits");
    let report = h.clock.block_on(run);
    assert_status(&report, RunStatus::Failed);
    let order = step(&report, "order-execution");
    assert_eq!(order.status, StepStatus::Failed);
    assert_eq!(
        order.error.as_ref().map(|error| error.kind),
        Some(FailureKind::Rejected)
    );
    assert!(exec.calls().is_empty());
}
