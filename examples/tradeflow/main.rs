//! The `tradeflow` command: validate, draw, simulate and run workflow files.
//!
//! ```text
//! cargo run --example tradeflow -- validate WORKFLOW.json [--agents AGENTS.json]
//! cargo run --example tradeflow -- plan WORKFLOW.json [--format dot|mermaid]
//! cargo run --example tradeflow -- simulate WORKFLOW.json --agents AGENTS.json
//!     [--input INPUT.json] [--inputs FILE.jsonl] [--context CONTEXT.json] [--seed N]
//!     [--start RFC3339] [--runs N] [--concurrency C]
//! cargo run --example tradeflow -- run WORKFLOW.json --agents AGENTS.json
//!     [--input INPUT.json] --store sqlite:PATH [--effects FILE]
//! cargo run --example tradeflow -- resume --store sqlite:PATH [--agents AGENTS.json]
//!     [--effects FILE]
//! cargo run --example tradeflow -- runs --store sqlite:PATH [--status STATUS]
//!     [--workflow ID] [--limit N]
//! cargo run --example tradeflow -- show RUN_ID --store sqlite:PATH
//!     [--format text|json|mermaid]
//! cargo run --example tradeflow -- schedule WORKFLOW.json --from RFC3339 --to RFC3339
//! cargo run --example tradeflow -- replay WORKFLOW.json --agents AGENTS.json
//!     --timeline TIMELINE.json [--seed N]
//! cargo run --example tradeflow -- stats --store sqlite:PATH [--workflow ID]
//! ```
//!
//! `validate --agents` also checks the workflow against an agents file: every step that
//! calls an agent must have one there that can take it ([`missing_agents`]), as
//! [`AgentCheck::BeforeStart`] checks a host's registered agents before a run.
//!
//! `simulate` is the dry run of `docs/command.md`: the workflow runs against the scripted
//! agents of the agents file ([`tradeflow::sim`]) on a [`VirtualClock`] that starts at
//! `--start` (default `2026-01-05T09:00:00Z`), so delays, back-offs and approval waits
//! take no real time. The input defaults to `{}` and the seed to 0. A
//! [`ScriptedApprover`] answers `human_approval` steps as the file's `approvals` say,
//! `afterMs` after each starts waiting; a step with no scripted answer waits for its
//! timeout, and a run that waits for nothing that can come is stuck (exit 1). Progress
//! goes to stderr, one line per run event stamped with the virtual time; the run report
//! (JSON) goes to stdout. Nothing reads the wall clock or an unseeded random source, so
//! the same files and seed give the same bytes on both streams.
//!
//! `simulate --runs N` is a backtest: N runs on one engine and one virtual clock, run i
//! starting when run i − C ends (`--concurrency C`), run i seeded `--seed` + i − 1, each
//! with its line of `--inputs FILE.jsonl` (line i mod lines), all with the host context
//! of `--context CONTEXT.json` ([`Context::set_value`] for each name). It prints
//! `{"runs": [report, …], "decisions": {…}, "scaling": […]}`, where `decisions`
//! summarizes what the `decision` steps chose (`decisions.rs`, a pure function of the
//! reports as JSON) and `scaling` lists what the auto-scaler did to the agents file's
//! `pools` (evaluated after each run, the type's utilization standing for CPU and
//! memory); with `--runs 1` it prints the single report as above.
//!
//! `run` is the same run on the real clock ([`StallDetectingClock`]: scripted delays and
//! `afterMs` are real milliseconds, and a stuck run is seen), journaled to a SQLite store
//! ([`SqliteStore`]): every step is journaled before it counts as done. Its run id is new
//! in the store (`run-<UTC start>-<process id>`), since engines number runs per process.
//! `resume` finishes every run the store lists as unfinished ([`Engine::recover`]), with
//! the definition the store keeps, after a crash or a `kill -9`; it prints one compact
//! JSON report per line. `--effects FILE` wraps every agent so that each call first
//! appends a synced JSON line to FILE: the witness of what was called, and with which
//! idempotency key.
//!
//! `runs` and `show` read a store and change nothing in it: `runs` lists its runs newest
//! first ([`list_runs`], filtered by status, workflow and a limit); `show` folds one
//! run's journal ([`RunState::fold`]) and prints every step of its definition, as text,
//! JSON, or a Mermaid gantt chart ([`RunState::gantt`]).
//!
//! `schedule` lists the cron occurrences of the workflow's `SCHEDULED` triggers in a
//! range ([`scheduled_firings`]); conditions are not evaluated (they need a host
//! context). `replay` plays a timeline file ([`Timeline`]) through the workflow's
//! [`Triggers`] on a [`VirtualClock`] that starts at the timeline's start, answers
//! approvals as the agents file says, and prints every run the triggers started with its
//! report.
//!
//! `simulate --metrics FILE` records the runs' metrics ([`tradeflow::metrics`]) with a
//! Prometheus recorder and writes its text exposition to FILE after the runs. `stats`
//! folds every run a store keeps into a performance report
//! ([`Performance::record_journal`](tradeflow::metrics::Performance::record_journal)).
//!
//! Arguments are read with clap (`tradeflow VERB --help`), and clap's errors are said in
//! the command's own words (`cli.rs`). Each verb is a module; `files.rs` reads and checks
//! files, `agents.rs` registers scripted agents and the effects file, `progress.rs`
//! prints progress.
//!
//! [`VirtualClock`]: tradeflow::clock::VirtualClock
//! [`StallDetectingClock`]: tradeflow::clock::StallDetectingClock
//! [`ScriptedApprover`]: tradeflow::sim::ScriptedApprover
//! [`SqliteStore`]: tradeflow::store
//! [`Engine::recover`]: tradeflow::engine::Engine::recover
//! [`list_runs`]: tradeflow::store::list_runs
//! [`RunState::fold`]: tradeflow::store::RunState::fold
//! [`RunState::gantt`]: tradeflow::store::RunState::gantt
//! [`scheduled_firings`]: tradeflow::scheduler::scheduled_firings
//! [`Timeline`]: tradeflow::scheduler::Timeline
//! [`Triggers`]: tradeflow::scheduler::Triggers
//! [`missing_agents`]: tradeflow::engine::missing_agents
//! [`AgentCheck::BeforeStart`]: tradeflow::engine::AgentCheck::BeforeStart
//! [`Context::set_value`]: tradeflow::expr::Context::set_value
//!
//! Exit codes: 0 success (`simulate`: every run `COMPLETED`; `run`: the run `COMPLETED`;
//! `resume`: every resumed run `COMPLETED`, or none to resume; `schedule`; `replay`, however its runs ended;
//! `runs`; `show`; `stats`); 1 a
//! run ended otherwise (or stalled: a step waits for an answer nobody will give); 2
//! invalid files or arguments, every problem on stderr, one a line (`PATH: problem`), a
//! store that is missing or not a tradeflow store, a run `show` cannot find; 3 the
//! engine's permissions (`--policy`) refused the run, the reason on stderr.

