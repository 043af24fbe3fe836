//! Triggers at run time: cron schedules, host events and metric thresholds that start
//! runs of a workflow when their condition holds against the host context.
//!
//! [`Triggers`] holds a workflow's triggers, the host context and the state of its
//! `THRESHOLD` triggers; its docs say when each kind fires (this module is private: the
//! types are re-exported by [`scheduler`](super), so the semantics live on them).

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context as TaskContext, Poll};

use chrono::{DateTime, TimeDelta, Utc};
use futures::stream::{self, BoxStream, StreamExt};
use serde_json::{Map, Value};

use crate::clock::add_saturating;
use crate::definition::{Location, TriggerType};
use crate::engine::{Engine, EngineError, OrchestrationEngine, Run, RunOptions, RunReport};
use crate::expr::{Context, EvalError};
use crate::plan::{ExecutionPlan, Schedule, Trigger, TriggerKind};

/// Why a trigger set cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TriggerError {
    /// The engine keeps no workflow with this id.
    #[error("unknown workflow `{id}`")]
    UnknownWorkflow {
        /// The id asked for.
        id: String,
    },
    /// The workflow has no `triggers`: nothing would ever start it.
    #[error("workflow `{id}` has no triggers")]
    NoTriggers {
        /// The workflow.
        id: String,
    },
}

