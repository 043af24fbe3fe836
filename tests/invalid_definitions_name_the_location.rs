//! Each kind of invalid definition is reported as a typed error that says where the
//! problem is (as a `Location` path) and quotes the offending text.

mod support;

use serde_json::json;
use support::{
    errors_in, errors_of, expect_error, location, plan, sole_error, task, task_with, with, workflow,
};
use tradeflow::definition::DefinitionError;
use tradeflow::expr::ExpressionProblem;

#[test]
fn malformed_json_is_located_by_line_and_column() {
    let text = "{\n  \"id\": \"w\",\n  \"steps\": [\n    {\"id\": \"a\",}\n  ]\n}";
    let errors = errors_of(text);
    assert!(
        matches!(
            &errors[..],
            [DefinitionError::Syntax {
                line: 4,
                column: 16,
                ..
            }]
        ),
        "{errors:?}"
    );
    assert!(
        errors[0]
            .to_string()
            .starts_with("line 4, column 16: malformed JSON"),
        "{}",
        errors[0]
    );

    let truncated = errors_of("{\"id\": \"w\",\n \"steps\": [");
    assert!(
        matches!(&truncated[..], [DefinitionError::Syntax { line: 2, .. }]),
        "{truncated:?}"
    );
}

#[test]
fn unknown_fields_are_named_at_the_object_holding_them() {
    let error = sole_error(&workflow([with(task("a"), json!({"retryPolcy": {}}))]));
    assert_eq!(location(&error), "steps[0] (a)");
    assert!(
        matches!(&error, DefinitionError::UnknownField { field, suggestion: Some("retryPolicy"), .. } if field == "retryPolcy"),
        "{error:?}"
    );
    assert!(error.to_string().contains("`retryPolcy`"), "{error}");

    let top = sole_error(&with(workflow([task("a")]), json!({"nmae": "x"})));
    assert_eq!(location(&top), "workflow");
    assert!(
        matches!(&top, DefinitionError::UnknownField { field, .. } if field == "nmae"),
        "{top:?}"
    );

    let nested = sole_error(&workflow([with(
        task("a"),
        json!({"task": {"type": "TASK", "params": {}}}),
    )]));
    assert_eq!(location(&nested), "steps[0] (a).task");
    assert!(
        matches!(&nested, DefinitionError::UnknownField { field, .. } if field == "params"),
        "{nested:?}"
    );

    let in_trigger = sole_error(&with(
        workflow([task("a")]),
        json!({"triggers": [{"type": "EVENT", "eventType": "TICK", "condtion": {"expression": "true"}}]}),
    ));
    assert_eq!(location(&in_trigger), "triggers[0] (EVENT)");
    assert!(
        matches!(&in_trigger, DefinitionError::UnknownField { field, suggestion: Some("condition"), .. } if field == "condtion"),
        "{in_trigger:?}"
    );

    let in_dependency = sole_error(&with(
        workflow([task("a"), task("b")]),
        json!({"dependencies": [{"from": "a", "to": "b", "kind": "hard"}]}),
    ));
    assert_eq!(location(&in_dependency), "dependencies[0]");
    assert!(
        matches!(&in_dependency, DefinitionError::UnknownField { field, .. } if field == "kind"),
        "{in_dependency:?}"
    );
}

#[test]
fn unknown_step_types_are_named() {
    let error = sole_error(&workflow([
        task("a"),
        with(task("b"), json!({"type": "tsk"})),
    ]));
    assert_eq!(location(&error), "steps[1] (b).type");
    assert!(
        matches!(&error, DefinitionError::UnknownVariant { value, expected, .. }
            if value == "tsk" && expected.contains(&"task") && expected.contains(&"human_approval")),
        "{error:?}"
    );
    // The original enum is lowercase: `TASK` is not a step type.
    let shouted = sole_error(&workflow([with(task("a"), json!({"type": "TASK"}))]));
    assert_eq!(location(&shouted), "steps[0] (a).type");
    assert!(matches!(shouted, DefinitionError::UnknownVariant { .. }));
}

