//! The engine's own aggregation of runs and calls, and the report read from it.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::histogram::LogHistogram;
use crate::agent::AgentId;
use crate::run::{RunId, RunStatus};
use crate::store::JournalEntry;

/// The most workflows a [`Performance`] keeps statistics for; runs of others are counted
/// in [`PerformanceReport::untracked_runs`].
pub const MAX_TRACKED_WORKFLOWS: usize = 1024;
/// The most agents a [`Performance`] keeps statistics for; calls to others are counted in
/// [`PerformanceReport::untracked_calls`].
pub const MAX_TRACKED_AGENTS: usize = 4096;

/// Runs and calls folded into per-workflow and per-agent statistics, in bounded memory:
/// one [log histogram](crate::metrics#precision) of about 5 KiB per workflow and a few
/// counters per agent, at most [`MAX_TRACKED_WORKFLOWS`] workflows and
/// [`MAX_TRACKED_AGENTS`] agents.
///
/// An engine keeps one ([`Engine::generate_performance_report`]); `tradeflow stats`
/// builds one from a store's journals ([`Performance::record_journal`]).
///
/// [`Engine::generate_performance_report`]: crate::engine::Engine::generate_performance_report
///
/// # Examples
/// ```
/// use chrono::{TimeZone, Utc};
/// use tradeflow::metrics::Performance;
/// use tradeflow::run::RunStatus;
///
/// let t0 = Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap();
/// let mut performance = Performance::new(t0);
/// for (seconds, status) in [(2, RunStatus::Completed), (4, RunStatus::Failed)] {
///     let ended = t0 + chrono::Duration::seconds(seconds);
///     performance.record_run("momentum", status, t0, ended);
/// }
/// let report = performance.report(t0 + chrono::Duration::seconds(10));
/// let momentum = &report.workflows["momentum"];
/// assert_eq!((momentum.runs, momentum.succeeded), (2, 1));
/// assert_eq!(momentum.success_rate, 0.5);
/// assert_eq!(momentum.duration.as_ref().unwrap().mean_seconds, 3.0);
/// ```
#[derive(Debug, Clone)]
pub struct Performance {
    since: DateTime<Utc>,
    workflows: BTreeMap<String, WorkflowTally>,
    agents: BTreeMap<AgentId, AgentTally>,
    untracked_runs: u64,
    untracked_calls: u64,
}

#[derive(Debug, Clone, Default)]
struct WorkflowTally {
    runs: u64,
    succeeded: u64,
    durations: LogHistogram,
}

/// One agent's calls: how many, how many failed, the time they took.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AgentTally {
    calls: u64,
    failed: u64,
    busy_micros: u128,
    /// The agent's slots at its last call; 0 when not known (a journal does not say).
    slots: u32,
}

impl AgentTally {
    /// Counts a call to an agent of `slots` slots (0 when not known) that took
    /// `busy_micros` microseconds, failed or not.
    fn count(&mut self, slots: u32, busy_micros: u64, failed: bool) {
        self.calls = self.calls.saturating_add(1);
        if failed {
            self.failed = self.failed.saturating_add(1);
        }
        self.busy_micros = self.busy_micros.saturating_add(u128::from(busy_micros));
        if slots > 0 {
            self.slots = slots;
        }
    }

    /// Counts a call to an agent of `slots` slots that took `latency`, failed or not.
    pub(crate) fn record(&mut self, slots: u32, latency: std::time::Duration, failed: bool) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.count(slots, micros, failed);
    }

    /// Adds `other`'s calls to these.
    fn absorb(&mut self, other: &Self) {
        self.calls = self.calls.saturating_add(other.calls);
        self.failed = self.failed.saturating_add(other.failed);
        self.busy_micros = self.busy_micros.saturating_add(other.busy_micros);
        self.slots = self.slots.max(other.slots);
    }
}

/// Whole microseconds from `from` to `to`; 0 when `to` is earlier.
fn micros(from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    (to - from)
        .num_microseconds()
        .and_then(|micros| u64::try_from(micros).ok())
        .unwrap_or(if to > from { u64::MAX } else { 0 })
}

impl Performance {
    /// Empty statistics, counting from `since` (the start of the window agents'
    /// utilization is measured over).
    pub fn new(since: DateTime<Utc>) -> Self {
        Self {
            since,
            workflows: BTreeMap::new(),
            agents: BTreeMap::new(),
            untracked_runs: 0,
            untracked_calls: 0,
        }
    }

