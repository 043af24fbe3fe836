//! Agents and their selection: the contract between tradeflow and the agents a trading
//! bot registers, and the engine that picks one agent per call.
//!
//! An [`Agent`] describes itself with an [`AgentDescriptor`] (id, type, capabilities,
//! weight, `max_concurrency`) and runs [`TaskRequest`]s, failing with an [`AgentError`]
//! whose [`AgentErrorKind`] tells the engine whether a retry can help. Agents are
//! registered with an [`AgentRegistry`], which they may join and leave while runs go on.
//!
//! # Capacity
//! An agent takes at most [`max_concurrency`](AgentDescriptor::max_concurrency) calls at
//! once, across every run, and the default is **1**: each call waits until the agent's
//! previous one has ended. That is safe for an agent that really can do one thing at a
//! time (a venue session that must not interleave orders), and silently serialises a bot
//! whose agents could serve many calls at once: in a user's bot, 100 runs started
//! together took 1.4–3.6 s with the default and 0.12–0.17 s with 100 slots. Say what the
//! agent can take (in an agents file of [`sim`](crate::sim): `maxConcurrency`, also 1
//! by default):
//!
//! ```
//! # use tradeflow::agent::AgentDescriptor;
//! // An HTTP client to a quote service that serves many requests at once.
//! let quotes = AgentDescriptor::new("quotes-1", "MARKET_DATA").with_max_concurrency(100);
//! assert_eq!(quotes.max_concurrency, 100);
//! ```
//!
//! A run whose steps wait for a busy agent is slow, not stuck: it waits for
//! [`AgentRegistry::capacity_changed`] and selects again.
//!
//! # Selection
//! [`AgentRegistry::select`] takes a step's [`AgentTask`](crate::plan::AgentTask):
//!
//! 1. **Eligible**: registered agents of the task's agent type that have every required
//!    capability and are not excluded by the caller. None: [`SelectError::NoAgent`]
//!    (kind `NO_AGENT`; the step fails and is not retried).
//! 2. **Scored**: each eligible agent gets a [`ScoreBreakdown`], four components in
//!    [0, 1] and their weighted sum:
//!
//!    `total = 0.40 × capability + 0.25 × performance + 0.20 × load + 0.15 × availability`
//!
//!    - *capability* = `(required matched + 0.5 × preferred matched) / (required + 0.5 ×
//!      preferred)`, 1 when nothing is asked. Every required one matches (step 1), so
//!      only preferred capabilities move it.
//!    - *performance*: the agent's history on this task type, exponentially weighted
//!      with alpha 0.2 (the newest call counts 20%). `0.7 × success rate + 0.3 ×
//!      latency`, where the success rate starts from a prior of 0.5 and latency scores
//!      `(fastest + 1 ms) / (own + 1 ms)` against the fastest eligible agent (only
//!      successful calls have a latency; none yet scores 0.5). An agent that has never
//!      run the task type scores a neutral 0.5.
//!    - *load* = `1 − in_flight / max_concurrency`.
//!    - *availability* = health (healthy 1, degraded 0.5, unhealthy 0) × 0.5 per
//!      consecutive failure; a success resets the count. `PERMANENT` failures do not
//!      count (the agent answered; the task was at fault) but do lower the success rate.
//! 3. **Open**: the eligible agents with spare capacity (`in_flight < max_concurrency`).
//!    Unhealthy agents are a last resort: open only when *every* eligible agent is
//!    unhealthy, so a flagged agent is never preferred to waiting for a healthy one, and
//!    a step does not fail just because every probe came back bad. None open:
//!    [`SelectError::AllBusy`]; [`AgentRegistry::acquire`], which the engine calls,
//!    then waits its turn (see *Waiting for capacity*).
//! 4. **The best**: the open agents whose total is within the margin of the best open
//!    total ([`DEFAULT_MARGIN`], 0.05: one call in flight on a four-slot agent). The
//!    margin is what lets the balancer spread calls among near-equals instead of always
//!    calling the top scorer; a wider one weighs the balancer over the score.
//! 5. **Picked**: the step's `loadBalancing` balancer (else the engine's default) picks
//!    one of the best, and a slot on it is reserved with an atomic compare-and-swap that
//!    fails at `max_concurrency`; if another caller took the last slot in between,
//!    selection scores again. The returned [`Lease`] frees the slot when dropped.
//!
//! # Balancers
//! | [`LoadBalancing`](crate::definition::LoadBalancing) | Balancer | Picks |
//! |---|---|---|
//! | `ROUND_ROBIN` | [`RoundRobin`] | each in turn (one counter per agent type, modulo the count) |
//! | `WEIGHTED` | [`Weighted`] | at random, in proportion to weight (the run's seeded rng) |
//! | `LEAST_CONNECTIONS` | [`LeastConnections`] | fewest in flight; ties: higher score, then id |
//! | `POWER_OF_TWO_CHOICES` | [`PowerOfTwoChoices`] | the less loaded of two distinct random ones |
//!
//! Balancers see the best candidates in id order, and randomised ones draw only from
//! the rng they are given, so a seed fixes the sequence of picks. A host's own
//! [`LoadBalancer`] plugs in next to these as the engine's default
//! ([`EngineBuilder::load_balancer`](crate::engine::EngineBuilder::load_balancer)): a
//! step that names a strategy gets the built-in one, any other step the host's.
//!
//! # Waiting for capacity
//! [`AgentRegistry::acquire`] selects and, when every eligible agent is busy, takes a
//! place in line. Waiting callers are served first come, first served: a freed slot wakes
//! one caller, the first in line that may use that agent (callers that need other
//! agents, or that have a healthier one to wait for than an unhealthy agent, are passed
//! over), and it selects again as above. If it does not take that slot (it chose another
//! agent, or was dropped), the slot goes on to the next in line, so no wake-up is lost.
//! An agent registering or leaving, or a health changing, wakes every waiting caller.
//! A caller that selects without waiting may take a free slot before a woken one does;
//! the woken one keeps its place. [`AgentRegistry::capacity_changed`] is the broadcast
//! for callers that wait on their own: it completes on every change.
//!
//! # Cost
//! Agents are indexed by type: a selection is O(a × c) for the a agents of the type and
//! the c capabilities asked, holding the registry's read lock only while it matches
//! capabilities and copies counters; scoring and the balancer run without it, and the
//! reservation re-takes it briefly to order itself against deregistration. Dropping a
//! lease is an atomic decrement plus waking at most one waiting caller: O(k + log w) for
//! the w callers waiting and the k kinds among them (callers with the same eligible
//! agents are one kind, as the items of a `parallel` step are). A waiting caller selects
//! when it starts waiting and again each time it is given a slot, so serving n waiting
//! callers costs O(n) selections, not one per caller per freed slot; a change of the
//! registry (an agent joining or leaving, a health changing) costs O(w). No lock is ever
//! held across an `.await`.

mod balance;
mod contract;
mod ids;
mod notify;
mod registry;
mod score;
mod select;

/// The id of a run; defined in [`run`](crate::run), where the run vocabulary lives.
pub use crate::run::RunId;
pub use balance::{
    LeastConnections, LoadBalancer, PowerOfTwoChoices, RoundRobin, Weighted, balancer_for,
};
pub use contract::{Agent, AgentDescriptor, AgentError, AgentErrorKind, Health, TaskRequest};
pub use ids::AgentId;
pub use notify::CapacityChanged;
pub use registry::{AgentRegistry, DEFAULT_MARGIN, Lease, Selection};
pub use score::{Outcome, ScoreBreakdown};
pub use select::{Candidate, RegistryError, SelectError, SelectionCounts};
