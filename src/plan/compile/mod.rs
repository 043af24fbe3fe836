//! Validation and compilation of a definition into an [`ExecutionPlan`].
//!
//! One `Compiler` walks the definition pass by pass and collects every problem it finds
//! instead of stopping at the first. The passes run in this order, which is the order
//! their problems are reported in:
//!
//! 1. step ids: syntax and uniqueness, mapped to their index (`steps.rs`);
//! 2. each step, in listed order: its fields for its type, conditions, output mapping,
//!    its kind (`kinds.rs`), a decision step's `decision` block (`choice.rs`), a
//!    `coordination` block (`coordination.rs`), timeout, retry and recovery (`recovery.rs`), resource
//!    requirements (`resources.rs`); a step that compiles adds its fallback and data
//!    edges (`steps.rs`);
//! 3. `dependencies`, resolved to edges (`graph.rs`);
//! 4. the workflow's `conditions`, `errorHandling`, `timeout`, `tags` and `sensitive`
//!    field names (`workflow.rs`) and its
//!    `resourceRequirements` (`resources.rs`);
//! 5. `triggers` (`triggers.rs`), then `adaptations` (`adapt.rs`);
//! 6. at least one step (`workflow.rs`); edges from listed order when `dependencies` is
//!    absent, the graph, its order and its cycles (`graph.rs`);
//! 7. only when all of that is valid: each fallback step marked with the step it stands
//!    in for (`recovery.rs`).
//!
//! A plan is built only when no pass found a problem; its input bindings (every distinct
//! `${input…}`, in order of first use) and execution policy are gathered last.

mod adapt;
mod choice;
mod coordination;
mod graph;
mod kinds;
mod recovery;
mod resources;
mod safety;
mod steps;
mod triggers;
mod workflow;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::{Edge, ExecutionPlan, MAX_DURATION_MS, PlanStep};
use crate::definition::{
    ConditionDefinition, DefinitionError, Location, Partial, StepId, ValidationErrors,
    WorkflowDefinition,
};
use crate::expr::{Binding, Condition, Locate, Scope, Source};

/// Validates and compiles a definition: the plan, or every problem found.
pub(super) fn compile(
    definition: Arc<WorkflowDefinition>,
) -> Result<ExecutionPlan, ValidationErrors> {
    compile_or_problems(&definition).map_err(ValidationErrors::new)
}

/// Validates and compiles a definition: the plan, or every problem found (not yet
/// bounded to [`ValidationErrors::MAX_PROBLEMS`]).
fn compile_or_problems(
    definition: &Arc<WorkflowDefinition>,
) -> Result<ExecutionPlan, Vec<DefinitionError>> {
    let mut compiler = Compiler {
        errors: Vec::new(),
        edges: Vec::new(),
    };
    match compiler.compile(definition) {
        Some(plan) if compiler.errors.is_empty() => Ok(plan),
        _ => Err(compiler.errors),
    }
}

/// The problems of a partially loaded definition: the structural ones, then the
/// semantic ones its loaded parts have (renumbered to the file's step indices, and
/// without complaints about the steps that did not load).
pub(super) fn with_structural_problems(partial: Partial) -> ValidationErrors {
    let Partial {
        definition,
        step_origin,
        lost_steps,
        lost_step_ids,
        mut errors,
    } = partial;
    let steps_at = Location::root().field("steps");
    // A set: a file can lose many steps and name them many times.
    let lost_step_ids: HashSet<&str> = lost_step_ids.iter().map(String::as_str).collect();
    if let Err(semantic) = compile_or_problems(&Arc::new(definition)) {
        for mut error in semantic {
            let about_lost_step = match &error {
                DefinitionError::UnknownStep { step, .. }
                | DefinitionError::UnknownBindingStep { step, .. } => {
                    lost_step_ids.contains(step.as_str())
                }
                DefinitionError::InvalidValue { at, .. } => lost_steps > 0 && *at == steps_at,
                _ => false,
            };
            if !about_lost_step {
                error.renumber_steps(&step_origin);
                errors.push(error);
            }
        }
    }
    ValidationErrors::new(errors)
}

/// One compilation: the problems found so far and the edges the passes have added.
struct Compiler {
    /// Every problem found, in the order the passes found them.
    errors: Vec<DefinitionError>,
    /// (from, to, why); merged per pair when the graph is built.
    edges: Vec<(usize, usize, Edge)>,
}

