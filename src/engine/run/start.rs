//! Starting steps: what a ready step does, decided from the book, and the future of the
//! steps that run.
//!
//! A ready step is prepared in this order: a fallback step that is not standing in for
//! a failed step is skipped; a step bound to a step that did not complete is skipped
//! (under `CONTINUE_ON_FAILURE` also one after a failed required step); its `condition`
//! must hold and its `skipCondition` must not; a `condition` step completes at once with
//! the first branch that holds; the others resolve their parameters (a `decision` step
//! with a `decision` block then chooses its option, see `decide.rs`) and start. A
//! condition or binding that cannot be evaluated fails the step (kinds `CONDITION`,
//! `BINDING`), which self-healing may then recover.
//!
//! A step that starts is then adapted (`adapt.rs`): the workflow's adaptations that hold
//! may skip it (reason `adaptation <id>`), change its timeout and retry policy, and merge
//! parameters over its own (after a decision's option, so they win). This is also where
//! every start could be refused.
//!
//! A step with `"sideEffects": true` of a workflow a tripped kill switch rule covers
//! does not start at all: it stays ready, and the run waits (as a paused run does) until
//! the rule is reset; the other ready steps start as usual.
//!
//! A step with `maxDataAgeMs` about to start (everything above passed) first checks the
//! run's data time on the engine's clock: on stale data it is skipped (`stale data: 412
//! ms > 250 ms`) or fails with kind `STALE_DATA`, as its `onStale` says.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;

use super::adapt::{Adapted, merged};
use super::book::Book;
use super::{Execution, Launched, Running};
use crate::definition::{Concurrency, FailureHandling, OnStale};
use crate::engine::step::{Failure, StepCtx, Success, Worked, run_step};
use crate::expr::EvalError;
use crate::plan::{PlanStep, StepKind};
use crate::run::{FailureKind, StepStatus};

/// What a ready step does.
enum Prepared {
    /// It does not run, for this reason.
    Skip(String),
    /// It fails before any call.
    Fail(FailureKind, String),
    /// It completes at once with this output (a `condition` step).
    Done(Value),
    /// It starts with these resolved parameters.
    Start(Value),
}

impl Execution {
    /// Starts ready steps (or settles them at once: skipped, failed, condition steps),
    /// one at a time under `SEQUENTIAL`.
    pub(super) fn start_ready(&mut self, running: &mut Running) {
        let sequential = self.book.plan.policy().concurrency == Concurrency::Sequential;
        let mut held = Vec::new();
        while let Some(index) = self.book.next_ready(sequential && !running.is_empty()) {
            let plan = Arc::clone(&self.book.plan);
            let Some(step) = plan.step(index) else {
                continue;
            };
            if step.side_effects().is_some()
                && self
                    .inner
                    .kill_switch
                    .halting(plan.workflow_id(), plan.tags())
                    .is_some()
            {
                // A kill switch holds it: it stays ready, and starts after the reset.
                held.push(index);
                if sequential {
                    break;
                }
                continue;
            }
            let now = self.inner.clock.now();
            match prepare(&self.book, &self.context, step).and_fresh(
                step,
                self.data_as_of.as_ref(),
                now,
            ) {
                Prepared::Skip(reason) => self.skip(index, reason),
                Prepared::Fail(kind, message) => {
                    self.fail(index, Failure::before_calls(kind, message));
                }
                Prepared::Done(output) => self.complete(index, Success::without_calls(output)),
                Prepared::Start(parameters) => {
                    let (over, adapted) = match self.adapt(step) {
                        Ok(Adapted::Start { parameters, step }) => (parameters, step),
                        Ok(Adapted::Skip(reason)) => {
                            self.skip(index, reason);
                            continue;
                        }
                        Err((kind, message)) => {
                            self.fail(index, Failure::before_calls(kind, message));
                            continue;
                        }
                    };
                    let decided = match step.choice() {
                        Some(choice) => self.decide(step, choice, parameters),
                        None => Ok(parameters),
                    };
                    let base = match (&decided, &over, step.kind()) {
                        (Ok(base), Some(_), StepKind::HumanApproval { .. }) => Some(base.clone()),
                        _ => None,
                    };
                    let parameters =
                        decided.and_then(|parameters| with_overrides(step, parameters, over));
                    match parameters {
                        Ok(parameters) => {
                            self.launch(step, parameters, adapted, base, now, running);
                        }
                        Err((kind, message)) => {
                            self.fail(index, Failure::before_calls(kind, message));
                        }
                    }
                }
            }
        }
        self.held_by_kill_switch = !held.is_empty();
        for index in held {
            self.book.ready_again(index);
        }
    }

