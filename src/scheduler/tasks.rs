//! Tasks due at a time: the [`TaskScheduler`] trait and [`TaskQueue`], its in-memory
//! implementation.
//!
//! ```
//! use std::time::Duration;
//! use serde_json::json;
//! use tradeflow::clock::{Clock, VirtualClock};
//! use tradeflow::scheduler::{SchedulePolicy, Task, TaskQueue, TaskScheduler};
//!
//! let clock = VirtualClock::starting_at("2026-01-05T09:00:00Z".parse()?);
//! let start = clock.now();
//! let minute = Duration::from_secs(60);
//! let queue = TaskQueue::new(clock.clone());
//!
//! queue.schedule_task(
//!     Task::new("rebalance", json!({"book": "eu"})),
//!     SchedulePolicy::after(minute),
//! )?;
//! // Due at the same instant, but a lower number goes first.
//! queue.schedule_task(
//!     Task::new("hedge", json!({"delta": -0.2})),
//!     SchedulePolicy::after(minute).priority(-1),
//! )?;
//! queue.schedule_task(
//!     Task::new("report", json!(null)).tag("daily"),
//!     SchedulePolicy::at(start + 10 * minute).deadline(start + 15 * minute),
//! )?;
//!
//! // `due` sleeps on the queue's clock until the earliest task is due, and pops it; the
//! // virtual clock skips the wait.
//! let first = clock.block_on(queue.due());
//! assert_eq!(first.task().name(), "hedge");
//! assert_eq!(clock.now(), start + minute);
//!
//! // What is still to come, in the order it will be popped.
//! let coming: Vec<String> = queue
//!     .get_schedule((start..).into())
//!     .iter()
//!     .map(|scheduled| scheduled.task().name().to_owned())
//!     .collect();
//! assert_eq!(coming, ["rebalance", "report"]);
//!
//! // Popped after its deadline, a task is still delivered, marked missed.
//! assert!(queue.pop_due(start + minute).is_some()); // rebalance
//! let report = queue.pop_due(start + 20 * minute).expect("the report is due");
//! assert!(report.is_missed());
//! assert!(queue.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What a policy, a deadline or a wait means is documented on [`TaskScheduler`]; the
//! layout of [`TaskQueue`] and the cost of each operation, on [`TaskQueue`].

mod filter;
mod policy;
mod queue;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use filter::{Reschedule, TaskFilter, TimeRange};
pub use policy::{Recurrence, SchedulePolicy};
pub use queue::TaskQueue;

use policy::Deadline;

/// Identifies a scheduled task within the scheduler that scheduled it: what
/// [`schedule_task`](TaskScheduler::schedule_task) returns, to cancel, look up or
/// reschedule the task with.
///
/// Ids are opaque handles: only a scheduler makes them. [`get`](Self::get) numbers them
/// in scheduling order from 1, and ids compare in that order. An id also carries the due
/// time and priority the task was scheduled with, so that [`TaskQueue`] finds a task
/// that has not moved with no index by id.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use tradeflow::clock::VirtualClock;
/// use tradeflow::scheduler::{SchedulePolicy, Task, TaskQueue, TaskScheduler};
///
/// let queue: TaskQueue<()> = TaskQueue::new(VirtualClock::starting_at("2026-01-05T09:00:00Z".parse()?));
/// let first = queue.schedule_task(Task::new("a", ()), SchedulePolicy::after(Duration::from_secs(9)))?;
/// let second = queue.schedule_task(Task::new("b", ()), SchedulePolicy::after(Duration::from_secs(1)))?;
/// assert_eq!((first.get(), second.to_string()), (1, "2".to_owned()));
/// assert!(first < second);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
// Field order matters: the derived `Ord` compares `seq` first, which is unique.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId {
    seq: u64,
    due: DateTime<Utc>,
    priority: i32,
}

impl TaskId {
    /// The id's number: 1 for the first task a scheduler scheduled, 2 for the next, and
    /// so on.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.seq
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TaskId").field(&self.seq).finish()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.seq, f)
    }
}

