//! Tracing: a run is one `tradeflow.run` span, each call attempt a `tradeflow.step` span
//! inside it, with the fields operators filter on; retries, self-healing, adaptations,
//! approvals and cancellations are events with the step's error kind; parameters and
//! outputs never appear.

mod support;

use serde_json::json;
use support::engine::{Harness, Reply, assert_status, drain, run_approving, step_on};
use support::trace::{Capture, SpanRecord};
use support::with;
use tradeflow::engine::{RunEvent, RunOptions, RunStatus};

/// `fetch` (fails once, then answers), `monitor` (optional, fails for good), `approve`
/// (a person), then `trade` (adapted while volatility is high).
fn traced_workflow() -> serde_json::Value {
    json!({
        "id": "traced",
        "steps": [
            with(step_on("fetch", "DATA"), json!({
                "task": {"type": "FETCH", "parameters": {"symbol": "${input.symbol}"}},
                "retryPolicy": {"maxAttempts": 2, "initialDelayMs": 10}})),
            with(step_on("monitor", "MONITOR"), json!({"optional": true})),
            {"id": "approve", "type": "human_approval",
             "task": {"type": "APPROVAL_REQUEST", "parameters": {"price": "${fetch.output.price}"}}},
            with(step_on("trade", "TRADE"), json!({
                "task": {"type": "ORDER", "parameters": {"price": "${fetch.output.price}"}}})),
        ],
        "dependencies": [
            {"from": "fetch", "to": "monitor"},
            {"from": "monitor", "to": "approve"},
            {"from": "approve", "to": "trade"}
        ],
        "adaptations": [
            {"id": "calm-down", "when": "volatility.level > 0.5",
             "changes": [{"stepId": "trade", "parameters": {"mode": "defensive"}}]}
        ]
    })
}

fn the_run(capture: &Capture) -> SpanRecord {
    let runs = capture.spans_named("tradeflow.run");
    assert_eq!(runs.len(), 1, "{runs:#?}");
    runs.into_iter().next().unwrap()
}

#[test]
fn a_run_is_one_span_and_each_attempt_a_child_span_with_its_fields_and_events() {
    let h = Harness::new();
    h.register(h.agent("data-1").of_type("DATA").replies(|_, n| match n {
        1 => Reply::temporary("feed hiccup"),
        _ => Reply::ok(json!({"price": 101.5})),
    }));
    h.register(
        h.agent("mon-1")
            .of_type("MONITOR")
            .replies(|_, _| Reply::permanent("monitor down")),
    );
    h.register(
        h.agent("trade-1")
            .of_type("TRADE")
            .answers(json!({"filled": true})),
    );
    h.engine
        .adapt_to_conditions([("volatility.level", json!(0.9))]);
    let definition = traced_workflow();
    h.workflow(&definition);
    let capture = Capture::default();

    let report = capture.during(|| {
        let mut events = h.engine.subscribe();
        let run = h
            .engine
            .start(
                "traced",
                RunOptions::new(json!({"symbol": "SECRET-SYMBOL"}))
                    .triggered_by("triggers[0] (EVENT)"),
            )
            .unwrap();
        run_approving(&h.clock, &h.engine, &mut events, run, "alice")
    });

    assert_status(&report, RunStatus::Completed);
    let run = the_run(&capture);
    assert_eq!(run.parent, None);
    assert_eq!(run.target, "tradeflow::run");
    assert_eq!(run.field("run_id"), Some(report.run_id.as_str()));
    assert_eq!(run.field("workflow_id"), Some("traced"));
    assert_eq!(run.field("trigger"), Some("triggers[0] (EVENT)"));

    let steps = capture.spans_named("tradeflow.step");
    let described: Vec<(&str, &str, &str, &str)> = steps
        .iter()
        .map(|span| {
            assert_eq!(span.parent, Some(run.seq), "{span:#?}");
            (
                span.field("step_id").unwrap(),
                span.field("agent_id").unwrap(),
                span.field("attempt").unwrap(),
                span.field("idempotency_key").unwrap(),
            )
        })
        .collect();
    let key = |step: &str| format!("{}/{step}/0/0", report.run_id);
    assert_eq!(
        described,
        [
            ("fetch", "data-1", "1", key("fetch").as_str()),
            ("fetch", "data-1", "2", key("fetch").as_str()),
            ("monitor", "mon-1", "1", key("monitor").as_str()),
            ("trade", "trade-1", "1", key("trade").as_str()),
        ]
    );

    // The retry is the run's event (the attempt's span has closed), with the failure's
    // kind.
    let retries = capture.events_saying("call failed; retrying");
    assert_eq!(retries.len(), 1, "{retries:#?}");
    assert_eq!(retries[0].span, Some(run.seq));
    assert_eq!(retries[0].field("step_id"), Some("fetch"));
    assert_eq!(retries[0].field("attempt"), Some("1"));
    assert_eq!(retries[0].field("kind"), Some("TEMPORARY"));
    assert_eq!(retries[0].field("delay_ms"), Some("10"));
    assert_eq!(retries[0].level, tracing::Level::WARN);

    // Self-healing, the adaptation and the approval are the run's events.
    let recovered = capture.events_saying("step failed");
    assert_eq!(recovered.len(), 1, "{recovered:#?}");
    assert_eq!(recovered[0].span, Some(run.seq));
    assert_eq!(recovered[0].field("step_id"), Some("monitor"));
    assert_eq!(recovered[0].field("kind"), Some("PERMANENT"));
    assert_eq!(recovered[0].field("recovery"), Some("Skip"));
    let adapted = capture.events_saying("step adapted");
    assert_eq!(adapted.len(), 1);
    assert_eq!(adapted[0].field("step_id"), Some("trade"));
    assert_eq!(adapted[0].field("adaptations"), Some(r#"["calm-down"]"#));
    for message in ["approval requested", "approval answered"] {
        let approvals = capture.events_saying(message);
        assert_eq!(approvals.len(), 1, "{message}");
        assert_eq!(approvals[0].span, Some(run.seq));
        assert_eq!(approvals[0].field("step_id"), Some("approve"));
    }
    assert_eq!(
        capture.events_saying("approval answered")[0].field("approved"),
        Some("true")
    );
    let ended = capture.events_saying("run ended");
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].field("status"), Some("COMPLETED"));

    // Parameters and outputs are not logged: not the input, not the price, not the
    // agent's message.
    let text = capture.text();
    for value in [
        "SECRET-SYMBOL",
        "101.5",
        "feed hiccup",
        "monitor down",
        "defensive",
    ] {
        assert!(!text.contains(value), "`{value}` logged:\n{text}");
    }
}

