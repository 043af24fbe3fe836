//! Why the engine refuses a request: [`EngineError`], and [`RecoveryError`] for runs that
//! cannot be recovered from a store.

use std::sync::Arc;

use super::{CoordinateError, MissingAgent};
use crate::agent::{RebalanceError, RegistryError};
use crate::definition::{Quoted, ValidationErrors};
use crate::resource::{CapacityError, ResourceError};
use crate::run::RunId;
use crate::safety::KillSwitchError;
use crate::security::SecurityError;
use crate::store::{FoldError, StoreError};

/// Why the engine refused a request.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The definition is invalid.
    #[error("invalid workflow definition:\n{0}")]
    Invalid(#[from] ValidationErrors),
    /// No workflow has this id.
    #[error("unknown workflow `{id}`")]
    UnknownWorkflow {
        /// The id asked for.
        id: String,
    },
    /// The workflow is kept, but not at this version ([`RunOptions::version`]).
    ///
    /// [`RunOptions::version`]: super::RunOptions::version
    #[error("workflow `{id}` has no version `{}`", Quoted(.version))]
    UnknownVersion {
        /// The workflow id.
        id: String,
        /// The version asked for.
        version: String,
    },
    /// Resources were asked of an engine built without a resource manager
    /// ([`EngineBuilder::resources`](super::EngineBuilder::resources)).
    #[error("the engine has no resource manager to allocate from")]
    NoResourceManager,
    /// The engine's resource manager cannot grant the request, ever.
    #[error(transparent)]
    Resource(#[from] ResourceError),
    /// A host's wrapper around the engine (an [`OrchestrationEngine`] of its own: a
    /// secure engine, a rate limit) refused the request.
    ///
    /// [`OrchestrationEngine`]: super::OrchestrationEngine
    #[error("{request} refused: {}", Quoted(.reason))]
    Refused {
        /// What was asked, as the wrapper names it (`start of workflow algo`).
        request: String,
        /// Why, in the wrapper's words.
        reason: String,
    },
    /// A tripped kill switch rule covers the workflow: no new run of it starts until the
    /// rule is reset ([`Engine::reset_kill_switch`](super::Engine::reset_kill_switch)).
    #[error("workflow `{workflow}` is halted: kill switch rule `{}` has tripped", Quoted(.rule))]
    Halted {
        /// The rule.
        rule: String,
        /// The workflow refused.
        workflow: String,
    },
    /// A security check refused the request (see [`crate::security`]): nothing was
    /// started, changed or journaled.
    #[error(transparent)]
    Security(#[from] SecurityError),
    /// A kill switch rule could not be reset.
    #[error(transparent)]
    KillSwitch(#[from] KillSwitchError),
    /// No step of this run waits for an answer under this id.
    #[error("run `{run}` has no step `{step}` waiting for approval")]
    NoPendingApproval {
        /// The run.
        run: RunId,
        /// The step.
        step: String,
    },
    /// The run is not live in this engine: it ended, never started, or was started by
    /// another engine (recover it first).
    #[error("run `{run}` is not running in this engine")]
    NotRunning {
        /// The run.
        run: RunId,
    },
    /// An agent could not be registered.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The run store failed (keeping a definition, listing the runs to recover).
    #[error("the run store failed")]
    Store {
        /// The store's error (shared: store errors carry their backend's error).
        #[source]
        source: Arc<StoreError>,
    },
    /// The workflow needs more of a resource than the engine's pool has: a step (or the
    /// workflow itself) could never run.
    #[error("workflow `{workflow}` needs more than the engine's resource pool has:\n{}", lines(.problems))]
    OverCapacity {
        /// The workflow id.
        workflow: String,
        /// Every requirement the pool can never grant, each naming the step (or the
        /// workflow) and the resource.
        problems: Vec<CapacityError>,
    },
    /// The workflow has as many adaptations added at run time as allowed.
    #[error(
        "workflow `{workflow}` has {max} adaptations added at run time already, the most allowed"
    )]
    TooManyAdaptations {
        /// The workflow id.
        workflow: String,
        /// The most allowed.
        max: usize,
    },
    /// A rebalancing was refused; nothing changed.
    #[error(transparent)]
    Rebalance(#[from] RebalanceError),
    /// A coordination of named agents has no output.
    #[error(transparent)]
    Coordinate(#[from] CoordinateError),
    /// Steps of the workflow that no registered agent can take (none of their agent
    /// type, or none with every capability they require): the run would fail there.
    #[error("workflow `{workflow}` has steps no registered agent can take:\n{}", lines(.problems))]
    NoAgents {
        /// The workflow id.
        workflow: String,
        /// Every such step, in listed order, with its agent type and the capabilities
        /// it requires.
        problems: Vec<MissingAgent>,
    },
    /// The audit log did not take the operation's entry: the operation was not
    /// performed (see [`EngineBuilder::audit`](super::EngineBuilder::audit)).
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

fn lines(problems: &[impl ToString]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl PartialEq for EngineError {
    /// Store errors are equal only when they are the same error (they carry a backend's).
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Invalid(a), Self::Invalid(b)) => a == b,
            (Self::UnknownWorkflow { id: a }, Self::UnknownWorkflow { id: b }) => a == b,
            (
                Self::UnknownVersion { id: a, version: x },
                Self::UnknownVersion { id: b, version: y },
            ) => a == b && x == y,
            (Self::NoResourceManager, Self::NoResourceManager) => true,
            (Self::Resource(a), Self::Resource(b)) => a == b,
            (
                Self::Refused {
                    request: a,
                    reason: x,
                },
                Self::Refused {
                    request: b,
                    reason: y,
                },
            ) => a == b && x == y,
            (
                Self::NoPendingApproval { run: a, step: s },
                Self::NoPendingApproval { run: b, step: t },
            ) => a == b && s == t,
            (Self::NotRunning { run: a }, Self::NotRunning { run: b }) => a == b,
            (Self::Registry(a), Self::Registry(b)) => a == b,
            (Self::Security(a), Self::Security(b)) => a == b,
            (Self::KillSwitch(a), Self::KillSwitch(b)) => a == b,
            (Self::Rebalance(a), Self::Rebalance(b)) => a == b,
            (Self::Audit(a), Self::Audit(b)) => a == b,
            (Self::Coordinate(a), Self::Coordinate(b)) => a == b,
            (Self::Store { source: a }, Self::Store { source: b }) => Arc::ptr_eq(a, b),
            (
                Self::OverCapacity {
                    workflow: a,
                    problems: x,
                },
                Self::OverCapacity {
                    workflow: b,
                    problems: y,
                },
            ) => a == b && x == y,
            (
                Self::NoAgents {
                    workflow: a,
                    problems: x,
                },
                Self::NoAgents {
                    workflow: b,
                    problems: y,
                },
            ) => a == b && x == y,
            _ => false,
        }
    }
}

/// Why a run could not be recovered from the store.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// The store could not be read.
    #[error("the run store failed")]
    Store(#[source] Arc<StoreError>),
    /// The run's journal does not describe a run.
    #[error("its journal does not describe a run")]
    Journal(#[source] FoldError),
    /// Neither the engine nor the store keeps the definition the run started with.
    #[error(
        "workflow `{workflow_id}` version `{version}` is kept neither by the engine nor by the store"
    )]
    NoDefinition {
        /// The workflow.
        workflow_id: String,
        /// The version the run started with.
        version: String,
    },
    /// The definition the store keeps does not compile.
    #[error("the stored definition of workflow `{workflow_id}` version `{version}` is invalid")]
    Definition {
        /// The workflow.
        workflow_id: String,
        /// The version.
        version: String,
        /// Every problem of the definition.
        #[source]
        source: ValidationErrors,
    },
    /// The journal names a step the run's definition does not have.
    #[error(
        "its journal names step `{step}`, which workflow `{workflow_id}` version `{version}` does not have"
    )]
    UnknownStep {
        /// The step named.
        step: String,
        /// The workflow.
        workflow_id: String,
        /// The version the run started with.
        version: String,
    },
    /// A sensitive value the run needs was journaled redacted (`"***"`) and the engine
    /// has no [`Secrets`](super::Secrets) hook to restore it
    /// ([`EngineBuilder::secrets`](super::EngineBuilder::secrets)).
    #[error(
        "its {field} is sensitive and was journaled as `***`; the engine has no Secrets hook to restore it"
    )]
    NoSecrets {
        /// The value's place.
        field: super::SecretLocation,
    },
    /// A sensitive value the run needs was journaled redacted (`"***"`) and the engine's
    /// [`Secrets`](super::Secrets) hook did not restore it.
    #[error(
        "its {field} is sensitive and was journaled as `***`; the engine's Secrets hook did not restore it"
    )]
    SecretUnavailable {
        /// The value's place.
        field: super::SecretLocation,
    },
}