/// What to run: a name (what kind of work, as a workflow id or a job type), tags for
/// selecting groups of tasks, and a payload (its arguments).
///
/// Names and tags are `Cow<'static, str>`: a literal costs no allocation.
///
/// # Examples
/// ```
/// use serde_json::json;
/// use tradeflow::scheduler::Task;
///
/// let task = Task::new("rebalance", json!({"book": "eu"})).tag("eu").tag("daily");
/// assert_eq!(task.name(), "rebalance");
/// assert_eq!(task.tags(), ["eu", "daily"]);
/// assert_eq!(task.payload()["book"], "eu");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task<T = Value> {
    name: Cow<'static, str>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tags: Vec<Cow<'static, str>>,
    payload: T,
}

impl<T> Task<T> {
    /// A task named `name` carrying `payload`, with no tags.
    pub fn new(name: impl Into<Cow<'static, str>>, payload: T) -> Self {
        Self {
            name: name.into(),
            tags: Vec::new(),
            payload,
        }
    }

    /// Adds a tag ([`TaskFilter::tag`] selects by it). Defaults to no tags.
    #[must_use]
    pub fn tag(mut self, tag: impl Into<Cow<'static, str>>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tags, in the order they were added.
    pub fn tags(&self) -> &[Cow<'static, str>] {
        &self.tags
    }

    /// Whether the task has tag `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|own| own == tag)
    }

    /// The payload.
    pub fn payload(&self) -> &T {
        &self.payload
    }

    /// The payload, by value.
    pub fn into_payload(self) -> T {
        self.payload
    }
}

/// A task as the scheduler keeps it, shared by the scheduler and every listing of it: it
/// never changes after it is scheduled (rescheduling changes the key, not the slot).
struct Slot<T> {
    id: TaskId,
    task: Task<T>,
    deadline: Option<Deadline>,
    recurrence: Option<Arc<dyn Recurrence>>,
}

/// A task in a scheduler, as listed by [`TaskScheduler::get_schedule`] or returned by
/// [`TaskScheduler::cancel_task`]: the task and when it is due.
///
/// The task itself is shared with the scheduler, so a listing copies no payload.
pub struct ScheduledTask<T = Value> {
    due: DateTime<Utc>,
    priority: i32,
    slot: Arc<Slot<T>>,
}

// By hand: cloning shares the task, so `T` need not be `Clone`.
impl<T> Clone for ScheduledTask<T> {
    fn clone(&self) -> Self {
        Self {
            due: self.due,
            priority: self.priority,
            slot: Arc::clone(&self.slot),
        }
    }
}

impl<T: PartialEq> PartialEq for ScheduledTask<T> {
    fn eq(&self, other: &Self) -> bool {
        (
            self.id(),
            self.due,
            self.priority,
            self.deadline(),
            self.is_recurring(),
        ) == (
            other.id(),
            other.due,
            other.priority,
            other.deadline(),
            other.is_recurring(),
        ) && self.task() == other.task()
    }
}

impl<T: fmt::Debug> fmt::Debug for ScheduledTask<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScheduledTask")
            .field("id", &self.id())
            .field("due", &self.due)
            .field("priority", &self.priority)
            .field("deadline", &self.deadline())
            .field("recurring", &self.is_recurring())
            .field("task", self.task())
            .finish()
    }
}

impl<T> ScheduledTask<T> {
    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.slot.id
    }

    /// When it is due (for a recurring task: its pending occurrence).
    pub fn due(&self) -> DateTime<Utc> {
        self.due
    }

    /// Its priority: among tasks due at the same instant, lower numbers go first.
    pub fn priority(&self) -> i32 {
        self.priority
    }

    /// The instant by which it must be popped, if it has a deadline (for
    /// [`start_within`](SchedulePolicy::start_within), resolved against this due time).
    pub fn deadline(&self) -> Option<DateTime<Utc>> {
        self.slot
            .deadline
            .map(|deadline| deadline.resolve(self.due))
    }

    /// Whether the task recurs (scheduled with [`SchedulePolicy::cron`] or
    /// [`SchedulePolicy::recurring`]).
    pub fn is_recurring(&self) -> bool {
        self.slot.recurrence.is_some()
    }

    /// The task.
    pub fn task(&self) -> &Task<T> {
        &self.slot.task
    }

    /// The task by value, if nothing else shares it (a one-off task popped or cancelled,
    /// and no clone of this listing left); otherwise `self` back.
    ///
    /// # Errors
    /// `self`, unchanged, while the task is shared.
    pub fn try_into_task(self) -> Result<Task<T>, Self> {
        let Self {
            due,
            priority,
            slot,
        } = self;
        Arc::try_unwrap(slot)
            .map(|slot| slot.task)
            .map_err(|slot| Self {
                due,
                priority,
                slot,
            })
    }

    /// The task by value: moved out if nothing else shares it, cloned otherwise.
    pub fn into_task(self) -> Task<T>
    where
        T: Clone,
    {
        self.try_into_task()
            .unwrap_or_else(|shared| shared.task().clone())
    }
}

