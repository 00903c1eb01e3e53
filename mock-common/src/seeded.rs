//! Seeded randomness for the fakes: SplitMix64, small and stable across versions and
//! machines, so the same seed gives the same bytes and the same faults everywhere.

/// The next SplitMix64 output; advances `state`.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `n`-th draw of `seed`, uniform in [0, 1). Draws are independent of each other, so
/// a server can number its requests and decide each one's fault on its own.
pub fn unit(seed: u64, n: u64) -> f64 {
    let mut state = seed ^ n.wrapping_mul(0xD1B5_4A32_D192_ED03);
    (splitmix64(&mut state) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_stable_and_spread() {
        // Pinned values: changing them changes every recorded scenario's faults.
        let mut s = 0;
        assert_eq!(splitmix64(&mut s), 0xE220_A839_7B1D_CDAF);
        let draws: Vec<f64> = (0..10_000).map(|n| unit(7, n)).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        assert_eq!(unit(7, 3), unit(7, 3));
        assert_ne!(unit(7, 3), unit(8, 3));
    }
}
