//! PostgreSQL restarted under load (`pg_ctlcluster ... restart`), in both shapes at once:
//! `payd serve` on one database, and `payd api` + `payd worker` on another. While the server
//! is down, payd answers `503 store_unavailable` (card authorizations: `07`) with nothing
//! acknowledged; when it is back, every process serves and works again by itself, without a
//! restart; and every write acknowledged, before or after, is there exactly once: card
//! approvals, deposits, transfers (settled by the worker) and gateway payments (booked at
//! one processor, by the worker).
//!
//! One test in a binary of its own: it restarts the machine's PostgreSQL server, and cargo
//! runs test binaries one after another, so no other test's database is in use meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers fail loudly by design.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use payd_pgtest::{TestDatabase, count_among};
use serde_json::{Value, json};
use support::{Proc, assert_exactly_once, assert_pg_audit_clean, await_booked, pay, payment_id};

/// The local cluster's version (`/etc/postgresql/<version>`), if this machine can restart
/// it (Debian's `pg_ctlcluster`, as root).
fn cluster() -> Option<String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    let has_tool = Command::new("pg_ctlcluster").arg("--help").output().is_ok();
    if !root || !has_tool {
        return None;
    }
    std::fs::read_dir("/etc/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .next()
}

fn restart(version: &str) {
    let status = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", version, "main", "restart"])
        .status()
        .expect("pg_ctlcluster");
    assert!(status.success(), "pg_ctlcluster restart failed");
}

/// What the load saw: the ids of every acknowledged write, and the refusals.
#[derive(Default)]
struct Seen {
    approved: Vec<String>,
    deposits: Vec<String>,
    transfers: Vec<String>,
    payments: Vec<String>,
    /// Payments sent without an answer (a timeout or a cut connection): maybe accepted.
    unanswered: Vec<String>,
    refused_503: u64,
    cards_07: u64,
    other: Vec<String>,
}

/// One shape on its own database, with its processors: `fronts[0]` takes the requests;
/// with `payd api` + `payd worker`, `fronts[1]` is the worker.
struct Deployment {
    name: &'static str,
    /// The processes, dropped (killed) before the database.
    fronts: Vec<Proc>,
    default: Proc,
    fallback: Proc,
    database: TestDatabase,
    seen: Arc<Mutex<Seen>>,
}

impl Deployment {
    async fn start(name: &'static str, roles: bool, dir: &Path) -> Option<Deployment> {
        let database = TestDatabase::create(&format!("postgres_restarted_{name}")).await?;
        let dir = &dir.join(name);
        std::fs::create_dir_all(dir).unwrap();
        let default = Proc::processor_sim("default", dir);
        let fallback = Proc::processor_sim("fallback", dir);
        let processors = [
            "--default-processor-url",
            &default.url,
            "--fallback-processor-url",
            &fallback.url,
        ];
        let log = |process: &str| dir.join(format!("{process}.log"));
        let fronts = if roles {
            vec![
                Proc::role_pg("api", database.url(), "api", &log("api"), &["--dev"]),
                Proc::role_pg(
                    "worker",
                    database.url(),
                    "worker",
                    &log("worker"),
                    &processors,
                ),
            ]
        } else {
            let mut extra = vec!["--dev"];
            extra.extend_from_slice(&processors);
            vec![Proc::serve_pg(
                database.url(),
                "serve",
                &log("serve"),
                &extra,
            )]
        };
        Some(Deployment {
            name,
            fronts,
            default,
            fallback,
            database,
            seen: Arc::default(),
        })
    }

    fn url(&self) -> &str {
        &self.fronts[0].url
    }

    /// Every process answers `/ready` with 200.
    async fn ready(&self, http: &reqwest::Client) -> bool {
        for process in &self.fronts {
            let ready = http.get(format!("{}/ready", process.url)).send().await;
            if !ready.is_ok_and(|r| r.status() == 200) {
                return false;
            }
        }
        true
    }

    /// Acknowledged writes of every kind so far (the smallest of the four counts).
    fn acknowledged(&self) -> usize {
        let seen = self.seen.lock().unwrap();
        [
            &seen.approved,
            &seen.deposits,
            &seen.transfers,
            &seen.payments,
        ]
        .iter()
        .map(|ids| ids.len())
        .min()
        .unwrap_or(0)
    }
}

