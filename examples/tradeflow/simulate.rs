//! `simulate`: the dry run, against scripted agents on a virtual clock; one run, or many
//! runs of one engine (a backtest).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

use chrono::{DateTime, TimeZone, Utc};
use futures::future::{Either, select, try_join_all};
use serde::Serialize;
use serde_json::Value;
use tradeflow::agent::RunId;
use tradeflow::clock::{Clock, VirtualClock};
use tradeflow::definition::AgentType;
use tradeflow::engine::{Engine, EngineError, RunIds, RunOptions, RunReport};
use tradeflow::expr::Context;
use tradeflow::scale::{AgentPool, AutoScaler, HostMetrics, ScalingEvent};
use tradeflow::sim::{AgentsFile, ScriptedApprover, pool_policies};

use crate::progress::Progress;
use crate::{Problems, agents, cli, decisions, exit_code, files, reported, secure, with_answers};

/// The line of `simulate` in the usage.
pub(crate) const USAGE: &str = "tradeflow simulate WORKFLOW.json --agents AGENTS.json \
                                [--input INPUT.json] [--inputs FILE.jsonl] \
                                [--context CONTEXT.json] [--seed N] [--start RFC3339] \
                                [--runs N] [--concurrency C] [--metrics FILE] \
                                [--user NAME] [--policy POLICY.json]";

/// The arguments of `simulate` as clap reads them (its help is in [`crate::cli::Verb`]).
#[derive(Debug, clap::Args)]
#[command(override_usage = USAGE)]
pub(crate) struct Args {
    #[command(flatten)]
    files: cli::RunFiles,
    /// One input object a line: run i takes line i mod lines (blank lines skipped;
    /// without lines, --input).
    #[arg(long, value_name = "FILE.jsonl", allow_hyphen_values = true)]
    inputs: Option<String>,
    /// The host context of conditions, a JSON object by name, as a timeline's context
    /// (default: empty).
    #[arg(long, value_name = "CONTEXT.json", allow_hyphen_values = true)]
    context: Option<String>,
    /// The seed of the run's random choices (default: 0); run i of --runs takes N + i − 1.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    seed: Option<String>,
    /// When the virtual clock starts (default: 2026-01-05T09:00:00Z).
    #[arg(long, value_name = "RFC3339", allow_hyphen_values = true)]
    start: Option<String>,
    /// How many runs of the workflow, on one engine and one virtual clock (default: 1).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    runs: Option<String>,
    /// How many runs at once: run i starts when run i − C ends (default: 1).
    #[arg(long, value_name = "C", allow_hyphen_values = true)]
    concurrency: Option<String>,
    /// Writes the runs' metrics to FILE after them, in the Prometheus text format.
    #[arg(long, value_name = "FILE", allow_hyphen_values = true)]
    metrics: Option<String>,
}

/// The arguments of `simulate`, checked.
#[derive(Debug)]
struct Simulate {
    files: cli::RunPaths,
    inputs: Option<String>,
    context: Option<String>,
    seed: u64,
    start: DateTime<Utc>,
    runs: u32,
    concurrency: u32,
    metrics: Option<String>,
}

impl Args {
    fn check(self) -> Result<Simulate, Problems> {
        let files = self.files.check("simulate")?;
        let seed = cli::seed(self.seed.as_deref())?;
        let start = match &self.start {
            None => default_start(),
            Some(start) => cli::time("--start", start)?,
        };
        Ok(Simulate {
            files,
            inputs: self.inputs,
            context: self.context,
            seed,
            start,
            runs: count("--runs", self.runs.as_deref())?,
            concurrency: count("--concurrency", self.concurrency.as_deref())?,
            metrics: self.metrics,
        })
    }
}

/// The value of `--runs` or `--concurrency`: a whole number from 1, 1 without one.
fn count(option: &str, value: Option<&str>) -> Result<u32, Problems> {
    let Some(text) = value else { return Ok(1) };
    text.parse()
        .ok()
        .filter(|count| *count >= 1)
        .ok_or_else(|| {
            cli::usage(&format!(
                "{option} `{text}`: expected a whole number from 1 to {}",
                u32::MAX
            ))
        })
}

/// What loaded, its problems added to `problems` otherwise.
fn kept<T>(loaded: Result<T, Problems>, problems: &mut Problems) -> Option<T> {
    loaded.map_err(|lines| problems.extend(lines)).ok()
}

/// The default start of the virtual clock: a Monday, 09:00 UTC.
fn default_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0)
        .single()
        .unwrap_or(DateTime::UNIX_EPOCH)
}

/// What the runs start with: the input of each, and the host context.
#[derive(Debug)]
struct Starts {
    /// The lines of `--inputs`, in order (empty without it).
    lines: Vec<Value>,
    /// `--input`, or `{}`.
    input: Value,
    context: Context,
}

