//! `validate`: checks a workflow file and prints a one-line summary; with `--agents`,
//! also checks that every step that calls an agent has one in the agents file.

use tradeflow::definition::Quoted;

use crate::cli::usage;
use crate::{Problems, files};

/// The line of `validate` in the usage of every verb (kept as it was before `--agents`).
pub(crate) const USAGE: &str = "tradeflow validate WORKFLOW.json";

/// The usage line of `validate --help`.
const HELP_USAGE: &str = "tradeflow validate WORKFLOW.json [--agents AGENTS.json]";

/// The usage error of any other shape of arguments.
pub(crate) const TAKES: &str = "validate takes one WORKFLOW.json";

/// The arguments of `validate` as clap reads them (its help is in [`crate::cli::Verb`]).
#[derive(Debug, clap::Args)]
#[command(override_usage = HELP_USAGE)]
pub(crate) struct Args {
    /// The workflow file.
    // Any name: `validate --x` reads the file `--x`, as it always has.
    #[arg(value_name = "WORKFLOW.json", allow_hyphen_values = true)]
    workflow: Option<String>,
    /// The agents file to check the steps against (each step that calls an agent needs one).
    #[arg(long, value_name = "AGENTS.json", allow_hyphen_values = true)]
    agents: Option<String>,
    /// Too many.
    #[arg(hide = true, allow_hyphen_values = true)]
    unexpected: Vec<String>,
}

/// `validate`: prints the summary of a valid workflow file (whose steps all have an
/// agent in `--agents`, when given) and returns 0.
pub(crate) fn validate(args: Args) -> Result<u8, Problems> {
    let (Some(path), []) = (args.workflow, args.unexpected.as_slice()) else {
        return Err(usage(TAKES));
    };
    let plan = match &args.agents {
        None => files::load(&path)?,
        Some(agents) => files::load_with_agents(&path, agents)?,
    };
    let definition = plan.definition();
    // The id, version and name are free text: shown on one line, like problems.
    let version = definition
        .version
        .as_deref()
        .map(|v| format!(" v{}", Quoted(v)))
        .unwrap_or_default();
    let agents = args
        .agents
        .map(|agents| format!("; every step has an agent in {agents}"))
        .unwrap_or_default();
    println!(
        "{path}: valid: {}{version} ({}): {} steps, {} edges, {} triggers{agents}",
        Quoted(&definition.id),
        Quoted(definition.name()),
        plan.steps().len(),
        plan.graph().edge_count(),
        plan.triggers().len(),
    );
    Ok(0)
}