    /// Counts a run of `workflow_id` that ended `status` (a success when
    /// [`RunStatus::Completed`]), from `started_at` to `ended_at`.
    ///
    /// # Cost
    /// O(log w) for the w workflows kept; allocates only the first time a workflow is
    /// seen.
    pub fn record_run(
        &mut self,
        workflow_id: &str,
        status: RunStatus,
        started_at: DateTime<Utc>,
        ended_at: DateTime<Utc>,
    ) {
        let full = self.workflows.len() >= MAX_TRACKED_WORKFLOWS;
        let tally = match self.workflows.get_mut(workflow_id) {
            Some(tally) => tally,
            None if full => {
                self.untracked_runs = self.untracked_runs.saturating_add(1);
                return;
            }
            None => self.workflows.entry(workflow_id.to_owned()).or_default(),
        };
        tally.runs = tally.runs.saturating_add(1);
        if status == RunStatus::Completed {
            tally.succeeded = tally.succeeded.saturating_add(1);
        }
        tally.durations.record(micros(started_at, ended_at));
    }

    /// Counts a call to agent `agent` (which has `slots` slots; 0 when not known) from
    /// `started_at` to `ended_at`, failed or not.
    ///
    /// # Cost
    /// O(log a) for the a agents kept; allocates only the first time an agent is seen.
    pub fn record_call(
        &mut self,
        agent: &AgentId,
        slots: u32,
        started_at: DateTime<Utc>,
        ended_at: DateTime<Utc>,
        failed: bool,
    ) {
        let full = self.agents.len() >= MAX_TRACKED_AGENTS;
        let tally = match self.agents.get_mut(agent) {
            Some(tally) => tally,
            None if full => {
                self.untracked_calls = self.untracked_calls.saturating_add(1);
                return;
            }
            None => self.agents.entry(agent.clone()).or_default(),
        };
        tally.count(slots, micros(started_at, ended_at), failed);
    }

    /// Adds agent `agent`'s calls `tally`, counted elsewhere (by the engine, as its
    /// calls end), to these; beyond [`MAX_TRACKED_AGENTS`] they count as untracked.
    pub(crate) fn add_agent(&mut self, agent: &AgentId, tally: &AgentTally) {
        let full = self.agents.len() >= MAX_TRACKED_AGENTS;
        match self.agents.get_mut(agent) {
            Some(ours) => ours.absorb(tally),
            None if full => {
                self.untracked_calls = self.untracked_calls.saturating_add(tally.calls);
            }
            None => {
                self.agents.insert(agent.clone(), *tally);
            }
        }
    }

    /// Adds `calls` calls to agents beyond [`MAX_TRACKED_AGENTS`].
    pub(crate) fn add_untracked_calls(&mut self, calls: u64) {
        self.untracked_calls = self.untracked_calls.saturating_add(calls);
    }

    /// Folds one run's journal (as [`RunStore::load`](crate::store::RunStore::load)
    /// returns it): a run that ended counts as [`record_run`](Self::record_run) says;
    /// every `stepStarted` entry counts as a call of its agent, with no duration (a
    /// journal does not say when a call ended, nor how many slots its agent had).
    /// An unfinished run counts only its calls. Returns the run, if the journal starts
    /// one.
    pub fn record_journal(&mut self, entries: &[JournalEntry]) -> Option<RunId> {
        let Some(JournalEntry::RunStarted {
            run_id,
            workflow_id,
            at: started_at,
            ..
        }) = entries.first()
        else {
            return None;
        };
        for entry in entries {
            match entry {
                JournalEntry::StepStarted { agent_id, at, .. } => {
                    self.record_call(agent_id, 0, *at, *at, false);
                }
                JournalEntry::RunEnded { status, at, .. } => {
                    self.record_run(workflow_id, *status, *started_at, *at);
                }
                _ => {}
            }
        }
        Some(run_id.clone())
    }

    /// Adds `other`'s statistics to these (the earlier `since` is kept).
    pub fn merge(&mut self, other: &Self) {
        self.since = self.since.min(other.since);
        for (id, theirs) in &other.workflows {
            let full = self.workflows.len() >= MAX_TRACKED_WORKFLOWS;
            match self.workflows.entry(id.clone()) {
                Entry::Occupied(mut ours) => ours.get_mut().absorb(theirs),
                Entry::Vacant(_) if full => {
                    self.untracked_runs = self.untracked_runs.saturating_add(theirs.runs);
                }
                Entry::Vacant(vacant) => {
                    vacant.insert(theirs.clone());
                }
            }
        }
        for (id, theirs) in &other.agents {
            self.add_agent(id, theirs);
        }
        self.untracked_runs = self.untracked_runs.saturating_add(other.untracked_runs);
        self.untracked_calls = self.untracked_calls.saturating_add(other.untracked_calls);
    }

