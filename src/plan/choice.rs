//! A `decision` step's choice, compiled: the options as written (for scoring), their
//! parameters, context key and reward as templates, and the policy with its defaults.

use crate::definition::{Criterion, DecisionOption, DecisionPolicy, DecisionSettings};
use crate::expr::Template;

/// How a decision chooses among its options, defaults applied.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Policy {
    /// The best prior score, always; nothing is learned.
    Static,
    /// Thompson sampling over a Gaussian posterior of each option's mean reward.
    Thompson,
    /// Untried options first, then the highest `mean + sqrt(2 ln N / n)`.
    Ucb1,
    /// The best mean, except a share `exploration` (in [0, 1]) of decisions made
    /// uniformly at random.
    EpsilonGreedy {
        /// The share of decisions made at random.
        exploration: f64,
    },
}

impl Policy {
    /// The share of random decisions of `EPSILON_GREEDY` when `exploration` is absent.
    pub const DEFAULT_EXPLORATION: f64 = 0.1;

    /// The policy as written in JSON (`EPSILON_GREEDY`).
    pub fn as_str(self) -> &'static str {
        self.written().as_str()
    }

    /// The policy's name in the format.
    pub fn written(self) -> DecisionPolicy {
        match self {
            Self::Static => DecisionPolicy::Static,
            Self::Thompson => DecisionPolicy::Thompson,
            Self::Ucb1 => DecisionPolicy::Ucb1,
            Self::EpsilonGreedy { .. } => DecisionPolicy::EpsilonGreedy,
        }
    }

    /// Whether decisions under this policy learn from outcomes (all but `STATIC`).
    pub fn learns(self) -> bool {
        !matches!(self, Self::Static)
    }

    /// The policy a `decision` block means: `policy` as written, else `THOMPSON` with a
    /// `reward` and `STATIC` without; `exploration` applies to `EPSILON_GREEDY`.
    pub fn of(settings: &DecisionSettings) -> Self {
        let written = settings.policy.unwrap_or(if settings.reward.is_some() {
            DecisionPolicy::Thompson
        } else {
            DecisionPolicy::Static
        });
        match written {
            DecisionPolicy::Static => Self::Static,
            DecisionPolicy::Thompson => Self::Thompson,
            DecisionPolicy::Ucb1 => Self::Ucb1,
            DecisionPolicy::EpsilonGreedy => Self::EpsilonGreedy {
                exploration: settings.exploration.unwrap_or(Self::DEFAULT_EXPLORATION),
            },
        }
    }
}

/// A `decision` step's choice among options, compiled.
#[derive(Debug, Clone)]
pub struct Choice {
    /// The block as written: options and criteria, for scoring.
    settings: DecisionSettings,
    /// Each option's parameters, compiled; in option order.
    parameters: Box<[Option<Template>]>,
    /// Selects the model, evaluated when the step starts.
    context_key: Option<Template>,
    /// The reward, evaluated when the run ends.
    reward: Option<Template>,
    /// How the option is chosen.
    policy: Policy,
}

impl Choice {
    pub(crate) fn new(
        settings: DecisionSettings,
        parameters: Box<[Option<Template>]>,
        context_key: Option<Template>,
        reward: Option<Template>,
    ) -> Self {
        let policy = Policy::of(&settings);
        Self {
            settings,
            parameters,
            context_key,
            reward,
            policy,
        }
    }

    /// The options as written, in listed order.
    pub fn options(&self) -> &[DecisionOption] {
        &self.settings.options
    }

    /// The criteria as written (none: every option scores the same).
    pub fn criteria(&self) -> &[Criterion] {
        self.settings.criteria.as_deref().unwrap_or_default()
    }

    /// Option `index`'s parameters, compiled; `None` when it has none.
    pub fn option_parameters(&self, index: usize) -> Option<&Template> {
        self.parameters.get(index).and_then(Option::as_ref)
    }

    /// The context key template, if any.
    pub fn context_key(&self) -> Option<&Template> {
        self.context_key.as_ref()
    }

    /// The reward template, if any: evaluated against the run's outputs when it ends.
    pub fn reward(&self) -> Option<&Template> {
        self.reward.as_ref()
    }

    /// The policy, defaults applied.
    pub fn policy(&self) -> Policy {
        self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(json: &str) -> DecisionSettings {
        serde_json::from_str(json).expect("settings parse")
    }

    #[test]
    fn policy_defaults_follow_the_reward() {
        let with_reward = settings(r#"{"options": [{"id": "a"}], "reward": "${input.r}"}"#);
        assert_eq!(Policy::of(&with_reward), Policy::Thompson);
        let without = settings(r#"{"options": [{"id": "a"}]}"#);
        assert_eq!(Policy::of(&without), Policy::Static);
        let greedy = settings(r#"{"options": [{"id": "a"}], "policy": "EPSILON_GREEDY"}"#);
        assert_eq!(
            Policy::of(&greedy),
            Policy::EpsilonGreedy { exploration: 0.1 }
        );
        assert!(Policy::of(&greedy).learns());
        assert!(!Policy::Static.learns());
        assert_eq!(Policy::Ucb1.as_str(), "UCB1");
    }
}
