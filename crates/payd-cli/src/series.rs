//! The counters that dashboards and alerts rely on, created at zero when a process starts.
//!
//! A Prometheus counter exists only once something increments it, and a series that does
//! not exist yet makes `rate()` and `increase()` return nothing rather than 0: an alert on
//! "a breaker opened" would first see the series at 1 and never fire, a panel would stay
//! empty. So each role starts the series of the events it can see (with the label values
//! it can give them) at zero. The names and label values are the ones the code increments;
//! `deploy/checks/promql.py` checks every dashboard and alert expression against a real
//! scrape of an api and a worker (`crates/payd-cli/tests/deploy.rs`).

use metrics::counter;
use payd_domain::gateway::{Outcome, Processor};

const QUEUES: [&str; 3] = [
    payd_amqp::PAYMENTS_QUEUE,
    payd_amqp::TRANSFERS_QUEUE,
    payd_amqp::SETTLE_QUEUE,
];

/// Starts the series of the store's writers (every role has them).
fn store() {
    counter!("payd_writer_failed_batches_total").increment(0);
    counter!("payd_writer_commits_total").increment(0);
}

/// Starts the series of PostgreSQL's own events (lock conflicts retried).
pub(crate) fn postgres() {
    counter!("payd_pg_conflict_retries_total").increment(0);
}

/// Starts the series of Redis failures for the `operations` a role sends.
fn redis(operations: &[&'static str]) {
    for &operation in operations {
        counter!("payd_redis_errors_total", "operation" => operation).increment(0);
    }
}

/// Starts the series of the API's Redis features (`--redis-url`).
pub(crate) fn api_redis() {
    redis(&[
        "decision_get",
        "decision_put",
        "lock_acquire",
        "lock_release",
    ]);
}

/// Starts the series of the engine's Redis features (`--redis-url`): shared health,
/// breaker announcements, the transfer pipeline's locks.
pub(crate) fn engine_redis() {
    redis(&[
        "health_lead",
        "health_publish",
        "health_latest",
        "breaker_announce",
        "breaker_listen",
        "lock_acquire",
        "lock_release",
    ]);
    for processor in Processor::ALL.map(Processor::as_str) {
        for direction in ["sent", "received"] {
            counter!("payd_breaker_shared_total", "processor" => processor, "direction" => direction)
                .increment(0);
        }
    }
}

/// Starts the series of the HTTP API's events.
pub(crate) fn api() {
    store();
    for code in ["00", "51", "07"] {
        counter!("payd_authorizations_total", "code" => code).increment(0);
    }
}

/// Starts the series of the background engine's events.
pub(crate) fn engine() {
    store();
    for processor in Processor::ALL.map(Processor::as_str) {
        for outcome in Outcome::ALL.map(Outcome::as_str) {
            counter!("payd_gateway_calls_total", "processor" => processor, "outcome" => outcome)
                .increment(0);
        }
        for cause in ["calls", "report", "peer"] {
            counter!("payd_breaker_opened_total", "processor" => processor, "cause" => cause)
                .increment(0);
        }
    }
    for result in ["delivered", "retrying", "gave_up"] {
        counter!("payd_webhook_attempts_total", "result" => result).increment(0);
    }
    counter!("payd_transfers_settled_total").increment(0);
    counter!("payd_holds_expired_total").increment(0);
    counter!("payd_fencing_rejections_total").increment(0);
}

/// Starts the series of the RabbitMQ transport (a worker with `--amqp-url`).
pub(crate) fn amqp() {
    counter!("payd_amqp_reconnects_total").increment(0);
    counter!("payd_outbox_published_total").increment(0);
    counter!("payd_outbox_relay_errors_total").increment(0);
    for queue in QUEUES {
        counter!("payd_amqp_redelivered_total", "queue" => queue).increment(0);
        counter!("payd_amqp_dead_lettered_total", "queue" => queue).increment(0);
    }
}
