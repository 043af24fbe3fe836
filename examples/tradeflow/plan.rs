//! `plan`: prints a workflow's execution DAG.

use tradeflow::plan::DrawFormat;

use crate::cli::usage;
use crate::{Problems, files};

/// The line of `plan` in the usage.
pub(crate) const USAGE: &str = "tradeflow plan WORKFLOW.json [--format dot|mermaid]";

/// The usage error of any other shape of arguments.
pub(crate) const TAKES: &str = "plan takes WORKFLOW.json [--format dot|mermaid]";

/// The arguments of `plan` as clap reads them (its help is in [`crate::cli::Verb`]).
#[derive(Debug, clap::Args)]
#[command(override_usage = USAGE)]
pub(crate) struct Args {
    /// The workflow file.
    // Any name: `plan --x` reads the file `--x`, as it always has.
    #[arg(value_name = "WORKFLOW.json", allow_hyphen_values = true)]
    workflow: Option<String>,
    /// Too many.
    #[arg(hide = true)]
    unexpected: Vec<String>,
    /// `dot` (Graphviz, the default) or `mermaid`.
    #[arg(long, value_name = "dot|mermaid", allow_hyphen_values = true)]
    format: Option<String>,
}

/// `plan`: prints the drawing and returns 0.
pub(crate) fn plan(args: Args) -> Result<u8, Problems> {
    let (Some(path), []) = (args.workflow, args.unexpected.as_slice()) else {
        return Err(usage(TAKES));
    };
    let format = match &args.format {
        None => DrawFormat::Dot,
        Some(format) => format.parse().map_err(|problem: String| usage(&problem))?,
    };
    print!("{}", files::load(&path)?.draw(format));
    Ok(0)
}
