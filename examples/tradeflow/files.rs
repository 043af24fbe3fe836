//! Reading and checking the files the verbs take: workflows, agents files, inputs and
//! timelines, every problem one line `PATH: problem`.

use std::fmt::Display;

use serde_json::Value;
use tradeflow::definition::{DefinitionError, Location, ValidationErrors};
use tradeflow::engine::{EngineBuilder, missing_agents};
use tradeflow::expr::Context;
use tradeflow::plan::{ExecutionPlan, StepKind};
use tradeflow::resource::{ResourceError, ResourcePool};
use tradeflow::run::{MAX_VALUE_DEPTH, value_depth};
use tradeflow::scheduler::Timeline;
use tradeflow::sim::{AgentScript, AgentsFile};

use crate::Problems;

/// An error and its sources, `: `-separated (`cannot recover run `r`: its journal …`).
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Reads a file; an unreadable one is a problem line `PATH: cannot read: …`.
fn read(path: &str) -> Result<String, Problems> {
    std::fs::read_to_string(path).map_err(|error| vec![format!("{path}: cannot read: {error}")])
}

/// Every one of `errors`, as a line `PATH: error`.
fn located<E: Display>(path: &str, errors: impl IntoIterator<Item = E>) -> Problems {
    errors
        .into_iter()
        .map(|error| format!("{path}: {error}"))
        .collect()
}

/// Every problem of `errors`, as a line `PATH: problem`, and the line that stands for
/// those omitted (`PATH: … and 5 more problems`), if any.
fn validation_problems(path: &str, errors: &ValidationErrors) -> Problems {
    located(
        path,
        errors
            .iter()
            .map(ToString::to_string)
            .chain(errors.omitted_line()),
    )
}

/// Reads and compiles a workflow file.
pub(crate) fn load(path: &str) -> Result<ExecutionPlan, Problems> {
    ExecutionPlan::from_json(&read(path)?).map_err(|errors| validation_problems(path, &errors))
}

/// Reads and checks an agents file.
pub(crate) fn load_agents(path: &str) -> Result<AgentsFile, Problems> {
    AgentsFile::from_json(&read(path)?).map_err(|errors| validation_problems(path, &errors))
}

/// Reads an input file: any JSON value (its paths are checked when the run starts).
fn load_input(path: &str) -> Result<Value, Problems> {
    serde_json::from_str(&read(path)?)
        .map_err(|error| located(path, [syntax(&error, error.line())]))
}

/// A JSON parse error, located like the syntax errors of workflow and agents files, at
/// line `line` of the file (in an inputs file, the line its value was on).
fn syntax(error: &serde_json::Error, line: usize) -> DefinitionError {
    let position = format!(" at line {} column {}", error.line(), error.column());
    let text = error.to_string();
    DefinitionError::Syntax {
        line,
        column: error.column(),
        message: text.strip_suffix(&position).unwrap_or(&text).to_owned(),
    }
}

/// Reads an inputs file (`simulate --inputs`): one JSON object a line, blank lines
/// skipped; each bad line is a problem `PATH: line N…`.
pub(crate) fn load_inputs(path: &str) -> Result<Vec<Value>, Problems> {
    let text = read(path)?;
    let mut inputs = Vec::new();
    let mut problems = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(input @ Value::Object(_)) => inputs.push(input),
            Ok(other) => problems.push(format!(
                "{path}: line {number}: expected a JSON object (one input a line), found {}",
                kind(&other)
            )),
            Err(error) => problems.push(format!("{path}: {}", syntax(&error, number))),
        }
    }
    if problems.is_empty() {
        Ok(inputs)
    } else {
        Err(problems)
    }
}

/// What kind of JSON value `value` is, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads a context file (`simulate --context`): a JSON object of host values by name,
/// as a timeline's `context`.
pub(crate) fn load_context(path: &str) -> Result<Context, Problems> {
    let value: Value = serde_json::from_str(&read(path)?)
        .map_err(|error| located(path, [syntax(&error, error.line())]))?;
    let Value::Object(values) = value else {
        return Err(vec![format!(
            "{path}: expected a JSON object of host values by name \
             ({{\"market.isOpen\": true}}), found {}",
            kind(&value)
        )]);
    };
    let mut problems = Vec::new();
    let mut context = Context::new();
    for (name, value) in values {
        let bare = name.strip_suffix("()").unwrap_or(&name);
        if bare.trim().is_empty() {
            problems.push(format!(
                "{path}: {}: a context name cannot be empty",
                Value::from(name.as_str())
            ));
        } else if value_depth(&value, MAX_VALUE_DEPTH) > MAX_VALUE_DEPTH {
            problems.push(format!(
                "{path}: {}: the value nests deeper than {MAX_VALUE_DEPTH} levels",
                Value::from(name.as_str())
            ));
        } else {
            context.set_value(&name, value);
        }
    }
    if problems.is_empty() {
        Ok(context)
    } else {
        Err(problems)
    }
}

/// Reads and checks a timeline file; a problem of the file's top level comes without the
/// `workflow` location the crate gives the root of any file.
pub(crate) fn load_timeline(path: &str) -> Result<Timeline, Problems> {
    Timeline::from_json(&read(path)?).map_err(|errors| {
        let root = format!("{}: ", Location::root());
        let lines = errors.iter().map(|error| {
            let text = error.to_string();
            match error.location() {
                Some(at) if *at == Location::root() => {
                    text.strip_prefix(&root).unwrap_or(&text).to_owned()
                }
                _ => text,
            }
        });
        located(path, lines.chain(errors.omitted_line()))
    })
}

