//! Properties over generated input: definitions survive a JSON round trip; no JSON and
//! no expression panics the loader, the validator or evaluation; random DAGs compile to
//! an order that respects every edge; random graphs with a back edge are rejected with
//! a cycle whose every step is on it, in order.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::RngSeed;
use serde_json::{Map, Value, json};
use support::{RunValues, listing};
use tradeflow::definition::{
    AgentCriteria, AgentType, ApprovalSettings, BranchDefinition, Concurrency, ConditionDefinition,
    DefinitionError, Dependency, ErrorHandling, ExecutionPolicy, FailureHandling, LoadBalancing,
    LoopSettings, OnTimeout, ParallelSettings, RecoveryStrategy, ResourceRequirements, RetryPolicy,
    StepDefinition, StepId, StepType, TaskDefinition, TaskType, TriggerDefinition, TriggerType,
    WorkflowDefinition,
};
use tradeflow::expr::{Condition, Context};
use tradeflow::plan::{DrawFormat, ExecutionPlan, StepKind, Until};

/// `cases` cases from a fixed seed, so that every run checks the same inputs; failures
/// are not persisted to files.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(0x7472_6164_6566_6c6f),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// Generators of definitions.

/// Numbers for the float fields: short decimals, which every JSON library round-trips.
fn short_decimal() -> BoxedStrategy<f64> {
    (-1_000_000i64..1_000_000)
        .prop_map(|hundredths| hundredths as f64 / 100.0)
        .boxed()
}

/// Any finite float.
fn finite_float() -> BoxedStrategy<f64> {
    use proptest::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    (POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO).boxed()
}

/// Names, ids and free text: mostly plausible, sometimes anything at all.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[a-zA-Z][a-zA-Z0-9_-]{0,10}",
        1 => any::<String>(),
    ]
    .boxed()
}

fn step_id() -> impl Strategy<Value = StepId> {
    text().prop_map(StepId::new)
}

fn binding_text() -> impl Strategy<Value = String> {
    select(vec![
        "${input.symbols}",
        "${input.orders[0].qty}",
        "${market-analysis.output}",
        "${risk-assessment.output.approved}",
        "${output.done}",
        "buy ${input.qty} of ${input.symbol}",
        "cost $${x}",
        "${unterminated",
    ])
    .prop_map(str::to_owned)
}

/// A JSON value whose floats come from `float`.
fn json_value(float: BoxedStrategy<f64>) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        float.prop_map(Value::from),
        text().prop_map(Value::String),
        binding_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            json_object(inner).prop_map(Value::Object),
        ]
    })
    .boxed()
}

fn json_object(values: BoxedStrategy<Value>) -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(text(), values, 0..4).prop_map(|map| map.into_iter().collect())
}

fn strings() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(text(), 0..3)
}

fn condition_definition() -> impl Strategy<Value = ConditionDefinition> {
    expression().prop_map(|expression| ConditionDefinition { expression })
}

fn agent_criteria() -> impl Strategy<Value = AgentCriteria> {
    (
        text(),
        prop::option::of(strings()),
        prop::option::of(strings()),
        prop::option::of(strings()),
        prop::option::of(select(vec![
            LoadBalancing::RoundRobin,
            LoadBalancing::Weighted,
            LoadBalancing::LeastConnections,
            LoadBalancing::PowerOfTwoChoices,
        ])),
    )
        .prop_map(
            |(agent_type, capabilities, required, preferred, load_balancing)| AgentCriteria {
                agent_type: AgentType::new(agent_type),
                capabilities,
                required_capabilities: required,
                preferred_capabilities: preferred,
                load_balancing,
            },
        )
}

fn task_definition(float: BoxedStrategy<f64>) -> impl Strategy<Value = TaskDefinition> {
    (text(), prop::option::of(json_object(json_value(float)))).prop_map(
        |(task_type, parameters)| TaskDefinition {
            task_type: TaskType::new(task_type),
            parameters,
        },
    )
}

fn retry_policy(float: BoxedStrategy<f64>) -> impl Strategy<Value = RetryPolicy> {
    (
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u64>()),
        prop::option::of(float.clone()),
        prop::option::of(any::<u64>()),
        prop::option::of(float),
    )
        .prop_map(
            |(max_attempts, initial_delay_ms, backoff_multiplier, max_delay_ms, jitter)| {
                RetryPolicy {
                    max_attempts,
                    initial_delay_ms,
                    backoff_multiplier,
                    max_delay_ms,
                    jitter,
                }
            },
        )
}

fn recovery_strategy() -> impl Strategy<Value = RecoveryStrategy> {
    select(vec![
        RecoveryStrategy::Retry,
        RecoveryStrategy::Skip,
        RecoveryStrategy::Substitute,
        RecoveryStrategy::Rollback,
        RecoveryStrategy::AlternativePath,
    ])
}

