//! Scripted agents do what their file says: outputs, sequences, delays, failures; and
//! agents files are checked like workflows. Agents are called directly (no engine), on
//! the virtual clock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use tradeflow::agent::{Agent, AgentError, AgentErrorKind, TaskRequest};
use tradeflow::clock::{Clock, VirtualClock};
use tradeflow::definition::DefinitionError;
use tradeflow::expr::{BindingValues, Context};
use tradeflow::plan::{AgentTask, ExecutionPlan, StepKind, Until};
use tradeflow::sim::{AgentsFile, ScriptedAgent, scripted_agents};

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap()
}

/// One agent `a-1` with these task scripts, and the clock it waits on.
fn agent(tasks: Value) -> (ScriptedAgent, VirtualClock) {
    let json = json!({"agents": [{"id": "a-1", "type": "T", "tasks": tasks}]});
    let file = AgentsFile::from_json(&json.to_string()).unwrap();
    let clock = VirtualClock::starting_at(start());
    (
        ScriptedAgent::new(&file.agents[0], Arc::new(clock.clone())),
        clock,
    )
}

fn request(task_type: &str, parameters: Value) -> TaskRequest {
    TaskRequest::new("run-1", "step", "run-1/step", task_type, parameters)
}

fn call(
    agent: &ScriptedAgent,
    clock: &VirtualClock,
    task_type: &str,
    parameters: Value,
) -> Result<Value, AgentError> {
    clock.block_on(agent.execute(request(task_type, parameters)))
}

#[test]
fn outputs_bind_the_request_parameters() {
    let (agent, clock) = agent(json!({"ORDER_EXECUTION": {"output": {
        "orderIds": ["${params.orders.id}"],
        "whole": "${params.orders}",
        "label": "${params.orders.qty} x ${params.orders.symbol}",
        "first": "${params.venues[0]}",
        "fixed": {"status": "ACCEPTED"}
    }}}));
    let parameters = json!({"orders": {"id": "o-7", "symbol": "AAPL", "qty": 120},
                            "venues": ["XNAS", "ARCX"]});
    assert_eq!(
        call(&agent, &clock, "ORDER_EXECUTION", parameters),
        Ok(json!({
            "orderIds": ["o-7"],
            "whole": {"id": "o-7", "symbol": "AAPL", "qty": 120},
            "label": "120 x AAPL",
            "first": "XNAS",
            "fixed": {"status": "ACCEPTED"}
        }))
    );
}

#[test]
fn outputs_come_in_order_and_the_last_repeats() {
    let (agent, clock) = agent(json!({"EXECUTION_MONITORING": {"outputs": [
        {"done": false, "stage": 1},
        {"done": false, "stage": 2},
        {"done": true, "filled": "${params.orderIds}"}
    ]}}));
    let answers: Vec<Value> = (0..5)
        .map(|_| {
            call(
                &agent,
                &clock,
                "EXECUTION_MONITORING",
                json!({"orderIds": ["o-1"]}),
            )
            .unwrap()
        })
        .collect();
    let done = json!({"done": true, "filled": ["o-1"]});
    assert_eq!(
        answers,
        [
            json!({"done": false, "stage": 1}),
            json!({"done": false, "stage": 2}),
            done.clone(),
            done.clone(),
            done
        ]
    );
}

#[test]
fn a_script_without_output_answers_an_empty_object() {
    let (agent, clock) = agent(json!({"NOTIFY": {}}));
    assert_eq!(
        call(&agent, &clock, "NOTIFY", json!({"x": 1})),
        Ok(json!({}))
    );
}

#[test]
fn delays_advance_virtual_time_exactly_failing_or_not() {
    let (agent, clock) = agent(json!({
        "SLOW": {"delayMs": 3_600_000, "output": 1},
        "FLAKY": {"delayMs": 250, "fail": {"times": 1, "kind": "TEMPORARY", "message": "busy"}}
    }));
    assert_eq!(call(&agent, &clock, "SLOW", json!({})), Ok(json!(1)));
    assert_eq!(clock.now(), start() + Duration::from_secs(3600));
    assert!(call(&agent, &clock, "FLAKY", json!({})).is_err());
    assert_eq!(clock.now(), start() + Duration::from_millis(3_600_250));
    assert!(call(&agent, &clock, "FLAKY", json!({})).is_ok());
    assert_eq!(clock.now(), start() + Duration::from_millis(3_600_500));
    assert_eq!(clock.pending_timers(), 0);
}

