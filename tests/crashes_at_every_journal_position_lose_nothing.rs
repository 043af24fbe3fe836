//! A crash at any point of a run's journal loses nothing: a deterministic simulation in
//! the spirit of FoundationDB's.
//!
//! # What is simulated
//! Each seed (a `u64`) generates a small workflow, 3 to 8 steps of every type (`task`,
//! `decision`, `parallel` over 1 to 4 items, `loop` until `done`, `condition` over a bound
//! output, `human_approval` answered by the test or left to its timeout), with bindings
//! between steps, gating conditions, ordering edges (or listed order), `SEQUENTIAL` or
//! `PARALLEL` with `STOP_ON_FAILURE` or `CONTINUE_ON_FAILURE`, optional steps, retry
//! policies and step timeouts, fallback steps and self-healing (`SKIP`, `SUBSTITUTE`,
//! `ALTERNATIVE_PATH`), and adaptations that always or never hold (journaled as each step
//! starts, re-applied from the journal after the restart). Agents are scripted: each answer is a function of the seed and the
//! request alone (its idempotency key and attempt, never the order of calls), so a call
//! made again behaves as it did: an output echoing its parameters, a `TEMPORARY` or a
//! `PERMANENT` failure, sometimes after a delay on the virtual clock (past the step's
//! timeout at times). Every seed's workflow is checked by `ExecutionPlan::from_json`.
//!
//! 1. **The golden run** runs the workflow to its end on a `MemoryStore`; its report is
//!    the reference, and the appends it made are the crash points.
//! 2. **A crash** at each point: the run is made again from scratch, on a store that keeps
//!    the appends up to that point and refuses every later one (`Fenced`, which the engine
//!    treats as final: nothing it decides after the crash reaches the disk). An append is
//!    all or nothing (the `RunStore` contract), so a crash between two entries of one
//!    append leaves the disk as a crash just before that append does: the append
//!    boundaries are all the distinct crash positions of the journal, and every one of
//!    them is simulated, the last one being "no crash".
//! 3. **The restart**: a new engine on the same disk (and virtual clock), with the same
//!    scripted agents and the same answers to approvals, `recover_all`s the run and
//!    drives it to its end.
//!
//! Every run is on the `VirtualClock`: no sleeps, the same result every time.
//!
//! # Invariants
//! - Every step of the workflow ends in exactly one final status, in the golden run and
//!   after the restart, and nothing panics.
//! - The recovered run ends as the golden run did: the run's status and, for every step,
//!   its status, output, kind of failure and approver. What may differ is listed at
//!   [`assert_same_outcome`], with the reason.
//! - No step that had ended on disk before the crash (completed, skipped or failed) is
//!   called after the restart, and it keeps its status and output.
//! - A call in flight on disk at the crash (a `stepStarted` with no end) is made again
//!   after the restart with the same idempotency key when its step completes by its own
//!   calls, and every key used after the restart is one the golden run used: none is new
//!   (unless timers decided where a failure stopped the run).
//! - The journal is append-only across the restart (what was on disk is a prefix of the
//!   final journal, with one `runStarted`), and its fold says what the final report says
//!   (statuses, outputs, errors, attempts, skip reasons: `assert_journal_matches`).
//! - Runs are deterministic: with no crash, the run's report is the golden one, and a
//!   crashed run makes the golden run's appends up to its crash.
//!
//! # Known bugs
//! Library bugs this simulation found are reproduced by ignored tests (run them with
//! `cargo test -- --ignored`). Until they are fixed, two checks here leave out exactly
//! what timers decide, and the generator keeps fallback steps narrower than the format
//! allows (see [`Generator::fallbacks`]).
//!
//! # Replay
//! A failure prints the seed, the crash position and the workflow's JSON.
//! `TRADEFLOW_SIM_SEED=<seed> cargo test --test crashes_at_every_journal_position_lose_nothing`
//! runs that seed alone. `cargo test` runs seeds 0 to 999 (about 6,000 crash positions,
//! 25 s in a debug build on two cores); `TRADEFLOW_SIM_SEEDS=<n>` runs seeds 0 to n − 1
//! (40,000 passed in 20 minutes).

mod support;

use std::collections::{BTreeSet, HashMap};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use serde_json::{Value, json};
use support::crash::CrashingStore;
use support::engine::{CallLog, Harness, Reply, run_answering, t0};
use support::journal::assert_journal_matches;
use tradeflow::agent::TaskRequest;
use tradeflow::clock::VirtualClock;
use tradeflow::definition::{RecoveryStrategy, StepId};
use tradeflow::engine::{Run, RunOptions, RunReport, RunStatus, StepStatus};
use tradeflow::plan::ExecutionPlan;
use tradeflow::store::{JournalEntry, MemoryStore, RunState, RunStore};

