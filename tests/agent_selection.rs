//! Agent selection: capacity is never exceeded, scores follow capabilities, load and
//! history, each balancer spreads calls as it says, and a seed fixes the picks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures::FutureExt;
use futures::executor::block_on;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use tradeflow::agent::{
    Agent, AgentDescriptor, AgentError, AgentErrorKind, AgentId, AgentRegistry, Health,
    LeastConnections, LoadBalancer, Outcome, PowerOfTwoChoices, RoundRobin, SelectError, Selection,
    TaskRequest, Weighted, balancer_for,
};
use tradeflow::definition::{LoadBalancing, TaskType};
use tradeflow::plan::{AgentTask, ExecutionPlan};

struct Quiet(AgentDescriptor);

#[async_trait::async_trait]
impl Agent for Quiet {
    fn descriptor(&self) -> &AgentDescriptor {
        &self.0
    }

    async fn execute(&self, request: TaskRequest) -> Result<Value, AgentError> {
        Ok(request.parameters)
    }
}

/// An execution agent, one slot unless changed.
fn exec(id: &str) -> AgentDescriptor {
    AgentDescriptor::new(id, "TRADING_EXECUTION")
}

fn registry(agents: impl IntoIterator<Item = AgentDescriptor>) -> AgentRegistry {
    fill(AgentRegistry::new(), agents)
}

fn fill(
    registry: AgentRegistry,
    agents: impl IntoIterator<Item = AgentDescriptor>,
) -> AgentRegistry {
    for descriptor in agents {
        registry.register(Arc::new(Quiet(descriptor))).unwrap();
    }
    registry
}

/// The agent call of a one-step workflow with these criteria (`type` added).
fn task(criteria: Value) -> AgentTask {
    let mut criteria = criteria;
    criteria["type"] = json!("TRADING_EXECUTION");
    let workflow = json!({"id": "w", "steps": [{"id": "trade", "type": "task",
        "agentCriteria": criteria, "task": {"type": "ORDER_EXECUTION"}}]});
    let plan = ExecutionPlan::from_json(&workflow.to_string()).unwrap();
    plan.steps()[0].agent_task().unwrap().clone()
}

/// A call any execution agent can take (compiled once: tests pick thousands of times).
fn any() -> &'static AgentTask {
    static ANY: LazyLock<AgentTask> = LazyLock::new(|| task(json!({})));
    &ANY
}

fn id(text: &str) -> AgentId {
    AgentId::from(text)
}

