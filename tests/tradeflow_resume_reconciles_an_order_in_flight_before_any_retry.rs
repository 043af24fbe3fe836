//! `tradeflow run` killed with SIGKILL while a `sideEffects` step's order is in flight,
//! then `tradeflow resume` on the same store: before the order task is called again, the
//! step's `reconcile` task (`ORDER_STATUS`) is called with the interrupted order's
//! idempotency key. When it answers `DONE` the order is not sent again (one order line in
//! the effects file, the step completes with the answer's output); when it answers
//! `NOT_DONE` the order is sent again with the same key. The effects file and the journal
//! both witness the order of the calls.
#![cfg(all(unix, feature = "sqlite"))]

#[path = "support/command.rs"]
mod command;

use command::{
    ScratchDir, assert_exit, command, json_lines, kill_when, scratch_dir, stdout, text, write,
};
use serde_json::{Value, json};
use tradeflow::engine::{RunStatus, StepStatus};
use tradeflow::store::{JournalEntry, RunState, RunStore, SqliteStore};

/// `signal` → `order` (side effects, reconciled with `ORDER_STATUS`, retried once) →
/// `book`, each binding to the output before it.
fn order_flow() -> Value {
    json!({"id": "order-flow", "version": "1", "steps": [
        {"id": "signal", "type": "task", "agentCriteria": {"type": "DESK"},
         "task": {"type": "SIGNAL", "parameters": {}}},
        {"id": "order", "type": "task", "agentCriteria": {"type": "VENUE"},
         "task": {"type": "ORDER_EXECUTION", "parameters": {"side": "${signal.output.side}"}},
         "sideEffects": true, "reconcile": {"type": "ORDER_STATUS"},
         "retryPolicy": {"maxAttempts": 2, "initialDelayMs": 1}},
        {"id": "book", "type": "task", "agentCriteria": {"type": "DESK"},
         "task": {"type": "BOOK", "parameters": {"orderId": "${order.output.orderId}"}}},
    ]})
}

/// The agents: the venue's order takes a second (a wide window for the kill), and its
/// `ORDER_STATUS` answers `status`.
fn agents(status: &Value) -> Value {
    json!({"agents": [
        {"id": "desk-1", "type": "DESK", "tasks": {
            "SIGNAL": {"output": {"side": "BUY"}, "delayMs": 20},
            "BOOK": {"output": {"booked": "${params.orderId}"}}
        }},
        {"id": "venue-1", "type": "VENUE", "tasks": {
            "ORDER_EXECUTION": {"output": {"orderId": "o-1", "side": "${params.side}"},
                                "delayMs": 1000},
            "ORDER_STATUS": {"output": status}
        }}
    ]})
}

/// What one scenario left: the effects lines before the kill and after the resume, the
/// journal at the kill and at the end, and the resumed run's report.
struct Resumed {
    _dir: ScratchDir,
    before: Vec<Value>,
    after: Vec<Value>,
    at_kill: RunState,
    journal: Vec<JournalEntry>,
    report: Value,
}

/// Runs the workflow, kills it (SIGKILL) as soon as the order's line is in the effects
/// file, resumes the store with the same files, and returns what both left.
fn kill_mid_order_and_resume(name: &str, status: &Value) -> Resumed {
    let dir = scratch_dir(&format!("reconcile-after-kill-{name}"));
    let workflow = write(&dir, "workflow.json", &order_flow());
    let agents = write(&dir, "agents.json", &agents(status));
    let store_path = dir.join("runs.db");
    let store = format!("sqlite:{}", text(&store_path));
    let effects = dir.join("effects.jsonl");

    let mut run = command();
    run.args(["run", &workflow, "--agents", &agents, "--store", &store])
        .args(["--effects", text(&effects)]);
    kill_when(run, &dir.join("run.stderr"), |_| {
        json_lines(&effects)
            .iter()
            .any(|line| line["stepId"] == "order")
    });
    let before = json_lines(&effects);
    let at_kill = {
        let store = SqliteStore::open(&store_path).expect("the store opens after the kill");
        let [run] = store
            .unfinished_runs()
            .expect("listed")
            .try_into()
            .expect("one run");
        RunState::fold(&store.load(&run).expect("loads")).expect("folds")
    };

    let resumed = command()
        .args(["resume", "--store", &store, "--agents", &agents])
        .args(["--effects", text(&effects)])
        .output()
        .expect("run tradeflow resume");
    assert_exit(&resumed, 0);
    let out = stdout(&resumed);
    let report: Value = serde_json::from_str(out.trim_end()).expect("one JSON report");
    let all = json_lines(&effects);
    assert_eq!(
        all[..before.len()],
        before[..],
        "the file is only appended to"
    );
    let after = all[before.len()..].to_vec();
    let journal = SqliteStore::open(&store_path)
        .expect("the store opens")
        .load(&at_kill.run_id)
        .expect("the journal loads");
    Resumed {
        _dir: dir,
        before,
        after,
        at_kill,
        journal,
        report,
    }
}

/// `(taskType, idempotencyKey)` of each effects line of the `order` step.
fn order_calls(lines: &[Value]) -> Vec<(&str, &str)> {
    lines
        .iter()
        .filter(|line| line["stepId"] == "order")
        .map(|line| {
            (
                line["taskType"].as_str().expect("a task type"),
                line["idempotencyKey"].as_str().expect("a key"),
            )
        })
        .collect()
}

