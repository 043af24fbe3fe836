//! Conditions are evalexpr expressions, and evalexpr has traps (measured on 11.3.1):
//! hyphens are subtraction, `===` fails only at evaluation, `1 == 1.0` is false, deep
//! nesting overflows the stack, plain evaluation allows assignment and some built-ins
//! panic. None of them reaches a workflow author.

mod support;

use serde_json::{Value, json};
use support::{RunValues, location, plan, sole_error, task, with, workflow};
use tradeflow::definition::DefinitionError;
use tradeflow::expr::{
    Condition, Context, EvalError, ExpressionProblem, MAX_EXPRESSION_DEPTH, MAX_EXPRESSION_LENGTH,
    Source,
};

/// A tokio worker's default stack: where a host will evaluate conditions.
const WORKER_STACK: usize = 2 * 1024 * 1024;

/// Runs `f` on a thread with a tokio worker's stack, so that a recursion the bounds
/// failed to stop shows here and not only in production.
fn on_worker_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(WORKER_STACK)
        .spawn(f)
        .expect("spawn a thread")
        .join()
        .expect("no panic")
}

/// Whether the condition of step `index` holds for `values`.
fn holds(plan: &tradeflow::plan::ExecutionPlan, index: usize, values: &RunValues) -> bool {
    let condition = plan.step(index).and_then(|step| step.condition());
    match condition.map(|condition| condition.evaluate(values, &Context::new())) {
        Some(Ok(holds)) => holds,
        other => panic!("step {index}: {other:?}"),
    }
}

/// A plan of steps `risk-assessment` then `order-execution`, whose condition is `text`.
fn gated(text: &str) -> tradeflow::plan::ExecutionPlan {
    plan(&workflow([
        task("risk-assessment"),
        with(
            task("order-execution"),
            json!({"condition": {"expression": text}}),
        ),
    ]))
}

/// Evaluates a condition that reads only the host context.
fn parse_and_evaluate(text: &str) -> Result<bool, EvalError> {
    let condition = Condition::parse(text).unwrap_or_else(|problem| panic!("{text}: {problem}"));
    condition.evaluate_with(&Context::new())
}

#[test]
fn hyphenated_step_ids_are_bindings_not_subtraction() {
    let plan = gated("${risk-assessment.output.approved} === true");
    let condition = plan.step(1).and_then(|step| step.condition()).unwrap();
    assert_eq!(condition.bindings().len(), 1);
    assert!(
        matches!(condition.bindings()[0].source(), Source::Step { id, index: 0 } if id.as_str() == "risk-assessment")
    );
    let approved = RunValues::default().output(0, json!({"approved": true}));
    let rejected = RunValues::default().output(0, json!({"approved": false}));
    assert!(holds(&plan, 1, &approved));
    assert!(!holds(&plan, 1, &rejected));
    // Host variables named like the halves of the id change nothing.
    let context = Context::new()
        .with_variable("risk", json!(10))
        .with_variable("assessment.output.approved", json!(3));
    assert_eq!(condition.evaluate(&approved, &context), Ok(true));
}

#[test]
fn strict_equality_is_equality() {
    let plan =
        gated("${risk-assessment.output.side} === \"buy\" && ${risk-assessment.output.qty} !== 0");
    let buy = RunValues::default().output(0, json!({"side": "buy", "qty": 10}));
    let sell = RunValues::default().output(0, json!({"side": "sell", "qty": 10}));
    let nothing = RunValues::default().output(0, json!({"side": "buy", "qty": 0}));
    assert!(holds(&plan, 1, &buy));
    assert!(!holds(&plan, 1, &sell));
    assert!(!holds(&plan, 1, &nothing));
    // Inside string literals the text is kept as written.
    assert_eq!(parse_and_evaluate("len(\"a===b\") == 5"), Ok(true));
    assert_eq!(parse_and_evaluate("\"a!==b\" === \"a!==b\""), Ok(true));
}

#[test]
fn integers_and_floats_compare_by_value() {
    assert_eq!(parse_and_evaluate("1 == 1.0"), Ok(true));
    assert_eq!(parse_and_evaluate("1.0 === 1"), Ok(true));
    assert_eq!(parse_and_evaluate("7 / 2 == 3.5"), Ok(true));
    assert_eq!(parse_and_evaluate("1 > 0.5"), Ok(true));
    let plan = plan(&with(
        workflow([task("a")]),
        json!({"conditions": [{"expression": "${input.qty} == 1 && ${input.price} == 100.0"}]}),
    ));
    let condition = &plan.conditions()[0];
    for (qty, price) in [(json!(1), json!(100)), (json!(1.0), json!(100.0))] {
        let values = RunValues::with_input(json!({"qty": qty, "price": price}));
        assert_eq!(
            condition.evaluate(&values, &Context::new()),
            Ok(true),
            "qty {qty}, price {price}"
        );
    }
    let values = RunValues::with_input(json!({"qty": 2, "price": 100}));
    assert_eq!(condition.evaluate(&values, &Context::new()), Ok(false));
}

