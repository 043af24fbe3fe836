//! Metrics: a recorder the host installs sees, for runs on the virtual clock, exactly the
//! runs, steps, calls (by outcome), rewards and agent load the engine had, with the
//! labels its table names; the engine's performance report says the same without one.
//!
//! The runs are driven by `VirtualClock::block_on` on the test's thread, so a recorder
//! installed for the test alone (`metrics::with_local_recorder`) sees every metric.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};
use serde_json::{Value, json};
use support::engine::{Harness, Reply, assert_status};
use support::{task, with, workflow};
use tradeflow::agent::AgentId;
use tradeflow::engine::{RunOptions, RunStatus};

/// Each metric in `snapshotter`'s recorder, as `name{label=value,…}` (labels sorted) →
/// its value.
fn values(snapshotter: &Snapshotter) -> BTreeMap<String, DebugValue> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (name(&key), value))
        .collect()
}

fn name(key: &CompositeKey) -> String {
    let mut labels: Vec<String> = key
        .key()
        .labels()
        .map(|label| format!("{}={}", label.key(), label.value()))
        .collect();
    labels.sort();
    let kind = match key.kind() {
        MetricKind::Counter => "counter",
        MetricKind::Gauge => "gauge",
        MetricKind::Histogram => "histogram",
    };
    format!("{kind} {}{{{}}}", key.key().name(), labels.join(","))
}

fn counter(values: &BTreeMap<String, DebugValue>, key: &str) -> Option<u64> {
    match values.get(&format!("counter {key}")) {
        Some(DebugValue::Counter(n)) => Some(*n),
        _ => None,
    }
}

fn gauge(values: &BTreeMap<String, DebugValue>, key: &str) -> Option<f64> {
    match values.get(&format!("gauge {key}")) {
        Some(DebugValue::Gauge(value)) => Some(value.0),
        _ => None,
    }
}

fn histogram(values: &BTreeMap<String, DebugValue>, key: &str) -> Vec<f64> {
    match values.get(&format!("histogram {key}")) {
        Some(DebugValue::Histogram(recorded)) => recorded.iter().map(|value| value.0).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn successful_runs_count_their_runs_steps_and_calls_with_their_durations() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let h = Harness::new();
    h.register(
        h.agent("a-1")
            .replies(|_, _| Reply::ok(json!({"filled": true})).after_ms(250)),
    );
    let definition = with(workflow([task("trade")]), json!({"type": "execution"}));

    metrics::with_local_recorder(&recorder, || {
        for _ in 0..2 {
            assert_status(&h.run(&definition, json!({})), RunStatus::Completed);
        }
    });

    let seen = values(&snapshotter);
    assert_eq!(
        counter(
            &seen,
            "workflow_runs_total{status=COMPLETED,workflow_name=w}"
        ),
        Some(2)
    );
    assert_eq!(
        counter(
            &seen,
            "workflow_success_total{success=true,workflow_type=execution}"
        ),
        Some(2)
    );
    assert_eq!(
        counter(
            &seen,
            "workflow_success_total{success=false,workflow_type=execution}"
        ),
        None
    );
    assert_eq!(
        histogram(
            &seen,
            "workflow_duration_seconds{workflow_name=w,workflow_type=execution}"
        ),
        [0.25, 0.25]
    );
    assert_eq!(
        histogram(
            &seen,
            "step_duration_seconds{step_id=trade,task_type=TASK,workflow_name=w}"
        ),
        [0.25, 0.25]
    );
    assert_eq!(
        counter(
            &seen,
            "step_attempts_total{outcome=success,step_id=trade,workflow_name=w}"
        ),
        Some(2)
    );
    // Every call gave its slot back, and nobody waits.
    assert_eq!(
        gauge(&seen, "agent_utilization_ratio{agent_id=a-1}"),
        Some(0.0)
    );
    assert_eq!(
        gauge(&seen, "agent_calls_waiting{agent_type=AGENT}"),
        Some(0.0)
    );
}

#[test]
fn failed_attempts_are_counted_by_kind_and_the_run_by_its_final_status() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let h = Harness::new();
    h.register(
        h.agent("a-1")
            .replies(|_, _| Reply::temporary("venue busy")),
    );
    let policy = json!({"maxAttempts": 3, "initialDelayMs": 100, "backoffMultiplier": 2});
    let definition = workflow([with(task("trade"), json!({"retryPolicy": policy}))]);

    let report = metrics::with_local_recorder(&recorder, || h.run(&definition, json!({})));

    assert_status(&report, RunStatus::Failed);
    let seen = values(&snapshotter);
    assert_eq!(
        counter(
            &seen,
            "step_attempts_total{outcome=TEMPORARY,step_id=trade,workflow_name=w}"
        ),
        Some(3)
    );
    assert_eq!(
        counter(
            &seen,
            "step_attempts_total{outcome=success,step_id=trade,workflow_name=w}"
        ),
        None
    );
    assert_eq!(
        counter(&seen, "workflow_runs_total{status=FAILED,workflow_name=w}"),
        Some(1)
    );
    // Without a `type`, the workflow's id is its type.
    assert_eq!(
        counter(
            &seen,
            "workflow_success_total{success=false,workflow_type=w}"
        ),
        Some(1)
    );
    // Calls at 0, 100 and 300 ms: the step's work is 300 ms, retries' waits included.
    assert_eq!(
        histogram(
            &seen,
            "step_duration_seconds{step_id=trade,task_type=TASK,workflow_name=w}"
        ),
        [0.3]
    );
    assert_eq!(
        histogram(
            &seen,
            "workflow_duration_seconds{workflow_name=w,workflow_type=w}"
        ),
        [0.3]
    );
}

