//! Large fan-outs scale linearly: a `parallel` step with far more items than its agents
//! have slots completes with every result in input order, never overloads an agent, and
//! each item costs a bounded number of selections, not one per slot freed while it
//! waits (which made 16,000 items take seconds and 64,000 take minutes). Calls of many
//! runs waiting for the same agents are served in turn at the same cost.
//!
//! The measure is the registry's [`SelectionCounts`](tradeflow::agent::SelectionCounts):
//! deterministic on the virtual clock, unlike time.

mod support;

use futures::future::join_all;
use serde_json::{Value, json};
use support::engine::{CallLog, Harness, Reply, TestAgent, assert_status, step};
use support::{task_with, with, workflow};
use tradeflow::engine::{RunOptions, RunStatus};

const ITEMS: usize = 20_000;
const SLOTS: u32 = 4;

/// An agent of four slots that answers an order `n` with `{"filled": [n]}` after 1 to 5
/// ms, so items finish out of input order.
fn venue(h: &Harness, id: &str) -> TestAgent {
    h.agent(id).capacity(SLOTS).replies(|request, _| {
        let order = request.parameters["orders"].as_u64().unwrap_or(0);
        Reply::ok(json!({"filled": [order]})).after_ms(1 + order % 5)
    })
}

/// Runs a `parallel` step (with these `parallel` settings) over `ITEMS` orders on two
/// four-slot agents, and checks what every large fan-out must do.
fn fan_out_over_two_venues(settings: Value) {
    let h = Harness::new();
    let venues = [
        h.register(venue(&h, "exec-1")),
        h.register(venue(&h, "exec-2")),
    ];
    let mut step_definition = with(
        task_with("execute", json!({"orders": "${input.orders}"})),
        json!({"type": "parallel"}),
    );
    if !settings.is_null() {
        step_definition = with(step_definition, json!({"parallel": settings}));
    }
    let orders: Vec<usize> = (0..ITEMS).collect();

    let report = h.run(&workflow([step_definition]), json!({"orders": orders}));

    assert_status(&report, RunStatus::Completed);
    let output = step(&report, "execute").output.as_ref().expect("an output");
    assert_eq!(output["filled"], json!(orders), "results in input order");
    let calls: usize = venues.iter().map(|venue| venue.calls().len()).sum();
    assert_eq!(calls, ITEMS, "one call per item");
    for venue in &venues {
        assert!(
            venue.gauge().max() <= SLOTS as usize,
            "{venue:?} overloaded"
        );
        assert!(!venue.calls().is_empty(), "{venue:?} never called");
    }
    assert_linear(&h, ITEMS, "items");
}

/// Asserts that `calls` calls took one selection each that reserved a slot, and at most
/// two that found every agent busy. Before the fix, every freed slot made every waiting
/// call select again: about `calls² / 10` busy selections here.
#[track_caller]
fn assert_linear(h: &Harness, calls: usize, what: &str) {
    let counts = h.engine.registry().selection_counts();
    assert_eq!(counts.reserved, calls as u64);
    let busy = counts.busy;
    assert!(
        busy <= 2 * calls as u64,
        "{busy} busy selections for {calls} {what}"
    );
}

#[test]
fn items_beyond_the_agents_slots_wait_without_selecting_on_every_freed_slot() {
    fan_out_over_two_venues(Value::Null);
}

#[test]
fn a_max_concurrency_above_the_agents_slots_changes_nothing() {
    fan_out_over_two_venues(json!({"maxConcurrency": 1_000}));
}

#[test]
fn many_runs_waiting_for_the_same_agents_are_served_in_turn_at_linear_cost() {
    const RUNS: usize = 2_000;
    let h = Harness::new();
    let log = CallLog::default();
    let venues = ["exec-1", "exec-2"].map(|id| {
        h.register(
            h.agent(id)
                .capacity(SLOTS)
                .logging_to(&log)
                .replies(|request, _| {
                    let run = request.run_id.as_str().strip_prefix("run-");
                    let run: u64 = run.and_then(|n| n.parse().ok()).unwrap_or(0);
                    Reply::ok(json!({})).after_ms(1 + run % 5)
                }),
        )
    });
    let id = h.workflow(&workflow([task_with("execute", json!({}))]));

    // Each run's one call waits in line behind those of the runs started before it.
    let reports = h.clock.block_on(join_all(
        (0..RUNS).map(|_| h.engine.start(&id, RunOptions::new(json!({}))).unwrap()),
    ));

    assert!(reports.iter().all(|r| r.status == RunStatus::Completed));
    let served: Vec<String> = venues[0]
        .calls()
        .iter()
        .map(|call| call.request.run_id.to_string())
        .collect();
    let started: Vec<String> = (1..=RUNS).map(|n| format!("run-{n}")).collect();
    assert_eq!(served, started, "first come, first served");
    for venue in &venues {
        assert!(
            venue.gauge().max() <= SLOTS as usize,
            "{venue:?} overloaded"
        );
    }
    assert_linear(&h, RUNS, "runs");
}
