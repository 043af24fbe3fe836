//! One run: the executor over a compiled plan.
//!
//! A run is an [`Execution`]: its [`Book`](book::Book) (every step's status, output and
//! report, the ready set, self-healing's bookkeeping: synchronous, tested on its own) and
//! what it runs with (the engine, its context, its journal batch, the host's controls).
//!
//! | file | concern |
//! |---|---|
//! | `book.rs` | the run's state and the primitives that change it |
//! | `transition.rs` | every change the run decides: journaled, applied, announced in one place |
//! | `drive.rs` | the loop: begin, start, wait for the next wake-up, end |
//! | `start.rs` | what a ready step does (skip, fail, complete, start) and its future |
//! | `adapt.rs` | the workflow's adaptations applied as a step is about to start (journaled) |
//! | `decide.rs` | a `decision` step's choice, and its reward evaluated and learned at the end |
//! | `settle.rs` | what the run does when a step's work ends |
//! | `recovery.rs` | self-healing applied: the situation weighed, the recovery applied |
//! | `resources.rs` | the workflow's and the steps' `resourceRequirements` |
//!
//! A step becomes ready when every predecessor has ended; ready steps start in plan
//! order (one at a time under `SEQUENTIAL`), and the steps in flight are driven together
//! by a `FuturesUnordered` inside the run's future.

mod adapt;
mod book;
mod decide;
mod drive;
mod recovery;
mod redact;
mod resources;
mod settle;
mod start;
mod transition;

pub(crate) use adapt::merged;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use serde_json::Value;

use self::book::Book;
use super::Inner;
use super::approvals::Verdict;
use super::control::ControlGuard;
use super::durable::Batch;
use super::report::RunReport;
use super::step::Worked;
use crate::expr::Context;
use crate::plan::ExecutionPlan;
use crate::run::{RunId, RunStatus, StepStatus};
use crate::store::{Lease, RunState as Journaled};

/// The futures of the steps in flight, each ending with its step index.
type Running = FuturesUnordered<Launched>;

/// A step's work in flight: its future, boxed where it was made (kilobytes: the largest
/// step kind's state), so that launching it moves a pointer; it ends with the step's
/// index.
struct Launched {
    index: usize,
    work: BoxFuture<'static, Worked>,
}

impl std::future::Future for Launched {
    type Output = (usize, Worked);

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let index = self.index;
        self.work.as_mut().poll(cx).map(|worked| (index, worked))
    }
}

/// Runs a new run to its end.
/// A run's input as the host gave it: kept if it nests at most
/// [`MAX_VALUE_DEPTH`](crate::run::MAX_VALUE_DEPTH) deep, else replaced by `null` (and the
/// run fails before any step: see [`execute`]).
pub(super) fn checked_input(input: Value) -> (Value, Option<usize>) {
    match crate::run::bounded(input) {
        Ok(input) => (input, None),
        Err(depth) => (Value::Null, Some(depth)),
    }
}

/// Runs a new run to its end; `refused_input` as [`checked_input`] says.
pub(super) async fn execute(
    inner: Arc<Inner>,
    plan: Arc<ExecutionPlan>,
    identity: Identity,
    context: Arc<Context>,
    control: ControlGuard,
    refused_input: Option<usize>,
) -> RunReport {
    let run = Execution::new(inner, plan, identity, context, control);
    run.drive(Start::Fresh { refused_input }).await
}

