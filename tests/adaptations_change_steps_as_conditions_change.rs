//! Adaptations: the workflow's rules that hold as a step is about to start change it —
//! parameters, timeout, retry policy, skip — read the host's conditions and the
//! engine's built-in names, and are journaled, announced and reported.

mod support;

use serde_json::{Value, json};
use support::engine::{Harness, Reply, assert_status, reason, step};
use support::{task_with, with, workflow};
use tradeflow::definition::AdaptationDefinition;
use tradeflow::engine::{EngineError, RunEvent, RunOptions, RunStatus, StepStatus};
use tradeflow::expr::Context;

/// Two steps, `risk` then `size`, with `adaptations`.
fn adaptive(adaptations: Value) -> Value {
    let mut definition = workflow([
        with(
            task_with("risk", json!({"limit": 1, "mode": "normal"})),
            json!({"timeout": 1000, "retryPolicy": {"maxAttempts": 1}}),
        ),
        task_with("size", json!({"maxPositionSize": 0.05})),
    ]);
    definition["adaptations"] = adaptations;
    definition
}

fn parameters_of(agent: &support::engine::TestAgent, step: &str) -> Vec<Value> {
    agent
        .calls()
        .into_iter()
        .filter(|call| call.step() == step)
        .map(|call| call.request.parameters)
        .collect()
}

#[test]
fn parameters_are_merged_over_the_task_s_when_the_condition_holds() {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1").answers(json!({})));
    let definition = adaptive(json!([
        {"id": "high-volatility", "when": "volatility.level > 0.5",
         "changes": [{"stepId": "risk", "parameters": {"mode": "defensive"}},
                     {"stepId": "size", "parameters": {"maxPositionSize": 0.02}}]}
    ]));
    h.engine
        .adapt_to_conditions([("volatility.level", json!(0.8))]);

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(
        parameters_of(&agent, "risk"),
        [json!({"limit": 1, "mode": "defensive"})]
    );
    assert_eq!(
        parameters_of(&agent, "size"),
        [json!({"maxPositionSize": 0.02})]
    );
    assert_eq!(step(&report, "risk").adaptations, ["high-volatility"]);
    assert!(h.events().iter().any(|event| matches!(
        event,
        RunEvent::StepAdapted { step_id, ids, .. } if step_id.as_str() == "size" && ids == &["high-volatility"]
    )));
}

#[test]
fn an_adaptation_whose_condition_is_false_changes_nothing_and_is_not_reported() {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1").answers(json!({})));
    let definition = adaptive(json!([
        {"id": "high-volatility", "when": "volatility.level > 0.5",
         "changes": [{"stepId": "size", "parameters": {"maxPositionSize": 0.02}}]}
    ]));
    h.engine
        .adapt_to_conditions([("volatility.level", json!(0.1))]);

    let report = h.run(&definition, json!({}));

    assert_eq!(
        parameters_of(&agent, "size"),
        [json!({"maxPositionSize": 0.05})]
    );
    assert!(step(&report, "size").adaptations.is_empty());
}

#[test]
fn a_run_s_own_context_is_read_under_the_engine_s_conditions() {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1").answers(json!({})));
    let definition = adaptive(json!([
        {"id": "closed", "when": "market.open == false",
         "changes": [{"stepId": "size", "parameters": {"maxPositionSize": 0}}]}
    ]));
    let context = Context::new().with_variable("market.open", json!(false));

    h.run_with(&definition, RunOptions::new(json!({})).context(context));

    assert_eq!(
        parameters_of(&agent, "size"),
        [json!({"maxPositionSize": 0})]
    );
}

#[test]
fn a_timeout_factor_multiplies_the_step_s_timeout() {
    let h = Harness::new();
    let agent = h.register(
        h.agent("a-1")
            .replies(|_, _| Reply::ok(json!({"done": true})).after_ms(1500)),
    );
    let definition = adaptive(json!([
        {"id": "slow-markets", "when": "volatility.level > 0.5",
         "changes": [{"stepId": "risk", "timeoutFactor": 2}]}
    ]));

    let calm = h.run(&definition, json!({}));
    assert_eq!(step(&calm, "risk").status, StepStatus::Failed);

    h.engine
        .adapt_to_conditions([("volatility.level", json!(0.9))]);
    let volatile = h.run(&definition, json!({}));

    assert_status(&volatile, RunStatus::Completed);
    assert_eq!(step(&volatile, "risk").adaptations, ["slow-markets"]);
    assert_eq!(agent.calls().len(), 3);
}

