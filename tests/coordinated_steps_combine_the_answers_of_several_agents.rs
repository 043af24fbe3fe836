//! Coordinated `task` and `decision` steps: the same task goes to several distinct
//! agents at once, each with its own idempotency key, and their answers combine as the
//! step's `coordination` says (`ALL`, `FIRST`, `QUORUM`, `BEST`).

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Value, json};
use support::engine::{Harness, Reply, TestAgent, assert_status, step};
use support::{task, with, workflow};
use tradeflow::engine::RunStatus;
use tradeflow::run::FailureKind;

/// A one-step workflow whose step coordinates as `coordination` says.
fn coordinated(coordination: Value) -> Value {
    workflow([with(task("vote"), json!({"coordination": coordination}))])
}

/// Registers agents `a-1`, `a-2`, … answering `answers[i]` after `delays[i]` ms.
fn agents(h: &Harness, replies: Vec<Reply>) -> Vec<Arc<TestAgent>> {
    replies
        .into_iter()
        .enumerate()
        .map(|(index, reply)| {
            h.register(
                h.agent(&format!("a-{}", index + 1))
                    .replies(move |_, _| reply.clone()),
            )
        })
        .collect()
}

fn ids(report: &tradeflow::engine::StepReport) -> Vec<String> {
    report
        .agent_ids
        .iter()
        .flatten()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn all_lists_every_answer_in_selection_order_with_distinct_agents_and_keys() {
    let h = Harness::new();
    let called = agents(
        &h,
        vec![
            Reply::ok(json!({"v": 1})).after_ms(30),
            Reply::ok(json!({"v": 2})).after_ms(10),
            Reply::ok(json!({"v": 3})).after_ms(20),
        ],
    );

    let report = h.run(&coordinated(json!({"mode": "ALL"})), json!({}));

    assert_status(&report, RunStatus::Completed);
    let vote = step(&report, "vote");
    let asked = ids(vote);
    assert_eq!(asked.len(), 3);
    assert_eq!(asked.iter().collect::<HashSet<_>>().len(), 3, "{asked:?}");
    let output = vote.output.clone().expect("an output");
    assert_eq!(output["agentIds"], json!(asked));
    let value_of = |id: &str| match id {
        "a-1" => json!({"v": 1}),
        "a-2" => json!({"v": 2}),
        _ => json!({"v": 3}),
    };
    let expected: Vec<Value> = asked.iter().map(|id| value_of(id)).collect();
    assert_eq!(output["results"], json!(expected));
    assert_eq!(vote.agent_id, None);
    assert_eq!(vote.attempts, Some(3));
    let mut keys: Vec<String> = called
        .iter()
        .flat_map(|agent| agent.calls())
        .map(|call| call.key().to_owned())
        .collect();
    keys.sort();
    let run = report.run_id.as_str();
    assert_eq!(
        keys,
        [
            format!("{run}/vote/0/0/a1"),
            format!("{run}/vote/0/0/a2"),
            format!("{run}/vote/0/0/a3")
        ]
    );
    // All three were asked at once: the slowest answer ends the step.
    assert_eq!(h.elapsed(), support::engine::ms(30));
}

#[test]
fn all_with_a_quorum_succeeds_without_the_agents_that_failed() {
    let h = Harness::new();
    agents(
        &h,
        vec![
            Reply::ok(json!({"v": 1})),
            Reply::permanent("venue closed"),
            Reply::ok(json!({"v": 3})),
        ],
    );

    let report = h.run(
        &coordinated(json!({"mode": "ALL", "agents": 3, "quorum": 2})),
        json!({}),
    );

    assert_status(&report, RunStatus::Completed);
    let vote = step(&report, "vote");
    let output = vote.output.clone().expect("an output");
    assert_eq!(output["results"].as_array().map(Vec::len), Some(2));
    assert!(!output["agentIds"].to_string().contains("a-2"), "{output}");
    assert_eq!(ids(vote).len(), 3);
}

#[test]
fn all_without_its_quorum_fails_no_quorum() {
    let h = Harness::new();
    agents(
        &h,
        vec![
            Reply::ok(json!({"v": 1})),
            Reply::permanent("no"),
            Reply::permanent("no"),
        ],
    );

    let report = h.run(&coordinated(json!({"mode": "ALL", "quorum": 2})), json!({}));

    assert_status(&report, RunStatus::Failed);
    let error = step(&report, "vote").error.clone().expect("an error");
    assert_eq!(error.kind, FailureKind::NoQuorum);
    assert_eq!(error.kind.as_str(), "NO_QUORUM");
}

#[test]
fn first_outputs_the_first_success_and_names_its_agent() {
    let h = Harness::new();
    agents(
        &h,
        vec![
            Reply::ok(json!({"px": 1})).after_ms(50),
            Reply::temporary("busy").after_ms(1),
            Reply::ok(json!({"px": 3})).after_ms(20),
        ],
    );

    let report = h.run(
        &coordinated(json!({"mode": "FIRST", "agents": 3})),
        json!({}),
    );

    assert_status(&report, RunStatus::Completed);
    let vote = step(&report, "vote");
    assert_eq!(vote.output, Some(json!({"px": 3})));
    assert_eq!(vote.agent_id.as_ref().map(|id| id.as_str()), Some("a-3"));
    assert_eq!(ids(vote).len(), 3);
    assert_eq!(h.elapsed(), support::engine::ms(20));
}

#[test]
fn first_fails_only_when_every_agent_fails() {
    let h = Harness::new();
    agents(
        &h,
        vec![Reply::permanent("first no"), Reply::permanent("second no")],
    );

    let report = h.run(&coordinated(json!({"mode": "FIRST"})), json!({}));

    assert_status(&report, RunStatus::Failed);
    let vote = step(&report, "vote");
    let error = vote.error.clone().expect("an error");
    assert_eq!(error.kind, FailureKind::Permanent);
    assert!(
        error.message.contains("every agent asked failed"),
        "{error}"
    );
    assert_eq!(vote.attempts, Some(2));
}

#[test]
fn quorum_outputs_the_first_answer_that_enough_agents_agree_with() {
    let h = Harness::new();
    agents(
        &h,
        vec![
            Reply::ok(json!({"approved": false, "by": 1})).after_ms(10),
            Reply::ok(json!({"approved": true, "by": 2})).after_ms(20),
            Reply::ok(json!({"approved": true, "by": 3})).after_ms(30),
        ],
    );

    let report = h.run(
        &coordinated(json!({"mode": "QUORUM", "agents": 3, "quorum": 2, "agreeOn": "approved"})),
        json!({}),
    );

    assert_status(&report, RunStatus::Completed);
    let vote = step(&report, "vote");
    assert_eq!(vote.output, Some(json!({"approved": true, "by": 2})));
    assert_eq!(vote.agent_id.as_ref().map(|id| id.as_str()), Some("a-2"));
    assert_eq!(h.elapsed(), support::engine::ms(30));
}

#[test]
fn best_outputs_the_highest_ranked_answer_and_ties_go_to_the_earlier_agent() {
    let h = Harness::new();
    agents(
        &h,
        vec![
            Reply::ok(json!({"edge": {"score": 0.7}, "by": 1})),
            Reply::ok(json!({"edge": {"score": 0.9}, "by": 2})),
            Reply::ok(json!({"edge": {"score": 0.9}, "by": 3})),
            Reply::ok(json!({"edge": {"score": "n/a"}, "by": 4})),
        ],
    );

    let report = h.run(
        &coordinated(json!({"mode": "BEST", "rankBy": "edge.score"})),
        json!({}),
    );

    assert_status(&report, RunStatus::Completed);
    let vote = step(&report, "vote");
    let asked = ids(vote);
    assert_eq!(asked.len(), 4);
    let winner = vote.agent_id.clone().expect("a winner").to_string();
    // Of the two agents that scored 0.9, the one asked first wins.
    let first_of_best = asked
        .iter()
        .find(|id| *id == "a-2" || *id == "a-3")
        .expect("both asked");
    assert_eq!(&winner, first_of_best);
    let by = if winner == "a-2" { 2 } else { 3 };
    assert_eq!(vote.output, Some(json!({"edge": {"score": 0.9}, "by": by})));
}

#[test]
fn best_with_goal_min_outputs_the_lowest_ranked_answer() {
    let h = Harness::new();
    agents(
        &h,
        vec![
            Reply::ok(json!({"cost": 3})),
            Reply::ok(json!({"cost": 1})),
            Reply::permanent("no quote"),
        ],
    );

    let report = h.run(
        &coordinated(json!({"mode": "BEST", "rankBy": "cost", "goal": "MIN"})),
        json!({}),
    );

    assert_status(&report, RunStatus::Completed);
    assert_eq!(step(&report, "vote").output, Some(json!({"cost": 1})));
}

#[test]
fn a_coordinated_step_asks_every_eligible_agent_when_fewer_than_asked_for_are() {
    let h = Harness::new();
    agents(&h, vec![Reply::ok(json!(1)), Reply::ok(json!(2))]);

    let report = h.run(&coordinated(json!({"mode": "ALL", "agents": 5})), json!({}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(ids(step(&report, "vote")).len(), 2);
}

#[test]
fn a_coordinated_step_without_eligible_agents_fails_no_agent() {
    let h = Harness::new();

    let report = h.run(&coordinated(json!({"mode": "FIRST"})), json!({}));

    assert_status(&report, RunStatus::Failed);
    let error = step(&report, "vote").error.clone().expect("an error");
    assert_eq!(error.kind, FailureKind::NoAgent);
}

#[test]
fn a_coordinated_decision_sends_the_chosen_options_parameters_to_every_agent() {
    let h = Harness::new();
    let called = agents(
        &h,
        vec![Reply::ok(json!({"fill": 1})), Reply::ok(json!({"fill": 2}))],
    );
    let definition = workflow([json!({
        "id": "exec", "type": "decision",
        "agentCriteria": {"type": "AGENT"},
        "task": {"type": "EXECUTE", "parameters": {"qty": 5}},
        "decision": {"options": [{"id": "twap", "parameters": {"algo": "TWAP"}}]},
        "coordination": {"mode": "BEST", "rankBy": "fill"}
    })]);

    let report = h.run(&definition, json!({}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(step(&report, "exec").output, Some(json!({"fill": 2})));
    for agent in &called {
        let calls = agent.calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(
            calls[0].request.parameters,
            json!({"qty": 5, "algo": "TWAP"})
        );
    }
}

#[test]
fn coordinate_agents_asks_the_named_agents_with_their_own_keys() {
    use tradeflow::agent::{AgentId, TaskRequest};
    use tradeflow::coordinate::{Mode, ValuePath};

    let h = Harness::new();
    let called = agents(
        &h,
        vec![
            Reply::ok(json!({"side": "BUY"})).after_ms(10),
            Reply::ok(json!({"side": "SELL"})).after_ms(20),
            Reply::ok(json!({"side": "BUY"})).after_ms(30),
        ],
    );
    let ids: Vec<AgentId> = ["a-3", "a-1", "a-2"].map(AgentId::from).to_vec();
    let task = TaskRequest::new("host", "vote", "vote-1", "TASK", json!({"symbol": "AAPL"}));
    let vote = Mode::Quorum {
        quorum: std::num::NonZeroU32::new(2),
        agree_on: Some(ValuePath::parse("side").expect("a path")),
    };

    let answer = h
        .clock
        .block_on(h.engine.coordinate_agents(&ids, task.clone(), &vote))
        .expect("two agree");

    assert_eq!(answer.output, json!({"side": "BUY"}));
    assert_eq!(answer.agent_id.as_ref().map(AgentId::as_str), Some("a-1"));
    assert_eq!(answer.agent_ids, ids);
    assert_eq!(answer.attempts, 3);
    assert_eq!(called[2].calls()[0].key(), "vote-1/a1");
    assert_eq!(called[0].calls()[0].key(), "vote-1/a2");
    assert_eq!(called[1].calls()[0].key(), "vote-1/a3");

    let all = h
        .clock
        .block_on(
            h.engine
                .coordinate_agents(&ids[..2], task.clone(), &Mode::All { quorum: None }),
        )
        .expect("both answer");
    assert_eq!(
        all.output,
        json!({"results": [{"side": "BUY"}, {"side": "BUY"}], "agentIds": ["a-3", "a-1"]})
    );
}

#[test]
fn coordinate_agents_refuses_unknown_repeated_and_missing_agents_before_any_call() {
    use tradeflow::agent::{AgentId, TaskRequest};
    use tradeflow::coordinate::Mode;
    use tradeflow::engine::CoordinateError;

    let h = Harness::new();
    let called = agents(&h, vec![Reply::ok(json!(1))]);
    let task = TaskRequest::new("host", "vote", "vote-1", "TASK", json!({}));
    let ask = |ids: &[&str]| {
        let ids: Vec<AgentId> = ids.iter().copied().map(AgentId::from).collect();
        h.clock
            .block_on(h.engine.coordinate_agents(&ids, task.clone(), &Mode::First))
    };

    assert_eq!(
        ask(&["a-1", "ghost"]),
        Err(CoordinateError::UnknownAgent { id: "ghost".into() })
    );
    assert_eq!(
        ask(&["a-1", "a-1"]),
        Err(CoordinateError::DuplicateAgent { id: "a-1".into() })
    );
    assert_eq!(ask(&[]), Err(CoordinateError::NoAgents));
    assert!(called[0].calls().is_empty());
    assert_eq!(ask(&["a-1"]).map(|answer| answer.output), Ok(json!(1)));
}
