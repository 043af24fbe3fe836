//! [`SqliteAuditLog`]: the chain in a SQLite table `audit`, in a run store's file
//! ([`SqliteStore::audit_log`](crate::store::SqliteStore::audit_log)) or a file of its own.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::chain::{Chain, StoredRow};
use super::entry::{GENESIS, format_at};
use super::{AuditEntry, AuditError, AuditHead, AuditLog, AuditRecord, Problem, Tampered};

/// The table, its append-only triggers. A run store's migration applies it as is: never
/// change this text, add a migration instead.
pub(crate) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS audit (
        seq   INTEGER PRIMARY KEY,
        at    TEXT NOT NULL,
        kind  TEXT NOT NULL,
        actor TEXT,
        prev  TEXT NOT NULL,
        hash  TEXT NOT NULL,
        body  TEXT NOT NULL
    );
    CREATE TRIGGER IF NOT EXISTS audit_append_only BEFORE INSERT ON audit
    WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM audit)
      OR NEW.prev IS NOT COALESCE((SELECT hash FROM audit ORDER BY seq DESC LIMIT 1),
             '0000000000000000000000000000000000000000000000000000000000000000')
    BEGIN SELECT RAISE(ABORT, 'audit: an entry is appended after the last one only'); END;
    CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit: entries cannot be changed'); END;
    CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit: entries cannot be deleted'); END;
";

/// Rows read per lock while verifying, so that appends go on meanwhile.
const PAGE: i64 = 1000;

/// The chain in SQLite: each append one `IMMEDIATE` transaction, committed (and, with
/// the store's `synchronous=FULL`, synced) before [`append`](AuditLog::append) returns.
pub struct SqliteAuditLog {
    path: PathBuf,
    connection: Arc<Mutex<Connection>>,
}

impl fmt::Debug for SqliteAuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteAuditLog")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteAuditLog {
    /// An audit log in a file of its own at `path` (created if missing; WAL,
    /// `synchronous=FULL`), or in the `audit` table of the run store there.
    ///
    /// # Errors
    /// [`AuditError::Open`] when the file cannot be opened, set up, or is not SQLite.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, AuditError> {
        let path = path.as_ref().to_path_buf();
        let failed = |error: rusqlite::Error| AuditError::Open {
            log: path.display().to_string(),
            reason: error.to_string(),
        };
        let connection = Connection::open(&path).map_err(failed)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .and_then(|()| connection.pragma_update(None, "synchronous", "FULL"))
            .and_then(|()| connection.execute_batch(SCHEMA))
            .map_err(failed)?;
        Ok(Self::on(path, Arc::new(Mutex::new(connection))))
    }

    /// The log in the file `connection` has open (a run store's, sharing its lock).
    pub(crate) fn on(path: PathBuf, connection: Arc<Mutex<Connection>>) -> Self {
        Self { path, connection }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn connection(&self) -> MutexGuard<'_, Connection> {
        // A panic inside a transaction rolls it back: the connection stays sound.
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn log(&self) -> String {
        self.path.display().to_string()
    }

    fn read_failed(&self, error: rusqlite::Error) -> AuditError {
        AuditError::Read {
            log: self.log(),
            reason: error.to_string(),
        }
    }
}

impl AuditLog for SqliteAuditLog {
    fn append(&self, record: AuditRecord) -> Result<AuditEntry, AuditError> {
        let failed = |error: rusqlite::Error| AuditError::Append {
            log: self.log(),
            kind: record.event.kind(),
            reason: error.to_string(),
        };
        let mut connection = self.connection();
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let last: Option<(i64, String)> = transaction
            .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            .and_then(|mut select| {
                select
                    .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .map_err(failed)?;
        let (seq, prev) = match &last {
            Some((seq, hash)) => (
                u64::try_from(*seq).unwrap_or(0).saturating_add(1),
                hash.as_str(),
            ),
            None => (1, GENESIS),
        };
        let entry = AuditEntry::seal(record.clone(), seq, prev);
        transaction
            .prepare_cached(
                "INSERT INTO audit (seq, at, kind, actor, prev, hash, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut insert| {
                insert.execute(params![
                    i64::try_from(entry.seq).unwrap_or(i64::MAX),
                    format_at(&entry.at),
                    entry.event.kind(),
                    entry.actor,
                    entry.prev,
                    entry.hash,
                    entry.body,
                ])
            })
            .and_then(|_| transaction.commit())
            .map_err(failed)?;
        Ok(entry)
    }

    fn read(&self, from: u64, limit: usize) -> Result<Vec<AuditEntry>, AuditError> {
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<(i64, Vec<u8>)> = {
            let connection = self.connection();
            let mut select = connection
                .prepare_cached("SELECT seq, body FROM audit WHERE seq >= ?1 ORDER BY seq LIMIT ?2")
                .map_err(|error| self.read_failed(error))?;
            select
                .query_map(params![from, limit], |row| {
                    Ok((row.get(0)?, bytes(row.get_ref(1)?).unwrap_or_default()))
                })
                .and_then(Iterator::collect)
                .map_err(|error| self.read_failed(error))?
        };
        rows.into_iter()
            .map(|(seq, body)| {
                let seq = u64::try_from(seq).unwrap_or(0);
                let unreadable = |reason: String| Tampered {
                    seq,
                    problem: Problem::Body { reason },
                };
                let body = String::from_utf8(body)
                    .map_err(|_| unreadable("it is not UTF-8".to_owned()))?;
                let (entry, _) = AuditEntry::parse(&body).map_err(unreadable)?;
                Ok(entry)
            })
            .collect()
    }

    fn verify(&self) -> Result<AuditHead, AuditError> {
        let mut chain = Chain::default();
        // Every row, whatever its number (one renumbered below 1 is read first).
        let mut after: Option<i64> = None;
        loop {
            let page: Vec<(i64, StoredRow)> = {
                let connection = self.connection();
                let mut select = connection
                    .prepare_cached(
                        "SELECT seq, at, kind, actor, prev, hash, body FROM audit
                         WHERE ?1 IS NULL OR seq > ?1 ORDER BY seq LIMIT ?2",
                    )
                    .map_err(|error| self.read_failed(error))?;
                select
                    .query_map(params![after, PAGE], |row| {
                        let seq: i64 = row.get(0)?;
                        let text = |i| row.get_ref(i).map(|value| bytes(value).unwrap_or_default());
                        Ok((
                            seq,
                            StoredRow {
                                seq,
                                at: text(1)?,
                                kind: text(2)?,
                                actor: bytes(row.get_ref(3)?),
                                prev: text(4)?,
                                hash: text(5)?,
                                body: text(6)?,
                            },
                        ))
                    })
                    .and_then(Iterator::collect)
                    .map_err(|error| self.read_failed(error))?
            };
            let Some(&(last, _)) = page.last() else {
                return Ok(chain.head());
            };
            for (_, row) in &page {
                chain.check(row)?;
            }
            after = Some(last);
        }
    }
}

/// A column's stored bytes (`None` for NULL; numbers as their text).
fn bytes(value: ValueRef<'_>) -> Option<Vec<u8>> {
    match value {
        ValueRef::Null => None,
        ValueRef::Integer(number) => Some(number.to_string().into_bytes()),
        ValueRef::Real(number) => Some(number.to_string().into_bytes()),
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => Some(bytes.to_vec()),
    }
}
