//! A decision that learns: which execution algorithm to send a parent order with.
//!
//! ```text
//! cargo run --example execution_algo_learning
//! ```
//!
//! The workflow (`examples/workflows/execution-algo-learning.json`) has two steps. The
//! `execution` step is a `decision` step with three options — `twap`, `vwap` and a
//! liquidity `sweep` — scored on commission (minimised) and speed: on those prior scores
//! the sweep looks best (1.0), TWAP next (0.26) and VWAP worst (0.06). The step's agent
//! executes the order with the chosen algorithm's parameters merged over the task's. The
//! `execution-monitoring` step then measures the fill against the arrival price, and its
//! `fillQuality` is the decision's `reward`: evaluated when each run ends and learned
//! from with Thompson sampling.
//!
//! What the engine does not know: the venue's slippage per algorithm, hidden in
//! `ExecutionAgent` — VWAP 4 bps on average, TWAP 5, the sweep 6.5, each with ±4 bps of
//! noise, so one fill says little. Over 500 simulated orders (on a virtual clock: they
//! take milliseconds) the choice moves from trying all three to VWAP, which the chart
//! shows per 50 runs.
//! Everything is seeded: the output is the same on every machine.
//!
//! Things worth copying: the agents do not know they are part of an experiment — the
//! execution agent reads `algo` from its parameters, the monitor reports a number — and
//! the learning is all in the workflow's `decision` block. The model can be exported
//! (`engine.decisions().export_model()`) and, with a store, survives a restart.
//!
//! Exits with 0 when every run completes and VWAP is the most chosen option of the last
//! 50 runs; 1 otherwise.

use std::error::Error;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use tradeflow::agent::{Agent, AgentDescriptor, AgentError, TaskRequest};
use tradeflow::clock::VirtualClock;
use tradeflow::definition::{AgentType, WorkflowDefinition};
use tradeflow::engine::{Engine, RunIds, RunOptions, RunStatus};

const WORKFLOW: &str = include_str!("workflows/execution-algo-learning.json");
const RUNS: usize = 500;
const WINDOW: usize = 50;
const OPTIONS: [&str; 3] = ["twap", "vwap", "sweep"];

/// Sends parent orders; what each algorithm really costs is its secret.
#[derive(Debug)]
struct ExecutionAgent {
    descriptor: AgentDescriptor,
    market: Mutex<StdRng>,
}

impl ExecutionAgent {
    /// Mean slippage, in basis points, of each algorithm on this venue.
    fn hidden_slippage_bps(algo: &str) -> Option<f64> {
        match algo {
            "VWAP" => Some(4.0),
            "TWAP" => Some(5.0),
            "SWEEP" => Some(6.5),
            _ => None,
        }
    }
}

#[async_trait::async_trait]
impl Agent for ExecutionAgent {
    fn descriptor(&self) -> &AgentDescriptor {
        &self.descriptor
    }

    async fn execute(&self, request: TaskRequest) -> Result<Value, AgentError> {
        let parameters = &request.parameters;
        let algo = parameters["algo"].as_str().unwrap_or_default();
        let Some(slippage) = Self::hidden_slippage_bps(algo) else {
            return Err(AgentError::permanent(format!("unknown algo `{algo}`")));
        };
        let Some(arrival) = parameters["arrivalPrice"].as_f64() else {
            return Err(AgentError::permanent("arrivalPrice must be a number"));
        };
        let noise = {
            let mut market = self.market.lock().unwrap_or_else(PoisonError::into_inner);
            market.random_range(-4.0..4.0)
        };
        let sign = if parameters["side"] == "SELL" {
            -1.0
        } else {
            1.0
        };
        let average = arrival * (1.0 + sign * (slippage + noise) / 10_000.0);
        Ok(json!({"algo": algo, "averagePrice": average, "filled": parameters["quantity"]}))
    }
}

/// Measures a fill against the arrival price: 1 for no slippage, 0 for 12 bps or worse.
#[derive(Debug)]
struct MonitoringAgent {
    descriptor: AgentDescriptor,
}

#[async_trait::async_trait]
impl Agent for MonitoringAgent {
    fn descriptor(&self) -> &AgentDescriptor {
        &self.descriptor
    }

