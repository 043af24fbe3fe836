//! A decision asked for, and the decision made.

use crate::definition::{Criterion, DecisionOption};
use crate::plan::{Choice, Policy};

/// What a decision chooses among, and how: the options and criteria of a `decision`
/// block, its policy, and where its statistics are kept (workflow, step, context).
///
/// # Examples
/// ```
/// use tradeflow::decision::DecisionRequest;
/// use tradeflow::definition::DecisionSettings;
/// use tradeflow::plan::Policy;
///
/// let settings: DecisionSettings = serde_json::from_str(
///     r#"{"options": [{"id": "twap"}, {"id": "vwap"}], "policy": "UCB1"}"#,
/// )?;
/// let request = DecisionRequest::new("algo", "execution", &settings.options, Policy::of(&settings))
///     .with_context("calm");
/// assert_eq!(request.context, "calm");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct DecisionRequest<'a> {
    /// The workflow's id.
    pub workflow_id: &'a str,
    /// The `decision` step's id.
    pub step_id: &'a str,
    /// The value of the step's `contextKey`; `""` without one.
    pub context: &'a str,
    /// The options, at least one, in listed order.
    pub options: &'a [DecisionOption],
    /// How the options are scored before anything is learned.
    pub criteria: &'a [Criterion],
    /// How the option is chosen.
    pub policy: Policy,
}

impl<'a> DecisionRequest<'a> {
    /// A decision among `options` under `policy`, with no criteria (every prior 1) and
    /// no context.
    pub fn new(
        workflow_id: &'a str,
        step_id: &'a str,
        options: &'a [DecisionOption],
        policy: Policy,
    ) -> Self {
        Self {
            workflow_id,
            step_id,
            context: "",
            options,
            criteria: &[],
            policy,
        }
    }

    /// The decision a compiled `decision` block describes: its options, criteria and
    /// policy, with no context.
    pub fn of_choice(workflow_id: &'a str, step_id: &'a str, choice: &'a Choice) -> Self {
        Self::new(workflow_id, step_id, choice.options(), choice.policy())
            .with_criteria(choice.criteria())
    }

    /// In context `context` (the value of the step's `contextKey`; default `""`, none).
    #[must_use]
    pub fn with_context(mut self, context: &'a str) -> Self {
        self.context = context;
        self
    }

    /// Scored on `criteria` (default none: every prior 1).
    #[must_use]
    pub fn with_criteria(mut self, criteria: &'a [Criterion]) -> Self {
        self.criteria = criteria;
        self
    }
}

/// The option a decision took, and why.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Decision {
    /// The option's position in the request's options.
    pub index: usize,
    /// The option's id.
    pub option_id: String,
    /// Every option's prior score, in option order.
    pub priors: Vec<f64>,
    /// The policy that chose.
    pub policy: Policy,
}
