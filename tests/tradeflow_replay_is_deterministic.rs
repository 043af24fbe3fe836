//! `tradeflow replay` plays a timeline through a workflow's triggers on a virtual clock:
//! the same files and seed give the same bytes; runs are ordered by firing time, then
//! trigger index, then timeline order; invalid files exit 2 naming the field.

#[path = "support/command.rs"]
mod command;

use std::path::Path;
use std::sync::Arc;

use command::{run, scratch_dir, stderr_lines, stdout};
use serde_json::{Value, json};
use tradeflow::clock::VirtualClock;
use tradeflow::engine::{Engine, RunIds};
use tradeflow::plan::ExecutionPlan;
use tradeflow::scheduler::{Timeline, Triggers};
use tradeflow::sim::{AgentsFile, scripted_agents};

const TIMELINE: &str = "examples/timelines/portfolio-rebalancing.json";

fn workflow(name: &str) -> String {
    format!("examples/workflows/{name}.json")
}

fn agents(name: &str) -> String {
    format!("examples/agents/{name}.json")
}

/// `tradeflow replay` of reference workflow `name` with the reference timeline.
fn replay(name: &str, seed: &str) -> std::process::Output {
    run(&[
        "replay",
        &workflow(name),
        "--agents",
        &agents(name),
        "--timeline",
        TIMELINE,
        "--seed",
        seed,
    ])
}

