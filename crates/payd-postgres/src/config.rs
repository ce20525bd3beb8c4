//! How a [`PgStore`](crate::PgStore) is opened: where, with which bounds, as which
//! instance.

use std::fmt;
use std::sync::Arc;

use payd_domain::MccMap;
use payd_ports::{Clock, TokioClock};

/// Everything [`PgStore::open`](crate::PgStore::open) needs.
#[derive(Clone)]
pub struct PgConfig {
    /// `postgres://user:password@host:port/database` (or the key=value form).
    pub url: String,
    /// Connections in the pool: the writers' (`writers` + 1) and the readers' together
    /// (at least `writers` + 3). A call waits for a free one.
    pub pool_size: usize,
    /// `statement_timeout` of every connection, in ms (0: none): a statement stuck
    /// behind a lock or a sick server fails instead of holding its caller forever.
    pub statement_timeout_ms: u64,
    /// Request writer tasks. Each applies batches of commands in one transaction at a time
    /// on a connection of its own; commands for one account always go to the same writer.
    /// One more writer takes the gateway's bookkeeping and the sweeps.
    pub writers: usize,
    /// Most commands one writer applies in one transaction.
    pub batch_max: usize,
    /// Commands that may wait for a writer; senders wait (backpressure) when it is full.
    pub queue_capacity: usize,
    /// MCC → category (L1) used by every decision.
    pub mcc_map: MccMap,
    /// Where every timestamp the store writes comes from.
    pub clock: Arc<dyn Clock>,
    /// This process's instance id: the owner of the payment leases it takes, and of its
    /// claims on requests in flight. A process restarted under the same id takes over its
    /// own leases at once; any other lease only once it expires.
    pub instance: String,
    /// Whether accepting a payment or a transfer also writes its message to the outbox (in
    /// the same commit), for a relay to publish to the work transport (RabbitMQ). Off: the
    /// workers find new payments and transfers by polling their tables alone.
    pub outbox: bool,
}

impl PgConfig {
    /// Default for [`PgConfig::pool_size`].
    pub const POOL_SIZE_DEFAULT: usize = 16;
    /// Default for [`PgConfig::statement_timeout_ms`].
    pub const STATEMENT_TIMEOUT_MS_DEFAULT: u64 = 5_000;
    /// Default for [`PgConfig::writers`].
    pub const WRITERS_DEFAULT: usize = 2;
    /// Default for [`PgConfig::batch_max`].
    pub const BATCH_MAX_DEFAULT: usize = 512;
    /// Default for [`PgConfig::queue_capacity`].
    pub const QUEUE_CAPACITY_DEFAULT: usize = 8192;

    /// A store at `url` with the default bounds, on the wall clock, under `instance`.
    pub fn new(url: impl Into<String>, instance: impl Into<String>) -> PgConfig {
        PgConfig {
            url: url.into(),
            pool_size: Self::POOL_SIZE_DEFAULT,
            statement_timeout_ms: Self::STATEMENT_TIMEOUT_MS_DEFAULT,
            writers: Self::WRITERS_DEFAULT,
            batch_max: Self::BATCH_MAX_DEFAULT,
            queue_capacity: Self::QUEUE_CAPACITY_DEFAULT,
            mcc_map: MccMap::default(),
            clock: Arc::new(TokioClock::new()),
            instance: instance.into(),
            outbox: false,
        }
    }
}

impl fmt::Debug for PgConfig {
    // Never print the URL: it may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("pool_size", &self.pool_size)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .field("writers", &self.writers)
            .field("batch_max", &self.batch_max)
            .field("queue_capacity", &self.queue_capacity)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// The URL without its password, for logs.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_logs() {
        assert_eq!(
            redacted("postgres://payd:s3cret@db:5432/payd"),
            "postgres://payd:***@db:5432/payd"
        );
        assert_eq!(
            redacted("postgres://127.0.0.1/payd"),
            "postgres://127.0.0.1/payd"
        );
        let config = PgConfig::new("postgres://u:pw@h/d", "i");
        assert!(!format!("{config:?}").contains("pw"));
    }
}
