//! Who may do what: permissions checked before the engine acts, four eyes on approvals,
//! and analyzers that may refuse a run before it starts.
//!
//! # The contract
//! An engine built with a [`PermissionService`]
//! ([`EngineBuilder::permissions`](crate::engine::EngineBuilder::permissions)) checks
//! every operation a user asks for before it acts; a refusal is
//! [`EngineError::Security`](crate::engine::EngineError::Security) holding a
//! [`SecurityError`] that names the user, the action and its target, and **nothing
//! happens**: no run starts, nothing is journaled, no agent is called, no answer reaches
//! a step, no command reaches a run. Every refusal is logged once (`tracing`, warn level,
//! target `tradeflow::security`).
//!
//! | operation | action | target | the user |
//! |---|---|---|---|
//! | `Engine::create_workflow_as(definition, user)` | `define` | the workflow id | `user` |
//! | `Engine::start`, `run`, `execute_workflow` | `execute` | the workflow id | `RunOptions::user` |
//! | `Engine::approve`, `Engine::reject` | `approve` | the run's workflow id | `by` |
//! | `Engine::pause_workflow` / `resume_workflow` / `cancel_workflow` | `pause` / `resume` / `cancel` | the run's workflow id | `by` |
//! | `Engine::adapt_workflow` | `adapt` | the workflow id | `by` |
//! | `Engine::rebalance_workload` | `rebalance` | none | `by` |
//! | `Engine::reset_kill_switch` | `reset` | the kill switch rule's id | `by_user` |
//!
//! What the host does on its own account is not checked: `Engine::create_workflow`
//! (a definition the host loads itself), `Engine::add_plan`, `Engine::start_plan`,
//! `Engine::recover` (a recovered run was checked when it started, and keeps its
//! journaled user), a kill switch's flatten run, and a run whose options say
//! `RunOptions::as_host` (the scheduler's triggers and dispatcher mark the runs they start
//! that way, unless the options name a user). A run started with `Engine::start` that
//! names neither a user nor `as_host` is refused ([`SecurityError::NoUser`]).
//!
//! Without a permission service (the default), every operation is allowed, as before:
//! the `by` and `user` names are recorded but not checked.
//!
//! ## Before a run starts
//! `Engine::start` checks, in this order, and stops at the first refusal:
//! 1. `execute` on the workflow ([`SecurityError::Denied`], [`SecurityError::NoUser`]);
//! 2. resource caps ([`PermissionService::resource_caps`]): every step's
//!    `resourceRequirements`, and the workflow's own (added up), against the user's caps
//!    ([`SecurityError::OverCap`] naming the step and the resource);
//! 3. the kill switch, and the agents check, as without permissions;
//! 4. the engine's [`SecurityAnalyzer`]s, in the order they were added
//!    ([`EngineBuilder::analyzer`](crate::engine::EngineBuilder::analyzer)); they run
//!    with or without a permission service, and see runs of the host's own too (with no
//!    user). The built-in [`RateLimit`] counts a run only when it lets it through; put it
//!    last, so a run another analyzer refuses is not counted.
//!
//! ## Approval gates
//! An analyzer's [`SecurityAnalyzer::gate`] may hold a step that calls an agent for a
//! person's approval before its first call ([`NotionalGuard`]: the notional at a path of
//! its parameters over a limit); the step then waits as a `human_approval` step does
//! (journaled, answered with `Engine::approve` / `reject` under its id, bound to its
//! parameters); a rejection fails it with kind `REJECTED` and its agent is never called.
//!
//! ## Four eyes
//! The user who started a run (its journaled `RunOptions::user`, so this holds after a
//! restart too) may not approve its steps: `Engine::approve` by that user is refused
//! ([`SecurityError::FourEyes`]). Rejecting stays allowed: stopping one's own run is
//! always safe. On by default when the engine has a permission service, off otherwise;
//! [`EngineBuilder::four_eyes`](crate::engine::EngineBuilder::four_eyes) sets it either
//! way.
//!
//! ## Quorum approvals
//! A `human_approval` step with `approval.quorum` / `approval.approvers` waits for that
//! many approvals from distinct people the list admits (`role:NAME` through
//! [`PermissionService::roles`], `user:NAME`); one rejection rejects. An answer from
//! outside the list is [`SecurityError::NotApprover`], a second approval by one person
//! [`SecurityError::AlreadyApproved`]; each counted approval is journaled
//! (`approvalCounted`), so a restart keeps the count.
//!
//! ## Bound approvals
//! An approval is bound to [`canonical_hash`] of the parameters the approver was shown;
//! when adaptations change the step's parameters after it was asked, the approval is
//! void when it arrives (or, after a restart, before a journaled one is acted on):
//! journaled `approvalVoided`, announced `RunEvent::ApprovalVoided`, and asked again.
//!
//! # Policies
//! [`PolicyPermissions`] is the built-in service: roles and users read from JSON, deny by
//! default; see its docs for the format. Patterns are [`Glob`]s (`*`, `?`), matched in
//! O(pattern × id) at worst.
//!
//! # Cost
//! One lookup in the service per operation (for the policy: the user's roles, then their
//! patterns), and one pass over the plan's steps per run started with a user. Nothing is
//! checked inside a run's loop.