/// Seeds run by default.
const SEEDS: u64 = 1_000;

/// This test, as `cargo test --test` names it.
const TEST: &str = "crashes_at_every_journal_position_lose_nothing";

#[test]
fn crashes_at_every_journal_position_lose_nothing() {
    let seeds = match (
        env_number("TRADEFLOW_SIM_SEED"),
        env_number("TRADEFLOW_SIM_SEEDS"),
    ) {
        (Some(seed), _) => seed..seed + 1,
        (None, count) => 0..count.unwrap_or(SEEDS),
    };
    let count = seeds.end - seeds.start;
    let mut positions: u64 = 0;
    for seed in seeds {
        positions += check_seed(seed) as u64;
    }
    assert!(positions > count, "no crash was simulated");
    eprintln!("{count} seeds, {positions} crash positions (the end of each journal among them)");
}

/// The number in environment variable `name`, if it is set.
fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not `{text}`")),
    )
}

/// Runs seed `seed`'s workflow to its end, then crashes it at every append boundary of
/// its journal and recovers it; returns the number of boundaries (the journal's end, where
/// nothing is lost, among them).
fn check_seed(seed: u64) -> usize {
    let simulation = Arc::new(Simulation::generate(seed));
    let golden = replayable(&simulation, "the golden run", || golden_run(&simulation));
    let mut crash_at = 0;
    for size in &golden.appends {
        crash_at += size;
        let at = format!("a crash after entry {crash_at} of {}", golden.entries);
        replayable(&simulation, &at, || {
            crash_and_recover(&simulation, &golden, crash_at)
        });
    }
    golden.appends.len()
}

/// Runs `check`; when it panics, prints what replays it, then panics on.
fn replayable<T>(simulation: &Simulation, what: &str, check: impl FnOnce() -> T) -> T {
    panic::catch_unwind(AssertUnwindSafe(check)).unwrap_or_else(|panic| {
        eprintln!(
            "\nseed {seed}, {what}: failed\nworkflow: {workflow:#}\n\
             replay: TRADEFLOW_SIM_SEED={seed} cargo test --test {TEST}\n",
            seed = simulation.seed,
            workflow = simulation.definition,
        );
        panic::resume_unwind(panic)
    })
}

/// What the run without a crash did.
struct Golden {
    report: RunReport,
    /// The size of each append it made, in order.
    appends: Vec<usize>,
    /// Its journal's length.
    entries: usize,
    /// The idempotency keys of its calls.
    keys: BTreeSet<String>,
    /// Whether a failure stopped the steps running beside it (`PARALLEL` and
    /// `STOP_ON_FAILURE`): what ran before the stop depends on timers, which a restart
    /// starts again, so a recovered run may stop elsewhere.
    stopped: bool,
}

fn golden_run(simulation: &Arc<Simulation>) -> Golden {
    let disk = Arc::new(MemoryStore::new());
    let store = Arc::new(CrashingStore::never(Arc::clone(&disk)));
    let clock = VirtualClock::starting_at(t0());
    let calls = CallLog::default();
    let report = simulation.run(
        &Harness::on_clock(clock, |b| b.store(Arc::clone(&store))),
        &calls,
    );
    assert_every_step_ended_once(simulation, &report);
    assert_journal_matches_the_report(&*disk, &report);
    let appends = store.appends();
    let entries = disk.load(&report.run_id).expect("the journal loads").len();
    assert_eq!(appends.iter().sum::<usize>(), entries);
    Golden {
        stopped: simulation.stops_what_runs() && report.status == RunStatus::Failed,
        report,
        appends,
        entries,
        keys: keys(&calls),
    }
}