    async fn execute(&self, request: TaskRequest) -> Result<Value, AgentError> {
        let parameters = &request.parameters;
        let (Some(arrival), Some(average)) = (
            parameters["arrivalPrice"].as_f64(),
            parameters["averagePrice"].as_f64(),
        ) else {
            return Err(AgentError::permanent(
                "arrivalPrice and averagePrice must be numbers",
            ));
        };
        let sign = if parameters["side"] == "SELL" {
            -1.0
        } else {
            1.0
        };
        let slippage_bps = sign * (average - arrival) / arrival * 10_000.0;
        let quality = (1.0 - slippage_bps / 12.0).clamp(0.0, 1.0);
        Ok(json!({"slippageBps": slippage_bps, "fillQuality": quality}))
    }
}

/// One bar of the chart: `share` of `width` characters.
fn bar(share: f64, width: usize) -> String {
    let filled = (share * width as f64).round() as usize;
    format!(
        "{}{}",
        "█".repeat(filled),
        "·".repeat(width - filled.min(width))
    )
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("execution_algo_learning: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool, Box<dyn Error>> {
    let clock = VirtualClock::starting_at("2026-03-02T14:30:00Z".parse()?);
    let engine = Engine::builder()
        .clock(clock.clone())
        .run_ids(RunIds::Numbered)
        .seed(2026)
        .build();
    engine.register_agent(Arc::new(ExecutionAgent {
        descriptor: AgentDescriptor::new("exec-1", AgentType::new("TRADING_EXECUTION")),
        market: Mutex::new(StdRng::seed_from_u64(7)),
    }))?;
    engine.register_agent(Arc::new(MonitoringAgent {
        descriptor: AgentDescriptor::new("monitor-1", AgentType::new("MONITORING")),
    }))?;
    let workflow = engine.create_workflow(WorkflowDefinition::from_json(WORKFLOW)?)?;

    println!("{RUNS} parent orders, each sent with the algorithm the engine chooses (THOMPSON).");
    println!("Prior scores (commission, speed): sweep 1.00, twap 0.26, vwap 0.06.");
    println!(
        "Hidden from the engine: slippage vwap 4 bps, twap 5 bps, sweep 6.5 bps (±4 bps noise).\n"
    );
    println!(
        "{:<9}  {:<24}  {:<24}  {:<24}  mean fill",
        "runs", "twap", "vwap", "sweep"
    );
    let mut every_run_completed = true;
    let mut last_window = [0usize; 3];
    for window in 0..RUNS / WINDOW {
        let mut chosen = [0usize; 3];
        let mut quality = 0.0;
        for i in 0..WINDOW {
            let side = if i % 2 == 0 { "BUY" } else { "SELL" };
            let input =
                json!({"symbol": "AAPL", "side": side, "quantity": 5_000, "arrivalPrice": 187.5});
            let run = engine.start(&workflow.id, RunOptions::new(input))?;
            let report = clock.block_on(run);
            every_run_completed &= report.status == RunStatus::Completed;
            let execution = report
                .step("execution")
                .and_then(|step| step.decision.as_ref());
            if let Some(decision) = execution {
                if let Some(at) = OPTIONS.iter().position(|option| *option == decision.option) {
                    chosen[at] += 1;
                }
                quality += decision.reward.unwrap_or_default();
            }
        }
        let from = window * WINDOW + 1;
        let cells: Vec<String> = chosen
            .iter()
            .map(|&count| {
                let share = count as f64 / WINDOW as f64;
                format!("{} {:>3.0}%", bar(share, 18), share * 100.0)
            })
            .collect();
        println!(
            "{:>3}–{:<4}  {}  {}  {}  {:.3}",
            from,
            from + WINDOW - 1,
            cells[0],
            cells[1],
            cells[2],
            quality / WINDOW as f64
        );
        last_window = chosen;
    }
    println!("\nWhat the engine learned (rewards per option, mean fill quality):");
    let model = engine.decisions().model_stats(&workflow.id, "execution");
    for (option, stats) in model.get("").into_iter().flatten() {
        println!("  {option:<6} n = {:>3}  mean = {:.3}", stats.n, stats.mean);
    }
    let vwap_leads = last_window[1] > last_window[0] && last_window[1] > last_window[2];
    println!(
        "\n{}",
        if vwap_leads {
            "VWAP, ranked last by the prior, is the engine's choice by the end."
        } else {
            "The engine has not settled on VWAP (a regression?)."
        }
    );
    Ok(every_run_completed && vwap_leads)
}
