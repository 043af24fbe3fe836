//! Retry and recovery: `retryPolicy` and `errorHandling` checked and resolved into a
//! step's [`Retry`] and [`Recovery`]; fallback steps marked with the step they stand in
//! for.
//!
//! Each retry setting is taken from the first policy that sets it: the step's own
//! (`retryPolicy`, or `errorHandling.retryPolicy`; a step may not have both), then the
//! workflow's `errorHandling.retryPolicy`, then [`Retry::DEFAULT`]. Values are checked
//! where they are written: `maxAttempts` at least 1, `backoffMultiplier` at least 1,
//! `jitter` between 0 and 1, delays at most
//! [`MAX_DURATION_MS`](crate::plan::MAX_DURATION_MS). Strategies are the step's, else the workflow's, else all but
//! `ROLLBACK`; weights are the step's, then the workflow's for strategies the step does
//! not weigh, each finite and not negative. A `fallbackStep` names another step. Once
//! every step has compiled, each fallback is marked with the step it stands in for; a
//! step stands in for one step only.

use std::time::Duration;

use super::Compiler;
use crate::definition::{
    DefinitionError, ErrorHandling, Location, Quoted, RecoveryStrategy, RetryPolicy,
    StepDefinition, StepId, WorkflowDefinition,
};
use crate::expr::{Locate, StepLookup};
use crate::plan::{Edge, PlanStep, Recovery, Retry};
use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};

/// Each retry setting from the first of `layers` that sets it, else [`Retry::DEFAULT`].
fn resolve_retry(layers: &[Option<&RetryPolicy>; 2]) -> Retry {
    let defaults = Retry::DEFAULT;
    let max_attempts = first_set(layers, |policy| policy.max_attempts);
    Retry {
        max_attempts: max_attempts.unwrap_or(defaults.max_attempts),
        explicit: max_attempts.is_some(),
        initial_delay: first_set(layers, |policy| policy.initial_delay_ms)
            .map_or(defaults.initial_delay, Duration::from_millis),
        backoff_multiplier: first_set(layers, |policy| policy.backoff_multiplier)
            .unwrap_or(defaults.backoff_multiplier),
        max_delay: first_set(layers, |policy| policy.max_delay_ms)
            .map_or(defaults.max_delay, Duration::from_millis),
        jitter: first_set(layers, |policy| policy.jitter).unwrap_or(defaults.jitter),
    }
}

/// The strategies allowed when `errorHandling` lists none: all but `ROLLBACK`, which
/// runs completed steps again (a workflow opts in to it by listing it).
const DEFAULT_STRATEGIES: [RecoveryStrategy; 4] = [
    RecoveryStrategy::Retry,
    RecoveryStrategy::Skip,
    RecoveryStrategy::Substitute,
    RecoveryStrategy::AlternativePath,
];

impl Compiler {
    /// The step's retry settings: its own policy over the workflow's over the defaults.
    pub(super) fn retry(
        &mut self,
        step: &StepDefinition,
        definition: &WorkflowDefinition,
        at: Locate<'_>,
    ) -> Retry {
        let step_policy = step.retry_policy.as_ref();
        let step_handling_policy = step
            .error_handling
            .as_ref()
            .and_then(|handling| handling.retry_policy.as_ref());
        if step_policy.is_some() && step_handling_policy.is_some() {
            self.not_allowed(
                &|| at().field("errorHandling"),
                "retryPolicy",
                "the step already has a `retryPolicy`; keep one",
            );
        }
        let workflow_policy = definition
            .error_handling
            .as_ref()
            .and_then(|handling| handling.retry_policy.as_ref());
        if let Some(policy) = step_policy {
            self.retry_values(policy, &|| at().field("retryPolicy"));
        }
        if let Some(policy) = step_handling_policy {
            self.retry_values(policy, &|| at().field("errorHandling").field("retryPolicy"));
        }
        resolve_retry(&[step_policy.or(step_handling_policy), workflow_policy])
    }

