//! The workflow's `adaptations`, as written: rules that change steps when the host's
//! conditions (or the engine's own measurements) call for it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{RetryPolicy, StepId};

/// One adaptation rule, as written: while `when` holds, the steps its `changes` name
/// start changed.
///
/// `when` is evaluated each time a step of the workflow is about to start, against the
/// host context and the names the engine keeps current (`agents.<TYPE>.available`,
/// `agents.<TYPE>.failureRate`, `steps.<stepId>.p95Ms`, `resources.<name>.available`,
/// `resources.<name>.utilization`); every rule that holds and changes that step applies,
/// in listed order. See `docs/workflow-format.md` for the whole contract.
///
/// # Examples
/// ```
/// use tradeflow::definition::AdaptationDefinition;
///
/// let rule: AdaptationDefinition = serde_json::from_str(r#"{
///     "id": "high-volatility", "when": "volatility.level > 0.5",
///     "changes": [{"stepId": "risk-assessment", "timeoutFactor": 2,
///                  "parameters": {"volatilityAdjustment": 0.5}}]
/// }"#)?;
/// assert_eq!(rule.changes[0].timeout_factor, Some(2.0));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdaptationDefinition {
    /// Unique among the workflow's adaptations, not empty; named in step reports, skip
    /// reasons and the journal.
    pub id: String,
    /// A condition over the host context and the engine's built-in names (no `${…}`
    /// bindings).
    pub when: String,
    /// What changes, step by step; at least one.
    pub changes: Vec<ChangeDefinition>,
}

/// How an adaptation changes one step, as written: at least one field besides `stepId`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangeDefinition {
    /// The step changed (it must exist, and not be a `condition` step).
    pub step_id: StepId,
    /// Merged over the task's parameters (top-level keys replaced). Literal values: a
    /// `${…}` binding is not allowed here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    /// Replaces the step's timeout, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// Multiplies the step's timeout (greater than 0, finite); no effect on a step
    /// without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_factor: Option<f64>,
    /// Replaces the step's retry policy (fields left out come from the workflow's
    /// `errorHandling.retryPolicy`, then the defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,
    /// `true`: the step is skipped, with reason `adaptation <id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<bool>,
}
