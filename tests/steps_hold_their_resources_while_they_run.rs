//! Through the engine, on the virtual clock: a step takes its `resourceRequirements` from
//! the engine's pool before it runs and gives them back when it ends, however it ends; a
//! run holds the workflow's for its whole length; the pool bounds how many steps run at
//! once and serves lower priority numbers first; a requirement the pool can never grant
//! is rejected when the workflow is created, naming the step and the resource.

mod support;

use std::sync::Arc;

use serde_json::{Value, json};
use support::engine::{Gauge, Harness, Reply, assert_status, ms, step};
use support::{task, with};
use tradeflow::definition::WorkflowDefinition;
use tradeflow::engine::{EngineError, FailureKind, RunOptions, RunStatus, StepStatus};
use tradeflow::resource::{ResourceKind, ResourcePool, ResourceUsage};

/// A harness whose engine takes resources from a pool of `cpu` cores.
fn cores(cpu: f64) -> Harness {
    Harness::with(|builder| builder.resource_pool(ResourcePool::new([("cpu", cpu)]).unwrap()))
}

/// Task step `id` needing `requirements`.
fn needing(id: &str, requirements: Value) -> Value {
    with(task(id), json!({"resourceRequirements": requirements}))
}

/// A workflow timeout far beyond every test's length: a step that never got its
/// resources (a leak) ends the run `TIMED_OUT` instead of hanging the test.
const BACKSTOP_MS: u64 = 60_000;

/// A PARALLEL workflow of independent `steps` (no order among them), with `extra`
/// top-level fields.
fn parallel(steps: Vec<Value>, extra: Value) -> Value {
    with(
        json!({
            "id": "w",
            "dependencies": [],
            "executionPolicy": {"concurrency": "PARALLEL"},
            "timeout": BACKSTOP_MS,
            "steps": steps,
        }),
        extra,
    )
}

fn usage(h: &Harness) -> ResourceUsage {
    h.engine
        .resources()
        .expect("the engine has a pool")
        .monitor_resource_usage()
}

#[track_caller]
fn assert_all_given_back(h: &Harness) {
    let usage = usage(h);
    assert_eq!(usage.in_use(&ResourceKind::CPU), 0.0, "{usage:?}");
    assert_eq!(
        (usage.allocations, usage.waiting_requests),
        (0, 0),
        "{usage:?}"
    );
}

#[test]
fn a_pool_of_two_cores_runs_at_most_two_one_core_steps_at_once() {
    let steps = || {
        (1..=5)
            .map(|n| needing(&format!("s{n}"), json!({"cpu": 1})))
            .collect::<Vec<_>>()
    };
    let h = cores(2.0);
    let gauge = Gauge::shared();
    h.register(
        h.agent("worker")
            .capacity(10)
            .counted_by(&gauge)
            .replies(|_, _| Reply::ok(json!({})).after_ms(100)),
    );

    let report = h.run(&parallel(steps(), json!({})), json!({}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(gauge.max(), 2);
    assert_eq!(h.elapsed(), ms(300), "5 steps of 100 ms, 2 at a time");
    assert_all_given_back(&h);

    // Without a pool, the same workflow runs its five steps at once.
    let free = Harness::new();
    let gauge = Gauge::shared();
    free.register(
        free.agent("worker")
            .capacity(10)
            .counted_by(&gauge)
            .replies(|_, _| Reply::ok(json!({})).after_ms(100)),
    );
    let report = free.run(&parallel(steps(), json!({})), json!({}));
    assert_status(&report, RunStatus::Completed);
    assert_eq!((gauge.max(), free.elapsed()), (5, ms(100)));
}

#[test]
fn when_the_pool_is_short_priority_1_runs_before_priority_2() {
    let h = cores(1.0);
    let agent = h.register(
        h.agent("worker")
            .capacity(10)
            .replies(|_, _| Reply::ok(json!({})).after_ms(100)),
    );
    // `first` takes the core; `low` and `high` wait for it, `low` listed (and asking)
    // first.
    let definition = parallel(
        vec![
            needing("first", json!({"cpu": 1, "priority": 5})),
            needing("low", json!({"cpu": 1, "priority": 2})),
            needing("high", json!({"cpu": 1, "priority": 1})),
        ],
        json!({}),
    );

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Completed);
    let order: Vec<(String, u128)> = agent
        .calls()
        .iter()
        .map(|call| (call.step().to_owned(), call.since_t0().as_millis()))
        .collect();
    assert_eq!(
        order,
        [
            ("first".to_owned(), 0),
            ("high".to_owned(), 100),
            ("low".to_owned(), 200)
        ]
    );
}

#[test]
fn a_failed_step_gives_back_its_resources_and_so_do_the_steps_stop_on_failure_cancels() {
    let h = cores(3.0);
    h.register(h.agent("worker").capacity(10).replies(
        |request, _| match request.step_id.as_str() {
            "bad" => Reply::permanent("rejected by the venue").after_ms(50),
            _ => Reply::hang(),
        },
    ));
    let definition = parallel(
        vec![
            needing("bad", json!({"cpu": 1})),
            needing("slow-1", json!({"cpu": 1})),
            needing("slow-2", json!({"cpu": 1})),
            needing("queued", json!({"cpu": 1})),
        ],
        json!({}),
    );

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Failed);
    assert_eq!(step(&report, "bad").status, StepStatus::Failed);
    // `slow-*` were running: cancelled. `queued` was waiting for a core and had not
    // started (nothing of it was called or journaled): skipped, not started.
    for id in ["slow-1", "slow-2"] {
        assert_eq!(step(&report, id).status, StepStatus::Cancelled, "{id}");
    }
    assert_eq!(step(&report, "queued").status, StepStatus::Skipped);
    assert_eq!(
        step(&report, "queued").reason.as_deref(),
        Some("not started: the run ended FAILED")
    );
    assert_all_given_back(&h);
}

