//! Outcome unknown: a call that may have taken effect — the agent answered
//! `OUTCOME_UNKNOWN`, or a step marked `"sideEffects": true` ran past its own `timeout` —
//! is never retried blindly. The step's `reconcile` task goes first to the same agent,
//! with the same idempotency key and parameters: `DONE` completes the step with its
//! output, `NOT_DONE` lets the retry go (same key), anything else, a failing reconcile
//! call or no `reconcile` block fails the step `OUTCOME_UNKNOWN`, which is never healed.
//! After a crash, a side-effect call that was in flight is reconciled before it is made
//! again.

mod support;

use std::sync::Arc;

use serde_json::{Value, json};
use support::engine::{Harness, Reply, TestAgent, assert_status, step, t0};
use support::journal::{assert_journal_matches, folded};
use support::{task_with, with, workflow};
use tradeflow::agent::AgentErrorKind;
use tradeflow::clock::VirtualClock;
use tradeflow::engine::{FailureKind, RunEvent, RunOptions, RunStatus, StepStatus};
use tradeflow::store::{JournalEntry, MemoryStore, RunStore};

/// One `order` step with side effects, `fields` added (a reconcile block, a timeout…),
/// retried up to 3 times at once, and allowed to heal by every strategy.
fn order(fields: Value) -> Value {
    let step = task_with("order", json!({"symbol": "BTC", "qty": 1}));
    let step = with(
        step,
        json!({"sideEffects": true, "optional": true,
               "retryPolicy": {"maxAttempts": 3, "initialDelayMs": 0},
               "errorHandling": {"strategies": ["RETRY", "SUBSTITUTE", "SKIP"]}}),
    );
    workflow([with(step, fields)])
}

fn reconciled() -> Value {
    json!({"reconcile": {"type": "ORDER_STATUS"}})
}

/// An agent whose orders go as `order` says (call number among orders, from 1) and
/// whose `ORDER_STATUS` answers `status`.
fn venue(
    h: &Harness,
    order: impl Fn(usize) -> Reply + Send + Sync + 'static,
    status: Value,
) -> Arc<TestAgent> {
    let orders = std::sync::atomic::AtomicUsize::new(0);
    h.register(h.agent("venue-1").replies(move |request, _| {
        if request.task_type.as_str() == "ORDER_STATUS" {
            Reply::ok(status.clone())
        } else {
            order(orders.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1)
        }
    }))
}

fn unknown() -> Reply {
    Reply::fail(
        AgentErrorKind::OutcomeUnknown,
        "venue timed out after the send",
    )
}

/// `(task type, idempotency key, parameters)` of every call the agent got.
fn calls(agent: &TestAgent) -> Vec<(String, String, Value)> {
    agent
        .calls()
        .iter()
        .map(|call| {
            (
                call.request.task_type.to_string(),
                call.key().to_owned(),
                call.request.parameters.clone(),
            )
        })
        .collect()
}