/// The triggers of one workflow of an engine, live: the host [`Context`] their
/// conditions read, the state of the `THRESHOLD` triggers, and the engine that starts
/// their runs — an [`Engine`] ([`Triggers::new`]) or any [`OrchestrationEngine`], such
/// as a host's wrapper around one ([`Triggers::on`]). The host feeds it:
/// - [`publish_event`](Triggers::publish_event): every `EVENT` trigger of that event
///   type is considered; its condition sees the payload as `event.<field>` on top of the
///   host context (the run started gets that context too).
/// - [`report_metric`](Triggers::report_metric): every `THRESHOLD` trigger watching that
///   metric updates its state (below).
/// - time: [`run_schedule`](Triggers::run_schedule) is a stream that sleeps on the
///   engine's [`Clock`](crate::clock::Clock) until the next cron occurrence of any
///   `SCHEDULED` trigger and fires the triggers due; [`fire_due`](Triggers::fire_due)
///   does one instant for hosts that keep time themselves.
///
/// Every consideration returns a [`Firing`]: either the [`Run`] it started (with
/// `RunOptions::triggered_by("triggers[i] (TYPE)")`, so the run's `RunStarted` event and
/// journal say which trigger started it) or why it did not fire. Runs are started with
/// [`OrchestrationEngine::start`], on the version of the workflow the trigger set was
/// built on ([`RunOptions::version`]); a start the engine refuses (a wrapper's refusal,
/// agents missing under `AgentCheck::BeforeStart`, the version no longer kept) is a
/// firing that did not fire, [`NotFiredReason::StartRefused`]. The host drives the runs
/// (polls them), as with [`Engine::start`].
///
/// # When each kind fires
/// - `SCHEDULED`: at every occurrence of its cron pattern, read in its time zone's wall
///   clock (see [`Schedule::next_after`] for daylight-saving changes: a skipped time
///   fires at the end of the gap, a repeated time once). [`run_schedule`] fires the
///   occurrences from the moment the stream is created (one at that very instant
///   included). If the clock jumps past several occurrences of a trigger at once (a host
///   suspended for hours), the trigger fires once, for the first, not once for each.
/// - `EVENT`: when the host publishes an event of exactly its `eventType`.
/// - `THRESHOLD`: the trigger is *armed* until it fires. A report fires it when the
///   trigger is armed, `value >= threshold` (reaching the threshold counts), its
///   cooldown has passed and its condition holds; firing disarms it, and a report with
///   `value < threshold` re-arms it. It starts armed, so a first report at or above the
///   threshold fires (the host may start with the metric already high). Without
///   condition and cooldown, this is exactly "fires when `previous < threshold <= value`",
///   the first report counting as coming from below. With them, an excursion above the
///   threshold fires at most once, at the first report where the condition holds and the
///   cooldown (`cooldownMs` since the trigger last fired, on the engine's clock) has
///   passed. A `NaN` value changes nothing.
///
/// A condition is evaluated when its trigger is considered, against the context of that
/// moment. One that is false does not fire ([`NotFiredReason::ConditionFalse`]); one that
/// cannot be evaluated (an unknown variable, a host function failing) does not fire
/// either, is logged with `tracing::warn!` and reported
/// ([`NotFiredReason::ConditionFailed`]).
///
/// # Host context
/// [`Triggers::set_value`] sets a name as a timeline's `context` does: the value
/// is both a variable and a function returning it, so `market.isOpen` and
/// `market.isOpen()` read the same value (a name written `market.isOpen()` is stripped of
/// its `()`); an object sets one name per leaf (`"market": {"isOpen": true}` sets
/// `market.isOpen`). [`Triggers::update_context`] gives the whole [`Context`] for
/// anything else (host functions with arguments).
///
/// # Clocks
/// Only the engine's clock is read, so the same code runs on
/// [`SystemClock`](crate::clock::SystemClock) and, for backtests,
/// [`VirtualClock`](crate::clock::VirtualClock), where the timeline player
/// ([`Timeline`](super::Timeline)) plays a week in milliseconds.
///
/// # Cost
/// An event or metric report costs O(triggers) plus one condition evaluation per
/// trigger considered (a clone of the context for events); a schedule wake-up costs one
/// cron search (≈ 0.5 µs) per `SCHEDULED` trigger fired. Conditions are evaluated under
/// the trigger set's lock: host functions must not call back into the same
/// [`Triggers`].
///
/// [`run_schedule`]: Triggers::run_schedule
/// [`Engine::start`]: crate::engine::Engine::start
///
/// Cheap to clone: clones share the context and state (publish events from one task
/// while another drives [`run_schedule`](Self::run_schedule)).
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use serde_json::{Value, json};
/// use tradeflow::agent::{Agent, AgentDescriptor, AgentError, TaskRequest};
/// use tradeflow::clock::VirtualClock;
/// use tradeflow::engine::{Engine, RunStatus};
/// use tradeflow::plan::ExecutionPlan;
/// use tradeflow::scheduler::Triggers;
///
/// struct Trader(AgentDescriptor);
///
/// #[tradeflow::async_trait]
/// impl Agent for Trader {
///     fn descriptor(&self) -> &AgentDescriptor { &self.0 }
///     async fn execute(&self, _: TaskRequest) -> Result<Value, AgentError> {
///         Ok(json!({"filled": true}))
///     }
/// }
///
/// let clock = VirtualClock::starting_at("2026-11-24T13:00:00Z".parse()?);
/// let engine = Engine::builder().clock(clock.clone()).build();
/// engine.register_agent(Arc::new(Trader(AgentDescriptor::new("t-1", "TRADING_EXECUTION"))))?;
/// engine.add_plan(ExecutionPlan::from_json(r#"{
///     "id": "on-signal",
///     "steps": [{"id": "trade", "type": "task", "agentCriteria": {"type": "TRADING_EXECUTION"},
///                "task": {"type": "ORDER_EXECUTION"}}],
///     "triggers": [{"type": "EVENT", "eventType": "MARKET_SIGNAL",
///                   "condition": {"expression": "event.strength > 0.7 && market.isOpen()"}}]
/// }"#)?);
///
/// let triggers = Triggers::new(&engine, "on-signal")?;
/// triggers.set_value("market.isOpen", json!(true));
/// assert!(triggers.publish_event("MARKET_SIGNAL", json!({"strength": 0.4}))[0].run().is_none());
///
/// let firing = triggers.publish_event("MARKET_SIGNAL", json!({"strength": 0.8})).remove(0);
/// assert_eq!(firing.trigger(), "triggers[0] (EVENT)");
/// let run = firing.into_run().expect("the condition holds");
/// assert_eq!(clock.block_on(run).status, RunStatus::Completed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Triggers {
    shared: Arc<Shared>,
}

struct Shared {
    engine: Arc<dyn OrchestrationEngine>,
    plan: Arc<ExecutionPlan>,
    state: Mutex<State>,
}

struct State {
    context: Context,
    input: Value,
    /// By trigger index: the state of each `THRESHOLD` trigger, `None` for the others.
    thresholds: Vec<Option<Armed>>,
}

/// The state of a `THRESHOLD` trigger.
#[derive(Debug, Clone, Copy)]
struct Armed {
    /// Whether the next report at or above the threshold may fire it.
    armed: bool,
    /// When it last fired (its cooldown runs from there).
    last_fired: Option<DateTime<Utc>>,
}