fn seeded(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Selects and releases at once; returns who was picked.
fn pick(
    registry: &AgentRegistry,
    task: &AgentTask,
    balancer: &dyn LoadBalancer,
    rng: &mut StdRng,
) -> AgentId {
    let selection = registry.select(task, balancer, rng, &[]).unwrap();
    selection.candidate.agent
}

fn hold(registry: &AgentRegistry, task: &AgentTask, rng: &mut StdRng) -> Selection {
    registry
        .select(task, &LeastConnections, rng, &[])
        .expect("a free slot")
}

fn counts(picks: impl IntoIterator<Item = AgentId>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for agent in picks {
        *counts.entry(agent.to_string()).or_default() += 1;
    }
    counts
}

fn agent_score(registry: &AgentRegistry, task: &AgentTask, agent: &str) -> f64 {
    let candidates = registry.candidates(task, &[]);
    let candidate = candidates.iter().find(|c| c.agent == agent).unwrap();
    candidate.score.total
}

#[test]
fn an_agent_at_max_concurrency_is_never_given_more_work() {
    let registry = registry([exec("a").with_max_concurrency(2), exec("b")]);
    let mut rng = seeded(1);
    let held: Vec<Selection> = (0..3).map(|_| hold(&registry, any(), &mut rng)).collect();
    let per_agent = counts(held.iter().map(|s| s.lease.agent().clone()));
    assert_eq!(
        per_agent,
        BTreeMap::from([("a".into(), 2), ("b".into(), 1)])
    );

    let busy = registry.select(any(), &LeastConnections, &mut rng, &[]);
    assert_eq!(
        busy.unwrap_err(),
        SelectError::AllBusy {
            agent_type: "TRADING_EXECUTION".into(),
            eligible: 2
        }
    );
    // Busy agents are still candidates, flagged.
    let candidates = registry.candidates(any(), &[]);
    assert_eq!(candidates.len(), 2);
    assert!(
        candidates
            .iter()
            .all(|c| c.is_busy() && c.score.load == 0.0)
    );

    let changed = registry.capacity_changed();
    let (on_b, _on_a): (Vec<Selection>, Vec<Selection>) =
        held.into_iter().partition(|s| s.lease.agent() == "b");
    drop(on_b);
    assert_eq!(changed.now_or_never(), Some(()));
    let next = registry.select(any(), &RoundRobin::new(), &mut rng, &[]);
    assert_eq!(next.unwrap().candidate.agent, "b");
}

#[test]
fn a_lease_freed_on_another_thread_completes_capacity_changed() {
    let registry = registry([exec("a")]);
    let mut rng = seeded(1);
    let lease = hold(&registry, any(), &mut rng);
    let changed = registry.capacity_changed();
    assert!(matches!(
        registry.select(any(), &LeastConnections, &mut rng, &[]),
        Err(SelectError::AllBusy { .. })
    ));
    std::thread::scope(|scope| {
        scope.spawn(move || drop(lease));
        block_on(changed);
    });
    assert!(
        registry
            .select(any(), &LeastConnections, &mut rng, &[])
            .is_ok()
    );
}

#[test]
fn an_agent_joining_completes_capacity_changed() {
    let registry = registry([exec("a")]);
    let changed = registry.capacity_changed();
    let waiting_longer = registry.capacity_changed();
    registry.register(Arc::new(Quiet(exec("b")))).unwrap();
    assert_eq!(changed.now_or_never(), Some(()));
    assert_eq!(waiting_longer.now_or_never(), Some(()));
    assert_eq!(registry.capacity_changed().now_or_never(), None);
}

#[test]
fn a_missing_required_capability_disqualifies() {
    let registry = registry([
        exec("a").with_capabilities(["twap"]),
        exec("b").with_capabilities(["vwap"]),
        exec("c"),
    ]);
    let twap = task(json!({"requiredCapabilities": ["twap"]}));
    let candidates = registry.candidates(&twap, &[]);
    assert_eq!(candidates.len(), 1);
    assert_eq!(candidates[0].agent, "a");
    let mut rng = seeded(2);
    for _ in 0..20 {
        assert_eq!(pick(&registry, &twap, &RoundRobin::new(), &mut rng), "a");
    }
    // `capabilities` means the same as `requiredCapabilities`.
    let both = task(json!({"capabilities": ["twap"], "requiredCapabilities": ["vwap"]}));
    let error = registry
        .select(&both, &Weighted, &mut rng, &[])
        .unwrap_err();
    assert_eq!(error.kind(), "NO_AGENT");
    assert!(matches!(error, SelectError::NoAgent { excluded: 0, .. }));
}

#[test]
fn a_preferred_capability_raises_the_score() {
    let registry = registry([
        exec("plain").with_capabilities(["twap"]),
        exec("dark").with_capabilities(["twap", "dark-pool"]),
    ]);
    let prefers = task(json!({"requiredCapabilities": ["twap"],
        "preferredCapabilities": ["dark-pool"]}));
    let candidates = registry.candidates(&prefers, &[]);
    assert_eq!(candidates[0].agent, "dark");
    assert_eq!(candidates[0].score.capability, 1.0);
    // (1 required + 0.5 × 0 preferred) / (1 + 0.5 × 1).
    assert!((candidates[1].score.capability - 2.0 / 3.0).abs() < 1e-12);
    assert!(candidates[0].score.total > candidates[1].score.total + 0.05);
    let mut rng = seeded(3);
    for _ in 0..20 {
        assert_eq!(
            pick(&registry, &prefers, &RoundRobin::new(), &mut rng),
            "dark"
        );
    }
    // Without the preference, both are the best: the rotation reaches each.
    let rotation = RoundRobin::new();
    let picks = (0..4).map(|_| pick(&registry, any(), &rotation, &mut rng));
    assert_eq!(counts(picks).len(), 2);
}

#[test]
fn load_lowers_the_score() {
    let registry = registry([
        exec("a").with_max_concurrency(4),
        exec("b").with_max_concurrency(4),
    ]);
    let mut rng = seeded(4);
    let before = agent_score(&registry, any(), "a");
    assert_eq!(before, agent_score(&registry, any(), "b"));
    let _lease = registry
        .select(any(), &RoundRobin::new(), &mut rng, &[])
        .unwrap();
    let candidates = registry.candidates(any(), &[]);
    assert_eq!(candidates[0].agent, "b");
    assert_eq!(candidates[1].agent, "a");
    assert_eq!(candidates[1].in_flight, 1);
    assert_eq!(candidates[1].score.load, 0.75);
    assert!((before - candidates[1].score.total - 0.20 * 0.25).abs() < 1e-12);
}

#[test]
fn a_failure_lowers_availability_and_history_and_a_success_restores_availability() {
    let registry = registry([exec("a"), exec("b")]);
    let order = TaskType::ORDER_EXECUTION;
    let failure = Outcome::Failure {
        kind: AgentErrorKind::Temporary,
        latency: Duration::from_millis(30),
    };
    registry.record(&id("a"), &order, failure);
    let candidates = registry.candidates(any(), &[]);
    let (b, a) = (&candidates[0], &candidates[1]);
    assert_eq!((a.agent.as_str(), b.agent.as_str()), ("a", "b"));
    assert_eq!(a.score.availability, 0.5);
    assert!(a.score.performance < b.score.performance);
    assert_eq!(b.score.availability, 1.0);
    assert_eq!(b.score.performance, 0.5);

    registry.record(&id("a"), &order, failure);
    assert_eq!(registry.candidates(any(), &[])[1].score.availability, 0.25);

    let success = Outcome::Success {
        latency: Duration::from_millis(10),
    };
    registry.record(&id("a"), &order, success);
    let a = registry
        .candidates(any(), &[])
        .into_iter()
        .find(|c| c.agent == "a");
    assert_eq!(a.unwrap().score.availability, 1.0);
}

#[test]
fn faster_agents_score_higher_on_that_task_type() {
    let registry = registry([exec("fast"), exec("slow")]);
    let order = TaskType::ORDER_EXECUTION;
    for (agent, ms) in [("fast", 10), ("slow", 100)] {
        let latency = Duration::from_millis(ms);
        registry.record(&id(agent), &order, Outcome::Success { latency });
    }
    let candidates = registry.candidates(any(), &[]);
    assert_eq!(candidates[0].agent, "fast");
    assert!(candidates[0].score.performance > candidates[1].score.performance);
}

#[test]
fn round_robin_rotates_exactly() {
    let registry = registry([exec("a"), exec("b"), exec("c")]);
    let balancer = balancer_for(LoadBalancing::RoundRobin);
    let mut rng = seeded(5);
    let picks: Vec<String> = (0..9)
        .map(|_| pick(&registry, any(), &*balancer, &mut rng).to_string())
        .collect();
    assert_eq!(picks, ["a", "b", "c", "a", "b", "c", "a", "b", "c"]);
}

#[test]
fn weighted_picks_in_proportion_to_weight() {
    let registry = registry([
        exec("light").with_weight(1.0),
        exec("medium").with_weight(2.0),
        exec("heavy").with_weight(3.0),
    ]);
    let balancer = balancer_for(LoadBalancing::Weighted);
    let mut rng = seeded(6);
    let draws = 10_000;
    let picks = counts((0..draws).map(|_| pick(&registry, any(), &*balancer, &mut rng)));
    for (agent, weight) in [("light", 1.0), ("medium", 2.0), ("heavy", 3.0)] {
        let share = picks[agent] as f64 / draws as f64;
        let expected = weight / 6.0;
        assert!(
            (share - expected).abs() < 0.02,
            "{agent}: {share} of picks, expected {expected}"
        );
    }
}

#[test]
fn least_connections_picks_the_least_loaded() {
    // A margin of 1 hands every open candidate to the balancer.
    let registry = fill(
        AgentRegistry::with_margin(1.0),
        ["a", "b", "c"].map(|agent| exec(agent).with_max_concurrency(4)),
    );
    let mut rng = seeded(7);
    let mut held = Vec::new();
    for (agent, calls) in [("a", 2), ("b", 1)] {
        for _ in 0..calls {
            let others: Vec<AgentId> = ["a", "b", "c"]
                .into_iter()
                .filter(|other| *other != agent)
                .map(id)
                .collect();
            held.push(
                registry
                    .select(any(), &LeastConnections, &mut rng, &others)
                    .unwrap(),
            );
        }
    }
    let first = registry
        .select(any(), &LeastConnections, &mut rng, &[])
        .unwrap();
    assert_eq!(first.candidate.agent, "c");
    held.push(first);
    // b and c now have one call each, equal scores: the smaller id.
    let second = registry
        .select(any(), &LeastConnections, &mut rng, &[])
        .unwrap();
    assert_eq!(second.candidate.agent, "b");
}

#[test]
fn power_of_two_choices_never_picks_the_most_loaded_of_three() {
    let registry = fill(
        AgentRegistry::with_margin(1.0),
        ["a", "b", "c"].map(|agent| exec(agent).with_max_concurrency(4)),
    );
    let mut rng = seeded(8);
    let busy: Vec<Selection> = (0..3)
        .map(|_| {
            let exclude = [id("b"), id("c")];
            registry
                .select(any(), &LeastConnections, &mut rng, &exclude)
                .unwrap()
        })
        .collect();
    assert!(busy.iter().all(|s| s.lease.agent() == "a"));
    let picks = counts((0..1_000).map(|_| pick(&registry, any(), &PowerOfTwoChoices, &mut rng)));
    assert_eq!(picks.get("a"), None);
    assert!(picks["b"] > 100 && picks["c"] > 100, "{picks:?}");
}

#[test]
fn the_same_seed_gives_the_same_picks() {
    let agents = || {
        fill(
            AgentRegistry::with_margin(1.0),
            (0..5).map(|n| exec(&format!("agent-{n}")).with_weight(f64::from(n + 1))),
        )
    };
    for kind in [LoadBalancing::Weighted, LoadBalancing::PowerOfTwoChoices] {
        let run = |seed: u64| -> Vec<AgentId> {
            let registry = agents();
            let balancer = balancer_for(kind);
            let mut rng = seeded(seed);
            (0..200)
                .map(|_| pick(&registry, any(), &*balancer, &mut rng))
                .collect()
        };
        assert_eq!(run(42), run(42), "{kind:?}");
        assert_ne!(run(42), run(43), "{kind:?}");
    }
}

#[test]
fn a_deregistered_agent_gets_no_new_work() {
    let registry = registry([
        exec("a").with_max_concurrency(8),
        exec("b").with_max_concurrency(8),
    ]);
    let mut rng = seeded(9);
    let on_a = registry
        .select(any(), &LeastConnections, &mut rng, &[id("b")])
        .unwrap();
    let changed = registry.capacity_changed();
    assert!(registry.deregister(&id("a")));
    assert_eq!(changed.now_or_never(), Some(()));
    assert_eq!(registry.agents(), [exec("b").with_max_concurrency(8)]);
    for balancer in [
        LoadBalancing::RoundRobin,
        LoadBalancing::Weighted,
        LoadBalancing::LeastConnections,
        LoadBalancing::PowerOfTwoChoices,
    ]
    .map(balancer_for)
    {
        for _ in 0..50 {
            assert_eq!(pick(&registry, any(), &*balancer, &mut rng), "b");
        }
    }
    // The call in flight on `a` finishes normally.
    drop(on_a);
    assert!(registry.deregister(&id("b")));
    let error = registry.select(any(), &RoundRobin::new(), &mut rng, &[]);
    assert!(matches!(error, Err(SelectError::NoAgent { .. })));
}

#[test]
fn an_unavailable_agent_can_be_excluded_for_the_retry() {
    let registry = registry([exec("a"), exec("b")]);
    let mut rng = seeded(10);
    for _ in 0..10 {
        let selection = registry
            .select(any(), &RoundRobin::new(), &mut rng, &[id("a")])
            .unwrap();
        assert_eq!(selection.candidate.agent, "b");
    }
    let error = registry
        .select(any(), &RoundRobin::new(), &mut rng, &[id("a"), id("b")])
        .unwrap_err();
    assert!(matches!(error, SelectError::NoAgent { excluded: 2, .. }));
}

#[test]
fn unhealthy_agents_are_chosen_only_when_nothing_else_exists() {
    let registry = registry([exec("a"), exec("b")]);
    registry.set_health(&id("a"), Health::Unhealthy);
    let mut rng = seeded(11);
    for _ in 0..20 {
        assert_eq!(pick(&registry, any(), &Weighted, &mut rng), "b");
    }
    registry.set_health(&id("b"), Health::Unhealthy);
    let picks = counts((0..20).map(|_| pick(&registry, any(), &RoundRobin::new(), &mut rng)));
    assert!(picks.contains_key("a"));
}

#[test]
fn concurrent_selections_never_exceed_max_concurrency() {
    const THREADS: u64 = 8;
    const CALLS: usize = 2_000;
    let limits = [("a", 2), ("b", 3)];
    let registry = registry(limits.map(|(agent, max)| exec(agent).with_max_concurrency(max)));
    let active: BTreeMap<&str, AtomicU32> = limits
        .iter()
        .map(|&(agent, _)| (agent, AtomicU32::new(0)))
        .collect();
    let peak: BTreeMap<&str, AtomicU32> = limits
        .iter()
        .map(|&(agent, _)| (agent, AtomicU32::new(0)))
        .collect();
    let balancers: Vec<Arc<dyn LoadBalancer>> = [
        LoadBalancing::RoundRobin,
        LoadBalancing::Weighted,
        LoadBalancing::LeastConnections,
        LoadBalancing::PowerOfTwoChoices,
    ]
    .map(balancer_for)
    .to_vec();
    let task = any();

    std::thread::scope(|scope| {
        // Agents join and leave while selections go on.
        scope.spawn(|| {
            for _ in 0..200 {
                registry.register(Arc::new(Quiet(exec("churn")))).unwrap();
                assert!(registry.deregister(&id("churn")));
            }
        });
        for thread in 0..THREADS {
            let (registry, active, peak, task) = (&registry, &active, &peak, &task);
            let balancer = Arc::clone(&balancers[thread as usize % balancers.len()]);
            scope.spawn(move || {
                let mut rng = seeded(thread);
                let mut done = 0;
                while done < CALLS {
                    let changed = registry.capacity_changed();
                    match registry.select(task, &*balancer, &mut rng, &[]) {
                        Ok(selection) => {
                            let agent = selection.lease.agent().to_string();
                            if let Some(counter) = active.get(agent.as_str()) {
                                let now = counter.fetch_add(1, Ordering::SeqCst) + 1;
                                peak[agent.as_str()].fetch_max(now, Ordering::SeqCst);
                                std::thread::yield_now();
                                counter.fetch_sub(1, Ordering::SeqCst);
                            }
                            drop(selection);
                            done += 1;
                        }
                        Err(SelectError::AllBusy { .. }) => block_on(changed),
                        Err(other) => panic!("unexpected {other}"),
                    }
                }
            });
        }
    });
    for (agent, max) in limits {
        let seen = peak[agent].load(Ordering::SeqCst);
        assert!(seen <= max, "{agent}: {seen} calls at once, max {max}");
        assert!(seen >= 1, "{agent} was never chosen");
    }
    let candidates = registry.candidates(any(), &[]);
    assert!(candidates.iter().all(|c| c.in_flight == 0));
}
