//! Load balancers: which of the best candidates gets the call.

use std::cmp::Ordering as CmpOrdering;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rand::{Rng, RngExt};

use super::Candidate;
use crate::definition::{AgentType, LoadBalancing};

/// Chooses one of the best candidates for a call.
///
/// The registry calls `pick` with the candidates that have spare capacity and score
/// within the selection margin of the best, in id order, never with an empty slice. It
/// holds no lock while doing so. An index past the end is taken modulo the length.
///
/// Randomised balancers must draw only from `rng` (the run's seeded generator), so that
/// the same seed gives the same picks.
///
/// Only [`pick`](Self::pick) is required. The registry calls
/// [`pick_for`](Self::pick_for), which also names the agent type asked for and defaults
/// to `pick`: override it to keep state per type, as [`RoundRobin`] does.
///
/// A host's own balancer is the engine's default with
/// [`EngineBuilder::load_balancer`](crate::engine::EngineBuilder::load_balancer): steps
/// that name a `loadBalancing` strategy get the built-in one, every other step the
/// host's.
///
/// # Examples
/// A balancer that always calls the last of the best candidates (the one with the
/// greatest id):
/// ```
/// use rand::Rng;
/// use tradeflow::agent::{Candidate, LoadBalancer};
///
/// #[derive(Debug)]
/// struct Last;
///
/// impl LoadBalancer for Last {
///     fn pick(&self, candidates: &[Candidate], _: &mut dyn Rng) -> usize {
///         candidates.len().saturating_sub(1)
///     }
/// }
/// # fn _object_safe(_: &dyn LoadBalancer) {}
/// # _object_safe(&Last);
/// ```
pub trait LoadBalancer: Send + Sync + fmt::Debug {
    /// The index in `candidates` of the one to call.
    fn pick(&self, candidates: &[Candidate], rng: &mut dyn Rng) -> usize;

    /// The index in `candidates`, all agents of type `agent_type`, of the one to call.
    /// Defaults to [`pick`](Self::pick).
    fn pick_for(
        &self,
        agent_type: &AgentType,
        candidates: &[Candidate],
        rng: &mut dyn Rng,
    ) -> usize {
        let _ = agent_type;
        self.pick(candidates, rng)
    }
}

macro_rules! forward {
    ($pointer:ident) => {
        impl<B: LoadBalancer + ?Sized> LoadBalancer for $pointer<B> {
            fn pick(&self, candidates: &[Candidate], rng: &mut dyn Rng) -> usize {
                (**self).pick(candidates, rng)
            }

            fn pick_for(
                &self,
                agent_type: &AgentType,
                candidates: &[Candidate],
                rng: &mut dyn Rng,
            ) -> usize {
                (**self).pick_for(agent_type, candidates, rng)
            }
        }
    };
}

forward!(Arc);
forward!(Box);

/// The balancer that implements a step's `loadBalancing`.
///
/// Each call returns a new balancer; [`RoundRobin`] keeps its positions in the instance,
/// so keep one per engine for the rotations to carry over between calls.
pub fn balancer_for(kind: LoadBalancing) -> Arc<dyn LoadBalancer> {
    match kind {
        LoadBalancing::RoundRobin => Arc::new(RoundRobin::new()),
        LoadBalancing::Weighted => Arc::new(Weighted),
        LoadBalancing::LeastConnections => Arc::new(LeastConnections),
        LoadBalancing::PowerOfTwoChoices => Arc::new(PowerOfTwoChoices),
    }
}

/// Each candidate in turn, one rotation per agent type: the n-th pick for a type
/// (counted from 0) takes index `n mod len`. Ignores the rng.
///
/// Through [`pick_for`](LoadBalancer::pick_for), which the registry calls, each agent
/// type keeps its own counter, so calls for one type do not move another type's
/// rotation: two types called in turn each go through all of their agents evenly.
/// [`pick`](LoadBalancer::pick), with no type, uses one counter of its own.
///
/// Cost: a short lock and one hash-map lookup per pick; the map holds one counter per
/// agent type ever picked for.
#[derive(Debug, Default)]
pub struct RoundRobin {
    untyped: AtomicUsize,
    by_type: Mutex<HashMap<AgentType, usize>>,
}

impl RoundRobin {
    /// Rotations starting at the first candidate.
    pub fn new() -> Self {
        Self::default()
    }
}

impl LoadBalancer for RoundRobin {
    fn pick(&self, candidates: &[Candidate], _: &mut dyn Rng) -> usize {
        self.untyped.fetch_add(1, Ordering::Relaxed) % candidates.len().max(1)
    }

    fn pick_for(&self, agent_type: &AgentType, candidates: &[Candidate], _: &mut dyn Rng) -> usize {
        // Nothing panics under the lock, so a poisoned map is still consistent.
        let mut counters = self.by_type.lock().unwrap_or_else(PoisonError::into_inner);
        let next = match counters.get_mut(agent_type) {
            Some(next) => next,
            None => counters.entry(agent_type.clone()).or_insert(0),
        };
        let picked = *next % candidates.len().max(1);
        *next = next.wrapping_add(1);
        picked
    }
}

/// At random, each candidate with probability `weight / Σ weight`, drawn from the
/// given rng.
#[derive(Debug, Clone, Copy, Default)]
pub struct Weighted;

impl LoadBalancer for Weighted {
    fn pick(&self, candidates: &[Candidate], rng: &mut dyn Rng) -> usize {
        let total: f64 = candidates.iter().map(|c| c.weight.max(0.0)).sum();
        if candidates.len() <= 1 || !(total.is_finite() && total > 0.0) {
            return 0;
        }
        let mut point = rng.random::<f64>() * total;
        for (index, candidate) in candidates.iter().enumerate() {
            point -= candidate.weight.max(0.0);
            if point < 0.0 {
                return index;
            }
        }
        // Rounding can leave `point` a hair above 0 after the last weight.
        candidates.len() - 1
    }
}