mod analyzer;
mod error;
mod glob;
mod hash;
mod policy;

use std::fmt;
use std::sync::Arc;

pub use analyzer::{NotionalGuard, RateLimit, RunRequest, SecurityAnalyzer, StepRequest};
pub use error::{PolicyError, PolicyErrors, SecurityError};
pub use glob::Glob;
pub use hash::canonical_hash;
pub use policy::{ADMIN_ROLE, PolicyPermissions};

use crate::plan::{ExecutionPlan, Resources};

/// What a user asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Action {
    /// Create (define) a workflow.
    Define,
    /// Start a run of a workflow.
    Execute,
    /// Approve or reject a waiting step.
    Approve,
    /// Pause a run.
    Pause,
    /// Resume a paused run.
    Resume,
    /// Cancel a run.
    Cancel,
    /// Add an adaptation to a workflow at run time.
    Adapt,
    /// Rebalance the engine's agents.
    Rebalance,
    /// Reset a tripped kill switch rule.
    Reset,
}

impl Action {
    /// Every action, in the order a policy lists them.
    pub const ALL: [Action; 9] = [
        Action::Define,
        Action::Execute,
        Action::Approve,
        Action::Pause,
        Action::Resume,
        Action::Cancel,
        Action::Adapt,
        Action::Rebalance,
        Action::Reset,
    ];

    /// The action's name in a policy (`execute`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Define => "define",
            Action::Execute => "execute",
            Action::Approve => "approve",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Cancel => "cancel",
            Action::Adapt => "adapt",
            Action::Rebalance => "rebalance",
            Action::Reset => "reset",
        }
    }

    /// The action named `name` in a policy.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.as_str() == name)
    }

    /// The action's position in [`Action::ALL`].
    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request to check: who asks to do what, on what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PermissionRequest<'a> {
    /// The user.
    pub user: &'a str,
    /// What the user asks to do.
    pub action: Action,
    /// What on: the workflow id; for [`Action::Reset`] the kill switch rule's id; none
    /// for [`Action::Rebalance`].
    pub target: Option<&'a str>,
}

impl<'a> PermissionRequest<'a> {
    /// `user` asks to do `action` on `target`.
    pub fn new(user: &'a str, action: Action, target: Option<&'a str>) -> Self {
        Self {
            user,
            action,
            target,
        }
    }

    /// The refusal of this request: [`SecurityError::Denied`].
    pub fn denied(&self) -> SecurityError {
        SecurityError::Denied {
            user: self.user.to_owned(),
            action: self.action,
            target: self.target.map(str::to_owned),
        }
    }
}

