//! The execution plan: a validated definition compiled once into a DAG.
//!
//! [`ExecutionPlan::compile`] checks everything a definition can get wrong and collects
//! every problem (see [`DefinitionError`](crate::definition::DefinitionError)); on success it holds a petgraph `DiGraph` with
//! one node per step (node index = index in `steps`) and edges from `dependencies`,
//! from every binding, and — when `dependencies` is absent — from listed order. Every
//! binding, template and condition is compiled; triggers are parsed. A run never parses
//! text: it resolves bindings by step index and evaluates compiled trees.
//!
//! Compiling is O(steps + edges + text): Kahn's algorithm gives the order (listed order
//! breaks ties, so `SEQUENTIAL` runs follow the file where the graph allows), Tarjan's
//! algorithm finds cycles, each reported with the steps on it in order.

mod adapt;
mod budget;
mod choice;
mod compile;
mod draw;
mod sensitive;
mod trigger;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use crate::coordinate::Coordination;
use crate::definition::{
    self, AgentType, Concurrency, FailureHandling, LoadBalancing, Loaded, OnTimeout,
    RecoveryStrategy, StepId, StepType, TaskType, ValidationErrors, WorkflowDefinition,
};
use crate::expr::{Binding, Condition, Template};

pub use adapt::{Adaptation, Builtin, Change};
pub use budget::StepBudget;
pub use choice::{Choice, Policy};
pub use draw::DrawFormat;
pub use sensitive::{MAX_SENSITIVE_NAME_BYTES, REDACTED, Sensitive};
pub(crate) use sensitive::{Scrubber, redacted};
pub use trigger::{CronError, Schedule, Trigger, TriggerKind};

/// The longest duration a definition may give, in milliseconds: 100 years of 365.25
/// days (3,155,760,000,000 ms). Every `timeout` (of the workflow, a step, an approval's
/// wait), `retryPolicy.initialDelayMs` and `maxDelayMs`, `loop.intervalMs` and trigger
/// `cooldownMs` is at most this; a longer one is a validation error.
///
/// Far beyond any wait a bot means, and small enough that every computation with it is
/// exact and in range: it is below 2^53, so back-off computed in floating point is
/// exact to the millisecond, and added to any time before the year 262,000 it stays
/// within what `chrono` represents. (Time arithmetic saturates even so: a clock may
/// start anywhere.)
pub const MAX_DURATION_MS: u64 = 36_525 * 24 * 60 * 60 * 1000;

/// The most iterations a `loop` step may have (`loop.maxIterations`): a million, a loop
/// polling every second for more than eleven days. Each iteration is an agent call and
/// a journal entry, so the bound keeps a loop's work and its journal finite.
pub const MAX_LOOP_ITERATIONS: u32 = 1_000_000;

/// A workflow definition that passed validation, compiled once: graph built, bindings
/// parsed, conditions compiled. There is no way to build an invalid one.
///
/// # Examples
/// ```
/// use tradeflow::plan::ExecutionPlan;
///
/// let plan = ExecutionPlan::from_json(include_str!("../../examples/workflows/algo-trading.json"))?;
/// assert_eq!(plan.order().next().map(|step| step.id().as_str()), Some("market-analysis"));
/// assert_eq!(plan.steps().len(), 5);
/// # Ok::<(), tradeflow::definition::ValidationErrors>(())
/// ```
#[derive(Debug, Clone)]
pub struct ExecutionPlan {
    definition: Arc<WorkflowDefinition>,
    steps: Box<[PlanStep]>,
    index: HashMap<StepId, usize>,
    graph: DiGraph<StepId, Edge>,
    order: Box<[usize]>,
    conditions: Box<[Condition]>,
    policy: ExecutionPolicy,
    timeout: Option<Duration>,
    resources: Box<[Resources]>,
    triggers: Box<[Trigger]>,
    input_bindings: Box<[Binding]>,
    adaptations: Box<[Arc<Adaptation>]>,
    budgets: std::collections::BTreeMap<String, crate::safety::BudgetSpec>,
    sensitive: Arc<Sensitive>,
}

impl ExecutionPlan {
    /// Validates and compiles a definition.
    ///
    /// # Errors
    /// [`ValidationErrors`] with every problem found, each naming where it is.
    pub fn compile(definition: WorkflowDefinition) -> Result<Self, ValidationErrors> {
        compile::compile(Arc::new(definition))
    }

