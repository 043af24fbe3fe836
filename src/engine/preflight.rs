//! The pre-flight check: every step that calls an agent has one that can take it, before
//! a run starts rather than when the step is reached.
//!
//! Selection ([`crate::agent`]) looks for an agent only when a step is reached, so a
//! workflow whose risk step has no agent runs its market analysis first and fails
//! later, with `NO_AGENT`. [`missing_agents`] finds every such step at once, from the
//! plan and the agents' descriptors alone: a pure function, shared by
//! [`Engine::check_agents`], [`AgentCheck::BeforeStart`] (the seam: [`Engine::start`]
//! asks it before anything runs) and the `tradeflow validate --agents` command.
//!
//! A step is covered when some agent has the step's agent type and every required
//! capability: the eligibility rule of selection, without what changes from call to
//! call (load, health, exclusions). Steps that call an agent (`task`, `decision`,
//! `parallel`, `loop`) are checked whether or not a run would reach them (conditions,
//! fallbacks and optional steps included); `condition` and `human_approval` steps need
//! no agent.
//!
//! # Cost
//! O(a + s × a_t × c): the a agents are grouped by type once, then each of the s steps
//! looks at the a_t agents of its type and its c required capabilities.

use std::collections::HashMap;

use super::{Engine, EngineError};
use crate::agent::AgentDescriptor;
use crate::definition::{AgentType, Location, StepId};
use crate::plan::ExecutionPlan;

/// When the engine checks that a workflow's steps have agents
/// ([`EngineBuilder::agent_check`](super::EngineBuilder::agent_check)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AgentCheck {
    /// Each step looks for an agent when it is reached; a step with none fails then, with
    /// kind `NO_AGENT`, after the steps before it ran. The default.
    #[default]
    WhenReached,
    /// [`Engine::start`] (and so [`Engine::run`], [`Engine::execute_workflow`]) first
    /// checks every step against the agents registered at that moment, and refuses with
    /// [`EngineError::NoAgents`] when a step has none: nothing runs, nothing is
    /// journaled, no agent is called. Agents that join after the start serve the run as
    /// usual; one that leaves can still leave a step without an agent (kind `NO_AGENT`).
    /// Runs started from a plan ([`Engine::start_plan`], and so triggers) and runs
    /// [`Engine::recover`] continues are not checked: a bot registers its agents after
    /// `recover` returns, so check those runs then, with
    /// [`Engine::check_plan_agents`]`(run.plan())`.
    BeforeStart,
}

/// A step no agent can take: none has its agent type, or none of that type has every
/// capability it requires.
///
/// # Examples
/// ```
/// use tradeflow::agent::AgentDescriptor;
/// use tradeflow::engine::missing_agents;
/// use tradeflow::plan::ExecutionPlan;
///
/// let plan = ExecutionPlan::from_json(r#"{"id": "w", "steps": [
///     {"id": "risk", "type": "task",
///      "agentCriteria": {"type": "RISK_MANAGEMENT", "requiredCapabilities": ["var", "stress"]},
///      "task": {"type": "RISK_ASSESSMENT"}}]}"#)?;
/// let agents = [AgentDescriptor::new("risk-1", "RISK_MANAGEMENT").with_capabilities(["var"])];
/// let missing = missing_agents(&plan, &agents);
/// assert_eq!(missing[0].step, "risk");
/// assert_eq!(missing[0].lacking, ["stress"]);
/// assert_eq!(
///     missing[0].to_string(),
///     "steps[0] (risk): no agent of type `RISK_MANAGEMENT` with capabilities [stress, var]; \
///      the type's 1 agent lacks [stress]"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe(self))]
#[non_exhaustive]
pub struct MissingAgent {
    /// The step's index in `steps`.
    pub index: usize,
    /// The step.
    pub step: StepId,
    /// The agent type it asks for.
    pub agent_type: AgentType,
    /// The capabilities it requires (`capabilities` and `requiredCapabilities`).
    pub required_capabilities: Vec<String>,
    /// How many agents of the type there are (none of which has every required
    /// capability).
    pub of_type: usize,
    /// The required capabilities no agent of the type has; empty when each is held by
    /// some agent but none holds them all (or when there is no agent of the type).
    pub lacking: Vec<String>,
}

