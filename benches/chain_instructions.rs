//! The 1,000-step chain of `executor.rs`, run a given number of times in a plain loop, for
//! counting instructions with callgrind (deterministic where wall-clock time on a shared
//! machine is not):
//!
//! ```text
//! cargo bench --bench chain_instructions --no-run      # prints the binary's path
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null BINARY 2 [recorder]
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null BINARY 82 [recorder]
//! ```
//!
//! The difference between the two totals, divided by 80,000, is the instructions per
//! step of a run (setup, the plan's compilation and the first runs' warm-up cancel out).
//! With `recorder`, `metrics-exporter-prometheus`'s recorder (histograms in buckets) is
//! installed for the thread, and its upkeep drains the histograms before every 64th
//! run, as an installed exporter does every 5 s. `docs/performance.md` has the figures.
//! Run by `cargo bench` (which passes `--bench`), it does 10 runs and prints how long
//! they took.

use std::sync::Arc;
use std::time::Instant;

use futures::executor::block_on;
use serde_json::{Value, json};
use tradeflow::agent::{Agent, AgentDescriptor, AgentError, TaskRequest};
use tradeflow::engine::{Engine, RunOptions, RunStatus};
use tradeflow::plan::ExecutionPlan;

/// Answers every call at once with `{"v": 1}`.
struct Immediate(AgentDescriptor);

#[async_trait::async_trait]
impl Agent for Immediate {
    fn descriptor(&self) -> &AgentDescriptor {
        &self.0
    }

    async fn execute(&self, _request: TaskRequest) -> Result<Value, AgentError> {
        Ok(json!({"v": 1}))
    }
}

/// The chain: each step's parameter bound to the step before's output.
fn engine() -> Engine {
    let steps: Vec<Value> = (0..1_000)
        .map(|i| {
            let x = if i == 0 {
                json!(0)
            } else {
                json!(format!("${{step-{}.output.v}}", i - 1))
            };
            json!({
                "id": format!("step-{i}"), "type": "task",
                "agentCriteria": {"type": "BENCH"},
                "task": {"type": "NOOP", "parameters": {"x": x}},
            })
        })
        .collect();
    let workflow = json!({"id": "bench", "steps": steps, "dependencies": []});
    let plan = ExecutionPlan::from_json(&workflow.to_string()).expect("the workflow compiles");
    let engine = Engine::builder().build();
    for agent in 0..4 {
        let descriptor =
            AgentDescriptor::new(format!("noop-{agent}"), "BENCH").with_max_concurrency(1 << 30);
        engine
            .register_agent(Arc::new(Immediate(descriptor)))
            .expect("the agent registers");
    }
    engine.add_plan(plan);
    engine
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs: u32 = args.iter().find_map(|arg| arg.parse().ok()).unwrap_or(10);
    let with_recorder = args.iter().any(|arg| arg == "recorder");
    let engine = engine();
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[0.001, 0.01, 0.1, 1.0, 10.0])
        .expect("valid buckets")
        .build_recorder();
    let handle = recorder.handle();
    let go = || {
        let started = Instant::now();
        for run in 0..runs {
            if with_recorder && run % 64 == 0 {
                handle.run_upkeep();
            }
            let start = engine.start("bench", RunOptions::new(json!({})));
            let report = block_on(start.expect("the workflow is known"));
            assert_eq!(report.status, RunStatus::Completed);
        }
        started.elapsed()
    };
    let took = if with_recorder {
        metrics::with_local_recorder(&recorder, go)
    } else {
        go()
    };
    println!(
        "chain_instructions: {runs} runs of 1,000 steps in {took:?}{}",
        if with_recorder { " (recorder)" } else { "" }
    );
}
