//! `TaskQueue`: tasks in a B-tree ordered by `(due, priority, sequence number)`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Bound;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use chrono::{DateTime, Utc};
use futures::future;
use serde_json::Value;

use super::filter::{Reschedule, TaskFilter, TimeRange};
use super::policy::{Deadline, Recurrence, SchedulePolicy, When};
use super::{DueStatus, DueTask, ScheduleError, ScheduledTask, Slot, Task, TaskId, TaskScheduler};
use crate::clock::{Clock, SystemClock, checked_add};

/// Tasks in memory, ordered in a B-tree by `(due, priority, scheduling order)`: O(log n)
/// to schedule, pop, cancel and find by id, O(log n + k) to list the k tasks of a time
/// range. [`TaskScheduler`] documents what each operation means.
///
/// The queue reads the time from its [`Clock`] for [`SchedulePolicy::after`] and for
/// recurring tasks, and sleeps on it in [`due`](TaskScheduler::due). Nothing survives
/// the process.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use tradeflow::clock::{Clock, VirtualClock};
/// use tradeflow::scheduler::{SchedulePolicy, Task, TaskQueue, TaskScheduler};
///
/// let clock = VirtualClock::starting_at("2026-01-05T09:00:00Z".parse()?);
/// let queue: TaskQueue<&str> = TaskQueue::new(clock.clone());
/// let id = queue.schedule_task(Task::new("ping", "hello"), SchedulePolicy::after(Duration::from_secs(5)))?;
/// assert_eq!(queue.next_due(), Some(clock.now() + Duration::from_secs(5)));
/// assert_eq!(queue.pop_due(clock.now()), None); // Not due yet.
/// let due = clock.block_on(queue.due());
/// assert_eq!((due.id(), *due.task().payload()), (id, "hello"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Layout and cost
/// The queue keeps every task in one `BTreeMap` ordered by `(due, priority,
/// sequence number)`, whose values are the tasks, shared (`Arc`) with the listings that
/// return them. A [`TaskId`] carries the key its task was scheduled with, so a task that
/// has not moved is found by id with no index; the few that have (rescheduled, or
/// recurring past their first occurrence) are in a small hash map from sequence number
/// to key. So a queue of one-off tasks keeps one tree and nothing else.
///
/// With n pending tasks: scheduling, popping, cancelling and looking up by id are
/// O(log n); [`next_due`](TaskScheduler::next_due) is O(log n); listing the k tasks of a
/// time range is O(log n + k); rescheduling is O(log n) per task selected by id, and
/// O(log n + k) over the k tasks of the filter's time range (every task when the filter
/// has no range). One mutex guards the state; it is held for one operation, never
/// across an `await`.
///
/// Why a B-tree: it answers range queries in order and removes any key in O(log n), where
/// a binary heap would need lazy deletion and a sort per listing. Why no index by id:
/// at a million tasks, a hash map from id to key is two cache misses per
/// schedule-and-pop and a large table to grow; taking it out cut the time to schedule a
/// task by more than half, to pop one by a third, and the heap by a fifth.
/// `benches/scheduler.rs` measures the queue at a million pending tasks;
/// `docs/performance.md` has the numbers.
pub struct TaskQueue<T = Value> {
    clock: Arc<dyn Clock>,
    state: Mutex<State<T>>,
}

/// Where a task sits in the order. Sequence numbers are unique, so keys are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    due: DateTime<Utc>,
    priority: i32,
    seq: u64,
}

impl Key {
    /// Below every key due at `due`.
    fn first_at(due: DateTime<Utc>) -> Self {
        Self {
            due,
            priority: i32::MIN,
            seq: 0,
        }
    }

    /// Above every key due at `due` (sequence numbers start at 1 and never reach
    /// `u64::MAX`).
    fn last_at(due: DateTime<Utc>) -> Self {
        Self {
            due,
            priority: i32::MAX,
            seq: u64::MAX,
        }
    }

    /// The key a task was scheduled with.
    fn original(id: TaskId) -> Self {
        Self {
            due: id.due,
            priority: id.priority,
            seq: id.seq,
        }
    }
}

