//! Runs the reference algorithmic-trading workflow against hand-written Rust agents.
//!
//! ```text
//! cargo run --example algo_trading
//! ```
//!
//! The workflow (`examples/workflows/algo-trading.json`, with the input of
//! `examples/inputs/algo-trading.json`) goes market analysis → risk assessment → position
//! sizing → order execution (one call per order, in parallel) → execution monitoring (a
//! loop until every order is filled). Each agent type is a small struct implementing
//! [`Agent`]:
//!
//! - `MarketAnalysisAgent` computes a 14-period RSI over embedded closing prices and emits
//!   `signals`: BUY when a symbol is oversold, SELL when it is overbought;
//! - `RiskAgent` approves the trades when their gross exposure is within a limit;
//! - `PositionSizingAgent` turns signals and `availableCapital` into `orders`;
//! - `ExecutionAgent` sends one order per call and then monitors fills. The venue is busy
//!   the first time the second order is sent: the agent answers with
//!   [`AgentError::temporary`] and the engine retries after the default one-second
//!   back-off, which shows in the output as a `retrying` line.
//!
//! Things worth copying: parameters are read into typed structs and a bad one is a
//! [`AgentError::permanent`] (retrying cannot fix the workflow); orders are kept by id, so
//! a retried send never opens a position twice; agents wait on the engine's [`Clock`]
//! rather than `thread::sleep`, so the same agents run in microseconds under a
//! `VirtualClock` in tests. Progress comes from `Engine::builder().on_event`, the summary
//! from the [`RunReport`].
//!
//! Exits with 0 when the run completes and 1 otherwise. It takes about 1.5 s.

use std::collections::HashMap;
use std::error::Error;
use std::fmt;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tradeflow::agent::{Agent, AgentDescriptor, AgentError, TaskRequest};
use tradeflow::clock::Clock;
use tradeflow::definition::{AgentType, WorkflowDefinition};
use tradeflow::engine::{Engine, RunEvent, RunOptions, RunReport, RunStatus};

const WORKFLOW: &str = include_str!("workflows/algo-trading.json");
const INPUT: &str = include_str!("inputs/algo-trading.json");

/// Hourly closes, oldest first: AAPL has sold off, MSFT has rallied.
const CLOSES: &[(&str, &[f64])] = &[
    (
        "AAPL",
        &[
            192.4, 191.8, 190.9, 191.9, 189.7, 188.2, 189.4, 187.1, 185.6, 186.8, 184.3, 182.9,
            184.1, 181.2, 180.6, 181.3,
        ],
    ),
    (
        "MSFT",
        &[
            402.1, 403.5, 405.2, 403.6, 407.9, 409.3, 411.0, 409.2, 413.8, 415.1, 413.1, 417.9,
            419.4, 417.7, 420.9, 422.6,
        ],
    ),
];
const RSI_PERIOD: usize = 14;
const OVERSOLD: f64 = 30.0;
const OVERBOUGHT: f64 = 70.0;
/// The largest sum of signal strengths the risk agent approves.
const MAX_GROSS_EXPOSURE: f64 = 1.2;
/// The share of available capital a signal of strength 1 gets.
const CAPITAL_PER_UNIT_STRENGTH: f64 = 0.25;

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

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Signal {
    symbol: String,
    side: Side,
    /// From 0 (no conviction) to 1.
    strength: f64,
    /// The last close, for sizing.
    price: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    id: String,
    symbol: String,
    side: Side,
    qty: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Fill {
    id: String,
    symbol: String,
    side: Side,
    qty: u64,
    filled_qty: u64,
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

/// MARKET_ANALYSIS, capability `technical-analysis`: an RSI signal per symbol.
struct MarketAnalysisAgent {
    descriptor: AgentDescriptor,
    clock: Arc<dyn Clock>,
}

impl MarketAnalysisAgent {
    fn new(clock: Arc<dyn Clock>) -> Self {
        let descriptor = AgentDescriptor::new("rsi-1", AgentType::MARKET_ANALYSIS)
            .with_capabilities(["technical-analysis"]);
        Self { descriptor, clock }
    }
}

#[async_trait::async_trait]
impl Agent for MarketAnalysisAgent {
    fn descriptor(&self) -> &AgentDescriptor {
        &self.descriptor
    }

    async fn execute(&self, request: TaskRequest) -> Result<Value, AgentError> {
        // The workflow writes `"symbols": ["${input.symbols}"]`, a list holding the input
        // list; accept either shape.
        let symbols: Vec<Value> = parameter(&request, "symbols")?;
        let symbols: Vec<String> = serde_json::from_value(Value::Array(flatten(symbols)))
            .map_err(|error| AgentError::permanent(format!("parameter `symbols`: {error}")))?;
        self.clock.sleep(Duration::from_millis(60)).await;
        let mut signals = Vec::new();
        for symbol in &symbols {
            let closes = CLOSES
                .iter()
                .find(|(known, _)| known == symbol)
                .map(|(_, closes)| *closes)
                .ok_or_else(|| AgentError::permanent(format!("no price history for {symbol}")))?;
            signals.extend(rsi_signal(symbol, closes));
        }
        Ok(json!({ "signals": signals }))
    }
}

fn flatten(values: Vec<Value>) -> Vec<Value> {
    values
        .into_iter()
        .flat_map(|value| match value {
            Value::Array(inner) => inner,
            other => vec![other],
        })
        .collect()
}

/// A signal when the symbol is oversold (BUY) or overbought (SELL); none in between.
fn rsi_signal(symbol: &str, closes: &[f64]) -> Option<Signal> {
    let rsi = rsi(closes, RSI_PERIOD)?;
    let side = if rsi <= OVERSOLD {
        Side::Buy
    } else if rsi >= OVERBOUGHT {
        Side::Sell
    } else {
        return None;
    };
    Some(Signal {
        symbol: symbol.to_owned(),
        side,
        strength: ((rsi - 50.0).abs() / 50.0 * 100.0).round() / 100.0,
        price: *closes.last()?,
    })
}

/// Cutler's RSI over the last `period` changes: 100 − 100 / (1 + gains / losses).
/// `None` without `period + 1` closes.
fn rsi(closes: &[f64], period: usize) -> Option<f64> {
    let window = closes.get(closes.len().checked_sub(period + 1)?..)?;
    let (gains, losses) = window.windows(2).map(|pair| pair[1] - pair[0]).fold(
        (0.0, 0.0),
        |(gains, losses), change| {
            if change > 0.0 {
                (gains + change, losses)
            } else {
                (gains, losses - change)
            }
        },
    );
    if losses == 0.0 {
        return Some(100.0);
    }
    Some(100.0 - 100.0 / (1.0 + gains / losses))
}

/// RISK_MANAGEMENT: approves when the gross exposure of the signals is within a limit.
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
        let signals: Vec<Signal> = parameter(&request, "proposedTrades")?;
        self.clock.sleep(Duration::from_millis(30)).await;
        let exposure: f64 = signals.iter().map(|signal| signal.strength).sum();
        let approved = exposure <= MAX_GROSS_EXPOSURE;
        let verdict = if approved { "within" } else { "over" };
        let reasons = [format!(
            "gross exposure {exposure:.2} of {} signals {verdict} the limit of {MAX_GROSS_EXPOSURE:.2}",
            signals.len()
        )];
        Ok(json!({ "approved": approved, "grossExposure": exposure, "reasons": reasons }))
    }
}

