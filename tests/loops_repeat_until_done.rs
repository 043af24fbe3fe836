//! `loop` steps: the task repeats until `loop.until` holds (default: the output's `done`
//! is true) or `maxIterations`, `intervalMs` apart on the clock, every iteration on the
//! agent of the first; the output is the last iteration's plus `iterations`.

mod support;

use serde_json::{Value, json};
use support::engine::{Harness, Reply, assert_status, at_ms, ms, step};
use support::{task_with, with, workflow};
use tradeflow::agent::{AgentErrorKind, Health};
use tradeflow::engine::{FailureKind, RunStatus, StepStatus};

/// A loop step `monitor` with these parameters and `loop` settings.
fn monitor(parameters: Value, settings: Value) -> Value {
    let step = with(task_with("monitor", parameters), json!({"type": "loop"}));
    if settings.is_null() {
        step
    } else {
        with(step, json!({"loop": settings}))
    }
}

#[test]
fn a_loop_stops_when_the_output_is_done() {
    let h = Harness::new();
    let agent = h.register(
        h.agent("m-1")
            .replies(|_, n| Reply::ok(json!({"done": n >= 3, "checked": n})).after_ms(10)),
    );

    let report = h.run(&workflow([monitor(json!({}), Value::Null)]), json!({}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(agent.calls().len(), 3);
    let monitor = step(&report, "monitor");
    assert_eq!(
        monitor.output,
        Some(json!({"done": true, "checked": 3, "iterations": 3}))
    );
    assert_eq!(monitor.attempts, Some(3));
    assert_eq!(h.elapsed(), ms(30));
}

#[test]
fn done_must_be_the_boolean_true() {
    let h = Harness::new();
    let agent = h.register(h.agent("m-1").replies(|_, n| match n {
        1 => Reply::ok(json!({"done": "true"})),
        2 => Reply::ok(json!({"done": 1})),
        _ => Reply::ok(json!({"done": true})),
    }));

    let report = h.run(&workflow([monitor(json!({}), Value::Null)]), json!({}));

    assert_eq!(report.status, RunStatus::Completed);
    assert_eq!(agent.calls().len(), 3);
}

#[test]
fn a_custom_until_reads_the_iteration_output() {
    let h = Harness::new();
    let agent = h.register(
        h.agent("m-1")
            .replies(|_, n| Reply::ok(json!({"done": true, "filled": n * 25}))),
    );
    let definition = workflow([monitor(
        json!({}),
        json!({"until": "${output.filled} >= 100"}),
    )]);

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Completed);
    // `done` is true from the first answer, but the custom `until` replaces the default.
    assert_eq!(agent.calls().len(), 4);
    assert_eq!(
        step(&report, "monitor").output,
        Some(json!({"done": true, "filled": 100, "iterations": 4}))
    );
}

#[test]
fn an_until_may_compare_with_the_input_and_earlier_outputs() {
    let h = Harness::new();
    let agent = h.register(
        h.agent("m-1")
            .replies(|request, n| match request.step_id.as_str() {
                "plan" => Reply::ok(json!({"target": 3})),
                _ => Reply::ok(json!({"filled": n - 1})),
            }),
    );
    let definition = workflow([
        task_with("plan", json!({})),
        monitor(
            json!({"target": "${plan.output.target}"}),
            json!({"until": "${output.filled} >= ${plan.output.target} && ${input.watch} == true"}),
        ),
    ]);

    let report = h.run(&definition, json!({"watch": true}));

    assert_status(&report, RunStatus::Completed);
    // Calls 2, 3, 4 are the loop's; the fourth call fills 3.
    assert_eq!(agent.calls().len(), 4);
    assert_eq!(
        step(&report, "monitor").output.as_ref().unwrap()["iterations"],
        3
    );
}

#[test]
fn max_iterations_ends_the_loop_with_the_last_output() {
    let h = Harness::new();
    let agent = h.register(
        h.agent("m-1")
            .replies(|_, n| Reply::ok(json!({"done": false, "poll": n}))),
    );

    let report = h.run(
        &workflow([monitor(json!({}), json!({"maxIterations": 5}))]),
        json!({}),
    );

    assert_status(&report, RunStatus::Completed);
    assert_eq!(agent.calls().len(), 5);
    assert_eq!(
        step(&report, "monitor").output,
        Some(json!({"done": false, "poll": 5, "iterations": 5}))
    );
}

#[test]
fn max_iterations_defaults_to_100() {
    let h = Harness::new();
    let agent = h.register(h.agent("m-1").answers(json!({"done": false})));

    let report = h.run(&workflow([monitor(json!({}), Value::Null)]), json!({}));

    assert_eq!(report.status, RunStatus::Completed);
    assert_eq!(agent.calls().len(), 100);
    assert_eq!(
        step(&report, "monitor").output.as_ref().unwrap()["iterations"],
        100
    );
}

#[test]
fn iterations_are_interval_ms_apart_on_the_clock() {
    let h = Harness::new();
    let agent = h.register(
        h.agent("m-1")
            .replies(|_, n| Reply::ok(json!({"done": n == 3})).after_ms(200)),
    );
    let definition = workflow([monitor(json!({}), json!({"intervalMs": 1000}))]);

    let report = h.run(&definition, json!({}));

    assert_eq!(report.status, RunStatus::Completed);
    let starts: Vec<_> = agent.calls().iter().map(|call| call.since_t0()).collect();
    // Each call takes 200 ms, then the loop pauses 1000 ms before the next.
    assert_eq!(starts, [ms(0), ms(1200), ms(2400)]);
    assert_eq!(h.elapsed(), ms(2600));
}

#[test]
fn every_iteration_goes_to_the_agent_of_the_first() {
    let h = Harness::new();
    let registry = h.engine.registry().clone();
    // The first iteration's agent turns unhealthy after answering: selection would now
    // pass it over for the healthy one, but the loop keeps it.
    let script = move |_: &tradeflow::agent::TaskRequest, n: usize| {
        if n == 1 {
            registry.set_health(&"m-1".into(), Health::Unhealthy);
        }
        Reply::ok(json!({"done": n == 4}))
    };
    let first = h.register(h.agent("m-1").capabilities(&["fast"]).replies(script));
    let other = h.register(h.agent("m-2").answers(json!({"done": true})));
    let definition = workflow([with(
        monitor(json!({}), Value::Null),
        json!({"agentCriteria": {"type": "AGENT", "preferredCapabilities": ["fast"]}}),
    )]);

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(first.calls().len(), 4);
    assert!(other.calls().is_empty(), "{:?}", other.calls());
    let monitor = step(&report, "monitor");
    assert_eq!(monitor.agent_id.as_ref().map(|id| id.as_str()), Some("m-1"));
    assert_eq!(monitor.output.as_ref().unwrap()["iterations"], 4);
}

#[test]
fn an_iteration_whose_agent_is_unavailable_moves_to_another_agent() {
    let h = Harness::new();
    let first = h.register(
        h.agent("m-1")
            .capabilities(&["fast"])
            .replies(|_, n| match n {
                1 => Reply::ok(json!({"done": false})),
                _ => Reply::fail(AgentErrorKind::AgentUnavailable, "maintenance"),
            }),
    );
    let second = h.register(
        h.agent("m-2")
            .replies(|_, n| Reply::ok(json!({"done": n == 2}))),
    );
    let definition = workflow([with(
        monitor(json!({}), Value::Null),
        json!({"agentCriteria": {"type": "AGENT", "preferredCapabilities": ["fast"]}}),
    )]);

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Completed);
    // Iteration 1 on m-1; iteration 2 tries m-1, which is unavailable, and moves to m-2;
    // iteration 3 stays on m-2.
    assert_eq!(first.calls().len(), 2);
    assert_eq!(second.calls().len(), 2);
    let monitor = step(&report, "monitor");
    assert_eq!(monitor.status, StepStatus::Completed);
    assert_eq!(monitor.agent_id.as_ref().map(|id| id.as_str()), Some("m-2"));
    assert_eq!(monitor.output.as_ref().unwrap()["iterations"], 3);
}

