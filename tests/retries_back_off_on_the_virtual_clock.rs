//! Retries: `TEMPORARY` and `TIMEOUT` failures are retried while the step's calls are
//! fewer than `maxAttempts` (default 4), `PERMANENT` never; retry n waits
//! `initialDelayMs × backoffMultiplier^(n−1)` capped at `maxDelayMs`, drawn from
//! `[d × (1 − jitter), d]` with the run's seeded RNG; `AGENT_UNAVAILABLE` moves to another
//! eligible agent at once; a step no agent can take fails `NO_AGENT`, unretried.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::engine::{Harness, Reply, TestAgent, assert_status, ms, step};
use support::{task_with, with, workflow};
use tradeflow::agent::AgentErrorKind;
use tradeflow::engine::{FailureKind, RunEvent, RunOptions, RunStatus, StepStatus};

/// One step `trade` with this retry policy (none when null).
fn trade(retry_policy: Value) -> Value {
    let step = task_with("trade", json!({"symbol": "AAPL"}));
    if retry_policy.is_null() {
        workflow([step])
    } else {
        workflow([with(step, json!({"retryPolicy": retry_policy}))])
    }
}

fn call_times(agent: &TestAgent) -> Vec<Duration> {
    agent.calls().iter().map(|call| call.since_t0()).collect()
}

/// The `(attempt, kind, delay_ms)` of every retry event.
fn retries(h: &Harness) -> Vec<(u32, FailureKind, u64)> {
    h.events()
        .iter()
        .filter_map(|event| match event {
            RunEvent::StepRetrying {
                attempt,
                kind,
                delay_ms,
                ..
            } => Some((*attempt, *kind, *delay_ms)),
            _ => None,
        })
        .collect()
}

#[test]
fn temporary_failures_are_retried_with_exponential_backoff() {
    let h = Harness::new();
    let agent = h.register(
        h.agent("a-1")
            .replies(|_, _| Reply::temporary("venue busy")),
    );
    let policy = json!({"maxAttempts": 3, "initialDelayMs": 100, "backoffMultiplier": 2});

    let report = h.run(&trade(policy), json!({}));

    assert_status(&report, RunStatus::Failed);
    let trade = step(&report, "trade");
    assert_eq!(trade.status, StepStatus::Failed);
    assert_eq!(trade.attempts, Some(3));
    let error = trade.error.as_ref().expect("an error");
    assert_eq!(error.kind, FailureKind::Temporary);
    assert!(error.message.contains("venue busy"), "{}", error.message);
    assert_eq!(call_times(&agent), [ms(0), ms(100), ms(300)]);
    let attempts: Vec<u32> = agent
        .calls()
        .iter()
        .map(|call| call.request.attempt)
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert_eq!(
        retries(&h),
        [
            (1, FailureKind::Temporary, 100),
            (2, FailureKind::Temporary, 200)
        ]
    );
    assert_eq!(h.elapsed(), ms(300));
}

#[test]
fn a_retry_that_succeeds_completes_the_step() {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1").replies(|_, n| {
        if n < 3 {
            Reply::temporary("venue busy").after_ms(10)
        } else {
            Reply::ok(json!({"filled": true})).after_ms(10)
        }
    }));
    let policy = json!({"maxAttempts": 5, "initialDelayMs": 100, "backoffMultiplier": 3});

    let report = h.run(&trade(policy), json!({}));

    assert_status(&report, RunStatus::Completed);
    let trade = step(&report, "trade");
    assert_eq!(trade.attempts, Some(3));
    assert_eq!(trade.output, Some(json!({"filled": true})));
    // 10 ms call, 100 ms wait, 10 ms call, 300 ms wait, 10 ms call.
    assert_eq!(call_times(&agent), [ms(0), ms(110), ms(420)]);
    assert_eq!(h.elapsed(), ms(430));
}

#[test]
fn timeout_failures_are_retried_like_temporary_ones() {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1").replies(|_, n| {
        if n == 1 {
            Reply::fail(AgentErrorKind::Timeout, "upstream slow")
        } else {
            Reply::ok(json!({}))
        }
    }));

    let report = h.run(&trade(json!({"initialDelayMs": 50})), json!({}));

    assert_eq!(report.status, RunStatus::Completed);
    assert_eq!(call_times(&agent), [ms(0), ms(50)]);
    assert_eq!(retries(&h), [(1, FailureKind::Timeout, 50)]);
}

