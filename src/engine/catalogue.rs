//! The workflows an engine keeps, compiled once, by id and version.
//!
//! Runs start from the latest version of a workflow ([`Engine::start`]); a run recovered
//! after a restart continues on the version it started with ([`Engine::workflow_version`]),
//! which is why, with a store, every definition kept is also stored.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use super::error::store_failed;
use super::{Engine, EngineError};
use crate::definition::WorkflowDefinition;
use crate::plan::ExecutionPlan;
use crate::store::StoreError;

/// A workflow the engine keeps: its id and version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkflowRef {
    /// The workflow id.
    pub id: String,
    /// Its version (free text; empty when the definition has none).
    pub version: String,
}

/// Compiled workflows by id, each with its versions (the latest last).
#[derive(Debug, Default)]
pub(super) struct Catalogue {
    workflows: RwLock<HashMap<String, Vec<Arc<ExecutionPlan>>>>,
}

impl Catalogue {
    /// The latest version of workflow `id`.
    fn latest(&self, id: &str) -> Option<Arc<ExecutionPlan>> {
        let workflows = self
            .workflows
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        workflows
            .get(id)
            .and_then(|versions| versions.last().cloned())
    }

    /// The latest version of every workflow, by id.
    pub(super) fn latest_all(&self) -> Vec<Arc<ExecutionPlan>> {
        let workflows = self
            .workflows
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut latest: Vec<_> = workflows
            .values()
            .filter_map(|versions| versions.last().cloned())
            .collect();
        latest.sort_by(|a, b| a.workflow_id().cmp(b.workflow_id()));
        latest
    }

    /// Workflow `id` at `version`.
    fn version(&self, id: &str, version: &str) -> Option<Arc<ExecutionPlan>> {
        let workflows = self
            .workflows
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        workflows
            .get(id)?
            .iter()
            .find(|plan| plan_version(plan) == version)
            .cloned()
    }

    /// Keeps `plan`, replacing the plan kept under the same id and version.
    fn keep(&self, plan: ExecutionPlan) -> WorkflowRef {
        let reference = WorkflowRef {
            id: plan.workflow_id().to_owned(),
            version: plan_version(&plan).to_owned(),
        };
        let mut workflows = self
            .workflows
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let versions = workflows.entry(reference.id.clone()).or_default();
        versions.retain(|kept| plan_version(kept) != reference.version);
        versions.push(Arc::new(plan));
        reference
    }
}

/// The audit entry of `plan` defined.
fn defined(plan: &ExecutionPlan) -> crate::audit::AuditEvent {
    crate::audit::AuditEvent::WorkflowDefined {
        workflow: plan.workflow_id().to_owned(),
        version: plan_version(plan).to_owned(),
        definition_sha256: crate::audit::sha256_text(&plan.definition().to_json()),
    }
}

/// A plan's version as kept: its definition's, empty when it has none.
fn plan_version(plan: &ExecutionPlan) -> &str {
    plan.definition().version.as_deref().unwrap_or_default()
}

impl Engine {
    /// Keeps an already compiled plan (by id and version). A plan with the same id and
    /// version replaces the one kept. With a store, the definition is stored too; a
    /// store that fails is logged (`tracing::warn!`): [`create_workflow`] reports it.
    /// The plan is not checked against the resource pool: a run of it whose requirements
    /// the pool can never grant fails when it starts (kind `RESOURCES`).
    ///
    /// [`create_workflow`]: Self::create_workflow
    pub fn add_plan(&self, plan: ExecutionPlan) -> WorkflowRef {
        // A failure is logged, and the entry waits for the log (see `EngineBuilder::audit`).
        let _ = self.inner.audit_done(None, || defined(&plan));
        if let Err(error) = self.put_definition(&plan) {
            tracing::warn!(
                workflow = plan.workflow_id(),
                error = &error as &dyn std::error::Error,
                "cannot store the workflow's definition; runs of it recover only while the engine keeps it"
            );
        }
        self.keep(plan)
    }

    /// Validates, compiles and keeps a workflow (by id and version); see
    /// [`OrchestrationEngine::create_workflow`](super::OrchestrationEngine::create_workflow). With a store, the definition is stored
    /// first (a version never changes once stored).
    ///
    /// With a resource manager, the workflow's `resourceRequirements` are checked against
    /// its pool ([`ResourceManager::check_plan`](crate::resource::ResourceManager::check_plan)).
    ///
    /// # Errors
    /// [`EngineError::Invalid`] with every problem of the definition (a step's `budget`
    /// naming a budget neither the workflow nor the engine declares among them);
    /// [`EngineError::OverCapacity`] naming every step (or the workflow) whose
    /// requirements the pool could never grant, and the resource;
    /// [`EngineError::Store`] when the store fails or keeps this version with other text
    /// (then the engine does not keep it either); [`EngineError::Audit`] when the audit
    /// log does not take its `workflowDefined` entry (then neither stores nor keeps it).
    pub fn create_workflow(
        &self,
        definition: WorkflowDefinition,
    ) -> Result<WorkflowRef, EngineError> {
        let plan = ExecutionPlan::compile(definition)?;
        plan.check_budgets(self.inner.budgets.engine())?;
        if let Some(manager) = &self.inner.resources {
            manager
                .check_plan(&plan)
                .map_err(|problems| EngineError::OverCapacity {
                    workflow: plan.workflow_id().to_owned(),
                    problems,
                })?;
        }
        self.inner.audit(None, || defined(&plan))?;
        self.put_definition(&plan).map_err(store_failed)?;
        Ok(self.keep(plan))
    }

    /// [`create_workflow`](Self::create_workflow) on behalf of `user`: with permissions
    /// ([`EngineBuilder::permissions`](super::EngineBuilder::permissions)), `user` must
    /// be allowed to `define` the workflow's id, checked before anything else. Without
    /// permissions, the same as [`create_workflow`](Self::create_workflow). (That one is
    /// the host's own act and is never checked.)
    ///
    /// # Errors
    /// [`EngineError::Security`] when `user` may not; otherwise as
    /// [`create_workflow`](Self::create_workflow).
    pub fn create_workflow_as(
        &self,
        definition: WorkflowDefinition,
        user: &str,
    ) -> Result<WorkflowRef, EngineError> {
        self.inner.permit(
            Some(user),
            crate::security::Action::Define,
            Some(&definition.id),
        )?;
        self.create_workflow(definition)
    }

    /// The latest version of workflow `id`.
    pub fn workflow(&self, id: &str) -> Option<Arc<ExecutionPlan>> {
        self.inner.catalogue.latest(id)
    }

    /// The latest version of workflow `id`, or why there is none.
    pub(super) fn known_workflow(&self, id: &str) -> Result<Arc<ExecutionPlan>, EngineError> {
        self.workflow(id)
            .ok_or_else(|| EngineError::UnknownWorkflow { id: id.to_owned() })
    }

    /// Workflow `id` at `version`.
    pub fn workflow_version(&self, id: &str, version: &str) -> Option<Arc<ExecutionPlan>> {
        self.inner.catalogue.version(id, version)
    }

    /// Stores `plan`'s definition under its id and version, when the engine has a store.
    fn put_definition(&self, plan: &ExecutionPlan) -> Result<(), StoreError> {
        let Some(store) = self.inner.store() else {
            return Ok(());
        };
        let definition = plan.definition();
        store.put_definition(
            plan.workflow_id(),
            definition.version.as_deref().unwrap_or_default(),
            &definition.to_json(),
        )
    }

    pub(super) fn keep(&self, plan: ExecutionPlan) -> WorkflowRef {
        self.inner.catalogue.keep(plan)
    }
}