fn describe(missing: &MissingAgent) -> String {
    let at = Location::step(missing.index, Some(&missing.step));
    let mut text = format!("{at}: no agent of type `{}`", missing.agent_type);
    if !missing.required_capabilities.is_empty() {
        text.push_str(&format!(
            " with capabilities [{}]",
            missing.required_capabilities.join(", ")
        ));
    }
    match (missing.of_type, missing.lacking.is_empty()) {
        (0, _) => {}
        (1, false) => text.push_str(&format!(
            "; the type's 1 agent lacks [{}]",
            missing.lacking.join(", ")
        )),
        (n, false) => text.push_str(&format!(
            "; the type's {n} agents lack [{}]",
            missing.lacking.join(", ")
        )),
        (n, true) => text.push_str(&format!("; none of the type's {n} agents has them all")),
    }
    text
}

/// Every step of `plan` that none of `agents` can take, in listed order: the steps that
/// call an agent, for which no agent has the step's type and every capability it
/// requires. Empty when every step is covered.
///
/// # Complexity
/// O(a + s × a_t × c) for a agents, s steps, a_t agents of a step's type and c required
/// capabilities.
///
/// # Examples
/// ```
/// use tradeflow::agent::AgentDescriptor;
/// use tradeflow::engine::missing_agents;
/// use tradeflow::plan::ExecutionPlan;
///
/// let plan = ExecutionPlan::from_json(include_str!("../../examples/workflows/algo-trading.json"))?;
/// let analysts = [AgentDescriptor::new("ma-1", "MARKET_ANALYSIS")
///     .with_capabilities(["technical-analysis", "momentum"])];
/// let missing = missing_agents(&plan, &analysts);
/// let steps: Vec<&str> = missing.iter().map(|m| m.step.as_str()).collect();
/// assert_eq!(
///     steps,
///     ["risk-assessment", "position-sizing", "order-execution", "execution-monitoring"]
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn missing_agents<'a>(
    plan: &ExecutionPlan,
    agents: impl IntoIterator<Item = &'a AgentDescriptor>,
) -> Vec<MissingAgent> {
    let mut by_type: HashMap<&AgentType, Vec<&AgentDescriptor>> = HashMap::new();
    for agent in agents {
        by_type.entry(&agent.agent_type).or_default().push(agent);
    }
    let mut missing = Vec::new();
    for step in plan.steps() {
        let Some(task) = step.agent_task() else {
            continue;
        };
        let required = &task.required_capabilities;
        let of_type = by_type
            .get(&task.agent_type)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let covers = |agent: &&AgentDescriptor| required.iter().all(|c| agent.has_capability(c));
        if of_type.iter().any(covers) {
            continue;
        }
        let lacking = if of_type.is_empty() {
            Vec::new()
        } else {
            required
                .iter()
                .filter(|c| !of_type.iter().any(|agent| agent.has_capability(c)))
                .cloned()
                .collect()
        };
        missing.push(MissingAgent {
            index: step.index(),
            step: step.id().clone(),
            agent_type: task.agent_type.clone(),
            required_capabilities: required.to_vec(),
            of_type: of_type.len(),
            lacking,
        });
    }
    missing
}

impl Engine {
    /// Checks that every step of the latest version of workflow `workflow_id` that calls
    /// an agent has a registered agent that can take it (of its agent type, with every
    /// capability it requires), now. See [`AgentCheck`] to have [`Engine::start`] check.
    ///
    /// # Errors
    /// [`EngineError::UnknownWorkflow`]; [`EngineError::NoAgents`] naming every step
    /// no agent can take, with its agent type and the capabilities it requires.
    ///
    /// # Examples
    /// ```
    /// use tradeflow::definition::WorkflowDefinition;
    /// use tradeflow::engine::{Engine, EngineError};
    ///
    /// let engine = Engine::builder().build();
    /// engine.create_workflow(WorkflowDefinition::from_json(r#"{"id": "w", "steps": [
    ///     {"id": "risk", "type": "task", "agentCriteria": {"type": "RISK_MANAGEMENT"},
    ///      "task": {"type": "RISK_ASSESSMENT"}}]}"#)?)?;
    /// let error = engine.check_agents("w").unwrap_err();
    /// assert!(matches!(&error, EngineError::NoAgents { problems, .. } if problems[0].step == "risk"));
    /// assert_eq!(
    ///     error.to_string(),
    ///     "workflow `w` has steps no registered agent can take:\n\
    ///      steps[0] (risk): no agent of type `RISK_MANAGEMENT`"
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check_agents(&self, workflow_id: &str) -> Result<(), EngineError> {
        let plan = self.known_workflow(workflow_id)?;
        self.check_plan_agents(&plan)
    }

