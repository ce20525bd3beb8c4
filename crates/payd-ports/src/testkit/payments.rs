//! The [`PaymentStore`](crate::PaymentStore) suite: idempotent intake, compare-and-set
//! transitions, the due queue's order, the summary against a brute force, the purge, and
//! the payments a restarted process may take over.

use std::sync::Arc;

use payd_domain::gateway::Processor;
use payd_domain::gateway::payment::PaymentState;
use payd_domain::{Amount, CorrelationId};

use super::Harness;
use crate::{Intake, NewPayment, PaymentSummary, Refusal, Store, Transition};

/// A correlation id made from a number.
pub fn correlation_id(n: u64) -> CorrelationId {
    CorrelationId::parse(&format!("00000000-0000-4000-8000-{n:012x}")).expect("valid uuid")
}

fn payment(n: u64, cents: i64, requested_at_ms: i64) -> NewPayment {
    NewPayment {
        id: correlation_id(n),
        amount: Amount::from_cents(cents),
        requested_at_ms,
        payer: None,
    }
}

async fn state_of(store: &Arc<dyn Store>, n: u64) -> (PaymentState, u64, u32) {
    let record = store
        .payment(&correlation_id(n))
        .await
        .expect("read")
        .expect("present");
    (record.state, record.version, record.attempts)
}

/// Moves payment `n` to `next` from its current version; whether it applied.
async fn move_to(store: &Arc<dyn Store>, n: u64, next: PaymentState, counts_attempt: bool) -> bool {
    let (_, version, _) = state_of(store, n).await;
    let transition = Transition {
        id: correlation_id(n),
        expected_version: version,
        next,
        counts_attempt,
    };
    store
        .apply_transitions(vec![transition])
        .await
        .expect("apply")[0]
}

/// Books payment `n` at `processor` through a dispatch, as the engine would.
async fn book(store: &Arc<dyn Store>, n: u64, processor: Processor) {
    let (state, _, _) = state_of(store, n).await;
    let now_ms = state.due_ms().expect("waiting");
    let dispatched = state.dispatch(processor, now_ms, 1_000).expect("dispatch");
    assert!(move_to(store, n, dispatched, true).await);
    assert!(move_to(store, n, PaymentState::Booked { processor }, false).await);
}

/// Goal: intake is idempotent by correlation id and a payment reads back queued.
/// Method: accept, accept again, accept with another amount, read back.
pub async fn intake_is_idempotent(store: Arc<dyn Store>, _harness: &mut dyn Harness) {
    assert_eq!(
        store.accept_payment(payment(1, 1990, 1_000)).await,
        Ok(Intake::Accepted)
    );
    assert_eq!(
        store.accept_payment(payment(1, 1990, 2_000)).await,
        Ok(Intake::Duplicate)
    );
    assert_eq!(
        store.accept_payment(payment(1, 1991, 1_000)).await,
        Err(Refusal::IdempotencyKeyReused.into())
    );
    let record = store
        .payment(&correlation_id(1))
        .await
        .expect("read")
        .expect("present");
    assert_eq!(record.amount, Amount::from_cents(1990));
    assert_eq!(
        record.requested_at_ms, 1_000,
        "requestedAt is fixed by the first intake"
    );
    assert_eq!(record.state, PaymentState::Queued { due_ms: 1_000 });
    assert_eq!((record.version, record.attempts), (0, 0));
    assert_eq!(store.payment(&correlation_id(2)).await, Ok(None));
    assert_eq!(store.pending_payments().await, Ok(1));
}

