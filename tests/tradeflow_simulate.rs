//! `tradeflow simulate`: the reference workflows run to completion against their scripted
//! agents on the virtual clock; the report lists every step; the same seed gives the same
//! bytes; a failing run exits 1 and invalid files exit 2 with located problems.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

#[path = "support/command.rs"]
mod command;

use command::{run, stderr_lines};

use chrono::{DateTime, TimeDelta};
use serde_json::{Value, json};

const ALGO_TRADING: &str = "algo-trading";
const PORTFOLIO_REBALANCING: &str = "portfolio-rebalancing";

fn workflow(name: &str) -> String {
    format!("examples/workflows/{name}.json")
}

fn agents(name: &str) -> String {
    format!("examples/agents/{name}.json")
}

fn input(name: &str) -> String {
    format!("examples/inputs/{name}.json")
}

/// `simulate` of a reference workflow with its own agents and input, plus `extra`.
fn simulate(name: &str, extra: &[&str]) -> Output {
    let (workflow, agents, input) = (workflow(name), agents(name), input(name));
    let mut args = vec![
        "simulate",
        workflow.as_str(),
        "--agents",
        agents.as_str(),
        "--input",
        input.as_str(),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// The report on stdout: pretty JSON ending with a newline.
fn report(output: &Output) -> Value {
    let text = String::from_utf8(output.stdout.clone()).expect("UTF-8 stdout");
    assert!(text.ends_with("}\n"), "a report and a newline: {text:?}");
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}: {text}"))
}

fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stderr:\n{}",
        stderr_lines(output).join("\n")
    );
}

