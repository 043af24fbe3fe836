//! `SqliteStore`: journals in one SQLite file (feature `sqlite`).

mod journal;
mod schema;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};

use self::journal::{Encoded, checksum, read_head, renew_one, write_one};
use self::schema::{
    apply_settings, backfill_checksums, check_identity, migrate, read_pragma, run_statement,
};
use super::{
    Append, JournalEntry, Lease, ListingStore, RunStore, StoreError, WriteFault, check_entries,
    owner_is_gone,
};
use crate::definition::StepId;
use crate::run::RunId;

/// Journals in one SQLite file: durable across crashes and power loss.
///
/// The file is in WAL mode with `synchronous=FULL` (see the [module docs](super) for why
/// and what it costs); [`open`](Self::open) sets both, reads them back and refuses to
/// start if either did not take. The schema is versioned with `PRAGMA user_version` and
/// migrated on open; a file from a newer build is refused. Each append is one `IMMEDIATE`
/// transaction.
///
/// WAL needs every process using the file to be on one host (no network file systems).
/// There is no in-memory variant: SQLite keeps an in-memory database in journal mode
/// `memory`, never `wal`, so opening `":memory:"` fails with [`StoreError::Settings`];
/// use [`MemoryStore`](super::MemoryStore) instead.
///
/// One connection serves all threads, behind a mutex (a connection is `Send`, not
/// `Sync`): operations are serialized, which costs nothing for writes — SQLite allows
/// one writer at a time anyway.
///
/// ```no_run
/// use tradeflow::store::{RunStore, SqliteStore};
///
/// let store = SqliteStore::open("runs.db")?;
/// for run in store.unfinished_runs()? {
///     let journal = store.load(&run)?;
///     // … fold it and resume the run.
/// }
/// # Ok::<(), tradeflow::store::StoreError>(())
/// ```
pub struct SqliteStore {
    path: PathBuf,
    /// Shared with the audit log in the same file ([`SqliteStore::audit_log`]).
    connection: Arc<Mutex<Connection>>,
}

/// Options of a [`SqliteStore`], from [`SqliteStore::builder`].
#[derive(Debug, Clone)]
pub struct SqliteStoreBuilder {
    busy_timeout: Duration,
    create: bool,
}

impl SqliteStoreBuilder {
    /// How long an operation waits for another connection's lock before failing with
    /// [`WriteFault::Busy`]. Defaults to 5 seconds.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Whether a missing or empty file becomes a new store. Defaults to `true`; with
    /// `false` (to resume runs, say), only an existing tradeflow store opens.
    pub fn create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    /// Opens (or creates) the store at `path`; see [`SqliteStore::open`].
    ///
    /// # Errors
    /// As [`SqliteStore::open`]; without `create`, also [`StoreError::Open`] when the
    /// file does not exist and [`StoreError::NotAStore`] when it is not a tradeflow store.
    pub fn open(&self, path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let open_error = |source: rusqlite::Error| StoreError::Open {
            path: path.clone(),
            source: source.into(),
        };
        let flags = if self.create {
            OpenFlags::default()
        } else {
            OpenFlags::default() - OpenFlags::SQLITE_OPEN_CREATE
        };
        let mut connection = Connection::open_with_flags(&path, flags).map_err(open_error)?;
        check_identity(&path, &connection, self.create)?;
        connection
            .busy_timeout(self.busy_timeout)
            .map_err(open_error)?;
        apply_settings(
            &path,
            |sql| run_statement(&connection, sql),
            |pragma| read_pragma(&connection, pragma),
        )?;
        migrate(&path, &mut connection)?;
        backfill_checksums(&mut connection).map_err(open_error)?;
        Ok(SqliteStore {
            path,
            connection: Arc::new(Mutex::new(connection)),
        })
    }
}

impl Default for SqliteStoreBuilder {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
            create: true,
        }
    }
}

/// The query of the started runs whose record `$filter` (a `WHERE` clause on `runs`, or
/// `""`) admits, in start order; then the started journals whose run record is missing
/// (they are listed so that loading them reports the damage).
macro_rules! started_runs {
    ($filter:literal) => {
        concat!(
            r#"SELECT run_id FROM (
                 SELECT run_id, 0 AS orphan, started_seq AS n FROM runs "#,
            $filter,
            r#"
                 UNION ALL
                 SELECT heads.run_id, 1, 0 FROM heads JOIN events
                     ON events.run_id = heads.run_id AND events.seq = 0
                 WHERE heads.run_id NOT IN (SELECT run_id FROM runs)
                   AND events.body LIKE '{"type":"runStarted"%'
             ) ORDER BY orphan, n, run_id"#
        )
    };
}

