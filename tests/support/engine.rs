//! Engine helpers: a virtual clock at 2026-01-05T09:00:00Z, an engine on it that records
//! every event, and hand-written agents whose answers come from a closure.
//!
//! A [`TestAgent`] records every request it gets ([`Call`]: when, the request), counts
//! the calls it has in flight on a [`Gauge`] (shared between agents when a test needs
//! the concurrency of several), and answers as its script says ([`Reply`]): a value, a
//! failure of some kind, a panic, or never; after a delay on the virtual clock.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use tradeflow::agent::{
    Agent, AgentDescriptor, AgentError, AgentErrorKind, CircuitBreaker, TaskRequest,
};
use tradeflow::clock::{Clock, VirtualClock};
use tradeflow::definition::{StepId, WorkflowDefinition};
use tradeflow::engine::{
    Engine, EngineBuilder, EventStream, Run, RunEvent, RunIds, RunOptions, RunReport, RunStatus,
    StepReport,
};

/// 2026-01-05T09:00:00Z, where every test clock starts.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap()
}

/// `n` milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The instant `n` milliseconds after [`t0`].
pub fn at_ms(n: u64) -> DateTime<Utc> {
    t0() + ms(n)
}

/// Time from [`t0`] to `at`.
pub fn since_t0(at: DateTime<Utc>) -> Duration {
    (at - t0())
        .to_std()
        .expect("the clock never goes before t0")
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a [`TestAgent`] does with one call: wait `delay` on the clock, then answer.
#[derive(Debug, Clone)]
pub struct Reply {
    delay: Duration,
    outcome: Outcome,
}

#[derive(Debug, Clone)]
enum Outcome {
    Answer(Value),
    Fail(AgentErrorKind, String),
    Panic(String),
    Hang,
}

impl Reply {
    /// Answers `value`.
    pub fn ok(value: Value) -> Self {
        Self::now(Outcome::Answer(value))
    }

    /// Fails with `kind`.
    pub fn fail(kind: AgentErrorKind, message: &str) -> Self {
        Self::now(Outcome::Fail(kind, message.to_owned()))
    }

    /// Fails with kind `TEMPORARY`.
    pub fn temporary(message: &str) -> Self {
        Self::fail(AgentErrorKind::Temporary, message)
    }

    /// Fails with kind `PERMANENT`.
    pub fn permanent(message: &str) -> Self {
        Self::fail(AgentErrorKind::Permanent, message)
    }

    /// Panics with `message`.
    pub fn panic(message: &str) -> Self {
        Self::now(Outcome::Panic(message.to_owned()))
    }

    /// Never answers.
    pub fn hang() -> Self {
        Self::now(Outcome::Hang)
    }

    /// The same reply, `n` milliseconds of virtual time later.
    #[must_use]
    pub fn after_ms(mut self, n: u64) -> Self {
        self.delay = ms(n);
        self
    }

    fn now(outcome: Outcome) -> Self {
        Self {
            delay: Duration::ZERO,
            outcome,
        }
    }
}

/// One request a [`TestAgent`] received.
#[derive(Debug, Clone)]
pub struct Call {
    /// The agent called.
    pub agent: String,
    /// When the call arrived.
    pub at: DateTime<Utc>,
    /// The request.
    pub request: TaskRequest,
}

impl Call {
    /// Time from [`t0`] to the call.
    pub fn since_t0(&self) -> Duration {
        since_t0(self.at)
    }

    /// The request's idempotency key.
    pub fn key(&self) -> &str {
        &self.request.idempotency_key
    }

    /// The request's step id.
    pub fn step(&self) -> &str {
        self.request.step_id.as_str()
    }
}

/// A log of calls, shared by the agents that write to it.
pub type CallLog = Arc<Mutex<Vec<Call>>>;

/// Calls in flight now, and the most ever in flight at once.
#[derive(Debug, Default)]
pub struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Gauge {
    /// A gauge to share between agents.
    pub fn shared() -> Arc<Self> {
        Arc::default()
    }

    /// The most calls in flight at once so far.
    pub fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }

    /// Calls in flight now.
    pub fn now(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }

    fn enter(self: &Arc<Self>) -> InFlight {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        InFlight(Arc::clone(self))
    }
}

