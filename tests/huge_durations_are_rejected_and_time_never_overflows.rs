//! Durations and loop bounds big enough to overflow time arithmetic are refused at
//! validation, each at its location and all at once: every duration in milliseconds is
//! at most `MAX_DURATION_MS` (100 years) and `loop.maxIterations` at most
//! `MAX_LOOP_ITERATIONS`. Runs whose durations are the largest accepted ones behave on
//! the virtual clock, even one that starts near the last time chrono represents: time
//! arithmetic saturates and nothing panics.

mod support;

#[path = "support/command.rs"]
mod command;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use support::engine::{Harness, Reply, assert_status, ms, step, t0};
use support::{errors_in, kind, listing, location, plan, task, with};
use tradeflow::clock::VirtualClock;
use tradeflow::definition::DefinitionError;
use tradeflow::engine::{FailureKind, RunEvent, RunReport, RunStatus, StepStatus};
use tradeflow::plan::{MAX_DURATION_MS, MAX_LOOP_ITERATIONS};
use tradeflow::scheduler::{NotFiredReason, Triggers};

/// The longest accepted duration.
fn longest() -> Duration {
    ms(MAX_DURATION_MS)
}

/// A workflow with every duration set to `millis` and the loop's `maxIterations` to
/// `iterations`: the workflow's timeout and retry delays, a task's timeout and retry
/// delays, a loop's interval and retry delay, an approval's timeout, a trigger's cooldown.
fn every_duration(millis: u64, iterations: u64) -> Value {
    let delays = json!({"initialDelayMs": millis, "maxDelayMs": millis});
    json!({
        "id": "w",
        "timeout": millis,
        "errorHandling": {"retryPolicy": delays},
        "steps": [
            with(task("trade"), json!({"timeout": millis, "retryPolicy": delays})),
            with(task("poll"), json!({
                "type": "loop",
                "loop": {"maxIterations": iterations, "intervalMs": millis},
                "errorHandling": {"retryPolicy": {"maxDelayMs": millis}}
            })),
            {"id": "approve", "type": "human_approval", "timeout": millis}
        ],
        "triggers": [{"type": "THRESHOLD", "metric": "m", "threshold": 1, "cooldownMs": millis}]
    })
}

/// Where `every_duration` puts a duration, in the order validation reports them.
const DURATIONS: [&str; 10] = [
    "steps[0] (trade).timeout",
    "steps[0] (trade).retryPolicy.initialDelayMs",
    "steps[0] (trade).retryPolicy.maxDelayMs",
    "steps[1] (poll).loop.intervalMs",
    "steps[1] (poll).errorHandling.retryPolicy.maxDelayMs",
    "steps[2] (approve).timeout",
    "errorHandling.retryPolicy.initialDelayMs",
    "errorHandling.retryPolicy.maxDelayMs",
    "timeout",
    "triggers[0] (THRESHOLD).cooldownMs",
];

/// Where `every_duration` puts `maxIterations`.
const ITERATIONS: &str = "steps[1] (poll).loop.maxIterations";

#[test]
fn every_huge_duration_is_rejected_at_its_location_at_once() {
    for millis in [i64::MAX as u64, u64::MAX, MAX_DURATION_MS + 1] {
        let errors = errors_in(&every_duration(millis, u64::from(u32::MAX)));
        let mut expected: Vec<&str> = DURATIONS.to_vec();
        expected.insert(3, ITERATIONS);
        let found: Vec<String> = errors.iter().map(location).collect();
        assert_eq!(found, expected, "{millis} ms:\n{}", listing(&errors));
        for error in &errors {
            assert_eq!(kind(error), "InvalidValue", "{error}");
            let message = error.to_string();
            let bound = if location(error) == ITERATIONS {
                format!(
                    "invalid value {}: a loop runs at most 1000000 times",
                    u32::MAX
                )
            } else {
                format!(
                    "invalid value {millis}: a duration is at most 3155760000000 ms (100 years)"
                )
            };
            assert!(message.ends_with(&bound), "{message}");
            assert!(!message.contains('\n'), "one line: {message}");
        }
    }
}

