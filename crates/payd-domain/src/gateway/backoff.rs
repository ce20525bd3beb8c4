//! Capped exponential backoff with jitter.

/// Backoff settings. `delay(attempt)` grows as `base * 2^attempt`, capped at `cap`, then
/// scaled down by up to `jitter_percent` so that retries of many payments spread out
/// instead of arriving as one storm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry, in ms.
    pub base_ms: u64,
    /// Largest delay, in ms.
    pub cap_ms: u64,
    /// How much of the delay is randomized away, 0..=100.
    pub jitter_percent: u8,
}

impl Backoff {
    /// The delay before retry number `attempt` (0 = first retry), in ms. `random` is any
    /// `u32` from the caller's RNG (the domain has none); the result is in
    /// `[d * (100 - jitter) / 100, d]` where `d = min(cap, base * 2^attempt)`.
    pub fn delay_ms(&self, attempt: u32, random: u32) -> u64 {
        let exponential = self.base_ms.saturating_mul(1u64 << attempt.min(32));
        let full = exponential.min(self.cap_ms);
        let jitter = u64::from(self.jitter_percent.min(100));
        let span = full * jitter / 100;
        if span == 0 {
            return full;
        }
        full - u64::from(random) % (span + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const B: Backoff = Backoff {
        base_ms: 100,
        cap_ms: 5_000,
        jitter_percent: 50,
    };

    #[test]
    fn grows_then_caps() {
        let exact = Backoff {
            jitter_percent: 0,
            ..B
        };
        let delays: Vec<u64> = (0..8).map(|a| exact.delay_ms(a, 12345)).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(
            exact.delay_ms(u32::MAX, 0),
            5000,
            "no overflow on huge attempts"
        );
    }

    proptest! {
        #[test]
        fn jitter_stays_within_bounds(attempt in 0u32..100, random in any::<u32>()) {
            let d = B.delay_ms(attempt, random);
            let full = (100u64.saturating_mul(1 << attempt.min(32))).min(5_000);
            prop_assert!(d <= full && d >= full / 2, "{d} not in [{}, {full}]", full / 2);
        }
    }
}
