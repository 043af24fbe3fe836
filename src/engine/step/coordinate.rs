//! Coordinated `task` and `decision` steps: the same task sent to several agents at once,
//! their answers combined by the step's [`Coordination`] (decided by the pure
//! [`Tally`]).
//!
//! The step asks `agents` agents (default: every eligible one; fewer when fewer are
//! eligible; at least one, so a step with no eligible agent fails `NO_AGENT` as an
//! uncoordinated one does). Each agent asked is a *lane*: one logical call with its own
//! retries and its own idempotency key (`…/a1`, `…/a2`, … in selection order). Lanes
//! start in order, each once the lane before it has its agent, and each leaves out the
//! agents the others hold, so the agents asked are distinct. As soon as the tally is
//! decided (the first success of `FIRST`, a quorum of agreeing answers, or a quorum out
//! of reach), the lanes still running are dropped: their calls are cancelled and their
//! agents' slots freed at once. Attempts count every call of every lane.
//!
//! A run resumed after a crash re-makes each lane that had started, with its key and
//! from the attempt it was at, on the agent it was cut off on when that agent has a free
//! slot (answers that arrived before the crash were not journaled, so every lane answers
//! again); lanes that had not started start as new.

use std::future::poll_fn;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::FutureExt;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde_json::{Map, Value};

use super::call::Lanes;
use super::{Failure, LogicalCall, StepCtx, StepResult, Success};
use crate::agent::{AgentError, AgentId, Outcome, TaskRequest};
use crate::coordinate::{Coordination, Mode, Tally, Verdict};
use crate::engine::Inner;
use crate::engine::coordinated::{CoordinateError, Coordinated};
use crate::plan::{AgentTask, PlanStep};
use crate::run::FailureKind;

/// Runs `task` for `step` on several agents under `coordination`.
pub(super) async fn coordinate(
    ctx: &StepCtx,
    step: &PlanStep,
    task: &AgentTask,
    parameters: &Value,
    coordination: &Coordination,
) -> StepResult {
    let eligible = ctx.inner.registry.candidates(task, &ctx.excluded).len();
    let asked = coordination
        .agent_count()
        .map_or(eligible, |count| eligible.min(count.get() as usize))
        .max(1);
    let mode = coordination.mode();
    let mut tally = Tally::new(mode, asked);
    if let Verdict::NoQuorum { needed, .. } = tally.verdict() {
        return Err(Failure::before_calls(
            FailureKind::NoQuorum,
            format!(
                "step `{}`: {} needs {needed} answers but only {asked} agents are eligible",
                step.id(),
                mode.as_str()
            ),
        ));
    }
    let lanes = &Lanes::new(asked);
    let mut answers = Answers::new(asked);
    let mut pending = FuturesUnordered::new();
    let mut next = 0;
    let verdict = loop {
        let ended = poll_fn(|cx| {
            loop {
                if pending.is_empty() {
                    lanes.choosing.store(false, Ordering::Relaxed);
                }
                if next < asked && !lanes.choosing.load(Ordering::Relaxed) {
                    let lane = next;
                    next += 1;
                    lanes.choosing.store(true, Ordering::Relaxed);
                    pending.push(async move {
                        let call = LogicalCall::new(step, task, parameters).lane(lane, lanes);
                        (lane, call.make(ctx).await)
                    });
                }
                let polled = pending.poll_next_unpin(cx);
                // A lane polled just now got its agent: the next one may start at once.
                let more = next < asked && !lanes.choosing.load(Ordering::Relaxed);
                if polled.is_ready() || !more {
                    return polled;
                }
            }
        })
        .await;
        let Some((lane, outcome)) = ended else {
            // Every lane ended, so the tally has decided; never report a partial result.
            break tally.verdict();
        };
        answers.attempts += outcome.attempts;
        let verdict = match outcome.result {
            Ok(output) => {
                let verdict = tally.answered(lane, &output);
                answers.set(lane, Ok(output));
                verdict
            }
            Err(failure) => {
                answers.set(lane, Err(failure));
                tally.failed(lane)
            }
        };
        if verdict.is_decided() {
            break verdict;
        }
    };
    // The lanes still running are cancelled here: their slots are freed at once.
    drop(pending);
    answers.finish(step, mode, verdict, lanes.agents())
}