#[test]
fn a_failed_step_frees_its_cores_for_the_steps_that_wait() {
    let h = cores(2.0);
    let agent = h.register(h.agent("worker").capacity(10).replies(|request, _| {
        match request.step_id.as_str() {
            "bad" => Reply::permanent("no liquidity").after_ms(50),
            _ => Reply::ok(json!({})).after_ms(100),
        }
    }));
    let definition = parallel(
        vec![
            needing("bad", json!({"cpu": 2})),
            needing("next", json!({"cpu": 2})),
        ],
        json!({"executionPolicy": {"concurrency": "PARALLEL", "failureHandling": "CONTINUE_ON_FAILURE"}}),
    );

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Failed);
    assert_eq!(step(&report, "next").status, StepStatus::Completed);
    let next = agent.calls().into_iter().find(|call| call.step() == "next");
    assert_eq!(next.map(|call| call.since_t0()), Some(ms(50)));
    assert_all_given_back(&h);
}

#[test]
fn a_panicking_agent_gives_back_the_step_s_resources() {
    let h = cores(2.0);
    h.register(h.agent("worker").capacity(10).replies(
        |request, _| match request.step_id.as_str() {
            "crash" => Reply::panic("index out of bounds").after_ms(10),
            _ => Reply::ok(json!({})).after_ms(100),
        },
    ));
    let definition = parallel(
        vec![
            with(
                needing("crash", json!({"cpu": 2})),
                json!({"retryPolicy": {"maxAttempts": 1}}),
            ),
            needing("next", json!({"cpu": 2})),
        ],
        json!({"executionPolicy": {"concurrency": "PARALLEL", "failureHandling": "CONTINUE_ON_FAILURE"}}),
    );

    let report = h.run(&definition, json!({}));

    let crash = step(&report, "crash");
    assert_eq!(crash.status, StepStatus::Failed);
    assert_eq!(
        crash.error.as_ref().map(|error| error.kind),
        Some(FailureKind::Panic)
    );
    assert_eq!(step(&report, "next").status, StepStatus::Completed);
    assert_eq!(h.elapsed(), ms(110));
    assert_all_given_back(&h);
}

#[test]
fn a_timed_out_step_gives_back_its_resources() {
    let h = cores(2.0);
    let agent = h.register(h.agent("worker").capacity(10).replies(|request, _| {
        match request.step_id.as_str() {
            "stuck" => Reply::hang(),
            _ => Reply::ok(json!({})),
        }
    }));
    let definition = parallel(
        vec![
            with(
                needing("stuck", json!({"cpu": 2})),
                json!({"timeout": 100, "retryPolicy": {"maxAttempts": 1}}),
            ),
            needing("next", json!({"cpu": 2})),
        ],
        json!({"executionPolicy": {"concurrency": "PARALLEL", "failureHandling": "CONTINUE_ON_FAILURE"}}),
    );

    let report = h.run(&definition, json!({}));

    let stuck = step(&report, "stuck");
    assert_eq!(
        stuck.error.as_ref().map(|error| error.kind),
        Some(FailureKind::Timeout)
    );
    let next = agent.calls().into_iter().find(|call| call.step() == "next");
    assert_eq!(next.map(|call| call.since_t0()), Some(ms(100)));
    assert_all_given_back(&h);
}

