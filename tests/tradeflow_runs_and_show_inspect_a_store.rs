//! `tradeflow runs` lists the runs of a store written by `tradeflow run`, newest first,
//! filtered by status and workflow and cut by a limit; `tradeflow show` prints one of
//! them step by step as text, JSON or a Mermaid gantt chart. Both exit 2, with one line
//! on stderr, for an unknown run and for a file that is not a store.
#![cfg(feature = "sqlite")]

#[path = "support/command.rs"]
mod command;

use std::path::PathBuf;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use command::{ScratchDir, assert_exit, run, scratch_dir, stderr_lines, stdout, text, write};
use serde_json::{Value, json};

/// `fetch`, then `hedge` (skipped: its condition is false) and `trade` (retried once).
fn desk_flow() -> Value {
    json!({"id": "desk-flow", "version": "1", "steps": [
        {"id": "fetch", "type": "task", "agentCriteria": {"type": "DESK"},
         "task": {"type": "FETCH", "parameters": {}}},
        {"id": "hedge", "type": "task", "agentCriteria": {"type": "DESK"},
         "task": {"type": "HEDGE", "parameters": {}},
         "condition": {"expression": "${fetch.output.price} > 1000"}},
        {"id": "trade", "type": "task", "agentCriteria": {"type": "DESK"},
         "task": {"type": "TRADE", "parameters": {"price": "${fetch.output.price}"}},
         "retryPolicy": {"maxAttempts": 2, "initialDelayMs": 1}},
    ]})
}

/// One approval nobody answers: `run` leaves the run waiting in the store.
fn approval_flow() -> Value {
    json!({"id": "approval-flow", "version": "1", "steps": [
        {"id": "approve", "type": "human_approval"},
    ]})
}

/// The desk's agent; `trade` fails once then fills, or (`rejects`) always fails.
fn desk(rejects: bool) -> Value {
    let fail = if rejects {
        json!({"kind": "PERMANENT", "message": "order rejected"})
    } else {
        json!({"times": 1, "kind": "TEMPORARY", "message": "venue busy"})
    };
    json!({"agents": [{"id": "desk-1", "type": "DESK", "tasks": {
        "FETCH": {"output": {"price": 101.5}, "delayMs": 20},
        "HEDGE": {"output": {}},
        "TRADE": {"output": {"filled": "${params.price}"}, "delayMs": 30, "fail": fail}
    }}]})
}

/// The store every test reads, written once: four runs, in this order.
struct Store {
    _dir: ScratchDir,
    path: PathBuf,
    /// The runs in the order they were made: desk-flow COMPLETED, approval-flow
    /// WAITING, desk-flow FAILED, desk-flow COMPLETED.
    runs: Vec<String>,
}

impl Store {
    fn arg(&self) -> String {
        format!("sqlite:{}", text(&self.path))
    }
}

fn store() -> &'static Store {
    static STORE: OnceLock<Store> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = scratch_dir("runs-and-show");
        let path = dir.join("runs.db");
        let store = format!("sqlite:{}", text(&path));
        let desk_flow = write(&dir, "desk-flow.json", &desk_flow());
        let approval_flow = write(&dir, "approval-flow.json", &approval_flow());
        let fills = write(&dir, "fills.json", &desk(false));
        let rejects = write(&dir, "rejects.json", &desk(true));
        let runs = [
            (&desk_flow, &fills, 0),
            (&approval_flow, &fills, 1),
            (&desk_flow, &rejects, 1),
            (&desk_flow, &fills, 0),
        ]
        .into_iter()
        .map(|(workflow, agents, code)| {
            let output = run(&["run", workflow, "--agents", agents, "--store", &store]);
            assert_exit(&output, code);
            run_id(&stderr_lines(&output))
        })
        .collect();
        Store {
            _dir: dir,
            path,
            runs,
        }
    })
}

/// The run id of `run`'s first progress line (`09:00:00.000  run ID of WORKFLOW
/// started …`).
fn run_id(stderr: &[String]) -> String {
    stderr
        .iter()
        .find_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [_, "run", id, "of", _, "started", ..] => Some((*id).to_owned()),
                _ => None,
            }
        })
        .unwrap_or_else(|| panic!("no start line: {stderr:#?}"))
}