#[test]
fn a_cancelled_run_logs_who_cancelled_it_in_its_span() {
    let h = Harness::new();
    h.register(h.agent("slow-1").replies(|_, _| Reply::hang()));
    let definition = json!({"id": "w", "steps": [step_on("wait", "AGENT")]});
    let capture = Capture::default();

    let report = capture.during(|| {
        let mut events = h.engine.subscribe();
        let mut run = h.start(&definition, RunOptions::new(json!({})));
        assert!(h.clock.run_until_stalled(&mut run).is_pending());
        let started = drain(&mut events);
        assert!(
            started
                .iter()
                .any(|event| matches!(event, RunEvent::StepStarted { .. }))
        );
        h.engine.cancel_workflow(run.id(), "risk-desk").unwrap();
        h.clock.block_on(run)
    });

    assert_status(&report, RunStatus::Cancelled);
    let run = the_run(&capture);
    let cancelled = capture.events_saying("run cancelled");
    assert_eq!(cancelled.len(), 1, "{:#?}", capture.events());
    assert_eq!(cancelled[0].span, Some(run.seq));
    assert_eq!(cancelled[0].field("by"), Some("risk-desk"));
    assert_eq!(cancelled[0].level, tracing::Level::INFO);
    assert_eq!(
        capture.events_saying("run ended")[0].field("status"),
        Some("CANCELLED")
    );
}

#[test]
fn nothing_is_recorded_when_no_subscriber_is_interested() {
    // A subscriber that wants nothing but errors: the engine's spans are not created, so
    // their fields are never computed, and no info or warn event reaches it.
    let h = Harness::new();
    h.register(h.agent("a-1").replies(|_, n| match n {
        1 => Reply::temporary("once"),
        _ => Reply::ok(json!({})),
    }));
    let definition = json!({"id": "w", "steps": [with(step_on("a", "AGENT"),
        json!({"retryPolicy": {"maxAttempts": 2, "initialDelayMs": 1}}))]});
    let capture = Capture::default();
    let quiet = tracing_subscriber::layer::SubscriberExt::with(
        capture.subscriber(),
        tracing_subscriber::filter::LevelFilter::ERROR,
    );

    let report = tracing::subscriber::with_default(quiet, || h.run(&definition, json!({})));

    assert_status(&report, RunStatus::Completed);
    assert!(capture.spans().is_empty(), "{:#?}", capture.spans());
    assert!(capture.events().is_empty(), "{:#?}", capture.events());
}
