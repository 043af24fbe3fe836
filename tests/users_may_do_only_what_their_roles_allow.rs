//! With a permission service, every operation a user asks for is checked before the
//! engine acts: deny by default, patterns on workflow ids, resource caps per step, four
//! eyes on approvals, analyzers before a run starts. A refusal starts nothing.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::engine::{Harness, assert_status, executor, step, step_on};
use support::with;
use tradeflow::agent::{RebalanceCriteria, RunId};
use tradeflow::audit::{AuditLog, MemoryAuditLog};
use tradeflow::clock::{Clock, VirtualClock};
use tradeflow::definition::{AdaptationDefinition, WorkflowDefinition};
use tradeflow::engine::{EngineBuilder, EngineError, Run, RunEvent, RunOptions, RunStatus};
use tradeflow::safety::{KillSwitchError, KillSwitchRule};
use tradeflow::security::{Action, PermissionService, PolicyPermissions, RateLimit, SecurityError};
use tradeflow::store::{MemoryStore, RunStore};

const POLICY: &str = r#"{
  "roles": {
    "trader": { "execute": ["algo-*"], "resources": { "cpu": 4 } },
    "risk":   { "approve": ["*"], "cancel": ["*"] },
    "ops":    { "pause": ["algo-?"], "resume": ["algo-*"], "rebalance": ["*"], "reset": ["drawdown"] },
    "admin":  { "execute": ["*"], "approve": ["*"], "cancel": ["*"], "adapt": ["*"], "define": ["*"] }
  },
  "users": { "alice": ["trader"], "bob": ["risk"], "olga": ["ops"], "root": ["admin"] }
}"#;

fn policy() -> Arc<dyn PermissionService> {
    Arc::new(PolicyPermissions::from_json(POLICY).expect("the policy is valid"))
}

fn secured(clock: &VirtualClock, more: impl FnOnce(EngineBuilder) -> EngineBuilder) -> Harness {
    Harness::on_clock(clock.clone(), |builder| more(builder.permissions(policy())))
}

fn definition(value: &Value) -> WorkflowDefinition {
    WorkflowDefinition::from_value(value).expect("valid")
}

/// A one-step workflow `id`.
fn one_step(id: &str) -> Value {
    json!({"id": id, "steps": [step_on("hold", "AGENT")]})
}

fn denied(result: &Result<(), EngineError>) -> Option<&SecurityError> {
    match result {
        Err(EngineError::Security(error)) => Some(error),
        _ => None,
    }
}

