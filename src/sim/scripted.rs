//! [`ScriptedAgent`]: an [`Agent`] that plays an [`AgentScript`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::Value;

use super::random::{Draw, check_name, check_reads, draw_all};
use super::{AgentScript, AgentsFile, FailScript, TaskScript};
use crate::agent::{Agent, AgentDescriptor, AgentError, AgentId, AgentRegistry, TaskRequest};
use crate::clock::Clock;
use crate::definition::{AgentType, DefinitionError, Location, Quoted, ValidationErrors};
use crate::expr::{BindingValues, EvalError, Template};
use crate::scale::{AgentFactory, AgentPool, ScaleError, ScalingPolicy};

/// An agent whose behaviour is data: it waits, fails and answers as its [`AgentScript`]
/// says, on the clock it is given.
///
/// A call of task type `T`:
/// 1. No script for `T`: fails at once with kind `PERMANENT`.
/// 2. Waits `delayMs` on the clock, whether it then fails or not.
/// 3. Fails with the script's `kind` and `message` if it is one of the first `fail.times`
///    calls of `T` on this agent (every call, when `times` is absent). A call counts when
///    it starts, so one cancelled during its delay still uses up a failure.
/// 4. Draws the script's `random` values, each from a generator seeded with the
///    request's [`seed`](TaskRequest::seed) and the value's name; a bound whose binding
///    does not give a finite number (or gives a negative sd, or a low above high) fails
///    the call with kind `PERMANENT`, naming the random value.
/// 5. Answers `output`, or entry k of `outputs` where k counts the earlier *successful*
///    calls of `T` on this agent, the last entry repeating; `{}` with neither. Counting
///    successes, not calls, means that scripted failures and retries do not skip
///    entries: a loop that polls through a failure still sees every stage in order.
///    Calls running at once take entries in the order they finish.
/// 6. Bindings (`${params.path}`, `${random.NAME}`) are resolved against the request's
///    parameters and the values drawn; one that does not resolve fails the call with
///    kind `PERMANENT`, naming the binding and the missing path, and does not count as a
///    success.
///
/// Counters are per agent and task type, shared by every clone of the `Arc` the agent
/// is held in, and safe to update from many threads at once.
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use chrono::{TimeZone, Utc};
/// use serde_json::json;
/// use tradeflow::agent::{Agent, AgentErrorKind, TaskRequest};
/// use tradeflow::clock::{Clock, VirtualClock};
/// use tradeflow::definition::{StepId, TaskType};
/// use tradeflow::sim::{AgentsFile, ScriptedAgent};
///
/// let file = AgentsFile::from_json(r#"{"agents": [{
///     "id": "exec-1", "type": "TRADING_EXECUTION",
///     "tasks": {"ORDER_EXECUTION": {
///         "output": {"orderIds": ["${params.orders.id}"]},
///         "delayMs": 50,
///         "fail": {"times": 1, "kind": "TEMPORARY", "message": "venue busy"}}}}]}"#)?;
/// let start = Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap();
/// let clock = VirtualClock::starting_at(start);
/// let agent = ScriptedAgent::new(&file.agents[0], Arc::new(clock.clone()));
///
/// let mut request = TaskRequest::new(
///     "run-1",
///     StepId::new("order-execution"),
///     "run-1/order-execution/0",
///     TaskType::ORDER_EXECUTION,
///     json!({"orders": {"id": "o-1", "qty": 100}}),
/// );
/// request.item = Some(0);
/// let first = clock.block_on(agent.execute(request.clone()));
/// assert_eq!(first.unwrap_err().kind, AgentErrorKind::Temporary);
/// let second = clock.block_on(agent.execute(request));
/// assert_eq!(second?, json!({"orderIds": ["o-1"]}));
/// assert_eq!(clock.now(), start + std::time::Duration::from_millis(100));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ScriptedAgent {
    descriptor: AgentDescriptor,
    clock: Arc<dyn Clock>,
    tasks: BTreeMap<String, Script>,
}

