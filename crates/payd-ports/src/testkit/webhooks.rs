//! The [`WebhookStore`](crate::WebhookStore) suite: registration (through
//! [`WalletStore::execute`](crate::WalletStore::execute)), the per-webhook cursor (only
//! events after registration), leases (due work only, expired leases handed out again),
//! recording attempts (delivered, retry, give up, stale leases), cancellation on delete,
//! bounded leases, and deliveries across a restart.

use std::sync::Arc;

use payd_domain::Category;

use super::{Harness, account_id, c, rid};
use crate::{
    Attempt, AttemptOutcome, AttemptResult, DeliveryStatus, Effect, LedgerError, Mutation, NewHold,
    NewWebhook, Refusal, Replied, Store, WebhookView,
};

/// Registers a webhook.
async fn create(store: &Arc<dyn Store>, webhook: NewWebhook) -> Result<WebhookView, LedgerError> {
    match store
        .execute(Mutation::CreateWebhook(webhook), None)
        .await?
    {
        Replied::Fresh(Effect::Webhook { view, .. }) => Ok(view),
        other => panic!("registering answers the webhook, not {other:?}"),
    }
}

/// Deletes a webhook; whether it was live.
async fn delete(store: &Arc<dyn Store>, id: &str) -> bool {
    match store
        .execute(Mutation::DeleteWebhook { id: rid(id) }, None)
        .await
    {
        Ok(Replied::Fresh(Effect::WebhookDeleted(_))) => true,
        Err(LedgerError::Refused(Refusal::WebhookNotFound)) => false,
        other => panic!("deleting a webhook answers, not {other:?}"),
    }
}

fn hook(id: &str) -> NewWebhook {
    NewWebhook {
        id: rid(id),
        url: format!("http://127.0.0.1:9/{id}"),
        secret: format!("secret-of-{id}-0123456789"),
    }
}

/// Opens `acc` with 1000.00 CASH.
async fn open_account(store: &Arc<dyn Store>) {
    super::open_account(store, "acc", 0, 0, 100_000).await;
}

/// Places and voids a hold: one `hold.voided` event. Returns its seq.
async fn event(store: &Arc<dyn Store>, name: &str) -> i64 {
    store
        .execute(
            Mutation::PlaceHold(NewHold {
                id: rid(name),
                account: account_id("acc"),
                category: Category::Cash,
                amount: c(100),
                expires_at_ms: i64::MAX / 2,
            }),
            None,
        )
        .await
        .unwrap();
    store
        .execute(Mutation::VoidHold { id: rid(name) }, None)
        .await
        .unwrap();
    let events = store.events(0, 1_000).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.subject, name);
    last.seq
}

fn attempt(webhook: &str, seq: i64, number: u32, outcome: AttemptOutcome) -> Attempt {
    Attempt {
        webhook: rid(webhook),
        event_seq: seq,
        attempt: number,
        at_ms: 1_000,
        duration_ms: 7,
        outcome,
    }
}

fn failed(status: Option<u16>, retry_at_ms: Option<i64>) -> AttemptOutcome {
    AttemptOutcome::Failed {
        status,
        error: status.map_or("connection refused".to_owned(), |s| format!("HTTP {s}")),
        retry_at_ms,
    }
}

pub async fn register_list_get_delete(store: Arc<dyn Store>, _harness: &mut dyn Harness) {
    let a = create(&store, hook("a")).await.unwrap();
    assert_eq!(a.id, rid("a"));
    assert_eq!(a.after_seq, 0);
    create(&store, hook("b")).await.unwrap();
    assert_eq!(
        create(&store, hook("a")).await,
        Err(Refusal::ResourceExists.into())
    );
    let listed: Vec<String> = store
        .webhooks()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id.as_str().to_owned())
        .collect();
    assert_eq!(listed, ["a", "b"]);
    assert_eq!(store.webhook(&rid("a")).await.unwrap(), Some(a));
    assert!(delete(&store, "a").await);
    assert!(!delete(&store, "a").await);
    assert!(!delete(&store, "nope").await);
    assert_eq!(store.webhook(&rid("a")).await.unwrap(), None);
    assert_eq!(store.webhooks().await.unwrap().len(), 1);
    // A deleted id is never reused.
    assert_eq!(
        create(&store, hook("a")).await,
        Err(Refusal::ResourceExists.into())
    );
}

