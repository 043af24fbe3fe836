//! One driver per run: every run in a store is held under a lease (an owner and a fencing
//! epoch). An engine that recovers leaves the runs another live engine holds; an engine
//! that lost a run (another took it) can no longer write to it, and stops driving it.

mod support;

use std::sync::Arc;

use chrono::Duration as TimeDelta;
use serde_json::json;
use support::engine::{Harness, approval_then_execute, assert_status, executor, t0, waiting_steps};
use tradeflow::clock::VirtualClock;
use tradeflow::engine::{RunOptions, RunStatus};
use tradeflow::run::FailureKind;
use tradeflow::store::{MemoryStore, RunStore, StoreError};

/// An engine on `clock` journaling to `store`, named `owner` as the holder of runs.
fn engine(clock: &VirtualClock, store: &Arc<MemoryStore>, owner: &str) -> Harness {
    let store = Arc::clone(store);
    let owner = owner.to_owned();
    Harness::on_clock(clock.clone(), move |builder| {
        builder.store(store).owner(owner)
    })
}

#[test]
fn a_run_held_by_a_live_engine_is_left_to_it_and_taken_once_it_is_let_go() {
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(MemoryStore::new());
    let exec = executor(&clock);
    let first = engine(&clock, &store, "first");
    first.register_shared(&exec);
    let mut run = first.start(
        &approval_then_execute(),
        RunOptions::new(json!({"amount": 5})),
    );
    let id = run.id().clone();
    assert!(clock.run_until_stalled(&mut run).is_pending());

    // A second engine on the same store, while the first still drives the run.
    let second = engine(&clock, &store, "second");
    second.register_shared(&exec);
    let recovery = second.engine.recover_all().unwrap();
    assert!(recovery.runs.is_empty(), "the run is the first engine's");
    assert_eq!(recovery.held.len(), 1);
    assert_eq!(recovery.held[0].run, id);
    assert_eq!(recovery.held[0].owner, "first");

    // The first lets it go (its future is dropped): the second takes it at once.
    drop(run);
    let mut runs = second.engine.recover().unwrap();
    assert_eq!(runs.len(), 1);
    let mut run = runs.remove(0);
    assert!(clock.run_until_stalled(&mut run).is_pending());
    assert_eq!(waiting_steps(&second.events()), ["approve"]);
    second.engine.approve(&id, "approve", "pm", None).unwrap();
    let report = clock.block_on(run);
    assert_status(&report, RunStatus::Completed);
    assert_eq!(exec.calls().len(), 1, "executed once");
}

#[test]
fn an_engine_that_lost_its_run_stops_driving_it_and_calls_nothing() {
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(MemoryStore::new());
    let exec = executor(&clock);
    let first = engine(&clock, &store, "first");
    first.register_shared(&exec);
    let mut run = first.start(
        &approval_then_execute(),
        RunOptions::new(json!({"amount": 5})),
    );
    let id = run.id().clone();
    assert!(clock.run_until_stalled(&mut run).is_pending());

    // The first engine stalls past its lease (the second sees it expired): the second
    // takes the run, moving its epoch on.
    let later = chrono::Utc::now() + TimeDelta::hours(1);
    let lease = store
        .claim(&id, "second", later, later + TimeDelta::seconds(10))
        .unwrap();
    assert_eq!(lease.epoch(), 2);

    // The first engine wakes up and acts on an answer: it cannot journal it any more,
    // so it stops before calling the executor.
    first.engine.approve(&id, "approve", "pm", None).unwrap();
    let report = clock.block_on(run);
    assert_status(&report, RunStatus::Failed);
    let error = report.error.as_ref().expect("the run says why");
    assert_eq!(error.kind, FailureKind::Store);
    assert!(
        error.message.contains("no longer this writer's"),
        "{}",
        error.message
    );
    assert!(exec.calls().is_empty(), "the first engine called nothing");

    // The second engine (named as the claim was) drives the run to its end.
    let second = engine(&clock, &store, "second");
    second.register_shared(&exec);
    let mut runs = second.engine.recover().unwrap();
    assert_eq!(runs.len(), 1);
    let mut run = runs.remove(0);
    assert!(clock.run_until_stalled(&mut run).is_pending());
    second.engine.approve(&id, "approve", "pm", None).unwrap();
    let report = clock.block_on(run);
    assert_status(&report, RunStatus::Completed);
    assert_eq!(exec.calls().len(), 1, "executed once, by the second engine");
}

#[test]
fn a_fenced_append_is_refused_by_the_store_and_the_new_owner_writes() {
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(MemoryStore::new());
    let first = engine(&clock, &store, "first");
    let exec = executor(&clock);
    first.register_shared(&exec);
    let mut run = first.start(
        &approval_then_execute(),
        RunOptions::new(json!({"amount": 5})),
    );
    let id = run.id().clone();
    assert!(clock.run_until_stalled(&mut run).is_pending());
    let now = chrono::Utc::now();
    // Held: the first engine's lease runs.
    let held = store.claim(&id, "second", now, now + TimeDelta::seconds(10));
    assert!(
        matches!(&held, Err(StoreError::Held { owner, .. }) if owner == "first"),
        "{held:?}"
    );
    let later = now + TimeDelta::hours(1);
    let taken = store
        .claim(&id, "second", later, later + TimeDelta::seconds(10))
        .unwrap();
    let renewed = store.renew(&[&taken], later + TimeDelta::seconds(20));
    assert!(renewed[0].is_ok());
    // The old owner's hold is gone: a new lease at epoch 1 is fenced.
    let stale = tradeflow::store::Lease::new(id.clone(), "first", 1);
    let refused = store.renew(&[&stale], later);
    assert!(
        matches!(&refused[0], Err(StoreError::Fenced { epoch: 2, .. })),
        "{refused:?}"
    );
    drop(run);
}
