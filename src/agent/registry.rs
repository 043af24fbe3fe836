//! The registry of agents: registration, and the state every agent's entry keeps (its
//! slots, drained flag, weight, health, history and circuit breaker).
//!
//! The registry's work is split by concern, each in a file beside this one:
//! - `selection`: scoring the candidates of a call, the margin, the balancer's pick and
//!   the reservation of a slot ([`AgentRegistry::select`]);
//! - `lease`: the reserved slot, given back when dropped ([`Lease`]);
//! - `wait`: waiting for capacity, in turn ([`AgentRegistry::acquire`],
//!   [`AgentRegistry::capacity_changed`]);
//! - `outcomes`: what calls teach the registry — history, rewards, health and the
//!   circuit breakers' bookkeeping ([`AgentRegistry::record`]);
//! - `draining`: rebalancing (drain, undrain, reweigh, the utilization ceiling) and the
//!   load of a type ([`AgentRegistry::rebalance`], [`AgentRegistry::load`]).
//!
//! All of them work on the entries kept here, under the registry's `RwLock` (held for a
//! few map operations, never across an `.await` or a call into an agent or a balancer)
//! and each entry's stats lock.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{
    Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
};

use super::breaker::{Breaker, CircuitBreaker};
use super::notify::Notify;
use super::score::History;
use super::select::RegistryError;
use super::{Agent, AgentDescriptor, AgentId, Health};
use crate::clock::{Clock, SystemClock};
use crate::definition::{AgentType, TaskType};

mod draining;
mod lease;
mod outcomes;
mod selection;
#[cfg(test)]
mod testing;
mod wait;

pub use draining::TypeLoad;
pub use lease::Lease;
pub(crate) use lease::SlotsInUse;
pub use selection::Selection;

/// Candidates whose total is within this much of the best total are "the best", among
/// which the balancer chooses. 0.05 is what one call in flight costs an agent of four
/// slots (0.20 × 1/4), or a tenth of the capability component.
pub const DEFAULT_MARGIN: f64 = 0.05;

/// The agents a trading bot has registered, and the selection of one per call.
///
/// Thread-safe and cheap to share behind an `Arc`: agents may join and leave while runs
/// are going on. Locks are held only for a few map operations and never across an
/// `.await` or a call into an agent or a balancer.
///
/// See the [module documentation](super) for how candidates are scored and chosen.
///
/// # Examples
/// ```
/// use std::sync::Arc;
///
/// use rand::SeedableRng;
/// use rand::rngs::StdRng;
/// use tradeflow::agent::{
///     Agent, AgentDescriptor, AgentError, AgentRegistry, SelectError, TaskRequest, balancer_for,
/// };
/// use tradeflow::definition::LoadBalancing;
/// use tradeflow::plan::ExecutionPlan;
///
/// struct Venue(AgentDescriptor);
///
/// #[tradeflow::async_trait]
/// impl Agent for Venue {
///     fn descriptor(&self) -> &AgentDescriptor {
///         &self.0
///     }
///     async fn execute(&self, request: TaskRequest) -> Result<serde_json::Value, AgentError> {
///         Ok(request.parameters)
///     }
/// }
///
/// let registry = AgentRegistry::new();
/// let twap = AgentDescriptor::new("exec-1", "TRADING_EXECUTION").with_capabilities(["twap"]);
/// registry.register(Arc::new(Venue(twap)))?;
///
/// let plan = ExecutionPlan::from_json(r#"{"id": "w", "steps": [{"id": "trade", "type": "task",
///     "agentCriteria": {"type": "TRADING_EXECUTION", "requiredCapabilities": ["twap"]},
///     "task": {"type": "ORDER_EXECUTION"}}]}"#)?;
/// let task = plan.steps()[0].agent_task().expect("a task step");
/// let balancer = balancer_for(task.load_balancing.unwrap_or(LoadBalancing::LeastConnections));
/// let mut rng = StdRng::seed_from_u64(7);
///
/// let selection = registry.select(task, &*balancer, &mut rng, &[])?;
/// assert_eq!(selection.candidate.agent, "exec-1");
/// // Its only slot is taken until the lease is dropped.
/// let busy = registry.select(task, &*balancer, &mut rng, &[]).unwrap_err();
/// assert!(matches!(busy, SelectError::AllBusy { .. }));
/// drop(selection);
/// assert!(registry.select(task, &*balancer, &mut rng, &[]).is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct AgentRegistry {
    agents: RwLock<Agents>,
    notify: Arc<Notify>,
    margin: f64,
    counts: Counts,
    /// The time of circuit breakers (and of waiting for one to turn half open).
    clock: Arc<dyn Clock>,
    /// The breaker of agents whose descriptor names none; none: off.
    circuit_breaker: Option<CircuitBreaker>,
    /// The utilization ceiling of [`AgentRegistry::rebalance`] (f64 bits; 1: none).
    ceiling: AtomicU64,
}

