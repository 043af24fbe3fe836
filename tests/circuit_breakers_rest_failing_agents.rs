//! Circuit breakers: after `failures` consecutive failed calls (default 5) an agent is
//! open, not selected, for `openMs` (default 30 s) of the engine's clock; then one probe
//! call is let through, whose success closes the breaker and whose failure opens it for
//! another period. Changes are run events. A step whose only agents are open waits for
//! the probe while its timeout allows, then fails `NO_AGENT`. Settings: the engine's
//! default, an agent's own (its descriptor, or `circuitBreaker` in an agents file).

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures::future::join;
use serde_json::{Value, json};
use support::engine::{Harness, Reply, TestAgent, assert_status, at_ms, ms, step};
use support::{location, with};
use tradeflow::agent::{Agent, AgentErrorKind, AgentId, CircuitBreaker, CircuitState, Outcome};
use tradeflow::clock::Clock;
use tradeflow::definition::DefinitionError;
use tradeflow::engine::{FailureKind, RunEvent, RunOptions, RunStatus, StepStatus};
use tradeflow::sim::{AgentsFile, scripted_agents};

/// One step `trade`, preferring agents with capability `fast`, with these extra fields
/// (a retry policy, a timeout). Self-healing may only retry: it moves the step to no
/// other agent, so only selection (and the breakers) choose agents.
fn trade(fields: Value) -> Value {
    let step = json!({
        "id": "trade",
        "type": "task",
        "agentCriteria": {"type": "AGENT", "preferredCapabilities": ["fast"]},
        "task": {"type": "TASK"},
        "errorHandling": {"strategies": ["RETRY"]}
    });
    json!({"id": "w", "steps": [with(step, fields)]})
}

/// `trade` with `maxAttempts` calls 100 ms apart.
fn trade_retrying(max_attempts: u32) -> Value {
    trade(
        json!({"retryPolicy": {"maxAttempts": max_attempts, "initialDelayMs": 100,
                                 "backoffMultiplier": 1}}),
    )
}

/// `trade` with a single call.
fn trade_once() -> Value {
    trade_retrying(1)
}

/// An engine whose breakers open after `failures` for `open_ms`.
fn harness(failures: u32, open_ms: u64) -> Harness {
    Harness::with(|engine| engine.circuit_breaker(CircuitBreaker::new(failures, ms(open_ms))))
}

/// `flaky` (capability `fast`, so it outscores `steady` however often it fails) runs
/// `script`; `steady` always answers.
fn flaky_and_steady(
    h: &Harness,
    script: impl Fn(usize) -> Reply + Send + Sync + 'static,
) -> (Arc<TestAgent>, Arc<TestAgent>) {
    let flaky = h.register(
        h.agent("flaky")
            .capabilities(&["fast"])
            .replies(move |_, n| script(n)),
    );
    let steady = h.register(h.agent("steady").answers(json!({"by": "steady"})));
    (flaky, steady)
}

fn id(agent: &str) -> AgentId {
    AgentId::from(agent)
}

fn circuit(h: &Harness, agent: &str) -> CircuitState {
    h.engine
        .registry()
        .circuit(&id(agent))
        .expect("the agent is registered")
}

/// The agent of each call, in order, across `agents`.
fn callers(agents: &[&Arc<TestAgent>]) -> Vec<(String, Duration)> {
    let mut calls: Vec<_> = agents
        .iter()
        .flat_map(|agent| agent.calls())
        .map(|call| (call.since_t0(), call.agent))
        .collect();
    calls.sort();
    calls.into_iter().map(|(at, agent)| (agent, at)).collect()
}

/// The circuit events so far, in order, as short strings.
fn circuit_events(h: &Harness) -> Vec<String> {
    h.events()
        .iter()
        .filter_map(|event| match event {
            RunEvent::CircuitOpened {
                step_id,
                agent_id,
                failures,
                until,
                at,
                ..
            } => Some(format!(
                "{step_id}: {agent_id} opened at {:?} until {:?} after {failures}",
                since(*at),
                since(*until)
            )),
            RunEvent::CircuitHalfOpen { agent_id, at, .. } => {
                Some(format!("{agent_id} half open at {:?}", since(*at)))
            }
            RunEvent::CircuitClosed { agent_id, at, .. } => {
                Some(format!("{agent_id} closed at {:?}", since(*at)))
            }
            _ => None,
        })
        .collect()
}

