//! The engine's side of [`crate::security`]: the checks made before the engine acts,
//! and [`Inner::refuse`], the one place every refusal passes (logged, and audited as a
//! `permissionRefused` entry when the engine has an audit log).

use std::sync::Arc;

use super::{Engine, EngineError, Inner, RunOptions};
use crate::plan::ExecutionPlan;
use crate::run::RunId;
use crate::security::{
    Action, PermissionRequest, PermissionService, RunRequest, SecurityAnalyzer, SecurityError,
    check_resources,
};

/// What the engine checks, as built.
#[derive(Default)]
pub(crate) struct Guard {
    /// Who may do what; none: everything is allowed.
    pub(super) permissions: Option<Arc<dyn PermissionService>>,
    /// Whether a run's starter is refused as its approver.
    pub(super) four_eyes: bool,
    /// Checks made before a run starts, in order.
    pub(super) analyzers: Vec<Arc<dyn SecurityAnalyzer>>,
}

impl Inner {
    /// Turns a refusal into the engine's error, and logs it: every refusal the engine
    /// makes on security grounds passes here, once.
    pub(crate) fn refuse(&self, error: SecurityError) -> EngineError {
        tracing::warn!(target: "tradeflow::security", user = error.user(), refusal = %error, "refused");
        // The refusal stands whether or not the log takes its entry (a failed append
        // waits, in order, and holds every later audited operation back).
        let _ = self.audit_done(error.user(), || refusal_entry(&error));
        EngineError::Security(error)
    }

    /// Checks that `user` may do `action` on `target`, when the engine checks
    /// permissions; `None` for the user is refused then.
    pub(super) fn permit(
        &self,
        user: Option<&str>,
        action: Action,
        target: Option<&str>,
    ) -> Result<(), EngineError> {
        let Some(permissions) = &self.guard.permissions else {
            return Ok(());
        };
        let Some(user) = user else {
            return Err(self.refuse(SecurityError::NoUser {
                action,
                target: target.map(str::to_owned),
            }));
        };
        permissions
            .check(&PermissionRequest::new(user, action, target))
            .map_err(|error| self.refuse(error))
    }

    /// Checks that `by` may do `action` on live run `run` (on its workflow). A run that
    /// is not live passes: the caller reports it as it always has.
    pub(super) fn permit_on_run(
        &self,
        run: &RunId,
        by: &str,
        action: Action,
    ) -> Result<(), EngineError> {
        if self.guard.permissions.is_none() {
            return Ok(());
        }
        match self.controls.owner(run) {
            Some(owner) => self.permit(Some(by), action, Some(&owner.workflow)),
            None => Ok(()),
        }
    }
}

impl Engine {
    /// Before a run of `plan` starts: `execute`, and the resource caps of every step.
    pub(super) fn permit_start(
        &self,
        plan: &ExecutionPlan,
        options: &RunOptions,
    ) -> Result<(), EngineError> {
        let inner = &self.inner;
        let Some(permissions) = &inner.guard.permissions else {
            return Ok(());
        };
        if options.host && options.user.is_none() {
            return Ok(());
        }
        let workflow = plan.workflow_id();
        inner.permit(options.user.as_deref(), Action::Execute, Some(workflow))?;
        let user = options.user.as_deref().unwrap_or_default();
        let caps = permissions.resource_caps(user, workflow);
        check_resources(&caps, user, plan).map_err(|error| inner.refuse(error))
    }

    /// Before a run of `plan` starts, after every other check: the analyzers.
    pub(super) fn analyze_start(
        &self,
        plan: &ExecutionPlan,
        options: &RunOptions,
    ) -> Result<(), EngineError> {
        let inner = &self.inner;
        if inner.guard.analyzers.is_empty() {
            return Ok(());
        }
        let request = RunRequest::new(
            options.user.as_deref(),
            plan,
            &options.input,
            inner.clock.now(),
        );
        for analyzer in &inner.guard.analyzers {
            analyzer
                .analyze(&request)
                .map_err(|error| inner.refuse(error))?;
        }
        Ok(())
    }

    /// Before `by`'s answer reaches step `step` of run `run`: `approve` on the run's
    /// workflow, and four eyes for an approval.
    pub(super) fn permit_answer(
        &self,
        run: &RunId,
        step: &str,
        by: &str,
        approved: bool,
    ) -> Result<(), EngineError> {
        let inner = &self.inner;
        let guard = &inner.guard;
        if guard.permissions.is_none() && !guard.four_eyes {
            return Ok(());
        }
        // A run that is not live has no waiting step: the answer fails as it always has.
        let Some(owner) = inner.controls.owner(run) else {
            return Ok(());
        };
        inner.permit(Some(by), Action::Approve, Some(&owner.workflow))?;
        if approved && guard.four_eyes && owner.started_by.as_deref() == Some(by) {
            return Err(inner.refuse(SecurityError::FourEyes {
                user: by.to_owned(),
                run: run.to_string(),
                step: step.to_owned(),
            }));
        }
        Ok(())
    }
}

/// The audit entry of a refusal: the action, the workflow or other target, and the step
/// it names, with the refusal's message.
fn refusal_entry(error: &SecurityError) -> crate::audit::AuditEvent {
    let (action, workflow, step) = match error {
        SecurityError::Denied { action, target, .. } | SecurityError::NoUser { action, target } => {
            (action.as_str(), target.clone(), None)
        }
        SecurityError::OverCap { workflow, step, .. } => (
            Action::Execute.as_str(),
            Some(workflow.clone()),
            Some(step.clone()),
        ),
        SecurityError::FourEyes { step, .. }
        | SecurityError::NotApprover { step, .. }
        | SecurityError::AlreadyApproved { step, .. } => {
            (Action::Approve.as_str(), None, Some(step.clone()))
        }
        SecurityError::RateLimited { workflow, .. } | SecurityError::Analyzer { workflow, .. } => {
            (Action::Execute.as_str(), Some(workflow.clone()), None)
        }
    };
    crate::audit::AuditEvent::PermissionRefused {
        action: action.to_owned(),
        workflow,
        step,
        reason: error.to_string(),
    }
}