#[test]
fn a_failed_iteration_fails_the_loop() {
    let h = Harness::new();
    h.register(h.agent("m-1").replies(|_, n| match n {
        1 => Reply::ok(json!({"done": false})),
        _ => Reply::permanent("order unknown"),
    }));

    let report = h.run(&workflow([monitor(json!({}), Value::Null)]), json!({}));

    assert_eq!(report.status, RunStatus::Failed);
    let monitor = step(&report, "monitor");
    assert_eq!(monitor.status, StepStatus::Failed);
    assert_eq!(monitor.attempts, Some(2));
}

#[test]
fn the_step_timeout_bounds_the_whole_loop_and_keeps_the_last_output() {
    let h = Harness::new();
    let agent = h.register(
        h.agent("m-1")
            .replies(|_, n| Reply::ok(json!({"done": false, "poll": n})).after_ms(1000)),
    );
    let definition = workflow([with(
        monitor(json!({}), Value::Null),
        json!({"timeout": 2500}),
    )]);

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Completed);
    // Polls end at 1 s and 2 s; the third is cut off at 2.5 s.
    assert_eq!(agent.calls().len(), 3);
    assert_eq!(report.ended_at, at_ms(2500));
    let output = step(&report, "monitor").output.clone().expect("an output");
    assert_eq!(output["poll"], 2, "{output}");
    assert_eq!(output["done"], false);
    assert_eq!(agent.gauge().now(), 0, "the cut-off poll was dropped");
}

#[test]
fn a_loop_timed_out_before_any_output_fails_timeout() {
    let h = Harness::new();
    h.register(h.agent("m-1").replies(|_, _| Reply::hang()));
    let definition = workflow([with(
        monitor(json!({}), Value::Null),
        json!({"timeout": 500}),
    )]);

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Failed);
    let monitor = step(&report, "monitor");
    assert_eq!(
        monitor.error.as_ref().map(|error| error.kind),
        Some(FailureKind::Timeout)
    );
    assert_eq!(report.ended_at, at_ms(500));
}
