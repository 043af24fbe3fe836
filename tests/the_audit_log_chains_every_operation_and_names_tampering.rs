//! The audit log: every operation through the engine appends an entry, in order, to a
//! SHA-256 hash chain in the run store's SQLite file; the table refuses changes; any
//! change made behind its back (every column of every row, every byte of a row's text)
//! is named by `verify` as exactly the entry changed; values given as input are hashed,
//! never written in clear; an operation the log does not take is not performed.
#![cfg(feature = "sqlite")]

#[path = "support/command.rs"]
mod command;
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::Connection;
use serde_json::{Value, json};
use support::engine::{Harness, TestAgent, t0};
use support::task_with;
use tradeflow::agent::RebalanceCriteria;
use tradeflow::audit::{
    AuditEntry, AuditError, AuditEvent, AuditHead, AuditLog, AuditRecord, MemoryAuditLog, Problem,
    Tampered, sha256_json,
};
use tradeflow::clock::VirtualClock;
use tradeflow::definition::{AdaptationDefinition, WorkflowDefinition};
use tradeflow::engine::{EngineError, FailureKind, Run, RunOptions, RunStatus};
use tradeflow::safety::{KillSwitchRule, ResetProgress};
use tradeflow::store::SqliteStore;

/// Appears only in runs' input: it must never reach the audit table in clear.
const CANARY: &str = "CANARY-acct-7f3a9e";

/// `approve` (a human approval of the input's account and amount) then `execute`.
fn desk() -> Value {
    json!({"id": "desk", "version": "1", "steps": [
        {"id": "approve", "type": "human_approval",
         "task": {"type": "APPROVAL_REQUEST",
                  "parameters": {"account": "${input.account}", "amount": "${input.amount}"}}},
        task_with("execute", json!({"approvedBy": "${approve.output.approvedBy}"})),
    ]})
}

/// The workflow adaptations are added to (never run).
fn quiet() -> Value {
    json!({"id": "quiet", "steps": [support::task("only")]})
}

fn definition(value: &Value) -> WorkflowDefinition {
    WorkflowDefinition::from_value(value).expect("a valid definition")
}

/// An engine on a virtual clock, journaling to (and auditing in) `store`, with a kill
/// switch rule on `pnl.drawdown` that one person resets.
fn engine(clock: &VirtualClock, store: SqliteStore, log: Arc<dyn AuditLog>) -> Harness {
    let rule = KillSwitchRule::new("drawdown", "pnl.drawdown > 0.05").scope_tags(["live"]);
    let host = Harness::on_clock(clock.clone(), move |builder| {
        builder
            .store(store)
            .audit(log)
            .kill_switch(&[rule])
            .expect("the rule is valid")
    });
    for id in ["exec-1", "exec-2"] {
        host.register(TestAgent::new(id, clock).answers(json!({"executed": true})));
    }
    host
}

/// What the test did, entry by entry: the kind and the actor it expects.
#[derive(Default)]
struct Expected {
    entries: Vec<(&'static str, Option<String>)>,
    operations: usize,
}

impl Expected {
    fn op(&mut self, kind: &'static str, actor: Option<&str>) {
        self.operations += 1;
        self.also(kind, actor);
    }

