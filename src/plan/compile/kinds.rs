//! A step's kind: what the step does, its settings checked and compiled into a
//! [`StepKind`].
//!
//! `task`, `decision`, `parallel` and `loop` steps call an agent: their `agentCriteria`
//! and `task` become an [`AgentTask`], the required capabilities merged from
//! `capabilities` and `requiredCapabilities` (sorted, without repeats) and the task's
//! parameters compiled as a template. A `parallel` step fans out over one parameter that
//! may be an array (named by `forEach`, or else the only such parameter), at most
//! `maxConcurrency` items at once (not 0). A `loop` step repeats its task until `until`
//! holds (a condition that may read the iteration's output) or, without one, until the
//! output says it is done; at most `maxIterations` times (default 100, not 0, at most
//! [`MAX_LOOP_ITERATIONS`]), `intervalMs` apart (at most
//! [`MAX_DURATION_MS`](crate::plan::MAX_DURATION_MS)). A
//! `condition` step compiles each branch's `when`; the branch taken when none matches is
//! `default` unless named. A `human_approval` step compiles its parameters and what to
//! do on timeout. A missing field was reported by the shape check (`steps.rs`); here it
//! only means no kind.

use std::num::NonZeroU32;
use std::time::Duration;

use super::Compiler;
use crate::definition::{DefinitionError, StepDefinition, StepType, quoted_names};
use crate::expr::{Condition, Locate, Scope, Template};
use crate::plan::{AgentTask, Branch, MAX_LOOP_ITERATIONS, StepKind, Until};

impl Compiler {
    /// Compiles what the step does, by its type; `None` if that has a problem.
    pub(super) fn step_kind(
        &mut self,
        step: &StepDefinition,
        at: Locate<'_>,
        scope: &Scope<'_>,
    ) -> Option<StepKind> {
        let mut kind = KindCompilation {
            compiler: self,
            step,
            at,
            scope,
        };
        match step.step_type {
            StepType::Task => kind.agent_task().map(StepKind::Task),
            StepType::Decision => kind.agent_task().map(StepKind::Decision),
            StepType::Parallel => kind.parallel(),
            StepType::Loop => kind.repeat(),
            StepType::Condition => Some(kind.branches()),
            StepType::HumanApproval => Some(StepKind::HumanApproval {
                parameters: kind.task_parameters()?,
                on_timeout: step
                    .approval
                    .as_ref()
                    .and_then(|approval| approval.on_timeout)
                    .unwrap_or_default(),
            }),
        }
    }
}

/// One step's kind being compiled: the step, where it is, and what its bindings may
/// read.
struct KindCompilation<'a> {
    /// Where problems go.
    compiler: &'a mut Compiler,
    /// The step as written.
    step: &'a StepDefinition,
    /// Where the step is.
    at: Locate<'a>,
    /// What the step's bindings may read.
    scope: &'a Scope<'a>,
}

