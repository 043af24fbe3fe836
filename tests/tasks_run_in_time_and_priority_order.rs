//! The task scheduler through its public API, mostly on a virtual clock: tasks are popped
//! by due time, then priority (lower first), then scheduling order; delays count from the
//! clock; cron tasks recur under one id, in their time zone; a task popped after its
//! deadline is delivered marked missed; reschedule and cancel change exactly what they
//! select; range listings honour their bounds; `due` sleeps on the clock and wakes for an
//! earlier task.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::future;
use proptest::prelude::*;
use serde_json::json;
use tradeflow::clock::{Clock, SystemClock, VirtualClock};
use tradeflow::plan::{ExecutionPlan, Schedule, TriggerKind};
use tradeflow::scheduler::{
    DueStatus, DueTask, Recurrence, Reschedule, ScheduleError, SchedulePolicy, ScheduledTask, Task,
    TaskFilter, TaskId, TaskQueue, TaskScheduler, TimeRange,
};

fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("an RFC 3339 instant")
}

/// Monday 2026-01-05, 09:00 UTC.
fn t0() -> DateTime<Utc> {
    at("2026-01-05T09:00:00Z")
}

fn minutes(n: i64) -> TimeDelta {
    TimeDelta::minutes(n)
}

fn hours(n: i64) -> TimeDelta {
    TimeDelta::hours(n)
}

/// A queue on a virtual clock starting at `start`.
fn queue_at(start: DateTime<Utc>) -> (VirtualClock, TaskQueue) {
    let clock = VirtualClock::starting_at(start);
    (clock.clone(), TaskQueue::new(clock))
}

fn task(name: &str) -> Task {
    Task::new(name.to_owned(), json!({"name": name}))
}

fn schedule(queue: &TaskQueue, name: &str, policy: SchedulePolicy) -> TaskId {
    queue
        .schedule_task(task(name), policy)
        .unwrap_or_else(|error| panic!("{name}: {error}"))
}

/// An id no task of another queue has: made by a queue of its own.
fn foreign_id() -> TaskId {
    let (_clock, other) = queue_at(t0());
    schedule(
        &other,
        "elsewhere",
        SchedulePolicy::at(t0() + TimeDelta::days(400)),
    )
}

fn names(tasks: &[ScheduledTask]) -> Vec<&str> {
    tasks
        .iter()
        .map(|scheduled| scheduled.task().name())
        .collect()
}

fn popped_names(tasks: &[DueTask]) -> Vec<&str> {
    tasks.iter().map(|due| due.task().name()).collect()
}

/// A compiled cron schedule, as a workflow's `SCHEDULED` trigger gives it.
fn cron(pattern: &str, timezone: Option<&str>) -> Schedule {
    let mut trigger = json!({"type": "SCHEDULED", "schedule": pattern});
    if let Some(timezone) = timezone {
        trigger["timezone"] = json!(timezone);
    }
    let definition = json!({
        "id": "scheduled",
        "steps": [{"id": "a", "type": "task", "agentCriteria": {"type": "A"}, "task": {"type": "T"}}],
        "triggers": [trigger]
    });
    let plan = ExecutionPlan::from_json(&definition.to_string()).expect("a valid workflow");
    match plan.triggers().first().map(|trigger| trigger.kind()) {
        Some(TriggerKind::Scheduled(schedule)) => (**schedule).clone(),
        other => panic!("a scheduled trigger, not {other:?}"),
    }
}

#[test]
fn tasks_pop_by_due_time_then_priority_then_scheduling_order() {
    let (_clock, queue) = queue_at(t0());
    let one = t0() + minutes(1);
    schedule(&queue, "c-later", SchedulePolicy::at(t0() + minutes(2)));
    schedule(&queue, "b-low", SchedulePolicy::at(one).priority(3));
    schedule(&queue, "b-first", SchedulePolicy::at(one));
    schedule(&queue, "b-urgent", SchedulePolicy::at(one).priority(-5));
    schedule(&queue, "b-second", SchedulePolicy::at(one));
    schedule(&queue, "a-earliest", SchedulePolicy::at(t0()).priority(100));
    assert_eq!(queue.len(), 6);
    assert_eq!(queue.next_due(), Some(t0()));

    // Only what is due at `now` pops.
    let first = queue.pop_due(t0()).expect("a-earliest is due");
    assert_eq!(first.task().name(), "a-earliest");
    assert_eq!(first.lateness(), TimeDelta::zero());
    assert_eq!(queue.pop_due(t0()), None);
    assert_eq!(queue.next_due(), Some(one));

    let rest = queue.drain_due(t0() + TimeDelta::hours(1));
    assert_eq!(
        popped_names(&rest),
        ["b-urgent", "b-first", "b-second", "b-low", "c-later"]
    );
    assert!(rest.iter().all(|due| due.status() == DueStatus::OnTime));
    assert!(queue.is_empty());
    assert_eq!(queue.next_due(), None);
}

