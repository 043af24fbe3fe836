//! Decisions in the run: a `decision` step's choice made (or taken from the journal)
//! before its first call, its rewards evaluated when the run ends, and what was learned
//! handed to the decision engine once the end is journaled.
//!
//! The choice is journaled (`decisionMade`) before the step's first call, so a run
//! recovered after a crash calls with the same option; it draws its randomness from a
//! generator seeded by the run's seed and the step's id, so a run is reproducible from
//! its seed. Rewards are evaluated in the append that journals the run's end
//! (`rewardLearned`, or `rewardMissing` with the reason) and learned only once that
//! append is durable: a run whose end could not be journaled learns nothing, and is
//! evaluated again when it is recovered.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::Value;

use super::Execution;
use super::transition::Transition;
use crate::decision::{DecisionRequest, MAX_ABS_REWARD, MAX_KEY_BYTES};
use crate::definition::Quoted;
use crate::engine::mix;
use crate::engine::outcome::Awaiting;
use crate::plan::{Choice, PlanStep};
use crate::run::{FailureKind, StepStatus};
use crate::store::{DecisionState, JournalEntry};

/// Why a step's choice could not be made: the step fails with this kind and message.
pub(super) type Refused = (FailureKind, String);

impl Execution {
    /// The parameters `step` calls with: `parameters` (the task's, resolved) with the
    /// chosen option's merged over them (top-level keys replaced). The choice is made
    /// now and journaled, or, when the journal holds one for the step, taken from it.
    pub(super) fn decide(
        &mut self,
        step: &PlanStep,
        choice: &Choice,
        parameters: Value,
    ) -> Result<Value, Refused> {
        let index = step.index();
        let option = match self.book.decisions.get(&index) {
            Some(made) => journaled_option(step, choice, &made.option)?,
            None => self.choose(step, choice)?,
        };
        let Some(template) = choice.option_parameters(option) else {
            return Ok(parameters);
        };
        let resolved = template
            .resolve(&self.book)
            .map_err(|error| binding(step, &format!("the option's parameters: {error}")))?;
        let merged = match (parameters, resolved) {
            (Value::Object(mut base), Value::Object(over)) => {
                base.extend(over);
                Value::Object(base)
            }
            (_, over) => over,
        };
        crate::run::bounded(merged).map_err(|depth| {
            binding(
                step,
                &format!(
                    "its parameters nest {depth} levels deep, more than the {} allowed",
                    crate::run::MAX_VALUE_DEPTH
                ),
            )
        })
    }

    /// Makes `step`'s choice and journals it; the chosen option's index.
    fn choose(&mut self, step: &PlanStep, choice: &Choice) -> Result<usize, Refused> {
        let context = self.context_key(step, choice)?;
        let plan = Arc::clone(&self.book.plan);
        let request = DecisionRequest::of_choice(plan.workflow_id(), step.id().as_str(), choice)
            .with_context(&context);
        let mut rng = StdRng::seed_from_u64(mix(self.seed, &format!("decision/{}", step.id())));
        let decision = self
            .inner
            .decisions
            .make_decision(request, &mut rng)
            .map_err(|error| {
                (
                    FailureKind::Permanent,
                    format!("step `{}`: the decision: {error}", step.id()),
                )
            })?;
        // A decision engine of the host's may answer with an option that is not there.
        let Some(chosen) = choice.options().get(decision.index) else {
            return Err((
                FailureKind::Permanent,
                format!(
                    "step `{}`: the decision engine chose option {} of {}",
                    step.id(),
                    decision.index,
                    choice.options().len()
                ),
            ));
        };
        let prior_scores: BTreeMap<String, f64> = choice
            .options()
            .iter()
            .zip(&decision.priors)
            .map(|(option, &prior)| {
                (
                    option.id.clone(),
                    if prior.is_finite() { prior } else { 0.0 },
                )
            })
            .collect();
        let made = DecisionState {
            option: chosen.id.clone(),
            context_key: context,
            policy: decision.policy.written(),
            prior_scores,
            reward: None,
            reported: false,
            reward_missing: None,
        };
        self.apply(Transition::Decided {
            index: step.index(),
            decision: made,
        });
        Ok(decision.index)
    }

    /// The value of `step`'s `contextKey` as text (a string as it is, anything else as
    /// JSON); `""` without one.
    fn context_key(&self, step: &PlanStep, choice: &Choice) -> Result<String, Refused> {
        let Some(template) = choice.context_key() else {
            return Ok(String::new());
        };
        let value = template
            .resolve(&self.book)
            .map_err(|error| binding(step, &format!("contextKey: {error}")))?;
        let text = match value {
            Value::String(text) => text,
            other => other.to_string(),
        };
        if text.len() > MAX_KEY_BYTES {
            return Err(binding(
                step,
                &format!(
                    "contextKey: its value is {} bytes, more than the {MAX_KEY_BYTES} allowed: `{}`",
                    text.len(),
                    Quoted(&text)
                ),
            ));
        }
        Ok(text)
    }

