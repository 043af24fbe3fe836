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
use crate::audit::AuditEvent;
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

/// A waiting step's channel, and the SHA-256 of its parameters when the engine audits.
type Waiting = HashMap<(RunId, StepId), (oneshot::Sender<Verdict>, Option<String>)>;

/// The steps waiting for an answer, by run and step.
#[derive(Debug, Default)]
pub(crate) struct Approvals {
    waiting: Mutex<Waiting>,
}

impl Approvals {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a waiting step (with its parameters' hash, for the audit log); the
    /// returned guard unregisters it when dropped.
    pub(crate) fn wait(
        self: &Arc<Self>,
        run: &RunId,
        step: &StepId,
        parameters_sha256: Option<String>,
    ) -> (oneshot::Receiver<Verdict>, ApprovalGuard) {
        let (sender, receiver) = oneshot::channel();
        let key = (run.clone(), step.clone());
        self.lock().insert(key.clone(), (sender, parameters_sha256));
        let guard = ApprovalGuard {
            approvals: Arc::clone(self),
            key,
        };
        (receiver, guard)
    }

    /// Hands `verdict` to step `step` of run `run`, if it waits, once `audit` took the
    /// entry (given the parameters' hash); the step keeps waiting when it did not.
    fn answer(
        &self,
        run: &RunId,
        step: &str,
        verdict: Verdict,
        audit: impl FnOnce(String) -> Result<(), crate::audit::AuditError>,
    ) -> Result<(), EngineError> {
        let missing = || EngineError::NoPendingApproval {
            run: run.clone(),
            step: step.to_owned(),
        };
        let key = (run.clone(), StepId::new(step));
        let sender = {
            let mut waiting = self.lock();
            let (_, parameters) = waiting.get(&key).ok_or_else(missing)?;
            audit(parameters.clone().unwrap_or_default())?;
            waiting.remove(&key).ok_or_else(missing)?.0
        };
        sender.send(verdict).map_err(|_| missing())
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
    /// [`EngineError::Audit`] when the audit log does not take the entry (the step
    /// keeps waiting).
    pub fn approve(
        &self,
        run: &RunId,
        step: &str,
        by: &str,
        comment: Option<&str>,
    ) -> Result<(), EngineError> {
        self.answer(run, step, Verdict::new(true, by, comment))
    }

    /// Rejects the waiting step `step` of run `run`: the step fails with kind `REJECTED`.
    ///
    /// # Errors
    /// [`EngineError::NoPendingApproval`] when that step is not waiting;
    /// [`EngineError::Audit`] when the audit log does not take the entry (the step
    /// keeps waiting).
    pub fn reject(
        &self,
        run: &RunId,
        step: &str,
        by: &str,
        comment: Option<&str>,
    ) -> Result<(), EngineError> {
        self.answer(run, step, Verdict::new(false, by, comment))
    }

    /// Hands `verdict` to the waiting step once the audit log took its entry.
    fn answer(&self, run: &RunId, step: &str, verdict: Verdict) -> Result<(), EngineError> {
        let inner = &self.inner;
        let by = verdict.by.clone();
        let approved = verdict.approved;
        inner
            .approvals
            .answer(run, step, verdict, |parameters_sha256| {
                inner.audit(Some(&by), || {
                    let (run, step) = (run.as_str().to_owned(), step.to_owned());
                    match approved {
                        true => AuditEvent::StepApproved {
                            run,
                            step,
                            parameters_sha256,
                        },
                        false => AuditEvent::StepRejected {
                            run,
                            step,
                            parameters_sha256,
                        },
                    }
                })
            })
    }
}
