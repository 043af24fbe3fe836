//! `RunState::fold`: a run's state is the fold of its journal.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use tradeflow::definition::{DecisionPolicy, RecoveryStrategy};
use tradeflow::engine::{FailureKind, RecoveryDecision, RunError, RunStatus, StepStatus};
use tradeflow::store::{FoldError, JournalEntry, RunState};

fn at(seconds: i64) -> DateTime<Utc> {
    "2026-01-05T09:00:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::seconds(seconds)
}

fn started() -> JournalEntry {
    JournalEntry::RunStarted {
        run_id: "run-1".into(),
        workflow_id: "algo-trading".into(),
        version: "3".into(),
        input: json!({"symbols": ["AAPL"]}),
        seed: 42,
        at: at(0),
    }
}

fn call(step: &str, item: Option<usize>, attempt: u32, agent: &str, t: i64) -> JournalEntry {
    let item_part = item.map(|i| format!("/{i}")).unwrap_or_default();
    JournalEntry::StepStarted {
        step_id: step.into(),
        item,
        iteration: None,
        attempt,
        agent_id: agent.into(),
        idempotency_key: format!("run-1/{step}{item_part}/{attempt}"),
        at: at(t),
    }
}

fn completed(step: &str, output: Value, attempts: u32, agent: &str, t: i64) -> JournalEntry {
    JournalEntry::StepCompleted {
        step_id: step.into(),
        output,
        attempts,
        agent_id: Some(agent.into()),
        agent_ids: None,
        approved_by: None,
        at: at(t),
    }
}

fn ended(status: RunStatus, t: i64) -> JournalEntry {
    JournalEntry::RunEnded {
        status,
        error: None,
        at: at(t),
    }
}

#[test]
fn a_full_run_folds_to_its_report() {
    let journal = [
        started(),
        call("analysis", None, 1, "ma-1", 1),
        completed("analysis", json!({"side": "BUY"}), 1, "ma-1", 2),
        JournalEntry::Checkpoint {
            after_step: "analysis".into(),
            at: at(2),
        },
        JournalEntry::StepSkipped {
            step_id: "hedge".into(),
            reason: "condition is false".into(),
            at: at(2),
        },
        call("trade", None, 1, "ex-1", 3),
        completed("trade", json!({"filled": true}), 1, "ex-1", 4),
        ended(RunStatus::Completed, 5),
    ];
    let state = RunState::fold(&journal).unwrap();
    assert_eq!(state.run_id, "run-1");
    assert_eq!(state.workflow_id, "algo-trading");
    assert_eq!(state.version, "3");
    assert_eq!(state.input, json!({"symbols": ["AAPL"]}));
    assert_eq!(state.seed, 42);
    assert_eq!(state.status, RunStatus::Completed);
    assert!(state.is_finished());
    assert_eq!((state.started_at, state.ended_at), (at(0), Some(at(5))));
    assert_eq!(state.checkpoints, ["analysis"]);
    assert_eq!(state.error, None);

    let trade = &state.steps["trade"];
    assert_eq!(trade.status, StepStatus::Completed);
    assert_eq!(trade.output, Some(json!({"filled": true})));
    assert_eq!(
        (trade.attempts, trade.agent_id.as_ref().unwrap().as_str()),
        (1, "ex-1")
    );
    assert!(trade.in_flight.is_empty());
    let hedge = &state.steps["hedge"];
    assert_eq!(hedge.status, StepStatus::Skipped);
    assert_eq!(hedge.reason.as_deref(), Some("condition is false"));
    assert_eq!(state.steps.len(), 3);
}

#[test]
fn an_interrupted_run_lists_its_calls_in_flight_with_their_keys() {
    let journal = [
        started(),
        call("analysis", None, 1, "ma-1", 1),
        completed("analysis", json!({"side": "BUY"}), 1, "ma-1", 2),
        call("orders", Some(0), 1, "ex-1", 3),
        call("orders", Some(1), 1, "ex-2", 3),
        // Item 1's first attempt failed; its retry replaces it in flight.
        call("orders", Some(1), 2, "ex-3", 4),
    ];
    let state = RunState::fold(&journal).unwrap();
    assert_eq!(state.status, RunStatus::Running);
    assert!(!state.is_finished());
    assert_eq!(state.ended_at, None);

    let orders = &state.steps["orders"];
    assert_eq!(orders.status, StepStatus::Running);
    assert_eq!(orders.attempts, 3);
    let calls: Vec<_> = orders
        .in_flight
        .iter()
        .map(|call| {
            (
                call.item,
                call.attempt,
                call.agent_id.as_str(),
                call.idempotency_key.as_str(),
            )
        })
        .collect();
    assert_eq!(
        calls,
        [
            (Some(0), 1, "ex-1", "run-1/orders/0/1"),
            (Some(1), 2, "ex-3", "run-1/orders/1/2"),
        ]
    );
    assert_eq!(orders.in_flight[1].started_at, at(4));
    let all: Vec<_> = state
        .in_flight()
        .map(|(step, call)| (step.as_str(), call.idempotency_key.as_str()))
        .collect();
    assert_eq!(
        all,
        [
            ("orders", "run-1/orders/0/1"),
            ("orders", "run-1/orders/1/2")
        ]
    );
    assert!(state.steps["analysis"].in_flight.is_empty());
}

