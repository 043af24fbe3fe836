//! `parallel` steps: one logical call per item of an array parameter, outputs merged.
//!
//! Items start in input order, at most `maxConcurrency` in flight, and each only once the
//! item before it has its agent (or could not have one). So while agents have free slots
//! items keep starting, as many at once as before; once every slot is taken, one item
//! waits in the registry's line for the next slot freed and the rest are not started:
//! they cost nothing beyond their input until then. A fan-out of n items costs O(n)
//! selections and holds futures only for the items with an agent, those waiting to retry
//! and the one in line, however few the slots. An item waiting to retry holds no slot,
//! so the next item may take it meanwhile.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde_json::{Map, Value};

use super::{Failure, LogicalCall, StepCtx, StepResult, Success};
use crate::agent::AgentId;
use crate::plan::{AgentTask, PlanStep};
use crate::run::FailureKind;

/// A `parallel` step: one call per item of parameter `over`, at most `limit` at once,
/// started in input order as each one before has its agent. The first item that fails
/// for good fails the step (the others are dropped, the items not started never start).
pub(super) async fn fan_out(
    ctx: &StepCtx,
    step: &PlanStep,
    task: &AgentTask,
    parameters: Value,
    over: &str,
    limit: usize,
) -> StepResult {
    let (base, items) = split_items(step, parameters, over)?;
    let count = items.len();
    let limit = limit.max(1);
    let mut outputs: Vec<Option<(Value, Option<AgentId>)>> = (0..count).map(|_| None).collect();
    // Whether the item started last still waits for its first agent.
    let choosing = &AtomicBool::new(false);
    let mut pending = FuturesUnordered::new();
    let mut items = items.into_iter().enumerate();
    let mut attempts = 0;
    loop {
        let next = poll_fn(|cx| {
            loop {
                if pending.is_empty() {
                    // No item is in flight, so none can still be choosing its agent.
                    choosing.store(false, Ordering::Relaxed);
                }
                while pending.len() < limit && !choosing.load(Ordering::Relaxed) {
                    let Some((index, item)) = items.next() else {
                        break;
                    };
                    choosing.store(true, Ordering::Relaxed);
                    let mut parameters = base.clone();
                    parameters.insert(over.to_owned(), item);
                    pending.push(async move {
                        let parameters = Value::Object(parameters);
                        let call = LogicalCall::new(step, task, &parameters).item(index, choosing);
                        (index, call.make(ctx).await)
                    });
                }
                let polled = pending.poll_next_unpin(cx);
                // An item polled just now got its agent: the next one may start at once.
                let more =
                    items.len() > 0 && pending.len() < limit && !choosing.load(Ordering::Relaxed);
                if polled.is_ready() || !more {
                    return polled;
                }
            }
        })
        .await;
        let Some((index, outcome)) = next else {
            break;
        };
        attempts += outcome.attempts;
        match outcome.result {
            Ok(output) => {
                if let Some(slot) = outputs.get_mut(index) {
                    *slot = Some((output, outcome.agent));
                }
            }
            Err((kind, message)) => {
                return Err(Failure {
                    kind,
                    message: format!("item {index}: {message}"),
                    attempts,
                    agent: outcome.agent,
                });
            }
        }
    }
    if let Some(missing) = outputs.iter().position(Option::is_none) {
        // Every item is called before the loop ends; never report a partial result.
        return Err(Failure {
            kind: FailureKind::Permanent,
            message: format!("step `{}`: item {missing} was never called", step.id()),
            attempts,
            agent: None,
        });
    }
    let (results, agents): (Vec<Value>, Vec<Option<AgentId>>) =
        outputs.into_iter().flatten().unzip();
    Ok(Success {
        output: merge(results),
        attempts,
        // Each item has its own agent (`agentIds`); no single one produced the result.
        agent: None,
        agents: Some(agents.into_iter().flatten().collect()),
        approved_by: None,
    })
}

/// The parameters but `over`, and the items of `over` (an array, else the step fails
/// with kind `BINDING`).
fn split_items(
    step: &PlanStep,
    parameters: Value,
    over: &str,
) -> Result<(Map<String, Value>, Vec<Value>), Failure> {
    let mut base = match parameters {
        Value::Object(object) => object,
        _ => Map::new(),
    };
    match base.remove(over) {
        Some(Value::Array(items)) => Ok((base, items)),
        other => {
            let found = other.map_or_else(|| "nothing".to_owned(), |value| value.to_string());
            Err(Failure::before_calls(
                FailureKind::Binding,
                format!(
                    "step `{}`: parameter `{over}` is not an array (found {found})",
                    step.id()
                ),
            ))
        }
    }
}

/// `{"results": [...]}` plus, for each key of the item outputs, the values merged:
/// arrays concatenated, other values collected into an array.
fn merge(results: Vec<Value>) -> Value {
    let mut merged = Map::new();
    for result in &results {
        let Value::Object(fields) = result else {
            continue;
        };
        for (key, value) in fields {
            let Value::Array(slot) = merged
                .entry(key.clone())
                .or_insert_with(|| Value::Array(Vec::new()))
            else {
                continue;
            };
            match value {
                Value::Array(values) => slot.extend(values.iter().cloned()),
                other => slot.push(other.clone()),
            }
        }
    }
    merged.insert("results".to_owned(), Value::Array(results));
    Value::Object(merged)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parallel_outputs_merge_by_key() {
        let merged = merge(vec![
            json!({"orderIds": ["a"], "venue": "X"}),
            json!({"orderIds": ["b", "c"], "venue": "Y"}),
            json!("not an object"),
        ]);
        assert_eq!(
            merged,
            json!({
                "orderIds": ["a", "b", "c"],
                "venue": ["X", "Y"],
                "results": [{"orderIds": ["a"], "venue": "X"}, {"orderIds": ["b", "c"], "venue": "Y"}, "not an object"],
            })
        );
    }
}