impl SqliteStore {
    /// The run ids a query selects (its first column), in its order.
    fn run_ids(&self, sql: &str) -> Result<Vec<RunId>, StoreError> {
        let read_error = |source: rusqlite::Error| StoreError::Read {
            run: None,
            source: source.into(),
        };
        let connection = self.connection();
        let mut select = connection.prepare_cached(sql).map_err(read_error)?;
        select
            .query_map([], |row| Ok(RunId::from(row.get::<_, String>(0)?)))
            .and_then(Iterator::collect)
            .map_err(read_error)
    }

    /// Opens (or creates) the store at `path` with the default options.
    ///
    /// # Errors
    /// - [`StoreError::Open`] when the file cannot be opened or migrated.
    /// - [`StoreError::Settings`] when `journal_mode` does not read back `wal` or
    ///   `synchronous` does not read back `2` (`FULL`).
    /// - [`StoreError::Schema`] when the file's schema is newer than this build's.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::builder().open(path)
    }

    /// Options for opening a store.
    pub fn builder() -> SqliteStoreBuilder {
        SqliteStoreBuilder::default()
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The audit log in this store's file (its table `audit`, see [`crate::audit`]),
    /// for [`EngineBuilder::audit`](crate::engine::EngineBuilder::audit). It shares the
    /// store's connection and lock: an audit append and a journal append never
    /// interleave, and each audit append is its own committed, synced transaction.
    pub fn audit_log(&self) -> crate::audit::SqliteAuditLog {
        crate::audit::SqliteAuditLog::on(self.path.clone(), Arc::clone(&self.connection))
    }

    fn connection(&self) -> MutexGuard<'_, Connection> {
        // A panic inside a transaction drops it, which rolls it back: the connection is
        // sound even if the lock is poisoned.
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends in one transaction: one that is refused leaves the others; if a write or
    /// the commit itself fails, every append fails.
    fn write(&self, appends: &[Encoded<'_>], until: DateTime<Utc>) -> Vec<Result<(), StoreError>> {
        let failed = |source: &rusqlite::Error, append: &Encoded<'_>| StoreError::Write {
            run: append.run.clone(),
            step: first_step(append.entries),
            fault: fault(source),
            source: source.to_string().into(),
        };
        let mut connection = self.connection();
        let transaction = match connection.transaction_with_behavior(TransactionBehavior::Immediate)
        {
            Ok(transaction) => transaction,
            Err(error) => {
                return appends
                    .iter()
                    .map(|append| Err(failed(&error, append)))
                    .collect();
            }
        };
        // Each append is checked before anything of it is written, so a refused one
        // writes nothing. A write that fails (a full disk, an I/O error) fails them all:
        // the transaction is rolled back, and nothing of it is stored.
        let mut results: Vec<Result<(), StoreError>> = Vec::with_capacity(appends.len());
        for append in appends {
            match write_one(&transaction, append, until) {
                Ok(result) => results.push(result),
                Err(error) => {
                    drop(transaction);
                    return appends
                        .iter()
                        .map(|append| Err(failed(&error, append)))
                        .collect();
                }
            }
        }
        if let Err(error) = transaction.commit() {
            return appends
                .iter()
                .zip(results)
                .map(|(append, result)| result.and(Err(failed(&error, append))))
                .collect();
        }
        results
    }

    /// Reads run `run`'s journal, checking every entry's position and checksum and the
    /// journal's head.
    fn read(&self, run: &RunId) -> Result<Vec<JournalEntry>, StoreError> {
        let read_error = |source: rusqlite::Error| StoreError::Read {
            run: Some(run.clone()),
            source: source.into(),
        };
        let (rows, head, started) = {
            let connection = self.connection();
            let mut select = connection
                .prepare_cached("SELECT seq, body, crc FROM events WHERE run_id = ?1 ORDER BY seq")
                .map_err(read_error)?;
            let rows: Vec<(i64, String, Option<i64>)> = select
                .query_map([run.as_str()], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .and_then(Iterator::collect)
                .map_err(read_error)?;
            let head = read_head(&connection, run).map_err(read_error)?;
            let started = connection
                .prepare_cached("SELECT 1 FROM runs WHERE run_id = ?1")
                .and_then(|mut select| select.exists([run.as_str()]))
                .map_err(read_error)?;
            (rows, head, started)
        };
        let damaged = |position: usize, problem: String| StoreError::Damaged {
            run: run.clone(),
            position,
            problem,
        };
        let mut crc = 0;
        let mut entries = Vec::with_capacity(rows.len());
        for (position, (seq, body, stored)) in rows.into_iter().enumerate() {
            if usize::try_from(seq).ok() != Some(position) {
                return Err(damaged(
                    position,
                    format!("entry {seq} where entry {position} belongs (an entry is missing)"),
                ));
            }
            crc = checksum(run, seq, crc, &body);
            if stored != Some(i64::from(crc)) {
                return Err(damaged(
                    position,
                    "its checksum does not match (changed, added or reordered)".to_owned(),
                ));
            }
            let entry: JournalEntry =
                serde_json::from_str(&body).map_err(|source| StoreError::Corrupt {
                    run: run.clone(),
                    position,
                    source: source.into(),
                })?;
            if position == 0 && matches!(entry, JournalEntry::RunStarted { .. }) && !started {
                return Err(damaged(0, "the run's record is missing".to_owned()));
            }
            entries.push(entry);
        }
        match head {
            None if entries.is_empty() => Ok(entries),
            None => Err(damaged(
                entries.len().saturating_sub(1),
                "the journal's head is missing".to_owned(),
            )),
            Some((last, last_crc)) => {
                let count = entries.len();
                if usize::try_from(last + 1).ok() != Some(count) || last_crc != i64::from(crc) {
                    Err(damaged(
                        count,
                        format!(
                            "the journal ends at entry {}, but its head says {last}",
                            count as i64 - 1
                        ),
                    ))
                } else {
                    Ok(entries)
                }
            }
        }
    }
}

impl SqliteStore {
    /// Encodes `entries` for `run` (checked first, so nothing is written for a bad one).
    fn encode<'a>(
        run: &'a RunId,
        lease: Option<&'a Lease>,
        entries: &'a [JournalEntry],
    ) -> Result<Encoded<'a>, StoreError> {
        check_entries(run, entries)?;
        let bodies = entries
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| StoreError::Write {
                run: run.clone(),
                step: first_step(entries),
                fault: WriteFault::Other,
                source: source.into(),
            })?;
        Ok(Encoded {
            run,
            lease,
            entries,
            bodies,
        })
    }
}

