//! `sensitive` field names: their values reach the agent's request and nothing else —
//! the journal, the report, the events, the decision records and the messages hold
//! `"***"`; a run recovered from its journal gets them back from the host's `Secrets`,
//! and is refused, naming the field, when a value it needs cannot come back.

mod support;

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use support::engine::{Harness, Reply, TestAgent, assert_status, run_approving, step, step_on, t0};
use support::{errors_in, with};
use tradeflow::clock::VirtualClock;
use tradeflow::definition::DefinitionError;
use tradeflow::engine::{
    RecoveryError, RunOptions, RunStatus, SecretField, SecretLocation, SecretSource,
};
use tradeflow::store::{MemoryStore, RunStore};

const API_KEY: &str = "key-4f1c9a7e";
const ACCOUNT: &str = "ACC-000-777";

/// `login` (sends the input's `apiKey`, answers an `account`), `approve` (a person
/// approves the account, copied under another name), then `trade` (sends the account).
fn trading(sensitive: Value) -> Value {
    json!({
        "id": "secretive",
        "version": "1",
        "sensitive": sensitive,
        "steps": [
            with(step_on("login", "BROKER"), json!({
                "task": {"type": "LOGIN", "parameters": {
                    "credentials": {"apiKey": "${input.broker.apiKey}"}, "user": "${input.user}"}}})),
            {"id": "approve", "type": "human_approval",
             "task": {"type": "APPROVAL_REQUEST", "parameters": {"payFrom": "${login.output.account}"}}},
            with(step_on("trade", "BROKER"), json!({
                "task": {"type": "ORDER", "parameters": {"account": "${login.output.account}"}}})),
        ]
    })
}

fn input() -> Value {
    json!({"user": "desk-7", "broker": {"apiKey": API_KEY}})
}

/// The broker: `LOGIN` fails once quoting the key it got, then answers an account.
fn broker(clock: &VirtualClock) -> Arc<TestAgent> {
    Arc::new(
        TestAgent::new("broker-1", clock).of_type("BROKER").replies(
            |request, number| match request.task_type.as_str() {
                "LOGIN" if number == 1 => Reply::temporary(&format!(
                    "key {} rejected, retry",
                    request.parameters["credentials"]["apiKey"]
                        .as_str()
                        .unwrap_or_default()
                )),
                "LOGIN" => Reply::ok(json!({"account": ACCOUNT, "session": "s-1"})),
                _ => Reply::ok(json!({"filled": true, "memo": format!("paid from {ACCOUNT}")})),
            },
        ),
    )
}

fn retrying(definition: Value) -> Value {
    let mut definition = definition;
    definition["steps"][0]["retryPolicy"] = json!({"maxAttempts": 2, "initialDelayMs": 5});
    definition
}

#[test]
fn sensitive_names_are_checked_at_load_with_their_place() {
    let errors = errors_in(&trading(json!(["apiKey", "", "apiKey"])));
    let places: Vec<String> = errors
        .iter()
        .map(|error| match error {
            DefinitionError::InvalidValue { at, .. } => at.to_string(),
            other => panic!("unexpected {other}"),
        })
        .collect();
    assert_eq!(places, ["sensitive[1]", "sensitive[2]"]);
    assert_eq!(
        errors[1].to_string(),
        "sensitive[2]: invalid value apiKey: the sensitive field name is listed twice"
    );
    let typed = errors_in(&trading(json!(["apiKey", 3])));
    assert!(
        typed
            .iter()
            .any(|error| error.to_string().starts_with("sensitive[1]")),
        "{typed:?}"
    );
}

