//! The two reference workflows load, validate and compile exactly as written, and the
//! seed's verbatim copy (with its time arithmetic in a trigger) is rejected naming the
//! trigger and quoting the expression.

mod support;

use chrono::{DateTime, Utc};
use serde_json::json;
use support::{errors_of, listing, location};
use tradeflow::definition::{
    Concurrency, DefinitionError, FailureHandling, OnTimeout, StepType, TriggerType,
    WorkflowDefinition,
};
use tradeflow::expr::{Context, ExpressionProblem};
use tradeflow::plan::{Edge, ExecutionPlan, StepKind, TriggerKind, Until};

const ALGO_TRADING: &str = include_str!("../examples/workflows/algo-trading.json");
const PORTFOLIO_REBALANCING: &str =
    include_str!("../examples/workflows/portfolio-rebalancing.json");
const SEED_VERBATIM: &str =
    include_str!("../examples/workflows/invalid/seed-portfolio-rebalancing-verbatim.json");

fn compile(json: &str) -> ExecutionPlan {
    ExecutionPlan::from_json(json).unwrap_or_else(|errors| panic!("{errors}"))
}

/// The predecessors of step `index` as (id, edge), sorted by id.
fn predecessors(plan: &ExecutionPlan, index: usize) -> Vec<(String, Edge)> {
    let mut found: Vec<(String, Edge)> = plan
        .predecessors(index)
        .map(|(from, edge)| (plan.steps()[from].id().to_string(), edge))
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// Describes an edge as the reasons it exists: `dependency`, `data`, `order`.
fn reasons(edge: Edge) -> Vec<&'static str> {
    [
        ("dependency", edge.is_dependency()),
        ("data", edge.is_data()),
        ("order", edge.is_order()),
    ]
    .into_iter()
    .filter_map(|(name, holds)| holds.then_some(name))
    .collect()
}

/// Step `index`'s predecessors as (id, reasons).
fn incoming(plan: &ExecutionPlan, index: usize) -> Vec<(String, Vec<&'static str>)> {
    predecessors(plan, index)
        .into_iter()
        .map(|(id, edge)| (id, reasons(edge)))
        .collect()
}

