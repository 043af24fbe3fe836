//! Decisions that learn: a `decision` step with a `decision` block chooses one of its
//! options before its call (journaled, announced, reported with every option's prior
//! score), calls with the option's parameters merged over the task's, and learns from
//! the `reward` evaluated when the run ends, or from one the host reports later. Each
//! learning policy ends up choosing the best of three noisy options although the prior
//! scores favour the worst; contexts learn on their own; a decision is learned from
//! once; with a store, a restarted engine learns on from where the previous one was.

mod support;

use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use support::engine::{Harness, Reply, TestAgent, assert_status, step, t0};
use tradeflow::agent::RunId;
use tradeflow::clock::VirtualClock;
use tradeflow::definition::DecisionPolicy;
use tradeflow::engine::{OutcomeError, RunEvent, RunOptions, RunReport, RunStatus, StepStatus};
use tradeflow::store::{JournalEntry, MemoryStore, RunStore};

/// Fill quality of each algorithm: `vwap` is best, `sweep` worst.
fn quality(algo: &str, regime: &str) -> f64 {
    match (algo, regime) {
        // In a volatile market, speed wins: the order is reversed.
        ("SWEEP", "volatile") => 0.7,
        ("VWAP", "volatile") => 0.3,
        ("SWEEP", _) => 0.3,
        ("TWAP", _) => 0.5,
        ("VWAP", _) => 0.7,
        _ => 0.0,
    }
}

/// An execution agent whose fills are `quality` plus uniform noise of ±0.15, drawn from
/// its own seeded generator (hidden from the engine).
fn executor(h: &Harness) -> Arc<TestAgent> {
    let noise = Mutex::new(StdRng::seed_from_u64(42));
    h.register(
        h.agent("exec-1")
            .of_type("TRADING_EXECUTION")
            .replies(move |request, _| {
                let algo = request.parameters["algo"].as_str().unwrap_or_default();
                let regime = request.parameters["regime"].as_str().unwrap_or("calm");
                let jitter = noise.lock().unwrap().random_range(-0.15..0.15);
                Reply::ok(json!({
                    "fillQuality": quality(algo, regime) + jitter,
                    "qty": request.parameters["qty"],
                }))
            }),
    )
}

/// The `decision` block: three algorithms whose prior scores (cost, minimised) rank
/// `sweep` first (1), `twap` (0.5), `vwap` last (0).
fn decision_block(policy: &str, extra: Value) -> Value {
    let mut block = json!({
        "options": [
            {"id": "twap", "parameters": {"algo": "TWAP"}, "scores": {"cost": 2.0}},
            {"id": "vwap", "parameters": {"algo": "VWAP"}, "scores": {"cost": 3.0}},
            {"id": "sweep", "parameters": {"algo": "SWEEP"}, "scores": {"cost": 1.0}}
        ],
        "criteria": [{"name": "cost", "goal": "MIN"}],
        "reward": "${execution.output.fillQuality}",
        "policy": policy
    });
    if let (Some(block), Value::Object(extra)) = (block.as_object_mut(), extra) {
        block.extend(extra);
    }
    block
}

/// A workflow whose `execution` step decides with `block`.
fn workflow(block: Value) -> Value {
    json!({"id": "algo", "version": "1", "steps": [{
        "id": "execution", "type": "decision",
        "agentCriteria": {"type": "TRADING_EXECUTION"},
        "task": {"type": "EXECUTE", "parameters": {"qty": "${input.qty}", "regime": "${input.regime}", "algo": "NONE"}},
        "decision": block
    }]})
}

fn chosen(report: &RunReport) -> String {
    let decision = step(report, "execution").decision.as_ref();
    decision.map(|d| d.option.clone()).unwrap_or_default()
}

/// Runs `definition` `runs` times (input `calm`), returning the options chosen in order.
fn choices(h: &Harness, definition: &Value, runs: usize) -> Vec<String> {
    (0..runs)
        .map(|_| {
            let report = h.run(definition, json!({"qty": 100, "regime": "calm"}));
            assert_status(&report, RunStatus::Completed);
            chosen(&report)
        })
        .collect()
}

fn share(choices: &[String], option: &str) -> usize {
    choices.iter().filter(|chosen| *chosen == option).count()
}

