//! The host pauses, resumes and cancels runs. A paused run starts no new step and lets
//! the steps in flight finish; a cancelled run stops its steps in flight and ends
//! `CANCELLED`. All three are journaled, so they hold across a restart.

mod support;

use std::sync::Arc;
use std::task::Context;

use futures::FutureExt;
use futures::task::noop_waker_ref;

use serde_json::{Value, json};
use support::engine::{Harness, Reply, TestAgent, assert_status, reason, step, step_on, t0};
use support::with;
use tradeflow::agent::RunId;
use tradeflow::clock::{Clock, VirtualClock};
use tradeflow::engine::{EngineError, Run, RunEvent, RunOptions, RunStatus, StepStatus};
use tradeflow::store::{JournalEntry, MemoryStore, RunState, RunStore};

/// `fetch` (100 ms) → `trade` (bound to it) → `report`.
fn chain() -> Value {
    json!({"id": "chain", "version": "1", "steps": [
        step_on("fetch", "FETCH"),
        with(step_on("trade", "TRADE"),
             json!({"task": {"type": "TASK", "parameters": {"signal": "${fetch.output.signal}"}}})),
        step_on("report", "REPORT"),
    ]})
}

/// The agents of [`chain`]: `fetch` takes 100 ms, `trade` `trade_ms`, `report` answers.
fn agents(clock: &VirtualClock, trade: Reply) -> [Arc<TestAgent>; 3] {
    [
        Arc::new(
            TestAgent::new("fetch-1", clock)
                .of_type("FETCH")
                .replies(|_, _| Reply::ok(json!({"signal": 1})).after_ms(100)),
        ),
        Arc::new(
            TestAgent::new("trade-1", clock)
                .of_type("TRADE")
                .replies(move |_, _| trade.clone()),
        ),
        Arc::new(
            TestAgent::new("report-1", clock)
                .of_type("REPORT")
                .answers(json!({"sent": true})),
        ),
    ]
}

fn harness(clock: &VirtualClock, store: Option<&Arc<MemoryStore>>) -> Harness {
    Harness::on_clock(clock.clone(), |builder| match store {
        Some(store) => builder.store(Arc::clone(store)),
        None => builder,
    })
}

fn register(harness: &Harness, agents: &[Arc<TestAgent>; 3]) {
    for agent in agents {
        harness.register_shared(agent);
    }
}

/// Polls `run` once, without moving the clock: whether it is still going.
fn still_going(run: &mut Run) -> bool {
    let mut cx = Context::from_waker(noop_waker_ref());
    run.poll_unpin(&mut cx).is_pending()
}

#[track_caller]
fn folded(store: &MemoryStore, run: &RunId) -> RunState {
    RunState::fold(&store.load(run).expect("loads")).expect("folds")
}

#[test]
fn a_paused_run_lets_its_step_in_flight_finish_and_starts_nothing_until_resumed() {
    let clock = VirtualClock::starting_at(t0());
    let agents = agents(&clock, Reply::ok(json!({"order": "o-1"})));
    let [fetch, trade, _] = &agents;
    let host = harness(&clock, None);
    register(&host, &agents);
    let mut run = host.start(&chain(), RunOptions::new(json!({})));
    let id = run.id().clone();
    assert!(still_going(&mut run));
    assert_eq!(fetch.calls().len(), 1, "fetch is in flight");

    host.engine
        .pause_workflow(&id, "ops")
        .expect("the run is live");
    host.engine
        .pause_workflow(&id, "ops")
        .expect("pausing twice is harmless");
    assert!(
        clock.run_until_stalled(&mut run).is_pending(),
        "a paused run waits for its host"
    );
    assert_eq!(host.elapsed(), support::engine::ms(100), "fetch finished");
    assert!(trade.calls().is_empty(), "no step starts while paused");
    let events = host.events();
    assert_eq!(
        events
            .iter()
            .filter(|event| matches!(event, RunEvent::RunPaused { .. }))
            .count(),
        1
    );
    assert!(events.iter().any(
        |event| matches!(event, RunEvent::StepCompleted { step_id, .. } if step_id == "fetch")
    ));

    host.engine
        .resume_workflow(&id, "ops")
        .expect("the run is live");
    let report = clock.block_on(run);
    assert_status(&report, RunStatus::Completed);
    assert_eq!(trade.calls().len(), 1);
    assert!(
        host.events()
            .iter()
            .any(|event| matches!(event, RunEvent::RunResumed { .. }))
    );
    assert_eq!(
        host.engine.resume_workflow(&id, "ops"),
        Err(EngineError::NotRunning { run: id.clone() }),
        "an ended run takes no commands"
    );
}

#[test]
fn a_cancelled_run_stops_its_step_in_flight_and_skips_the_rest() {
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(MemoryStore::new());
    let agents = agents(&clock, Reply::hang());
    let [_, trade, report_agent] = &agents;
    let host = harness(&clock, Some(&store));
    register(&host, &agents);
    let mut run = host.start(&chain(), RunOptions::new(json!({})));
    let id = run.id().clone();
    assert!(clock.run_until_stalled(&mut run).is_pending());
    assert_eq!(trade.calls().len(), 1, "trade hangs");

    host.engine.cancel_workflow(&id, "ops@desk").expect("live");
    let report = clock.block_on(run);
    assert_status(&report, RunStatus::Cancelled);
    assert_eq!(step(&report, "fetch").status, StepStatus::Completed);
    assert_eq!(step(&report, "trade").status, StepStatus::Cancelled);
    assert_eq!(step(&report, "report").status, StepStatus::Skipped);
    assert_eq!(
        reason(&report, "report"),
        "not started: the run ended CANCELLED"
    );
    assert_eq!(trade.gauge().now(), 0, "the call in flight was dropped");
    assert!(report_agent.calls().is_empty());

    let entries = store.load(&id).unwrap();
    let cancelled = entries
        .iter()
        .position(
            |entry| matches!(entry, JournalEntry::RunCancelled { by, .. } if by == "ops@desk"),
        )
        .expect("the cancellation is journaled");
    assert!(matches!(
        entries.last(),
        Some(JournalEntry::RunEnded {
            status: RunStatus::Cancelled,
            ..
        })
    ));
    assert!(cancelled < entries.len() - 1);
    let state = folded(&store, &id);
    assert_eq!(state.status, RunStatus::Cancelled);
    assert_eq!(state.cancelled_by.as_deref(), Some("ops@desk"));
    assert_eq!(state.steps["trade"].status, StepStatus::Cancelled);
}