fn since(at: chrono::DateTime<chrono::Utc>) -> Duration {
    support::engine::since_t0(at)
}

#[test]
fn a_failing_agent_is_left_alone_and_its_calls_go_to_the_other_agent() {
    let h = harness(3, 10_000);
    let (flaky, steady) = flaky_and_steady(&h, |_| Reply::temporary("venue down"));

    let first = h.run(&trade_retrying(5), json!({}));
    let second = h.run(&trade_once(), json!({}));

    assert_status(&first, RunStatus::Completed);
    assert_eq!(step(&first, "trade").agent_id, Some(id("steady")));
    assert_eq!(step(&first, "trade").attempts, Some(4));
    assert_status(&second, RunStatus::Completed);
    assert_eq!(step(&second, "trade").agent_id, Some(id("steady")));
    assert_eq!(
        callers(&[&flaky, &steady]),
        [
            ("flaky".to_owned(), ms(0)),
            ("flaky".to_owned(), ms(100)),
            ("flaky".to_owned(), ms(200)),
            ("steady".to_owned(), ms(300)),
            ("steady".to_owned(), ms(300)),
        ]
    );
    assert_eq!(
        circuit_events(&h),
        ["trade: flaky opened at 200ms until 10.2s after 3"]
    );
    assert_eq!(
        circuit(&h, "flaky"),
        CircuitState::Open {
            failures: 3,
            until: at_ms(10_200)
        }
    );
    assert_eq!(circuit(&h, "steady"), CircuitState::Closed { failures: 0 });
}

#[test]
fn without_breakers_the_failing_agent_keeps_its_calls() {
    let h = Harness::with(|engine| engine.circuit_breaker(None));
    let (flaky, steady) = flaky_and_steady(&h, |_| Reply::temporary("venue down"));

    let report = h.run(&trade_retrying(5), json!({}));

    assert_status(&report, RunStatus::Failed);
    assert_eq!(flaky.calls().len(), 5);
    assert!(steady.calls().is_empty());
    assert!(circuit_events(&h).is_empty());
    assert_eq!(circuit(&h, "flaky"), CircuitState::Off);
}

#[test]
fn an_open_agent_is_probed_after_open_ms_and_closes_when_it_answers() {
    let h = harness(3, 10_000);
    let (flaky, steady) = flaky_and_steady(&h, |n| {
        if n <= 3 {
            Reply::temporary("venue down")
        } else {
            Reply::ok(json!({"by": "flaky"})).after_ms(40)
        }
    });
    h.run(&trade_retrying(5), json!({}));

    // Still open a millisecond before the period ends.
    h.clock.advance_to(at_ms(10_199));
    let before = h.run(&trade_once(), json!({}));
    h.clock.advance_to(at_ms(10_200));
    let probe = h.run(&trade_once(), json!({}));
    let after = h.run(&trade_once(), json!({}));

    assert_eq!(step(&before, "trade").agent_id, Some(id("steady")));
    assert_eq!(step(&probe, "trade").agent_id, Some(id("flaky")));
    assert_eq!(step(&probe, "trade").output, Some(json!({"by": "flaky"})));
    assert_eq!(step(&after, "trade").agent_id, Some(id("flaky")));
    assert_eq!(
        circuit_events(&h),
        [
            "trade: flaky opened at 200ms until 10.2s after 3",
            "flaky half open at 10.2s",
            "flaky closed at 10.24s",
        ]
    );
    assert_eq!(circuit(&h, "flaky"), CircuitState::Closed { failures: 0 });
    assert_eq!(flaky.calls().len(), 5);
    assert_eq!(steady.calls().len(), 2);
    // The probe is announced before its call starts.
    let events = h.events();
    let half_open = events
        .iter()
        .position(|event| matches!(event, RunEvent::CircuitHalfOpen { .. }))
        .unwrap();
    assert!(matches!(
        &events[half_open + 1],
        RunEvent::StepStarted { agent_id, .. } if *agent_id == "flaky"
    ));
}