#[test]
fn a_delay_counts_from_the_clock_when_the_task_is_scheduled() {
    let (clock, queue) = queue_at(t0());
    clock.advance(Duration::from_secs(600));
    let id = schedule(
        &queue,
        "check",
        SchedulePolicy::after(Duration::from_secs(300)),
    );
    let scheduled = queue.task(id).expect("scheduled");
    assert_eq!(scheduled.due(), t0() + minutes(15));
    assert_eq!(scheduled.priority(), 0);
    assert_eq!(scheduled.deadline(), None);
    assert!(!scheduled.is_recurring());

    // An instant already past is due at once.
    schedule(&queue, "overdue", SchedulePolicy::at(t0()));
    let overdue = queue.pop_due(clock.now()).expect("due at once");
    assert_eq!(overdue.task().name(), "overdue");
    assert_eq!(overdue.lateness(), minutes(10));

    let too_far = queue.schedule_task(task("never"), SchedulePolicy::after(Duration::MAX));
    assert!(
        matches!(&too_far, Err(ScheduleError::DelayOutOfRange { task, from, .. })
            if task == "never" && *from == t0() + minutes(10)),
        "{too_far:?}"
    );
    assert_eq!(queue.len(), 1, "a failed schedule adds nothing");
}

#[test]
fn cron_tasks_recur_under_one_id_after_each_pop() {
    // Monday 09:00 exactly: the first firing is strictly after, on Tuesday.
    let (clock, queue) = queue_at(t0());
    let id = schedule(
        &queue,
        "open",
        SchedulePolicy::cron(cron("0 9 * * 1-5", None)),
    );
    assert!(queue.task(id).expect("scheduled").is_recurring());
    let mut fired = Vec::new();
    for _ in 0..5 {
        let due = clock.block_on(queue.due());
        assert_eq!(due.id(), id);
        assert_eq!(due.due(), clock.now(), "popped when due");
        assert_eq!(queue.next_due(), due.next_due());
        fired.push(due.due());
    }
    assert_eq!(
        fired,
        [
            at("2026-01-06T09:00:00Z"),
            at("2026-01-07T09:00:00Z"),
            at("2026-01-08T09:00:00Z"),
            at("2026-01-09T09:00:00Z"),
            at("2026-01-12T09:00:00Z"),
        ]
    );
    assert_eq!(queue.len(), 1, "a recurring task is one task");

    // Cancelling the id ends the recurrence.
    let cancelled = queue.cancel_task(id).expect("still scheduled");
    assert_eq!(cancelled.due(), at("2026-01-13T09:00:00Z"));
    assert!(queue.is_empty());
}

#[test]
fn cron_tasks_fire_at_local_time_in_their_time_zone_across_a_clock_change() {
    // Friday 2026-03-06; New York moves from EST (UTC-5) to EDT (UTC-4) on Sunday 8 March.
    let (clock, queue) = queue_at(at("2026-03-06T12:00:00Z"));
    let schedule_ny = cron("30 9 * * 1-5", Some("America/New_York"));
    schedule(&queue, "ny-open", SchedulePolicy::cron(schedule_ny));
    let fired: Vec<DateTime<Utc>> = (0..2).map(|_| clock.block_on(queue.due()).due()).collect();
    assert_eq!(
        fired,
        [at("2026-03-06T14:30:00Z"), at("2026-03-09T13:30:00Z")]
    );
}