fn error_handling(float: BoxedStrategy<f64>) -> impl Strategy<Value = ErrorHandling> {
    (
        prop::option::of(retry_policy(float.clone())),
        prop::option::of(prop::collection::vec(recovery_strategy(), 0..4)),
        prop::option::of(prop::collection::btree_map(
            recovery_strategy(),
            float,
            0..3,
        )),
        prop::option::of(step_id()),
    )
        .prop_map(
            |(retry_policy, strategies, strategy_weights, fallback_step)| ErrorHandling {
                retry_policy,
                strategies,
                strategy_weights,
                fallback_step,
            },
        )
}

fn resources(float: BoxedStrategy<f64>) -> impl Strategy<Value = ResourceRequirements> {
    (
        prop::option::of(float.clone()),
        prop::option::of(float.clone()),
        prop::option::of(float),
        prop::option::of(any::<i32>()),
    )
        .prop_map(|(cpu, memory, network, priority)| ResourceRequirements {
            cpu,
            memory,
            network,
            priority,
        })
}

fn step_type() -> impl Strategy<Value = StepType> {
    select(vec![
        StepType::Task,
        StepType::Decision,
        StepType::Parallel,
        StepType::Loop,
        StepType::Condition,
        StepType::HumanApproval,
    ])
}

fn step(float: BoxedStrategy<f64>) -> impl Strategy<Value = StepDefinition> {
    let head = (
        step_id(),
        prop::option::of(text()),
        step_type(),
        prop::option::of(agent_criteria()),
        prop::option::of(task_definition(float.clone())),
        prop::option::of(any::<u64>()),
        prop::option::of(retry_policy(float.clone())),
        prop::option::of(error_handling(float.clone())),
        prop::option::of(condition_definition()),
        prop::option::of(condition_definition()),
    );
    let tail = (
        prop::option::of(json_object(json_value(float.clone()))),
        prop::option::of(any::<bool>()),
        prop::option::of(resources(float)),
        prop::option::of(
            (prop::option::of(text()), prop::option::of(any::<u32>())).prop_map(
                |(for_each, max_concurrency)| ParallelSettings {
                    for_each,
                    max_concurrency,
                },
            ),
        ),
        prop::option::of(
            (
                prop::option::of(expression()),
                prop::option::of(any::<u32>()),
                prop::option::of(any::<u64>()),
            )
                .prop_map(|(until, max_iterations, interval_ms)| LoopSettings {
                    until,
                    max_iterations,
                    interval_ms,
                }),
        ),
        prop::option::of(prop::collection::vec(
            (text(), expression()).prop_map(|(name, when)| BranchDefinition { name, when }),
            0..3,
        )),
        prop::option::of(text()),
        prop::option::of(
            prop::option::of(select(vec![OnTimeout::Reject, OnTimeout::Approve])).prop_map(
                |on_timeout| ApprovalSettings {
                    on_timeout,
                    quorum: None,
                    approvers: None,
                },
            ),
        ),
    );
    (head, tail).prop_map(
        |(
            (
                id,
                name,
                step_type,
                agent_criteria,
                task,
                timeout,
                retry_policy,
                error_handling,
                condition,
                skip_condition,
            ),
            (
                output_mapping,
                optional,
                resource_requirements,
                parallel,
                loop_settings,
                branches,
                default,
                approval,
            ),
        )| StepDefinition {
            id,
            name,
            step_type,
            agent_criteria,
            task,
            timeout,
            retry_policy,
            error_handling,
            condition,
            skip_condition,
            output_mapping,
            optional,
            resource_requirements,
            parallel,
            loop_settings,
            branches,
            default,
            approval,
            decision: None,
            coordination: None,
            max_data_age_ms: None,
            on_stale: None,
            side_effects: None,
            reconcile: None,
            budget: None,
        },
    )
}

fn trigger(float: BoxedStrategy<f64>) -> impl Strategy<Value = TriggerDefinition> {
    (
        select(vec![
            TriggerType::Scheduled,
            TriggerType::Event,
            TriggerType::Threshold,
        ]),
        prop::option::of(select(vec!["0 9 * * 1-5", "*/5 * * * *", "61 * * * *"])),
        prop::option::of(select(vec!["UTC", "America/New_York", "Mars/Olympus"])),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(float),
        prop::option::of(any::<u64>()),
        prop::option::of(condition_definition()),
    )
        .prop_map(
            |(
                trigger_type,
                schedule,
                timezone,
                event_type,
                metric,
                threshold,
                cooldown_ms,
                condition,
            )| {
                TriggerDefinition {
                    trigger_type,
                    schedule: schedule.map(str::to_owned),
                    timezone: timezone.map(str::to_owned),
                    event_type,
                    metric,
                    threshold,
                    cooldown_ms,
                    condition,
                }
            },
        )
}

