//! `EVENT` triggers fire for events of their type whose condition holds (the condition
//! and the run see the payload as `event.*`); `THRESHOLD` triggers fire when their metric
//! reaches the threshold while armed, re-arm when it falls back below, and wait out their
//! cooldown; conditions read the host context; every run records the trigger that
//! started it.

mod support;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use support::engine::{Harness, at_ms, ms, step_on, t0};
use tradeflow::clock::Clock;
use tradeflow::definition::TriggerType;
use tradeflow::engine::{Engine, RunEvent, RunReport, RunStatus, StepStatus};
use tradeflow::expr::{Context, EvalError};
use tradeflow::scheduler::{Firing, NotFiredReason, TriggerError, Triggers};
use tradeflow::store::{MemoryStore, RunState, RunStore};

/// A workflow `w` with one step (whose condition reads the host context when given)
/// and these triggers.
fn workflow(triggers: Value) -> Value {
    json!({"id": "w", "steps": [step_on("s", "T")], "triggers": triggers})
}

/// A harness whose agent of type `T` answers its input, and `Triggers` for `definition`.
fn setup(definition: &Value) -> (Harness, Triggers) {
    let h = Harness::new();
    h.register(h.agent("a-1").of_type("T").answers(json!({"done": true})));
    let id = h.workflow(definition);
    let triggers = Triggers::new(&h.engine, &id).expect("the workflow has triggers");
    (h, triggers)
}

/// Drives the run of every firing that started one; returns the reports.
fn finish(h: &Harness, firings: Vec<Firing>) -> Vec<RunReport> {
    firings
        .into_iter()
        .filter_map(Firing::into_run)
        .map(|run| h.clock.block_on(run))
        .collect()
}

/// `(trigger, fired?)` of each firing, for compact assertions.
fn summary(firings: &[Firing]) -> Vec<(String, bool)> {
    firings
        .iter()
        .map(|firing| (firing.trigger(), firing.run().is_some()))
        .collect()
}

fn signal_triggers() -> Value {
    json!([
        {"type": "EVENT", "eventType": "MARKET_SIGNAL",
         "condition": {"expression": "event.strength > 0.7 && market.isOpen()"}},
        {"type": "EVENT", "eventType": "NEWS"},
        {"type": "EVENT", "eventType": "MARKET_SIGNAL",
         "condition": {"expression": "event.symbol == \"AAPL\""}}
    ])
}

#[test]
fn events_fire_only_the_triggers_of_their_type() {
    let (h, triggers) = setup(&workflow(signal_triggers()));
    triggers.set_value("market.isOpen()", json!(true));

    assert!(
        triggers
            .publish_event("market_signal", json!({"strength": 0.9}))
            .is_empty()
    );
    assert!(triggers.publish_event("EARNINGS", json!({})).is_empty());

    let news = triggers.publish_event("NEWS", json!("anything"));
    assert_eq!(summary(&news), [("triggers[1] (EVENT)".to_owned(), true)]);
    assert_eq!(news[0].trigger_type, TriggerType::Event);
    assert_eq!(news[0].at, t0());

    let signal =
        triggers.publish_event("MARKET_SIGNAL", json!({"strength": 0.8, "symbol": "MSFT"}));
    assert_eq!(
        summary(&signal),
        [
            ("triggers[0] (EVENT)".to_owned(), true),
            ("triggers[2] (EVENT)".to_owned(), false)
        ]
    );
    assert_eq!(signal[1].not_fired(), Some(&NotFiredReason::ConditionFalse));
    let reports = finish(&h, news.into_iter().chain(signal).collect());
    assert_eq!(reports.len(), 2);
    assert!(
        reports
            .iter()
            .all(|report| report.status == RunStatus::Completed)
    );
}

