//! The slot a selection reserved on an agent, held by the call's future and given back
//! when it is dropped: the agent's counter goes down, and the first waiting caller that
//! may use the agent is woken (every waiting caller when a circuit breaker is involved).

use std::any::Any;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

#[cfg(doc)]
use super::AgentRegistry;
use super::Entry;
use crate::agent::AgentId;
use crate::agent::notify::Notify;

/// A slot reserved on an agent. Dropping it frees the slot, completes pending
/// [`AgentRegistry::capacity_changed`] futures and wakes the first caller of
/// [`AgentRegistry::acquire`] in line that may use the agent.
#[must_use = "dropping the lease frees the slot at once"]
pub struct Lease {
    pub(super) entry: Arc<Entry>,
    pub(super) notify: Arc<Notify>,
    /// The number of the probe, when the call is its half-open breaker's probe.
    pub(super) probe: Option<u64>,
}

impl Lease {
    /// The agent the slot is on.
    pub fn agent(&self) -> &AgentId {
        &self.entry.descriptor.id
    }

    /// A handle that reads the agent's busy slots, before and after this lease ends
    /// (the metrics' utilization), without looking the agent up.
    pub(crate) fn slots(&self) -> SlotsInUse {
        SlotsInUse(Arc::clone(&self.entry))
    }

    /// Whether the call is the probe of the agent's half-open circuit breaker: its
    /// outcome ([`AgentRegistry::record`]) closes the breaker or opens it again.
    /// Dropping the lease before an outcome is recorded gives the probe up.
    pub fn is_probe(&self) -> bool {
        self.probe.is_some()
    }
}

/// Reads one agent's slots in use ([`Lease::slots`]).
pub(crate) struct SlotsInUse(Arc<Entry>);

impl SlotsInUse {
    /// Calls reserved on the agent now.
    pub(crate) fn busy(&self) -> u32 {
        self.0.in_flight.load(Ordering::Acquire)
    }

    /// The agent's slots (`max_concurrency`).
    pub(crate) fn total(&self) -> u32 {
        self.0.descriptor.max_concurrency
    }

    /// The agent.
    pub(crate) fn agent(&self) -> &AgentId {
        &self.0.descriptor.id
    }

    /// What a layer above keeps for the agent's registration: set by the first caller
    /// that asks, read by every call on the same registration after (an agent
    /// registered again starts with none).
    pub(crate) fn extension(&self) -> &OnceLock<Arc<dyn Any + Send + Sync>> {
        &self.0.extension
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Lease").field(self.agent()).finish()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let before = self.entry.in_flight.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before > 0, "a lease always holds a slot");
        let (abandoned, blocking) = {
            let mut stats = self.entry.stats();
            let abandoned = self.probe.is_some_and(|probe| stats.breaker.abandon(probe));
            (abandoned, stats.breaker.is_blocking())
        };
        if abandoned || blocking {
            // A probe's place is free again, or a slot on an agent whose breaker is open
            // (the line passes it over; it may be half open by now): every waiting
            // caller selects again. Rare: at most the calls in flight when it opened.
            self.notify.notify_all();
        } else {
            self.notify.released(&self.entry);
        }
    }
}
