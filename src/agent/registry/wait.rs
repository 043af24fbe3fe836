//! Waiting for capacity: [`AgentRegistry::acquire`] selects, and while every eligible
//! agent is busy (or its circuit breaker open) waits its turn in the registry's line of
//! callers, first come first served, woken by a freed slot it may use, by any change of
//! the selectable agents, or on the registry's clock when a breaker turns half open;
//! [`AgentRegistry::capacity_changed`] is the simpler signal for callers that select in
//! their own loop.

use chrono::{DateTime, Utc};
use futures::future::{Either, select};
use rand::Rng;

use super::AgentRegistry;
use super::selection::Refusal;
use crate::agent::notify::CapacityChanged;
use crate::agent::select::SelectError;
use crate::agent::{AgentId, LoadBalancer, Selection};
use crate::plan::AgentTask;

impl AgentRegistry {
    /// Picks and reserves as [`select`](Self::select) does, waiting its turn while every
    /// eligible agent is busy, and for the first open circuit breaker to turn half open
    /// while every eligible agent's is open. The engine calls agents through this.
    ///
    /// Waiting callers are served first come, first served: a freed slot wakes one of
    /// them, the first in line among those that may use the agent it was freed on, which
    /// then selects again (scores and balancer as usual). A caller that selects without
    /// waiting may take a free slot first; the woken caller then keeps its place in line.
    /// An agent registering or leaving, a health changing, or a circuit breaker opening,
    /// closing or giving up its probe wakes every waiting caller; a caller also wakes,
    /// on the registry's clock, when the first open breaker among its agents turns half
    /// open.
    ///
    /// # Errors
    /// [`SelectError::NoAgent`] when no registered agent meets the criteria, at first or
    /// after agents left while the caller waited. Never [`SelectError::AllBusy`] or
    /// [`SelectError::CircuitOpen`].
    ///
    /// # Cancellation
    /// Dropping the future leaves the line; a wake-up it received and did not use passes
    /// to the next caller in line.
    ///
    /// # Complexity
    /// One selection (O(a × c)), and one more each time the caller is woken: once per
    /// freed slot it is given, not once per freed slot anywhere. While it waits, a freed
    /// slot costs O(k + log w) for the k kinds of waiting callers (callers with the same
    /// eligible agents are one kind) and the w callers waiting.
    ///
    /// # Examples
    /// ```
    /// # use std::sync::Arc;
    /// # use futures::FutureExt;
    /// # use futures::executor::block_on;
    /// # use rand::SeedableRng;
    /// # use rand::rngs::StdRng;
    /// # use tradeflow::agent::{
    /// #     Agent, AgentDescriptor, AgentError, AgentRegistry, RoundRobin, TaskRequest,
    /// # };
    /// # use tradeflow::plan::ExecutionPlan;
    /// # struct Venue(AgentDescriptor);
    /// # #[async_trait::async_trait]
    /// # impl Agent for Venue {
    /// #     fn descriptor(&self) -> &AgentDescriptor { &self.0 }
    /// #     async fn execute(&self, r: TaskRequest) -> Result<serde_json::Value, AgentError> {
    /// #         Ok(r.parameters)
    /// #     }
    /// # }
    /// # let plan = ExecutionPlan::from_json(r#"{"id": "w", "steps": [{"id": "trade", "type": "task",
    /// #     "agentCriteria": {"type": "TRADING_EXECUTION"}, "task": {"type": "ORDER_EXECUTION"}}]}"#)?;
    /// # let task = plan.steps()[0].agent_task().expect("a task step");
    /// let registry = AgentRegistry::new();
    /// let venue = AgentDescriptor::new("exec-1", "TRADING_EXECUTION");
    /// registry.register(Arc::new(Venue(venue)))?;
    /// let balancer = RoundRobin::new();
    /// let (mut rng, mut other_rng) = (StdRng::seed_from_u64(1), StdRng::seed_from_u64(2));
    ///
    /// let first = block_on(registry.acquire(task, &balancer, &mut rng, &[]))?;
    /// let mut second = Box::pin(registry.acquire(task, &balancer, &mut other_rng, &[]));
    /// // The only slot is taken: the second caller waits its turn.
    /// assert!((&mut second).now_or_never().is_none());
    /// drop(first);
    /// assert_eq!(block_on(second)?.candidate.agent, "exec-1");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn acquire(
        &self,
        requirements: &AgentTask,
        balancer: &dyn LoadBalancer,
        rng: &mut (dyn Rng + Send),
        exclude: &[AgentId],
    ) -> Result<Selection, SelectError> {
        self.acquire_before(requirements, balancer, rng, exclude, None)
            .await
    }

    /// [`acquire`](Self::acquire), giving up at `deadline` (on the registry's clock)
    /// with [`SelectError::CircuitOpen`] if by then every eligible agent's circuit
    /// breaker is still open. The deadline bounds only that wait: waiting for capacity
    /// is not bounded by it.
    ///
    /// # Errors
    /// [`SelectError::NoAgent`] as `acquire`; [`SelectError::CircuitOpen`] at the
    /// deadline. Never [`SelectError::AllBusy`].
    pub async fn acquire_before(
        &self,
        requirements: &AgentTask,
        balancer: &dyn LoadBalancer,
        rng: &mut (dyn Rng + Send),
        exclude: &[AgentId],
        deadline: Option<DateTime<Utc>>,
    ) -> Result<Selection, SelectError> {
        let mut turn = self.notify.turn();
        loop {
            let seen = self.notify.generation();
            let (error, wants, half_open_at) =
                match self.try_select(requirements, balancer, rng, exclude) {
                    Ok(selection) => return Ok(selection),
                    Err(Refusal::NoAgent(error)) => return Err(error),
                    Err(Refusal::Busy {
                        error,
                        wants,
                        half_open_at,
                    }) => (error, wants, half_open_at),
                };
            // Only a wait on open breakers alone is bounded by the deadline.
            let deadline = deadline.filter(|_| matches!(error, SelectError::CircuitOpen { .. }));
            if deadline.is_some_and(|deadline| self.clock.now() >= deadline) {
                return Err(error);
            }
            let wake = match (half_open_at, deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match wake {
                None => turn.wait(seen, wants).await,
                Some(at) => {
                    let timer = self.clock.sleep_until(at);
                    let timed_out = matches!(
                        select(turn.wait(seen, wants), timer).await,
                        Either::Right(_)
                    );
                    if timed_out {
                        turn.leave();
                    }
                }
            }
        }
    }

    /// A future that completes the next time capacity is freed (a lease dropped) or the
    /// selectable agents change (an agent registered or deregistered, a health changed).
    ///
    /// It is armed when created, so a change that happens before it is first polled is
    /// not missed. Race-free use, under any executor and with leases dropped on other
    /// threads: create it *before* selecting, await it on `AllBusy`.
    ///
    /// Every pending future completes on every change, so when many callers wait this
    /// way each freed slot makes all of them select again; [`AgentRegistry::acquire`]
    /// wakes one instead, and serves them in turn.
    ///
    /// ```
    /// # use tradeflow::agent::{AgentRegistry, LoadBalancer, Selection, SelectError};
    /// # use tradeflow::plan::AgentTask;
    /// async fn acquire(
    ///     registry: &AgentRegistry,
    ///     task: &AgentTask,
    ///     balancer: &dyn LoadBalancer,
    ///     rng: &mut (dyn rand::Rng + Send),
    /// ) -> Result<Selection, SelectError> {
    ///     loop {
    ///         let changed = registry.capacity_changed();
    ///         match registry.select(task, balancer, rng, &[]) {
    ///             Err(SelectError::AllBusy { .. }) => changed.await,
    ///             other => return other,
    ///         }
    ///     }
    /// }
    /// ```
    pub fn capacity_changed(&self) -> CapacityChanged {
        self.notify.listen()
    }
}

