//! Scoring: how well a candidate fits a call, from four components in [0, 1].

use std::time::Duration;

use serde::Serialize;

use super::{AgentErrorKind, Health};

/// Weight of the capability match in the total.
pub(crate) const CAPABILITY_WEIGHT: f64 = 0.40;
/// Weight of the performance history in the total.
pub(crate) const PERFORMANCE_WEIGHT: f64 = 0.25;
/// Weight of the current load in the total.
pub(crate) const LOAD_WEIGHT: f64 = 0.20;
/// Weight of availability in the total.
pub(crate) const AVAILABILITY_WEIGHT: f64 = 0.15;

/// Smoothing factor of the exponentially weighted history: the newest call counts 20%.
pub(crate) const ALPHA: f64 = 0.2;
/// Performance of an agent that has never run the task type; also the prior from which
/// its success rate starts.
pub(crate) const NEUTRAL: f64 = 0.5;
/// Share of the success rate in the performance component (the rest is latency).
const SUCCESS_SHARE: f64 = 0.7;
/// Shares of success rate, latency and reward once the agent has rewards on the task type.
const REWARDED_SHARES: [f64; 3] = [0.5, 0.2, 0.3];
/// Added to both latencies before comparing them, so that sub-millisecond differences
/// (virtual time, cached answers) do not swing the score.
const LATENCY_FLOOR_MS: f64 = 1.0;

/// How a candidate was scored: each component in [0, 1], and the weighted total.
///
/// `total = 0.40 × capability + 0.25 × performance + 0.20 × load + 0.15 × availability`;
/// see the [module documentation](super) for each component.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScoreBreakdown {
    /// Required and preferred capabilities matched (preferred ones count half).
    pub capability: f64,
    /// Success rate, latency and (once credited) reward on this task type,
    /// exponentially weighted.
    pub performance: f64,
    /// `1 − in_flight / max_concurrency`.
    pub load: f64,
    /// Health, lowered by consecutive failures.
    pub availability: f64,
    /// The weighted sum of the four components.
    pub total: f64,
}

impl ScoreBreakdown {
    /// Combines four components (each clamped to [0, 1]) into a breakdown with its total.
    pub fn new(capability: f64, performance: f64, load: f64, availability: f64) -> Self {
        let [capability, performance, load, availability] =
            [capability, performance, load, availability].map(unit);
        Self {
            capability,
            performance,
            load,
            availability,
            total: CAPABILITY_WEIGHT * capability
                + PERFORMANCE_WEIGHT * performance
                + LOAD_WEIGHT * load
                + AVAILABILITY_WEIGHT * availability,
        }
    }
}

/// Clamps to [0, 1]; NaN counts as 0.
fn unit(value: f64) -> f64 {
    if value.is_nan() {
        0.0
    } else {
        value.clamp(0.0, 1.0)
    }
}

/// The capability component, or `None` when a required capability is missing.
pub(crate) fn capability(own: &[String], required: &[String], preferred: &[String]) -> Option<f64> {
    let has = |wanted: &String| own.contains(wanted);
    if !required.iter().all(has) {
        return None;
    }
    let asked = required.len() as f64 + 0.5 * preferred.len() as f64;
    if asked == 0.0 {
        return Some(1.0);
    }
    let preferred_matched = preferred.iter().filter(|wanted| has(wanted)).count() as f64;
    Some((required.len() as f64 + 0.5 * preferred_matched) / asked)
}

/// The load component.
pub(crate) fn load(in_flight: u32, max_concurrency: u32) -> f64 {
    let max = f64::from(max_concurrency.max(1));
    1.0 - f64::from(in_flight).min(max) / max
}

/// The availability component: health (1, 0.5, 0) halved by each consecutive failure.
pub(crate) fn availability(health: Health, consecutive_failures: u32) -> f64 {
    let health = match health {
        Health::Healthy => 1.0,
        Health::Degraded => 0.5,
        Health::Unhealthy => 0.0,
    };
    // Past 30 halvings the factor is below 1e-9: treat it as 0 without overflowing.
    health * 0.5f64.powi(consecutive_failures.min(30) as i32)
}

