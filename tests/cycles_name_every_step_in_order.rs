//! A cycle is a validation error that names every step on it, in the order the edges
//! run, starting and ending at the same step — whatever mix of `dependencies`,
//! bindings and listed order makes it.

mod support;

use std::collections::HashSet;

use serde_json::json;
use support::{errors_in, listing, location, sole_error, task, task_with, with, workflow};
use tradeflow::definition::{DefinitionError, StepId};

/// The ids of a cycle's steps.
fn ids(steps: &[StepId]) -> Vec<&str> {
    steps.iter().map(StepId::as_str).collect()
}

/// Checks that `steps` is a closed walk along `edges` visiting distinct steps.
#[track_caller]
fn assert_is_cycle(steps: &[StepId], edges: &[(&str, &str)]) {
    let steps = ids(steps);
    assert!(steps.len() >= 3, "a cycle of distinct steps: {steps:?}");
    assert_eq!(steps.first(), steps.last(), "closed: {steps:?}");
    let distinct: HashSet<&str> = steps[1..].iter().copied().collect();
    assert_eq!(distinct.len(), steps.len() - 1, "simple: {steps:?}");
    for pair in steps.windows(2) {
        assert!(
            edges.contains(&(pair[0], pair[1])),
            "{} -> {} is not an edge of the workflow; cycle {steps:?}",
            pair[0],
            pair[1]
        );
    }
}

/// The steps of the one problem of `workflow`, which must be a cycle.
#[track_caller]
fn sole_cycle(workflow: &serde_json::Value) -> (String, Vec<StepId>, bool, String) {
    let error = sole_error(workflow);
    let message = error.to_string();
    match error {
        DefinitionError::Cycle {
            ref steps,
            through_listed_order,
            ..
        } => (
            location(&error),
            steps.clone(),
            through_listed_order,
            message,
        ),
        other => panic!("expected a cycle, got {other:?}"),
    }
}

#[test]
fn two_steps_that_depend_on_each_other() {
    let (at, steps, through_listed_order, message) = sole_cycle(&with(
        workflow([task("a"), task("b")]),
        json!({"dependencies": [{"from": "a", "to": "b"}, {"from": "b", "to": "a"}]}),
    ));
    assert_eq!(at, "steps[0] (a)");
    assert_eq!(ids(&steps), ["a", "b", "a"]);
    assert!(!through_listed_order);
    assert_eq!(message, "steps[0] (a): dependency cycle: a -> b -> a");
}

#[test]
fn three_steps_that_bind_to_each_other() {
    // c feeds a, a feeds b, b feeds c.
    let (at, steps, through_listed_order, message) = sole_cycle(&with(
        workflow([
            task_with("a", json!({"x": "${c.output}"})),
            task_with("b", json!({"x": "${a.output.x}"})),
            task_with("c", json!({"x": "${b.output.items[0]}"})),
        ]),
        json!({"dependencies": []}),
    ));
    assert_eq!(at, "steps[0] (a)");
    assert_eq!(ids(&steps), ["a", "b", "c", "a"]);
    assert!(!through_listed_order);
    assert_eq!(message, "steps[0] (a): dependency cycle: a -> b -> c -> a");
}

#[test]
fn dependencies_and_bindings_together() {
    // a -> b by dependency, b -> c by binding, c -> d by dependency, d -> a by binding
    // (in a condition).
    let edges = [("a", "b"), ("b", "c"), ("c", "d"), ("d", "a")];
    let (at, steps, _, _) = sole_cycle(&with(
        workflow([
            with(
                task("a"),
                json!({"condition": {"expression": "${d.output.ready} === true"}}),
            ),
            task("b"),
            task_with("c", json!({"x": "${b.output}"})),
            task("d"),
        ]),
        json!({"dependencies": [{"from": "a", "to": "b"}, {"from": "c", "to": "d"}]}),
    ));
    assert_eq!(at, "steps[0] (a)");
    assert_eq!(ids(&steps), ["a", "b", "c", "d", "a"]);
    assert_is_cycle(&steps, &edges);
}

#[test]
fn a_cycle_through_listed_order_says_so() {
    // Without `dependencies`, b runs after a; a binding makes a wait for b.
    let (at, steps, through_listed_order, message) = sole_cycle(&workflow([
        task_with("a", json!({"x": "${b.output}"})),
        task("b"),
    ]));
    assert_eq!(at, "steps[0] (a)");
    assert_eq!(ids(&steps), ["a", "b", "a"]);
    assert!(through_listed_order);
    assert!(message.contains("a -> b -> a"), "{message}");
    assert!(message.contains("listed order"), "{message}");
}

#[test]
fn a_cycle_away_from_the_first_step_is_located_at_its_own_first_step() {
    let (at, steps, _, _) = sole_cycle(&with(
        workflow([task("start"), task("x"), task("y"), task("z")]),
        json!({"dependencies": [
            {"from": "start", "to": "y"},
            {"from": "y", "to": "z"},
            {"from": "z", "to": "y"},
            {"from": "start", "to": "x"}
        ]}),
    ));
    assert_eq!(at, "steps[2] (y)");
    assert_eq!(ids(&steps), ["y", "z", "y"]);
}

#[test]
fn a_cycle_with_a_shortcut_still_names_a_real_cycle() {
    let edges = [("a", "b"), ("b", "c"), ("c", "a"), ("a", "c")];
    let dependencies: Vec<_> = edges
        .iter()
        .map(|(from, to)| json!({"from": from, "to": to}))
        .collect();
    let (at, steps, _, _) = sole_cycle(&with(
        workflow([task("a"), task("b"), task("c")]),
        json!({ "dependencies": dependencies }),
    ));
    assert_eq!(at, "steps[0] (a)");
    assert_eq!(steps[0].as_str(), "a");
    assert_is_cycle(&steps, &edges);
}

#[test]
fn separate_cycles_are_each_reported() {
    let edges = [
        ("a", "b"),
        ("b", "a"),
        ("c", "d"),
        ("d", "e"),
        ("e", "c"),
        ("b", "c"),
    ];
    let dependencies: Vec<_> = edges
        .iter()
        .map(|(from, to)| json!({"from": from, "to": to}))
        .collect();
    let errors = errors_in(&with(
        workflow(["a", "b", "c", "d", "e"].map(task)),
        json!({ "dependencies": dependencies }),
    ));
    let cycles: Vec<(String, Vec<&str>)> = errors
        .iter()
        .map(|error| match error {
            DefinitionError::Cycle { steps, .. } => (location(error), ids(steps)),
            other => panic!("only cycles expected:\n{}\n{other:?}", listing(&errors)),
        })
        .collect();
    assert_eq!(
        cycles,
        [
            ("steps[0] (a)".to_owned(), vec!["a", "b", "a"]),
            ("steps[2] (c)".to_owned(), vec!["c", "d", "e", "c"]),
        ]
    );
}

#[test]
fn a_step_that_waits_for_itself_is_not_a_cycle_of_others() {
    let error = sole_error(&with(
        workflow([task("a"), task("b")]),
        json!({"dependencies": [{"from": "b", "to": "b"}]}),
    ));
    assert_eq!(location(&error), "dependencies[0].to");
    assert!(
        matches!(&error, DefinitionError::SelfReference { binding, .. } if binding == "b"),
        "{error:?}"
    );
}
