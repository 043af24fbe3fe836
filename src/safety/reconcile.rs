//! Outcome unknown: reconcile before retry.
//!
//! A call to a step marked `"sideEffects": true` ([`SideEffects`]) that may have taken
//! effect — the agent answered `OUTCOME_UNKNOWN` (the venue timed out after the order was
//! sent; the connection dropped mid-request), or the step's own `timeout` expired — is
//! never retried blindly. The engine first calls the same agent (else another eligible for
//! the step) with the step's `reconcile` task (`{"type": "ORDER_STATUS"}`), passing the
//! same idempotency key and the original parameters. Its answer ([`Verdict::of`]):
//!
//! - `{"status": "DONE", "output": …}`: the call took effect; the step completes with
//!   that output;
//! - `{"status": "NOT_DONE"}`: it did not; the retry policy applies (the retry carries
//!   the same idempotency key);
//! - anything else, a failing reconcile call, or no `reconcile` block: nobody can tell;
//!   the step fails with kind `OUTCOME_UNKNOWN`, which is never healed.
//!
//! After a crash, a side-effect call that was in flight is reconciled the same way before
//! it is made again: a recovered run never re-sends an order it cannot prove was not sent.

use serde_json::Value;

use crate::definition::TaskType;

/// A step's `sideEffects` and `reconcile`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideEffects {
    reconcile: Option<TaskType>,
}

impl SideEffects {
    /// A step with side effects, reconciled with the task `reconcile` when it has one.
    pub fn new(reconcile: Option<TaskType>) -> Self {
        Self { reconcile }
    }

    /// The task that asks whether a call took effect, when the step has one.
    pub fn reconcile(&self) -> Option<&TaskType> {
        self.reconcile.as_ref()
    }
}

/// What a reconcile answer says about the call whose outcome was unknown.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Verdict {
    /// It took effect, with this output.
    Done(Value),
    /// It did not take effect: it may be made again.
    NotDone,
    /// The answer does not tell, for this reason.
    Unknown(String),
}

impl Verdict {
    /// Reads a reconcile task's answer: `{"status": "DONE", "output": …}` or
    /// `{"status": "NOT_DONE"}`; anything else does not tell.
    pub fn of(answer: Value) -> Self {
        let Value::Object(mut fields) = answer else {
            return Self::Unknown(format!(
                "the reconcile answer is {}, not an object with a `status`",
                crate::definition::json_kind(&answer)
            ));
        };
        match fields.get("status").and_then(Value::as_str) {
            Some("DONE") => match fields.remove("output") {
                Some(output) => Self::Done(output),
                None => Self::Unknown("the reconcile answer is DONE without an `output`".into()),
            },
            Some("NOT_DONE") => Self::NotDone,
            Some(other) => Self::Unknown(format!(
                "the reconcile answer's status is `{}`, neither DONE nor NOT_DONE",
                crate::definition::Quoted(other)
            )),
            None => Self::Unknown(
                "the reconcile answer has no `status` string (DONE or NOT_DONE)".into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn done_carries_the_output_and_not_done_allows_the_retry() {
        assert_eq!(
            Verdict::of(json!({"status": "DONE", "output": {"orderId": "o-1"}})),
            Verdict::Done(json!({"orderId": "o-1"}))
        );
        assert_eq!(Verdict::of(json!({"status": "NOT_DONE"})), Verdict::NotDone);
    }

    #[test]
    fn any_other_answer_does_not_tell() {
        for (answer, reason) in [
            (json!({"status": "DONE"}), "DONE without an `output`"),
            (json!({"status": "PARTIAL"}), "status is `PARTIAL`"),
            (json!({"status": 1}), "no `status` string"),
            (json!({}), "no `status` string"),
            (json!(["DONE"]), "is an array"),
            (json!(null), "is null"),
        ] {
            let Verdict::Unknown(why) = Verdict::of(answer.clone()) else {
                panic!("{answer} told")
            };
            assert!(why.contains(reason), "{answer}: {why}");
        }
    }
}
