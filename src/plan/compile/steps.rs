//! The steps pass: step ids checked, then each step checked and compiled into a
//! [`PlanStep`].
//!
//! Ids come first: each must be a valid id and not repeat an earlier one; the first of
//! two equal ids keeps the index, and bindings and `fallbackStep` resolve against this
//! map. Then each step, in listed order: the fields and blocks its type requires and
//! allows, `condition` and `skipCondition`, `outputMapping` (binding strings only, which
//! may read the step's own output), its kind (`kinds.rs`), a decision step's
//! `decision` block (`choice.rs`), a `task` or `decision` step's `coordination` block
//! (`coordination.rs`), `timeout`, retry and recovery
//! (`recovery.rs`) and `resourceRequirements` (`resources.rs`). A step with a problem
//! yields no `PlanStep`, but all of its problems are reported. A step that compiles adds
//! an edge to its fallback step and one from each step it reads data from; the latter
//! are its `data_inputs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::Compiler;
use crate::definition::{
    BranchDefinition, DefinitionError, Location, StepDefinition, StepId, StepType,
    WorkflowDefinition,
};
use crate::expr::{Binding, Condition, Locate, Scope, StepLookup, Template};
use crate::plan::{Edge, PlanStep, StepKind, Until};

impl Compiler {
    /// Checks ids (syntax, uniqueness) and maps each to its first index.
    pub(super) fn step_ids<'d>(
        &mut self,
        definition: &'d WorkflowDefinition,
    ) -> HashMap<&'d str, usize> {
        let mut ids = HashMap::with_capacity(definition.steps.len());
        for (index, step) in definition.steps.iter().enumerate() {
            let at = || Location::step(index, Some(&step.id)).field("id");
            if let Some(reason) = StepId::problem(step.id.as_str()) {
                self.errors.push(DefinitionError::InvalidStepId {
                    at: at(),
                    id: step.id.to_string(),
                    reason,
                });
            } else if let Some(&first) = ids.get(step.id.as_str()) {
                self.errors.push(DefinitionError::DuplicateStepId {
                    at: at(),
                    id: step.id.clone(),
                    first,
                });
            } else {
                ids.insert(step.id.as_str(), index);
            }
        }
        ids
    }

    /// Checks and compiles the step at `index`; `None` if it has a problem.
    pub(super) fn step(
        &mut self,
        index: usize,
        step: &StepDefinition,
        definition: &WorkflowDefinition,
        lookup: StepLookup<'_>,
    ) -> Option<PlanStep> {
        let at = || Location::step(index, Some(&step.id));
        let scope = Scope::step(lookup, index);
        let errors_before = self.errors.len();
        self.step_shape(step, &at);

        let condition =
            self.condition_block(step.condition.as_ref(), &scope, &|| at().field("condition"));
        let skip_condition = self.condition_block(step.skip_condition.as_ref(), &scope, &|| {
            at().field("skipCondition")
        });
        let output_mapping = self.output_mapping(step, &scope, &at);
        let kind = self.step_kind(step, &at, &scope);
        let choice = match (&step.decision, step.step_type) {
            (Some(settings), StepType::Decision) => {
                self.choice(settings, &at, &scope, lookup).map(Arc::new)
            }
            _ => None,
        };
        let coordination = match (&step.coordination, step.step_type) {
            (Some(settings), StepType::Task | StepType::Decision) => {
                self.coordination(settings, &at).map(Arc::new)
            }
            _ => None,
        };
        self.timeout(step.timeout, &|| at().field("timeout"));
        let retry = self.retry(step, definition, &at);
        let recovery = self.recovery(step, definition, &at, lookup);
        let freshness = self.freshness(step, &at);
        let side_effects = self.side_effects(step, &at);
        let budget = self.budget(index, step, definition, &scope, &at);
        let quorum = self.approval_quorum(step, &at);
        let resources = step.resource_requirements.as_ref().and_then(|requirement| {
            self.resources(requirement, &|| at().field("resourceRequirements"))
        });

        if self.errors.len() > errors_before {
            return None;
        }
        let recovery = recovery?;
        let retry = retry.unless_disallowed(&recovery);
        let mut plan_step = PlanStep {
            index,
            id: step.id.clone(),
            name: step.name().to_owned(),
            kind: kind?,
            condition,
            skip_condition,
            timeout: step.timeout.map(Duration::from_millis),
            retry,
            recovery,
            output_mapping,
            optional: step.optional.unwrap_or(false),
            resources,
            data_inputs: Box::new([]),
            fallback_for: None,
            choice,
            coordination,
            freshness,
            side_effects,
            budget: budget.map(Arc::new),
            quorum: quorum.map(Arc::new),
        };
        self.step_edges(&mut plan_step);
        Some(plan_step)
    }

    /// Compiles `outputMapping`, whose values must be binding strings.
    fn output_mapping(
        &mut self,
        step: &StepDefinition,
        scope: &Scope<'_>,
        at: Locate<'_>,
    ) -> Option<Template> {
        let mapping = step.output_mapping.as_ref()?;
        let at = || at().field("outputMapping");
        for (name, value) in mapping {
            if !value.is_string() {
                self.errors.push(DefinitionError::InvalidType {
                    at: at().field(name.clone()),
                    found: crate::definition::json_kind(value).to_owned(),
                    expected: "a binding string such as \"${output.price}\"".to_owned(),
                });
            }
        }
        Template::compile_object(mapping, &scope.with_own_output(), &at, &mut self.errors)
    }

    /// Adds the edges a compiled step brings: one to its fallback step, and one from each
    /// step it reads data from (which become its `data_inputs`).
    fn step_edges(&mut self, plan_step: &mut PlanStep) {
        let index = plan_step.index;
        if let Some(fallback) = plan_step.recovery.fallback {
            // The fallback waits for this step: it runs in its place, or not at all.
            self.edges.push((
                index,
                fallback,
                Edge {
                    fallback: true,
                    ..Edge::default()
                },
            ));
        }
        let mut inputs: Vec<usize> = Vec::new();
        for_each_step_binding(plan_step, &mut |binding| {
            inputs.extend(binding.step_index())
        });
        inputs.sort_unstable();
        inputs.dedup();
        self.edges.extend(inputs.iter().map(|&from| {
            (
                from,
                index,
                Edge {
                    data: true,
                    ..Edge::default()
                },
            )
        }));
        plan_step.data_inputs = inputs.into_boxed_slice();
    }

    /// Which fields and blocks the step's type requires and allows.
    fn step_shape(&mut self, step: &StepDefinition, at: Locate<'_>) {
        self.agent_fields(step, at);
        if step.step_type == StepType::Condition {
            self.condition_fields(step, at);
        }
        self.type_blocks(step, at);
    }

    /// `agentCriteria` and `task`: required by the steps that call an agent,
    /// `agentCriteria` refused by the others.
    fn agent_fields(&mut self, step: &StepDefinition, at: Locate<'_>) {
        let kind = step.step_type;
        let name = kind.as_str();
        if kind.uses_agent() {
            if step.agent_criteria.is_none() {
                self.required(
                    at,
                    "agentCriteria",
                    format!("for {name} steps (which agent runs it)"),
                );
            }
            if step.task.is_none() {
                self.required(
                    at,
                    "task",
                    format!("for {name} steps (what the agent runs)"),
                );
            }
        } else {
            let why = match kind {
                StepType::HumanApproval => {
                    "human_approval steps wait for a person and call no agent"
                }
                _ => "condition steps evaluate branches and call no agent",
            };
            if step.agent_criteria.is_some() {
                self.not_allowed(at, "agentCriteria", why);
            }
        }
    }

    /// A condition step runs no task and has at least one branch, no two of them with
    /// the same name.
    fn condition_fields(&mut self, step: &StepDefinition, at: Locate<'_>) {
        if step.task.is_some() {
            self.not_allowed(
                at,
                "task",
                "condition steps evaluate branches and run no task",
            );
        }
        match &step.branches {
            None => self.required(at, "branches", "for condition steps".to_owned()),
            Some(branches) if branches.is_empty() => {
                self.errors.push(DefinitionError::InvalidValue {
                    at: at().field("branches"),
                    value: "[]".to_owned(),
                    reason: "a condition step needs at least one branch".to_owned(),
                })
            }
            Some(branches) => self.branch_names(branches, at),
        }
    }

    /// Reports each branch whose name an earlier branch already has.
    fn branch_names(&mut self, branches: &[BranchDefinition], at: Locate<'_>) {
        for (index, branch) in branches.iter().enumerate() {
            if branches[..index]
                .iter()
                .any(|earlier| earlier.name == branch.name)
            {
                self.errors.push(DefinitionError::InvalidValue {
                    at: at().field("branches").index(index).field("name"),
                    value: format!("{:?}", branch.name),
                    reason: "two branches have this name".to_owned(),
                });
            }
        }
    }

    /// Refuses the blocks that belong to another step type.
    fn type_blocks(&mut self, step: &StepDefinition, at: Locate<'_>) {
        let kind = step.step_type;
        let name = kind.as_str();
        let blocks: [(&'static str, bool, StepType); 6] = [
            ("parallel", step.parallel.is_some(), StepType::Parallel),
            ("loop", step.loop_settings.is_some(), StepType::Loop),
            ("branches", step.branches.is_some(), StepType::Condition),
            ("default", step.default.is_some(), StepType::Condition),
            ("approval", step.approval.is_some(), StepType::HumanApproval),
            ("decision", step.decision.is_some(), StepType::Decision),
        ];
        if step.coordination.is_some() && !matches!(kind, StepType::Task | StepType::Decision) {
            self.not_allowed(
                at,
                "coordination",
                &format!("only task and decision steps ask several agents; this is a {name} step"),
            );
        }
        for (field, present, owner) in blocks {
            if present && kind != owner {
                self.not_allowed(
                    at,
                    field,
                    &format!(
                        "only {} steps have it; this is a {name} step",
                        owner.as_str()
                    ),
                );
            }
        }
    }
}