pub async fn live_webhooks_are_bounded(store: Arc<dyn Store>, _harness: &mut dyn Harness) {
    for n in 0..100 {
        create(&store, hook(&format!("w{n}"))).await.unwrap();
    }
    assert!(matches!(
        create(&store, hook("one-more")).await,
        Err(LedgerError::Refused(Refusal::Invalid(_)))
    ));
    assert!(delete(&store, "w0").await);
    create(&store, hook("one-more")).await.unwrap();
}

pub async fn a_webhook_receives_only_events_after_its_registration(
    store: Arc<dyn Store>,
    _harness: &mut dyn Harness,
) {
    open_account(&store).await;
    event(&store, "h1").await;
    let before = event(&store, "h2").await;
    let view = create(&store, hook("w")).await.unwrap();
    assert_eq!(view.after_seq, before);
    let mut after = Vec::new();
    for name in ["h3", "h4", "h5"] {
        after.push(event(&store, name).await);
    }
    let leased = store.lease_deliveries(10_000, 100, 60_000).await.unwrap();
    let seqs: Vec<i64> = leased.deliveries.iter().map(|d| d.event.seq).collect();
    assert_eq!(seqs, after);
    assert!(!leased.more);
    for delivery in &leased.deliveries {
        assert_eq!(delivery.attempt, 1);
        assert_eq!(delivery.webhook, rid("w"));
        assert_eq!(delivery.url, "http://127.0.0.1:9/w");
        assert_eq!(delivery.secret, "secret-of-w-0123456789");
        assert_eq!(delivery.scheduled_at_ms, 10_000);
        assert_eq!(delivery.event.kind.as_str(), "hold.voided");
    }
    // Leased until 70_000: nothing else is due before, and that is the next due time.
    let again = store.lease_deliveries(10_001, 100, 60_000).await.unwrap();
    assert!(again.deliveries.is_empty());
    assert_eq!(again.next_due_ms, Some(70_000));
}

