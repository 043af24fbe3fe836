//! The agents file: scripted agents and scripted human answers, as serde types, loaded
//! with every problem collected and located.

use std::collections::{BTreeMap, HashMap};

use serde::de::Unexpected;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::RandomValue;
use super::random::{check_name, check_reads};
use crate::agent::{AgentDescriptor, AgentErrorKind, AgentId, CircuitBreaker};
use crate::definition::{
    AgentType, DefinitionError, Location, Quoted, StepId, ValidationErrors, load_as, parse,
};
use crate::expr::Template;
use crate::plan::MAX_DURATION_MS;

/// An agents file as written: the scripted agents of a dry run, the scripted answers to
/// its `human_approval` steps and, optionally, the resource pool.
///
/// Load it with [`AgentsFile::from_json`], which checks everything a file can get wrong;
/// a file built in code can be checked with [`AgentsFile::validate`].
///
/// # Examples
/// ```
/// # use tradeflow::sim::AgentsFile;
/// let file = AgentsFile::from_json(r#"{
///     "agents": [{"id": "risk-1", "type": "RISK_MANAGEMENT",
///                 "tasks": {"RISK_ASSESSMENT": {"output": {"approved": true}}}}],
///     "approvals": {"execution-approval": {"approved": true, "by": "pm@desk", "afterMs": 60000}}
/// }"#)?;
/// assert_eq!(file.agents[0].weight, 1.0);
/// assert_eq!(file.approvals["execution-approval"].by, "pm@desk");
/// # Ok::<(), tradeflow::definition::ValidationErrors>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentsFile {
    /// The scripted agents; ids are unique.
    pub agents: Vec<AgentScript>,
    /// Scripted human answers, by the id of the `human_approval` step they answer. A
    /// waiting step with no scripted answer waits until its timeout. Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub approvals: BTreeMap<String, ScriptedApproval>,
    /// The resource pool (`{"cpu": 4, "memory": 8192, "network": 1000}`: cores, MB,
    /// Mbps) that steps' `resourceRequirements` are taken from while they run (every
    /// amount finite and not negative); `tradeflow simulate`, `run` and `replay` build
    /// the engine's [`ResourcePool`](crate::resource::ResourcePool) from it. Default: no
    /// pool (requirements are not limited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<BTreeMap<String, f64>>,
    /// Pools of agents made from a template, by agent type, for auto-scaling:
    /// `{"RISK_MANAGEMENT": {"min": 1, "max": 4, "template": {agent without id}}}`. The
    /// pool's agents are `<TYPE>-pool-1`, `<TYPE>-pool-2`, …; `min` of them are
    /// registered at once (see [`scale`](crate::scale)). Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pools: BTreeMap<AgentType, PoolScript>,
    /// The engine's kill switch rules (see [`kill`](crate::safety::kill)):
    /// `[{"id": "drawdown", "when": "pnl.drawdown > 0.05", "scope": {"tags": ["live"]},
    /// "flatten": "flatten-positions", "quorum": 2}]`; `tradeflow simulate`, `run` and
    /// `replay` build the engine with them. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kill_switch: Vec<crate::safety::KillSwitchRule>,

    /// Engine-level budgets, name → `{"capacity": 1200, "refillPerSecond": 20}`: token
    /// buckets shared by every run (capacity at least 1, `refillPerSecond` finite and not
    /// negative); `tradeflow simulate`, `run` and `replay` give them to the engine
    /// ([`EngineBuilder::budgets`](crate::engine::EngineBuilder::budgets)). Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub budgets: BTreeMap<String, crate::definition::BudgetDefinition>,
}

impl AgentsFile {
    /// The engine-level budgets, checked (those with a problem, which
    /// [`validate`](Self::validate) reports, are left out).
    pub fn budget_specs(&self) -> Vec<(String, crate::safety::BudgetSpec)> {
        self.budgets
            .iter()
            .filter_map(|(name, budget)| {
                let spec =
                    crate::safety::BudgetSpec::new(budget.capacity, budget.refill_per_second)
                        .ok()?;
                Some((name.clone(), spec))
            })
            .collect()
    }
}

/// A pool of scripted agents of one type: its bounds, its cooldown and the template its
/// agents are made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PoolScript {
    /// The fewest agents; registered at once. At most `max`.
    pub min: usize,
    /// The most agents; at least 1.
    pub max: usize,
    /// No scaling of the type within this many milliseconds of the last (at most
    /// [`MAX_DURATION_MS`](crate::plan::MAX_DURATION_MS)). Default 60000.
    #[serde(default = "default_cooldown_ms")]
    pub cooldown_ms: u64,
    /// Every agent of the pool: an agent of the file without `id` and `type` (the id is
    /// made, the type is the pool's).
    pub template: PoolTemplate,
}

fn default_cooldown_ms() -> u64 {
    60_000
}

