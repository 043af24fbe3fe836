//! The trading safety fields of a step: `maxDataAgeMs`, `onStale`, `sideEffects`,
//! `reconcile` and `budget`, and the workflow's `budgets`.
//!
//! `maxDataAgeMs` is a duration (0 to [`MAX_DURATION_MS`](crate::plan::MAX_DURATION_MS))
//! and only agent steps (`task`, `decision`, `parallel`, `loop`) have it; `onStale` only
//! with `maxDataAgeMs`. `sideEffects: true` only on agent steps; `reconcile` only with
//! `"sideEffects": true`. Each of the workflow's `budgets` has a capacity of at least 1
//! and a finite `refillPerSecond` of at least 0. `budget` only on agent steps; each
//! amount is a whole number or a binding string; a literal over the capacity of the
//! workflow's budget of that name is refused here (names the workflow does not declare
//! are the engine's, checked when the workflow is added to one).

use std::collections::BTreeMap;
use std::time::Duration;

use super::Compiler;
use crate::definition::{DefinitionError, Location, StepDefinition, WorkflowDefinition};
use crate::expr::{Locate, Scope, Template};
use crate::plan::StepBudget;
use crate::safety::{BudgetSpec, Freshness, SideEffects};

impl Compiler {
    /// The step's `maxDataAgeMs` and `onStale`, checked; `None` without them (or with a
    /// problem, which is reported).
    pub(super) fn freshness(&mut self, step: &StepDefinition, at: Locate<'_>) -> Option<Freshness> {
        if step.on_stale.is_some() && step.max_data_age_ms.is_none() {
            self.not_allowed(
                at,
                "onStale",
                "it says what a step does on stale data, and only a step with `maxDataAgeMs` checks its data",
            );
        }
        let max_age = step.max_data_age_ms?;
        if !step.step_type.uses_agent() {
            self.not_allowed(
                at,
                "maxDataAgeMs",
                &format!(
                    "only steps that call an agent check their data; this is a {} step",
                    step.step_type.as_str()
                ),
            );
            return None;
        }
        self.duration(Some(max_age), &|| at().field("maxDataAgeMs"));
        Some(Freshness::new(
            Duration::from_millis(max_age),
            step.on_stale.unwrap_or_default(),
        ))
    }

    /// The step's `approval.quorum` and `approval.approvers`, checked; `None` without
    /// either (or with a problem, which is reported).
    pub(super) fn approval_quorum(
        &mut self,
        step: &StepDefinition,
        at: Locate<'_>,
    ) -> Option<crate::plan::Quorum> {
        let approval = step.approval.as_ref()?;
        // On another type, the block itself is refused (`step_shape`).
        if step.step_type != crate::definition::StepType::HumanApproval
            || approval.quorum.is_none() && approval.approvers.is_none()
        {
            return None;
        }
        let at = || at().field("approval");
        let need = approval.quorum.unwrap_or(1);
        if !(1..=crate::plan::Quorum::MAX).contains(&need) {
            self.errors.push(DefinitionError::InvalidValue {
                at: at().field("quorum"),
                value: need.to_string(),
                reason: format!("expected 1 to {}", crate::plan::Quorum::MAX),
            });
        }
        let mut approvers = Vec::new();
        for (i, entry) in approval.approvers.iter().flatten().enumerate() {
            let approver = match entry.split_once(':') {
                Some(("role", name)) if !name.is_empty() => {
                    Some(crate::plan::Approver::Role(name.to_owned()))
                }
                Some(("user", name)) if !name.is_empty() => {
                    Some(crate::plan::Approver::User(name.to_owned()))
                }
                _ => None,
            };
            match approver {
                Some(approver) => approvers.push(approver),
                None => self.errors.push(DefinitionError::InvalidValue {
                    at: at().field("approvers").index(i),
                    value: serde_json::Value::from(entry.as_str()).to_string(),
                    reason: "expected `role:NAME` or `user:NAME`".to_owned(),
                }),
            }
        }
        if approval.approvers.as_ref().is_some_and(Vec::is_empty) {
            self.errors.push(DefinitionError::InvalidValue {
                at: at().field("approvers"),
                value: "[]".to_owned(),
                reason: "nobody could approve; leave it out to let anyone".to_owned(),
            });
        }
        Some(crate::plan::Quorum {
            need,
            approvers: approvers.into_boxed_slice(),
        })
    }

