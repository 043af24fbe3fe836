//! The kill switch: an engine-level rule over a reported metric trips, refuses new runs
//! of the workflows it covers (`HALTED`), holds their runs' side-effect steps while other
//! steps go on, starts its flatten workflow once, and is reset only by its quorum of
//! distinct people — after which the held runs go on.

mod support;

use std::sync::Arc;
use std::task::Context;

use futures::FutureExt;
use futures::task::noop_waker_ref;

use serde_json::{Value, json};
use support::engine::{Harness, Reply, TestAgent, assert_status, t0};
use support::with;
use tradeflow::clock::VirtualClock;
use tradeflow::engine::{EngineError, FailureKind, RunOptions, RunStatus, StepStatus};
use tradeflow::safety::{KillSwitchError, KillSwitchEvent, KillSwitchRule, ResetProgress};

/// `fetch` (100 ms) → `trade` (side effects) and `report` (none), tagged `live`.
fn algo() -> Value {
    json!({"id": "algo", "tags": ["live"], "steps": [
        support::engine::step_on("fetch", "FETCH"),
        with(support::engine::step_on("trade", "TRADE"), json!({"sideEffects": true})),
        support::engine::step_on("report", "REPORT"),
    ], "dependencies": [
        {"from": "fetch", "to": "trade"},
        {"from": "fetch", "to": "report"}
    ]})
}

/// Closes every position: one side-effect step, tagged `live` too.
fn flatten() -> Value {
    json!({"id": "flatten-positions", "tags": ["live"], "steps": [
        with(support::engine::step_on("close", "CLOSE"), json!({"sideEffects": true})),
    ]})
}

/// A paper-trading workflow the rule does not cover.
fn paper() -> Value {
    json!({"id": "paper", "tags": ["paper"], "steps": [
        with(support::engine::step_on("paper-trade", "TRADE"), json!({"sideEffects": true})),
    ]})
}

struct Desk {
    host: Harness,
    trade: Arc<TestAgent>,
    report: Arc<TestAgent>,
    close: Arc<TestAgent>,
}

fn desk(clock: &VirtualClock, quorum: u32) -> Desk {
    let rule = KillSwitchRule::new("drawdown", "pnl.drawdown > 0.05")
        .scope_tags(["live"])
        .flatten("flatten-positions")
        .quorum(quorum);
    let host = Harness::on_clock(clock.clone(), |builder| {
        builder.kill_switch(&[rule]).expect("the rule is valid")
    });
    host.register(
        TestAgent::new("fetch-1", clock)
            .of_type("FETCH")
            .replies(|_, _| Reply::ok(json!({"signal": 1})).after_ms(100)),
    );
    let trade = host.register(
        TestAgent::new("trade-1", clock)
            .of_type("TRADE")
            .answers(json!({"order": "o-1"})),
    );
    let report = host.register(
        TestAgent::new("report-1", clock)
            .of_type("REPORT")
            .answers(json!({"sent": true})),
    );
    let close = host.register(
        TestAgent::new("close-1", clock)
            .of_type("CLOSE")
            .answers(json!({"closed": 3})),
    );
    host.workflow(&algo());
    host.workflow(&flatten());
    host.workflow(&paper());
    Desk {
        host,
        trade,
        report,
        close,
    }
}

#[test]
fn a_reported_drawdown_over_the_threshold_trips_the_rule_and_new_live_runs_are_refused_halted() {
    let clock = VirtualClock::starting_at(t0());
    let desk = desk(&clock, 1);
    let engine = &desk.host.engine;
    assert!(engine.report_metric("pnl.drawdown", json!(0.02)).is_empty());
    let before = clock.block_on(engine.start("algo", RunOptions::new(json!({}))).unwrap());
    assert_status(&before, RunStatus::Completed);

    let tripped = engine.report_metric("pnl.drawdown", json!(0.06));
    assert_eq!(tripped.len(), 1);
    assert!(matches!(
        &tripped[0].event,
        KillSwitchEvent::Tripped { rule, flatten: Some(flatten), .. }
            if rule == "drawdown" && flatten == "flatten-positions"
    ));
    assert_eq!(engine.kill_switch_tripped(), ["drawdown"]);

    match engine.start("algo", RunOptions::new(json!({}))) {
        Err(EngineError::Halted { rule, workflow }) => {
            assert_eq!((rule.as_str(), workflow.as_str()), ("drawdown", "algo"));
        }
        other => panic!(
            "expected HALTED, got {:?}",
            other.map(|run| run.id().clone())
        ),
    }
    // A run that does not go through `start` (a trigger's) ends CANCELLED, kind HALTED.
    let plan = engine.workflow("algo").expect("kept");
    let refused = clock.block_on(engine.start_plan(plan, RunOptions::new(json!({}))));
    assert_status(&refused, RunStatus::Cancelled);
    let error = refused.error.expect("an error");
    assert_eq!(error.kind, FailureKind::Halted);
    assert!(error.message.contains("drawdown"), "{}", error.message);

    let paper = clock.block_on(engine.start("paper", RunOptions::new(json!({}))).unwrap());
    assert_status(&paper, RunStatus::Completed);
    assert_eq!(
        desk.trade.calls().len(),
        2,
        "algo before the trip, and paper"
    );
}

