//! The resource manager alone: requests are granted whole or not at all, lower priority
//! number first and in arrival order within a priority, strictly by default; a guard
//! gives its resources back when dropped and wakes the next request; a request the pool
//! can never grant fails at once; the backfill of `optimize_resource_distribution` is
//! bounded; `monitor_resource_usage` reports what is held and waited for.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures::FutureExt;
use futures::future::BoxFuture;
use tradeflow::resource::{
    Admission, AllocationGuard, PriorityResourceManager, ResourceError, ResourceKind,
    ResourceManager, ResourcePool, ResourceRequest,
};

type Pending = BoxFuture<'static, Result<AllocationGuard, ResourceError>>;

fn pool(cpu: f64, memory: f64) -> PriorityResourceManager {
    PriorityResourceManager::new(ResourcePool::new([("cpu", cpu), ("memory", memory)]).unwrap())
}

fn cpu(cores: f64) -> ResourceRequest {
    ResourceRequest::new().with_amount(ResourceKind::CPU, cores)
}

/// Starts a request (polls it once): the guard when granted at once, else the waiting
/// request.
fn request(manager: &Arc<dyn ResourceManager>, request: ResourceRequest) -> Pending {
    let manager = Arc::clone(manager);
    async move { manager.allocate_resources(request).await }.boxed()
}

/// Polls a request once without waiting: `Some(guard)` once it is granted.
#[track_caller]
fn granted(waiting: &mut Pending) -> Option<AllocationGuard> {
    waiting
        .now_or_never()
        .map(|result| result.expect("the request is valid"))
}

/// Grants `request` at once, or fails the test.
#[track_caller]
fn take(manager: &Arc<dyn ResourceManager>, wanted: ResourceRequest) -> AllocationGuard {
    granted(&mut request(manager, wanted)).expect("granted at once")
}

fn shared(manager: PriorityResourceManager) -> Arc<dyn ResourceManager> {
    Arc::new(manager)
}

#[test]
fn a_request_is_granted_whole_or_not_at_all() {
    let manager = shared(pool(4.0, 1000.0));
    let running = take(&manager, cpu(3.0));

    // 2 cores and 100 MB: the memory is free, the cores are not; nothing is taken.
    let mut both = request(&manager, cpu(2.0).with_amount("memory", 100.0));
    assert!(granted(&mut both).is_none());
    let usage = manager.monitor_resource_usage();
    assert_eq!(usage.in_use(&ResourceKind::MEMORY), 0.0);
    assert_eq!(usage.in_use(&ResourceKind::CPU), 3.0);
    let memory = usage.kind(&ResourceKind::MEMORY).unwrap();
    assert_eq!((memory.waiting, memory.waiting_requests), (100.0, 1));

    // The waiting request holds none of the memory: a more urgent request can take it
    // all.
    let other = take(
        &manager,
        ResourceRequest::new()
            .with_amount("memory", 1000.0)
            .with_priority(-1),
    );
    assert_eq!(
        manager
            .monitor_resource_usage()
            .in_use(&ResourceKind::MEMORY),
        1000.0
    );
    drop(other);
    drop(running);
    let both = granted(&mut both).expect("granted once the cores are free");
    let usage = manager.monitor_resource_usage();
    assert_eq!(usage.in_use(&ResourceKind::CPU), 2.0);
    assert_eq!(usage.in_use(&ResourceKind::MEMORY), 100.0);
    assert_eq!(both.request().amount(&ResourceKind::CPU), 2.0);
}

#[test]
fn waiting_requests_are_served_by_priority_then_arrival() {
    let manager = shared(pool(1.0, 0.0));
    let mut holder = Some(take(&manager, cpu(1.0)));
    let mut waiting: Vec<(&str, Pending)> = [("a", 2), ("b", 1), ("c", 2), ("d", 1)]
        .into_iter()
        .map(|(name, priority)| (name, request(&manager, cpu(1.0).with_priority(priority))))
        .collect();
    for (_, pending) in &mut waiting {
        assert!(granted(pending).is_none());
    }
    assert_eq!(manager.monitor_resource_usage().waiting_requests, 4);

    let mut served = Vec::new();
    while let Some(guard) = holder.take() {
        drop(guard);
        for (name, pending) in &mut waiting {
            if served.contains(name) {
                continue;
            }
            if let Some(next) = granted(pending) {
                served.push(*name);
                holder = Some(next);
            }
        }
    }
    assert_eq!(served, ["b", "d", "a", "c"]);
}

