//! Costs of loading a definition and of the per-call work compiled ahead of time.
//!
//! - `compile_10k_steps`: parse + validate + compile a 10,000-step definition shaped like
//!   real workflows, and each phase on its own (target: under 50 ms for the whole).
//! - `condition_two_bindings`: one evaluation of a compiled two-binding condition
//!   (target: under 300 ns).
//! - `template_resolve`: resolving the parameters of algo-trading's `position-sizing`.
//!
//! Run with `cargo bench --bench definition`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, SamplingMode, criterion_group, criterion_main};
use serde_json::{Value, json};
use tradeflow::definition::WorkflowDefinition;
use tradeflow::expr::{BindingValues, Context};
use tradeflow::plan::ExecutionPlan;

const STEPS: usize = 10_000;

/// Run values by step index, as the executor holds them.
struct RunValues {
    input: Value,
    outputs: Vec<Option<Value>>,
}

impl BindingValues for RunValues {
    fn input(&self) -> &Value {
        &self.input
    }

    fn step_output(&self, index: usize) -> Option<&Value> {
        self.outputs.get(index)?.as_ref()
    }
}

/// A deterministic xorshift generator, so every run benchmarks the same workflow.
struct Xorshift(u64);

impl Xorshift {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }
}

/// A workflow of `count` steps: mostly tasks binding two or three earlier steps and the
/// input, a two-binding condition on every 5th step, an explicit `dependencies` array, and
/// a parallel, a loop and a condition step in every hundred.
fn large_workflow(count: usize) -> String {
    const AGENTS: [(&str, &str); 4] = [
        ("MARKET_ANALYSIS", "MARKET_ANALYSIS"),
        ("RISK_MANAGEMENT", "RISK_ASSESSMENT"),
        ("PORTFOLIO_MANAGEMENT", "POSITION_SIZING"),
        ("TRADING_EXECUTION", "ORDER_EXECUTION"),
    ];
    let mut random = Xorshift(0x9E37_79B9_7F4A_7C15);
    // An earlier step, mostly a near one, sometimes far back.
    let mut earlier = |index: usize| -> usize {
        let reach = if random.below(4) == 0 { 200 } else { 8 };
        index - 1 - random.below(reach.min(index))
    };
    let mut steps = Vec::with_capacity(count);
    let mut dependencies = Vec::with_capacity(count);
    for index in 0..count {
        let id = format!("step-{index}");
        let (agent_type, task_type) = AGENTS[index % AGENTS.len()];
        let criteria = json!({"type": agent_type, "capabilities": ["technical-analysis"]});
        if index < 3 {
            steps.push(json!({
                "id": id, "name": format!("Market analysis {index}"), "type": "task",
                "agentCriteria": criteria,
                "task": {"type": task_type, "parameters": {
                    "symbols": "${input.symbols}",
                    "timeframe": "${input.timeframe}",
                    "indicators": ["RSI", "MACD", "BOLLINGER_BANDS"],
                }},
            }));
            continue;
        }
        let (a, b, c) = (earlier(index), earlier(index), earlier(index));
        dependencies.push(json!({"from": format!("step-{a}"), "to": id}));
        let step = match index % 100 {
            50 => json!({
                "id": id, "type": "parallel",
                "agentCriteria": {"type": "TRADING_EXECUTION"},
                "task": {"type": "ORDER_EXECUTION", "parameters": {
                    "orders": format!("${{step-{a}.output.orders}}"),
                    "account": "${input.accountId}",
                    "executionStrategy": "TWAP",
                }},
                "parallel": {"forEach": "orders", "maxConcurrency": 8},
            }),
            75 => json!({
                "id": id, "type": "loop",
                "agentCriteria": {"type": "TRADING_EXECUTION"},
                "task": {"type": "EXECUTION_MONITORING", "parameters": {
                    "orderIds": format!("${{step-{a}.output.orderIds}}"),
                    "monitoringDuration": 300_000,
                }},
                "loop": {"until": "${output.filled} === true", "maxIterations": 20, "intervalMs": 5000},
            }),
            99 => json!({
                "id": id, "type": "condition",
                "branches": [
                    {"name": "buy", "when": format!("${{step-{a}.output.score}} > 0.7")},
                    {"name": "sell", "when": format!("${{step-{b}.output.score}} < 0.3")},
                ],
                "default": "hold",
            }),
            _ => {
                let mut parameters = json!({
                    "signals": format!("${{step-{a}.output.signals}}"),
                    "riskMetrics": format!("${{step-{b}.output.risk}}"),
                    "availableCapital": "${input.availableCapital}",
                    "note": format!("rebalance ${{step-{c}.output.symbol}} for ${{input.portfolioId}}"),
                    "lookback": 20,
                    "indicators": ["RSI", "MACD"],
                });
                if index % 3 == 0 {
                    parameters["limits"] = json!({"maxPosition": format!("${{step-{c}.output.limit}}"), "currency": "USD"});
                }
                json!({
                    "id": id, "name": format!("Position sizing {index}"), "type": "task",
                    "agentCriteria": criteria,
                    "task": {"type": task_type, "parameters": parameters},
                    "retryPolicy": {"maxAttempts": 3, "initialDelayMs": 500},
                })
            }
        };
        steps.push(step);
        if index % 5 == 0 {
            let (x, y) = (earlier(index), earlier(index));
            let condition = format!(
                "${{step-{x}.output.approved}} === true && ${{step-{y}.output.score}} > 0.5"
            );
            if let Some(step) = steps.last_mut() {
                step["condition"] = json!({"expression": condition});
            }
        }
    }
    let workflow = json!({
        "id": "large-workflow",
        "name": "Ten thousand steps",
        "version": "1.0.0",
        "steps": steps,
        "dependencies": dependencies,
        "executionPolicy": {"concurrency": "PARALLEL", "failureHandling": "STOP_ON_FAILURE"},
    });
    serde_json::to_string_pretty(&workflow).expect("the generated workflow serializes")
}

