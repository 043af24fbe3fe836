//! Rebalancing the registry's agents by hand: what a host asks
//! ([`RebalanceCriteria`]), what changed ([`RebalanceReport`]), and why nothing did
//! ([`RebalanceError`]). [`AgentRegistry::rebalance`](super::AgentRegistry::rebalance)
//! applies them; see the [module documentation](super#rebalancing).

use std::collections::BTreeMap;

use serde::Serialize;

use super::AgentId;
use crate::definition::{AgentType, Quoted};

/// What a host asks of a rebalancing. Every part is optional; an empty one changes
/// nothing. Built with its methods:
///
/// ```
/// # use tradeflow::agent::RebalanceCriteria;
/// let criteria = RebalanceCriteria::new()
///     .drain(["exec-1"])
///     .weight("exec-2", 3.0)
///     .max_utilization(0.75);
/// assert_eq!(criteria.drain.len(), 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct RebalanceCriteria {
    /// Agents that take no new call from now on; their calls in flight finish.
    pub drain: Vec<AgentId>,
    /// Drained agents that take calls again.
    pub undrain: Vec<AgentId>,
    /// New weights (for the `WEIGHTED` balancer), by agent: finite and positive.
    pub weights: BTreeMap<AgentId, f64>,
    /// The utilization ceiling (busy slots / slots, in (0, 1]): a new selection passes
    /// over agents at or above it while an eligible agent below it has a free slot.
    /// `1` lifts a ceiling set before.
    pub max_utilization: Option<f64>,
}

impl RebalanceCriteria {
    /// Criteria that change nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds agents to drain.
    #[must_use]
    pub fn drain<I: Into<AgentId>>(mut self, agents: impl IntoIterator<Item = I>) -> Self {
        self.drain.extend(agents.into_iter().map(Into::into));
        self
    }

    /// Adds agents to undrain.
    #[must_use]
    pub fn undrain<I: Into<AgentId>>(mut self, agents: impl IntoIterator<Item = I>) -> Self {
        self.undrain.extend(agents.into_iter().map(Into::into));
        self
    }

    /// Sets an agent's new weight.
    #[must_use]
    pub fn weight(mut self, agent: impl Into<AgentId>, weight: f64) -> Self {
        self.weights.insert(agent.into(), weight);
        self
    }

    /// Sets the utilization ceiling.
    #[must_use]
    pub fn max_utilization(mut self, ceiling: f64) -> Self {
        self.max_utilization = Some(ceiling);
        self
    }
}

/// What a rebalancing changed, from
/// [`AgentRegistry::rebalance`](super::AgentRegistry::rebalance).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RebalanceReport {
    /// Agents drained by this rebalancing (not those drained before), by id.
    pub drained: Vec<AgentId>,
    /// Agents undrained by this rebalancing (not those that were not drained), by id.
    pub undrained: Vec<AgentId>,
    /// Weights changed, by agent id.
    pub reweighted: Vec<WeightChange>,
    /// Agent types that this rebalancing left with every agent drained: their calls
    /// wait until an agent is undrained or registered.
    pub last_agent_drained: Vec<AgentType>,
    /// The utilization ceiling, when the criteria set one: which agents it steers work
    /// off and onto now, and how many waiting calls it sent back to selection.
    pub utilization: Option<UtilizationMove>,
}

impl RebalanceReport {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.drained.is_empty()
            && self.undrained.is_empty()
            && self.reweighted.is_empty()
            && self.utilization.is_none()
    }
}

/// A weight changed by a rebalancing.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct WeightChange {
    /// The agent.
    pub agent: AgentId,
    /// Its weight before.
    pub from: f64,
    /// Its weight now.
    pub to: f64,
}

/// What a utilization ceiling did when it was set.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct UtilizationMove {
    /// The ceiling now.
    pub ceiling: f64,
    /// Agents at or above it (utilization = calls in flight / `max_concurrency`), by id:
    /// new calls go elsewhere while an agent below has a free slot.
    pub above: Vec<AgentId>,
    /// Agents below it that are not drained, by id: where work goes.
    pub below: Vec<AgentId>,
    /// Calls that were waiting for a slot, sent back to selection at once so they choose
    /// under the ceiling.
    pub reselected: usize,
}

/// Why a rebalancing changed nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RebalanceError {
    /// No agent with this id is registered.
    #[error("{field}: agent `{}` is not registered", Quoted(.agent.as_str()))]
    UnknownAgent {
        /// The part of the criteria that names it (`drain`, `undrain`, `weights`).
        field: &'static str,
        /// The agent.
        agent: AgentId,
    },
    /// The same agent is both drained and undrained.
    #[error("agent `{}` is both drained and undrained", Quoted(.agent.as_str()))]
    DrainAndUndrain {
        /// The agent.
        agent: AgentId,
    },
    /// A weight that is not finite and positive.
    #[error("weights: agent `{}` cannot weigh {weight}: weights are finite and positive", Quoted(.agent.as_str()))]
    InvalidWeight {
        /// The agent.
        agent: AgentId,
        /// The weight given.
        weight: f64,
    },
    /// A utilization ceiling outside (0, 1].
    #[error("maxUtilization {value} is not in (0, 1]")]
    InvalidUtilization {
        /// The ceiling given.
        value: f64,
    },
}
