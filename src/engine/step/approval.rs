//! `human_approval` steps: wait for a person's answer, journaled before it is acted on.

use std::pin::pin;

use futures::StreamExt;
use futures::channel::mpsc;
use futures::future::{Either, select};
use serde_json::{Map, Value};

use super::{Failure, StepCtx, StepResult, Success};
use crate::definition::OnTimeout;
use crate::engine::RunEvent;
use crate::engine::adapt::{conditions_over, holds};
use crate::engine::approvals::Verdict;
use crate::engine::durable::Lost;
use crate::engine::run::merged;
use crate::plan::{Adaptation, PlanStep, Quorum};
use crate::run::FailureKind;
use crate::security::{StepRequest, canonical_hash};
use crate::store::JournalEntry;

/// A `human_approval` step: waits for `Engine::approve`/`reject`, or the timeout. An
/// approval completes with the parameters plus `approvedBy` and `comment`; a rejection
/// fails the step with kind `REJECTED`.
pub(super) async fn approval(
    ctx: &StepCtx,
    step: &PlanStep,
    parameters: Value,
    on_timeout: OnTimeout,
) -> StepResult {
    ctx.progress.began();
    let store_lost = |lost: Lost| {
        Failure::before_calls(
            FailureKind::Store,
            format!("step `{}`: not asked or not acted on: {lost}", step.id()),
        )
    };
    let (verdict, parameters) = match ctx.answer.clone() {
        // Journaled and announced before a restart: only acting on it is left, unless
        // the parameters changed since (then the approval is void, and asked again).
        Some(verdict) => match rebound(ctx, step, &parameters) {
            Some(now) if verdict.approved => {
                void(ctx, step, &verdict.by, &parameters, &now)
                    .await
                    .map_err(store_lost)?;
                wait_for_verdict(ctx, step, now, on_timeout)
                    .await
                    .map_err(store_lost)?
            }
            _ => (verdict, parameters),
        },
        None => wait_for_verdict(ctx, step, parameters, on_timeout)
            .await
            .map_err(store_lost)?,
    };
    if !verdict.approved {
        let why = verdict
            .comment
            .as_deref()
            .map(|comment| format!(": {comment}"))
            .unwrap_or_default();
        return Err(Failure::before_calls(
            FailureKind::Rejected,
            format!("step `{}` rejected by {}{why}", step.id(), verdict.by),
        ));
    }
    let mut output = match parameters {
        Value::Object(fields) => fields,
        other => Map::from_iter([("parameters".to_owned(), other)]),
    };
    output.insert("approvedBy".to_owned(), Value::String(verdict.by.clone()));
    output.insert(
        "comment".to_owned(),
        verdict.comment.map_or(Value::Null, Value::String),
    );
    Ok(Success {
        approved_by: Some(verdict.by),
        ..Success::without_calls(Value::Object(output))
    })
}

/// For a step that calls an agent: whether an analyzer of the engine holds it for a
/// person's approval ([`SecurityAnalyzer::gate`](crate::security::SecurityAnalyzer::gate));
/// if so, waits for it as a `human_approval` step does (journaled, announced, bound to
/// the parameters, rejected on timeout). Returns who approved, if anyone was asked, and
/// the parameters the call is made with (those approved).
///
/// # Errors
/// The step was rejected (kind `REJECTED`), or the journal was lost.
pub(super) async fn gated(
    ctx: &StepCtx,
    step: &PlanStep,
    parameters: Value,
) -> Result<(Option<String>, Value), Failure> {
    let inner = &ctx.inner;
    let analyzers = &inner.guard.analyzers;
    if analyzers.is_empty() {
        return Ok((None, parameters));
    }
    let owner = inner.controls.owner(&ctx.run_id);
    let user = owner.as_ref().and_then(|owner| owner.started_by.as_deref());
    let request = StepRequest::new(
        ctx.plan.workflow_id(),
        step.id().as_str(),
        user,
        &parameters,
    );
    let Some(reason) = analyzers
        .iter()
        .find_map(|analyzer| analyzer.gate(&request))
    else {
        return Ok((None, parameters));
    };
    tracing::info!(target: "tradeflow::security", run = %ctx.run_id, step = step.id().as_str(), reason, "step held for approval");
    ctx.progress.began();
    let (verdict, parameters) = match ctx.answer.clone() {
        Some(verdict) => (verdict, parameters),
        None => wait_for_verdict(ctx, step, parameters, OnTimeout::Reject)
            .await
            .map_err(|lost| {
                Failure::before_calls(
                    FailureKind::Store,
                    format!("step `{}`: not asked or not acted on: {lost}", step.id()),
                )
            })?,
    };
    if !verdict.approved {
        return Err(Failure::before_calls(
            FailureKind::Rejected,
            format!(
                "step `{}` needed approval ({reason}) and was rejected by {}{}",
                step.id(),
                verdict.by,
                verdict
                    .comment
                    .as_deref()
                    .map(|comment| format!(": {comment}"))
                    .unwrap_or_default()
            ),
        ));
    }
    Ok((Some(verdict.by), parameters))
}

