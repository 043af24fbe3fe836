//! Shared helpers: small workflow builders, error lookups and run values; [`engine`]: an
//! engine on a virtual clock with hand-written agents, for behaviour tests of runs;
//! [`journal`]: a run's journal checked against its report; [`crash`]: a store that a
//! crash cuts off.
//!
//! Each test file uses a different subset.
#![allow(dead_code, unused_macros, unused_imports)]

pub mod crash;
pub mod engine;
pub mod forward;
pub mod journal;
pub mod trace;

use serde_json::{Value, json};
use tradeflow::definition::DefinitionError;
use tradeflow::expr::BindingValues;
use tradeflow::plan::ExecutionPlan;

/// A `task` step with no parameters.
pub fn task(id: &str) -> Value {
    json!({
        "id": id,
        "type": "task",
        "agentCriteria": {"type": "AGENT"},
        "task": {"type": "TASK"}
    })
}

/// A `task` step whose task has these `parameters`.
pub fn task_with(id: &str, parameters: Value) -> Value {
    with(
        task(id),
        json!({"task": {"type": "TASK", "parameters": parameters}}),
    )
}

/// `object` with `fields` added, replacing fields of the same name.
pub fn with(mut object: Value, fields: Value) -> Value {
    let (Some(target), Value::Object(fields)) = (object.as_object_mut(), fields) else {
        panic!("`with` merges two objects");
    };
    target.extend(fields);
    object
}

/// A workflow with id `w` and these steps, nothing else.
pub fn workflow(steps: impl IntoIterator<Item = Value>) -> Value {
    json!({"id": "w", "steps": steps.into_iter().collect::<Vec<_>>()})
}

/// Compiles a workflow that must be valid, showing every problem if it is not.
#[track_caller]
pub fn plan(workflow: &Value) -> ExecutionPlan {
    match ExecutionPlan::from_json(&workflow.to_string()) {
        Ok(plan) => plan,
        Err(errors) => panic!("expected a valid workflow, got:\n{errors}\nin {workflow:#}"),
    }
}

/// Every problem `ExecutionPlan::from_json` finds in `json`, which must be invalid.
#[track_caller]
pub fn errors_of(json: &str) -> Vec<DefinitionError> {
    match ExecutionPlan::from_json(json) {
        Ok(_) => panic!("expected validation errors, but this compiled:\n{json}"),
        Err(errors) => errors.into_vec(),
    }
}

/// Every problem in `workflow`, which must be invalid.
#[track_caller]
pub fn errors_in(workflow: &Value) -> Vec<DefinitionError> {
    errors_of(&workflow.to_string())
}

/// The one problem in `workflow`; fails listing them all when there is not exactly one.
#[track_caller]
pub fn sole_error(workflow: &Value) -> DefinitionError {
    let mut errors = errors_in(workflow);
    assert_eq!(
        errors.len(),
        1,
        "expected exactly one problem, got:\n{}",
        listing(&errors)
    );
    errors.remove(0)
}

/// Where a problem is, as displayed (`steps[1] (b).condition.expression`); empty for
/// problems with no location (malformed JSON).
pub fn location(error: &DefinitionError) -> String {
    error
        .location()
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// The problems one a line, with their debug form, for failure messages.
pub fn listing(errors: &[DefinitionError]) -> String {
    errors
        .iter()
        .map(|error| format!("  {error}\n    {error:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The variant name of a problem.
pub fn kind(error: &DefinitionError) -> &'static str {
    match error {
        DefinitionError::Syntax { .. } => "Syntax",
        DefinitionError::UnknownField { .. } => "UnknownField",
        DefinitionError::UnknownVariant { .. } => "UnknownVariant",
        DefinitionError::MissingField { .. } => "MissingField",
        DefinitionError::Required { .. } => "Required",
        DefinitionError::NotAllowed { .. } => "NotAllowed",
        DefinitionError::InvalidType { .. } => "InvalidType",
        DefinitionError::InvalidValue { .. } => "InvalidValue",
        DefinitionError::DuplicateStepId { .. } => "DuplicateStepId",
        DefinitionError::InvalidStepId { .. } => "InvalidStepId",
        DefinitionError::UnknownStep { .. } => "UnknownStep",
        DefinitionError::UnknownBindingStep { .. } => "UnknownBindingStep",
        DefinitionError::SelfReference { .. } => "SelfReference",
        DefinitionError::BindingNotAllowed { .. } => "BindingNotAllowed",
        DefinitionError::InvalidBinding { .. } => "InvalidBinding",
        DefinitionError::Expression { .. } => "Expression",
        DefinitionError::Cycle { .. } => "Cycle",
        DefinitionError::InvalidCron { .. } => "InvalidCron",
        DefinitionError::UnknownTimezone { .. } => "UnknownTimezone",
        _ => "other",
    }
}

/// Each problem as (location, variant name), sorted: the set of problems, comparable
/// with `assert_eq!` whatever order they are reported in.
pub fn summary(errors: &[DefinitionError]) -> Vec<(String, &'static str)> {
    let mut summary: Vec<(String, &'static str)> = errors
        .iter()
        .map(|error| (location(error), kind(error)))
        .collect();
    summary.sort();
    summary
}

/// Asserts that `errors` holds a problem at `location` matching `pattern`.
///
/// ```text
/// expect_error!(errors, "dependencies[2].to", DefinitionError::UnknownStep { step, .. } if step == "nope");
/// ```
macro_rules! expect_error {
    ($errors:expr, $location:expr, $pattern:pat $(if $guard:expr)?) => {{
        let errors: &[tradeflow::definition::DefinitionError] = &$errors;
        let location: &str = $location;
        assert!(
            errors.iter().any(|error| {
                crate::support::location(error) == location && matches!(error, $pattern $(if $guard)?)
            }),
            "no problem matching `{}` at `{}` among:\n{}",
            stringify!($pattern),
            location,
            crate::support::listing(errors),
        );
    }};
}
pub(crate) use expect_error;

/// Run values for resolving bindings: the input and the outputs of steps by index.
#[derive(Debug, Clone, Default)]
pub struct RunValues {
    /// The run input.
    pub input: Value,
    /// The output of each step, by index; `None` for steps without output.
    pub outputs: Vec<Option<Value>>,
    /// The current step's own output (`${output…}`).
    pub own: Option<Value>,
}

impl RunValues {
    /// Values with this input and no step output.
    pub fn with_input(input: Value) -> Self {
        Self {
            input,
            ..Self::default()
        }
    }

    /// Sets the output of step `index`.
    #[must_use]
    pub fn output(mut self, index: usize, output: Value) -> Self {
        if self.outputs.len() <= index {
            self.outputs.resize(index + 1, None);
        }
        self.outputs[index] = Some(output);
        self
    }
}

impl BindingValues for RunValues {
    fn input(&self) -> &Value {
        &self.input
    }

    fn step_output(&self, index: usize) -> Option<&Value> {
        self.outputs.get(index)?.as_ref()
    }

    fn own_output(&self) -> Option<&Value> {
        self.own.as_ref()
    }
}
