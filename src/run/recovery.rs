//! What self-healing decided for a failed step: [`RecoveryDecision`].

use serde::{Deserialize, Serialize};

use super::FailureKind;
use crate::definition::RecoveryStrategy;

/// A recovery self-healing chose for a step's failure: in the journal and the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryDecision {
    /// The strategy applied.
    pub strategy: RecoveryStrategy,
    /// How likely it was judged to work, 0 to 1.
    pub confidence: f64,
    /// What it gives up, 0 to 1.
    pub cost: f64,
    /// `weight × (confidence − cost)`: the highest of the candidates.
    pub score: f64,
    /// The kind of the failure it recovered from.
    pub kind: FailureKind,
    /// The failure's message.
    pub message: String,
}
