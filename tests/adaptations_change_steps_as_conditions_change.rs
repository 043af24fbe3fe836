//! Adaptations: the workflow's rules that hold as a step is about to start change it —
//! parameters, timeout, retry policy, skip — read the host's conditions and the
//! engine's built-in names (measured across runs), and are journaled, announced and
//! reported; a run recovered after a restart applies exactly what its journal says
//! applied, and a step rolled back is adapted again.

mod support;

use std::sync::Arc;

use serde_json::{Value, json};
use support::engine::{Harness, Reply, TestAgent, assert_status, reason, step, step_on, t0};
use support::journal::assert_journal_matches;
use support::{task_with, with, workflow};
use tradeflow::clock::VirtualClock;
use tradeflow::definition::AdaptationDefinition;
use tradeflow::engine::{EngineError, RunEvent, RunOptions, RunReport, RunStatus, StepStatus};
use tradeflow::expr::Context;
use tradeflow::store::{JournalEntry, MemoryStore, RunStore};

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
fn failure_rate_and_p95_read_the_calls_made_earlier_in_the_same_run() {
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
fn failure_rate_and_p95_are_measured_across_runs() {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1").replies(|request, number| {
        if request.step_id.as_str() == "risk" && number == 1 {
            Reply::temporary("down").after_ms(400)
        } else {
            Reply::ok(json!({})).after_ms(10)
        }
    }));
    // Both rules change `risk`, the first step: in the first run nothing was measured
    // when it starts.
    let mut definition = adaptive(json!([
        {"id": "flaky", "when": "agents.AGENT.failureRate >= 0.2",
         "changes": [{"stepId": "risk", "parameters": {"mode": "cautious"}}]},
        {"id": "slow", "when": "steps.risk.p95Ms >= 400",
         "changes": [{"stepId": "risk", "timeoutFactor": 3}]}
    ]));
    definition["executionPolicy"] = json!({"failureHandling": "CONTINUE_ON_FAILURE"});
    definition["steps"][0]["optional"] = json!(true);

    let first = h.run(&definition, json!({}));
    assert_ne!(
        step(&first, "risk").status,
        StepStatus::Completed,
        "its one call failed"
    );
    assert!(step(&first, "risk").adaptations.is_empty());

    let second = h.run(&definition, json!({}));

    assert_status(&second, RunStatus::Completed);
    assert_eq!(step(&second, "risk").adaptations, ["flaky", "slow"]);
    assert_eq!(
        parameters_of(&agent, "risk"),
        [
            json!({"limit": 1, "mode": "normal"}),
            json!({"limit": 1, "mode": "cautious"})
        ]
    );
    // A measure is per workflow's step: another workflow's `risk` has none yet, while
    // the agent type failed 1 of its 4 calls.
    let mut other = definition.clone();
    other["id"] = json!("other");
    let third = h.run(&other, json!({}));
    assert_eq!(
        step(&third, "risk").adaptations,
        ["flaky"],
        "the failure rate is the agent type's, the p95 the workflow step's"
    );
}

/// A pool of 4 cores; `adaptive`'s run holds 3 of them for its whole length.
fn holding_three_of_four_cores(adaptations: Value) -> (Harness, Value) {
    let h = Harness::with(|builder| {
        builder.resource_pool(tradeflow::resource::ResourcePool::new([("cpu", 4.0)]).unwrap())
    });
    let mut definition = adaptive(adaptations);
    definition["resourceRequirements"] = json!([{"cpu": 3}]);
    (h, definition)
}

