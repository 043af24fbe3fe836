//! The trading safety fields of a step: `maxDataAgeMs`, `onStale`, `sideEffects` and
//! `reconcile`.
//!
//! `maxDataAgeMs` is a duration (0 to [`MAX_DURATION_MS`](crate::plan::MAX_DURATION_MS))
//! and only agent steps (`task`, `decision`, `parallel`, `loop`) have it; `onStale` only
//! with `maxDataAgeMs`. `sideEffects: true` only on agent steps; `reconcile` only with
//! `"sideEffects": true`.

use std::time::Duration;

use super::Compiler;
use crate::definition::StepDefinition;
use crate::expr::Locate;
use crate::safety::{Freshness, SideEffects};

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
