//! `resume`: finishes every unfinished run of a store, after a crash or a `kill -9`.

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt as _;
use futures::future::join;
use futures::stream::FuturesUnordered;
use tradeflow::agent::RunId;
use tradeflow::clock::{Clock, StallDetectingClock};
use tradeflow::engine::{Engine, Recovery, Run, RunReport};
use tradeflow::plan::ExecutionPlan;
use tradeflow::sim::{AgentsFile, ScriptedApprover};

use crate::agents::{self, Effects};
use crate::files;
use crate::progress::Progress;
use crate::{INVALID, NOT_COMPLETED, Problems, cli, exit_code, store};

/// The line of `resume` in the usage.
pub(crate) const USAGE: &str =
    "tradeflow resume --store sqlite:PATH [--agents AGENTS.json] [--effects FILE]";

/// The arguments of `resume` as clap reads them (its help is in [`crate::cli::Verb`]).
#[derive(Debug, clap::Args)]
#[command(override_usage = USAGE)]
pub(crate) struct Args {
    #[command(flatten)]
    store: cli::StoreOnly,
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
        Ok(Resume {
            store: self.store.check("resume")?,
            agents: self.agents,
            effects: self.effects,
        })
    }
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
    let (store, audit) = store::open_audited(&args.store, false)?;

    let clock = StallDetectingClock::new();
    let engine = Engine::builder()
        .clock(clock.clone())
        .store(Arc::clone(&store))
        .audit(audit)
        .build();
    // Nothing happens to a recovered run until it is polled: agents can come after.
    let recovery = engine
        .recover_all()
        .map_err(|error| store::problem(&args.store, &error))?;
    let left = left_alone(&recovery, &args.store);
    let runs = recovery.runs;
    if runs.is_empty() {
        if left == Left::Nothing {
            eprintln!(
                "{}: nothing to resume: no run in the store is unfinished",
                args.store
            );
        }
        return Ok(if left == Left::Damaged { INVALID } else { 0 });
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
    check(&runs, &agents, agents_path, &args.store)?;
    let registered = Arc::new(clock.clone());
    agents::register(&engine, &agents, agents_path, registered, effects.as_ref())?;
    let code = finish(&engine, &clock, runs, &agents, &args.store)?;
    Ok(if left == Left::Damaged { INVALID } else { code })
}

/// What `resume` leaves to others, or cannot resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Left {
    /// Nothing.
    Nothing,
    /// Runs another live process holds.
    Held,
    /// Runs that cannot be recovered (damaged journals, missing definitions).
    Damaged,
}

/// Says on stderr which runs are left and why: held by another live process (it drives
/// them), or not recoverable (naming the damage).
fn left_alone(recovery: &Recovery, store_path: &str) -> Left {
    for held in &recovery.held {
        eprintln!(
            "{store_path}: run `{}` is held by `{}` (its lease runs until {}): left to it",
            held.run,
            held.owner,
            held.until.to_rfc3339_opts(SecondsFormat::Millis, true)
        );
    }
    for (run, reason) in &recovery.failed {
        eprintln!(
            "{store_path}: run `{run}` cannot be resumed: {}",
            files::chain(reason)
        );
    }
    if !recovery.failed.is_empty() {
        Left::Damaged
    } else if !recovery.held.is_empty() {
        Left::Held
    } else {
        Left::Nothing
    }
}

/// Checks the agents file against the workflows of the runs to resume (all problems at
/// once).
fn check(
    runs: &[Run],
    agents: &AgentsFile,
    agents_path: &str,
    store_path: &str,
) -> Result<(), Problems> {
    // Each run's plan is the version it started with, as recovery kept it.
    let plans: Vec<&ExecutionPlan> = runs.iter().map(|run| &**run.plan()).collect();
    let mut problems = files::check_approvals(
        &plans,
        agents,
        agents_path,
        "the workflows of the runs to resume",
    );
    for run in runs {
        let plan = run.plan();
        let workflow = plan.workflow_id();
        let label = format!("{store_path} (run `{}`, workflow `{workflow}`)", run.id());
        problems.extend(files::check_resources(plan, agents, &label, agents_path));
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
    runs: Vec<Run>,
    agents: &AgentsFile,
    store_path: &str,
) -> Result<u8, Problems> {
    let now = clock.now();
    let plans = runs.iter().map(|run| (run.id(), &**run.plan()));
    let progress = Progress::new(now, false, agents, plans);
    for run in &runs {
        print_resumed(&progress, now, run);
    }
    let ids: Vec<RunId> = runs.iter().map(|run| run.id().clone()).collect();
    let events = engine.subscribe();
    let approver = ScriptedApprover::new(engine, agents.approvals.clone());
    let mut running: FuturesUnordered<Run> = runs.into_iter().collect();
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

/// Says where a recovered run's journal left it, as [`Run::resumed`] tells.
fn print_resumed(progress: &Progress, now: DateTime<Utc>, run: &Run) {
    let Some(resumed) = run.resumed() else {
        return;
    };
    let plan = run.plan();
    eprintln!(
        "{}  run {} of {} resumed (started {}): {} of {} steps ended, {} call(s) to make \
         again",
        progress.time(now),
        run.id(),
        plan.workflow_id(),
        resumed
            .started_at()
            .to_rfc3339_opts(SecondsFormat::Millis, true),
        resumed.steps_ended(),
        plan.steps().len(),
        resumed.calls_to_remake(),
    );
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