/// The step ids of a workflow file, in listed order.
fn step_ids(workflow_file: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(workflow_file);
    let definition: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read the workflow"))
            .expect("a JSON workflow");
    definition["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|step| step["id"].as_str().expect("a step id").to_owned())
        .collect()
}

/// Asserts that every step of the workflow, and only those, is in the report with a
/// final status.
fn assert_every_step_reported(report: &Value, workflow_file: &str) {
    let steps = report["steps"].as_object().expect("steps is an object");
    let reported: BTreeSet<&str> = steps.keys().map(String::as_str).collect();
    let ids = step_ids(workflow_file);
    let defined: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(reported, defined, "{report:#}");
    for (id, step) in steps {
        let status = step["status"].as_str().unwrap_or_default();
        assert!(
            ["COMPLETED", "SKIPPED", "FAILED", "CANCELLED"].contains(&status),
            "{id}: status {status:?} is not final"
        );
    }
}

/// How much virtual time the run took.
fn elapsed(report: &Value) -> TimeDelta {
    let at = |field: &str| {
        DateTime::parse_from_rfc3339(report[field].as_str().expect(field))
            .unwrap_or_else(|error| panic!("{field}: {error}"))
    };
    at("endedAt") - at("startedAt")
}

/// A directory of this test binary's scratch files.
fn scratch_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tradeflow_simulate");
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// Writes `contents` to scratch file `name` and returns its path as text.
fn scratch_file(name: &str, contents: &str) -> String {
    let path = scratch_dir().join(name);
    std::fs::write(&path, contents).expect("write a scratch file");
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// A reference agents file, changed by `edit`, written to scratch file `name`.
fn edited_agents(reference: &str, name: &str, edit: impl FnOnce(&mut Value)) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(agents(reference));
    let mut file: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read the agents file"))
            .expect("a JSON agents file");
    edit(&mut file);
    scratch_file(name, &file.to_string())
}

#[test]
fn both_reference_workflows_complete_with_every_step_reported() {
    for name in [ALGO_TRADING, PORTFOLIO_REBALANCING] {
        let output = simulate(name, &[]);
        assert_exit(&output, 0);
        let report = report(&output);
        assert_eq!(report["status"], "COMPLETED", "{name}: {report:#}");
        assert_eq!(report["error"], Value::Null, "{name}");
        assert_eq!(report["runId"], "run-1");
        assert_eq!(report["startedAt"], "2026-01-05T09:00:00Z");
        assert_every_step_reported(&report, &workflow(name));

        let lines = stderr_lines(&output);
        let last = lines.last().expect("progress lines");
        assert!(
            last.ends_with(&format!(
                "run run-1 COMPLETED in {}.{:02} s (virtual)",
                elapsed(&report).num_seconds(),
                elapsed(&report).subsec_millis() / 10
            )),
            "{last}"
        );
    }
}

#[test]
fn order_execution_reports_the_agent_of_each_order() {
    let output = simulate(ALGO_TRADING, &[]);
    assert_exit(&output, 0);
    let report = report(&output);
    let orders = report["steps"]["position-sizing"]["output"]["orders"]
        .as_array()
        .expect("position sizing returns orders");
    let execution = &report["steps"]["order-execution"];
    assert_eq!(execution["status"], "COMPLETED");
    let agent_ids = execution["agentIds"].as_array().expect("agentIds");
    assert_eq!(agent_ids.len(), orders.len(), "{execution:#}");
    for agent in agent_ids {
        assert!(
            *agent == "exec-1" || *agent == "exec-2",
            "{agent} is a TRADING_EXECUTION agent"
        );
    }
    assert_eq!(execution["output"]["orderIds"], json!(["ord-1", "ord-2"]));
    // The risk agent is busy once, then answers: two calls.
    assert_eq!(report["steps"]["risk-assessment"]["attempts"], 2);
}

#[test]
fn the_scripted_approval_answers_after_a_virtual_minute() {
    let output = simulate(PORTFOLIO_REBALANCING, &[]);
    assert_exit(&output, 0);
    let report = report(&output);
    let approval = &report["steps"]["execution-approval"];
    assert_eq!(approval["status"], "COMPLETED", "{approval:#}");
    assert_eq!(approval["approvedBy"], "pm@desk");
    assert_eq!(approval["output"]["comment"], "within mandate");
    assert!(
        elapsed(&report) >= TimeDelta::seconds(60),
        "the virtual clock passed {:?}",
        elapsed(&report)
    );
    assert_eq!(report["steps"]["trade-execution"]["status"], "COMPLETED");

    let lines = stderr_lines(&output);
    let shows = |step: &str, what: &str| {
        lines
            .iter()
            .any(|line| line.contains(step) && line.contains(what))
    };
    assert!(
        shows("execution-approval", "waiting   for approval"),
        "{lines:#?}"
    );
    assert!(
        shows("execution-approval", "approved  by pm@desk"),
        "{lines:#?}"
    );
}

#[test]
fn progress_lines_carry_the_virtual_time() {
    let output = simulate(ALGO_TRADING, &[]);
    assert_exit(&output, 0);
    let lines = stderr_lines(&output);
    for line in &lines {
        let time = line.split_whitespace().next().unwrap_or_default();
        assert!(
            chrono::NaiveTime::parse_from_str(time, "%H:%M:%S%.3f").is_ok(),
            "`{line}` starts with the virtual time"
        );
    }
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("09:00:00.000  market-analysis ")
                && line.contains(" started ")
                && line.contains("ma-1 (attempt 1, score ")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|line| line.contains("risk-assessment")
            && line.contains("retrying")
            && line.contains("TEMPORARY")
            && line.contains("risk engine busy")),
        "{lines:#?}"
    );
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    for name in [ALGO_TRADING, PORTFOLIO_REBALANCING] {
        let first = simulate(name, &["--seed", "42"]);
        let second = simulate(name, &["--seed", "42"]);
        assert_exit(&first, 0);
        assert_eq!(first.stdout, second.stdout, "{name}: stdout differs");
        assert_eq!(first.stderr, second.stderr, "{name}: stderr differs");
        // No seed is seed 0.
        assert_eq!(
            simulate(name, &[]).stdout,
            simulate(name, &["--seed", "0"]).stdout
        );
    }
}

#[test]
fn another_seed_still_gives_a_valid_run() {
    for name in [ALGO_TRADING, PORTFOLIO_REBALANCING] {
        let output = simulate(name, &["--seed", "18446744073709551615"]);
        assert_exit(&output, 0);
        let report = report(&output);
        assert_eq!(report["status"], "COMPLETED", "{name}");
        assert_every_step_reported(&report, &workflow(name));
    }
}

#[test]
fn start_sets_the_virtual_clock() {
    let output = simulate(ALGO_TRADING, &["--start", "2026-03-02T16:30:00+02:00"]);
    assert_exit(&output, 0);
    let report = report(&output);
    assert_eq!(report["startedAt"], "2026-03-02T14:30:00Z");
    assert!(stderr_lines(&output)[0].starts_with("14:30:00.000  "));
}

