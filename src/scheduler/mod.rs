//! Scheduling: tasks due at a time, and the triggers that start workflows by themselves.
//!
//! - Tasks: a `TaskScheduler` keeps work due at an instant (run-at, delay, cron), in
//!   priority order within an instant, with deadlines; range queries list what is due.
//! - Triggers: `SCHEDULED` (cron in a time zone), `EVENT` (host events) and `THRESHOLD`
//!   (a metric crossing a value upward) start runs of a workflow when their condition
//!   holds against the host context; a timeline plays context changes, events and metrics
//!   on any clock (in virtual time for backtests).

// tasks: the TaskScheduler (owned by the task-scheduler work)
// triggers: cron/event/threshold triggers and the timeline player (owned by the trigger work)