/// Any definition, valid or not, with every optional field sometimes present.
fn definition(float: BoxedStrategy<f64>) -> impl Strategy<Value = WorkflowDefinition> {
    (
        text(),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::collection::vec(step(float.clone()), 1..4),
        prop::option::of(prop::collection::vec(
            (step_id(), step_id()).prop_map(|(from, to)| Dependency { from, to }),
            0..3,
        )),
        prop::option::of(prop::collection::vec(condition_definition(), 0..2)),
        prop::option::of(
            (
                prop::option::of(select(vec![Concurrency::Sequential, Concurrency::Parallel])),
                prop::option::of(select(vec![
                    FailureHandling::StopOnFailure,
                    FailureHandling::ContinueOnFailure,
                ])),
            )
                .prop_map(|(concurrency, failure_handling)| ExecutionPolicy {
                    concurrency,
                    failure_handling,
                }),
        ),
        prop::option::of(error_handling(float.clone())),
        prop::option::of(any::<u64>()),
        prop::option::of(prop::collection::vec(resources(float.clone()), 0..2)),
        prop::option::of(prop::collection::vec(trigger(float), 0..3)),
    )
        .prop_map(
            |(
                id,
                name,
                version,
                description,
                steps,
                dependencies,
                conditions,
                execution_policy,
                error_handling,
                timeout,
                resource_requirements,
                triggers,
            )| WorkflowDefinition {
                id,
                name,
                version,
                description,
                steps,
                dependencies,
                conditions,
                execution_policy,
                error_handling,
                timeout,
                resource_requirements,
                triggers,
                adaptations: None,
                budgets: None,
                tags: None,
                sensitive: None,
                workflow_type: None,
            },
        )
}

// ---------------------------------------------------------------------------------------
// Generators of hostile input.

/// Pieces of expressions, chosen to hit evalexpr's traps.
const TOKENS: &[&str] = &[
    "(",
    ")",
    "!",
    "-",
    "${",
    "}",
    "\"",
    "'",
    "\\",
    "==",
    "===",
    "!=",
    "!==",
    "&&",
    "||",
    "+",
    "*",
    "/",
    "%",
    "^",
    "<",
    ">=",
    "=",
    "+=",
    ";",
    ",",
    " ",
    "0",
    "1",
    "1.5",
    "1e308",
    "1e309",
    "9223372036854775808",
    "true",
    "false",
    "null",
    "()",
    "x",
    "a.b",
    "market.isOpen()",
    "volatility.level",
    "event.strength",
    "echo",
    "fail()",
    "object()",
    "${input.x}",
    "${input.list}",
    "${input.nothing}",
    "${input.object}",
    "${a.output}",
    "${a.output.v}",
    "${risk-assessment.output.approved}",
    "${output.done}",
    "${nope.output}",
    "${input..x}",
    "$${",
    "len",
    "contains",
    "min",
    "max",
    "abs",
    "floor",
    "round",
    "str::substring",
    "str::to_uppercase",
    "math::abs",
    "math::pow",
    "shl",
    "if",
    "__tf0",
    "é",
    "日本",
    "\u{0}",
    "[0]",
    ".",
    "::",
    "\"é\"",
];

/// Well-formed expressions over host variables and functions, built-ins, literals of
/// every kind and, when `bindings`, `${…}` bindings.
fn well_formed(bindings: bool) -> BoxedStrategy<String> {
    let mut atoms = vec![
        "0",
        "1",
        "-1",
        "0.5",
        "2",
        "\"\"",
        "\"héllo\"",
        "\"a===b\"",
        "true",
        "false",
        "null",
        "x",
        "a.b",
        "volatility.level",
        "event.strength",
        "market.isOpen()",
    ];
    if bindings {
        atoms.extend([
            "${input.x}",
            "${input.list}",
            "${input.nothing}",
            "${input.list[1]}",
            "${a.output.v}",
            "${risk-assessment.output.approved}",
        ]);
    }
    let troublemakers = vec![
        "1e308",
        "1e309",
        "9223372036854775808",
        "unknown.name",
        "fail()",
        "object()",
        "()",
        "${input.object}",
        "${a.output}",
    ]
    .into_iter()
    .filter(move |atom| bindings || !atom.starts_with("${"))
    .collect::<Vec<_>>();
    let atom = prop_oneof![6 => select(atoms), 1 => select(troublemakers)].prop_map(str::to_owned);
    atom.prop_recursive(5, 32, 3, |inner| {
        let operator = select(vec![
            "==", "===", "!=", "!==", "<", "<=", ">", ">=", "&&", "||", "+", "-", "*", "/", "%",
            "^",
        ]);
        let function = select(vec![
            "len",
            "contains",
            "min",
            "max",
            "abs",
            "floor",
            "ceil",
            "round",
            "echo",
            "str::substring",
            "str::to_uppercase",
            "math::abs",
            "shl",
            "if",
        ]);
        prop_oneof![
            (inner.clone(), operator, inner.clone())
                .prop_map(|(left, operator, right)| format!("{left} {operator} {right}")),
            inner.clone().prop_map(|inner| format!("({inner})")),
            inner.clone().prop_map(|inner| format!("!{inner}")),
            inner.clone().prop_map(|inner| format!("-{inner}")),
            (function, prop::collection::vec(inner, 0..4))
                .prop_map(|(function, arguments)| format!("{function}({})", arguments.join(", "))),
        ]
    })
    .boxed()
}

