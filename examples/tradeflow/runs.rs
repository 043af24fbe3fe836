//! `runs`: lists the runs of a store, newest first.

use std::fmt::Write as _;

use chrono::SecondsFormat;
use tradeflow::engine::RunStatus;
use tradeflow::store::{Listing, RunFilter, RunSummary, list_runs};

use crate::{Problems, cli, files, store};

/// The line of `runs` in the usage.
pub(crate) const USAGE: &str =
    "tradeflow runs --store sqlite:PATH [--status STATUS] [--workflow ID] [--limit N]";

/// The arguments of `runs` as clap reads them (its help is in [`crate::cli::Verb`]).
#[derive(Debug, clap::Args)]
#[command(override_usage = USAGE)]
pub(crate) struct Args {
    #[command(flatten)]
    store: cli::StoreOnly,
    /// Only the runs with this status (COMPLETED, FAILED, RUNNING, …).
    #[arg(long, value_name = "STATUS", allow_hyphen_values = true)]
    status: Option<String>,
    /// Only the runs of this workflow.
    #[arg(long, value_name = "ID", allow_hyphen_values = true)]
    workflow: Option<String>,
    /// At most N runs, the newest.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    limit: Option<String>,
}

/// The arguments of `runs`, checked.
#[derive(Debug)]
struct Runs {
    /// The store's file (the `PATH` of `sqlite:PATH`).
    store: String,
    filter: RunFilter,
}

impl Args {
    fn check(self) -> Result<Runs, Problems> {
        let store = self.store.check("runs")?;
        let mut filter = RunFilter::new();
        if let Some(status) = &self.status {
            filter = filter.status(run_status(status)?);
        }
        if let Some(workflow) = self.workflow {
            filter = filter.workflow(workflow);
        }
        if let Some(limit) = &self.limit {
            let limit = limit.parse().map_err(|_| {
                cli::usage(&format!(
                    "--limit `{limit}`: expected a whole number from 0 to {}",
                    usize::MAX
                ))
            })?;
            filter = filter.limit(limit);
        }
        Ok(Runs { store, filter })
    }
}

/// `runs`: prints the runs the filter keeps, newest first, one a line under a header;
/// names on stderr the runs whose journal cannot be read. Returns 0.
pub(crate) fn runs(args: Args) -> Result<u8, Problems> {
    let args = args.check()?;
    let store = store::inspect(&args.store, "runs")?;
    let listing =
        list_runs(&store, &args.filter).map_err(|error| store::problem(&args.store, &error))?;
    print!("{}", table(&listing));
    for (run, why) in &listing.unreadable {
        eprintln!(
            "{}: run `{run}` cannot be read: {}",
            args.store,
            files::chain(why)
        );
    }
    Ok(0)
}

/// The header and one line per run, in columns.
fn table(listing: &Listing) -> String {
    let header = ["RUN", "WORKFLOW", "STATUS", "STARTED", "DURATION"].map(str::to_owned);
    let rows: Vec<[String; 5]> = std::iter::once(header)
        .chain(listing.runs.iter().map(row))
        .collect();
    let mut widths = [0; 5];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A run's cells: id, workflow, status, start (RFC 3339, milliseconds), duration (`-`
/// until it ends).
fn row(run: &RunSummary) -> [String; 5] {
    let duration = run
        .duration()
        .map_or_else(|| "-".to_owned(), |took| duration(took.num_milliseconds()));
    [
        run.run_id.to_string(),
        run.workflow_id.clone(),
        run.status.to_string(),
        run.started_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        duration,
    ]
}

/// `ms` milliseconds as seconds with three decimals: `2.350s`.
pub(crate) fn duration(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    format!("{sign}{}.{:03}s", ms / 1000, ms % 1000)
}

/// The statuses `--status` takes.
const STATUSES: [RunStatus; 9] = [
    RunStatus::Pending,
    RunStatus::Running,
    RunStatus::Waiting,
    RunStatus::Paused,
    RunStatus::Completed,
    RunStatus::Failed,
    RunStatus::Cancelled,
    RunStatus::TimedOut,
    RunStatus::Skipped,
];

/// The run status `value` names, in any case (`completed`, `TIMED_OUT`).
fn run_status(value: &str) -> Result<RunStatus, Problems> {
    STATUSES
        .into_iter()
        .find(|status| status.as_str().eq_ignore_ascii_case(value))
        .ok_or_else(|| {
            let names: Vec<&str> = STATUSES.iter().map(|status| status.as_str()).collect();
            cli::usage(&format!(
                "--status `{value}`: expected one of {}",
                names.join(", ")
            ))
        })
}
