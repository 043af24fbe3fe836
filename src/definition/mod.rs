//! Workflow definitions as written: the serde model of the JSON format.
//!
//! A [`WorkflowDefinition`] is exactly what the file says, field for field, so that
//! parse → serialize → parse gives an equal value. Nothing here is checked beyond the
//! shape of the JSON: unknown fields, unknown enum values and wrong types are rejected by
//! [`WorkflowDefinition::from_json`], which reports *every* such problem with its location
//! instead of stopping at the first. Semantic checks (unknown steps, cycles, expressions,
//! cron) happen when the definition is compiled into an
//! [`ExecutionPlan`](crate::plan::ExecutionPlan), the only form the engine runs.
//!
//! Defaults are not filled in here (an absent field stays `None`), so a definition
//! serializes back to what was written; the plan resolves them. The format and every
//! default are described in `docs/workflow-format.md`.

mod adapt;
mod choice;
mod coordination;
mod error;
mod ids;
mod load;
mod quoted;
mod syntax;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use adapt::{AdaptationDefinition, ChangeDefinition};
pub use choice::{Criterion, DecisionOption, DecisionPolicy, DecisionSettings, Goal};
pub use coordination::{CoordinationMode, CoordinationSettings};
pub use error::{DefinitionError, Location, ValidationErrors};
pub use ids::{AgentType, StepId, TaskType};
pub(crate) use load::{Loaded, Partial, load_as, load_json, parse};
pub use quoted::Quoted;
pub(crate) use quoted::quoted_names;
pub use syntax::{BindingError, BindingErrorKind, ExpressionProblem};

/// A workflow as written in JSON. Not yet checked: compile it into an
/// [`ExecutionPlan`](crate::plan::ExecutionPlan) to validate it.
///
/// # Examples
/// ```
/// use tradeflow::definition::WorkflowDefinition;
///
/// let definition = WorkflowDefinition::from_json(
///     r#"{"id": "hello", "steps": [{"id": "greet", "type": "task",
///         "agentCriteria": {"type": "GREETER"}, "task": {"type": "GREET"}}]}"#,
/// )?;
/// assert_eq!(definition.name(), "hello");
/// assert_eq!(definition.steps[0].id.as_str(), "greet");
/// # Ok::<(), tradeflow::definition::ValidationErrors>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkflowDefinition {
    /// Identifier of the workflow (required).
    pub id: String,
    /// Display name; [`WorkflowDefinition::name`] falls back to `id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free-text version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Free-text description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The steps, at least one.
    pub steps: Vec<StepDefinition>,
    /// Explicit ordering edges. When absent, steps run in the order listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependencies: Option<Vec<Dependency>>,
    /// Conditions that must all hold for a run to start; otherwise the run ends `SKIPPED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<ConditionDefinition>>,
    /// Concurrency and failure handling; defaults to PARALLEL + STOP_ON_FAILURE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_policy: Option<ExecutionPolicy>,
    /// Workflow-wide defaults for every step's error handling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_handling: Option<ErrorHandling>,
    /// Deadline for the whole run, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// Resources held for the whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_requirements: Option<Vec<ResourceRequirements>>,
    /// What starts the workflow by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggers: Option<Vec<TriggerDefinition>>,
    /// Rules that change steps as conditions change, evaluated as each step starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptations: Option<Vec<AdaptationDefinition>>,
    /// Labels the engine's kill switch rules select workflows by (`["live"]`): each is
    /// not empty, at most 64 bytes, and listed once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// What kind of workflow this is (`"execution"`, `"rebalancing"`): the
    /// `workflow_type` label of its metrics (see [`crate::metrics`]); its `id` when absent.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub workflow_type: Option<String>,
    /// Named token buckets of this workflow, name → `{capacity, refillPerSecond}`, shared
    /// by its runs; steps take from them with `budget`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budgets: Option<BTreeMap<String, BudgetDefinition>>,
    /// Field names whose values are secret (`["apiKey", "account"]`): matched at any
    /// depth of the run's input, the steps' parameters and their outputs, and written
    /// `"***"` everywhere the engine journals, reports, announces or logs them (see
    /// [`Sensitive`](crate::plan::Sensitive)). Each is not empty, at most 256 bytes, and
    /// listed once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitive: Option<Vec<String>>,
}