#[test]
fn occurrences_missed_while_nobody_popped_are_skipped_not_caught_up() {
    let (_clock, queue) = queue_at(t0());
    let id = schedule(
        &queue,
        "tick",
        SchedulePolicy::cron(cron("* * * * *", None)).start_within(Duration::from_secs(30)),
    );
    assert_eq!(queue.next_due(), Some(t0() + minutes(1)));
    // Popped ten and a half minutes late: delivered once, missed, and the next
    // occurrence is the first one after the pop.
    let late = queue
        .pop_due(t0() + minutes(11) + TimeDelta::seconds(30))
        .expect("due");
    assert_eq!(late.id(), id);
    assert_eq!(late.due(), t0() + minutes(1));
    assert_eq!(late.status(), DueStatus::Missed);
    assert_eq!(late.next_due(), Some(t0() + minutes(12)));
    assert_eq!(
        queue.pop_due(t0() + minutes(11) + TimeDelta::seconds(30)),
        None
    );
    // The next occurrence has its own deadline, and makes it.
    let next = queue.task(id).expect("recurs");
    assert_eq!(
        next.deadline(),
        Some(t0() + minutes(12) + TimeDelta::seconds(30))
    );
    let on_time = queue.pop_due(t0() + minutes(12)).expect("due");
    assert_eq!(on_time.status(), DueStatus::OnTime);
}

#[test]
fn a_task_popped_after_its_deadline_is_delivered_marked_missed() {
    let (_clock, queue) = queue_at(t0());
    let one = t0() + minutes(1);
    schedule(
        &queue,
        "in-time",
        SchedulePolicy::at(one).deadline(t0() + minutes(2)),
    );
    schedule(
        &queue,
        "too-late",
        SchedulePolicy::at(one).deadline(t0() + minutes(2)),
    );
    schedule(
        &queue,
        "relative",
        SchedulePolicy::at(one).start_within(Duration::from_secs(90)),
    );
    let listed = queue.get_schedule(TimeRange::all());
    assert_eq!(
        listed
            .iter()
            .map(ScheduledTask::deadline)
            .collect::<Vec<_>>(),
        [
            Some(t0() + minutes(2)),
            Some(t0() + minutes(2)),
            Some(t0() + TimeDelta::seconds(150))
        ]
    );

    // At the deadline is still on time.
    let in_time = queue.pop_due(t0() + minutes(2)).expect("due");
    assert_eq!(
        (in_time.task().name(), in_time.status()),
        ("in-time", DueStatus::OnTime)
    );
    let too_late = queue.pop_due(t0() + minutes(3)).expect("due");
    assert_eq!(too_late.task().name(), "too-late");
    assert!(too_late.is_missed());
    assert_eq!(too_late.popped_at(), t0() + minutes(3));
    let relative = queue.pop_due(t0() + minutes(3)).expect("due");
    assert_eq!(
        (relative.task().name(), relative.status()),
        ("relative", DueStatus::Missed)
    );
}

#[test]
fn impossible_deadlines_are_rejected_naming_the_task() {
    let (_clock, queue) = queue_at(t0());
    let before = queue.schedule_task(
        task("backwards"),
        SchedulePolicy::at(t0() + minutes(5)).deadline(t0()),
    );
    assert_eq!(
        before,
        Err(ScheduleError::DeadlineBeforeDue {
            task: "backwards".to_owned(),
            due: t0() + minutes(5),
            deadline: t0(),
        })
    );
    let fixed = queue.schedule_task(
        task("daily"),
        SchedulePolicy::cron(cron("0 9 * * *", None)).deadline(t0() + TimeDelta::days(1)),
    );
    assert!(
        matches!(&fixed, Err(ScheduleError::FixedDeadlineOnRecurring { task, .. }) if task == "daily"),
        "{fixed:?}"
    );
    assert!(
        fixed
            .unwrap_err()
            .to_string()
            .starts_with("task `daily`: a recurring task cannot have a fixed deadline")
    );
    assert!(queue.is_empty());
}

