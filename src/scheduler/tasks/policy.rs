//! When a task is due: [`SchedulePolicy`], and [`Recurrence`] for tasks that repeat.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::plan::Schedule;

/// Where the occurrences of a recurring task come from: a cron
/// [`Schedule`](crate::plan::Schedule), or anything else that can say what comes next
/// (a trading calendar that skips holidays, a fixed interval).
///
/// A scheduler calls it with its lock held: an implementation must be quick and must
/// not call the scheduler.
///
/// # Examples
/// An interval anchored at an instant:
/// ```
/// use chrono::{DateTime, TimeDelta, Utc};
/// use tradeflow::scheduler::Recurrence;
///
/// #[derive(Debug)]
/// struct Every { anchor: DateTime<Utc>, period: TimeDelta }
///
/// impl Recurrence for Every {
///     fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
///         if after < self.anchor {
///             return Some(self.anchor);
///         }
///         let periods = (after - self.anchor).num_seconds() / self.period.num_seconds();
///         self.anchor.checked_add_signed(self.period * i32::try_from(periods + 1).ok()?)
///     }
/// }
///
/// let anchor: DateTime<Utc> = "2026-01-05T09:00:00Z".parse()?;
/// let every = Every { anchor, period: TimeDelta::minutes(15) };
/// let after = "2026-01-05T09:20:00Z".parse()?;
/// assert_eq!(every.next_after(after), Some("2026-01-05T09:30:00Z".parse()?));
/// # Ok::<(), chrono::ParseError>(())
/// ```
pub trait Recurrence: Send + Sync + fmt::Debug {
    /// The first occurrence strictly after `after`; `None` when the recurrence has ended.
    fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>>;

    /// How the recurrence reads in an error message. The default is its `Debug` form.
    fn describe(&self) -> String {
        format!("{self:?}")
    }
}

impl Recurrence for Schedule {
    fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        Schedule::next_after(self, after)
    }

    fn describe(&self) -> String {
        format!("cron `{}` ({})", self.pattern(), self.timezone())
    }
}

impl<R: Recurrence + ?Sized> Recurrence for Arc<R> {
    fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        (**self).next_after(after)
    }

    fn describe(&self) -> String {
        (**self).describe()
    }
}

impl<R: Recurrence + ?Sized> Recurrence for Box<R> {
    fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        (**self).next_after(after)
    }

    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// When a task is due, how urgent it is among tasks due at the same instant, and by when
/// it must be popped.
///
/// Start from [`at`](Self::at), [`after`](Self::after), [`cron`](Self::cron) or
/// [`recurring`](Self::recurring), then set [`priority`](Self::priority) and a deadline
/// ([`deadline`](Self::deadline) or [`start_within`](Self::start_within)) as needed.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use tradeflow::scheduler::SchedulePolicy;
///
/// // Due in five minutes, ahead of other tasks due then, and worthless after ten.
/// let policy = SchedulePolicy::after(Duration::from_secs(300))
///     .priority(-10)
///     .start_within(Duration::from_secs(300));
/// # let _ = policy;
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct SchedulePolicy {
    pub(super) when: When,
    pub(super) priority: i32,
    pub(super) deadline: Option<Deadline>,
}

/// When a policy's task is first due.
#[derive(Debug, Clone)]
pub(super) enum When {
    At(DateTime<Utc>),
    /// A delay from the scheduler's clock at the time the task is scheduled.
    After(Duration),
    Recurring(Arc<dyn Recurrence>),
}

/// By when a task must be popped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Deadline {
    /// A fixed instant.
    At(DateTime<Utc>),
    /// A duration after each due time.
    Within(TimeDelta),
}

impl Deadline {
    /// The instant, for a task due at `due` (the latest representable time if
    /// `due + within` is past it).
    pub(super) fn resolve(self, due: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Self::At(instant) => instant,
            Self::Within(within) => due
                .checked_add_signed(within)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }
}