#[test]
fn resources_available_and_utilization_read_the_engine_s_pool() {
    let (h, definition) = holding_three_of_four_cores(json!([
        {"id": "scarce", "when": "resources.cpu.available < 2",
         "changes": [{"stepId": "size", "parameters": {"maxPositionSize": 0.01}}]},
        {"id": "plenty", "when": "resources.cpu.available >= 2",
         "changes": [{"stepId": "size", "skip": true}]},
        {"id": "busy", "when": "resources.cpu.utilization >= 0.75 && resources.cpu.utilization < 0.76",
         "changes": [{"stepId": "risk", "parameters": {"mode": "light"}}]},
        {"id": "no-gpu", "when": "resources.gpu.available == 0",
         "changes": [{"stepId": "size", "skip": true}]}
    ]));
    let agent = h.register(h.agent("a-1").answers(json!({})));

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(step(&report, "risk").adaptations, ["busy"]);
    assert_eq!(
        step(&report, "size").adaptations,
        ["scarce"],
        "a kind the pool does not have is not defined"
    );
    assert_eq!(
        parameters_of(&agent, "size"),
        [json!({"maxPositionSize": 0.01})]
    );
}

#[test]
fn resource_names_are_not_defined_without_a_resource_manager() {
    let h = Harness::new();
    h.register(h.agent("a-1").answers(json!({})));
    let definition = adaptive(json!([
        {"id": "idle", "when": "resources.cpu.utilization == 0.0",
         "changes": [{"stepId": "size", "skip": true}]}
    ]));

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Completed);
    assert!(step(&report, "size").adaptations.is_empty());
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
        "ops",
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
            rule(json!({"id": "x", "when": "true", "changes": []})),
            "ops",
        ),
        Err(EngineError::UnknownWorkflow { .. })
    ));

    h.engine
        .adapt_workflow(
            &id,
            rule(json!({"id": "added", "when": "true",
                        "changes": [{"stepId": "size", "parameters": {"maxPositionSize": 0.03}}]})),
            "ops",
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
        "ops",
    );
    assert!(matches!(duplicate, Err(EngineError::Invalid(_))));
}

/// `risk` (agent type RISK, whose first call hangs) then `size` (type SIZE); one rule
/// changes both when volatility is high.
fn restartable() -> Value {
    let mut definition = json!({"id": "restartable", "version": "1", "steps": [
        with(step_on("risk", "RISK"), json!({"task": {"type": "TASK", "parameters": {"mode": "normal"}}})),
        with(step_on("size", "SIZE"), json!({"task": {"type": "TASK", "parameters": {"maxPositionSize": 0.05}}})),
    ]});
    definition["adaptations"] = json!([
        {"id": "high-volatility", "when": "volatility.level > 0.5",
         "changes": [{"stepId": "risk", "parameters": {"mode": "defensive"}},
                     {"stepId": "size", "parameters": {"maxPositionSize": 0.02}}]}
    ]);
    definition
}

/// Starts [`restartable`] on an engine whose volatility is `before`, stops it while
/// `risk`'s first call hangs (the engine is dropped: a crash), and recovers it on a new
/// engine on the same store whose volatility is `after`. Returns the report and the
/// agents.
fn restarted(
    before: f64,
    after: f64,
) -> (RunReport, Arc<TestAgent>, Arc<TestAgent>, Arc<MemoryStore>) {
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(MemoryStore::new());
    let risk = Arc::new(
        TestAgent::new("risk-1", &clock)
            .of_type("RISK")
            .capacity(2)
            .replies(|_, number| {
                if number == 1 {
                    Reply::hang()
                } else {
                    Reply::ok(json!({}))
                }
            }),
    );
    let size = Arc::new(
        TestAgent::new("size-1", &clock)
            .of_type("SIZE")
            .answers(json!({})),
    );
    let engine_on = |volatility: f64| {
        let shared = Arc::clone(&store);
        let h = Harness::on_clock(clock.clone(), move |builder| builder.store(shared));
        h.register_shared(&risk);
        h.register_shared(&size);
        h.engine
            .adapt_to_conditions([("volatility.level", json!(volatility))]);
        h
    };

    let first = engine_on(before);
    let mut run = first.start(&restartable(), RunOptions::new(json!({})));
    assert!(
        clock.run_until_stalled(&mut run).is_pending(),
        "risk's first call hangs"
    );
    assert_eq!(risk.calls().len(), 1);
    drop(run);
    drop(first);

    let second = engine_on(after);
    let mut runs = second.engine.recover().expect("the run recovers");
    assert_eq!(runs.len(), 1);
    let report = clock.block_on(runs.remove(0));
    assert_status(&report, RunStatus::Completed);
    assert_journal_matches(&*store, &report);
    (report, risk, size, store)
}

