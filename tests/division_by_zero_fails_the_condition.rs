//! Arithmetic in conditions never lies: a division or remainder by zero fails the
//! evaluation (`EvalError::DivisionByZero`), and so does arithmetic whose result is not
//! a finite number (`EvalError::NotFinite`); left to evalexpr, `1 / 0` is an infinity and
//! `1 / 0 > 1e308` holds. Such a failure fails the step with kind `CONDITION`, naming the
//! condition, and keeps a trigger from firing. A number literal beyond a float's range
//! is refused at validation. Arithmetic with a finite result is unchanged.

mod support;

use serde_json::{Value, json};
use support::engine::{Harness, Reply, assert_status, step};
use support::{RunValues, location, plan, sole_error, task, with, workflow};
use tradeflow::definition::DefinitionError;
use tradeflow::engine::{FailureKind, RunStatus, StepStatus};
use tradeflow::expr::{Condition, Context, EvalError, ExpressionProblem};
use tradeflow::scheduler::{NotFiredReason, Triggers};

/// Evaluates a condition that reads only the host context.
fn evaluate(text: &str) -> Result<bool, EvalError> {
    let condition = Condition::parse(text).unwrap_or_else(|problem| panic!("{text}: {problem}"));
    condition.evaluate_with(&Context::new())
}

#[test]
fn dividing_by_zero_fails_the_evaluation() {
    for (text, operator) in [
        ("1 / 0 > 1e308", '/'),
        ("0 / 0 == 0", '/'),
        ("-1 / 0 < 0", '/'),
        ("5 % 0 == 0", '%'),
        ("max(1, 2 / (1 - 1)) > 0", '/'),
        ("false || 1 / 0 > 1", '/'),
    ] {
        let error = evaluate(text).expect_err(text);
        assert_eq!(
            error,
            EvalError::DivisionByZero {
                expression: text.to_owned(),
                operator,
            }
        );
        let word = if operator == '%' {
            "remainder"
        } else {
            "division"
        };
        assert_eq!(
            error.to_string(),
            format!("condition `{text}`: {word} by zero")
        );
    }
    // `&&` and `||` short-circuit: a side that is never evaluated cannot fail.
    assert_eq!(evaluate("false && 1 / 0 > 1"), Ok(false));
}

#[test]
fn arithmetic_beyond_a_float_fails_the_evaluation() {
    for (text, operator, result) in [
        ("1e308 * 10 > 1", '*', "inf"),
        ("-1e308 - 1e308 < 0", '-', "-inf"),
        ("1e308 + 1e308 > 0", '+', "inf"),
        ("10 ^ 400 > 1", '^', "inf"),
        ("(-8) ^ 0.5 != 1", '^', "NaN"),
        ("1 / 1e-320 > 0", '/', "inf"),
    ] {
        let error = evaluate(text).expect_err(text);
        assert_eq!(
            error,
            EvalError::NotFinite {
                expression: text.to_owned(),
                operator,
                result: result.to_owned(),
            },
            "{text}"
        );
        assert_eq!(
            error.to_string(),
            format!("condition `{text}`: `{operator}` gave {result}, not a finite number")
        );
    }
}

#[test]
fn arithmetic_with_a_finite_result_is_unchanged() {
    for text in [
        "7 / 2 == 3.5",
        "7 % 4 == 3",
        "-7 % 4 == -3",
        "2 ^ 10 == 1024",
        "1e308 * 1 == 1e308",
        "0 / 5 == 0",
        "0.1 + 0.2 > 0.3",
        "\"a\" + \"b\" == \"ab\"",
        "-(1 / 4) == -0.25",
    ] {
        assert_eq!(evaluate(text), Ok(true), "{text}");
    }
    // Type errors stay evalexpr's, not an arithmetic fault.
    assert!(matches!(
        evaluate("\"a\" / 2 > 1"),
        Err(EvalError::Evaluation { .. })
    ));
}

/// Steps `quote`, then `trade` whose condition is `text`.
fn gated(text: &str) -> Value {
    workflow([
        task("quote"),
        with(task("trade"), json!({"condition": {"expression": text}})),
    ])
}