#[test]
fn the_bounds_themselves_are_accepted() {
    assert_eq!(MAX_DURATION_MS, 3_155_760_000_000);
    plan(&every_duration(
        MAX_DURATION_MS,
        u64::from(MAX_LOOP_ITERATIONS),
    ));
    let errors = errors_in(&every_duration(
        MAX_DURATION_MS,
        u64::from(MAX_LOOP_ITERATIONS) + 1,
    ));
    assert!(
        matches!(&errors[..], [DefinitionError::InvalidValue { at, value, .. }]
            if at.to_string() == ITERATIONS && *value == "1000001"),
        "{}",
        listing(&errors)
    );
}

#[test]
fn a_count_beyond_its_integer_type_is_rejected_where_it_is() {
    let errors = errors_in(&every_duration(MAX_DURATION_MS, i64::MAX as u64));
    assert!(
        matches!(&errors[..], [DefinitionError::InvalidValue { at, reason, .. }]
            if at.to_string() == ITERATIONS && reason == "expected u32"),
        "{}",
        listing(&errors)
    );
}

/// One task step `trade` with `fields`, in a workflow with `workflow_fields`.
fn one_task(fields: Value, workflow_fields: Value) -> Value {
    with(
        json!({"id": "w", "steps": [with(task("trade"), fields)]}),
        workflow_fields,
    )
}

/// The longest accepted duration, in JSON.
fn longest_ms() -> Value {
    json!(MAX_DURATION_MS)
}

/// A step's longest accepted timeout and retry delays.
fn longest_timeout_and_delays() -> Value {
    json!({"timeout": longest_ms(),
           "retryPolicy": {"initialDelayMs": longest_ms(), "maxDelayMs": longest_ms()}})
}

#[test]
fn a_step_with_the_longest_timeouts_and_delays_completes() {
    let h = Harness::new();
    h.register(
        h.agent("a-1")
            .replies(|_, _| Reply::ok(json!({"filled": true})).after_ms(1)),
    );
    let definition = one_task(
        longest_timeout_and_delays(),
        json!({"timeout": longest_ms()}),
    );

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(h.elapsed(), ms(1));
    assert_eq!(h.clock.pending_timers(), 0, "every deadline is gone");
}

#[test]
fn the_longest_step_timeout_fires_a_hundred_years_later() {
    let h = Harness::new();
    h.register(h.agent("a-1").replies(|_, _| Reply::hang()));
    let definition = one_task(
        json!({"timeout": longest_ms(), "retryPolicy": {"maxAttempts": 1}}),
        json!({}),
    );

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Failed);
    let trade = step(&report, "trade");
    assert_eq!(
        trade.error.as_ref().map(|error| error.kind),
        Some(FailureKind::Timeout)
    );
    assert_eq!(report.ended_at, t0() + longest());
}

#[test]
fn the_longest_workflow_timeout_ends_the_run_a_hundred_years_later() {
    let h = Harness::new();
    h.register(h.agent("a-1").replies(|_, _| Reply::hang()));
    let definition = one_task(json!({}), json!({"timeout": longest_ms()}));

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::TimedOut);
    assert_eq!(report.ended_at, t0() + longest());
}

#[test]
fn retries_wait_the_longest_delay() {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1").replies(|_, call| {
        if call < 3 {
            Reply::temporary("venue busy")
        } else {
            Reply::ok(json!({"filled": true}))
        }
    }));
    // The multiplier would overflow any delay; `maxDelayMs` caps it.
    let definition = one_task(
        json!({"retryPolicy": {"maxAttempts": 3, "initialDelayMs": longest_ms(),
                               "backoffMultiplier": 1e300, "maxDelayMs": longest_ms()}}),
        json!({}),
    );

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Completed);
    let calls: Vec<Duration> = agent.calls().iter().map(|call| call.since_t0()).collect();
    assert_eq!(calls, [ms(0), longest(), longest() * 2]);
    let delays: Vec<u64> = h
        .events()
        .iter()
        .filter_map(|event| match event {
            RunEvent::StepRetrying { delay_ms, .. } => Some(*delay_ms),
            _ => None,
        })
        .collect();
    assert_eq!(delays, [MAX_DURATION_MS, MAX_DURATION_MS]);
}

