//! `task` and `decision` steps: one agent runs the task with its bindings resolved, its
//! result is the step's output, and a decision is recorded with the decision engine.

mod support;

use serde_json::json;
use support::engine::{Harness, Reply, assert_status, at_ms, ms, step, t0};
use support::{task_with, with, workflow};
use tradeflow::engine::{RunEvent, RunStatus, StepStatus};

#[test]
fn a_task_step_sends_resolved_parameters_and_outputs_the_answer() {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1").replies(|request, _| {
        let qty = request.parameters["qty"].as_i64().unwrap_or(0);
        Reply::ok(json!({"filled": qty, "symbol": request.parameters["symbol"]})).after_ms(250)
    }));
    let definition = workflow([task_with(
        "trade",
        json!({"symbol": "${input.symbol}", "qty": "${input.qty}", "note": "buy ${input.qty}"}),
    )]);

    let report = h.run(&definition, json!({"symbol": "AAPL", "qty": 120}));

    assert_status(&report, RunStatus::Completed);
    let trade = step(&report, "trade");
    assert_eq!(trade.status, StepStatus::Completed);
    assert_eq!(trade.output, Some(json!({"filled": 120, "symbol": "AAPL"})));
    assert_eq!(trade.agent_id.as_ref().map(|id| id.as_str()), Some("a-1"));
    assert_eq!(trade.attempts, Some(1));
    let calls = agent.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].request.parameters,
        json!({"symbol": "AAPL", "qty": 120, "note": "buy 120"})
    );
    assert_eq!(calls[0].request.task_type.as_str(), "TASK");
    assert_eq!(calls[0].request.attempt, 1);
    assert_eq!(calls[0].request.item, None);
    assert_eq!(report.started_at, t0());
    assert_eq!(report.ended_at, at_ms(250));
    assert_eq!(h.elapsed(), ms(250));
}

#[test]
fn a_later_step_receives_an_earlier_output_with_its_type() {
    let h = Harness::new();
    let agent = h.register(
        h.agent("a-1")
            .replies(|request, _| match request.step_id.as_str() {
                "signal" => {
                    Reply::ok(json!({"orders": [{"id": "o-1"}, {"id": "o-2"}], "strength": 0.8}))
                }
                _ => Reply::ok(json!({"received": request.parameters.clone()})),
            }),
    );
    let definition = workflow([
        task_with("signal", json!({})),
        task_with(
            "size",
            json!({"orders": "${signal.output.orders}", "first": "${signal.output.orders[0].id}",
                   "strength": "${signal.output.strength}"}),
        ),
    ]);

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Completed);
    let calls = agent.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        calls[1].request.parameters,
        json!({"orders": [{"id": "o-1"}, {"id": "o-2"}], "first": "o-1", "strength": 0.8})
    );
}

#[test]
fn a_task_step_emits_started_then_completed_events() {
    let h = Harness::new();
    h.register(
        h.agent("a-1")
            .replies(|_, _| Reply::ok(json!({"ok": true})).after_ms(40)),
    );

    let report = h.run(&workflow([task_with("only", json!({}))]), json!({}));

    let events = h.events();
    let kinds: Vec<&str> = events
        .iter()
        .map(|event| match event {
            RunEvent::RunStarted { .. } => "RunStarted",
            RunEvent::StepStarted { .. } => "StepStarted",
            RunEvent::StepCompleted { .. } => "StepCompleted",
            RunEvent::RunEnded { .. } => "RunEnded",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        ["RunStarted", "StepStarted", "StepCompleted", "RunEnded"]
    );
    assert!(matches!(
        &events[1],
        RunEvent::StepStarted { step_id, attempt: 1, agent_id, at, .. }
            if step_id == "only" && agent_id == "a-1" && *at == t0()
    ));
    assert!(matches!(
        &events[2],
        RunEvent::StepCompleted { step_id, attempts: 1, at, .. }
            if step_id == "only" && *at == at_ms(40)
    ));
    assert!(matches!(
        &events[3],
        RunEvent::RunEnded { status: RunStatus::Completed, run_id, .. } if *run_id == report.run_id
    ));
    assert!(events.iter().all(|event| *event.run_id() == report.run_id));
}

#[test]
fn a_decision_step_records_its_decision() {
    let h = Harness::new();
    h.register(h.agent("pm-1").replies(|request, _| {
        let capital = request.parameters["capital"].as_f64().unwrap_or(0.0);
        Reply::ok(json!({"orders": [{"symbol": "AAPL", "notional": capital / 2.0}]})).after_ms(150)
    }));
    let definition = workflow([with(
        task_with("sizing", json!({"capital": "${input.capital}"})),
        json!({"type": "decision", "task": {"type": "POSITION_SIZING",
                                            "parameters": {"capital": "${input.capital}"}}}),
    )]);

    let report = h.run(&definition, json!({"capital": 100000}));

    assert_status(&report, RunStatus::Completed);
    let output = json!({"orders": [{"symbol": "AAPL", "notional": 50000.0}]});
    assert_eq!(step(&report, "sizing").output, Some(output.clone()));
    let decisions = h.engine.decisions().decisions("w");
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    let decision = &decisions[0];
    assert_eq!(decision.run_id, report.run_id);
    assert_eq!(decision.workflow_id, "w");
    assert_eq!(decision.step_id.as_str(), "sizing");
    assert_eq!(decision.task_type.as_str(), "POSITION_SIZING");
    assert_eq!(
        decision.agent_id.as_ref().map(|id| id.as_str()),
        Some("pm-1")
    );
    assert_eq!(decision.parameters, json!({"capital": 100000}));
    assert_eq!(decision.decision, output);
    assert_eq!(decision.at, at_ms(150));
    assert!(h.engine.decisions().decisions("other").is_empty());
}

#[test]
fn task_steps_are_not_recorded_as_decisions() {
    let h = Harness::new();
    h.register(h.agent("a-1"));

    let report = h.run(&workflow([task_with("plain", json!({}))]), json!({}));

    assert_eq!(report.status, RunStatus::Completed);
    assert!(h.engine.decisions().decisions("w").is_empty());
}

#[test]
fn a_failed_decision_step_records_nothing() {
    let h = Harness::new();
    h.register(
        h.agent("a-1")
            .replies(|_, _| Reply::permanent("no capital")),
    );
    let definition = workflow([with(
        task_with("sizing", json!({})),
        json!({"type": "decision"}),
    )]);

    let report = h.run(&definition, json!({}));

    assert_eq!(report.status, RunStatus::Failed);
    assert!(h.engine.decisions().decisions("w").is_empty());
}