/// What the lanes answered so far.
struct Answers {
    results: Vec<Option<Result<Value, (FailureKind, String)>>>,
    attempts: u32,
}

impl Answers {
    fn new(asked: usize) -> Self {
        Self {
            results: (0..asked).map(|_| None).collect(),
            attempts: 0,
        }
    }

    fn set(&mut self, lane: usize, result: Result<Value, (FailureKind, String)>) {
        if let Some(slot) = self.results.get_mut(lane) {
            *slot = Some(result);
        }
    }

    fn take_output(&mut self, lane: usize) -> Option<Value> {
        match self.results.get_mut(lane).and_then(Option::take) {
            Some(Ok(output)) => Some(output),
            _ => None,
        }
    }

    /// The step's result for `verdict`; `asked` lists the agents asked, in lane order.
    fn finish(
        mut self,
        step: &PlanStep,
        mode: &Mode,
        verdict: Verdict,
        asked: Vec<AgentId>,
    ) -> StepResult {
        let attempts = self.attempts;
        let output = match verdict {
            Verdict::Winner(lane) => self
                .take_output(lane)
                .map(|output| (output, asked.get(lane).cloned())),
            Verdict::All(lanes) => {
                let mut results = Vec::with_capacity(lanes.len());
                let mut agent_ids = Vec::with_capacity(lanes.len());
                for lane in lanes {
                    if let Some(output) = self.take_output(lane) {
                        results.push(output);
                        agent_ids.extend(asked.get(lane).map(|id| Value::from(id.as_str())));
                    }
                }
                let mut output = Map::new();
                output.insert("results".to_owned(), Value::Array(results));
                output.insert("agentIds".to_owned(), Value::Array(agent_ids));
                Some((Value::Object(output), None))
            }
            Verdict::NoQuorum { agreeing, needed } => {
                let what = match mode {
                    Mode::All { .. } => "succeeded",
                    _ => "agreed",
                };
                return Err(Failure {
                    kind: FailureKind::NoQuorum,
                    message: format!(
                        "step `{}`: {} of the {needed} answers needed {what} ({} of {} agents asked)",
                        step.id(),
                        agreeing,
                        mode.as_str(),
                        asked.len()
                    ),
                    attempts,
                    agent: None,
                });
            }
            _ => None,
        };
        if let Some((output, agent)) = output {
            return Ok(Success {
                output,
                attempts,
                agent,
                agents: Some(asked),
                approved_by: None,
            });
        }
        // Every agent failed: the first failure, in lane order, is the step's.
        let (kind, message) = self
            .results
            .into_iter()
            .flatten()
            .find_map(Result::err)
            .unwrap_or((
                FailureKind::Permanent,
                format!("step `{}`: no agent answered", step.id()),
            ));
        Err(Failure {
            kind,
            message: if asked.len() > 1 {
                format!("every agent asked failed; the first: {message}")
            } else {
                message
            },
            attempts,
            agent: None,
        })
    }
}

