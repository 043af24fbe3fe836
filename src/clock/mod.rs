//! Time as an injected dependency: the engine asks a [`Clock`] for the time and for
//! sleeps, and never reads the OS clock itself.
//!
//! Three clocks ship with the crate:
//! - [`SystemClock`]: the real time ([`Utc::now`]); sleeps use `futures-timer`, which has
//!   its own timer thread, so they work under tokio, async-std, smol or
//!   `futures::executor::block_on` alike.
//! - [`VirtualClock`]: time that moves only when told to. Tests, `simulate` and `replay`
//!   use it, so a simulated hour takes microseconds and every run is deterministic.
//! - [`StallDetectingClock`]: the real time, counting its pending sleeps, so that a host
//!   driving a run on its own thread (`tradeflow run`) sees when the run waits for
//!   nothing that can ever come.
//!
//! # How the virtual clock works
//! The clock holds its current time and a table of live timers ordered by
//! `(deadline, registration number)`. [`Clock::sleep_until`] registers a timer when the
//! [`Sleep`] is created (unless the deadline has passed: then the sleep is ready at once);
//! dropping a `Sleep` removes its timer, so a timeout that lost its race never makes the
//! clock jump. [`VirtualClock::advance_to`] moves the time forward and wakes every timer
//! now due, earliest deadline first and, for equal deadlines, in registration order.
//!
//! [`VirtualClock::block_on`] drives a future on the current thread and advances time by
//! itself: whenever the future is pending and nothing has woken it, the future can only
//! be waiting for time, so the clock jumps to the next deadline and fires it. If no timer
//! is left, the future waits for something outside the clock (another thread, say) and
//! the thread parks until it is woken. [`VirtualClock::run_until_stalled`] returns
//! [`Poll::Pending`] at that point instead, so a test can assert that a run is waiting.
//!
//! Time never reads the wall clock, so the same program gives the same sequence of
//! wake-ups and the same [`Clock::now`] readings every time.
//!
//! # Cost
//! With n live timers: registering, firing and dropping a timer are O(log n)
//! (a `BTreeMap`); [`VirtualClock::next_deadline`] is O(log n) and
//! [`VirtualClock::pending_timers`] O(1). Removing dropped timers eagerly, rather than
//! skipping them lazily in a heap, keeps `next_deadline` exact and the table free of
//! garbage when many timeouts are cancelled. Each operation holds the clock's lock
//! briefly; wakers are called after it is released.
//!
//! # Using the virtual clock with an engine run
//! Give the engine a clone of the clock and drive the run with
//! `clock.block_on(run_future)`: every delay, retry back-off and timeout in the run is
//! then skipped over instantly, in order.
//!
//! A caller that drives futures on another executor (tokio, say) with a `VirtualClock`
//! must move time itself with [`VirtualClock::advance`] or
//! [`VirtualClock::advance_to`]: only `block_on` and `run_until_stalled` advance
//! automatically. Under `block_on`, work on other threads is invisible to the clock: if
//! the future waits both for another thread and for a timer, the clock jumps to the
//! timer at once. Drive each `VirtualClock` from one `block_on` at a time.
//!
//! # Examples
//! ```
//! use std::time::Duration;
//! use chrono::{TimeZone, Utc};
//! use tradeflow::clock::{Clock, VirtualClock};
//!
//! let start = Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap();
//! let clock = VirtualClock::starting_at(start);
//! let ended = clock.block_on({
//!     let clock = clock.clone();
//!     async move {
//!         clock.sleep(Duration::from_secs(3600)).await;
//!         clock.now()
//!     }
//! });
//! assert_eq!(ended, start + Duration::from_secs(3600));
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

mod stall;

pub use stall::StallDetectingClock;

/// A future that completes when a [`Clock`]'s sleep is over. Dropping it cancels the
/// sleep.
pub type Sleep = BoxFuture<'static, ()>;