#[test]
fn a_loop_keeps_only_its_current_iteration_in_flight() {
    let iteration = |n: u32| JournalEntry::StepStarted {
        step_id: "monitor".into(),
        item: None,
        iteration: Some(n),
        attempt: 1,
        agent_id: "mon-1".into(),
        idempotency_key: format!("run-1/monitor/i{n}/1"),
        at: at(i64::from(n)),
    };
    let state = RunState::fold(&[started(), iteration(1), iteration(2), iteration(3)]).unwrap();
    let monitor = &state.steps["monitor"];
    assert_eq!(monitor.attempts, 3);
    assert_eq!(monitor.in_flight.len(), 1);
    assert_eq!(monitor.in_flight[0].iteration, Some(3));
    assert_eq!(monitor.in_flight[0].idempotency_key, "run-1/monitor/i3/1");
}

#[test]
fn a_step_waiting_for_approval_makes_the_run_wait_until_answered() {
    let waiting = [
        started(),
        JournalEntry::StepWaiting {
            step_id: "approve".into(),
            parameters: json!({"notional": 1_000_000}),
            at: at(1),
        },
    ];
    let state = RunState::fold(&waiting).unwrap();
    assert_eq!(state.status, RunStatus::Waiting);
    let approve = &state.steps["approve"];
    assert_eq!(approve.status, StepStatus::Waiting);
    assert_eq!(approve.waiting, Some(json!({"notional": 1_000_000})));

    // Another step still running: the run is running, not waiting.
    let mut busy = waiting.to_vec();
    busy.push(call("analysis", None, 1, "ma-1", 2));
    assert_eq!(RunState::fold(&busy).unwrap().status, RunStatus::Running);

    let mut answered = waiting.to_vec();
    answered.push(JournalEntry::StepAnswered {
        step_id: "approve".into(),
        approved: true,
        by: "alice".into(),
        comment: Some("within limits".into()),
        at: at(3),
    });
    let state = RunState::fold(&answered).unwrap();
    assert_eq!(state.status, RunStatus::Running);
    let approve = &state.steps["approve"];
    assert_eq!(approve.waiting, None);
    assert_eq!(approve.approved_by.as_deref(), Some("alice"));
    let answer = approve.answer.as_ref().unwrap();
    assert!(answer.approved);
    assert_eq!(
        (answer.by.as_str(), answer.comment.as_deref()),
        ("alice", Some("within limits"))
    );

    answered.push(JournalEntry::StepCompleted {
        step_id: "approve".into(),
        output: json!({"approved": true}),
        attempts: 0,
        agent_id: None,
        agent_ids: None,
        approved_by: Some("alice".into()),
        at: at(3),
    });
    let approve = &RunState::fold(&answered).unwrap().steps["approve"];
    assert_eq!(approve.status, StepStatus::Completed);
    assert_eq!(approve.approved_by.as_deref(), Some("alice"));
}

#[test]
fn a_rejection_is_kept_until_the_step_fails() {
    let journal = [
        started(),
        JournalEntry::StepWaiting {
            step_id: "approve".into(),
            parameters: json!({}),
            at: at(1),
        },
        JournalEntry::StepAnswered {
            step_id: "approve".into(),
            approved: false,
            by: "bob".into(),
            comment: None,
            at: at(2),
        },
    ];
    let approve = &RunState::fold(&journal).unwrap().steps["approve"];
    assert_eq!(approve.approved_by, None);
    assert!(!approve.answer.as_ref().unwrap().approved);
}

