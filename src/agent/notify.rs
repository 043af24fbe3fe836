//! A runtime-free broadcast: futures that complete the next time something changes.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// Wakes every waiting [`CapacityChanged`] future. A generation counter makes a wake-up
/// impossible to miss: a future completes once the generation differs from the one it
/// was created with, whether or not it was polled in between.
#[derive(Debug, Default)]
pub(crate) struct Notify {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    generation: u64,
    next_key: u64,
    wakers: BTreeMap<u64, Waker>,
}

impl Notify {
    fn state(&self) -> MutexGuard<'_, State> {
        // The state is updated by single assignments; a panic elsewhere cannot leave it
        // half-written, so a poisoned lock is still sound to use.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Completes every future created before this call.
    pub(crate) fn notify_all(&self) {
        let wakers = {
            let mut state = self.state();
            state.generation = state.generation.wrapping_add(1);
            std::mem::take(&mut state.wakers)
        };
        // Woken outside the lock: a waker may run the task inline.
        for waker in wakers.into_values() {
            waker.wake();
        }
    }

    /// A future that completes at the next `notify_all`.
    pub(crate) fn listen(self: &Arc<Self>) -> CapacityChanged {
        CapacityChanged {
            seen: self.state().generation,
            notify: Arc::clone(self),
            key: None,
        }
    }
}

/// Completes the next time an [`AgentRegistry`](super::AgentRegistry) frees capacity or
/// changes which agents can be selected; returned by
/// [`AgentRegistry::capacity_changed`](super::AgentRegistry::capacity_changed).
///
/// The future is armed when it is created, not when it is first polled: a change between
/// the two completes it. `Send`, `'static`, and needs no runtime.
#[must_use = "futures do nothing unless polled"]
pub struct CapacityChanged {
    notify: Arc<Notify>,
    seen: u64,
    key: Option<u64>,
}

impl fmt::Debug for CapacityChanged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CapacityChanged")
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

impl Future for CapacityChanged {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut state = this.notify.state();
        if state.generation != this.seen {
            if let Some(key) = this.key.take() {
                state.wakers.remove(&key);
            }
            return Poll::Ready(());
        }
        let key = *this.key.get_or_insert_with(|| {
            state.next_key += 1;
            state.next_key
        });
        state.wakers.insert(key, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for CapacityChanged {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.notify.state().wakers.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use futures::FutureExt;

    use super::*;

    #[test]
    fn completes_after_notify_even_if_not_polled_before() {
        let notify = Arc::new(Notify::default());
        let mut early = notify.listen();
        assert_eq!((&mut early).now_or_never(), None);
        let unpolled = notify.listen();
        notify.notify_all();
        assert_eq!(early.now_or_never(), Some(()));
        assert_eq!(unpolled.now_or_never(), Some(()));
        // A future created after the change waits for the next one.
        assert_eq!(notify.listen().now_or_never(), None);
    }

    #[test]
    fn dropped_futures_leave_no_waker_behind() {
        let notify = Arc::new(Notify::default());
        let mut waiting = notify.listen();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut waiting).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut waiting).poll(&mut cx).is_pending());
        assert_eq!(notify.state().wakers.len(), 1);
        drop(waiting);
        assert!(notify.state().wakers.is_empty());
    }
}
