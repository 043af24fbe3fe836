//! Durable runs on a real async runtime, as a bot runs them: tokio (2 worker threads),
//! the system clock, a `SqliteStore` (WAL, `synchronous=FULL`) on a new file.
//!
//! - **Throughput** (criterion, `durable_chains/{1,10,100}`): 1, 10 and 100 concurrent
//!   10-step chains (each step binds the one before), agents that answer at once. The
//!   engine's journal writer commits what every run has waiting in one transaction, so
//!   concurrent runs share syncs. In steps per second.
//! - **Lateness** (printed after the criterion groups): while 100 such chains run, a
//!   task on the same runtime sleeps 1 ms again and again and records how late each
//!   wake-up is. Appends are made on the engine's writer thread, never on a worker, so
//!   the timer should never wait for a disk. Worst and 99th-percentile lateness, in ms.
//!
//! The SQLite file is in `std::env::temp_dir()` (set `TMPDIR` to measure another disk).
//! Run with `cargo bench --bench durable` (needs the `sqlite` feature, on by default).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use tradeflow::agent::{Agent, AgentDescriptor, AgentError, TaskRequest};
use tradeflow::definition::WorkflowDefinition;
use tradeflow::engine::{Engine, RunOptions, RunStatus};
use tradeflow::store::SqliteStore;

/// Steps in each chain.
const STEPS: usize = 10;

/// Answers every call at once.
struct NoOp(AgentDescriptor);

#[async_trait::async_trait]
impl Agent for NoOp {
    fn descriptor(&self) -> &AgentDescriptor {
        &self.0
    }

    async fn execute(&self, _request: TaskRequest) -> Result<Value, AgentError> {
        Ok(json!({"v": 1}))
    }
}

/// A new SQLite file in the temp dir, removed (with its WAL) when dropped.
struct TempDb(PathBuf);

impl TempDb {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "tradeflow-bench-durable-{}-{n}.db",
            std::process::id()
        ));
        Self(path)
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

/// An engine on the system clock journaling to a new SQLite file, with workflow `chain`.
fn engine() -> (Engine, TempDb) {
    let file = TempDb::new();
    let store = SqliteStore::open(&file.0).expect("the store opens");
    let engine = Engine::builder().store(store).build();
    let descriptor = AgentDescriptor::new("noop-1", "BENCH").with_max_concurrency(1 << 20);
    engine
        .register_agent(Arc::new(NoOp(descriptor)))
        .expect("the agent registers");
    let steps: Vec<Value> = (0..STEPS)
        .map(|index| {
            let x = match index {
                0 => json!(0),
                _ => json!(format!("${{step-{}.output.v}}", index - 1)),
            };
            json!({"id": format!("step-{index}"), "type": "task",
                   "agentCriteria": {"type": "BENCH"},
                   "task": {"type": "NOOP", "parameters": {"x": x}}})
        })
        .collect();
    let workflow = json!({"id": "chain", "steps": steps});
    engine
        .create_workflow(WorkflowDefinition::from_value(&workflow).expect("it parses"))
        .expect("it compiles");
    (engine, file)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("a runtime")
}

/// Runs `runs` chains at once on `runtime`, each a task of its own; checks they completed.
async fn run_chains(engine: &Engine, runs: usize) {
    let handles: Vec<_> = (0..runs)
        .map(|_| {
            let run = engine
                .start("chain", RunOptions::new(json!({})))
                .expect("the workflow exists");
            tokio::spawn(run)
        })
        .collect();
    for handle in handles {
        let report = handle.await.expect("the run task ends");
        assert_eq!(
            report.status,
            RunStatus::Completed,
            "{}",
            report.to_json_pretty()
        );
    }
}

fn throughput(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("durable_chains");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    for runs in [1, 10, 100] {
        group.throughput(Throughput::Elements((runs * STEPS) as u64));
        group.bench_function(runs.to_string(), |b| {
            b.iter_batched(
                engine,
                |(engine, file)| {
                    runtime.block_on(run_chains(&engine, runs));
                    (engine, file)
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

/// The lateness of a 1 ms timer on the runtime while 100 durable chains run.
fn lateness(_: &mut Criterion) {
    let runtime = runtime();
    for round in 1..=3 {
        let (engine, _file) = engine();
        let done = Arc::new(AtomicBool::new(false));
        let ticking = Arc::clone(&done);
        let ticker = runtime.spawn(async move {
            let mut late = Vec::new();
            while !ticking.load(Ordering::SeqCst) {
                let asked = Instant::now();
                tokio::time::sleep(Duration::from_millis(1)).await;
                late.push(asked.elapsed().saturating_sub(Duration::from_millis(1)));
            }
            late
        });
        let started = Instant::now();
        runtime.block_on(run_chains(&engine, 100));
        let took = started.elapsed();
        done.store(true, Ordering::SeqCst);
        let mut late = runtime.block_on(ticker).expect("the ticker ends");
        late.sort();
        let at = |fraction: f64| {
            let index = ((late.len() as f64 - 1.0) * fraction).round() as usize;
            late.get(index).copied().unwrap_or_default()
        };
        println!(
            "timer_lateness/round {round}: 100 runs x {STEPS} steps in {:.0} ms; a 1 ms timer \
             ({} wake-ups) was late by at most {:.2} ms (p99 {:.2} ms, median {:.2} ms)",
            took.as_secs_f64() * 1e3,
            late.len(),
            at(1.0).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3,
            at(0.5).as_secs_f64() * 1e3,
        );
    }
}

criterion_group!(benches, throughput, lateness);
criterion_main!(benches);
