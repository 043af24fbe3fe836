//! Execution policies: `SEQUENTIAL` runs one step at a time in listed order where the
//! graph allows, `PARALLEL` every ready step at once; `STOP_ON_FAILURE` cancels what runs
//! and fails the run, `CONTINUE_ON_FAILURE` skips the failed step's dependents and lets
//! the rest finish; a failed `optional` step does not fail the run.

mod support;

use std::sync::Arc;

use serde_json::{Value, json};
use support::engine::{Harness, Reply, TestAgent, assert_status, at_ms, ms, reason, step};
use support::{task_with, with};
use tradeflow::definition::RecoveryStrategy;
use tradeflow::engine::{FailureKind, RunEvent, RunStatus, StepStatus};

/// A task step on agents of `agent_type` with these parameters.
fn on(id: &str, agent_type: &str, parameters: Value) -> Value {
    json!({
        "id": id,
        "type": "task",
        "agentCriteria": {"type": agent_type},
        "task": {"type": "TASK", "parameters": parameters}
    })
}

/// A workflow of `steps` with these `dependencies` and `executionPolicy` (if not null).
fn flow(steps: Vec<Value>, dependencies: Value, policy: Value) -> Value {
    let definition = json!({"id": "w", "steps": steps, "dependencies": dependencies});
    if policy.is_null() {
        definition
    } else {
        with(definition, json!({"executionPolicy": policy}))
    }
}

/// One agent of type `AGENT` that takes five calls at once, each 100 ms.
fn roomy(h: &Harness) -> Arc<TestAgent> {
    h.register(
        h.agent("a-1")
            .capacity(5)
            .replies(|_, _| Reply::ok(json!({})).after_ms(100)),
    )
}

fn called(agent: &TestAgent) -> Vec<(String, std::time::Duration)> {
    agent
        .calls()
        .iter()
        .map(|call| (call.step().to_owned(), call.since_t0()))
        .collect()
}

fn three_independent(policy: Value) -> Value {
    flow(
        vec![
            task_with("a", json!({})),
            task_with("b", json!({})),
            task_with("c", json!({})),
        ],
        json!([]),
        policy,
    )
}

#[test]
fn sequential_runs_independent_steps_one_at_a_time_in_listed_order() {
    let h = Harness::new();
    let agent = roomy(&h);

    let report = h.run(
        &three_independent(json!({"concurrency": "SEQUENTIAL"})),
        json!({}),
    );

    assert_status(&report, RunStatus::Completed);
    assert_eq!(agent.gauge().max(), 1);
    assert_eq!(
        called(&agent),
        [
            ("a".to_owned(), ms(0)),
            ("b".to_owned(), ms(100)),
            ("c".to_owned(), ms(200))
        ]
    );
    assert_eq!(h.elapsed(), ms(300));
}

#[test]
fn sequential_follows_listed_order_where_the_graph_allows() {
    let h = Harness::new();
    let agent = roomy(&h);
    let definition = flow(
        vec![
            task_with("a", json!({})),
            task_with("b", json!({})),
            task_with("c", json!({})),
        ],
        json!([{"from": "c", "to": "a"}]),
        json!({"concurrency": "SEQUENTIAL"}),
    );

    let report = h.run(&definition, json!({}));

    assert_eq!(report.status, RunStatus::Completed);
    let order: Vec<String> = called(&agent).into_iter().map(|(step, _)| step).collect();
    assert_eq!(order, ["b", "c", "a"]);
    assert_eq!(agent.gauge().max(), 1);
}

#[test]
fn sequential_holds_across_agents() {
    let h = Harness::new();
    let gauge = support::engine::Gauge::shared();
    for agent_type in ["X", "Y", "Z"] {
        h.register(
            h.agent(&format!("{agent_type}-1"))
                .of_type(agent_type)
                .counted_by(&gauge)
                .replies(|_, _| Reply::ok(json!({})).after_ms(50)),
        );
    }
    let definition = flow(
        vec![
            on("x", "X", json!({})),
            on("y", "Y", json!({})),
            on("z", "Z", json!({})),
        ],
        json!([]),
        json!({"concurrency": "SEQUENTIAL"}),
    );

    let report = h.run(&definition, json!({}));

    assert_eq!(report.status, RunStatus::Completed);
    assert_eq!(gauge.max(), 1);
    assert_eq!(h.elapsed(), ms(150));
}

