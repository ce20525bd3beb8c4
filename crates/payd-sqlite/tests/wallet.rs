//! The wallet on the SQLite store: holds, withdrawals, transfers, pay-ins, stored
//! idempotent responses and the outbox, through the `WalletStore` and `PaymentStore` ports,
//! on a real database. Every test ends with the offline audit of the store's invariants.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use payd_domain::gateway::Processor;
use payd_domain::gateway::payment::PaymentState;
use payd_domain::{
    AccountId, Amount, Balances, Category, CorrelationId, EventKind, HoldStatus, RejectReason,
    ResourceId, Transfer, TransferStatus,
};
use payd_ports::testkit::{c, request as auth};
use payd_ports::{
    Claim, Effect, HoldView, Intake, LedgerError, LedgerStore, Mutation, NewAccount, NewHold,
    NewPayment, NewTransfer, NewWithdrawal, Payer, PaymentStore, Replied, StoredResponse,
    Transition, WalletStore,
};
use payd_sqlite::{SqliteConfig, SqliteStore};
use tempfile::TempDir;

fn id(text: &str) -> AccountId {
    AccountId::parse(text).unwrap()
}

fn rid(text: &str) -> ResourceId {
    ResourceId::parse(text).unwrap()
}

fn open(dir: &TempDir) -> Arc<SqliteStore> {
    Arc::new(SqliteStore::open(SqliteConfig::new(dir.path())).unwrap())
}

/// Runs the offline audit and fails the test on any violation.
fn audit_clean(store: &SqliteStore) {
    let report = payd_sqlite::audit::audit(store.path()).unwrap();
    assert!(report.is_clean(), "audit:\n{report}");
}

async fn open_account(store: &SqliteStore, name: &str, cash_cents: i64) {
    store
        .execute(
            Mutation::OpenAccount(NewAccount {
                id: id(name),
                balances: Balances::with_available(c(0), c(0), c(cash_cents)),
            }),
            None,
        )
        .await
        .unwrap();
}

/// (available, held) of CASH.
async fn cash(store: &SqliteStore, name: &str) -> (i64, i64) {
    let balance = store
        .account(&id(name))
        .await
        .unwrap()
        .unwrap()
        .balances
        .get(Category::Cash);
    (balance.available.cents(), balance.held.cents())
}

async fn place(
    store: &SqliteStore,
    hold: &str,
    account: &str,
    cents: i64,
    expires_at_ms: i64,
) -> Result<HoldView, LedgerError> {
    let replied = store
        .execute(
            Mutation::PlaceHold(NewHold {
                id: rid(hold),
                account: id(account),
                category: Category::Cash,
                amount: c(cents),
                expires_at_ms,
            }),
            None,
        )
        .await?;
    match replied {
        Replied::Fresh(Effect::Hold(view)) => Ok(view),
        other => panic!("unexpected {other:?}"),
    }
}

async fn hold_step(store: &SqliteStore, mutation: Mutation) -> Result<HoldView, LedgerError> {
    match store.execute(mutation, None).await? {
        Replied::Fresh(Effect::Hold(view)) => Ok(view),
        other => panic!("unexpected {other:?}"),
    }
}

fn transfer(name: &str, from: &str, to: &str, cents: i64) -> Mutation {
    Mutation::SubmitTransfer(NewTransfer {
        transfer: Transfer {
            id: rid(name),
            from: id(from),
            to: id(to),
            category: Category::Cash,
            amount: c(cents),
        },
        description: None,
    })
}

const FAR_MS: i64 = i64::MAX / 2;