#[test]
fn event_conditions_read_the_payload_and_the_host_context() {
    let (_h, triggers) = setup(&workflow(signal_triggers()));
    let fired = |payload: Value| -> Vec<(String, bool)> {
        summary(&triggers.publish_event("MARKET_SIGNAL", payload))
    };
    let first = |payload: Value| fired(payload)[0].1;

    triggers.set_value("market.isOpen", json!(true));
    assert!(!first(json!({"strength": 0.7})), "0.7 is not above 0.7");
    assert!(first(json!({"strength": 0.71})));
    // Nested payloads are flattened; the host context is read at each event.
    assert!(fired(json!({"strength": 0.1, "symbol": "AAPL"}))[1].1);
    triggers.update_context(|context| context.set_variable("market.isOpen", json!(false)));
    triggers.set_value("market.isOpen", json!(false));
    assert!(!first(json!({"strength": 0.9})), "the market closed");

    // An event's fields do not leak into the next event's context.
    triggers.set_value("market.isOpen", json!(true));
    assert!(first(json!({"strength": 0.9, "symbol": "MSFT"})));
    let without_strength = triggers.publish_event("MARKET_SIGNAL", json!({"symbol": "MSFT"}));
    assert!(matches!(
        without_strength[0].not_fired(),
        Some(NotFiredReason::ConditionFailed(
            EvalError::Evaluation { .. }
        ))
    ));
}

#[test]
fn a_condition_that_cannot_be_evaluated_does_not_fire() {
    let (h, triggers) = setup(&workflow(json!([
        {"type": "EVENT", "eventType": "X", "condition": {"expression": "missing.value > 1"}},
        {"type": "EVENT", "eventType": "X", "condition": {"expression": "feed.price()"}}
    ])));
    triggers.update_context(|context| {
        context.set_function("feed.price", |_| Err("the feed is down".to_owned()));
    });
    let firings = triggers.publish_event("X", json!({}));
    assert_eq!(firings.len(), 2);
    for firing in &firings {
        let Some(NotFiredReason::ConditionFailed(error)) = firing.not_fired() else {
            panic!("{firing:?}");
        };
        assert!(!error.to_string().is_empty());
    }
    assert!(
        firings[1]
            .not_fired()
            .unwrap()
            .to_string()
            .contains("the feed is down")
    );
    assert!(h.events().is_empty(), "no run started");
}

#[test]
fn the_run_sees_the_event_and_the_input() {
    let definition = json!({
        "id": "w",
        "steps": [
            {"id": "buy", "type": "task", "agentCriteria": {"type": "T"},
             "task": {"type": "BUY", "parameters": {"account": "${input.account}"}},
             "condition": {"expression": "event.side == \"BUY\""}},
            {"id": "sell", "type": "task", "agentCriteria": {"type": "T"},
             "task": {"type": "SELL"},
             "condition": {"expression": "event.side == \"SELL\""}}
        ],
        "dependencies": [],
        "triggers": [{"type": "EVENT", "eventType": "SIGNAL"}]
    });
    let (h, triggers) = setup(&definition);
    let triggers = triggers.with_input(json!({"account": "acc-7"}));
    let report = finish(&h, triggers.publish_event("SIGNAL", json!({"side": "BUY"}))).remove(0);
    assert_eq!(report.status, RunStatus::Completed);
    assert_eq!(report.step("buy").unwrap().status, StepStatus::Completed);
    assert_eq!(report.step("sell").unwrap().status, StepStatus::Skipped);
    assert_eq!(triggers.input(), json!({"account": "acc-7"}));
}

fn threshold(cooldown_ms: Option<u64>, condition: Option<&str>) -> Value {
    let mut trigger =
        json!({"type": "THRESHOLD", "metric": "portfolio.deviation", "threshold": 0.1});
    if let Some(cooldown) = cooldown_ms {
        trigger["cooldownMs"] = json!(cooldown);
    }
    if let Some(condition) = condition {
        trigger["condition"] = json!({"expression": condition});
    }
    workflow(json!([trigger]))
}

