//! A run a trigger started says so: in its `RunStarted` event, and in its journal
//! (`runTriggered`, in the same append as `runStarted`), which the fold keeps. So does a
//! run started for a user (`startedBy`), and the host's pauses and resumptions name who
//! asked.

mod support;

use std::sync::Arc;

use serde_json::json;
use support::engine::{Harness, assert_status, step_on};
use tradeflow::engine::{RunEvent, RunOptions, RunStatus};
use tradeflow::store::{JournalEntry, MemoryStore, RunState, RunStore};

#[test]
fn the_trigger_is_in_the_event_and_the_journal() {
    let store = Arc::new(MemoryStore::new());
    let shared = Arc::clone(&store);
    let h = Harness::with(move |builder| builder.store(shared));
    h.register(h.agent("a-1").of_type("T").answers(json!({})));
    let definition = json!({"id": "w", "steps": [step_on("s", "T")]});
    let report = h.run_with(
        &definition,
        RunOptions::new(json!({})).triggered_by("triggers[0] (SCHEDULED)"),
    );
    assert_status(&report, RunStatus::Completed);
    assert!(h.events().iter().any(|event| matches!(
        event,
        RunEvent::RunStarted { trigger: Some(trigger), .. } if trigger == "triggers[0] (SCHEDULED)"
    )));
    let journal = store.load(&report.run_id).unwrap();
    let kinds: Vec<&str> = journal.iter().map(JournalEntry::kind).collect();
    assert_eq!(&kinds[..2], ["runStarted", "runTriggered"]);
    let state = RunState::fold(&journal).unwrap();
    assert_eq!(state.trigger.as_deref(), Some("triggers[0] (SCHEDULED)"));

    // A run nobody triggered journals no trigger.
    let report = h.run(&definition, json!({}));
    let state = RunState::fold(&store.load(&report.run_id).unwrap()).unwrap();
    assert_eq!(state.trigger, None);
}

#[test]
fn the_user_a_run_was_started_for_is_in_the_event_and_the_journal() {
    let store = Arc::new(MemoryStore::new());
    let shared = Arc::clone(&store);
    let h = Harness::with(move |builder| builder.store(shared));
    h.register(h.agent("a-1").of_type("T").answers(json!({})));
    let definition = json!({"id": "w", "steps": [step_on("s", "T")]});
    let options = RunOptions::new(json!({})).user("alice");
    assert_eq!(options.user_name(), Some("alice"));
    let report = h.run_with(&definition, options);
    assert_status(&report, RunStatus::Completed);
    assert!(h.events().iter().any(|event| matches!(
        event,
        RunEvent::RunStarted { user: Some(user), .. } if user == "alice"
    )));
    let journal = store.load(&report.run_id).unwrap();
    let kinds: Vec<&str> = journal.iter().map(JournalEntry::kind).collect();
    assert_eq!(&kinds[..2], ["runStarted", "startedBy"]);
    assert_eq!(
        RunState::fold(&journal).unwrap().started_by.as_deref(),
        Some("alice")
    );

    // A run started for no one journals no user.
    let report = h.run(&definition, json!({}));
    let journal = store.load(&report.run_id).unwrap();
    assert!(!journal.iter().any(|e| e.kind() == "startedBy"));
    assert_eq!(RunState::fold(&journal).unwrap().started_by, None);
}