// Goal: a hold moves money from available to held atomically with the check; capture
// (partial) sends the captured part out and returns the rest; void returns everything;
// final states stay final; the journal explains both buckets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_capture_and_void() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    open_account(&store, "h", 10_000).await;

    assert_eq!(
        place(&store, "too-much", "h", 10_001, FAR_MS).await,
        Err(LedgerError::InsufficientFunds)
    );
    assert_eq!(
        cash(&store, "h").await,
        (10_000, 0),
        "a refusal changes nothing"
    );
    assert_eq!(
        place(&store, "nobody", "ghost", 1, FAR_MS).await,
        Err(LedgerError::AccountNotFound)
    );

    let first = place(&store, "h1", "h", 6_000, FAR_MS).await.unwrap();
    assert_eq!(first.hold.status, HoldStatus::Active);
    assert_eq!(cash(&store, "h").await, (4_000, 6_000));
    assert_eq!(
        place(&store, "h1", "h", 1, FAR_MS).await,
        Err(LedgerError::ResourceExists)
    );
    assert_eq!(
        place(&store, "h2", "h", 4_001, FAR_MS).await,
        Err(LedgerError::InsufficientFunds),
        "held money is not available"
    );
    place(&store, "h2", "h", 4_000, FAR_MS).await.unwrap();
    assert_eq!(cash(&store, "h").await, (0, 10_000));

    let captured = hold_step(
        &store,
        Mutation::CaptureHold {
            id: rid("h1"),
            amount: Some(c(2_500)),
        },
    )
    .await
    .unwrap();
    assert_eq!(captured.hold.status, HoldStatus::Captured);
    assert_eq!(captured.hold.captured, c(2_500));
    assert_eq!(cash(&store, "h").await, (3_500, 4_000));
    assert_eq!(
        hold_step(&store, Mutation::VoidHold { id: rid("h1") }).await,
        Err(LedgerError::HoldNotActive(HoldStatus::Captured))
    );
    assert_eq!(
        hold_step(
            &store,
            Mutation::CaptureHold {
                id: rid("h2"),
                amount: Some(c(4_001))
            }
        )
        .await,
        Err(LedgerError::CaptureExceedsHold)
    );
    let voided = hold_step(&store, Mutation::VoidHold { id: rid("h2") })
        .await
        .unwrap();
    assert_eq!(voided.hold.status, HoldStatus::Voided);
    assert_eq!(cash(&store, "h").await, (7_500, 0));
    assert_eq!(
        hold_step(
            &store,
            Mutation::CaptureHold {
                id: rid("h2"),
                amount: None
            }
        )
        .await,
        Err(LedgerError::HoldNotActive(HoldStatus::Voided))
    );
    assert_eq!(
        hold_step(&store, Mutation::VoidHold { id: rid("nope") }).await,
        Err(LedgerError::HoldNotFound)
    );
    assert_eq!(store.hold(&rid("h1")).await.unwrap(), Some(captured));

    let kinds: Vec<EventKind> = store
        .events(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, [EventKind::HoldCaptured, EventKind::HoldVoided]);
    audit_clean(&store);
}

// Goal: an expired hold returns its money and can never be captured, whether the sweeper
// got to it first or the capture did; expiry survives a restart (it is stored, not timed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_expire_and_cannot_be_captured() {
    let dir = TempDir::new().unwrap();
    {
        let store = open(&dir);
        open_account(&store, "e", 1_000).await;
        // Already due: expires_at in the past.
        place(&store, "past", "e", 300, 1).await.unwrap();
        place(&store, "later", "e", 200, FAR_MS).await.unwrap();
        place(&store, "swept", "e", 100, 2).await.unwrap();
        assert_eq!(cash(&store, "e").await, (400, 600));
        // The capture finds it due: released, refused.
        assert_eq!(
            hold_step(
                &store,
                Mutation::CaptureHold {
                    id: rid("past"),
                    amount: None
                }
            )
            .await,
            Err(LedgerError::HoldExpired)
        );
        assert_eq!(cash(&store, "e").await, (700, 300));
        store.shutdown();
    }
    // After a restart the sweeper expires what is due, and only that.
    let store = open(&dir);
    let sweep = store.expire_holds(10, 100).await.unwrap();
    assert_eq!(sweep.done, 1);
    assert_eq!(sweep.next_due_ms, Some(FAR_MS));
    assert_eq!(cash(&store, "e").await, (800, 200));
    for expired in ["past", "swept"] {
        let view = store.hold(&rid(expired)).await.unwrap().unwrap();
        assert_eq!(view.hold.status, HoldStatus::Expired);
        assert_eq!(
            hold_step(
                &store,
                Mutation::CaptureHold {
                    id: rid(expired),
                    amount: None
                }
            )
            .await,
            Err(LedgerError::HoldNotActive(HoldStatus::Expired))
        );
    }
    assert_eq!(store.expire_holds(10, 100).await.unwrap().done, 0, "final");
    audit_clean(&store);
}

