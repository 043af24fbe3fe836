//! A step's `budget`, compiled: the tokens each of its calls takes from named budgets.
//!
//! Amounts are whole numbers, written as literals or as binding strings
//! (`"${position-sizing.output.orderCount}"`) resolved when the step starts. A name is
//! the workflow's own budget when it declares one by that name, else the engine's
//! ([`EngineBuilder::budgets`](crate::engine::EngineBuilder::budgets)). A literal larger
//! than the budget's capacity, or a name neither declares, is a validation error (the
//! engine's names are checked when the workflow is added to an engine); a bound amount
//! that is not a whole number, is unknown or is over the capacity fails the step with
//! kind `BUDGET_EXHAUSTED`. The key `actualFrom` is not a budget: it names the output
//! field that reports what a call actually used.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::definition::{DefinitionError, Location, ValidationErrors};
use crate::expr::{BindingValues, Template};
use crate::safety::BudgetSpec;
use crate::safety::budget::Amounts;

/// A step's `budget`, compiled.
#[derive(Debug, Clone)]
pub struct StepBudget {
    /// The step's index (for locating problems).
    index: usize,
    /// The amounts as an object template, name → number or binding.
    amounts: Template,
    /// The literal amounts, name → tokens.
    literals: BTreeMap<String, u64>,
    /// Every name, in order.
    names: Box<[String]>,
    /// The output field that says what a call actually used (`actualFrom`).
    actual_from: Option<String>,
}

impl StepBudget {
    pub(super) fn new(
        index: usize,
        amounts: Template,
        literals: BTreeMap<String, u64>,
        names: Box<[String]>,
        actual_from: Option<String>,
    ) -> Self {
        Self {
            index,
            amounts,
            literals,
            names,
            actual_from,
        }
    }

    /// The output field whose object (budget name → whole number) says what a call
    /// actually used (`budget.actualFrom`); the difference from what it took is refunded
    /// or charged.
    pub fn actual_from(&self) -> Option<&str> {
        self.actual_from.as_deref()
    }

    /// The budgets named, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// The amounts written as literals.
    pub fn literals(&self) -> &BTreeMap<String, u64> {
        &self.literals
    }

    /// The amounts as a template (literals and bindings).
    pub fn template(&self) -> &Template {
        &self.amounts
    }

    /// The amounts of one call, resolved against `values`; an error message (naming the
    /// budget) when a binding cannot be resolved or is not a whole number.
    pub fn resolve(&self, values: &dyn BindingValues) -> Result<Amounts, String> {
        let resolved = self
            .amounts
            .resolve(values)
            .map_err(|error| format!("budget: {error}"))?;
        let Value::Object(fields) = resolved else {
            return Err("budget: not an object".to_owned());
        };
        fields
            .into_iter()
            .map(|(name, amount)| match amount.as_u64() {
                Some(tokens) => Ok((name, tokens)),
                None => Err(format!(
                    "budget `{name}`: {} is not a whole number of tokens",
                    crate::definition::Quoted(&amount.to_string())
                )),
            })
            .collect()
    }

    /// Checks the names and literal amounts against the budgets the runs can take
    /// from: the workflow's `own`, then the engine's.
    pub(super) fn check(
        &self,
        step: &crate::definition::StepId,
        own: &BTreeMap<String, BudgetSpec>,
        engine: Option<&BTreeMap<String, BudgetSpec>>,
        errors: &mut Vec<DefinitionError>,
    ) {
        let at = |name: &str| {
            Location::step(self.index, Some(step))
                .field("budget")
                .field(name.to_owned())
        };
        for name in self.names() {
            let spec = own
                .get(name)
                .or_else(|| engine.and_then(|engine| engine.get(name)));
            let Some(spec) = spec else {
                if engine.is_some() {
                    errors.push(DefinitionError::UnknownBudget {
                        at: at(name),
                        budget: name.to_owned(),
                    });
                }
                continue;
            };
            if let Some(&amount) = self.literals.get(name) {
                if amount > spec.capacity() {
                    errors.push(DefinitionError::InvalidValue {
                        at: at(name),
                        value: amount.to_string(),
                        reason: format!(
                            "more than the capacity {} of budget `{name}`: the call could never be made",
                            spec.capacity()
                        ),
                    });
                }
            }
        }
    }
}

/// Checks every step's budget against the workflow's and the `engine`'s budgets.
pub(super) fn check_all(
    plan: &super::ExecutionPlan,
    engine: &BTreeMap<String, BudgetSpec>,
) -> Result<(), ValidationErrors> {
    let mut errors = Vec::new();
    for step in plan.steps() {
        if let Some(budget) = step.budget() {
            budget.check(step.id(), plan.budgets(), Some(engine), &mut errors);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors::new(errors))
    }
}
