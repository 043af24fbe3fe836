//! The SQLite store of `run` and `resume`, and the one `runs` and `show` read.

use std::sync::Arc;

use tradeflow::store::RunStore;
#[cfg(feature = "sqlite")]
use tradeflow::store::{SqliteStore, StoreError};

use crate::Problems;
use crate::files::chain;

/// A store, and the audit log in its file.
pub(crate) type Audited = (Arc<dyn RunStore>, Arc<dyn tradeflow::audit::AuditLog>);

/// Opens the SQLite store at `path`, creating it when `create` says so.
#[cfg(feature = "sqlite")]
pub(crate) fn open_sqlite(path: &str, create: bool) -> Result<SqliteStore, Problems> {
    match SqliteStore::builder().create(create).open(path) {
        Ok(store) => Ok(store),
        // The error names the path already (`cannot open store `PATH``); its source says
        // why.
        Err(StoreError::Open { source, .. }) => Err(vec![format!(
            "{path}: cannot open the store: {}",
            chain(&*source)
        )]),
        Err(StoreError::NotAStore { why, .. }) => Err(vec![format!(
            "{path}: cannot open the store: it is not a tradeflow store: {why}"
        )]),
        Err(error) => Err(vec![format!("{path}: {}", chain(&error))]),
    }
}

/// Opens the existing SQLite store at `path` to read it (`runs`, `show`): a missing file
/// is `no such store`, and nothing is created.
#[cfg(feature = "sqlite")]
pub(crate) fn inspect(path: &str, verb: &str) -> Result<SqliteStore, Problems> {
    if !std::path::Path::new(path).exists() {
        return Err(vec![format!(
            "{path}: no such store ({verb} reads the store of an earlier `run`)"
        )]);
    }
    open_sqlite(path, false)
}

/// Without the `sqlite` feature there is no store to read.
#[cfg(not(feature = "sqlite"))]
pub(crate) fn inspect(path: &str, _verb: &str) -> Result<tradeflow::store::MemoryStore, Problems> {
    Err(no_sqlite(path))
}

/// Opens the SQLite store at `path` (as [`open_sqlite`]) with the audit log in its file, which
/// `run` and `resume` append to and `audit verify` checks.
#[cfg(feature = "sqlite")]
pub(crate) fn open_audited(path: &str, create: bool) -> Result<Audited, Problems> {
    let store = open_sqlite(path, create)?;
    let audit = Arc::new(store.audit_log());
    Ok((Arc::new(store), audit))
}

/// Without the `sqlite` feature there is no store to open.
#[cfg(not(feature = "sqlite"))]
pub(crate) fn open_audited(path: &str, _create: bool) -> Result<Audited, Problems> {
    Err(no_sqlite(path))
}

#[cfg(not(feature = "sqlite"))]
fn no_sqlite(path: &str) -> Problems {
    vec![format!(
        "{path}: this build has no SQLite store (build with the `sqlite` feature)"
    )]
}

/// `PATH: error and its sources`, for a store's errors.
pub(crate) fn problem(path: &str, error: &dyn std::error::Error) -> Problems {
    vec![format!("{path}: {}", chain(error))]
}