#[test]
fn reschedule_changes_exactly_the_tasks_its_filter_selects() {
    let (_clock, queue) = queue_at(t0());
    let hour = TimeDelta::hours(1);
    let eu = queue
        .schedule_task(
            task("rebalance").tag("eu"),
            SchedulePolicy::at(t0() + hour).start_within(Duration::from_secs(60)),
        )
        .unwrap();
    let us = queue
        .schedule_task(
            task("rebalance").tag("us"),
            SchedulePolicy::at(t0() + hours(2)).deadline(t0() + hours(2)),
        )
        .unwrap();
    let hedge = queue
        .schedule_task(task("hedge").tag("eu"), SchedulePolicy::at(t0() + hours(3)))
        .unwrap();
    let report = schedule(&queue, "report", SchedulePolicy::at(t0() + hours(4)));

    // By name: both rebalances move half an hour later. The relative deadline moves with
    // its task, the fixed one stays.
    let shifted = queue
        .reschedule_tasks(
            &TaskFilter::all().name("rebalance"),
            Reschedule::ShiftBy(minutes(30)),
        )
        .unwrap();
    assert_eq!(shifted, 2);
    let eu_task = queue.task(eu).unwrap();
    assert_eq!(eu_task.due(), t0() + minutes(90));
    assert_eq!(eu_task.deadline(), Some(t0() + minutes(91)));
    let us_task = queue.task(us).unwrap();
    assert_eq!(us_task.due(), t0() + minutes(150));
    assert_eq!(us_task.deadline(), Some(t0() + hours(2)));

    // By id: the hedge moves first.
    let moved = queue
        .reschedule_tasks(&TaskFilter::all().ids([hedge]), Reschedule::MoveTo(t0()))
        .unwrap();
    assert_eq!(moved, 1);
    assert_eq!(
        names(&queue.get_schedule(TimeRange::all())),
        ["hedge", "rebalance", "rebalance", "report"]
    );

    // By tag and due time: only the EU task due in the first two hours.
    let urgent = queue
        .reschedule_tasks(
            &TaskFilter::all()
                .tag("eu")
                .due_in(t0() + minutes(1)..t0() + hours(2)),
            Reschedule::Priority(-1),
        )
        .unwrap();
    assert_eq!(urgent, 1);
    assert_eq!(queue.task(eu).unwrap().priority(), -1);
    assert_eq!(queue.task(hedge).unwrap().priority(), 0);

    // Every condition must hold; unknown ids are ignored.
    let none = queue
        .reschedule_tasks(
            &TaskFilter::all().name("report").tag("eu"),
            Reschedule::ShiftBy(hour),
        )
        .unwrap();
    assert_eq!(none, 0);
    let unknown = queue
        .reschedule_tasks(
            &TaskFilter::all().ids([foreign_id(), report]),
            Reschedule::ShiftBy(hour),
        )
        .unwrap();
    assert_eq!(unknown, 1);
    assert_eq!(queue.task(report).unwrap().due(), t0() + hours(5));

    // A shift out of range changes nothing at all.
    let before = queue.get_schedule(TimeRange::all());
    let error = queue
        .reschedule_tasks(&TaskFilter::all(), Reschedule::ShiftBy(TimeDelta::MAX))
        .unwrap_err();
    assert!(
        matches!(error, ScheduleError::ShiftOutOfRange { id, .. } if id == hedge),
        "{error:?}"
    );
    assert_eq!(queue.get_schedule(TimeRange::all()), before);

    // The US rebalance was moved past its fixed deadline: it pops as missed.
    let popped = queue.drain_due(t0() + hours(6));
    let us_popped = popped.iter().find(|due| due.id() == us).unwrap();
    assert!(us_popped.is_missed());
}

#[test]
fn a_rescheduled_task_keeps_its_place_among_equals() {
    let (_clock, queue) = queue_at(t0());
    let first = schedule(&queue, "first", SchedulePolicy::at(t0() + minutes(5)));
    schedule(&queue, "second", SchedulePolicy::at(t0() + minutes(1)));
    // `first` joins `second` at +1 min: it was scheduled first, so it goes first.
    queue
        .reschedule_tasks(
            &TaskFilter::all().ids([first]),
            Reschedule::MoveTo(t0() + minutes(1)),
        )
        .unwrap();
    assert_eq!(
        popped_names(&queue.drain_due(t0() + minutes(1))),
        ["first", "second"]
    );
}

