//! Settling steps: what the run does when a step's work ends.
//!
//! A step that completed has its `outputMapping` applied and completes (a fallback that
//! completes completes the step it stands in for, too). A step that failed goes to
//! self-healing: a recovery that fits is journaled with the failure and applied
//! (`recovery.rs`); without one, the step fails for good, and a fallback that fails
//! fails the step it stood in for, which is healed in turn.

use serde_json::{Map, Value};

use super::Execution;
use super::transition::Transition;
use crate::decision::DecisionRecord;
use crate::engine::step::{Failure, StepResult, Success, Worked};
use crate::expr::BindingValues;
use crate::run::FailureKind;

impl Execution {
    /// Step `index`'s work ended as `worked` says: it is settled, and the length of its
    /// work recorded (`step_duration_seconds`, ending when it was settled).
    pub(super) fn settle(&mut self, index: usize, worked: Worked) {
        self.applied_at = None;
        self.settle_result(index, worked.result);
        if let Some(started) = worked.started {
            let ended = match self.applied_at {
                Some(at) => at,
                None => self.inner.clock.now(),
            };
            self.metrics.step_ended(index, started, ended);
        }
    }

    /// Step `index`'s work ended with `result`.
    fn settle_result(&mut self, index: usize, result: StepResult) {
        match result {
            Ok(success) => self.complete(index, success),
            // Stale before a retry: a `SKIP` step is skipped, as it would be at its start.
            Err(failure)
                if failure.kind == FailureKind::StaleData
                    && self
                        .book
                        .plan
                        .step(index)
                        .and_then(|step| step.freshness())
                        .is_some_and(|freshness| {
                            freshness.on_stale() == crate::definition::OnStale::Skip
                        }) =>
            {
                self.skip(index, failure.message);
            }
            Err(failure) => self.fail(index, failure),
        }
    }

    /// Step `index` completed: its output mapped, then journaled (with a checkpoint) and
    /// visible to the steps after it.
    pub(super) fn complete(&mut self, index: usize, success: Success) {
        let success = match self.map_output(index, success) {
            Ok(success) => success,
            Err(failure) => return self.fail(index, failure),
        };
        let attempts = success.attempts + self.book.healing.prior_attempts(index);
        let success = Success {
            attempts,
            ..success
        };
        // A fallback that completes completes the step it stands in for, too.
        let owner = self.book.healing.standing_in.remove(&index).map(|owner| {
            let stands_in = Success {
                attempts: self.book.healing.prior_attempts(owner),
                agent: success.agent.clone(),
                ..Success::without_calls(success.output.clone())
            };
            (owner, stands_in)
        });
        self.record_decision(index, &success);
        self.apply(Transition::Completed { index, success });
        if let Some((owner, success)) = owner {
            self.book.healing.failures.remove(&owner);
            self.record_decision(owner, &success);
            self.apply(Transition::Completed {
                index: owner,
                success,
            });
        }
    }

    /// `success` with step `index`'s `outputMapping` applied: its fields added to the
    /// output. A mapping that cannot be resolved fails the step (kind `BINDING`).
    fn map_output(&self, index: usize, success: Success) -> Result<Success, Failure> {
        let Some(step) = self.book.plan.step(index) else {
            return Ok(success);
        };
        let Some(mapping) = step.output_mapping() else {
            return Ok(success);
        };
        let mapped = mapping.resolve(&WithOwn {
            run: &self.book,
            own: &success.output,
        });
        match mapped {
            Ok(Value::Object(extra)) => Ok(Success {
                output: with_fields(success.output, extra),
                ..success
            }),
            Ok(_) => Ok(success),
            Err(error) => Err(Failure {
                kind: FailureKind::Binding,
                message: format!("step `{}`: outputMapping: {error}", step.id()),
                attempts: success.attempts,
                agent: success.agent,
            }),
        }
    }

    /// Records what decision step `index` decided, when it is one that ran.
    fn record_decision(&mut self, index: usize, success: &Success) {
        let Some(parameters) = self.decision_parameters.remove(&index) else {
            return;
        };
        let Some(step) = self.book.plan.step(index) else {
            return;
        };
        self.inner.decisions.record(DecisionRecord {
            run_id: self.run_id.clone(),
            workflow_id: self.book.plan.workflow_id().to_owned(),
            step_id: step.id().clone(),
            task_type: step
                .agent_task()
                .map(|task| task.task_type.clone())
                .unwrap_or_else(|| "".into()),
            agent_id: success.agent.clone(),
            parameters: self.redacted(&parameters),
            decision: self.redacted(&success.output),
            at: self.inner.clock.now(),
        });
    }