/// Builds an [`AgentRegistry`]: the margin, the clock of its circuit breakers and their
/// default settings. From [`AgentRegistry::builder`].
///
/// ```
/// # use std::time::Duration;
/// # use chrono::{TimeZone, Utc};
/// use tradeflow::agent::{AgentRegistry, CircuitBreaker};
/// use tradeflow::clock::VirtualClock;
///
/// let clock = VirtualClock::starting_at(Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap());
/// let registry = AgentRegistry::builder()
///     .clock(clock.clone())
///     .circuit_breaker(CircuitBreaker::new(3, Duration::from_secs(10)))
///     .build();
/// # let _ = registry;
/// ```
pub struct RegistryBuilder {
    margin: f64,
    clock: Arc<dyn Clock>,
    circuit_breaker: Option<CircuitBreaker>,
}

impl fmt::Debug for RegistryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryBuilder")
            .field("margin", &self.margin)
            .field("clock", &self.clock)
            .field("circuit_breaker", &self.circuit_breaker)
            .finish()
    }
}

impl RegistryBuilder {
    /// Balancers choose among candidates scoring within `margin` of the best (0: only
    /// the best; 1: every candidate with spare capacity); values outside [0, 1] are
    /// clamped, NaN is 0. Defaults to [`DEFAULT_MARGIN`].
    #[must_use]
    pub fn margin(mut self, margin: f64) -> Self {
        self.margin = if margin.is_nan() {
            0.0
        } else {
            margin.clamp(0.0, 1.0)
        };
        self
    }

    /// Where circuit breakers take the time from, and sleep on while a caller waits for
    /// one to turn half open: give it the engine's clock (a
    /// [`VirtualClock`](crate::clock::VirtualClock) in simulations). Defaults to
    /// [`SystemClock`].
    #[must_use]
    pub fn clock(self, clock: impl Clock + 'static) -> Self {
        self.shared_clock(Arc::new(clock))
    }

    /// [`clock`](Self::clock), already shared.
    pub(crate) fn shared_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The circuit breaker of every agent whose descriptor names none
    /// ([`AgentDescriptor::with_circuit_breaker`]); `None` switches those off. Defaults
    /// to [`CircuitBreaker::DEFAULT`]: 5 consecutive failures open it for 30 s.
    #[must_use]
    pub fn circuit_breaker(mut self, breaker: impl Into<Option<CircuitBreaker>>) -> Self {
        self.circuit_breaker = breaker.into();
        self
    }

    /// The registry, empty.
    pub fn build(self) -> AgentRegistry {
        AgentRegistry {
            agents: RwLock::default(),
            notify: Arc::default(),
            margin: self.margin,
            counts: Counts::default(),
            clock: self.clock,
            circuit_breaker: self.circuit_breaker,
            ceiling: AtomicU64::new(1.0_f64.to_bits()),
        }
    }
}

/// What selections found, counted as they happen.
#[derive(Default)]
struct Counts {
    reserved: AtomicU64,
    busy: AtomicU64,
}

/// Registered agents, indexed by type so that selection looks only at agents of the
/// type asked for.
#[derive(Default)]
struct Agents {
    by_type: HashMap<AgentType, BTreeMap<AgentId, Arc<Entry>>>,
    types: BTreeMap<AgentId, AgentType>,
    /// The serial number of the last registration.
    serial: u64,
}

impl Agents {
    fn entry(&self, id: &AgentId) -> Option<&Arc<Entry>> {
        let agent_type = self.types.get(id)?;
        self.by_type.get(agent_type)?.get(id)
    }
}

/// A registered agent and its counters (shared with its leases and the waiting line).
pub(super) struct Entry {
    /// Numbers registrations, so a line of waiting callers can name the agents it wants.
    serial: u64,
    agent: Arc<dyn Agent>,
    /// Read once at registration.
    descriptor: AgentDescriptor,
    /// Calls reserved and not yet released; never above `descriptor.max_concurrency`.
    in_flight: AtomicU32,
    /// Cleared on deregistration, under the write lock; reservations check it under the
    /// read lock, so no lease is granted after `deregister` returns.
    registered: AtomicBool,
    /// Set by a rebalancing: the agent takes no new call.
    drained: AtomicBool,
    /// Its weight for the `WEIGHTED` balancer (f64 bits): the descriptor's until a
    /// rebalancing changes it.
    weight: AtomicU64,
    stats: Mutex<Stats>,
    /// What a layer above keeps for this registration (the engine's metrics of the
    /// agent, so a call finds them through its lease without a lookup): set by the first
    /// to ask, kept while the registration lives.
    extension: OnceLock<Arc<dyn Any + Send + Sync>>,
}

