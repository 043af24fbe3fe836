use std::time::Duration;

use serde_json::json;

use super::*;
use crate::plan::ExecutionPlan;

fn plan(adaptations: serde_json::Value) -> ExecutionPlan {
    let text = json!({
        "id": "w",
        "steps": [
            {"id": "risk", "type": "task", "timeout": 1000,
             "agentCriteria": {"type": "RISK"}, "task": {"type": "CHECK", "parameters": {"a": 1}}},
            {"id": "size", "type": "task",
             "agentCriteria": {"type": "RISK"}, "task": {"type": "SIZE"}}
        ],
        "adaptations": adaptations
    });
    ExecutionPlan::from_json(&text.to_string()).unwrap_or_else(|errors| panic!("{errors}"))
}

fn all(plan: &ExecutionPlan) -> Vec<&Adaptation> {
    plan.adaptations().iter().map(|rule| &**rule).collect()
}

#[test]
fn later_adaptations_win_on_the_same_key_and_merge_the_rest() {
    let plan = plan(json!([
        {"id": "first", "when": "x", "changes": [
            {"stepId": "risk", "parameters": {"a": 1, "b": 2}, "timeout": 500}]},
        {"id": "second", "when": "x", "changes": [
            {"stepId": "risk", "parameters": {"b": 3}, "timeoutFactor": 3}]}
    ]));
    let overrides = overrides(&all(&plan), &"risk".into(), Some(Duration::from_secs(1)));
    assert_eq!(
        overrides.parameters,
        json!({"a": 1, "b": 3}).as_object().cloned()
    );
    assert_eq!(overrides.timeout, Some(Duration::from_millis(1500)));
    assert_eq!(overrides.skip, None);
}

#[test]
fn a_timeout_factor_does_nothing_to_a_step_without_a_timeout() {
    let plan = plan(json!([
        {"id": "slow", "when": "x", "changes": [{"stepId": "size", "timeoutFactor": 2}]}
    ]));
    let overrides = overrides(&all(&plan), &"size".into(), None);
    assert_eq!(overrides, Overrides::default());
}

#[test]
fn the_first_adaptation_that_skips_names_the_skip_and_others_steps_are_untouched() {
    let plan = plan(json!([
        {"id": "halt", "when": "x", "changes": [{"stepId": "size", "skip": true}]},
        {"id": "halt-too", "when": "x", "changes": [{"stepId": "size", "skip": true}]}
    ]));
    let rules = all(&plan);
    assert_eq!(
        overrides(&rules, &"size".into(), None).skip.as_deref(),
        Some("halt")
    );
    assert_eq!(
        overrides(&rules, &"risk".into(), None),
        Overrides::default()
    );
}

#[test]
fn a_huge_factor_is_clamped_to_the_longest_duration() {
    let plan = plan(json!([
        {"id": "huge", "when": "x", "changes": [{"stepId": "risk", "timeoutFactor": 1e300}]}
    ]));
    let overrides = overrides(&all(&plan), &"risk".into(), Some(Duration::from_secs(1)));
    assert_eq!(
        overrides.timeout,
        Some(Duration::from_millis(MAX_DURATION_MS))
    );
}

#[test]
fn builtin_names_are_found_in_the_condition_and_set_when_defined() {
    let plan = plan(json!([
        {"id": "down", "when": "agents.RISK.available == 0 || steps.risk.p95Ms > 100 || vol > 1",
         "changes": [{"stepId": "risk", "skip": true}]}
    ]));
    let rule = &plan.adaptations()[0];
    let names: Vec<&str> = rule.builtins().iter().map(|(name, _)| &**name).collect();
    assert_eq!(names, ["agents.RISK.available", "steps.risk.p95Ms"]);
    let context = builtin_context(rule, &mut |builtin| match builtin {
        Builtin::AgentsAvailable(_) => Some(0.0),
        _ => None,
    });
    assert_eq!(context.variable("agents.RISK.available"), Some(json!(0.0)));
    assert_eq!(context.variable("steps.risk.p95Ms"), None);
    assert_eq!(rule.when().evaluate_with(&context).ok(), Some(true));
}

#[test]
fn measures_keep_only_the_last_twenty_calls() {
    let measures = Measures::new();
    let step = StepId::new("risk");
    let kind = crate::definition::AgentType::new("RISK");
    assert_eq!(measures.failure_rate(&kind), None);
    assert_eq!(measures.p95_ms("w", &step), None);
    for _ in 0..20 {
        measures.record("w", &step, &kind, true, Duration::from_millis(1000));
    }
    for millis in 1..=20 {
        measures.record(
            "w",
            &step,
            &kind,
            millis > 15,
            Duration::from_millis(millis),
        );
    }
    assert_eq!(measures.failure_rate(&kind), Some(0.25));
    // Ranks 1..=20: the 19th is the 95th percentile.
    assert_eq!(measures.p95_ms("w", &step), Some(19.0));
    assert_eq!(measures.p95_ms("other", &step), None);
}