    /// Step `index` does not run, because of `reason`. A fallback that is skipped (its
    /// condition is false, a step it binds to did not complete, or it was optional and
    /// failed) cannot stand in: the step it stood in for fails with its own failure.
    pub(super) fn skip(&mut self, index: usize, reason: String) {
        let owner = self.book.healing.standing_in.remove(&index);
        let step_id = self.book.plan.step(index).map(|step| step.id().clone());
        let why = owner.map(|_| reason.clone());
        self.apply(Transition::Skipped { index, reason });
        let (Some(owner), Some(why), Some(step_id)) = (owner, why, step_id) else {
            return;
        };
        if let Some(mut failure) = self.book.healing.failures.remove(&owner) {
            failure.message = format!(
                "{}; its fallback step `{step_id}` was skipped: {why}",
                failure.message
            );
            self.fail(owner, failure);
        }
    }

    /// The run has nothing left to start or wait for, yet steps stand aside for their
    /// fallbacks: those fallbacks can never run, so each step fails with its own failure.
    pub(super) fn fallbacks_never_ran(&mut self) {
        let mut standing: Vec<(usize, usize)> = self.book.healing.standing_in.drain().collect();
        standing.sort_unstable_by_key(|&(_, owner)| owner);
        for (fallback, owner) in standing {
            let Some(mut failure) = self.book.healing.failures.remove(&owner) else {
                continue;
            };
            let fallback_id = self
                .book
                .plan
                .step(fallback)
                .map_or("?", |step| step.id().as_str());
            failure.message = format!(
                "{}; its fallback step `{fallback_id}` could never run",
                failure.message
            );
            self.fail(owner, failure);
        }
    }

    /// Step `index` failed: self-healing recovers it if a strategy fits, else it fails
    /// for good (and a fallback that fails fails the step it stands in for).
    pub(super) fn fail(&mut self, index: usize, failure: Failure) {
        let mut next = Some((index, failure));
        while let Some((index, failure)) = next.take() {
            next = self.fail_one(index, failure);
        }
    }

    /// Handles one failure; returns the failure of the step a failed fallback stood in
    /// for, which is handled next.
    fn fail_one(&mut self, index: usize, failure: Failure) -> Option<(usize, Failure)> {
        let step_id = self.book.plan.step(index)?.id().clone();
        self.decision_parameters.remove(&index);
        let attempts = failure.attempts + self.book.healing.prior_attempts(index);
        let failure = Failure {
            attempts,
            ..failure
        };
        if let Some(agent) = &failure.agent {
            self.book.healing.failed_agent(index, agent);
        }
        if let Some(chosen) = self.heal(index, failure.kind, &failure.message) {
            let later = Failure {
                attempts: 0,
                ..failure.clone()
            };
            self.apply(Transition::Recovering {
                index,
                failure,
                decision: chosen.decision.clone(),
            });
            self.recover(index, chosen, later);
            return None;
        }
        // A fallback that failed: the step it stood in for fails with its own failure.
        let owner = self
            .book
            .healing
            .standing_in
            .remove(&index)
            .and_then(|owner| {
                let mut failed = self.book.healing.failures.remove(&owner)?;
                failed.message = format!(
                    "{}; its fallback step `{step_id}` failed too: {}",
                    failed.message, failure.message
                );
                Some((owner, failed))
            });
        self.apply(Transition::Failed { index, failure });
        owner
    }
}

/// The run's values plus a step's own output (for `outputMapping`).
struct WithOwn<'a> {
    run: &'a dyn BindingValues,
    own: &'a Value,
}

impl BindingValues for WithOwn<'_> {
    fn input(&self) -> &Value {
        self.run.input()
    }

    fn step_output(&self, index: usize) -> Option<&Value> {
        self.run.step_output(index)
    }

    fn own_output(&self) -> Option<&Value> {
        Some(self.own)
    }
}

/// `output` with `extra` fields added (an output that is not an object becomes `value`).
fn with_fields(output: Value, extra: Map<String, Value>) -> Value {
    let mut fields = match output {
        Value::Object(fields) => fields,
        other => Map::from_iter([("value".to_owned(), other)]),
    };
    fields.extend(extra);
    Value::Object(fields)
}