struct State<T> {
    /// Every task, in pop order.
    order: BTreeMap<Key, Arc<Slot<T>>>,
    /// The keys of the tasks that are not where they were scheduled (rescheduled, or
    /// recurring past their first occurrence), by sequence number. Every other task is at
    /// [`Key::original`] of its id, so one-off tasks, the bulk of a queue, need no index
    /// by id: no hash table to grow, and nothing to update when they are popped.
    /// Invariant: every entry is a key in `order`, different from the original one.
    moved: HashMap<u64, Key, IdHash>,
    next_seq: u64,
    /// Waiters of `due` that sleep until the earliest due time: woken (and removed) when
    /// it changes; the waker is `None` until the waiter is first polled.
    waiters: BTreeMap<u64, Option<Waker>>,
    next_waiter: u64,
}

impl<T> State<T> {
    fn head(&self) -> Option<DateTime<Utc>> {
        self.order.first_key_value().map(|(key, _)| key.due)
    }

    fn scheduled(key: Key, slot: Arc<Slot<T>>) -> ScheduledTask<T> {
        debug_assert_eq!(key.seq, slot.id.seq, "a slot is filed under its own id");
        ScheduledTask {
            due: key.due,
            priority: key.priority,
            slot,
        }
    }

    /// Where task `id` is now, if it is scheduled.
    fn key(&self, id: TaskId) -> Option<Key> {
        let key = self
            .moved
            .get(&id.seq)
            .copied()
            .unwrap_or_else(|| Key::original(id));
        self.order
            .get(&key)
            .is_some_and(|slot| slot.id == id)
            .then_some(key)
    }

    /// Files the slot of task `id` under `key` (its old key already removed).
    fn file(&mut self, id: TaskId, key: Key, slot: Arc<Slot<T>>) {
        self.order.insert(key, slot);
        if key == Key::original(id) {
            self.forget_move(id.seq);
        } else {
            self.moved.insert(id.seq, key);
        }
    }

    /// Drops the moved key of `seq`, if any (cheap when nothing has moved).
    fn forget_move(&mut self, seq: u64) {
        if !self.moved.is_empty() {
            self.moved.remove(&seq);
        }
    }

    /// Pops the first task due at `now`. A recurring task's next occurrence is computed
    /// before anything changes, so a panicking [`Recurrence`] leaves the state whole.
    fn pop_due(&mut self, now: DateTime<Utc>) -> Option<DueTask<T>> {
        let (&key, slot) = self.order.first_key_value()?;
        if key.due > now {
            return None;
        }
        let next_due = slot
            .recurrence
            .as_ref()
            .and_then(|recurrence| next_occurrence(recurrence.as_ref(), key.due.max(now)));
        let (_, slot) = self.order.pop_first()?;
        match next_due {
            Some(due) => self.file(slot.id, Key { due, ..key }, Arc::clone(&slot)),
            None => self.forget_move(key.seq),
        }
        let scheduled = Self::scheduled(key, slot);
        let status = match scheduled.deadline() {
            Some(deadline) if now > deadline => DueStatus::Missed,
            _ => DueStatus::OnTime,
        };
        Some(DueTask {
            scheduled,
            popped_at: now,
            status,
            next_due,
        })
    }

    /// Removes task `id`.
    fn remove(&mut self, id: TaskId) -> Option<ScheduledTask<T>> {
        let key = self.key(id)?;
        let slot = self.order.remove(&key)?;
        self.forget_move(id.seq);
        Some(Self::scheduled(key, slot))
    }

