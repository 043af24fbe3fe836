//! The run's loop: begin, start what is ready, wait for what comes next, end.
//!
//! A run is one future. Its loop starts the ready steps (unless paused, or waiting for
//! the workflow's resources), then waits in one `poll_fn` for the first of: a host
//! command, the workflow's deadline, the workflow's resources granted, a step's future
//! ending, or — when nothing else is ready and journal entries are waiting — a flush of
//! the journal batch. Commands come first, so a cancel is never stuck behind a busy
//! step. Only this loop, the flush and the end wait; everything it does in between is
//! synchronous (settling, healing, transitions).

use std::cell::OnceCell;
use std::future::poll_fn;
use std::task::Poll;

use futures::future::Fuse;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use serde_json::Value;

use super::resources::WorkflowAdmission;
use super::{Execution, Running, Start};
use crate::audit::{AuditEvent, sha256_json};
use crate::clock::{Sleep, add_saturating};
use crate::engine::RunEvent;
use crate::engine::control::{Command, RunControl};
use crate::engine::durable::{Batch, Lost};
use crate::engine::report::RunReport;
use crate::engine::step::Worked;
use crate::resource::{AllocationGuard, ResourceError};
use crate::run::{FailureKind, RunError, RunStatus};
use crate::store::{JournalEntry, StoreError};

use super::transition::Transition;

/// What woke the run's loop.
enum Wake {
    /// A step's future ended.
    Ended((usize, Worked)),
    /// The host sent a command.
    Command(Command),
    /// The workflow's timeout passed.
    Deadline,
    /// The run would wait with journal entries not yet appended.
    Flush,
    /// The wait for the workflow's resources ended.
    Admitted(Result<AllocationGuard, ResourceError>),
    /// The run's journal can no longer be written: the run must stop.
    Lost(Lost),
}

/// What the loop waits on besides commands.
struct Waits {
    /// The steps in flight.
    running: Running,
    /// The workflow's deadline, if it has a timeout.
    deadline: Option<Fuse<Sleep>>,
    /// The wait for the workflow's resources, until granted.
    admission: Option<WorkflowAdmission>,
    /// The workflow's resources, held to the run's end.
    held: Option<AllocationGuard>,
}

impl Waits {
    /// The first thing that is ready, in priority order (see the module docs).
    async fn next(&mut self, control: &RunControl, batch: Option<&Batch>) -> Wake {
        poll_fn(|cx| {
            if let Poll::Ready(command) = control.poll_command(cx) {
                return Poll::Ready(Wake::Command(command));
            }
            if let Some(Poll::Ready(lost)) = batch.map(|batch| batch.poll_lost(cx)) {
                return Poll::Ready(Wake::Lost(lost));
            }
            if let Some(timer) = self.deadline.as_mut() {
                if timer.poll_unpin(cx).is_ready() {
                    return Poll::Ready(Wake::Deadline);
                }
            }
            if let Some(Poll::Ready(granted)) = self
                .admission
                .as_mut()
                .map(|waiting| waiting.poll_unpin(cx))
            {
                return Poll::Ready(Wake::Admitted(granted));
            }
            if let Poll::Ready(Some(finished)) = self.running.poll_next_unpin(cx) {
                return Poll::Ready(Wake::Ended(finished));
            }
            // The run would wait: what it journaled since it last did is appended now,
            // in one transaction (and the steps waiting for it go on).
            if batch.is_some_and(Batch::is_pending) {
                return Poll::Ready(Wake::Flush);
            }
            // Nothing runs, or nothing ends yet: wait for it, a command or the deadline.
            Poll::Pending
        })
        .await
    }
}

