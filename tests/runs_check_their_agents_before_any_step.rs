//! A workflow's steps are checked against the registered agents before a run, not when
//! each step is reached: `Engine::check_agents` names every step no agent can take (none
//! of its type, or none with every capability it requires), one line each, and with
//! `AgentCheck::BeforeStart` `Engine::start` refuses such a run before anything runs,
//! is journaled or is called. Without it (the default), the run starts and fails at the
//! step, after the steps before it ran. The check is made when the run starts (an agent
//! that joins later counts from then on), and recovered runs are not refused (a bot
//! registers its agents after `recover`).

mod support;

use std::sync::Arc;

use serde_json::{Value, json};
use support::engine::{Harness, Reply, assert_status, ms, step, step_on, t0};
use support::with;
use tradeflow::agent::RunId;
use tradeflow::clock::VirtualClock;
use tradeflow::engine::{AgentCheck, EngineError, FailureKind, RunOptions, RunStatus, StepStatus};
use tradeflow::store::{MemoryStore, RunStore};

/// A bot: analysis (1.2 s) → risk, which requires `var` → sizing, each on its own type.
fn bot() -> Value {
    json!({"id": "bot", "version": "1", "steps": [
        step_on("analysis", "MARKET_ANALYSIS"),
        with(step_on("risk", "RISK_MANAGEMENT"),
             json!({"agentCriteria": {"type": "RISK_MANAGEMENT", "requiredCapabilities": ["var"]}})),
        step_on("sizing", "PORTFOLIO_MANAGEMENT"),
    ]})
}

/// Registers the analysis agent (answers after 1.2 s) and the sizing agent.
fn analysis_and_sizing(h: &Harness) {
    h.register(
        h.agent("ma-1")
            .of_type("MARKET_ANALYSIS")
            .replies(|_, _| Reply::ok(json!({"signal": 1})).after_ms(1200)),
    );
    h.register(h.agent("pm-1").of_type("PORTFOLIO_MANAGEMENT"));
}

/// The problems of an [`EngineError::NoAgents`], as (step, lines of the whole message).
#[track_caller]
fn no_agents(error: &EngineError) -> (Vec<String>, Vec<String>) {
    let EngineError::NoAgents { workflow, problems } = error else {
        panic!("expected NoAgents, got {error}");
    };
    assert_eq!(workflow, "bot");
    let steps = problems.iter().map(|p| p.step.to_string()).collect();
    let lines = error.to_string().lines().map(str::to_owned).collect();
    (steps, lines)
}

#[test]
fn a_step_with_no_agent_of_its_type_is_named() {
    let h = Harness::new();
    analysis_and_sizing(&h);
    h.workflow(&bot());

    let error = h.engine.check_agents("bot").unwrap_err();

    let (steps, lines) = no_agents(&error);
    assert_eq!(steps, ["risk"]);
    assert_eq!(
        lines,
        [
            "workflow `bot` has steps no registered agent can take:",
            "steps[1] (risk): no agent of type `RISK_MANAGEMENT` with capabilities [var]",
        ]
    );
}

#[test]
fn a_step_whose_agents_lack_a_capability_is_named_with_it() {
    let h = Harness::new();
    analysis_and_sizing(&h);
    h.register(
        h.agent("risk-1")
            .of_type("RISK_MANAGEMENT")
            .capabilities(&["stress-test"]),
    );
    h.workflow(&bot());

    let error = h.engine.check_agents("bot").unwrap_err();

    let EngineError::NoAgents { problems, .. } = &error else {
        panic!("expected NoAgents, got {error}");
    };
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].step, "risk");
    assert_eq!(problems[0].agent_type.as_str(), "RISK_MANAGEMENT");
    assert_eq!(problems[0].required_capabilities, ["var"]);
    assert_eq!(problems[0].lacking, ["var"]);
    assert_eq!(
        problems[0].to_string(),
        "steps[1] (risk): no agent of type `RISK_MANAGEMENT` with capabilities [var]; \
         the type's 1 agent lacks [var]"
    );
}

#[test]
fn every_step_without_an_agent_is_named_at_once_in_listed_order() {
    let h = Harness::new();
    h.workflow(&bot());

    let error = h.engine.check_agents("bot").unwrap_err();

    let (steps, lines) = no_agents(&error);
    assert_eq!(steps, ["analysis", "risk", "sizing"]);
    assert_eq!(
        lines.len(),
        4,
        "a heading, then one line per step: {lines:#?}"
    );
    assert_eq!(
        lines[3],
        "steps[2] (sizing): no agent of type `PORTFOLIO_MANAGEMENT`"
    );
}

