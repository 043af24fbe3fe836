//! What calls teach the registry: each call's outcome (the agent's history per task
//! type, its consecutive failures, and its circuit breaker's bookkeeping), the rewards
//! credited to its decisions, and its health.
//!
//! Each update takes the registry's read lock and the agent's stats lock for a few
//! assignments; a change that can let a waiting caller through (a breaker opening,
//! closing or giving up its probe, a health changing) wakes every waiting caller.

use std::sync::Arc;

use super::AgentRegistry;
use crate::agent::breaker::{CircuitChange, CircuitState};
use crate::agent::score::Outcome;
use crate::agent::select::RewardError;
use crate::agent::{Agent, AgentId, Health};
use crate::definition::TaskType;

impl AgentRegistry {
    /// Records how a call ended: updates the agent's history for `task_type` (success
    /// rate and latency, exponentially weighted), its consecutive-failure count (reset
    /// by a success; `PERMANENT` failures leave it alone) and its circuit breaker (see
    /// [Circuit breakers](crate::agent#circuit-breakers)), at the registry clock's time.
    /// Returns the breaker's change, if the outcome opened or closed it. Ignored (`None`)
    /// for an agent that is not registered.
    ///
    /// Record before the call's [`Lease`](crate::agent::Lease) is dropped, as the engine
    /// does: a probe's lease dropped with no outcome recorded gives up the probe (the
    /// breaker stays half open, and the next call probes).
    pub fn record(
        &self,
        agent: &AgentId,
        task_type: &TaskType,
        outcome: Outcome,
    ) -> Option<CircuitChange> {
        let (change, freed) = {
            let agents = self.read();
            let entry = agents.entry(agent)?;
            let mut stats = entry.stats();
            stats
                .history
                .entry(task_type.clone())
                .or_default()
                .observe(&outcome);
            if let Outcome::Success { .. } = outcome {
                stats.consecutive_failures = 0;
            } else if outcome.strains_availability() {
                stats.consecutive_failures = stats.consecutive_failures.saturating_add(1);
            }
            let blocking = stats.breaker.is_blocking();
            let change = stats.breaker.record(&outcome, self.clock.now());
            (change, blocking && !stats.breaker.is_blocking())
        };
        // Waiting callers select again: an opened breaker gives them a half-open time
        // to wait for, a closed one (or a probe given up) a slot to take.
        if change.is_some() || freed {
            self.notify.notify_all();
        }
        change
    }

