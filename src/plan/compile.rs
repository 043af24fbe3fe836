//! Validation and compilation of a definition into an [`ExecutionPlan`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use super::trigger::{CronError, Schedule, Trigger, TriggerKind};
use super::{
    AgentTask, Branch, Edge, ExecutionPlan, ExecutionPolicy, PlanStep, Recovery, Resources, Retry,
    StepKind, Until,
};
use crate::definition::{
    DefinitionError, ErrorHandling, Location, Partial, RecoveryStrategy, ResourceRequirements,
    RetryPolicy, StepDefinition, StepId, StepType, TriggerDefinition, TriggerType,
    ValidationErrors, WorkflowDefinition,
};
use crate::expr::{Binding, Condition, Locate, Scope, Source, StepLookup, Template};

/// The strategies allowed when `errorHandling` lists none: all but `ROLLBACK`, which
/// runs completed steps again (a workflow opts in to it by listing it).
const DEFAULT_STRATEGIES: [RecoveryStrategy; 4] = [
    RecoveryStrategy::Retry,
    RecoveryStrategy::Skip,
    RecoveryStrategy::Substitute,
    RecoveryStrategy::AlternativePath,
];

pub(super) fn compile(
    definition: Arc<WorkflowDefinition>,
) -> Result<ExecutionPlan, ValidationErrors> {
    let mut compiler = Compiler {
        errors: Vec::new(),
        edges: Vec::new(),
    };
    match compiler.compile(&definition) {
        Some(plan) if compiler.errors.is_empty() => Ok(plan),
        _ => Err(ValidationErrors::new(compiler.errors)),
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
    if let Err(semantic) = compile(Arc::new(definition)) {
        for mut error in semantic {
            let about_lost_step = match &error {
                DefinitionError::UnknownStep { step, .. }
                | DefinitionError::UnknownBindingStep { step, .. } => lost_step_ids.contains(step),
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

struct Compiler {
    errors: Vec<DefinitionError>,
    /// (from, to, why); merged per pair when the graph is built.
    edges: Vec<(usize, usize, Edge)>,
}

impl Compiler {
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
        let at = Location::root;
        let conditions: Vec<Option<Condition>> = definition
            .conditions
            .iter()
            .flatten()
            .enumerate()
            .map(|(index, condition)| {
                let at = || at().field("conditions").index(index).field("expression");
                Condition::compile(
                    &condition.expression,
                    &Scope::workflow(),
                    &at,
                    &mut self.errors,
                )
            })
            .collect();
        if let Some(handling) = &definition.error_handling {
            let at = || at().field("errorHandling");
            if handling.fallback_step.is_some() {
                self.errors.push(DefinitionError::NotAllowed {
                    at: at(),
                    field: "fallbackStep",
                    reason: "a fallback step is set per step, in the step's `errorHandling`"
                        .to_owned(),
                });
            }
            self.error_handling(handling, &at, None, &lookup);
        }
        if let Some(timeout) = definition.timeout {
            self.positive(timeout, &|| at().field("timeout"));
        }
        let resources: Vec<Resources> = definition
            .resource_requirements
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(index, requirement)| {
                self.resources(requirement, &|| {
                    at().field("resourceRequirements").index(index)
                })
            })
            .collect();
        let triggers: Vec<Option<Trigger>> = definition
            .triggers
            .iter()
            .flatten()
            .enumerate()
            .map(|(index, trigger)| self.trigger(index, trigger))
            .collect();
        if definition.steps.is_empty() {
            self.errors.push(DefinitionError::InvalidValue {
                at: at().field("steps"),
                value: "[]".to_owned(),
                reason: "a workflow needs at least one step".to_owned(),
            });
        }

        if definition.dependencies.is_none() {
            for index in 1..definition.steps.len() {
                self.edges.push((
                    index - 1,
                    index,
                    Edge {
                        order: true,
                        ..Edge::default()
                    },
                ));
            }
        }
        let graph = self.graph(definition);
        let order = self.order(&graph, definition);

        if !self.errors.is_empty() {
            return None;
        }
        let mut steps: Vec<PlanStep> = steps.into_iter().collect::<Option<_>>()?;
        self.fallbacks(&mut steps, definition);
        if !self.errors.is_empty() {
            return None;
        }
        let conditions: Vec<Condition> = conditions.into_iter().collect::<Option<_>>()?;
        // Every distinct `${input…}` binding, in order of first use.
        let is_input = |binding: &Binding| matches!(binding.source(), Source::Input);
        let mut all: Vec<&Binding> = Vec::new();
        for step in &steps {
            for_each_step_binding(step, &mut |binding| {
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
        let inputs: Vec<Binding> = all
            .into_iter()
            .filter(|b| seen.insert(b.text()))
            .cloned()
            .collect();
        let policy = definition.execution_policy.as_ref();
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
            policy: ExecutionPolicy {
                concurrency: policy
                    .and_then(|policy| policy.concurrency)
                    .unwrap_or_default(),
                failure_handling: policy
                    .and_then(|policy| policy.failure_handling)
                    .unwrap_or_default(),
            },
            timeout: definition.timeout.map(Duration::from_millis),
            resources: resources.into_boxed_slice(),
            triggers: triggers
                .into_iter()
                .collect::<Option<Vec<_>>>()?
                .into_boxed_slice(),
            input_bindings: inputs.into_boxed_slice(),
        })
    }

    /// Checks ids (syntax, uniqueness) and maps each to its first index.
    fn step_ids<'d>(&mut self, definition: &'d WorkflowDefinition) -> HashMap<&'d str, usize> {
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

    fn step(
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

        let condition = step.condition.as_ref().and_then(|condition| {
            let at = || at().field("condition").field("expression");
            Condition::compile(&condition.expression, &scope, &at, &mut self.errors)
        });
        let skip_condition = step.skip_condition.as_ref().and_then(|condition| {
            let at = || at().field("skipCondition").field("expression");
            Condition::compile(&condition.expression, &scope, &at, &mut self.errors)
        });
        let output_mapping = step.output_mapping.as_ref().and_then(|mapping| {
            let at = || at().field("outputMapping");
            for (name, value) in mapping {
                if !value.is_string() {
                    self.errors.push(DefinitionError::InvalidType {
                        at: at().field(name.clone()),
                        found: json_kind(value).to_owned(),
                        expected: "a binding string such as \"${output.price}\"".to_owned(),
                    });
                }
            }
            Template::compile_object(
                mapping,
                &scope.with_own_output(),
                &|| at(),
                &mut self.errors,
            )
        });
        let kind = self.step_kind(step, &at, &scope);
        if let Some(timeout) = step.timeout {
            self.positive(timeout, &|| at().field("timeout"));
        }
        let retry = self.retry(step, definition, &at);
        let recovery = self.recovery(step, definition, &at, lookup);
        let resources = step.resource_requirements.as_ref().and_then(|requirement| {
            self.resources(requirement, &|| at().field("resourceRequirements"))
        });

        if self.errors.len() > errors_before {
            return None;
        }
        let mut plan_step = PlanStep {
            index,
            id: step.id.clone(),
            name: step.name().to_owned(),
            kind: kind?,
            condition,
            skip_condition,
            timeout: step.timeout.map(Duration::from_millis),
            retry,
            recovery: recovery?,
            output_mapping,
            optional: step.optional.unwrap_or(false),
            resources,
            data_inputs: Box::new([]),
            fallback_for: None,
        };
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
        for_each_step_binding(&plan_step, &mut |binding| {
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
        Some(plan_step)
    }

    /// Which fields and blocks the step's type requires and allows.
    fn step_shape(&mut self, step: &StepDefinition, at: Locate<'_>) {
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
        if kind == StepType::Condition {
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
                Some(branches) => {
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
            }
        }
        let blocks: [(&'static str, bool, StepType); 5] = [
            ("parallel", step.parallel.is_some(), StepType::Parallel),
            ("loop", step.loop_settings.is_some(), StepType::Loop),
            ("branches", step.branches.is_some(), StepType::Condition),
            ("default", step.default.is_some(), StepType::Condition),
            ("approval", step.approval.is_some(), StepType::HumanApproval),
        ];
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

    fn step_kind(
        &mut self,
        step: &StepDefinition,
        at: Locate<'_>,
        scope: &Scope<'_>,
    ) -> Option<StepKind> {
        let task = || -> Option<(&crate::definition::AgentCriteria, &crate::definition::TaskDefinition)> {
            Some((step.agent_criteria.as_ref()?, step.task.as_ref()?))
        };
        let parameters = |this: &mut Self| -> Option<Template> {
            match step.task.as_ref().and_then(|task| task.parameters.as_ref()) {
                Some(parameters) => Template::compile_object(
                    parameters,
                    scope,
                    &|| at().field("task").field("parameters"),
                    &mut this.errors,
                ),
                None => Some(Template::empty_object()),
            }
        };
        let agent_task = |this: &mut Self| -> Option<AgentTask> {
            let parameters = parameters(this)?;
            let (criteria, task) = task()?;
            let mut required: Vec<String> = criteria
                .capabilities
                .iter()
                .chain(&criteria.required_capabilities)
                .flatten()
                .cloned()
                .collect();
            required.sort_unstable();
            required.dedup();
            Some(AgentTask {
                agent_type: criteria.agent_type.clone(),
                required_capabilities: required.into_boxed_slice(),
                preferred_capabilities: criteria
                    .preferred_capabilities
                    .clone()
                    .unwrap_or_default()
                    .into_boxed_slice(),
                load_balancing: criteria.load_balancing,
                task_type: task.task_type.clone(),
                parameters,
            })
        };
        match step.step_type {
            StepType::Task => agent_task(self).map(StepKind::Task),
            StepType::Decision => agent_task(self).map(StepKind::Decision),
            StepType::Parallel => {
                let task = agent_task(self)?;
                let settings = step.parallel.as_ref();
                let max_concurrency = match settings.and_then(|settings| settings.max_concurrency) {
                    Some(limit) => match NonZeroU32::new(limit) {
                        Some(limit) => Some(limit),
                        None => {
                            self.errors.push(DefinitionError::InvalidValue {
                                at: at().field("parallel").field("maxConcurrency"),
                                value: "0".to_owned(),
                                reason: "at least one item must be able to run".to_owned(),
                            });
                            return None;
                        }
                    },
                    None => None,
                };
                let over = self.fan_out_parameter(
                    &task,
                    settings.and_then(|s| s.for_each.as_deref()),
                    at,
                )?;
                Some(StepKind::Parallel {
                    task,
                    over,
                    max_concurrency,
                })
            }
            StepType::Loop => {
                let task = agent_task(self)?;
                let settings = step.loop_settings.as_ref();
                let until = match settings.and_then(|settings| settings.until.as_deref()) {
                    Some(text) => Until::Condition(Condition::compile(
                        text,
                        &scope.with_own_output(),
                        &|| at().field("loop").field("until"),
                        &mut self.errors,
                    )?),
                    None => Until::Done,
                };
                let max_iterations = settings
                    .and_then(|settings| settings.max_iterations)
                    .unwrap_or(100);
                if max_iterations == 0 {
                    self.errors.push(DefinitionError::InvalidValue {
                        at: at().field("loop").field("maxIterations"),
                        value: "0".to_owned(),
                        reason: "a loop runs at least once".to_owned(),
                    });
                    return None;
                }
                Some(StepKind::Loop {
                    task,
                    until,
                    max_iterations,
                    interval: Duration::from_millis(
                        settings
                            .and_then(|settings| settings.interval_ms)
                            .unwrap_or(0),
                    ),
                })
            }
            StepType::Condition => {
                let mut branches = Vec::new();
                for (index, branch) in step.branches.iter().flatten().enumerate() {
                    let at = || at().field("branches").index(index).field("when");
                    if let Some(when) =
                        Condition::compile(&branch.when, scope, &at, &mut self.errors)
                    {
                        branches.push(Branch {
                            name: branch.name.clone(),
                            when,
                        });
                    }
                }
                Some(StepKind::Condition {
                    branches: branches.into_boxed_slice(),
                    default: step.default.clone().unwrap_or_else(|| "default".to_owned()),
                })
            }
            StepType::HumanApproval => Some(StepKind::HumanApproval {
                parameters: parameters(self)?,
                on_timeout: step
                    .approval
                    .as_ref()
                    .and_then(|approval| approval.on_timeout)
                    .unwrap_or_default(),
            }),
        }
    }

    /// The parameter a parallel step fans out over: `forEach`, else the one parameter
    /// that can be an array (a literal array or a whole-string binding).
    fn fan_out_parameter(
        &mut self,
        task: &AgentTask,
        for_each: Option<&str>,
        at: Locate<'_>,
    ) -> Option<String> {
        let parameters = &task.parameters;
        if let Some(name) = for_each {
            return match parameters.field_may_be_array(name) {
                Some(true) => Some(name.to_owned()),
                Some(false) => {
                    self.errors.push(DefinitionError::InvalidValue {
                        at: at().field("parallel").field("forEach"),
                        value: format!("{name:?}"),
                        reason: "that parameter is neither an array nor a binding".to_owned(),
                    });
                    None
                }
                None => {
                    self.errors.push(DefinitionError::InvalidValue {
                        at: at().field("parallel").field("forEach"),
                        value: format!("{name:?}"),
                        reason: format!(
                            "the task has no such parameter (it has {})",
                            parameters.field_names().join(", ")
                        ),
                    });
                    None
                }
            };
        }
        let candidates: Vec<&str> = parameters
            .field_names()
            .into_iter()
            .filter(|name| parameters.field_may_be_array(name) == Some(true))
            .collect();
        match candidates.as_slice() {
            [one] => Some((*one).to_owned()),
            [] => {
                self.required(
                    at,
                    "parallel.forEach",
                    "for parallel steps without an array parameter".to_owned(),
                );
                None
            }
            several => {
                self.required(
                    at,
                    "parallel.forEach",
                    format!(
                        "to choose among parameters {} that may be arrays",
                        several.join(", ")
                    ),
                );
                None
            }
        }
    }

    fn retry(
        &mut self,
        step: &StepDefinition,
        definition: &WorkflowDefinition,
        at: Locate<'_>,
    ) -> Retry {
        let step_policy = step.retry_policy.as_ref();
        let step_handling_policy = step
            .error_handling
            .as_ref()
            .and_then(|handling| handling.retry_policy.as_ref());
        if step_policy.is_some() && step_handling_policy.is_some() {
            self.not_allowed(
                &|| at().field("errorHandling"),
                "retryPolicy",
                "the step already has a `retryPolicy`; keep one",
            );
        }
        let workflow_policy = definition
            .error_handling
            .as_ref()
            .and_then(|handling| handling.retry_policy.as_ref());
        if let Some(policy) = step_policy {
            self.retry_values(policy, &|| at().field("retryPolicy"));
        }
        if let Some(policy) = step_handling_policy {
            self.retry_values(policy, &|| at().field("errorHandling").field("retryPolicy"));
        }
        let layers = [step_policy.or(step_handling_policy), workflow_policy];
        let pick = |get: fn(&RetryPolicy) -> Option<u64>| {
            layers.iter().flatten().find_map(|policy| get(policy))
        };
        let defaults = Retry::DEFAULT;
        let max_attempts = layers
            .iter()
            .flatten()
            .find_map(|policy| policy.max_attempts);
        Retry {
            max_attempts: max_attempts.unwrap_or(defaults.max_attempts),
            explicit: max_attempts.is_some(),
            initial_delay: pick(|policy| policy.initial_delay_ms)
                .map_or(defaults.initial_delay, Duration::from_millis),
            backoff_multiplier: layers
                .iter()
                .flatten()
                .find_map(|policy| policy.backoff_multiplier)
                .unwrap_or(defaults.backoff_multiplier),
            max_delay: pick(|policy| policy.max_delay_ms)
                .map_or(defaults.max_delay, Duration::from_millis),
            jitter: layers
                .iter()
                .flatten()
                .find_map(|policy| policy.jitter)
                .unwrap_or(defaults.jitter),
        }
    }

    fn retry_values(&mut self, policy: &RetryPolicy, at: Locate<'_>) {
        if policy.max_attempts == Some(0) {
            self.invalid(
                at().field("maxAttempts"),
                "0",
                "counts the first call, so at least 1",
            );
        }
        if let Some(multiplier) = policy.backoff_multiplier {
            if !(multiplier.is_finite() && multiplier >= 1.0) {
                self.invalid(
                    at().field("backoffMultiplier"),
                    &multiplier.to_string(),
                    "must be at least 1",
                );
            }
        }
        if let Some(jitter) = policy.jitter {
            if !(0.0..=1.0).contains(&jitter) {
                self.invalid(
                    at().field("jitter"),
                    &jitter.to_string(),
                    "must be between 0 and 1",
                );
            }
        }
    }

    /// Marks every fallback step with the step it stands in for; a step may be the
    /// fallback of one step only.
    fn fallbacks(&mut self, steps: &mut [PlanStep], definition: &WorkflowDefinition) {
        for index in 0..steps.len() {
            let Some(fallback) = steps.get(index).and_then(|step| step.recovery.fallback) else {
                continue;
            };
            let Some(standby) = steps.get_mut(fallback) else {
                continue;
            };
            match standby.fallback_for {
                None => standby.fallback_for = Some(index),
                Some(owner) => {
                    let name = |i: usize| {
                        definition
                            .steps
                            .get(i)
                            .map_or_else(|| "?".to_owned(), |step| step.id.to_string())
                    };
                    self.errors.push(DefinitionError::InvalidValue {
                        at: Location::step(index, definition.steps.get(index).map(|step| &step.id))
                            .field("errorHandling")
                            .field("fallbackStep"),
                        value: name(fallback),
                        reason: format!(
                            "step `{}` is already the fallback of step `{}`; a step stands in for one step only",
                            name(fallback),
                            name(owner)
                        ),
                    });
                }
            }
        }
    }

    fn recovery(
        &mut self,
        step: &StepDefinition,
        definition: &WorkflowDefinition,
        at: Locate<'_>,
        lookup: StepLookup<'_>,
    ) -> Option<Recovery> {
        let step_handling = step.error_handling.as_ref();
        let workflow_handling = definition.error_handling.as_ref();
        let fallback = match step_handling {
            Some(handling) => self.error_handling(
                handling,
                &|| at().field("errorHandling"),
                Some(step),
                lookup,
            )?,
            None => None,
        };
        let strategies = step_handling
            .and_then(|handling| handling.strategies.clone())
            .or_else(|| workflow_handling.and_then(|handling| handling.strategies.clone()))
            .unwrap_or_else(|| DEFAULT_STRATEGIES.to_vec());
        let mut weights: Vec<(RecoveryStrategy, f64)> = Vec::new();
        for handling in [step_handling, workflow_handling].into_iter().flatten() {
            for (strategy, weight) in handling.strategy_weights.iter().flatten() {
                if !weights.iter().any(|(known, _)| known == strategy) {
                    weights.push((*strategy, *weight));
                }
            }
        }
        Some(Recovery {
            strategies: strategies.into_boxed_slice(),
            weights: weights.into_boxed_slice(),
            fallback,
        })
    }

    /// Checks an `errorHandling` block; returns the fallback step's index, if any.
    /// `None` when the fallback is invalid.
    fn error_handling(
        &mut self,
        handling: &ErrorHandling,
        at: Locate<'_>,
        step: Option<&StepDefinition>,
        lookup: StepLookup<'_>,
    ) -> Option<Option<usize>> {
        if step.is_none() {
            if let Some(policy) = &handling.retry_policy {
                self.retry_values(policy, &|| at().field("retryPolicy"));
            }
        }
        for (strategy, weight) in handling.strategy_weights.iter().flatten() {
            if !(weight.is_finite() && *weight >= 0.0) {
                let name = serde_json::to_value(strategy)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned));
                self.invalid(
                    at().field("strategyWeights")
                        .field(name.unwrap_or_else(|| "?".to_owned())),
                    &weight.to_string(),
                    "weights are finite and not negative",
                );
            }
        }
        let Some(fallback) = &handling.fallback_step else {
            return Some(None);
        };
        let Some(step) = step else {
            return Some(None);
        };
        let at = || at().field("fallbackStep");
        match lookup(fallback.as_str()) {
            None => {
                self.errors.push(DefinitionError::UnknownStep {
                    at: at(),
                    step: fallback.to_string(),
                });
                None
            }
            Some(_) if fallback == &step.id => {
                self.errors.push(DefinitionError::SelfReference {
                    at: at(),
                    binding: fallback.to_string(),
                });
                None
            }
            Some((index, _)) => Some(Some(index)),
        }
    }

    fn resources(
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

    fn dependencies(&mut self, definition: &WorkflowDefinition, lookup: StepLookup<'_>) {
        for (index, dependency) in definition.dependencies.iter().flatten().enumerate() {
            let at = || Location::root().field("dependencies").index(index);
            let mut resolve = |field: &'static str, id: &StepId| {
                let found = lookup(id.as_str()).map(|(index, _)| index);
                if found.is_none() {
                    self.errors.push(DefinitionError::UnknownStep {
                        at: at().field(field),
                        step: id.to_string(),
                    });
                }
                found
            };
            let (from, to) = (
                resolve("from", &dependency.from),
                resolve("to", &dependency.to),
            );
            match (from, to) {
                (Some(from), Some(to)) if from == to => {
                    self.errors.push(DefinitionError::SelfReference {
                        at: at().field("to"),
                        binding: dependency.to.to_string(),
                    })
                }
                (Some(from), Some(to)) => self.edges.push((
                    from,
                    to,
                    Edge {
                        dependency: true,
                        ..Edge::default()
                    },
                )),
                _ => {}
            }
        }
    }

    fn trigger(&mut self, index: usize, trigger: &TriggerDefinition) -> Option<Trigger> {
        let kind = trigger.trigger_type;
        let at = || Location::trigger(index, Some(kind));
        let errors_before = self.errors.len();
        let fields: [(&'static str, bool, TriggerType); 6] = [
            (
                "schedule",
                trigger.schedule.is_some(),
                TriggerType::Scheduled,
            ),
            (
                "timezone",
                trigger.timezone.is_some(),
                TriggerType::Scheduled,
            ),
            (
                "eventType",
                trigger.event_type.is_some(),
                TriggerType::Event,
            ),
            ("metric", trigger.metric.is_some(), TriggerType::Threshold),
            (
                "threshold",
                trigger.threshold.is_some(),
                TriggerType::Threshold,
            ),
            (
                "cooldownMs",
                trigger.cooldown_ms.is_some(),
                TriggerType::Threshold,
            ),
        ];
        for (field, present, owner) in fields {
            if present && kind != owner {
                self.not_allowed(
                    &at,
                    field,
                    &format!("only {} triggers have it", owner.as_str()),
                );
            }
        }
        let required = format!("for {} triggers", kind.as_str());
        let compiled_kind = match kind {
            TriggerType::Scheduled => match &trigger.schedule {
                None => {
                    self.required(&at, "schedule", required);
                    None
                }
                Some(pattern) => match Schedule::parse(pattern, trigger.timezone.as_deref()) {
                    Ok(schedule) => Some(TriggerKind::Scheduled(Box::new(schedule))),
                    Err(CronError::Timezone { .. }) => {
                        self.errors.push(DefinitionError::UnknownTimezone {
                            at: at().field("timezone"),
                            timezone: trigger.timezone.clone().unwrap_or_default(),
                        });
                        None
                    }
                    Err(CronError::Pattern { reason, .. }) => {
                        self.errors.push(DefinitionError::InvalidCron {
                            at: at().field("schedule"),
                            schedule: pattern.clone(),
                            reason,
                        });
                        None
                    }
                },
            },
            TriggerType::Event => match &trigger.event_type {
                Some(event_type) if !event_type.is_empty() => Some(TriggerKind::Event {
                    event_type: event_type.clone(),
                }),
                _ => {
                    self.required(&at, "eventType", required);
                    None
                }
            },
            TriggerType::Threshold => {
                let metric = trigger.metric.clone().filter(|metric| !metric.is_empty());
                if metric.is_none() {
                    self.required(&at, "metric", required.clone());
                }
                let threshold = trigger.threshold;
                match threshold {
                    None => self.required(&at, "threshold", required),
                    Some(value) if !value.is_finite() => {
                        self.invalid(
                            at().field("threshold"),
                            &value.to_string(),
                            "must be a finite number",
                        );
                    }
                    Some(_) => {}
                }
                match (metric, threshold) {
                    (Some(metric), Some(threshold)) => Some(TriggerKind::Threshold {
                        metric,
                        threshold,
                        cooldown: trigger.cooldown_ms.map(Duration::from_millis),
                    }),
                    _ => None,
                }
            }
        };
        let condition = trigger.condition.as_ref().and_then(|condition| {
            let at = || at().field("condition").field("expression");
            Condition::compile(
                &condition.expression,
                &Scope::trigger(),
                &at,
                &mut self.errors,
            )
        });
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Trigger {
            index,
            kind: compiled_kind?,
            condition,
        })
    }

    fn graph(&mut self, definition: &WorkflowDefinition) -> DiGraph<StepId, Edge> {
        let mut graph = DiGraph::with_capacity(definition.steps.len(), self.edges.len());
        for step in &definition.steps {
            graph.add_node(step.id.clone());
        }
        self.edges.sort_unstable_by_key(|&(from, to, _)| (from, to));
        let mut pending: Option<(usize, usize, Edge)> = None;
        for &(from, to, edge) in &self.edges {
            match &mut pending {
                Some((f, t, merged)) if (*f, *t) == (from, to) => {
                    merged.dependency |= edge.dependency;
                    merged.data |= edge.data;
                    merged.order |= edge.order;
                }
                _ => {
                    if let Some((f, t, merged)) = pending.replace((from, to, edge)) {
                        graph.add_edge(NodeIndex::new(f), NodeIndex::new(t), merged);
                    }
                }
            }
        }
        if let Some((f, t, merged)) = pending {
            graph.add_edge(NodeIndex::new(f), NodeIndex::new(t), merged);
        }
        graph
    }

    /// Kahn's algorithm with the lowest index first; reports cycles if it cannot finish.
    fn order(
        &mut self,
        graph: &DiGraph<StepId, Edge>,
        definition: &WorkflowDefinition,
    ) -> Vec<usize> {
        let count = graph.node_count();
        let mut incoming: Vec<usize> = (0..count)
            .map(|index| {
                graph
                    .edges_directed(NodeIndex::new(index), petgraph::Direction::Incoming)
                    .count()
            })
            .collect();
        let mut ready: BinaryHeap<Reverse<usize>> = (0..count)
            .filter(|&index| incoming[index] == 0)
            .map(Reverse)
            .collect();
        let mut order = Vec::with_capacity(count);
        while let Some(Reverse(index)) = ready.pop() {
            order.push(index);
            for edge in graph.edges(NodeIndex::new(index)) {
                let target = edge.target().index();
                incoming[target] -= 1;
                if incoming[target] == 0 {
                    ready.push(Reverse(target));
                }
            }
        }
        if order.len() < count {
            self.cycles(graph, definition);
        }
        order
    }

    /// One error per strongly connected component: the shortest cycle through its
    /// first-listed step, every step on it named in order.
    fn cycles(&mut self, graph: &DiGraph<StepId, Edge>, definition: &WorkflowDefinition) {
        let mut components: Vec<Vec<NodeIndex>> = petgraph::algo::tarjan_scc(graph)
            .into_iter()
            .filter(|component| component.len() > 1)
            .collect();
        for component in &mut components {
            component.sort_unstable();
        }
        components.sort_unstable_by_key(|component| component.first().copied());
        for component in components {
            let Some(&start) = component.first() else {
                continue;
            };
            // Breadth-first search from `start` back to itself, inside the component.
            let mut parent: HashMap<NodeIndex, NodeIndex> = HashMap::new();
            let mut queue = VecDeque::from([start]);
            let mut closing = None;
            'search: while let Some(node) = queue.pop_front() {
                for edge in graph.edges(node) {
                    let next = edge.target();
                    if next == start {
                        closing = Some(node);
                        break 'search;
                    }
                    if component.binary_search(&next).is_ok() && !parent.contains_key(&next) {
                        parent.insert(next, node);
                        queue.push_back(next);
                    }
                }
            }
            let Some(mut node) = closing else { continue };
            let mut path = vec![start];
            while node != start {
                path.push(node);
                node = parent.get(&node).copied().unwrap_or(start);
            }
            // `path` is start, then the cycle backwards; put it forwards and close it.
            path[1..].reverse();
            path.push(start);
            let through_listed_order = path.windows(2).any(|pair| {
                graph
                    .find_edge(pair[0], pair[1])
                    .and_then(|edge| graph.edge_weight(edge))
                    .is_some_and(|edge| edge.order && !edge.dependency && !edge.data)
            });
            let steps: Vec<StepId> = path
                .iter()
                .filter_map(|node| graph.node_weight(*node).cloned())
                .collect();
            let first = definition.steps.get(start.index()).map(|step| &step.id);
            self.errors.push(DefinitionError::Cycle {
                at: Location::step(start.index(), first),
                steps,
                through_listed_order,
            });
        }
    }

    fn positive(&mut self, millis: u64, at: Locate<'_>) {
        if millis == 0 {
            self.invalid(at(), "0", "a timeout is at least 1 ms");
        }
    }

    fn required(&mut self, at: Locate<'_>, field: &'static str, reason: String) {
        self.errors.push(DefinitionError::Required {
            at: at(),
            field,
            reason,
        });
    }

    fn not_allowed(&mut self, at: Locate<'_>, field: &'static str, reason: &str) {
        self.errors.push(DefinitionError::NotAllowed {
            at: at(),
            field,
            reason: reason.to_owned(),
        });
    }

    fn invalid(&mut self, at: Location, value: &str, reason: &str) {
        self.errors.push(DefinitionError::InvalidValue {
            at,
            value: value.to_owned(),
            reason: reason.to_owned(),
        });
    }
}

/// Every binding a compiled step reads.
/// Calls `visit` with every binding a compiled step reads.
fn for_each_step_binding<'s>(step: &'s PlanStep, visit: &mut dyn FnMut(&'s Binding)) {
    let approval = match step.kind() {
        StepKind::HumanApproval { parameters, .. } => Some(parameters),
        _ => None,
    };
    let templates = step
        .agent_task()
        .map(|task| &task.parameters)
        .into_iter()
        .chain(approval);
    for template in templates.chain(step.output_mapping()) {
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

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