fn adaptations_journaled(store: &MemoryStore, report: &RunReport) -> Vec<(String, Vec<String>)> {
    store
        .load(&report.run_id)
        .unwrap()
        .into_iter()
        .filter_map(|entry| match entry {
            JournalEntry::AdaptationsApplied { step_id, ids, .. } => {
                Some((step_id.to_string(), ids))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_run_resumed_after_a_restart_reapplies_exactly_the_journaled_adaptations() {
    let (report, risk, size, store) = restarted(0.9, 0.1);

    let calls = risk.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].key(), calls[0].key(), "the same logical call");
    assert_eq!(
        calls[1].request.parameters,
        json!({"mode": "defensive"}),
        "applied before the restart, applied again though volatility fell"
    );
    assert_eq!(step(&report, "risk").adaptations, ["high-volatility"]);
    // `size` had not started: it adapts to the conditions it starts in.
    assert_eq!(
        size.calls()[0].request.parameters,
        json!({"maxPositionSize": 0.05})
    );
    assert!(step(&report, "size").adaptations.is_empty());
    assert_eq!(
        adaptations_journaled(&store, &report),
        [
            ("risk".to_owned(), vec!["high-volatility".to_owned()]),
            ("size".to_owned(), vec![])
        ],
        "once per step: the recovered step is not adapted again"
    );
}

#[test]
fn a_run_resumed_after_a_restart_applies_none_when_none_were_journaled() {
    let (report, risk, size, store) = restarted(0.1, 0.9);

    let calls = risk.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        calls[1].request.parameters,
        json!({"mode": "normal"}),
        "none held before the restart, so none applies though volatility rose"
    );
    assert!(step(&report, "risk").adaptations.is_empty());
    assert_eq!(
        size.calls()[0].request.parameters,
        json!({"maxPositionSize": 0.02})
    );
    assert_eq!(step(&report, "size").adaptations, ["high-volatility"]);
    assert_eq!(
        adaptations_journaled(&store, &report),
        [
            ("risk".to_owned(), vec![]),
            ("size".to_owned(), vec!["high-volatility".to_owned()])
        ]
    );
}

#[test]
fn a_step_rolled_back_is_adapted_again_as_conditions_are_then_and_its_journal_folds() {
    let store = Arc::new(MemoryStore::new());
    let shared = Arc::clone(&store);
    let h = Harness::with(move |builder| builder.store(shared));
    let engine = h.engine.clone();
    h.register(
        h.agent("quote-1")
            .of_type("QUOTE")
            .answers(json!({"px": 100})),
    );
    // The first trade fails for good (and the desk calms down meanwhile); the redone one fills.
    let exec = h.register(h.agent("exec-1").of_type("EXEC").replies(move |_, number| {
        if number == 1 {
            engine.adapt_to_conditions([("volatility.level", json!(0.1))]);
            Reply::permanent("stale price")
        } else {
            Reply::ok(json!({"filled": true}))
        }
    }));
    let mut definition = json!({"id": "w", "steps": [
        step_on("quote", "QUOTE"),
        with(step_on("trade", "EXEC"), json!({
            "task": {"type": "TASK", "parameters": {"px": "${quote.output.px}", "size": 10}},
            "errorHandling": {"strategies": ["ROLLBACK"]}
        })),
    ]});
    definition["adaptations"] = json!([
        {"id": "high-volatility", "when": "volatility.level > 0.5",
         "changes": [{"stepId": "trade", "parameters": {"size": 2}}]}
    ]);
    h.engine
        .adapt_to_conditions([("volatility.level", json!(0.9))]);

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Completed);
    let sizes: Vec<Value> = exec
        .calls()
        .iter()
        .map(|call| call.request.parameters["size"].clone())
        .collect();
    assert_eq!(sizes, [json!(2), json!(10)]);
    assert!(step(&report, "trade").adaptations.is_empty());
    assert_eq!(
        adaptations_journaled(&store, &report),
        [
            ("trade".to_owned(), vec!["high-volatility".to_owned()]),
            ("trade".to_owned(), vec![])
        ]
    );
    assert_journal_matches(&*store, &report);
}

