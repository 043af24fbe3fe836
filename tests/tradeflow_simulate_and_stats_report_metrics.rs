//! `tradeflow simulate --metrics FILE` writes the runs' metrics in the Prometheus text
//! format after them (histograms with buckets, `_sum` and `_count`; counters exact), and
//! `tradeflow stats --store sqlite:PATH` prints the performance report of the runs a
//! store keeps; a file that is not a store exits 2 with one line saying so.

#[path = "support/command.rs"]
mod command;

use std::collections::BTreeMap;
use std::path::Path;

use command::{assert_exit, run, scratch_dir, stderr_lines, stdout, text, write};
use serde_json::{Value, json};

/// Workflow `desk` (of type `execution`): one `quote` step, retried after 500 ms.
fn workflow() -> Value {
    json!({
        "id": "desk", "type": "execution",
        "steps": [{"id": "quote", "type": "task", "agentCriteria": {"type": "DESK"},
                   "task": {"type": "QUOTE"},
                   "retryPolicy": {"maxAttempts": 3, "initialDelayMs": 500}}]
    })
}

/// Agent `desk-1`: a quote takes `delay_ms`; the first `fails` calls fail with `kind`.
fn agents(delay_ms: u64, fails: u32, kind: &str) -> Value {
    json!({"agents": [{
        "id": "desk-1", "type": "DESK", "maxConcurrency": 2,
        "tasks": {"QUOTE": {"delayMs": delay_ms, "output": {"price": 101.5},
                            "fail": {"times": fails, "kind": kind, "message": "venue busy"}}}
    }]})
}

/// The samples of a Prometheus text exposition, as `name{label=value,…}` (labels sorted)
/// → value.
fn samples(exposition: &str) -> BTreeMap<String, f64> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            let value: f64 = value.parse().expect("a number");
            let key = match series.split_once('{') {
                None => format!("{series}{{}}"),
                Some((name, labels)) => {
                    let mut labels: Vec<String> = labels
                        .trim_end_matches('}')
                        .split(',')
                        .map(|label| label.replace('"', ""))
                        .collect();
                    labels.sort();
                    format!("{name}{{{}}}", labels.join(","))
                }
            };
            (key, value)
        })
        .collect()
}

#[test]
fn simulate_writes_exact_counts_and_histograms_in_the_prometheus_format() {
    let dir = scratch_dir("simulate-metrics");
    let workflow_path = write(&dir, "desk.json", &workflow());
    let agents_path = write(&dir, "agents.json", &agents(1000, 1, "TEMPORARY"));
    let metrics = dir.join("metrics.prom");

    let output = run(&[
        "simulate",
        &workflow_path,
        "--agents",
        &agents_path,
        "--runs",
        "3",
        "--metrics",
        text(&metrics),
    ]);

    assert_exit(&output, 0);
    let exposition = std::fs::read_to_string(&metrics).expect("the metrics file");
    assert!(
        exposition.contains("# TYPE workflow_duration_seconds histogram"),
        "{exposition}"
    );
    let seen = samples(&exposition);
    let get = |key: &str| {
        seen.get(key)
            .copied()
            .unwrap_or_else(|| panic!("no {key} in:\n{exposition}"))
    };
    assert_eq!(
        get("workflow_runs_total{status=COMPLETED,workflow_name=desk}"),
        3.0
    );
    assert_eq!(
        get("workflow_success_total{success=true,workflow_type=execution}"),
        3.0
    );
    // The first call fails after its second (1 s), waits 500 ms and succeeds after 1 s:
    // run 1 takes 2.5 s, runs 2 and 3 (the agent fails only its first call) 1 s each.
    let duration = "workflow_duration_seconds";
    let labels = "workflow_name=desk,workflow_type=execution";
    assert_eq!(get(&format!("{duration}_count{{{labels}}}")), 3.0);
    assert_eq!(get(&format!("{duration}_sum{{{labels}}}")), 4.5);
    assert_eq!(get(&format!("{duration}_bucket{{le=0.5,{labels}}}")), 0.0);
    assert_eq!(get(&format!("{duration}_bucket{{le=1,{labels}}}")), 2.0);
    assert_eq!(get(&format!("{duration}_bucket{{le=2.5,{labels}}}")), 3.0);
    assert_eq!(get(&format!("{duration}_bucket{{le=+Inf,{labels}}}")), 3.0);
    let step = "step_id=quote,task_type=QUOTE,workflow_name=desk";
    assert_eq!(get(&format!("step_duration_seconds_count{{{step}}}")), 3.0);
    assert_eq!(get(&format!("step_duration_seconds_sum{{{step}}}")), 4.5);
    assert_eq!(
        get("step_attempts_total{outcome=success,step_id=quote,workflow_name=desk}"),
        3.0
    );
    assert_eq!(
        get("step_attempts_total{outcome=TEMPORARY,step_id=quote,workflow_name=desk}"),
        1.0
    );
    assert_eq!(get("agent_utilization_ratio{agent_id=desk-1}"), 0.0);
    assert_eq!(get("agent_calls_waiting{agent_type=DESK}"), 0.0);
}

