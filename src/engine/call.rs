//! What one step does once it starts: agent calls with retries, fan-out, loops, approvals.

use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::{Either, select};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rand::RngExt;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Map, Value};

use super::durable::Batch;
use super::{Answer, Inner, RunEvent};
use crate::agent::{
    AgentError, AgentErrorKind, AgentId, Outcome, SelectError, Selection, TaskRequest,
};
use crate::definition::OnTimeout;
use crate::expr::{BindingValues, Context};
use crate::plan::{AgentTask, ExecutionPlan, PlanStep, StepKind, Until};
use crate::run::{FailureKind, RunId};
use crate::store::JournalEntry;

/// Everything a running step needs; owned, so the step's future is `'static`.
pub(super) struct StepCtx {
    pub(super) inner: Arc<Inner>,
    pub(super) plan: Arc<ExecutionPlan>,
    pub(super) run_id: RunId,
    pub(super) index: usize,
    pub(super) seed: u64,
    pub(super) context: Arc<Context>,
    /// The run input and the outputs of the steps this one binds to (for `loop.until`).
    pub(super) snapshot: Option<Snapshot>,
    /// For an approval step recovered after a restart: the answer journaled before it.
    pub(super) answer: Option<Answer>,
    /// Agents not to call (they failed the step before: a `SUBSTITUTE` recovery).
    pub(super) excluded: Vec<AgentId>,
    /// How often a `ROLLBACK` reset the step (part of its idempotency keys).
    pub(super) generation: u32,
    /// The run's journal batch (with a store): entries the step must see durable.
    pub(super) batch: Option<Arc<Batch>>,
}

/// Values a loop's `until` may read besides its own output.
pub(super) struct Snapshot {
    pub(super) input: Arc<Value>,
    pub(super) outputs: Vec<(usize, Arc<Value>)>,
}

/// A step that completed.
#[derive(Debug)]
pub(super) struct Success {
    pub(super) output: Value,
    pub(super) attempts: u32,
    pub(super) agent: Option<AgentId>,
    pub(super) agents: Option<Vec<AgentId>>,
    pub(super) approved_by: Option<String>,
}

/// A step that failed.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) kind: FailureKind,
    pub(super) message: String,
    pub(super) attempts: u32,
    pub(super) agent: Option<AgentId>,
}

pub(super) type StepResult = Result<Success, Failure>;

/// Runs the step at `ctx.index` with its resolved parameters.
pub(super) async fn run_step(ctx: StepCtx, parameters: Value) -> StepResult {
    let plan = Arc::clone(&ctx.plan);
    let Some(step) = plan.step(ctx.index) else {
        return Err(failure(
            FailureKind::Permanent,
            "step not in plan".to_owned(),
        ));
    };
    match step.kind() {
        StepKind::Task(task) | StepKind::Decision(task) => {
            let outcome = call(&ctx, step, task, &parameters, None, 0, None, None).await;
            outcome.into_result()
        }
        StepKind::Parallel {
            task,
            over,
            max_concurrency,
        } => {
            let limit = max_concurrency.map_or(usize::MAX, |limit| limit.get() as usize);
            fan_out(&ctx, step, task, parameters, over, limit).await
        }
        StepKind::Loop {
            task,
            until,
            max_iterations,
            interval,
        } => {
            repeat(
                &ctx,
                step,
                task,
                &parameters,
                until,
                *max_iterations,
                *interval,
            )
            .await
        }
        StepKind::HumanApproval { on_timeout, .. } => {
            approval(&ctx, step, parameters, *on_timeout).await
        }
        // Condition steps take no time and are evaluated by the run itself.
        StepKind::Condition { .. } => Err(failure(
            FailureKind::Permanent,
            "condition steps are evaluated by the run".to_owned(),
        )),
        #[allow(unreachable_patterns)]
        _ => Err(failure(
            FailureKind::Permanent,
            "unsupported step kind".to_owned(),
        )),
    }
}

fn failure(kind: FailureKind, message: String) -> Failure {
    Failure {
        kind,
        message,
        attempts: 0,
        agent: None,
    }
}

/// How the calls for one logical call (one item, one iteration) ended.
struct CallOutcome {
    result: Result<Value, (FailureKind, String)>,
    attempts: u32,
    agent: Option<AgentId>,
}