#[test]
fn unknown_enum_values_are_named() {
    let policy = sole_error(&with(
        workflow([task("a")]),
        json!({"executionPolicy": {"concurrency": "SERIAL"}}),
    ));
    assert_eq!(location(&policy), "executionPolicy.concurrency");
    assert!(
        matches!(&policy, DefinitionError::UnknownVariant { value, expected, .. }
            if value == "SERIAL" && expected.contains(&"SEQUENTIAL")),
        "{policy:?}"
    );

    let balancing = sole_error(&workflow([with(
        task("a"),
        json!({"agentCriteria": {"type": "AGENT", "loadBalancing": "RANDOM"}}),
    )]));
    assert_eq!(
        location(&balancing),
        "steps[0] (a).agentCriteria.loadBalancing"
    );
    assert!(
        matches!(&balancing, DefinitionError::UnknownVariant { value, expected, .. }
            if value == "RANDOM" && expected.contains(&"POWER_OF_TWO_CHOICES")),
        "{balancing:?}"
    );

    let trigger = sole_error(&with(
        workflow([task("a")]),
        json!({"triggers": [{"type": "HOURLY"}]}),
    ));
    assert_eq!(location(&trigger), "triggers[0].type");
    assert!(
        matches!(&trigger, DefinitionError::UnknownVariant { value, .. } if value == "HOURLY"),
        "{trigger:?}"
    );

    let strategy = sole_error(&workflow([with(
        task("a"),
        json!({"errorHandling": {"strategies": ["RETRY", "PRAY"]}}),
    )]));
    assert_eq!(
        location(&strategy),
        "steps[0] (a).errorHandling.strategies[1]"
    );
    assert!(
        matches!(&strategy, DefinitionError::UnknownVariant { value, .. } if value == "PRAY"),
        "{strategy:?}"
    );

    let approval = sole_error(&workflow([json!({
        "id": "ok", "type": "human_approval", "approval": {"onTimeout": "MAYBE"}
    })]));
    assert_eq!(location(&approval), "steps[0] (ok).approval.onTimeout");
    assert!(matches!(approval, DefinitionError::UnknownVariant { .. }));
}

#[test]
fn missing_required_fields_are_named() {
    let no_type = sole_error(&workflow([json!({
        "id": "a", "agentCriteria": {"type": "AGENT"}, "task": {"type": "TASK"}
    })]));
    assert_eq!(location(&no_type), "steps[0] (a)");
    assert!(
        matches!(&no_type, DefinitionError::MissingField { field, .. } if field == "type"),
        "{no_type:?}"
    );

    let no_id = sole_error(&workflow([json!({
        "type": "task", "agentCriteria": {"type": "AGENT"}, "task": {"type": "TASK"}
    })]));
    assert_eq!(location(&no_id), "steps[0]");
    assert!(
        matches!(&no_id, DefinitionError::MissingField { field, .. } if field == "id"),
        "{no_id:?}"
    );

    let no_to = sole_error(&with(
        workflow([task("a")]),
        json!({"dependencies": [{"from": "a"}]}),
    ));
    assert_eq!(location(&no_to), "dependencies[0]");
    assert!(
        matches!(&no_to, DefinitionError::MissingField { field, .. } if field == "to"),
        "{no_to:?}"
    );

    let no_expression = sole_error(&workflow([with(task("a"), json!({"condition": {}}))]));
    assert_eq!(location(&no_expression), "steps[0] (a).condition");
    assert!(
        matches!(&no_expression, DefinitionError::MissingField { field, .. } if field == "expression"),
        "{no_expression:?}"
    );

    let no_steps = sole_error(&json!({"id": "w"}));
    assert_eq!(location(&no_steps), "workflow");
    assert!(
        matches!(&no_steps, DefinitionError::MissingField { field, .. } if field == "steps"),
        "{no_steps:?}"
    );
}

