//! The SQLite store's schema and settings: migrations, the durability pragmas read back
//! on open, the check that a file is a tradeflow store, and the checksums computed for
//! journals written before they existed.

use std::path::Path;

use rusqlite::{Connection, ErrorCode, TransactionBehavior, params};

use super::journal::checksum;
use crate::run::RunId;
use crate::store::StoreError;

/// The schema, one migration per version: migration `i` takes `PRAGMA user_version`
/// from `i` to `i + 1`. Only ever append to this list.
pub(super) const MIGRATIONS: &[&str] = &[
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
    // 2: owners, leases and fencing epochs on runs; a chained checksum on every entry,
    // and each journal's head (its last entry and checksum), so that damage is found on
    // read. Rows written before have their checksums computed by `backfill_checksums`.
    "ALTER TABLE runs ADD COLUMN owner TEXT;
     ALTER TABLE runs ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE runs ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE events ADD COLUMN crc INTEGER;
     CREATE TABLE heads (
         run_id   TEXT PRIMARY KEY,
         last_seq INTEGER NOT NULL,
         last_crc INTEGER NOT NULL
     );
     PRAGMA application_id = 1953653350;",
    // 3: the runs with a learned reward, which an engine reads to rebuild its decision
    // model on open (no journal before this version has one).
    "CREATE TABLE rewarded (run_id TEXT PRIMARY KEY);",
    // 4: the audit log's hash chain, append-only (triggers refuse UPDATE, DELETE and any
    // INSERT but the next entry); see `crate::audit`.
    crate::audit::SCHEMA,
];

/// `PRAGMA application_id` of a tradeflow store (`tflw` in ASCII).
pub(super) const APPLICATION_ID: i64 = 1_953_653_350;

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

/// Runs one statement, reading and dropping any rows it returns (`PRAGMA x = y` may).
pub(super) fn run_statement(connection: &Connection, sql: &str) -> rusqlite::Result<()> {
    let mut statement = connection.prepare(sql)?;
    let mut rows = statement.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}

/// Reads a pragma's value as text (`synchronous` reads back as a number).
pub(super) fn read_pragma(connection: &Connection, pragma: &str) -> rusqlite::Result<String> {
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
pub(super) fn apply_settings(
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

/// Refuses a file that is not a tradeflow store (another program's database, not SQLite
/// at all) and, without `create`, an empty one, before anything is written to it.
pub(super) fn check_identity(
    path: &Path,
    connection: &Connection,
    create: bool,
) -> Result<(), StoreError> {
    let not_a_store = |why: &str| StoreError::NotAStore {
        path: path.to_path_buf(),
        why: why.to_owned(),
    };
    let read = |sql: &str| connection.query_row(sql, [], |row| row.get::<_, i64>(0));
    let found = read("PRAGMA user_version").and_then(|version| {
        Ok((
            version,
            read("SELECT count(*) FROM sqlite_master")?,
            read("PRAGMA application_id")?,
        ))
    });
    let (version, tables, application) = match found {
        Ok(found) => found,
        Err(error) if error.sqlite_error_code() == Some(ErrorCode::NotADatabase) => {
            return Err(not_a_store("the file is not an SQLite database"));
        }
        Err(source) => {
            return Err(StoreError::Open {
                path: path.to_path_buf(),
                source: source.into(),
            });
        }
    };
    match (version, tables) {
        (0, 0) if create => Ok(()),
        (0, 0) => Err(not_a_store("it is empty")),
        (0, _) => Err(not_a_store("it is another program's SQLite database")),
        // A newer schema is refused as such, by `migrate`.
        (2.., _) if version <= MIGRATIONS.len() as i64 && application != APPLICATION_ID => {
            Err(not_a_store("its application id is another program's"))
        }
        _ => Ok(()),
    }
}

/// Computes the checksums and heads of journals written before schema version 2.
pub(super) fn backfill_checksums(connection: &mut Connection) -> rusqlite::Result<()> {
    let pending = connection
        .prepare("SELECT 1 FROM events WHERE crc IS NULL LIMIT 1")?
        .exists([])?;
    if !pending {
        return Ok(());
    }
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let runs: Vec<String> = transaction
        .prepare("SELECT DISTINCT run_id FROM events")?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for run in runs {
        let rows: Vec<(i64, String)> = transaction
            .prepare_cached("SELECT seq, body FROM events WHERE run_id = ?1 ORDER BY seq")?
            .query_map([&run], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let id = RunId::from(run.as_str());
        let mut crc = 0;
        let mut last = -1;
        for (seq, body) in rows {
            crc = checksum(&id, seq, crc, &body);
            last = seq;
            transaction
                .prepare_cached("UPDATE events SET crc = ?3 WHERE run_id = ?1 AND seq = ?2")?
                .execute(params![run, seq, i64::from(crc)])?;
        }
        transaction
            .prepare_cached(
                "INSERT OR REPLACE INTO heads (run_id, last_seq, last_crc) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![run, last, i64::from(crc)])?;
    }
    transaction.commit()
}

/// Brings the schema to the newest version, one transaction per migration.
pub(super) fn migrate(path: &Path, connection: &mut Connection) -> Result<(), StoreError> {
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
