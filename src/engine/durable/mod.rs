//! Durable runs: journaling transitions to a [`RunStore`], off the caller's executor.
//!
//! With a store set, every transition of a run is journaled *before* the engine acts on
//! it outside the run: before an agent is called (the call's `stepStarted`), before an
//! approval's answer is acted on, before the run's end is reported. Transitions the run
//! only keeps in memory (a step completed, skipped or failed, a recovery decided, a
//! pause) wait in the run's [`Batch`] and are appended with the next entry that must be
//! durable, or as soon as the run would otherwise wait: **group commit**.
//!
//! Appends never run on the caller's executor: the run hands its batch to the engine's
//! journal **writer**, a thread of its own ([`writer`]), and awaits the reply. The writer
//! takes every batch that is waiting, of every run, and commits them together in one
//! transaction ([`RunStore::commit`]), so concurrent runs share a sync too.
//!
//! A crash can lose only entries no one acted on outside the run: a step whose
//! `stepCompleted` was lost runs again with the same idempotency key, exactly as a call
//! cut off by the crash does. Events are emitted when a transition is decided, so across a
//! crash a subscriber may see a transition twice (at least once, never lost).
//!
//! # One driver per run
//! Each run is held under a [`Lease`]: a new run's first append creates it, owned by this
//! engine at epoch 1; a recovered run is claimed first. Every append carries the lease and
//! the store refuses it if another owner took the run since. The writer renews the leases
//! of live runs on a heartbeat; a run dropped before its end gives its lease up at once.
//!
//! # When the store fails
//! A busy store is retried for about two seconds, a failing one (disk full, read-only,
//! I/O error) for under one; a refusal (the run was taken
//! over, its id exists already) is final. Then the run stops: steps waiting to act do
//! not act, and the run ends `FAILED` with kind `STORE`, naming the store's error. What
//! was journaled before stays, so once the store works again [`Engine::recover`]
//! (`tradeflow resume`) finishes the run.
//!
//! Without a store nothing here runs: the executor checks one `Option` per transition.
//!
//! [`Engine::recover`]: super::Engine::recover

pub(super) mod writer;

use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::Inner;
use crate::run::RunId;
use crate::store::{JournalEntry, Lease, RunStore, StoreError};

pub(crate) use writer::Writer;

/// How long a lease lasts unless renewed, by default.
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// The engine's journal: the store, the writer thread that appends to it, and who this
/// engine is as an owner of runs.
#[derive(Debug)]
pub(crate) struct Journal {
    pub(crate) store: Arc<dyn RunStore>,
    pub(crate) writer: Writer,
    /// This engine, as the owner of the runs it drives.
    pub(crate) owner: Arc<str>,
    /// How long a lease lasts unless renewed.
    pub(crate) lease: Duration,
}

/// Why a run's journal stopped: the store's error, shared by everyone who waited.
pub(crate) type Lost = Arc<StoreError>;

/// A run's journal entries not yet appended, and the step futures waiting for them.
///
/// Entries are numbered in the order they are pushed; `committed` is the number of the
/// last one the store has. The run's loop flushes the batch whenever it would wait.
#[derive(Debug)]
pub(crate) struct Batch {
    lease: Lease,
    state: Mutex<BatchState>,
}

#[derive(Debug, Default)]
struct BatchState {
    entries: Vec<JournalEntry>,
    /// Entries pushed so far.
    pushed: u64,
    /// Entries the store has.
    committed: u64,
    /// Set when the journal cannot be written any more: the run must stop.
    lost: Option<Lost>,
    /// Step futures waiting for their entries.
    waiters: Vec<Waker>,
    /// The run's loop, woken when the journal is lost.
    driver: Option<Waker>,
}

impl Batch {
    /// An empty batch for the run `lease` holds.
    pub(crate) fn new(lease: Lease) -> Self {
        Self {
            lease,
            state: Mutex::default(),
        }
    }

    /// The run's lease.
    pub(crate) fn lease(&self) -> &Lease {
        &self.lease
    }

    fn lock(&self) -> MutexGuard<'_, BatchState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `entries` to the batch; returns the number of the last one.
    pub(crate) fn push(&self, mut entries: Vec<JournalEntry>) -> u64 {
        let mut state = self.lock();
        state.pushed += entries.len() as u64;
        state.entries.append(&mut entries);
        state.pushed
    }

    /// Whether entries wait to be appended (and can be).
    pub(crate) fn is_pending(&self) -> bool {
        let state = self.lock();
        !state.entries.is_empty() && state.lost.is_none()
    }

    /// Why the journal was lost, if it was.
    pub(crate) fn lost(&self) -> Option<Lost> {
        self.lock().lost.clone()
    }