/// A named token bucket: `{"capacity": 10, "refillPerSecond": 10}`. It starts full, holds
/// at most `capacity` tokens and gains `refillPerSecond` each second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BudgetDefinition {
    /// The most tokens the bucket holds (at least 1).
    pub capacity: u64,
    /// Tokens gained per second (0 or more; 0: never refills).
    pub refill_per_second: f64,
}

impl WorkflowDefinition {
    /// Parses a definition from JSON, reporting every structural problem at once.
    ///
    /// # Errors
    /// [`ValidationErrors`] holding one [`DefinitionError`] per problem: malformed JSON
    /// (with line and column), unknown fields, unknown enum values, missing required
    /// fields and wrong types, each with its [`Location`].
    pub fn from_json(json: &str) -> Result<Self, ValidationErrors> {
        load::from_json(json)
    }

    /// Parses a definition from an already parsed JSON value; see
    /// [`WorkflowDefinition::from_json`].
    ///
    /// # Errors
    /// As [`WorkflowDefinition::from_json`], except that there are no syntax errors.
    pub fn from_value(value: &Value) -> Result<Self, ValidationErrors> {
        load::from_value(value)
    }

    /// The display name: `name` when given, else `id`.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }

    /// Serializes the definition back to pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// One step of a workflow, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepDefinition {
    /// Unique id; letters, digits, `_` and `-`.
    pub id: StepId,
    /// Display name; defaults to the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What kind of step this is.
    #[serde(rename = "type")]
    pub step_type: StepType,
    /// Which agents may run the step (agent steps only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_criteria: Option<AgentCriteria>,
    /// The task sent to the agent (for `human_approval`: the parameters shown to the approver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskDefinition>,
    /// Bound on each attempt (for `human_approval`: on the wait), in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// Retries of failed calls; fields left out come from the workflow's
    /// `errorHandling.retryPolicy`, then from the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,
    /// How the step recovers once its retries are exhausted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_handling: Option<ErrorHandling>,
    /// The step runs only when this holds; otherwise it is `SKIPPED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<ConditionDefinition>,
    /// The step is `SKIPPED` when this holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_condition: Option<ConditionDefinition>,
    /// Extra output fields, name → binding string; `${output…}` is the step's own output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_mapping: Option<Map<String, Value>>,
    /// A failure of an optional step does not fail the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
    /// Resources held while the step runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_requirements: Option<ResourceRequirements>,
    /// Fan-out settings (`parallel` steps only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<ParallelSettings>,
    /// Repetition settings (`loop` steps only).
    #[serde(default, rename = "loop", skip_serializing_if = "Option::is_none")]
    pub loop_settings: Option<LoopSettings>,
    /// Branches, first match wins (`condition` steps only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branches: Option<Vec<BranchDefinition>>,
    /// Name of the branch taken when none matches (`condition` steps only); `"default"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// Approval settings (`human_approval` steps only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalSettings>,
    /// The options the step chooses among, and how it learns (`decision` steps only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<DecisionSettings>,
    /// The same task sent to several agents at once, and how their answers combine
    /// (`task` and `decision` steps only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordination: Option<CoordinationSettings>,
    /// How old the run's data may be, in milliseconds, when the step calls its agent
    /// (as it is about to start, and before each retry); agent steps only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_data_age_ms: Option<u64>,
    /// What the step does on older data: `SKIP` (default) or `FAIL` (kind `STALE_DATA`);
    /// only with `maxDataAgeMs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_stale: Option<OnStale>,
    /// The step acts on the world (places an order): its own `timeout` expiring means
    /// `OUTCOME_UNKNOWN`, not `TIMEOUT`, and such a call is reconciled before any retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side_effects: Option<bool>,
    /// The task that asks whether a call whose outcome is unknown took effect (only with
    /// `"sideEffects": true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile: Option<ReconcileDefinition>,
    /// The tokens each call takes from named budgets (the workflow's, else the engine's),
    /// name → a whole number or a binding string that resolves to one; the call waits for
    /// them (agent steps only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Map<String, Value>>,
}