#[test]
fn a_risk_agent_that_always_fails_permanently_fails_the_run() {
    let agents = edited_agents(ALGO_TRADING, "risk-always-fails.json", |file| {
        let risk = file["agents"]
            .as_array_mut()
            .expect("agents")
            .iter_mut()
            .find(|agent| agent["id"] == "risk-1")
            .expect("the risk agent");
        risk["tasks"]["RISK_ASSESSMENT"]["fail"] =
            json!({"kind": "PERMANENT", "message": "limits breached"});
    });
    let (workflow, input) = (workflow(ALGO_TRADING), input(ALGO_TRADING));
    let output = run(&[
        "simulate", &workflow, "--agents", &agents, "--input", &input,
    ]);
    assert_exit(&output, 1);
    let report = report(&output);
    assert_eq!(report["status"], "FAILED");
    assert_eq!(report["error"]["stepId"], "risk-assessment", "{report:#}");
    assert_eq!(report["error"]["kind"], "PERMANENT");
    assert_every_step_reported(&report, &workflow);
    let steps = &report["steps"];
    assert_eq!(steps["market-analysis"]["status"], "COMPLETED");
    assert_eq!(steps["risk-assessment"]["status"], "FAILED");
    // A permanent failure is not retried.
    assert_eq!(steps["risk-assessment"]["attempts"], 1);
    for later in ["position-sizing", "order-execution", "execution-monitoring"] {
        assert_eq!(steps[later]["status"], "SKIPPED", "{later}");
    }
    let lines = stderr_lines(&output);
    let last = lines.last().expect("progress lines");
    assert!(last.contains("run run-1 FAILED in "), "{last}");
    assert!(last.contains("risk-assessment: PERMANENT"), "{last}");
}

#[test]
fn a_rejected_approval_fails_the_run() {
    let agents = edited_agents(PORTFOLIO_REBALANCING, "rejects.json", |file| {
        file["approvals"]["execution-approval"] =
            json!({"approved": false, "by": "risk@desk", "afterMs": 1000, "comment": "too big"});
    });
    let (workflow, input) = (
        workflow(PORTFOLIO_REBALANCING),
        input(PORTFOLIO_REBALANCING),
    );
    let output = run(&[
        "simulate", &workflow, "--agents", &agents, "--input", &input,
    ]);
    assert_exit(&output, 1);
    let report = report(&output);
    assert_eq!(report["status"], "FAILED");
    assert_eq!(report["error"]["stepId"], "execution-approval");
    assert_eq!(report["error"]["kind"], "REJECTED");
    assert_eq!(report["steps"]["trade-execution"]["status"], "SKIPPED");
    assert_every_step_reported(&report, &workflow);
}

#[test]
fn an_approval_nobody_answers_and_that_never_times_out_ends_the_simulation() {
    let agents = edited_agents(PORTFOLIO_REBALANCING, "no-approvals.json", |file| {
        file.as_object_mut().expect("an object").remove("approvals");
    });
    let (workflow, input) = (
        workflow(PORTFOLIO_REBALANCING),
        input(PORTFOLIO_REBALANCING),
    );
    let output = run(&[
        "simulate", &workflow, "--agents", &agents, "--input", &input,
    ]);
    assert_exit(&output, 1);
    assert!(output.stdout.is_empty());
    let lines = stderr_lines(&output);
    let last = lines.last().expect("progress lines");
    assert!(
        last.contains("is stuck") && last.contains("`execution-approval`"),
        "{last}"
    );
}