/// Runs a loop step `poll` with `fields` whose agent says it is done at its third call;
/// returns when each call came and the iterations the step reports.
fn run_polls(fields: Value) -> (Vec<Duration>, Value) {
    let h = Harness::new();
    let agent = h.register(
        h.agent("a-1")
            .replies(|_, call| Reply::ok(json!({"done": call == 3}))),
    );
    let poll = with(task("poll"), json!({"type": "loop"}));
    let report = h.run(
        &json!({"id": "w", "steps": [with(poll, fields)]}),
        json!({}),
    );
    assert_status(&report, RunStatus::Completed);
    let calls = agent.calls().iter().map(|call| call.since_t0()).collect();
    (calls, iterations(&report, "poll"))
}

/// The `iterations` in the output of loop step `id`.
fn iterations(report: &RunReport, id: &str) -> Value {
    step(report, id)
        .output
        .as_ref()
        .map_or(Value::Null, |output| output["iterations"].clone())
}

#[test]
fn loops_pause_the_longest_interval_and_stop_at_their_timeout() {
    let settings = json!({"maxIterations": MAX_LOOP_ITERATIONS, "intervalMs": longest_ms()});

    let (calls, done_after) = run_polls(json!({"loop": settings}));
    assert_eq!(calls, [ms(0), longest(), longest() * 2]);
    assert_eq!(done_after, 3);

    // With the longest timeout too, the second iteration would start at the deadline.
    let (calls, done_after) = run_polls(json!({"loop": settings, "timeout": longest_ms()}));
    assert_eq!(calls, [ms(0)]);
    assert_eq!(done_after, 1);
}

#[test]
fn an_approval_waits_the_longest_timeout() {
    let h = Harness::new();
    let definition = json!({"id": "w", "steps": [{
        "id": "approve", "type": "human_approval", "timeout": longest_ms(),
        "approval": {"onTimeout": "APPROVE"}
    }]});

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(step(&report, "approve").status, StepStatus::Completed);
    assert_eq!(report.ended_at, t0() + longest());
}

/// A harness on a clock at `start`, the triggers of a workflow whose `THRESHOLD` trigger
/// has the longest cooldown, fired once at `start`, and when its cooldown ends (as the
/// next crossing reports).
fn fired_with_the_longest_cooldown(start: DateTime<Utc>) -> (Harness, Triggers, DateTime<Utc>) {
    let h = Harness::on_clock(VirtualClock::starting_at(start), |builder| builder);
    h.register(h.agent("a-1").answers(json!({})));
    let id = h.workflow(&json!({
        "id": "w", "steps": [task("s")],
        "triggers": [{"type": "THRESHOLD", "metric": "m", "threshold": 1,
                      "cooldownMs": longest_ms()}]
    }));
    let triggers = Triggers::new(&h.engine, &id).expect("the workflow has triggers");
    assert!(triggers.report_metric("m", 2.0)[0].run().is_some());
    assert!(triggers.report_metric("m", 0.0).is_empty());
    let held = triggers.report_metric("m", 2.0);
    let Some(NotFiredReason::CoolingDown { until }) = held[0].not_fired() else {
        panic!("{held:?}");
    };
    let until = *until;
    (h, triggers, until)
}

#[test]
fn the_longest_cooldown_holds_a_threshold_for_a_hundred_years() {
    let (h, triggers, until) = fired_with_the_longest_cooldown(t0());
    assert_eq!(until, t0() + longest());
    h.clock.advance_to(until);
    assert!(triggers.report_metric("m", 2.0)[0].run().is_some());
}

/// A day before the last time chrono represents.
fn near_the_end_of_time() -> DateTime<Utc> {
    DateTime::<Utc>::MAX_UTC - TimeDelta::days(1)
}

