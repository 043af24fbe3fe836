//! The adaptations pass: the workflow's `adaptations` checked and compiled into
//! [`Adaptation`]s.
//!
//! Checked, every problem at once, each located under `adaptations[i] (id)`: `id` is not
//! empty and no two adaptations share one; `when` compiles as a condition without
//! bindings (it reads the host context and the engine's built-in names, which are
//! resolved here once); `changes` is not empty; each change's `stepId` names a step that
//! is not a `condition` step, and the change sets at least one of `parameters`,
//! `timeout`, `timeoutFactor`, `retryPolicy`, `skip: true`; `parameters` are literal
//! values (no `${…}`) nested at most [`MAX_VALUE_DEPTH`] deep; `timeout` is at least 1 ms
//! and at most [`MAX_DURATION_MS`](crate::plan::MAX_DURATION_MS); `timeoutFactor` is
//! finite and greater than 0; `retryPolicy` is checked as a step's is and resolved over
//! the workflow's `errorHandling.retryPolicy` and the defaults. A rule added at run time
//! ([`ExecutionPlan::compile_adaptation`](crate::plan::ExecutionPlan::compile_adaptation))
//! goes through the same checks.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::Compiler;
use crate::definition::{
    AdaptationDefinition, ChangeDefinition, DefinitionError, Location, Quoted, StepType,
    WorkflowDefinition,
};
use crate::expr::{Condition, Scope};
use crate::plan::{Adaptation, Builtin, Change};
use crate::run::MAX_VALUE_DEPTH;

impl Compiler {
    /// Compiles the workflow's adaptations, in listed order; `None` for each that has a
    /// problem.
    pub(super) fn adaptations(
        &mut self,
        definition: &WorkflowDefinition,
    ) -> Vec<Option<Adaptation>> {
        let rules = definition.adaptations.as_deref().unwrap_or_default();
        rules
            .iter()
            .enumerate()
            .map(|(index, rule)| {
                let earlier = rules
                    .iter()
                    .take(index)
                    .position(|other| other.id == rule.id);
                self.adaptation(index, rule, earlier, definition)
            })
            .collect()
    }

    /// Compiles adaptation `rule`, listed at `index`; `duplicate_of`: the index of an
    /// earlier adaptation with the same id, if there is one.
    pub(super) fn adaptation(
        &mut self,
        index: usize,
        rule: &AdaptationDefinition,
        duplicate_of: Option<usize>,
        definition: &WorkflowDefinition,
    ) -> Option<Adaptation> {
        let errors_before = self.errors.len();
        let at = || Location::adaptation(index, Some(&rule.id));
        if rule.id.is_empty() {
            self.invalid(at().field("id"), "", "an adaptation's id is not empty");
        } else if let Some(first) = duplicate_of {
            self.invalid(
                at().field("id"),
                &rule.id,
                &format!("adaptations[{first}] already has this id"),
            );
        }
        let when = Condition::compile(
            &escape_builtin_names(&rule.when),
            &Scope::adaptation(),
            &|| at().field("when"),
            &mut self.errors,
        );
        if rule.changes.is_empty() {
            self.invalid(
                at().field("changes"),
                "[]",
                "an adaptation changes at least one step",
            );
        }
        let changes: Vec<Option<Change>> = rule
            .changes
            .iter()
            .enumerate()
            .map(|(position, change)| {
                self.change(change, definition, &|| {
                    at().field("changes").index(position)
                })
            })
            .collect();
        if self.errors.len() > errors_before {
            return None;
        }
        let when = when?;
        let builtins = when
            .variables()
            .into_iter()
            .filter_map(|name| {
                let builtin = Builtin::parse(&unescape_builtin_name(&name))?;
                Some((name.into_boxed_str(), builtin))
            })
            .collect();
        Some(Adaptation {
            id: rule.id.clone(),
            when,
            builtins,
            changes: changes.into_iter().collect::<Option<_>>()?,
            definition: Arc::new(rule.clone()),
        })
    }