#[test]
fn fields_required_by_the_step_or_trigger_type_are_named() {
    let no_agent = sole_error(&workflow([json!({
        "id": "a", "type": "task", "task": {"type": "TASK"}
    })]));
    assert_eq!(location(&no_agent), "steps[0] (a)");
    assert!(
        matches!(
            no_agent,
            DefinitionError::Required {
                field: "agentCriteria",
                ..
            }
        ),
        "{no_agent:?}"
    );

    let no_task = sole_error(&workflow([json!({
        "id": "a", "type": "loop", "agentCriteria": {"type": "AGENT"}
    })]));
    assert_eq!(location(&no_task), "steps[0] (a)");
    assert!(
        matches!(no_task, DefinitionError::Required { field: "task", .. }),
        "{no_task:?}"
    );

    let no_schedule = sole_error(&with(
        workflow([task("a")]),
        json!({"triggers": [{"type": "SCHEDULED"}]}),
    ));
    assert_eq!(location(&no_schedule), "triggers[0] (SCHEDULED)");
    assert!(
        matches!(
            no_schedule,
            DefinitionError::Required {
                field: "schedule",
                ..
            }
        ),
        "{no_schedule:?}"
    );

    let no_event_type = sole_error(&with(
        workflow([task("a")]),
        json!({"triggers": [{"type": "EVENT"}]}),
    ));
    assert_eq!(location(&no_event_type), "triggers[0] (EVENT)");
    assert!(
        matches!(
            no_event_type,
            DefinitionError::Required {
                field: "eventType",
                ..
            }
        ),
        "{no_event_type:?}"
    );
}

#[test]
fn a_threshold_trigger_without_a_metric_is_named() {
    let error = sole_error(&with(
        workflow([task("a")]),
        json!({"triggers": [
            {"type": "EVENT", "eventType": "TICK"},
            {"type": "THRESHOLD", "threshold": 0.1}
        ]}),
    ));
    assert_eq!(location(&error), "triggers[1] (THRESHOLD)");
    assert!(
        matches!(
            error,
            DefinitionError::Required {
                field: "metric",
                ..
            }
        ),
        "{error:?}"
    );

    let no_threshold = sole_error(&with(
        workflow([task("a")]),
        json!({"triggers": [{"type": "THRESHOLD", "metric": "portfolio.deviation"}]}),
    ));
    assert_eq!(location(&no_threshold), "triggers[0] (THRESHOLD)");
    assert!(
        matches!(
            no_threshold,
            DefinitionError::Required {
                field: "threshold",
                ..
            }
        ),
        "{no_threshold:?}"
    );
}

#[test]
fn a_duplicate_step_id_names_both_uses() {
    let error = sole_error(&workflow([task("a"), task("b"), task("a")]));
    assert_eq!(location(&error), "steps[2] (a).id");
    assert!(
        matches!(&error, DefinitionError::DuplicateStepId { id, first: 0, .. } if id.as_str() == "a"),
        "{error:?}"
    );
}

#[test]
fn invalid_step_ids_are_named() {
    for id in ["a.b", "input", "", "-a", "buy now"] {
        let error = sole_error(&workflow([task(id)]));
        assert!(
            location(&error).ends_with(".id"),
            "{id:?}: {}",
            location(&error)
        );
        assert!(
            matches!(&error, DefinitionError::InvalidStepId { id: written, .. } if written == id),
            "{id:?}: {error:?}"
        );
    }
}

#[test]
fn a_dependency_on_an_unknown_step_is_named() {
    let error = sole_error(&with(
        workflow([task("a"), task("b"), task("c")]),
        json!({"dependencies": [
            {"from": "a", "to": "b"},
            {"from": "b", "to": "c"},
            {"from": "c", "to": "nope"}
        ]}),
    ));
    assert_eq!(location(&error), "dependencies[2].to");
    assert!(
        matches!(&error, DefinitionError::UnknownStep { step, .. } if step == "nope"),
        "{error:?}"
    );

    let from = sole_error(&with(
        workflow([task("a")]),
        json!({"dependencies": [{"from": "ghost", "to": "a"}]}),
    ));
    assert_eq!(location(&from), "dependencies[0].from");
    assert!(
        matches!(&from, DefinitionError::UnknownStep { step, .. } if step == "ghost"),
        "{from:?}"
    );
}

