//! Auto-scaling: the library decides how many agents of a type should run, and the
//! host acts.
//!
//! The library cannot start machines. It reads what a type's agents carry, applies
//! the rules, and asks a [`Scaler`] (which the host implements, or the in-process
//! [`AgentPool`]) to add or remove instances.
//!
//! # Inputs
//! Per agent type ([`ScalingInputs`]): `queue_length`, the calls waiting for a slot on
//! one of its agents; `utilization`, busy slots / slots; `instances`, its agents taking
//! calls (drained ones not counted), all three read from the
//! [`AgentRegistry`](crate::agent::AgentRegistry) ([`AgentRegistry::load`]); and the
//! host's `cpu` and `memory` utilization ([`HostMetrics`], each in [0, 1]), which the
//! host measures and passes in. A call counts in the queue while it waits in the
//! registry's line for a slot (see [Waiting for
//! capacity](crate::agent#waiting-for-capacity)); a `parallel` step keeps only its next
//! item in line, however many are left, so many concurrent runs build a queue and one
//! large fan-out does not.
//!
//! # Rules
//! [`decide`], a pure function:
//!
//! - **Up** when `cpu > 0.8` or `memory > 0.85` or `queue_length > 10 × instances`:
//!   to `instances + ceil(50% of instances)` (at least one more), capped at the
//!   policy's `max`.
//! - **Down** when `cpu < 0.3` and `memory < 0.4` and `queue_length = 0` and
//!   `instances > min`: to `instances − 1`.
//! - **Cooldown** (default 60 s, [`ScalingPolicy::cooldown`], on the engine's clock):
//!   no action on a type within it after the type's last action, up or down; at its
//!   end exactly the rules apply again. So a scale-down never follows a scale-up within
//!   the cooldown (no flapping).
//!
//! # Acting
//! An [`AutoScaler`] holds a [`ScalingPolicy`] (min, max, cooldown) per type. The
//! host calls [`AutoScaler::evaluate`] with a type and its [`HostMetrics`] whenever it
//! has fresh measurements (the scaler does not tick by itself: there is no runtime in
//! the library to tick on). It reads the registry, decides, and calls the [`Scaler`]'s
//! [`add`](Scaler::add) or [`remove`](Scaler::remove). Each action taken is a
//! [`ScalingEvent`] (`{at, agentType, from, to, reason}`), returned, given to the
//! listeners ([`AutoScaler::on_event`]) and logged with `tracing` (target
//! `tradeflow::scale`). Scaling events are the engine's, not a run's: they are a type of
//! their own, not a [`RunEvent`](crate::engine::RunEvent), and are not journaled.
//!
//! [`AgentPool`] is the default scaler: in-process agents of a type made by a factory,
//! `min` to `max` of them, ids `<TYPE>-pool-<n>`; removed agents are drained first
//! (their calls in flight finish) and deregistered once idle.
//!
//! [`AgentRegistry::load`]: crate::agent::AgentRegistry::load
//!
//! # Example
//! ```
//! # use std::sync::Arc;
//! # use chrono::{TimeZone, Utc};
//! # use tradeflow::agent::{Agent, AgentDescriptor, AgentError, AgentId, TaskRequest};
//! # use tradeflow::clock::VirtualClock;
//! # use tradeflow::engine::Engine;
//! # use tradeflow::scale::{AgentPool, AutoScaler, HostMetrics, ScalingPolicy, ScalingReason};
//! # struct Risk(AgentDescriptor);
//! # #[tradeflow::async_trait]
//! # impl Agent for Risk {
//! #     fn descriptor(&self) -> &AgentDescriptor { &self.0 }
//! #     async fn execute(&self, r: TaskRequest) -> Result<serde_json::Value, AgentError> { Ok(r.parameters) }
//! # }
//! let clock = VirtualClock::starting_at(Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap());
//! let engine = Engine::builder().clock(clock.clone()).build();
//! let pool = Arc::new(AgentPool::new(Arc::clone(engine.registry())));
//! pool.add_pool("RISK", 1, 4, Arc::new(|id: AgentId| {
//!     Arc::new(Risk(AgentDescriptor::new(id, "RISK"))) as Arc<dyn Agent>
//! }))?;
//! let scaler = AutoScaler::new(Arc::clone(engine.registry()), Arc::clone(engine.clock()), pool)
//!     .policy("RISK", ScalingPolicy::new(1, 4));
//!
//! let hot = clock.block_on(scaler.evaluate(&"RISK".into(), HostMetrics::new(0.95, 0.5)))?;
//! let event = hot.expect("cpu above 0.8 scales up");
//! assert_eq!((event.from, event.to, event.reason), (1, 2, ScalingReason::Cpu));
//! // Within the cooldown nothing happens, however idle the host.
//! let idle = clock.block_on(scaler.evaluate(&"RISK".into(), HostMetrics::new(0.1, 0.1)))?;
//! assert!(idle.is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod autoscaler;
mod pool;
mod rules;

pub use autoscaler::{AutoScaler, HostMetrics, ScalingEvent};
pub use pool::{AgentFactory, AgentPool, Scaler};
pub use rules::{
    CPU_HIGH, CPU_LOW, DEFAULT_COOLDOWN, LastScaling, MEMORY_HIGH, MEMORY_LOW, QUEUE_PER_INSTANCE,
    ScalingDecision, ScalingInputs, ScalingPolicy, ScalingReason, decide,
};

use crate::agent::{AgentId, RegistryError};
use crate::definition::{AgentType, Quoted};

/// Why a scaling action failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ScaleError {
    /// The scaler has no pool of this type.
    #[error("no agent pool of type `{}`", Quoted(.agent_type.as_str()))]
    UnknownPool {
        /// The type.
        agent_type: AgentType,
    },
    /// The type has a pool already.
    #[error("agent type `{}` has a pool already", Quoted(.agent_type.as_str()))]
    DuplicatePool {
        /// The type.
        agent_type: AgentType,
    },
    /// A pool's bounds are impossible.
    #[error("pool of `{}`: max {max} is below min {min} or zero", Quoted(.agent_type.as_str()))]
    InvalidLimits {
        /// The type.
        agent_type: AgentType,
        /// The minimum given.
        min: usize,
        /// The maximum given.
        max: usize,
    },
    /// A pool's factory made an agent with another id or type than asked.
    #[error(
        "pool of `{}`: the factory made agent `{}` of type `{}` when asked for `{}`",
        Quoted(.agent_type.as_str()),
        Quoted(.made.as_str()),
        Quoted(.made_type.as_str()),
        Quoted(.expected.as_str())
    )]
    Factory {
        /// The pool's type.
        agent_type: AgentType,
        /// The id asked for.
        expected: AgentId,
        /// The id made.
        made: AgentId,
        /// The type made.
        made_type: AgentType,
    },
    /// A pool's agent could not be registered.
    #[error("pool of `{}`: an agent could not be registered", Quoted(.agent_type.as_str()))]
    Registry {
        /// The pool's type.
        agent_type: AgentType,
        /// The registry's refusal.
        source: RegistryError,
    },
    /// The host's scaler could not act.
    #[error("scaling `{}` failed: {}", Quoted(.agent_type.as_str()), Quoted(.reason))]
    Host {
        /// The type.
        agent_type: AgentType,
        /// Why, in the host's words.
        reason: String,
    },
}
