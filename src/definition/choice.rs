//! The `decision` block of a `decision` step, as written: the options the step chooses
//! among, how they are scored, and how the choice learns from outcomes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A `decision` step's choice among options, as written.
///
/// Without this block a `decision` step is a task whose result is recorded with the
/// decision engine. With it, the engine picks one of `options` before the call, merges
/// its `parameters` over the task's, and — when `reward` is set — learns from the
/// outcome which option works best, separately for each value of `contextKey`.
///
/// # Examples
/// ```
/// use tradeflow::definition::{DecisionPolicy, DecisionSettings, Goal};
///
/// let settings: DecisionSettings = serde_json::from_str(r#"{
///     "options": [
///         {"id": "twap", "parameters": {"algo": "TWAP"}, "scores": {"cost": 2.0}},
///         {"id": "vwap", "parameters": {"algo": "VWAP"}, "scores": {"cost": 1.5}}
///     ],
///     "criteria": [{"name": "cost", "weight": 1, "goal": "MIN"}],
///     "reward": "${monitor.output.fillQuality}",
///     "policy": "UCB1"
/// }"#)?;
/// assert_eq!(settings.options.len(), 2);
/// assert_eq!(settings.criteria.as_deref().map(|c| c[0].goal), Some(Some(Goal::Min)));
/// assert_eq!(settings.policy, Some(DecisionPolicy::Ucb1));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DecisionSettings {
    /// The options, at least one, with unique ids.
    pub options: Vec<DecisionOption>,
    /// How options are scored before anything is learned (their prior scores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub criteria: Option<Vec<Criterion>>,
    /// A template whose value (as text) selects a separate model: one per regime,
    /// symbol or venue. Absent: one model for the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_key: Option<String>,
    /// A template evaluated when the run ends, against the run's outputs; it must give a
    /// number, the reward the chosen option is credited with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward: Option<String>,
    /// How an option is chosen: `THOMPSON` (the default with a `reward`), `UCB1`,
    /// `EPSILON_GREEDY` or `STATIC` (the default without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<DecisionPolicy>,
    /// `EPSILON_GREEDY` only: the share of decisions made uniformly at random (default
    /// 0.1, in [0, 1]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exploration: Option<f64>,
}

/// One option of a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DecisionOption {
    /// The option's id, unique in the step.
    pub id: String,
    /// Merged over the task's parameters (top-level keys replaced) when the option is
    /// chosen; may hold bindings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    /// The option's value on each criterion, by criterion name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores: Option<BTreeMap<String, f64>>,
}

/// One criterion the options are scored on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Criterion {
    /// The criterion's name, as used in the options' `scores`.
    pub name: String,
    /// Its weight (at least 0; default 1). Weights are normalised to sum to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// Whether less (`MIN`) or more (`MAX`, the default) is better.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<Goal>,
}

/// Whether less or more of a criterion is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Goal {
    /// Less is better (a cost, a latency).
    Min,
    /// More is better (a speed, a fill rate).
    #[default]
    Max,
}

/// How a decision chooses among its options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DecisionPolicy {
    /// Thompson sampling: sample each option's mean reward from its posterior, take the
    /// highest sample.
    Thompson,
    /// Upper confidence bound: untried options first, then the highest
    /// `mean + sqrt(2 ln N / n)`.
    #[serde(rename = "UCB1")]
    Ucb1,
    /// The best mean, except a share `exploration` of decisions made at random.
    EpsilonGreedy,
    /// The best prior score, always; nothing is learned.
    Static,
}

impl DecisionPolicy {
    /// The name as written in JSON (`EPSILON_GREEDY`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Thompson => "THOMPSON",
            Self::Ucb1 => "UCB1",
            Self::EpsilonGreedy => "EPSILON_GREEDY",
            Self::Static => "STATIC",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_written_as_the_format_names_them() {
        for policy in [
            DecisionPolicy::Thompson,
            DecisionPolicy::Ucb1,
            DecisionPolicy::EpsilonGreedy,
            DecisionPolicy::Static,
        ] {
            let json = serde_json::to_value(policy).expect("serializes");
            assert_eq!(json, Value::from(policy.as_str()));
            let back: DecisionPolicy = serde_json::from_value(json).expect("deserializes");
            assert_eq!(back, policy);
        }
    }
}
