//! What one step does once the run starts it: the work of each step kind.
//!
//! The run decides *whether* a step runs (conditions, skip rules, bindings resolved:
//! `run/start.rs`); a step's future, built here, does the work and ends in a
//! [`StepResult`] the run settles. The future owns what it needs ([`StepCtx`]), so it is
//! `'static` and the run drives many at once.
//!
//! | kind | file | work |
//! |---|---|---|
//! | `task`, `decision` | [`call`] | one logical call to one agent, with its retries |
//! | `task`, `decision` with `coordination` | [`coordinate`] | one logical call per agent asked, answers combined |
//! | `parallel` | [`parallel`] | one logical call per item, at most `maxConcurrency` at once |
//! | `loop` | [`repeat`] | logical calls until `until` holds, `maxIterations`, or the timeout |
//! | `human_approval` | [`approval`] | waits for an answer (journaled), or its timeout |
//!
//! `condition` steps take no time: the run evaluates them when they become ready.

mod approval;
mod call;
mod coordinate;
mod parallel;
mod repeat;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::Inner;
use super::approvals::Verdict;
use super::durable::Batch;
use crate::agent::AgentId;
use crate::expr::Context;
use crate::plan::{ExecutionPlan, StepKind};
use crate::run::{FailureKind, RunId};

pub(super) use call::LogicalCall;
pub(super) use coordinate::coordinate_named;

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
    pub(super) answer: Option<Verdict>,
    /// For an approval step with a quorum recovered after a restart: who approved before
    /// it (journaled `approvalCounted`).
    pub(super) counted: Vec<String>,
    /// For an approval step that adaptations changed as it started: its parameters before
    /// them (what it would have now is checked against what the approver was shown).
    pub(super) base_parameters: Option<serde_json::Value>,
    /// Agents not to call (they failed the step before: a `SUBSTITUTE` recovery).
    pub(super) excluded: Vec<AgentId>,
    /// How often a `ROLLBACK` reset the step (part of its idempotency keys).
    pub(super) generation: u32,
    /// The run's journal batch (with a store): entries the step must see durable.
    pub(super) batch: Option<Arc<Batch>>,
    /// What the step has done so far, for the report should the run end while it runs.
    pub(super) progress: Arc<Progress>,
    /// For a step recovered after a restart: the calls the restart cut off, which are made
    /// again from the attempt they were at.
    pub(super) cut_off: Vec<crate::store::InFlightCall>,
    /// The step as adaptations changed it (timeout, retry policy), when they did.
    pub(super) adapted: Option<Arc<crate::plan::PlanStep>>,
    /// The time the run's data is as of, if it has one (checked before each retry).
    pub(super) data_as_of: Option<crate::safety::DataAsOf>,
    /// The tokens each call takes from named budgets (the step's `budget`, resolved when
    /// it started), or why they could not be resolved.
    pub(super) budget: Option<Result<crate::safety::budget::Amounts, String>>,
    /// The secret texts the run had seen when the step started, removed from the
    /// messages the step announces itself (its retries).
    pub(super) scrubber: Option<Arc<crate::plan::Scrubber>>,
    /// The label sets of the run's plan, for the step's metrics.
    pub(super) metrics: crate::metrics::PlanMetrics,
}

impl StepCtx {
    /// `value` as the step writes it: sensitive names redacted, the secret texts the
    /// run had seen when the step started scrubbed.
    pub(super) fn redacted(&self, value: &Value) -> Value {
        crate::plan::redacted(self.plan.sensitive(), self.scrubber.as_deref(), value)
    }

    /// `text` without the secret texts the run had seen when the step started.
    pub(super) fn scrub<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        match &self.scrubber {
            Some(scrubber) => scrubber.scrub(text),
            None => std::borrow::Cow::Borrowed(text),
        }
    }
}

/// What a running step has journaled: its calls (each from its `stepStarted` on), and
/// whether it began at all (a call, or an approval's wait). A step the run's end finds
/// not begun is reported skipped ("not started"), as its journal says.
#[derive(Debug, Default)]
pub(super) struct Progress {
    calls: std::sync::atomic::AtomicU32,
    began: std::sync::atomic::AtomicBool,
}

impl Progress {
    /// A call is journaled.
    pub(super) fn called(&self) {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.began();
    }

