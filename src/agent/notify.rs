//! Wake-ups for callers waiting for agent capacity, runtime-free: a broadcast that
//! completes every [`CapacityChanged`] future on any change, and a fair line of
//! [`Turn`]s for [`AgentRegistry::acquire`](super::AgentRegistry::acquire), in which a
//! freed slot wakes one caller.
//!
//! # The line
//! A caller that finds every eligible agent busy takes a place in line: a key from a
//! counter, kept from the first time it waits until it is served, so waiting callers are
//! served first come, first served. Each waits with what it can use ([`Wants`]: its
//! eligible agents, and whether all of them are unhealthy, which opens unhealthy agents
//! to it); callers with equal wants (the items of one `parallel` step, say) share one
//! class, a queue in key order.
//!
//! - **A slot freed** on agent X wakes one turn: the first in line among the classes X
//!   can serve. The turn carries X (its *grant*) and selects again. X's free slots that
//!   woken turns are about to take are not granted twice, so a freed slot costs about
//!   one selection, however many wait.
//! - **A grant is never lost.** When the woken caller has selected (it may have chosen
//!   another agent, or found none it may use) or is dropped, its grant is settled: if X
//!   still has a free slot no other woken turn is about to take, it goes to the next turn
//!   in line X can serve.
//! - **A change of the registry** (an agent registered or deregistered, a health
//!   changed, a circuit breaker opened, closed or its probe given up) wakes every turn:
//!   what each can use may have changed. These are rare.
//! - **A slot freed on an agent whose circuit breaker is open** wakes no one. A caller
//!   waiting for a breaker to turn half open waits with a timer beside its turn (in
//!   [`AgentRegistry::acquire`](super::AgentRegistry::acquire)); when the timer ends
//!   first, it leaves the line keeping its key ([`Turn::leave`]), so it keeps its place.
//! - **A slot freed while a caller selects** is not missed: a generation counter moves on
//!   every change, the caller reads it before selecting, and joins the line only if it
//!   has not moved since; otherwise it selects again at once.
//!
//! A caller that selects without waiting (a newcomer, or [`AgentRegistry::select`]) may
//! take a free slot before a woken turn selects; the turn then keeps its place in line.
//!
//! # Cost, and why classes
//! A freed slot costs O(k) for the k classes waiting (usually one or two) plus O(log w)
//! for the w turns in line; a turn costs a few words while it waits. A change of the
//! registry wakes every turn, O(w). One plain queue would be cheaper still, but callers
//! wanting different agents (other capabilities, other exclusions) share a registry: the
//! head of one queue may be unable to use the slot just freed, and the wake-up would then
//! be lost, or passed along every such caller. Within a class, every turn can use the
//! same slots, so only the heads need looking at.
//!
//! [`AgentRegistry::select`]: super::AgentRegistry::select

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use super::registry::Entry;

/// The registry's wake-ups: the broadcast and the line, under one lock, so that one
/// generation orders both against selections.
#[derive(Default)]
pub(crate) struct Notify {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Moves on every change: a slot freed, an agent registered or deregistered, a
    /// health changed.
    generation: u64,
    /// The last key handed out (to listeners and turns alike).
    next_key: u64,
    /// Pending [`CapacityChanged`] futures, completed together.
    listeners: BTreeMap<u64, Waker>,
    /// Turns in line, by what they can use.
    classes: Vec<Class>,
    /// Turns woken and not yet polled, with the agent each was woken for (none: woken by
    /// a change of the registry).
    woken: HashMap<u64, Option<Arc<Entry>>>,
    /// Grants not yet settled, by agent serial: slots some woken turn is about to take.
    granted: HashMap<u64, u32>,
}

/// Turns in line with the same wants, by key.
struct Class {
    wants: Wants,
    waiting: BTreeMap<u64, Waker>,
}

/// What a waiting caller can use: the serial numbers of its eligible agents, and
/// whether every one of them is unhealthy (then unhealthy agents are open to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wants {
    agents: Vec<u64>,
    only_unhealthy: bool,
}

