//! A `human_approval` step with `"approval": {"quorum": 2, "approvers": ["role:risk"]}`
//! waits for two distinct people holding one of the listed roles (or named users); one
//! rejection rejects; each approval is journaled, so a restart keeps the count.

mod support;

use std::sync::Arc;

use serde_json::{Value, json};
use support::engine::{Harness, assert_status, executor, step, t0};
use support::with;
use tradeflow::clock::VirtualClock;
use tradeflow::engine::{EngineError, Run, RunEvent, RunOptions, RunStatus};
use tradeflow::plan::ExecutionPlan;
use tradeflow::security::{PolicyPermissions, SecurityError};
use tradeflow::store::{JournalEntry, MemoryStore, RunStore};

const POLICY: &str = r#"{
  "roles": { "trader": { "execute": ["*"] },
             "risk": { "approve": ["*"] },
             "desk": { "approve": ["*"] } },
  "users": { "alice": ["trader"], "bob": ["risk"], "rita": ["risk"], "dan": ["desk"], "carl": ["desk"] }
}"#;

/// `approve` (quorum 2 of `role:risk` or `user:carl`) then `execute`.
fn quorum_workflow() -> Value {
    let mut workflow = support::engine::approval_then_execute();
    workflow["steps"][0] = with(
        workflow["steps"][0].clone(),
        json!({"approval": {"quorum": 2, "approvers": ["role:risk", "user:carl"]}}),
    );
    workflow
}

fn harness(clock: &VirtualClock, store: Option<&Arc<MemoryStore>>) -> Harness {
    let policy = Arc::new(PolicyPermissions::from_json(POLICY).expect("valid"));
    Harness::on_clock(clock.clone(), |b| {
        let b = b.permissions(policy);
        match store {
            Some(store) => b.store(Arc::clone(store)),
            None => b,
        }
    })
}

fn waiting_run(h: &Harness, clock: &VirtualClock) -> Run {
    h.register_shared(&executor(clock));
    h.workflow(&quorum_workflow());
    let mut run = h
        .engine
        .start(
            "approval",
            RunOptions::new(json!({"amount": 5})).user("alice"),
        )
        .expect("alice may execute");
    assert!(clock.run_until_stalled(&mut run).is_pending());
    run
}

fn refusal(result: Result<(), EngineError>) -> SecurityError {
    match result {
        Err(EngineError::Security(error)) => error,
        other => panic!("expected a security refusal, got {other:?}"),
    }
}

#[test]
fn two_distinct_approvers_of_the_listed_roles_complete_the_step() {
    let clock = VirtualClock::starting_at(t0());
    let h = harness(&clock, None);
    let mut run = waiting_run(&h, &clock);
    let id = run.id().clone();

    assert!(matches!(
        refusal(h.engine.approve(&id, "approve", "dan", None)),
        SecurityError::NotApprover { .. }
    ));
    h.engine
        .approve(&id, "approve", "bob", None)
        .expect("bob holds risk");
    assert!(clock.run_until_stalled(&mut run).is_pending(), "one of two");
    assert_eq!(
        refusal(h.engine.approve(&id, "approve", "bob", None)).to_string(),
        "user `bob` approved step `approve` of run `run-1` already; its quorum needs distinct approvers"
    );
    h.engine
        .approve(&id, "approve", "carl", Some("named"))
        .expect("carl is named");
    let report = clock.block_on(run);
    assert_status(&report, RunStatus::Completed);
    assert_eq!(
        step(&report, "approve").approved_by.as_deref(),
        Some("bob, carl")
    );
    let counted: Vec<(String, u32, u32)> = h
        .events()
        .into_iter()
        .filter_map(|event| match event {
            RunEvent::ApprovalCounted { by, have, need, .. } => Some((by, have, need)),
            _ => None,
        })
        .collect();
    assert_eq!(counted, [("bob".to_owned(), 1, 2)]);
}

#[test]
fn one_rejection_rejects_a_step_that_needs_a_quorum() {
    let clock = VirtualClock::starting_at(t0());
    let h = harness(&clock, None);
    let mut run = waiting_run(&h, &clock);
    let id = run.id().clone();
    h.engine
        .approve(&id, "approve", "bob", None)
        .expect("counted");
    assert!(clock.run_until_stalled(&mut run).is_pending());
    h.engine
        .reject(&id, "approve", "rita", Some("too big"))
        .expect("rita holds risk");
    let report = clock.block_on(run);
    assert_status(&report, RunStatus::Failed);
    assert_eq!(
        step(&report, "execute").status,
        tradeflow::engine::StepStatus::Skipped
    );
}

#[test]
fn a_restart_keeps_the_approvals_counted_before_it() {
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(MemoryStore::new());
    let first = harness(&clock, Some(&store));
    let mut run = waiting_run(&first, &clock);
    let id = run.id().clone();
    first
        .engine
        .approve(&id, "approve", "bob", None)
        .expect("counted");
    assert!(clock.run_until_stalled(&mut run).is_pending());
    drop(run);
    drop(first);
    let journal = store.load(&id).expect("loads");
    assert!(journal.iter().any(|entry| matches!(
        entry,
        JournalEntry::ApprovalCounted { by, .. } if by == "bob"
    )));

    let second = harness(&clock, Some(&store));
    second.register_shared(&executor(&clock));
    let mut run = second
        .engine
        .recover()
        .expect("recovers")
        .pop()
        .expect("one run");
    assert!(clock.run_until_stalled(&mut run).is_pending());
    assert!(matches!(
        refusal(second.engine.approve(&id, "approve", "bob", None)),
        SecurityError::AlreadyApproved { .. }
    ));
    second
        .engine
        .approve(&id, "approve", "rita", None)
        .expect("the second approver");
    let report = clock.block_on(run);
    assert_status(&report, RunStatus::Completed);
    assert_eq!(
        step(&report, "approve").approved_by.as_deref(),
        Some("bob, rita")
    );
}

#[test]
fn a_malformed_quorum_is_located_at_its_field() {
    let mut workflow = support::engine::approval_then_execute();
    workflow["steps"][0] = with(
        workflow["steps"][0].clone(),
        json!({"approval": {"quorum": 0, "approvers": ["role:risk", "team:ops", "user:"]}}),
    );
    let errors = ExecutionPlan::from_json(&workflow.to_string()).expect_err("invalid");
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "steps[0] (approve).approval.quorum: invalid value 0: expected 1 to 16",
            "steps[0] (approve).approval.approvers[1]: invalid value \"team:ops\": expected `role:NAME` or `user:NAME`",
            "steps[0] (approve).approval.approvers[2]: invalid value \"user:\": expected `role:NAME` or `user:NAME`",
        ]
    );
}