/// Runs the workflow again, crashing after entry `crash_at` of the golden journal, then
/// recovers the run on a new engine and checks every invariant.
fn crash_and_recover(simulation: &Arc<Simulation>, golden: &Golden, crash_at: usize) {
    let disk = Arc::new(MemoryStore::new());
    let store = Arc::new(CrashingStore::after(Arc::clone(&disk), crash_at));
    let clock = VirtualClock::starting_at(t0());
    let first = Harness::on_clock(clock.clone(), |b| b.store(Arc::clone(&store)));
    let before = CallLog::default();
    let first_report = simulation.run(&first, &before);
    drop(first);
    assert_eq!(
        store.appends(),
        golden.appends[..store.appends().len()],
        "until it crashes, the run makes the golden run's appends"
    );
    assert_eq!(
        store.kept(),
        crash_at,
        "the crash comes after the same entry"
    );
    let run = &first_report.run_id;
    let on_disk = disk.load(run).expect("the journal loads");
    let at_crash = RunState::fold(&on_disk).expect("the journal on disk folds");
    if at_crash.is_finished() {
        // No crash: the run's end is on disk.
        assert!(!store.crashed());
        assert_eq!(
            first_report, golden.report,
            "the same seed gives the same report"
        );
        assert_journal_matches_the_report(&*disk, &first_report);
        return;
    }
    let second = Harness::on_clock(clock.clone(), |b| b.store(Arc::clone(&disk)));
    let after = CallLog::default();
    let report = simulation.recover(&second, &after);

    assert_every_step_ended_once(simulation, &report);
    // A step with a `timeout` that was running at the crash starts its timer again after
    // the restart (a documented limit), so it may end otherwise than in the golden run,
    // and so may what follows it; the other invariants still hold.
    let retimed = !simulation.timed_steps_running(&at_crash).is_empty();
    if !retimed {
        assert_same_outcome(&report, golden, &simulation.parallel_steps());
    }
    assert_ended_steps_keep_their_end(&at_crash, &report, &after);
    assert_calls_in_flight_are_made_again(&at_crash, &report, &after, golden, retimed);
    let journal = disk.load(run).expect("the journal loads");
    assert_eq!(
        journal[..on_disk.len()],
        on_disk[..],
        "the journal on disk is kept as it was"
    );
    let starts = journal
        .iter()
        .filter(|entry| matches!(entry, JournalEntry::RunStarted { .. }))
        .count();
    assert_eq!(starts, 1, "recovery does not start the run again");
    assert_journal_matches_the_report(&*disk, &report);
}

/// The journal in `store` folds to what `report` says (`assert_journal_matches`).
///
/// The journal in `store` folds to what `report` says (`assert_journal_matches`): a step
/// the run started in the very turn a failure stopped it, before its future journaled
/// anything, is reported skipped ("not started"), as the journal says.
#[track_caller]
fn assert_journal_matches_the_report(store: &dyn RunStore, report: &RunReport) {
    assert_journal_matches(store, report);
}

/// Every step of the workflow is in `report` once, in the definition's order, with a
/// final status; and so is the run.
#[track_caller]
fn assert_every_step_ended_once(simulation: &Simulation, report: &RunReport) {
    let shown = report.to_json_pretty();
    assert!(report.status.is_final(), "{shown}");
    let ids: Vec<&str> = report.steps.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, simulation.step_ids(), "{shown}");
    for (id, step) in &report.steps {
        assert!(step.status.is_final(), "step `{id}` in {shown}");
    }
}