#[test]
fn pause_and_resume_set_the_run_status() {
    let mut journal = vec![
        started(),
        JournalEntry::StepWaiting {
            step_id: "approve".into(),
            parameters: json!({}),
            at: at(1),
        },
        JournalEntry::RunPaused {
            by: None,
            at: at(2),
        },
    ];
    assert_eq!(RunState::fold(&journal).unwrap().status, RunStatus::Paused);
    journal.push(JournalEntry::RunResumed {
        by: Some("ops".into()),
        at: at(3),
    });
    assert_eq!(RunState::fold(&journal).unwrap().status, RunStatus::Waiting);
    journal.push(JournalEntry::RunPaused {
        by: None,
        at: at(4),
    });
    assert_eq!(RunState::fold(&journal).unwrap().status, RunStatus::Paused);
}

#[test]
fn a_cancelled_run_cancels_its_running_steps() {
    let mut journal = vec![
        started(),
        call("analysis", None, 1, "ma-1", 1),
        JournalEntry::RunCancelled {
            by: "ops".into(),
            at: at(2),
        },
    ];
    // Cancelled, not yet ended: the call is still in flight.
    let state = RunState::fold(&journal).unwrap();
    assert_eq!(state.cancelled_by.as_deref(), Some("ops"));
    assert_eq!(state.status, RunStatus::Running);
    assert_eq!(state.steps["analysis"].in_flight.len(), 1);

    journal.push(ended(RunStatus::Cancelled, 3));
    let state = RunState::fold(&journal).unwrap();
    assert_eq!(state.status, RunStatus::Cancelled);
    assert!(state.is_finished());
    let analysis = &state.steps["analysis"];
    assert_eq!(analysis.status, StepStatus::Cancelled);
    assert!(analysis.in_flight.is_empty());
    assert_eq!(state.in_flight().count(), 0);
}

#[test]
fn retries_count_attempts_and_recoveries_rerun_failed_steps() {
    let mut journal = vec![
        started(),
        call("trade", None, 1, "ex-1", 1),
        call("trade", None, 2, "ex-1", 2),
        call("trade", None, 3, "ex-1", 3),
    ];
    let trade = &RunState::fold(&journal).unwrap().steps["trade"];
    assert_eq!(trade.attempts, 3);
    assert_eq!(trade.in_flight.len(), 1);
    assert_eq!(trade.in_flight[0].attempt, 3);

    journal.extend([
        JournalEntry::StepFailed {
            step_id: "trade".into(),
            kind: FailureKind::Temporary,
            message: "venue timeout".into(),
            attempts: 3,
            at: at(4),
        },
        JournalEntry::RecoveryDecided {
            step_id: "trade".into(),
            decision: RecoveryDecision {
                strategy: RecoveryStrategy::Substitute,
                confidence: 0.8,
                cost: 1.5,
                score: 0.25,
                kind: FailureKind::Temporary,
                message: "venue timeout".into(),
            },
            at: at(4),
        },
    ]);
    let trade = &RunState::fold(&journal).unwrap().steps["trade"];
    assert_eq!(
        trade.status,
        StepStatus::Pending,
        "recovering: it runs again"
    );
    assert_eq!(trade.error, None, "the recovery keeps the failure");
    assert_eq!(trade.recoveries.len(), 1);
    assert_eq!(trade.recoveries[0].kind, FailureKind::Temporary);
    assert_eq!(trade.recoveries[0].message, "venue timeout");
    assert_eq!(trade.recoveries[0].strategy, RecoveryStrategy::Substitute);
    assert!(trade.in_flight.is_empty());

    journal.extend([
        call("trade", None, 1, "ex-2", 5),
        completed("trade", json!({"filled": true}), 4, "ex-2", 6),
    ]);
    let trade = &RunState::fold(&journal).unwrap().steps["trade"];
    assert_eq!(trade.status, StepStatus::Completed);
    assert_eq!(trade.attempts, 4);
    assert_eq!(trade.agent_id.as_ref().unwrap().as_str(), "ex-2");
    assert_eq!(trade.error, None);
}

#[test]
fn a_rerun_step_drops_its_old_output() {
    let journal = [
        started(),
        call("analysis", None, 1, "ma-1", 1),
        completed("analysis", json!({"side": "BUY"}), 1, "ma-1", 2),
        // A rollback re-runs it.
        call("analysis", None, 1, "ma-1", 3),
    ];
    let analysis = &RunState::fold(&journal).unwrap().steps["analysis"];
    assert_eq!(analysis.status, StepStatus::Running);
    assert_eq!(analysis.output, None);
    assert_eq!(analysis.attempts, 2);
}

