//! `PriorityResourceManager`: whole grants, served by (priority, arrival), strict by
//! default, with a bounded backfill.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use super::manager::{AllocationGuard, KindUsage, Optimization, ResourceManager, ResourceUsage};
use super::{ResourceError, ResourceKind, ResourcePool, ResourceRequest, within};

/// How many times a blocked request may be passed over by backfilled ones, unless
/// [`PriorityResourceManager::max_bypass`] says otherwise.
pub const DEFAULT_MAX_BYPASS: u32 = 4;

/// When [`PriorityResourceManager`] lets a request go ahead of a blocked one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Admission {
    /// Strictly in (priority, arrival) order: while the first waiting request does not
    /// fit, nothing behind it is granted. Backfill happens only when
    /// [`optimize_resource_distribution`](ResourceManager::optimize_resource_distribution)
    /// is called. The default.
    #[default]
    InOrder,
    /// Every admission (a request arriving, resources given back) is a bounded backfill
    /// pass, as [`optimize_resource_distribution`](ResourceManager::optimize_resource_distribution)
    /// does.
    Backfill,
}

/// The engine's [`ResourceManager`]: a [`ResourcePool`] whose requests are granted whole,
/// lower priority number first and in order of arrival within a priority, with a bounded
/// backfill; see the [module docs](super) for the semantics and their cost.
///
/// Clones share one pool.
///
/// # Backfill
/// A backfill pass walks the waiting requests in (priority, arrival) order and grants
/// each one that fits in what is free, also behind requests that do not fit ("blocked"),
/// as long as every blocked request ahead of it has been passed over fewer than
/// [`max_bypass`](Self::max_bypass) times; each grant behind a blocked request counts as
/// one pass-over for every blocked request ahead of it. Once a blocked request has been
/// passed over `max_bypass` times, nothing behind it is granted until it is: it waits
/// for at most `max_bypass` backfilled requests more than under strict order.
///
/// # Examples
/// ```
/// use futures::executor::block_on;
/// use tradeflow::resource::{
///     PriorityResourceManager, ResourceManager, ResourcePool, ResourceRequest,
/// };
///
/// let manager = PriorityResourceManager::new(ResourcePool::new([("cpu", 4.0)])?).max_bypass(1);
/// let cpu = |cores| ResourceRequest::new().with_amount("cpu", cores);
/// block_on(async {
///     let running = manager.allocate_resources(cpu(3.0)).await?;
///     let mut large = manager.allocate_resources(cpu(4.0)); // waits for all 4
///     let mut small = manager.allocate_resources(cpu(1.0)); // fits, but waits behind it
///     let mut other = manager.allocate_resources(cpu(1.0));
///     for waiting in [&mut large, &mut small, &mut other] {
///         assert!(futures::poll!(waiting).is_pending());
///     }
///     // One request may go ahead of the large one (max_bypass 1), not two.
///     assert_eq!(manager.optimize_resource_distribution().admitted, 1);
///     let small = small.await?;
///     assert!(futures::poll!(&mut other).is_pending());
///     drop((running, small));
///     let large = large.await?;
///     # drop(large);
///     Ok::<(), tradeflow::resource::ResourceError>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct PriorityResourceManager {
    shared: Arc<Shared>,
}

/// A waiting request's place in the queue: (priority, arrival number).
type Key = (i32, u64);

/// Amounts by index of kind (in `Shared::kinds`), each above 0.
type Amounts = Arc<[(usize, f64)]>;

struct Shared {
    /// The pool's kinds, sorted by name, and their capacities (same order).
    kinds: Box<[ResourceKind]>,
    capacities: Box<[f64]>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    admission: Admission,
    max_bypass: u32,
    /// Amount granted, by kind index.
    in_use: Vec<f64>,
    /// Grants holding some of each kind: when none does, `in_use` is reset to exactly 0
    /// (sums of fractional amounts do not leave dust behind).
    holders: Vec<usize>,
    /// Grants not yet given back.
    allocations: usize,
    /// Waiting requests in service order. Invariant: a request leaves the queue only
    /// when granted (then its amounts are in `in_use`) or withdrawn by its future.
    queue: BTreeMap<Key, Waiter>,
    next_arrival: u64,
}

struct Waiter {
    amounts: Amounts,
    waker: Option<Waker>,
    /// Grants made behind this request while it was blocked.
    passed_over: u32,
}

impl PriorityResourceManager {
    /// A manager of `pool`, admitting in strict order ([`Admission::InOrder`]), with a
    /// backfill bound of [`DEFAULT_MAX_BYPASS`].
    pub fn new(pool: ResourcePool) -> Self {
        let (kinds, capacities): (Vec<ResourceKind>, Vec<f64>) = pool
            .iter()
            .map(|(kind, capacity)| (kind.clone(), capacity))
            .unzip();
        let count = kinds.len();
        Self {
            shared: Arc::new(Shared {
                kinds: kinds.into(),
                capacities: capacities.into(),
                state: Mutex::new(State {
                    max_bypass: DEFAULT_MAX_BYPASS,
                    in_use: vec![0.0; count],
                    holders: vec![0; count],
                    ..State::default()
                }),
            }),
        }
    }

