//! The command line: the verbs and their arguments on clap, clap's errors in the
//! command's own words, and the checks of argument values shared by several verbs.
//!
//! Clap splits the arguments and answers `--help`; the checks that have a message of
//! their own (a required option, the one positional file, a value that does not parse)
//! run after it, in the order the messages have always come in. So each verb's options
//! are strings for clap, and typed by the verb's own `check`.

use chrono::{DateTime, Utc};
use clap::error::{ContextKind, ErrorKind};
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use crate::{
    Problems, help, plan, replay, resume, run, runs, schedule, show, simulate, stats, validate,
};

/// `tradeflow VERB …`.
#[derive(Debug, Parser)]
#[command(name = "tradeflow", disable_help_subcommand = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) verb: Verb,
}

/// The verbs. Each one's doc is its `--help`: the first line, then the rest.
#[derive(Debug, Subcommand)]
pub(crate) enum Verb {
    /// Checks a workflow file; prints a one-line summary.
    ///
    /// Every problem goes to stderr, one a line (PATH: problem), and the exit code is 2.
    /// With --agents, every step that calls an agent (task, decision, parallel, loop) must
    /// have one in AGENTS.json of its agentCriteria type with every capability it
    /// requires; each step that has none is a problem.
    Validate(validate::Args),
    /// Prints the workflow's execution DAG (Graphviz dot by default).
    ///
    /// One node per step; solid edges for dependencies and bindings, styled ones for
    /// listed order alone.
    Plan(plan::Args),
    /// Runs the workflow against scripted agents on a virtual clock.
    ///
    /// The agents of AGENTS.json answer as scripted, on a virtual clock starting at
    /// --start: delays, back-offs and approval waits take no time, and the same files and
    /// seed print the same bytes. Prints the run report (pretty JSON) on stdout, progress
    /// on stderr. With --runs N > 1, N runs on one engine and one clock (run i starts when
    /// run i - C ends, C = --concurrency; run i is seeded --seed + i - 1), printed as
    /// {"runs": [report, ...], "decisions": {stepId: {contextKey: {optionId: {"chosen",
    /// "meanReward"}}}}, "scaling": [{"at", "agentType", "from", "to", "reason"}]}. Exit
    /// code 0 when every run COMPLETED, 1 otherwise or when one is stuck.
    Simulate(simulate::Args),
    /// Runs the workflow on the real clock, journaled to a SQLite store.
    ///
    /// Scripted delays and approval afterMs are real milliseconds. Every step is journaled
    /// to PATH (created if missing) before it counts as done, with the workflow's
    /// definition; the run id is new: run-<UTC start time>-<process id>. After a crash or
    /// a kill -9, `resume` finishes the run. Prints the run report (pretty JSON) on
    /// stdout, progress on stderr.
    Run(run::Args),
    /// Finishes every unfinished run of a store.
    ///
    /// Each run continues from its journal, with the definition kept in the store: steps
    /// journaled as done are not run again; calls cut off are made again with the same
    /// idempotency key; approvals that waited wait again and are answered as AGENTS.json
    /// says. Prints one compact JSON report per line on stdout, in the order the runs end.
    Resume(resume::Args),
    /// Lists the runs of a store, newest first.
    ///
    /// One line per run under a header: its id, workflow, status, start (RFC 3339, UTC)
    /// and duration (- until it ends). --status, --workflow and --limit keep the runs
    /// with that status, of that workflow, and the newest N. Runs whose journal cannot be
    /// read are named on stderr. Exit code 0.
    Runs(runs::Args),
    /// Shows one run of a store, step by step.
    ///
    /// Every step of the run's workflow, in the definition's order: status, agent,
    /// calls, when it began and ended, its error, recoveries, decision, adaptations and
    /// calls in flight. --format json prints the same as one JSON object; --format
    /// mermaid prints a Mermaid gantt chart of the steps on the run's clock. Exit code 0;
    /// 2 for a run the store does not have.
    Show(show::Args),
    /// Lists the cron firings of the workflow's SCHEDULED triggers in a range.
    ///
    /// One RFC 3339 UTC time a line, in time order, for [--from, --to). Only the cron
    /// patterns are read, each in its trigger's timezone: trigger conditions are not
    /// evaluated.
    Schedule(schedule::Args),
    /// Plays a timeline through the workflow's triggers on a virtual clock.
    ///
    /// At each instant of TIMELINE.json, context changes first, then the triggers; every
    /// trigger that fires starts a run against the scripted agents of AGENTS.json. Prints
    /// {"runs": [{"trigger", "firedAt", "report"}]} (pretty JSON) on stdout, one line per
    /// trigger considered on stderr; the same files and seed print the same bytes.
    Replay(replay::Args),
    /// Verifies or lists the audit log kept in a store.
    ///
    /// `audit verify --store sqlite:PATH` recomputes the hash chain: exit 0 when intact
    /// (prints the entry count and the head hash), 1 naming the first entry that does
    /// not match, 2 when PATH is not a tradeflow store. `audit list --store sqlite:PATH`
    /// prints every entry, one JSON object a line.
    #[cfg(feature = "sqlite")]
    Audit(crate::audit::Args),
    /// Prints the performance report of the runs a store keeps.
    ///
    /// Folds every run of the store (of --workflow ID alone, with it) into one report,
    /// printed as pretty JSON on stdout: per workflow its runs that ended, success rate
    /// and mean/p50/p95/p99 duration; per agent the calls journaled. Exit code 0; 2 when
    /// PATH is missing or not a tradeflow store.
    Stats(stats::Args),
    /// Prints the usage, every verb, the options and the exit codes.
    #[command(disable_help_flag = true)]
    Help {
        /// Ignored.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        rest: Vec<String>,
    },
}

