//! Budgets: named token buckets (`{"capacity": 4, "refillPerSecond": 1}`) that pace the
//! calls a venue meters. A step's `budget` takes its amounts before each call (each item
//! of a `parallel` step); the call waits for refill on the engine's clock, in priority
//! then arrival order, while its timeout allows, then fails with `BUDGET_EXHAUSTED`.
//! Workflow budgets belong to the workflow; engine budgets are shared by every run.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::engine::{Harness, Reply, assert_status, ms, step};
use support::{location, task, task_with, with, workflow};
use tradeflow::definition::{DefinitionError, WorkflowDefinition};
use tradeflow::engine::{EngineError, FailureKind, RunEvent, RunOptions, RunStatus, StepStatus};
use tradeflow::plan::ExecutionPlan;
use tradeflow::safety::BudgetSpec;

/// A parallel step `execute` over the input's `orders`, taking `budget` per item.
fn execute(budget: Value) -> Value {
    with(
        task_with("execute", json!({"orders": "${input.orders}"})),
        json!({"type": "parallel", "budget": budget}),
    )
}

fn orders(count: usize) -> Value {
    Value::Array((0..count).map(|id| json!({"id": id})).collect())
}

/// When each call started, from t0, earliest first.
fn starts(agent: &support::engine::TestAgent) -> Vec<Duration> {
    let mut starts: Vec<Duration> = agent.calls().iter().map(|call| call.since_t0()).collect();
    starts.sort();
    starts
}

/// Starts a run of workflow `id` over `count` orders.
fn start(h: &Harness, id: &str, count: usize) -> tradeflow::engine::Run {
    h.engine
        .start(id, RunOptions::new(json!({"orders": orders(count)})))
        .expect("the workflow exists")
}

fn seconds(list: &[u64]) -> Vec<Duration> {
    list.iter().map(|s| ms(s * 1000)).collect()
}

