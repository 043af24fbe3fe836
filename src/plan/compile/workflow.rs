//! The workflow's own fields: `conditions`, `errorHandling`, `timeout` and `steps`
//! checked, and the execution policy resolved.
//!
//! Workflow conditions are checked before any step runs, so they are compiled against
//! the run's input only (`${input…}`). The workflow's `errorHandling` is checked as a
//! step's is (`recovery.rs`), but `fallbackStep` belongs to steps and is refused here.
//! A timeout is at least 1 ms and at most [`MAX_DURATION_MS`](crate::plan::MAX_DURATION_MS),
//! and a workflow has at least one step. Absent
//! `concurrency` and `failureHandling` take their defaults (`PARALLEL`,
//! `STOP_ON_FAILURE`).

use super::Compiler;
use crate::definition::{DefinitionError, Location, WorkflowDefinition};
use crate::expr::{Condition, Scope, StepLookup};
use crate::plan::ExecutionPolicy;

impl Compiler {
    /// Compiles the workflow's conditions, in listed order; `None` for each that has a
    /// problem.
    pub(super) fn workflow_conditions(
        &mut self,
        definition: &WorkflowDefinition,
    ) -> Vec<Option<Condition>> {
        definition
            .conditions
            .iter()
            .flatten()
            .enumerate()
            .map(|(index, condition)| {
                self.condition_block(Some(condition), &Scope::workflow(), &|| {
                    Location::root().field("conditions").index(index)
                })
            })
            .collect()
    }

    /// Checks the workflow's `errorHandling`, which may not name a fallback step.
    pub(super) fn workflow_error_handling(
        &mut self,
        definition: &WorkflowDefinition,
        lookup: StepLookup<'_>,
    ) {
        let Some(handling) = &definition.error_handling else {
            return;
        };
        let at = || Location::root().field("errorHandling");
        if handling.fallback_step.is_some() {
            self.errors.push(DefinitionError::NotAllowed {
                at: at(),
                field: "fallbackStep",
                reason: "a fallback step is set per step, in the step's `errorHandling`".to_owned(),
            });
        }
        self.error_handling(handling, &at, None, lookup);
    }

    /// Checks the workflow's `timeout`.
    pub(super) fn workflow_timeout(&mut self, definition: &WorkflowDefinition) {
        self.timeout(definition.timeout, &|| Location::root().field("timeout"));
    }

    /// Checks the workflow's `tags`: each not empty, at most
    /// [`MAX_TAG_BYTES`](crate::safety::kill::MAX_TAG_BYTES) bytes, listed once.
    pub(super) fn workflow_tags(&mut self, definition: &WorkflowDefinition) {
        let tags = definition.tags.as_deref().unwrap_or_default();
        self.names("tags", tags, "tag", crate::safety::kill::MAX_TAG_BYTES);
    }

    /// Checks the workflow's `sensitive` field names: each not empty, at most
    /// [`MAX_SENSITIVE_NAME_BYTES`](crate::plan::MAX_SENSITIVE_NAME_BYTES) bytes, listed
    /// once.
    pub(super) fn workflow_sensitive(&mut self, definition: &WorkflowDefinition) {
        let names = definition.sensitive.as_deref().unwrap_or_default();
        let most = crate::plan::MAX_SENSITIVE_NAME_BYTES;
        self.names("sensitive", names, "sensitive field name", most);
    }

    /// Checks the list of names of field `field` (a `what` each): each not empty, at
    /// most `max_bytes` bytes, listed once.
    /// O(names): duplicates are found with a set, not by comparing every pair.
    fn names(&mut self, field: &'static str, names: &[String], what: &str, max_bytes: usize) {
        let mut seen = std::collections::HashSet::with_capacity(names.len());
        for (index, name) in names.iter().enumerate() {
            let reason = if name.is_empty() {
                format!("a {what} is not empty")
            } else if name.len() > max_bytes {
                format!("a {what} is at most {max_bytes} bytes")
            } else if !seen.insert(name.as_str()) {
                format!("the {what} is listed twice")
            } else {
                continue;
            };
            self.errors.push(DefinitionError::InvalidValue {
                at: Location::root().field(field).index(index),
                value: name.chars().take(80).collect(),
                reason,
            });
        }
    }

    /// Reports a workflow without steps.
    pub(super) fn at_least_one_step(&mut self, definition: &WorkflowDefinition) {
        if definition.steps.is_empty() {
            self.errors.push(DefinitionError::InvalidValue {
                at: Location::root().field("steps"),
                value: "[]".to_owned(),
                reason: "a workflow needs at least one step".to_owned(),
            });
        }
    }
}

/// The workflow's execution policy, defaults filled in.
pub(super) fn execution_policy(definition: &WorkflowDefinition) -> ExecutionPolicy {
    let policy = definition.execution_policy.as_ref();
    ExecutionPolicy {
        concurrency: policy
            .and_then(|policy| policy.concurrency)
            .unwrap_or_default(),
        failure_handling: policy
            .and_then(|policy| policy.failure_handling)
            .unwrap_or_default(),
    }
}
