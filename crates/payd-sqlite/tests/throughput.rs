//! Authorizations and transfers per second through the store alone (no HTTP).
//!
//! Ignored by default; run in release:
//! `cargo test --release -p payd-sqlite --test throughput -- --ignored --nocapture`
//!
//! Environment (all optional):
//! - `PAYD_BENCH_AUTHORIZATIONS` (200000): authorizations measured; longer runs include
//!   checkpoints.
//! - `PAYD_BENCH_ACCOUNTS` (1000): accounts the authorizations are spread over (10000 is
//!   `bench/auth.sh`'s `accounts_10000`, 1 its `hot_account`).
//! - `PAYD_BENCH_CALLERS` (1024): concurrent callers, like in-flight HTTP requests (64 is
//!   `bench/auth.sh`'s default connection count, and bounds the group-commit batch alike).
//! - `PAYD_BENCH_DURABILITY` (both): `strict`, `relaxed` or `both`.
//!
//! Instructions per authorization: run the test under callgrind twice with different
//! `PAYD_BENCH_AUTHORIZATIONS` and divide the difference of the totals by the difference of
//! the counts (the account openings and the start-up cancel out).

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use payd_domain::{AccountId, Amount, AuthorizationRequest, Balances, Code, Mcc, TransactionId};
use payd_ports::LedgerStore;
use payd_ports::testkit;
use payd_sqlite::{Durability, SqliteConfig, SqliteStore};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// Bytes this process has passed to write(2) and friends so far (`wchar` of /proc/self/io):
/// WAL frames and checkpoint copies. 0 where /proc is missing.
fn written_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|line| line.strip_prefix("wchar: ").map(str::to_owned))
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