impl Wants {
    /// The wants of a caller whose eligible agents have these serial numbers.
    pub(crate) fn new(mut agents: Vec<u64>, only_unhealthy: bool) -> Self {
        agents.sort_unstable();
        Self {
            agents,
            only_unhealthy,
        }
    }

    /// Whether a free slot on agent `serial` (`unhealthy` or not) is open to the caller.
    fn accepts(&self, serial: u64, unhealthy: bool) -> bool {
        (!unhealthy || self.only_unhealthy) && self.agents.binary_search(&serial).is_ok()
    }
}

impl Notify {
    fn state(&self) -> MutexGuard<'_, State> {
        // Every update is a few map operations that cannot panic halfway, so a poisoned
        // lock still holds a consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The generation now: read it before selecting, and pass it to [`Turn::wait`].
    pub(crate) fn generation(&self) -> u64 {
        self.state().generation
    }

    /// The registry changed: completes every [`CapacityChanged`] and wakes every turn.
    pub(crate) fn notify_all(&self) {
        let wakers: Vec<Waker> = {
            let mut state = self.state();
            state.generation = state.generation.wrapping_add(1);
            let classes = std::mem::take(&mut state.classes);
            let mut wakers: Vec<Waker> =
                std::mem::take(&mut state.listeners).into_values().collect();
            for (key, waker) in classes.into_iter().flat_map(|class| class.waiting) {
                state.woken.insert(key, None);
                wakers.push(waker);
            }
            wakers
        };
        // Woken outside the lock: a waker may run its task inline.
        wakers.into_iter().for_each(Waker::wake);
    }

    /// A slot was freed on `entry`: completes every [`CapacityChanged`] and wakes the
    /// first turn in line that `entry` can serve.
    pub(crate) fn released(&self, entry: &Arc<Entry>) {
        let (listeners, turn) = {
            let mut state = self.state();
            state.generation = state.generation.wrapping_add(1);
            let listeners = std::mem::take(&mut state.listeners);
            (listeners, state.grant(entry))
        };
        listeners.into_values().chain(turn).for_each(Waker::wake);
    }

    /// Whether no caller is in line at all (cheap: one lock, no agent looked at).
    pub(crate) fn nobody_waiting(&self) -> bool {
        self.state()
            .classes
            .iter()
            .all(|class| class.waiting.is_empty())
    }

    /// How many callers are in line for any of the agents with these serial numbers
    /// (callers woken and selecting again are not counted).
    pub(crate) fn waiting_for(&self, serials: &[u64]) -> usize {
        let state = self.state();
        state
            .classes
            .iter()
            .filter(|class| class.wants.agents.iter().any(|s| serials.contains(s)))
            .map(|class| class.waiting.len())
            .sum()
    }

    /// A future that completes at the next change.
    pub(crate) fn listen(self: &Arc<Self>) -> CapacityChanged {
        CapacityChanged {
            seen: self.state().generation,
            notify: Arc::clone(self),
            key: None,
        }
    }

    /// A place in line for one caller, taken the first time it waits.
    pub(crate) fn turn(self: &Arc<Self>) -> Turn {
        Turn {
            notify: Arc::clone(self),
            key: None,
            grant: None,
        }
    }
}

impl State {
    /// Wakes the first turn in line that `entry` can serve, if `entry` has a free slot
    /// that no woken turn is about to take; the turn carries `entry` as its grant.
    /// Returns the waker, to wake once unlocked.
    fn grant(&mut self, entry: &Arc<Entry>) -> Option<Waker> {
        if self.classes.is_empty() {
            return None;
        }
        let serial = entry.serial();
        let granted = self.granted.get(&serial).copied().unwrap_or(0);
        // An agent whose breaker is open takes no call: no one is woken for it (callers
        // waiting for it to turn half open have timers of their own).
        if entry.free_slots() <= granted || entry.is_blocking() {
            return None;
        }
        let unhealthy = entry.is_unhealthy();
        let (index, key) = self
            .classes
            .iter()
            .enumerate()
            .filter(|(_, class)| class.wants.accepts(serial, unhealthy))
            .filter_map(|(index, class)| Some((index, *class.waiting.keys().next()?)))
            .min_by_key(|&(_, key)| key)?;
        let class = self.classes.get_mut(index)?;
        let waker = class.waiting.remove(&key)?;
        if class.waiting.is_empty() {
            self.classes.swap_remove(index);
        }
        self.woken.insert(key, Some(Arc::clone(entry)));
        *self.granted.entry(serial).or_default() += 1;
        Some(waker)
    }

