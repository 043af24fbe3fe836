//! `journal_commit_seconds`: the journal writer commits on a thread of its own, so its
//! commits reach a global recorder (installed once, in this test binary of its own),
//! labelled with the store's type, one sample per commit.

mod support;

use std::sync::Arc;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use serde_json::json;
use support::engine::{Harness, assert_status};
use support::{task, workflow};
use tradeflow::engine::RunStatus;
use tradeflow::store::{MemoryStore, RunStore};

#[test]
fn every_commit_of_a_journaled_run_is_timed_under_the_stores_type() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");
    let store = Arc::new(MemoryStore::new());
    let shared = Arc::clone(&store);
    let h = Harness::with(|builder| builder.store(shared));
    h.register(h.agent("a-1").answers(json!({})));

    let report = h.run(&workflow([task("a"), task("b")]), json!({}));

    assert_status(&report, RunStatus::Completed);
    let commits: Vec<f64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == "journal_commit_seconds")
        .flat_map(|(key, _, _, value)| {
            let labels: Vec<(String, String)> = key
                .key()
                .labels()
                .map(|label| (label.key().to_owned(), label.value().to_owned()))
                .collect();
            assert_eq!(labels, [("store".to_owned(), "MemoryStore".to_owned())]);
            match value {
                DebugValue::Histogram(values) => {
                    values.into_iter().map(|v| v.0).collect::<Vec<f64>>()
                }
                other => panic!("a histogram, not {other:?}"),
            }
        })
        .collect();
    // The run's start with its first call, then each step's end with the next call or
    // the run's end: at least one commit, at most one per journal entry.
    let entries = store.load(&report.run_id).expect("the journal").len();
    assert!(
        !commits.is_empty() && commits.len() <= entries,
        "{} commits for {entries} entries",
        commits.len()
    );
    assert!(
        commits
            .iter()
            .all(|seconds| seconds.is_finite() && *seconds >= 0.0)
    );
}