impl Execution {
    /// Runs the run to its end.
    pub(super) async fn drive(mut self, start: Start) -> RunReport {
        // The input as the journal holds it, redacted once for the journal and the audit.
        let input = OnceCell::new();
        self.begin(start, &input);
        if let Start::Fresh { .. } = start {
            if let Some(unaudited) = self.audit_start(&input) {
                return self.finish(unaudited).await;
            }
        }
        if let Start::Resumed {
            cancelled: true, ..
        } = start
        {
            return self.finish(RunStatus::Cancelled).await;
        }
        if let Start::Fresh {
            refused_input: Some(depth),
        } = start
        {
            let message = format!(
                "the run's input nests {depth} levels deep, more than the {} allowed",
                crate::run::MAX_VALUE_DEPTH
            );
            let refused = self.stop_before_steps(FailureKind::Binding, message);
            return self.finish(refused).await;
        }
        if let Start::Fresh { .. } = start {
            if let Some(halted) = self.halted_at_start() {
                return self.finish(halted).await;
            }
        }
        if !matches!(start, Start::Resumed { began: true, .. }) {
            if let Some(early) = self.check_start() {
                return self.finish(early).await;
            }
        }
        self.book.recount();
        let mut waits = Waits {
            running: FuturesUnordered::new(),
            deadline: self.deadline().map(FutureExt::fuse),
            admission: None,
            held: None,
        };
        // The workflow's resources: no step starts before they are granted.
        waits.admission = self.admission();
        while self.step(&mut waits).await {}
        // Whatever still runs is stopped: dropping the futures frees agents' slots and
        // the steps' resources; then the run's own resources go back.
        drop(waits);
        let status = self.book.end.unwrap_or(if self.book.error.is_some() {
            RunStatus::Failed
        } else {
            RunStatus::Completed
        });
        self.finish(status).await
    }

    /// One turn of the loop: starts what is ready, then waits for and handles one wake.
    /// `false` when the run is over.
    async fn step(&mut self, waits: &mut Waits) -> bool {
        if !self.book.paused && waits.admission.is_none() {
            self.start_ready(&mut waits.running);
        }
        // A paused run (or one whose side-effect steps a kill switch holds) waits for its
        // host, unless nothing is left to start.
        let idle = waits.admission.is_none()
            && waits.running.is_empty()
            && (!(self.book.paused || self.held_by_kill_switch) || self.book.nothing_ready());
        if idle && self.book.end.is_none() && !self.book.healing.standing_in.is_empty() {
            // Nothing can run any more, and steps still stand aside for fallbacks that
            // never ran: they fail (and may recover), and the loop goes on.
            self.fallbacks_never_ran();
            return true;
        }
        if self.book.end.is_some() || idle {
            return false;
        }
        let wake = waits
            .next(self.control.control(), self.batch.as_deref())
            .await;
        match wake {
            Wake::Ended((index, worked)) => self.settle(index, worked),
            Wake::Command(command) => self.command(command),
            Wake::Flush => {
                if let Err(lost) = self.flush().await {
                    self.journal_lost(&lost);
                }
            }
            Wake::Lost(lost) => {
                self.journal_lost(&lost);
                return false;
            }
            Wake::Admitted(granted) => {
                waits.admission = None;
                match granted {
                    Ok(guard) => waits.held = Some(guard),
                    Err(error) => self.cannot_run(
                        None,
                        format!("the workflow's resourceRequirements: {error}"),
                    ),
                }
            }
            Wake::Deadline => {
                let timeout = self
                    .book
                    .plan
                    .timeout()
                    .map_or(0, |timeout| timeout.as_millis());
                let error = RunError {
                    step_id: None,
                    kind: FailureKind::WorkflowTimeout,
                    message: format!("the workflow's timeout of {timeout} ms passed"),
                };
                self.book.end_with(RunStatus::TimedOut, error);
                return false;
            }
        }
        true
    }

    /// The workflow's deadline, when it has a `timeout`; a recovered run keeps the
    /// deadline it started with.
    fn deadline(&self) -> Option<Sleep> {
        let timeout = self.book.plan.timeout()?;
        Some(
            self.inner
                .clock
                .sleep_until(add_saturating(self.started_at, timeout)),
        )
    }