    /// A woken turn is done with its `grant` (it selected, or was dropped): a slot still
    /// free on that agent goes to the next turn in line it can serve.
    fn settle(&mut self, grant: &Arc<Entry>) -> Option<Waker> {
        let serial = grant.serial();
        if let Some(granted) = self.granted.get_mut(&serial) {
            *granted = granted.saturating_sub(1);
            if *granted == 0 {
                self.granted.remove(&serial);
            }
        }
        self.grant(grant)
    }

    /// Puts turn `key` in line with what it `wants`.
    fn enqueue(&mut self, key: u64, wants: Wants, waker: Waker) {
        debug_assert!(self.waker_of(key).is_none(), "a turn is in line once");
        match self.classes.iter_mut().find(|class| class.wants == wants) {
            Some(class) => {
                class.waiting.insert(key, waker);
            }
            None => self.classes.push(Class {
                wants,
                waiting: BTreeMap::from([(key, waker)]),
            }),
        }
    }

    /// The waker of turn `key`, if it is in line.
    fn waker_of(&mut self, key: u64) -> Option<&mut Waker> {
        self.classes
            .iter_mut()
            .find_map(|class| class.waiting.get_mut(&key))
    }

    /// Takes turn `key` out of line, if it is in it; returns its waker.
    fn dequeue(&mut self, key: u64) -> Option<Waker> {
        let (index, waker) = self
            .classes
            .iter_mut()
            .enumerate()
            .find_map(|(index, class)| Some((index, class.waiting.remove(&key)?)))?;
        if self
            .classes
            .get(index)
            .is_some_and(|class| class.waiting.is_empty())
        {
            self.classes.swap_remove(index);
        }
        Some(waker)
    }
}

/// One caller's place in line for capacity (see the [module documentation](self)).
///
/// Dropping it leaves the line, and passes on a wake-up it received and did not use.
pub(crate) struct Turn {
    notify: Arc<Notify>,
    /// Its place in line, from the first time it waited.
    key: Option<u64>,
    /// The agent it was last woken for, while it selects: passed on if still free.
    grant: Option<Arc<Entry>>,
}

impl fmt::Debug for Turn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Turn")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Turn {
    /// Waits in line with `wants` until woken, or returns at once if anything changed
    /// since generation `seen` (the caller then selects again). A grant it still holds
    /// is passed on first: the caller could not use it.
    pub(crate) fn wait(&mut self, seen: u64, wants: Wants) -> Wait<'_> {
        Wait {
            turn: self,
            seen,
            wants: Some(wants),
        }
    }
}

impl Turn {
    /// Leaves the line without being woken (the caller's timer ended the wait): it
    /// keeps its key, and so its place when it waits again; a wake-up it received
    /// meanwhile becomes its grant, passed on at its next wait or when it is dropped.
    pub(crate) fn leave(&mut self) {
        let Some(key) = self.key else {
            return;
        };
        let (waker, woken) = {
            let mut state = self.notify.state();
            (state.dequeue(key), state.woken.remove(&key).flatten())
        };
        drop(waker);
        if woken.is_some() {
            debug_assert!(self.grant.is_none(), "a turn in line holds no grant");
            self.grant = woken;
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if self.key.is_none() && self.grant.is_none() {
            return;
        }
        let held = self.grant.take();
        let (waker, woken, passed) = {
            let mut state = self.notify.state();
            let (waker, woken) = match self.key {
                Some(key) => (state.dequeue(key), state.woken.remove(&key).flatten()),
                None => (None, None),
            };
            let passed: Vec<Waker> = [&held, &woken]
                .into_iter()
                .flatten()
                .filter_map(|grant| state.settle(grant))
                .collect();
            (waker, woken, passed)
        };
        // Dropped and woken outside the lock: dropping the last handle on an agent runs
        // the host's code, and a waker may run its task inline.
        drop((waker, woken, held));
        passed.into_iter().for_each(Waker::wake);
    }
}

/// The future of [`Turn::wait`].
#[must_use = "futures do nothing unless polled"]
pub(crate) struct Wait<'a> {
    turn: &'a mut Turn,
    seen: u64,
    /// Until the turn is in line.
    wants: Option<Wants>,
}