#[test]
fn built_in_names_of_hyphenated_steps_are_read_whole() {
    let h = Harness::new();
    let agent = h.register(
        h.agent("a-1")
            .replies(|_, _| Reply::ok(json!({})).after_ms(500)),
    );
    let mut definition = workflow([
        task_with("risk-assessment", json!({"mode": "normal"})),
        task_with("position-sizing", json!({"mode": "normal"})),
    ]);
    definition["adaptations"] = json!([
        {"id": "slow-risk", "when": "steps.risk-assessment.p95Ms >= 400",
         "changes": [{"stepId": "position-sizing", "parameters": {"mode": "cautious"}}]}
    ]);
    let report = h.run(&definition, json!({}));
    assert_status(&report, RunStatus::Completed);
    // `risk-assessment` took 500 ms before `position-sizing` started: the rule held,
    // which it could not if the name read as `steps.risk - assessment.p95Ms`.
    assert_eq!(step(&report, "position-sizing").adaptations, ["slow-risk"]);
    assert_eq!(
        parameters_of(&agent, "position-sizing"),
        [json!({"mode": "cautious"})]
    );
}

#[test]
fn a_timeline_change_reaches_the_later_steps_of_a_run_already_in_flight() {
    use tradeflow::clock::VirtualClock;
    use tradeflow::scheduler::{Timeline, Triggers};

    let timeline = Timeline::from_json(
        r#"{"start": "2026-11-23T09:00:00Z", "end": "2026-11-23T18:00:00Z",
            "context": {"volatility.level": 0.2},
            "events": [{"at": "2026-11-23T10:00:00Z", "type": "OPEN", "payload": {}}],
            "changes": [{"at": "2026-11-23T11:00:00Z", "set": {"volatility.level": 0.9}}]}"#,
    )
    .unwrap();
    let clock = VirtualClock::starting_at(timeline.start);
    let h = Harness::on_clock(clock.clone(), |builder| builder);
    // `risk` takes two hours: the run fires at 10:00, volatility rises at 11:00, `size`
    // starts at 12:00.
    let agent = h.register(h.agent("a-1").replies(|request, _| {
        let hours = if request.step_id.as_str() == "risk" {
            2 * 3_600_000
        } else {
            10
        };
        Reply::ok(json!({})).after_ms(hours)
    }));
    let mut definition = adaptive(json!([
        {"id": "high-volatility", "when": "volatility.level > 0.5",
         "changes": [{"stepId": "size", "parameters": {"maxPositionSize": 0.02}}]}
    ]));
    definition["steps"][0]["timeout"] = json!(3 * 3_600_000);
    definition["triggers"] = json!([{"type": "EVENT", "eventType": "OPEN"}]);
    let id = h.workflow(&definition);
    let triggers = Triggers::new(&h.engine, &id).unwrap();
    let replay = clock.block_on(timeline.play(&triggers));
    assert_eq!(replay.runs.len(), 1);
    let report = &replay.runs[0].report;
    assert_status(report, RunStatus::Completed);
    assert!(step(report, "risk").adaptations.is_empty());
    assert_eq!(step(report, "size").adaptations, ["high-volatility"]);
    assert_eq!(
        parameters_of(&agent, "size"),
        [json!({"maxPositionSize": 0.02})]
    );
}