/// Whether a popped task was popped by its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DueStatus {
    /// Popped by its deadline, or it has none.
    OnTime,
    /// Popped after its deadline.
    Missed,
}

/// A task popped because it was due: [`TaskScheduler::pop_due`], [`TaskScheduler::due`].
#[derive(Debug, PartialEq)]
pub struct DueTask<T = Value> {
    scheduled: ScheduledTask<T>,
    popped_at: DateTime<Utc>,
    status: DueStatus,
    next_due: Option<DateTime<Utc>>,
}

// By hand: cloning shares the task, so `T` need not be `Clone`.
impl<T> Clone for DueTask<T> {
    fn clone(&self) -> Self {
        Self {
            scheduled: self.scheduled.clone(),
            popped_at: self.popped_at,
            status: self.status,
            next_due: self.next_due,
        }
    }
}

impl<T> DueTask<T> {
    /// The task as it was scheduled (its due time, priority and deadline).
    pub fn scheduled(&self) -> &ScheduledTask<T> {
        &self.scheduled
    }

    /// The task as it was scheduled, by value.
    pub fn into_scheduled(self) -> ScheduledTask<T> {
        self.scheduled
    }

    /// The task's id (a recurring task keeps it for its next occurrence).
    pub fn id(&self) -> TaskId {
        self.scheduled.id()
    }

    /// The task.
    pub fn task(&self) -> &Task<T> {
        self.scheduled.task()
    }

    /// When it was due.
    pub fn due(&self) -> DateTime<Utc> {
        self.scheduled.due
    }

    /// The time it was popped at (`now` of [`pop_due`](TaskScheduler::pop_due), the
    /// clock's time for [`due`](TaskScheduler::due)).
    pub fn popped_at(&self) -> DateTime<Utc> {
        self.popped_at
    }

    /// How late it was popped: `popped_at - due` (zero or more).
    pub fn lateness(&self) -> TimeDelta {
        self.popped_at - self.scheduled.due
    }

    /// Whether it was popped by its deadline.
    pub fn status(&self) -> DueStatus {
        self.status
    }

    /// Whether it was popped after its deadline.
    pub fn is_missed(&self) -> bool {
        self.status == DueStatus::Missed
    }

    /// For a recurring task, its next occurrence, now scheduled; `None` for a one-off
    /// task or a recurrence that has ended.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.next_due
    }
}

/// Why a task cannot be scheduled or rescheduled. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The delay, added to the clock's time, is past the latest representable time.
    #[error(
        "task `{task}`: a delay of {delay:?} after {from} is past the latest representable time"
    )]
    DelayOutOfRange {
        /// The task's name.
        task: String,
        /// The clock's time.
        from: DateTime<Utc>,
        /// The delay.
        delay: Duration,
    },
    /// The deadline is before the due time: the task could only be missed.
    #[error("task `{task}`: deadline {deadline} is before its due time {due}")]
    DeadlineBeforeDue {
        /// The task's name.
        task: String,
        /// When the task is due.
        due: DateTime<Utc>,
        /// The deadline.
        deadline: DateTime<Utc>,
    },
    /// A recurring task was given a fixed deadline, which only one occurrence could meet.
    #[error(
        "task `{task}`: a recurring task cannot have a fixed deadline ({deadline}); \
         use `start_within` to give each occurrence one"
    )]
    FixedDeadlineOnRecurring {
        /// The task's name.
        task: String,
        /// The deadline.
        deadline: DateTime<Utc>,
    },
    /// The recurrence has no occurrence after the clock's time.
    #[error("task `{task}`: {recurrence} has no occurrence after {after}")]
    NeverDue {
        /// The task's name.
        task: String,
        /// The recurrence, as [`Recurrence::describe`] puts it.
        recurrence: String,
        /// The clock's time.
        after: DateTime<Utc>,
    },
    /// Shifting a task's due time would leave the representable range.
    #[error("task {id}: shifting its due time {due} by {by} leaves the representable range")]
    ShiftOutOfRange {
        /// The task.
        id: TaskId,
        /// Its due time.
        due: DateTime<Utc>,
        /// The shift.
        by: TimeDelta,
    },
}

