//! Durable runs: with a store, the engine journals every transition before acting on it,
//! and `Engine::recover` continues the runs a previous engine left unfinished. Steps that
//! ended are not run again; a call cut off by the restart is made again with the same
//! idempotency key; a step waiting for approval waits again. A "restart" here drops the
//! first engine and its unfinished run future, then builds a new engine on the same
//! store (and the same agents) and calls `recover`.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use support::engine::{
    Harness, Reply, TestAgent, approval_then_execute, assert_status, executor, step, step_on, t0,
    waiting_steps,
};
use support::journal::{assert_journal_matches, folded};
use support::with;
use tradeflow::agent::RunId;
use tradeflow::clock::VirtualClock;
use tradeflow::engine::{RunOptions, RunStatus, StepStatus};
use tradeflow::store::{JournalEntry, MemoryStore, RunStore, StoreError, WriteFault};

/// An engine on `clock` journaling to `store`.
fn durable(clock: &VirtualClock, store: &Arc<MemoryStore>) -> Harness {
    Harness::on_clock(clock.clone(), |builder| builder.store(Arc::clone(store)))
}

/// `fetch` → `trade` → `report`, each binding to the output before it, each on its own
/// agent type.
fn chain() -> Value {
    json!({"id": "chain", "version": "1", "steps": [
        step_on("fetch", "FETCH"),
        with(step_on("trade", "TRADE"),
             json!({"task": {"type": "TASK", "parameters": {"signal": "${fetch.output.signal}"}}})),
        with(step_on("report", "REPORT"),
             json!({"task": {"type": "TASK", "parameters": {"order": "${trade.output.order}"}}})),
    ]})
}

/// The agents of [`chain`]; `trade` hangs on its first call and answers after that.
fn chain_agents(clock: &VirtualClock) -> [Arc<TestAgent>; 3] {
    [
        Arc::new(
            TestAgent::new("fetch-1", clock)
                .of_type("FETCH")
                .answers(json!({"signal": 1})),
        ),
        Arc::new(
            TestAgent::new("trade-1", clock)
                .of_type("TRADE")
                .capacity(2)
                .replies(|_, number| {
                    if number == 1 {
                        Reply::hang()
                    } else {
                        Reply::ok(json!({"order": "o-1"}))
                    }
                }),
        ),
        Arc::new(
            TestAgent::new("report-1", clock)
                .of_type("REPORT")
                .answers(json!({"sent": true})),
        ),
    ]
}

#[test]
fn a_restart_reruns_only_the_step_in_flight_with_the_same_key() {
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(MemoryStore::new());
    let [fetch, trade, report] = chain_agents(&clock);

    let first = durable(&clock, &store);
    for agent in [&fetch, &trade, &report] {
        first.register_shared(agent);
    }
    let mut run = first.start(&chain(), RunOptions::new(json!({})).seed(7));
    let id = run.id().clone();
    assert!(
        clock.run_until_stalled(&mut run).is_pending(),
        "trade hangs"
    );
    assert_eq!(trade.calls().len(), 1);
    let before = folded(&*store, &id);
    assert_eq!(before.steps["fetch"].status, StepStatus::Completed);
    assert_eq!(before.steps["trade"].status, StepStatus::Running);
    assert_eq!(
        before.steps["trade"].in_flight[0].idempotency_key,
        trade.calls()[0].key()
    );
    drop(run);
    drop(first);
    assert_eq!(trade.gauge().now(), 0, "the cut-off call is gone");

    // The new engine does not keep the workflow: the store's definition is used.
    let second = durable(&clock, &store);
    for agent in [&fetch, &trade, &report] {
        second.register_shared(agent);
    }
    let runs = second.engine.recover().expect("the run recovers");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].id(), &id);
    let outcome = clock.block_on(runs.into_iter().next().unwrap());

    assert_status(&outcome, RunStatus::Completed);
    assert_eq!(fetch.calls().len(), 1, "a completed step is not run again");
    let calls = trade.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].key(), calls[0].key(), "the same logical call");
    assert_eq!(calls[1].request.parameters, json!({"signal": 1}));
    assert_eq!(report.calls().len(), 1);
    assert_eq!(
        report.calls()[0].request.parameters,
        json!({"order": "o-1"})
    );
    assert_eq!(step(&outcome, "fetch").output, Some(json!({"signal": 1})));
    assert_eq!(step(&outcome, "fetch").attempts, Some(1));
    assert_eq!(
        step(&outcome, "trade").attempts,
        Some(2),
        "the cut-off call counts"
    );
    assert_eq!(step(&outcome, "report").output, Some(json!({"sent": true})));
    let entries = store.load(&id).unwrap();
    let starts = entries
        .iter()
        .filter(|entry| matches!(entry, JournalEntry::RunStarted { .. }))
        .count();
    assert_eq!(starts, 1, "recovery does not start the run again");
    assert!(matches!(
        &entries[0],
        JournalEntry::RunStarted { version, seed: 7, .. } if version == "1"
    ));
    assert_journal_matches(&*store, &outcome);
    assert!(store.unfinished_runs().unwrap().is_empty());
}

