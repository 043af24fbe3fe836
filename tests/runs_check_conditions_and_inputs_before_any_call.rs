//! Before any step runs: workflow `conditions` must all hold (else the run ends `SKIPPED`,
//! every step with it), and every `${input…}` path must exist (else the run fails,
//! naming the path, before any agent is called); a `null` value is not missing.

mod support;

use serde_json::json;
use support::engine::{Harness, assert_status, reason, step, t0};
use support::{task_with, with, workflow};
use tradeflow::engine::{FailureKind, RunEvent, RunOptions, RunStatus, StepStatus};
use tradeflow::expr::Context;

fn two_steps() -> serde_json::Value {
    workflow([
        task_with("analyse", json!({"symbols": "${input.symbols}"})),
        task_with("trade", json!({"account": "${input.account.id}"})),
    ])
}

#[test]
fn a_false_workflow_condition_skips_the_run_and_every_step() {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1"));
    let definition = with(
        two_steps(),
        json!({"conditions": [{"expression": "${input.enabled} == true"}]}),
    );

    let report = h.run(
        &definition,
        json!({"enabled": false, "symbols": ["AAPL"], "account": {"id": "acc-1"}}),
    );

    assert_status(&report, RunStatus::Skipped);
    assert_eq!(report.error, None);
    for id in ["analyse", "trade"] {
        assert_eq!(step(&report, id).status, StepStatus::Skipped, "{id}");
        assert!(
            reason(&report, id).contains("enabled"),
            "{}",
            reason(&report, id)
        );
    }
    assert!(agent.calls().is_empty());
    assert_eq!(report.ended_at, t0());
}

#[test]
fn every_workflow_condition_must_hold() {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1"));
    let definition = with(
        two_steps(),
        json!({"conditions": [{"expression": "${input.enabled} == true"},
                              {"expression": "volatility.level < 0.3"}]}),
    );
    let input = json!({"enabled": true, "symbols": [], "account": {"id": "acc-1"}});

    let calm = h.run_with(
        &definition,
        RunOptions::new(input.clone())
            .context(Context::new().with_variable("volatility.level", json!(0.1))),
    );
    let stormy = h.run_with(
        &definition,
        RunOptions::new(input)
            .context(Context::new().with_variable("volatility.level", json!(0.5))),
    );

    assert_status(&calm, RunStatus::Completed);
    assert_status(&stormy, RunStatus::Skipped);
    assert!(reason(&stormy, "analyse").contains("volatility.level"));
    assert_eq!(agent.calls().len(), 2, "only the calm run called agents");
}

#[test]
fn a_missing_input_path_fails_the_run_before_any_call() {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1"));

    // `account.id` is bound by the second step only; the first must not run either.
    let report = h.run(&two_steps(), json!({"symbols": ["AAPL"], "account": {}}));

    assert_status(&report, RunStatus::Failed);
    let error = report.error.as_ref().expect("a run error");
    assert_eq!(error.step_id, None);
    assert_eq!(error.kind, FailureKind::Binding);
    assert!(
        error.message.contains("input.account.id"),
        "{}",
        error.message
    );
    assert!(agent.calls().is_empty());
    for id in ["analyse", "trade"] {
        assert_eq!(step(&report, id).status, StepStatus::Skipped, "{id}");
    }
    assert!(
        !h.events()
            .iter()
            .any(|event| matches!(event, RunEvent::StepStarted { .. }))
    );
    assert_eq!(report.ended_at, t0());
}

#[test]
fn a_missing_input_object_names_the_path() {
    let h = Harness::new();
    h.register(h.agent("a-1"));

    let report = h.run(&two_steps(), json!({"symbols": ["AAPL"]}));

    assert_eq!(report.status, RunStatus::Failed);
    let message = &report.error.as_ref().expect("a run error").message;
    assert!(message.contains("input.account"), "{message}");
}

#[test]
fn a_null_input_value_binds_as_null() {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1"));

    let report = h.run(
        &two_steps(),
        json!({"symbols": null, "account": {"id": null}}),
    );

    assert_status(&report, RunStatus::Completed);
    let calls = agent.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].request.parameters, json!({"symbols": null}));
    assert_eq!(calls[1].request.parameters, json!({"account": null}));
}