/// The agent a pool makes: an [`AgentScript`] without `id` and `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PoolTemplate {
    /// As [`AgentScript::capabilities`].
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// As [`AgentScript::weight`]. Default 1.
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// As [`AgentScript::max_concurrency`]. Default 1.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: u32,
    /// As [`AgentScript::circuit_breaker`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
    /// As [`AgentScript::tasks`].
    pub tasks: BTreeMap<String, TaskScript>,
}

impl PoolTemplate {
    /// The script of the pool agent `id` of type `agent_type`.
    pub fn script(&self, id: AgentId, agent_type: AgentType) -> AgentScript {
        AgentScript {
            id,
            agent_type,
            capabilities: self.capabilities.clone(),
            weight: self.weight,
            max_concurrency: self.max_concurrency,
            circuit_breaker: self.circuit_breaker,
            tasks: self.tasks.clone(),
        }
    }
}

/// One scripted agent: who it is (as an [`AgentDescriptor`]) and, for each task type it
/// serves, what a call does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentScript {
    /// Unique in the file.
    pub id: AgentId,
    /// Matched against a step's `agentCriteria.type`.
    #[serde(rename = "type")]
    pub agent_type: AgentType,
    /// What the agent can do, matched against required and preferred capabilities.
    /// Default: none.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Relative share of work under the `WEIGHTED` balancer; finite and > 0. Default 1.
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// Calls the agent takes at once; at least 1. Default 1.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: u32,
    /// The agent's own circuit breaker, `{"failures": 3, "openMs": 10000}` (`failures`
    /// at least 1, default 5; `openMs` at most
    /// [`MAX_DURATION_MS`](crate::plan::MAX_DURATION_MS), default 30000), in place of the
    /// engine's. Default: none, the engine's (5 failures, 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
    /// The script of each task type the agent serves, by task type. A call of any other
    /// task type fails with kind `PERMANENT`.
    pub tasks: BTreeMap<String, TaskScript>,
}

fn default_weight() -> f64 {
    1.0
}

fn default_max_concurrency() -> u32 {
    1
}

impl AgentScript {
    /// The agent as the registry sees it: id, type, capabilities, weight, capacity,
    /// circuit breaker.
    pub fn descriptor(&self) -> AgentDescriptor {
        let descriptor = AgentDescriptor::new(self.id.clone(), self.agent_type.clone())
            .with_capabilities(self.capabilities.iter().cloned())
            .with_weight(self.weight)
            .with_max_concurrency(self.max_concurrency);
        match self.circuit_breaker {
            Some(breaker) => descriptor.with_circuit_breaker(breaker),
            None => descriptor,
        }
    }
}

/// What a call of one task type does: wait, maybe fail, draw its random values, answer.
///
/// Every field is optional: `{}` answers `{}` at once.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskScript {
    /// The result, with `${params.path}` bindings to the task's resolved parameters
    /// (same binding rules as workflows) and `${random.NAME}` bindings to the values of
    /// `random` drawn for the call. `null` is a result like any other. Not together with
    /// `outputs`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub output: Option<Value>,
    /// Successive results: the k-th successful call of this task type on this agent
    /// answers entry k (bindings as in `output`), and the last entry repeats once they
    /// run out. At least one entry; not together with `output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<Value>>,
    /// Time the call takes on the agent's clock, failing or not. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Scripted failures. Default: none (every call succeeds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail: Option<FailScript>,
    /// Values drawn at random on every call, by name (ASCII letters, digits, `_`, `-`),
    /// read in `output`/`outputs` as `${random.NAME}`: `{"fill": {"normal": [0.9,
    /// 0.05]}}`. Draws come from the call's
    /// [`TaskRequest::seed`](crate::agent::TaskRequest::seed), so the same run seed
    /// draws the same values. Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub random: BTreeMap<String, RandomValue>,
}

/// Keeps an explicit `null` as `Some(Value::Null)`: absent and `null` differ.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// Scripted failures of one task type on one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailScript {
    /// How many calls fail, the first ones; absent: every call fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
    /// The kind of the failure (`TEMPORARY`, `PERMANENT`, `AGENT_UNAVAILABLE`,
    /// `TIMEOUT`, `OUTCOME_UNKNOWN`), which decides whether the engine retries (or, for
    /// `OUTCOME_UNKNOWN`, reconciles first).
    pub kind: AgentErrorKind,
    /// The agent's message.
    pub message: String,
}

