//! The wallet under `kill -9`: a mixed load of transfers, pay-ins (through two real
//! processor simulators) and card authorizations is cut by SIGKILL; after a restart every
//! acknowledged operation is there exactly once, balances are exactly what the surviving
//! operations imply, and `payd audit` finds the store consistent.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers fail loudly by design.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Proc, assert_audit_clean, get_json};

const ACCOUNTS: usize = 8;
const INITIAL_CENTS: i64 = 10_000_000;

fn serve(data: &Path, default: &Proc, fallback: &Proc) -> Proc {
    Proc::serve(
        data,
        &[
            "--durability",
            "strict",
            "--default-processor-url",
            &default.url,
            "--fallback-processor-url",
            &fallback.url,
        ],
    )
}

fn cents_text(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn cents_of(value: &Value) -> i64 {
    (value.as_f64().expect("a JSON number") * 100.0).round() as i64
}

fn account(n: usize) -> String {
    format!("acc-{}", n % ACCOUNTS)
}

/// What a client sent, and whether payd acknowledged it.
#[derive(Clone, Debug)]
enum Op {
    Transfer {
        from: String,
        to: String,
        cents: i64,
    },
    PayIn {
        account: String,
        cents: i64,
    },
    Card {
        account: String,
        cents: i64,
    },
}

impl Op {
    fn request(&self, id: &str) -> (&'static str, Value) {
        match self {
            Op::Transfer { from, to, cents } => (
                "/transfers",
                json!({"id": id, "from": from, "to": to, "amount": cents_text(*cents)}),
            ),
            Op::PayIn { account, cents } => (
                "/payments",
                json!({"correlationId": id, "amount": cents_text(*cents), "account": account}),
            ),
            Op::Card { account, cents } => (
                "/transactions",
                json!({"id": id, "account": account, "totalAmount": cents_text(*cents),
                       "mcc": "9999", "merchant": "WALLET CRASH SHOP        SAO PAULO BR"}),
            ),
        }
    }
}

/// The acknowledged answer: the status and, for cards, the code.
type Ack = (u16, Option<String>);

async fn send(http: &reqwest::Client, url: &str, id: &str, op: &Op) -> Option<Ack> {
    let (path, body) = op.request(id);
    let response = http
        .post(format!("{url}{path}"))
        .json(&body)
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    let body: Value = response.json().await.ok()?;
    Some((status, body["code"].as_str().map(str::to_owned)))
}

fn uuid(worker: usize, n: usize) -> String {
    format!("00000000-0000-4000-8000-{worker:04x}{n:08x}")
}

/// Goal: every acknowledged wallet operation survives `kill -9` exactly once, and the
/// ledger stays consistent. Method: 24 clients send transfers (client ids), pay-ins
/// (correlation ids) and card transactions (ids) to 8 accounts; payd is killed mid-load and
/// restarted; then every id ever sent is looked up or replayed: acknowledged ones must exist
/// (with the acknowledged answer), and each account's balance must equal its initial
/// balance minus approved card debits and booked pay-ins, plus/minus completed transfers.
/// `payd audit` must pass on the restarted store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_wallet_operations_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let default = Proc::processor_sim("default", dir.path());
    let fallback = Proc::processor_sim("fallback", dir.path());
    let mut payd = serve(&data, &default, &fallback);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for n in 0..ACCOUNTS {
        let body = json!({"id": account(n), "balances": {"CASH": cents_text(INITIAL_CENTS)}});
        let response = http
            .post(format!("{}/accounts", payd.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }

    let sent = Arc::new(Mutex::new(HashMap::<String, Op>::new()));
    let acked = Arc::new(Mutex::new(HashMap::<String, Ack>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for worker in 0..24 {
        let (http, url) = (http.clone(), payd.url.clone());
        let (sent, acked, stop) = (sent.clone(), acked.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            for n in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let cents = 100 + ((worker * 37 + n * 13) % 5_000) as i64;
                let (id, op) = match (worker + n) % 3 {
                    0 => (
                        format!("tr-{worker}-{n}"),
                        Op::Transfer {
                            from: account(worker + n),
                            to: account(worker + n + 1 + n % 3),
                            cents,
                        },
                    ),
                    1 => (
                        uuid(worker, n),
                        Op::PayIn {
                            account: account(worker * 3 + n),
                            cents,
                        },
                    ),
                    _ => (
                        format!("card-{worker}-{n}"),
                        Op::Card {
                            account: account(worker * 5 + n),
                            cents,
                        },
                    ),
                };
                sent.lock().unwrap().insert(id.clone(), op.clone());
                match send(&http, &url, &id, &op).await {
                    Some(ack) if ack.0 < 300 => {
                        acked.lock().unwrap().insert(id, ack);
                    }
                    Some(ack) => panic!("{id}: refused {ack:?}"),
                    // The server died under us: its fate is settled by the lookups below.
                    None => break,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    payd.kill_9();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let sent = sent.lock().unwrap().clone();
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 300,
        "too little load before the kill: {}",
        acked.len()
    );

    let payd = serve(&data, &default, &fallback);
    let url = payd.url.clone();
    // Let the restarted engine settle transfers and resolve every pay-in.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut expected = [INITIAL_CENTS; ACCOUNTS];
    let index = |name: &str| name.trim_start_matches("acc-").parse::<usize>().unwrap();
    let (mut transfers, mut pay_ins, mut cards) = (0, 0, 0);
    for (id, op) in &sent {
        let was_acked = acked.get(id);
        match op {
            Op::Transfer { from, to, cents } => {
                let view = loop {
                    let response = http
                        .get(format!("{url}/transfers/{id}"))
                        .send()
                        .await
                        .unwrap();
                    if response.status() == 404 {
                        assert!(was_acked.is_none(), "acknowledged transfer {id} lost");
                        break None;
                    }
                    let view: Value = response.json().await.unwrap();
                    if view["status"] != "pending" {
                        break Some(view);
                    }
                    assert!(Instant::now() < deadline, "transfer {id} never settled");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                };
                if let Some(view) = view {
                    transfers += 1;
                    if view["status"] == "completed" {
                        expected[index(from)] -= cents;
                        expected[index(to)] += cents;
                    }
                    // Retrying the same request replays; it never moves money again.
                    let (path, body) = op.request(id);
                    let retry = http
                        .post(format!("{url}{path}"))
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(retry.status(), 202, "{id}");
                    assert_eq!(
                        retry
                            .headers()
                            .get("idempotent-replayed")
                            .map(|v| v.as_bytes()),
                        Some(&b"true"[..]),
                        "{id}"
                    );
                }
            }
            Op::PayIn { account, cents } => {
                let record = loop {
                    let response = http
                        .get(format!("{url}/payments/{id}"))
                        .send()
                        .await
                        .unwrap();
                    if response.status() == 404 {
                        assert!(was_acked.is_none(), "acknowledged pay-in {id} lost");
                        break None;
                    }
                    let record: Value = response.json().await.unwrap();
                    if record["status"] == "succeeded" || record["status"] == "failed" {
                        break Some(record);
                    }
                    assert!(
                        Instant::now() < deadline,
                        "pay-in {id} never resolved: {record}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                };
                if let Some(record) = record {
                    pay_ins += 1;
                    let hold = &record["hold"];
                    assert_eq!(hold["account"], account.as_str());
                    if record["status"] == "succeeded" {
                        assert_eq!(hold["status"], "captured", "{id}");
                        expected[index(account)] -= cents;
                    } else {
                        assert_eq!(hold["status"], "voided", "{id}");
                    }
                }
            }
            Op::Card { account, cents } => {
                // Every id is replayed (idempotent): unanswered ones get decided now at the
                // latest, answered ones must replay their acknowledged code.
                let answer = send(&http, &url, id, op)
                    .await
                    .expect("answer after restart");
                if let Some(ack) = was_acked {
                    assert_eq!(answer.1, ack.1, "acknowledged {id} replays differently");
                }
                if answer.1.as_deref() == Some("00") {
                    expected[index(account)] -= cents;
                }
                cards += 1;
            }
        }
    }
    eprintln!(
        "sent {}, acknowledged {}; after restart: {transfers} transfers, {pay_ins} pay-ins, {cards} card ids",
        sent.len(),
        acked.len()
    );
    for (n, expected) in expected.iter().enumerate() {
        let body = get_json(&http, &format!("{url}/accounts/{}", account(n))).await;
        let cash = &body["balances"]["CASH"];
        assert_eq!(
            cents_of(&cash["held"]),
            0,
            "{}: a hold left behind",
            account(n)
        );
        assert_eq!(
            cents_of(&cash["available"]),
            *expected,
            "{}: an operation applied twice or lost",
            account(n)
        );
    }
    assert_audit_clean(&data);
}
