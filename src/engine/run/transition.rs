//! Transitions: the changes a run makes to itself, each journaled, applied and announced
//! in one place.
//!
//! Whatever the run decides — a step skipped, completed, failed, recovering or rolled
//! back; the host's pause, resume or cancel — is a [`Transition`].
//! [`Execution::apply`] makes the three moves every transition needs, in this order:
//!
//! 1. its journal entries go to the run's batch (with a store; appended with the next
//!    entry that must be durable, or when the run would wait: group commit);
//! 2. the [`Book`] changes (statuses, outputs, reports, the ready set, self-healing);
//! 3. its event goes to the subscribers (built only when someone listens).
//!
//! So the journal, the run's state and what subscribers see cannot drift apart: a new
//! transition is one variant with its entries, its event and its change to the book.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::Execution;
use super::book::Book;
use crate::definition::{FailureHandling, StepId};
use crate::engine::RunEvent;
use crate::engine::heal::RollbackScope;
use crate::engine::step::{Failure, Success};
use crate::plan::ExecutionPlan;
use crate::run::{RecoveryDecision, RunError, RunId, RunStatus, StepError, StepStatus};
use crate::store::{DecisionState, JournalEntry};

/// One change to a run.
#[derive(Debug)]
pub(super) enum Transition {
    /// Step `index` does not run, because of `reason`.
    Skipped { index: usize, reason: String },
    /// Step `index` completed (`success.attempts` counts every call of the step).
    Completed { index: usize, success: Success },
    /// Step `index` failed for good (`failure.attempts` counts every call of the step).
    Failed { index: usize, failure: Failure },
    /// Step `index` failed and self-healing recovers it as `decision` says.
    Recovering {
        index: usize,
        failure: Failure,
        decision: RecoveryDecision,
    },
    /// A rollback for step `index` returns the steps of `scope` to pending.
    RolledBack { index: usize, scope: RollbackScope },
    /// `decision` step `index` chose, before its first call.
    Decided {
        index: usize,
        decision: DecisionState,
    },
    /// Step `index` starts with the adaptations `ids` applied (empty: none held), before
    /// its first call.
    Adapted { index: usize, ids: Vec<String> },
    /// The host paused the run.
    Paused {
        /// Who paused it.
        by: String,
    },
    /// The host resumed the run.
    Resumed {
        /// Who resumed it.
        by: String,
    },
    /// The host cancelled the run.
    Cancelled { by: String },
}

impl Execution {
    /// Applies `transition`: journals it, changes the book, and announces it.
    pub(super) fn apply(&mut self, mut transition: Transition) {
        self.redact_transition(&mut transition);
        transition.trace(&self.book.plan);
        let now = self.inner.clock.now();
        self.applied_at = Some(now);
        let scrubber = self.scrubber.as_deref();
        self.inner.defer(&self.batch, || {
            transition.entries(&self.book.plan, scrubber, now)
        });
        let event = self
            .inner
            .listening()
            .then(|| transition.event(&self.run_id, &self.book.plan, now))
            .flatten();
        self.book.apply(transition);
        if let Some(event) = event {
            self.inner.emit(|| event);
        }
    }
}

impl Transition {
    /// The step the transition is about, if it is about one.
    fn step(&self) -> Option<usize> {
        match self {
            Self::Skipped { index, .. }
            | Self::Completed { index, .. }
            | Self::Failed { index, .. }
            | Self::Recovering { index, .. }
            | Self::RolledBack { index, .. } => Some(*index),
            // Deciding is part of starting: the step's launch is not settled by it.
            Self::Decided { .. }
            | Self::Adapted { .. }
            | Self::Paused { .. }
            | Self::Resumed { .. }
            | Self::Cancelled { .. } => None,
        }
    }

