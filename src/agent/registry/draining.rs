//! Rebalancing and load: draining, undraining and reweighing agents and the soft
//! utilization ceiling ([`AgentRegistry::rebalance`], see
//! [Rebalancing](crate::agent#rebalancing)), and how loaded the agents of a type are
//! ([`AgentRegistry::load`], what auto-scaling reads).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::AgentRegistry;
use crate::agent::AgentId;
use crate::agent::rebalance::{
    RebalanceCriteria, RebalanceError, RebalanceReport, UtilizationMove, WeightChange,
};
use crate::definition::AgentType;

impl AgentRegistry {
    /// Drains, undrains and reweighs agents, and sets the utilization ceiling, as
    /// `criteria` asks; returns what changed (see [Rebalancing](crate::agent#rebalancing)).
    ///
    /// Every part is checked before anything changes: on an error, nothing did. Each
    /// rebalancing that changes something is logged (`tracing::info!`, target
    /// `tradeflow::rebalance`), with what changed.
    ///
    /// # Errors
    /// [`RebalanceError::UnknownAgent`] for an id in `drain`, `undrain` or `weights`
    /// that no registered agent has; [`RebalanceError::DrainAndUndrain`];
    /// [`RebalanceError::InvalidWeight`] for a weight that is not finite and positive;
    /// [`RebalanceError::InvalidUtilization`] for a ceiling outside (0, 1].
    pub fn rebalance(
        &self,
        criteria: &RebalanceCriteria,
    ) -> Result<RebalanceReport, RebalanceError> {
        if let Some(value) = criteria.max_utilization {
            if !(value > 0.0 && value <= 1.0) {
                return Err(RebalanceError::InvalidUtilization { value });
            }
        }
        let mut report = RebalanceReport::default();
        {
            let agents = self.read();
            let known = |field: &'static str, id: &AgentId| {
                agents
                    .entry(id)
                    .map(Arc::clone)
                    .ok_or_else(|| RebalanceError::UnknownAgent {
                        field,
                        agent: id.clone(),
                    })
            };
            let mut drain = Vec::with_capacity(criteria.drain.len());
            for id in &criteria.drain {
                if criteria.undrain.contains(id) {
                    return Err(RebalanceError::DrainAndUndrain { agent: id.clone() });
                }
                drain.push(known("drain", id)?);
            }
            let mut undrain = Vec::with_capacity(criteria.undrain.len());
            for id in &criteria.undrain {
                undrain.push(known("undrain", id)?);
            }
            let mut weights = Vec::with_capacity(criteria.weights.len());
            for (id, &weight) in &criteria.weights {
                let entry = known("weights", id)?;
                if !(weight.is_finite() && weight > 0.0) {
                    return Err(RebalanceError::InvalidWeight {
                        agent: id.clone(),
                        weight,
                    });
                }
                weights.push((entry, weight));
            }
            // Checked: now apply, under the read lock so no agent leaves meanwhile.
            for entry in drain {
                if !entry.drained.swap(true, Ordering::AcqRel) {
                    report.drained.push(entry.descriptor.id.clone());
                }
            }
            for entry in undrain {
                if entry.drained.swap(false, Ordering::AcqRel) {
                    report.undrained.push(entry.descriptor.id.clone());
                }
            }
            for (entry, to) in weights {
                let from = f64::from_bits(entry.weight.swap(to.to_bits(), Ordering::AcqRel));
                if from.to_bits() != to.to_bits() {
                    report.reweighted.push(WeightChange {
                        agent: entry.descriptor.id.clone(),
                        from,
                        to,
                    });
                }
            }
            report.drained.sort();
            report.drained.dedup();
            report.undrained.sort();
            report.undrained.dedup();
            let mut types: Vec<&AgentType> = report
                .drained
                .iter()
                .filter_map(|id| agents.types.get(id))
                .collect();
            types.sort();
            types.dedup();
            report.last_agent_drained = types
                .into_iter()
                .filter(|agent_type| {
                    agents
                        .by_type
                        .get(*agent_type)
                        .is_some_and(|of_type| of_type.values().all(|entry| entry.is_drained()))
                })
                .cloned()
                .collect();
            if let Some(ceiling) = criteria.max_utilization {
                self.ceiling.store(ceiling.to_bits(), Ordering::Release);
                let (mut above, mut below) = (Vec::new(), Vec::new());
                for (id, entry) in agents
                    .types
                    .keys()
                    .filter_map(|id| Some((id, agents.entry(id)?)))
                {
                    if entry.utilization() >= ceiling {
                        above.push(id.clone());
                    } else if !entry.is_drained() {
                        below.push(id.clone());
                    }
                }
                let serials: Vec<u64> = agents
                    .by_type
                    .values()
                    .flat_map(BTreeMap::values)
                    .map(|entry| entry.serial)
                    .collect();
                report.utilization = Some(UtilizationMove {
                    ceiling,
                    above,
                    below,
                    reselected: self.notify.waiting_for(&serials),
                });
            }
        }
        if !report.is_empty() {
            tracing::info!(
                target: "tradeflow::rebalance",
                drained = ?report.drained,
                undrained = ?report.undrained,
                reweighted = report.reweighted.len(),
                last_agent_drained = ?report.last_agent_drained,
                max_utilization = ?criteria.max_utilization,
                "agents rebalanced"
            );
            // Drained agents leave the waiting callers' choices, undrained ones and a
            // new ceiling open others: every waiting caller selects again.
            self.notify.notify_all();
        }
        Ok(report)
    }

    /// Whether agent `id` is drained (`None`: not registered).
    pub fn is_drained(&self, id: &AgentId) -> Option<bool> {
        self.read().entry(id).map(|entry| entry.is_drained())
    }

    /// Agent `id`'s calls in flight now (`None`: not registered).
    pub fn in_flight(&self, id: &AgentId) -> Option<u32> {
        self.read()
            .entry(id)
            .map(|entry| entry.in_flight.load(Ordering::Acquire))
    }

    /// How loaded the agents of `agent_type` are now: what auto-scaling reads.
    ///
    /// # Complexity
    /// O(a + k × s) for the a agents of the type, the k kinds of callers waiting and
    /// the s agents each waits for.
    pub fn load(&self, agent_type: &AgentType) -> TypeLoad {
        let agents = self.read();
        let Some(of_type) = agents.by_type.get(agent_type) else {
            return TypeLoad::default();
        };
        let mut load = TypeLoad::default();
        let mut serials = Vec::with_capacity(of_type.len());
        for entry in of_type.values() {
            serials.push(entry.serial);
            load.instances += 1;
            if entry.is_drained() {
                load.drained += 1;
            } else {
                load.slots = load
                    .slots
                    .saturating_add(u64::from(entry.descriptor.max_concurrency));
            }
            load.busy = load
                .busy
                .saturating_add(u64::from(entry.in_flight.load(Ordering::Acquire)));
        }
        drop(agents);
        load.waiting = self.notify.waiting_for(&serials);
        load
    }
}

/// How loaded the agents of one type are, from [`AgentRegistry::load`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TypeLoad {
    /// Agents of the type registered, drained ones included.
    pub instances: usize,
    /// Of those, the drained ones.
    pub drained: usize,
    /// Slots (`max_concurrency`) of the agents not drained.
    pub slots: u64,
    /// Calls in flight on any of them (drained ones' included).
    pub busy: u64,
    /// Calls waiting for a slot on one of them (the queue length).
    pub waiting: usize,
}

impl TypeLoad {
    /// Busy slots / slots, in [0, 1] (1 when no slot is open, 0 with no agent busy).
    pub fn utilization(&self) -> f64 {
        if self.slots == 0 {
            return if self.busy > 0 || self.waiting > 0 {
                1.0
            } else {
                0.0
            };
        }
        #[allow(clippy::cast_precision_loss)]
        let u = self.busy as f64 / self.slots as f64;
        u.min(1.0)
    }
}