    /// Parses, validates and compiles a definition from JSON.
    ///
    /// # Errors
    /// [`ValidationErrors`] with every problem: the structural ones (syntax, unknown
    /// fields, wrong types) and the semantic ones found in the parts that did load.
    pub fn from_json(json: &str) -> Result<Self, ValidationErrors> {
        match definition::load_json(json) {
            Loaded::Complete(definition) => Self::compile(definition),
            Loaded::Partial(partial) => Err(compile::with_structural_problems(partial)),
            Loaded::Failed(error) => Err(error.into()),
        }
    }

    /// The workflow's `sensitive` field names, compiled: what the engine redacts in
    /// everything it journals, reports, announces and logs of this workflow's runs.
    pub fn sensitive(&self) -> &Arc<Sensitive> {
        &self.sensitive
    }

    /// The definition this plan was compiled from.
    pub fn definition(&self) -> &Arc<WorkflowDefinition> {
        &self.definition
    }

    /// The workflow's `tags` (what kill switch rules select it by).
    pub fn tags(&self) -> &[String] {
        self.definition.tags.as_deref().unwrap_or_default()
    }

    /// The workflow id.
    pub fn workflow_id(&self) -> &str {
        &self.definition.id
    }

    /// The steps, in listed order (a step's index is its node index in [`graph`](Self::graph)).
    pub fn steps(&self) -> &[PlanStep] {
        &self.steps
    }

    /// The step at `index`.
    pub fn step(&self, index: usize) -> Option<&PlanStep> {
        self.steps.get(index)
    }

    /// The index of the step with id `id`.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// The steps in an order that respects every edge, listed order breaking ties.
    pub fn order(&self) -> impl Iterator<Item = &PlanStep> + '_ {
        self.order.iter().filter_map(|&index| self.steps.get(index))
    }

    /// The step indices in [`order`](Self::order).
    pub fn order_indices(&self) -> &[usize] {
        &self.order
    }

    /// The step graph: node weights are step ids, node index = step index.
    pub fn graph(&self) -> &DiGraph<StepId, Edge> {
        &self.graph
    }

    /// The steps that must finish before step `index` starts, with why.
    pub fn predecessors(&self, index: usize) -> impl Iterator<Item = (usize, Edge)> + '_ {
        self.neighbors(index, Direction::Incoming)
    }

    /// The steps that wait for step `index`, with why.
    pub fn successors(&self, index: usize) -> impl Iterator<Item = (usize, Edge)> + '_ {
        self.neighbors(index, Direction::Outgoing)
    }

    fn neighbors(
        &self,
        index: usize,
        direction: Direction,
    ) -> impl Iterator<Item = (usize, Edge)> + '_ {
        self.graph
            .edges_directed(NodeIndex::new(index), direction)
            .map(move |edge| {
                let other = match direction {
                    Direction::Incoming => edge.source(),
                    Direction::Outgoing => edge.target(),
                };
                (other.index(), *edge.weight())
            })
    }

    /// The workflow's `conditions`, all of which must hold for a run to start.
    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    /// Concurrency and failure handling, defaults applied.
    pub fn policy(&self) -> ExecutionPolicy {
        self.policy
    }

    /// The deadline of a whole run.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Resources held for the whole run.
    pub fn resources(&self) -> &[Resources] {
        &self.resources
    }

    /// The compiled triggers.
    pub fn triggers(&self) -> &[Trigger] {
        &self.triggers
    }

    /// Every `${input…}` binding of the workflow, so that a run can check its input
    /// before any step runs.
    pub fn input_bindings(&self) -> &[Binding] {
        &self.input_bindings
    }

    /// The workflow's adaptations, in listed order.
    pub fn adaptations(&self) -> &[Arc<Adaptation>] {
        &self.adaptations
    }

    /// The workflow's own budgets (`budgets`), by name.
    pub fn budgets(&self) -> &std::collections::BTreeMap<String, crate::safety::BudgetSpec> {
        &self.budgets
    }

    /// Checks every step's `budget` against the workflow's budgets and `engine`'s (an
    /// engine's [`EngineBuilder::budgets`](crate::engine::EngineBuilder::budgets)): each
    /// name is declared by one of them, each literal amount at most its capacity.
    ///
    /// # Errors
    /// [`ValidationErrors`] with every unknown name and amount over a capacity, each
    /// located `steps[i] (id).budget.<name>`.
    pub fn check_budgets(
        &self,
        engine: &std::collections::BTreeMap<String, crate::safety::BudgetSpec>,
    ) -> Result<(), ValidationErrors> {
        budget::check_all(self, engine)
    }

    /// Checks and compiles `rule` as one more adaptation of this workflow, listed after
    /// `others` (its own and those added before): the checks an adaptation in the file
    /// gets, its id unique among `others` too.
    ///
    /// # Errors
    /// [`ValidationErrors`] with every problem, located at `adaptations[n] (id)`, `n`
    /// being the number of `others`.
    pub fn compile_adaptation(
        &self,
        rule: &definition::AdaptationDefinition,
        others: &[Arc<Adaptation>],
    ) -> Result<Adaptation, ValidationErrors> {
        compile::adaptation(&self.definition, rule, others)
    }

    /// Draws the graph as Graphviz DOT or a Mermaid flowchart.
    pub fn draw(&self, format: DrawFormat) -> String {
        draw::draw(self, format)
    }
}

