//! The `tradeflow` command: validate, draw and simulate workflow files.
//!
//! ```text
//! cargo run --example tradeflow -- validate WORKFLOW.json
//! cargo run --example tradeflow -- plan WORKFLOW.json [--format dot|mermaid]
//! cargo run --example tradeflow -- simulate WORKFLOW.json --agents AGENTS.json
//!     [--input INPUT.json] [--seed N] [--start RFC3339]
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
//! Exit codes: 0 success (`simulate`: the run `COMPLETED`); 1 the simulated run ended
//! otherwise (or stalled: a step waits for an answer nobody will give); 2 invalid files
//! or arguments, every problem on stderr, one a line (`PATH: problem`).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use futures::stream::FuturesUnordered;
use futures::{StreamExt, select_biased};
use serde_json::Value;
use tradeflow::agent::RunId;
use tradeflow::clock::{Clock, VirtualClock};
use tradeflow::definition::{DefinitionError, Location, StepId};
use tradeflow::engine::{
    Engine, EngineError, EventStream, RunEvent, RunOptions, RunReport, RunStatus,
};
use tradeflow::plan::{DrawFormat, ExecutionPlan, StepKind};
use tradeflow::sim::{AgentsFile, ScriptedApproval, scripted_agents};

const USAGE: &str = "usage:
  tradeflow validate WORKFLOW.json
  tradeflow plan WORKFLOW.json [--format dot|mermaid]
  tradeflow simulate WORKFLOW.json --agents AGENTS.json [--input INPUT.json] [--seed N] [--start RFC3339]";

/// Exit code of a simulated run that did not complete.
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
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(0)
        }
        other => Err(usage(&format!("unknown verb `{other}`"))),
    }
}

/// A usage error: the problem, then the usage text.
fn usage(problem: &str) -> Vec<String> {
    vec![format!("tradeflow: {problem}"), USAGE.to_owned()]
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
        let mut workflow = None;
        let mut flags: BTreeMap<&str, &str> = BTreeMap::new();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                flag @ ("--agents" | "--input" | "--seed" | "--start") => {
                    let value = args
                        .next()
                        .ok_or_else(|| usage(&format!("{flag} needs a value")))?;
                    if flags.insert(flag, value).is_some() {
                        return Err(usage(&format!("{flag} is given twice")));
                    }
                }
                flag if flag.starts_with("--") => {
                    return Err(usage(&format!("simulate has no option `{flag}`")));
                }
                path if workflow.is_none() => workflow = Some(path.to_owned()),
                extra => return Err(usage(&format!("unexpected argument `{extra}`"))),
            }
        }
        let workflow = workflow.ok_or_else(|| usage("simulate needs a WORKFLOW.json"))?;
        let agents = flags
            .get("--agents")
            .ok_or_else(|| usage("simulate needs --agents AGENTS.json"))?;
        let seed = match flags.get("--seed") {
            None => 0,
            Some(seed) => seed.parse().map_err(|_| {
                usage(&format!(
                    "--seed `{seed}`: expected a whole number from 0 to {}",
                    u64::MAX
                ))
            })?,
        };
        let start = match flags.get("--start") {
            None => Self::default_start(),
            Some(start) => DateTime::parse_from_rfc3339(start)
                .map_err(|error| {
                    usage(&format!(
                        "--start `{start}`: {error} (expected RFC 3339, like 2026-01-05T09:00:00Z)"
                    ))
                })?
                .with_timezone(&Utc),
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

/// `simulate`: loads and checks every file (all problems at once), runs the workflow on
/// the virtual clock, prints the report, and returns 0 if the run completed, else 1.
fn simulate(args: &SimulateArgs) -> Result<u8, Vec<String>> {
    let mut problems = Vec::new();
    let plan = load(&args.workflow).map_err(|p| problems.extend(p)).ok();
    let agents = load_agents(&args.agents)
        .map_err(|p| problems.extend(p))
        .ok();
    let input = match &args.input {
        None => Some(Value::Object(serde_json::Map::new())),
        Some(path) => load_input(path).map_err(|p| problems.extend(p)).ok(),
    };
    if let (Some(plan), Some(agents)) = (&plan, &agents) {
        problems.extend(check_pair(plan, agents, args));
    }
    let (Some(plan), Some(agents), Some(input), true) = (plan, agents, input, problems.is_empty())
    else {
        return Err(problems);
    };

    let clock = VirtualClock::starting_at(args.start);
    let engine = Engine::builder()
        .clock(clock.clone())
        .seed(args.seed)
        .build();
    for (index, agent) in scripted_agents(&agents, Arc::new(clock.clone()))
        .into_iter()
        .enumerate()
    {
        engine
            .register_agent(agent)
            .map_err(|error| vec![format!("{}: agents[{index}]: {error}", args.agents)])?;
    }
    let progress = Progress::new(&plan, &agents, args.start);
    let workflow = engine.add_plan(plan);
    // Subscribed before the run starts, so that no event is missed.
    let events = engine.subscribe();
    let run = engine
        .start(&workflow.id, RunOptions::new(input).seed(args.seed))
        .map_err(|error| vec![format!("{}: {error}", args.workflow)])?;
    let run_id = run.id().clone();
    eprintln!(
        "{}  run {run_id} of {} started (seed {}, virtual clock)",
        progress.time(args.start),
        workflow.id,
        args.seed,
    );
    let driver = Driver {
        engine: &engine,
        clock: &clock,
        run_id: &run_id,
        approvals: &agents.approvals,
        progress: &progress,
    };
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
                progress.unanswered(),
            );
            return Ok(NOT_COMPLETED);
        }
    };
    eprintln!("{}", progress.summary(&report));
    println!("{}", report.to_json_pretty());
    Ok(if report.status == RunStatus::Completed {
        0
    } else {
        NOT_COMPLETED
    })
}

