//! Self-healing: how a run recovers from a step that failed after its retries.
//!
//! The public part is [`RecoveryDecision`] (in the journal, events and reports) and
//! [`MAX_RECOVERIES`].
//!
//! `RETRY` comes first and is the retry policy itself (`docs/workflow-format.md`:
//! without a `retryPolicy`, 4 calls; left out of `strategies`, or weighted 0, one call): a transient failure (`TEMPORARY`,
//! `TIMEOUT`, `AGENT_UNAVAILABLE`, `PANIC`) is retried while the step's calls are fewer
//! than `maxAttempts`, each retry announced by a `StepRetrying` event and journaled as
//! the next attempt's `stepStarted`. It never makes more calls than `maxAttempts`.
//!
//! When a step fails for good (its retry policy spent, or a failure retrying cannot
//! help), the run weighs every other recovery strategy that fits the situation, each with a
//! confidence (how likely it is to work, 0 to 1) and a cost (what it gives up: time,
//! calls, data), and applies the one with the highest `weight × (confidence − cost)`.
//! Weights are 1 unless `errorHandling.strategyWeights` says otherwise (step settings
//! over workflow ones); a strategy with weight 0, or one `errorHandling.strategies` does
//! not list, is never chosen. Ties go to the order below. With no candidate the step
//! fails as it would without self-healing.
//!
//! | strategy | a candidate when | confidence | cost |
//! |---|---|---|---|
//! | `SKIP` | the step is `optional` | 0.9 | 0.3 |
//! | `SUBSTITUTE` | an agent failed (not a binding, condition or output problem), the step calls one agent (`task`, `decision`), and another eligible agent has not failed it | 0.8 | 0.2 |
//! | `ROLLBACK` | listed in `strategies` (never on by default: it runs completed steps again); the step's direct predecessors completed, and none of the steps to redo is running | 0.6 | 0.1 + 0.05 per step redone, at most 0.5 |
//! | `ALTERNATIVE_PATH` | the step names a `fallbackStep` | 0.7 | 0.25 |
//!
//! Each strategy is applied at most once per step and run, except `SUBSTITUTE`, which
//! is applied while untried agents remain; a step recovers at most
//! [`MAX_RECOVERIES`] times. A rejected approval, a cancellation and the workflow's
//! timeout are never healed (they are decisions, not failures), nor is a journal that
//! cannot be written (kind `STORE`: the run must stop).

use std::collections::HashMap;

use super::step::Failure;
use crate::agent::AgentId;
use crate::definition::RecoveryStrategy;
use crate::plan::PlanStep;
use crate::run::{FailureKind, RecoveryDecision};

/// How often one step may recover in one run.
pub const MAX_RECOVERIES: usize = 5;

/// What the run knows about a failed step when it weighs recoveries.
pub(super) struct Situation<'a> {
    /// The step.
    pub(super) step: &'a PlanStep,
    /// The failure.
    pub(super) kind: FailureKind,
    /// The strategies already applied to this step in this run, in order.
    pub(super) applied: &'a [RecoveryStrategy],
    /// Whether an eligible agent exists that has not failed this step.
    pub(super) untried_agent: bool,
    /// How many steps a rollback would redo; `None` when no rollback is possible.
    pub(super) rollback: Option<usize>,
    /// Whether the step's fallback step can still run.
    pub(super) fallback: bool,
}

/// One strategy that fits, with its estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Candidate {
    pub(super) strategy: RecoveryStrategy,
    pub(super) confidence: f64,
    pub(super) cost: f64,
    pub(super) score: f64,
}

/// The recovery to apply, if any fits: the candidate with the highest score (ties to
/// the earlier strategy of the table).
pub(super) fn choose(situation: &Situation<'_>) -> Option<Candidate> {
    let mut best: Option<Candidate> = None;
    for candidate in candidates(situation) {
        if best.is_none_or(|best| candidate.score > best.score) {
            best = Some(candidate);
        }
    }
    best
}

/// Every strategy that fits `situation` and is allowed, with a positive weight.
pub(super) fn candidates(situation: &Situation<'_>) -> Vec<Candidate> {
    let Situation {
        step,
        kind,
        applied,
        untried_agent,
        rollback,
        fallback,
    } = *situation;
    let mut found = Vec::new();
    if applied.len() >= MAX_RECOVERIES || !healable(kind) {
        return found;
    }
    let recovery = step.recovery();
    let used = |strategy| applied.contains(&strategy);
    let mut consider = |strategy, fits: bool, confidence: f64, cost: f64| {
        let weight = recovery.weight(strategy);
        if fits && recovery.allows(strategy) && weight > 0.0 {
            found.push(Candidate {
                strategy,
                confidence,
                cost,
                score: weight * (confidence - cost),
            });
        }
    };
    let agent_failure = !matches!(
        kind,
        FailureKind::Binding
            | FailureKind::Condition
            | FailureKind::InvalidOutput
            | FailureKind::Resources
    );
    consider(RecoveryStrategy::Skip, step.is_optional(), 0.9, 0.3);
    consider(
        RecoveryStrategy::Substitute,
        agent_failure && step.calls_one_agent() && untried_agent,
        0.8,
        0.2,
    );
    if let Some(redo) = rollback {
        let cost = (0.1 + 0.05 * redo as f64).min(0.5);
        consider(
            RecoveryStrategy::Rollback,
            !used(RecoveryStrategy::Rollback),
            0.6,
            cost,
        );
    }
    consider(
        RecoveryStrategy::AlternativePath,
        fallback && !used(RecoveryStrategy::AlternativePath),
        0.7,
        0.25,
    );
    found
}

