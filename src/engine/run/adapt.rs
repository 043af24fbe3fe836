//! Adaptations in the run: the workflow's rules that hold as a step is about to start,
//! journaled (`adaptationsApplied`) before its first call and applied to it.
//!
//! A step that some rule changes is adapted once per start: the rules that change it
//! are evaluated (the built-in names, then the engine's conditions, then the run's
//! context), the ids of those that hold are journaled — even when none did, so that a
//! run recovered after a crash starts the step exactly as it would have — and
//! announced (`StepAdapted`, when some held). A step whose ids are in the journal
//! applies exactly those again, whatever the conditions are now; a rollback that runs a
//! step again forgets them. The changes themselves are computed by
//! [`crate::adapt::overrides`].

use std::sync::Arc;

use serde_json::{Map, Value};

use super::Execution;
use super::decide::Refused;
use super::transition::Transition;
use crate::definition::Quoted;
use crate::engine::adapt::{conditions_over, holds};
use crate::plan::{Adaptation, PlanStep};
use crate::run::FailureKind;

/// What adaptations do to a step about to start.
pub(super) enum Adapted {
    /// The step is skipped, for this reason.
    Skip(String),
    /// The step starts, with these parameters merged over its own and, when its timeout
    /// or retry policy changed, as this step.
    Start {
        parameters: Option<Map<String, Value>>,
        step: Option<Arc<PlanStep>>,
    },
}

impl Adapted {
    const UNCHANGED: Self = Self::Start {
        parameters: None,
        step: None,
    };
}

impl Execution {
    /// Applies the adaptations that hold for `step` now (or that the journal says it
    /// applied).
    pub(super) fn adapt(&mut self, step: &PlanStep) -> Result<Adapted, Refused> {
        let plan = Arc::clone(&self.book.plan);
        let added = self.inner.adapting.added(&self.inner, &plan);
        if plan.adaptations().is_empty() && added.is_none() {
            return Ok(Adapted::UNCHANGED);
        }
        let rules: Vec<&Adaptation> = plan
            .adaptations()
            .iter()
            .chain(added.iter().flat_map(|rules| rules.iter()))
            .map(|rule| &**rule)
            .collect();
        let index = step.index();
        let ids = match self.book.adaptations.get(&index) {
            Some(ids) => ids.clone(),
            None => {
                let touching: Vec<&Adaptation> = rules
                    .iter()
                    .copied()
                    .filter(|rule| rule.changes_step(step.id()))
                    .collect();
                if touching.is_empty() {
                    return Ok(Adapted::UNCHANGED);
                }
                let context = conditions_over(self.inner.adapting.context(), &self.context);
                let workflow = plan.workflow_id();
                let ids: Vec<String> = touching
                    .into_iter()
                    .filter(|rule| holds(&self.inner, workflow, rule, &context))
                    .map(|rule| rule.id().to_owned())
                    .collect();
                self.apply(Transition::Adapted {
                    index,
                    ids: ids.clone(),
                });
                ids
            }
        };
        if ids.is_empty() {
            return Ok(Adapted::UNCHANGED);
        }
        let applied = ids
            .iter()
            .map(|id| {
                rules.iter().copied().find(|rule| rule.id() == id).ok_or_else(|| {
                    (
                        FailureKind::Permanent,
                        format!(
                            "step `{}`: the journal says adaptation `{}` applied, which the workflow no longer has",
                            step.id(),
                            Quoted(id)
                        ),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let overrides = crate::adapt::overrides(&applied, step.id(), step.timeout());
        if let Some(id) = overrides.skip {
            return Ok(Adapted::Skip(format!("adaptation {id}")));
        }
        let adapted = overrides
            .changes_step_settings()
            .then(|| Arc::new(step.adapted(overrides.timeout, overrides.retry)));
        Ok(Adapted::Start {
            parameters: overrides.parameters,
            step: adapted,
        })
    }
}

/// `parameters` with `over` merged over them (top-level keys replaced).
pub(crate) fn merged(parameters: Value, over: Option<Map<String, Value>>) -> Value {
    match (parameters, over) {
        (parameters, None) => parameters,
        (Value::Object(mut base), Some(over)) => {
            base.extend(over);
            Value::Object(base)
        }
        (_, Some(over)) => Value::Object(over),
    }
}