fn edge(id: &str, why: &[&'static str]) -> (String, Vec<&'static str>) {
    (id.to_owned(), why.to_vec())
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("a timestamp")
        .with_timezone(&Utc)
}

#[test]
fn algo_trading_compiles_in_dependency_order() {
    let plan = compile(ALGO_TRADING);
    assert_eq!(plan.workflow_id(), "algo-trading-strategy");
    let order: Vec<&str> = plan.order().map(|step| step.id().as_str()).collect();
    assert_eq!(
        order,
        [
            "market-analysis",
            "risk-assessment",
            "position-sizing",
            "order-execution",
            "execution-monitoring"
        ]
    );
    let types: Vec<StepType> = plan.steps().iter().map(|step| step.step_type()).collect();
    assert_eq!(
        types,
        [
            StepType::Task,
            StepType::Task,
            StepType::Decision,
            StepType::Parallel,
            StepType::Loop
        ]
    );

    assert!(incoming(&plan, 0).is_empty());
    assert_eq!(
        incoming(&plan, 1),
        [edge("market-analysis", &["dependency", "data"])]
    );
    assert_eq!(
        incoming(&plan, 2),
        [
            edge("market-analysis", &["data"]),
            edge("risk-assessment", &["dependency", "data"]),
        ]
    );
    // The condition `${risk-assessment.output.approved} === true` is a data edge too.
    assert_eq!(
        incoming(&plan, 3),
        [
            edge("position-sizing", &["dependency", "data"]),
            edge("risk-assessment", &["data"]),
        ]
    );
    assert_eq!(
        incoming(&plan, 4),
        [edge("order-execution", &["dependency", "data"])]
    );
    assert_eq!(plan.graph().edge_count(), 6);

    let policy = plan.policy();
    assert_eq!(policy.concurrency, Concurrency::Sequential);
    assert_eq!(policy.failure_handling, FailureHandling::StopOnFailure);

    match plan.steps()[3].kind() {
        StepKind::Parallel { over, .. } => assert_eq!(over, "orders"),
        other => panic!("order-execution fans out: {other:?}"),
    }
    match plan.steps()[4].kind() {
        StepKind::Loop {
            until,
            max_iterations,
            ..
        } => {
            assert!(matches!(until, Until::Done));
            assert_eq!(*max_iterations, 100);
        }
        other => panic!("execution-monitoring loops: {other:?}"),
    }
    let condition = plan.steps()[3]
        .condition()
        .expect("order-execution is gated");
    assert_eq!(
        condition.text(),
        "${risk-assessment.output.approved} === true"
    );
}

#[test]
fn algo_trading_triggers_are_compiled() {
    let plan = compile(ALGO_TRADING);
    let triggers = plan.triggers();
    assert_eq!(triggers.len(), 2);

    let TriggerKind::Scheduled(schedule) = triggers[0].kind() else {
        panic!("trigger 0 is scheduled: {:?}", triggers[0]);
    };
    assert_eq!(schedule.pattern(), "0 9 * * 1-5");
    assert_eq!(schedule.timezone(), "UTC");
    let mut next = at("2026-11-25T10:00:00Z");
    let mut fired = Vec::new();
    for _ in 0..3 {
        next = schedule.next_after(next).expect("fires again");
        fired.push(next);
    }
    assert_eq!(
        fired,
        [
            at("2026-11-26T09:00:00Z"),
            at("2026-11-27T09:00:00Z"),
            at("2026-11-30T09:00:00Z")
        ]
    );
    let open = triggers[0].condition().expect("a market-hours condition");
    let calm = Context::new()
        .with_variable("volatility.level", json!(0.2))
        .with_function("market.isOpen", |_| Ok(json!(true)));
    let volatile = calm.clone().with_variable("volatility.level", json!(0.45));
    assert_eq!(open.evaluate_with(&calm), Ok(true));
    assert_eq!(open.evaluate_with(&volatile), Ok(false));

    assert_eq!(triggers[1].trigger_type(), TriggerType::Event);
    assert!(
        matches!(triggers[1].kind(), TriggerKind::Event { event_type } if event_type == "MARKET_SIGNAL")
    );
    let strong = triggers[1]
        .condition()
        .expect("a signal-strength condition");
    let event =
        |strength: f64| Context::new().with_variable("event", json!({"strength": strength}));
    assert_eq!(strong.evaluate_with(&event(0.8)), Ok(true));
    assert_eq!(strong.evaluate_with(&event(0.5)), Ok(false));
}

#[test]
fn portfolio_rebalancing_runs_in_listed_order() {
    let plan = compile(PORTFOLIO_REBALANCING);
    let order: Vec<&str> = plan.order().map(|step| step.id().as_str()).collect();
    assert_eq!(
        order,
        [
            "portfolio-analysis",
            "deviation-calculation",
            "rebalancing-decision",
            "trade-planning",
            "risk-validation",
            "execution-approval",
            "trade-execution"
        ]
    );
    // No `dependencies`: each step follows the one listed before it, plus its data.
    assert_eq!(
        incoming(&plan, 1),
        [edge("portfolio-analysis", &["data", "order"])]
    );
    assert_eq!(
        incoming(&plan, 4),
        [
            edge("portfolio-analysis", &["data"]),
            edge("trade-planning", &["data", "order"]),
        ]
    );
    assert_eq!(
        incoming(&plan, 5),
        [
            edge("risk-validation", &["data", "order"]),
            edge("trade-planning", &["data"]),
        ]
    );
    // Trade execution reads nothing from the approval: if the approval step is
    // skipped (small rebalance), execution still runs.
    assert_eq!(
        incoming(&plan, 6),
        [
            edge("execution-approval", &["order"]),
            edge("trade-planning", &["data"]),
        ]
    );
    let (_, to_execution) = predecessors(&plan, 6).remove(0);
    assert!(to_execution.is_order_only());

    match plan.steps()[5].kind() {
        StepKind::HumanApproval { on_timeout, .. } => assert_eq!(*on_timeout, OnTimeout::Reject),
        other => panic!("execution-approval waits for a person: {other:?}"),
    }
    assert_eq!(plan.steps()[5].agent_task().map(|_| ()), None);
    match plan.steps()[6].kind() {
        StepKind::Parallel { over, .. } => assert_eq!(over, "trades"),
        other => panic!("trade-execution fans out: {other:?}"),
    }
}

#[test]
fn portfolio_rebalancing_triggers_are_compiled() {
    let plan = compile(PORTFOLIO_REBALANCING);
    let triggers = plan.triggers();
    assert_eq!(triggers.len(), 2);
    let TriggerKind::Scheduled(schedule) = triggers[0].kind() else {
        panic!("trigger 0 is scheduled: {:?}", triggers[0]);
    };
    assert_eq!(schedule.pattern(), "0 0 * * 1");
    // 2026-11-25 is a Wednesday; the next Monday midnight is the 30th.
    assert_eq!(
        schedule.next_after(at("2026-11-25T10:00:00Z")),
        Some(at("2026-11-30T00:00:00Z"))
    );
    let due = Context::new().with_variable("portfolio.daysSinceRebalance", json!(8));
    let recent = Context::new().with_variable("portfolio.daysSinceRebalance", json!(3));
    let condition = triggers[0].condition().expect("a staleness condition");
    assert_eq!(condition.evaluate_with(&due), Ok(true));
    assert_eq!(condition.evaluate_with(&recent), Ok(false));

    match triggers[1].kind() {
        TriggerKind::Threshold {
            metric, threshold, ..
        } => {
            assert_eq!(metric, "portfolio.deviation");
            assert_eq!(*threshold, 0.1);
        }
        other => panic!("trigger 1 is a threshold: {other:?}"),
    }
}

#[test]
fn reference_workflows_round_trip_through_the_definition() {
    for json in [ALGO_TRADING, PORTFOLIO_REBALANCING] {
        let definition = WorkflowDefinition::from_json(json).unwrap_or_else(|e| panic!("{e}"));
        let again =
            WorkflowDefinition::from_json(&definition.to_json()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(definition, again);
        // Serializing writes what the file says, no defaults added.
        let written: serde_json::Value = serde_json::from_str(json).unwrap();
        let serialized: serde_json::Value = serde_json::from_str(&definition.to_json()).unwrap();
        assert_eq!(written, serialized);
        assert_eq!(**compile(json).definition(), definition);
    }
}

#[test]
fn the_seed_verbatim_copy_is_rejected_naming_the_trigger_and_the_expression() {
    let errors = errors_of(SEED_VERBATIM);
    assert_eq!(errors.len(), 1, "{}", listing(&errors));
    let error = &errors[0];
    assert_eq!(
        location(error),
        "triggers[0] (SCHEDULED).condition.expression"
    );
    assert!(
        matches!(error, DefinitionError::Expression { expression, problem: ExpressionProblem::Syntax(_), .. }
            if expression == "portfolio.lastRebalance > 7 days ago"),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with("triggers[0] (SCHEDULED).condition.expression: "),
        "{message}"
    );
    assert!(
        message.contains("`portfolio.lastRebalance > 7 days ago`"),
        "{message}"
    );
}

#[test]
fn the_valid_copy_differs_from_the_seed_only_in_that_expression() {
    let fixed = SEED_VERBATIM.replace(
        "portfolio.lastRebalance > 7 days ago",
        "portfolio.daysSinceRebalance > 7",
    );
    let fixed: serde_json::Value = serde_json::from_str(&fixed).unwrap();
    let reference: serde_json::Value = serde_json::from_str(PORTFOLIO_REBALANCING).unwrap();
    assert_eq!(fixed, reference);
}
