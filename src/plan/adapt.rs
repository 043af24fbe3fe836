//! A workflow's adaptations, compiled: each rule's `when` as a [`Condition`], the
//! built-in names it reads resolved once, and its changes with their durations and retry
//! policies resolved.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::Retry;
use crate::definition::{AdaptationDefinition, AgentType, StepId};
use crate::expr::Condition;

/// An adaptation rule that passed validation: while its condition holds, the steps its
/// changes name start changed.
#[derive(Debug, Clone)]
pub struct Adaptation {
    pub(super) id: String,
    pub(super) when: Condition,
    pub(super) builtins: Box<[(Box<str>, Builtin)]>,
    pub(super) changes: Box<[Change]>,
    pub(super) definition: Arc<AdaptationDefinition>,
}

impl Adaptation {
    /// Its id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its condition, compiled.
    pub fn when(&self) -> &Condition {
        &self.when
    }

    /// The engine's built-in names its condition reads, each with the name as written.
    pub fn builtins(&self) -> &[(Box<str>, Builtin)] {
        &self.builtins
    }

    /// Its changes, in listed order.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// Whether it changes step `step`.
    pub fn changes_step(&self, step: &StepId) -> bool {
        self.changes.iter().any(|change| change.step_id == *step)
    }

    /// The rule as written.
    pub fn definition(&self) -> &AdaptationDefinition {
        &self.definition
    }
}

/// One change of an [`Adaptation`], resolved.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Change {
    /// The step changed.
    pub step_id: StepId,
    /// Merged over the task's parameters (top-level keys replaced).
    pub parameters: Option<Map<String, Value>>,
    /// Replaces the step's timeout.
    pub timeout: Option<Duration>,
    /// Multiplies the step's timeout, if it has one (after `timeout`).
    pub timeout_factor: Option<f64>,
    /// Replaces the step's retry policy (resolved over the workflow's and the defaults).
    pub retry: Option<Retry>,
    /// The step is skipped.
    pub skip: bool,
}

/// A name the engine keeps current for adaptations' conditions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Builtin {
    /// `agents.<TYPE>.available`: registered agents of the type that are not unhealthy
    /// and have a free slot.
    AgentsAvailable(AgentType),
    /// `agents.<TYPE>.failureRate`: the failed share of the type's last calls.
    AgentsFailureRate(AgentType),
    /// `steps.<stepId>.p95Ms`: the 95th percentile of the step's last calls' latency, in
    /// milliseconds, across the workflow's runs.
    StepP95Ms(StepId),
    /// `resources.<name>.available`: what the engine's resource pool has free of it.
    ResourceAvailable(String),
    /// `resources.<name>.utilization`: the share of it in use, in [0, 1].
    ResourceUtilization(String),
}

impl Builtin {
    /// The built-in `name` stands for, if it is one (`agents.RISK.available`).
    ///
    /// ```
    /// # use tradeflow::plan::Builtin;
    /// assert_eq!(
    ///     Builtin::parse("resources.cpu.utilization"),
    ///     Some(Builtin::ResourceUtilization("cpu".to_owned()))
    /// );
    /// assert_eq!(Builtin::parse("volatility.level"), None);
    /// ```
    pub fn parse(name: &str) -> Option<Self> {
        let (head, rest) = name.split_once('.')?;
        let (subject, field) = rest.rsplit_once('.')?;
        if subject.is_empty() {
            return None;
        }
        Some(match (head, field) {
            ("agents", "available") => Self::AgentsAvailable(AgentType::new(subject)),
            ("agents", "failureRate") => Self::AgentsFailureRate(AgentType::new(subject)),
            ("steps", "p95Ms") => Self::StepP95Ms(StepId::new(subject)),
            ("resources", "available") => Self::ResourceAvailable(subject.to_owned()),
            ("resources", "utilization") => Self::ResourceUtilization(subject.to_owned()),
            _ => return None,
        })
    }
}