impl fmt::Debug for Triggers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Triggers")
            .field("workflow", &self.workflow_id())
            .field("triggers", &self.shared.plan.triggers().len())
            .finish_non_exhaustive()
    }
}

impl Triggers {
    /// The triggers of the latest version of workflow `workflow_id` kept by `engine`,
    /// with an empty context and `{}` as the input of the runs they start.
    ///
    /// Runs start on that version's plan: build a new `Triggers` after adding a version.
    ///
    /// # Errors
    /// [`TriggerError::UnknownWorkflow`] when the engine keeps no such workflow;
    /// [`TriggerError::NoTriggers`] when it has no triggers.
    pub fn new(engine: &Engine, workflow_id: &str) -> Result<Self, TriggerError> {
        Self::on(Arc::new(engine.clone()), workflow_id)
    }

    /// As [`new`](Self::new), on any [`OrchestrationEngine`]: a host's wrapper around
    /// the engine sees (and may refuse) every run the triggers start.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn on(
        engine: Arc<dyn OrchestrationEngine>,
        workflow_id: &str,
    ) -> Result<Self, TriggerError> {
        let plan = engine
            .workflow(workflow_id)
            .ok_or_else(|| TriggerError::UnknownWorkflow {
                id: workflow_id.to_owned(),
            })?;
        if plan.triggers().is_empty() {
            return Err(TriggerError::NoTriggers {
                id: workflow_id.to_owned(),
            });
        }
        let thresholds = plan
            .triggers()
            .iter()
            .map(|trigger| {
                matches!(trigger.kind(), TriggerKind::Threshold { .. }).then_some(Armed {
                    armed: true,
                    last_fired: None,
                })
            })
            .collect();
        Ok(Self {
            shared: Arc::new(Shared {
                engine,
                plan,
                state: Mutex::new(State {
                    context: Context::new(),
                    input: Value::Object(Map::new()),
                    thresholds,
                }),
            }),
        })
    }

    /// Sets the host context (see [`set_context`](Self::set_context)). Returns the
    /// trigger set, for chaining. Defaults to an empty context.
    #[must_use]
    pub fn with_context(self, context: Context) -> Self {
        self.set_context(context);
        self
    }

    /// Sets the input of every run started (see [`set_input`](Self::set_input)).
    /// Returns the trigger set, for chaining. Defaults to `{}`.
    #[must_use]
    pub fn with_input(self, input: Value) -> Self {
        self.set_input(input);
        self
    }

    /// The workflow's id.
    pub fn workflow_id(&self) -> &str {
        self.shared.plan.workflow_id()
    }

    /// The plan whose triggers these are, and whose runs they start.
    pub fn plan(&self) -> &Arc<ExecutionPlan> {
        &self.shared.plan
    }

    /// The engine that starts the runs (and whose clock the schedule sleeps on).
    pub fn engine(&self) -> &Arc<dyn OrchestrationEngine> {
        &self.shared.engine
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held but host functions, which leave the
        // state as consistent as before they were called.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of the host context.
    pub fn context(&self) -> Context {
        self.lock().context.clone()
    }

    /// Replaces the host context that conditions read (and runs get).
    pub fn set_context(&self, context: Context) {
        self.lock().context = context;
    }

    /// Changes the host context in place.
    pub fn update_context(&self, update: impl FnOnce(&mut Context)) {
        update(&mut self.lock().context);
    }

    /// Sets `name` in the host context as a variable and as a function returning
    /// `value` (a trailing `()` in `name` is dropped); an object sets each leaf under
    /// its dotted name ([`Context::set_value`]). See [Host context](#host-context).
    pub fn set_value(&self, name: &str, value: Value) {
        self.lock().context.set_value(name, value);
    }

    /// The input of the runs started.
    pub fn input(&self) -> Value {
        self.lock().input.clone()
    }

    /// Sets the input of every run started from now on.
    pub fn set_input(&self, input: Value) {
        self.lock().input = input;
    }

    /// Publishes an event: considers every `EVENT` trigger of type `event_type`, in
    /// index order, at the engine clock's current time; each condition sees the payload
    /// as `event.<field>` (an object payload is flattened: `event.meta.source`) on top of
    /// the host context. Returns one [`Firing`] per trigger considered (none when no
    /// trigger has this type).
    pub fn publish_event(&self, event_type: &str, payload: Value) -> Vec<Firing> {
        let at = self.shared.engine.clock().now();
        let decisions = self.decide_event(event_type, &payload, at);
        self.start(decisions)
    }

    /// Reports a metric's value: updates every `THRESHOLD` trigger watching `metric`,
    /// in index order, at the engine clock's current time (see
    /// [When each kind fires](#when-each-kind-fires) for the crossing rule). Returns one
    /// [`Firing`] per trigger that reached its threshold while armed: fired, or why not.
    pub fn report_metric(&self, metric: &str, value: f64) -> Vec<Firing> {
        let at = self.shared.engine.clock().now();
        let decisions = self.decide_metric(metric, value, at);
        self.start(decisions)
    }

    /// Fires every `SCHEDULED` trigger that has an occurrence at exactly `at`, in index
    /// order, for hosts that keep time themselves ([`next_scheduled`](Self::next_scheduled)
    /// says when to call).
    pub fn fire_due(&self, at: DateTime<Utc>) -> Vec<Firing> {
        let decisions = self
            .shared
            .plan
            .triggers()
            .iter()
            .filter(|trigger| {
                schedule_of(trigger)
                    .is_some_and(|schedule| first_at_or_after(schedule, at) == Some(at))
            })
            .map(|trigger| self.decide_scheduled(trigger, at))
            .collect();
        self.start(decisions)
    }

    /// The earliest occurrence of any `SCHEDULED` trigger strictly after `after`.
    pub fn next_scheduled(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.shared
            .plan
            .triggers()
            .iter()
            .filter_map(schedule_of)
            .filter_map(|schedule| schedule.next_after(after))
            .min()
    }

    /// Fires the `SCHEDULED` triggers on the engine's clock, from now on: sleeps until
    /// the next occurrence of any of them, considers the triggers due (in index order),
    /// yields a [`Firing`] for each, and sleeps again. The stream ends only when no
    /// schedule will ever fire again (at once if there is no `SCHEDULED` trigger).
    ///
    /// Poll it on any executor, and drive the runs it yields. On a
    /// [`VirtualClock`](crate::clock::VirtualClock) it never waits: under `block_on`,
    /// stop reading it at the time you want (e.g. `take_while` on [`Firing::at`]).
    pub fn run_schedule(&self) -> BoxStream<'static, Firing> {
        let clock = Arc::clone(self.shared.engine.clock());
        let agenda = Agenda::new(self.shared.plan.triggers(), clock.now());
        let ready: VecDeque<Firing> = VecDeque::new();
        stream::unfold(
            (self.clone(), clock, agenda, ready),
            |(triggers, clock, mut agenda, mut ready)| async move {
                loop {
                    if let Some(firing) = ready.pop_front() {
                        return Some((firing, (triggers, clock, agenda, ready)));
                    }
                    let next = agenda.peek()?;
                    clock.sleep_until(next).await;
                    let plan = Arc::clone(&triggers.shared.plan);
                    let decisions = agenda
                        .pop_due(plan.triggers(), clock.now())
                        .into_iter()
                        .filter_map(|(at, index)| {
                            let trigger = plan.triggers().get(index)?;
                            Some(triggers.decide_scheduled(trigger, at))
                        })
                        .collect();
                    ready.extend(triggers.start(decisions));
                }
            },
        )
        .boxed()
    }

    /// Decides the `EVENT` triggers of `event_type` at `at`.
    pub(super) fn decide_event(
        &self,
        event_type: &str,
        payload: &Value,
        at: DateTime<Utc>,
    ) -> Vec<Decision> {
        let state = self.lock();
        let mut context: Option<Context> = None;
        let mut decisions = Vec::new();
        for trigger in self.shared.plan.triggers() {
            let TriggerKind::Event { event_type: wanted } = trigger.kind() else {
                continue;
            };
            if wanted != event_type {
                continue;
            }
            let context = context.get_or_insert_with(|| {
                let mut context = state.context.clone();
                context.set_variable("event", payload.clone());
                context
            });
            let verdict = self
                .check(trigger, context)
                .map(|()| (context.clone(), state.input.clone()));
            decisions.push(Decision::new(trigger, at, verdict));
        }
        decisions
    }

    /// Decides the `THRESHOLD` triggers watching `metric` at `at`, updating their state.
    pub(super) fn decide_metric(
        &self,
        metric: &str,
        value: f64,
        at: DateTime<Utc>,
    ) -> Vec<Decision> {
        if value.is_nan() {
            tracing::warn!(
                workflow = self.workflow_id(),
                metric,
                "a NaN metric value changes no threshold trigger"
            );
            return Vec::new();
        }
        let mut guard = self.lock();
        let State {
            context,
            input,
            thresholds,
        } = &mut *guard;
        let mut decisions = Vec::new();
        for trigger in self.shared.plan.triggers() {
            let TriggerKind::Threshold {
                metric: watched,
                threshold,
                cooldown,
            } = trigger.kind()
            else {
                continue;
            };
            let Some(Some(state)) = thresholds.get_mut(trigger.index()) else {
                continue;
            };
            if watched != metric {
                continue;
            }
            if value < *threshold {
                state.armed = true;
                continue;
            }
            if !state.armed {
                continue;
            }
            let until = match (state.last_fired, cooldown) {
                (Some(last), Some(cooldown)) => Some(add_saturating(last, *cooldown)),
                _ => None,
            };
            let verdict = match until {
                Some(until) if at < until => Err(NotFiredReason::CoolingDown { until }),
                _ => self.check(trigger, context),
            };
            if verdict.is_ok() {
                state.armed = false;
                state.last_fired = Some(at);
            }
            let verdict = verdict.map(|()| (context.clone(), input.clone()));
            decisions.push(Decision::new(trigger, at, verdict));
        }
        decisions
    }

    /// Decides `SCHEDULED` trigger `trigger` at its occurrence `at`.
    pub(super) fn decide_scheduled(&self, trigger: &Trigger, at: DateTime<Utc>) -> Decision {
        let state = self.lock();
        let verdict = self
            .check(trigger, &state.context)
            .map(|()| (state.context.clone(), state.input.clone()));
        Decision::new(trigger, at, verdict)
    }

    /// Evaluates the trigger's condition, if it has one, against `context`.
    fn check(&self, trigger: &Trigger, context: &Context) -> Result<(), NotFiredReason> {
        let Some(condition) = trigger.condition() else {
            return Ok(());
        };
        match condition.evaluate_with(context) {
            Ok(true) => Ok(()),
            Ok(false) => Err(NotFiredReason::ConditionFalse),
            Err(error) => {
                tracing::warn!(
                    workflow = self.workflow_id(),
                    trigger = %label(trigger.index(), trigger.trigger_type()),
                    condition = condition.text(),
                    error = &error as &dyn std::error::Error,
                    "trigger condition cannot be evaluated; the trigger does not fire"
                );
                Err(NotFiredReason::ConditionFailed(error))
            }
        }
    }

    /// Starts the runs of the decisions that fire, in order.
    pub(super) fn start(&self, decisions: Vec<Decision>) -> Vec<Firing> {
        decisions
            .into_iter()
            .map(|decision| {
                let outcome = match decision.verdict {
                    Ok((context, input)) => {
                        let plan = &self.shared.plan;
                        let mut options = RunOptions::new(input)
                            .context(context)
                            .triggered_by(label(decision.index, decision.trigger_type))
                            .as_host()
                            .version(plan.definition().version.clone().unwrap_or_default());
                        // An event's run decides on the event: its data is as of then.
                        if decision.trigger_type == TriggerType::Event {
                            options = options.data_as_of(decision.at);
                        }
                        match self.shared.engine.start(plan.workflow_id(), options) {
                            Ok(run) => FiringOutcome::Started(run),
                            Err(error) => {
                                tracing::warn!(
                                    workflow = plan.workflow_id(),
                                    trigger = %label(decision.index, decision.trigger_type),
                                    error = &error as &dyn std::error::Error,
                                    "the engine refused to start the trigger's run"
                                );
                                FiringOutcome::NotFired(NotFiredReason::StartRefused(error))
                            }
                        }
                    }
                    Err(reason) => FiringOutcome::NotFired(reason),
                };
                Firing {
                    trigger_index: decision.index,
                    trigger_type: decision.trigger_type,
                    at: decision.at,
                    outcome,
                }
            })
            .collect()
    }
}