    /// The ids and keys of the tasks `filter` selects.
    fn select(&self, filter: &TaskFilter) -> Vec<(TaskId, Key)> {
        let wanted =
            |key: &Key, slot: &Slot<T>| filter.due.contains(key.due) && filter.matches(&slot.task);
        match &filter.ids {
            Some(ids) => ids
                .iter()
                .filter_map(|&id| {
                    let key = self.key(id)?;
                    let slot = self.order.get(&key)?;
                    wanted(&key, slot).then_some((id, key))
                })
                .collect(),
            None => key_range(&filter.due)
                .map(|range| {
                    self.order
                        .range(range)
                        .filter(|(key, slot)| wanted(key, slot))
                        .map(|(key, slot)| (slot.id, *key))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Moves the task at `old` to `new`.
    fn rekey(&mut self, old: Key, new: Key) {
        debug_assert_eq!(old.seq, new.seq, "a task keeps its sequence number");
        if old == new {
            return;
        }
        if let Some(slot) = self.order.remove(&old) {
            self.file(slot.id, new, slot);
        }
    }

    fn take_waiters(&mut self) -> BTreeMap<u64, Option<Waker>> {
        std::mem::take(&mut self.waiters)
    }
}

/// The first occurrence of `recurrence` after `after`. One that is not after it would
/// be due again at once, forever, so it ends the recurrence.
fn next_occurrence(recurrence: &dyn Recurrence, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let next = recurrence.next_after(after)?;
    if next > after {
        Some(next)
    } else {
        tracing::warn!(
            recurrence = %recurrence.describe(),
            %after,
            %next,
            "a recurrence gave an occurrence that is not after the last one; it ends here"
        );
        None
    }
}

/// The keys of the tasks due within `range`, as bounds `BTreeMap::range` accepts; `None`
/// for an empty range (which `range` would panic on when reversed).
fn key_range(range: &TimeRange) -> Option<(Bound<Key>, Bound<Key>)> {
    use std::ops::RangeBounds;
    let start = match range.start_bound() {
        Bound::Included(&due) => Bound::Included(Key::first_at(due)),
        Bound::Excluded(&due) => Bound::Excluded(Key::last_at(due)),
        Bound::Unbounded => Bound::Unbounded,
    };
    let end = match range.end_bound() {
        Bound::Included(&due) => Bound::Included(Key::last_at(due)),
        Bound::Excluded(&due) => Bound::Excluded(Key::first_at(due)),
        Bound::Unbounded => Bound::Unbounded,
    };
    let empty = match (start, end) {
        (Bound::Included(low), Bound::Included(high)) => low > high,
        (
            Bound::Included(low) | Bound::Excluded(low),
            Bound::Included(high) | Bound::Excluded(high),
        ) => low >= high,
        _ => false,
    };
    (!empty).then_some((start, end))
}

impl<T> TaskQueue<T> {
    /// An empty queue on `clock`.
    pub fn new(clock: impl Clock + 'static) -> Self {
        Self {
            clock: Arc::new(clock),
            state: Mutex::new(State {
                order: BTreeMap::new(),
                moved: HashMap::default(),
                next_seq: 1,
                waiters: BTreeMap::new(),
                next_waiter: 0,
            }),
        }
    }

    /// The clock the queue reads the time from and sleeps on.
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    /// Locks the state. Every change is complete before the lock is released, and the
    /// only user code run under it ([`Recurrence::next_after`]) runs before the change it
    /// feeds, so a poisoned lock still holds a consistent state.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `change` on the state, then wakes the waiters of `due` if the earliest due
    /// time moved (after releasing the lock).
    fn change<R>(&self, change: impl FnOnce(&mut State<T>) -> R) -> R {
        let (result, woken) = {
            let mut state = self.lock();
            let watched = !state.waiters.is_empty();
            let head = if watched { state.head() } else { None };
            let result = change(&mut state);
            debug_assert!(
                state.moved.len() <= state.order.len(),
                "moved keys are kept"
            );
            let woken = (watched && state.head() != head).then(|| state.take_waiters());
            (result, woken)
        };
        for waker in woken.into_iter().flat_map(BTreeMap::into_values).flatten() {
            waker.wake();
        }
        result
    }

    /// The time `task` is first due under `policy`.
    fn first_due(
        &self,
        task: &Task<T>,
        policy: &SchedulePolicy,
    ) -> Result<DateTime<Utc>, ScheduleError> {
        let due = match &policy.when {
            When::At(instant) => *instant,
            When::After(delay) => {
                let from = self.clock.now();
                checked_add(from, *delay).ok_or_else(|| ScheduleError::DelayOutOfRange {
                    task: task.name().to_owned(),
                    from,
                    delay: *delay,
                })?
            }
            When::Recurring(recurrence) => {
                if let Some(Deadline::At(deadline)) = policy.deadline {
                    return Err(ScheduleError::FixedDeadlineOnRecurring {
                        task: task.name().to_owned(),
                        deadline,
                    });
                }
                let after = self.clock.now();
                recurrence
                    .next_after(after)
                    .ok_or_else(|| ScheduleError::NeverDue {
                        task: task.name().to_owned(),
                        recurrence: recurrence.describe(),
                        after,
                    })?
            }
        };
        if let Some(Deadline::At(deadline)) = policy.deadline {
            if deadline < due {
                return Err(ScheduleError::DeadlineBeforeDue {
                    task: task.name().to_owned(),
                    due,
                    deadline,
                });
            }
        }
        Ok(due)
    }
}

impl<T> Default for TaskQueue<T> {
    /// An empty queue on the [`SystemClock`].
    fn default() -> Self {
        Self::new(SystemClock)
    }
}

#[async_trait::async_trait]
impl<T: Send + Sync + 'static> TaskScheduler<T> for TaskQueue<T> {
    fn schedule_task(
        &self,
        task: Task<T>,
        policy: SchedulePolicy,
    ) -> Result<TaskId, ScheduleError> {
        let due = self.first_due(&task, &policy)?;
        let SchedulePolicy {
            when,
            priority,
            deadline,
        } = policy;
        let recurrence = match when {
            When::Recurring(recurrence) => Some(recurrence),
            When::At(_) | When::After(_) => None,
        };
        Ok(self.change(move |state| {
            let id = TaskId {
                seq: state.next_seq,
                due,
                priority,
            };
            state.next_seq += 1;
            let slot = Arc::new(Slot {
                id,
                task,
                deadline,
                recurrence,
            });
            state.order.insert(Key::original(id), slot);
            id
        }))
    }

    fn reschedule_tasks(
        &self,
        filter: &TaskFilter,
        change: Reschedule,
    ) -> Result<usize, ScheduleError> {
        self.change(|state| {
            let selected = state.select(filter);
            // Every new key first, so that a shift out of range changes nothing.
            let moves = selected
                .iter()
                .map(|&(id, old)| {
                    let new = match change {
                        Reschedule::ShiftBy(by) => Key {
                            due: old.due.checked_add_signed(by).ok_or(
                                ScheduleError::ShiftOutOfRange {
                                    id,
                                    due: old.due,
                                    by,
                                },
                            )?,
                            ..old
                        },
                        Reschedule::MoveTo(due) => Key { due, ..old },
                        Reschedule::Priority(priority) => Key { priority, ..old },
                    };
                    Ok((id, old, new))
                })
                .collect::<Result<Vec<_>, _>>()?;
            for &(_, old, new) in &moves {
                state.rekey(old, new);
            }
            Ok(moves.len())
        })
    }

    fn cancel_task(&self, id: TaskId) -> Option<ScheduledTask<T>> {
        self.change(|state| state.remove(id))
    }

    fn get_schedule(&self, range: TimeRange) -> Vec<ScheduledTask<T>> {
        let Some(range) = key_range(&range) else {
            return Vec::new();
        };
        self.lock()
            .order
            .range(range)
            .map(|(&key, slot)| State::scheduled(key, Arc::clone(slot)))
            .collect()
    }

    fn task(&self, id: TaskId) -> Option<ScheduledTask<T>> {
        let state = self.lock();
        let key = state.key(id)?;
        state
            .order
            .get(&key)
            .map(|slot| State::scheduled(key, Arc::clone(slot)))
    }

    fn next_due(&self) -> Option<DateTime<Utc>> {
        self.lock().head()
    }

    fn pop_due(&self, now: DateTime<Utc>) -> Option<DueTask<T>> {
        self.change(|state| state.pop_due(now))
    }

    fn drain_due(&self, now: DateTime<Utc>) -> Vec<DueTask<T>> {
        self.change(|state| std::iter::from_fn(|| state.pop_due(now)).collect())
    }

    fn len(&self) -> usize {
        self.lock().order.len()
    }

    async fn due(&self) -> DueTask<T> {
        loop {
            if let Some(due) = self.pop_due(self.clock.now()) {
                return due;
            }
            // Registering and reading the earliest due time under one lock: any change
            // after this wakes the waiter.
            let (moved, head) = {
                let mut state = self.lock();
                let id = state.next_waiter;
                state.next_waiter += 1;
                state.waiters.insert(id, None);
                (HeadMoved { queue: self, id }, state.head())
            };
            match head {
                Some(due) => {
                    let sleep = self.clock.sleep_until(due);
                    // Either way, look again: woken by the clock, the task may have been
                    // taken by another waiter; woken by a change, the earliest task
                    // changed.
                    drop(future::select(moved, sleep).await);
                }
                None => moved.await,
            }
        }
    }
}

/// Completes when the queue's earliest due time changes: when its waiter id has been
/// taken out of `waiters`.
struct HeadMoved<'a, T> {
    queue: &'a TaskQueue<T>,
    id: u64,
}

impl<T> Future for HeadMoved<'_, T> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.queue.lock();
        let Some(slot) = state.waiters.get_mut(&self.id) else {
            return Poll::Ready(());
        };
        let stale = match slot {
            Some(waker) if waker.will_wake(cx.waker()) => None,
            _ => slot.replace(cx.waker().clone()),
        };
        drop(state);
        // Dropping a waker may run arbitrary code: not under the lock.
        drop(stale);
        Poll::Pending
    }
}

