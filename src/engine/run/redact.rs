//! Redaction of the workflow's `sensitive` values in what the run writes and says.
//!
//! The run's book keeps real values (later steps bind to them, and agents get them in
//! their [`TaskRequest`](crate::agent::TaskRequest)). What leaves the run is redacted
//! where it is built: the journal's input, outputs and approval parameters, the report's
//! outputs, events' parameters, decision records (by field name:
//! [`Sensitive`](crate::plan::Sensitive)); and every message (failures, skip reasons,
//! retries, the run's error, a missing reward's reason) loses the secret texts the run
//! has seen (its input's and its steps' outputs' sensitive values: [`Scrubber`]). A
//! workflow without `sensitive` names does none of this work.

use std::sync::Arc;

use serde_json::Value;

use super::Execution;
use super::transition::Transition;
use crate::plan::Scrubber;

impl Execution {
    /// The scrubber of the secret texts in `input`, when the plan names sensitive fields
    /// and the input has any.
    pub(super) fn scrubber_of(
        plan: &crate::plan::ExecutionPlan,
        input: &Value,
    ) -> Option<Arc<Scrubber>> {
        let sensitive = plan.sensitive();
        if sensitive.is_empty() {
            return None;
        }
        let mut texts = Vec::new();
        sensitive.secret_texts(input, &mut texts);
        (!texts.is_empty()).then(|| Arc::new(Scrubber::new(texts)))
    }

    /// Learns the secret texts of `value` (a step's output), so that later messages lose
    /// them too.
    pub(super) fn learn_secrets(&mut self, value: &Value) {
        let sensitive = self.book.plan.sensitive();
        if sensitive.is_empty() {
            return;
        }
        let mut texts = Vec::new();
        sensitive.secret_texts(value, &mut texts);
        if texts.is_empty() {
            return;
        }
        self.scrubber = Some(Arc::new(match &self.scrubber {
            Some(scrubber) => scrubber.with(texts),
            None => Scrubber::new(texts),
        }));
    }

    /// `value` as the run writes it: sensitive names redacted, secret texts scrubbed.
    pub(super) fn redacted(&self, value: &Value) -> Value {
        crate::plan::redacted(self.book.plan.sensitive(), self.scrubber.as_deref(), value)
    }

    /// `text` without the secret texts the run has seen.
    pub(super) fn scrub(&self, text: &mut String) {
        if let Some(scrubber) = &self.scrubber {
            scrubber.scrub_in_place(text);
        }
    }

    /// Scrubs the free text `transition` carries, before it is journaled, applied and
    /// announced; learns the secrets of a completed step's output.
    pub(super) fn redact_transition(&mut self, transition: &mut Transition) {
        if self.book.plan.sensitive().is_empty() {
            return;
        }
        if let Transition::Completed { success, .. } = transition {
            let output = std::mem::take(&mut success.output);
            self.learn_secrets(&output);
            success.output = output;
        }
        let Some(scrubber) = self.scrubber.clone() else {
            return;
        };
        match transition {
            Transition::Skipped { reason, .. } => scrubber.scrub_in_place(reason),
            Transition::Failed { failure, .. } => scrubber.scrub_in_place(&mut failure.message),
            Transition::Recovering {
                failure, decision, ..
            } => {
                scrubber.scrub_in_place(&mut failure.message);
                scrubber.scrub_in_place(&mut decision.message);
            }
            _ => {}
        }
    }
}