/// A scripted answer to a `human_approval` step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScriptedApproval {
    /// Approve (`true`) or reject (`false`, which fails the step).
    pub approved: bool,
    /// Who answers; the step's output carries it as `approvedBy`.
    pub by: String,
    /// How long after the step starts waiting the answer comes, in milliseconds of the
    /// run's clock. Default 0 (at once).
    #[serde(default)]
    pub after_ms: u64,
    /// The approver's comment, carried in the step's output. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl AgentsFile {
    /// Parses and checks an agents file.
    ///
    /// # Errors
    /// [`ValidationErrors`] with every problem, each located like workflow problems
    /// (`agents[0].tasks.ORDER_EXECUTION.fail.kind: unknown value …`): malformed JSON
    /// (line and column), unknown fields (with the closest known name), unknown kinds,
    /// wrong types and missing fields; and what [`validate`](Self::validate) checks,
    /// read from the text so that a part with a structural problem is checked too.
    pub fn from_json(json: &str) -> Result<Self, ValidationErrors> {
        load(&parse(json)?)
    }

    /// Checks what the JSON shape does not: weights finite and > 0, `maxConcurrency` at
    /// least 1, `circuitBreaker.failures` at least 1 and `circuitBreaker.openMs` at most
    /// [`MAX_DURATION_MS`](crate::plan::MAX_DURATION_MS), agent ids unique, `output` and
    /// `outputs` not both given, `outputs` not empty, every `${params…}` binding well
    /// formed, every `${random…}` binding naming a value of the script's `random`, random
    /// values well formed (a name readable as `${random.NAME}`, two numbers or bindings, a
    /// literal sd not negative, a literal low not above high), approvals keyed by valid
    /// step ids, pool amounts finite and not negative, the `killSwitch` rules as
    /// [`EngineBuilder::kill_switch`](crate::engine::EngineBuilder::kill_switch) checks
    /// them. [`from_json`](Self::from_json) runs
    /// it; call it on a file built in code.
    ///
    /// # Errors
    /// [`ValidationErrors`] with every problem found, located as in `from_json`.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut check = Checker::default();
        for (index, agent) in self.agents.iter().enumerate() {
            let at = agent_location(index);
            check.agent_id(&at, index, agent.id.as_str());
            check.agent(&at, Some(agent.weight), Some(agent.max_concurrency.into()));
            if let Some(breaker) = agent.circuit_breaker {
                let open_ms = u64::try_from(breaker.open_for.as_millis()).unwrap_or(u64::MAX);
                check.circuit_breaker(
                    &at,
                    agent.id.as_str(),
                    Some(breaker.failures.into()),
                    Some(open_ms),
                );
            }
            for (task_type, task) in &agent.tasks {
                let at = task_location(&at, task_type);
                let random: Vec<_> = task
                    .random
                    .iter()
                    .map(|(name, value)| (name.as_str(), Some(value)))
                    .collect();
                check.task(&at, task.output.as_ref(), task.outputs.as_deref(), &random);
            }
        }
        for step in self.approvals.keys() {
            check.approval(step);
        }
        check.resources(
            self.resources
                .iter()
                .flatten()
                .map(|(name, amount)| (name.as_str(), *amount)),
        );
        check.pools(&self.pools, &self.agents);
        check.budgets(&self.budgets);
        if let Err(problems) = crate::safety::KillSwitch::compile(&self.kill_switch) {
            check.errors.extend(problems.errors().iter().cloned());
        }
        check.finish(())
    }
}