#[test]
fn cancel_removes_the_task_and_returns_it() {
    let (_clock, queue) = queue_at(t0());
    let keep = schedule(&queue, "keep", SchedulePolicy::at(t0() + minutes(1)));
    let drop_it = queue
        .schedule_task(
            Task::new("drop", json!({"qty": 5})),
            SchedulePolicy::at(t0() + minutes(2)).priority(7),
        )
        .unwrap();
    let cancelled = queue.cancel_task(drop_it).expect("scheduled");
    assert_eq!(cancelled.id(), drop_it);
    assert_eq!(cancelled.priority(), 7);
    assert_eq!(cancelled.task().payload(), &json!({"qty": 5}));
    // Nothing else shares a cancelled one-off task: it comes back by value.
    let listed = queue.get_schedule(TimeRange::all());
    assert_eq!(
        cancelled.try_into_task().ok().map(Task::into_payload),
        Some(json!({"qty": 5}))
    );
    // A listed task is shared with the queue.
    let shared = listed[0].clone();
    let shared = shared.try_into_task().expect_err("the queue holds it");
    assert_eq!(shared.into_task().name(), "keep");
    assert_eq!(queue.cancel_task(drop_it), None, "cancelled already");
    assert_eq!(
        queue.cancel_task(foreign_id()),
        None,
        "never scheduled here"
    );
    assert_eq!(queue.task(drop_it), None);

    assert_eq!(
        queue.pop_due(t0() + minutes(5)).map(|due| due.id()),
        Some(keep)
    );
    assert_eq!(queue.cancel_task(keep), None, "a one-off task, popped");
    assert!(queue.is_empty());
}

#[test]
fn get_schedule_lists_a_range_in_pop_order_with_exact_bounds() {
    let (_clock, queue) = queue_at(t0());
    let (a, b, c) = (t0(), t0() + minutes(1), t0() + minutes(2));
    schedule(&queue, "a-low", SchedulePolicy::at(a).priority(1));
    schedule(&queue, "c", SchedulePolicy::at(c));
    schedule(&queue, "a-high", SchedulePolicy::at(a).priority(i32::MIN));
    schedule(&queue, "b", SchedulePolicy::at(b).priority(i32::MAX));

    let list = |range: TimeRange| -> Vec<String> {
        names(&queue.get_schedule(range))
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(list(TimeRange::all()), ["a-high", "a-low", "b", "c"]);
    assert_eq!(list((a..b).into()), ["a-high", "a-low"]);
    assert_eq!(list((a..=b).into()), ["a-high", "a-low", "b"]);
    assert_eq!(list((b..).into()), ["b", "c"]);
    assert_eq!(list((..b).into()), ["a-high", "a-low"]);
    assert_eq!(list((..=b).into()), ["a-high", "a-low", "b"]);
    assert_eq!(list((a..=a).into()), ["a-high", "a-low"]);
    use std::ops::Bound::{Excluded, Included};
    assert_eq!(list((Excluded(a), Included(c)).into()), ["b", "c"]);
    assert_eq!(list((Excluded(a), Excluded(c)).into()), ["b"]);
    // Empty and reversed ranges list nothing (and do not panic).
    assert!(list((a..a).into()).is_empty());
    assert!(list((c..a).into()).is_empty());
    assert!(list((Excluded(b), Excluded(b)).into()).is_empty());
    assert!(list((Excluded(b), Included(b)).into()).is_empty());
    assert!(list((c + minutes(1)..).into()).is_empty());

    // The listing is the pop order.
    let listed = queue.get_schedule(TimeRange::all());
    let popped: Vec<ScheduledTask> = queue
        .drain_due(c)
        .into_iter()
        .map(DueTask::into_scheduled)
        .collect();
    assert_eq!(popped, listed);
}

#[test]
fn due_wakes_for_a_task_scheduled_before_the_one_it_waits_for() {
    let (clock, queue) = queue_at(t0());
    schedule(
        &queue,
        "late",
        SchedulePolicy::at(t0() + TimeDelta::hours(1)),
    );
    let (due, ()) = clock.block_on(future::join(queue.due(), async {
        clock.sleep(Duration::from_secs(60)).await;
        schedule(
            &queue,
            "urgent",
            SchedulePolicy::after(Duration::from_secs(300)),
        );
    }));
    assert_eq!(due.task().name(), "urgent");
    assert_eq!(due.due(), t0() + minutes(6));
    assert_eq!(
        clock.now(),
        t0() + minutes(6),
        "the clock never went to the later task"
    );
    assert_eq!(clock.pending_timers(), 0, "no sleep is left behind");
    assert_eq!(queue.next_due(), Some(t0() + TimeDelta::hours(1)));

    // Cancelling the task waited for: the waiter moves on to the next one.
    schedule(&queue, "soon", SchedulePolicy::at(t0() + minutes(10)));
    let (due, ()) = clock.block_on(future::join(queue.due(), async {
        clock.sleep(Duration::from_secs(60)).await;
        let soon = queue.get_schedule(TimeRange::all())[0].id();
        queue.cancel_task(soon).expect("scheduled");
    }));
    assert_eq!(due.task().name(), "late");
    assert_eq!(clock.now(), t0() + TimeDelta::hours(1));
}

#[test]
fn due_waits_for_a_task_scheduled_into_an_empty_queue() {
    let (clock, queue) = queue_at(t0());
    let mut due = Box::pin(queue.due());
    // Nothing scheduled: the waiter is stalled, and holds no timer.
    assert!(clock.run_until_stalled(&mut due).is_pending());
    assert_eq!(clock.pending_timers(), 0);
    schedule(
        &queue,
        "later",
        SchedulePolicy::after(Duration::from_secs(600)),
    );
    let popped = match clock.run_until_stalled(&mut due) {
        std::task::Poll::Ready(popped) => popped,
        std::task::Poll::Pending => panic!("the task should have woken the waiter"),
    };
    assert_eq!(popped.task().name(), "later");
    assert_eq!(clock.now(), t0() + minutes(10));
}

#[test]
fn due_is_woken_by_a_task_scheduled_from_another_thread() {
    let (clock, queue) = queue_at(t0());
    let due = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            schedule(&queue, "remote", SchedulePolicy::at(t0() + minutes(3)));
        });
        // `block_on` parks the thread (no timer is pending) until the task arrives.
        clock.block_on(queue.due())
    });
    assert_eq!(due.task().name(), "remote");
    assert_eq!(clock.now(), t0() + minutes(3));
}

