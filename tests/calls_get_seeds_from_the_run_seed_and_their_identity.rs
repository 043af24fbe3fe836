//! Each agent call carries a seed (`TaskRequest::seed`) derived from the run's seed and
//! the call's identity, so random draws are reproducible: the same for the same call
//! whatever order calls are made in and whatever the run is called, different for
//! another item, attempt or run seed. Scripted agents draw their `random` values from it.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use support::engine::{Harness, Reply, assert_status};
use support::{task_with, with, workflow};
use tradeflow::agent::Agent;
use tradeflow::engine::{RunOptions, RunStatus};
use tradeflow::sim::{AgentsFile, scripted_agents};

/// A parallel step over four orders whose first attempt of item 1 fails once.
fn fan_out() -> Value {
    workflow([with(
        task_with("execute", json!({"orders": "${input.orders}"})),
        json!({
            "type": "parallel",
            "retryPolicy": {"maxAttempts": 2, "initialDelayMs": 10}
        }),
    )])
}

fn orders() -> Value {
    json!({"orders": [{"id": "o-1"}, {"id": "o-2"}, {"id": "o-3"}, {"id": "o-4"}]})
}

/// The seed of every call of a run of [`fan_out`] with `options`, by (item, attempt),
/// on an agent taking `capacity` calls at once whose calls take longer for later items.
fn seeds(capacity: u32, options: RunOptions) -> BTreeMap<(usize, u32), u64> {
    let h = Harness::new();
    let agent = h.register(h.agent("exec-1").capacity(capacity).replies(|request, _| {
        let item = request.item.unwrap_or_default();
        if item == 1 && request.attempt == 1 {
            return Reply::temporary("venue busy");
        }
        Reply::ok(json!({})).after_ms(10 * (4 - item as u64))
    }));
    let report = h.run_with(&fan_out(), options);
    assert_status(&report, RunStatus::Completed);
    agent
        .calls()
        .iter()
        .map(|call| {
            let request = &call.request;
            (
                (request.item.unwrap_or_default(), request.attempt),
                request.seed,
            )
        })
        .collect()
}

#[test]
fn the_same_run_seed_gives_every_call_the_same_seed_whatever_the_order_and_the_run_id() {
    let one_at_a_time = seeds(1, RunOptions::new(orders()).seed(7));
    assert_eq!(one_at_a_time.len(), 5, "four items and one retry");
    let all_at_once = seeds(8, RunOptions::new(orders()).seed(7).run_id("other-run"));
    assert_eq!(all_at_once, one_at_a_time);
}

#[test]
fn every_item_and_attempt_has_its_own_seed_and_another_run_seed_changes_them_all() {
    let seeds_7 = seeds(8, RunOptions::new(orders()).seed(7));
    let distinct: std::collections::BTreeSet<u64> = seeds_7.values().copied().collect();
    assert_eq!(distinct.len(), seeds_7.len(), "{seeds_7:?}");
    assert_ne!(seeds_7[&(1, 1)], seeds_7[&(1, 2)]);
    let seeds_8 = seeds(8, RunOptions::new(orders()).seed(8));
    for (call, seed) in &seeds_7 {
        assert_ne!(seeds_8[call], *seed, "{call:?}");
    }
}

/// A workflow that asks the scripted agent for a fill three times, in three steps.
fn fills() -> Value {
    let step = |id: &str| {
        json!({"id": id, "type": "task", "agentCriteria": {"type": "EXEC"},
               "task": {"type": "EXECUTE", "parameters": {"meanFill": "${input.meanFill}"}}})
    };
    workflow([step("first"), step("second"), step("third")])
}

/// The outputs of the steps of one run of [`fills`] against an agent whose fill is drawn
/// at random, with run seed `seed`.
fn drawn(seed: u64) -> Vec<Value> {
    let agents = AgentsFile::from_json(
        &json!({"agents": [{"id": "exec-1", "type": "EXEC", "tasks": {"EXECUTE": {
            "random": {"fill": {"normal": ["${params.meanFill}", 0.05]},
                       "jitter": {"uniform": [0, 1]}},
            "output": {"fillQuality": "${random.fill}", "jitter": "${random.jitter}"}
        }}}]})
        .to_string(),
    )
    .expect("a valid agents file");
    let h = Harness::new();
    for agent in scripted_agents(&agents, Arc::new(h.clock.clone())) {
        h.engine
            .register_agent(agent as Arc<dyn Agent>)
            .expect("the agent registers");
    }
    let report = h.run_with(
        &fills(),
        RunOptions::new(json!({"meanFill": 0.9})).seed(seed),
    );
    assert_status(&report, RunStatus::Completed);
    ["first", "second", "third"]
        .iter()
        .map(|id| {
            report
                .step(id)
                .and_then(|step| step.output.clone())
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn scripted_random_values_repeat_with_the_run_seed_and_differ_between_calls() {
    let outputs = drawn(42);
    assert_eq!(drawn(42), outputs);
    for output in &outputs {
        let fill = output["fillQuality"].as_f64().expect("a number");
        assert!((fill - 0.9).abs() < 0.5, "{output}");
        let jitter = output["jitter"].as_f64().expect("a number");
        assert!((0.0..1.0).contains(&jitter), "{output}");
    }
    assert_ne!(outputs[0], outputs[1]);
    assert_ne!(outputs[1], outputs[2]);
    assert_ne!(drawn(43), outputs);
}
