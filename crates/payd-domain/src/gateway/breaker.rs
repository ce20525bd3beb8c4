//! A circuit breaker per processor, as a pure state machine.
//!
//! Closed: calls flow; `failure_threshold` consecutive failures open it. Open: no calls
//! until `open_ms` has passed (doubling on each re-opening, capped at `open_cap_ms`).
//! Half-open: one probe at a time; `probes_to_close` successes close it, one failure
//! re-opens it. Failures are rejections (5xx/429) and unknown outcomes (timeouts, cut
//! connections); a `422` is a success (the processor answered sanely).

/// Breaker settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open a closed breaker.
    pub failure_threshold: u32,
    /// First open period, in ms.
    pub open_ms: u64,
    /// Longest open period, in ms.
    pub open_cap_ms: u64,
    /// Successful probes needed to close a half-open breaker.
    pub probes_to_close: u32,
}

impl Default for BreakerConfig {
    fn default() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 5,
            open_ms: 500,
            open_cap_ms: 5_000,
            probes_to_close: 2,
        }
    }
}

/// The breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow.
    Closed {
        /// Failures since the last success.
        consecutive_failures: u32,
    },
    /// No calls until `until_ms`.
    Open {
        /// When a probe may be tried, ms since the epoch.
        until_ms: i64,
        /// How many times it re-opened without closing (for the doubling).
        reopenings: u32,
    },
    /// Probing.
    HalfOpen {
        /// Successful probes so far.
        successes: u32,
        /// Whether a probe is out now (only one at a time).
        probe_in_flight: bool,
        /// Carried over so a failed probe re-opens for longer.
        reopenings: u32,
    },
}

/// Whether a call may go out now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Closed: any number of calls (within the in-flight bound).
    Open,
    /// Half-open: exactly one call, as a probe.
    Probe,
    /// Open (or a probe is already out): no call.
    Refused,
}

