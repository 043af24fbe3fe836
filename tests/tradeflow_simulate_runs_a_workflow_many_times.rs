//! `tradeflow simulate --runs N`: N runs of one workflow on one engine and one virtual
//! clock, each with its line of `--inputs`, run i starting when run i − C ends
//! (`--concurrency C`), all with the host context of `--context`; the output is
//! `{"runs", "decisions", "scaling"}`, the same bytes for the same files and seed.
//! Scripted agents draw their `random` values reproducibly; malformed files exit 2 naming
//! where.

#[path = "support/command.rs"]
mod command;

use std::path::Path;
use std::process::Output;

use command::{assert_exit, run, scratch_dir, stderr_lines, stdout, write};
use serde_json::{Value, json};

/// A workflow of two steps: `quote` draws a fill at random for the input's symbol;
/// `hedge` runs only when the host context's `volatility.level` is above 0.5.
fn workflow() -> Value {
    json!({
        "id": "backtest",
        "steps": [
            {"id": "quote", "type": "task", "agentCriteria": {"type": "DESK"},
             "task": {"type": "QUOTE",
                      "parameters": {"meanFill": "${input.meanFill}", "symbol": "${input.symbol}"}}},
            {"id": "hedge", "type": "task", "agentCriteria": {"type": "DESK"},
             "condition": {"expression": "volatility.level > 0.5"},
             "task": {"type": "HEDGE"}}
        ]
    })
}

/// One desk agent: a quote takes a virtual second and draws its fill and jitter; each
/// hedge answers the next entry of its `outputs` (one agent, so counted across runs).
fn agents() -> Value {
    json!({"agents": [{
        "id": "desk-1", "type": "DESK", "maxConcurrency": 4,
        "tasks": {
            "QUOTE": {
                "delayMs": 1000,
                "random": {"fill": {"normal": ["${params.meanFill}", 0.05]},
                           "jitter": {"uniform": [0, 1]}},
                "output": {"symbol": "${params.symbol}", "fill": "${random.fill}",
                           "jitter": "${random.jitter}"}
            },
            "HEDGE": {"outputs": [{"hedge": 1}, {"hedge": 2}, {"hedge": 3}]}
        }
    }]})
}

/// Writes `lines` to `dir/name`, one a line, and returns the path.
fn write_lines(dir: &Path, name: &str, lines: &[&str]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").expect("write a test file");
    command::text(&path).to_owned()
}

/// The files of a backtest in `dir`: the workflow, the agents, two input lines (with a
/// blank line between) and a context with `volatility.level` at `volatility`.
struct Files {
    workflow: String,
    agents: String,
    inputs: String,
    context: String,
}

fn files(dir: &Path, volatility: f64) -> Files {
    Files {
        workflow: write(dir, "workflow.json", &workflow()),
        agents: write(dir, "agents.json", &agents()),
        inputs: write_lines(
            dir,
            "inputs.jsonl",
            &[
                r#"{"symbol": "AAPL", "meanFill": 0.9}"#,
                "",
                r#"{"symbol": "MSFT", "meanFill": 0.5}"#,
            ],
        ),
        context: write(
            dir,
            "context.json",
            &json!({"volatility.level": volatility}),
        ),
    }
}

