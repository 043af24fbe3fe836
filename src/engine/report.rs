//! The run report of SIMULATION.md, and run and step statuses.

use std::fmt;

use super::heal::RecoveryDecision;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::agent::{AgentErrorKind, AgentId, RunId};
use crate::definition::StepId;

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    /// Created, not started.
    Pending,
    /// Steps are running.
    Running,
    /// Nothing runs; a step waits for a person.
    Waiting,
    /// Paused by the host.
    Paused,
    /// Every required step completed (or was skipped).
    Completed,
    /// A required step failed.
    Failed,
    /// Cancelled by the host.
    Cancelled,
    /// The workflow `timeout` passed.
    TimedOut,
    /// A workflow condition did not hold, so nothing ran.
    Skipped,
}

impl RunStatus {
    /// The name as in reports (`TIMED_OUT`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Waiting => "WAITING",
            Self::Paused => "PAUSED",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
            Self::TimedOut => "TIMED_OUT",
            Self::Skipped => "SKIPPED",
        }
    }

    /// Whether the run has ended.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Cancelled | Self::TimedOut | Self::Skipped
        )
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StepStatus {
    /// Not started.
    #[default]
    Pending,
    /// Running.
    Running,
    /// Waiting for a person.
    Waiting,
    /// Done; its output is available.
    Completed,
    /// Not run (see the report's `reason`).
    Skipped,
    /// Failed (see the report's `error`).
    Failed,
    /// Stopped while running, because the run ended.
    Cancelled,
}

impl StepStatus {
    /// The name as in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Waiting => "WAITING",
            Self::Completed => "COMPLETED",
            Self::Skipped => "SKIPPED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// Whether the step has ended.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Skipped | Self::Failed | Self::Cancelled
        )
    }
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a step failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum FailureKind {
    /// The agent reported a transient failure (retries exhausted).
    Temporary,
    /// The agent reported a failure that retrying cannot help.
    Permanent,
    /// No agent could take the call.
    AgentUnavailable,
    /// A call (or a loop, or an approval) took longer than the step's `timeout`.
    Timeout,
    /// No registered agent meets the step's criteria.
    NoAgent,
    /// A person rejected the step (or did not answer in time).
    Rejected,
    /// A condition could not be evaluated, or gave no boolean.
    Condition,
    /// A binding could not be resolved (a missing input path, a missing output field).
    Binding,
    /// The agent's output was unusable (too large).
    InvalidOutput,
    /// The agent panicked (the panic was contained).
    Panic,
    /// The workflow's `timeout` passed.
    WorkflowTimeout,
    /// The engine's resource pool can never grant the step's (or the workflow's)
    /// `resourceRequirements`.
    Resources,
}

impl FailureKind {
    /// The name as in reports (`NO_AGENT`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Temporary => "TEMPORARY",
            Self::Permanent => "PERMANENT",
            Self::AgentUnavailable => "AGENT_UNAVAILABLE",
            Self::Timeout => "TIMEOUT",
            Self::NoAgent => "NO_AGENT",
            Self::Rejected => "REJECTED",
            Self::Condition => "CONDITION",
            Self::Binding => "BINDING",
            Self::InvalidOutput => "INVALID_OUTPUT",
            Self::Panic => "PANIC",
            Self::WorkflowTimeout => "WORKFLOW_TIMEOUT",
            Self::Resources => "RESOURCES",
        }
    }
}

impl From<AgentErrorKind> for FailureKind {
    fn from(kind: AgentErrorKind) -> Self {
        match kind {
            AgentErrorKind::Temporary => Self::Temporary,
            AgentErrorKind::Permanent => Self::Permanent,
            AgentErrorKind::AgentUnavailable => Self::AgentUnavailable,
            AgentErrorKind::Timeout => Self::Timeout,
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A step's failure: what kind and what happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepError {
    /// The kind.
    pub kind: FailureKind,
    /// What happened, naming the step and agent where there is one.
    pub message: String,
}

/// The failure that ended a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunError {
    /// The step that failed; `None` for failures before any step (a missing input path).
    pub step_id: Option<StepId>,
    /// The kind.
    pub kind: FailureKind,
    /// What happened.
    pub message: String,
}

/// How one step of a run ended.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    /// The final status.
    pub status: StepStatus,
    /// The agent whose attempt produced the final result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    /// For `parallel` steps: the agent of each item, in input order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_ids: Option<Vec<AgentId>>,
    /// Calls made, all agents together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// The output (with `outputMapping` applied).
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
}

/// The outcome of a run: every step of the definition with its final status.
///
/// Serializes to the run report of SIMULATION.md; `steps` keep the definition's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
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
