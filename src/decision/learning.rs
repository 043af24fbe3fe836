//! [`LearningDecisions`], the default decision engine: the model and the records in
//! memory, each behind its own lock.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rand::Rng;

use super::import;
use super::model::{MAX_ABS_REWARD, Model, Refusal};
use super::record::Records;
use super::{
    Decision, DecisionEngine, DecisionError, DecisionRecord, DecisionRequest, ModelUpdate,
    OptionKey, OptionStats, Outcome, UpdateSummary, choose,
};

/// How much a [`LearningDecisions`] keeps.
///
/// # Examples
/// ```
/// use tradeflow::decision::{LearningDecisions, Limits};
///
/// let engine = LearningDecisions::with_limits(Limits::default().with_records_per_workflow(50));
/// assert_eq!(engine.limits().records_per_workflow, 50);
/// assert_eq!(engine.limits().max_options, Limits::DEFAULT_MAX_OPTIONS);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The most option statistics (one per workflow, step, context and option) the
    /// model holds; a reward or update that would add one more is refused.
    pub max_options: usize,
    /// How many decision records are kept per workflow (the oldest go first).
    pub records_per_workflow: usize,
}

impl Limits {
    /// The default of [`Limits::max_options`]: 100,000 (a few tens of MB at most, with
    /// keys of the longest length allowed).
    pub const DEFAULT_MAX_OPTIONS: usize = 100_000;
    /// The default of [`Limits::records_per_workflow`]: 1,000.
    pub const DEFAULT_RECORDS_PER_WORKFLOW: usize = 1_000;

    /// The most option statistics the model holds. Defaults to
    /// [`Limits::DEFAULT_MAX_OPTIONS`].
    #[must_use]
    pub fn with_max_options(mut self, max: usize) -> Self {
        self.max_options = max;
        self
    }

    /// How many records are kept per workflow. Defaults to
    /// [`Limits::DEFAULT_RECORDS_PER_WORKFLOW`].
    #[must_use]
    pub fn with_records_per_workflow(mut self, keep: usize) -> Self {
        self.records_per_workflow = keep;
        self
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_options: Self::DEFAULT_MAX_OPTIONS,
            records_per_workflow: Self::DEFAULT_RECORDS_PER_WORKFLOW,
        }
    }
}

/// The default [`DecisionEngine`]: decides by the contract of the [module](super),
/// learns in memory, and keeps the last [`Limits::records_per_workflow`] decision
/// records of each workflow.
///
/// The model and the records each sit behind a mutex held only for map lookups and
/// updates (never while scoring, sampling or formatting), so deciding and learning
/// from many threads at once is cheap. An update ([`update_decision_model`]) is read
/// and checked before the lock is taken, then merged under it, so it is applied whole
/// or not at all.
///
/// [`update_decision_model`]: DecisionEngine::update_decision_model
///
/// # Examples
/// ```
/// use rand::SeedableRng;
/// use rand::rngs::StdRng;
/// use tradeflow::decision::{DecisionEngine, DecisionRequest, LearningDecisions, OptionKey};
/// use tradeflow::definition::DecisionSettings;
/// use tradeflow::plan::Policy;
///
/// let settings: DecisionSettings = serde_json::from_str(
///     r#"{"options": [{"id": "twap"}, {"id": "vwap"}], "policy": "UCB1"}"#,
/// )?;
/// let engine = LearningDecisions::new();
/// let mut rng = StdRng::seed_from_u64(7);
/// let request = DecisionRequest::new("algo", "execution", &settings.options, Policy::Ucb1);
/// let first = engine.make_decision(request, &mut rng)?;
/// assert_eq!(first.option_id, "twap"); // untried options first, in listed order
/// let key = OptionKey::new("algo", "execution", "", &first.option_id);
/// assert_eq!(engine.learn_from_outcome(key, 0.3)?, 0.5); // the only reward so far
/// assert_eq!(engine.make_decision(request, &mut rng)?.option_id, "vwap");
/// assert_eq!(engine.model_stats("algo", "execution")[""]["twap"].n, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct LearningDecisions {
    model: Mutex<Model>,
    records: Mutex<Records>,
    limits: Limits,
}

impl LearningDecisions {
    /// An engine that has learned nothing, with the default [`Limits`].
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    /// An engine that has learned nothing, keeping at most `limits`.
    pub fn with_limits(limits: Limits) -> Self {
        Self {
            model: Mutex::new(Model::default()),
            records: Mutex::new(Records::new(limits.records_per_workflow)),
            limits,
        }
    }

