//! Selection: each call's candidates scored, the best within the margin handed to the
//! balancer, and a slot reserved on the one it picks (see [Selection](crate::agent#selection)).
//!
//! Scoring reads every eligible agent's counters under the registry's read lock and
//! each agent's stats lock, one agent at a time; the balancer and the reservation run
//! with no lock held but the one a reservation takes to order itself against
//! `deregister`. A slot taken by another caller between scoring and reserving makes
//! selection score again.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use rand::Rng;

use super::lease::Lease;
use super::{AgentRegistry, Entry};
use crate::agent::breaker::Admission;
use crate::agent::notify::Wants;
use crate::agent::score::{self, History, ScoreBreakdown};
use crate::agent::select::{Candidate, SelectError, SelectionCounts};
use crate::agent::{Agent, AgentId, Health, LoadBalancer};
use crate::definition::AgentType;
use crate::plan::AgentTask;

impl AgentRegistry {
    /// Every registered agent of the type with all required capabilities, not in
    /// `exclude`, scored; busy ones and those whose circuit breaker is open included
    /// ([`Candidate::is_busy`], [`AgentRegistry::circuit`]). Best first (total
    /// descending, then id).
    ///
    /// # Complexity
    /// O(a × c) for the a agents of the type and c capabilities asked, plus sorting.
    pub fn candidates(&self, requirements: &AgentTask, exclude: &[AgentId]) -> Vec<Candidate> {
        let mut candidates = self.scored(requirements, exclude).candidates;
        candidates.sort_by(|a, b| {
            b.score
                .total
                .total_cmp(&a.score.total)
                .then_with(|| a.agent.cmp(&b.agent))
        });
        candidates
    }

    /// How many registered agents of `agent_type` are not unhealthy, have a free slot and
    /// a circuit breaker that does not keep calls from them, now (what adaptations read
    /// as `agents.<TYPE>.available`).
    ///
    /// # Complexity
    /// O(a) for the a agents of the type.
    pub fn available(&self, agent_type: &AgentType) -> usize {
        let agents = self.read();
        agents.by_type.get(agent_type).map_or(0, |entries| {
            entries
                .values()
                .filter(|entry| {
                    entry.free_slots() > 0 && !entry.is_unhealthy() && !entry.is_blocking()
                })
                .count()
        })
    }

    /// Whether an agent that meets `requirements`, not in `exclude`, could take a call
    /// now or once busy: one whose circuit breaker does not keep calls from it (an open
    /// agent is not available, to self-healing's `SUBSTITUTE` as to selection).
    pub(crate) fn has_callable(&self, requirements: &AgentTask, exclude: &[AgentId]) -> bool {
        let scored = self.scored(requirements, exclude);
        scored
            .gates
            .iter()
            .zip(&scored.entries)
            .any(|(gate, entry)| !gate.is_refused() && !entry.is_drained())
    }

    /// Picks an agent with spare capacity and reserves a slot on it; the returned
    /// [`Lease`] frees the slot when dropped.
    ///
    /// The candidates with spare capacity that score within the margin of the best of
    /// them go to `balancer`, in id order. Unhealthy agents take part only when every
    /// eligible agent is unhealthy. Agents whose circuit breaker is open (or half open
    /// with its probe in flight) take no part; a half-open one takes part, and the call
    /// that gets it is its probe ([`Lease::is_probe`]). Agents in `exclude` (for example
    /// the one that just answered `AGENT_UNAVAILABLE`) are not candidates.
    ///
    /// # Errors
    /// - [`SelectError::NoAgent`] when no registered agent meets the criteria
    ///   (`excluded` counts those that would have, but were excluded).
    /// - [`SelectError::CircuitOpen`] when every agent that meets them has its circuit
    ///   breaker open: [`AgentRegistry::acquire`] waits for the first to turn half open
    ///   instead.
    /// - [`SelectError::AllBusy`] when eligible agents exist but all are at
    ///   `max_concurrency` (or all usable ones are, with only unhealthy ones free, or
    ///   with the others' breakers open): [`AgentRegistry::acquire`] waits its turn
    ///   instead; or await [`AgentRegistry::capacity_changed`] and select again.
    ///
    /// # Complexity
    /// O(a × c) for the a agents of the type and c capabilities asked. Under contention
    /// a slot can be taken between scoring and reserving; selection then scores again.
    pub fn select(
        &self,
        requirements: &AgentTask,
        balancer: &dyn LoadBalancer,
        rng: &mut dyn Rng,
        exclude: &[AgentId],
    ) -> Result<Selection, SelectError> {
        self.try_select(requirements, balancer, rng, exclude)
            .map_err(Refusal::into_error)
    }

