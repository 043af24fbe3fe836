//! [`StallDetectingClock`]: the real time, and a driver that tells a future waiting for
//! time from one waiting for nothing that can ever come.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::thread;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Clock, Driver, Hold, Sleep, SystemClock};

/// The real time of [`SystemClock`], counting the sleeps that are not over (and the
/// [holds](Clock::hold) on work outside the clock), so that
/// [`run_until_stalled`](Self::run_until_stalled) can tell a future that waits for time
/// from one that waits for nothing that can ever come.
///
/// A host that drives a run on the real clock on its own thread (the `tradeflow run`
/// command does) has no other way to see that a run is stuck: a step waiting for an
/// approval nobody will give looks, from outside, like a step waiting for a slow agent.
/// With this clock, the run is stalled when it was not woken since it was last polled
/// and no sleep of the clock is pending: every timer that could wake it is gone.
///
/// Clones share one count. A sleep counts from when it is created until it completes or
/// is dropped, so a timeout that lost its race stops counting when its future is
/// dropped.
///
/// # Examples
/// A future that waits on a channel nobody sends to is reported as stalled, once the
/// sleep before it is over:
/// ```
/// use std::task::Poll;
/// use std::time::Duration;
/// use futures::channel::oneshot;
/// use tradeflow::clock::{Clock, StallDetectingClock};
///
/// let clock = StallDetectingClock::new();
/// let (_never_sent, answer) = oneshot::channel::<()>();
/// let mut waiting = Box::pin({
///     let clock = clock.clone();
///     async move {
///         clock.sleep(Duration::from_millis(2)).await;
///         answer.await
///     }
/// });
/// assert!(clock.run_until_stalled(&mut waiting).is_pending());
/// assert_eq!(clock.pending_sleeps(), 0);
///
/// // A future that only waits for time completes.
/// let mut nap = clock.sleep(Duration::from_millis(1));
/// assert_eq!(clock.run_until_stalled(&mut nap), Poll::Ready(()));
/// ```
#[derive(Debug, Clone, Default)]
pub struct StallDetectingClock {
    /// Sleeps created and neither completed nor dropped.
    sleeping: Arc<AtomicUsize>,
}

impl StallDetectingClock {
    /// A clock with no sleep pending.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// How many sleeps of this clock (and its clones) are pending: created, and neither
    /// completed nor dropped.
    #[must_use]
    pub fn pending_sleeps(&self) -> usize {
        self.sleeping.load(Ordering::SeqCst)
    }

    /// Drives `future` on the current thread until it completes ([`Poll::Ready`]) or
    /// stalls ([`Poll::Pending`]): it was not woken since it was last polled and no sleep
    /// of this clock is pending. Between polls the thread parks until the future is
    /// woken.
    ///
    /// Stalled is final only when everything the future waits for is driven by this
    /// thread or by this clock's sleeps (an engine, scripted agents and a
    /// [`ScriptedApprover`](crate::sim::ScriptedApprover) on this clock are): a future
    /// that waits for another thread with no sleep pending is reported as stalled too.
    /// The future can be polled again after `Pending`.
    ///
    /// # Panics
    /// If `future` panics.
    pub fn run_until_stalled<F: Future + Unpin>(&self, future: &mut F) -> Poll<F::Output> {
        let driver = Driver::new();
        let mut cx = Context::from_waker(&driver.waker);
        loop {
            if let Poll::Ready(output) = Pin::new(&mut *future).poll(&mut cx) {
                return Poll::Ready(output);
            }
            // A sleep stops counting only when it is polled or dropped, both on this
            // thread: with none counted, no timer thread can wake the future any more.
            while !driver.signal.woken.swap(false, Ordering::Acquire) {
                if self.pending_sleeps() == 0 {
                    return Poll::Pending;
                }
                thread::park();
            }
        }
    }

    /// `sleep`, counted from now (not from its first poll) until it is over or dropped.
    fn counted(&self, sleep: Sleep) -> Sleep {
        self.sleeping.fetch_add(1, Ordering::SeqCst);
        let counted = Counted(Arc::clone(&self.sleeping));
        Box::pin(async move {
            sleep.await;
            drop(counted);
        })
    }
}

impl Clock for StallDetectingClock {
    fn now(&self) -> DateTime<Utc> {
        SystemClock.now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep {
        self.counted(SystemClock.sleep_until(deadline))
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        self.counted(SystemClock.sleep(duration))
    }

    /// Work outside the clock (a journal append on the engine's writer thread) counts as
    /// a pending sleep: it wakes the future when it is done, so a future waiting for it
    /// is not stalled.
    fn hold(&self) -> Hold {
        self.sleeping.fetch_add(1, Ordering::SeqCst);
        let counted = Counted(Arc::clone(&self.sleeping));
        Hold::on_release(move || drop(counted))
    }
}

/// One pending sleep of a [`StallDetectingClock`]: uncounted when dropped.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use futures::channel::oneshot;
    use futures::future::{self, Either};

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_future_that_completes_is_ready() {
        let clock = StallDetectingClock::new();
        let mut ready = future::ready(7);
        assert_eq!(clock.run_until_stalled(&mut ready), Poll::Ready(7));
    }

    #[test]
    fn a_future_waiting_on_a_sleep_completes_after_it() {
        let clock = StallDetectingClock::new();
        let started = Instant::now();
        let mut napping = Box::pin({
            let clock = clock.clone();
            async move {
                clock.sleep(ms(5)).await;
                clock.sleep_until(clock.now() + ms(5)).await;
                "rested"
            }
        });
        assert_eq!(clock.run_until_stalled(&mut napping), Poll::Ready("rested"));
        assert!(started.elapsed() >= ms(10));
        assert_eq!(clock.pending_sleeps(), 0);
    }

    #[test]
    fn a_future_waiting_on_a_channel_nobody_sends_to_stalls() {
        let clock = StallDetectingClock::new();
        let (sender, mut never) = oneshot::channel::<()>();
        assert!(clock.run_until_stalled(&mut never).is_pending());
        // Still waiting: polling it again after a send completes it.
        sender.send(()).ok();
        assert_eq!(clock.run_until_stalled(&mut never), Poll::Ready(Ok(())));
    }

    #[test]
    fn a_sleep_counts_until_it_is_over_or_dropped() {
        let clock = StallDetectingClock::new();
        let (_sender, never) = oneshot::channel::<()>();
        let mut raced = future::select(clock.sleep(ms(1)), never);
        assert_eq!(clock.pending_sleeps(), 1);
        let won = clock.run_until_stalled(&mut raced);
        assert!(matches!(won, Poll::Ready(Either::Left(_))));
        assert_eq!(clock.pending_sleeps(), 0);
        let dropped = clock.sleep(Duration::from_secs(3600));
        assert_eq!(clock.pending_sleeps(), 1);
        drop(dropped);
        assert_eq!(clock.pending_sleeps(), 0);
    }

    #[test]
    fn clones_share_one_count() {
        let clock = StallDetectingClock::new();
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        let _sleep = shared.sleep(Duration::from_secs(3600));
        assert_eq!(clock.pending_sleeps(), 1);
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<StallDetectingClock>();
    }
}
