//! Resource pools: CPU cores, memory, network bandwidth and any kind the host adds,
//! shared by the steps of every run.
//!
//! ```
//! use futures::executor::block_on;
//! use tradeflow::resource::{
//!     PriorityResourceManager, ResourceKind, ResourceManager, ResourcePool, ResourceRequest,
//! };
//!
//! let pool = ResourcePool::new([("cpu", 4.0), ("memory", 8192.0), ("gpu", 1.0)])?;
//! let manager = PriorityResourceManager::new(pool);
//! block_on(async {
//!     let cpu = |cores| ResourceRequest::new().with_amount(ResourceKind::CPU, cores);
//!     let analysis = manager.allocate_resources(cpu(3.0).with_amount("gpu", 1.0)).await?;
//!     assert_eq!(manager.monitor_resource_usage().in_use(&ResourceKind::CPU), 3.0);
//!
//!     // Two more cores do not fit: the request waits, holding nothing meanwhile.
//!     let mut execution = manager.allocate_resources(cpu(2.0).with_priority(1));
//!     assert!(futures::poll!(&mut execution).is_pending());
//!     assert_eq!(manager.monitor_resource_usage().waiting_requests, 1);
//!
//!     // Dropping the guard gives the resources back and admits the waiting request.
//!     drop(analysis);
//!     let execution = execution.await?;
//!     assert_eq!(manager.monitor_resource_usage().in_use(&ResourceKind::CPU), 2.0);
//!
//!     // A request the pool can never grant is refused at once, naming the resource.
//!     let error = manager.allocate_resources(cpu(8.0)).await.unwrap_err();
//!     assert_eq!(
//!         error.to_string(),
//!         "request for 8 of `cpu` exceeds the pool's capacity of 4: it could never be granted"
//!     );
//!     drop(execution);
//!     Ok::<(), tradeflow::resource::ResourceError>(())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Concepts
//! - [`ResourceKind`]: a resource's name. [`CPU`](ResourceKind::CPU) (cores),
//!   [`MEMORY`](ResourceKind::MEMORY) (MB) and [`NETWORK`](ResourceKind::NETWORK) (Mbps)
//!   are what workflows' `resourceRequirements` name; a host may pool any other kind.
//! - [`ResourcePool`]: the capacity of each kind.
//! - [`ResourceRequest`]: amounts by kind and a priority (lower numbers first).
//! - [`ResourceManager`]: grants requests whole, or makes them wait; an
//!   [`AllocationGuard`] gives its resources back when dropped.
//!   [`PriorityResourceManager`] is the implementation the engine uses by default.
//! - [`ResourceManager::check_plan`]: whether every requirement of a workflow can ever be
//!   granted ([`CapacityError`] names the step and the resource that cannot).
//!
//! # Semantics of [`PriorityResourceManager`]
//! - **All or nothing.** A request is granted whole or not at all; a waiting request holds
//!   nothing, so requests cannot deadlock each other inside the pool and nothing leaks
//!   when a wait is abandoned (handing out part of a request could leave two waiting
//!   requests each holding what the other needs).
//! - **Order.** Requests are served by priority (lower number first) and, within a
//!   priority, in order of arrival. By default ([`Admission::InOrder`]) the order is
//!   strict: while the first waiting request does not fit, nothing behind it is granted,
//!   so a large request is never starved by a stream of small ones.
//! - **Bounded backfill.** [`optimize_resource_distribution`] (and every admission under
//!   [`Admission::Backfill`]) lets waiting requests that fit go ahead of a blocked one,
//!   as long as every blocked request ahead of them has been passed over fewer than
//!   [`max_bypass`](PriorityResourceManager::max_bypass) times (default
//!   [`DEFAULT_MAX_BYPASS`]). A large request therefore waits for at most that many
//!   backfilled requests beyond what the strict order would make it wait for; requests of
//!   a better priority that arrive later are served first either way.
//! - **Release.** Dropping the [`AllocationGuard`] gives the resources back at once and
//!   admits what now fits — whether the holder finished, failed, panicked (the guard is
//!   dropped while unwinding) or was cancelled (its future dropped). Dropping a request's
//!   future while it waits withdraws it; one granted but not yet observed is given back.
//! - **Errors, never an endless wait.** A request for more of a kind than the pool's
//!   capacity, for a kind the pool does not have, or with an amount that is not finite
//!   or is negative fails at once with a [`ResourceError`] naming the resource.
//!
//! # Cost
//! One uncontended `std::sync::Mutex` per request and per release, never held across an
//! await nor while a waker runs. A request that fits when nothing of its priority or
//! better waits is granted in O(kinds); one that waits is kept in a `BTreeMap` keyed by
//! (priority, arrival), so a release admits in O(granted × kinds + log waiting) in order,
//! and a backfill pass is O(waiting × kinds).
//!
//! [`optimize_resource_distribution`]: ResourceManager::optimize_resource_distribution

