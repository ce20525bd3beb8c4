//! The transactional outbox on PostgreSQL: a payment's message is written in the commit
//! that accepts it (and only with the outbox on), a relay removes messages only after its
//! publisher returned `Ok`, and two relays never take the same message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use payd_domain::{Amount, CorrelationId};
use payd_pgtest::TestDatabase;
use payd_ports::{
    Intake, NewPayment, OutboxMessage, OutboxStore, PAYMENTS_QUEUE, PaymentStore, PublishError,
    Publisher,
};

use payd_postgres::PgStore;
use support::Pg;

/// A broker double: records what it was given; refuses everything while `down`; takes
/// `pause` per publish (a slow confirm).
#[derive(Default)]
struct Broker {
    published: Mutex<Vec<OutboxMessage>>,
    down: std::sync::atomic::AtomicBool,
    pause: Duration,
}

#[async_trait]
impl Publisher for Broker {
    async fn publish(&self, messages: &[OutboxMessage]) -> Result<(), PublishError> {
        tokio::time::sleep(self.pause).await;
        if self.down.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(PublishError("the broker is down".to_owned()));
        }
        self.published.lock().unwrap().extend_from_slice(messages);
        Ok(())
    }
}

async fn open(database: &TestDatabase, outbox: bool) -> Arc<PgStore> {
    let mut config = Pg::config(database);
    config.outbox = outbox;
    Arc::new(PgStore::open(config).await.unwrap())
}

/// Accepts payments number `from..to`; their ids.
async fn accept(store: &PgStore, from: u32, to: u32) -> Vec<String> {
    let mut ids = Vec::new();
    for i in from..to {
        let id = format!("00000000-0000-4000-8000-{i:012x}");
        let payment = NewPayment {
            id: CorrelationId::parse(&id).unwrap(),
            amount: Amount::from_cents(1990),
            requested_at_ms: 1_700_000_000_000,
            payer: None,
        };
        assert_eq!(
            store.accept_payment(payment).await.unwrap(),
            Intake::Accepted
        );
        ids.push(id);
    }
    ids
}

// Goal: with the outbox on, each accepted payment has its message, and a relay removes
// messages only once the publisher took them: a refused publish leaves every one in place,
// an accepted one removes exactly what was published, oldest first. Without the outbox,
// intake writes none.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_leave_the_outbox_only_once_published() {
    let Some(database) = TestDatabase::create("outbox_only_once_published").await else {
        return;
    };
    let plain = open(&database, false).await;
    accept(&plain, 0, 3).await;
    assert_eq!(plain.outbox_backlog().await.unwrap().pending, 0);
    plain.shutdown().await;

    let store = open(&database, true).await;
    let ids = accept(&store, 3, 23).await;
    let backlog = store.outbox_backlog().await.unwrap();
    assert_eq!(backlog.pending, 20);
    assert!(backlog.oldest_ms.is_some());

    let broker = Broker::default();
    broker
        .down
        .store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(store.relay_outbox(100, &broker).await.is_err());
    assert_eq!(
        store.outbox_backlog().await.unwrap().pending,
        20,
        "nothing lost"
    );

    broker
        .down
        .store(false, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(store.relay_outbox(8, &broker).await.unwrap(), 8);
    assert_eq!(store.relay_outbox(100, &broker).await.unwrap(), 12);
    assert_eq!(store.relay_outbox(100, &broker).await.unwrap(), 0);
    assert_eq!(store.outbox_backlog().await.unwrap().pending, 0);
    let published = broker.published.lock().unwrap().clone();
    let bodies: Vec<&str> = published.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(
        bodies, ids,
        "each payment's message once, in acceptance order"
    );
    assert!(published.iter().all(|m| m.queue == PAYMENTS_QUEUE));
    store.shutdown().await;
}

// Goal: relays of several workers never take the same message. Method: four relays with a
// slow publisher (each holds its rows 50 ms) drain 500 messages; every message published
// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_relays_never_take_the_same_message() {
    let Some(database) = TestDatabase::create("outbox_concurrent_relays").await else {
        return;
    };
    let store = open(&database, true).await;
    let ids = accept(&store, 0, 500).await;
    let broker = Arc::new(Broker {
        pause: Duration::from_millis(50),
        ..Broker::default()
    });
    let relays: Vec<_> = (0..4)
        .map(|_| {
            let (store, broker) = (store.clone(), broker.clone());
            tokio::spawn(async move {
                let mut total = 0;
                loop {
                    let n = store.relay_outbox(40, &*broker).await.unwrap();
                    if n == 0 && store.outbox_backlog().await.unwrap().pending == 0 {
                        return total;
                    }
                    total += n;
                }
            })
        })
        .collect();
    let mut total = 0;
    for relay in relays {
        total += relay.await.unwrap();
    }
    assert_eq!(total, 500);
    let published = broker.published.lock().unwrap().clone();
    let unique: HashSet<&str> = published.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(published.len(), 500, "no message published twice");
    assert_eq!(unique, ids.iter().map(String::as_str).collect());
    store.shutdown().await;
}