/// Where the engine gets time from: the current time and sleeps.
///
/// Only [`now`](Clock::now) and [`sleep_until`](Clock::sleep_until) are required.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;

    /// Completes at `deadline` (at once if it has passed).
    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep;

    /// Completes after `duration`. The default sleeps until `now() + duration`
    /// (saturating at the latest representable time).
    fn sleep(&self, duration: Duration) -> Sleep {
        self.sleep_until(add_saturating(self.now(), duration))
    }

    /// Marks that a future waits for work outside the clock (a store's writer thread,
    /// say) until the returned [`Hold`] is dropped: meanwhile a clock that moves by
    /// itself, as [`VirtualClock::block_on`] does, waits for that work instead of jumping
    /// to its next timer. The default (and [`SystemClock`]) ignores it.
    fn hold(&self) -> Hold {
        Hold::none()
    }
}

/// Work outside a clock in progress: see [`Clock::hold`]. Dropping it ends the hold.
#[must_use = "the hold ends when dropped"]
pub struct Hold(Option<Box<dyn Send + Sync>>);

impl Hold {
    /// A hold that holds nothing: for clocks that do not move by themselves.
    pub fn none() -> Self {
        Self(None)
    }

    /// A hold that runs `release` when it is dropped.
    pub fn on_release(release: impl FnOnce() + Send + Sync + 'static) -> Self {
        struct Release<F: FnOnce()>(Option<F>);
        impl<F: FnOnce()> Drop for Release<F> {
            fn drop(&mut self) {
                if let Some(release) = self.0.take() {
                    release();
                }
            }
        }
        Self(Some(Box::new(Release(Some(release)))))
    }
}

impl fmt::Debug for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Hold").field(&self.0.is_some()).finish()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep {
        (**self).sleep_until(deadline)
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        (**self).sleep(duration)
    }

    fn hold(&self) -> Hold {
        (**self).hold()
    }
}

impl<C: Clock + ?Sized> Clock for Box<C> {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep {
        (**self).sleep_until(deadline)
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        (**self).sleep(duration)
    }

    fn hold(&self) -> Hold {
        (**self).hold()
    }
}

/// `time + duration`, or `None` when the sum is past the latest time chrono represents
/// ([`DateTime::<Utc>::MAX_UTC`], in the year 262143) or `duration` is longer than a
/// [`chrono::TimeDelta`] holds (about 292 million years).
pub(crate) fn checked_add(time: DateTime<Utc>, duration: Duration) -> Option<DateTime<Utc>> {
    chrono::TimeDelta::from_std(duration)
        .ok()
        .and_then(|delta| time.checked_add_signed(delta))
}

/// `time + duration`, or the latest representable time if that overflows: every deadline
/// and wake-up in the library is computed with it, so no duration can make time panic.
pub(crate) fn add_saturating(time: DateTime<Utc>, duration: Duration) -> DateTime<Utc> {
    checked_add(time, duration).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The real time: [`Utc::now`], with sleeps on `futures-timer`'s timer thread, so no
/// async runtime is needed.
///
/// [`sleep`](Clock::sleep) measures its duration on the monotonic clock;
/// [`sleep_until`](Clock::sleep_until) completes once [`Utc::now`] has reached the
/// deadline, sleeping again if the system time was set back meanwhile.
///
/// # Examples
/// ```
/// use std::time::{Duration, Instant};
/// use tradeflow::clock::{Clock, SystemClock};
///
/// let started = Instant::now();
/// futures::executor::block_on(SystemClock.sleep(Duration::from_millis(2)));
/// assert!(started.elapsed() >= Duration::from_millis(2));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep {
        Box::pin(async move {
            // A negative remainder (deadline passed) fails the conversion and ends the loop.
            while let Ok(remaining) = (deadline - Utc::now()).to_std() {
                if remaining.is_zero() {
                    break;
                }
                futures_timer::Delay::new(remaining).await;
            }
        })
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(futures_timer::Delay::new(duration))
    }
}

