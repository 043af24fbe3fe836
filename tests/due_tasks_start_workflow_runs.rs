//! The task dispatcher: tasks start runs of the workflow they name, with their input,
//! in due-time then priority order, once per occurrence of a recurring task; a task the
//! engine refuses starts nothing and the next ones still start.

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use support::engine::{Harness, assert_status, step, t0};
use support::{task_with, workflow};
use tradeflow::engine::{EngineError, OrchestrationEngine, RunStatus};
use tradeflow::plan::Schedule;
use tradeflow::scheduler::{
    DispatchOutcome, Dispatched, Dispatcher, SchedulePolicy, Task, TaskQueue, TaskScheduler,
    WorkflowTask,
};

/// A harness with workflow `w` (one step echoing `${input.n}`), a queue on its clock and
/// a dispatcher of the queue's tasks to its engine.
fn setup() -> (Harness, Arc<TaskQueue<WorkflowTask>>, Dispatcher) {
    let h = Harness::new();
    h.register(
        h.agent("a-1")
            .replies(|request, _| support::engine::Reply::ok(request.parameters.clone())),
    );
    h.workflow(&workflow([task_with("echo", json!({"n": "${input.n}"}))]));
    let queue = Arc::new(TaskQueue::new(h.clock.clone()));
    let engine: Arc<dyn OrchestrationEngine> = Arc::new(h.engine.clone());
    let dispatcher = Dispatcher::new(engine, Arc::clone(&queue) as Arc<dyn TaskScheduler<_>>);
    (h, queue, dispatcher)
}

fn run_of(n: i64) -> WorkflowTask {
    WorkflowTask::new("w", json!({"n": n}))
}

fn seconds(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `(task name, seconds after t0 it was due)` of each dispatched task.
fn order(dispatched: &[Dispatched]) -> Vec<(String, i64)> {
    dispatched
        .iter()
        .map(|d| {
            (
                d.task.task().name().to_owned(),
                (d.task.due() - t0()).num_seconds(),
            )
        })
        .collect()
}

#[test]
fn tasks_start_runs_in_due_time_then_priority_order() {
    let (h, queue, dispatcher) = setup();
    let at = |secs| SchedulePolicy::after(seconds(secs));
    queue
        .schedule_task(Task::new("late-low", run_of(1)), at(60).priority(5))
        .unwrap();
    queue
        .schedule_task(Task::new("early", run_of(2)), at(30).priority(9))
        .unwrap();
    queue
        .schedule_task(Task::new("late-high", run_of(3)), at(60).priority(1))
        .unwrap();

    let dispatched: Vec<Dispatched> = h.clock.block_on(dispatcher.run().take(3).collect());

    assert_eq!(
        order(&dispatched),
        [
            ("early".to_owned(), 30),
            ("late-high".to_owned(), 60),
            ("late-low".to_owned(), 60)
        ]
    );
    let outputs: Vec<_> = dispatched
        .into_iter()
        .map(|d| {
            let report = h.clock.block_on(d.into_run().expect("the run started"));
            assert_status(&report, RunStatus::Completed);
            step(&report, "echo").output.clone().unwrap()["n"].clone()
        })
        .collect();
    assert_eq!(outputs, [json!(2), json!(3), json!(1)]);
    assert!(queue.is_empty());
}

#[test]
fn a_recurring_task_starts_one_run_per_occurrence() {
    let (h, queue, dispatcher) = setup();
    let every_quarter = Schedule::parse("*/15 * * * *", None).unwrap();
    queue
        .schedule_task(
            Task::new("quarterly", run_of(7)),
            SchedulePolicy::cron(every_quarter),
        )
        .unwrap();

    let dispatched: Vec<Dispatched> = h.clock.block_on(dispatcher.run().take(3).collect());

    let due: Vec<i64> = order(&dispatched)
        .into_iter()
        .map(|(_, secs)| secs)
        .collect();
    // Scheduled at t0 (09:00): the occurrences after it, every 15 minutes.
    assert_eq!(due, [900, 1800, 2700]);
    for d in dispatched {
        let report = h.clock.block_on(d.into_run().expect("the run started"));
        assert_status(&report, RunStatus::Completed);
        assert_eq!(step(&report, "echo").output.clone().unwrap()["n"], json!(7));
    }
    assert_eq!(queue.len(), 1, "the recurring task stays scheduled");
}

#[test]
fn a_refused_task_starts_nothing_and_the_next_still_starts() {
    let (h, queue, dispatcher) = setup();
    let unknown = WorkflowTask::new("nowhere", json!({}));
    queue
        .schedule_task(
            Task::new("unknown", unknown),
            SchedulePolicy::after(seconds(10)),
        )
        .unwrap();
    queue
        .schedule_task(
            Task::new("fine", run_of(4)),
            SchedulePolicy::after(seconds(30)),
        )
        .unwrap();

    let mut dispatched: Vec<Dispatched> = h.clock.block_on(dispatcher.run().take(2).collect());

    let fine = dispatched.pop().unwrap();
    let unknown = dispatched.pop().unwrap();
    assert!(matches!(
        unknown.outcome,
        DispatchOutcome::Refused(EngineError::UnknownWorkflow { ref id }) if id == "nowhere"
    ));
    let report = h.clock.block_on(fine.into_run().expect("the run started"));
    assert_status(&report, RunStatus::Completed);
}
