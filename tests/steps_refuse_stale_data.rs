//! Fresh data only: a step with `maxDataAgeMs` does not call its agent on data older
//! than that, measured on the engine's clock as it is about to start and again before
//! each retry. The run's data time is `RunOptions::data_as_of`, the time of the event
//! that started it, or its input's `asOf`; `onStale` says whether the step is skipped
//! (default) or fails with kind `STALE_DATA` (neither retried nor healed).

mod support;

use std::sync::Arc;

use serde_json::{Value, json};
use support::engine::{Harness, Reply, assert_status, at_ms, ms, step, t0};
use support::journal::{assert_journal_matches, folded};
use support::{task, with, workflow};
use tradeflow::clock::VirtualClock;
use tradeflow::engine::{FailureKind, RunOptions, RunStatus, StepStatus};
use tradeflow::scheduler::Triggers;
use tradeflow::store::MemoryStore;

/// `fetch` (answers after `fetch_ms`) then `trade`, which checks its data with `fields`.
fn fetch_then_trade(fields: Value) -> Value {
    let mut trade = with(task("trade"), fields);
    trade["task"]["parameters"] = json!({"after": "${fetch.output}"});
    workflow([task("fetch"), trade])
}

/// A harness whose agent answers `fetch` after `fetch_ms` and `trade` at once.
fn harness(fetch_ms: u64) -> (Harness, Arc<support::engine::TestAgent>) {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1").replies(move |request, _| {
        if request.step_id.as_str() == "fetch" {
            Reply::ok(json!({"price": 1})).after_ms(fetch_ms)
        } else {
            Reply::ok(json!({"filled": true}))
        }
    }));
    (h, agent)
}

fn trade_calls(agent: &support::engine::TestAgent) -> usize {
    agent
        .calls()
        .iter()
        .filter(|call| call.step() == "trade")
        .count()
}

#[test]
fn data_exactly_as_old_as_allowed_is_fresh_and_a_millisecond_older_is_not() {
    let definition = fetch_then_trade(json!({"maxDataAgeMs": 250}));

    let (h, agent) = harness(250);
    let report = h.run_with(&definition, RunOptions::new(json!({})).data_as_of(t0()));
    assert_status(&report, RunStatus::Completed);
    assert_eq!(step(&report, "trade").status, StepStatus::Completed);
    assert_eq!(trade_calls(&agent), 1);

    let (h, agent) = harness(251);
    let report = h.run_with(&definition, RunOptions::new(json!({})).data_as_of(t0()));
    let trade = step(&report, "trade");
    assert_eq!(trade.status, StepStatus::Skipped);
    assert_eq!(trade.reason.as_deref(), Some("stale data: 251 ms > 250 ms"));
    assert_eq!(trade_calls(&agent), 0, "a stale step calls no agent");
}

#[test]
fn the_input_as_of_dates_the_data_and_fail_fails_the_step_with_stale_data() {
    let definition = fetch_then_trade(json!({"maxDataAgeMs": 250, "onStale": "FAIL"}));
    let (h, agent) = harness(100);
    // Data as of 312 ms before the run started: 412 ms old when `trade` is ready.
    let as_of = (t0() - chrono::TimeDelta::milliseconds(312)).to_rfc3339();

    let report = h.run(&definition, json!({"asOf": as_of}));

    assert_status(&report, RunStatus::Failed);
    let error = step(&report, "trade").error.clone().expect("an error");
    assert_eq!(error.kind, FailureKind::StaleData);
    assert_eq!(error.message, "stale data: 412 ms > 250 ms");
    assert_eq!(trade_calls(&agent), 0);
}

