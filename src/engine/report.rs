//! The run report: how a run and each of its steps ended.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::agent::AgentId;
use crate::definition::{DecisionPolicy, StepId};
use crate::run::{RecoveryDecision, RunError, RunId, RunStatus, StepError, StepStatus};

/// How one step of a run ended.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct StepReport {
    /// The final status.
    pub status: StepStatus,
    /// The agent whose attempt produced the final result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    /// For `parallel` steps: the agent of each item, in input order; for coordinated
    /// steps: every agent asked, in selection order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_ids: Option<Vec<AgentId>>,
    /// Calls made, all agents together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// The output (with `outputMapping` applied), the workflow's `sensitive` fields
    /// written `"***"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Why the step was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For `human_approval` steps: who answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// Why the step failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    /// The recoveries self-healing applied to the step's failures, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recoveries: Vec<RecoveryDecision>,
    /// For a `decision` step with a `decision` block that started: what it chose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<DecisionReport>,
    /// Why the decision's `reward` could not be evaluated when the run ended (the step
    /// it reads did not complete, the path is missing, the value is not a number):
    /// nothing was learned, and the host may still report a reward.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward_missing: Option<String>,
    /// The ids of the workflow's adaptations applied to the step as it started, in the
    /// order they applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adaptations: Vec<String>,
}

/// What a `decision` step chose, in its [`StepReport`].
///
/// Serialized as `{"option": "vwap", "contextKey": "calm", "policy": "THOMPSON",
/// "priorScores": {"sweep": 0.3, "twap": 0.62, "vwap": 0.79}, "reward": 0.91}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DecisionReport {
    /// The option chosen.
    pub option: String,
    /// The value of the step's `contextKey` when it chose (`""` without one).
    pub context_key: String,
    /// The policy that chose.
    pub policy: DecisionPolicy,
    /// Every option's prior score, by option id.
    pub prior_scores: BTreeMap<String, f64>,
    /// The reward learned from, once there is one (evaluated at the run's end, or
    /// reported by the host before this report was read from the journal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward: Option<f64>,
}

/// The outcome of a run: every step of the definition with its final status.
///
/// Serializes to the run report `tradeflow simulate` prints (`docs/command.md`); `steps`
/// keep the definition's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RunReport {
    /// The run.
    pub run_id: RunId,
    /// The workflow it ran.
    pub workflow_id: String,
    /// How it ended.
    pub status: RunStatus,
    /// When it started (from the engine's clock).
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub ended_at: DateTime<Utc>,
    /// Every step, in the definition's order.
    #[serde(with = "ordered_steps")]
    pub steps: Vec<(StepId, StepReport)>,
    /// The failure that ended the run, if one did.
    pub error: Option<RunError>,
}

impl RunReport {
    /// The report of step `id`.
    pub fn step(&self, id: &str) -> Option<&StepReport> {
        self.steps
            .iter()
            .find(|(step, _)| step.as_str() == id)
            .map(|(_, report)| report)
    }

    /// The report as pretty-printed JSON (the format of `tradeflow simulate`).
    pub fn to_json_pretty(&self) -> String {
        // Plain data with string keys: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// `steps` as a JSON object in the definition's order.
mod ordered_steps {
    use std::collections::BTreeMap;

    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serializer};

    use super::StepReport;
    use crate::definition::StepId;

    pub(super) fn serialize<S: Serializer>(
        steps: &[(StepId, StepReport)],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(steps.len()))?;
        for (id, report) in steps {
            map.serialize_entry(id, report)?;
        }
        map.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<(StepId, StepReport)>, D::Error> {
        Ok(BTreeMap::<StepId, StepReport>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}
