//! [`MemoryAuditLog`]: the chain in memory, for tests and hosts that export it themselves.

use std::sync::{Mutex, MutexGuard, PoisonError};

use super::chain::{Chain, StoredRow};
use super::entry::GENESIS;
use super::{AuditEntry, AuditError, AuditHead, AuditLog, AuditRecord};

/// The chain in memory: appends cannot fail; the log ends with the process.
#[derive(Debug, Default)]
pub struct MemoryAuditLog {
    entries: Mutex<Vec<AuditEntry>>,
}

impl MemoryAuditLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    fn entries(&self) -> MutexGuard<'_, Vec<AuditEntry>> {
        // Appends push whole entries: a poisoned lock still guards a sound chain.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl AuditLog for MemoryAuditLog {
    fn append(&self, record: AuditRecord) -> Result<AuditEntry, AuditError> {
        let mut entries = self.entries();
        let (seq, prev) = entries.last().map_or((1, GENESIS), |last| {
            (last.seq.saturating_add(1), last.hash.as_str())
        });
        let entry = AuditEntry::seal(record, seq, prev);
        entries.push(entry.clone());
        Ok(entry)
    }

    fn read(&self, from: u64, limit: usize) -> Result<Vec<AuditEntry>, AuditError> {
        let entries = self.entries();
        let start = entries.partition_point(|entry| entry.seq < from);
        Ok(entries.iter().skip(start).take(limit).cloned().collect())
    }

    fn verify(&self) -> Result<AuditHead, AuditError> {
        let mut chain = Chain::default();
        for entry in self.entries().iter() {
            chain.check(&StoredRow::of(entry))?;
        }
        Ok(chain.head())
    }
}
