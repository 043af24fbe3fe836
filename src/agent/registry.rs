//! The registry of agents, and selection: scoring, the margin, reservation.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use chrono::{DateTime, Utc};
use futures::future::{Either, select};
use rand::Rng;

use super::breaker::{Admission, Breaker, CircuitBreaker, CircuitChange, CircuitState};
use super::notify::{CapacityChanged, Notify, Wants};
use super::rebalance::{
    RebalanceCriteria, RebalanceError, RebalanceReport, UtilizationMove, WeightChange,
};
use super::score::{self, History, Outcome, ScoreBreakdown};
use super::select::{Candidate, RegistryError, RewardError, SelectError, SelectionCounts};
use super::{Agent, AgentDescriptor, AgentId, Health, LoadBalancer};
use crate::clock::{Clock, SystemClock};
use crate::definition::{AgentType, TaskType};
use crate::plan::AgentTask;

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

    /// Every registered agent of the type with all required capabilities, not in
    /// `exclude`, scored; busy ones and those whose circuit breaker is open included
    /// ([`Candidate::is_busy`], [`AgentRegistry::circuit`]). Best first (total
    /// descending, then id).
    ///
    /// # Complexity
    /// O(a × c) for the a agents of the type and c capabilities asked, plus sorting.
    pub fn candidates(&self, requirements: &AgentTask, exclude: &[AgentId]) -> Vec<Candidate> {
        let mut candidates = self.scored(requirements, exclude).candidates;
        candidates.sort_by(|a, b| {
            b.score
                .total
                .total_cmp(&a.score.total)
                .then_with(|| a.agent.cmp(&b.agent))
        });
        candidates
    }

    /// How many registered agents of `agent_type` are not unhealthy, have a free slot and
    /// a circuit breaker that does not keep calls from them, now (what adaptations read
    /// as `agents.<TYPE>.available`).
    ///
    /// # Complexity
    /// O(a) for the a agents of the type.
    pub fn available(&self, agent_type: &AgentType) -> usize {
        let agents = self.read();
        agents.by_type.get(agent_type).map_or(0, |entries| {
            entries
                .values()
                .filter(|entry| {
                    entry.free_slots() > 0 && !entry.is_unhealthy() && !entry.is_blocking()
                })
                .count()
        })
    }

    /// Whether an agent that meets `requirements`, not in `exclude`, could take a call
    /// now or once busy: one whose circuit breaker does not keep calls from it (an open
    /// agent is not available, to self-healing's `SUBSTITUTE` as to selection).
    pub(crate) fn has_callable(&self, requirements: &AgentTask, exclude: &[AgentId]) -> bool {
        let scored = self.scored(requirements, exclude);
        scored
            .gates
            .iter()
            .zip(&scored.entries)
            .any(|(gate, entry)| !gate.is_refused() && !entry.is_drained())
    }

    /// Picks an agent with spare capacity and reserves a slot on it; the returned
    /// [`Lease`] frees the slot when dropped.
    ///
    /// The candidates with spare capacity that score within the margin of the best of
    /// them go to `balancer`, in id order. Unhealthy agents take part only when every
    /// eligible agent is unhealthy. Agents whose circuit breaker is open (or half open
    /// with its probe in flight) take no part; a half-open one takes part, and the call
    /// that gets it is its probe ([`Lease::is_probe`]). Agents in `exclude` (for example
    /// the one that just answered `AGENT_UNAVAILABLE`) are not candidates.
    ///
    /// # Errors
    /// - [`SelectError::NoAgent`] when no registered agent meets the criteria
    ///   (`excluded` counts those that would have, but were excluded).
    /// - [`SelectError::CircuitOpen`] when every agent that meets them has its circuit
    ///   breaker open: [`AgentRegistry::acquire`] waits for the first to turn half open
    ///   instead.
    /// - [`SelectError::AllBusy`] when eligible agents exist but all are at
    ///   `max_concurrency` (or all usable ones are, with only unhealthy ones free, or
    ///   with the others' breakers open): [`AgentRegistry::acquire`] waits its turn
    ///   instead; or await [`AgentRegistry::capacity_changed`] and select again.
    ///
    /// # Complexity
    /// O(a × c) for the a agents of the type and c capabilities asked. Under contention
    /// a slot can be taken between scoring and reserving; selection then scores again.
    pub fn select(
        &self,
        requirements: &AgentTask,
        balancer: &dyn LoadBalancer,
        rng: &mut dyn Rng,
        exclude: &[AgentId],
    ) -> Result<Selection, SelectError> {
        self.try_select(requirements, balancer, rng, exclude)
            .map_err(Refusal::into_error)
    }

    /// Picks and reserves as [`select`](Self::select) does, waiting its turn while every
    /// eligible agent is busy, and for the first open circuit breaker to turn half open
    /// while every eligible agent's is open. The engine calls agents through this.
    ///
    /// Waiting callers are served first come, first served: a freed slot wakes one of
    /// them, the first in line among those that may use the agent it was freed on, which
    /// then selects again (scores and balancer as usual). A caller that selects without
    /// waiting may take a free slot first; the woken caller then keeps its place in line.
    /// An agent registering or leaving, a health changing, or a circuit breaker opening,
    /// closing or giving up its probe wakes every waiting caller; a caller also wakes,
    /// on the registry's clock, when the first open breaker among its agents turns half
    /// open.
    ///
    /// # Errors
    /// [`SelectError::NoAgent`] when no registered agent meets the criteria, at first or
    /// after agents left while the caller waited. Never [`SelectError::AllBusy`] or
    /// [`SelectError::CircuitOpen`].
    ///
    /// # Cancellation
    /// Dropping the future leaves the line; a wake-up it received and did not use passes
    /// to the next caller in line.
    ///
    /// # Complexity
    /// One selection (O(a × c)), and one more each time the caller is woken: once per
    /// freed slot it is given, not once per freed slot anywhere. While it waits, a freed
    /// slot costs O(k + log w) for the k kinds of waiting callers (callers with the same
    /// eligible agents are one kind) and the w callers waiting.
    ///
    /// # Examples
    /// ```
    /// # use std::sync::Arc;
    /// # use futures::FutureExt;
    /// # use futures::executor::block_on;
    /// # use rand::SeedableRng;
    /// # use rand::rngs::StdRng;
    /// # use tradeflow::agent::{
    /// #     Agent, AgentDescriptor, AgentError, AgentRegistry, RoundRobin, TaskRequest,
    /// # };
    /// # use tradeflow::plan::ExecutionPlan;
    /// # struct Venue(AgentDescriptor);
    /// # #[async_trait::async_trait]
    /// # impl Agent for Venue {
    /// #     fn descriptor(&self) -> &AgentDescriptor { &self.0 }
    /// #     async fn execute(&self, r: TaskRequest) -> Result<serde_json::Value, AgentError> {
    /// #         Ok(r.parameters)
    /// #     }
    /// # }
    /// # let plan = ExecutionPlan::from_json(r#"{"id": "w", "steps": [{"id": "trade", "type": "task",
    /// #     "agentCriteria": {"type": "TRADING_EXECUTION"}, "task": {"type": "ORDER_EXECUTION"}}]}"#)?;
    /// # let task = plan.steps()[0].agent_task().expect("a task step");
    /// let registry = AgentRegistry::new();
    /// let venue = AgentDescriptor::new("exec-1", "TRADING_EXECUTION");
    /// registry.register(Arc::new(Venue(venue)))?;
    /// let balancer = RoundRobin::new();
    /// let (mut rng, mut other_rng) = (StdRng::seed_from_u64(1), StdRng::seed_from_u64(2));
    ///
    /// let first = block_on(registry.acquire(task, &balancer, &mut rng, &[]))?;
    /// let mut second = Box::pin(registry.acquire(task, &balancer, &mut other_rng, &[]));
    /// // The only slot is taken: the second caller waits its turn.
    /// assert!((&mut second).now_or_never().is_none());
    /// drop(first);
    /// assert_eq!(block_on(second)?.candidate.agent, "exec-1");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn acquire(
        &self,
        requirements: &AgentTask,
        balancer: &dyn LoadBalancer,
        rng: &mut (dyn Rng + Send),
        exclude: &[AgentId],
    ) -> Result<Selection, SelectError> {
        self.acquire_before(requirements, balancer, rng, exclude, None)
            .await
    }

    /// [`acquire`](Self::acquire), giving up at `deadline` (on the registry's clock)
    /// with [`SelectError::CircuitOpen`] if by then every eligible agent's circuit
    /// breaker is still open. The deadline bounds only that wait: waiting for capacity
    /// is not bounded by it.
    ///
    /// # Errors
    /// [`SelectError::NoAgent`] as `acquire`; [`SelectError::CircuitOpen`] at the
    /// deadline. Never [`SelectError::AllBusy`].
    pub async fn acquire_before(
        &self,
        requirements: &AgentTask,
        balancer: &dyn LoadBalancer,
        rng: &mut (dyn Rng + Send),
        exclude: &[AgentId],
        deadline: Option<DateTime<Utc>>,
    ) -> Result<Selection, SelectError> {
        let mut turn = self.notify.turn();
        loop {
            let seen = self.notify.generation();
            let (error, wants, half_open_at) =
                match self.try_select(requirements, balancer, rng, exclude) {
                    Ok(selection) => return Ok(selection),
                    Err(Refusal::NoAgent(error)) => return Err(error),
                    Err(Refusal::Busy {
                        error,
                        wants,
                        half_open_at,
                    }) => (error, wants, half_open_at),
                };
            // Only a wait on open breakers alone is bounded by the deadline.
            let deadline = deadline.filter(|_| matches!(error, SelectError::CircuitOpen { .. }));
            if deadline.is_some_and(|deadline| self.clock.now() >= deadline) {
                return Err(error);
            }
            let wake = match (half_open_at, deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match wake {
                None => turn.wait(seen, wants).await,
                Some(at) => {
                    let timer = self.clock.sleep_until(at);
                    let timed_out = matches!(
                        select(turn.wait(seen, wants), timer).await,
                        Either::Right(_)
                    );
                    if timed_out {
                        turn.leave();
                    }
                }
            }
        }
    }

    /// How selections have gone since the registry was created: a measure of contention
    /// (and of what waiting costs), for monitoring.
    pub fn selection_counts(&self) -> SelectionCounts {
        SelectionCounts {
            reserved: self.counts.reserved.load(Ordering::Relaxed),
            busy: self.counts.busy.load(Ordering::Relaxed),
        }
    }

    /// [`select`](Self::select), saying on `AllBusy` and `CircuitOpen` what the caller
    /// could use and when a breaker turns half open.
    fn try_select(
        &self,
        requirements: &AgentTask,
        balancer: &dyn LoadBalancer,
        rng: &mut dyn Rng,
        exclude: &[AgentId],
    ) -> Result<Selection, Refusal> {
        loop {
            let Scored {
                entries,
                candidates,
                gates,
            } = self.scored(requirements, exclude);
            if candidates.is_empty() {
                let excluded = if exclude.is_empty() {
                    0
                } else {
                    self.scored(requirements, &[]).candidates.len()
                };
                return Err(Refusal::NoAgent(SelectError::NoAgent {
                    agent_type: requirements.agent_type.clone(),
                    required_capabilities: requirements.required_capabilities.to_vec(),
                    excluded,
                }));
            }
            let pool = self.best(&entries, &candidates, &gates);
            if pool.is_empty() {
                let half_open_at = gates.iter().filter_map(|gate| gate.half_open_at()).min();
                let error = if gates.iter().all(|gate| gate.is_refused()) {
                    SelectError::CircuitOpen {
                        agent_type: requirements.agent_type.clone(),
                        open: candidates.len(),
                        until: half_open_at,
                    }
                } else {
                    self.counts.busy.fetch_add(1, Ordering::Relaxed);
                    SelectError::AllBusy {
                        agent_type: requirements.agent_type.clone(),
                        eligible: candidates.len(),
                    }
                };
                let serials = entries.iter().map(|entry| entry.serial).collect();
                return Err(Refusal::Busy {
                    error,
                    wants: Wants::new(serials, only_unhealthy(&entries, &candidates, &gates)),
                    half_open_at,
                });
            }
            let picked = if pool.len() == candidates.len() {
                // The usual case: every candidate is open and within the margin, so the
                // balancer sees them in place, with no copy.
                balancer.pick_for(&requirements.agent_type, &candidates, rng) % candidates.len()
            } else {
                let choices: Vec<Candidate> = pool.iter().map(|&i| candidates[i].clone()).collect();
                pool[balancer.pick_for(&requirements.agent_type, &choices, rng) % choices.len()]
            };
            let (Some(entry), Some(candidate)) = (entries.get(picked), candidates.get(picked))
            else {
                continue;
            };
            if let Some(lease) = self.reserve(entry) {
                return Ok(Selection {
                    agent: Arc::clone(&entry.agent),
                    candidate: candidate.clone(),
                    lease,
                });
            }
            // Another caller took the last slot (or the probe, or the agent left) since
            // scoring.
        }
    }

    /// Reserves a slot on one particular agent (a loop keeping its agent across
    /// iterations), if it is registered, meets `requirements`, has a free slot and its
    /// circuit breaker lets the call through. `None` otherwise: select as usual then.
    pub fn select_agent(&self, requirements: &AgentTask, agent: &AgentId) -> Option<Selection> {
        let Scored {
            entries,
            candidates,
            gates,
        } = self.scored(requirements, &[]);
        let (entry, candidate, gate) = entries
            .into_iter()
            .zip(candidates)
            .zip(gates)
            .map(|((entry, candidate), gate)| (entry, candidate, gate))
            .find(|(_, candidate, _)| candidate.agent == *agent)?;
        if candidate.is_busy() || gate.is_refused() {
            return None;
        }
        let lease = self.reserve(&entry)?;
        Some(Selection {
            agent: Arc::clone(&entry.agent),
            candidate,
            lease,
        })
    }

    /// Reserves a slot on the agent `id` whatever its type or capabilities (a host
    /// naming the agents it asks): `None` when no agent has this id, `Some(None)` when
    /// it is at `max_concurrency` (await [`capacity_changed`](Self::capacity_changed),
    /// armed before this call, and try again), else the agent and its slot.
    pub fn reserve_named(&self, id: &AgentId) -> Option<Option<(Arc<dyn Agent>, Lease)>> {
        let entry = Arc::clone(self.read().entry(id)?);
        Some(
            self.reserve(&entry)
                .map(|lease| (Arc::clone(&entry.agent), lease)),
        )
    }

    /// Indices in `candidates` of those the balancer chooses among.
    fn best(
        &self,
        entries: &[Arc<Entry>],
        candidates: &[Candidate],
        gates: &[Admission],
    ) -> Vec<usize> {
        let only_unhealthy = only_unhealthy(entries, candidates, gates);
        let ceiling = f64::from_bits(self.ceiling.load(Ordering::Acquire));
        let usable = |i: usize| {
            let c = &candidates[i];
            !c.is_busy()
                && !gates.get(i).is_some_and(|gate| gate.is_refused())
                && !entries.get(i).is_some_and(|entry| entry.is_drained())
                && (only_unhealthy || c.health != Health::Unhealthy)
        };
        let under = |i: usize| {
            let c = &candidates[i];
            f64::from(c.in_flight) / f64::from(c.max_concurrency.max(1)) < ceiling
        };
        // The ceiling is soft: it steers calls to agents below it while one has room.
        let steer = ceiling < 1.0 && (0..candidates.len()).any(|i| usable(i) && under(i));
        let open = |i: usize| usable(i) && (!steer || under(i));
        let best = (0..candidates.len())
            .filter(|&i| open(i))
            .map(|i| candidates[i].score.total)
            .fold(f64::NEG_INFINITY, f64::max);
        (0..candidates.len())
            .filter(|&i| open(i) && candidates[i].score.total >= best - self.margin)
            .collect()
    }

    /// Takes a slot on `entry` unless it is full, was deregistered, or its circuit
    /// breaker keeps calls from it; the probe of a half-open breaker when it is one.
    fn reserve(&self, entry: &Arc<Entry>) -> Option<Lease> {
        // The read lock orders this check against `deregister`.
        let _agents = self.read();
        if !entry.registered.load(Ordering::Acquire) || entry.is_drained() {
            return None;
        }
        // Under the stats lock: two callers cannot both take a half-open breaker's probe.
        let mut stats = entry.stats();
        let admission = stats.breaker.admission(|| self.clock.now());
        if admission.is_refused() || !entry.try_reserve() {
            return None;
        }
        let probe = (admission == Admission::Probe).then(|| stats.breaker.start_probe());
        drop(stats);
        self.counts.reserved.fetch_add(1, Ordering::Relaxed);
        Some(Lease {
            entry: Arc::clone(entry),
            notify: Arc::clone(&self.notify),
            probe,
        })
    }

    /// Eligible agents, their candidates and what their breakers allow (parallel
    /// vectors), in id order.
    fn scored(&self, requirements: &AgentTask, exclude: &[AgentId]) -> Scored {
        struct Seen {
            entry: Arc<Entry>,
            capability: f64,
            in_flight: u32,
            health: Health,
            consecutive_failures: u32,
            history: Option<History>,
            gate: Admission,
        }
        // Read once, and only when a breaker is not closed.
        let mut now = None;
        let seen: Vec<Seen> = {
            let agents = self.read();
            let Some(of_type) = agents.by_type.get(&requirements.agent_type) else {
                return Scored::default();
            };
            of_type
                .values()
                .filter(|entry| !exclude.contains(&entry.descriptor.id))
                .filter_map(|entry| {
                    let capability = score::capability(
                        &entry.descriptor.capabilities,
                        &requirements.required_capabilities,
                        &requirements.preferred_capabilities,
                    )?;
                    let stats = entry.stats();
                    let gate = stats
                        .breaker
                        .admission(|| *now.get_or_insert_with(|| self.clock.now()));
                    Some(Seen {
                        entry: Arc::clone(entry),
                        capability,
                        in_flight: entry.in_flight.load(Ordering::Acquire),
                        health: stats.health,
                        consecutive_failures: stats.consecutive_failures,
                        history: stats.history.get(&requirements.task_type).copied(),
                        gate,
                    })
                })
                .collect()
        };
        let fastest_ms = seen
            .iter()
            .filter_map(|s| s.history.and_then(|h| h.latency_ms))
            .reduce(f64::min);
        let mut scored = Scored {
            entries: Vec::with_capacity(seen.len()),
            candidates: Vec::with_capacity(seen.len()),
            gates: Vec::with_capacity(seen.len()),
        };
        for s in seen {
            let descriptor = &s.entry.descriptor;
            let score = ScoreBreakdown::new(
                s.capability,
                score::performance(s.history.as_ref(), fastest_ms),
                score::load(s.in_flight, descriptor.max_concurrency),
                score::availability(s.health, s.consecutive_failures),
            );
            scored.candidates.push(Candidate {
                agent: descriptor.id.clone(),
                score,
                in_flight: s.in_flight,
                max_concurrency: descriptor.max_concurrency,
                weight: s.entry.weight(),
                health: s.health,
            });
            scored.gates.push(s.gate);
            scored.entries.push(s.entry);
        }
        scored
    }
    /// A future that completes the next time capacity is freed (a lease dropped) or the
    /// selectable agents change (an agent registered or deregistered, a health changed).
    ///
    /// It is armed when created, so a change that happens before it is first polled is
    /// not missed. Race-free use, under any executor and with leases dropped on other
    /// threads: create it *before* selecting, await it on `AllBusy`.
    ///
    /// Every pending future completes on every change, so when many callers wait this
    /// way each freed slot makes all of them select again; [`AgentRegistry::acquire`]
    /// wakes one instead, and serves them in turn.
    ///
    /// ```
    /// # use tradeflow::agent::{AgentRegistry, LoadBalancer, Selection, SelectError};
    /// # use tradeflow::plan::AgentTask;
    /// async fn acquire(
    ///     registry: &AgentRegistry,
    ///     task: &AgentTask,
    ///     balancer: &dyn LoadBalancer,
    ///     rng: &mut (dyn rand::Rng + Send),
    /// ) -> Result<Selection, SelectError> {
    ///     loop {
    ///         let changed = registry.capacity_changed();
    ///         match registry.select(task, balancer, rng, &[]) {
    ///             Err(SelectError::AllBusy { .. }) => changed.await,
    ///             other => return other,
    ///         }
    ///     }
    /// }
    /// ```
    pub fn capacity_changed(&self) -> CapacityChanged {
        self.notify.listen()
    }

    /// Records how a call ended: updates the agent's history for `task_type` (success
    /// rate and latency, exponentially weighted), its consecutive-failure count (reset
    /// by a success; `PERMANENT` failures leave it alone) and its circuit breaker (see
    /// [Circuit breakers](super#circuit-breakers)), at the registry clock's time.
    /// Returns the breaker's change, if the outcome opened or closed it. Ignored (`None`)
    /// for an agent that is not registered.
    ///
    /// Record before the call's [`Lease`] is dropped, as the engine does: a probe's
    /// lease dropped with no outcome recorded gives up the probe (the breaker stays
    /// half open, and the next call probes).
    pub fn record(
        &self,
        agent: &AgentId,
        task_type: &TaskType,
        outcome: Outcome,
    ) -> Option<CircuitChange> {
        let (change, freed) = {
            let agents = self.read();
            let entry = agents.entry(agent)?;
            let mut stats = entry.stats();
            stats
                .history
                .entry(task_type.clone())
                .or_default()
                .observe(&outcome);
            if let Outcome::Success { .. } = outcome {
                stats.consecutive_failures = 0;
            } else if outcome.strains_availability() {
                stats.consecutive_failures = stats.consecutive_failures.saturating_add(1);
            }
            let blocking = stats.breaker.is_blocking();
            let change = stats.breaker.record(&outcome, self.clock.now());
            (change, blocking && !stats.breaker.is_blocking())
        };
        // Waiting callers select again: an opened breaker gives them a half-open time
        // to wait for, a closed one (or a probe given up) a slot to take.
        if change.is_some() || freed {
            self.notify.notify_all();
        }
        change
    }

    /// Credits the outcome of a decision `agent` made on `task_type`: `reward`, already
    /// normalised by the caller to [0, 1] (1 the best outcome seen, 0 the worst).
    ///
    /// Rewards are averaged per agent and task type, exponentially weighted with alpha
    /// 0.2 like the success rate (the first reward sets the average; each later one
    /// moves it 20% of the way). Once the agent has an average on the task type, its
    /// *performance* there is `0.5 × success rate + 0.2 × latency + 0.3 × average
    /// reward`; without one it stays `0.7 × success rate + 0.3 × latency` (see
    /// [Selection](super#selection)). The average is forgotten, like the rest of the
    /// agent's history, when the agent is deregistered.
    ///
    /// # Errors
    /// [`RewardError::OutOfRange`] when `reward` is not finite or lies outside [0, 1]
    /// (nothing is credited); [`RewardError::UnknownAgent`] when no agent `agent` is
    /// registered.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use tradeflow::agent::{Agent, AgentDescriptor, AgentError, AgentRegistry, RewardError, TaskRequest};
    /// # use tradeflow::plan::ExecutionPlan;
    /// # struct Venue(AgentDescriptor);
    /// # #[tradeflow::async_trait]
    /// # impl Agent for Venue {
    /// #     fn descriptor(&self) -> &AgentDescriptor { &self.0 }
    /// #     async fn execute(&self, r: TaskRequest) -> Result<serde_json::Value, AgentError> {
    /// #         Ok(r.parameters)
    /// #     }
    /// # }
    /// # let plan = ExecutionPlan::from_json(r#"{"id": "w", "steps": [{"id": "pick", "type": "task",
    /// #     "agentCriteria": {"type": "STRATEGY"}, "task": {"type": "SIGNAL"}}]}"#)?;
    /// # let task = plan.steps()[0].agent_task().expect("a task step");
    /// let registry = AgentRegistry::new();
    /// registry.register(Arc::new(Venue(AgentDescriptor::new("momentum", "STRATEGY"))))?;
    /// let momentum = "momentum".into();
    /// // Never run: a neutral 0.5.
    /// assert_eq!(registry.candidates(task, &[])[0].score.performance, 0.5);
    /// registry.credit_reward(&momentum, &task.task_type, 1.0)?;
    /// // 0.5 × 0.5 (the prior success rate) + 0.2 × 0.5 (no latency yet) + 0.3 × 1.
    /// let performance = registry.candidates(task, &[])[0].score.performance;
    /// assert!((performance - 0.65).abs() < 1e-12);
    /// // Rewards are normalised by the caller: a P&L is not one.
    /// let error = registry.credit_reward(&momentum, &task.task_type, 1250.0).unwrap_err();
    /// assert!(matches!(error, RewardError::OutOfRange { .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn credit_reward(
        &self,
        agent: &AgentId,
        task_type: &TaskType,
        reward: f64,
    ) -> Result<(), RewardError> {
        if !(0.0..=1.0).contains(&reward) {
            return Err(RewardError::OutOfRange {
                agent: agent.clone(),
                task_type: task_type.clone(),
                reward,
            });
        }
        let agents = self.read();
        let Some(entry) = agents.entry(agent) else {
            return Err(RewardError::UnknownAgent {
                agent: agent.clone(),
            });
        };
        entry
            .stats()
            .history
            .entry(task_type.clone())
            .or_default()
            .credit(reward);
        Ok(())
    }

    /// The state of an agent's circuit breaker now (on the registry's clock); `None` for
    /// an agent that is not registered.
    pub fn circuit(&self, agent: &AgentId) -> Option<CircuitState> {
        let agents = self.read();
        let entry = agents.entry(agent)?;
        let stats = entry.stats();
        Some(stats.breaker.state(self.clock.now()))
    }

    /// Sets an agent's health (from [`Agent::health`] or the host's own monitoring).
    /// Ignored for an agent that is not registered.
    pub fn set_health(&self, agent: &AgentId, health: Health) {
        let changed = {
            let agents = self.read();
            let Some(entry) = agents.entry(agent) else {
                return;
            };
            let mut stats = entry.stats();
            std::mem::replace(&mut stats.health, health) != health
        };
        // Health decides whether unhealthy agents may be chosen: waiters re-check.
        if changed {
            self.notify.notify_all();
        }
    }

    /// Asks every registered agent for its [`Agent::health`] and records the answers.
    /// The probes run one after another, with no lock held.
    pub async fn check_health(&self) {
        let agents: Vec<(AgentId, Arc<dyn Agent>)> = {
            let agents = self.read();
            agents
                .types
                .keys()
                .filter_map(|id| agents.entry(id))
                .map(|entry| (entry.descriptor.id.clone(), Arc::clone(&entry.agent)))
                .collect()
        };
        for (id, agent) in agents {
            let health = agent.health().await;
            self.set_health(&id, health);
        }
    }
}