#[test]
fn several_waiters_each_get_a_different_task() {
    let (clock, queue) = queue_at(t0());
    schedule(&queue, "one", SchedulePolicy::at(t0() + minutes(1)));
    schedule(&queue, "two", SchedulePolicy::at(t0() + minutes(1)));
    let (a, b) = clock.block_on(future::join(queue.due(), queue.due()));
    let mut got = [a.task().name(), b.task().name()];
    got.sort_unstable();
    assert_eq!(got, ["one", "two"]);
    assert!(queue.is_empty());
}

#[test]
fn due_sleeps_on_the_system_clock() {
    let queue: TaskQueue = TaskQueue::default();
    let started = std::time::Instant::now();
    schedule(
        &queue,
        "real",
        SchedulePolicy::after(Duration::from_millis(20)),
    );
    let due = futures::executor::block_on(queue.due());
    assert_eq!(due.task().name(), "real");
    assert!(started.elapsed() >= Duration::from_millis(20));
    assert!(due.popped_at() >= due.due());
    assert!(SystemClock.now() >= due.due());
}

#[test]
fn the_scheduler_works_behind_a_trait_object() {
    let clock = VirtualClock::starting_at(t0());
    let scheduler: Arc<dyn TaskScheduler<u32>> = Arc::new(TaskQueue::new(clock.clone()));
    let id = scheduler
        .schedule_task(
            Task::new("n", 7),
            SchedulePolicy::after(Duration::from_secs(1)),
        )
        .unwrap();
    let due = clock.block_on(scheduler.due());
    assert_eq!((due.id(), *due.task().payload()), (id, 7));
    assert!(scheduler.is_empty());
}

/// A deterministic stream of numbers (an LCG), so the test needs no seed plumbing.
fn numbers(seed: u64) -> impl Iterator<Item = u64> {
    std::iter::successors(Some(seed), |x| {
        Some(
            x.wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407),
        )
    })
    .map(|x| x >> 33)
}