    /// Ready with the reason once the journal is lost; the run's loop is woken then.
    pub(crate) fn poll_lost(&self, cx: &mut Context<'_>) -> Poll<Lost> {
        let mut state = self.lock();
        match &state.lost {
            Some(lost) => Poll::Ready(Arc::clone(lost)),
            None => {
                state.driver = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// The journal cannot be written any more: everyone waiting is told.
    pub(crate) fn lose(&self, why: Lost) {
        let wake = {
            let mut state = self.lock();
            if state.lost.is_some() {
                return;
            }
            state.lost = Some(why);
            let mut wake = std::mem::take(&mut state.waiters);
            wake.extend(state.driver.take());
            wake
        };
        wake.into_iter().for_each(Waker::wake);
    }

    /// Takes the entries to append and the number of the last.
    fn take(&self) -> (Vec<JournalEntry>, u64) {
        let mut state = self.lock();
        (std::mem::take(&mut state.entries), state.pushed)
    }

    /// Entries up to `number` are in the store: their waiters go on.
    fn committed_to(&self, number: u64) {
        let waiters = {
            let mut state = self.lock();
            state.committed = state.committed.max(number);
            std::mem::take(&mut state.waiters)
        };
        waiters.into_iter().for_each(Waker::wake);
    }

    /// Resolves once entry `number` is in the store, or the journal is lost.
    async fn committed(&self, number: u64) -> Result<(), Lost> {
        poll_fn(|cx| {
            let mut state = self.lock();
            if let Some(lost) = &state.lost {
                Poll::Ready(Err(Arc::clone(lost)))
            } else if state.committed >= number {
                Poll::Ready(Ok(()))
            } else {
                state.waiters.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

impl Inner {
    /// Whether runs are journaled.
    pub(crate) fn has_store(&self) -> bool {
        self.journal.is_some()
    }

    /// The store runs are journaled to, if any.
    pub(crate) fn store(&self) -> Option<&Arc<dyn RunStore>> {
        self.journal.as_ref().map(|journal| &journal.store)
    }

    /// Journals `entries` for the next append (the run acts on them in memory only).
    /// Without a store (no `batch`), does nothing.
    pub(crate) fn defer(
        &self,
        batch: &Option<Arc<Batch>>,
        entries: impl FnOnce() -> Vec<JournalEntry>,
    ) {
        if let Some(batch) = batch {
            batch.push(entries());
        }
    }

    /// Journals `entries` and waits until they (and every entry before them) are in the
    /// store: for a step about to act outside the run. Without a store (no `batch`),
    /// does nothing.
    ///
    /// # Errors
    /// The journal was lost: the step must not act.
    pub(crate) async fn journal_durably(
        &self,
        batch: Option<&Batch>,
        entries: impl FnOnce() -> Vec<JournalEntry>,
    ) -> Result<(), Lost> {
        match batch {
            Some(batch) => {
                let number = batch.push(entries());
                batch.committed(number).await
            }
            None => Ok(()),
        }
    }

    /// Appends everything `batch` holds, in one transaction shared with other runs'
    /// batches, and wakes the steps waiting for them. The clock is held meanwhile, so a
    /// virtual clock waits for the store instead of jumping ahead.
    ///
    /// # Errors
    /// The store failed (after its retries) or refused the append: the journal is lost.
    pub(crate) async fn flush(&self, batch: &Arc<Batch>) -> Result<(), Lost> {
        let Some(journal) = &self.journal else {
            return Ok(());
        };
        if let Some(lost) = batch.lost() {
            return Err(lost);
        }
        let (entries, number) = batch.take();
        if entries.is_empty() {
            return Ok(());
        }
        let _hold = self.clock.hold();
        match journal.writer.commit(batch, entries).await {
            Ok(()) => {
                batch.committed_to(number);
                Ok(())
            }
            Err(lost) => {
                batch.lose(Arc::clone(&lost));
                Err(lost)
            }
        }
    }

    /// A new run's batch, under a lease of this engine at epoch 1 (its first append
    /// creates the run); none without a store.
    pub(crate) fn new_batch(&self, run: &RunId) -> Option<Arc<Batch>> {
        let journal = self.journal.as_ref()?;
        let lease = Lease::new(run.clone(), Arc::clone(&journal.owner), 1);
        Some(Arc::new(Batch::new(lease)))
    }

    /// The run of `batch` stops being driven here before its end (dropped, or its end
    /// could not be journaled): its lease is given up at once, so another engine (or a
    /// later `recover`) may take it.
    pub(crate) fn give_up(&self, batch: &Batch) {
        let Some(journal) = &self.journal else { return };
        journal.writer.forget(batch.lease().run());
        if let Err(error) = journal.store.release(batch.lease()) {
            tracing::warn!(
                run = %batch.lease().run(),
                error = &error as &dyn std::error::Error,
                "cannot release the run's lease; another engine can take it once it expires"
            );
        }
    }

    /// The run of `batch` ended and its end is journaled (the store cleared its owner).
    pub(crate) fn ended(&self, batch: &Batch) {
        if let Some(journal) = &self.journal {
            journal.writer.forget(batch.lease().run());
        }
    }
}
