//! `tradeflow run`: the reference workflow runs to completion on the real clock, journaled
//! to a SQLite store, with one effects line per agent call; afterwards `resume` finds
//! nothing to do. A run stuck on an approval nobody answers stays unfinished in the store,
//! and `resume` with agents that answer it finishes it without calling again what was
//! done. Runs in one store get distinct ids.
#![cfg(feature = "sqlite")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Output;

#[path = "support/command.rs"]
mod command;

use command::{assert_exit, json_lines, run, scratch_dir, stderr_lines, stdout, text, write};

use serde_json::{Value, json};
use tradeflow::engine::RunStatus;
use tradeflow::store::{RunState, RunStore, SqliteStore};

/// The pretty report `run` prints.
fn report(output: &Output) -> Value {
    let text = stdout(output);
    assert!(text.ends_with("}\n"), "a report and a newline: {text:?}");
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}: {text}"))
}

/// The reports `resume` prints: one compact JSON document a line.
fn reports(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}")))
        .collect()
}

/// The runs the store lists as unfinished.
fn unfinished(store: &Path) -> Vec<String> {
    let store = SqliteStore::open(store).expect("the store opens");
    store
        .unfinished_runs()
        .expect("the store lists its runs")
        .iter()
        .map(|run| run.as_str().to_owned())
        .collect()
}

#[test]
fn the_algo_trading_workflow_runs_to_completion_records_every_call_and_leaves_nothing_to_resume() {
    let dir = scratch_dir("run-algo-trading");
    let (store, effects) = (dir.join("runs.db"), dir.join("effects.jsonl"));
    let store_arg = format!("sqlite:{}", text(&store));
    let output = run(&[
        "run",
        "examples/workflows/algo-trading.json",
        "--agents",
        "examples/agents/algo-trading.json",
        "--input",
        "examples/inputs/algo-trading.json",
        "--store",
        &store_arg,
        "--effects",
        text(&effects),
    ]);
    assert_exit(&output, 0);
    let report = report(&output);
    assert_eq!(report["status"], "COMPLETED");
    assert_eq!(report["workflowId"], "algo-trading-strategy");
    let run_id = report["runId"].as_str().expect("a run id");
    assert!(run_id.starts_with("run-"), "{run_id}");
    let steps = report["steps"].as_object().expect("steps");
    assert_eq!(steps.len(), 5, "{report:#}");
    for (step, step_report) in steps {
        assert_eq!(step_report["status"], "COMPLETED", "{step}: {report:#}");
    }

    // One line per call, with exactly the fields of docs/command.md.
    let workflow: Value = serde_json::from_str(
        &std::fs::read_to_string("examples/workflows/algo-trading.json").expect("the workflow"),
    )
    .expect("JSON");
    let task_types: BTreeMap<&str, &Value> = workflow["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|step| (step["id"].as_str().expect("an id"), &step["task"]["type"]))
        .collect();
    let lines = json_lines(&effects);
    let mut calls: BTreeMap<String, u64> = BTreeMap::new();
    for line in &lines {
        let fields: BTreeSet<&str> = line
            .as_object()
            .expect("a JSON object a line")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            fields,
            BTreeSet::from([
                "runId",
                "stepId",
                "item",
                "attempt",
                "agentId",
                "idempotencyKey",
                "taskType"
            ]),
            "{line}"
        );
        assert_eq!(line["runId"], run_id, "{line}");
        let step = line["stepId"].as_str().expect("a step id");
        assert!(steps.contains_key(step), "{line}");
        assert!(line["attempt"].as_u64().is_some_and(|n| n >= 1), "{line}");
        assert!(line["agentId"].is_string(), "{line}");
        let key = line["idempotencyKey"].as_str().expect("a key");
        assert!(key.starts_with(&format!("{run_id}/{step}/")), "{line}");
        assert_eq!(
            &line["taskType"], task_types[step],
            "the step's task: {line}"
        );
        if step == "order-execution" {
            assert!(
                line["item"].is_u64(),
                "a parallel step's call names its item: {line}"
            );
        } else {
            assert!(line["item"].is_null(), "{line}");
        }
        *calls.entry(step.to_owned()).or_default() += 1;
    }
    // As many lines as the report counts calls, step by step.
    let attempts: BTreeMap<String, u64> = steps
        .iter()
        .filter_map(|(step, report)| Some((step.clone(), report["attempts"].as_u64()?)))
        .collect();
    assert_eq!(calls, attempts, "effects:\n{lines:#?}");
    // The retry of the risk assessment (busy once) carries the first call's key.
    let risk: Vec<&Value> = lines
        .iter()
        .filter(|line| line["stepId"] == "risk-assessment")
        .collect();
    assert_eq!(risk.len(), 2, "{risk:#?}");
    assert_eq!(risk[0]["idempotencyKey"], risk[1]["idempotencyKey"]);
    assert_eq!(
        (&risk[0]["attempt"], &risk[1]["attempt"]),
        (&json!(1), &json!(2))
    );

    // The journal says the run ended; `resume` has nothing to do.
    assert!(unfinished(&store).is_empty());
    let journal = SqliteStore::open(&store)
        .expect("the store opens")
        .load(&run_id.into())
        .expect("the journal loads");
    let state = RunState::fold(&journal).expect("the journal folds");
    assert_eq!(state.status, RunStatus::Completed);
    let resumed = run(&["resume", "--store", &store_arg]);
    assert_exit(&resumed, 0);
    assert!(resumed.stdout.is_empty(), "{}", stdout(&resumed));
    assert!(
        stderr_lines(&resumed)
            .iter()
            .any(|line| line.contains("nothing to resume")),
        "{:?}",
        stderr_lines(&resumed)
    );
    // Even with agents and an effects file: nothing is called.
    let resumed = run(&[
        "resume",
        "--store",
        &store_arg,
        "--agents",
        "examples/agents/algo-trading.json",
        "--effects",
        text(&effects),
    ]);
    assert_exit(&resumed, 0);
    assert!(resumed.stdout.is_empty());
    assert_eq!(json_lines(&effects).len(), lines.len());
}