    /// An adaptation's `retryPolicy`, checked, resolved over the workflow's and the
    /// defaults: the policy that replaces a step's.
    pub(super) fn replacing_retry(
        &mut self,
        policy: &RetryPolicy,
        definition: &WorkflowDefinition,
        at: Locate<'_>,
    ) -> Retry {
        self.retry_values(policy, at);
        let workflow_policy = definition
            .error_handling
            .as_ref()
            .and_then(|handling| handling.retry_policy.as_ref());
        resolve_retry(&[Some(policy), workflow_policy])
    }

    /// Checks the values of one retry policy.
    fn retry_values(&mut self, policy: &RetryPolicy, at: Locate<'_>) {
        self.duration(policy.initial_delay_ms, &|| at().field("initialDelayMs"));
        self.duration(policy.max_delay_ms, &|| at().field("maxDelayMs"));
        if policy.max_attempts == Some(0) {
            self.invalid(
                at().field("maxAttempts"),
                "0",
                "counts the first call, so at least 1",
            );
        }
        if let Some(multiplier) = policy.backoff_multiplier {
            if !(multiplier.is_finite() && multiplier >= 1.0) {
                self.invalid(
                    at().field("backoffMultiplier"),
                    &multiplier.to_string(),
                    "must be at least 1",
                );
            }
        }
        if let Some(jitter) = policy.jitter {
            if !(0.0..=1.0).contains(&jitter) {
                self.invalid(
                    at().field("jitter"),
                    &jitter.to_string(),
                    "must be between 0 and 1",
                );
            }
        }
    }

    /// Refuses a fallback that waits, through other steps, for the step it stands in
    /// for: it could never run while that step stands aside for it (the run would wait
    /// for nothing). Only the fallback edge itself, and edges from the step straight to
    /// the fallback, may lead from the step to its fallback.
    pub(super) fn fallbacks_can_run(
        &mut self,
        steps: &[PlanStep],
        graph: &DiGraph<StepId, Edge>,
        definition: &WorkflowDefinition,
    ) {
        for (index, step) in steps.iter().enumerate() {
            let Some(fallback) = step.recovery.fallback else {
                continue;
            };
            let Some(through) = path_around(graph, index, fallback) else {
                continue;
            };
            let name = |i: usize| step_name(definition, i);
            let reason = format!(
                "step `{}` runs after `{}` (through `{}`), so it could never stand in for it; \
                 order it after the step's own predecessors only",
                Quoted(&name(fallback)),
                Quoted(&name(index)),
                Quoted(&name(through))
            );
            self.fallback_problem(definition, index, fallback, reason);
        }
    }

    /// A problem of step `index`'s `fallbackStep` (naming step `fallback`).
    fn fallback_problem(
        &mut self,
        definition: &WorkflowDefinition,
        index: usize,
        fallback: usize,
        reason: String,
    ) {
        self.errors.push(DefinitionError::InvalidValue {
            at: Location::step(index, definition.steps.get(index).map(|step| &step.id))
                .field("errorHandling")
                .field("fallbackStep"),
            value: step_name(definition, fallback),
            reason,
        });
    }

    /// Marks every fallback step with the step it stands in for; a step may be the
    /// fallback of one step only.
    pub(super) fn fallbacks(&mut self, steps: &mut [PlanStep], definition: &WorkflowDefinition) {
        for index in 0..steps.len() {
            let Some(fallback) = steps.get(index).and_then(|step| step.recovery.fallback) else {
                continue;
            };
            let Some(standby) = steps.get_mut(fallback) else {
                continue;
            };
            match standby.fallback_for {
                None => standby.fallback_for = Some(index),
                Some(owner) => {
                    let name = |i: usize| step_name(definition, i);
                    let reason = format!(
                        "step `{}` is already the fallback of step `{}`; a step stands in for one step only",
                        Quoted(&name(fallback)),
                        Quoted(&name(owner))
                    );
                    self.fallback_problem(definition, index, fallback, reason);
                }
            }
        }
    }