fn compile_10k_steps(c: &mut Criterion) {
    let json = large_workflow(STEPS);
    let definition = WorkflowDefinition::from_json(&json).expect("the generated workflow loads");
    let plan = ExecutionPlan::compile(definition.clone()).expect("the generated workflow compiles");
    assert_eq!(plan.steps().len(), STEPS);

    let mut group = c.benchmark_group("compile_10k_steps");
    group
        .sample_size(20)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));
    // Dropping the result is not part of loading, so it happens outside the timing.
    group.bench_function("from_json", |b| {
        b.iter_with_large_drop(|| ExecutionPlan::from_json(black_box(&json)))
    });
    group.bench_function("definition_from_json", |b| {
        b.iter_with_large_drop(|| WorkflowDefinition::from_json(black_box(&json)))
    });
    group.bench_function("compile", |b| {
        b.iter_batched(
            || definition.clone(),
            ExecutionPlan::compile,
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn condition_two_bindings(c: &mut Criterion) {
    let plan = ExecutionPlan::from_json(
        r#"{"id": "gate", "steps": [
            {"id": "a", "type": "task", "agentCriteria": {"type": "RISK_MANAGEMENT"},
             "task": {"type": "RISK_ASSESSMENT"}},
            {"id": "b", "type": "task", "agentCriteria": {"type": "MARKET_ANALYSIS"},
             "task": {"type": "MARKET_ANALYSIS"}},
            {"id": "trade", "type": "task", "agentCriteria": {"type": "TRADING_EXECUTION"},
             "task": {"type": "ORDER_EXECUTION"},
             "condition": {"expression": "${a.output.approved} === true && ${b.output.score} > 0.5"}}
        ]}"#,
    )
    .expect("the gate workflow compiles");
    let trade = plan.index_of("trade").expect("step `trade` exists");
    let condition = plan
        .step(trade)
        .and_then(|step| step.condition())
        .expect("step `trade` has a condition");
    let values = RunValues {
        input: json!({}),
        outputs: vec![
            Some(json!({"approved": true, "var": 0.02})),
            Some(json!({"score": 0.8, "signals": ["AAPL"]})),
            None,
        ],
    };
    let context = Context::new();
    assert_eq!(condition.evaluate(&values, &context), Ok(true));

    let mut group = c.benchmark_group("condition_two_bindings");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("evaluate", |b| {
        b.iter(|| black_box(condition).evaluate(black_box(&values), black_box(&context)))
    });
    group.finish();
}

fn template_resolve(c: &mut Criterion) {
    let plan = ExecutionPlan::from_json(include_str!("../examples/workflows/algo-trading.json"))
        .expect("algo-trading compiles");
    let sizing = plan
        .index_of("position-sizing")
        .expect("step `position-sizing` exists");
    let parameters = &plan
        .step(sizing)
        .and_then(|step| step.agent_task())
        .expect("step `position-sizing` calls an agent")
        .parameters;
    let mut outputs = vec![None; plan.steps().len()];
    let mut set = |id: &str, output: Value| {
        let index = plan.index_of(id).expect("the step exists");
        outputs[index] = Some(output);
    };
    set(
        "market-analysis",
        json!({"signals": [
            {"symbol": "AAPL", "side": "BUY", "strength": 0.82, "indicator": "RSI"},
            {"symbol": "MSFT", "side": "SELL", "strength": 0.71, "indicator": "MACD"},
            {"symbol": "NVDA", "side": "BUY", "strength": 0.77, "indicator": "BOLLINGER_BANDS"},
        ]}),
    );
    set(
        "risk-assessment",
        json!({"approved": true, "valueAtRisk": 0.021, "maxDrawdown": 0.08,
               "limits": {"perSymbol": 50_000, "gross": 250_000}}),
    );
    let values = RunValues {
        input: json!({
            "symbols": ["AAPL", "MSFT", "NVDA"], "timeframe": "1h",
            "portfolioId": "pf-42", "availableCapital": 1_000_000,
        }),
        outputs,
    };
    let resolved = parameters.resolve(&values).expect("the parameters resolve");
    assert_eq!(resolved["availableCapital"], json!(1_000_000));

    let mut group = c.benchmark_group("template_resolve");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("position_sizing", |b| {
        b.iter(|| black_box(parameters).resolve(black_box(&values)))
    });
    group.finish();
}

criterion_group!(
    benches,
    compile_10k_steps,
    condition_two_bindings,
    template_resolve
);
criterion_main!(benches);