    /// What the engine keeps at most.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The model. A thread that panicked holding it cannot have left it inconsistent:
    /// every change is made after every check.
    fn model(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn records(&self) -> MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for LearningDecisions {
    fn default() -> Self {
        Self::new()
    }
}

impl DecisionEngine for LearningDecisions {
    fn make_decision(
        &self,
        request: DecisionRequest<'_>,
        rng: &mut dyn Rng,
    ) -> Result<Decision, DecisionError> {
        let no_options = || DecisionError::NoOptions {
            workflow_id: request.workflow_id.to_owned(),
            step_id: request.step_id.to_owned(),
        };
        if request.options.is_empty() {
            return Err(no_options());
        }
        let priors = self.evaluate_options(request.options, request.criteria);
        let mut stats = Vec::new();
        let learned = if request.policy.learns() {
            stats.reserve_exact(request.options.len());
            self.model().gather(
                request.workflow_id,
                request.step_id,
                request.context,
                request.options,
                &mut stats,
            )
        } else {
            0
        };
        let index = choose(request.policy, &priors, &stats, learned, rng);
        let option = request.options.get(index).ok_or_else(no_options)?;
        Ok(Decision {
            index,
            option_id: option.id.clone(),
            priors,
            policy: request.policy,
        })
    }

    fn learn_from_outcome(&self, key: OptionKey<'_>, reward: f64) -> Result<f64, DecisionError> {
        let refused = |kind| refusal(kind, None, key, reward, self.limits.max_options);
        check_reward(reward).map_err(refused)?;
        let learned = self.model().learn(key, reward, self.limits.max_options);
        learned.map_err(|why| refused(Refused::Model(why)))
    }

    fn update_decision_model(&self, update: ModelUpdate) -> Result<UpdateSummary, DecisionError> {
        let limit = self.limits.max_options;
        let mut staged = match &update.model {
            Some(json) => import::parse(json, limit)?,
            None => Model::default(),
        };
        let imported = staged.size();
        for (index, outcome) in update.outcomes.iter().enumerate() {
            let (key, reward) = (outcome.key(), outcome.reward);
            let refused = |kind| refusal(kind, Some(index), key, reward, limit);
            check_reward(reward).map_err(refused)?;
            let learned = staged.learn(key, reward, limit);
            learned.map_err(|why| refused(Refused::Model(why)))?;
        }
        let mut model = self.model();
        let (held, adding) = (model.size(), model.new_in(&staged));
        if held.saturating_add(adding) > limit {
            return Err(DecisionError::UpdateTooLarge {
                adding,
                held,
                limit,
            });
        }
        model.merge(staged);
        Ok(UpdateSummary {
            outcomes: update.outcomes.len(),
            imported,
            added: adding,
        })
    }

    fn export_model(&self) -> String {
        self.model().export()
    }

    fn model_stats(
        &self,
        workflow_id: &str,
        step_id: &str,
    ) -> BTreeMap<String, BTreeMap<String, OptionStats>> {
        self.model().step_stats(workflow_id, step_id)
    }

    fn record(&self, decision: DecisionRecord) {
        self.records().push(decision);
    }

    fn decisions(&self, workflow_id: &str) -> Vec<DecisionRecord> {
        self.records().of(workflow_id)
    }
}

/// Why a reward was refused.
#[derive(Debug, Clone, Copy)]
enum Refused {
    NotFinite,
    OutOfRange,
    Model(Refusal),
}

/// A reward the model learns: finite, within ±[`MAX_ABS_REWARD`].
fn check_reward(reward: f64) -> Result<(), Refused> {
    if !reward.is_finite() {
        Err(Refused::NotFinite)
    } else if reward.abs() > MAX_ABS_REWARD {
        Err(Refused::OutOfRange)
    } else {
        Ok(())
    }
}

/// The error for a refused reward (built only when one is refused).
fn refusal(
    why: Refused,
    index: Option<usize>,
    key: OptionKey<'_>,
    reward: f64,
    limit: usize,
) -> DecisionError {
    let outcome = Box::new(Outcome::new(key, reward));
    match why {
        Refused::NotFinite => DecisionError::NonFiniteReward { index, outcome },
        Refused::OutOfRange => DecisionError::RewardOutOfRange { index, outcome },
        Refused::Model(Refusal::Key(problem)) => DecisionError::InvalidKey {
            index,
            outcome,
            problem,
        },
        Refused::Model(Refusal::Full) => DecisionError::ModelFull {
            index,
            outcome,
            limit,
        },
    }
}
