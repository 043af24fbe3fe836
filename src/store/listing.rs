//! Listing the runs a store holds, newest first, each summarized from its journal.
//!
//! [`ListingStore`] is the store operation listing needs: every run that started, in the
//! order it started in the store. It is a sub-trait of [`RunStore`] because the engine
//! never needs it; both stores of this crate implement it. [`list_runs`] reads the runs
//! from the newest back, folds each journal ([`RunState::fold`]) into a [`RunSummary`]
//! (its workflow, status, start, end), keeps those a [`RunFilter`] admits, and stops once
//! the filter's limit is reached. A run whose journal cannot be read or folded is not
//! summarized: it is named apart, with why ([`Listing::unreadable`]), whatever the
//! filter, so that damage is never hidden by a listing.
//!
//! # Cost
//! One read of the run list, then one load and fold per run read: O(entries of the runs
//! read). Without a limit (or with filters few runs match) every journal is read.

use chrono::{DateTime, TimeDelta, Utc};

use super::{FoldError, RunState, RunStore, StoreError};
use crate::run::{RunId, RunStatus};

/// A store that can list every run it holds.
///
/// Listing is for people and tools that inspect a store (`tradeflow runs`); the engine
/// needs only [`RunStore`], so a store may leave this out.
pub trait ListingStore: RunStore {
    /// Every run that started (its journal begins with `runStarted`), finished or not,
    /// in the order the runs started in the store, oldest first. Defaults to
    /// [`RunStore::started_runs`], which the stores of this crate implement that way.
    ///
    /// # Errors
    /// [`StoreError::Read`] when the store cannot be read.
    fn runs(&self) -> Result<Vec<RunId>, StoreError> {
        self.started_runs()
    }
}

impl<S: ListingStore + ?Sized> ListingStore for std::sync::Arc<S> {
    fn runs(&self) -> Result<Vec<RunId>, StoreError> {
        (**self).runs()
    }
}

impl<S: ListingStore + ?Sized> ListingStore for Box<S> {
    fn runs(&self) -> Result<Vec<RunId>, StoreError> {
        (**self).runs()
    }
}

/// A run as a listing shows it, read from its journal.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RunSummary {
    /// The run.
    pub run_id: RunId,
    /// Its workflow.
    pub workflow_id: String,
    /// The version of the definition it runs.
    pub version: String,
    /// Its status: final once it ended, else where it is (`RUNNING`, `WAITING`, `PAUSED`).
    pub status: RunStatus,
    /// The trigger that started it, if one did.
    pub trigger: Option<String>,
    /// When it started, on the run's clock.
    pub started_at: DateTime<Utc>,
    /// When it ended, once it did.
    pub ended_at: Option<DateTime<Utc>>,
}

impl RunSummary {
    /// The summary of a run in state `state`.
    pub fn of(state: &RunState) -> Self {
        Self {
            run_id: state.run_id.clone(),
            workflow_id: state.workflow_id.clone(),
            version: state.version.clone(),
            status: state.status,
            trigger: state.trigger.clone(),
            started_at: state.started_at,
            ended_at: state.ended_at,
        }
    }

    /// How long the run took, once it ended: `ended_at - started_at`.
    pub fn duration(&self) -> Option<TimeDelta> {
        self.ended_at.map(|ended| ended - self.started_at)
    }
}

/// Which runs [`list_runs`] keeps, and how many. The default keeps every run.
///
/// ```
/// # use tradeflow::run::RunStatus;
/// use tradeflow::store::RunFilter;
///
/// let filter = RunFilter::new().status(RunStatus::Failed).workflow("momentum").limit(10);
/// # let _ = filter;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    status: Option<RunStatus>,
    workflow: Option<String>,
    limit: Option<usize>,
}