mod check;
mod manager;
mod priority;

use std::borrow::{Borrow, Cow};
use std::collections::BTreeMap;
use std::fmt;

use crate::plan::Resources;

pub use check::CapacityError;
pub use manager::{AllocationGuard, KindUsage, Optimization, ResourceManager, ResourceUsage};
pub use priority::{Admission, Allocation, DEFAULT_MAX_BYPASS, PriorityResourceManager};

/// The name of a kind of resource: `cpu`, `memory`, `network`, or any name a host pools.
///
/// # Examples
/// ```
/// # use tradeflow::resource::ResourceKind;
/// assert_eq!(ResourceKind::CPU.as_str(), "cpu");
/// assert_eq!(ResourceKind::from("gpu").to_string(), "gpu");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceKind(Cow<'static, str>);

impl ResourceKind {
    /// CPU cores (`resourceRequirements.cpu`).
    pub const CPU: Self = Self(Cow::Borrowed("cpu"));
    /// Memory in MB (`resourceRequirements.memory`).
    pub const MEMORY: Self = Self(Cow::Borrowed("memory"));
    /// Network bandwidth in Mbps (`resourceRequirements.network`).
    pub const NETWORK: Self = Self(Cow::Borrowed("network"));

    /// A kind named `name`.
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        Self(name.into())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&'static str> for ResourceKind {
    fn from(name: &'static str) -> Self {
        Self(Cow::Borrowed(name))
    }
}

impl From<String> for ResourceKind {
    fn from(name: String) -> Self {
        Self(Cow::Owned(name))
    }
}

impl Borrow<str> for ResourceKind {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// The capacity of each kind of resource: what a [`ResourceManager`] hands out.
///
/// # Examples
/// ```
/// # use tradeflow::resource::{ResourceKind, ResourcePool};
/// let pool = ResourcePool::new([("cpu", 4.0), ("memory", 8192.0)])?;
/// assert_eq!(pool.capacity(&ResourceKind::MEMORY), Some(8192.0));
/// assert_eq!(pool.capacity(&ResourceKind::NETWORK), None);
/// assert!(ResourcePool::new([("cpu", f64::NAN)]).is_err());
/// # Ok::<(), tradeflow::resource::ResourceError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourcePool {
    capacities: BTreeMap<ResourceKind, f64>,
}

impl ResourcePool {
    /// A pool with these capacities (an agents file's `resources` object converts
    /// directly: `ResourcePool::new(file.resources.clone().unwrap_or_default())`).
    ///
    /// # Errors
    /// [`ResourceError::InvalidCapacity`] for a capacity that is not finite or is
    /// negative; [`ResourceError::DuplicateResource`] for a kind listed twice.
    pub fn new<K: Into<ResourceKind>>(
        capacities: impl IntoIterator<Item = (K, f64)>,
    ) -> Result<Self, ResourceError> {
        let mut pool = BTreeMap::new();
        for (kind, capacity) in capacities {
            let kind = kind.into();
            if !capacity.is_finite() || capacity < 0.0 {
                return Err(ResourceError::InvalidCapacity { kind, capacity });
            }
            if pool.contains_key(&kind) {
                return Err(ResourceError::DuplicateResource { kind });
            }
            pool.insert(kind, capacity);
        }
        Ok(Self { capacities: pool })
    }

    /// The capacity of `kind`, if the pool has that kind.
    pub fn capacity(&self, kind: &ResourceKind) -> Option<f64> {
        self.capacities.get(kind).copied()
    }