/// Boolean expressions that type-check, so that evaluation runs to the end: comparisons
/// of arithmetic over numeric variables, bindings and built-ins, joined by `&&`, `||`
/// and `!`.
fn boolean(bindings: bool) -> BoxedStrategy<String> {
    let mut numbers = vec![
        "0",
        "1",
        "0.5",
        "-2",
        "1e300",
        "x",
        "volatility.level",
        "event.strength",
        "len(\"héllo\")",
    ];
    if bindings {
        numbers.extend(["${input.x}", "${a.output.v}", "len(${input.list})"]);
    }
    let number = select(numbers)
        .prop_map(str::to_owned)
        .prop_recursive(3, 12, 2, |inner| {
            let operator = select(vec!["+", "-", "*", "/", "%", "^"]);
            let function = select(vec!["abs", "floor", "ceil", "round"]);
            prop_oneof![
                (inner.clone(), operator, inner.clone())
                    .prop_map(|(left, operator, right)| format!("({left} {operator} {right})")),
                (function, inner.clone())
                    .prop_map(|(function, inner)| format!("{function}({inner})")),
                (inner.clone(), inner).prop_map(|(left, right)| format!("max({left}, {right})")),
            ]
        });
    let comparison = (
        number.clone(),
        select(vec!["==", "===", "!=", "!==", "<", "<=", ">", ">="]),
        number,
    )
        .prop_map(|(left, operator, right)| format!("{left} {operator} {right}"));
    let mut truths = vec!["true", "false", "market.isOpen()"];
    if bindings {
        truths.push("${risk-assessment.output.approved}");
    }
    prop_oneof![comparison, select(truths).prop_map(str::to_owned)]
        .prop_recursive(3, 12, 2, |inner| {
            prop_oneof![
                (
                    inner.clone(),
                    select(vec!["&&", "||", "==", "!="]),
                    inner.clone()
                )
                    .prop_map(|(left, operator, right)| format!("({left}) {operator} ({right})")),
                inner.prop_map(|inner| format!("!({inner})")),
            ]
        })
        .boxed()
}

/// Expression text: well-formed expressions, token soup, long runs of one token,
/// deep nesting, and arbitrary strings.
fn expression() -> BoxedStrategy<String> {
    let token = select(TOKENS);
    let soup = prop::collection::vec((token.clone(), 1usize..4), 0..24).prop_map(|parts| {
        parts
            .iter()
            .map(|(token, times)| token.repeat(*times))
            .collect::<String>()
    });
    prop_oneof![
        3 => boolean(false),
        3 => boolean(true),
        2 => well_formed(false),
        2 => well_formed(true),
        4 => soup.clone(),
        1 => (token.clone(), 1usize..3000).prop_map(|(token, times)| token.repeat(times)),
        1 => (soup, 1usize..2000).prop_map(|(inner, depth)| {
            format!("{}{inner}{}", "(".repeat(depth), ")".repeat(depth))
        }),
        1 => any::<String>(),
        1 => "[()!${}\"'=<>&|+*/%^;,. 0-9a-zé-]{0,64}",
    ]
    .boxed()
}

/// A host context with variables and functions the tokens name.
fn context() -> Context {
    Context::new()
        .with_variable("x", json!(1))
        .with_variable("a.b", json!("s"))
        .with_variable("volatility", json!({"level": 0.2}))
        .with_variable("event", json!({"strength": 0.8}))
        .with_function("market.isOpen", |_| Ok(json!(true)))
        .with_function("echo", |args| Ok(Value::Array(args.to_vec())))
        .with_function("fail", |_| Err("failed on purpose".to_owned()))
        .with_function("object", |_| Ok(json!({"a": 1})))
}

/// Run values under which bindings resolve to every kind of value, or fail to.
fn run_values() -> Vec<RunValues> {
    let input = json!({
        "x": 1.5, "list": [1, "a", null], "nothing": null, "object": {"k": 1}
    });
    vec![
        RunValues::default(),
        RunValues {
            own: Some(json!({"done": true})),
            ..RunValues::with_input(input.clone())
                .output(0, json!({"v": 1}))
                .output(1, json!({"approved": true}))
        },
        RunValues::with_input(input)
            .output(0, json!([1, 2]))
            .output(1, json!({"approved": "yes"})),
    ]
}

/// Arbitrary JSON.
fn any_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        finite_float().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        expression().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
    .boxed()
}

