//! What the engine tells its metrics: the hooks, the metrics of each plan, agent and
//! budget built once, and the in-process aggregation behind the performance report.
//!
//! Every metric the engine records per run, step or call is a [`Slot`]: its label set
//! built once (per plan: [`PlanMetrics`], which a run and its steps hold; per agent:
//! [`AgentMetrics`], kept on the agent's registration with the tally of its calls; per
//! agent type's waiting line; per budget) and the handle the recorder gave for it, kept
//! while it may be trusted (see `slot.rs`). With no recorder installed, each update is a
//! call into the facade's no-op recorder.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use ::metrics::{Counter, Gauge, Histogram, Key, Label};
use chrono::{DateTime, Timelike, Utc};

use super::names;
use super::performance::{AgentTally, MAX_TRACKED_AGENTS, Performance, PerformanceReport};
use super::slot::{Slot, update_once};
use crate::agent::{AgentId, AgentRegistry, SlotsInUse};
use crate::definition::AgentType;
use crate::plan::{ExecutionPlan, StepKind};
use crate::run::{FailureKind, RunStatus};

/// The most plans and budgets whose metrics are kept; beyond it, a label set is built
/// for each use (correct, with an allocation).
const MAX_KEYS: usize = 4096;

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

/// Seconds from `from` to `to`; 0 when `to` is earlier. Within one day (a step's
/// work, most often) from the times of day alone, which costs a tenth of subtracting
/// whole dates.
fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    let (from_utc, to_utc) = (from.naive_utc(), to.naive_utc());
    if from_utc.date() == to_utc.date() {
        let (from_time, to_time) = (from_utc.time(), to_utc.time());
        let whole = i64::from(to_time.num_seconds_from_midnight())
            - i64::from(from_time.num_seconds_from_midnight());
        let nanos = i64::from(to_time.nanosecond()) - i64::from(from_time.nanosecond());
        // Within a day (and a leap second): no overflow. As `Duration::as_secs_f64`
        // computes it, so both ways give the same number.
        let total = whole * 1_000_000_000 + nanos;
        if total <= 0 {
            return 0.0;
        }
        #[allow(clippy::cast_precision_loss)]
        return (total / 1_000_000_000) as f64 + (total % 1_000_000_000) as f64 / 1e9;
    }
    (to - from)
        .to_std()
        .map_or(0.0, |duration| duration.as_secs_f64())
}

/// The metrics of one plan.
struct PlanKeys {
    workflow_duration: Slot<Histogram>,
    /// `workflow_success_total` with `success` false, then true.
    success: [Slot<Counter>; 2],
    /// `workflow_runs_total` by final status.
    runs: Vec<(RunStatus, Slot<Counter>)>,
    steps: Vec<StepKeys>,
}

struct StepKeys {
    duration: Slot<Histogram>,
    attempt_succeeded: Slot<Counter>,
    /// `step_attempts_total` for each failure kind seen, made on first use.
    attempt_failed: Mutex<Vec<(FailureKind, Slot<Counter>)>>,
    /// `decision_reward` by option id, for a decision step.
    rewards: Vec<(String, Slot<Histogram>)>,
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
            Slot::new(key(
                names::WORKFLOW_SUCCESS_TOTAL,
                &[("workflow_type", workflow_type), ("success", success)],
            ))
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
            (status, Slot::new(key(names::WORKFLOW_RUNS_TOTAL, &labels)))
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
                                let reward = Slot::new(key(names::DECISION_REWARD, &labels));
                                (option.id.clone(), reward)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                StepKeys {
                    duration: Slot::new(key(
                        names::STEP_DURATION_SECONDS,
                        &[labels[0], labels[1], ("task_type", task_type)],
                    )),
                    attempt_succeeded: Slot::new(key(
                        names::STEP_ATTEMPTS_TOTAL,
                        &[labels[0], labels[1], ("outcome", "success")],
                    )),
                    attempt_failed: Mutex::new(Vec::new()),
                    rewards,
                    workflow: Arc::clone(&workflow_arc),
                    step: Arc::from(step_id),
                }
            })
            .collect();
        Self {
            workflow_duration: Slot::new(key(
                names::WORKFLOW_DURATION_SECONDS,
                &[
                    ("workflow_type", workflow_type),
                    ("workflow_name", workflow),
                ],
            )),
            success,
            runs,
            steps,
        }
    }
}