impl RunStore for SqliteStore {
    fn append(&self, run: &RunId, entries: &[JournalEntry]) -> Result<(), StoreError> {
        let encoded = Self::encode(run, None, entries)?;
        if entries.is_empty() {
            return Ok(());
        }
        self.write(std::slice::from_ref(&encoded), DateTime::<Utc>::MIN_UTC)
            .pop()
            .unwrap_or(Ok(()))
    }

    fn load(&self, run: &RunId) -> Result<Vec<JournalEntry>, StoreError> {
        self.read(run)
    }

    fn unfinished_runs(&self) -> Result<Vec<RunId>, StoreError> {
        self.run_ids(started_runs!("WHERE finished = 0"))
    }

    fn rewarded_runs(&self) -> Result<Vec<RunId>, StoreError> {
        self.run_ids(
            "SELECT rewarded.run_id FROM rewarded LEFT JOIN runs USING (run_id)
             ORDER BY runs.started_seq, rewarded.run_id",
        )
    }

    fn started_runs(&self) -> Result<Vec<RunId>, StoreError> {
        self.run_ids(started_runs!(""))
    }

    fn commit(&self, appends: &[Append<'_>], until: DateTime<Utc>) -> Vec<Result<(), StoreError>> {
        let mut results: Vec<Option<Result<(), StoreError>>> = Vec::with_capacity(appends.len());
        let mut encoded = Vec::with_capacity(appends.len());
        for append in appends {
            match Self::encode(append.lease.run(), Some(append.lease), append.entries) {
                Ok(one) if one.entries.is_empty() => results.push(Some(Ok(()))),
                Ok(one) => {
                    results.push(None);
                    encoded.push(one);
                }
                Err(error) => results.push(Some(Err(error))),
            }
        }
        let mut written = self.write(&encoded, until).into_iter();
        results
            .into_iter()
            .map(|result| result.unwrap_or_else(|| written.next().unwrap_or(Ok(()))))
            .collect()
    }

    fn claim(
        &self,
        run: &RunId,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Lease, StoreError> {
        let failed = |source: rusqlite::Error| StoreError::Write {
            run: run.clone(),
            step: None,
            fault: fault(&source),
            source: source.into(),
        };
        let mut connection = self.connection();
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let held: Option<(Option<String>, i64, i64)> = transaction
            .prepare_cached("SELECT owner, epoch, lease_until FROM runs WHERE run_id = ?1")
            .and_then(|mut select| {
                select
                    .query_row([run.as_str()], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                    })
                    .optional()
            })
            .map_err(failed)?;
        let Some((held_by, epoch, ends)) = held else {
            return Err(StoreError::NoRun { run: run.clone() });
        };
        let epoch = match held_by {
            Some(held_by) if held_by == owner => epoch,
            Some(held_by) if ends >= now.timestamp_millis() && !owner_is_gone(&held_by) => {
                return Err(StoreError::Held {
                    run: run.clone(),
                    owner: held_by,
                    until: DateTime::from_timestamp_millis(ends)
                        .unwrap_or(DateTime::<Utc>::MAX_UTC),
                });
            }
            _ => epoch.saturating_add(1),
        };
        transaction
            .execute(
                "UPDATE runs SET owner = ?2, epoch = ?3, lease_until = ?4 WHERE run_id = ?1",
                params![run.as_str(), owner, epoch, until.timestamp_millis()],
            )
            .and_then(|_| transaction.commit())
            .map_err(failed)?;
        Ok(Lease::new(
            run.clone(),
            owner,
            u64::try_from(epoch).unwrap_or(0),
        ))
    }

    fn renew(&self, leases: &[&Lease], until: DateTime<Utc>) -> Vec<Result<(), StoreError>> {
        let failed = |lease: &Lease, source: &rusqlite::Error| StoreError::Write {
            run: lease.run().clone(),
            step: None,
            fault: fault(source),
            source: source.to_string().into(),
        };
        let mut connection = self.connection();
        let transaction = match connection.transaction_with_behavior(TransactionBehavior::Immediate)
        {
            Ok(transaction) => transaction,
            Err(error) => {
                return leases
                    .iter()
                    .map(|lease| Err(failed(lease, &error)))
                    .collect();
            }
        };
        let results: Vec<Result<(), StoreError>> = leases
            .iter()
            .map(|lease| {
                renew_one(&transaction, lease, until).map_err(|error| failed(lease, &error))?
            })
            .collect();
        match transaction.commit() {
            Ok(()) => results,
            Err(error) => leases
                .iter()
                .map(|lease| Err(failed(lease, &error)))
                .collect(),
        }
    }

    fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let run = lease.run();
        self.connection()
            .prepare_cached(
                "UPDATE runs SET owner = NULL WHERE run_id = ?1 AND owner = ?2 AND epoch = ?3",
            )
            .and_then(|mut update| {
                update.execute(params![run.as_str(), lease.owner(), lease.epoch() as i64])
            })
            .map(|_| ())
            .map_err(|source| StoreError::Write {
                run: run.clone(),
                step: None,
                fault: fault(&source),
                source: source.into(),
            })
    }

