//! The audit log: who did what to the engine, in a hash chain that shows any change.
//!
//! The engine ([`EngineBuilder::audit`](crate::engine::EngineBuilder::audit)) appends one
//! entry for each of these, in the order it decides them:
//!
//! | kind | actor | subject fields, in body order |
//! |---|---|---|
//! | `workflowDefined` | none | `workflow`, `version` (empty when none), `definitionSha256` |
//! | `runStarted` | the run's user ([`RunOptions::user`](crate::engine::RunOptions::user)), or none | `run`, `workflow`, `version`, `inputSha256` |
//! | `runEnded` | none | `run`, `workflow`, `status` |
//! | `stepApproved`, `stepRejected` | who answered | `run`, `step`, `parametersSha256` |
//! | `runPaused`, `runResumed`, `runCancelled` | who asked | `run` |
//! | `adaptationAdded` | who added it | `workflow`, `rule` |
//! | `workloadRebalanced` | who asked | `changes` (the rebalancing's report: drained, undrained, reweighted, lastAgentDrained, utilization; keys sorted) |
//! | `killSwitchTripped` | none | `rule` |
//! | `killSwitchReset` | who reset | `rule`, `armed` (the quorum was reached) |
//! | `permissionRefused` | who was refused | `action`, `workflow`, `step` (`workflow` and `step` may be `null`) |
//!
//! Values a person or a market gave are never written in clear: a run's input, a
//! step's parameters and a definition are hashed (SHA-256 of their compact JSON as
//! `serde_json` writes it, object keys sorted: [`sha256_json`]). An approval's comment
//! is not kept.
//!
//! # The chain
//! Each entry has a sequence number (`seq`: 1, 2, 3, … with no gap), a time (`at`, the
//! engine's clock, RFC 3339 UTC to the millisecond, `2026-01-05T09:00:00.000Z`), a
//! `kind`, an `actor` (a user's name, or `null` for what the engine did by itself), the
//! subject's fields, and `prev`, the hash of the entry before it (64 zeros for the
//! first). Its **body** is the canonical serialization of all of these: compact JSON
//! (no whitespace), keys in this order — `seq`, `at`, `actor`, `kind`, the subject's
//! fields in the order of the table above, `prev` — numbers as `serde_json` writes
//! them, strings escaped as `serde_json` escapes them (`"`, `\` and control
//! characters; everything else as UTF-8). For example:
//!
//! ```text
//! {"seq":1,"at":"2026-01-05T09:00:00.000Z","actor":"alice","kind":"runPaused","run":"run-1","prev":"000…000"}
//! ```
//!
//! The entry's **hash** is the SHA-256 of the body's UTF-8 bytes, in lowercase hex: the
//! exact bytes stored, nothing added. An outside tool verifies a chain with SHA-256
//! alone: for each entry in `seq` order, `seq` is one more than the last, the hash is
//! SHA-256(body), and the body's `prev` is the last entry's hash.
//!
//! [`AuditLog::verify`] checks more, and names the first entry that fails
//! ([`Tampered`]: its sequence number and what differs), in this order per entry: it is
//! missing (the next stored entry has a later number; but a row out of place whose
//! intact body says it is this entry or a later one is named by its body's number, its
//! `seq` column changed), its hash is not the SHA-256 of
//! its body, its body is not an entry or not canonical (written again it gives other
//! bytes), one of its columns (`seq`, `at`, `kind`, `actor`, `prev`) differs from its
//! body, or its `prev` is not the hash of the entry before (its link). A verified chain
//! gives its [`AuditHead`]: the number of entries and the last hash.
//!
//! What a chain cannot show by itself: the loss of its last entries, or a chain
//! rewritten whole from some entry on. Keep the head somewhere else (print it, send it
//! to another system each day) and compare: a head that is no longer in the chain, or a
//! shorter chain, is a rewritten one.
//!
//! # Storage
//! [`AuditLog`] is the store: [`append`](AuditLog::append) (seals and keeps one entry),
//! [`read`](AuditLog::read) (a range, by sequence number) and
//! [`verify`](AuditLog::verify). [`MemoryAuditLog`] keeps it in memory;
//! `SqliteAuditLog` (feature `sqlite`) in a table `audit` (`seq INTEGER PRIMARY KEY, at,
//! kind, actor, prev, hash, body`, all text but `seq`), either in the run store's file
//! ([`SqliteStore::audit_log`](crate::store::SqliteStore::audit_log): same connection,
//! same lock, so an audit append and a journal append never interleave) or in a file of
//! its own (`SqliteAuditLog::open`). Triggers refuse every `UPDATE` and `DELETE` of the
//! table, and any `INSERT` that is not the next entry after the last (which closes
//! `INSERT OR REPLACE` too), with `RAISE(ABORT, …)`; dropping the triggers, or the
//! table, takes someone who can write the file, and the chain shows what they changed.
//!
//! # Cost
//! One SHA-256 of a few hundred bytes and one append per entry; with SQLite, one
//! committed (synced) transaction. Verifying is O(entries), in pages of 1,000 rows.