#[test]
fn the_report_event_and_journal_say_what_was_chosen_and_the_call_gets_its_parameters() {
    let store = Arc::new(MemoryStore::new());
    let shared = Arc::clone(&store);
    let h = Harness::with(|builder| builder.store(shared));
    let agent = executor(&h);
    let report = h.run(
        &workflow(decision_block("STATIC", json!({}))),
        json!({"qty": 100, "regime": "calm"}),
    );
    assert_status(&report, RunStatus::Completed);
    let execution = step(&report, "execution");
    let decision = execution
        .decision
        .as_ref()
        .expect("a decision in the report");
    assert_eq!(decision.option, "sweep");
    assert_eq!(decision.context_key, "");
    assert_eq!(decision.policy, DecisionPolicy::Static);
    assert_eq!(
        serde_json::to_value(&decision.prior_scores).unwrap(),
        json!({"sweep": 1.0, "twap": 0.5, "vwap": 0.0})
    );
    // The reward was evaluated at the end and is in the report.
    let fill = execution.output.as_ref().unwrap()["fillQuality"].as_f64();
    assert_eq!(decision.reward, fill);
    // The call: the option's `algo` replaced the task's, the rest is the task's.
    let calls = agent.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].request.parameters,
        json!({"qty": 100, "regime": "calm", "algo": "SWEEP"})
    );
    // The output is the agent's, untouched.
    assert_eq!(execution.output.as_ref().unwrap()["qty"], json!(100));
    // Journaled before the call; the reward with the end.
    let kinds: Vec<&str> = store
        .load(&report.run_id)
        .unwrap()
        .iter()
        .map(JournalEntry::kind)
        .collect();
    let position = |kind: &str| kinds.iter().position(|k| *k == kind).unwrap_or(usize::MAX);
    assert!(
        position("decisionMade") < position("stepStarted"),
        "{kinds:?}"
    );
    assert_eq!(kinds[kinds.len() - 2..], ["rewardLearned", "runEnded"]);
    assert!(
        h.events().iter().any(|event| matches!(event,
        RunEvent::StepDecided { option, policy: DecisionPolicy::Static, .. } if option == "sweep"))
    );
    // The report serializes with the camelCase names.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(
        json["steps"]["execution"]["decision"]["priorScores"]["sweep"],
        json!(1.0)
    );
    assert_eq!(
        json["steps"]["execution"]["decision"]["contextKey"],
        json!("")
    );
}

/// The share of `vwap` (the best) among the last 100 of `runs` runs under `policy`.
fn best_share_at_the_end(policy: &str, runs: usize) -> usize {
    let h = Harness::new();
    executor(&h);
    let picked = choices(&h, &workflow(decision_block(policy, json!({}))), runs);
    assert_eq!(
        picked[0],
        if policy == "UCB1" {
            "twap"
        } else {
            picked[0].as_str()
        }
    );
    share(&picked[runs - 100..], "vwap")
}

#[test]
fn thompson_sampling_learns_the_best_option_the_prior_ranks_last() {
    let share = best_share_at_the_end("THOMPSON", 300);
    assert!(share >= 85, "vwap chosen {share} of the last 100 runs");
}

#[test]
fn ucb1_learns_the_best_option_the_prior_ranks_last() {
    let share = best_share_at_the_end("UCB1", 400);
    assert!(share >= 75, "vwap chosen {share} of the last 100 runs");
}

#[test]
fn epsilon_greedy_learns_the_best_option_the_prior_ranks_last() {
    let share = best_share_at_the_end("EPSILON_GREEDY", 300);
    assert!(share >= 80, "vwap chosen {share} of the last 100 runs");
}

#[test]
fn a_static_decision_never_moves_from_the_best_prior() {
    let h = Harness::new();
    executor(&h);
    let picked = choices(&h, &workflow(decision_block("STATIC", json!({}))), 50);
    assert_eq!(share(&picked, "sweep"), 50);
}

