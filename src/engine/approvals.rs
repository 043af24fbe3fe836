//! Answers to `human_approval` steps: the steps that wait, and the host's answers.
//!
//! A waiting step registers itself under its run and step ids and reads its answers
//! from a channel; [`Engine::approve`] and [`Engine::reject`] send them down it. A step
//! without a quorum takes one answer (its registration ends with it); a step with
//! `approval.quorum` / `approval.approvers` keeps its registration, which admits each
//! approver once, until the quorum is reached or someone rejects. The registration ends
//! with the wait (answered, timed out, or the step cancelled), so an answer to a step
//! that no longer waits is refused with [`EngineError::NoPendingApproval`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::channel::mpsc;

use super::{Engine, EngineError};
use crate::audit::{AuditError, AuditEvent};
use crate::definition::StepId;
use crate::plan::Quorum;
use crate::run::RunId;
use crate::security::SecurityError;

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

/// A waiting step's registration: where answers go, for a quorum who may answer and who
/// approved so far, and the SHA-256 of the parameters shown when the engine audits.
struct Waiter {
    sender: mpsc::UnboundedSender<Verdict>,
    quorum: Option<Arc<Quorum>>,
    counted: Vec<String>,
    parameters_sha256: Option<String>,
}

type Waiting = HashMap<(RunId, StepId), Waiter>;

/// The steps waiting for an answer, by run and step.
#[derive(Default)]
pub(crate) struct Approvals {
    waiting: Mutex<Waiting>,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals")
            .field("waiting", &self.lock().len())
            .finish()
    }
}

impl Approvals {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a waiting step (for a quorum: who may answer, and who approved before
    /// a restart; for the audit log, its parameters' hash); the returned guard
    /// unregisters it when dropped.
    pub(crate) fn wait(
        self: &Arc<Self>,
        run: &RunId,
        step: &StepId,
        quorum: Option<Arc<Quorum>>,
        counted: Vec<String>,
        parameters_sha256: Option<String>,
    ) -> (mpsc::UnboundedReceiver<Verdict>, ApprovalGuard) {
        let (sender, receiver) = mpsc::unbounded();
        let key = (run.clone(), step.clone());
        let waiter = Waiter {
            sender,
            quorum,
            counted,
            parameters_sha256,
        };
        self.lock().insert(key.clone(), waiter);
        let guard = ApprovalGuard {
            approvals: Arc::clone(self),
            key,
        };
        (receiver, guard)
    }

    /// Hands `verdict` to step `step` of run `run`, if it waits. A step without a quorum
    /// takes one answer; with one, an approval from someone `roles` admits is counted once
    /// per person until the quorum is reached, and a rejection ends the wait. An answer
    /// admitted is handed on once `audit` took its entry (given the parameters' hash);
    /// the step keeps waiting, the answer uncounted, when it did not.
    fn answer(
        &self,
        run: &RunId,
        step: &str,
        verdict: Verdict,
        roles: &dyn Fn(&str) -> Vec<String>,
        audit: impl FnOnce(String) -> Result<(), AuditError>,
    ) -> Result<(), Refusal> {
        let key = (run.clone(), StepId::new(step));
        let mut waiting = self.lock();
        let Some(waiter) = waiting.get_mut(&key) else {
            return Err(Refusal::NotWaiting);
        };
        let last = match &waiter.quorum {
            None => true,
            Some(quorum) => {
                if !quorum.admits(&verdict.by, &roles(&verdict.by)) {
                    return Err(Refusal::NotApprover);
                }
                if waiter.counted.contains(&verdict.by) {
                    return Err(Refusal::Counted);
                }
                !verdict.approved
                    || waiter.counted.len().saturating_add(1)
                        >= usize::try_from(quorum.need()).unwrap_or(1)
            }
        };
        audit(waiter.parameters_sha256.clone().unwrap_or_default()).map_err(Refusal::Audit)?;
        if verdict.approved && waiter.quorum.is_some() {
            waiter.counted.push(verdict.by.clone());
        }
        let sent = waiter.sender.unbounded_send(verdict).is_ok();
        if last || !sent {
            waiting.remove(&key);
        }
        if sent {
            Ok(())
        } else {
            Err(Refusal::NotWaiting)
        }
    }
}

/// Why an answer did not reach a step.
enum Refusal {
    NotWaiting,
    NotApprover,
    Counted,
    Audit(AuditError),
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
    /// ([`EngineBuilder::four_eyes`](super::EngineBuilder::four_eyes));
    /// [`EngineError::Audit`] when the audit log does not take the entry (the step
    /// keeps waiting).
    pub fn approve(
        &self,
        run: &RunId,
        step: &str,
        by: &str,
        comment: Option<&str>,
    ) -> Result<(), EngineError> {
        self.permit_answer(run, step, by, true)?;
        self.answer(run, step, Verdict::new(true, by, comment))
    }

    /// Rejects the waiting step `step` of run `run`: the step fails with kind `REJECTED`.
    ///
    /// # Errors
    /// [`EngineError::NoPendingApproval`] when that step is not waiting;
    /// [`EngineError::Security`] when the engine checks permissions and `by` may not
    /// `approve` the run's workflow (the starter may reject, four eyes or not);
    /// [`EngineError::Audit`] when the audit log does not take the entry (the step
    /// keeps waiting).
    pub fn reject(
        &self,
        run: &RunId,
        step: &str,
        by: &str,
        comment: Option<&str>,
    ) -> Result<(), EngineError> {
        self.permit_answer(run, step, by, false)?;
        self.answer(run, step, Verdict::new(false, by, comment))
    }

    /// Hands `verdict` to the waiting step; a refusal of a quorum's approver passes
    /// through [`Inner::refuse`](super::Inner::refuse).
    fn answer(&self, run: &RunId, step: &str, verdict: Verdict) -> Result<(), EngineError> {
        let inner = &self.inner;
        let roles = |user: &str| {
            inner
                .guard
                .permissions
                .as_ref()
                .map(|permissions| permissions.roles(user))
                .unwrap_or_default()
        };
        let by = verdict.by.clone();
        let approved = verdict.approved;
        let audit = |parameters_sha256| {
            inner.audit(Some(&by), || {
                let (run, step) = (run.as_str().to_owned(), step.to_owned());
                if approved {
                    AuditEvent::StepApproved {
                        run,
                        step,
                        parameters_sha256,
                    }
                } else {
                    AuditEvent::StepRejected {
                        run,
                        step,
                        parameters_sha256,
                    }
                }
            })
        };
        let refused = |error| inner.refuse(error);
        match inner.approvals.answer(run, step, verdict, &roles, audit) {
            Ok(()) => Ok(()),
            Err(Refusal::NotWaiting) => Err(EngineError::NoPendingApproval {
                run: run.clone(),
                step: step.to_owned(),
            }),
            Err(Refusal::NotApprover) => Err(refused(SecurityError::NotApprover {
                user: by,
                run: run.to_string(),
                step: step.to_owned(),
            })),
            Err(Refusal::Counted) => Err(refused(SecurityError::AlreadyApproved {
                user: by,
                run: run.to_string(),
                step: step.to_owned(),
            })),
            Err(Refusal::Audit(error)) => Err(error.into()),
        }
    }
}