mod chain;
mod entry;
mod memory;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::sync::Arc;

pub use entry::{
    AuditEntry, AuditEvent, AuditRecord, GENESIS, sha256_bytes, sha256_json, sha256_text,
};
pub use memory::MemoryAuditLog;
#[cfg(feature = "sqlite")]
pub(crate) use sqlite::SCHEMA;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteAuditLog;

/// Where audit entries are kept: an append-only hash chain.
///
/// An implementation seals each record after the last entry it keeps (sequence number
/// one more, `prev` its hash; [`AuditEntry::seal`]) and keeps it durably before
/// `append` returns; appends from several threads are serialized, never interleaved.
pub trait AuditLog: Send + Sync + std::fmt::Debug {
    /// Seals `record` as the next entry and keeps it.
    ///
    /// # Errors
    /// [`AuditError::Append`]: nothing of the entry is kept.
    fn append(&self, record: AuditRecord) -> Result<AuditEntry, AuditError>;

    /// Up to `limit` entries from sequence number `from` on, in order (read from their
    /// bodies, not verified: see [`verify`](Self::verify)).
    ///
    /// # Errors
    /// [`AuditError::Read`]; [`AuditError::Tampered`] for a body that is not an entry.
    fn read(&self, from: u64, limit: usize) -> Result<Vec<AuditEntry>, AuditError>;

    /// Recomputes the chain from the first entry: its head when intact.
    ///
    /// # Errors
    /// [`AuditError::Tampered`] naming the first entry that does not match;
    /// [`AuditError::Read`].
    fn verify(&self) -> Result<AuditHead, AuditError>;
}

impl<T: AuditLog + ?Sized> AuditLog for Arc<T> {
    fn append(&self, record: AuditRecord) -> Result<AuditEntry, AuditError> {
        (**self).append(record)
    }

    fn read(&self, from: u64, limit: usize) -> Result<Vec<AuditEntry>, AuditError> {
        (**self).read(from, limit)
    }

    fn verify(&self) -> Result<AuditHead, AuditError> {
        (**self).verify()
    }
}

/// A verified chain's end: how many entries it has, and the last one's hash
/// ([`GENESIS`] when empty).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditHead {
    /// The number of entries (the last sequence number).
    pub entries: u64,
    /// The last entry's hash, lowercase hex.
    pub hash: String,
}

impl std::fmt::Display for AuditHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} entries, head {}", self.entries, self.hash)
    }
}

/// The first entry of a chain that does not match, and what differs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tampered {
    /// Its sequence number.
    pub seq: u64,
    /// What differs.
    pub problem: Problem,
}