impl Starts {
    /// The input of run `index` (from 0): line `index` mod lines, else `--input`.
    fn input(&self, index: usize) -> Value {
        let line = index.checked_rem(self.lines.len());
        line.and_then(|line| self.lines.get(line))
            .unwrap_or(&self.input)
            .clone()
    }

    /// The options of run `index` (from 0) under `--seed seed`.
    fn options(&self, index: usize, seed: u64) -> RunOptions {
        RunOptions::new(self.input(index))
            .seed(seed.wrapping_add(index as u64))
            .context(self.context.clone())
    }
}

/// `simulate`: loads and checks every file (all problems at once), runs the workflow on
/// the virtual clock (`--runs` times), prints the report (or the reports and their
/// summary), and returns 0 if every run completed, else 1.
pub(crate) fn simulate(args: Args) -> Result<u8, Problems> {
    let args = args.check()?;
    match &args.metrics {
        None => simulate_checked(&args),
        Some(path) => crate::stats::with_prometheus(path, || simulate_checked(&args)),
    }
}

/// `simulate` with its arguments checked.
fn simulate_checked(args: &Simulate) -> Result<u8, Problems> {
    let paths = &args.files;
    let mut problems = Vec::new();
    let files = kept(
        files::load_run_files(&paths.workflow, &paths.agents, paths.input.as_deref()),
        &mut problems,
    );
    let inputs = args.inputs.as_deref();
    let lines = kept(
        inputs.map_or(Ok(Vec::new()), files::load_inputs),
        &mut problems,
    );
    let context = args.context.as_deref();
    let context = kept(
        context.map_or(Ok(Context::new()), files::load_context),
        &mut problems,
    );
    let (Some((plan, agents, input)), Some(lines), Some(context)) = (files, lines, context) else {
        return Err(problems);
    };
    let starts = Starts {
        lines,
        input,
        context,
    };

    let clock = VirtualClock::starting_at(args.start);
    // Simulated runs are numbered (`run-1`, …): the same files print the same bytes.
    let builder = Engine::builder()
        .clock(clock.clone())
        .seed(args.seed)
        .run_ids(RunIds::Numbered);
    let builder = secure::builder(builder, paths.policy.as_deref())?;
    let scripted = Arc::new(clock.clone());
    let (engine, pools) = agents::engine(builder, &agents, &paths.agents, scripted, None)?;
    if args.runs > 1 {
        return many(args, &engine, &clock, plan, &agents, &starts, pools);
    }
    let workflow = engine.add_plan(plan);
    // Subscribed before the run starts, so that no event is missed.
    let events = engine.subscribe();
    let options = secure::options(starts.options(0, args.seed), paths.user.as_deref());
    let run = match engine.start(&workflow.id, options) {
        Ok(run) => run,
        Err(error) => return secure::not_started(&paths.workflow, &error),
    };
    let run_id = run.id().clone();
    let progress = Progress::new(args.start, true, &agents, [(&run_id, &**run.plan())]);
    eprintln!(
        "{}  run {run_id} of {} started (seed {}, virtual clock)",
        progress.time(args.start),
        workflow.id,
        args.seed,
    );
    let mut answered = with_answers(&engine, run, events, &agents, &progress);
    // Nothing outside this thread can answer, so a stall is final: a step waits for an
    // answer with no script and no timeout.
    let Poll::Ready(report) = clock.run_until_stalled(&mut answered) else {
        drop(answered);
        return Ok(progress.stuck(&run_id, clock.now(), ""));
    };
    Ok(reported(&progress, &report))
}

/// What `simulate --runs N` prints: every report in run order, what the `decision` steps
/// chose, and the scaling actions taken on the agents file's pools.
#[derive(Debug, Serialize)]
struct Runs<'r> {
    runs: &'r [RunReport],
    decisions: Value,
    scaling: Vec<ScalingEvent>,
}

/// The auto-scaler of the agents file's pools, and the actions it took.
struct Scaling {
    scaler: AutoScaler,
    types: Vec<AgentType>,
    taken: Arc<Mutex<Vec<ScalingEvent>>>,
}

impl Scaling {
    fn new(engine: &Engine, agents: &AgentsFile, pools: Arc<AgentPool>) -> Self {
        let taken: Arc<Mutex<Vec<ScalingEvent>>> = Arc::default();
        let sink = Arc::clone(&taken);
        let mut scaler = AutoScaler::new(
            Arc::clone(engine.registry()),
            Arc::clone(engine.clock()),
            pools,
        )
        .on_event(move |event| {
            sink.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(event.clone());
        });
        let mut types = Vec::new();
        for (agent_type, policy) in pool_policies(agents) {
            scaler = scaler.policy(agent_type.clone(), policy);
            types.push(agent_type);
        }
        Self {
            scaler,
            types,
            taken,
        }
    }