    /// An entry that is not an operation of its own (a run's end).
    fn also(&mut self, kind: &'static str, actor: Option<&str>) {
        self.entries.push((kind, actor.map(str::to_owned)));
    }
}

/// Starts a run of `desk` and lets it reach its approval.
fn waiting(host: &Harness, user: &str, amount: usize) -> Run {
    let input = json!({"account": CANARY, "amount": amount});
    let options = RunOptions::new(input).user(user);
    let mut run = host.engine.start("desk", options).expect("desk is defined");
    assert!(
        host.clock.run_until_stalled(&mut run).is_pending(),
        "the run waits for its approval"
    );
    run
}

/// Makes at least `operations` mixed operations through `host`'s engine.
fn operate(host: &Harness, operations: usize) -> Expected {
    let engine = &host.engine;
    let mut expected = Expected::default();
    engine
        .create_workflow(definition(&desk()))
        .expect("desk is valid");
    expected.op("workflowDefined", None);
    engine
        .create_workflow(definition(&quiet()))
        .expect("quiet is valid");
    expected.op("workflowDefined", None);
    let mut round = 0_usize;
    while expected.operations < operations {
        round += 1;
        let user = format!("trader-{}", round % 3);
        let approver = format!("pm-{}", round % 2);
        match round % 7 {
            // Approved.
            0 | 1 => {
                let run = waiting(host, &user, round);
                expected.op("runStarted", Some(&user));
                engine
                    .approve(run.id(), "approve", &approver, Some("ok"))
                    .expect("it waits");
                expected.op("stepApproved", Some(&approver));
                assert_eq!(host.clock.block_on(run).status, RunStatus::Completed);
                expected.also("runEnded", None);
            }
            // Paused, resumed, rejected.
            2 => {
                let run = waiting(host, &user, round);
                expected.op("runStarted", Some(&user));
                engine.pause_workflow(run.id(), "ops").expect("live");
                expected.op("runPaused", Some("ops"));
                engine.resume_workflow(run.id(), "ops").expect("live");
                expected.op("runResumed", Some("ops"));
                engine
                    .reject(run.id(), "approve", &approver, None)
                    .expect("it waits");
                expected.op("stepRejected", Some(&approver));
                assert_eq!(host.clock.block_on(run).status, RunStatus::Failed);
                expected.also("runEnded", None);
            }
            // Cancelled.
            3 => {
                let run = waiting(host, &user, round);
                expected.op("runStarted", Some(&user));
                engine.cancel_workflow(run.id(), "risk").expect("live");
                expected.op("runCancelled", Some("risk"));
                assert_eq!(host.clock.block_on(run).status, RunStatus::Cancelled);
                expected.also("runEnded", None);
            }
            // Rebalanced.
            4 => {
                let weight = 1.0 + (round % 5) as f64;
                engine
                    .rebalance_workload(&RebalanceCriteria::new().weight("exec-1", weight), "ops")
                    .expect("exec-1 is registered");
                expected.op("workloadRebalanced", Some("ops"));
            }
            // An adaptation added.
            5 => {
                let rule: AdaptationDefinition = serde_json::from_value(json!({
                    "id": format!("rule-{round}"), "when": "false",
                    "changes": [{"stepId": "only", "timeout": 5000}]
                }))
                .expect("a rule");
                engine
                    .adapt_workflow("quiet", rule, "quant")
                    .expect("valid");
                expected.op("adaptationAdded", Some("quant"));
            }
            // The kill switch trips, then is reset.
            _ => {
                assert_eq!(engine.report_metric("pnl.drawdown", json!(0.08)).len(), 1);
                expected.op("killSwitchTripped", None);
                engine.report_metric("pnl.drawdown", json!(0.0));
                let reset = engine
                    .reset_kill_switch("drawdown", "cro")
                    .expect("tripped");
                assert!(matches!(reset, ResetProgress::Done(_)));
                expected.op("killSwitchReset", Some("cro"));
            }
        }
    }
    expected
}

fn store_in(dir: &Path) -> (PathBuf, SqliteStore) {
    let path = dir.join("runs.db");
    let store = SqliteStore::open(&path).expect("a new store");
    (path, store)
}

/// A store whose audit table holds the entries of `operations` operations.
fn audited_store(dir: &Path, operations: usize) -> (PathBuf, Expected) {
    let (path, store) = store_in(dir);
    let log: Arc<dyn AuditLog> = Arc::new(store.audit_log());
    let clock = VirtualClock::starting_at(t0());
    let host = engine(&clock, store, log);
    let expected = operate(&host, operations);
    (path, expected)
}

fn all(log: &dyn AuditLog) -> Vec<AuditEntry> {
    log.read(1, usize::MAX).expect("the log reads")
}

#[test]
fn a_thousand_mixed_operations_leave_an_intact_chain_of_every_entry_in_order() {
    let dir = command::scratch_dir("audit-thousand");
    let (path, expected) = audited_store(&dir, 1_000);
    assert!(expected.operations >= 1_000);

    let log = SqliteStore::open(&path).expect("the store").audit_log();
    let head = log.verify().expect("the chain is intact");
    assert_eq!(head.entries as usize, expected.entries.len());
    let entries = all(&log);
    let found: Vec<(&str, Option<String>)> = entries
        .iter()
        .map(|entry| (entry.event.kind(), entry.actor.clone()))
        .collect();
    assert_eq!(found, expected.entries);
    assert_eq!(head.hash, entries.last().expect("entries").hash);
    for pair in entries.windows(2) {
        assert_eq!(pair[1].prev, pair[0].hash);
        assert_eq!(pair[1].seq, pair[0].seq + 1);
        assert!(pair[1].at >= pair[0].at, "the engine's clock only moves on");
    }
    // A run's input is hashed as the journal holds it.
    let started = entries
        .iter()
        .find_map(|entry| match &entry.event {
            AuditEvent::RunStarted { input_sha256, .. } => Some(input_sha256.clone()),
            _ => None,
        })
        .expect("a run started");
    let first_round = json!({"account": CANARY, "amount": 1});
    assert_eq!(started, sha256_json(&first_round));

    // The canary is in the journal (the run's input), never in the audit table.
    let raw = Connection::open(&path).expect("open");
    let count = |sql: &str| -> i64 {
        raw.query_row(sql, [format!("%{CANARY}%")], |row| row.get(0))
            .expect("count")
    };
    assert!(count("SELECT count(*) FROM events WHERE body LIKE ?1") > 0);
    assert_eq!(
        count(
            "SELECT count(*) FROM audit WHERE body LIKE ?1 OR actor LIKE ?1 OR kind LIKE ?1
             OR at LIKE ?1 OR prev LIKE ?1 OR hash LIKE ?1"
        ),
        0
    );
}

/// A raw connection to `path` with the audit table's triggers dropped, so that rows can
/// be changed behind the log's back (as someone with write access to the file could).
fn tamperer(path: &Path) -> Connection {
    let raw = Connection::open(path).expect("open");
    raw.execute_batch(
        "PRAGMA synchronous = OFF;
         DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;
         DROP TRIGGER audit_append_only;",
    )
    .expect("drop the triggers");
    raw
}

const TEXT_COLUMNS: [&str; 6] = ["at", "kind", "actor", "prev", "hash", "body"];

fn column(raw: &Connection, seq: i64, name: &str) -> Option<String> {
    raw.query_row(
        &format!("SELECT {name} FROM audit WHERE seq = ?1"),
        [seq],
        |row| row.get(0),
    )
    .expect("the row")
}

fn set(raw: &Connection, seq: i64, name: &str, value: Option<&str>) {
    raw.execute(
        &format!("UPDATE audit SET {name} = ?2 WHERE seq = ?1"),
        rusqlite::params![seq, value],
    )
    .expect("the update");
}

#[track_caller]
fn named(log: &dyn AuditLog, seq: i64) -> Tampered {
    match log.verify() {
        Err(AuditError::Tampered(tampered)) => {
            assert_eq!(tampered.seq as i64, seq, "{tampered}");
            assert_eq!(tampered.to_string().lines().count(), 1);
            tampered
        }
        other => panic!("entry {seq} changed, verify said {other:?}"),
    }
}

/// `text` with byte `i` replaced by another ASCII byte.
fn one_byte_changed(text: &str, i: usize, variant: u8) -> String {
    let mut bytes = text.as_bytes().to_vec();
    bytes[i] = match variant {
        0 => bytes[i] ^ 1,
        _ if bytes[i] == b'a' => b'b',
        _ => b'a',
    };
    String::from_utf8(bytes).expect("still ASCII")
}

#[test]
fn every_column_of_every_row_and_every_byte_of_a_row_changed_is_named_as_that_entry() {
    let dir = command::scratch_dir("audit-tamper");
    let (path, expected) = audited_store(&dir, 24);
    let log = SqliteStore::open(&path).expect("the store").audit_log();
    let intact = log.verify().expect("intact before");
    assert_eq!(intact.entries as usize, expected.entries.len());
    let rows = intact.entries as i64;
    let raw = tamperer(&path);

    // Every text column of every row, changed in one byte (a NULL actor given a name).
    for seq in 1..=rows {
        for name in TEXT_COLUMNS {
            let original = column(&raw, seq, name);
            let changed = match &original {
                Some(text) => one_byte_changed(text, text.len() / 2, 1),
                None => "mallory".to_owned(),
            };
            set(&raw, seq, name, Some(&changed));
            let tampered = named(&log, seq);
            let problem = &tampered.problem;
            match name {
                "hash" | "body" => assert_eq!(*problem, Problem::Hash, "{name}"),
                column => assert_eq!(*problem, Problem::Column { column }, "{name}"),
            }
            set(&raw, seq, name, original.as_deref());
        }
        // Its sequence number changed: moved past the end (a gap where it was), or
        // before the start (its hashed body still says which entry it is).
        for moved in [10_000 + seq, -seq, 0] {
            raw.execute("UPDATE audit SET seq = ?2 WHERE seq = ?1", [seq, moved])
                .expect("renumber");
            let problem = named(&log, seq).problem;
            if moved > rows && seq < rows {
                assert_eq!(
                    problem,
                    Problem::Missing { next: seq + 1 },
                    "moved to {moved}"
                );
            } else {
                assert_eq!(
                    problem,
                    Problem::Column { column: "seq" },
                    "moved to {moved}"
                );
            }
            raw.execute("UPDATE audit SET seq = ?2 WHERE seq = ?1", [moved, seq])
                .expect("renumber back");
        }
    }
    assert_eq!(log.verify(), Ok(intact.clone()));

    // Every single-byte change of one row's stored text, two ways per byte.
    let seq = rows / 2;
    for name in TEXT_COLUMNS {
        let Some(original) = column(&raw, seq, name) else {
            continue;
        };
        for i in 0..original.len() {
            for variant in 0..2 {
                set(
                    &raw,
                    seq,
                    name,
                    Some(&one_byte_changed(&original, i, variant)),
                );
                named(&log, seq);
            }
        }
        set(&raw, seq, name, Some(&original));
    }
    assert_eq!(log.verify(), Ok(intact.clone()));

    // A row removed; a row rewritten whole with a recomputed hash (its link breaks).
    let body = column(&raw, seq, "body").expect("a body");
    raw.execute("DELETE FROM audit WHERE seq = ?1", [seq])
        .expect("delete");
    assert_eq!(named(&log, seq).problem, Problem::Missing { next: seq + 1 });
    let forged = AuditEntry::seal(
        AuditRecord::new(
            t0(),
            Some("mallory"),
            AuditEvent::RunPaused {
                run: "run-1".into(),
            },
        ),
        seq as u64,
        tradeflow::audit::GENESIS,
    );
    raw.execute(
        "INSERT INTO audit (seq, at, kind, actor, prev, hash, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        rusqlite::params![
            seq,
            forged.body[forged.body.find("\"at\":\"").expect("at") + 6..][..24].to_owned(),
            "runPaused",
            "mallory",
            forged.prev,
            forged.hash,
            forged.body
        ],
    )
    .expect("insert");
    assert_eq!(named(&log, seq).problem, Problem::Link);
    assert!(!body.is_empty());
}

