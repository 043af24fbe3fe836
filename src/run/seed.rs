//! Seeds of independent random streams, derived from a run's seed: stable across
//! platforms and releases, so the same seed makes the same choices everywhere.

/// A seed for `text` derived from `seed` (FNV-1a over the text's bytes).
pub(crate) fn mix(seed: u64, text: &str) -> u64 {
    text.bytes()
        .fold(seed ^ 0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// SplitMix64's finaliser: spreads the bits of `x` (seeds for independent streams).
pub(crate) fn spread(x: u64) -> u64 {
    let x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_mix_deterministically() {
        assert_eq!(mix(7, "run-1"), mix(7, "run-1"));
        assert_ne!(mix(7, "run-1"), mix(7, "run-2"));
        assert_ne!(mix(7, "run-1"), mix(8, "run-1"));
        // FNV-1a of the empty text is its offset basis.
        assert_eq!(mix(0, ""), 0xcbf2_9ce4_8422_2325);
    }

    #[test]
    fn spreading_separates_neighbouring_seeds() {
        assert_eq!(spread(0), 0);
        assert_ne!(spread(1), spread(2));
        assert!((spread(1) ^ spread(2)).count_ones() > 16);
    }
}