/// The recovered run ends as the golden one: the run's status and error, and each step's
/// status, output, kind of failure and approver. Allowed to differ, because the journal
/// and the docs say so:
/// - `attempts`: calls cut off by the crash count ("a cut-off call was made"), and a
///   logical call made again goes on from the attempt it was at (its key tells the agent
///   it is the same call);
/// - agents, error messages (which name the agent) and recoveries: the new engine's
///   registry has no history of the agents, so it may choose another one first; and
///   self-healing's bookkeeping of a step is not journaled, only its decisions, so a
///   `SUBSTITUTE` or `ALTERNATIVE_PATH` may be decided again after a restart;
/// - times: the recovered run goes on from the restart, and its timers start again;
/// - under `PARALLEL` and `STOP_ON_FAILURE`, when the run fails: which steps completed,
///   were cancelled or never started before the first failure stopped the run, and so
///   which failure stopped it. That depends on timers, and the timers of running steps
///   start again from the recovery (a known limit, in the engine's docs). The run still
///   fails, and a step that completed in both runs has the same output.
/// - a `parallel` step that fails: which of its items fails first, and so the kind of the
///   failure, depends on timers too (its items run again from the first after a restart).
#[track_caller]
fn assert_same_outcome(report: &RunReport, golden: &Golden, parallel: &[&str]) {
    let stopped = golden.stopped;
    let golden = &golden.report;
    let shown = || {
        format!(
            "recovered:\n{}\ngolden:\n{}",
            report.to_json_pretty(),
            golden.to_json_pretty()
        )
    };
    assert_eq!(report.status, golden.status, "{}", shown());
    // The run's error is its first failure, after a restart too. Which of several steps
    // failing at about the same time fails first depends on timers when the restart cut
    // their calls off (their timers start again): then the error is the failure of
    // another step that failed in the golden run too, with its kind (any kind, for a
    // `parallel` step: which of its items fails first depends on timers too).
    match (&report.error, &golden.error) {
        (Some(_), Some(_)) if stopped => {}
        (Some(error), Some(reference)) if error.step_id == reference.step_id => {
            let in_parallel = error
                .step_id
                .as_ref()
                .is_some_and(|id| parallel.contains(&id.as_str()));
            if !in_parallel {
                assert_eq!(error.kind, reference.kind, "{}", shown());
            }
        }
        (Some(error), Some(_)) => {
            let id = error.step_id.as_ref().map(|id| id.as_str());
            let in_parallel = id.is_some_and(|id| parallel.contains(&id));
            let failed_so = id.and_then(|id| golden.step(id)).is_some_and(|step| {
                step.status == StepStatus::Failed
                    && (in_parallel
                        || step.error.as_ref().map(|failure| failure.kind) == Some(error.kind))
            });
            assert!(failed_so, "the run's error {error:?}: {}", shown());
        }
        (error, reference) => assert_eq!(error, reference, "{}", shown()),
    }
    for ((id, step), (_, reference)) in report.steps.iter().zip(&golden.steps) {
        let both_completed = [step, reference]
            .iter()
            .all(|step| step.status == StepStatus::Completed);
        if stopped && !both_completed {
            continue;
        }
        let kind_counts = !parallel.contains(&id.as_str());
        let outcome = |step: &tradeflow::engine::StepReport| {
            (
                step.status,
                step.output.clone(),
                step.error
                    .as_ref()
                    .filter(|_| kind_counts)
                    .map(|error| error.kind),
                step.approved_by.clone(),
            )
        };
        assert_eq!(
            outcome(step),
            outcome(reference),
            "step `{id}`: {}",
            shown()
        );
    }
}

/// Steps that had ended on disk before the crash keep their end and are never called
/// again: no call after the restart carries the key of one of their calls.
#[track_caller]
fn assert_ended_steps_keep_their_end(at_crash: &RunState, report: &RunReport, after: &CallLog) {
    for (id, ended) in at_crash.steps.iter().filter(|(_, s)| s.status.is_final()) {
        let step = report.step(id.as_str()).expect("the step is reported");
        assert_eq!(
            (step.status, &step.output),
            (ended.status, &ended.output),
            "step `{id}` ended before the crash"
        );
        let again: Vec<String> = calls_in(after)
            .into_iter()
            .filter(|(step, _)| step == id)
            .map(|(_, key)| key)
            .collect();
        assert!(
            again.is_empty(),
            "step `{id}` ended ({}) before the crash, yet was called again with {again:?}",
            ended.status
        );
    }
}

/// Calls in flight at the crash are made again with the keys they had: a call in flight
/// of a step that then completes by its own calls is made again with its key, and no call
/// after the restart carries a key the golden run did not use (unless timers decided
/// where the run stopped: see [`Golden::stopped`]). A call in flight need not be made
/// again when its step fails first: a `parallel` step stops at its first item that fails,
/// and a step may complete through its fallback.
#[track_caller]
fn assert_calls_in_flight_are_made_again(
    at_crash: &RunState,
    report: &RunReport,
    after: &CallLog,
    golden: &Golden,
    retimed: bool,
) {
    let keys = keys(after);
    for (id, call) in at_crash.in_flight() {
        let step = report.step(id.as_str()).expect("the step is reported");
        let by_itself = step.status == StepStatus::Completed
            && !step
                .recoveries
                .iter()
                .any(|recovery| recovery.strategy == RecoveryStrategy::AlternativePath);
        assert!(
            !by_itself || keys.contains(&call.idempotency_key),
            "step `{id}`'s call `{}` (attempt {}) was in flight at the crash and was not made \
             again with its key; calls after the restart: {keys:?}",
            call.idempotency_key,
            call.attempt
        );
    }
    if golden.stopped || retimed {
        // Which calls are made before the run stops, or after a step whose timer started
        // again, depends on timers (see `assert_same_outcome`): the recovered run may reach
        // steps the golden one did not.
        return;
    }
    // A `parallel` step that failed: which of its items were called before the first
    // failure depends on timers (its items run again from the first after a restart).
    let failed_fan_out = |key: &str| {
        golden.report.steps.iter().any(|(id, step)| {
            step.status == StepStatus::Failed
                && step.agent_ids.is_some()
                && key.starts_with(&format!("{}/{id}/", golden.report.run_id))
        }) || golden.report.steps.iter().any(|(id, step)| {
            step.status == StepStatus::Failed
                && key.starts_with(&format!("{}/{id}/", golden.report.run_id))
                && key.split('/').nth(2).is_some_and(|item| item != "0")
        })
    };
    let new: Vec<&String> = keys
        .difference(&golden.keys)
        .filter(|key| !failed_fan_out(key))
        .collect();
    assert!(
        new.is_empty(),
        "calls after the restart with keys the golden run never used: {new:?}"
    );
}