#[test]
fn near_the_end_of_time_deadlines_saturate_instead_of_panicking() {
    let h = Harness::on_clock(VirtualClock::starting_at(near_the_end_of_time()), |b| b);
    h.register(
        h.agent("a-1")
            .replies(|request, call| match (request.step_id.as_str(), call) {
                (_, 1) => Reply::temporary("venue busy"),
                ("answer", _) => Reply::ok(json!({"done": true})).after_ms(5),
                ("poll", _) => Reply::ok(json!({"done": false})),
                _ => Reply::hang(),
            }),
    );
    let definition = json!({
        "id": "w",
        "timeout": longest_ms(),
        "steps": [
            with(task("answer"), json!({
                "timeout": longest_ms(),
                "retryPolicy": {"initialDelayMs": 1, "maxDelayMs": longest_ms()}
            })),
            with(task("poll"), json!({
                "type": "loop",
                "timeout": longest_ms(),
                "loop": {"maxIterations": 2, "intervalMs": longest_ms()}
            })),
            with(task("hang"), json!({"timeout": longest_ms(), "retryPolicy": {"maxAttempts": 1}}))
        ]
    });

    let report = h.run(&definition, json!({}));

    // `answer` completed after a retry; `poll` stopped after one iteration, as the next
    // would start at its deadline (both at the end of time); `hang` waited until the end
    // of time, where the workflow's deadline (saturated there too) ended the run.
    assert_eq!(step(&report, "answer").status, StepStatus::Completed);
    assert_eq!(step(&report, "answer").attempts, Some(2));
    assert_eq!(step(&report, "poll").status, StepStatus::Completed);
    assert_eq!(iterations(&report, "poll"), 1);
    assert_status(&report, RunStatus::TimedOut);
    assert_eq!(report.ended_at, DateTime::<Utc>::MAX_UTC);
}

#[test]
fn near_the_end_of_time_a_cooldown_saturates() {
    let (_, _, until) = fired_with_the_longest_cooldown(near_the_end_of_time());
    assert_eq!(until, DateTime::<Utc>::MAX_UTC);
}

/// Writes `definition` to a scratch file named `name`; returns its path.
fn scratch(dir: &Path, name: &str, contents: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents.to_string()).expect("write a scratch file");
    path.to_str().expect("a UTF-8 path").to_owned()
}

#[test]
fn tradeflow_validate_exits_2_naming_the_field() {
    let dir = command::scratch_dir("huge-durations-validate");
    let file = scratch(
        &dir,
        "huge.json",
        &one_task(json!({"timeout": i64::MAX}), json!({})),
    );

    let output = command::run(&["validate", &file]);

    assert_eq!(output.status.code(), Some(2));
    let lines = command::stderr_lines(&output);
    assert_eq!(
        lines,
        [format!(
            "{file}: steps[0] (trade).timeout: invalid value {}: a duration is at most \
             3155760000000 ms (100 years)",
            i64::MAX
        )]
    );
}

#[test]
fn tradeflow_simulate_runs_the_longest_durations() {
    let dir = command::scratch_dir("huge-durations-simulate");
    let workflow = scratch(
        &dir,
        "longest.json",
        &one_task(longest_timeout_and_delays(), json!({})),
    );
    let agents = scratch(
        &dir,
        "agents.json",
        &json!({"agents": [{"id": "a-1", "type": "AGENT", "tasks": {"TASK": {
            "output": {"filled": true}, "delayMs": 5,
            "fail": {"times": 1, "kind": "TEMPORARY", "message": "busy"}
        }}}]}),
    );

    let output = command::run(&["simulate", &workflow, "--agents", &agents]);

    assert_eq!(
        output.status.code(),
        Some(0),
        "{:?}",
        command::stderr_lines(&output)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    assert_eq!(report["status"], "COMPLETED", "{report:#}");
    assert_eq!(report["steps"]["trade"]["attempts"], 2, "{report:#}");
    let (started, ended) = (&report["startedAt"], &report["endedAt"]);
    assert_eq!(started, "2026-01-05T09:00:00Z", "{report:#}");
    assert_eq!(ended, "2126-01-06T09:00:00.010Z", "{report:#}");
}