/// A task script, compiled.
#[derive(Debug)]
struct Script {
    delay: Duration,
    fail: Option<FailScript>,
    /// The random values and outputs, or why they do not compile (only for scripts that
    /// skipped [`AgentsFile::validate`]).
    compiled: Result<Compiled, String>,
    counters: Mutex<Counters>,
}

/// What a script draws and answers.
#[derive(Debug)]
struct Compiled {
    /// The random values, in name order.
    draws: Box<[Draw]>,
    /// The outputs in order (one for `output`, `{}` for neither; never empty).
    outputs: Box<[Template]>,
}

#[derive(Debug, Default)]
struct Counters {
    calls: u64,
    successes: u64,
}

impl Script {
    fn compile(task: &TaskScript, at: &Location) -> Self {
        let mut errors = Vec::new();
        let random_at = at.field("random");
        let draws: Vec<Draw> = task
            .random
            .iter()
            .filter_map(|(name, value)| {
                check_name(&random_at, name, &mut errors);
                value.compile(name, &random_at.field(name.clone()), &mut errors)
            })
            .collect();
        let names = task.random.keys().map(String::as_str);
        let mut template =
            |output: &Value, at: Location| match Template::compile_params(output, &at) {
                Ok(template) => {
                    check_reads(&template, names.clone(), &at, &mut errors);
                    Some(template)
                }
                Err(problems) => {
                    errors.extend(problems);
                    None
                }
            };
        let outputs: Option<Vec<Template>> = match (&task.output, task.outputs.as_deref()) {
            (Some(output), None) => template(output, at.field("output")).map(|one| vec![one]),
            (None, Some(outputs)) if !outputs.is_empty() => outputs
                .iter()
                .enumerate()
                .map(|(index, output)| template(output, at.field("outputs").index(index)))
                .collect(),
            (None, None) => Some(vec![Template::empty_object()]),
            _ => {
                errors.push(DefinitionError::NotAllowed {
                    at: at.clone(),
                    field: "outputs",
                    reason: "a script has one `output` or a non-empty sequence of `outputs`"
                        .to_owned(),
                });
                None
            }
        };
        let compiled = match outputs {
            Some(outputs) if errors.is_empty() => Ok(Compiled {
                draws: draws.into_boxed_slice(),
                outputs: outputs.into_boxed_slice(),
            }),
            _ => Err(ValidationErrors::new(errors)
                .to_string()
                .replace('\n', "; ")),
        };
        Self {
            delay: Duration::from_millis(task.delay_ms.unwrap_or(0)),
            fail: task.fail.clone(),
            compiled,
            counters: Mutex::default(),
        }
    }

    /// The counters. Nothing can panic while they are held, so a poisoned lock still
    /// holds consistent counts.
    fn counters(&self) -> MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The request's parameters and the call's random values, as what `${params…}` and
/// `${random…}` bindings read.
struct Call<'a> {
    parameters: &'a Value,
    random: Value,
}

impl BindingValues for Call<'_> {
    fn input(&self) -> &Value {
        self.parameters
    }

    fn step_output(&self, _index: usize) -> Option<&Value> {
        None
    }

    fn random(&self) -> Option<&Value> {
        Some(&self.random)
    }
}

impl ScriptedAgent {
    /// An agent that plays `script`, waiting on `clock`. Output templates are compiled
    /// here, once.
    ///
    /// A script that [`AgentsFile::validate`] would reject (both `output` and
    /// `outputs`, empty `outputs`, a malformed binding) does not stop the agent from
    /// being built: calls of that task type fail with kind `PERMANENT`, saying why.
    pub fn new(script: &AgentScript, clock: Arc<dyn Clock>) -> Self {
        let tasks_at = Location::root().field("tasks");
        let tasks = script
            .tasks
            .iter()
            .map(|(task_type, task)| {
                let at = tasks_at.field(task_type.clone());
                (task_type.clone(), Script::compile(task, &at))
            })
            .collect();
        Self {
            descriptor: script.descriptor(),
            clock,
            tasks,
        }
    }

    /// How many calls of `task_type` this agent has received (failed ones included);
    /// 0 for a task type it has no script for.
    pub fn calls(&self, task_type: &str) -> u64 {
        self.tasks
            .get(task_type)
            .map_or(0, |script| script.counters().calls)
    }