/// (step, idempotency key) of every call in `log`, in arrival order.
fn calls_in(log: &CallLog) -> Vec<(StepId, String)> {
    let calls = log
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    calls
        .iter()
        .map(|call| (call.request.step_id.clone(), call.key().to_owned()))
        .collect()
}

/// The idempotency keys of the calls in `log`.
fn keys(log: &CallLog) -> BTreeSet<String> {
    calls_in(log).into_iter().map(|(_, key)| key).collect()
}

// ---------------------------------------------------------------------------------------
// The simulation: a workflow, its agents' scripts and the answers to its approvals.

/// A seed's workflow, how its agents answer and how its approvals are answered.
struct Simulation {
    seed: u64,
    definition: Value,
    /// How the calls of each step that calls agents go, by step id.
    behaviours: HashMap<String, Behaviour>,
    /// The approval steps the test answers (the others time out): approve or reject.
    answers: HashMap<String, bool>,
}

/// How one step's calls go, in chances per thousand calls.
#[derive(Debug, Clone, Copy, Default)]
struct Behaviour {
    temporary: u64,
    permanent: u64,
    /// A delay of 1 to 60 ms on the virtual clock (the answer comes after it).
    slow: u64,
}

/// The agents: type `A` has one, type `B` two (so `SUBSTITUTE` has another to try).
const AGENTS: [(&str, &str); 3] = [("a-1", "A"), ("b-1", "B"), ("b-2", "B")];

impl Simulation {
    fn generate(seed: u64) -> Self {
        let mut generator = Generator {
            dice: Dice(seed),
            kinds: Vec::new(),
            behaviours: HashMap::new(),
            answers: HashMap::new(),
        };
        let definition = generator.workflow();
        if let Err(errors) = ExecutionPlan::from_json(&definition.to_string()) {
            panic!("seed {seed} generated an invalid workflow:\n{errors}\n{definition:#}");
        }
        Self {
            seed,
            definition,
            behaviours: generator.behaviours,
            answers: generator.answers,
        }
    }

    /// Whether a failure stops the steps running beside it (`PARALLEL` and
    /// `STOP_ON_FAILURE`): which steps those are depends on timers.
    fn stops_what_runs(&self) -> bool {
        let policy = &self.definition["executionPolicy"];
        policy["concurrency"] == "PARALLEL" && policy["failureHandling"] == "STOP_ON_FAILURE"
    }