#[test]
fn a_decision_records_the_reward_its_option_learned() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let h = Harness::new();
    h.register(
        h.agent("exec-1")
            .of_type("TRADING_EXECUTION")
            .answers(json!({"fillQuality": 0.875})),
    );
    let definition = json!({"id": "algo", "steps": [{
        "id": "execution", "type": "decision",
        "agentCriteria": {"type": "TRADING_EXECUTION"},
        "task": {"type": "EXECUTE"},
        "decision": {
            "options": [{"id": "twap"}],
            "reward": "${execution.output.fillQuality}"
        }
    }]});

    let report = metrics::with_local_recorder(&recorder, || h.run(&definition, json!({})));

    assert_status(&report, RunStatus::Completed);
    let seen = values(&snapshotter);
    assert_eq!(
        histogram(
            &seen,
            "decision_reward{option=twap,step_id=execution,workflow_name=algo}"
        ),
        [0.875]
    );
}

#[test]
fn an_agents_utilization_is_its_busy_slots_over_its_slots() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let h = Harness::new();
    // What the gauge said as each call began, read by the agent itself.
    let seen_by_calls: Arc<Mutex<Vec<Option<f64>>>> = Arc::default();
    let (log, reader) = (Arc::clone(&seen_by_calls), snapshotter.clone());
    h.register(h.agent("a-1").capacity(2).replies(move |_, _| {
        let now = gauge(&values(&reader), "agent_utilization_ratio{agent_id=a-1}");
        log.lock().unwrap().push(now);
        Reply::ok(json!({})).after_ms(100)
    }));
    let steps: Vec<Value> = ["a", "b"].into_iter().map(task).collect();
    let definition = json!({"id": "w", "steps": steps, "dependencies": []});

    let report = metrics::with_local_recorder(&recorder, || h.run(&definition, json!({})));

    assert_status(&report, RunStatus::Completed);
    // One slot of two busy as the first call began, both as the second did.
    assert_eq!(*seen_by_calls.lock().unwrap(), [Some(0.5), Some(1.0)]);
    let seen = values(&snapshotter);
    assert_eq!(
        gauge(&seen, "agent_utilization_ratio{agent_id=a-1}"),
        Some(0.0)
    );
    // The engine's own report: two calls of 100 ms on 2 slots over the 100 ms since the
    // engine was built.
    let performance = h.engine.generate_performance_report();
    let a1 = &performance.agents[&AgentId::from("a-1")];
    assert_eq!((a1.calls, a1.failed_calls), (2, 0));
    assert_eq!(a1.busy_seconds, 0.2);
    assert_eq!(a1.utilization, Some(1.0));
}

#[test]
fn calls_waiting_for_a_slot_are_counted_as_they_join_and_leave_the_line() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let h = Harness::new();
    // What the line's gauge said as each call began, read by the agent itself.
    let seen_by_calls: Arc<Mutex<Vec<Option<f64>>>> = Arc::default();
    let (log, reader) = (Arc::clone(&seen_by_calls), snapshotter.clone());
    h.register(h.agent("a-1").capacity(1).replies(move |_, _| {
        let now = gauge(&values(&reader), "agent_calls_waiting{agent_type=AGENT}");
        log.lock().unwrap().push(now);
        Reply::ok(json!({})).after_ms(100)
    }));
    let steps: Vec<Value> = ["a", "b", "c"].into_iter().map(task).collect();
    let definition = json!({"id": "w", "steps": steps, "dependencies": []});

    let report = metrics::with_local_recorder(&recorder, || h.run(&definition, json!({})));

    assert_status(&report, RunStatus::Completed);
    // The first call took the only slot before the others lined up; the second began
    // with the third still in line; the third with nobody left.
    assert_eq!(
        *seen_by_calls.lock().unwrap(),
        [Some(0.0), Some(1.0), Some(0.0)]
    );
    assert_eq!(
        gauge(
            &values(&snapshotter),
            "agent_calls_waiting{agent_type=AGENT}"
        ),
        Some(0.0)
    );
}