/// What the arguments ask for: a verb, or help text to print (`--help`).
#[derive(Debug)]
pub(crate) enum Asked {
    Verb(Box<Verb>),
    Help(String),
}

/// Parses the arguments (without the program's name).
///
/// # Errors
/// The problem, then the usage text, as the lines to print.
pub(crate) fn parse(args: &[String]) -> Result<Asked, Problems> {
    let command = Cli::command().override_help(help::text());
    let program = std::iter::once("tradeflow");
    let parsed = command
        .try_get_matches_from(program.chain(args.iter().map(String::as_str)))
        .and_then(|matches| Cli::from_arg_matches(&matches));
    match parsed {
        Ok(cli) => Ok(Asked::Verb(Box::new(cli.verb))),
        Err(error) if error.kind() == ErrorKind::DisplayHelp => {
            Ok(Asked::Help(error.render().to_string()))
        }
        Err(error) => Err(usage(&problem(args, &error))),
    }
}

/// Clap's `error` for `args`, in the words of the command's usage errors.
fn problem(args: &[String], error: &clap::Error) -> String {
    let context = |kind| error.get(kind).map(ToString::to_string).unwrap_or_default();
    // `--agents <AGENTS.json>`: the option's name is the first word.
    let option = || {
        let arg = context(ContextKind::InvalidArg);
        arg.split(' ').next().unwrap_or_default().to_owned()
    };
    let verb = args
        .first()
        .filter(|verb| Cli::command().find_subcommand(verb).is_some());
    match (verb.map(String::as_str), error.kind()) {
        // Not a verb: whatever clap says about it, the first argument is the problem.
        (None, _) => match args.first() {
            Some(first) => format!("unknown verb `{first}`"),
            None => "missing verb".to_owned(),
        },
        // These two have one message for any wrong shape, but for validate's option.
        (Some("validate"), ErrorKind::InvalidValue) => format!("{} needs a value", option()),
        (Some("validate"), ErrorKind::ArgumentConflict) => format!("{} is given twice", option()),
        (Some("validate"), _) => validate::TAKES.to_owned(),
        (Some("plan"), _) => plan::TAKES.to_owned(),
        (
            Some("audit"),
            ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand,
        ) => "audit needs verify or list".to_owned(),
        (Some(verb), ErrorKind::UnknownArgument) => {
            format!(
                "{verb} has no option `{}`",
                context(ContextKind::InvalidArg)
            )
        }
        (Some(_), ErrorKind::InvalidValue) => format!("{} needs a value", option()),
        (Some(_), ErrorKind::ArgumentConflict) => format!("{} is given twice", option()),
        // Not produced by these verbs; said as clap says it.
        (Some(_), _) => {
            let text = error.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            first.strip_prefix("error: ").unwrap_or(first).to_owned()
        }
    }
}

/// A usage error: the problem, then the usage text.
pub(crate) fn usage(problem: &str) -> Problems {
    vec![format!("tradeflow: {problem}"), help::usage()]
}

/// The workflow file of a verb that takes one, and the arguments after it that are not
/// options: read as clap reads them, checked by [`WorkflowFile::one`] once every option
/// has been read.
#[derive(Debug, clap::Args)]
pub(crate) struct WorkflowFile {
    /// The workflow file.
    #[arg(value_name = "WORKFLOW.json")]
    workflow: Option<String>,
    /// Too many: said as `unexpected argument`.
    #[arg(hide = true)]
    unexpected: Vec<String>,
}