#[test]
fn the_audit_table_refuses_updates_deletes_and_inserts_out_of_turn() {
    let dir = command::scratch_dir("audit-triggers");
    let (path, _) = audited_store(&dir, 3);
    let log = SqliteStore::open(&path).expect("the store").audit_log();
    let intact = log.verify().expect("intact");
    let raw = Connection::open(&path).expect("open");
    let refused = |sql: &str| raw.execute(sql, []).expect_err(sql).to_string();
    assert!(
        refused("UPDATE audit SET actor = 'mallory' WHERE seq = 1")
            .contains("entries cannot be changed")
    );
    assert!(refused("DELETE FROM audit WHERE seq = 2").contains("entries cannot be deleted"));
    assert!(refused("DELETE FROM audit").contains("entries cannot be deleted"));
    let replace = "INSERT OR REPLACE INTO audit (seq, at, kind, actor, prev, hash, body)
                   SELECT seq, at, kind, 'mallory', prev, hash, body FROM audit WHERE seq = 1";
    assert!(refused(replace).contains("appended after the last one only"));
    let wrong_link = format!(
        "INSERT INTO audit (seq, at, kind, actor, prev, hash, body)
         VALUES ({}, 'x', 'x', NULL, 'not-the-last-hash', 'x', 'x')",
        intact.entries + 1
    );
    assert!(refused(&wrong_link).contains("appended after the last one only"));
    assert_eq!(log.verify(), Ok(intact));
}

