//! `SqliteStore`: journals in one SQLite file (feature `sqlite`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};

use super::{JournalEntry, RunStore, StoreError, WriteFault, check_entries};
use crate::definition::StepId;
use crate::run::RunId;

/// The schema, one migration per version: migration `i` takes `PRAGMA user_version`
/// from `i` to `i + 1`. Only ever append to this list.
const MIGRATIONS: &[&str] = &[
    // 1: runs (for listing unfinished ones in start order), their events, definitions.
    "CREATE TABLE runs (
         run_id      TEXT PRIMARY KEY,
         workflow_id TEXT NOT NULL,
         version     TEXT NOT NULL,
         started_seq INTEGER NOT NULL UNIQUE,
         finished    INTEGER NOT NULL DEFAULT 0
     );
     CREATE INDEX runs_unfinished ON runs (started_seq) WHERE finished = 0;
     CREATE TABLE events (
         run_id TEXT NOT NULL,
         seq    INTEGER NOT NULL,
         body   TEXT NOT NULL,
         PRIMARY KEY (run_id, seq)
     );
     CREATE TABLE definitions (
         id      TEXT NOT NULL,
         version TEXT NOT NULL,
         body    TEXT NOT NULL,
         PRIMARY KEY (id, version)
     );",
];

/// A setting the store's durability depends on: set on open, then read back.
struct Setting {
    pragma: &'static str,
    set: &'static str,
    wanted: &'static str,
}

const SETTINGS: [Setting; 2] = [
    // Readers never block the writer, and a commit is one append to the WAL.
    Setting {
        pragma: "journal_mode",
        set: "PRAGMA journal_mode = WAL",
        wanted: "wal",
    },
    // FULL (2) syncs the WAL at every commit: nothing committed is lost on power loss.
    Setting {
        pragma: "synchronous",
        set: "PRAGMA synchronous = FULL",
        wanted: "2",
    },
];

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
    connection: Mutex<Connection>,
}

/// Options of a [`SqliteStore`], from [`SqliteStore::builder`].
#[derive(Debug, Clone)]
pub struct SqliteStoreBuilder {
    busy_timeout: Duration,
}

impl SqliteStoreBuilder {
    /// How long an operation waits for another connection's lock before failing with
    /// [`WriteFault::Busy`]. Defaults to 5 seconds.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Opens (or creates) the store at `path`; see [`SqliteStore::open`].
    ///
    /// # Errors
    /// As [`SqliteStore::open`].
    pub fn open(&self, path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let open_error = |source: rusqlite::Error| StoreError::Open {
            path: path.clone(),
            source: source.into(),
        };
        let mut connection = Connection::open(&path).map_err(open_error)?;
        connection
            .busy_timeout(self.busy_timeout)
            .map_err(open_error)?;
        apply_settings(
            &path,
            |sql| run_statement(&connection, sql),
            |pragma| read_pragma(&connection, pragma),
        )?;
        migrate(&path, &mut connection)?;
        Ok(SqliteStore {
            path,
            connection: Mutex::new(connection),
        })
    }
}

impl Default for SqliteStoreBuilder {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
        }
    }
}

impl SqliteStore {
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

    fn connection(&self) -> MutexGuard<'_, Connection> {
        // A panic inside a transaction drops it, which rolls it back: the connection is
        // sound even if the lock is poisoned.
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, run: &RunId, bodies: &[(&JournalEntry, String)]) -> rusqlite::Result<()> {
        let mut connection = self.connection();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut seq: i64 = transaction.query_row(
            "SELECT COALESCE(MAX(seq) + 1, 0) FROM events WHERE run_id = ?1",
            [run.as_str()],
            |row| row.get(0),
        )?;
        {
            let mut insert = transaction
                .prepare_cached("INSERT INTO events (run_id, seq, body) VALUES (?1, ?2, ?3)")?;
            for (entry, body) in bodies {
                insert.execute(params![run.as_str(), seq, body])?;
                seq += 1;
                match entry {
                    JournalEntry::RunStarted {
                        workflow_id,
                        version,
                        ..
                    } => {
                        transaction
                            .prepare_cached(
                                "INSERT OR IGNORE INTO runs (run_id, workflow_id, version, started_seq)
                                 VALUES (?1, ?2, ?3,
                                         (SELECT COALESCE(MAX(started_seq) + 1, 0) FROM runs))",
                            )?
                            .execute(params![run.as_str(), workflow_id, version])?;
                    }
                    JournalEntry::RunEnded { .. } => {
                        transaction
                            .prepare_cached("UPDATE runs SET finished = 1 WHERE run_id = ?1")?
                            .execute([run.as_str()])?;
                    }
                    _ => {}
                }
            }
        }
        // Dropping the transaction on any `?` above rolls it back: all or nothing.
        transaction.commit()
    }
}

