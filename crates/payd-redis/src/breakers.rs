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
use payd_ports::{BreakerBus, LedgerError};
use tokio::sync::watch;

use crate::{Redis, answered, failed};

/// First pause before listening again after a lost subscription, doubled per failure.
const RELISTEN_BASE: Duration = Duration::from_millis(100);
const RELISTEN_CAP: Duration = Duration::from_secs(2);

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
    /// lost connection, with a capped backoff.
    pub async fn listen(
        self: Arc<Self>,
        instance: Arc<str>,
        on_trip: impl Fn(Processor) + Send + Sync + 'static,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut failures = 0_u32;
        loop {
            let error = match self.redis.client().get_async_pubsub().await {
                Ok(mut pubsub) => match pubsub.subscribe(&self.channel).await {
                    Ok(()) => {
                        failures = 0;
                        let mut messages = pubsub.on_message();
                        loop {
                            tokio::select! {
                                message = messages.next() => match message {
                                    Some(message) => {
                                        let text = String::from_utf8_lossy(message.get_payload_bytes());
                                        match parse(&text) {
                                            Some((processor, from)) if from != &*instance => on_trip(processor),
                                            Some(_) => {}
                                            None => tracing::warn!(message = %text, "Unreadable breaker announcement; ignored."),
                                        }
                                    }
                                    None => break,
                                },
                                _ = shutdown.wait_for(|stop| *stop) => return,
                            }
                        }
                        None
                    }
                    Err(error) => Some(error),
                },
                Err(error) => Some(error),
            };
            if let Some(error) = error {
                failed("breaker_listen", &error);
            } else {
                tracing::warn!("Lost the breaker subscription on Redis; subscribing again.");
            }
            failures = failures.saturating_add(1);
            let pause = RELISTEN_BASE
                .saturating_mul(1 << failures.saturating_sub(1).min(10))
                .min(RELISTEN_CAP);
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }
}

#[async_trait]
impl BreakerBus for RedisBreakers {
    async fn announce(&self, processor: Processor, instance: &str) -> Result<(), LedgerError> {
        let message = format!("{} {instance}", processor.as_str());
        let published: Result<i64, _> = match self.redis.connection().await {
            Ok(mut connection) => {
                redis::cmd("PUBLISH")
                    .arg(&self.channel)
                    .arg(message)
                    .query_async(&mut connection)
                    .await
            }
            Err(error) => Err(error),
        };
        match published {
            Ok(_) => {
                answered();
                Ok(())
            }
            Err(error) => {
                failed("breaker_announce", &error);
                Err(LedgerError::unavailable(format!(
                    "announcing an opened breaker: {error}"
                )))
            }
        }
    }
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