/// Sends, every 4 ms until `stop`, the next of: a card authorization on `r`, a deposit to
/// `r`, a transfer `r` → `s`, a gateway payment; each with its own id, recorded in `seen`.
fn load(
    http: reqwest::Client,
    deployment: &Deployment,
    test: u8,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let (url, seen) = (deployment.url().to_owned(), deployment.seen.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(4));
        let mut inflight = tokio::task::JoinSet::new();
        let mut serial = 0_u32;
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            serial += 1;
            let (http, url, seen, n) = (http.clone(), url.clone(), seen.clone(), serial);
            inflight.spawn(async move { send(&http, &url, &seen, test, n).await });
            while inflight.try_join_next().is_some() {}
        }
        while inflight.join_next().await.is_some() {}
    })
}

async fn send(http: &reqwest::Client, url: &str, seen: &Mutex<Seen>, test: u8, n: u32) {
    let (kind, id) = match n % 4 {
        0 => ("card", format!("card-{n}")),
        1 => ("deposit", format!("dep-{n}")),
        2 => ("transfer", format!("tr-{n}")),
        _ => ("payment", payment_id(test, n)),
    };
    let request = match kind {
        "card" => http.post(format!("{url}/transactions")).json(&json!({
            "id": id, "account": "r", "totalAmount": "0.01", "mcc": "5999", "merchant": "RESTART"
        })),
        "deposit" => http
            .post(format!("{url}/accounts/r/deposits"))
            .header("Idempotency-Key", &id)
            .json(&json!({"category": "CASH", "amount": "0.01"})),
        "transfer" => http
            .post(format!("{url}/transfers"))
            .json(&json!({"id": id, "from": "r", "to": "s", "amount": "0.01"})),
        _ => {
            let status = pay(http, url, &id).await;
            let mut seen = seen.lock().unwrap();
            match status {
                202 => seen.payments.push(id),
                503 => seen.refused_503 += 1,
                // No answer: the request may or may not have been accepted.
                0 => seen.unanswered.push(id),
                other => seen.other.push(format!("payment {other}")),
            }
            return;
        }
    };
    let Ok(response) = request.send().await else {
        return;
    };
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or_default();
    let mut seen = seen.lock().unwrap();
    match (kind, status, body["code"].as_str()) {
        ("card", _, Some("00")) => seen.approved.push(id),
        ("card", _, Some("07")) => seen.cards_07 += 1,
        ("deposit", 201, _) => seen.deposits.push(id),
        ("transfer", 202, _) => seen.transfers.push(id),
        (_, 503, Some("store_unavailable")) => seen.refused_503 += 1,
        _ => seen.other.push(format!("{kind} {status} {body}")),
    }
}