impl Entry {
    fn stats(&self) -> MutexGuard<'_, Stats> {
        // Stats are updated by single assignments, never left half-written.
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a slot if there is one.
    fn try_reserve(&self) -> bool {
        let max = self.descriptor.max_concurrency;
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Its registration's serial number.
    pub(super) fn serial(&self) -> u64 {
        self.serial
    }

    /// Whether a rebalancing drained it.
    fn is_drained(&self) -> bool {
        self.drained.load(Ordering::Acquire)
    }

    /// Its weight now.
    fn weight(&self) -> f64 {
        f64::from_bits(self.weight.load(Ordering::Acquire))
    }

    /// Its utilization now: calls in flight / `max_concurrency`.
    fn utilization(&self) -> f64 {
        let in_flight = self.in_flight.load(Ordering::Acquire);
        f64::from(in_flight) / f64::from(self.descriptor.max_concurrency.max(1))
    }

    /// Its slots free now; none once deregistered or while drained.
    pub(super) fn free_slots(&self) -> u32 {
        if !self.registered.load(Ordering::Acquire) || self.is_drained() {
            return 0;
        }
        let in_flight = self.in_flight.load(Ordering::Acquire);
        self.descriptor.max_concurrency.saturating_sub(in_flight)
    }

    /// Whether its health is [`Health::Unhealthy`].
    pub(super) fn is_unhealthy(&self) -> bool {
        self.stats().health == Health::Unhealthy
    }

    /// Whether its circuit breaker is open or probing (whatever the time).
    pub(super) fn is_blocking(&self) -> bool {
        self.stats().breaker.is_blocking()
    }
}

struct Stats {
    health: Health,
    /// Failures other than `PERMANENT` since the last success.
    consecutive_failures: u32,
    history: HashMap<TaskType, History>,
    breaker: Breaker,
}

impl Stats {
    fn new(breaker: Option<CircuitBreaker>) -> Self {
        Self {
            health: Health::default(),
            consecutive_failures: 0,
            history: HashMap::new(),
            breaker: Breaker::new(breaker),
        }
    }
}

impl Default for AgentRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for AgentRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentRegistry")
            .field("agents", &self.read().types)
            .field("margin", &self.margin)
            .finish_non_exhaustive()
    }
}
impl AgentRegistry {
    /// An empty registry with the [`DEFAULT_MARGIN`], circuit breakers at
    /// [`CircuitBreaker::DEFAULT`] on the [`SystemClock`] (see [`builder`](Self::builder)
    /// for other settings).
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// An empty registry whose balancers choose among candidates scoring within `margin`
    /// of the best (0: only the best; 1: every candidate with spare capacity). Values
    /// outside [0, 1] are clamped. [`AgentRegistry::new`] uses [`DEFAULT_MARGIN`].
    pub fn with_margin(margin: f64) -> Self {
        Self::builder().margin(margin).build()
    }