#[test]
fn a_run_in_flight_waits_before_its_side_effect_step_while_its_other_steps_run() {
    let clock = VirtualClock::starting_at(t0());
    let desk = desk(&clock, 1);
    let engine = &desk.host.engine;
    let mut run = engine.start("algo", RunOptions::new(json!({}))).unwrap();
    let mut cx = Context::from_waker(noop_waker_ref());
    assert!(run.poll_unpin(&mut cx).is_pending(), "fetch is in flight");
    let tripped = engine.report_metric("pnl.drawdown", json!(0.08));
    assert_eq!(tripped.len(), 1);

    assert!(
        clock.run_until_stalled(&mut run).is_pending(),
        "the halted run waits for a reset"
    );
    assert_eq!(
        desk.report.calls().len(),
        1,
        "report has no side effects: it ran"
    );
    assert!(desk.trade.calls().is_empty(), "trade is held");

    assert!(matches!(
        engine.reset_kill_switch("drawdown", "ann"),
        Ok(ResetProgress::Done(_))
    ));
    let report = clock.block_on(run);
    assert_status(&report, RunStatus::Completed);
    assert_eq!(desk.trade.calls().len(), 1, "trade ran after the reset");
    assert_eq!(
        report.step("trade").map(|step| step.status),
        Some(StepStatus::Completed)
    );
}

#[test]
fn the_flatten_workflow_starts_once_however_often_the_metric_is_reported() {
    let clock = VirtualClock::starting_at(t0());
    let desk = desk(&clock, 1);
    let engine = &desk.host.engine;
    let mut flattens = Vec::new();
    for drawdown in [0.06, 0.07, 0.09, 0.06] {
        for tripped in engine.report_metric("pnl.drawdown", json!(drawdown)) {
            flattens.push(
                tripped
                    .flatten
                    .expect("the rule names one")
                    .expect("it starts"),
            );
        }
    }
    assert_eq!(flattens.len(), 1);
    for run in flattens {
        // Tagged `live` too, but never halted by the rule that started it.
        assert_status(&clock.block_on(run), RunStatus::Completed);
    }
    assert_eq!(desk.close.calls().len(), 1);
}

#[test]
fn a_reset_needs_its_quorum_of_distinct_people_and_runs_go_on_after_it() {
    let clock = VirtualClock::starting_at(t0());
    let desk = desk(&clock, 2);
    let engine = &desk.host.engine;
    assert!(matches!(
        engine.reset_kill_switch("drawdown", "ann"),
        Err(EngineError::KillSwitch(KillSwitchError::NotTripped { .. }))
    ));
    assert_eq!(engine.report_metric("pnl.drawdown", json!(0.06)).len(), 1);

    let pending = ResetProgress::Pending { have: 1, need: 2 };
    assert_eq!(
        engine.reset_kill_switch("drawdown", "ann"),
        Ok(pending.clone())
    );
    assert!(engine.start("algo", RunOptions::new(json!({}))).is_err());
    assert_eq!(
        engine.reset_kill_switch("drawdown", "ann"),
        Ok(pending),
        "the same person twice is one reset"
    );
    assert!(matches!(
        engine.start("algo", RunOptions::new(json!({}))),
        Err(EngineError::Halted { .. })
    ));
    match engine.reset_kill_switch("drawdown", "bob") {
        Ok(ResetProgress::Done(KillSwitchEvent::Reset { rule, by, .. })) => {
            assert_eq!(rule, "drawdown");
            assert_eq!(by, ["ann", "bob"]);
        }
        other => panic!("expected the reset, got {other:?}"),
    }
    assert!(engine.kill_switch_tripped().is_empty());
    let after = clock.block_on(engine.start("algo", RunOptions::new(json!({}))).unwrap());
    assert_status(&after, RunStatus::Completed);
    assert_eq!(desk.trade.calls().len(), 1);

    // Armed again: the next crossing trips it again.
    assert_eq!(engine.report_metric("pnl.drawdown", json!(0.07)).len(), 1);
}

