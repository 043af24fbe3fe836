//! A run's `resourceRequirements`: the workflow's, held for the whole run, and each
//! step's, held while the step's work runs.
//!
//! With a resource manager, the run first waits for the workflow's requirements (polled
//! by the loop beside host commands and the deadline, so a run that waits can still be
//! cancelled or time out), and the future of a step with requirements waits for them
//! before its work, holding the guard until that work ends or the future is dropped.

use std::future::Future;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::Execution;
use crate::definition::StepId;
use crate::engine::step::{Failure, Worked};
use crate::plan::{PlanStep, Resources};
use crate::resource::{AllocationGuard, ResourceError, ResourceManager, ResourceRequest};
use crate::run::{FailureKind, RunError};

/// The wait for the workflow's `resourceRequirements`.
pub(super) type WorkflowAdmission = BoxFuture<'static, Result<AllocationGuard, ResourceError>>;

impl Execution {
    /// The wait for the workflow's `resourceRequirements`, when the engine has a resource
    /// manager and the workflow asks for some of what it pools. A plan the pool can never
    /// serve (one not checked when it was added) ends the run `FAILED` at once instead.
    pub(super) fn admission(&mut self) -> Option<WorkflowAdmission> {
        let manager = Arc::clone(self.inner.resources.as_ref()?);
        if let Err(problems) = manager.check_plan(&self.book.plan) {
            let step = problems
                .first()
                .and_then(|problem| problem.at.step_id().cloned());
            let message = problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            self.cannot_run(step, message);
            return None;
        }
        let request = request_for(&*manager, self.book.plan.resources())?;
        Some(async move { manager.allocate_resources(request).await }.boxed())
    }

    /// The run ends `FAILED`: its resources can never be granted.
    pub(super) fn cannot_run(&mut self, step_id: Option<StepId>, message: String) {
        self.book.fail_run(RunError {
            step_id,
            kind: FailureKind::Resources,
            message,
        });
    }

    /// What step `step`'s work must hold while it runs, when the engine pools any of its
    /// requirements.
    pub(super) fn step_resources(&self, step: &PlanStep) -> Option<Holding> {
        let needs = step.resources()?;
        let manager = self.inner.resources.as_ref()?;
        let request = request_for(&**manager, [needs])?;
        Some(Holding {
            manager: Arc::clone(manager),
            request,
            step: step.id().clone(),
        })
    }
}

/// A step's requirements, as one request to the engine's resource manager.
pub(super) struct Holding {
    manager: Arc<dyn ResourceManager>,
    request: ResourceRequest,
    step: StepId,
}

impl Holding {
    /// `work`, run once the resources are granted; they go back when the work ends or
    /// this future is dropped (the run cancelled it).
    pub(super) async fn hold(self, work: impl Future<Output = Worked>) -> Worked {
        match self.manager.allocate_resources(self.request).await {
            Ok(guard) => {
                let worked = work.await;
                drop(guard);
                worked
            }
            Err(error) => Worked::never_started(Failure::before_calls(
                FailureKind::Resources,
                format!("step `{}`: resourceRequirements: {error}", self.step),
            )),
        }
    }
}

/// `requirements` as one request for the kinds `manager` pools (the others are not
/// limited); none when that leaves nothing to ask for.
fn request_for<'a>(
    manager: &dyn ResourceManager,
    requirements: impl IntoIterator<Item = &'a Resources>,
) -> Option<ResourceRequest> {
    let mut request = ResourceRequest::from_requirements(requirements);
    request.retain_kinds(|kind| manager.capacity(kind).is_some());
    (!request.is_empty()).then_some(request)
}
