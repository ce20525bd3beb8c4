//! [`RedisBreakers`]: the processes' circuit breakers told to each other over Redis
//! pub/sub ([`payd_ports::BreakerBus`]).
//!
//! One channel per deployment, `<prefix>breakers`; a message is `<processor> <instance>`
//! (`default w-a`). Pub/sub keeps nothing: a process that is not listening at that moment
//! (Redis down, reconnecting) misses the message and finds out by its own calls, as it
//! would without Redis. That is the right trade for something that lives half a second.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use payd_domain::gateway::Processor;
use payd_domain::gateway::backoff::Backoff;
use payd_ports::{BreakerBus, LedgerError};
use tokio::sync::watch;

use crate::{CONNECT_TIMEOUT, Redis, answered};

/// Pauses before subscribing again after a lost subscription: 100 ms, doubled per failure
/// up to 2 s.
const RELISTEN: Backoff = Backoff {
    base_ms: 100,
    cap_ms: 2_000,
    jitter_percent: 0,
};
/// How often a subscription checks that its server still answers (a host that vanished
/// without a reset would otherwise leave it silently deaf).
const PING_INTERVAL: Duration = Duration::from_secs(5);

/// The breaker bus on Redis.
pub struct RedisBreakers {
    redis: Arc<Redis>,
    channel: String,
}

impl RedisBreakers {
    /// The bus of the deployment under `redis`'s prefix.
    pub fn new(redis: Arc<Redis>) -> RedisBreakers {
        let channel = redis.key("breakers");
        RedisBreakers { redis, channel }
    }

    /// Until `shutdown`: hands every processor another process announced to `on_trip`
    /// (announcements of `instance`, this process, are skipped). Subscribes again after a
    /// lost subscription, with a capped backoff; a subscription whose server stops
    /// answering its pings counts as lost.
    pub async fn listen(
        self: Arc<Self>,
        instance: Arc<str>,
        on_trip: impl Fn(Processor) + Send + Sync + 'static,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut failures = 0_u32;
        loop {
            match self
                .subscription(&instance, &on_trip, &mut shutdown, &mut failures)
                .await
            {
                Ok(()) => return,
                Err(error) => {
                    metrics::gauge!("payd_breaker_listening").set(0.0);
                    metrics::counter!("payd_redis_errors_total", "operation" => "breaker_listen")
                        .increment(1);
                    metrics::gauge!("payd_broker_up", "broker" => "redis").set(0.0);
                    tracing::warn!(%error, "Not subscribed to the breakers' announcements on Redis; \
                        each process finds failing processors by its own calls meanwhile.");
                }
            }
            failures = failures.saturating_add(1);
            let pause = Duration::from_millis(RELISTEN.delay_ms(failures.saturating_sub(1), 0));
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// One subscription's life: `Ok` at shutdown, why it ended otherwise.
    async fn subscription(
        &self,
        instance: &str,
        on_trip: &(impl Fn(Processor) + Send + Sync),
        shutdown: &mut watch::Receiver<bool>,
        failures: &mut u32,
    ) -> Result<(), String> {
        let pubsub = tokio::time::timeout(CONNECT_TIMEOUT, self.redis.client().get_async_pubsub())
            .await
            .map_err(|_| "connecting timed out".to_owned())?
            .map_err(|error| error.to_string())?;
        let (mut sink, mut messages) = pubsub.split();
        tokio::time::timeout(CONNECT_TIMEOUT, sink.subscribe(&self.channel))
            .await
            .map_err(|_| "subscribing timed out".to_owned())?
            .map_err(|error| error.to_string())?;
        *failures = 0;
        answered();
        metrics::gauge!("payd_breaker_listening").set(1.0);
        let mut ping = tokio::time::interval(PING_INTERVAL);
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else {
                        return Err("the subscription closed".to_owned());
                    };
                    let text = String::from_utf8_lossy(message.get_payload_bytes());
                    match parse(&text) {
                        Some((processor, from)) if from != instance => on_trip(processor),
                        Some(_) => {}
                        None => tracing::warn!(message = %text, "Unreadable breaker announcement; ignored."),
                    }
                }
                _ = ping.tick() => {
                    tokio::time::timeout(CONNECT_TIMEOUT, sink.ping::<()>())
                        .await
                        .map_err(|_| "a ping went unanswered".to_owned())?
                        .map_err(|error| error.to_string())?;
                }
                () = stopped(shutdown) => return Ok(()),
            }
        }
    }
}

#[async_trait]
impl BreakerBus for RedisBreakers {
    async fn announce(&self, processor: Processor, instance: &str) -> Result<(), LedgerError> {
        let message = format!("{} {instance}", processor.as_str());
        // Twice at most: the first command on a connection that Redis dropped (a restart
        // since this process last used it) fails and makes the manager reconnect; an
        // opening is announced once, so it is worth the second try.
        let mut last_error = None;
        for _ in 0..2 {
            let published: Result<i64, _> = match self.redis.connection().await {
                Ok(mut connection) => {
                    redis::cmd("PUBLISH")
                        .arg(&self.channel)
                        .arg(&message)
                        .query_async(&mut connection)
                        .await
                }
                Err(error) => Err(error),
            };
            match published {
                Ok(_) => {
                    answered();
                    return Ok(());
                }
                Err(error) => {
                    metrics::counter!("payd_redis_errors_total", "operation" => "breaker_announce")
                        .increment(1);
                    last_error = Some(error);
                }
            }
        }
        metrics::gauge!("payd_broker_up", "broker" => "redis").set(0.0);
        let error = last_error.map_or_else(String::new, |error| error.to_string());
        Err(LedgerError::unavailable(format!(
            "announcing an opened breaker: {error}"
        )))
    }
}

/// Resolves once `shutdown` turns true, holding no borrow of it across the wait (so that
/// the `select!` that awaits it stays `Send`).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// `default w-a` → (`Default`, `w-a`).
fn parse(message: &str) -> Option<(Processor, &str)> {
    let (processor, instance) = message.split_once(' ')?;
    let processor = match processor {
        "default" => Processor::Default,
        "fallback" => Processor::Fallback,
        _ => return None,
    };
    (!instance.is_empty()).then_some((processor, instance))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: an announcement is read back exactly, and anything else on the channel is
    /// refused rather than misread as a trip.
    #[test]
    fn announcements_parse_and_garbage_is_refused() {
        assert_eq!(parse("default w-a"), Some((Processor::Default, "w-a")));
        assert_eq!(
            parse("fallback api 2"),
            Some((Processor::Fallback, "api 2"))
        );
        for garbage in ["", "default", "default ", "other w-a", " w-a"] {
            assert_eq!(parse(garbage), None, "{garbage:?}");
        }
    }
}
