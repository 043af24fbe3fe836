//! A file with many problems gets all of them in one pass, each once, wherever they are:
//! steps, dependencies, workflow conditions and triggers, structural or semantic.

mod support;

use serde_json::json;
use support::{errors_in, listing, summary, task, task_with, with, workflow};
use tradeflow::definition::DefinitionError;

/// The expected (location, kind) pairs, sorted like [`summary`].
fn sorted(expected: &[(&str, &'static str)]) -> Vec<(String, &'static str)> {
    let mut expected: Vec<(String, &'static str)> = expected
        .iter()
        .map(|(at, kind)| ((*at).to_owned(), *kind))
        .collect();
    expected.sort();
    expected
}

#[test]
fn semantic_problems_in_steps_dependencies_conditions_and_triggers_are_all_reported() {
    let definition = json!({
        "id": "everything-wrong",
        "steps": [
            with(task("a"), json!({"condition": {"expression": "${input.x} >"}})),
            task_with("b", json!({"x": "${nope.output}"})),
            task("a"),
            {"id": "c", "type": "human_approval", "agentCriteria": {"type": "AGENT"}},
            {"id": "route", "type": "condition"},
            task("d"),
            task("e")
        ],
        "dependencies": [
            {"from": "d", "to": "e"},
            {"from": "e", "to": "d"},
            {"from": "b", "to": "ghost"}
        ],
        "conditions": [{"expression": "market.isOpen() &&"}],
        "triggers": [
            {"type": "SCHEDULED", "schedule": "61 * * * *"},
            {"type": "THRESHOLD", "threshold": 0.1},
            {"type": "EVENT", "eventType": "MARKET_SIGNAL",
             "condition": {"expression": "event.strength > 7 days ago"}}
        ]
    });
    let errors = errors_in(&definition);
    assert_eq!(
        summary(&errors),
        sorted(&[
            ("steps[0] (a).condition.expression", "Expression"),
            ("steps[1] (b).task.parameters.x", "UnknownBindingStep"),
            ("steps[2] (a).id", "DuplicateStepId"),
            ("steps[3] (c)", "NotAllowed"),
            ("steps[4] (route)", "Required"),
            ("steps[5] (d)", "Cycle"),
            ("dependencies[2].to", "UnknownStep"),
            ("conditions[0].expression", "Expression"),
            ("triggers[0] (SCHEDULED).schedule", "InvalidCron"),
            ("triggers[1] (THRESHOLD)", "Required"),
            ("triggers[2] (EVENT).condition.expression", "Expression"),
        ]),
        "\n{}",
        listing(&errors)
    );
}

#[test]
fn structural_problems_in_every_part_are_all_reported() {
    let definition = json!({
        "id": "typos",
        "nmae": "Typos everywhere",
        "steps": [
            with(task("a"), json!({"retryPolcy": {}, "colour": "red"})),
            with(task("b"), json!({"type": "tsk"})),
            with(task("c"), json!({"timeout": "5s"}))
        ],
        "dependencies": [{"from": "a"}],
        "executionPolicy": {"concurrency": "SERIAL"},
        "triggers": [{"type": "HOURLY"}]
    });
    let errors = errors_in(&definition);
    assert_eq!(
        summary(&errors),
        sorted(&[
            ("workflow", "UnknownField"),
            ("executionPolicy.concurrency", "UnknownVariant"),
            ("steps[0] (a)", "UnknownField"),
            ("steps[0] (a)", "UnknownField"),
            ("steps[1] (b).type", "UnknownVariant"),
            ("steps[2] (c).timeout", "InvalidType"),
            ("dependencies[0]", "MissingField"),
            ("triggers[0].type", "UnknownVariant"),
        ]),
        "\n{}",
        listing(&errors)
    );
    let unknown: Vec<&str> = errors
        .iter()
        .filter_map(|error| match error {
            DefinitionError::UnknownField { field, .. } => Some(field.as_str()),
            _ => None,
        })
        .collect();
    for field in ["nmae", "retryPolcy", "colour"] {
        assert!(unknown.contains(&field), "{field} in {unknown:?}");
    }
}

#[test]
fn structural_and_semantic_problems_are_reported_together() {
    let definition = json!({
        "id": "mixed",
        "steps": [
            with(task("a"), json!({"retryPolcy": {"maxAttempts": 3}})),
            with(task("b"), json!({"condition": {"expression": "${input.ok} === true &&"}})),
            task_with("c", json!({"from": "${a.output}", "to": "${nowhere.output}"}))
        ],
        "dependencies": [{"from": "a", "to": "b"}, {"from": "c", "to": "ghost"}],
        "triggers": [{"type": "SCHEDULED", "schedule": "0 9 * *"}]
    });
    let errors = errors_in(&definition);
    // Step `a` did not load, but it exists: binding to it or depending on it is fine,
    // and the steps after it keep their indices in the file.
    assert_eq!(
        summary(&errors),
        sorted(&[
            ("steps[0] (a)", "UnknownField"),
            ("steps[1] (b).condition.expression", "Expression"),
            ("steps[2] (c).task.parameters.to", "UnknownBindingStep"),
            ("dependencies[1].to", "UnknownStep"),
            ("triggers[0] (SCHEDULED).schedule", "InvalidCron"),
        ]),
        "\n{}",
        listing(&errors)
    );
}

#[test]
fn a_broken_condition_is_reported_even_when_it_reads_a_step_that_did_not_load() {
    let definition = workflow([
        with(task("a"), json!({"retryPolcy": {"maxAttempts": 3}})),
        with(
            task("b"),
            json!({"condition": {"expression": "${a.output.ok} === true &&"}}),
        ),
    ]);
    let errors = errors_in(&definition);
    assert_eq!(
        summary(&errors),
        sorted(&[
            ("steps[0] (a)", "UnknownField"),
            ("steps[1] (b).condition.expression", "Expression"),
        ]),
        "\n{}",
        listing(&errors)
    );
}

#[test]
fn the_same_mistake_in_several_places_is_reported_in_each() {
    let broken = "${input.x} > 7 days ago";
    let steps = ["s0", "s1", "s2"]
        .map(|id| with(task(id), json!({"skipCondition": {"expression": broken}})));
    let errors = errors_in(&workflow(steps));
    assert_eq!(
        summary(&errors),
        sorted(&[
            ("steps[0] (s0).skipCondition.expression", "Expression"),
            ("steps[1] (s1).skipCondition.expression", "Expression"),
            ("steps[2] (s2).skipCondition.expression", "Expression"),
        ]),
        "\n{}",
        listing(&errors)
    );
}

#[test]
fn the_report_has_one_problem_a_line() {
    let definition = json!({
        "id": "w",
        "steps": [
            task_with("a", json!({"x": "${nope.output}"})),
            with(task("b"), json!({"condition": {"expression": "\"unterminated"}}))
        ],
        "dependencies": [{"from": "a", "to": "zzz"}]
    });
    let errors = match tradeflow::plan::ExecutionPlan::from_json(&definition.to_string()) {
        Ok(_) => panic!("three problems were not found"),
        Err(errors) => errors,
    };
    assert_eq!(errors.len(), 3, "{errors}");
    let report = errors.to_string();
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), 3, "{report}");
    for (line, error) in lines.iter().zip(errors.iter()) {
        assert_eq!(*line, error.to_string());
        let at = error
            .location()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(line.starts_with(&at), "{line} starts with {at}");
    }
}