/// The one problem of a workflow whose `field` at `at` holds `text`: it must be an
/// expression problem naming the step and quoting the text.
#[track_caller]
fn assert_rejected(definition: Value, at: &str, text: &str) -> ExpressionProblem {
    let error = on_worker_stack(move || sole_error(&definition));
    assert_eq!(location(&error), at);
    match error {
        DefinitionError::Expression {
            expression,
            problem,
            ..
        } => {
            assert_eq!(expression, text);
            problem
        }
        other => panic!("expected an expression problem, got {other:?}"),
    }
}

#[test]
fn twenty_thousand_nested_parentheses_are_a_validation_error_naming_the_step() {
    let deep = format!("{}1{} == 1", "(".repeat(20_000), ")".repeat(20_000));
    let problem = assert_rejected(
        workflow([
            task("a"),
            with(task("deep"), json!({"condition": {"expression": deep}})),
        ]),
        "steps[1] (deep).condition.expression",
        &deep,
    );
    assert!(
        matches!(
            problem,
            ExpressionProblem::TooLong { .. } | ExpressionProblem::TooDeep { .. }
        ),
        "{problem:?}"
    );
}

#[test]
fn deep_nesting_within_the_length_bound_is_a_validation_error_too() {
    let room = MAX_EXPRESSION_LENGTH - 10;
    let cases = [
        format!("{}1{} == 1", "(".repeat(room / 2), ")".repeat(room / 2)),
        format!("{}true", "!".repeat(room)),
        format!("{}1 < 0", "-".repeat(room)),
        format!("{}1 < 0", "!-".repeat(room / 2)),
        format!("{}true{}", "(!".repeat(room / 3), ")".repeat(room / 3)),
    ];
    for text in cases {
        assert!(
            text.len() <= MAX_EXPRESSION_LENGTH,
            "within the length bound"
        );
        let problem = assert_rejected(
            workflow([with(
                task("deep"),
                json!({"skipCondition": {"expression": text}}),
            )]),
            "steps[0] (deep).skipCondition.expression",
            &text,
        );
        assert!(
            matches!(problem, ExpressionProblem::TooDeep { .. }),
            "{}…: {problem:?}",
            &text[..10]
        );
    }
}

#[test]
fn deep_nesting_is_rejected_wherever_conditions_are_written() {
    let deep = format!("{}true{}", "(".repeat(20_000), ")".repeat(20_000));
    let loop_step = with(
        task("poll"),
        json!({"type": "loop", "loop": {"until": deep}}),
    );
    assert_rejected(workflow([loop_step]), "steps[0] (poll).loop.until", &deep);
    let branch_step = json!({"id": "route", "type": "condition",
                             "branches": [{"name": "deep", "when": deep}]});
    assert_rejected(
        workflow([branch_step]),
        "steps[0] (route).branches[0].when",
        &deep,
    );
    assert_rejected(
        with(
            workflow([task("a")]),
            json!({"conditions": [{"expression": deep}]}),
        ),
        "conditions[0].expression",
        &deep,
    );
    assert_rejected(
        with(
            workflow([task("a")]),
            json!({"triggers": [{"type": "EVENT", "eventType": "TICK", "condition": {"expression": deep}}]}),
        ),
        "triggers[0] (EVENT).condition.expression",
        &deep,
    );
    let parsed = on_worker_stack(move || Condition::parse(&deep).map(|_| ()));
    assert!(
        matches!(
            parsed,
            Err(ExpressionProblem::TooLong { .. } | ExpressionProblem::TooDeep { .. })
        ),
        "{parsed:?}"
    );
}

#[test]
fn the_deepest_accepted_conditions_evaluate_on_a_worker_stack() {
    let depth = MAX_EXPRESSION_DEPTH;
    let cases = [
        format!("{}1{} == 1", "(".repeat(depth), ")".repeat(depth)),
        format!("{}true", "!".repeat(depth)),
        format!("{}1 == 1", "1 + ".repeat(depth)),
        // Long chains of binary operators nest as deep as they are long.
        format!("{}1 == 1", "1+".repeat(MAX_EXPRESSION_LENGTH / 2 - 4)),
        format!("{}1 == 1", "1-".repeat(MAX_EXPRESSION_LENGTH / 2 - 4)),
        format!("{}true", "true && ".repeat(MAX_EXPRESSION_LENGTH / 8 - 1)),
    ];
    on_worker_stack(move || {
        for text in cases {
            if let Ok(condition) = Condition::parse(&text) {
                // Any outcome but a crash will do.
                let _ = condition.evaluate_with(&Context::new());
            }
        }
    });
}

