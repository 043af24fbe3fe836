//! Durable run state: journals of runs, and the stores that keep them.
//!
//! # Journal
//! A run's state is never updated in place. Everything that happens to it — started with
//! its input and definition version, a call started with its attempt, agent and
//! idempotency key, a step completed with its output, failed, skipped, waiting for
//! approval, answered, a recovery decided, paused, resumed, cancelled, ended — is a
//! [`JournalEntry`] appended to the run's journal. A store only appends and reads back;
//! nothing it holds is ever rewritten, so a crash can cost at most the append in
//! progress, never what was written before.
//!
//! # Fold
//! The state of a run is the fold of its journal: [`RunState::fold`] replays the entries
//! in order, checking their grammar (one `runStarted` first, nothing after `runEnded`).
//! It is one pure function, so the state the engine resumes from after a crash is the
//! state it would have had, and it is tested on its own. The calls a crash interrupted
//! are in [`StepState::in_flight`] with their idempotency keys: the engine re-makes them
//! with the same keys, so an agent that honours the key acts at most once.
//!
//! # Stores
//! [`RunStore`] is what the engine journals to: append a run's entries atomically, load
//! a run, list the runs that have not ended, keep workflow definitions by id and
//! version. Stores check no grammar (the fold does); they do check that every entry
//! reads back as written. Two implementations, held to one conformance suite:
//! - [`MemoryStore`]: nothing survives the process (for tests; an engine built without a
//!   store journals nothing at all).
//! - `SqliteStore` (feature `sqlite`, on by default): one SQLite file, in WAL mode, with
//!   `synchronous=FULL`; its schema is versioned (`PRAGMA user_version`) and migrated on
//!   open.
//!
//! # Drawing
//! [`RunState::gantt`] draws a run's steps on its clock as a Mermaid `gantt` chart, from
//! the times the fold keeps for each step ([`StepState::started_at`],
//! [`StepState::ended_at`]).
//!
//! # Listing
//! Stores that can list every run they hold implement [`ListingStore`] (both of these
//! do); [`list_runs`] lists them newest first, each with its [`RunSummary`], kept by a
//! [`RunFilter`] (status, workflow, limit). The engine never lists runs.
//!
//! # Durability and its cost
//! Measured with this crate's SQLite (bundled, WAL): a committed transaction survives a
//! process crash (`kill -9`) under any `synchronous` setting, but with `NORMAL` the last
//! commits can be lost on power loss or an OS crash (the file never corrupts). `FULL`
//! syncs the WAL on every commit and loses nothing, which is what a trading journal
//! needs: a lost `stepCompleted` for an order that was placed would place it again. The
//! price is throughput: 3,400–6,800 commits per second with `FULL` against
//! 66,000–109,000 with `NORMAL`. 258 random `kill -9` of a 50-step workflow journaled
//! this way lost no step, corrupted nothing and re-ran no committed step; a side effect
//! made outside the transaction was repeated at most once per kill, which is why calls
//! carry idempotency keys.
//!
//! # Throughput: group commit
//! Each [`append`](RunStore::append) is one transaction, so its cost is one sync,
//! however many entries it holds. The engine groups what a run journals in one wake-up
//! into one append, made when the run would otherwise wait, and at the latest before an
//! agent is called: 100 concurrent steps' completions and the next 100 starts are one
//! sync, and a chain needs one per step (a step's completion travels with the next
//! step's start). See `docs/performance.md` for the numbers.
//!
//! # Example
//! ```
//! # use serde_json::json;
//! # use tradeflow::run::RunStatus;
//! use tradeflow::run::RunId;
//! use tradeflow::store::{JournalEntry, MemoryStore, RunState, RunStore};
//!
//! let store = MemoryStore::new();
//! let run = RunId::from("run-1");
//! let at = "2026-01-05T09:00:00Z".parse()?;
//! store.append(&run, &[JournalEntry::RunStarted {
//!     run_id: run.clone(), workflow_id: "momentum".into(), version: "3".into(),
//!     input: json!({"symbols": ["AAPL"]}), seed: 42, at,
//! }])?;
//! assert_eq!(store.unfinished_runs()?, [run.clone()]);
//!
//! store.append(&run, &[
//!     JournalEntry::StepSkipped { step_id: "trade".into(), reason: "market closed".into(), at },
//!     JournalEntry::RunEnded { status: RunStatus::Completed, error: None, at },
//! ])?;
//! let state = RunState::fold(&store.load(&run)?)?;
//! assert!(state.is_finished());
//! assert!(store.unfinished_runs()?.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::error::Error as StdError;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::definition::StepId;
use crate::run::RunId;

