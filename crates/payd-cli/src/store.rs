//! Which store the flags select, opened: the embedded SQLite store (the default), or
//! PostgreSQL with `--database-url`, shared with any number of payd processes.

use std::sync::Arc;

use anyhow::Context;
use payd_ports::{HealthBoard, InFlightKeys, LocalInFlight, OutboxStore, SoleBoard, Store};
use payd_postgres::{PgConfig, PgStore};
use payd_sqlite::{SqliteConfig, SqliteStore};

/// The selected store's settings.
pub(crate) enum StoreConfig {
    Sqlite(SqliteConfig),
    Postgres(PgConfig),
}

impl StoreConfig {
    /// This process's instance id on the store (lease owner, health poller).
    pub(crate) fn instance(&self) -> &str {
        match self {
            StoreConfig::Sqlite(config) => &config.instance,
            StoreConfig::Postgres(config) => &config.instance,
        }
    }

    /// Where the store is, for logs (never a password).
    pub(crate) fn describe(&self) -> String {
        match self {
            StoreConfig::Sqlite(config) => format!(
                "SQLite in {} ({} durability)",
                config.data_dir.display(),
                config.durability
            ),
            StoreConfig::Postgres(config) => format!(
                "PostgreSQL at {} (instance {})",
                payd_postgres::config::redacted(&config.url),
                config.instance
            ),
        }
    }
}

/// An open store.
pub(crate) enum Opened {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PgStore>),
}

impl Opened {
    /// Opens it (migrating it first). On the current runtime: the PostgreSQL store starts
    /// its writers there.
    pub(crate) async fn open(config: StoreConfig) -> anyhow::Result<Opened> {
        let what = config.describe();
        Ok(match config {
            StoreConfig::Sqlite(config) => {
                let store = tokio::task::spawn_blocking(move || SqliteStore::open(config))
                    .await?
                    .with_context(|| format!("opening {what}"))?;
                Opened::Sqlite(Arc::new(store))
            }
            StoreConfig::Postgres(config) => {
                let store = PgStore::open(config)
                    .await
                    .with_context(|| format!("opening {what}"))?;
                Opened::Postgres(Arc::new(store))
            }
        })
    }

    pub(crate) fn store(&self) -> Arc<dyn Store> {
        match self {
            Opened::Sqlite(store) => store.clone(),
            Opened::Postgres(store) => store.clone(),
        }
    }

    /// Where the processors' health is shared: nowhere when one process owns the store, the
    /// database when processes share it.
    pub(crate) fn health_board(&self) -> Arc<dyn HealthBoard> {
        match self {
            Opened::Sqlite(_) => Arc::new(SoleBoard),
            Opened::Postgres(store) => store.clone(),
        }
    }

    /// The outbox, on a store that has one (PostgreSQL's).
    pub(crate) fn outbox(&self) -> Option<Arc<dyn OutboxStore>> {
        match self {
            Opened::Sqlite(_) => None,
            Opened::Postgres(store) => Some(store.clone()),
        }
    }

    /// The requests-in-flight keys: in memory when one process owns the store, rows when
    /// processes share it.
    pub(crate) fn in_flight(&self) -> Arc<dyn InFlightKeys> {
        match self {
            Opened::Sqlite(_) => Arc::new(LocalInFlight::default()),
            Opened::Postgres(store) => store.in_flight(),
        }
    }

    /// Lets the writers commit and answer what is queued, then stops them.
    pub(crate) async fn shutdown(&self) -> anyhow::Result<()> {
        match self {
            Opened::Sqlite(store) => {
                let store = store.clone();
                tokio::task::spawn_blocking(move || store.shutdown()).await?;
            }
            Opened::Postgres(store) => store.shutdown().await,
        }
        Ok(())
    }
}

/// `payd migrate`.
pub(crate) fn migrate(config: StoreConfig) -> anyhow::Result<()> {
    let what = config.describe();
    match config {
        StoreConfig::Sqlite(config) => {
            let store = SqliteStore::open(config).with_context(|| format!("opening {what}"))?;
            store.shutdown();
        }
        StoreConfig::Postgres(config) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let applied = runtime
                .block_on(payd_postgres::migrate(&config.url, config.clock.now_ms()))
                .with_context(|| format!("migrating {what}"))?;
            tracing::info!(applied, "Migrations applied.");
        }
    }
    println!("payd: {what} is migrated");
    Ok(())
}
