//! What the engine knows about each processor, and the poller of their health endpoints.
//!
//! Two sources feed it. Active: the processor's `GET /payments/service-health`, which may be
//! called once per 5 s per processor (all callers together), so exactly one poller per
//! processor calls it, on a fixed interval. Passive: every real call's outcome and latency,
//! which feed the circuit breaker and the latency window. Passive evidence is fresher, so a
//! success newer than a "failing" report overrides that report.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use payd_domain::gateway::Outcome;
use payd_domain::gateway::Processor;
use payd_domain::gateway::breaker::{Admission, Breaker, BreakerConfig, BreakerState};
use payd_domain::gateway::routing::ProcessorView;
use payd_ports::{
    BreakerBus, HealthBoard, HealthError, HealthReading, HealthReport, ProcessorClient,
};
use tokio::sync::watch;

use crate::Clock;

/// Latencies kept for the passive latency estimate.
const LATENCY_WINDOW: usize = 64;

/// One processor's health, shared by the workers and the poller. A `std` mutex: every
/// critical section is a few field updates with no `.await` inside.
#[derive(Debug)]
pub struct ProcessorHealth {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    breaker: Breaker,
    /// The last report of the health endpoint and when it arrived.
    report: Option<(HealthReport, i64)>,
    /// When a real call last succeeded.
    last_success_ms: i64,
    /// When a real call last failed.
    last_failure_ms: i64,
    /// Latencies of recent calls, in ms (timeouts included: they are the slowest calls).
    latencies_ms: VecDeque<u64>,
    /// Outcomes of the same recent calls, for the error and timeout rates.
    outcomes: VecDeque<Outcome>,
}