/// A log that fails while `down`.
#[derive(Debug, Default)]
struct Flaky {
    log: MemoryAuditLog,
    down: AtomicBool,
}

impl AuditLog for Flaky {
    fn append(&self, record: AuditRecord) -> Result<AuditEntry, AuditError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(AuditError::Append {
                log: "flaky".into(),
                kind: record.event.kind(),
                reason: "disk full".into(),
            });
        }
        self.log.append(record)
    }

    fn read(&self, from: u64, limit: usize) -> Result<Vec<AuditEntry>, AuditError> {
        self.log.read(from, limit)
    }

    fn verify(&self) -> Result<AuditHead, AuditError> {
        self.log.verify()
    }
}

#[test]
fn an_operation_the_log_does_not_take_is_not_performed_and_what_happened_waits_in_order() {
    let flaky = Arc::new(Flaky::default());
    let clock = VirtualClock::starting_at(t0());
    let host = Harness::on_clock(clock.clone(), |builder| builder.audit(flaky.clone()));
    host.register(TestAgent::new("exec-1", &clock).answers(json!({})));
    host.engine
        .create_workflow(definition(&desk()))
        .expect("valid");
    let run = waiting(&host, "alice", 1);

    flaky.down.store(true, Ordering::SeqCst);
    let refused = host
        .engine
        .create_workflow(definition(&quiet()))
        .unwrap_err();
    assert!(
        matches!(
            &refused,
            EngineError::Audit(AuditError::Append {
                kind: "workflowDefined",
                ..
            })
        ),
        "{refused}"
    );
    assert!(host.engine.workflow("quiet").is_none(), "not kept");
    let refused = host
        .engine
        .approve(run.id(), "approve", "pm", None)
        .unwrap_err();
    assert!(matches!(refused, EngineError::Audit(_)));
    assert!(matches!(
        host.engine.pause_workflow(run.id(), "ops"),
        Err(EngineError::Audit(_))
    ));
    // The step still waits; cancelled (the log is back), the run ends.
    flaky.down.store(false, Ordering::SeqCst);
    host.engine.cancel_workflow(run.id(), "ops").expect("live");
    flaky.down.store(true, Ordering::SeqCst);
    let ended = host.clock.block_on(run);
    assert_eq!(
        ended.status,
        RunStatus::Cancelled,
        "a run's end is not refused"
    );
    // Its entry waits: a new run does not start.
    let report = host.clock.block_on(
        host.engine
            .start(
                "desk",
                RunOptions::new(json!({"account": "a", "amount": 2})),
            )
            .expect("starts"),
    );
    assert_eq!(report.status, RunStatus::Failed);
    let error = report.error.expect("an error");
    assert_eq!(error.kind, FailureKind::Store);
    assert!(
        error.message.contains("audit entry cannot be appended"),
        "{}",
        error.message
    );
    assert!(
        report
            .steps
            .iter()
            .all(|(_, step)| step.attempts.unwrap_or(0) == 0),
        "no step started"
    );

    flaky.down.store(false, Ordering::SeqCst);
    host.engine
        .create_workflow(definition(&quiet()))
        .expect("the log is back");
    let kinds: Vec<&str> = all(&*flaky)
        .iter()
        .map(|entry| entry.event.kind())
        .collect();
    assert_eq!(
        kinds,
        [
            "workflowDefined",
            "runStarted",
            "runCancelled",
            "runEnded",
            "runEnded",
            "workflowDefined"
        ],
        "the ends waited, in the order they happened, before the next entry"
    );
    assert!(flaky.verify().is_ok());
}

#[test]
fn without_an_audit_log_nothing_is_audited_and_nothing_is_refused() {
    let clock = VirtualClock::starting_at(t0());
    let host = Harness::on_clock(clock.clone(), |builder| builder);
    host.register(TestAgent::new("exec-1", &clock).answers(json!({})));
    host.engine
        .create_workflow(definition(&desk()))
        .expect("valid");
    let run = waiting(&host, "alice", 1);
    host.engine
        .approve(run.id(), "approve", "pm", None)
        .expect("waits");
    assert_eq!(host.clock.block_on(run).status, RunStatus::Completed);
}