#[test]
fn invalid_rules_and_tags_are_located() {
    let rules = [KillSwitchRule::new("drawdown", "pnl.drawdown >").quorum(0)];
    let errors = tradeflow::engine::Engine::builder()
        .kill_switch(&rules)
        .expect_err("invalid")
        .to_string();
    assert!(errors.contains("killSwitch[0] (drawdown).when"), "{errors}");
    assert!(
        errors.contains("killSwitch[0] (drawdown).quorum"),
        "{errors}"
    );

    let workflow = json!({"id": "w", "tags": ["live", ""], "steps": [
        support::engine::step_on("a", "A")
    ]});
    let parsed = tradeflow::definition::WorkflowDefinition::from_value(&workflow).unwrap();
    let errors = tradeflow::engine::Engine::builder()
        .build()
        .create_workflow(parsed)
        .expect_err("invalid")
        .to_string();
    assert!(errors.contains("tags[1]"), "{errors}");
}

#[test]
fn a_replayed_day_whose_drawdown_crosses_the_rule_at_noon_refuses_the_afternoon_runs() {
    let timeline = tradeflow::scheduler::Timeline::from_json(
        r#"{"start": "2026-11-23T09:00:00Z", "end": "2026-11-23T15:30:00Z",
            "metrics": [
                {"at": "2026-11-23T10:30:00Z", "name": "pnl.drawdown", "value": 0.02},
                {"at": "2026-11-23T12:00:00Z", "name": "pnl.drawdown", "value": 0.055},
                {"at": "2026-11-23T13:30:00Z", "name": "pnl.drawdown", "value": 0.08}
            ]}"#,
    )
    .expect("a valid timeline");
    let clock = VirtualClock::starting_at(timeline.start);
    let desk = desk(&clock, 1);
    let mut hourly = algo();
    hourly["triggers"] = json!([{"type": "SCHEDULED", "schedule": "0 * * * *"}]);
    desk.host.workflow(&hourly);
    let triggers =
        tradeflow::scheduler::Triggers::new(&desk.host.engine, "algo").expect("triggers");

    let replay = clock.block_on(timeline.play(&triggers));
    let ran = listed(&replay.runs, |run| (run.fired_at, run.trigger.clone()));
    assert_eq!(
        ran,
        [
            "09:00 triggers[0] (SCHEDULED)",
            "10:00 triggers[0] (SCHEDULED)",
            "11:00 triggers[0] (SCHEDULED)",
            "12:00 killSwitch (drawdown)",
        ]
    );
    let refused = listed(&replay.refused, |run| {
        (run.fired_at, run.refused.to_string())
    });
    assert_eq!(
        refused,
        [
            "12:00 HALTED",
            "13:00 HALTED",
            "14:00 HALTED",
            "15:00 HALTED"
        ],
        "the noon report comes before the noon firing"
    );
    assert!(replay.refused[0].reason.contains("drawdown"));
    let json: Value = serde_json::from_str(&replay.to_json_pretty()).unwrap();
    assert_eq!(json["refused"][0]["refused"], "HALTED");
    assert_eq!(json["refused"][0]["firedAt"], "2026-11-23T12:00:00Z");
    assert_eq!(desk.close.calls().len(), 1, "flatten ran once");
}

/// `HH:MM what` of each item.
fn listed<T>(
    items: &[T],
    line: impl Fn(&T) -> (chrono::DateTime<chrono::Utc>, String),
) -> Vec<String> {
    items
        .iter()
        .map(|item| {
            let (at, what) = line(item);
            format!("{} {what}", at.format("%H:%M"))
        })
        .collect()
}