/// Time that moves only when told to, for deterministic tests and simulations.
///
/// Clones share one clock. Time moves with [`advance`](Self::advance) and
/// [`advance_to`](Self::advance_to), or by itself under [`block_on`](Self::block_on) and
/// [`run_until_stalled`](Self::run_until_stalled), which jump to the next timer whenever
/// the driven future has nothing else to do. Timers fire earliest deadline first, equal
/// deadlines in the order their sleeps were created. See the [module docs](self) for the
/// algorithm and its cost.
///
/// # Examples
/// A simulated hour of one-second ticks takes microseconds:
/// ```
/// use std::time::Duration;
/// use chrono::{TimeZone, Utc};
/// use tradeflow::clock::{Clock, VirtualClock};
///
/// let start = Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap();
/// let clock = VirtualClock::starting_at(start);
/// let ticks = clock.block_on({
///     let clock = clock.clone();
///     async move {
///         let mut ticks = 0;
///         while clock.now() < start + Duration::from_secs(3600) {
///             clock.sleep(Duration::from_secs(1)).await;
///             ticks += 1;
///         }
///         ticks
///     }
/// });
/// assert_eq!(ticks, 3600);
///
/// // Moving time by hand fires the timers that are due.
/// let alarm = clock.sleep(Duration::from_secs(60));
/// assert_eq!(clock.next_deadline(), Some(clock.now() + Duration::from_secs(60)));
/// clock.advance(Duration::from_secs(60));
/// assert_eq!(clock.pending_timers(), 0);
/// futures::executor::block_on(alarm); // Already due: completes at once.
/// ```
#[derive(Clone)]
pub struct VirtualClock {
    inner: Arc<Shared>,
}

/// The state shared by clones of a [`VirtualClock`] and its sleeps.
struct Shared {
    state: Mutex<State>,
}

/// Registration number of a timer: breaks ties between equal deadlines.
type Seq = u64;

struct State {
    now: DateTime<Utc>,
    next_seq: Seq,
    /// Live timers. Invariant: every deadline is later than `now` (due timers are removed
    /// as they fire); the waker is `None` until the sleep is first polled.
    timers: BTreeMap<(DateTime<Utc>, Seq), Option<Waker>>,
    /// Holds alive ([`Clock::hold`]): while there are any, time does not jump.
    holds: usize,
}

impl Shared {
    /// Locks the state. The lock is never held while user code runs (wakers are woken and
    /// dropped after it is released), so a poisoned lock still holds a consistent state.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl VirtualClock {
    /// A clock that reads `start` until it is advanced.
    #[must_use]
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        Self {
            inner: Arc::new(Shared {
                state: Mutex::new(State {
                    now: start,
                    next_seq: 0,
                    timers: BTreeMap::new(),
                    holds: 0,
                }),
            }),
        }
    }

    /// Moves time forward by `by` and wakes every timer now due, in order (earliest
    /// deadline first, then registration order). Woken futures read the new time.
    pub fn advance(&self, by: Duration) {
        let now = self.inner.lock().now;
        self.advance_to(add_saturating(now, by));
    }

    /// Moves time forward to `instant` and wakes every timer now due, in order. Time
    /// never goes backwards: an `instant` before the current time changes nothing.
    pub fn advance_to(&self, instant: DateTime<Utc>) {
        let due = {
            let mut state = self.inner.lock();
            if instant <= state.now {
                return;
            }
            state.now = instant;
            let mut due = Vec::new();
            while let Some(entry) = state.timers.first_entry() {
                if entry.key().0 > instant {
                    break;
                }
                due.push(entry.remove());
            }
            due
        };
        for waker in due.into_iter().flatten() {
            waker.wake();
        }
    }

    /// The deadline of the earliest live timer: one whose [`Sleep`] has neither fired nor
    /// been dropped.
    #[must_use]
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        self.inner
            .lock()
            .timers
            .first_key_value()
            .map(|(key, _)| key.0)
    }

    /// How many timers are live: sleeps created, not yet due, and not dropped.
    #[must_use]
    pub fn pending_timers(&self) -> usize {
        self.inner.lock().timers.len()
    }

    /// Drives `future` to completion on the current thread, advancing time by itself.
    ///
    /// Whenever the future is pending and nothing has woken it, jumps the clock to the
    /// next live timer and fires it; so a simulated hour takes microseconds. If no timer
    /// is pending and nothing woke the future, parks the thread until something does
    /// (e.g. another thread approving a step).
    ///
    /// # Panics
    /// If `future` panics.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let mut future = pin!(future);
        let driver = Driver::new();
        loop {
            match driver.run(self, future.as_mut()) {
                Poll::Ready(output) => return output,
                Poll::Pending => driver.park(),
            }
        }
    }

    /// Like [`block_on`](Self::block_on), but returns [`Poll::Pending`] instead of parking
    /// when the future is stalled (pending, not woken, no live timers): lets tests assert
    /// that a run is waiting (e.g. for a human). Call again to resume.
    pub fn run_until_stalled<F: Future + Unpin>(&self, future: &mut F) -> Poll<F::Output> {
        Driver::new().run(self, Pin::new(future))
    }

    /// Whether work outside the clock is held ([`Clock::hold`]).
    fn is_held(&self) -> bool {
        self.inner.lock().holds > 0
    }

    /// Fires the earliest live timer (and any others with the same deadline). Returns
    /// whether there was one.
    fn fire_next(&self) -> bool {
        match self.next_deadline() {
            Some(deadline) => {
                self.advance_to(deadline);
                true
            }
            None => false,
        }
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> DateTime<Utc> {
        self.inner.lock().now
    }

    fn hold(&self) -> Hold {
        self.inner.lock().holds += 1;
        let shared = Arc::clone(&self.inner);
        Hold::on_release(move || {
            let mut state = shared.lock();
            state.holds = state.holds.saturating_sub(1);
        })
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep {
        let mut state = self.inner.lock();
        let key = (deadline > state.now).then(|| {
            let key = (deadline, state.next_seq);
            state.next_seq += 1;
            state.timers.insert(key, None);
            key
        });
        drop(state);
        Box::pin(VirtualSleep {
            clock: Arc::clone(&self.inner),
            key,
        })
    }
}

impl fmt::Debug for VirtualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (now, pending) = {
            let state = self.inner.lock();
            (state.now, state.timers.len())
        };
        f.debug_struct("VirtualClock")
            .field("now", &now)
            .field("pending_timers", &pending)
            .finish()
    }
}