    /// As [`check_agents`](Self::check_agents), for `plan` (which need not be kept by the
    /// engine): for a run started with [`start_plan`](Self::start_plan), or one
    /// [`recover`](Self::recover) continues ([`Run::plan`](super::Run::plan)), once its
    /// agents are registered.
    ///
    /// # Errors
    /// [`EngineError::NoAgents`] naming every step no agent can take.
    pub fn check_plan_agents(&self, plan: &ExecutionPlan) -> Result<(), EngineError> {
        let problems = missing_agents(plan, &self.inner.registry.agents());
        if problems.is_empty() {
            Ok(())
        } else {
            Err(EngineError::NoAgents {
                workflow: plan.workflow_id().to_owned(),
                problems,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(steps: &str) -> ExecutionPlan {
        ExecutionPlan::from_json(&format!(r#"{{"id": "w", "steps": [{steps}]}}"#)).unwrap()
    }

    fn task(id: &str, agent_type: &str, required: &[&str]) -> String {
        format!(
            r#"{{"id": "{id}", "type": "task", "agentCriteria": {{"type": "{agent_type}",
                "requiredCapabilities": {}}}, "task": {{"type": "T"}}}}"#,
            serde_json::to_string(required).unwrap()
        )
    }

    fn agent(id: &str, agent_type: &str, capabilities: &[&str]) -> AgentDescriptor {
        AgentDescriptor::new(id, agent_type).with_capabilities(capabilities.iter().copied())
    }

    fn lines(missing: &[MissingAgent]) -> Vec<String> {
        missing.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_step_is_covered_by_one_agent_of_its_type_with_every_capability() {
        let plan = plan(&task("a", "T", &["x", "y"]));
        let agents = [
            agent("t-1", "T", &["x"]),
            agent("t-2", "T", &["y", "x", "z"]),
        ];
        assert!(missing_agents(&plan, &agents).is_empty());
    }

    #[test]
    fn no_agent_of_the_type() {
        let plan = plan(&[task("a", "T", &[]), task("b", "U", &["x"])].join(","));
        let missing = missing_agents(&plan, &[agent("t-1", "T", &[])]);
        assert_eq!(
            lines(&missing),
            ["steps[1] (b): no agent of type `U` with capabilities [x]"]
        );
        assert_eq!(missing[0].of_type, 0);
        assert!(missing[0].lacking.is_empty());
    }

    #[test]
    fn capabilities_no_agent_of_the_type_has_are_named() {
        let plan = plan(&task("a", "T", &["x", "y", "z"]));
        let agents = [agent("t-1", "T", &["x"]), agent("t-2", "T", &["x"])];
        let missing = missing_agents(&plan, &agents);
        assert_eq!(missing[0].lacking, ["y", "z"]);
        assert_eq!(
            lines(&missing),
            [
                "steps[0] (a): no agent of type `T` with capabilities [x, y, z]; the type's 2 agents lack [y, z]"
            ]
        );
    }

    #[test]
    fn capabilities_split_between_agents_do_not_cover_a_step() {
        let plan = plan(&task("a", "T", &["x", "y"]));
        let agents = [agent("t-1", "T", &["x"]), agent("t-2", "T", &["y"])];
        assert_eq!(
            lines(&missing_agents(&plan, &agents)),
            [
                "steps[0] (a): no agent of type `T` with capabilities [x, y]; none of the type's 2 agents has them all"
            ]
        );
    }

    #[test]
    fn every_kind_that_calls_an_agent_is_checked_and_only_those() {
        let plan = plan(
            r#"{"id": "t", "type": "task", "agentCriteria": {"type": "A"}, "task": {"type": "T"}},
               {"id": "d", "type": "decision", "agentCriteria": {"type": "A"}, "task": {"type": "T"}},
               {"id": "p", "type": "parallel", "agentCriteria": {"type": "A"},
                "task": {"type": "T", "parameters": {"orders": "${input.orders}"}}},
               {"id": "l", "type": "loop", "agentCriteria": {"type": "A"}, "task": {"type": "T"}},
               {"id": "c", "type": "condition", "branches": [{"name": "b", "when": "1 > 0"}]},
               {"id": "h", "type": "human_approval", "task": {"type": "APPROVAL_REQUEST"}}"#,
        );
        let none: [AgentDescriptor; 0] = [];
        let steps: Vec<_> = missing_agents(&plan, &none)
            .into_iter()
            .map(|missing| missing.step.to_string())
            .collect();
        assert_eq!(steps, ["t", "d", "p", "l"]);
    }
}
