//! `condition` steps: no agent, no time; the first branch whose `when` holds is taken
//! (else the default, named `"default"` unless given), output as `{"branch": name}`, and
//! later steps gate on it with their own `condition`.

mod support;

use serde_json::{Value, json};
use support::engine::{Harness, Reply, assert_status, at_ms, reason, step};
use support::{task_with, with};
use tradeflow::engine::{RunEvent, RunStatus, StepStatus};

/// `signal` (answers the input's score after 100 ms), `route` over it, and one step per
/// branch gated on `route`'s output.
fn routed(default: Option<&str>) -> Value {
    let mut route = json!({
        "id": "route",
        "type": "condition",
        "branches": [
            {"name": "buy", "when": "${signal.output.score} > 0.7"},
            {"name": "strong-buy", "when": "${signal.output.score} > 0.9"},
            {"name": "sell", "when": "${signal.output.score} < 0.3"}
        ]
    });
    if let Some(default) = default {
        route = with(route, json!({"default": default}));
    }
    let gated = |id: &str, branch: &str| {
        with(
            task_with(id, json!({"side": id})),
            json!({"condition": {"expression": format!("${{route.output.branch}} == \"{branch}\"")}}),
        )
    };
    json!({
        "id": "w",
        "steps": [
            task_with("signal", json!({"score": "${input.score}"})),
            route,
            gated("buy", "buy"),
            gated("sell", "sell"),
        ],
        "dependencies": [
            {"from": "signal", "to": "route"},
            {"from": "route", "to": "buy"},
            {"from": "route", "to": "sell"}
        ]
    })
}

fn harness() -> (Harness, std::sync::Arc<support::engine::TestAgent>) {
    let h = Harness::new();
    let agent =
        h.register(h.agent("a-1").capacity(4).replies(
            |request, _| match request.step_id.as_str() {
                "signal" => Reply::ok(json!({"score": request.parameters["score"]})).after_ms(100),
                _ => Reply::ok(json!({"side": request.parameters["side"]})),
            },
        ));
    (h, agent)
}

#[test]
fn the_first_matching_branch_is_taken_and_gates_later_steps() {
    let (h, agent) = harness();

    // 0.95 matches both `buy` and `strong-buy`: the first listed wins.
    let report = h.run(&routed(None), json!({"score": 0.95}));

    assert_status(&report, RunStatus::Completed);
    let route = step(&report, "route");
    assert_eq!(route.status, StepStatus::Completed);
    assert_eq!(route.output, Some(json!({"branch": "buy"})));
    assert_eq!(step(&report, "buy").status, StepStatus::Completed);
    assert_eq!(step(&report, "sell").status, StepStatus::Skipped);
    assert!(
        reason(&report, "sell").starts_with("condition false"),
        "{}",
        reason(&report, "sell")
    );
    let called: Vec<String> = agent
        .calls()
        .iter()
        .map(|call| call.step().to_owned())
        .collect();
    assert_eq!(called, ["signal", "buy"]);
}

#[test]
fn a_later_branch_is_taken_when_earlier_ones_do_not_hold() {
    let (h, _agent) = harness();

    let report = h.run(&routed(None), json!({"score": 0.1}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(
        step(&report, "route").output,
        Some(json!({"branch": "sell"}))
    );
    assert_eq!(step(&report, "buy").status, StepStatus::Skipped);
    assert_eq!(step(&report, "sell").status, StepStatus::Completed);
}

#[test]
fn no_matching_branch_takes_the_default_named_default() {
    let (h, agent) = harness();

    let report = h.run(&routed(None), json!({"score": 0.5}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(
        step(&report, "route").output,
        Some(json!({"branch": "default"}))
    );
    assert_eq!(step(&report, "buy").status, StepStatus::Skipped);
    assert_eq!(step(&report, "sell").status, StepStatus::Skipped);
    assert_eq!(agent.calls().len(), 1);
}

#[test]
fn a_named_default_is_output_by_its_name() {
    let (h, _agent) = harness();

    let report = h.run(&routed(Some("hold")), json!({"score": 0.5}));

    assert_eq!(
        step(&report, "route").output,
        Some(json!({"branch": "hold"}))
    );
}

#[test]
fn a_condition_step_calls_no_agent_and_takes_no_time() {
    let (h, _agent) = harness();

    let report = h.run(&routed(None), json!({"score": 0.95}));

    let route = step(&report, "route");
    assert_eq!(route.agent_id, None);
    assert_eq!(route.attempts, None);
    let events = h.events();
    assert!(!events.iter().any(|event| matches!(
        event,
        RunEvent::StepStarted { step_id, .. } if step_id == "route"
    )));
    // It completes the moment `signal` does.
    assert!(events.iter().any(|event| matches!(
        event,
        RunEvent::StepCompleted { step_id, agent_id: None, at, .. }
            if step_id == "route" && *at == at_ms(100)
    )));
    assert_eq!(report.ended_at, at_ms(100));
}
