//! `SCHEDULED` triggers fire at the instants their cron pattern names, read on the wall
//! clock of their time zone: across daylight-saving changes in America/New_York (a
//! skipped time fires at the end of the gap, a repeated time once), on weekday ranges,
//! and at month ends. The library (`scheduled_firings`, `Triggers::run_schedule`,
//! `Triggers::fire_due`) and `tradeflow schedule` agree.

#[path = "support/command.rs"]
mod command;
mod support;

use std::task::Poll;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use serde_json::{Value, json};
use support::engine::{Harness, step_on};
use tradeflow::clock::{Clock, VirtualClock};
use tradeflow::engine::{Engine, RunEvent, RunStatus};
use tradeflow::plan::ExecutionPlan;
use tradeflow::scheduler::{NotFiredReason, Triggers, scheduled_firings};

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|error| panic!("{text}: {error}"))
        .with_timezone(&Utc)
}

/// RFC 3339 in UTC, with any fraction of a second (there must be none).
fn utc(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A one-step workflow with these triggers.
fn with_triggers(triggers: Value) -> Value {
    json!({"id": "cron", "steps": [step_on("s", "T")], "triggers": triggers})
}

/// A `SCHEDULED` trigger on `pattern`, in `timezone` when given.
fn scheduled(pattern: &str, timezone: Option<&str>) -> Value {
    let mut trigger = json!({"type": "SCHEDULED", "schedule": pattern});
    if let Some(timezone) = timezone {
        trigger["timezone"] = json!(timezone);
    }
    trigger
}

/// Every firing of `pattern` (in `timezone`) in `[from, to)`, as RFC 3339 UTC times.
#[track_caller]
fn firings(pattern: &str, timezone: Option<&str>, from: &str, to: &str) -> Vec<String> {
    let plan = support::plan(&with_triggers(json!([scheduled(pattern, timezone)])));
    scheduled_firings(plan.triggers(), at(from), at(to))
        .map(|(_, instant)| utc(instant))
        .collect()
}

const NEW_YORK: Option<&str> = Some("America/New_York");

#[test]
fn a_time_the_clocks_skip_fires_when_the_gap_ends() {
    // 2026-03-08: New York goes from 02:00 EST to 03:00 EDT; 02:30 does not exist.
    assert_eq!(
        firings(
            "30 2 * * *",
            NEW_YORK,
            "2026-03-07T00:00:00Z",
            "2026-03-10T00:00:00Z"
        ),
        [
            "2026-03-07T07:30:00Z", // 02:30 EST
            "2026-03-08T07:00:00Z", // 03:00 EDT, the end of the gap
            "2026-03-09T06:30:00Z", // 02:30 EDT
        ]
    );
    // Several skipped times fire once, together, at the end of the gap (croner alone
    // would not fire these at all that day).
    for pattern in ["0,30 2 * * *", "*/20 2 * * *", "* 2 * * *"] {
        let day = firings(
            pattern,
            NEW_YORK,
            "2026-03-08T00:00:00Z",
            "2026-03-09T00:00:00Z",
        );
        assert_eq!(day, ["2026-03-08T07:00:00Z"], "{pattern}");
    }
    // Hourly: 01:00 EST, then 03:00 EDT (02:00 never happens).
    assert_eq!(
        firings(
            "0 * * * *",
            NEW_YORK,
            "2026-03-08T05:30:00Z",
            "2026-03-08T08:30:00Z"
        ),
        [
            "2026-03-08T06:00:00Z",
            "2026-03-08T07:00:00Z",
            "2026-03-08T08:00:00Z"
        ]
    );
}

#[test]
fn a_gap_of_half_an_hour_ends_at_the_right_instant() {
    // Lord Howe Island moves from +10:30 to +11:00 at 02:00 local on 2026-10-04:
    // 02:15 does not exist and fires at 02:30 local (15:30Z the day before).
    assert_eq!(
        firings(
            "15 2 * * *",
            Some("Australia/Lord_Howe"),
            "2026-10-02T00:00:00Z",
            "2026-10-05T00:00:00Z"
        ),
        [
            "2026-10-02T15:45:00Z", // 02:15 +10:30
            "2026-10-03T15:30:00Z", // 02:30 +11:00, the end of the gap
            "2026-10-04T15:15:00Z", // 02:15 +11:00
        ]
    );
}

#[test]
fn a_time_the_clocks_repeat_fires_once() {
    // 2026-11-01: New York goes from 02:00 EDT back to 01:00 EST; 01:00–01:59 happen twice.
    assert_eq!(
        firings(
            "30 1 * * *",
            NEW_YORK,
            "2026-10-31T00:00:00Z",
            "2026-11-03T00:00:00Z"
        ),
        [
            "2026-10-31T05:30:00Z", // 01:30 EDT
            "2026-11-01T05:30:00Z", // 01:30 EDT, the first of the two
            "2026-11-02T06:30:00Z", // 01:30 EST
        ]
    );
    // Every matching local time once, whatever the pattern (croner alone fires these
    // twice).
    assert_eq!(
        firings(
            "0,30 1 * * *",
            NEW_YORK,
            "2026-11-01T00:00:00Z",
            "2026-11-02T00:00:00Z"
        ),
        ["2026-11-01T05:00:00Z", "2026-11-01T05:30:00Z"]
    );
    assert_eq!(
        firings(
            "0 * * * *",
            NEW_YORK,
            "2026-11-01T03:30:00Z",
            "2026-11-01T07:30:00Z"
        ),
        [
            "2026-11-01T04:00:00Z", // 00:00 EDT
            "2026-11-01T05:00:00Z", // 01:00 EDT
            "2026-11-01T07:00:00Z", // 02:00 EST (01:00 EST is 01:00 again)
        ]
    );
    // 02:30 happens once that day (02:00 EDT became 01:00 EST): it fires, in EST.
    assert_eq!(
        firings(
            "30 2 * * *",
            NEW_YORK,
            "2026-11-01T00:00:00Z",
            "2026-11-02T00:00:00Z"
        ),
        ["2026-11-01T07:30:00Z"]
    );
}

#[test]
fn weekday_mornings_follow_new_york_across_both_changes() {
    assert_eq!(
        firings(
            "0 9 * * 1-5",
            NEW_YORK,
            "2026-03-05T00:00:00Z",
            "2026-03-11T00:00:00Z"
        ),
        [
            "2026-03-05T14:00:00Z", // Thu, EST
            "2026-03-06T14:00:00Z", // Fri, EST
            "2026-03-09T13:00:00Z", // Mon, EDT
            "2026-03-10T13:00:00Z", // Tue, EDT
        ]
    );
    assert_eq!(
        firings(
            "0 9 * * 1-5",
            NEW_YORK,
            "2026-10-29T00:00:00Z",
            "2026-11-04T00:00:00Z"
        ),
        [
            "2026-10-29T13:00:00Z", // Thu, EDT
            "2026-10-30T13:00:00Z", // Fri, EDT
            "2026-11-02T14:00:00Z", // Mon, EST
            "2026-11-03T14:00:00Z", // Tue, EST
        ]
    );
}

#[test]
fn weekday_ranges_lists_and_names() {
    // 2026-11-23 is a Monday.
    let week = ("2026-11-23T00:00:00Z", "2026-11-30T00:00:00Z");
    let weekdays = [
        "2026-11-23T09:00:00Z",
        "2026-11-24T09:00:00Z",
        "2026-11-25T09:00:00Z",
        "2026-11-26T09:00:00Z",
        "2026-11-27T09:00:00Z",
    ];
    assert_eq!(firings("0 9 * * 1-5", None, week.0, week.1), weekdays);
    assert_eq!(firings("0 9 * * MON-FRI", None, week.0, week.1), weekdays);
    assert_eq!(
        firings("0 9 * * 0,6", None, week.0, week.1),
        ["2026-11-28T09:00:00Z", "2026-11-29T09:00:00Z"]
    );
    // 7 is Sunday too.
    assert_eq!(
        firings("0 9 * * 7", None, week.0, week.1),
        ["2026-11-29T09:00:00Z"]
    );
    assert_eq!(
        firings("30 16 * * 2-4", None, week.0, week.1),
        [
            "2026-11-24T16:30:00Z",
            "2026-11-25T16:30:00Z",
            "2026-11-26T16:30:00Z"
        ]
    );
    // Day of month and day of week restricted together: either is enough (the 13th,
    // and every Friday).
    assert_eq!(
        firings(
            "0 9 13 * 5",
            None,
            "2026-02-01T00:00:00Z",
            "2026-03-01T00:00:00Z"
        ),
        [
            "2026-02-06T09:00:00Z",
            "2026-02-13T09:00:00Z",
            "2026-02-20T09:00:00Z",
            "2026-02-27T09:00:00Z"
        ]
    );
    // A range that wraps around the week is rejected when the workflow is validated.
    let errors = support::errors_in(&with_triggers(json!([scheduled("0 9 * * 5-1", None)])));
    assert_eq!(
        support::location(&errors[0]),
        "triggers[0] (SCHEDULED).schedule"
    );
}

#[test]
fn month_ends() {
    let year = ("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z");
    // Only the months that have a 31st.
    assert_eq!(
        firings("0 0 31 * *", None, year.0, year.1),
        [
            "2026-01-31T00:00:00Z",
            "2026-03-31T00:00:00Z",
            "2026-05-31T00:00:00Z",
            "2026-07-31T00:00:00Z",
            "2026-08-31T00:00:00Z",
            "2026-10-31T00:00:00Z",
            "2026-12-31T00:00:00Z",
        ]
    );
    // 28-31 is every day from the 28th that the month has.
    let february = |year: i32| {
        firings(
            "0 0 28-31 * *",
            None,
            &format!("{year}-02-01T00:00:00Z"),
            &format!("{year}-03-01T00:00:00Z"),
        )
    };
    assert_eq!(february(2026), ["2026-02-28T00:00:00Z"]);
    assert_eq!(
        february(2028),
        ["2028-02-28T00:00:00Z", "2028-02-29T00:00:00Z"]
    );
    assert_eq!(
        firings(
            "0 0 28-31 * *",
            None,
            "2026-04-01T00:00:00Z",
            "2026-05-01T00:00:00Z"
        ),
        [
            "2026-04-28T00:00:00Z",
            "2026-04-29T00:00:00Z",
            "2026-04-30T00:00:00Z"
        ]
    );
    // `L`: the last day, whatever the month.
    assert_eq!(
        firings(
            "0 18 L * *",
            None,
            "2026-01-15T00:00:00Z",
            "2026-05-15T00:00:00Z"
        ),
        [
            "2026-01-31T18:00:00Z",
            "2026-02-28T18:00:00Z",
            "2026-03-31T18:00:00Z",
            "2026-04-30T18:00:00Z"
        ]
    );
    // The 29th of February waits for a leap year.
    assert_eq!(
        firings(
            "0 0 29 2 *",
            None,
            "2026-01-01T00:00:00Z",
            "2030-01-01T00:00:00Z"
        ),
        ["2028-02-29T00:00:00Z"]
    );
    // Month ends in a time zone: midnight New York time on the 31st.
    assert_eq!(
        firings(
            "0 0 31 * *",
            NEW_YORK,
            "2026-10-01T00:00:00Z",
            "2027-01-01T00:00:00Z"
        ),
        ["2026-10-31T04:00:00Z", "2026-12-31T05:00:00Z"]
    );
}

#[test]
fn the_range_includes_its_start_and_excludes_its_end() {
    assert_eq!(
        firings(
            "0 9 * * *",
            None,
            "2026-11-23T09:00:00Z",
            "2026-11-25T09:00:00Z"
        ),
        ["2026-11-23T09:00:00Z", "2026-11-24T09:00:00Z"]
    );
    // Several triggers: merged in time order, ties in index order, one entry each.
    let plan = support::plan(&with_triggers(json!([
        scheduled("0 12 * * *", None),
        scheduled("0 9,12 * * *", None),
    ])));
    let merged: Vec<(usize, String)> = scheduled_firings(
        plan.triggers(),
        at("2026-11-23T00:00:00Z"),
        at("2026-11-24T00:00:00Z"),
    )
    .map(|(trigger, instant)| (trigger.index(), utc(instant)))
    .collect();
    assert_eq!(
        merged,
        [
            (1, "2026-11-23T09:00:00Z".to_owned()),
            (0, "2026-11-23T12:00:00Z".to_owned()),
            (1, "2026-11-23T12:00:00Z".to_owned()),
        ]
    );
}

/// The algo-trading trigger, in New York time, with its condition.
fn new_york_workflow() -> Value {
    with_triggers(json!([{
        "type": "SCHEDULED", "schedule": "0 9 * * 1-5", "timezone": "America/New_York",
        "condition": {"expression": "market.isOpen() && volatility.level < 0.3"}
    }]))
}

#[test]
fn the_schedule_runs_on_the_engines_virtual_clock() {
    // Fri 2026-03-06 00:00 UTC: the stream sleeps to each weekday morning.
    let h = Harness::on_clock(
        VirtualClock::starting_at(at("2026-03-06T00:00:00Z")),
        |builder| builder,
    );
    h.register(h.agent("a-1").of_type("T").answers(json!({})));
    let id = h.workflow(&new_york_workflow());
    let triggers = Triggers::new(&h.engine, &id).unwrap();
    triggers.set_value("market.isOpen()", json!(true));
    triggers.set_value("volatility.level", json!(0.2));

    let mut schedule = triggers.run_schedule();
    let mut fired = Vec::new();
    for day in 0..3 {
        if day == 1 {
            // Monday: too volatile.
            triggers.set_value("volatility.level", json!(0.5));
        } else if day == 2 {
            triggers.set_value("volatility.level", json!(0.25));
        }
        let firing = h
            .clock
            .block_on(schedule.next())
            .expect("the schedule goes on");
        assert_eq!(h.clock.now(), firing.at, "fired at its occurrence");
        let run = match firing.not_fired() {
            Some(reason) => {
                assert_eq!(reason, &NotFiredReason::ConditionFalse);
                fired.push(format!("{} not fired", utc(firing.at)));
                continue;
            }
            None => firing.into_run().expect("a run"),
        };
        let report = h.clock.block_on(run);
        assert_eq!(report.status, RunStatus::Completed);
        fired.push(format!("{} {}", utc(report.started_at), report.run_id));
    }
    assert_eq!(
        fired,
        [
            "2026-03-06T14:00:00Z run-1",     // Fri, 09:00 EST
            "2026-03-09T13:00:00Z not fired", // Mon, 09:00 EDT
            "2026-03-10T13:00:00Z run-2",     // Tue, 09:00 EDT
        ]
    );
    let triggered: Vec<String> = h
        .events()
        .into_iter()
        .filter_map(|event| match event {
            RunEvent::RunStarted { trigger, .. } => trigger,
            _ => None,
        })
        .collect();
    assert_eq!(triggered, ["triggers[0] (SCHEDULED)"; 2]);
}

#[test]
fn the_same_schedule_runs_on_another_executor_moving_time_by_hand() {
    // A host that polls with futures' own executor and moves a virtual clock itself:
    // the schedule only reads the clock it is given.
    let clock = VirtualClock::starting_at(at("2026-11-25T10:00:00Z"));
    let engine = Engine::builder().clock(clock.clone()).build();
    engine.add_plan(support::plan(&with_triggers(json!([scheduled(
        "0 9 * * 1-5",
        None
    )]))));
    let triggers = Triggers::new(&engine, "cron").unwrap();
    let mut schedule = triggers.run_schedule();
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    assert!(schedule.poll_next_unpin(&mut cx).is_pending());
    assert_eq!(clock.next_deadline(), Some(at("2026-11-26T09:00:00Z")));
    clock.advance(Duration::from_secs(3600));
    assert!(schedule.poll_next_unpin(&mut cx).is_pending());
    clock.advance_to(at("2026-11-26T09:00:00Z"));
    let Poll::Ready(Some(firing)) = schedule.poll_next_unpin(&mut cx) else {
        panic!("due at 09:00");
    };
    assert_eq!(utc(firing.at), "2026-11-26T09:00:00Z");
    assert!(firing.run().is_some());
    // A clock that jumps over several occurrences fires the trigger once.
    assert!(schedule.poll_next_unpin(&mut cx).is_pending());
    clock.advance_to(at("2026-12-02T12:00:00Z"));
    let Poll::Ready(Some(firing)) = schedule.poll_next_unpin(&mut cx) else {
        panic!("due");
    };
    assert_eq!(utc(firing.at), "2026-11-27T09:00:00Z");
    assert!(schedule.poll_next_unpin(&mut cx).is_pending());
    assert_eq!(clock.next_deadline(), Some(at("2026-12-03T09:00:00Z")));
}

#[test]
fn hosts_that_keep_time_fire_what_is_due() {
    let clock = VirtualClock::starting_at(at("2026-03-06T00:00:00Z"));
    let engine = Engine::builder().clock(clock.clone()).build();
    engine.add_plan(support::plan(&new_york_workflow()));
    let triggers = Triggers::new(&engine, "cron").unwrap();
    let next = triggers.next_scheduled(clock.now()).unwrap();
    assert_eq!(utc(next), "2026-03-06T14:00:00Z");
    assert!(
        triggers
            .fire_due(next - chrono::TimeDelta::minutes(1))
            .is_empty()
    );
    // Without a context, the condition cannot be evaluated: no run, and the reason.
    let firings = triggers.fire_due(next);
    assert_eq!(firings.len(), 1);
    assert!(matches!(
        firings[0].not_fired(),
        Some(NotFiredReason::ConditionFailed(_))
    ));
    assert_eq!(
        utc(triggers.next_scheduled(next).unwrap()),
        "2026-03-09T13:00:00Z"
    );
}

#[test]
fn the_library_works_on_the_reference_workflow() {
    let plan =
        ExecutionPlan::from_json(include_str!("../examples/workflows/algo-trading.json")).unwrap();
    let listed: Vec<String> = scheduled_firings(
        plan.triggers(),
        at("2026-11-25T10:00:00Z"),
        at("2026-12-01T00:00:00Z"),
    )
    .map(|(_, instant)| utc(instant))
    .collect();
    assert_eq!(
        listed,
        [
            "2026-11-26T09:00:00Z",
            "2026-11-27T09:00:00Z",
            "2026-11-30T09:00:00Z"
        ]
    );
}

// ---- `tradeflow schedule` ----

/// Runs `tradeflow schedule` on `workflow` (written to a scratch file) over a range.
fn schedule_command(name: &str, workflow: &Value, from: &str, to: &str) -> std::process::Output {
    let dir = command::scratch_dir(name);
    let path = dir.join("workflow.json");
    std::fs::write(&path, workflow.to_string()).unwrap();
    let path = path.to_str().unwrap().to_owned();
    command::run(&["schedule", &path, "--from", from, "--to", to])
}

fn lines(output: &std::process::Output) -> Vec<String> {
    command::stdout(output).lines().map(str::to_owned).collect()
}

#[test]
fn tradeflow_schedule_lists_the_same_instants_across_daylight_saving() {
    let output = schedule_command(
        "schedule-dst",
        &with_triggers(json!([scheduled("30 2 * * *", NEW_YORK)])),
        "2026-03-07T00:00:00Z",
        "2026-03-10T00:00:00Z",
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{:?}",
        command::stderr_lines(&output)
    );
    assert_eq!(
        lines(&output),
        firings(
            "30 2 * * *",
            NEW_YORK,
            "2026-03-07T00:00:00Z",
            "2026-03-10T00:00:00Z"
        )
    );
    assert_eq!(
        lines(&output),
        [
            "2026-03-07T07:30:00Z",
            "2026-03-08T07:00:00Z",
            "2026-03-09T06:30:00Z"
        ]
    );

    let output = schedule_command(
        "schedule-fall-back",
        &with_triggers(json!([
            scheduled("0 9 * * 1-5", NEW_YORK),
            scheduled("30 1 * * *", NEW_YORK)
        ])),
        "2026-10-30T00:00:00Z",
        "2026-11-03T00:00:00Z",
    );
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        lines(&output),
        [
            "2026-10-30T05:30:00Z",
            "2026-10-30T13:00:00Z",
            "2026-10-31T05:30:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-02T06:30:00Z",
            "2026-11-02T14:00:00Z",
        ]
    );
}