    /// The step's `sideEffects` and `reconcile`, checked; `None` for a step without side
    /// effects (or with a problem, which is reported).
    pub(super) fn side_effects(
        &mut self,
        step: &StepDefinition,
        at: Locate<'_>,
    ) -> Option<SideEffects> {
        let marked = step.side_effects == Some(true);
        if step.reconcile.is_some() && !marked {
            self.not_allowed(
                at,
                "reconcile",
                "only a step with `\"sideEffects\": true` reconciles a call whose outcome is unknown",
            );
        }
        if !marked {
            return None;
        }
        if !step.step_type.uses_agent() {
            self.not_allowed(
                at,
                "sideEffects",
                &format!(
                    "only steps that call an agent act on the world; this is a {} step",
                    step.step_type.as_str()
                ),
            );
            return None;
        }
        let reconcile = step.reconcile.as_ref().map(|block| block.task_type.clone());
        Some(SideEffects::new(reconcile))
    }
}

impl Compiler {
    /// The workflow's `budgets`, checked; those with a problem are reported and left out.
    pub(super) fn budgets(
        &mut self,
        definition: &WorkflowDefinition,
    ) -> BTreeMap<String, BudgetSpec> {
        let mut specs = BTreeMap::new();
        for (name, budget) in definition.budgets.iter().flatten() {
            let at = Location::root().field("budgets").field(name.clone());
            if name.is_empty() {
                self.invalid(at, "\"\"", "a budget has a name");
                continue;
            }
            match BudgetSpec::new(budget.capacity, budget.refill_per_second) {
                Ok(spec) => {
                    specs.insert(name.clone(), spec);
                }
                Err(error) => {
                    let value = serde_json::to_string(budget).unwrap_or_default();
                    self.invalid(at, &value, &error.to_string());
                }
            }
        }
        specs
    }

    /// The step's `budget`, checked against the workflow's budgets; `None` without one
    /// (or with a problem, which is reported).
    pub(super) fn budget(
        &mut self,
        index: usize,
        step: &StepDefinition,
        definition: &WorkflowDefinition,
        scope: &Scope<'_>,
        at: Locate<'_>,
    ) -> Option<StepBudget> {
        let written = step.budget.as_ref()?;
        if !step.step_type.uses_agent() {
            self.not_allowed(
                at,
                "budget",
                &format!(
                    "only steps that call an agent take from budgets; this is a {} step",
                    step.step_type.as_str()
                ),
            );
            return None;
        }
        let errors_before = self.errors.len();
        let mut written = written.clone();
        let actual_from = match written.remove("actualFrom") {
            None => None,
            Some(serde_json::Value::String(field)) if !field.is_empty() => Some(field),
            Some(other) => {
                self.errors.push(DefinitionError::InvalidType {
                    at: at().field("budget").field("actualFrom"),
                    found: crate::definition::json_kind(&other).to_owned(),
                    expected: "the name of an output field".to_owned(),
                });
                None
            }
        };
        let written = &written;
        let mut literals = BTreeMap::new();
        for (name, amount) in written {
            let at = || at().field("budget").field(name.clone());
            match amount {
                serde_json::Value::String(_) => {}
                serde_json::Value::Number(number) => match number.as_u64() {
                    Some(tokens) => {
                        literals.insert(name.clone(), tokens);
                    }
                    None => self.invalid(
                        at(),
                        &number.to_string(),
                        "an amount is a whole number of tokens, 0 or more",
                    ),
                },
                other => self.errors.push(DefinitionError::InvalidType {
                    at: at(),
                    found: crate::definition::json_kind(other).to_owned(),
                    expected: "a whole number of tokens or a binding string".to_owned(),
                }),
            }
        }
        let template =
            Template::compile_object(written, scope, &|| at().field("budget"), &mut self.errors)?;
        let names = written.keys().cloned().collect();
        let budget = StepBudget::new(index, template, literals, names, actual_from);
        let own = self.budgets_of(definition);
        budget.check(&step.id, &own, None, &mut self.errors);
        (self.errors.len() == errors_before).then_some(budget)
    }