/// A sleep on a [`VirtualClock`]: its timer is registered from creation until it fires
/// or the sleep is dropped.
struct VirtualSleep {
    clock: Arc<Shared>,
    /// The timer's key; `None` once the sleep is known to be over.
    key: Option<(DateTime<Utc>, Seq)>,
}

impl Future for VirtualSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(key) = self.key else {
            return Poll::Ready(());
        };
        let mut state = self.clock.lock();
        if state.now >= key.0 {
            debug_assert!(!state.timers.contains_key(&key), "a due timer is removed");
            drop(state);
            self.key = None;
            return Poll::Ready(());
        }
        let slot = state.timers.entry(key).or_insert(None);
        let stale = match slot {
            Some(waker) if waker.will_wake(cx.waker()) => None,
            _ => slot.replace(cx.waker().clone()),
        };
        drop(state);
        // Dropping a waker may drop a task, and with it sleeps that take the lock.
        drop(stale);
        Poll::Pending
    }
}

impl Drop for VirtualSleep {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            let removed = self.clock.lock().timers.remove(&key);
            drop(removed);
        }
    }
}

/// The waker of `block_on`: a flag saying "poll again", and the thread to unpark.
struct Signal {
    woken: AtomicBool,
    thread: Thread,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// Polls one future on the current thread for [`VirtualClock::block_on`] and
/// [`VirtualClock::run_until_stalled`].
struct Driver {
    signal: Arc<Signal>,
    waker: Waker,
}

impl Driver {
    fn new() -> Self {
        let signal = Arc::new(Signal {
            woken: AtomicBool::new(false),
            thread: thread::current(),
        });
        let waker = Waker::from(Arc::clone(&signal));
        Self { signal, waker }
    }