    /// When a request may go ahead of a blocked one. Defaults to [`Admission::InOrder`].
    /// Clones share the setting.
    #[must_use]
    pub fn admission(self, admission: Admission) -> Self {
        self.shared.lock().admission = admission;
        self
    }

    /// How many times a blocked request may be passed over by backfill (0: never, which
    /// makes backfill the strict order). Defaults to [`DEFAULT_MAX_BYPASS`]. Clones share
    /// the setting.
    #[must_use]
    pub fn max_bypass(self, max_bypass: u32) -> Self {
        self.shared.lock().max_bypass = max_bypass;
        self
    }

    /// Takes `request` from the pool: the future of
    /// [`allocate_resources`](ResourceManager::allocate_resources), as a named type.
    /// Nothing happens until it is first polled.
    pub fn allocate(&self, request: ResourceRequest) -> Allocation {
        Allocation {
            shared: Arc::clone(&self.shared),
            state: Stage::New(request),
        }
    }
}

impl From<ResourcePool> for PriorityResourceManager {
    fn from(pool: ResourcePool) -> Self {
        Self::new(pool)
    }
}

impl fmt::Debug for PriorityResourceManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (admission, max_bypass) = {
            let state = self.shared.lock();
            (state.admission, state.max_bypass)
        };
        f.debug_struct("PriorityResourceManager")
            .field("admission", &admission)
            .field("max_bypass", &max_bypass)
            .field("usage", &self.monitor_resource_usage())
            .finish()
    }
}

#[async_trait::async_trait]
impl ResourceManager for PriorityResourceManager {
    fn capacity(&self, kind: &ResourceKind) -> Option<f64> {
        let index = self.shared.index(kind)?;
        self.shared.capacities.get(index).copied()
    }

    async fn allocate_resources(
        &self,
        request: ResourceRequest,
    ) -> Result<AllocationGuard, ResourceError> {
        self.allocate(request).await
    }

    fn monitor_resource_usage(&self) -> ResourceUsage {
        let shared = &*self.shared;
        let state = shared.lock();
        let mut resources: Vec<KindUsage> = shared
            .kinds
            .iter()
            .zip(shared.capacities.iter())
            .zip(&state.in_use)
            .map(|((kind, &capacity), &in_use)| KindUsage {
                kind: kind.clone(),
                capacity,
                in_use,
                waiting: 0.0,
                waiting_requests: 0,
            })
            .collect();
        for waiter in state.queue.values() {
            for &(index, amount) in waiter.amounts.iter() {
                if let Some(usage) = resources.get_mut(index) {
                    usage.waiting += amount;
                    usage.waiting_requests += 1;
                }
            }
        }
        ResourceUsage {
            resources,
            waiting_requests: state.queue.len(),
            allocations: state.allocations,
        }
    }

    /// One bounded backfill pass now (see [`PriorityResourceManager`]), whatever the
    /// [`Admission`]: grants the waiting requests that fit, also behind blocked ones,
    /// within the [`max_bypass`](PriorityResourceManager::max_bypass) bound. Returns how
    /// many it granted.
    fn optimize_resource_distribution(&self) -> Optimization {
        let shared = &*self.shared;
        let mut state = shared.lock();
        let max_bypass = state.max_bypass;
        let woken = shared.admit(&mut state, Some(max_bypass));
        drop(state);
        let admitted = woken.len();
        wake(woken);
        Optimization { admitted }
    }
}