/// What differs in a tampered entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The entry is missing: the next entry stored has sequence number `next` (a gap:
    /// deleted, or renumbered).
    Missing {
        /// The sequence number found in its place, as stored.
        next: i64,
    },
    /// Its hash is not the SHA-256 of its body (the body or the hash was changed).
    Hash,
    /// Its body is not an entry.
    Body {
        /// Why it does not read as one.
        reason: String,
    },
    /// Its body is an entry, but not written canonically (its hash was recomputed
    /// over other bytes).
    NotCanonical,
    /// A column differs from the body the hash covers.
    Column {
        /// The column: `seq`, `at`, `kind`, `actor` or `prev`.
        column: &'static str,
    },
    /// Its `prev` is not the hash of the entry before it (the entry, or one before it,
    /// was replaced).
    Link,
}

impl std::error::Error for Tampered {}

impl std::fmt::Display for Tampered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seq = self.seq;
        write!(f, "audit entry {seq}")?;
        match &self.problem {
            Problem::Missing { next } => write!(
                f,
                " is missing: entry {next} follows entry {}",
                seq.saturating_sub(1)
            ),
            problem => write!(f, "{problem}"),
        }
    }
}

impl std::fmt::Display for Problem {
    /// What differs, said after "audit entry N" (` is missing …`, `: its hash …`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing { next } => write!(f, " is missing: entry {next} follows"),
            Self::Hash => f.write_str(": its hash is not the SHA-256 of its body"),
            Self::Body { reason } => {
                write!(
                    f,
                    ": its body is not an entry: {}",
                    crate::definition::Quoted(reason)
                )
            }
            Self::NotCanonical => f.write_str(": its body is not in canonical form"),
            Self::Column { column } => {
                write!(f, ": its `{column}` column differs from its hashed body")
            }
            Self::Link => f.write_str(": its link (prev) is not the hash of the entry before"),
        }
    }
}

/// Why the audit log failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The log could not be opened.
    #[error("audit log `{log}`: cannot open: {reason}")]
    Open {
        /// The log (its file).
        log: String,
        /// The backend's message.
        reason: String,
    },
    /// An entry could not be appended: nothing of it is kept.
    #[error("audit log `{log}`: cannot append a `{kind}` entry: {reason}")]
    Append {
        /// The log (its file, or `memory`).
        log: String,
        /// The entry's kind.
        kind: &'static str,
        /// The backend's message.
        reason: String,
    },
    /// The log could not be read.
    #[error("audit log `{log}`: cannot read: {reason}")]
    Read {
        /// The log.
        log: String,
        /// The backend's message.
        reason: String,
    },
    /// The chain does not verify.
    #[error(transparent)]
    Tampered(#[from] Tampered),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn _object_safe(_: &dyn AuditLog) {}

    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn logs_and_errors_can_be_shared_between_threads() {
        assert_send_sync::<MemoryAuditLog>();
        assert_send_sync::<AuditError>();
        assert_send_sync::<AuditEntry>();
    }

    #[test]
    fn a_memory_log_chains_reads_ranges_and_verifies() {
        let log = MemoryAuditLog::new();
        assert_eq!(
            log.verify().unwrap(),
            AuditHead {
                entries: 0,
                hash: GENESIS.to_owned()
            }
        );
        let at = chrono::DateTime::UNIX_EPOCH;
        for run in ["a", "b", "c"] {
            let event = AuditEvent::RunCancelled { run: run.into() };
            log.append(AuditRecord::new(at, Some("ops"), event))
                .unwrap();
        }
        let read = log.read(2, 5).unwrap();
        assert_eq!(
            read.iter().map(|entry| entry.seq).collect::<Vec<_>>(),
            [2, 3]
        );
        assert_eq!(read[0].prev, log.read(1, 1).unwrap()[0].hash);
        let head = log.verify().unwrap();
        assert_eq!(head.entries, 3);
        assert_eq!(head.hash, read[1].hash);
    }
}
