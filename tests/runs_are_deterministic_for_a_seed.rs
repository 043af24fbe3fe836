//! Determinism: on the virtual clock, the same seed and inputs give the same report and
//! the same events, byte for byte, random choices (weighted and power-of-two balancing,
//! retry jitter) included.

mod support;

use serde_json::{Value, json};
use support::engine::{Harness, Reply, assert_status, drain};
use support::{task_with, with};
use tradeflow::engine::{RunEvent, RunOptions, RunReport, RunStatus};

/// A workflow whose run draws random numbers: weighted fan-out with jittered retries,
/// a loop on power-of-two choices, and a route on the results.
fn definition() -> Value {
    json!({
        "id": "w",
        "steps": [
            task_with("signal", json!({"symbols": "${input.symbols}"})),
            with(
                task_with("execute", json!({"orders": "${signal.output.orders}"})),
                json!({
                    "type": "parallel",
                    "agentCriteria": {"type": "AGENT", "loadBalancing": "WEIGHTED"},
                    "retryPolicy": {"maxAttempts": 3, "initialDelayMs": 200, "jitter": 0.8}
                }),
            ),
            with(
                task_with("watch", json!({"ids": "${execute.output.ids}"})),
                json!({
                    "type": "loop",
                    "agentCriteria": {"type": "AGENT", "loadBalancing": "POWER_OF_TWO_CHOICES"},
                    "loop": {"intervalMs": 500}
                }),
            ),
            {
                "id": "route",
                "type": "condition",
                "branches": [{"name": "many", "when": "${watch.output.iterations} > 2"}]
            }
        ]
    })
}

/// A fresh engine (seed `engine_seed`) with three weighted agents that fail some first
/// attempts; returns it with the report of one run.
fn run(engine_seed: u64, options: RunOptions) -> (Harness, RunReport) {
    let h = Harness::with(|builder| builder.seed(engine_seed));
    for (id, weight, capacity) in [("exec-1", 3.0, 2), ("exec-2", 1.0, 2), ("exec-3", 2.0, 1)] {
        h.register(
            h.agent(id)
                .weight(weight)
                .capacity(capacity)
                .replies(move |request, n| script(id, request, n)),
        );
    }
    let report = h.run_with(&definition(), options);
    (h, report)
}

fn script(agent: &str, request: &tradeflow::agent::TaskRequest, n: usize) -> Reply {
    let delay = 10 * (n as u64 % 7) + 20;
    match request.step_id.as_str() {
        "signal" => {
            let orders: Vec<Value> = (1..=8).map(|i| json!({"id": format!("o-{i}")})).collect();
            Reply::ok(json!({"orders": orders})).after_ms(delay)
        }
        "execute" if n % 3 == 0 && request.attempt == 1 => {
            Reply::temporary("venue busy").after_ms(delay)
        }
        "execute" => Reply::ok(json!({"ids": [request.parameters["orders"]["id"]], "by": agent}))
            .after_ms(delay),
        _ => Reply::ok(json!({"done": n % 4 == 0, "by": agent})).after_ms(delay),
    }
}

fn inputs() -> RunOptions {
    RunOptions::new(json!({"symbols": ["AAPL", "MSFT"]}))
}

fn events_json(events: &[RunEvent]) -> Vec<String> {
    events
        .iter()
        .map(|event| serde_json::to_string(event).expect("events serialize"))
        .collect()
}

/// The report and the events of a run, as JSON.
fn recorded(h: &Harness, report: &RunReport) -> (String, Vec<String>) {
    (report.to_json_pretty(), events_json(&h.events()))
}

#[test]
fn the_same_engine_seed_gives_the_same_report_and_events() {
    let (first, first_report) = run(42, inputs());
    assert_status(&first_report, RunStatus::Completed);
    // The run really does draw: retries happen, several agents take items, and some
    // items wait for a free slot (five slots, eight items).
    assert!(
        first
            .events()
            .iter()
            .any(|event| matches!(event, RunEvent::StepRetrying { .. }))
    );
    let executors = first_report
        .step("execute")
        .unwrap()
        .agent_ids
        .clone()
        .unwrap();
    assert!(
        executors.iter().any(|id| *id != executors[0]),
        "{executors:?}"
    );

    // Several runs, so that an order that depends on anything but the seed shows.
    let expected = recorded(&first, &first_report);
    for attempt in 2..=6 {
        let (again, again_report) = run(42, inputs());
        let actual = recorded(&again, &again_report);
        assert_eq!(actual.0, expected.0, "run {attempt}: another report");
        assert_eq!(actual.1, expected.1, "run {attempt}: other events");
        assert_eq!(again.elapsed(), first.elapsed());
    }
}

#[test]
fn the_same_run_seed_gives_the_same_run_whatever_the_engine_seed() {
    let (first, first_report) = run(1, inputs().seed(7));
    let expected = recorded(&first, &first_report);

    for engine_seed in 2..=6 {
        let (again, again_report) = run(engine_seed, inputs().seed(7));
        let actual = recorded(&again, &again_report);
        assert_eq!(
            actual.0, expected.0,
            "engine seed {engine_seed}: another report"
        );
        assert_eq!(
            actual.1, expected.1,
            "engine seed {engine_seed}: other events"
        );
    }
}

#[test]
fn subscribers_and_callbacks_see_the_same_events_in_order() {
    let h = Harness::with(|builder| builder.seed(42));
    for (id, weight, capacity) in [("exec-1", 3.0, 2), ("exec-2", 1.0, 2), ("exec-3", 2.0, 1)] {
        h.register(
            h.agent(id)
                .weight(weight)
                .capacity(capacity)
                .replies(move |request, n| script(id, request, n)),
        );
    }
    let mut stream = h.engine.subscribe();

    let report = h.run_with(&definition(), inputs());

    let streamed = drain(&mut stream);
    assert_eq!(events_json(&streamed), events_json(&h.events()));
    assert!(matches!(
        streamed.first(),
        Some(RunEvent::RunStarted { .. })
    ));
    assert!(matches!(
        streamed.last(),
        Some(RunEvent::RunEnded { status, .. }) if *status == report.status
    ));
    // Dropping the stream unsubscribes; the engine runs on, and the callback still hears.
    drop(stream);
    let before = h.events().len();
    let again = h.run_with(&definition(), inputs());
    assert_eq!(again.status, RunStatus::Completed);
    assert!(h.events().len() > before);
}

#[test]
fn other_seeds_make_other_choices() {
    let assignments: Vec<String> = (1..=8)
        .map(|seed| {
            let (_h, report) = run(seed, inputs());
            assert_eq!(report.status, RunStatus::Completed);
            format!("{:?}", report.step("execute").unwrap().agent_ids)
        })
        .collect();

    assert!(
        assignments
            .iter()
            .any(|assignment| *assignment != assignments[0]),
        "eight seeds made the same choices: {assignments:#?}"
    );
}
