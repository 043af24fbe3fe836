//! The measurements behind `agents.<TYPE>.failureRate` and `steps.<stepId>.p95Ms`: the
//! last [`WINDOW`] calls of each agent type and of each step, in fixed-size rings.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::definition::{AgentType, StepId};

/// How many calls the measurements remember: the last 20 of each agent type and of each
/// step.
pub const WINDOW: usize = 20;

/// The last [`WINDOW`] values of something, oldest overwritten first.
#[derive(Debug, Clone, Copy, Default)]
struct Ring<T: Copy + Default> {
    values: [T; WINDOW],
    len: usize,
    next: usize,
}

impl<T: Copy + Default> Ring<T> {
    fn push(&mut self, value: T) {
        if let Some(slot) = self.values.get_mut(self.next) {
            *slot = value;
        }
        self.next = (self.next + 1) % WINDOW;
        self.len = (self.len + 1).min(WINDOW);
    }

    fn values(&self) -> &[T] {
        self.values.get(..self.len).unwrap_or_default()
    }
}

/// Calls measured for adaptations: per agent type whether each failed, per step (of a
/// workflow) how long each took. Bounded: one ring of [`WINDOW`] per type and per step.
#[derive(Debug, Default)]
pub struct Measures {
    inner: Mutex<Rings>,
}

#[derive(Debug, Default)]
struct Rings {
    failures: HashMap<AgentType, Ring<bool>>,
    latencies: HashMap<String, HashMap<StepId, Ring<u64>>>,
}

impl Measures {
    /// Empty measurements.
    pub fn new() -> Self {
        Self::default()
    }

    fn rings(&self) -> std::sync::MutexGuard<'_, Rings> {
        // Each update is a few assignments, never left half-made.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one call of step `step` of workflow `workflow`, made by an agent of
    /// `agent_type`: whether it failed and how long it took.
    pub fn record(
        &self,
        workflow: &str,
        step: &StepId,
        agent_type: &AgentType,
        failed: bool,
        latency: Duration,
    ) {
        let millis = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        let mut rings = self.rings();
        match rings.failures.get_mut(agent_type) {
            Some(ring) => ring.push(failed),
            None => {
                let mut ring = Ring::default();
                ring.push(failed);
                rings.failures.insert(agent_type.clone(), ring);
            }
        }
        if !rings.latencies.contains_key(workflow) {
            rings.latencies.insert(workflow.to_owned(), HashMap::new());
        }
        if let Some(steps) = rings.latencies.get_mut(workflow) {
            steps.entry(step.clone()).or_default().push(millis);
        }
    }

    /// The failed share of `agent_type`'s last calls; `None` before its first.
    pub fn failure_rate(&self, agent_type: &AgentType) -> Option<f64> {
        let rings = self.rings();
        let calls = rings.failures.get(agent_type)?.values();
        if calls.is_empty() {
            return None;
        }
        let failed = calls.iter().filter(|failed| **failed).count();
        Some(failed as f64 / calls.len() as f64)
    }

    /// The 95th percentile (nearest rank) of step `step`'s last calls' latency, in
    /// milliseconds; `None` before its first.
    pub fn p95_ms(&self, workflow: &str, step: &StepId) -> Option<f64> {
        let mut sorted = [0u64; WINDOW];
        let len = {
            let rings = self.rings();
            let values = rings.latencies.get(workflow)?.get(step)?.values();
            let target = sorted.get_mut(..values.len())?;
            target.copy_from_slice(values);
            values.len()
        };
        let sorted = sorted.get_mut(..len)?;
        sorted.sort_unstable();
        // Nearest rank: the smallest value with at least 95% of the calls at or below it.
        let rank = (len * 95).div_ceil(100).max(1);
        sorted.get(rank - 1).map(|millis| *millis as f64)
    }
}