/// Waits (at most `within`) until none of `ids` is a pending transfer, and returns how many
/// of them completed.
async fn await_transfers_settled(
    db: &payd_pgtest::tokio_postgres::Client,
    ids: &[String],
    within: Duration,
) -> usize {
    let started = Instant::now();
    loop {
        let pending = count_among(
            db,
            "SELECT COUNT(*) FROM transfers WHERE id = ANY($1) AND status = 'pending'",
            ids.iter().map(String::as_str),
        )
        .await
        .unwrap();
        if pending == 0 {
            break;
        }
        assert!(
            started.elapsed() < within,
            "{pending} transfers still pending after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    count_among(
        db,
        "SELECT COUNT(*) FROM transfers WHERE id = ANY($1) AND status = 'completed'",
        ids.iter().map(String::as_str),
    )
    .await
    .unwrap()
}

/// Every acknowledged write of `deployment` is there exactly once, the worker finished what
/// it was given, and the ledger audits clean.
async fn check(http: &reqwest::Client, deployment: Deployment) {
    let seen = std::mem::take(&mut *deployment.seen.lock().unwrap());
    let name = deployment.name;
    assert!(
        seen.other.is_empty(),
        "{name}: unexpected answers: {:?}",
        seen.other
    );
    assert!(
        seen.refused_503 + seen.cards_07 > 0,
        "{name}: the restart was seen as store_unavailable / 07"
    );
    let db = payd_pgtest::connect(deployment.database.url())
        .await
        .unwrap();
    let count = async |sql: &str, ids: &[String]| {
        count_among(&db, sql, ids.iter().map(String::as_str))
            .await
            .unwrap()
    };
    let approved = count(
        "SELECT COUNT(*) FROM transactions WHERE client_id = ANY($1) AND code = '00'",
        &seen.approved,
    )
    .await;
    assert_eq!(
        approved,
        seen.approved.len(),
        "{name}: each acknowledged approval once"
    );
    let deposits = count(
        "SELECT COUNT(*) FROM deposits WHERE key = ANY($1)",
        &seen.deposits,
    )
    .await;
    assert_eq!(
        deposits,
        seen.deposits.len(),
        "{name}: each acknowledged deposit once"
    );
    let completed = await_transfers_settled(&db, &seen.transfers, Duration::from_secs(30)).await;
    assert_eq!(
        completed,
        seen.transfers.len(),
        "{name}: each acknowledged transfer completed (r holds far more than they move)"
    );
    // An unanswered payment that payd did accept is a payment like the others (the
    // processors and the summary count it).
    let mut payments = seen.payments.clone();
    let accepted = db
        .query(
            "SELECT id FROM payments WHERE id = ANY($1)",
            &[&seen.unanswered],
        )
        .await
        .unwrap();
    payments.extend(accepted.iter().map(|row| row.get::<_, String>(0)));
    await_booked(&db, &payments, Duration::from_secs(60)).await;
    assert_exactly_once(
        http,
        &[&deployment.default, &deployment.fallback],
        deployment.url(),
        &payments,
    )
    .await;
    eprintln!(
        "{name}: {} approvals, {} deposits, {} transfers and {} payments acknowledged; {} \
         answered 503 and {} cards 07 while PostgreSQL restarted",
        seen.approved.len(),
        seen.deposits.len(),
        seen.transfers.len(),
        seen.payments.len(),
        seen.refused_503,
        seen.cards_07
    );
    // Nothing unacknowledged was half-applied: the balances are exactly what the journal and
    // the acknowledged writes say.
    let Deployment {
        fronts, database, ..
    } = deployment;
    drop(fronts);
    assert_pg_audit_clean(database.url());
}

/// Goal: see the module documentation. Method: both deployments under a mixed load of
/// ~250 requests/s each (every write with its idempotency id); the server restarted after
/// 2 s; the load goes on until both deployments are ready and acknowledge writes of every
/// kind again, and 3 s more; then every acknowledged id is counted in its database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarted_under_load_loses_nothing_and_recovers_by_itself() {
    let Some(version) = cluster() else {
        payd_pgtest::skip(
            "postgres_restarted_under_load",
            "restarting the local PostgreSQL needs root and pg_ctlcluster",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(serve) = Deployment::start("serve", false, dir.path()).await else {
        return;
    };
    let Some(roles) = Deployment::start("roles", true, dir.path()).await else {
        return;
    };
    let deployments = [serve, roles];
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for deployment in &deployments {
        for (id, cash) in [("r", "100000.00"), ("s", "0.00")] {
            let opened = http
                .post(format!("{}/accounts", deployment.url()))
                .json(&json!({"id": id, "balances": {"CASH": cash}}))
                .send()
                .await
                .unwrap();
            assert_eq!(opened.status(), 201, "{}", deployment.name);
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = deployments
        .iter()
        .zip(1_u8..)
        .map(|(deployment, test)| load(http.clone(), deployment, test, stop.clone()))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before: Vec<usize> = deployments.iter().map(Deployment::acknowledged).collect();
    assert!(
        before.iter().all(|n| *n > 0),
        "every kind acknowledged before: {before:?}"
    );
    restart(&version);
    // Every process serves again by itself: ready, and acknowledging writes of every kind.
    let back = Instant::now();
    for (deployment, before) in deployments.iter().zip(before) {
        while !(deployment.ready(&http).await && deployment.acknowledged() > before + 20) {
            assert!(
                back.elapsed() < Duration::from_secs(30),
                "{} did not recover by itself after PostgreSQL came back",
                deployment.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for load in loads {
        load.await.unwrap();
    }
    for deployment in deployments {
        check(&http, deployment).await;
    }
}