#[test]
fn a_step_waiting_for_approval_waits_again_after_a_restart() {
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(MemoryStore::new());
    let exec = executor(&clock);

    let first = durable(&clock, &store);
    first.register_shared(&exec);
    let mut run = first.start(
        &approval_then_execute(),
        RunOptions::new(json!({"amount": 5})),
    );
    let id = run.id().clone();
    assert!(clock.run_until_stalled(&mut run).is_pending());
    assert_eq!(waiting_steps(&first.events()), ["approve"]);
    assert_eq!(folded(&*store, &id).status, RunStatus::Waiting);
    drop(run);
    drop(first);

    let second = durable(&clock, &store);
    second.register_shared(&exec);
    let mut runs = second.engine.recover().unwrap();
    assert_eq!(runs.len(), 1);
    let mut run = runs.pop().unwrap();
    assert!(
        clock.run_until_stalled(&mut run).is_pending(),
        "still waiting"
    );
    assert_eq!(
        waiting_steps(&second.events()),
        ["approve"],
        "the wait is announced again"
    );
    assert!(exec.calls().is_empty());
    clock.advance(Duration::from_secs(60));
    second
        .engine
        .approve(&id, "approve", "pm@desk", Some("ok"))
        .expect("the recovered step waits for approval");
    let outcome = clock.block_on(run);

    assert_status(&outcome, RunStatus::Completed);
    assert_eq!(
        step(&outcome, "approve").approved_by.as_deref(),
        Some("pm@desk")
    );
    assert_eq!(
        step(&outcome, "approve").output,
        Some(json!({"amount": 5, "approvedBy": "pm@desk", "comment": "ok"}))
    );
    assert_eq!(exec.calls().len(), 1);
    assert_journal_matches(&*store, &outcome);
}

#[test]
fn a_journaled_answer_is_acted_on_without_waiting_again() {
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(MemoryStore::new());
    let exec = executor(&clock);
    let first = durable(&clock, &store);
    first.workflow(&approval_then_execute());
    drop(first);
    // The previous engine journaled the answer, then stopped before acting on it.
    let id = RunId::from("run-1");
    let at = t0();
    store
        .append(
            &id,
            &[
                JournalEntry::RunStarted {
                    run_id: id.clone(),
                    workflow_id: "approval".into(),
                    version: String::new(),
                    input: json!({"amount": 5}),
                    seed: 3,
                    at,
                },
                JournalEntry::StepWaiting {
                    step_id: "approve".into(),
                    parameters: json!({"amount": 5}),
                    at,
                },
                JournalEntry::StepAnswered {
                    step_id: "approve".into(),
                    approved: true,
                    by: "pm@desk".into(),
                    comment: None,
                    at,
                },
            ],
        )
        .unwrap();

    let second = durable(&clock, &store);
    second.register_shared(&exec);
    let mut runs = second.engine.recover().unwrap();
    let mut run = runs.pop().unwrap();
    let outcome = clock
        .run_until_stalled(&mut run)
        .map(|report| report.status);

    assert_eq!(outcome, std::task::Poll::Ready(RunStatus::Completed));
    assert!(waiting_steps(&second.events()).is_empty(), "no new wait");
    assert_eq!(
        exec.calls()[0].request.parameters,
        json!({"approvedBy": "pm@desk"})
    );
    // A new run of this engine does not take the recovered run's id.
    let next = second
        .engine
        .start("approval", RunOptions::new(json!({"amount": 1})))
        .unwrap();
    assert_eq!(next.id().as_str(), "run-2");
}