/// Continues a run from its journal's fold: steps that ended keep their status, output
/// and report; the others run as usual (calls re-made with the same idempotency keys).
pub(super) async fn resume(
    inner: Arc<Inner>,
    plan: Arc<ExecutionPlan>,
    journaled: Journaled,
    lease: Lease,
    context: Arc<Context>,
    control: ControlGuard,
) -> RunReport {
    let Journaled {
        run_id,
        input,
        seed,
        started_at,
        steps,
        status,
        cancelled_by,
        checkpoints,
        trigger,
        decisions,
        adaptations,
        data_as_of,
        started_by,
        ..
    } = journaled;
    let identity = Identity {
        run_id,
        input,
        seed,
        started_at,
        trigger,
        data_as_of,
        user: started_by,
        lease: Some(lease),
    };
    let mut run = Execution::new(inner, Arc::clone(&plan), identity, context, control);
    run.book.paused = status == RunStatus::Paused;
    let began = !steps.is_empty();
    // Failures in the order they happened, so the run's error is its first failure.
    let mut steps: Vec<_> = steps.into_iter().collect();
    steps.sort_by_key(|(_, step)| step.failed_at.unwrap_or(usize::MAX));
    for (id, mut step) in steps {
        let Some(index) = plan.index_of(id.as_str()) else {
            continue;
        };
        run.book.healing.set_generation(index, step.generation);
        if let Some(report) = run.book.report_mut(index) {
            report.recoveries = std::mem::take(&mut step.recoveries);
        }
        match step.status {
            StepStatus::Completed | StepStatus::Skipped | StepStatus::Failed => {
                if let Some(output) = &step.output {
                    run.learn_secrets(output);
                }
                run.book.restore(index, step);
            }
            _ => {
                // Calls made before the restart count (a cut-off call was made).
                run.book.healing.set_prior_attempts(index, step.attempts);
                if !step.in_flight.is_empty() {
                    run.cut_off
                        .insert(index, std::mem::take(&mut step.in_flight));
                }
                // Answered but not yet acted on: the step uses the answer instead of
                // waiting.
                if let Some(answer) = step.answer {
                    let verdict = Verdict {
                        approved: answer.approved,
                        by: answer.by,
                        comment: answer.comment,
                    };
                    run.answers.insert(index, verdict);
                }
                if !step.approvals.is_empty() {
                    run.counted
                        .insert(index, std::mem::take(&mut step.approvals));
                }
            }
        }
    }
    // Choices journaled before the restart stand: the step calls with the same option.
    run.book.decisions = decisions
        .into_iter()
        .filter_map(|(id, decision)| Some((plan.index_of(id.as_str())?, decision)))
        .collect();
    // Adaptations journaled before the restart stand: the step starts changed the same way.
    run.book.adaptations = adaptations
        .into_iter()
        .filter_map(|(id, ids)| Some((plan.index_of(id.as_str())?, ids)))
        .collect();
    // Checkpoints, in order, are the steps completed (and not rolled back since).
    run.book.healing.completed = checkpoints
        .iter()
        .filter_map(|id| plan.index_of(id.as_str()))
        .collect();
    let cancelled = cancelled_by.is_some();
    run.drive(Start::Resumed { began, cancelled }).await
}

/// What a run is, from its start: fresh or journaled.
pub(super) struct Identity {
    pub(super) run_id: RunId,
    pub(super) input: Value,
    pub(super) seed: u64,
    pub(super) started_at: DateTime<Utc>,
    /// The trigger that started it, if one did.
    pub(super) trigger: Option<String>,
    /// The time its data is as of, when the host or the starting event gave one.
    pub(super) data_as_of: Option<DateTime<Utc>>,
    /// The user the run was started for, if the host named one.
    pub(super) user: Option<String>,
    /// For a recovered run, the lease this engine claimed it under.
    pub(super) lease: Option<Lease>,
}

/// How a run's future begins.
#[derive(Clone, Copy)]
enum Start {
    /// A new run: journal `runStarted`, check the workflow's conditions. `refused_input`:
    /// how deep the host's input nested, when it was refused for its depth (the run
    /// fails before any step).
    Fresh { refused_input: Option<usize> },
    /// A run recovered from its journal; `began` when a step entry was journaled (the
    /// workflow's conditions were checked then); `cancelled` when its cancellation was
    /// journaled (it ends `CANCELLED` at once).
    Resumed { began: bool, cancelled: bool },
}

