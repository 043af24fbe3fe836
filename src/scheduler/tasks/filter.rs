//! Selecting tasks: [`TimeRange`], [`TaskFilter`], and the [`Reschedule`] applied to
//! them.

use std::collections::BTreeSet;
use std::ops::{
    Bound, Range, RangeBounds, RangeFrom, RangeFull, RangeInclusive, RangeTo, RangeToInclusive,
};

use chrono::{DateTime, TimeDelta, Utc};

use super::{Task, TaskId};

/// A range of instants, each end included, excluded or open, as the standard ranges
/// (`a..b`, `a..=b`, `a..`, `..b`, `..`) convert into.
///
/// # Examples
/// ```
/// use tradeflow::scheduler::TimeRange;
/// use chrono::{DateTime, Utc};
///
/// let open: DateTime<Utc> = "2026-01-05T09:30:00Z".parse()?;
/// let close: DateTime<Utc> = "2026-01-05T16:00:00Z".parse()?;
/// let session = TimeRange::from(open..close);
/// assert!(session.contains(open) && !session.contains(close));
/// assert!(TimeRange::from(open..=close).contains(close));
/// assert!(TimeRange::all().contains(DateTime::<Utc>::MAX_UTC));
/// # Ok::<(), chrono::ParseError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeRange {
    start: Bound<DateTime<Utc>>,
    end: Bound<DateTime<Utc>>,
}

impl TimeRange {
    /// Every instant.
    #[must_use]
    pub const fn all() -> Self {
        Self {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
        }
    }

    /// The instants between `start` and `end`. A start after the end is an empty range.
    #[must_use]
    pub const fn new(start: Bound<DateTime<Utc>>, end: Bound<DateTime<Utc>>) -> Self {
        Self { start, end }
    }

    /// Whether `instant` is in the range.
    #[must_use]
    pub fn contains(&self, instant: DateTime<Utc>) -> bool {
        RangeBounds::contains(self, &instant)
    }
}

impl Default for TimeRange {
    /// Every instant.
    fn default() -> Self {
        Self::all()
    }
}

impl RangeBounds<DateTime<Utc>> for TimeRange {
    fn start_bound(&self) -> Bound<&DateTime<Utc>> {
        self.start.as_ref()
    }

    fn end_bound(&self) -> Bound<&DateTime<Utc>> {
        self.end.as_ref()
    }
}

macro_rules! time_range_from {
    ($($range:ty),*) => {$(
        impl From<$range> for TimeRange {
            fn from(range: $range) -> Self {
                Self::new(range.start_bound().cloned(), range.end_bound().cloned())
            }
        }
    )*};
}

time_range_from!(
    Range<DateTime<Utc>>,
    RangeInclusive<DateTime<Utc>>,
    RangeFrom<DateTime<Utc>>,
    RangeTo<DateTime<Utc>>,
    RangeToInclusive<DateTime<Utc>>,
    RangeFull,
    (Bound<DateTime<Utc>>, Bound<DateTime<Utc>>)
);

/// Which tasks [`reschedule_tasks`](super::TaskScheduler::reschedule_tasks) changes:
/// those that meet every condition set (by id, name, tags and due time). With none set it
/// selects every task.
///
/// # Examples
/// ```
/// use chrono::{DateTime, Utc};
/// use tradeflow::scheduler::TaskFilter;
///
/// let open: DateTime<Utc> = "2026-01-05T09:30:00Z".parse()?;
/// // The EU rebalances due from the open on.
/// let filter = TaskFilter::all().name("rebalance").tag("eu").due_in(open..);
/// # let _ = filter;
/// # Ok::<(), chrono::ParseError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct TaskFilter {
    pub(super) ids: Option<BTreeSet<TaskId>>,
    name: Option<String>,
    tags: Vec<String>,
    pub(super) due: TimeRange,
}

impl TaskFilter {
    /// Selects every task.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only these tasks (ids no task has are ignored). Replaces an earlier set of ids.
    /// Defaults to any id.
    pub fn ids(mut self, ids: impl IntoIterator<Item = TaskId>) -> Self {
        self.ids = Some(ids.into_iter().collect());
        self
    }

    /// Only tasks named `name`. Replaces an earlier name. Defaults to any name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Only tasks with tag `tag`; with several tags, tasks with all of them. Defaults to
    /// any tags.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Only tasks due within `range` (for a recurring task: its pending occurrence).
    /// Replaces an earlier range. Defaults to any time.
    pub fn due_in(mut self, range: impl Into<TimeRange>) -> Self {
        self.due = range.into();
        self
    }

    /// Whether `task` has the name and tags asked for (ids and due time are checked
    /// by the scheduler, which knows them).
    pub(super) fn matches<T>(&self, task: &Task<T>) -> bool {
        self.name.as_deref().is_none_or(|name| task.name() == name)
            && self.tags.iter().all(|tag| task.has_tag(tag))
    }
}

/// What [`reschedule_tasks`](super::TaskScheduler::reschedule_tasks) does to each task it
/// selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reschedule {
    /// Moves the due time by this much (negative: earlier).
    ShiftBy(TimeDelta),
    /// Moves the due time to this instant.
    MoveTo(DateTime<Utc>),
    /// Sets the priority.
    Priority(i32),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn standard_ranges_convert_with_their_bounds() {
        let (a, b) = (at("2026-01-05T09:00:00Z"), at("2026-01-05T10:00:00Z"));
        let cases = [
            (
                TimeRange::from(a..b),
                Bound::Included(a),
                Bound::Excluded(b),
            ),
            (
                TimeRange::from(a..=b),
                Bound::Included(a),
                Bound::Included(b),
            ),
            (TimeRange::from(a..), Bound::Included(a), Bound::Unbounded),
            (TimeRange::from(..b), Bound::Unbounded, Bound::Excluded(b)),
            (TimeRange::from(..=b), Bound::Unbounded, Bound::Included(b)),
            (TimeRange::from(..), Bound::Unbounded, Bound::Unbounded),
            (
                TimeRange::from((Bound::Excluded(a), Bound::Included(b))),
                Bound::Excluded(a),
                Bound::Included(b),
            ),
        ];
        for (range, start, end) in cases {
            assert_eq!((range.start, range.end), (start, end));
        }
        assert!(!TimeRange::from(b..a).contains(a));
    }

    #[test]
    fn filters_need_every_condition() {
        let task = Task::new("rebalance", ()).tag("eu").tag("daily");
        assert!(TaskFilter::all().matches(&task));
        assert!(TaskFilter::all().name("rebalance").tag("eu").matches(&task));
        assert!(!TaskFilter::all().name("hedge").matches(&task));
        assert!(!TaskFilter::all().tag("eu").tag("us").matches(&task));
    }
}
