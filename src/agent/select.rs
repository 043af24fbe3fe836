//! What selection returns besides a [`Selection`](super::Selection): the candidates as
//! scored, the counts of how selections went, and why an agent was not registered or no
//! agent was selected.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::score::ScoreBreakdown;
use super::{AgentId, Health};
use crate::definition::{AgentType, Quoted, TaskType};

/// How selections have gone since a registry was created; from
/// [`AgentRegistry::selection_counts`].
///
/// [`AgentRegistry::selection_counts`]: super::AgentRegistry::selection_counts
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SelectionCounts {
    /// Selections that reserved a slot (by [`AgentRegistry::select`],
    /// [`AgentRegistry::acquire`] or [`AgentRegistry::select_agent`]).
    ///
    /// [`AgentRegistry::select`]: super::AgentRegistry::select
    /// [`AgentRegistry::acquire`]: super::AgentRegistry::acquire
    /// [`AgentRegistry::select_agent`]: super::AgentRegistry::select_agent
    pub reserved: u64,
    /// Selections that found every eligible agent busy (`AllBusy`): a caller about to
    /// wait, or a woken one that found no slot it could use. With
    /// [`AgentRegistry::acquire`], about one per caller that waited, plus one per
    /// waiting caller each time an agent registers or leaves, a health changes or a
    /// circuit breaker opens or closes.
    ///
    /// [`AgentRegistry::acquire`]: super::AgentRegistry::acquire
    pub busy: u64,
}

/// An agent that may run a call, as scored for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// The agent.
    pub agent: AgentId,
    /// How it scored.
    pub score: ScoreBreakdown,
    /// Its calls in flight when scored.
    pub in_flight: u32,
    /// Its capacity.
    pub max_concurrency: u32,
    /// Its weight, for the `WEIGHTED` balancer.
    pub weight: f64,
    /// Its health when scored.
    pub health: Health,
}

impl Candidate {
    /// Whether it was at `max_concurrency` when scored (and so could not be chosen).
    pub fn is_busy(&self) -> bool {
        self.in_flight >= self.max_concurrency
    }
}

/// Why an agent could not be registered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// An agent with this id is already registered.
    #[error("agent `{id}` is already registered")]
    DuplicateId {
        /// The id.
        id: AgentId,
    },
    /// The descriptor breaks a rule.
    #[error("agent `{id}`: {problem}")]
    InvalidDescriptor {
        /// The agent's id.
        id: AgentId,
        /// The rule broken.
        problem: &'static str,
    },
}

/// Why a reward was not credited, from
/// [`AgentRegistry::credit_reward`](super::AgentRegistry::credit_reward).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RewardError {
    /// The reward is not a finite number in [0, 1]: normalise it before crediting it.
    #[error(
        "reward {reward} for agent `{}` on task type `{}` is not a number in [0, 1]",
        Quoted(.agent.as_str()),
        Quoted(.task_type.as_str())
    )]
    OutOfRange {
        /// The agent credited.
        agent: AgentId,
        /// The task type credited.
        task_type: TaskType,
        /// The reward given.
        reward: f64,
    },
    /// No agent with this id is registered (it may have left since its decision).
    #[error("agent `{}` is not registered", Quoted(.agent.as_str()))]
    UnknownAgent {
        /// The agent credited.
        agent: AgentId,
    },
}

/// Why no agent was selected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectError {
    /// No registered agent meets the criteria: the step fails with kind `NO_AGENT`.
    #[error(
        "no registered agent of type `{agent_type}`{} is available{}",
        with_capabilities(required_capabilities),
        excluded_note(*excluded)
    )]
    NoAgent {
        /// The type asked for.
        agent_type: AgentType,
        /// The capabilities required.
        required_capabilities: Vec<String>,
        /// Agents that meet the criteria but were excluded by the caller.
        excluded: usize,
    },
    /// Eligible agents exist but none can take a call now: all are at `max_concurrency`,
    /// or the only free ones are unhealthy while healthier ones exist, or have their
    /// circuit breaker open.
    #[error("all {eligible} eligible agents of type `{agent_type}` are busy")]
    AllBusy {
        /// The type asked for.
        agent_type: AgentType,
        /// How many agents meet the criteria.
        eligible: usize,
    },
    /// Every agent that meets the criteria has its circuit breaker open (or half open
    /// with its probe in flight): kind `NO_AGENT`, like [`NoAgent`](Self::NoAgent).
    /// [`AgentRegistry::acquire`](super::AgentRegistry::acquire) waits instead, for the
    /// first to turn half open.
    #[error(
        "all {open} eligible agents of type `{agent_type}` have an open circuit breaker{}",
        half_open_note(*until)
    )]
    CircuitOpen {
        /// The type asked for.
        agent_type: AgentType,
        /// How many agents meet the criteria (all of them open).
        open: usize,
        /// When the first of them turns half open; none when every one is half open
        /// with its probe call in flight.
        until: Option<DateTime<Utc>>,
    },
}

fn half_open_note(until: Option<DateTime<Utc>>) -> String {
    match until {
        Some(until) => format!(
            " (the first lets a probe call through at {})",
            until.to_rfc3339_opts(SecondsFormat::Millis, true)
        ),
        None => " (a probe call is in flight)".to_owned(),
    }
}

fn with_capabilities(capabilities: &[String]) -> String {
    if capabilities.is_empty() {
        String::new()
    } else {
        format!(" with capabilities [{}]", capabilities.join(", "))
    }
}

fn excluded_note(excluded: usize) -> String {
    match excluded {
        0 => String::new(),
        n => format!(" ({n} excluded)"),
    }
}

impl SelectError {
    /// The kind as written in reports: `NO_AGENT` (also for `CircuitOpen`) or
    /// `ALL_BUSY`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoAgent { .. } | Self::CircuitOpen { .. } => "NO_AGENT",
            Self::AllBusy { .. } => "ALL_BUSY",
        }
    }
}
