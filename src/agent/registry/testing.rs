//! What the registry's unit tests share: a stub agent, registries of stubs, outcomes,
//! and a registry whose circuit breakers open after one failure on a virtual clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::Value;

use super::{AgentRegistry, Entry};
use crate::agent::breaker::{CircuitBreaker, CircuitChange, CircuitState};
use crate::agent::score::{Outcome, ScoreBreakdown};
use crate::agent::select::SelectError;
use crate::agent::{
    Agent, AgentDescriptor, AgentError, AgentErrorKind, AgentId, Health, RoundRobin, Selection,
    TaskRequest,
};
use crate::definition::{AgentType, TaskType};
use crate::expr::Template;
use crate::plan::AgentTask;

struct Stub(AgentDescriptor);

#[async_trait::async_trait]
impl Agent for Stub {
    fn descriptor(&self) -> &AgentDescriptor {
        &self.0
    }

    async fn execute(&self, _: TaskRequest) -> Result<Value, AgentError> {
        Ok(Value::Null)
    }

    async fn health(&self) -> Health {
        Health::Degraded
    }
}

pub(super) fn stub(descriptor: AgentDescriptor) -> Arc<dyn Agent> {
    Arc::new(Stub(descriptor))
}

pub(super) fn task(required: &[&str], preferred: &[&str]) -> AgentTask {
    AgentTask {
        agent_type: AgentType::new("T"),
        required_capabilities: required.iter().map(|c| c.to_string()).collect(),
        preferred_capabilities: preferred.iter().map(|c| c.to_string()).collect(),
        load_balancing: None,
        task_type: TaskType::new("TASK"),
        parameters: Template::empty_object(),
    }
}

pub(super) fn registry(agents: &[(&str, u32)]) -> AgentRegistry {
    let registry = AgentRegistry::new();
    for &(id, max) in agents {
        let descriptor = AgentDescriptor::new(id, "T").with_max_concurrency(max);
        registry.register(stub(descriptor)).unwrap();
    }
    registry
}

pub(super) fn success(ms: u64) -> Outcome {
    Outcome::Success {
        latency: Duration::from_millis(ms),
    }
}

pub(super) fn failure() -> Outcome {
    Outcome::Failure {
        kind: AgentErrorKind::Temporary,
        latency: Duration::ZERO,
    }
}

pub(super) fn scores(registry: &AgentRegistry) -> HashMap<String, ScoreBreakdown> {
    registry
        .candidates(&task(&[], &[]), &[])
        .into_iter()
        .map(|c| (c.agent.to_string(), c.score))
        .collect()
}

pub(super) fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

/// A registry on a virtual clock at 2026-01-05T09:00:00Z whose breakers open after
/// 1 failure for 1 s, with what selecting from it takes.
pub(super) struct Breaking {
    pub(super) registry: AgentRegistry,
    pub(super) clock: crate::clock::VirtualClock,
    pub(super) any: AgentTask,
    pub(super) balancer: RoundRobin,
    pub(super) rng: StdRng,
}

impl Breaking {
    /// Agents of type `T` with these ids and capacities.
    pub(super) fn new(agents: &[(&str, u32)]) -> Self {
        use chrono::TimeZone;
        let t0 = Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap();
        let clock = crate::clock::VirtualClock::starting_at(t0);
        let registry = AgentRegistry::builder()
            .clock(clock.clone())
            .circuit_breaker(CircuitBreaker::new(1, Duration::from_secs(1)))
            .build();
        for &(id, max) in agents {
            let descriptor = AgentDescriptor::new(id, "T").with_max_concurrency(max);
            registry.register(stub(descriptor)).unwrap();
        }
        Self {
            registry,
            clock,
            any: task(&[], &[]),
            balancer: RoundRobin::new(),
            rng: StdRng::seed_from_u64(1),
        }
    }

    /// Records a call of agent `id` that ended with `outcome`.
    pub(super) fn record(&self, id: &str, outcome: Outcome) -> Option<CircuitChange> {
        let task_type = TaskType::new("TASK");
        self.registry
            .record(&AgentId::from(id), &task_type, outcome)
    }

    pub(super) fn select(&mut self) -> Result<Selection, SelectError> {
        let Self {
            registry,
            any,
            balancer,
            rng,
            ..
        } = self;
        registry.select(any, balancer, rng, &[])
    }

    pub(super) fn circuit(&self, id: &str) -> Option<CircuitState> {
        self.registry.circuit(&AgentId::from(id))
    }
}

impl AgentRegistry {
    pub(super) fn entry_for_test(&self, id: &str) -> Arc<Entry> {
        Arc::clone(self.read().entry(&AgentId::from(id)).unwrap())
    }
}
