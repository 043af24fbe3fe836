//! Self-healing in the run: the situation of a failed step weighed (`engine/heal.rs`
//! scores it), and the recovery chosen applied to the book.

use super::Execution;
use super::transition::Transition;
use crate::definition::RecoveryStrategy;
use crate::engine::heal::{self, Chosen};
use crate::engine::step::Failure;
use crate::run::{FailureKind, RecoveryDecision, StepStatus};

impl Execution {
    /// The recovery self-healing chooses for step `index`'s failure, if one fits.
    pub(super) fn heal(&self, index: usize, kind: FailureKind, message: &str) -> Option<Chosen> {
        let book = &self.book;
        let step = book.plan.step(index)?;
        let untried_agent = step.calls_one_agent()
            && step.agent_task().is_some_and(|task| {
                self.inner
                    .registry
                    .has_callable(task, book.healing.failed_agents(index))
            });
        let rollback = if step.recovery().allows(RecoveryStrategy::Rollback) {
            book.rollback_scope(index)
        } else {
            None
        };
        let fallback = step.recovery().fallback.filter(|&fallback| {
            book.status(fallback) == StepStatus::Pending
                && !book.healing.standing_in.contains_key(&fallback)
        });
        let situation = heal::Situation {
            step,
            kind,
            applied: book.healing.applied(index),
            untried_agent,
            rollback: rollback.as_ref().map(|scope| scope.redo.len()),
            fallback: fallback.is_some(),
        };
        let candidate = heal::choose(&situation)?;
        Some(Chosen {
            decision: RecoveryDecision {
                strategy: candidate.strategy,
                confidence: candidate.confidence,
                cost: candidate.cost,
                score: candidate.score,
                kind,
                message: message.to_owned(),
            },
            rollback: rollback.filter(|_| candidate.strategy == RecoveryStrategy::Rollback),
            fallback: fallback.filter(|_| candidate.strategy == RecoveryStrategy::AlternativePath),
        })
    }

    /// Applies a recovery journaled for step `index` (see `Transition::Recovering`).
    pub(super) fn recover(&mut self, index: usize, recovery: Chosen, failure: Failure) {
        match recovery.decision.strategy {
            RecoveryStrategy::Retry => {
                self.book.healing.clear_failed_agents(index);
                self.book.again(index);
            }
            RecoveryStrategy::Substitute => self.book.again(index),
            RecoveryStrategy::Skip => {
                let reason = format!(
                    "recovered by SKIP (the step is optional) after: {}",
                    failure.message
                );
                self.skip(index, reason);
            }
            RecoveryStrategy::AlternativePath => {
                let Some(fallback) = recovery.fallback else {
                    return;
                };
                // The step waits, running in spirit, while its fallback stands in.
                self.book.set_status(index, StepStatus::Running);
                self.book.healing.standing_in.insert(fallback, index);
                self.book.healing.failures.insert(index, failure);
                self.book.release_edge(fallback);
            }
            RecoveryStrategy::Rollback => {
                let Some(scope) = recovery.rollback else {
                    return;
                };
                self.apply(Transition::RolledBack { index, scope });
            }
        }
    }
}