/// A step's `reconcile` block: the task sent, with the call's idempotency key and
/// parameters, to ask whether a call whose outcome is unknown took effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReconcileDefinition {
    /// The task type (`ORDER_STATUS`).
    #[serde(rename = "type")]
    pub task_type: TaskType,
}

impl StepDefinition {
    /// The display name: `name` when given, else the id.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(self.id.as_str())
    }
}

/// The six kinds of step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepType {
    /// One agent runs the task; its result is the output.
    Task,
    /// Like `task`, and the result is recorded with the decision engine.
    Decision,
    /// The task fans out over an array parameter, one agent call per item.
    Parallel,
    /// The task repeats until a condition holds.
    Loop,
    /// Evaluates branches and outputs the name of the one taken; no agent.
    Condition,
    /// Waits for a person to approve or reject; no agent.
    HumanApproval,
}

impl StepType {
    /// The name as written in JSON (`human_approval`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Task => "task",
            Self::Decision => "decision",
            Self::Parallel => "parallel",
            Self::Loop => "loop",
            Self::Condition => "condition",
            Self::HumanApproval => "human_approval",
        }
    }

    /// Whether steps of this type call an agent (and so need `agentCriteria` and `task`).
    pub fn uses_agent(self) -> bool {
        matches!(
            self,
            Self::Task | Self::Decision | Self::Parallel | Self::Loop
        )
    }
}

/// Which agents may run a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentCriteria {
    /// The agent type that runs the step.
    #[serde(rename = "type")]
    pub agent_type: AgentType,
    /// Required capabilities (same meaning as `requiredCapabilities`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    /// Required capabilities: an agent missing one is not a candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_capabilities: Option<Vec<String>>,
    /// Preferred capabilities: they raise an agent's score (at half weight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_capabilities: Option<Vec<String>>,
    /// How to choose among the best candidates; defaults to the engine's balancer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancing: Option<LoadBalancing>,
}

/// Load-balancing strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LoadBalancing {
    /// Each candidate in turn.
    RoundRobin,
    /// At random, in proportion to agent weight (seeded).
    Weighted,
    /// The candidate with the fewest calls in flight.
    LeastConnections,
    /// The less loaded of two random candidates.
    PowerOfTwoChoices,
}

/// The task a step sends to its agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskDefinition {
    /// The task type (an open set; see [`TaskType`]).
    #[serde(rename = "type")]
    pub task_type: TaskType,
    /// Named parameters; strings may hold `${…}` bindings at any depth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
}

/// How failed calls are retried. Every field is optional; see
/// [`plan::Retry`](crate::plan::Retry) for the defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryPolicy {
    /// Calls in all, counting the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Delay before the first retry, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay_ms: Option<u64>,
    /// Factor applied to the delay after each retry (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_multiplier: Option<f64>,
    /// Upper bound of a delay, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay_ms: Option<u64>,
    /// 0 to 1: each delay is drawn from `[d × (1 − jitter), d]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<f64>,
}

/// Error handling: retries and the recovery strategies tried once they are exhausted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ErrorHandling {
    /// Retry policy (workflow level: the default for every step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,
    /// The recovery strategies allowed; all that apply when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategies: Option<Vec<RecoveryStrategy>>,
    /// Relative weight of each strategy when choosing among candidates (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy_weights: Option<std::collections::BTreeMap<RecoveryStrategy, f64>>,
    /// The step run instead when this one fails (enables `ALTERNATIVE_PATH`; step level).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_step: Option<StepId>,
}

/// Self-healing strategies (see `docs/workflow-format.md`, self-healing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecoveryStrategy {
    /// Call again after a delay.
    Retry,
    /// Skip the step (optional steps only).
    Skip,
    /// Call another eligible agent.
    Substitute,
    /// Return the run to a checkpoint.
    Rollback,
    /// Run the step's fallback step instead.
    AlternativePath,
}

/// A boolean expression: `{"expression": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConditionDefinition {
    /// The expression text (evalexpr syntax, bindings allowed, `===`/`!==` accepted).
    pub expression: String,
}

/// An explicit ordering edge: `to` runs after `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dependency {
    /// The step that runs first.
    pub from: StepId,
    /// The step that runs after it.
    pub to: StepId,
}

