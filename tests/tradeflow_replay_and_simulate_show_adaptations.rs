//! `tradeflow replay` and `tradeflow simulate` show workflow adaptations: a timeline whose
//! `volatility.level` rises mid-week runs the later runs' steps with the adapted
//! parameters and timeouts, lists `"adaptations"` in their step reports and names them on
//! each run's line; `simulate --context` sets the conditions the adaptations read.

#[path = "support/command.rs"]
mod command;

use command::{assert_exit, run, scratch_dir, stderr_lines, stdout, write};
use serde_json::{Value, json};

const WORKFLOW: &str = "examples/workflows/volatility-adaptation.json";
const AGENTS: &str = "examples/agents/volatility-adaptation.json";
const INPUT: &str = "examples/inputs/volatility-adaptation.json";
const TIMELINE: &str = "examples/timelines/volatility-adaptation.json";

fn read(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The runs of a replay's stdout, in order.
#[track_caller]
fn runs(output: &std::process::Output) -> Vec<Value> {
    assert_exit(output, 0);
    let result: Value = serde_json::from_str(&stdout(output)).expect("JSON on stdout");
    result["runs"].as_array().expect("a `runs` array").clone()
}

/// The report of step `id` of run `run`.
fn step<'r>(run: &'r Value, id: &str) -> &'r Value {
    &run["report"]["steps"][id]
}

#[test]
fn runs_after_volatility_rises_have_the_adapted_parameters_and_list_the_adaptations() {
    let output = run(&[
        "replay",
        WORKFLOW,
        "--agents",
        AGENTS,
        "--timeline",
        TIMELINE,
        "--seed",
        "7",
    ]);
    let runs = runs(&output);

    // One run a weekday at 14:00; volatility rises above 0.5 on Wednesday morning and
    // above 0.8 on Thursday.
    let days: Vec<(&str, Value, Value, Value)> = runs
        .iter()
        .map(|run| {
            (
                run["firedAt"].as_str().unwrap(),
                step(run, "risk-assessment")["adaptations"].clone(),
                step(run, "risk-assessment")["output"]["volatilityAdjustment"].clone(),
                step(run, "position-sizing")["output"]["maxPositionSize"].clone(),
            )
        })
        .collect();
    assert_eq!(
        days,
        [
            ("2026-11-23T14:00:00Z", Value::Null, json!(1.0), json!(0.05)),
            ("2026-11-24T14:00:00Z", Value::Null, json!(1.0), json!(0.05)),
            (
                "2026-11-25T14:00:00Z",
                json!(["high-volatility"]),
                json!(0.5),
                json!(0.02)
            ),
            (
                "2026-11-26T14:00:00Z",
                json!(["high-volatility", "extreme-volatility"]),
                json!(0.5),
                json!(0.01)
            ),
            (
                "2026-11-27T14:00:00Z",
                json!(["high-volatility"]),
                json!(0.5),
                json!(0.02)
            ),
        ]
    );
    assert!(
        step(&runs[0], "position-sizing")
            .get("adaptations")
            .is_none(),
        "a run before the rise reports none"
    );
    let lines = stderr_lines(&output);
    let fired: Vec<&String> = lines.iter().filter(|line| line.contains("fired")).collect();
    assert_eq!(fired.len(), 5, "{lines:#?}");
    assert!(
        fired[1].ends_with("COMPLETED in 2.05 s (virtual)"),
        "{}",
        fired[1]
    );
    assert!(
        fired[3].ends_with("adapted: high-volatility, extreme-volatility"),
        "{}",
        fired[3]
    );
}

#[test]
fn runs_after_volatility_rises_get_the_longer_risk_timeout() {
    let dir = scratch_dir("replay-adapted-timeout");
    // A risk desk that takes 3 s: more than the step's 2 s, less than the 4 s the
    // `high-volatility` adaptation gives it.
    let mut agents = read(AGENTS);
    agents["agents"][1]["tasks"]["RISK_ASSESSMENT"]["delayMs"] = json!(3000);
    let agents = write(&dir, "agents.json", &agents);

    let output = run(&[
        "replay",
        WORKFLOW,
        "--agents",
        &agents,
        "--timeline",
        TIMELINE,
    ]);
    let runs = runs(&output);

    let outcomes: Vec<(Value, Value)> = runs
        .iter()
        .map(|run| {
            (
                run["report"]["status"].clone(),
                step(run, "risk-assessment")["status"].clone(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            (json!("FAILED"), json!("FAILED")),
            (json!("FAILED"), json!("FAILED")),
            (json!("COMPLETED"), json!("COMPLETED")),
            (json!("COMPLETED"), json!("COMPLETED")),
            (json!("COMPLETED"), json!("COMPLETED")),
        ]
    );
    assert_eq!(
        step(&runs[0], "risk-assessment")["error"]["kind"],
        json!("TIMEOUT"),
        "{:#}",
        runs[0]
    );
}

#[test]
fn simulate_with_a_context_applies_the_adaptations_that_hold_in_it() {
    let dir = scratch_dir("simulate-adapted");
    let context = write(&dir, "context.json", &json!({"volatility": {"level": 0.9}}));
    let simulate = |extra: &[&str]| {
        let mut args = vec!["simulate", WORKFLOW, "--agents", AGENTS, "--input", INPUT];
        args.extend_from_slice(extra);
        let output = run(&args);
        assert_exit(&output, 0);
        let report: Value = serde_json::from_str(&stdout(&output)).expect("a report");
        (report, stderr_lines(&output))
    };

    let (adapted, lines) = simulate(&["--context", &context]);
    let (plain, _) = simulate(&[]);

    let sizing = &adapted["steps"]["position-sizing"];
    assert_eq!(
        sizing["adaptations"],
        json!(["high-volatility", "extreme-volatility"])
    );
    assert_eq!(sizing["output"]["maxPositionSize"], json!(0.01));
    assert!(
        lines
            .iter()
            .any(|line| line
                .ends_with("position-sizing  adapted   high-volatility, extreme-volatility")),
        "{lines:#?}"
    );
    // Without a context `volatility.level` is not defined: no adaptation holds.
    assert!(
        plain["steps"]["position-sizing"]
            .get("adaptations")
            .is_none()
    );
    assert_eq!(
        plain["steps"]["position-sizing"]["output"]["maxPositionSize"],
        json!(0.05)
    );
}