#[test]
fn bound_values_are_checked_at_run_time() {
    let plan = plan(&gated("${quote.output.x} / ${quote.output.y} > 1"));
    let condition = plan.step(1).and_then(|step| step.condition()).unwrap();
    let quote = |x: f64, y: f64| RunValues::default().output(0, json!({"x": x, "y": y}));
    assert_eq!(
        condition.evaluate(&quote(3.0, 2.0), &Context::new()),
        Ok(true)
    );
    assert_eq!(
        condition.evaluate(&quote(1.0, 2.0), &Context::new()),
        Ok(false)
    );
    assert!(matches!(
        condition.evaluate(&quote(1.0, 0.0), &Context::new()),
        Err(EvalError::DivisionByZero { operator: '/', .. })
    ));
    let halves = plan_with_condition("${input.a} / 2 > 1");
    let input = |a: f64| RunValues::with_input(json!({ "a": a }));
    assert_eq!(halves.evaluate(&input(3.0), &Context::new()), Ok(true));
    assert_eq!(halves.evaluate(&input(2.0), &Context::new()), Ok(false));
}

/// The compiled workflow condition `text`.
fn plan_with_condition(text: &str) -> Condition {
    let plan = plan(&with(
        workflow([task("a")]),
        json!({"conditions": [{"expression": text}]}),
    ));
    plan.conditions()[0].clone()
}

#[test]
fn a_step_whose_condition_divides_by_zero_fails_with_kind_condition() {
    let h = Harness::new();
    h.register(h.agent("a-1").replies(|request, _| {
        Reply::ok(match request.step_id.as_str() {
            "quote" => json!({"x": 1, "y": 0}),
            _ => json!({"filled": true}),
        })
    }));
    let text = "${quote.output.x} / ${quote.output.y} > 1e308";

    let report = h.run(&gated(text), json!({}));

    assert_status(&report, RunStatus::Failed);
    let trade = step(&report, "trade");
    assert_eq!(trade.status, StepStatus::Failed);
    let error = trade.error.as_ref().expect("an error");
    assert_eq!(error.kind, FailureKind::Condition);
    assert_eq!(
        error.message,
        format!("step `trade`: condition: condition `{text}`: division by zero")
    );
}

#[test]
fn a_loop_whose_until_overflows_fails_with_kind_condition() {
    let h = Harness::new();
    h.register(h.agent("a-1").answers(json!({"filled": 1e308})));
    let definition = workflow([with(
        task("poll"),
        json!({"type": "loop", "loop": {"until": "${output.filled} * 10 > 1"}}),
    )]);

    let report = h.run(&definition, json!({}));

    let poll = step(&report, "poll");
    let error = poll.error.as_ref().expect("an error");
    assert_eq!(error.kind, FailureKind::Condition);
    assert!(
        error.message.contains("`*` gave inf, not a finite number"),
        "{}",
        error.message
    );
}

#[test]
fn a_trigger_whose_condition_divides_by_zero_does_not_fire() {
    let h = Harness::new();
    let id = h.workflow(&json!({
        "id": "w", "steps": [task("s")],
        "triggers": [{"type": "EVENT", "eventType": "TICK",
                      "condition": {"expression": "event.move / event.range > 0.5"}}]
    }));
    let triggers = Triggers::new(&h.engine, &id).expect("the workflow has triggers");

    let firings = triggers.publish_event("TICK", json!({"move": 1, "range": 0}));

    assert!(matches!(
        firings[0].not_fired(),
        Some(NotFiredReason::ConditionFailed(
            EvalError::DivisionByZero { .. }
        ))
    ));
    assert!(
        triggers.publish_event("TICK", json!({"move": 1, "range": 1}))[0]
            .run()
            .is_some()
    );
}

#[test]
fn a_literal_beyond_a_float_is_rejected_at_validation() {
    let error = sole_error(&gated("${quote.output.x} < 1e999"));
    assert_eq!(location(&error), "steps[1] (trade).condition.expression");
    assert!(matches!(
        error,
        DefinitionError::Expression {
            problem: ExpressionProblem::NumberTooLarge,
            ..
        }
    ));
    assert_eq!(
        error.to_string(),
        "steps[1] (trade).condition.expression: invalid expression `${quote.output.x} < 1e999`: \
         a number is too large for a float (beyond ±1.8e308)"
    );
}