impl Shared {
    /// Locks the state. User code never runs under the lock (wakers are woken after it is
    /// released), so a poisoned lock still holds a consistent state.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn index(&self, kind: &ResourceKind) -> Option<usize> {
        self.kinds.binary_search(kind).ok()
    }

    /// The request's amounts by kind index, without zero amounts.
    fn amounts(&self, request: &ResourceRequest) -> Result<Amounts, ResourceError> {
        let mut amounts = Vec::with_capacity(request.amounts().len());
        for (kind, amount) in request.amounts() {
            let (kind, amount) = (kind.clone(), *amount);
            if !amount.is_finite() || amount < 0.0 {
                return Err(ResourceError::InvalidAmount { kind, amount });
            }
            let Some(index) = self.index(&kind) else {
                return Err(ResourceError::UnknownResource {
                    kind,
                    known: self.kinds.to_vec(),
                });
            };
            let capacity = self.capacities.get(index).copied().unwrap_or_default();
            if !within(0.0, amount, capacity) {
                return Err(ResourceError::ExceedsCapacity {
                    kind,
                    requested: amount,
                    capacity,
                });
            }
            if amount > 0.0 {
                amounts.push((index, amount));
            }
        }
        Ok(amounts.into())
    }

    fn fits(&self, in_use: &[f64], amounts: &[(usize, f64)]) -> bool {
        amounts.iter().all(|&(index, amount)| {
            match (in_use.get(index), self.capacities.get(index)) {
                (Some(&used), Some(&capacity)) => within(used, amount, capacity),
                _ => false,
            }
        })
    }

    fn take(state: &mut State, amounts: &[(usize, f64)]) {
        for &(index, amount) in amounts {
            if let (Some(used), Some(holders)) =
                (state.in_use.get_mut(index), state.holders.get_mut(index))
            {
                *used += amount;
                *holders += 1;
            }
        }
        state.allocations += 1;
    }

    /// Gives `amounts` back and admits what now fits; returns the wakers to wake once the
    /// lock is released.
    fn give_back(&self, state: &mut State, amounts: &[(usize, f64)]) -> Vec<Waker> {
        for &(index, amount) in amounts {
            if let (Some(used), Some(holders)) =
                (state.in_use.get_mut(index), state.holders.get_mut(index))
            {
                *holders = holders.saturating_sub(1);
                *used = if *holders == 0 {
                    0.0
                } else {
                    (*used - amount).max(0.0)
                };
            }
        }
        state.allocations = state.allocations.saturating_sub(1);
        self.admit_by_policy(state)
    }

    fn admit_by_policy(&self, state: &mut State) -> Vec<Waker> {
        let bypass = match state.admission {
            Admission::InOrder => None,
            Admission::Backfill => Some(state.max_bypass),
        };
        self.admit(state, bypass)
    }

    /// Grants waiting requests in service order: strictly (`bypass` none: stop at the
    /// first that does not fit), or with backfill bounded by `bypass`. Returns the
    /// wakers of the requests granted (one each).
    fn admit(&self, state: &mut State, bypass: Option<u32>) -> Vec<Waker> {
        let mut woken = Vec::new();
        // Every waiter has a waker (it is queued by a poll): one waker per grant.
        let mut grant = |state: &mut State, key: Key| {
            if let Some(waiter) = state.queue.remove(&key) {
                Self::take(state, &waiter.amounts);
                woken.extend(waiter.waker);
            }
        };
        match bypass {
            None => {
                while let Some((&key, waiter)) = state.queue.first_key_value() {
                    if !self.fits(&state.in_use, &waiter.amounts) {
                        break;
                    }
                    grant(state, key);
                }
            }
            Some(max_bypass) => {
                let keys: Vec<Key> = state.queue.keys().copied().collect();
                // The blocked requests met so far, and how many more pass-overs the
                // least patient of them allows.
                let mut blocked: Vec<Key> = Vec::new();
                let mut allowance = u32::MAX;
                for key in keys {
                    let Some(waiter) = state.queue.get(&key) else {
                        continue;
                    };
                    if self.fits(&state.in_use, &waiter.amounts) {
                        if allowance == 0 {
                            break;
                        }
                        grant(state, key);
                        if !blocked.is_empty() {
                            allowance -= 1;
                            for ahead in &blocked {
                                if let Some(waiter) = state.queue.get_mut(ahead) {
                                    waiter.passed_over += 1;
                                }
                            }
                        }
                    } else {
                        allowance = allowance.min(max_bypass.saturating_sub(waiter.passed_over));
                        blocked.push(key);
                        if allowance == 0 {
                            break;
                        }
                    }
                }
            }
        }
        woken
    }
}

fn wake(wakers: Vec<Waker>) {
    for waker in wakers {
        waker.wake();
    }
}

/// The future of [`PriorityResourceManager::allocate`]: resolves to an
/// [`AllocationGuard`] once the whole request is granted. Dropped while it waits, it
/// withdraws the request; dropped after the grant but before it was observed, it gives
/// the resources back.
#[must_use = "a request is made only when the future is polled"]
pub struct Allocation {
    shared: Arc<Shared>,
    state: Stage,
}

enum Stage {
    /// Not yet polled.
    New(ResourceRequest),
    /// In the queue under `key`.
    Waiting {
        key: Key,
        request: ResourceRequest,
        amounts: Amounts,
    },
    /// Resolved.
    Done,
}

impl fmt::Debug for Allocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stage = match &self.state {
            Stage::New(_) => "new",
            Stage::Waiting { .. } => "waiting",
            Stage::Done => "done",
        };
        f.debug_struct("Allocation")
            .field("stage", &stage)
            .finish_non_exhaustive()
    }
}

