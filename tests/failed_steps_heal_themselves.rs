//! Self-healing: once a step's retries are spent, the run weighs the recovery strategies
//! that fit (SKIP, SUBSTITUTE, ROLLBACK, ALTERNATIVE_PATH), applies the best, journals
//! the decision and shows it in the report. With none that fits, the step fails as
//! before.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use support::engine::{Harness, Reply, TestAgent, assert_status, reason, step, step_on, t0};
use support::with;
use tradeflow::clock::VirtualClock;
use tradeflow::definition::{RecoveryStrategy, WorkflowDefinition};
use tradeflow::engine::{FailureKind, RunEvent, RunOptions, RunStatus, StepStatus};
use tradeflow::plan::ExecutionPlan;
use tradeflow::store::{JournalEntry, MemoryStore, RunState, RunStore};

fn durable() -> (Harness, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let shared = Arc::clone(&store);
    let harness = Harness::on_clock(VirtualClock::starting_at(t0()), move |builder| {
        builder.store(shared)
    });
    (harness, store)
}

fn strategies(report: &tradeflow::engine::RunReport, id: &str) -> Vec<RecoveryStrategy> {
    step(report, id)
        .recoveries
        .iter()
        .map(|decision| decision.strategy)
        .collect()
}

fn journal_kinds(store: &MemoryStore, report: &tradeflow::engine::RunReport) -> Vec<&'static str> {
    store
        .load(&report.run_id)
        .unwrap()
        .iter()
        .map(JournalEntry::kind)
        .collect()
}

#[test]
fn a_required_step_with_nothing_to_recover_by_fails_cleanly() {
    let h = Harness::new();
    h.register(
        h.agent("only-1")
            .of_type("EXEC")
            .replies(|_, _| Reply::permanent("rejected by venue")),
    );
    let report = h.run(
        &json!({"id": "w", "steps": [step_on("trade", "EXEC")]}),
        json!({}),
    );
    assert_status(&report, RunStatus::Failed);
    let trade = step(&report, "trade");
    assert_eq!(trade.status, StepStatus::Failed);
    assert!(trade.recoveries.is_empty());
    assert_eq!(
        report.error.as_ref().map(|error| error.kind),
        Some(FailureKind::Permanent)
    );
}

#[test]
fn an_optional_step_that_fails_is_skipped_and_the_decision_is_journaled() {
    let (h, store) = durable();
    h.register(
        h.agent("mon-1")
            .of_type("MONITOR")
            .replies(|_, _| Reply::permanent("feed down")),
    );
    h.register(h.agent("rep-1").of_type("REPORT").answers(json!({})));
    let report = h.run(
        &json!({"id": "w", "steps": [
            with(step_on("monitor", "MONITOR"), json!({"optional": true})),
            step_on("report", "REPORT"),
        ]}),
        json!({}),
    );
    assert_status(&report, RunStatus::Completed);
    assert_eq!(step(&report, "monitor").status, StepStatus::Skipped);
    assert_eq!(strategies(&report, "monitor"), [RecoveryStrategy::Skip]);
    let decision = &step(&report, "monitor").recoveries[0];
    assert_eq!(
        (decision.confidence, decision.cost, decision.kind),
        (0.9, 0.3, FailureKind::Permanent)
    );
    assert!(reason(&report, "monitor").contains("feed down"));
    let kinds = journal_kinds(&store, &report);
    let failed = kinds.iter().position(|kind| *kind == "stepFailed").unwrap();
    assert_eq!(
        &kinds[failed..failed + 3],
        ["stepFailed", "recoveryDecided", "stepSkipped"]
    );
    assert!(h.events().iter().any(|event| matches!(
        event,
        RunEvent::StepRecovering { decision, .. } if decision.strategy == RecoveryStrategy::Skip
    )));
    let state = RunState::fold(&store.load(&report.run_id).unwrap()).unwrap();
    assert_eq!(state.steps["monitor"].status, StepStatus::Skipped);
    assert_eq!(
        state.steps["monitor"].recoveries,
        step(&report, "monitor").recoveries
    );
}