/// The recovery chosen, with what applying it needs.
pub(super) struct Chosen {
    /// What is journaled and reported.
    pub(super) decision: RecoveryDecision,
    /// For `ROLLBACK`: what to redo.
    pub(super) rollback: Option<RollbackScope>,
    /// For `ALTERNATIVE_PATH`: the fallback step.
    pub(super) fallback: Option<usize>,
}

/// What a rollback redoes, and the checkpoint it returns to.
#[derive(Debug)]
pub(super) struct RollbackScope {
    /// The steps to run again, in plan order (the failed step among them).
    pub(super) redo: Vec<usize>,
    /// The step after which the checkpoint returned to was taken; `None`: the start.
    pub(super) checkpoint: Option<usize>,
}

/// A run's self-healing bookkeeping. Empty (and allocation-free) until a step fails.
#[derive(Default)]
pub(super) struct Healing {
    /// Calls made by earlier rounds of a step that recovers.
    prior: HashMap<usize, u32>,
    /// The strategies applied to each step, in order.
    applied: HashMap<usize, Vec<RecoveryStrategy>>,
    /// Agents that failed each step.
    failed: HashMap<usize, Vec<AgentId>>,
    /// How often a rollback reset each step.
    generation: HashMap<usize, u32>,
    /// Fallback steps running in the place of a step: fallback → the step.
    pub(super) standing_in: HashMap<usize, usize>,
    /// The failures of steps whose fallback is running, reported if it fails too.
    pub(super) failures: HashMap<usize, Failure>,
    /// Steps in the order they completed: checkpoint `n` follows `completed[n]`.
    pub(super) completed: Vec<usize>,
}

impl Healing {
    pub(super) fn prior_attempts(&self, index: usize) -> u32 {
        self.prior.get(&index).copied().unwrap_or(0)
    }

    pub(super) fn set_prior_attempts(&mut self, index: usize, attempts: u32) {
        self.prior.insert(index, attempts);
    }

    pub(super) fn failed_agent(&mut self, index: usize, agent: &AgentId) {
        let failed = self.failed.entry(index).or_default();
        if !failed.contains(agent) {
            failed.push(agent.clone());
        }
    }

    pub(super) fn failed_agents(&self, index: usize) -> &[AgentId] {
        self.failed.get(&index).map_or(&[], Vec::as_slice)
    }

    pub(super) fn clear_failed_agents(&mut self, index: usize) {
        self.failed.remove(&index);
    }

    pub(super) fn applied(&self, index: usize) -> &[RecoveryStrategy] {
        self.applied.get(&index).map_or(&[], Vec::as_slice)
    }

    pub(super) fn applied_now(&mut self, index: usize, strategy: RecoveryStrategy) {
        self.applied.entry(index).or_default().push(strategy);
    }

    pub(super) fn generation(&self, index: usize) -> u32 {
        self.generation.get(&index).copied().unwrap_or(0)
    }

    pub(super) fn set_generation(&mut self, index: usize, generation: u32) {
        if generation > 0 {
            self.generation.insert(index, generation);
        }
    }

    /// Step `index` starts over after a rollback: a new generation of calls.
    pub(super) fn reset(&mut self, index: usize) {
        *self.generation.entry(index).or_default() += 1;
        self.prior.remove(&index);
        self.failed.remove(&index);
    }
}

