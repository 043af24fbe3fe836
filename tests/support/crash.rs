//! [`CrashingStore`]: a disk that a crash cuts off after a given number of entries.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use tradeflow::run::RunId;
use tradeflow::store::{Append, JournalEntry, MemoryStore, RunStore, StoreError};

/// A store in front of a [`MemoryStore`] (the disk) that keeps whole appends while they
/// fit in its budget of entries, then crashes: the first append that does not fit, and
/// every append after it, is refused with [`StoreError::Fenced`], which the engine
/// treats as final, so nothing the engine decides after the crash reaches the disk.
///
/// Appends are all or nothing (the `RunStore` contract), so the disk always holds a
/// prefix of whole appends, as after a real crash. Lease operations go to the disk
/// unchanged, so a new engine can claim the run the crashed one gave up.
#[derive(Debug)]
pub struct CrashingStore {
    disk: Arc<MemoryStore>,
    budget: usize,
    written: Mutex<Written>,
}

#[derive(Debug, Default)]
struct Written {
    /// The number of entries of each append the disk took, in order.
    appends: Vec<usize>,
    crashed: bool,
}

impl CrashingStore {
    /// A store that never crashes: it counts what the disk takes.
    pub fn never(disk: Arc<MemoryStore>) -> Self {
        Self::after(disk, usize::MAX)
    }

    /// A store that crashes at the first append that would take the disk past `budget`
    /// entries.
    pub fn after(disk: Arc<MemoryStore>, budget: usize) -> Self {
        Self {
            disk,
            budget,
            written: Mutex::default(),
        }
    }

    fn written(&self) -> MutexGuard<'_, Written> {
        self.written.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The number of entries of each append the disk took, in order.
    pub fn appends(&self) -> Vec<usize> {
        self.written().appends.clone()
    }

    /// The entries the disk took.
    pub fn kept(&self) -> usize {
        self.written().appends.iter().sum()
    }

    /// Whether the store crashed (refused an append).
    pub fn crashed(&self) -> bool {
        self.written().crashed
    }

    /// Writes `entries` with `write` if they fit in the budget, else crashes.
    fn write(
        &self,
        run: &RunId,
        epoch: u64,
        entries: &[JournalEntry],
        write: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut written = self.written();
        let kept: usize = written.appends.iter().sum();
        if written.crashed || kept + entries.len() > self.budget {
            written.crashed = true;
            return Err(StoreError::Fenced {
                run: run.clone(),
                owner: None,
                epoch,
            });
        }
        write()?;
        written.appends.push(entries.len());
        Ok(())
    }
}

impl RunStore for CrashingStore {
    fn append(&self, run: &RunId, entries: &[JournalEntry]) -> Result<(), StoreError> {
        self.write(run, 0, entries, || self.disk.append(run, entries))
    }

    fn commit(&self, appends: &[Append<'_>], until: DateTime<Utc>) -> Vec<Result<(), StoreError>> {
        appends
            .iter()
            .map(|append| {
                let lease = append.lease;
                self.write(lease.run(), lease.epoch(), append.entries, || {
                    let mut results = self.disk.commit(std::slice::from_ref(append), until);
                    results.pop().unwrap_or(Ok(()))
                })
            })
            .collect()
    }

    crate::forward_store!(disk);
}
