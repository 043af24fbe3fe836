//! A trading bot that restarts in the middle of a run, and finishes it without sending
//! an order twice.
//!
//! ```text
//! cargo run --example restart_recovery
//! ```
//!
//! The workflow fetches a quote, checks the risk, places an order and confirms it, each
//! step an agent call. The bot runs it on the real clock, journaled to a [`SqliteStore`]
//! in a temporary directory. While `place-order` is in flight — the venue has accepted
//! the order, but the answer has not come back — the bot "crashes": the engine and the
//! run's future are dropped, as a killed process would lose them.
//!
//! A new engine then opens the same store, calls [`Engine::recover_all`] (printing any
//! run another live engine holds, or that cannot be recovered), registers the agents
//! (after `recover`, as a bot does at startup), checks each recovered run's agents with
//! [`Engine::check_plan_agents`] and drives it to its end. Its workflow is not created
//! again: the store keeps the definition each run started with.
//!
//! What the output shows: `fetch-quotes` and `risk-check`, journaled as completed, are
//! not called again; `place-order`, cut off by the crash, is called again with the same
//! idempotency key (`run/step/item/iteration`), so the venue recognises the order it
//! already has and returns it instead of opening a second position. An agent that sends
//! orders should always pass the key on, or keep its own record by key, as this venue
//! does.
//!
//! Here the crash happens in-process: a dropped run gives its lease up at once. A killed
//! process cannot; another engine on this host sees at once that the process is gone, on
//! another host when its lease expires. `tradeflow run` and `tradeflow resume` show that
//! with a real `kill -9` (see `tests/tradeflow_run_survives_kill_9.rs`).
//!
//! Exits with 0 when the recovered run completes, `fetch-quotes` and `risk-check` were
//! called once each and the venue holds exactly one order; 1 otherwise. It takes about
//! half a second.

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use futures::executor::block_on;
use futures::future::{Either, select};
use serde_json::{Value, json};
use tradeflow::agent::{Agent, AgentDescriptor, AgentError, TaskRequest};
use tradeflow::clock::Clock;
use tradeflow::definition::WorkflowDefinition;
use tradeflow::engine::{AgentCheck, Engine, RunEvent, RunOptions, RunStatus};
use tradeflow::store::SqliteStore;

/// Quote → risk → order → confirmation, each step binding to the ones before it.
const WORKFLOW: &str = r#"{
  "id": "buy-on-signal",
  "version": "1",
  "steps": [
    {"id": "fetch-quotes", "type": "task", "agentCriteria": {"type": "MARKET_DATA"},
     "task": {"type": "QUOTE", "parameters": {"symbol": "${input.symbol}"}}},
    {"id": "risk-check", "type": "task", "agentCriteria": {"type": "RISK_MANAGEMENT"},
     "task": {"type": "RISK_CHECK",
              "parameters": {"ask": "${fetch-quotes.output.ask}", "qty": "${input.qty}"}}},
    {"id": "place-order", "type": "task", "agentCriteria": {"type": "TRADING_EXECUTION"},
     "task": {"type": "ORDER_EXECUTION",
              "parameters": {"symbol": "${input.symbol}", "qty": "${input.qty}",
                             "limit": "${fetch-quotes.output.ask}",
                             "approved": "${risk-check.output.approved}"}}},
    {"id": "confirm", "type": "task", "agentCriteria": {"type": "TRADING_EXECUTION"},
     "task": {"type": "ORDER_STATUS",
              "parameters": {"orderId": "${place-order.output.orderId}"}}}
  ]
}"#;

/// How long each agent takes to answer: short, so the example takes well under a second.
const LATENCY: Duration = Duration::from_millis(80);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One agent call, as the desk saw it.
struct Call {
    engine: u8,
    step: String,
    attempt: u32,
    key: String,
    note: String,
}