/// Goal: transitions are compare-and-set on the version; final states are final.
/// Method: apply with the right and a stale version; count attempts; try to move a booked
/// payment; fire 50 concurrent transitions from the same version.
pub async fn transitions_are_compare_and_set(store: Arc<dyn Store>, _harness: &mut dyn Harness) {
    store
        .accept_payment(payment(1, 100, 0))
        .await
        .expect("accept");
    let dispatched = PaymentState::new(0)
        .dispatch(Processor::Default, 10, 1_000)
        .expect("dispatch");
    let stale = Transition {
        id: correlation_id(1),
        expected_version: 7,
        next: dispatched,
        counts_attempt: true,
    };
    assert_eq!(store.apply_transitions(vec![stale]).await, Ok(vec![false]));
    assert!(move_to(&store, 1, dispatched, true).await);
    assert_eq!(state_of(&store, 1).await, (dispatched, 1, 1));
    assert!(
        move_to(
            &store,
            1,
            PaymentState::Booked {
                processor: Processor::Default
            },
            false
        )
        .await
    );
    assert_eq!(state_of(&store, 1).await.1, 2);
    assert!(
        !move_to(&store, 1, PaymentState::Queued { due_ms: 0 }, false).await,
        "booked is final"
    );
    assert_eq!(store.pending_payments().await, Ok(0));
    // An unknown id applies nothing.
    let ghost = Transition {
        id: correlation_id(99),
        expected_version: 0,
        next: PaymentState::Failed,
        counts_attempt: false,
    };
    assert_eq!(store.apply_transitions(vec![ghost]).await, Ok(vec![false]));

    store
        .accept_payment(payment(2, 100, 0))
        .await
        .expect("accept");
    let mut racers = Vec::new();
    for n in 0..50 {
        let store = store.clone();
        let next = PaymentState::Queued { due_ms: n };
        racers.push(tokio::spawn(async move {
            let t = Transition {
                id: correlation_id(2),
                expected_version: 0,
                next,
                counts_attempt: false,
            };
            store.apply_transitions(vec![t]).await.expect("apply")[0]
        }));
    }
    let mut winners = 0;
    for racer in racers {
        winners += usize::from(racer.await.expect("join"));
    }
    assert_eq!(winners, 1, "exactly one of 50 racing transitions wins");
}

/// Goal: due payments come bound-first, then queued, each most overdue first, within the
/// limit; payments not yet due and final ones never come.
pub async fn due_payments_are_ordered(store: Arc<dyn Store>, _harness: &mut dyn Harness) {
    for (n, at) in [(1, 500), (2, 100), (3, 300), (4, 9_000), (5, 200)] {
        store
            .accept_payment(payment(n, 100, at))
            .await
            .expect("accept");
    }
    // 3 becomes unknown (bound), due at 400; 5 is booked.
    let dispatched = PaymentState::new(300)
        .dispatch(Processor::Fallback, 300, 100)
        .expect("dispatch");
    assert!(move_to(&store, 3, dispatched, true).await);
    let unknown = dispatched
        .record(payd_domain::gateway::Outcome::Unknown, 350, 0, 50)
        .expect("record");
    assert!(move_to(&store, 3, unknown, false).await);
    book(&store, 5, Processor::Default).await;
    let ids =
        |records: Vec<crate::PaymentRecord>| records.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let due = ids(store.due_payments(1_000, 1_000, 10).await.expect("due"));
    assert_eq!(
        due,
        vec![correlation_id(3), correlation_id(2), correlation_id(1)]
    );
    let due = ids(store.due_payments(1_000, 1_000, 2).await.expect("due"));
    assert_eq!(due, vec![correlation_id(3), correlation_id(2)]);
    assert!(
        store
            .due_payments(50, 50, 10)
            .await
            .expect("due")
            .is_empty()
    );
    assert_eq!(store.pending_payments().await, Ok(4));

    // 6 was sent once and rejected: a retry, due at 800. With a grace up to 400, the new
    // payments due after it (1, due at 500) wait; the retry and the bound one do not.
    store
        .accept_payment(payment(6, 100, 50))
        .await
        .expect("accept");
    let sent = PaymentState::new(50)
        .dispatch(Processor::Default, 60, 100)
        .expect("dispatch");
    assert!(move_to(&store, 6, sent, true).await);
    let retry = sent
        .record(payd_domain::gateway::Outcome::Rejected, 100, 700, 50)
        .expect("record");
    assert!(move_to(&store, 6, retry, false).await);
    let due = ids(store.due_payments(1_000, 400, 10).await.expect("due"));
    assert_eq!(
        due,
        vec![correlation_id(3), correlation_id(2), correlation_id(6)],
        "the fresh payment due at 500 waits for the grace; the retry does not"
    );
}

/// The summary computed the slow, obviously right way.
fn brute_force(
    booked: &[(Processor, i64, i64)],
    from_ms: Option<i64>,
    to_ms: Option<i64>,
) -> PaymentSummary {
    let mut summary = PaymentSummary::default();
    for (processor, at, cents) in booked {
        if from_ms.is_some_and(|f| *at < f) || to_ms.is_some_and(|t| *at > t) {
            continue;
        }
        let totals = match processor {
            Processor::Default => &mut summary.default,
            Processor::Fallback => &mut summary.fallback,
        };
        totals.requests += 1;
        totals.amount = totals
            .amount
            .checked_add(Amount::from_cents(*cents))
            .expect("no overflow");
    }
    summary
}