/// One call in flight; leaves the gauge when dropped (answered, cancelled or panicked).
struct InFlight(Arc<Gauge>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

type Script = dyn Fn(&TaskRequest, usize) -> Reply + Send + Sync;

/// A hand-written agent: its script maps (request, number of this call on this agent,
/// from 1) to a [`Reply`]. Type `AGENT`, one call at a time and `{}` at once unless
/// told otherwise.
pub struct TestAgent {
    descriptor: AgentDescriptor,
    clock: VirtualClock,
    script: Box<Script>,
    count: AtomicUsize,
    calls: CallLog,
    gauge: Arc<Gauge>,
}

impl fmt::Debug for TestAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestAgent")
            .field("descriptor", &self.descriptor)
            .finish_non_exhaustive()
    }
}

impl TestAgent {
    /// Agent `id` of type `AGENT`, waiting on `clock`.
    pub fn new(id: &str, clock: &VirtualClock) -> Self {
        Self {
            descriptor: AgentDescriptor::new(id, "AGENT"),
            clock: clock.clone(),
            script: Box::new(|_, _| Reply::ok(json!({}))),
            count: AtomicUsize::new(0),
            calls: CallLog::default(),
            gauge: Gauge::shared(),
        }
    }

    /// Sets the agent type.
    #[must_use]
    pub fn of_type(mut self, agent_type: &str) -> Self {
        self.descriptor.agent_type = agent_type.into();
        self
    }

    /// Sets how many calls the agent takes at once.
    #[must_use]
    pub fn capacity(mut self, max_concurrency: u32) -> Self {
        self.descriptor.max_concurrency = max_concurrency;
        self
    }

    /// Sets the capabilities.
    #[must_use]
    pub fn capabilities(mut self, capabilities: &[&str]) -> Self {
        self.descriptor = self
            .descriptor
            .with_capabilities(capabilities.iter().copied());
        self
    }

    /// Sets the weight.
    #[must_use]
    pub fn weight(mut self, weight: f64) -> Self {
        self.descriptor.weight = weight;
        self
    }

    /// Gives the agent a circuit breaker of its own.
    #[must_use]
    pub fn breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.descriptor = self.descriptor.with_circuit_breaker(breaker);
        self
    }

    /// Sets the script: (request, call number from 1) → reply.
    #[must_use]
    pub fn replies(
        mut self,
        script: impl Fn(&TaskRequest, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        self.script = Box::new(script);
        self
    }

    /// Answers `value` to every call.
    #[must_use]
    pub fn answers(self, value: Value) -> Self {
        self.replies(move |_, _| Reply::ok(value.clone()))
    }

    /// Writes calls to `log` (instead of a log of its own).
    #[must_use]
    pub fn logging_to(mut self, log: &CallLog) -> Self {
        self.calls = Arc::clone(log);
        self
    }

    /// Counts calls in flight on `gauge` (instead of a gauge of its own).
    #[must_use]
    pub fn counted_by(mut self, gauge: &Arc<Gauge>) -> Self {
        self.gauge = Arc::clone(gauge);
        self
    }

    /// Every call in its log, in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.calls).clone()
    }

    /// Its gauge.
    pub fn gauge(&self) -> &Gauge {
        &self.gauge
    }
}

#[async_trait::async_trait]
impl Agent for TestAgent {
    fn descriptor(&self) -> &AgentDescriptor {
        &self.descriptor
    }

    async fn execute(&self, request: TaskRequest) -> Result<Value, AgentError> {
        let number = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        lock(&self.calls).push(Call {
            agent: self.descriptor.id.to_string(),
            at: self.clock.now(),
            request: request.clone(),
        });
        let _in_flight = self.gauge.enter();
        let Reply { delay, outcome } = (self.script)(&request, number);
        if !delay.is_zero() {
            self.clock.sleep(delay).await;
        }
        match outcome {
            Outcome::Answer(value) => Ok(value),
            Outcome::Fail(kind, message) => Err(AgentError::new(kind, message)),
            Outcome::Panic(message) => panic!("{message}"),
            Outcome::Hang => futures::future::pending().await,
        }
    }
}