#[test]
fn the_permission_matrix_allows_exactly_what_the_roles_list() {
    let clock = VirtualClock::starting_at(support::engine::t0());
    let h = secured(&clock, |b| {
        b.kill_switch(&[
            KillSwitchRule::new("drawdown", "pnl.drawdown > 0.05"),
            KillSwitchRule::new("exposure", "pnl.exposure > 1"),
        ])
        .expect("valid rules")
    });
    h.register(h.agent("a-1").answers(json!({})));
    h.workflow(&one_step("algo-1"));
    h.workflow(&one_step("algo-12"));
    h.workflow(&one_step("flatten"));
    // Live runs (the host's own), never polled: commands queue, nothing waits.
    let live = |id: &str| -> Run {
        h.engine
            .start(id, RunOptions::new(json!({})).as_host())
            .expect("the host's own run starts")
    };
    let runs = [live("algo-1"), live("algo-12"), live("flatten")];
    let run_of = |workflow: &str| -> RunId {
        let index = ["algo-1", "algo-12", "flatten"]
            .iter()
            .position(|id| *id == workflow)
            .expect("a live run");
        runs[index].id().clone()
    };
    let mut adaptations = 0;
    let mut act = |user: &str, action: Action, target: &str| -> Result<(), EngineError> {
        let engine = &h.engine;
        match action {
            Action::Define => engine
                .create_workflow_as(definition(&one_step(target)), user)
                .map(drop),
            Action::Execute => engine
                .start(target, RunOptions::new(json!({})).user(user))
                .map(drop),
            Action::Approve => engine.approve(&run_of(target), "hold", user, None),
            Action::Pause => engine.pause_workflow(&run_of(target), user),
            Action::Resume => engine.resume_workflow(&run_of(target), user),
            Action::Cancel => engine.cancel_workflow(&run_of(target), user),
            Action::Adapt => {
                adaptations += 1;
                let rule: AdaptationDefinition = serde_json::from_value(json!({
                    "id": format!("r{adaptations}"), "when": "true",
                    "changes": [{"stepId": "hold", "parameters": {"x": 1}}]}))
                .expect("an adaptation");
                engine.adapt_workflow(target, rule, user)
            }
            Action::Rebalance => engine
                .rebalance_workload(&RebalanceCriteria::new(), user)
                .map(drop),
            Action::Reset => engine.reset_kill_switch(target, user).map(drop),
            other => panic!("no operation for {other}"),
        }
    };
    use Action::*;
    // (user, action, target, allowed)
    let matrix: &[(&str, Action, &str, bool)] = &[
        ("root", Define, "desk-new", true),
        ("alice", Define, "algo-new", false),
        ("alice", Execute, "algo-1", true),
        ("alice", Execute, "flatten", false),
        ("bob", Execute, "algo-1", false),
        ("mallory", Execute, "algo-1", false),
        ("root", Execute, "flatten", true),
        ("bob", Approve, "flatten", true),
        ("alice", Approve, "algo-1", false),
        ("olga", Pause, "algo-1", true),
        ("olga", Pause, "algo-12", false),
        ("alice", Pause, "algo-1", false),
        ("olga", Resume, "algo-12", true),
        ("olga", Resume, "flatten", false),
        ("root", Adapt, "algo-1", true),
        ("bob", Adapt, "algo-1", false),
        ("olga", Rebalance, "", true),
        ("root", Rebalance, "", false),
        ("olga", Reset, "drawdown", true),
        ("olga", Reset, "exposure", false),
        ("root", Reset, "exposure", true),
        ("bob", Reset, "drawdown", false),
        ("bob", Cancel, "algo-12", true),
        ("alice", Cancel, "algo-1", false),
    ];
    for action in Action::ALL {
        let rows = matrix.iter().filter(|row| row.1 == action);
        assert!(
            rows.clone().any(|row| row.3) && rows.clone().any(|row| !row.3),
            "the matrix allows and denies {action}"
        );
    }
    for &(user, action, target, allowed) in matrix {
        let result = act(user, action, target);
        let refusal = denied(&result);
        assert_eq!(
            refusal.is_none(),
            allowed,
            "{user} {action} {target}: {result:?}"
        );
        if let Some(refusal) = refusal {
            let expected_target = (action != Rebalance).then(|| target.to_owned());
            assert_eq!(
                refusal,
                &SecurityError::Denied {
                    user: user.to_owned(),
                    action,
                    target: expected_target,
                }
            );
            assert!(!refusal.to_string().contains('\n'));
        }
    }
    // What an allowed reset got past the check to: the rule has not tripped.
    assert!(matches!(
        h.engine.reset_kill_switch("drawdown", "olga"),
        Err(EngineError::KillSwitch(KillSwitchError::NotTripped { .. }))
    ));
    drop(runs);
}

#[test]
fn a_refused_run_starts_nothing_journals_nothing_and_calls_no_agent() {
    let clock = VirtualClock::starting_at(support::engine::t0());
    let store = Arc::new(MemoryStore::new());
    let h = secured(&clock, |b| b.store(Arc::clone(&store)));
    let agent = h.register(h.agent("a-1").answers(json!({})));
    h.workflow(&one_step("flatten"));
    h.workflow(&with(
        one_step("algo-big"),
        json!({"steps": [with(step_on("hold", "AGENT"), json!({"resourceRequirements": {"cpu": 8}}))]}),
    ));

    let refusals = [
        h.engine
            .start("flatten", RunOptions::new(json!({})).user("alice"))
            .map(drop),
        h.engine
            .start("flatten", RunOptions::new(json!({})))
            .map(drop),
        h.engine
            .start("algo-big", RunOptions::new(json!({})).user("alice"))
            .map(drop),
    ];
    let messages: Vec<String> = refusals
        .iter()
        .map(|refused| refused.as_ref().expect_err("refused").to_string())
        .collect();
    assert_eq!(
        messages,
        [
            "user `alice` may not execute `flatten`",
            "execute `flatten` refused: no user named, and the engine checks permissions",
            "user `alice` may not execute `algo-big`: step `hold` asks for 8 cpu, more than the 4 the user's roles allow",
        ]
    );
    clock.block_on(clock.sleep(Duration::from_secs(1)));
    assert!(agent.calls().is_empty(), "no agent was called");
    assert_eq!(store.unfinished_runs().expect("lists"), Vec::<RunId>::new());
    assert!(h.events().is_empty(), "no run started: {:?}", h.events());
}

