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

/// FNV-1a of a string: a stable 64-bit name for what a request is about.
pub fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Draws decided by what a request is about and how many times the same request came
/// before, never by when it arrives: the same scenario meets the same faults whatever
/// the client's concurrency, so a failing seed replays exactly.
#[derive(Debug, Default)]
pub struct IdentityDraws {
    attempts: std::sync::Mutex<std::collections::HashMap<u64, u64>>,
}

impl IdentityDraws {
    /// The draw, uniform in [0, 1), for the next attempt of the request `identity`.
    pub fn draw(&self, seed: u64, identity: &str) -> f64 {
        let key = fnv1a(identity);
        let attempt = {
            let mut attempts = self.attempts.lock().expect("draws lock poisoned");
            let n = attempts.entry(key).or_default();
            *n += 1;
            *n - 1
        };
        unit(seed ^ key, attempt)
    }
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

    #[test]
    fn identity_draws_depend_on_the_request_and_its_attempt_not_on_arrival() {
        let a = IdentityDraws::default();
        let first = [a.draw(7, "x"), a.draw(7, "y"), a.draw(7, "x")];
        let b = IdentityDraws::default();
        // The other order: y, x, x.
        let (y, x0, x1) = (b.draw(7, "y"), b.draw(7, "x"), b.draw(7, "x"));
        assert_eq!([x0, y, x1], first);
        assert_ne!(first[0], first[2], "a retry is a new draw");
    }
}
