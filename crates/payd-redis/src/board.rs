//! [`RedisBoard`]: the processors' shared health on Redis, PostgreSQL's board behind it.
//!
//! Per processor, two keys: `health:<processor>:lease` holds the poller's instance id with
//! a TTL (taken with `SET NX PX`, renewed by its holder), `health:<processor>:reading` the
//! holder's latest report. Taking and publishing are Lua scripts, so "is it still mine?"
//! and the write are one step.
//!
//! When a Redis command fails, that call goes to the fallback board instead: the
//! processes that cannot reach Redis elect their poller on PostgreSQL. While some reach
//! Redis and others do not (a partition), there can be one poller on each side, so a
//! processor's health endpoint may see two calls in one interval; it answers the second
//! with 429, which the poller takes as "no report this time", never as a failure.

use std::sync::Arc;

use async_trait::async_trait;
use payd_domain::gateway::Processor;
use payd_ports::{HealthBoard, HealthReading, HealthReport, LedgerError};
use redis::Script;

use crate::{Redis, answered, failed};

/// Takes the lease if free, renews it if it is the caller's; 1 if the caller holds it.
const LEAD: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
elseif holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

/// Stores the reading if the caller still holds the lease.
const PUBLISH: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2])
  return 1
end
return 0
";

/// The processors' health, shared on Redis.
pub struct RedisBoard {
    redis: Arc<Redis>,
    fallback: Arc<dyn HealthBoard>,
    lead: Script,
    publish: Script,
}

impl RedisBoard {
    /// A board on `redis`, with `fallback` for when Redis does not answer.
    pub fn new(redis: Arc<Redis>, fallback: Arc<dyn HealthBoard>) -> RedisBoard {
        RedisBoard {
            redis,
            fallback,
            lead: Script::new(LEAD),
            publish: Script::new(PUBLISH),
        }
    }

    fn keys(&self, processor: Processor) -> (String, String) {
        let name = processor.as_str();
        (
            self.redis.key(&format!("health:{name}:lease")),
            self.redis.key(&format!("health:{name}:reading")),
        )
    }
}

#[async_trait]
impl HealthBoard for RedisBoard {
    async fn lead(
        &self,
        processor: Processor,
        instance: &str,
        lease_ms: i64,
    ) -> Result<bool, LedgerError> {
        let (lease, _) = self.keys(processor);
        let taken: Result<i64, _> = match self.redis.connection().await {
            Ok(mut connection) => {
                self.lead
                    .key(&lease)
                    .arg(instance)
                    .arg(lease_ms.max(1))
                    .invoke_async(&mut connection)
                    .await
            }
            Err(error) => Err(error),
        };
        match taken {
            Ok(taken) => {
                answered();
                Ok(taken == 1)
            }
            Err(error) => {
                failed("health_lead", &error);
                self.fallback.lead(processor, instance, lease_ms).await
            }
        }
    }

    async fn publish(
        &self,
        processor: Processor,
        instance: &str,
        reading: HealthReading,
    ) -> Result<(), LedgerError> {
        let (lease, key) = self.keys(processor);
        let stored: Result<i64, _> = match self.redis.connection().await {
            Ok(mut connection) => {
                self.publish
                    .key(&lease)
                    .key(&key)
                    .arg(instance)
                    .arg(encode(reading))
                    .invoke_async(&mut connection)
                    .await
            }
            Err(error) => Err(error),
        };
        match stored {
            Ok(_) => {
                answered();
                Ok(())
            }
            Err(error) => {
                failed("health_publish", &error);
                self.fallback.publish(processor, instance, reading).await
            }
        }
    }

    async fn latest(&self, processor: Processor) -> Result<Option<HealthReading>, LedgerError> {
        let (_, key) = self.keys(processor);
        let value = self.redis.get(&key).await;
        match value {
            Ok(Some(value)) => {
                answered();
                if let Some(reading) = decode(&value) {
                    return Ok(Some(reading));
                }
                tracing::warn!(key, value, "Unreadable health reading in Redis; ignored.");
                self.fallback.latest(processor).await
            }
            // Nothing on Redis yet (a fresh or restarted server): what PostgreSQL has, so
            // that a new poller still waits out the interval of the last poll it knows of.
            Ok(None) => {
                answered();
                self.fallback.latest(processor).await
            }
            Err(error) => {
                failed("health_latest", &error);
                self.fallback.latest(processor).await
            }
        }
    }
}

/// `failing min_response_ms polled_at_ms`, e.g. `0 250 1764763200000`.
fn encode(reading: HealthReading) -> String {
    format!(
        "{} {} {}",
        u8::from(reading.report.failing),
        reading.report.min_response_ms,
        reading.polled_at_ms
    )
}

fn decode(value: &str) -> Option<HealthReading> {
    let mut parts = value.split(' ');
    let failing = match parts.next()? {
        "0" => false,
        "1" => true,
        _ => return None,
    };
    let min_response_ms = parts.next()?.parse().ok()?;
    let polled_at_ms = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some(HealthReading {
        report: HealthReport {
            failing,
            min_response_ms,
        },
        polled_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a reading survives its trip through Redis exactly, and anything else stored
    /// under its key is refused rather than misread.
    #[test]
    fn readings_round_trip_and_garbage_is_refused() {
        let reading = HealthReading {
            report: HealthReport {
                failing: true,
                min_response_ms: 1_250,
            },
            polled_at_ms: 1_764_763_200_123,
        };
        assert_eq!(decode(&encode(reading)), Some(reading));
        for garbage in ["", "2 1 1", "0 x 1", "0 1", "0 1 1 1", "0 -1 5"] {
            assert_eq!(decode(garbage), None, "{garbage:?}");
        }
    }
}