#[test]
fn every_refusal_is_audited_with_who_what_and_where() {
    let clock = VirtualClock::starting_at(support::engine::t0());
    let log = Arc::new(MemoryAuditLog::new());
    let h = secured(&clock, |b| b.audit(Arc::clone(&log) as Arc<dyn AuditLog>));
    h.register(h.agent("a-1").answers(json!({})));
    h.workflow(&one_step("flatten"));
    h.workflow(&with(
        one_step("algo-big"),
        json!({"steps": [with(step_on("hold", "AGENT"), json!({"resourceRequirements": {"cpu": 8}}))]}),
    ));
    let _ = h
        .engine
        .start("flatten", RunOptions::new(json!({})).user("alice"));
    let _ = h
        .engine
        .start("algo-big", RunOptions::new(json!({})).user("alice"));
    let _ = h
        .engine
        .rebalance_workload(&RebalanceCriteria::new(), "bob");

    let refused: Vec<(Option<String>, Value)> = log
        .read(1, 100)
        .expect("reads")
        .into_iter()
        .filter(|entry| entry.event.kind() == "permissionRefused")
        .map(|entry| {
            let event = serde_json::to_value(&entry.event).expect("serializes");
            (entry.actor, event)
        })
        .collect();
    let seen: Vec<(Option<&str>, &Value, &Value, &Value)> = refused
        .iter()
        .map(|(actor, event)| {
            (
                actor.as_deref(),
                &event["action"],
                &event["workflow"],
                &event["step"],
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                Some("alice"),
                &json!("execute"),
                &json!("flatten"),
                &Value::Null
            ),
            (
                Some("alice"),
                &json!("execute"),
                &json!("algo-big"),
                &json!("hold")
            ),
            (Some("bob"), &json!("rebalance"), &Value::Null, &Value::Null),
        ]
    );
    assert_eq!(
        refused[1].1["reason"],
        "user `alice` may not execute `algo-big`: step `hold` asks for 8 cpu, more than the 4 the user's roles allow"
    );
    assert_eq!(
        log.verify().expect("intact").entries,
        5,
        "2 workflows defined, 3 refusals"
    );
}

#[test]
fn resource_caps_are_checked_for_every_step_and_the_most_generous_role_wins() {
    let clock = VirtualClock::starting_at(support::engine::t0());
    let h = secured(&clock, |b| b);
    h.register(h.agent("a-1").answers(json!({})));
    let steps = |cpu: f64, memory: f64| {
        json!({"id": "algo-sized", "steps": [
            step_on("small", "AGENT"),
            with(step_on("sized", "AGENT"), json!({"resourceRequirements": {"cpu": cpu, "memory": memory}})),
        ]})
    };
    h.workflow(&steps(4.0, 100_000.0));
    let report = clock.block_on(
        h.engine
            .start("algo-sized", RunOptions::new(json!({})).user("alice"))
            .expect("4 cpu is alice's cap, and memory is not capped"),
    );
    assert_status(&report, RunStatus::Completed);

    h.workflow(&with(steps(4.5, 1.0), json!({"version": "2"})));
    let refused = h
        .engine
        .start("algo-sized", RunOptions::new(json!({})).user("alice"))
        .map(drop);
    assert!(
        matches!(&refused, Err(EngineError::Security(SecurityError::OverCap { step, resource: "cpu", .. })) if step == "sized"),
        "{refused:?}"
    );
    // root's admin role caps nothing.
    assert!(
        h.engine
            .start("algo-sized", RunOptions::new(json!({})).user("root"))
            .is_ok()
    );
}

/// `approve` (a person) then `execute`, as workflow `algo-approval`.
fn approval() -> Value {
    with(
        support::engine::approval_then_execute(),
        json!({"id": "algo-approval"}),
    )
}

fn waiting(h: &Harness, run: &RunId) -> bool {
    h.events()
        .iter()
        .any(|event| matches!(event, RunEvent::StepWaiting { run_id, .. } if run_id == run))
}

#[test]
fn four_eyes_refuses_the_starter_as_approver_even_after_a_restart() {
    let clock = VirtualClock::starting_at(support::engine::t0());
    let store = Arc::new(MemoryStore::new());
    let first = secured(&clock, |b| b.store(Arc::clone(&store)));
    first.register_shared(&executor(&clock));
    first.workflow(&approval());
    let mut run = first
        .engine
        .start(
            "algo-approval",
            RunOptions::new(json!({"amount": 5})).user("root"),
        )
        .expect("root may execute");
    let id = run.id().clone();
    assert!(clock.run_until_stalled(&mut run).is_pending());
    assert!(waiting(&first, &id));
    let refused = first.engine.approve(&id, "approve", "root", None);
    assert_eq!(
        refused,
        Err(EngineError::Security(SecurityError::FourEyes {
            user: "root".into(),
            run: id.to_string(),
            step: "approve".into(),
        }))
    );
    drop(run);
    drop(first);

    // A restart: the starter comes from the journal.
    let second = secured(&clock, |b| b.store(Arc::clone(&store)));
    second.register_shared(&executor(&clock));
    let mut runs = second.engine.recover().expect("recovers");
    let mut run = runs.pop().expect("one run");
    assert!(clock.run_until_stalled(&mut run).is_pending());
    assert!(matches!(
        second.engine.approve(&id, "approve", "root", None),
        Err(EngineError::Security(SecurityError::FourEyes { .. }))
    ));
    second
        .engine
        .approve(&id, "approve", "bob", Some("checked"))
        .expect("another person approves");
    let report = clock.block_on(run);
    assert_status(&report, RunStatus::Completed);
    assert_eq!(step(&report, "approve").approved_by.as_deref(), Some("bob"));
}