/// The `order` step's calls and reconciles in the journal, in order: `(kind, key)`.
fn journaled_order_calls(journal: &[JournalEntry]) -> Vec<(&'static str, &str)> {
    journal
        .iter()
        .filter_map(|entry| match entry {
            JournalEntry::StepStarted {
                step_id,
                idempotency_key,
                ..
            } if step_id == "order" => Some(("ORDER_EXECUTION", idempotency_key.as_str())),
            JournalEntry::ReconcileStarted {
                step_id,
                idempotency_key,
                task_type,
                ..
            } if step_id == "order" => {
                assert_eq!(task_type.as_str(), "ORDER_STATUS");
                Some(("ORDER_STATUS", idempotency_key.as_str()))
            }
            _ => None,
        })
        .collect()
}

/// Checks what holds whatever the reconcile answers, and returns the order's key: the
/// kill cut the order off in flight (journaled, one line), and the first thing the
/// resume did for the order was to reconcile it under that key.
fn the_order_was_in_flight_and_reconciled_first(resumed: &Resumed) -> String {
    let order = &resumed.at_kill.steps["order"];
    assert_eq!(order.status, StepStatus::Running, "{order:#?}");
    let [in_flight] = order.in_flight.as_slice() else {
        panic!("one call in flight: {order:#?}")
    };
    let key = in_flight.idempotency_key.clone();
    assert_eq!(
        order_calls(&resumed.before),
        [("ORDER_EXECUTION", key.as_str())]
    );
    assert_eq!(
        resumed.at_kill.steps["signal"].status,
        StepStatus::Completed
    );

    let after = order_calls(&resumed.after);
    assert_eq!(
        after.first(),
        Some(&("ORDER_STATUS", key.as_str())),
        "the resume reconciles before it calls the order task again: {:#?}",
        resumed.after
    );
    assert_eq!(
        after
            .iter()
            .filter(|(task, _)| *task == "ORDER_STATUS")
            .count(),
        1,
        "{after:?}"
    );
    let reconcile = resumed
        .after
        .iter()
        .find(|line| line["taskType"] == "ORDER_STATUS")
        .expect("a reconcile line");
    assert_eq!(reconcile["agentId"], "venue-1");
    assert_eq!(
        reconcile["attempt"],
        json!(in_flight.attempt),
        "{reconcile}"
    );
    // `signal` was done before the kill: not called again.
    assert!(
        resumed.after.iter().all(|line| line["stepId"] != "signal"),
        "{:#?}",
        resumed.after
    );
    assert_eq!(
        resumed.report["status"], "COMPLETED",
        "{:#}",
        resumed.report
    );
    assert_eq!(
        RunState::fold(&resumed.journal).expect("folds").status,
        RunStatus::Completed
    );
    key
}

#[test]
fn a_done_reconcile_completes_the_order_without_sending_it_twice() {
    let done = json!({"status": "DONE", "output": {"orderId": "o-1", "side": "${params.side}"}});
    let resumed = kill_mid_order_and_resume("done", &done);
    let key = the_order_was_in_flight_and_reconciled_first(&resumed);

    // Exactly one order line in the whole file: the one the kill cut off.
    let all: Vec<Value> = [resumed.before.clone(), resumed.after.clone()].concat();
    assert_eq!(
        order_calls(&all),
        [
            ("ORDER_EXECUTION", key.as_str()),
            ("ORDER_STATUS", key.as_str())
        ]
    );
    assert_eq!(
        journaled_order_calls(&resumed.journal),
        [
            ("ORDER_EXECUTION", key.as_str()),
            ("ORDER_STATUS", key.as_str())
        ],
        "the journal has no second call of the order"
    );
    let order = &resumed.report["steps"]["order"];
    assert_eq!(order["status"], "COMPLETED");
    assert_eq!(
        order["output"],
        json!({"orderId": "o-1", "side": "BUY"}),
        "the reconcile's output: {order:#}"
    );
    assert_eq!(
        resumed.report["steps"]["book"]["output"],
        json!({"booked": "o-1"})
    );
}

#[test]
fn a_not_done_reconcile_sends_the_order_again_with_the_same_key() {
    let resumed = kill_mid_order_and_resume("not-done", &json!({"status": "NOT_DONE"}));
    let key = the_order_was_in_flight_and_reconciled_first(&resumed);

    assert_eq!(
        order_calls(&resumed.after),
        [
            ("ORDER_STATUS", key.as_str()),
            ("ORDER_EXECUTION", key.as_str())
        ],
        "reconciled, then sent again under the interrupted order's key"
    );
    assert_eq!(
        journaled_order_calls(&resumed.journal),
        [
            ("ORDER_EXECUTION", key.as_str()),
            ("ORDER_STATUS", key.as_str()),
            ("ORDER_EXECUTION", key.as_str()),
        ],
        "the journal has the reconcile between the two calls"
    );
    let order = &resumed.report["steps"]["order"];
    assert_eq!(order["status"], "COMPLETED");
    assert_eq!(order["output"], json!({"orderId": "o-1", "side": "BUY"}));
    assert_eq!(
        resumed.report["steps"]["book"]["output"],
        json!({"booked": "o-1"})
    );
}
