//! One logical call: an agent chosen, called, and called again while the retry policy
//! allows.
//!
//! A *logical call* is the call for one task, one item of a `parallel` step, or one
//! iteration of a `loop` step. It carries one idempotency key however often it is
//! attempted, so an agent (or a venue) can tell a retry of an order it already took
//! from a new order. Each attempt:
//!
//! 1. chooses an agent with a free slot (waiting for capacity when every eligible one is
//!    busy; agents that answered `AGENT_UNAVAILABLE` are passed over while others exist;
//!    agents whose circuit breaker is open are passed over, and when every eligible one's
//!    is, the call waits for the first to turn half open, at most the step's `timeout`
//!    (or up to the loop's deadline) from when it began to wait, then fails `NO_AGENT`);
//! 2. journals its `stepStarted` and waits until it is durable (a restart re-makes the
//!    call with the same key), then announces `CircuitHalfOpen` if the call is a
//!    breaker's probe, and `StepStarted`;
//! 3. calls the agent, contained if it panics and cut off at the step's `timeout` (or the
//!    loop's deadline);
//! 4. records the outcome in the agent's history and its circuit breaker (announcing
//!    `CircuitOpened` or `CircuitClosed` when the breaker changes) before the agent's
//!    slot is freed, and either returns or waits the retry policy's jittered backoff
//!    before the next attempt.
//!
//! A call whose outcome is unknown — the agent answered `OUTCOME_UNKNOWN`, or the step is
//! marked `"sideEffects": true` and its own timeout (or the loop's deadline) cut the call
//! off — is never retried blindly: the step's `reconcile` task goes first to the same
//! agent (else another eligible for the step) with the call's idempotency key and
//! parameters, journaled as `reconcileStarted` (durably) before it is sent. `DONE` ends
//! the call with the answer's output; `NOT_DONE` lets the retry policy go on (the same
//! key); anything else, a failing reconcile call, or no `reconcile` task fails the call
//! `OUTCOME_UNKNOWN`. Retries spent after a `NOT_DONE` fail it `TEMPORARY` (the call is
//! known not to have taken effect). A side-effect call a restart cut off is reconciled
//! the same way before the first attempt here (see `crate::safety::reconcile`).
//!
//! A coordinated step makes one logical call per agent it asks, each a *lane* of the
//! step ([`Lanes`]): lane k's key ends in `/a<k+1>`, it never takes an agent another lane
//! holds, and its retries go back to its own agent whenever that agent has a free slot.

use std::borrow::Cow;
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::{Either, select};
use rand::RngExt;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::Value;
use tracing::Instrument as _;

use super::{Failure, StepCtx, StepResult, Success};
use crate::agent::{
    Agent, AgentError, AgentErrorKind, AgentId, CircuitChange, Outcome, SelectError, Selection,
    TaskRequest,
};
use crate::clock::add_saturating;
use crate::engine::RunEvent;
use crate::plan::{AgentTask, PlanStep};
use crate::run::seed::{mix, spread};
use crate::run::{FailureKind, RunId};
use crate::store::JournalEntry;

mod gates;

/// The call of `task` for one item or iteration of `step`, with resolved `parameters`.
pub(in crate::engine) struct LogicalCall<'a> {
    step: &'a PlanStep,
    task: &'a AgentTask,
    parameters: &'a Value,
    /// The item, for a `parallel` step.
    item: Option<usize>,
    /// The iteration, from 1, for a `loop` step; 0 otherwise.
    iteration: u32,
    /// The agent to try first (a loop's agent of the previous iteration).
    preferred: Option<&'a AgentId>,
    /// Bounds every attempt, besides the step's own `timeout` (a loop's deadline).
    deadline: Option<DateTime<Utc>>,
    /// Set while the call waits for its first agent, cleared once it has one (or none
    /// can be had): a `parallel` step starts its next item then.
    choosing: Option<&'a AtomicBool>,
    /// For a coordinated step: the call's lane, and the lanes' agents.
    lane: Option<(usize, &'a Lanes)>,
}