    /// How selections have gone since the registry was created: a measure of contention
    /// (and of what waiting costs), for monitoring.
    pub fn selection_counts(&self) -> SelectionCounts {
        SelectionCounts {
            reserved: self.counts.reserved.load(Ordering::Relaxed),
            busy: self.counts.busy.load(Ordering::Relaxed),
        }
    }

    /// [`select`](Self::select), saying on `AllBusy` and `CircuitOpen` what the caller
    /// could use and when a breaker turns half open.
    pub(super) fn try_select(
        &self,
        requirements: &AgentTask,
        balancer: &dyn LoadBalancer,
        rng: &mut dyn Rng,
        exclude: &[AgentId],
    ) -> Result<Selection, Refusal> {
        loop {
            let Scored {
                entries,
                candidates,
                gates,
            } = self.scored(requirements, exclude);
            if candidates.is_empty() {
                let excluded = if exclude.is_empty() {
                    0
                } else {
                    self.scored(requirements, &[]).candidates.len()
                };
                return Err(Refusal::NoAgent(SelectError::NoAgent {
                    agent_type: requirements.agent_type.clone(),
                    required_capabilities: requirements.required_capabilities.to_vec(),
                    excluded,
                }));
            }
            let pool = self.best(&entries, &candidates, &gates);
            if pool.is_empty() {
                let half_open_at = gates.iter().filter_map(|gate| gate.half_open_at()).min();
                let error = if gates.iter().all(|gate| gate.is_refused()) {
                    SelectError::CircuitOpen {
                        agent_type: requirements.agent_type.clone(),
                        open: candidates.len(),
                        until: half_open_at,
                    }
                } else {
                    self.counts.busy.fetch_add(1, Ordering::Relaxed);
                    SelectError::AllBusy {
                        agent_type: requirements.agent_type.clone(),
                        eligible: candidates.len(),
                    }
                };
                let serials = entries.iter().map(|entry| entry.serial).collect();
                return Err(Refusal::Busy {
                    error,
                    wants: Wants::new(serials, only_unhealthy(&entries, &candidates, &gates)),
                    half_open_at,
                });
            }
            let picked = if pool.len() == candidates.len() {
                // The usual case: every candidate is open and within the margin, so the
                // balancer sees them in place, with no copy.
                balancer.pick_for(&requirements.agent_type, &candidates, rng) % candidates.len()
            } else {
                let choices: Vec<Candidate> = pool.iter().map(|&i| candidates[i].clone()).collect();
                pool[balancer.pick_for(&requirements.agent_type, &choices, rng) % choices.len()]
            };
            let (Some(entry), Some(candidate)) = (entries.get(picked), candidates.get(picked))
            else {
                continue;
            };
            if let Some(lease) = self.reserve(entry) {
                return Ok(Selection {
                    agent: Arc::clone(&entry.agent),
                    candidate: candidate.clone(),
                    lease,
                });
            }
            // Another caller took the last slot (or the probe, or the agent left) since
            // scoring.
        }
    }

