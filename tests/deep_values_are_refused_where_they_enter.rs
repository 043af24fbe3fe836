//! Values nested deeper than `MAX_VALUE_DEPTH` are refused where they enter — an agent's
//! output (`INVALID_OUTPUT`), a run's input and a step's resolved parameters (`BINDING`),
//! a host context variable, a journal entry — so that nothing the engine keeps can
//! exhaust the stack when it is copied, written, read back or printed, and no run becomes
//! unreadable.

mod support;

use std::sync::Arc;

use serde_json::{Value, json};
use support::engine::{Harness, Reply, assert_status, step, t0};
use support::task_with;
use tradeflow::clock::VirtualClock;
use tradeflow::engine::{RunOptions, RunStatus, StepStatus};
use tradeflow::expr::Context;
use tradeflow::run::{FailureKind, MAX_VALUE_DEPTH, RunId};
use tradeflow::store::{JournalEntry, MemoryStore, RunState, RunStore, StoreError};

/// `[[[…0…]]]`, `depth` arrays deep, built without recursion.
fn nested(depth: usize) -> Value {
    let mut value = json!(0);
    for _ in 0..depth {
        value = Value::Array(vec![value]);
    }
    value
}

/// Takes a deep value apart without recursing (serde_json drops recursively).
fn dismantle(value: Value) {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        if let Value::Array(items) = value {
            stack.extend(items);
        }
    }
}

#[test]
fn an_agent_output_nested_too_deep_fails_the_call_and_the_journal_stays_readable() {
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(MemoryStore::new());
    let shared = Arc::clone(&store);
    let h = Harness::on_clock(clock, move |builder| builder.store(shared));
    h.register(h.agent("deep-1").replies(|_, _| Reply::ok(nested(10_000))));
    let report = h.run(
        &json!({"id": "w", "steps": [task_with("deep", json!({}))]}),
        json!({}),
    );
    assert_status(&report, RunStatus::Failed);
    let error = step(&report, "deep").error.clone().expect("an error");
    assert_eq!(error.kind, FailureKind::InvalidOutput);
    assert!(
        error
            .message
            .contains(&format!("more than the {MAX_VALUE_DEPTH} allowed")),
        "{}",
        error.message
    );
    let journal = store.load(&report.run_id).expect("the journal reads back");
    assert!(RunState::fold(&journal).unwrap().is_finished());
}

#[test]
fn a_thousand_steps_each_nesting_the_last_output_fail_cleanly_and_report_small() {
    // Each step's parameters nest the output before; the agent echoes them.
    let steps: Vec<Value> = (0..1_000)
        .map(|i| {
            let parameters = if i == 0 {
                json!({"x": 0})
            } else {
                json!({"x": format!("${{s{}.output}}", i - 1)})
            };
            task_with(&format!("s{i}"), parameters)
        })
        .collect();
    let h = Harness::new();
    h.register(
        h.agent("echo-1")
            .replies(|request, _| Reply::ok(request.parameters.clone())),
    );
    let report = h.run(&json!({"id": "deep-chain", "steps": steps}), json!({}));
    assert_status(&report, RunStatus::Failed);
    let error = report.error.as_ref().expect("the run says why");
    assert_eq!(error.kind, FailureKind::Binding, "{}", error.message);
    assert!(
        error.message.contains("parameters nest"),
        "{}",
        error.message
    );
    let failed = report
        .steps
        .iter()
        .find(|(_, step)| step.status == StepStatus::Failed)
        .map(|(id, _)| id.to_string());
    assert_eq!(
        failed.as_deref(),
        Some("s64"),
        "the first step past the bound"
    );
    let pretty = report.to_json_pretty();
    assert!(pretty.len() < 2_000_000, "{} bytes", pretty.len());
}

#[test]
fn a_run_input_nested_too_deep_fails_the_run_before_any_step() {
    let h = Harness::new();
    let agent = h.register(h.agent("a-1").answers(json!({})));
    let report = h.run_with(
        &json!({"id": "w", "steps": [task_with("a", json!({"x": "${input.x}"}))]}),
        // Built by hand: `json!` would copy the value recursively.
        RunOptions::new(Value::Object(serde_json::Map::from_iter([(
            "x".to_owned(),
            nested(100_000),
        )]))),
    );
    assert_status(&report, RunStatus::Failed);
    let error = report.error.as_ref().expect("the run says why");
    assert_eq!(error.kind, FailureKind::Binding);
    assert!(
        error.message.contains("the run's input nests"),
        "{}",
        error.message
    );
    assert!(agent.calls().is_empty());
}

#[test]
fn a_store_refuses_an_entry_that_would_not_read_back() {
    let store = MemoryStore::new();
    let run = RunId::from("r1");
    let started = JournalEntry::RunStarted {
        run_id: run.clone(),
        workflow_id: "w".into(),
        version: String::new(),
        input: nested(150),
        seed: 0,
        at: t0(),
    };
    let refused = store.append(&run, std::slice::from_ref(&started));
    assert!(
        matches!(&refused, Err(StoreError::Invalid { position: 0, problem, .. })
            if problem.contains("nests deeper")),
        "{refused:?}"
    );
    assert!(store.load(&run).unwrap().is_empty(), "nothing was written");
    if let JournalEntry::RunStarted { input, .. } = started {
        dismantle(input);
    }
}

#[test]
fn a_host_variable_nested_too_deep_is_not_set_and_conditions_do_not_crash() {
    let mut context = Context::new();
    context.set_variable("market.depth", nested(100_000));
    assert_eq!(context.variable("market.depth"), None);
    context.set_variable("market.open", json!(true));
    assert_eq!(context.variable("market.open"), Some(json!(true)));
    let context = context.with_function("market.deep", |_| Ok(nested(1_000)));
    let h = Harness::new();
    h.register(h.agent("a-1").answers(json!({})));
    let definition = json!({"id": "w", "steps": [
        {"id": "a", "type": "task", "agentCriteria": {"type": "AGENT"},
         "task": {"type": "T"}, "condition": {"expression": "market.deep() == 1"}}
    ]});
    let report = h.run_with(&definition, RunOptions::new(json!({})).context(context));
    assert_status(&report, RunStatus::Failed);
    let error = step(&report, "a").error.clone().expect("an error");
    assert_eq!(error.kind, FailureKind::Condition);
    assert!(error.message.contains("levels deep"), "{}", error.message);
}
