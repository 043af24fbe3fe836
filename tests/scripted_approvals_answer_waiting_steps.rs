//! A `ScriptedApprover` answers each waiting `human_approval` step as the agents file's
//! `approvals` say, `afterMs` after the step started waiting on the engine's clock; steps
//! with no scripted answer keep waiting; an observer sees every event it reads, in order.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use futures::future::{Either, join, select};
use serde_json::json;
use tradeflow::agent::RunId;
use tradeflow::clock::VirtualClock;
use tradeflow::engine::{Engine, FailureKind, Run, RunEvent, RunOptions, RunStatus, StepStatus};
use tradeflow::plan::ExecutionPlan;
use tradeflow::sim::{AgentsFile, ApprovalObserver, ScriptedApprover, scripted_agents};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap()
}

/// `plan` (a second of work), the `sign-off` approval, then `execute`.
const WORKFLOW: &str = r#"{"id": "w", "steps": [
    {"id": "plan", "type": "task", "agentCriteria": {"type": "DESK"},
     "task": {"type": "PLAN"}},
    {"id": "sign-off", "type": "human_approval",
     "task": {"type": "APPROVAL_REQUEST", "parameters": {"plan": "${plan.output}"}}},
    {"id": "execute", "type": "task", "agentCriteria": {"type": "DESK"},
     "task": {"type": "EXECUTE", "parameters": {"by": "${sign-off.output.approvedBy}"}}}
]}"#;

/// An engine on a virtual clock at [`t0`] with the desk agent and `WORKFLOW`, and an
/// approver with `approvals` (the `approvals` object of an agents file).
fn setup(approvals: serde_json::Value) -> (VirtualClock, Engine, ScriptedApprover) {
    let file = AgentsFile::from_json(
        &json!({
            "agents": [{"id": "desk-1", "type": "DESK", "maxConcurrency": 4, "tasks": {
                "PLAN": {"output": {"qty": 10}, "delayMs": 1000},
                "EXECUTE": {"output": {"by": "${params.by}"}}}}],
            "approvals": approvals
        })
        .to_string(),
    )
    .expect("a valid agents file");
    let clock = VirtualClock::starting_at(t0());
    let engine = Engine::builder().clock(clock.clone()).build();
    for agent in scripted_agents(&file, Arc::new(clock.clone())) {
        engine.register_agent(agent).expect("registered");
    }
    engine.add_plan(ExecutionPlan::from_json(WORKFLOW).expect("a valid workflow"));
    let approver = ScriptedApprover::new(&engine, file.approvals);
    (clock, engine, approver)
}

fn start(engine: &Engine) -> Run {
    engine
        .start("w", RunOptions::new(json!({})))
        .expect("the run starts")
}

/// Records every event it is shown.
#[derive(Default)]
struct Recorder(RefCell<Vec<RunEvent>>);

impl ApprovalObserver for Recorder {
    fn event(&self, event: &RunEvent) {
        self.0.borrow_mut().push(event.clone());
    }
}

impl Recorder {
    fn events(&self) -> Vec<RunEvent> {
        self.0.borrow().clone()
    }
}

#[test]
fn an_approval_comes_after_ms_after_the_step_starts_waiting() {
    let (clock, engine, approver) = setup(json!({"sign-off": {
        "approved": true, "by": "pm@desk", "afterMs": 60000, "comment": "within mandate"}}));
    let recorder = Recorder::default();
    let events = engine.subscribe();
    let run = start(&engine);
    let runs = [run.id().clone()];
    let (report, ()) = clock.block_on(join(run, approver.answer_runs(events, runs, &recorder)));

    assert_eq!(report.status, RunStatus::Completed);
    let sign_off = report.step("sign-off").expect("reported");
    assert_eq!(sign_off.approved_by.as_deref(), Some("pm@desk"));
    let execute = report.step("execute").expect("reported");
    assert_eq!(execute.output, Some(json!({"by": "pm@desk"})));

    let seen = recorder.events();
    assert!(matches!(seen.first(), Some(RunEvent::RunStarted { .. })));
    assert!(matches!(seen.last(), Some(RunEvent::RunEnded { .. })));
    let waiting = seen.iter().find_map(|event| match event {
        RunEvent::StepWaiting { at, .. } => Some(*at),
        _ => None,
    });
    let answered = seen.iter().find_map(|event| match event {
        RunEvent::StepAnswered {
            at,
            approved,
            comment,
            ..
        } => Some((*at, *approved, comment.clone())),
        _ => None,
    });
    assert_eq!(waiting, Some(t0() + Duration::from_secs(1)));
    assert_eq!(
        answered,
        Some((
            t0() + Duration::from_secs(61),
            true,
            Some("within mandate".to_owned())
        ))
    );
}