/// Checks the workflow and the agents file against each other: every scripted approval
/// answers a `human_approval` step, and every step's resource requirements fit the pool
/// (a resource the pool does not name is not limited).
fn check_pair(plan: &ExecutionPlan, agents: &AgentsFile, args: &SimulateArgs) -> Vec<String> {
    let mut problems = Vec::new();
    for step in agents.approvals.keys() {
        let found = plan.index_of(step).and_then(|index| plan.step(index));
        let why = match found {
            Some(found) if matches!(found.kind(), StepKind::HumanApproval { .. }) => continue,
            Some(found) => format!(" (`{step}` is a {} step)", found.step_type().as_str()),
            None => String::new(),
        };
        problems.push(format!(
            "{}: approvals.{step}: no human_approval step `{step}` in the workflow{why}",
            args.agents
        ));
    }
    let Some(pool) = &agents.resources else {
        return problems;
    };
    for step in plan.steps() {
        let Some(needs) = step.resources() else {
            continue;
        };
        for (name, need) in [
            ("cpu", needs.cpu),
            ("memory", needs.memory),
            ("network", needs.network),
        ] {
            if let Some(&have) = pool.get(name).filter(|&&have| need > have) {
                let at = Location::step(step.index(), Some(step.id()))
                    .field("resourceRequirements")
                    .field(name);
                problems.push(format!(
                    "{}: {at}: needs {need} but the pool of {} has {have}: the step can never run",
                    args.workflow, args.agents
                ));
            }
        }
    }
    problems
}

/// Answers scripted approvals and prints progress, until the run ends.
struct Driver<'a> {
    engine: &'a Engine,
    clock: &'a VirtualClock,
    run_id: &'a RunId,
    approvals: &'a BTreeMap<String, ScriptedApproval>,
    progress: &'a Progress,
}