/// Reads and compiles a workflow file, and reads an agents file that must have an agent
/// for every step that calls one (`validate --agents`); every problem of both at once.
pub(crate) fn load_with_agents(workflow: &str, agents: &str) -> Result<ExecutionPlan, Problems> {
    let plan = load(workflow);
    let scripts = load_agents(agents);
    match (plan, scripts) {
        (Ok(plan), Ok(scripts)) => {
            let problems = check_agents(&plan, &scripts, workflow, agents);
            if problems.is_empty() {
                Ok(plan)
            } else {
                Err(problems)
            }
        }
        (plan, scripts) => Err([plan.err(), scripts.err()]
            .into_iter()
            .flatten()
            .flatten()
            .collect()),
    }
}

/// Checks that every step of `plan` (read from `workflow`) that calls an agent has one
/// in `agents` (read from `agents_path`) of its type with every capability it requires.
pub(crate) fn check_agents(
    plan: &ExecutionPlan,
    agents: &AgentsFile,
    workflow: &str,
    agents_path: &str,
) -> Problems {
    let descriptors: Vec<_> = agents.agents.iter().map(AgentScript::descriptor).collect();
    missing_agents(plan, &descriptors)
        .iter()
        .map(|missing| format!("{workflow}: {missing} (the agents of {agents_path})"))
        .collect()
}

/// The checked files of a run (`simulate`, `run`, `replay`).
pub(crate) type RunFiles = (ExecutionPlan, AgentsFile, Value);

/// Loads and checks the files of a run, reporting every problem of all of them at once:
/// the workflow, the agents, the input (`{}` without one), and the workflow and agents
/// against each other.
pub(crate) fn load_run_files(
    workflow: &str,
    agents: &str,
    input: Option<&str>,
) -> Result<RunFiles, Problems> {
    let mut problems = Vec::new();
    let plan = load(workflow).map_err(|p| problems.extend(p)).ok();
    let scripts = load_agents(agents).map_err(|p| problems.extend(p)).ok();
    let input = match input {
        None => Some(Value::Object(serde_json::Map::new())),
        Some(path) => load_input(path).map_err(|p| problems.extend(p)).ok(),
    };
    if let (Some(plan), Some(scripts)) = (&plan, &scripts) {
        problems.extend(check_approvals(&[plan], scripts, agents, "the workflow"));
        problems.extend(check_resources(plan, scripts, workflow, agents));
    }
    match (plan, scripts, input, problems.is_empty()) {
        (Some(plan), Some(scripts), Some(input), true) => Ok((plan, scripts, input)),
        _ => Err(problems),
    }
}

/// Checks that every scripted approval of `agents` (read from `agents_path`) answers a
/// `human_approval` step of one of `plans` (`where_` names them in the message).
pub(crate) fn check_approvals(
    plans: &[&ExecutionPlan],
    agents: &AgentsFile,
    agents_path: &str,
    where_: &str,
) -> Problems {
    let mut problems = Vec::new();
    for step in agents.approvals.keys() {
        let found: Vec<_> = plans
            .iter()
            .filter_map(|plan| plan.index_of(step).and_then(|index| plan.step(index)))
            .collect();
        if found
            .iter()
            .any(|found| matches!(found.kind(), StepKind::HumanApproval { .. }))
        {
            continue;
        }
        let why = found
            .first()
            .map(|found| format!(" (`{step}` is a {} step)", found.step_type().as_str()))
            .unwrap_or_default();
        problems.push(format!(
            "{agents_path}: approvals.{step}: no human_approval step `{step}` in {where_}{why}"
        ));
    }
    problems
}

/// Checks that every step's resource requirements (and the workflow's, held for the
/// whole run) fit the pool of `agents` (a resource the pool does not name is not
/// limited). `workflow` names the plan in messages.
pub(crate) fn check_resources(
    plan: &ExecutionPlan,
    agents: &AgentsFile,
    workflow: &str,
    agents_path: &str,
) -> Problems {
    let pool = match resource_pool(agents) {
        Ok(Some(pool)) => pool,
        Ok(None) => return Vec::new(),
        Err(error) => return vec![format!("{agents_path}: resources: {error}")],
    };
    match pool.check_plan(plan) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .iter()
            .map(|error| format!("{workflow}: {error} (the pool of {agents_path})"))
            .collect(),
    }
}

/// The agents file's resource pool, if it has one.
fn resource_pool(agents: &AgentsFile) -> Result<Option<ResourcePool>, ResourceError> {
    agents
        .resources
        .as_ref()
        .map(|pool| ResourcePool::new(pool.iter().map(|(kind, &amount)| (kind.clone(), amount))))
        .transpose()
}

/// `builder` with the agents file's pool, when it has one, and its budgets (checked
/// when loaded).
pub(crate) fn with_pool(builder: EngineBuilder, agents: &AgentsFile) -> EngineBuilder {
    let builder = builder.budgets(agents.budget_specs());
    match resource_pool(agents) {
        Ok(Some(pool)) => builder.resource_pool(pool),
        _ => builder,
    }
}