/// Loads the file part by part (the top level, each agent, each task script, each
/// approval), so that a problem in one part does not hide those in the others.
fn load(value: &Value) -> Result<AgentsFile, ValidationErrors> {
    let mut check = Checker::default();
    let Value::Object(root) = value else {
        check.not_an_object(value, &Location::root());
        return Err(ValidationErrors::new(check.errors));
    };

    // The top level, with the agents and approvals emptied (they are loaded one by one).
    let top: Map<String, Value> = root
        .iter()
        .map(|(key, field)| {
            let emptied = match key.as_str() {
                "agents" if field.is_array() => Value::Array(Vec::new()),
                "approvals" if field.is_object() => Value::Object(Map::new()),
                _ => field.clone(),
            };
            (key.clone(), emptied)
        })
        .collect();
    let file = check.loaded::<AgentsFile>(&Value::Object(top), &Location::root());

    let mut agents = Vec::new();
    for (index, raw) in root
        .get("agents")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = agent_location(index);
        let raw_tasks = raw.get("tasks").and_then(Value::as_object);
        let agent = match (raw, raw_tasks) {
            (Value::Object(fields), Some(_)) => {
                let mut shell = fields.clone();
                shell.insert("tasks".to_owned(), Value::Object(Map::new()));
                check.loaded::<AgentScript>(&Value::Object(shell), &at)
            }
            _ => check.loaded::<AgentScript>(raw, &at),
        };
        // The checks below read the text, so that they run in parts that did not load.
        if let Some(id) = raw.get("id").and_then(Value::as_str) {
            check.agent_id(&at, index, id);
        }
        let number = |key: &str| raw.get(key).filter(|value| value.is_number());
        check.agent(
            &at,
            number("weight").and_then(Value::as_f64),
            number("maxConcurrency").and_then(Value::as_u64),
        );
        if let Some(breaker) = raw.get("circuitBreaker") {
            let id = raw.get("id").and_then(Value::as_str).unwrap_or_default();
            check.circuit_breaker(
                &at,
                id,
                breaker.get("failures").and_then(Value::as_u64),
                breaker.get("openMs").and_then(Value::as_u64),
            );
        }
        let mut tasks = BTreeMap::new();
        for (task_type, raw_task) in raw_tasks.into_iter().flatten() {
            let task_at = task_location(&at, task_type);
            let task = check.loaded::<TaskScript>(raw_task, &task_at);
            let outputs = raw_task.get("outputs").and_then(Value::as_array);
            // Each value that loads is checked further; one that does not was reported.
            let random: Vec<(&str, Option<RandomValue>)> = raw_task
                .get("random")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(name, raw)| (name.as_str(), RandomValue::deserialize(raw).ok()))
                .collect();
            let random: Vec<_> = random
                .iter()
                .map(|(name, value)| (*name, value.as_ref()))
                .collect();
            check.task(
                &task_at,
                raw_task.get("output"),
                outputs.map(Vec::as_slice),
                &random,
            );
            tasks.extend(task.map(|task| (task_type.clone(), task)));
        }
        agents.extend(agent.map(|agent| AgentScript { tasks, ..agent }));
    }

    let mut approvals = BTreeMap::new();
    for (step, raw) in root
        .get("approvals")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        check.approval(step);
        let at = Location::root().field("approvals").field(step.clone());
        approvals.extend(
            check
                .loaded::<ScriptedApproval>(raw, &at)
                .map(|approval| (step.clone(), approval)),
        );
    }

    let pool = root.get("resources").and_then(Value::as_object);
    check.resources(
        pool.into_iter()
            .flatten()
            .filter_map(|(name, amount)| Some((name.as_str(), amount.as_f64()?))),
    );
    if let Some(file) = &file {
        check.pools(&file.pools, &agents);
        check.budgets(&file.budgets);
        if let Err(problems) = crate::safety::KillSwitch::compile(&file.kill_switch) {
            check.errors.extend(problems.errors().iter().cloned());
        }
    }
    let file = file.map(|file| AgentsFile {
        agents,
        approvals,
        ..file
    });
    match file {
        Some(file) if check.errors.is_empty() => Ok(file),
        // A part that did not load always left a problem.
        _ => Err(ValidationErrors::new(check.errors)),
    }
}

fn agent_location(index: usize) -> Location {
    Location::root().field("agents").index(index)
}

fn task_location(agent: &Location, task_type: &str) -> Location {
    agent.field("tasks").field(task_type.to_owned())
}

/// Collects problems, in the order of the file.
#[derive(Default)]
struct Checker {
    errors: Vec<DefinitionError>,
    /// Agent ids seen so far, with the index of the first agent that has each.
    ids: HashMap<String, usize>,
}

impl Checker {
    /// Deserializes one part, which must be an object, keeping its problems.
    fn loaded<T: serde::de::DeserializeOwned>(
        &mut self,
        value: &Value,
        at: &Location,
    ) -> Option<T> {
        if !value.is_object() {
            // serde would read a struct from an array too.
            self.not_an_object(value, at);
            return None;
        }
        load_as(value, at)
            .map_err(|errors| self.errors.extend(errors))
            .ok()
    }

    fn not_an_object(&mut self, value: &Value, at: &Location) {
        let found = match value {
            Value::Null => Unexpected::Unit,
            Value::Bool(b) => Unexpected::Bool(*b),
            Value::Number(_) => Unexpected::Other("a number"),
            Value::String(s) => Unexpected::Str(s),
            Value::Array(_) => Unexpected::Seq,
            Value::Object(_) => Unexpected::Map,
        };
        self.errors.push(DefinitionError::InvalidType {
            at: at.clone(),
            found: found.to_string(),
            expected: "a JSON object".to_owned(),
        });
    }

    fn agent_id(&mut self, at: &Location, index: usize, id: &str) {
        if let Some(first) = self.ids.get(id) {
            self.errors.push(DefinitionError::InvalidValue {
                at: at.field("id"),
                value: Value::from(id).to_string(),
                reason: format!("duplicate agent id (first used by agents[{first}])"),
            });
        } else {
            self.ids.insert(id.to_owned(), index);
        }
    }

    /// Checks an agent's numbers; `None` where the field is absent or not a number
    /// (a structural problem, reported as such).
    fn agent(&mut self, at: &Location, weight: Option<f64>, max_concurrency: Option<u64>) {
        if max_concurrency == Some(0) {
            self.errors.push(DefinitionError::InvalidValue {
                at: at.field("maxConcurrency"),
                value: "0".to_owned(),
                reason: "an agent takes at least 1 call at once".to_owned(),
            });
        }
        if let Some(weight) = weight.filter(|weight| !(weight.is_finite() && *weight > 0.0)) {
            self.errors.push(DefinitionError::InvalidValue {
                at: at.field("weight"),
                value: weight.to_string(),
                reason: "weight must be finite and greater than 0".to_owned(),
            });
        }
    }