#[test]
fn finished_runs_are_not_recovered() {
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(MemoryStore::new());
    let [fetch, trade, report] = chain_agents(&clock);
    let first = durable(&clock, &store);
    for agent in [&fetch, &trade, &report] {
        first.register_shared(agent);
    }
    // The first run's trade call hangs (the agent's first call); the second finishes.
    let mut stuck = first.start(&chain(), RunOptions::new(json!({})).run_id("stuck"));
    assert!(clock.run_until_stalled(&mut stuck).is_pending());
    let done = clock.block_on(
        first
            .engine
            .start("chain", RunOptions::new(json!({})).run_id("done"))
            .unwrap(),
    );
    assert_eq!(done.status, RunStatus::Completed);
    drop(stuck);
    drop(first);

    let second = durable(&clock, &store);
    let runs = second.engine.recover().unwrap();
    let ids: Vec<&str> = runs.iter().map(|run| run.id().as_str()).collect();
    assert_eq!(ids, ["stuck"]);

    let empty = durable(&clock, &Arc::new(MemoryStore::new()));
    assert!(empty.engine.recover().unwrap().is_empty());
    let without_store = Harness::on_clock(clock.clone(), |builder| builder);
    assert!(without_store.engine.recover().unwrap().is_empty());
}

#[test]
fn the_journal_folds_to_the_report() {
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(MemoryStore::new());
    let h = durable(&clock, &store);
    h.register(h.agent("ok-1").of_type("OK").answers(json!({"value": 1})));
    h.register(
        h.agent("bad-1")
            .of_type("BAD")
            .replies(|_, _| Reply::permanent("no data")),
    );
    h.register(
        h.agent("slow-1")
            .of_type("SLOW")
            .replies(|_, _| Reply::ok(json!({})).after_ms(1_000)),
    );

    // Completed, skipped by a condition, an optional failure and a step bound to it.
    let mixed = json!({"id": "mixed", "steps": [
        with(step_on("first", "OK"),
             json!({"outputMapping": {"doubled": "${first.output.value}"}})),
        with(step_on("never", "OK"), json!({"condition": {"expression": "1 == 2"}})),
        with(step_on("extra", "BAD"), json!({"optional": true})),
        with(step_on("bound", "OK"),
             json!({"task": {"type": "TASK", "parameters": {"v": "${extra.output.value}"}}})),
    ]});
    let report = h.run(&mixed, json!({}));
    assert_eq!(report.status, RunStatus::Completed);
    assert_eq!(step(&report, "never").status, StepStatus::Skipped);
    assert_eq!(
        step(&report, "extra").status,
        StepStatus::Skipped,
        "recovered"
    );
    assert_journal_matches(&*store, &report);

    // A failure that stops the run: a running step is cancelled, a later one never starts.
    let stopped = json!({"id": "stopped",
    "executionPolicy": {"failureHandling": "STOP_ON_FAILURE"},
    "dependencies": [{"from": "bad", "to": "after"}],
    "steps": [
        step_on("slow", "SLOW"),
        step_on("bad", "BAD"),
        with(step_on("after", "OK"),
             json!({"task": {"type": "TASK", "parameters": {"v": "${bad.output.value}"}}})),
    ]});
    let report = h.run(&stopped, json!({}));
    assert_status(&report, RunStatus::Failed);
    assert_eq!(
        step(&report, "slow").status,
        StepStatus::Cancelled,
        "{}",
        report.to_json_pretty()
    );
    assert_eq!(step(&report, "after").status, StepStatus::Skipped);
    assert_journal_matches(&*store, &report);
}

