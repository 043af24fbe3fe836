//! Trading safety rails: the pure rules behind the checks the engine makes before it
//! calls an agent.
//!
//! Generic workflow engines treat a step as a function call; an order is not one. Its
//! data goes stale in milliseconds, and a timeout does not mean it did not fill. Each
//! rail is an optional field of a step; without it a workflow runs as before.
//!
//! - **Fresh data only** ([`fresh`]): a step with `maxDataAgeMs` does not start (nor
//!   retry) on data older than that. A run's data time comes from
//!   `RunOptions::data_as_of`, the event that started it (an `EVENT` trigger's run), or
//!   its input's `asOf` (RFC 3339), in that order.
//! - **Outcome unknown** ([`reconcile`]): a call to a step with `"sideEffects": true`
//!   that may have taken effect (`OUTCOME_UNKNOWN`, or the step's own timeout) is never
//!   retried blindly: the step's `reconcile` task asks first whether it did.
//! - **Budgets** ([`budget`]): named token buckets, the workflow's (`budgets`) or the
//!   engine's (shared by every run); a step's `budget` is taken before each call, which
//!   waits for refill in priority then arrival order while its timeout allows, then
//!   fails `BUDGET_EXHAUSTED`.
//! - **Kill switch** ([`kill`]): engine-level rules over the host's metrics that, once
//!   tripped, refuse new runs of the workflows they cover (kind `HALTED`) and hold their
//!   runs' side-effect steps until enough people reset them.
//!
//! This module holds the decisions only (no clock, no I/O): the engine asks them at one
//! seam each: fresh data as a step is about to start (`engine/run/start.rs`) and before
//! each retry of its call (`engine/step/call.rs`); outcome unknown after an attempt, and
//! before the first attempt of a call a crash cut off (`engine/step/call.rs`); budgets
//! before each attempt chooses its agent (`engine/step/call.rs`, waiting on the engine's
//! clock in `engine/budgets.rs`); the kill switch as a run is started (`Engine::start`,
//! and before a fresh run's first step) and as a side-effect step is about to start
//! (`engine/run/start.rs`).

pub mod budget;
pub mod fresh;
pub mod kill;
pub mod reconcile;

pub use budget::{BudgetSpec, Ledger};
pub use fresh::{DataAsOf, Freshness, Stale};
pub use kill::{KillSwitch, KillSwitchError, KillSwitchEvent, KillSwitchRule, ResetProgress};
pub use reconcile::{SideEffects, Verdict};
