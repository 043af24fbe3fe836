//! Scheduling: tasks due at a time, and the triggers that start workflows by themselves.
//!
//! - Tasks: a [`TaskScheduler`] keeps work due at an instant (run-at, delay, cron), in
//!   priority order within an instant, with deadlines; range queries list what is due.
//! - Dispatching: a [`Dispatcher`] starts a run of the workflow each task names
//!   ([`WorkflowTask`], or a mapping of the host's own payload) as the task falls due.
//! - Triggers: `SCHEDULED` (cron in a time zone), `EVENT` (host events) and `THRESHOLD`
//!   (a metric crossing a value upward) start runs of a workflow when their condition
//!   holds against the host context; they start runs through the
//!   [`OrchestrationEngine`](crate::engine::OrchestrationEngine) trait, so a host's
//!   wrapper around the engine sees (and may refuse) each; a timeline plays context changes, events and metrics
//!   on any clock (in virtual time for backtests).

mod dispatch;
mod tasks;
pub use dispatch::{DispatchOutcome, Dispatched, Dispatcher, WorkflowTask};
pub use tasks::{
    DueStatus, DueTask, Recurrence, Reschedule, ScheduleError, SchedulePolicy, ScheduledTask, Task,
    TaskFilter, TaskId, TaskQueue, TaskScheduler, TimeRange,
};
mod timeline;
mod triggers;

pub use timeline::{
    Considered, ContextChange, MetricReport, RefusedRun, Replay, ReplayedRun, Timeline,
    TimelineEvent,
};
pub use triggers::{
    Firing, FiringOutcome, NotFiredReason, ScheduledFirings, TriggerError, Triggers,
    scheduled_firings,
};