    /// The run begins: a fresh run journals `runStarted` (and the trigger that started
    /// it, and the data time the host or the event gave); every run announces `RunStarted`.
    /// `input` keeps the redacted input once made.
    fn begin(&mut self, start: Start, input: &OnceCell<Value>) {
        let at = self.started_at;
        if let Start::Fresh { .. } = start {
            let plan = &self.book.plan;
            self.inner.defer(&self.batch, || {
                let started = JournalEntry::RunStarted {
                    run_id: self.run_id.clone(),
                    workflow_id: plan.workflow_id().to_owned(),
                    version: plan.definition().version.clone().unwrap_or_default(),
                    input: input
                        .get_or_init(|| self.redacted(self.book.input_value()))
                        .clone(),
                    seed: self.seed,
                    at,
                };
                let triggered = self
                    .trigger
                    .clone()
                    .map(|trigger| JournalEntry::RunTriggered { trigger, at });
                let as_of = self
                    .given_data_as_of
                    .map(|as_of| JournalEntry::DataAsOf { as_of, at });
                let by = self
                    .user
                    .clone()
                    .map(|user| JournalEntry::StartedBy { user, at });
                std::iter::once(started)
                    .chain(triggered)
                    .chain(as_of)
                    .chain(by)
                    .collect()
            });
        }
        self.inner.emit(|| RunEvent::RunStarted {
            run_id: self.run_id.clone(),
            workflow_id: self.book.plan.workflow_id().to_owned(),
            trigger: self.trigger.clone(),
            user: self.user.clone(),
            at,
        });
    }

    /// A fresh run's `runStarted` audit entry; a run the audit log does not take stops
    /// before any step, `FAILED` with kind `STORE`. `input` keeps the redacted input once
    /// made.
    fn audit_start(&mut self, input: &OnceCell<Value>) -> Option<RunStatus> {
        let plan = &self.book.plan;
        let appended = self
            .inner
            .audit(self.user.as_deref(), || AuditEvent::RunStarted {
                run: self.run_id.as_str().to_owned(),
                workflow: plan.workflow_id().to_owned(),
                version: plan.definition().version.clone().unwrap_or_default(),
                // The input as the journal holds it (`begin`'s `runStarted`).
                input_sha256: sha256_json(
                    input.get_or_init(|| self.redacted(self.book.input_value())),
                ),
            });
        let error = appended.err()?;
        let message = format!("the run's audit entry cannot be appended: {error}; no step started");
        Some(self.stop_before_steps(FailureKind::Store, message))
    }

    /// A fresh run of a workflow a tripped kill switch rule covers does not start: it
    /// ends `CANCELLED` with kind `HALTED` before any step.
    fn halted_at_start(&mut self) -> Option<RunStatus> {
        let plan = &self.book.plan;
        let rule = self
            .inner
            .kill_switch
            .halting(plan.workflow_id(), plan.tags())?;
        let message = format!(
            "kill switch rule `{}` has tripped: workflow `{}` is halted",
            crate::definition::Quoted(&rule),
            plan.workflow_id()
        );
        self.stop_before_steps(FailureKind::Halted, message);
        Some(RunStatus::Cancelled)
    }

    /// Workflow conditions and input paths, checked before any step runs.
    fn check_start(&mut self) -> Option<RunStatus> {
        let plan = std::sync::Arc::clone(&self.book.plan);
        for condition in plan.conditions() {
            match condition.evaluate(&self.book, &self.context) {
                Ok(true) => {}
                Ok(false) => {
                    let reason = format!("workflow condition false: {}", condition.text());
                    self.book.explain_all(&reason);
                    return Some(RunStatus::Skipped);
                }
                Err(error) => {
                    let message = format!("workflow condition: {error}");
                    return Some(self.stop_before_steps(FailureKind::Condition, message));
                }
            }
        }
        for binding in plan.input_bindings() {
            if let Err(error) = binding.resolve(&self.book) {
                let message = format!("missing input: {error}");
                return Some(self.stop_before_steps(FailureKind::Binding, message));
            }
        }
        None
    }

    /// The run fails before any step, with `kind` and `message`.
    fn stop_before_steps(&mut self, kind: FailureKind, message: String) -> RunStatus {
        self.book.error = Some(RunError {
            step_id: None,
            kind,
            message,
        });
        RunStatus::Failed
    }

    /// Acts on a host command (journaled first). Pausing a paused run, or resuming one
    /// that is not, does nothing.
    fn command(&mut self, command: Command) {
        match command {
            Command::Pause { by } if !self.book.paused => self.apply(Transition::Paused { by }),
            Command::Resume { by } if self.book.paused => {
                self.apply(Transition::Resumed { by });
            }
            Command::Pause { .. } | Command::Resume { .. } | Command::Wake => {}
            Command::Cancel { by } => self.apply(Transition::Cancelled { by }),
        }
    }

