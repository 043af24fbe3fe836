//! A string that is exactly one binding takes the bound JSON value with its type; a
//! binding inside a longer string is interpolated as text; bindings work at any depth.

mod support;

use serde_json::{Value, json};
use support::{RunValues, plan, task, task_with, with, workflow};
use tradeflow::expr::{EvalError, Template};
use tradeflow::plan::{ExecutionPlan, StepKind};

/// The task parameters of step `index`.
fn parameters(plan: &ExecutionPlan, index: usize) -> &Template {
    &plan
        .step(index)
        .and_then(|step| step.agent_task())
        .unwrap_or_else(|| panic!("step {index} calls an agent"))
        .parameters
}

/// Resolves the parameters of the last step of a one- or two-step workflow whose last
/// step has `parameters`, the first step having output `first_output`.
fn resolve(parameters_json: Value, input: Value, first_output: Value) -> Value {
    let plan = plan(&workflow([
        task("sizing"),
        task_with("order-execution", parameters_json),
    ]));
    let values = RunValues::with_input(input).output(0, first_output);
    parameters(&plan, 1)
        .resolve(&values)
        .unwrap_or_else(|error| panic!("{error}"))
}

#[test]
fn a_whole_string_binding_keeps_the_json_type() {
    let input = json!({
        "symbols": ["AAPL", "MSFT"],
        "qty": 5,
        "price": 101.25,
        "live": true,
        "stopLoss": null,
        "limits": {"maxNotional": 1e6, "venues": ["XNAS"]},
        "venue": "XNAS"
    });
    let resolved = resolve(
        json!({
            "symbols": "${input.symbols}",
            "qty": "${input.qty}",
            "price": "${input.price}",
            "live": "${input.live}",
            "stopLoss": "${input.stopLoss}",
            "limits": "${input.limits}",
            "venue": "${input.venue}",
            "everything": "${input}"
        }),
        input.clone(),
        json!({}),
    );
    assert_eq!(
        resolved,
        json!({
            "symbols": ["AAPL", "MSFT"],
            "qty": 5,
            "price": 101.25,
            "live": true,
            "stopLoss": null,
            "limits": {"maxNotional": 1e6, "venues": ["XNAS"]},
            "venue": "XNAS",
            "everything": input
        })
    );
}

#[test]
fn step_outputs_keep_their_type_along_paths() {
    let output = json!({"orders": [{"symbol": "AAPL", "qty": 10}, {"symbol": "MSFT", "qty": 4}]});
    let resolved = resolve(
        json!({
            "orders": "${sizing.output.orders}",
            "first": "${sizing.output.orders[0]}",
            "secondQty": "${sizing.output.orders[1].qty}",
            "all": "${sizing.output}"
        }),
        json!({}),
        output.clone(),
    );
    assert_eq!(
        resolved,
        json!({
            "orders": output["orders"],
            "first": {"symbol": "AAPL", "qty": 10},
            "secondQty": 4,
            "all": output
        })
    );
}

#[test]
fn a_binding_inside_a_longer_string_is_interpolated_as_text() {
    let resolved = resolve(
        json!({
            "note": "buy ${input.qty} ${input.symbol} at ${sizing.output.limit}",
            "padded": " ${input.qty}",
            "list": "symbols: ${input.symbols}",
            "flags": "${input.live}/${input.stopLoss}",
            "literal": "cost $${input.qty}"
        }),
        json!({"qty": 5, "symbol": "AAPL", "symbols": ["AAPL", "MSFT"], "live": true, "stopLoss": null}),
        json!({"limit": 101.5}),
    );
    assert_eq!(
        resolved,
        json!({
            "note": "buy 5 AAPL at 101.5",
            "padded": " 5",
            "list": "symbols: [\"AAPL\",\"MSFT\"]",
            "flags": "true/null",
            "literal": "cost ${input.qty}"
        })
    );
}

#[test]
fn bindings_work_at_any_depth() {
    let resolved = resolve(
        json!({
            "a": {"b": [{"c": "${input.qty}"}, ["${input.symbols}", "x ${input.qty}"]]},
            "fixed": [1, {"two": 2}],
            "deeper": {"l1": {"l2": {"l3": {"l4": ["${sizing.output.orders[0].qty}"]}}}}
        }),
        json!({"qty": 5, "symbols": ["AAPL"]}),
        json!({"orders": [{"qty": 7}]}),
    );
    assert_eq!(
        resolved,
        json!({
            "a": {"b": [{"c": 5}, [["AAPL"], "x 5"]]},
            "fixed": [1, {"two": 2}],
            "deeper": {"l1": {"l2": {"l3": {"l4": [7]}}}}
        })
    );
}