/// A virtual clock at [`t0`] and an engine on it that records every event.
pub struct Harness {
    /// The clock; drive runs with `clock.block_on`.
    pub clock: VirtualClock,
    /// The engine.
    pub engine: Engine,
    events: Arc<Mutex<Vec<RunEvent>>>,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    /// An engine with every setting at its default, but the clock.
    pub fn new() -> Self {
        Self::with(|builder| builder)
    }

    /// An engine configured by `configure` (clock and event recording already set).
    pub fn with(configure: impl FnOnce(EngineBuilder) -> EngineBuilder) -> Self {
        Self::on_clock(VirtualClock::starting_at(t0()), configure)
    }

    /// An engine on `clock` (shared with another harness, say: a restarted engine),
    /// configured by `configure` (clock and event recording already set).
    pub fn on_clock(
        clock: VirtualClock,
        configure: impl FnOnce(EngineBuilder) -> EngineBuilder,
    ) -> Self {
        let events: Arc<Mutex<Vec<RunEvent>>> = Arc::default();
        let sink = Arc::clone(&events);
        // Runs on the virtual clock are simulations: numbered, so reports do not change.
        let builder = Engine::builder()
            .clock(clock.clone())
            .run_ids(RunIds::Numbered)
            .on_event(move |event| lock(&sink).push(event.clone()));
        Self {
            engine: configure(builder).build(),
            clock,
            events,
        }
    }

    /// A new agent `id` on this harness's clock, not yet registered.
    pub fn agent(&self, id: &str) -> TestAgent {
        TestAgent::new(id, &self.clock)
    }

    /// Registers `agent`; the returned handle reads its calls.
    #[track_caller]
    pub fn register(&self, agent: TestAgent) -> Arc<TestAgent> {
        let agent = Arc::new(agent);
        self.engine
            .register_agent(Arc::clone(&agent) as Arc<dyn Agent>)
            .expect("the agent registers");
        agent
    }

    /// Registers an agent another harness registered too (the same agent after a
    /// restart); its calls keep one log.
    #[track_caller]
    pub fn register_shared(&self, agent: &Arc<TestAgent>) {
        self.engine
            .register_agent(Arc::clone(agent) as Arc<dyn Agent>)
            .expect("the agent registers");
    }

    /// Creates the workflow `definition` (which must be valid); returns its id.
    #[track_caller]
    pub fn workflow(&self, definition: &Value) -> String {
        let parsed = WorkflowDefinition::from_value(definition)
            .unwrap_or_else(|errors| panic!("invalid definition:\n{errors}\n{definition:#}"));
        self.engine
            .create_workflow(parsed)
            .unwrap_or_else(|error| panic!("{error}\n{definition:#}"))
            .id
    }

    /// Starts a run of `definition` (created first) with `options`.
    #[track_caller]
    pub fn start(&self, definition: &Value, options: RunOptions) -> Run {
        let id = self.workflow(definition);
        self.engine
            .start(&id, options)
            .expect("the workflow exists")
    }

    /// Runs `definition` with `input` to its end on the virtual clock.
    #[track_caller]
    pub fn run(&self, definition: &Value, input: Value) -> RunReport {
        self.run_with(definition, RunOptions::new(input))
    }

    /// Runs `definition` with `options` to its end on the virtual clock.
    #[track_caller]
    pub fn run_with(&self, definition: &Value, options: RunOptions) -> RunReport {
        let run = self.start(definition, options);
        self.clock.block_on(run)
    }

    /// Every event so far, in order.
    pub fn events(&self) -> Vec<RunEvent> {
        lock(&self.events).clone()
    }

    /// Virtual time elapsed since [`t0`].
    pub fn elapsed(&self) -> Duration {
        since_t0(self.clock.now())
    }
}

/// A new engine on `clock` and `store` with `agent` registered, which recovers the runs
/// a dropped engine left there and drives the first to its end (a restart).
#[track_caller]
pub fn recover_first(
    clock: &VirtualClock,
    store: &Arc<tradeflow::store::MemoryStore>,
    agent: &Arc<TestAgent>,
) -> RunReport {
    let second = Harness::on_clock(clock.clone(), |b| b.store(Arc::clone(store)));
    second.register_shared(agent);
    let runs = second.engine.recover().expect("the run recovers");
    clock.block_on(runs.into_iter().next().expect("one run"))
}

