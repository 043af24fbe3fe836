//! Idempotency keys: one per logical call — run, step, item, iteration — distinct between
//! logical calls, the same for every attempt of one (its `attempt` tells retries apart),
//! and the same when the same run is made again.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use support::engine::{Call, Harness, Reply, assert_status};
use support::{task_with, with};
use tradeflow::engine::{RunOptions, RunStatus};

/// `order` (fails once), `fills` (a parallel step over three orders, the second failing
/// once) and `watch` (a loop of three iterations).
fn definition() -> Value {
    json!({"id": "w", "steps": [
        with(task_with("order", json!({})),
             json!({"retryPolicy": {"maxAttempts": 3, "initialDelayMs": 10}})),
        with(task_with("fills", json!({"orders": ["o-1", "o-2", "o-3"]})),
             json!({"type": "parallel",
                    "retryPolicy": {"maxAttempts": 3, "initialDelayMs": 10}})),
        with(task_with("watch", json!({})),
             json!({"type": "loop", "loop": {"maxIterations": 3}})),
    ]})
}

fn harness() -> (Harness, std::sync::Arc<support::engine::TestAgent>) {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1").capacity(4).replies(|request, _| {
        let first = request.attempt == 1;
        match (request.step_id.as_str(), request.item) {
            ("order", _) | ("fills", Some(1)) if first => Reply::temporary("venue busy"),
            _ => Reply::ok(json!({"done": false})),
        }
    }));
    (h, agent)
}

fn keys(calls: &[Call]) -> Vec<String> {
    calls.iter().map(|call| call.key().to_owned()).collect()
}

#[test]
fn every_attempt_of_one_call_carries_the_same_key() {
    let (h, agent) = harness();

    let report = h.run(&definition(), json!({}));

    assert_status(&report, RunStatus::Completed);
    let calls = agent.calls();
    let order: Vec<&Call> = calls.iter().filter(|call| call.step() == "order").collect();
    assert_eq!(order.len(), 2);
    assert_eq!(order[0].key(), order[1].key());
    assert_eq!(order[0].request.attempt, 1);
    assert_eq!(order[1].request.attempt, 2);
    let second_item: Vec<&Call> = calls
        .iter()
        .filter(|call| call.step() == "fills" && call.request.item == Some(1))
        .collect();
    assert_eq!(second_item.len(), 2);
    assert_eq!(second_item[0].key(), second_item[1].key());
}

#[test]
fn keys_differ_between_steps_items_and_iterations() {
    let (h, agent) = harness();

    let report = h.run(&definition(), json!({}));

    let calls = agent.calls();
    // One key per logical call: 1 order, 3 items, 3 iterations.
    let distinct: BTreeSet<String> = keys(&calls).into_iter().collect();
    assert_eq!(distinct.len(), 7, "{distinct:#?}");
    let mut by_key: BTreeMap<&str, BTreeSet<(String, Option<usize>)>> = BTreeMap::new();
    for call in &calls {
        by_key
            .entry(call.key())
            .or_default()
            .insert((call.step().to_owned(), call.request.item));
    }
    assert!(
        by_key.values().all(|calls| calls.len() == 1),
        "a key shared by different calls: {by_key:#?}"
    );
    let watch: Vec<&Call> = calls.iter().filter(|call| call.step() == "watch").collect();
    assert_eq!(watch.len(), 3);
    let watch_keys: BTreeSet<&str> = watch.iter().map(|call| call.key()).collect();
    assert_eq!(watch_keys.len(), 3, "each iteration has its own key");
    for call in &calls {
        let prefix = format!("{}/{}/", report.run_id, call.step());
        assert!(
            call.key().starts_with(&prefix),
            "{} lacks {prefix}",
            call.key()
        );
    }
}

#[test]
fn the_same_run_made_again_carries_the_same_keys() {
    let (first, first_agent) = harness();
    let (second, second_agent) = harness();

    first.run_with(
        &definition(),
        RunOptions::new(json!({})).run_id("rebalance-2026-01-05"),
    );
    second.run_with(
        &definition(),
        RunOptions::new(json!({})).run_id("rebalance-2026-01-05"),
    );

    let first_keys: BTreeSet<String> = keys(&first_agent.calls()).into_iter().collect();
    let second_keys: BTreeSet<String> = keys(&second_agent.calls()).into_iter().collect();
    assert_eq!(first_keys, second_keys);
    assert!(
        first_keys
            .iter()
            .all(|key| key.starts_with("rebalance-2026-01-05/"))
    );
}

#[test]
fn another_run_carries_other_keys() {
    let (h, agent) = harness();

    h.run(&definition(), json!({}));
    let first_run = keys(&agent.calls());
    h.run(&definition(), json!({}));
    let both = keys(&agent.calls());

    let first: BTreeSet<&String> = first_run.iter().collect();
    let second: BTreeSet<&String> = both[first_run.len()..].iter().collect();
    assert_eq!(first.len(), second.len());
    assert!(first.is_disjoint(&second), "{first:#?}\n{second:#?}");
}