/// Calls `visit` with every binding a compiled step reads.
pub(super) fn for_each_step_binding<'s>(step: &'s PlanStep, visit: &mut dyn FnMut(&'s Binding)) {
    let approval = match step.kind() {
        StepKind::HumanApproval { parameters, .. } => Some(parameters),
        _ => None,
    };
    let templates = step
        .agent_task()
        .map(|task| &task.parameters)
        .into_iter()
        .chain(approval);
    // A decision's option parameters and context key are resolved when the step
    // starts, like its task's parameters; its reward is read when the run ends and is
    // not a binding of the step.
    let choice = step.choice().into_iter().flat_map(|choice| {
        (0..choice.options().len())
            .filter_map(|index| choice.option_parameters(index))
            .chain(choice.context_key())
    });
    let budget = step.budget().map(|budget| budget.template());
    for template in templates
        .chain(choice)
        .chain(step.output_mapping())
        .chain(budget)
    {
        template.for_each_binding(visit);
    }
    let own = step.condition().into_iter().chain(step.skip_condition());
    let kind_conditions: Box<dyn Iterator<Item = &Condition>> = match step.kind() {
        StepKind::Loop {
            until: Until::Condition(until),
            ..
        } => Box::new(std::iter::once(until)),
        StepKind::Condition { branches, .. } => {
            Box::new(branches.iter().map(|branch| &branch.when))
        }
        _ => Box::new(std::iter::empty()),
    };
    for condition in own.chain(kind_conditions) {
        condition.bindings().iter().for_each(&mut *visit);
    }
}
