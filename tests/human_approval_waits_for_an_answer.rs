//! `human_approval` steps: the run waits until the host approves or rejects the step (by
//! run id and step id), or the step timeout passes (rejected, or approved where
//! `approval.onTimeout` is `APPROVE`); the output is the resolved parameters plus
//! `approvedBy` and `comment`.

mod support;

use std::time::Duration;

use futures::FutureExt;
use serde_json::{Value, json};
use support::engine::{
    Harness, Reply, assert_status, at_ms, drain, run_approving, step, t0, waiting_steps,
};
use support::{task_with, with};
use tradeflow::engine::{EngineError, FailureKind, RunEvent, RunOptions, RunStatus, StepStatus};

/// `approve` (a human approval of the input amount) then `execute`, which binds to the
/// approval's output; `approval` adds fields to the approval step.
fn definition(approval: Value) -> Value {
    let approve = with(
        json!({
            "id": "approve",
            "type": "human_approval",
            "task": {"type": "APPROVAL_REQUEST",
                     "parameters": {"amount": "${input.amount}", "desk": "equities"}}
        }),
        approval,
    );
    json!({"id": "w", "steps": [
        approve,
        task_with("execute", json!({"approvedBy": "${approve.output.approvedBy}",
                                   "comment": "${approve.output.comment}"})),
    ]})
}

fn harness() -> (Harness, std::sync::Arc<support::engine::TestAgent>) {
    let h = Harness::new();
    let agent = h.register(h.agent("exec-1").replies(|request, _| {
        Reply::ok(json!({"executed": true, "by": request.parameters["approvedBy"]}))
    }));
    (h, agent)
}

#[test]
fn an_approved_step_outputs_its_parameters_with_approver_and_comment() {
    let (h, agent) = harness();
    let mut events = h.engine.subscribe();
    let mut run = h.start(
        &definition(json!({})),
        RunOptions::new(json!({"amount": 250000})),
    );

    assert!(
        h.clock.run_until_stalled(&mut run).is_pending(),
        "the run waits"
    );
    let seen = drain(&mut events);
    assert!(seen.iter().any(|event| matches!(
        event,
        RunEvent::StepWaiting { step_id, parameters, at, .. }
            if step_id == "approve" && *parameters == json!({"amount": 250000, "desk": "equities"})
                && *at == t0()
    )));
    assert!(agent.calls().is_empty(), "nothing runs before the answer");

    // The approver takes a minute and a half.
    h.clock.advance(Duration::from_secs(90));
    h.engine
        .approve(run.id(), "approve", "pm@desk", Some("within mandate"))
        .expect("the step waits");
    let report = h.clock.block_on(run);

    assert_status(&report, RunStatus::Completed);
    let approve = step(&report, "approve");
    assert_eq!(approve.status, StepStatus::Completed);
    assert_eq!(
        approve.output,
        Some(json!({"amount": 250000, "desk": "equities",
                    "approvedBy": "pm@desk", "comment": "within mandate"}))
    );
    assert_eq!(approve.approved_by.as_deref(), Some("pm@desk"));
    assert_eq!(approve.agent_id, None);
    let calls = agent.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].request.parameters,
        json!({"approvedBy": "pm@desk", "comment": "within mandate"})
    );
    assert_eq!(calls[0].at, at_ms(90_000));
    assert!(drain(&mut events).iter().any(|event| matches!(
        event,
        RunEvent::StepAnswered { step_id, approved: true, by, at, .. }
            if step_id == "approve" && by == "pm@desk" && *at == at_ms(90_000)
    )));
}

#[test]
fn an_approval_without_comment_outputs_a_null_comment() {
    let (h, _agent) = harness();
    let mut run = h.start(
        &definition(json!({})),
        RunOptions::new(json!({"amount": 1})),
    );
    assert!(h.clock.run_until_stalled(&mut run).is_pending());

    h.engine
        .approve(run.id(), "approve", "pm@desk", None)
        .unwrap();
    let report = h.clock.block_on(run);

    assert_eq!(report.status, RunStatus::Completed);
    assert_eq!(
        step(&report, "approve").output,
        Some(json!({"amount": 1, "desk": "equities", "approvedBy": "pm@desk", "comment": null}))
    );
}

#[test]
fn a_rejection_fails_the_step_and_the_run() {
    let (h, agent) = harness();
    let mut run = h.start(
        &definition(json!({})),
        RunOptions::new(json!({"amount": 9e6})),
    );
    assert!(h.clock.run_until_stalled(&mut run).is_pending());

    h.engine
        .reject(run.id(), "approve", "risk@desk", Some("too large"))
        .expect("the step waits");
    let report = h.clock.block_on(run);

    assert_status(&report, RunStatus::Failed);
    let approve = step(&report, "approve");
    assert_eq!(approve.status, StepStatus::Failed);
    let error = approve.error.as_ref().expect("an error");
    assert_eq!(error.kind, FailureKind::Rejected);
    assert!(error.message.contains("approve"), "{}", error.message);
    assert!(error.message.contains("risk@desk"), "{}", error.message);
    assert!(error.message.contains("too large"), "{}", error.message);
    let run_error = report.error.as_ref().expect("a run error");
    assert_eq!(
        run_error.step_id.as_ref().map(|id| id.as_str()),
        Some("approve")
    );
    assert_eq!(run_error.kind, FailureKind::Rejected);
    assert_eq!(step(&report, "execute").status, StepStatus::Skipped);
    assert!(agent.calls().is_empty());
}

