//! `tradeflow audit verify --store sqlite:PATH`: exit 0 with the entry count and head
//! hash when the store's audit chain is intact, 1 naming the first entry changed behind
//! its back, 2 for a path that is not a store; `audit list` prints every entry.
#![cfg(feature = "sqlite")]

#[path = "support/command.rs"]
mod command;
mod support;

use std::path::Path;
use std::sync::Arc;

use command::{assert_exit, run, scratch_dir, stderr_lines, stdout, text};
use rusqlite::Connection;
use serde_json::{Value, json};
use support::engine::{Harness, TestAgent, t0};
use tradeflow::audit::AuditLog;
use tradeflow::clock::VirtualClock;
use tradeflow::definition::WorkflowDefinition;
use tradeflow::engine::{RunOptions, RunStatus};
use tradeflow::store::SqliteStore;

/// A store whose audit log holds a workflow defined and three runs (7 entries); its
/// head as `verify` gives it.
fn audited(path: &Path) -> String {
    let store = SqliteStore::open(path).expect("a new store");
    let log = Arc::new(store.audit_log());
    let clock = VirtualClock::starting_at(t0());
    let host = Harness::on_clock(clock.clone(), |builder| {
        builder.store(store).audit(log.clone())
    });
    host.register(TestAgent::new("a-1", &clock).answers(json!({"ok": true})));
    let definition = json!({"id": "w", "steps": [support::task("only")]});
    host.engine
        .create_workflow(WorkflowDefinition::from_value(&definition).expect("valid"))
        .expect("created");
    for user in ["alice", "bob", "carol"] {
        let run = host
            .engine
            .start("w", RunOptions::new(json!({})).user(user))
            .expect("starts");
        assert_eq!(clock.block_on(run).status, RunStatus::Completed);
    }
    let head = log.verify().expect("intact");
    assert_eq!(head.entries, 7);
    head.hash
}

#[test]
fn an_intact_store_verifies_with_its_entry_count_and_head_and_lists_every_entry() {
    let dir = scratch_dir("audit-cli-intact");
    let path = dir.join("runs.db");
    let head = audited(&path);
    let store = format!("sqlite:{}", text(&path));

    let verified = run(&["audit", "verify", "--store", &store]);
    assert_exit(&verified, 0);
    assert_eq!(stdout(&verified), format!("7 entries, head {head}\n"));

    let listed = run(&["audit", "list", "--store", &store]);
    assert_exit(&listed, 0);
    let lines: Vec<Value> = stdout(&listed)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let seqs: Vec<u64> = lines
        .iter()
        .map(|line| line["entry"]["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(lines[6]["hash"], json!(head));
    assert_eq!(lines[1]["entry"]["kind"], json!("runStarted"));
    assert_eq!(lines[1]["entry"]["actor"], json!("alice"));
}

#[test]
fn a_tampered_store_exits_1_naming_the_first_entry_changed() {
    let dir = scratch_dir("audit-cli-tampered");
    let path = dir.join("runs.db");
    audited(&path);
    let raw = Connection::open(&path).expect("open");
    raw.execute_batch(
        "DROP TRIGGER audit_no_update;
         UPDATE audit SET actor = 'mallory' WHERE seq = 4;
         UPDATE audit SET body = replace(body, 'carol', 'erin') WHERE seq = 6;",
    )
    .expect("tampered");
    let store = format!("sqlite:{}", text(&path));

    let verified = run(&["audit", "verify", "--store", &store]);
    assert_exit(&verified, 1);
    assert_eq!(stdout(&verified), "");
    assert_eq!(
        stderr_lines(&verified),
        [format!(
            "{}: audit entry 4: its `actor` column differs from its hashed body",
            text(&path)
        )]
    );
}

#[test]
fn a_path_that_is_not_a_store_exits_2() {
    let dir = scratch_dir("audit-cli-not-a-store");
    let path = dir.join("notes.db");
    std::fs::write(&path, "not SQLite at all").expect("written");
    let verified = run(&[
        "audit",
        "verify",
        "--store",
        &format!("sqlite:{}", text(&path)),
    ]);
    assert_exit(&verified, 2);
    assert!(stderr_lines(&verified)[0].contains("it is not a tradeflow store"));

    let missing = dir.join("missing.db");
    let verified = run(&[
        "audit",
        "verify",
        "--store",
        &format!("sqlite:{}", text(&missing)),
    ]);
    assert_exit(&verified, 2);
    assert!(!missing.exists(), "verify creates no store");
    assert_exit(&run(&["audit", "verify", "--store", "runs.db"]), 2);
}

#[test]
fn tradeflow_run_audits_into_its_store_and_verify_checks_it() {
    let dir = scratch_dir("audit-cli-run");
    let path = dir.join("runs.db");
    let store = format!("sqlite:{}", text(&path));
    let output = run(&[
        "run",
        "examples/workflows/algo-trading.json",
        "--agents",
        "examples/agents/algo-trading.json",
        "--input",
        "examples/inputs/algo-trading.json",
        "--store",
        &store,
    ]);
    assert_exit(&output, 0);

    let listed = run(&["audit", "list", "--store", &store]);
    assert_exit(&listed, 0);
    let kinds: Vec<String> = stdout(&listed)
        .lines()
        .map(|line| {
            let line: Value = serde_json::from_str(line).expect("a JSON line");
            line["entry"]["kind"].as_str().expect("a kind").to_owned()
        })
        .collect();
    assert_eq!(kinds.first().map(String::as_str), Some("workflowDefined"));
    assert_eq!(kinds.get(1).map(String::as_str), Some("runStarted"));
    assert_eq!(kinds.last().map(String::as_str), Some("runEnded"));
    let verified = run(&["audit", "verify", "--store", &store]);
    assert_exit(&verified, 0);
    assert!(stdout(&verified).starts_with(&format!("{} entries, head ", kinds.len())));
}