    /// The report, as of `now` (the end of the window utilization is measured over).
    pub fn report(&self, now: DateTime<Utc>) -> PerformanceReport {
        #[allow(clippy::cast_precision_loss)]
        let window = micros(self.since, now) as f64;
        let workflows = self
            .workflows
            .iter()
            .map(|(id, tally)| (id.clone(), tally.performance()))
            .collect();
        let agents = self
            .agents
            .iter()
            .map(|(id, tally)| {
                #[allow(clippy::cast_precision_loss)]
                let busy = tally.busy_micros as f64;
                let utilization = (tally.slots > 0 && window > 0.0)
                    .then(|| (busy / (f64::from(tally.slots) * window)).clamp(0.0, 1.0));
                let performance = AgentPerformance {
                    calls: tally.calls,
                    failed_calls: tally.failed,
                    busy_seconds: busy / 1e6,
                    utilization,
                };
                (id.clone(), performance)
            })
            .collect();
        PerformanceReport {
            since: self.since,
            generated_at: now,
            workflows,
            agents,
            untracked_runs: self.untracked_runs,
            untracked_calls: self.untracked_calls,
        }
    }
}

impl WorkflowTally {
    fn absorb(&mut self, other: &Self) {
        self.runs = self.runs.saturating_add(other.runs);
        self.succeeded = self.succeeded.saturating_add(other.succeeded);
        self.durations.absorb(&other.durations);
    }

    fn performance(&self) -> WorkflowPerformance {
        let seconds = |micros: f64| micros / 1e6;
        let durations = &self.durations;
        let duration = match (durations.mean(), durations.range()) {
            (Some(mean), Some((min, max))) => Some(DurationSummary {
                mean_seconds: seconds(mean),
                p50_seconds: durations.quantile(0.50).map_or(0.0, seconds),
                p95_seconds: durations.quantile(0.95).map_or(0.0, seconds),
                p99_seconds: durations.quantile(0.99).map_or(0.0, seconds),
                #[allow(clippy::cast_precision_loss)]
                min_seconds: seconds(min as f64),
                #[allow(clippy::cast_precision_loss)]
                max_seconds: seconds(max as f64),
            }),
            _ => None,
        };
        #[allow(clippy::cast_precision_loss)]
        let success_rate = match self.runs {
            0 => 0.0,
            runs => self.succeeded as f64 / runs as f64,
        };
        WorkflowPerformance {
            runs: self.runs,
            succeeded: self.succeeded,
            success_rate,
            duration,
        }
    }
}

/// How the engine's workflows and agents performed: from
/// [`Engine::generate_performance_report`](crate::engine::Engine::generate_performance_report),
/// or [`Performance::report`].
///
/// Serialized with camelCase fields:
/// `{"since": …, "generatedAt": …, "workflows": {"momentum": {"runs": 3, "succeeded": 2,
/// "successRate": 0.667, "duration": {"meanSeconds": …, "p50Seconds": …}}}, "agents":
/// {"exec-1": {"calls": 5, "failedCalls": 1, "busySeconds": 2.5, "utilization": 0.1}},
/// "untrackedRuns": 0, "untrackedCalls": 0}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PerformanceReport {
    /// The start of the window: when the engine was built (on its clock).
    pub since: DateTime<Utc>,
    /// When the report was made (on the engine's clock).
    pub generated_at: DateTime<Utc>,
    /// Each workflow that had a run end, by id.
    pub workflows: BTreeMap<String, WorkflowPerformance>,
    /// Each agent called, by id.
    pub agents: BTreeMap<AgentId, AgentPerformance>,
    /// Runs of workflows beyond the first [`MAX_TRACKED_WORKFLOWS`], not in `workflows`.
    pub untracked_runs: u64,
    /// Calls to agents beyond the first [`MAX_TRACKED_AGENTS`], not in `agents`.
    pub untracked_calls: u64,
}

/// One workflow's runs, in a [`PerformanceReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct WorkflowPerformance {
    /// Runs that ended.
    pub runs: u64,
    /// Of those, the runs that ended `COMPLETED`.
    pub succeeded: u64,
    /// `succeeded / runs`.
    pub success_rate: f64,
    /// How long the runs took, from start to end on the engine's clock (`None` with no
    /// run).
    pub duration: Option<DurationSummary>,
}

/// Durations in seconds: the mean, min and max exact, the quantiles by nearest rank to
/// within 1/32 (see [Precision](crate::metrics#precision)).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DurationSummary {
    /// The mean.
    pub mean_seconds: f64,
    /// The median.
    pub p50_seconds: f64,
    /// The 95th percentile.
    pub p95_seconds: f64,
    /// The 99th percentile.
    pub p99_seconds: f64,
    /// The shortest.
    pub min_seconds: f64,
    /// The longest.
    pub max_seconds: f64,
}

