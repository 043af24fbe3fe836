//! Decisions: the results of `decision` steps, kept so that outcomes can be learned from.
//!
//! Every completed `decision` step is recorded with the engine's [`DecisionEngine`]:
//! which run and step, which agent, what it was asked and what it decided. The default,
//! [`DecisionLog`], keeps the records in memory. Learning from outcomes (which agents and
//! decisions work) builds on these records in a later release.

use std::fmt;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::agent::AgentId;
use crate::definition::{StepId, TaskType};
use crate::run::RunId;

/// One decision made by a `decision` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionRecord {
    /// The run.
    pub run_id: RunId,
    /// The workflow.
    pub workflow_id: String,
    /// The step.
    pub step_id: StepId,
    /// The task type.
    pub task_type: TaskType,
    /// The agent that decided.
    pub agent_id: Option<AgentId>,
    /// What it was asked (the resolved parameters).
    pub parameters: Value,
    /// What it decided (the step's output).
    pub decision: Value,
    /// When.
    pub at: DateTime<Utc>,
}

/// Where the engine records decisions. Implement it to persist or analyse them.
pub trait DecisionEngine: Send + Sync + fmt::Debug {
    /// Records one decision. Called by the executor; must not block for long.
    fn record(&self, decision: DecisionRecord);

    /// The decisions recorded for a workflow, oldest first (the default keeps none).
    fn decisions(&self, workflow_id: &str) -> Vec<DecisionRecord> {
        let _ = workflow_id;
        Vec::new()
    }
}

/// The default [`DecisionEngine`]: every record, in memory.
#[derive(Debug, Default)]
pub struct DecisionLog {
    records: Mutex<Vec<DecisionRecord>>,
}

impl DecisionLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every record, oldest first.
    pub fn all(&self) -> Vec<DecisionRecord> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl DecisionEngine for DecisionLog {
    fn record(&self, decision: DecisionRecord) {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(decision);
    }

    fn decisions(&self, workflow_id: &str) -> Vec<DecisionRecord> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|record| record.workflow_id == workflow_id)
            .cloned()
            .collect()
    }
}
