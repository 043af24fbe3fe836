//! Answers to `human_approval` steps: the steps that wait, and the host's answers.
//!
//! A waiting step registers itself under its run and step ids and waits on a one-shot
//! channel; [`Engine::approve`] and [`Engine::reject`] send the answer down it. The
//! registration ends with the wait (answered, timed out, or the step cancelled), so an
//! answer to a step that no longer waits is refused with
//! [`EngineError::NoPendingApproval`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::channel::oneshot;

use super::{Engine, EngineError};
use crate::definition::StepId;
use crate::run::RunId;

/// A person's answer to a waiting step, as the step acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) approved: bool,
    pub(crate) by: String,
    pub(crate) comment: Option<String>,
}

impl Verdict {
    fn new(approved: bool, by: &str, comment: Option<&str>) -> Self {
        Self {
            approved,
            by: by.to_owned(),
            comment: comment.map(str::to_owned),
        }
    }
}

type Waiting = HashMap<(RunId, StepId), oneshot::Sender<Verdict>>;

/// The steps waiting for an answer, by run and step.
#[derive(Debug, Default)]
pub(crate) struct Approvals {
    waiting: Mutex<Waiting>,
}

impl Approvals {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a waiting step; the returned guard unregisters it when dropped.
    pub(crate) fn wait(
        self: &Arc<Self>,
        run: &RunId,
        step: &StepId,
    ) -> (oneshot::Receiver<Verdict>, ApprovalGuard) {
        let (sender, receiver) = oneshot::channel();
        let key = (run.clone(), step.clone());
        self.lock().insert(key.clone(), sender);
        let guard = ApprovalGuard {
            approvals: Arc::clone(self),
            key,
        };
        (receiver, guard)
    }

    /// Hands `verdict` to step `step` of run `run`, if it waits.
    fn answer(&self, run: &RunId, step: &str, verdict: Verdict) -> Result<(), EngineError> {
        let sender = self.lock().remove(&(run.clone(), StepId::new(step)));
        let missing = || EngineError::NoPendingApproval {
            run: run.clone(),
            step: step.to_owned(),
        };
        sender
            .ok_or_else(missing)?
            .send(verdict)
            .map_err(|_| missing())
    }
}

/// Removes a waiting step's registration when the wait ends (answered, timed out or
/// cancelled).
pub(crate) struct ApprovalGuard {
    approvals: Arc<Approvals>,
    key: (RunId, StepId),
}

impl Drop for ApprovalGuard {
    fn drop(&mut self) {
        self.approvals.lock().remove(&self.key);
    }
}

impl Engine {
    /// Approves the waiting step `step` of run `run`, as `by`, with an optional comment.
    ///
    /// # Errors
    /// [`EngineError::NoPendingApproval`] when that step is not waiting;
    /// [`EngineError::Security`] when the engine checks permissions and `by` may not
    /// `approve` the run's workflow, or with four eyes, when `by` started the run
    /// ([`EngineBuilder::four_eyes`](super::EngineBuilder::four_eyes)).
    pub fn approve(
        &self,
        run: &RunId,
        step: &str,
        by: &str,
        comment: Option<&str>,
    ) -> Result<(), EngineError> {
        self.permit_answer(run, step, by, true)?;
        let verdict = Verdict::new(true, by, comment);
        self.inner.approvals.answer(run, step, verdict)
    }

    /// Rejects the waiting step `step` of run `run`: the step fails with kind `REJECTED`.
    ///
    /// # Errors
    /// [`EngineError::NoPendingApproval`] when that step is not waiting;
    /// [`EngineError::Security`] when the engine checks permissions and `by` may not
    /// `approve` the run's workflow (the starter may reject, four eyes or not).
    pub fn reject(
        &self,
        run: &RunId,
        step: &str,
        by: &str,
        comment: Option<&str>,
    ) -> Result<(), EngineError> {
        self.permit_answer(run, step, by, false)?;
        let verdict = Verdict::new(false, by, comment);
        self.inner.approvals.answer(run, step, verdict)
    }
}
