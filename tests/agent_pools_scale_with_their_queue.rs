//! Auto-scaling through an `AgentPool`: a queue longer than ten calls per instance adds
//! half as many instances again, capped at the pool's max; an idle host removes one at
//! a time after the cooldown, down to min; a removed agent is drained first (its call
//! in flight finishes) and deregistered once idle.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use serde_json::json;
use support::engine::{Harness, Reply, TestAgent, assert_status};
use support::{task_with, workflow};
use tradeflow::agent::{Agent, AgentId};
use tradeflow::clock::{Clock, VirtualClock};
use tradeflow::definition::AgentType;
use tradeflow::engine::{RunOptions, RunStatus};
use tradeflow::scale::{
    AgentPool, AutoScaler, HostMetrics, ScaleError, Scaler, ScalingEvent, ScalingPolicy,
    ScalingReason,
};

fn factory(clock: &VirtualClock) -> tradeflow::scale::AgentFactory {
    let clock = clock.clone();
    Arc::new(move |id: AgentId| {
        Arc::new(
            TestAgent::new(id.as_str(), &clock).replies(|_, _| Reply::ok(json!({})).after_ms(100)),
        ) as Arc<dyn Agent>
    })
}

fn agent_type() -> AgentType {
    AgentType::new("AGENT")
}

fn calm() -> HostMetrics {
    HostMetrics::new(0.5, 0.5)
}

fn idle() -> HostMetrics {
    HostMetrics::new(0.1, 0.1)
}

#[test]
fn a_long_queue_scales_a_pool_up_and_an_idle_host_scales_it_down_after_the_cooldown() {
    let h = Harness::new();
    let pool = Arc::new(AgentPool::new(Arc::clone(h.engine.registry())));
    pool.add_pool("AGENT", 1, 4, factory(&h.clock))
        .expect("a valid pool");
    let events: Arc<Mutex<Vec<ScalingEvent>>> = Arc::default();
    let sink = Arc::clone(&events);
    let scaler = AutoScaler::new(
        Arc::clone(h.engine.registry()),
        Arc::clone(h.engine.clock()),
        Arc::clone(&pool) as Arc<dyn Scaler>,
    )
    .policy("AGENT", ScalingPolicy::new(1, 4))
    .on_event(move |event| sink.lock().unwrap().push(event.clone()));
    // Forty runs at once, each one call: one in flight, the others waiting in line.
    let id = h.workflow(&workflow([task_with("execute", json!({}))]));
    let runs: Vec<_> = (0..40)
        .map(|_| {
            h.engine
                .start(&id, RunOptions::new(json!({})))
                .expect("the workflow exists")
        })
        .collect();

    let clock = h.clock.clone();
    let (report, during) = h
        .clock
        .block_on(futures::future::join(join_all(runs), async {
            clock.sleep(Duration::from_millis(50)).await;
            let queued = scaler.inputs(&agent_type(), calm());
            let up = scaler.evaluate(&agent_type(), calm()).await;
            // Ten seconds later, still within the cooldown: nothing, however long the queue.
            clock.sleep(Duration::from_secs(10)).await;
            let cooling = scaler
                .evaluate(&agent_type(), HostMetrics::new(0.99, 0.99))
                .await;
            (queued, up, cooling)
        }));

    for report in &report {
        assert_status(report, RunStatus::Completed);
    }
    let (queued, up, cooling) = during;
    assert_eq!(queued.instances, 1);
    assert_eq!(
        queued.queue_length, 39,
        "one call in flight, the others waiting"
    );
    let up = up.expect("the pool grows").expect("39 > 10 × 1");
    assert_eq!((up.from, up.to, up.reason), (1, 2, ScalingReason::Queue));
    assert_eq!(cooling, Ok(None));
    assert_eq!(pool.instances(&agent_type()), 2);

    // After the cooldown, a host still hot grows the pool by half (2 → 3).
    h.clock.advance(Duration::from_secs(50));
    let hot = h
        .clock
        .block_on(scaler.evaluate(&agent_type(), HostMetrics::new(0.9, 0.2)));
    assert_eq!(
        hot.map(|e| e.map(|e| (e.to, e.reason))),
        Ok(Some((3, ScalingReason::Cpu)))
    );
    // Then an idle one shrinks it one agent per cooldown, down to min.
    for expected in [2, 1] {
        let early = h.clock.block_on(scaler.evaluate(&agent_type(), idle()));
        assert_eq!(early, Ok(None), "within the cooldown");
        h.clock.advance(Duration::from_secs(60));
        let down = h.clock.block_on(scaler.evaluate(&agent_type(), idle()));
        assert_eq!(
            down.map(|e| e.map(|e| (e.to, e.reason))),
            Ok(Some((expected, ScalingReason::Idle)))
        );
    }
    h.clock.advance(Duration::from_secs(60));
    assert_eq!(
        h.clock.block_on(scaler.evaluate(&agent_type(), idle())),
        Ok(None),
        "at min"
    );

    let ids: Vec<String> = h
        .engine
        .registry()
        .agents()
        .iter()
        .map(|a| a.id.to_string())
        .collect();
    assert_eq!(
        ids,
        ["AGENT-pool-1"],
        "the newest removed first, deregistered once idle"
    );
    let log: Vec<(usize, usize)> = events
        .lock()
        .unwrap()
        .iter()
        .map(|e| (e.from, e.to))
        .collect();
    assert_eq!(log, [(1, 2), (2, 3), (3, 2), (2, 1)]);
}