pub async fn attempts_move_deliveries_to_delivered_retry_or_failed(
    store: Arc<dyn Store>,
    _harness: &mut dyn Harness,
) {
    open_account(&store).await;
    create(&store, hook("w")).await.unwrap();
    let ok = event(&store, "ok").await;
    let flaky = event(&store, "flaky").await;
    let dead = event(&store, "dead").await;
    let leased = store.lease_deliveries(1_000, 10, 30_000).await.unwrap();
    assert_eq!(leased.deliveries.len(), 3);

    // Delivered at once.
    let delivered = AttemptOutcome::Delivered { status: 204 };
    assert!(
        store
            .record_attempt(attempt("w", ok, 1, delivered.clone()))
            .await
            .unwrap()
    );
    let view = store.delivery(&rid("w"), ok).await.unwrap().unwrap();
    assert_eq!(view.status, DeliveryStatus::Delivered);
    assert_eq!((view.attempts, view.last_status), (1, Some(204)));
    assert!(view.delivered_at_ms.is_some() && view.next_attempt_ms.is_none());

    // A 500, retried at 2_000.
    assert!(
        store
            .record_attempt(attempt("w", flaky, 1, failed(Some(500), Some(2_000))))
            .await
            .unwrap()
    );
    // A refused connection, also retried at 2_000.
    assert!(
        store
            .record_attempt(attempt("w", dead, 1, failed(None, Some(2_000))))
            .await
            .unwrap()
    );
    let view = store.delivery(&rid("w"), flaky).await.unwrap().unwrap();
    assert_eq!(view.status, DeliveryStatus::Pending);
    assert_eq!(view.next_attempt_ms, Some(2_000));
    assert_eq!(view.last_error.as_deref(), Some("HTTP 500"));

    // Not due before 2_000.
    let early = store.lease_deliveries(1_999, 10, 30_000).await.unwrap();
    assert!(early.deliveries.is_empty());
    assert_eq!(early.next_due_ms, Some(2_000));
    let second = store.lease_deliveries(2_000, 10, 30_000).await.unwrap();
    let mut retried: Vec<(i64, u32)> = second
        .deliveries
        .iter()
        .map(|d| (d.event.seq, d.attempt))
        .collect();
    retried.sort_unstable();
    assert_eq!(retried, [(flaky, 2), (dead, 2)]);

    // The flaky one succeeds; the dead one gives up.
    assert!(
        store
            .record_attempt(attempt("w", flaky, 2, delivered))
            .await
            .unwrap()
    );
    assert!(
        store
            .record_attempt(attempt("w", dead, 2, failed(None, None)))
            .await
            .unwrap()
    );
    let view = store.delivery(&rid("w"), dead).await.unwrap().unwrap();
    assert_eq!(view.status, DeliveryStatus::Failed);
    assert_eq!(view.attempts, 2);
    assert!(view.next_attempt_ms.is_none());
    let idle = store.lease_deliveries(1_000_000, 10, 30_000).await.unwrap();
    assert!(idle.deliveries.is_empty());
    assert_eq!(idle.next_due_ms, None);

    // The log, newest first.
    let log = store.delivery_attempts(&rid("w"), 100).await.unwrap();
    let summary: Vec<(i64, u32, Option<u16>, AttemptResult)> = log
        .iter()
        .map(|a| (a.event_seq, a.attempt, a.status, a.result))
        .collect();
    assert_eq!(
        summary,
        [
            (dead, 2, None, AttemptResult::GaveUp),
            (flaky, 2, Some(204), AttemptResult::Delivered),
            (dead, 1, None, AttemptResult::Retrying),
            (flaky, 1, Some(500), AttemptResult::Retrying),
            (ok, 1, Some(204), AttemptResult::Delivered),
        ]
    );
    assert_eq!(log[0].error.as_deref(), Some("connection refused"));
    assert_eq!(log[0].duration_ms, 7);
    assert_eq!(
        store.delivery_attempts(&rid("w"), 2).await.unwrap().len(),
        2
    );
}

pub async fn an_expired_lease_is_handed_out_again_and_the_stale_answer_is_only_logged(
    store: Arc<dyn Store>,
    _harness: &mut dyn Harness,
) {
    open_account(&store).await;
    create(&store, hook("w")).await.unwrap();
    let seq = event(&store, "h").await;
    let first = store.lease_deliveries(1_000, 10, 100).await.unwrap();
    assert_eq!(first.deliveries[0].attempt, 1);
    // The first deliverer vanished; its lease ends at 1_100.
    assert!(
        store
            .lease_deliveries(1_099, 10, 100)
            .await
            .unwrap()
            .deliveries
            .is_empty()
    );
    let second = store.lease_deliveries(1_100, 10, 100).await.unwrap();
    assert_eq!(second.deliveries.len(), 1);
    assert_eq!(second.deliveries[0].attempt, 2);
    // The first attempt's late answer does not overwrite the second lease.
    assert!(
        !store
            .record_attempt(attempt(
                "w",
                seq,
                1,
                AttemptOutcome::Delivered { status: 200 }
            ))
            .await
            .unwrap()
    );
    let view = store.delivery(&rid("w"), seq).await.unwrap().unwrap();
    assert_eq!(view.status, DeliveryStatus::Pending);
    assert!(
        store
            .record_attempt(attempt(
                "w",
                seq,
                2,
                AttemptOutcome::Delivered { status: 200 }
            ))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .delivery(&rid("w"), seq)
            .await
            .unwrap()
            .unwrap()
            .status,
        DeliveryStatus::Delivered
    );
    // Both attempts are in the log.
    assert_eq!(
        store.delivery_attempts(&rid("w"), 10).await.unwrap().len(),
        2
    );
}