#[test]
fn an_unknown_workflow_is_not_checked() {
    let h = Harness::new();
    assert_eq!(
        h.engine.check_agents("nope"),
        Err(EngineError::UnknownWorkflow { id: "nope".into() })
    );
}

#[test]
fn by_default_the_run_starts_and_fails_at_the_step_after_the_steps_before_it() {
    let h = Harness::new();
    analysis_and_sizing(&h);

    let report = h.run(&bot(), json!({}));

    assert_status(&report, RunStatus::Failed);
    assert_eq!(step(&report, "analysis").status, StepStatus::Completed);
    let risk = step(&report, "risk");
    assert_eq!(risk.status, StepStatus::Failed);
    assert_eq!(
        risk.error.as_ref().map(|e| e.kind),
        Some(FailureKind::NoAgent)
    );
    assert_eq!(h.elapsed(), ms(1200), "analysis ran for nothing");
}

#[test]
fn checked_before_start_a_run_is_refused_with_nothing_run_journaled_or_called() {
    let store = Arc::new(MemoryStore::new());
    let h = Harness::with(|builder| {
        builder
            .agent_check(AgentCheck::BeforeStart)
            .store(Arc::clone(&store))
    });
    analysis_and_sizing(&h);
    let analysis = h.register(h.agent("ma-2").of_type("MARKET_ANALYSIS"));
    let id = h.workflow(&bot());

    let refused = h
        .engine
        .start(&id, RunOptions::new(json!({})).run_id("r-1"))
        .unwrap_err();

    let (steps, _) = no_agents(&refused);
    assert_eq!(steps, ["risk"]);
    let refused_again = h.clock.block_on(h.engine.execute_workflow(&id, json!({})));
    assert_eq!(refused_again.unwrap_err(), refused);
    assert!(analysis.calls().is_empty(), "no agent was called");
    assert!(h.events().is_empty(), "no run started: {:?}", h.events());
    assert_eq!(store.unfinished_runs().unwrap(), Vec::<RunId>::new());
    assert!(store.load(&RunId::from("r-1")).unwrap().is_empty());
    assert!(store.load(&RunId::from("run-1")).unwrap().is_empty());
    assert_eq!(h.elapsed(), ms(0));
}

#[test]
fn checked_before_start_a_covered_workflow_runs_as_usual() {
    let h = Harness::with(|builder| builder.agent_check(AgentCheck::BeforeStart));
    analysis_and_sizing(&h);
    h.register(
        h.agent("risk-1")
            .of_type("RISK_MANAGEMENT")
            .capabilities(&["var", "stress-test"]),
    );

    let report = h.run(&bot(), json!({}));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(h.engine.check_agents("bot"), Ok(()));
}

#[test]
fn the_check_sees_the_agents_registered_when_the_run_starts() {
    let h = Harness::with(|builder| builder.agent_check(AgentCheck::BeforeStart));
    analysis_and_sizing(&h);
    let id = h.workflow(&bot());
    assert!(h.engine.start(&id, RunOptions::default()).is_err());

    h.register(
        h.agent("risk-1")
            .of_type("RISK_MANAGEMENT")
            .capabilities(&["var"]),
    );
    let run = h
        .engine
        .start(&id, RunOptions::default())
        .expect("the risk agent joined");

    // The refused start numbered no run: this is the first.
    assert_eq!(run.id().as_str(), "run-1");
    assert_status(&h.clock.block_on(run), RunStatus::Completed);
}

#[test]
fn recovered_runs_are_not_refused_since_agents_register_after_recover() {
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(MemoryStore::new());
    let first = Harness::on_clock(clock.clone(), |builder| builder.store(Arc::clone(&store)));
    first.register(
        first
            .agent("ma-1")
            .of_type("MARKET_ANALYSIS")
            .replies(|_, _| Reply::hang()),
    );
    let mut run = first.start(&bot(), RunOptions::default());
    assert!(clock.run_until_stalled(&mut run).is_pending());
    drop(run);
    drop(first);

    let second = Harness::on_clock(clock.clone(), |builder| {
        builder
            .store(Arc::clone(&store))
            .agent_check(AgentCheck::BeforeStart)
    });
    let mut runs = second.engine.recover().expect("the store lists its runs");
    assert_eq!(runs.len(), 1, "recovered with no agent registered yet");
    let run = runs.remove(0);
    assert!(matches!(
        second.engine.check_plan_agents(run.plan()),
        Err(EngineError::NoAgents { .. })
    ));
    analysis_and_sizing(&second);
    second.register(
        second
            .agent("risk-1")
            .of_type("RISK_MANAGEMENT")
            .capabilities(&["var"]),
    );
    assert_eq!(second.engine.check_plan_agents(run.plan()), Ok(()));

    assert_status(&clock.block_on(run), RunStatus::Completed);
}
