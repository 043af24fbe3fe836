//! The policies: which option a decision takes, given the options' prior scores and
//! what was learned about them. Pure: the statistics and the random numbers come in.

use rand::{Rng, RngExt};

use super::OptionStats;
use crate::plan::Policy;

/// The index of the option a decision under `policy` takes.
///
/// `priors` are the options' prior scores ([`evaluate_options`](super::evaluate_options)),
/// `stats` what was learned about each (in the same order; a missing entry counts as
/// untried), `learned` the number of rewards learned in the decision's context (UCB1's
/// `N`). Ties go to the option listed first.
///
/// - `STATIC`: the best prior. Draws nothing from `rng`.
/// - `THOMPSON`: for each option a sample from the Gaussian posterior of its mean
///   reward; the highest sample wins. With the prior score `p` as one pseudo-reward,
///   the posterior mean is `(p + n·mean) / (1 + n)` and its standard deviation
///   `s / sqrt(1 + n)`, where `s² = (1 + m2 + n/(1 + n)·(mean − p)²) / (1 + n)`: the
///   rewards' variance with one pseudo-observation of unit variance (the
///   normal–inverse-gamma posterior with κ₀ = ν₀ = σ₀² = 1). So `s` is 1 before any
///   reward, tends to the rewards' standard deviation as `n` grows, grows when the
///   rewards contradict the prior, and never collapses to 0 when rewards repeat. Draws
///   two uniforms per pair of options (Box–Muller).
/// - `UCB1`: the first untried option (`n` = 0); else the highest
///   `mean + sqrt(2 ln N / n)` with `N = max(learned, 1)`. The bonus is scaled for
///   rewards in [0, 1]. Draws nothing.
/// - `EPSILON_GREEDY`: with probability `exploration` an option uniformly at random;
///   otherwise the best mean, an untried option's prior score counting as its mean.
///   Draws one uniform, and one index when it explores.
///
/// Returns 0 when `priors` is empty.
///
/// # Examples
/// ```
/// use rand::SeedableRng;
/// use rand::rngs::StdRng;
/// use tradeflow::decision::{OptionStats, choose};
/// use tradeflow::plan::Policy;
///
/// let mut rng = StdRng::seed_from_u64(1);
/// let priors = [0.2, 0.9, 0.5];
/// assert_eq!(choose(Policy::Static, &priors, &[], 0, &mut rng), 1);
/// // UCB1 tries every option before it compares bounds: the first untried, in order.
/// let tried = [OptionStats::new(3, 0.4, 0.1), OptionStats::default(), OptionStats::default()];
/// assert_eq!(choose(Policy::Ucb1, &priors, &tried, 3, &mut rng), 1);
/// ```
pub fn choose(
    policy: Policy,
    priors: &[f64],
    stats: &[OptionStats],
    learned: u64,
    rng: &mut dyn Rng,
) -> usize {
    let stats_of = |index: usize| stats.get(index).copied().unwrap_or_default();
    match policy {
        Policy::Static => best(priors.iter().copied()),
        Policy::Thompson => {
            let mut normals = Normals::default();
            best(priors.iter().enumerate().map(|(index, &prior)| {
                let (mean, sd) = posterior(prior, &stats_of(index));
                mean + sd * normals.next(rng)
            }))
        }
        Policy::Ucb1 => {
            if let Some(untried) = (0..priors.len()).find(|&index| stats_of(index).n == 0) {
                return untried;
            }
            let log = 2.0 * (learned.max(1) as f64).ln();
            best((0..priors.len()).map(|index| {
                let stats = stats_of(index);
                stats.mean + (log / stats.n as f64).sqrt()
            }))
        }
        Policy::EpsilonGreedy { exploration } => {
            if rng.random::<f64>() < exploration && !priors.is_empty() {
                return rng.random_range(0..priors.len());
            }
            best(priors.iter().enumerate().map(|(index, &prior)| {
                let stats = stats_of(index);
                if stats.n == 0 { prior } else { stats.mean }
            }))
        }
    }
}

/// The mean and standard deviation of the Gaussian posterior of an option's mean
/// reward, its prior score counting as one pseudo-reward of unit variance.
fn posterior(prior: f64, stats: &OptionStats) -> (f64, f64) {
    let n = stats.n as f64;
    let weight = 1.0 + n;
    let mean = (prior + n * stats.mean) / weight;
    let disagreement = stats.mean - prior;
    let variance = (1.0 + stats.m2 + n / weight * disagreement * disagreement) / weight;
    (mean, (variance / weight).sqrt())
}

/// The index of the highest value, the first on ties; values that are NaN never win.
fn best(values: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (index, value) in values.enumerate() {
        if value > best.1 {
            best = (index, value);
        }
    }
    best.0
}

/// Standard normal numbers from uniform pairs (Box–Muller), both of a pair used.
#[derive(Debug, Default)]
pub(super) struct Normals {
    spare: Option<f64>,
}