// Goal: transfers are accepted pending, settle in acceptance order (so one funded by an
// earlier transfer succeeds, one after a draining transfer is rejected), with reasons.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_settle_in_order_with_reasons() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    open_account(&store, "a", 1_000).await;
    open_account(&store, "b", 0).await;
    for mutation in [
        transfer("t1", "a", "b", 1_000),
        transfer("t2", "b", "a", 600),
        transfer("t3", "a", "b", 601),
        transfer("t4", "a", "ghost", 1),
    ] {
        match store.execute(mutation, None).await.unwrap() {
            Replied::Fresh(Effect::Transfer(view)) => {
                assert_eq!(view.status, TransferStatus::Pending);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        store.execute(transfer("t1", "a", "b", 1), None).await,
        Err(LedgerError::ResourceExists)
    );
    assert!(matches!(
        store.execute(transfer("same", "a", "a", 1), None).await,
        Err(LedgerError::Invalid(_))
    ));
    assert_eq!(cash(&store, "b").await, (0, 0), "nothing moves at intake");
    assert_eq!(store.pending_transfers().await.unwrap(), 4);
    let sweep = store.settle_transfers(3).await.unwrap();
    assert_eq!((sweep.done, sweep.more), (3, true));
    let sweep = store.settle_transfers(3).await.unwrap();
    assert_eq!((sweep.done, sweep.more), (1, false));
    let status = |name: &'static str| {
        let store = store.clone();
        async move { store.transfer(&rid(name)).await.unwrap().unwrap().status }
    };
    assert_eq!(status("t1").await, TransferStatus::Completed);
    assert_eq!(status("t2").await, TransferStatus::Completed);
    assert_eq!(
        status("t3").await,
        TransferStatus::Rejected(RejectReason::InsufficientFunds)
    );
    assert_eq!(
        status("t4").await,
        TransferStatus::Rejected(RejectReason::AccountNotFound)
    );
    assert_eq!(cash(&store, "a").await, (600, 0));
    assert_eq!(cash(&store, "b").await, (400, 0));
    let events = store.events(0, 100).await.unwrap();
    assert_eq!(events.len(), 4);
    assert_eq!(events[2].kind, EventKind::TransferRejected);
    assert!(events[2].payload.contains("insufficient_funds"));
    assert_eq!(store.settle_transfers(10).await.unwrap().done, 0, "final");
    audit_clean(&store);
}

// Goal: withdrawals need cover, and leave through the system account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawals() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    open_account(&store, "w", 500).await;
    let withdraw = |name: &str, cents| {
        Mutation::Withdraw(NewWithdrawal {
            id: rid(name),
            account: id("w"),
            category: Category::Cash,
            amount: c(cents),
        })
    };
    let receipt = match store.execute(withdraw("w1", 200), None).await.unwrap() {
        Replied::Fresh(Effect::Withdrawal(receipt)) => receipt,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(receipt.available_after, c(300));
    assert_eq!(
        store.execute(withdraw("w2", 301), None).await,
        Err(LedgerError::InsufficientFunds)
    );
    assert_eq!(cash(&store, "w").await, (300, 0));
    audit_clean(&store);
}

fn render(outcome: &Result<Effect, LedgerError>) -> StoredResponse {
    StoredResponse {
        status: if outcome.is_ok() { 201 } else { 422 },
        body: format!("{outcome:?}").into_bytes(),
    }
}

fn claim(key: &str, fingerprint: &str) -> Option<Claim> {
    Some(Claim {
        key: key.to_owned(),
        fingerprint: fingerprint.to_owned(),
        expires_at_ms: Some(1_000),
        render,
    })
}

// Goal: under a claim, the first response (success or refusal) is stored in the same
// commit as the effect and replayed; another fingerprint is refused; the key is purged
// after its retention and then applies afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_replay_the_first_response() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    open_account(&store, "i", 1_000).await;
    let first = store
        .execute(transfer("ti", "i", "ghost", 10), claim("key:k1", "fp"))
        .await
        .unwrap();
    let Replied::Fresh(Effect::Transfer(view)) = &first else {
        panic!("{first:?}")
    };
    let stored = render(&Ok(Effect::Transfer(view.clone())));
    // Same key, same fingerprint, even another body: the stored bytes, nothing applied.
    assert_eq!(
        store
            .execute(transfer("ti-2", "i", "ghost", 10), claim("key:k1", "fp"))
            .await
            .unwrap(),
        Replied::Replayed(stored)
    );
    assert_eq!(store.pending_transfers().await.unwrap(), 1);
    assert_eq!(
        store
            .execute(transfer("ti-3", "i", "ghost", 10), claim("key:k1", "other"))
            .await,
        Err(LedgerError::IdempotencyKeyReused)
    );
    // A refusal is stored too.
    let refused = Mutation::PlaceHold(NewHold {
        id: rid("big"),
        account: id("i"),
        category: Category::Cash,
        amount: c(5_000),
        expires_at_ms: FAR_MS,
    });
    assert_eq!(
        store.execute(refused.clone(), claim("key:k2", "fp")).await,
        Err(LedgerError::InsufficientFunds)
    );
    // Even once funds exist, the retry gets the first answer.
    store
        .deposit(payd_ports::DepositRequest {
            key: payd_domain::IdempotencyKey::parse("d").unwrap(),
            account: id("i"),
            category: Category::Cash,
            amount: c(10_000),
        })
        .await
        .unwrap();
    let replay = store
        .execute(refused.clone(), claim("key:k2", "fp"))
        .await
        .unwrap();
    assert_eq!(
        replay,
        Replied::Replayed(render(&Err(LedgerError::InsufficientFunds)))
    );
    assert_eq!(store.hold(&rid("big")).await.unwrap(), None);
    // Retention over: purged, and the key applies afresh.
    let sweep = store.purge_idempotency(1_000, 100).await.unwrap();
    assert_eq!(sweep.done, 2);
    assert!(matches!(
        store.execute(refused, claim("key:k2", "fp")).await,
        Ok(Replied::Fresh(Effect::Hold(_)))
    ));
    audit_clean(&store);
}