#[test]
fn an_unanswered_step_is_rejected_at_its_timeout() {
    let (h, agent) = harness();

    let report = h.run(
        &definition(json!({"timeout": 3_600_000})),
        json!({"amount": 5}),
    );

    assert_status(&report, RunStatus::Failed);
    let approve = step(&report, "approve");
    assert_eq!(approve.status, StepStatus::Failed);
    assert_eq!(
        approve.error.as_ref().map(|error| error.kind),
        Some(FailureKind::Rejected)
    );
    assert_eq!(report.ended_at, at_ms(3_600_000));
    assert!(agent.calls().is_empty());
    assert!(h.events().iter().any(|event| matches!(
        event,
        RunEvent::StepAnswered { step_id, approved: false, at, .. }
            if step_id == "approve" && *at == at_ms(3_600_000)
    )));
}

#[test]
fn on_timeout_approve_approves_an_unanswered_step() {
    let (h, agent) = harness();
    let definition =
        definition(json!({"timeout": 3_600_000, "approval": {"onTimeout": "APPROVE"}}));

    let report = h.run(&definition, json!({"amount": 5}));

    assert_status(&report, RunStatus::Completed);
    let approve = step(&report, "approve");
    assert_eq!(approve.status, StepStatus::Completed);
    let output = approve.output.as_ref().expect("an output");
    assert_eq!(output["amount"], 5);
    assert_eq!(output["desk"], "equities");
    assert!(output["approvedBy"].is_string(), "{output}");
    assert!(output.get("comment").is_some(), "{output}");
    let calls = agent.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].at, at_ms(3_600_000));
}

#[test]
fn an_answer_before_the_timeout_wins() {
    let (h, agent) = harness();
    let mut run = h.start(
        &definition(json!({"timeout": 3_600_000})),
        RunOptions::new(json!({"amount": 5})),
    );
    assert!((&mut run).now_or_never().is_none(), "the run waits");

    h.clock.advance(Duration::from_secs(600));
    h.engine
        .approve(run.id(), "approve", "pm@desk", None)
        .unwrap();
    let report = h.clock.block_on(run);

    assert_status(&report, RunStatus::Completed);
    assert_eq!(report.ended_at, at_ms(600_000));
    assert_eq!(agent.calls().len(), 1);
    assert_eq!(h.clock.pending_timers(), 0, "the timeout timer is gone");
}

#[test]
fn answering_a_step_that_does_not_wait_is_an_error() {
    let (h, _agent) = harness();
    let mut events = h.engine.subscribe();
    let mut run = h.start(
        &definition(json!({})),
        RunOptions::new(json!({"amount": 5})),
    );
    assert!(h.clock.run_until_stalled(&mut run).is_pending());
    assert_eq!(waiting_steps(&drain(&mut events)).len(), 1);

    let wrong_step = h.engine.approve(run.id(), "execute", "pm@desk", None);
    assert_eq!(
        wrong_step,
        Err(EngineError::NoPendingApproval {
            run: run.id().clone(),
            step: "execute".to_owned()
        })
    );
    let unknown_step = h.engine.reject(run.id(), "nope", "pm@desk", None);
    assert!(
        matches!(unknown_step, Err(EngineError::NoPendingApproval { step, .. }) if step == "nope")
    );
    let wrong_run = h
        .engine
        .approve(&"run-99".into(), "approve", "pm@desk", None);
    assert!(
        matches!(wrong_run, Err(EngineError::NoPendingApproval { run, .. }) if run == "run-99")
    );

    // The wrong answers changed nothing: the step still waits, and takes a real answer.
    assert!(h.clock.run_until_stalled(&mut run).is_pending());
    h.engine
        .approve(run.id(), "approve", "pm@desk", None)
        .unwrap();
    let again = h.engine.approve(run.id(), "approve", "pm@desk", None);
    assert!(
        matches!(again, Err(EngineError::NoPendingApproval { .. })),
        "answered once"
    );
    let report = h.clock.block_on(run);
    assert_eq!(report.status, RunStatus::Completed);
    assert_eq!(step(&report, "execute").status, StepStatus::Completed);
}

#[test]
fn approvals_in_a_row_are_each_answered_as_they_wait() {
    let (h, agent) = harness();
    let second = json!({
        "id": "confirm",
        "type": "human_approval",
        "task": {"type": "APPROVAL_REQUEST", "parameters": {"first": "${approve.output.approvedBy}"}}
    });
    let mut definition = definition(json!({}));
    definition["steps"]
        .as_array_mut()
        .unwrap()
        .insert(1, second);
    let mut events = h.engine.subscribe();
    let run = h.start(&definition, RunOptions::new(json!({"amount": 5})));

    let report = run_approving(&h.clock, &h.engine, &mut events, run, "pm@desk");

    assert_status(&report, RunStatus::Completed);
    assert_eq!(
        step(&report, "confirm").output,
        Some(json!({"first": "pm@desk", "approvedBy": "pm@desk", "comment": null}))
    );
    let waits: Vec<String> = waiting_steps(&h.events())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(waits, ["approve", "confirm"]);
    assert_eq!(agent.calls().len(), 1);
}