    /// Reserves a slot on one particular agent (a loop keeping its agent across
    /// iterations), if it is registered, meets `requirements`, has a free slot and its
    /// circuit breaker lets the call through. `None` otherwise: select as usual then.
    pub fn select_agent(&self, requirements: &AgentTask, agent: &AgentId) -> Option<Selection> {
        let Scored {
            entries,
            candidates,
            gates,
        } = self.scored(requirements, &[]);
        let (entry, candidate, gate) = entries
            .into_iter()
            .zip(candidates)
            .zip(gates)
            .map(|((entry, candidate), gate)| (entry, candidate, gate))
            .find(|(_, candidate, _)| candidate.agent == *agent)?;
        if candidate.is_busy() || gate.is_refused() {
            return None;
        }
        let lease = self.reserve(&entry)?;
        Some(Selection {
            agent: Arc::clone(&entry.agent),
            candidate,
            lease,
        })
    }

    /// Reserves a slot on the agent `id` whatever its type or capabilities (a host
    /// naming the agents it asks): `None` when no agent has this id, `Some(None)` when
    /// it is at `max_concurrency` (await [`capacity_changed`](Self::capacity_changed),
    /// armed before this call, and try again), else the agent and its slot.
    pub fn reserve_named(&self, id: &AgentId) -> Option<Option<(Arc<dyn Agent>, Lease)>> {
        let entry = Arc::clone(self.read().entry(id)?);
        Some(
            self.reserve(&entry)
                .map(|lease| (Arc::clone(&entry.agent), lease)),
        )
    }

    /// Indices in `candidates` of those the balancer chooses among.
    pub(super) fn best(
        &self,
        entries: &[Arc<Entry>],
        candidates: &[Candidate],
        gates: &[Admission],
    ) -> Vec<usize> {
        let only_unhealthy = only_unhealthy(entries, candidates, gates);
        let ceiling = f64::from_bits(self.ceiling.load(Ordering::Acquire));
        let usable = |i: usize| {
            let c = &candidates[i];
            !c.is_busy()
                && !gates.get(i).is_some_and(|gate| gate.is_refused())
                && !entries.get(i).is_some_and(|entry| entry.is_drained())
                && (only_unhealthy || c.health != Health::Unhealthy)
        };
        let under = |i: usize| {
            let c = &candidates[i];
            f64::from(c.in_flight) / f64::from(c.max_concurrency.max(1)) < ceiling
        };
        // The ceiling is soft: it steers calls to agents below it while one has room.
        let steer = ceiling < 1.0 && (0..candidates.len()).any(|i| usable(i) && under(i));
        let open = |i: usize| usable(i) && (!steer || under(i));
        let best = (0..candidates.len())
            .filter(|&i| open(i))
            .map(|i| candidates[i].score.total)
            .fold(f64::NEG_INFINITY, f64::max);
        (0..candidates.len())
            .filter(|&i| open(i) && candidates[i].score.total >= best - self.margin)
            .collect()
    }

    /// Takes a slot on `entry` unless it is full, was deregistered, or its circuit
    /// breaker keeps calls from it; the probe of a half-open breaker when it is one.
    pub(super) fn reserve(&self, entry: &Arc<Entry>) -> Option<Lease> {
        // The read lock orders this check against `deregister`.
        let _agents = self.read();
        if !entry.registered.load(Ordering::Acquire) || entry.is_drained() {
            return None;
        }
        // Under the stats lock: two callers cannot both take a half-open breaker's probe.
        let mut stats = entry.stats();
        let admission = stats.breaker.admission(|| self.clock.now());
        if admission.is_refused() || !entry.try_reserve() {
            return None;
        }
        let probe = (admission == Admission::Probe).then(|| stats.breaker.start_probe());
        drop(stats);
        self.counts.reserved.fetch_add(1, Ordering::Relaxed);
        Some(Lease {
            entry: Arc::clone(entry),
            notify: Arc::clone(&self.notify),
            probe,
        })
    }