/// Found by `crashes_at_every_journal_position_lose_nothing` (seed 119): under
/// `PARALLEL` and `STOP_ON_FAILURE`, `fetch` completes and `after` starts in the instant
/// `bad` fails. `after` is launched in the turn that settles `bad`'s failure, before its
/// future is first polled: it was reported `CANCELLED` while nothing of it reached the
/// journal, which left it pending. Now a step that journaled nothing yet is reported, and
/// journaled, as skipped ("not started"). The same for a step started again after a
/// recovery (`SUBSTITUTE`, seed 19828).
#[test]
fn a_step_started_as_the_run_stops_is_journaled() {
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(MemoryStore::new());
    let h = durable(&clock, &store);
    h.register(
        h.agent("x-1")
            .capacity(4)
            .replies(|request, _| match request.step_id.as_str() {
                "bad" => Reply::permanent("refused").after_ms(5),
                _ => Reply::ok(json!({"ok": true})).after_ms(5),
            }),
    );
    let workflow = json!({"id": "w", "dependencies": [{"from": "fetch", "to": "after"}],
    "steps": [
        step_on("fetch", "AGENT"),
        with(step_on("bad", "AGENT"), json!({"retryPolicy": {"maxAttempts": 1}})),
        step_on("after", "AGENT"),
    ]});
    let report = h.run(&workflow, json!({}));

    assert_status(&report, RunStatus::Failed);
    // Launched, but stopped before it journaled (or called) anything: not started.
    assert_eq!(step(&report, "after").status, StepStatus::Skipped);
    assert_eq!(
        step(&report, "after").reason.as_deref(),
        Some("not started: the run ended FAILED")
    );
    assert_journal_matches(&*store, &report);

    // `price` fails, and is started again on the other agent in the turn that settles
    // `risk`'s failure.
    let store = Arc::new(MemoryStore::new());
    let h = durable(&clock, &store);
    for id in ["x-1", "x-2"] {
        h.register(h.agent(id).replies(|_, _| Reply::permanent("refused")));
    }
    let once = json!({"retryPolicy": {"maxAttempts": 1}});
    let workflow = json!({"id": "v", "dependencies": [], "steps": [
        with(step_on("price", "AGENT"), once.clone()),
        with(with(step_on("risk", "AGENT"), once), json!({"errorHandling": {"strategies": ["RETRY"]}})),
    ]});
    let report = h.run(&workflow, json!({}));

    assert_eq!(step(&report, "price").status, StepStatus::Skipped);
    assert_journal_matches(&*store, &report);
}

/// A store whose first `failures` appends (or commits) fail (busy), then works as
/// `inner`.
#[derive(Debug)]
struct Flaky {
    inner: Arc<MemoryStore>,
    failures: usize,
    tried: AtomicUsize,
}

impl RunStore for Flaky {
    fn append(&self, run: &RunId, entries: &[JournalEntry]) -> Result<(), StoreError> {
        if self.tried.fetch_add(1, Ordering::SeqCst) < self.failures {
            return Err(StoreError::Write {
                run: run.clone(),
                step: entries.iter().find_map(|entry| entry.step_id().cloned()),
                fault: WriteFault::Busy,
                source: "database is locked".into(),
            });
        }
        self.inner.append(run, entries)
    }