#[test]
fn the_first_times_calls_fail_then_the_script_answers() {
    let (agent, clock) = agent(json!({
        "ORDER_EXECUTION": {"output": {"ok": true},
                            "fail": {"times": 2, "kind": "TEMPORARY", "message": "venue busy"}},
        "OTHER": {"output": {"ok": true}}
    }));
    for _ in 0..2 {
        assert_eq!(
            call(&agent, &clock, "ORDER_EXECUTION", json!({})),
            Err(AgentError::temporary("venue busy"))
        );
    }
    // Counters are per task type: another task type has its own.
    assert_eq!(
        call(&agent, &clock, "OTHER", json!({})),
        Ok(json!({"ok": true}))
    );
    assert_eq!(
        call(&agent, &clock, "ORDER_EXECUTION", json!({})),
        Ok(json!({"ok": true}))
    );
    assert_eq!(agent.calls("ORDER_EXECUTION"), 3);
}

#[test]
fn without_times_every_call_fails() {
    let (agent, clock) = agent(json!({"ORDER_EXECUTION": {
        "output": {"ok": true},
        "fail": {"kind": "AGENT_UNAVAILABLE", "message": "gateway down"}
    }}));
    for _ in 0..10 {
        let error = call(&agent, &clock, "ORDER_EXECUTION", json!({})).unwrap_err();
        assert_eq!(error.kind, AgentErrorKind::AgentUnavailable);
        assert_eq!(error.message, "gateway down");
    }
}

#[test]
fn an_unscripted_task_type_fails_permanently() {
    let (agent, clock) = agent(json!({"MARKET_ANALYSIS": {"delayMs": 1000}}));
    let error = call(&agent, &clock, "ORDER_EXECUTION", json!({})).unwrap_err();
    assert_eq!(error.kind, AgentErrorKind::Permanent);
    assert_eq!(
        error.message,
        "agent `a-1` has no script for task type `ORDER_EXECUTION`"
    );
    // No script, no delay.
    assert_eq!(clock.now(), start());
}

#[test]
fn a_binding_to_a_missing_parameter_fails_permanently_naming_it() {
    let (agent, clock) =
        agent(json!({"ORDER_EXECUTION": {"output": {"id": "${params.orders.id}"}}}));
    let error = call(&agent, &clock, "ORDER_EXECUTION", json!({"orders": [1, 2]})).unwrap_err();
    assert_eq!(error.kind, AgentErrorKind::Permanent);
    assert!(
        error.message.contains("`${params.orders.id}`")
            && error.message.contains("`params.orders.id` does not exist"),
        "{error}"
    );
}

#[test]
fn counters_are_exact_under_concurrent_calls() {
    const THREADS: usize = 8;
    const CALLS: usize = 50;
    let (agent, _clock) = agent(json!({"X": {
        "outputs": [0, 1, 2, 3],
        "fail": {"times": 37, "kind": "TEMPORARY", "message": "busy"}
    }}));
    let agent = Arc::new(agent);
    let answers: Vec<Result<Value, AgentError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                let agent = Arc::clone(&agent);
                scope.spawn(move || {
                    (0..CALLS)
                        .map(|_| {
                            futures::executor::block_on(agent.execute(request("X", json!({}))))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap())
            .collect()
    });
    assert_eq!(agent.calls("X"), (THREADS * CALLS) as u64);
    let failures = answers.iter().filter(|answer| answer.is_err()).count();
    assert_eq!(failures, 37);
    let mut seen = BTreeMap::new();
    for answer in answers.into_iter().flatten() {
        *seen.entry(answer.as_u64().unwrap()).or_insert(0) += 1;
    }
    // Each early entry answered exactly one call; the last answered the rest.
    let successes = THREADS * CALLS - 37;
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [(0, 1), (1, 1), (2, 1), (3, successes - 3)]
    );
}

#[test]
fn agents_file_problems_are_located() {
    let json = r#"{
        "agents": [
            {"id": "exec-1", "type": "TRADING_EXECUTION", "maxConcurency": 2,
             "tasks": {"ORDER_EXECUTION": {
                 "output": {"orderIds": ["${params.orders.id}"]},
                 "fail": {"times": 1, "kind": "BUSY", "message": "venue busy"}}}},
            {"id": "exec-1", "type": "TRADING_EXECUTION",
             "tasks": {"EXECUTION_MONITORING": {"output": {"done": true}, "outputs": [{"done": true}]}}}
        ]
    }"#;
    let errors = AgentsFile::from_json(json).unwrap_err().into_vec();
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 4, "{lines:#?}");
    assert!(
        matches!(&errors[0], DefinitionError::UnknownField { field, suggestion: Some("maxConcurrency"), .. } if field == "maxConcurency"),
        "{lines:#?}"
    );
    assert_eq!(
        lines,
        [
            "agents[0]: unknown field `maxConcurency` (did you mean `maxConcurrency`?)",
            "agents[0].tasks.ORDER_EXECUTION.fail.kind: unknown value `BUSY`, expected one of \
             `TEMPORARY`, `PERMANENT`, `AGENT_UNAVAILABLE`, `TIMEOUT`, `OUTCOME_UNKNOWN`",
            "agents[1].id: invalid value \"exec-1\": duplicate agent id (first used by agents[0])",
            "agents[1].tasks.EXECUTION_MONITORING: `outputs` is not allowed here: `output` is \
             given; a script has one `output` or a sequence of `outputs`, not both",
        ]
    );
}

