//! Scripted agents and approvers: behaviour as data, for dry runs and tests.
//!
//! Before a workflow touches a market, a trading team runs it against agents that answer
//! as a file says: this analysis returns these signals, the venue is busy once and then
//! fills, the monitor reports "not done" and then "done". Run on a
//! [`VirtualClock`](crate::clock::VirtualClock), a script that takes an hour finishes at
//! once, and the same files give the same run every time. This module is a testing aid:
//! production agents implement [`Agent`](crate::agent::Agent) themselves.
//!
//! # The agents file
//! ```json
//! {
//!   "agents": [
//!     {
//!       "id": "exec-1", "type": "TRADING_EXECUTION", "capabilities": ["twap"],
//!       "weight": 2, "maxConcurrency": 4,
//!       "circuitBreaker": { "failures": 3, "openMs": 10000 },
//!       "tasks": {
//!         "ORDER_EXECUTION": {
//!           "output": { "orderIds": ["${params.orders.id}"] },
//!           "delayMs": 50,
//!           "fail": { "times": 1, "kind": "TEMPORARY", "message": "venue busy" }
//!         },
//!         "EXECUTION_MONITORING": {
//!           "outputs": [ { "done": false }, { "done": true, "filled": "${params.orderIds}" } ]
//!         }
//!       }
//!     }
//!   ],
//!   "approvals": { "execution-approval": { "approved": true, "by": "pm@desk", "afterMs": 60000 } }
//! }
//! ```
//! - [`AgentsFile`]: `agents`, `approvals` (scripted human answers by step id) and an
//!   optional `resources` pool.
//! - [`AgentScript`]: who the agent is (`id`, `type`, `capabilities`, `weight`,
//!   `maxConcurrency`, as in the [registry](crate::agent::AgentRegistry)), its own
//!   `circuitBreaker` if it has one (after `failures` failed calls in a row, at least 1,
//!   default 5, the agent is not called for `openMs`, at most 100 years, default 30000,
//!   then one probe call decides; see
//!   [Circuit breakers](crate::agent#circuit-breakers)), and a [`TaskScript`] for each
//!   task type it serves.
//! - [`TaskScript`]: `output` (with `${params.path}` bindings to the task's resolved
//!   parameters, same rules as workflow bindings, and `${random.NAME}` bindings to the
//!   values drawn for the call) or `outputs` (successive answers, the last repeating),
//!   `delayMs`, `fail` ([`FailScript`]: the first `times` calls fail with `kind` and
//!   `message`; `times` absent = always), and `random` (values drawn on every call, see
//!   below).
//!
//! Unknown fields are errors, and [`AgentsFile::from_json`] reports every problem of a
//! file at once, located like workflow problems
//! (`agents[0].tasks.ORDER_EXECUTION.fail.kind: unknown value …`).
//!
//! # Random values
//! A script may draw values at random on every call, and read them in its outputs:
//! ```json
//! "EXECUTE": {
//!   "random": { "fill": { "normal": ["${params.meanFill}", 0.05] }, "jitter": { "uniform": [0, 1] } },
//!   "output": { "fillQuality": "${random.fill}", "algo": "${params.algo}" }
//! }
//! ```
//! - `random` maps a name (ASCII letters, digits, `_`, `-`) to one distribution
//!   ([`RandomValue`]): `{"normal": [mean, sd]}` or `{"uniform": [low, high]}`. Each of
//!   the two numbers is a literal or a whole `${params…}` binding to the call's
//!   parameters ([`RandomBound`]).
//! - `normal` draws `mean + sd·z`, z a standard normal (sd 0 always draws the mean);
//!   `uniform` draws `low·(1−u) + high·u`, u uniform in [0, 1), so a value between low
//!   and high (equal bounds always draw low).
//! - `${random.NAME}` in `output`/`outputs` is the value drawn (a JSON number; a whole
//!   string binding keeps the number's type, one inside text is interpolated);
//!   `${random}` is the object of every value by name.
//! - **Reproducible:** each value is drawn from its own generator (rand's `StdRng`),
//!   seeded with the request's [`TaskRequest::seed`](crate::agent::TaskRequest::seed)
//!   mixed with the value's name. The engine derives that seed from the run's seed and
//!   the call's identity (step, item, iteration, attempt), so the same files and run seed
//!   draw the same values whatever order calls are made in, a retry draws anew, and
//!   adding a value changes no other value's draws. The normal is drawn from two of the
//!   generator's uniforms with the Box–Muller transform, written here: four lines
//!   instead of a dependency whose sampling algorithm may change in a minor release.
//! - **Checked when the file is read** ([`AgentsFile::from_json`],
//!   [`AgentsFile::validate`]), each problem located
//!   (`agents[0].tasks.EXECUTE.random.fill.normal[1]: …`): an unknown distribution, not
//!   exactly one distribution, not two numbers, a number that is neither finite nor a
//!   `${params…}` binding, a malformed binding or one with another root, a literal sd
//!   below 0, literal bounds with low above high, a name not readable as
//!   `${random.NAME}`, and an output reading a value the script does not draw.
//! - **Checked on each call:** a bound whose binding does not resolve to a finite number
//!   (a missing path, a string, `null`), a negative sd or a low above high from
//!   parameters, or a draw beyond a float's range fails the call with kind `PERMANENT`,
//!   naming the agent, the task type, the random value and the bound:
//!   ``agent `exec-1`, task type `EXECUTE`: random value `fill`: `normal` mean
//!   `${params.meanFill}` is "high", not a finite number``. A failed draw is not a
//!   success (it uses up no `outputs` entry).
//!
//! The file's `approvals` are given by a [`ScriptedApprover`]: polled next to the runs,
//! it reads the engine's events and answers each waiting `human_approval` step that has
//! a scripted answer, `afterMs` after it started waiting; an [`ApprovalObserver`] sees
//! what it reads (to print progress) and the answers the engine refused.
//!
//! # Behaviour
//! [`ScriptedAgent`] documents a call step by step. Two choices are worth knowing:
//! - a call of a task type the agent has no script for fails with kind `PERMANENT`, as
//!   a real agent asked for something it cannot do would;
//! - entry k of `outputs` answers the k-th *successful* call of that task type on that
//!   agent (failures, scripted or not, do not use up entries), and the last entry
//!   repeats, so a `loop` step polling a monitor sees every stage and then a steady
//!   state.
//!
//! # Cost
//! Output templates and random values are compiled once, when the agent is built. A
//! call takes one uncontended lock (twice when it succeeds), draws its random values
//! (a generator seeded per value: O(values)) and resolves its template, O(size of the
//! output); delays are sleeps on the injected [`Clock`](crate::clock::Clock).
//!
//! # Examples
//! Register the agents of a file and call one, driving time with the virtual clock:
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use chrono::{TimeZone, Utc};
//! use serde_json::json;
//! use tradeflow::agent::{AgentErrorKind, AgentRegistry, TaskRequest};
//! use tradeflow::clock::{Clock, VirtualClock};
//! use tradeflow::definition::{StepId, TaskType};
//! use tradeflow::sim::{AgentsFile, scripted_agents};
//!
//! let file = AgentsFile::from_json(r#"{"agents": [
//!     {"id": "monitor-1", "type": "TRADING_EXECUTION",
//!      "tasks": {"EXECUTION_MONITORING": {
//!          "delayMs": 1000,
//!          "outputs": [{"done": false}, {"done": true, "filled": "${params.orderIds}"}]}}}
//! ]}"#)?;
//! let start = Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap();
//! let clock = VirtualClock::starting_at(start);
//! let registry = AgentRegistry::new();
//! for agent in scripted_agents(&file, Arc::new(clock.clone())) {
//!     registry.register(agent)?;
//! }
//!
//! let monitor = registry.agent(&"monitor-1".into()).expect("registered");
//! let poll = |attempt| {
//!     let mut request = TaskRequest::new(
//!         "run-1",
//!         StepId::new("execution-monitoring"),
//!         format!("run-1/execution-monitoring/{attempt}"),
//!         TaskType::EXECUTION_MONITORING,
//!         json!({"orderIds": ["o-1", "o-2"]}),
//!     );
//!     request.attempt = attempt;
//!     request
//! };
//! let answers: Vec<_> = (1..=3)
//!     .map(|attempt| clock.block_on(monitor.execute(poll(attempt))))
//!     .collect::<Result<_, _>>()?;
//! assert_eq!(answers[0], json!({"done": false}));
//! assert_eq!(answers[1], json!({"done": true, "filled": ["o-1", "o-2"]}));
//! assert_eq!(answers[2], answers[1]); // The last entry repeats.
//! assert_eq!(clock.now(), start + Duration::from_secs(3)); // Virtual seconds, instantly.
//!
//! // A task type with no script is a permanent failure.
//! let mut other = poll(4);
//! other.task_type = TaskType::ORDER_EXECUTION;
//! let error = clock.block_on(monitor.execute(other)).unwrap_err();
//! assert_eq!(error.kind, AgentErrorKind::Permanent);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod approvals;
mod file;
mod random;
mod scripted;

pub use approvals::{ApprovalObserver, ScriptedApprover};
pub use file::{
    AgentScript, AgentsFile, FailScript, PoolScript, PoolTemplate, ScriptedApproval, TaskScript,
};
pub use random::{Distribution, RandomBound, RandomValue};
pub use scripted::{ScriptedAgent, pool_policies, scripted_agents, scripted_pools};
