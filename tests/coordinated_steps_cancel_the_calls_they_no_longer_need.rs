//! A coordinated step stops waiting as soon as its outcome is decided: `FIRST` cancels
//! the slower agents' calls when the first answer arrives, and `QUORUM` fails
//! `NO_QUORUM` as soon as agreement is out of reach. Cancelled calls give their agents'
//! slots back at once.

mod support;

use serde_json::json;
use support::engine::{Gauge, Harness, Reply, assert_status, at_ms, ms, step};
use support::{task, with, workflow};
use tradeflow::engine::{RunEvent, RunStatus};
use tradeflow::run::FailureKind;

#[test]
fn first_cancels_the_slower_calls_and_their_agents_take_the_next_call_at_once() {
    let h = Harness::new();
    let gauge = Gauge::shared();
    // The fast agent answers after 10 ms; the slow one would never answer `quote`.
    h.register(
        h.agent("fast")
            .counted_by(&gauge)
            .replies(|_, _| Reply::ok(json!({"quote": 101})).after_ms(10)),
    );
    let slow = h.register(
        h.agent("slow")
            .capacity(1)
            .capabilities(&["spare"])
            .counted_by(&gauge)
            .replies(|request, _| match request.step_id.as_str() {
                "quote" => Reply::hang(),
                _ => Reply::ok(json!({"done": true})).after_ms(5),
            }),
    );
    let definition = workflow([
        with(
            task("quote"),
            json!({"coordination": {"mode": "FIRST"}, "task": {"type": "TASK"}}),
        ),
        with(
            task("next"),
            json!({"agentCriteria": {"type": "AGENT", "capabilities": ["spare"]}}),
        ),
    ]);

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Completed);
    let quote = step(&report, "quote");
    assert_eq!(quote.output, Some(json!({"quote": 101})));
    assert_eq!(quote.agent_id.as_ref().map(|id| id.as_str()), Some("fast"));
    assert_eq!(quote.agent_ids.as_ref().map(Vec::len), Some(2));
    // The slow agent (capacity 1) took `next` the moment `quote` was decided.
    let calls = slow.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].step(), "next");
    assert_eq!(calls[1].at, at_ms(10));
    assert_eq!(h.elapsed(), ms(15));
    assert_eq!(gauge.now(), 0, "every call ended or was cancelled");
    assert_eq!(gauge.max(), 2);
}

#[test]
fn quorum_fails_no_quorum_as_soon_as_agreement_is_out_of_reach() {
    let h = Harness::new();
    let gauge = Gauge::shared();
    for (id, side, after) in [
        ("a-1", "BUY", 10),
        ("a-2", "SELL", 20),
        ("a-3", "BUY", 1_000),
    ] {
        h.register(
            h.agent(id)
                .counted_by(&gauge)
                .replies(move |_, _| Reply::ok(json!({"side": side})).after_ms(after)),
        );
    }
    let definition = workflow([with(
        task("signal"),
        json!({"coordination": {"mode": "QUORUM", "quorum": 3, "agreeOn": "side"},
               "optional": true}),
    )]);

    let report = h.run(&definition, json!({}));

    let failed: Vec<_> = h
        .events()
        .into_iter()
        .filter_map(|event| match event {
            RunEvent::StepFailed {
                kind, message, at, ..
            } => Some((kind, message, at)),
            RunEvent::StepRecovering { decision, at, .. } => {
                Some((decision.kind, decision.message, at))
            }
            _ => None,
        })
        .collect();
    // Two answers disagree at 20 ms: three can no longer agree, so the third is not
    // waited for.
    let (kind, message, at) = failed.first().cloned().expect("the step failed");
    assert_eq!((kind, at), (FailureKind::NoQuorum, at_ms(20)));
    assert!(
        message.contains("1 of the 3 answers needed agreed"),
        "{message}"
    );
    // The optional step is skipped, so the run goes on without it.
    assert_status(&report, RunStatus::Completed);
    assert!(step(&report, "signal").output.is_none());
    assert_eq!(gauge.now(), 0, "the third call was cancelled");
    assert!(h.elapsed() < ms(1_000));
}

#[test]
fn quorum_larger_than_the_eligible_agents_fails_before_any_call() {
    let h = Harness::new();
    let agent = h.register(h.agent("only").answers(json!({"ok": true})));
    let definition = workflow([with(
        task("vote"),
        json!({"coordination": {"mode": "QUORUM", "agents": 3, "quorum": 2}}),
    )]);

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Failed);
    let error = step(&report, "vote").error.clone().expect("an error");
    assert_eq!(error.kind, FailureKind::NoQuorum);
    assert!(agent.calls().is_empty());
}
