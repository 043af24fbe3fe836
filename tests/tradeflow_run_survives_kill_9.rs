//! `tradeflow run` killed with SIGKILL at several points, then `tradeflow resume` on the
//! same store: the run completes with every step completed; no step the journal had as
//! completed at the kill is called again; every call cut off by the kill is made again
//! with the interrupted call's idempotency key; an approval that was waiting is answered
//! again. The effects file is the witness of every call, before and after the kill.
#![cfg(all(unix, feature = "sqlite"))]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;

#[path = "support/command.rs"]
mod command;

use command::{ScratchDir, command, json_lines, kill_when, scratch_dir, stderr_lines, stdout};

use serde_json::{Value, json};
use tradeflow::agent::RunId;
use tradeflow::engine::{RunStatus, StepStatus};
use tradeflow::store::{RunState, RunStore, SqliteStore};

/// `fetch` → `signal` → `size` → `execute` (3 orders in parallel) → `approve` → `confirm`
/// → `book` → `report`, each binding to an output before it: 9 agent calls.
fn chain_workflow() -> Value {
    let task = |id: &str, task: &str, parameters: Value| {
        json!({"id": id, "type": "task", "agentCriteria": {"type": "DESK"},
               "task": {"type": task, "parameters": parameters}})
    };
    json!({"id": "crash-chain", "version": "1", "steps": [
        task("fetch", "FETCH", json!({})),
        task("signal", "SIGNAL", json!({"prices": "${fetch.output.prices}"})),
        task("size", "SIZE", json!({"side": "${signal.output.side}"})),
        {"id": "execute", "type": "parallel", "agentCriteria": {"type": "VENUE"},
         "task": {"type": "EXECUTE", "parameters": {"orders": "${size.output.orders}"}}},
        {"id": "approve", "type": "human_approval"},
        task("confirm", "CONFIRM", json!({"orderIds": "${execute.output.orderIds}"})),
        task("book", "BOOK", json!({"confirmed": "${confirm.output.confirmed}"})),
        task("report", "REPORT", json!({"booked": "${book.output.booked}"})),
    ]})
}

/// Agents that take real time: 200 ms a call, 300 ms an order; the approval comes
/// 300 ms after the step starts waiting. Wide windows: a kill point is never missed on
/// a busy machine.
fn chain_agents() -> Value {
    json!({
        "agents": [
            {"id": "desk-1", "type": "DESK", "tasks": {
                "FETCH": {"output": {"prices": [101.5, 99.25]}, "delayMs": 200},
                "SIGNAL": {"output": {"side": "BUY", "prices": "${params.prices}"}, "delayMs": 200},
                "SIZE": {"output": {"orders": [{"id": "o-1"}, {"id": "o-2"}, {"id": "o-3"}]},
                         "delayMs": 200},
                "CONFIRM": {"output": {"confirmed": "${params.orderIds}"}, "delayMs": 200},
                "BOOK": {"output": {"booked": "${params.confirmed}"}, "delayMs": 200},
                "REPORT": {"output": {"sent": "${params.booked}"}, "delayMs": 200}
            }},
            {"id": "venue-1", "type": "VENUE", "maxConcurrency": 3, "tasks": {
                "EXECUTE": {"output": {"orderIds": ["${params.orders.id}"]}, "delayMs": 300}
            }}
        ],
        "approvals": {"approve": {"approved": true, "by": "pm@desk", "afterMs": 300}}
    })
}

const STEPS: [&str; 8] = [
    "fetch", "signal", "size", "execute", "approve", "confirm", "book", "report",
];

/// The files of one scenario, in a directory of its own.
struct Scenario {
    dir: ScratchDir,
    workflow: PathBuf,
    agents: PathBuf,
    store: PathBuf,
    effects: PathBuf,
}

impl Scenario {
    fn new(name: &str) -> Self {
        let dir = scratch_dir(&format!("kill-9-{name}"));
        let workflow = dir.join("workflow.json");
        let agents = dir.join("agents.json");
        std::fs::write(&workflow, chain_workflow().to_string()).expect("write the workflow");
        std::fs::write(&agents, chain_agents().to_string()).expect("write the agents");
        Self {
            store: dir.join("runs.db"),
            effects: dir.join("effects.jsonl"),
            dir,
            workflow,
            agents,
        }
    }

    fn store_arg(&self) -> String {
        format!("sqlite:{}", text(&self.store))
    }