    /// Checks an agent's circuit breaker: `failures` at least 1, `openMs` at most
    /// [`MAX_DURATION_MS`]; `None` where a field is absent (its default) or not a whole
    /// number (a structural problem, reported as such). The reason names agent `id`.
    fn circuit_breaker(
        &mut self,
        at: &Location,
        id: &str,
        failures: Option<u64>,
        open_ms: Option<u64>,
    ) {
        let at = at.field("circuitBreaker");
        let agent = Quoted(id);
        if failures == Some(0) {
            self.errors.push(DefinitionError::InvalidValue {
                at: at.field("failures"),
                value: "0".to_owned(),
                reason: format!(
                    "the circuit breaker of agent `{agent}` opens after at least 1 failure"
                ),
            });
        }
        if let Some(open_ms) = open_ms.filter(|ms| *ms > MAX_DURATION_MS) {
            self.errors.push(DefinitionError::InvalidValue {
                at: at.field("openMs"),
                value: open_ms.to_string(),
                reason: format!(
                    "the circuit breaker of agent `{agent}` stays open at most \
                     {MAX_DURATION_MS} ms (100 years)"
                ),
            });
        }
    }

    /// Checks a task script's random values and outputs; `outputs` is `None` where it is
    /// absent or not an array (a structural problem, reported as such), and each random
    /// value `None` where it does not load as one (reported as such).
    fn task(
        &mut self,
        at: &Location,
        output: Option<&Value>,
        outputs: Option<&[Value]>,
        random: &[(&str, Option<&RandomValue>)],
    ) {
        let random_at = at.field("random");
        for (name, value) in random {
            check_name(&random_at, name, &mut self.errors);
            if let Some(value) = value {
                let at = random_at.field((*name).to_owned());
                value.compile(name, &at, &mut self.errors);
            }
        }
        let names = random.iter().map(|(name, _)| *name);
        if output.is_some() && outputs.is_some() {
            self.errors.push(DefinitionError::NotAllowed {
                at: at.clone(),
                field: "outputs",
                reason: "`output` is given; a script has one `output` or a sequence of \
                         `outputs`, not both"
                    .to_owned(),
            });
        }
        if let Some(output) = output {
            self.template(output, &at.field("output"), names.clone());
        }
        match outputs {
            Some([]) => self.errors.push(DefinitionError::InvalidValue {
                at: at.field("outputs"),
                value: "[]".to_owned(),
                reason: "give at least one output (a script with neither `output` nor \
                         `outputs` answers `{}`)"
                    .to_owned(),
            }),
            Some(outputs) => {
                for (index, output) in outputs.iter().enumerate() {
                    self.template(output, &at.field("outputs").index(index), names.clone());
                }
            }
            None => {}
        }
    }

