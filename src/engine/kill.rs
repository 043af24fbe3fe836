//! The kill switch from the engine's side: metrics reported, rules tripped, flatten
//! workflows started, resets counted.
//!
//! The rules are given to [`EngineBuilder::kill_switch`](super::EngineBuilder::kill_switch)
//! (see [`crate::safety::kill`] for what a rule is). The host reports its metrics with
//! [`Engine::report_metric`]; each report sets the value among the engine's conditions
//! (those of [`Engine::adapt_to_conditions`], which adaptations read too) and evaluates
//! every armed rule over them. A rule that trips:
//! - refuses new runs of the workflows it covers: [`Engine::start`] returns
//!   [`EngineError::Halted`]; a run started otherwise ([`Engine::start_plan`], a
//!   trigger) ends `CANCELLED` before any step, with error kind `HALTED`;
//! - holds the `"sideEffects": true` steps of those workflows' runs in flight: such a
//!   step about to start waits (steps already called finish; other steps go on);
//! - starts its `flatten` workflow once (never halted by that rule): the report returns
//!   its [`Run`] for the host to drive.
//!
//! [`Engine::reset_kill_switch`] counts one person's reset; at the rule's `quorum` of
//! distinct people the rule is armed again and the held runs go on. Every trip and reset
//! is a [`KillSwitchEvent`], returned to the host and logged (`tracing`, warn level,
//! target `tradeflow::kill_switch`).

use serde_json::Value;

use super::{Engine, EngineError, Run, RunOptions};
use crate::audit::AuditEvent;
use crate::safety::{KillSwitchEvent, ResetProgress};

/// A rule that tripped on a report.
#[derive(Debug)]
#[non_exhaustive]
pub struct Tripped {
    /// What happened (a [`KillSwitchEvent::Tripped`]).
    pub event: KillSwitchEvent,
    /// The run of the rule's `flatten` workflow, started once; the host drives it.
    /// `Err` when it could not start (the workflow is unknown).
    pub flatten: Option<Result<Run, EngineError>>,
}

impl Engine {
    /// Reports metric `name` (`pnl.drawdown`) at `value`: sets it among the engine's
    /// conditions and evaluates the kill switch rules not tripped yet. Returns the rules
    /// that tripped now (a rule trips once until it is reset, however often it is
    /// reported over its threshold).
    pub fn report_metric(&self, name: &str, value: Value) -> Vec<Tripped> {
        self.adapt_to_conditions([(name, value)]);
        self.check_kill_switch()
    }

    /// Evaluates the armed kill switch rules over the engine's conditions now; the
    /// rules that tripped (see [`Engine::report_metric`]).
    pub fn check_kill_switch(&self) -> Vec<Tripped> {
        let switch = &self.inner.kill_switch;
        if switch.is_empty() {
            return Vec::new();
        }
        let context = self.inner.adapting.context();
        let trips = switch.evaluate(&context, self.inner.clock.now());
        trips
            .into_iter()
            .map(|trip| {
                tracing::warn!(target: "tradeflow::kill_switch", event = ?trip.event, "kill switch tripped");
                if let KillSwitchEvent::Tripped { rule, .. } = &trip.event {
                    // A failure is logged, and the entry waits for the log.
                    let _ = self.inner.audit_done(None, || AuditEvent::KillSwitchTripped {
                        rule: rule.clone(),
                    });
                }
                let flatten = trip.flatten.map(|workflow| {
                    self.known_workflow(&workflow)
                        .map(|plan| self.start_plan(plan, RunOptions::default().as_host()))
                });
                if let Some(Err(error)) = &flatten {
                    tracing::error!(target: "tradeflow::kill_switch", error = %error, "cannot start the flatten workflow");
                }
                Tripped {
                    event: trip.event,
                    flatten,
                }
            })
            .collect()
    }

    /// `by_user` resets kill switch rule `rule`: counted once per person; at the rule's
    /// `quorum` of distinct people the rule is armed again and the runs it held go on.
    /// With permissions ([`EngineBuilder::permissions`](super::EngineBuilder::permissions)),
    /// `by_user` must be allowed to `reset` the rule (with a
    /// [`PolicyPermissions`](crate::security::PolicyPermissions): the `admin` role, or a
    /// role listing `reset`).
    ///
    /// # Errors
    /// [`EngineError::KillSwitch`]: no such rule, the rule has not tripped, or `by_user`
    /// is empty; [`EngineError::Security`] when `by_user` may not reset it (not counted);
    /// [`EngineError::Audit`] when the audit log fails: before (entries wait for it;
    /// the reset is not counted) or after the reset is counted (it stands; its entry
    /// waits).
    pub fn reset_kill_switch(
        &self,
        rule: &str,
        by_user: &str,
    ) -> Result<ResetProgress, EngineError> {
        self.inner
            .permit(Some(by_user), crate::security::Action::Reset, Some(rule))?;
        self.inner.audit_ready()?;
        let progress = self
            .inner
            .kill_switch
            .reset(rule, by_user, self.inner.clock.now())?;

        match &progress {
            ResetProgress::Done(event) => {
                tracing::warn!(target: "tradeflow::kill_switch", event = ?event, "kill switch reset");
                self.inner.controls.wake_all();
            }
            ResetProgress::Pending { have, need } => {
                tracing::info!(target: "tradeflow::kill_switch", rule, by_user, have, need, "kill switch reset counted");
            }
        }
        self.inner
            .audit_done(Some(by_user), || AuditEvent::KillSwitchReset {
                rule: rule.to_owned(),
                armed: matches!(progress, ResetProgress::Done(_)),
            })?;
        Ok(progress)
    }

    /// The ids of the kill switch rules tripped now.
    pub fn kill_switch_tripped(&self) -> Vec<String> {
        self.inner.kill_switch.tripped()
    }
}
