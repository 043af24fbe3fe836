//! A fixed log-linear histogram of durations: bounded memory, a known relative error.
//!
//! Durations are counted in whole microseconds. Below 16 µs each microsecond has a bucket
//! of its own; above, each power of two `[2^e, 2^(e+1))` is split into 16 equal buckets
//! of width `2^(e-4)` µs (the layout of HDR histograms with one significant hex digit).
//! Durations of 2^42 µs (about 51 days) and more share the last bucket. So the histogram
//! is [`BUCKETS`] counters (about 5 KiB) whatever it counts, and a quantile read from it
//! is the midpoint of the bucket its rank falls in: within half a bucket's width, at most
//! 1/32 (3.1 %) of the true value above 16 µs, and clamped to the smallest and largest
//! duration seen, which are kept exactly (as are the count and the sum, so the mean is
//! exact).

/// Sub-buckets per power of two (and the exact buckets below 16 µs).
const SUB: u64 = 16;
/// The largest power of two with buckets of its own: 2^42 µs, about 51 days.
const TOP: u32 = 42;
/// How many buckets a histogram holds.
pub(crate) const BUCKETS: usize = (SUB as usize) * (TOP as usize - 3) + SUB as usize;

/// Counts of durations by bucket, with their exact count, sum, minimum and maximum.
#[derive(Clone)]
pub(crate) struct LogHistogram {
    counts: Box<[u64; BUCKETS]>,
    count: u64,
    sum_micros: u128,
    min_micros: u64,
    max_micros: u64,
}

impl std::fmt::Debug for LogHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogHistogram")
            .field("count", &self.count)
            .field("min_micros", &self.min_micros)
            .field("max_micros", &self.max_micros)
            .finish_non_exhaustive()
    }
}

impl Default for LogHistogram {
    fn default() -> Self {
        Self {
            counts: Box::new([0; BUCKETS]),
            count: 0,
            sum_micros: 0,
            min_micros: u64::MAX,
            max_micros: 0,
        }
    }
}

/// The bucket of `micros`.
fn bucket(micros: u64) -> usize {
    if micros < SUB {
        return micros as usize;
    }
    // e >= 4 here: micros >= 16.
    let e = 63 - micros.leading_zeros();
    if e > TOP {
        return BUCKETS - 1;
    }
    let sub = (micros >> (e - 4)) & (SUB - 1);
    (SUB as usize) * (e as usize - 3) + sub as usize
}

/// The lowest duration of bucket `index` and its width, in microseconds.
fn bounds(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < SUB {
        return (index, 1);
    }
    let e = index / SUB + 3;
    let sub = index % SUB;
    let width = 1u64 << (e - 4);
    ((SUB + sub) * width, width)
}

impl LogHistogram {
    /// Counts one duration of `micros` microseconds.
    pub(crate) fn record(&mut self, micros: u64) {
        if let Some(slot) = self.counts.get_mut(bucket(micros)) {
            *slot = slot.saturating_add(1);
        }
        self.count = self.count.saturating_add(1);
        self.sum_micros = self.sum_micros.saturating_add(u128::from(micros));
        self.min_micros = self.min_micros.min(micros);
        self.max_micros = self.max_micros.max(micros);
    }

    /// Adds `other`'s counts to these.
    pub(crate) fn absorb(&mut self, other: &Self) {
        for (ours, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *ours = ours.saturating_add(*theirs);
        }
        self.count = self.count.saturating_add(other.count);
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
        self.min_micros = self.min_micros.min(other.min_micros);
        self.max_micros = self.max_micros.max(other.max_micros);
    }

    /// How many durations were counted.
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// The mean, in microseconds (`None` when empty).
    pub(crate) fn mean(&self) -> Option<f64> {
        #[allow(clippy::cast_precision_loss)]
        (self.count > 0).then(|| self.sum_micros as f64 / self.count as f64)
    }

    /// The smallest and largest durations counted, exactly (`None` when empty).
    pub(crate) fn range(&self) -> Option<(u64, u64)> {
        (self.count > 0).then_some((self.min_micros, self.max_micros))
    }

