//! Why steps and runs fail: [`FailureKind`], [`StepError`] and [`RunError`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::definition::StepId;

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
    /// The run's journal could not be written (the store failed past its retries, or
    /// another engine took the run): the run stopped, and stays unfinished in the store.
    Store,
    /// The agents of a coordinated step could not reach its quorum: too few succeeded
    /// (`ALL`), or too few agreed (`QUORUM`), and the answers still to come could not
    /// change that.
    NoQuorum,
    /// The run's data was older than the step's `maxDataAgeMs` when the step was about
    /// to call its agent (with `"onStale": "FAIL"`); neither retried nor healed.
    StaleData,
    /// A call may have taken effect and its `reconcile` task could not tell whether it
    /// did (or the step has none): never retried blindly, never healed.
    OutcomeUnknown,
    /// The step's `budget` could not be had: a budget did not refill enough within the
    /// step's `timeout`, or a bound amount was over a budget's capacity or unknown.
    BudgetExhausted,
    /// A kill switch rule that covers the run's workflow has tripped: the run was refused
    /// (or stopped) until the rule is reset.
    Halted,
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
            Self::Store => "STORE",
            Self::NoQuorum => "NO_QUORUM",
            Self::StaleData => "STALE_DATA",
            Self::OutcomeUnknown => "OUTCOME_UNKNOWN",
            Self::BudgetExhausted => "BUDGET_EXHAUSTED",
            Self::Halted => "HALTED",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A step's failure: what kind and what happened.
///
/// Prints as `KIND: message` (`TIMEOUT: step `trade`, agent `exec-1`: no answer within
/// the step's timeout`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "camelCase")]
#[error("{kind}: {message}")]
pub struct StepError {
    /// The kind.
    pub kind: FailureKind,
    /// What happened, naming the step and agent where there is one.
    pub message: String,
}

/// The failure that ended a run.
///
/// Prints as `step `id` failed: KIND: message`, or `KIND: message` for a failure before
/// any step (a missing input, the workflow's timeout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "camelCase")]
#[error("{}{kind}: {message}", failed_step(.step_id.as_ref()))]
pub struct RunError {
    /// The step that failed; `None` for failures before any step (a missing input path).
    pub step_id: Option<StepId>,
    /// The kind.
    pub kind: FailureKind,
    /// What happened.
    pub message: String,
}

/// `step `id` failed: ` for a run error that names its step.
fn failed_step(step: Option<&StepId>) -> String {
    step.map(|step| format!("step `{step}` failed: "))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_print_kind_and_message_and_are_errors() {
        let step = StepError {
            kind: FailureKind::Timeout,
            message: "no answer".into(),
        };
        assert_eq!(step.to_string(), "TIMEOUT: no answer");
        let run = RunError {
            step_id: Some("trade".into()),
            kind: FailureKind::Timeout,
            message: "no answer".into(),
        };
        assert_eq!(run.to_string(), "step `trade` failed: TIMEOUT: no answer");
        let early = RunError {
            step_id: None,
            ..run
        };
        assert_eq!(early.to_string(), "TIMEOUT: no answer");
        let _: &dyn std::error::Error = &early;
    }
}