    /// Logs the transition with `tracing` (target `tradeflow::run`, inside the run's
    /// span): failures and recoveries at warn level with their kind, adaptations,
    /// pauses, resumptions and cancellations at info level, completions and skips at
    /// debug level. Never a value, never a message: those may hold what the run's
    /// `sensitive` names redact, and a disabled level costs one check.
    fn trace(&self, plan: &ExecutionPlan) {
        let id = |index: usize| plan.step(index).map_or("?", |step| step.id().as_str());
        match self {
            Self::Skipped { index, .. } => {
                tracing::debug!(target: "tradeflow::run", step_id = id(*index), "step skipped");
            }
            Self::Completed { index, success } => tracing::debug!(
                target: "tradeflow::run",
                step_id = id(*index),
                attempts = success.attempts,
                "step completed"
            ),
            // A failure self-healing recovers says how (`recovery`).
            Self::Failed { index, failure } | Self::Recovering { index, failure, .. } => {
                let recovery = match self {
                    Self::Recovering { decision, .. } => Some(decision.strategy),
                    _ => None,
                };
                tracing::warn!(
                    target: "tradeflow::run",
                    step_id = id(*index),
                    kind = failure.kind.as_str(),
                    attempts = failure.attempts,
                    recovery = recovery.map(tracing::field::debug),
                    "step failed"
                );
            }
            Self::RolledBack { index, scope } => tracing::info!(
                target: "tradeflow::run",
                step_id = id(*index),
                redo = scope.redo.len(),
                "rolled back to a checkpoint"
            ),
            Self::Decided { index, decision } => tracing::info!(
                target: "tradeflow::run",
                step_id = id(*index),
                option = %decision.option,
                "decision made"
            ),
            Self::Adapted { ids, .. } if ids.is_empty() => {}
            Self::Adapted { index, ids } => tracing::info!(
                target: "tradeflow::run",
                step_id = id(*index),
                adaptations = ?ids,
                "step adapted"
            ),
            Self::Paused { by } => tracing::info!(target: "tradeflow::run", by = %by, "run paused"),
            Self::Resumed { by } => {
                tracing::info!(target: "tradeflow::run", by = %by, "run resumed")
            }
            Self::Cancelled { by } => {
                tracing::info!(target: "tradeflow::run", by = %by, "run cancelled");
            }
        }
    }

    /// The journal entries that record the transition.
    /// Outputs are written as `scrubber` and the plan's `sensitive` names redact them.
    fn entries(
        &self,
        plan: &ExecutionPlan,
        scrubber: Option<&crate::plan::Scrubber>,
        at: DateTime<Utc>,
    ) -> Vec<JournalEntry> {
        let id = |index: usize| step_id(plan, index);
        match self {
            Self::Skipped { index, reason } => vec![JournalEntry::StepSkipped {
                step_id: id(*index),
                reason: reason.clone(),
                at,
            }],
            Self::Completed { index, success } => vec![
                JournalEntry::StepCompleted {
                    step_id: id(*index),
                    output: crate::plan::redacted(plan.sensitive(), scrubber, &success.output),
                    attempts: success.attempts,
                    agent_id: success.agent.clone(),
                    agent_ids: success.agents.clone(),
                    approved_by: success.approved_by.clone(),
                    at,
                },
                JournalEntry::Checkpoint {
                    after_step: id(*index),
                    at,
                },
            ],
            Self::Failed { index, failure } => vec![failed(id(*index), failure, at)],
            Self::Recovering {
                index,
                failure,
                decision,
            } => vec![
                failed(id(*index), failure, at),
                JournalEntry::RecoveryDecided {
                    step_id: id(*index),
                    decision: decision.clone(),
                    at,
                },
            ],
            Self::RolledBack { index, scope } => vec![JournalEntry::RolledBack {
                step_id: id(*index),
                to_checkpoint: scope.checkpoint.map(id),
                redo: scope.redo.iter().map(|&at| id(at)).collect(),
                at,
            }],
            Self::Decided { index, decision } => vec![JournalEntry::DecisionMade {
                step_id: id(*index),
                option: decision.option.clone(),
                context_key: decision.context_key.clone(),
                policy: decision.policy,
                prior_scores: decision.prior_scores.clone(),
                at,
            }],
            Self::Adapted { index, ids } => vec![JournalEntry::AdaptationsApplied {
                step_id: id(*index),
                ids: ids.clone(),
                at,
            }],
            Self::Paused { by } => vec![JournalEntry::RunPaused {
                by: Some(by.clone()),
                at,
            }],
            Self::Resumed { by } => vec![JournalEntry::RunResumed {
                by: Some(by.clone()),
                at,
            }],
            Self::Cancelled { by } => vec![JournalEntry::RunCancelled { by: by.clone(), at }],
        }
    }