#[test]
fn a_failed_agent_is_substituted_by_another_eligible_one() {
    let h = Harness::new();
    // Whichever agent is called first fails for good; the other one works.
    let calls = Arc::new(AtomicUsize::new(0));
    for id in ["exec-1", "exec-2"] {
        let calls = Arc::clone(&calls);
        h.register(h.agent(id).of_type("EXEC").replies(move |_, _| {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                Reply::permanent("instrument not supported")
            } else {
                Reply::ok(json!({"filled": true}))
            }
        }));
    }
    let report = h.run(
        &json!({"id": "w", "steps": [step_on("trade", "EXEC")]}),
        json!({}),
    );
    assert_status(&report, RunStatus::Completed);
    let trade = step(&report, "trade");
    assert_eq!(strategies(&report, "trade"), [RecoveryStrategy::Substitute]);
    assert_eq!(trade.attempts, Some(2), "calls of both agents count");
    let started: Vec<String> = h
        .events()
        .iter()
        .filter_map(|event| match event {
            RunEvent::StepStarted { agent_id, .. } => Some(agent_id.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(started.len(), 2);
    assert_ne!(started[0], started[1], "the substitute is another agent");
    assert_eq!(
        trade.agent_id.as_ref().map(ToString::to_string),
        Some(started[1].clone())
    );
}

/// `quote` → `trade` (bound to the quote); `trade` may roll back.
fn quote_then_trade() -> Value {
    json!({"id": "w", "steps": [
        step_on("quote", "QUOTE"),
        with(step_on("trade", "EXEC"), json!({
            "task": {"type": "TASK", "parameters": {"px": "${quote.output.px}"}},
            "errorHandling": {"strategies": ["ROLLBACK"]}
        })),
    ]})
}

#[test]
fn rollback_returns_to_the_checkpoint_before_the_steps_inputs_and_runs_them_again() {
    let (h, store) = durable();
    let quote = h.register(
        h.agent("quote-1")
            .of_type("QUOTE")
            .replies(|_, number| Reply::ok(json!({"px": 100 + number}))),
    );
    let exec = h.register(h.agent("exec-1").of_type("EXEC").replies(|request, _| {
        if request.parameters["px"] == json!(101) {
            Reply::permanent("stale price")
        } else {
            Reply::ok(json!({"filledAt": request.parameters["px"]}))
        }
    }));
    let report = h.run(&quote_then_trade(), json!({}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(strategies(&report, "trade"), [RecoveryStrategy::Rollback]);
    assert_eq!(quote.calls().len(), 2, "the quote is taken again");
    let trades = exec.calls();
    assert_eq!(trades.len(), 2);
    assert_eq!(trades[1].request.parameters, json!({"px": 102}));
    assert_eq!(
        step(&report, "trade").output,
        Some(json!({"filledAt": 102}))
    );
    // A redone call is a new logical call: its key says which generation it is.
    assert_eq!(trades[0].key(), "run-1/trade/0/0");
    assert_eq!(trades[1].key(), "run-1/trade/0/0/r1");
    assert_eq!(quote.calls()[1].key(), "run-1/quote/0/0/r1");

    let entries = store.load(&report.run_id).unwrap();
    let rolled_back = entries
        .iter()
        .find_map(|entry| match entry {
            JournalEntry::RolledBack {
                to_checkpoint,
                redo,
                ..
            } => Some((to_checkpoint.clone(), redo.clone())),
            _ => None,
        })
        .expect("the rollback is journaled");
    assert_eq!(rolled_back.0, None, "back to the run's start");
    assert_eq!(rolled_back.1, ["quote", "trade"]);
    let state = RunState::fold(&entries).unwrap();
    assert_eq!(state.steps["quote"].generation, 1);
    assert_eq!(state.steps["trade"].output, Some(json!({"filledAt": 102})));
    assert_eq!(state.checkpoints, ["quote", "trade"]);
}

#[test]
fn rollback_is_never_chosen_unless_the_workflow_lists_it() {
    let h = Harness::new();
    h.register(
        h.agent("quote-1")
            .of_type("QUOTE")
            .answers(json!({"px": 101})),
    );
    h.register(
        h.agent("exec-1")
            .of_type("EXEC")
            .replies(|_, _| Reply::permanent("stale price")),
    );
    let mut definition = quote_then_trade();
    definition["steps"][1]
        .as_object_mut()
        .unwrap()
        .remove("errorHandling");
    let report = h.run(&definition, json!({}));
    assert_status(&report, RunStatus::Failed);
    assert!(strategies(&report, "trade").is_empty());
}

/// `price` (primary source) with `price-backup` as its fallback, then `trade` bound to
/// `price`.
fn with_fallback() -> Value {
    json!({"id": "w", "steps": [
        with(step_on("price", "PRIMARY"),
             json!({"errorHandling": {"fallbackStep": "price-backup"}})),
        step_on("price-backup", "BACKUP"),
        with(step_on("trade", "EXEC"),
             json!({"task": {"type": "TASK", "parameters": {"px": "${price.output.px}"}}})),
    ]})
}

/// Registers `primary-1` (type `PRIMARY`), whose every call fails for good ("feed
/// down"), and `backup-1` (type `BACKUP`), which replies `backup`; returns the backup.
fn primary_down(h: &Harness, backup: Reply) -> Arc<TestAgent> {
    h.register(
        h.agent("primary-1")
            .of_type("PRIMARY")
            .replies(|_, _| Reply::permanent("feed down")),
    );
    h.register(
        h.agent("backup-1")
            .of_type("BACKUP")
            .replies(move |_, _| backup.clone()),
    )
}

#[test]
fn a_failed_step_takes_its_alternative_path_and_the_fallbacks_output_stands_in() {
    let h = Harness::new();
    let backup = primary_down(&h, Reply::ok(json!({"px": 99})));
    let exec = h.register(
        h.agent("exec-1")
            .of_type("EXEC")
            .answers(json!({"ok": true})),
    );
    let report = h.run(&with_fallback(), json!({}));

    assert_status(&report, RunStatus::Completed);
    let price = step(&report, "price");
    assert_eq!(price.status, StepStatus::Completed);
    assert_eq!(
        strategies(&report, "price"),
        [RecoveryStrategy::AlternativePath]
    );
    assert_eq!(price.output, Some(json!({"px": 99})));
    assert_eq!(
        price.agent_id.as_ref().map(ToString::to_string).as_deref(),
        Some("backup-1")
    );
    assert_eq!(step(&report, "price-backup").status, StepStatus::Completed);
    assert_eq!(backup.calls().len(), 1);
    assert_eq!(exec.calls()[0].request.parameters, json!({"px": 99}));
}

#[test]
fn a_fallback_that_is_not_needed_is_skipped() {
    let h = Harness::new();
    h.register(
        h.agent("primary-1")
            .of_type("PRIMARY")
            .answers(json!({"px": 100})),
    );
    let backup = h.register(
        h.agent("backup-1")
            .of_type("BACKUP")
            .answers(json!({"px": 99})),
    );
    h.register(
        h.agent("exec-1")
            .of_type("EXEC")
            .answers(json!({"ok": true})),
    );
    let report = h.run(&with_fallback(), json!({}));
    assert_status(&report, RunStatus::Completed);
    assert_eq!(step(&report, "price-backup").status, StepStatus::Skipped);
    assert_eq!(
        reason(&report, "price-backup"),
        "fallback of `price`: not needed"
    );
    assert!(backup.calls().is_empty());
}

#[test]
fn a_fallback_that_fails_too_fails_the_step_it_stood_in_for() {
    let h = Harness::new();
    primary_down(&h, Reply::permanent("backup down"));
    h.register(
        h.agent("exec-1")
            .of_type("EXEC")
            .answers(json!({"ok": true})),
    );
    let report = h.run(&with_fallback(), json!({}));
    assert_status(&report, RunStatus::Failed);
    let price = step(&report, "price");
    assert_eq!(price.status, StepStatus::Failed);
    let message = &price.error.as_ref().unwrap().message;
    assert!(message.contains("feed down"), "{message}");
    assert!(
        message.contains("its fallback step `price-backup` failed too"),
        "{message}"
    );
}

/// Found by `crashes_at_every_journal_position_lose_nothing`: a fallback that ends
/// skipped leaves the step it stands in for unresolved, whether its condition is false
/// (binding to the step it stands in for does the same) or it is optional and fails
/// (self-healing skips it). The run ends `COMPLETED` with the required step `CANCELLED`
/// ("the run ended COMPLETED"), steps that wait for it never start, and the journal
/// folds the step as `PENDING`.
#[test]
fn a_fallback_that_is_skipped_fails_the_step_it_stood_in_for() {
    let skipped_by_its_condition = json!({"condition": {"expression": "1 == 2"}});
    let optional_and_failing = json!({"optional": true});
    for (backup, fallback) in [
        (Reply::ok(json!({"px": 99})), skipped_by_its_condition),
        (Reply::permanent("backup down"), optional_and_failing),
    ] {
        let (h, store) = durable();
        primary_down(&h, backup);
        h.register(
            h.agent("exec-1")
                .of_type("EXEC")
                .answers(json!({"ok": true})),
        );
        let workflow = json!({"id": "w",
        "executionPolicy": {"failureHandling": "CONTINUE_ON_FAILURE"},
        "steps": [
            with(step_on("price", "PRIMARY"),
                 json!({"errorHandling": {"fallbackStep": "price-backup"}})),
            with(step_on("price-backup", "BACKUP"), fallback),
            step_on("report", "EXEC"),
        ]});
        let report = h.run(&workflow, json!({}));

        assert_eq!(step(&report, "price-backup").status, StepStatus::Skipped);
        assert_eq!(step(&report, "price").status, StepStatus::Failed);
        assert_eq!(step(&report, "report").status, StepStatus::Completed);
        assert_status(&report, RunStatus::Failed);
        let journaled = RunState::fold(&store.load(&report.run_id).unwrap()).unwrap();
        assert_eq!(journaled.steps["price"].status, StepStatus::Failed);
    }
}

/// Found by `crashes_at_every_journal_position_lose_nothing`: a step that stands aside
/// for its fallback when the run stops (`risk` fails first, under `SEQUENTIAL` and
/// `STOP_ON_FAILURE`) is reported `CANCELLED`, but nothing journals its end: the journal
/// folds it as `PENDING` (its `recoveryDecided` made it pending, and the run's end
/// cancels only steps that were running or waiting).
#[test]
fn a_step_waiting_for_its_fallback_when_the_run_stops_is_journaled_cancelled() {
    let (h, store) = durable();
    primary_down(&h, Reply::ok(json!({"px": 99})));
    let workflow = json!({"id": "w", "dependencies": [],
    "executionPolicy": {"concurrency": "SEQUENTIAL", "failureHandling": "STOP_ON_FAILURE"},
    "steps": [
        with(step_on("price", "PRIMARY"),
             json!({"errorHandling": {"fallbackStep": "price-backup"}})),
        step_on("risk", "PRIMARY"),
        step_on("price-backup", "BACKUP"),
    ]});
    let report = h.run(&workflow, json!({}));

    assert_status(&report, RunStatus::Failed);
    assert_eq!(step(&report, "price").status, StepStatus::Cancelled);
    let journaled = RunState::fold(&store.load(&report.run_id).unwrap()).unwrap();
    assert_eq!(journaled.steps["price"].status, StepStatus::Cancelled);
}

/// Found while reducing the one above: a fallback that waits for another step that
/// waits for the step it stands in for (here by listed order: `price` → `risk` →
/// `price-backup`) could never run while `price` stands aside for it, and the run ended
/// `COMPLETED` with nothing done. Such a workflow is refused when it is loaded.
#[test]
fn a_fallback_that_would_wait_for_a_successor_of_its_step_is_refused() {
    let workflow = json!({"id": "w", "steps": [
        with(step_on("price", "PRIMARY"),
             json!({"errorHandling": {"fallbackStep": "price-backup"}})),
        step_on("risk", "PRIMARY"),
        step_on("price-backup", "BACKUP"),
    ]});
    let errors = tradeflow::plan::ExecutionPlan::from_json(&workflow.to_string())
        .expect_err("the fallback could never run");
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "steps[0] (price).errorHandling.fallbackStep: invalid value price-backup: step \
          `price-backup` runs after `price` (through `risk`), so it could never stand in for \
          it; order it after the step's own predecessors only"
        ]
    );
    // Listed right after the step, or ordered by dependencies, it is fine.
    let fine = json!({"id": "w", "steps": [
        with(step_on("price", "PRIMARY"),
             json!({"errorHandling": {"fallbackStep": "price-backup"}})),
        step_on("price-backup", "BACKUP"),
        step_on("risk", "PRIMARY"),
    ]});
    assert!(tradeflow::plan::ExecutionPlan::from_json(&fine.to_string()).is_ok());
}

#[test]
fn weights_decide_between_strategies_that_fit() {
    // An optional step with another agent and a fallback: SKIP scores highest by
    // default; weights make the workflow prefer the fallback, and the step the agent.
    let definition = |weights: Value, step_weights: Value| {
        json!({"id": "w",
               "errorHandling": {"strategyWeights": weights},
               "steps": [
            with(step_on("price", "PRIMARY"), json!({"optional": true,
                "errorHandling": {"fallbackStep": "price-backup", "strategyWeights": step_weights}})),
            step_on("price-backup", "BACKUP"),
        ]})
    };
    let run = |definition: Value| {
        let h = Harness::new();
        let calls = Arc::new(AtomicUsize::new(0));
        for id in ["primary-1", "primary-2"] {
            let calls = Arc::clone(&calls);
            h.register(h.agent(id).of_type("PRIMARY").replies(move |_, _| {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    Reply::permanent("feed down")
                } else {
                    Reply::ok(json!({"px": 100}))
                }
            }));
        }
        h.register(
            h.agent("backup-1")
                .of_type("BACKUP")
                .answers(json!({"px": 99})),
        );
        let report = h.run(&definition, json!({}));
        assert_status(&report, RunStatus::Completed);
        strategies(&report, "price")
    };
    assert_eq!(
        run(definition(json!({}), json!({}))),
        [RecoveryStrategy::Skip]
    );
    assert_eq!(
        run(definition(
            json!({"SKIP": 0.5, "SUBSTITUTE": 0.5}),
            json!({})
        )),
        [RecoveryStrategy::AlternativePath]
    );
    assert_eq!(
        run(definition(json!({"SKIP": 0.5}), json!({"SUBSTITUTE": 2}))),
        [RecoveryStrategy::Substitute],
        "step weights override the workflow's"
    );
}

#[test]
fn a_step_stands_in_for_one_step_only_and_never_before_it() {
    let twice = json!({"id": "w", "steps": [
        with(step_on("a", "T"), json!({"errorHandling": {"fallbackStep": "c"}})),
        with(step_on("b", "T"), json!({"errorHandling": {"fallbackStep": "c"}})),
        step_on("c", "T"),
    ]});
    let errors = ExecutionPlan::compile(WorkflowDefinition::from_value(&twice).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        errors.contains("steps[1] (b).errorHandling.fallbackStep")
            && errors.contains("step `c` is already the fallback of step `a`"),
        "{errors}"
    );
    let before = json!({"id": "w", "steps": [
        step_on("c", "T"),
        with(step_on("a", "T"), json!({"errorHandling": {"fallbackStep": "c"}})),
    ]});
    let errors = ExecutionPlan::compile(WorkflowDefinition::from_value(&before).unwrap())
        .unwrap_err()
        .to_string();
    assert!(errors.contains("cycle"), "{errors}");
}

#[test]
fn a_recovery_decided_before_a_restart_is_in_the_recovered_report() {
    let (first, store) = durable();
    let calls = Arc::new(AtomicUsize::new(0));
    let agents: Vec<_> = ["exec-1", "exec-2"]
        .into_iter()
        .map(|id| {
            let calls = Arc::clone(&calls);
            Arc::new(first.agent(id).of_type("EXEC").replies(move |_, _| {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 => Reply::permanent("not supported"),
                    1 => Reply::hang(),
                    _ => Reply::ok(json!({"filled": true})),
                }
            }))
        })
        .collect();
    for agent in &agents {
        first.register_shared(agent);
    }
    let definition = json!({"id": "w", "version": "1", "steps": [step_on("trade", "EXEC")]});
    let mut run = first.start(&definition, RunOptions::new(json!({})));
    assert!(
        first.clock.run_until_stalled(&mut run).is_pending(),
        "the substitute hangs"
    );
    let clock = first.clock.clone();
    drop(run);
    drop(first);

    let second = Harness::on_clock(clock.clone(), |builder| builder.store(Arc::clone(&store)));
    for agent in &agents {
        second.register_shared(agent);
    }
    let run = second.engine.recover().unwrap().remove(0);
    let report = clock.block_on(run);
    assert_status(&report, RunStatus::Completed);
    assert_eq!(strategies(&report, "trade"), [RecoveryStrategy::Substitute]);
}
