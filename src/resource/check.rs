//! Whether a workflow's `resourceRequirements` can ever be granted by a pool.

use super::{ResourceKind, ResourceRequest, within};
use crate::definition::Location;
use crate::plan::ExecutionPlan;

/// A `resourceRequirements` amount a pool can never grant: the step (or the workflow)
/// could never run.
///
/// # Examples
/// ```
/// use tradeflow::plan::ExecutionPlan;
/// use tradeflow::resource::{ResourceKind, ResourcePool};
///
/// let plan = ExecutionPlan::from_json(r#"{"id": "w", "steps": [
///     {"id": "order-execution", "type": "task", "agentCriteria": {"type": "X"},
///      "task": {"type": "T"}, "resourceRequirements": {"cpu": 8}}]}"#)?;
/// let errors = ResourcePool::new([("cpu", 4.0)])?.check_plan(&plan).unwrap_err();
/// assert_eq!(errors[0].kind, ResourceKind::CPU);
/// assert_eq!(
///     errors[0].to_string(),
///     "steps[0] (order-execution).resourceRequirements.cpu: needs 8 `cpu` but the pool has 4: the step could never run"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", describe(self))]
pub struct CapacityError {
    /// The requirement: `steps[3] (order-execution).resourceRequirements.cpu`, or
    /// `resourceRequirements.cpu` for the workflow's (all its entries added up).
    pub at: Location,
    /// The resource.
    pub kind: ResourceKind,
    /// The amount required.
    pub required: f64,
    /// For a step: what its run holds of the resource meanwhile (the workflow's
    /// `resourceRequirements`, held for the whole run). 0 for the workflow's own.
    pub held_by_run: f64,
    /// The pool's capacity.
    pub capacity: f64,
}

fn describe(error: &CapacityError) -> String {
    let CapacityError {
        at,
        kind,
        required,
        held_by_run,
        capacity,
    } = error;
    let mut text = format!("{at}: ");
    if at.step_index().is_some() {
        text.push_str(&format!("needs {required} `{kind}`"));
        if *held_by_run > 0.0 {
            text.push_str(&format!(
                " while its run holds {held_by_run} (the workflow's resourceRequirements)"
            ));
        }
        text.push_str(&format!(
            " but the pool has {capacity}: the step could never run"
        ));
    } else {
        text.push_str(&format!(
            "the run holds {required} `{kind}` for its whole length but the pool has {capacity}: the workflow could never run"
        ));
    }
    text
}

/// Every requirement of `plan` that `capacity` can never grant. Kinds `capacity` does not
/// know (`None`) are not limited.
pub(super) fn check_plan(
    plan: &ExecutionPlan,
    capacity: impl Fn(&ResourceKind) -> Option<f64>,
) -> Result<(), Vec<CapacityError>> {
    let mut errors = Vec::new();
    let run = ResourceRequest::from_requirements(plan.resources());
    let root = Location::root().field("resourceRequirements");
    for (kind, required) in run.amounts() {
        if let Some(capacity) = capacity(kind) {
            if !within(0.0, *required, capacity) {
                errors.push(CapacityError {
                    at: root.field(kind.as_str().to_owned()),
                    kind: kind.clone(),
                    required: *required,
                    held_by_run: 0.0,
                    capacity,
                });
            }
        }
    }
    for step in plan.steps() {
        let Some(needs) = step.resources() else {
            continue;
        };
        let at = Location::step(step.index(), Some(step.id())).field("resourceRequirements");
        for (kind, required) in ResourceRequest::from(needs).amounts() {
            let Some(capacity) = capacity(kind) else {
                continue;
            };
            let held_by_run = run.amount(kind);
            // A workflow that alone exceeds the pool is reported once, above.
            if within(0.0, held_by_run, capacity) && !within(held_by_run, *required, capacity) {
                errors.push(CapacityError {
                    at: at.field(kind.as_str().to_owned()),
                    kind: kind.clone(),
                    required: *required,
                    held_by_run,
                    capacity,
                });
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::ResourcePool;

    fn plan(json: &str) -> ExecutionPlan {
        ExecutionPlan::from_json(json).unwrap()
    }

    const STEPS: &str = r#"[
        {"id": "a", "type": "task", "agentCriteria": {"type": "X"}, "task": {"type": "T"},
         "resourceRequirements": {"cpu": 2, "memory": 100}},
        {"id": "b", "type": "task", "agentCriteria": {"type": "X"}, "task": {"type": "T"},
         "resourceRequirements": {"cpu": 1, "network": 5000}}]"#;

    #[test]
    fn steps_fit_with_what_their_run_holds_or_are_named() {
        let plan = plan(&format!(
            r#"{{"id": "w", "resourceRequirements": [{{"cpu": 1}}, {{"cpu": 0.5}}], "steps": {STEPS}}}"#
        ));
        let pool = ResourcePool::new([("cpu", 3.0), ("memory", 1000.0)]).unwrap();
        let errors = pool.check_plan(&plan).unwrap_err();
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        // b's network is not limited: the pool has no `network`.
        assert_eq!(
            lines,
            [
                "steps[0] (a).resourceRequirements.cpu: needs 2 `cpu` while its run holds 1.5 \
              (the workflow's resourceRequirements) but the pool has 3: the step could never run"
            ]
        );
        assert_eq!(errors[0].held_by_run, 1.5);
    }

    #[test]
    fn a_workflow_larger_than_the_pool_is_named_once() {
        let plan = plan(&format!(
            r#"{{"id": "w", "resourceRequirements": [{{"cpu": 2}}, {{"cpu": 2}}], "steps": {STEPS}}}"#
        ));
        let pool = ResourcePool::new([("cpu", 3.0)]).unwrap();
        let lines: Vec<String> = pool
            .check_plan(&plan)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                "resourceRequirements.cpu: the run holds 4 `cpu` for its whole length but the pool \
              has 3: the workflow could never run"
            ]
        );
    }

    #[test]
    fn a_pool_without_a_kind_does_not_limit_it() {
        let plan = plan(&format!(r#"{{"id": "w", "steps": {STEPS}}}"#));
        assert_eq!(ResourcePool::default().check_plan(&plan), Ok(()));
    }
}