#[test]
fn tradeflow_schedule_lists_cron_firings_without_evaluating_conditions() {
    let output = command::run(&[
        "schedule",
        "examples/workflows/algo-trading.json",
        "--from",
        "2026-11-25T10:00:00Z",
        "--to",
        "2026-12-01T00:00:00Z",
    ]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        command::stdout(&output),
        "2026-11-26T09:00:00Z\n2026-11-27T09:00:00Z\n2026-11-30T09:00:00Z\n"
    );
    let stderr = command::stderr_lines(&output).join("\n");
    assert!(stderr.contains("conditions not evaluated"), "{stderr}");

    // Month ends through the command too; an offset in --from is read as the instant.
    let output = schedule_command(
        "schedule-month-ends",
        &with_triggers(json!([scheduled("0 0 31 * *", None)])),
        "2026-01-01T01:00:00+01:00",
        "2026-06-01T00:00:00Z",
    );
    assert_eq!(
        lines(&output),
        [
            "2026-01-31T00:00:00Z",
            "2026-03-31T00:00:00Z",
            "2026-05-31T00:00:00Z"
        ]
    );
}

#[test]
fn tradeflow_schedule_rejects_bad_arguments_with_code_2() {
    let workflow = "examples/workflows/algo-trading.json";
    for (args, expected) in [
        (
            vec!["schedule", workflow, "--from", "2026-11-25T10:00:00Z"],
            "--to",
        ),
        (
            vec!["schedule", workflow, "--to", "2026-11-25T10:00:00Z"],
            "--from",
        ),
        (
            vec![
                "schedule",
                workflow,
                "--from",
                "tomorrow",
                "--to",
                "2026-11-25T10:00:00Z",
            ],
            "--from `tomorrow`",
        ),
        (
            vec![
                "schedule",
                workflow,
                "--from",
                "2026-11-25T10:00:00Z",
                "--to",
                "2026-11-25T10:00:00Z",
            ],
            "must be after --from",
        ),
        (
            vec![
                "schedule",
                "--from",
                "2026-11-25T10:00:00Z",
                "--to",
                "2026-11-26T10:00:00Z",
            ],
            "WORKFLOW.json",
        ),
        (
            vec![
                "schedule",
                "examples/workflows/invalid/seed-portfolio-rebalancing-verbatim.json",
                "--from",
                "2026-11-25T10:00:00Z",
                "--to",
                "2026-11-26T10:00:00Z",
            ],
            "triggers[0] (SCHEDULED).condition.expression",
        ),
    ] {
        let output = command::run(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        let stderr = command::stderr_lines(&output).join("\n");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
