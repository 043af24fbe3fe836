//! The `decisions` summary of `simulate --runs N`: what the `decision` steps of many runs
//! chose, and how well it paid.
//!
//! A step report that made a decision carries
//! `"decision": {"option": "twap", "contextKey": "high", "policy": "THOMPSON",
//! "priorScores": {…}, "reward": 0.83}` (`reward` only when one was learned for it,
//! `contextKey` absent or `""` when the step has none). The summary counts, per step,
//! context key and option, the runs whose step chose the option, and averages the
//! rewards that are present:
//! `{stepId: {contextKey: {optionId: {"chosen": n, "meanReward": x}}}}`, `meanReward`
//! `null` when no run learned a reward for that choice, every level in key order.
//!
//! It reads the reports as JSON, so that it depends on nothing but the report format, and
//! is a pure function: reports in, summary out. O(steps of all reports) time;
//! O(choices + rewards) memory.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// What the runs chose for one step, context key and option.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Tally {
    /// How many runs chose it.
    chosen: u64,
    /// The mean of the rewards learned for those choices; `None` (`null`) for none.
    mean_reward: Option<f64>,
    /// The rewards seen, averaged once every report is read.
    #[serde(skip)]
    rewards: Vec<f64>,
}

/// The summary of the `decision` objects of `reports` (run reports as JSON), as
/// `{stepId: {contextKey: {optionId: {"chosen": n, "meanReward": x}}}}`; `{}` when no
/// step of any report made a decision.
///
/// A `decision` without a string `option` is not counted; a `contextKey` that is absent,
/// `null` or not a string counts as `""` (a non-string one as its JSON text); a `reward`
/// that is not a number is left out of the mean.
pub(crate) fn decisions<'r>(reports: impl IntoIterator<Item = &'r Value>) -> Value {
    let mut summary: BTreeMap<&str, BTreeMap<String, BTreeMap<&str, Tally>>> = BTreeMap::new();
    let steps = reports
        .into_iter()
        .filter_map(|report| report.get("steps").and_then(Value::as_object))
        .flatten();
    for (step, report) in steps {
        let Some(decision) = report.get("decision") else {
            continue;
        };
        let Some(option) = decision.get("option").and_then(Value::as_str) else {
            continue;
        };
        let key = match decision.get("contextKey") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(key)) => key.clone(),
            Some(other) => other.to_string(),
        };
        let tally = summary
            .entry(step)
            .or_default()
            .entry(key)
            .or_default()
            .entry(option)
            .or_default();
        tally.chosen = tally.chosen.saturating_add(1);
        if let Some(reward) = decision.get("reward").and_then(Value::as_f64) {
            tally.rewards.push(reward);
        }
    }
    for tally in summary
        .values_mut()
        .flat_map(BTreeMap::values_mut)
        .flat_map(BTreeMap::values_mut)
    {
        tally.mean_reward = mean(&tally.rewards);
    }
    // Strings, numbers and null under string keys: serializing cannot fail.
    serde_json::to_value(summary).unwrap_or_default()
}

/// The mean of `values`, `None` for none. Summed as `x / n` terms, each no larger than
/// the largest value, so that finite values never overflow to infinity.
fn mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    // A count of rewards is far below 2^53: exact as a float.
    let n = values.len() as f64;
    Some(values.iter().map(|value| value / n).sum())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A run report whose steps are `steps` (id → step report).
    fn report(steps: Value) -> Value {
        json!({"runId": "run-1", "workflowId": "w", "status": "COMPLETED", "steps": steps,
               "error": null})
    }

    fn chose(option: &str, context_key: Option<&str>, reward: Option<f64>) -> Value {
        let mut decision = json!({"option": option, "policy": "THOMPSON",
                                  "priorScores": {"twap": 0.5, "vwap": 0.4}});
        if let Some(key) = context_key {
            decision["contextKey"] = json!(key);
        }
        if let Some(reward) = reward {
            decision["reward"] = json!(reward);
        }
        json!({"status": "COMPLETED", "agentId": "a-1", "attempts": 1, "decision": decision})
    }

    #[test]
    fn runs_without_decisions_summarize_to_an_empty_object() {
        let plain = report(json!({"analysis": {"status": "COMPLETED", "attempts": 1}}));
        assert_eq!(decisions([&plain, &plain]), json!({}));
        assert_eq!(decisions([]), json!({}));
    }

    #[test]
    fn choices_are_counted_per_step_context_key_and_option_with_their_mean_reward() {
        let reports = [
            report(json!({
                "pick-algo": chose("twap", Some("high"), Some(0.8)),
                "pick-venue": chose("lit", None, None),
            })),
            report(json!({
                "pick-algo": chose("twap", Some("high"), None),
                "pick-venue": chose("dark", Some(""), Some(-1.0)),
            })),
            report(json!({
                "pick-algo": chose("twap", Some("high"), Some(0.6)),
                "pick-venue": chose("lit", None, Some(2.0)),
            })),
            report(json!({
                "pick-algo": chose("vwap", Some("low"), Some(0.25)),
                "pick-venue": {"status": "SKIPPED", "reason": "condition false"},
            })),
        ];
        let summary = decisions(&reports);
        assert_eq!(
            summary,
            json!({
                "pick-algo": {
                    "high": {"twap": {"chosen": 3, "meanReward": 0.7}},
                    "low": {"vwap": {"chosen": 1, "meanReward": 0.25}}
                },
                "pick-venue": {
                    "": {
                        "dark": {"chosen": 1, "meanReward": -1.0},
                        "lit": {"chosen": 2, "meanReward": 2.0}
                    }
                }
            })
        );
        // Every level in key order, whatever order the runs chose in.
        let text = serde_json::to_string(&summary).unwrap();
        assert!(text.find("\"high\"") < text.find("\"low\""), "{text}");
        assert!(text.find("\"dark\"") < text.find("\"lit\""), "{text}");
    }

    #[test]
    fn a_choice_no_run_learned_a_reward_for_has_a_null_mean() {
        let reports = [
            report(json!({"pick": chose("twap", None, None)})),
            report(json!({"pick": chose("twap", None, None)})),
        ];
        assert_eq!(
            decisions(&reports),
            json!({"pick": {"": {"twap": {"chosen": 2, "meanReward": null}}}})
        );
    }

    #[test]
    fn malformed_decisions_are_counted_as_far_as_they_can_be() {
        let reports = [report(json!({
            "no-option": {"status": "COMPLETED", "decision": {"contextKey": "high"}},
            "option-not-text": {"status": "COMPLETED", "decision": {"option": 3}},
            "not-an-object": {"status": "COMPLETED", "decision": "twap"},
            "key-and-reward-odd": {"status": "COMPLETED",
                                   "decision": {"option": "twap", "contextKey": 2,
                                                "reward": "high"}},
            "null-key": {"status": "COMPLETED",
                         "decision": {"option": "twap", "contextKey": null, "reward": 1}},
        }))];
        let no_steps = json!({"runId": "run-2", "steps": []});
        assert_eq!(
            decisions(reports.iter().chain([&no_steps, &json!(null)])),
            json!({
                "key-and-reward-odd": {"2": {"twap": {"chosen": 1, "meanReward": null}}},
                "null-key": {"": {"twap": {"chosen": 1, "meanReward": 1.0}}}
            })
        );
    }

    #[test]
    fn means_of_huge_rewards_stay_finite() {
        assert_eq!(mean(&[f64::MAX, f64::MAX]), Some(f64::MAX));
        assert_eq!(mean(&[f64::MAX, -f64::MAX]), Some(0.0));
        assert_eq!(mean(&[]), None);
    }
}