    fn put_definition(
        &self,
        id: &str,
        version: &str,
        definition_json: &str,
    ) -> Result<(), StoreError> {
        let write = || -> rusqlite::Result<Option<String>> {
            let mut connection = self.connection();
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let kept = select_definition(&transaction, id, version)?;
            if kept.is_none() {
                transaction.execute(
                    "INSERT INTO definitions (id, version, body) VALUES (?1, ?2, ?3)",
                    params![id, version, definition_json],
                )?;
            }
            transaction.commit()?;
            Ok(kept)
        };
        match write() {
            Ok(Some(kept)) if kept != definition_json => Err(StoreError::Conflict {
                id: id.to_owned(),
                version: version.to_owned(),
            }),
            Ok(_) => Ok(()),
            Err(source) => Err(StoreError::WriteDefinition {
                id: id.to_owned(),
                version: version.to_owned(),
                fault: fault(&source),
                source: source.into(),
            }),
        }
    }

    fn definition(&self, id: &str, version: &str) -> Result<Option<String>, StoreError> {
        select_definition(&self.connection(), id, version).map_err(|source| StoreError::Read {
            run: None,
            source: source.into(),
        })
    }
}

impl ListingStore for SqliteStore {}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn select_definition(
    connection: &Connection,
    id: &str,
    version: &str,
) -> rusqlite::Result<Option<String>> {
    connection
        .prepare_cached("SELECT body FROM definitions WHERE id = ?1 AND version = ?2")?
        .query_row([id, version], |row| row.get(0))
        .optional()
}

