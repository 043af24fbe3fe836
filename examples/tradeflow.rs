//! The `tradeflow` command: validate, draw, simulate and run workflow files.
//!
//! ```text
//! cargo run --example tradeflow -- validate WORKFLOW.json
//! cargo run --example tradeflow -- plan WORKFLOW.json [--format dot|mermaid]
//! cargo run --example tradeflow -- simulate WORKFLOW.json --agents AGENTS.json
//!     [--input INPUT.json] [--seed N] [--start RFC3339]
//! cargo run --example tradeflow -- run WORKFLOW.json --agents AGENTS.json
//!     [--input INPUT.json] --store sqlite:PATH [--effects FILE]
//! cargo run --example tradeflow -- resume --store sqlite:PATH [--agents AGENTS.json]
//!     [--effects FILE]
//! cargo run --example tradeflow -- schedule WORKFLOW.json --from RFC3339 --to RFC3339
//! cargo run --example tradeflow -- replay WORKFLOW.json --agents AGENTS.json
//!     --timeline TIMELINE.json [--seed N]
//! ```
//!
//! `simulate` is the dry run of SIMULATION.md: the workflow runs against the scripted
//! agents of the agents file ([`tradeflow::sim`]) on a [`VirtualClock`] that starts at
//! `--start` (default `2026-01-05T09:00:00Z`), so delays, back-offs and approval waits
//! take no real time. The input defaults to `{}` and the seed to 0. A driver answers
//! `human_approval` steps as the file's `approvals` say, `afterMs` after each starts
//! waiting; a step with no scripted answer waits for its timeout. Progress goes to
//! stderr, one line per run event stamped with the virtual time; the run report (JSON)
//! goes to stdout. Nothing reads the wall clock or an unseeded random source, so the same
//! files and seed give the same bytes on both streams.
//!
//! `run` is the same run on the real clock ([`SystemClock`]: scripted delays and
//! `afterMs` are real milliseconds), journaled to a SQLite store ([`SqliteStore`]):
//! every step is journaled before it counts as done. Its run id is new in the store
//! (`run-<UTC start>-<process id>`), since engines number runs per process. `resume`
//! finishes every run the store lists as unfinished ([`Engine::recover`]), with the
//! definition the store keeps, after a crash or a `kill -9`; it prints one compact JSON
//! report per line. `--effects FILE` wraps every agent so that each call first appends
//! a synced JSON line to FILE: the witness of what was called, and with which
//! idempotency key.
//!
//! `schedule` lists the cron occurrences of the workflow's `SCHEDULED` triggers in a
//! range ([`scheduled_firings`]); conditions are not evaluated (they need a host
//! context). `replay` plays a timeline file ([`Timeline`]) through the workflow's
//! [`Triggers`] on a [`VirtualClock`] that starts at the timeline's start, answers
//! approvals as the agents file says, and prints every run the triggers started with its
//! report.
//!
//! Exit codes: 0 success (`simulate`, `run`: the run `COMPLETED`; `resume`: every resumed
//! run `COMPLETED`, or none to resume; `schedule`; `replay`, however its runs ended); 1 a
//! run ended otherwise (or stalled: a step waits for an answer nobody will give); 2
//! invalid files or arguments, every problem on stderr, one a line (`PATH: problem`).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::pin::pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, TimeZone, Utc};
use futures::stream::FuturesUnordered;
use futures::{StreamExt, select_biased};
use serde::Serialize;
use serde_json::Value;
use tradeflow::agent::{Agent, AgentDescriptor, AgentError, AgentId, Health, RunId, TaskRequest};
use tradeflow::clock::{Clock, Hold, Sleep, SystemClock, VirtualClock};
use tradeflow::definition::{DefinitionError, Location, StepId};
use tradeflow::engine::{
    Engine, EngineBuilder, EngineError, EventStream, Run, RunEvent, RunIds, RunOptions, RunReport,
    RunStatus,
};
use tradeflow::plan::{DrawFormat, ExecutionPlan, StepKind, TriggerKind};
use tradeflow::resource::{ResourceError, ResourcePool};
use tradeflow::scheduler::{NotFiredReason, Replay, Timeline, Triggers, scheduled_firings};
use tradeflow::sim::{AgentsFile, ScriptedApproval, scripted_agents};
#[cfg(feature = "sqlite")]
use tradeflow::store::SqliteStore;
use tradeflow::store::{RunState, RunStore, StoreError};

const USAGE: &str = "usage:
  tradeflow validate WORKFLOW.json
  tradeflow plan WORKFLOW.json [--format dot|mermaid]
  tradeflow simulate WORKFLOW.json --agents AGENTS.json [--input INPUT.json] [--seed N] [--start RFC3339]
  tradeflow run WORKFLOW.json --agents AGENTS.json [--input INPUT.json] --store sqlite:PATH [--effects FILE]
  tradeflow resume --store sqlite:PATH [--agents AGENTS.json] [--effects FILE]
  tradeflow schedule WORKFLOW.json --from RFC3339 --to RFC3339
  tradeflow replay WORKFLOW.json --agents AGENTS.json --timeline TIMELINE.json [--seed N]
  tradeflow help";

/// What `help` prints after [`USAGE`].
const DETAILS: &str = r#"verbs:
  validate  checks a workflow file; prints a one-line summary.
  plan      prints the workflow's execution DAG (Graphviz dot by default).
  simulate  runs the workflow against the scripted agents of AGENTS.json on a virtual
            clock starting at --start (default 2026-01-05T09:00:00Z): delays take no
            time. The input defaults to {}, the seed to 0. Prints the run report (pretty
            JSON) on stdout, progress on stderr.
  run       the same run on the real clock: scripted delays and approval afterMs are
            real milliseconds. Every step is journaled to the SQLite file PATH (created
            if missing) before it counts as done, with the workflow's definition. The run
            id is new, so that it never collides with runs already in PATH:
            run-<UTC start time>-<process id>, e.g. run-20260105T090000.123Z-4242.
            Prints the run report (pretty JSON) on stdout, progress on stderr.
  resume    finishes every unfinished run in the existing store PATH (after a crash or a
            kill -9), each from its journal, with the definition kept in the store: steps
            journaled as done are not run again; calls cut off are made again with the
            same idempotency key (a parallel or loop step cut off runs again from its
            first item or iteration, same keys); approvals that waited wait again and
            are answered as AGENTS.json says. Prints one compact JSON report per line on
            stdout, in the order the runs end; progress on stderr. With nothing to
            resume, prints nothing on stdout (stderr says so) and exits 0. --agents is
            required as soon as there is a run to finish (exit 2 without it).
  schedule  lists every time a SCHEDULED trigger of the workflow fires in [--from, --to),
            one RFC 3339 UTC time a line (2026-11-23T09:00:00Z), in time order (one line
            per trigger when several fire at once). Only the cron patterns are read, each
            in its trigger's timezone: trigger conditions are NOT evaluated (they read a
            host context, which only a running host or a replay's timeline supplies), so
            these are the cron firings, some of which a condition may hold back.
  replay    plays TIMELINE.json (a context, its changes, events and metric reports from
            start to end) through the workflow's triggers on a virtual clock that starts
            at the timeline's start: at each instant, context changes first, then the
            triggers (events and metrics in file order, cron occurrences), each condition
            evaluated against the context of that instant. Every trigger that fires starts
            a run with the timeline's input against the scripted agents of AGENTS.json
            (approvals answered as the file says); every run is run to its end. Prints
            {"runs": [{"trigger", "firedAt", "report"}]} (pretty JSON) on stdout, ordered
            by firedAt (ties: trigger index, then timeline order); on stderr, one line per
            trigger considered (fired, or why not). The seed defaults to 0; the same
            files and seed print the same bytes.