    /// The event that announces the transition, if one does.
    fn event(&self, run: &RunId, plan: &ExecutionPlan, at: DateTime<Utc>) -> Option<RunEvent> {
        let run_id = run.clone();
        let id = |index: usize| step_id(plan, index);
        Some(match self {
            Self::Skipped { index, reason } => RunEvent::StepSkipped {
                run_id,
                step_id: id(*index),
                reason: reason.clone(),
                at,
            },
            Self::Completed { index, success } => RunEvent::StepCompleted {
                run_id,
                step_id: id(*index),
                agent_id: success.agent.clone(),
                attempts: success.attempts,
                at,
            },
            Self::Failed { index, failure } => RunEvent::StepFailed {
                run_id,
                step_id: id(*index),
                kind: failure.kind,
                message: failure.message.clone(),
                at,
            },
            Self::Recovering {
                index, decision, ..
            } => RunEvent::StepRecovering {
                run_id,
                step_id: id(*index),
                decision: decision.clone(),
                at,
            },
            Self::RolledBack { .. } => return None,
            Self::Decided { index, decision } => RunEvent::StepDecided {
                run_id,
                step_id: id(*index),
                option: decision.option.clone(),
                context_key: decision.context_key.clone(),
                policy: decision.policy,
                at,
            },
            Self::Adapted { ids, .. } if ids.is_empty() => return None,
            Self::Adapted { index, ids } => RunEvent::StepAdapted {
                run_id,
                step_id: id(*index),
                ids: ids.clone(),
                at,
            },
            Self::Paused { by } => RunEvent::RunPaused {
                run_id,
                by: by.clone(),
                at,
            },
            Self::Resumed { by } => RunEvent::RunResumed {
                run_id,
                by: by.clone(),
                at,
            },
            Self::Cancelled { by } => RunEvent::RunCancelled {
                run_id,
                by: by.clone(),
                at,
            },
        })
    }
}

/// Step `index`'s id (`?` for an index the plan does not have, which the run never uses).
fn step_id(plan: &ExecutionPlan, index: usize) -> StepId {
    plan.step(index)
        .map_or_else(|| StepId::new("?"), |step| step.id().clone())
}

/// The `stepFailed` entry of `failure`.
fn failed(step_id: StepId, failure: &Failure, at: DateTime<Utc>) -> JournalEntry {
    JournalEntry::StepFailed {
        step_id,
        kind: failure.kind,
        message: failure.message.clone(),
        attempts: failure.attempts,
        at,
    }
}

impl Book {
    /// Changes the book as `transition` says.
    pub(super) fn apply(&mut self, transition: Transition) {
        if let Some(index) = transition.step() {
            // The step's launch is settled: its calls are in its report (or in the prior
            // attempts of a recovery) from now on.
            self.settled(index);
        }
        match transition {
            Transition::Skipped { index, reason } => self.skipped(index, reason),
            Transition::Completed { index, success } => self.completed(index, success),
            Transition::Failed { index, failure } => self.failed(index, failure),
            Transition::Recovering {
                index,
                failure,
                decision,
            } => {
                self.healing.set_prior_attempts(index, failure.attempts);
                self.healing.applied_now(index, decision.strategy);
                if let Some(report) = self.report_mut(index) {
                    report.recoveries.push(decision);
                }
            }
            Transition::RolledBack { scope, .. } => self.rolled_back(&scope),
            Transition::Decided { index, decision } => {
                self.decisions.insert(index, decision);
            }
            Transition::Adapted { index, ids } => {
                self.adaptations.insert(index, ids);
            }
            Transition::Paused { .. } => self.paused = true,
            Transition::Resumed { .. } => self.paused = false,
            Transition::Cancelled { .. } => self.end = Some(RunStatus::Cancelled),
        }
    }

    fn skipped(&mut self, index: usize, reason: String) {
        self.set_status(index, StepStatus::Skipped);
        // A step skipped after calls (self-healing's SKIP) says how many it made.
        let calls = self.healing.prior_attempts(index);
        if let Some(report) = self.report_mut(index) {
            report.status = StepStatus::Skipped;
            report.reason = Some(reason);
            if calls > 0 {
                report.attempts = Some(calls);
            }
        }
        self.release(index);
    }

