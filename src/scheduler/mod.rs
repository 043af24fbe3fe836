//! Scheduling: tasks due at a time, and the triggers that start workflows by themselves.
//!
//! - Tasks: a [`TaskScheduler`] keeps work due at an instant (run-at, delay, cron), in
//!   priority order within an instant, with deadlines; range queries list what is due.
//! - Triggers: `SCHEDULED` (cron in a time zone), `EVENT` (host events) and `THRESHOLD`
//!   (a metric crossing a value upward) start runs of a workflow when their condition
//!   holds against the host context; a timeline plays context changes, events and metrics
//!   on any clock (in virtual time for backtests).

mod tasks;
pub use tasks::{
    DueStatus, DueTask, Recurrence, Reschedule, ScheduleError, SchedulePolicy, ScheduledTask, Task,
    TaskFilter, TaskId, TaskQueue, TaskScheduler, TimeRange,
};
mod timeline;
mod triggers;

pub use timeline::{
    Considered, ContextChange, MetricReport, Replay, ReplayedRun, Timeline, TimelineEvent,
};
pub use triggers::{
    Firing, FiringOutcome, NotFiredReason, ScheduledFirings, TriggerError, Triggers,
    scheduled_firings,
};