/// `prep` → `approve` (no timeout) → `book`.
fn gated_workflow() -> Value {
    json!({"id": "gate", "version": "1", "steps": [
        {"id": "prep", "type": "task", "agentCriteria": {"type": "DESK"},
         "task": {"type": "PREP"}},
        {"id": "approve", "type": "human_approval"},
        {"id": "book", "type": "task", "agentCriteria": {"type": "DESK"},
         "task": {"type": "BOOK", "parameters": {"prepared": "${prep.output.ready}"}}}
    ]})
}

/// The agents of [`gated_workflow`], with `approvals`.
fn desk(approvals: Value) -> Value {
    json!({
        "agents": [{"id": "desk-1", "type": "DESK", "tasks": {
            "PREP": {"output": {"ready": true}, "delayMs": 50},
            "BOOK": {"output": {"booked": "${params.prepared}"}, "delayMs": 50}
        }}],
        "approvals": approvals
    })
}

#[test]
fn a_run_stuck_on_an_unanswered_approval_stays_in_the_store_and_resume_finishes_it() {
    let dir = scratch_dir("run-stuck-approval");
    let workflow = write(&dir, "workflow.json", &gated_workflow());
    let silent = write(&dir, "silent.json", &desk(json!({})));
    let answering = write(
        &dir,
        "answering.json",
        &desk(json!({"approve": {"approved": true, "by": "pm@desk", "afterMs": 100}})),
    );
    let (store, effects) = (dir.join("runs.db"), dir.join("effects.jsonl"));
    let store_arg = format!("sqlite:{}", text(&store));

    let output = run(&[
        "run",
        &workflow,
        "--agents",
        &silent,
        "--store",
        &store_arg,
        "--effects",
        text(&effects),
    ]);
    assert_exit(&output, 1);
    assert!(output.stdout.is_empty(), "{}", stdout(&output));
    let lines = stderr_lines(&output);
    let last = lines.last().expect("progress lines");
    assert!(
        last.contains("is stuck") && last.contains("`approve`"),
        "{last}"
    );
    let stuck = unfinished(&store);
    assert_eq!(stuck.len(), 1, "{stuck:?}");
    let before = json_lines(&effects);
    assert_eq!(before.len(), 1, "only `prep` was called: {before:#?}");

    // Without agents, resume refuses, naming the run.
    let refused = run(&["resume", "--store", &store_arg]);
    assert_exit(&refused, 2);
    assert!(
        stderr_lines(&refused)
            .iter()
            .any(|line| line.contains("--agents") && line.contains(&stuck[0])),
        "{:?}",
        stderr_lines(&refused)
    );

    let resumed = run(&[
        "resume",
        "--store",
        &store_arg,
        "--agents",
        &answering,
        "--effects",
        text(&effects),
    ]);
    assert_exit(&resumed, 0);
    let reports = reports(&resumed);
    assert_eq!(reports.len(), 1, "{}", stdout(&resumed));
    let report = &reports[0];
    assert_eq!(report["runId"], stuck[0]);
    assert_eq!(report["status"], "COMPLETED", "{report:#}");
    assert_eq!(report["steps"]["approve"]["approvedBy"], "pm@desk");
    assert_eq!(report["steps"]["book"]["output"], json!({"booked": true}));
    // `prep` was journaled as done: only `book` was called after the restart.
    let after = json_lines(&effects);
    let called: Vec<&Value> = after[before.len()..]
        .iter()
        .map(|line| &line["stepId"])
        .collect();
    assert_eq!(called, [&json!("book")], "{after:#?}");
    assert!(unfinished(&store).is_empty());
}

#[test]
fn runs_in_one_store_get_distinct_ids_and_answers_come_on_the_real_clock() {
    let dir = scratch_dir("run-distinct-ids");
    let workflow = write(&dir, "workflow.json", &gated_workflow());
    let agents = write(
        &dir,
        "agents.json",
        &desk(json!({"approve": {"approved": true, "by": "pm@desk", "afterMs": 200}})),
    );
    let store_arg = format!("sqlite:{}", text(&dir.join("runs.db")));
    let mut ids = BTreeSet::new();
    for _ in 0..2 {
        let output = run(&["run", &workflow, "--agents", &agents, "--store", &store_arg]);
        assert_exit(&output, 0);
        let report = report(&output);
        assert_eq!(report["status"], "COMPLETED", "{report:#}");
        assert_eq!(report["steps"]["approve"]["approvedBy"], "pm@desk");
        // The answer came 200 real milliseconds after the step started waiting.
        let started =
            chrono::DateTime::parse_from_rfc3339(report["startedAt"].as_str().expect("startedAt"))
                .expect("RFC 3339");
        let ended =
            chrono::DateTime::parse_from_rfc3339(report["endedAt"].as_str().expect("endedAt"))
                .expect("RFC 3339");
        assert!(
            (ended - started).num_milliseconds() >= 300,
            "50 ms + 200 ms + 50 ms at least: {report:#}"
        );
        ids.insert(report["runId"].as_str().expect("a run id").to_owned());
    }
    assert_eq!(ids.len(), 2, "{ids:?}");
}