/// A run in progress: its book, and what it runs with.
struct Execution {
    inner: Arc<Inner>,
    run_id: RunId,
    context: Arc<Context>,
    seed: u64,
    started_at: DateTime<Utc>,
    /// The trigger that started the run, if one did.
    trigger: Option<String>,
    /// The time the host or the starting event said the data is as of (journaled).
    given_data_as_of: Option<DateTime<Utc>>,
    /// The time the run's data is as of, from that or the input's `asOf`.
    data_as_of: Option<crate::safety::DataAsOf>,
    /// The user the run was started for, if the host named one (journaled).
    user: Option<String>,
    book: Book,
    /// The parameters of running `decision` steps, recorded with their decision.
    decision_parameters: HashMap<usize, Value>,
    /// Answers journaled before a restart, for approval steps that had not acted on them.
    answers: HashMap<usize, Verdict>,
    /// Approvals counted before a restart, by step, for steps that need a quorum.
    counted: HashMap<usize, Vec<String>>,
    /// Calls a restart cut off, by step: made again from the attempt they were at.
    cut_off: HashMap<usize, Vec<crate::store::InFlightCall>>,
    /// The host's pause, resume and cancel commands.
    control: ControlGuard,
    /// With a store: the entries journaled and not yet appended (group commit).
    batch: Option<Arc<Batch>>,
    /// With a store: gives the run's lease up if the run is dropped before its end.
    held: Option<Held>,
    /// Whether a kill switch holds side-effect steps that are ready (the run waits for
    /// a reset as a paused run waits for its host).
    held_by_kill_switch: bool,
    /// The secret texts the run has seen (its input's and its outputs' sensitive
    /// values), removed from its messages; `None` while there are none.
    scrubber: Option<Arc<crate::plan::Scrubber>>,
    /// The label sets the run and its steps record their metrics with.
    metrics: crate::metrics::PlanMetrics,
    /// When the last transition was applied (its journal entries' time), so that settling
    /// a step reads the clock no more than applying did.
    applied_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A run's hold on its lease while it is driven here: dropped before the run's end is
/// journaled (the run's future dropped, or its journal lost), it gives the lease up so
/// that the run can be taken at once.
struct Held {
    inner: Arc<Inner>,
    batch: Arc<Batch>,
    ended: bool,
}

impl Held {
    /// The run's end is journaled: the store released the run.
    fn ended(mut self) {
        self.ended = true;
        self.inner.ended(&self.batch);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if !self.ended {
            self.inner.give_up(&self.batch);
        }
    }
}

impl Execution {
    fn new(
        inner: Arc<Inner>,
        plan: Arc<ExecutionPlan>,
        identity: Identity,
        context: Arc<Context>,
        control: ControlGuard,
    ) -> Self {
        let Identity {
            run_id,
            input,
            seed,
            started_at,
            trigger,
            data_as_of: given_data_as_of,
            user,
            lease,
        } = identity;
        let data_as_of = crate::safety::DataAsOf::of_run(given_data_as_of, &input);
        let scrubber = Self::scrubber_of(&plan, &input);
        let batch = match lease {
            Some(lease) => inner.has_store().then(|| Arc::new(Batch::new(lease))),
            None => inner.new_batch(&run_id),
        };
        if !plan.adaptations().is_empty() {
            inner.adapting.record_calls();
        }
        let held = batch.as_ref().map(|batch| Held {
            inner: Arc::clone(&inner),
            batch: Arc::clone(batch),
            ended: false,
        });
        let metrics = inner.telemetry.plan(&plan);
        Self {
            metrics,
            applied_at: None,
            run_id,
            context,
            seed,
            started_at,
            trigger,
            given_data_as_of,
            data_as_of,
            user,
            book: Book::new(plan, input),
            decision_parameters: HashMap::new(),
            answers: HashMap::new(),
            counted: HashMap::new(),
            cut_off: HashMap::new(),
            control,
            batch,
            held,
            held_by_kill_switch: false,
            scrubber,
            inner,
        }
    }
}