/// Goal: the summary counts only booked payments, per processor, with inclusive
/// millisecond bounds, and agrees with a brute-force sum on every window.
/// Method: book 300 payments at pseudo-random instants over ~20 s (some left queued), then
/// compare 400 pseudo-random windows (edges on, just inside and just outside payments, whole
/// and partial seconds, unbounded sides, inverted) with the brute force.
pub async fn summary_matches_brute_force(store: Arc<dyn Store>, _harness: &mut dyn Harness) {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let base_ms = 1_752_582_896_000_i64;
    let mut booked = Vec::new();
    let mut instants = Vec::new();
    for n in 1..=360u64 {
        let at = base_ms + (next() % 20_000) as i64;
        let cents = 1 + (next() % 100_000) as i64;
        store
            .accept_payment(payment(n, cents, at))
            .await
            .expect("accept");
        instants.push(at);
        if n % 6 == 0 {
            continue; // left queued: never counted
        }
        let processor = if next() % 3 == 0 {
            Processor::Fallback
        } else {
            Processor::Default
        };
        book(&store, n, processor).await;
        booked.push((processor, at, cents));
    }
    let everything = store.payments_summary(None, None).await.expect("summary");
    assert_eq!(everything, brute_force(&booked, None, None));
    assert_eq!(
        everything.default.requests + everything.fallback.requests,
        300
    );
    for _ in 0..400 {
        let mut edge = || {
            let at = instants[(next() % instants.len() as u64) as usize];
            match next() % 5 {
                0 => at - 1,
                1 => at + 1,
                2 => at.div_euclid(1_000) * 1_000,
                3 => at.div_euclid(1_000) * 1_000 + 999,
                _ => at,
            }
        };
        let (a, b) = (edge(), edge());
        let from = (next() % 8 != 0).then_some(a.min(b));
        let to = (next() % 8 != 0).then_some(a.max(b));
        let (from, to) = if next() % 20 == 0 {
            (to, from)
        } else {
            (from, to)
        };
        let got = store.payments_summary(from, to).await.expect("summary");
        assert_eq!(
            got,
            brute_force(&booked, from, to),
            "window {from:?}..={to:?}"
        );
    }
}

/// Goal: purge removes every payment and every total.
pub async fn purge_removes_everything(store: Arc<dyn Store>, _harness: &mut dyn Harness) {
    for n in 1..=5 {
        store
            .accept_payment(payment(n, 100, 1_000 * n as i64))
            .await
            .expect("accept");
    }
    book(&store, 1, Processor::Default).await;
    assert_eq!(store.purge_payments().await, Ok(5));
    assert_eq!(
        store.payments_summary(None, None).await,
        Ok(PaymentSummary::default())
    );
    assert_eq!(store.pending_payments().await, Ok(0));
    assert_eq!(store.payment(&correlation_id(1)).await, Ok(None));
    assert_eq!(
        store.accept_payment(payment(1, 100, 0)).await,
        Ok(Intake::Accepted),
        "the id is free again"
    );
}

/// Goal: a restarted process takes over its own payments in flight at once, and only
/// those in flight: a queued, unknown or booked payment is never an orphan.
/// Method: dispatch two payments (in flight), leave one queued, one unknown and one booked,
/// then read the orphans.
pub async fn orphaned_payments_are_the_ones_in_flight(
    store: Arc<dyn Store>,
    _harness: &mut dyn Harness,
) {
    for n in 1..=5 {
        store
            .accept_payment(payment(n, 100, 1_000))
            .await
            .expect("accept");
    }
    for n in [1, 2, 4] {
        let dispatched = PaymentState::new(1_000)
            .dispatch(Processor::Default, 1_000, 60_000)
            .expect("dispatch");
        assert!(move_to(&store, n, dispatched, true).await);
    }
    let in_flight = state_of(&store, 4).await.0;
    let unknown = in_flight
        .record(payd_domain::gateway::Outcome::Unknown, 1_100, 0, 50)
        .expect("record");
    assert!(move_to(&store, 4, unknown, false).await);
    book(&store, 5, Processor::Fallback).await;
    let mut orphans: Vec<_> = store
        .orphaned_payments(100)
        .await
        .expect("orphans")
        .into_iter()
        .map(|record| {
            assert!(
                matches!(record.state, PaymentState::Processing { .. }),
                "{record:?} is in flight"
            );
            record.id
        })
        .collect();
    orphans.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(orphans, vec![correlation_id(1), correlation_id(2)]);
    assert_eq!(store.orphaned_payments(1).await.expect("orphans").len(), 1);
}