options:
  --effects FILE  (run, resume) before each agent call, appends one JSON line to FILE and
            syncs it: {"runId","stepId","item","attempt","agentId","idempotencyKey"}
            (item: null outside parallel steps). A call made again by resume carries the
            idempotencyKey of the interrupted one.

exit codes:
  0  success (simulate, run: the run COMPLETED; resume: every resumed run COMPLETED, or
     nothing to resume; schedule; replay, however its runs ended)
  1  a run ended otherwise, or is stuck (a step waits for an approval with no scripted
     answer and no timeout; after run and resume it stays unfinished in the store)
  2  invalid files or arguments, every problem on stderr, one a line (PATH: problem)"#;

/// Exit code of a run that did not complete.
const NOT_COMPLETED: u8 = 1;
/// Exit code for invalid files and usage errors.
const INVALID: u8 = 2;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(lines) => {
            for line in lines {
                eprintln!("{line}");
            }
            ExitCode::from(INVALID)
        }
    }
}

/// Runs a verb and returns its exit code; the error is what to print on stderr, one
/// entry a line, before exiting with [`INVALID`].
fn run(args: &[String]) -> Result<u8, Vec<String>> {
    let (verb, rest) = args.split_first().ok_or_else(|| usage("missing verb"))?;
    match verb.as_str() {
        "validate" => {
            let [path] = rest else {
                return Err(usage("validate takes one WORKFLOW.json"));
            };
            let plan = load(path)?;
            let definition = plan.definition();
            let version = definition
                .version
                .as_deref()
                .map(|v| format!(" v{v}"))
                .unwrap_or_default();
            println!(
                "{path}: valid: {}{version} ({}): {} steps, {} edges, {} triggers",
                definition.id,
                definition.name(),
                plan.steps().len(),
                plan.graph().edge_count(),
                plan.triggers().len(),
            );
            Ok(0)
        }
        "plan" => {
            let (path, format) = match rest {
                [path] => (path, DrawFormat::Dot),
                [path, flag, format] if flag == "--format" => (
                    path,
                    format
                        .parse::<DrawFormat>()
                        .map_err(|problem| usage(&problem))?,
                ),
                [flag, format, path] if flag == "--format" => (
                    path,
                    format
                        .parse::<DrawFormat>()
                        .map_err(|problem| usage(&problem))?,
                ),
                _ => return Err(usage("plan takes WORKFLOW.json [--format dot|mermaid]")),
            };
            print!("{}", load(path)?.draw(format));
            Ok(0)
        }
        "simulate" => simulate(&SimulateArgs::parse(rest)?),
        "run" => run_durably(&RunArgs::parse(rest)?),
        "resume" => resume(&ResumeArgs::parse(rest)?),
        "schedule" => schedule(&ScheduleArgs::parse(rest)?),
        "replay" => replay(&ReplayArgs::parse(rest)?),
        "help" | "--help" | "-h" => {
            println!("{USAGE}\n\n{DETAILS}");
            Ok(0)
        }
        other => Err(usage(&format!("unknown verb `{other}`"))),
    }
}

/// A usage error: the problem, then the usage text.
fn usage(problem: &str) -> Vec<String> {
    vec![format!("tradeflow: {problem}"), USAGE.to_owned()]
}

/// An error and its sources, `: `-separated (`cannot recover run `r`: its journal …`).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Reads a file; an unreadable one is a problem line `PATH: cannot read: …`.
fn read(path: &str) -> Result<String, Vec<String>> {
    std::fs::read_to_string(path).map_err(|error| vec![format!("{path}: cannot read: {error}")])
}

/// Reads and compiles a workflow file; every problem becomes one line `PATH: problem`.
fn load(path: &str) -> Result<ExecutionPlan, Vec<String>> {
    ExecutionPlan::from_json(&read(path)?).map_err(|errors| {
        errors
            .iter()
            .map(|error| format!("{path}: {error}"))
            .collect()
    })
}

/// Reads and checks an agents file; every problem becomes one line `PATH: problem`.
fn load_agents(path: &str) -> Result<AgentsFile, Vec<String>> {
    AgentsFile::from_json(&read(path)?).map_err(|errors| {
        errors
            .iter()
            .map(|error| format!("{path}: {error}"))
            .collect()
    })
}

/// Reads an input file: any JSON value (its paths are checked when the run starts).
fn load_input(path: &str) -> Result<Value, Vec<String>> {
    serde_json::from_str(&read(path)?).map_err(|error| {
        // Located like the syntax errors of workflow and agents files.
        let position = format!(" at line {} column {}", error.line(), error.column());
        let text = error.to_string();
        let syntax = DefinitionError::Syntax {
            line: error.line(),
            column: error.column(),
            message: text.strip_suffix(&position).unwrap_or(&text).to_owned(),
        };
        vec![format!("{path}: {syntax}")]
    })
}

/// Loads and checks the files of a run (`simulate`, `run`), reporting every problem of
/// all of them at once: the workflow, the agents, the input (`{}` without one), and the
/// workflow and agents against each other.
fn load_run_files(
    workflow: &str,
    agents: &str,
    input: Option<&str>,
) -> Result<(ExecutionPlan, AgentsFile, Value), Vec<String>> {
    let mut problems = Vec::new();
    let plan = load(workflow).map_err(|p| problems.extend(p)).ok();
    let scripts = load_agents(agents).map_err(|p| problems.extend(p)).ok();
    let input = match input {
        None => Some(Value::Object(serde_json::Map::new())),
        Some(path) => load_input(path).map_err(|p| problems.extend(p)).ok(),
    };
    if let (Some(plan), Some(scripts)) = (&plan, &scripts) {
        problems.extend(check_approvals(&[plan], scripts, agents, "the workflow"));
        problems.extend(check_resources(plan, scripts, workflow, agents));
    }
    match (plan, scripts, input, problems.is_empty()) {
        (Some(plan), Some(scripts), Some(input), true) => Ok((plan, scripts, input)),
        _ => Err(problems),
    }
}

/// The arguments of a verb: positional ones, and the values of `--flag value` pairs.
struct Parsed<'a> {
    positional: Vec<&'a str>,
    flags: BTreeMap<&'static str, &'a str>,
}

