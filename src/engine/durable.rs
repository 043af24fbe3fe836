//! Durable runs: journaling transitions to a [`RunStore`], and what recovery needs.
//!
//! With a store set, every transition of a run is journaled *before* the engine acts on
//! it outside the run: before an agent is called (the call's `stepStarted`), before an
//! approval's answer is acted on, before the run's end is reported. Transitions the run
//! only keeps in memory (a step completed, skipped or failed, a recovery decided, a
//! pause) wait in the run's [`Batch`] and are appended with the next entry that must be
//! durable, or as soon as the run would otherwise wait: **group commit**. The entries of
//! everything a run did in one wake-up — the completions of concurrent steps and the
//! starts of the steps they release — share one transaction, so one sync.
//!
//! A crash can lose only entries no one acted on outside the run: a step whose
//! `stepCompleted` was lost runs again with the same idempotency key, exactly as a call
//! cut off by the crash does. Events are emitted when a transition is decided, so across a
//! crash a subscriber may see a transition twice (at least once, never lost).
//!
//! An append that fails is retried on the engine's clock, 10 ms doubling to 1 s, until it
//! succeeds: the run neither loses a transition nor acts on one it could not record.
//! Without a store nothing here runs: the executor checks one `Option` per transition.

use std::future::poll_fn;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Poll, Waker};
use std::time::Duration;

use super::Inner;
use crate::run::RunId;
use crate::store::{JournalEntry, RunStore};

/// The first pause after a failed append; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// The longest pause between two tries of an append.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// A run's journal entries not yet appended, and the step futures waiting for them.
///
/// Entries are numbered in the order they are pushed; `committed` is the number of the
/// last one the store has. The run's loop flushes the batch whenever it would wait.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    state: Mutex<BatchState>,
}

#[derive(Debug, Default)]
struct BatchState {
    entries: Vec<JournalEntry>,
    /// Entries pushed so far.
    pushed: u64,
    /// Entries the store has.
    committed: u64,
    waiters: Vec<Waker>,
}

impl Batch {
    fn lock(&self) -> std::sync::MutexGuard<'_, BatchState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `entries` to the batch; returns the number of the last one.
    pub(crate) fn push(&self, mut entries: Vec<JournalEntry>) -> u64 {
        let mut state = self.lock();
        state.pushed += entries.len() as u64;
        state.entries.append(&mut entries);
        state.pushed
    }

    /// Whether entries wait to be appended.
    pub(crate) fn is_pending(&self) -> bool {
        !self.lock().entries.is_empty()
    }

    /// Resolves once entry `number` is in the store.
    async fn committed(&self, number: u64) {
        poll_fn(|cx| {
            let mut state = self.lock();
            if state.committed >= number {
                Poll::Ready(())
            } else {
                state.waiters.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
    }
}

impl Inner {
    /// Whether runs are journaled.
    pub(crate) fn has_store(&self) -> bool {
        self.store.is_some()
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
    pub(crate) async fn journal_durably(
        &self,
        batch: Option<&Batch>,
        entries: impl FnOnce() -> Vec<JournalEntry>,
    ) {
        if let Some(batch) = batch {
            let number = batch.push(entries());
            batch.committed(number).await;
        }
    }

    /// Appends everything `batch` holds, then `last`, in one transaction (retrying until
    /// the store takes them), and wakes the steps waiting for them.
    pub(crate) async fn flush(&self, run: &RunId, batch: &Batch, last: Vec<JournalEntry>) {
        let Some(store) = &self.store else { return };
        let (entries, number) = {
            let mut state = batch.lock();
            let mut entries = std::mem::take(&mut state.entries);
            entries.extend(last);
            (entries, state.pushed)
        };
        if entries.is_empty() {
            return;
        }
        append(&**store, &*self.clock, run, &entries).await;
        let waiters = {
            let mut state = batch.lock();
            state.committed = state.committed.max(number);
            std::mem::take(&mut state.waiters)
        };
        for waiter in waiters {
            waiter.wake();
        }
    }
}

/// Appends until the store succeeds, backing off on `clock` between tries.
async fn append(
    store: &dyn RunStore,
    clock: &dyn crate::clock::Clock,
    run: &RunId,
    entries: &[JournalEntry],
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        match store.append(run, entries) {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(
                    run = %run,
                    retry_in_ms = backoff.as_millis() as u64,
                    error = &error as &dyn std::error::Error,
                    "journal append failed; the run waits until it succeeds"
                );
                clock.sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
