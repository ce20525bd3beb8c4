//! Durability of `payd serve` as a real process: acknowledged answers survive `kill -9`, and
//! a SIGTERM drains everything in flight before exiting.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers fail loudly by design.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Proc, assert_audit_clean};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

async fn open_accounts(http: &reqwest::Client, url: &str, count: usize, cash_cents: i64) {
    for n in 0..count {
        let body = json!({"id": format!("acc-{n}"), "balances": {"CASH": cents_text(cash_cents)}});
        let response = http
            .post(format!("{url}/accounts"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    }
}

async fn cash_of(http: &reqwest::Client, url: &str, account: &str) -> Value {
    let response = http
        .get(format!("{url}/accounts/{account}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["balances"]["CASH"]["available"].clone()
}

fn cents_text(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Cents from the JSON number the API prints. `serde_json::Value` keeps it as an `f64`
/// (and drops trailing zeros), which is exact enough for test balances far below 2^53 cents.
fn cents_of(value: &Value) -> i64 {
    let units = value.as_f64().expect("a JSON number");
    (units * 100.0).round() as i64
}

#[derive(Clone)]
struct Sent {
    account: String,
    amount_cents: i64,
}

fn transaction_body(id: &str, sent: &Sent) -> Value {
    // MCC 9999 maps to CASH, so which balance pays is never in doubt.
    json!({"id": id, "account": sent.account, "totalAmount": cents_text(sent.amount_cents),
           "mcc": "9999", "merchant": "CRASH TEST SHOP          SAO PAULO BR"})
}

async fn post_transaction(
    http: &reqwest::Client,
    url: &str,
    id: &str,
    sent: &Sent,
) -> Option<String> {
    let response = http
        .post(format!("{url}/transactions"))
        .json(&transaction_body(id, sent))
        .send()
        .await
        .ok()?;
    let body: Value = response.json().await.ok()?;
    Some(body["code"].as_str()?.to_owned())
}

/// Goal: every `00` acknowledged before a `kill -9` is still debited exactly once after a
/// restart. Method: 32 concurrent clients stream id-carrying transactions at 20 accounts;
/// payd is killed mid-load; after a restart every id (answered or not) is replayed, and each
/// account's balance must equal its initial balance minus the amounts whose final answer is
/// `00`, with every acknowledged answer replaying unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_transactions_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut payd = Proc::serve(&data, &["--durability", "strict"]);
    let http = client();
    let accounts = 20;
    let initial_cents = 50_000;
    open_accounts(&http, &payd.url, accounts, initial_cents).await;

    let acknowledged = Arc::new(std::sync::Mutex::new(HashMap::<String, String>::new()));
    let attempted = Arc::new(std::sync::Mutex::new(HashMap::<String, Sent>::new()));
    let answered = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for worker in 0..32 {
        let (http, url) = (http.clone(), payd.url.clone());
        let (acknowledged, attempted) = (acknowledged.clone(), attempted.clone());
        let (answered, stop) = (answered.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            for n in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let id = format!("w{worker}-{n}");
                let sent = Sent {
                    account: format!("acc-{}", (worker * 7 + n) % accounts),
                    amount_cents: 100 + ((worker * 31 + n * 17) % 900) as i64,
                };
                attempted.lock().unwrap().insert(id.clone(), sent.clone());
                match post_transaction(&http, &url, &id, &sent).await {
                    Some(code) => {
                        acknowledged.lock().unwrap().insert(id, code);
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    // The server died under us: this one's fate is unknown until replayed.
                    None => break,
                }
            }
        }));
    }
    // Kill once a good amount of load has been answered, while requests are in flight.
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered.load(Ordering::Relaxed) < 3_000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    payd.kill_9();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let attempted = attempted.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 1_000,
        "too little load before the kill: {}",
        acknowledged.len()
    );
    assert!(
        acknowledged.values().any(|c| c == "00"),
        "no approval acknowledged"
    );
    assert!(
        acknowledged.values().all(|c| c == "00" || c == "51"),
        "unexpected codes"
    );

    let in_flight = attempted.len() - acknowledged.len();
    eprintln!(
        "kill -9 after {} acknowledged answers ({} approved) with {in_flight} requests in flight",
        acknowledged.len(),
        acknowledged.values().filter(|c| *c == "00").count()
    );
    assert!(
        in_flight > 0,
        "the kill should land while requests are in flight"
    );

    let payd = Proc::serve(&data, &["--durability", "strict"]);
    let http = client();
    // Balances before any replay: acknowledged approvals must already be there.
    let mut before = HashMap::new();
    for n in 0..accounts {
        let account = format!("acc-{n}");
        before.insert(
            account.clone(),
            cents_of(&cash_of(&http, &payd.url, &account).await),
        );
    }
    let mut final_codes = HashMap::new();
    for (id, sent) in &attempted {
        let code = post_transaction(&http, &payd.url, id, sent)
            .await
            .expect("answer after restart");
        if let Some(first) = acknowledged.get(id) {
            assert_eq!(
                &code, first,
                "acknowledged {id} replays differently after the crash"
            );
        }
        final_codes.insert(id.clone(), code);
    }
    // Replaying acknowledged ids debits nothing: only unanswered ids may have been new.
    let unanswered_approved: HashMap<String, i64> = final_codes
        .iter()
        .filter(|(id, code)| !acknowledged.contains_key(*id) && *code == "00")
        .fold(HashMap::new(), |mut sums, (id, _)| {
            let sent = &attempted[id];
            *sums.entry(sent.account.clone()).or_default() += sent.amount_cents;
            sums
        });
    for n in 0..accounts {
        let account = format!("acc-{n}");
        let approved: i64 = final_codes
            .iter()
            .filter(|(id, code)| *code == "00" && attempted[*id].account == account)
            .map(|(id, _)| attempted[id].amount_cents)
            .sum();
        let now = cents_of(&cash_of(&http, &payd.url, &account).await);
        assert_eq!(
            now,
            initial_cents - approved,
            "{account}: balance != initial - approved"
        );
        let ack_approved: i64 = acknowledged
            .iter()
            .filter(|(id, code)| *code == "00" && attempted[*id].account == account)
            .map(|(id, _)| attempted[id].amount_cents)
            .sum();
        assert!(
            before[&account] <= initial_cents - ack_approved,
            "{account}: an acknowledged approval was lost in the crash"
        );
        let newly = unanswered_approved.get(&account).copied().unwrap_or(0);
        assert!(
            now >= before[&account] - newly,
            "{account}: a replay debited twice"
        );
    }
    assert_audit_clean(&data);
}

/// Goal: SIGTERM stops payd cleanly (exit 0) without losing what it acknowledged.
/// Method: drive transactions, send SIGTERM while they run, then restart and compare
/// balances with the acknowledged approvals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut payd = Proc::serve(&data, &["--durability", "relaxed"]);
    let http = client();
    open_accounts(&http, &payd.url, 1, 1_000_000).await;
    let sent = Sent {
        account: "acc-0".to_owned(),
        amount_cents: 250,
    };
    let mut approved = 0;
    for n in 0..200 {
        if post_transaction(&http, &payd.url, &format!("t{n}"), &sent)
            .await
            .as_deref()
            == Some("00")
        {
            approved += 1;
        }
    }
    assert_eq!(approved, 200);
    let status = payd.terminate();
    assert!(status.success(), "payd exited with {status}");
    let payd = Proc::serve(&data, &["--durability", "relaxed"]);
    let cash = cents_of(&cash_of(&http, &payd.url, "acc-0").await);
    assert_eq!(cash, 1_000_000 - 200 * 250);
    assert_audit_clean(&data);
}