/// A trigger considered, before its run starts: the context and input of the run to
/// start, or why it does not fire.
pub(super) struct Decision {
    pub(super) index: usize,
    trigger_type: TriggerType,
    at: DateTime<Utc>,
    verdict: Result<(Context, Value), NotFiredReason>,
}

impl Decision {
    fn new(
        trigger: &Trigger,
        at: DateTime<Utc>,
        verdict: Result<(Context, Value), NotFiredReason>,
    ) -> Self {
        Self {
            index: trigger.index(),
            trigger_type: trigger.trigger_type(),
            at,
            verdict,
        }
    }
}

/// A trigger considered: its cron occurrence came, an event of its type was published,
/// or its metric reached the threshold while it was armed. Holds the run it started, or
/// why it did not fire.
#[derive(Debug)]
pub struct Firing {
    /// The trigger's index in the definition's `triggers`.
    pub trigger_index: usize,
    /// Its type.
    pub trigger_type: TriggerType,
    /// When: the cron occurrence, or the time the event or report came.
    pub at: DateTime<Utc>,
    /// The run started, or why none was.
    pub outcome: FiringOutcome,
}

impl Firing {
    /// The trigger as runs record it: `triggers[0] (SCHEDULED)`.
    pub fn trigger(&self) -> String {
        label(self.trigger_index, self.trigger_type)
    }