/// One agent's calls, in a [`PerformanceReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AgentPerformance {
    /// Calls made to it (attempts, retries included).
    pub calls: u64,
    /// Of those, the calls that failed (an error, a timeout, an invalid output).
    pub failed_calls: u64,
    /// The time its calls took, added up, on the engine's clock.
    pub busy_seconds: f64,
    /// `busy_seconds / (slots × window)`, in [0, 1]: the share of its slots' time spent
    /// in calls since the window began (`None` when its slots are not known, as in a
    /// report from a journal).
    pub utilization: Option<f64>,
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t(seconds: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap() + chrono::Duration::seconds(seconds)
    }

    #[test]
    fn a_workflow_reports_its_runs_success_rate_and_duration_percentiles() {
        let mut performance = Performance::new(t(0));
        // 20 runs of 1..=20 seconds; every fourth one fails.
        for seconds in 1..=20 {
            let status = match seconds % 4 {
                0 => RunStatus::Failed,
                _ => RunStatus::Completed,
            };
            performance.record_run("w", status, t(0), t(seconds));
        }
        let report = performance.report(t(100));
        let w = &report.workflows["w"];
        assert_eq!((w.runs, w.succeeded), (20, 15));
        assert_eq!(w.success_rate, 0.75);
        let duration = w.duration.unwrap();
        // The mean is exact: 210 / 20.
        assert_eq!(duration.mean_seconds, 10.5);
        assert_eq!((duration.min_seconds, duration.max_seconds), (1.0, 20.0));
        // Nearest rank: p50 the 10th (10 s), p95 the 19th (19 s), p99 the 20th (20 s).
        // 10 s = 10,000,000 µs in [2^23, 2^24): buckets of 2^19 = 524,288 µs;
        // 10,000,000 / 524,288 = 19.07 → [9,961,472, 10,485,760), midpoint 10,223,616.
        assert_eq!(duration.p50_seconds, 10.223616);
        // 19 s in [2^24, 2^25): buckets of 1,048,576 µs; 19,000,000 / 1,048,576 = 18.1 →
        // [18,874,368, 19,922,944), midpoint 19,398,656.
        assert_eq!(duration.p95_seconds, 19.398656);
        // 20 s: 20,000,000 / 1,048,576 = 19.07 → [19,922,944, 20,971,520), midpoint
        // 20,447,232 µs, above the longest run: clamped to 20 s.
        assert_eq!(duration.p99_seconds, 20.0);
    }

    #[test]
    fn agents_report_calls_and_the_share_of_their_slots_busy() {
        let mut performance = Performance::new(t(0));
        let agent = AgentId::from("a-1");
        // Two slots; three calls of 10, 20 and 10 seconds, one failed.
        performance.record_call(&agent, 2, t(0), t(10), false);
        performance.record_call(&agent, 2, t(5), t(25), true);
        performance.record_call(&agent, 2, t(30), t(40), false);
        let report = performance.report(t(100));
        let a = &report.agents[&agent];
        assert_eq!((a.calls, a.failed_calls), (3, 1));
        assert_eq!(a.busy_seconds, 40.0);
        // 40 busy seconds over 2 slots × 100 seconds.
        assert_eq!(a.utilization, Some(0.2));
    }

    #[test]
    fn a_journal_counts_its_run_and_its_agents_calls() {
        let run = RunId::from("r-1");
        let started = JournalEntry::RunStarted {
            run_id: run.clone(),
            workflow_id: "w".into(),
            version: "1".into(),
            input: serde_json::Value::Null,
            seed: 0,
            at: t(0),
        };
        let call = |attempt| JournalEntry::StepStarted {
            step_id: "s".into(),
            item: None,
            iteration: None,
            attempt,
            agent_id: "a-1".into(),
            idempotency_key: "r-1/s".into(),
            at: t(1),
        };
        let ended = JournalEntry::RunEnded {
            status: RunStatus::Completed,
            error: None,
            at: t(4),
        };
        let mut performance = Performance::new(t(0));
        let journal = [started, call(1), call(2), ended];
        assert_eq!(performance.record_journal(&journal), Some(run));
        // An unfinished run counts its calls only.
        assert!(performance.record_journal(&journal[..2]).is_some());
        assert_eq!(performance.record_journal(&journal[1..]), None);
        let report = performance.report(t(10));
        assert_eq!(report.workflows["w"].runs, 1);
        assert_eq!(report.workflows["w"].duration.unwrap().mean_seconds, 4.0);
        let a = &report.agents[&AgentId::from("a-1")];
        assert_eq!((a.calls, a.utilization), (3, None));
    }

    #[test]
    fn workflows_beyond_the_bound_are_counted_not_kept() {
        let mut performance = Performance::new(t(0));
        for n in 0..=MAX_TRACKED_WORKFLOWS {
            performance.record_run(&format!("w{n}"), RunStatus::Completed, t(0), t(1));
        }
        let report = performance.report(t(1));
        assert_eq!(report.workflows.len(), MAX_TRACKED_WORKFLOWS);
        assert_eq!(report.untracked_runs, 1);
    }
}
