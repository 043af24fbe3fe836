//! Adaptations: which of a workflow's rules hold as a step is about to start, and what
//! they change — pure functions over the rules and a context, plus the bounded
//! measurements the engine keeps for the built-in names.
//!
//! # The contract
//! A workflow's `adaptations` are rules `{id, when, changes}`. The engine evaluates them
//! **when each step is about to start** (after its `condition`/`skipCondition`, before
//! its parameters are used), so a run in flight adapts the steps it has not started yet.
//! Every rule that changes the step and whose `when` holds at that moment applies, in
//! listed order (the workflow's own rules first, then those added with
//! `Engine::adapt_workflow`), a later one winning on the same key:
//!
//! - `parameters` are merged over the task's (top-level keys replaced; for a `decision`
//!   step, over the chosen option's too);
//! - `timeout` replaces the step's timeout, `timeoutFactor` multiplies it (applied after
//!   `timeout` within one change; no effect on a step without a timeout); the result is
//!   kept within 1 ms and [`MAX_DURATION_MS`];
//! - `retryPolicy` replaces the step's (still one call when self-healing disallows
//!   `RETRY`);
//! - `skip: true` skips the step, with reason `adaptation <id>` (the first rule that
//!   skips it).
//!
//! `when` reads, first, the built-in names the engine keeps current, then the engine's
//! conditions (`Engine::adapt_to_conditions`), then the run's own context
//! (`RunOptions::context`). The built-in names:
//!
//! | name | value |
//! |---|---|
//! | `agents.<TYPE>.available` | registered agents of the type that are not unhealthy and have a free slot |
//! | `agents.<TYPE>.failureRate` | the failed share of the type's last [`WINDOW`] calls (defined once it had one) |
//! | `steps.<stepId>.p95Ms` | the 95th percentile (nearest rank) of the latency of the step's last [`WINDOW`] calls, across the workflow's runs (defined once it had one) |
//! | `resources.<name>.available` | what the engine's resource pool has free of it (with a resource manager) |
//! | `resources.<name>.utilization` | in use ÷ capacity, in [0, 1] (with a resource manager) |
//!
//! A name that is not defined (an unknown name, a type without calls yet, no resource
//! manager) makes the evaluation fail, and a rule whose `when` cannot be evaluated does
//! not hold: it is logged (`tracing`, at debug level) and never fails a run.
//!
//! # Cost
//! A workflow without adaptations pays nothing. Otherwise, a step that no rule changes
//! pays a scan of the rules' changes; a step that one changes pays, per rule, the
//! built-in names its condition reads (each an O(1) lookup or a sort of at most
//! [`WINDOW`] numbers) and one compiled evaluation. Measurements are fixed-size ring
//! buffers ([`Measures`]), recorded only while some workflow has adaptations.

mod measures;

use std::time::Duration;

use serde_json::{Map, Value};

use crate::definition::StepId;
use crate::plan::{Adaptation, Builtin, MAX_DURATION_MS, Retry};

pub use measures::{Measures, WINDOW};

/// What the adaptations applied to a step change about it.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Overrides {
    /// Merged over the task's parameters (top-level keys).
    pub parameters: Option<Map<String, Value>>,
    /// The step's timeout, when it changed (`Some(None)` never happens: a step without
    /// a timeout gets one only from `timeout`).
    pub timeout: Option<Duration>,
    /// The retry policy that replaces the step's.
    pub retry: Option<Retry>,
    /// The adaptation that skips the step, if one does.
    pub skip: Option<String>,
}

impl Overrides {
    /// Whether the step's timeout or retry policy changes.
    pub fn changes_step_settings(&self) -> bool {
        self.timeout.is_some() || self.retry.is_some()
    }
}

/// What `applied` (in order) change about step `step`, whose timeout is `timeout`.
///
/// # Examples
/// ```
/// # use std::time::Duration;
/// # use tradeflow::plan::ExecutionPlan;
/// let plan = ExecutionPlan::from_json(r#"{"id": "w",
///     "steps": [{"id": "risk", "type": "task", "timeout": 1000,
///                "agentCriteria": {"type": "RISK"}, "task": {"type": "CHECK"}}],
///     "adaptations": [{"id": "calm", "when": "vol < 0.2",
///                      "changes": [{"stepId": "risk", "timeoutFactor": 2}]}]}"#)?;
/// let rules: Vec<_> = plan.adaptations().iter().map(|rule| &**rule).collect();
/// let overrides = tradeflow::adapt::overrides(&rules, &"risk".into(), Some(Duration::from_secs(1)));
/// assert_eq!(overrides.timeout, Some(Duration::from_secs(2)));
/// # Ok::<(), tradeflow::definition::ValidationErrors>(())
/// ```
pub fn overrides(applied: &[&Adaptation], step: &StepId, timeout: Option<Duration>) -> Overrides {
    let mut overrides = Overrides::default();
    let mut current = timeout;
    let max = Duration::from_millis(MAX_DURATION_MS);
    for adaptation in applied {
        for change in adaptation
            .changes()
            .iter()
            .filter(|change| change.step_id == *step)
        {
            if let Some(parameters) = &change.parameters {
                overrides.parameters.get_or_insert_with(Map::new).extend(
                    parameters
                        .iter()
                        .map(|(key, value)| (key.clone(), value.clone())),
                );
            }
            if let Some(timeout) = change.timeout {
                current = Some(timeout);
            }
            if let (Some(factor), Some(timeout)) = (change.timeout_factor, current) {
                let scaled = timeout.as_secs_f64() * 1000.0 * factor;
                // The factor is finite and positive: the product is clamped into range.
                let millis = scaled.clamp(1.0, MAX_DURATION_MS as f64);
                current = Some(Duration::from_millis(millis as u64).min(max));
            }
            if let Some(retry) = change.retry {
                overrides.retry = Some(retry);
            }
            if change.skip && overrides.skip.is_none() {
                overrides.skip = Some(adaptation.id().to_owned());
            }
        }
    }
    if current != timeout {
        overrides.timeout = current;
    }
    overrides
}

/// The built-in values `adaptation`'s condition reads, as a context of their names:
/// `value_of` answers each ([`None`]: not defined now, the name stays unset).
pub fn builtin_context(
    adaptation: &Adaptation,
    value_of: &mut dyn FnMut(&Builtin) -> Option<f64>,
) -> crate::expr::Context {
    let mut context = crate::expr::Context::new();
    for (name, builtin) in adaptation.builtins() {
        if let Some(value) = value_of(builtin).filter(|value| value.is_finite()) {
            context.set_variable(&**name, Value::from(value));
        }
    }
    context
}

#[cfg(test)]
mod tests;