pub async fn deleting_a_webhook_cancels_its_pending_deliveries(
    store: Arc<dyn Store>,
    _harness: &mut dyn Harness,
) {
    open_account(&store).await;
    create(&store, hook("gone")).await.unwrap();
    create(&store, hook("kept")).await.unwrap();
    let seq = event(&store, "h").await;
    let leased = store.lease_deliveries(1_000, 10, 100).await.unwrap();
    assert_eq!(leased.deliveries.len(), 2);
    assert!(delete(&store, "gone").await);
    let view = store.delivery(&rid("gone"), seq).await.unwrap().unwrap();
    assert_eq!(view.status, DeliveryStatus::Cancelled);
    // Only the live webhook's delivery comes back when the leases end, and new events
    // are scheduled for it alone.
    let later = event(&store, "h2").await;
    let again = store.lease_deliveries(2_000, 10, 100).await.unwrap();
    let mut got: Vec<(String, i64)> = again
        .deliveries
        .iter()
        .map(|d| (d.webhook.as_str().to_owned(), d.event.seq))
        .collect();
    got.sort();
    assert_eq!(got, [("kept".to_owned(), seq), ("kept".to_owned(), later)]);
    // A late answer for the deleted webhook changes nothing.
    assert!(
        !store
            .record_attempt(attempt(
                "gone",
                seq,
                1,
                AttemptOutcome::Delivered { status: 200 }
            ))
            .await
            .unwrap()
    );
}

pub async fn leases_are_bounded_and_say_when_more_is_ready(
    store: Arc<dyn Store>,
    _harness: &mut dyn Harness,
) {
    open_account(&store).await;
    create(&store, hook("w")).await.unwrap();
    for n in 0..5 {
        event(&store, &format!("h{n}")).await;
    }
    let first = store.lease_deliveries(1_000, 2, 10_000).await.unwrap();
    assert_eq!(first.deliveries.len(), 2);
    assert!(first.more);
    let second = store.lease_deliveries(1_000, 2, 10_000).await.unwrap();
    assert_eq!(second.deliveries.len(), 2);
    let third = store.lease_deliveries(1_000, 2, 10_000).await.unwrap();
    assert_eq!(third.deliveries.len(), 1);
    assert!(!third.more);
    let mut seqs: Vec<i64> = [first, second, third]
        .iter()
        .flat_map(|l| l.deliveries.iter().map(|d| d.event.seq))
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 5, "each event leased once");
    // A lease of nothing still schedules.
    event(&store, "h5").await;
    let none = store.lease_deliveries(1_000, 0, 10_000).await.unwrap();
    assert!(none.deliveries.is_empty());
    assert_eq!(none.next_due_ms, Some(1_000));
}

pub async fn deliveries_survive_a_restart(store: Arc<dyn Store>, harness: &mut dyn Harness) {
    open_account(&store).await;
    create(&store, hook("w")).await.unwrap();
    let seq = event(&store, "h").await;
    let leased = store.lease_deliveries(1_000, 10, 100).await.unwrap();
    assert_eq!(leased.deliveries.len(), 1);
    let store = harness.reopen(store).await;
    // The lease taken before the restart ends; the delivery is due again.
    let leased = store.lease_deliveries(1_100, 10, 100).await.unwrap();
    assert_eq!(leased.deliveries.len(), 1);
    assert_eq!(leased.deliveries[0].event.seq, seq);
    assert_eq!(leased.deliveries[0].attempt, 2);
}
