//! Costs of durable runs: the same workflows as `benches/executor.rs`, with agents that
//! answer at once, run by an engine with no store, with a `MemoryStore` and with a
//! `SqliteStore` (WAL, `synchronous=FULL`: every append is one commit and one sync).
//!
//! - `store_chain/{none,memory,sqlite}`: 1,000 task steps in a line, each binding the
//!   previous step's output; one step runs at a time, so every transition is its own
//!   append.
//! - `store_layered/{memory,sqlite}`: 10 layers of 100 steps, each bound to two steps of
//!   the layer before; 100 steps are ready at once, which is where grouping the journal
//!   writes of concurrent steps pays.
//!
//! Throughput is in steps per second. Every iteration gets a fresh engine and a fresh,
//! empty store (a new SQLite file in the temp dir), built and dropped outside the timing:
//! a `MemoryStore` keeps every run's journal in RAM, so thousands of iterations on one
//! store would grow the heap by gigabytes and measure that instead; an empty store makes
//! all three cases measure the same thing, the per-step cost of journaling. The SQLite
//! runs are sync-bound (hundreds of ms each), hence their few, long samples.
//!
//! The SQLite file is in `std::env::temp_dir()` (set `TMPDIR` to measure another disk; a
//! tmpfs makes syncs free). Before timing, each store case is run once and the size of
//! its journal printed, which also checks that the store is written to.
//!
//! Run with `cargo bench --bench store` (needs the `sqlite` feature, on by default).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use criterion::{
    BatchSize, BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group,
    criterion_main, measurement::WallTime,
};
use serde_json::{Value, json};
use tradeflow::agent::{Agent, AgentDescriptor, AgentError, TaskRequest};
use tradeflow::clock::VirtualClock;
use tradeflow::definition::WorkflowDefinition;
use tradeflow::engine::{Engine, RunOptions, RunReport, RunStatus};
use tradeflow::store::{MemoryStore, RunStore, SqliteStore};

/// Answers every call at once with `{"v": 1}`.
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

/// Agents of type `BENCH` in the engine; selection scores all of them on every call.
const AGENTS: usize = 4;

/// Steps of the chain.
const CHAIN: usize = 1_000;
/// Layers of the layered workflow.
const LAYERS: usize = 10;
/// Steps in each layer.
const WIDTH: usize = 100;

/// Where an engine journals its runs.
#[derive(Debug, Clone, Copy)]
enum Backend {
    /// Nowhere: the engine is built without a store.
    None,
    /// A `MemoryStore`.
    Memory,
    /// A `SqliteStore` on a new file in the temp dir.
    Sqlite,
}

impl Backend {
    /// The benchmark id.
    fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Memory => "memory",
            Self::Sqlite => "sqlite",
        }
    }
}

/// A SQLite store's file in the temp dir; removes it, its WAL and its shared memory
/// when dropped.
struct TempDb(PathBuf);

impl TempDb {
    /// A name no other `TempDb` of any process uses (process id and a counter).
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "tradeflow-bench-store-{}-{}.db",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Self(std::env::temp_dir().join(name))
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            // Missing files (no WAL left after a clean close) are fine.
            let _ = std::fs::remove_file(path);
        }
    }
}

/// An engine with a store of its own. Fields drop in order: the engine (closing the
/// SQLite connection) before the file is removed.
struct Fresh {
    engine: Engine,
    clock: VirtualClock,
    store: Option<Arc<dyn RunStore>>,
    _file: Option<TempDb>,
}

/// A new engine journaling to a new, empty store of `backend`, keeping `definition` as
/// workflow `bench`, with agents that never run out of slots. Time is virtual: no run
/// waits on a real timer.
fn fresh(backend: Backend, definition: &WorkflowDefinition) -> Fresh {
    let clock = VirtualClock::starting_at(Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap());
    let (store, file): (Option<Arc<dyn RunStore>>, _) = match backend {
        Backend::None => (None, None),
        Backend::Memory => (Some(Arc::new(MemoryStore::new())), None),
        Backend::Sqlite => {
            let file = TempDb::new();
            let store = SqliteStore::open(&file.0).expect("the store opens");
            (Some(Arc::new(store)), Some(file))
        }
    };
    let mut builder = Engine::builder().clock(clock.clone());
    if let Some(store) = &store {
        builder = builder.store(Arc::clone(store));
    }
    let engine = builder.build();
    for agent in 0..AGENTS {
        let descriptor =
            AgentDescriptor::new(format!("noop-{agent}"), "BENCH").with_max_concurrency(1 << 30);
        engine
            .register_agent(Arc::new(NoOp(descriptor)))
            .expect("the agent registers");
    }
    engine
        .create_workflow(definition.clone())
        .expect("the workflow compiles and is stored");
    Fresh {
        engine,
        clock,
        store,
        _file: file,
    }
}

/// Workflow `bench` of `steps` (with `"dependencies": []`, so only bindings order them),
/// all runnable at once.
fn definition(steps: Vec<Value>) -> WorkflowDefinition {
    let workflow = json!({
        "id": "bench",
        "steps": steps,
        "dependencies": [],
        "executionPolicy": {"concurrency": "PARALLEL", "failureHandling": "STOP_ON_FAILURE"},
    });
    WorkflowDefinition::from_value(&workflow).expect("the workflow parses")
}

