//! Misbehaving agents: a panic fails that attempt, contained (retried as a `TEMPORARY`
//! failure would be, reported with kind `PANIC`), without touching other steps or runs;
//! an output larger than the engine's `max_output_bytes` fails the step with kind
//! `INVALID_OUTPUT`, naming it, unretried.

mod support;

use futures::future::join;
use serde_json::json;
use support::engine::{Harness, Reply, assert_status, ms, step};
use support::{task_with, with, workflow};
use tradeflow::engine::{FailureKind, RunEvent, RunOptions, RunStatus, StepStatus};

#[test]
fn a_panic_fails_the_attempt_and_a_retry_can_succeed() {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1").replies(|_, n| {
        if n == 1 {
            Reply::panic("index out of bounds in the pricing model")
        } else {
            Reply::ok(json!({"price": 101.5}))
        }
    }));
    let definition = workflow([with(
        task_with("price", json!({})),
        json!({"retryPolicy": {"maxAttempts": 2, "initialDelayMs": 10}}),
    )]);

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Completed);
    let price = step(&report, "price");
    assert_eq!(price.attempts, Some(2));
    assert_eq!(price.output, Some(json!({"price": 101.5})));
    assert_eq!(agent.calls().len(), 2);
    assert_eq!(agent.gauge().now(), 0, "the panicked call left the gauge");
    assert!(h.events().iter().any(|event| matches!(
        event,
        RunEvent::StepRetrying { attempt: 1, kind: FailureKind::Panic, message, delay_ms: 10, .. }
            if message.contains("index out of bounds in the pricing model")
    )));
}

#[test]
fn a_panic_on_the_last_attempt_fails_the_step_as_a_panic() {
    let h = Harness::new();
    h.register(h.agent("a-1").replies(|_, _| Reply::panic("model crashed")));
    let definition = workflow([with(
        task_with("price", json!({})),
        json!({"retryPolicy": {"maxAttempts": 1}}),
    )]);

    let report = h.run(&definition, json!({}));

    assert_eq!(report.status, RunStatus::Failed);
    let price = step(&report, "price");
    assert_eq!(price.status, StepStatus::Failed);
    let error = price.error.as_ref().expect("an error");
    assert_eq!(error.kind, FailureKind::Panic);
    assert!(error.message.contains("panicked"), "{}", error.message);
    assert!(error.message.contains("model crashed"), "{}", error.message);
    assert!(error.message.contains("price"), "{}", error.message);
}

#[test]
fn a_panic_in_one_run_leaves_other_runs_alone() {
    let h = Harness::new();
    h.register(
        h.agent("crash-1")
            .of_type("CRASHY")
            .replies(|_, _| Reply::panic("boom").after_ms(50)),
    );
    let steady = h.register(
        h.agent("steady-1")
            .of_type("STEADY")
            .replies(|_, n| Reply::ok(json!({"n": n})).after_ms(100)),
    );
    let on = |id: &str, agent_type: &str| {
        json!({"id": id, "type": "task", "agentCriteria": {"type": agent_type},
               "task": {"type": "TASK"}, "retryPolicy": {"maxAttempts": 2, "initialDelayMs": 10}})
    };
    let crashing = json!({"id": "crashing", "steps": [on("crash", "CRASHY")]});
    let calm = json!({"id": "calm", "steps": [on("first", "STEADY"), on("second", "STEADY")]});

    let (crashed, finished) = h.clock.block_on(join(
        h.start(&crashing, RunOptions::new(json!({}))),
        h.start(&calm, RunOptions::new(json!({}))),
    ));

    assert_status(&crashed, RunStatus::Failed);
    assert_eq!(step(&crashed, "crash").attempts, Some(2));
    assert_status(&finished, RunStatus::Completed);
    assert_eq!(step(&finished, "second").output, Some(json!({"n": 2})));
    assert_eq!(
        finished.ended_at - finished.started_at,
        chrono::Duration::milliseconds(200)
    );
    assert_eq!(steady.calls().len(), 2);

    // The engine still runs workflows afterwards.
    let again = h
        .clock
        .block_on(h.engine.start("calm", RunOptions::new(json!({}))).unwrap());
    assert_eq!(again.status, RunStatus::Completed);
    assert_eq!(h.elapsed(), ms(400));
}

/// A run of one step whose agent answers `{"blob": <len × "x">}`, on an engine that
/// accepts outputs of up to 1024 bytes.
fn output_of(len: usize) -> (Harness, tradeflow::engine::RunReport, usize) {
    let h = Harness::with(|builder| builder.max_output_bytes(1024));
    let agent = h.register(
        h.agent("a-1")
            .replies(move |_, _| Reply::ok(json!({"blob": "x".repeat(len)}))),
    );
    let definition = workflow([with(
        task_with("fetch", json!({})),
        json!({"retryPolicy": {"maxAttempts": 3}}),
    )]);
    let report = h.run(&definition, json!({}));
    let calls = agent.calls().len();
    (h, report, calls)
}

#[test]
fn an_output_at_the_limit_is_accepted() {
    // `{"blob":"…"}` is 11 bytes plus the string.
    let (_h, report, _) = output_of(1013);

    assert_status(&report, RunStatus::Completed);
}

#[test]
fn an_output_over_the_limit_fails_the_step_naming_it() {
    let (_h, report, calls) = output_of(1014);

    assert_eq!(report.status, RunStatus::Failed);
    let fetch = step(&report, "fetch");
    assert_eq!(fetch.status, StepStatus::Failed);
    assert_eq!(fetch.output, None);
    let error = fetch.error.as_ref().expect("an error");
    assert!(error.message.contains("fetch"), "{}", error.message);
    assert!(error.message.contains("1024"), "{}", error.message);
    assert_eq!(calls, 1, "retrying cannot make the output smaller");
}

#[test]
fn an_output_over_the_limit_is_reported_as_invalid_output() {
    let (_h, report, _) = output_of(100_000);

    // `FailureKind::InvalidOutput` is documented as "the agent's output was unusable
    // (too large)": the kind callers match on for this failure.
    let fetch = step(&report, "fetch");
    assert_eq!(
        fetch.error.as_ref().map(|error| error.kind),
        Some(FailureKind::InvalidOutput),
        "{}",
        report.to_json_pretty()
    );
    assert_eq!(
        report.error.as_ref().map(|error| error.kind),
        Some(FailureKind::InvalidOutput)
    );
}