#[test]
fn a_removed_agent_finishes_its_call_in_flight_before_it_is_deregistered() {
    let h = Harness::new();
    let registry = Arc::clone(h.engine.registry());
    let pool = AgentPool::new(Arc::clone(&registry));
    pool.add_pool("AGENT", 1, 2, factory(&h.clock))
        .expect("a valid pool");
    assert_eq!(h.clock.block_on(pool.add(&agent_type(), 1)), Ok(1));
    let newest = AgentId::from("AGENT-pool-2");
    let agent = registry.agent(&newest).expect("registered");
    let task = tradeflow::agent::TaskRequest::new("r", "s", "k", "TASK", json!({}));
    let lease = registry
        .reserve_named(&newest)
        .flatten()
        .expect("a free slot")
        .1;
    let clock = h.clock.clone();

    let (answer, during) = h
        .clock
        .block_on(futures::future::join(agent.execute(task), async {
            clock.sleep(Duration::from_millis(10)).await;
            let removed = pool.remove(&agent_type(), 5).await;
            (
                removed,
                registry.is_drained(&newest),
                pool.instances(&agent_type()),
            )
        }));

    assert!(answer.is_ok());
    assert_eq!(
        during,
        (Ok(1), Some(true), 1),
        "drained, still registered, min kept"
    );
    drop(lease);
    assert_eq!(pool.reap(), std::slice::from_ref(&newest));
    assert!(registry.agent(&newest).is_none());
}

#[test]
fn pools_refuse_impossible_bounds_and_foreign_agents() {
    let h = Harness::new();
    let pool = AgentPool::new(Arc::clone(h.engine.registry()));
    assert!(matches!(
        pool.add_pool("AGENT", 3, 2, factory(&h.clock)),
        Err(ScaleError::InvalidLimits { min: 3, max: 2, .. })
    ));
    let clock = h.clock.clone();
    let foreign = pool.add_pool(
        "RISK",
        1,
        2,
        Arc::new(move |_| Arc::new(TestAgent::new("someone", &clock)) as Arc<dyn Agent>),
    );
    assert_eq!(
        foreign.unwrap_err().to_string(),
        "pool of `RISK`: the factory made agent `someone` of type `AGENT` when asked for `RISK-pool-1`"
    );
    assert_eq!(
        h.clock.block_on(pool.add(&AgentType::new("NONE"), 1)),
        Err(ScaleError::UnknownPool {
            agent_type: AgentType::new("NONE")
        })
    );
}