fn correlation(n: u64) -> CorrelationId {
    CorrelationId::parse(&format!("00000000-0000-4000-8000-{n:012x}")).unwrap()
}

async fn pay_in(
    store: &SqliteStore,
    n: u64,
    account: &str,
    cents: i64,
) -> Result<Intake, LedgerError> {
    store
        .accept_payment(NewPayment {
            id: correlation(n),
            amount: c(cents),
            requested_at_ms: 1_000,
            payer: Some(Payer {
                account: id(account),
                category: Category::Cash,
                hold: rid(&format!("pay-hold-{n}-{cents}")),
            }),
        })
        .await
}

async fn finish(store: &SqliteStore, n: u64, next: PaymentState) {
    let record = store.payment(&correlation(n)).await.unwrap().unwrap();
    let applied = store
        .apply_transitions(vec![Transition {
            id: correlation(n),
            expected_version: record.version,
            next,
            counts_attempt: true,
        }])
        .await
        .unwrap();
    assert_eq!(applied, [true]);
}

// Goal: a pay-in holds its amount at intake (or is refused, queueing nothing), is captured
// when booked, voided when it failed, stays held while unknown; its hold cannot be touched
// directly; duplicates are recognized by account and amount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_ins_follow_their_payment() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    open_account(&store, "p", 1_000).await;
    assert_eq!(pay_in(&store, 1, "p", 400).await, Ok(Intake::Accepted));
    assert_eq!(pay_in(&store, 2, "p", 500).await, Ok(Intake::Accepted));
    assert_eq!(
        pay_in(&store, 3, "p", 101).await,
        Err(LedgerError::InsufficientFunds)
    );
    assert_eq!(
        store.payment(&correlation(3)).await.unwrap(),
        None,
        "nothing queued"
    );
    assert_eq!(
        pay_in(&store, 4, "ghost", 1).await,
        Err(LedgerError::AccountNotFound)
    );
    assert_eq!(cash(&store, "p").await, (100, 900));
    // A retry (new hold id, same account and amount) is a duplicate; another amount is not.
    assert_eq!(pay_in(&store, 1, "p", 400).await, Ok(Intake::Duplicate));
    assert_eq!(
        pay_in(&store, 1, "p", 401).await,
        Err(LedgerError::IdempotencyKeyReused)
    );
    assert_eq!(cash(&store, "p").await, (100, 900), "no second hold");

    let hold_of = |n| {
        let store = store.clone();
        async move {
            let record = store.payment(&correlation(n)).await.unwrap().unwrap();
            store.hold(&record.hold.unwrap()).await.unwrap().unwrap()
        }
    };
    let held = hold_of(1).await;
    assert_eq!(held.hold.status, HoldStatus::Active);
    assert_eq!(
        held.hold.expires_at_ms, None,
        "never expires while the payment is open"
    );
    assert_eq!(
        store
            .execute(
                Mutation::VoidHold {
                    id: held.hold.id.clone()
                },
                None
            )
            .await,
        Err(LedgerError::HoldOwnedByPayment)
    );

    finish(
        &store,
        1,
        PaymentState::Unknown {
            processor: Processor::Default,
            last_sent_ms: 1,
            due_ms: 2,
        },
    )
    .await;
    assert_eq!(
        hold_of(1).await.hold.status,
        HoldStatus::Active,
        "unknown: still held"
    );
    finish(
        &store,
        1,
        PaymentState::Booked {
            processor: Processor::Default,
        },
    )
    .await;
    finish(&store, 2, PaymentState::Failed).await;
    assert_eq!(hold_of(1).await.hold.status, HoldStatus::Captured);
    assert_eq!(hold_of(2).await.hold.status, HoldStatus::Voided);
    assert_eq!(cash(&store, "p").await, (600, 0));

    let kinds: Vec<EventKind> = store
        .events(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            EventKind::PaymentUnknown,
            EventKind::HoldCaptured,
            EventKind::PaymentSucceeded,
            EventKind::HoldVoided,
            EventKind::PaymentFailed,
        ]
    );
    // Purging the gateway's test data keeps pay-ins: the ledger refers to them.
    assert_eq!(store.purge_payments().await.unwrap(), 0);
    audit_clean(&store);
}

