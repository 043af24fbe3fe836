//! `run`: `simulate` on the real clock, journaled to a SQLite store.

use std::sync::Arc;
use std::task::Poll;

use chrono::{DateTime, Utc};
use tradeflow::agent::RunId;
use tradeflow::clock::{Clock, StallDetectingClock};
use tradeflow::definition::WorkflowDefinition;
use tradeflow::engine::{Engine, EngineError, RunOptions, WorkflowRef};
use tradeflow::store::{RunStore, StoreError};

use crate::agents::{self, Effects};
use crate::files::{self, chain};
use crate::progress::Progress;
use crate::{Problems, cli, reported, secure, store, with_answers};

/// The line of `run` in the usage.
pub(crate) const USAGE: &str = "tradeflow run WORKFLOW.json --agents AGENTS.json \
                                [--input INPUT.json] --store sqlite:PATH [--effects FILE] \
                                [--user NAME] [--policy POLICY.json]";

/// The arguments of `run` as clap reads them (its help is in [`crate::cli::Verb`]).
#[derive(Debug, clap::Args)]
#[command(override_usage = USAGE)]
pub(crate) struct Args {
    #[command(flatten)]
    files: cli::RunFiles,
    /// The store, sqlite:PATH (required).
    #[arg(long, value_name = "sqlite:PATH", allow_hyphen_values = true)]
    store: Option<String>,
    /// Before each agent call, appends one synced JSON line to FILE.
    #[arg(long, value_name = "FILE", allow_hyphen_values = true)]
    effects: Option<String>,
}

/// The arguments of `run`, checked.
#[derive(Debug)]
struct Run {
    files: cli::RunPaths,
    /// The store's file (the `PATH` of `sqlite:PATH`).
    store: String,
    effects: Option<String>,
}

impl Args {
    fn check(self) -> Result<Run, Problems> {
        Ok(Run {
            files: self.files.check("run")?,
            store: cli::store("run", self.store.as_deref())?,
            effects: self.effects,
        })
    }
}

/// `run`: loads and checks every file, opens the store, runs under a new run id, prints
/// the report, and returns 0 if the run completed, else 1.
pub(crate) fn run(args: Args) -> Result<u8, Problems> {
    let args = args.check()?;
    let paths = &args.files;
    let (plan, agents, input) =
        files::load_run_files(&paths.workflow, &paths.agents, paths.input.as_deref())?;
    // Opened once the files are known to be good, so that a typo creates no file.
    let effects = args.effects.as_deref().map(Effects::open).transpose()?;
    let (store, audit) = store::open_audited(&args.store, true)?;

    let clock = StallDetectingClock::new();
    let builder = Engine::builder()
        .clock(clock.clone())
        .store(Arc::clone(&store))
        .audit(audit);
    let builder = secure::builder(builder, paths.policy.as_deref())?;
    let scripted = Arc::new(clock.clone());
    let (engine, _pools) =
        agents::engine(builder, &agents, &paths.agents, scripted, effects.as_ref())?;
    let workflow = create_workflow(&engine, plan.definition(), &args.store)?;
    let started = clock.now();
    let run_id = new_run_id(store.as_ref(), started, &args.store)?;
    let events = engine.subscribe();
    let options = RunOptions::new(input).run_id(run_id.clone());
    let run = match engine.start(
        &workflow.id,
        secure::options(options, paths.user.as_deref()),
    ) {
        Ok(run) => run,
        Err(error) => return secure::not_started(&paths.workflow, &error),
    };
    let progress = Progress::new(started, false, &agents, [(&run_id, &**run.plan())]);
    eprintln!(
        "{}  run {run_id} of {} started (real clock, journaled to {})",
        progress.time(started),
        workflow.id,
        args.store,
    );
    let mut answered = with_answers(&engine, run, events, &agents, &progress);
    let Poll::Ready(report) = clock.run_until_stalled(&mut answered) else {
        drop(answered);
        let hint = format!(
            "; the run stays unfinished in {}: `resume` with agents that answer it finishes it",
            args.store
        );
        return Ok(progress.stuck(&run_id, clock.now(), &hint));
    };
    Ok(reported(&progress, &report))
}

/// Stores the definition (for `resume`) before the run starts; a version kept with other
/// text is refused.
fn create_workflow(
    engine: &Engine,
    definition: &WorkflowDefinition,
    store: &str,
) -> Result<WorkflowRef, Problems> {
    engine.create_workflow(definition.clone()).map_err(|error| {
        let hint = match &error {
            EngineError::Store { source } if matches!(**source, StoreError::Conflict { .. }) => {
                " (an edited workflow needs a new version)"
            }
            _ => "",
        };
        vec![format!("{store}: {}{hint}", chain(&error))]
    })
}

/// A run id no engine has used in the store: the UTC time and this process's id. Two
/// processes cannot share an id at once, and one process starts one run.
fn new_run_id(
    store: &dyn RunStore,
    now: DateTime<Utc>,
    store_path: &str,
) -> Result<RunId, Problems> {
    let run_id = RunId::new(format!(
        "run-{}-{}",
        now.format("%Y%m%dT%H%M%S%.3fZ"),
        std::process::id()
    ));
    match store.load(&run_id) {
        Ok(journal) if journal.is_empty() => Ok(run_id),
        Ok(_) => Err(vec![format!(
            "{store_path}: run `{run_id}` is in the store already; run again"
        )]),
        Err(error) => Err(store::problem(store_path, &error)),
    }
}
