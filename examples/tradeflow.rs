//! The `tradeflow` command: validate and draw workflow files.
//!
//! ```text
//! cargo run --example tradeflow -- validate WORKFLOW.json
//! cargo run --example tradeflow -- plan WORKFLOW.json [--format dot|mermaid]
//! ```
//!
//! Exit codes: 0 success; 2 invalid files or arguments, every problem on stderr, one a line.

use std::process::ExitCode;

use tradeflow::plan::{DrawFormat, ExecutionPlan};

const USAGE: &str = "usage:
  tradeflow validate WORKFLOW.json
  tradeflow plan WORKFLOW.json [--format dot|mermaid]";

/// Exit code for invalid files and usage errors.
const INVALID: u8 = 2;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(lines) => {
            for line in lines {
                eprintln!("{line}");
            }
            ExitCode::from(INVALID)
        }
    }
}

/// Runs a verb; the error is what to print on stderr, one entry a line.
fn run(args: &[String]) -> Result<(), Vec<String>> {
    let usage = |problem: &str| vec![format!("tradeflow: {problem}"), USAGE.to_owned()];
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
            Ok(())
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
            Ok(())
        }
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(usage(&format!("unknown verb `{other}`"))),
    }
}

/// Reads and compiles a workflow file; every problem becomes one line `PATH: problem`.
fn load(path: &str) -> Result<ExecutionPlan, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| vec![format!("{path}: cannot read: {error}")])?;
    ExecutionPlan::from_json(&text).map_err(|errors| {
        errors
            .iter()
            .map(|error| format!("{path}: {error}"))
            .collect()
    })
}
