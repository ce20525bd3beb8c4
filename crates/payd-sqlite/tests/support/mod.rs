//! The SQLite store's test harness for the conformance suites (`payd_ports::testkit`).

// Each test file uses its own part of the harness.
#![allow(dead_code)]

use std::sync::Arc;

use async_trait::async_trait;
use payd_ports::Store;
use payd_ports::testkit::Harness;
use payd_sqlite::{SqliteConfig, SqliteStore};
use tempfile::TempDir;

/// A store in a temporary directory.
pub(crate) struct Sqlite {
    dir: TempDir,
    store: Arc<SqliteStore>,
}

impl Sqlite {
    /// A fresh, strict store.
    pub(crate) fn fresh() -> Option<(Arc<dyn Store>, Sqlite)> {
        Some(Sqlite::with(|config| config))
    }

    /// A fresh store with `configure`d settings.
    pub(crate) fn with(
        configure: impl Fn(SqliteConfig) -> SqliteConfig,
    ) -> (Arc<dyn Store>, Sqlite) {
        let dir = TempDir::new().expect("temp dir");
        let store =
            Arc::new(SqliteStore::open(configure(SqliteConfig::new(dir.path()))).expect("open"));
        (store.clone() as Arc<dyn Store>, Sqlite { dir, store })
    }

    /// Shuts the store down and hands over its directory.
    pub(crate) fn into_dir(self) -> TempDir {
        self.store.shutdown();
        self.dir
    }
}

#[async_trait]
impl Harness for Sqlite {
    async fn reopen(&mut self, store: Arc<dyn Store>) -> Arc<dyn Store> {
        drop(store);
        // The writer commits what is queued, then the directory's lock is released.
        self.store.shutdown();
        let reopened = SqliteStore::open(SqliteConfig::new(self.dir.path())).expect("reopen");
        self.store = Arc::new(reopened);
        self.store.clone()
    }

    async fn assert_audit_clean(&self) {
        let report = payd_sqlite::audit::audit(self.store.path()).expect("audit runs");
        assert!(report.is_clean(), "payd audit:\n{report}");
    }
}