impl StepKeys {
    fn attempt_failed(&self, kind: FailureKind, now: DateTime<Utc>) {
        let mut failed = lock(&self.attempt_failed);
        if let Some((_, slot)) = failed.iter().find(|(seen, _)| *seen == kind) {
            slot.update(1, now);
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
        let slot = Slot::new(key);
        slot.update(1, now);
        failed.push((kind, slot));
    }
}

/// The metrics of one plan, which a run and its steps record with.
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
            step.duration
                .update(seconds(started_at, ended_at), ended_at);
        }
    }
}

/// A plan's metrics, and a weak handle on the plan that keeps its address taken.
type KeptPlan = (Weak<ExecutionPlan>, Arc<PlanKeys>);

/// The engine's metrics: its hooks call these.
pub(crate) struct Telemetry {
    /// Runs by workflow (calls by agent are tallied in each agent's [`AgentKeys`]).
    performance: Mutex<Performance>,
    /// By the plan's address, with a weak handle that keeps the address from being
    /// reused while the entry exists.
    plans: Mutex<HashMap<usize, KeptPlan>>,
    /// Each agent's gauges and call tally, at most [`MAX_TRACKED_AGENTS`].
    agents: Mutex<HashMap<AgentId, Arc<AgentKeys>>>,
    /// Calls to agents beyond [`MAX_TRACKED_AGENTS`].
    untracked_calls: AtomicU64,
    budgets: Mutex<HashMap<String, Arc<Slot<Gauge>>>>,
    /// Each agent type's line of waiting calls.
    lines: Mutex<HashMap<AgentType, Arc<Slot<Gauge>>>>,
    /// This engine's number (from [`ENGINES`]).
    engine: u64,
}

/// One agent's metrics, which a call records with: borrowed from the agent's
/// registration (no reference count touched), or held.
pub(crate) struct AgentMetrics<'a>(Held<'a>);

enum Held<'a> {
    Kept(&'a AgentKeys),
    Own(Arc<AgentKeys>),
}

impl std::ops::Deref for AgentMetrics<'_> {
    type Target = AgentKeys;
    fn deref(&self) -> &AgentKeys {
        match &self.0 {
            Held::Kept(keys) => keys,
            Held::Own(keys) => keys,
        }
    }
}

impl std::fmt::Debug for AgentMetrics<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AgentMetrics").finish_non_exhaustive()
    }
}

impl AgentMetrics<'_> {
    /// The agent took or gave back a slot at `now`: its utilization, as `in_use` reads
    /// it now.
    pub(crate) fn load(&self, in_use: &SlotsInUse, now: DateTime<Utc>) {
        let ratio = match in_use.total() {
            0 => 0.0,
            slots => (f64::from(in_use.busy()) / f64::from(slots)).min(1.0),
        };
        self.utilization.update(ratio, now);
    }
}

/// An agent's metrics kept on its registration, for the engine numbered `engine`.
struct KeptAgent {
    engine: u64,
    keys: Arc<AgentKeys>,
}

/// Numbers engines, so that metrics kept on a registry two engines share are told apart.
static ENGINES: AtomicU64 = AtomicU64::new(0);

/// One agent's gauges, and the tally of its calls for the performance report.
pub(crate) struct AgentKeys {
    agent_type: AgentType,
    utilization: Slot<Gauge>,
    /// Shared with the keys made again when the agent comes back with another type;
    /// none when the agent is beyond [`MAX_TRACKED_AGENTS`].
    tally: Option<Arc<Mutex<AgentTally>>>,
}

