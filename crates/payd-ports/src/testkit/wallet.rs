//! The [`WalletStore`](crate::WalletStore) suite: holds (capture, void, expiry, also
//! across a restart), transfers settled in acceptance order with their reasons,
//! withdrawals, stored idempotent responses, pay-ins following their payment, the typed
//! event payloads, and exactness under parallel opposite transfers and a hot account.

use std::sync::Arc;

use payd_domain::gateway::Processor;
use payd_domain::gateway::payment::PaymentState;
use payd_domain::{
    Category, CorrelationId, EventKind, Fence, HoldStatus, RejectReason, Transfer, TransferStatus,
};

use super::{Harness, account_id as id, c, request as auth, rid};
use crate::{
    Claim, Effect, FencedSettle, HoldView, Intake, LedgerError, Mutation, NewHold, NewPayment,
    NewTransfer, NewWithdrawal, Payer, Refusal, Replied, Store, StoredResponse, Transition,
};

/// Opens `name` with `cash_cents` of CASH.
async fn open_account(store: &Arc<dyn Store>, name: &str, cash_cents: i64) {
    super::open_account(store, name, 0, 0, cash_cents).await;
}

async fn cash(store: &Arc<dyn Store>, name: &str) -> (i64, i64) {
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
    store: &Arc<dyn Store>,
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

async fn hold_step(store: &Arc<dyn Store>, mutation: Mutation) -> Result<HoldView, LedgerError> {
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
pub async fn holds_capture_and_void(store: Arc<dyn Store>, _harness: &mut dyn Harness) {
    open_account(&store, "h", 10_000).await;

    assert_eq!(
        place(&store, "too-much", "h", 10_001, FAR_MS).await,
        Err(Refusal::InsufficientFunds.into())
    );
    assert_eq!(
        cash(&store, "h").await,
        (10_000, 0),
        "a refusal changes nothing"
    );
    assert_eq!(
        place(&store, "nobody", "ghost", 1, FAR_MS).await,
        Err(Refusal::AccountNotFound.into())
    );

    let first = place(&store, "h1", "h", 6_000, FAR_MS).await.unwrap();
    assert_eq!(first.hold.status, HoldStatus::Active);
    assert_eq!(cash(&store, "h").await, (4_000, 6_000));
    assert_eq!(
        place(&store, "h1", "h", 1, FAR_MS).await,
        Err(Refusal::ResourceExists.into())
    );
    assert_eq!(
        place(&store, "h2", "h", 4_001, FAR_MS).await,
        Err(Refusal::InsufficientFunds.into()),
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
        Err(Refusal::HoldNotActive(HoldStatus::Captured).into())
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
        Err(Refusal::CaptureExceedsHold.into())
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
        Err(Refusal::HoldNotActive(HoldStatus::Voided).into())
    );
    assert_eq!(
        hold_step(&store, Mutation::VoidHold { id: rid("nope") }).await,
        Err(Refusal::HoldNotFound.into())
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
}

// Goal: an expired hold returns its money and can never be captured, whether the sweeper
// got to it first or the capture did; expiry survives a restart (it is stored, not timed).
pub async fn holds_expire_and_cannot_be_captured(store: Arc<dyn Store>, harness: &mut dyn Harness) {
    {
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
            Err(Refusal::HoldExpired.into())
        );
        assert_eq!(cash(&store, "e").await, (700, 300));
    }
    // After a restart the sweeper expires what is due, and only that.
    let store = harness.reopen(store).await;
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
            Err(Refusal::HoldNotActive(HoldStatus::Expired).into())
        );
    }
    assert_eq!(store.expire_holds(10, 100).await.unwrap().done, 0, "final");
}

