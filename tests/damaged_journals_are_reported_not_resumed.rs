//! Damage is found, named and never resumed as if nothing happened: an entry changed,
//! added, removed or reordered behind the store's back, a run record deleted, a journal
//! whose steps end twice, a file that is not a store. One damaged run never keeps the
//! others from being resumed.
#![cfg(feature = "sqlite")]

#[path = "support/command.rs"]
mod command;

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use command::{assert_exit, run, scratch_dir, stderr_lines, text, write};
use rusqlite::Connection;
use serde_json::json;
use tradeflow::engine::{Engine, RecoveryError};
use tradeflow::run::RunId;
use tradeflow::store::{
    FoldError, JournalEntry, MemoryStore, RunState, RunStore, SqliteStore, StoreError,
};

fn at() -> DateTime<Utc> {
    "2026-01-05T09:00:00Z".parse().unwrap()
}

/// A started run's journal: started, `signal` called and completed, `trade` called.
fn journal(run: &str) -> Vec<JournalEntry> {
    let started = |step: &str| JournalEntry::StepStarted {
        step_id: step.into(),
        item: None,
        iteration: None,
        attempt: 1,
        agent_id: "a-1".into(),
        idempotency_key: format!("{run}/{step}/0/0"),
        at: at(),
    };
    vec![
        JournalEntry::RunStarted {
            run_id: run.into(),
            workflow_id: "w".into(),
            version: "1".into(),
            input: json!({}),
            seed: 1,
            at: at(),
        },
        started("signal"),
        JournalEntry::StepCompleted {
            step_id: "signal".into(),
            output: json!({"side": "BUY"}),
            attempts: 1,
            agent_id: Some("a-1".into()),
            agent_ids: None,
            approved_by: None,
            at: at(),
        },
        started("trade"),
    ]
}

/// A store at `path` holding the journals of `runs`.
fn store_with(path: &Path, runs: &[&str]) -> SqliteStore {
    let store = SqliteStore::open(path).unwrap();
    for run in runs {
        store.append(&RunId::from(*run), &journal(run)).unwrap();
    }
    store
}

/// Runs `sql` on the store's file, behind its back.
fn tamper(path: &Path, sql: &str) {
    Connection::open(path).unwrap().execute_batch(sql).unwrap();
}

fn damaged_at(error: &StoreError) -> Option<usize> {
    match error {
        StoreError::Damaged { position, .. } => Some(*position),
        _ => None,
    }
}

#[test]
fn every_kind_of_tampering_is_found_at_its_entry() {
    let dir = scratch_dir("damage-kinds");
    let cases: [(&str, &str, usize); 5] = [
        (
            "changed",
            "UPDATE events SET body = replace(body, 'BUY', 'SELL') WHERE seq = 2",
            2,
        ),
        (
            "removed from the middle",
            "DELETE FROM events WHERE seq = 1",
            1,
        ),
        ("removed at the end", "DELETE FROM events WHERE seq = 3", 3),
        (
            "a completion added",
            "INSERT INTO events (run_id, seq, body, crc)
             SELECT run_id, 4, body, crc FROM events WHERE seq = 2",
            4,
        ),
        (
            "reordered",
            "UPDATE events SET seq = -1 WHERE seq = 1;
             UPDATE events SET seq = 1 WHERE seq = 3;
             UPDATE events SET seq = 3 WHERE seq = -1;",
            1,
        ),
    ];
    for (name, sql, position) in cases {
        let path = dir.join(format!("{}.db", name.replace(' ', "-")));
        drop(store_with(&path, &["r1"]));
        tamper(&path, sql);
        let store = SqliteStore::open(&path).unwrap();
        let error = store.load(&RunId::from("r1")).unwrap_err();
        assert_eq!(damaged_at(&error), Some(position), "{name}: {error}");
        assert!(error.to_string().contains("run `r1`"), "{name}: {error}");
    }
}