mod gantt;
mod journal;
mod lease;
mod listing;
mod memory;
#[cfg(feature = "sqlite")]
mod sqlite;
mod state;

pub use journal::JournalEntry;
pub use lease::Lease;
pub(crate) use lease::{new_owner, owner_is_gone};
pub use listing::{Listing, ListingStore, RunFilter, RunSummary, UnreadableRun, list_runs};
pub use memory::MemoryStore;
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteStore, SqliteStoreBuilder};
pub use state::{Answer, DecisionState, FoldError, InFlightCall, RunState, StepState};

/// Where runs are journaled. Implementations must be usable from many threads at once.
///
/// Every operation is synchronous and short (one transaction at most), and may be called
/// from many threads at once; a store serializes what it must.
pub trait RunStore: Send + Sync + fmt::Debug {
    /// Appends entries to run `run`'s journal atomically (one transaction): all or none.
    /// An empty slice appends nothing.
    ///
    /// A `runStarted` entry lists the run among [`unfinished_runs`](Self::unfinished_runs)
    /// (the first one only); a `runEnded` entry takes it off.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for an entry that would not read back as written (nothing
    /// is written); [`StoreError::Write`] when the write fails (disk full, I/O error,
    /// busy), naming the run and the step of the first entry that has one. After an
    /// error nothing of the append is stored, and appending again may succeed.
    fn append(&self, run: &RunId, entries: &[JournalEntry]) -> Result<(), StoreError>;

    /// Run `run`'s journal, in append order; empty for a run never appended to.
    ///
    /// # Errors
    /// [`StoreError::Read`] when the store cannot be read; [`StoreError::Corrupt`]
    /// naming the position of an entry that does not parse.
    fn load(&self, run: &RunId) -> Result<Vec<JournalEntry>, StoreError>;

    /// The runs that started and have not ended, oldest start first: what to resume after
    /// a restart.
    ///
    /// # Errors
    /// [`StoreError::Read`] when the store cannot be read.
    fn unfinished_runs(&self) -> Result<Vec<RunId>, StoreError>;

    /// The runs whose journals hold a learned reward (`rewardLearned`), finished or not,
    /// oldest start first: what an engine reads to rebuild its decision model when it
    /// opens the store.
    ///
    /// # Errors
    /// [`StoreError::Read`] when the store cannot be read.
    fn rewarded_runs(&self) -> Result<Vec<RunId>, StoreError>;

    /// Every run that started, finished or not, oldest start first: what a report over
    /// the store's history (`tradeflow stats`) folds.
    ///
    /// # Errors
    /// [`StoreError::Read`] when the store cannot be read.
    fn started_runs(&self) -> Result<Vec<RunId>, StoreError>;

    /// Keeps a workflow definition (its JSON) under `id` and `version`. A version never
    /// changes: putting the same text again is a no-op.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the version is kept already with other text;
    /// [`StoreError::WriteDefinition`] when the write fails.
    fn put_definition(
        &self,
        id: &str,
        version: &str,
        definition_json: &str,
    ) -> Result<(), StoreError>;

