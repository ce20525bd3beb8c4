//! The gateway's settings. Every bound is explicit (put a limit on everything).

use payd_domain::gateway::backoff::Backoff;
use payd_domain::gateway::breaker::BreakerConfig;
use payd_domain::gateway::routing::RoutingPolicy;

/// Settings of [`crate::Gateway`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Most calls in flight per processor (also what routing assumes it can use).
    pub in_flight_max: u32,
    /// Most due payments read per worker step, and so most transitions the step commits in
    /// one store command. Intake waits behind that command: with 512, draining a backlog
    /// after an outage put `POST /payments` p99 at 15 ms in the recovery phase of
    /// `bench/gateway.sh`; with 64, 7.3-7.6 ms (and the drain took 2.3 s instead of 3.9 s).
    /// Recovery after a restart reads more than this when it must (`Gateway::recover`).
    pub batch_max: u32,
    /// How long the worker lets newly accepted payments, and the outcomes of finished calls,
    /// gather before it commits their transitions together, in ms. Every commit is a sync
    /// that intake may have to wait behind: at 600 payments/s, 0 makes about three commits
    /// per payment (intake, lease, outcome), each alone. Costs each payment up to this much
    /// before its call and again after it.
    pub coalesce_ms: u64,
    /// How long a worker's claim on a payment lasts; longer than any call's timeout, so a
    /// live worker's lease never runs out mid-call. In ms.
    pub lease_ms: i64,
    /// Backoff of rejected payments (per payment, by attempt) and of a held queue.
    pub backoff: Backoff,
    /// How soon an unknown outcome is looked at again, in ms.
    pub recheck_ms: i64,
    /// After this long since the last uncertain call, a `404` from the processor proves the
    /// payment was not booked (the processor's delay has passed), in ms.
    pub settle_ms: i64,
    /// Sleep of an idle worker between polls of the queue (intake also wakes it), in ms.
    pub idle_poll_ms: u64,
    /// How overdue a new payment (never sent yet) must be before the poll (the sweep)
    /// takes it, in ms. 0 without a work transport. With one (RabbitMQ), its message
    /// brings it to one worker, and the sweep leaves it to that worker this long, so
    /// workers do not race for the same rows; the sweep still takes at once what no
    /// message brings (retries, expired leases, unknown outcomes), and a new payment whose
    /// message is late or was lost once it is this overdue.
    pub sweep_grace_ms: i64,
    /// Interval between two health polls of one processor, in ms; the processors allow
    /// one call per 5 s.
    pub health_interval_ms: u64,
    /// Breaker thresholds.
    pub breaker: BreakerConfig,
    /// Routing thresholds.
    pub routing: RoutingPolicy,
}

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            in_flight_max: 256,
            batch_max: 64,
            coalesce_ms: 5,
            lease_ms: 30_000,
            backoff: Backoff {
                base_ms: 100,
                cap_ms: 2_000,
                jitter_percent: 50,
            },
            recheck_ms: 1_000,
            settle_ms: 15_000,
            idle_poll_ms: 50,
            sweep_grace_ms: 0,
            health_interval_ms: 5_000,
            breaker: BreakerConfig::default(),
            routing: RoutingPolicy::default(),
        }
    }
}