#[test]
fn a_failed_run_keeps_its_error() {
    let error = RunError {
        step_id: Some("trade".into()),
        kind: FailureKind::Permanent,
        message: "rejected by venue".into(),
    };
    let journal = [
        started(),
        JournalEntry::RunEnded {
            status: RunStatus::Failed,
            error: Some(error.clone()),
            at: at(1),
        },
    ];
    let state = RunState::fold(&journal).unwrap();
    assert_eq!(state.status, RunStatus::Failed);
    assert_eq!(state.error, Some(error));
}

#[test]
fn journals_that_break_the_grammar_are_refused_naming_the_entry() {
    assert_eq!(RunState::fold(&[]), Err(FoldError::Empty));
    assert_eq!(
        RunState::fold(&[JournalEntry::RunPaused {
            by: None,
            at: at(0)
        }]),
        Err(FoldError::NotStarted {
            index: 0,
            kind: "runPaused"
        })
    );
    assert_eq!(
        RunState::fold(&[started(), call("a", None, 1, "x", 1), started()]),
        Err(FoldError::StartedTwice { index: 2 })
    );
    let error = RunState::fold(&[
        started(),
        ended(RunStatus::Completed, 1),
        call("a", None, 1, "x", 2),
    ])
    .unwrap_err();
    assert_eq!(
        error,
        FoldError::AfterEnd {
            index: 2,
            kind: "stepStarted"
        }
    );
    assert_eq!(
        error.to_string(),
        "entry 2 (`stepStarted`) follows the run's end"
    );
    assert_eq!(
        RunState::fold(&[started(), ended(RunStatus::Running, 1)]),
        Err(FoldError::NotFinal {
            index: 1,
            status: RunStatus::Running
        })
    );
}

#[test]
fn entries_keep_their_stored_format() {
    let entry = call("orders", Some(2), 1, "ex-1", 0);
    let text = serde_json::to_string(&entry).unwrap();
    assert_eq!(
        text,
        r#"{"type":"stepStarted","stepId":"orders","item":2,"attempt":1,"agentId":"ex-1","idempotencyKey":"run-1/orders/2/1","at":"2026-01-05T09:00:00Z"}"#
    );
    assert_eq!(serde_json::from_str::<JournalEntry>(&text).unwrap(), entry);
    let ended = serde_json::to_value(ended(RunStatus::TimedOut, 0)).unwrap();
    assert_eq!(ended["type"], "runEnded");
    assert_eq!(ended["status"], "TIMED_OUT");
    assert_eq!(entry.kind(), "stepStarted");
    assert_eq!(entry.step_id().map(|step| step.as_str()), Some("orders"));
    assert_eq!(entry.at(), at(0));
}

fn decided(step: &str, option: &str, t: i64) -> JournalEntry {
    JournalEntry::DecisionMade {
        step_id: step.into(),
        option: option.into(),
        context_key: "calm".into(),
        policy: DecisionPolicy::Thompson,
        prior_scores: [("twap".to_owned(), 0.25), ("vwap".to_owned(), 1.0)].into(),
        at: at(t),
    }
}

fn learned(step: &str, reward: f64, reported: bool, t: i64) -> JournalEntry {
    JournalEntry::RewardLearned {
        step_id: step.into(),
        reward,
        reported,
        at: at(t),
    }
}

