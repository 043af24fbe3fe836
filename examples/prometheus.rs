//! Serves the engine's metrics to Prometheus while workflows run against scripted agents.
//!
//! ```text
//! cargo run --example prometheus [-- --port 9898] [--runs 5] [--linger 60]
//! ```
//!
//! Installs the Prometheus recorder of `metrics-exporter-prometheus` as the global
//! `metrics` recorder (the engine records through the `metrics` facade: see
//! `tradeflow::metrics`), serves its text exposition at `http://127.0.0.1:PORT/metrics`
//! and prints that URL, then runs two reference workflows `--runs` times each (default 5)
//! against the scripted agents of their agents files, on a virtual clock (a simulated
//! minute takes microseconds; the metrics' durations are virtual). Each workflow has an
//! engine of its own; one recorder sees both. The port is `--port`, else the
//! `TRADEFLOW_METRICS_PORT` environment variable, else one the system picks (printed).
//!
//! After the runs it prints `done: N runs` and the engine's own performance report, and
//! serves `/metrics` `--linger` more seconds (default 60; 0 exits at once), so that a
//! Prometheus scraping it (`scrape_configs: [{job_name: tradeflow, static_configs:
//! [{targets: ["127.0.0.1:9898"]}]}]`) or `curl` can read the final counts. The server is
//! a small one of its own over `std::net` (one request per connection, bounded reads
//! with a 5-second timeout), so the example needs no async runtime.
//!
//! Exits 0 when every run completed, 1 when one did not, 2 on bad arguments.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tradeflow::clock::VirtualClock;
use tradeflow::definition::WorkflowDefinition;
use tradeflow::engine::{Engine, RunIds, RunOptions, RunStatus};
use tradeflow::sim::{AgentsFile, scripted_agents};

/// The workflows run, with their agents and input.
const WORKFLOWS: [(&str, &str, &str); 2] = [
    (
        include_str!("workflows/algo-trading.json"),
        include_str!("agents/algo-trading.json"),
        include_str!("inputs/algo-trading.json"),
    ),
    (
        include_str!("workflows/execution-algo-learning.json"),
        include_str!("agents/execution-algo-learning.json"),
        include_str!("inputs/execution-algo-learning.json"),
    ),
];

/// The buckets of the duration histograms, in seconds.
const SECONDS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// The buckets of `decision_reward`.
const REWARDS: [f64; 6] = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];
/// The longest a connection may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The most bytes of a request read.
const MAX_REQUEST: u64 = 8 * 1024;

/// What the arguments ask for.
struct Options {
    port: u16,
    runs: u32,
    linger: u64,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        port: 0,
        runs: 5,
        linger: 60,
    };
    if let Ok(port) = std::env::var("TRADEFLOW_METRICS_PORT") {
        options.port = port
            .parse()
            .map_err(|_| format!("TRADEFLOW_METRICS_PORT `{port}`: expected a port"))?;
    }
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        let bad = |what: &str| format!("{arg} `{value}`: expected {what}");
        match arg.as_str() {
            "--port" => options.port = value.parse().map_err(|_| bad("a port"))?,
            "--runs" => options.runs = value.parse().map_err(|_| bad("a whole number"))?,
            "--linger" => options.linger = value.parse().map_err(|_| bad("seconds"))?,
            _ => return Err(format!("unknown option `{arg}` (--port, --runs, --linger)")),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(problem) => {
            eprintln!("prometheus: {problem}");
            return ExitCode::from(2);
        }
    };
    let handle = match PrometheusBuilder::new()
        .set_buckets(&SECONDS)
        .and_then(|builder| {
            builder.set_buckets_for_metric(Matcher::Full("decision_reward".into()), &REWARDS)
        })
        .and_then(PrometheusBuilder::install_recorder)
    {
        Ok(handle) => handle,
        Err(error) => {
            eprintln!("prometheus: cannot install the recorder: {error}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(("127.0.0.1", options.port)) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "prometheus: cannot listen on 127.0.0.1:{}: {error}",
                options.port
            );
            return ExitCode::from(2);
        }
    };
    match listener.local_addr() {
        Ok(address) => println!("serving http://{address}/metrics"),
        Err(error) => eprintln!("prometheus: {error}"),
    }
    let served = handle.clone();
    std::thread::spawn(move || serve(&listener, &served));

    let mut completed = true;
    let mut total = 0;
    for (workflow, agents, input) in WORKFLOWS {
        match run_workflow(workflow, agents, input, options.runs) {
            Ok((runs, all_completed)) => {
                total += runs;
                completed &= all_completed;
            }
            Err(problem) => {
                eprintln!("prometheus: {problem}");
                return ExitCode::from(2);
            }
        }
    }
    println!("done: {total} runs");
    // Flushed, so that whoever reads the output knows the counts are final.
    let _ = std::io::stdout().flush();
    std::thread::sleep(Duration::from_secs(options.linger));
    ExitCode::from(if completed { 0 } else { 1 })
}

/// Runs `workflow` `runs` times on an engine of its own, on a virtual clock, against
/// the scripted agents of `agents`; how many ran and whether all completed.
fn run_workflow(
    workflow: &str,
    agents: &str,
    input: &str,
    runs: u32,
) -> Result<(u32, bool), String> {
    let definition = WorkflowDefinition::from_json(workflow).map_err(|error| error.to_string())?;
    let agents = AgentsFile::from_json(agents).map_err(|error| error.to_string())?;
    let input: serde_json::Value =
        serde_json::from_str(input).map_err(|error| error.to_string())?;
    let start = Utc
        .with_ymd_and_hms(2026, 1, 5, 9, 0, 0)
        .single()
        .ok_or("no start time")?;
    let clock = VirtualClock::starting_at(start);
    let engine = Engine::builder()
        .clock(clock.clone())
        .run_ids(RunIds::Numbered)
        .build();
    for agent in scripted_agents(&agents, Arc::new(clock.clone())) {
        engine
            .register_agent(agent)
            .map_err(|error| error.to_string())?;
    }
    let workflow = engine
        .create_workflow(definition)
        .map_err(|error| error.to_string())?;
    let mut completed = true;
    for seed in 0..runs {
        let options = RunOptions::new(input.clone()).seed(u64::from(seed));
        let run = engine
            .start(&workflow.id, options)
            .map_err(|e| e.to_string())?;
        let report = clock.block_on(run);
        completed &= report.status == RunStatus::Completed;
    }
    let report = engine.generate_performance_report();
    println!("{}", serde_json::to_string(&report).unwrap_or_default());
    Ok((runs, completed))
}

/// Answers every connection to `listener`: `GET /metrics` with the exposition, anything
/// else with 404.
fn serve(listener: &TcpListener, handle: &PrometheusHandle) {
    for stream in listener.incoming().flatten() {
        if let Err(error) = answer(stream, handle) {
            eprintln!("prometheus: a scrape failed: {error}");
        }
    }
}

fn answer(stream: TcpStream, handle: &PrometheusHandle) -> std::io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    let mut reader = BufReader::new(std::io::Read::take(&stream, MAX_REQUEST));
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The headers, up to the blank line (bounded by MAX_REQUEST).
    let mut header = String::new();
    while reader.read_line(&mut header)? > 0 && !header.trim_end().is_empty() {
        header.clear();
    }
    let mut parts = request_line.split_whitespace();
    let (status, body) = match (parts.next(), parts.next()) {
        (Some("GET"), Some("/metrics")) => ("200 OK", handle.render()),
        _ => ("404 Not Found", "only GET /metrics is served\n".to_owned()),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
