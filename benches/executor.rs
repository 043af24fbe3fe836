//! Costs of the executor itself: runs of large workflows whose agents answer at once, so
//! everything measured is engine overhead (scheduling, agent selection, binding
//! resolution, bookkeeping, the report).
//!
//! - `chain/1000`, `chain/10000`: task steps in a line, each binding the previous step's
//!   output (target: at most 1 µs per step, and the 10,000-step chain at most 12 times
//!   the 1,000-step one).
//! - `fan_out/1000`: one `parallel` step over an input array of 1,000 items.
//! - `fan_out_few_slots/10000`, `fan_out_few_slots/100000`: one `parallel` step over
//!   10,000 or 100,000 items, no `maxConcurrency`, on two agents of four slots whose
//!   calls take one turn of the executor (they yield once), so eight items run at once
//!   and the others wait for a slot (target: linear in the items).
//! - `layered/10x100`: 10 layers of 100 steps, each bound to two steps of the layer
//!   before.
//! - `chain_metrics/none/1000`, `chain_metrics/recorder/1000`: the 1,000-step chain with
//!   no metrics recorder, and with a Prometheus recorder (`metrics-exporter-prometheus`,
//!   histograms in buckets, drained by its upkeep before every 64th run, outside the
//!   timing, as an installed exporter drains them every 5 s) installed for the run's
//!   thread (target: at most 10% slower with the recorder; unchanged without one
//!   against `chain/1000` before metrics).
//!
//! - `observed/chain_sensitive/1000`: `chain/1000` whose workflow names `sensitive`
//!   fields and whose input holds one: every output is redacted and scrubbed for the
//!   journal-less report (the cost of redaction; compare with `chain/1000`).
//! - `observed/chain_traced/1000`: `chain/1000` under a subscriber (the bare
//!   `tracing-subscriber` registry) that enables every span and event: a `tradeflow.run`
//!   span, one `tradeflow.step` span per step, their fields (the cost of tracing when
//!   someone listens; without a subscriber, `chain/1000` is the figure).
//!
//! The engine, the plan and each run's input are built, and each report dropped, outside
//! the timing. Before timing, each shape is run once under a counting allocator, which
//! prints the peak heap the run adds and the allocations it makes, per step (target: at
//! most 2 KiB per step).
//!
//! Run with `cargo bench --bench executor`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use criterion::{
    BatchSize, Bencher, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use futures::executor::block_on;
use serde_json::{Value, json};
use tradeflow::agent::{Agent, AgentDescriptor, AgentError, TaskRequest};
use tradeflow::engine::{Engine, RunOptions, RunReport, RunStatus};
use tradeflow::plan::ExecutionPlan;

/// The system allocator, counting the bytes currently allocated and their peak.
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