/// `(trigger, firedAt, status)` of each run of a replay's output, checking that each run
/// started when it fired and that runs are numbered in order.
#[track_caller]
fn runs_of(output: &std::process::Output) -> Vec<(String, String, String)> {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        stderr_lines(output).join("\n")
    );
    let result: Value = serde_json::from_str(&stdout(output)).expect("JSON on stdout");
    let runs = result["runs"].as_array().expect("a `runs` array");
    assert_eq!(
        result.as_object().unwrap().len(),
        1,
        "only `runs`: {result:#}"
    );
    runs.iter()
        .enumerate()
        .map(|(index, run)| {
            assert_eq!(run.as_object().unwrap().len(), 3, "{run:#}");
            let report = &run["report"];
            assert_eq!(report["startedAt"], run["firedAt"], "{run:#}");
            assert_eq!(report["runId"], json!(format!("run-{}", index + 1)));
            (
                run["trigger"].as_str().unwrap().to_owned(),
                run["firedAt"].as_str().unwrap().to_owned(),
                report["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn triple(trigger: &str, fired_at: &str) -> (String, String, String) {
    (
        trigger.to_owned(),
        fired_at.to_owned(),
        "COMPLETED".to_owned(),
    )
}

#[test]
fn the_same_files_and_seed_give_the_same_bytes() {
    for name in ["portfolio-rebalancing", "algo-trading"] {
        let first = replay(name, "7");
        let second = replay(name, "7");
        assert_eq!(
            first.status.code(),
            Some(0),
            "{name}: {:?}",
            stderr_lines(&first)
        );
        assert!(!first.stdout.is_empty());
        assert_eq!(first.stdout, second.stdout, "{name}: stdout differs");
        assert_eq!(first.stderr, second.stderr, "{name}: stderr differs");
    }
}

#[test]
fn the_reference_timeline_fires_the_portfolio_triggers() {
    // Monday 00:00 the weekly schedule (9 days since the last rebalance); the drift
    // crosses 10% on Tuesday (fires), falls back on Wednesday, crosses again on
    // Wednesday afternoon while the market is too volatile (held), and fires at
    // Thursday's report once volatility is back under 0.25.
    let output = replay("portfolio-rebalancing", "0");
    assert_eq!(
        runs_of(&output),
        [
            triple("triggers[0] (SCHEDULED)", "2026-11-23T00:00:00Z"),
            triple("triggers[1] (THRESHOLD)", "2026-11-24T15:00:00Z"),
            triple("triggers[1] (THRESHOLD)", "2026-11-26T10:00:00Z"),
        ]
    );
    let stderr = stderr_lines(&output).join("\n");
    assert!(
        stderr.contains(
            "2026-11-25 14:00:00.000  triggers[1] (THRESHOLD)  not fired: condition false \
             (`market.volatility < 0.25`)"
        ),
        "{stderr}"
    );
}

#[test]
fn the_reference_timeline_fires_the_algo_trading_triggers() {
    // Weekday 09:00 UTC while the market is open and calm (Wednesday is too volatile),
    // and the strong MARKET_SIGNAL of Tuesday (Thursday's is too weak).
    let output = replay("algo-trading", "0");
    assert_eq!(
        runs_of(&output),
        [
            triple("triggers[0] (SCHEDULED)", "2026-11-23T09:00:00Z"),
            triple("triggers[0] (SCHEDULED)", "2026-11-24T09:00:00Z"),
            triple("triggers[1] (EVENT)", "2026-11-24T13:00:00Z"),
            triple("triggers[0] (SCHEDULED)", "2026-11-26T09:00:00Z"),
            triple("triggers[0] (SCHEDULED)", "2026-11-27T09:00:00Z"),
        ]
    );
}

#[test]
fn the_command_prints_what_the_library_plays() {
    let name = "algo-trading";
    let plan = ExecutionPlan::from_json(&std::fs::read_to_string(workflow(name)).unwrap()).unwrap();
    let file = AgentsFile::from_json(&std::fs::read_to_string(agents(name)).unwrap()).unwrap();
    let timeline = Timeline::from_json(&std::fs::read_to_string(TIMELINE).unwrap()).unwrap();
    let play = || {
        let clock = VirtualClock::starting_at(timeline.start);
        let engine = Engine::builder()
            .clock(clock.clone())
            .seed(3)
            .run_ids(RunIds::Numbered)
            .build();
        for agent in scripted_agents(&file, Arc::new(clock.clone())) {
            engine.register_agent(agent).unwrap();
        }
        let workflow = engine.add_plan(plan.clone());
        let triggers = Triggers::new(&engine, &workflow.id).unwrap();
        clock.block_on(timeline.play(&triggers))
    };
    let replayed = play();
    assert_eq!(replayed, play());
    assert_eq!(replayed.runs.len(), 5);
    assert_eq!(replayed.considered.len(), 7, "two did not fire");
    assert_eq!(
        stdout(&replay(name, "3")),
        format!("{}\n", replayed.to_json_pretty())
    );
}

/// Writes the files of a small replay to `dir`: a workflow with an EVENT, a SCHEDULED
/// and a THRESHOLD trigger, its agents, and `timeline`.
fn write_files(dir: &Path, timeline: &Value) -> [String; 3] {
    let workflow = json!({
        "id": "ties",
        "steps": [{"id": "s", "type": "task", "agentCriteria": {"type": "T"},
                   "task": {"type": "T", "parameters": {"n": "${input.n}"}}}],
        "triggers": [
            {"type": "EVENT", "eventType": "X", "condition": {"expression": "event.n > 0"}},
            {"type": "SCHEDULED", "schedule": "0 12 * * *", "condition": {"expression": "armed"}},
            {"type": "THRESHOLD", "metric": "m", "threshold": 1}
        ]
    });
    let agents = json!({"agents": [{"id": "a-1", "type": "T", "maxConcurrency": 8,
                                    "tasks": {"T": {"output": {"n": "${params.n}"}, "delayMs": 90000}}}]});
    let paths = ["workflow.json", "agents.json", "timeline.json"].map(|name| dir.join(name));
    for (path, contents) in paths.iter().zip([&workflow, &agents, timeline]) {
        std::fs::write(path, contents.to_string()).unwrap();
    }
    paths.map(|path| path.to_str().unwrap().to_owned())
}

fn replay_files([workflow, agents, timeline]: &[String; 3]) -> std::process::Output {
    run(&[
        "replay",
        workflow,
        "--agents",
        agents,
        "--timeline",
        timeline,
    ])
}

#[test]
fn ties_are_ordered_by_trigger_index_then_timeline_order() {
    let dir = scratch_dir("replay-ties");
    // At 12:00 everything happens at once; the change at 12:00 is applied first.
    let timeline = json!({
        "start": "2026-11-23T12:00:00Z", "end": "2026-11-24T12:00:00Z",
        "context": {"armed": false},
        "changes": [{"at": "2026-11-23T12:00:00Z", "set": {"armed": true}}],
        "metrics": [{"at": "2026-11-23T12:00:00Z", "name": "m", "value": 5}],
        "events": [
            {"at": "2026-11-23T12:01:00Z", "type": "X", "payload": {"n": 3}},
            {"at": "2026-11-23T12:00:00Z", "type": "X", "payload": {"n": 1}},
            {"at": "2026-11-23T12:00:00Z", "type": "X", "payload": {"n": 2}},
            {"at": "2026-11-23T12:00:00Z", "type": "X", "payload": {"n": 0}}
        ],
        "input": {"n": 42}
    });
    let output = replay_files(&write_files(&dir, &timeline));
    assert_eq!(
        runs_of(&output),
        [
            triple("triggers[0] (EVENT)", "2026-11-23T12:00:00Z"),
            triple("triggers[0] (EVENT)", "2026-11-23T12:00:00Z"),
            triple("triggers[1] (SCHEDULED)", "2026-11-23T12:00:00Z"),
            triple("triggers[2] (THRESHOLD)", "2026-11-23T12:00:00Z"),
            triple("triggers[0] (EVENT)", "2026-11-23T12:01:00Z"),
        ]
    );
    let result: Value = serde_json::from_str(&stdout(&output)).unwrap();
    // Runs overlap in virtual time (each takes 90 s) and all use the timeline's input.
    for run in result["runs"].as_array().unwrap() {
        assert_eq!(run["report"]["steps"]["s"]["output"], json!({"n": 42}));
    }
    assert_eq!(
        result["runs"][4]["report"]["endedAt"],
        json!("2026-11-23T12:02:30Z")
    );
    let stderr = stderr_lines(&output).join("\n");
    assert!(
        stderr.contains("triggers[0] (EVENT)  not fired: condition false (`event.n > 0`)"),
        "{stderr}"
    );
}

#[test]
fn an_invalid_timeline_exits_2_naming_the_field() {
    let dir = scratch_dir("replay-invalid");
    let timeline = json!({
        "start": "2026-11-23T00:00:00Z", "end": "2026-11-28T00:00:00Z",
        "events": [
            {"at": "2026-11-24T13:00:00Z", "type": "X"},
            {"at": "2026-11-29T13:00:00Z", "type": "X"},
            {"at": "2026-11-24", "type": "X"}
        ],
        "metrics": [{"at": "2026-11-24T13:00:00Z", "name": "m", "vlaue": 1}]
    });
    let files = write_files(&dir, &timeline);
    let output = replay_files(&files);
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let path = &files[2];
    assert_eq!(
        stderr_lines(&output),
        [
            format!(
                "{path}: events[1].at: invalid value \"2026-11-29T13:00:00Z\": at or after the \
                 timeline's end (2026-11-28T00:00:00Z)"
            ),
            format!(
                "{path}: events[2].at: invalid value \"2026-11-24\": premature end of input \
                 (expected RFC 3339, like 2026-11-24T13:00:00Z)"
            ),
            format!("{path}: metrics[0]: unknown field `vlaue` (did you mean `value`?)"),
            format!("{path}: metrics[0]: missing required field `value`"),
        ]
    );

    // Problems of the top level name the field, not a location.
    std::fs::write(
        &files[2],
        r#"{"start": "2026-11-23T00:00:00Z", "evnts": []}"#,
    )
    .unwrap();
    let output = replay_files(&files);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr_lines(&output),
        [
            format!("{path}: unknown field `evnts` (did you mean `events`?)"),
            format!("{path}: missing required field `end`"),
        ]
    );

    // Malformed JSON: line and column.
    std::fs::write(&files[2], "{\n  \"start\": ,\n}").unwrap();
    let output = replay_files(&files);
    assert_eq!(output.status.code(), Some(2));
    let lines = stderr_lines(&output);
    assert!(
        lines[0].starts_with(&format!("{path}: line 2, column 12: malformed JSON")),
        "{lines:?}"
    );
}

#[test]
fn bad_arguments_and_files_exit_2() {
    let name = "portfolio-rebalancing";
    let (workflow, agents) = (workflow(name), agents(name));
    let dir = scratch_dir("replay-no-triggers");
    let no_triggers = dir.join("plain.json");
    std::fs::write(
        &no_triggers,
        json!({"id": "plain", "steps": [{"id": "s", "type": "task",
               "agentCriteria": {"type": "PORTFOLIO_MANAGEMENT"},
               "task": {"type": "PORTFOLIO_ANALYSIS"}}]})
        .to_string(),
    )
    .unwrap();
    let no_triggers = no_triggers.to_str().unwrap();
    // Agents without scripted approvals: the workflow has no approval step.
    let algo_agents = self::agents("algo-trading");
    for (args, expected) in [
        (
            vec!["replay", &workflow, "--agents", &agents],
            "replay needs --timeline TIMELINE.json",
        ),
        (
            vec!["replay", &workflow, "--timeline", TIMELINE],
            "replay needs --agents AGENTS.json",
        ),
        (
            vec![
                "replay",
                &workflow,
                "--agents",
                &agents,
                "--timeline",
                TIMELINE,
                "--seed",
                "x",
            ],
            "--seed `x`",
        ),
        (
            vec![
                "replay",
                &workflow,
                "--agents",
                &agents,
                "--timeline",
                TIMELINE,
                "--input",
                "x",
            ],
            "replay has no option `--input`",
        ),
        (
            vec![
                "replay",
                &workflow,
                "--agents",
                &agents,
                "--timeline",
                "missing.json",
            ],
            "missing.json: cannot read",
        ),
        (
            vec![
                "replay",
                no_triggers,
                "--agents",
                &algo_agents,
                "--timeline",
                TIMELINE,
            ],
            "has no triggers: nothing to replay",
        ),
    ] {
        let output = run(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        let stderr = stderr_lines(&output).join("\n");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
