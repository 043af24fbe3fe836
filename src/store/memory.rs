//! `MemoryStore`: journals in memory.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Mutex, PoisonError};

use super::{JournalEntry, RunStore, StoreError, check_entries};
use crate::run::RunId;

/// Journals in memory, the default store: fast, and gone with the process.
///
/// One lock guards everything; an append holds it for a few clones, so appends to
/// different runs barely contend. Entries are kept as values (not as JSON), after the
/// same check every store makes, so they read back exactly as a durable store's would.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Memory>,
}

#[derive(Default)]
struct Memory {
    journals: HashMap<RunId, Journal>,
    /// The runs that started and have not ended, by start order.
    unfinished: BTreeMap<u64, RunId>,
    next_start: u64,
    definitions: HashMap<(String, String), String>,
}

#[derive(Default)]
struct Journal {
    entries: Vec<JournalEntry>,
    /// The run's key in `unfinished`, once it started.
    start: Option<u64>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        // Every update below is complete before the lock is released, so a panic
        // elsewhere cannot leave a half-made change behind.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl RunStore for MemoryStore {
    fn append(&self, run: &RunId, entries: &[JournalEntry]) -> Result<(), StoreError> {
        check_entries(run, entries)?;
        if entries.is_empty() {
            return Ok(());
        }
        let mut memory = self.lock();
        let Memory {
            journals,
            unfinished,
            next_start,
            ..
        } = &mut *memory;
        let journal = journals.entry(run.clone()).or_default();
        for entry in entries {
            match entry {
                JournalEntry::RunStarted { .. } if journal.start.is_none() => {
                    journal.start = Some(*next_start);
                    unfinished.insert(*next_start, run.clone());
                    *next_start += 1;
                }
                JournalEntry::RunEnded { .. } => {
                    if let Some(start) = journal.start {
                        unfinished.remove(&start);
                    }
                }
                _ => {}
            }
        }
        journal.entries.extend_from_slice(entries);
        Ok(())
    }

    fn load(&self, run: &RunId) -> Result<Vec<JournalEntry>, StoreError> {
        Ok(self
            .lock()
            .journals
            .get(run)
            .map(|journal| journal.entries.clone())
            .unwrap_or_default())
    }

    fn unfinished_runs(&self) -> Result<Vec<RunId>, StoreError> {
        Ok(self.lock().unfinished.values().cloned().collect())
    }

    fn put_definition(
        &self,
        id: &str,
        version: &str,
        definition_json: &str,
    ) -> Result<(), StoreError> {
        let mut memory = self.lock();
        let key = (id.to_owned(), version.to_owned());
        match memory.definitions.get(&key) {
            Some(kept) if kept != definition_json => Err(StoreError::Conflict {
                id: key.0,
                version: key.1,
            }),
            Some(_) => Ok(()),
            None => {
                memory.definitions.insert(key, definition_json.to_owned());
                Ok(())
            }
        }
    }

    fn definition(&self, id: &str, version: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .lock()
            .definitions
            .get(&(id.to_owned(), version.to_owned()))
            .cloned())
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let memory = self.lock();
        f.debug_struct("MemoryStore")
            .field("runs", &memory.journals.len())
            .field("unfinished", &memory.unfinished.len())
            .field("definitions", &memory.definitions.len())
            .finish()
    }
}