    /// The run started, if the trigger fired.
    pub fn run(&self) -> Option<&Run> {
        match &self.outcome {
            FiringOutcome::Started(run) => Some(run),
            FiringOutcome::NotFired(_) => None,
        }
    }

    /// The run started, to drive, if the trigger fired.
    pub fn into_run(self) -> Option<Run> {
        match self.outcome {
            FiringOutcome::Started(run) => Some(run),
            FiringOutcome::NotFired(_) => None,
        }
    }

    /// Why the trigger did not fire, if it did not.
    pub fn not_fired(&self) -> Option<&NotFiredReason> {
        match &self.outcome {
            FiringOutcome::Started(_) => None,
            FiringOutcome::NotFired(reason) => Some(reason),
        }
    }
}

/// What considering a trigger did.
#[derive(Debug)]
#[non_exhaustive]
pub enum FiringOutcome {
    /// It fired: the run it started, which makes progress only while polled.
    Started(Run),
    /// It did not fire.
    NotFired(NotFiredReason),
}

/// Why a trigger that was considered did not fire.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum NotFiredReason {
    /// Its condition is false.
    #[error("condition false")]
    ConditionFalse,
    /// Its condition cannot be evaluated (also logged with `tracing::warn!`).
    #[error("condition cannot be evaluated: {0}")]
    ConditionFailed(EvalError),
    /// A `THRESHOLD` trigger fired less than `cooldownMs` ago; it stays armed.
    #[error("cooling down until {}", .until.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))]
    CoolingDown {
        /// When the cooldown ends.
        until: DateTime<Utc>,
    },
    /// It fired, but the engine refused to start its run (a wrapper's refusal, the
    /// workflow's agents missing under `AgentCheck::BeforeStart`, its version no longer
    /// kept); also logged with `tracing::warn!`.
    #[error("the engine refused to start the run: {0}")]
    StartRefused(EngineError),
}