/// Keeps tasks until they are due and hands them out in order: by due time, then
/// priority, then scheduling order.
///
/// # Policies
/// A [`SchedulePolicy`] says when a task is due:
/// - [`at`](SchedulePolicy::at) an instant, or [`after`](SchedulePolicy::after) a delay
///   from the scheduler's clock;
/// - [`cron`](SchedulePolicy::cron) a [`Schedule`](crate::plan::Schedule) (a 5-field
///   pattern in a time zone), or [`recurring`](SchedulePolicy::recurring) on any
///   [`Recurrence`]: the task is due at the first occurrence after the clock's time, and
///   each time it is popped its next occurrence is scheduled under the same [`TaskId`]
///   (cancelling the id ends the recurrence). Occurrences that passed while nobody popped
///   are skipped, not caught up: the next one is the first after both the popped
///   occurrence and the time of the pop.
///
/// It also carries a [`priority`](SchedulePolicy::priority) and an optional deadline:
/// [`deadline`](SchedulePolicy::deadline) (an instant) or
/// [`start_within`](SchedulePolicy::start_within) (a duration after each due time, like
/// Temporal's schedule-to-start timeout).
///
/// # Order
/// Tasks are popped by due time, then priority (lower number first), then scheduling
/// order: [`TaskId`]s increase as tasks are scheduled, and a task keeps its id (and so its
/// place among equals) when it is rescheduled or recurs.
/// [`get_schedule`](TaskScheduler::get_schedule) lists tasks in that same order.
///
/// # Deadlines
/// A task popped after its deadline is delivered anyway, once, as a [`DueTask`] whose
/// [`status`](DueTask::status) is [`DueStatus::Missed`]: whether a late rebalance is
/// still worth placing is the bot's call, and it can only make it if it sees the task.
/// A recurring task schedules its next occurrence whether or not this one was missed.
///
/// # Waiting on a clock
/// [`TaskScheduler::due`] sleeps on the scheduler's [`Clock`](crate::clock::Clock) until
/// the earliest task is due, then pops it, so one loop works on
/// [`SystemClock`](crate::clock::SystemClock) in production and on
/// [`VirtualClock`](crate::clock::VirtualClock) in a backtest. Whenever the earliest due
/// time changes (a task is scheduled before it, or it is cancelled or moved) every
/// waiter is woken and sleeps again until the new earliest time, so a waiter never
/// oversleeps an urgent task, and a virtual clock never jumps to a time nothing is due
/// at.
///
/// # Examples
/// A bot's loop, written against the trait, runs on any scheduler and any clock:
/// ```
/// use std::time::Duration;
/// use serde_json::json;
/// use tradeflow::clock::VirtualClock;
/// use tradeflow::scheduler::{SchedulePolicy, Task, TaskQueue, TaskScheduler};
///
/// async fn run(scheduler: &dyn TaskScheduler, rounds: usize) -> Vec<String> {
///     let mut done = Vec::new();
///     for _ in 0..rounds {
///         let due = scheduler.due().await;
///         if !due.is_missed() {
///             done.push(due.task().name().to_owned());
///         }
///     }
///     done
/// }
///
/// let clock = VirtualClock::starting_at("2026-01-05T09:00:00Z".parse()?);
/// let queue = TaskQueue::new(clock.clone());
/// let seconds = Duration::from_secs;
/// queue.schedule_task(Task::new("hedge", json!({})), SchedulePolicy::after(seconds(30)))?;
/// queue.schedule_task(Task::new("rebalance", json!({})), SchedulePolicy::after(seconds(10)))?;
/// assert_eq!(clock.block_on(run(&queue, 2)), ["rebalance", "hedge"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Implementing
/// All operations take `&self` and may be called from many threads at once. Only
/// [`schedule_task`](Self::schedule_task), [`reschedule_tasks`](Self::reschedule_tasks),
/// [`cancel_task`](Self::cancel_task), [`get_schedule`](Self::get_schedule),
/// [`task`](Self::task), [`next_due`](Self::next_due), [`pop_due`](Self::pop_due),
/// [`len`](Self::len) and [`due`](Self::due) are required.
///
/// The payload type `T` defaults to a JSON value; the trait is object safe:
/// `Arc<dyn TaskScheduler<MyJob>>` works.
#[async_trait::async_trait]
pub trait TaskScheduler<T: Send + Sync + 'static = Value>: Send + Sync + fmt::Debug {
    /// Schedules `task` as `policy` says, and returns its id.
    ///
    /// # Errors
    /// Each names the task: [`ScheduleError::DelayOutOfRange`],
    /// [`ScheduleError::DeadlineBeforeDue`], [`ScheduleError::FixedDeadlineOnRecurring`],
    /// [`ScheduleError::NeverDue`] (a recurrence with no occurrence left). Nothing is
    /// scheduled then.
    fn schedule_task(&self, task: Task<T>, policy: SchedulePolicy)
    -> Result<TaskId, ScheduleError>;

    /// Applies `change` to every task `filter` selects, and returns how many it selected.
    ///
    /// A shift or a move changes a recurring task's pending occurrence only (the ones
    /// after it follow its recurrence again); a deadline given with
    /// [`start_within`](SchedulePolicy::start_within) moves with the due time, a fixed
    /// one stays (a task moved past it will be popped as missed). A priority change
    /// lasts for every occurrence. Tasks keep their ids, and so their place among tasks
    /// of equal due time and priority.
    ///
    /// # Errors
    /// [`ScheduleError::ShiftOutOfRange`] naming the first task a shift would move out of
    /// the representable range; then no task is changed.
    fn reschedule_tasks(
        &self,
        filter: &TaskFilter,
        change: Reschedule,
    ) -> Result<usize, ScheduleError>;

    /// Removes task `id` (a recurring task: for good) and returns it; `None` when no task
    /// has that id (never scheduled here, cancelled, or a one-off task already popped).
    fn cancel_task(&self, id: TaskId) -> Option<ScheduledTask<T>>;

    /// The tasks due within `range`, in the order they will be popped: due time, then
    /// priority, then scheduling order. A recurring task appears once, at its pending
    /// occurrence. An empty or reversed range lists nothing.
    fn get_schedule(&self, range: TimeRange) -> Vec<ScheduledTask<T>>;

    /// Task `id`, if it is scheduled.
    fn task(&self, id: TaskId) -> Option<ScheduledTask<T>>;

    /// When the earliest task is due; `None` when nothing is scheduled.
    fn next_due(&self) -> Option<DateTime<Utc>>;

    /// Pops the first task due at `now` (due time at or before it), if any, marked
    /// [`DueStatus::Missed`] when `now` is past its deadline. A recurring task is
    /// scheduled again at its next occurrence after both its due time and `now`.
    fn pop_due(&self, now: DateTime<Utc>) -> Option<DueTask<T>>;

    /// Pops every task due at `now`, in order. The default calls
    /// [`pop_due`](Self::pop_due) until it returns `None`.
    fn drain_due(&self, now: DateTime<Utc>) -> Vec<DueTask<T>> {
        std::iter::from_fn(|| self.pop_due(now)).collect()
    }

    /// How many tasks are scheduled (a recurring task counts once).
    fn len(&self) -> usize;

    /// Whether no task is scheduled. The default asks [`len`](Self::len).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits on the scheduler's clock until the earliest task is due, then pops it (at the
    /// clock's time) as [`pop_due`](Self::pop_due) does.
    ///
    /// Scheduling an earlier task, or cancelling or moving the earliest one, while this
    /// waits makes it wait for the new earliest task instead; with nothing scheduled it
    /// waits until something is. Cancel-safe: a task is popped only in the poll that
    /// returns it, so dropping the future loses nothing. Several waiters may wait at
    /// once; each task goes to one of them.
    async fn due(&self) -> DueTask<T>;
}