/// The rows of `runs`' table, each split in its five columns, after checking the header.
fn rows(args: &[&str]) -> Vec<Vec<String>> {
    let store = store();
    let mut all = vec!["runs", "--store"];
    let arg = store.arg();
    all.push(&arg);
    all.extend_from_slice(args);
    let output = run(&all);
    assert_exit(&output, 0);
    let out = stdout(&output);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().expect("a header").split_whitespace().collect();
    assert_eq!(header, ["RUN", "WORKFLOW", "STATUS", "STARTED", "DURATION"]);
    lines
        .map(|line| {
            let cells: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
            assert_eq!(cells.len(), 5, "{line}");
            cells
        })
        .collect()
}

fn ids(rows: &[Vec<String>]) -> Vec<&str> {
    rows.iter().map(|row| row[0].as_str()).collect()
}

#[test]
fn runs_lists_every_run_newest_first_with_its_workflow_status_start_and_duration() {
    let made = &store().runs;
    let rows = rows(&[]);
    let newest_first: Vec<&str> = made.iter().rev().map(String::as_str).collect();
    assert_eq!(ids(&rows), newest_first);
    let columns: Vec<(&str, &str)> = rows
        .iter()
        .map(|row| (row[1].as_str(), row[2].as_str()))
        .collect();
    assert_eq!(
        columns,
        [
            ("desk-flow", "COMPLETED"),
            ("desk-flow", "FAILED"),
            ("approval-flow", "WAITING"),
            ("desk-flow", "COMPLETED"),
        ]
    );
    let started: Vec<DateTime<Utc>> = rows
        .iter()
        .map(|row| row[3].parse().expect("an RFC 3339 start"))
        .collect();
    assert!(
        started.windows(2).all(|pair| pair[0] >= pair[1]),
        "{rows:?}"
    );
    // The waiting run has not ended; the others took at least their scripted delays.
    assert_eq!(rows[2][4], "-");
    for row in [&rows[0], &rows[1], &rows[3]] {
        let seconds: f64 = row[4]
            .strip_suffix('s')
            .and_then(|seconds| seconds.parse().ok())
            .unwrap_or_else(|| panic!("a duration in seconds: {row:?}"));
        assert!(seconds >= 0.02, "{row:?}");
    }
}

#[test]
fn runs_keeps_the_runs_of_a_status_and_of_a_workflow() {
    let made = &store().runs;
    assert_eq!(ids(&rows(&["--status", "FAILED"])), [made[2].as_str()]);
    // Any case.
    assert_eq!(ids(&rows(&["--status", "waiting"])), [made[1].as_str()]);
    assert_eq!(
        ids(&rows(&["--workflow", "desk-flow"])),
        [made[3].as_str(), made[2].as_str(), made[0].as_str()]
    );
    assert_eq!(
        ids(&rows(&["--workflow", "desk-flow", "--status", "COMPLETED"])),
        [made[3].as_str(), made[0].as_str()]
    );
    assert!(rows(&["--workflow", "approval-flow", "--status", "FAILED"]).is_empty());
    assert!(rows(&["--workflow", "no-such-flow"]).is_empty());
}

#[test]
fn runs_limit_keeps_the_newest_of_the_runs_kept() {
    let made = &store().runs;
    assert_eq!(
        ids(&rows(&["--limit", "2"])),
        [made[3].as_str(), made[2].as_str()]
    );
    assert_eq!(
        ids(&rows(&["--status", "COMPLETED", "--limit", "1"])),
        [made[3].as_str()]
    );
    assert_eq!(rows(&["--limit", "10"]).len(), 4);
    assert!(rows(&["--limit", "0"]).is_empty());
}

#[test]
fn runs_refuses_a_bad_status_or_limit_with_exit_code_2() {
    let store = store().arg();
    for (args, problem) in [
        (
            ["--status", "DONE"],
            "tradeflow: --status `DONE`: expected one of PENDING, RUNNING, WAITING, PAUSED, \
             COMPLETED, FAILED, CANCELLED, TIMED_OUT, SKIPPED",
        ),
        (
            ["--limit", "-1"],
            "tradeflow: --limit `-1`: expected a whole number from 0 to",
        ),
    ] {
        let output = run(&[&["runs", "--store", store.as_str()], &args[..]].concat());
        assert_exit(&output, 2);
        assert!(
            stderr_lines(&output)[0].starts_with(problem),
            "{:?}",
            stderr_lines(&output)
        );
        assert!(stdout(&output).is_empty());
    }
}

