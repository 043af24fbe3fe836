//! What a decision engine learns from: the key of a chosen option, rewards, and bulk
//! updates (outcomes and exported models).

use serde::{Deserialize, Serialize};

/// Where a reward goes: the decision's workflow, step and context, and the option it
/// chose. The context is the value of the step's `contextKey`; `""` means none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OptionKey<'a> {
    /// The workflow's id.
    pub workflow_id: &'a str,
    /// The `decision` step's id.
    pub step_id: &'a str,
    /// The value of the step's `contextKey` when it decided; `""` without one.
    pub context: &'a str,
    /// The chosen option's id.
    pub option_id: &'a str,
}

impl<'a> OptionKey<'a> {
    /// The key of option `option_id` of step `step_id` in `context` (`""`: none).
    pub fn new(
        workflow_id: &'a str,
        step_id: &'a str,
        context: &'a str,
        option_id: &'a str,
    ) -> Self {
        Self {
            workflow_id,
            step_id,
            context,
            option_id,
        }
    }
}

/// One reward for one option, owned: what a backtest or a log hands to
/// [`DecisionEngine::update_decision_model`](super::DecisionEngine::update_decision_model).
///
/// Serialized with camelCase fields; `context` may be left out (no context).
///
/// # Examples
/// ```
/// use tradeflow::decision::Outcome;
///
/// let outcome: Outcome = serde_json::from_str(
///     r#"{"workflowId": "algo", "stepId": "execution", "optionId": "twap", "reward": 0.8}"#,
/// )?;
/// assert_eq!(outcome.key().context, "");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct Outcome {
    /// The workflow's id.
    pub workflow_id: String,
    /// The `decision` step's id.
    pub step_id: String,
    /// The value of the step's `contextKey`; `""` (the default) without one.
    #[serde(default)]
    pub context: String,
    /// The chosen option's id.
    pub option_id: String,
    /// The reward: a finite number, at most 10^15 in absolute value.
    pub reward: f64,
}

impl Outcome {
    /// The outcome `reward` for `key`.
    pub fn new(key: OptionKey<'_>, reward: f64) -> Self {
        Self {
            workflow_id: key.workflow_id.to_owned(),
            step_id: key.step_id.to_owned(),
            context: key.context.to_owned(),
            option_id: key.option_id.to_owned(),
            reward,
        }
    }

    /// Where the reward goes.
    pub fn key(&self) -> OptionKey<'_> {
        OptionKey::new(
            &self.workflow_id,
            &self.step_id,
            &self.context,
            &self.option_id,
        )
    }
}

/// Learning data in bulk, applied whole or not at all: outcomes, and an exported model
/// (JSON text) merged in.
///
/// # Examples
/// ```
/// use tradeflow::decision::{ModelUpdate, OptionKey, Outcome};
///
/// let key = OptionKey::new("algo", "execution", "calm", "twap");
/// let update = ModelUpdate::new()
///     .outcomes([Outcome::new(key, 0.7), Outcome::new(key, 0.9)])
///     .model(r#"{"algo/execution": {"calm": {"vwap": {"n": 4, "mean": 0.5, "m2": 0.02}}}}"#);
/// assert_eq!(update.outcomes.len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ModelUpdate {
    /// Rewards to learn, as if each had been learned on its own.
    pub outcomes: Vec<Outcome>,
    /// An exported model to merge in (see the [module docs](super) for the format).
    pub model: Option<String>,
}

impl ModelUpdate {
    /// An update with nothing in it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `outcomes`.
    #[must_use]
    pub fn outcomes(mut self, outcomes: impl IntoIterator<Item = Outcome>) -> Self {
        self.outcomes.extend(outcomes);
        self
    }

    /// Merges the exported model `json` in (replacing one set before).
    #[must_use]
    pub fn model(mut self, json: impl Into<String>) -> Self {
        self.model = Some(json.into());
        self
    }
}

/// What an update did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpdateSummary {
    /// Outcomes learned.
    pub outcomes: usize,
    /// Option statistics read from the model.
    pub imported: usize,
    /// Option statistics the engine did not have before (from either source).
    pub added: usize,
}