#[test]
fn parallel_runs_every_ready_step_at_once() {
    let h = Harness::new();
    let agent = roomy(&h);

    let report = h.run(
        &three_independent(json!({"concurrency": "PARALLEL"})),
        json!({}),
    );

    assert_eq!(report.status, RunStatus::Completed);
    assert_eq!(agent.gauge().max(), 3);
    assert!(called(&agent).iter().all(|(_, at)| *at == ms(0)));
    assert_eq!(h.elapsed(), ms(100));
}

#[test]
fn parallel_is_the_default_and_still_waits_for_dependencies() {
    let h = Harness::new();
    let agent = roomy(&h);
    let definition = flow(
        vec![
            task_with("a", json!({})),
            task_with("b", json!({})),
            task_with("c", json!({})),
        ],
        json!([{"from": "a", "to": "c"}]),
        Value::Null,
    );

    let report = h.run(&definition, json!({}));

    assert_eq!(report.status, RunStatus::Completed);
    let mut calls = called(&agent);
    calls.sort();
    assert_eq!(
        calls,
        [
            ("a".to_owned(), ms(0)),
            ("b".to_owned(), ms(0)),
            ("c".to_owned(), ms(100))
        ]
    );
}

/// `slow` (1 s) and `bad` (fails for good after 10 ms) in parallel, `after` after `bad`.
fn failing(policy: Value) -> (Harness, Arc<TestAgent>, Value) {
    let h = Harness::new();
    let slow = h.register(
        h.agent("s-1")
            .of_type("SLOW")
            .capacity(2)
            .replies(|_, _| Reply::ok(json!({})).after_ms(1000)),
    );
    h.register(
        h.agent("b-1")
            .of_type("BAD")
            .replies(|_, _| Reply::permanent("venue rejected the order").after_ms(10)),
    );
    let definition = flow(
        vec![
            on("slow", "SLOW", json!({})),
            on("bad", "BAD", json!({})),
            on("after", "SLOW", json!({})),
        ],
        json!([{"from": "bad", "to": "after"}]),
        policy,
    );
    (h, slow, definition)
}

#[test]
fn stop_on_failure_cancels_running_steps_and_fails_the_run() {
    let (h, slow, definition) = failing(json!({"failureHandling": "STOP_ON_FAILURE"}));

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Failed);
    let error = report.error.as_ref().expect("a run error");
    assert_eq!(error.step_id.as_ref().map(|id| id.as_str()), Some("bad"));
    assert_eq!(error.kind, FailureKind::Permanent);
    assert!(error.message.contains("bad"), "{}", error.message);
    assert!(
        error.message.contains("venue rejected the order"),
        "{}",
        error.message
    );
    assert_eq!(step(&report, "bad").status, StepStatus::Failed);
    assert_eq!(step(&report, "slow").status, StepStatus::Cancelled);
    assert_eq!(step(&report, "after").status, StepStatus::Skipped);
    assert_eq!(report.ended_at, at_ms(10), "the run ends with the failure");
    assert_eq!(slow.calls().len(), 1, "`after` never started");
    assert_eq!(slow.gauge().now(), 0, "the cancelled call was dropped");
    assert!(h.events().iter().any(|event| matches!(
        event,
        RunEvent::StepCancelled { step_id, at, .. } if step_id == "slow" && *at == at_ms(10)
    )));
}

#[test]
fn stop_on_failure_is_the_default() {
    let (h, _slow, definition) = failing(Value::Null);

    let report = h.run(&definition, json!({}));

    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(step(&report, "slow").status, StepStatus::Cancelled);
    assert_eq!(report.ended_at, at_ms(10));
}

