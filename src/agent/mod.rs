//! Agents and their selection: the contract between tradeflow and the agents a trading
//! bot registers, and the engine that picks one agent per call.
//!
//! An [`Agent`] describes itself with an [`AgentDescriptor`] (id, type, capabilities,
//! weight, `max_concurrency`, circuit breaker) and runs [`TaskRequest`]s, failing with an [`AgentError`]
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
//!      run the task type scores a neutral 0.5. Routing learns from outcomes too: once
//!      rewards of the agent's decisions on the task type have been credited
//!      ([`AgentRegistry::credit_reward`], each in [0, 1], averaged with the same alpha,
//!      the first setting the average), it is `0.5 × success rate + 0.2 × latency +
//!      0.3 × average reward`. An agent whose decisions pay off is preferred to one
//!      that merely answers fast.
//!    - *load* = `1 − in_flight / max_concurrency`.
//!    - *availability* = health (healthy 1, degraded 0.5, unhealthy 0) × 0.5 per
//!      consecutive failure; a success resets the count. `PERMANENT` failures do not
//!      count (the agent answered; the task was at fault) but do lower the success rate.
//! 3. **Open**: the eligible agents with spare capacity (`in_flight < max_concurrency`)
//!    whose circuit breaker lets calls through (see *Circuit breakers*). Unhealthy
//!    agents are a last resort: open only when *every* eligible agent the breakers let
//!    through is unhealthy, so a flagged agent is never preferred to waiting for a
//!    healthy one, and a step does not fail just because every probe came back bad.
//!    None open: [`SelectError::AllBusy`], or [`SelectError::CircuitOpen`] (kind
//!    `NO_AGENT`) when every eligible agent's breaker is open;
//!    [`AgentRegistry::acquire`], which the engine calls, then waits (see *Waiting for
//!    capacity*).
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
//! An agent registering or leaving, a health changing, or a circuit breaker opening,
//! closing or giving up its probe wakes every waiting caller. A caller that selects
//! without waiting may take a free slot before a woken one does; the woken one keeps its
//! place. [`AgentRegistry::capacity_changed`] is the broadcast for callers that wait on
//! their own: it completes on every change.
//!
//! # Circuit breakers
//! An agent that keeps failing is left alone for a while, then tried with one call.
//! Each agent has a breaker with two settings, a [`CircuitBreaker`]: `failures`
//! (default 5) and `open_for` (default 30 s; `openMs` in an agents file).
//!
//! - **Closed** (the usual state): calls go to the agent. Every failed call adds one to
//!   its count of consecutive failures, and a successful one resets the count. A failed
//!   call is one whose outcome is an error the agent returned (of any
//!   [`AgentErrorKind`], `PERMANENT` included: a bug or a revoked session fails every
//!   task alike) or the step's timeout cutting it off; a call the engine cancels (a run
//!   stopped or cancelled) has no outcome and counts for nothing. When the count
//!   reaches `failures`, the breaker **opens**.
//! - **Open** for `open_for`, measured on the registry's clock (the engine's: a
//!   [`VirtualClock`](crate::clock::VirtualClock) in simulations): the agent is
//!   eligible but takes no call; selection passes it over as it passes over a busy
//!   agent. Outcomes of calls that began before it opened are ignored meanwhile.
//! - **Half open** once `open_for` has passed: exactly one call is let through, the
//!   *probe* ([`Lease::is_probe`]); every other caller is kept away while it runs. Its
//!   success **closes** the breaker (count reset); its failure **opens** it again for
//!   another `open_for`. A probe the engine cancels decides nothing: the next call
//!   probes.
//!
//! [`AgentRegistry::circuit`] reads a breaker's [`CircuitState`];
//! [`AgentRegistry::record`] returns the [`CircuitChange`] an outcome made, and the
//! engine announces each change as a run event (`CircuitOpened`, `CircuitHalfOpen`
//! when the probe is let through, `CircuitClosed`).
//!
//! **Settings.** The registry's default applies to every agent whose descriptor names
//! none ([`RegistryBuilder::circuit_breaker`]; the engine's is set with
//! [`EngineBuilder::circuit_breaker`](crate::engine::EngineBuilder::circuit_breaker)),
//! [`CircuitBreaker::DEFAULT`] unless told; `None` switches the default off. An agent overrides it with
//! [`AgentDescriptor::with_circuit_breaker`], or in an agents file:
//!
//! ```json
//! { "id": "venue-1", "type": "TRADING_EXECUTION", "circuitBreaker": {"failures": 3, "openMs": 10000} }
//! ```
//!
//! `failures` must be at least 1 and `open_for` at most
//! [`MAX_DURATION_MS`](crate::plan::MAX_DURATION_MS) (100 years): a descriptor that
//! breaks either is refused at registration ([`RegistryError::InvalidDescriptor`]), an
//! agents file that does is refused naming the field
//! (`agents[1].circuitBreaker.failures`).
//!
//! **Waiting for a probe.** An open agent does not count as available. When every
//! eligible agent of a call is open, [`AgentRegistry::select`] fails with
//! [`SelectError::CircuitOpen`], and [`AgentRegistry::acquire`] waits on the clock (a
//! timer, not a polling loop) until the first of them turns half open, then selects
//! again, so the waiting call may be the probe; a breaker that closes or opens again
//! wakes it too. The engine bounds that wait by the step's `timeout` (counted from when
//! the wait began; a `loop` step's deadline too) through
//! [`AgentRegistry::acquire_before`]: when it ends with every agent still open, the
//! step fails with kind `NO_AGENT`, as when no agent is registered. A step without a
//! timeout waits for the probe however long it takes. Self-healing's `SUBSTITUTE` does
//! not count open agents as untried agents to move to.
//!
//! # Rebalancing
//! A host moves work between agents by hand with [`AgentRegistry::rebalance`] (the
//! engine's [`rebalance_workload`](crate::engine::Engine::rebalance_workload)), given
//! [`RebalanceCriteria`]:
//!
//! - **`drain`**: the agents take no new call from now on (they are eligible but not
//!   selectable, like a busy agent: a call whose every eligible agent is drained waits,
//!   see *Waiting for capacity*); their calls in flight finish. A drained agent is not
//!   available to adaptations' `available` count or to self-healing's `SUBSTITUTE`, and
//!   a freed slot on it wakes no waiting caller. Draining the last agents of a type is
//!   allowed: the report names the type in
//!   [`last_agent_drained`](RebalanceReport::last_agent_drained), and its calls wait
//!   until an agent is undrained or registered (a step's timeout still bounds its call).
//! - **`undrain`**: they take calls again; waiting callers select again at once.
//! - **`weights`**: new weights for the `WEIGHTED` balancer (finite and positive), read
//!   by every later selection; [`AgentRegistry::agents`] shows them.
//! - **`maxUtilization`** (in (0, 1]): a ceiling on utilization (calls in flight /
//!   `max_concurrency`). A new selection passes over agents at or above it while an
//!   eligible agent below it has a free slot; when none has, the ceiling yields (it
//!   steers, it never makes a call wait). Calls waiting for a slot do not wait in a
//!   queue of one agent: they wait for *any* of their eligible agents (the line of
//!   *Waiting for capacity*), so there is no per-agent queue to move. What the ceiling
//!   moves is where they go: every waiting call selects again at once and, like every
//!   later call, goes to an agent below the ceiling while one has room. The report's
//!   [`UtilizationMove`] names the agents above and below it and counts the waiting
//!   calls sent back to selection. `1` lifts the ceiling.
//!
//! Every id is checked, and every value, before anything changes: an unknown agent
//! ([`RebalanceError::UnknownAgent`], naming the field and the id), an agent both
//! drained and undrained, a bad weight or ceiling change nothing. The
//! [`RebalanceReport`] says what did change (draining a drained agent again is no
//! change), and a rebalancing that changed something is logged with `tracing` (target
//! `tradeflow::rebalance`). Rebalancing is the registry's state, not a run's: it is not
//! journaled, and an engine that restarts starts with no agent drained and the
//! registered weights.
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
mod breaker;
mod contract;
mod ids;
mod notify;
mod rebalance;
mod registry;
mod score;
mod select;

/// The id of a run; defined in [`run`](crate::run), where the run vocabulary lives.
pub use crate::run::RunId;
pub use balance::{
    LeastConnections, LoadBalancer, PowerOfTwoChoices, RoundRobin, Weighted, balancer_for,
};
pub use breaker::{CircuitBreaker, CircuitChange, CircuitState};
pub use contract::{Agent, AgentDescriptor, AgentError, AgentErrorKind, Health, TaskRequest};
pub use ids::AgentId;
pub use notify::CapacityChanged;
pub use rebalance::{
    RebalanceCriteria, RebalanceError, RebalanceReport, UtilizationMove, WeightChange,
};
pub(crate) use registry::SlotsInUse;
pub use registry::{AgentRegistry, DEFAULT_MARGIN, Lease, RegistryBuilder, Selection, TypeLoad};
pub use score::{Outcome, ScoreBreakdown};
pub use select::{Candidate, RegistryError, RewardError, SelectError, SelectionCounts};