#[test]
fn a_later_request_of_better_priority_that_fits_goes_first() {
    let manager = shared(pool(4.0, 0.0));
    let _running = take(&manager, cpu(3.0));
    let mut low = request(&manager, cpu(2.0).with_priority(5));
    assert!(granted(&mut low).is_none());

    // Priority 1 is ahead of the blocked priority-5 request, and fits.
    let high = take(&manager, cpu(1.0).with_priority(1));
    assert_eq!(high.request().priority(), 1);
    assert!(granted(&mut low).is_none());
}

#[test]
fn a_large_request_at_the_head_is_not_starved_by_smaller_ones() {
    let manager = shared(pool(4.0, 0.0));
    let running = take(&manager, cpu(3.0));
    let mut large = request(&manager, cpu(4.0));
    let mut small = request(&manager, cpu(1.0));
    assert!(granted(&mut large).is_none());
    // One core is free, but the small request arrived after the large one.
    assert!(granted(&mut small).is_none());

    drop(running);
    let large = granted(&mut large).expect("the head goes first");
    assert!(granted(&mut small).is_none());
    drop(large);
    assert!(granted(&mut small).is_some());
}

/// Counts how often it is woken.
#[derive(Default)]
struct Wakes(AtomicUsize);

impl Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn dropping_a_guard_gives_back_its_resources_and_wakes_the_next_request() {
    let manager = shared(pool(2.0, 0.0));
    let first = take(&manager, cpu(2.0));
    let mut second = request(&manager, cpu(2.0));
    let mut third = request(&manager, cpu(2.0));
    let (wakes_second, wakes_third) = (Arc::new(Wakes::default()), Arc::new(Wakes::default()));
    let waker_second = Waker::from(Arc::clone(&wakes_second));
    let waker_third = Waker::from(Arc::clone(&wakes_third));
    let poll =
        |pending: &mut Pending, waker: &Waker| pending.poll_unpin(&mut Context::from_waker(waker));
    assert!(poll(&mut second, &waker_second).is_pending());
    assert!(poll(&mut third, &waker_third).is_pending());

    drop(first);
    assert_eq!(wakes_second.0.load(Ordering::SeqCst), 1);
    assert_eq!(
        wakes_third.0.load(Ordering::SeqCst),
        0,
        "only what fits is woken"
    );
    let Poll::Ready(Ok(second)) = poll(&mut second, &waker_second) else {
        panic!("the woken request is granted");
    };
    assert_eq!(
        manager.monitor_resource_usage().in_use(&ResourceKind::CPU),
        2.0
    );

    second.release();
    assert_eq!(wakes_third.0.load(Ordering::SeqCst), 1);
    assert!(poll(&mut third, &waker_third).is_ready());
}

#[test]
fn a_request_withdrawn_while_it_waits_holds_nothing_and_lets_the_next_go() {
    let manager = shared(pool(2.0, 0.0));
    let running = take(&manager, cpu(1.0));
    let mut large = request(&manager, cpu(2.0));
    let mut small = request(&manager, cpu(1.0));
    assert!(granted(&mut large).is_none());
    assert!(granted(&mut small).is_none());

    drop(large);
    assert!(
        granted(&mut small).is_some(),
        "no longer behind the large one"
    );
    drop(running);
    let usage = manager.monitor_resource_usage();
    assert_eq!(usage.waiting_requests, 0);
}

#[test]
fn a_request_the_pool_can_never_grant_fails_at_once() {
    let manager = shared(pool(4.0, 1000.0));
    let _running = take(&manager, cpu(4.0));

    let error = request(&manager, cpu(5.0))
        .now_or_never()
        .expect("an answer at once, not a wait")
        .unwrap_err();
    assert_eq!(
        error,
        ResourceError::ExceedsCapacity {
            kind: ResourceKind::CPU,
            requested: 5.0,
            capacity: 4.0,
        }
    );

    let unknown = request(&manager, ResourceRequest::new().with_amount("gpu", 1.0))
        .now_or_never()
        .expect("an answer at once")
        .unwrap_err();
    assert_eq!(
        unknown.to_string(),
        "unknown resource `gpu`: the pool has `cpu`, `memory`"
    );

    let invalid = request(&manager, cpu(f64::NAN))
        .now_or_never()
        .expect("an answer at once")
        .unwrap_err();
    assert!(matches!(
        invalid,
        ResourceError::InvalidAmount { ref kind, .. } if *kind == ResourceKind::CPU
    ));
    assert_eq!(manager.monitor_resource_usage().waiting_requests, 0);
}

#[test]
fn a_request_for_nothing_is_granted_at_once() {
    let manager = shared(pool(1.0, 0.0));
    let _running = take(&manager, cpu(1.0));
    let _blocked = request(&manager, cpu(1.0));
    let nothing = take(&manager, cpu(0.0).with_priority(9));
    assert!(
        nothing
            .request()
            .amounts()
            .iter()
            .all(|(_, amount)| *amount == 0.0)
    );
}