impl TryFrom<WorkflowDefinition> for ExecutionPlan {
    type Error = ValidationErrors;

    fn try_from(definition: WorkflowDefinition) -> Result<Self, ValidationErrors> {
        Self::compile(definition)
    }
}

/// Why one step waits for another. An edge may have several reasons.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Edge {
    dependency: bool,
    data: bool,
    order: bool,
    fallback: bool,
}

impl Edge {
    /// Listed in `dependencies`.
    pub fn is_dependency(self) -> bool {
        self.dependency
    }

    /// The later step binds to the earlier one's output: if the earlier step is skipped
    /// or fails, the later one is skipped (its data does not exist).
    pub fn is_data(self) -> bool {
        self.data
    }

    /// From listed order (the workflow has no `dependencies`).
    pub fn is_order(self) -> bool {
        self.order
    }

    /// The later step is the earlier one's fallback (`errorHandling.fallbackStep`): it
    /// runs only when the earlier one fails and recovers by `ALTERNATIVE_PATH`.
    pub fn is_fallback(self) -> bool {
        self.fallback
    }

    /// Only ordering, no data: a skipped predecessor does not skip the successor.
    pub fn is_order_only(self) -> bool {
        !self.data
    }
}

/// Concurrency and failure handling of runs, defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExecutionPolicy {
    /// `SEQUENTIAL` or `PARALLEL` (default).
    pub concurrency: Concurrency,
    /// `STOP_ON_FAILURE` (default) or `CONTINUE_ON_FAILURE`.
    pub failure_handling: FailureHandling,
}

/// Resources requested from the pool, defaults applied (0 of what is not named).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resources {
    /// CPU cores.
    pub cpu: f64,
    /// Memory in MB.
    pub memory: f64,
    /// Network in Mbps.
    pub network: f64,
    /// Lower goes first when the pool is short (default 0).
    pub priority: i32,
}

/// Who must approve a `human_approval` step (its `approval.quorum` and
/// `approval.approvers`), compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quorum {
    need: u32,
    approvers: Box<[Approver]>,
}

/// One entry of `approval.approvers`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Approver {
    /// `role:NAME`: any user the engine's permission service gives this role.
    Role(String),
    /// `user:NAME`: this user.
    User(String),
}

impl Quorum {
    /// The most approvers a step may need.
    pub const MAX: u32 = 16;

    /// How many distinct people must approve.
    pub fn need(&self) -> u32 {
        self.need
    }

    /// Who may answer; empty: anyone.
    pub fn approvers(&self) -> &[Approver] {
        &self.approvers
    }

    /// Whether `user`, holding `roles`, may answer.
    pub fn admits(&self, user: &str, roles: &[String]) -> bool {
        self.approvers.is_empty()
            || self.approvers.iter().any(|approver| match approver {
                Approver::User(name) => name == user,
                Approver::Role(role) => roles.iter().any(|held| held == role),
            })
    }
}

/// A compiled step.
#[derive(Debug, Clone)]
pub struct PlanStep {
    index: usize,
    id: StepId,
    name: String,
    kind: StepKind,
    condition: Option<Condition>,
    skip_condition: Option<Condition>,
    timeout: Option<Duration>,
    retry: Retry,
    recovery: Recovery,
    output_mapping: Option<Template>,
    optional: bool,
    resources: Option<Resources>,
    data_inputs: Box<[usize]>,
    fallback_for: Option<usize>,
    choice: Option<Arc<Choice>>,
    coordination: Option<Arc<Coordination>>,
    freshness: Option<crate::safety::Freshness>,
    side_effects: Option<crate::safety::SideEffects>,
    budget: Option<Arc<StepBudget>>,
    quorum: Option<Arc<Quorum>>,
}