/// The candidate with the fewest calls in flight; ties go to the higher score, then to
/// the smaller id. Ignores the rng.
#[derive(Debug, Clone, Copy, Default)]
pub struct LeastConnections;

impl LoadBalancer for LeastConnections {
    fn pick(&self, candidates: &[Candidate], _: &mut dyn Rng) -> usize {
        let best = candidates.iter().enumerate().min_by(|(_, a), (_, b)| {
            a.in_flight
                .cmp(&b.in_flight)
                .then_with(|| b.score.total.total_cmp(&a.score.total))
                .then_with(|| a.agent.cmp(&b.agent))
        });
        best.map_or(0, |(index, _)| index)
    }
}

/// Two distinct candidates drawn at random, the less loaded (`in_flight /
/// max_concurrency`) of the two; ties go to the higher score, then to the first drawn.
///
/// Cheap and nearly as good as knowing every load: the most loaded candidate is chosen
/// only when it is drawn twice, which two distinct draws rule out.
#[derive(Debug, Clone, Copy, Default)]
pub struct PowerOfTwoChoices;

impl LoadBalancer for PowerOfTwoChoices {
    fn pick(&self, candidates: &[Candidate], rng: &mut dyn Rng) -> usize {
        let len = candidates.len();
        if len <= 1 {
            return 0;
        }
        let first = rng.random_range(0..len);
        let mut second = rng.random_range(0..len - 1);
        if second >= first {
            second += 1;
        }
        let (a, b) = (&candidates[first], &candidates[second]);
        // in_flight / max compared without division: a.in / a.max vs b.in / b.max.
        let load = (u64::from(a.in_flight) * u64::from(b.max_concurrency.max(1)))
            .cmp(&(u64::from(b.in_flight) * u64::from(a.max_concurrency.max(1))));
        match load.then_with(|| b.score.total.total_cmp(&a.score.total)) {
            CmpOrdering::Greater => second,
            CmpOrdering::Less | CmpOrdering::Equal => first,
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::agent::{AgentId, Health, ScoreBreakdown};

    fn candidate(id: &str, in_flight: u32, max: u32, weight: f64, total: f64) -> Candidate {
        Candidate {
            agent: AgentId::from(id),
            score: ScoreBreakdown {
                capability: 1.0,
                performance: 0.5,
                load: 1.0,
                availability: 1.0,
                total,
            },
            in_flight,
            max_concurrency: max,
            weight,
            health: Health::Healthy,
        }
    }

    #[test]
    fn round_robin_rotates() {
        let pool = [
            candidate("a", 0, 1, 1.0, 0.9),
            candidate("b", 0, 1, 1.0, 0.9),
            candidate("c", 0, 1, 1.0, 0.9),
        ];
        let balancer = RoundRobin::new();
        let mut rng = StdRng::seed_from_u64(0);
        let picks: Vec<usize> = (0..7).map(|_| balancer.pick(&pool, &mut rng)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn round_robin_keeps_one_rotation_per_agent_type() {
        let pool = [
            candidate("a", 0, 1, 1.0, 0.9),
            candidate("b", 0, 1, 1.0, 0.9),
        ];
        let (risk, trading) = (AgentType::from("RISK"), AgentType::from("TRADING"));
        let balancer = RoundRobin::new();
        let mut rng = StdRng::seed_from_u64(0);
        let picks: Vec<(usize, usize)> = (0..3)
            .map(|_| {
                let first = balancer.pick_for(&risk, &pool, &mut rng);
                (first, balancer.pick_for(&trading, &pool, &mut rng))
            })
            .collect();
        assert_eq!(picks, [(0, 0), (1, 1), (0, 0)]);
        // The untyped rotation is a third one, untouched by the typed picks.
        assert_eq!(balancer.pick(&pool, &mut rng), 0);
    }

    #[test]
    fn least_connections_breaks_ties_by_score_then_id() {
        let mut rng = StdRng::seed_from_u64(0);
        let pool = [
            candidate("a", 1, 4, 1.0, 0.9),
            candidate("b", 0, 4, 1.0, 0.8),
            candidate("c", 0, 4, 1.0, 0.85),
            candidate("d", 0, 4, 1.0, 0.85),
        ];
        assert_eq!(LeastConnections.pick(&pool, &mut rng), 2);
    }

    #[test]
    fn single_candidates_and_degenerate_weights() {
        let mut rng = StdRng::seed_from_u64(0);
        let one = [candidate("a", 0, 1, 1.0, 0.9)];
        for balancer in [
            LoadBalancing::RoundRobin,
            LoadBalancing::Weighted,
            LoadBalancing::LeastConnections,
            LoadBalancing::PowerOfTwoChoices,
        ]
        .map(balancer_for)
        {
            assert_eq!(balancer.pick(&one, &mut rng), 0, "{balancer:?}");
        }
        let zero = [
            candidate("a", 0, 1, 0.0, 0.9),
            candidate("b", 0, 1, 0.0, 0.9),
        ];
        assert_eq!(Weighted.pick(&zero, &mut rng), 0);
    }

    #[test]
    fn power_of_two_compares_relative_load() {
        // a: 2 of 8 (25%), b: 1 of 2 (50%): a is the less loaded.
        let pool = [
            candidate("a", 2, 8, 1.0, 0.5),
            candidate("b", 1, 2, 1.0, 0.9),
        ];
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..50 {
            assert_eq!(PowerOfTwoChoices.pick(&pool, &mut rng), 0);
        }
    }
}
