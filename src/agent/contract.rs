//! The contract between the engine and an agent: what it is, what it is asked, what it
//! answers.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{AgentId, CircuitBreaker};
use crate::definition::{AgentType, StepId, TaskType};
use crate::run::seed::mix;
use crate::run::{FailureKind, RunId};

/// Runs one task for the engine. Only `descriptor` and `execute` are required.
///
/// Agents are registered as `Arc<dyn Agent>` with an
/// [`AgentRegistry`](super::AgentRegistry); the engine calls `execute` on whichever agent
/// the registry selects, possibly many times at once: up to
/// [`AgentDescriptor::max_concurrency`], which is **1 by default**, so an agent that does
/// not raise it serves one call at a time across every run (see
/// [Capacity](super#capacity)).
///
/// # Examples
/// ```
/// use tradeflow::agent::{Agent, AgentDescriptor, AgentError, TaskRequest};
///
/// struct Echo(AgentDescriptor);
///
/// #[tradeflow::async_trait]
/// impl Agent for Echo {
///     fn descriptor(&self) -> &AgentDescriptor {
///         &self.0
///     }
///
///     async fn execute(&self, request: TaskRequest) -> Result<serde_json::Value, AgentError> {
///         Ok(request.parameters)
///     }
/// }
/// # let _ = Echo(AgentDescriptor::new("echo-1", "ECHO"));
/// ```
#[async_trait::async_trait]
pub trait Agent: Send + Sync {
    /// Who this agent is: id, type, capabilities, weight, capacity.
    ///
    /// Read once, when the agent is registered; later changes are not seen.
    fn descriptor(&self) -> &AgentDescriptor;

    /// Runs the task. Errors say whether a retry can help ([`AgentErrorKind`]).
    async fn execute(&self, request: TaskRequest) -> Result<Value, AgentError>;

    /// Health probe; the default reports healthy.
    async fn health(&self) -> Health {
        Health::Healthy
    }
}

#[async_trait::async_trait]
impl<A: Agent + ?Sized> Agent for Arc<A> {
    fn descriptor(&self) -> &AgentDescriptor {
        (**self).descriptor()
    }

    async fn execute(&self, request: TaskRequest) -> Result<Value, AgentError> {
        (**self).execute(request).await
    }

    async fn health(&self) -> Health {
        (**self).health().await
    }
}

#[async_trait::async_trait]
impl<A: Agent + ?Sized> Agent for Box<A> {
    fn descriptor(&self) -> &AgentDescriptor {
        (**self).descriptor()
    }

    async fn execute(&self, request: TaskRequest) -> Result<Value, AgentError> {
        (**self).execute(request).await
    }

    async fn health(&self) -> Health {
        (**self).health().await
    }
}

/// Who an agent is, as the registry sees it. Field names follow the agents file
/// (`id`, `type`, `capabilities`, `weight`, `maxConcurrency`, `circuitBreaker`); unknown
/// fields are ignored so that richer agent entries can be read into it.
///
/// `max_concurrency` defaults to **1**: one call at a time, across every run. An agent
/// that can serve calls concurrently should say how many with
/// [`with_max_concurrency`](Self::with_max_concurrency), or a bot's runs queue behind
/// each other (100 runs together: 1.4–3.6 s at 1 slot, 0.12–0.17 s at 100, in a user's
/// bot; see [Capacity](super#capacity)).
///
/// ```
/// # use tradeflow::agent::AgentDescriptor;
/// let exec = AgentDescriptor::new("exec-1", "TRADING_EXECUTION")
///     .with_capabilities(["twap", "vwap"])
///     .with_weight(2.0)
///     .with_max_concurrency(4);
/// assert!(exec.has_capability("twap"));
/// let parsed: AgentDescriptor = serde_json::from_str(
///     r#"{"id": "exec-1", "type": "TRADING_EXECUTION", "capabilities": ["twap", "vwap"],
///         "weight": 2, "maxConcurrency": 4}"#,
/// )?;
/// assert_eq!(parsed, exec);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentDescriptor {
    /// Unique in the registry.
    pub id: AgentId,
    /// Matched against a step's `agentCriteria.type`.
    #[serde(rename = "type")]
    pub agent_type: AgentType,
    /// What the agent can do, matched against required and preferred capabilities.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Relative share of work under the `WEIGHTED` balancer; finite and > 0. Default 1.
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// Calls the agent takes at once, across every run; at least 1. Default 1: one at a
    /// time, the others wait (raise it for an agent that can serve several).
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: u32,
    /// The agent's own circuit breaker, in place of the registry's default (which may
    /// be off). Default: none, the registry's (see
    /// [Circuit breakers](super#circuit-breakers)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
}