    /// Appends what the batch holds (group commit); see `durable`.
    async fn flush(&self) -> Result<(), Lost> {
        match &self.batch {
            Some(batch) => self.inner.flush(batch).await,
            None => Ok(()),
        }
    }

    /// The run's journal can no longer be written: the run ends `FAILED`, kind `STORE`.
    fn journal_lost(&mut self, lost: &StoreError) {
        let mut message = format!("the run's journal cannot be written: {lost}");
        let mut source = std::error::Error::source(lost);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        message.push_str("; the run stopped and stays unfinished in the store");
        self.book.end_with(
            RunStatus::Failed,
            RunError {
                step_id: None,
                kind: FailureKind::Store,
                message,
            },
        );
    }

    /// The run ends `status`: one append for the end (what the batch holds, unstarted
    /// steps skipped, the decisions' rewards, then `runEnded`, which cancels, in the
    /// fold, the steps still running), then the rewards learned, the end announced and
    /// the report returned.
    async fn finish(mut self, status: RunStatus) -> RunReport {
        let now = self.inner.clock.now();
        if let Some(mut error) = self.book.error.take() {
            self.scrub(&mut error.message);
            self.book.error = Some(error);
        }
        let stopped = self.book.stop(status);
        let rewards = self.evaluate_rewards();
        let book = &self.book;
        self.inner.defer(&self.batch, || {
            let skipped = stopped
                .iter()
                .filter(|&&(_, cancelled)| !cancelled)
                .filter_map(|&(index, _)| book.report(index))
                .map(|(step_id, report)| JournalEntry::StepSkipped {
                    step_id: step_id.clone(),
                    reason: report.reason.clone().unwrap_or_default(),
                    at: now,
                });
            let ended = JournalEntry::RunEnded {
                status,
                error: book.error.clone(),
                at: now,
            };
            skipped.chain(rewards).chain([ended]).collect()
        });
        let status = match self.flush().await {
            Ok(()) => {
                if let Some(held) = self.held.take() {
                    held.ended();
                }
                self.learn_rewards();
                status
            }
            Err(lost) => {
                // The end is not journaled: the run stays unfinished in the store (and
                // its lease is given up, below, so it can be resumed at once).
                self.journal_lost(&lost);
                drop(self.held.take());
                RunStatus::Failed
            }
        };
        for &(index, cancelled) in &stopped {
            let Some((step_id, report)) = self.book.report(index) else {
                continue;
            };
            self.inner.emit(|| match cancelled {
                true => RunEvent::StepCancelled {
                    run_id: self.run_id.clone(),
                    step_id: step_id.clone(),
                    at: now,
                },
                false => RunEvent::StepSkipped {
                    run_id: self.run_id.clone(),
                    step_id: step_id.clone(),
                    reason: report.reason.clone().unwrap_or_default(),
                    at: now,
                },
            });
        }
        // A failure is logged, and the entry waits for the log (see `EngineBuilder::audit`).
        let _ = self.inner.audit_done(None, || AuditEvent::RunEnded {
            run: self.run_id.as_str().to_owned(),
            workflow: self.book.plan.workflow_id().to_owned(),
            status: status.as_str().to_owned(),
        });
        tracing::info!(
            target: "tradeflow::run",
            status = status.as_str(),
            kind = self.book.error.as_ref().map(|error| error.kind.as_str()),
            "run ended"
        );
        let run_id = self.run_id.clone();
        let scrubber = self.scrubber.take();
        let plan = std::sync::Arc::clone(&self.book.plan);
        let report =
            self.book
                .into_report(run_id, status, self.started_at, now, scrubber.as_deref());
        let rewards = report
            .steps
            .iter()
            .enumerate()
            .filter_map(|(index, (_, step))| {
                let decision = step.decision.as_ref()?;
                Some((index, decision.option.as_str(), decision.reward?))
            });
        let (telemetry, keys) = (&self.inner.telemetry, &self.metrics);
        telemetry.run_ended(&plan, keys, status, self.started_at, now, rewards);
        self.inner.emit(|| RunEvent::RunEnded {
            run_id: report.run_id.clone(),
            status,
            at: now,
        });
        report
    }
}