    fn commit(
        &self,
        appends: &[tradeflow::store::Append<'_>],
        until: chrono::DateTime<chrono::Utc>,
    ) -> Vec<Result<(), StoreError>> {
        if self.tried.fetch_add(1, Ordering::SeqCst) < self.failures {
            return appends
                .iter()
                .map(|append| {
                    Err(StoreError::Write {
                        run: append.lease.run().clone(),
                        step: append
                            .entries
                            .iter()
                            .find_map(|entry| entry.step_id().cloned()),
                        fault: WriteFault::Busy,
                        source: "database is locked".into(),
                    })
                })
                .collect();
        }
        self.inner.commit(appends, until)
    }

    forward_store!(inner);
}

#[test]
fn busy_appends_are_retried_off_the_run_and_nothing_is_lost() {
    let clock = VirtualClock::starting_at(t0());
    let memory = Arc::new(MemoryStore::new());
    let flaky = Flaky {
        inner: Arc::clone(&memory),
        failures: 3,
        tried: AtomicUsize::new(0),
    };
    let h = Harness::on_clock(clock.clone(), |builder| builder.store(flaky));
    let [fetch, trade, report] = chain_agents(&clock);
    h.register_shared(&fetch);
    h.register_shared(&report);
    // `trade` must answer: its first call would hang.
    let trade_ok = h.register(
        h.agent("trade-2")
            .of_type("TRADE")
            .answers(json!({"order": "o-2"})),
    );
    drop(trade);

    let outcome = h.run(&chain(), json!({}));

    assert_status(&outcome, RunStatus::Completed);
    // `runStarted` is refused 3 times: the journal's writer retries it (10 + 20 + 40 ms of
    // real time) while the run waits, and the run's clock does not move meanwhile.
    assert_eq!(h.elapsed(), Duration::ZERO);
    assert_eq!(
        fetch.calls().len(),
        1,
        "the call is made once its start is journaled"
    );
    assert_eq!(trade_ok.calls().len(), 1);
    assert_journal_matches(&*memory, &outcome);
    let entries = memory.load(&outcome.run_id).unwrap();
    let kinds: Vec<&str> = entries.iter().map(JournalEntry::kind).collect();
    assert_eq!(
        kinds,
        [
            "runStarted",
            "stepStarted",
            "stepCompleted",
            "checkpoint",
            "stepStarted",
            "stepCompleted",
            "checkpoint",
            "stepStarted",
            "stepCompleted",
            "checkpoint",
            "runEnded"
        ],
        "each transition once, in order"
    );
}

/// Found by `crashes_at_every_journal_position_lose_nothing` (seed 384): under
/// `CONTINUE_ON_FAILURE`, the run's error is its first failure (`b`), but after a restart
/// it names the failed step that comes first by id (`a`): `resume` restores steps from the
/// fold's map, in id order, and the book keeps the first failure it restores.
#[test]
fn the_runs_error_is_its_first_failure_after_a_restart_too() {
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(MemoryStore::new());
    let first = durable(&clock, &store);
    let agent = Arc::new(
        TestAgent::new("x-1", &clock)
            .capacity(3)
            .replies(|request, _| match request.step_id.as_str() {
                "b" => Reply::permanent("b failed first"),
                "a" => Reply::permanent("a failed later").after_ms(10),
                _ => Reply::hang(),
            }),
    );
    first.register_shared(&agent);
    let once = |id: &str| {
        with(
            step_on(id, "AGENT"),
            json!({"retryPolicy": {"maxAttempts": 1}}),
        )
    };
    let workflow = json!({"id": "w", "dependencies": [],
        "executionPolicy": {"failureHandling": "CONTINUE_ON_FAILURE"},
        "steps": [once("a"), once("b"), step_on("c", "AGENT")]});
    let mut run = first.start(&workflow, RunOptions::new(json!({})));
    let id = run.id().clone();
    assert!(clock.run_until_stalled(&mut run).is_pending(), "c hangs");
    let before = folded(&*store, &id);
    assert_eq!(before.steps["a"].status, StepStatus::Failed);
    assert_eq!(before.steps["b"].status, StepStatus::Failed);
    drop(run);
    drop(first);

    let second = durable(&clock, &store);
    second.register(second.agent("x-2").answers(json!({})));
    let mut runs = second.engine.recover().unwrap();
    let outcome = clock.block_on(runs.remove(0));
    assert_status(&outcome, RunStatus::Failed);
    let error = outcome.error.expect("the run failed");
    assert_eq!(error.step_id.as_ref().map(|step| step.as_str()), Some("b"));
}

/// Noticed in `crashes_at_every_journal_position_lose_nothing` (a recovered step's
/// `attempts` above its `maxAttempts`): a logical call made again after a restart starts
/// its attempts from 1 again, with a fresh retry budget. The agent is told `attempt: 1`
/// for a key it has seen at attempts 1 and 2, and the step makes 5 calls with
/// `maxAttempts: 3`, though "it never makes more calls than `maxAttempts`" and the call
/// cut off by the restart counts.
#[test]
fn a_call_made_again_after_a_restart_goes_on_with_its_attempts() {
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(MemoryStore::new());
    let first = durable(&clock, &store);
    // Fails the first two attempts; the second call of all hangs (the crash cuts it off).
    let agent = Arc::new(TestAgent::new("x-1", &clock).replies(|request, number| {
        match (number, request.attempt) {
            (2, _) => Reply::hang(),
            (_, 1 | 2) => Reply::temporary("busy"),
            _ => Reply::ok(json!({"done": true})),
        }
    }));
    first.register_shared(&agent);
    let workflow = json!({"id": "w", "steps": [with(step_on("trade", "AGENT"),
        json!({"retryPolicy": {"maxAttempts": 3, "initialDelayMs": 10}}))]});
    let mut run = first.start(&workflow, RunOptions::new(json!({})));
    let id = run.id().clone();
    assert!(
        clock.run_until_stalled(&mut run).is_pending(),
        "attempt 2 hangs"
    );
    assert_eq!(folded(&*store, &id).steps["trade"].attempts, 2);
    drop(run);
    drop(first);

    let second = durable(&clock, &store);
    second.register_shared(&agent);
    let mut runs = second.engine.recover().unwrap();
    let outcome = clock.block_on(runs.remove(0));
    let attempts: Vec<u32> = agent
        .calls()
        .iter()
        .map(|call| call.request.attempt)
        .collect();
    assert_eq!(attempts[..2], [1, 2]);
    assert!(
        attempts[2..].iter().all(|&attempt| attempt > 2),
        "attempts after the restart go on from the journal's: {attempts:?}"
    );
    assert!(
        step(&outcome, "trade").attempts <= Some(3),
        "{}",
        outcome.to_json_pretty()
    );
}
