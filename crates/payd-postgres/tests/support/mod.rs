//! The PostgreSQL store's test harness: a fresh database per test (`payd_pgtest`), the
//! store on it, `payd audit` at the end.

// Each test file uses its own part of the harness.
#![allow(dead_code)]

use std::sync::Arc;

use async_trait::async_trait;
use payd_pgtest::TestDatabase;
use payd_ports::Store;
use payd_ports::testkit::Harness;
use payd_postgres::{PgConfig, PgStore};

/// A store on a database of its own.
pub(crate) struct Pg {
    pub(crate) database: TestDatabase,
    pub(crate) store: Arc<PgStore>,
}

impl Pg {
    /// The store's settings for a test: small pool, two writers, instance `test`.
    pub(crate) fn config(database: &TestDatabase) -> PgConfig {
        let mut config = PgConfig::new(database.url(), "test");
        config.pool_size = 8;
        config
    }

    /// A fresh store on a new database; `None` (after a loud skip) without a server.
    pub(crate) async fn fresh(test: &str) -> Option<(Arc<dyn Store>, Pg)> {
        let database = TestDatabase::create(test).await?;
        let store = Arc::new(
            PgStore::open(Pg::config(&database))
                .await
                .expect("open the store"),
        );
        Some((store.clone() as Arc<dyn Store>, Pg { database, store }))
    }
}

#[async_trait]
impl Harness for Pg {
    async fn reopen(&mut self, store: Arc<dyn Store>) -> Arc<dyn Store> {
        drop(store);
        self.store.shutdown().await;
        self.store = Arc::new(
            PgStore::open(Pg::config(&self.database))
                .await
                .expect("reopen the store"),
        );
        self.store.clone()
    }

    async fn assert_audit_clean(&self) {
        let report = payd_postgres::audit::audit(self.database.url())
            .await
            .expect("audit runs");
        assert!(report.is_clean(), "payd audit:\n{report}");
    }
}