impl KindCompilation<'_> {
    /// The task's parameters as a template; an empty object when there are none.
    fn task_parameters(&mut self) -> Option<Template> {
        let at = self.at;
        match self
            .step
            .task
            .as_ref()
            .and_then(|task| task.parameters.as_ref())
        {
            Some(parameters) => Template::compile_object(
                parameters,
                self.scope,
                &|| at().field("task").field("parameters"),
                &mut self.compiler.errors,
            ),
            None => Some(Template::empty_object()),
        }
    }

    /// The agent call of a step that makes one: criteria, task type and parameters.
    fn agent_task(&mut self) -> Option<AgentTask> {
        // Parameters first: their problems are reported even when criteria or task are
        // missing.
        let parameters = self.task_parameters()?;
        let (criteria, task) = (self.step.agent_criteria.as_ref()?, self.step.task.as_ref()?);
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
    }

    /// A `parallel` step: its task, the parameter it fans out over and its concurrency
    /// limit.
    fn parallel(&mut self) -> Option<StepKind> {
        let task = self.agent_task()?;
        let settings = self.step.parallel.as_ref();
        let max_concurrency = match settings.and_then(|settings| settings.max_concurrency) {
            Some(limit) => match NonZeroU32::new(limit) {
                Some(limit) => Some(limit),
                None => {
                    self.compiler.errors.push(DefinitionError::InvalidValue {
                        at: (self.at)().field("parallel").field("maxConcurrency"),
                        value: "0".to_owned(),
                        reason: "at least one item must be able to run".to_owned(),
                    });
                    return None;
                }
            },
            None => None,
        };
        let over = self.fan_out_parameter(&task, settings.and_then(|s| s.for_each.as_deref()))?;
        Some(StepKind::Parallel {
            task,
            over,
            max_concurrency,
        })
    }

    /// A `loop` step: its task, when it stops, how often it may run and the pause
    /// between iterations.
    fn repeat(&mut self) -> Option<StepKind> {
        let task = self.agent_task();
        let at = self.at;
        let settings = self.step.loop_settings.as_ref();
        let max_iterations = self.max_iterations();
        let interval_ms = settings.and_then(|settings| settings.interval_ms);
        self.compiler
            .duration(interval_ms, &|| at().field("loop").field("intervalMs"));
        let until = match settings.and_then(|settings| settings.until.as_deref()) {
            Some(text) => Until::Condition(Condition::compile(
                text,
                &self.scope.with_own_output(),
                &|| at().field("loop").field("until"),
                &mut self.compiler.errors,
            )?),
            None => Until::Done,
        };
        Some(StepKind::Loop {
            task: task?,
            until,
            max_iterations: max_iterations?,
            interval: Duration::from_millis(interval_ms.unwrap_or(0)),
        })
    }

    /// A `loop` step's `maxIterations` (100 when absent): at least 1 and at most
    /// [`MAX_LOOP_ITERATIONS`]; `None` when out of range.
    fn max_iterations(&mut self) -> Option<u32> {
        let max_iterations = self
            .step
            .loop_settings
            .as_ref()
            .and_then(|settings| settings.max_iterations)
            .unwrap_or(100);
        let reason = match max_iterations {
            0 => "a loop runs at least once".to_owned(),
            1..=MAX_LOOP_ITERATIONS => return Some(max_iterations),
            _ => format!("a loop runs at most {MAX_LOOP_ITERATIONS} times"),
        };
        self.compiler.invalid(
            (self.at)().field("loop").field("maxIterations"),
            &max_iterations.to_string(),
            &reason,
        );
        None
    }

    /// A `condition` step: each branch whose `when` compiles, and the default branch.
    fn branches(&mut self) -> StepKind {
        let mut branches = Vec::new();
        for (index, branch) in self.step.branches.iter().flatten().enumerate() {
            let at = || (self.at)().field("branches").index(index).field("when");
            if let Some(when) =
                Condition::compile(&branch.when, self.scope, &at, &mut self.compiler.errors)
            {
                branches.push(Branch {
                    name: branch.name.clone(),
                    when,
                });
            }
        }
        StepKind::Condition {
            branches: branches.into_boxed_slice(),
            default: self
                .step
                .default
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
        }
    }

    /// The parameter a parallel step fans out over: `forEach`, else the one parameter
    /// that can be an array (a literal array or a whole-string binding).
    fn fan_out_parameter(&mut self, task: &AgentTask, for_each: Option<&str>) -> Option<String> {
        let parameters = &task.parameters;
        if let Some(name) = for_each {
            return self.named_fan_out_parameter(parameters, name);
        }
        let candidates: Vec<&str> = parameters
            .field_names()
            .into_iter()
            .filter(|name| parameters.field_may_be_array(name) == Some(true))
            .collect();
        let reason = match candidates.as_slice() {
            [one] => return Some((*one).to_owned()),
            [] => "for parallel steps without an array parameter".to_owned(),
            several => format!(
                "to choose among parameters {} that may be arrays",
                quoted_names(several)
            ),
        };
        self.compiler.required(self.at, "parallel.forEach", reason);
        None
    }

    /// The parameter `forEach` names, if the task has it and it may be an array.
    fn named_fan_out_parameter(&mut self, parameters: &Template, name: &str) -> Option<String> {
        let reason = match parameters.field_may_be_array(name) {
            Some(true) => return Some(name.to_owned()),
            Some(false) => "that parameter is neither an array nor a binding".to_owned(),
            None => format!(
                "the task has no such parameter (it has {})",
                quoted_names(&parameters.field_names())
            ),
        };
        self.compiler.errors.push(DefinitionError::InvalidValue {
            at: (self.at)().field("parallel").field("forEach"),
            value: format!("{name:?}"),
            reason,
        });
        None
    }
}
