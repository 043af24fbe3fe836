//! The two reference workflows run unchanged, end to end, against their scripted agents
//! (`examples/agents`) and inputs (`examples/inputs`), on the virtual clock; the
//! portfolio rebalancing waits for its approval, answered as the agents file scripts it.

mod support;

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use serde_json::{Value, json};
use support::engine::{Harness, assert_status, drain, step, t0, waiting_steps};
use tradeflow::agent::AgentId;
use tradeflow::clock::Clock;
use tradeflow::definition::WorkflowDefinition;
use tradeflow::engine::{RunEvent, RunOptions, RunReport, RunStatus, StepStatus};
use tradeflow::sim::{AgentsFile, scripted_agents};

struct Reference {
    workflow: &'static str,
    agents: &'static str,
    input: &'static str,
}

const ALGO_TRADING: Reference = Reference {
    workflow: include_str!("../examples/workflows/algo-trading.json"),
    agents: include_str!("../examples/agents/algo-trading.json"),
    input: include_str!("../examples/inputs/algo-trading.json"),
};

const PORTFOLIO_REBALANCING: Reference = Reference {
    workflow: include_str!("../examples/workflows/portfolio-rebalancing.json"),
    agents: include_str!("../examples/agents/portfolio-rebalancing.json"),
    input: include_str!("../examples/inputs/portfolio-rebalancing.json"),
};

/// Runs `reference` on a fresh engine, answering each waiting step as its agents file
/// scripts (after `afterMs` of virtual time). Returns the harness too, for its events
/// and decisions.
fn run(reference: &Reference) -> (Harness, RunReport) {
    let h = Harness::new();
    let file = AgentsFile::from_json(reference.agents).expect("the agents file is valid");
    for agent in scripted_agents(&file, Arc::new(h.clock.clone())) {
        h.engine.register_agent(agent).expect("the agent registers");
    }
    let definition =
        WorkflowDefinition::from_json(reference.workflow).expect("the workflow parses");
    let workflow = h
        .engine
        .create_workflow(definition)
        .expect("the workflow is valid");
    let input: Value = serde_json::from_str(reference.input).expect("the input is JSON");
    let mut events = h.engine.subscribe();
    let mut run = h
        .engine
        .start(&workflow.id, RunOptions::new(input))
        .unwrap();
    let report = loop {
        if let Poll::Ready(report) = h.clock.run_until_stalled(&mut run) {
            break report;
        }
        let waiting = waiting_steps(&drain(&mut events));
        assert!(!waiting.is_empty(), "the run stalled with no step waiting");
        for step_id in waiting {
            let answer = file
                .approvals
                .get(step_id.as_str())
                .unwrap_or_else(|| panic!("no scripted answer for `{step_id}`"));
            h.clock.advance(Duration::from_millis(answer.after_ms));
            let (id, by, comment) = (run.id(), &answer.by, answer.comment.as_deref());
            if answer.approved {
                h.engine.approve(id, step_id.as_str(), by, comment).unwrap();
            } else {
                h.engine.reject(id, step_id.as_str(), by, comment).unwrap();
            }
        }
    };
    (h, report)
}

fn agent_ids(ids: &[AgentId]) -> Vec<&str> {
    ids.iter().map(AgentId::as_str).collect()
}

#[test]
fn algo_trading_completes_every_step() {
    let (h, report) = run(&ALGO_TRADING);

    assert_status(&report, RunStatus::Completed);
    assert_eq!(report.error, None);
    let ids: Vec<&str> = report.steps.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "market-analysis",
            "risk-assessment",
            "position-sizing",
            "order-execution",
            "execution-monitoring"
        ]
    );
    for (id, step) in &report.steps {
        assert_eq!(step.status, StepStatus::Completed, "{id}");
    }
    assert_eq!(report.started_at, t0());
    assert_eq!(report.ended_at, h.clock.now());
}