/// Whether a failure of this kind may be healed at all. Stale data is not: no retry,
/// other agent or other path makes the run's data younger. Nor is an unknown outcome: a
/// retry, another agent or a fallback could send the order a second time. Nor is a halt:
/// only a kill switch reset ends it.
fn healable(kind: FailureKind) -> bool {
    !matches!(
        kind,
        FailureKind::Rejected
            | FailureKind::WorkflowTimeout
            | FailureKind::Store
            | FailureKind::StaleData
            | FailureKind::OutcomeUnknown
            | FailureKind::Halted
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::ExecutionPlan;

    fn plan(step: &str) -> ExecutionPlan {
        let json = format!(
            r#"{{"id": "w", "steps": [
                {{"id": "a", "type": "task", "agentCriteria": {{"type": "T"}},
                  "task": {{"type": "T"}}}},
                {step}
            ]}}"#
        );
        ExecutionPlan::from_json(&json).unwrap_or_else(|errors| panic!("{errors}"))
    }

    fn situation<'a>(step: &'a PlanStep, kind: FailureKind) -> Situation<'a> {
        Situation {
            step,
            kind,
            applied: &[],
            untried_agent: false,
            rollback: None,
            fallback: false,
        }
    }

    fn strategies(situation: &Situation<'_>) -> Vec<RecoveryStrategy> {
        candidates(situation).iter().map(|c| c.strategy).collect()
    }

    const TASK: &str = r#"{"id": "b", "type": "task", "agentCriteria": {"type": "T"},
                           "task": {"type": "T"}}"#;

    #[test]
    fn nothing_fits_a_required_step_with_one_agent() {
        let plan = plan(TASK);
        let step = plan.step(1).unwrap();
        assert_eq!(choose(&situation(step, FailureKind::Permanent)), None);
        assert_eq!(choose(&situation(step, FailureKind::Temporary)), None);
        let binding = Situation {
            untried_agent: true,
            ..situation(step, FailureKind::Binding)
        };
        assert_eq!(choose(&binding), None, "another agent cannot fix a binding");
    }

    #[test]
    fn each_strategy_fits_its_situation_and_the_best_score_wins() {
        let plan = plan(
            r#"{"id": "b", "type": "task", "optional": true, "agentCriteria": {"type": "T"},
                "task": {"type": "T"},
                "errorHandling": {"strategies": ["SKIP", "SUBSTITUTE", "ROLLBACK",
                                                 "ALTERNATIVE_PATH"],
                                  "fallbackStep": "c"}},
               {"id": "c", "type": "task", "agentCriteria": {"type": "T"},
                "task": {"type": "T"}}"#,
        );
        let step = plan.step(1).unwrap();
        let all = Situation {
            untried_agent: true,
            rollback: Some(1),
            fallback: true,
            ..situation(step, FailureKind::Temporary)
        };
        assert_eq!(
            strategies(&all),
            [
                RecoveryStrategy::Skip,
                RecoveryStrategy::Substitute,
                RecoveryStrategy::Rollback,
                RecoveryStrategy::AlternativePath,
            ]
        );
        // SKIP (0.9 − 0.3) and SUBSTITUTE (0.8 − 0.2) tie at 0.6: the earlier wins.
        let best = choose(&all).unwrap();
        assert_eq!(best.strategy, RecoveryStrategy::Skip);
        assert!((best.score - 0.6).abs() < 1e-9);
    }

    #[test]
    fn weights_change_the_choice_and_zero_disables() {
        let plan = plan(
            r#"{"id": "b", "type": "task", "optional": true, "agentCriteria": {"type": "T"},
                "task": {"type": "T"},
                "errorHandling": {"strategyWeights": {"SKIP": 0, "SUBSTITUTE": 0.25},
                                  "fallbackStep": "c"}},
               {"id": "c", "type": "task", "agentCriteria": {"type": "T"},
                "task": {"type": "T"}}"#,
        );
        let step = plan.step(1).unwrap();
        let s = Situation {
            untried_agent: true,
            fallback: true,
            ..situation(step, FailureKind::Temporary)
        };
        assert_eq!(
            strategies(&s),
            [
                RecoveryStrategy::Substitute,
                RecoveryStrategy::AlternativePath
            ]
        );
        // ALTERNATIVE_PATH: 0.7 − 0.25 = 0.45 beats SUBSTITUTE: 0.25 × (0.8 − 0.2) = 0.15.
        assert_eq!(
            choose(&s).unwrap().strategy,
            RecoveryStrategy::AlternativePath
        );
    }

    #[test]
    fn rollback_is_opt_in() {
        let plan = plan(
            r#"{"id": "b", "type": "task", "agentCriteria": {"type": "T"},
                "task": {"type": "T"}, "retryPolicy": {"maxAttempts": 2}}"#,
        );
        let step = plan.step(1).unwrap();
        let s = Situation {
            rollback: Some(1),
            ..situation(step, FailureKind::Temporary)
        };
        assert!(strategies(&s).is_empty());
    }

    #[test]
    fn rejections_are_never_healed_and_recoveries_are_bounded() {
        let plan = plan(
            r#"{"id": "b", "type": "task", "optional": true, "agentCriteria": {"type": "T"},
                "task": {"type": "T"}}"#,
        );
        let step = plan.step(1).unwrap();
        assert!(strategies(&situation(step, FailureKind::Rejected)).is_empty());
        let applied = [RecoveryStrategy::Substitute; MAX_RECOVERIES];
        let s = Situation {
            applied: &applied,
            ..situation(step, FailureKind::Temporary)
        };
        assert!(strategies(&s).is_empty());
    }
}
