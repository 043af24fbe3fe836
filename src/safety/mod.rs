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
//!
//! This module holds the decisions only (no clock, no I/O): the engine asks them at one
//! seam each, as a step is about to start (`engine/run/start.rs`) and before each retry
//! of its call (`engine/step/call.rs`).

pub mod fresh;

pub use fresh::{DataAsOf, Freshness, Stale};
