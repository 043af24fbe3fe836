//! The `ResourceManager` trait, the guard that gives an allocation back, and the usage
//! snapshot.

use std::fmt;
use std::sync::Arc;

use super::check::{self, CapacityError};
use super::{ResourceError, ResourceKind, ResourceRequest};
use crate::plan::ExecutionPlan;

/// Hands out pooled resources: grants each request whole or makes it wait, and takes
/// them back when the [`AllocationGuard`] is dropped.
///
/// Required: [`capacity`](Self::capacity), [`allocate_resources`](Self::allocate_resources)
/// and [`monitor_resource_usage`](Self::monitor_resource_usage);
/// [`optimize_resource_distribution`](Self::optimize_resource_distribution) defaults to
/// doing nothing and [`check_plan`](Self::check_plan) to checking every requirement
/// against [`capacity`](Self::capacity). [`PriorityResourceManager`] is the engine's
/// implementation; see the [module docs](super) for its semantics.
///
/// [`PriorityResourceManager`]: super::PriorityResourceManager
#[async_trait::async_trait]
pub trait ResourceManager: Send + Sync {
    /// The capacity of `kind`, if the manager pools that kind.
    fn capacity(&self, kind: &ResourceKind) -> Option<f64>;

    /// Takes `request` from the pool, waiting until all of it can be granted at once; the
    /// guard gives it back when dropped. Dropping the returned future withdraws a waiting
    /// request.
    ///
    /// # Errors
    /// A [`ResourceError`] at once, without waiting, when the request could never be
    /// granted: more of a kind than its capacity, a kind the pool does not have, an
    /// amount that is not finite or is negative.
    async fn allocate_resources(
        &self,
        request: ResourceRequest,
    ) -> Result<AllocationGuard, ResourceError>;

    /// What the pool holds now: capacity, amount in use and amount waited for, by kind.
    fn monitor_resource_usage(&self) -> ResourceUsage;

    /// Improves how the waiting requests are served, now; returns what changed. The
    /// default does nothing.
    fn optimize_resource_distribution(&self) -> Optimization {
        Optimization::default()
    }

    /// Checks that every `resourceRequirements` of `plan` could ever be granted: each
    /// step's together with what the run holds for its whole length (the workflow's),
    /// and the workflow's alone. Kinds the manager does not pool are not limited.
    ///
    /// # Errors
    /// Every [`CapacityError`] found, each naming the step (or the workflow) and the
    /// resource.
    fn check_plan(&self, plan: &ExecutionPlan) -> Result<(), Vec<CapacityError>> {
        check::check_plan(plan, |kind| self.capacity(kind))
    }
}

macro_rules! forward {
    ($pointer:ident) => {
        #[async_trait::async_trait]
        impl<M: ResourceManager + ?Sized> ResourceManager for $pointer<M> {
            fn capacity(&self, kind: &ResourceKind) -> Option<f64> {
                (**self).capacity(kind)
            }

            async fn allocate_resources(
                &self,
                request: ResourceRequest,
            ) -> Result<AllocationGuard, ResourceError> {
                (**self).allocate_resources(request).await
            }

            fn monitor_resource_usage(&self) -> ResourceUsage {
                (**self).monitor_resource_usage()
            }

            fn optimize_resource_distribution(&self) -> Optimization {
                (**self).optimize_resource_distribution()
            }

            fn check_plan(&self, plan: &ExecutionPlan) -> Result<(), Vec<CapacityError>> {
                (**self).check_plan(plan)
            }
        }
    };
}

forward!(Arc);
forward!(Box);

type Release = Box<dyn FnOnce() + Send + Sync>;

/// Resources granted to one request; dropping the guard gives them back (also while a
/// panic unwinds, or when the future holding it is dropped).
///
/// # Examples
/// A manager of its own builds guards with [`AllocationGuard::new`]:
/// ```
/// # use std::sync::Arc;
/// # use std::sync::atomic::{AtomicBool, Ordering};
/// # use tradeflow::resource::{AllocationGuard, ResourceRequest};
/// let released = Arc::new(AtomicBool::new(false));
/// let flag = Arc::clone(&released);
/// let guard = AllocationGuard::new(ResourceRequest::new().with_amount("cpu", 1.0), move || {
///     flag.store(true, Ordering::SeqCst);
/// });
/// assert_eq!(guard.request().amount(&"cpu".into()), 1.0);
/// drop(guard);
/// assert!(released.load(Ordering::SeqCst));
/// ```
pub struct AllocationGuard {
    request: ResourceRequest,
    release: Option<Release>,
}

impl AllocationGuard {
    /// A guard holding `request`; `release` runs once, when the guard is dropped.
    pub fn new(request: ResourceRequest, release: impl FnOnce() + Send + Sync + 'static) -> Self {
        Self {
            request,
            release: Some(Box::new(release)),
        }
    }

    /// What the guard holds.
    pub fn request(&self) -> &ResourceRequest {
        &self.request
    }

    /// Gives the resources back now (the same as dropping the guard).
    pub fn release(self) {
        drop(self);
    }
}

impl Drop for AllocationGuard {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

impl fmt::Debug for AllocationGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AllocationGuard")
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

/// A snapshot of a pool: each kind's numbers, and the requests granted and waiting.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceUsage {
    /// Each kind the pool has, by name.
    pub resources: Vec<KindUsage>,
    /// Requests waiting to be granted.
    pub waiting_requests: usize,
    /// Requests granted and not yet given back.
    pub allocations: usize,
}

impl ResourceUsage {
    /// The numbers of `kind`, if the pool has it.
    pub fn kind(&self, kind: &ResourceKind) -> Option<&KindUsage> {
        self.resources.iter().find(|usage| usage.kind == *kind)
    }

    /// The amount of `kind` in use (0 when the pool does not have it).
    pub fn in_use(&self, kind: &ResourceKind) -> f64 {
        self.kind(kind).map_or(0.0, |usage| usage.in_use)
    }
}

/// One kind's numbers in a [`ResourceUsage`].
#[derive(Debug, Clone, PartialEq)]
pub struct KindUsage {
    /// The resource.
    pub kind: ResourceKind,
    /// The pool's capacity of it.
    pub capacity: f64,
    /// The amount granted and not yet given back.
    pub in_use: f64,
    /// The amount the waiting requests ask for, together.
    pub waiting: f64,
    /// How many waiting requests ask for some of it.
    pub waiting_requests: usize,
}

impl KindUsage {
    /// What is free now: capacity minus what is in use.
    pub fn available(&self) -> f64 {
        (self.capacity - self.in_use).max(0.0)
    }
}

/// What [`ResourceManager::optimize_resource_distribution`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Optimization {
    /// Waiting requests it granted.
    pub admitted: usize,
}
