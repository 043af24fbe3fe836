//! The vocabulary of a run: its id, where it and its steps are, why they fail, and what
//! self-healing decided.
//!
//! These types are shared by every layer that talks about runs: the [`engine`] that
//! drives them, the [`store`] that journals them, the [`agent`]s that are called for
//! them, and the reports and events a host reads. They depend on nothing but the
//! workflow format ([`definition`]), so each of those layers can use them without
//! depending on another.
//!
//! | type | what it says |
//! |---|---|
//! | [`RunId`] | which run (a shared string, cheap to clone) |
//! | [`RunStatus`] | where a run is: `RUNNING`, `WAITING`, `PAUSED`, or how it ended |
//! | [`StepStatus`] | where a step is: `PENDING`, `RUNNING`, `WAITING`, or how it ended |
//! | [`FailureKind`] | why a step failed (`TEMPORARY`, `TIMEOUT`, `NO_AGENT`, `REJECTED`, …) |
//! | [`StepError`] | a step's failure: its kind and a message naming step and agent |
//! | [`RunError`] | the failure that ended a run, with the step it came from |
//! | [`RecoveryDecision`] | the recovery self-healing applied to a failed step, with its score |
//!
//! Names print as in reports and journals (`TIMED_OUT`, `NO_AGENT`), and serialize the
//! same way; the enums that will grow are `#[non_exhaustive]`.
//!
//! ```
//! use tradeflow::run::{FailureKind, RunStatus, StepStatus};
//!
//! assert_eq!(RunStatus::TimedOut.to_string(), "TIMED_OUT");
//! assert!(RunStatus::Completed.is_final() && !RunStatus::Paused.is_final());
//! assert!(StepStatus::Skipped.is_final());
//! assert_eq!(serde_json::to_string(&FailureKind::NoAgent)?, r#""NO_AGENT""#);
//! # Ok::<(), serde_json::Error>(())
//! ```
//!
//! [`engine`]: crate::engine
//! [`store`]: crate::store
//! [`agent`]: crate::agent
//! [`definition`]: crate::definition

mod failure;
mod id;
mod recovery;
pub(crate) mod seed;
mod status;
mod value;

pub use failure::{FailureKind, RunError, StepError};
pub use id::RunId;
pub(crate) use id::shared_id;
pub use recovery::RecoveryDecision;
pub use status::{RunStatus, StepStatus};
pub(crate) use value::bounded;
pub use value::{MAX_VALUE_DEPTH, value_depth};