/// PORTFOLIO_MANAGEMENT: sizes an order per signal, in proportion to its strength.
struct PositionSizingAgent {
    descriptor: AgentDescriptor,
    clock: Arc<dyn Clock>,
}

impl PositionSizingAgent {
    fn new(clock: Arc<dyn Clock>) -> Self {
        let descriptor = AgentDescriptor::new("sizer-1", AgentType::PORTFOLIO_MANAGEMENT);
        Self { descriptor, clock }
    }
}

#[async_trait::async_trait]
impl Agent for PositionSizingAgent {
    fn descriptor(&self) -> &AgentDescriptor {
        &self.descriptor
    }

    async fn execute(&self, request: TaskRequest) -> Result<Value, AgentError> {
        let signals: Vec<Signal> = parameter(&request, "signals")?;
        let capital: f64 = parameter(&request, "availableCapital")?;
        self.clock.sleep(Duration::from_millis(20)).await;
        let orders: Vec<Order> = signals
            .iter()
            .filter(|signal| signal.price > 0.0)
            .map(|signal| {
                let notional = capital * CAPITAL_PER_UNIT_STRENGTH * signal.strength;
                Order {
                    // Unique per run and symbol: the execution agent relies on it.
                    id: format!("{}-{}", request.run_id, signal.symbol),
                    symbol: signal.symbol.clone(),
                    side: signal.side,
                    // Truncation is intended: whole shares, rounded down.
                    qty: (notional / signal.price).floor() as u64,
                }
            })
            .filter(|order| order.qty > 0)
            .collect();
        Ok(json!({ "orders": orders }))
    }
}

/// TRADING_EXECUTION: sends orders (ORDER_EXECUTION) and watches their fills
/// (EXECUTION_MONITORING).
///
/// Both steps ask only for the agent type, so whichever TRADING_EXECUTION agent the engine
/// picks must serve both task types; one agent also keeps the orders it sent, which the
/// monitoring needs.
struct ExecutionAgent {
    descriptor: AgentDescriptor,
    clock: Arc<dyn Clock>,
    /// Orders accepted by the venue, by id.
    working: Mutex<HashMap<String, Fill>>,
}

impl ExecutionAgent {
    fn new(clock: Arc<dyn Clock>) -> Self {
        // Takes several orders at once, so the parallel step's calls overlap.
        let descriptor =
            AgentDescriptor::new("exec-1", AgentType::TRADING_EXECUTION).with_max_concurrency(4);
        Self {
            descriptor,
            clock,
            working: Mutex::new(HashMap::new()),
        }
    }

