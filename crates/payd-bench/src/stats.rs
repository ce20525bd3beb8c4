//! Latency quantiles over every sample (no sketch: a run has at most some 100,000).

/// p50, p99 and the maximum of a set of latencies, in ms.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Quantiles {
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

impl Quantiles {
    /// Of latencies in µs (sorted here), by nearest rank; all zero if there are none.
    pub(crate) fn of(mut latencies_us: Vec<u32>) -> Quantiles {
        latencies_us.sort_unstable();
        let at = |q: f64| -> f64 {
            if latencies_us.is_empty() {
                return 0.0;
            }
            // Nearest rank: the smallest sample with at least q of them at or below it.
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let rank = ((q * latencies_us.len() as f64).ceil() as usize).max(1);
            f64::from(latencies_us[rank.min(latencies_us.len()) - 1]) / 1_000.0
        };
        Quantiles {
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Quantiles;

    #[test]
    fn nearest_rank_of_one_to_a_hundred_ms() {
        let samples: Vec<u32> = (1..=100).rev().map(|ms| ms * 1_000).collect();
        let q = Quantiles::of(samples);
        assert_eq!((q.p50_ms, q.p99_ms, q.max_ms), (50.0, 99.0, 100.0));
    }

    #[test]
    fn one_slow_request_in_a_hundred_is_the_p99_only_past_a_hundred() {
        let mut samples = vec![500; 99];
        samples.push(9_000);
        assert_eq!(Quantiles::of(samples.clone()).p99_ms, 0.5);
        samples.push(9_000);
        assert_eq!(Quantiles::of(samples).p99_ms, 9.0);
    }

    #[test]
    fn no_samples_is_all_zero() {
        assert_eq!(Quantiles::of(Vec::new()), Quantiles::default());
    }
}