// Goal: transfers in opposite directions between the same pairs, submitted in parallel,
// neither deadlock nor lose a cent: final balances are exactly what the acceptance order
// implies (all transfers are covered, so all complete).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn opposite_transfers_in_parallel() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    let names = ["x0", "x1", "x2", "x3"];
    for name in names {
        open_account(&store, name, 1_000_000).await;
    }
    let mut tasks = Vec::new();
    for worker in 0..16_usize {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut net = [0_i64; 4];
            for i in 0..100_usize {
                let a = (worker + i) % 4;
                let b = (a + 1 + (i % 3)) % 4;
                let (from, to) = if i % 2 == 0 { (a, b) } else { (b, a) };
                let cents = 1 + (i as i64 % 7);
                store
                    .execute(
                        transfer(&format!("p-{worker}-{i}"), names[from], names[to], cents),
                        None,
                    )
                    .await
                    .unwrap();
                net[from] -= cents;
                net[to] += cents;
                if i % 10 == 0 {
                    store.settle_transfers(64).await.unwrap();
                }
            }
            net
        }));
    }
    let mut expected = [1_000_000_i64; 4];
    for task in tasks {
        let net = task.await.unwrap();
        for k in 0..4 {
            expected[k] += net[k];
        }
    }
    while store.settle_transfers(1_000).await.unwrap().more {}
    for (k, name) in names.iter().enumerate() {
        assert_eq!(cash(&store, name).await, (expected[k], 0), "{name}");
    }
    assert_eq!(store.pending_transfers().await.unwrap(), 0);
    audit_clean(&store);
}

// Goal: one hot account receiving transfers, holds and card authorizations at once stays
// exact: every approved debit, hold and transfer is accounted for and nothing overdraws.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hot_account_under_mixed_load() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    open_account(&store, "hot", 50_000).await;
    open_account(&store, "src", 1_000_000).await;
    let mut tasks = Vec::new();
    for worker in 0..12_usize {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            // (credited by transfers, spent by cards, held then captured)
            let mut tally = (0_i64, 0_i64, 0_i64);
            for i in 0..60_usize {
                match (worker + i) % 3 {
                    0 => {
                        store
                            .execute(
                                transfer(&format!("in-{worker}-{i}"), "src", "hot", 100),
                                None,
                            )
                            .await
                            .unwrap();
                        tally.0 += 100;
                    }
                    1 => {
                        let code = store
                            .authorize(auth(
                                Some(&format!("card-{worker}-{i}")),
                                &id("hot"),
                                250,
                                "6011",
                                "ATM",
                            ))
                            .await
                            .unwrap();
                        if code == payd_domain::Code::Approved {
                            tally.1 += 250;
                        }
                    }
                    _ => {
                        let name = format!("hh-{worker}-{i}");
                        if place(&store, &name, "hot", 300, FAR_MS).await.is_ok() {
                            hold_step(
                                &store,
                                Mutation::CaptureHold {
                                    id: rid(&name),
                                    amount: Some(c(200)),
                                },
                            )
                            .await
                            .unwrap();
                            tally.2 += 200;
                        }
                    }
                }
                if i % 7 == 0 {
                    store.settle_transfers(128).await.unwrap();
                }
            }
            tally
        }));
    }
    let (mut credited, mut spent, mut captured) = (0, 0, 0);
    for task in tasks {
        let tally = task.await.unwrap();
        credited += tally.0;
        spent += tally.1;
        captured += tally.2;
    }
    while store.settle_transfers(1_000).await.unwrap().more {}
    assert!(spent > 0 && captured > 0 && credited > 0);
    assert_eq!(
        cash(&store, "hot").await,
        (50_000 + credited - spent - captured, 0)
    );
    assert_eq!(cash(&store, "src").await, (1_000_000 - credited, 0));
    audit_clean(&store);
}

#[test]
fn amounts_are_cents() {
    assert_eq!(Amount::from_cents(1).to_string(), "0.01");
}
