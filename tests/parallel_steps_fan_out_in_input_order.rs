//! `parallel` steps: one call per item of the fanned-out array (named by `forEach`, or
//! the one array parameter), at most `maxConcurrency` at once, each sent to an agent
//! chosen for it; the output lists results in input order and merges their fields.

mod support;

use std::collections::BTreeMap;

use serde_json::{Value, json};
use support::engine::{Harness, Reply, assert_status, ms, step};
use support::{task_with, with, workflow};
use tradeflow::engine::{RunStatus, StepStatus};

/// A parallel step `execute` over `parameters`, with these `parallel` settings.
fn parallel(parameters: Value, settings: Value) -> Value {
    let mut step = with(
        task_with("execute", parameters),
        json!({"type": "parallel"}),
    );
    if !settings.is_null() {
        step = with(step, json!({"parallel": settings}));
    }
    step
}

/// Answers an order with its id, later for earlier items (so they finish in reverse).
fn fill(request: &tradeflow::agent::TaskRequest, _: usize) -> Reply {
    let order = &request.parameters["orders"];
    let item = request.item.unwrap_or(0) as u64;
    Reply::ok(json!({
        "orderIds": [order["id"]],
        "venue": request.parameters["venue"],
        "qty": order["qty"],
    }))
    .after_ms(100 - 10 * item)
}

#[test]
fn for_each_names_the_array_and_each_item_replaces_it() {
    let h = Harness::new();
    let agent = h.register(h.agent("exec-1").capacity(8).replies(fill));
    let definition = workflow([parallel(
        json!({"orders": "${input.orders}", "venues": ["XNAS", "ARCX"], "venue": "XNAS"}),
        json!({"forEach": "orders"}),
    )]);
    let orders =
        json!([{"id": "o-1", "qty": 10}, {"id": "o-2", "qty": 20}, {"id": "o-3", "qty": 30}]);

    let report = h.run(&definition, json!({"orders": orders}));

    assert_status(&report, RunStatus::Completed);
    let mut calls = agent.calls();
    assert_eq!(calls.len(), 3);
    calls.sort_by_key(|call| call.request.item);
    for (index, call) in calls.iter().enumerate() {
        assert_eq!(call.request.item, Some(index));
        assert_eq!(
            call.request.parameters,
            json!({"orders": orders[index], "venues": ["XNAS", "ARCX"], "venue": "XNAS"})
        );
    }
}

#[test]
fn without_for_each_the_one_array_parameter_fans_out() {
    let h = Harness::new();
    let agent = h.register(h.agent("exec-1").capacity(8).replies(fill));
    let definition = workflow([parallel(
        json!({"orders": "${input.orders}", "venue": "XNAS", "strategy": "TWAP"}),
        Value::Null,
    )]);

    let report = h.run(
        &definition,
        json!({"orders": [{"id": "o-1", "qty": 1}, {"id": "o-2", "qty": 2}]}),
    );

    assert_status(&report, RunStatus::Completed);
    let calls = agent.calls();
    assert_eq!(calls.len(), 2);
    let mut ids: Vec<&Value> = calls
        .iter()
        .map(|call| &call.request.parameters["orders"]["id"])
        .collect();
    ids.sort_by_key(|id| id.to_string());
    assert_eq!(ids, [&json!("o-1"), &json!("o-2")]);
    assert!(
        calls
            .iter()
            .all(|call| call.request.parameters["strategy"] == "TWAP")
    );
}

#[test]
fn results_keep_input_order_and_fields_merge() {
    let h = Harness::new();
    h.register(h.agent("exec-1").capacity(8).replies(fill));
    let definition = workflow([parallel(
        json!({"orders": "${input.orders}", "venue": "XNAS"}),
        Value::Null,
    )]);
    let orders =
        json!([{"id": "o-1", "qty": 10}, {"id": "o-2", "qty": 20}, {"id": "o-3", "qty": 30}]);

    let report = h.run(&definition, json!({"orders": orders}));

    // The last item finishes first (80 ms), the first last (100 ms); order is the input's.
    assert_eq!(h.elapsed(), ms(100));
    let output = step(&report, "execute").output.clone().expect("an output");
    assert_eq!(
        output["results"],
        json!([
            {"orderIds": ["o-1"], "venue": "XNAS", "qty": 10},
            {"orderIds": ["o-2"], "venue": "XNAS", "qty": 20},
            {"orderIds": ["o-3"], "venue": "XNAS", "qty": 30},
        ])
    );
    assert_eq!(
        output["orderIds"],
        json!(["o-1", "o-2", "o-3"]),
        "arrays concatenate"
    );
    assert_eq!(output["qty"], json!([10, 20, 30]), "other values collect");
    assert_eq!(output["venue"], json!(["XNAS", "XNAS", "XNAS"]));
    assert_eq!(step(&report, "execute").attempts, Some(3));
}