impl PlanStep {
    /// Who must approve a `human_approval` step with `approval.quorum` or
    /// `approval.approvers`; `None` for any other step (one answer, from anyone).
    pub fn quorum(&self) -> Option<&Arc<Quorum>> {
        self.quorum.as_ref()
    }

    /// Index in `steps`, and node index in the graph.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The step id.
    pub fn id(&self) -> &StepId {
        &self.id
    }

    /// The display name (the id when none was given).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the step does, with its compiled settings.
    pub fn kind(&self) -> &StepKind {
        &self.kind
    }

    /// The step type as written.
    pub fn step_type(&self) -> StepType {
        match self.kind {
            StepKind::Task(_) => StepType::Task,
            StepKind::Decision(_) => StepType::Decision,
            StepKind::Parallel { .. } => StepType::Parallel,
            StepKind::Loop { .. } => StepType::Loop,
            StepKind::Condition { .. } => StepType::Condition,
            StepKind::HumanApproval { .. } => StepType::HumanApproval,
        }
    }

    /// The agent task, for steps that call an agent.
    pub fn agent_task(&self) -> Option<&AgentTask> {
        match &self.kind {
            StepKind::Task(task)
            | StepKind::Decision(task)
            | StepKind::Parallel { task, .. }
            | StepKind::Loop { task, .. } => Some(task),
            StepKind::Condition { .. } | StepKind::HumanApproval { .. } => None,
        }
    }

    /// Whether the step makes one logical agent call (`task`, `decision`, without
    /// `coordination`: a coordinated step asks several agents at once).
    pub fn calls_one_agent(&self) -> bool {
        matches!(self.kind, StepKind::Task(_) | StepKind::Decision(_))
            && self.coordination.is_none()
    }

    /// The step runs only when this holds.
    pub fn condition(&self) -> Option<&Condition> {
        self.condition.as_ref()
    }

    /// The step is skipped when this holds.
    pub fn skip_condition(&self) -> Option<&Condition> {
        self.skip_condition.as_ref()
    }

    /// Bound on each attempt (on the wait, for approvals).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The retry policy, merged from the step, the workflow and the defaults.
    pub fn retry(&self) -> &Retry {
        &self.retry
    }

    /// Recovery settings, merged from the step and the workflow.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Extra output fields (an object template; `${output…}` is the step's own output).
    pub fn output_mapping(&self) -> Option<&Template> {
        self.output_mapping.as_ref()
    }

    /// Whether a failure of this step leaves the run able to complete.
    pub fn is_optional(&self) -> bool {
        self.optional
    }

    /// Resources held while the step runs.
    pub fn resources(&self) -> Option<&Resources> {
        self.resources.as_ref()
    }

    /// The step this one is the fallback of (by index): then it runs only in that
    /// step's place, when that step fails and recovers by `ALTERNATIVE_PATH`, and is
    /// skipped otherwise.
    pub fn fallback_for(&self) -> Option<usize> {
        self.fallback_for
    }

    /// A `decision` step's choice among options, when it has a `decision` block.
    pub fn choice(&self) -> Option<&Arc<Choice>> {
        self.choice.as_ref()
    }

    /// A `task` or `decision` step's coordination of several agents, when it has a
    /// `coordination` block: the task goes to several agents at once.
    pub fn coordination(&self) -> Option<&Arc<Coordination>> {
        self.coordination.as_ref()
    }

    /// How old the run's data may be when the step calls its agent (`maxDataAgeMs`,
    /// `onStale`), when the step says.
    pub fn freshness(&self) -> Option<&crate::safety::Freshness> {
        self.freshness.as_ref()
    }

    /// Whether the step acts on the world (`"sideEffects": true`), and its `reconcile`
    /// task.
    pub fn side_effects(&self) -> Option<&crate::safety::SideEffects> {
        self.side_effects.as_ref()
    }

    /// The tokens each call of the step takes from named budgets (`budget`), when it
    /// says.
    pub fn budget(&self) -> Option<&Arc<StepBudget>> {
        self.budget.as_ref()
    }