impl CallOutcome {
    fn into_result(self) -> StepResult {
        match self.result {
            Ok(output) => Ok(Success {
                output,
                attempts: self.attempts,
                agent: self.agent,
                agents: None,
                approved_by: None,
            }),
            Err((kind, message)) => Err(Failure {
                kind,
                message,
                attempts: self.attempts,
                agent: self.agent,
            }),
        }
    }
}

/// Calls an agent for `task` until it succeeds, fails for good, or the retry policy is
/// spent. `preferred` is tried first (a loop's agent); `deadline` bounds every attempt
/// (a loop's timeout) in addition to the step's own `timeout`.
#[allow(clippy::too_many_arguments)]
async fn call(
    ctx: &StepCtx,
    step: &PlanStep,
    task: &AgentTask,
    parameters: &Value,
    item: Option<usize>,
    iteration: u32,
    preferred: Option<&AgentId>,
    deadline: Option<DateTime<Utc>>,
) -> CallOutcome {
    let inner = &*ctx.inner;
    let retry = step.retry();
    let logical = (item.map_or(0, |item| item as u64 + 1) << 32) | u64::from(iteration);
    let mut rng = StdRng::seed_from_u64(spread(
        ctx.seed ^ spread(ctx.index as u64 ^ spread(logical)),
    ));
    let mut excluded: Vec<AgentId> = ctx.excluded.clone();
    let mut attempts = 0;
    let mut last_agent = None;
    loop {
        let selection = match choose(
            ctx,
            task,
            preferred.filter(|_| attempts == 0),
            &excluded,
            &mut rng,
        )
        .await
        {
            Ok(selection) => selection,
            Err(error) => {
                return CallOutcome {
                    result: Err((
                        FailureKind::NoAgent,
                        format!("step `{}`: {error}", step.id()),
                    )),
                    attempts,
                    agent: last_agent,
                };
            }
        };
        attempts += 1;
        let agent_id = selection.candidate.agent.clone();
        last_agent = Some(agent_id.clone());
        // One key per logical call: retries of it carry the same key, so an agent (or a
        // venue) can tell a retry of an order it already took from a new order.
        let idempotency_key = idempotency_key(&ctx.run_id, step, item, iteration, ctx.generation);
        // Journaled before the agent is called: a restart re-makes the call, same key.
        inner
            .journal_durably(ctx.batch.as_deref(), || {
                vec![JournalEntry::StepStarted {
                    step_id: step.id().clone(),
                    item,
                    iteration: (iteration > 0).then_some(iteration),
                    attempt: attempts,
                    agent_id: agent_id.clone(),
                    idempotency_key: idempotency_key.clone(),
                    at: inner.clock.now(),
                }]
            })
            .await;
        inner.emit(|| RunEvent::StepStarted {
            run_id: ctx.run_id.clone(),
            step_id: step.id().clone(),
            item,
            iteration: (iteration > 0).then_some(iteration),
            attempt: attempts,
            agent_id: agent_id.clone(),
            score: selection.candidate.score,
            at: inner.clock.now(),
        });
        let request = TaskRequest {
            run_id: ctx.run_id.clone(),
            step_id: step.id().clone(),
            item,
            attempt: attempts,
            idempotency_key,
            task_type: task.task_type.clone(),
            parameters: parameters.clone(),
        };
        let started = inner.clock.now();
        let limit = attempt_deadline(started, step.timeout(), deadline);
        let result = attempt(ctx, selection, request, limit).await;
        let latency = (inner.clock.now() - started).to_std().unwrap_or_default();
        let result =
            result.and_then(|output| check_output(output, inner.max_output_bytes, step, &agent_id));
        let outcome = match &result {
            Ok(_) => Outcome::Success { latency },
            Err((error, _)) => Outcome::Failure {
                kind: error.kind,
                latency,
            },
        };
        inner.registry.record(&agent_id, &task.task_type, outcome);
        let error = match result {
            Ok(output) => {
                return CallOutcome {
                    result: Ok(output),
                    attempts,
                    agent: Some(agent_id),
                };
            }
            Err(error) => error,
        };
        let (error, kind) = error;
        let message = format!(
            "step `{}`, agent `{agent_id}`: {}",
            step.id(),
            error.message
        );
        let retryable = error.kind != AgentErrorKind::Permanent;
        let past_deadline = deadline.is_some_and(|deadline| inner.clock.now() >= deadline);
        if !retryable || attempts >= retry.max_attempts || past_deadline {
            return CallOutcome {
                result: Err((kind, message)),
                attempts,
                agent: Some(agent_id),
            };
        }
        let mut delay = retry.jittered_delay(attempts, rng.random::<f64>());
        if error.kind == AgentErrorKind::AgentUnavailable {
            excluded.push(agent_id.clone());
            // Another eligible agent takes the call at once; without one, wait as for
            // a temporary failure.
            if !inner.registry.candidates(task, &excluded).is_empty() {
                delay = Duration::ZERO;
            } else {
                excluded.clear();
            }
        }
        inner.emit(|| RunEvent::StepRetrying {
            run_id: ctx.run_id.clone(),
            step_id: step.id().clone(),
            item,
            agent_id: agent_id.clone(),
            attempt: attempts,
            kind,
            message: message.clone(),
            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            at: inner.clock.now(),
        });
        if !delay.is_zero() {
            inner.clock.sleep(delay).await;
        }
    }
}