macro_rules! forward_task_scheduler {
    ($($pointer:ident),*) => {$(
        #[async_trait::async_trait]
        impl<T, S> TaskScheduler<T> for $pointer<S>
        where
            T: Send + Sync + 'static,
            S: TaskScheduler<T> + ?Sized,
        {
            fn schedule_task(
                &self,
                task: Task<T>,
                policy: SchedulePolicy,
            ) -> Result<TaskId, ScheduleError> {
                (**self).schedule_task(task, policy)
            }

            fn reschedule_tasks(
                &self,
                filter: &TaskFilter,
                change: Reschedule,
            ) -> Result<usize, ScheduleError> {
                (**self).reschedule_tasks(filter, change)
            }

            fn cancel_task(&self, id: TaskId) -> Option<ScheduledTask<T>> {
                (**self).cancel_task(id)
            }

            fn get_schedule(&self, range: TimeRange) -> Vec<ScheduledTask<T>> {
                (**self).get_schedule(range)
            }

            fn task(&self, id: TaskId) -> Option<ScheduledTask<T>> {
                (**self).task(id)
            }

            fn next_due(&self) -> Option<DateTime<Utc>> {
                (**self).next_due()
            }

            fn pop_due(&self, now: DateTime<Utc>) -> Option<DueTask<T>> {
                (**self).pop_due(now)
            }

            fn drain_due(&self, now: DateTime<Utc>) -> Vec<DueTask<T>> {
                (**self).drain_due(now)
            }

            fn len(&self) -> usize {
                (**self).len()
            }

            fn is_empty(&self) -> bool {
                (**self).is_empty()
            }

            async fn due(&self) -> DueTask<T> {
                (**self).due().await
            }
        }
    )*};
}