    /// Starts `tradeflow run`, polls the effects file and the progress on stderr every
    /// few milliseconds, and kills the process (SIGKILL) as soon as `kill_now` says so.
    /// Returns the effects lines written before the kill.
    fn run_and_kill(&self, kill_now: impl Fn(&[Value], &str) -> bool) -> Vec<Value> {
        let mut run = command();
        run.args(["run", text(&self.workflow), "--agents", text(&self.agents)])
            .args([
                "--store",
                &self.store_arg(),
                "--effects",
                text(&self.effects),
            ]);
        kill_when(run, &self.dir.join("run.stderr"), |progress| {
            kill_now(&json_lines(&self.effects), progress)
        });
        json_lines(&self.effects)
    }

    /// The one unfinished run of the store, as its journal folds.
    fn journaled(&self) -> RunState {
        let store = SqliteStore::open(&self.store).expect("the store opens after the kill");
        let unfinished = store.unfinished_runs().expect("the store lists its runs");
        let [run] = unfinished.as_slice() else {
            panic!("one unfinished run expected, got {unfinished:?}");
        };
        RunState::fold(&store.load(run).expect("the journal loads")).expect("the journal folds")
    }

    fn resume(&self) -> Output {
        command()
            .args(["resume", "--store", &self.store_arg()])
            .args([
                "--agents",
                text(&self.agents),
                "--effects",
                text(&self.effects),
            ])
            .output()
            .expect("run tradeflow resume")
    }
}

fn text(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// How many effects lines name `step`.
fn calls_of(lines: &[Value], step: &str) -> usize {
    lines.iter().filter(|line| line["stepId"] == step).count()
}

/// `(step, item)` of an effects line.
fn call(line: &Value) -> (String, Option<u64>) {
    (
        line["stepId"].as_str().expect("a step id").to_owned(),
        line["item"].as_u64(),
    )
}

/// What a kill point left and what the resume did, for checks of that kill point.
struct Resumed {
    /// The journal's state at the kill.
    at_kill: RunState,
    /// The effects lines written by `resume`.
    after: Vec<Value>,
    /// The report of the resumed run.
    report: Value,
    /// The progress of `resume`.
    stderr: String,
}

/// Kills a run where `kill_now` says, resumes it, and checks the contract.
fn kill_and_resume(name: &str, kill_now: impl Fn(&[Value], &str) -> bool) -> Resumed {
    let scenario = Scenario::new(name);
    let before = scenario.run_and_kill(kill_now);
    let at_kill = scenario.journaled();
    assert!(!at_kill.is_finished(), "{at_kill:#?}");
    let run_id = at_kill.run_id.as_str();
    let completed: BTreeSet<&str> = at_kill
        .steps
        .iter()
        .filter(|(_, step)| step.status == StepStatus::Completed)
        .map(|(id, _)| id.as_str())
        .collect();

    let resumed = scenario.resume();
    let stderr = stderr_lines(&resumed).join("\n");
    assert_eq!(
        resumed.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{stderr}",
        stdout(&resumed)
    );
    let out = stdout(&resumed);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "one report, one line: {out}");
    let report: Value = serde_json::from_str(lines[0]).expect("a JSON report");
    assert_eq!(report["runId"], run_id, "{report:#}");
    assert_eq!(report["status"], "COMPLETED", "{report:#}\n{stderr}");
    for step in STEPS {
        assert_eq!(
            report["steps"][step]["status"], "COMPLETED",
            "{step}: {report:#}"
        );
    }
    assert_eq!(
        report["steps"]["report"]["output"],
        json!({"sent": ["o-1", "o-2", "o-3"]}),
        "the outputs flowed through the restart: {report:#}"
    );
    // Steps done before the kill keep the output the journal has.
    for step in &completed {
        let journaled = at_kill.steps[*step].output.clone().expect("an output");
        assert_eq!(report["steps"][*step]["output"], journaled, "{step}");
    }

    let all = json_lines(&scenario.effects);
    assert_eq!(
        all[..before.len()],
        before[..],
        "the file is only appended to"
    );
    let after = &all[before.len()..];
    for line in after {
        assert_eq!(line["runId"], run_id, "{line}");
        let (step, _) = call(line);
        // No step journaled as completed is called again.
        assert!(
            !completed.contains(step.as_str()),
            "`{step}` was completed at the kill, yet called again: {line}\nbefore: {before:#?}"
        );
    }
    // A call re-made for a step cut off by the kill carries the interrupted call's key.
    let keys_before: BTreeMap<(String, Option<u64>), &Value> = before
        .iter()
        .map(|line| (call(line), &line["idempotencyKey"]))
        .collect();
    for line in after {
        if let Some(key) = keys_before.get(&call(line)) {
            assert_eq!(&line["idempotencyKey"], *key, "{line}\nbefore: {before:#?}");
        }
    }
    // Every call the journal had in flight is made again, with its key.
    for (step, state) in &at_kill.steps {
        for in_flight in &state.in_flight {
            assert!(
                after.iter().any(|line| line["stepId"] == step.as_str()
                    && line["item"] == json!(in_flight.item)
                    && line["idempotencyKey"] == in_flight.idempotency_key.as_str()),
                "{step} {in_flight:?} was not made again with its key: {after:#?}"
            );
        }
    }
    // Each call happened at most once before and once after (no retries are scripted).
    for step in STEPS {
        assert!(
            calls_of(&before, step) <= 3 && calls_of(after, step) <= 3,
            "{all:#?}"
        );
    }

    // The journal agrees: the run ended, completed.
    let store = SqliteStore::open(&scenario.store).expect("the store opens");
    assert!(store.unfinished_runs().expect("listed").is_empty());
    let state = RunState::fold(&store.load(&RunId::from(run_id)).expect("the journal loads"))
        .expect("the journal folds");
    assert_eq!(state.status, RunStatus::Completed);
    Resumed {
        after: after.to_vec(),
        at_kill,
        report,
        stderr,
    }
}