/// Holder of 3 of 4 cores, then a 4-core request and three 1-core ones waiting behind it.
fn blocked_head(
    manager: PriorityResourceManager,
) -> (
    Arc<dyn ResourceManager>,
    AllocationGuard,
    Pending,
    Vec<Pending>,
) {
    let manager = shared(manager);
    let running = take(&manager, cpu(3.0));
    let mut large = request(&manager, cpu(4.0));
    assert!(granted(&mut large).is_none());
    let smalls: Vec<Pending> = (0..3)
        .map(|_| {
            let mut small = request(&manager, cpu(1.0));
            assert!(
                granted(&mut small).is_none(),
                "strict order: behind the large one"
            );
            small
        })
        .collect();
    (manager, running, large, smalls)
}

#[test]
fn optimizing_backfills_smaller_requests_only_while_the_blocked_one_allows() {
    let (manager, running, mut large, mut smalls) = blocked_head(pool(4.0, 0.0).max_bypass(2));

    // One core free: the first small request goes ahead of the large one.
    assert_eq!(manager.optimize_resource_distribution().admitted, 1);
    let first = granted(&mut smalls[0]).expect("backfilled");
    assert!(granted(&mut smalls[1]).is_none());
    // A release admits in strict order again: the large request still does not fit.
    drop(first);
    assert!(granted(&mut smalls[1]).is_none());

    assert_eq!(manager.optimize_resource_distribution().admitted, 1);
    let second = granted(&mut smalls[1]).expect("backfilled");
    drop(second);
    // The large request has been passed over twice (max_bypass 2): no more.
    assert_eq!(manager.optimize_resource_distribution().admitted, 0);
    assert!(granted(&mut smalls[2]).is_none());

    drop(running);
    let large = granted(&mut large).expect("the large one goes next");
    assert!(granted(&mut smalls[2]).is_none());
    drop(large);
    assert!(granted(&mut smalls[2]).is_some());
}

#[test]
fn without_optimizing_nothing_passes_a_blocked_request() {
    let (manager, _running, _large, mut smalls) = blocked_head(pool(4.0, 0.0));
    for small in &mut smalls {
        assert!(granted(small).is_none());
    }
    assert_eq!(manager.monitor_resource_usage().waiting_requests, 4);
}

#[test]
fn backfill_admission_lets_smaller_requests_through_as_they_arrive_within_the_bound() {
    let manager = shared(pool(4.0, 0.0).admission(Admission::Backfill).max_bypass(1));
    let running = take(&manager, cpu(3.0));
    let mut large = request(&manager, cpu(4.0));
    assert!(granted(&mut large).is_none());

    let first = take(&manager, cpu(1.0)); // passes the large one: once allowed
    let mut second = request(&manager, cpu(1.0));
    assert!(granted(&mut second).is_none());
    drop(first);
    assert!(
        granted(&mut second).is_none(),
        "the bound holds after a release too"
    );

    drop(running);
    let large = granted(&mut large).expect("the large one goes next");
    drop(large);
    assert!(granted(&mut second).is_some());
}

#[test]
fn monitoring_reports_capacity_use_and_waiting_per_kind() {
    let manager = shared(pool(4.0, 1000.0));
    let a = take(&manager, cpu(1.5).with_amount("memory", 250.0));
    let _b = take(&manager, cpu(2.0));
    let _waiting = {
        let mut waiting = request(&manager, cpu(1.0).with_amount("memory", 100.0));
        assert!(granted(&mut waiting).is_none());
        waiting
    };

    let usage = manager.monitor_resource_usage();
    assert_eq!((usage.allocations, usage.waiting_requests), (2, 1));
    let cores = usage.kind(&ResourceKind::CPU).unwrap();
    assert_eq!(
        (
            cores.capacity,
            cores.in_use,
            cores.waiting,
            cores.waiting_requests
        ),
        (4.0, 3.5, 1.0, 1)
    );
    assert_eq!(cores.available(), 0.5);
    let memory = usage.kind(&ResourceKind::MEMORY).unwrap();
    assert_eq!((memory.in_use, memory.available()), (250.0, 750.0));
    assert!(usage.kind(&ResourceKind::NETWORK).is_none());

    drop(a);
    let usage = manager.monitor_resource_usage();
    assert_eq!(
        usage.in_use(&ResourceKind::MEMORY),
        100.0,
        "the waiting one got in"
    );
    assert_eq!((usage.allocations, usage.waiting_requests), (2, 0));
}