// Goal: transfers are accepted pending, settle in acceptance order (so one funded by an
// earlier transfer succeeds, one after a draining transfer is rejected), with reasons.
pub async fn transfers_settle_in_order_with_reasons(
    store: Arc<dyn Store>,
    _harness: &mut dyn Harness,
) {
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
        Err(Refusal::ResourceExists.into())
    );
    assert!(matches!(
        store.execute(transfer("same", "a", "a", 1), None).await,
        Err(LedgerError::Refused(Refusal::Invalid(_)))
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
}

fn fences(grants: &[(&str, i64)]) -> Vec<Fence> {
    grants
        .iter()
        .map(|(account, token)| Fence {
            account: id(account),
            token: *token,
        })
        .collect()
}

// Goal: a transfer settled under its accounts' locks waits its turn behind an earlier
// pending transfer of either account, is refused (changing nothing) when one of its tokens
// is older than one already presented for that account (by a settle or by an attempt that
// had to wait) or when the grant does not cover both accounts, and is settled once
// otherwise; the same grant may try again (a
// redelivered message) and finds it settled.
pub async fn fenced_settles_keep_the_order_and_refuse_stale_tokens(
    store: Arc<dyn Store>,
    _harness: &mut dyn Harness,
) {
    open_account(&store, "fa", 1_000).await;
    open_account(&store, "fb", 0).await;
    open_account(&store, "fc", 0).await;
    for mutation in [
        transfer("f1", "fa", "fb", 700),
        transfer("f2", "fb", "fc", 500),
        transfer("f3", "fa", "fc", 400),
    ] {
        store.execute(mutation, None).await.unwrap();
    }
    let settle = |name: &'static str, grants: Vec<Fence>| {
        let store = store.clone();
        async move { store.settle_fenced(&rid(name), &grants).await.unwrap() }
    };
    // f2 and f3 come after f1 (through fb and fa).
    assert_eq!(
        settle("f2", fences(&[("fb", 10), ("fc", 10)])).await,
        FencedSettle::Waiting
    );
    assert_eq!(
        settle("f3", fences(&[("fa", 10), ("fc", 10)])).await,
        FencedSettle::Waiting
    );
    // A waiting attempt records its tokens too: an older grant is fenced out already.
    assert_eq!(
        settle("f2", fences(&[("fb", 9), ("fc", 10)])).await,
        FencedSettle::Stale
    );
    // A grant that does not cover the transfer's accounts.
    assert_eq!(
        settle("f1", fences(&[("fa", 10), ("fc", 10)])).await,
        FencedSettle::Stale
    );
    assert_eq!(
        settle("f1", fences(&[("fa", 10), ("fb", 10)])).await,
        FencedSettle::Settled(TransferStatus::Completed)
    );
    assert_eq!(
        settle("f1", fences(&[("fa", 10), ("fb", 10)])).await,
        FencedSettle::NotPending,
        "the same grant again"
    );
    // fb's token 10 is recorded: a grant older than it is stale, however late it comes.
    assert_eq!(
        settle("f2", fences(&[("fb", 9), ("fc", 11)])).await,
        FencedSettle::Stale
    );
    assert_eq!(
        store.pending_transfers().await.unwrap(),
        2,
        "refused: unchanged"
    );
    assert_eq!(cash(&store, "fb").await, (700, 0));
    assert_eq!(
        settle("f2", fences(&[("fb", 11), ("fc", 11)])).await,
        FencedSettle::Settled(TransferStatus::Completed)
    );
    // fc's token 11 is recorded now: f3 with fc's 10 is stale, with 12 it settles (after
    // f1 drained fa to 300, rejected for want of funds).
    assert_eq!(
        settle("f3", fences(&[("fa", 12), ("fc", 10)])).await,
        FencedSettle::Stale
    );
    assert_eq!(
        settle("f3", fences(&[("fa", 12), ("fc", 12)])).await,
        FencedSettle::Settled(TransferStatus::Rejected(RejectReason::InsufficientFunds))
    );
    assert_eq!(
        settle("nope", fences(&[("fa", 13), ("fc", 13)])).await,
        FencedSettle::NotPending
    );
    assert_eq!(cash(&store, "fa").await, (300, 0));
    assert_eq!(cash(&store, "fb").await, (200, 0));
    assert_eq!(cash(&store, "fc").await, (500, 0));
    assert_eq!(store.pending_transfers().await.unwrap(), 0);
    let kinds: Vec<EventKind> = store
        .events(0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            EventKind::TransferCompleted,
            EventKind::TransferCompleted,
            EventKind::TransferRejected
        ]
    );
}

// Goal: withdrawals need cover, and leave through the system account.
pub async fn withdrawals(store: Arc<dyn Store>, _harness: &mut dyn Harness) {
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
        Err(Refusal::InsufficientFunds.into())
    );
    assert_eq!(cash(&store, "w").await, (300, 0));
}