#[test]
fn each_context_key_value_learns_on_its_own() {
    let h = Harness::new();
    executor(&h);
    let definition = workflow(decision_block(
        "THOMPSON",
        json!({"contextKey": "${input.regime}"}),
    ));
    let mut by_regime: [Vec<String>; 2] = Default::default();
    for run in 0..400 {
        let regime = ["calm", "volatile"][run % 2];
        let report = h.run(&definition, json!({"qty": 10, "regime": regime}));
        let decision = step(&report, "execution").decision.clone().unwrap();
        assert_eq!(decision.context_key, regime);
        by_regime[run % 2].push(decision.option);
    }
    let calm = share(&by_regime[0][150..], "vwap");
    let volatile = share(&by_regime[1][150..], "sweep");
    assert!(calm >= 40, "calm: vwap chosen {calm} of the last 50");
    assert!(
        volatile >= 40,
        "volatile: sweep chosen {volatile} of the last 50"
    );
    let stats = h.engine.decisions().model_stats("algo", "execution");
    assert_eq!(stats.keys().collect::<Vec<_>>(), ["calm", "volatile"]);
    let total: u64 = stats
        .values()
        .flat_map(|options| options.values())
        .map(|s| s.n)
        .sum();
    assert_eq!(total, 400);
}

#[test]
fn a_reward_that_reads_a_skipped_step_learns_nothing_and_says_why() {
    let store = Arc::new(MemoryStore::new());
    let shared = Arc::clone(&store);
    let h = Harness::with(|builder| builder.store(shared));
    executor(&h);
    h.register(
        h.agent("mon-1")
            .of_type("MONITOR")
            .answers(json!({"quality": 1.0})),
    );
    let mut definition = workflow(decision_block(
        "THOMPSON",
        json!({"reward": "${monitor.output.quality}"}),
    ));
    definition["steps"].as_array_mut().unwrap().push(json!({
        "id": "monitor", "type": "task",
        "condition": {"expression": "${input.qty} > 1000"},
        "agentCriteria": {"type": "MONITOR"}, "task": {"type": "MONITOR"}
    }));
    definition["dependencies"] = json!([{"from": "execution", "to": "monitor"}]);
    let report = h.run(&definition, json!({"qty": 100, "regime": "calm"}));
    assert_status(&report, RunStatus::Completed);
    assert_eq!(step(&report, "monitor").status, StepStatus::Skipped);
    let execution = step(&report, "execution");
    assert_eq!(execution.decision.as_ref().unwrap().reward, None);
    let missing = execution.reward_missing.as_deref().unwrap_or_default();
    assert!(missing.contains("monitor"), "{missing}");
    assert!(
        h.engine
            .decisions()
            .model_stats("algo", "execution")
            .is_empty()
    );
    let journal = store.load(&report.run_id).unwrap();
    assert!(journal.iter().any(|entry| matches!(entry,
        JournalEntry::RewardMissing { step_id, .. } if step_id.as_str() == "execution")));
}

/// A workflow whose decision has no `reward`: only the host's reports teach it.
fn reported_workflow() -> Value {
    let mut block = decision_block("THOMPSON", json!({}));
    block.as_object_mut().unwrap().remove("reward");
    workflow(block)
}

fn learned(h: &Harness) -> u64 {
    let stats = h.engine.decisions().model_stats("algo", "execution");
    stats
        .values()
        .flat_map(|options| options.values())
        .map(|s| s.n)
        .sum()
}

#[test]
fn a_reported_outcome_is_learned_once_without_a_store() {
    let h = Harness::new();
    executor(&h);
    let report = h.run(&reported_workflow(), json!({"qty": 1, "regime": "calm"}));
    assert_eq!(learned(&h), 0);
    let run = &report.run_id;
    assert!(matches!(
        h.engine.report_outcome(run, "execution", f64::NAN),
        Err(OutcomeError::BadReward { .. })
    ));
    let normalised = h.engine.report_outcome(run, "execution", 0.9).unwrap();
    assert_eq!(
        normalised, 0.5,
        "the step's first reward is the middle of its range"
    );
    assert_eq!(learned(&h), 1);
    assert!(matches!(
        h.engine.report_outcome(run, "execution", 0.1),
        Err(OutcomeError::AlreadyLearned { reward, .. }) if reward == 0.9
    ));
    assert!(matches!(
        h.engine
            .report_outcome(&RunId::new("run-99"), "execution", 0.1),
        Err(OutcomeError::UnknownRun {
            remembered: true,
            ..
        })
    ));
    assert_eq!(learned(&h), 1);
}

