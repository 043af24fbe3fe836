//! `cargo run --example prometheus`: the example installs the Prometheus recorder, serves
//! `/metrics` on 127.0.0.1 (an ephemeral port here) and runs two reference workflows
//! against scripted agents; scraped over real HTTP after the runs, the endpoint holds
//! their exact counts. Every wait is bounded, and the example is killed at the end.

#[path = "support/command.rs"]
mod command;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The longest any one step of the test waits.
const PATIENCE: Duration = Duration::from_secs(60);

/// Kills the example when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` on `address`, over one connection; the status line and the body.
fn get(address: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect_timeout(&address, PATIENCE).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("a timeout");
    stream.set_write_timeout(Some(PATIENCE)).expect("a timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("the response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("headers, then a body");
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, body.to_owned())
}

/// The samples of a Prometheus text exposition, as written (`name{labels}` → value).
fn samples(exposition: &str) -> BTreeMap<String, f64> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[test]
fn the_example_serves_the_exact_counts_of_its_runs_over_http() {
    let binary = command::example("prometheus");
    let child = Command::new(binary)
        .args(["--port", "0", "--runs", "3", "--linger", "120"])
        .env_remove("TRADEFLOW_METRICS_PORT")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the example");
    let mut running = Running(child);
    let stdout = running.0.stdout.take().expect("its stdout");
    let (lines, seen) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let next = || {
        seen.recv_timeout(PATIENCE)
            .expect("a line from the example")
    };

    let first = next();
    let url = first
        .strip_prefix("serving http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("the URL first, got {first:?}"));
    let address: SocketAddr = url.parse().expect("an address");
    assert!(address.ip().is_loopback(), "{address}");
    assert_ne!(address.port(), 0);
    // Each workflow's performance report, then `done`: the counts are final.
    let mut reports = Vec::new();
    loop {
        let line = next();
        if line == "done: 6 runs" {
            break;
        }
        reports.push(line);
    }
    assert_eq!(reports.len(), 2, "{reports:?}");

    let (status, body) = get(address, "/metrics");

    assert_eq!(status, "HTTP/1.1 200 OK");
    let seen = samples(&body);
    let count = |series: &str| {
        seen.get(series)
            .copied()
            .unwrap_or_else(|| panic!("no {series} in:\n{body}"))
    };
    let algo = "workflow_name=\"algo-trading-strategy\"";
    assert_eq!(
        count(&format!(
            "workflow_runs_total{{{algo},status=\"COMPLETED\"}}"
        )),
        3.0
    );
    assert_eq!(
        count("workflow_success_total{workflow_type=\"algo-trading-strategy\",success=\"true\"}"),
        3.0
    );
    // The risk agent is busy the first time it is called, once: retried, then fine.
    let risk = "step_id=\"risk-assessment\"";
    assert_eq!(
        count(&format!(
            "step_attempts_total{{{algo},{risk},outcome=\"TEMPORARY\"}}"
        )),
        1.0
    );
    assert_eq!(
        count(&format!(
            "step_attempts_total{{{algo},{risk},outcome=\"success\"}}"
        )),
        3.0
    );
    // Two orders a run, one call each.
    assert_eq!(
        count(&format!(
            "step_attempts_total{{{algo},step_id=\"order-execution\",outcome=\"success\"}}"
        )),
        6.0
    );
    let labels = "workflow_type=\"algo-trading-strategy\",workflow_name=\"algo-trading-strategy\"";
    assert_eq!(
        count(&format!("workflow_duration_seconds_count{{{labels}}}")),
        3.0
    );
    assert_eq!(
        count(&format!(
            "workflow_duration_seconds_bucket{{{labels},le=\"+Inf\"}}"
        )),
        3.0
    );
    // The learning workflow's decision learned a reward each run: 1 for `sweep`, 2 for
    // `vwap` (the same seeds choose the same options).
    let learning = "workflow_name=\"execution-algo-learning\",step_id=\"execution\"";
    let rewards = |option: &str| {
        count(&format!(
            "decision_reward_count{{{learning},option=\"{option}\"}}"
        ))
    };
    assert_eq!((rewards("sweep"), rewards("vwap")), (1.0, 2.0));
    assert_eq!(count("agent_utilization_ratio{agent_id=\"exec-1\"}"), 0.0);

    let (missing, _) = get(address, "/other");
    assert_eq!(missing, "HTTP/1.1 404 Not Found");
}
