//! One option's reward statistics: count, mean and the sum of squared deviations, kept
//! with Welford's update and merged with Chan's parallel formula.

use serde::{Deserialize, Serialize};

/// What was learned about one option in one context: how many rewards (`n`), their mean
/// and `m2`, the sum of their squared deviations from the mean (so the sample variance
/// is `m2 / (n − 1)`).
///
/// Serialized as `{"n": …, "mean": …, "m2": …}`, the form the exported model uses.
///
/// # Examples
/// ```
/// use tradeflow::decision::OptionStats;
///
/// let mut stats = OptionStats::default();
/// for reward in [1.0, 2.0, 4.0] {
///     stats.push(reward);
/// }
/// assert_eq!(stats.n, 3);
/// assert!((stats.mean - 7.0 / 3.0).abs() < 1e-12);
/// assert!((stats.sample_variance().unwrap() - 7.0 / 3.0).abs() < 1e-12);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OptionStats {
    /// How many rewards were learned.
    pub n: u64,
    /// Their mean (0 when `n` is 0).
    pub mean: f64,
    /// The sum of their squared deviations from `mean` (0 when `n` < 2).
    pub m2: f64,
}

impl OptionStats {
    /// Statistics as exported: `n` rewards with this `mean` and `m2`. Not checked; the
    /// engine checks what it imports.
    pub fn new(n: u64, mean: f64, m2: f64) -> Self {
        Self { n, mean, m2 }
    }

    /// Adds one reward (Welford's update: one pass, no catastrophic cancellation).
    ///
    /// `n` saturates at `u64::MAX`; `m2` is kept finite (at most `f64::MAX`).
    pub fn push(&mut self, reward: f64) {
        self.n = self.n.saturating_add(1);
        let delta = reward - self.mean;
        self.mean += delta / self.n as f64;
        // `delta` and `reward − mean` have the same sign, so `m2` never decreases.
        self.m2 = (self.m2 + delta * (reward - self.mean)).min(f64::MAX);
    }

    /// Adds everything `other` learned, as if its rewards had been pushed here (Chan et
    /// al.'s parallel merge): with `δ = mean_b − mean_a` and `n = n_a + n_b`,
    /// `mean = mean_a + δ·n_b/n` and `m2 = m2_a + m2_b + δ²·n_a·n_b/n`.
    pub fn merge(&mut self, other: &OptionStats) {
        if other.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *other;
            return;
        }
        let n = self.n.saturating_add(other.n);
        let (a, b, total) = (self.n as f64, other.n as f64, n as f64);
        let delta = other.mean - self.mean;
        self.mean += delta * (b / total);
        self.m2 = (self.m2 + other.m2 + delta * delta * (a * (b / total))).min(f64::MAX);
        self.n = n;
    }

    /// The sample variance `m2 / (n − 1)`, once there are two rewards.
    pub fn sample_variance(&self) -> Option<f64> {
        (self.n >= 2).then(|| self.m2 / (self.n - 1) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(rewards: &[f64]) -> OptionStats {
        let mut stats = OptionStats::default();
        rewards.iter().for_each(|&reward| stats.push(reward));
        stats
    }

    fn two_pass(rewards: &[f64]) -> (f64, f64) {
        let mean = rewards.iter().sum::<f64>() / rewards.len() as f64;
        let m2 = rewards.iter().map(|r| (r - mean) * (r - mean)).sum();
        (mean, m2)
    }

    #[test]
    fn welford_matches_the_two_pass_mean_and_squared_deviations() {
        let rewards = [0.3, 0.9, -1.25, 4.0, 0.0, 2.5, 2.5];
        let stats = of(&rewards);
        let (mean, m2) = two_pass(&rewards);
        assert_eq!(stats.n, 7);
        assert!((stats.mean - mean).abs() < 1e-12, "{stats:?}");
        assert!((stats.m2 - m2).abs() < 1e-12, "{stats:?}");
        assert_eq!(of(&[5.0]).sample_variance(), None);
        assert_eq!(of(&[5.0]).m2, 0.0);
    }

    #[test]
    fn merging_equals_pushing_both_sets() {
        let (left, right) = ([0.1, 0.7, 0.4], [1.5, -0.2, 0.9, 0.9, 3.0]);
        let mut merged = of(&left);
        merged.merge(&of(&right));
        let all: Vec<f64> = left.iter().chain(&right).copied().collect();
        let pushed = of(&all);
        assert_eq!(merged.n, pushed.n);
        assert!((merged.mean - pushed.mean).abs() < 1e-12);
        assert!((merged.m2 - pushed.m2).abs() < 1e-12);
    }

    #[test]
    fn merging_with_nothing_changes_nothing() {
        let stats = of(&[1.0, 2.0]);
        let mut merged = stats;
        merged.merge(&OptionStats::default());
        assert_eq!(merged, stats);
        let mut empty = OptionStats::default();
        empty.merge(&stats);
        assert_eq!(empty, stats);
    }

    #[test]
    fn huge_counts_and_deviations_stay_finite() {
        let mut stats = OptionStats::new(u64::MAX, 1e15, f64::MAX);
        stats.merge(&OptionStats::new(u64::MAX, -1e15, f64::MAX));
        stats.push(1e15);
        assert_eq!(stats.n, u64::MAX);
        assert!(stats.mean.is_finite() && stats.m2.is_finite(), "{stats:?}");
    }
}