    /// Eligible agents, their candidates and what their breakers allow (parallel
    /// vectors), in id order.
    pub(super) fn scored(&self, requirements: &AgentTask, exclude: &[AgentId]) -> Scored {
        struct Seen {
            entry: Arc<Entry>,
            capability: f64,
            in_flight: u32,
            health: Health,
            consecutive_failures: u32,
            history: Option<History>,
            gate: Admission,
        }
        // Read once, and only when a breaker is not closed.
        let mut now = None;
        let seen: Vec<Seen> = {
            let agents = self.read();
            let Some(of_type) = agents.by_type.get(&requirements.agent_type) else {
                return Scored::default();
            };
            of_type
                .values()
                .filter(|entry| !exclude.contains(&entry.descriptor.id))
                .filter_map(|entry| {
                    let capability = score::capability(
                        &entry.descriptor.capabilities,
                        &requirements.required_capabilities,
                        &requirements.preferred_capabilities,
                    )?;
                    let stats = entry.stats();
                    let gate = stats
                        .breaker
                        .admission(|| *now.get_or_insert_with(|| self.clock.now()));
                    Some(Seen {
                        entry: Arc::clone(entry),
                        capability,
                        in_flight: entry.in_flight.load(Ordering::Acquire),
                        health: stats.health,
                        consecutive_failures: stats.consecutive_failures,
                        history: stats.history.get(&requirements.task_type).copied(),
                        gate,
                    })
                })
                .collect()
        };
        let fastest_ms = seen
            .iter()
            .filter_map(|s| s.history.and_then(|h| h.latency_ms))
            .reduce(f64::min);
        let mut scored = Scored {
            entries: Vec::with_capacity(seen.len()),
            candidates: Vec::with_capacity(seen.len()),
            gates: Vec::with_capacity(seen.len()),
        };
        for s in seen {
            let descriptor = &s.entry.descriptor;
            let score = ScoreBreakdown::new(
                s.capability,
                score::performance(s.history.as_ref(), fastest_ms),
                score::load(s.in_flight, descriptor.max_concurrency),
                score::availability(s.health, s.consecutive_failures),
            );
            scored.candidates.push(Candidate {
                agent: descriptor.id.clone(),
                score,
                in_flight: s.in_flight,
                max_concurrency: descriptor.max_concurrency,
                weight: s.entry.weight(),
                health: s.health,
            });
            scored.gates.push(s.gate);
            scored.entries.push(s.entry);
        }
        scored
    }
}

/// Whether every candidate whose breaker lets calls through, and that is not drained,
/// is unhealthy: then unhealthy agents are open (a last resort). An agent whose breaker
/// is open, or that is drained, is not one to wait for instead.
pub(super) fn only_unhealthy(
    entries: &[Arc<Entry>],
    candidates: &[Candidate],
    gates: &[Admission],
) -> bool {
    candidates
        .iter()
        .zip(gates)
        .zip(entries)
        .filter(|((_, gate), entry)| !gate.is_refused() && !entry.is_drained())
        .all(|((c, _), _)| c.health == Health::Unhealthy)
}

/// Eligible agents, their candidates, and what their breakers allow: parallel vectors.
#[derive(Default)]
pub(super) struct Scored {
    pub(super) entries: Vec<Arc<Entry>>,
    pub(super) candidates: Vec<Candidate>,
    pub(super) gates: Vec<Admission>,
}

/// Why a selection reserved nothing.
pub(super) enum Refusal {
    /// Every eligible agent is busy or its breaker open: the error (`AllBusy`, or
    /// `CircuitOpen` when every breaker is open), what the caller could use, and when
    /// the first open breaker among them turns half open.
    Busy {
        error: SelectError,
        wants: Wants,
        half_open_at: Option<DateTime<Utc>>,
    },
    /// No registered agent meets the criteria.
    NoAgent(SelectError),
}

impl Refusal {
    pub(super) fn into_error(self) -> SelectError {
        match self {
            Self::Busy { error, .. } | Self::NoAgent(error) => error,
        }
    }
}

/// The agent chosen for a call, with the slot reserved on it.
pub struct Selection {
    /// The agent to call.
    pub agent: Arc<dyn Agent>,
    /// How it was scored when chosen (`in_flight` before this call).
    pub candidate: Candidate,
    /// The reserved slot: keep it until the call ends.
    pub lease: Lease,
}

