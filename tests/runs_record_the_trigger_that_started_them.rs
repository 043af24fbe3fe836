//! A run a trigger started says so: in its `RunStarted` event, and in its journal
//! (`runTriggered`, in the same append as `runStarted`), which the fold keeps.

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
