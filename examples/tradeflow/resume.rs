//! `resume`: finishes every unfinished run of a store, after a crash or a `kill -9`.

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;

use futures::StreamExt as _;
use futures::future::join;
use futures::stream::FuturesUnordered;
use tradeflow::agent::RunId;
use tradeflow::clock::{Clock, StallDetectingClock};
use tradeflow::engine::{Engine, Run, RunReport};
use tradeflow::plan::ExecutionPlan;
use tradeflow::sim::{AgentsFile, ScriptedApprover};
use tradeflow::store::{RunState, RunStore};

use crate::agents::{self, Effects};
use crate::files::{self, chain};
use crate::progress::Progress;
use crate::{NOT_COMPLETED, Problems, cli, exit_code, store};

/// The line of `resume` in the usage.
pub(crate) const USAGE: &str =
    "tradeflow resume --store sqlite:PATH [--agents AGENTS.json] [--effects FILE]";

/// The arguments of `resume` as clap reads them (its help is in [`crate::cli::Verb`]).
#[derive(Debug, clap::Args)]
#[command(override_usage = USAGE)]
pub(crate) struct Args {
    /// None: `resume` takes no file (said as `unexpected argument`).
    #[arg(hide = true)]
    unexpected: Vec<String>,
    /// The store of an earlier `run`, sqlite:PATH (required).
    #[arg(long, value_name = "sqlite:PATH", allow_hyphen_values = true)]
    store: Option<String>,
    /// The scripted agents and approvals (required when there is a run to finish).
    #[arg(long, value_name = "AGENTS.json", allow_hyphen_values = true)]
    agents: Option<String>,
    /// Before each agent call, appends one synced JSON line to FILE.
    #[arg(long, value_name = "FILE", allow_hyphen_values = true)]
    effects: Option<String>,
}

/// The arguments of `resume`, checked.
#[derive(Debug)]
struct Resume {
    /// The store's file (the `PATH` of `sqlite:PATH`).
    store: String,
    agents: Option<String>,
    effects: Option<String>,
}

impl Args {
    fn check(self) -> Result<Resume, Problems> {
        if let Some(extra) = self.unexpected.first() {
            return Err(cli::unexpected(extra));
        }
        Ok(Resume {
            store: cli::store("resume", self.store.as_deref())?,
            agents: self.agents,
            effects: self.effects,
        })
    }
}

/// A run to resume: the run, its workflow and its journal's fold.
struct Resumed {
    run: Run,
    plan: Arc<ExecutionPlan>,
    journaled: RunState,
}

/// `resume`: recovers every unfinished run of the store, drives them all to their end
/// on the real clock, prints one compact report per line as each ends, and returns 0
/// when all completed (or there was none), else 1.
pub(crate) fn resume(args: Args) -> Result<u8, Problems> {
    let args = args.check()?;
    let agents = args.agents.as_deref().map(files::load_agents).transpose()?;
    if !Path::new(&args.store).exists() {
        return Err(vec![format!(
            "{}: no such store (resume reads the store of an earlier `run`)",
            args.store
        )]);
    }
    let effects = args.effects.as_deref().map(Effects::open).transpose()?;
    let store = store::open(&args.store)?;

    let clock = StallDetectingClock::new();
    let engine = Engine::builder()
        .clock(clock.clone())
        .store(Arc::clone(&store))
        .build();
    // Nothing happens to a recovered run until it is polled: agents can come after.
    let runs = engine
        .recover()
        .map_err(|error| store::problem(&args.store, &error))?;
    if runs.is_empty() {
        eprintln!(
            "{}: nothing to resume: no run in the store is unfinished",
            args.store
        );
        return Ok(0);
    }
    let Some(agents) = agents else {
        let ids: Vec<String> = runs.iter().map(|run| format!("`{}`", run.id())).collect();
        return Err(cli::usage(&format!(
            "resume needs --agents AGENTS.json: {} holds {} unfinished run(s) ({}) whose \
             remaining steps call agents",
            args.store,
            runs.len(),
            ids.join(", ")
        )));
    };
    let agents_path = args.agents.as_deref().unwrap_or_default();
    let resumed = fold(&engine, store.as_ref(), runs, &args.store)?;
    check(&resumed, &agents, agents_path, &args.store)?;
    let registered = Arc::new(clock.clone());
    agents::register(&engine, &agents, agents_path, registered, effects.as_ref())?;
    finish(&engine, &clock, resumed, &agents, &args.store)
}

