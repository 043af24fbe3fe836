//! Metrics: what every run, step, call, decision, budget and journal commit measured,
//! through the `metrics` facade crate, and the engine's own
//! [performance report](PerformanceReport).
//!
//! # Recording
//! The engine records through the `metrics` facade crate (0.24). The host installs a
//! recorder of its choice (`metrics-exporter-prometheus`, StatsD, OpenTelemetry, a test's
//! `DebuggingRecorder`) with `metrics::set_global_recorder`, or for a scope with
//! `metrics::with_local_recorder`; without one nothing is recorded. Label sets are built
//! once (per plan, agent, agent type, budget and store) and kept, so recording allocates
//! nothing of the engine's own, with a recorder or without.
//!
//! # Handles kept
//! The engine asks the recorder for each metric's handle once and keeps it: asking by
//! key costs a recorder a hash and a comparison of every label, most of what recording
//! would cost otherwise. A kept handle is bound to the recorder it came from and to the
//! second of the engine's clock it was asked in:
//! - when another recorder is in effect on the recording thread (a global one installed
//!   after the engine first recorded, a local one), the engine asks that one and keeps
//!   its handle instead;
//! - the first update of a metric in a new second of the engine's clock asks again, so
//!   a recorder that drops metrics left idle (`metrics-exporter-prometheus`'s
//!   `idle_timeout`) shows the metric again with its next update;
//! - a gauge is set again only when its value changed (or its handle was asked anew);
//! - the facade's no-op recorder, and any recorder of no size, has no address to bind a
//!   handle to: it is asked at every update, which costs it nothing.
//!
//! Recorders are told apart by their address: a host that installs local recorders one
//! after the other (tests) gives each its own engine, since a recorder dropped and
//! another created at the same address within the same second would be taken for the
//! first.
//!
//! A run's future records on the thread that polls it: a local recorder
//! (`with_local_recorder`) sees the runs polled inside its scope (as
//! `futures::executor::block_on` and a `VirtualClock`'s `block_on` do). The journal
//! writer commits on a thread of its own, so `journal_commit_seconds` reaches a global
//! recorder only.
//!
//! | name | kind | labels | what, and when it is recorded |
//! |---|---|---|---|
//! | `workflow_duration_seconds` | histogram | `workflow_type`, `workflow_name` | a run's length, from its start to its end; once per run, when it ends (however it ends) |
//! | `workflow_success_total` | counter | `workflow_type`, `success` | runs that ended: `success` is `"true"` for `COMPLETED`, `"false"` for any other end; once per run, when it ends |
//! | `workflow_runs_total` | counter | `workflow_name`, `status` | runs that ended, by final status in upper case (`COMPLETED`, `FAILED`, `CANCELLED`, `TIMED_OUT`); once per run, when it ends |
//! | `step_duration_seconds` | histogram | `workflow_name`, `step_id`, `task_type` | a step's work, from the moment it starts (its conditions passed, its resources granted) to the moment its work ends, retries and their delays included; once per step that started work (not for skipped steps, nor `condition` steps, which take no time); a step a rollback runs again is recorded each time |
//! | `step_attempts_total` | counter | `workflow_name`, `step_id`, `outcome` | calls to agents (one per attempt, per item of a `parallel` step, per iteration of a `loop`): `outcome` is `success`, or the failure's kind (`TEMPORARY`, `TIMEOUT`, `PERMANENT`, `INVALID_OUTPUT`, `PANIC`, …); once per call, when it ends |
//! | `agent_utilization_ratio` | gauge | `agent_id` | the agent's busy slots / its slots (`maxConcurrency`), in [0, 1]; set when a call takes one of its slots and when the call gives it back |
//! | `agent_calls_waiting` | gauge | `agent_type` | calls waiting for a free slot on an agent of the type; set when a call joins that line (no agent it may use had a slot free), when it leaves it (served, given up, or dropped with its run), and when the engine first calls each agent of the type (0 while nobody waits) |
//! | `decision_reward` | histogram | `workflow_name`, `step_id`, `option` | the reward a `decision` step's chosen option learned when the run ended (a reward the host reports later with `report_outcome` is not recorded); once per decision step with a reward |
//! | `journal_commit_seconds` | histogram | `store` | one commit of the journal writer (one transaction for every run's batch waiting); `store` is the store's type (`SqliteStore`, `MemoryStore`); once per commit |
//! | `budget_available` | gauge | `budget` | the tokens a budget bucket holds, refill included, right after a call reserved from it, or after a refund or charge settled a call's use; an engine budget is labelled by its name, a workflow's by `workflow/name` |
//!
//! `task_type` is the step's task type (`RISK_ASSESSMENT`), or for a step without a task
//! its type (`human_approval`). `workflow_name` is the workflow's `id`; `workflow_type` is
//! the definition's `type` field when present, else its `id`. Label values are the text of
//! the definition: keep ids free of secrets.
//!
//! Durations are on the engine's clock: virtual in simulations and tests, where a
//! simulated hour takes an hour of virtual time. The one exception is
//! `journal_commit_seconds`, measured on the writer thread's monotonic clock: a disk's
//! time is real even when the engine's clock is virtual (which stands still while the
//! writer commits).
//!
//! # Where the engine records
//! The engine's [`RunEvent`](crate::engine::RunEvent)s are built only when someone
//! listens and carry no workflow names nor task types, so the metrics are not a listener
//! of them: six hooks call this module at the points the events are emitted —
//! a run's end (run counters, its duration, its rewards), a step settled (its work's
//! length), each call's end and its slot taken and given back, a call joining or leaving
//! the line of calls waiting for a slot, a budget reserved or settled, and the writer's
//! commit.
//!
//! # The performance report
//! [`Engine::generate_performance_report`](crate::engine::Engine::generate_performance_report)
//! returns a [`PerformanceReport`] the engine aggregates itself, recorder or not: per
//! workflow, its runs that ended, the share that `COMPLETED`, and the mean, median, 95th
//! and 99th percentile of their durations; per agent, its calls, failed calls, the time
//! they took and its utilization since the engine was built. [`Performance`] is that
//! aggregation, public so that a report can be made from a store's journals too
//! (`tradeflow stats`).
//!
//! # Precision
//! Memory is bounded: one histogram of 640 counters (5 KiB) per workflow, a few counters
//! per agent, at most [`MAX_TRACKED_WORKFLOWS`] workflows and [`MAX_TRACKED_AGENTS`]
//! agents. The histogram counts durations in whole microseconds, exactly below 16 µs
//! and above in 16 equal buckets per power of two (up to 2^42 µs, about 51 days, where
//! the last bucket takes everything longer). A percentile is taken by nearest rank
//! (the `ceil(q × n)`-th shortest run) and reported as the midpoint of its bucket,
//! clamped to the shortest and longest durations: within 1/32 (3.1 %) of the true
//! value. Count, mean, minimum and maximum are exact.
//!
//! # Cost
//! A run looks its plan's metrics up once; a step's work is timed from the instant the
//! run launched it to the instant it settled it (clock reads the run makes anyway); a
//! call finds its agent's metrics kept on the agent's registration (looked up by the
//! first call only), adds itself to the agent's tally for the report (one short lock),
//! and touches the line of waiting calls only when it has to wait. Each metric is then
//! one update: with a recorder, of the handle kept for it (one short lock and the
//! recorder's atomic); without one, a call into the no-op recorder. Nothing is allocated
//! once a plan's, an agent's and a budget's metrics exist. `docs/performance.md` has
//! the figures for a chain of 1,000 steps (`benches/executor.rs`, `chain_metrics`).

mod histogram;
pub mod names;
mod performance;
mod slot;
mod telemetry;

pub use performance::{
    AgentPerformance, DurationSummary, MAX_TRACKED_AGENTS, MAX_TRACKED_WORKFLOWS, Performance,
    PerformanceReport, WorkflowPerformance,
};
pub(crate) use telemetry::{CommitTimer, PlanMetrics, Telemetry};
