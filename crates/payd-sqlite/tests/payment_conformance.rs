//! The `PaymentStore` conformance suite on a fresh SQLite store per check.

use std::sync::Arc;

use payd_ports::PaymentStore;
use payd_sqlite::{SqliteConfig, SqliteStore};

payd_ports::payment_store_conformance!({
    let dir = tempfile::TempDir::new().expect("temp dir");
    let store = SqliteStore::open(SqliteConfig::new(dir.path())).expect("open store");
    (Arc::new(store) as Arc<dyn PaymentStore>, dir)
});