/// The performance component, given the fastest latency among the candidates.
pub(crate) fn performance(history: Option<&History>, fastest_ms: Option<f64>) -> f64 {
    let Some(history) = history else {
        return NEUTRAL;
    };
    let latency = match (history.latency_ms, fastest_ms) {
        (Some(own), Some(fastest)) => (fastest + LATENCY_FLOOR_MS) / (own + LATENCY_FLOOR_MS),
        _ => NEUTRAL,
    };
    match history.reward {
        None => SUCCESS_SHARE * history.success + (1.0 - SUCCESS_SHARE) * latency,
        Some(reward) => {
            let [success, fast, rewarded] = REWARDED_SHARES;
            success * history.success + fast * latency + rewarded * reward
        }
    }
}

/// What one agent has done on one task type, exponentially weighted (alpha 0.2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct History {
    /// Success rate; starts at the neutral prior 0.5.
    pub(crate) success: f64,
    /// Latency of successful calls in milliseconds; `None` until one succeeds.
    pub(crate) latency_ms: Option<f64>,
    /// Rewards of the agent's decisions, in [0, 1]; `None` until one is credited.
    pub(crate) reward: Option<f64>,
}

impl Default for History {
    fn default() -> Self {
        Self {
            success: NEUTRAL,
            latency_ms: None,
            reward: None,
        }
    }
}

impl History {
    /// Adds one call. Only successes update the latency: a fast rejection says nothing
    /// about how fast the agent works.
    pub(crate) fn observe(&mut self, outcome: &Outcome) {
        match *outcome {
            Outcome::Success { latency } => {
                self.success += ALPHA * (1.0 - self.success);
                let ms = latency.as_secs_f64() * 1000.0;
                self.latency_ms = Some(match self.latency_ms {
                    None => ms,
                    Some(average) => average + ALPHA * (ms - average),
                });
            }
            Outcome::Failure { .. } => self.success -= ALPHA * self.success,
        }
    }

    /// Adds one reward, in [0, 1] (checked by the registry): the first sets the
    /// average, later ones move it by alpha, as calls move the success rate.
    pub(crate) fn credit(&mut self, reward: f64) {
        debug_assert!((0.0..=1.0).contains(&reward), "rewards are checked before");
        self.reward = Some(match self.reward {
            None => reward,
            Some(average) => average + ALPHA * (reward - average),
        });
    }
}

/// How a call ended, recorded with [`AgentRegistry::record`](super::AgentRegistry::record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The agent returned a result after `latency`.
    Success {
        /// Time from the call to its result.
        latency: Duration,
    },
    /// The agent failed after `latency`.
    Failure {
        /// The kind of failure.
        kind: AgentErrorKind,
        /// Time from the call to its failure.
        latency: Duration,
    },
}