#[test]
fn decisions_and_their_rewards_fold_once_each_and_a_reported_reward_may_follow_the_end() {
    let missing = JournalEntry::RewardMissing {
        step_id: "algo".into(),
        reason: "`monitor` was skipped".into(),
        at: at(3),
    };
    let journal = [
        started(),
        decided("algo", "vwap", 1),
        call("algo", None, 1, "exec-1", 1),
        completed("algo", json!({"filled": true}), 1, "exec-1", 2),
        missing,
        ended(RunStatus::Completed, 3),
        learned("algo", 0.8, true, 900),
    ];
    let state = RunState::fold(&journal).expect("a valid journal");
    let decision = &state.decisions["algo"];
    assert_eq!(decision.option, "vwap");
    assert_eq!(decision.context_key, "calm");
    assert_eq!(decision.policy, DecisionPolicy::Thompson);
    assert_eq!(decision.prior_scores["twap"], 0.25);
    assert_eq!(decision.reward, Some(0.8));
    assert!(decision.reported);
    assert_eq!(
        decision.reward_missing.as_deref(),
        Some("`monitor` was skipped")
    );
    assert_eq!(state.status, RunStatus::Completed);

    let refused = |journal: &[JournalEntry]| RunState::fold(journal).expect_err("refused");
    let twice = refused(&[
        started(),
        decided("algo", "vwap", 1),
        decided("algo", "twap", 2),
    ]);
    assert!(
        matches!(&twice, FoldError::Decision { index: 2, kind: "decisionMade", problem, .. } if problem.contains("decided already")),
        "{twice}"
    );
    let without = refused(&[started(), learned("algo", 1.0, false, 1)]);
    assert_eq!(
        without.to_string(),
        "entry 1 (`rewardLearned`) for step `algo`: the step made no decision"
    );
    let learned_twice = refused(&[
        started(),
        decided("algo", "vwap", 1),
        learned("algo", 1.0, false, 2),
        ended(RunStatus::Completed, 2),
        learned("algo", 0.5, true, 3),
    ]);
    assert!(
        matches!(&learned_twice, FoldError::Decision { index: 4, problem, .. } if problem.contains("learned from already")),
        "{learned_twice}"
    );
    let missing_after_end = refused(&[
        started(),
        decided("algo", "vwap", 1),
        ended(RunStatus::Completed, 2),
        JournalEntry::RewardMissing {
            step_id: "algo".into(),
            reason: "late".into(),
            at: at(3),
        },
    ]);
    assert!(
        matches!(
            missing_after_end,
            FoldError::AfterEnd {
                index: 3,
                kind: "rewardMissing"
            }
        ),
        "{missing_after_end}"
    );
}

#[test]
fn a_coordinated_step_keeps_one_call_in_flight_per_agent_asked() {
    let call = |lane: u32, attempt: u32, agent: &str| JournalEntry::StepStarted {
        step_id: "vote".into(),
        item: None,
        iteration: None,
        attempt,
        agent_id: agent.into(),
        idempotency_key: format!("run-1/vote/0/0/a{lane}"),
        at: at(i64::from(attempt)),
    };
    let state = RunState::fold(&[
        started(),
        call(1, 1, "a-1"),
        call(2, 1, "a-2"),
        call(3, 1, "a-3"),
        // Lane 2 retried: its first call ended, the other lanes' calls go on.
        call(2, 2, "a-2"),
    ])
    .unwrap();
    let vote = &state.steps["vote"];
    assert_eq!(vote.attempts, 4);
    let lanes: Vec<(Option<usize>, u32)> = vote
        .in_flight
        .iter()
        .map(|call| (call.lane(), call.attempt))
        .collect();
    assert_eq!(lanes, [(Some(0), 1), (Some(2), 1), (Some(1), 2)]);
    assert_eq!(state.in_flight().count(), 3);
}

fn adapted(step: &str, ids: &[&str], t: i64) -> JournalEntry {
    JournalEntry::AdaptationsApplied {
        step_id: step.into(),
        ids: ids.iter().map(|id| (*id).to_owned()).collect(),
        at: at(t),
    }
}

fn recovering(step: &str, strategy: RecoveryStrategy, t: i64) -> [JournalEntry; 2] {
    [
        JournalEntry::StepFailed {
            step_id: step.into(),
            kind: FailureKind::Temporary,
            message: "venue timeout".into(),
            attempts: 1,
            at: at(t),
        },
        JournalEntry::RecoveryDecided {
            step_id: step.into(),
            decision: RecoveryDecision {
                strategy,
                confidence: 0.8,
                cost: 1.0,
                score: 0.5,
                kind: FailureKind::Temporary,
                message: "venue timeout".into(),
            },
            at: at(t),
        },
    ]
}

#[test]
fn applied_adaptations_fold_per_step_including_an_empty_list() {
    let state = RunState::fold(&[
        started(),
        adapted("risk", &["high-volatility", "desk-down"], 1),
        call("risk", None, 1, "risk-1", 1),
        completed("risk", json!({}), 1, "risk-1", 2),
        adapted("size", &[], 2),
        call("size", None, 1, "size-1", 2),
    ])
    .unwrap();

    assert_eq!(
        state.adaptations["risk"],
        ["high-volatility", "desk-down"],
        "in the order they applied"
    );
    assert!(
        state.adaptations["size"].is_empty(),
        "journaled: none held, and none is applied on resume"
    );
    assert!(!state.adaptations.contains_key("hedge"));
    let text = serde_json::to_value(adapted("risk", &["x"], 0)).unwrap();
    assert_eq!(
        text,
        json!({"type": "adaptationsApplied", "stepId": "risk", "ids": ["x"], "at": "2026-01-05T09:00:00Z"})
    );
}

