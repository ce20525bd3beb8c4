//! How a [`SqliteStore`](crate::SqliteStore) is opened: where, how durable, and its bounds.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use payd_domain::MccMap;
use payd_ports::{Clock, TokioClock};

/// How hard each group commit is pushed to disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: every group commit is fsynced before anyone is answered, so an
    /// acknowledged write survives power loss. The default.
    #[default]
    Strict,
    /// `synchronous=NORMAL`: WAL frames are written (survives `kill -9`) but fsynced only at
    /// checkpoints, so a power loss may drop the last milliseconds of acknowledged writes.
    Relaxed,
}

impl Durability {
    /// The setting's name: `strict` or `relaxed`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Durability::Strict => "strict",
            Durability::Relaxed => "relaxed",
        }
    }

    /// The `PRAGMA synchronous` value that implements this setting.
    pub(crate) const fn synchronous_pragma(self) -> &'static str {
        match self {
            Durability::Strict => "FULL",
            Durability::Relaxed => "NORMAL",
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was neither `strict` nor `relaxed`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("durability must be \"strict\" or \"relaxed\", not {0:?}")]
pub struct UnknownDurability(pub String);

impl FromStr for Durability {
    type Err = UnknownDurability;

    /// Case-insensitive, so `STRICT` from an environment variable works too.
    fn from_str(text: &str) -> Result<Durability, UnknownDurability> {
        match text.trim().to_ascii_lowercase().as_str() {
            "strict" => Ok(Durability::Strict),
            "relaxed" => Ok(Durability::Relaxed),
            _ => Err(UnknownDurability(text.to_owned())),
        }
    }
}

/// Everything [`SqliteStore::open`](crate::SqliteStore::open) needs.
#[derive(Clone)]
pub struct SqliteConfig {
    /// Directory of the database (`payd.sqlite3` and its WAL files); created if missing.
    pub data_dir: PathBuf,
    /// Strict (fsync per group commit) or relaxed.
    pub durability: Durability,
    /// MCC → category (L1) used by every decision.
    pub mcc_map: MccMap,
    /// Most commands applied in one group commit.
    pub batch_max: usize,
    /// Commands that may wait for the writer; senders wait (backpressure) when it is full.
    pub queue_capacity: usize,
    /// Read-only connections for `account`, `entries` and `merchants`.
    pub readers: usize,
    /// Where every timestamp the store writes comes from.
    pub clock: Arc<dyn Clock>,
    /// This process's instance id, recorded as the owner of the payment leases it takes.
    pub instance: String,
}

impl fmt::Debug for SqliteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteConfig")
            .field("data_dir", &self.data_dir)
            .field("durability", &self.durability)
            .field("batch_max", &self.batch_max)
            .field("queue_capacity", &self.queue_capacity)
            .field("readers", &self.readers)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl SqliteConfig {
    /// Default for [`SqliteConfig::batch_max`].
    pub const BATCH_MAX_DEFAULT: usize = 1024;
    /// Default for [`SqliteConfig::queue_capacity`].
    pub const QUEUE_CAPACITY_DEFAULT: usize = 8192;
    /// Default for [`SqliteConfig::readers`].
    pub const READERS_DEFAULT: usize = 4;

    /// A strict store in `data_dir` with the default MCC map and bounds, on the wall
    /// clock, under the instance id `local`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        SqliteConfig {
            data_dir: data_dir.into(),
            durability: Durability::Strict,
            mcc_map: MccMap::default(),
            batch_max: Self::BATCH_MAX_DEFAULT,
            queue_capacity: Self::QUEUE_CAPACITY_DEFAULT,
            readers: Self::READERS_DEFAULT,
            clock: Arc::new(TokioClock::new()),
            instance: "local".to_owned(),
        }
    }

    /// The database file inside `data_dir`.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join(DATABASE_FILE)
    }
}

/// The database's file name inside the data directory.
pub const DATABASE_FILE: &str = "payd.sqlite3";

/// The lock file inside the data directory, held by the process that has the store open.
pub const LOCK_FILE: &str = "payd.lock";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_parses_and_displays() {
        assert_eq!("strict".parse(), Ok(Durability::Strict));
        assert_eq!("Relaxed".parse(), Ok(Durability::Relaxed));
        assert!("fast".parse::<Durability>().is_err());
        for d in [Durability::Strict, Durability::Relaxed] {
            assert_eq!(d.to_string().parse(), Ok(d));
        }
    }

    #[test]
    fn defaults() {
        let config = SqliteConfig::new("/tmp/x");
        assert_eq!(config.durability, Durability::Strict);
        assert_eq!(
            (config.batch_max, config.queue_capacity, config.readers),
            (1024, 8192, 4)
        );
        assert_eq!(config.database_path(), PathBuf::from("/tmp/x/payd.sqlite3"));
    }
}