impl Counting {
    fn grew(by: usize) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        let now = CURRENT.fetch_add(by, Ordering::Relaxed) + by;
        PEAK.fetch_max(now, Ordering::Relaxed);
    }

    fn shrank(by: usize) {
        CURRENT.fetch_sub(by, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which is System's.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            Self::grew(layout.size());
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            Self::grew(layout.size());
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: `pointer` was allocated by `System` (through us) with `layout`.
        unsafe { System.dealloc(pointer, layout) };
        Self::shrank(layout.size());
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; `new_size` is checked by the caller.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            if new_size >= layout.size() {
                Self::grew(new_size - layout.size());
            } else {
                Self::shrank(layout.size() - new_size);
            }
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Answers every call with `{"v": 1}`: at once, or (`yields`) after yielding once to the
/// executor, so that the call holds its slot while other tasks run.
struct NoOp {
    descriptor: AgentDescriptor,
    yields: bool,
}

#[async_trait::async_trait]
impl Agent for NoOp {
    fn descriptor(&self) -> &AgentDescriptor {
        &self.descriptor
    }

    async fn execute(&self, _request: TaskRequest) -> Result<Value, AgentError> {
        let mut yielded = !self.yields;
        poll_fn(|cx| {
            if std::mem::replace(&mut yielded, true) {
                return Poll::Ready(());
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        })
        .await;
        Ok(json!({"v": 1}))
    }
}

/// Agents of type `BENCH` in the engine; selection scores all of them on every call.
const AGENTS: usize = 4;

/// An engine keeping `steps` (with `"dependencies": []`, so only bindings order them) as
/// workflow `bench`, with agents that never run out of slots.
fn engine_with(steps: Vec<Value>) -> Engine {
    engine_with_agents(steps, noop_agents())
}

/// The [`AGENTS`] agents of type `BENCH` that answer at once and never run out of slots.
fn noop_agents() -> impl Iterator<Item = Arc<dyn Agent>> {
    (0..AGENTS).map(|agent| {
        let descriptor =
            AgentDescriptor::new(format!("noop-{agent}"), "BENCH").with_max_concurrency(1 << 30);
        Arc::new(NoOp {
            descriptor,
            yields: false,
        }) as Arc<dyn Agent>
    })
}

/// An engine keeping `steps` as workflow `bench` (as [`engine_with`]), with `agents`.
fn engine_with_agents(
    steps: Vec<Value>,
    agents: impl IntoIterator<Item = Arc<dyn Agent>>,
) -> Engine {
    engine_with_fields(steps, agents, json!({}))
}

/// An engine keeping `steps` as workflow `bench` (as [`engine_with`]), with `agents` and
/// the workflow's other `fields`.
fn engine_with_fields(
    steps: Vec<Value>,
    agents: impl IntoIterator<Item = Arc<dyn Agent>>,
    fields: Value,
) -> Engine {
    let mut workflow = json!({
        "id": "bench",
        "steps": steps,
        "dependencies": [],
        "executionPolicy": {"concurrency": "PARALLEL", "failureHandling": "STOP_ON_FAILURE"},
    });
    if let (Some(workflow), Value::Object(fields)) = (workflow.as_object_mut(), fields) {
        workflow.extend(fields);
    }
    let plan = ExecutionPlan::from_json(&workflow.to_string()).expect("the workflow compiles");
    let engine = Engine::builder().build();
    for agent in agents {
        engine.register_agent(agent).expect("the agent registers");
    }
    engine.add_plan(plan);
    engine
}

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

/// One `parallel` step over the run input's `items`.
fn fan_out() -> Vec<Value> {
    vec![json!({
        "id": "fan", "type": "parallel",
        "agentCriteria": {"type": "BENCH"},
        "task": {"type": "NOOP", "parameters": {"items": "${input.items}"}},
        "parallel": {"forEach": "items"},
    })]
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

fn input_items(count: usize) -> Value {
    json!({"items": (0..count).map(|item| json!({"n": item})).collect::<Vec<_>>()})
}

/// Runs workflow `bench` once and checks that it completed.
fn run(engine: &Engine, input: Value) -> RunReport {
    let run = engine
        .start("bench", RunOptions::new(input))
        .expect("workflow `bench` is kept");
    let report = block_on(run);
    assert_eq!(report.status, RunStatus::Completed, "{:?}", report.error);
    report
}

/// Times `run` with `input`; building the input and dropping the report are the
/// caller's, so they are not timed (one report is kept at a time).
fn bench_runs(b: &mut Bencher<'_>, engine: &Engine, input: &Value) {
    b.iter_batched(
        || input.clone(),
        |input| run(engine, input),
        BatchSize::PerIteration,
    );
}

/// Prints the peak heap one run adds (above what was allocated before it), per step.
fn report_memory(name: &str, engine: &Engine, input: Value, steps: usize) {
    // A first run warms lazily allocated state (registry histories) out of the figure.
    drop(run(engine, input.clone()));
    let baseline = CURRENT.load(Ordering::Relaxed);
    PEAK.store(baseline, Ordering::Relaxed);
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    let report = run(engine, input);
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(baseline);
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - allocations;
    println!(
        "{name}: peak heap during one run {peak} B above baseline, {:.0} B per step; \
         {allocations} allocations, {:.1} per step",
        peak as f64 / steps as f64,
        allocations as f64 / steps as f64
    );
    drop(report);
}

fn chain_steps(c: &mut Criterion) {
    let mut group = flat_group(c, "chain", 5);
    for count in [1_000, 10_000] {
        let engine = engine_with(chain(count));
        report_memory(&format!("chain/{count}"), &engine, json!({}), count);
        group.throughput(Throughput::Elements(count as u64));
        group.bench_function(count.to_string(), |b| bench_runs(b, &engine, &json!({})));
    }
    group.finish();
}

fn fan_out_items(c: &mut Criterion) {
    const ITEMS: usize = 1_000;
    let engine = engine_with(fan_out());
    let input = input_items(ITEMS);
    report_memory("fan_out/1000", &engine, input.clone(), ITEMS);
    let mut group = flat_group(c, "fan_out", 3);
    group.throughput(Throughput::Elements(ITEMS as u64));
    group.bench_function(ITEMS.to_string(), |b| bench_runs(b, &engine, &input));
    group.finish();
}

fn fan_out_over_few_slots(c: &mut Criterion) {
    const SLOTS: u32 = 4;
    let agents = (0..2).map(|agent| {
        let descriptor =
            AgentDescriptor::new(format!("venue-{agent}"), "BENCH").with_max_concurrency(SLOTS);
        Arc::new(NoOp {
            descriptor,
            yields: true,
        }) as Arc<dyn Agent>
    });
    let engine = engine_with_agents(fan_out(), agents);
    let mut group = flat_group(c, "fan_out_few_slots", 5);
    for items in [10_000, 100_000] {
        let input = input_items(items);
        report_memory(
            &format!("fan_out_few_slots/{items}"),
            &engine,
            input.clone(),
            items,
        );
        group.throughput(Throughput::Elements(items as u64));
        group.bench_function(items.to_string(), |b| bench_runs(b, &engine, &input));
    }
    group.finish();
}

fn layered_graph(c: &mut Criterion) {
    const LAYERS: usize = 10;
    const WIDTH: usize = 100;
    let engine = engine_with(layered(LAYERS, WIDTH));
    report_memory("layered/10x100", &engine, json!({}), LAYERS * WIDTH);
    let mut group = flat_group(c, "layered", 3);
    group.throughput(Throughput::Elements((LAYERS * WIDTH) as u64));
    group.bench_function(format!("{LAYERS}x{WIDTH}"), |b| {
        bench_runs(b, &engine, &json!({}))
    });
    group.finish();
}

fn observed_chain(c: &mut Criterion) {
    const STEPS: usize = 1_000;
    let sensitive = engine_with_fields(
        chain(STEPS),
        noop_agents(),
        json!({"sensitive": ["apiKey", "account"]}),
    );
    let secret_input = json!({"auth": {"apiKey": "k-live-0123456789"}, "desk": "fx"});
    let plain = engine_with(chain(STEPS));
    let mut group = flat_group(c, "observed", 5);
    group.throughput(Throughput::Elements(STEPS as u64));
    group.bench_function(format!("chain_sensitive/{STEPS}"), |b| {
        bench_runs(b, &sensitive, &secret_input)
    });
    group.bench_function(format!("chain_traced/{STEPS}"), |b| {
        tracing::subscriber::with_default(tracing_subscriber::Registry::default(), || {
            bench_runs(b, &plain, &json!({}))
        })
    });
    group.finish();
}

/// The 1,000-step chain without a metrics recorder and with a Prometheus one installed
/// for the thread that drives the run (the same engine; its label sets are built by the
/// warm-up, as a long-lived engine's are).
fn chain_with_metrics(c: &mut Criterion) {
    const STEPS: usize = 1_000;
    let engine = engine_with(chain(STEPS));
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[0.001, 0.01, 0.1, 1.0, 10.0])
        .expect("valid buckets")
        .build_recorder();
    report_memory("chain_metrics/none/1000", &engine, json!({}), STEPS);
    metrics::with_local_recorder(&recorder, || {
        report_memory("chain_metrics/recorder/1000", &engine, json!({}), STEPS);
    });
    let mut group = flat_group(c, "chain_metrics", 5);
    group.sample_size(20);
    group.throughput(Throughput::Elements(STEPS as u64));
    group.bench_function("none/1000", |b| bench_runs(b, &engine, &json!({})));
    // The exporter keeps each histogram's values until its upkeep drains them (every 5 s
    // by default once installed: a few thousand runs of this chain). Here it runs
    // before every 64th run, outside the timing, so the buckets do not grow without
    // bound as no exporter's would, while the runs between see the caches as they
    // would between two upkeeps.
    let handle = recorder.handle();
    let mut runs = 0_u32;
    group.bench_function("recorder/1000", |b| {
        metrics::with_local_recorder(&recorder, || {
            b.iter_batched(
                || {
                    if runs % 64 == 0 {
                        handle.run_upkeep();
                    }
                    runs = runs.wrapping_add(1);
                    json!({})
                },
                |input| run(&engine, input),
                BatchSize::PerIteration,
            );
        });
    });
    group.finish();
}

/// A group of 10 flat samples, 1 s of warm-up and `seconds` of measurement: runs are
/// long, so few samples of whole runs.
fn flat_group<'c>(
    c: &'c mut Criterion,
    name: &str,
    seconds: u64,
) -> criterion::BenchmarkGroup<'c, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(seconds));
    group
}

criterion_group!(
    benches,
    chain_steps,
    fan_out_items,
    fan_out_over_few_slots,
    layered_graph,
    observed_chain,
    chain_with_metrics
);
criterion_main!(benches);
