//! What the engine tells its metrics: the hooks, the label sets built once, and the
//! in-process aggregation behind the performance report.
//!
//! Every metric goes through `metrics::with_recorder` with a [`Key`] built before: label
//! sets are made once per plan (workflow and step labels: [`PlanMetrics`], which a run
//! and its steps hold), agent (its utilization and its type's waiting line:
//! `AgentMetrics`, looked up once per call) and budget, and kept here, so that recording
//! allocates nothing of its own; with no recorder installed, each metric is a call into
//! the no-op recorder.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use ::metrics::{Key, Label, Level, Metadata};
use chrono::{DateTime, Utc};

use super::names;
use super::performance::{Performance, PerformanceReport};
use crate::agent::{AgentId, AgentRegistry, SlotsInUse};
use crate::definition::AgentType;
use crate::plan::{ExecutionPlan, StepKind};
use crate::run::{FailureKind, RunStatus};

/// The most label sets kept per kind (plans, agents, agent types, budgets); beyond it,
/// a label set is built for each use (correct, with an allocation).
const MAX_KEYS: usize = 4096;

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

fn histogram(key: &Key, value: f64) {
    ::metrics::with_recorder(|recorder| recorder.register_histogram(key, &METADATA).record(value));
}

fn counter(key: &Key) {
    ::metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA).increment(1));
}

fn gauge(key: &Key, value: f64) {
    ::metrics::with_recorder(|recorder| recorder.register_gauge(key, &METADATA).set(value));
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update completes or leaves the value as it was.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    let labels: Vec<Label> = labels
        .iter()
        .map(|&(label, value)| Label::new(label, value.to_owned()))
        .collect();
    // Retained (labels shared): a recorder that keeps or clones the key (most call
    // `to_retained`) then allocates nothing.
    Key::from_parts(name, labels).to_retained()
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from)
        .to_std()
        .map_or(0.0, |duration| duration.as_secs_f64())
}

/// The label sets of one plan's metrics.
struct PlanKeys {
    workflow_duration: Key,
    /// `workflow_success_total` with `success` false, then true.
    success: [Key; 2],
    /// `workflow_runs_total` by final status.
    runs: Vec<(RunStatus, Key)>,
    steps: Vec<StepKeys>,
}

struct StepKeys {
    duration: Key,
    attempt_succeeded: Key,
    /// `step_attempts_total` for each failure kind seen, made on first use.
    attempt_failed: Mutex<Vec<(FailureKind, Key)>>,
    /// `decision_reward` by option id, for a decision step.
    rewards: Vec<(String, Key)>,
    workflow: Arc<str>,
    step: Arc<str>,
}

