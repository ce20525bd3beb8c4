//! Authorizations per second through the store alone (no HTTP), strict and relaxed.
//!
//! Ignored by default; run in release:
//! `cargo test --release -p payd-sqlite --test throughput -- --ignored --nocapture`

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use payd_domain::{AccountId, Amount, AuthorizationRequest, Balances, Code, Mcc, TransactionId};
use payd_ports::{LedgerStore, NewAccount};
use payd_sqlite::{Durability, SqliteConfig, SqliteStore};

const ACCOUNTS: usize = 1_000;
/// Default count; `PAYD_BENCH_AUTHORIZATIONS` overrides it (longer runs include checkpoints).
const AUTHORIZATIONS_DEFAULT: usize = 200_000;
/// Concurrent callers, like in-flight HTTP requests.
const CALLERS: usize = 1_024;

async fn run(durability: Durability) {
    let authorizations: usize = std::env::var("PAYD_BENCH_AUTHORIZATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(AUTHORIZATIONS_DEFAULT);
    let dir = tempfile::TempDir::new().unwrap();
    let mut config = SqliteConfig::new(dir.path());
    config.durability = durability;
    let store = Arc::new(SqliteStore::open(config).unwrap());
    let rich = Balances::with_available(
        Amount::from_cents(1 << 40),
        Amount::from_cents(1 << 40),
        Amount::from_cents(1 << 40),
    );
    let ids: Arc<Vec<AccountId>> = Arc::new(
        (0..ACCOUNTS)
            .map(|i| AccountId::parse(&format!("bench-{i}")).unwrap())
            .collect(),
    );
    let opens: Vec<_> = ids
        .iter()
        .map(|id| {
            let (store, id) = (Arc::clone(&store), id.clone());
            tokio::spawn(async move { store.open_account(NewAccount { id, balances: rich }).await })
        })
        .collect();
    for open in opens {
        open.await.unwrap().unwrap();
    }

    let mccs = [
        Mcc::parse("5411").unwrap(),
        Mcc::parse("5812").unwrap(),
        Mcc::parse("5999").unwrap(),
    ];
    let started = Instant::now();
    let callers: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let (store, ids) = (Arc::clone(&store), Arc::clone(&ids));
            tokio::spawn(async move {
                let mut approved = 0usize;
                for n in (caller..authorizations).step_by(CALLERS) {
                    // Half carry an id (idempotency lookup + unique index), half do not.
                    let id = (n % 2 == 0)
                        .then(|| TransactionId::parse(&format!("bench-tx-{n}")).unwrap());
                    let request = AuthorizationRequest {
                        id,
                        account: ids[n % ACCOUNTS].clone(),
                        amount: Amount::from_cents(1 + (n % 5000) as i64),
                        mcc: mccs[n % 3],
                        merchant: "SUPERMERCADO BENCH        SAO PAULO BR".to_owned(),
                    };
                    if store.authorize(request).await.unwrap() == Code::Approved {
                        approved += 1;
                    }
                }
                approved
            })
        })
        .collect();
    let mut approved = 0;
    for caller in callers {
        approved += caller.await.unwrap();
    }
    let elapsed = started.elapsed();
    assert_eq!(approved, authorizations);
    let rate = authorizations as f64 / elapsed.as_secs_f64();
    println!(
        "{durability:>7}: {authorizations} authorizations, {CALLERS} concurrent callers, {ACCOUNTS} accounts: \
         {:.2} s, {rate:.0} authorizations/s",
        elapsed.as_secs_f64()
    );
    let stopper = Arc::clone(&store);
    tokio::task::spawn_blocking(move || stopper.shutdown())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run in release with --ignored --nocapture"]
async fn authorizations_per_second() {
    run(Durability::Strict).await;
    run(Durability::Relaxed).await;
}
