//! The engine's side of the audit log ([`crate::audit`]): what it appends, when, and
//! what it does when an append fails.
//!
//! Two kinds of entries:
//! - **Before**: what a person asks that the engine can still refuse (a workflow
//!   defined, a run started, an approval or a rejection, a pause, a resume, a cancel, an
//!   adaptation added) is appended first; when the append fails, the operation is not
//!   performed and fails with the audit error.
//! - **After**: what has already happened and cannot be taken back (a run's end, a kill
//!   switch trip, a rebalancing made, a reset counted, a refusal, a plan kept with
//!   `add_plan`) is appended once it happened; when the append fails, the entry is kept
//!   in memory, logged (`tracing`, error level, target `tradeflow::audit`) and appended
//!   first the next time anything is, so the chain keeps the order things happened in.
//!   While any entry waits, every append fails first on it: the engine starts no run and
//!   performs no audited operation until the log takes its entries again. (Rebalancing
//!   and resets return the error too, though what they did stands.)
//!
//! At most [`MAX_WAITING`] entries wait; past that, further ones are dropped and logged
//! (the runs that could end in that state are bounded by the live runs, since no run
//! starts while entries wait). Waiting entries live only in memory: a process that dies
//! with some loses them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use super::Inner;
use crate::audit::{AuditError, AuditEvent, AuditLog, AuditRecord};

/// The most entries kept waiting for a failing log.
pub const MAX_WAITING: usize = 10_000;

/// The engine's audit log, if any, and the entries waiting for it.
#[derive(Debug, Default)]
pub(crate) struct Auditor {
    log: Option<Arc<dyn AuditLog>>,
    waiting: Mutex<VecDeque<AuditRecord>>,
}

impl Auditor {
    pub(crate) fn new(log: Option<Arc<dyn AuditLog>>) -> Self {
        Self {
            log,
            waiting: Mutex::default(),
        }
    }

    /// Appends the waiting entries, then `record` if any: a waiting entry that fails
    /// stays first; `record` that fails is kept waiting when `keep` says so.
    fn append(&self, record: Option<AuditRecord>, keep: bool) -> Result<(), AuditError> {
        let Some(log) = &self.log else {
            return Ok(());
        };
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        let failed = |waiting: &mut VecDeque<AuditRecord>, record: Option<AuditRecord>, error| {
            if let Some(record) = record.filter(|_| keep) {
                if waiting.len() < MAX_WAITING {
                    waiting.push_back(record);
                } else {
                    tracing::error!(target: "tradeflow::audit", kind = record.event.kind(), "audit entry dropped: too many entries wait for the audit log");
                }
            }
            tracing::error!(target: "tradeflow::audit", error = %error, waiting = waiting.len(), "audit log append failed");
            Err(error)
        };
        while let Some(first) = waiting.front() {
            if let Err(error) = log.append(first.clone()) {
                return failed(&mut waiting, record, error);
            }
            waiting.pop_front();
        }
        if let Some(record) = record {
            if let Err(error) = log.append(record.clone()) {
                return failed(&mut waiting, Some(record), error);
            }
        }
        Ok(())
    }
}

impl Inner {
    /// Whether the engine has an audit log (entries are built only then).
    pub(crate) fn auditing(&self) -> bool {
        self.audit.log.is_some()
    }

    /// Appends `event`, asked by `actor`, before the operation it records: when this
    /// fails, the operation must not be performed. Without a log, does nothing.
    ///
    /// # Errors
    /// The log's error (an entry waiting before this one, or this one).
    pub(crate) fn audit(
        &self,
        actor: Option<&str>,
        event: impl FnOnce() -> AuditEvent,
    ) -> Result<(), AuditError> {
        self.audit_record(actor, event, false)
    }

    /// Appends `event`, which has happened: when this fails, the entry waits and is
    /// appended before the next one (see the module docs). The engine's permission
    /// refusals are audited through this, as `AuditEvent::PermissionRefused`.
    ///
    /// # Errors
    /// The log's error; the entry is kept waiting.
    pub(crate) fn audit_done(
        &self,
        actor: Option<&str>,
        event: impl FnOnce() -> AuditEvent,
    ) -> Result<(), AuditError> {
        self.audit_record(actor, event, true)
    }

    /// Builds and appends the record (kept waiting on failure when `keep` says so).
    fn audit_record(
        &self,
        actor: Option<&str>,
        event: impl FnOnce() -> AuditEvent,
        keep: bool,
    ) -> Result<(), AuditError> {
        if !self.auditing() {
            return Ok(());
        }
        let record = AuditRecord::new(self.clock.now(), actor, event());
        self.audit.append(Some(record), keep)
    }

    /// Appends the entries waiting, if any: whether the log takes entries now.
    ///
    /// # Errors
    /// The log's error.
    pub(crate) fn audit_ready(&self) -> Result<(), AuditError> {
        self.audit.append(None, false)
    }
}