#[test]
fn a_binding_to_an_unknown_step_is_named_where_it_is_written() {
    let error = sole_error(&workflow([task_with("a", json!({"x": "${nope.output}"}))]));
    assert_eq!(location(&error), "steps[0] (a).task.parameters.x");
    assert!(
        matches!(&error, DefinitionError::UnknownBindingStep { binding, step, .. }
            if binding == "${nope.output}" && step == "nope"),
        "{error:?}"
    );

    let deep = sole_error(&workflow([task_with(
        "a",
        json!({"orders": [{"qty": 1}, {"qty": "buy ${ghost.output.qty} now"}]}),
    )]));
    assert_eq!(
        location(&deep),
        "steps[0] (a).task.parameters.orders[1].qty"
    );
    assert!(
        matches!(&deep, DefinitionError::UnknownBindingStep { binding, step, .. }
            if binding == "${ghost.output.qty}" && step == "ghost"),
        "{deep:?}"
    );

    let in_condition = sole_error(&workflow([
        task("a"),
        with(
            task("b"),
            json!({"condition": {"expression": "${risk-check.output.ok} == true"}}),
        ),
    ]));
    assert_eq!(location(&in_condition), "steps[1] (b).condition.expression");
    assert!(
        matches!(&in_condition, DefinitionError::UnknownBindingStep { step, .. } if step == "risk-check"),
        "{in_condition:?}"
    );
}

#[test]
fn a_binding_to_the_step_itself_is_rejected_outside_loop_until_and_output_mapping() {
    let in_parameters = sole_error(&workflow([task_with("a", json!({"x": "${a.output}"}))]));
    assert_eq!(location(&in_parameters), "steps[0] (a).task.parameters.x");
    assert!(
        matches!(&in_parameters, DefinitionError::SelfReference { binding, .. } if binding == "${a.output}"),
        "{in_parameters:?}"
    );

    let in_condition = sole_error(&workflow([with(
        task("a"),
        json!({"condition": {"expression": "${a.output.ok} == true"}}),
    )]));
    assert_eq!(location(&in_condition), "steps[0] (a).condition.expression");
    assert!(
        matches!(&in_condition, DefinitionError::SelfReference { binding, .. } if binding == "${a.output.ok}"),
        "{in_condition:?}"
    );

    let in_skip = sole_error(&workflow([with(
        task("a"),
        json!({"skipCondition": {"expression": "${a.output.ok}"}}),
    )]));
    assert_eq!(location(&in_skip), "steps[0] (a).skipCondition.expression");
    assert!(matches!(in_skip, DefinitionError::SelfReference { .. }));

    let in_branch = sole_error(&workflow([json!({
        "id": "route", "type": "condition",
        "branches": [{"name": "x", "when": "${route.output.branch} == \"x\""}]
    })]));
    assert_eq!(location(&in_branch), "steps[0] (route).branches[0].when");
    assert!(matches!(in_branch, DefinitionError::SelfReference { .. }));

    let own_output_elsewhere =
        sole_error(&workflow([task_with("a", json!({"x": "${output.price}"}))]));
    assert_eq!(
        location(&own_output_elsewhere),
        "steps[0] (a).task.parameters.x"
    );
    assert!(
        matches!(&own_output_elsewhere, DefinitionError::BindingNotAllowed { binding, .. } if binding == "${output.price}"),
        "{own_output_elsewhere:?}"
    );

    let depends_on_itself = sole_error(&with(
        workflow([task("a")]),
        json!({"dependencies": [{"from": "a", "to": "a"}]}),
    ));
    assert_eq!(location(&depends_on_itself), "dependencies[0].to");
    assert!(matches!(
        depends_on_itself,
        DefinitionError::SelfReference { .. }
    ));

    // Where the step's own output is meant, both spellings are accepted.
    plan(&workflow([with(
        task("poll"),
        json!({
            "type": "loop",
            "loop": {"until": "${poll.output.done} == true || ${output.filled} > 0.99"},
            "outputMapping": {"price": "${poll.output.price}", "qty": "${output.qty}"}
        }),
    )]));
}

#[test]
fn a_cycle_is_reported_at_its_first_step() {
    let error = sole_error(&with(
        workflow([task("a"), task("b")]),
        json!({"dependencies": [{"from": "a", "to": "b"}, {"from": "b", "to": "a"}]}),
    ));
    assert_eq!(location(&error), "steps[0] (a)");
    assert!(
        matches!(&error, DefinitionError::Cycle { steps, .. } if steps == &["a", "b", "a"]),
        "{error:?}"
    );
}