    /// The `parallel` steps.
    fn parallel_steps(&self) -> Vec<&str> {
        self.definition["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|step| step["type"] == "parallel")
            .filter_map(|step| step["id"].as_str())
            .collect()
    }

    /// The steps with a `timeout` that were running (or waiting) at the crash.
    fn timed_steps_running(&self, at_crash: &RunState) -> Vec<&str> {
        self.definition["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|step| step.get("timeout").is_some())
            .filter_map(|step| step["id"].as_str())
            .filter(|id| {
                at_crash.steps.get(*id).is_some_and(|state| {
                    matches!(state.status, StepStatus::Running | StepStatus::Waiting)
                })
            })
            .collect()
    }

    fn step_ids(&self) -> Vec<&str> {
        self.definition["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|step| step["id"].as_str())
            .collect()
    }

    /// The scripted answer to `request`: a function of the seed and the request alone.
    fn reply(&self, request: &TaskRequest) -> Reply {
        let behaviour = self
            .behaviours
            .get(request.step_id.as_str())
            .copied()
            .unwrap_or_default();
        let call = hash(self.seed, &request.idempotency_key);
        // How slow the agent is on this logical call, whatever the attempt: a call made
        // again after a crash takes as long as the one cut off would have.
        let roll = spread(call);
        let delay = if roll % 1000 < behaviour.slow {
            1 + (roll >> 10) % 60
        } else {
            0
        };
        // The first `busy` attempts of a logical call fail for a while; every later attempt
        // gets the call's one final answer. Monotone in the attempt, so a call cut off by
        // a crash and made again from the next attempt ends as it would have.
        let mut busy = 0;
        let mut draw = spread(call ^ 0x5eed);
        while busy < 3 && draw % 1000 < behaviour.temporary {
            busy += 1;
            draw = spread(draw);
        }
        let fate = (spread(call ^ 0xfa7e) >> 20) % 1000;
        let reply = if request.attempt <= busy {
            Reply::temporary("busy, try again")
        } else if fate < behaviour.permanent {
            Reply::permanent("refused")
        } else {
            Reply::ok(json!({
                "x": call % 100,
                "done": (call >> 8) % 3 == 0,
                "got": request.parameters,
            }))
        };
        reply.after_ms(delay)
    }

    /// Registers this simulation's agents on `harness`, logging their calls to `log`.
    fn register_agents(self: &Arc<Self>, harness: &Harness, log: &CallLog) {
        for (id, agent_type) in AGENTS {
            let simulation = Arc::clone(self);
            harness.register(
                harness
                    .agent(id)
                    .of_type(agent_type)
                    .capacity(8)
                    .logging_to(log)
                    .replies(move |request, _| simulation.reply(request)),
            );
        }
    }

    /// Starts the workflow on `harness` with this simulation's agents (calls to `log`)
    /// and drives it to its end.
    fn run(self: &Arc<Self>, harness: &Harness, log: &CallLog) -> RunReport {
        self.register_agents(harness, log);
        let mut events = harness.engine.subscribe();
        let options = RunOptions::new(json!({"base": 42})).seed(self.seed);
        let run = harness.start(&self.definition, options);
        self.drive(harness, &mut events, run)
    }

    /// Recovers the one unfinished run of `harness`'s store with this simulation's
    /// agents (calls to `log`) and drives it to its end.
    fn recover(self: &Arc<Self>, harness: &Harness, log: &CallLog) -> RunReport {
        self.register_agents(harness, log);
        let mut events = harness.engine.subscribe();
        let recovery = harness
            .engine
            .recover_all()
            .expect("the store lists its runs");
        assert!(recovery.failed.is_empty(), "{:?}", recovery.failed);
        assert!(recovery.held.is_empty(), "{:?}", recovery.held);
        let mut runs = recovery.runs;
        assert_eq!(runs.len(), 1, "the unfinished run is recovered");
        self.drive(harness, &mut events, runs.remove(0))
    }

    fn drive(
        &self,
        harness: &Harness,
        events: &mut tradeflow::engine::EventStream,
        run: Run,
    ) -> RunReport {
        run_answering(
            &harness.clock,
            &harness.engine,
            events,
            run,
            "desk",
            |step| self.answers.get(step.as_str()).copied().unwrap_or(true),
        )
    }
}

/// The kinds of step, as the generator thinks of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Task,
    Decision,
    Parallel,
    Loop,
    Condition,
    Approval,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::Task,
        Kind::Decision,
        Kind::Parallel,
        Kind::Loop,
        Kind::Condition,
        Kind::Approval,
    ];

    /// Whether the step's output has a number `x` that later steps can bind to.
    fn gives_number(self) -> bool {
        matches!(self, Kind::Task | Kind::Decision | Kind::Loop)
    }

    fn calls_agents(self) -> bool {
        matches!(
            self,
            Kind::Task | Kind::Decision | Kind::Parallel | Kind::Loop
        )
    }
}

/// Builds one seed's workflow, step by step.
struct Generator {
    dice: Dice,
    /// The kinds of the steps made so far.
    kinds: Vec<Kind>,
    behaviours: HashMap<String, Behaviour>,
    answers: HashMap<String, bool>,
}

impl Generator {
    fn workflow(&mut self) -> Value {
        let count = 3 + self.dice.below(6) as usize;
        let (concurrency, failure_handling) = self.dice.pick(&[
            ("SEQUENTIAL", "STOP_ON_FAILURE"),
            ("SEQUENTIAL", "CONTINUE_ON_FAILURE"),
            ("PARALLEL", "CONTINUE_ON_FAILURE"),
            ("PARALLEL", "STOP_ON_FAILURE"),
        ]);
        let mut steps = Vec::new();
        let mut dependencies = Vec::new();
        for index in 0..count {
            for earlier in 0..index {
                if self.dice.chance(300) {
                    dependencies.push(json!({"from": id(earlier), "to": id(index)}));
                }
            }
            steps.push(self.step(index));
        }
        // Without `dependencies`, steps run in listed order.
        let listed_order = self.dice.chance(200);
        self.fallbacks(&mut steps, &mut dependencies, listed_order);
        let mut workflow = json!({
            "id": "simulated",
            "version": "1",
            "executionPolicy": {"concurrency": concurrency, "failureHandling": failure_handling},
            "errorHandling": {"retryPolicy": {"maxAttempts": 2, "initialDelayMs": 10}},
            "steps": steps,
        });
        if !listed_order {
            workflow["dependencies"] = json!(dependencies);
        }
        if self.dice.chance(500) {
            workflow["adaptations"] = self.adaptations();
        }
        workflow
    }