fn render(outcome: &Result<Effect, Refusal>) -> StoredResponse {
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
pub async fn claims_replay_the_first_response(store: Arc<dyn Store>, _harness: &mut dyn Harness) {
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
        Err(Refusal::IdempotencyKeyReused.into())
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
        Err(Refusal::InsufficientFunds.into())
    );
    // Even once funds exist, the retry gets the first answer.
    store
        .deposit(crate::DepositRequest {
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
        Replied::Replayed(render(&Err(Refusal::InsufficientFunds)))
    );
    assert_eq!(store.hold(&rid("big")).await.unwrap(), None);
    // Retention over: purged, and the key applies afresh.
    let sweep = store.purge_idempotency(1_000, 100).await.unwrap();
    assert_eq!(sweep.done, 2);
    assert!(matches!(
        store.execute(refused, claim("key:k2", "fp")).await,
        Ok(Replied::Fresh(Effect::Hold(_)))
    ));
}

fn correlation(n: u64) -> CorrelationId {
    CorrelationId::parse(&format!("00000000-0000-4000-8000-{n:012x}")).unwrap()
}

async fn pay_in(
    store: &Arc<dyn Store>,
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

async fn finish(store: &Arc<dyn Store>, n: u64, next: PaymentState) {
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
pub async fn pay_ins_follow_their_payment(store: Arc<dyn Store>, _harness: &mut dyn Harness) {
    open_account(&store, "p", 1_000).await;
    assert_eq!(pay_in(&store, 1, "p", 400).await, Ok(Intake::Accepted));
    assert_eq!(pay_in(&store, 2, "p", 500).await, Ok(Intake::Accepted));
    assert_eq!(
        pay_in(&store, 3, "p", 101).await,
        Err(Refusal::InsufficientFunds.into())
    );
    assert_eq!(
        store.payment(&correlation(3)).await.unwrap(),
        None,
        "nothing queued"
    );
    assert_eq!(
        pay_in(&store, 4, "ghost", 1).await,
        Err(Refusal::AccountNotFound.into())
    );
    assert_eq!(cash(&store, "p").await, (100, 900));
    // A retry (new hold id, same account and amount) is a duplicate; another amount is not.
    assert_eq!(pay_in(&store, 1, "p", 400).await, Ok(Intake::Duplicate));
    assert_eq!(
        pay_in(&store, 1, "p", 401).await,
        Err(Refusal::IdempotencyKeyReused.into())
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
        Err(Refusal::HoldOwnedByPayment.into())
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
}

// Goal: every event's payload is the typed one of its kind (`payd_ports::events`): JSON,
// amounts as numbers with two decimals, the resource's fields as the API shows them.
pub async fn events_carry_typed_payloads(store: Arc<dyn Store>, _harness: &mut dyn Harness) {
    open_account(&store, "ev", 1_000).await;
    open_account(&store, "ev-to", 0).await;
    place(&store, "ev-h", "ev", 250, FAR_MS).await.unwrap();
    hold_step(
        &store,
        Mutation::CaptureHold {
            id: rid("ev-h"),
            amount: Some(c(120)),
        },
    )
    .await
    .unwrap();
    store
        .execute(transfer("ev-t", "ev", "ev-to", 99), None)
        .await
        .unwrap();
    while store.settle_transfers(100).await.unwrap().more {}
    assert_eq!(pay_in(&store, 77, "ev", 101).await, Ok(Intake::Accepted));
    finish(
        &store,
        77,
        PaymentState::Booked {
            processor: Processor::Fallback,
        },
    )
    .await;
    let events = store.events(0, 100).await.unwrap();
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::HoldCaptured,
            EventKind::TransferCompleted,
            EventKind::HoldCaptured,
            EventKind::PaymentSucceeded,
        ]
    );
    assert!(
        events.windows(2).all(|w| w[0].seq < w[1].seq),
        "seq grows with commit order"
    );
    let json =
        |n: usize| -> serde_json::Value { serde_json::from_str(&events[n].payload).unwrap() };
    let hold = json(0);
    assert_eq!(hold["id"], "ev-h");
    assert_eq!(hold["status"], "captured");
    // Exactly two decimals: read from the text (a parsed number forgets its form).
    assert!(
        events[0]
            .payload
            .contains(r#""amount":2.50,"captured":1.20,"#),
        "{}",
        events[0].payload
    );
    assert_eq!(events[0].subject, "ev-h");
    let moved = json(1);
    assert_eq!(moved["from"], "ev");
    assert_eq!(moved["to"], "ev-to");
    assert!(
        events[1].payload.contains(r#""amount":0.99,"#),
        "{}",
        events[1].payload
    );
    assert_eq!(moved["status"], "completed");
    assert_eq!(moved["reason"], serde_json::Value::Null);
    let paid = json(3);
    assert_eq!(paid["correlationId"], correlation(77).as_str());
    assert!(
        events[3].payload.contains(r#""amount":1.01,"#),
        "{}",
        events[3].payload
    );
    assert_eq!(paid["status"], "succeeded");
    assert_eq!(paid["processor"], "fallback");
    assert_eq!(json(2)["payment"], correlation(77).as_str());
    assert_eq!(paid["hold"], json(2)["id"]);
}

// Goal: transfers in opposite directions between the same pairs, submitted in parallel,
// neither deadlock nor lose a cent: final balances are exactly what the acceptance order
// implies (all transfers are covered, so all complete).
pub async fn opposite_transfers_in_parallel(store: Arc<dyn Store>, _harness: &mut dyn Harness) {
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
}

// Goal: one hot account receiving transfers, holds and card authorizations at once stays
// exact: every approved debit, hold and transfer is accounted for and nothing overdraws.
pub async fn hot_account_under_mixed_load(store: Arc<dyn Store>, _harness: &mut dyn Harness) {
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
}