/// `show RUN --format FORMAT` on the store: its stdout, after checking exit code 0.
fn show(run_id: &str, format: &str) -> String {
    let store = store().arg();
    let output = run(&["show", run_id, "--store", &store, "--format", format]);
    assert_exit(&output, 0);
    stdout(&output)
}

fn show_json(run_id: &str) -> Value {
    serde_json::from_str(&show(run_id, "json")).expect("show --format json prints JSON")
}

fn time(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("an RFC 3339 time: {value}"))
}

#[test]
fn show_json_has_every_step_in_the_definitions_order_with_its_timings() {
    let run = &store().runs[0];
    let shown = show_json(run);
    assert_eq!(shown["runId"], run.as_str());
    assert_eq!(shown["workflowId"], "desk-flow");
    assert_eq!(shown["version"], "1");
    assert_eq!(shown["status"], "COMPLETED");
    assert_eq!(shown["error"], Value::Null);
    let (started, ended) = (time(&shown["startedAt"]), time(&shown["endedAt"]));
    // Exact, where the times are shown to the millisecond.
    let duration = shown["durationMs"].as_i64().expect("a duration");
    assert!(
        (duration - (ended - started).num_milliseconds()).abs() <= 1,
        "{shown:#}"
    );

    let steps = shown["steps"].as_array().expect("steps, an array");
    let ids: Vec<&str> = steps.iter().filter_map(|s| s["stepId"].as_str()).collect();
    assert_eq!(ids, ["fetch", "hedge", "trade"]);
    let [fetch, hedge, trade] = steps.as_slice() else {
        unreachable!()
    };
    assert_eq!(fetch["status"], "COMPLETED");
    assert_eq!(fetch["agentId"], "desk-1");
    assert_eq!(fetch["attempts"], 1);
    assert_eq!(fetch["output"], json!({"price": 101.5}));
    assert_eq!(hedge["status"], "SKIPPED");
    assert_eq!(hedge["attempts"], 0);
    assert!(
        hedge["reason"]
            .as_str()
            .is_some_and(|r| r.contains("condition")),
        "{hedge:#}"
    );
    assert_eq!(hedge["startedAt"], Value::Null, "skipped without a call");
    assert_eq!(trade["status"], "COMPLETED");
    assert_eq!(trade["attempts"], 2, "retried once: {trade:#}");
    assert_eq!(trade["output"], json!({"filled": 101.5}));
    // Each step began after the run started and ended before it ended, in order.
    let (fetch_start, fetch_end) = (time(&fetch["startedAt"]), time(&fetch["endedAt"]));
    let (trade_start, trade_end) = (time(&trade["startedAt"]), time(&trade["endedAt"]));
    assert!(started <= fetch_start && fetch_end <= trade_start && trade_end <= ended);
    assert!(
        fetch["durationMs"].as_i64().is_some_and(|ms| ms >= 20),
        "{fetch:#}"
    );
    assert!(
        trade["durationMs"].as_i64().is_some_and(|ms| ms >= 60),
        "{trade:#}"
    );
    assert_eq!(trade["inFlight"], json!([]));
}