#[test]
fn continue_on_failure_skips_dependents_and_finishes_the_rest() {
    let h = Harness::new();
    h.register(
        h.agent("b-1")
            .of_type("BAD")
            .replies(|_, _| Reply::permanent("no data").after_ms(10)),
    );
    let ok = h.register(
        h.agent("ok-1")
            .of_type("OK")
            .capacity(4)
            .replies(|request, _| {
                let delay = if request.step_id.as_str() == "slow" {
                    500
                } else {
                    10
                };
                Reply::ok(json!({"done": true})).after_ms(delay)
            }),
    );
    let definition = flow(
        vec![
            on("bad", "BAD", json!({})),
            on("bound", "OK", json!({"data": "${bad.output}"})),
            on("ordered", "OK", json!({})),
            on("slow", "OK", json!({})),
            on("after-slow", "OK", json!({})),
        ],
        json!([{"from": "bad", "to": "ordered"}, {"from": "slow", "to": "after-slow"}]),
        json!({"failureHandling": "CONTINUE_ON_FAILURE"}),
    );

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Failed);
    let error = report.error.as_ref().expect("a run error");
    assert_eq!(error.step_id.as_ref().map(|id| id.as_str()), Some("bad"));
    assert_eq!(step(&report, "bad").status, StepStatus::Failed);
    for dependent in ["bound", "ordered"] {
        assert_eq!(
            step(&report, dependent).status,
            StepStatus::Skipped,
            "{dependent}"
        );
        assert!(
            reason(&report, dependent).contains("`bad`"),
            "{}",
            reason(&report, dependent)
        );
    }
    assert_eq!(step(&report, "slow").status, StepStatus::Completed);
    assert_eq!(step(&report, "after-slow").status, StepStatus::Completed);
    assert_eq!(report.ended_at, at_ms(510));
    let called: Vec<String> = ok
        .calls()
        .iter()
        .map(|call| call.step().to_owned())
        .collect();
    assert_eq!(called, ["slow", "after-slow"]);
}

#[test]
fn an_optional_failure_does_not_fail_the_run_and_its_bound_steps_skip() {
    let h = Harness::new();
    h.register(
        h.agent("b-1")
            .of_type("BAD")
            .replies(|_, _| Reply::permanent("no data")),
    );
    let ok = h.register(h.agent("ok-1").of_type("OK"));
    let definition = json!({"id": "w", "steps": [
        with(on("extra", "BAD", json!({})), json!({"optional": true})),
        on("bound", "OK", json!({"value": "${extra.output.value}"})),
        on("next", "OK", json!({})),
    ]});

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(report.error, None);
    // Self-healing recovers an optional step's failure by skipping it.
    let extra = step(&report, "extra");
    assert_eq!(extra.status, StepStatus::Skipped);
    assert_eq!(extra.recoveries.len(), 1);
    assert_eq!(extra.recoveries[0].strategy, RecoveryStrategy::Skip);
    assert_eq!(extra.recoveries[0].kind, FailureKind::Permanent);
    assert!(reason(&report, "extra").starts_with("recovered by SKIP"));
    assert_eq!(step(&report, "bound").status, StepStatus::Skipped);
    assert!(
        reason(&report, "bound").contains("`extra`"),
        "{}",
        reason(&report, "bound")
    );
    // `next` only follows `bound` in listed order: it runs.
    assert_eq!(step(&report, "next").status, StepStatus::Completed);
    let called: Vec<String> = ok
        .calls()
        .iter()
        .map(|call| call.step().to_owned())
        .collect();
    assert_eq!(called, ["next"]);
}

#[test]
fn an_optional_failure_cancels_nothing() {
    let (h, slow, _) = failing(Value::Null);
    let definition = flow(
        vec![
            on("slow", "SLOW", json!({})),
            with(on("bad", "BAD", json!({})), json!({"optional": true})),
            on("after", "SLOW", json!({})),
        ],
        json!([{"from": "bad", "to": "after"}]),
        Value::Null,
    );

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(step(&report, "slow").status, StepStatus::Completed);
    assert_eq!(
        step(&report, "bad").status,
        StepStatus::Skipped,
        "recovered"
    );
    // `after` only follows the optional step (no binding): it runs.
    assert_eq!(step(&report, "after").status, StepStatus::Completed);
    assert_eq!(slow.calls().len(), 2);
    assert_eq!(report.ended_at, at_ms(1010));
}