    /// Polls `future` until it is ready or stalled: pending, not woken, no live timers.
    fn run<F: Future + ?Sized>(
        &self,
        clock: &VirtualClock,
        mut future: Pin<&mut F>,
    ) -> Poll<F::Output> {
        let mut cx = Context::from_waker(&self.waker);
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return Poll::Ready(output);
            }
            // Poll again only when woken (while polling, or by a timer fired here); a
            // timer the future does not wait on just moves time on to the next one.
            // While work outside the clock is held, wait for it instead: it wakes the
            // future when it is done (re-checked every millisecond, in case a hold ends
            // without a wake-up).
            while !self.signal.woken.swap(false, Ordering::Acquire) {
                if clock.is_held() {
                    thread::park_timeout(Duration::from_millis(1));
                    continue;
                }
                if !clock.fire_next() {
                    return Poll::Pending;
                }
            }
        }
    }

    /// Parks the thread until the waker is woken.
    fn park(&self) {
        while !self.signal.woken.swap(false, Ordering::Acquire) {
            thread::park();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use chrono::TimeZone;
    use futures::task::noop_waker;

    use super::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap()
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Counter {
        fn count(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    fn poll(sleep: &mut Sleep, waker: &Waker) -> Poll<()> {
        sleep.as_mut().poll(&mut Context::from_waker(waker))
    }

    fn _object_safe(_: &dyn Clock) {}

    #[test]
    fn clocks_are_send_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<VirtualClock>();
        assert_send_sync::<SystemClock>();
        fn assert_send<T: Send + 'static>() {}
        assert_send::<Sleep>();
        assert_send_sync::<Arc<dyn Clock>>();
    }

    #[test]
    fn a_sleep_registers_when_created_and_unregisters_when_dropped() {
        let clock = VirtualClock::starting_at(t0());
        let a = clock.sleep(secs(5));
        let b = clock.sleep(secs(2));
        assert_eq!(clock.pending_timers(), 2);
        assert_eq!(clock.next_deadline(), Some(t0() + secs(2)));
        drop(b);
        assert_eq!(clock.pending_timers(), 1);
        assert_eq!(clock.next_deadline(), Some(t0() + secs(5)));
        drop(a);
        assert_eq!(clock.pending_timers(), 0);
        assert_eq!(clock.next_deadline(), None);
    }

    #[test]
    fn a_deadline_already_passed_is_ready_without_a_timer() {
        let clock = VirtualClock::starting_at(t0());
        let mut now = clock.sleep_until(t0());
        let mut past = clock.sleep_until(t0() - secs(1));
        let mut zero = clock.sleep(Duration::ZERO);
        assert_eq!(clock.pending_timers(), 0);
        let waker = noop_waker();
        assert!(poll(&mut now, &waker).is_ready());
        assert!(poll(&mut past, &waker).is_ready());
        assert!(poll(&mut zero, &waker).is_ready());
    }

    #[test]
    fn advance_wakes_due_timers_only_and_they_read_the_new_time() {
        let clock = VirtualClock::starting_at(t0());
        let counter = Arc::new(Counter::default());
        let waker = Waker::from(Arc::clone(&counter));
        let mut early = clock.sleep(secs(1));
        let mut late = clock.sleep(secs(10));
        assert!(poll(&mut early, &waker).is_pending());
        assert!(poll(&mut late, &waker).is_pending());

        clock.advance(secs(3));
        assert_eq!(counter.count(), 1);
        assert_eq!(clock.now(), t0() + secs(3));
        assert!(poll(&mut early, &waker).is_ready());
        assert!(poll(&mut late, &waker).is_pending());
        assert_eq!(clock.pending_timers(), 1);
    }

    #[test]
    fn equal_deadlines_wake_in_registration_order() {
        let clock = VirtualClock::starting_at(t0());
        let order = Arc::new(Mutex::new(Vec::new()));
        struct Named(usize, Arc<Mutex<Vec<usize>>>);
        impl Wake for Named {
            fn wake(self: Arc<Self>) {
                self.1.lock().unwrap().push(self.0);
            }
        }
        let mut sleeps: Vec<Sleep> = Vec::new();
        // Registration order 0..6; deadlines 2, 1, 2, 1, 2, 1.
        for name in 0..6 {
            let mut sleep = clock.sleep(secs(if name % 2 == 0 { 2 } else { 1 }));
            let waker = Waker::from(Arc::new(Named(name, Arc::clone(&order))));
            assert!(poll(&mut sleep, &waker).is_pending());
            sleeps.push(sleep);
        }
        clock.advance(secs(2));
        assert_eq!(*order.lock().unwrap(), [1, 3, 5, 0, 2, 4]);
    }

    #[test]
    fn polling_with_another_waker_replaces_the_stale_one() {
        let clock = VirtualClock::starting_at(t0());
        let first = Arc::new(Counter::default());
        let second = Arc::new(Counter::default());
        let mut sleep = clock.sleep(secs(1));
        assert!(poll(&mut sleep, &Waker::from(Arc::clone(&first))).is_pending());
        assert!(poll(&mut sleep, &Waker::from(Arc::clone(&second))).is_pending());
        // The stale waker was released, not kept alongside the new one.
        assert_eq!(Arc::strong_count(&first), 1);
        clock.advance(secs(1));
        assert_eq!((first.count(), second.count()), (0, 1));
    }

    #[test]
    fn time_never_goes_backwards() {
        let clock = VirtualClock::starting_at(t0());
        clock.advance_to(t0() + secs(10));
        clock.advance_to(t0());
        assert_eq!(clock.now(), t0() + secs(10));
        clock.advance(Duration::ZERO);
        assert_eq!(clock.now(), t0() + secs(10));
    }

    #[test]
    fn huge_durations_saturate() {
        let clock = VirtualClock::starting_at(t0());
        let _forever = clock.sleep(Duration::MAX);
        assert_eq!(clock.next_deadline(), Some(DateTime::<Utc>::MAX_UTC));
        clock.advance(Duration::MAX);
        assert_eq!(clock.now(), DateTime::<Utc>::MAX_UTC);
        assert_eq!(clock.pending_timers(), 0);
    }

    #[test]
    fn adding_a_duration_saturates_at_the_latest_time() {
        let max = DateTime::<Utc>::MAX_UTC;
        let century = Duration::from_millis(3_155_760_000_000);
        assert_eq!(add_saturating(t0(), secs(90)), t0() + secs(90));
        assert_eq!(add_saturating(t0(), Duration::ZERO), t0());
        assert_eq!(add_saturating(t0(), century), t0() + century);
        assert_eq!(checked_add(t0(), century), Some(t0() + century));
        // Past chrono's last year, and longer than a `TimeDelta`: the latest time.
        let near_the_end = max - secs(1);
        assert_eq!(add_saturating(near_the_end, secs(1)), max);
        assert_eq!(add_saturating(near_the_end, century), max);
        assert_eq!(add_saturating(t0(), Duration::MAX), max);
        assert_eq!(add_saturating(max, secs(1)), max);
        assert_eq!(checked_add(near_the_end, century), None);
        assert_eq!(checked_add(t0(), Duration::MAX), None);
        // Time before the common era adds as well.
        let min = DateTime::<Utc>::MIN_UTC;
        assert_eq!(add_saturating(min, century), min + century);
    }

    #[test]
    fn clones_and_wrappers_share_one_clock() {
        let clock = VirtualClock::starting_at(t0());
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        let boxed: Box<dyn Clock> = Box::new(clock.clone());
        let _a = shared.sleep(secs(1));
        let _b = boxed.sleep_until(t0() + secs(2));
        assert_eq!(clock.pending_timers(), 2);
        clock.advance(secs(5));
        assert_eq!(shared.now(), t0() + secs(5));
        assert_eq!(boxed.now(), t0() + secs(5));
    }

    #[test]
    fn block_on_fires_timers_the_future_holds_but_has_not_polled() {
        let clock = VirtualClock::starting_at(t0());
        let held = clock.sleep(secs(30));
        let now = clock.block_on({
            let clock = clock.clone();
            async move {
                clock.sleep(secs(60)).await;
                drop(held);
                clock.now()
            }
        });
        assert_eq!(now, t0() + secs(60));
        assert_eq!(clock.pending_timers(), 0);
    }

    #[test]
    fn debug_shows_time_and_pending_timers() {
        let clock = VirtualClock::starting_at(t0());
        let _sleep = clock.sleep(secs(1));
        let text = format!("{clock:?}");
        assert!(text.contains("2026-01-05T09:00:00Z"), "{text}");
        assert!(text.contains("pending_timers: 1"), "{text}");
    }
}