#[test]
fn show_json_of_a_failed_run_names_the_error_and_of_a_waiting_run_has_no_end() {
    let failed = show_json(&store().runs[2]);
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(failed["error"]["stepId"], "trade");
    assert_eq!(failed["error"]["kind"], "PERMANENT");
    let trade = &failed["steps"][2];
    assert_eq!(trade["status"], "FAILED");
    assert_eq!(trade["error"]["kind"], "PERMANENT");
    assert!(
        trade["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("order rejected")),
        "{trade:#}"
    );

    let waiting = show_json(&store().runs[1]);
    assert_eq!(waiting["status"], "WAITING");
    assert_eq!(waiting["endedAt"], Value::Null);
    assert_eq!(waiting["durationMs"], Value::Null);
    let approve = &waiting["steps"][0];
    assert_eq!(approve["status"], "WAITING");
    assert!(approve["startedAt"].is_string() && approve["endedAt"].is_null());
}

#[test]
fn show_text_has_a_block_per_step_with_its_status_agent_calls_and_times() {
    let run = &store().runs[0];
    let text = show(run, "text");
    let store = store().arg();
    assert_eq!(
        text,
        stdout(&run_show_default(run, &store)),
        "text is the default"
    );
    let first = text.lines().next().expect("a first line");
    assert_eq!(
        first,
        format!("run {run} of desk-flow (version 1): COMPLETED")
    );
    let blocks: Vec<&str> = text.split("\n\n").collect();
    assert_eq!(blocks.len(), 4, "{text}");
    assert!(
        blocks[1].starts_with("fetch: COMPLETED\n  agent desk-1, 1 call\n"),
        "{text}"
    );
    assert!(blocks[2].starts_with("hedge: SKIPPED\n"), "{text}");
    assert!(blocks[2].contains("\n  skipped: "), "{text}");
    assert!(
        blocks[3].starts_with("trade: COMPLETED\n  agent desk-1, 2 calls\n"),
        "{text}"
    );
    for block in [blocks[1], blocks[3]] {
        let times = block.lines().nth(2).expect("a line of times");
        let words: Vec<&str> = times.split_whitespace().collect();
        assert!(
            matches!(words.as_slice(), [start, "to", end, _]
                if start.parse::<DateTime<Utc>>().is_ok() && end.parse::<DateTime<Utc>>().is_ok()),
            "{block}"
        );
    }

    let failed = show(&store_runs(2), "text");
    assert!(
        failed.contains("\n  error: step `trade` failed: PERMANENT: "),
        "{failed}"
    );
    assert!(failed.contains("\ntrade: FAILED\n"), "{failed}");
}

fn store_runs(index: usize) -> String {
    store().runs[index].clone()
}

fn run_show_default(run_id: &str, store: &str) -> std::process::Output {
    let output = run(&["show", run_id, "--store", store]);
    assert_exit(&output, 0);
    output
}

/// A task line of a gantt chart: `NAME :TAGS, ID, START, END`.
#[derive(Debug)]
struct Task {
    name: String,
    tags: Vec<String>,
    start: String,
    end: String,
}

fn tasks(chart: &str) -> Vec<Task> {
    chart
        .lines()
        .skip_while(|line| !line.trim_start().starts_with("todayMarker"))
        .skip(1)
        .filter(|line| !line.trim_start().starts_with("%%"))
        .map(|line| {
            let (name, data) = line.trim().split_once(" :").expect("NAME :DATA");
            let fields: Vec<&str> = data.split(", ").collect();
            let [tags @ .., id, start, end] = fields.as_slice() else {
                panic!("{line}")
            };
            assert!(id.starts_with('s'), "{line}");
            Task {
                name: name.to_owned(),
                tags: tags.iter().map(|tag| (*tag).to_owned()).collect(),
                start: (*start).to_owned(),
                end: (*end).to_owned(),
            }
        })
        .collect()
}

/// A gantt time (`2026-01-05 09:00:00.250`, the chart's `dateFormat`).
fn gantt_time(text: &str) -> DateTime<Utc> {
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.3f")
        .unwrap_or_else(|error| panic!("`{text}`: {error}"))
        .and_utc()
}

#[test]
fn show_mermaid_draws_a_gantt_chart_of_the_steps_on_the_runs_clock() {
    let run = &store().runs[2];
    let chart = show(run, "mermaid");
    let head: Vec<&str> = chart.lines().take(5).map(str::trim).collect();
    assert_eq!(head[0], "gantt");
    assert!(
        head[1].starts_with(&format!("title {run} of desk-flow v1, FAILED in ")),
        "{chart}"
    );
    assert_eq!(head[2], "dateFormat YYYY-MM-DD HH:mm:ss.SSS");
    assert!(head[3].starts_with("axisFormat "), "{chart}");

    let tasks = tasks(&chart);
    let names: Vec<&str> = tasks.iter().map(|task| task.name.as_str()).collect();
    assert_eq!(
        names,
        ["fetch", "hedge (skipped)", "trade (failed)"],
        "{chart}"
    );
    assert_eq!(tasks[0].tags, ["done"]);
    assert_eq!(tasks[1].tags, ["milestone"], "skipped steps are diamonds");
    assert_eq!(tasks[2].tags, ["crit"], "failed steps stand out");
    assert_eq!(tasks[1].start, tasks[1].end);
    // On the run's clock: the times `show --format json` gives, to the millisecond.
    let shown = show_json(run);
    for (task, step) in tasks.iter().zip(shown["steps"].as_array().expect("steps")) {
        let start = step["startedAt"]
            .as_str()
            .map_or(step["endedAt"].clone(), |_| step["startedAt"].clone());
        assert_eq!(gantt_time(&task.start), time(&start), "{task:?}");
        assert_eq!(gantt_time(&task.end), time(&step["endedAt"]), "{task:?}");
    }
    assert!(!chart.contains("%%"), "every step was reached: {chart}");
}

#[test]
fn show_mermaid_of_a_waiting_run_draws_its_step_active() {
    let chart = show(&store().runs[1], "mermaid");
    let tasks = tasks(&chart);
    assert_eq!(tasks.len(), 1, "{chart}");
    assert_eq!(tasks[0].name, "approve (waiting)");
    assert_eq!(tasks[0].tags, ["active"]);
}

#[test]
fn show_refuses_an_unknown_run_with_exit_code_2_and_one_line() {
    let store = store();
    let output = run(&["show", "run-nope", "--store", &store.arg()]);
    assert_exit(&output, 2);
    assert_eq!(
        stderr_lines(&output),
        [format!(
            "{}: no run `run-nope` in the store (`tradeflow runs` lists them)",
            text(&store.path)
        )]
    );
    assert!(stdout(&output).is_empty());
}

#[test]
fn runs_and_show_refuse_a_file_that_is_not_a_store_with_exit_code_2() {
    let dir = scratch_dir("runs-and-show-not-a-store");
    let junk = dir.join("notes.db");
    std::fs::write(&junk, "not a database, just notes\n").expect("write a file");
    let missing = dir.join("missing.db");
    for verb in [&["runs"][..], &["show", "run-1"][..]] {
        let junk_arg = format!("sqlite:{}", text(&junk));
        let output = run(&[verb, &["--store", junk_arg.as_str()][..]].concat());
        assert_exit(&output, 2);
        assert_eq!(
            stderr_lines(&output),
            [format!(
                "{}: cannot open the store: it is not a tradeflow store: the file is not an \
                 SQLite database",
                text(&junk)
            )],
            "{verb:?}"
        );
        assert!(stdout(&output).is_empty());

        let missing_arg = format!("sqlite:{}", text(&missing));
        let output = run(&[verb, &["--store", missing_arg.as_str()][..]].concat());
        assert_exit(&output, 2);
        let lines = stderr_lines(&output);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with(&format!("{}: no such store", text(&missing))),
            "{lines:?}"
        );
        assert!(!missing.exists(), "nothing is created");
    }
    assert_eq!(
        std::fs::read_to_string(&junk).expect("read the file"),
        "not a database, just notes\n",
        "the file is left as it was"
    );
}

#[test]
fn runs_and_show_take_their_options_as_the_usage_says() {
    for (args, problem) in [
        (&["runs"][..], "tradeflow: runs needs --store sqlite:PATH"),
        (
            &["show", "--store", "sqlite:x.db"][..],
            "tradeflow: show needs a RUN_ID",
        ),
        (
            &["show", "r", "--store", "sqlite:x.db", "--format", "dot"][..],
            "tradeflow: --format `dot`: expected text, json or mermaid",
        ),
        (
            &["runs", "extra", "--store", "sqlite:x.db"][..],
            "tradeflow: unexpected argument `extra`",
        ),
    ] {
        let output = run(args);
        assert_exit(&output, 2);
        assert_eq!(stderr_lines(&output)[0], problem, "{args:?}");
    }
    let help = run(&["help"]);
    assert_exit(&help, 0);
    let help = stdout(&help);
    assert!(
        help.contains("  tradeflow runs --store sqlite:PATH [--status STATUS]"),
        "{help}"
    );
    assert!(
        help.contains("  tradeflow show RUN_ID --store sqlite:PATH [--format text|json|mermaid]"),
        "{help}"
    );
}
