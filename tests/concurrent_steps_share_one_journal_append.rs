//! Group commit: what a run journals in one wake-up is appended in one transaction (one
//! sync), at the latest before an agent is called. Concurrent steps share appends; a chain
//! needs one append per step (its completion travels with the next step's start).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use support::engine::{Harness, assert_status, step_on};
use tradeflow::agent::RunId;
use tradeflow::engine::{RunStatus, StepStatus};
use tradeflow::store::{JournalEntry, MemoryStore, RunState, RunStore, StoreError};

/// A [`MemoryStore`] that counts the engine's appends (transactions).
#[derive(Debug, Default)]
struct Counting {
    store: MemoryStore,
    appends: AtomicUsize,
}

impl RunStore for Counting {
    fn append(&self, run: &RunId, entries: &[JournalEntry]) -> Result<(), StoreError> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        self.store.append(run, entries)
    }

    fn commit(
        &self,
        appends: &[tradeflow::store::Append<'_>],
        until: chrono::DateTime<chrono::Utc>,
    ) -> Vec<Result<(), StoreError>> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        self.store.commit(appends, until)
    }

    forward_store!(store);
}

fn run(definition: &Value) -> (usize, Vec<JournalEntry>) {
    let store = Arc::new(Counting::default());
    let shared = Arc::clone(&store);
    let h = Harness::with(move |builder| builder.store(shared));
    h.register(
        h.agent("a-1")
            .of_type("T")
            .capacity(1_000)
            .answers(json!({"ok": true})),
    );
    let report = h.run(definition, json!({}));
    assert_status(&report, RunStatus::Completed);
    let journal = store.load(&report.run_id).unwrap();
    let state = RunState::fold(&journal).unwrap();
    assert!(
        state
            .steps
            .values()
            .all(|step| step.status == StepStatus::Completed),
        "every step is journaled as completed"
    );
    (store.appends.load(Ordering::SeqCst), journal)
}

#[test]
fn fifty_concurrent_steps_are_journaled_in_two_appends() {
    let steps: Vec<Value> = (0..50).map(|i| step_on(&format!("s{i}"), "T")).collect();
    let (appends, journal) = run(&json!({"id": "wide", "dependencies": [], "steps": steps}));
    // The start and the 50 calls' starts; then the 50 completions and the end.
    assert_eq!(appends, 2);
    assert_eq!(journal.len(), 1 + 50 * 3 + 1);
}

#[test]
fn a_chain_appends_once_per_step_and_once_for_the_end() {
    let steps: Vec<Value> = (0..20).map(|i| step_on(&format!("s{i}"), "T")).collect();
    let (appends, journal) = run(&json!({"id": "chain", "steps": steps}));
    assert_eq!(appends, 20 + 1);
    // Each append before a call carries the previous step's completion with it.
    let kinds: Vec<&str> = journal.iter().map(JournalEntry::kind).collect();
    assert_eq!(
        &kinds[..4],
        ["runStarted", "stepStarted", "stepCompleted", "checkpoint"]
    );
    assert_eq!(kinds.last(), Some(&"runEnded"));
}