    /// The step's first entry (a call, or an approval's wait) is journaled.
    pub(super) fn began(&self) {
        self.began.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The calls journaled so far.
    pub(super) fn calls(&self) -> u32 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the step began.
    pub(super) fn has_begun(&self) -> bool {
        self.began.load(std::sync::atomic::Ordering::Relaxed)
    }
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

impl Success {
    /// A step that completed with `output` by itself: no agent, no call.
    pub(super) fn without_calls(output: Value) -> Self {
        Self {
            output,
            attempts: 0,
            agent: None,
            agents: None,
            approved_by: None,
        }
    }
}

/// A step that failed.
#[derive(Debug, Clone)]
pub(super) struct Failure {
    pub(super) kind: FailureKind,
    pub(super) message: String,
    pub(super) attempts: u32,
    pub(super) agent: Option<AgentId>,
}

impl Failure {
    /// A failure before any call was made.
    pub(super) fn before_calls(kind: FailureKind, message: String) -> Self {
        Self {
            kind,
            message,
            attempts: 0,
            agent: None,
        }
    }
}

/// How a step's work ended.
pub(super) type StepResult = Result<Success, Failure>;

/// A step's work as it ended, and when it started (for `step_duration_seconds`, which
/// the run records when it settles the step).
#[derive(Debug)]
pub(super) struct Worked {
    /// When the work started; none when it never did (its resources were refused).
    pub(super) started: Option<DateTime<Utc>>,
    /// How it ended.
    pub(super) result: StepResult,
}

impl Worked {
    /// A step that failed before its work started.
    pub(super) fn never_started(failure: Failure) -> Self {
        Self {
            started: None,
            result: Err(failure),
        }
    }
}

/// Runs the step at `ctx.index` with its resolved parameters. Its work starts at
/// `launched` when the run launched it to start at once (no resources to wait for: the
/// clock is not read again), else when this future is first polled.
pub(super) async fn run_step(
    ctx: StepCtx,
    parameters: Value,
    launched: Option<DateTime<Utc>>,
) -> Worked {
    let started = launched.unwrap_or_else(|| ctx.inner.clock.now());
    let result = work(&ctx, parameters).await;
    Worked {
        started: Some(started),
        result,
    }
}

/// The work of the step at `ctx.index`, by its kind.
async fn work(ctx: &StepCtx, parameters: Value) -> StepResult {
    let plan = Arc::clone(&ctx.plan);
    let adapted = ctx.adapted.clone();
    let Some(step) = adapted.as_deref().or_else(|| plan.step(ctx.index)) else {
        return Err(Failure::before_calls(
            FailureKind::Permanent,
            "step not in plan".to_owned(),
        ));
    };
    // A step an analyzer holds for approval waits for it first (agent steps only).
    let (gated, parameters) = match step.kind() {
        StepKind::HumanApproval { .. } | StepKind::Condition { .. } => (None, parameters),
        _ => approval::gated(ctx, step, parameters).await?,
    };
    let result = match step.kind() {
        StepKind::Task(task) | StepKind::Decision(task) => match step.coordination() {
            Some(coordination) => {
                Box::pin(coordinate::coordinate(
                    ctx,
                    step,
                    task,
                    &parameters,
                    coordination,
                ))
                .await
            }
            None => {
                let call = LogicalCall::new(step, task, &parameters);
                call.make(ctx).await.into_result()
            }
        },
        StepKind::Parallel {
            task,
            over,
            max_concurrency,
        } => {
            let limit = max_concurrency.map_or(usize::MAX, |limit| limit.get() as usize);
            parallel::fan_out(ctx, step, task, parameters, over, limit).await
        }
        StepKind::Loop {
            task,
            until,
            max_iterations,
            interval,
        } => {
            let bounds = repeat::Bounds {
                until,
                max_iterations: *max_iterations,
                interval: *interval,
            };
            Box::pin(repeat::repeat(ctx, step, task, &parameters, bounds)).await
        }
        StepKind::HumanApproval { on_timeout, .. } => {
            Box::pin(approval::approval(ctx, step, parameters, *on_timeout)).await
        }
        // Condition steps take no time and are evaluated by the run itself.
        StepKind::Condition { .. } => Err(Failure::before_calls(
            FailureKind::Permanent,
            "condition steps are evaluated by the run".to_owned(),
        )),
        #[allow(unreachable_patterns)]
        _ => Err(Failure::before_calls(
            FailureKind::Permanent,
            "unsupported step kind".to_owned(),
        )),
    };
    match gated {
        None => result,
        Some(by) => result.map(|success| Success {
            approved_by: Some(by),
            ..success
        }),
    }
}