    /// Checks and resolves one change; `None` when it has a problem.
    fn change(
        &mut self,
        change: &ChangeDefinition,
        definition: &WorkflowDefinition,
        at: &dyn Fn() -> Location,
    ) -> Option<Change> {
        let errors_before = self.errors.len();
        let step_at = || at().field("stepId");
        match definition
            .steps
            .iter()
            .find(|step| step.id == change.step_id)
        {
            None => self.errors.push(DefinitionError::UnknownStep {
                at: step_at(),
                step: change.step_id.as_str().to_owned(),
            }),
            Some(step) if step.step_type == StepType::Condition => self.invalid(
                step_at(),
                change.step_id.as_str(),
                "a `condition` step starts no work to change; change the steps it routes to",
            ),
            Some(_) => {}
        }
        let skip = change.skip == Some(true);
        if change.parameters.is_none()
            && change.timeout.is_none()
            && change.timeout_factor.is_none()
            && change.retry_policy.is_none()
            && !skip
        {
            self.invalid(
                at(),
                &format!("{{\"stepId\": \"{}\"}}", Quoted(change.step_id.as_str())),
                "a change sets at least one of `parameters`, `timeout`, `timeoutFactor`, `retryPolicy`, `skip: true`",
            );
        }
        if let Some(parameters) = &change.parameters {
            self.literal_parameters(parameters, &|| at().field("parameters"));
        }
        self.timeout(change.timeout, &|| at().field("timeout"));
        if let Some(factor) = change.timeout_factor {
            if !(factor.is_finite() && factor > 0.0) {
                self.invalid(
                    at().field("timeoutFactor"),
                    &factor.to_string(),
                    "must be a finite number greater than 0",
                );
            }
        }
        let retry = change
            .retry_policy
            .as_ref()
            .map(|policy| self.replacing_retry(policy, definition, &|| at().field("retryPolicy")));
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Change {
            step_id: change.step_id.clone(),
            parameters: change.parameters.clone(),
            timeout: change.timeout.map(Duration::from_millis),
            timeout_factor: change.timeout_factor,
            retry,
            skip,
        })
    }

    /// Checks that a change's parameters are literal values, not too deep.
    fn literal_parameters(&mut self, parameters: &Map<String, Value>, at: &dyn Fn() -> Location) {
        let depth = crate::run::value_depth(&Value::Object(parameters.clone()), MAX_VALUE_DEPTH);
        if depth > MAX_VALUE_DEPTH {
            self.invalid(
                at(),
                "{…}",
                &format!("nests more than {MAX_VALUE_DEPTH} levels deep"),
            );
            return;
        }
        let mut pending: Vec<(Location, &Value)> = parameters
            .iter()
            .map(|(key, value)| (at().field(key.clone()), value))
            .collect();
        while let Some((here, value)) = pending.pop() {
            match value {
                Value::String(text) if text.contains("${") => {
                    self.errors.push(DefinitionError::InvalidValue {
                        at: here,
                        value: text.clone(),
                        reason: "adaptation parameters are literal values; bindings are not allowed here".to_owned(),
                    });
                }
                Value::Array(items) => pending.extend(
                    items
                        .iter()
                        .enumerate()
                        .map(|(index, item)| (here.index(index), item)),
                ),
                Value::Object(fields) => pending.extend(
                    fields
                        .iter()
                        .map(|(key, field)| (here.field(key.clone()), field)),
                ),
                _ => {}
            }
        }
    }
}

/// What a hyphen in a built-in name's subject becomes in the expression handed to the
/// condition compiler (an identifier may not hold `-`, which would read as a minus).
const HYPHEN: &str = "__dash__";

/// `when` with the hyphens inside built-in names (`steps.risk-assessment.p95Ms`,
/// `agents.RISK-EU.available`) escaped, so that the name stays one variable: a
/// built-in name is read whole, from `agents.`, `steps.` or `resources.` to its field.
fn escape_builtin_names(when: &str) -> std::borrow::Cow<'_, str> {
    const HEADS: [&str; 3] = ["agents.", "steps.", "resources."];
    const FIELDS: [&str; 4] = ["available", "failureRate", "p95Ms", "utilization"];
    if !when.contains('-') {
        return std::borrow::Cow::Borrowed(when);
    }
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
    let mut out = String::with_capacity(when.len() + 16);
    let mut rest = when;
    let mut previous: Option<char> = None;
    while let Some(c) = rest.chars().next() {
        let starts_name = !previous.is_some_and(is_word);
        let head = HEADS
            .iter()
            .find(|head| starts_name && rest.starts_with(**head));
        if let Some(head) = head {
            let after = &rest[head.len()..];
            let subject_len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(after.len());
            let (subject, tail) = after.split_at(subject_len);
            let field_len = tail
                .strip_prefix('.')
                .map(|field| {
                    field
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(field.len())
                })
                .unwrap_or(0);
            let field = tail.get(1..=field_len).unwrap_or("");
            if subject.contains('-') && FIELDS.contains(&field) {
                out.push_str(head);
                out.push_str(&subject.replace('-', HYPHEN));
                out.push('.');
                out.push_str(field);
                rest = &tail[1 + field_len..];
                previous = field.chars().last();
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
        previous = Some(c);
    }
    std::borrow::Cow::Owned(out)
}

/// A variable's name with the hyphens [`escape_builtin_names`] escaped restored.
fn unescape_builtin_name(name: &str) -> String {
    name.replace(HYPHEN, "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyphenated_built_in_names_stay_one_variable() {
        assert_eq!(
            escape_builtin_names(
                "steps.risk-assessment.p95Ms > 800 && agents.RISK-EU.available == 0"
            ),
            "steps.risk__dash__assessment.p95Ms > 800 && agents.RISK__dash__EU.available == 0"
        );
        assert_eq!(
            unescape_builtin_name("steps.risk__dash__assessment.p95Ms"),
            "steps.risk-assessment.p95Ms"
        );
    }

    #[test]
    fn other_hyphens_are_left_as_they_are() {
        for when in [
            "volatility.level - 0.5 > 0",
            "steps.a-b.latency > 1",
            "steps.a - b.p95Ms > 1",
        ] {
            assert_eq!(escape_builtin_names(when), when);
        }
    }
}