    /// Checks an output template whose script draws the random values `names`.
    fn template<'n>(
        &mut self,
        value: &Value,
        at: &Location,
        names: impl Iterator<Item = &'n str> + Clone,
    ) {
        match Template::compile_params(value, at) {
            Ok(template) => check_reads(&template, names, at, &mut self.errors),
            Err(errors) => self.errors.extend(errors),
        }
    }

    fn approval(&mut self, step: &str) {
        if let Some(reason) = StepId::problem(step) {
            self.errors.push(DefinitionError::InvalidStepId {
                at: Location::root().field("approvals"),
                id: step.to_owned(),
                reason,
            });
        }
    }

    /// Checks each pool: bounds, cooldown, its template as an agent, and that no agent
    /// of the file takes an id the pool will make.
    fn pools(&mut self, pools: &BTreeMap<AgentType, PoolScript>, agents: &[AgentScript]) {
        for (agent_type, pool) in pools {
            let at = Location::root()
                .field("pools")
                .field(agent_type.to_string());
            if pool.max == 0 || pool.max < pool.min {
                self.errors.push(DefinitionError::InvalidValue {
                    at: at.field("max"),
                    value: pool.max.to_string(),
                    reason: format!(
                        "a pool has at least 1 agent and `min` ({}) at most",
                        pool.min
                    ),
                });
            }
            if pool.cooldown_ms > MAX_DURATION_MS {
                self.errors.push(DefinitionError::InvalidValue {
                    at: at.field("cooldownMs"),
                    value: pool.cooldown_ms.to_string(),
                    reason: format!("a cooldown is at most {MAX_DURATION_MS} ms (100 years)"),
                });
            }
            let template = &pool.template;
            let template_at = at.field("template");
            self.agent(
                &template_at,
                Some(template.weight),
                Some(template.max_concurrency.into()),
            );
            if let Some(breaker) = template.circuit_breaker {
                let open_ms = u64::try_from(breaker.open_for.as_millis()).unwrap_or(u64::MAX);
                let id = format!("{agent_type}-pool");
                self.circuit_breaker(
                    &template_at,
                    &id,
                    Some(breaker.failures.into()),
                    Some(open_ms),
                );
            }
            for (task_type, task) in &template.tasks {
                let task_at = task_location(&template_at, task_type);
                let random: Vec<_> = task
                    .random
                    .iter()
                    .map(|(name, value)| (name.as_str(), Some(value)))
                    .collect();
                self.task(
                    &task_at,
                    task.output.as_ref(),
                    task.outputs.as_deref(),
                    &random,
                );
            }
            let prefix = format!("{agent_type}-pool-");
            for (index, agent) in agents.iter().enumerate() {
                if agent.id.as_str().starts_with(&prefix) {
                    self.errors.push(DefinitionError::InvalidValue {
                        at: agent_location(index).field("id"),
                        value: Value::from(agent.id.as_str()).to_string(),
                        reason: format!("ids `{}<n>` are the pool's", Quoted(&prefix)),
                    });
                }
            }
        }
    }

    fn resources<'a>(&mut self, pool: impl IntoIterator<Item = (&'a str, f64)>) {
        for (name, amount) in pool {
            if !(amount.is_finite() && amount >= 0.0) {
                self.errors.push(DefinitionError::InvalidValue {
                    at: Location::root().field("resources").field(name.to_owned()),
                    value: amount.to_string(),
                    reason: "a pool amount must be finite and not negative".to_owned(),
                });
            }
        }
    }

    /// Each budget has a capacity of at least 1 and a finite `refillPerSecond` of at
    /// least 0.
    fn budgets(&mut self, budgets: &BTreeMap<String, crate::definition::BudgetDefinition>) {
        for (name, budget) in budgets {
            if let Err(error) =
                crate::safety::BudgetSpec::new(budget.capacity, budget.refill_per_second)
            {
                self.errors.push(DefinitionError::InvalidValue {
                    at: Location::root().field("budgets").field(name.clone()),
                    value: serde_json::to_string(budget).unwrap_or_default(),
                    reason: error.to_string(),
                });
            }
        }
    }

    /// `Ok(value)` if no problem was found.
    fn finish<T>(self, value: T) -> Result<T, ValidationErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(ValidationErrors::new(self.errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn problems(json: &str) -> Vec<String> {
        match AgentsFile::from_json(json) {
            Ok(file) => panic!("expected problems, loaded {file:?}"),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    fn agent(fields: Value) -> Value {
        let mut agent = json!({"id": "a", "type": "T", "tasks": {}});
        agent
            .as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        agent
    }

    #[test]
    fn defaults_fill_what_is_left_out() {
        let file =
            AgentsFile::from_json(r#"{"agents": [{"id": "a", "type": "T", "tasks": {"X": {}}}]}"#)
                .unwrap();
        let agent = &file.agents[0];
        assert_eq!(
            (
                agent.weight,
                agent.max_concurrency,
                agent.capabilities.len()
            ),
            (1.0, 1, 0)
        );
        assert_eq!(agent.tasks["X"], TaskScript::default());
        assert!(file.approvals.is_empty());
        assert_eq!(file.resources, None);
        assert_eq!(agent.descriptor(), AgentDescriptor::new("a", "T"));
    }

    #[test]
    fn pools_load_with_defaults_and_make_scripts_of_their_type() {
        let file = AgentsFile::from_json(
            r#"{"agents": [], "pools": {"RISK": {"min": 1, "max": 3,
                "template": {"maxConcurrency": 2, "tasks": {"CHECK": {"output": true}}}}}}"#,
        )
        .unwrap();
        let pool = &file.pools[&AgentType::new("RISK")];
        assert_eq!((pool.min, pool.max, pool.cooldown_ms), (1, 3, 60_000));
        let script = pool.template.script("RISK-pool-1".into(), "RISK".into());
        assert_eq!(
            script.descriptor(),
            AgentDescriptor::new("RISK-pool-1", "RISK").with_max_concurrency(2)
        );
        assert_eq!(script.tasks["CHECK"].output, Some(json!(true)));
    }

    #[test]
    fn pools_that_break_a_rule_are_refused_naming_where() {
        let errors = problems(
            r#"{"agents": [{"id": "RISK-pool-2", "type": "RISK", "tasks": {}}],
                "pools": {"RISK": {"min": 3, "max": 2, "cooldownMs": 4000000000000,
                    "template": {"weight": 0, "tasks": {"CHECK": {"output": "${params.}"}}}}}}"#,
        );
        let at: Vec<&str> = errors
            .iter()
            .map(|e| e.split(':').next().unwrap_or_default())
            .collect();
        assert_eq!(
            at,
            [
                "pools.RISK.max",
                "pools.RISK.cooldownMs",
                "pools.RISK.template.weight",
                "pools.RISK.template.tasks.CHECK.output",
                "agents[0].id",
            ],
            "{errors:#?}"
        );
        let with_id = problems(
            r#"{"agents": [], "pools": {"R": {"min": 1, "max": 1,
            "template": {"id": "x", "tasks": {}}}}}"#,
        );
        assert!(with_id[0].starts_with("pools.R.template"), "{with_id:?}");
    }

    #[test]
    fn an_explicit_null_output_is_kept() {
        let file = AgentsFile::from_json(
            r#"{"agents": [{"id": "a", "type": "T", "tasks": {"X": {"output": null}, "Y": {}}}]}"#,
        )
        .unwrap();
        assert_eq!(file.agents[0].tasks["X"].output, Some(Value::Null));
        assert_eq!(file.agents[0].tasks["Y"].output, None);
    }

    #[test]
    fn a_file_serializes_back_to_an_equal_file() {
        let json = json!({
            "agents": [{"id": "exec-1", "type": "TRADING_EXECUTION", "capabilities": ["twap"],
                        "weight": 2.5, "maxConcurrency": 4,
                        "tasks": {"ORDER_EXECUTION": {"output": {"ids": ["${params.orders.id}"]},
                                                      "delayMs": 50,
                                                      "fail": {"kind": "TIMEOUT", "message": "slow"}},
                                  "EXECUTION_MONITORING": {"outputs": [{"done": true}]}}}],
            "approvals": {"approve": {"approved": false, "by": "risk@desk", "comment": "too big"}},
            "resources": {"cpu": 4, "memory": 8192}
        });
        let file = AgentsFile::from_json(&json.to_string()).unwrap();
        let again = AgentsFile::from_json(&serde_json::to_string(&file).unwrap()).unwrap();
        assert_eq!(again, file);
        assert_eq!(file.resources.as_ref().unwrap()["memory"], 8192.0);
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let errors = AgentsFile::from_json("{\n  \"agents\": [,]\n}")
            .unwrap_err()
            .into_vec();
        assert!(
            matches!(
                errors[..],
                [DefinitionError::Syntax {
                    line: 2,
                    column: 14,
                    ..
                }]
            ),
            "{errors:?}"
        );
    }

    #[test]
    fn the_root_and_every_part_must_be_objects() {
        assert_eq!(
            problems("[]"),
            ["workflow: invalid type: found sequence, expected a JSON object"]
        );
        let json = json!({
            "agents": [[], agent(json!({"tasks": {"X": [null, null, null, null]}}))],
            "approvals": {"s": true}
        });
        assert_eq!(
            problems(&json.to_string()),
            [
                "agents[0]: invalid type: found sequence, expected a JSON object",
                "agents[1].tasks.X: invalid type: found sequence, expected a JSON object",
                "approvals.s: invalid type: found boolean `true`, expected a JSON object",
            ]
        );
    }

    #[test]
    fn problems_in_every_part_are_reported_at_once() {
        let json = json!({
            "agents": [
                agent(json!({"type": 3, "tasks": {"X": {
                    "fail": {"kind": "FLAKY", "message": "m"}, "output": 1, "outputs": [2]
                }}})),
                agent(json!({"weight": 0, "maxConcurrency": 0,
                             "tasks": {"X": {"outputs": []}, "Y": {"output": "${params.}"}}})),
            ],
            "approvals": {"bad id": {"approved": true, "by": "x", "aftrMs": 5}},
            "resources": {"cpu": -1}
        });
        assert_eq!(
            problems(&json.to_string()),
            [
                "agents[0].type: invalid type: found integer `3`, expected a string",
                "agents[0].tasks.X.fail.kind: unknown value `FLAKY`, expected one of `TEMPORARY`, \
                 `PERMANENT`, `AGENT_UNAVAILABLE`, `TIMEOUT`, `OUTCOME_UNKNOWN`",
                "agents[0].tasks.X: `outputs` is not allowed here: `output` is given; a script \
                 has one `output` or a sequence of `outputs`, not both",
                "agents[1].id: invalid value \"a\": duplicate agent id (first used by agents[0])",
                "agents[1].maxConcurrency: invalid value 0: an agent takes at least 1 call at once",
                "agents[1].weight: invalid value 0: weight must be finite and greater than 0",
                "agents[1].tasks.X.outputs: invalid value []: give at least one output (a script \
                 with neither `output` nor `outputs` answers `{}`)",
                "agents[1].tasks.Y.output: invalid binding in `${params.}`: column 9: empty path \
                 segment",
                "approvals: invalid step id `bad id`: a step id may only hold ASCII letters, \
                 digits, `_` and `-`",
                "approvals.bad id: unknown field `aftrMs` (did you mean `afterMs`?)",
                "resources.cpu: invalid value -1: a pool amount must be finite and not negative",
            ]
        );
    }

    #[test]
    fn bindings_other_than_params_are_rejected() {
        let json = json!({"agents": [agent(json!({"tasks": {"X": {
            "outputs": [{"a": "${params.x}"}, {"b": "${input.x}"}, {"c": "${risk.output}"}]
        }}}))]});
        let lines = problems(&json.to_string());
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(
            lines[0].starts_with("agents[0].tasks.X.outputs[1].b: "),
            "{lines:#?}"
        );
        assert!(
            lines[1].starts_with("agents[0].tasks.X.outputs[2].c: "),
            "{lines:#?}"
        );
    }

    /// What `validate` finds in `file`, which must be invalid, one line each.
    fn invalid(file: &AgentsFile) -> Vec<String> {
        let errors = file.validate().unwrap_err();
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn validate_checks_a_circuit_breaker_built_in_code() {
        let mut file = AgentsFile::from_json(
            r#"{"agents": [{"id": "a", "type": "T", "circuitBreaker": {"failures": 2},
                            "tasks": {}}]}"#,
        )
        .unwrap();
        assert_eq!(
            file.agents[0].descriptor().circuit_breaker,
            Some(CircuitBreaker::new(2, std::time::Duration::from_secs(30)))
        );
        let Some(breaker) = file.agents[0].circuit_breaker.as_mut() else {
            panic!("the agent has a breaker");
        };
        breaker.failures = 0;
        breaker.open_for = std::time::Duration::from_millis(MAX_DURATION_MS + 1);
        assert_eq!(
            invalid(&file),
            [
                "agents[0].circuitBreaker.failures: invalid value 0: the circuit breaker of \
                 agent `a` opens after at least 1 failure",
                "agents[0].circuitBreaker.openMs: invalid value 3155760000001: the circuit \
                 breaker of agent `a` stays open at most 3155760000000 ms (100 years)",
            ]
        );
    }

    #[test]
    fn validate_checks_a_file_built_in_code() {
        let mut file = AgentsFile::from_json(
            r#"{"agents": [{"id": "a", "type": "T", "tasks": {"X": {"output": 1}}}]}"#,
        )
        .unwrap();
        assert_eq!(file.validate(), Ok(()));
        let mut twin = file.agents[0].clone();
        twin.weight = f64::NAN;
        if let Some(task) = twin.tasks.get_mut("X") {
            task.outputs = Some(vec![json!(2)]);
        }
        file.agents.push(twin);
        assert_eq!(
            invalid(&file),
            [
                "agents[1].id: invalid value \"a\": duplicate agent id (first used by agents[0])",
                "agents[1].weight: invalid value NaN: weight must be finite and greater than 0",
                "agents[1].tasks.X: `outputs` is not allowed here: `output` is given; a script \
                 has one `output` or a sequence of `outputs`, not both",
            ]
        );
    }

    #[test]
    fn budgets_are_read_and_bad_ones_are_refused_naming_them() {
        let file = AgentsFile::from_json(
            r#"{"agents": [], "budgets": {"orders": {"capacity": 10, "refillPerSecond": 10}}}"#,
        )
        .unwrap();
        let specs = file.budget_specs();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].0, "orders");
        assert_eq!(specs[0].1.capacity(), 10);

        let errors = AgentsFile::from_json(
            r#"{"agents": [], "budgets": {"orders": {"capacity": 0, "refillPerSecond": 1}}}"#,
        )
        .unwrap_err();
        let listed: Vec<String> = errors.into_iter().map(|error| error.to_string()).collect();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert!(
            listed[0].starts_with("budgets.orders: invalid value"),
            "{listed:?}"
        );
    }

    #[test]
    fn kill_switch_rules_are_read_and_their_problems_located() {
        let file = AgentsFile::from_json(
            r#"{"agents": [], "killSwitch": [{"id": "drawdown", "when": "pnl.drawdown > 0.05",
                "scope": {"tags": ["live"]}, "flatten": "flatten-positions", "quorum": 2}]}"#,
        )
        .unwrap();
        assert_eq!(file.kill_switch.len(), 1);
        assert_eq!(file.kill_switch[0].quorum, Some(2));
        let errors = AgentsFile::from_json(
            r#"{"agents": [], "killSwitch": [{"id": "d", "when": "pnl.drawdown >", "quorum": 0}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(errors.contains("killSwitch[0] (d).when"), "{errors}");
        assert!(errors.contains("killSwitch[0] (d).quorum"), "{errors}");
        let mut built = file;
        built.kill_switch[0].when = "${steps.x.output} > 1".to_owned();
        assert!(built.validate().is_err());
    }
}