impl<T> Drop for HeadMoved<'_, T> {
    fn drop(&mut self) {
        let removed = self.queue.lock().waiters.remove(&self.id);
        drop(removed);
    }
}

impl<T> fmt::Debug for TaskQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (tasks, next_due, waiters) = {
            let state = self.lock();
            (state.order.len(), state.head(), state.waiters.len())
        };
        f.debug_struct("TaskQueue")
            .field("tasks", &tasks)
            .field("next_due", &next_due)
            .field("waiters", &waiters)
            .field("clock", &self.clock)
            .finish()
    }
}

/// Hashes sequence numbers with one multiplication (Fibonacci hashing): they are
/// dense and made by the queue, not chosen by users, so SipHash's protection against
/// chosen keys would buy nothing.
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

/// 2^64 / φ, odd: spreads consecutive ids over the high bits hashbrown's tags use.
const FIBONACCI: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(FIBONACCI);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(FIBONACCI);
    }
}

type IdHash = BuildHasherDefault<IdHasher>;

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::BuildHasher;
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::atomic::{AtomicBool, Ordering};

    use chrono::TimeDelta;

    use super::*;
    use crate::clock::VirtualClock;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn t0() -> DateTime<Utc> {
        at("2026-01-05T09:00:00Z")
    }

    fn queue() -> TaskQueue<u32> {
        TaskQueue::new(VirtualClock::starting_at(t0()))
    }

    #[test]
    fn key_ranges_match_the_time_range_and_never_panic() {
        let (a, b) = (t0(), t0() + TimeDelta::hours(1));
        let key = |due| Key {
            due,
            priority: 0,
            seq: 5,
        };
        let inside = |range: TimeRange, due| {
            key_range(&range)
                .is_some_and(|bounds| std::ops::RangeBounds::contains(&bounds, &key(due)))
        };
        assert!(inside((a..b).into(), a));
        assert!(!inside((a..b).into(), b));
        assert!(inside((a..=b).into(), b));
        assert!(!inside((Bound::Excluded(a), Bound::Unbounded).into(), a));
        assert!(inside((Bound::Excluded(a), Bound::Unbounded).into(), b));
        // Empty and reversed ranges are `None`, which `BTreeMap::range` would panic on.
        for range in [
            TimeRange::from(b..a),
            TimeRange::from(a..a),
            TimeRange::from(b..=a),
            TimeRange::new(Bound::Excluded(a), Bound::Excluded(a)),
            TimeRange::new(Bound::Excluded(a), Bound::Included(a)),
        ] {
            assert_eq!(key_range(&range), None, "{range:?}");
        }
        assert!(key_range(&TimeRange::from(a..=a)).is_some());
    }

    #[test]
    fn consecutive_sequence_numbers_hash_to_distinct_buckets_and_tags() {
        let hash = |seq: u64| IdHash::default().hash_one(seq);
        let low: HashSet<u64> = (0..1024).map(|id| hash(id) & 1023).collect();
        let tags: HashSet<u64> = (0..1024).map(|id| hash(id) >> 57).collect();
        assert_eq!(low.len(), 1024);
        assert_eq!(tags.len(), 128);
        let mut bytes = IdHasher::default();
        bytes.write(b"abc");
        assert_ne!(bytes.finish(), 0);
    }

    /// A recurrence that panics when told to.
    #[derive(Debug)]
    struct Fragile(AtomicBool);

    impl Recurrence for Fragile {
        fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
            assert!(!self.0.load(Ordering::SeqCst), "fragile recurrence");
            Some(after + TimeDelta::minutes(1))
        }
    }

    #[test]
    fn a_panicking_recurrence_leaves_the_queue_whole() {
        let queue = queue();
        let fragile = Arc::new(Fragile(AtomicBool::new(false)));
        let id = queue
            .schedule_task(
                Task::new("tick", 1),
                SchedulePolicy::recurring(Arc::clone(&fragile)),
            )
            .unwrap();
        fragile.0.store(true, Ordering::SeqCst);
        let popped = catch_unwind(AssertUnwindSafe(|| {
            queue.pop_due(t0() + TimeDelta::hours(1))
        }));
        assert!(popped.is_err());
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.next_due(), Some(t0() + TimeDelta::minutes(1)));
        fragile.0.store(false, Ordering::SeqCst);
        let due = queue.pop_due(t0() + TimeDelta::hours(1)).unwrap();
        assert_eq!(due.id(), id);
        assert_eq!(due.next_due(), Some(t0() + TimeDelta::minutes(61)));
    }

    /// Always "occurs" at the same instant.
    #[derive(Debug)]
    struct Stuck(DateTime<Utc>);

    impl Recurrence for Stuck {
        fn next_after(&self, _after: DateTime<Utc>) -> Option<DateTime<Utc>> {
            Some(self.0)
        }
    }

    #[test]
    fn a_recurrence_that_does_not_move_on_ends() {
        let queue = queue();
        queue
            .schedule_task(
                Task::new("stuck", 1),
                SchedulePolicy::recurring(Stuck(t0())),
            )
            .unwrap();
        let drained = queue.drain_due(t0() + TimeDelta::hours(1));
        assert_eq!(drained.len(), 1);
        assert_eq!(drained[0].next_due(), None);
        assert!(queue.is_empty());
    }

    #[test]
    fn waiters_are_woken_only_when_the_earliest_due_time_moves() {
        let queue = queue();
        queue
            .schedule_task(
                Task::new("late", 1),
                SchedulePolicy::at(t0() + TimeDelta::hours(1)),
            )
            .unwrap();
        let mut due = Box::pin(queue.due());
        let waker = futures::task::noop_waker();
        assert!(
            due.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        assert_eq!(queue.lock().waiters.len(), 1);
        // Not earlier: the waiter sleeps on.
        queue
            .schedule_task(
                Task::new("later", 2),
                SchedulePolicy::at(t0() + TimeDelta::hours(2)),
            )
            .unwrap();
        assert_eq!(queue.lock().waiters.len(), 1);
        // Earlier: woken.
        queue
            .schedule_task(
                Task::new("soon", 3),
                SchedulePolicy::at(t0() + TimeDelta::minutes(1)),
            )
            .unwrap();
        assert!(queue.lock().waiters.is_empty());
        assert!(
            due.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        assert_eq!(queue.lock().waiters.len(), 1);
        drop(due);
        assert!(
            queue.lock().waiters.is_empty(),
            "a dropped waiter unregisters"
        );
    }

    #[test]
    fn debug_shows_the_size_and_the_next_due_time() {
        let queue = queue();
        queue
            .schedule_task(Task::new("a", 1), SchedulePolicy::at(t0()))
            .unwrap();
        let debug = format!("{queue:?}");
        assert!(
            debug.starts_with("TaskQueue { tasks: 1, next_due: Some(2026-01-05T09:00:00Z)"),
            "{debug}"
        );
    }
}