impl PlanKeys {
    fn of(plan: &ExecutionPlan) -> Self {
        let workflow = plan.workflow_id();
        let definition = plan.definition();
        let workflow_type = definition.workflow_type.as_deref().unwrap_or(workflow);
        let success = [false, true].map(|success| {
            let success = if success { "true" } else { "false" };
            key(
                names::WORKFLOW_SUCCESS_TOTAL,
                &[("workflow_type", workflow_type), ("success", success)],
            )
        });
        let runs = [
            RunStatus::Completed,
            RunStatus::Failed,
            RunStatus::Cancelled,
            RunStatus::TimedOut,
        ]
        .into_iter()
        .map(|status| {
            let labels = [("workflow_name", workflow), ("status", status.as_str())];
            (status, key(names::WORKFLOW_RUNS_TOTAL, &labels))
        })
        .collect();
        let workflow_arc: Arc<str> = Arc::from(workflow);
        let steps = plan
            .steps()
            .iter()
            .map(|step| {
                let task_type = match step.kind() {
                    StepKind::Task(task)
                    | StepKind::Decision(task)
                    | StepKind::Parallel { task, .. }
                    | StepKind::Loop { task, .. } => task.task_type.as_str(),
                    _ => step.step_type().as_str(),
                };
                let step_id = step.id().as_str();
                let labels = [("workflow_name", workflow), ("step_id", step_id)];
                let rewards = step
                    .choice()
                    .map(|choice| {
                        choice
                            .options()
                            .iter()
                            .map(|option| {
                                let mut labels = labels.to_vec();
                                labels.push(("option", option.id.as_str()));
                                (option.id.clone(), key(names::DECISION_REWARD, &labels))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                StepKeys {
                    duration: key(
                        names::STEP_DURATION_SECONDS,
                        &[labels[0], labels[1], ("task_type", task_type)],
                    ),
                    attempt_succeeded: key(
                        names::STEP_ATTEMPTS_TOTAL,
                        &[labels[0], labels[1], ("outcome", "success")],
                    ),
                    attempt_failed: Mutex::new(Vec::new()),
                    rewards,
                    workflow: Arc::clone(&workflow_arc),
                    step: Arc::from(step_id),
                }
            })
            .collect();
        Self {
            workflow_duration: key(
                names::WORKFLOW_DURATION_SECONDS,
                &[
                    ("workflow_type", workflow_type),
                    ("workflow_name", workflow),
                ],
            ),
            success,
            runs,
            steps,
        }
    }
}

impl StepKeys {
    fn attempt_failed(&self, kind: FailureKind) {
        let mut failed = lock(&self.attempt_failed);
        if let Some((_, key)) = failed.iter().find(|(seen, _)| *seen == kind) {
            counter(key);
            return;
        }
        let key = Key::from_parts(
            names::STEP_ATTEMPTS_TOTAL,
            vec![
                Label::new(
                    "workflow_name",
                    ::metrics::SharedString::from(Arc::clone(&self.workflow)),
                ),
                Label::new(
                    "step_id",
                    ::metrics::SharedString::from(Arc::clone(&self.step)),
                ),
                Label::new("outcome", kind.as_str()),
            ],
        )
        .to_retained();
        counter(&key);
        failed.push((kind, key));
    }
}

/// Label sets by a name, kept up to [`MAX_KEYS`].
struct Keyed<K>(Mutex<HashMap<K, Key>>);

impl<K> Default for Keyed<K> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<K: std::hash::Hash + Eq> Keyed<K> {
    fn with<Q>(&self, name: &Q, make: impl FnOnce() -> (K, Key), use_key: impl FnOnce(&Key))
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        let mut keys = lock(&self.0);
        if let Some(key) = keys.get(name) {
            use_key(key);
            return;
        }
        let (owned, key) = make();
        use_key(&key);
        if keys.len() < MAX_KEYS {
            keys.insert(owned, key);
        }
    }
}

/// The label sets of one plan's metrics, which a run and its steps record with.
#[derive(Clone)]
pub(crate) struct PlanMetrics(Arc<PlanKeys>);

impl std::fmt::Debug for PlanMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PlanMetrics").finish_non_exhaustive()
    }
}

impl PlanMetrics {
    /// Step `index` did its work from `started_at` to `ended_at`.
    pub(crate) fn step_ended(
        &self,
        index: usize,
        started_at: DateTime<Utc>,
        ended_at: DateTime<Utc>,
    ) {
        if let Some(step) = self.0.steps.get(index) {
            histogram(&step.duration, seconds(started_at, ended_at));
        }
    }
}

/// A plan's label sets, and a weak handle on the plan that keeps its address taken.
type KeptPlan = (Weak<ExecutionPlan>, Arc<PlanKeys>);

/// The engine's metrics: its hooks call these.
pub(crate) struct Telemetry {
    performance: Mutex<Performance>,
    /// By the plan's address, with a weak handle that keeps the address from being
    /// reused while the entry exists.
    plans: Mutex<HashMap<usize, KeptPlan>>,
    /// Each agent's utilization key and its type's waiting key.
    agents: Mutex<HashMap<AgentId, Arc<AgentKeys>>>,
    budgets: Keyed<String>,
}

/// The label sets of one agent's gauges, which its calls record with.
#[derive(Clone)]
pub(crate) struct AgentMetrics(Arc<AgentKeys>);

impl std::fmt::Debug for AgentMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AgentMetrics").finish_non_exhaustive()
    }
}

impl AgentMetrics {
    /// The agent took or gave back a slot: its utilization (`in_use`) and its type's line
    /// of waiting calls, as `registry` has it now.
    pub(crate) fn load(&self, registry: &AgentRegistry, in_use: &SlotsInUse) {
        let ratio = match in_use.total() {
            0 => 0.0,
            slots => (f64::from(in_use.busy()) / f64::from(slots)).min(1.0),
        };
        gauge(&self.0.utilization, ratio);
        let waiting = WAITING_SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            registry.waiting_for_type(&self.0.agent_type, &mut scratch)
        });
        #[allow(clippy::cast_precision_loss)]
        gauge(&self.0.waiting, waiting as f64);
    }
}

/// The keys of one agent's gauges.
struct AgentKeys {
    agent_type: AgentType,
    utilization: Key,
    waiting: Key,
}

impl AgentKeys {
    fn of(agent: &AgentId, agent_type: &AgentType) -> Self {
        let labels = [("agent_type", agent_type.as_str())];
        Self {
            agent_type: agent_type.clone(),
            utilization: key(
                names::AGENT_UTILIZATION_RATIO,
                &[("agent_id", agent.as_str())],
            ),
            waiting: key(names::AGENT_CALLS_WAITING, &labels),
        }
    }
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Metrics for an engine built at `since`.
    pub(crate) fn new(since: DateTime<Utc>) -> Self {
        Self {
            performance: Mutex::new(Performance::new(since)),
            plans: Mutex::default(),
            agents: Mutex::default(),
            budgets: Keyed::default(),
        }
    }

    /// The performance report as of `now`.
    pub(crate) fn report(&self, now: DateTime<Utc>) -> PerformanceReport {
        lock(&self.performance).report(now)
    }

    /// The label sets of `plan`, for a run of it to record with (made once per plan and
    /// kept while the plan lives).
    pub(crate) fn plan(&self, plan: &Arc<ExecutionPlan>) -> PlanMetrics {
        PlanMetrics(self.kept_keys(plan))
    }

