//! `tradeflow replay` with an agents file's `killSwitch`: a timeline whose drawdown
//! crosses the rule at noon runs the morning's firings and lists the afternoon's under
//! `"refused"` with `HALTED`.

#[path = "support/command.rs"]
mod command;

use command::{assert_exit, run, scratch_dir, stdout, write};
use serde_json::{Value, json};

#[test]
fn firings_after_the_drawdown_crosses_the_rule_are_listed_as_refused_halted() {
    let dir = scratch_dir("replay-kill-switch");
    let workflow = write(
        &dir,
        "workflow.json",
        &json!({"id": "algo", "tags": ["live"], "steps": [
            {"id": "trade", "type": "task", "agentCriteria": {"type": "TRADE"},
             "task": {"type": "ORDER"}, "sideEffects": true}
        ], "triggers": [{"type": "SCHEDULED", "schedule": "0 * * * *"}]}),
    );
    let agents = write(
        &dir,
        "agents.json",
        &json!({"agents": [{"id": "trader", "type": "TRADE",
                            "tasks": {"ORDER": {"output": {"filled": true}}}}],
                "killSwitch": [{"id": "drawdown", "when": "pnl.drawdown > 0.05",
                                "scope": {"tags": ["live"]}}]}),
    );
    let timeline = write(
        &dir,
        "timeline.json",
        &json!({"start": "2026-11-23T09:00:00Z", "end": "2026-11-23T14:30:00Z",
                "metrics": [{"at": "2026-11-23T12:00:00Z", "name": "pnl.drawdown", "value": 0.06}]}),
    );
    let output = run(&[
        "replay",
        &workflow,
        "--agents",
        &agents,
        "--timeline",
        &timeline,
    ]);
    assert_exit(&output, 0);
    let result: Value = serde_json::from_str(&stdout(&output)).expect("JSON on stdout");
    let fired = |list: &str| -> Vec<String> {
        result[list]
            .as_array()
            .unwrap_or_else(|| panic!("a `{list}` array in {result:#}"))
            .iter()
            .map(|run| run["firedAt"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(
        fired("runs"),
        [
            "2026-11-23T09:00:00Z",
            "2026-11-23T10:00:00Z",
            "2026-11-23T11:00:00Z"
        ]
    );
    assert_eq!(
        fired("refused"),
        [
            "2026-11-23T12:00:00Z",
            "2026-11-23T13:00:00Z",
            "2026-11-23T14:00:00Z"
        ]
    );
    assert_eq!(result["refused"][0]["refused"], "HALTED");
    assert_eq!(result["refused"][0]["trigger"], "triggers[0] (SCHEDULED)");
    assert!(
        result["refused"][0]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("drawdown")),
        "{result:#}"
    );
}
