//! Where a run and its steps are: [`RunStatus`] and [`StepStatus`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
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
#[non_exhaustive]
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
