//! `human_approval` steps: wait for a person's answer, journaled before it is acted on.

use futures::future::{Either, select};
use serde_json::{Map, Value};

use super::{Failure, StepCtx, StepResult, Success};
use crate::definition::OnTimeout;
use crate::engine::RunEvent;
use crate::engine::approvals::Verdict;
use crate::engine::durable::Lost;
use crate::plan::PlanStep;
use crate::run::FailureKind;
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
    let verdict = match ctx.answer.clone() {
        // Journaled and announced before a restart; only acting on it is left.
        Some(verdict) => verdict,
        None => wait_for_verdict(ctx, step, &parameters, on_timeout)
            .await
            .map_err(|lost| {
                Failure::before_calls(
                    FailureKind::Store,
                    format!("step `{}`: not asked or not acted on: {lost}", step.id()),
                )
            })?,
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

/// Waits for `Engine::approve`/`reject` or the step's timeout; the wait and the answer
/// are journaled, then announced.
///
/// # Errors
/// The journal was lost: nobody is asked, or the answer is not acted on.
async fn wait_for_verdict(
    ctx: &StepCtx,
    step: &PlanStep,
    parameters: &Value,
    on_timeout: OnTimeout,
) -> Result<Verdict, Lost> {
    let inner = &ctx.inner;
    inner
        .journal_durably(ctx.batch.as_deref(), || {
            vec![JournalEntry::StepWaiting {
                step_id: step.id().clone(),
                parameters: ctx.redacted(parameters),
                at: inner.clock.now(),
            }]
        })
        .await?;
    let (answer, _registration) = inner.approvals.wait(&ctx.run_id, step.id());
    tracing::info!(target: "tradeflow::run", step_id = step.id().as_str(), "approval requested");
    inner.emit(|| RunEvent::StepWaiting {
        run_id: ctx.run_id.clone(),
        step_id: step.id().clone(),
        parameters: ctx.redacted(parameters),
        at: inner.clock.now(),
    });
    let answer = match step.timeout() {
        None => answer.await.ok(),
        Some(timeout) => match select(answer, inner.clock.sleep(timeout)).await {
            Either::Left((answer, _)) => answer.ok(),
            Either::Right(((), _)) => None,
        },
    };
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
    Ok(verdict)
}