#[test]
fn the_example_agents_files_load() {
    for (name, json) in [
        (
            "algo-trading",
            include_str!("../examples/agents/algo-trading.json"),
        ),
        (
            "portfolio-rebalancing",
            include_str!("../examples/agents/portfolio-rebalancing.json"),
        ),
    ] {
        let file = AgentsFile::from_json(json).unwrap_or_else(|errors| panic!("{name}:\n{errors}"));
        assert!(file.validate().is_ok());
        let agents = scripted_agents(&file, Arc::new(VirtualClock::starting_at(start())));
        let ids: Vec<&str> = agents
            .iter()
            .map(|agent| agent.descriptor().id.as_str())
            .collect();
        let declared: Vec<&str> = file.agents.iter().map(|agent| agent.id.as_str()).collect();
        assert_eq!(ids, declared);
    }
}

// A walk through the reference workflows with their example agents and inputs: not the
// engine, just enough of docs/workflow-format.md (listed order, conditions, parallel fan-out and
// merge, loops until `done`, TEMPORARY retries, scripted approvals) to show that the
// files fit together and a run can complete.

struct Walk {
    input: Value,
    outputs: Vec<Option<Value>>,
}

impl BindingValues for Walk {
    fn input(&self) -> &Value {
        &self.input
    }

    fn step_output(&self, index: usize) -> Option<&Value> {
        self.outputs.get(index)?.as_ref()
    }
}

/// Calls the first eligible agent (by id), retrying TEMPORARY failures up to 4 calls.
/// Returns the output, the agent and the number of calls.
async fn call_task(
    agents: &[Arc<dyn Agent>],
    task: &AgentTask,
    parameters: Value,
    pinned: Option<&str>,
) -> (Value, String, u32) {
    let mut eligible: Vec<&Arc<dyn Agent>> = agents
        .iter()
        .filter(|agent| {
            let descriptor = agent.descriptor();
            descriptor.agent_type == task.agent_type
                && task
                    .required_capabilities
                    .iter()
                    .all(|capability| descriptor.has_capability(capability))
                && pinned.is_none_or(|id| descriptor.id == id)
        })
        .collect();
    eligible.sort_by(|a, b| a.descriptor().id.cmp(&b.descriptor().id));
    let agent = eligible
        .first()
        .unwrap_or_else(|| panic!("no agent for {:?}", task.agent_type));
    for attempt in 1..=4 {
        let mut request = request(task.task_type.as_str(), parameters.clone());
        request.attempt = attempt;
        match agent.execute(request).await {
            Ok(output) => return (output, agent.descriptor().id.to_string(), attempt),
            Err(error) if error.kind == AgentErrorKind::Temporary => continue,
            Err(error) => panic!("{error}"),
        }
    }
    panic!("retries exhausted")
}

/// `{"results": [...]}` plus each key of the item outputs merged: arrays concatenated,
/// other values collected.
fn merge(results: Vec<Value>) -> Value {
    let mut merged = serde_json::Map::new();
    for result in &results {
        for (key, value) in result.as_object().into_iter().flatten() {
            let slot = merged.entry(key.clone()).or_insert_with(|| json!([]));
            match value {
                Value::Array(items) => slot.as_array_mut().unwrap().extend(items.clone()),
                other => slot.as_array_mut().unwrap().push(other.clone()),
            }
        }
    }
    merged.insert("results".to_owned(), Value::Array(results));
    Value::Object(merged)
}

