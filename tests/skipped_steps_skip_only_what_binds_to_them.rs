//! Skips: a step is skipped when its `condition` is false or its `skipCondition` true,
//! and so is every step that binds to a skipped step (its data does not exist); a step
//! that only follows a skipped step in order still runs.

mod support;

use serde_json::json;
use support::engine::{Harness, assert_status, reason, step};
use support::{task_with, with, workflow};
use tradeflow::engine::{RunEvent, RunStatus, StepStatus};

/// The reason names the bound step and says it was skipped.
#[track_caller]
fn assert_bound_skipped(reason: &str, bound: &str) {
    assert!(
        reason.contains(&format!("`{bound}`")) && reason.contains("skipped"),
        "expected a reason naming skipped step `{bound}`, got {reason:?}"
    );
}

fn called(agent: &support::engine::TestAgent) -> Vec<String> {
    agent
        .calls()
        .iter()
        .map(|call| call.step().to_owned())
        .collect()
}

#[test]
fn a_false_condition_skips_the_step_with_the_condition_as_reason() {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1"));
    let definition = workflow([
        with(
            task_with("trade", json!({})),
            json!({"condition": {"expression": "${input.marketOpen} == true"}}),
        ),
        task_with("report", json!({})),
    ]);

    let report = h.run(&definition, json!({"marketOpen": false}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(step(&report, "trade").status, StepStatus::Skipped);
    let why = reason(&report, "trade");
    assert!(why.starts_with("condition false"), "{why}");
    assert!(why.contains("marketOpen"), "{why}");
    assert_eq!(called(&agent), ["report"]);
    assert!(h.events().iter().any(|event| matches!(
        event,
        RunEvent::StepSkipped { step_id, reason, .. } if step_id == "trade" && reason == why
    )));
}

#[test]
fn a_true_skip_condition_skips_the_step_with_its_reason() {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1"));
    let definition = workflow([
        with(
            task_with("hedge", json!({})),
            json!({"skipCondition": {"expression": "${input.exposure} < 1000"}}),
        ),
        task_with("report", json!({})),
    ]);

    let report = h.run(&definition, json!({"exposure": 10}));

    assert_eq!(report.status, RunStatus::Completed);
    assert_eq!(step(&report, "hedge").status, StepStatus::Skipped);
    let why = reason(&report, "hedge");
    assert!(why.starts_with("skip condition true"), "{why}");
    assert_eq!(called(&agent), ["report"]);
}

#[test]
fn conditions_that_hold_let_the_step_run() {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1"));
    let definition = workflow([with(
        task_with("hedge", json!({})),
        json!({"condition": {"expression": "${input.exposure} >= 1000"},
               "skipCondition": {"expression": "${input.exposure} > 1000000"}}),
    )]);

    let report = h.run(&definition, json!({"exposure": 5000}));

    assert_eq!(step(&report, "hedge").status, StepStatus::Completed);
    assert_eq!(called(&agent), ["hedge"]);
}

#[test]
fn skips_propagate_along_bindings_but_not_along_order() {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1").answers(json!({"value": 1})));
    // No `dependencies`: every step follows the one listed before it.
    let definition = workflow([
        with(
            task_with("signal", json!({})),
            json!({"condition": {"expression": "${input.enabled} == true"}}),
        ),
        task_with("size", json!({"value": "${signal.output.value}"})),
        task_with("log", json!({})),
        task_with("execute", json!({"size": "${size.output}"})),
        task_with("notify", json!({"logged": "${log.output.value}"})),
    ]);

    let report = h.run(&definition, json!({"enabled": false}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(step(&report, "signal").status, StepStatus::Skipped);
    assert_eq!(step(&report, "size").status, StepStatus::Skipped);
    assert_bound_skipped(reason(&report, "size"), "signal");
    assert_eq!(
        step(&report, "log").status,
        StepStatus::Completed,
        "order only"
    );
    assert_eq!(step(&report, "execute").status, StepStatus::Skipped);
    assert_bound_skipped(reason(&report, "execute"), "size");
    assert_eq!(step(&report, "notify").status, StepStatus::Completed);
    assert_eq!(called(&agent), ["log", "notify"]);
}

#[test]
fn an_explicit_dependency_on_a_skipped_step_does_not_block() {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1"));
    let definition = with(
        workflow([
            with(
                task_with("rebalance", json!({})),
                json!({"skipCondition": {"expression": "true"}}),
            ),
            task_with("audit", json!({})),
        ]),
        json!({"dependencies": [{"from": "rebalance", "to": "audit"}]}),
    );

    let report = h.run(&definition, json!({}));

    assert_eq!(report.status, RunStatus::Completed);
    assert_eq!(step(&report, "rebalance").status, StepStatus::Skipped);
    assert_eq!(step(&report, "audit").status, StepStatus::Completed);
    assert_eq!(called(&agent), ["audit"]);
}

#[test]
fn a_condition_reading_a_skipped_step_skips_too() {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1").answers(json!({"approved": true})));
    let definition = workflow([
        with(
            task_with("risk", json!({})),
            json!({"condition": {"expression": "${input.check} == true"}}),
        ),
        with(
            task_with("trade", json!({})),
            json!({"condition": {"expression": "${risk.output.approved} == true"}}),
        ),
    ]);

    let report = h.run(&definition, json!({"check": false}));

    assert_eq!(report.status, RunStatus::Completed);
    assert_eq!(step(&report, "trade").status, StepStatus::Skipped);
    assert_bound_skipped(reason(&report, "trade"), "risk");
    assert!(agent.calls().is_empty());
}
