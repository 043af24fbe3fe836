//! The host's [`Secrets`]: the sensitive values a resumed run needs and its journal does
//! not hold (the contract is on [`Secrets`]).

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::definition::{Quoted, StepId};
use crate::run::RunId;

/// Where a redacted value was: the run's input, or a step's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretSource<'a> {
    /// The run's input (as the host started it).
    Input,
    /// The output of a completed step (with `outputMapping` applied).
    Output {
        /// The step.
        step_id: &'a StepId,
    },
}

/// One redacted value a resumed run asks the host for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecretField<'a> {
    /// The run.
    pub run_id: &'a RunId,
    /// Its workflow.
    pub workflow_id: &'a str,
    /// Whether the value was in the input or a step's output.
    pub source: SecretSource<'a>,
    /// Where in it, as a JSON Pointer (`/broker/apiKey`, `/legs/0/account`): the host
    /// that kept the original value finds it with
    /// [`Value::pointer`](serde_json::Value::pointer).
    pub pointer: &'a str,
}

/// Gives a resumed run the sensitive values its journal holds only as `"***"`. Set with
/// [`EngineBuilder::secrets`](super::EngineBuilder::secrets); without one, a run whose
/// input held sensitive values cannot be recovered.
///
/// A workflow's `sensitive` field names ([`Sensitive`](crate::plan::Sensitive)) are
/// journaled as `"***"`: the store never holds their values. A run the engine drives from
/// its start has them in memory; a run [`Engine::recover`](super::Engine::recover)
/// continues after a restart has only its journal. Before such a run goes on, the engine
/// asks the host's hook ([`EngineBuilder::secrets`](super::EngineBuilder::secrets)) for
/// every redacted value, one [`SecretField`] at a time, each located by the run, the
/// source (the run's input, or a completed step's output) and a JSON Pointer
/// (RFC 6901) into it:
///
/// - **The run's input.** Every redacted value of the input must come back: steps not
///   yet run may bind to any of it. A value the hook does not give (it answers `None`,
///   or the engine has no hook) refuses the recovery with
///   [`RecoveryError::SecretUnavailable`](super::RecoveryError::SecretUnavailable) or
///   [`RecoveryError::NoSecrets`](super::RecoveryError::NoSecrets), naming the field:
///   the run stays in the store, unfinished and unchanged, for a later recovery with a
///   hook that has it. The engine never sends `"***"` to an agent in place of a secret.
/// - **A completed step's output.** Agents' answers are not the host's to keep, so a
///   hook often cannot give them: the engine asks, and when the answer is `None` (or
///   there is no hook) the value stays `"***"` in the resumed run — unless a step that
///   has not ended binds to that step's output (its data inputs): then the recovery is
///   refused as above, naming the step and the field. So a step after the restart
///   either sees the real value or does not run; the report shows `"***"` either way.
///
/// The hook is called while [`Engine::recover`](super::Engine::recover) runs, on its
/// thread, once per redacted value, before the run's future exists; it should answer
/// from memory or a local vault (it blocks the recovery while it runs).
///
/// Any `Fn(&SecretField<'_>) -> Option<Value> + Send + Sync` is a `Secrets`.
///
/// # Examples
/// ```
/// use serde_json::{Value, json};
/// use tradeflow::engine::{Engine, SecretField, SecretSource};
///
/// // The bot keeps its credentials in its own configuration, not in the journal.
/// let credentials = json!({"broker": {"apiKey": "k-live-123"}});
/// let engine = Engine::builder()
///     .secrets(move |field: &SecretField<'_>| match field.source {
///         SecretSource::Input => credentials.pointer(field.pointer).cloned(),
///         _ => None,
///     })
///     .build();
/// # drop(engine);
/// ```
pub trait Secrets: Send + Sync {
    /// The real value of `field`, or `None` when the host does not have it.
    fn restore(&self, field: &SecretField<'_>) -> Option<Value>;
}

impl<F> Secrets for F
where
    F: Fn(&SecretField<'_>) -> Option<Value> + Send + Sync,
{
    fn restore(&self, field: &SecretField<'_>) -> Option<Value> {
        self(field)
    }
}

impl fmt::Debug for dyn Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secrets")
    }
}

/// Where a value a recovery could not restore was: the input's field, or a step's
/// output's, by JSON Pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecretLocation {
    /// The step whose output held it; `None`: the run's input.
    pub step_id: Option<StepId>,
    /// The JSON Pointer of the value in it.
    pub pointer: String,
}

impl fmt::Display for SecretLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.step_id {
            None => write!(f, "input field `{}`", Quoted(&self.pointer)),
            Some(step) => write!(
                f,
                "output field `{}` of step `{}`",
                Quoted(&self.pointer),
                Quoted(step.as_str())
            ),
        }
    }
}

/// The values of `journaled` (a folded journal of a run of `plan`) put back as `secrets`
/// gives them; see [`Secrets`] for what must come back.
pub(super) fn restore(
    plan: &crate::plan::ExecutionPlan,
    secrets: Option<&Arc<dyn Secrets>>,
    journaled: &mut crate::store::RunState,
) -> Result<(), super::RecoveryError> {
    use super::RecoveryError;
    let sensitive = plan.sensitive();
    if sensitive.is_empty() {
        return Ok(());
    }
    let refused = |location: SecretLocation| match secrets {
        None => RecoveryError::NoSecrets { field: location },
        Some(_) => RecoveryError::SecretUnavailable { field: location },
    };
    let run_id = journaled.run_id.clone();
    let workflow_id = journaled.workflow_id.clone();
    let ask = |source: SecretSource<'_>, pointer: &str| {
        secrets.and_then(|secrets| {
            secrets.restore(&SecretField {
                run_id: &run_id,
                workflow_id: &workflow_id,
                source,
                pointer,
            })
        })
    };
    sensitive.restore(&mut journaled.input, |pointer| {
        ask(SecretSource::Input, pointer).ok_or_else(|| {
            refused(SecretLocation {
                step_id: None,
                pointer: pointer.to_owned(),
            })
        })
    })?;
    // The steps whose outputs a step that has not ended binds to: their values must
    // come back; the others' may stay redacted.
    let needed: std::collections::HashSet<usize> = plan
        .steps()
        .iter()
        .filter(|step| {
            journaled
                .steps
                .get(step.id())
                .is_none_or(|state| !state.status.is_final())
        })
        .flat_map(|step| step.data_inputs().iter().copied())
        .collect();
    for (step_id, state) in &mut journaled.steps {
        let Some(output) = state.output.as_mut() else {
            continue;
        };
        let must = plan
            .index_of(step_id.as_str())
            .is_some_and(|index| needed.contains(&index));
        sensitive.restore(output, |pointer| {
            match ask(SecretSource::Output { step_id }, pointer) {
                Some(value) => Ok(value),
                None if must => Err(refused(SecretLocation {
                    step_id: Some(step_id.clone()),
                    pointer: pointer.to_owned(),
                })),
                None => Ok(Value::String(crate::plan::REDACTED.to_owned())),
            }
        })?;
    }
    Ok(())
}