/// Splits the arguments of `verb` into positional ones and `--flag value` pairs, for
/// the flags in `known`; an unknown flag, a flag without a value and a flag given twice
/// are usage errors.
fn parse_flags<'a>(
    verb: &str,
    args: &'a [String],
    known: &[&'static str],
) -> Result<Parsed<'a>, Vec<String>> {
    let mut positional = Vec::new();
    let mut flags = BTreeMap::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if let Some(&flag) = known.iter().find(|&&flag| flag == arg) {
            let value = args
                .next()
                .ok_or_else(|| usage(&format!("{flag} needs a value")))?;
            if flags.insert(flag, value.as_str()).is_some() {
                return Err(usage(&format!("{flag} is given twice")));
            }
        } else if arg.starts_with("--") {
            return Err(usage(&format!("{verb} has no option `{arg}`")));
        } else {
            positional.push(arg.as_str());
        }
    }
    Ok(Parsed { positional, flags })
}

/// The one positional argument of `verb`, a file named `what`.
fn one_file(verb: &str, what: &str, positional: &[&str]) -> Result<String, Vec<String>> {
    match positional {
        [] => Err(usage(&format!("{verb} needs a {what}"))),
        [path] => Ok((*path).to_owned()),
        [_, extra, ..] => Err(usage(&format!("unexpected argument `{extra}`"))),
    }
}

/// The arguments of `simulate`.
#[derive(Debug)]
struct SimulateArgs {
    workflow: String,
    agents: String,
    input: Option<String>,
    seed: u64,
    start: DateTime<Utc>,
}

impl SimulateArgs {
    /// The default start of the virtual clock: a Monday, 09:00 UTC.
    fn default_start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0)
            .single()
            .unwrap_or(DateTime::UNIX_EPOCH)
    }

    fn parse(args: &[String]) -> Result<Self, Vec<String>> {
        let Parsed { positional, flags } = parse_flags(
            "simulate",
            args,
            &["--agents", "--input", "--seed", "--start"],
        )?;
        let workflow = one_file("simulate", "WORKFLOW.json", &positional)?;
        let agents = flags
            .get("--agents")
            .ok_or_else(|| usage("simulate needs --agents AGENTS.json"))?;
        let seed = parse_seed(&flags)?;
        let start = match flags.get("--start") {
            None => Self::default_start(),
            Some(start) => parse_time("--start", start)?,
        };
        Ok(Self {
            workflow,
            agents: (*agents).to_owned(),
            input: flags.get("--input").map(|path| (*path).to_owned()),
            seed,
            start,
        })
    }
}

/// The value of `--seed`, 0 without one.
fn parse_seed(flags: &BTreeMap<&str, &str>) -> Result<u64, Vec<String>> {
    match flags.get("--seed") {
        None => Ok(0),
        Some(seed) => seed.parse().map_err(|_| {
            usage(&format!(
                "--seed `{seed}`: expected a whole number from 0 to {}",
                u64::MAX
            ))
        }),
    }
}

/// The RFC 3339 time `value` of option `flag`, in UTC.
fn parse_time(flag: &str, value: &str) -> Result<DateTime<Utc>, Vec<String>> {
    DateTime::parse_from_rfc3339(value)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|error| {
            usage(&format!(
                "{flag} `{value}`: {error} (expected RFC 3339, like 2026-01-05T09:00:00Z)"
            ))
        })
}

