//! The registry of agents, and selection: scoring, the margin, reservation.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use rand::Rng;

use super::notify::{CapacityChanged, Notify, Wants};
use super::score::{self, History, Outcome, ScoreBreakdown};
use super::select::{Candidate, RegistryError, SelectError, SelectionCounts};
use super::{Agent, AgentDescriptor, AgentId, Health, LoadBalancer};
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

    /// Its slots free now; none once deregistered.
    pub(super) fn free_slots(&self) -> u32 {
        if !self.registered.load(Ordering::Acquire) {
            return 0;
        }
        let in_flight = self.in_flight.load(Ordering::Acquire);
        self.descriptor.max_concurrency.saturating_sub(in_flight)
    }

    /// Whether its health is [`Health::Unhealthy`].
    pub(super) fn is_unhealthy(&self) -> bool {
        self.stats().health == Health::Unhealthy
    }
}

#[derive(Default)]
struct Stats {
    health: Health,
    /// Failures other than `PERMANENT` since the last success.
    consecutive_failures: u32,
    history: HashMap<TaskType, History>,
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
    /// An empty registry with the [`DEFAULT_MARGIN`].
    pub fn new() -> Self {
        Self::with_margin(DEFAULT_MARGIN)
    }

    /// An empty registry whose balancers choose among candidates scoring within `margin`
    /// of the best (0: only the best; 1: every candidate with spare capacity). Values
    /// outside [0, 1] are clamped. [`AgentRegistry::new`] uses [`DEFAULT_MARGIN`].
    pub fn with_margin(margin: f64) -> Self {
        Self {
            agents: RwLock::default(),
            notify: Arc::default(),
            margin: if margin.is_nan() {
                0.0
            } else {
                margin.clamp(0.0, 1.0)
            },
            counts: Counts::default(),
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
    /// [`RegistryError::InvalidDescriptor`] when its weight is not finite and positive or
    /// its `max_concurrency` is 0.
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
            let entry = Arc::new(Entry {
                serial: agents.serial,
                agent,
                descriptor,
                in_flight: AtomicU32::new(0),
                registered: AtomicBool::new(true),
                stats: Mutex::default(),
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

    /// The descriptors of every registered agent, by id.
    pub fn agents(&self) -> Vec<AgentDescriptor> {
        let agents = self.read();
        agents
            .types
            .keys()
            .filter_map(|id| agents.entry(id))
            .map(|entry| entry.descriptor.clone())
            .collect()
    }

    /// The registered agent with this id.
    pub fn agent(&self, id: &AgentId) -> Option<Arc<dyn Agent>> {
        self.read().entry(id).map(|entry| Arc::clone(&entry.agent))
    }

    /// Every registered agent of the type with all required capabilities, not in
    /// `exclude`, scored; busy ones included ([`Candidate::is_busy`]). Best first (total
    /// descending, then id).
    ///
    /// # Complexity
    /// O(a × c) for the a agents of the type and c capabilities asked, plus sorting.
    pub fn candidates(&self, requirements: &AgentTask, exclude: &[AgentId]) -> Vec<Candidate> {
        let (_, mut candidates) = self.scored(requirements, exclude);
        candidates.sort_by(|a, b| {
            b.score
                .total
                .total_cmp(&a.score.total)
                .then_with(|| a.agent.cmp(&b.agent))
        });
        candidates
    }

    /// How many registered agents of `agent_type` are not unhealthy and have a free slot
    /// now (what adaptations read as `agents.<TYPE>.available`).
    ///
    /// # Complexity
    /// O(a) for the a agents of the type.
    pub fn available(&self, agent_type: &AgentType) -> usize {
        let agents = self.read();
        agents.by_type.get(agent_type).map_or(0, |entries| {
            entries
                .values()
                .filter(|entry| entry.free_slots() > 0 && !entry.is_unhealthy())
                .count()
        })
    }

    /// Picks an agent with spare capacity and reserves a slot on it; the returned
    /// [`Lease`] frees the slot when dropped.
    ///
    /// The candidates with spare capacity that score within the margin of the best of
    /// them go to `balancer`, in id order. Unhealthy agents take part only when every
    /// eligible agent is unhealthy. Agents in `exclude` (for example the one that just
    /// answered `AGENT_UNAVAILABLE`) are not candidates.
    ///
    /// # Errors
    /// - [`SelectError::NoAgent`] when no registered agent meets the criteria
    ///   (`excluded` counts those that would have, but were excluded).
    /// - [`SelectError::AllBusy`] when eligible agents exist but all are at
    ///   `max_concurrency` (or all usable ones are, with only unhealthy ones free):
    ///   [`AgentRegistry::acquire`] waits its turn instead; or await
    ///   [`AgentRegistry::capacity_changed`] and select again.
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
    /// eligible agent is busy. The engine calls agents through this.
    ///
    /// Waiting callers are served first come, first served: a freed slot wakes one of
    /// them, the first in line among those that may use the agent it was freed on, which
    /// then selects again (scores and balancer as usual). A caller that selects without
    /// waiting may take a free slot first; the woken caller then keeps its place in line.
    /// An agent registering or leaving, or a health changing, wakes every waiting caller.
    ///
    /// # Errors
    /// [`SelectError::NoAgent`] when no registered agent meets the criteria, at first or
    /// after agents left while the caller waited. Never [`SelectError::AllBusy`].
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
        let mut turn = self.notify.turn();
        loop {
            let seen = self.notify.generation();
            match self.try_select(requirements, balancer, rng, exclude) {
                Ok(selection) => return Ok(selection),
                Err(Refusal::Busy(_, wants)) => turn.wait(seen, wants).await,
                Err(Refusal::NoAgent(error)) => return Err(error),
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

    /// [`select`](Self::select), saying on `AllBusy` what the caller could use.
    fn try_select(
        &self,
        requirements: &AgentTask,
        balancer: &dyn LoadBalancer,
        rng: &mut dyn Rng,
        exclude: &[AgentId],
    ) -> Result<Selection, Refusal> {
        loop {
            let (entries, candidates) = self.scored(requirements, exclude);
            if candidates.is_empty() {
                let excluded = if exclude.is_empty() {
                    0
                } else {
                    self.scored(requirements, &[]).1.len()
                };
                return Err(Refusal::NoAgent(SelectError::NoAgent {
                    agent_type: requirements.agent_type.clone(),
                    required_capabilities: requirements.required_capabilities.to_vec(),
                    excluded,
                }));
            }
            let pool = self.best(&candidates);
            if pool.is_empty() {
                self.counts.busy.fetch_add(1, Ordering::Relaxed);
                let error = SelectError::AllBusy {
                    agent_type: requirements.agent_type.clone(),
                    eligible: candidates.len(),
                };
                let serials = entries.iter().map(|entry| entry.serial).collect();
                return Err(Refusal::Busy(
                    error,
                    Wants::new(serials, only_unhealthy(&candidates)),
                ));
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
            // Another caller took the last slot (or the agent left) since scoring.
        }
    }

    /// Reserves a slot on one particular agent (a loop keeping its agent across
    /// iterations), if it is registered, meets `requirements` and has a free slot.
    /// `None` otherwise: select as usual then.
    pub fn select_agent(&self, requirements: &AgentTask, agent: &AgentId) -> Option<Selection> {
        let (entries, candidates) = self.scored(requirements, &[]);
        let (entry, candidate) = entries
            .into_iter()
            .zip(candidates)
            .find(|(_, candidate)| candidate.agent == *agent)?;
        if candidate.is_busy() {
            return None;
        }
        let lease = self.reserve(&entry)?;
        Some(Selection {
            agent: Arc::clone(&entry.agent),
            candidate,
            lease,
        })
    }

    /// Indices in `candidates` of those the balancer chooses among.
    fn best(&self, candidates: &[Candidate]) -> Vec<usize> {
        let only_unhealthy = only_unhealthy(candidates);
        let open =
            |c: &Candidate| !c.is_busy() && (only_unhealthy || c.health != Health::Unhealthy);
        let best = candidates
            .iter()
            .filter(|c| open(c))
            .map(|c| c.score.total)
            .fold(f64::NEG_INFINITY, f64::max);
        (0..candidates.len())
            .filter(|&i| open(&candidates[i]) && candidates[i].score.total >= best - self.margin)
            .collect()
    }

    /// Takes a slot on `entry` unless it is full or was deregistered.
    fn reserve(&self, entry: &Arc<Entry>) -> Option<Lease> {
        // The read lock orders this check against `deregister`.
        let _agents = self.read();
        if !entry.registered.load(Ordering::Acquire) || !entry.try_reserve() {
            return None;
        }
        self.counts.reserved.fetch_add(1, Ordering::Relaxed);
        Some(Lease {
            entry: Arc::clone(entry),
            notify: Arc::clone(&self.notify),
        })
    }

    /// Eligible agents and their candidates (parallel vectors), in id order.
    fn scored(
        &self,
        requirements: &AgentTask,
        exclude: &[AgentId],
    ) -> (Vec<Arc<Entry>>, Vec<Candidate>) {
        struct Seen {
            entry: Arc<Entry>,
            capability: f64,
            in_flight: u32,
            health: Health,
            consecutive_failures: u32,
            history: Option<History>,
        }
        let seen: Vec<Seen> = {
            let agents = self.read();
            let Some(of_type) = agents.by_type.get(&requirements.agent_type) else {
                return (Vec::new(), Vec::new());
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
                    Some(Seen {
                        entry: Arc::clone(entry),
                        capability,
                        in_flight: entry.in_flight.load(Ordering::Acquire),
                        health: stats.health,
                        consecutive_failures: stats.consecutive_failures,
                        history: stats.history.get(&requirements.task_type).copied(),
                    })
                })
                .collect()
        };
        let fastest_ms = seen
            .iter()
            .filter_map(|s| s.history.and_then(|h| h.latency_ms))
            .reduce(f64::min);
        let mut entries = Vec::with_capacity(seen.len());
        let mut candidates = Vec::with_capacity(seen.len());
        for s in seen {
            let descriptor = &s.entry.descriptor;
            let score = ScoreBreakdown::new(
                s.capability,
                score::performance(s.history.as_ref(), fastest_ms),
                score::load(s.in_flight, descriptor.max_concurrency),
                score::availability(s.health, s.consecutive_failures),
            );
            candidates.push(Candidate {
                agent: descriptor.id.clone(),
                score,
                in_flight: s.in_flight,
                max_concurrency: descriptor.max_concurrency,
                weight: descriptor.weight,
                health: s.health,
            });
            entries.push(s.entry);
        }
        (entries, candidates)
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
    /// rate and latency, exponentially weighted) and its consecutive-failure count
    /// (reset by a success; `PERMANENT` failures leave it alone). Ignored for an agent
    /// that is not registered.
    pub fn record(&self, agent: &AgentId, task_type: &TaskType, outcome: Outcome) {
        let agents = self.read();
        let Some(entry) = agents.entry(agent) else {
            return;
        };
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

/// Whether every candidate is unhealthy: then unhealthy agents are open (a last resort).
fn only_unhealthy(candidates: &[Candidate]) -> bool {
    candidates.iter().all(|c| c.health == Health::Unhealthy)
}

/// Why a selection reserved nothing.
enum Refusal {
    /// Every eligible agent is busy: the error, and what the caller could use.
    Busy(SelectError, Wants),
    /// No registered agent meets the criteria.
    NoAgent(SelectError),
}

impl Refusal {
    fn into_error(self) -> SelectError {
        match self {
            Self::Busy(error, _) | Self::NoAgent(error) => error,
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
}

impl Lease {
    /// The agent the slot is on.
    pub fn agent(&self) -> &AgentId {
        &self.entry.descriptor.id
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
        self.notify.released(&self.entry);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
            assert_eq!(registry.best(&scored.1).len(), expected, "margin {margin}");
        }
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
        fn assert_send<T: Send>(_: T) {}
        let registry = AgentRegistry::new();
        assert_send(registry.check_health());
    }
}
