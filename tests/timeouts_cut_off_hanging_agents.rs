//! Timeouts: a step's `timeout` bounds each attempt (a hanging agent is cut off with
//! kind `TIMEOUT`, retried per the policy, and its slot is freed); a workflow `timeout`
//! ends the run `TIMED_OUT` and cancels what is running.

mod support;

use serde_json::json;
use support::engine::{Harness, Reply, assert_status, at_ms, ms, reason, step};
use support::{task_with, with, workflow};
use tradeflow::engine::{FailureKind, RunEvent, RunStatus, StepStatus};

#[test]
fn a_hanging_agent_is_cut_off_and_the_call_retried() {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1").replies(|_, n| {
        if n == 1 {
            Reply::hang()
        } else {
            Reply::ok(json!({"filled": true})).after_ms(20)
        }
    }));
    let definition = workflow([with(
        task_with("trade", json!({})),
        json!({"timeout": 500, "retryPolicy": {"maxAttempts": 2, "initialDelayMs": 100}}),
    )]);

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Completed);
    let trade = step(&report, "trade");
    assert_eq!(trade.attempts, Some(2));
    assert_eq!(trade.output, Some(json!({"filled": true})));
    // The agent takes one call at a time: the second call got the slot the first held.
    let times: Vec<_> = agent.calls().iter().map(|call| call.since_t0()).collect();
    assert_eq!(times, [ms(0), ms(600)]);
    assert_eq!(agent.gauge().max(), 1);
    assert_eq!(agent.gauge().now(), 0);
    assert!(h.events().iter().any(|event| matches!(
        event,
        RunEvent::StepRetrying { attempt: 1, kind: FailureKind::Timeout, at, .. } if *at == at_ms(500)
    )));
    assert_eq!(h.elapsed(), ms(620));
}

#[test]
fn an_agent_that_always_hangs_fails_the_step_timeout() {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1").replies(|_, _| Reply::hang()));
    let definition = workflow([with(
        task_with("trade", json!({})),
        json!({"timeout": 500, "retryPolicy": {"maxAttempts": 2, "initialDelayMs": 100}}),
    )]);

    let report = h.run(&definition, json!({}));

    assert_eq!(report.status, RunStatus::Failed);
    let trade = step(&report, "trade");
    assert_eq!(trade.status, StepStatus::Failed);
    assert_eq!(trade.attempts, Some(2));
    let error = trade.error.as_ref().expect("an error");
    assert_eq!(error.kind, FailureKind::Timeout);
    assert!(error.message.contains("trade"), "{}", error.message);
    assert_eq!(agent.calls().len(), 2);
    assert_eq!(report.ended_at, at_ms(1100));
    assert_eq!(h.clock.pending_timers(), 0);
}

#[test]
fn a_timed_out_call_frees_its_slot_for_another_step() {
    let h = Harness::new();
    let agent = h.register(
        h.agent("a-1")
            .replies(|request, _| match request.step_id.as_str() {
                "stuck" => Reply::hang(),
                _ => Reply::ok(json!({"ok": true})).after_ms(10),
            }),
    );
    // Independent steps on a one-slot agent: `next` waits for the slot `stuck` holds
    // until its timeout. `stuck` is optional so the run goes on.
    let definition = json!({"id": "w", "dependencies": [], "steps": [
        with(task_with("stuck", json!({})),
             json!({"timeout": 1000, "optional": true, "retryPolicy": {"maxAttempts": 1}})),
        task_with("next", json!({})),
    ]});

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(
        step(&report, "stuck").status,
        StepStatus::Skipped,
        "an optional step that failed is skipped"
    );
    assert_eq!(step(&report, "next").status, StepStatus::Completed);
    let calls: Vec<_> = agent
        .calls()
        .iter()
        .map(|call| (call.step().to_owned(), call.since_t0()))
        .collect();
    assert_eq!(
        calls,
        [("stuck".to_owned(), ms(0)), ("next".to_owned(), ms(1000))]
    );
    assert_eq!(agent.gauge().max(), 1);
    assert_eq!(report.ended_at, at_ms(1010));
}

#[test]
fn a_workflow_timeout_ends_the_run_timed_out_and_cancels_running_steps() {
    let h = Harness::new();
    let agent =
        h.register(h.agent("a-1").capacity(2).replies(
            |request, _| match request.step_id.as_str() {
                "analyse" => Reply::ok(json!({})).after_ms(1000),
                _ => Reply::hang(),
            },
        ));
    let definition = with(
        workflow([
            task_with("analyse", json!({})),
            task_with("execute", json!({})),
            task_with("report", json!({})),
        ]),
        json!({"timeout": 5000}),
    );

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::TimedOut);
    assert_eq!(report.ended_at, at_ms(5000));
    let error = report.error.as_ref().expect("a run error");
    assert_eq!(error.kind, FailureKind::WorkflowTimeout);
    assert_eq!(error.step_id, None);
    assert_eq!(step(&report, "analyse").status, StepStatus::Completed);
    assert_eq!(step(&report, "execute").status, StepStatus::Cancelled);
    assert_eq!(step(&report, "report").status, StepStatus::Skipped);
    assert!(
        reason(&report, "report").contains("TIMED_OUT"),
        "{}",
        reason(&report, "report")
    );
    assert_eq!(agent.gauge().now(), 0, "the hanging call was dropped");
    assert!(h.events().iter().any(|event| matches!(
        event,
        RunEvent::StepCancelled { step_id, at, .. } if step_id == "execute" && *at == at_ms(5000)
    )));
    assert!(h.events().iter().any(|event| matches!(
        event,
        RunEvent::RunEnded {
            status: RunStatus::TimedOut,
            ..
        }
    )));
    assert_eq!(h.clock.pending_timers(), 0);
}

#[test]
fn a_run_within_its_timeout_completes() {
    let h = Harness::new();
    h.register(
        h.agent("a-1")
            .replies(|_, _| Reply::ok(json!({})).after_ms(1000)),
    );
    let definition = with(
        workflow([task_with("a", json!({})), task_with("b", json!({}))]),
        json!({"timeout": 5000}),
    );

    let report = h.run(&definition, json!({}));

    assert_eq!(report.status, RunStatus::Completed);
    assert_eq!(report.ended_at, at_ms(2000));
    assert_eq!(h.clock.pending_timers(), 0, "the workflow timer is gone");
}