impl Compiler {
    /// Runs the passes in order (see the module docs); builds the plan if none of them
    /// found a problem.
    fn compile(&mut self, definition: &Arc<WorkflowDefinition>) -> Option<ExecutionPlan> {
        let ids = self.step_ids(definition);
        let lookup = |id: &str| {
            let index = *ids.get(id)?;
            Some((index, definition.steps.get(index)?.id.clone()))
        };
        let steps: Vec<Option<PlanStep>> = definition
            .steps
            .iter()
            .enumerate()
            .map(|(index, step)| self.step(index, step, definition, &lookup))
            .collect();
        self.dependencies(definition, &lookup);
        let conditions = self.workflow_conditions(definition);
        self.workflow_error_handling(definition, &lookup);
        self.workflow_timeout(definition);
        self.workflow_tags(definition);
        self.workflow_sensitive(definition);
        let resources = self.workflow_resources(definition);
        let triggers = self.triggers(definition);
        let adaptations = self.adaptations(definition);
        let budgets = self.budgets(definition);
        self.at_least_one_step(definition);
        self.listed_order(definition);
        let graph = self.graph(definition);
        let order = self.order(&graph, definition);

        if !self.errors.is_empty() {
            return None;
        }
        let mut steps: Vec<PlanStep> = steps.into_iter().collect::<Option<_>>()?;
        self.fallbacks(&mut steps, definition);
        self.fallbacks_can_run(&steps, &graph, definition);
        if !self.errors.is_empty() {
            return None;
        }
        let conditions: Vec<Condition> = conditions.into_iter().collect::<Option<_>>()?;
        let inputs = input_bindings(&steps, &conditions);
        Some(ExecutionPlan {
            definition: Arc::clone(definition),
            index: ids
                .iter()
                .map(|(id, index)| (StepId::new(id), *index))
                .collect(),
            steps: steps.into_boxed_slice(),
            graph,
            order: order.into_boxed_slice(),
            conditions: conditions.into_boxed_slice(),
            policy: workflow::execution_policy(definition),
            timeout: definition.timeout.map(Duration::from_millis),
            resources: resources.into_boxed_slice(),
            triggers: triggers
                .into_iter()
                .collect::<Option<Vec<_>>>()?
                .into_boxed_slice(),
            input_bindings: inputs.into_boxed_slice(),
            adaptations: adaptations
                .into_iter()
                .map(|adaptation| adaptation.map(Arc::new))
                .collect::<Option<Vec<_>>>()?
                .into_boxed_slice(),
            budgets,
            sensitive: Arc::new(super::Sensitive::new(
                definition.sensitive.as_deref().unwrap_or_default(),
            )),
        })
    }

    /// Compiles an optional `{"expression": …}` block that `at` locates; `None` when
    /// there is no block or the expression has a problem (pushed to `errors`).
    fn condition_block(
        &mut self,
        block: Option<&ConditionDefinition>,
        scope: &Scope<'_>,
        at: Locate<'_>,
    ) -> Option<Condition> {
        let block = block?;
        let at = || at().field("expression");
        Condition::compile(&block.expression, scope, &at, &mut self.errors)
    }

    /// Checks a timeout in milliseconds, if there is one: at least 1 and at most
    /// [`MAX_DURATION_MS`].
    fn timeout(&mut self, millis: Option<u64>, at: Locate<'_>) {
        if millis == Some(0) {
            self.invalid(at(), "0", "a timeout is at least 1 ms");
        }
        self.duration(millis, at);
    }

    /// Checks a duration in milliseconds, if there is one: at most [`MAX_DURATION_MS`].
    fn duration(&mut self, millis: Option<u64>, at: Locate<'_>) {
        if let Some(millis) = millis.filter(|millis| *millis > MAX_DURATION_MS) {
            self.invalid(
                at(),
                &millis.to_string(),
                &format!("a duration is at most {MAX_DURATION_MS} ms (100 years)"),
            );
        }
    }

    /// Reports a missing field.
    fn required(&mut self, at: Locate<'_>, field: &'static str, reason: String) {
        self.errors.push(DefinitionError::Required {
            at: at(),
            field,
            reason,
        });
    }

    /// Reports a field that may not be set here.
    fn not_allowed(&mut self, at: Locate<'_>, field: &'static str, reason: &str) {
        self.errors.push(DefinitionError::NotAllowed {
            at: at(),
            field,
            reason: reason.to_owned(),
        });
    }

    /// Reports a value that is out of range.
    fn invalid(&mut self, at: Location, value: &str, reason: &str) {
        self.errors.push(DefinitionError::InvalidValue {
            at,
            value: value.to_owned(),
            reason: reason.to_owned(),
        });
    }
}

/// Compiles `rule`, one more adaptation of `definition` (listed after its own), as the
/// adaptations pass would.
pub(super) fn adaptation(
    definition: &WorkflowDefinition,
    rule: &crate::definition::AdaptationDefinition,
    others: &[Arc<super::Adaptation>],
) -> Result<super::Adaptation, ValidationErrors> {
    let mut compiler = Compiler {
        errors: Vec::new(),
        edges: Vec::new(),
    };
    let duplicate_of = others.iter().position(|other| other.id() == rule.id);
    match compiler.adaptation(others.len(), rule, duplicate_of, definition) {
        Some(adaptation) if compiler.errors.is_empty() => Ok(adaptation),
        _ => Err(ValidationErrors::new(compiler.errors)),
    }
}

/// Every distinct `${input…}` binding of the steps and the workflow's conditions, in
/// order of first use.
fn input_bindings(steps: &[PlanStep], conditions: &[Condition]) -> Vec<Binding> {
    let is_input = |binding: &Binding| matches!(binding.source(), Source::Input);
    let mut all: Vec<&Binding> = Vec::new();
    for step in steps {
        steps::for_each_step_binding(step, &mut |binding| {
            if is_input(binding) {
                all.push(binding);
            }
        });
    }
    all.extend(
        conditions
            .iter()
            .flat_map(Condition::bindings)
            .filter(|b| is_input(b)),
    );
    let mut seen: HashSet<&str> = HashSet::with_capacity(all.len());
    all.into_iter()
        .filter(|b| seen.insert(b.text()))
        .cloned()
        .collect()
}