    /// The definition kept under `id` and `version`, if any.
    ///
    /// # Errors
    /// [`StoreError::Read`] when the store cannot be read.
    fn definition(&self, id: &str, version: &str) -> Result<Option<String>, StoreError>;

    /// Appends for several runs at once, each fenced by its lease: in one transaction
    /// where the backend has them (group commit across runs). Each append succeeds or
    /// fails on its own, all of it or none; the result at `i` is that of `appends[i]`.
    ///
    /// An append whose first entry is `runStarted` creates the run, owned by its lease's
    /// owner at its epoch ([`StoreError::RunExists`] if the run exists). Any other is
    /// refused with [`StoreError::Fenced`] unless the run's owner and epoch are the
    /// lease's. A run created here is leased until `until`; leases are extended by
    /// [`renew`](Self::renew).
    fn commit(&self, appends: &[Append<'_>], until: DateTime<Utc>) -> Vec<Result<(), StoreError>>;

    /// Takes run `run` for `owner` until `until`, when it has no owner, its lease ended
    /// before `now`, `owner` holds it already, or its owner is a process of this host that
    /// has exited. The epoch moves on (unless `owner` held it), fencing out the previous
    /// owner's appends.
    ///
    /// # Errors
    /// [`StoreError::Held`] when another owner's lease runs; [`StoreError::NoRun`] when
    /// the store has no such run; [`StoreError::Write`] when the store cannot be written.
    fn claim(
        &self,
        run: &RunId,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Lease, StoreError>;

    /// Extends each of `leases` to `until` (in one transaction where the backend has
    /// them); the result at `i` is that of `leases[i]`: [`StoreError::Fenced`] when the
    /// lease was lost (another owner took the run), [`StoreError::Write`] when the store
    /// cannot be written.
    fn renew(&self, leases: &[&Lease], until: DateTime<Utc>) -> Vec<Result<(), StoreError>>;

    /// Gives `lease` up: the run has no owner, and anyone may take it at once. A lease
    /// already lost is not an error.
    ///
    /// # Errors
    /// [`StoreError::Write`] when the store cannot be written.
    fn release(&self, lease: &Lease) -> Result<(), StoreError>;
}

/// One run's entries for [`RunStore::commit`], with the lease that fences them.
#[derive(Debug, Clone, Copy)]
pub struct Append<'a> {
    /// The writer's lease on the run.
    pub lease: &'a Lease,
    /// The entries, in order.
    pub entries: &'a [JournalEntry],
}

macro_rules! forward_run_store {
    ($($pointer:ident),*) => {$(
        impl<S: RunStore + ?Sized> RunStore for $pointer<S> {
            fn append(&self, run: &RunId, entries: &[JournalEntry]) -> Result<(), StoreError> {
                (**self).append(run, entries)
            }

            fn load(&self, run: &RunId) -> Result<Vec<JournalEntry>, StoreError> {
                (**self).load(run)
            }

            fn unfinished_runs(&self) -> Result<Vec<RunId>, StoreError> {
                (**self).unfinished_runs()
            }
            fn rewarded_runs(&self) -> Result<Vec<RunId>, StoreError> {
                (**self).rewarded_runs()
            }

            fn started_runs(&self) -> Result<Vec<RunId>, StoreError> {
                (**self).started_runs()
            }

            fn put_definition(
                &self,
                id: &str,
                version: &str,
                definition_json: &str,
            ) -> Result<(), StoreError> {
                (**self).put_definition(id, version, definition_json)
            }

            fn definition(&self, id: &str, version: &str) -> Result<Option<String>, StoreError> {
                (**self).definition(id, version)
            }

            fn commit(
                &self,
                appends: &[Append<'_>],
                until: DateTime<Utc>,
            ) -> Vec<Result<(), StoreError>> {
                (**self).commit(appends, until)
            }

            fn claim(
                &self,
                run: &RunId,
                owner: &str,
                now: DateTime<Utc>,
                until: DateTime<Utc>,
            ) -> Result<Lease, StoreError> {
                (**self).claim(run, owner, now, until)
            }

            fn renew(
                &self,
                leases: &[&Lease],
                until: DateTime<Utc>,
            ) -> Vec<Result<(), StoreError>> {
                (**self).renew(leases, until)
            }

            fn release(&self, lease: &Lease) -> Result<(), StoreError> {
                (**self).release(lease)
            }
        }
    )*};
}

forward_run_store!(Arc, Box);

/// The error a backend reports, kept as the source of a [`StoreError`].
type Source = Box<dyn StdError + Send + Sync + 'static>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An append failed; nothing of it was stored.
    #[error("cannot append to run `{run}`{}: {fault}", at_step(.step.as_ref()))]
    Write {
        /// The run.
        run: RunId,
        /// The step of the first entry that names one.
        step: Option<StepId>,
        /// What kind of failure.
        fault: WriteFault,
        /// The backend's error.
        #[source]
        source: Source,
    },
    /// An entry the store cannot keep as written; nothing of the append was stored.
    #[error("cannot append to run `{run}`: entry {position} of the append: {problem}")]
    Invalid {
        /// The run.
        run: RunId,
        /// The entry's index in the appended slice.
        position: usize,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// Keeping a definition failed; nothing was stored.
    #[error("cannot store definition `{id}` version `{version}`: {fault}")]
    WriteDefinition {
        /// The workflow id.
        id: String,
        /// The version.
        version: String,
        /// What kind of failure.
        fault: WriteFault,
        /// The backend's error.
        #[source]
        source: Source,
    },
    /// The definition version is kept already, with other text.
    #[error("definition `{id}` version `{version}` is kept already with other text")]
    Conflict {
        /// The workflow id.
        id: String,
        /// The version.
        version: String,
    },
    /// The store could not be read.
    #[error("cannot read {}", reading(.run.as_ref()))]
    Read {
        /// The run being read, if one was.
        run: Option<RunId>,
        /// The backend's error.
        #[source]
        source: Source,
    },
    /// A stored entry does not parse (written by a newer version, or damaged).
    #[error("run `{run}`: stored entry {position} does not parse")]
    Corrupt {
        /// The run.
        run: RunId,
        /// The entry's position in the run's journal, from 0.
        position: usize,
        /// The parse error.
        #[source]
        source: Source,
    },
    /// A setting the store's durability depends on did not take: read back, it differs
    /// from what was set.
    #[error("store `{}`: `PRAGMA {pragma}` reads back `{got}`, not `{wanted}`", .path.display())]
    Settings {
        /// The store's file.
        path: PathBuf,
        /// The setting.
        pragma: &'static str,
        /// The value set.
        wanted: String,
        /// The value read back.
        got: String,
    },
    /// The store's schema is newer than this build knows.
    #[error("store `{}`: schema version {found} is newer than the {supported} this build supports", .path.display())]
    Schema {
        /// The store's file.
        path: PathBuf,
        /// The version found.
        found: i64,
        /// The newest version this build supports.
        supported: i64,
    },
    /// A `runStarted` for a run the store has already: run ids are never reused.
    #[error("run `{run}` exists already in the store")]
    RunExists {
        /// The run.
        run: RunId,
    },
    /// The append's lease is not the run's: another owner took the run (or it was
    /// released). The writer has lost the run and must stop driving it.
    #[error("run `{run}` is no longer this writer's (its epoch is {epoch}, held by {})", owner_text(.owner.as_deref()))]
    Fenced {
        /// The run.
        run: RunId,
        /// Who holds it now, if anyone.
        owner: Option<String>,
        /// Its epoch now.
        epoch: u64,
    },
    /// Another owner's lease on the run has not ended.
    #[error("run `{run}` is held by `{owner}` until {until}")]
    Held {
        /// The run.
        run: RunId,
        /// Who holds it.
        owner: String,
        /// Until when.
        until: DateTime<Utc>,
    },
    /// The store has no such run.
    #[error("the store has no run `{run}`")]
    NoRun {
        /// The run.
        run: RunId,
    },
    /// A run's journal is damaged: an entry was changed, removed, reordered or added by
    /// something other than the store, or the run's record disagrees with its journal.
    #[error("run `{run}`: the journal is damaged at entry {position}: {problem}")]
    Damaged {
        /// The run.
        run: RunId,
        /// The first entry found damaged (its position, from 0).
        position: usize,
        /// What is wrong.
        problem: String,
    },
    /// The file exists but is not a tradeflow store (empty, another database, another
    /// program's file).
    #[error("`{}` is not a tradeflow store: {why}", .path.display())]
    NotAStore {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        why: String,
    },
    /// The store could not be opened (or its schema not migrated).
    #[error("cannot open store `{}`", .path.display())]
    Open {
        /// The store's file.
        path: PathBuf,
        /// The backend's error.
        #[source]
        source: Source,
    },
}

impl StoreError {
    /// Whether trying again soon may succeed by itself: the store was busy.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Write {
                fault: WriteFault::Busy,
                ..
            }
        )
    }