impl SchedulePolicy {
    fn new(when: When) -> Self {
        Self {
            when,
            priority: 0,
            deadline: None,
        }
    }

    /// Due at `instant` (at once if it has passed).
    pub fn at(instant: DateTime<Utc>) -> Self {
        Self::new(When::At(instant))
    }

    /// Due `delay` after the scheduler's clock time when the task is scheduled.
    pub fn after(delay: Duration) -> Self {
        Self::new(When::After(delay))
    }

    /// Due at every firing of a cron schedule (in its time zone): first at the first
    /// firing after the scheduler's clock time, then, each time it is popped, at the
    /// next firing after both that occurrence and the pop.
    ///
    /// A [`Schedule`] comes from a workflow's `SCHEDULED` trigger
    /// ([`ExecutionPlan::triggers`](crate::plan::ExecutionPlan::triggers)):
    /// ```
    /// use tradeflow::plan::{ExecutionPlan, TriggerKind};
    /// use tradeflow::scheduler::SchedulePolicy;
    ///
    /// let plan = ExecutionPlan::from_json(include_str!("../../../examples/workflows/algo-trading.json"))?;
    /// let TriggerKind::Scheduled(schedule) = plan.triggers()[0].kind() else { unreachable!() };
    /// let policy = SchedulePolicy::cron((**schedule).clone());
    /// # let _ = policy;
    /// # Ok::<(), tradeflow::definition::ValidationErrors>(())
    /// ```
    pub fn cron(schedule: Schedule) -> Self {
        Self::recurring(schedule)
    }

    /// Due at every occurrence of `recurrence`, as for [`cron`](Self::cron).
    pub fn recurring(recurrence: impl Recurrence + 'static) -> Self {
        Self::new(When::Recurring(Arc::new(recurrence)))
    }

    /// Among tasks due at the same instant, lower numbers are popped first; equal ones in
    /// scheduling order. Defaults to 0.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// The task must be popped by `deadline`, or it is delivered marked missed. Not for
    /// recurring tasks (use [`start_within`](Self::start_within)). Replaces an earlier
    /// deadline. Defaults to none.
    pub fn deadline(mut self, deadline: DateTime<Utc>) -> Self {
        self.deadline = Some(Deadline::At(deadline));
        self
    }

    /// The task (each occurrence of a recurring one) must be popped within `within` of
    /// its due time, or it is delivered marked missed. The deadline moves when the task
    /// is rescheduled. Replaces an earlier deadline. Defaults to none.
    pub fn start_within(mut self, within: Duration) -> Self {
        // Longer than chrono can represent (about 292 million years) means never.
        let within = TimeDelta::from_std(within).unwrap_or(TimeDelta::MAX);
        self.deadline = Some(Deadline::Within(within));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn relative_deadlines_resolve_against_the_due_time_and_saturate() {
        let due = at("2026-01-05T09:00:00Z");
        let within = Deadline::Within(TimeDelta::minutes(5));
        assert_eq!(within.resolve(due), at("2026-01-05T09:05:00Z"));
        assert_eq!(
            Deadline::Within(TimeDelta::MAX).resolve(due),
            DateTime::<Utc>::MAX_UTC
        );
        assert_eq!(Deadline::At(due).resolve(at("2030-01-01T00:00:00Z")), due);
    }

    #[test]
    fn the_last_deadline_set_wins() {
        let policy = SchedulePolicy::after(Duration::ZERO)
            .deadline(at("2026-01-05T09:00:00Z"))
            .start_within(Duration::from_secs(60));
        assert_eq!(
            policy.deadline,
            Some(Deadline::Within(TimeDelta::seconds(60)))
        );
        let policy = SchedulePolicy::after(Duration::MAX).start_within(Duration::MAX);
        assert_eq!(policy.deadline, Some(Deadline::Within(TimeDelta::MAX)));
        assert_eq!(policy.priority, 0);
    }
}
