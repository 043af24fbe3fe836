//! `replay`: plays a timeline through a workflow's triggers on a virtual clock.

use std::sync::Arc;
use std::task::Poll;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::future::{Either, select};
use tradeflow::agent::RunId;
use tradeflow::clock::{Clock, VirtualClock};
use tradeflow::definition::StepId;
use tradeflow::engine::{Engine, EngineError, RunIds, RunStatus};
use tradeflow::plan::ExecutionPlan;
use tradeflow::scheduler::{NotFiredReason, Replay, Timeline, Triggers};
use tradeflow::sim::{AgentsFile, ApprovalObserver, ScriptedApprover};

use crate::progress::Progress;
use crate::{NOT_COMPLETED, Problems, agents, cli, files};

/// The line of `replay` in the usage.
pub(crate) const USAGE: &str = "tradeflow replay WORKFLOW.json --agents AGENTS.json \
                                --timeline TIMELINE.json [--seed N]";

/// The arguments of `replay` as clap reads them (its help is in [`crate::cli::Verb`]).
#[derive(Debug, clap::Args)]
#[command(override_usage = USAGE)]
pub(crate) struct Args {
    #[command(flatten)]
    workflow: cli::WorkflowFile,
    /// The scripted agents, approvals and resource pool (required).
    #[arg(long, value_name = "AGENTS.json", allow_hyphen_values = true)]
    agents: Option<String>,
    /// The timeline to play (required).
    #[arg(long, value_name = "TIMELINE.json", allow_hyphen_values = true)]
    timeline: Option<String>,
    /// The seed of the runs' random choices (default: 0).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    seed: Option<String>,
}

/// The arguments of `replay`, checked.
#[derive(Debug)]
struct ReplayArgs {
    workflow: String,
    agents: String,
    timeline: String,
    seed: u64,
}

impl Args {
    fn check(self) -> Result<ReplayArgs, Problems> {
        Ok(ReplayArgs {
            workflow: self.workflow.one("replay")?,
            agents: cli::required(self.agents, "replay", "--agents AGENTS.json")?,
            timeline: cli::required(self.timeline, "replay", "--timeline TIMELINE.json")?,
            seed: cli::seed(self.seed.as_deref())?,
        })
    }
}

/// Loads and checks every file (all problems at once): the workflow, which must have
/// triggers, the agents and the timeline.
fn load(args: &ReplayArgs) -> Result<(ExecutionPlan, AgentsFile, Timeline), Problems> {
    let mut problems = Vec::new();
    let files = files::load_run_files(&args.workflow, &args.agents, None)
        .map_err(|p| problems.extend(p))
        .ok();
    let timeline = files::load_timeline(&args.timeline)
        .map_err(|p| problems.extend(p))
        .ok();
    if let Some((plan, _, _)) = &files {
        if plan.triggers().is_empty() {
            problems.push(format!(
                "{}: workflow `{}` has no triggers: nothing to replay",
                args.workflow,
                plan.workflow_id()
            ));
        }
    }
    match (files, timeline, problems.is_empty()) {
        (Some((plan, agents, _)), Some(timeline), true) => Ok((plan, agents, timeline)),
        _ => Err(problems),
    }
}

/// `replay`: plays the timeline through the workflow's triggers on a virtual clock,
/// answering approvals as scripted, prints the result, and returns 0 (1 if a run is
/// stuck).
pub(crate) fn replay(args: Args) -> Result<u8, Problems> {
    let args = args.check()?;
    let (plan, agents, timeline) = load(&args)?;

    let clock = VirtualClock::starting_at(timeline.start);
    // Simulated runs are numbered (`run-1`, …): the same files print the same bytes.
    let builder = Engine::builder()
        .clock(clock.clone())
        .seed(args.seed)
        .run_ids(RunIds::Numbered);
    let scripted = Arc::new(clock.clone());
    let (engine, _pools) = agents::engine(builder, &agents, &args.agents, scripted, None)?;
    let workflow = engine.add_plan(plan);
    let triggers = Triggers::new(&engine, &workflow.id)
        .map_err(|error| vec![format!("{}: {error}", args.workflow)])?;
    let no_runs = std::iter::empty::<(&RunId, &ExecutionPlan)>();
    let progress = Progress::new(timeline.start, true, &agents, no_runs);
    let approver = ScriptedApprover::new(&engine, agents.approvals.clone());
    // Subscribed before the first run starts, so that no waiting step is missed.
    let events = engine.subscribe();
    eprintln!(
        "{}  replaying {} through {} trigger(s) of {} (seed {}, virtual clock)",
        time(timeline.start),
        args.timeline,
        triggers.plan().triggers().len(),
        workflow.id,
        args.seed,
    );
    let refusals = Refusals(&progress);
    let mut both = Box::pin(select(
        Box::pin(timeline.play(&triggers)),
        Box::pin(approver.answer_all(events, &refusals)),
    ));
    let replayed = match clock.run_until_stalled(&mut both) {
        Poll::Ready(Either::Left((replayed, _))) => replayed,
        // The answers end only with the engine's events, which outlive the replay.
        Poll::Ready(Either::Right(_)) | Poll::Pending => {
            drop(both);
            eprintln!(
                "{}  a run is stuck: a step waits for an approval that has no scripted answer \
                 and no timeout",
                time(clock.now()),
            );
            return Ok(NOT_COMPLETED);
        }
    };
    print_considered(&replayed, triggers.plan(), &progress, &timeline);
    println!("{}", replayed.to_json_pretty());
    Ok(0)
}

/// A replay's time on stderr: date and time of day, UTC.
fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// Prints one line per trigger the replay considered, then a summary, on stderr.
fn print_considered(
    replayed: &Replay,
    plan: &ExecutionPlan,
    progress: &Progress,
    timeline: &Timeline,
) {
    for considered in &replayed.considered {
        let what = match &considered.outcome {
            Ok(index) => match replayed.runs.get(*index) {
                Some(run) => {
                    let summary = progress.summary(&run.report);
                    // The summary starts with its own time: keep what follows.
                    let summary = summary.split_once("  ").map_or(&*summary, |(_, rest)| rest);
                    format!("fired: {summary}")
                }
                None => "fired".to_owned(),
            },
            Err(reason) => {
                let condition = plan
                    .triggers()
                    .get(considered.trigger_index)
                    .and_then(|trigger| trigger.condition())
                    .map(|condition| format!(" (`{}`)", condition.text()))
                    .filter(|_| !matches!(reason, NotFiredReason::CoolingDown { .. }))
                    .unwrap_or_default();
                format!("not fired: {reason}{condition}")
            }
        };
        eprintln!("{}  {}  {what}", time(considered.at), considered.trigger);
    }
    let fired = replayed.runs.len();
    let completed = replayed
        .runs
        .iter()
        .filter(|run| run.report.status == RunStatus::Completed)
        .count();
    eprintln!(
        "{}  replayed to {}: {fired} run(s) started ({completed} COMPLETED), {} trigger \
         consideration(s) did not fire",
        time(timeline.end),
        timeline.end.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        replayed.considered.len() - fired,
    );
}

/// Shows only the answers the engine refused: for `replay`, which prints no run's events.
#[derive(Debug)]
struct Refusals<'p>(&'p Progress);

impl ApprovalObserver for Refusals<'_> {
    fn refused(&self, run: &RunId, step: &StepId, at: DateTime<Utc>, error: &EngineError) {
        self.0.refused(run, step, at, error);
    }
}