    /// Every kind with its capacity, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&ResourceKind, f64)> + '_ {
        self.capacities
            .iter()
            .map(|(kind, capacity)| (kind, *capacity))
    }

    /// Whether the pool has no kind at all.
    pub fn is_empty(&self) -> bool {
        self.capacities.is_empty()
    }

    /// Checks that every `resourceRequirements` of `plan` fits this pool; see
    /// [`ResourceManager::check_plan`].
    ///
    /// # Errors
    /// Every [`CapacityError`] found.
    pub fn check_plan(&self, plan: &crate::plan::ExecutionPlan) -> Result<(), Vec<CapacityError>> {
        check::check_plan(plan, |kind| self.capacity(kind))
    }
}

/// Amounts of resources asked for at once, and the priority of the request (lower
/// numbers are served first; default 0).
///
/// # Examples
/// ```
/// # use tradeflow::resource::{ResourceKind, ResourceRequest};
/// let request = ResourceRequest::new()
///     .with_amount(ResourceKind::CPU, 2.0)
///     .with_amount("gpu", 1.0)
///     .with_priority(1);
/// assert_eq!(request.amount(&ResourceKind::CPU), 2.0);
/// assert_eq!(request.amount(&ResourceKind::MEMORY), 0.0);
/// assert_eq!(request.priority(), 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceRequest {
    amounts: Vec<(ResourceKind, f64)>,
    priority: i32,
}

impl ResourceRequest {
    /// A request for nothing, at priority 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The request with `amount` of `kind` (replacing an amount of that kind).
    #[must_use]
    pub fn with_amount(mut self, kind: impl Into<ResourceKind>, amount: f64) -> Self {
        let kind = kind.into();
        match self.amounts.iter_mut().find(|(known, _)| *known == kind) {
            Some((_, slot)) => *slot = amount,
            None => self.amounts.push((kind, amount)),
        }
        self
    }

    /// The request at `priority`: lower numbers are served first. Defaults to 0.
    #[must_use]
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// One request for all of `requirements` together (a workflow's
    /// `resourceRequirements`): the amounts of each kind added up, at the lowest (most
    /// urgent) priority among them. Only kinds asked for in an amount above 0 are
    /// included.
    ///
    /// ```
    /// # use tradeflow::plan::Resources;
    /// # use tradeflow::resource::{ResourceKind, ResourceRequest};
    /// let needs = [
    ///     Resources { cpu: 1.0, memory: 512.0, network: 0.0, priority: 3 },
    ///     Resources { cpu: 2.0, memory: 0.0, network: 0.0, priority: 1 },
    /// ];
    /// let request = ResourceRequest::from_requirements(&needs);
    /// assert_eq!(request.amount(&ResourceKind::CPU), 3.0);
    /// assert_eq!(request.amounts().len(), 2); // network: none asked for
    /// assert_eq!(request.priority(), 1);
    /// ```
    pub fn from_requirements<'a>(requirements: impl IntoIterator<Item = &'a Resources>) -> Self {
        let mut request = Self::new();
        let mut priority = None::<i32>;
        for needs in requirements {
            priority = Some(priority.map_or(needs.priority, |p| p.min(needs.priority)));
            for (kind, amount) in [
                (ResourceKind::CPU, needs.cpu),
                (ResourceKind::MEMORY, needs.memory),
                (ResourceKind::NETWORK, needs.network),
            ] {
                if amount > 0.0 {
                    let total = request.amount(&kind) + amount;
                    request = request.with_amount(kind, total);
                }
            }
        }
        request.with_priority(priority.unwrap_or_default())
    }

    /// The amounts asked for, by kind, in the order they were added.
    pub fn amounts(&self) -> &[(ResourceKind, f64)] {
        &self.amounts
    }

    /// The amount of `kind` asked for (0 when none is).
    pub fn amount(&self, kind: &ResourceKind) -> f64 {
        self.amounts
            .iter()
            .find(|(known, _)| known == kind)
            .map_or(0.0, |(_, amount)| *amount)
    }

    /// The priority: lower numbers are served first.
    pub fn priority(&self) -> i32 {
        self.priority
    }

    /// Whether the request asks for no amount of anything.
    pub fn is_empty(&self) -> bool {
        self.amounts.is_empty()
    }

    /// Keeps only the kinds for which `keep` holds.
    pub(crate) fn retain_kinds(&mut self, mut keep: impl FnMut(&ResourceKind) -> bool) {
        self.amounts.retain(|(kind, _)| keep(kind));
    }
}