impl Allocation {
    fn guard(&self, request: ResourceRequest, amounts: Amounts) -> AllocationGuard {
        let shared = Arc::clone(&self.shared);
        AllocationGuard::new(request, move || {
            let mut state = shared.lock();
            let woken = shared.give_back(&mut state, &amounts);
            drop(state);
            wake(woken);
        })
    }
}

impl Future for Allocation {
    type Output = Result<AllocationGuard, ResourceError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let shared = Arc::clone(&self.shared);
        match std::mem::replace(&mut self.state, Stage::Done) {
            Stage::New(request) => {
                let amounts = shared.amounts(&request)?;
                let mut state = shared.lock();
                // Granted at once when nothing of its priority or better waits (or it
                // asks for nothing) and it fits.
                let ahead = state
                    .queue
                    .range(..=(request.priority(), u64::MAX))
                    .next()
                    .is_some();
                if amounts.is_empty() || (!ahead && shared.fits(&state.in_use, &amounts)) {
                    Shared::take(&mut state, &amounts);
                    drop(state);
                    return Poll::Ready(Ok(self.guard(request, amounts)));
                }
                let key = (request.priority(), state.next_arrival);
                state.next_arrival += 1;
                state.queue.insert(
                    key,
                    Waiter {
                        amounts: Arc::clone(&amounts),
                        waker: Some(cx.waker().clone()),
                        passed_over: 0,
                    },
                );
                let woken = match state.admission {
                    Admission::InOrder => Vec::new(),
                    // A backfill may grant it (or others) now.
                    Admission::Backfill => shared.admit_by_policy(&mut state),
                };
                let granted = !state.queue.contains_key(&key);
                drop(state);
                // Its own waker is among them when granted: waking it only polls again.
                wake(woken);
                if granted {
                    return Poll::Ready(Ok(self.guard(request, amounts)));
                }
                self.state = Stage::Waiting {
                    key,
                    request,
                    amounts,
                };
                Poll::Pending
            }
            Stage::Waiting {
                key,
                request,
                amounts,
            } => {
                let mut state = shared.lock();
                match state.queue.get_mut(&key) {
                    Some(waiter) => {
                        let stale = match &waiter.waker {
                            Some(waker) if waker.will_wake(cx.waker()) => None,
                            _ => waiter.waker.replace(cx.waker().clone()),
                        };
                        drop(state);
                        drop(stale);
                        self.state = Stage::Waiting {
                            key,
                            request,
                            amounts,
                        };
                        Poll::Pending
                    }
                    // Out of the queue and not withdrawn: granted.
                    None => {
                        drop(state);
                        Poll::Ready(Ok(self.guard(request, amounts)))
                    }
                }
            }
            Stage::Done => panic!("`Allocation` polled after it completed"),
        }
    }
}

impl Drop for Allocation {
    fn drop(&mut self) {
        let Stage::Waiting { key, amounts, .. } = &self.state else {
            return;
        };
        let shared = &*self.shared;
        let mut state = shared.lock();
        let woken = match state.queue.remove(key) {
            // Withdrawn: what waited behind it may go now.
            Some(waiter) => {
                drop(waiter);
                shared.admit_by_policy(&mut state)
            }
            // Granted, never observed: given back.
            None => shared.give_back(&mut state, amounts),
        };
        drop(state);
        wake(woken);
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    fn manager(cpu: f64) -> PriorityResourceManager {
        PriorityResourceManager::new(ResourcePool::new([("cpu", cpu)]).unwrap())
    }

    fn cpu(cores: f64) -> ResourceRequest {
        ResourceRequest::new().with_amount("cpu", cores)
    }

    #[test]
    fn a_request_granted_but_never_observed_is_given_back_when_dropped() {
        let manager = manager(1.0);
        let held = manager.allocate(cpu(1.0)).now_or_never().unwrap().unwrap();
        let mut waiting = manager.allocate(cpu(1.0));
        assert!((&mut waiting).now_or_never().is_none());
        drop(held);
        // Granted by the release; dropped before it is polled again.
        assert_eq!(manager.monitor_resource_usage().allocations, 1);
        drop(waiting);
        let usage = manager.monitor_resource_usage();
        assert_eq!(
            (usage.allocations, usage.in_use(&ResourceKind::CPU)),
            (0, 0.0)
        );
    }

    #[test]
    fn fractional_amounts_leave_no_dust_once_given_back() {
        let manager = manager(1.0);
        let guards: Vec<_> = [0.1, 0.2, 0.3]
            .map(|cores| {
                manager
                    .allocate(cpu(cores))
                    .now_or_never()
                    .unwrap()
                    .unwrap()
            })
            .into();
        drop(guards);
        assert_eq!(
            manager.monitor_resource_usage().in_use(&ResourceKind::CPU),
            0.0
        );
    }
}
