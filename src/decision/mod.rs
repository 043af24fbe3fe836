//! Decisions: choosing among a `decision` step's options, learning from outcomes which
//! option works best, and the records of what `decision` steps decided.
//!
//! A [`DecisionEngine`] scores a step's options on their criteria ([`evaluate_options`]),
//! chooses one under the step's policy ([`make_decision`]), learns from the reward each
//! choice earned ([`learn_from_outcome`]) or from learning data in bulk
//! ([`update_decision_model`]), exports and imports what it learned as JSON, and keeps a
//! record of every completed `decision` step ([`record`]). The default,
//! [`LearningDecisions`], does all of it in memory; it replaced the records-only
//! `DecisionLog` of earlier versions, whose two methods it keeps.
//!
//! Everything here is synchronous and deterministic: randomness comes from the `rng`
//! the caller passes (a run's seeded generator), never from the thread's, so a run is
//! reproducible from its seed.
//!
//! # Prior scores
//! Before anything is learned, options are compared by their *prior scores*
//! ([`evaluate_options`]), each in [0, 1]:
//!
//! - For each criterion, the options' values are min–max normalised across the
//!   options: `(v − min) / (max − min)` when the goal is `MAX` (the default),
//!   `1 − (v − min) / (max − min)` when it is `MIN`. When every option has the same
//!   value, each scores 1 on the criterion. An option without a value for the criterion
//!   scores 0 on it; a value that is not finite counts as missing (it never makes a
//!   score NaN), and missing values do not count for `min` and `max`.
//! - The prior is the weighted sum of those, with weights (default 1; a negative or
//!   non-finite weight counts as 0) normalised to sum to 1.
//! - With no criteria, or only weights of 0, every option's prior is 1.
//!
//! Worked example: `twap` (cost 2.0, speed 0.3), `vwap` (1.5, 0.5), `sweep` (6.0, 1.0),
//! criteria cost (weight 0.7, `MIN`) and speed (0.3, `MAX`). Cost over [1.5, 6.0],
//! inverted: 8/9, 1, 0; speed over [0.3, 1.0]: 0, 2/7, 1. Priors: `twap` 0.7·8/9 = 0.622,
//! `vwap` 0.7 + 0.3·2/7 = 0.786, `sweep` 0.3.
//!
//! # Policies
//! Every policy breaks ties in favour of the option listed first.
//!
//! - `STATIC`: the best prior score. Nothing learned is used.
//! - `THOMPSON`: each option's mean reward has a Gaussian posterior that starts from its
//!   prior score `p` with a pseudo-count of 1: mean `(p + n·mean) / (1 + n)`, standard
//!   deviation `s / sqrt(1 + n)` with `s² = (1 + m2 + n/(1 + n)·(mean − p)²) / (1 + n)`
//!   (the rewards' variance with one pseudo-observation of unit variance: `s` is 1 before
//!   any reward, tends to the rewards' standard deviation, and never collapses to 0 when
//!   rewards repeat). One sample per option is drawn (Box–Muller, from `rng`); the
//!   highest wins.
//! - `UCB1`: untried options first (`n` = 0, in listed order); then the highest
//!   `mean + sqrt(2 ln N / n)`, `N` the number of rewards learned in the decision's
//!   context. The bonus is scaled for rewards in [0, 1].
//! - `EPSILON_GREEDY`: a share `exploration` (default 0.1) of decisions takes an option
//!   uniformly at random; the others take the best mean, an untried option's prior score
//!   counting as its mean.
//!
//! A decision ([`Decision`]) says which option (its index and id), every option's prior
//! score, and the policy used. [`choose`] is the policies as a pure function, for
//! engines that keep their statistics elsewhere.
//!
//! # The model
//! Learning policies keep, per *key* — workflow id, step id, context, option id — the
//! statistics of the rewards learned ([`OptionStats`]): their count `n`, `mean`, and
//! `m2`, the sum of squared deviations from the mean (Welford's update; the sample
//! variance is `m2 / (n − 1)`). The context is the value of the step's `contextKey`, as
//! text; `""` means the step has none. Each context learns on its own.
//!
//! [`learn_from_outcome`] adds one reward to a key. A reward must be a finite number
//! within ±10^15 ([`MAX_ABS_REWARD`]); others are refused with a typed error
//! ([`DecisionError::NonFiniteReward`], [`DecisionError::RewardOutOfRange`]) and nothing
//! changes. It returns the reward normalised to [0, 1] over the rewards learned for that
//! step — min–max over every reward of that workflow and step, across contexts,
//! this one included; 0.5 while they are all equal — which the engine credits to the
//! agent that decided. Each step keeps its reward range for this.
//!
//! [`update_decision_model`] applies learning data in bulk, for instance from a
//! backtest: outcomes ([`Outcome`], learned as if one by one), and an exported model
//! merged in. Merging combines the statistics of a key with Chan's parallel formula
//! (`n = n_a + n_b`, `δ = mean_b − mean_a`, `mean = mean_a + δ·n_b/n`,
//! `m2 = m2_a + m2_b + δ²·n_a·n_b/n`), exactly what learning both sets of rewards would
//! give, up to rounding. An exported model carries no reward ranges: a step's range
//! widens to cover the imported means (each mean lies within its rewards' range), and
//! live rewards widen it further. An update is read and checked whole before anything
//! changes: an error leaves the model as it was.
//!
//! # Export format
//! [`export_model`] gives, and [`import_model`] merges in, the model as JSON:
//!
//! ```json
//! {"algo-trading/execution": {"calm": {"twap": {"n": 12, "mean": 0.71, "m2": 0.093},
//!                                      "vwap": {"n": 3, "mean": 0.52, "m2": 0.004}},
//!                             "": {"twap": {"n": 1, "mean": 0.4, "m2": 0}}}}
//! ```
//!
//! The outer keys are `"<workflowId>/<stepId>"`, split at the last `/` (step ids never
//! hold one); then the context (`""` for none); then the option id. `n` is a
//! non-negative integer, `mean` a number within ±10^15, `m2` a finite non-negative
//! number; no other fields. Keys are sorted; floats are written so that they read back
//! exactly. An import that is not such a model is refused with the path of the first
//! problem ([`ImportError`]): `model["algo/execution"]["calm"]["twap"].n: expected a
//! non-negative integer`.
//!
//! # Bounds
//! Input cannot make the engine hold unbounded memory or work:
//!
//! - The model holds at most [`Limits::max_options`] option statistics (100,000 by
//!   default); a reward or update that would add more is refused
//!   ([`DecisionError::ModelFull`], [`DecisionError::UpdateTooLarge`]).
//! - A workflow id, step id, context or option id is at most [`MAX_KEY_BYTES`] (256)
//!   bytes; a longer one is refused when it would be added.
//! - An import is at most [`MAX_IMPORT_BYTES`] (64 MiB) of text. It is read in one
//!   pass straight into the statistics (no JSON tree in between), and reading stops as
//!   soon as it holds more than [`Limits::max_options`] statistics.
//! - Records: the last [`Limits::records_per_workflow`] of each workflow (1,000 by
//!   default).
//!
//! # Cost
//! Deciding among 10 options takes about a microsecond (scoring, one lock for three map
//! lookups and a bisection per option, sampling); learning a reward for a key already
//! in the model allocates nothing (see `docs/performance.md`).
//!
//! [`make_decision`]: DecisionEngine::make_decision
//! [`learn_from_outcome`]: DecisionEngine::learn_from_outcome
//! [`update_decision_model`]: DecisionEngine::update_decision_model
//! [`export_model`]: DecisionEngine::export_model
//! [`import_model`]: DecisionEngine::import_model
//! [`record`]: DecisionEngine::record