impl PartialEq for RecoveryError {
    /// Store errors are equal only when they are the same error (they carry a backend's).
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Store(a), Self::Store(b)) => Arc::ptr_eq(a, b),
            (Self::Journal(a), Self::Journal(b)) => a == b,
            (
                Self::UnknownStep {
                    step: a,
                    workflow_id: w,
                    version: v,
                },
                Self::UnknownStep {
                    step: b,
                    workflow_id: x,
                    version: y,
                },
            ) => a == b && w == x && v == y,
            (
                Self::NoDefinition {
                    workflow_id: a,
                    version: v,
                },
                Self::NoDefinition {
                    workflow_id: b,
                    version: w,
                },
            ) => a == b && v == w,
            (
                Self::Definition {
                    workflow_id: a,
                    version: v,
                    source: x,
                },
                Self::Definition {
                    workflow_id: b,
                    version: w,
                    source: y,
                },
            ) => a == b && v == w && x == y,
            (Self::NoSecrets { field: a }, Self::NoSecrets { field: b })
            | (Self::SecretUnavailable { field: a }, Self::SecretUnavailable { field: b }) => {
                a == b
            }
            _ => false,
        }
    }
}

/// An [`EngineError::Store`], for an operation on no particular run.
pub(super) fn store_failed(error: StoreError) -> EngineError {
    EngineError::Store {
        source: Arc::new(error),
    }
}