/// A run a trigger started, as a future of `(tag, report)`: lets many runs share one
/// `FuturesUnordered` and say which is which when they end.
#[derive(Debug)]
pub(super) struct Tagged {
    pub(super) tag: usize,
    pub(super) run: Run,
}

impl Future for Tagged {
    type Output = (usize, RunReport);

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let tag = self.tag;
        Pin::new(&mut self.run).poll(cx).map(|report| (tag, report))
    }
}

/// `triggers[i] (TYPE)`, as locations and `RunOptions::triggered_by` name triggers.
pub(super) fn label(index: usize, trigger_type: TriggerType) -> String {
    Location::trigger(index, Some(trigger_type)).to_string()
}

fn schedule_of(trigger: &Trigger) -> Option<&Schedule> {
    match trigger.kind() {
        TriggerKind::Scheduled(schedule) => Some(schedule),
        _ => None,
    }
}

/// The first occurrence of `schedule` at or after `at`.
fn first_at_or_after(schedule: &Schedule, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match at.checked_sub_signed(TimeDelta::nanoseconds(1)) {
        Some(before) => schedule.next_after(before),
        None => schedule.next_after(at),
    }
}

/// The next occurrence of each `SCHEDULED` trigger.
#[derive(Debug, Clone)]
pub(super) struct Agenda {
    /// `(next occurrence, trigger index)`; triggers that will never fire again are
    /// removed.
    next: Vec<(DateTime<Utc>, usize)>,
}