/// Decides who may do what. Only [`check`](Self::check) is required.
///
/// Called synchronously, before the engine acts, on the caller's thread: a service that
/// asks a remote directory should keep what it learned in memory and answer from there.
pub trait PermissionService: Send + Sync {
    /// Whether `request` is allowed: `Ok(())`, or the refusal (usually
    /// [`PermissionRequest::denied`]).
    ///
    /// # Errors
    /// The refusal, naming the user, the action and the target.
    fn check(&self, request: &PermissionRequest<'_>) -> Result<(), SecurityError>;

    /// The most a step of `user`'s runs of `workflow` may ask for; checked for every
    /// step before such a run starts. The default caps nothing.
    fn resource_caps(&self, user: &str, workflow: &str) -> ResourceCaps {
        let _ = (user, workflow);
        ResourceCaps::UNLIMITED
    }

    /// The roles `user` holds, for hosts and analyzers that decide by role. The default
    /// is none.
    fn roles(&self, user: &str) -> Vec<String> {
        let _ = user;
        Vec::new()
    }
}

macro_rules! forward {
    ($pointer:ident) => {
        impl<T: PermissionService + ?Sized> PermissionService for $pointer<T> {
            fn check(&self, request: &PermissionRequest<'_>) -> Result<(), SecurityError> {
                (**self).check(request)
            }
            fn resource_caps(&self, user: &str, workflow: &str) -> ResourceCaps {
                (**self).resource_caps(user, workflow)
            }
            fn roles(&self, user: &str) -> Vec<String> {
                (**self).roles(user)
            }
        }
    };
}

forward!(Arc);
forward!(Box);

/// The most a step may ask for of each resource; `None` leaves a kind uncapped.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub struct ResourceCaps {
    /// CPU cores.
    pub cpu: Option<f64>,
    /// Memory, MB.
    pub memory: Option<f64>,
    /// Network, Mbps.
    pub network: Option<f64>,
}

impl ResourceCaps {
    /// Nothing capped.
    pub const UNLIMITED: Self = Self {
        cpu: None,
        memory: None,
        network: None,
    };

    /// Nothing allowed: every kind capped at 0.
    pub const NOTHING: Self = Self {
        cpu: Some(0.0),
        memory: Some(0.0),
        network: Some(0.0),
    };

    /// Caps of `cpu` cores, `memory` MB and `network` Mbps (`None`: uncapped).
    pub fn new(cpu: Option<f64>, memory: Option<f64>, network: Option<f64>) -> Self {
        Self {
            cpu,
            memory,
            network,
        }
    }

    /// For each kind, the larger of the two caps (uncapped beats any cap).
    pub fn most_generous(self, other: Self) -> Self {
        let larger = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
        Self {
            cpu: larger(self.cpu, other.cpu),
            memory: larger(self.memory, other.memory),
            network: larger(self.network, other.network),
        }
    }

    /// The first kind of `asked` over its cap: (kind, asked, cap).
    fn exceeded(&self, asked: &Resources) -> Option<(&'static str, f64, f64)> {
        [
            ("cpu", asked.cpu, self.cpu),
            ("memory", asked.memory, self.memory),
            ("network", asked.network, self.network),
        ]
        .into_iter()
        .find_map(|(kind, asked, cap)| match cap {
            Some(cap) if asked > cap => Some((kind, asked, cap)),
            _ => None,
        })
    }
}

/// Checks every step of `plan` (in listed order) and the workflow's own requirements
/// (added up, named `resourceRequirements`) against `caps`, for `user`.
///
/// # Errors
/// [`SecurityError::OverCap`] for the first requirement over its cap.
///
/// # Complexity
/// O(steps + the workflow's requirement entries).
pub fn check_resources(
    caps: &ResourceCaps,
    user: &str,
    plan: &ExecutionPlan,
) -> Result<(), SecurityError> {
    let over =
        |step: &str, (resource, requested, cap): (&'static str, f64, f64)| SecurityError::OverCap {
            user: user.to_owned(),
            workflow: plan.workflow_id().to_owned(),
            step: step.to_owned(),
            resource,
            requested,
            cap,
        };
    for step in plan.steps() {
        if let Some(exceeded) = step.resources().and_then(|asked| caps.exceeded(asked)) {
            return Err(over(step.id().as_str(), exceeded));
        }
    }
    let total = plan.resources().iter().fold(
        Resources {
            cpu: 0.0,
            memory: 0.0,
            network: 0.0,
            priority: 0,
        },
        |sum, entry| Resources {
            cpu: sum.cpu + entry.cpu,
            memory: sum.memory + entry.memory,
            network: sum.network + entry.network,
            priority: 0,
        },
    );
    match caps.exceeded(&total) {
        Some(exceeded) => Err(over("resourceRequirements", exceeded)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn _object_safe(_: &dyn PermissionService, _: &dyn SecurityAnalyzer) {}

    #[test]
    fn security_types_are_shareable() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<PolicyPermissions>();
        assert_send_sync::<RateLimit>();
        assert_send_sync::<SecurityError>();
    }

    #[test]
    fn actions_parse_their_own_names() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(action));
            assert_eq!(Action::ALL.get(action.index()), Some(&action));
        }
        assert_eq!(Action::parse("fly"), None);
    }
}
