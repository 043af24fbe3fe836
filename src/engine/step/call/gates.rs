//! The trading safety gates of a logical call: its `budget`, taken before each attempt
//! and settled after it by what the agent says it used, and the `reconcile` task asked
//! when an attempt's outcome is unknown (see the parent module for when each applies).

use serde_json::Value;

use super::{LogicalCall, Tries, attempt_deadline, call_agent, call_seed, check_output, choose};
use crate::agent::{AgentId, Selection, TaskRequest};
use crate::engine::RunEvent;
use crate::engine::step::StepCtx;
use crate::run::FailureKind;
use crate::safety::Verdict;
use crate::store::JournalEntry;

impl LogicalCall<'_> {
    /// Takes the step's `budget` for one attempt: waits (in priority, then arrival order)
    /// until every budget it names holds the amounts, at most the step's `timeout` (or up
    /// to the loop's deadline); why not otherwise.
    pub(super) async fn take_budget(&self, ctx: &StepCtx) -> Result<(), String> {
        let amounts = match &ctx.budget {
            None => return Ok(()),
            Some(Err(why)) => return Err(why.clone()),
            Some(Ok(amounts)) => amounts,
        };
        let inner = &*ctx.inner;
        let until = attempt_deadline(inner.clock.now(), self.step.timeout(), self.deadline);
        let priority = self
            .step
            .resources()
            .map_or(0, |resources| resources.priority);
        inner
            .budgets
            .take(
                &*inner.clock,
                &ctx.plan,
                amounts,
                priority,
                until,
                |first| {
                    inner.emit(|| RunEvent::BudgetWaiting {
                        run_id: ctx.run_id.clone(),
                        step_id: self.step.id().clone(),
                        item: self.item,
                        budgets: amounts.clone(),
                        until: first,
                        at: inner.clock.now(),
                    });
                },
            )
            .await?;
        let names = amounts.keys();
        (inner.budgets).observe(&ctx.plan, names, inner.clock.now(), &inner.telemetry);
        Ok(())
    }

    /// Refunds or charges the difference between what the call took and what its
    /// `output` says it used, in the field the step's `budget.actualFrom` names (an
    /// object, budget name → whole number; other entries are ignored).
    pub(super) fn settle_budget(&self, ctx: &StepCtx, output: &Value) {
        let (Some(field), Some(Ok(taken))) = (
            self.step.budget().and_then(|budget| budget.actual_from()),
            &ctx.budget,
        ) else {
            return;
        };
        let Some(Value::Object(reported)) = output.get(field) else {
            return;
        };
        let used: crate::safety::budget::Amounts = reported
            .iter()
            .filter_map(|(name, amount)| Some((name.clone(), amount.as_u64()?)))
            .collect();
        let inner = &*ctx.inner;
        let now = inner.clock.now();
        inner.budgets.settle(&ctx.plan, taken, &used, now);
        (inner.budgets).observe(&ctx.plan, used.keys(), now, &inner.telemetry);
    }

    /// Asks whether the call whose outcome is unknown (attempt `tries.count`, last made
    /// on `agent`) took effect, with the step's `reconcile` task: `Some(output)` if it
    /// did, `None` if it did not; `Err` when nobody can tell (kind `OUTCOME_UNKNOWN`) or
    /// the ask cannot be journaled (kind `STORE`).
    pub(super) async fn reconcile(
        &self,
        ctx: &StepCtx,
        agent: &AgentId,
        tries: &mut Tries,
    ) -> Result<Option<Value>, (FailureKind, String)> {
        let unknown = |why: String| (FailureKind::OutcomeUnknown, why);
        let Some(task_type) = self
            .step
            .side_effects()
            .and_then(|effects| effects.reconcile())
        else {
            return Err(unknown(
                "its outcome is unknown and the step has no `reconcile` task".to_owned(),
            ));
        };
        let inner = &*ctx.inner;
        let waits_until = attempt_deadline(inner.clock.now(), self.step.timeout(), self.deadline);
        let selection = choose(
            ctx,
            self.task,
            Some(agent),
            &[],
            &mut tries.rng,
            waits_until,
        )
        .await
        .map_err(|error| {
            unknown(format!(
                "its outcome is unknown and no agent can reconcile it: {error}"
            ))
        })?;
        let agent_id = selection.candidate.agent.clone();
        let Selection { agent, lease, .. } = selection;
        tries.last_agent = Some(agent_id.clone());
        let idempotency_key = self.key(ctx);
        let iteration = (self.iteration > 0).then_some(self.iteration);
        let journaled = inner
            .journal_durably(ctx.batch.as_deref(), || {
                vec![JournalEntry::ReconcileStarted {
                    step_id: self.step.id().clone(),
                    item: self.item,
                    iteration,
                    attempt: tries.count,
                    agent_id: agent_id.clone(),
                    idempotency_key: idempotency_key.clone(),
                    task_type: task_type.clone(),
                    at: inner.clock.now(),
                }]
            })
            .await;
        if let Err(lost) = journaled {
            return Err((FailureKind::Store, format!("not reconciled: {lost}")));
        }
        let request = TaskRequest {
            run_id: ctx.run_id.clone(),
            step_id: self.step.id().clone(),
            item: self.item,
            attempt: tries.count,
            idempotency_key,
            task_type: task_type.clone(),
            parameters: self.parameters.clone(),
            seed: call_seed(ctx, self, tries.count),
        };
        let limit = attempt_deadline(inner.clock.now(), self.step.timeout(), self.deadline);
        let answer = call_agent(ctx, &*agent, request, limit, false)
            .await
            .and_then(|answer| check_output(answer, inner.max_output_bytes, self.step, &agent_id));
        drop(lease);
        let answer = answer.map_err(|(error, _)| {
            unknown(format!(
                "its outcome is unknown and the reconcile task `{task_type}` on agent `{agent_id}` failed: {error}"
            ))
        })?;
        match Verdict::of(answer) {
            Verdict::Done(output) => Ok(Some(output)),
            Verdict::NotDone => Ok(None),
            Verdict::Unknown(why) => Err(unknown(format!(
                "its outcome is unknown: agent `{agent_id}`: {why}"
            ))),
        }
    }
}
