//! `loop` steps: logical calls, one per iteration, until the step is done.

use std::time::Duration;

use serde_json::Value;

use super::{Failure, LogicalCall, Snapshot, StepCtx, StepResult, Success};
use crate::agent::AgentId;
use crate::clock::add_saturating;
use crate::expr::BindingValues;
use crate::plan::{AgentTask, PlanStep, Until};
use crate::run::FailureKind;

/// When a loop stops: its `until`, its `maxIterations`, and the pause between iterations.
pub(super) struct Bounds<'a> {
    pub(super) until: &'a Until,
    pub(super) max_iterations: u32,
    pub(super) interval: Duration,
}

/// A `loop` step: the task until `until` holds, `max_iterations`, or the timeout. Each
/// iteration prefers the agent of the one before; the output is the last iteration's,
/// with `iterations` added.
pub(super) async fn repeat(
    ctx: &StepCtx,
    step: &PlanStep,
    task: &AgentTask,
    parameters: &Value,
    bounds: Bounds<'_>,
) -> StepResult {
    let clock = &ctx.inner.clock;
    let deadline = step
        .timeout()
        .map(|timeout| add_saturating(clock.now(), timeout));
    let mut last: Option<Value> = None;
    let mut agent: Option<AgentId> = None;
    let mut attempts = 0;
    let mut iterations = 0;
    while iterations < bounds.max_iterations {
        if iterations > 0 && !bounds.interval.is_zero() {
            let resume = add_saturating(clock.now(), bounds.interval);
            if deadline.is_some_and(|deadline| resume >= deadline) {
                break;
            }
            clock.sleep(bounds.interval).await;
        }
        iterations += 1;
        let call = LogicalCall::new(step, task, parameters).iteration(
            iterations,
            agent.as_ref(),
            deadline,
        );
        let outcome = call.make(ctx).await;
        attempts += outcome.attempts;
        let output = match outcome.result {
            Ok(output) => output,
            Err((FailureKind::Timeout, _))
                if last.is_some() && deadline.is_some_and(|d| clock.now() >= d) =>
            {
                // Cut off by the loop's timeout: the last completed iteration stands.
                iterations -= 1;
                break;
            }
            Err((kind, message)) => {
                return Err(Failure {
                    kind,
                    message,
                    attempts,
                    agent: outcome.agent,
                });
            }
        };
        agent = outcome.agent;
        let done =
            until_holds(ctx, step, bounds.until, &output).map_err(|(kind, message)| Failure {
                kind,
                message,
                attempts,
                agent: agent.clone(),
            })?;
        last = Some(output);
        if done || deadline.is_some_and(|deadline| clock.now() >= deadline) {
            break;
        }
    }
    Ok(Success {
        output: with_iterations(last, iterations),
        attempts,
        agent,
        agents: None,
        approved_by: None,
    })
}

/// Whether the loop is done after an iteration that gave `output`.
fn until_holds(
    ctx: &StepCtx,
    step: &PlanStep,
    until: &Until,
    output: &Value,
) -> Result<bool, (FailureKind, String)> {
    match until {
        Until::Done => Ok(output.get("done") == Some(&Value::Bool(true))),
        Until::Condition(condition) => {
            let values = LoopValues {
                snapshot: ctx.snapshot.as_ref(),
                own: output,
            };
            condition.evaluate(&values, &ctx.context).map_err(|error| {
                (
                    FailureKind::Condition,
                    format!("step `{}`: loop.until: {error}", step.id()),
                )
            })
        }
    }
}

/// The loop's output: the last iteration's, with the number of iterations.
fn with_iterations(last: Option<Value>, iterations: u32) -> Value {
    match last {
        Some(Value::Object(mut fields)) => {
            fields.insert("iterations".to_owned(), Value::from(iterations));
            Value::Object(fields)
        }
        Some(other) => serde_json::json!({"value": other, "iterations": iterations}),
        None => serde_json::json!({"iterations": iterations}),
    }
}

/// What `loop.until` reads: the run's values when the loop started, and its own output.
struct LoopValues<'a> {
    snapshot: Option<&'a Snapshot>,
    own: &'a Value,
}

static NULL: Value = Value::Null;

impl BindingValues for LoopValues<'_> {
    fn input(&self) -> &Value {
        self.snapshot.map_or(&NULL, |snapshot| &snapshot.input)
    }

    fn step_output(&self, index: usize) -> Option<&Value> {
        let snapshot = self.snapshot?;
        snapshot
            .outputs
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, value)| &**value)
    }

    fn own_output(&self) -> Option<&Value> {
        Some(self.own)
    }
}