    /// The run ends: each decision of a completed step that has a `reward` and no
    /// reward yet is evaluated against the run's outputs; the entries that record it
    /// (journaled with the run's end).
    pub(super) fn evaluate_rewards(&mut self) -> Vec<JournalEntry> {
        let now = self.inner.clock.now();
        let plan = Arc::clone(&self.book.plan);
        // Decisions of completed steps with a `reward` and nothing learned or missing yet.
        let due: Vec<usize> = self
            .book
            .decisions
            .iter()
            .filter(|(_, made)| made.reward.is_none() && made.reward_missing.is_none())
            .map(|(&index, _)| index)
            .filter(|&index| self.book.status(index) == StepStatus::Completed)
            .collect();
        let mut entries = Vec::new();
        for index in due {
            let Some(step) = plan.step(index) else {
                continue;
            };
            let Some(template) = step.choice().and_then(|choice| choice.reward()) else {
                continue;
            };
            let evaluated = reward_of(template.resolve(&self.book));
            let Some(decision) = self.book.decisions.get_mut(&index) else {
                continue;
            };
            let step_id = step.id().clone();
            entries.push(match evaluated {
                Ok(reward) => {
                    decision.reward = Some(reward);
                    JournalEntry::RewardLearned {
                        step_id,
                        reward,
                        reported: false,
                        at: now,
                    }
                }
                Err(mut reason) => {
                    if let Some(scrubber) = &self.scrubber {
                        scrubber.scrub_in_place(&mut reason);
                    }
                    decision.reward_missing = Some(reason.clone());
                    JournalEntry::RewardMissing {
                        step_id,
                        reason,
                        at: now,
                    }
                }
            });
        }
        entries
    }

    /// The run's end is journaled (or there is no store): the rewards evaluated at the
    /// end are learned and credited to the agents that decided; decisions of completed
    /// steps still without a reward wait for the host's
    /// [`report_outcome`](crate::engine::Engine::report_outcome).
    pub(super) fn learn_rewards(&self) {
        let workflow_id = self.book.plan.workflow_id();
        for (&index, decision) in &self.book.decisions {
            let Some(step) = self.book.plan.step(index) else {
                continue;
            };
            if self.book.status(index) != StepStatus::Completed {
                continue;
            }
            let agent = self
                .book
                .report(index)
                .and_then(|(_, report)| report.agent_id.clone());
            let awaiting = Awaiting::of(workflow_id, decision, agent, step.agent_task());
            let reward = decision.reward;
            if let Some(reward) = reward {
                if let Err(error) = self.inner.learn(&awaiting, step.id().as_str(), reward) {
                    tracing::warn!(
                        run = %self.run_id,
                        step = %step.id(),
                        error = &error as &dyn std::error::Error,
                        "the decision engine refused the run's reward: nothing learned"
                    );
                }
            }
            if !self.inner.has_store() {
                self.inner.outcomes.remember(
                    self.run_id.clone(),
                    step.id().clone(),
                    awaiting,
                    reward,
                );
            }
        }
    }
}

/// The index of the option a journaled decision chose, which must still be one of the
/// step's options.
fn journaled_option(step: &PlanStep, choice: &Choice, option: &str) -> Result<usize, Refused> {
    choice
        .options()
        .iter()
        .position(|candidate| candidate.id == option)
        .ok_or_else(|| {
            (
                FailureKind::Permanent,
                format!(
                    "step `{}`: the journal says it chose option `{}`, which the workflow no longer has",
                    step.id(),
                    Quoted(option)
                ),
            )
        })
}

/// A `BINDING` failure of `step`.
fn binding(step: &PlanStep, message: &str) -> Refused {
    (
        FailureKind::Binding,
        format!("step `{}`: {message}", step.id()),
    )
}

/// The reward a `reward` binding gave, or why it is not one.
fn reward_of(value: Result<Value, crate::expr::EvalError>) -> Result<f64, String> {
    let value = value.map_err(|error| format!("reward: {error}"))?;
    match value.as_f64() {
        Some(reward) if reward.is_finite() && reward.abs() <= MAX_ABS_REWARD => Ok(reward),
        Some(reward) => Err(format!("reward: {reward} is beyond ±{MAX_ABS_REWARD:e}")),
        None => {
            let shown = value.to_string();
            Err(format!("reward: `{}` is not a number", Quoted(&shown)))
        }
    }
}
