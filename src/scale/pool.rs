//! The [`Scaler`] trait, by which the host adds and removes instances, and the
//! in-process [`AgentPool`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::ScaleError;
use crate::agent::{Agent, AgentId, AgentRegistry, RebalanceCriteria};
use crate::definition::AgentType;

/// Adds and removes instances of an agent type: what the host implements to act on
/// the [`AutoScaler`](super::AutoScaler)'s decisions (start a process or a machine and
/// register its agent; drain and stop one). [`AgentPool`] is the in-process one.
#[async_trait::async_trait]
pub trait Scaler: Send + Sync {
    /// Adds up to `count` instances of `agent_type`; returns how many it added.
    ///
    /// # Errors
    /// A [`ScaleError`] naming the type and what failed; nothing the caller can undo.
    async fn add(&self, agent_type: &AgentType, count: usize) -> Result<usize, ScaleError>;

    /// Removes up to `count` instances of `agent_type` (draining them first, so their
    /// calls in flight finish); returns how many it removed.
    ///
    /// # Errors
    /// A [`ScaleError`] naming the type and what failed.
    async fn remove(&self, agent_type: &AgentType, count: usize) -> Result<usize, ScaleError>;
}

/// Makes the agent of an [`AgentPool`] with this id (its descriptor must have that id
/// and the pool's type).
pub type AgentFactory = Arc<dyn Fn(AgentId) -> Arc<dyn Agent> + Send + Sync>;

/// A [`Scaler`] of in-process agents: per agent type, a factory, a minimum and a
/// maximum.
///
/// - A pool registers its `min` agents when it is added ([`AgentPool::add_pool`]).
/// - **Adding** makes agents with the factory, ids `<TYPE>-pool-<n>` (`n` from 1,
///   never reused), registers them, and stops at `max`.
/// - **Removing** takes the newest agents first and never goes below `min`: each is
///   drained at once (no new call; calls in flight finish) and counts as removed; it
///   is deregistered once it has no call in flight, by the next
///   [`reap`](AgentPool::reap) (which every add and remove runs first).
///
/// ```
/// # use std::sync::Arc;
/// # use tradeflow::agent::{Agent, AgentDescriptor, AgentError, AgentId, AgentRegistry, TaskRequest};
/// # use tradeflow::scale::{AgentPool, Scaler};
/// # struct Risk(AgentDescriptor);
/// # #[tradeflow::async_trait]
/// # impl Agent for Risk {
/// #     fn descriptor(&self) -> &AgentDescriptor { &self.0 }
/// #     async fn execute(&self, r: TaskRequest) -> Result<serde_json::Value, AgentError> { Ok(r.parameters) }
/// # }
/// let registry = Arc::new(AgentRegistry::new());
/// let pool = AgentPool::new(Arc::clone(&registry));
/// pool.add_pool("RISK", 1, 3, Arc::new(|id: AgentId| {
///     Arc::new(Risk(AgentDescriptor::new(id, "RISK"))) as Arc<dyn Agent>
/// }))?;
/// assert_eq!(pool.instances(&"RISK".into()), 1);
/// let added = futures::executor::block_on(pool.add(&"RISK".into(), 5))?;
/// assert_eq!(added, 2, "capped at max");
/// assert!(registry.agent(&"RISK-pool-3".into()).is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct AgentPool {
    registry: Arc<AgentRegistry>,
    pools: Mutex<BTreeMap<AgentType, Pool>>,
}

struct Pool {
    min: usize,
    max: usize,
    factory: AgentFactory,
    /// The last `n` used.
    serial: u64,
    /// Agents taking calls, oldest first.
    live: Vec<AgentId>,
    /// Drained agents waiting for their calls in flight to end.
    retiring: Vec<AgentId>,
}

impl fmt::Debug for AgentPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pools = self.pools();
        let mut map = f.debug_map();
        for (agent_type, pool) in pools.iter() {
            map.entry(
                agent_type,
                &format_args!(
                    "min {} max {} live {:?} retiring {:?}",
                    pool.min, pool.max, pool.live, pool.retiring
                ),
            );
        }
        map.finish()
    }
}

impl AgentPool {
    /// A scaler with no pool, registering agents in `registry` (the engine's:
    /// [`Engine::registry`](crate::engine::Engine::registry)).
    pub fn new(registry: Arc<AgentRegistry>) -> Self {
        Self {
            registry,
            pools: Mutex::default(),
        }
    }