/// Reports each value in turn, one minute apart; returns whether each fired.
fn report_all(h: &Harness, triggers: &Triggers, values: &[f64]) -> Vec<bool> {
    values
        .iter()
        .map(|value| {
            h.clock.advance(ms(60_000));
            let firings = triggers.report_metric("portfolio.deviation", *value);
            assert!(firings.len() <= 1);
            firings.first().is_some_and(|firing| firing.run().is_some())
        })
        .collect()
}

#[test]
fn a_threshold_fires_on_each_upward_crossing_and_rearms_below() {
    let (h, triggers) = setup(&threshold(None, None));
    let values = [0.05, 0.1, 0.2, 0.15, 0.0999, 0.3, 0.3, 0.01, 0.11];
    assert_eq!(
        report_all(&h, &triggers, &values),
        [false, true, false, false, false, true, false, false, true],
        "reaching the threshold counts; staying above does not fire again"
    );
    // Other metrics change nothing.
    assert!(triggers.report_metric("portfolio.value", 1e9).is_empty());
    assert!(
        triggers
            .report_metric("portfolio.deviation", f64::NAN)
            .is_empty()
    );
}

#[test]
fn a_first_report_above_the_threshold_fires() {
    let (h, triggers) = setup(&threshold(None, None));
    assert_eq!(report_all(&h, &triggers, &[0.5, 0.5]), [true, false]);
}

#[test]
fn the_cooldown_holds_a_crossing_until_it_has_passed() {
    // One hour of cooldown.
    let (h, triggers) = setup(&threshold(Some(3_600_000), None));
    let first = triggers.report_metric("portfolio.deviation", 0.2);
    assert!(first[0].run().is_some());
    let fired_at = h.clock.now();

    h.clock.advance(ms(10 * 60_000));
    assert!(
        triggers
            .report_metric("portfolio.deviation", 0.05)
            .is_empty()
    );
    h.clock.advance(ms(10 * 60_000));
    let held = triggers.report_metric("portfolio.deviation", 0.2);
    let until = fired_at + ms(3_600_000);
    assert_eq!(
        held[0].not_fired(),
        Some(&NotFiredReason::CoolingDown { until })
    );
    // Still armed: the first report at or above the threshold after the cooldown fires.
    h.clock.advance_to(until - ms(1));
    assert!(
        triggers.report_metric("portfolio.deviation", 0.2)[0]
            .run()
            .is_none()
    );
    h.clock.advance_to(until);
    let fired = triggers.report_metric("portfolio.deviation", 0.2);
    assert!(fired[0].run().is_some());
    assert_eq!(fired[0].at, until);
    assert!(
        triggers
            .report_metric("portfolio.deviation", 0.2)
            .is_empty()
    );
}

#[test]
fn a_crossing_held_by_its_condition_fires_once_the_condition_holds() {
    let (h, triggers) = setup(&threshold(None, Some("market.volatility < 0.25")));
    triggers.set_value("market.volatility", json!(0.3));
    let held = triggers.report_metric("portfolio.deviation", 0.12);
    assert_eq!(held[0].not_fired(), Some(&NotFiredReason::ConditionFalse));
    triggers.set_value("market.volatility", json!(0.2));
    assert_eq!(
        report_all(&h, &triggers, &[0.13, 0.14, 0.02, 0.12]),
        [true, false, false, true]
    );
}

#[test]
fn each_threshold_trigger_keeps_its_own_state() {
    let definition = workflow(json!([
        {"type": "THRESHOLD", "metric": "drift", "threshold": 0.1},
        {"type": "THRESHOLD", "metric": "drift", "threshold": 0.2},
        {"type": "THRESHOLD", "metric": "loss", "threshold": 1000}
    ]));
    let (_h, triggers) = setup(&definition);
    let fired = |metric: &str, value: f64| -> Vec<String> {
        triggers
            .report_metric(metric, value)
            .into_iter()
            .filter(|firing| firing.run().is_some())
            .map(|firing| firing.trigger())
            .collect()
    };
    assert_eq!(fired("drift", 0.15), ["triggers[0] (THRESHOLD)"]);
    assert_eq!(fired("drift", 0.25), ["triggers[1] (THRESHOLD)"]);
    assert_eq!(fired("drift", 0.15), Vec::<String>::new());
    assert_eq!(fired("drift", 0.3), ["triggers[1] (THRESHOLD)"]);
    assert_eq!(fired("loss", 1000.0), ["triggers[2] (THRESHOLD)"]);
    assert_eq!(fired("drift", 0.0), Vec::<String>::new());
    assert_eq!(
        fired("drift", 0.5),
        ["triggers[0] (THRESHOLD)", "triggers[1] (THRESHOLD)"]
    );
}

