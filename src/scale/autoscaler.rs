//! The [`AutoScaler`]: reads the registry, asks the rules, acts through a [`Scaler`],
//! and announces what it did.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::rules::{self, LastScaling, ScalingInputs, ScalingPolicy, ScalingReason};
use super::{ScaleError, Scaler};
use crate::agent::AgentRegistry;
use crate::clock::Clock;
use crate::definition::AgentType;

/// What the host measures itself: its CPU and memory utilization, each in [0, 1].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct HostMetrics {
    /// CPU utilization.
    pub cpu: f64,
    /// Memory utilization.
    pub memory: f64,
}

impl HostMetrics {
    /// These utilizations.
    pub fn new(cpu: f64, memory: f64) -> Self {
        Self { cpu, memory }
    }
}

/// A scaling action taken: an event of the engine's agents, not of one run (so not a
/// [`RunEvent`](crate::engine::RunEvent)). Serialized as `{"at", "agentType", "from",
/// "to", "reason"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ScalingEvent {
    /// When (on the engine's clock).
    pub at: DateTime<Utc>,
    /// The type scaled.
    pub agent_type: AgentType,
    /// Instances before.
    pub from: usize,
    /// Instances after (what the scaler achieved, which may fall short of the decision).
    pub to: usize,
    /// Why.
    pub reason: ScalingReason,
}

type Listener = Box<dyn Fn(&ScalingEvent) + Send + Sync>;

/// Decides and acts: the host calls [`evaluate`](AutoScaler::evaluate) with its CPU and
/// memory for a type (on its own schedule: after each run, every few seconds), the
/// scaler reads the rest from the registry, applies the rules
/// ([`decide`](super::decide)) and acts through its [`Scaler`].
///
/// The scaler does not tick by itself: the library has no runtime to tick on, and the
/// host knows when its measurements are fresh. Every action is a [`ScalingEvent`],
/// given to the listeners ([`on_event`](AutoScaler::on_event)) and logged with
/// `tracing` (target `tradeflow::scale`).
pub struct AutoScaler {
    registry: Arc<AgentRegistry>,
    clock: Arc<dyn Clock>,
    scaler: Arc<dyn Scaler>,
    policies: BTreeMap<AgentType, ScalingPolicy>,
    last: Mutex<HashMap<AgentType, LastScaling>>,
    listeners: Vec<Listener>,
}

impl fmt::Debug for AutoScaler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AutoScaler")
            .field("policies", &self.policies)
            .finish_non_exhaustive()
    }
}

impl AutoScaler {
    /// A scaler of the agents in `registry`, timed on `clock` (the engine's:
    /// [`Engine::registry`](crate::engine::Engine::registry),
    /// [`Engine::clock`](crate::engine::Engine::clock)), acting through `scaler`. No
    /// type is scaled until it has a [`policy`](Self::policy).
    pub fn new(
        registry: Arc<AgentRegistry>,
        clock: Arc<dyn Clock>,
        scaler: Arc<dyn Scaler>,
    ) -> Self {
        Self {
            registry,
            clock,
            scaler,
            policies: BTreeMap::new(),
            last: Mutex::default(),
            listeners: Vec::new(),
        }
    }

    /// Scales `agent_type` within `policy`.
    #[must_use]
    pub fn policy(mut self, agent_type: impl Into<AgentType>, policy: ScalingPolicy) -> Self {
        self.policies.insert(agent_type.into(), policy);
        self
    }

    /// Calls `listener` with every scaling action, as it is taken.
    #[must_use]
    pub fn on_event(mut self, listener: impl Fn(&ScalingEvent) + Send + Sync + 'static) -> Self {
        self.listeners.push(Box::new(listener));
        self
    }

    fn last(&self) -> MutexGuard<'_, HashMap<AgentType, LastScaling>> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the rules read for `agent_type` now, with the host's metrics: the queue
    /// length, utilization and instances (drained ones not counted) from the registry.
    pub fn inputs(&self, agent_type: &AgentType, host: HostMetrics) -> ScalingInputs {
        let load = self.registry.load(agent_type);
        ScalingInputs::new(
            load.waiting,
            load.utilization(),
            load.instances.saturating_sub(load.drained),
            host.cpu,
            host.memory,
        )
    }

    /// Applies the rules to `agent_type` now and acts on them: `None` when nothing is
    /// to be done (or the type has no policy), else the action taken.
    ///
    /// # Errors
    /// The [`Scaler`]'s error; the cooldown starts anyway, so a failing host is not
    /// asked again at once.
    pub async fn evaluate(
        &self,
        agent_type: &AgentType,
        host: HostMetrics,
    ) -> Result<Option<ScalingEvent>, ScaleError> {
        let Some(policy) = self.policies.get(agent_type) else {
            return Ok(None);
        };
        let inputs = self.inputs(agent_type, host);
        let now = self.clock.now();
        let last = self.last().get(agent_type).copied();
        let Some(decision) = rules::decide(&inputs, policy, last, now) else {
            return Ok(None);
        };
        let up = decision.to > decision.from;
        self.last()
            .insert(agent_type.clone(), LastScaling::new(now, up));
        let changed = if up {
            self.scaler
                .add(agent_type, decision.to - decision.from)
                .await?
        } else {
            self.scaler
                .remove(agent_type, decision.from - decision.to)
                .await?
        };
        if changed == 0 {
            return Ok(None);
        }
        let to = if up {
            decision.from.saturating_add(changed)
        } else {
            decision.from.saturating_sub(changed)
        };
        let event = ScalingEvent {
            at: now,
            agent_type: agent_type.clone(),
            from: decision.from,
            to,
            reason: decision.reason,
        };
        tracing::info!(
            target: "tradeflow::scale",
            agent_type = %event.agent_type,
            from = event.from,
            to = event.to,
            reason = %event.reason,
            "agents scaled"
        );
        for listener in &self.listeners {
            listener(&event);
        }
        Ok(Some(event))
    }
}