    /// A builder, with every setting at its default: the [`DEFAULT_MARGIN`], the
    /// [`SystemClock`], circuit breakers at [`CircuitBreaker::DEFAULT`].
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder {
            margin: DEFAULT_MARGIN,
            clock: Arc::new(SystemClock),
            circuit_breaker: Some(CircuitBreaker::DEFAULT),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Agents> {
        // Every update of `Agents` is a few map operations that cannot panic halfway.
        self.agents.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Agents> {
        self.agents.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds an agent; it can be selected at once, and waiting callers are woken.
    ///
    /// The descriptor is read now; later changes to it are not seen.
    ///
    /// # Errors
    /// [`RegistryError::DuplicateId`] when an agent with the same id is registered;
    /// [`RegistryError::InvalidDescriptor`] when its weight is not finite and positive,
    /// its `max_concurrency` is 0, or its circuit breaker's `failures` is 0 or its
    /// `open_for` longer than [`MAX_DURATION_MS`](crate::plan::MAX_DURATION_MS).
    pub fn register(&self, agent: Arc<dyn Agent>) -> Result<(), RegistryError> {
        let descriptor = agent.descriptor().clone();
        if let Some(problem) = descriptor.problem() {
            return Err(RegistryError::InvalidDescriptor {
                id: descriptor.id,
                problem,
            });
        }
        {
            let mut agents = self.write();
            if agents.types.contains_key(&descriptor.id) {
                return Err(RegistryError::DuplicateId { id: descriptor.id });
            }
            let id = descriptor.id.clone();
            let agent_type = descriptor.agent_type.clone();
            agents.serial += 1;
            let breaker = descriptor.circuit_breaker.or(self.circuit_breaker);
            let weight = descriptor.weight;
            let entry = Arc::new(Entry {
                serial: agents.serial,
                agent,
                descriptor,
                in_flight: AtomicU32::new(0),
                registered: AtomicBool::new(true),
                drained: AtomicBool::new(false),
                weight: AtomicU64::new(weight.to_bits()),
                stats: Mutex::new(Stats::new(breaker)),
                extension: OnceLock::new(),
            });
            agents.types.insert(id.clone(), agent_type.clone());
            agents
                .by_type
                .entry(agent_type)
                .or_default()
                .insert(id, entry);
        }
        self.notify.notify_all();
        Ok(())
    }

    /// Removes an agent: calls in flight finish (their leases stay valid), no new call
    /// goes to it once this returns. Its history, health and slot count are forgotten:
    /// registering the id again starts afresh, even while calls of the old registration
    /// are still in flight. Returns whether the agent was registered.
    pub fn deregister(&self, id: &AgentId) -> bool {
        {
            let mut agents = self.write();
            let Some(agent_type) = agents.types.remove(id) else {
                return false;
            };
            let of_type = agents.by_type.get_mut(&agent_type);
            let entry = of_type.and_then(|of_type| of_type.remove(id));
            debug_assert!(entry.is_some(), "the two indexes agree");
            if let Some(entry) = entry {
                // Under the write lock: a reservation that raced us sees it.
                entry.registered.store(false, Ordering::Release);
            }
            if agents
                .by_type
                .get(&agent_type)
                .is_some_and(BTreeMap::is_empty)
            {
                agents.by_type.remove(&agent_type);
            }
        }
        // Waiters may now have no agent at all (NoAgent) or only unhealthy ones left.
        self.notify.notify_all();
        true
    }

    /// The descriptors of every registered agent, by id, with the weight a rebalancing
    /// gave it (else the registered one).
    pub fn agents(&self) -> Vec<AgentDescriptor> {
        let agents = self.read();
        agents
            .types
            .keys()
            .filter_map(|id| agents.entry(id))
            .map(|entry| {
                let mut descriptor = entry.descriptor.clone();
                descriptor.weight = entry.weight();
                descriptor
            })
            .collect()
    }

    /// The registered agent with this id.
    pub fn agent(&self, id: &AgentId) -> Option<Arc<dyn Agent>> {
        self.read().entry(id).map(|entry| Arc::clone(&entry.agent))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{registry, stub};
    use super::*;
    use crate::agent::notify::CapacityChanged;
    use crate::agent::select::{
        Candidate, RegistryError, RewardError, SelectError, SelectionCounts,
    };
    use crate::agent::{CircuitBreaker, CircuitState};

    #[test]
    fn registration_rules() {
        let registry = registry(&[("a", 1)]);
        let again = registry.register(stub(AgentDescriptor::new("a", "U")));
        assert_eq!(
            again.unwrap_err().to_string(),
            "agent `a` is already registered"
        );
        let invalid = registry.register(stub(AgentDescriptor::new("b", "T").with_weight(-1.0)));
        assert_eq!(
            invalid.unwrap_err().to_string(),
            "agent `b`: weight must be finite and greater than 0"
        );
        assert_eq!(registry.agents().len(), 1);
        assert!(registry.agent(&AgentId::from("a")).is_some());
        assert!(registry.deregister(&AgentId::from("a")));
        assert!(!registry.deregister(&AgentId::from("a")));
        assert!(registry.read().by_type.is_empty());
    }

    #[test]
    fn shared_types_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<AgentRegistry>();
        assert_send_sync::<Selection>();
        assert_send_sync::<Lease>();
        assert_send_sync::<CapacityChanged>();
        assert_send_sync::<Candidate>();
        assert_send_sync::<SelectionCounts>();
        assert_send_sync::<SelectError>();
        assert_send_sync::<RegistryError>();
        assert_send_sync::<RewardError>();
        assert_send_sync::<CircuitBreaker>();
        assert_send_sync::<CircuitState>();
        fn assert_send<T: Send>(_: T) {}
        let registry = AgentRegistry::new();
        assert_send(registry.check_health());
    }
}