impl ProcessorHealth {
    /// A processor with a closed breaker and no observations yet.
    pub fn new(breaker: BreakerConfig) -> ProcessorHealth {
        ProcessorHealth {
            state: Mutex::new(State {
                breaker: Breaker::new(breaker),
                report: None,
                last_success_ms: i64::MIN,
                last_failure_ms: i64::MIN,
                latencies_ms: VecDeque::with_capacity(LATENCY_WINDOW),
                outcomes: VecDeque::with_capacity(LATENCY_WINDOW),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Each field is valid on its own: see `crate::lock`.
        crate::lock(&self.state)
    }

    /// The routing view at `now_ms`.
    pub fn view(&self, now_ms: i64, in_flight_max: u32) -> ProcessorView {
        let state = self.lock();
        let admission = state.breaker.admission(now_ms);
        let (reported_failing, reported_min_response_ms) = match state.report {
            // A probe is how recovery is noticed between two polls, so a failing report
            // does not stop probes; and a success newer than the report overrides it.
            Some((report, at_ms)) => (
                report.failing && at_ms > state.last_success_ms && admission != Admission::Probe,
                report.min_response_ms,
            ),
            None => (false, 0),
        };
        ProcessorView {
            admission,
            reported_failing,
            reported_min_response_ms,
            observed_latency_ms: percentile(&state.latencies_ms, 90),
            in_flight_max,
        }
    }

    /// Records that a call goes out now.
    pub fn on_dispatch(&self, now_ms: i64) {
        self.lock().breaker.on_dispatch(now_ms);
    }

    /// Takes back a dispatch whose call never went out.
    pub fn on_cancel(&self) {
        self.lock().breaker.on_cancel();
    }

    /// Records a call's outcome and latency.
    /// Whether this outcome opened a closed breaker (the moment to tell the other
    /// processes, see [`SharedHealth::breakers`]).
    pub fn on_outcome(&self, outcome: Outcome, latency_ms: u64, now_ms: i64) -> bool {
        let mut state = self.lock();
        let was_closed = matches!(state.breaker.state(), BreakerState::Closed { .. });
        if state.latencies_ms.len() == LATENCY_WINDOW {
            state.latencies_ms.pop_front();
            state.outcomes.pop_front();
        }
        state.latencies_ms.push_back(latency_ms);
        state.outcomes.push_back(outcome);
        match outcome {
            Outcome::Booked | Outcome::AlreadyBooked => {
                state.breaker.on_success();
                state.last_success_ms = now_ms;
            }
            Outcome::Rejected | Outcome::Unknown => {
                state.breaker.on_failure(now_ms);
                state.last_failure_ms = now_ms;
            }
        }
        was_closed && matches!(state.breaker.state(), BreakerState::Open { .. })
    }

    /// Another process's breaker for this processor opened on its own calls: a closed
    /// breaker here opens too (for its first period), so that the deployment stops calling
    /// a failing processor after one process's failures, not after each one's. An open or
    /// probing breaker is left alone: it already knows. Whether it opened.
    pub fn on_peer_trip(&self, now_ms: i64) -> bool {
        let mut state = self.lock();
        if !matches!(state.breaker.state(), BreakerState::Closed { .. }) {
            return false;
        }
        state.breaker.trip(now_ms);
        true
    }

    /// Passive health of the recent calls (the last 64): the share rejected (`5xx`, `429`,
    /// refused connections) and the share with an unknown outcome (timeouts, cut
    /// connections), in percent. Exported as metrics for operators; the breaker acts on
    /// consecutive failures and routing on latency.
    pub fn failure_rates_percent(&self) -> (u32, u32) {
        let state = self.lock();
        let total = state.outcomes.len();
        if total == 0 {
            return (0, 0);
        }
        let share = |wanted: Outcome| {
            let count = state.outcomes.iter().filter(|o| **o == wanted).count();
            u32::try_from(count * 100 / total).unwrap_or(100)
        };
        (share(Outcome::Rejected), share(Outcome::Unknown))
    }

    /// Records a health-endpoint report: a failing processor's breaker is opened; a healthy
    /// report with no failed call since the previous poll closes it at once, instead of
    /// waiting for probes (slowness is the routing policy's business, not the breaker's).
    /// Whether the report opened a breaker that was not open.
    pub fn on_report(&self, report: HealthReport, now_ms: i64, interval_ms: u64) -> bool {
        let mut state = self.lock();
        state.report = Some((report, now_ms));
        let interval_ms = i64::try_from(interval_ms).unwrap_or(i64::MAX);
        let was_open = matches!(state.breaker.state(), BreakerState::Open { .. });
        if report.failing {
            state.breaker.trip(now_ms);
            return !was_open;
        } else if state.last_failure_ms < now_ms.saturating_sub(interval_ms) {
            state.breaker.reset();
        }
        false
    }

    /// When the breaker will next allow a probe, if it is open.
    pub fn reopens_at_ms(&self) -> Option<i64> {
        match self.lock().breaker.state() {
            BreakerState::Open { until_ms, .. } => Some(until_ms),
            _ => None,
        }
    }

    /// The breaker's state, for metrics and `GET /payments/...` diagnostics.
    pub fn breaker_state(&self) -> BreakerState {
        self.lock().breaker.state()
    }
}

/// The `p`-th percentile of the window (0 when empty).
fn percentile(window: &VecDeque<u64>, p: usize) -> u64 {
    if window.is_empty() {
        return 0;
    }
    let mut sorted: Vec<u64> = window.iter().copied().collect();
    sorted.sort_unstable();
    let rank = (sorted.len() * p).div_ceil(100).saturating_sub(1);
    sorted[rank.min(sorted.len() - 1)]
}

/// Where a process shares what it learns of the processors: the board, the breaker bus,
/// and this process's name on them.
#[derive(Clone)]
pub struct SharedHealth {
    /// The deployment's board ([`payd_ports::SoleBoard`] for a process alone on its store).
    pub board: Arc<dyn HealthBoard>,
    /// Where this process announces that one of its breakers opened on its own calls
    /// (Redis); `None` when nothing is shared (alone, or on PostgreSQL only).
    pub breakers: Option<Arc<dyn BreakerBus>>,
    /// This process's instance id, the lease holder's name.
    pub instance: Arc<str>,
}

/// Keeps `health` up to date with `processor`'s health endpoint until `shutdown`: while
/// this process holds the processor's lease on the board it calls the endpoint every
/// `interval_ms` (never sooner after the last call anyone published) and publishes each
/// report; otherwise it applies the holder's published reports. A lease lasts two
/// intervals, renewed at every poll; a process without it looks every second, so a dead
/// holder is replaced about two intervals after its last renewal.
pub async fn poll_health(
    client: Arc<dyn ProcessorClient>,
    processor: Processor,
    health: Arc<ProcessorHealth>,
    clock: Arc<dyn Clock>,
    interval_ms: u64,
    shared: SharedHealth,
    mut shutdown: watch::Receiver<bool>,
) {
    let interval = i64::try_from(interval_ms.max(1)).unwrap_or(i64::MAX);
    let lease_ms = interval.saturating_mul(2);
    let look_ms = interval.min(1_000);
    let name = processor.as_str();
    // The last call this process made, and the newest reading it applied.
    let mut polled_ms: Option<i64> = None;
    let mut applied_ms = i64::MIN;
    let mut next_ms = clock.now_ms();
    loop {
        let wait_ms = u64::try_from(next_ms.saturating_sub(clock.now_ms())).unwrap_or(0);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let now_ms = clock.now_ms();
        let leading = match shared
            .board
            .lead(processor, &shared.instance, lease_ms)
            .await
        {
            Ok(leading) => leading,
            Err(error) => {
                // Without the board (its store unreachable) nobody can be sure to hold the
                // lease: wait, rather than risk two pollers.
                tracing::warn!(processor = name, %error, "Cannot reach the health board.");
                next_ms = now_ms.saturating_add(look_ms);
                continue;
            }
        };
        metrics::gauge!("payd_health_lease_held", "processor" => name).set(if leading {
            1.0
        } else {
            0.0
        });
        let latest = match shared.board.latest(processor).await {
            Ok(latest) => latest,
            Err(error) => {
                tracing::warn!(processor = name, %error, "Cannot read the health board.");
                None
            }
        };
        if !leading {
            if let Some(reading) = latest.filter(|reading| reading.polled_at_ms > applied_ms) {
                applied_ms = reading.polled_at_ms;
                record(
                    processor,
                    reading.report,
                    health.on_report(reading.report, now_ms, interval_ms),
                );
            }
            next_ms = now_ms.saturating_add(look_ms);
            continue;
        }
        let last_ms = latest.map(|reading| reading.polled_at_ms).max(polled_ms);
        let due_ms = last_ms.map_or(now_ms, |at| at.saturating_add(interval));
        if now_ms < due_ms {
            next_ms = due_ms;
            continue;
        }
        polled_ms = Some(now_ms);
        next_ms = now_ms.saturating_add(interval);
        match client.health(processor).await {
            Ok(report) => {
                record(
                    processor,
                    report,
                    health.on_report(report, clock.now_ms(), interval_ms),
                );
                applied_ms = now_ms;
                let reading = HealthReading {
                    report,
                    polled_at_ms: now_ms,
                };
                if let Err(error) = shared
                    .board
                    .publish(processor, &shared.instance, reading)
                    .await
                {
                    tracing::warn!(processor = name, %error, "Cannot publish a health report.");
                }
            }
            Err(HealthError::RateLimited) => {
                tracing::debug!(processor = name, "Health endpoint rate-limited this poll.");
            }
            Err(error) => tracing::warn!(processor = name, %error, "Health poll failed."),
        }
    }
}

/// The report's gauges, and whether it `opened` the breaker.
fn record(processor: Processor, report: HealthReport, opened: bool) {
    if opened {
        metrics::counter!("payd_breaker_opened_total", "processor" => processor.as_str(), "cause" => "report")
            .increment(1);
    }
    metrics::gauge!("payd_processor_reported_failing", "processor" => processor.as_str())
        .set(if report.failing { 1.0 } else { 0.0 });
    metrics::gauge!("payd_processor_reported_min_response_ms", "processor" => processor.as_str())
        .set(report.min_response_ms as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU32, Ordering};

    use async_trait::async_trait;
    use payd_domain::CorrelationId;
    use payd_ports::{LedgerError, Lookup, ProcessorPayment, TokioClock};

    /// Processors whose health endpoint says "failing" and counts its calls.
    #[derive(Default)]
    struct CountingProcessors {
        health_calls: AtomicU32,
    }

    #[async_trait]
    impl ProcessorClient for CountingProcessors {
        async fn submit(&self, _: Processor, _: &ProcessorPayment) -> Outcome {
            Outcome::Rejected
        }

        async fn lookup(&self, _: Processor, _: &CorrelationId) -> Lookup {
            Lookup::Unavailable
        }

        async fn health(&self, _: Processor) -> Result<HealthReport, HealthError> {
            self.health_calls.fetch_add(1, Ordering::SeqCst);
            Ok(report(true))
        }
    }

    /// A processor's row: the lease holder, its lease's end (ms), the last reading.
    type Row = (String, i64, Option<HealthReading>);

    /// A board in memory with the port's semantics, timed by `clock`.
    struct MemoryBoard {
        clock: Arc<dyn Clock>,
        rows: Mutex<HashMap<Processor, Row>>,
    }

    #[async_trait]
    impl HealthBoard for MemoryBoard {
        async fn lead(
            &self,
            p: Processor,
            instance: &str,
            lease_ms: i64,
        ) -> Result<bool, LedgerError> {
            let now_ms = self.clock.now_ms();
            let mut rows = self.rows.lock().unwrap();
            let row = rows
                .entry(p)
                .or_insert_with(|| (instance.to_owned(), i64::MIN, None));
            if row.0 == instance || row.1 < now_ms {
                row.0 = instance.to_owned();
                row.1 = now_ms + lease_ms;
            }
            Ok(row.0 == instance)
        }

        async fn publish(
            &self,
            p: Processor,
            instance: &str,
            reading: HealthReading,
        ) -> Result<(), LedgerError> {
            if let Some(row) = self
                .rows
                .lock()
                .unwrap()
                .get_mut(&p)
                .filter(|row| row.0 == instance)
            {
                row.2 = Some(reading);
            }
            Ok(())
        }

        async fn latest(&self, p: Processor) -> Result<Option<HealthReading>, LedgerError> {
            Ok(self.rows.lock().unwrap().get(&p).and_then(|row| row.2))
        }
    }

    /// Goal: two processes sharing a board call a processor's health endpoint as one poller
    /// would (once per interval in all), both learn every report, and when the lease holder
    /// stops the other takes over within two intervals and a second.
    #[tokio::test(start_paused = true)]
    async fn pollers_sharing_a_board_call_the_endpoint_once_per_interval() {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(1_700_000_000_000));
        let client = Arc::new(CountingProcessors::default());
        let board: Arc<dyn HealthBoard> = Arc::new(MemoryBoard {
            clock: clock.clone(),
            rows: Mutex::new(HashMap::new()),
        });
        let start = |name: &str| {
            let health = Arc::new(ProcessorHealth::new(BreakerConfig::default()));
            let (stop, stopped) = watch::channel(false);
            let shared = SharedHealth {
                board: board.clone(),
                breakers: None,
                instance: Arc::from(name),
            };
            let task = tokio::spawn(poll_health(
                client.clone(),
                Processor::Default,
                health.clone(),
                clock.clone(),
                5_000,
                shared,
                stopped,
            ));
            (health, stop, task)
        };
        let (health_a, stop_a, task_a) = start("a");
        let (health_b, _stop_b, _task_b) = start("b");
        tokio::time::sleep(Duration::from_millis(60_500)).await;
        // One call at 0 s, then one per 5 s: 13 in 60.5 s, for both processes together.
        assert_eq!(client.health_calls.load(Ordering::SeqCst), 13);
        let now_ms = clock.now_ms();
        // (Its breaker may allow a probe by now, which hides "failing"; the reported
        // response time shows the report arrived.)
        assert_eq!(
            health_a.view(now_ms, 10).reported_min_response_ms,
            100,
            "the holder applies its report"
        );
        assert_eq!(
            health_b.view(now_ms, 10).reported_min_response_ms,
            100,
            "the other applies the published one"
        );

        stop_a.send(true).unwrap();
        task_a.await.unwrap();
        let before = client.health_calls.load(Ordering::SeqCst);
        // a's lease (10 s from its last renewal) runs out; b takes over and polls on.
        tokio::time::sleep(Duration::from_millis(30_000)).await;
        let taken_over = client.health_calls.load(Ordering::SeqCst) - before;
        assert!(
            (4..=5).contains(&taken_over),
            "{taken_over} calls in the 30 s after a stopped"
        );
        let holder = board.lead(Processor::Default, "c", 10_000).await.unwrap();
        assert!(!holder, "b holds the lease now");
    }

    fn report(failing: bool) -> HealthReport {
        HealthReport {
            failing,
            min_response_ms: 100,
        }
    }

    #[test]
    fn failing_report_opens_and_a_newer_success_overrides_it() {
        let health = ProcessorHealth::new(BreakerConfig::default());
        health.on_report(report(true), 1_000, 5_000);
        let view = health.view(1_000, 10);
        assert_eq!(view.admission, Admission::Refused);
        assert!(view.reported_failing);
        // Once the open period is over, a probe may go even though the report says failing.
        let later = health.reopens_at_ms().unwrap();
        assert!(health.view(later, 10).usable());
        health.on_dispatch(later);
        health.on_outcome(Outcome::Booked, 5, later + 5);
        assert!(
            !health.view(later + 5, 10).reported_failing,
            "success newer than the report"
        );
    }

    #[test]
    fn a_healthy_report_closes_the_breaker_unless_calls_failed_recently() {
        let config = BreakerConfig {
            failure_threshold: 1,
            ..BreakerConfig::default()
        };
        let health = ProcessorHealth::new(config);
        health.on_outcome(Outcome::Rejected, 1, 10_000);
        assert_eq!(health.view(10_000, 1).admission, Admission::Refused);
        health.on_report(report(false), 12_000, 5_000);
        assert!(
            health.reopens_at_ms().is_some(),
            "failed 2 s ago: still open"
        );
        health.on_report(report(false), 16_000, 5_000);
        assert_eq!(
            health.view(16_000, 1).admission,
            Admission::Open,
            "no failure for a poll interval"
        );
    }

    /// Goal: a breaker says when its own calls opened it (once, at the opening failure, so
    /// that one announcement goes out per opening), a peer's announcement opens a closed
    /// breaker and leaves an open or probing one alone, and a peer's trip is not reported as
    /// an opening of this process's own (no echo back).
    #[test]
    fn openings_are_told_once_and_a_peer_trip_opens_only_a_closed_breaker() {
        let config = BreakerConfig {
            failure_threshold: 3,
            open_ms: 500,
            ..BreakerConfig::default()
        };
        let health = ProcessorHealth::new(config);
        let opened: Vec<bool> = (0..5)
            .map(|i| health.on_outcome(Outcome::Rejected, 1, 1_000 + i))
            .collect();
        assert_eq!(
            opened,
            [false, false, true, false, false],
            "told at the third failure only"
        );
        assert!(!health.on_peer_trip(1_010), "already open: left alone");
        assert_eq!(
            health.reopens_at_ms(),
            Some(1_502),
            "the peer did not extend it"
        );

        let peer = ProcessorHealth::new(config);
        health_is_open(&peer, false, 2_000);
        assert!(
            peer.on_peer_trip(2_000),
            "a closed breaker opens on a peer's trip"
        );
        health_is_open(&peer, true, 2_000);
        health_is_open(&peer, false, 2_500);
        // Probing after the period: a failed probe re-opens it on its own calls, which is
        // not a new opening to tell (the deployment knows already).
        peer.on_dispatch(2_500);
        assert!(!peer.on_outcome(Outcome::Rejected, 1, 2_501));
        assert!(!peer.on_peer_trip(2_502), "open again: left alone");
    }

    fn health_is_open(health: &ProcessorHealth, open: bool, now_ms: i64) {
        let refused = health.view(now_ms, 1).admission == Admission::Refused;
        assert_eq!(refused, open, "at {now_ms} ms");
    }

    #[test]
    fn error_and_timeout_rates_cover_the_recent_window() {
        let health = ProcessorHealth::new(BreakerConfig::default());
        assert_eq!(health.failure_rates_percent(), (0, 0));
        for outcome in [
            Outcome::Booked,
            Outcome::Rejected,
            Outcome::Unknown,
            Outcome::AlreadyBooked,
        ] {
            health.on_outcome(outcome, 1, 0);
        }
        assert_eq!(health.failure_rates_percent(), (25, 25));
        // The window keeps the last 64 calls: 64 successes push the failures out.
        for _ in 0..64 {
            health.on_outcome(Outcome::Booked, 1, 0);
        }
        assert_eq!(health.failure_rates_percent(), (0, 0));
    }

    #[test]
    fn latency_estimate_is_a_p90_of_recent_calls() {
        let health = ProcessorHealth::new(BreakerConfig::default());
        for latency in 1..=100 {
            health.on_outcome(Outcome::Booked, latency, 0);
        }
        // The window keeps the last 64 calls: 37..=100; their p90 is 94.
        assert_eq!(health.view(0, 1).observed_latency_ms, 94);
        assert_eq!(
            ProcessorHealth::new(BreakerConfig::default())
                .view(0, 1)
                .observed_latency_ms,
            0
        );
    }

    #[test]
    fn consecutive_failures_open_the_breaker() {
        let config = BreakerConfig {
            failure_threshold: 3,
            ..BreakerConfig::default()
        };
        let health = ProcessorHealth::new(config);
        for _ in 0..3 {
            health.on_outcome(Outcome::Rejected, 1, 10);
        }
        assert_eq!(health.view(10, 1).admission, Admission::Refused);
        assert!(health.reopens_at_ms().is_some());
    }
}