/// Waits for `Engine::approve`/`reject` or the step's timeout; the wait and the answer
/// are journaled, then announced.
///
/// # Errors
/// The journal was lost: nobody is asked, or the answer is not acted on.
async fn wait_for_verdict(
    ctx: &StepCtx,
    step: &PlanStep,
    parameters: Value,
    on_timeout: OnTimeout,
) -> Result<(Verdict, Value), Lost> {
    let inner = &ctx.inner;
    let quorum = step.quorum().cloned();
    let mut counted = ctx.counted.clone();
    let mut shown = parameters;
    loop {
        // What the approver is shown, as the journal, the audit log and the event have it.
        let shown_redacted = ctx.redacted(&shown);
        inner
            .journal_durably(ctx.batch.as_deref(), || {
                vec![JournalEntry::StepWaiting {
                    step_id: step.id().clone(),
                    parameters: shown_redacted.clone(),
                    at: inner.clock.now(),
                }]
            })
            .await?;
        let audited = inner
            .auditing()
            .then(|| crate::audit::sha256_json(&shown_redacted));
        let (mut answers, registration) = inner.approvals.wait(
            &ctx.run_id,
            step.id(),
            quorum.clone(),
            counted.clone(),
            audited,
        );
        tracing::info!(target: "tradeflow::run", step_id = step.id().as_str(), "approval requested");
        inner.emit(|| RunEvent::StepWaiting {
            run_id: ctx.run_id.clone(),
            step_id: step.id().clone(),
            parameters: shown_redacted.clone(),
            at: inner.clock.now(),
        });
        let collect = collect(ctx, step, quorum.as_deref(), &mut counted, &mut answers);
        let answer = match step.timeout() {
            None => collect.await?,
            Some(timeout) => match select(pin!(collect), inner.clock.sleep(timeout)).await {
                Either::Left((answer, _)) => answer?,
                Either::Right(((), _)) => None,
            },
        };
        drop(registration);
        // A person's approval is bound to what they were shown.
        let approved_by = answer
            .as_ref()
            .filter(|verdict| verdict.approved)
            .map(|verdict| verdict.by.clone());
        if let Some((by, now)) =
            approved_by.and_then(|by| rebound(ctx, step, &shown).map(|now| (by, now)))
        {
            void(ctx, step, &by, &shown, &now).await?;
            shown = now;
            counted.clear();
            continue;
        }
        let verdict = answer.unwrap_or_else(|| Verdict {
            approved: on_timeout == OnTimeout::Approve,
            by: "timeout".to_owned(),
            comment: Some(format!(
                "no answer within {} ms",
                step.timeout().map_or(0, |timeout| timeout.as_millis())
            )),
        });
        inner
            .journal_durably(ctx.batch.as_deref(), || {
                vec![JournalEntry::StepAnswered {
                    step_id: step.id().clone(),
                    approved: verdict.approved,
                    by: verdict.by.clone(),
                    comment: verdict.comment.clone(),
                    at: inner.clock.now(),
                }]
            })
            .await?;
        tracing::info!(
            target: "tradeflow::run",
            step_id = step.id().as_str(),
            approved = verdict.approved,
            by = %verdict.by,
            "approval answered"
        );
        inner.emit(|| RunEvent::StepAnswered {
            run_id: ctx.run_id.clone(),
            step_id: step.id().clone(),
            approved: verdict.approved,
            by: verdict.by.clone(),
            comment: verdict.comment.clone(),
            at: inner.clock.now(),
        });
        return Ok((verdict, shown));
    }
}