/// The step a write error names: that of the first entry that has one.
fn first_step(entries: &[JournalEntry]) -> Option<StepId> {
    entries.iter().find_map(JournalEntry::step_id).cloned()
}

/// Classifies a failed write.
fn fault(error: &rusqlite::Error) -> WriteFault {
    match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => WriteFault::Busy,
        Some(ErrorCode::DiskFull) => WriteFault::Full,
        Some(ErrorCode::SystemIoFailure) => WriteFault::Io,
        _ => WriteFault::Other,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use serde_json::json;

    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::UNIX_EPOCH
    }

    /// A temporary directory for one test, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir()
                .join(format!("tradeflow-sqlite-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn settings_that_do_not_read_back_refuse_to_start() {
        let path = Path::new("runs.db");
        let mut set = Vec::new();
        let read_back = |journal_mode: &'static str, synchronous: &'static str| {
            move |pragma: &str| {
                Ok(match pragma {
                    "journal_mode" => journal_mode,
                    _ => synchronous,
                }
                .to_owned())
            }
        };
        let ok = apply_settings(
            path,
            |sql| {
                set.push(sql.to_owned());
                Ok(())
            },
            read_back("WAL", "2"),
        );
        assert!(ok.is_ok(), "{ok:?}");
        assert_eq!(
            set,
            ["PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL"]
        );

        let error = apply_settings(path, |_| Ok(()), read_back("delete", "2")).unwrap_err();
        assert!(matches!(
            &error,
            StoreError::Settings { pragma: "journal_mode", wanted, got, .. }
                if wanted == "wal" && got == "delete"
        ));
        let error = apply_settings(path, |_| Ok(()), read_back("wal", "1")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "store `runs.db`: `PRAGMA synchronous` reads back `1`, not `2`"
        );
    }

    #[test]
    fn write_faults_are_classified() {
        let failure = |code| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        assert_eq!(
            fault(&failure(rusqlite::ffi::SQLITE_BUSY)),
            WriteFault::Busy
        );
        assert_eq!(
            fault(&failure(rusqlite::ffi::SQLITE_LOCKED)),
            WriteFault::Busy
        );
        assert_eq!(
            fault(&failure(rusqlite::ffi::SQLITE_FULL)),
            WriteFault::Full
        );
        assert_eq!(fault(&failure(rusqlite::ffi::SQLITE_IOERR)), WriteFault::Io);
        assert_eq!(
            fault(&failure(rusqlite::ffi::SQLITE_CONSTRAINT)),
            WriteFault::Other
        );
    }

    #[test]
    fn a_full_disk_fails_the_append_and_keeps_nothing_of_it() {
        let dir = TempDir::new("full");
        let store = SqliteStore::open(dir.0.join("runs.db")).unwrap();
        let run = RunId::from("r1");
        let started = JournalEntry::RunStarted {
            run_id: run.clone(),
            workflow_id: "w".into(),
            version: "1".into(),
            input: json!({}),
            seed: 1,
            at: at(),
        };
        store.append(&run, std::slice::from_ref(&started)).unwrap();
        // Cap the file at its current size: the next pages cannot be allocated.
        {
            let connection = store.connection();
            let pages: i64 = connection
                .query_row("PRAGMA page_count", [], |row| row.get(0))
                .unwrap();
            connection
                .pragma_update(None, "max_page_count", pages)
                .unwrap();
        }
        let big = "x".repeat(64 * 1024);
        let batch: Vec<JournalEntry> = (0..4)
            .map(|i| JournalEntry::StepCompleted {
                step_id: StepId::from(format!("s{i}")),
                output: json!(big),
                attempts: 1,
                agent_id: None,
                agent_ids: None,
                approved_by: None,
                at: at(),
            })
            .collect();
        let error = store.append(&run, &batch).unwrap_err();
        assert!(
            matches!(
                &error,
                StoreError::Write { run: r, step: Some(step), fault: WriteFault::Full, .. }
                    if r == "r1" && step == "s0"
            ),
            "{error:?}"
        );
        assert_eq!(store.load(&run).unwrap(), [started]);
    }
}
