//! Webhooks end to end: the real SQLite store, the real `WebhookDeliverer` and the real HTTP
//! sender, delivering to a real HTTP receiver (axum on 127.0.0.1:0) that behaves like a
//! careful client: it verifies every signature (and refuses bad ones), deduplicates by event
//! id, and misbehaves on purpose: it answers 500 to the first attempt of some events, and
//! answers the first attempt of others only after the deliverer's timeout (having processed
//! the event already, so the retry is a duplicate).
//!
//! Checks: every event id is delivered at least once and processed exactly once; the 500'd
//! and timed-out events were retried; the attempt log matches what the receiver saw,
//! request for request; a webhook whose secret the receiver does not know is refused on
//! every attempt and given up after its (short) retry window.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use payd_domain::gateway::backoff::Backoff;
use payd_domain::webhook::{RetryPolicy, verify};
use payd_domain::{AccountId, Amount, Balances, Category, ResourceId, Transfer};
use payd_engine::{TokioClock, WebhookDeliverer, WebhookDelivererConfig};
use payd_ports::{
    AttemptResult, DeliveryStatus, Effect, Mutation, NewAccount, NewHold, NewTransfer, NewWebhook,
    Replied, WalletStore, WebhookStore, WebhookView,
};
use payd_processors::{HttpWebhookConfig, HttpWebhookSender};
use payd_sqlite::{SqliteConfig, SqliteStore};
use serde_json::Value;
use tokio::net::TcpListener;

const SECRET: &str = "whsec_the_receivers_secret_0123";
/// The deliverer's request timeout in this test: short, but long enough that no answer of
/// a loaded machine's debug build is late unless the receiver means it.
const TIMEOUT_MS: u64 = 1_000;

fn c(cents: i64) -> Amount {
    Amount::from_cents(cents)
}

fn rid(text: &str) -> ResourceId {
    ResourceId::parse(text).unwrap()
}

fn aid(text: &str) -> AccountId {
    AccountId::parse(text).unwrap()
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// How the receiver treats the first request for an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum First {
    /// 500, without processing.
    Fails,
    /// Processes it, then answers after the deliverer gave up waiting.
    TimesOut,
    /// Processes it and answers 200.
    Succeeds,
}

fn first_for(seq: i64) -> First {
    match seq % 3 {
        1 => First::Fails,
        2 => First::TimesOut,
        _ => First::Succeeds,
    }
}

#[derive(Default)]
struct Seen {
    /// Requests with a valid signature, per event id, in arrival order of their answers.
    requests: HashMap<String, Vec<u16>>,
    /// Event ids processed (the receiver's side effect happens once per id).
    processed: HashSet<String>,
    /// How many requests were duplicates of a processed event.
    duplicates: u32,
    /// Requests refused for a bad signature, per path.
    refused: HashMap<&'static str, u32>,
    /// Bodies of processed events.
    bodies: HashMap<String, Value>,
}

type Receiver = Arc<Mutex<Seen>>;

/// The careful receiver: verify, deduplicate, then (mis)behave.
async fn receive(
    path: &'static str,
    seen: Receiver,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, timestamp, signature) = (
        header("payd-event-id"),
        header("payd-timestamp"),
        header("payd-signature"),
    );
    if verify(SECRET, &timestamp, &body, &signature, now_s(), 300).is_err() {
        *seen.lock().unwrap().refused.entry(path).or_default() += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let event: Value = serde_json::from_slice(&body).expect("JSON body");
    assert_eq!(
        event["id"],
        id.as_str(),
        "header and body name the same event"
    );
    assert_eq!(
        headers.get("content-type").unwrap(),
        "application/json",
        "JSON content type"
    );
    let seq: i64 = id.strip_prefix("evt_").unwrap().parse().unwrap();
    let (status, delay) = {
        let mut seen = seen.lock().unwrap();
        let first = !seen.requests.contains_key(&id);
        let behaviour = if first {
            first_for(seq)
        } else {
            First::Succeeds
        };
        let status = match behaviour {
            First::Fails => 500,
            First::TimesOut | First::Succeeds => {
                if seen.processed.insert(id.clone()) {
                    seen.bodies.insert(id.clone(), event);
                } else {
                    seen.duplicates += 1;
                }
                200
            }
        };
        seen.requests.entry(id).or_default().push(status);
        (status, behaviour == First::TimesOut)
    };
    if delay {
        tokio::time::sleep(Duration::from_millis(TIMEOUT_MS * 2)).await;
    }
    StatusCode::from_u16(status).unwrap()
}