/// What outlives the bot's process: the venue's orders (by idempotency key) and, for
/// the printout, every call made. Also the switch that crashes the first engine.
#[derive(Default)]
struct Desk {
    /// Orders the venue accepted, by the idempotency key they came with.
    orders: Mutex<BTreeMap<String, String>>,
    calls: Mutex<Vec<Call>>,
    /// Fired by the first `place-order` call once the venue has the order.
    crash: Mutex<Option<oneshot::Sender<()>>>,
}

impl Desk {
    /// The order the venue holds for `key`, placing it if there is none; and whether it
    /// was new.
    fn place(&self, key: &str) -> (String, bool) {
        let mut orders = lock(&self.orders);
        let count = orders.len();
        let mut new = false;
        let id = orders.entry(key.to_owned()).or_insert_with(|| {
            new = true;
            format!("ord-{}", count + 1)
        });
        (id.clone(), new)
    }

    /// Prints every call and the calls per step; whether each of the steps that had
    /// ended before the crash was called once and the venue holds exactly one order.
    fn report(&self) -> bool {
        println!("== every agent call, over both engines");
        let calls = lock(&self.calls);
        for call in calls.iter() {
            let note = if call.note.is_empty() {
                String::new()
            } else {
                format!(": {}", call.note)
            };
            println!(
                "  engine {}  {:<13} attempt {}  key {}{note}",
                call.engine, call.step, call.attempt, call.key
            );
        }
        println!("== per step, in the order first called");
        let mut per_step: Vec<(&str, usize, BTreeSet<&str>)> = Vec::new();
        for call in calls.iter() {
            match per_step.iter_mut().find(|(step, ..)| *step == call.step) {
                Some((_, count, keys)) => {
                    *count += 1;
                    keys.insert(&call.key);
                }
                None => per_step.push((&call.step, 1, BTreeSet::from([call.key.as_str()]))),
            }
        }
        for (step, count, keys) in &per_step {
            println!(
                "  {step:<13} calls: {count}, idempotency keys: {}",
                keys.len()
            );
        }
        let once = |name: &str| {
            per_step
                .iter()
                .any(|(step, count, _)| *step == name && *count == 1)
        };
        let orders = lock(&self.orders).len();
        println!("orders at the venue: {orders}");
        once("fetch-quotes") && once("risk-check") && orders == 1
    }
}

/// An agent of the bot: answers its task type after [`LATENCY`], on the engine's clock.
struct Desked {
    descriptor: AgentDescriptor,
    engine: u8,
    desk: Arc<Desk>,
    clock: Arc<dyn Clock>,
}

#[tradeflow::async_trait]
impl Agent for Desked {
    fn descriptor(&self) -> &AgentDescriptor {
        &self.descriptor
    }

    async fn execute(&self, request: TaskRequest) -> Result<Value, AgentError> {
        let TaskRequest {
            step_id,
            attempt,
            idempotency_key: key,
            task_type,
            parameters,
            ..
        } = request;
        println!(
            "  engine {}: {step_id} called (attempt {attempt}, key {key})",
            self.engine
        );
        self.clock.sleep(LATENCY).await;
        let (answer, note) = match task_type.as_str() {
            "QUOTE" => (json!({"bid": 187.20, "ask": 187.30}), String::new()),
            "RISK_CHECK" => (json!({"approved": true}), String::new()),
            "ORDER_EXECUTION" => {
                let (order, new) = self.desk.place(&key);
                let note = if new {
                    format!("the venue accepted {order}")
                } else {
                    format!("same key: the venue already had {order}, sent nothing")
                };
                println!("  engine {}: {step_id}: {note}", self.engine);
                let crash = lock(&self.desk.crash).take();
                if let Some(crash) = crash {
                    self.record(step_id.as_str(), attempt, &key, "cut off by the crash");
                    let _ = crash.send(());
                    // The answer never comes back: the process dies first.
                    futures::future::pending::<()>().await;
                }
                (json!({"orderId": order, "qty": parameters["qty"]}), note)
            }
            "ORDER_STATUS" => (
                json!({"orderId": parameters["orderId"], "status": "FILLED"}),
                String::new(),
            ),
            other => {
                return Err(AgentError::permanent(format!("no task `{other}` here")));
            }
        };
        self.record(step_id.as_str(), attempt, &key, &note);
        Ok(answer)
    }
}