    /// Adaptations of the steps that call agents: one that always holds (parameters
    /// merged, a timeout stretched), one that never does. They hold alike before and
    /// after a restart, so the recovered run must apply exactly what the golden one did.
    fn adaptations(&mut self) -> Value {
        let adaptable = self.indices(Kind::calls_agents);
        let mut holds = Vec::new();
        let mut never = Vec::new();
        for index in adaptable {
            if self.dice.chance(500) {
                let mut change = json!({"stepId": id(index), "parameters": {"adapted": index}});
                if self.dice.chance(300) {
                    change["timeoutFactor"] = json!(2);
                }
                holds.push(change);
            } else if self.dice.chance(300) {
                never.push(json!({"stepId": id(index), "skip": true}));
            }
        }
        // A rule changes at least one step.
        let rules = [("always", "true", holds), ("never", "false", never)];
        let rules: Vec<Value> = rules
            .into_iter()
            .filter(|(_, _, changes)| !changes.is_empty())
            .map(|(id, when, changes)| json!({"id": id, "when": when, "changes": changes}))
            .collect();
        json!(rules)
    }

    /// Step `index`, of a kind that fits the steps before it.
    fn step(&mut self, index: usize) -> Value {
        let mut kind = self.dice.pick(&Kind::ALL);
        if kind == Kind::Condition && self.sources().is_empty() {
            kind = Kind::Task;
        }
        let name = id(index);
        let mut step = match kind {
            Kind::Condition => {
                let source = self.dice.pick(&self.sources());
                let x = format!("${{{}.output.x}}", id(source));
                json!({"id": name, "type": "condition", "branches": [
                    {"name": "high", "when": format!("{x} >= 50")},
                    {"name": "low", "when": format!("{x} < 20")},
                ], "default": "mid"})
            }
            Kind::Approval => self.approval(&name),
            _ => self.agent_step(&name, kind),
        };
        let gates: Vec<usize> = self.indices(|kind| kind == Kind::Condition);
        if !gates.is_empty() && self.dice.chance(400) {
            let branch = self.dice.pick(&["high", "low", "mid"]);
            let gate = id(self.dice.pick(&gates));
            step["condition"] =
                json!({"expression": format!("${{{gate}.output.branch}} == \"{branch}\"")});
        }
        if self.dice.chance(200) {
            step["optional"] = json!(true);
        }
        self.kinds.push(kind);
        step
    }

    /// A step that calls agents (`task`, `decision`, `parallel`, `loop`), and how its
    /// calls go.
    fn agent_step(&mut self, id: &str, kind: Kind) -> Value {
        let agent_type = self.dice.pick(&["A", "B"]);
        let mut parameters = json!({"step": id, "a": self.number()});
        if self.dice.chance(400) {
            parameters["b"] = self.number();
        }
        let mut step = json!({"id": id, "agentCriteria": {"type": agent_type}});
        match kind {
            Kind::Parallel => {
                let items: Vec<Value> = (0..1 + self.dice.below(4))
                    .map(|item| {
                        if self.dice.chance(400) {
                            self.number()
                        } else {
                            json!(item * 10)
                        }
                    })
                    .collect();
                parameters["items"] = json!(items);
                step["type"] = json!("parallel");
                step["parallel"] = json!({"forEach": "items"});
                if self.dice.chance(400) {
                    step["parallel"]["maxConcurrency"] = json!(1 + self.dice.below(2));
                }
            }
            Kind::Loop => {
                step["type"] = json!("loop");
                step["loop"] = json!({"maxIterations": 1 + self.dice.below(4)});
                if self.dice.chance(300) {
                    step["loop"]["intervalMs"] = json!(5);
                }
            }
            Kind::Decision => step["type"] = json!("decision"),
            _ => step["type"] = json!("task"),
        }
        step["task"] = json!({"type": "WORK", "parameters": parameters});
        if self.dice.chance(500) {
            step["retryPolicy"] = json!({
                "maxAttempts": 1 + self.dice.below(3),
                "initialDelayMs": self.dice.pick(&[0, 5, 20]),
            });
        }
        if self.dice.chance(200) {
            step["timeout"] = json!(30);
        }
        if self.dice.chance(150) {
            // No self-healing: a failure stands.
            step["errorHandling"] = json!({"strategies": ["RETRY"]});
        }
        let behaviour = Behaviour {
            temporary: self.dice.pick(&[0, 150, 350]),
            permanent: self.dice.pick(&[0, 0, 50, 150]),
            slow: self.dice.pick(&[0, 0, 200, 500]),
        };
        self.behaviours.insert(id.to_owned(), behaviour);
        step
    }