    /// The `q` quantile (0 < q ≤ 1) by nearest rank, in microseconds: the midpoint of
    /// the bucket holding the `ceil(q × count)`-th smallest duration, clamped to the
    /// range seen. `None` when empty.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        let (min, max) = self.range()?;
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (index, &count) in self.counts.iter().enumerate() {
            seen = seen.saturating_add(count);
            if seen >= rank {
                let (low, width) = bounds(index);
                #[allow(clippy::cast_precision_loss)]
                let mid = low as f64 + width as f64 / 2.0;
                #[allow(clippy::cast_precision_loss)]
                return Some(mid.clamp(min as f64, max as f64));
            }
        }
        #[allow(clippy::cast_precision_loss)]
        Some(max as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_duration_falls_in_the_bucket_whose_bounds_hold_it() {
        for micros in (0..5_000).chain([1 << 20, (1 << 20) + 12_345, (1 << 42) - 1]) {
            let (low, width) = bounds(bucket(micros));
            assert!(low <= micros && micros < low + width, "{micros}");
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket(1 << 43), BUCKETS - 1);
        assert_eq!(bounds(BUCKETS - 1), (31 << 38, 1 << 38));
    }

    #[test]
    fn a_bucket_is_at_most_a_sixteenth_of_its_lowest_duration() {
        for index in SUB as usize..BUCKETS {
            let (low, width) = bounds(index);
            assert!(width * 16 <= low, "bucket {index}: [{low}, +{width})");
        }
    }

    #[test]
    fn quantiles_are_the_midpoints_of_the_nearest_rank_buckets() {
        // 1, 2, …, 100 seconds.
        let mut histogram = LogHistogram::default();
        for seconds in 1..=100u64 {
            histogram.record(seconds * 1_000_000);
        }
        // Nearest rank: p50 is the 50th value (50 s), p95 the 95th, p99 the 99th.
        // 50 s = 50,000,000 µs lies in [2^25, 2^26) µs, whose buckets are 2^21 =
        // 2,097,152 µs wide; 50,000,000 / 2,097,152 = 23.8, so its bucket starts at
        // 23 × 2,097,152 = 48,234,496 µs, and its midpoint is 49,283,072 µs.
        assert_eq!(histogram.quantile(0.50), Some(49_283_072.0));
        // 95 s and 99 s lie in [2^26, 2^27), buckets 4,194,304 µs wide: 95,000,000 /
        // 4,194,304 = 22.6 → [92,274,688, 96,468,992), midpoint 94,371,840;
        // 99,000,000 / 4,194,304 = 23.6 → [96,468,992, 100,663,296), midpoint
        // 98,566,144.
        assert_eq!(histogram.quantile(0.95), Some(94_371_840.0));
        assert_eq!(histogram.quantile(0.99), Some(98_566_144.0));
        // The mean is exact: 5,050 s / 100.
        assert_eq!(histogram.mean(), Some(50_500_000.0));
        assert_eq!(histogram.range(), Some((1_000_000, 100_000_000)));
        // Each estimate is within 1/32 of the true value.
        for (q, exact) in [(0.50, 50e6), (0.95, 95e6), (0.99, 99e6)] {
            let estimate = histogram.quantile(q).unwrap();
            assert!((estimate - exact).abs() <= exact / 32.0, "{q}: {estimate}");
        }
    }

    #[test]
    fn quantiles_are_clamped_to_the_durations_seen() {
        let mut histogram = LogHistogram::default();
        histogram.record(1_000);
        // One duration: every quantile is it, not its bucket's midpoint.
        assert_eq!(histogram.quantile(0.5), Some(1_000.0));
        assert_eq!(histogram.quantile(0.99), Some(1_000.0));
        // Small durations are exact: 3, 5, 7 µs; p50 is the 2nd (5), p99 the 3rd (7).
        let mut small = LogHistogram::default();
        for micros in [7, 3, 5] {
            small.record(micros);
        }
        assert_eq!(small.quantile(0.5), Some(5.5));
        assert_eq!(small.quantile(0.99), Some(7.0));
        assert_eq!(small.quantile(0.01), Some(3.5));
    }

    #[test]
    fn an_empty_histogram_has_no_statistics() {
        let histogram = LogHistogram::default();
        assert_eq!(histogram.quantile(0.5), None);
        assert_eq!(histogram.mean(), None);
        assert_eq!(histogram.count(), 0);
    }
}