impl AgentKeys {
    fn of(agent: &AgentId, agent_type: &AgentType, tally: Option<Arc<Mutex<AgentTally>>>) -> Self {
        Self {
            agent_type: agent_type.clone(),
            utilization: Slot::new(key(
                names::AGENT_UTILIZATION_RATIO,
                &[("agent_id", agent.as_str())],
            )),
            tally,
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
            untracked_calls: AtomicU64::new(0),
            budgets: Mutex::default(),
            lines: Mutex::default(),
            engine: ENGINES.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The performance report as of `now`.
    pub(crate) fn report(&self, now: DateTime<Utc>) -> PerformanceReport {
        let mut report = lock(&self.performance).report(now);
        // The calls, tallied on each agent's registration, over the same window.
        let mut calls = Performance::new(report.since);
        for (id, keys) in lock(&self.agents).iter() {
            if let Some(tally) = &keys.tally {
                calls.add_agent(id, &lock(tally));
            }
        }
        calls.add_untracked_calls(self.untracked_calls.load(Ordering::Relaxed));
        let calls = calls.report(now);
        report.agents = calls.agents;
        report.untracked_calls = calls.untracked_calls;
        report
    }

    /// The metrics of `plan`, for a run of it to record with (made once per plan and
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
        let now = ended_at;
        (keys.workflow_duration).update(seconds(started_at, ended_at), now);
        keys.success[usize::from(status == RunStatus::Completed)].update(1, now);
        match keys
            .runs
            .iter()
            .find(|(final_status, _)| *final_status == status)
        {
            Some((_, slot)) => slot.update(1, now),
            None => update_once::<Counter>(
                &key(
                    names::WORKFLOW_RUNS_TOTAL,
                    &[
                        ("workflow_name", plan.workflow_id()),
                        ("status", status.as_str()),
                    ],
                ),
                1,
            ),
        }
        for (index, option, reward) in rewards {
            let Some(step) = keys.steps.get(index) else {
                continue;
            };
            if let Some((_, slot)) = step.rewards.iter().find(|(id, _)| id == option) {
                slot.update(reward, now);
            }
        }
    }

    /// A call of step `index` of `keys`' plan to the agent of `agent` (of `slots`
    /// slots) ended at `ended_at` after `latency`, and failed with `failure` or
    /// succeeded.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attempt_ended(
        &self,
        keys: &PlanMetrics,
        index: usize,
        agent: &AgentMetrics<'_>,
        slots: u32,
        latency: Duration,
        ended_at: DateTime<Utc>,
        failure: Option<FailureKind>,
    ) {
        match &agent.tally {
            Some(tally) => lock(tally).record(slots, latency, failure.is_some()),
            None => {
                self.untracked_calls.fetch_add(1, Ordering::Relaxed);
            }
        }
        let Some(step) = keys.0.steps.get(index) else {
            return;
        };
        match failure {
            None => step.attempt_succeeded.update(1, ended_at),
            Some(kind) => step.attempt_failed(kind, ended_at),
        }
    }