    /// Whether trying again can never succeed: the store refused the operation itself
    /// (fenced, a run that exists, an entry it cannot keep, a run held by another).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::RunExists { .. }
                | Self::Fenced { .. }
                | Self::Held { .. }
                | Self::Invalid { .. }
                | Self::NoRun { .. }
        )
    }
}

/// What kind of write failure: whether waiting or freeing space can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WriteFault {
    /// Another writer held the store longer than the busy timeout; retrying may succeed.
    Busy,
    /// The disk (or the store's size limit) is full.
    Full,
    /// The operating system reported an I/O error.
    Io,
    /// Any other failure the backend reported.
    Other,
}

impl WriteFault {
    /// The fault's name, as in messages (`"busy"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Busy => "busy",
            Self::Full => "disk full",
            Self::Io => "I/O error",
            Self::Other => "write failed",
        }
    }
}

impl fmt::Display for WriteFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn owner_text(owner: Option<&str>) -> String {
    owner.map_or_else(|| "no one".to_owned(), |owner| format!("`{owner}`"))
}

fn reading(run: Option<&RunId>) -> String {
    run.map_or_else(|| "the store".to_owned(), |run| format!("run `{run}`"))
}

fn at_step(step: Option<&StepId>) -> String {
    step.map(|step| format!(" at step `{step}`"))
        .unwrap_or_default()
}

