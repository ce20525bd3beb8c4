//! PostgreSQL restarted under load (`pg_ctlcluster ... restart`): while it is down, payd
//! answers `503 store_unavailable` (card authorizations: `07`) with nothing acknowledged;
//! when it is back, payd serves again by itself, without a restart; and every write it
//! acknowledged, before or after, is there exactly once.
//!
//! One test in a binary of its own: it restarts the machine's PostgreSQL server, and cargo
//! runs test binaries one after another, so no other test's database is in use meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers fail loudly by design.

mod support;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use payd_pgtest::{TestDatabase, count_among};
use serde_json::{Value, json};
use support::{Proc, assert_pg_audit_clean};

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

#[derive(Default)]
struct Seen {
    approved: Vec<String>,
    deposits: Vec<String>,
    refused_503: u64,
    cards_07: u64,
    other: Vec<String>,
}

/// Goal: see the module documentation. Method: card authorizations and deposits, each with
/// its idempotency id, at ~250/s through one payd; the server restarted after 2 s; the
/// load goes on 6 s more; then every acknowledged id is counted in the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarted_under_load_loses_nothing_and_recovers_by_itself() {
    let Some(version) = cluster() else {
        payd_pgtest::skip(
            "postgres_restarted_under_load",
            "restarting the local PostgreSQL needs root and pg_ctlcluster",
        );
        return;
    };
    let Some(database) = TestDatabase::create("postgres_restarted_under_load").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let payd = Proc::serve_pg(
        database.url(),
        "r",
        &dir.path().join("payd.log"),
        &["--dev"],
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let opened = http
        .post(format!("{}/accounts", payd.url))
        .json(&json!({"id": "r", "balances": {"CASH": "100000.00"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 201);

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let load = {
        let (http, url, stop, seen) = (http.clone(), payd.url.clone(), stop.clone(), seen.clone());
        tokio::spawn(async move {
            let serial = AtomicU64::new(0);
            let mut tick = tokio::time::interval(Duration::from_millis(4));
            let mut inflight = tokio::task::JoinSet::new();
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let n = serial.fetch_add(1, Ordering::Relaxed);
                let (http, url, seen) = (http.clone(), url.clone(), seen.clone());
                inflight.spawn(async move {
                    if n.is_multiple_of(2) {
                        let id = format!("card-{n}");
                        let body = json!({"id": id, "account": "r", "totalAmount": "0.01",
                                          "mcc": "5999", "merchant": "RESTART"});
                        let Ok(response) = http
                            .post(format!("{url}/transactions"))
                            .json(&body)
                            .send()
                            .await
                        else {
                            return;
                        };
                        let code =
                            response.json::<Value>().await.unwrap_or_default()["code"].clone();
                        let mut seen = seen.lock().unwrap();
                        match code.as_str() {
                            Some("00") => seen.approved.push(id),
                            Some("07") => seen.cards_07 += 1,
                            other => seen.other.push(format!("card {other:?}")),
                        }
                    } else {
                        let key = format!("dep-{n}");
                        let Ok(response) = http
                            .post(format!("{url}/accounts/r/deposits"))
                            .header("Idempotency-Key", &key)
                            .json(&json!({"category": "CASH", "amount": "0.01"}))
                            .send()
                            .await
                        else {
                            return;
                        };
                        let status = response.status().as_u16();
                        let body = response.json::<Value>().await.unwrap_or_default();
                        let mut seen = seen.lock().unwrap();
                        match status {
                            201 => seen.deposits.push(key),
                            503 if body["code"] == "store_unavailable" => seen.refused_503 += 1,
                            other => seen.other.push(format!("deposit {other} {body}")),
                        }
                    }
                });
                while inflight.try_join_next().is_some() {}
            }
            while inflight.join_next().await.is_some() {}
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = seen.lock().unwrap().approved.len();
    restart(&version);
    // payd serves again by itself: ready, and acknowledging.
    let back = Instant::now();
    loop {
        let ready = http.get(format!("{}/ready", payd.url)).send().await;
        if ready.is_ok_and(|r| r.status() == 200)
            && seen.lock().unwrap().approved.len() > before + 50
        {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "payd did not recover by itself after PostgreSQL came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(
        seen.other.is_empty(),
        "unexpected answers: {:?}",
        seen.other
    );
    assert!(
        seen.refused_503 + seen.cards_07 > 0,
        "the restart was seen as store_unavailable / 07"
    );

    let db = payd_pgtest::connect(database.url()).await.unwrap();
    let approved = count_among(
        &db,
        "SELECT COUNT(*) FROM transactions WHERE client_id = ANY($1) AND code = '00'",
        seen.approved.iter().map(String::as_str),
    )
    .await
    .unwrap();
    assert_eq!(
        approved,
        seen.approved.len(),
        "each acknowledged approval once"
    );
    let deposits = count_among(
        &db,
        "SELECT COUNT(*) FROM deposits WHERE key = ANY($1)",
        seen.deposits.iter().map(String::as_str),
    )
    .await
    .unwrap();
    assert_eq!(
        deposits,
        seen.deposits.len(),
        "each acknowledged deposit once"
    );
    // Nothing unacknowledged was half-applied: the balance is exactly what the journal and
    // the acknowledged writes say (the audit), and every approval's debit is there.
    assert_pg_audit_clean(database.url());
    eprintln!(
        "{} approvals and {} deposits acknowledged; {} deposits answered 503 and {} cards 07 \
         while PostgreSQL restarted",
        seen.approved.len(),
        seen.deposits.len(),
        seen.refused_503,
        seen.cards_07
    );
    drop(payd);
}