impl WorkflowFile {
    /// The workflow file of `verb`, if it is the only one.
    pub(crate) fn one(self, verb: &str) -> Result<String, Problems> {
        match (self.workflow, self.unexpected.first()) {
            (None, _) => Err(usage(&format!("{verb} needs a WORKFLOW.json"))),
            (Some(_), Some(extra)) => Err(unexpected(extra)),
            (Some(path), None) => Ok(path),
        }
    }
}

/// The files of a run (`simulate`, `run`): the workflow, the agents and the input, as
/// clap reads them; [`RunFiles::check`] checks them.
#[derive(Debug, clap::Args)]
pub(crate) struct RunFiles {
    #[command(flatten)]
    workflow: WorkflowFile,
    /// The scripted agents, approvals and resource pool (required).
    #[arg(long, value_name = "AGENTS.json", allow_hyphen_values = true)]
    agents: Option<String>,
    /// The run's input (default: {}).
    #[arg(long, value_name = "INPUT.json", allow_hyphen_values = true)]
    input: Option<String>,
    /// The user the run is started for (journaled; checked with --policy).
    #[arg(long, value_name = "NAME", allow_hyphen_values = true)]
    user: Option<String>,
    /// Who may do what (roles and users, JSON): the run and the scripted approvals are
    /// checked; a refused run exits 3.
    #[arg(long, value_name = "POLICY.json", allow_hyphen_values = true)]
    policy: Option<String>,
}

/// The files of a run, checked: the paths of the workflow, agents and input files.
#[derive(Debug)]
pub(crate) struct RunPaths {
    pub(crate) workflow: String,
    pub(crate) agents: String,
    pub(crate) input: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) policy: Option<String>,
}

impl RunFiles {
    /// The files of `verb`'s run: one workflow file, and the required `--agents`.
    pub(crate) fn check(self, verb: &str) -> Result<RunPaths, Problems> {
        Ok(RunPaths {
            workflow: self.workflow.one(verb)?,
            agents: required(self.agents, verb, "--agents AGENTS.json")?,
            input: self.input,
            user: self.user,
            policy: self.policy,
        })
    }
}

/// A positional argument where there is none.
pub(crate) fn unexpected(extra: &str) -> Problems {
    usage(&format!("unexpected argument `{extra}`"))
}

/// The value of a required option, or the usage error `{verb} needs {option} {what}`.
pub(crate) fn required(value: Option<String>, verb: &str, needs: &str) -> Result<String, Problems> {
    value.ok_or_else(|| usage(&format!("{verb} needs {needs}")))
}

/// The value of `--seed`, 0 without one.
pub(crate) fn seed(value: Option<&str>) -> Result<u64, Problems> {
    let Some(seed) = value else { return Ok(0) };
    seed.parse().map_err(|_| {
        usage(&format!(
            "--seed `{seed}`: expected a whole number from 0 to {}",
            u64::MAX
        ))
    })
}

/// The RFC 3339 time `value` of option `option`, in UTC.
pub(crate) fn time(option: &str, value: &str) -> Result<DateTime<Utc>, Problems> {
    DateTime::parse_from_rfc3339(value)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|error| {
            usage(&format!(
                "{option} `{value}`: {error} (expected RFC 3339, like 2026-01-05T09:00:00Z)"
            ))
        })
}

/// The store of a verb that takes no file (`resume`, `runs`), as clap reads it;
/// [`StoreOnly::check`] checks it.
#[derive(Debug, clap::Args)]
pub(crate) struct StoreOnly {
    /// None: the verb takes no file (said as `unexpected argument`).
    #[arg(hide = true)]
    unexpected: Vec<String>,
    /// The store of earlier runs, sqlite:PATH (required).
    #[arg(long, value_name = "sqlite:PATH", allow_hyphen_values = true)]
    store: Option<String>,
}

impl StoreOnly {
    /// The store's file (the `PATH` of `sqlite:PATH`) of `verb`, with no other argument.
    pub(crate) fn check(self, verb: &str) -> Result<String, Problems> {
        if let Some(extra) = self.unexpected.first() {
            return Err(unexpected(extra));
        }
        store(verb, self.store.as_deref())
    }
}

/// The path of a `--store sqlite:PATH` value of `verb`; anything else is a usage error.
pub(crate) fn store(verb: &str, value: Option<&str>) -> Result<String, Problems> {
    let store = value.ok_or_else(|| usage(&format!("{verb} needs --store sqlite:PATH")))?;
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