/// Checks that a store can keep every entry as written, before it writes any.
fn check_entries(run: &RunId, entries: &[JournalEntry]) -> Result<(), StoreError> {
    match entries
        .iter()
        .enumerate()
        .find_map(|(position, entry)| Some((position, entry.problem(run)?)))
    {
        Some((position, problem)) => Err(StoreError::Invalid {
            run: run.clone(),
            position,
            problem,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn _object_safe(_: &dyn RunStore) {}

    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn public_types_are_shareable() {
        assert_send_sync::<MemoryStore>();
        assert_send_sync::<StoreError>();
        assert_send_sync::<JournalEntry>();
        assert_send_sync::<RunState>();
        assert_send_sync::<Arc<dyn RunStore>>();
        #[cfg(feature = "sqlite")]
        assert_send_sync::<SqliteStore>();
    }

    #[test]
    fn write_errors_name_run_step_and_fault() {
        let error = StoreError::Write {
            run: RunId::from("r1"),
            step: Some(StepId::from("trade")),
            fault: WriteFault::Full,
            source: "no space".into(),
        };
        assert_eq!(
            error.to_string(),
            "cannot append to run `r1` at step `trade`: disk full"
        );
        assert_eq!(
            error.source().map(ToString::to_string).as_deref(),
            Some("no space")
        );
    }
}