impl Agenda {
    /// The occurrences of `triggers`' schedules at or after `from`.
    pub(super) fn new(triggers: &[Trigger], from: DateTime<Utc>) -> Self {
        Self {
            next: triggers
                .iter()
                .filter_map(|trigger| {
                    let next = first_at_or_after(schedule_of(trigger)?, from)?;
                    Some((next, trigger.index()))
                })
                .collect(),
        }
    }

    /// The earliest next occurrence.
    pub(super) fn peek(&self) -> Option<DateTime<Utc>> {
        self.next.iter().map(|(at, _)| *at).min()
    }

    /// The earliest occurrence (ties: lowest trigger index), moving its trigger on to
    /// its following one.
    pub(super) fn pop(&mut self, triggers: &[Trigger]) -> Option<(DateTime<Utc>, usize)> {
        let position = (0..self.next.len()).min_by_key(|&position| self.next[position])?;
        let (at, index) = self.next[position];
        self.advance(triggers, position, at);
        Some((at, index))
    }

    /// Every trigger due by `now`, with its first due occurrence, in order of (time,
    /// index); each moves on to its first occurrence after `now` (so occurrences a
    /// jumping clock passed over fire once, not once each).
    fn pop_due(&mut self, triggers: &[Trigger], now: DateTime<Utc>) -> Vec<(DateTime<Utc>, usize)> {
        let mut due: Vec<(DateTime<Utc>, usize)> = self
            .next
            .iter()
            .copied()
            .filter(|(at, _)| *at <= now)
            .collect();
        due.sort_unstable();
        for (_, index) in &due {
            if let Some(position) = self.next.iter().position(|(_, i)| i == index) {
                self.advance(triggers, position, now);
            }
        }
        due
    }

    /// Moves the trigger at `position` on to its first occurrence after `after`, or
    /// drops it when there is none.
    fn advance(&mut self, triggers: &[Trigger], position: usize, after: DateTime<Utc>) {
        let index = self.next[position].1;
        let next = triggers
            .get(index)
            .and_then(schedule_of)
            .and_then(|schedule| schedule.next_after(after));
        match next {
            Some(next) => self.next[position].0 = next,
            None => {
                self.next.swap_remove(position);
            }
        }
    }
}

/// Every firing of the `SCHEDULED` triggers among `triggers` in `[from, to)`, in time
/// order (ties: trigger index): the cron occurrences, whatever the conditions (which need
/// a context to be evaluated).
///
/// # Examples
/// ```
/// use tradeflow::plan::ExecutionPlan;
/// use tradeflow::scheduler::scheduled_firings;
///
/// let plan = ExecutionPlan::from_json(include_str!("../../examples/workflows/algo-trading.json"))?;
/// let from = "2026-11-26T00:00:00Z".parse()?;
/// let to = "2026-12-01T00:00:00Z".parse()?;
/// let firings: Vec<String> = scheduled_firings(plan.triggers(), from, to)
///     .map(|(_, at)| at.to_rfc3339())
///     .collect();
/// assert_eq!(firings, [
///     "2026-11-26T09:00:00+00:00",
///     "2026-11-27T09:00:00+00:00",
///     "2026-11-30T09:00:00+00:00",
/// ]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn scheduled_firings(
    triggers: &[Trigger],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ScheduledFirings<'_> {
    ScheduledFirings {
        triggers,
        agenda: Agenda::new(triggers, from),
        to,
    }
}

/// The iterator of [`scheduled_firings`]: `(trigger, occurrence)` pairs.
#[derive(Debug, Clone)]
pub struct ScheduledFirings<'a> {
    triggers: &'a [Trigger],
    agenda: Agenda,
    to: DateTime<Utc>,
}

impl<'a> Iterator for ScheduledFirings<'a> {
    type Item = (&'a Trigger, DateTime<Utc>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.agenda.peek()? >= self.to {
            return None;
        }
        let (at, index) = self.agenda.pop(self.triggers)?;
        Some((self.triggers.get(index)?, at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_types_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        fn assert_send<T: Send + 'static>() {}
        assert_send_sync::<Triggers>();
        assert_send::<Firing>();
        assert_send_sync::<NotFiredReason>();
        assert_send_sync::<TriggerError>();
    }
}
