//! Costs of the audit log: sealing and appending one entry (SHA-256 over its canonical
//! body), in memory and in SQLite (WAL, `synchronous=FULL`: one commit and one sync per
//! entry), and verifying a chain of 10,000 entries.
//!
//! - `audit_append/memory`, `audit_append/sqlite`: one `runStarted` entry appended to a
//!   log that grows through the run (the append reads only the last entry).
//! - `audit_verify/memory`, `audit_verify/sqlite`: `verify` over 10,000 entries (the
//!   SQLite case reads them in pages of 1,000).
//!
//! The SQLite file is in `std::env::temp_dir()` (set `TMPDIR` to measure another disk;
//! a tmpfs makes syncs free). Run with `cargo bench --bench audit`.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tradeflow::audit::{
    AuditEvent, AuditLog, AuditRecord, MemoryAuditLog, SqliteAuditLog, sha256_json,
};

/// Entries of the chain `verify` checks.
const CHAIN: u64 = 10_000;

fn record(n: u64) -> AuditRecord {
    let at = Utc
        .with_ymd_and_hms(2026, 1, 5, 9, 0, 0)
        .single()
        .unwrap_or_default();
    AuditRecord::new(
        at,
        Some("trader-1"),
        AuditEvent::RunStarted {
            run: format!("run-{n}"),
            workflow: "algo-trading-strategy".into(),
            version: "1.0.0".into(),
            input_sha256: sha256_json(&serde_json::json!({"symbols": ["AAPL"], "n": n})),
        },
    )
}

/// A new SQLite log file in the temp dir (removed first if a run left one).
fn sqlite_log(name: &str) -> (PathBuf, SqliteAuditLog) {
    let path =
        std::env::temp_dir().join(format!("tradeflow-bench-{name}-{}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let log = SqliteAuditLog::open(&path).expect("a new audit log");
    (path, log)
}

fn fill(log: &dyn AuditLog, entries: u64) {
    for n in 0..entries {
        log.append(record(n)).expect("appended");
    }
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("audit_append");
    group.throughput(Throughput::Elements(1));
    let memory = MemoryAuditLog::new();
    let mut n = 0;
    group.bench_function("memory", |b| {
        b.iter(|| {
            n += 1;
            memory.append(record(n)).expect("appended")
        })
    });
    let (path, sqlite) = sqlite_log("append");
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("sqlite", |b| {
        b.iter(|| {
            n += 1;
            sqlite.append(record(n)).expect("appended")
        })
    });
    group.finish();
    drop(sqlite);
    let _ = std::fs::remove_file(path);
}

fn verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("audit_verify");
    group.throughput(Throughput::Elements(CHAIN));
    group.sample_size(10);
    let memory = MemoryAuditLog::new();
    fill(&memory, CHAIN);
    group.bench_function("memory", |b| b.iter(|| memory.verify().expect("intact")));
    let (path, sqlite) = sqlite_log("verify");
    fill(&sqlite, CHAIN);
    group.bench_function("sqlite", |b| b.iter(|| sqlite.verify().expect("intact")));
    group.finish();
    drop(sqlite);
    let _ = std::fs::remove_file(path);
}

criterion_group!(benches, append, verify);
criterion_main!(benches);
