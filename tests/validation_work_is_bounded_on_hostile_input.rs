//! Validation does bounded work on hostile input: never-matching cron patterns are found
//! by reasoning on their fields (not by croner's search to its limit), an unknown field
//! name too long to be a typo gets no edit-distance suggestion, a string of malformed
//! bindings reports a few, problems past 1,000 are counted rather than kept, and steps
//! that did not load are looked up in a set.
//!
//! Each input here took the old code seconds (release build) and gigabytes for some;
//! the tests check what is deterministic (counts of problems, sizes of messages), never
//! the time taken.

#[path = "support/command.rs"]
mod command;
mod support;

use serde_json::{Value, json};
use support::{task, task_with, with, workflow};
use tradeflow::definition::{DefinitionError, ValidationErrors};
use tradeflow::plan::ExecutionPlan;

/// Every problem in `workflow`, which must be invalid, with the count of those omitted.
#[track_caller]
fn problems(workflow: &Value) -> ValidationErrors {
    match ExecutionPlan::from_json(&workflow.to_string()) {
        Ok(_) => panic!("expected problems"),
        Err(errors) => errors,
    }
}

#[test]
fn never_matching_cron_patterns_are_each_reported_without_a_search() {
    // Was ≈ 7 ms each (croner searching to its limit): 300 took 2 s, 1,000 took 8 s.
    let triggers: Vec<Value> = ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 31W 2 *"]
        .iter()
        .cycle()
        .take(300)
        .map(|pattern| json!({"type": "SCHEDULED", "schedule": pattern}))
        .collect();
    let errors = problems(&with(workflow([task("a")]), json!({"triggers": triggers})));
    assert_eq!(errors.len(), 300);
    for error in &errors {
        assert!(
            matches!(error, DefinitionError::InvalidCron { reason, .. } if reason == "the pattern never matches a date"),
            "{error}"
        );
    }
}

#[test]
fn a_huge_unknown_field_gets_no_suggestion_and_a_short_message() {
    // Was 1.6 s and 190 MB for 1 MiB (12.7 s and 1.8 GB for 10 MiB): the edit distance
    // to every known name, in a table of name length × known length.
    let name = format!("retryPolicy{}", "y".repeat(1024 * 1024));
    let mut step = task("a");
    step[name.as_str()] = json!(1);
    let errors = problems(&workflow([step]));
    match errors.errors() {
        [
            DefinitionError::UnknownField {
                field, suggestion, ..
            },
        ] => {
            assert_eq!(field, &name);
            assert_eq!(*suggestion, None);
        }
        other => panic!("{other:?}"),
    }
    assert!(errors.to_string().len() < 1024);
}

#[test]
fn a_string_of_malformed_bindings_reports_a_few() {
    // Was 2.5 s, 2.4 GB and 1.2 GB of messages for 20,000 (a 60 KB string): each
    // problem copied the whole string.
    let parameters = json!({"p": "${}".repeat(20_000), "q": "${nope.output}"});
    let errors = problems(&workflow([task_with("a", parameters)]));
    let malformed = errors
        .iter()
        .filter(|error| matches!(error, DefinitionError::InvalidBinding { .. }))
        .count();
    assert_eq!(malformed, 8, "{errors}");
    assert_eq!(
        errors.len(),
        9,
        "the other string is still checked: {errors}"
    );
    assert!(errors.to_string().len() < 16 * 1024);
}

#[test]
fn problems_past_a_thousand_are_counted_not_kept() {
    let steps = (0..5000).map(|i| json!({"id": format!("s{i}"), "type": "tsk"}));
    let errors = problems(&workflow(steps));
    assert_eq!(errors.len(), ValidationErrors::MAX_PROBLEMS);
    assert_eq!(errors.omitted(), 4000);
    let text = errors.to_string();
    assert_eq!(text.lines().count(), 1001);
    assert_eq!(text.lines().last(), Some("… and 4000 more problems"));
}

#[test]
fn tradeflow_validate_ends_with_the_count_of_problems_omitted() {
    let dir = command::scratch_dir("problems-omitted");
    let steps = (0..1500).map(|i| json!({"id": format!("s{i}"), "type": "tsk"}));
    let path = command::write(&dir, "broken.json", &workflow(steps));
    let output = command::run(&["validate", &path]);
    command::assert_exit(&output, 2);
    let lines = command::stderr_lines(&output);
    assert_eq!(lines.len(), 1001);
    assert_eq!(
        lines.last().map(String::as_str),
        Some(format!("{path}: … and 500 more problems").as_str())
    );
}

#[test]
fn references_to_steps_that_did_not_load_are_dropped_in_linear_time() {
    // Was 0.5 s for 20,000 and 1.7 s for 40,000: a list searched once per problem.
    let mut steps: Vec<Value> = (0..20_000)
        .map(|i| json!({"id": format!("s{i}"), "type": "tsk"}))
        .collect();
    steps.push(task("ok"));
    let dependencies: Vec<Value> = (0..20_000)
        .map(|i| json!({"from": format!("s{i}"), "to": "ok"}))
        .collect();
    let errors = problems(&with(
        workflow(steps),
        json!({"dependencies": dependencies}),
    ));
    assert_eq!(errors.len() + errors.omitted(), 20_000);
    assert!(
        errors
            .iter()
            .all(|error| matches!(error, DefinitionError::UnknownVariant { .. })),
        "only the unknown step types: {errors}"
    );
}
