//! Runs the reference portfolio-rebalancing workflow; the host approves the large
//! rebalance through the engine API.
//!
//! ```text
//! cargo run --example portfolio_rebalancing
//! ```
//!
//! The workflow (`examples/workflows/portfolio-rebalancing.json`, with the input of
//! `examples/inputs/portfolio-rebalancing.json`) analyses a balanced portfolio, measures
//! how far it drifted from its target allocation, decides whether rebalancing is worth its
//! cost, plans the trades, validates them against risk limits, asks a person to approve
//! when the plan trades more than 100,000, and executes the trades in parallel. Three
//! hand-written agents serve it, each handling the task types of its role:
//!
//! - `PortfolioAgent` (PORTFOLIO_MANAGEMENT): PORTFOLIO_ANALYSIS, DEVIATION_ANALYSIS and
//!   REBALANCING_DECISION, over an embedded book of holdings;
//! - `RiskAgent` (RISK_MANAGEMENT): RISK_VALIDATION, which fails the run with a permanent
//!   error when the plan breaks a limit;
//! - `ExecutionAgent` (TRADING_EXECUTION): TRADE_PLANNING and BATCH_EXECUTION.
//!
//! The approval shows the host's side of a `human_approval` step: the run is started
//! with `Engine::start`, which gives its id before it runs; a second future, driven
//! together with the run, listens to `Engine::subscribe` for `RunEvent::StepWaiting`,
//! prints what is asked and answers with `Engine::approve` (or `Engine::reject` when the
//! request is unreadable or over the desk's mandate). A real host would ask a person here.
//!
//! Exits with 0 when the run completes and 1 otherwise. It takes well under a second.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tradeflow::agent::{Agent, AgentDescriptor, AgentError, RunId, TaskRequest};
use tradeflow::clock::Clock;
use tradeflow::definition::{AgentType, WorkflowDefinition};
use tradeflow::engine::{
    Engine, EngineError, EventStream, RunEvent, RunOptions, RunReport, RunStatus,
};

const WORKFLOW: &str = include_str!("workflows/portfolio-rebalancing.json");
const INPUT: &str = include_str!("inputs/portfolio-rebalancing.json");

/// The book the portfolio agent reads: market value per asset class.
const BOOK: &[(&str, &[(&str, f64)])] = &[(
    "pf-balanced-01",
    &[
        ("bonds", 210_000.0),
        ("cash", 70_000.0),
        ("equities", 720_000.0),
    ],
)];
/// The asset class that absorbs the other trades; never traded itself.
const CASH: &str = "cash";
/// The instrument each asset class is traded through, and its price.
const INSTRUMENTS: &[(&str, &str, f64)] = &[("equities", "VTI", 281.40), ("bonds", "BND", 72.35)];
/// No rebalancing above this volatility: spreads are too wide.
const MAX_VOLATILITY: f64 = 0.30;
/// The largest share of the portfolio one rebalance may trade.
const MAX_TURNOVER: f64 = 0.30;

/// The approval step, who approves, and the most they may approve.
const APPROVAL_STEP: &str = "execution-approval";
const APPROVER: &str = "pm@desk";
const MANDATE_LIMIT: f64 = 500_000.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
enum Side {
    Buy,
    Sell,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Buy => "BUY",
            Self::Sell => "SELL",
        })
    }
}

/// One asset class of a portfolio.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Holding {
    value: f64,
    weight: f64,
}

/// The output of PORTFOLIO_ANALYSIS.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Portfolio {
    portfolio_id: String,
    total_value: f64,
    allocation: BTreeMap<String, Holding>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Deviation {
    asset_class: String,
    current: f64,
    target: f64,
    /// Value to buy (positive) or sell (negative) to reach the target.
    trade_value: f64,
}