#[test]
fn algo_trading_steps_pass_their_data_along() {
    let (h, report) = run(&ALGO_TRADING);

    let analysis = step(&report, "market-analysis").output.as_ref().unwrap();
    assert_eq!(analysis["timeframe"], "1h");
    assert_eq!(
        analysis["indicators"],
        json!(["RSI", "MACD", "BOLLINGER_BANDS"])
    );
    // The risk engine is busy once: the default policy retries it.
    let risk = step(&report, "risk-assessment");
    assert_eq!(risk.attempts, Some(2));
    assert_eq!(risk.output.as_ref().unwrap()["portfolio"], "pf-momentum-01");
    let sizing = step(&report, "position-sizing").output.as_ref().unwrap();
    assert_eq!(sizing["capital"], 100000);
    let execution = step(&report, "order-execution");
    let output = execution.output.as_ref().unwrap();
    assert_eq!(output["orderIds"], json!(["ord-1", "ord-2"]));
    assert_eq!(output["strategy"], json!(["TWAP", "TWAP"]));
    assert_eq!(output["results"].as_array().map(Vec::len), Some(2));
    let executors = agent_ids(execution.agent_ids.as_deref().expect("agentIds"));
    assert_eq!(executors.len(), 2);
    assert!(
        executors.iter().all(|id| ["exec-1", "exec-2"].contains(id)),
        "{executors:?}"
    );
    let monitoring = step(&report, "execution-monitoring");
    let output = monitoring.output.as_ref().unwrap();
    assert_eq!(output["done"], true);
    assert_eq!(output["filled"], json!(["ord-1", "ord-2"]));
    assert_eq!(output["iterations"], 2);
    let decisions = h.engine.decisions().decisions("algo-trading-strategy");
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].step_id.as_str(), "position-sizing");
    assert_eq!(decisions[0].decision["orders"][0]["id"], "ord-1");
}

#[test]
fn algo_trading_takes_the_scripted_time() {
    let (_h, report) = run(&ALGO_TRADING);

    // Analysis 1.2 s; risk 0.3 s, fails, 1 s back-off, 0.3 s; sizing 0.15 s; orders at
    // least 50 ms; monitoring two polls of 2 s each.
    let elapsed = (report.ended_at - report.started_at).to_std().unwrap();
    let floor = Duration::from_millis(1200 + 300 + 1000 + 300 + 150 + 50 + 4000);
    assert!(
        (floor..floor + Duration::from_millis(100)).contains(&elapsed),
        "{elapsed:?} is not within 100 ms of {floor:?}"
    );
}

#[test]
fn portfolio_rebalancing_completes_once_approved() {
    let (h, report) = run(&PORTFOLIO_REBALANCING);

    assert_status(&report, RunStatus::Completed);
    for (id, step) in &report.steps {
        assert_eq!(step.status, StepStatus::Completed, "{id}");
    }
    let approval = step(&report, "execution-approval");
    assert_eq!(approval.approved_by.as_deref(), Some("pm@desk"));
    let output = approval.output.as_ref().unwrap();
    assert_eq!(output["approvedBy"], "pm@desk");
    assert_eq!(output["comment"], "within mandate");
    assert_eq!(output["approvalThreshold"], 100000);
    assert_eq!(output["tradePlan"]["totalValue"], 250000);
    let trades = step(&report, "trade-execution").output.as_ref().unwrap();
    assert_eq!(trades["tradeIds"], json!(["t-1", "t-2", "t-3"]));
    assert_eq!(trades["status"], json!(["FILLED", "FILLED", "FILLED"]));
    let decisions = h.engine.decisions().decisions("portfolio-rebalancing");
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].step_id.as_str(), "rebalancing-decision");
    assert_eq!(decisions[0].decision["shouldRebalance"], true);
}

#[test]
fn portfolio_rebalancing_waits_for_its_approver() {
    let (h, report) = run(&PORTFOLIO_REBALANCING);

    let events = h.events();
    let waited = events.iter().find_map(|event| match event {
        RunEvent::StepWaiting { step_id, at, .. } if step_id == "execution-approval" => Some(*at),
        _ => None,
    });
    let answered = events.iter().find_map(|event| match event {
        RunEvent::StepAnswered {
            step_id,
            at,
            approved: true,
            ..
        } if step_id == "execution-approval" => Some(*at),
        _ => None,
    });
    let (waited, answered) = (
        waited.expect("it waited"),
        answered.expect("it was answered"),
    );
    assert_eq!(
        answered - waited,
        chrono::Duration::minutes(1),
        "the scripted afterMs"
    );
    // The trades start only after the answer.
    assert!(events.iter().all(|event| match event {
        RunEvent::StepStarted { step_id, at, .. } if step_id == "trade-execution" =>
            *at >= answered,
        _ => true,
    }));
    assert!(report.ended_at > answered);
}

#[test]
fn both_reference_workflows_run_the_same_every_time() {
    for reference in [&ALGO_TRADING, &PORTFOLIO_REBALANCING] {
        let (first, first_report) = run(reference);
        let (second, second_report) = run(reference);

        assert_eq!(
            first_report.to_json_pretty(),
            second_report.to_json_pretty()
        );
        let events = |h: &Harness| -> Vec<String> {
            h.events()
                .iter()
                .map(|event| serde_json::to_string(event).unwrap())
                .collect()
        };
        assert_eq!(
            events(&first),
            events(&second),
            "{}",
            first_report.workflow_id
        );
    }
}