    /// A `human_approval` step: answered by the test (approved or rejected), or left to
    /// its timeout.
    fn approval(&mut self, id: &str) -> Value {
        let mut step = json!({"id": id, "type": "human_approval",
            "task": {"type": "APPROVAL", "parameters": {"step": id, "amount": self.number()}}});
        if self.dice.chance(400) {
            step["timeout"] = json!(100 + self.dice.below(300));
            step["approval"] = json!({"onTimeout": self.dice.pick(&["APPROVE", "REJECT"])});
        } else {
            self.answers.insert(id.to_owned(), !self.dice.chance(250));
        }
        step
    }

    /// Gives some steps that call agents a later `task` or `decision` step as their
    /// `fallbackStep` (each step the fallback of one step at most, and a fallback has
    /// none of its own). A fallback keeps its condition and may be optional (so it may be
    /// skipped), but reads only the run's input and waits for no other step: one that
    /// waited for a successor of the step it stands in for could never run, which
    /// validation refuses. Under listed order that means the step right after.
    fn fallbacks(&mut self, steps: &mut [Value], dependencies: &mut Vec<Value>, listed: bool) {
        let mut taken = BTreeSet::new();
        for index in 0..steps.len() {
            if !self.kinds[index].calls_agents() || taken.contains(&index) {
                continue;
            }
            let last = if listed { index + 2 } else { steps.len() };
            let candidates: Vec<usize> = (index + 1..last.min(steps.len()))
                .filter(|&later| {
                    matches!(self.kinds[later], Kind::Task | Kind::Decision)
                        && !taken.contains(&later)
                })
                .collect();
            if candidates.is_empty() || !self.dice.chance(250) {
                continue;
            }
            let fallback = self.dice.pick(&candidates);
            taken.insert(fallback);
            let name = id(fallback);
            let handling = &mut steps[index]["errorHandling"];
            if handling.is_null() {
                *handling = json!({});
            }
            handling["fallbackStep"] = json!(name);
            let stand_in = &mut steps[fallback];
            stand_in["task"]["parameters"] = json!({"step": name, "a": "${input.base}"});
            if stand_in.get("condition").is_some() {
                // On the input alone (the input's `base` is 42): it may be skipped.
                let at = 30 + self.dice.below(30);
                stand_in["condition"] = json!({"expression": format!("${{input.base}} > {at}")});
            }
            dependencies.retain(|dependency| dependency["to"] != json!(name));
        }
    }

    /// A number for a parameter: an earlier step's `x` (a binding, and so an edge), or the
    /// run's input.
    fn number(&mut self) -> Value {
        let sources = self.sources();
        if sources.is_empty() || self.dice.chance(250) {
            json!("${input.base}")
        } else {
            json!(format!("${{{}.output.x}}", id(self.dice.pick(&sources))))
        }
    }

    /// The steps so far whose output has a number `x`.
    fn sources(&self) -> Vec<usize> {
        self.indices(Kind::gives_number)
    }

    fn indices(&self, wanted: impl Fn(Kind) -> bool) -> Vec<usize> {
        (0..self.kinds.len())
            .filter(|&index| wanted(self.kinds[index]))
            .collect()
    }
}

/// The id of step `index`.
fn id(index: usize) -> String {
    format!("s{index}")
}

/// SplitMix64: a small seeded generator, independent of `rand`'s API and releases.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        spread(self.0)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// `true` `per_mille` times in a thousand.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[self.below(choices.len() as u64) as usize]
    }
}

/// SplitMix64's finaliser: spreads the bits of `x`.
fn spread(x: u64) -> u64 {
    let x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A number for `text` under `seed` (FNV-1a, spread).
fn hash(seed: u64, text: &str) -> u64 {
    spread(
        text.bytes()
            .fold(seed ^ 0xcbf2_9ce4_8422_2325, |hash, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
            }),
    )
}