async fn start_receiver(seen: Receiver) -> String {
    let good = seen.clone();
    let router = Router::new()
        .route(
            "/hook",
            post(move |headers: HeaderMap, body: Bytes| {
                receive("/hook", good.clone(), headers, body)
            }),
        )
        .route(
            "/impostor",
            post(move |headers: HeaderMap, body: Bytes| {
                receive("/impostor", seen.clone(), headers, body)
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    format!("http://{address}")
}

async fn execute(store: &SqliteStore, mutation: Mutation) {
    store.execute(mutation, None).await.unwrap();
}

/// Registers a webhook (a wallet mutation).
async fn register(store: &SqliteStore, webhook: NewWebhook) -> WebhookView {
    match store
        .execute(Mutation::CreateWebhook(webhook), None)
        .await
        .unwrap()
    {
        Replied::Fresh(Effect::Webhook { view, .. }) => view,
        other => panic!("registered, not {other:?}"),
    }
}

fn hold(id: &str) -> Mutation {
    Mutation::PlaceHold(NewHold {
        id: rid(id),
        account: aid("alice"),
        category: Category::Cash,
        amount: c(1_000),
        expires_at_ms: i64::MAX / 2,
    })
}

fn transfer(id: &str, cents: i64) -> Mutation {
    Mutation::SubmitTransfer(NewTransfer {
        transfer: Transfer {
            id: rid(id),
            from: aid("alice"),
            to: aid("bob"),
            category: Category::Cash,
            amount: c(cents),
        },
        description: Some("rent".to_owned()),
    })
}

/// Two voids, two captures, two completed transfers and a rejected one: 7 events.
async fn produce_events(store: &SqliteStore) {
    for (name, cents) in [("alice", 100_000), ("bob", 0)] {
        execute(
            store,
            Mutation::OpenAccount(NewAccount {
                id: aid(name),
                balances: Balances::with_available(c(0), c(0), c(cents)),
            }),
        )
        .await;
    }
    for name in ["h1", "h2", "h3", "h4"] {
        execute(store, hold(name)).await;
    }
    execute(store, Mutation::VoidHold { id: rid("h1") }).await;
    execute(
        store,
        Mutation::CaptureHold {
            id: rid("h2"),
            amount: None,
        },
    )
    .await;
    execute(store, Mutation::VoidHold { id: rid("h3") }).await;
    execute(
        store,
        Mutation::CaptureHold {
            id: rid("h4"),
            amount: Some(c(400)),
        },
    )
    .await;
    execute(store, transfer("t1", 500)).await;
    execute(store, transfer("t2", 10_000_000)).await;
    execute(store, transfer("t3", 700)).await;
    let settled = store.settle_transfers(100).await.unwrap();
    assert_eq!(settled.done, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_receiver_gets_every_event_signed_retried_and_processes_each_once() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(SqliteConfig::new(dir.path())).unwrap());
    let seen: Receiver = Arc::default();
    let base = start_receiver(seen.clone()).await;

    // An event before registration: never delivered.
    execute(
        &store,
        Mutation::OpenAccount(NewAccount {
            id: aid("early"),
            balances: Balances::with_available(c(0), c(0), c(1_000)),
        }),
    )
    .await;
    execute(
        &store,
        Mutation::PlaceHold(NewHold {
            id: rid("early-hold"),
            account: aid("early"),
            category: Category::Cash,
            amount: c(100),
            expires_at_ms: i64::MAX / 2,
        }),
    )
    .await;
    execute(
        &store,
        Mutation::VoidHold {
            id: rid("early-hold"),
        },
    )
    .await;

    let good = register(
        &store,
        NewWebhook {
            id: rid("good"),
            url: format!("{base}/hook"),
            secret: SECRET.to_owned(),
        },
    )
    .await;
    assert_eq!(good.after_seq, 1);
    register(
        &store,
        NewWebhook {
            id: rid("impostor"),
            url: format!("{base}/impostor"),
            secret: "not-the-receivers-secret-at-all".to_owned(),
        },
    )
    .await;

    let config = WebhookDelivererConfig {
        concurrency: 4,
        lease_batch: 16,
        poll_ms: 20,
        request_timeout_ms: TIMEOUT_MS,
        lease_margin_ms: 2_000,
        retry: RetryPolicy {
            backoff: Backoff {
                base_ms: 20,
                cap_ms: 200,
                jitter_percent: 50,
            },
            give_up_after_ms: 1_500,
        },
        error_backoff_ms: 50,
    };
    let sender = HttpWebhookSender::new(&HttpWebhookConfig {
        timeout_ms: TIMEOUT_MS,
        connect_timeout_ms: 1_000,
    })
    .unwrap();
    let deliverer = WebhookDeliverer::new(
        store.clone(),
        Arc::new(sender),
        Arc::new(TokioClock::new()),
        config,
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(deliverer.clone().run(stopped));

    produce_events(&store).await;
    deliverer.wake();
    let events = store.events(1, 1_000).await.unwrap();
    assert_eq!(events.len(), 7, "{events:?}");
    let ids: Vec<String> = events.iter().map(|e| format!("evt_{}", e.seq)).collect();

    // Wait until every good delivery is delivered and every impostor delivery failed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut done = true;
        for event in &events {
            let good = store.delivery(&rid("good"), event.seq).await.unwrap();
            let bad = store.delivery(&rid("impostor"), event.seq).await.unwrap();
            done &= good.is_some_and(|d| d.status == DeliveryStatus::Delivered)
                && bad.is_some_and(|d| d.status == DeliveryStatus::Failed);
        }
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries did not finish in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap();

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    // Every event id delivered at least once and processed exactly once; the early event
    // (before registration) never.
    let processed: HashSet<&String> = seen.processed.iter().collect();
    assert_eq!(processed, ids.iter().collect::<HashSet<_>>());
    assert!(!seen.requests.contains_key("evt_1"));
    let good_attempts = store.delivery_attempts(&rid("good"), 1_000).await.unwrap();
    for event in &events {
        let id = format!("evt_{}", event.seq);
        let requests = &seen.requests[&id];
        let mut logged: Vec<_> = good_attempts
            .iter()
            .filter(|a| a.event_seq == event.seq)
            .collect();
        logged.sort_by_key(|a| a.attempt);
        // The log matches the receiver, request for request.
        assert_eq!(
            logged.len(),
            requests.len(),
            "{id}: {logged:?} vs {requests:?}"
        );
        let numbers: Vec<u32> = logged.iter().map(|a| a.attempt).collect();
        assert_eq!(numbers, (1..=requests.len() as u32).collect::<Vec<_>>());
        assert_eq!(logged.last().unwrap().result, AttemptResult::Delivered);
        let delivery = store
            .delivery(&rid("good"), event.seq)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(delivery.attempts as usize, requests.len());
        match first_for(event.seq) {
            First::Fails => {
                assert_eq!(requests, &[500, 200], "{id}");
                assert_eq!(logged[0].status, Some(500));
                assert_eq!(logged[0].result, AttemptResult::Retrying);
            }
            First::TimesOut => {
                // Processed on the first request, whose answer came too late: the retry
                // is a duplicate, answered 200 without processing again.
                assert_eq!(requests, &[200, 200], "{id}");
                assert_eq!(logged[0].status, None);
                assert!(
                    logged[0].error.as_deref().unwrap().contains("timed out"),
                    "{:?}",
                    logged[0].error
                );
                assert_eq!(logged[0].result, AttemptResult::Retrying);
            }
            First::Succeeds => {
                assert_eq!(requests, &[200], "{id}");
                assert_eq!(logged[0].status, Some(200));
            }
        }
        // The body is the event as `GET /events` lists it.
        let body = &seen.bodies[&id];
        assert_eq!(body["type"], event.kind.as_str());
        assert_eq!(body["subject"], event.subject.as_str());
        assert_eq!(
            body["data"],
            serde_json::from_str::<Value>(&event.payload).unwrap()
        );
        assert!(body["createdAt"].as_str().unwrap().ends_with('Z'));
    }
    let timed_out = events
        .iter()
        .filter(|e| first_for(e.seq) == First::TimesOut)
        .count() as u32;
    assert_eq!(seen.duplicates, timed_out);
    assert!(
        !seen.refused.contains_key("/hook"),
        "good signatures verify"
    );

    // The impostor: refused every time, retried, then given up.
    let refused = seen.refused["/impostor"];
    let bad_attempts = store
        .delivery_attempts(&rid("impostor"), 1_000)
        .await
        .unwrap();
    assert_eq!(bad_attempts.len() as u32, refused);
    assert!(bad_attempts.iter().all(|a| a.status == Some(401)));
    for event in &events {
        let mut logged: Vec<_> = bad_attempts
            .iter()
            .filter(|a| a.event_seq == event.seq)
            .collect();
        logged.sort_by_key(|a| a.attempt);
        assert!(logged.len() >= 2, "retried: {logged:?}");
        assert_eq!(logged.last().unwrap().result, AttemptResult::GaveUp);
        assert!(
            logged[..logged.len() - 1]
                .iter()
                .all(|a| a.result == AttemptResult::Retrying)
        );
    }
    eprintln!("webhooks end to end took {:?}", started.elapsed());
}