/// Whether `stderr` has a progress line of `step` with `verb`.
fn shows(stderr: &str, step: &str, verb: &str) -> bool {
    stderr.lines().any(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        words.windows(2).any(|pair| pair == [step, verb])
    })
}

#[test]
fn a_run_killed_during_its_first_call_makes_that_call_again_with_the_same_key() {
    let resumed = kill_and_resume("first-call", |effects, _| !effects.is_empty());
    let fetch = &resumed.at_kill.steps["fetch"];
    assert_eq!(fetch.in_flight.len(), 1, "{fetch:#?}");
    assert_eq!(
        resumed.after[0]["idempotencyKey"],
        fetch.in_flight[0].idempotency_key.as_str()
    );
}

#[test]
fn a_run_killed_after_two_steps_does_not_call_them_again() {
    let resumed = kill_and_resume("third-call", |effects, _| effects.len() >= 3);
    let steps = &resumed.at_kill.steps;
    assert_eq!(steps["fetch"].status, StepStatus::Completed);
    assert_eq!(steps["signal"].status, StepStatus::Completed);
    assert_eq!(resumed.after[0]["stepId"], "size", "{:#?}", resumed.after);
}

#[test]
fn a_run_killed_while_parallel_items_run_makes_every_item_again_with_its_key() {
    let resumed = kill_and_resume("parallel", |effects, _| calls_of(effects, "execute") >= 2);
    let steps = &resumed.at_kill.steps;
    assert_eq!(steps["size"].status, StepStatus::Completed);
    assert_ne!(steps["execute"].status, StepStatus::Completed);
    // The step runs again from its first item (a known limit of recovery), each item
    // under its own key.
    let run = resumed.at_kill.run_id.as_str();
    let keys: BTreeSet<&str> = resumed
        .after
        .iter()
        .filter(|line| line["stepId"] == "execute")
        .filter_map(|line| line["idempotencyKey"].as_str())
        .collect();
    let expected: BTreeSet<String> = (1..=3)
        .map(|item| format!("{run}/execute/{item}/0"))
        .collect();
    assert_eq!(keys, expected.iter().map(String::as_str).collect());
    assert_eq!(
        resumed.report["steps"]["execute"]["output"]["orderIds"],
        json!(["o-1", "o-2", "o-3"])
    );
}

#[test]
fn a_run_killed_while_an_approval_waits_is_answered_again_after_the_restart() {
    let resumed = kill_and_resume("approval", |_, progress| {
        shows(progress, "approve", "waiting")
    });
    let steps = &resumed.at_kill.steps;
    assert_eq!(steps["execute"].status, StepStatus::Completed);
    assert_eq!(steps["approve"].status, StepStatus::Waiting);
    assert!(
        shows(&resumed.stderr, "approve", "waiting"),
        "{}",
        resumed.stderr
    );
    assert!(
        shows(&resumed.stderr, "approve", "approved"),
        "{}",
        resumed.stderr
    );
    assert_eq!(resumed.report["steps"]["approve"]["approvedBy"], "pm@desk");
    assert_eq!(
        resumed.after[0]["stepId"], "confirm",
        "{:#?}",
        resumed.after
    );
}

#[test]
fn a_run_killed_after_its_approval_does_not_ask_for_it_again() {
    let resumed = kill_and_resume("after-approval", |effects, _| effects.len() >= 7);
    assert_eq!(
        resumed.at_kill.steps["approve"].status,
        StepStatus::Completed
    );
    assert!(
        !shows(&resumed.stderr, "approve", "waiting"),
        "{}",
        resumed.stderr
    );
    assert_eq!(resumed.report["steps"]["approve"]["approvedBy"], "pm@desk");
}