fn default_weight() -> f64 {
    1.0
}

fn default_max_concurrency() -> u32 {
    1
}

impl AgentDescriptor {
    /// A descriptor with no capabilities, weight 1 and one call at a time (raise it with
    /// [`with_max_concurrency`](Self::with_max_concurrency)).
    pub fn new(id: impl Into<AgentId>, agent_type: impl Into<AgentType>) -> Self {
        Self {
            id: id.into(),
            agent_type: agent_type.into(),
            capabilities: Vec::new(),
            weight: default_weight(),
            max_concurrency: default_max_concurrency(),
            circuit_breaker: None,
        }
    }

    /// Sets the capabilities. Defaults to none.
    pub fn with_capabilities(
        mut self,
        capabilities: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.capabilities = capabilities.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the weight (finite, > 0; checked when registered). Defaults to 1.
    pub fn with_weight(mut self, weight: f64) -> Self {
        self.weight = weight;
        self
    }

    /// Sets how many calls the agent takes at once, across every run (at least 1;
    /// checked when registered). Defaults to 1, which serialises every call of the
    /// agent: set it to what the agent can really serve at once.
    pub fn with_max_concurrency(mut self, max_concurrency: u32) -> Self {
        self.max_concurrency = max_concurrency;
        self
    }

    /// Gives the agent a circuit breaker of its own, in place of the registry's default
    /// (on even when the default is off; `failures` at least 1 and `open_for` at most
    /// [`MAX_DURATION_MS`](crate::plan::MAX_DURATION_MS), checked when registered).
    /// Defaults to none: the registry's default applies.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tradeflow::agent::{AgentDescriptor, CircuitBreaker};
    /// // A venue session that should be left alone quickly, and for a minute.
    /// let venue = AgentDescriptor::new("venue-1", "TRADING_EXECUTION")
    ///     .with_circuit_breaker(CircuitBreaker::new(2, Duration::from_secs(60)));
    /// assert_eq!(venue.circuit_breaker.map(|b| b.failures), Some(2));
    /// ```
    pub fn with_circuit_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.circuit_breaker = Some(breaker);
        self
    }

    /// Whether the agent declares `capability`.
    pub fn has_capability(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|own| own == capability)
    }

    /// Why the descriptor cannot be registered, if it cannot.
    pub(crate) fn problem(&self) -> Option<&'static str> {
        if !(self.weight.is_finite() && self.weight > 0.0) {
            Some("weight must be finite and greater than 0")
        } else if self.max_concurrency == 0 {
            Some("maxConcurrency must be at least 1")
        } else {
            self.circuit_breaker.and_then(|breaker| breaker.problem())
        }
    }
}