forward_task_scheduler!(Arc, Box);

#[cfg(test)]
mod tests {
    use super::*;

    fn _object_safe(_: &dyn TaskScheduler) {}

    fn _object_safe_generic(_: &dyn TaskScheduler<u64>) {}

    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn public_types_are_shareable() {
        assert_send_sync::<TaskQueue>();
        assert_send_sync::<TaskQueue<u64>>();
        assert_send_sync::<Arc<dyn TaskScheduler>>();
        assert_send_sync::<Task>();
        assert_send_sync::<ScheduledTask>();
        assert_send_sync::<DueTask>();
        assert_send_sync::<SchedulePolicy>();
        assert_send_sync::<TaskFilter>();
        assert_send_sync::<Reschedule>();
        assert_send_sync::<TimeRange>();
        assert_send_sync::<ScheduleError>();
    }

    #[test]
    fn errors_name_the_task_and_the_values() {
        let due = "2026-01-05T09:00:00Z".parse().unwrap();
        let deadline = "2026-01-05T08:00:00Z".parse().unwrap();
        let error = ScheduleError::DeadlineBeforeDue {
            task: "rebalance".to_owned(),
            due,
            deadline,
        };
        assert_eq!(
            error.to_string(),
            "task `rebalance`: deadline 2026-01-05 08:00:00 UTC is before its due time \
             2026-01-05 09:00:00 UTC"
        );
        let error = ScheduleError::ShiftOutOfRange {
            id: TaskId {
                seq: 3,
                due,
                priority: 0,
            },
            due,
            by: TimeDelta::hours(-2),
        };
        assert_eq!(
            error.to_string(),
            "task 3: shifting its due time 2026-01-05 09:00:00 UTC by -PT7200S leaves the \
             representable range"
        );
    }

    #[test]
    fn tasks_round_trip_through_json() {
        let task = Task::new("hedge", 0.25).tag("eu");
        let json = serde_json::to_string(&task).unwrap();
        assert_eq!(json, r#"{"name":"hedge","tags":["eu"],"payload":0.25}"#);
        assert_eq!(serde_json::from_str::<Task<f64>>(&json).unwrap(), task);
        let untagged: Task<u8> = serde_json::from_str(r#"{"name":"x","payload":1}"#).unwrap();
        assert!(untagged.tags().is_empty());
    }
}