/// Walks `workflow`; returns each step's output (`None`: skipped) and calls made.
fn walk(
    workflow: &str,
    agents_file: &str,
    input: &str,
) -> (
    BTreeMap<String, Option<Value>>,
    BTreeMap<String, u32>,
    Duration,
) {
    let plan = ExecutionPlan::from_json(workflow).unwrap();
    let file = AgentsFile::from_json(agents_file).unwrap();
    let clock = VirtualClock::starting_at(start());
    let agents = scripted_agents(&file, Arc::new(clock.clone()));
    let mut state = Walk {
        input: serde_json::from_str(input).unwrap(),
        outputs: vec![None; plan.steps().len()],
    };
    for binding in plan.input_bindings() {
        binding
            .resolve(&state)
            .unwrap_or_else(|error| panic!("input: {error}"));
    }
    let mut calls = BTreeMap::new();
    let context = Context::new();
    clock.block_on(async {
        for step in plan.order() {
            let runs = step
                .data_inputs()
                .iter()
                .all(|&index| state.outputs[index].is_some())
                && step
                    .condition()
                    .is_none_or(|condition| condition.evaluate(&state, &context).unwrap())
                && !step
                    .skip_condition()
                    .is_some_and(|condition| condition.evaluate(&state, &context).unwrap());
            if !runs {
                continue;
            }
            let (output, made) = match step.kind() {
                StepKind::Task(task) | StepKind::Decision(task) => {
                    let parameters = task.parameters.resolve(&state).unwrap();
                    let (output, _, made) = call_task(&agents, task, parameters, None).await;
                    (output, made)
                }
                StepKind::Parallel { task, over, .. } => {
                    let parameters = task.parameters.resolve(&state).unwrap();
                    let mut results = Vec::new();
                    let mut made = 0;
                    for item in parameters[over.as_str()].as_array().unwrap() {
                        let mut one = parameters.clone();
                        one[over.as_str()] = item.clone();
                        let (output, _, calls) = call_task(&agents, task, one, None).await;
                        results.push(output);
                        made += calls;
                    }
                    (merge(results), made)
                }
                StepKind::Loop {
                    task,
                    until: Until::Done,
                    max_iterations,
                    ..
                } => {
                    let parameters = task.parameters.resolve(&state).unwrap();
                    let (mut output, agent, mut made) =
                        call_task(&agents, task, parameters.clone(), None).await;
                    let mut iterations = 1;
                    while output["done"] != json!(true) {
                        assert!(iterations < *max_iterations, "loop never done");
                        let (next, _, calls) =
                            call_task(&agents, task, parameters.clone(), Some(&agent)).await;
                        output = next;
                        made += calls;
                        iterations += 1;
                    }
                    output["iterations"] = json!(iterations);
                    (output, made)
                }
                StepKind::HumanApproval { parameters, .. } => {
                    let answer = &file.approvals[step.id().as_str()];
                    clock.sleep(Duration::from_millis(answer.after_ms)).await;
                    assert!(answer.approved);
                    let mut output = parameters.resolve(&state).unwrap();
                    output["approvedBy"] = json!(answer.by);
                    output["comment"] = json!(answer.comment);
                    (output, 0)
                }
                other => panic!("the reference workflows have no {other:?}"),
            };
            state.outputs[step.index()] = Some(output);
            calls.insert(step.id().to_string(), made);
        }
    });
    let outputs = plan
        .steps()
        .iter()
        .map(|step| (step.id().to_string(), state.outputs[step.index()].clone()))
        .collect();
    let elapsed = (clock.now() - start()).to_std().unwrap();
    (outputs, calls, elapsed)
}

#[test]
fn the_algo_trading_files_complete_a_walk_through_the_workflow() {
    let (outputs, calls, elapsed) = walk(
        include_str!("../examples/workflows/algo-trading.json"),
        include_str!("../examples/agents/algo-trading.json"),
        include_str!("../examples/inputs/algo-trading.json"),
    );
    assert!(outputs.values().all(Option::is_some), "{outputs:#?}");
    let output = |id: &str| outputs[id].as_ref().unwrap();
    assert_eq!(output("risk-assessment")["approved"], json!(true));
    assert_eq!(
        calls["risk-assessment"], 2,
        "the scripted TEMPORARY failure is retried"
    );
    assert_eq!(
        output("order-execution")["orderIds"],
        json!(["ord-1", "ord-2"])
    );
    let monitoring = output("execution-monitoring");
    assert_eq!(monitoring["filled"], json!(["ord-1", "ord-2"]));
    assert_eq!(monitoring["iterations"], json!(2));
    assert!(elapsed > Duration::from_secs(4), "{elapsed:?}");
}

#[test]
fn the_portfolio_rebalancing_files_complete_a_walk_through_the_workflow() {
    let (outputs, _, elapsed) = walk(
        include_str!("../examples/workflows/portfolio-rebalancing.json"),
        include_str!("../examples/agents/portfolio-rebalancing.json"),
        include_str!("../examples/inputs/portfolio-rebalancing.json"),
    );
    assert!(outputs.values().all(Option::is_some), "{outputs:#?}");
    let output = |id: &str| outputs[id].as_ref().unwrap();
    assert_eq!(output("execution-approval")["approvedBy"], json!("pm@desk"));
    assert_eq!(
        output("trade-execution")["tradeIds"],
        json!(["t-1", "t-2", "t-3"])
    );
    assert!(elapsed >= Duration::from_secs(60), "{elapsed:?}");
}