/// The parameters the step would have now, when they differ from `shown` (what the
/// approver was asked to approve): its own, with the overrides of the adaptations that
/// change it and hold now (the workflow's, and those added at run time). `None` when
/// nothing changed, or no adaptation touches the step.
fn rebound(ctx: &StepCtx, step: &PlanStep, shown: &Value) -> Option<Value> {
    let inner = &ctx.inner;
    let plan = &ctx.plan;
    let added = inner.adapting.added(inner, plan);
    let rules: Vec<&Adaptation> = plan
        .adaptations()
        .iter()
        .chain(added.iter().flat_map(|rules| rules.iter()))
        .map(|rule| &**rule)
        .filter(|rule| rule.changes_step(step.id()))
        .collect();
    if rules.is_empty() {
        return None;
    }
    let context = conditions_over(inner.adapting.context(), &ctx.context);
    let held: Vec<&Adaptation> = rules
        .into_iter()
        .filter(|rule| holds(inner, plan.workflow_id(), rule, &context))
        .collect();
    let over = crate::adapt::overrides(&held, step.id(), step.timeout()).parameters;
    let base = ctx.base_parameters.clone().unwrap_or_else(|| shown.clone());
    let now = crate::run::bounded(merged(base, over)).ok()?;
    // JSON equality, which is what the hashes journaled by `void` compare.
    (now != *shown).then_some(now)
}

/// Journals and announces that `by`'s approval of `shown` is void: the step has `now`.
///
/// # Errors
/// The journal was lost.
async fn void(
    ctx: &StepCtx,
    step: &PlanStep,
    by: &str,
    shown: &Value,
    now: &Value,
) -> Result<(), Lost> {
    let inner = &ctx.inner;
    let (asked, now) = (canonical_hash(shown), canonical_hash(now));
    inner
        .journal_durably(ctx.batch.as_deref(), || {
            vec![JournalEntry::ApprovalVoided {
                step_id: step.id().clone(),
                by: by.to_owned(),
                asked: asked.clone(),
                now: now.clone(),
                at: inner.clock.now(),
            }]
        })
        .await?;
    inner.emit(|| RunEvent::ApprovalVoided {
        run_id: ctx.run_id.clone(),
        step_id: step.id().clone(),
        by: by.to_owned(),
        asked: asked.clone(),
        now: now.clone(),
        at: inner.clock.now(),
    });
    Ok(())
}

/// The answer the step acts on: the first one without a quorum; with one, a rejection,
/// or the approval that reaches the quorum (by every approver, `, `-separated). Each
/// approval before that is journaled (`approvalCounted`) and announced; `counted` holds
/// who approved (from the journal, after a restart). `None`: the answers ended (the
/// step is no longer registered).
///
/// # Errors
/// The journal was lost.
async fn collect(
    ctx: &StepCtx,
    step: &PlanStep,
    quorum: Option<&Quorum>,
    counted: &mut Vec<String>,
    answers: &mut mpsc::UnboundedReceiver<Verdict>,
) -> Result<Option<Verdict>, Lost> {
    let inner = &ctx.inner;
    let Some(quorum) = quorum else {
        return Ok(answers.next().await);
    };
    let need = usize::try_from(quorum.need()).unwrap_or(1);
    while counted.len() < need {
        let Some(verdict) = answers.next().await else {
            return Ok(None);
        };
        if !verdict.approved {
            return Ok(Some(verdict));
        }
        counted.push(verdict.by.clone());
        if counted.len() >= need {
            return Ok(Some(Verdict {
                by: counted.join(", "),
                ..verdict
            }));
        }
        inner
            .journal_durably(ctx.batch.as_deref(), || {
                vec![JournalEntry::ApprovalCounted {
                    step_id: step.id().clone(),
                    by: verdict.by.clone(),
                    comment: verdict.comment.clone(),
                    at: inner.clock.now(),
                }]
            })
            .await?;
        inner.emit(|| RunEvent::ApprovalCounted {
            run_id: ctx.run_id.clone(),
            step_id: step.id().clone(),
            by: verdict.by.clone(),
            have: u32::try_from(counted.len()).unwrap_or(u32::MAX),
            need: quorum.need(),
            at: inner.clock.now(),
        });
    }
    // Counted in full before a restart cut the final answer off.
    Ok(Some(Verdict {
        approved: true,
        by: counted.join(", "),
        comment: None,
    }))
}