/// Sends `task` to each agent of `agent_ids` (registered, distinct: checked by the
/// caller) at once, each once, and combines the answers under `mode`.
pub(in crate::engine) async fn coordinate_named(
    inner: &Arc<Inner>,
    agent_ids: &[AgentId],
    task: TaskRequest,
    mode: &Mode,
) -> Result<Coordinated, CoordinateError> {
    let asked = agent_ids.len();
    let mut tally = Tally::new(mode, asked);
    let no_quorum = |agreeing, needed| CoordinateError::NoQuorum {
        mode: mode.as_str(),
        agreeing,
        needed,
        asked,
    };
    if let Verdict::NoQuorum { agreeing, needed } = tally.verdict() {
        return Err(no_quorum(agreeing, needed));
    }
    let task = &task;
    let mut pending: FuturesUnordered<_> = agent_ids
        .iter()
        .enumerate()
        .map(|(lane, id)| async move { (lane, call_named(inner, id, lane, task).await) })
        .collect();
    let mut results: Vec<Option<Result<Value, AgentError>>> = (0..asked).map(|_| None).collect();
    let mut attempts = 0;
    let verdict = loop {
        let Some((lane, result)) = pending.next().await else {
            break tally.verdict();
        };
        attempts += 1;
        let verdict = match &result {
            Ok(output) => tally.answered(lane, output),
            Err(_) => tally.failed(lane),
        };
        if let Some(slot) = results.get_mut(lane) {
            *slot = Some(result);
        }
        if verdict.is_decided() {
            break verdict;
        }
    };
    // The calls still running are cancelled here: their slots are freed at once.
    drop(pending);
    let mut output_of = |lane: usize| match results.get_mut(lane).and_then(Option::take) {
        Some(Ok(output)) => Some(output),
        _ => None,
    };
    let (output, agent_id) = match verdict {
        Verdict::Winner(lane) => match output_of(lane) {
            Some(output) => (output, agent_ids.get(lane).cloned()),
            None => return Err(all_failed(agent_ids, results)),
        },
        Verdict::All(lanes) => {
            let mut answers = Vec::with_capacity(lanes.len());
            let mut ids = Vec::with_capacity(lanes.len());
            for lane in lanes {
                if let Some(output) = output_of(lane) {
                    answers.push(output);
                    ids.extend(agent_ids.get(lane).map(|id| Value::from(id.as_str())));
                }
            }
            let mut output = Map::new();
            output.insert("results".to_owned(), Value::Array(answers));
            output.insert("agentIds".to_owned(), Value::Array(ids));
            (Value::Object(output), None)
        }
        Verdict::NoQuorum { agreeing, needed } => return Err(no_quorum(agreeing, needed)),
        _ => return Err(all_failed(agent_ids, results)),
    };
    Ok(Coordinated {
        output,
        agent_id,
        agent_ids: agent_ids.to_vec(),
        attempts,
    })
}

/// The first failure, in the order named.
fn all_failed(
    agent_ids: &[AgentId],
    results: Vec<Option<Result<Value, AgentError>>>,
) -> CoordinateError {
    let first = agent_ids
        .iter()
        .zip(results)
        .find_map(|(id, result)| match result {
            Some(Err(error)) => Some((id.clone(), error)),
            _ => None,
        });
    match (first, agent_ids.first()) {
        (Some((agent, error)), _) => CoordinateError::AllFailed { agent, error },
        (None, Some(agent)) => CoordinateError::AllFailed {
            agent: agent.clone(),
            error: AgentError::permanent("no answer"),
        },
        (None, None) => CoordinateError::NoAgents,
    }
}

/// One call of `coordinate_named`: waits for a free slot on agent `id`, calls it with
/// its own key (`/a<lane + 1>`), contained if it panics, recorded in its history.
async fn call_named(
    inner: &Inner,
    id: &AgentId,
    lane: usize,
    task: &TaskRequest,
) -> Result<Value, AgentError> {
    let registry = &inner.registry;
    let (agent, lease) = loop {
        let changed = registry.capacity_changed();
        match registry.reserve_named(id) {
            Some(Some(reserved)) => break reserved,
            Some(None) => changed.await,
            None => return Err(AgentError::permanent(format!("agent `{id}` left"))),
        }
    };
    let mut request = task.clone();
    request.idempotency_key = format!("{}/a{}", task.idempotency_key, lane + 1);
    let started = inner.clock.now();
    let result = AssertUnwindSafe(agent.execute(request))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(AgentError::temporary("the agent panicked")));
    drop(lease);
    let latency = (inner.clock.now() - started).to_std().unwrap_or_default();
    let outcome = match &result {
        Ok(_) => Outcome::Success { latency },
        Err(error) => Outcome::Failure {
            kind: error.kind,
            latency,
        },
    };
    registry.record(id, &task.task_type, outcome);
    result
}