/// A `task` step run by an agent of `agent_type`, task type `TASK`, no parameters.
pub fn step_on(id: &str, agent_type: &str) -> Value {
    json!({
        "id": id,
        "type": "task",
        "agentCriteria": {"type": agent_type},
        "task": {"type": "TASK"}
    })
}

/// The report of step `id`; fails showing the whole report when there is none.
#[track_caller]
pub fn step<'r>(report: &'r RunReport, id: &str) -> &'r StepReport {
    report
        .step(id)
        .unwrap_or_else(|| panic!("no step `{id}` in\n{}", report.to_json_pretty()))
}

/// The skip reason of step `id`, empty when it has none.
#[track_caller]
pub fn reason<'r>(report: &'r RunReport, id: &str) -> &'r str {
    step(report, id).reason.as_deref().unwrap_or_default()
}

/// Every event `stream` holds now, without waiting.
pub fn drain(stream: &mut EventStream) -> Vec<RunEvent> {
    std::iter::from_fn(|| stream.try_recv().ok()).collect()
}

/// The ids of the steps of `events` that started waiting for approval.
pub fn waiting_steps(events: &[RunEvent]) -> Vec<StepId> {
    events
        .iter()
        .filter_map(|event| match event {
            RunEvent::StepWaiting { step_id, .. } => Some(step_id.clone()),
            _ => None,
        })
        .collect()
}

/// Drives `run` to its end on `clock`, approving (as `by`) each step of it that starts
/// waiting, as a person watching `events` would. `events` must have been subscribed
/// before the run started.
#[track_caller]
pub fn run_approving(
    clock: &VirtualClock,
    engine: &Engine,
    events: &mut EventStream,
    run: Run,
    by: &str,
) -> RunReport {
    run_answering(clock, engine, events, run, by, |_| true)
}

/// Drives `run` to its end on `clock`, answering (as `by`) each step of it that waits
/// when the run can go no further: approved when `approves` says so, else rejected.
/// `events` must have been subscribed before the run started.
#[track_caller]
pub fn run_answering(
    clock: &VirtualClock,
    engine: &Engine,
    events: &mut EventStream,
    mut run: Run,
    by: &str,
    approves: impl Fn(&StepId) -> bool,
) -> RunReport {
    // Steps that wait and have no answer yet (one may time out before the run stalls).
    let mut waiting: Vec<StepId> = Vec::new();
    loop {
        if let Poll::Ready(report) = clock.run_until_stalled(&mut run) {
            return report;
        }
        for event in drain(events) {
            match event {
                RunEvent::StepWaiting {
                    run_id, step_id, ..
                } if &run_id == run.id() => waiting.push(step_id),
                RunEvent::StepAnswered {
                    run_id, step_id, ..
                } if &run_id == run.id() => waiting.retain(|step| *step != step_id),
                _ => {}
            }
        }
        assert!(
            !waiting.is_empty(),
            "run `{}` stalled with no step waiting for approval",
            run.id()
        );
        for step in std::mem::take(&mut waiting) {
            let answer = if approves(&step) {
                Engine::approve
            } else {
                Engine::reject
            };
            answer(engine, run.id(), step.as_str(), by, None).expect("the step waits for approval");
        }
    }
}

/// Asserts that `report` ended with `status`, printing the whole report when it did not.
#[track_caller]
pub fn assert_status(report: &RunReport, status: RunStatus) {
    assert_eq!(report.status, status, "{}", report.to_json_pretty());
}

/// `approve` (a person, asked to approve `${input.amount}`), then `execute` with who
/// approved: the smallest workflow that waits for a person.
pub fn approval_then_execute() -> Value {
    json!({"id": "approval", "steps": [
        {"id": "approve", "type": "human_approval",
         "task": {"type": "APPROVAL_REQUEST", "parameters": {"amount": "${input.amount}"}}},
        {"id": "execute", "type": "task", "agentCriteria": {"type": "AGENT"},
         "task": {"type": "TASK", "parameters": {"approvedBy": "${approve.output.approvedBy}"}}},
    ]})
}

/// The agent of [`approval_then_execute`]'s `execute`: answers with who approved.
pub fn executor(clock: &VirtualClock) -> Arc<TestAgent> {
    Arc::new(TestAgent::new("exec-1", clock).replies(|request, _| {
        Reply::ok(json!({"executed": true, "by": request.parameters["approvedBy"]}))
    }))
}