    /// Credits the outcome of a decision `agent` made on `task_type`: `reward`, already
    /// normalised by the caller to [0, 1] (1 the best outcome seen, 0 the worst).
    ///
    /// Rewards are averaged per agent and task type, exponentially weighted with alpha
    /// 0.2 like the success rate (the first reward sets the average; each later one
    /// moves it 20% of the way). Once the agent has an average on the task type, its
    /// *performance* there is `0.5 × success rate + 0.2 × latency + 0.3 × average
    /// reward`; without one it stays `0.7 × success rate + 0.3 × latency` (see
    /// [Selection](crate::agent#selection)). The average is forgotten, like the rest of the
    /// agent's history, when the agent is deregistered.
    ///
    /// # Errors
    /// [`RewardError::OutOfRange`] when `reward` is not finite or lies outside [0, 1]
    /// (nothing is credited); [`RewardError::UnknownAgent`] when no agent `agent` is
    /// registered.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use tradeflow::agent::{Agent, AgentDescriptor, AgentError, AgentRegistry, RewardError, TaskRequest};
    /// # use tradeflow::plan::ExecutionPlan;
    /// # struct Venue(AgentDescriptor);
    /// # #[tradeflow::async_trait]
    /// # impl Agent for Venue {
    /// #     fn descriptor(&self) -> &AgentDescriptor { &self.0 }
    /// #     async fn execute(&self, r: TaskRequest) -> Result<serde_json::Value, AgentError> {
    /// #         Ok(r.parameters)
    /// #     }
    /// # }
    /// # let plan = ExecutionPlan::from_json(r#"{"id": "w", "steps": [{"id": "pick", "type": "task",
    /// #     "agentCriteria": {"type": "STRATEGY"}, "task": {"type": "SIGNAL"}}]}"#)?;
    /// # let task = plan.steps()[0].agent_task().expect("a task step");
    /// let registry = AgentRegistry::new();
    /// registry.register(Arc::new(Venue(AgentDescriptor::new("momentum", "STRATEGY"))))?;
    /// let momentum = "momentum".into();
    /// // Never run: a neutral 0.5.
    /// assert_eq!(registry.candidates(task, &[])[0].score.performance, 0.5);
    /// registry.credit_reward(&momentum, &task.task_type, 1.0)?;
    /// // 0.5 × 0.5 (the prior success rate) + 0.2 × 0.5 (no latency yet) + 0.3 × 1.
    /// let performance = registry.candidates(task, &[])[0].score.performance;
    /// assert!((performance - 0.65).abs() < 1e-12);
    /// // Rewards are normalised by the caller: a P&L is not one.
    /// let error = registry.credit_reward(&momentum, &task.task_type, 1250.0).unwrap_err();
    /// assert!(matches!(error, RewardError::OutOfRange { .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn credit_reward(
        &self,
        agent: &AgentId,
        task_type: &TaskType,
        reward: f64,
    ) -> Result<(), RewardError> {
        if !(0.0..=1.0).contains(&reward) {
            return Err(RewardError::OutOfRange {
                agent: agent.clone(),
                task_type: task_type.clone(),
                reward,
            });
        }
        let agents = self.read();
        let Some(entry) = agents.entry(agent) else {
            return Err(RewardError::UnknownAgent {
                agent: agent.clone(),
            });
        };
        entry
            .stats()
            .history
            .entry(task_type.clone())
            .or_default()
            .credit(reward);
        Ok(())
    }

    /// The state of an agent's circuit breaker now (on the registry's clock); `None` for
    /// an agent that is not registered.
    pub fn circuit(&self, agent: &AgentId) -> Option<CircuitState> {
        let agents = self.read();
        let entry = agents.entry(agent)?;
        let stats = entry.stats();
        Some(stats.breaker.state(self.clock.now()))
    }

    /// Sets an agent's health (from [`Agent::health`] or the host's own monitoring).
    /// Ignored for an agent that is not registered.
    pub fn set_health(&self, agent: &AgentId, health: Health) {
        let changed = {
            let agents = self.read();
            let Some(entry) = agents.entry(agent) else {
                return;
            };
            let mut stats = entry.stats();
            std::mem::replace(&mut stats.health, health) != health
        };
        // Health decides whether unhealthy agents may be chosen: waiters re-check.
        if changed {
            self.notify.notify_all();
        }
    }

    /// Asks every registered agent for its [`Agent::health`] and records the answers.
    /// The probes run one after another, with no lock held.
    pub async fn check_health(&self) {
        let agents: Vec<(AgentId, Arc<dyn Agent>)> = {
            let agents = self.read();
            agents
                .types
                .keys()
                .filter_map(|id| agents.entry(id))
                .map(|entry| (entry.descriptor.id.clone(), Arc::clone(&entry.agent)))
                .collect()
        };
        for (id, agent) in agents {
            let health = agent.health().await;
            self.set_health(&id, health);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{Breaking, close, failure, registry, scores, success, task};
    use super::*;
    use crate::agent::score;
    use crate::agent::{AgentErrorKind, SelectError};
    use crate::clock::Clock;
    use crate::definition::AgentType;

    #[test]
    fn permanent_failures_lower_history_not_availability() {
        let registry = registry(&[("a", 1)]);
        let a = AgentId::from("a");
        let kind = AgentErrorKind::Permanent;
        let latency = Duration::ZERO;
        registry.record(
            &a,
            &TaskType::new("TASK"),
            Outcome::Failure { kind, latency },
        );
        let candidate = registry.candidates(&task(&[], &[]), &[]).remove(0);
        assert_eq!(candidate.score.availability, 1.0);
        assert!(candidate.score.performance < score::NEUTRAL);
        // History is per task type.
        let mut other = task(&[], &[]);
        other.task_type = TaskType::new("OTHER");
        let candidate = registry.candidates(&other, &[]).remove(0);
        assert_eq!(candidate.score.performance, score::NEUTRAL);
    }

    #[test]
    fn health_probes_are_recorded() {
        let registry = registry(&[("a", 1)]);
        futures::executor::block_on(registry.check_health());
        let candidate = registry.candidates(&task(&[], &[]), &[]).remove(0);
        assert_eq!(candidate.health, Health::Degraded);
        assert_eq!(candidate.score.availability, 0.5);
    }

    #[test]
    fn credited_rewards_join_the_performance_score() {
        let registry = registry(&[("a", 1), ("b", 1)]);
        let tt = TaskType::new("TASK");
        let (a, b) = (AgentId::from("a"), AgentId::from("b"));
        registry.record(&a, &tt, success(99));
        registry.record(&b, &tt, success(199));
        // Success rates 0.5 + 0.2 × (1 − 0.5) = 0.6; latency a (99 + 1) / (99 + 1) = 1,
        // b (99 + 1) / (199 + 1) = 0.5. No rewards: 0.7 × success + 0.3 × latency.
        let before = scores(&registry);
        assert!(close(before["a"].performance, 0.72));
        assert!(close(before["b"].performance, 0.57));

        registry.credit_reward(&b, &tt, 1.0).unwrap();
        registry.credit_reward(&b, &tt, 0.5).unwrap();
        // b's average reward: 1, then 1 + 0.2 × (0.5 − 1) = 0.9.
        // 0.5 × 0.6 + 0.2 × 0.5 + 0.3 × 0.9 = 0.67; a, with no reward, is unchanged.
        let after = scores(&registry);
        assert!(close(after["b"].performance, 0.67));
        assert!(close(after["a"].performance, 0.72));
        // The total moves by the performance weight, 0.25: 0.25 × (0.67 − 0.57).
        assert!(close(after["b"].total - before["b"].total, 0.025));

        registry.credit_reward(&a, &tt, 0.0).unwrap();
        // 0.5 × 0.6 + 0.2 × 1 + 0.3 × 0 = 0.5: a fast agent whose decisions lose money
        // falls behind a slower one whose decisions pay.
        let rewarded = scores(&registry);
        assert!(close(rewarded["a"].performance, 0.5));
        assert!(rewarded["a"].total < rewarded["b"].total);

        // Per task type: another type's history has no reward.
        let mut other = task(&[], &[]);
        other.task_type = TaskType::new("OTHER");
        let b_other = registry
            .candidates(&other, std::slice::from_ref(&a))
            .remove(0);
        assert_eq!(b_other.score.performance, score::NEUTRAL);
    }

    #[test]
    fn rewards_out_of_range_or_for_unknown_agents_are_refused() {
        let registry = registry(&[("a", 1)]);
        let tt = TaskType::new("TASK");
        let a = AgentId::from("a");
        for reward in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.01,
            1.01,
            1250.0,
        ] {
            let error = registry.credit_reward(&a, &tt, reward).unwrap_err();
            assert!(
                matches!(&error, RewardError::OutOfRange { agent, reward: r, .. }
                    if *agent == a && (r.to_bits() == reward.to_bits())),
                "{error}"
            );
        }
        assert_eq!(
            registry
                .credit_reward(&a, &tt, 2.0)
                .unwrap_err()
                .to_string(),
            "reward 2 for agent `a` on task type `TASK` is not a number in [0, 1]"
        );
        // Nothing was credited: still the neutral score of an agent never run.
        assert_eq!(scores(&registry)["a"].performance, score::NEUTRAL);
        let gone = AgentId::from("gone");
        assert_eq!(
            registry.credit_reward(&gone, &tt, 0.5),
            Err(RewardError::UnknownAgent { agent: gone })
        );
        // The bounds themselves are rewards.
        registry.credit_reward(&a, &tt, 0.0).unwrap();
        registry.credit_reward(&a, &tt, 1.0).unwrap();
    }

    #[test]
    fn open_agents_are_passed_over_and_reported_when_all_are_open() {
        let mut b = Breaking::new(&[("a", 1), ("b", 1)]);
        let opened = b.record("a", failure());
        assert!(matches!(
            opened,
            Some(CircuitChange::Opened { failures: 1, .. })
        ));
        for _ in 0..3 {
            assert_eq!(b.select().unwrap().candidate.agent, "b");
        }
        // The open agent is still a candidate (scored), just not selectable.
        assert_eq!(b.registry.candidates(&b.any, &[]).len(), 2);
        b.record("b", failure());
        let error = b.select().unwrap_err();
        let until = b.clock.now() + Duration::from_secs(1);
        assert_eq!(
            error,
            SelectError::CircuitOpen {
                agent_type: AgentType::new("T"),
                open: 2,
                until: Some(until),
            }
        );
        assert_eq!(error.kind(), "NO_AGENT");
        assert_eq!(
            error.to_string(),
            "all 2 eligible agents of type `T` have an open circuit breaker (the first lets \
             a probe call through at 2026-01-05T09:00:01.000Z)"
        );
    }

    #[test]
    fn a_probe_dropped_without_an_outcome_lets_the_next_call_probe() {
        let mut b = Breaking::new(&[("a", 2)]);
        b.record("a", failure());
        b.clock.advance(Duration::from_secs(1));
        let probe = b.select().unwrap();
        assert!(probe.lease.is_probe());
        // A second slot is free, but the probe is the only call let through.
        assert!(matches!(
            b.select(),
            Err(SelectError::CircuitOpen { until: None, .. })
        ));
        drop(probe);
        let next = b.select().unwrap();
        assert!(next.lease.is_probe());
        // Its outcome decides, recorded before its lease is dropped.
        assert_eq!(b.record("a", success(5)), Some(CircuitChange::Closed));
        drop(next);
        assert_eq!(b.circuit("a"), Some(CircuitState::Closed { failures: 0 }));
        assert!(!b.select().unwrap().lease.is_probe());
    }
}