/// A run of [`approval`] on `h` for `user`, driven until its step waits.
fn waiting_run(h: &Harness, user: &str) -> Run {
    h.register_shared(&executor(&h.clock));
    h.workflow(&approval());
    let mut run = h
        .engine
        .start(
            "algo-approval",
            RunOptions::new(json!({"amount": 5})).user(user),
        )
        .expect("starts");
    assert!(h.clock.run_until_stalled(&mut run).is_pending());
    assert!(waiting(h, run.id()));
    run
}

#[test]
fn the_starter_may_reject_and_four_eyes_can_be_turned_off() {
    let clock = VirtualClock::starting_at(support::engine::t0());
    let h = secured(&clock, |b| b);
    let run = waiting_run(&h, "root");
    h.engine
        .reject(run.id(), "approve", "root", None)
        .expect("rejecting one's own run is allowed");
    assert_status(&clock.block_on(run), RunStatus::Failed);

    let relaxed = secured(&clock, |b| b.four_eyes(false));
    let run = waiting_run(&relaxed, "root");
    relaxed
        .engine
        .approve(run.id(), "approve", "root", None)
        .expect("four eyes is off");
    assert_status(&clock.block_on(run), RunStatus::Completed);

    // Without permissions, four eyes can still be asked for.
    let alone = Harness::on_clock(clock.clone(), |b| b.four_eyes(true));
    let run = waiting_run(&alone, "ann");
    assert!(matches!(
        alone.engine.approve(run.id(), "approve", "ann", None),
        Err(EngineError::Security(SecurityError::FourEyes { .. }))
    ));
    alone
        .engine
        .approve(run.id(), "approve", "ben", None)
        .expect("another person");
    assert_status(&clock.block_on(run), RunStatus::Completed);
}

#[test]
fn the_rate_limit_counts_each_users_runs_per_minute_on_the_engines_clock() {
    let clock = VirtualClock::starting_at(support::engine::t0());
    let h = secured(&clock, |b| b.analyzer(Arc::new(RateLimit::per_minute(2))));
    h.register(h.agent("a-1").answers(json!({})));
    h.workflow(&one_step("algo-1"));
    let start = |user: Option<&str>| {
        let options = RunOptions::new(json!({}));
        let options = match user {
            Some(user) => options.user(user),
            None => options.as_host(),
        };
        h.engine
            .start("algo-1", options)
            .map(|run| clock.block_on(run))
    };
    assert!(start(Some("alice")).is_ok());
    clock.block_on(clock.sleep(Duration::from_secs(30)));
    assert!(start(Some("alice")).is_ok());
    assert!(
        start(Some("root")).is_ok(),
        "another user has a count of their own"
    );
    let refused = start(Some("alice")).map(drop);
    assert_eq!(
        refused.expect_err("the third in a minute").to_string(),
        "user `alice` may not execute `algo-1` now: 2 runs in the last 60 s, the most allowed"
    );
    for _ in 0..3 {
        assert!(start(None).is_ok(), "the host's own runs are not limited");
    }
    // A minute after the first, one slot is free again (the refused run was not counted).
    clock.block_on(clock.sleep(Duration::from_secs(31)));
    assert!(start(Some("alice")).is_ok());
    assert!(start(Some("alice")).is_err());
}

#[test]
fn without_permissions_everything_is_allowed_as_before() {
    let h = Harness::new();
    h.register(h.agent("a-1").answers(json!({})));
    let id = h.workflow(&one_step("flatten"));
    assert!(
        h.engine
            .create_workflow_as(definition(&one_step("anything")), "mallory")
            .is_ok()
    );
    let report = h.clock.block_on(
        h.engine
            .start(&id, RunOptions::new(json!({})))
            .expect("starts"),
    );
    assert_status(&report, RunStatus::Completed);
    assert!(
        h.engine
            .rebalance_workload(&RebalanceCriteria::new(), "mallory")
            .is_ok()
    );
}