/// The lanes of a coordinated step: the agent each lane calls now, and whether the lane
/// started last still waits for its first agent (the next lane starts once it has one,
/// so it can leave that agent out).
pub(super) struct Lanes {
    agents: Mutex<Vec<Option<AgentId>>>,
    pub(super) choosing: AtomicBool,
}

impl Lanes {
    /// `count` lanes, none with an agent yet.
    pub(super) fn new(count: usize) -> Self {
        Self {
            agents: Mutex::new(vec![None; count]),
            choosing: AtomicBool::new(false),
        }
    }

    /// The agent of each lane that has had one, in lane order.
    pub(super) fn agents(&self) -> Vec<AgentId> {
        self.lock().iter().flatten().cloned().collect()
    }

    /// The agents the other lanes hold.
    fn others(&self, lane: usize) -> Vec<AgentId> {
        self.lock()
            .iter()
            .enumerate()
            .filter(|(index, _)| *index != lane)
            .filter_map(|(_, agent)| agent.clone())
            .collect()
    }

    fn set(&self, lane: usize, agent: &AgentId) {
        if let Some(slot) = self.lock().get_mut(lane) {
            *slot = Some(agent.clone());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<AgentId>>> {
        // Every update is one assignment: nothing is left half-done by a panic.
        self.agents.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How the attempts of one logical call ended.
pub(super) struct CallOutcome {
    pub(super) result: Result<Value, (FailureKind, String)>,
    pub(super) attempts: u32,
    pub(super) agent: Option<AgentId>,
}

impl CallOutcome {
    pub(super) fn into_result(self) -> StepResult {
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

/// Why an attempt failed: the agent's error, and the kind the step reports.
type AttemptError = (AgentError, FailureKind);

impl<'a> LogicalCall<'a> {
    /// The call of `task` for `step` (no item, no iteration, no other bound).
    pub(super) fn new(step: &'a PlanStep, task: &'a AgentTask, parameters: &'a Value) -> Self {
        Self {
            step,
            task,
            parameters,
            item: None,
            iteration: 0,
            preferred: None,
            deadline: None,
            choosing: None,
            lane: None,
        }
    }

    /// The call of lane `lane` of a coordinated step, which clears `lanes.choosing` once
    /// its first agent is chosen (or none can be).
    pub(super) fn lane(mut self, lane: usize, lanes: &'a Lanes) -> Self {
        self.lane = Some((lane, lanes));
        self.choosing = Some(&lanes.choosing);
        self
    }

    /// The call for item `item` of a `parallel` step, which clears `choosing` once its
    /// first agent is chosen (or none can be).
    pub(super) fn item(mut self, item: usize, choosing: &'a AtomicBool) -> Self {
        self.item = Some(item);
        self.choosing = Some(choosing);
        self
    }

    /// The call for iteration `iteration` (from 1) of a `loop` step, trying `preferred`
    /// first and bounded by the loop's `deadline`.
    pub(super) fn iteration(
        mut self,
        iteration: u32,
        preferred: Option<&'a AgentId>,
        deadline: Option<DateTime<Utc>>,
    ) -> Self {
        self.iteration = iteration;
        self.preferred = preferred;
        self.deadline = deadline;
        self
    }

    /// Calls an agent until it succeeds, fails for good, or the retry policy is spent.
    pub(super) async fn make(&self, ctx: &StepCtx) -> CallOutcome {
        let mut tries = Tries::new(ctx, self, self.step.retry().max_attempts);
        // A side-effect call a restart cut off may have been made: ask before calling again.
        if let (Some(_), Some(agent)) = (self.step.side_effects(), tries.cut_off_agent.clone()) {
            match self.reconcile(ctx, &agent, &mut tries).await {
                Ok(Some(output)) => return tries.outcome(Ok(output)),
                Ok(None) => {}
                Err((kind, why)) => {
                    let message = format!(
                        "step `{}`, agent `{agent}`: the call a restart cut off may have been made; {why}",
                        self.step.id()
                    );
                    return tries.outcome(Err((kind, message)));
                }
            }
        }
        loop {
            let first = tries.count == tries.from;
            let (preferred, excluded) = match self.lane {
                // A lane keeps its agent (the one a restart cut it off on, at first) and
                // leaves the other lanes' agents out.
                Some((lane, lanes)) => {
                    let mut excluded = tries.excluded.clone();
                    excluded.extend(lanes.others(lane));
                    let own = tries.last_agent.as_ref().or(tries.cut_off_agent.as_ref());
                    let own = own.filter(|agent| !excluded.contains(agent)).cloned();
                    (own, Cow::Owned(excluded))
                }
                None => (
                    self.preferred.filter(|_| first).cloned(),
                    Cow::Borrowed(tries.excluded.as_slice()),
                ),
            };
            // Every attempt takes the step's budget first, waiting its turn as the
            // attempt's timeout allows (without holding an agent's slot meanwhile).
            if let Err(why) = self.take_budget(ctx).await {
                if let Some(choosing) = self.choosing.filter(|_| first) {
                    choosing.store(false, Ordering::Relaxed);
                }
                let message = format!("step `{}`: {why}", self.step.id());
                return tries.outcome(Err((FailureKind::BudgetExhausted, message)));
            }
            // Waiting for an open circuit breaker is bounded as an attempt is.
            let waits_until =
                attempt_deadline(ctx.inner.clock.now(), self.step.timeout(), self.deadline);
            let chosen = choose(
                ctx,
                self.task,
                preferred.as_ref(),
                &excluded,
                &mut tries.rng,
                waits_until,
            )
            .await;
            if let (Some((lane, lanes)), Ok(selection)) = (self.lane, &chosen) {
                lanes.set(lane, &selection.candidate.agent);
            }
            if let Some(choosing) = self.choosing.filter(|_| first) {
                choosing.store(false, Ordering::Relaxed);
            }
            let selection = match chosen {
                Ok(selection) => selection,
                Err(error) => {
                    let message = format!("step `{}`: {error}", self.step.id());
                    return tries.outcome(Err((FailureKind::NoAgent, message)));
                }
            };
            tries.count += 1;
            let agent_id = selection.candidate.agent.clone();
            tries.last_agent = Some(agent_id.clone());
            // One span per attempt, a child of the run's (the run's future is polled in
            // it), closed when the attempt ends; its fields are computed only when a
            // subscriber wants the span.
            let span = tracing::info_span!(
                target: "tradeflow::run",
                "tradeflow.step",
                step_id = self.step.id().as_str(),
                agent_id = agent_id.as_str(),
                attempt = tries.count,
                idempotency_key = %self.key(ctx),
            );
            let attempt = self.attempt(ctx, selection, tries.count);
            let (error, mut kind) = match attempt.instrument(span).await {
                Ok(output) => {
                    self.settle_budget(ctx, &output);
                    return tries.outcome(Ok(output));
                }
                Err(error) => error,
            };
            let mut message = format!(
                "step `{}`, agent `{agent_id}`: {}",
                self.step.id(),
                error.message
            );
            // Never retried blindly: asked first whether it took effect.
            if kind == FailureKind::OutcomeUnknown {
                match self.reconcile(ctx, &agent_id, &mut tries).await {
                    Ok(Some(output)) => return tries.outcome(Ok(output)),
                    Ok(None) => {
                        kind = FailureKind::Temporary;
                        message.push_str("; the reconcile task says it was not done");
                    }
                    Err((kind, why)) => {
                        return tries.outcome(Err((kind, format!("{message}; {why}"))));
                    }
                }
            }
            let Some(delay) = self.retry_delay(ctx, &error, &agent_id, &mut tries) else {
                return tries.outcome(Err((kind, message)));
            };
            tracing::warn!(
                target: "tradeflow::run",
                step_id = self.step.id().as_str(),
                attempt = tries.count,
                kind = kind.as_str(),
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "call failed; retrying"
            );
            let inner = &ctx.inner;
            inner.emit(|| RunEvent::StepRetrying {
                run_id: ctx.run_id.clone(),
                step_id: self.step.id().clone(),
                item: self.item,
                agent_id: agent_id.clone(),
                attempt: tries.count,
                kind,
                message: ctx.scrub(&message).into_owned(),
                delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                at: inner.clock.now(),
            });
            if !delay.is_zero() {
                inner.clock.sleep(delay).await;
            }
            // The retry calls on the run's data as it is now: too old, it is not made.
            if let (Some(freshness), Some(as_of)) = (self.step.freshness(), &ctx.data_as_of) {
                if let Err(stale) = freshness.check(as_of, inner.clock.now()) {
                    return tries.outcome(Err((FailureKind::StaleData, stale.to_string())));
                }
            }
        }
    }

    /// One attempt on the chosen agent: journaled (durably) and announced, made, and
    /// recorded in the agent's history and circuit breaker before its slot is freed.
    async fn attempt(
        &self,
        ctx: &StepCtx,
        selection: Selection,
        attempt: u32,
    ) -> Result<Value, AttemptError> {
        let inner = &*ctx.inner;
        let agent_id = selection.candidate.agent.clone();
        let idempotency_key = self.key(ctx);
        let iteration = (self.iteration > 0).then_some(self.iteration);
        // Counted as the journal counts it: from its `stepStarted` on.
        ctx.progress.called();
        // Journaled before the agent is called: a restart re-makes the call, same key.
        let journaled = inner
            .journal_durably(ctx.batch.as_deref(), || {
                vec![JournalEntry::StepStarted {
                    step_id: self.step.id().clone(),
                    item: self.item,
                    iteration,
                    attempt,
                    agent_id: agent_id.clone(),
                    idempotency_key: idempotency_key.clone(),
                    at: inner.clock.now(),
                }]
            })
            .await;
        // A call that cannot be journaled is not made: the run stops.
        if let Err(lost) = journaled {
            let error = AgentError::permanent(format!("not called: {lost}"));
            return Err((error, FailureKind::Store));
        }
        if selection.lease.is_probe() {
            inner.emit(|| RunEvent::CircuitHalfOpen {
                run_id: ctx.run_id.clone(),
                step_id: self.step.id().clone(),
                agent_id: agent_id.clone(),
                at: inner.clock.now(),
            });
        }
        inner.emit(|| RunEvent::StepStarted {
            run_id: ctx.run_id.clone(),
            step_id: self.step.id().clone(),
            item: self.item,
            iteration,
            attempt,
            agent_id: agent_id.clone(),
            score: selection.candidate.score,
            at: inner.clock.now(),
        });
        let request = TaskRequest {
            run_id: ctx.run_id.clone(),
            step_id: self.step.id().clone(),
            item: self.item,
            attempt,
            idempotency_key,
            task_type: self.task.task_type.clone(),
            parameters: self.parameters.clone(),
            seed: call_seed(ctx, self, attempt),
        };
        let started = inner.clock.now();
        let limit = attempt_deadline(started, self.step.timeout(), self.deadline);
        let Selection { agent, lease, .. } = selection;
        let (in_use, telemetry) = (lease.slots(), &inner.telemetry);
        let gauges = telemetry.agent(&in_use, &self.task.agent_type, &inner.registry, started);
        gauges.load(&in_use, started);
        let side_effects = self.step.side_effects().is_some();
        let result = call_agent(ctx, &*agent, request, limit, side_effects).await;
        let ended = inner.clock.now();
        let latency = (ended - started).to_std().unwrap_or_default();
        let result = result
            .and_then(|output| check_output(output, inner.max_output_bytes, self.step, &agent_id));
        let outcome = match &result {
            Ok(_) => Outcome::Success { latency },
            Err((error, _)) => Outcome::Failure {
                kind: error.kind,
                latency,
            },
        };
        let change = inner
            .registry
            .record(&agent_id, &self.task.task_type, outcome);
        if inner.adapting.recording() {
            let step = self.step.id();
            let failed = result.is_err();
            let workflow = ctx.plan.workflow_id();
            let measures = &inner.adapting.measures;
            measures.record(workflow, step, &self.task.agent_type, failed, latency);
        }
        // Recorded before the slot is freed: a caller woken for it sees the breaker as
        // the outcome left it, and a probe's lease never gives up a decided probe.
        drop(lease);
        gauges.load(&in_use, ended);
        let failure = result.as_ref().err().map(|&(_, kind)| kind);
        let (keys, slots) = (&ctx.metrics, in_use.total());
        telemetry.attempt_ended(keys, ctx.index, &gauges, slots, latency, ended, failure);
        if let Some(change) = change {
            inner.emit(|| {
                let (run_id, step_id) = (ctx.run_id.clone(), self.step.id().clone());
                let at = inner.clock.now();
                match change {
                    CircuitChange::Opened { failures, until } => RunEvent::CircuitOpened {
                        run_id,
                        step_id,
                        agent_id: agent_id.clone(),
                        failures,
                        until,
                        at,
                    },
                    CircuitChange::Closed => RunEvent::CircuitClosed {
                        run_id,
                        step_id,
                        agent_id: agent_id.clone(),
                        at,
                    },
                }
            });
        }
        result
    }

    /// The call's idempotency key.
    fn key(&self, ctx: &StepCtx) -> String {
        idempotency_key(
            &ctx.run_id,
            self.step,
            self.item,
            self.iteration,
            ctx.generation,
            self.lane_index(),
        )
    }

    /// The lane, for a call of a coordinated step.
    fn lane_index(&self) -> Option<usize> {
        self.lane.map(|(lane, _)| lane)
    }

    /// The item, iteration and lane of the call, in one number (the seeds' input).
    fn identity(&self) -> u64 {
        let logical = logical(self.item, self.iteration);
        // Calls of steps without lanes keep the seeds they had before lanes existed.
        self.lane_index().map_or(logical, |lane| {
            logical ^ spread((lane as u64).wrapping_add(1))
        })
    }

    /// The wait before the next attempt after `error`, or `None` when there is none: the
    /// failure is permanent, the policy's attempts are spent, or the deadline passed. An
    /// unavailable agent is excluded, and another eligible one takes the call at once.
    fn retry_delay(
        &self,
        ctx: &StepCtx,
        error: &AgentError,
        agent: &AgentId,
        tries: &mut Tries,
    ) -> Option<Duration> {
        let inner = &ctx.inner;
        let retry = self.step.retry();
        let retryable = error.kind != AgentErrorKind::Permanent;
        let past_deadline = self
            .deadline
            .is_some_and(|deadline| inner.clock.now() >= deadline);
        if !retryable || tries.count >= retry.max_attempts || past_deadline {
            return None;
        }
        let mut delay = retry.jittered_delay(tries.count, tries.rng.random::<f64>());
        if error.kind == AgentErrorKind::AgentUnavailable {
            tries.excluded.push(agent.clone());
            // Another eligible agent takes the call at once; without one, wait as for
            // a temporary failure.
            if !inner
                .registry
                .candidates(self.task, &tries.excluded)
                .is_empty()
            {
                delay = Duration::ZERO;
            } else {
                tries.excluded.clear();
            }
        }
        Some(delay)
    }
}

/// What the attempts of one logical call carry from one to the next.
struct Tries {
    /// The number of the last attempt made (from a call cut off by a restart, if any).
    count: u32,
    /// The attempt this engine started from (0, or the cut-off call's): the calls made
    /// here are `count - from`.
    from: u32,
    /// Agents not to call: the step's excluded ones and those that were unavailable.
    excluded: Vec<AgentId>,
    /// Seeded per run, step, item and iteration: the same seed makes the same choices.
    rng: StdRng,
    /// The agent of the last attempt.
    last_agent: Option<AgentId>,
    /// The agent of the call a restart cut off, if any.
    cut_off_agent: Option<AgentId>,
}

impl Tries {
    /// The tries of one logical call; a call cut off by a restart goes on from the attempt
    /// it was at (it may have been made: it counts), within the retry policy's budget.
    fn new(ctx: &StepCtx, call: &LogicalCall<'_>, max_attempts: u32) -> Self {
        let seed = spread(ctx.seed ^ spread(ctx.index as u64 ^ spread(call.identity())));
        let cut_off = ctx.cut_off.iter().find(|cut| {
            cut.item == call.item
                && cut.iteration.unwrap_or(0) == call.iteration
                && cut.lane() == call.lane_index()
        });
        let from = cut_off
            .map_or(0, |cut| cut.attempt)
            .min(max_attempts.saturating_sub(1));
        Self {
            count: from,
            from,
            excluded: ctx.excluded.clone(),
            rng: StdRng::seed_from_u64(seed),
            last_agent: None,
            cut_off_agent: cut_off.map(|cut| cut.agent_id.clone()),
        }
    }

    /// How the logical call ended, with `result`.
    fn outcome(self, result: Result<Value, (FailureKind, String)>) -> CallOutcome {
        CallOutcome {
            result,
            attempts: self.count.saturating_sub(self.from),
            agent: self.last_agent,
        }
    }
}

/// The item (from 1; 0 for none) and iteration of a logical call, in one number.
fn logical(item: Option<usize>, iteration: u32) -> u64 {
    (item.map_or(0, |item| (item as u64).wrapping_add(1)) << 32) | u64::from(iteration)
}

/// The seed of one attempt's random choices ([`TaskRequest::seed`]): the run's seed and
/// the call's identity (step, item, iteration, rollback generation, attempt). The run id
/// is left out, so that a run replayed under another id with the same seed draws the same.
fn call_seed(ctx: &StepCtx, call: &LogicalCall<'_>, attempt: u32) -> u64 {
    let attempt = (u64::from(ctx.generation) << 32) | u64::from(attempt);
    spread(mix(ctx.seed, call.step.id().as_str()) ^ spread(call.identity() ^ spread(attempt)))
}

/// `run/step/item/iteration` (item and iteration 0 when the step has none), then
/// `/r<generation>` for a step a `ROLLBACK` reset (a new logical call), then `/a<k+1>`
/// for lane k of a coordinated step (each agent asked has a call of its own).
fn idempotency_key(
    run: &RunId,
    step: &PlanStep,
    item: Option<usize>,
    iteration: u32,
    generation: u32,
    lane: Option<usize>,
) -> String {
    use std::fmt::Write as _;
    let mut key = String::with_capacity(run.as_str().len() + step.id().as_str().len() + 8);
    let item = item.map_or(0, |item| item + 1);
    let _ = write!(key, "{run}/{}/{item}/{iteration}", step.id());
    if generation > 0 {
        let _ = write!(key, "/r{generation}");
    }
    if let Some(lane) = lane {
        let _ = write!(key, "/a{}", lane + 1);
    }
    key
}

/// Picks an agent with a free slot, waiting its turn when every eligible one is busy
/// (first come, first served: a freed slot wakes one waiting call, not all of them),
/// and until `deadline` at most when every eligible one's circuit breaker is open.
async fn choose(
    ctx: &StepCtx,
    task: &AgentTask,
    preferred: Option<&AgentId>,
    excluded: &[AgentId],
    rng: &mut StdRng,
    deadline: Option<DateTime<Utc>>,
) -> Result<Selection, SelectError> {
    let registry = &ctx.inner.registry;
    if let Some(selection) = preferred.and_then(|agent| registry.select_agent(task, agent)) {
        return Ok(selection);
    }
    let balancer = ctx.inner.balancer(task.load_balancing);
    let first = in_line(ctx, task, || {
        registry.acquire_before(task, balancer, rng, excluded, deadline)
    })
    .await;
    match first {
        // Every eligible agent was excluded (reported unavailable): try them again.
        Err(SelectError::NoAgent { excluded: 1.., .. }) => {
            in_line(ctx, task, || {
                registry.acquire_before(task, balancer, rng, &[], deadline)
            })
            .await
        }
        other => other,
    }
}

/// The future `acquire` makes, telling the metrics how many calls wait for an agent of
/// `task`'s type when this one joins the line (it could not take a slot at once) and
/// when it has left it (served, given up, or dropped with its run): a call served at
/// once costs nothing.
async fn in_line<F>(ctx: &StepCtx, task: &AgentTask, acquire: impl FnOnce() -> F) -> F::Output
where
    F: Future<Output = Result<Selection, SelectError>>,
{
    /// Tells the line's length when armed and dropped: declared before the wait, it is
    /// dropped after it (locals drop in reverse order, when the future ends as when it
    /// is dropped), so the line it counts no longer holds this call.
    struct Waiting<'a> {
        ctx: &'a StepCtx,
        task: &'a AgentTask,
        armed: bool,
    }
    impl Waiting<'_> {
        fn tell(&self) {
            let inner = &self.ctx.inner;
            let agent_type = &self.task.agent_type;
            (inner.telemetry).waiting(&inner.registry, agent_type, inner.clock.now());
        }
    }
    impl Drop for Waiting<'_> {
        fn drop(&mut self) {
            if self.armed {
                self.tell();
            }
        }
    }
    let mut waiting = Waiting {
        ctx,
        task,
        armed: false,
    };
    // Made in place, in this future's state: a few kilobytes not moved.
    let mut acquiring = pin!(acquire());
    if let Poll::Ready(done) = futures::poll!(acquiring.as_mut()) {
        return done;
    }
    waiting.armed = true;
    waiting.tell();
    acquiring.await
}

/// The latest instant an attempt may run to.
fn attempt_deadline(
    started: DateTime<Utc>,
    timeout: Option<Duration>,
    deadline: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    let own = timeout.map(|timeout| add_saturating(started, timeout));
    match (own, deadline) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One call: contained if the agent panics, cut off at `limit` (the call's future is
/// dropped then; for a call with `side_effects`, its outcome is unknown then). The caller
/// holds the agent's slot and frees it once it has recorded the outcome.
async fn call_agent(
    ctx: &StepCtx,
    agent: &dyn Agent,
    request: TaskRequest,
    limit: Option<DateTime<Utc>>,
    side_effects: bool,
) -> Result<Value, AttemptError> {
    let call = AssertUnwindSafe(agent.execute(request)).catch_unwind();
    let result = match limit {
        None => call.await,
        Some(limit) => match select(call, ctx.inner.clock.sleep_until(limit)).await {
            Either::Left((result, _)) => result,
            Either::Right(((), _)) if side_effects => {
                let error = AgentError::new(
                    AgentErrorKind::OutcomeUnknown,
                    "no answer within the step's timeout: the call may have taken effect",
                );
                return Err((error, FailureKind::OutcomeUnknown));
            }
            Either::Right(((), _)) => {
                let error = AgentError::timeout("no answer within the step's timeout");
                return Err((error, FailureKind::Timeout));
            }
        },
    };
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

/// Rejects output nested deeper than [`MAX_VALUE_DEPTH`](crate::run::MAX_VALUE_DEPTH) or
/// over the size limit (measured as compact JSON, without building it).
fn check_output(
    output: Value,
    limit: usize,
    step: &PlanStep,
    agent: &AgentId,
) -> Result<Value, AttemptError> {
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
    // Depth first: measuring the size walks the value recursively.
    let output = crate::run::bounded(output).map_err(|depth| {
        let error = AgentError::permanent(format!(
            "output of agent `{agent}` for step `{}` nests {depth} levels deep, more than the {} allowed",
            step.id(),
            crate::run::MAX_VALUE_DEPTH
        ));
        (error, FailureKind::InvalidOutput)
    })?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
