//! Building an [`Engine`]: [`EngineBuilder`], every setting with its default.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use super::catalogue::Catalogue;
use super::durable::{DEFAULT_LEASE, Journal, Writer};
use super::event::{EventCallback, Listeners};
use super::inner::Inner;
use super::options::RunIds;
use super::outcome::{Outcomes, Relearned, relearn};
use super::{AgentCheck, Engine, RunEvent};
use crate::agent::{AgentRegistry, CircuitBreaker, LoadBalancer, balancer_for};
use crate::clock::{Clock, SystemClock};
use crate::decision::{DecisionEngine, LearningDecisions};
use crate::definition::LoadBalancing;
use crate::resource::{PriorityResourceManager, ResourceManager, ResourcePool};
use crate::store::{RunStore, new_owner};

/// Builds an [`Engine`].
pub struct EngineBuilder {
    clock: Arc<dyn Clock>,
    registry: Option<Arc<AgentRegistry>>,
    decisions: Arc<dyn DecisionEngine>,
    callbacks: Vec<EventCallback>,
    balancing: LoadBalancing,
    balancer: Option<Arc<dyn LoadBalancer>>,
    seed: u64,
    max_output_bytes: usize,
    store: Option<Arc<dyn RunStore>>,
    lease: Duration,
    owner: Option<String>,
    run_ids: RunIds,
    resources: Option<Arc<dyn ResourceManager>>,
    agent_check: AgentCheck,
    relearn_decisions: bool,
    circuit_breaker: Option<CircuitBreaker>,
    budgets: std::collections::BTreeMap<String, crate::safety::BudgetSpec>,
    kill_switch: Arc<crate::safety::KillSwitch>,
    audit: Option<Arc<dyn crate::audit::AuditLog>>,
    permissions: Option<Arc<dyn crate::security::PermissionService>>,
    four_eyes: Option<bool>,
    analyzers: Vec<Arc<dyn crate::security::SecurityAnalyzer>>,
    secrets: Option<Arc<dyn super::Secrets>>,
}

impl fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("clock", &self.clock)
            .field("balancing", &self.balancing)
            .field("balancer", &self.balancer)
            .field("seed", &self.seed)
            .field("store", &self.store)
            .field("resources", &self.resources.is_some())
            .field("agent_check", &self.agent_check)
            .field("relearn_decisions", &self.relearn_decisions)
            .field("circuit_breaker", &self.circuit_breaker)
            .field("budgets", &self.budgets)
            .field("audit", &self.audit)
            .field("secrets", &self.secrets.is_some())
            .finish_non_exhaustive()
    }
}

impl EngineBuilder {
    /// The engine's kill switch rules (see [`Engine::report_metric`]): checked and
    /// compiled here, every problem at once, located `killSwitch[i] (id).field`.
    ///
    /// # Errors
    /// The rules' problems: an empty, long or repeated id, a `when` that does not
    /// compile as a condition over the host context (no `${…}` bindings), an empty tag
    /// or `flatten`, a `quorum` outside 1..=16, more than 100 rules.
    pub fn kill_switch(
        mut self,
        rules: &[crate::safety::KillSwitchRule],
    ) -> Result<Self, crate::definition::ValidationErrors> {
        self.kill_switch = Arc::new(crate::safety::KillSwitch::compile(rules)?);
        Ok(self)
    }