    fn error(&self, request: &TaskRequest, problem: impl fmt::Display) -> AgentError {
        AgentError::permanent(format!(
            "agent `{}`, task type `{}`: {problem}",
            Quoted(self.descriptor.id.as_str()),
            Quoted(request.task_type.as_str())
        ))
    }
}

#[async_trait::async_trait]
impl Agent for ScriptedAgent {
    fn descriptor(&self) -> &AgentDescriptor {
        &self.descriptor
    }

    async fn execute(&self, request: TaskRequest) -> Result<Value, AgentError> {
        let Some(script) = self.tasks.get(request.task_type.as_str()) else {
            return Err(AgentError::permanent(format!(
                "agent `{}` has no script for task type `{}`",
                Quoted(self.descriptor.id.as_str()),
                Quoted(request.task_type.as_str())
            )));
        };
        let call = {
            let mut counters = script.counters();
            counters.calls += 1;
            counters.calls
        };
        if !script.delay.is_zero() {
            self.clock.sleep(script.delay).await;
        }
        if let Some(fail) = &script.fail {
            if fail.times.is_none_or(|times| call <= u64::from(times)) {
                return Err(AgentError::new(fail.kind, fail.message.clone()));
            }
        }
        let compiled = script.compiled.as_ref().map_err(|problem| {
            self.error(&request, format_args!("script does not compile: {problem}"))
        })?;
        let random = draw_all(&compiled.draws, request.seed, &request.parameters)
            .map_err(|problem| self.error(&request, problem))?;
        let call = Call {
            parameters: &request.parameters,
            random: Value::Object(random),
        };
        let outputs = &compiled.outputs;
        let mut counters = script.counters();
        let last = outputs.len().saturating_sub(1);
        let index = usize::try_from(counters.successes).map_or(last, |k| k.min(last));
        let output = outputs
            .get(index)
            .map_or(Ok(Value::Null), |output| output.resolve(&call))
            .map_err(|error| self.error(&request, unresolved(error)))?;
        counters.successes += 1;
        Ok(output)
    }
}

/// Why a binding did not resolve, naming paths by the `params` root they were written
/// with.
pub(super) fn unresolved(error: EvalError) -> String {
    match error {
        EvalError::MissingPath { binding, path } => {
            let path = path
                .strip_prefix("input")
                .map_or_else(|| path.clone(), |rest| format!("params{rest}"));
            let within = if path.starts_with("random") {
                "the call's random values"
            } else {
                "the task's parameters"
            };
            format!(
                "binding `{}`: `{}` does not exist in {within}",
                Quoted(&binding),
                Quoted(&path)
            )
        }
        other => other.to_string(),
    }
}

/// A [`ScriptedAgent`] for each agent of `file`, in file order, all waiting on `clock`;
/// ready to [`register`](crate::agent::AgentRegistry::register).
pub fn scripted_agents(file: &AgentsFile, clock: Arc<dyn Clock>) -> Vec<Arc<dyn Agent>> {
    file.agents
        .iter()
        .map(|script| Arc::new(ScriptedAgent::new(script, Arc::clone(&clock))) as Arc<dyn Agent>)
        .collect()
}

/// An [`AgentPool`] on `registry` with a pool of scripted agents for each of `file`'s
/// `pools`, made from its template and waiting on `clock`, its `min` agents registered.
///
/// # Errors
/// The [`ScaleError`] of the first pool that could not be added (an id of the pool
/// already registered, say).
pub fn scripted_pools(
    file: &AgentsFile,
    registry: Arc<AgentRegistry>,
    clock: Arc<dyn Clock>,
) -> Result<AgentPool, ScaleError> {
    let pools = AgentPool::new(registry);
    for (agent_type, pool) in &file.pools {
        let template = pool.template.clone();
        let (of_type, clock) = (agent_type.clone(), Arc::clone(&clock));
        let factory: AgentFactory = Arc::new(move |id: AgentId| {
            let script = template.script(id, of_type.clone());
            Arc::new(ScriptedAgent::new(&script, Arc::clone(&clock))) as Arc<dyn Agent>
        });
        pools.add_pool(agent_type.clone(), pool.min, pool.max, factory)?;
    }
    Ok(pools)
}