/// The one problem of `workflow`, which must be an unparsable expression at `at`.
#[track_caller]
fn assert_bad_expression(workflow: &serde_json::Value, at: &str, text: &str) {
    let error = sole_error(workflow);
    assert_eq!(location(&error), at);
    assert!(
        matches!(&error, DefinitionError::Expression { expression, problem: ExpressionProblem::Syntax(_), .. } if expression == text),
        "{error:?}"
    );
    assert!(
        error.to_string().contains(&format!("`{text}`")),
        "the message quotes the expression: {error}"
    );
}

#[test]
fn a_step_condition_that_does_not_parse_is_quoted() {
    let text = "${a.output.age} > 7 days ago";
    assert_bad_expression(
        &workflow([
            task("a"),
            with(task("b"), json!({"condition": {"expression": text}})),
        ]),
        "steps[1] (b).condition.expression",
        text,
    );
}

#[test]
fn a_skip_condition_that_does_not_parse_is_quoted() {
    let text = "${input.halted} ==";
    assert_bad_expression(
        &workflow([with(
            task("order-execution"),
            json!({"skipCondition": {"expression": text}}),
        )]),
        "steps[0] (order-execution).skipCondition.expression",
        text,
    );
}

#[test]
fn a_branch_condition_that_does_not_parse_is_quoted() {
    let text = "${input.trend} == \"up\" &&";
    assert_bad_expression(
        &workflow([json!({
            "id": "route", "type": "condition",
            "branches": [
                {"name": "down", "when": "${input.trend} == \"down\""},
                {"name": "up", "when": text}
            ]
        })]),
        "steps[0] (route).branches[1].when",
        text,
    );
}

#[test]
fn a_loop_until_that_does_not_parse_is_quoted() {
    let text = "${output.filled} >> 7 days ago";
    assert_bad_expression(
        &workflow([with(
            task("poll"),
            json!({"type": "loop", "loop": {"until": text}}),
        )]),
        "steps[0] (poll).loop.until",
        text,
    );
}

#[test]
fn a_workflow_condition_that_does_not_parse_is_quoted() {
    let text = "market.isOpen() &&& true";
    assert_bad_expression(
        &with(
            workflow([task("a")]),
            json!({"conditions": [{"expression": "true"}, {"expression": text}]}),
        ),
        "conditions[1].expression",
        text,
    );
}

#[test]
fn a_trigger_condition_that_does_not_parse_is_quoted() {
    let text = "event.strength > 7 days ago";
    assert_bad_expression(
        &with(
            workflow([task("a")]),
            json!({"triggers": [
                {"type": "SCHEDULED", "schedule": "0 9 * * 1-5"},
                {"type": "EVENT", "eventType": "MARKET_SIGNAL", "condition": {"expression": text}}
            ]}),
        ),
        "triggers[1] (EVENT).condition.expression",
        text,
    );
}

#[test]
fn bindings_where_no_step_output_exists_are_rejected() {
    // Workflow conditions are checked before any step runs.
    let workflow_condition = sole_error(&with(
        workflow([task("a")]),
        json!({"conditions": [{"expression": "${a.output.ok} == true"}]}),
    ));
    assert_eq!(location(&workflow_condition), "conditions[0].expression");

    // Trigger conditions read the host context, not a run.
    let trigger_condition = sole_error(&with(
        workflow([task("a")]),
        json!({"triggers": [{"type": "EVENT", "eventType": "TICK",
                             "condition": {"expression": "${a.output.ok} == true"}}]}),
    ));
    assert_eq!(
        location(&trigger_condition),
        "triggers[0] (EVENT).condition.expression"
    );
    assert!(
        matches!(
            trigger_condition,
            DefinitionError::BindingNotAllowed { .. } | DefinitionError::Expression { .. }
        ),
        "{trigger_condition:?}"
    );
}

#[test]
fn a_malformed_binding_is_quoted() {
    let error = sole_error(&workflow([task_with("a", json!({"x": "${input..qty}"}))]));
    assert_eq!(location(&error), "steps[0] (a).task.parameters.x");
    assert!(
        matches!(&error, DefinitionError::InvalidBinding { text, .. } if text == "${input..qty}"),
        "{error:?}"
    );
}

