//! Capacity: an agent never has more calls in flight than its `max_concurrency`; when
//! every eligible agent is busy, a call waits for a slot instead of failing.

mod support;

use std::collections::BTreeMap;

use futures::future::join_all;
use serde_json::{Value, json};
use support::engine::{Gauge, Harness, Reply, assert_status, ms, step};
use support::{task_with, with, workflow};
use tradeflow::engine::{RunOptions, RunStatus};

fn fan_out() -> Value {
    workflow([with(
        task_with("execute", json!({"orders": "${input.orders}"})),
        json!({"type": "parallel"}),
    )])
}

#[test]
fn a_parallel_step_never_overloads_its_agent() {
    let h = Harness::new();
    let agent = h.register(
        h.agent("exec-1")
            .capacity(2)
            .replies(|_, _| Reply::ok(json!({"ok": true})).after_ms(100)),
    );
    let orders: Vec<Value> = (1..=10).map(|i| json!({"id": i})).collect();

    let report = h.run(&fan_out(), json!({"orders": orders}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(agent.calls().len(), 10);
    assert_eq!(agent.gauge().max(), 2);
    // Ten calls, two at a time, 100 ms each.
    assert_eq!(h.elapsed(), ms(500));
    assert_eq!(
        step(&report, "execute").output.as_ref().unwrap()["results"]
            .as_array()
            .map(Vec::len),
        Some(10)
    );
}

#[test]
fn calls_spread_over_agents_within_each_capacity() {
    let h = Harness::new();
    let total = Gauge::shared();
    let agents: Vec<_> = [("exec-1", 3), ("exec-2", 1), ("exec-3", 2)]
        .into_iter()
        .map(|(id, capacity)| {
            h.register(
                h.agent(id)
                    .capacity(capacity)
                    .counted_by(&total)
                    .replies(|_, _| Reply::ok(json!({})).after_ms(100)),
            )
        })
        .collect();
    let orders: Vec<Value> = (1..=12).map(|i| json!(i)).collect();

    let report = h.run(&fan_out(), json!({"orders": orders}));

    assert_eq!(report.status, RunStatus::Completed);
    assert_eq!(
        total.max(),
        6,
        "every slot of the three agents was used at once"
    );
    let per_agent: Vec<usize> = agents.iter().map(|agent| agent.calls().len()).collect();
    assert_eq!(per_agent.iter().sum::<usize>(), 12);
    // Per agent (the gauge is shared): every call lasts 100 ms and starts on a multiple
    // of 100 ms, so the calls in flight together are those that start together.
    for (agent, capacity) in agents.iter().zip([3, 1, 2]) {
        let mut at_once: BTreeMap<_, usize> = BTreeMap::new();
        for call in agent.calls() {
            *at_once.entry(call.since_t0()).or_default() += 1;
        }
        assert!(
            at_once.values().all(|&n| n <= capacity),
            "{agent:?} over its capacity of {capacity}: {at_once:?}"
        );
    }
    assert_eq!(h.elapsed(), ms(200));
}

#[test]
fn runs_sharing_a_busy_agent_wait_their_turn() {
    let h = Harness::new();
    let agent = h.register(
        h.agent("risk-1")
            .replies(|_, _| Reply::ok(json!({"approved": true})).after_ms(100)),
    );
    let id = h.workflow(&workflow([task_with("check", json!({}))]));

    let reports = h.clock.block_on(join_all(
        (0..3).map(|_| h.engine.start(&id, RunOptions::new(json!({}))).unwrap()),
    ));

    assert!(
        reports
            .iter()
            .all(|report| report.status == RunStatus::Completed)
    );
    assert_eq!(agent.gauge().max(), 1);
    let starts: Vec<_> = agent.calls().iter().map(|call| call.since_t0()).collect();
    assert_eq!(starts, [ms(0), ms(100), ms(200)]);
}