impl From<&Resources> for ResourceRequest {
    /// A step's `resourceRequirements` as one request (kinds asked for in an amount above
    /// 0, and the priority).
    fn from(needs: &Resources) -> Self {
        Self::from_requirements([needs])
    }
}

/// Why a pool could not be built, or a request cannot be granted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ResourceError {
    /// A request asks for more of a kind than the pool's capacity: it could never be
    /// granted, so it fails at once instead of waiting forever.
    #[error(
        "request for {requested} of `{kind}` exceeds the pool's capacity of {capacity}: it could never be granted"
    )]
    ExceedsCapacity {
        /// The resource.
        kind: ResourceKind,
        /// The amount asked for.
        requested: f64,
        /// The pool's capacity of it.
        capacity: f64,
    },
    /// A request names a kind the pool does not have.
    #[error("unknown resource `{kind}`: the pool has {}", kinds_text(.known))]
    UnknownResource {
        /// The kind asked for.
        kind: ResourceKind,
        /// The kinds the pool has.
        known: Vec<ResourceKind>,
    },
    /// A request's amount is not finite or is negative.
    #[error("invalid amount {amount} of `{kind}`: an amount must be finite and not negative")]
    InvalidAmount {
        /// The resource.
        kind: ResourceKind,
        /// The amount as given.
        amount: f64,
    },
    /// A pool's capacity is not finite or is negative.
    #[error("invalid capacity {capacity} of `{kind}`: a capacity must be finite and not negative")]
    InvalidCapacity {
        /// The resource.
        kind: ResourceKind,
        /// The capacity as given.
        capacity: f64,
    },
    /// A pool lists a kind twice.
    #[error("resource `{kind}` is listed twice in the pool")]
    DuplicateResource {
        /// The resource.
        kind: ResourceKind,
    },
}

fn kinds_text(kinds: &[ResourceKind]) -> String {
    if kinds.is_empty() {
        return "no resources".to_owned();
    }
    kinds
        .iter()
        .map(|kind| format!("`{kind}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `used + amount` stays within `capacity`, allowing for rounding in the sums of
/// fractional amounts (0.1 + 0.2 cores fit in 0.3).
fn within(used: f64, amount: f64, capacity: f64) -> bool {
    used + amount <= capacity + 1e-9 * capacity.max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn resource_types_are_shareable() {
        assert_send_sync::<ResourceKind>();
        assert_send_sync::<ResourcePool>();
        assert_send_sync::<ResourceRequest>();
        assert_send_sync::<ResourceError>();
        assert_send_sync::<AllocationGuard>();
        assert_send_sync::<PriorityResourceManager>();
        assert_send_sync::<ResourceUsage>();
        fn _object_safe(_: &dyn ResourceManager) {}
    }

    #[test]
    fn kinds_compare_by_name_whatever_their_storage() {
        assert_eq!(ResourceKind::CPU, ResourceKind::from("cpu".to_owned()));
        assert_eq!(ResourceKind::new("gpu").as_str(), "gpu");
    }

    #[test]
    fn pools_reject_bad_capacities_and_duplicates() {
        assert_eq!(
            ResourcePool::new([("cpu", -1.0)]),
            Err(ResourceError::InvalidCapacity {
                kind: ResourceKind::CPU,
                capacity: -1.0
            })
        );
        assert_eq!(
            ResourcePool::new([("cpu", 1.0), ("cpu", 2.0)]),
            Err(ResourceError::DuplicateResource {
                kind: ResourceKind::CPU
            })
        );
        assert!(ResourcePool::new([("cpu", f64::INFINITY)]).is_err());
    }

    #[test]
    fn a_later_amount_of_a_kind_replaces_the_earlier() {
        let request = ResourceRequest::new()
            .with_amount("cpu", 1.0)
            .with_amount(ResourceKind::CPU, 2.0);
        assert_eq!(request.amounts(), &[(ResourceKind::CPU, 2.0)]);
    }

    #[test]
    fn rounding_in_fractional_sums_does_not_refuse_what_fits() {
        assert!(within(0.1 + 0.2, 0.7, 1.0));
        assert!(!within(0.5, 0.6, 1.0));
    }
}