/// A task step calling a `BENCH` agent with `parameters`.
fn task(id: String, parameters: Value) -> Value {
    json!({
        "id": id, "type": "task",
        "agentCriteria": {"type": "BENCH"},
        "task": {"type": "NOOP", "parameters": parameters},
    })
}

/// `count` steps in a line: `step-N` binds `step-(N-1)`.
fn chain(count: usize) -> Vec<Value> {
    (0..count)
        .map(|index| {
            let parameters = match index {
                0 => json!({"x": 0}),
                _ => json!({"x": format!("${{step-{}.output.v}}", index - 1)}),
            };
            task(format!("step-{index}"), parameters)
        })
        .collect()
}

/// `layers` layers of `width` steps; `node-L-I` binds `node-(L-1)-I` and its neighbour.
fn layered(layers: usize, width: usize) -> Vec<Value> {
    let mut steps = Vec::with_capacity(layers * width);
    for layer in 0..layers {
        for index in 0..width {
            let parameters = match layer {
                0 => json!({"x": index}),
                _ => json!({
                    "a": format!("${{node-{}-{index}.output.v}}", layer - 1),
                    "b": format!("${{node-{}-{}.output.v}}", layer - 1, (index + 1) % width),
                }),
            };
            steps.push(task(format!("node-{layer}-{index}"), parameters));
        }
    }
    steps
}

/// Runs workflow `bench` once on `fresh`'s engine and checks that it completed.
fn run(fresh: &Fresh) -> RunReport {
    let run = fresh
        .engine
        .start("bench", RunOptions::new(json!({})))
        .expect("workflow `bench` is kept");
    let report = fresh.clock.block_on(run);
    assert_eq!(report.status, RunStatus::Completed, "{:?}", report.error);
    report
}

/// Runs `definition` once on a fresh `backend` store and prints how many journal entries
/// the run left, per step (and fails if the store was not written to).
fn report_journal(name: &str, backend: Backend, definition: &WorkflowDefinition, steps: usize) {
    let fresh = fresh(backend, definition);
    let run = fresh
        .engine
        .start("bench", RunOptions::new(json!({})))
        .expect("workflow `bench` is kept");
    let id = run.id().clone();
    let report = fresh.clock.block_on(run);
    assert_eq!(report.status, RunStatus::Completed, "{:?}", report.error);
    let store = fresh.store.as_ref().expect("a store case");
    let entries = store.load(&id).expect("the journal reads back").len();
    assert!(entries > steps, "{name}: only {entries} journal entries");
    println!(
        "{name}: one run journals {entries} entries, {:.1} per step",
        entries as f64 / steps as f64
    );
}

/// Benchmarks `definition` (of `steps` steps, printed as `label`) on each of `backends`,
/// a fresh engine and store per iteration; building them and dropping them (and the
/// report) is not timed.
fn bench_backends(
    group: &mut BenchmarkGroup<'_, WallTime>,
    label: &str,
    definition: &WorkflowDefinition,
    steps: usize,
    backends: &[Backend],
) {
    group
        .throughput(Throughput::Elements(steps as u64))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10);
    for &backend in backends {
        match backend {
            // Hundreds of ms per run: 10 samples of one run each, after 2 or so warm-up
            // runs.
            Backend::Sqlite => group
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_secs(5)),
            Backend::None | Backend::Memory => group
                .warm_up_time(Duration::from_secs(1))
                .measurement_time(Duration::from_secs(3)),
        };
        if !matches!(backend, Backend::None) {
            report_journal(
                &format!("{label}/{}", backend.name()),
                backend,
                definition,
                steps,
            );
        }
        group.bench_function(backend.name(), |b| {
            b.iter_batched_ref(
                || fresh(backend, definition),
                |fresh| run(fresh),
                BatchSize::PerIteration,
            );
        });
    }
}

/// The 1,000-step chain with no store, a `MemoryStore` and a `SqliteStore`.
fn chain_steps(c: &mut Criterion) {
    let definition = definition(chain(CHAIN));
    let mut group = c.benchmark_group("store_chain");
    bench_backends(
        &mut group,
        &format!("store_chain/{CHAIN}"),
        &definition,
        CHAIN,
        &[Backend::None, Backend::Memory, Backend::Sqlite],
    );
    group.finish();
}

/// The 10 × 100 layered workflow with a `MemoryStore` and a `SqliteStore`.
fn layered_graph(c: &mut Criterion) {
    let definition = definition(layered(LAYERS, WIDTH));
    let mut group = c.benchmark_group("store_layered");
    bench_backends(
        &mut group,
        &format!("store_layered/{LAYERS}x{WIDTH}"),
        &definition,
        LAYERS * WIDTH,
        &[Backend::Memory, Backend::Sqlite],
    );
    group.finish();
}

criterion_group!(benches, chain_steps, layered_graph);
criterion_main!(benches);