/// `run/step/item/iteration` (item and iteration 0 when the step has none), then
/// `/r<generation>` for a step a `ROLLBACK` reset (a new logical call).
fn idempotency_key(
    run: &RunId,
    step: &PlanStep,
    item: Option<usize>,
    iteration: u32,
    generation: u32,
) -> String {
    use std::fmt::Write as _;
    let mut key = String::with_capacity(run.as_str().len() + step.id().as_str().len() + 8);
    let item = item.map_or(0, |item| item + 1);
    let _ = write!(key, "{run}/{}/{item}/{iteration}", step.id());
    if generation > 0 {
        let _ = write!(key, "/r{generation}");
    }
    key
}

/// SplitMix64's finaliser: spreads the bits of `x` (seeds for independent streams).
fn spread(x: u64) -> u64 {
    let x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Picks an agent with a free slot, waiting for capacity when every eligible one is busy.
async fn choose(
    ctx: &StepCtx,
    task: &AgentTask,
    preferred: Option<&AgentId>,
    excluded: &[AgentId],
    rng: &mut StdRng,
) -> Result<Selection, SelectError> {
    let registry = &ctx.inner.registry;
    if let Some(selection) = preferred.and_then(|agent| registry.select_agent(task, agent)) {
        return Ok(selection);
    }
    let balancer = ctx.inner.balancer(task.load_balancing);
    let mut excluded = excluded;
    loop {
        // Armed before selecting, so a slot freed in between is not missed.
        let changed = registry.capacity_changed();
        match registry.select(task, balancer, rng, excluded) {
            Err(SelectError::AllBusy { .. }) => changed.await,
            // Every eligible agent was excluded (reported unavailable): try them again.
            Err(SelectError::NoAgent { excluded: 1.., .. }) => excluded = &[],
            other => return other,
        }
    }
}

/// The latest instant an attempt may run to.
fn attempt_deadline(
    started: DateTime<Utc>,
    timeout: Option<Duration>,
    deadline: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    let own = timeout.and_then(|timeout| {
        chrono::Duration::from_std(timeout)
            .ok()
            .map(|timeout| started + timeout)
    });
    match (own, deadline) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One call: contained if the agent panics, cut off at `limit`. The lease (the agent's
/// slot) is freed when the call ends either way.
async fn attempt(
    ctx: &StepCtx,
    selection: Selection,
    request: TaskRequest,
    limit: Option<DateTime<Utc>>,
) -> Result<Value, (AgentError, FailureKind)> {
    let Selection { agent, lease, .. } = selection;
    let call = AssertUnwindSafe(agent.execute(request)).catch_unwind();
    let result = match limit {
        None => call.await,
        Some(limit) => match select(call, ctx.inner.clock.sleep_until(limit)).await {
            Either::Left((result, _)) => result,
            Either::Right(((), _)) => {
                drop(lease);
                let error = AgentError::timeout("no answer within the step's timeout");
                return Err((error, FailureKind::Timeout));
            }
        },
    };
    drop(lease);
    match result {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(error)) => {
            let kind = FailureKind::from(error.kind);
            Err((error, kind))
        }
        // A panic fails the attempt like a temporary failure (retried per the policy).
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            let error = AgentError::temporary(format!("the agent panicked: {what}"));
            Err((error, FailureKind::Panic))
        }
    }
}

/// Rejects output over the size limit (measured as compact JSON, without building it).
fn check_output(
    output: Value,
    limit: usize,
    step: &PlanStep,
    agent: &AgentId,
) -> Result<Value, (AgentError, FailureKind)> {
    struct Counter {
        written: usize,
        limit: usize,
    }
    impl io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written += buf.len();
            if self.written > self.limit {
                return Err(io::Error::other("over the limit"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter { written: 0, limit };
    if serde_json::to_writer(&mut counter, &output).is_err() {
        let error = AgentError::permanent(format!(
            "output of agent `{agent}` for step `{}` is larger than {limit} bytes",
            step.id()
        ));
        return Err((error, FailureKind::InvalidOutput));
    }
    Ok(output)
}

/// A `parallel` step: one call per item of parameter `over`, at most `limit` at once.
async fn fan_out(
    ctx: &StepCtx,
    step: &PlanStep,
    task: &AgentTask,
    parameters: Value,
    over: &str,
    limit: usize,
) -> StepResult {
    let mut base = match parameters {
        Value::Object(object) => object,
        _ => Map::new(),
    };
    let items = match base.remove(over) {
        Some(Value::Array(items)) => items,
        other => {
            let found = other.map_or_else(|| "nothing".to_owned(), |value| value.to_string());
            return Err(failure(
                FailureKind::Binding,
                format!(
                    "step `{}`: parameter `{over}` is not an array (found {found})",
                    step.id()
                ),
            ));
        }
    };
    let count = items.len();
    let mut outputs: Vec<Option<(Value, Option<AgentId>)>> = (0..count).map(|_| None).collect();
    let mut pending = FuturesUnordered::new();
    let mut items = items.into_iter().enumerate();
    let mut attempts = 0;
    loop {
        while pending.len() < limit.max(1) {
            let Some((index, item)) = items.next() else {
                break;
            };
            let mut parameters = base.clone();
            parameters.insert(over.to_owned(), item);
            pending.push(async move {
                let parameters = Value::Object(parameters);
                (
                    index,
                    call(ctx, step, task, &parameters, Some(index), 0, None, None).await,
                )
            });
        }
        let Some((index, outcome)) = pending.next().await else {
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

/// A `loop` step: the task until `until` holds, `max_iterations`, or the timeout.
async fn repeat(
    ctx: &StepCtx,
    step: &PlanStep,
    task: &AgentTask,
    parameters: &Value,
    until: &Until,
    max_iterations: u32,
    interval: Duration,
) -> StepResult {
    let clock = &ctx.inner.clock;
    let deadline = step
        .timeout()
        .and_then(|timeout| chrono::Duration::from_std(timeout).ok())
        .map(|timeout| clock.now() + timeout);
    let mut last: Option<Value> = None;
    let mut agent: Option<AgentId> = None;
    let mut attempts = 0;
    let mut iterations = 0;
    while iterations < max_iterations {
        if iterations > 0 && !interval.is_zero() {
            let resume =
                chrono::Duration::from_std(interval).map(|interval| clock.now() + interval);
            if let (Ok(resume), Some(deadline)) = (resume, deadline) {
                if resume >= deadline {
                    break;
                }
            }
            clock.sleep(interval).await;
        }
        iterations += 1;
        let outcome = call(
            ctx,
            step,
            task,
            parameters,
            None,
            iterations,
            agent.as_ref(),
            deadline,
        )
        .await;
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
        let done = match until {
            Until::Done => output.get("done") == Some(&Value::Bool(true)),
            Until::Condition(condition) => {
                let values = LoopValues {
                    snapshot: ctx.snapshot.as_ref(),
                    own: &output,
                };
                condition
                    .evaluate(&values, &ctx.context)
                    .map_err(|error| Failure {
                        kind: FailureKind::Condition,
                        message: format!("step `{}`: loop.until: {error}", step.id()),
                        attempts,
                        agent: agent.clone(),
                    })?
            }
        };
        last = Some(output);
        if done || deadline.is_some_and(|deadline| clock.now() >= deadline) {
            break;
        }
    }
    let output = match last {
        Some(Value::Object(mut fields)) => {
            fields.insert("iterations".to_owned(), Value::from(iterations));
            Value::Object(fields)
        }
        Some(other) => serde_json::json!({"value": other, "iterations": iterations}),
        None => serde_json::json!({"iterations": iterations}),
    };
    Ok(Success {
        output,
        attempts,
        agent,
        agents: None,
        approved_by: None,
    })
}

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

/// A `human_approval` step: waits for `Engine::approve`/`reject`, or the timeout.
async fn approval(
    ctx: &StepCtx,
    step: &PlanStep,
    parameters: Value,
    on_timeout: OnTimeout,
) -> StepResult {
    let answer = match ctx.answer.clone() {
        // Journaled and announced before a restart; only acting on it is left.
        Some(answer) => answer,
        None => wait_for_answer(ctx, step, &parameters, on_timeout).await,
    };
    if !answer.approved {
        let why = answer
            .comment
            .as_deref()
            .map(|comment| format!(": {comment}"))
            .unwrap_or_default();
        return Err(failure(
            FailureKind::Rejected,
            format!("step `{}` rejected by {}{why}", step.id(), answer.by),
        ));
    }
    let mut output = match parameters {
        Value::Object(fields) => fields,
        other => Map::from_iter([("parameters".to_owned(), other)]),
    };
    output.insert("approvedBy".to_owned(), Value::String(answer.by.clone()));
    output.insert(
        "comment".to_owned(),
        answer.comment.map_or(Value::Null, Value::String),
    );
    Ok(Success {
        output: Value::Object(output),
        attempts: 0,
        agent: None,
        agents: None,
        approved_by: Some(answer.by),
    })
}

/// Waits for `Engine::approve`/`reject` or the step's timeout; the wait and the answer
/// are journaled, then announced.
async fn wait_for_answer(
    ctx: &StepCtx,
    step: &PlanStep,
    parameters: &Value,
    on_timeout: OnTimeout,
) -> Answer {
    let inner = &ctx.inner;
    inner
        .journal_durably(ctx.batch.as_deref(), || {
            vec![JournalEntry::StepWaiting {
                step_id: step.id().clone(),
                parameters: parameters.clone(),
                at: inner.clock.now(),
            }]
        })
        .await;
    let (answer, _registration) = inner.wait_for_answer(&ctx.run_id, step.id());
    inner.emit(|| RunEvent::StepWaiting {
        run_id: ctx.run_id.clone(),
        step_id: step.id().clone(),
        parameters: parameters.clone(),
        at: inner.clock.now(),
    });
    let answer = match step.timeout() {
        None => answer.await.ok(),
        Some(timeout) => match select(answer, inner.clock.sleep(timeout)).await {
            Either::Left((answer, _)) => answer.ok(),
            Either::Right(((), _)) => None,
        },
    };
    let answer = answer.unwrap_or_else(|| Answer {
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
                approved: answer.approved,
                by: answer.by.clone(),
                comment: answer.comment.clone(),
                at: inner.clock.now(),
            }]
        })
        .await;
    inner.emit(|| RunEvent::StepAnswered {
        run_id: ctx.run_id.clone(),
        step_id: step.id().clone(),
        approved: answer.approved,
        by: answer.by.clone(),
        comment: answer.comment.clone(),
        at: inner.clock.now(),
    });
    answer
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

    #[test]
    fn attempt_deadlines_take_the_earlier_bound() {
        let start = DateTime::parse_from_rfc3339("2026-01-05T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let later = start + chrono::Duration::seconds(10);
        assert_eq!(
            attempt_deadline(start, Some(Duration::from_secs(5)), Some(later)),
            Some(start + chrono::Duration::seconds(5))
        );
        assert_eq!(attempt_deadline(start, None, Some(later)), Some(later));
        assert_eq!(attempt_deadline(start, None, None), None);
    }
}