    /// The steps this one binds to (sorted, unique): if one of them is skipped or
    /// fails, this step is skipped.
    pub fn data_inputs(&self) -> &[usize] {
        &self.data_inputs
    }

    /// This step with its timeout and retry policy changed (as adaptations do): `None`
    /// keeps the step's own. A changed retry policy still allows one call only when the
    /// step's recovery disallows `RETRY`.
    pub fn adapted(&self, timeout: Option<Duration>, retry: Option<Retry>) -> Self {
        let mut step = self.clone();
        if let Some(timeout) = timeout {
            step.timeout = Some(timeout);
        }
        if let Some(retry) = retry {
            step.retry = retry.unless_disallowed(&step.recovery);
        }
        step
    }
}

/// What a step does.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StepKind {
    /// One agent call; its result is the output.
    Task(AgentTask),
    /// One agent call whose result is recorded with the decision engine.
    Decision(AgentTask),
    /// One agent call per element of parameter `over`.
    Parallel {
        /// The task; parameter `over` is replaced by each item in turn.
        task: AgentTask,
        /// The array parameter fanned out over.
        over: String,
        /// At most this many items at once.
        max_concurrency: Option<NonZeroU32>,
    },
    /// The task, repeated.
    Loop {
        /// The task.
        task: AgentTask,
        /// When to stop.
        until: Until,
        /// Upper bound on iterations.
        max_iterations: u32,
        /// Pause between iterations.
        interval: Duration,
    },
    /// Branch selection, no agent.
    Condition {
        /// Evaluated in order; the first that holds is taken.
        branches: Box<[Branch]>,
        /// Taken when none holds.
        default: String,
    },
    /// A wait for a person's answer.
    HumanApproval {
        /// The parameters shown to the approver (and part of the output).
        parameters: Template,
        /// What a timeout means.
        on_timeout: OnTimeout,
    },
}

/// The agent call of a step.
#[derive(Debug, Clone)]
pub struct AgentTask {
    /// The agent type that runs the task.
    pub agent_type: AgentType,
    /// Capabilities every candidate must have (`capabilities` ∪ `requiredCapabilities`).
    pub required_capabilities: Box<[String]>,
    /// Capabilities that raise a candidate's score.
    pub preferred_capabilities: Box<[String]>,
    /// The step's balancer, if it names one.
    pub load_balancing: Option<LoadBalancing>,
    /// The task type.
    pub task_type: TaskType,
    /// The parameters, with bindings compiled.
    pub parameters: Template,
}

/// When a loop stops.
#[derive(Debug, Clone)]
pub enum Until {
    /// When the iteration's output has `"done": true` (the default).
    Done,
    /// When this condition (which may read `${output…}`) holds.
    Condition(Condition),
}

/// One branch of a `condition` step.
#[derive(Debug, Clone)]
pub struct Branch {
    /// Output as `{"branch": name}` when taken.
    pub name: String,
    /// Selects the branch.
    pub when: Condition,
}

/// A resolved retry policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retry {
    /// Calls in all, counting the first.
    pub max_attempts: u32,
    /// Delay before the first retry.
    pub initial_delay: Duration,
    /// Growth of the delay per retry.
    pub backoff_multiplier: f64,
    /// Upper bound of a delay.
    pub max_delay: Duration,
    /// 0 to 1: a delay `d` is drawn from `[d × (1 − jitter), d]`.
    pub jitter: f64,
    /// Whether `maxAttempts` was set (on the step or the workflow). Self-healing's
    /// `RETRY` never calls more than an explicit `maxAttempts`.
    pub explicit: bool,
}

impl Retry {
    /// The policy as self-healing allows it: `RETRY` left out of `recovery`'s strategies,
    /// or weighted 0, means no retry (one call).
    pub(crate) fn unless_disallowed(mut self, recovery: &Recovery) -> Self {
        let retry = RecoveryStrategy::Retry;
        if !recovery.allows(retry) || recovery.weight(retry) <= 0.0 {
            self.max_attempts = 1;
            self.explicit = true;
        }
        self
    }

    /// The default: up to 4 calls (3 retries), 1 s doubling to 30 s, no jitter.
    pub const DEFAULT: Self = Self {
        max_attempts: 4,
        initial_delay: Duration::from_secs(1),
        backoff_multiplier: 2.0,
        max_delay: Duration::from_secs(30),
        jitter: 0.0,
        explicit: false,
    };