    /// Starts `step`'s work with its resolved `parameters`: its future joins `running`.
    fn launch(
        &mut self,
        step: &PlanStep,
        parameters: Value,
        adapted: Option<Arc<PlanStep>>,
        base_parameters: Option<Value>,
        now: chrono::DateTime<chrono::Utc>,
        running: &mut Running,
    ) {
        let index = step.index();
        let progress = self
            .book
            .start(index, matches!(step.kind(), StepKind::HumanApproval { .. }));
        if matches!(step.kind(), StepKind::Decision(_)) {
            self.decision_parameters.insert(index, parameters.clone());
        }
        let ctx = StepCtx {
            inner: Arc::clone(&self.inner),
            plan: Arc::clone(&self.book.plan),
            run_id: self.run_id.clone(),
            index,
            seed: self.seed,
            context: Arc::clone(&self.context),
            snapshot: matches!(step.kind(), StepKind::Loop { .. })
                .then(|| self.book.snapshot(step)),
            answer: if self.answers.is_empty() {
                None
            } else {
                self.answers.remove(&index)
            },
            counted: if self.counted.is_empty() {
                Vec::new()
            } else {
                self.counted.remove(&index).unwrap_or_default()
            },
            base_parameters,
            excluded: self.book.healing.failed_agents(index).to_vec(),
            generation: self.book.healing.generation(index),
            batch: self.batch.clone(),
            progress,
            cut_off: self.cut_off.remove(&index).unwrap_or_default(),
            adapted,
            data_as_of: step.freshness().and_then(|_| self.data_as_of.clone()),
            budget: step.budget().map(|budget| budget.resolve(&self.book)),
            scrubber: self.scrubber.clone(),
            metrics: self.metrics.clone(),
        };
        // A step with no resources to wait for starts its work now.
        let work: BoxFuture<'static, Worked> = match self.step_resources(step) {
            None => Box::pin(run_step(ctx, parameters, Some(now))),
            Some(holding) => Box::pin(holding.hold(run_step(ctx, parameters, None))),
        };
        running.push(Launched { index, work });
    }
}

/// `parameters` with an adaptation's `over` merged over them, still within the depth
/// bound.
fn with_overrides(
    step: &PlanStep,
    parameters: Value,
    over: Option<serde_json::Map<String, Value>>,
) -> Result<Value, (FailureKind, String)> {
    if over.is_none() {
        return Ok(parameters);
    }
    crate::run::bounded(merged(parameters, over)).map_err(|depth| {
        (
            FailureKind::Binding,
            format!(
                "step `{}`: its adapted parameters nest {depth} levels deep, more than the {} allowed",
                step.id(),
                crate::run::MAX_VALUE_DEPTH
            ),
        )
    })
}

impl Prepared {
    /// A step about to start whose data is too old does not: it is skipped or fails
    /// (kind `STALE_DATA`), as its `onStale` says.
    fn and_fresh(
        self,
        step: &PlanStep,
        data_as_of: Option<&crate::safety::DataAsOf>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        let Self::Start(_) = &self else {
            return self;
        };
        let (Some(freshness), Some(as_of)) = (step.freshness(), data_as_of) else {
            return self;
        };
        match freshness.check(as_of, now) {
            Ok(()) => self,
            Err(stale) => match freshness.on_stale() {
                OnStale::Skip => Self::Skip(stale.to_string()),
                OnStale::Fail => Self::Fail(FailureKind::StaleData, stale.to_string()),
            },
        }
    }
}

