//! When each request of an open-loop load is due. Open loop: a request is sent at its due
//! time whether or not earlier ones were answered, so a slow server meets more load, not
//! less (a closed loop would hide its tail).

/// The rate ramps linearly from `start_per_s` to `peak_per_s` over `ramp_s` seconds, then
/// stays at `peak_per_s` for `hold_s` seconds (k6's `ramping-arrival-rate` with two stages).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ramp {
    pub(crate) start_per_s: f64,
    pub(crate) peak_per_s: f64,
    pub(crate) ramp_s: f64,
    pub(crate) hold_s: f64,
}

impl Ramp {
    /// Requests due during the ramp: the integral of the rate over it.
    fn ramp_total(&self) -> f64 {
        (self.start_per_s + self.peak_per_s) / 2.0 * self.ramp_s
    }

    /// When request `k` (from 0) is due, in seconds from the start; `None` once past the end.
    /// It solves "requests due by t = k" for t.
    pub(crate) fn due_s(&self, k: u64) -> Option<f64> {
        // Exact below 2^53 requests.
        #[allow(clippy::cast_precision_loss)]
        let k = k as f64;
        let (r0, r1) = (self.start_per_s, self.peak_per_s);
        let t = if k < self.ramp_total() {
            // r0 t + a t^2 = k, with a = (r1 - r0) / (2 ramp_s).
            let a = (r1 - r0) / (2.0 * self.ramp_s);
            if a.abs() < f64::EPSILON {
                k / r0
            } else {
                (-r0 + r0.mul_add(r0, 4.0 * a * k).sqrt()) / (2.0 * a)
            }
        } else {
            self.ramp_s + (k - self.ramp_total()) / r1
        };
        (t.is_finite() && t < self.ramp_s + self.hold_s).then_some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::Ramp;

    const GATEWAY: Ramp = Ramp {
        start_per_s: 1.0,
        peak_per_s: 600.0,
        ramp_s: 120.0,
        hold_s: 60.0,
    };

    fn count_due_between(ramp: &Ramp, from_s: f64, to_s: f64) -> usize {
        (0..)
            .map_while(|k| ramp.due_s(k))
            .filter(|t| (from_s..to_s).contains(t))
            .count()
    }

    #[test]
    fn the_ramp_sends_the_integral_of_its_rate() {
        // 120 s averaging 300.5/s, then 60 s at 600/s.
        let total = count_due_between(&GATEWAY, 0.0, f64::MAX);
        assert!((72_059..=72_061).contains(&total), "{total}");
    }

    #[test]
    fn the_rate_follows_the_ramp_then_holds() {
        // Around t = 60 s the rate is 300.5/s; over the last 10 s it is 600/s.
        let mid = count_due_between(&GATEWAY, 59.5, 60.5);
        assert!((299..=302).contains(&mid), "{mid}");
        let plateau = count_due_between(&GATEWAY, 170.0, 180.0);
        assert!((5_999..=6_001).contains(&plateau), "{plateau}");
    }

    #[test]
    fn due_times_only_increase_and_start_at_zero() {
        assert_eq!(GATEWAY.due_s(0), Some(0.0));
        let times: Vec<f64> = (0..).map_while(|k| GATEWAY.due_s(k)).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]));
        assert!(times.last().is_some_and(|t| *t < 180.0));
    }

    #[test]
    fn a_flat_rate_is_evenly_spaced() {
        let flat = Ramp {
            start_per_s: 100.0,
            peak_per_s: 100.0,
            ramp_s: 1.0,
            hold_s: 1.0,
        };
        assert_eq!(flat.due_s(50), Some(0.5));
        assert_eq!(flat.due_s(150), Some(1.5));
        assert_eq!(flat.due_s(200), None);
    }

    #[test]
    fn no_ramp_holds_the_peak_from_the_start() {
        let hold = Ramp {
            start_per_s: 600.0,
            peak_per_s: 600.0,
            ramp_s: 0.0,
            hold_s: 50.0,
        };
        assert_eq!(hold.due_s(0), Some(0.0));
        assert_eq!(hold.due_s(300), Some(0.5));
        assert_eq!(count_due_between(&hold, 0.0, f64::MAX), 30_000);
    }
}