#[test]
fn a_missing_input_path_fails_the_run_before_any_step() {
    let (workflow, agents) = (workflow(ALGO_TRADING), agents(ALGO_TRADING));
    // No --input: the input is `{}`.
    let output = run(&["simulate", &workflow, "--agents", &agents]);
    assert_exit(&output, 1);
    let report = report(&output);
    assert_eq!(report["status"], "FAILED");
    let error = &report["error"];
    assert_eq!(error["stepId"], Value::Null, "{error:#}");
    assert_eq!(error["kind"], "BINDING");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|message| message.contains("`input.")),
        "{error:#}"
    );
    assert_every_step_reported(&report, &workflow);
    for (id, step) in report["steps"].as_object().expect("steps") {
        assert_eq!(step["status"], "SKIPPED", "{id}");
    }
    assert_eq!(report["startedAt"], report["endedAt"]);
    // No step started: after the run's first line, every step is reported skipped, then
    // the run's last line.
    let lines = stderr_lines(&output);
    let steps = report["steps"].as_object().expect("steps").len();
    assert_eq!(lines.len(), 2 + steps, "{lines:#?}");
    assert!(
        lines[1..=steps]
            .iter()
            .all(|line| line.contains(" skipped ") && line.contains("not started")),
        "{lines:#?}"
    );
    assert!(
        lines[steps + 1].contains("run run-1 FAILED in 0.00 s"),
        "{lines:#?}"
    );
}

#[test]
fn an_invalid_agents_file_exits_2_with_located_problems() {
    let agents = scratch_file(
        "invalid-agents.json",
        r#"{"agents": [
              {"id": "risk-1", "type": "RISK_MANAGEMENT", "weight": 0,
               "tasks": {"RISK_ASSESSMENT": {"fail": {"kind": "FLAKY", "message": "m"}}}}
           ]}"#,
    );
    let workflow = workflow(ALGO_TRADING);
    let output = run(&["simulate", &workflow, "--agents", &agents]);
    assert_exit(&output, 2);
    assert!(output.stdout.is_empty());
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    for line in &lines {
        assert!(line.starts_with(&format!("{agents}: ")), "{line}");
    }
    assert!(lines[0].contains("agents[0].weight: "), "{lines:#?}");
    assert!(
        lines[1].contains("agents[0].tasks.RISK_ASSESSMENT.fail.kind: ")
            && lines[1].contains("FLAKY"),
        "{lines:#?}"
    );
}

#[test]
fn scripted_approvals_must_name_human_approval_steps() {
    let agents = edited_agents(PORTFOLIO_REBALANCING, "stray-approvals.json", |file| {
        file["approvals"]["foo"] = json!({"approved": true, "by": "x"});
        file["approvals"]["trade-planning"] = json!({"approved": true, "by": "x"});
    });
    let workflow = workflow(PORTFOLIO_REBALANCING);
    let output = run(&["simulate", &workflow, "--agents", &agents]);
    assert_exit(&output, 2);
    assert!(output.stdout.is_empty());
    let lines = stderr_lines(&output);
    assert_eq!(
        lines[0],
        format!("{agents}: approvals.foo: no human_approval step `foo` in the workflow")
    );
    assert!(
        lines[1].starts_with(&format!(
            "{agents}: approvals.trade-planning: no human_approval step `trade-planning`"
        )),
        "{lines:#?}"
    );
    assert_eq!(lines.len(), 2, "{lines:#?}");
}

#[test]
fn every_invalid_file_is_reported_at_once() {
    let input = scratch_file("malformed-input.json", "{\n  \"symbols\": [,]\n}\n");
    let agents = "examples/agents/no-such-file.json";
    let workflow = workflow(ALGO_TRADING);
    let output = run(&["simulate", &workflow, "--agents", agents, "--input", &input]);
    assert_exit(&output, 2);
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].starts_with(&format!("{agents}: ")), "{lines:#?}");
    assert!(
        lines[1].starts_with(&format!("{input}: line 2, column ")),
        "{lines:#?}"
    );
}

#[test]
fn usage_errors_exit_with_code_2() {
    let workflow = workflow(ALGO_TRADING);
    let agents = agents(ALGO_TRADING);
    for args in [
        &["simulate"][..],
        &["simulate", &workflow][..],
        &["simulate", &workflow, "--agents"][..],
        &["simulate", &workflow, "--agents", &agents, "--seed", "-1"][..],
        &["simulate", &workflow, "--agents", &agents, "--start", "9am"][..],
        &["simulate", &workflow, "--agents", &agents, "--speed", "2"][..],
        &["simulate", &workflow, &workflow, "--agents", &agents][..],
    ] {
        let output = run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        assert!(
            stderr_lines(&output)
                .iter()
                .any(|line| line.contains("usage")),
            "{args:?}: {:?}",
            stderr_lines(&output)
        );
    }
}