impl Driver<'_> {
    /// Reads the run's events in order: prints each, and for a waiting step with a
    /// scripted answer, answers it `afterMs` later. Several answers may be pending at
    /// once. Ends with the run (`RunEnded`), dropping answers not yet given.
    async fn drive(self, mut events: EventStream) {
        let mut answers = FuturesUnordered::new();
        loop {
            // Biased: events first, so that what is printed and answered never depends
            // on which of two ready futures a random pick chose.
            select_biased! {
                event = events.next() => {
                    let Some(event) = event else { break };
                    if event.run_id() != self.run_id {
                        continue;
                    }
                    self.progress.record(&event);
                    match event {
                        RunEvent::StepWaiting { step_id, at, .. } => {
                            if let Some(script) = self.approvals.get(step_id.as_str()) {
                                answers.push(self.answer(step_id, script, at));
                            }
                        }
                        RunEvent::RunEnded { .. } => break,
                        _ => {}
                    }
                }
                () = answers.select_next_some() => {}
            }
        }
    }

    /// Gives the scripted answer to `step`, `afterMs` after it started waiting.
    async fn answer(&self, step: StepId, script: &ScriptedApproval, waiting_since: DateTime<Utc>) {
        // Events are read before the clock moves on (block_on polls every woken future
        // before it fires a timer), so "now" is when the step started waiting.
        debug_assert_eq!(self.clock.now(), waiting_since);
        self.clock
            .sleep(Duration::from_millis(script.after_ms))
            .await;
        let comment = script.comment.as_deref();
        let answered = if script.approved {
            self.engine
                .approve(self.run_id, step.as_str(), &script.by, comment)
        } else {
            self.engine
                .reject(self.run_id, step.as_str(), &script.by, comment)
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
    /// The width of the step column: the longest step id.
    width: usize,
    /// `parallel` steps: their completion names no single agent.
    parallel: BTreeSet<StepId>,
    /// Steps with a scripted answer.
    scripted: BTreeSet<String>,
    /// Steps waiting for an answer now.
    waiting: RefCell<BTreeSet<StepId>>,
}

impl Progress {
    fn new(plan: &ExecutionPlan, agents: &AgentsFile, start: DateTime<Utc>) -> Self {
        Self {
            start,
            width: plan
                .steps()
                .iter()
                .map(|step| step.id().as_str().len())
                .max()
                .unwrap_or(0),
            parallel: plan
                .steps()
                .iter()
                .filter(|step| matches!(step.kind(), StepKind::Parallel { .. }))
                .map(|step| step.id().clone())
                .collect(),
            scripted: agents.approvals.keys().cloned().collect(),
            waiting: RefCell::new(BTreeSet::new()),
        }
    }

    /// The virtual time of the day, with the date once the run is past its first day.
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
        let (step, at, verb, detail) = match event {
            // The first and last lines are printed by `simulate`, which knows the seed
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
                let detail = match agent_id {
                    Some(agent) if !self.parallel.contains(step_id) => {
                        format!("{agent} ({calls})")
                    }
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
                self.waiting.borrow_mut().remove(step_id);
                (step_id, at, "cancelled", String::new())
            }
            RunEvent::StepWaiting { step_id, at, .. } => {
                self.waiting.borrow_mut().insert(step_id.clone());
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
                self.waiting.borrow_mut().remove(step_id);
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
        // `StepId`'s `Display` ignores widths: pad the text.
        let line = format!(
            "{}  {:<width$}  {verb:<9} {detail}",
            self.time(*at),
            step.as_str(),
            width = self.width
        );
        Some(line.trim_end().to_owned())
    }

    /// The steps waiting for an answer, for the message of a stalled run.
    fn unanswered(&self) -> String {
        let waiting = self.waiting.borrow();
        if waiting.is_empty() {
            return "a step".to_owned();
        }
        let steps: Vec<String> = waiting
            .iter()
            .map(|step| format!("step `{step}`"))
            .collect();
        steps.join(", ")
    }

    /// The last progress line: how the run ended, its virtual duration, and its error.
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
            "{}  run {} {} in {}.{:02} s (virtual){error}",
            self.time(report.ended_at),
            report.run_id,
            report.status,
            elapsed / 1000,
            elapsed % 1000 / 10,
        )
    }
}

/// `item N, ` for a call of a `parallel` step's item; empty otherwise.
fn item_text(item: Option<usize>) -> String {
    item.map(|item| format!("item {item}, "))
        .unwrap_or_default()
}
