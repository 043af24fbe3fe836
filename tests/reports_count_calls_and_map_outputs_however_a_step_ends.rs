//! A step's report counts every call it made, also when it ends otherwise than
//! completed (skipped by self-healing after its retries, cancelled by the run's end), and
//! a step's `outputMapping` adds its fields to the output the next steps and the report
//! see.

mod support;

use serde_json::json;
use support::engine::{Harness, Reply, assert_status, step};
use support::{task_with, with};
use tradeflow::engine::{RunOptions, RunStatus, StepStatus};

#[test]
fn a_step_skipped_by_self_healing_after_two_calls_reports_two_attempts() {
    let h = Harness::new();
    h.register(
        h.agent("a-1")
            .replies(|_, _| Reply::temporary("venue busy")),
    );
    let definition = json!({"id": "w", "steps": [with(
        task_with("hedge", json!({})),
        json!({"optional": true, "retryPolicy": {"maxAttempts": 2, "initialDelayMs": 10}}),
    )]});
    let report = h.run(&definition, json!({}));
    assert_status(&report, RunStatus::Completed);
    let hedge = step(&report, "hedge");
    assert_eq!(hedge.status, StepStatus::Skipped);
    assert_eq!(hedge.attempts, Some(2), "{}", report.to_json_pretty());
}

#[test]
fn a_step_cancelled_mid_call_reports_the_calls_it_made() {
    let h = Harness::new();
    h.register(h.agent("a-1").replies(|_, number| match number {
        1 => Reply::temporary("busy"),
        _ => Reply::hang(),
    }));
    let definition = json!({"id": "w", "timeout": 1_000, "steps": [with(
        task_with("trade", json!({})),
        json!({"retryPolicy": {"maxAttempts": 3, "initialDelayMs": 10}}),
    )]});
    let report = h.run_with(&definition, RunOptions::new(json!({})));
    assert_status(&report, RunStatus::TimedOut);
    let trade = step(&report, "trade");
    assert_eq!(trade.status, StepStatus::Cancelled);
    assert_eq!(trade.attempts, Some(2), "{}", report.to_json_pretty());
}

#[test]
fn an_output_mapping_adds_fields_the_next_step_and_the_report_see() {
    let h = Harness::new();
    let agent = h.register(
        h.agent("a-1")
            .replies(|request, _| match request.step_id.as_str() {
                "quote" => Reply::ok(json!({"bid": 99.5, "ask": 100.5})),
                _ => Reply::ok(json!({"got": request.parameters.clone()})),
            }),
    );
    let definition = json!({"id": "w", "steps": [
        with(task_with("quote", json!({})),
             json!({"outputMapping": {"mid": "${output.ask}", "label": "bid ${output.bid}"}})),
        task_with("trade", json!({"price": "${quote.output.mid}", "label": "${quote.output.label}"})),
    ]});
    let report = h.run(&definition, json!({}));
    assert_status(&report, RunStatus::Completed);
    assert_eq!(
        step(&report, "quote").output,
        Some(json!({"bid": 99.5, "ask": 100.5, "mid": 100.5, "label": "bid 99.5"}))
    );
    assert_eq!(
        agent.calls()[1].request.parameters,
        json!({"price": 100.5, "label": "bid 99.5"})
    );
}