/// Writes a workflow of three independent steps needing 1 cpu each (100 ms apiece) and
/// an agents file whose pool has `cpu` cores; returns their paths.
fn pooled_files(dir: &Path, cpu: f64, need: f64) -> (String, String) {
    let steps: Vec<Value> = ["a", "b", "c"]
        .iter()
        .map(|id| {
            json!({
                "id": id, "type": "task", "agentCriteria": {"type": "WORK"},
                "task": {"type": "WORK"}, "resourceRequirements": {"cpu": need}
            })
        })
        .collect();
    let workflow = json!({"id": "pooled", "dependencies": [], "steps": steps});
    let agents = json!({
        "agents": [{"id": "w-1", "type": "WORK", "maxConcurrency": 10,
                    "tasks": {"WORK": {"output": {"ok": true}, "delayMs": 100}}}],
        "resources": {"cpu": cpu}
    });
    let (workflow_path, agents_path) = (dir.join("pooled.json"), dir.join("agents.json"));
    std::fs::write(&workflow_path, workflow.to_string()).expect("write the workflow");
    std::fs::write(&agents_path, agents.to_string()).expect("write the agents");
    (
        workflow_path.display().to_string(),
        agents_path.display().to_string(),
    )
}

#[test]
fn the_agents_files_pool_bounds_how_many_steps_run_at_once() {
    let dir = command::scratch_dir("simulate-pool");
    let duration = |cpu: f64| {
        let (workflow, agents) = pooled_files(&dir, cpu, 1.0);
        let output = run(&["simulate", &workflow, "--agents", &agents]);
        assert_exit(&output, 0);
        let report = report(&output);
        let at = |field: &str| {
            DateTime::parse_from_rfc3339(report[field].as_str().expect("a time")).expect("RFC 3339")
        };
        at("endedAt") - at("startedAt")
    };
    assert_eq!(
        duration(3.0),
        TimeDelta::milliseconds(100),
        "all three at once"
    );
    assert_eq!(duration(2.0), TimeDelta::milliseconds(200), "two, then one");
    assert_eq!(duration(1.0), TimeDelta::milliseconds(300), "one at a time");
}

#[test]
fn a_step_that_needs_more_than_the_pool_is_rejected_naming_it() {
    let dir = command::scratch_dir("simulate-pool-too-small");
    let (workflow, agents) = pooled_files(&dir, 1.0, 2.0);
    let output = run(&["simulate", &workflow, "--agents", &agents]);
    assert_exit(&output, 2);
    let lines = stderr_lines(&output);
    assert!(
        lines.iter().any(
            |line| line.contains("steps[0] (a).resourceRequirements.cpu")
                && line.contains("needs 2 `cpu` but the pool has 1")
        ),
        "{lines:#?}"
    );
}

#[test]
fn the_agents_files_budgets_pace_the_steps_that_name_them() {
    let dir = command::scratch_dir("simulate-budgets");
    let steps: Vec<Value> = ["a", "b", "c"]
        .iter()
        .map(|id| {
            json!({
                "id": id, "type": "task", "agentCriteria": {"type": "WORK"},
                "task": {"type": "WORK"}, "budget": {"orders": 1}
            })
        })
        .collect();
    let workflow = json!({"id": "paced", "dependencies": [], "steps": steps});
    let agents = json!({
        "agents": [{"id": "w-1", "type": "WORK", "maxConcurrency": 10,
                    "tasks": {"WORK": {"output": {"ok": true}}}}],
        "budgets": {"orders": {"capacity": 1, "refillPerSecond": 2}}
    });
    let (workflow_path, agents_path) = (dir.join("paced.json"), dir.join("agents.json"));
    std::fs::write(&workflow_path, workflow.to_string()).expect("write the workflow");
    std::fs::write(&agents_path, agents.to_string()).expect("write the agents");

    let output = run(&[
        "simulate",
        &workflow_path.display().to_string(),
        "--agents",
        &agents_path.display().to_string(),
    ]);

    assert_exit(&output, 0);
    let report = report(&output);
    let at = |field: &str| {
        DateTime::parse_from_rfc3339(report[field].as_str().expect("a time")).expect("RFC 3339")
    };
    assert_eq!(
        at("endedAt") - at("startedAt"),
        TimeDelta::milliseconds(1000),
        "one order at once, then one every 500 ms"
    );
}