    fn kept_keys(&self, plan: &Arc<ExecutionPlan>) -> Arc<PlanKeys> {
        let address = Arc::as_ptr(plan) as usize;
        let mut plans = lock(&self.plans);
        if let Some((_, keys)) = plans.get(&address) {
            return Arc::clone(keys);
        }
        let keys = Arc::new(PlanKeys::of(plan));
        plans.retain(|_, (weak, _)| weak.strong_count() > 0);
        if plans.len() < MAX_KEYS {
            plans.insert(address, (Arc::downgrade(plan), Arc::clone(&keys)));
        }
        keys
    }

    /// A run of `plan` ended `status`, from `started_at` to `ended_at`, with `rewards`
    /// (step index, option, reward) learned by its decision steps.
    pub(crate) fn run_ended<'a>(
        &self,
        plan: &ExecutionPlan,
        keys: &PlanMetrics,
        status: RunStatus,
        started_at: DateTime<Utc>,
        ended_at: DateTime<Utc>,
        rewards: impl Iterator<Item = (usize, &'a str, f64)>,
    ) {
        lock(&self.performance).record_run(plan.workflow_id(), status, started_at, ended_at);
        let keys = &keys.0;
        histogram(&keys.workflow_duration, seconds(started_at, ended_at));
        counter(&keys.success[usize::from(status == RunStatus::Completed)]);
        match keys
            .runs
            .iter()
            .find(|(final_status, _)| *final_status == status)
        {
            Some((_, key)) => counter(key),
            None => counter(&key(
                names::WORKFLOW_RUNS_TOTAL,
                &[
                    ("workflow_name", plan.workflow_id()),
                    ("status", status.as_str()),
                ],
            )),
        }
        for (index, option, reward) in rewards {
            let Some(step) = keys.steps.get(index) else {
                continue;
            };
            if let Some((_, key)) = step.rewards.iter().find(|(id, _)| id == option) {
                histogram(key, reward);
            }
        }
    }

    /// A call of step `index` of `plan` to `agent` (of `slots` slots) ran from
    /// `started_at` to `ended_at`, and failed with `failure` or succeeded.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attempt_ended(
        &self,
        keys: &PlanMetrics,
        index: usize,
        agent: &AgentId,
        slots: u32,
        started_at: DateTime<Utc>,
        ended_at: DateTime<Utc>,
        failure: Option<FailureKind>,
    ) {
        lock(&self.performance).record_call(agent, slots, started_at, ended_at, failure.is_some());
        let Some(step) = keys.0.steps.get(index) else {
            return;
        };
        match failure {
            None => counter(&step.attempt_succeeded),
            Some(kind) => step.attempt_failed(kind),
        }
    }

    /// The label sets of agent `agent`'s gauges (of type `agent_type`), for a call to
    /// record its slot taken and given back with.
    pub(crate) fn agent(&self, agent: &AgentId, agent_type: &AgentType) -> AgentMetrics {
        let mut agents = lock(&self.agents);
        if let Some(keys) = agents
            .get(agent)
            .filter(|keys| keys.agent_type == *agent_type)
        {
            return AgentMetrics(Arc::clone(keys));
        }
        let keys = Arc::new(AgentKeys::of(agent, agent_type));
        if agents.len() < MAX_KEYS || agents.contains_key(agent) {
            agents.insert(agent.clone(), Arc::clone(&keys));
        }
        AgentMetrics(keys)
    }

    /// Budget `name` (a workflow's: `workflow/name`) holds `tokens` after a reserve,
    /// refund or charge.
    pub(crate) fn budget_available(&self, name: &str, tokens: f64) {
        self.budgets.with(
            name,
            || {
                let key = key(names::BUDGET_AVAILABLE, &[("budget", name)]);
                (name.to_owned(), key)
            },
            |key| gauge(key, tokens),
        );
    }
}

thread_local! {
    /// Reused by [`Telemetry::agent_load`], so counting the line allocates nothing.
    static WAITING_SCRATCH: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Times the journal writer's commits (`journal_commit_seconds`), on the writer
/// thread's monotonic clock.
#[derive(Debug, Clone)]
pub(crate) struct CommitTimer {
    key: Key,
}

impl CommitTimer {
    /// For commits to `store` (its label: the store's type name, as its `Debug` output
    /// begins: `SqliteStore`, `MemoryStore`).
    pub(crate) fn for_store(store: &dyn crate::store::RunStore) -> Self {
        let described = format!("{store:?}");
        let name: String = described
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        let name = if name.is_empty() {
            "store".to_owned()
        } else {
            name
        };
        Self {
            key: key(names::JOURNAL_COMMIT_SECONDS, &[("store", &name)]),
        }
    }

    /// One commit took `elapsed`.
    pub(crate) fn record(&self, elapsed: Duration) {
        histogram(&self.key, elapsed.as_secs_f64());
    }
}