    /// Where the engine appends its audit entries (see [`crate::audit`] for what they
    /// are, and the [module docs](super#audit) for when they are appended and what
    /// happens when an append fails). With a [`SqliteStore`](crate::store::SqliteStore),
    /// `SqliteStore::audit_log` keeps them in the store's file. Costs one append per
    /// entry (with SQLite, one synced commit, made on the thread that asked or polls
    /// the run: two per run, at its start and end). Defaults to none: nothing is
    /// audited.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use tradeflow::audit::{AuditLog, MemoryAuditLog};
    /// use tradeflow::definition::WorkflowDefinition;
    /// use tradeflow::engine::Engine;
    ///
    /// let log = Arc::new(MemoryAuditLog::new());
    /// let engine = Engine::builder().audit(log.clone()).build();
    /// engine.create_workflow(WorkflowDefinition::from_json(r#"{"id": "w", "steps": [
    ///     {"id": "a", "type": "task", "agentCriteria": {"type": "X"}, "task": {"type": "T"}}]}"#)?)?;
    /// assert_eq!(log.read(1, 10)?[0].event.kind(), "workflowDefined");
    /// assert_eq!(log.verify()?.entries, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn audit(mut self, log: Arc<dyn crate::audit::AuditLog>) -> Self {
        self.audit = Some(log);
        self
    }

    /// Who may do what: with a service, every operation a user asks for is checked
    /// before the engine acts, and a run must name its user ([`RunOptions::user`], or
    /// [`RunOptions::as_host`]); see [`crate::security`] for the whole contract. Defaults
    /// to none: everything is allowed.
    ///
    /// [`RunOptions::user`]: super::RunOptions::user
    /// [`RunOptions::as_host`]: super::RunOptions::as_host
    #[must_use]
    pub fn permissions(mut self, permissions: Arc<dyn crate::security::PermissionService>) -> Self {
        self.permissions = Some(permissions);
        self
    }

    /// Four eyes: whether the user who started a run is refused as the approver of its
    /// steps ([`SecurityError::FourEyes`](crate::security::SecurityError::FourEyes);
    /// rejecting stays allowed). Defaults to on when the engine has
    /// [`permissions`](Self::permissions), off otherwise.
    #[must_use]
    pub fn four_eyes(mut self, on: bool) -> Self {
        self.four_eyes = Some(on);
        self
    }

    /// Adds a check run before every run [`Engine::start`] starts, after the others
    /// added before it (see [`crate::security::SecurityAnalyzer`]). Defaults to none.
    #[must_use]
    pub fn analyzer(mut self, analyzer: Arc<dyn crate::security::SecurityAnalyzer>) -> Self {
        self.analyzers.push(analyzer);
        self
    }

    /// Where time comes from. Defaults to [`SystemClock`].
    #[must_use]
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Engine-level budgets: named token buckets shared by every run of the engine (a
    /// venue's limit is the account's, not a run's), added to those set before. A step's
    /// `budget` takes from the workflow's own budget of a name first, else from the
    /// engine's; a workflow naming a budget neither declares is refused when it is added
    /// to the engine ([`EngineError::Invalid`](super::EngineError::Invalid)).
    #[must_use]
    pub fn budgets<N: Into<String>>(
        mut self,
        budgets: impl IntoIterator<Item = (N, crate::safety::BudgetSpec)>,
    ) -> Self {
        self.budgets
            .extend(budgets.into_iter().map(|(name, spec)| (name.into(), spec)));
        self
    }

    /// The agent registry, to share one between engines. Defaults to a new, empty one,
    /// on the engine's [`clock`](Self::clock) and with its
    /// [`circuit_breaker`](Self::circuit_breaker).
    ///
    /// A registry given here keeps its own clock and circuit-breaker default (set them
    /// with [`AgentRegistry::builder`]); build it with the engine's clock, or breakers
    /// open and turn half open on another time than the engine's.
    #[must_use]
    pub fn registry(mut self, registry: Arc<AgentRegistry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Where `decision` steps choose, learn and are recorded. Defaults to a new
    /// [`LearningDecisions`] (in memory, default limits).
    #[must_use]
    pub fn decisions(mut self, decisions: Arc<dyn DecisionEngine>) -> Self {
        self.decisions = decisions;
        self
    }

    /// Calls `callback` with every event of every run, synchronously, in order (keep it
    /// quick). Defaults to none; [`Engine::subscribe`] gives a stream instead.
    #[must_use]
    pub fn on_event(mut self, callback: impl Fn(&RunEvent) + Send + Sync + 'static) -> Self {
        self.callbacks.push(Arc::new(callback));
        self
    }

    /// The built-in balancer of steps that name none. Defaults to `LEAST_CONNECTIONS`;
    /// a host's balancer ([`load_balancer`](Self::load_balancer)) takes its place.
    #[must_use]
    pub fn load_balancing(mut self, balancing: LoadBalancing) -> Self {
        self.balancing = balancing;
        self
    }

    /// A host's own balancer, next to the four built-in ones: the balancer of every step
    /// whose `agentCriteria` names no `loadBalancing` (it replaces
    /// [`load_balancing`](Self::load_balancing)). A step that names a strategy
    /// (`ROUND_ROBIN`, `WEIGHTED`, `LEAST_CONNECTIONS`, `POWER_OF_TWO_CHOICES`) still gets
    /// the built-in one. One instance serves every run and agent type; the registry calls
    /// its [`pick_for`](LoadBalancer::pick_for) with the type asked for. Defaults to
    /// none.
    ///
    /// # Examples
    /// ```
    /// # use std::sync::Arc;
    /// # use rand::Rng;
    /// # use tradeflow::agent::{Candidate, LoadBalancer};
    /// # use tradeflow::engine::Engine;
    /// #[derive(Debug)]
    /// struct Last;
    ///
    /// impl LoadBalancer for Last {
    ///     fn pick(&self, candidates: &[Candidate], _: &mut dyn Rng) -> usize {
    ///         candidates.len().saturating_sub(1)
    ///     }
    /// }
    ///
    /// let engine = Engine::builder().load_balancer(Arc::new(Last)).build();
    /// # drop(engine);
    /// ```
    #[must_use]
    pub fn load_balancer(mut self, balancer: Arc<dyn LoadBalancer>) -> Self {
        self.balancer = Some(balancer);
        self
    }

    /// The seed runs derive their random choices from. Defaults to 0.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The largest agent output accepted, in bytes of JSON. Defaults to 1 MiB.
    #[must_use]
    pub fn max_output_bytes(mut self, bytes: usize) -> Self {
        self.max_output_bytes = bytes;
        self
    }

    /// Where runs are journaled, so that [`Engine::recover`] can continue them after a
    /// restart: every transition of a run is appended before the engine acts on it, and
    /// every workflow the engine keeps is stored with its version. Appends are made by a
    /// thread of the engine's own (never on the caller's executor), several runs' in one
    /// transaction. An append that fails is retried for under a second (a busy store for
    /// about two); then the run stops, `FAILED` with kind `STORE`, and stays unfinished
    /// in the store for a later [`Engine::recover`]. Each run is held under a lease
    /// ([`lease`](Self::lease)), so that two engines never drive one run. Defaults to
    /// none: nothing is journaled, and runs do not survive the process.
    #[must_use]
    pub fn store(mut self, store: impl RunStore + 'static) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Where [`Engine::recover`] gets the sensitive values a run's journal holds only as
    /// `"***"` (the workflow's `sensitive` field names): see [`Secrets`](super::Secrets).
    /// Defaults to none: a run whose input held sensitive values is then not recovered
    /// ([`RecoveryError::NoSecrets`](super::RecoveryError::NoSecrets)), rather than
    /// sending `"***"` to an agent.
    #[must_use]
    pub fn secrets(mut self, secrets: impl super::Secrets + 'static) -> Self {
        self.secrets = Some(Arc::new(secrets));
        self
    }

    /// How long this engine holds a run it drives without renewing the hold (its lease
    /// in the store): another engine may take a run whose lease ended, and this one then
    /// stops driving it. Leases are renewed every fifth of this. Defaults to 10 seconds.
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// This engine's name as the owner of the runs it drives (in the store, and in the
    /// errors of engines that find a run held). Two engines must not share a name.
    /// Defaults to `host/pid/start/n`: this host, process, process start, and the
    /// engine's number in the process.
    #[must_use]
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// How runs are named when [`RunOptions::run_id`](super::RunOptions::run_id) does
    /// not name them. Defaults to [`RunIds::TimeOrdered`].
    #[must_use]
    pub fn run_ids(mut self, run_ids: RunIds) -> Self {
        self.run_ids = run_ids;
        self
    }

    /// Where steps and runs take their `resourceRequirements` from: a step waits until
    /// its requirements are granted and gives them back when it ends; a run holds the
    /// workflow's for its whole length (see [Resources](crate::engine#resources)). Pass an
    /// `Arc` to keep a handle ([`Engine::resources`] gives one too). Defaults to none:
    /// requirements are validated but not enforced.
    #[must_use]
    pub fn resources(mut self, manager: impl ResourceManager + 'static) -> Self {
        self.resources = Some(Arc::new(manager));
        self
    }

    /// Takes `resourceRequirements` from `pool`, with a [`PriorityResourceManager`]
    /// (strict priority order); the same as `resources(PriorityResourceManager::new(pool))`.
    /// Defaults to none: requirements are validated but not enforced.
    #[must_use]
    pub fn resource_pool(self, pool: ResourcePool) -> Self {
        self.resources(PriorityResourceManager::new(pool))
    }

    /// When a workflow's steps are checked for agents that can take them:
    /// [`AgentCheck::BeforeStart`] makes [`Engine::start`] refuse a run with a step no
    /// registered agent can take ([`EngineError::NoAgents`](super::EngineError::NoAgents)),
    /// before anything runs. Defaults to [`AgentCheck::WhenReached`]: a step looks for its
    /// agent when it is reached.
    ///
    /// ```
    /// use tradeflow::definition::WorkflowDefinition;
    /// use tradeflow::engine::{AgentCheck, Engine, EngineError, RunOptions};
    ///
    /// let engine = Engine::builder().agent_check(AgentCheck::BeforeStart).build();
    /// engine.create_workflow(WorkflowDefinition::from_json(r#"{"id": "w", "steps": [
    ///     {"id": "risk", "type": "task", "agentCriteria": {"type": "RISK_MANAGEMENT"},
    ///      "task": {"type": "RISK_ASSESSMENT"}}]}"#)?)?;
    /// let refused = engine.start("w", RunOptions::default()).unwrap_err();
    /// assert!(matches!(refused, EngineError::NoAgents { .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn agent_check(mut self, check: AgentCheck) -> Self {
        self.agent_check = check;
        self
    }

    /// Whether an engine built with a [`store`](Self::store) learns again, when built,
    /// every reward its journals hold, so that its decision model is the one the
    /// previous process had ([`Engine::relearned`] says what it learned). Defaults to
    /// `true`; turn it off when the decision engine keeps its model itself (imported
    /// from a snapshot), or it would learn those rewards twice.
    #[must_use]
    pub fn relearn_decisions(mut self, relearn: bool) -> Self {
        self.relearn_decisions = relearn;
        self
    }

    /// The circuit breaker of every agent whose descriptor names none
    /// ([`AgentDescriptor::with_circuit_breaker`](crate::agent::AgentDescriptor::with_circuit_breaker)):
    /// after `failures` consecutive failed calls, the agent is not selected for
    /// `open_for` on the engine's clock, then one probe call decides (see
    /// [Circuit breakers](crate::agent#circuit-breakers)). `None` switches them off
    /// (agents with a breaker of their own keep it). Applies to the registry the engine
    /// creates, not to one given with [`registry`](Self::registry). Defaults to
    /// [`CircuitBreaker::DEFAULT`]: 5 failures, 30 seconds.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use tradeflow::agent::CircuitBreaker;
    /// use tradeflow::engine::Engine;
    ///
    /// let quick = Engine::builder()
    ///     .circuit_breaker(CircuitBreaker::new(3, Duration::from_secs(10)))
    ///     .build();
    /// let never = Engine::builder().circuit_breaker(None).build();
    /// # let _ = (quick, never);
    /// ```
    #[must_use]
    pub fn circuit_breaker(mut self, breaker: impl Into<Option<CircuitBreaker>>) -> Self {
        self.circuit_breaker = breaker.into();
        self
    }

    /// The engine. With a store, it first learns again from the store's journals (see
    /// [`relearn_decisions`](Self::relearn_decisions)): blocking I/O, in proportion to
    /// the runs that learned a reward.
    pub fn build(self) -> Engine {
        let relearned = match &self.store {
            Some(store) if self.relearn_decisions => relearn(&**store, &*self.decisions),
            _ => Relearned::default(),
        };
        let balancers = [
            balancer_for(LoadBalancing::RoundRobin),
            balancer_for(LoadBalancing::Weighted),
            balancer_for(LoadBalancing::LeastConnections),
            balancer_for(LoadBalancing::PowerOfTwoChoices),
        ];
        let registry = self.registry.unwrap_or_else(|| {
            let registry = AgentRegistry::builder()
                .shared_clock(Arc::clone(&self.clock))
                .circuit_breaker(self.circuit_breaker);
            Arc::new(registry.build())
        });
        let now = self.clock.now();
        Engine {
            inner: Arc::new(Inner {
                clock: self.clock,
                registry,
                decisions: self.decisions,
                listeners: Listeners::new(self.callbacks),
                catalogue: Catalogue::default(),
                approvals: Arc::default(),
                balancers,
                default_balancing: self.balancing,
                host_balancer: self.balancer,
                seed: self.seed,
                runs: AtomicU64::new(0),
                max_output_bytes: self.max_output_bytes,
                journal: self.store.map(|store| {
                    let heartbeat = self.lease / 5;
                    let timer = crate::metrics::CommitTimer::for_store(&*store);
                    Journal {
                        writer: Writer::start(Arc::clone(&store), self.lease, heartbeat, timer),
                        store,
                        owner: Arc::from(self.owner.unwrap_or_else(new_owner)),
                        lease: self.lease,
                    }
                }),
                run_ids: self.run_ids,
                controls: Arc::default(),
                resources: self.resources,
                agent_check: self.agent_check,
                outcomes: Outcomes::default(),
                relearned,
                adapting: Default::default(),
                budgets: super::budgets::Budgets::new(self.budgets, now),
                kill_switch: self.kill_switch,
                audit: super::audit::Auditor::new(self.audit),
                guard: super::guard::Guard {
                    four_eyes: self.four_eyes.unwrap_or(self.permissions.is_some()),
                    permissions: self.permissions,
                    analyzers: self.analyzers,
                },
                secrets: self.secrets,
                telemetry: crate::metrics::Telemetry::new(now),
            }),
        }
    }
}

impl Engine {
    /// A builder, with every setting at its default.
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
            clock: Arc::new(SystemClock),
            registry: None,
            decisions: Arc::new(LearningDecisions::new()),
            callbacks: Vec::new(),
            balancing: LoadBalancing::LeastConnections,
            balancer: None,
            seed: 0,
            max_output_bytes: 1 << 20,
            store: None,
            lease: DEFAULT_LEASE,
            owner: None,
            run_ids: RunIds::default(),
            resources: None,
            agent_check: AgentCheck::default(),
            relearn_decisions: true,
            kill_switch: Arc::default(),
            audit: None,
            circuit_breaker: Some(CircuitBreaker::DEFAULT),
            budgets: std::collections::BTreeMap::new(),
            permissions: None,
            four_eyes: None,
            analyzers: Vec::new(),
            secrets: None,
        }
    }
}