/// One call of an agent: which run, step, item and attempt it belongs to, and the task.
///
/// The engine builds requests; fields may be added in later releases (the struct is
/// `#[non_exhaustive]`), so code outside the crate builds one with [`TaskRequest::new`]
/// (tests of an agent, say) and reads the fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TaskRequest {
    /// The run the call belongs to.
    pub run_id: RunId,
    /// The step the call belongs to.
    pub step_id: StepId,
    /// The item's index, for a `parallel` step's calls.
    pub item: Option<usize>,
    /// 1 for the first call of the step (or item), 2 for the first retry, …
    pub attempt: u32,
    /// The same for a call made again after a crash as for the interrupted one, so an
    /// agent can recognise a duplicate (an order must not be sent twice).
    pub idempotency_key: String,
    /// The task type.
    pub task_type: TaskType,
    /// The parameters, bindings resolved: the real values, the workflow's `sensitive`
    /// fields included (the only place the engine puts them).
    pub parameters: Value,
    /// A seed for this call's random choices, derived from the run's seed and the call's
    /// identity: its step, item, iteration, attempt and rollback generation (not the run
    /// id). The same call of a run with the same seed gets the same seed, whatever order
    /// the calls are made in; another attempt gets another. An agent that draws values at
    /// random (a scripted agent's `random`, see [`sim`](crate::sim)) seeds its generator
    /// with it, so that a simulation is reproducible.
    #[serde(default)]
    pub seed: u64,
}

impl TaskRequest {
    /// The first call (`attempt` 1, no item) of run `run_id`'s step `step_id`, with key
    /// `idempotency_key`, for `task_type` with `parameters`, and a `seed` derived from the
    /// key; change the public fields for an item, a later attempt or other random draws.
    ///
    /// ```
    /// # use serde_json::json;
    /// use tradeflow::agent::TaskRequest;
    ///
    /// let mut request = TaskRequest::new("run-1", "trade", "run-1/trade/0/0", "ORDER", json!({"qty": 5}));
    /// request.attempt = 2;
    /// assert_eq!(request.parameters["qty"], 5);
    /// ```
    pub fn new(
        run_id: impl Into<RunId>,
        step_id: impl Into<StepId>,
        idempotency_key: impl Into<String>,
        task_type: impl Into<TaskType>,
        parameters: Value,
    ) -> Self {
        let idempotency_key = idempotency_key.into();
        Self {
            run_id: run_id.into(),
            step_id: step_id.into(),
            item: None,
            attempt: 1,
            seed: mix(0, &idempotency_key),
            idempotency_key,
            task_type: task_type.into(),
            parameters,
        }
    }
}

/// Why an agent call failed, which decides what the engine does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum AgentErrorKind {
    /// A transient problem (venue busy, rate limit): retrying can help.
    Temporary,
    /// The task itself is wrong: never retried.
    Permanent,
    /// This agent cannot serve now: another eligible agent is tried, if there is one.
    AgentUnavailable,
    /// The call took too long: retried like `Temporary`.
    Timeout,
    /// The call may or may not have taken effect (the venue timed out after the order
    /// was sent; the connection dropped mid-request). Never retried blindly: the engine
    /// first asks the step's `reconcile` task whether it did.
    OutcomeUnknown,
}

impl AgentErrorKind {
    /// The name as written in JSON and reports (`AGENT_UNAVAILABLE`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Temporary => "TEMPORARY",
            Self::Permanent => "PERMANENT",
            Self::AgentUnavailable => "AGENT_UNAVAILABLE",
            Self::Timeout => "TIMEOUT",
            Self::OutcomeUnknown => "OUTCOME_UNKNOWN",
        }
    }
}

impl fmt::Display for AgentErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed agent call: its kind and the agent's message.
///
/// ```
/// # use tradeflow::agent::{AgentError, AgentErrorKind};
/// let error = AgentError::temporary("venue busy");
/// assert_eq!(error.kind, AgentErrorKind::Temporary);
/// assert_eq!(error.to_string(), "TEMPORARY: venue busy");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct AgentError {
    /// What kind of failure it is.
    pub kind: AgentErrorKind,
    /// The agent's explanation.
    pub message: String,
}