#[test]
fn a_cancelled_run_gives_back_what_its_steps_hold_and_withdraws_what_they_wait_for() {
    let h = cores(2.0);
    h.register(h.agent("worker").capacity(10).replies(|_, _| Reply::hang()));
    let mut definition = parallel(
        (1..=3)
            .map(|n| needing(&format!("s{n}"), json!({"cpu": 1})))
            .collect(),
        json!({}),
    );
    // No timer at all: the run stalls with its steps hanging (the cancel ends it).
    definition.as_object_mut().unwrap().remove("timeout");
    let mut run = h.start(&definition, RunOptions::new(json!({})));

    assert!(h.clock.run_until_stalled(&mut run).is_pending());
    let waiting = usage(&h);
    assert_eq!(waiting.in_use(&ResourceKind::CPU), 2.0);
    assert_eq!((waiting.allocations, waiting.waiting_requests), (2, 1));

    h.engine.cancel_workflow(run.id(), "ops").unwrap();
    let report = h.clock.block_on(run);

    assert_status(&report, RunStatus::Cancelled);
    assert_all_given_back(&h);
}

#[test]
fn a_workflow_timeout_gives_back_the_run_s_and_the_steps_resources() {
    let h = cores(2.0);
    h.register(h.agent("worker").capacity(10).replies(|_, _| Reply::hang()));
    let definition = parallel(
        vec![needing("s1", json!({"cpu": 1}))],
        json!({"timeout": 500, "resourceRequirements": [{"cpu": 1}]}),
    );

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::TimedOut);
    assert_eq!(h.elapsed(), ms(500));
    assert_all_given_back(&h);
}

#[test]
fn workflow_requirements_are_held_for_the_whole_run() {
    // The run holds one of the two cores: its one-core steps run one at a time.
    let h = cores(2.0);
    let gauge = Gauge::shared();
    h.register(
        h.agent("worker")
            .capacity(10)
            .counted_by(&gauge)
            .replies(|_, _| Reply::ok(json!({})).after_ms(100)),
    );
    let definition = parallel(
        (1..=3)
            .map(|n| needing(&format!("s{n}"), json!({"cpu": 1})))
            .collect(),
        json!({"resourceRequirements": [{"cpu": 0.5}, {"cpu": 0.5, "priority": 1}]}),
    );

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!((gauge.max(), h.elapsed()), (1, ms(300)));
    assert_all_given_back(&h);
}

#[test]
fn a_second_run_waits_for_the_resources_the_first_holds() {
    let h = cores(1.0);
    let agent = h.register(
        h.agent("worker")
            .capacity(10)
            .replies(|_, _| Reply::ok(json!({})).after_ms(100)),
    );
    let definition = json!({
        "id": "w",
        "resourceRequirements": [{"cpu": 1}],
        "timeout": BACKSTOP_MS,
        "steps": [task("only")],
    });
    let first = h.start(&definition, RunOptions::new(json!({})));
    let second = h.start(&definition, RunOptions::new(json!({})));

    let (first, second) = h.clock.block_on(futures::future::join(first, second));

    assert_status(&first, RunStatus::Completed);
    assert_status(&second, RunStatus::Completed);
    let starts: Vec<u128> = agent
        .calls()
        .iter()
        .map(|call| call.since_t0().as_millis())
        .collect();
    assert_eq!(
        starts,
        [0, 100],
        "the second run starts when the first ends"
    );
    assert_all_given_back(&h);
}

