//! payd's coordination on Redis, for processes that share one PostgreSQL database.
//!
//! Redis carries what must be shared fast between processes; it never decides anything on
//! its own. Everything here degrades to PostgreSQL when Redis is unreachable (slower, still
//! correct), and picks Redis up again when it returns.
//!
//! - [`Redis`]: one multiplexed connection (redis-rs' connection manager, which reconnects
//!   by itself), opened lazily so that a process starts while Redis is down, with a key
//!   prefix per deployment (or per test).
//! - [`RedisBoard`]: the processors' shared health ([`payd_ports::HealthBoard`]) on Redis: a
//!   poller lease per processor (`SET NX PX`, renewed by its holder) and the holder's
//!   latest report; on a Redis error each call goes to the fallback board (PostgreSQL's).
//! - [`RedisDecisions`]: recent card decisions ([`payd_ports::DecisionCache`]), so that a
//!   replayed transaction id is answered without asking PostgreSQL; a miss or an error
//!   asks it, as without Redis.
//! - [`RedisLocks`]: per-account locks ([`payd_ports::AccountLocks`]) for the transfer
//!   pipeline, all of a grant's accounts at once, each with a fencing token that keeps
//!   growing even across a Redis restart; PostgreSQL checks the tokens.
//! - [`RedisBreakers`]: the circuit breakers' openings told to every process
//!   ([`payd_ports::BreakerBus`]) on a pub/sub channel; without Redis each process finds
//!   out by its own calls.

mod board;
mod breakers;
mod decisions;
mod locks;

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Mutex;

pub use board::RedisBoard;
pub use breakers::RedisBreakers;
pub use decisions::RedisDecisions;
pub use locks::RedisLocks;

/// How long a command may take before it counts as failed (then the fallback answers).
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A connection to Redis, shared by this process's users of it.
pub struct Redis {
    client: redis::Client,
    prefix: String,
    connection: Mutex<Option<ConnectionManager>>,
}

impl Redis {
    /// A connection to the server at `url` (`redis://host:port[/db]`), every key under
    /// `prefix`. Checks the URL only; the connection opens at the first use.
    pub fn new(url: &str, prefix: &str) -> Result<Redis, redis::RedisError> {
        Ok(Redis {
            client: redis::Client::open(url)?,
            prefix: prefix.to_owned(),
            connection: Mutex::new(None),
        })
    }

    /// The client, for connections of their own (a pub/sub subscription).
    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    /// `name` under this deployment's prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The connection, opened if it is not yet. Once open, the manager reconnects by
    /// itself; a command on a broken connection fails (and the caller falls back) while it
    /// does.
    pub async fn connection(&self) -> Result<ConnectionManager, redis::RedisError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let connection = ConnectionManager::new_with_config(self.client.clone(), config).await?;
        tracing::info!("Connected to Redis.");
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// `GET key` (the full key, prefix included).
    pub async fn get(&self, key: &str) -> Result<Option<String>, redis::RedisError> {
        let mut connection = self.connection().await?;
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut connection)
            .await
    }
}

/// Counts a failed Redis command, by what it was for, and marks Redis as down.
pub(crate) fn failed(operation: &'static str, error: &redis::RedisError) {
    metrics::counter!("payd_redis_errors_total", "operation" => operation).increment(1);
    metrics::gauge!("payd_broker_up", "broker" => "redis").set(0.0);
    tracing::warn!(operation, %error, "Redis command failed; using PostgreSQL instead.");
}

/// [`failed`] for the request path: counted, logged at debug only (a Redis outage would
/// otherwise log a line per request).
pub(crate) fn failed_quietly(operation: &'static str, error: &redis::RedisError) {
    metrics::counter!("payd_redis_errors_total", "operation" => operation).increment(1);
    metrics::gauge!("payd_broker_up", "broker" => "redis").set(0.0);
    tracing::debug!(operation, %error, "Redis command failed; asking PostgreSQL instead.");
}

/// Marks Redis as up.
pub(crate) fn answered() {
    metrics::gauge!("payd_broker_up", "broker" => "redis").set(1.0);
}
