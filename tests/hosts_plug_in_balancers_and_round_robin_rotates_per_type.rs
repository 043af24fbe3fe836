//! Load balancing in the engine: a host's own balancer is the default of steps that name
//! no `loadBalancing`, a step that names a built-in strategy still gets it, and
//! `ROUND_ROBIN` keeps one rotation per agent type.

mod support;

use std::sync::{Arc, Mutex};

use rand::Rng;
use serde_json::{Value, json};
use support::engine::{Harness, assert_status, step, step_on};
use support::workflow;
use tradeflow::agent::{AgentRegistry, Candidate, LoadBalancer};
use tradeflow::definition::AgentType;
use tradeflow::engine::RunStatus;

/// Always calls the last of the candidates it is shown; remembers the agent types it
/// was asked for.
#[derive(Debug, Default)]
struct Last {
    asked: Mutex<Vec<String>>,
}

impl LoadBalancer for Last {
    fn pick(&self, candidates: &[Candidate], _: &mut dyn Rng) -> usize {
        candidates.len().saturating_sub(1)
    }

    fn pick_for(
        &self,
        agent_type: &AgentType,
        candidates: &[Candidate],
        rng: &mut dyn Rng,
    ) -> usize {
        self.asked.lock().unwrap().push(agent_type.to_string());
        self.pick(candidates, rng)
    }
}

/// A harness whose balancers see every free agent (margin 1), so that the balancer
/// alone decides, whatever the agents' history.
fn harness(
    configure: impl FnOnce(tradeflow::engine::EngineBuilder) -> tradeflow::engine::EngineBuilder,
) -> Harness {
    Harness::with(|builder| configure(builder.registry(Arc::new(AgentRegistry::with_margin(1.0)))))
}

fn register(h: &Harness, ids: &[&str], agent_type: &str) {
    for id in ids {
        h.register(h.agent(id).of_type(agent_type).answers(json!({})));
    }
}

fn balanced(id: &str, agent_type: &str, strategy: &str) -> Value {
    let mut step = step_on(id, agent_type);
    step["agentCriteria"]["loadBalancing"] = json!(strategy);
    step
}

fn agent_of(report: &tradeflow::engine::RunReport, id: &str) -> String {
    step(report, id)
        .agent_id
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default()
}

#[test]
fn a_host_balancer_chooses_for_steps_that_name_no_strategy() {
    let last = Arc::new(Last::default());
    let h = harness(|builder| builder.load_balancer(Arc::clone(&last) as Arc<dyn LoadBalancer>));
    register(&h, &["auto-a", "auto-b", "auto-c"], "AUTO");
    register(&h, &["named-a", "named-b", "named-c"], "NAMED");

    let report = h.run(
        &workflow([
            balanced("named", "NAMED", "LEAST_CONNECTIONS"),
            step_on("auto", "AUTO"),
            step_on("again", "AUTO"),
        ]),
        json!({}),
    );

    assert_status(&report, RunStatus::Completed);
    assert_eq!(agent_of(&report, "auto"), "auto-c");
    assert_eq!(agent_of(&report, "again"), "auto-c");
    // LEAST_CONNECTIONS, as named: no call in flight anywhere, the smallest id.
    assert_eq!(agent_of(&report, "named"), "named-a");
    assert_eq!(*last.asked.lock().unwrap(), ["AUTO", "AUTO"]);
}

#[test]
fn round_robin_rotates_each_agent_type_through_its_own_agents() {
    let h = harness(|builder| builder);
    register(&h, &["risk-1", "risk-2"], "RISK");
    register(&h, &["exec-1", "exec-2"], "EXECUTION");
    // RISK and EXECUTION steps in turn, one after another (listed order).
    let steps: Vec<Value> = (0..8)
        .map(|i| match i % 2 {
            0 => balanced(&format!("risk-{i}"), "RISK", "ROUND_ROBIN"),
            _ => balanced(&format!("exec-{i}"), "EXECUTION", "ROUND_ROBIN"),
        })
        .collect();

    let report = h.run(&workflow(steps), json!({}));

    assert_status(&report, RunStatus::Completed);
    let risk: Vec<String> = [0, 2, 4, 6]
        .map(|i| agent_of(&report, &format!("risk-{i}")))
        .into();
    let exec: Vec<String> = [1, 3, 5, 7]
        .map(|i| agent_of(&report, &format!("exec-{i}")))
        .into();
    assert_eq!(risk, ["risk-1", "risk-2", "risk-1", "risk-2"]);
    assert_eq!(exec, ["exec-1", "exec-2", "exec-1", "exec-2"]);
}