#[test]
fn the_run_records_its_trigger_in_its_event_and_journal() {
    let store = Arc::new(MemoryStore::new());
    let shared = Arc::clone(&store);
    let h = Harness::with(move |builder| builder.store(shared));
    h.register(h.agent("a-1").of_type("T").answers(json!({})));
    let id = h.workflow(&workflow(json!([
        {"type": "EVENT", "eventType": "SIGNAL"},
        {"type": "THRESHOLD", "metric": "m", "threshold": 1}
    ])));
    let triggers = Triggers::new(&h.engine, &id).unwrap();
    h.clock.advance(ms(5_000));
    let mut firings = triggers.report_metric("m", 2.0);
    firings.extend(triggers.publish_event("SIGNAL", json!({})));
    let reports = finish(&h, firings);
    let recorded: Vec<(String, Option<String>, DateTime<Utc>)> = reports
        .iter()
        .map(|report| {
            let state = RunState::fold(&store.load(&report.run_id).unwrap()).unwrap();
            (report.run_id.to_string(), state.trigger, report.started_at)
        })
        .collect();
    assert_eq!(
        recorded,
        [
            (
                "run-1".to_owned(),
                Some("triggers[1] (THRESHOLD)".to_owned()),
                at_ms(5_000)
            ),
            (
                "run-2".to_owned(),
                Some("triggers[0] (EVENT)".to_owned()),
                at_ms(5_000)
            ),
        ]
    );
    let announced: Vec<Option<String>> = h
        .events()
        .into_iter()
        .filter_map(|event| match event {
            RunEvent::RunStarted { trigger, .. } => Some(trigger),
            _ => None,
        })
        .collect();
    assert_eq!(
        announced,
        [
            Some("triggers[1] (THRESHOLD)".to_owned()),
            Some("triggers[0] (EVENT)".to_owned())
        ]
    );
}

#[test]
fn trigger_sets_need_a_known_workflow_with_triggers() {
    let engine = Engine::builder().build();
    assert_eq!(
        Triggers::new(&engine, "nope").unwrap_err(),
        TriggerError::UnknownWorkflow {
            id: "nope".to_owned()
        }
    );
    engine.add_plan(support::plan(
        &json!({"id": "plain", "steps": [step_on("s", "T")]}),
    ));
    let error = Triggers::new(&engine, "plain").unwrap_err();
    assert_eq!(
        error,
        TriggerError::NoTriggers {
            id: "plain".to_owned()
        }
    );
    assert_eq!(error.to_string(), "workflow `plain` has no triggers");
}

#[test]
fn the_host_context_is_shared_by_clones_and_replaceable() {
    let (_h, triggers) = setup(&workflow(json!([
        {"type": "EVENT", "eventType": "X", "condition": {"expression": "desk.enabled()"}}
    ])));
    let clone = triggers.clone();
    clone.set_value("desk", json!({"enabled": true}));
    assert!(triggers.publish_event("X", json!({}))[0].run().is_some());
    triggers.set_context(Context::new().with_function("desk.enabled", |_| Ok(json!(false))));
    assert!(clone.publish_event("X", json!({}))[0].run().is_none());
    assert_eq!(triggers.context().variable("desk.enabled"), None);
    assert_eq!(triggers.workflow_id(), "w");
}