#[test]
fn a_step_adapted_twice_is_refused_naming_the_entry_and_the_step() {
    let error = RunState::fold(&[
        started(),
        adapted("risk", &["high-volatility"], 1),
        call("risk", None, 1, "risk-1", 1),
        adapted("risk", &[], 2),
    ])
    .unwrap_err();

    assert_eq!(
        error,
        FoldError::AdaptedTwice {
            index: 3,
            step: "risk".into()
        }
    );
    assert_eq!(
        error.to_string(),
        "entry 3 (`adaptationsApplied`) for step `risk`: the step was adapted already and has not run again since"
    );
    // Another step's entry does not count against it.
    assert!(RunState::fold(&[started(), adapted("risk", &[], 1), adapted("size", &[], 1)]).is_ok());
}

#[test]
fn a_rollback_or_a_recovery_lets_a_step_be_adapted_again() {
    let mut rolled_back = vec![
        started(),
        adapted("risk", &["high-volatility"], 1),
        call("risk", None, 1, "risk-1", 1),
        completed("risk", json!({}), 1, "risk-1", 2),
    ];
    rolled_back.extend(recovering("size", RecoveryStrategy::Rollback, 3));
    rolled_back.extend([
        JournalEntry::RolledBack {
            step_id: "size".into(),
            to_checkpoint: None,
            redo: vec!["risk".into(), "size".into()],
            at: at(3),
        },
        adapted("risk", &[], 4),
    ]);
    let state = RunState::fold(&rolled_back).unwrap();
    assert!(
        state.adaptations["risk"].is_empty(),
        "the step run again was adapted as conditions were then"
    );
    // Once more without a rollback in between is refused again.
    rolled_back.push(adapted("risk", &[], 5));
    assert!(matches!(
        RunState::fold(&rolled_back),
        Err(FoldError::AdaptedTwice { index: 8, .. })
    ));

    let mut recovered = vec![
        started(),
        adapted("risk", &["high-volatility"], 1),
        call("risk", None, 1, "risk-1", 1),
    ];
    recovered.extend(recovering("risk", RecoveryStrategy::Retry, 2));
    recovered.push(adapted("risk", &["desk-down"], 3));
    let state = RunState::fold(&recovered).unwrap();
    assert_eq!(state.adaptations["risk"], ["desk-down"]);

    // A recovery of another step does not.
    let mut other = vec![started(), adapted("risk", &[], 1)];
    other.extend(recovering("size", RecoveryStrategy::Retry, 2));
    other.push(adapted("risk", &[], 3));
    assert!(matches!(
        RunState::fold(&other),
        Err(FoldError::AdaptedTwice { index: 4, .. })
    ));
}

#[test]
fn steps_keep_when_they_began_and_when_they_ended() {
    let mut journal = vec![
        started(),
        call("fetch", None, 1, "ma-1", 1),
        completed("fetch", json!({}), 1, "ma-1", 2),
        JournalEntry::StepSkipped {
            step_id: "hedge".into(),
            reason: "condition is false".into(),
            at: at(2),
        },
        call("trade", None, 1, "ex-1", 3),
    ];
    journal.extend(recovering("trade", RecoveryStrategy::Retry, 4));
    let state = RunState::fold(&journal).unwrap();
    let span = |step: &str| {
        let step = &state.steps[step];
        (step.started_at, step.ended_at)
    };
    assert_eq!(span("fetch"), (Some(at(1)), Some(at(2))));
    assert_eq!(span("hedge"), (None, Some(at(2))), "skipped without a call");
    assert_eq!(span("trade"), (Some(at(3)), None), "recovering: not ended");

    // Run again, the step keeps the time it first began; the run's end ends a waiting
    // step, cancelled, at the run's end.
    journal.extend([
        call("trade", None, 1, "ex-1", 6),
        completed("trade", json!({}), 2, "ex-1", 7),
        JournalEntry::StepWaiting {
            step_id: "approve".into(),
            parameters: json!({}),
            at: at(8),
        },
        ended(RunStatus::Cancelled, 9),
    ]);
    let state = RunState::fold(&journal).unwrap();
    let trade = &state.steps["trade"];
    assert_eq!(
        (trade.started_at, trade.ended_at),
        (Some(at(3)), Some(at(7)))
    );
    let approve = &state.steps["approve"];
    assert_eq!(approve.status, StepStatus::Cancelled);
    assert_eq!(
        (approve.started_at, approve.ended_at),
        (Some(at(8)), Some(at(9)))
    );
}