impl AgentRegistry {
    /// Drains, undrains and reweighs agents, and sets the utilization ceiling, as
    /// `criteria` asks; returns what changed (see [Rebalancing](super#rebalancing)).
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

impl AgentRegistry {
    /// The calls waiting for a slot on an agent of `agent_type` ([`TypeLoad::waiting`]),
    /// with `scratch` reused for the agents' serial numbers (the metrics read it after
    /// every call without allocating).
    pub(crate) fn waiting_for_type(&self, agent_type: &AgentType, scratch: &mut Vec<u64>) -> usize {
        if self.notify.nobody_waiting() {
            return 0;
        }
        scratch.clear();
        {
            let agents = self.read();
            let Some(of_type) = agents.by_type.get(agent_type) else {
                return 0;
            };
            scratch.extend(of_type.values().map(|entry| entry.serial));
        }
        self.notify.waiting_for(scratch)
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

/// Whether every candidate whose breaker lets calls through, and that is not drained,
/// is unhealthy: then unhealthy agents are open (a last resort). An agent whose breaker
/// is open, or that is drained, is not one to wait for instead.
fn only_unhealthy(entries: &[Arc<Entry>], candidates: &[Candidate], gates: &[Admission]) -> bool {
    candidates
        .iter()
        .zip(gates)
        .zip(entries)
        .filter(|((_, gate), entry)| !gate.is_refused() && !entry.is_drained())
        .all(|((c, _), _)| c.health == Health::Unhealthy)
}

/// Eligible agents, their candidates, and what their breakers allow: parallel vectors.
#[derive(Default)]
struct Scored {
    entries: Vec<Arc<Entry>>,
    candidates: Vec<Candidate>,
    gates: Vec<Admission>,
}

/// Why a selection reserved nothing.
enum Refusal {
    /// Every eligible agent is busy or its breaker open: the error (`AllBusy`, or
    /// `CircuitOpen` when every breaker is open), what the caller could use, and when
    /// the first open breaker among them turns half open.
    Busy {
        error: SelectError,
        wants: Wants,
        half_open_at: Option<DateTime<Utc>>,
    },
    /// No registered agent meets the criteria.
    NoAgent(SelectError),
}

impl Refusal {
    fn into_error(self) -> SelectError {
        match self {
            Self::Busy { error, .. } | Self::NoAgent(error) => error,
        }
    }
}

/// The agent chosen for a call, with the slot reserved on it.
pub struct Selection {
    /// The agent to call.
    pub agent: Arc<dyn Agent>,
    /// How it was scored when chosen (`in_flight` before this call).
    pub candidate: Candidate,
    /// The reserved slot: keep it until the call ends.
    pub lease: Lease,
}

impl fmt::Debug for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Selection")
            .field("candidate", &self.candidate)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// A slot reserved on an agent. Dropping it frees the slot, completes pending
/// [`AgentRegistry::capacity_changed`] futures and wakes the first caller of
/// [`AgentRegistry::acquire`] in line that may use the agent.
#[must_use = "dropping the lease frees the slot at once"]
pub struct Lease {
    entry: Arc<Entry>,
    notify: Arc<Notify>,
    /// The number of the probe, when the call is its half-open breaker's probe.
    probe: Option<u64>,
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use std::task::Poll;

    use futures::FutureExt;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use serde_json::Value;

    use super::*;
    use crate::agent::{AgentError, AgentErrorKind, LeastConnections, RoundRobin, TaskRequest};
    use crate::expr::Template;

    struct Stub(AgentDescriptor);

    #[async_trait::async_trait]
    impl Agent for Stub {
        fn descriptor(&self) -> &AgentDescriptor {
            &self.0
        }

        async fn execute(&self, _: TaskRequest) -> Result<Value, AgentError> {
            Ok(Value::Null)
        }

        async fn health(&self) -> Health {
            Health::Degraded
        }
    }

    fn stub(descriptor: AgentDescriptor) -> Arc<dyn Agent> {
        Arc::new(Stub(descriptor))
    }

    fn task(required: &[&str], preferred: &[&str]) -> AgentTask {
        AgentTask {
            agent_type: AgentType::new("T"),
            required_capabilities: required.iter().map(|c| c.to_string()).collect(),
            preferred_capabilities: preferred.iter().map(|c| c.to_string()).collect(),
            load_balancing: None,
            task_type: TaskType::new("TASK"),
            parameters: Template::empty_object(),
        }
    }

    fn registry(agents: &[(&str, u32)]) -> AgentRegistry {
        let registry = AgentRegistry::new();
        for &(id, max) in agents {
            let descriptor = AgentDescriptor::new(id, "T").with_max_concurrency(max);
            registry.register(stub(descriptor)).unwrap();
        }
        registry
    }

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
    fn errors_name_the_criteria() {
        let registry = registry(&[("a", 1)]);
        let mut rng = StdRng::seed_from_u64(1);
        let missing = registry
            .select(&task(&["twap"], &[]), &RoundRobin::new(), &mut rng, &[])
            .unwrap_err();
        assert_eq!(missing.kind(), "NO_AGENT");
        assert_eq!(
            missing.to_string(),
            "no registered agent of type `T` with capabilities [twap] is available"
        );
        let excluded = registry
            .select(
                &task(&[], &[]),
                &RoundRobin::new(),
                &mut rng,
                &[AgentId::from("a")],
            )
            .unwrap_err();
        assert_eq!(
            excluded.to_string(),
            "no registered agent of type `T` is available (1 excluded)"
        );
        let _lease = registry
            .select(&task(&[], &[]), &RoundRobin::new(), &mut rng, &[])
            .unwrap();
        let busy = registry
            .select(&task(&[], &[]), &RoundRobin::new(), &mut rng, &[])
            .unwrap_err();
        assert_eq!(busy.kind(), "ALL_BUSY");
        assert_eq!(
            busy.to_string(),
            "all 1 eligible agents of type `T` are busy"
        );
    }

    #[test]
    fn unhealthy_agents_are_a_last_resort() {
        let registry = registry(&[("a", 1), ("b", 1)]);
        let (a, b) = (AgentId::from("a"), AgentId::from("b"));
        let mut rng = StdRng::seed_from_u64(1);
        let any = task(&[], &[]);
        registry.set_health(&a, Health::Unhealthy);
        let first = registry
            .select(&any, &LeastConnections, &mut rng, &[])
            .unwrap();
        assert_eq!(first.candidate.agent, b);
        // `a` is free but unhealthy while a healthy agent exists: wait for `b`.
        let waiting = registry.capacity_changed();
        assert!(matches!(
            registry.select(&any, &LeastConnections, &mut rng, &[]),
            Err(SelectError::AllBusy { .. })
        ));
        registry.set_health(&b, Health::Unhealthy);
        assert_eq!(waiting.now_or_never(), Some(()));
        let last = registry
            .select(&any, &LeastConnections, &mut rng, &[])
            .unwrap();
        assert_eq!(last.candidate.agent, a);
    }

    #[test]
    fn permanent_failures_lower_history_not_availability() {
        let registry = registry(&[("a", 1)]);
        let a = AgentId::from("a");
        let kind = AgentErrorKind::Permanent;
        let latency = Duration::ZERO;
        registry.record(
            &a,
            &TaskType::new("TASK"),
            Outcome::Failure { kind, latency },
        );
        let candidate = registry.candidates(&task(&[], &[]), &[]).remove(0);
        assert_eq!(candidate.score.availability, 1.0);
        assert!(candidate.score.performance < score::NEUTRAL);
        // History is per task type.
        let mut other = task(&[], &[]);
        other.task_type = TaskType::new("OTHER");
        let candidate = registry.candidates(&other, &[]).remove(0);
        assert_eq!(candidate.score.performance, score::NEUTRAL);
    }

    #[test]
    fn health_probes_are_recorded() {
        let registry = registry(&[("a", 1)]);
        futures::executor::block_on(registry.check_health());
        let candidate = registry.candidates(&task(&[], &[]), &[]).remove(0);
        assert_eq!(candidate.health, Health::Degraded);
        assert_eq!(candidate.score.availability, 0.5);
    }

    #[test]
    fn selections_are_counted() {
        let registry = registry(&[("a", 1)]);
        let mut rng = StdRng::seed_from_u64(1);
        let any = task(&[], &[]);
        let held = registry.select(&any, &RoundRobin::new(), &mut rng, &[]);
        assert!(
            registry
                .select(&any, &RoundRobin::new(), &mut rng, &[])
                .is_err()
        );
        drop(held);
        assert!(registry.select_agent(&any, &AgentId::from("a")).is_some());
        let counts = SelectionCounts {
            reserved: 2,
            busy: 1,
        };
        assert_eq!(registry.selection_counts(), counts);
    }

    #[test]
    fn margin_decides_who_the_balancer_sees() {
        // `b` has one call in flight of two: 0.1 below `a`.
        for (margin, expected) in [(0.05, 1), (0.15, 2)] {
            let registry = AgentRegistry::with_margin(margin);
            for id in ["a", "b"] {
                let descriptor = AgentDescriptor::new(id, "T").with_max_concurrency(2);
                registry.register(stub(descriptor)).unwrap();
            }
            let held = registry.entry_for_test("b");
            let _lease = registry.reserve(&held).unwrap();
            let scored = registry.scored(&task(&[], &[]), &[]);
            assert_eq!(
                registry
                    .best(&scored.entries, &scored.candidates, &scored.gates)
                    .len(),
                expected,
                "margin {margin}"
            );
        }
    }

    fn success(ms: u64) -> Outcome {
        Outcome::Success {
            latency: Duration::from_millis(ms),
        }
    }

    fn failure() -> Outcome {
        Outcome::Failure {
            kind: AgentErrorKind::Temporary,
            latency: Duration::ZERO,
        }
    }

    fn scores(registry: &AgentRegistry) -> HashMap<String, ScoreBreakdown> {
        registry
            .candidates(&task(&[], &[]), &[])
            .into_iter()
            .map(|c| (c.agent.to_string(), c.score))
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn credited_rewards_join_the_performance_score() {
        let registry = registry(&[("a", 1), ("b", 1)]);
        let tt = TaskType::new("TASK");
        let (a, b) = (AgentId::from("a"), AgentId::from("b"));
        registry.record(&a, &tt, success(99));
        registry.record(&b, &tt, success(199));
        // Success rates 0.5 + 0.2 × (1 − 0.5) = 0.6; latency a (99 + 1) / (99 + 1) = 1,
        // b (99 + 1) / (199 + 1) = 0.5. No rewards: 0.7 × success + 0.3 × latency.
        let before = scores(&registry);
        assert!(close(before["a"].performance, 0.72));
        assert!(close(before["b"].performance, 0.57));

        registry.credit_reward(&b, &tt, 1.0).unwrap();
        registry.credit_reward(&b, &tt, 0.5).unwrap();
        // b's average reward: 1, then 1 + 0.2 × (0.5 − 1) = 0.9.
        // 0.5 × 0.6 + 0.2 × 0.5 + 0.3 × 0.9 = 0.67; a, with no reward, is unchanged.
        let after = scores(&registry);
        assert!(close(after["b"].performance, 0.67));
        assert!(close(after["a"].performance, 0.72));
        // The total moves by the performance weight, 0.25: 0.25 × (0.67 − 0.57).
        assert!(close(after["b"].total - before["b"].total, 0.025));

        registry.credit_reward(&a, &tt, 0.0).unwrap();
        // 0.5 × 0.6 + 0.2 × 1 + 0.3 × 0 = 0.5: a fast agent whose decisions lose money
        // falls behind a slower one whose decisions pay.
        let rewarded = scores(&registry);
        assert!(close(rewarded["a"].performance, 0.5));
        assert!(rewarded["a"].total < rewarded["b"].total);

        // Per task type: another type's history has no reward.
        let mut other = task(&[], &[]);
        other.task_type = TaskType::new("OTHER");
        let b_other = registry
            .candidates(&other, std::slice::from_ref(&a))
            .remove(0);
        assert_eq!(b_other.score.performance, score::NEUTRAL);
    }

    #[test]
    fn rewards_out_of_range_or_for_unknown_agents_are_refused() {
        let registry = registry(&[("a", 1)]);
        let tt = TaskType::new("TASK");
        let a = AgentId::from("a");
        for reward in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.01,
            1.01,
            1250.0,
        ] {
            let error = registry.credit_reward(&a, &tt, reward).unwrap_err();
            assert!(
                matches!(&error, RewardError::OutOfRange { agent, reward: r, .. }
                    if *agent == a && (r.to_bits() == reward.to_bits())),
                "{error}"
            );
        }
        assert_eq!(
            registry
                .credit_reward(&a, &tt, 2.0)
                .unwrap_err()
                .to_string(),
            "reward 2 for agent `a` on task type `TASK` is not a number in [0, 1]"
        );
        // Nothing was credited: still the neutral score of an agent never run.
        assert_eq!(scores(&registry)["a"].performance, score::NEUTRAL);
        let gone = AgentId::from("gone");
        assert_eq!(
            registry.credit_reward(&gone, &tt, 0.5),
            Err(RewardError::UnknownAgent { agent: gone })
        );
        // The bounds themselves are rewards.
        registry.credit_reward(&a, &tt, 0.0).unwrap();
        registry.credit_reward(&a, &tt, 1.0).unwrap();
    }

    /// A registry on a virtual clock at 2026-01-05T09:00:00Z whose breakers open after
    /// 1 failure for 1 s, with what selecting from it takes.
    struct Breaking {
        registry: AgentRegistry,
        clock: crate::clock::VirtualClock,
        any: AgentTask,
        balancer: RoundRobin,
        rng: StdRng,
    }

    impl Breaking {
        /// Agents of type `T` with these ids and capacities.
        fn new(agents: &[(&str, u32)]) -> Self {
            use chrono::TimeZone;
            let t0 = Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap();
            let clock = crate::clock::VirtualClock::starting_at(t0);
            let registry = AgentRegistry::builder()
                .clock(clock.clone())
                .circuit_breaker(CircuitBreaker::new(1, Duration::from_secs(1)))
                .build();
            for &(id, max) in agents {
                let descriptor = AgentDescriptor::new(id, "T").with_max_concurrency(max);
                registry.register(stub(descriptor)).unwrap();
            }
            Self {
                registry,
                clock,
                any: task(&[], &[]),
                balancer: RoundRobin::new(),
                rng: StdRng::seed_from_u64(1),
            }
        }

        /// Records a call of agent `id` that ended with `outcome`.
        fn record(&self, id: &str, outcome: Outcome) -> Option<CircuitChange> {
            let task_type = TaskType::new("TASK");
            self.registry
                .record(&AgentId::from(id), &task_type, outcome)
        }

        fn select(&mut self) -> Result<Selection, SelectError> {
            let Self {
                registry,
                any,
                balancer,
                rng,
                ..
            } = self;
            registry.select(any, balancer, rng, &[])
        }

        fn circuit(&self, id: &str) -> Option<CircuitState> {
            self.registry.circuit(&AgentId::from(id))
        }
    }

    #[test]
    fn open_agents_are_passed_over_and_reported_when_all_are_open() {
        let mut b = Breaking::new(&[("a", 1), ("b", 1)]);
        let opened = b.record("a", failure());
        assert!(matches!(
            opened,
            Some(CircuitChange::Opened { failures: 1, .. })
        ));
        for _ in 0..3 {
            assert_eq!(b.select().unwrap().candidate.agent, "b");
        }
        // The open agent is still a candidate (scored), just not selectable.
        assert_eq!(b.registry.candidates(&b.any, &[]).len(), 2);
        b.record("b", failure());
        let error = b.select().unwrap_err();
        let until = b.clock.now() + Duration::from_secs(1);
        assert_eq!(
            error,
            SelectError::CircuitOpen {
                agent_type: AgentType::new("T"),
                open: 2,
                until: Some(until),
            }
        );
        assert_eq!(error.kind(), "NO_AGENT");
        assert_eq!(
            error.to_string(),
            "all 2 eligible agents of type `T` have an open circuit breaker (the first lets \
             a probe call through at 2026-01-05T09:00:01.000Z)"
        );
    }

    #[test]
    fn acquire_waits_on_the_clock_for_the_probe_and_gives_up_at_its_deadline() {
        let mut b = Breaking::new(&[("a", 1)]);
        b.record("a", failure());
        let t0 = b.clock.now();

        // Giving up at 500 ms: the breaker is still open then.
        let deadline = t0 + Duration::from_millis(500);
        let mut gives_up = b
            .registry
            .acquire_before(&b.any, &b.balancer, &mut b.rng, &[], Some(deadline))
            .boxed();
        let Poll::Ready(error) = b.clock.run_until_stalled(&mut gives_up) else {
            panic!("the wait ends at its deadline");
        };
        drop(gives_up);
        assert!(matches!(error, Err(SelectError::CircuitOpen { .. })));
        assert_eq!(b.clock.now(), deadline);

        // Without a deadline it waits for the half-open instant and takes the probe.
        let mut waits = b
            .registry
            .acquire(&b.any, &b.balancer, &mut b.rng, &[])
            .boxed();
        let Poll::Ready(Ok(probe)) = b.clock.run_until_stalled(&mut waits) else {
            panic!("the probe is let through");
        };
        assert_eq!(b.clock.now(), t0 + Duration::from_secs(1));
        assert!(probe.lease.is_probe());
        drop(waits);
        assert_eq!(
            b.circuit("a"),
            Some(CircuitState::HalfOpen { probing: true })
        );
    }

    #[test]
    fn a_probe_dropped_without_an_outcome_lets_the_next_call_probe() {
        let mut b = Breaking::new(&[("a", 2)]);
        b.record("a", failure());
        b.clock.advance(Duration::from_secs(1));
        let probe = b.select().unwrap();
        assert!(probe.lease.is_probe());
        // A second slot is free, but the probe is the only call let through.
        assert!(matches!(
            b.select(),
            Err(SelectError::CircuitOpen { until: None, .. })
        ));
        drop(probe);
        let next = b.select().unwrap();
        assert!(next.lease.is_probe());
        // Its outcome decides, recorded before its lease is dropped.
        assert_eq!(b.record("a", success(5)), Some(CircuitChange::Closed));
        drop(next);
        assert_eq!(b.circuit("a"), Some(CircuitState::Closed { failures: 0 }));
        assert!(!b.select().unwrap().lease.is_probe());
    }

    #[test]
    fn a_slot_freed_on_a_half_open_agent_wakes_the_caller_waiting_for_it() {
        // One slot, held by a call that began before the breaker opened.
        let mut b = Breaking::new(&[("a", 1)]);
        let in_flight = b.select().unwrap();
        b.record("a", failure());
        b.clock.advance(Duration::from_secs(2));
        // Half open, but busy: the caller waits for the slot.
        let mut waits = b
            .registry
            .acquire(&b.any, &b.balancer, &mut b.rng, &[])
            .boxed();
        assert!(b.clock.run_until_stalled(&mut waits).is_pending());
        // The call in flight is cancelled (no outcome): its slot goes to the caller.
        drop(in_flight);
        let Poll::Ready(Ok(probe)) = b.clock.run_until_stalled(&mut waits) else {
            panic!("the waiting caller is woken for the freed slot");
        };
        assert!(probe.lease.is_probe());
    }

    impl AgentRegistry {
        fn entry_for_test(&self, id: &str) -> Arc<Entry> {
            Arc::clone(self.read().entry(&AgentId::from(id)).unwrap())
        }
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