    /// The delay before retry `n` (1-based), before jitter:
    /// `initial × multiplier^(n−1)`, capped at `max_delay`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tradeflow::plan::Retry;
    /// let retry = Retry::DEFAULT;
    /// assert_eq!(retry.delay_before_retry(1), Duration::from_secs(1));
    /// assert_eq!(retry.delay_before_retry(3), Duration::from_secs(4));
    /// assert_eq!(retry.delay_before_retry(10), Duration::from_secs(30));
    /// ```
    pub fn delay_before_retry(&self, n: u32) -> Duration {
        let exponent = i32::try_from(n.saturating_sub(1)).unwrap_or(i32::MAX);
        let millis = self.initial_delay.as_millis() as f64 * self.backoff_multiplier.powi(exponent);
        let capped = millis.min(self.max_delay.as_millis() as f64);
        Duration::from_millis(if capped.is_finite() {
            capped as u64
        } else {
            u64::MAX
        })
    }

    /// The delay before retry `n` with jitter applied; `unit` is a uniform draw from
    /// `[0, 1)` (the run's seeded RNG supplies it). Jitter only shortens a delay. Never
    /// panics: `jitter` and `unit` are clamped to 0 to 1, and a NaN leaves the delay as
    /// it is.
    pub fn jittered_delay(&self, n: u32, unit: f64) -> Duration {
        let delay = self.delay_before_retry(n);
        let factor = 1.0 - self.jitter.clamp(0.0, 1.0) * unit.clamp(0.0, 1.0);
        Duration::try_from_secs_f64(delay.as_secs_f64() * factor)
            .map_or(delay, |jittered| jittered.min(delay))
    }
}

impl Default for Retry {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Resolved recovery settings of a step.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovery {
    /// The strategies allowed: those listed, else all but `ROLLBACK` (which runs
    /// completed steps again, so a workflow opts in to it).
    pub strategies: Box<[RecoveryStrategy]>,
    /// Weight of each strategy (1 unless configured); step settings override workflow ones.
    pub weights: Box<[(RecoveryStrategy, f64)]>,
    /// The fallback step (`ALTERNATIVE_PATH`), by index.
    pub fallback: Option<usize>,
}

impl Recovery {
    /// Whether `strategy` may be used.
    pub fn allows(&self, strategy: RecoveryStrategy) -> bool {
        self.strategies.contains(&strategy)
    }

    /// The weight of `strategy` (1 unless configured).
    pub fn weight(&self, strategy: RecoveryStrategy) -> f64 {
        self.weights
            .iter()
            .find(|(candidate, _)| *candidate == strategy)
            .map_or(1.0, |(_, weight)| *weight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn plan_types_are_shareable() {
        assert_send_sync::<ExecutionPlan>();
        assert_send_sync::<WorkflowDefinition>();
        assert_send_sync::<crate::expr::Context>();
    }

    #[test]
    fn retry_delays_grow_and_cap() {
        let retry = Retry {
            max_attempts: 5,
            initial_delay: Duration::from_millis(100),
            backoff_multiplier: 3.0,
            max_delay: Duration::from_millis(1000),
            jitter: 0.5,
            explicit: true,
        };
        let delays: Vec<u128> = (1..=4)
            .map(|n| retry.delay_before_retry(n).as_millis())
            .collect();
        assert_eq!(delays, [100, 300, 900, 1000]);
        assert_eq!(retry.jittered_delay(2, 0.0), Duration::from_millis(300));
        assert_eq!(retry.jittered_delay(2, 1.0), Duration::from_millis(150));
    }

    #[test]
    fn retry_delays_never_panic_or_overflow() {
        let huge = Retry {
            max_attempts: u32::MAX,
            initial_delay: Duration::MAX,
            backoff_multiplier: f64::MAX,
            max_delay: Duration::MAX,
            jitter: 0.5,
            explicit: true,
        };
        let longest = Duration::from_millis(u64::MAX);
        assert_eq!(huge.delay_before_retry(u32::MAX), longest);
        assert!(huge.jittered_delay(u32::MAX, 0.99) <= longest);
        // Settings validation would refuse, built by hand: clamped, or left unjittered.
        for jitter in [-1.0, 2.0, f64::NAN, f64::INFINITY] {
            let odd = Retry { jitter, ..huge };
            assert!(odd.jittered_delay(3, 0.5) <= longest, "jitter {jitter}");
        }
        assert_eq!(huge.jittered_delay(1, f64::NAN), longest);
    }
}