#[test]
fn calls_dropped_while_they_wait_leave_the_line_they_were_counted_in() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let h = Harness::new();
    h.register(h.agent("a-1").capacity(1).replies(|_, _| Reply::hang()));
    let steps: Vec<Value> = ["a", "b", "c"].into_iter().map(task).collect();
    let definition = json!({"id": "w", "steps": steps, "dependencies": []});
    let line = || {
        gauge(
            &values(&snapshotter),
            "agent_calls_waiting{agent_type=AGENT}",
        )
    };

    let report = metrics::with_local_recorder(&recorder, || {
        let mut run = h.start(&definition, RunOptions::new(json!({})));
        assert!(h.clock.run_until_stalled(&mut run).is_pending());
        // `a` holds the only slot and hangs; `b` and `c` wait for it.
        assert_eq!(line(), Some(2.0));
        h.engine
            .cancel_workflow(run.id(), "ops")
            .expect("the run is live");
        h.clock.block_on(run)
    });

    assert_status(&report, RunStatus::Cancelled);
    assert_eq!(line(), Some(0.0));
}

#[test]
fn the_performance_report_needs_no_recorder() {
    let h = Harness::new();
    h.register(h.agent("a-1").replies(|_, number| match number {
        3 => Reply::permanent("rejected").after_ms(100),
        _ => Reply::ok(json!({})).after_ms(100 * number as u64),
    }));
    let definition = workflow([task("trade")]);
    let statuses: Vec<RunStatus> = (0..4)
        .map(|_| h.run(&definition, json!({})).status)
        .collect();
    assert_eq!(
        statuses,
        [
            RunStatus::Completed,
            RunStatus::Completed,
            RunStatus::Failed,
            RunStatus::Completed
        ]
    );

    let report = h.engine.generate_performance_report();

    let w = &report.workflows["w"];
    assert_eq!((w.runs, w.succeeded, w.success_rate), (4, 3, 0.75));
    // Runs of 100, 200, 100 and 400 ms: mean 200 ms; nearest rank p50 is the 2nd
    // shortest (100 ms, bucket [98,304, 102,400) µs: midpoint 100,352 µs), p95 and p99
    // the 4th (400 ms, clamped to the longest).
    let duration = w.duration.expect("runs ended");
    assert_eq!(duration.mean_seconds, 0.2);
    assert_eq!(duration.p50_seconds, 0.100352);
    assert_eq!((duration.p95_seconds, duration.p99_seconds), (0.4, 0.4));
    assert_eq!((duration.min_seconds, duration.max_seconds), (0.1, 0.4));
    let a1 = &report.agents[&AgentId::from("a-1")];
    assert_eq!((a1.calls, a1.failed_calls), (4, 1));
    assert_eq!(report.untracked_runs, 0);
}

#[test]
fn budgets_report_the_tokens_left_after_each_reserve() {
    use tradeflow::safety::BudgetSpec;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // An engine budget of 5 that never refills, and a workflow's of 3.
    let h = Harness::with(|builder| {
        builder.budgets([("venue", BudgetSpec::new(5, 0.0).expect("a valid budget"))])
    });
    h.register(h.agent("a-1").answers(json!({})));
    let mut definition = workflow([with(
        task("trade"),
        json!({"budget": {"venue": 2, "orders": 1}}),
    )]);
    definition["budgets"] = json!({"orders": {"capacity": 3, "refillPerSecond": 0}});
    let seen_after = |runs| {
        metrics::with_local_recorder(&recorder, || {
            for _ in 0..runs {
                assert_status(&h.run(&definition, json!({})), RunStatus::Completed);
            }
        });
        let seen = values(&snapshotter);
        (
            gauge(&seen, "budget_available{budget=venue}"),
            gauge(&seen, "budget_available{budget=w/orders}"),
        )
    };

    assert_eq!(seen_after(1), (Some(3.0), Some(2.0)));
    assert_eq!(seen_after(1), (Some(1.0), Some(1.0)));
}
