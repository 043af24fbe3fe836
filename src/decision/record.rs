//! The records of completed `decision` steps, the last few per workflow.

use std::collections::{BTreeMap, VecDeque};

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
    /// What it was asked (the resolved parameters), the workflow's `sensitive` fields
    /// written `"***"`.
    pub parameters: Value,
    /// What it decided (the step's output), the workflow's `sensitive` fields written
    /// `"***"`.
    pub decision: Value,
    /// When.
    pub at: DateTime<Utc>,
}

/// The last `keep` records of each workflow, oldest first.
#[derive(Debug)]
pub(super) struct Records {
    by_workflow: BTreeMap<String, VecDeque<DecisionRecord>>,
    keep: usize,
}

impl Records {
    /// No records yet; `keep` per workflow from now on.
    pub(super) fn new(keep: usize) -> Self {
        Self {
            by_workflow: BTreeMap::new(),
            keep,
        }
    }

    /// Adds `record`, dropping its workflow's oldest when there are `keep` already.
    pub(super) fn push(&mut self, record: DecisionRecord) {
        if self.keep == 0 {
            return;
        }
        if !self.by_workflow.contains_key(&record.workflow_id) {
            let records = VecDeque::new();
            self.by_workflow.insert(record.workflow_id.clone(), records);
        }
        let Some(records) = self.by_workflow.get_mut(&record.workflow_id) else {
            return;
        };
        if records.len() >= self.keep {
            records.pop_front();
        }
        records.push_back(record);
    }

    /// A workflow's records, oldest first.
    pub(super) fn of(&self, workflow_id: &str) -> Vec<DecisionRecord> {
        self.by_workflow
            .get(workflow_id)
            .map(|records| records.iter().cloned().collect())
            .unwrap_or_default()
    }
}