#[test]
fn one_task_and_ten_thousand_come_out_in_the_same_order_rules() {
    // One task.
    let (_clock, queue) = queue_at(t0());
    let id = schedule(&queue, "only", SchedulePolicy::at(t0() + minutes(1)));
    assert_eq!(queue.next_due(), Some(t0() + minutes(1)));
    assert_eq!(names(&queue.get_schedule(TimeRange::all())), ["only"]);
    assert_eq!(queue.pop_due(t0()), None);
    assert_eq!(
        queue.pop_due(t0() + minutes(1)).map(|due| due.id()),
        Some(id)
    );
    assert!(queue.is_empty());

    // Many: due times within an hour (so many collide), priorities in -2..=2.
    let (_clock, queue): (_, TaskQueue<u64>) = {
        let clock = VirtualClock::starting_at(t0());
        (clock.clone(), TaskQueue::new(clock))
    };
    let mut numbers = numbers(7);
    let mut expected = Vec::new();
    for n in 0..10_000_u64 {
        let due = t0() + TimeDelta::seconds((numbers.next().unwrap() % 3600) as i64);
        let priority = (numbers.next().unwrap() % 5) as i32 - 2;
        let id = queue
            .schedule_task(
                Task::new("n", n),
                SchedulePolicy::at(due).priority(priority),
            )
            .unwrap();
        expected.push((due, priority, id));
    }
    expected.sort_unstable();
    let listed: Vec<(DateTime<Utc>, i32, TaskId)> = queue
        .get_schedule(TimeRange::all())
        .iter()
        .map(|task| (task.due(), task.priority(), task.id()))
        .collect();
    assert_eq!(listed, expected);
    let half_hour: Vec<_> = expected
        .iter()
        .filter(|(due, ..)| *due >= t0() + minutes(10) && *due < t0() + minutes(40))
        .collect();
    assert_eq!(
        queue
            .get_schedule((t0() + minutes(10)..t0() + minutes(40)).into())
            .len(),
        half_hour.len()
    );
    let popped: Vec<(DateTime<Utc>, i32, TaskId)> = queue
        .drain_due(t0() + TimeDelta::hours(1))
        .iter()
        .map(|due| (due.due(), due.scheduled().priority(), due.id()))
        .collect();
    assert_eq!(popped, expected);
}

/// One operation of the model test.
#[derive(Debug, Clone)]
enum Op {
    /// Schedule at t0 + this many seconds, with this priority.
    Schedule(u16, i8),
    /// Cancel the n-th id handed out (modulo how many).
    Cancel(usize),
    /// Pop at t0 + this many seconds.
    Pop(u16),
    /// Shift the tasks due in [t0 + a, t0 + a + 60 s) by b seconds.
    Shift(u16, i16),
    /// Schedule a task recurring every 45 s from t0, with this priority.
    Every(i8),
    /// Give the n-th id handed out this priority.
    Reprioritize(usize, i8),
    /// Look up the n-th id handed out.
    Lookup(usize),
}

/// Every 45 seconds from t0.
#[derive(Debug)]
struct Every45;