#[test]
fn ten_items_on_a_budget_of_four_refilling_one_a_second_start_by_six_seconds() {
    let h = Harness::new();
    let agent = h.register(h.agent("exec-1").capacity(10).answers(json!({"ok": true})));
    let mut definition = workflow([execute(json!({"orders": 1}))]);
    definition["budgets"] = json!({"orders": {"capacity": 4, "refillPerSecond": 1}});

    let report = h.run(&definition, json!({"orders": orders(10)}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(
        starts(&agent),
        seconds(&[0, 0, 0, 0, 1, 2, 3, 4, 5, 6]),
        "four at once, then one as each token refills"
    );
    let waits: Vec<(Option<usize>, Duration)> = h
        .events()
        .iter()
        .filter_map(|event| match event {
            RunEvent::BudgetWaiting {
                item,
                budgets,
                until,
                ..
            } => {
                assert_eq!(budgets.get("orders"), Some(&1));
                Some((*item, support::engine::since_t0(*until)))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        waits,
        (4..10)
            .map(|item| (Some(item), ms((item as u64 - 3) * 1000)))
            .collect::<Vec<_>>(),
        "each call that waits says so once, with when its turn can come"
    );
}

#[test]
fn an_engine_budget_is_shared_by_every_run() {
    let h = Harness::with(|builder| {
        builder.budgets([("orders", BudgetSpec::new(2, 1.0).expect("a valid budget"))])
    });
    let agent = h.register(h.agent("exec-1").capacity(10).answers(json!({"ok": true})));
    let definition = workflow([execute(json!({"orders": 1}))]);
    let id = h.workflow(&definition);
    let first = start(&h, &id, 2);
    let second = start(&h, &id, 2);

    let (a, b) = h.clock.block_on(futures::future::join(first, second));

    assert_status(&a, RunStatus::Completed);
    assert_status(&b, RunStatus::Completed);
    assert_eq!(
        starts(&agent),
        seconds(&[0, 0, 1, 2]),
        "the second run waits for the tokens the first took"
    );
}

#[test]
fn waiting_calls_are_served_by_priority_then_arrival() {
    let h = Harness::with(|builder| {
        builder.budgets([("orders", BudgetSpec::new(1, 1.0).expect("a valid budget"))])
    });
    let agent = h.register(
        h.agent("exec-1")
            .capacity(10)
            .replies(|request, _| Reply::ok(json!({"run": request.run_id.as_str()}))),
    );
    let prioritised = |priority: i32| {
        let mut definition = workflow([with(
            execute(json!({"orders": 1})),
            json!({"resourceRequirements": {"priority": priority}}),
        )]);
        definition["id"] = json!(format!("w{priority}"));
        definition
    };
    let slow = h.workflow(&prioritised(5));
    let urgent = h.workflow(&prioritised(0));
    let slow = start(&h, &slow, 2);
    let slow_id = slow.id().clone();
    let urgent = start(&h, &urgent, 2);

    let (a, b) = h.clock.block_on(futures::future::join(slow, urgent));
    assert_status(&a, RunStatus::Completed);
    assert_status(&b, RunStatus::Completed);

    let mut calls = agent.calls();
    calls.sort_by_key(|call| call.since_t0());
    let order: Vec<(bool, Duration)> = calls
        .iter()
        .map(|call| (call.request.run_id == slow_id, call.since_t0()))
        .collect();
    assert_eq!(
        order,
        vec![
            (true, ms(0)),
            (false, ms(1000)),
            (false, ms(2000)),
            (true, ms(3000)),
        ],
        "the slow run's second call, in line first, lets the urgent run's calls go ahead"
    );
}

#[test]
fn a_call_that_cannot_get_its_budget_within_its_timeout_fails_budget_exhausted() {
    let h = Harness::new();
    let agent = h.register(h.agent("exec-1").capacity(10).answers(json!({"ok": true})));
    let mut definition = workflow([with(
        execute(json!({"orders": 1})),
        json!({"timeout": 3000, "retryPolicy": {"maxAttempts": 1}}),
    )]);
    definition["budgets"] = json!({"orders": {"capacity": 1, "refillPerSecond": 0.1}});

    let report = h.run(&definition, json!({"orders": orders(2)}));

    assert_status(&report, RunStatus::Failed);
    let execute = step(&report, "execute");
    assert_eq!(execute.status, StepStatus::Failed);
    let error = execute.error.clone().expect("an error");
    assert_eq!(error.kind, FailureKind::BudgetExhausted);
    assert!(
        error
            .message
            .contains("budget `orders` 1 not available within the step's timeout"),
        "{}",
        error.message
    );
    assert_eq!(agent.calls().len(), 1, "the second item is never called");
    assert_eq!(
        h.elapsed(),
        ms(3000),
        "it waited as long as its timeout allowed"
    );
}

#[test]
fn a_bound_amount_over_the_capacity_fails_the_step_without_calling() {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1").replies(|request, _| {
        if request.step_id.as_str() == "size" {
            Reply::ok(json!({"orderCount": 12}))
        } else {
            Reply::ok(json!({"filled": true}))
        }
    }));
    let trade = with(
        task("trade"),
        json!({"budget": {"orders": "${size.output.orderCount}"}}),
    );
    let mut definition = workflow([task("size"), trade]);
    definition["budgets"] = json!({"orders": {"capacity": 10, "refillPerSecond": 10}});

    let report = h.run(&definition, json!({}));

    let error = step(&report, "trade").error.clone().expect("an error");
    assert_eq!(error.kind, FailureKind::BudgetExhausted);
    assert_eq!(
        error.message,
        "step `trade`: budget `orders`: 12 is more than its capacity 10"
    );
    assert!(agent.calls().iter().all(|call| call.step() != "trade"));
}

#[test]
fn literal_amounts_over_capacity_and_bad_budgets_are_validation_errors() {
    let mut definition = workflow([with(
        task("trade"),
        json!({"budget": {"orders": 11, "weight": 1.5, "actualFrom": 5}}),
    )]);
    definition["budgets"] = json!({
        "orders": {"capacity": 10, "refillPerSecond": 10},
        "weight": {"capacity": 0, "refillPerSecond": 1}
    });

    let errors = ExecutionPlan::from_json(&definition.to_string())
        .expect_err("invalid")
        .into_iter()
        .map(|error| error.to_string())
        .collect::<Vec<_>>();

    assert!(
        errors
            .iter()
            .any(|error| error.starts_with("steps[0] (trade).budget.orders")
                && error.contains("more than the capacity 10")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|error| error.starts_with("steps[0] (trade).budget.weight")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|error| error.starts_with("budgets.weight")),
        "{errors:?}"
    );
}

#[test]
fn a_name_neither_the_workflow_nor_the_engine_declares_is_refused_when_added() {
    let h = Harness::with(|builder| {
        builder.budgets([("orders", BudgetSpec::new(10, 10.0).expect("a valid budget"))])
    });
    let definition = workflow([with(
        task("trade"),
        json!({"budget": {"orders": 1, "venue.weight": 5}}),
    )]);
    let parsed = WorkflowDefinition::from_value(&definition).expect("well formed");

    let error = h.engine.create_workflow(parsed).expect_err("refused");

    let EngineError::Invalid(errors) = error else {
        panic!("expected a validation error, got {error}");
    };
    let errors: Vec<DefinitionError> = errors.into_iter().collect();
    assert_eq!(
        errors.len(),
        1,
        "the engine's `orders` is known: {errors:?}"
    );
    assert!(
        matches!(&errors[0], DefinitionError::UnknownBudget { budget, .. } if budget == "venue.weight")
    );
    assert_eq!(location(&errors[0]), "steps[0] (trade).budget.venue.weight");
}

/// Three items each taking 10 `weight` (capacity 10, refilling 1 a second), whose agent
/// reports it used `used` in `usage`: when each started.
fn paced_by_usage(used: u64) -> Vec<Duration> {
    let h = Harness::new();
    let agent = h.register(
        h.agent("exec-1")
            .capacity(10)
            .answers(json!({"usage": {"weight": used, "other": 99}})),
    );
    let mut definition = workflow([execute(json!({"weight": 10, "actualFrom": "usage"}))]);
    definition["budgets"] = json!({"weight": {"capacity": 10, "refillPerSecond": 1}});
    let report = h.run(&definition, json!({"orders": orders(3)}));
    assert_status(&report, RunStatus::Completed);
    starts(&agent)
}

#[test]
fn what_a_call_reports_in_actual_from_is_refunded_or_charged() {
    assert_eq!(
        paced_by_usage(10),
        seconds(&[0, 10, 20]),
        "used as reserved"
    );
    assert_eq!(
        paced_by_usage(4),
        seconds(&[0, 4, 8]),
        "the 6 unused are refunded"
    );
    assert_eq!(
        paced_by_usage(13),
        seconds(&[0, 13, 26]),
        "the 3 used beyond are charged"
    );
}
