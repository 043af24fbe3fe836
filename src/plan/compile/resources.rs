//! Resource requirements: the workflow's `resourceRequirements` and each step's, checked
//! and resolved into [`Resources`].
//!
//! `cpu`, `memory` and `network` must be finite and not negative; an absent amount is 0,
//! and so is an absent `priority`. A requirement with a problem yields nothing. Whether a
//! pool can ever grant a requirement is not checked here: that depends on the pool
//! (`ResourcePool::check_plan`).

use super::Compiler;
use crate::definition::{Location, ResourceRequirements, WorkflowDefinition};
use crate::expr::Locate;
use crate::plan::Resources;

impl Compiler {
    /// The workflow's requirements that are valid, in listed order.
    pub(super) fn workflow_resources(&mut self, definition: &WorkflowDefinition) -> Vec<Resources> {
        definition
            .resource_requirements
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(index, requirement)| {
                self.resources(requirement, &|| {
                    Location::root().field("resourceRequirements").index(index)
                })
            })
            .collect()
    }

    /// Checks one requirement; `None` if an amount is invalid.
    pub(super) fn resources(
        &mut self,
        requirement: &ResourceRequirements,
        at: Locate<'_>,
    ) -> Option<Resources> {
        let mut ok = true;
        for (name, value) in [
            ("cpu", requirement.cpu),
            ("memory", requirement.memory),
            ("network", requirement.network),
        ] {
            if let Some(value) = value {
                if !(value.is_finite() && value >= 0.0) {
                    self.invalid(
                        at().field(name),
                        &value.to_string(),
                        "amounts are finite and not negative",
                    );
                    ok = false;
                }
            }
        }
        ok.then(|| Resources {
            cpu: requirement.cpu.unwrap_or(0.0),
            memory: requirement.memory.unwrap_or(0.0),
            network: requirement.network.unwrap_or(0.0),
            priority: requirement.priority.unwrap_or(0),
        })
    }
}