#[test]
fn a_reported_outcome_is_journaled_and_learned_once_with_a_store() {
    let store = Arc::new(MemoryStore::new());
    let shared = Arc::clone(&store);
    let h = Harness::with(|builder| builder.store(shared));
    executor(&h);
    let report = h.run(&reported_workflow(), json!({"qty": 1, "regime": "calm"}));
    let run = &report.run_id;
    assert!(matches!(
        h.engine.report_outcome(run, "nowhere", 0.5),
        Err(OutcomeError::NoDecision { .. })
    ));
    h.engine.report_outcome(run, "execution", 0.8).unwrap();
    let error = h.engine.report_outcome(run, "execution", 0.8).unwrap_err();
    assert!(
        matches!(error, OutcomeError::AlreadyLearned { .. }),
        "{error}"
    );
    assert_eq!(learned(&h), 1);
    let journal = store.load(run).unwrap();
    assert!(matches!(
        journal.last(),
        Some(JournalEntry::RewardLearned { reported: true, reward, .. }) if *reward == 0.8
    ));
    assert_eq!(store.rewarded_runs().unwrap(), std::slice::from_ref(run));
    // The run is not held after the report: another report of another run goes through.
    let other = h.run(&reported_workflow(), json!({"qty": 1, "regime": "calm"}));
    h.engine
        .report_outcome(&other.run_id, "execution", 0.2)
        .unwrap();
    assert_eq!(learned(&h), 2);
}

#[test]
fn a_decision_learned_at_the_end_refuses_a_report() {
    let h = Harness::new();
    executor(&h);
    let report = h.run(
        &workflow(decision_block("THOMPSON", json!({}))),
        json!({"qty": 1, "regime": "calm"}),
    );
    assert!(matches!(
        h.engine.report_outcome(&report.run_id, "execution", 0.5),
        Err(OutcomeError::AlreadyLearned { .. })
    ));
    assert_eq!(learned(&h), 1);
}

/// Runs `count` runs named `r-<i>` from `from` on `h`, returning the options chosen.
fn named_runs(h: &Harness, definition: &Value, from: usize, count: usize) -> Vec<String> {
    (from..from + count)
        .map(|i| {
            let options =
                RunOptions::new(json!({"qty": 5, "regime": "calm"})).run_id(format!("r-{i}"));
            let report = h.run_with(definition, options);
            assert_status(&report, RunStatus::Completed);
            chosen(&report)
        })
        .collect()
}

#[test]
fn a_restarted_engine_learns_on_from_where_the_previous_one_was() {
    let definition = workflow(decision_block("THOMPSON", json!({})));
    // One engine, 200 runs without a break.
    let straight = Harness::new();
    executor(&straight);
    let uninterrupted = named_runs(&straight, &definition, 0, 200);

    // The same 200 runs, the engine dropped after 100 and built anew on its store.
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(MemoryStore::new());
    let durable = |store: &Arc<MemoryStore>| {
        let store = Arc::clone(store);
        Harness::on_clock(clock.clone(), move |builder| builder.store(store))
    };
    let first = durable(&store);
    executor(&first);
    let mut restarted = named_runs(&first, &definition, 0, 100);
    let model = first.engine.decisions().export_model();
    drop(first);
    let second = durable(&store);
    // The executor's noise continues where it was, as a real market's would.
    let relearned = second.engine.relearned();
    assert_eq!((relearned.runs, relearned.rewards), (100, 100));
    assert!(relearned.failed.is_empty() && relearned.unlisted.is_none());
    assert_eq!(second.engine.decisions().export_model(), model);
    let agent_noise = Mutex::new(StdRng::seed_from_u64(42));
    {
        // Replay the first 100 draws so the second engine's agent sees the same noise
        // as the uninterrupted one.
        let mut noise = agent_noise.lock().unwrap();
        for _ in 0..100 {
            let _: f64 = noise.random_range(-0.15..0.15);
        }
    }
    second.register(second.agent("exec-1").of_type("TRADING_EXECUTION").replies(
        move |request, _| {
            let algo = request.parameters["algo"].as_str().unwrap_or_default();
            let jitter = agent_noise.lock().unwrap().random_range(-0.15..0.15);
            Reply::ok(json!({"fillQuality": quality(algo, "calm") + jitter}))
        },
    ));
    restarted.extend(named_runs(&second, &definition, 100, 100));
    // The same model, the same seeds: the very same choices, run for run.
    assert_eq!(restarted, uninterrupted);
    assert_eq!(
        second.engine.decisions().export_model(),
        straight.engine.decisions().export_model()
    );
    assert!(share(&restarted[150..], "vwap") >= 40);
}