#[test]
fn assignment_is_rejected() {
    for text in [
        "x = 1",
        "x += 1",
        "approved = true && approved",
        "s = \"ab\"; s = s + s; s == s",
    ] {
        let problem = assert_rejected(
            workflow([with(task("a"), json!({"condition": {"expression": text}}))]),
            "steps[0] (a).condition.expression",
            text,
        );
        assert!(
            matches!(
                problem,
                ExpressionProblem::Assignment | ExpressionProblem::Chain
            ),
            "{text}: {problem:?}"
        );
    }
    assert_eq!(
        Condition::parse("x = 1").map(|_| ()),
        Err(ExpressionProblem::Assignment)
    );
    assert!(matches!(
        Condition::parse("true; false"),
        Err(ExpressionProblem::Chain)
    ));
}

#[test]
fn built_ins_that_panic_are_unreachable() {
    for text in [
        "str::substring(\"héllo\", 0, 2) == \"h\"",
        "str::to_uppercase(\"a\") == \"A\"",
        "shl(1, 64) == 0",
        "math::abs(-9223372036854775808) > 0",
    ] {
        match Condition::parse(text) {
            Err(_) => {}
            Ok(condition) => {
                let outcome = condition.evaluate_with(&Context::new());
                assert!(
                    matches!(outcome, Err(EvalError::Evaluation { .. })),
                    "{text}: {outcome:?}"
                );
            }
        }
    }
}

#[test]
fn the_seed_time_arithmetic_is_not_an_expression() {
    assert!(matches!(
        Condition::parse("portfolio.lastRebalance > 7 days ago"),
        Err(ExpressionProblem::Syntax(_))
    ));
    // evalexpr parses a dangling operator and fails only when evaluating; here it is
    // a validation error.
    assert!(matches!(
        Condition::parse("market.isOpen() &&"),
        Err(ExpressionProblem::Syntax(_))
    ));
}

#[test]
fn host_variables_and_functions_have_dotted_names() {
    let condition = Condition::parse("market.isOpen() && volatility.level < 0.3").unwrap();
    let calm = Context::new()
        .with_variable("volatility.level", json!(0.2))
        .with_function("market.isOpen", |_| Ok(json!(true)));
    let stormy = calm
        .clone()
        .with_variable("volatility", json!({"level": 0.5}));
    let closed = calm
        .clone()
        .with_function("market.isOpen", |_| Ok(json!(false)));
    assert_eq!(condition.evaluate_with(&calm), Ok(true));
    assert_eq!(condition.evaluate_with(&stormy), Ok(false));
    assert_eq!(condition.evaluate_with(&closed), Ok(false));
    // A name the host does not define is an evaluation error, not a panic or `false`.
    assert!(matches!(
        condition.evaluate_with(&Context::new()),
        Err(EvalError::Evaluation { .. })
    ));
}

#[test]
fn null_inputs_bind_as_null() {
    let plan = plan(&with(
        workflow([task("a")]),
        json!({"conditions": [{"expression": "${input.stopLoss} == null"}]}),
    ));
    let condition = &plan.conditions()[0];
    let absent_value = RunValues::with_input(json!({"stopLoss": null}));
    let set = RunValues::with_input(json!({"stopLoss": 95.5}));
    assert_eq!(condition.evaluate(&absent_value, &Context::new()), Ok(true));
    assert_eq!(condition.evaluate(&set, &Context::new()), Ok(false));
}

#[test]
fn run_time_failures_are_errors_not_panics() {
    let plan = gated("${risk-assessment.output.score} + 1");
    let values = RunValues::default().output(0, json!({"score": 0.5}));
    let condition = plan.step(1).and_then(|step| step.condition()).unwrap();
    assert!(matches!(
        condition.evaluate(&values, &Context::new()),
        Err(EvalError::NotBoolean { .. })
    ));
    assert!(matches!(
        condition.evaluate(&RunValues::default(), &Context::new()),
        Err(EvalError::NoOutput { step, .. }) if step.as_str() == "risk-assessment"
    ));
    let missing = RunValues::default().output(0, json!({"other": 1}));
    assert!(matches!(
        condition.evaluate(&missing, &Context::new()),
        Err(EvalError::MissingPath { path, .. }) if path == "risk-assessment.output.score"
    ));
    let object = RunValues::default().output(0, json!({"score": {"value": 1}}));
    assert!(matches!(
        condition.evaluate(&object, &Context::new()),
        Err(EvalError::ObjectValue { .. })
    ));
}