/// Each recovered run with its plan and its journal's fold.
fn fold(
    engine: &Engine,
    store: &dyn RunStore,
    runs: Vec<Run>,
    store_path: &str,
) -> Result<Vec<Resumed>, Problems> {
    let mut resumed = Vec::with_capacity(runs.len());
    for run in runs {
        let journal = store
            .load(run.id())
            .map_err(|error| store::problem(store_path, &error))?;
        let journaled = RunState::fold(&journal).map_err(|error| {
            vec![format!(
                "{store_path}: run `{}`: {}",
                run.id(),
                chain(&error)
            )]
        })?;
        // Recovery kept the plan the run started with.
        let plan = engine
            .workflow_version(&journaled.workflow_id, &journaled.version)
            .ok_or_else(|| {
                vec![format!(
                    "{store_path}: run `{}`: workflow `{}` version `{}` was not recovered",
                    run.id(),
                    journaled.workflow_id,
                    journaled.version
                )]
            })?;
        resumed.push(Resumed {
            run,
            plan,
            journaled,
        });
    }
    Ok(resumed)
}

/// Checks the agents file against the workflows of the runs to resume (all problems at
/// once).
fn check(
    resumed: &[Resumed],
    agents: &AgentsFile,
    agents_path: &str,
    store_path: &str,
) -> Result<(), Problems> {
    let plans: Vec<&ExecutionPlan> = resumed.iter().map(|one| &*one.plan).collect();
    let mut problems = files::check_approvals(
        &plans,
        agents,
        agents_path,
        "the workflows of the runs to resume",
    );
    for one in resumed {
        let label = format!(
            "{store_path} (run `{}`, workflow `{}`)",
            one.run.id(),
            one.journaled.workflow_id
        );
        problems.extend(files::check_resources(
            &one.plan,
            agents,
            &label,
            agents_path,
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Drives the resumed runs to their end, printing progress, each report as its run ends
/// and then the summaries; returns the exit code.
fn finish(
    engine: &Engine,
    clock: &StallDetectingClock,
    resumed: Vec<Resumed>,
    agents: &AgentsFile,
    store_path: &str,
) -> Result<u8, Problems> {
    let now = clock.now();
    let progress = Progress::new(
        now,
        false,
        agents,
        resumed.iter().map(|one| (one.run.id(), &*one.plan)),
    );
    for one in &resumed {
        let state = &one.journaled;
        let ended = state
            .steps
            .values()
            .filter(|step| step.status.is_final())
            .count();
        let in_flight: usize = state.steps.values().map(|step| step.in_flight.len()).sum();
        eprintln!(
            "{}  run {} of {} resumed (started {}): {ended} of {} steps ended, {in_flight} \
             call(s) to make again",
            progress.time(now),
            state.run_id,
            state.workflow_id,
            state
                .started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            one.plan.steps().len(),
        );
    }
    let ids: Vec<RunId> = resumed.iter().map(|one| one.run.id().clone()).collect();
    let events = engine.subscribe();
    let approver = ScriptedApprover::new(engine, agents.approvals.clone());
    let mut running: FuturesUnordered<Run> = resumed.into_iter().map(|one| one.run).collect();
    let reports = RefCell::new(Vec::new());
    let reported = async {
        while let Some(report) = running.next().await {
            // Plain data with string keys: serializing cannot fail.
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
            reports.borrow_mut().push(report);
        }
    };
    let answers = approver.answer_runs(events, ids.iter().cloned(), &progress);
    let stalled = clock
        .run_until_stalled(&mut Box::pin(join(reported, answers)))
        .is_pending();
    // Summaries after the last progress lines, which the approver prints after a run's
    // report is out (it reads the run's events after the run's future returned).
    let reports = reports.into_inner();
    for report in &reports {
        eprintln!("{}", progress.summary(report));
    }
    if stalled {
        stuck(&progress, &ids, &reports, clock, store_path);
        return Ok(NOT_COMPLETED);
    }
    Ok(exit_code(&reports.iter().collect::<Vec<_>>()))
}

/// Says which runs are stuck: those of `ids` that have no report.
fn stuck(
    progress: &Progress,
    ids: &[RunId],
    reports: &[RunReport],
    clock: &StallDetectingClock,
    store_path: &str,
) {
    for id in ids {
        if reports.iter().all(|report| &report.run_id != id) {
            let hint = format!("; the run stays unfinished in {store_path}");
            progress.stuck(id, clock.now(), &hint);
        }
    }
}