impl Normals {
    /// The next standard normal number.
    pub(super) fn next(&mut self, rng: &mut dyn Rng) -> f64 {
        if let Some(spare) = self.spare.take() {
            return spare;
        }
        // `random` is in [0, 1): `1 − u` is in (0, 1], so the logarithm is finite.
        let radius = (-2.0 * (1.0 - rng.random::<f64>()).ln()).sqrt();
        let angle = std::f64::consts::TAU * rng.random::<f64>();
        self.spare = Some(radius * angle.sin());
        radius * angle.cos()
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn tried(n: u64, mean: f64) -> OptionStats {
        OptionStats::new(n, mean, 0.0)
    }

    #[test]
    fn static_takes_the_best_prior_and_the_first_of_equals() {
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(
            choose(Policy::Static, &[0.1, 0.8, 0.3], &[], 0, &mut rng),
            1
        );
        assert_eq!(
            choose(Policy::Static, &[0.5, 0.8, 0.8], &[], 0, &mut rng),
            1
        );
        assert_eq!(choose(Policy::Static, &[1.0, 1.0], &[], 0, &mut rng), 0);
        assert_eq!(choose(Policy::Static, &[], &[], 0, &mut rng), 0);
    }

    #[test]
    fn ucb1_tries_untried_options_in_listed_order_then_takes_the_highest_bound() {
        let mut rng = StdRng::seed_from_u64(0);
        let priors = [1.0, 0.0, 0.0];
        let stats = [tried(4, 0.9), OptionStats::default(), tried(1, 0.1)];
        assert_eq!(choose(Policy::Ucb1, &priors, &stats, 5, &mut rng), 1);
        // N = 10: bounds 0.9 + sqrt(2 ln 10 / 8) = 1.659, 0.5 + sqrt(2 ln 10 / 1)
        // = 2.646, 0.6 + sqrt(2 ln 10 / 1) = 2.746.
        let stats = [tried(8, 0.9), tried(1, 0.5), tried(1, 0.6)];
        assert_eq!(choose(Policy::Ucb1, &priors, &stats, 10, &mut rng), 2);
        let stats = [tried(8, 0.9), tried(1, 0.6), tried(1, 0.6)];
        assert_eq!(choose(Policy::Ucb1, &priors, &stats, 10, &mut rng), 1);
        let stats = [tried(100, 0.9), tried(100, 0.5), tried(100, 0.6)];
        assert_eq!(choose(Policy::Ucb1, &priors, &stats, 300, &mut rng), 0);
    }

    #[test]
    fn epsilon_greedy_exploits_the_best_mean_counting_priors_for_untried_options() {
        let mut rng = StdRng::seed_from_u64(0);
        let greedy = Policy::EpsilonGreedy { exploration: 0.0 };
        let priors = [0.9, 0.2, 0.6];
        let stats = [tried(3, 0.4), tried(2, 0.5), OptionStats::default()];
        assert_eq!(choose(greedy, &priors, &stats, 5, &mut rng), 2);
        let stats = [tried(3, 0.4), tried(2, 0.7), OptionStats::default()];
        assert_eq!(choose(greedy, &priors, &stats, 5, &mut rng), 1);
        assert_eq!(choose(greedy, &priors, &[], 0, &mut rng), 0);
    }

    #[test]
    fn epsilon_greedy_explores_its_share_uniformly() {
        let mut rng = StdRng::seed_from_u64(7);
        let explore = Policy::EpsilonGreedy { exploration: 0.3 };
        let priors = [1.0, 0.0, 0.0, 0.0];
        let mut counts = [0usize; 4];
        for _ in 0..40_000 {
            counts[choose(explore, &priors, &[], 0, &mut rng)] += 1;
        }
        // Expected: 0.7 + 0.3/4 = 77.5% for the best, 7.5% for each other.
        let share = |count: usize| count as f64 / 40_000.0;
        assert!((share(counts[0]) - 0.775).abs() < 0.01, "{counts:?}");
        for &count in &counts[1..] {
            assert!((share(count) - 0.075).abs() < 0.01, "{counts:?}");
        }
    }

    #[test]
    fn thompson_follows_the_prior_before_learning_and_the_rewards_after() {
        let mut rng = StdRng::seed_from_u64(3);
        let priors = [0.0, 1.0];
        let mut picks = [0usize; 2];
        for _ in 0..10_000 {
            picks[choose(Policy::Thompson, &priors, &[], 0, &mut rng)] += 1;
        }
        // Untried: N(0, 1) against N(1, 1); P(first wins) = Φ(−1/√2) ≈ 0.24.
        let first = picks[0] as f64 / 10_000.0;
        assert!((first - 0.24).abs() < 0.02, "{picks:?}");
        // 200 rewards each, sd 0.1: means 0.7 and 0.3 decide it.
        let stats = [
            OptionStats::new(200, 0.7, 199.0 * 0.01),
            OptionStats::new(200, 0.3, 199.0 * 0.01),
        ];
        let picks = (0..1_000)
            .filter(|_| choose(Policy::Thompson, &priors, &stats, 400, &mut rng) == 0)
            .count();
        assert!(picks >= 990, "{picks}");
    }

    #[test]
    fn the_posterior_starts_at_the_prior_with_unit_spread_and_narrows() {
        assert_eq!(posterior(0.4, &OptionStats::default()), (0.4, 1.0));
        let (mean, sd) = posterior(0.4, &OptionStats::new(99, 0.4, 98.0 * 0.04));
        assert!((mean - 0.4).abs() < 1e-12);
        // s² = (1 + 98·0.04) / 100 = 0.0492; sd = sqrt(0.0492 / 100).
        assert!((sd - (0.0492f64 / 100.0).sqrt()).abs() < 1e-12, "{sd}");
    }

    #[test]
    fn normals_have_mean_zero_and_variance_one() {
        let mut rng = StdRng::seed_from_u64(11);
        let mut normals = Normals::default();
        let mut stats = OptionStats::default();
        for _ in 0..100_000 {
            stats.push(normals.next(&mut rng));
        }
        assert!(stats.mean.abs() < 0.01, "{stats:?}");
        let variance = stats.sample_variance().unwrap_or_default();
        assert!((variance - 1.0).abs() < 0.02, "{stats:?}");
    }
}