/// A circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Breaker {
    config: BreakerConfig,
    state: BreakerState,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Breaker {
        Breaker {
            config,
            state: BreakerState::Closed {
                consecutive_failures: 0,
            },
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Whether a call may go out at `now_ms` (does not change the state).
    pub fn admission(&self, now_ms: i64) -> Admission {
        match self.state {
            BreakerState::Closed { .. } => Admission::Open,
            BreakerState::Open { until_ms, .. } if now_ms >= until_ms => Admission::Probe,
            BreakerState::Open { .. } => Admission::Refused,
            BreakerState::HalfOpen {
                probe_in_flight: false,
                ..
            } => Admission::Probe,
            BreakerState::HalfOpen {
                probe_in_flight: true,
                ..
            } => Admission::Refused,
        }
    }

    /// Records that a call was sent at `now_ms` (marks the probe as out when probing).
    pub fn on_dispatch(&mut self, now_ms: i64) {
        match self.state {
            BreakerState::Open {
                until_ms,
                reopenings,
            } if now_ms >= until_ms => {
                self.state = BreakerState::HalfOpen {
                    successes: 0,
                    probe_in_flight: true,
                    reopenings,
                };
            }
            BreakerState::HalfOpen {
                successes,
                reopenings,
                ..
            } => {
                self.state = BreakerState::HalfOpen {
                    successes,
                    probe_in_flight: true,
                    reopenings,
                };
            }
            _ => {}
        }
    }

    /// Takes back a dispatch whose call never went out (its transition did not commit), so a
    /// half-open breaker does not wait forever for a probe that was never sent.
    pub fn on_cancel(&mut self) {
        if let BreakerState::HalfOpen {
            successes,
            reopenings,
            ..
        } = self.state
        {
            self.state = BreakerState::HalfOpen {
                successes,
                probe_in_flight: false,
                reopenings,
            };
        }
    }

    /// Records a sane answer (`200`/`422`, or a definite `404` on a status query).
    pub fn on_success(&mut self) {
        self.state = match self.state {
            BreakerState::HalfOpen {
                successes,
                reopenings,
                ..
            } => {
                if successes + 1 >= self.config.probes_to_close {
                    BreakerState::Closed {
                        consecutive_failures: 0,
                    }
                } else {
                    BreakerState::HalfOpen {
                        successes: successes + 1,
                        probe_in_flight: false,
                        reopenings,
                    }
                }
            }
            // A late success while open (a call sent before it opened) does not close it:
            // the probe decides.
            open @ BreakerState::Open { .. } => open,
            BreakerState::Closed { .. } => BreakerState::Closed {
                consecutive_failures: 0,
            },
        };
    }

    /// Records a failure (rejection, timeout or cut connection) observed at `now_ms`.
    pub fn on_failure(&mut self, now_ms: i64) {
        self.state = match self.state {
            BreakerState::Closed {
                consecutive_failures,
            } => {
                let failures = consecutive_failures + 1;
                if failures >= self.config.failure_threshold {
                    self.open(now_ms, 0)
                } else {
                    BreakerState::Closed {
                        consecutive_failures: failures,
                    }
                }
            }
            BreakerState::HalfOpen { reopenings, .. } => self.open(now_ms, reopenings + 1),
            open @ BreakerState::Open { .. } => open,
        };
    }

    /// Closes the breaker (the health endpoint reports the processor healthy and no call has
    /// failed since).
    pub fn reset(&mut self) {
        self.state = BreakerState::Closed {
            consecutive_failures: 0,
        };
    }

    /// Forces the breaker open (e.g. the health endpoint says the processor is failing).
    pub fn trip(&mut self, now_ms: i64) {
        if !matches!(self.state, BreakerState::Open { .. }) {
            let reopenings = match self.state {
                BreakerState::HalfOpen { reopenings, .. } => reopenings + 1,
                _ => 0,
            };
            self.state = self.open(now_ms, reopenings);
        }
    }

    fn open(&self, now_ms: i64, reopenings: u32) -> BreakerState {
        let period_ms = self
            .config
            .open_ms
            .saturating_mul(1u64 << reopenings.min(20))
            .min(self.config.open_cap_ms);
        let until_ms = now_ms.saturating_add(i64::try_from(period_ms).unwrap_or(i64::MAX));
        BreakerState::Open {
            until_ms,
            reopenings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: BreakerConfig = BreakerConfig {
        failure_threshold: 3,
        open_ms: 100,
        open_cap_ms: 400,
        probes_to_close: 2,
    };

    #[test]
    fn opens_after_consecutive_failures_only() {
        let mut b = Breaker::new(CONFIG);
        b.on_failure(0);
        b.on_failure(0);
        b.on_success();
        b.on_failure(0);
        b.on_failure(0);
        assert_eq!(
            b.admission(0),
            Admission::Open,
            "a success resets the count"
        );
        b.on_failure(10);
        assert_eq!(
            b.state(),
            BreakerState::Open {
                until_ms: 110,
                reopenings: 0
            }
        );
        assert_eq!(b.admission(109), Admission::Refused);
        assert_eq!(b.admission(110), Admission::Probe);
    }

    #[test]
    fn half_open_allows_one_probe_and_closes_after_enough_successes() {
        let mut b = Breaker::new(CONFIG);
        b.trip(0);
        b.on_dispatch(100);
        assert_eq!(b.admission(100), Admission::Refused, "one probe at a time");
        b.on_success();
        assert_eq!(b.admission(100), Admission::Probe);
        b.on_dispatch(100);
        b.on_success();
        assert_eq!(
            b.state(),
            BreakerState::Closed {
                consecutive_failures: 0
            }
        );
    }

    #[test]
    fn failed_probe_reopens_for_longer_up_to_the_cap() {
        let mut b = Breaker::new(CONFIG);
        b.trip(0);
        let mut now = 0;
        let mut periods = Vec::new();
        for _ in 0..5 {
            let BreakerState::Open { until_ms, .. } = b.state() else {
                panic!("open")
            };
            periods.push(until_ms - now);
            now = until_ms;
            b.on_dispatch(now);
            b.on_failure(now);
        }
        assert_eq!(periods, [100, 200, 400, 400, 400]);
    }

    #[test]
    fn a_cancelled_probe_frees_the_probe_slot() {
        let mut b = Breaker::new(CONFIG);
        b.trip(0);
        b.on_dispatch(100);
        assert_eq!(b.admission(100), Admission::Refused);
        b.on_cancel();
        assert_eq!(b.admission(100), Admission::Probe);
    }

    #[test]
    fn reset_closes_from_any_state() {
        let mut b = Breaker::new(CONFIG);
        b.trip(0);
        b.reset();
        assert_eq!(b.admission(0), Admission::Open);
    }

    #[test]
    fn late_success_does_not_close_an_open_breaker() {
        let mut b = Breaker::new(CONFIG);
        b.trip(0);
        b.on_success();
        assert!(matches!(b.state(), BreakerState::Open { .. }));
    }
}