/// A value for a workflow field: sometimes plausible, sometimes anything.
fn field_value(plausible: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    prop_oneof![8 => plausible, 1 => any_json()].boxed()
}

/// An object with a random subset of `fields`.
fn object_of(fields: Vec<(&'static str, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
    let entries: Vec<_> = fields
        .into_iter()
        .map(|(key, value)| prop::option::weighted(0.6, value).prop_map(move |v| (key, v)))
        .collect();
    entries
        .prop_map(|entries| {
            Value::Object(
                entries
                    .into_iter()
                    .filter_map(|(key, value)| value.map(|value| (key.to_owned(), value)))
                    .collect(),
            )
        })
        .boxed()
}

/// JSON shaped like a workflow, with plausible and hostile values mixed, to reach deep
/// into the validator.
fn workflow_shaped_json() -> BoxedStrategy<Value> {
    let ids = || {
        select(vec!["a", "b", "risk-assessment", "c", "input", "a.b", ""])
            .prop_map(Value::from)
            .boxed()
    };
    let expression_object = || {
        expression()
            .prop_map(|text| json!({"expression": text}))
            .boxed()
    };
    let parameters = json_value(short_decimal());
    let step = object_of(vec![
        ("id", field_value(ids())),
        (
            "type",
            field_value(
                select(vec![
                    "task",
                    "decision",
                    "parallel",
                    "loop",
                    "condition",
                    "human_approval",
                    "TASK",
                ])
                .prop_map(Value::from)
                .boxed(),
            ),
        ),
        ("agentCriteria", field_value(Just(json!({"type": "AGENT"})).boxed())),
        (
            "task",
            field_value(
                parameters
                    .clone()
                    .prop_map(|parameters| json!({"type": "T", "parameters": {"p": parameters, "list": "${input.list}"}}))
                    .boxed(),
            ),
        ),
        ("condition", field_value(expression_object())),
        ("skipCondition", field_value(expression_object())),
        (
            "outputMapping",
            field_value(binding_text().prop_map(|b| json!({"m": b})).boxed()),
        ),
        (
            "loop",
            field_value(expression().prop_map(|until| json!({"until": until, "maxIterations": 3})).boxed()),
        ),
        (
            "branches",
            field_value(
                prop::collection::vec(expression(), 0..3)
                    .prop_map(|whens| {
                        Value::Array(
                            whens
                                .into_iter()
                                .enumerate()
                                .map(|(i, when)| json!({"name": format!("b{i}"), "when": when}))
                                .collect(),
                        )
                    })
                    .boxed(),
            ),
        ),
        ("parallel", field_value(Just(json!({"forEach": "list", "maxConcurrency": 2})).boxed())),
        ("retryPolicy", field_value(Just(json!({"maxAttempts": 3, "jitter": 0.5})).boxed())),
        (
            "errorHandling",
            field_value(ids().prop_map(|id| json!({"fallbackStep": id})).boxed()),
        ),
        ("timeout", field_value(Just(json!(1000)).boxed())),
    ]);
    let dependency = object_of(vec![
        ("from", field_value(ids())),
        ("to", field_value(ids())),
    ]);
    let trigger = object_of(vec![
        (
            "type",
            field_value(
                select(vec!["SCHEDULED", "EVENT", "THRESHOLD"])
                    .prop_map(Value::from)
                    .boxed(),
            ),
        ),
        (
            "schedule",
            field_value(
                select(vec!["0 9 * * 1-5", "0 0 30 2 *", "* * * * * *", "x"])
                    .prop_map(Value::from)
                    .boxed(),
            ),
        ),
        ("eventType", field_value(Just(json!("TICK")).boxed())),
        ("metric", field_value(Just(json!("m")).boxed())),
        ("threshold", field_value(Just(json!(0.5)).boxed())),
        ("condition", field_value(expression_object())),
    ]);
    object_of(vec![
        ("id", field_value(Just(json!("w")).boxed())),
        (
            "steps",
            field_value(
                prop::collection::vec(step, 0..5)
                    .prop_map(Value::Array)
                    .boxed(),
            ),
        ),
        (
            "dependencies",
            field_value(
                prop::collection::vec(dependency, 0..4)
                    .prop_map(Value::Array)
                    .boxed(),
            ),
        ),
        (
            "conditions",
            field_value(
                prop::collection::vec(expression_object(), 0..2)
                    .prop_map(Value::Array)
                    .boxed(),
            ),
        ),
        (
            "triggers",
            field_value(
                prop::collection::vec(trigger, 0..3)
                    .prop_map(Value::Array)
                    .boxed(),
            ),
        ),
        (
            "executionPolicy",
            field_value(Just(json!({"concurrency": "SEQUENTIAL"})).boxed()),
        ),
    ])
}

/// Loads, validates, and — if valid — uses everything a plan offers; checks that every
/// problem can be displayed. Must not panic.
fn exercise(json: &str) {
    let _ = WorkflowDefinition::from_json(json);
    match ExecutionPlan::from_json(json) {
        Ok(plan) => {
            let _ = plan.draw(DrawFormat::Dot);
            let _ = plan.draw(DrawFormat::Mermaid);
            assert_eq!(plan.order().count(), plan.steps().len());
            evaluate_everything(&plan);
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for error in &errors {
                let _ = error.to_string();
                let _ = error.location().map(ToString::to_string);
            }
        }
    }
}

/// Evaluates every condition and template of a plan under several run values.
fn evaluate_everything(plan: &ExecutionPlan) {
    let context = context();
    for values in run_values() {
        for condition in plan.conditions() {
            let _ = condition.evaluate(&values, &context);
        }
        for trigger in plan.triggers() {
            if let Some(condition) = trigger.condition() {
                let _ = condition.evaluate_with(&context);
            }
        }
        for step in plan.steps() {
            let mut conditions: Vec<&Condition> = step
                .condition()
                .into_iter()
                .chain(step.skip_condition())
                .collect();
            match step.kind() {
                StepKind::Loop {
                    until: Until::Condition(until),
                    ..
                } => conditions.push(until),
                StepKind::Condition { branches, .. } => {
                    conditions.extend(branches.iter().map(|branch| &branch.when));
                }
                _ => {}
            }
            for condition in conditions {
                let _ = condition.evaluate(&values, &context);
            }
            if let Some(task) = step.agent_task() {
                let _ = task.parameters.resolve(&values);
            }
            if let Some(mapping) = step.output_mapping() {
                let _ = mapping.resolve(&values);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Round trips.

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn serialize_then_parse_gives_the_same_definition(definition in definition(short_decimal())) {
        let json = definition.to_json();
        let parsed = WorkflowDefinition::from_json(&json);
        prop_assert_eq!(parsed.as_ref(), Ok(&definition), "{}", json);
    }

    #[test]
    fn serialize_then_parse_keeps_every_finite_float(definition in definition(finite_float())) {
        let json = definition.to_json();
        let parsed = WorkflowDefinition::from_json(&json);
        prop_assert_eq!(parsed.as_ref(), Ok(&definition), "{}", json);
    }

    #[test]
    fn parse_serialize_parse_is_stable(definition in definition(finite_float())) {
        let first = WorkflowDefinition::from_json(&definition.to_json());
        prop_assert!(first.is_ok(), "{:?}", first);
        let first = first.unwrap();
        let json = first.to_json();
        let second = WorkflowDefinition::from_json(&json);
        prop_assert_eq!(second.as_ref(), Ok(&first), "{}", json);
    }
}

// ---------------------------------------------------------------------------------------
// No input panics.

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_json_never_panics_the_loader_or_the_validator(value in any_json()) {
        exercise(&value.to_string());
        let _ = WorkflowDefinition::from_value(&value);
    }

    #[test]
    fn arbitrary_text_never_panics_the_loader_or_the_validator(
        text in prop_oneof![
            any::<String>(),
            "[\\[\\]{}\",:0-9a-z.eE+\\- \n\\\\]{0,80}",
            expression(),
        ]
    ) {
        exercise(&text);
    }

    #[test]
    fn workflow_shaped_json_never_panics_the_loader_or_the_validator(value in workflow_shaped_json()) {
        exercise(&value.to_string());
    }

    #[test]
    fn arbitrary_expressions_never_panic_parsing_or_evaluation(text in expression()) {
        if let Ok(condition) = Condition::parse(&text) {
            let _ = condition.evaluate_with(&context());
            let _ = condition.evaluate_with(&Context::new());
        }
    }

    #[test]
    fn arbitrary_expressions_never_panic_in_any_place_of_a_workflow(text in expression()) {
        let definition = json!({
            "id": "w",
            "steps": [
                {"id": "a", "type": "task", "agentCriteria": {"type": "X"}, "task": {"type": "T"}},
                {"id": "risk-assessment", "type": "task", "agentCriteria": {"type": "X"},
                 "task": {"type": "T"}},
                {"id": "b", "type": "task", "agentCriteria": {"type": "X"}, "task": {"type": "T"},
                 "condition": {"expression": text}, "skipCondition": {"expression": text}},
                {"id": "route", "type": "condition",
                 "branches": [{"name": "x", "when": text}]},
                {"id": "poll", "type": "loop", "agentCriteria": {"type": "X"},
                 "task": {"type": "T"}, "loop": {"until": text}}
            ],
            "conditions": [{"expression": text}],
            "triggers": [{"type": "EVENT", "eventType": "TICK", "condition": {"expression": text}}]
        });
        exercise(&definition.to_string());
    }
}

// ---------------------------------------------------------------------------------------
// Graphs.

/// How one step comes to wait for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Dependency,
    Parameter,
    Condition,
}

fn via(dependencies_allowed: bool) -> BoxedStrategy<Via> {
    if dependencies_allowed {
        select(vec![Via::Dependency, Via::Parameter, Via::Condition]).boxed()
    } else {
        select(vec![Via::Parameter, Via::Condition]).boxed()
    }
}

/// A workflow graph: `steps` steps (ids `step-0`, …), edges `(from, to, via)`, and
/// whether `dependencies` is left out (so that listed order adds edges too).
#[derive(Debug, Clone)]
struct Graph {
    steps: usize,
    edges: Vec<(usize, usize, Via)>,
    listed_order: bool,
}

fn id(index: usize) -> String {
    format!("step-{index}")
}

impl Graph {
    fn to_json(&self) -> Value {
        let steps: Vec<Value> = (0..self.steps)
            .map(|to| {
                let incoming = |kind: Via| {
                    self.edges
                        .iter()
                        .filter(move |(_, target, via)| *target == to && *via == kind)
                        .map(|(from, _, _)| *from)
                };
                let parameters: Map<String, Value> = incoming(Via::Parameter)
                    .map(|from| {
                        (
                            format!("from{from}"),
                            json!(format!("${{{}.output.value}}", id(from))),
                        )
                    })
                    .collect();
                let mut step = json!({
                    "id": id(to),
                    "type": "task",
                    "agentCriteria": {"type": "AGENT"},
                    "task": {"type": "TASK", "parameters": parameters}
                });
                let tests: Vec<String> = incoming(Via::Condition)
                    .map(|from| format!("${{{}.output.ok}} === true", id(from)))
                    .collect();
                if !tests.is_empty() {
                    step["condition"] = json!({"expression": tests.join(" && ")});
                }
                step
            })
            .collect();
        let mut workflow = json!({"id": "random", "steps": steps});
        if !self.listed_order {
            let dependencies: Vec<Value> = self
                .edges
                .iter()
                .filter(|(_, _, via)| *via == Via::Dependency)
                .map(|(from, to, _)| json!({"from": id(*from), "to": id(*to)}))
                .collect();
            workflow["dependencies"] = Value::Array(dependencies);
        }
        workflow
    }

    /// Every ordering edge the plan must have, with whether it carries data, is a
    /// dependency, comes from listed order.
    fn expected_edges(&self) -> BTreeMap<(usize, usize), (bool, bool, bool)> {
        let mut edges: BTreeMap<(usize, usize), (bool, bool, bool)> = BTreeMap::new();
        for &(from, to, via) in &self.edges {
            let entry = edges.entry((from, to)).or_default();
            match via {
                Via::Dependency => entry.1 = true,
                Via::Parameter | Via::Condition => entry.0 = true,
            }
        }
        if self.listed_order {
            for to in 1..self.steps {
                edges.entry((to - 1, to)).or_default().2 = true;
            }
        }
        edges
    }
}

/// A random DAG: edges follow a hidden random order of the steps (listed order when
/// `dependencies` is left out, since listed order then adds edges of its own).
fn dag() -> impl Strategy<Value = Graph> {
    (1usize..10, any::<bool>())
        .prop_flat_map(|(steps, listed_order)| {
            let identity: Vec<usize> = (0..steps).collect();
            let hidden_order = if listed_order {
                Just(identity).boxed()
            } else {
                Just(identity).prop_shuffle().boxed()
            };
            let pairs = steps * (steps - 1) / 2;
            (
                Just(steps),
                Just(listed_order),
                hidden_order,
                prop::collection::vec(prop::option::weighted(0.4, via(!listed_order)), pairs),
            )
        })
        .prop_map(|(steps, listed_order, hidden_order, picks)| {
            let mut edges = Vec::new();
            let mut picks = picks.into_iter();
            for a in 0..steps {
                for b in a + 1..steps {
                    if let Some(Some(via)) = picks.next() {
                        edges.push((hidden_order[a], hidden_order[b], via));
                    }
                }
            }
            Graph {
                steps,
                edges,
                listed_order,
            }
        })
}

/// A random DAG plus a path from one step to another and an edge back: a cycle.
fn cyclic_graph() -> impl Strategy<Value = Graph> {
    (
        dag(),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
    )
        .prop_filter("at least two steps", |(graph, _, _)| graph.steps >= 2)
        .prop_flat_map(|(graph, first, second)| {
            let (mut a, mut b) = (first.index(graph.steps), second.index(graph.steps));
            if a == b {
                b = (a + 1) % graph.steps;
            }
            if a > b {
                std::mem::swap(&mut a, &mut b);
            }
            let length = b - a + 1;
            let allow_dependencies = !graph.listed_order;
            (
                Just(graph),
                prop::collection::vec(any::<prop::sample::Index>(), length - 2),
                prop::collection::vec(via(allow_dependencies), length),
                Just((a, b)),
            )
        })
        .prop_map(|(mut graph, middle, vias, (a, b))| {
            // A path a -> (some other steps) -> b, then b -> a.
            let mut others: Vec<usize> = (0..graph.steps).filter(|&s| s != a && s != b).collect();
            let mut path = vec![a];
            for pick in &middle {
                if others.is_empty() {
                    break;
                }
                path.push(others.remove(pick.index(others.len())));
            }
            path.push(b);
            let mut vias = vias.into_iter();
            for pair in path.windows(2) {
                graph
                    .edges
                    .push((pair[0], pair[1], vias.next().unwrap_or(Via::Parameter)));
            }
            graph
                .edges
                .push((b, a, vias.next().unwrap_or(Via::Parameter)));
            graph
        })
}

/// Kahn's algorithm taking the lowest index first: the documented tie-break.
fn reference_order(
    steps: usize,
    edges: &BTreeMap<(usize, usize), (bool, bool, bool)>,
) -> Vec<usize> {
    let mut incoming = vec![0usize; steps];
    for &(_, to) in edges.keys() {
        incoming[to] += 1;
    }
    let mut ready: BTreeSet<usize> = (0..steps).filter(|&s| incoming[s] == 0).collect();
    let mut order = Vec::new();
    while let Some(next) = ready.pop_first() {
        order.push(next);
        for &(from, to) in edges.keys() {
            if from == next {
                incoming[to] -= 1;
                if incoming[to] == 0 {
                    ready.insert(to);
                }
            }
        }
    }
    order
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn random_dags_compile_to_an_order_that_respects_every_edge(graph in dag()) {
        let json = graph.to_json();
        let plan = match ExecutionPlan::from_json(&json.to_string()) {
            Ok(plan) => plan,
            Err(errors) => return Err(TestCaseError::fail(format!("{errors}\n{json:#}"))),
        };
        let order = plan.order_indices();
        let mut sorted = order.to_vec();
        sorted.sort_unstable();
        prop_assert_eq!(sorted, (0..graph.steps).collect::<Vec<_>>());
        let mut position = vec![0; graph.steps];
        for (at, &step) in order.iter().enumerate() {
            position[step] = at;
        }
        let expected = graph.expected_edges();
        for &(from, to) in expected.keys() {
            prop_assert!(position[from] < position[to], "{} before {} in {:?}", from, to, order);
        }
        // The plan has exactly these edges, for these reasons.
        for to in 0..graph.steps {
            let mut found: Vec<(usize, (bool, bool, bool))> = plan
                .predecessors(to)
                .map(|(from, edge)| (from, (edge.is_data(), edge.is_dependency(), edge.is_order())))
                .collect();
            found.sort_unstable();
            let wanted: Vec<(usize, (bool, bool, bool))> = expected
                .iter()
                .filter(|((_, target), _)| *target == to)
                .map(|((from, _), why)| (*from, *why))
                .collect();
            prop_assert_eq!(found, wanted, "predecessors of {}", to);
            let data: Vec<usize> = expected
                .iter()
                .filter(|((_, target), why)| *target == to && why.0)
                .map(|((from, _), _)| *from)
                .collect();
            prop_assert_eq!(plan.steps()[to].data_inputs(), &data[..]);
        }
        // Listed order breaks ties.
        prop_assert_eq!(order.to_vec(), reference_order(graph.steps, &expected));
    }

    #[test]
    fn a_back_edge_is_reported_as_a_cycle_along_real_edges(graph in cyclic_graph()) {
        let json = graph.to_json();
        let errors = match ExecutionPlan::from_json(&json.to_string()) {
            Ok(_) => return Err(TestCaseError::fail(format!("a cycle compiled: {json:#}"))),
            Err(errors) => errors.into_vec(),
        };
        let edges: HashSet<(String, String)> = graph
            .expected_edges()
            .keys()
            .map(|&(from, to)| (id(from), id(to)))
            .collect();
        prop_assert!(!errors.is_empty());
        for error in &errors {
            let DefinitionError::Cycle { at, steps, .. } = error else {
                return Err(TestCaseError::fail(format!("only cycles expected:\n{}", listing(&errors))));
            };
            let names: Vec<&str> = steps.iter().map(StepId::as_str).collect();
            prop_assert!(names.len() >= 3, "{:?}", names);
            prop_assert_eq!(names.first(), names.last(), "closed: {:?}", names);
            let distinct: HashSet<&str> = names[1..].iter().copied().collect();
            prop_assert_eq!(distinct.len(), names.len() - 1, "simple: {:?}", names);
            for pair in names.windows(2) {
                prop_assert!(
                    edges.contains(&(pair[0].to_owned(), pair[1].to_owned())),
                    "{} -> {} is not an edge; cycle {:?}", pair[0], pair[1], names
                );
            }
            prop_assert_eq!(at.step_id().map(StepId::as_str), names.first().copied());
        }
    }
}