impl Outcome {
    /// Whether the outcome counts as a consecutive failure against the agent's
    /// availability. `PERMANENT` does not: the agent answered, the task was at fault.
    pub(crate) fn strains_availability(&self) -> bool {
        matches!(self, Self::Failure { kind, .. } if *kind != AgentErrorKind::Permanent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn weights_sum_to_one() {
        let sum = CAPABILITY_WEIGHT + PERFORMANCE_WEIGHT + LOAD_WEIGHT + AVAILABILITY_WEIGHT;
        assert!((sum - 1.0).abs() < 1e-12);
        assert_eq!(ScoreBreakdown::new(1.0, 1.0, 1.0, 1.0).total, sum);
        assert_eq!(
            ScoreBreakdown::new(f64::NAN, -1.0, 2.0, 0.0).total,
            LOAD_WEIGHT
        );
    }

    #[test]
    fn capability_counts_preferred_at_half() {
        let own = names(&["twap", "vwap"]);
        assert_eq!(capability(&own, &[], &[]), Some(1.0));
        assert_eq!(capability(&own, &names(&["iceberg"]), &[]), None);
        assert_eq!(
            capability(&own, &names(&["twap"]), &names(&["vwap"])),
            Some(1.0)
        );
        // 1 required matched, 1 of 2 preferred: (1 + 0.5) / (1 + 1).
        let partial = capability(&own, &names(&["twap"]), &names(&["vwap", "dark"]));
        assert_eq!(partial, Some(0.75));
        assert_eq!(capability(&[], &[], &names(&["dark"])), Some(0.0));
    }

    #[test]
    fn load_and_availability_components() {
        assert_eq!(load(0, 4), 1.0);
        assert_eq!(load(1, 4), 0.75);
        assert_eq!(load(9, 4), 0.0);
        assert_eq!(availability(Health::Healthy, 0), 1.0);
        assert_eq!(availability(Health::Degraded, 1), 0.25);
        assert_eq!(availability(Health::Unhealthy, 0), 0.0);
        assert!(availability(Health::Healthy, u32::MAX) < 1e-8);
    }

    #[test]
    fn history_is_exponentially_weighted() {
        let mut history = History::default();
        assert_eq!(performance(None, None), NEUTRAL);
        history.observe(&Outcome::Success {
            latency: Duration::from_millis(99),
        });
        assert!((history.success - 0.6).abs() < 1e-12);
        assert_eq!(history.latency_ms, Some(99.0));
        history.observe(&Outcome::Success {
            latency: Duration::from_millis(199),
        });
        assert!((history.latency_ms.unwrap() - 119.0).abs() < 1e-9);
        // Twice as slow as the fastest candidate: latency score (99 + 1) / (199 + 1).
        let mut slow = History::default();
        slow.observe(&Outcome::Success {
            latency: Duration::from_millis(199),
        });
        let expected = 0.7 * 0.6 + 0.3 * 0.5;
        assert!((performance(Some(&slow), Some(99.0)) - expected).abs() < 1e-12);

        let mut failing = History::default();
        failing.observe(&Outcome::Failure {
            kind: AgentErrorKind::Timeout,
            latency: Duration::from_secs(5),
        });
        assert!((failing.success - 0.4).abs() < 1e-12);
        assert_eq!(failing.latency_ms, None);
        assert!(performance(Some(&failing), Some(99.0)) < NEUTRAL);
    }

    #[test]
    fn rewards_join_performance_once_credited() {
        let mut history = History::default();
        history.observe(&Outcome::Success {
            latency: Duration::from_millis(99),
        });
        // Success 0.6, latency score 1 (the fastest): 0.7 × 0.6 + 0.3 × 1.
        assert!((performance(Some(&history), Some(99.0)) - 0.72).abs() < 1e-12);
        history.credit(1.0);
        assert_eq!(history.reward, Some(1.0));
        // 0.5 × 0.6 + 0.2 × 1 + 0.3 × 1.
        assert!((performance(Some(&history), Some(99.0)) - 0.8).abs() < 1e-12);
        history.credit(0.0);
        // 1 + 0.2 × (0 − 1) = 0.8; 0.3 + 0.2 + 0.3 × 0.8.
        assert!((history.reward.unwrap() - 0.8).abs() < 1e-12);
        assert!((performance(Some(&history), Some(99.0)) - 0.74).abs() < 1e-12);
        // Against a faster agent (99 ms vs 199 ms): latency (99 + 1) / (199 + 1) = 0.5.
        let mut slow = History::default();
        slow.observe(&Outcome::Success {
            latency: Duration::from_millis(199),
        });
        // Without rewards: 0.7 × 0.6 + 0.3 × 0.5 = 0.57.
        assert!((performance(Some(&slow), Some(99.0)) - 0.57).abs() < 1e-12);
        slow.credit(0.5);
        // 0.5 × 0.6 + 0.2 × 0.5 + 0.3 × 0.5 = 0.55.
        assert!((performance(Some(&slow), Some(99.0)) - 0.55).abs() < 1e-12);
    }

    #[test]
    fn a_reward_alone_makes_a_history() {
        let mut history = History::default();
        history.credit(0.25);
        // Prior success 0.5, no latency yet (0.5): 0.25 + 0.1 + 0.3 × 0.25.
        assert!((performance(Some(&history), None) - 0.425).abs() < 1e-12);
    }

    #[test]
    fn permanent_failures_do_not_strain_availability() {
        let failure = |kind| Outcome::Failure {
            kind,
            latency: Duration::ZERO,
        };
        assert!(failure(AgentErrorKind::Temporary).strains_availability());
        assert!(failure(AgentErrorKind::AgentUnavailable).strains_availability());
        assert!(!failure(AgentErrorKind::Permanent).strains_availability());
        let success = Outcome::Success {
            latency: Duration::ZERO,
        };
        assert!(!success.strains_availability());
    }
}
