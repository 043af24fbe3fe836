//! Run events: what a host subscribes to for progress and logs.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use futures::channel::mpsc;
use serde::Serialize;
use serde_json::Value;

use crate::agent::{AgentId, ScoreBreakdown};
use crate::definition::{DecisionPolicy, StepId};
use crate::run::{FailureKind, RecoveryDecision, RunId, RunStatus};

/// Something that happened in a run, in the order it happened.
///
/// Circuit breakers are the engine's, not a run's: an agent's breaker serves every run.
/// Their changes (`CircuitOpened`, `CircuitHalfOpen`, `CircuitClosed`) are announced
/// once, as events of the run whose call made them (the failure that opened the
/// breaker, the probe, the probe's success), so they reach [`Engine::subscribe`] and
/// [`EngineBuilder::on_event`] with every other event, and that run's
/// [`Run::events`](super::Run::events).
///
/// [`Engine::subscribe`]: super::Engine::subscribe
/// [`EngineBuilder::on_event`]: super::EngineBuilder::on_event
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(
    tag = "event",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
#[non_exhaustive]
pub enum RunEvent {
    /// The run started.
    RunStarted {
        /// The run.
        run_id: RunId,
        /// Its workflow.
        workflow_id: String,
        /// The trigger that started it, if one did (`triggers[0] (SCHEDULED)`).
        trigger: Option<String>,
        /// The user it was started for ([`RunOptions::user`](super::RunOptions::user)).
        user: Option<String>,
        /// When.
        at: DateTime<Utc>,
    },
    /// A call to an agent started (one per attempt, and per item of a `parallel` step).
    StepStarted {
        /// The run.
        run_id: RunId,
        /// The step.
        step_id: StepId,
        /// The item, for a `parallel` step.
        item: Option<usize>,
        /// The iteration, from 1, for a `loop` step.
        iteration: Option<u32>,
        /// The attempt, from 1.
        attempt: u32,
        /// The agent called.
        agent_id: AgentId,
        /// How the agent scored when it was chosen.
        score: ScoreBreakdown,
        /// When.
        at: DateTime<Utc>,
    },
    /// A call failed and will be retried after `delay_ms`.
    StepRetrying {
        /// The run.
        run_id: RunId,
        /// The step.
        step_id: StepId,
        /// The item, for a `parallel` step.
        item: Option<usize>,
        /// The agent whose call failed.
        agent_id: AgentId,
        /// The attempt that failed.
        attempt: u32,
        /// Why it failed.
        kind: FailureKind,
        /// What the agent said.
        message: String,
        /// The wait before the next attempt, in milliseconds.
        delay_ms: u64,
        /// When.
        at: DateTime<Utc>,
    },
    /// A call waits for its step's `budget`: a bucket it names is short (announced once
    /// per attempt, when it starts to wait).
    BudgetWaiting {
        /// The run.
        run_id: RunId,
        /// The step.
        step_id: StepId,
        /// The item, for a `parallel` step.
        item: Option<usize>,
        /// The amounts the call waits for, budget name → tokens.
        budgets: std::collections::BTreeMap<String, u64>,
        /// The earliest instant its turn can come, as the line stands.
        until: DateTime<Utc>,
        /// When.
        at: DateTime<Utc>,
    },
    /// A step completed.
    StepCompleted {
        /// The run.
        run_id: RunId,
        /// The step.
        step_id: StepId,
        /// The agent whose result it is.
        agent_id: Option<AgentId>,
        /// Calls made.
        attempts: u32,
        /// When.
        at: DateTime<Utc>,
    },
    /// A step failed for good.
    StepFailed {
        /// The run.
        run_id: RunId,
        /// The step.
        step_id: StepId,
        /// Why.
        kind: FailureKind,
        /// What happened.
        message: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// A step was skipped.
    StepSkipped {
        /// The run.
        run_id: RunId,
        /// The step.
        step_id: StepId,
        /// Why.
        reason: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// A running step was stopped because the run ended.
    StepCancelled {
        /// The run.
        run_id: RunId,
        /// The step.
        step_id: StepId,
        /// When.
        at: DateTime<Utc>,
    },
    /// A `human_approval` step waits for an answer (`Engine::approve` / `Engine::reject`).
    StepWaiting {
        /// The run.
        run_id: RunId,
        /// The step.
        step_id: StepId,
        /// What the approver is asked to approve (the step's resolved parameters), the
        /// workflow's `sensitive` fields written `"***"`.
        parameters: Value,
        /// When.
        at: DateTime<Utc>,
    },
    /// A person (or the approval timeout) answered a waiting step.
    StepAnswered {
        /// The run.
        run_id: RunId,
        /// The step.
        step_id: StepId,
        /// Approved or rejected.
        approved: bool,
        /// Who answered.
        by: String,
        /// Why.
        comment: Option<String>,
        /// When.
        at: DateTime<Utc>,
    },
    /// One approval of a step that needs a quorum (`approval.quorum`) was counted; the
    /// step waits on until `have` reaches `need` (then `StepAnswered` follows).
    ApprovalCounted {
        /// The run.
        run_id: RunId,
        /// The step.
        step_id: StepId,
        /// Who approved.
        by: String,
        /// Approvals counted so far.
        have: u32,
        /// Approvals needed.
        need: u32,
        /// When.
        at: DateTime<Utc>,
    },
    /// An approval was void: the step's parameters changed since the approver was asked
    /// (an adaptation); the step asks again (`StepWaiting` follows, with the new
    /// parameters), and approvals counted before are void too.
    ApprovalVoided {
        /// The run.
        run_id: RunId,
        /// The step.
        step_id: StepId,
        /// Whose approval was void.
        by: String,
        /// The hash of the parameters the approver was shown.
        asked: String,
        /// The hash of the parameters the step has now.
        now: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// A `decision` step chose one of its options, before its first call.
    StepDecided {
        /// The run.
        run_id: RunId,
        /// The step.
        step_id: StepId,
        /// The option chosen.
        option: String,
        /// The value of the step's `contextKey` (`""` without one).
        context_key: String,
        /// The policy that chose.
        policy: DecisionPolicy,
        /// When.
        at: DateTime<Utc>,
    },
    /// The workflow's adaptations in `ids` applied to a step as it was about to start.
    StepAdapted {
        /// The run.
        run_id: RunId,
        /// The step.
        step_id: StepId,
        /// The adaptations applied, in the order they applied.
        ids: Vec<String>,
        /// When.
        at: DateTime<Utc>,
    },
    /// A step failed after its retries and self-healing chose how to recover.
    StepRecovering {
        /// The run.
        run_id: RunId,
        /// The step that failed.
        step_id: StepId,
        /// The recovery, with its estimate and the failure.
        decision: RecoveryDecision,
        /// When.
        at: DateTime<Utc>,
    },
    /// The host paused the run: it starts no new step until resumed.
    RunPaused {
        /// The run.
        run_id: RunId,
        /// Who paused it.
        by: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// The host resumed the run.
    RunResumed {
        /// The run.
        run_id: RunId,
        /// Who resumed it.
        by: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// The host cancelled the run; `RunEnded` (`CANCELLED`) follows.
    RunCancelled {
        /// The run.
        run_id: RunId,
        /// Who cancelled.
        by: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// The run ended.
    RunEnded {
        /// The run.
        run_id: RunId,
        /// How.
        status: RunStatus,
        /// When.
        at: DateTime<Utc>,
    },
    /// An agent's circuit breaker opened: this run's call was the failure that reached
    /// its threshold, or the probe that failed. No run's call goes to the agent until
    /// `until` (see [Circuit breakers](crate::agent#circuit-breakers)).
    CircuitOpened {
        /// The run whose call failed.
        run_id: RunId,
        /// The step whose call failed.
        step_id: StepId,
        /// The agent.
        agent_id: AgentId,
        /// Its consecutive failed calls, counted across open periods.
        failures: u32,
        /// When it turns half open and lets one probe call through.
        until: DateTime<Utc>,
        /// When.
        at: DateTime<Utc>,
    },
    /// An agent's open circuit breaker turned half open and let this run's call through
    /// as its probe (announced before the call's `StepStarted`).
    CircuitHalfOpen {
        /// The run whose call is the probe.
        run_id: RunId,
        /// The step whose call is the probe.
        step_id: StepId,
        /// The agent.
        agent_id: AgentId,
        /// When.
        at: DateTime<Utc>,
    },
    /// An agent's circuit breaker closed: this run's call, made while it was half open
    /// (its probe, as a rule), succeeded. Calls go to the agent as usual again.
    CircuitClosed {
        /// The run whose call succeeded.
        run_id: RunId,
        /// The step whose call succeeded.
        step_id: StepId,
        /// The agent.
        agent_id: AgentId,
        /// When.
        at: DateTime<Utc>,
    },
}

impl RunEvent {
    /// The run the event belongs to.
    pub fn run_id(&self) -> &RunId {
        match self {
            Self::RunStarted { run_id, .. }
            | Self::StepStarted { run_id, .. }
            | Self::StepRetrying { run_id, .. }
            | Self::BudgetWaiting { run_id, .. }
            | Self::StepCompleted { run_id, .. }
            | Self::StepFailed { run_id, .. }
            | Self::StepSkipped { run_id, .. }
            | Self::StepCancelled { run_id, .. }
            | Self::StepWaiting { run_id, .. }
            | Self::StepAnswered { run_id, .. }
            | Self::ApprovalCounted { run_id, .. }
            | Self::ApprovalVoided { run_id, .. }
            | Self::StepDecided { run_id, .. }
            | Self::StepAdapted { run_id, .. }
            | Self::StepRecovering { run_id, .. }
            | Self::RunPaused { run_id, .. }
            | Self::RunResumed { run_id, .. }
            | Self::RunCancelled { run_id, .. }
            | Self::RunEnded { run_id, .. }
            | Self::CircuitOpened { run_id, .. }
            | Self::CircuitHalfOpen { run_id, .. }
            | Self::CircuitClosed { run_id, .. } => run_id,
        }
    }
}

/// A stream of every event of every run, from [`Engine::subscribe`](super::Engine::subscribe).
pub type EventStream = mpsc::UnboundedReceiver<RunEvent>;

/// The events of one run, from [`Run::events`](super::Run::events): in order, ending
/// after its `RunEnded`. Subscribed when created: create it before the run is first
/// polled to see every event.
///
/// ```
/// use futures::StreamExt;
/// # use std::sync::Arc;
/// # use serde_json::{Value, json};
/// # use tradeflow::agent::{Agent, AgentDescriptor, AgentError, TaskRequest};
/// # use tradeflow::definition::WorkflowDefinition;
/// use tradeflow::engine::{Engine, RunEvent, RunOptions};
/// # struct Echo(AgentDescriptor);
/// # #[tradeflow::async_trait]
/// # impl Agent for Echo {
/// #     fn descriptor(&self) -> &AgentDescriptor { &self.0 }
/// #     async fn execute(&self, _: TaskRequest) -> Result<Value, AgentError> { Ok(json!({})) }
/// # }
///
/// let engine = Engine::builder().build();
/// # engine.register_agent(Arc::new(Echo(AgentDescriptor::new("e-1", "T"))))?;
/// # engine.create_workflow(WorkflowDefinition::from_json(r#"{"id": "w", "steps": [
/// #     {"id": "a", "type": "task", "agentCriteria": {"type": "T"}, "task": {"type": "T"}}]}"#)?)?;
/// let run = engine.start("w", RunOptions::new(json!({})))?;
/// let events = run.events();
/// let report = futures::executor::block_on(run);
/// let seen: Vec<RunEvent> = futures::executor::block_on(events.collect());
/// assert!(matches!(seen.first(), Some(RunEvent::RunStarted { .. })));
/// assert!(matches!(seen.last(), Some(RunEvent::RunEnded { .. })));
/// assert!(seen.iter().all(|event| event.run_id() == &report.run_id));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use = "streams do nothing unless polled"]
pub struct RunEvents {
    stream: EventStream,
    run: RunId,
    ended: bool,
}

impl RunEvents {
    pub(super) fn new(stream: EventStream, run: RunId) -> Self {
        Self {
            stream,
            run,
            ended: false,
        }
    }
}

impl futures::Stream for RunEvents {
    type Item = RunEvent;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<RunEvent>> {
        use futures::StreamExt as _;
        use std::task::Poll;
        while !self.ended {
            match self.stream.poll_next_unpin(cx) {
                Poll::Ready(Some(event)) if event.run_id() == &self.run => {
                    self.ended = matches!(event, RunEvent::RunEnded { .. });
                    return Poll::Ready(Some(event));
                }
                Poll::Ready(Some(_)) => {}
                Poll::Ready(None) => self.ended = true,
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(None)
    }
}

type Callback = Arc<dyn Fn(&RunEvent) + Send + Sync>;

/// The subscribers of an engine. Events are built only when someone listens.
#[derive(Default)]
pub(super) struct Listeners {
    any: AtomicBool,
    streams: Mutex<Vec<mpsc::UnboundedSender<RunEvent>>>,
    callbacks: Vec<Callback>,
}

impl Listeners {
    pub(super) fn new(callbacks: Vec<Callback>) -> Self {
        Self {
            any: AtomicBool::new(!callbacks.is_empty()),
            streams: Mutex::new(Vec::new()),
            callbacks,
        }
    }

    /// Whether anyone listens (cheap; check before building an event).
    pub(super) fn active(&self) -> bool {
        self.any.load(Ordering::Relaxed)
    }

    pub(super) fn subscribe(&self) -> EventStream {
        let (sender, receiver) = mpsc::unbounded();
        self.streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(sender);
        self.any.store(true, Ordering::Relaxed);
        receiver
    }

    pub(super) fn emit(&self, event: RunEvent) {
        for callback in &self.callbacks {
            callback(&event);
        }
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        streams.retain(|stream| stream.unbounded_send(event.clone()).is_ok());
        if streams.is_empty() && self.callbacks.is_empty() {
            self.any.store(false, Ordering::Relaxed);
        }
    }
}

impl fmt::Debug for Listeners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let streams = self.streams.lock().map_or(0, |streams| streams.len());
        f.debug_struct("Listeners")
            .field("streams", &streams)
            .field("callbacks", &self.callbacks.len())
            .finish()
    }
}

pub(super) type EventCallback = Callback;