#[test]
fn the_reference_workflow_parameters_resolve_with_their_types() {
    let plan = ExecutionPlan::from_json(include_str!("../examples/workflows/algo-trading.json"))
        .unwrap_or_else(|errors| panic!("{errors}"));
    let risk = json!({"approved": true, "var": 0.02});
    let values = RunValues::with_input(json!({
        "symbols": ["AAPL", "MSFT"],
        "timeframe": "1h",
        "portfolioId": "P-1",
        "availableCapital": 250000
    }))
    .output(0, json!({"signals": [{"symbol": "AAPL", "side": "buy"}]}))
    .output(1, risk.clone());
    // `"symbols": ["${input.symbols}"]`: the array binding stays an array, inside the array.
    assert_eq!(
        parameters(&plan, 0).resolve(&values).unwrap(),
        json!({
            "symbols": [["AAPL", "MSFT"]],
            "timeframe": "1h",
            "indicators": ["RSI", "MACD", "BOLLINGER_BANDS"]
        })
    );
    assert_eq!(
        parameters(&plan, 2).resolve(&values).unwrap(),
        json!({
            "signals": [{"symbol": "AAPL", "side": "buy"}],
            "riskMetrics": risk,
            "availableCapital": 250000
        })
    );
    let inputs: Vec<&str> = plan
        .input_bindings()
        .iter()
        .map(|binding| binding.text())
        .collect();
    for expected in [
        "${input.symbols}",
        "${input.timeframe}",
        "${input.portfolioId}",
        "${input.availableCapital}",
    ] {
        assert!(inputs.contains(&expected), "{expected} in {inputs:?}");
    }
}

#[test]
fn a_missing_path_is_named_and_null_is_not_missing() {
    let plan = plan(&workflow([task_with(
        "a",
        json!({"qty": "${input.orders[1].qty}", "stop": "${input.stopLoss}"}),
    )]));
    let missing = RunValues::with_input(json!({"orders": [{"qty": 1}], "stopLoss": null}));
    assert!(matches!(
        parameters(&plan, 0).resolve(&missing),
        Err(EvalError::MissingPath { path, .. }) if path == "input.orders[1]"
    ));
    let present =
        RunValues::with_input(json!({"orders": [{"qty": 1}, {"qty": 2}], "stopLoss": null}));
    assert_eq!(
        parameters(&plan, 0).resolve(&present).unwrap(),
        json!({"qty": 2, "stop": null})
    );
}

#[test]
fn output_mappings_read_the_step_s_own_output() {
    let plan = plan(&workflow([with(
        task("quote"),
        json!({"outputMapping": {"price": "${output.bid}", "spread": "${quote.output.spread}",
                                 "label": "bid ${output.bid}"}}),
    )]));
    let mapping = plan
        .step(0)
        .and_then(|step| step.output_mapping())
        .expect("an output mapping");
    let values = RunValues {
        own: Some(json!({"bid": 99.5, "spread": [0.01, 0.02]})),
        ..RunValues::default()
    };
    assert_eq!(
        mapping.resolve(&values).unwrap(),
        json!({"price": 99.5, "spread": [0.01, 0.02], "label": "bid 99.5"})
    );
}

#[test]
fn approval_parameters_resolve_like_task_parameters() {
    let plan = plan(&workflow([
        task("trade-planning"),
        json!({"id": "approve", "type": "human_approval",
               "task": {"type": "APPROVAL_REQUEST",
                        "parameters": {"plan": "${trade-planning.output}", "limit": 100000}}}),
    ]));
    let Some(StepKind::HumanApproval { parameters, .. }) = plan.step(1).map(|step| step.kind())
    else {
        panic!("step 1 is a human approval");
    };
    let values = RunValues::default().output(0, json!({"trades": [1, 2]}));
    assert_eq!(
        parameters.resolve(&values).unwrap(),
        json!({"plan": {"trades": [1, 2]}, "limit": 100000})
    );
}