mod error;
mod import;
mod learning;
mod model;
mod outcome;
mod policy;
mod record;
mod request;
mod score;
mod stats;

use std::collections::BTreeMap;
use std::fmt;

use rand::Rng;

pub use error::{DecisionError, ImportError, ImportProblem, ModelPath};
pub use import::MAX_IMPORT_BYTES;
pub use learning::{LearningDecisions, Limits};
pub use model::{MAX_ABS_REWARD, MAX_KEY_BYTES};
pub use outcome::{ModelUpdate, OptionKey, Outcome, UpdateSummary};
pub use policy::choose;
pub use record::DecisionRecord;
pub use request::{Decision, DecisionRequest};
pub use score::evaluate_options;
pub use stats::OptionStats;

use crate::definition::{Criterion, DecisionOption};

/// Chooses among a decision's options, learns from outcomes, and records what
/// `decision` steps decided. The engine holds one (`EngineBuilder::decisions`;
/// [`LearningDecisions`] by default) and calls it from any thread, never across an
/// await; keep every method quick.
///
/// The [module docs](self) state the contract an implementation keeps.
pub trait DecisionEngine: Send + Sync + fmt::Debug {
    /// Each option's prior score in [0, 1], in option order. The default is
    /// [`evaluate_options`].
    fn evaluate_options(&self, options: &[DecisionOption], criteria: &[Criterion]) -> Vec<f64> {
        evaluate_options(options, criteria)
    }

    /// Chooses one of the request's options under its policy, drawing any randomness
    /// from `rng`.
    ///
    /// # Errors
    /// [`DecisionError::NoOptions`] when there are none.
    fn make_decision(
        &self,
        request: DecisionRequest<'_>,
        rng: &mut dyn Rng,
    ) -> Result<Decision, DecisionError>;

    /// Learns `reward` for the option of `key`, and returns it normalised to [0, 1]
    /// over the rewards learned for the key's step.
    ///
    /// # Errors
    /// A reward that is not finite or beyond ±[`MAX_ABS_REWARD`]; a key that is new and
    /// cannot be added (too long a part, an invalid step id, the model full).
    fn learn_from_outcome(&self, key: OptionKey<'_>, reward: f64) -> Result<f64, DecisionError>;

    /// Applies learning data in bulk: every outcome, and the exported model merged in;
    /// all of it or, on an error, none.
    ///
    /// # Errors
    /// The first refused outcome (with its index), an import that is not an exported
    /// model ([`DecisionError::Import`]), or more statistics than the model may hold.
    fn update_decision_model(&self, update: ModelUpdate) -> Result<UpdateSummary, DecisionError>;

    /// Merges the exported model `json` in: [`update_decision_model`] with only a model.
    ///
    /// # Errors
    /// As [`update_decision_model`].
    ///
    /// [`update_decision_model`]: DecisionEngine::update_decision_model
    fn import_model(&self, json: &str) -> Result<UpdateSummary, DecisionError> {
        self.update_decision_model(ModelUpdate::new().model(json))
    }

    /// The model as JSON, in the export format of the [module docs](self).
    fn export_model(&self) -> String;

    /// What was learned for a step: context → option id → statistics.
    fn model_stats(
        &self,
        workflow_id: &str,
        step_id: &str,
    ) -> BTreeMap<String, BTreeMap<String, OptionStats>>;

    /// Records one decision. Called by the executor when a `decision` step completes.
    fn record(&self, decision: DecisionRecord);

    /// The decisions recorded for a workflow, oldest first (the default keeps none).
    fn decisions(&self, workflow_id: &str) -> Vec<DecisionRecord> {
        let _ = workflow_id;
        Vec::new()
    }
}

#[cfg(test)]
mod tests;