impl RunFilter {
    /// A filter that keeps every run.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps only the runs whose status is `status`. Default: any status.
    #[must_use]
    pub fn status(mut self, status: RunStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Keeps only the runs of workflow `workflow`. Default: any workflow.
    #[must_use]
    pub fn workflow(mut self, workflow: impl Into<String>) -> Self {
        self.workflow = Some(workflow.into());
        self
    }

    /// Keeps at most `limit` runs (the newest). Default: no limit.
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Whether the filter keeps the run of `summary` (the limit aside).
    pub fn admits(&self, summary: &RunSummary) -> bool {
        self.status.is_none_or(|status| summary.status == status)
            && self
                .workflow
                .as_deref()
                .is_none_or(|workflow| summary.workflow_id == workflow)
    }
}

/// What [`list_runs`] found.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Listing {
    /// The runs the filter kept, newest first (the reverse of the order they started in
    /// the store), at most the filter's limit.
    pub runs: Vec<RunSummary>,
    /// The runs read whose journal cannot be loaded or folded, newest first, with why.
    /// Not filtered (a filter cannot tell what they hold), and not counted in the limit.
    pub unreadable: Vec<(RunId, UnreadableRun)>,
}

/// Why a run's journal gave no summary.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnreadableRun {
    /// The journal cannot be loaded (unreadable, corrupt, damaged).
    #[error("cannot load the journal")]
    Load(#[source] StoreError),
    /// The journal loads but does not describe a run.
    #[error("the journal does not describe a run")]
    Fold(#[source] FoldError),
}

/// The runs of `store` that `filter` keeps, newest first, each with its summary.
///
/// Runs are read from the newest back (the reverse of [`ListingStore::runs`]); reading
/// stops once the filter's limit is reached, so a small limit reads few journals.
///
/// # Errors
/// [`StoreError::Read`] when the store cannot list its runs. A journal that cannot be
/// loaded or folded is no error: it is named in [`Listing::unreadable`].
///
/// # Complexity
/// O(entries of the runs read).
///
/// # Examples
/// ```
/// # use serde_json::json;
/// # use tradeflow::run::RunStatus;
/// use tradeflow::store::{JournalEntry, MemoryStore, RunFilter, RunStore, list_runs};
///
/// let store = MemoryStore::new();
/// let at = "2026-01-05T09:00:00Z".parse()?;
/// for run in ["run-1", "run-2"] {
///     store.append(&run.into(), &[JournalEntry::RunStarted {
///         run_id: run.into(), workflow_id: "momentum".into(), version: "1".into(),
///         input: json!({}), seed: 0, at,
///     }])?;
/// }
/// let listing = list_runs(&store, &RunFilter::new())?;
/// assert_eq!(listing.runs[0].run_id, "run-2");
/// assert_eq!(listing.runs[1].status, RunStatus::Running);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn list_runs<S: ListingStore + ?Sized>(
    store: &S,
    filter: &RunFilter,
) -> Result<Listing, StoreError> {
    let mut listing = Listing::default();
    for run in store.runs()?.into_iter().rev() {
        if filter
            .limit
            .is_some_and(|limit| listing.runs.len() >= limit)
        {
            break;
        }
        let state = store
            .load(&run)
            .map_err(UnreadableRun::Load)
            .and_then(|entries| RunState::fold(&entries).map_err(UnreadableRun::Fold));
        match state {
            Ok(state) => {
                let summary = RunSummary::of(&state);
                if filter.admits(&summary) {
                    listing.runs.push(summary);
                }
            }
            Err(why) => listing.unreadable.push((run, why)),
        }
    }
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::{JournalEntry, MemoryStore};

    fn at(second: i64) -> DateTime<Utc> {
        "2026-01-05T09:00:00Z".parse::<DateTime<Utc>>().unwrap() + TimeDelta::seconds(second)
    }

    fn start(store: &MemoryStore, run: &str, workflow: &str, second: i64) {
        let entry = JournalEntry::RunStarted {
            run_id: run.into(),
            workflow_id: workflow.into(),
            version: "1".into(),
            input: json!({}),
            seed: 0,
            at: at(second),
        };
        store.append(&run.into(), &[entry]).unwrap();
    }

    fn end(store: &MemoryStore, run: &str, status: RunStatus, second: i64) {
        let entry = JournalEntry::RunEnded {
            status,
            error: None,
            at: at(second),
        };
        store.append(&run.into(), &[entry]).unwrap();
    }

    /// Three runs: `a` of `momentum` completed after 5 s, `b` of `hedge` failed, `c` of
    /// `momentum` still running.
    fn three_runs() -> MemoryStore {
        let store = MemoryStore::new();
        start(&store, "a", "momentum", 0);
        start(&store, "b", "hedge", 1);
        end(&store, "a", RunStatus::Completed, 5);
        start(&store, "c", "momentum", 2);
        end(&store, "b", RunStatus::Failed, 3);
        store
    }

    fn ids(listing: &Listing) -> Vec<&str> {
        listing.runs.iter().map(|run| run.run_id.as_str()).collect()
    }

    #[test]
    fn every_run_is_listed_newest_first_with_its_summary() {
        let listing = list_runs(&three_runs(), &RunFilter::new()).unwrap();
        assert_eq!(ids(&listing), ["c", "b", "a"]);
        let a = &listing.runs[2];
        assert_eq!(a.workflow_id, "momentum");
        assert_eq!(a.status, RunStatus::Completed);
        assert_eq!(a.started_at, at(0));
        assert_eq!(a.duration(), Some(TimeDelta::seconds(5)));
        assert_eq!(listing.runs[0].status, RunStatus::Running);
        assert_eq!(listing.runs[0].duration(), None);
        assert!(listing.unreadable.is_empty());
    }

    #[test]
    fn filters_keep_the_runs_of_a_status_and_a_workflow() {
        let store = three_runs();
        let momentum = RunFilter::new().workflow("momentum");
        assert_eq!(ids(&list_runs(&store, &momentum).unwrap()), ["c", "a"]);
        let failed = RunFilter::new().status(RunStatus::Failed);
        assert_eq!(ids(&list_runs(&store, &failed).unwrap()), ["b"]);
        let both = momentum.status(RunStatus::Failed);
        assert!(list_runs(&store, &both).unwrap().runs.is_empty());
    }

    #[test]
    fn the_limit_keeps_the_newest_runs_the_filter_admits() {
        let store = three_runs();
        let listing = list_runs(&store, &RunFilter::new().limit(2)).unwrap();
        assert_eq!(ids(&listing), ["c", "b"]);
        let listing = list_runs(&store, &RunFilter::new().workflow("momentum").limit(1));
        assert_eq!(ids(&listing.unwrap()), ["c"]);
        assert!(
            list_runs(&store, &RunFilter::new().limit(0))
                .unwrap()
                .runs
                .is_empty()
        );
    }

    #[test]
    fn a_journal_that_does_not_fold_is_named_apart_whatever_the_filter() {
        let store = three_runs();
        // An entry after the run's end breaks the journal's grammar.
        end(&store, "a", RunStatus::Completed, 6);
        let filter = RunFilter::new().workflow("hedge");
        let listing = list_runs(&store, &filter).unwrap();
        assert_eq!(ids(&listing), ["b"]);
        let [(run, why)] = listing.unreadable.as_slice() else {
            panic!("{:?}", listing.unreadable)
        };
        assert_eq!(run.as_str(), "a");
        assert!(matches!(
            why,
            UnreadableRun::Fold(FoldError::AfterEnd { .. })
        ));
        assert_eq!(why.to_string(), "the journal does not describe a run");
    }

    #[test]
    fn an_empty_store_lists_nothing() {
        let listing = list_runs(&MemoryStore::new(), &RunFilter::new()).unwrap();
        assert!(listing.runs.is_empty() && listing.unreadable.is_empty());
    }

    fn _object_safe(_: &dyn ListingStore) {}
}