/// `simulate` of `files` with `extra` arguments.
fn simulate(files: &Files, extra: &[&str]) -> Output {
    let mut args = vec![
        "simulate",
        &files.workflow,
        "--agents",
        &files.agents,
        "--inputs",
        &files.inputs,
        "--context",
        &files.context,
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// The output of a successful `simulate --runs N`, checked for its three fields.
#[track_caller]
fn many(output: &Output) -> Value {
    assert_exit(output, 0);
    let text = stdout(output);
    assert!(text.ends_with("}\n"), "pretty JSON and a newline: {text:?}");
    let value: Value = serde_json::from_str(&text).expect("JSON on stdout");
    let fields: Vec<&String> = value.as_object().expect("an object").keys().collect();
    assert_eq!(fields, ["decisions", "runs", "scaling"], "{value:#}");
    assert_eq!(value["scaling"], json!([]));
    value
}

/// Each run's `field` (a JSON pointer into its report).
fn each(output: &Value, pointer: &str) -> Vec<Value> {
    output["runs"]
        .as_array()
        .expect("a `runs` array")
        .iter()
        .map(|report| report.pointer(pointer).cloned().unwrap_or(Value::Null))
        .collect()
}

#[test]
fn runs_take_the_input_lines_in_turn_and_share_one_engine() {
    let dir = scratch_dir("simulate-runs-inputs");
    let output = many(&simulate(&files(&dir, 0.7), &["--runs", "5"]));
    assert_eq!(
        each(&output, "/runId"),
        ["run-1", "run-2", "run-3", "run-4", "run-5"]
    );
    assert!(each(&output, "/status").iter().all(|s| s == "COMPLETED"));
    assert_eq!(
        each(&output, "/steps/quote/output/symbol"),
        ["AAPL", "MSFT", "AAPL", "MSFT", "AAPL"]
    );
    // One agent for every run: its scripted entries go on from one run to the next.
    assert_eq!(each(&output, "/steps/hedge/output/hedge"), [1, 2, 3, 3, 3]);
    // No step made a decision.
    assert_eq!(output["decisions"], json!({}));
}

#[test]
fn without_input_lines_every_run_takes_the_input_file() {
    let dir = scratch_dir("simulate-runs-input-fallback");
    let mut files = files(&dir, 0.7);
    files.inputs = write_lines(&dir, "blank.jsonl", &["", "  "]);
    let input = write(
        &dir,
        "input.json",
        &json!({"symbol": "TSLA", "meanFill": 0.7}),
    );
    let output = many(&simulate(&files, &["--runs", "2", "--input", &input]));
    assert_eq!(
        each(&output, "/steps/quote/output/symbol"),
        ["TSLA", "TSLA"]
    );
    // With lines, the lines win; one run takes the first.
    files.inputs = write_lines(
        &dir,
        "one.jsonl",
        &[r#"{"symbol": "NVDA", "meanFill": 0.6}"#],
    );
    let single = simulate(&files, &["--input", &input]);
    assert_exit(&single, 0);
    let report: Value = serde_json::from_str(&stdout(&single)).expect("a report");
    assert_eq!(report["steps"]["quote"]["output"]["symbol"], "NVDA");
}

#[test]
fn run_i_starts_when_run_i_minus_c_ends() {
    let dir = scratch_dir("simulate-runs-concurrency");
    let files = files(&dir, 0.7);
    for concurrency in ["1", "2", "3"] {
        let output = many(&simulate(
            &files,
            &["--runs", "5", "--concurrency", concurrency],
        ));
        let c: usize = concurrency.parse().unwrap();
        let started = each(&output, "/startedAt");
        let ended = each(&output, "/endedAt");
        for (i, start) in started.iter().enumerate() {
            match i.checked_sub(c) {
                None => assert_eq!(start, "2026-01-05T09:00:00Z", "run {i}, C = {c}"),
                Some(before) => assert_eq!(start, &ended[before], "run {i}, C = {c}"),
            }
        }
        // A run takes a virtual second (its quote): C runs at once end together.
        let last = ended.last().and_then(Value::as_str).unwrap();
        let seconds = 5_usize.div_ceil(c);
        assert_eq!(last, format!("2026-01-05T09:00:0{seconds}Z"), "C = {c}");
    }
}

#[test]
fn the_context_file_is_what_workflow_conditions_read() {
    let dir = scratch_dir("simulate-runs-context");
    let calm = files(&dir, 0.2);
    let output = many(&simulate(&calm, &["--runs", "2"]));
    assert_eq!(each(&output, "/steps/hedge/status"), ["SKIPPED", "SKIPPED"]);
    let reason = each(&output, "/steps/hedge/reason");
    assert!(
        reason[0].as_str().unwrap().starts_with("condition false"),
        "{reason:?}"
    );
    // With one run (the default), the single report, with the same context.
    let stormy = files(&dir, 0.7);
    let single = simulate(&stormy, &[]);
    assert_exit(&single, 0);
    let report: Value = serde_json::from_str(&stdout(&single)).expect("a report");
    assert_eq!(report["runId"], "run-1");
    assert_eq!(report["steps"]["hedge"]["status"], "COMPLETED");
    // Names may be written as functions, objects set their leaves.
    write(&dir, "context.json", &json!({"volatility": {"level": 0.9}}));
    let nested = simulate(&stormy, &[]);
    assert_exit(&nested, 0);
    assert!(stdout(&nested).contains(r#""hedge": 1"#));
}

#[test]
fn the_same_files_and_seed_print_the_same_bytes() {
    let dir = scratch_dir("simulate-runs-determinism");
    let files = files(&dir, 0.7);
    let args = ["--runs", "6", "--concurrency", "4", "--seed", "42"];
    let first = simulate(&files, &args);
    let second = simulate(&files, &args);
    assert_exit(&first, 0);
    assert_eq!(first.stdout, second.stdout);
    assert_eq!(first.stderr, second.stderr);
    let other_seed = simulate(
        &files,
        &["--runs", "6", "--concurrency", "4", "--seed", "43"],
    );
    assert_exit(&other_seed, 0);
    assert_ne!(first.stdout, other_seed.stdout);
}

#[test]
fn one_run_prints_the_single_report_the_first_of_many_runs_also_is() {
    let dir = scratch_dir("simulate-runs-one");
    let files = files(&dir, 0.7);
    let default = simulate(&files, &["--seed", "7"]);
    let one = simulate(
        &files,
        &["--seed", "7", "--runs", "1", "--concurrency", "3"],
    );
    assert_exit(&default, 0);
    assert_eq!(default.stdout, one.stdout);
    let report: Value = serde_json::from_str(&stdout(&default)).expect("a report");
    assert!(report.get("runs").is_none(), "{report:#}");
    let output = many(&simulate(&files, &["--seed", "7", "--runs", "3"]));
    assert_eq!(output["runs"][0], report);
}

#[test]
fn random_draws_repeat_with_the_seed_stay_within_bounds_and_differ_between_runs() {
    let dir = scratch_dir("simulate-runs-random");
    let files = files(&dir, 0.7);
    let output = many(&simulate(&files, &["--runs", "8", "--concurrency", "2"]));
    let fills = each(&output, "/steps/quote/output/fill");
    let jitters = each(&output, "/steps/quote/output/jitter");
    let symbols = each(&output, "/steps/quote/output/symbol");
    for ((fill, jitter), symbol) in fills.iter().zip(&jitters).zip(&symbols) {
        let jitter = jitter.as_f64().expect("a number");
        assert!((0.0..=1.0).contains(&jitter), "{jitter}");
        // Ten standard deviations (0.05) of the line's meanFill.
        let mean = if symbol == "AAPL" { 0.9 } else { 0.5 };
        let fill = fill.as_f64().expect("a number");
        assert!((fill - mean).abs() < 0.5, "{symbol}: {fill}");
    }
    let distinct: std::collections::BTreeSet<String> =
        fills.iter().map(ToString::to_string).collect();
    assert_eq!(distinct.len(), fills.len(), "{fills:?}");
    let again = many(&simulate(&files, &["--runs", "8", "--concurrency", "2"]));
    assert_eq!(
        each(&again, "/steps/quote/output"),
        each(&output, "/steps/quote/output")
    );
}

#[test]
fn a_run_that_does_not_complete_makes_the_exit_code_1_and_is_still_reported() {
    let dir = scratch_dir("simulate-runs-failure");
    let mut files = files(&dir, 0.7);
    let mut agents = agents();
    agents["agents"][0]["tasks"]["HEDGE"]["fail"] =
        json!({"times": 1, "kind": "PERMANENT", "message": "no liquidity"});
    files.agents = write(&dir, "agents-failing.json", &agents);
    let output = simulate(&files, &["--runs", "2"]);
    assert_exit(&output, 1);
    let value: Value = serde_json::from_str(&stdout(&output)).expect("JSON on stdout");
    assert_eq!(each(&value, "/status"), ["FAILED", "COMPLETED"]);
}

#[test]
fn a_malformed_random_value_is_rejected_naming_where_it_is() {
    let dir = scratch_dir("simulate-runs-bad-random");
    let mut files = files(&dir, 0.7);
    let mut agents = agents();
    agents["agents"][0]["tasks"]["QUOTE"]["random"] = json!({
        "fill": {"normal": ["${input.meanFill}", -0.05]},
        "jitter": {"uniform": [1, 0]},
        "spread": {"gamma": [1, 2]}
    });
    files.agents = write(&dir, "agents-bad.json", &agents);
    let output = simulate(&files, &[]);
    assert_exit(&output, 2);
    assert!(stdout(&output).is_empty());
    let at = format!("{}: agents[0].tasks.QUOTE.random", files.agents);
    let lines = stderr_lines(&output);
    for expected in [
        format!("{at}.fill.normal[0]: invalid binding in `${{input.meanFill}}`"),
        format!(
            "{at}.fill.normal[1]: invalid value -0.05: the standard deviation (sd) cannot be \
             negative"
        ),
        format!("{at}.jitter.uniform: invalid value [1, 0]: low (1) is above high (0)"),
        format!("{at}.spread: unknown value `gamma`, expected one of `normal`, `uniform`"),
    ] {
        assert!(
            lines.iter().any(|line| line.starts_with(&expected)),
            "{expected}\nnot in:\n{}",
            lines.join("\n")
        );
    }
}

#[test]
fn a_bad_inputs_line_is_rejected_naming_the_file_and_the_line() {
    let dir = scratch_dir("simulate-runs-bad-inputs");
    let mut files = files(&dir, 0.7);
    files.inputs = write_lines(
        &dir,
        "bad.jsonl",
        &[
            r#"{"symbol": "AAPL", "meanFill": 0.9}"#,
            r#"{"symbol": "#,
            "[1, 2]",
        ],
    );
    let output = simulate(&files, &["--runs", "3"]);
    assert_exit(&output, 2);
    assert!(stdout(&output).is_empty());
    let lines = stderr_lines(&output);
    let path = &files.inputs;
    assert_eq!(
        lines,
        [
            format!("{path}: line 2, column 11: malformed JSON: EOF while parsing a value"),
            format!("{path}: line 3: expected a JSON object (one input a line), found an array"),
        ]
    );
}

#[test]
fn bad_counts_and_context_files_are_usage_errors() {
    let dir = scratch_dir("simulate-runs-bad-arguments");
    let mut files = files(&dir, 0.7);
    for (flag, value) in [("--runs", "0"), ("--concurrency", "-1"), ("--runs", "many")] {
        let output = simulate(&files, &[flag, value]);
        assert_exit(&output, 2);
        assert_eq!(
            stderr_lines(&output)[0],
            format!(
                "tradeflow: {flag} `{value}`: expected a whole number from 1 to {}",
                u32::MAX
            )
        );
    }
    files.context = write(&dir, "context-list.json", &json!([0.7]));
    let output = simulate(&files, &[]);
    assert_exit(&output, 2);
    assert_eq!(
        stderr_lines(&output),
        [format!(
            "{}: expected a JSON object of host values by name ({{\"market.isOpen\": true}}), \
             found an array",
            files.context
        )]
    );
    files.context = write(&dir, "context-empty-name.json", &json!({"()": 1, "ok": 2}));
    let output = simulate(&files, &[]);
    assert_exit(&output, 2);
    assert_eq!(
        stderr_lines(&output),
        [format!(
            "{}: \"()\": a context name cannot be empty",
            files.context
        )]
    );
}

/// A backtest of a decision: two execution algorithms whose scripted fills differ
/// (`slow` 0.4, `fast` 0.8, ±0.05), chosen by THOMPSON with the fill as reward, the
/// context key the input's `regime`.
fn decision_files(dir: &Path) -> (String, String, String) {
    let workflow = json!({
        "id": "exec",
        "steps": [{
            "id": "execution", "type": "decision", "agentCriteria": {"type": "DESK"},
            "task": {"type": "EXECUTE", "parameters": {"qty": 10}},
            "decision": {
                "options": [
                    {"id": "slow", "parameters": {"meanFill": 0.4}},
                    {"id": "fast", "parameters": {"meanFill": 0.8}}
                ],
                "contextKey": "${input.regime}",
                "reward": "${execution.output.fill}"
            }
        }]
    });
    let agents = json!({"agents": [{
        "id": "desk-1", "type": "DESK",
        "tasks": {"EXECUTE": {
            "random": {"fill": {"normal": ["${params.meanFill}", 0.05]}},
            "output": {"fill": "${random.fill}"}
        }}
    }]});
    (
        write(dir, "workflow.json", &workflow),
        write(dir, "agents.json", &agents),
        write_lines(
            dir,
            "inputs.jsonl",
            &[
                r#"{"regime": "calm"}"#,
                r#"{"regime": "calm"}"#,
                r#"{"regime": "wild"}"#,
            ],
        ),
    )
}

#[test]
fn many_runs_of_a_decision_list_what_each_context_chose_and_earned() {
    let dir = scratch_dir("simulate-runs-decisions");
    let (workflow, agents, inputs) = decision_files(&dir);
    let args = [
        "simulate", &workflow, "--agents", &agents, "--inputs", &inputs, "--runs", "60", "--seed",
        "3",
    ];
    let output = run(&args);
    let value = many(&output);
    let decisions = &value["decisions"]["execution"];
    let contexts: Vec<&String> = decisions.as_object().expect("contexts").keys().collect();
    assert_eq!(contexts, ["calm", "wild"], "{decisions:#}");
    let chosen =
        |context: &str, option: &str| decisions[context][option]["chosen"].as_u64().unwrap_or(0);
    assert_eq!(chosen("calm", "slow") + chosen("calm", "fast"), 40);
    assert_eq!(chosen("wild", "slow") + chosen("wild", "fast"), 20);
    assert!(
        chosen("calm", "fast") > chosen("calm", "slow"),
        "{decisions:#}"
    );
    // Each option's mean reward is the mean of its scripted fills.
    for context in ["calm", "wild"] {
        for (option, mean) in [("slow", 0.4), ("fast", 0.8)] {
            let entry = &decisions[context][option];
            if chosen(context, option) > 0 {
                let reward = entry["meanReward"].as_f64().expect("a mean reward");
                assert!((reward - mean).abs() < 0.05, "{context}/{option}: {reward}");
            }
        }
    }
    // Every report says what its run chose, and the reward it learned.
    for decision in each(&value, "/steps/execution/decision") {
        assert!(
            decision["option"].is_string() && decision["reward"].is_number(),
            "{decision}"
        );
    }
    // The same files and seed: the same bytes.
    assert_eq!(stdout(&run(&args)), stdout(&output));
}