impl AgentError {
    /// An error of `kind`.
    pub fn new(kind: AgentErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// A [`AgentErrorKind::Temporary`] error.
    pub fn temporary(message: impl Into<String>) -> Self {
        Self::new(AgentErrorKind::Temporary, message)
    }

    /// A [`AgentErrorKind::Permanent`] error.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(AgentErrorKind::Permanent, message)
    }

    /// An [`AgentErrorKind::AgentUnavailable`] error.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(AgentErrorKind::AgentUnavailable, message)
    }

    /// A [`AgentErrorKind::Timeout`] error.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(AgentErrorKind::Timeout, message)
    }
}

/// An agent's health, as reported by [`Agent::health`] or set by the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Health {
    /// Working normally.
    #[default]
    Healthy,
    /// Working, but slowly or partly: scored lower.
    Degraded,
    /// Not expected to work: chosen only when every eligible agent is unhealthy.
    Unhealthy,
}

impl Health {
    /// The name as written in JSON and reports (`DEGRADED`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "HEALTHY",
            Self::Degraded => "DEGRADED",
            Self::Unhealthy => "UNHEALTHY",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<AgentErrorKind> for FailureKind {
    fn from(kind: AgentErrorKind) -> Self {
        match kind {
            AgentErrorKind::Temporary => Self::Temporary,
            AgentErrorKind::Permanent => Self::Permanent,
            AgentErrorKind::AgentUnavailable => Self::AgentUnavailable,
            AgentErrorKind::Timeout => Self::Timeout,
            AgentErrorKind::OutcomeUnknown => Self::OutcomeUnknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn _object_safe(_: &dyn Agent) {}

    struct Fixed(AgentDescriptor);

    #[async_trait::async_trait]
    impl Agent for Fixed {
        fn descriptor(&self) -> &AgentDescriptor {
            &self.0
        }

        async fn execute(&self, _: TaskRequest) -> Result<Value, AgentError> {
            Err(AgentError::unavailable("closed"))
        }
    }

    fn request() -> TaskRequest {
        TaskRequest {
            run_id: RunId::from("r"),
            step_id: StepId::from("s"),
            item: None,
            attempt: 1,
            idempotency_key: "r/s/1".into(),
            task_type: TaskType::ORDER_EXECUTION,
            parameters: Value::Null,
            seed: 0,
        }
    }

    #[test]
    fn smart_pointers_forward_every_method() {
        let agent = Fixed(AgentDescriptor::new("a", "T"));
        let boxed: Box<dyn Agent> = Box::new(Arc::new(agent));
        assert_eq!(boxed.descriptor().id, "a");
        let result = futures::executor::block_on(boxed.execute(request()));
        assert_eq!(result.unwrap_err().kind, AgentErrorKind::AgentUnavailable);
        assert_eq!(futures::executor::block_on(boxed.health()), Health::Healthy);
    }

    #[test]
    fn descriptor_defaults_and_checks() {
        let parsed: AgentDescriptor =
            serde_json::from_str(r#"{"id": "a", "type": "T", "tasks": {}}"#).unwrap();
        assert_eq!(parsed, AgentDescriptor::new("a", "T"));
        assert_eq!(parsed.problem(), None);
        assert!(parsed.clone().with_weight(0.0).problem().is_some());
        assert!(parsed.clone().with_weight(f64::NAN).problem().is_some());
        assert!(parsed.with_max_concurrency(0).problem().is_some());
    }

    #[test]
    fn kinds_use_json_names() {
        for kind in [
            AgentErrorKind::Temporary,
            AgentErrorKind::Permanent,
            AgentErrorKind::AgentUnavailable,
            AgentErrorKind::Timeout,
        ] {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        assert_eq!(
            serde_json::to_string(&Health::Unhealthy).unwrap(),
            "\"UNHEALTHY\""
        );
        assert_eq!(AgentError::timeout("slow").kind.as_str(), "TIMEOUT");
        assert_eq!(AgentError::permanent("bad").kind, AgentErrorKind::Permanent);
    }
}