#[test]
fn permanent_failures_are_never_retried() {
    let h = Harness::new();
    let agent = h.register(
        h.agent("a-1")
            .replies(|_, _| Reply::permanent("unknown symbol")),
    );

    let report = h.run(&trade(json!({"maxAttempts": 5})), json!({}));

    assert_eq!(report.status, RunStatus::Failed);
    let trade = step(&report, "trade");
    assert_eq!(trade.attempts, Some(1));
    assert_eq!(
        trade.error.as_ref().map(|error| error.kind),
        Some(FailureKind::Permanent)
    );
    assert_eq!(agent.calls().len(), 1);
    assert!(retries(&h).is_empty());
    assert_eq!(h.elapsed(), ms(0));
}

#[test]
fn the_default_policy_makes_four_calls_a_second_apart_doubling() {
    let h = Harness::new();
    let agent = h.register(
        h.agent("a-1")
            .replies(|_, _| Reply::temporary("venue busy")),
    );

    let report = h.run(&trade(Value::Null), json!({}));

    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(step(&report, "trade").attempts, Some(4));
    assert_eq!(call_times(&agent), [ms(0), ms(1000), ms(3000), ms(7000)]);
}

#[test]
fn the_workflow_retry_policy_is_the_default_of_its_steps() {
    let h = Harness::new();
    let agent = h.register(
        h.agent("a-1")
            .replies(|_, _| Reply::temporary("venue busy")),
    );
    let definition = with(
        trade(Value::Null),
        json!({"errorHandling": {"retryPolicy": {"maxAttempts": 2, "initialDelayMs": 10}}}),
    );

    let report = h.run(&definition, json!({}));

    assert_eq!(step(&report, "trade").attempts, Some(2));
    assert_eq!(call_times(&agent), [ms(0), ms(10)]);
}

#[test]
fn delays_are_capped_at_max_delay() {
    let h = Harness::new();
    let agent = h.register(
        h.agent("a-1")
            .replies(|_, _| Reply::temporary("venue busy")),
    );
    let policy = json!({"maxAttempts": 4, "initialDelayMs": 100, "backoffMultiplier": 10,
                        "maxDelayMs": 500});

    h.run(&trade(policy), json!({}));

    assert_eq!(call_times(&agent), [ms(0), ms(100), ms(600), ms(1100)]);
}

/// The waits between the calls of a run whose step always fails temporarily, with
/// jitter 0.5 on delays of 1, 2, 4, 8 and 16 s (the circuit breaker off: its default
/// would open after the fifth failure and hold the sixth call for 30 s).
fn jittered_waits(seed: u64) -> Vec<Duration> {
    let h = Harness::with(|engine| engine.circuit_breaker(None));
    let agent = h.register(
        h.agent("a-1")
            .replies(|_, _| Reply::temporary("venue busy")),
    );
    let policy = json!({"maxAttempts": 6, "initialDelayMs": 1000, "backoffMultiplier": 2,
                        "maxDelayMs": 60000, "jitter": 0.5});
    let report = h.run_with(&trade(policy), RunOptions::new(json!({})).seed(seed));
    assert_eq!(step(&report, "trade").attempts, Some(6));
    let times = call_times(&agent);
    times.windows(2).map(|pair| pair[1] - pair[0]).collect()
}

#[test]
fn jitter_draws_each_delay_within_its_range() {
    let waits = jittered_waits(7);

    assert_eq!(waits.len(), 5);
    let full = [1000, 2000, 4000, 8000, 16000].map(ms);
    for (wait, d) in waits.iter().zip(full) {
        assert!(
            (d / 2..=d).contains(wait),
            "a wait of {wait:?} is outside [{:?}, {d:?}]: {waits:?}",
            d / 2
        );
    }
    assert_ne!(waits, full, "jitter changed no delay");
}

#[test]
fn jitter_is_the_same_for_the_same_seed() {
    assert_eq!(jittered_waits(7), jittered_waits(7));
    assert_ne!(jittered_waits(7), jittered_waits(8));
}