/// The arguments of `schedule`.
#[derive(Debug)]
struct ScheduleArgs {
    workflow: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

impl ScheduleArgs {
    fn parse(args: &[String]) -> Result<Self, Vec<String>> {
        let Parsed { positional, flags } = parse_flags("schedule", args, &["--from", "--to"])?;
        let workflow = one_file("schedule", "WORKFLOW.json", &positional)?;
        let time = |flag: &str| {
            let value = flags
                .get(flag)
                .ok_or_else(|| usage(&format!("schedule needs {flag} RFC3339")))?;
            parse_time(flag, value)
        };
        let (from, to) = (time("--from")?, time("--to")?);
        if to <= from {
            return Err(usage(&format!(
                "--to `{}` must be after --from `{}`",
                to.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                from.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            )));
        }
        Ok(Self { workflow, from, to })
    }
}

/// The arguments of `replay`.
#[derive(Debug)]
struct ReplayArgs {
    workflow: String,
    agents: String,
    timeline: String,
    seed: u64,
}

impl ReplayArgs {
    fn parse(args: &[String]) -> Result<Self, Vec<String>> {
        let Parsed { positional, flags } =
            parse_flags("replay", args, &["--agents", "--timeline", "--seed"])?;
        let workflow = one_file("replay", "WORKFLOW.json", &positional)?;
        let file = |flag: &str, what: &str| {
            flags
                .get(flag)
                .map(|path| (*path).to_owned())
                .ok_or_else(|| usage(&format!("replay needs {flag} {what}")))
        };
        Ok(Self {
            workflow,
            agents: file("--agents", "AGENTS.json")?,
            timeline: file("--timeline", "TIMELINE.json")?,
            seed: parse_seed(&flags)?,
        })
    }
}

/// The path of a `--store sqlite:PATH` value; anything else is a usage error.
fn parse_store(verb: &str, flags: &BTreeMap<&str, &str>) -> Result<String, Vec<String>> {
    let store = flags
        .get("--store")
        .ok_or_else(|| usage(&format!("{verb} needs --store sqlite:PATH")))?;
    match store.strip_prefix("sqlite:") {
        Some(path) if !path.is_empty() => Ok(path.to_owned()),
        Some(_) => Err(usage(&format!(
            "--store `{store}`: the path is missing (expected sqlite:PATH, like sqlite:runs.db)"
        ))),
        None => Err(usage(&format!(
            "--store `{store}`: expected sqlite:PATH, like sqlite:runs.db (SQLite is the only store)"
        ))),
    }
}

/// The arguments of `run`.
#[derive(Debug)]
struct RunArgs {
    workflow: String,
    agents: String,
    input: Option<String>,
    /// The store's file (the `PATH` of `sqlite:PATH`).
    store: String,
    effects: Option<String>,
}

impl RunArgs {
    fn parse(args: &[String]) -> Result<Self, Vec<String>> {
        let Parsed { positional, flags } = parse_flags(
            "run",
            args,
            &["--agents", "--input", "--store", "--effects"],
        )?;
        let workflow = one_file("run", "WORKFLOW.json", &positional)?;
        let agents = flags
            .get("--agents")
            .ok_or_else(|| usage("run needs --agents AGENTS.json"))?;
        Ok(Self {
            workflow,
            agents: (*agents).to_owned(),
            input: flags.get("--input").map(|path| (*path).to_owned()),
            store: parse_store("run", &flags)?,
            effects: flags.get("--effects").map(|path| (*path).to_owned()),
        })
    }
}

/// The arguments of `resume`.
#[derive(Debug)]
struct ResumeArgs {
    /// The store's file (the `PATH` of `sqlite:PATH`).
    store: String,
    agents: Option<String>,
    effects: Option<String>,
}

impl ResumeArgs {
    fn parse(args: &[String]) -> Result<Self, Vec<String>> {
        let Parsed { positional, flags } =
            parse_flags("resume", args, &["--store", "--agents", "--effects"])?;
        if let Some(extra) = positional.first() {
            return Err(usage(&format!("unexpected argument `{extra}`")));
        }
        Ok(Self {
            store: parse_store("resume", &flags)?,
            agents: flags.get("--agents").map(|path| (*path).to_owned()),
            effects: flags.get("--effects").map(|path| (*path).to_owned()),
        })
    }
}

/// `simulate`: loads and checks every file (all problems at once), runs the workflow on
/// the virtual clock, prints the report, and returns 0 if the run completed, else 1.
fn simulate(args: &SimulateArgs) -> Result<u8, Vec<String>> {
    let (plan, agents, input) =
        load_run_files(&args.workflow, &args.agents, args.input.as_deref())?;

    let clock = VirtualClock::starting_at(args.start);
    let engine = with_pool(
        Engine::builder()
            .clock(clock.clone())
            .seed(args.seed)
            .run_ids(RunIds::Numbered),
        &agents,
    )
    .build();
    register_agents(
        &engine,
        &agents,
        &args.agents,
        Arc::new(clock.clone()),
        None,
    )?;
    let workflow = engine.add_plan(plan);
    // Subscribed before the run starts, so that no event is missed.
    let events = engine.subscribe();
    let run = engine
        .start(&workflow.id, RunOptions::new(input).seed(args.seed))
        .map_err(|error| vec![format!("{}: {error}", args.workflow)])?;
    let run_id = run.id().clone();
    let plan = engine.workflow(&workflow.id).ok_or_else(|| {
        vec![format!(
            "{}: the engine does not keep workflow `{}`",
            args.workflow, workflow.id
        )]
    })?;
    let progress = Progress::new(args.start, true, &agents, [(&run_id, &*plan)]);
    eprintln!(
        "{}  run {run_id} of {} started (seed {}, virtual clock)",
        progress.time(args.start),
        workflow.id,
        args.seed,
    );
    let driver = Driver::new(&engine, &clock, &agents.approvals, &progress, [&run_id]);
    let mut both = Box::pin(futures::future::join(run, driver.drive(events)));
    // `run_until_stalled` is `block_on` that returns instead of parking when nothing can
    // move: no timer left and nothing woken. Nothing outside this thread can answer, so
    // that state is final: a step waits for an answer with no script and no timeout.
    let report = match clock.run_until_stalled(&mut both) {
        Poll::Ready((report, ())) => report,
        Poll::Pending => {
            drop(both);
            eprintln!(
                "{}  run {run_id} is stuck: {} waits for an approval that has no scripted \
                 answer and no timeout",
                progress.time(clock.now()),
                progress.unanswered(&run_id),
            );
            return Ok(NOT_COMPLETED);
        }
    };
    eprintln!("{}", progress.summary(&report));
    println!("{}", report.to_json_pretty());
    Ok(exit_code(&[&report]))
}

/// `schedule`: prints every cron firing of the workflow's `SCHEDULED` triggers in
/// `[from, to)`, one RFC 3339 UTC time a line, and a summary on stderr.
fn schedule(args: &ScheduleArgs) -> Result<u8, Vec<String>> {
    let plan = load(&args.workflow)?;
    let scheduled: Vec<String> = plan
        .triggers()
        .iter()
        .filter_map(|trigger| match trigger.kind() {
            TriggerKind::Scheduled(schedule) => Some(format!(
                "{} `{}` in {}",
                Location::trigger(trigger.index(), Some(trigger.trigger_type())),
                schedule.pattern(),
                schedule.timezone()
            )),
            _ => None,
        })
        .collect();
    if scheduled.is_empty() {
        eprintln!("{}: no SCHEDULED trigger: nothing fires", args.workflow);
        return Ok(0);
    }
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut count = 0usize;
    for (_, at) in scheduled_firings(plan.triggers(), args.from, args.to) {
        // A closed stdout (`| head`) ends the listing; it is not an error.
        if writeln!(out, "{}", at.to_rfc3339_opts(SecondsFormat::Secs, true)).is_err() {
            return Ok(0);
        }
        count += 1;
    }
    if out.flush().is_err() {
        return Ok(0);
    }
    eprintln!(
        "{}: {count} cron firing(s) of {} in [{}, {}); conditions not evaluated",
        args.workflow,
        scheduled.join(", "),
        args.from.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        args.to.to_rfc3339_opts(SecondsFormat::AutoSi, true),
    );
    Ok(0)
}

/// Reads and checks a timeline file; every problem becomes one line `PATH: problem`
/// (a problem of the file's top level without the `workflow` location the crate gives
/// the root of any file).
fn load_timeline(path: &str) -> Result<Timeline, Vec<String>> {
    Timeline::from_json(&read(path)?).map_err(|errors| {
        errors
            .iter()
            .map(|error| {
                let text = error.to_string();
                let root = format!("{}: ", Location::root());
                match error.location() {
                    Some(at) if *at == Location::root() => {
                        format!("{path}: {}", text.strip_prefix(&root).unwrap_or(&text))
                    }
                    _ => format!("{path}: {text}"),
                }
            })
            .collect()
    })
}

/// `replay`: loads and checks every file (all problems at once), plays the timeline
/// through the workflow's triggers on a virtual clock, answering approvals as scripted,
/// prints the result, and returns 0 (1 if a run is stuck).
fn replay(args: &ReplayArgs) -> Result<u8, Vec<String>> {
    let mut problems = Vec::new();
    let files = load_run_files(&args.workflow, &args.agents, None)
        .map_err(|p| problems.extend(p))
        .ok();
    let timeline = load_timeline(&args.timeline)
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
    let (Some((plan, agents, _)), Some(timeline), true) = (files, timeline, problems.is_empty())
    else {
        return Err(problems);
    };

    let clock = VirtualClock::starting_at(timeline.start);
    let engine = with_pool(
        Engine::builder()
            .clock(clock.clone())
            .seed(args.seed)
            .run_ids(RunIds::Numbered),
        &agents,
    )
    .build();
    register_agents(
        &engine,
        &agents,
        &args.agents,
        Arc::new(clock.clone()),
        None,
    )?;
    let workflow = engine.add_plan(plan);
    let triggers = Triggers::new(&engine, &workflow.id)
        .map_err(|error| vec![format!("{}: {error}", args.workflow)])?;
    let progress = Progress::new(
        timeline.start,
        true,
        &agents,
        std::iter::empty::<(&RunId, &ExecutionPlan)>(),
    );
    let approvals = Driver::new(&engine, &clock, &agents.approvals, &progress, []);
    // Subscribed before the first run starts, so that no waiting step is missed.
    let events = engine.subscribe();
    eprintln!(
        "{}  replaying {} through {} trigger(s) of {} (seed {}, virtual clock)",
        replay_time(timeline.start),
        args.timeline,
        triggers.plan().triggers().len(),
        workflow.id,
        args.seed,
    );
    let mut both = Box::pin(futures::future::select(
        Box::pin(timeline.play(&triggers)),
        Box::pin(approvals.answer_all(events)),
    ));
    let replayed = match clock.run_until_stalled(&mut both) {
        Poll::Ready(futures::future::Either::Left((replayed, _))) => replayed,
        // The answers end only with the engine's events, which outlive the replay.
        Poll::Ready(futures::future::Either::Right(_)) | Poll::Pending => {
            drop(both);
            eprintln!(
                "{}  a run is stuck: a step waits for an approval that has no scripted answer \
                 and no timeout",
                replay_time(clock.now()),
            );
            return Ok(NOT_COMPLETED);
        }
    };
    print_considered(&replayed, triggers.plan(), &progress, &timeline);
    println!("{}", replayed.to_json_pretty());
    Ok(0)
}

/// A replay's time on stderr: date and time of day, UTC.
fn replay_time(at: DateTime<Utc>) -> String {
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
        eprintln!(
            "{}  {}  {what}",
            replay_time(considered.at),
            considered.trigger
        );
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
        replay_time(timeline.end),
        timeline.end.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        replayed.considered.len() - fired,
    );
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

/// Registers the agents of `agents` (read from `path`) on `clock`, each wrapped to
/// record its calls in `effects` when there is an effects file.
fn register_agents(
    engine: &Engine,
    agents: &AgentsFile,
    path: &str,
    clock: Arc<dyn Clock>,
    effects: Option<&Arc<Effects>>,
) -> Result<(), Vec<String>> {
    for (index, agent) in scripted_agents(agents, clock).into_iter().enumerate() {
        let agent = match effects {
            Some(effects) => Arc::new(Recorded {
                agent,
                effects: Arc::clone(effects),
            }),
            None => agent,
        };
        engine
            .register_agent(agent)
            .map_err(|error| vec![format!("{path}: agents[{index}]: {error}")])?;
    }
    Ok(())
}

/// Opens (or creates) the SQLite store at `path`.
#[cfg(feature = "sqlite")]
fn open_store(path: &str) -> Result<Arc<dyn RunStore>, Vec<String>> {
    match SqliteStore::open(path) {
        Ok(store) => Ok(Arc::new(store)),
        // The error names the path already (`cannot open store `PATH``); its source says
        // why.
        Err(StoreError::Open { source, .. }) => Err(vec![format!(
            "{path}: cannot open the store: {}",
            chain(&*source)
        )]),
        Err(StoreError::NotAStore { why, .. }) => Err(vec![format!(
            "{path}: cannot open the store: it is not a tradeflow store: {why}"
        )]),
        Err(error) => Err(vec![format!("{path}: {}", chain(&error))]),
    }
}

/// Without the `sqlite` feature there is no store to open.
#[cfg(not(feature = "sqlite"))]
fn open_store(path: &str) -> Result<Arc<dyn RunStore>, Vec<String>> {
    Err(vec![format!(
        "{path}: this build has no SQLite store (build with the `sqlite` feature)"
    )])
}

/// A run id no engine has used in the store: the UTC time and this process's id. Two
/// processes cannot share an id at once, and one process starts one run.
fn unique_run_id(now: DateTime<Utc>) -> RunId {
    RunId::new(format!(
        "run-{}-{}",
        now.format("%Y%m%dT%H%M%S%.3fZ"),
        std::process::id()
    ))
}

/// `run`: `simulate` on the real clock, journaled to the store: loads and checks every
/// file, opens the store, runs under a new run id, prints the report, and returns 0 if
/// the run completed, else 1.
fn run_durably(args: &RunArgs) -> Result<u8, Vec<String>> {
    let (plan, agents, input) =
        load_run_files(&args.workflow, &args.agents, args.input.as_deref())?;
    // Opened once the files are known to be good, so that a typo creates no file.
    let effects = args.effects.as_deref().map(Effects::open).transpose()?;
    let store = open_store(&args.store)?;

    let clock = RealClock::default();
    let engine = with_pool(
        Engine::builder()
            .clock(clock.clone())
            .store(Arc::clone(&store)),
        &agents,
    )
    .build();
    register_agents(
        &engine,
        &agents,
        &args.agents,
        Arc::new(clock.clone()),
        effects.as_ref(),
    )?;
    // Stores the definition (for `resume`) before the run starts; a version kept with
    // other text is refused.
    let workflow = engine
        .create_workflow((**plan.definition()).clone())
        .map_err(|error| {
            let hint = match &error {
                EngineError::Store { source }
                    if matches!(**source, StoreError::Conflict { .. }) =>
                {
                    " (an edited workflow needs a new version)"
                }
                _ => "",
            };
            vec![format!("{}: {}{hint}", args.store, chain(&error))]
        })?;
    let started = clock.now();
    let run_id = unique_run_id(started);
    match store.load(&run_id) {
        Ok(journal) if journal.is_empty() => {}
        Ok(_) => {
            return Err(vec![format!(
                "{}: run `{run_id}` is in the store already; run again",
                args.store
            )]);
        }
        Err(error) => return Err(vec![format!("{}: {}", args.store, chain(&error))]),
    }
    let events = engine.subscribe();
    let run = engine
        .start(&workflow.id, RunOptions::new(input).run_id(run_id.clone()))
        .map_err(|error| vec![format!("{}: {error}", args.workflow)])?;
    let plan = engine.workflow(&workflow.id).ok_or_else(|| {
        vec![format!(
            "{}: the engine does not keep workflow `{}`",
            args.workflow, workflow.id
        )]
    })?;
    let progress = Progress::new(started, false, &agents, [(&run_id, &*plan)]);
    eprintln!(
        "{}  run {run_id} of {} started (real clock, journaled to {})",
        progress.time(started),
        workflow.id,
        args.store,
    );
    let driver = Driver::new(&engine, &clock, &agents.approvals, &progress, [&run_id]);
    let report = match clock.block_on(futures::future::join(run, driver.drive(events))) {
        Poll::Ready((report, ())) => report,
        Poll::Pending => {
            eprintln!(
                "{}  run {run_id} is stuck: {} waits for an approval that has no scripted \
                 answer and no timeout; the run stays unfinished in {}: `resume` with \
                 agents that answer it finishes it",
                progress.time(clock.now()),
                progress.unanswered(&run_id),
                args.store,
            );
            return Ok(NOT_COMPLETED);
        }
    };
    eprintln!("{}", progress.summary(&report));
    println!("{}", report.to_json_pretty());
    Ok(exit_code(&[&report]))
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
fn resume(args: &ResumeArgs) -> Result<u8, Vec<String>> {
    let agents = args.agents.as_deref().map(load_agents).transpose()?;
    if !Path::new(&args.store).exists() {
        return Err(vec![format!(
            "{}: no such store (resume reads the store of an earlier `run`)",
            args.store
        )]);
    }
    let effects = args.effects.as_deref().map(Effects::open).transpose()?;
    let store = open_store(&args.store)?;

    let clock = RealClock::default();
    let engine = Engine::builder()
        .clock(clock.clone())
        .store(Arc::clone(&store))
        .build();
    let store_problem =
        |error: &dyn std::error::Error| vec![format!("{}: {}", args.store, chain(error))];
    // Nothing happens to a recovered run until it is polled: agents can come after.
    let runs = engine.recover().map_err(|error| store_problem(&error))?;
    if runs.is_empty() {
        eprintln!(
            "{}: nothing to resume: no run in the store is unfinished",
            args.store
        );
        return Ok(0);
    }
    let ids: Vec<String> = runs.iter().map(|run| format!("`{}`", run.id())).collect();
    let Some(agents) = agents else {
        return Err(usage(&format!(
            "resume needs --agents AGENTS.json: {} holds {} unfinished run(s) ({}) whose \
             remaining steps call agents",
            args.store,
            runs.len(),
            ids.join(", ")
        )));
    };
    let agents_path = args.agents.as_deref().unwrap_or_default();
    let mut resumed = Vec::with_capacity(runs.len());
    for run in runs {
        let journal = store
            .load(run.id())
            .map_err(|error| store_problem(&error))?;
        let journaled = RunState::fold(&journal).map_err(|error| {
            vec![format!(
                "{}: run `{}`: {}",
                args.store,
                run.id(),
                chain(&error)
            )]
        })?;
        // Recovery kept the plan the run started with.
        let plan = engine
            .workflow_version(&journaled.workflow_id, &journaled.version)
            .ok_or_else(|| {
                vec![format!(
                    "{}: run `{}`: workflow `{}` version `{}` was not recovered",
                    args.store,
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
    let plans: Vec<&ExecutionPlan> = resumed.iter().map(|one| &*one.plan).collect();
    let mut problems = check_approvals(
        &plans,
        &agents,
        agents_path,
        "the workflows of the runs to resume",
    );
    for one in &resumed {
        let label = format!(
            "{} (run `{}`, workflow `{}`)",
            args.store,
            one.run.id(),
            one.journaled.workflow_id
        );
        problems.extend(check_resources(&one.plan, &agents, &label, agents_path));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    register_agents(
        &engine,
        &agents,
        agents_path,
        Arc::new(clock.clone()),
        effects.as_ref(),
    )?;

    let now = clock.now();
    let progress = Progress::new(
        now,
        false,
        &agents,
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
    let driver = Driver::new(&engine, &clock, &agents.approvals, &progress, &ids);
    let mut running: FuturesUnordered<Run> = resumed.into_iter().map(|one| one.run).collect();
    let reports = RefCell::new(Vec::new());
    let finish = async {
        while let Some(report) = running.next().await {
            // Plain data with string keys: serializing cannot fail.
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
            reports.borrow_mut().push(report);
        }
    };
    let stalled = clock
        .block_on(futures::future::join(finish, driver.drive(events)))
        .is_pending();
    // Summaries after the last progress lines, which the driver prints after a run's
    // report is out (it reads the run's events after the run's future returned).
    let reports = reports.into_inner();
    for report in &reports {
        eprintln!("{}", progress.summary(report));
    }
    if stalled {
        for id in &ids {
            if reports.iter().all(|report| &report.run_id != id) {
                eprintln!(
                    "{}  run {id} is stuck: {} waits for an approval that has no scripted \
                     answer and no timeout; the run stays unfinished in {}",
                    progress.time(clock.now()),
                    progress.unanswered(id),
                    args.store,
                );
            }
        }
        return Ok(NOT_COMPLETED);
    }
    Ok(exit_code(&reports.iter().collect::<Vec<_>>()))
}

/// Checks that every scripted approval of `agents` (read from `agents_path`) answers a
/// `human_approval` step of one of `plans` (`where_` names them in the message).
fn check_approvals(
    plans: &[&ExecutionPlan],
    agents: &AgentsFile,
    agents_path: &str,
    where_: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    for step in agents.approvals.keys() {
        let found: Vec<_> = plans
            .iter()
            .filter_map(|plan| plan.index_of(step).and_then(|index| plan.step(index)))
            .collect();
        if found
            .iter()
            .any(|found| matches!(found.kind(), StepKind::HumanApproval { .. }))
        {
            continue;
        }
        let why = found
            .first()
            .map(|found| format!(" (`{step}` is a {} step)", found.step_type().as_str()))
            .unwrap_or_default();
        problems.push(format!(
            "{agents_path}: approvals.{step}: no human_approval step `{step}` in {where_}{why}"
        ));
    }
    problems
}

/// Checks that every step's resource requirements (and the workflow's, held for the
/// whole run) fit the pool of `agents` (a resource the pool does not name is not
/// limited). `workflow` names the plan in messages.
fn check_resources(
    plan: &ExecutionPlan,
    agents: &AgentsFile,
    workflow: &str,
    agents_path: &str,
) -> Vec<String> {
    let pool = match resource_pool(agents) {
        Ok(Some(pool)) => pool,
        Ok(None) => return Vec::new(),
        Err(error) => return vec![format!("{agents_path}: resources: {error}")],
    };
    match pool.check_plan(plan) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .iter()
            .map(|error| format!("{workflow}: {error} (the pool of {agents_path})"))
            .collect(),
    }
}

/// The agents file's resource pool, if it has one.
fn resource_pool(agents: &AgentsFile) -> Result<Option<ResourcePool>, ResourceError> {
    agents
        .resources
        .as_ref()
        .map(|pool| ResourcePool::new(pool.iter().map(|(kind, &amount)| (kind.clone(), amount))))
        .transpose()
}

/// `builder` with the agents file's pool, when it has one (checked when loaded).
fn with_pool(builder: EngineBuilder, agents: &AgentsFile) -> EngineBuilder {
    match resource_pool(agents) {
        Ok(Some(pool)) => builder.resource_pool(pool),
        _ => builder,
    }
}

/// The real time of [`SystemClock`], counting the sleeps that are not over, so that
/// [`RealClock::block_on`] can tell a run that waits for time from one that waits for
/// nothing that can ever come.
#[derive(Debug, Clone, Default)]
struct RealClock {
    /// Sleeps created and neither completed nor dropped.
    sleeping: Arc<AtomicUsize>,
}

impl Clock for RealClock {
    fn now(&self) -> DateTime<Utc> {
        SystemClock.now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep {
        self.counted(SystemClock.sleep_until(deadline))
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        self.counted(SystemClock.sleep(duration))
    }

    /// Work outside the clock (a journal append) counts as a pending sleep: it wakes the
    /// run when it is done.
    fn hold(&self) -> Hold {
        self.sleeping.fetch_add(1, Ordering::SeqCst);
        let counted = Sleeping(Arc::clone(&self.sleeping));
        Hold::on_release(move || drop(counted))
    }
}

/// Counts one sleep of a [`RealClock`] from its creation until it is dropped.
struct Sleeping(Arc<AtomicUsize>);

impl Drop for Sleeping {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Wakes the thread of [`RealClock::block_on`], and says it was woken.
struct Signal {
    woken: AtomicBool,
    thread: Thread,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

impl RealClock {
    /// `sleep`, counted while it is pending (counted from now, not from its first poll).
    fn counted(&self, sleep: Sleep) -> Sleep {
        self.sleeping.fetch_add(1, Ordering::SeqCst);
        let counted = Sleeping(Arc::clone(&self.sleeping));
        Box::pin(async move {
            sleep.await;
            drop(counted);
        })
    }

    /// Drives `future` on this thread until it completes (`Ready`) or stalls (`Pending`):
    /// it was not woken since it was last polled and no sleep of this clock is pending.
    /// Then nothing can ever wake it: the engine, the scripted agents and the approval
    /// driver wait only for each other (on this thread) or for this clock's timers, so a
    /// run in that state waits for an answer nobody will give.
    fn block_on<F: Future>(&self, future: F) -> Poll<F::Output> {
        let mut future = pin!(future);
        let signal = Arc::new(Signal {
            woken: AtomicBool::new(false),
            thread: thread::current(),
        });
        let waker = Waker::from(Arc::clone(&signal));
        let mut cx = TaskContext::from_waker(&waker);
        loop {
            signal.woken.store(false, Ordering::SeqCst);
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return Poll::Ready(output);
            }
            // A sleep stops counting only when it is polled or dropped, both on this
            // thread: with none counted, no timer thread can wake the future any more.
            while !signal.woken.load(Ordering::SeqCst) {
                if self.sleeping.load(Ordering::SeqCst) == 0 {
                    return Poll::Pending;
                }
                thread::park();
            }
        }
    }
}

/// The effects file of `--effects`: one JSON line per agent call.
#[derive(Debug)]
struct Effects {
    path: String,
    /// Opened for appending: each line is one `write` at the end of the file.
    file: Mutex<File>,
}

/// One line of the effects file, fields in the order SIMULATION.md lists them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Effect<'a> {
    run_id: &'a RunId,
    step_id: &'a StepId,
    item: Option<usize>,
    attempt: u32,
    agent_id: &'a AgentId,
    idempotency_key: &'a str,
}

impl Effects {
    /// Opens (or creates) the effects file for appending.
    fn open(path: &str) -> Result<Arc<Self>, Vec<String>> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|error| vec![format!("{path}: cannot open the effects file: {error}")])?;
        Ok(Arc::new(Self {
            path: path.to_owned(),
            file: Mutex::new(file),
        }))
    }

    /// Appends the line of a call of `agent` and syncs it to disk, so that a crash right
    /// after cannot lose it.
    fn record(&self, request: &TaskRequest, agent: &AgentId) -> std::io::Result<()> {
        let mut line = serde_json::to_string(&Effect {
            run_id: &request.run_id,
            step_id: &request.step_id,
            item: request.item,
            attempt: request.attempt,
            agent_id: agent,
            idempotency_key: &request.idempotency_key,
        })?;
        line.push('\n');
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.write_all(line.as_bytes())?;
        file.sync_data()
    }
}

/// An agent whose calls are recorded in the effects file before they are made.
struct Recorded {
    agent: Arc<dyn Agent>,
    effects: Arc<Effects>,
}

#[async_trait::async_trait]
impl Agent for Recorded {
    fn descriptor(&self) -> &AgentDescriptor {
        self.agent.descriptor()
    }

    /// Records the call, then makes it. A call that cannot be recorded is not made: it
    /// fails as `TEMPORARY` (the engine may retry it), so that the file lists every call.
    async fn execute(&self, request: TaskRequest) -> Result<Value, AgentError> {
        let agent = &self.agent.descriptor().id;
        if let Err(error) = self.effects.record(&request, agent) {
            let message = format!("{}: cannot record the call: {error}", self.effects.path);
            eprintln!("{message}");
            return Err(AgentError::temporary(message));
        }
        self.agent.execute(request).await
    }

    async fn health(&self) -> Health {
        self.agent.health().await
    }
}

/// Answers scripted approvals and prints progress, until the runs end.
struct Driver<'a> {
    engine: &'a Engine,
    clock: &'a dyn Clock,
    /// The runs driven; the driver ends when all have ended.
    runs: BTreeSet<RunId>,
    approvals: &'a BTreeMap<String, ScriptedApproval>,
    progress: &'a Progress,
}

impl<'a> Driver<'a> {
    /// A driver of `runs`, answering as `approvals` say, printing with `progress`.
    fn new<'r>(
        engine: &'a Engine,
        clock: &'a dyn Clock,
        approvals: &'a BTreeMap<String, ScriptedApproval>,
        progress: &'a Progress,
        runs: impl IntoIterator<Item = &'r RunId>,
    ) -> Self {
        Self {
            engine,
            clock,
            runs: runs.into_iter().cloned().collect(),
            approvals,
            progress,
        }
    }

    /// Reads the runs' events in order: prints each, and for a waiting step with a
    /// scripted answer, answers it `afterMs` after it started waiting. Several answers may
    /// be pending at once. Ends when every run has ended (`RunEnded`), dropping answers
    /// not yet given.
    async fn drive(self, mut events: EventStream) {
        let mut running = self.runs.clone();
        let mut answers = FuturesUnordered::new();
        while !running.is_empty() {
            // Biased: events first, so that what is printed and answered never depends
            // on which of two ready futures a random pick chose.
            select_biased! {
                event = events.next() => {
                    let Some(event) = event else { break };
                    if !running.contains(event.run_id()) {
                        continue;
                    }
                    self.progress.record(&event);
                    match event {
                        RunEvent::StepWaiting { run_id, step_id, at, .. } => {
                            if let Some(script) = self.approvals.get(step_id.as_str()) {
                                answers.push(self.answer(run_id, step_id, script, at));
                            }
                        }
                        RunEvent::RunEnded { run_id, .. } => {
                            running.remove(&run_id);
                        }
                        _ => {}
                    }
                }
                () = answers.select_next_some() => {}
            }
        }
    }

    /// Answers every waiting step that has a scripted answer, in any run, `afterMs` after
    /// it started waiting, until the engine's events end (the caller stops polling it
    /// sooner: `replay` does when its runs have ended).
    async fn answer_all(&self, mut events: EventStream) {
        let mut answers = FuturesUnordered::new();
        loop {
            // Biased, as in `drive`: what is answered never depends on a random pick.
            select_biased! {
                event = events.next() => match event {
                    Some(RunEvent::StepWaiting { run_id, step_id, at, .. }) => {
                        if let Some(script) = self.approvals.get(step_id.as_str()) {
                            answers.push(self.answer(run_id, step_id, script, at));
                        }
                    }
                    Some(_) => {}
                    None => break,
                },
                () = answers.select_next_some() => {}
            }
        }
        while answers.next().await.is_some() {}
    }

    /// Gives the scripted answer to `step` of `run`, `afterMs` after it started waiting.
    async fn answer(
        &self,
        run: RunId,
        step: StepId,
        script: &ScriptedApproval,
        waiting_since: DateTime<Utc>,
    ) {
        // On the virtual clock, events are read before the clock moves on (block_on
        // polls every woken future before it fires a timer), so this is `afterMs` from
        // now; on the real clock, from when the step started waiting.
        let deadline = i64::try_from(script.after_ms)
            .ok()
            .and_then(TimeDelta::try_milliseconds)
            .and_then(|after| waiting_since.checked_add_signed(after))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        self.clock.sleep_until(deadline).await;
        let comment = script.comment.as_deref();
        let answered = if script.approved {
            self.engine
                .approve(&run, step.as_str(), &script.by, comment)
        } else {
            self.engine.reject(&run, step.as_str(), &script.by, comment)
        };
        match answered {
            // The step timed out, or the run ended, before the answer came.
            Ok(()) | Err(EngineError::NoPendingApproval { .. }) => {}
            Err(error) => eprintln!(
                "{}  {step}: scripted answer refused: {error}",
                self.progress.time(self.clock.now())
            ),
        }
    }
}

/// Formats run events as progress lines on stderr, and remembers which steps wait for
/// an answer.
struct Progress {
    start: DateTime<Utc>,
    /// Whether times are virtual (said in the summary).
    virtual_time: bool,
    /// The width of the step column: the longest step id.
    width: usize,
    /// The `parallel` steps of each run shown: their completion names no single agent.
    parallel: BTreeMap<RunId, BTreeSet<StepId>>,
    /// Whether lines name their run (when there are several).
    name_runs: bool,
    /// Steps with a scripted answer.
    scripted: BTreeSet<String>,
    /// Steps waiting for an answer now.
    waiting: RefCell<BTreeSet<(RunId, StepId)>>,
}

impl Progress {
    /// Progress of `runs` (each with its plan), with times of day from `start`'s day on.
    fn new<'p>(
        start: DateTime<Utc>,
        virtual_time: bool,
        agents: &AgentsFile,
        runs: impl IntoIterator<Item = (&'p RunId, &'p ExecutionPlan)>,
    ) -> Self {
        let mut width = 0;
        let parallel: BTreeMap<RunId, BTreeSet<StepId>> = runs
            .into_iter()
            .map(|(run, plan)| {
                for step in plan.steps() {
                    width = width.max(step.id().as_str().len());
                }
                let parallel = plan
                    .steps()
                    .iter()
                    .filter(|step| matches!(step.kind(), StepKind::Parallel { .. }))
                    .map(|step| step.id().clone())
                    .collect();
                (run.clone(), parallel)
            })
            .collect();
        Self {
            start,
            virtual_time,
            width,
            name_runs: parallel.len() > 1,
            parallel,
            scripted: agents.approvals.keys().cloned().collect(),
            waiting: RefCell::new(BTreeSet::new()),
        }
    }

    /// The time of the day, with the date once the run is past its first day.
    fn time(&self, at: DateTime<Utc>) -> String {
        if at.date_naive() == self.start.date_naive() {
            at.format("%H:%M:%S%.3f").to_string()
        } else {
            at.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
        }
    }

    /// Prints the line of `event`, if it has one.
    fn record(&self, event: &RunEvent) {
        if let Some(line) = self.line(event) {
            eprintln!("{line}");
        }
    }

    fn line(&self, event: &RunEvent) -> Option<String> {
        let run = event.run_id();
        let (step, at, verb, detail) = match event {
            // The first and last lines are printed by the verb, which knows the seed
            // and the report.
            RunEvent::RunStarted { .. } | RunEvent::RunEnded { .. } => return None,
            RunEvent::StepStarted {
                step_id,
                item,
                iteration,
                attempt,
                agent_id,
                score,
                at,
                ..
            } => (
                step_id,
                at,
                "started",
                format!(
                    "{agent_id} ({}{}attempt {attempt}, score {:.2})",
                    item_text(*item),
                    iteration
                        .map(|n| format!("iteration {n}, "))
                        .unwrap_or_default(),
                    score.total
                ),
            ),
            RunEvent::StepRetrying {
                step_id,
                item,
                kind,
                message,
                delay_ms,
                at,
                ..
            } => (
                step_id,
                at,
                "retrying",
                format!(
                    "{}in {delay_ms} ms: {kind} {message}",
                    item.map(|item| format!("item {item} ")).unwrap_or_default()
                ),
            ),
            RunEvent::StepCompleted {
                step_id,
                agent_id,
                attempts,
                at,
                ..
            } => {
                let calls = match attempts {
                    0 => String::new(),
                    1 => "1 call".to_owned(),
                    n => format!("{n} calls"),
                };
                let parallel = self
                    .parallel
                    .get(run)
                    .is_some_and(|steps| steps.contains(step_id));
                let detail = match agent_id {
                    Some(agent) if !parallel => format!("{agent} ({calls})"),
                    _ if calls.is_empty() => String::new(),
                    _ => format!("({calls})"),
                };
                (step_id, at, "completed", detail)
            }
            RunEvent::StepFailed {
                step_id,
                kind,
                message,
                at,
                ..
            } => (step_id, at, "failed", format!("{kind}: {message}")),
            RunEvent::StepSkipped {
                step_id,
                reason,
                at,
                ..
            } => (step_id, at, "skipped", reason.clone()),
            RunEvent::StepCancelled { step_id, at, .. } => {
                self.waiting
                    .borrow_mut()
                    .remove(&(run.clone(), step_id.clone()));
                (step_id, at, "cancelled", String::new())
            }
            RunEvent::StepWaiting { step_id, at, .. } => {
                self.waiting
                    .borrow_mut()
                    .insert((run.clone(), step_id.clone()));
                let detail = if self.scripted.contains(step_id.as_str()) {
                    "for approval"
                } else {
                    "for approval (no scripted answer: waits for its timeout)"
                };
                (step_id, at, "waiting", detail.to_owned())
            }
            RunEvent::StepAnswered {
                step_id,
                approved,
                by,
                comment,
                at,
                ..
            } => {
                self.waiting
                    .borrow_mut()
                    .remove(&(run.clone(), step_id.clone()));
                let verb = if *approved { "approved" } else { "rejected" };
                let comment = comment
                    .as_deref()
                    .map(|comment| format!(": {comment}"))
                    .unwrap_or_default();
                (step_id, at, verb, format!("by {by}{comment}"))
            }
            // Events added to the engine later: shown as they serialize.
            other => {
                return Some(serde_json::to_string(other).unwrap_or_default());
            }
        };
        let run = if self.name_runs {
            format!("{run}  ")
        } else {
            String::new()
        };
        // `StepId`'s `Display` ignores widths: pad the text.
        let line = format!(
            "{}  {run}{:<width$}  {verb:<9} {detail}",
            self.time(*at),
            step.as_str(),
            width = self.width
        );
        Some(line.trim_end().to_owned())
    }

    /// The steps of `run` waiting for an answer, for the message of a stalled run.
    fn unanswered(&self, run: &RunId) -> String {
        let waiting = self.waiting.borrow();
        let steps: Vec<String> = waiting
            .iter()
            .filter(|(waiting_run, _)| waiting_run == run)
            .map(|(_, step)| format!("step `{step}`"))
            .collect();
        if steps.is_empty() {
            return "a step".to_owned();
        }
        steps.join(", ")
    }

    /// The last progress line of a run: how it ended, how long it took, and its error.
    fn summary(&self, report: &RunReport) -> String {
        let elapsed = (report.ended_at - report.started_at).num_milliseconds();
        let error = report
            .error
            .as_ref()
            .map(|error| {
                let step = error
                    .step_id
                    .as_ref()
                    .map(|step| format!("{step}: "))
                    .unwrap_or_default();
                format!(": {step}{}: {}", error.kind, error.message)
            })
            .unwrap_or_default();
        format!(
            "{}  run {} {} in {}.{:02} s{}{error}",
            self.time(report.ended_at),
            report.run_id,
            report.status,
            elapsed / 1000,
            elapsed % 1000 / 10,
            if self.virtual_time { " (virtual)" } else { "" },
        )
    }
}

/// `item N, ` for a call of a `parallel` step's item; empty otherwise.
fn item_text(item: Option<usize>) -> String {
    item.map(|item| format!("item {item}, "))
        .unwrap_or_default()
}