#[test]
fn a_run_recovered_after_a_crash_calls_with_the_option_it_chose() {
    let clock = VirtualClock::starting_at(t0());
    let store = Arc::new(MemoryStore::new());
    let agent = Arc::new(
        TestAgent::new("exec-1", &clock)
            .of_type("TRADING_EXECUTION")
            .capacity(2)
            .replies(|_, number| {
                if number == 1 {
                    Reply::hang()
                } else {
                    Reply::ok(json!({"fillQuality": 0.5}))
                }
            }),
    );
    let definition = workflow(decision_block("THOMPSON", json!({})));
    let shared = Arc::clone(&store);
    let first = Harness::on_clock(clock.clone(), move |builder| builder.store(shared));
    first.register_shared(&agent);
    let mut run = first.start(
        &definition,
        RunOptions::new(json!({"qty": 1, "regime": "calm"})),
    );
    assert!(
        clock.run_until_stalled(&mut run).is_pending(),
        "the call hangs"
    );
    assert_eq!(agent.calls().len(), 1);
    drop(run);
    drop(first);
    let first_algo = agent.calls()[0].request.parameters["algo"].clone();

    let shared = Arc::clone(&store);
    let second = Harness::on_clock(clock.clone(), move |builder| builder.store(shared));
    second.register_shared(&agent);
    // The new engine's model would choose another option now, by far.
    let other = ["twap", "vwap", "sweep"]
        .into_iter()
        .find(|option| json!(option.to_uppercase()) != first_algo)
        .unwrap();
    let model = json!({"algo/execution": {"": {other: {"n": 1000, "mean": 1.0, "m2": 0.0}}}});
    second
        .engine
        .decisions()
        .import_model(&model.to_string())
        .unwrap();
    let mut runs = second.engine.recover().unwrap();
    assert_eq!(runs.len(), 1);
    let report = clock.block_on(runs.remove(0));
    assert_status(&report, RunStatus::Completed);
    let calls = agent.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].request.parameters["algo"], first_algo);
    assert_eq!(calls[0].key(), calls[1].key());
    let decided = store
        .load(&report.run_id)
        .unwrap()
        .iter()
        .filter(|entry| entry.kind() == "decisionMade")
        .count();
    assert_eq!(decided, 1);
    assert!(step(&report, "execution").decision.is_some());
}

#[test]
fn rewards_credit_the_agent_that_decided_so_routing_learns_which_agent_earns_more() {
    let h = Harness::new();
    for (id, fill) in [("exec-good", 0.9), ("exec-poor", 0.1)] {
        h.register(
            h.agent(id)
                .of_type("TRADING_EXECUTION")
                .answers(json!({"fillQuality": fill})),
        );
    }
    let mut definition = workflow(decision_block("STATIC", json!({})));
    definition["steps"][0]["agentCriteria"]["loadBalancing"] = json!("ROUND_ROBIN");
    let performance = |h: &Harness| {
        let plan = h.engine.workflow("algo").expect("the workflow is kept");
        let index = plan.index_of("execution").expect("the step exists");
        let task = plan.step(index).and_then(|step| step.agent_task()).unwrap();
        let candidates = h.engine.registry().candidates(task, &[]);
        let of = |id: &str| {
            candidates
                .iter()
                .find(|candidate| candidate.agent.as_str() == id)
                .map(|candidate| candidate.score.performance)
                .unwrap()
        };
        (of("exec-good"), of("exec-poor"))
    };
    let mut agents = Vec::new();
    for _ in 0..30 {
        let report = h.run(&definition, json!({"qty": 1, "regime": "calm"}));
        agents.push(step(&report, "execution").agent_id.clone().unwrap());
    }
    assert!(
        agents.iter().any(|agent| agent.as_str() == "exec-poor"),
        "both decided"
    );
    // The same successes and latencies: only the credited rewards tell them apart.
    let (good, poor) = performance(&h);
    assert!(good > poor + 0.2, "good {good}, poor {poor}");
    // Round robin among the agents that score within the margin of the best: the poor
    // one has dropped out.
    assert!(
        agents[20..]
            .iter()
            .all(|agent| agent.as_str() == "exec-good"),
        "{agents:?}"
    );
}