#[test]
fn a_paused_run_can_be_cancelled() {
    let clock = VirtualClock::starting_at(t0());
    let agents = agents(&clock, Reply::ok(json!({"order": "o-1"})));
    let host = harness(&clock, None);
    register(&host, &agents);
    let mut run = host.start(&chain(), RunOptions::new(json!({})));
    let id = run.id().clone();
    host.engine.pause_workflow(&id, "ops").unwrap();
    assert!(clock.run_until_stalled(&mut run).is_pending());
    host.engine.cancel_workflow(&id, "ops").unwrap();
    let report = clock.block_on(run);
    assert_status(&report, RunStatus::Cancelled);
    assert!(agents[1].calls().is_empty());
}

#[test]
fn commands_to_runs_that_are_not_live_are_refused() {
    let host = Harness::new();
    let unknown = RunId::from("run-404");
    for result in [
        host.engine.pause_workflow(&unknown, "ops"),
        host.engine.resume_workflow(&unknown, "ops"),
        host.engine.cancel_workflow(&unknown, "ops"),
    ] {
        assert_eq!(
            result,
            Err(EngineError::NotRunning {
                run: unknown.clone()
            })
        );
    }
    assert_eq!(
        EngineError::NotRunning { run: unknown }.to_string(),
        "run `run-404` is not running in this engine"
    );
}

#[test]
fn a_paused_run_is_still_paused_after_a_restart_and_resumes_where_it_was() {
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(MemoryStore::new());
    let agents = agents(&clock, Reply::ok(json!({"order": "o-1"})));
    let [fetch, trade, report_agent] = &agents;

    let first = harness(&clock, Some(&store));
    register(&first, &agents);
    let mut run = first.start(&chain(), RunOptions::new(json!({})).user("alice"));
    let id = run.id().clone();
    assert!(still_going(&mut run));
    first.engine.pause_workflow(&id, "risk-desk").unwrap();
    assert!(clock.run_until_stalled(&mut run).is_pending());
    assert_eq!(folded(&store, &id).status, RunStatus::Paused);
    drop(run);
    drop(first);

    let second = harness(&clock, Some(&store));
    register(&second, &agents);
    let mut runs = second.engine.recover().expect("recovers");
    assert_eq!(runs.len(), 1);
    let mut run = runs.remove(0);
    assert!(
        clock.run_until_stalled(&mut run).is_pending(),
        "still paused"
    );
    assert!(trade.calls().is_empty(), "no step starts while paused");
    second
        .engine
        .resume_workflow(&id, "ops")
        .expect("the recovered run is live");
    let report = clock.block_on(run);
    assert_status(&report, RunStatus::Completed);
    assert_eq!(fetch.calls().len(), 1, "fetch completed before the restart");
    assert_eq!(trade.calls().len(), 1);
    assert_eq!(report_agent.calls().len(), 1);
    let state = folded(&store, &id);
    assert_eq!(state.status, RunStatus::Completed);
    assert_eq!(
        state.started_by.as_deref(),
        Some("alice"),
        "the starter is kept"
    );
    let journal = store.load(&id).unwrap();
    let asked: Vec<(&str, Option<&str>)> = journal
        .iter()
        .filter_map(|entry| match entry {
            JournalEntry::RunPaused { by, .. } => Some(("paused", by.as_deref())),
            JournalEntry::RunResumed { by, .. } => Some(("resumed", by.as_deref())),
            _ => None,
        })
        .collect();
    assert_eq!(
        asked,
        [("paused", Some("risk-desk")), ("resumed", Some("ops"))]
    );
    assert!(second.events().iter().any(|event| matches!(
        event,
        RunEvent::RunStarted { user: Some(user), .. } if user == "alice"
    )));
}

#[test]
fn a_cancellation_journaled_before_a_restart_ends_the_recovered_run_at_once() {
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(MemoryStore::new());
    let agents = agents(&clock, Reply::hang());
    let [_, trade, report_agent] = &agents;

    let first = harness(&clock, Some(&store));
    register(&first, &agents);
    let mut run = first.start(&chain(), RunOptions::new(json!({})));
    let id = run.id().clone();
    assert!(clock.run_until_stalled(&mut run).is_pending());
    drop(run);
    drop(first);
    // The process died after journaling the cancellation, before the run ended.
    store
        .append(
            &id,
            &[JournalEntry::RunCancelled {
                by: "ops".into(),
                at: clock.now(),
            }],
        )
        .unwrap();

    let second = harness(&clock, Some(&store));
    register(&second, &agents);
    let run = second.engine.recover().unwrap().remove(0);
    let report = clock.block_on(run);
    assert_status(&report, RunStatus::Cancelled);
    assert_eq!(trade.calls().len(), 1, "the cut-off call is not re-made");
    assert!(report_agent.calls().is_empty());
    assert!(store.unfinished_runs().unwrap().is_empty());
}