#[test]
fn a_done_reconcile_completes_the_step_with_its_output_and_sends_no_second_order() {
    let h = Harness::new();
    let agent = venue(
        &h,
        |_| unknown(),
        json!({"status": "DONE", "output": {"orderId": "o-1"}}),
    );

    let report = h.run(&order(reconciled()), json!({}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(
        step(&report, "order").output,
        Some(json!({"orderId": "o-1"}))
    );
    let calls = calls(&agent);
    let types: Vec<&str> = calls.iter().map(|(kind, ..)| kind.as_str()).collect();
    assert_eq!(types, ["TASK", "ORDER_STATUS"]);
    assert_eq!(calls[1].1, calls[0].1, "the same idempotency key");
    assert_eq!(
        calls[1].2,
        json!({"symbol": "BTC", "qty": 1}),
        "the original parameters"
    );
}

#[test]
fn a_not_done_reconcile_lets_the_retry_go_with_the_same_key() {
    let h = Harness::new();
    let agent = venue(
        &h,
        |number| {
            if number == 1 {
                unknown()
            } else {
                Reply::ok(json!({"orderId": "o-2"}))
            }
        },
        json!({"status": "NOT_DONE"}),
    );

    let report = h.run(&order(reconciled()), json!({}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(
        step(&report, "order").output,
        Some(json!({"orderId": "o-2"}))
    );
    let calls = calls(&agent);
    let types: Vec<&str> = calls.iter().map(|(kind, ..)| kind.as_str()).collect();
    assert_eq!(types, ["TASK", "ORDER_STATUS", "TASK"]);
    assert!(calls.iter().all(|(_, key, _)| *key == calls[0].1));
}

#[test]
fn without_a_reconcile_block_the_step_fails_outcome_unknown_unhealed() {
    let h = Harness::new();
    let agent = venue(&h, |_| unknown(), json!({"status": "DONE", "output": {}}));

    let report = h.run(&order(json!({})), json!({}));

    let order = step(&report, "order");
    assert_eq!(order.status, StepStatus::Failed);
    let error = order.error.as_ref().expect("an error");
    assert_eq!(error.kind, FailureKind::OutcomeUnknown);
    assert!(
        error.message.contains("no `reconcile` task"),
        "{}",
        error.message
    );
    assert!(order.recoveries.is_empty(), "{:?}", order.recoveries);
    assert_eq!(agent.calls().len(), 1, "one order, never re-sent");
}

#[test]
fn a_reconcile_that_fails_or_does_not_tell_fails_the_step_outcome_unknown() {
    for (status, says) in [
        (json!({"status": "MAYBE"}), "neither DONE nor NOT_DONE"),
        (json!("not an object"), "not an object"),
    ] {
        let h = Harness::new();
        let agent = venue(&h, |_| unknown(), status.clone());
        let report = h.run(&order(reconciled()), json!({}));
        let error = step(&report, "order").error.clone().expect("an error");
        assert_eq!(error.kind, FailureKind::OutcomeUnknown, "{status}");
        assert!(error.message.contains(says), "{}", error.message);
        assert_eq!(agent.calls().len(), 2, "one order, one reconcile");
    }

    let h = Harness::new();
    let agent = h.register(h.agent("venue-1").replies(|request, _| {
        if request.task_type.as_str() == "ORDER_STATUS" {
            Reply::temporary("status endpoint down")
        } else {
            unknown()
        }
    }));
    let report = h.run(&order(reconciled()), json!({}));
    let error = step(&report, "order").error.clone().expect("an error");
    assert_eq!(error.kind, FailureKind::OutcomeUnknown);
    assert!(
        error.message.contains("status endpoint down"),
        "{}",
        error.message
    );
    assert_eq!(agent.calls().len(), 2);
}

#[test]
fn a_side_effect_step_past_its_timeout_has_an_unknown_outcome_not_a_timeout() {
    let h = Harness::new();
    let agent = venue(&h, |_| Reply::hang(), json!({"status": "PENDING"}));

    let report = h.run(&order(json!({"timeout": 100})), json!({}));

    let error = step(&report, "order").error.clone().expect("an error");
    assert_eq!(error.kind, FailureKind::OutcomeUnknown);
    assert_eq!(agent.calls().len(), 1, "not retried blindly");

    // The same step without side effects times out and is retried.
    let h = Harness::new();
    let agent = h.register(h.agent("venue-1").replies(|_, _| Reply::hang()));
    let mut plain = order(json!({"timeout": 100}));
    plain["steps"][0]["sideEffects"] = json!(false);
    h.run(&plain, json!({}));
    let retried: Vec<FailureKind> = h
        .events()
        .iter()
        .filter_map(|event| match event {
            RunEvent::StepRetrying { kind, .. } => Some(*kind),
            _ => None,
        })
        .collect();
    assert_eq!(retried[..2], [FailureKind::Timeout, FailureKind::Timeout]);
    assert!(agent.calls().len() >= 3);
}

#[test]
fn a_recovered_run_reconciles_the_order_in_flight_before_sending_it_again() {
    for (status, orders, outcome) in [
        (
            json!({"status": "DONE", "output": {"orderId": "o-1"}}),
            1,
            Some(json!({"orderId": "o-1"})),
        ),
        (
            json!({"status": "NOT_DONE"}),
            2,
            Some(json!({"orderId": "o-2"})),
        ),
        (json!({"status": "UNKNOWN"}), 1, None),
    ] {
        let clock = VirtualClock::starting_at(t0());
        let store = Arc::new(MemoryStore::new());
        let status_answer = status.clone();
        let agent = Arc::new(
            TestAgent::new("venue-1", &clock).replies(move |request, number| {
                if request.task_type.as_str() == "ORDER_STATUS" {
                    Reply::ok(status_answer.clone())
                } else if number == 1 {
                    Reply::hang()
                } else {
                    Reply::ok(json!({"orderId": "o-2"}))
                }
            }),
        );
        let definition = order(reconciled());
        let first = Harness::on_clock(clock.clone(), |b| b.store(Arc::clone(&store)));
        first.register_shared(&agent);
        let mut run = first.start(&definition, RunOptions::new(json!({})));
        let id = run.id().clone();
        assert!(
            clock.run_until_stalled(&mut run).is_pending(),
            "the order hangs"
        );
        drop(run);
        drop(first);

        let report = support::engine::recover_first(&clock, &store, &agent);

        let calls = calls(&agent);
        let types: Vec<&str> = calls.iter().map(|(kind, ..)| kind.as_str()).collect();
        assert_eq!(
            types[..2],
            ["TASK", "ORDER_STATUS"],
            "{status}: reconciled first"
        );
        assert_eq!(
            types.iter().filter(|kind| **kind == "TASK").count(),
            orders,
            "{status}"
        );
        assert!(calls.iter().all(|(_, key, _)| *key == calls[0].1));
        let order = step(&report, "order");
        match outcome {
            Some(output) => assert_eq!(order.output, Some(output), "{status}"),
            None => assert_eq!(
                order.error.as_ref().map(|error| error.kind),
                Some(FailureKind::OutcomeUnknown)
            ),
        }
        // The reconcile is journaled, with the order's key, and counts no attempt.
        let journal = store.load(&id).expect("the journal loads");
        let reconciles: Vec<&str> = journal
            .iter()
            .filter_map(|entry| match entry {
                JournalEntry::ReconcileStarted {
                    idempotency_key, ..
                } => Some(idempotency_key.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(reconciles, [calls[0].1.as_str()], "{status}");
        assert_journal_matches(&*store, &report);
        assert_eq!(
            folded(&*store, &id).steps["order"].attempts as usize,
            orders
        );
    }
}