#[test]
fn a_scripted_rejection_fails_the_step_and_the_run() {
    let (clock, engine, approver) =
        setup(json!({"sign-off": {"approved": false, "by": "risk@desk"}}));
    let events = engine.subscribe();
    let run = start(&engine);
    let runs = [run.id().clone()];
    let (report, ()) = clock.block_on(join(run, approver.answer_runs(events, runs, &())));

    assert_eq!(report.status, RunStatus::Failed);
    let sign_off = report.step("sign-off").expect("reported");
    assert_eq!(sign_off.status, StepStatus::Failed);
    let error = sign_off.error.as_ref().expect("the rejection");
    assert_eq!(error.kind, FailureKind::Rejected);
    // Answered at once: `afterMs` defaults to 0.
    assert_eq!(report.ended_at, t0() + Duration::from_secs(1));
}

#[test]
fn a_step_without_a_scripted_answer_keeps_waiting() {
    let (clock, engine, approver) = setup(json!({}));
    let recorder = Recorder::default();
    let events = engine.subscribe();
    let run = start(&engine);
    let runs = [run.id().clone()];
    let mut both = Box::pin(join(run, approver.answer_runs(events, runs, &recorder)));

    assert!(clock.run_until_stalled(&mut both).is_pending());
    let seen = recorder.events();
    assert!(
        matches!(seen.last(), Some(RunEvent::StepWaiting { step_id, .. }) if step_id.as_str() == "sign-off"),
        "{seen:#?}"
    );
}

#[test]
fn answer_runs_follows_only_its_runs() {
    let (clock, engine, approver) =
        setup(json!({"sign-off": {"approved": true, "by": "pm@desk", "afterMs": 5000}}));
    let recorder = Recorder::default();
    let events = engine.subscribe();
    let (followed, other) = (start(&engine), start(&engine));
    let followed_id = followed.id().clone();
    let answering = approver.answer_runs(events, [followed_id.clone()], &recorder);
    let outcome = clock.block_on(select(Box::pin(join(followed, answering)), other));

    let Either::Left(((report, ()), _other)) = outcome else {
        panic!("the other run cannot end: nobody answers it");
    };
    assert_eq!(report.status, RunStatus::Completed);
    let runs: Vec<RunId> = recorder
        .events()
        .iter()
        .map(|event| event.run_id().clone())
        .collect();
    assert!(!runs.is_empty());
    assert!(runs.iter().all(|run| *run == followed_id), "{runs:?}");
}

#[test]
fn answer_all_answers_every_run_started_after_it() {
    let (clock, engine, approver) =
        setup(json!({"sign-off": {"approved": true, "by": "pm@desk", "afterMs": 5000}}));
    let events = engine.subscribe();
    let answering = Box::pin(approver.answer_all(events, &()));
    let runs = Box::pin(join(start(&engine), start(&engine)));
    let Either::Left(((first, second), _)) = clock.block_on(select(runs, answering)) else {
        panic!("answer_all ends only when the engine's events end");
    };
    for report in [first, second] {
        assert_eq!(report.status, RunStatus::Completed);
        assert_eq!(report.ended_at, t0() + Duration::from_secs(6));
    }
}