    /// The workflow's valid budgets, without reporting (the workflow pass reports them).
    fn budgets_of(&self, definition: &WorkflowDefinition) -> BTreeMap<String, BudgetSpec> {
        definition
            .budgets
            .iter()
            .flatten()
            .filter_map(|(name, budget)| {
                let spec = BudgetSpec::new(budget.capacity, budget.refill_per_second).ok()?;
                Some((name.clone(), spec))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::definition::OnStale;
    use crate::plan::ExecutionPlan;

    fn compile(fields: &str) -> Result<ExecutionPlan, Vec<String>> {
        let json = format!(
            r#"{{"id": "w", "steps": [{{"id": "trade", "type": "task",
                 "agentCriteria": {{"type": "X"}}, "task": {{"type": "T"}}{fields}}}]}}"#
        );
        ExecutionPlan::from_json(&json)
            .map_err(|errors| errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn a_step_reads_its_maximum_data_age_and_skips_by_default() {
        let plan = compile(r#", "maxDataAgeMs": 250"#).unwrap();
        let freshness = plan.step(0).unwrap().freshness().copied().unwrap();
        assert_eq!(freshness.max_age().as_millis(), 250);
        assert_eq!(freshness.on_stale(), OnStale::Skip);
        let plan = compile(r#", "maxDataAgeMs": 0, "onStale": "FAIL""#).unwrap();
        let freshness = plan.step(0).unwrap().freshness().copied().unwrap();
        assert_eq!(freshness.on_stale(), OnStale::Fail);
        assert!(compile("").unwrap().step(0).unwrap().freshness().is_none());
    }

    #[test]
    fn on_stale_without_a_maximum_age_and_ages_out_of_bounds_are_refused_where_they_are() {
        let errors = compile(r#", "onStale": "FAIL""#).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("steps[0] (trade)"), "{}", errors[0]);
        assert!(errors[0].contains("onStale"), "{}", errors[0]);
        let errors = compile(r#", "maxDataAgeMs": 3155760000001"#).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("steps[0] (trade).maxDataAgeMs"),
            "{}",
            errors[0]
        );
        let errors = compile(r#", "maxDataAgeMs": 250, "onStale": "LATER""#).unwrap_err();
        assert!(errors[0].contains("onStale"), "{}", errors[0]);
    }

    #[test]
    fn a_step_with_side_effects_reads_its_reconcile_task() {
        let plan =
            compile(r#", "sideEffects": true, "reconcile": {"type": "ORDER_STATUS"}"#).unwrap();
        let effects = plan.step(0).unwrap().side_effects().unwrap();
        assert_eq!(
            effects.reconcile().map(|task| task.as_str()),
            Some("ORDER_STATUS")
        );
        let plan = compile(r#", "sideEffects": true"#).unwrap();
        assert!(
            plan.step(0)
                .unwrap()
                .side_effects()
                .unwrap()
                .reconcile()
                .is_none()
        );
        let plan = compile(r#", "sideEffects": false"#).unwrap();
        assert!(plan.step(0).unwrap().side_effects().is_none());
    }

    #[test]
    fn reconcile_without_side_effects_is_refused() {
        for fields in [
            r#", "reconcile": {"type": "ORDER_STATUS"}"#,
            r#", "sideEffects": false, "reconcile": {"type": "ORDER_STATUS"}"#,
        ] {
            let errors = compile(fields).unwrap_err();
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].starts_with("steps[0] (trade)"), "{}", errors[0]);
            assert!(errors[0].contains("reconcile"), "{}", errors[0]);
        }
    }

    #[test]
    fn steps_that_call_no_agent_have_no_maximum_data_age() {
        let json = r#"{"id": "w", "steps": [{"id": "ok", "type": "human_approval",
            "maxDataAgeMs": 250}]}"#;
        let errors: Vec<String> = ExecutionPlan::from_json(json)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            errors
                .iter()
                .any(|error| error.starts_with("steps[0] (ok)") && error.contains("maxDataAgeMs")),
            "{errors:?}"
        );
    }
}