#[test]
fn the_agent_gets_the_real_values_and_the_journal_report_events_and_records_get_stars() {
    let store = Arc::new(MemoryStore::new());
    let h = Harness::with(|builder| builder.store(Arc::clone(&store)));
    let broker = broker(&h.clock);
    h.register_shared(&broker);
    h.workflow(&retrying(trading(json!(["apiKey", "account"]))));
    let mut events = h.engine.subscribe();
    let run = h
        .engine
        .start("secretive", RunOptions::new(input()))
        .unwrap();
    let id = run.id().clone();

    let report = run_approving(&h.clock, &h.engine, &mut events, run, "pm");

    assert_status(&report, RunStatus::Completed);
    // Only the requests carry the values.
    let calls = broker.calls();
    assert_eq!(
        calls[0].request.parameters["credentials"]["apiKey"],
        API_KEY
    );
    assert_eq!(
        calls[1].request.parameters["credentials"]["apiKey"],
        API_KEY
    );
    assert_eq!(calls[2].request.parameters["account"], ACCOUNT);
    // The report: outputs redacted by name, and the copy under `payFrom` scrubbed.
    assert_eq!(
        step(&report, "login").output,
        Some(json!({"account": "***", "session": "s-1"}))
    );
    assert_eq!(
        step(&report, "approve").output.as_ref().unwrap()["payFrom"],
        "***"
    );
    assert_eq!(
        step(&report, "trade").output,
        Some(json!({"filled": true, "memo": "paid from ***"}))
    );
    // Everything written or said: the journal, the report, the events.
    let journal = serde_json::to_string(&store.load(&id).unwrap()).unwrap();
    let events: Vec<String> = h
        .events()
        .iter()
        .map(|event| format!("{event:?}"))
        .collect();
    let retried = h
        .events()
        .into_iter()
        .find_map(|event| match event {
            tradeflow::engine::RunEvent::StepRetrying { message, .. } => Some(message),
            _ => None,
        })
        .expect("login was retried");
    assert!(retried.contains("key *** rejected"), "{retried}");
    for (what, text) in [
        ("journal", journal.as_str()),
        ("report", &report.to_json_pretty()),
        ("events", &events.join("\n")),
    ] {
        for secret in [API_KEY, ACCOUNT] {
            assert!(!text.contains(secret), "{what} holds {secret}:\n{text}");
        }
    }
    assert!(journal.contains(r#""apiKey":"***""#), "{journal}");
    assert!(
        journal.contains(r#""user":"desk-7""#),
        "only sensitive names: {journal}"
    );
}

#[test]
fn failures_quoting_a_secret_are_reported_without_it() {
    let h = Harness::new();
    h.register(h.agent("broker-1").of_type("BROKER").replies(|request, _| {
        Reply::permanent(&format!(
            "bad key {}",
            request.parameters["credentials"]["apiKey"]
        ))
    }));
    let report = h.run(&trading(json!(["apiKey"])), input());
    assert_status(&report, RunStatus::Failed);
    let error = report.error.as_ref().expect("the run failed");
    assert_eq!(
        error.message,
        "step `login`, agent `broker-1`: bad key \"***\""
    );
    assert!(!report.to_json_pretty().contains(API_KEY));
    assert!(!format!("{:?}", h.events()).contains(API_KEY));
}

#[test]
fn without_sensitive_names_values_are_journaled_as_given() {
    let h = Harness::new();
    h.register(
        h.agent("broker-1")
            .of_type("BROKER")
            .answers(json!({"account": ACCOUNT})),
    );
    let mut definition = trading(json!([]));
    definition["steps"].as_array_mut().unwrap().truncate(1);
    let report = h.run(&definition, input());
    assert_eq!(
        step(&report, "login").output,
        Some(json!({"account": ACCOUNT}))
    );
}

/// Runs `definition` on an engine journaling to `store` until it stalls with `trade`'s
/// call hanging, then drops it (a crash). Returns the run's id.
fn crash_in_trade(clock: &VirtualClock, store: &Arc<MemoryStore>, definition: &Value) -> String {
    let first = Harness::on_clock(clock.clone(), |builder| builder.store(Arc::clone(store)));
    first.register(
        first
            .agent("broker-1")
            .of_type("BROKER")
            .replies(|request, _| match request.task_type.as_str() {
                "LOGIN" => Reply::ok(json!({"account": ACCOUNT})),
                _ => Reply::hang(),
            }),
    );
    let mut run = first.start(definition, RunOptions::new(input()));
    assert!(
        clock.run_until_stalled(&mut run).is_pending(),
        "trade hangs"
    );
    run.id().to_string()
}

/// `login` then `trade` (no approval).
fn login_then_trade() -> Value {
    let mut definition = trading(json!(["apiKey", "account"]));
    definition["steps"].as_array_mut().unwrap().remove(1);
    definition
}

#[test]
fn a_recovered_run_is_refused_naming_the_field_when_no_secrets_hook_is_set() {
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(MemoryStore::new());
    let id = crash_in_trade(&clock, &store, &login_then_trade());

    let second = Harness::on_clock(clock.clone(), |builder| builder.store(Arc::clone(&store)));
    let recovery = second.engine.recover_all().unwrap();

    assert!(recovery.runs.is_empty());
    let [(run, error)] = recovery.failed.as_slice() else {
        panic!("{:?}", recovery.failed);
    };
    assert_eq!(run.as_str(), id);
    assert!(matches!(
        error,
        RecoveryError::NoSecrets { field } if field.step_id.is_none() && field.pointer == "/broker/apiKey"
    ));
    assert_eq!(
        error.to_string(),
        "its input field `/broker/apiKey` is sensitive and was journaled as `***`; \
         the engine has no Secrets hook to restore it"
    );
    // Left as it was, for a recovery with the hook.
    assert_eq!(store.unfinished_runs().unwrap().len(), 1);
}

#[test]
fn the_secrets_hook_restores_the_input_and_outputs_and_the_agent_gets_real_values() {
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(MemoryStore::new());
    crash_in_trade(&clock, &store, &login_then_trade());
    let asked: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = Arc::clone(&asked);

    let second = Harness::on_clock(clock.clone(), |builder| {
        builder
            .store(Arc::clone(&store))
            .secrets(move |field: &SecretField<'_>| {
                let source = match field.source {
                    SecretSource::Input => "input".to_owned(),
                    SecretSource::Output { step_id } => step_id.to_string(),
                    _ => "?".to_owned(),
                };
                log.lock()
                    .unwrap()
                    .push(format!("{} {source} {}", field.workflow_id, field.pointer));
                match field.source {
                    SecretSource::Input => input().pointer(field.pointer).cloned(),
                    _ => Some(json!(ACCOUNT)),
                }
            })
    });
    let broker = second.register(
        second
            .agent("broker-1")
            .of_type("BROKER")
            .answers(json!({"ok": 1})),
    );
    let runs = second.engine.recover().unwrap();
    let report = clock.block_on(runs.into_iter().next().expect("the run recovers"));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(
        *asked.lock().unwrap(),
        ["secretive input /broker/apiKey", "secretive login /account"]
    );
    assert_eq!(
        broker.calls()[0].request.parameters,
        json!({"account": ACCOUNT})
    );
    assert_eq!(
        step(&report, "login").output,
        Some(json!({"account": "***"}))
    );
}

#[test]
fn an_output_the_hook_cannot_restore_refuses_the_run_only_when_a_step_still_needs_it() {
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(MemoryStore::new());
    // `trade` binds to `login`'s account and has not ended: refused, naming the field.
    crash_in_trade(&clock, &store, &login_then_trade());
    let inputs_only = |field: &SecretField<'_>| match field.source {
        SecretSource::Input => input().pointer(field.pointer).cloned(),
        _ => None,
    };
    let second = Harness::on_clock(clock.clone(), |builder| {
        builder.store(Arc::clone(&store)).secrets(inputs_only)
    });
    let recovery = second.engine.recover_all().unwrap();
    let [(_, error)] = recovery.failed.as_slice() else {
        panic!("{:?}", recovery.failed);
    };
    assert!(
        matches!(
            error,
            RecoveryError::SecretUnavailable { field: SecretLocation { step_id: Some(step), pointer, .. } }
                if step.as_str() == "login" && pointer == "/account"
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("its output field `/account` of step `login`")
    );
    drop(second);

    // A `trade` that does not bind to `login` goes on: the account stays `***`.
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(MemoryStore::new());
    let mut definition = login_then_trade();
    definition["id"] = json!("unbound");
    definition["steps"][1]["task"]["parameters"] = json!({"user": "${input.user}"});
    crash_in_trade(&clock, &store, &definition);
    let third = Harness::on_clock(clock.clone(), |builder| {
        builder.store(Arc::clone(&store)).secrets(inputs_only)
    });
    let broker = third.register(third.agent("broker-1").of_type("BROKER").answers(json!({})));
    let runs = third.engine.recover().unwrap();
    let report = clock.block_on(runs.into_iter().next().expect("the run recovers"));
    assert_status(&report, RunStatus::Completed);
    assert_eq!(
        broker.calls()[0].request.parameters,
        json!({"user": "desk-7"})
    );
    assert_eq!(
        step(&report, "login").output,
        Some(json!({"account": "***"}))
    );
}