mod agents;
#[cfg(feature = "sqlite")]
mod audit;
mod cli;
mod decisions;
mod files;
mod help;
mod plan;
mod progress;
mod replay;
mod resume;
mod run;
mod runs;
mod schedule;
mod secure;
mod show;
mod simulate;
mod stats;
mod store;
mod validate;

use std::pin::Pin;
use std::process::ExitCode;

use futures::future::join;
use tradeflow::engine::{Engine, EventStream, Run, RunReport, RunStatus};
use tradeflow::sim::{AgentsFile, ScriptedApprover};

use crate::cli::{Asked, Verb};
use crate::progress::Progress;

/// Problems to print on stderr, one a line, before exiting with [`INVALID`].
type Problems = Vec<String>;

/// Exit code of a run that did not complete.
const NOT_COMPLETED: u8 = 1;
/// Exit code for invalid files and usage errors.
const INVALID: u8 = 2;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match tradeflow(&args) {
        Ok(code) => ExitCode::from(code),
        Err(lines) => {
            for line in lines {
                eprintln!("{line}");
            }
            ExitCode::from(INVALID)
        }
    }
}

/// Runs the verb `args` ask for and returns its exit code.
fn tradeflow(args: &[String]) -> Result<u8, Problems> {
    let verb = match cli::parse(args)? {
        Asked::Verb(verb) => verb,
        Asked::Help(text) => {
            print!("{text}");
            return Ok(0);
        }
    };
    match *verb {
        Verb::Validate(args) => validate::validate(args),
        Verb::Plan(args) => plan::plan(args),
        Verb::Simulate(args) => simulate::simulate(args),
        Verb::Run(args) => run::run(args),
        Verb::Resume(args) => resume::resume(args),
        Verb::Runs(args) => runs::runs(args),
        Verb::Show(args) => show::show(args),
        Verb::Schedule(args) => schedule::schedule(args),
        Verb::Replay(args) => replay::replay(args),
        #[cfg(feature = "sqlite")]
        Verb::Audit(args) => audit::audit(args),
        Verb::Stats(args) => stats::stats(args),
        Verb::Help { .. } => {
            println!("{}", help::text());
            Ok(0)
        }
    }
}

/// `run`, with a [`ScriptedApprover`] answering its waiting steps as `agents` say and
/// `progress` printing its events: the run's report, once it has ended.
fn with_answers<'a>(
    engine: &Engine,
    run: Run,
    events: EventStream,
    agents: &AgentsFile,
    progress: &'a Progress,
) -> Pin<Box<dyn Future<Output = RunReport> + 'a>> {
    let approver = ScriptedApprover::new(engine, agents.approvals.clone());
    let id = run.id().clone();
    Box::pin(async move {
        let answers = approver.answer_runs(events, [id], progress);
        join(run, answers).await.0
    })
}

/// Prints how the run of `report` ended (stderr) and its report (stdout); its exit code.
fn reported(progress: &Progress, report: &RunReport) -> u8 {
    eprintln!("{}", progress.summary(report));
    println!("{}", report.to_json_pretty());
    exit_code(&[report])
}

/// 0 when every run of `reports` completed, else [`NOT_COMPLETED`].
fn exit_code(reports: &[&RunReport]) -> u8 {
    if reports
        .iter()
        .all(|report| report.status == RunStatus::Completed)
    {
        0
    } else {
        NOT_COMPLETED
    }
}