    /// The metrics of the agent whose slots `in_use` reads, called as an agent of
    /// `agent_type`, for the call to record its slot taken and given back, and its end,
    /// with: kept on the agent's registration, so that only the first call to it looks
    /// them up (which also tells its type's line of waiting calls at `now`, as
    /// `registry` has it, so the line is shown before anyone waits in it).
    pub(crate) fn agent<'a>(
        &self,
        in_use: &'a SlotsInUse,
        agent_type: &AgentType,
        registry: &AgentRegistry,
        now: DateTime<Utc>,
    ) -> AgentMetrics<'a> {
        let kept = in_use
            .extension()
            .get()
            .and_then(|kept| kept.downcast_ref::<KeptAgent>())
            .filter(|kept| kept.engine == self.engine && kept.keys.agent_type == *agent_type);
        if let Some(kept) = kept {
            return AgentMetrics(Held::Kept(&kept.keys));
        }
        let keys = self.agent_by_id(in_use.agent(), agent_type);
        self.waiting(registry, agent_type, now);
        if keys.tally.is_some() {
            let kept = KeptAgent {
                engine: self.engine,
                keys: Arc::clone(&keys),
            };
            // The first engine to ask keeps its metrics there (one sharing the registry
            // with it looks its own up at each call).
            let _ = in_use.extension().set(Arc::new(kept));
        }
        AgentMetrics(Held::Own(keys))
    }

    /// The metrics of agent `agent` as an agent of `agent_type`, looked up by its id.
    fn agent_by_id(&self, agent: &AgentId, agent_type: &AgentType) -> Arc<AgentKeys> {
        let mut agents = lock(&self.agents);
        let tally = match agents.get(agent) {
            Some(keys) if keys.agent_type == *agent_type => {
                return Arc::clone(keys);
            }
            // Back under another type: the same tally.
            Some(keys) => keys.tally.clone(),
            None if agents.len() < MAX_TRACKED_AGENTS => {
                Some(Arc::new(Mutex::new(AgentTally::default())))
            }
            None => None,
        };
        let keys = Arc::new(AgentKeys::of(agent, agent_type, tally));
        if keys.tally.is_some() {
            agents.insert(agent.clone(), Arc::clone(&keys));
        }
        keys
    }

    /// A call to an agent of `agent_type` joined or left the line of calls waiting for
    /// a slot at `now`: the line's length, as `registry` has it now.
    pub(crate) fn waiting(
        &self,
        registry: &AgentRegistry,
        agent_type: &AgentType,
        now: DateTime<Utc>,
    ) {
        let waiting = WAITING_SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            registry.waiting_for_type(agent_type, &mut scratch)
        });
        let slot = kept_gauge(&self.lines, agent_type, AgentType::clone, || {
            key(
                names::AGENT_CALLS_WAITING,
                &[("agent_type", agent_type.as_str())],
            )
        });
        #[allow(clippy::cast_precision_loss)]
        slot.update(waiting as f64, now);
    }

    /// The budget the engine's ledger keeps under `kept_as` (labelled `label()`: an engine
    /// budget by its name, a workflow's `workflow/name`) holds `tokens` at `now`, after
    /// a reserve, refund or charge. The label is made the first time only.
    pub(crate) fn budget_available(
        &self,
        kept_as: &str,
        label: impl FnOnce() -> String,
        tokens: f64,
        now: DateTime<Utc>,
    ) {
        let slot = kept_gauge(&self.budgets, kept_as, str::to_owned, || {
            key(names::BUDGET_AVAILABLE, &[("budget", &label())])
        });
        slot.update(tokens, now);
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn seconds_between_two_instants_are_exact_within_a_day_and_across_days() {
        let at = |day: u32, h: u32, m: u32, s: u32, ms: i64| {
            Utc.with_ymd_and_hms(2026, 12, day, h, m, s).unwrap()
                + chrono::Duration::milliseconds(ms)
        };
        assert_eq!(seconds(at(4, 9, 0, 0, 0), at(4, 9, 0, 1, 250)), 1.25);
        assert_eq!(seconds(at(4, 9, 0, 1, 750), at(4, 9, 0, 2, 0)), 0.25);
        assert_eq!(seconds(at(4, 23, 59, 59, 500), at(5, 0, 0, 0, 250)), 0.75);
        assert_eq!(seconds(at(4, 9, 0, 0, 0), at(6, 9, 0, 0, 0)), 172_800.0);
        // The same number as the whole subtraction gives, to the last bit.
        for ms in [1, 100, 300, 999, 1_001, 86_399_999] {
            let (from, to) = (at(4, 0, 0, 0, 0), at(4, 0, 0, 0, ms));
            let whole = (to - from).to_std().unwrap().as_secs_f64();
            assert_eq!(seconds(from, to), whole, "{ms} ms");
        }
        // Backwards is nothing, within a day or across days.
        assert_eq!(seconds(at(4, 9, 0, 1, 0), at(4, 9, 0, 0, 0)), 0.0);
        assert_eq!(seconds(at(5, 0, 0, 0, 0), at(4, 9, 0, 0, 0)), 0.0);
    }
}

/// The gauge kept in `gauges` under `name` (`owned` makes its key in the map, `key` its
/// label set), made the first time; beyond [`MAX_KEYS`] names, made for each use.
fn kept_gauge<K, Q>(
    gauges: &Mutex<HashMap<K, Arc<Slot<Gauge>>>>,
    name: &Q,
    owned: impl FnOnce(&Q) -> K,
    key: impl FnOnce() -> Key,
) -> Arc<Slot<Gauge>>
where
    K: std::hash::Hash + Eq + std::borrow::Borrow<Q>,
    Q: std::hash::Hash + Eq + ?Sized,
{
    let mut gauges = lock(gauges);
    if let Some(slot) = gauges.get(name) {
        return Arc::clone(slot);
    }
    let slot = Arc::new(Slot::new(key()));
    if gauges.len() < MAX_KEYS {
        gauges.insert(owned(name), Arc::clone(&slot));
    }
    slot
}

thread_local! {
    /// Reused by [`Telemetry::waiting`], so counting the line allocates nothing.
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
        update_once::<Histogram>(&self.key, elapsed.as_secs_f64());
    }
}
