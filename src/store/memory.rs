//! `MemoryStore`: journals in memory.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};

use super::{
    Append, JournalEntry, Lease, ListingStore, RunStore, StoreError, check_entries, owner_is_gone,
};
use crate::run::RunId;

/// Journals in memory, the default store: fast, and gone with the process.
///
/// One lock guards everything; an append holds it for a few clones, so appends to
/// different runs barely contend. Entries are kept as values (not as JSON), after the
/// same check every store makes, so they read back exactly as a durable store's would.
/// Leases work as in every store, so several engines sharing one `MemoryStore` drive
/// each run once.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Memory>,
}

#[derive(Default)]
struct Memory {
    journals: HashMap<RunId, Journal>,
    /// The runs that started and have not ended, by start order.
    unfinished: BTreeMap<u64, RunId>,
    /// The runs with a learned reward, by start order.
    rewarded: BTreeMap<u64, RunId>,
    next_start: u64,
    definitions: HashMap<(String, String), String>,
}

#[derive(Default)]
struct Journal {
    entries: Vec<JournalEntry>,
    /// The run's key in `unfinished`, once it started.
    start: Option<u64>,
    /// Who drives the run, and until when.
    owner: Option<(Arc<str>, DateTime<Utc>)>,
    /// The fencing epoch.
    epoch: u64,
}

impl Journal {
    /// `lease` may append: it is the run's owner at the run's epoch.
    fn admits(&self, lease: &Lease) -> bool {
        self.epoch == lease.epoch()
            && self
                .owner
                .as_ref()
                .is_some_and(|(owner, _)| &**owner == lease.owner())
    }

    fn fenced(&self, run: &RunId) -> StoreError {
        StoreError::Fenced {
            run: run.clone(),
            owner: self.owner.as_ref().map(|(owner, _)| owner.to_string()),
            epoch: self.epoch,
        }
    }
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

impl Memory {
    /// Appends `entries` to run `run` (checked), for `lease` (`None`: unfenced, allowed
    /// only while no one owns the run).
    fn append(
        &mut self,
        run: &RunId,
        lease: Option<&Lease>,
        entries: &[JournalEntry],
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        check_entries(run, entries)?;
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let creates = matches!(first, JournalEntry::RunStarted { .. });
        match self.journals.get(run) {
            Some(_) if creates => return Err(StoreError::RunExists { run: run.clone() }),
            Some(journal) => match lease {
                Some(lease) if !journal.admits(lease) => return Err(journal.fenced(run)),
                None if journal.owner.is_some() => return Err(journal.fenced(run)),
                _ => {}
            },
            None if !creates => {
                if let Some(lease) = lease {
                    return Err(StoreError::Fenced {
                        run: lease.run().clone(),
                        owner: None,
                        epoch: 0,
                    });
                }
            }
            None => {}
        }
        let Memory {
            journals,
            unfinished,
            rewarded,
            next_start,
            ..
        } = self;
        let journal = journals.entry(run.clone()).or_default();
        if let (true, Some(lease)) = (creates, lease) {
            journal.epoch = lease.epoch();
            journal.owner = Some((Arc::from(lease.owner()), until));
        }
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
                    journal.owner = None;
                }
                JournalEntry::RewardLearned { .. } => {
                    if let Some(start) = journal.start {
                        rewarded.insert(start, run.clone());
                    }
                }
                _ => {}
            }
        }
        journal.entries.extend_from_slice(entries);
        Ok(())
    }
}

impl RunStore for MemoryStore {
    fn append(&self, run: &RunId, entries: &[JournalEntry]) -> Result<(), StoreError> {
        self.lock()
            .append(run, None, entries, DateTime::<Utc>::MIN_UTC)
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

    fn rewarded_runs(&self) -> Result<Vec<RunId>, StoreError> {
        Ok(self.lock().rewarded.values().cloned().collect())
    }

    fn started_runs(&self) -> Result<Vec<RunId>, StoreError> {
        let memory = self.lock();
        let mut started: Vec<(u64, &RunId)> = memory
            .journals
            .iter()
            .filter_map(|(run, journal)| Some((journal.start?, run)))
            .collect();
        started.sort_unstable();
        Ok(started.into_iter().map(|(_, run)| run.clone()).collect())
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

    fn commit(&self, appends: &[Append<'_>], until: DateTime<Utc>) -> Vec<Result<(), StoreError>> {
        let mut memory = self.lock();
        appends
            .iter()
            .map(|append| {
                let run = append.lease.run();
                memory.append(run, Some(append.lease), append.entries, until)
            })
            .collect()
    }

    fn claim(
        &self,
        run: &RunId,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Lease, StoreError> {
        let mut memory = self.lock();
        let journal = memory
            .journals
            .get_mut(run)
            .ok_or_else(|| StoreError::NoRun { run: run.clone() })?;
        match &journal.owner {
            Some((held, _)) if &**held == owner => {}
            Some((held, ends)) if *ends >= now && !owner_is_gone(held) => {
                return Err(StoreError::Held {
                    run: run.clone(),
                    owner: held.to_string(),
                    until: *ends,
                });
            }
            _ => journal.epoch += 1,
        }
        journal.owner = Some((Arc::from(owner), until));
        Ok(Lease::new(run.clone(), owner, journal.epoch))
    }

    fn renew(&self, leases: &[&Lease], until: DateTime<Utc>) -> Vec<Result<(), StoreError>> {
        let mut memory = self.lock();
        leases
            .iter()
            .map(|lease| {
                let run = lease.run();
                let journal = memory
                    .journals
                    .get_mut(run)
                    .ok_or_else(|| StoreError::NoRun { run: run.clone() })?;
                if !journal.admits(lease) {
                    return Err(journal.fenced(run));
                }
                if let Some((_, held)) = journal.owner.as_mut() {
                    *held = until;
                }
                Ok(())
            })
            .collect()
    }

    fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let mut memory = self.lock();
        if let Some(journal) = memory.journals.get_mut(lease.run()) {
            if journal.admits(lease) {
                journal.owner = None;
            }
        }
        Ok(())
    }
}

impl ListingStore for MemoryStore {}

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
