//! `Engine::coordinate_agents`: one task sent to agents the host names, their answers
//! combined as a coordinated step's are.

use serde::Serialize;
use serde_json::Value;

use super::Engine;
use crate::agent::{AgentError, AgentId, TaskRequest};
use crate::coordinate::Mode;

/// What [`Engine::coordinate_agents`] returns: the combined output and who gave it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Coordinated {
    /// The winning answer (`FIRST`, `QUORUM`, `BEST`), or for `ALL`
    /// `{"results": [...], "agentIds": [...]}`: the successful answers and their agents,
    /// in the order the agents were named.
    pub output: Value,
    /// The agent whose answer won; `None` for `ALL`.
    pub agent_id: Option<AgentId>,
    /// Every agent asked, in the order named (those still running when the outcome was
    /// decided included: their calls were cancelled).
    pub agent_ids: Vec<AgentId>,
    /// Calls made.
    pub attempts: u32,
}

/// Why [`Engine::coordinate_agents`] has no output.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CoordinateError {
    /// No agent was named.
    #[error("no agent named: a coordination asks at least one")]
    NoAgents,
    /// No registered agent has this id.
    #[error("agent `{id}` is not registered")]
    UnknownAgent {
        /// The id.
        id: AgentId,
    },
    /// This agent was named twice: a coordination asks distinct agents.
    #[error("agent `{id}` is named twice: a coordination asks distinct agents")]
    DuplicateAgent {
        /// The id.
        id: AgentId,
    },
    /// Too few agents succeeded (`ALL`) or agreed (`QUORUM`); the calls still running
    /// were cancelled once the quorum was out of reach.
    #[error("{mode}: {agreeing} of the {needed} answers needed ({asked} agents asked)")]
    NoQuorum {
        /// The mode (`ALL` or `QUORUM`).
        mode: &'static str,
        /// The successes (`ALL`) or the most agreeing answers (`QUORUM`).
        agreeing: usize,
        /// The answers needed.
        needed: usize,
        /// The agents asked.
        asked: usize,
    },
    /// Every agent failed; the first failure, in the order named.
    #[error("every agent asked failed; agent `{agent}`: {error}")]
    AllFailed {
        /// The first agent named that failed.
        agent: AgentId,
        /// Its error.
        error: AgentError,
    },
}

impl Engine {
    /// Sends `task` to each agent of `agent_ids` at once and combines their answers
    /// under `mode`, as a step with a `coordination` block does: `ALL` waits for every
    /// answer, `FIRST` returns the first success, `QUORUM` the first answer that enough
    /// agree with, `BEST` the best-ranked answer (ties to the agent named first).
    ///
    /// Each agent gets the request with its own idempotency key: `task`'s key followed
    /// by `/a<k>` for the k-th agent named (from 1). Each call waits for a free slot on
    /// its agent (its `maxConcurrency`), is made once (no retries: the host decides
    /// whether to ask again) and is recorded in the agent's history; an agent that
    /// panics fails its call. Calls still running when the outcome is decided are
    /// cancelled, which frees their slots at once; dropping the returned future cancels
    /// every call. No time limit is applied: bound the future with the host's own timer.
    ///
    /// # Errors
    /// [`CoordinateError::NoAgents`], [`CoordinateError::UnknownAgent`] and
    /// [`CoordinateError::DuplicateAgent`] before any call;
    /// [`CoordinateError::NoQuorum`] when too few succeed or agree (a quorum larger
    /// than the agents named fails before any call); [`CoordinateError::AllFailed`].
    ///
    /// # Examples
    /// ```
    /// # use std::sync::Arc;
    /// # use serde_json::{json, Value};
    /// use tradeflow::agent::{Agent, AgentDescriptor, AgentError, AgentId, TaskRequest};
    /// use tradeflow::coordinate::{Mode, ValuePath};
    /// use tradeflow::engine::Engine;
    ///
    /// /// A quant whose score is fixed.
    /// struct Quant(AgentDescriptor, f64);
    ///
    /// #[tradeflow::async_trait]
    /// impl Agent for Quant {
    ///     fn descriptor(&self) -> &AgentDescriptor {
    ///         &self.0
    ///     }
    ///     async fn execute(&self, _: TaskRequest) -> Result<Value, AgentError> {
    ///         Ok(json!({"score": self.1}))
    ///     }
    /// }
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let engine = Engine::builder().build();
    /// for (id, score) in [("quant-1", 0.4), ("quant-2", 0.8)] {
    ///     engine.register_agent(Arc::new(Quant(AgentDescriptor::new(id, "QUANT"), score)))?;
    /// }
    /// let task = TaskRequest::new("host", "score", "score-aapl-1", "SCORE", json!({"symbol": "AAPL"}));
    /// let best = Mode::Best { rank_by: ValuePath::parse("score")?, goal: Default::default() };
    /// let ids = [AgentId::from("quant-1"), AgentId::from("quant-2")];
    /// let answer = futures::executor::block_on(engine.coordinate_agents(&ids, task, &best))?;
    /// assert_eq!(answer.output, json!({"score": 0.8}));
    /// assert_eq!(answer.agent_id.as_ref().map(AgentId::as_str), Some("quant-2"));
    /// assert_eq!(answer.attempts, 2);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn coordinate_agents(
        &self,
        agent_ids: &[AgentId],
        task: TaskRequest,
        mode: &Mode,
    ) -> Result<Coordinated, CoordinateError> {
        if agent_ids.is_empty() {
            return Err(CoordinateError::NoAgents);
        }
        for (index, id) in agent_ids.iter().enumerate() {
            if agent_ids[..index].contains(id) {
                return Err(CoordinateError::DuplicateAgent { id: id.clone() });
            }
            if self.inner.registry.agent(id).is_none() {
                return Err(CoordinateError::UnknownAgent { id: id.clone() });
            }
        }
        super::step::coordinate_named(&self.inner, agent_ids, task, mode).await
    }
}