/// The scaling policy of each of `file`'s `pools`: its `min`, `max` and `cooldownMs`.
pub fn pool_policies(file: &AgentsFile) -> Vec<(AgentType, ScalingPolicy)> {
    file.pools
        .iter()
        .map(|(agent_type, pool)| {
            let policy = ScalingPolicy::new(pool.min, pool.max)
                .cooldown(Duration::from_millis(pool.cooldown_ms));
            (agent_type.clone(), policy)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    use super::*;
    use crate::agent::AgentErrorKind;
    use crate::clock::VirtualClock;

    fn clock() -> VirtualClock {
        VirtualClock::starting_at(Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap())
    }

    fn script(tasks: Value) -> AgentScript {
        serde_json::from_value(json!({"id": "a-1", "type": "T", "tasks": tasks})).unwrap()
    }

    fn request(task_type: &str, parameters: Value) -> TaskRequest {
        TaskRequest::new("r", "s", "r/s", task_type, parameters)
    }

    #[test]
    fn scripted_agents_are_send_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<ScriptedAgent>();
        assert_send_sync::<AgentsFile>();
    }

    #[test]
    fn a_missing_path_is_named_by_its_params_root() {
        let clock = clock();
        let agent = ScriptedAgent::new(
            &script(json!({"X": {"output": {"id": "${params.order.id}"}}})),
            Arc::new(clock.clone()),
        );
        let error = clock
            .block_on(agent.execute(request("X", json!({"orders": []}))))
            .unwrap_err();
        assert_eq!(error.kind, AgentErrorKind::Permanent);
        assert_eq!(
            error.message,
            "agent `a-1`, task type `X`: binding `${params.order.id}`: `params.order` does not \
             exist in the task's parameters"
        );
    }

    #[test]
    fn an_unresolved_binding_is_not_a_success() {
        let clock = clock();
        let agent = ScriptedAgent::new(
            &script(json!({"X": {"outputs": ["${params.n}", "second"]}})),
            Arc::new(clock.clone()),
        );
        let call = |parameters| clock.block_on(agent.execute(request("X", parameters)));
        assert!(call(json!({})).is_err());
        assert_eq!(call(json!({"n": 1})), Ok(json!(1)));
        assert_eq!(call(json!({})), Ok(json!("second")));
        assert_eq!(agent.calls("X"), 3);
        assert_eq!(agent.calls("unscripted"), 0);
    }

    #[test]
    fn scripted_failures_do_not_use_up_outputs() {
        let clock = clock();
        let agent = ScriptedAgent::new(
            &script(json!({"X": {"outputs": [1, 2],
                                 "fail": {"times": 2, "kind": "TIMEOUT", "message": "slow"}}})),
            Arc::new(clock.clone()),
        );
        let answers: Vec<_> = (0..5)
            .map(|_| clock.block_on(agent.execute(request("X", json!({})))))
            .collect();
        let timeout = Err(AgentError::timeout("slow"));
        assert_eq!(
            answers,
            [
                timeout.clone(),
                timeout,
                Ok(json!(1)),
                Ok(json!(2)),
                Ok(json!(2))
            ]
        );
    }

    #[test]
    fn a_script_that_does_not_compile_fails_its_calls_permanently() {
        let clock = clock();
        let mut broken = script(json!({"X": {"output": "${params..x}"}, "Y": {"outputs": []}}));
        broken.tasks.insert("Z".to_owned(), TaskScript::default());
        let agent = ScriptedAgent::new(&broken, Arc::new(clock.clone()));
        for task in ["X", "Y"] {
            let error = clock
                .block_on(agent.execute(request(task, json!({"x": 1}))))
                .unwrap_err();
            assert_eq!(error.kind, AgentErrorKind::Permanent);
            assert!(
                error.message.contains("script does not compile: tasks."),
                "{error}"
            );
        }
        assert_eq!(
            clock.block_on(agent.execute(request("Z", json!({})))),
            Ok(json!({}))
        );
    }
}