    fn completed(&mut self, index: usize, success: Success) {
        let calls_agents = self
            .plan
            .step(index)
            .is_some_and(|step| step.agent_task().is_some());
        self.healing.completed.push(index);
        if let Some(report) = self.report_mut(index) {
            report.status = StepStatus::Completed;
            report.attempts = calls_agents.then_some(success.attempts);
            report.agent_id = success.agent;
            report.agent_ids = success.agents;
            report.approved_by = success.approved_by;
            report.error = None;
        }
        self.set_status(index, StepStatus::Completed);
        self.set_output(index, Some(Arc::new(success.output)));
        self.release(index);
    }

    fn failed(&mut self, index: usize, failure: Failure) {
        let plan = Arc::clone(&self.plan);
        let Some(step) = plan.step(index) else { return };
        let Failure {
            kind,
            message,
            attempts,
            agent,
        } = failure;
        if let Some(report) = self.report_mut(index) {
            report.status = StepStatus::Failed;
            report.attempts = step.agent_task().is_some().then_some(attempts);
            report.agent_id = agent;
            report.error = Some(StepError {
                kind,
                message: message.clone(),
            });
        }
        self.set_status(index, StepStatus::Failed);
        if !step.is_optional() {
            if self.error.is_none() {
                self.error = Some(RunError {
                    step_id: Some(step.id().clone()),
                    kind,
                    message,
                });
            }
            if plan.policy().failure_handling == FailureHandling::StopOnFailure {
                self.end = Some(RunStatus::Failed);
                return;
            }
        }
        self.release(index);
    }

    fn rolled_back(&mut self, scope: &RollbackScope) {
        for &at in &scope.redo {
            // A step run again is adapted again, as conditions are then.
            self.adaptations.remove(&at);
            self.set_status(at, StepStatus::Pending);
            self.set_output(at, None);
            if let Some(report) = self.report_mut(at) {
                let recoveries = std::mem::take(&mut report.recoveries);
                *report = crate::engine::report::StepReport {
                    recoveries,
                    ..Default::default()
                };
            }
            self.healing.reset(at);
        }
        self.healing
            .completed
            .retain(|done| !scope.redo.contains(done));
        self.recount();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::run::FailureKind;

    fn plan() -> ExecutionPlan {
        ExecutionPlan::from_json(
            r#"{"id": "w", "steps": [{"id": "a", "type": "task",
                "agentCriteria": {"type": "T"}, "task": {"type": "T"}}]}"#,
        )
        .unwrap_or_else(|errors| panic!("{errors}"))
    }

    fn at() -> DateTime<Utc> {
        "2026-01-05T09:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_completion_is_journaled_with_its_checkpoint_and_announced() {
        let plan = plan();
        let completed = Transition::Completed {
            index: 0,
            success: Success {
                attempts: 2,
                ..Success::without_calls(json!({"ok": true}))
            },
        };
        let entries = completed.entries(&plan, None, at());
        assert!(matches!(
            entries.as_slice(),
            [
                JournalEntry::StepCompleted { attempts: 2, .. },
                JournalEntry::Checkpoint { .. }
            ]
        ));
        let event = completed.event(&RunId::from("r"), &plan, at());
        assert!(matches!(
            event,
            Some(RunEvent::StepCompleted { attempts: 2, .. })
        ));
    }

    #[test]
    fn a_recovery_is_journaled_with_the_failure_it_recovers() {
        let plan = plan();
        let decision = RecoveryDecision {
            strategy: crate::definition::RecoveryStrategy::Skip,
            confidence: 0.9,
            cost: 0.3,
            score: 0.6,
            kind: FailureKind::Timeout,
            message: "slow".into(),
        };
        let recovering = Transition::Recovering {
            index: 0,
            failure: Failure::before_calls(FailureKind::Timeout, "slow".into()),
            decision,
        };
        let kinds: Vec<&str> = recovering
            .entries(&plan, None, at())
            .iter()
            .map(|entry| match entry {
                JournalEntry::StepFailed { .. } => "stepFailed",
                JournalEntry::RecoveryDecided { .. } => "recoveryDecided",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["stepFailed", "recoveryDecided"]);
    }

    #[test]
    fn a_rollback_is_journaled_but_not_announced() {
        let plan = plan();
        let rolled_back = Transition::RolledBack {
            index: 0,
            scope: RollbackScope {
                redo: vec![0],
                checkpoint: None,
            },
        };
        assert_eq!(rolled_back.entries(&plan, None, at()).len(), 1);
        assert!(rolled_back.event(&RunId::from("r"), &plan, at()).is_none());
    }
}