#[test]
fn an_invalid_cron_pattern_is_quoted() {
    for pattern in ["0 25 * * *", "0 0 9 * * 1-5", "every monday", "0 0 30 2 *"] {
        let error = sole_error(&with(
            workflow([task("a")]),
            json!({"triggers": [{"type": "SCHEDULED", "schedule": pattern}]}),
        ));
        assert_eq!(
            location(&error),
            "triggers[0] (SCHEDULED).schedule",
            "{pattern}"
        );
        assert!(
            matches!(&error, DefinitionError::InvalidCron { schedule, .. } if schedule == pattern),
            "{pattern}: {error:?}"
        );
        assert!(
            error.to_string().contains(&format!("`{pattern}`")),
            "{error}"
        );
    }
}

#[test]
fn an_unknown_time_zone_is_named() {
    let error = sole_error(&with(
        workflow([task("a")]),
        json!({"triggers": [{"type": "SCHEDULED", "schedule": "0 9 * * 1-5", "timezone": "Mars/Olympus"}]}),
    ));
    assert_eq!(location(&error), "triggers[0] (SCHEDULED).timezone");
    assert!(
        matches!(&error, DefinitionError::UnknownTimezone { timezone, .. } if timezone == "Mars/Olympus"),
        "{error:?}"
    );
}

#[test]
fn a_condition_step_without_branches_is_named() {
    let error = sole_error(&workflow([json!({"id": "route", "type": "condition"})]));
    assert_eq!(location(&error), "steps[0] (route)");
    assert!(
        matches!(
            error,
            DefinitionError::Required {
                field: "branches",
                ..
            }
        ),
        "{error:?}"
    );

    let empty = sole_error(&workflow([
        json!({"id": "route", "type": "condition", "branches": []}),
    ]));
    assert_eq!(location(&empty), "steps[0] (route).branches");
    assert!(
        matches!(
            empty,
            DefinitionError::InvalidValue { .. } | DefinitionError::Required { .. }
        ),
        "{empty:?}"
    );
}

#[test]
fn a_human_approval_step_with_agent_criteria_is_named() {
    let error = sole_error(&workflow([json!({
        "id": "execution-approval", "type": "human_approval",
        "agentCriteria": {"type": "AGENT"},
        "task": {"type": "APPROVAL_REQUEST", "parameters": {"limit": 100000}}
    })]));
    assert_eq!(location(&error), "steps[0] (execution-approval)");
    assert!(
        matches!(
            error,
            DefinitionError::NotAllowed {
                field: "agentCriteria",
                ..
            }
        ),
        "{error:?}"
    );

    // Condition steps call no agent either.
    let condition_step = sole_error(&workflow([json!({
        "id": "route", "type": "condition", "agentCriteria": {"type": "AGENT"},
        "branches": [{"name": "up", "when": "true"}]
    })]));
    assert_eq!(location(&condition_step), "steps[0] (route)");
    assert!(matches!(
        condition_step,
        DefinitionError::NotAllowed {
            field: "agentCriteria",
            ..
        }
    ));
}

#[test]
fn values_of_the_wrong_type_say_what_was_found() {
    let error = sole_error(&workflow([with(task("a"), json!({"timeout": "5s"}))]));
    assert_eq!(location(&error), "steps[0] (a).timeout");
    assert!(
        matches!(&error, DefinitionError::InvalidType { found, .. } if found.contains("5s")),
        "{error:?}"
    );

    let steps_not_array = sole_error(&json!({"id": "w", "steps": {"a": {}}}));
    assert_eq!(location(&steps_not_array), "steps");
    assert!(
        matches!(steps_not_array, DefinitionError::InvalidType { .. }),
        "{steps_not_array:?}"
    );
}

#[test]
fn out_of_range_values_are_named() {
    let empty = sole_error(&json!({"id": "w", "steps": []}));
    assert_eq!(location(&empty), "steps");
    assert!(
        matches!(empty, DefinitionError::InvalidValue { .. }),
        "{empty:?}"
    );

    let errors = errors_in(&workflow([with(
        task("a"),
        json!({"retryPolicy": {"maxAttempts": 0, "jitter": 1.5}}),
    )]));
    assert_eq!(errors.len(), 2, "{errors:?}");
    expect_error!(
        errors,
        "steps[0] (a).retryPolicy.maxAttempts",
        DefinitionError::InvalidValue { .. }
    );
    expect_error!(
        errors,
        "steps[0] (a).retryPolicy.jitter",
        DefinitionError::InvalidValue { value, .. } if value == "1.5"
    );
}