async fn run(durability: Durability) {
    let authorizations = env_or("PAYD_BENCH_AUTHORIZATIONS", 200_000);
    let accounts = env_or("PAYD_BENCH_ACCOUNTS", 1_000).max(1);
    let callers = env_or("PAYD_BENCH_CALLERS", 1_024).max(1);
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
        (0..accounts)
            .map(|i| AccountId::parse(&format!("bench-{i}")).unwrap())
            .collect(),
    );
    let opens: Vec<_> = ids
        .iter()
        .map(|id| {
            let (store, id) = (Arc::clone(&store), id.clone());
            tokio::spawn(async move { testkit::open(&*store, &id, rich).await })
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
    let written_before = written_bytes();
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|caller| {
            let (store, ids) = (Arc::clone(&store), Arc::clone(&ids));
            tokio::spawn(async move {
                let mut approved = 0usize;
                let mut latencies = Vec::new();
                for n in (caller..authorizations).step_by(callers) {
                    // Half carry an id (idempotency lookup + unique index), half do not.
                    let id = (n % 2 == 0)
                        .then(|| TransactionId::parse(&format!("bench-tx-{n}")).unwrap());
                    // A multiplicative hash spreads consecutive requests over the accounts
                    // like random picks would (wrk's authorize.lua picks at random).
                    let account = (n.wrapping_mul(2_654_435_761)) % accounts;
                    let request = AuthorizationRequest {
                        id,
                        account: ids[account].clone(),
                        amount: Amount::from_cents(1 + (n % 5000) as i64),
                        mcc: mccs[n % 3],
                        merchant: "SUPERMERCADO BENCH        SAO PAULO BR".to_owned(),
                    };
                    let asked = Instant::now();
                    if store.authorize(request).await.unwrap() == Code::Approved {
                        approved += 1;
                    }
                    latencies.push(asked.elapsed());
                }
                (approved, latencies)
            })
        })
        .collect();
    let mut approved = 0;
    let mut latencies = Vec::with_capacity(authorizations);
    for task in tasks {
        let (count, mut times) = task.await.unwrap();
        approved += count;
        latencies.append(&mut times);
    }
    latencies.sort_unstable();
    let percentile = |p: f64| {
        let at = ((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(at).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let elapsed = started.elapsed();
    let written = written_bytes().saturating_sub(written_before);
    // The WAL must stay bounded under sustained load (checkpoints + rewinds keep up).
    let wal_mib = std::fs::metadata(dir.path().join("payd.sqlite3-wal"))
        .map_or(0.0, |m| m.len() as f64 / f64::from(1 << 20));
    assert_eq!(approved, authorizations);
    let rate = authorizations as f64 / elapsed.as_secs_f64();
    println!(
        "{durability:>7}: {authorizations} authorizations, {callers} concurrent callers, {accounts} accounts: \
         {:.2} s, {rate:.0} authorizations/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, \
         {:.0} bytes written per authorization, WAL {wal_mib:.1} MiB",
        elapsed.as_secs_f64(),
        percentile(0.5),
        percentile(0.99),
        percentile(1.0),
        written as f64 / authorizations.max(1) as f64
    );
    let stopper = Arc::clone(&store);
    tokio::task::spawn_blocking(move || stopper.shutdown())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run in release with --ignored --nocapture"]
async fn authorizations_per_second() {
    let which = std::env::var("PAYD_BENCH_DURABILITY").unwrap_or_default();
    for durability in [Durability::Strict, Durability::Relaxed] {
        if which.is_empty() || which == "both" || which == durability.as_str() {
            run(durability).await;
        }
    }
}

fn stored(outcome: &Result<payd_ports::Effect, payd_ports::Refusal>) -> payd_ports::StoredResponse {
    // About the size of the API's transfer body.
    payd_ports::StoredResponse {
        status: if outcome.is_ok() { 202 } else { 422 },
        body: vec![b'x'; 260],
    }
}

/// Transfers through the store alone: accepted (each under a resource-id claim, like
/// `POST /transfers` with a client id) by `PAYD_BENCH_CALLERS` callers while one settler
/// settles them in batches of up to 4096, pausing `PAYD_BENCH_SETTLE_GAP_MS` (20) after each
/// pass that found work, as the engine's wallet worker does. `PAYD_BENCH_TRANSFERS`
/// (200000) transfers over `PAYD_BENCH_ACCOUNTS` (10000) accounts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run in release with --ignored --nocapture"]
async fn transfers_per_second() {
    use payd_domain::{Category, ResourceId, Transfer};
    use payd_ports::{Claim, Mutation, NewTransfer, WalletStore};
    use std::sync::atomic::{AtomicBool, Ordering};

    let transfers = env_or("PAYD_BENCH_TRANSFERS", 200_000);
    let accounts = env_or("PAYD_BENCH_ACCOUNTS", 10_000).max(2);
    let callers = env_or("PAYD_BENCH_CALLERS", 64).max(1);
    let gap_ms = env_or("PAYD_BENCH_SETTLE_GAP_MS", 20) as u64;
    let batch = env_or("PAYD_BENCH_SETTLE_BATCH", 4_096) as u32;
    // 1: settle only once every transfer is accepted (isolates the cost of each side).
    let settle_after = env_or("PAYD_BENCH_SETTLE_AFTER", 0) == 1;
    let dir = tempfile::TempDir::new().unwrap();
    let store = Arc::new(SqliteStore::open(SqliteConfig::new(dir.path())).unwrap());
    let rich = Balances::with_available(Amount::ZERO, Amount::ZERO, Amount::from_cents(1 << 40));
    let ids: Arc<Vec<AccountId>> = Arc::new(
        (0..accounts)
            .map(|i| AccountId::parse(&format!("bench-{i}")).unwrap())
            .collect(),
    );
    for id in ids.iter() {
        testkit::open(&*store, &id.clone(), rich).await.unwrap();
    }
    let accepting = Arc::new(AtomicBool::new(true));
    let settler = {
        let (store, accepting) = (Arc::clone(&store), Arc::clone(&accepting));
        tokio::spawn(async move {
            let mut settled = 0_u64;
            while settle_after && accepting.load(Ordering::Relaxed) {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            let settle_started = Instant::now();
            loop {
                if settle_after && settled > 0 && settled % 100_000 < u64::from(batch) {
                    println!(
                        "settled {settled} in {:.2} s",
                        settle_started.elapsed().as_secs_f64()
                    );
                }
                let sweep = store.settle_transfers(batch).await.unwrap();
                settled += u64::from(sweep.done);
                if sweep.done == 0 && !accepting.load(Ordering::Relaxed) {
                    return settled;
                }
                if !sweep.more {
                    let pause_ms = if sweep.done == 0 { 1 } else { gap_ms };
                    tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
                }
            }
        })
    };
    let written_before = written_bytes();
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|caller| {
            let (store, ids) = (Arc::clone(&store), Arc::clone(&ids));
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for n in (caller..transfers).step_by(callers) {
                    let from = (n.wrapping_mul(2_654_435_761)) % accounts;
                    let to = (from + 1 + n % (accounts - 1)) % accounts;
                    let id = format!("bench-tr-{n}");
                    let mutation = Mutation::SubmitTransfer(NewTransfer {
                        transfer: Transfer {
                            id: ResourceId::parse(&id).unwrap(),
                            from: ids[from].clone(),
                            to: ids[to].clone(),
                            category: Category::Cash,
                            amount: Amount::from_cents(1 + (n % 999) as i64),
                        },
                        description: None,
                    });
                    let claim = Claim {
                        key: format!("transfer:{id}"),
                        fingerprint: format!("{n:064x}"),
                        expires_at_ms: None,
                        render: stored,
                    };
                    let asked = Instant::now();
                    store.execute(mutation, Some(claim)).await.unwrap();
                    latencies.push(asked.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(transfers);
    for task in tasks {
        latencies.append(&mut task.await.unwrap());
    }
    let accepted_in = started.elapsed();
    accepting.store(false, Ordering::Relaxed);
    let settled = settler.await.unwrap();
    let drained_in = started.elapsed();
    latencies.sort_unstable();
    let p99 = latencies
        .get(latencies.len() * 99 / 100)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3);
    assert_eq!(settled, transfers as u64);
    let written = written_bytes().saturating_sub(written_before);
    println!(
        "strict: {transfers} transfers, {callers} callers, {accounts} accounts, settle gap {gap_ms} ms, batch {batch}: accepted {:.0}/s \
         (p99 {p99:.2} ms), all completed after {:.2} s ({:.0}/s), {:.0} bytes written per transfer",
        transfers as f64 / accepted_in.as_secs_f64(),
        drained_in.as_secs_f64(),
        transfers as f64 / drained_in.as_secs_f64(),
        written as f64 / transfers as f64
    );
    let stopper = Arc::clone(&store);
    tokio::task::spawn_blocking(move || stopper.shutdown())
        .await
        .unwrap();
}
