//! Run ids are unique across engines, processes and restarts by default (`run-` and a
//! UUIDv7), so a restarted bot never sends an order with an idempotency key it used
//! before; and a store refuses a run id it has already, before anything is called.

mod support;

use std::sync::Arc;

use serde_json::json;
use support::engine::{Harness, Reply, TestAgent, assert_status, step_on, t0};
use tradeflow::clock::VirtualClock;
use tradeflow::engine::{Engine, RunIds, RunOptions, RunStatus};
use tradeflow::run::FailureKind;
use tradeflow::store::{MemoryStore, RunState, RunStore};

fn one_step() -> serde_json::Value {
    json!({"id": "w", "steps": [step_on("trade", "TRADE")]})
}

#[test]
fn engines_on_one_store_name_their_runs_uniquely_and_in_time_order() {
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(MemoryStore::new());
    let mut ids = Vec::new();
    for restart in 0..3 {
        // A bot restarting: a new engine on the same store, default run ids.
        let engine = Engine::builder()
            .clock(clock.clone())
            .store(Arc::clone(&store))
            .build();
        let agent = TestAgent::new("trade-1", &clock)
            .of_type("TRADE")
            .answers(json!({"filled": true}));
        engine.register_agent(Arc::new(agent)).unwrap();
        engine
            .create_workflow(
                tradeflow::definition::WorkflowDefinition::from_value(&one_step()).unwrap(),
            )
            .unwrap();
        for _ in 0..2 {
            let report = clock
                .block_on(engine.run("w", RunOptions::new(json!({}))))
                .unwrap_or_else(|error| panic!("restart {restart}: {error}"));
            assert_status(&report, RunStatus::Completed);
            ids.push(report.run_id.to_string());
            clock.advance(std::time::Duration::from_millis(5));
        }
    }
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids, "UUIDv7 ids sort by start time");
    assert!(
        ids.iter()
            .all(|id| id.starts_with("run-") && id.len() == 40),
        "{ids:?}"
    );
}

#[test]
fn a_run_id_the_store_has_is_refused_and_nothing_is_called() {
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(MemoryStore::new());
    let agent = Arc::new(
        TestAgent::new("trade-1", &clock)
            .of_type("TRADE")
            .replies(|_, _| Reply::ok(json!({"filled": true}))),
    );
    let engine = |store: &Arc<MemoryStore>| {
        let store = Arc::clone(store);
        Harness::on_clock(clock.clone(), move |builder| {
            builder.store(store).run_ids(RunIds::Numbered)
        })
    };

    let first = engine(&store);
    first.register_shared(&agent);
    let report = first.run(&one_step(), json!({}));
    assert_status(&report, RunStatus::Completed);
    assert_eq!(report.run_id, "run-1");
    let journal = store.load(&report.run_id).unwrap();

    // A restarted bot that numbers its runs from 1 again.
    let second = engine(&store);
    second.register_shared(&agent);
    let report = second.run(&one_step(), json!({}));
    assert_status(&report, RunStatus::Failed);
    let error = report.error.as_ref().expect("the run says why");
    assert_eq!(error.kind, FailureKind::Store);
    assert!(
        error.message.contains("exists already"),
        "{}",
        error.message
    );
    assert_eq!(agent.calls().len(), 1, "the second run called nothing");
    assert_eq!(
        store.load(&report.run_id).unwrap(),
        journal,
        "the journal is untouched"
    );
    assert!(RunState::fold(&journal).unwrap().is_finished());
}