/// Decides what a ready step does: skip, fail, finish at once, or start.
fn prepare(book: &Book, context: &crate::expr::Context, step: &PlanStep) -> Prepared {
    if let Some(owner) = step.fallback_for() {
        if !book.healing.standing_in.contains_key(&step.index()) {
            let owner = book
                .plan
                .step(owner)
                .map_or("?", |owner| owner.id().as_str());
            return Prepared::Skip(format!("fallback of `{owner}`: not needed"));
        }
    }
    if let Some(reason) = skip_reason(book, step) {
        return Prepared::Skip(reason);
    }
    let condition_failed = |which: &str, error: EvalError| {
        Prepared::Fail(
            FailureKind::Condition,
            format!("step `{}`: {which}: {error}", step.id()),
        )
    };
    if let Some(condition) = step.condition() {
        match condition.evaluate(book, context) {
            Ok(true) => {}
            Ok(false) => return Prepared::Skip(format!("condition false: {}", condition.text())),
            Err(error) => return condition_failed("condition", error),
        }
    }
    if let Some(condition) = step.skip_condition() {
        match condition.evaluate(book, context) {
            Ok(false) => {}
            Ok(true) => {
                return Prepared::Skip(format!("skip condition true: {}", condition.text()));
            }
            Err(error) => return condition_failed("skipCondition", error),
        }
    }
    let parameters = match step.kind() {
        StepKind::Condition { branches, default } => {
            for branch in branches.iter() {
                match branch.when.evaluate(book, context) {
                    Ok(true) => return Prepared::Done(serde_json::json!({"branch": branch.name})),
                    Ok(false) => {}
                    Err(error) => {
                        return condition_failed(&format!("branch `{}`", branch.name), error);
                    }
                }
            }
            return Prepared::Done(serde_json::json!({"branch": default}));
        }
        StepKind::HumanApproval { parameters, .. } => parameters,
        _ => match step.agent_task() {
            Some(task) => &task.parameters,
            None => {
                return Prepared::Fail(FailureKind::Permanent, "step has no task".to_owned());
            }
        },
    };
    match parameters.resolve(book).map(crate::run::bounded) {
        Ok(Ok(parameters)) => Prepared::Start(parameters),
        Ok(Err(depth)) => Prepared::Fail(
            FailureKind::Binding,
            format!(
                "step `{}`: its parameters nest {depth} levels deep, more than the {} allowed",
                step.id(),
                crate::run::MAX_VALUE_DEPTH
            ),
        ),
        Err(error) => Prepared::Fail(
            FailureKind::Binding,
            format!("step `{}`: {error}", step.id()),
        ),
    }
}

/// Why a step cannot run because of its predecessors, if it cannot.
fn skip_reason(book: &Book, step: &PlanStep) -> Option<String> {
    let plan = &book.plan;
    for &input in step.data_inputs() {
        let status = book.status(input);
        if status != StepStatus::Completed {
            let id = plan.step(input).map_or("?", |input| input.id().as_str());
            return Some(format!("bound step `{id}` {}", ended_how(status)));
        }
    }
    if plan.policy().failure_handling == FailureHandling::ContinueOnFailure {
        for (predecessor, _) in plan.predecessors(step.index()) {
            let Some(before) = plan.step(predecessor) else {
                continue;
            };
            if book.status(predecessor) == StepStatus::Failed && !before.is_optional() {
                return Some(format!("depends on failed step `{}`", before.id()));
            }
        }
    }
    None
}

fn ended_how(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Skipped => "was skipped",
        StepStatus::Failed => "failed",
        StepStatus::Cancelled => "was cancelled",
        _ => "did not complete",
    }
}
