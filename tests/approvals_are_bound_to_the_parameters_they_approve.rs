//! An approval is bound to a hash of the parameters the approver was shown: when an
//! adaptation changes them while the step waits, the approval is void (journaled and
//! announced) and the step asks again with the new parameters.

mod support;

use std::sync::Arc;

use serde_json::{Value, json};
use support::engine::{Harness, assert_status, executor, step, t0};
use tradeflow::clock::VirtualClock;
use tradeflow::definition::AdaptationDefinition;
use tradeflow::engine::{RunEvent, RunOptions, RunStatus};
use tradeflow::security::canonical_hash;
use tradeflow::store::{JournalEntry, MemoryStore, RunStore};

/// `approve` (shown the amount and a limit of 100) then `execute`.
fn workflow() -> Value {
    json!({"id": "bound", "steps": [
        {"id": "approve", "type": "human_approval",
         "task": {"type": "APPROVAL_REQUEST",
                  "parameters": {"amount": "${input.amount}", "limit": 100}}},
        {"id": "execute", "type": "task", "agentCriteria": {"type": "AGENT"},
         "task": {"type": "TASK", "parameters": {"approvedBy": "${approve.output.approvedBy}"}}},
    ]})
}

fn shown(h: &Harness) -> Vec<Value> {
    h.events()
        .into_iter()
        .filter_map(|event| match event {
            RunEvent::StepWaiting { parameters, .. } => Some(parameters),
            _ => None,
        })
        .collect()
}

#[test]
fn an_approval_is_void_when_an_adaptation_changes_what_was_approved() {
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(MemoryStore::new());
    let h = Harness::on_clock(clock.clone(), |b| b.store(Arc::clone(&store)));
    h.register_shared(&executor(&clock));
    h.workflow(&workflow());
    let mut run = h
        .engine
        .start("bound", RunOptions::new(json!({"amount": 80})))
        .expect("starts");
    let id = run.id().clone();
    assert!(clock.run_until_stalled(&mut run).is_pending());
    let first = json!({"amount": 80, "limit": 100});
    assert_eq!(shown(&h), std::slice::from_ref(&first));

    // While the step waits, the desk tightens the limit.
    let rule: AdaptationDefinition = serde_json::from_value(json!({
        "id": "tighten", "when": "true",
        "changes": [{"stepId": "approve", "parameters": {"limit": 50}}]}))
    .expect("an adaptation");
    h.engine
        .adapt_workflow("bound", rule, "ops")
        .expect("added");

    // The approval of the old limit arrives: void, and asked again.
    h.engine
        .approve(&id, "approve", "bob", None)
        .expect("delivered");
    assert!(
        clock.run_until_stalled(&mut run).is_pending(),
        "asked again"
    );
    let second = json!({"amount": 80, "limit": 50});
    assert_eq!(shown(&h), [first.clone(), second.clone()]);
    let voided: Vec<(String, String, String)> = h
        .events()
        .into_iter()
        .filter_map(|event| match event {
            RunEvent::ApprovalVoided { by, asked, now, .. } => Some((by, asked, now)),
            _ => None,
        })
        .collect();
    assert_eq!(
        voided,
        [(
            "bob".to_owned(),
            canonical_hash(&first),
            canonical_hash(&second)
        )]
    );
    assert!(store.load(&id).expect("loads").iter().any(|entry| matches!(
        entry,
        JournalEntry::ApprovalVoided { by, .. } if by == "bob"
    )));

    // Approved again, of what the step now does.
    h.engine
        .approve(&id, "approve", "bob", Some("50 is fine"))
        .expect("delivered");
    let report = clock.block_on(run);
    assert_status(&report, RunStatus::Completed);
    let approved = step(&report, "approve").output.clone().expect("an output");
    assert_eq!(approved["limit"], json!(50));
    assert_eq!(approved["approvedBy"], json!("bob"));
}

#[test]
fn an_approval_stands_when_nothing_it_approved_changed() {
    let h = Harness::new();
    h.register_shared(&executor(&h.clock));
    h.workflow(&workflow());
    let mut run = h
        .engine
        .start("bound", RunOptions::new(json!({"amount": 80})))
        .expect("starts");
    assert!(h.clock.run_until_stalled(&mut run).is_pending());
    // An adaptation of another step changes nothing the approver saw.
    let rule: AdaptationDefinition = serde_json::from_value(json!({
        "id": "slower", "when": "true",
        "changes": [{"stepId": "execute", "parameters": {"urgent": false}}]}))
    .expect("an adaptation");
    h.engine
        .adapt_workflow("bound", rule, "ops")
        .expect("added");
    h.engine
        .approve(run.id(), "approve", "bob", None)
        .expect("delivered");
    let report = h.clock.block_on(run);
    assert_status(&report, RunStatus::Completed);
    assert!(
        !h.events()
            .iter()
            .any(|event| matches!(event, RunEvent::ApprovalVoided { .. }))
    );
}