impl fmt::Debug for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Selection")
            .field("candidate", &self.candidate)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::super::testing::{registry, stub, task};
    use super::*;
    use crate::agent::{AgentDescriptor, LeastConnections, RoundRobin};
    use futures::FutureExt;

    #[test]
    fn errors_name_the_criteria() {
        let registry = registry(&[("a", 1)]);
        let mut rng = StdRng::seed_from_u64(1);
        let missing = registry
            .select(&task(&["twap"], &[]), &RoundRobin::new(), &mut rng, &[])
            .unwrap_err();
        assert_eq!(missing.kind(), "NO_AGENT");
        assert_eq!(
            missing.to_string(),
            "no registered agent of type `T` with capabilities [twap] is available"
        );
        let excluded = registry
            .select(
                &task(&[], &[]),
                &RoundRobin::new(),
                &mut rng,
                &[AgentId::from("a")],
            )
            .unwrap_err();
        assert_eq!(
            excluded.to_string(),
            "no registered agent of type `T` is available (1 excluded)"
        );
        let _lease = registry
            .select(&task(&[], &[]), &RoundRobin::new(), &mut rng, &[])
            .unwrap();
        let busy = registry
            .select(&task(&[], &[]), &RoundRobin::new(), &mut rng, &[])
            .unwrap_err();
        assert_eq!(busy.kind(), "ALL_BUSY");
        assert_eq!(
            busy.to_string(),
            "all 1 eligible agents of type `T` are busy"
        );
    }

    #[test]
    fn unhealthy_agents_are_a_last_resort() {
        let registry = registry(&[("a", 1), ("b", 1)]);
        let (a, b) = (AgentId::from("a"), AgentId::from("b"));
        let mut rng = StdRng::seed_from_u64(1);
        let any = task(&[], &[]);
        registry.set_health(&a, Health::Unhealthy);
        let first = registry
            .select(&any, &LeastConnections, &mut rng, &[])
            .unwrap();
        assert_eq!(first.candidate.agent, b);
        // `a` is free but unhealthy while a healthy agent exists: wait for `b`.
        let waiting = registry.capacity_changed();
        assert!(matches!(
            registry.select(&any, &LeastConnections, &mut rng, &[]),
            Err(SelectError::AllBusy { .. })
        ));
        registry.set_health(&b, Health::Unhealthy);
        assert_eq!(waiting.now_or_never(), Some(()));
        let last = registry
            .select(&any, &LeastConnections, &mut rng, &[])
            .unwrap();
        assert_eq!(last.candidate.agent, a);
    }

    #[test]
    fn selections_are_counted() {
        let registry = registry(&[("a", 1)]);
        let mut rng = StdRng::seed_from_u64(1);
        let any = task(&[], &[]);
        let held = registry.select(&any, &RoundRobin::new(), &mut rng, &[]);
        assert!(
            registry
                .select(&any, &RoundRobin::new(), &mut rng, &[])
                .is_err()
        );
        drop(held);
        assert!(registry.select_agent(&any, &AgentId::from("a")).is_some());
        let counts = SelectionCounts {
            reserved: 2,
            busy: 1,
        };
        assert_eq!(registry.selection_counts(), counts);
    }

    #[test]
    fn margin_decides_who_the_balancer_sees() {
        // `b` has one call in flight of two: 0.1 below `a`.
        for (margin, expected) in [(0.05, 1), (0.15, 2)] {
            let registry = AgentRegistry::with_margin(margin);
            for id in ["a", "b"] {
                let descriptor = AgentDescriptor::new(id, "T").with_max_concurrency(2);
                registry.register(stub(descriptor)).unwrap();
            }
            let held = registry.entry_for_test("b");
            let _lease = registry.reserve(&held).unwrap();
            let scored = registry.scored(&task(&[], &[]), &[]);
            assert_eq!(
                registry
                    .best(&scored.entries, &scored.candidates, &scored.gates)
                    .len(),
                expected,
                "margin {margin}"
            );
        }
    }
}
