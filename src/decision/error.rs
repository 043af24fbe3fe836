//! The errors of deciding, learning and importing.

use std::fmt;

use super::Outcome;
use crate::definition::Quoted;

/// Why a decision engine refused a request. Nothing was changed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DecisionError {
    /// A decision was asked to choose among no options.
    #[error("step `{}/{}`: a decision needs at least one option", Quoted(.workflow_id), Quoted(.step_id))]
    NoOptions {
        /// The workflow.
        workflow_id: String,
        /// The step.
        step_id: String,
    },
    /// A reward that is not a finite number.
    #[error("{}: reward {} is not a finite number", at(*.index, .outcome), .outcome.reward)]
    NonFiniteReward {
        /// Its position in the update's outcomes, when it came in bulk.
        index: Option<usize>,
        /// The outcome refused.
        outcome: Box<Outcome>,
    },
    /// A reward beyond [`MAX_ABS_REWARD`](super::MAX_ABS_REWARD) in absolute value.
    #[error("{}: reward {} is beyond ±1e15", at(*.index, .outcome), .outcome.reward)]
    RewardOutOfRange {
        /// Its position in the update's outcomes, when it came in bulk.
        index: Option<usize>,
        /// The outcome refused.
        outcome: Box<Outcome>,
    },
    /// A key the model cannot hold: a part longer than
    /// [`MAX_KEY_BYTES`](super::MAX_KEY_BYTES), or a step id that is not one.
    #[error("{}: {problem}", at(*.index, .outcome))]
    InvalidKey {
        /// Its position in the update's outcomes, when it came in bulk.
        index: Option<usize>,
        /// The outcome refused.
        outcome: Box<Outcome>,
        /// What is wrong with the key.
        problem: &'static str,
    },
    /// A new option statistic when the model holds its limit of them
    /// ([`Limits::max_options`](super::Limits::max_options)).
    #[error("{}: the model already holds its limit of {limit} option statistics", at(*.index, .outcome))]
    ModelFull {
        /// Its position in the update's outcomes, when it came in bulk.
        index: Option<usize>,
        /// The outcome refused.
        outcome: Box<Outcome>,
        /// The limit.
        limit: usize,
    },
    /// An update that would take the model beyond its limit of option statistics.
    #[error(
        "the update adds {adding} option statistics to the {held} held, more than the limit of {limit}"
    )]
    UpdateTooLarge {
        /// The statistics the update would add.
        adding: usize,
        /// The statistics the model holds.
        held: usize,
        /// The limit.
        limit: usize,
    },
    /// An exported model that cannot be imported.
    #[error(transparent)]
    Import(#[from] ImportError),
}

/// Why an exported model cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The text is longer than [`MAX_IMPORT_BYTES`](super::MAX_IMPORT_BYTES).
    #[error("the model is {length} bytes long, more than the {max} allowed")]
    TooLong {
        /// The text's length in bytes.
        length: usize,
        /// The bound.
        max: usize,
    },
    /// The text is not well-formed JSON.
    #[error("line {line}, column {column}: malformed JSON: {}", Quoted(.message))]
    Syntax {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the JSON parser expected.
        message: String,
    },
    /// Well-formed JSON that is not an exported model.
    #[error("{path}: {problem}")]
    Invalid {
        /// Where in the model.
        path: Box<ModelPath>,
        /// What is wrong there.
        problem: ImportProblem,
    },
}

/// What is wrong at a place in an exported model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImportProblem {
    /// A value that should be an object.
    #[error("expected an object")]
    NotAnObject,
    /// A key the model cannot hold: why.
    #[error("{0}")]
    InvalidKey(&'static str),
    /// A key given twice in one object.
    #[error("duplicate key")]
    Duplicate,
    /// `n` is not a non-negative integer.
    #[error("expected a non-negative integer")]
    NotACount,
    /// `mean` is not a number within ±10^15.
    #[error("expected a number within ±1e15")]
    NotAMean,
    /// `m2` is not a finite non-negative number.
    #[error("expected a finite non-negative number")]
    NotAnM2,
    /// A statistic without one of `n`, `mean`, `m2`.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A statistic with a field other than `n`, `mean`, `m2`.
    #[error("unknown field `{}`, expected `n`, `mean` or `m2`", Quoted(.0))]
    UnknownField(String),
    /// More option statistics than one import may hold (the engine's limit).
    #[error("more than the {max} option statistics a model holds")]
    TooMany {
        /// The bound.
        max: usize,
    },
}

/// A place in an exported model, shown as
/// `model["<workflowId>/<stepId>"]["<context>"]["<optionId>"].<field>` (as deep as
/// known; keys through [`Quoted`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ModelPath {
    /// The step's key, `<workflowId>/<stepId>`.
    pub step_key: Option<String>,
    /// The context.
    pub context: Option<String>,
    /// The option's id.
    pub option_id: Option<String>,
    /// The statistic's field: `n`, `mean` or `m2`.
    pub field: Option<&'static str>,
}

impl fmt::Display for ModelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("model")?;
        let keys = [&self.step_key, &self.context, &self.option_id];
        for key in keys.into_iter().map_while(Option::as_deref) {
            write!(f, "[\"{}\"]", Quoted(key))?;
        }
        match self.field {
            Some(field) => write!(f, ".{field}"),
            None => Ok(()),
        }
    }
}

/// Where an outcome was: its position in an update, if any, and its key.
fn at(index: Option<usize>, outcome: &Outcome) -> String {
    let position = index
        .map(|index| format!("outcomes[{index}]: "))
        .unwrap_or_default();
    let context = if outcome.context.is_empty() {
        String::from("no context")
    } else {
        format!("context `{}`", Quoted(&outcome.context))
    };
    format!(
        "{position}option `{}` of step `{}/{}` ({context})",
        Quoted(&outcome.option_id),
        Quoted(&outcome.workflow_id),
        Quoted(&outcome.step_id),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::OptionKey;

    #[test]
    fn paths_show_as_deep_as_known() {
        let mut path = ModelPath::default();
        assert_eq!(path.to_string(), "model");
        path.step_key = Some("wf/step".into());
        path.context = Some("calm\n".into());
        assert_eq!(path.to_string(), r#"model["wf/step"]["calm\n"]"#);
        path.option_id = Some("twap".into());
        path.field = Some("n");
        assert_eq!(path.to_string(), r#"model["wf/step"]["calm\n"]["twap"].n"#);
    }

    #[test]
    fn refused_outcomes_name_their_option_step_and_context() {
        let key = OptionKey::new("wf", "exec", "", "twap");
        let error = DecisionError::NonFiniteReward {
            index: Some(3),
            outcome: Box::new(Outcome::new(key, f64::NAN)),
        };
        assert_eq!(
            error.to_string(),
            "outcomes[3]: option `twap` of step `wf/exec` (no context): reward NaN is not a finite number"
        );
    }
}