impl fmt::Debug for Wait<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wait")
            .field("turn", &self.turn)
            .finish_non_exhaustive()
    }
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let turn = &mut *this.turn;
        let mut state = turn.notify.state();
        let Some(wants) = this.wants.take() else {
            // In line: woken, or polled for another reason.
            let Some(key) = turn.key else {
                return Poll::Ready(());
            };
            if let Some(grant) = state.woken.remove(&key) {
                turn.grant = grant;
                return Poll::Ready(());
            }
            return match state.waker_of(key) {
                Some(waker) => {
                    waker.clone_from(cx.waker());
                    Poll::Pending
                }
                // Neither in line nor woken cannot happen; selecting again is safe.
                None => Poll::Ready(()),
            };
        };
        if state.generation != this.seen {
            return Poll::Ready(());
        }
        // The caller could not use what it was woken for: it goes on.
        let grant = turn.grant.take();
        let passed = grant.as_ref().and_then(|grant| state.settle(grant));
        let key = *turn.key.get_or_insert_with(|| {
            state.next_key = state.next_key.wrapping_add(1);
            state.next_key
        });
        state.enqueue(key, wants, cx.waker().clone());
        drop(state);
        drop(grant);
        if let Some(waker) = passed {
            waker.wake();
        }
        Poll::Pending
    }
}

/// Completes the next time an [`AgentRegistry`](super::AgentRegistry) frees capacity or
/// changes which agents can be selected; returned by
/// [`AgentRegistry::capacity_changed`](super::AgentRegistry::capacity_changed).
///
/// Every pending future completes on every change (a broadcast), so many callers each
/// awaiting one and selecting again cost O(callers) per freed slot;
/// [`AgentRegistry::acquire`](super::AgentRegistry::acquire) wakes one caller instead.
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
                state.listeners.remove(&key);
            }
            return Poll::Ready(());
        }
        let key = *this.key.get_or_insert_with(|| {
            state.next_key = state.next_key.wrapping_add(1);
            state.next_key
        });
        state.listeners.insert(key, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for CapacityChanged {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.notify.state().listeners.remove(&key);
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
        assert_eq!(notify.state().listeners.len(), 1);
        drop(waiting);
        assert!(notify.state().listeners.is_empty());
    }

    fn wants(agents: &[u64]) -> Wants {
        Wants::new(agents.to_vec(), false)
    }

    #[test]
    fn a_turn_that_saw_a_change_does_not_wait() {
        let notify = Arc::new(Notify::default());
        let mut turn = notify.turn();
        let seen = notify.generation();
        notify.notify_all();
        assert_eq!(turn.wait(seen, wants(&[1])).now_or_never(), Some(()));
        assert!(notify.state().classes.is_empty());
    }

    #[test]
    fn turns_with_equal_wants_share_a_class_and_leave_it_when_dropped() {
        let notify = Arc::new(Notify::default());
        let mut cx = Context::from_waker(Waker::noop());
        let mut turns: Vec<Turn> = (0..3).map(|_| notify.turn()).collect();
        for (turn, agents) in turns.iter_mut().zip([&[2, 1][..], &[1, 2], &[3]]) {
            let seen = notify.generation();
            let mut wait = turn.wait(seen, wants(agents));
            assert!(Pin::new(&mut wait).poll(&mut cx).is_pending());
        }
        assert_eq!(notify.state().classes.len(), 2);
        drop(turns.pop());
        assert_eq!(notify.state().classes.len(), 1);
        // A change of the registry wakes every turn; dropping a woken one leaves nothing.
        notify.notify_all();
        assert_eq!(notify.state().woken.len(), 2);
        drop(turns);
        let state = notify.state();
        assert!(state.classes.is_empty() && state.woken.is_empty());
    }
}