#[test]
fn a_requirement_larger_than_the_pool_is_rejected_when_the_workflow_is_created() {
    let h = cores(2.0);
    let definition = json!({
        "id": "w",
        "steps": [
            task("market-analysis"),
            task("risk-assessment"),
            task("position-sizing"),
            needing("order-execution", json!({"cpu": 4, "memory": 1e9})),
        ],
    });
    let parsed = WorkflowDefinition::from_value(&definition).unwrap();

    let error = h.engine.create_workflow(parsed).unwrap_err();

    let EngineError::OverCapacity { workflow, problems } = &error else {
        panic!("expected OverCapacity, got {error:?}");
    };
    assert_eq!(workflow, "w");
    // Memory is not limited: the pool has none.
    assert_eq!(problems.len(), 1);
    assert_eq!(
        problems[0].at.to_string(),
        "steps[3] (order-execution).resourceRequirements.cpu"
    );
    assert_eq!(problems[0].kind, ResourceKind::CPU);
    assert_eq!((problems[0].required, problems[0].capacity), (4.0, 2.0));
    assert_eq!(
        error.to_string(),
        "workflow `w` needs more than the engine's resource pool has:\n\
         steps[3] (order-execution).resourceRequirements.cpu: needs 4 `cpu` but the pool \
         has 2: the step could never run"
    );
    assert!(h.engine.workflow("w").is_none(), "not kept");
}

#[test]
fn a_plan_added_unchecked_fails_its_run_at_once_instead_of_waiting_forever() {
    let h = cores(2.0);
    let agent = h.register(h.agent("worker"));
    let plan = support::plan(&json!({
        "id": "w",
        "resourceRequirements": [{"cpu": 1}],
        "steps": [needing("big", json!({"cpu": 2}))],
    }));
    h.engine.add_plan(plan);

    let report = h
        .clock
        .block_on(h.engine.run("w", RunOptions::new(json!({}))))
        .unwrap();

    assert_status(&report, RunStatus::Failed);
    let error = report.error.as_ref().unwrap();
    assert_eq!(error.kind, FailureKind::Resources);
    assert_eq!(error.step_id.as_ref().map(|id| id.as_str()), Some("big"));
    assert!(
        error
            .message
            .contains("needs 2 `cpu` while its run holds 1"),
        "{}",
        error.message
    );
    assert!(agent.calls().is_empty());
    assert_all_given_back(&h);
}

#[test]
fn without_a_pool_requirements_are_not_enforced() {
    let h = Harness::new();
    let gauge = Gauge::shared();
    h.register(
        h.agent("worker")
            .capacity(10)
            .counted_by(&gauge)
            .replies(|_, _| Reply::ok(json!({})).after_ms(100)),
    );
    let definition = parallel(
        (1..=3)
            .map(|n| needing(&format!("s{n}"), json!({"cpu": 64})))
            .collect(),
        json!({"resourceRequirements": [{"cpu": 64}]}),
    );

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(gauge.max(), 3);
    assert!(h.engine.resources().is_none());
}

#[test]
fn kinds_the_pool_does_not_have_are_not_limited() {
    let h = cores(1.0);
    let gauge = Gauge::shared();
    h.register(
        h.agent("worker")
            .capacity(10)
            .counted_by(&gauge)
            .replies(|_, _| Reply::ok(json!({})).after_ms(100)),
    );
    let definition = parallel(
        (1..=3)
            .map(|n| needing(&format!("s{n}"), json!({"memory": 1e6, "network": 1e4})))
            .collect(),
        json!({}),
    );

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(gauge.max(), 3);
}

#[test]
fn a_shared_manager_is_one_pool_for_every_engine_that_uses_it() {
    let manager = Arc::new(tradeflow::resource::PriorityResourceManager::new(
        ResourcePool::new([("cpu", 1.0)]).unwrap(),
    ));
    let h = Harness::with(|builder| builder.resources(Arc::clone(&manager)));
    let other = Harness::on_clock(h.clock.clone(), |builder| {
        builder.resources(Arc::clone(&manager))
    });
    let agent = h.register(
        h.agent("worker")
            .capacity(10)
            .replies(|_, _| Reply::ok(json!({})).after_ms(100)),
    );
    other.register_shared(&agent);
    let definition = json!({
        "id": "w",
        "timeout": BACKSTOP_MS,
        "steps": [needing("only", json!({"cpu": 1}))],
    });
    let first = h.start(&definition, RunOptions::new(json!({})));
    let second = other.start(&definition, RunOptions::new(json!({})));

    let (first, second) = h.clock.block_on(futures::future::join(first, second));

    assert_status(&first, RunStatus::Completed);
    assert_status(&second, RunStatus::Completed);
    assert_eq!(h.elapsed(), ms(200), "one core for both engines");
}
