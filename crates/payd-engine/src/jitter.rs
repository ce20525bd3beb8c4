//! [`Jitter`]: the randomness the engine hands to the domain's backoff policies.

use std::sync::Mutex;

/// A xorshift generator, seeded from the clock. The domain takes randomness as an argument
/// (so its policies stay pure and testable); here it only spreads retries apart, so
/// statistical quality is irrelevant.
#[derive(Debug)]
pub(crate) struct Jitter(Mutex<u64>);

impl Jitter {
    /// A generator seeded with `now_ms` (any value; zero is avoided, xorshift's fixed point).
    pub(crate) fn seeded(now_ms: i64) -> Jitter {
        Jitter(Mutex::new(now_ms.unsigned_abs() | 1))
    }

    /// The next 32 random bits.
    pub(crate) fn next_u32(&self) -> u32 {
        let mut state = crate::lock(&self.0);
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        (*state >> 32) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::Jitter;

    #[test]
    fn varies_and_never_sticks_at_zero() {
        let jitter = Jitter::seeded(0);
        let draws: Vec<u32> = (0..64).map(|_| jitter.next_u32()).collect();
        let distinct: std::collections::HashSet<_> = draws.iter().collect();
        assert!(
            distinct.len() > 60,
            "{} distinct draws of 64",
            distinct.len()
        );
    }
}