#[test]
fn later_steps_bind_to_the_merged_output() {
    let h = Harness::new();
    let agent =
        h.register(h.agent("exec-1").capacity(8).replies(
            |request, n| match request.step_id.as_str() {
                "execute" => fill(request, n),
                _ => Reply::ok(json!({"watching": request.parameters["orderIds"]})),
            },
        ));
    let definition = workflow([
        parallel(json!({"orders": "${input.orders}"}), Value::Null),
        task_with("monitor", json!({"orderIds": "${execute.output.orderIds}"})),
    ]);

    let report = h.run(
        &definition,
        json!({"orders": [{"id": "o-1", "qty": 1}, {"id": "o-2", "qty": 2}]}),
    );

    assert_status(&report, RunStatus::Completed);
    let monitor = agent
        .calls()
        .into_iter()
        .find(|call| call.step() == "monitor")
        .expect("monitor was called");
    assert_eq!(
        monitor.request.parameters,
        json!({"orderIds": ["o-1", "o-2"]})
    );
}

#[test]
fn max_concurrency_bounds_the_items_in_flight() {
    let h = Harness::new();
    let agent = h.register(
        h.agent("exec-1")
            .capacity(10)
            .replies(|_, _| Reply::ok(json!({"done": true})).after_ms(100)),
    );
    let definition = workflow([parallel(
        json!({"orders": "${input.orders}"}),
        json!({"maxConcurrency": 2}),
    )]);
    let orders: Vec<Value> = (0..6).map(|i| json!({"id": i})).collect();

    let report = h.run(&definition, json!({"orders": orders}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(agent.gauge().max(), 2);
    assert_eq!(agent.calls().len(), 6);
    // Six items, two at a time, 100 ms each.
    assert_eq!(h.elapsed(), ms(300));
    let starts: Vec<_> = agent.calls().iter().map(|call| call.since_t0()).collect();
    assert_eq!(starts, [ms(0), ms(0), ms(100), ms(100), ms(200), ms(200)]);
}

#[test]
fn without_max_concurrency_every_item_starts_at_once() {
    let h = Harness::new();
    let agent = h.register(
        h.agent("exec-1")
            .capacity(10)
            .replies(|_, _| Reply::ok(json!({})).after_ms(100)),
    );
    let definition = workflow([parallel(json!({"orders": "${input.orders}"}), Value::Null)]);

    let report = h.run(&definition, json!({"orders": [1, 2, 3, 4, 5]}));

    assert_eq!(report.status, RunStatus::Completed);
    assert_eq!(agent.gauge().max(), 5);
    assert_eq!(h.elapsed(), ms(100));
}

#[test]
fn items_spread_over_agents_and_agent_ids_follow_input_order() {
    let h = Harness::new();
    let agents = [
        h.register(
            h.agent("exec-1")
                .replies(|_, _| Reply::ok(json!({})).after_ms(50)),
        ),
        h.register(
            h.agent("exec-2")
                .replies(|_, _| Reply::ok(json!({})).after_ms(50)),
        ),
    ];
    let definition = workflow([parallel(json!({"orders": "${input.orders}"}), Value::Null)]);

    let report = h.run(&definition, json!({"orders": ["a", "b", "c", "d"]}));

    assert_status(&report, RunStatus::Completed);
    let by_item: BTreeMap<usize, String> = agents
        .iter()
        .flat_map(|agent| agent.calls())
        .map(|call| (call.request.item.expect("an item"), call.agent))
        .collect();
    assert_eq!(by_item.len(), 4);
    let agent_ids: Vec<String> = step(&report, "execute")
        .agent_ids
        .clone()
        .expect("agentIds for a parallel step")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(agent_ids, by_item.into_values().collect::<Vec<_>>());
    // Each agent takes one call at a time: both were used, two rounds of 50 ms.
    assert!(agents.iter().all(|agent| agent.calls().len() == 2));
    assert_eq!(h.elapsed(), ms(100));
}

#[test]
fn an_empty_array_completes_with_no_results() {
    let h = Harness::new();
    let agent = h.register(h.agent("exec-1"));
    let definition = workflow([parallel(json!({"orders": "${input.orders}"}), Value::Null)]);

    let report = h.run(&definition, json!({"orders": []}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(
        step(&report, "execute").output,
        Some(json!({"results": []}))
    );
    assert!(agent.calls().is_empty());
}

#[test]
fn a_failed_item_fails_the_step() {
    let h = Harness::new();
    h.register(h.agent("exec-1").capacity(4).replies(|request, _| {
        if request.item == Some(1) {
            Reply::permanent("symbol halted")
        } else {
            Reply::ok(json!({})).after_ms(10)
        }
    }));
    let definition = workflow([parallel(json!({"orders": "${input.orders}"}), Value::Null)]);

    let report = h.run(&definition, json!({"orders": ["a", "b", "c"]}));

    assert_eq!(report.status, RunStatus::Failed);
    let execute = step(&report, "execute");
    assert_eq!(execute.status, StepStatus::Failed);
    let error = execute.error.as_ref().expect("an error");
    assert!(error.message.contains("item 1"), "{}", error.message);
    assert!(error.message.contains("symbol halted"), "{}", error.message);
}
