//! `validate`: checks a workflow file and prints a one-line summary.

use tradeflow::definition::Quoted;

use crate::cli::usage;
use crate::{Problems, files};

/// The line of `validate` in the usage.
pub(crate) const USAGE: &str = "tradeflow validate WORKFLOW.json";

/// The usage error of any other shape of arguments.
pub(crate) const TAKES: &str = "validate takes one WORKFLOW.json";

/// The arguments of `validate` as clap reads them (its help is in [`crate::cli::Verb`]).
#[derive(Debug, clap::Args)]
#[command(override_usage = USAGE)]
pub(crate) struct Args {
    /// The workflow file.
    // Any name: `validate --x` reads the file `--x`, as it always has.
    #[arg(value_name = "WORKFLOW.json", allow_hyphen_values = true)]
    workflow: Option<String>,
    /// Too many.
    #[arg(hide = true, allow_hyphen_values = true)]
    unexpected: Vec<String>,
}

/// `validate`: prints the summary of a valid workflow file and returns 0.
pub(crate) fn validate(args: Args) -> Result<u8, Problems> {
    let (Some(path), []) = (args.workflow, args.unexpected.as_slice()) else {
        return Err(usage(TAKES));
    };
    let plan = files::load(&path)?;
    let definition = plan.definition();
    // The id, version and name are free text: shown on one line, like problems.
    let version = definition
        .version
        .as_deref()
        .map(|v| format!(" v{}", Quoted(v)))
        .unwrap_or_default();
    println!(
        "{path}: valid: {}{version} ({}): {} steps, {} edges, {} triggers",
        Quoted(&definition.id),
        Quoted(definition.name()),
        plan.steps().len(),
        plan.graph().edge_count(),
        plan.triggers().len(),
    );
    Ok(0)
}