impl Recurrence for Every45 {
    fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let periods = (after - t0()).num_seconds().div_euclid(45) + 1;
        Some(t0() + TimeDelta::seconds(45 * periods.max(0)))
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..600_u16, -3..3_i8).prop_map(|(at, priority)| Op::Schedule(at, priority)),
        1 => any::<usize>().prop_map(Op::Cancel),
        2 => (0..600_u16).prop_map(Op::Pop),
        1 => (0..600_u16, -120..120_i16).prop_map(|(at, by)| Op::Shift(at, by)),
        1 => (-3..3_i8).prop_map(Op::Every),
        1 => (any::<usize>(), -3..3_i8).prop_map(|(n, priority)| Op::Reprioritize(n, priority)),
        1 => any::<usize>().prop_map(Op::Lookup),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The queue behaves as a sorted set of `(due, priority, id)`, where a popped
    /// recurring task comes back at its next occurrence.
    #[test]
    fn the_queue_behaves_as_a_sorted_set(ops in prop::collection::vec(op(), 1..80)) {
        let (_clock, queue): (_, TaskQueue<()>) = {
            let clock = VirtualClock::starting_at(t0());
            (clock.clone(), TaskQueue::new(clock))
        };
        let mut model: BTreeSet<(DateTime<Utc>, i32, TaskId)> = BTreeSet::new();
        let mut ids: Vec<TaskId> = Vec::new();
        let mut recurring: BTreeSet<TaskId> = BTreeSet::new();
        let find = |model: &BTreeSet<(DateTime<Utc>, i32, TaskId)>, id: TaskId| {
            model.iter().find(|entry| entry.2 == id).copied()
        };
        for op in ops {
            match op {
                Op::Schedule(at, priority) => {
                    let due = t0() + TimeDelta::seconds(i64::from(at));
                    let priority = i32::from(priority);
                    let id = queue
                        .schedule_task(Task::new("t", ()), SchedulePolicy::at(due).priority(priority))
                        .unwrap();
                    model.insert((due, priority, id));
                    ids.push(id);
                }
                Op::Cancel(n) if !ids.is_empty() => {
                    let id = ids[n % ids.len()];
                    let cancelled = queue.cancel_task(id).map(|task| (task.due(), task.priority(), task.id()));
                    let in_model = find(&model, id);
                    prop_assert_eq!(cancelled, in_model);
                    if let Some(entry) = in_model {
                        model.remove(&entry);
                    }
                }
                Op::Cancel(_) => {}
                Op::Pop(at) => {
                    let now = t0() + TimeDelta::seconds(i64::from(at));
                    let popped = queue.pop_due(now).map(|due| (due.due(), due.scheduled().priority(), due.id()));
                    let expected = model.first().copied().filter(|entry| entry.0 <= now);
                    prop_assert_eq!(popped, expected);
                    if let Some(entry) = expected {
                        model.remove(&entry);
                        if recurring.contains(&entry.2) {
                            let next = Every45.next_after(entry.0.max(now)).unwrap();
                            model.insert((next, entry.1, entry.2));
                        }
                    }
                }
                Op::Every(priority) => {
                    let priority = i32::from(priority);
                    let id = queue
                        .schedule_task(Task::new("every", ()), SchedulePolicy::recurring(Every45).priority(priority))
                        .unwrap();
                    model.insert((t0() + TimeDelta::seconds(45), priority, id));
                    ids.push(id);
                    recurring.insert(id);
                }
                Op::Reprioritize(n, priority) if !ids.is_empty() => {
                    let id = ids[n % ids.len()];
                    let priority = i32::from(priority);
                    let changed = queue
                        .reschedule_tasks(&TaskFilter::all().ids([id]), Reschedule::Priority(priority))
                        .unwrap();
                    let in_model = find(&model, id);
                    prop_assert_eq!(changed, usize::from(in_model.is_some()));
                    if let Some(entry) = in_model {
                        model.remove(&entry);
                        model.insert((entry.0, priority, entry.2));
                    }
                }
                Op::Lookup(n) if !ids.is_empty() => {
                    let id = ids[n % ids.len()];
                    let found = queue.task(id).map(|task| (task.due(), task.priority(), task.id()));
                    prop_assert_eq!(found, find(&model, id));
                }
                Op::Reprioritize(..) | Op::Lookup(_) => {}
                Op::Shift(at, by) => {
                    let from = t0() + TimeDelta::seconds(i64::from(at));
                    let by = TimeDelta::seconds(i64::from(by));
                    let range = from..from + TimeDelta::seconds(60);
                    let changed = queue
                        .reschedule_tasks(&TaskFilter::all().due_in(range.clone()), Reschedule::ShiftBy(by))
                        .unwrap();
                    let selected: Vec<_> = model.iter().filter(|entry| range.contains(&entry.0)).copied().collect();
                    prop_assert_eq!(changed, selected.len());
                    for entry in selected {
                        model.remove(&entry);
                        model.insert((entry.0 + by, entry.1, entry.2));
                    }
                }
            }
            prop_assert_eq!(queue.len(), model.len());
            prop_assert_eq!(queue.next_due(), model.first().map(|entry| entry.0));
        }
        let listed: Vec<_> = queue
            .get_schedule(TimeRange::all())
            .iter()
            .map(|task| (task.due(), task.priority(), task.id()))
            .collect();
        prop_assert_eq!(listed, model.into_iter().collect::<Vec<_>>());
    }
}

#[test]
fn payloads_can_be_any_type() {
    #[derive(Debug, PartialEq)]
    struct Order {
        symbol: &'static str,
        qty: u32,
    }
    let clock = VirtualClock::starting_at(t0());
    let queue: TaskQueue<Order> = TaskQueue::new(clock.clone());
    queue
        .schedule_task(
            Task::new(
                "buy",
                Order {
                    symbol: "AAPL",
                    qty: 10,
                },
            ),
            SchedulePolicy::at(t0()),
        )
        .unwrap();
    let due = queue.pop_due(clock.now()).unwrap();
    assert_eq!(
        due.task().payload(),
        &Order {
            symbol: "AAPL",
            qty: 10
        }
    );
}