#[test]
fn a_retry_after_the_backoff_checks_the_data_again() {
    let trade_fields = |on_stale: &str| {
        json!({"maxDataAgeMs": 250, "onStale": on_stale, "optional": true,
               "retryPolicy": {"maxAttempts": 3, "initialDelayMs": 200, "backoffMultiplier": 1, "jitter": 0},
               "errorHandling": {"strategies": ["RETRY", "SKIP"]}})
    };
    for (on_stale, status) in [("SKIP", StepStatus::Skipped), ("FAIL", StepStatus::Failed)] {
        let store = Arc::new(MemoryStore::new());
        let h = Harness::with(|b| b.store(Arc::clone(&store)));
        let agent = h.register(
            h.agent("a-1")
                .replies(|_, _| Reply::temporary("venue busy")),
        );
        let definition = workflow([with(task("trade"), trade_fields(on_stale))]);

        let report = h.run_with(&definition, RunOptions::new(json!({})).data_as_of(t0()));

        // The first attempt at 0 ms is fresh; the retry at 200 ms is too; the one at
        // 400 ms is not made.
        let times: Vec<_> = agent.calls().iter().map(|call| call.since_t0()).collect();
        assert_eq!(times, [ms(0), ms(200)], "{on_stale}");
        let trade = step(&report, "trade");
        assert_eq!(trade.status, status, "{on_stale}");
        // The journal says the same: the calls made, then the skip or the failure.
        assert_journal_matches(&*store, &report);
        match status {
            StepStatus::Skipped => {
                assert_eq!(trade.reason.as_deref(), Some("stale data: 400 ms > 250 ms"));
            }
            _ => {
                let error = trade.error.as_ref().expect("an error");
                assert_eq!(error.kind, FailureKind::StaleData);
                assert!(
                    trade.recoveries.is_empty(),
                    "stale data is not healed: {:?}",
                    trade.recoveries
                );
            }
        }
    }
}

#[test]
fn a_run_an_event_started_is_as_old_as_the_event() {
    let mut definition = fetch_then_trade(json!({"maxDataAgeMs": 250}));
    definition["triggers"] = json!([{"type": "EVENT", "eventType": "TICK"}]);
    let (h, agent) = harness(300);
    let id = h.workflow(&definition);
    let triggers = Triggers::new(&h.engine, &id).expect("the workflow has triggers");

    let firings = triggers.publish_event("TICK", json!({}));
    let run = firings
        .into_iter()
        .find_map(tradeflow::scheduler::Firing::into_run)
        .expect("the event starts a run");
    let report = h.clock.block_on(run);

    let trade = step(&report, "trade");
    assert_eq!(trade.reason.as_deref(), Some("stale data: 300 ms > 250 ms"));
    assert_eq!(trade_calls(&agent), 0);
}

#[test]
fn a_run_without_a_data_time_never_checks() {
    let definition = fetch_then_trade(json!({"maxDataAgeMs": 0, "onStale": "FAIL"}));
    let (h, agent) = harness(10_000);

    let report = h.run(&definition, json!({"symbol": "BTC"}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(trade_calls(&agent), 1);
}

#[test]
fn the_data_time_survives_a_restart() {
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(MemoryStore::new());
    let definition = fetch_then_trade(json!({"maxDataAgeMs": 250}));
    let agent = Arc::new(support::engine::TestAgent::new("a-1", &clock).replies(
        |request, number| {
            match (request.step_id.as_str(), number) {
                // Cut off by the restart, then answered after 300 ms.
                ("fetch", 1) => Reply::hang(),
                ("fetch", _) => Reply::ok(json!({"price": 1})).after_ms(300),
                _ => Reply::ok(json!({"filled": true})),
            }
        },
    ));
    let first = Harness::on_clock(clock.clone(), |b| b.store(Arc::clone(&store)));
    first.register_shared(&agent);
    let mut run = first.start(&definition, RunOptions::new(json!({})).data_as_of(at_ms(0)));
    let id = run.id().clone();
    assert!(clock.run_until_stalled(&mut run).is_pending());
    assert_eq!(folded(&*store, &id).data_as_of, Some(at_ms(0)));
    drop(run);
    drop(first);

    let report = support::engine::recover_first(&clock, &store, &agent);

    let trade = step(&report, "trade");
    assert_eq!(trade.reason.as_deref(), Some("stale data: 300 ms > 250 ms"));
}