#[test]
fn an_unavailable_agent_hands_the_call_to_another_at_once() {
    let h = Harness::new();
    // `u-1` scores higher (it has the preferred capability), so it is called first.
    let unavailable = h.register(
        h.agent("u-1")
            .capabilities(&["primary"])
            .replies(|_, _| Reply::fail(AgentErrorKind::AgentUnavailable, "maintenance")),
    );
    let backup = h.register(h.agent("u-2").answers(json!({"filled": true})));
    let definition = workflow([with(
        task_with("trade", json!({})),
        json!({"agentCriteria": {"type": "AGENT", "preferredCapabilities": ["primary"]},
               "retryPolicy": {"initialDelayMs": 1000}}),
    )]);

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Completed);
    let trade = step(&report, "trade");
    assert_eq!(trade.agent_id.as_ref().map(|id| id.as_str()), Some("u-2"));
    assert_eq!(trade.attempts, Some(2));
    assert_eq!(call_times(&unavailable), [ms(0)]);
    assert_eq!(
        call_times(&backup),
        [ms(0)],
        "no back-off before another agent"
    );
    assert_eq!(retries(&h), [(1, FailureKind::AgentUnavailable, 0)]);
}

#[test]
fn an_unavailable_sole_agent_is_retried_after_the_delay() {
    let h = Harness::new();
    let agent = h.register(h.agent("u-1").replies(|_, n| {
        if n == 1 {
            Reply::fail(AgentErrorKind::AgentUnavailable, "maintenance")
        } else {
            Reply::ok(json!({}))
        }
    }));

    let report = h.run(&trade(json!({"initialDelayMs": 250})), json!({}));

    assert_eq!(report.status, RunStatus::Completed);
    assert_eq!(call_times(&agent), [ms(0), ms(250)]);
}

#[test]
fn a_step_no_agent_can_take_fails_no_agent_unretried() {
    let h = Harness::new();
    let bystander = h.register(h.agent("a-1"));
    let definition = workflow([with(
        task_with("trade", json!({})),
        json!({"agentCriteria": {"type": "TRADING_EXECUTION"}, "retryPolicy": {"maxAttempts": 5}}),
    )]);

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Failed);
    let trade = step(&report, "trade");
    assert_eq!(trade.status, StepStatus::Failed);
    let error = trade.error.as_ref().expect("an error");
    assert_eq!(error.kind, FailureKind::NoAgent);
    assert!(error.message.contains("trade"), "{}", error.message);
    assert_eq!(
        report.error.as_ref().map(|error| error.kind),
        Some(FailureKind::NoAgent)
    );
    assert!(retries(&h).is_empty());
    assert!(bystander.calls().is_empty());
    assert_eq!(h.elapsed(), ms(0));
}

#[test]
fn a_missing_required_capability_is_no_agent_too() {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1").capabilities(&["twap"]));
    let definition = workflow([with(
        task_with("trade", json!({})),
        json!({"agentCriteria": {"type": "AGENT", "requiredCapabilities": ["twap", "dark-pool"]}}),
    )]);

    let report = h.run(&definition, json!({}));

    assert_eq!(
        step(&report, "trade")
            .error
            .as_ref()
            .map(|error| error.kind),
        Some(FailureKind::NoAgent)
    );
    assert!(agent.calls().is_empty());
}

#[test]
fn leaving_retry_out_of_the_strategies_or_weighting_it_zero_turns_retries_off() {
    for handling in [
        json!({"strategies": ["SKIP", "SUBSTITUTE"]}),
        json!({"strategyWeights": {"RETRY": 0}}),
    ] {
        let h = Harness::new();
        let agent = h.register(h.agent("a-1").replies(|_, _| Reply::temporary("busy")));
        let definition = json!({"id": "w", "steps": [with(
            task_with("trade", json!({})),
            json!({"retryPolicy": {"maxAttempts": 5, "initialDelayMs": 10},
                   "errorHandling": handling}),
        )]});
        let report = h.run(&definition, json!({}));
        assert_status(&report, RunStatus::Failed);
        assert_eq!(agent.calls().len(), 1, "{handling}: one call, no retry");
        assert_eq!(step(&report, "trade").attempts, Some(1));
    }
}