/// The output of DEVIATION_ANALYSIS.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviationReport {
    deviations: Vec<Deviation>,
    max_deviation: f64,
    threshold: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MarketConditions {
    volatility: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TransactionCosts {
    commission_bps: f64,
    spread_bps: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Adjustment {
    asset_class: String,
    value: f64,
}

/// The output of REBALANCING_DECISION.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Decision {
    should_rebalance: bool,
    reasons: Vec<String>,
    adjustments: Vec<Adjustment>,
    estimated_cost: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Constraints {
    max_participation_rate: f64,
    deadline: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Trade {
    id: String,
    asset_class: String,
    symbol: String,
    side: Side,
    notional: f64,
    max_participation_rate: f64,
    deadline: String,
}

/// The output of TRADE_PLANNING.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TradePlan {
    trades: Vec<Trade>,
    /// The value traded, buys and sells together.
    total_value: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Execution {
    id: String,
    symbol: String,
    side: Side,
    qty: u64,
    price: f64,
}

/// What the approval step shows the approver (its resolved `task.parameters`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApprovalRequest {
    approval_threshold: f64,
    trade_plan: TradePlan,
    risk_assessment: RiskAssessment,
}

/// The output of RISK_VALIDATION.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RiskAssessment {
    approved: bool,
    turnover: f64,
    checks: Vec<String>,
}

/// Reads parameter `name` of a task. A missing or malformed parameter is a fault of the
/// workflow, which no retry can fix: the error is permanent.
fn parameter<T: DeserializeOwned>(request: &TaskRequest, name: &str) -> Result<T, AgentError> {
    let value = request.parameters.get(name).cloned().unwrap_or(Value::Null);
    serde_json::from_value(value).map_err(|error| {
        AgentError::permanent(format!(
            "{}: parameter `{name}`: {error}",
            request.task_type
        ))
    })
}

fn unsupported(request: &TaskRequest) -> AgentError {
    AgentError::permanent(format!("unsupported task type {}", request.task_type))
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// PORTFOLIO_MANAGEMENT: analysis, drift from target, and whether to rebalance.
struct PortfolioAgent {
    descriptor: AgentDescriptor,
    clock: Arc<dyn Clock>,
}

impl PortfolioAgent {
    fn new(clock: Arc<dyn Clock>) -> Self {
        let descriptor = AgentDescriptor::new("pm-1", AgentType::PORTFOLIO_MANAGEMENT);
        Self { descriptor, clock }
    }

    fn analyse(request: &TaskRequest) -> Result<Portfolio, AgentError> {
        let portfolio_id: String = parameter(request, "portfolioId")?;
        let positions = BOOK
            .iter()
            .find(|(id, _)| *id == portfolio_id)
            .map(|(_, positions)| *positions)
            .ok_or_else(|| AgentError::permanent(format!("unknown portfolio {portfolio_id}")))?;
        let total_value: f64 = positions.iter().map(|(_, value)| value).sum();
        let allocation = positions
            .iter()
            .map(|&(class, value)| {
                let weight = round(value / total_value, 4);
                (class.to_owned(), Holding { value, weight })
            })
            .collect();
        Ok(Portfolio {
            portfolio_id,
            total_value,
            allocation,
        })
    }

    fn deviations(request: &TaskRequest) -> Result<DeviationReport, AgentError> {
        let current: BTreeMap<String, Holding> = parameter(request, "currentAllocation")?;
        let target: BTreeMap<String, f64> = parameter(request, "targetAllocation")?;
        let threshold: f64 = parameter(request, "threshold")?;
        let total_value: f64 = current.values().map(|holding| holding.value).sum();
        let mut classes: Vec<&String> = current.keys().chain(target.keys()).collect();
        classes.sort();
        classes.dedup();
        let deviations: Vec<Deviation> = classes
            .into_iter()
            .map(|class| {
                let now = current.get(class).map_or(0.0, |holding| holding.weight);
                let goal = target.get(class).copied().unwrap_or(0.0);
                Deviation {
                    asset_class: class.clone(),
                    current: now,
                    target: goal,
                    trade_value: ((goal - now) * total_value).round(),
                }
            })
            .collect();
        let max_deviation = deviations
            .iter()
            .map(|deviation| round((deviation.current - deviation.target).abs(), 4))
            .fold(0.0, f64::max);
        Ok(DeviationReport {
            deviations,
            max_deviation,
            threshold,
        })
    }

    fn decide(request: &TaskRequest) -> Result<Decision, AgentError> {
        let report: DeviationReport = parameter(request, "deviations")?;
        let market: MarketConditions = parameter(request, "marketConditions")?;
        let costs: TransactionCosts = parameter(request, "transactionCosts")?;
        // Cash is what the other trades leave: it is never traded itself.
        let adjustments: Vec<Adjustment> = report
            .deviations
            .iter()
            .filter(|deviation| deviation.asset_class != CASH && deviation.trade_value != 0.0)
            .map(|deviation| Adjustment {
                asset_class: deviation.asset_class.clone(),
                value: deviation.trade_value,
            })
            .collect();
        let traded: f64 = adjustments
            .iter()
            .map(|adjustment| adjustment.value.abs())
            .sum();
        let cost_bps = costs.commission_bps + costs.spread_bps / 2.0;
        let estimated_cost = round(traded * cost_bps / 10_000.0, 2);
        let drifted = report.max_deviation > report.threshold;
        let calm = market.volatility <= MAX_VOLATILITY;
        let reasons = vec![
            format!(
                "largest drift {:.1}% {} the {:.1}% threshold",
                report.max_deviation * 100.0,
                if drifted { "exceeds" } else { "is within" },
                report.threshold * 100.0
            ),
            format!(
                "volatility {:.2} {} the {MAX_VOLATILITY:.2} limit",
                market.volatility,
                if calm { "within" } else { "above" }
            ),
            format!("estimated cost {estimated_cost:.2} ({cost_bps:.1} bps)"),
        ];
        Ok(Decision {
            should_rebalance: drifted && calm,
            reasons,
            adjustments,
            estimated_cost,
        })
    }
}

#[async_trait::async_trait]
impl Agent for PortfolioAgent {
    fn descriptor(&self) -> &AgentDescriptor {
        &self.descriptor
    }

    async fn execute(&self, request: TaskRequest) -> Result<Value, AgentError> {
        self.clock.sleep(Duration::from_millis(30)).await;
        let output = match request.task_type.as_str() {
            "PORTFOLIO_ANALYSIS" => json!(Self::analyse(&request)?),
            "DEVIATION_ANALYSIS" => json!(Self::deviations(&request)?),
            "REBALANCING_DECISION" => json!(Self::decide(&request)?),
            _ => return Err(unsupported(&request)),
        };
        Ok(output)
    }
}

/// RISK_MANAGEMENT: checks a trade plan against the portfolio before anything trades.
struct RiskAgent {
    descriptor: AgentDescriptor,
    clock: Arc<dyn Clock>,
}

impl RiskAgent {
    fn new(clock: Arc<dyn Clock>) -> Self {
        let descriptor = AgentDescriptor::new("risk-1", AgentType::RISK_MANAGEMENT);
        Self { descriptor, clock }
    }
}

#[async_trait::async_trait]
impl Agent for RiskAgent {
    fn descriptor(&self) -> &AgentDescriptor {
        &self.descriptor
    }

    async fn execute(&self, request: TaskRequest) -> Result<Value, AgentError> {
        if request.task_type != "RISK_VALIDATION" {
            return Err(unsupported(&request));
        }
        let plan: TradePlan = parameter(&request, "tradePlan")?;
        let portfolio: Portfolio = parameter(&request, "currentPortfolio")?;
        self.clock.sleep(Duration::from_millis(50)).await;
        let turnover = round(plan.total_value / portfolio.total_value, 4);
        let mut breaches = Vec::new();
        if turnover > MAX_TURNOVER {
            breaches.push(format!(
                "turnover {:.1}% above {:.1}%",
                turnover * 100.0,
                MAX_TURNOVER * 100.0
            ));
        }
        for trade in plan.trades.iter().filter(|trade| trade.side == Side::Sell) {
            let held = portfolio
                .allocation
                .get(&trade.asset_class)
                .map_or(0.0, |holding| holding.value);
            if trade.notional > held {
                breaches.push(format!(
                    "{} sells {} but holds {held}",
                    trade.id, trade.notional
                ));
            }
        }
        // A plan that breaks a limit must not trade: a permanent error stops the run.
        if !breaches.is_empty() {
            return Err(AgentError::permanent(breaches.join("; ")));
        }
        let checks = vec![
            format!(
                "turnover {:.1}% within {:.1}%",
                turnover * 100.0,
                MAX_TURNOVER * 100.0
            ),
            "every sell is covered by holdings".to_owned(),
        ];
        Ok(json!(RiskAssessment {
            approved: true,
            turnover,
            checks,
        }))
    }
}

/// TRADING_EXECUTION: turns the decision into trades, and executes one trade per call.
struct ExecutionAgent {
    descriptor: AgentDescriptor,
    clock: Arc<dyn Clock>,
}

impl ExecutionAgent {
    fn new(clock: Arc<dyn Clock>) -> Self {
        // Takes several trades at once, so the parallel step's calls overlap.
        let descriptor =
            AgentDescriptor::new("exec-1", AgentType::TRADING_EXECUTION).with_max_concurrency(4);
        Self { descriptor, clock }
    }

    fn plan(request: &TaskRequest) -> Result<TradePlan, AgentError> {
        let decision: Decision = parameter(request, "rebalancingPlan")?;
        let constraints: Constraints = parameter(request, "executionConstraints")?;
        let trades = decision
            .adjustments
            .iter()
            .map(|adjustment| {
                let symbol = instrument(&adjustment.asset_class)?.0;
                Ok(Trade {
                    id: format!("{}-{symbol}", request.run_id),
                    asset_class: adjustment.asset_class.clone(),
                    symbol: symbol.to_owned(),
                    side: if adjustment.value > 0.0 {
                        Side::Buy
                    } else {
                        Side::Sell
                    },
                    notional: adjustment.value.abs(),
                    max_participation_rate: constraints.max_participation_rate,
                    deadline: constraints.deadline.clone(),
                })
            })
            .collect::<Result<Vec<_>, AgentError>>()?;
        let total_value = trades.iter().map(|trade| trade.notional).sum();
        Ok(TradePlan {
            trades,
            total_value,
        })
    }

    async fn execute_trade(&self, request: &TaskRequest) -> Result<Execution, AgentError> {
        // The parallel step replaces the `trades` list with one of its items.
        let trade: Trade = parameter(request, "trades")?;
        let (symbol, price) = instrument(&trade.asset_class)?;
        self.clock.sleep(Duration::from_millis(70)).await;
        Ok(Execution {
            id: trade.id,
            symbol: symbol.to_owned(),
            side: trade.side,
            // Truncation is intended: whole shares, rounded down.
            qty: (trade.notional / price).floor() as u64,
            price,
        })
    }
}

/// The instrument an asset class trades through, and its price.
fn instrument(asset_class: &str) -> Result<(&'static str, f64), AgentError> {
    INSTRUMENTS
        .iter()
        .find(|(class, _, _)| *class == asset_class)
        .map(|&(_, symbol, price)| (symbol, price))
        .ok_or_else(|| AgentError::permanent(format!("no instrument for {asset_class}")))
}

#[async_trait::async_trait]
impl Agent for ExecutionAgent {
    fn descriptor(&self) -> &AgentDescriptor {
        &self.descriptor
    }

    async fn execute(&self, request: TaskRequest) -> Result<Value, AgentError> {
        match request.task_type.as_str() {
            "TRADE_PLANNING" => {
                self.clock.sleep(Duration::from_millis(20)).await;
                Ok(json!(Self::plan(&request)?))
            }
            "BATCH_EXECUTION" => {
                let execution = self.execute_trade(&request).await?;
                Ok(json!({ "executed": [execution] }))
            }
            _ => Err(unsupported(&request)),
        }
    }
}

/// The host's side of the approval: waits for the run to ask, shows what is asked, and
/// answers. Returns when the run ends.
async fn approve_when_asked(
    engine: &Engine,
    run_id: &RunId,
    mut events: EventStream,
    started: Instant,
) -> Result<(), EngineError> {
    while let Some(event) = events.next().await {
        match event {
            RunEvent::StepWaiting {
                run_id: waiting,
                step_id,
                parameters,
                ..
            } if &waiting == run_id && step_id == APPROVAL_STEP => {
                answer(engine, run_id, parameters, started)?;
            }
            RunEvent::RunEnded { run_id: ended, .. } if &ended == run_id => break,
            _ => {}
        }
    }
    Ok(())
}

fn answer(
    engine: &Engine,
    run_id: &RunId,
    parameters: Value,
    started: Instant,
) -> Result<(), EngineError> {
    let request = match serde_json::from_value::<ApprovalRequest>(parameters) {
        Ok(request) => request,
        Err(error) => {
            log(started, format!("host: cannot read the request ({error})"));
            let comment = "unreadable approval request";
            return engine.reject(run_id, APPROVAL_STEP, APPROVER, Some(comment));
        }
    };
    let plan = &request.trade_plan;
    log(
        started,
        format!(
            "host: {APPROVER} asked to approve {} trades worth {:.0} (threshold {:.0}); risk: {}",
            plan.trades.len(),
            plan.total_value,
            request.approval_threshold,
            request.risk_assessment.checks.join(", ")
        ),
    );
    for trade in &plan.trades {
        log(
            started,
            format!(
                "host:   {:<4} {:<4} {:>10.0}  by {}",
                trade.side, trade.symbol, trade.notional, trade.deadline
            ),
        );
    }
    if plan.total_value > MANDATE_LIMIT {
        return engine.reject(run_id, APPROVAL_STEP, APPROVER, Some("over mandate"));
    }
    engine.approve(run_id, APPROVAL_STEP, APPROVER, Some("within mandate"))
}

fn log(started: Instant, text: impl fmt::Display) {
    println!("{:>6} ms  {text}", started.elapsed().as_millis());
}

/// One line per run event, with the time since the program started.
fn print_event(started: Instant, event: &RunEvent) {
    let text = match event {
        RunEvent::RunStarted {
            run_id,
            workflow_id,
            ..
        } => format!("run {run_id} started: workflow {workflow_id}"),
        RunEvent::StepStarted {
            step_id,
            item,
            iteration,
            attempt,
            agent_id,
            score,
            ..
        } => format!(
            "{step_id}{}: sent to {agent_id} ({}attempt {attempt}, score {:.2})",
            item_label(*item),
            iteration
                .map(|n| format!("iteration {n}, "))
                .unwrap_or_default(),
            score.total
        ),
        RunEvent::StepRetrying {
            step_id,
            item,
            attempt,
            kind,
            message,
            delay_ms,
            ..
        } => format!(
            "{step_id}{}: attempt {attempt} failed, {kind}: {message}; retrying in {delay_ms} ms",
            item_label(*item)
        ),
        RunEvent::StepCompleted {
            step_id,
            agent_id,
            attempts,
            ..
        } => match agent_id {
            Some(agent) => format!("{step_id}: completed by {agent} ({})", calls(*attempts)),
            None => format!("{step_id}: completed"),
        },
        RunEvent::StepFailed {
            step_id,
            kind,
            message,
            ..
        } => format!("{step_id}: FAILED, {kind}: {message}"),
        RunEvent::StepSkipped {
            step_id, reason, ..
        } => format!("{step_id}: skipped, {reason}"),
        RunEvent::StepCancelled { step_id, .. } => format!("{step_id}: cancelled"),
        RunEvent::StepWaiting { step_id, .. } => format!("{step_id}: waiting for approval"),
        RunEvent::StepAnswered {
            step_id,
            approved,
            by,
            comment,
            ..
        } => {
            let answer = if *approved { "approved" } else { "rejected" };
            let comment = comment.as_deref().unwrap_or("no comment");
            format!("{step_id}: {answer} by {by} ({comment})")
        }
        RunEvent::RunEnded { run_id, status, .. } => format!("run {run_id} ended: {status}"),
        other => format!("{other:?}"),
    };
    log(started, text);
}

fn item_label(item: Option<usize>) -> String {
    item.map(|item| format!("[{item}]")).unwrap_or_default()
}

fn calls(count: u32) -> String {
    match count {
        1 => "1 call".to_owned(),
        _ => format!("{count} calls"),
    }
}

fn print_summary(report: &RunReport) {
    println!();
    println!("run {}: {}", report.run_id, report.status);
    if let Some(error) = &report.error {
        println!("  error: {} ({})", error.message, error.kind);
    }
    println!("  {:<22} {:<10} {:<8} calls", "step", "status", "agent");
    for (step, step_report) in &report.steps {
        // A parallel step names the agent of each item; list each agent once.
        let mut agents: Vec<String> = match (&step_report.agent_ids, &step_report.agent_id) {
            (Some(agents), _) => agents.iter().map(ToString::to_string).collect(),
            (None, Some(agent)) => vec![agent.to_string()],
            (None, None) => vec!["-".to_owned()],
        };
        agents.sort();
        agents.dedup();
        let calls = step_report
            .attempts
            .map_or_else(|| "-".to_owned(), |calls| calls.to_string());
        println!(
            "  {:<22} {:<10} {:<8} {calls}",
            step.as_str(),
            step_report.status.as_str(),
            agents.join(",")
        );
    }
    let approved_by = report
        .step(APPROVAL_STEP)
        .and_then(|step| step.approved_by.as_deref())
        .unwrap_or("nobody");
    println!("approvedBy: {approved_by}");
    let executions: Vec<Execution> = report
        .step("trade-execution")
        .and_then(|step| step.output.as_ref()?.get("executed").cloned())
        .and_then(|executed| serde_json::from_value(executed).ok())
        .unwrap_or_default();
    println!("trades executed:");
    if executions.is_empty() {
        println!("  none");
    }
    for execution in &executions {
        println!(
            "  {:<12} {:<4} {:>5} {:<4} @ {:.2}",
            execution.id, execution.side, execution.qty, execution.symbol, execution.price
        );
    }
    let elapsed = report.ended_at - report.started_at;
    println!("total time: {} ms", elapsed.num_milliseconds());
}

fn main() -> Result<ExitCode, Box<dyn Error>> {
    let started = Instant::now();
    let engine = Engine::builder()
        .on_event(move |event| print_event(started, event))
        .build();

    // Agents sleep on the engine's clock: swap in a VirtualClock and they take no time.
    let clock = Arc::clone(engine.clock());
    engine.register_agent(Arc::new(PortfolioAgent::new(Arc::clone(&clock))))?;
    engine.register_agent(Arc::new(RiskAgent::new(Arc::clone(&clock))))?;
    engine.register_agent(Arc::new(ExecutionAgent::new(clock)))?;

    let workflow = engine.create_workflow(WorkflowDefinition::from_json(WORKFLOW)?)?;
    let input: Value = serde_json::from_str(INPUT)?;
    println!("running {} v{}", workflow.id, workflow.version);

    // Subscribe before the run is first polled, so that no event is missed.
    let events = engine.subscribe();
    let run = engine.start(&workflow.id, RunOptions::new(input))?;
    let run_id = run.id().clone();
    let approver = approve_when_asked(&engine, &run_id, events, started);
    // Both futures are driven together. `try_join` rather than `join`: if answering
    // fails, the run (which would wait for its answer forever) is dropped, which
    // cancels it.
    let (report, ()) = futures::executor::block_on(futures::future::try_join(
        run.map(Ok::<RunReport, EngineError>),
        approver,
    ))?;
    print_summary(&report);
    Ok(if report.status == RunStatus::Completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
