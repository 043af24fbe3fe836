//! A store that fails for good (a full disk, a read-only file, an I/O error) never hangs
//! a run: after a bounded retry the run stops before acting on what it could not
//! journal, ends `FAILED` with kind `STORE` naming the store's error, and stays
//! unfinished in the store; once the store works again, recovery finishes it. Appends
//! are made on the engine's journal writer, never on the thread that drives the run.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};

use serde_json::{Value, json};
use support::engine::{Harness, TestAgent, assert_status, step_on, t0};
use support::with;
use tradeflow::clock::VirtualClock;
use tradeflow::engine::{RunOptions, RunStatus};
use tradeflow::run::{FailureKind, RunId};
use tradeflow::store::{
    Append, JournalEntry, MemoryStore, RunState, RunStore, StoreError, WriteFault,
};

/// A [`MemoryStore`] that fails every write (disk full) while `broken`, and notes the
/// threads its commits ran on.
#[derive(Debug, Default)]
struct Breakable {
    inner: Arc<MemoryStore>,
    broken: AtomicBool,
    refused: AtomicUsize,
    threads: Mutex<Vec<(ThreadId, Option<String>)>>,
}

impl RunStore for Breakable {
    fn append(&self, run: &RunId, entries: &[JournalEntry]) -> Result<(), StoreError> {
        self.inner.append(run, entries)
    }

    fn commit(
        &self,
        appends: &[Append<'_>],
        until: chrono::DateTime<chrono::Utc>,
    ) -> Vec<Result<(), StoreError>> {
        let current = thread::current();
        self.threads
            .lock()
            .unwrap()
            .push((current.id(), current.name().map(str::to_owned)));
        if !self.broken.load(Ordering::SeqCst) {
            return self.inner.commit(appends, until);
        }
        self.refused.fetch_add(1, Ordering::SeqCst);
        appends
            .iter()
            .map(|append| {
                Err(StoreError::Write {
                    run: append.lease.run().clone(),
                    step: append
                        .entries
                        .iter()
                        .find_map(|entry| entry.step_id().cloned()),
                    fault: WriteFault::Full,
                    source: "No space left on device".into(),
                })
            })
            .collect()
    }

    forward_store!(inner);
}

/// `fetch` → `trade` → `report`, each binding to the output before it.
fn chain() -> Value {
    json!({"id": "chain", "version": "1", "steps": [
        step_on("fetch", "FETCH"),
        with(step_on("trade", "TRADE"),
             json!({"task": {"type": "TASK", "parameters": {"signal": "${fetch.output.signal}"}}})),
        with(step_on("report", "REPORT"),
             json!({"task": {"type": "TASK", "parameters": {"order": "${trade.output.order}"}}})),
    ]})
}

#[test]
fn a_full_disk_stops_the_run_and_recovery_finishes_it_once_there_is_space() {
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(Breakable::default());
    let fetch = Arc::new(
        TestAgent::new("fetch-1", &clock)
            .of_type("FETCH")
            .answers(json!({"signal": 1})),
    );
    // The disk fills up while `trade` runs: its completion cannot be journaled.
    let breaks = Arc::clone(&store);
    let trade = Arc::new(TestAgent::new("trade-1", &clock).of_type("TRADE").replies(
        move |_, number| {
            if number == 1 {
                breaks.broken.store(true, Ordering::SeqCst);
            }
            support::engine::Reply::ok(json!({"order": "o-1"}))
        },
    ));
    let report_agent = Arc::new(
        TestAgent::new("report-1", &clock)
            .of_type("REPORT")
            .answers(json!({"sent": true})),
    );
    let shared = Arc::clone(&store);
    let first = Harness::on_clock(clock.clone(), move |builder| builder.store(shared));
    for agent in [&fetch, &trade, &report_agent] {
        first.register_shared(agent);
    }
    let outcome = first.run(&chain(), json!({}));

    assert_status(&outcome, RunStatus::Failed);
    let error = outcome.error.as_ref().expect("the run says why");
    assert_eq!(error.kind, FailureKind::Store);
    assert!(error.message.contains("disk full"), "{}", error.message);
    assert!(
        error.message.contains("No space left on device"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("stays unfinished in the store"),
        "{}",
        error.message
    );
    assert!(
        report_agent.calls().is_empty(),
        "nothing acts on what was not journaled"
    );
    assert_eq!(
        store.refused.load(Ordering::SeqCst),
        4,
        "tried once, then retried 3 times, boundedly"
    );
    let journal = store.inner.load(&outcome.run_id).unwrap();
    assert!(!RunState::fold(&journal).unwrap().is_finished());

    // Space again: a new engine finishes the run. `trade`'s completion was lost, so it is
    // called again with the same key; `fetch` is not called again.
    store.broken.store(false, Ordering::SeqCst);
    let shared = Arc::clone(&store);
    let second = Harness::on_clock(clock.clone(), move |builder| builder.store(shared));
    for agent in [&fetch, &trade, &report_agent] {
        second.register_shared(agent);
    }
    let mut runs = second.engine.recover().unwrap();
    assert_eq!(runs.len(), 1);
    let recovered = clock.block_on(runs.remove(0));
    assert_status(&recovered, RunStatus::Completed);
    assert_eq!(
        fetch.calls().len(),
        1,
        "fetch completed before: not called again"
    );
    let trades = trade.calls();
    assert_eq!(trades.len(), 2);
    assert_eq!(
        trades[0].key(),
        trades[1].key(),
        "the same logical call, the same key"
    );
    assert_eq!(report_agent.calls().len(), 1);
}

#[test]
fn appends_are_made_on_the_journal_writer_not_on_the_runs_thread() {
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(Breakable::default());
    let shared = Arc::clone(&store);
    let h = Harness::on_clock(clock.clone(), move |builder| builder.store(shared));
    h.register(
        h.agent("fetch-1")
            .of_type("FETCH")
            .answers(json!({"signal": 1})),
    );
    h.register(
        h.agent("trade-1")
            .of_type("TRADE")
            .answers(json!({"order": "o"})),
    );
    h.register(h.agent("report-1").of_type("REPORT").answers(json!({})));
    let runs: Vec<_> = (0..20)
        .map(|_| h.start(&chain(), RunOptions::new(json!({}))))
        .collect();
    let reports = clock.block_on(futures::future::join_all(runs));
    for report in &reports {
        assert_status(report, RunStatus::Completed);
    }
    let threads = store.threads.lock().unwrap().clone();
    let here = thread::current().id();
    assert!(!threads.is_empty());
    for (id, name) in &threads {
        assert_ne!(*id, here, "no append on the thread driving the runs");
        assert_eq!(name.as_deref(), Some("tradeflow-journal"));
    }
}
