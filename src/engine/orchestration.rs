//! The engine's contract, [`OrchestrationEngine`], for hosts that substitute or wrap it.
//!
//! [`Engine`] implements it by forwarding to its own methods. A host wraps the engine to
//! add what this crate does not decide for it (permissions, auditing, rate limits): the
//! wrapper implements the trait and calls the engine inside.

use serde_json::Value;

use super::{Engine, EngineError, RunReport, WorkflowRef};
use crate::definition::WorkflowDefinition;
use crate::run::RunId;

/// The engine's contract, for hosts that want to substitute or wrap it.
#[async_trait::async_trait]
pub trait OrchestrationEngine: Send + Sync {
    /// Validates, compiles and keeps a workflow (by id and version).
    ///
    /// # Errors
    /// [`EngineError::Invalid`] with every problem of the definition;
    /// [`EngineError::OverCapacity`] when its `resourceRequirements` could never be
    /// granted by the engine's resource pool.
    fn create_workflow(&self, definition: WorkflowDefinition) -> Result<WorkflowRef, EngineError>;

    /// Runs the latest version of workflow `workflow_id` with `input` to its end.
    ///
    /// # Errors
    /// [`EngineError::UnknownWorkflow`]; [`EngineError::NoAgents`] when the engine checks
    /// agents before a run ([`AgentCheck::BeforeStart`](super::AgentCheck::BeforeStart)).
    /// A run that fails is not an error: its report says how it ended.
    async fn execute_workflow(
        &self,
        workflow_id: &str,
        input: Value,
    ) -> Result<RunReport, EngineError>;

    /// Approves the waiting step `step` of run `run`.
    ///
    /// # Errors
    /// [`EngineError::NoPendingApproval`] when that step is not waiting.
    fn approve(
        &self,
        run: &RunId,
        step: &str,
        by: &str,
        comment: Option<&str>,
    ) -> Result<(), EngineError>;

    /// Rejects the waiting step `step` of run `run` (the step fails).
    ///
    /// # Errors
    /// [`EngineError::NoPendingApproval`] when that step is not waiting.
    fn reject(
        &self,
        run: &RunId,
        step: &str,
        by: &str,
        comment: Option<&str>,
    ) -> Result<(), EngineError>;

    /// Pauses a run: it starts no new step until resumed; steps in flight finish.
    ///
    /// # Errors
    /// [`EngineError::NotRunning`] when the run is not live.
    fn pause_workflow(&self, run: &RunId) -> Result<(), EngineError>;

    /// Resumes a paused run.
    ///
    /// # Errors
    /// [`EngineError::NotRunning`] when the run is not live.
    fn resume_workflow(&self, run: &RunId) -> Result<(), EngineError>;

    /// Cancels a run: steps in flight are stopped and the run ends `CANCELLED`.
    ///
    /// # Errors
    /// [`EngineError::NotRunning`] when the run is not live.
    fn cancel_workflow(&self, run: &RunId, by: &str) -> Result<(), EngineError>;
}

#[async_trait::async_trait]
impl OrchestrationEngine for Engine {
    fn create_workflow(&self, definition: WorkflowDefinition) -> Result<WorkflowRef, EngineError> {
        Engine::create_workflow(self, definition)
    }

    async fn execute_workflow(
        &self,
        workflow_id: &str,
        input: Value,
    ) -> Result<RunReport, EngineError> {
        Engine::execute_workflow(self, workflow_id, input).await
    }

    fn approve(
        &self,
        run: &RunId,
        step: &str,
        by: &str,
        comment: Option<&str>,
    ) -> Result<(), EngineError> {
        Engine::approve(self, run, step, by, comment)
    }

    fn reject(
        &self,
        run: &RunId,
        step: &str,
        by: &str,
        comment: Option<&str>,
    ) -> Result<(), EngineError> {
        Engine::reject(self, run, step, by, comment)
    }

    fn pause_workflow(&self, run: &RunId) -> Result<(), EngineError> {
        Engine::pause_workflow(self, run)
    }

    fn resume_workflow(&self, run: &RunId) -> Result<(), EngineError> {
        Engine::resume_workflow(self, run)
    }

    fn cancel_workflow(&self, run: &RunId, by: &str) -> Result<(), EngineError> {
        Engine::cancel_workflow(self, run, by)
    }
}