#[test]
fn a_timeout_replaces_the_step_s_and_a_later_adaptation_wins() {
    let h = Harness::new();
    h.register(
        h.agent("a-1")
            .replies(|_, _| Reply::ok(json!({})).after_ms(3000)),
    );
    let definition = adaptive(json!([
        {"id": "short", "when": "true", "changes": [{"stepId": "risk", "timeout": 100}]},
        {"id": "long", "when": "true", "changes": [{"stepId": "risk", "timeout": 5000}]}
    ]));

    let report = h.run(&definition, json!({}));

    assert_eq!(step(&report, "risk").status, StepStatus::Completed);
    assert_eq!(step(&report, "risk").adaptations, ["short", "long"]);
}

#[test]
fn a_retry_policy_replaces_the_step_s() {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1").replies(|_, n| {
        if n < 3 {
            Reply::temporary("busy")
        } else {
            Reply::ok(json!({}))
        }
    }));
    let definition = adaptive(json!([
        {"id": "persist", "when": "true",
         "changes": [{"stepId": "risk", "retryPolicy": {"maxAttempts": 5, "initialDelayMs": 10}}]}
    ]));

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(step(&report, "risk").attempts, Some(3));
    assert_eq!(agent.calls().len(), 4);
}

#[test]
fn a_skip_skips_the_step_naming_the_adaptation() {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1").answers(json!({})));
    let definition = adaptive(json!([
        {"id": "halt-sizing", "when": "halted == true", "changes": [{"stepId": "size", "skip": true}]}
    ]));
    h.engine.adapt_to_conditions([("halted", json!(true))]);

    let report = h.run(&definition, json!({}));

    assert_eq!(step(&report, "size").status, StepStatus::Skipped);
    assert_eq!(reason(&report, "size"), "adaptation halt-sizing");
    assert!(parameters_of(&agent, "size").is_empty());
}

#[test]
fn an_unknown_name_makes_the_adaptation_not_hold_and_the_run_goes_on() {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1").answers(json!({})));
    let definition = adaptive(json!([
        {"id": "never", "when": "nobody.set.this > 1 || agents.AGENT.bogus == 0",
         "changes": [{"stepId": "size", "skip": true}]}
    ]));

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(parameters_of(&agent, "size").len(), 1);
    assert!(step(&report, "size").adaptations.is_empty());
}

#[test]
fn agents_available_counts_agents_of_the_type_with_a_free_slot() {
    let h = Harness::new();
    h.register(h.agent("a-1").answers(json!({})));
    let definition = adaptive(json!([
        {"id": "no-risk-desk", "when": "agents.RISK_MANAGEMENT.available == 0",
         "changes": [{"stepId": "size", "parameters": {"maxPositionSize": 0.01}}]},
        {"id": "agents-there", "when": "agents.AGENT.available == 1",
         "changes": [{"stepId": "size", "parameters": {"note": "one free"}}]}
    ]));

    let report = h.run(&definition, json!({}));

    assert_eq!(
        step(&report, "size").adaptations,
        ["no-risk-desk", "agents-there"]
    );
}

#[test]
fn failure_rate_and_p95_are_measured_across_runs() {
    let h = Harness::new();
    h.register(h.agent("a-1").replies(|request, _| {
        if request.step_id.as_str() == "risk" {
            Reply::temporary("down").after_ms(400)
        } else {
            Reply::ok(json!({}))
        }
    }));
    let mut definition = adaptive(json!([
        {"id": "flaky", "when": "agents.AGENT.failureRate >= 0.5",
         "changes": [{"stepId": "size", "parameters": {"maxPositionSize": 0}}]},
        {"id": "slow", "when": "steps.risk.p95Ms >= 400",
         "changes": [{"stepId": "size", "parameters": {"slow": true}}]}
    ]));
    definition["executionPolicy"] = json!({"failureHandling": "CONTINUE_ON_FAILURE"});
    definition["steps"][0]["optional"] = json!(true);

    let first = h.run(&definition, json!({}));
    // The first run's `size` starts after `risk` failed once: both names are defined.
    assert_eq!(step(&first, "size").adaptations, ["flaky", "slow"]);
}