    /// Evaluates every pool's type once. The command has no host to measure, so the
    /// type's utilization (busy slots / slots) stands for both its CPU and its memory.
    async fn evaluate(&self, progress: &Progress, clock: &VirtualClock) {
        for agent_type in &self.types {
            let utilization = self
                .scaler
                .inputs(agent_type, HostMetrics::default())
                .utilization;
            let host = HostMetrics::new(utilization, utilization);
            match self.scaler.evaluate(agent_type, host).await {
                Ok(Some(event)) => eprintln!(
                    "{}  scaled {} from {} to {} agents ({})",
                    progress.time(clock.now()),
                    event.agent_type,
                    event.from,
                    event.to,
                    event.reason
                ),
                Ok(None) => {}
                Err(error) => eprintln!("{}  {error}", progress.time(clock.now())),
            }
        }
    }

    fn taken(&self) -> Vec<ScalingEvent> {
        self.taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The runs of one engine and one virtual clock, named `run-1` … `run-N` (`args.runs`,
/// at least 2): `args.concurrency` chains of runs, run i starting when run i − C ends.
/// Prints the progress of every run, then the runs and their summary; 0 when every run
/// completed, else 1 (also when a run is stuck: then nothing is printed on stdout).
fn many(
    args: &Simulate,
    engine: &Engine,
    clock: &VirtualClock,
    plan: tradeflow::plan::ExecutionPlan,
    agents: &AgentsFile,
    starts: &Starts,
    pools: Arc<AgentPool>,
) -> Result<u8, Problems> {
    let count = args.runs as usize;
    let scaling = Scaling::new(engine, agents, pools);
    let ids: Vec<RunId> = (1..=count)
        .map(|n| RunId::from(format!("run-{n}")))
        .collect();
    let progress = Progress::new(args.start, true, agents, ids.iter().map(|id| (id, &plan)));
    let workflow = engine.add_plan(plan);
    eprintln!(
        "{}  {count} runs of {}, {} at once (seeds {} to {}, virtual clock)",
        progress.time(args.start),
        workflow.id,
        args.concurrency.min(args.runs),
        args.seed,
        args.seed.wrapping_add(count as u64 - 1),
    );
    // Subscribed before the first run starts, so that no event is missed.
    let events = engine.subscribe();
    let approver = ScriptedApprover::new(engine, agents.approvals.clone());
    let running = RefCell::new(BTreeSet::new());
    let chain = |first: usize| {
        let (ids, running, progress, workflow) = (&ids, &running, &progress, &workflow.id);
        let scaling = &scaling;
        async move {
            let mut reports = Vec::new();
            for index in (first..count).step_by(args.concurrency as usize) {
                let Some(id) = ids.get(index) else { break };
                let options = starts.options(index, args.seed).run_id(id.clone());
                let options = secure::options(options, args.files.user.as_deref());
                let run = engine.start(workflow, options)?;
                eprintln!(
                    "{}  run {id} of {workflow} started (seed {}, virtual clock)",
                    progress.time(clock.now()),
                    args.seed.wrapping_add(index as u64),
                );
                running.borrow_mut().insert(id.clone());
                let report = run.await;
                running.borrow_mut().remove(id);
                eprintln!("{}", progress.summary(&report));
                reports.push((index, report));
                scaling.evaluate(progress, clock).await;
            }
            Ok::<_, EngineError>(reports)
        }
    };
    let chains = try_join_all((0..count.min(args.concurrency as usize)).map(chain));
    let answers = approver.answer_runs(events, ids.iter().cloned(), &progress);
    let mut all = pin!(async {
        match select(pin!(chains), pin!(answers)).await {
            // The answers go on until every run has ended, so that the last events are
            // shown.
            Either::Left((Ok(chains), answers)) => {
                answers.await;
                Ok(chains)
            }
            Either::Left((Err(error), _)) => Err(error),
            Either::Right(((), chains)) => chains.await,
        }
    });
    // Nothing outside this thread can answer, so a stall is final.
    let Poll::Ready(chains) = clock.run_until_stalled(&mut all) else {
        let at = clock.now();
        for id in running.borrow().iter() {
            progress.stuck(id, at, "");
        }
        return Ok(crate::NOT_COMPLETED);
    };
    let chains = match chains {
        Ok(chains) => chains,
        Err(error) => return secure::not_started(&args.files.workflow, &error),
    };
    let mut reports: Vec<(usize, RunReport)> = chains.into_iter().flatten().collect();
    reports.sort_by_key(|(index, _)| *index);
    let reports: Vec<RunReport> = reports.into_iter().map(|(_, report)| report).collect();
    let values: Vec<Value> = reports
        .iter()
        .map(|report| serde_json::to_value(report).unwrap_or_default())
        .collect();
    let output = Runs {
        runs: &reports,
        decisions: decisions::decisions(&values),
        scaling: scaling.taken(),
    };
    // Reports and JSON values under string keys: serializing cannot fail.
    println!(
        "{}",
        serde_json::to_string_pretty(&output).unwrap_or_default()
    );
    Ok(exit_code(&reports.iter().collect::<Vec<_>>()))
}