/// Concurrency and failure handling of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecutionPolicy {
    /// `SEQUENTIAL` or `PARALLEL` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    /// `STOP_ON_FAILURE` (default) or `CONTINUE_ON_FAILURE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_handling: Option<FailureHandling>,
}

/// How many steps run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Concurrency {
    /// One step at a time, in listed order where the graph allows.
    Sequential,
    /// Every ready step at once.
    #[default]
    Parallel,
}

/// What a failed step does to the rest of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureHandling {
    /// Cancel what is running and end the run `FAILED`.
    #[default]
    StopOnFailure,
    /// Skip what depends on the failed step and let the rest finish.
    ContinueOnFailure,
}

/// Resources taken from the engine's pool: cores, MB, Mbps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceRequirements {
    /// CPU cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Memory in MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<f64>,
    /// Network bandwidth in Mbps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<f64>,
    /// Lower numbers are served first when the pool is short.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
}

/// Fan-out settings of a `parallel` step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParallelSettings {
    /// The array parameter to fan out over; without it, the one array parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_each: Option<String>,
    /// At most this many items at once; unbounded when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
}

/// Repetition settings of a `loop` step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoopSettings {
    /// Stop when this holds; `${output…}` is the iteration's output. Default: `done` is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Upper bound on iterations (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_iterations: Option<u32>,
    /// Pause between iterations, in milliseconds (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
}

/// One branch of a `condition` step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BranchDefinition {
    /// The branch name, output as `{"branch": name}` when taken.
    pub name: String,
    /// The expression that selects the branch.
    pub when: String,
}

/// Settings of a `human_approval` step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalSettings {
    /// What the step timeout means: `REJECT` (default) or `APPROVE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_timeout: Option<OnTimeout>,
    /// How many distinct people must approve, 1 to 16 (default 1); one rejection
    /// rejects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<u32>,
    /// Who may answer: `role:NAME` (a role the engine's permission service gives the
    /// user) or `user:NAME`; anyone when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvers: Option<Vec<String>>,
}

/// The answer assumed when nobody answers an approval in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OnTimeout {
    /// Treat silence as a rejection.
    #[default]
    Reject,
    /// Treat silence as an approval.
    Approve,
}

/// What a step with `maxDataAgeMs` does when the run's data is older.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OnStale {
    /// The step is skipped, with the reason `stale data: 412 ms > 250 ms`.
    #[default]
    Skip,
    /// The step fails with kind `STALE_DATA` (neither retried nor healed).
    Fail,
}

/// What starts a workflow by itself. Which fields apply depends on `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TriggerDefinition {
    /// The kind of trigger.
    #[serde(rename = "type")]
    pub trigger_type: TriggerType,
    /// `SCHEDULED`: a 5-field cron pattern.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// `SCHEDULED`: IANA time zone of the pattern (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// `EVENT`: the event type that fires it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// `THRESHOLD`: the metric watched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// `THRESHOLD`: fires when the metric crosses this value upward.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// `THRESHOLD`: minimum time between two firings, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_ms: Option<u64>,
    /// Must hold, against the host context (and `event.*`), for the trigger to fire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<ConditionDefinition>,
}

/// The three kinds of trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TriggerType {
    /// On a cron schedule.
    Scheduled,
    /// When the host publishes an event of a type.
    Event,
    /// When a metric crosses a threshold upward.
    Threshold,
}

impl TriggerType {
    /// The name as written in JSON (`SCHEDULED`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "SCHEDULED",
            Self::Event => "EVENT",
            Self::Threshold => "THRESHOLD",
        }
    }
}

/// The kind of a JSON value, as an error message names it.
pub(crate) fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_workflows_round_trip() {
        for json in [
            include_str!("../../examples/workflows/algo-trading.json"),
            include_str!("../../examples/workflows/portfolio-rebalancing.json"),
        ] {
            let parsed = WorkflowDefinition::from_json(json).expect("reference workflow parses");
            let again = WorkflowDefinition::from_json(&parsed.to_json()).expect("round trip");
            assert_eq!(parsed, again);
        }
    }

    #[test]
    fn name_falls_back_to_id() {
        let json = r#"{"id": "w", "steps": []}"#;
        assert_eq!(WorkflowDefinition::from_json(json).unwrap().name(), "w");
    }
}