    /// The step's recovery settings: strategies, their weights and its fallback step.
    pub(super) fn recovery(
        &mut self,
        step: &StepDefinition,
        definition: &WorkflowDefinition,
        at: Locate<'_>,
        lookup: StepLookup<'_>,
    ) -> Option<Recovery> {
        let step_handling = step.error_handling.as_ref();
        let workflow_handling = definition.error_handling.as_ref();
        let fallback = match step_handling {
            Some(handling) => self.error_handling(
                handling,
                &|| at().field("errorHandling"),
                Some(step),
                lookup,
            )?,
            None => None,
        };
        let strategies = step_handling
            .and_then(|handling| handling.strategies.clone())
            .or_else(|| workflow_handling.and_then(|handling| handling.strategies.clone()))
            .unwrap_or_else(|| DEFAULT_STRATEGIES.to_vec());
        let mut weights: Vec<(RecoveryStrategy, f64)> = Vec::new();
        for handling in [step_handling, workflow_handling].into_iter().flatten() {
            for (strategy, weight) in handling.strategy_weights.iter().flatten() {
                if !weights.iter().any(|(known, _)| known == strategy) {
                    weights.push((*strategy, *weight));
                }
            }
        }
        Some(Recovery {
            strategies: strategies.into_boxed_slice(),
            weights: weights.into_boxed_slice(),
            fallback,
        })
    }

    /// Checks an `errorHandling` block; returns the fallback step's index, if any.
    /// `None` when the fallback is invalid.
    pub(super) fn error_handling(
        &mut self,
        handling: &ErrorHandling,
        at: Locate<'_>,
        step: Option<&StepDefinition>,
        lookup: StepLookup<'_>,
    ) -> Option<Option<usize>> {
        if step.is_none() {
            if let Some(policy) = &handling.retry_policy {
                self.retry_values(policy, &|| at().field("retryPolicy"));
            }
        }
        self.strategy_weights(handling, at);
        let Some(fallback) = &handling.fallback_step else {
            return Some(None);
        };
        let Some(step) = step else {
            return Some(None);
        };
        let at = || at().field("fallbackStep");
        match lookup(fallback.as_str()) {
            None => {
                self.errors.push(DefinitionError::UnknownStep {
                    at: at(),
                    step: fallback.to_string(),
                });
                None
            }
            Some(_) if fallback == &step.id => {
                self.errors.push(DefinitionError::SelfReference {
                    at: at(),
                    binding: fallback.to_string(),
                });
                None
            }
            Some((index, _)) => Some(Some(index)),
        }
    }

    /// Checks that every strategy weight is finite and not negative.
    fn strategy_weights(&mut self, handling: &ErrorHandling, at: Locate<'_>) {
        for (strategy, weight) in handling.strategy_weights.iter().flatten() {
            if !(weight.is_finite() && *weight >= 0.0) {
                let name = serde_json::to_value(strategy)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned));
                self.invalid(
                    at().field("strategyWeights")
                        .field(name.unwrap_or_else(|| "?".to_owned())),
                    &weight.to_string(),
                    "weights are finite and not negative",
                );
            }
        }
    }
}

/// The setting `get` reads, from the first policy in `layers` that has it.
fn first_set<T>(
    layers: &[Option<&RetryPolicy>],
    get: impl Fn(&RetryPolicy) -> Option<T>,
) -> Option<T> {
    layers.iter().flatten().find_map(|policy| get(policy))
}

/// A step on a path from `from` to `to` other than the direct edge, if there is one
/// (breadth first from `from`'s other successors; O(steps + edges)).
fn path_around(graph: &DiGraph<StepId, Edge>, from: usize, to: usize) -> Option<usize> {
    let mut seen = vec![false; graph.node_count()];
    let mut queue: std::collections::VecDeque<(usize, usize)> = graph
        .neighbors_directed(NodeIndex::new(from), Direction::Outgoing)
        .map(NodeIndex::index)
        .filter(|&next| next != to)
        .map(|next| (next, next))
        .collect();
    while let Some((at, first)) = queue.pop_front() {
        if std::mem::replace(seen.get_mut(at)?, true) {
            continue;
        }
        for next in graph.neighbors_directed(NodeIndex::new(at), Direction::Outgoing) {
            if next.index() == to {
                return Some(first);
            }
            queue.push_back((next.index(), first));
        }
    }
    None
}

/// Step `index`'s id as written, `?` for an index the definition does not have.
fn step_name(definition: &WorkflowDefinition, index: usize) -> String {
    definition
        .steps
        .get(index)
        .map_or_else(|| "?".to_owned(), |step| step.id.to_string())
}