impl Desked {
    fn record(&self, step: &str, attempt: u32, key: &str, note: &str) {
        lock(&self.desk.calls).push(Call {
            engine: self.engine,
            step: step.to_owned(),
            attempt,
            key: key.to_owned(),
            note: note.to_owned(),
        });
    }
}

/// Registers the bot's three agents on `engine` (number `number`, for the printout).
fn register_agents(engine: &Engine, number: u8, desk: &Arc<Desk>) -> Result<(), Box<dyn Error>> {
    for (id, agent_type) in [
        ("md-1", "MARKET_DATA"),
        ("risk-1", "RISK_MANAGEMENT"),
        ("exec-1", "TRADING_EXECUTION"),
    ] {
        engine.register_agent(Arc::new(Desked {
            // Each serves many calls at once; the default would be one at a time.
            descriptor: AgentDescriptor::new(id, agent_type).with_max_concurrency(16),
            engine: number,
            desk: Arc::clone(desk),
            clock: Arc::clone(engine.clock()),
        }))?;
    }
    Ok(())
}

/// An engine journaling to the store at `db`, printing its steps' ends.
fn engine(number: u8, db: &Path, started: Instant) -> Result<Engine, Box<dyn Error>> {
    Ok(Engine::builder()
        .store(SqliteStore::open(db)?)
        .agent_check(AgentCheck::BeforeStart)
        .on_event(move |event| {
            let ms = started.elapsed().as_millis();
            match event {
                RunEvent::StepCompleted { step_id, .. } => {
                    println!("  engine {number}: {step_id} completed ({ms} ms)");
                }
                RunEvent::RunEnded { run_id, status, .. } => {
                    println!("  engine {number}: run {run_id} ended {status} ({ms} ms)");
                }
                _ => {}
            }
        })
        .build())
}

/// A directory of its own under the system's temporary one, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("tradeflow-restart-recovery-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn main() -> Result<ExitCode, Box<dyn Error>> {
    let started = Instant::now();
    let dir = TempDir::new()?;
    let db = dir.0.join("runs.db");
    let desk = Arc::new(Desk::default());

    println!("== the bot starts, journaling to {}", db.display());
    let first = engine(1, &db, started)?;
    register_agents(&first, 1, &desk)?;
    first.create_workflow(WorkflowDefinition::from_json(WORKFLOW)?)?;
    let (crash, crashed) = oneshot::channel();
    *lock(&desk.crash) = Some(crash);
    let run = first.start(
        "buy-on-signal",
        RunOptions::new(json!({"symbol": "AAPL", "qty": 100})),
    )?;
    println!("  engine 1: run {} started", run.id());
    match block_on(select(run, crashed)) {
        Either::Left((report, _)) => {
            println!("the run ended before the crash: {}", report.status);
            return Ok(ExitCode::FAILURE);
        }
        Either::Right((_, run)) => {
            println!("== crash: the engine and its run are gone mid-call");
            drop(run);
            drop(first);
        }
    }

    println!("== the bot restarts on the same store");
    let second = engine(2, &db, started)?;
    let recovery = second.recover_all()?;
    for held in &recovery.held {
        println!(
            "  run {} is held by {} until {}",
            held.run, held.owner, held.until
        );
    }
    for (run, error) in &recovery.failed {
        println!("  run {run} cannot be recovered: {error}");
    }
    register_agents(&second, 2, &desk)?;
    let mut completed = true;
    for run in recovery.runs {
        if let Some(resumed) = run.resumed() {
            println!(
                "  engine 2: recovered run {}: steps that had ended: {}; calls to make again: {}",
                run.id(),
                resumed.steps_ended(),
                resumed.calls_to_remake()
            );
        }
        second.check_plan_agents(run.plan())?;
        let report = block_on(run);
        completed &= report.status == RunStatus::Completed;
    }

    let recovered = desk.report() && completed;
    Ok(if recovered {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