    async fn send(&self, request: &TaskRequest) -> Result<Value, AgentError> {
        // The parallel step replaces the `orders` list with one of its items.
        let order: Order = parameter(request, "orders")?;
        self.clock.sleep(Duration::from_millis(80)).await;
        // Staged for the demo: the venue turns the second order away once. A temporary
        // error tells the engine that the same call may succeed later.
        if request.item == Some(1) && request.attempt == 1 {
            return Err(AgentError::temporary(format!(
                "venue busy, order {} not accepted",
                order.id
            )));
        }
        let id = order.id.clone();
        self.accept(order);
        Ok(json!({ "orderIds": [id] }))
    }

    /// Keeps the order unless it is already working: a call retried after a lost
    /// acknowledgement must not open the position twice.
    fn accept(&self, order: Order) {
        let mut working = self.working.lock().unwrap_or_else(PoisonError::into_inner);
        working.entry(order.id.clone()).or_insert(Fill {
            id: order.id,
            symbol: order.symbol,
            side: order.side,
            qty: order.qty,
            filled_qty: 0,
        });
    }

    async fn monitor(&self, request: &TaskRequest) -> Result<Value, AgentError> {
        let order_ids: Vec<String> = parameter(request, "orderIds")?;
        self.clock.sleep(Duration::from_millis(40)).await;
        let fills = self.poll_fills(&order_ids)?;
        let done = fills.iter().all(|fill| fill.filled_qty == fill.qty);
        Ok(json!({ "done": done, "filled": fills }))
    }

    /// The venue fills half of each order per poll, so orders are done on the second poll.
    fn poll_fills(&self, order_ids: &[String]) -> Result<Vec<Fill>, AgentError> {
        let mut working = self.working.lock().unwrap_or_else(PoisonError::into_inner);
        order_ids
            .iter()
            .map(|id| {
                let fill = working
                    .get_mut(id)
                    .ok_or_else(|| AgentError::permanent(format!("unknown order {id}")))?;
                fill.filled_qty = (fill.filled_qty + fill.qty.div_ceil(2)).min(fill.qty);
                Ok(fill.clone())
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl Agent for ExecutionAgent {
    fn descriptor(&self) -> &AgentDescriptor {
        &self.descriptor
    }

    async fn execute(&self, request: TaskRequest) -> Result<Value, AgentError> {
        match request.task_type.as_str() {
            "ORDER_EXECUTION" => self.send(&request).await,
            "EXECUTION_MONITORING" => self.monitor(&request).await,
            _ => Err(unsupported(&request)),
        }
    }
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
            ..
        } => {
            let answer = if *approved { "approved" } else { "rejected" };
            format!("{step_id}: {answer} by {by}")
        }
        RunEvent::RunEnded { run_id, status, .. } => format!("run {run_id} ended: {status}"),
        other => format!("{other:?}"),
    };
    println!("{:>6} ms  {text}", started.elapsed().as_millis());
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
    let risk_reasons = report
        .step("risk-assessment")
        .and_then(|step| step.output.as_ref()?.get("reasons")?.as_array().cloned())
        .unwrap_or_default();
    for reason in risk_reasons.iter().filter_map(Value::as_str) {
        println!("risk: {reason}");
    }
    let monitoring = report
        .step("execution-monitoring")
        .and_then(|step| step.output.as_ref());
    let fills: Vec<Fill> = monitoring
        .and_then(|output| serde_json::from_value(output.get("filled")?.clone()).ok())
        .unwrap_or_default();
    match monitoring.and_then(|output| output.get("iterations")?.as_u64()) {
        Some(polls) => println!("orders filled (monitored over {polls} polls):"),
        None => println!("orders filled:"),
    }
    if fills.is_empty() {
        println!("  none");
    }
    for fill in &fills {
        println!(
            "  {:<12} {:<4} {:>4}/{:<4} {}",
            fill.id, fill.side, fill.filled_qty, fill.qty, fill.symbol
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
    engine.register_agent(Arc::new(MarketAnalysisAgent::new(Arc::clone(&clock))))?;
    engine.register_agent(Arc::new(RiskAgent::new(Arc::clone(&clock))))?;
    engine.register_agent(Arc::new(PositionSizingAgent::new(Arc::clone(&clock))))?;
    engine.register_agent(Arc::new(ExecutionAgent::new(clock)))?;

    let workflow = engine.create_workflow(WorkflowDefinition::from_json(WORKFLOW)?)?;
    let input: Value = serde_json::from_str(INPUT)?;
    println!("running {} v{} with {input}", workflow.id, workflow.version);

    let report = futures::executor::block_on(engine.run(&workflow.id, RunOptions::new(input)))?;
    print_summary(&report);
    Ok(if report.status == RunStatus::Completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