#[test]
fn a_run_in_flight_adapts_the_steps_it_has_not_started() {
    let h = Harness::new();
    let engine = h.engine.clone();
    let agent = h.register(h.agent("a-1").replies(move |request, _| {
        if request.step_id.as_str() == "risk" {
            engine.adapt_to_conditions([("volatility.level", json!(0.9))]);
        }
        Reply::ok(json!({}))
    }));
    let definition = adaptive(json!([
        {"id": "high-volatility", "when": "volatility.level > 0.5",
         "changes": [{"stepId": "risk", "parameters": {"mode": "defensive"}},
                     {"stepId": "size", "parameters": {"maxPositionSize": 0.02}}]}
    ]));
    h.engine
        .adapt_to_conditions([("volatility.level", json!(0.1))]);

    let report = h.run(&definition, json!({}));

    assert_eq!(
        parameters_of(&agent, "risk"),
        [json!({"limit": 1, "mode": "normal"})]
    );
    assert_eq!(
        parameters_of(&agent, "size"),
        [json!({"maxPositionSize": 0.02})]
    );
    assert!(step(&report, "risk").adaptations.is_empty());
}

#[test]
fn adapt_to_conditions_returns_the_adaptations_that_now_hold() {
    let h = Harness::new();
    h.workflow(&adaptive(json!([
        {"id": "high-volatility", "when": "volatility.level > 0.5",
         "changes": [{"stepId": "size", "skip": true}]},
        {"id": "low-volatility", "when": "volatility.level < 0.2",
         "changes": [{"stepId": "size", "skip": true}]}
    ])));

    let held = h
        .engine
        .adapt_to_conditions([("volatility", json!({"level": 0.7}))]);

    let ids: Vec<&str> = held
        .iter()
        .map(|held| held.adaptation_id.as_str())
        .collect();
    assert_eq!(ids, ["high-volatility"]);
    assert_eq!(held[0].workflow_id, "w");
}

#[test]
fn adapt_workflow_adds_a_rule_at_run_time_checked_like_one_in_the_file() {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1").answers(json!({})));
    let definition = adaptive(json!([]));
    let id = h.workflow(&definition);
    let rule = |json: Value| -> AdaptationDefinition { serde_json::from_value(json).unwrap() };

    let refused = h.engine.adapt_workflow(
        &id,
        rule(json!({"id": "bad", "when": "${input.x} > 1",
                    "changes": [{"stepId": "nope", "timeoutFactor": 0}]})),
    );
    let Err(EngineError::Invalid(errors)) = refused else {
        panic!("refused as invalid: {refused:?}")
    };
    let located: Vec<String> = errors
        .iter()
        .filter_map(|error| error.location().map(ToString::to_string))
        .collect();
    assert_eq!(
        located,
        [
            "adaptations[0] (bad).when",
            "adaptations[0] (bad).changes[0].stepId",
            "adaptations[0] (bad).changes[0].timeoutFactor",
        ]
    );
    assert!(matches!(
        h.engine.adapt_workflow(
            "missing",
            rule(json!({"id": "x", "when": "true", "changes": []}))
        ),
        Err(EngineError::UnknownWorkflow { .. })
    ));

    h.engine
        .adapt_workflow(
            &id,
            rule(json!({"id": "added", "when": "true",
                        "changes": [{"stepId": "size", "parameters": {"maxPositionSize": 0.03}}]})),
        )
        .expect("a valid rule is added");
    let report = h
        .clock
        .block_on(h.engine.start(&id, RunOptions::new(json!({}))).unwrap());

    assert_eq!(step(&report, "size").adaptations, ["added"]);
    assert_eq!(
        parameters_of(&agent, "size"),
        [json!({"maxPositionSize": 0.03})]
    );
    let duplicate = h.engine.adapt_workflow(
        &id,
        rule(json!({"id": "added", "when": "true", "changes": [{"stepId": "size", "skip": true}]})),
    );
    assert!(matches!(duplicate, Err(EngineError::Invalid(_))));
}
