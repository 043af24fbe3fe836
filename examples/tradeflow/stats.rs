//! `stats`: the performance report of the runs a store keeps; and the Prometheus text
//! `simulate --metrics FILE` writes after its runs.

use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tradeflow::metrics::{Performance, names};
use tradeflow::store::{JournalEntry, RunStore};

use crate::{Problems, cli, store};

/// The line of `stats` in the usage.
pub(crate) const USAGE: &str = "tradeflow stats --store sqlite:PATH [--workflow ID]";

/// The arguments of `stats` as clap reads them (its help is in [`crate::cli::Verb`]).
#[derive(Debug, clap::Args)]
#[command(override_usage = USAGE)]
pub(crate) struct Args {
    /// None: `stats` takes no file (said as `unexpected argument`).
    #[arg(hide = true)]
    unexpected: Vec<String>,
    /// The store of an earlier `run`, sqlite:PATH (required).
    #[arg(long, value_name = "sqlite:PATH", allow_hyphen_values = true)]
    store: Option<String>,
    /// Only the runs of this workflow.
    #[arg(long, value_name = "ID", allow_hyphen_values = true)]
    workflow: Option<String>,
}

/// `stats`: folds every run the store keeps (of `--workflow` alone, with it) into a
/// performance report, printed as pretty JSON on stdout; 0, or the problem (exit 2).
pub(crate) fn stats(args: Args) -> Result<u8, Problems> {
    if let Some(extra) = args.unexpected.first() {
        return Err(cli::unexpected(extra));
    }
    let path = cli::store("stats", args.store.as_deref())?;
    let store = store::inspect(&path, "stats")?;
    let runs = store
        .started_runs()
        .map_err(|error| store::problem(&path, &error))?;
    let mut performance: Option<Performance> = None;
    let mut last: Option<DateTime<Utc>> = None;
    for run in &runs {
        let journal = store
            .load(run)
            .map_err(|error| store::problem(&path, &error))?;
        let Some(JournalEntry::RunStarted {
            workflow_id, at, ..
        }) = journal.first()
        else {
            continue;
        };
        if args
            .workflow
            .as_ref()
            .is_some_and(|only| only != workflow_id)
        {
            continue;
        }
        let performance = performance.get_or_insert_with(|| Performance::new(*at));
        performance.record_journal(&journal);
        last = journal
            .iter()
            .map(|entry| Some(entry.at()))
            .fold(last, Option::max);
    }
    let now = Utc::now();
    let report = performance
        .unwrap_or_else(|| Performance::new(now))
        .report(last.unwrap_or(now));
    // Plain data under string keys: serializing cannot fail.
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    Ok(0)
}

/// The buckets of the duration histograms, in seconds: 5 ms to an hour.
const SECONDS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];
/// The buckets of `decision_reward`: rewards are scores, most often in [0, 1].
const REWARDS: [f64; 12] = [-1.0, -0.5, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

/// Runs `simulate` with a Prometheus recorder for this thread (the runs are driven on
/// it), then writes the text exposition of what it recorded to `path`: every histogram
/// with its buckets, `_sum` and `_count`, every counter and gauge. `simulate`'s own
/// problems come back as they are, and nothing is written then.
pub(crate) fn with_prometheus(
    path: &str,
    simulate: impl FnOnce() -> Result<u8, Problems>,
) -> Result<u8, Problems> {
    let recorder = PrometheusBuilder::new()
        .set_buckets(&SECONDS)
        .and_then(|builder| {
            builder.set_buckets_for_metric(Matcher::Full(names::DECISION_REWARD.into()), &REWARDS)
        })
        .map_err(|error| vec![format!("{path}: cannot record metrics: {error}")])?
        .build_recorder();
    let handle = recorder.handle();
    let code = metrics::with_local_recorder(&recorder, simulate)?;
    std::fs::write(path, handle.render())
        .map_err(|error| vec![format!("{path}: cannot write the metrics: {error}")])?;
    Ok(code)
}
