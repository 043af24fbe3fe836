//! `tradeflow simulate --runs N` with `pools` in the agents file: the pool's `min`
//! agents are registered, the auto-scaler is evaluated after each run (the type's
//! utilization standing for CPU and memory), and its actions fill `scaling`; the same
//! files print the same bytes. A pool that breaks a rule exits 2 naming where.

#[path = "support/command.rs"]
mod command;

use command::{assert_exit, run, scratch_dir, stderr_lines, stdout, write};
use serde_json::{Value, json};

fn workflow() -> Value {
    json!({"id": "risk-check", "steps": [{"id": "assess", "type": "task",
        "agentCriteria": {"type": "RISK_MANAGEMENT"}, "task": {"type": "RISK_ASSESSMENT"}}]})
}

fn agents(pool: Value) -> Value {
    json!({"agents": [], "pools": {"RISK_MANAGEMENT": pool}})
}

/// One to four risk agents, a check taking a virtual second, 5 s between scalings.
fn pool() -> Value {
    json!({"min": 1, "max": 4, "cooldownMs": 5000,
           "template": {"tasks": {"RISK_ASSESSMENT": {"delayMs": 1000, "output": {"approved": true}}}}})
}

#[test]
fn a_queue_of_runs_scales_the_pool_up_and_the_quiet_end_scales_it_down_with_the_same_bytes() {
    let dir = scratch_dir("simulate-pools");
    let workflow = write(&dir, "workflow.json", &workflow());
    let agents = write(&dir, "agents.json", &agents(pool()));
    let args = [
        "simulate",
        &workflow,
        "--agents",
        &agents,
        "--runs",
        "60",
        "--concurrency",
        "30",
    ];

    let first = run(&args);
    let second = run(&args);

    assert_exit(&first, 0);
    assert_eq!(
        stdout(&first),
        stdout(&second),
        "the same files print the same bytes"
    );
    let output: Value = serde_json::from_str(&stdout(&first)).expect("JSON");
    let scaling = output["scaling"].as_array().expect("an array");
    let steps: Vec<(u64, u64, &str)> = scaling
        .iter()
        .map(|event| {
            assert_eq!(event["agentType"], "RISK_MANAGEMENT");
            assert!(event["at"].is_string());
            (
                event["from"].as_u64().unwrap(),
                event["to"].as_u64().unwrap(),
                event["reason"].as_str().unwrap(),
            )
        })
        .collect();
    // Thirty runs at once on one agent: 29 wait, more than 10 per instance.
    assert_eq!(steps.first(), Some(&(1, 2, "queue")), "{scaling:?}");
    assert!(
        steps.iter().any(|(from, to, _)| to < from),
        "and later down: {steps:?}"
    );
    assert!(steps.iter().all(|(_, to, _)| (1..=4).contains(to)));
    let agents_used: std::collections::BTreeSet<&str> = output["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|run| run["steps"]["assess"]["agentId"].as_str())
        .collect();
    assert!(
        agents_used.contains("RISK_MANAGEMENT-pool-2"),
        "{agents_used:?}"
    );
    assert!(
        stderr_lines(&first)
            .iter()
            .any(|line| line.ends_with("scaled RISK_MANAGEMENT from 1 to 2 agents (queue)")),
    );
}

#[test]
fn a_pool_that_breaks_a_rule_is_refused_naming_where() {
    let dir = scratch_dir("simulate-bad-pool");
    let workflow = write(&dir, "workflow.json", &workflow());
    let mut bad = pool();
    bad["max"] = json!(0);
    bad["template"]["maxConcurrency"] = json!(0);
    let agents = write(&dir, "agents.json", &agents(bad));

    let output = run(&["simulate", &workflow, "--agents", &agents]);

    assert_exit(&output, 2);
    let lines = stderr_lines(&output).join("\n");
    assert!(lines.contains("pools.RISK_MANAGEMENT.max"), "{lines}");
    assert!(
        lines.contains("pools.RISK_MANAGEMENT.template.maxConcurrency"),
        "{lines}"
    );
}