impl RunStore for SqliteStore {
    fn append(&self, run: &RunId, entries: &[JournalEntry]) -> Result<(), StoreError> {
        check_entries(run, entries)?;
        if entries.is_empty() {
            return Ok(());
        }
        // Encode before taking the lock, to hold it only for the transaction.
        let bodies = entries
            .iter()
            .map(|entry| serde_json::to_string(entry).map(|body| (entry, body)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| StoreError::Write {
                run: run.clone(),
                step: first_step(entries),
                fault: WriteFault::Other,
                source: source.into(),
            })?;
        self.write(run, &bodies)
            .map_err(|source| StoreError::Write {
                run: run.clone(),
                step: first_step(entries),
                fault: fault(&source),
                source: source.into(),
            })
    }

    fn load(&self, run: &RunId) -> Result<Vec<JournalEntry>, StoreError> {
        let read_error = |source: rusqlite::Error| StoreError::Read {
            run: Some(run.clone()),
            source: source.into(),
        };
        let rows: Vec<(i64, String)> = {
            let connection = self.connection();
            let mut select = connection
                .prepare_cached("SELECT seq, body FROM events WHERE run_id = ?1 ORDER BY seq")
                .map_err(read_error)?;
            select
                .query_map([run.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))
                .and_then(Iterator::collect)
                .map_err(read_error)?
        };
        rows.into_iter()
            .map(|(seq, body)| {
                serde_json::from_str(&body).map_err(|source| StoreError::Corrupt {
                    run: run.clone(),
                    position: usize::try_from(seq).unwrap_or(usize::MAX),
                    source: source.into(),
                })
            })
            .collect()
    }

    fn unfinished_runs(&self) -> Result<Vec<RunId>, StoreError> {
        let read_error = |source: rusqlite::Error| StoreError::Read {
            run: None,
            source: source.into(),
        };
        let connection = self.connection();
        let mut select = connection
            .prepare_cached("SELECT run_id FROM runs WHERE finished = 0 ORDER BY started_seq")
            .map_err(read_error)?;
        select
            .query_map([], |row| Ok(RunId::from(row.get::<_, String>(0)?)))
            .and_then(Iterator::collect)
            .map_err(read_error)
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

/// Runs one statement, reading and dropping any rows it returns (`PRAGMA x = y` may).
fn run_statement(connection: &Connection, sql: &str) -> rusqlite::Result<()> {
    let mut statement = connection.prepare(sql)?;
    let mut rows = statement.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}

/// Reads a pragma's value as text (`synchronous` reads back as a number).
fn read_pragma(connection: &Connection, pragma: &str) -> rusqlite::Result<String> {
    connection.query_row(&format!("PRAGMA {pragma}"), [], |row| {
        Ok(match row.get::<_, rusqlite::types::Value>(0)? {
            rusqlite::types::Value::Integer(value) => value.to_string(),
            rusqlite::types::Value::Text(text) => text,
            other => format!("{other:?}"),
        })
    })
}

/// Sets each of [`SETTINGS`] with `set`, reads it back with `read`, and refuses any that
/// did not take (`journal_mode` is compared without case).
fn apply_settings(
    path: &Path,
    mut set: impl FnMut(&str) -> rusqlite::Result<()>,
    mut read: impl FnMut(&str) -> rusqlite::Result<String>,
) -> Result<(), StoreError> {
    let open_error = |source: rusqlite::Error| StoreError::Open {
        path: path.to_path_buf(),
        source: source.into(),
    };
    for setting in &SETTINGS {
        set(setting.set).map_err(open_error)?;
        let got = read(setting.pragma).map_err(open_error)?;
        if !got.eq_ignore_ascii_case(setting.wanted) {
            return Err(StoreError::Settings {
                path: path.to_path_buf(),
                pragma: setting.pragma,
                wanted: setting.wanted.to_owned(),
                got,
            });
        }
    }
    Ok(())
}

/// Brings the schema to the newest version, one transaction per migration.
fn migrate(path: &Path, connection: &mut Connection) -> Result<(), StoreError> {
    let open_error = |source: rusqlite::Error| StoreError::Open {
        path: path.to_path_buf(),
        source: source.into(),
    };
    let supported = MIGRATIONS.len() as i64;
    let found: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(open_error)?;
    if found > supported {
        return Err(StoreError::Schema {
            path: path.to_path_buf(),
            found,
            supported,
        });
    }
    for (version, migration) in (1..)
        .zip(MIGRATIONS)
        .skip(usize::try_from(found).unwrap_or(0))
    {
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(open_error)?;
        transaction
            .execute_batch(migration)
            .and_then(|()| transaction.pragma_update(None, "user_version", version))
            .map_err(open_error)?;
        transaction.commit().map_err(open_error)?;
    }
    Ok(())
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
