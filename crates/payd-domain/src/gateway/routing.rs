//! The routing policy: which processor a payment that is free to go anywhere is sent to.
//!
//! Fees make the default processor the right answer whenever it can do the job. The
//! fallback is chosen for a new attempt only when the default is unusable (breaker open,
//! or its health endpoint says it is failing), or when it is so slow that the backlog would
//! not drain within `drain_target_ms` while the fallback is usable and clearly faster. When
//! neither is usable, payments wait in the queue (the caller backs off), never spin.
//!
//! Payments whose outcome at a processor is unknown are not routed here: they stay bound to
//! that processor (see [`super::payment`]).

use super::Processor;
use super::breaker::Admission;

/// What the engine knows about one processor right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessorView {
    /// The breaker's admission at this instant.
    pub admission: Admission,
    /// The health endpoint's last `failing` flag (false when unknown or stale).
    pub reported_failing: bool,
    /// The health endpoint's last `minResponseTime`, in ms (0 when unknown).
    pub reported_min_response_ms: u64,
    /// Observed latency of recent successful calls (e.g. a p90), in ms (0 when none yet).
    pub observed_latency_ms: u64,
    /// Concurrency available for this processor (its in-flight bound).
    pub in_flight_max: u32,
}

impl ProcessorView {
    /// Whether a call may go there at all.
    pub fn usable(&self) -> bool {
        self.admission != Admission::Refused && !self.reported_failing
    }

    /// The latency to plan with: the worse of what it reports and what we observe.
    pub fn expected_latency_ms(&self) -> u64 {
        self.reported_min_response_ms.max(self.observed_latency_ms)
    }

    /// How long draining `backlog` payments would take at full concurrency, in ms.
    pub fn drain_ms(&self, backlog: u64) -> u64 {
        let per_call_ms = self.expected_latency_ms().max(1);
        let waves = backlog.div_ceil(u64::from(self.in_flight_max.max(1)));
        waves.saturating_mul(per_call_ms)
    }
}

/// Routing thresholds (all configurable at the command line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoutingPolicy {
    /// A default that would need longer than this to drain the backlog is "too slow".
    pub drain_target_ms: u64,
    /// The fallback must be at least this many times faster to be worth its fee when the
    /// default is merely slow.
    pub fallback_speedup_min: u64,
}

impl Default for RoutingPolicy {
    fn default() -> RoutingPolicy {
        RoutingPolicy {
            drain_target_ms: 2_000,
            fallback_speedup_min: 3,
        }
    }
}

/// Where to send the next attempt of a free payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Send it to this processor.
    Send(Processor),
    /// Neither processor is usable: keep it queued and retry later.
    Hold,
}

/// Chooses a processor for a payment that is free to go anywhere, given `backlog` payments
/// waiting in total.
pub fn route(
    default: &ProcessorView,
    fallback: &ProcessorView,
    backlog: u64,
    policy: &RoutingPolicy,
) -> Route {
    match (default.usable(), fallback.usable()) {
        (false, false) => Route::Hold,
        (false, true) => Route::Send(Processor::Fallback),
        (true, false) => Route::Send(Processor::Default),
        (true, true) => {
            let default_too_slow = default.drain_ms(backlog) > policy.drain_target_ms;
            let fallback_much_faster = fallback
                .expected_latency_ms()
                .saturating_mul(policy.fallback_speedup_min)
                < default.expected_latency_ms();
            if default_too_slow && fallback_much_faster {
                Route::Send(Processor::Fallback)
            } else {
                Route::Send(Processor::Default)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn view(admission: Admission, failing: bool, latency_ms: u64) -> ProcessorView {
        ProcessorView {
            admission,
            reported_failing: failing,
            reported_min_response_ms: 0,
            observed_latency_ms: latency_ms,
            in_flight_max: 100,
        }
    }

    const P: RoutingPolicy = RoutingPolicy {
        drain_target_ms: 2_000,
        fallback_speedup_min: 3,
    };

    #[test]
    fn healthy_default_always_wins() {
        let d = view(Admission::Open, false, 10);
        let f = view(Admission::Open, false, 1);
        // 10,000 payments / 100 in flight × 10 ms = 1 s: drains within the 2 s target.
        assert_eq!(
            route(&d, &f, 10_000, &P),
            Route::Send(Processor::Default),
            "fast enough"
        );
        assert_eq!(route(&d, &f, 0, &P), Route::Send(Processor::Default));
    }

    #[test]
    fn failing_or_open_default_goes_to_fallback() {
        let f = view(Admission::Open, false, 10);
        assert_eq!(
            route(&view(Admission::Refused, false, 10), &f, 1, &P),
            Route::Send(Processor::Fallback)
        );
        assert_eq!(
            route(&view(Admission::Open, true, 10), &f, 1, &P),
            Route::Send(Processor::Fallback)
        );
    }

    #[test]
    fn slow_default_that_cannot_drain_goes_to_a_much_faster_fallback() {
        let slow = view(Admission::Open, false, 1_000);
        let fast = view(Admission::Open, false, 10);
        // 1000 payments / 100 in flight = 10 waves of 1 s: too slow for a 2 s target.
        assert_eq!(
            route(&slow, &fast, 1_000, &P),
            Route::Send(Processor::Fallback)
        );
        // A small backlog still drains in time on the slow default: keep the cheap one.
        assert_eq!(
            route(&slow, &fast, 100, &P),
            Route::Send(Processor::Default)
        );
        // A fallback that is about as slow is not worth its fee.
        assert_eq!(
            route(&slow, &view(Admission::Open, false, 800), 1_000, &P),
            Route::Send(Processor::Default)
        );
    }

    #[test]
    fn both_down_holds() {
        let down = view(Admission::Refused, false, 0);
        let failing = view(Admission::Open, true, 0);
        assert_eq!(route(&down, &failing, 5, &P), Route::Hold);
    }

    #[test]
    fn probe_admission_counts_as_usable() {
        let probing = view(Admission::Probe, false, 10);
        assert_eq!(
            route(&probing, &view(Admission::Refused, false, 0), 1, &P),
            Route::Send(Processor::Default)
        );
    }

    proptest! {
        /// Never the fallback while the default is usable and can drain the backlog in time.
        #[test]
        fn never_fallback_when_default_healthy_and_fast(
            latency in 0u64..200, backlog in 0u64..2_000, f_latency in 0u64..5_000, f_failing: bool,
        ) {
            let d = view(Admission::Open, false, latency);
            let f = view(Admission::Open, f_failing, f_latency);
            prop_assume!(d.drain_ms(backlog) <= P.drain_target_ms);
            prop_assert_eq!(route(&d, &f, backlog, &P), Route::Send(Processor::Default));
        }

        /// Never a processor that is refused or reported failing.
        #[test]
        fn never_an_unusable_processor(
            d_adm in 0u8..3, f_adm in 0u8..3, d_fail: bool, f_fail: bool,
            d_lat in 0u64..5_000, f_lat in 0u64..5_000, backlog in 0u64..100_000,
        ) {
            let adm = |n| [Admission::Open, Admission::Probe, Admission::Refused][usize::from(n)];
            let d = view(adm(d_adm), d_fail, d_lat);
            let f = view(adm(f_adm), f_fail, f_lat);
            match route(&d, &f, backlog, &P) {
                Route::Send(Processor::Default) => prop_assert!(d.usable()),
                Route::Send(Processor::Fallback) => prop_assert!(f.usable()),
                Route::Hold => prop_assert!(!d.usable() && !f.usable()),
            }
        }
    }
}
