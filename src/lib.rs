//! Orchestrate trading agents: workflows as data, run as a DAG, on any async runtime.
//!
//! A trading team describes a workflow — market analysis → risk assessment → position
//! sizing → order execution → monitoring — as JSON. tradeflow checks it once, when it is
//! loaded, and compiles it into an [`ExecutionPlan`](plan::ExecutionPlan): a DAG whose
//! bindings (`${risk-assessment.output.approved}`) and conditions are parsed ahead of
//! time, so that a typo, a cycle or a broken expression is reported with the step and
//! field it is in, never discovered when the market opens.
//!
//! # Quick start
//! ```
//! use tradeflow::plan::{DrawFormat, ExecutionPlan};
//!
//! let plan = ExecutionPlan::from_json(r#"{
//!     "id": "momentum",
//!     "steps": [
//!         {"id": "signal", "type": "task",
//!          "agentCriteria": {"type": "MARKET_ANALYSIS"},
//!          "task": {"type": "MARKET_ANALYSIS", "parameters": {"symbols": "${input.symbols}"}}},
//!         {"id": "trade", "type": "task",
//!          "agentCriteria": {"type": "TRADING_EXECUTION"},
//!          "task": {"type": "ORDER_EXECUTION", "parameters": {"side": "${signal.output.side}"}},
//!          "condition": {"expression": "${signal.output.strength} > 0.7"}}
//!     ]
//! }"#)?;
//! let order: Vec<&str> = plan.order().map(|step| step.id().as_str()).collect();
//! assert_eq!(order, ["signal", "trade"]);
//! assert!(plan.draw(DrawFormat::Mermaid).contains("s0 --> s1"));
//!
//! // Problems are all reported at once, each with where it is.
//! let errors = ExecutionPlan::from_json(r#"{
//!     "id": "broken",
//!     "steps": [{"id": "a", "type": "task", "agentCriteria": {"type": "X"},
//!                "task": {"type": "T", "parameters": {"x": "${nope.output}"}},
//!                "condition": {"expression": "portfolio.lastRebalance > 7 days ago"}}]
//! }"#).unwrap_err();
//! let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
//! assert_eq!(lines.len(), 2);
//! assert!(lines[0].starts_with("steps[0] (a).condition.expression: invalid expression"));
//! assert_eq!(lines[1], "steps[0] (a).task.parameters.x: binding `${nope.output}` refers to unknown step `nope`");
//! # Ok::<(), tradeflow::definition::ValidationErrors>(())
//! ```
//!
//! # Running a workflow
//! ```
//! use std::sync::Arc;
//! use serde_json::{Value, json};
//! use tradeflow::agent::{Agent, AgentDescriptor, AgentError, TaskRequest};
//! use tradeflow::clock::VirtualClock;
//! use tradeflow::engine::{Engine, RunStatus};
//!
//! /// A bot's agent: only `descriptor` and `execute` are required.
//! struct Signals(AgentDescriptor);
//!
//! #[tradeflow::async_trait]
//! impl Agent for Signals {
//!     fn descriptor(&self) -> &AgentDescriptor { &self.0 }
//!     async fn execute(&self, request: TaskRequest) -> Result<Value, AgentError> {
//!         Ok(json!({"side": "BUY", "strength": 0.9, "symbols": request.parameters["symbols"]}))
//!     }
//! }
//!
//! let clock = VirtualClock::starting_at("2026-01-05T09:00:00Z".parse()?);
//! let engine = Engine::builder().clock(clock.clone()).build();
//! // An agent takes one call at a time unless it says more: say what it can serve at once.
//! let signals = AgentDescriptor::new("sig-1", "MARKET_ANALYSIS").with_max_concurrency(16);
//! engine.register_agent(Arc::new(Signals(signals)))?;
//! engine.create_workflow(tradeflow::definition::WorkflowDefinition::from_json(r#"{
//!     "id": "signal-only",
//!     "steps": [{"id": "signal", "type": "task",
//!                "agentCriteria": {"type": "MARKET_ANALYSIS"},
//!                "task": {"type": "MARKET_ANALYSIS", "parameters": {"symbols": "${input.symbols}"}}}]
//! }"#)?)?;
//! let report = clock.block_on(engine.execute_workflow("signal-only", json!({"symbols": ["AAPL"]})))?;
//! assert_eq!(report.status, RunStatus::Completed);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `use tradeflow::prelude::*;` brings in what a bot needs (the `Agent` trait, the
//! `#[async_trait]` attribute its implementations take, the engine, run options and
//! events, `StreamExt` for event streams); the crate re-exports `async_trait` and
//! `futures`, so a bot needs neither as a dependency of its own.
//!
//! # Concepts
//! - [`definition`]: the JSON format as serde types ([`WorkflowDefinition`](definition::WorkflowDefinition)),
//!   loaded with every structural problem reported at once.
//! - [`plan`]: validation and compilation into an [`ExecutionPlan`](plan::ExecutionPlan), the only
//!   form the engine runs; drawing as DOT or Mermaid.
//! - [`expr`]: `${…}` bindings, parameter templates and conditions (evalexpr, bounded and
//!   panic-free), with a host [`Context`](expr::Context) of dotted variables and functions.
//! - [`engine`]: the [`Engine`](engine::Engine) that runs plans against agents, its events
//!   and the run report.
//! - [`agent`]: the [`Agent`](agent::Agent) trait a bot implements, the registry,
//!   capability-scored selection and load balancers.
//! - [`clock`]: time as a dependency: [`SystemClock`](clock::SystemClock) and the
//!   deterministic [`VirtualClock`](clock::VirtualClock).
//! - [`scheduler`]: the [`TaskScheduler`](scheduler::TaskScheduler) (tasks due by time,
//!   priority and deadline), and the [`Triggers`](scheduler::Triggers) that start runs on
//!   cron schedules, host events and metric thresholds; a [`Timeline`](scheduler::Timeline)
//!   replays a week of market context in virtual time.
//! - [`resource`]: pools of CPU, memory, network and host-defined resources, from which
//!   the engine takes runs' and steps' `resourceRequirements`
//!   ([`PriorityResourceManager`](resource::PriorityResourceManager)).
//! - [`sim`]: scripted agents (behaviour as data) for dry runs and tests.
//! - [`decision`]: choosing among a `decision` step's options and learning from their rewards
//!   (`DecisionEngine`, `LearningDecisions`), and the record of decisions.
//! - [`coordinate`]: how the answers of several agents asked the same task combine
//!   (`ALL`, `FIRST`, `QUORUM`, `BEST`), for coordinated steps and
//!   [`Engine::coordinate_agents`](engine::Engine::coordinate_agents).
//! - [`adapt`]: workflow adaptations: what the rules that hold change about a step
//!   about to start, and the call measurements behind their built-in names.
//! - [`scale`]: auto-scaling: the rules, the [`Scaler`](scale::Scaler) a host implements,
//!   the in-process [`AgentPool`](scale::AgentPool) and the
//!   [`AutoScaler`](scale::AutoScaler).
//! - [`safety`]: the trading safety rails' rules: how old a run's data may be when a
//!   step calls its agent (`maxDataAgeMs`), and how a call whose outcome is unknown is
//!   reconciled before any retry (`sideEffects`, `reconcile`), and the kill switch's
//!   rules and state (which rules tripped, which workflows they halt, who reset them).
//! - [`audit`]: the audit log: who did what to the engine, as a SHA-256 hash chain that
//!   shows any entry changed, removed or inserted ([`AuditLog`](audit::AuditLog)).
//! - [`metrics`]: what runs measured, recorded through the `metrics` facade (any
//!   recorder the host installs: Prometheus, StatsD, …), and the engine's own
//!   [`PerformanceReport`](metrics::PerformanceReport) (runs, success rate and duration
//!   percentiles per workflow; calls and utilization per agent).
//! - [`store`]: runs as append-only journals, their state as a fold, and the stores that
//!   keep them ([`MemoryStore`](store::MemoryStore), and `SqliteStore` with `sqlite`).
//!
//! The format and its semantics are documented in `docs/workflow-format.md`; how the
//! modules fit together in `docs/architecture.md`.
//!
//! # Tracing and secrets
//! Runs report through [`tracing`](https://docs.rs/tracing) (target `tradeflow::run`): one
//! `tradeflow.run` span per run (`run_id`, `workflow_id`, `trigger`), one
//! `tradeflow.step` span per call attempt inside it (`step_id`, `agent_id`, `attempt`,
//! `idempotency_key`), and events — with the failure's kind — at retries, failures and
//! self-healing, rollbacks, adaptations, decisions, approvals requested and answered,
//! pause, resume, cancellation and the run's end. No value of a run (input, parameters,
//! outputs) and no error message is ever logged, and nothing is computed for a span or
//! event no subscriber wants.
//!
//! A workflow's top-level `"sensitive": ["apiKey", "account"]` names fields whose values
//! only the agent's request carries: at any depth of the input, parameters and outputs,
//! they are written `"***"` in the journal, the report, the events and decision records,
//! and the secret texts are scrubbed from messages ([`plan::Sensitive`]). A run recovered
//! from its journal gets them back from the host's [`engine::Secrets`]
//! ([`EngineBuilder::secrets`](engine::EngineBuilder::secrets)), or is not recovered,
//! naming the field it lacks. `docs/operations.md` states both contracts in full.
//!
//! # Feature flags
//! - `sqlite` (default): `store::SqliteStore`, a durable run journal in one
//!   SQLite file. It brings in rusqlite with SQLite bundled, compiled from C at build time
//!   (a C compiler is needed; no system SQLite is). Without it,
//!   [`MemoryStore`](store::MemoryStore) is the only store.
//!
//! # Runtime support
//! The library depends on no async runtime: it uses the `futures` crate only (timers on
//! `futures-timer`'s thread, journal appends on a thread of the engine's own), so runs
//! can be driven by any executor. The test suite drives durable runs on tokio's
//! multi-threaded runtime, on smol, with `futures::executor::block_on` and on the
//! crate's [`VirtualClock`](clock::VirtualClock).
//!
//! # MSRV
//! Rust 1.85 (edition 2024), as declared in `Cargo.toml`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, unreachable_pub, rust_2018_idioms)]

pub mod adapt;
pub mod agent;
pub mod audit;
pub mod clock;
pub mod coordinate;
pub mod decision;
pub mod definition;
pub mod engine;
pub mod expr;
pub mod metrics;
pub mod plan;
pub mod prelude;
pub mod resource;
pub mod run;
pub mod safety;
pub mod scale;
pub mod scheduler;
pub mod security;
pub mod sim;
pub mod store;

/// The attribute every [`Agent`](agent::Agent) implementation (and any other implementation
/// of the crate's async traits) needs: `#[tradeflow::async_trait]`, so that a bot does not
/// depend on `async-trait` itself.
pub use async_trait::async_trait;
/// The `futures` crate the public API uses (`Stream`, `StreamExt` for
/// [`Engine::subscribe`](engine::Engine::subscribe) and [`Run::events`](engine::Run::events)).
pub use futures;