    fn pools(&self) -> MutexGuard<'_, BTreeMap<AgentType, Pool>> {
        // Updates are a few vector operations that cannot panic halfway.
        self.pools.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds the pool of `agent_type`, `min` to `max` agents made by `factory`, and
    /// registers its `min` agents.
    ///
    /// # Errors
    /// [`ScaleError::InvalidLimits`] when `max` is below `min` or is 0;
    /// [`ScaleError::DuplicatePool`] when the type has a pool;
    /// [`ScaleError::Factory`] or [`ScaleError::Registry`] when an agent cannot be
    /// made or registered (those registered stay).
    pub fn add_pool(
        &self,
        agent_type: impl Into<AgentType>,
        min: usize,
        max: usize,
        factory: AgentFactory,
    ) -> Result<(), ScaleError> {
        let agent_type = agent_type.into();
        if max < min || max == 0 {
            return Err(ScaleError::InvalidLimits {
                agent_type,
                min,
                max,
            });
        }
        {
            let mut pools = self.pools();
            if pools.contains_key(&agent_type) {
                return Err(ScaleError::DuplicatePool { agent_type });
            }
            pools.insert(
                agent_type.clone(),
                Pool {
                    min,
                    max,
                    factory,
                    serial: 0,
                    live: Vec::new(),
                    retiring: Vec::new(),
                },
            );
        }
        self.grow(&agent_type, min).map(|_| ())
    }

    /// Agents of `agent_type`'s pool taking calls (not those drained and retiring).
    pub fn instances(&self, agent_type: &AgentType) -> usize {
        self.pools()
            .get(agent_type)
            .map_or(0, |pool| pool.live.len())
    }

    /// The agent types with a pool, in order.
    pub fn types(&self) -> Vec<AgentType> {
        self.pools().keys().cloned().collect()
    }

    /// Deregisters the retiring agents with no call in flight; returns them.
    pub fn reap(&self) -> Vec<AgentId> {
        let mut reaped = Vec::new();
        let mut pools = self.pools();
        for pool in pools.values_mut() {
            pool.retiring.retain(|id| {
                let idle = self.registry.in_flight(id).is_none_or(|n| n == 0);
                if idle {
                    self.registry.deregister(id);
                    reaped.push(id.clone());
                }
                !idle
            });
        }
        reaped
    }

    fn grow(&self, agent_type: &AgentType, count: usize) -> Result<usize, ScaleError> {
        let mut added = 0;
        while added < count {
            let (id, factory) = {
                let mut pools = self.pools();
                let Some(pool) = pools.get_mut(agent_type) else {
                    return Err(ScaleError::UnknownPool {
                        agent_type: agent_type.clone(),
                    });
                };
                if pool.live.len() >= pool.max {
                    break;
                }
                pool.serial = pool.serial.saturating_add(1);
                let id = AgentId::from(format!("{agent_type}-pool-{}", pool.serial));
                (id, Arc::clone(&pool.factory))
            };
            // The factory is the host's code: called with no lock held.
            let agent = factory(id.clone());
            let descriptor = agent.descriptor();
            if descriptor.id != id || descriptor.agent_type != *agent_type {
                return Err(ScaleError::Factory {
                    agent_type: agent_type.clone(),
                    expected: id,
                    made: descriptor.id.clone(),
                    made_type: descriptor.agent_type.clone(),
                });
            }
            self.registry
                .register(agent)
                .map_err(|source| ScaleError::Registry {
                    agent_type: agent_type.clone(),
                    source,
                })?;
            if let Some(pool) = self.pools().get_mut(agent_type) {
                pool.live.push(id);
            }
            added += 1;
        }
        Ok(added)
    }
}

#[async_trait::async_trait]
impl Scaler for AgentPool {
    async fn add(&self, agent_type: &AgentType, count: usize) -> Result<usize, ScaleError> {
        self.reap();
        self.grow(agent_type, count)
    }

    async fn remove(&self, agent_type: &AgentType, count: usize) -> Result<usize, ScaleError> {
        self.reap();
        let drained: Vec<AgentId> = {
            let mut pools = self.pools();
            let Some(pool) = pools.get_mut(agent_type) else {
                return Err(ScaleError::UnknownPool {
                    agent_type: agent_type.clone(),
                });
            };
            let keep = pool.live.len().saturating_sub(count).max(pool.min);
            let drained = pool.live.split_off(keep.min(pool.live.len()));
            pool.retiring.extend(drained.iter().cloned());
            drained
        };
        if !drained.is_empty() {
            // Every id is the pool's own, registered: this cannot be refused, but an
            // agent a host deregistered behind the pool's back is simply gone.
            let criteria = RebalanceCriteria::new().drain(
                drained
                    .iter()
                    .filter(|id| self.registry.is_drained(id).is_some())
                    .cloned(),
            );
            if let Err(error) = self.registry.rebalance(&criteria) {
                tracing::warn!(%error, "draining pool agents");
            }
        }
        let removed = drained.len();
        self.reap();
        Ok(removed)
    }
}