impl AgentRegistry {
    /// The calls waiting for a slot on an agent of `agent_type` ([`TypeLoad::waiting`]),
    /// with `scratch` reused for the agents' serial numbers (the metrics read it after
    /// every call without allocating).
    ///
    /// [`TypeLoad::waiting`]: crate::agent::TypeLoad::waiting
    pub(crate) fn waiting_for_type(
        &self,
        agent_type: &crate::definition::AgentType,
        scratch: &mut Vec<u64>,
    ) -> usize {
        if self.notify.nobody_waiting() {
            return 0;
        }
        scratch.clear();
        {
            let agents = self.read();
            let Some(of_type) = agents.by_type.get(agent_type) else {
                return 0;
            };
            scratch.extend(of_type.values().map(|entry| entry.serial));
        }
        self.notify.waiting_for(scratch)
    }
}

#[cfg(test)]
mod tests {
    use std::task::Poll;
    use std::time::Duration;

    use futures::FutureExt;

    use super::super::testing::{Breaking, failure};
    use crate::agent::CircuitState;
    use crate::agent::select::SelectError;
    use crate::clock::Clock;

    #[test]
    fn acquire_waits_on_the_clock_for_the_probe_and_gives_up_at_its_deadline() {
        let mut b = Breaking::new(&[("a", 1)]);
        b.record("a", failure());
        let t0 = b.clock.now();

        // Giving up at 500 ms: the breaker is still open then.
        let deadline = t0 + Duration::from_millis(500);
        let mut gives_up = b
            .registry
            .acquire_before(&b.any, &b.balancer, &mut b.rng, &[], Some(deadline))
            .boxed();
        let Poll::Ready(error) = b.clock.run_until_stalled(&mut gives_up) else {
            panic!("the wait ends at its deadline");
        };
        drop(gives_up);
        assert!(matches!(error, Err(SelectError::CircuitOpen { .. })));
        assert_eq!(b.clock.now(), deadline);

        // Without a deadline it waits for the half-open instant and takes the probe.
        let mut waits = b
            .registry
            .acquire(&b.any, &b.balancer, &mut b.rng, &[])
            .boxed();
        let Poll::Ready(Ok(probe)) = b.clock.run_until_stalled(&mut waits) else {
            panic!("the probe is let through");
        };
        assert_eq!(b.clock.now(), t0 + Duration::from_secs(1));
        assert!(probe.lease.is_probe());
        drop(waits);
        assert_eq!(
            b.circuit("a"),
            Some(CircuitState::HalfOpen { probing: true })
        );
    }

    #[test]
    fn a_slot_freed_on_a_half_open_agent_wakes_the_caller_waiting_for_it() {
        // One slot, held by a call that began before the breaker opened.
        let mut b = Breaking::new(&[("a", 1)]);
        let in_flight = b.select().unwrap();
        b.record("a", failure());
        b.clock.advance(Duration::from_secs(2));
        // Half open, but busy: the caller waits for the slot.
        let mut waits = b
            .registry
            .acquire(&b.any, &b.balancer, &mut b.rng, &[])
            .boxed();
        assert!(b.clock.run_until_stalled(&mut waits).is_pending());
        // The call in flight is cancelled (no outcome): its slot goes to the caller.
        drop(in_flight);
        let Poll::Ready(Ok(probe)) = b.clock.run_until_stalled(&mut waits) else {
            panic!("the waiting caller is woken for the freed slot");
        };
        assert!(probe.lease.is_probe());
    }
}