#[test]
fn a_failed_probe_opens_the_breaker_for_another_period() {
    let h = harness(3, 10_000);
    let (flaky, steady) = flaky_and_steady(&h, |_| Reply::temporary("venue down"));
    h.run(&trade_retrying(5), json!({}));

    h.clock.advance_to(at_ms(10_200));
    let report = h.run(&trade_retrying(2), json!({}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(step(&report, "trade").agent_id, Some(id("steady")));
    assert_eq!(
        circuit_events(&h),
        [
            "trade: flaky opened at 200ms until 10.2s after 3",
            "flaky half open at 10.2s",
            "trade: flaky opened at 10.2s until 20.2s after 4",
        ]
    );
    assert_eq!(flaky.calls().len(), 4);
    assert_eq!(steady.calls().len(), 2);
}

#[test]
fn only_one_probe_is_let_through_at_a_time() {
    // Four slots, so only the breaker can keep the second call waiting.
    let h = harness(1, 1_000);
    let agent = h.register(h.agent("only").capacity(4).replies(|_, n| {
        if n == 1 {
            Reply::temporary("venue down")
        } else {
            Reply::ok(json!({})).after_ms(500)
        }
    }));
    h.run(&trade_once(), json!({}));

    let a = h.start(&trade_once(), RunOptions::new(json!({})));
    let b = h.start(&trade_once(), RunOptions::new(json!({})));
    let (a, b) = h.clock.block_on(join(a, b));

    assert_status(&a, RunStatus::Completed);
    assert_status(&b, RunStatus::Completed);
    let times: Vec<Duration> = agent.calls().iter().map(|call| call.since_t0()).collect();
    assert_eq!(times, [ms(0), ms(1_000), ms(1_500)]);
    assert_eq!(agent.gauge().max(), 1);
    assert_eq!(
        circuit_events(&h),
        [
            "trade: only opened at 0ns until 1s after 1",
            "only half open at 1s",
            "only closed at 1.5s",
        ]
    );
}

/// An engine with one agent, `only`, whose breaker opens after 2 failures for 10 s,
/// opened at t0 by two failed runs; its later calls answer.
fn opened_only_agent() -> (Harness, Arc<TestAgent>) {
    let h = harness(2, 10_000);
    let agent = h.register(h.agent("only").replies(|_, n| {
        if n <= 2 {
            Reply::temporary("venue down")
        } else {
            Reply::ok(json!({"filled": true}))
        }
    }));
    for _ in 0..2 {
        assert_status(&h.run(&trade_once(), json!({})), RunStatus::Failed);
    }
    assert!(matches!(circuit(&h, "only"), CircuitState::Open { .. }));
    (h, agent)
}

#[test]
fn a_step_whose_only_agent_is_open_waits_for_the_probe_within_its_timeout() {
    let (h, agent) = opened_only_agent();

    let report = h.run(&trade(json!({"timeout": 15_000})), json!({}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(step(&report, "trade").attempts, Some(1));
    assert_eq!(step(&report, "trade").output, Some(json!({"filled": true})));
    assert_eq!(
        agent.calls().last().map(|call| call.since_t0()),
        Some(ms(10_000))
    );
    assert_eq!(h.elapsed(), ms(10_000));
    assert_eq!(circuit(&h, "only"), CircuitState::Closed { failures: 0 });
}

#[test]
fn a_step_without_a_timeout_waits_for_the_probe_however_long() {
    let (h, agent) = opened_only_agent();

    let report = h.run(&trade_once(), json!({}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(agent.calls().len(), 3);
    assert_eq!(h.elapsed(), ms(10_000));
}

#[test]
fn a_step_whose_only_agent_stays_open_past_its_timeout_fails_no_agent() {
    let (h, agent) = opened_only_agent();

    let report = h.run(&trade(json!({"timeout": 4_000})), json!({}));

    assert_status(&report, RunStatus::Failed);
    let trade = step(&report, "trade");
    assert_eq!(trade.status, StepStatus::Failed);
    let error = trade.error.as_ref().expect("an error");
    assert_eq!(error.kind, FailureKind::NoAgent);
    assert!(
        error.message.contains("open circuit breaker"),
        "{}",
        error.message
    );
    assert_eq!(agent.calls().len(), 2, "no call is made");
    assert_eq!(h.elapsed(), ms(4_000));
    // The breaker is still open, and probes at 10 s as before.
    assert!(matches!(circuit(&h, "only"), CircuitState::Open { .. }));
}

#[test]
fn by_default_five_failures_in_a_row_open_a_breaker_for_thirty_seconds() {
    let h = Harness::new();
    let agent = h.register(h.agent("only").replies(|_, _| Reply::temporary("down")));

    h.run(&trade_retrying(5), json!({}));

    assert_eq!(CircuitBreaker::DEFAULT, CircuitBreaker::new(5, ms(30_000)));
    assert_eq!(agent.calls().len(), 5);
    assert_eq!(
        circuit_events(&h),
        ["trade: only opened at 400ms until 30.4s after 5"]
    );
}

#[test]
fn a_success_between_failures_starts_the_count_again() {
    let h = harness(3, 10_000);
    // Fail, fail, answer, fail, fail: never three in a row.
    let agent = h.register(h.agent("only").replies(|_, n| {
        if n == 3 {
            Reply::ok(json!({}))
        } else {
            Reply::temporary("down")
        }
    }));

    for _ in 0..5 {
        h.run(&trade_once(), json!({}));
    }

    assert_eq!(agent.calls().len(), 5);
    assert!(circuit_events(&h).is_empty());
    assert_eq!(circuit(&h, "only"), CircuitState::Closed { failures: 2 });
}

#[test]
fn an_agents_own_breaker_applies_even_with_the_engine_default_off() {
    let h = Harness::with(|engine| engine.circuit_breaker(None));
    h.register(
        h.agent("own")
            .breaker(CircuitBreaker::new(2, ms(1_000)))
            .replies(|_, _| Reply::permanent("bad session")),
    );
    h.register(
        h.agent("plain")
            .of_type("OTHER")
            .replies(|_, _| Reply::temporary("down")),
    );

    for _ in 0..2 {
        h.run(&trade_once(), json!({}));
    }

    // Every kind of failure counts, `PERMANENT` included.
    assert_eq!(
        circuit_events(&h),
        ["trade: own opened at 0ns until 1s after 2"]
    );
    assert_eq!(circuit(&h, "plain"), CircuitState::Off);
}

#[test]
fn a_call_cut_off_by_its_timeout_counts_and_one_the_engine_cancels_does_not() {
    let h = harness(1, 10_000);
    h.register(h.agent("slow").replies(|_, _| Reply::hang()));
    h.register(
        h.agent("hung")
            .of_type("HUNG")
            .replies(|_, _| Reply::hang()),
    );
    h.register(
        h.agent("failing")
            .of_type("FAILING")
            .replies(|_, _| Reply::permanent("rejected")),
    );

    let timed_out = h.run(
        &trade(json!({"timeout": 500, "retryPolicy": {"maxAttempts": 1}})),
        json!({}),
    );
    // `failing` fails at once and stops the run, which cancels `hung`'s call.
    let stopped = json!({"id": "stop", "dependencies": [], "steps": [
        {"id": "wait", "type": "task", "agentCriteria": {"type": "HUNG"}, "task": {"type": "TASK"}},
        {"id": "fail", "type": "task", "agentCriteria": {"type": "FAILING"},
         "task": {"type": "TASK"}, "retryPolicy": {"maxAttempts": 1}}
    ]});
    let cancelled = h.run(&stopped, json!({}));

    assert_eq!(
        step(&timed_out, "trade")
            .error
            .as_ref()
            .map(|error| error.kind),
        Some(FailureKind::Timeout)
    );
    assert_eq!(step(&cancelled, "wait").status, StepStatus::Cancelled);
    assert_eq!(
        circuit_events(&h),
        [
            "trade: slow opened at 500ms until 10.5s after 1",
            "fail: failing opened at 500ms until 10.5s after 1",
        ]
    );
    assert_eq!(circuit(&h, "hung"), CircuitState::Closed { failures: 0 });
}

#[test]
fn self_healing_does_not_substitute_an_agent_whose_breaker_is_open() {
    let h = harness(2, 10_000);
    let (flaky, steady) = flaky_and_steady(&h, |_| Reply::permanent("order rejected"));
    // `steady` failed twice elsewhere (another engine's runs, say): open for 10 s.
    for _ in 0..2 {
        let failed = Outcome::Failure {
            kind: AgentErrorKind::Temporary,
            latency: Duration::ZERO,
        };
        h.engine
            .registry()
            .record(&id("steady"), &"TASK".into(), failed);
    }
    assert!(matches!(circuit(&h, "steady"), CircuitState::Open { .. }));
    let substituting = trade(json!({"retryPolicy": {"maxAttempts": 1},
                                    "errorHandling": {"strategies": ["SUBSTITUTE"]}}));

    let report = h.run(&substituting, json!({}));

    // Not moved to `steady` (which would have waited 10 s for its probe): failed at once.
    assert_status(&report, RunStatus::Failed);
    assert_eq!(
        step(&report, "trade")
            .error
            .as_ref()
            .map(|error| error.kind),
        Some(FailureKind::Permanent)
    );
    assert!(step(&report, "trade").recoveries.is_empty());
    assert_eq!(flaky.calls().len(), 1);
    assert!(steady.calls().is_empty());
    assert_eq!(h.elapsed(), ms(0));
}

const FLAKY_VENUE: &str = r#"{
    "agents": [
        {"id": "venue-1", "type": "AGENT",
         "circuitBreaker": {"failures": 2, "openMs": 1000},
         "tasks": {"TASK": {"output": {"filled": true},
                            "fail": {"times": 2, "kind": "TEMPORARY", "message": "venue down"}}}}
    ]
}"#;

#[test]
fn the_agents_file_circuit_breaker_overrides_the_engine_default() {
    let file = AgentsFile::from_json(FLAKY_VENUE).expect("a valid agents file");
    assert_eq!(
        file.agents[0].circuit_breaker,
        Some(CircuitBreaker::new(2, ms(1_000)))
    );
    let h = Harness::new();
    let clock: Arc<dyn Clock> = Arc::new(h.clock.clone());
    for agent in scripted_agents(&file, clock) {
        h.engine.register_agent(agent as Arc<dyn Agent>).unwrap();
    }

    let failed: Vec<RunStatus> = (0..2)
        .map(|_| h.run(&trade_once(), json!({})).status)
        .collect();
    let waited = h.run(&trade_once(), json!({}));

    assert_eq!(failed, [RunStatus::Failed, RunStatus::Failed]);
    // Two failures and a second (not five and thirty seconds, the engine's default).
    assert_status(&waited, RunStatus::Completed);
    assert_eq!(h.elapsed(), ms(1_000));
    assert_eq!(
        circuit_events(&h),
        [
            "trade: venue-1 opened at 0ns until 1s after 2",
            "venue-1 half open at 1s",
            "venue-1 closed at 1s",
        ]
    );
}

#[test]
fn a_malformed_circuit_breaker_in_the_agents_file_is_rejected_with_its_location() {
    let json = r#"{
        "agents": [
            {"id": "venue-1", "type": "AGENT", "circuitBreaker": {"failures": 0}, "tasks": {}},
            {"id": "venue-2", "type": "AGENT", "circuitBreaker": {"openMs": "soon"}, "tasks": {}},
            {"id": "venue-3", "type": "AGENT", "circuitBreaker": {"opnMs": 5}, "tasks": {}},
            {"id": "venue-4", "type": "AGENT",
             "circuitBreaker": {"openMs": 4000000000000}, "tasks": {}}
        ]
    }"#;

    let errors = AgentsFile::from_json(json).unwrap_err().into_vec();

    let found: Vec<(String, String)> = errors
        .iter()
        .map(|error| (location(error), error.to_string()))
        .collect();
    assert_eq!(errors.len(), 4, "{found:#?}");
    assert!(matches!(
        &errors[0],
        DefinitionError::InvalidValue { value, .. } if value == "0"
    ));
    assert_eq!(
        found,
        [
            (
                "agents[0].circuitBreaker.failures".to_owned(),
                "agents[0].circuitBreaker.failures: invalid value 0: the circuit breaker of \
                 agent `venue-1` opens after at least 1 failure"
                    .to_owned()
            ),
            (
                "agents[1].circuitBreaker.openMs".to_owned(),
                "agents[1].circuitBreaker.openMs: invalid type: found string \"soon\", \
                 expected u64"
                    .to_owned()
            ),
            (
                "agents[2].circuitBreaker".to_owned(),
                "agents[2].circuitBreaker: unknown field `opnMs` (did you mean `openMs`?)"
                    .to_owned()
            ),
            (
                "agents[3].circuitBreaker.openMs".to_owned(),
                "agents[3].circuitBreaker.openMs: invalid value 4000000000000: the circuit \
                 breaker of agent `venue-4` stays open at most 3155760000000 ms (100 years)"
                    .to_owned()
            ),
        ]
    );
}