#[test]
fn simulate_without_metrics_writes_no_file_and_bad_files_write_none() {
    let dir = scratch_dir("simulate-metrics-invalid");
    let metrics = dir.join("metrics.prom");
    let output = run(&[
        "simulate",
        "no-such-workflow.json",
        "--agents",
        "no-such-agents.json",
        "--metrics",
        text(&metrics),
    ]);
    assert_exit(&output, 2);
    assert!(!metrics.exists());
}

/// Runs `desk` with `agents` into the store `store_arg` (`tradeflow run`, real clock).
fn run_into(dir: &Path, store_arg: &str, agents: &Value, name: &str) -> Value {
    let workflow_path = write(dir, "desk.json", &workflow());
    let agents_path = write(dir, name, agents);
    let output = run(&[
        "run",
        &workflow_path,
        "--agents",
        &agents_path,
        "--store",
        store_arg,
    ]);
    serde_json::from_str(&stdout(&output)).expect("a JSON report")
}

#[test]
fn stats_folds_every_run_a_store_keeps_into_the_performance_report() {
    let dir = scratch_dir("stats-store");
    let store = dir.join("runs.db");
    let store_arg = format!("sqlite:{}", text(&store));
    let completed = run_into(&dir, &store_arg, &agents(10, 0, "TEMPORARY"), "ok.json");
    assert_eq!(completed["status"], "COMPLETED");
    let failed = run_into(&dir, &store_arg, &agents(10, 1, "PERMANENT"), "bad.json");
    assert_eq!(failed["status"], "FAILED");

    let output = run(&["stats", "--store", &store_arg]);

    assert_exit(&output, 0);
    let report: Value = serde_json::from_str(&stdout(&output)).expect("a JSON report");
    let desk = &report["workflows"]["desk"];
    assert_eq!(desk["runs"], 2);
    assert_eq!(desk["succeeded"], 1);
    assert_eq!(desk["successRate"], 0.5);
    let duration = &desk["duration"];
    for field in ["meanSeconds", "p50Seconds", "p95Seconds", "p99Seconds"] {
        let seconds = duration[field].as_f64().expect(field);
        assert!(seconds > 0.0 && seconds < 60.0, "{field}: {seconds}");
    }
    // One call each: a permanent failure is not retried.
    assert_eq!(report["agents"]["desk-1"]["calls"], 2);
    assert_eq!(report["agents"]["desk-1"]["utilization"], Value::Null);

    let other = run(&["stats", "--store", &store_arg, "--workflow", "other"]);
    assert_exit(&other, 0);
    let other: Value = serde_json::from_str(&stdout(&other)).expect("a JSON report");
    assert_eq!(other["workflows"], json!({}));
}

#[test]
fn stats_on_a_file_that_is_not_a_store_exits_2_with_one_line() {
    let dir = scratch_dir("stats-not-a-store");
    let file = dir.join("notes.txt");
    std::fs::write(&file, "not a database, just some text\n".repeat(200)).expect("write");
    let output = run(&["stats", "--store", &format!("sqlite:{}", text(&file))]);
    assert_exit(&output, 2);
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("not a tradeflow store"), "{lines:?}");
    assert!(stdout(&output).is_empty());

    let missing = run(&["stats", "--store", "sqlite:no-such-store.db"]);
    assert_exit(&missing, 2);
    assert_eq!(
        stderr_lines(&missing),
        ["no-such-store.db: no such store (stats reads the store of an earlier `run`)"]
    );
}
