//! `simulate`: the dry run, against scripted agents on a virtual clock.

use std::sync::Arc;
use std::task::Poll;

use chrono::{DateTime, TimeZone, Utc};
use tradeflow::clock::{Clock, VirtualClock};
use tradeflow::engine::{Engine, RunIds, RunOptions};

use crate::progress::Progress;
use crate::{Problems, agents, cli, files, reported, with_answers};

/// The line of `simulate` in the usage.
pub(crate) const USAGE: &str = "tradeflow simulate WORKFLOW.json --agents AGENTS.json \
                                [--input INPUT.json] [--seed N] [--start RFC3339]";

/// The arguments of `simulate` as clap reads them (its help is in [`crate::cli::Verb`]).
#[derive(Debug, clap::Args)]
#[command(override_usage = USAGE)]
pub(crate) struct Args {
    #[command(flatten)]
    files: cli::RunFiles,
    /// The seed of the run's random choices (default: 0).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    seed: Option<String>,
    /// When the virtual clock starts (default: 2026-01-05T09:00:00Z).
    #[arg(long, value_name = "RFC3339", allow_hyphen_values = true)]
    start: Option<String>,
}

/// The arguments of `simulate`, checked.
#[derive(Debug)]
struct Simulate {
    files: cli::RunPaths,
    seed: u64,
    start: DateTime<Utc>,
}

impl Args {
    fn check(self) -> Result<Simulate, Problems> {
        let files = self.files.check("simulate")?;
        let seed = cli::seed(self.seed.as_deref())?;
        let start = match &self.start {
            None => default_start(),
            Some(start) => cli::time("--start", start)?,
        };
        Ok(Simulate { files, seed, start })
    }
}

/// The default start of the virtual clock: a Monday, 09:00 UTC.
fn default_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0)
        .single()
        .unwrap_or(DateTime::UNIX_EPOCH)
}

/// `simulate`: loads and checks every file (all problems at once), runs the workflow on
/// the virtual clock, prints the report, and returns 0 if the run completed, else 1.
pub(crate) fn simulate(args: Args) -> Result<u8, Problems> {
    let args = args.check()?;
    let paths = &args.files;
    let (plan, agents, input) =
        files::load_run_files(&paths.workflow, &paths.agents, paths.input.as_deref())?;

    let clock = VirtualClock::starting_at(args.start);
    // Simulated runs are numbered (`run-1`, …): the same files print the same bytes.
    let builder = Engine::builder()
        .clock(clock.clone())
        .seed(args.seed)
        .run_ids(RunIds::Numbered);
    let scripted = Arc::new(clock.clone());
    let engine = agents::engine(builder, &agents, &paths.agents, scripted, None)?;
    let workflow = engine.add_plan(plan);
    // Subscribed before the run starts, so that no event is missed.
    let events = engine.subscribe();
    let run = engine
        .start(&workflow.id, RunOptions::new(input).seed(args.seed))
        .map_err(|error| vec![format!("{}: {error}", paths.workflow)])?;
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