#[test]
fn a_deleted_run_record_is_still_listed_and_reported_damaged() {
    let dir = scratch_dir("damage-runs-row");
    let path = dir.join("runs.db");
    drop(store_with(&path, &["r1"]));
    tamper(&path, "DELETE FROM runs WHERE run_id = 'r1'");
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.unfinished_runs().unwrap(), ["r1"]);
    let error = store.load(&RunId::from("r1")).unwrap_err();
    assert!(error.to_string().contains("record is missing"), "{error}");
}

#[test]
fn a_step_completed_twice_does_not_fold() {
    let mut entries = journal("r1");
    entries.push(entries[2].clone());
    let error = RunState::fold(&entries).unwrap_err();
    assert!(
        matches!(&error, FoldError::NotAllowed { index: 4, kind: "stepCompleted", step, .. }
            if step == "signal"),
        "{error}"
    );
}

#[test]
fn one_damaged_run_does_not_keep_the_others_from_being_recovered() {
    let store = Arc::new(MemoryStore::new());
    let definition = json!({"id": "w", "version": "1", "steps": [
        {"id": "signal", "type": "task", "agentCriteria": {"type": "T"}, "task": {"type": "T"}},
        {"id": "trade", "type": "task", "agentCriteria": {"type": "T"}, "task": {"type": "T"}}
    ]});
    store
        .put_definition("w", "1", &definition.to_string())
        .unwrap();
    for run in ["good", "forged", "unknown-step"] {
        store.append(&RunId::from(run), &journal(run)).unwrap();
    }
    // A forged second completion, and a step the workflow does not have.
    let forged = journal("forged")[2].clone();
    store.append(&RunId::from("forged"), &[forged]).unwrap();
    let stranger = JournalEntry::StepSkipped {
        step_id: "stranger".into(),
        reason: "?".into(),
        at: at(),
    };
    store
        .append(&RunId::from("unknown-step"), &[stranger])
        .unwrap();

    let engine = Engine::builder().store(Arc::clone(&store)).build();
    let recovery = engine.recover_all().unwrap();
    let recovered: Vec<&str> = recovery.runs.iter().map(|run| run.id().as_str()).collect();
    assert_eq!(recovered, ["good"]);
    let failed: Vec<(&str, &RecoveryError)> = recovery
        .failed
        .iter()
        .map(|(run, error)| (run.as_str(), error))
        .collect();
    assert!(
        matches!(
            failed[0],
            (
                "forged",
                RecoveryError::Journal(FoldError::NotAllowed { .. })
            )
        ),
        "{failed:?}"
    );
    assert!(
        matches!(failed[1], ("unknown-step", RecoveryError::UnknownStep { step, .. }) if step == "stranger"),
        "{failed:?}"
    );
}

#[test]
fn resume_refuses_a_file_that_is_not_a_store_and_names_damaged_runs() {
    let dir = scratch_dir("damage-resume");
    // An empty file (a store truncated to 0 bytes): refused, and left as it is.
    let empty = dir.join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let output = run(&["resume", "--store", &format!("sqlite:{}", text(&empty))]);
    assert_exit(&output, 2);
    assert!(
        stderr_lines(&output)
            .iter()
            .any(|line| line.contains("not a tradeflow store") && line.contains("empty")),
        "{:?}",
        stderr_lines(&output)
    );
    assert_eq!(
        std::fs::metadata(&empty).unwrap().len(),
        0,
        "nothing was written"
    );

    // A store whose only run is damaged: named, with its entry, and exit 2.
    let path = dir.join("runs.db");
    drop(store_with(&path, &["r1"]));
    tamper(
        &path,
        "UPDATE events SET body = replace(body, 'BUY', 'SELL') WHERE seq = 2",
    );
    let agents = write(&dir, "agents.json", &json!({"agents": []}));
    let output = run(&[
        "resume",
        "--store",
        &format!("sqlite:{}", text(&path)),
        "--agents",
        &agents,
    ]);
    assert_exit(&output, 2);
    assert!(
        stderr_lines(&output)
            .iter()
            .any(|line| line.contains("run `r1` cannot be resumed") && line.contains("entry 2")),
        "{:?}",
        stderr_lines(&output)
    );
}
