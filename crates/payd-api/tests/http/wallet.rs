//! Wallets over HTTP: holds (place, capture, void, expiry), withdrawals, transfers, pay-ins
//! through `POST /payments`, idempotency of every mutating endpoint (replays, reused keys,
//! a concurrent duplicate held deterministically in flight) and the event outbox.
//!
//! Balances are read back after every refusal to check that nothing moved; amounts are
//! compared as their exact JSON text (`25.50`), events' amounts as decimal strings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::Method;
use payd_api::WalletConfig;
use payd_domain::gateway::Processor;
use payd_domain::gateway::payment::PaymentState;
use payd_domain::timestamp::parse_ms;
use payd_domain::{CorrelationId, ResourceId};
use payd_ports::{
    Claim, Effect, EventView, HoldView, LedgerError, Mutation, PaymentStore, Replied, Sweep,
    TransferView, Transition, WalletStore,
};
use payd_sqlite::SqliteStore;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use crate::support::{App, Resp, send};

const JSON: (&str, &str) = ("content-type", "application/json");

/// `POST uri` with a JSON body and, when given, an `Idempotency-Key`.
async fn post_key(app: &App, uri: &str, body: &str, key: Option<&str>) -> Resp {
    let mut headers = vec![JSON];
    if let Some(key) = key {
        headers.push(("idempotency-key", key));
    }
    app.call(Method::POST, uri, body.to_owned(), &headers).await
}

/// `POST uri` with no body at all (no content type either).
async fn post_empty(app: &App, uri: &str) -> Resp {
    app.call(Method::POST, uri, Body::empty(), &[]).await
}

/// A top-level field of a JSON object as its exact text (`25.50`, `"active"`, `null`).
fn raw(body: &[u8], field: &str) -> String {
    let object: HashMap<String, Box<RawValue>> = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not an object ({e}): {}", String::from_utf8_lossy(body)));
    object
        .get(field)
        .unwrap_or_else(|| panic!("no `{field}` in {}", String::from_utf8_lossy(body)))
        .get()
        .to_owned()
}

/// `(available, held)` of one category of an account, as exact JSON text.
async fn balance(app: &App, account: &str, category: &str) -> (String, String) {
    let response = app.get(&format!("/accounts/{account}")).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let balances: HashMap<String, HashMap<String, Box<RawValue>>> =
        serde_json::from_str(&raw(&response.body, "balances")).unwrap();
    let of = &balances[category];
    (
        of["available"].get().to_owned(),
        of["held"].get().to_owned(),
    )
}

/// An expected `(available, held)`.
fn bal(available: &str, held: &str) -> (String, String) {
    (available.to_owned(), held.to_owned())
}

/// Asserts a first (not replayed) answer with `status`; its JSON.
#[track_caller]
fn expect(response: &Resp, status: u16) -> Value {
    assert_eq!(response.status.as_u16(), status, "{}", response.text());
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(
        response.header("idempotent-replayed"),
        None,
        "a first answer is not flagged as a replay"
    );
    response.json()
}

/// Asserts that `again` replays `first`: same status, same bytes, flagged.
#[track_caller]
fn assert_replay(first: &Resp, again: &Resp) {
    assert_eq!(again.status, first.status, "{}", again.text());
    assert_eq!(again.body, first.body, "a replay answers the first bytes");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.header("content-type"), Some("application/json"));
}

/// A generated id: a UUIDv7.
#[track_caller]
fn assert_generated(id: &str) {
    assert_eq!(id.len(), 36, "{id}");
    assert_eq!(&id[14..15], "7", "{id}");
}

fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

#[derive(Debug, Deserialize)]
struct EntryWire {
    cause: String,
    bucket: String,
    category: String,
    amount: Box<RawValue>,
    reference: String,
}

/// One ledger entry: (cause, bucket, category, amount text, reference).
type Entry = (String, String, String, String, String);

fn entry(cause: &str, bucket: &str, category: &str, amount: &str, reference: &str) -> Entry {
    (
        cause.to_owned(),
        bucket.to_owned(),
        category.to_owned(),
        amount.to_owned(),
        reference.to_owned(),
    )
}

/// An account's ledger entries about `reference`, newest first.
async fn entries_of(app: &App, account: &str, reference: &str) -> Vec<Entry> {
    let response = app
        .get(&format!("/accounts/{account}/entries?limit=1000"))
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let entries: Vec<EntryWire> = serde_json::from_str(&raw(&response.body, "entries")).unwrap();
    entries
        .into_iter()
        .filter(|e| e.reference == reference)
        .map(|e| {
            (
                e.cause,
                e.bucket,
                e.category,
                e.amount.get().to_owned(),
                e.reference,
            )
        })
        .collect()
}

/// Sorted, for comparing the entries of one commit (their order within it is not a promise).
fn sorted(mut entries: Vec<Entry>) -> Vec<Entry> {
    entries.sort();
    entries
}

/// Settles a stored pay-in as the engine would: booked at the default processor, or failed.
async fn finish_payment(app: &App, id: &str, booked: bool) {
    let id = CorrelationId::parse(id).unwrap();
    let record = app.store.payment(&id).await.unwrap().unwrap();
    let steps = if booked {
        let dispatched = record
            .state
            .dispatch(Processor::Default, record.requested_at_ms, 1_000)
            .unwrap();
        vec![
            (dispatched, true),
            (
                PaymentState::Booked {
                    processor: Processor::Default,
                },
                false,
            ),
        ]
    } else {
        vec![(record.state.fail().unwrap(), false)]
    };
    for (expected_version, (next, counts_attempt)) in (record.version..).zip(steps) {
        let transition = Transition {
            id: id.clone(),
            expected_version,
            next,
            counts_attempt,
        };
        assert_eq!(
            app.store.apply_transitions(vec![transition]).await.unwrap(),
            vec![true]
        );
    }
}

// ---------------------------------------------------------------------------------------
// Holds
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn holds_move_money_from_available_to_held_and_out() {
    // Goal: a hold reserves money (available → held) and answers the whole hold; a partial
    // capture takes part and returns the rest, a full capture takes all, a void returns all,
    // and the journal explains each step by cause and bucket. Method: place, read, capture
    // and void through the API, reading balances and entries after each step.
    let app = App::new();
    app.open("h-acc", "10", "0", "100").await;

    let placed = post_key(
        &app,
        "/accounts/h-acc/holds",
        r#"{"amount":"25.5","expiresInMs":60000}"#,
        None,
    )
    .await;
    let hold = expect(&placed, 201);
    let mut fields: Vec<&str> = hold
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "account",
            "amount",
            "captured",
            "category",
            "createdAt",
            "expiresAt",
            "id",
            "payment",
            "status",
            "updatedAt"
        ]
    );
    let id = hold["id"].as_str().unwrap().to_owned();
    assert_generated(&id);
    assert_eq!(hold["account"], "h-acc");
    assert_eq!(hold["category"], "CASH", "CASH by default");
    assert_eq!(raw(&placed.body, "amount"), "25.50");
    assert_eq!(raw(&placed.body, "captured"), "0.00");
    assert_eq!(hold["status"], "active");
    assert_eq!(hold["payment"], Value::Null);
    let created = parse_ms(hold["createdAt"].as_str().unwrap()).unwrap();
    let expires = parse_ms(hold["expiresAt"].as_str().unwrap()).unwrap();
    // The expiry is reckoned from the request's arrival, just before the commit.
    assert!((59_000..=60_000).contains(&(expires - created)), "{hold}");
    assert_eq!(hold["updatedAt"], hold["createdAt"]);
    assert_eq!(balance(&app, "h-acc", "CASH").await, bal("74.50", "25.50"));
    assert_eq!(balance(&app, "h-acc", "FOOD").await, bal("10.00", "0.00"));

    // The read answers the same hold, byte for byte.
    let read = app.get(&format!("/holds/{id}")).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body, placed.body);

    // All of a category, with the default lifetime (7 days).
    let food = post_key(
        &app,
        "/accounts/h-acc/holds",
        r#"{"category":"FOOD","amount":10}"#,
        None,
    )
    .await;
    let food_hold = expect(&food, 201);
    let food_id = food_hold["id"].as_str().unwrap().to_owned();
    assert_ne!(food_id, id);
    assert_eq!(food_hold["category"], "FOOD");
    let created = parse_ms(food_hold["createdAt"].as_str().unwrap()).unwrap();
    let expires = parse_ms(food_hold["expiresAt"].as_str().unwrap()).unwrap();
    let week = 7 * 24 * 3_600_000;
    assert!(
        (week - 1_000..=week).contains(&(expires - created)),
        "{food_hold}"
    );
    assert_eq!(balance(&app, "h-acc", "FOOD").await, bal("0.00", "10.00"));

    // Partial capture: 20.00 leaves, 5.50 returns to available.
    let captured = post_key(
        &app,
        &format!("/holds/{id}/capture"),
        r#"{"amount":"20"}"#,
        None,
    )
    .await;
    let after = expect(&captured, 200);
    assert_eq!(after["id"], id.as_str());
    assert_eq!(after["status"], "captured");
    assert_eq!(raw(&captured.body, "amount"), "25.50");
    assert_eq!(raw(&captured.body, "captured"), "20.00");
    assert!(
        parse_ms(after["updatedAt"].as_str().unwrap()).unwrap()
            >= parse_ms(after["createdAt"].as_str().unwrap()).unwrap()
    );
    assert_eq!(balance(&app, "h-acc", "CASH").await, bal("80.00", "0.00"));
    assert_eq!(
        app.get(&format!("/holds/{id}")).await.body,
        captured.body,
        "the read shows the captured hold"
    );

    // Full capture: an empty body (no content type) takes everything.
    let full = post_empty(&app, &format!("/holds/{food_id}/capture")).await;
    let full_hold = expect(&full, 200);
    assert_eq!(full_hold["status"], "captured");
    assert_eq!(raw(&full.body, "captured"), "10.00");
    assert_eq!(balance(&app, "h-acc", "FOOD").await, bal("0.00", "0.00"));

    // Void: everything returns; `{}` is an accepted empty body.
    let third = post_key(&app, "/accounts/h-acc/holds", r#"{"amount":30}"#, None).await;
    let void_id = expect(&third, 201)["id"].as_str().unwrap().to_owned();
    assert_eq!(balance(&app, "h-acc", "CASH").await, bal("50.00", "30.00"));
    let voided = post_key(&app, &format!("/holds/{void_id}/void"), "{}", None).await;
    let voided_hold = expect(&voided, 200);
    assert_eq!(voided_hold["status"], "voided");
    assert_eq!(raw(&voided.body, "captured"), "0.00");
    assert_eq!(balance(&app, "h-acc", "CASH").await, bal("80.00", "0.00"));

    // The journal: one commit per step, each named by cause, on the right buckets.
    assert_eq!(
        sorted(entries_of(&app, "h-acc", &id).await),
        sorted(vec![
            entry("capture", "available", "CASH", "5.50", &id),
            entry("capture", "held", "CASH", "-20.00", &id),
            entry("capture", "held", "CASH", "-5.50", &id),
            entry("hold", "available", "CASH", "-25.50", &id),
            entry("hold", "held", "CASH", "25.50", &id),
        ])
    );
    let journal = entries_of(&app, "h-acc", &id).await;
    assert!(
        journal[..3].iter().all(|e| e.0 == "capture") && journal[3..].iter().all(|e| e.0 == "hold"),
        "newest first: {journal:?}"
    );
    assert_eq!(
        sorted(entries_of(&app, "h-acc", &food_id).await),
        sorted(vec![
            entry("capture", "held", "FOOD", "-10.00", &food_id),
            entry("hold", "available", "FOOD", "-10.00", &food_id),
            entry("hold", "held", "FOOD", "10.00", &food_id),
        ])
    );
    assert_eq!(
        sorted(entries_of(&app, "h-acc", &void_id).await),
        sorted(vec![
            entry("hold", "available", "CASH", "-30.00", &void_id),
            entry("hold", "held", "CASH", "30.00", &void_id),
            entry("void", "available", "CASH", "30.00", &void_id),
            entry("void", "held", "CASH", "-30.00", &void_id),
        ])
    );
}

#[tokio::test]
async fn hold_refusals_change_nothing() {
    // Goal: every refused hold, capture or void answers its code and moves no money; string
    // amounts and the longest allowed lifetime are accepted. Method: a table of bad bodies
    // and paths, balances read after them, then the lifecycle errors on a real hold.
    let app = App::new();
    app.open("r-acc", "0", "0", "10").await;
    let holds = "/accounts/r-acc/holds";

    post_key(&app, holds, r#"{"amount":10.01}"#, None)
        .await
        .assert_error(422, "insufficient_funds");
    post_key(&app, holds, r#"{"category":"FOOD","amount":1}"#, None)
        .await
        .assert_error(422, "insufficient_funds");
    post_key(&app, "/accounts/nobody/holds", r#"{"amount":1}"#, None)
        .await
        .assert_error(404, "account_not_found");
    post_key(&app, "/accounts/@external/holds", r#"{"amount":1}"#, None)
        .await
        .assert_error(400, "invalid_path");
    let ttl_max = WalletConfig::default().hold_ttl_max_ms;
    let too_long = format!(r#"{{"amount":1,"expiresInMs":{}}}"#, ttl_max + 1);
    for (body, status, code) in [
        (r#"{"amount":0}"#, 422, "invalid_amount"),
        (r#"{"amount":"0.00"}"#, 422, "invalid_amount"),
        (r#"{"amount":-1}"#, 422, "invalid_amount"),
        (r#"{"amount":"-1"}"#, 422, "invalid_amount"),
        (r#"{"amount":1.001}"#, 422, "invalid_amount"),
        (r#"{"amount":"1.001"}"#, 422, "invalid_amount"),
        (r#"{"amount":"ten"}"#, 422, "invalid_amount"),
        (r#"{"amount":true}"#, 422, "invalid_field"),
        (r#"{"amount":null}"#, 422, "missing_field"),
        (r#"{}"#, 422, "missing_field"),
        (r#"{"category":"FOOD"}"#, 422, "missing_field"),
        (r#"{"amount":1,"category":"GAS"}"#, 422, "invalid_field"),
        (r#"{"amount":1,"note":"x"}"#, 422, "invalid_field"),
        (r#"{"amount":1,"id":"a/b"}"#, 422, "invalid_field"),
        (r#"{"amount":1,"id":""}"#, 422, "invalid_field"),
        (r#"{"amount":1,"id":7}"#, 422, "invalid_field"),
        (r#"{"amount":1,"expiresInMs":0}"#, 422, "invalid_field"),
        (r#"{"amount":1,"expiresInMs":-5}"#, 422, "invalid_field"),
        (r#"{"amount":1,"expiresInMs":1.5}"#, 422, "invalid_field"),
        (r#"{"amount":1,"expiresInMs":"5000"}"#, 422, "invalid_field"),
        (&too_long, 422, "invalid_field"),
        (r#"{"amount":1"#, 400, "malformed_json"),
        ("", 400, "malformed_json"),
    ] {
        let response = post_key(&app, holds, body, None).await;
        assert_eq!(
            response.status.as_u16(),
            status,
            "{body}: {}",
            response.text()
        );
        response.assert_error(status, code);
    }
    assert_eq!(balance(&app, "r-acc", "CASH").await, bal("10.00", "0.00"));
    assert_eq!(balance(&app, "r-acc", "FOOD").await, bal("0.00", "0.00"));

    // Accepted: decimal strings, and the longest lifetime allowed.
    let longest = format!(r#"{{"id":"r-1","amount":"2.50","expiresInMs":{ttl_max}}}"#);
    let placed = post_key(&app, holds, &longest, None).await;
    expect(&placed, 201);
    assert_eq!(raw(&placed.body, "id"), r#""r-1""#);
    assert_eq!(raw(&placed.body, "amount"), "2.50");
    // 7.50 left: a string amount is checked against it like a number.
    post_key(&app, holds, r#"{"amount":"7.51"}"#, None)
        .await
        .assert_error(422, "insufficient_funds");
    let rest = post_key(&app, holds, r#"{"amount":"7.5"}"#, None).await;
    let rest_id = expect(&rest, 201)["id"].as_str().unwrap().to_owned();
    assert_eq!(raw(&rest.body, "amount"), "7.50");
    assert_eq!(balance(&app, "r-acc", "CASH").await, bal("0.00", "10.00"));

    // Unknown holds.
    app.get("/holds/nope")
        .await
        .assert_error(404, "hold_not_found");
    post_empty(&app, "/holds/nope/capture")
        .await
        .assert_error(404, "hold_not_found");
    post_empty(&app, "/holds/nope/void")
        .await
        .assert_error(404, "hold_not_found");
    app.get("/holds/a%20b")
        .await
        .assert_error(400, "invalid_path");

    // Captures and voids that cannot apply.
    for (body, status, code) in [
        (r#"{"amount":2.51}"#, 422, "capture_exceeds_hold"),
        (r#"{"amount":"100"}"#, 422, "capture_exceeds_hold"),
        (r#"{"amount":0}"#, 422, "invalid_amount"),
        (r#"{"amount":1.001}"#, 422, "invalid_amount"),
        (r#"{"amount":1,"x":1}"#, 422, "invalid_field"),
        (r#"{"amount":1"#, 400, "malformed_json"),
    ] {
        post_key(&app, "/holds/r-1/capture", body, None)
            .await
            .assert_error(status, code);
    }
    post_key(&app, "/holds/r-1/void", r#"{"amount":1}"#, None)
        .await
        .assert_error(422, "invalid_field");
    let still = app.get("/holds/r-1").await;
    assert_eq!(still.body, placed.body, "still active, unchanged");
    assert_eq!(balance(&app, "r-acc", "CASH").await, bal("0.00", "10.00"));

    // After a final step, nothing more applies.
    expect(&post_empty(&app, "/holds/r-1/capture").await, 200);
    assert_eq!(balance(&app, "r-acc", "CASH").await, bal("0.00", "7.50"));
    post_empty(&app, "/holds/r-1/capture")
        .await
        .assert_error(409, "hold_not_active");
    post_empty(&app, "/holds/r-1/void")
        .await
        .assert_error(409, "hold_not_active");
    expect(
        &post_empty(&app, &format!("/holds/{rest_id}/void")).await,
        200,
    );
    post_empty(&app, &format!("/holds/{rest_id}/void"))
        .await
        .assert_error(409, "hold_not_active");
    post_key(
        &app,
        &format!("/holds/{rest_id}/capture"),
        r#"{"amount":1}"#,
        None,
    )
    .await
    .assert_error(409, "hold_not_active");
    assert_eq!(balance(&app, "r-acc", "CASH").await, bal("7.50", "0.00"));
}

#[tokio::test]
async fn a_client_hold_id_is_an_idempotency_key() {
    // Goal: a hold's client id makes a retry replay the first answer (not hold twice), even
    // after the hold changed; another body under that id is a reused key; the id stays taken
    // for a request under another key. Method: repeat POSTs, compare bytes and balances.
    let app = App::new();
    app.open("c-acc", "0", "0", "50").await;
    app.open("c-other", "0", "0", "50").await;
    let body = r#"{"id":"hold-1","amount":20}"#;
    let first = post_key(&app, "/accounts/c-acc/holds", body, None).await;
    expect(&first, 201);
    let again = post_key(&app, "/accounts/c-acc/holds", body, None).await;
    assert_replay(&first, &again);
    assert_eq!(balance(&app, "c-acc", "CASH").await, bal("30.00", "20.00"));

    post_key(
        &app,
        "/accounts/c-acc/holds",
        r#"{"id":"hold-1","amount":21}"#,
        None,
    )
    .await
    .assert_error(422, "idempotency_key_reused");
    // The same body for another account is another request.
    post_key(&app, "/accounts/c-other/holds", body, None)
        .await
        .assert_error(422, "idempotency_key_reused");
    // Under an Idempotency-Key the id is still taken.
    post_key(&app, "/accounts/c-other/holds", body, Some("k-hold-1"))
        .await
        .assert_error(409, "resource_exists");
    assert_eq!(balance(&app, "c-acc", "CASH").await, bal("30.00", "20.00"));
    assert_eq!(balance(&app, "c-other", "CASH").await, bal("50.00", "0.00"));

    // Once captured, a retry still answers the first response (the hold as placed).
    expect(&post_empty(&app, "/holds/hold-1/capture").await, 200);
    let late = post_key(&app, "/accounts/c-acc/holds", body, None).await;
    assert_replay(&first, &late);
    assert_eq!(late.json()["status"], "active");
    assert_eq!(app.get("/holds/hold-1").await.json()["status"], "captured");
    assert_eq!(balance(&app, "c-acc", "CASH").await, bal("30.00", "0.00"));
}

#[tokio::test]
async fn an_expired_hold_is_released_and_cannot_be_captured() {
    // Goal: past its expiry a hold cannot be captured or voided (`hold_expired`), its money
    // is back in available at once, and the sweep expires due holds only. Method: holds of
    // 1 ms, a short sleep, then capture/void through the API and `expire_holds` on the store.
    let app = App::new();
    app.open("x-acc", "0", "0", "10").await;
    let holds = "/accounts/x-acc/holds";
    for id in ["exp-1", "exp-2", "exp-3"] {
        let body = format!(r#"{{"id":"{id}","amount":2,"expiresInMs":1}}"#);
        expect(&post_key(&app, holds, &body, None).await, 201);
    }
    expect(
        &post_key(&app, holds, r#"{"id":"exp-4","amount":1}"#, None).await,
        201,
    );
    assert_eq!(balance(&app, "x-acc", "CASH").await, bal("3.00", "7.00"));
    tokio::time::sleep(Duration::from_millis(20)).await;

    post_key(&app, "/holds/exp-1/capture", r#"{"amount":1}"#, None)
        .await
        .assert_error(409, "hold_expired");
    assert_eq!(balance(&app, "x-acc", "CASH").await, bal("5.00", "5.00"));
    let expired = app.get("/holds/exp-1").await;
    assert_eq!(expired.status, 200);
    assert_eq!(expired.json()["status"], "expired");
    assert_eq!(raw(&expired.body, "captured"), "0.00");
    post_empty(&app, "/holds/exp-1/capture")
        .await
        .assert_error(409, "hold_not_active");
    post_empty(&app, "/holds/exp-1/void")
        .await
        .assert_error(409, "hold_not_active");

    post_empty(&app, "/holds/exp-2/void")
        .await
        .assert_error(409, "hold_expired");
    assert_eq!(balance(&app, "x-acc", "CASH").await, bal("7.00", "3.00"));

    // The sweep expires exp-3 (due), not exp-4 (7 days left), nor the already expired.
    let sweep = app.store.expire_holds(now_ms(), 100).await.unwrap();
    assert_eq!(sweep.done, 1, "{sweep:?}");
    assert_eq!(app.get("/holds/exp-3").await.json()["status"], "expired");
    assert_eq!(app.get("/holds/exp-4").await.json()["status"], "active");
    assert_eq!(balance(&app, "x-acc", "CASH").await, bal("9.00", "1.00"));

    for id in ["exp-1", "exp-2", "exp-3"] {
        let journal = entries_of(&app, "x-acc", id).await;
        assert_eq!(
            sorted(journal.clone()),
            sorted(vec![
                entry("expiry", "available", "CASH", "2.00", id),
                entry("expiry", "held", "CASH", "-2.00", id),
                entry("hold", "available", "CASH", "-2.00", id),
                entry("hold", "held", "CASH", "2.00", id),
            ]),
            "{id}"
        );
        assert!(
            journal[..2].iter().all(|e| e.0 == "expiry"),
            "newest first: {journal:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Withdrawals
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn withdrawals_need_a_key_take_only_available_money_and_replay() {
    // Goal: a withdrawal needs an Idempotency-Key, debits available money once (held money
    // is not withdrawable), answers its receipt, replays it byte for byte, and refuses the
    // key with another body. Method: withdrawals before and after a hold, balances read.
    let app = App::new();
    app.open("w-acc", "0", "0", "100").await;
    let uri = "/accounts/w-acc/withdrawals";
    let body = r#"{"category":"CASH","amount":"30.25"}"#;

    post_key(&app, uri, body, None)
        .await
        .assert_error(400, "idempotency_key_missing");
    post_key(&app, uri, body, Some("has space"))
        .await
        .assert_error(400, "invalid_idempotency_key");
    assert_eq!(balance(&app, "w-acc", "CASH").await, bal("100.00", "0.00"));

    let first = post_key(&app, uri, body, Some("w-1")).await;
    let receipt = expect(&first, 201);
    assert_generated(receipt["id"].as_str().unwrap());
    assert_eq!(receipt["account"], "w-acc");
    assert_eq!(receipt["category"], "CASH");
    assert_eq!(raw(&first.body, "amount"), "30.25");
    assert_eq!(raw(&first.body, "availableAfter"), "69.75");
    assert!(parse_ms(receipt["createdAt"].as_str().unwrap()).is_ok());
    assert_eq!(balance(&app, "w-acc", "CASH").await, bal("69.75", "0.00"));

    let again = post_key(&app, uri, body, Some("w-1")).await;
    assert_replay(&first, &again);
    post_key(
        &app,
        uri,
        r#"{"category":"CASH","amount":"30.26"}"#,
        Some("w-1"),
    )
    .await
    .assert_error(422, "idempotency_key_reused");
    assert_eq!(balance(&app, "w-acc", "CASH").await, bal("69.75", "0.00"));

    // Held money cannot be withdrawn.
    expect(
        &post_key(&app, "/accounts/w-acc/holds", r#"{"amount":60}"#, None).await,
        201,
    );
    post_key(&app, uri, r#"{"category":"CASH","amount":10}"#, Some("w-2"))
        .await
        .assert_error(422, "insufficient_funds");
    post_key(&app, uri, r#"{"category":"FOOD","amount":1}"#, Some("w-3"))
        .await
        .assert_error(422, "insufficient_funds");
    let all = post_key(
        &app,
        uri,
        r#"{"category":"CASH","amount":9.75}"#,
        Some("w-4"),
    )
    .await;
    expect(&all, 201);
    assert_eq!(raw(&all.body, "availableAfter"), "0.00");
    assert_eq!(balance(&app, "w-acc", "CASH").await, bal("0.00", "60.00"));

    post_key(&app, "/accounts/nobody/withdrawals", body, Some("w-5"))
        .await
        .assert_error(404, "account_not_found");
    for (body, status, code) in [
        (r#"{"category":"CASH","amount":0}"#, 422, "invalid_amount"),
        (r#"{"category":"CASH","amount":-1}"#, 422, "invalid_amount"),
        (r#"{"amount":1}"#, 422, "missing_field"),
        (r#"{"category":"CASH"}"#, 422, "missing_field"),
        (
            r#"{"category":"CASH","amount":1,"x":1}"#,
            422,
            "invalid_field",
        ),
        ("{", 400, "malformed_json"),
    ] {
        post_key(&app, uri, body, Some("w-6"))
            .await
            .assert_error(status, code);
    }
    assert_eq!(balance(&app, "w-acc", "CASH").await, bal("0.00", "60.00"));

    let id = receipt["id"].as_str().unwrap();
    assert_eq!(
        entries_of(&app, "w-acc", id).await,
        vec![entry("withdrawal", "available", "CASH", "-30.25", id)]
    );
}

// ---------------------------------------------------------------------------------------
// Transfers
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn transfers_are_accepted_pending_and_settle_in_order() {
    // Goal: a transfer answers 202 pending without moving money (amount as a number or a
    // decimal string), then settles in acceptance order to completed. Method: the second
    // transfer needs the first one's money; settle with the store's sweep; read both.
    let app = App::new();
    app.open("t-a", "0", "0", "100").await;
    app.open("t-b", "0", "0", "5").await;

    let first = app
        .post(
            "/transfers",
            r#"{"from":"t-a","to":"t-b","amount":99.01,"description":"rent"}"#,
        )
        .await;
    let accepted = expect(&first, 202);
    let mut fields: Vec<&str> = accepted
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "amount",
            "category",
            "createdAt",
            "description",
            "from",
            "id",
            "reason",
            "status",
            "to",
            "updatedAt"
        ]
    );
    let id = accepted["id"].as_str().unwrap().to_owned();
    assert_generated(&id);
    assert_eq!(accepted["from"], "t-a");
    assert_eq!(accepted["to"], "t-b");
    assert_eq!(accepted["category"], "CASH");
    assert_eq!(raw(&first.body, "amount"), "99.01");
    assert_eq!(accepted["description"], "rent");
    assert_eq!(accepted["status"], "pending");
    assert_eq!(accepted["reason"], Value::Null);

    // Needs the first transfer's money.
    let second = app
        .post(
            "/transfers",
            r#"{"id":"tr-str","from":"t-b","to":"t-a","amount":"104.01","category":"CASH"}"#,
        )
        .await;
    let accepted_second = expect(&second, 202);
    assert_eq!(accepted_second["id"], "tr-str");
    assert_eq!(raw(&second.body, "amount"), "104.01");
    assert_eq!(accepted_second["description"], Value::Null);

    assert_eq!(app.store.pending_transfers().await.unwrap(), 2);
    assert_eq!(app.get(&format!("/transfers/{id}")).await.body, first.body);
    assert_eq!(balance(&app, "t-a", "CASH").await, bal("100.00", "0.00"));
    assert_eq!(balance(&app, "t-b", "CASH").await, bal("5.00", "0.00"));

    let sweep = app.store.settle_transfers(1000).await.unwrap();
    assert_eq!(sweep.done, 2, "{sweep:?}");
    assert_eq!(app.store.pending_transfers().await.unwrap(), 0);
    for id in [id.as_str(), "tr-str"] {
        let read = app.get(&format!("/transfers/{id}")).await;
        let transfer = expect(&read, 200);
        assert_eq!(transfer["status"], "completed", "{transfer}");
        assert_eq!(transfer["reason"], Value::Null);
    }
    assert_eq!(balance(&app, "t-a", "CASH").await, bal("105.00", "0.00"));
    assert_eq!(balance(&app, "t-b", "CASH").await, bal("0.00", "0.00"));
    assert_eq!(
        entries_of(&app, "t-a", &id).await,
        vec![entry("transfer", "available", "CASH", "-99.01", &id)]
    );
    assert_eq!(
        entries_of(&app, "t-b", &id).await,
        vec![entry("transfer", "available", "CASH", "99.01", &id)]
    );
}

#[tokio::test]
async fn transfers_are_rejected_with_a_reason_and_move_nothing() {
    // Goal: a transfer that cannot settle ends `rejected` with `insufficient_funds` (held
    // money does not count) or `account_not_found` (either side), and no balance moves.
    // Method: accept four doomed transfers, settle, read them and the balances.
    let app = App::new();
    app.open("r-a", "0", "0", "10").await;
    app.open("r-b", "0", "0", "0").await;
    expect(
        &post_key(&app, "/accounts/r-a/holds", r#"{"amount":5}"#, None).await,
        201,
    );
    let cases = [
        (
            r#"{"id":"rj-1","from":"r-a","to":"r-b","amount":10}"#,
            "insufficient_funds",
        ),
        (
            r#"{"id":"rj-2","from":"r-a","to":"r-b","amount":"5.01"}"#,
            "insufficient_funds",
        ),
        (
            r#"{"id":"rj-3","from":"r-a","to":"ghost","amount":1}"#,
            "account_not_found",
        ),
        (
            r#"{"id":"rj-4","from":"ghost","to":"r-a","amount":1}"#,
            "account_not_found",
        ),
    ];
    for (body, _) in cases {
        expect(&app.post("/transfers", body).await, 202);
    }
    assert_eq!(app.store.settle_transfers(1000).await.unwrap().done, 4);
    for (i, (_, reason)) in cases.iter().enumerate() {
        let read = app.get(&format!("/transfers/rj-{}", i + 1)).await;
        let transfer = expect(&read, 200);
        assert_eq!(transfer["status"], "rejected", "{transfer}");
        assert_eq!(transfer["reason"], *reason, "{transfer}");
    }
    assert_eq!(balance(&app, "r-a", "CASH").await, bal("5.00", "5.00"));
    assert_eq!(balance(&app, "r-b", "CASH").await, bal("0.00", "0.00"));
    app.get("/accounts/ghost")
        .await
        .assert_error(404, "account_not_found");
}

#[tokio::test]
async fn transfer_requests_are_validated() {
    // Goal: malformed transfers are refused with their code and nothing is queued; unknown
    // transfers are 404. Method: a table of bodies, then the pending count.
    let app = App::new();
    let long = format!(
        r#"{{"from":"a","to":"b","amount":1,"description":"{}"}}"#,
        "é".repeat(501)
    );
    for (body, status, code) in [
        (r#"{"from":"a","to":"a","amount":1}"#, 422, "invalid_field"),
        (r#"{"to":"b","amount":1}"#, 422, "missing_field"),
        (r#"{"from":"a","amount":1}"#, 422, "missing_field"),
        (r#"{"from":"a","to":"b"}"#, 422, "missing_field"),
        (r#"{"from":"a","to":"b","amount":0}"#, 422, "invalid_amount"),
        (
            r#"{"from":"a","to":"b","amount":"-1"}"#,
            422,
            "invalid_amount",
        ),
        (
            r#"{"from":"a","to":"b","amount":1.001}"#,
            422,
            "invalid_amount",
        ),
        (
            r#"{"from":"a","to":"b","amount":1,"category":"GAS"}"#,
            422,
            "invalid_field",
        ),
        (
            r#"{"from":"a","to":"b","amount":1,"description":5}"#,
            422,
            "invalid_field",
        ),
        (
            r#"{"from":"a","to":"b","amount":1,"memo":"x"}"#,
            422,
            "invalid_field",
        ),
        (
            r#"{"from":"@external","to":"b","amount":1}"#,
            422,
            "invalid_field",
        ),
        (
            r#"{"from":"a","to":"@external","amount":1}"#,
            422,
            "invalid_field",
        ),
        (
            r#"{"id":"a/b","from":"a","to":"b","amount":1}"#,
            422,
            "invalid_field",
        ),
        (&long, 422, "invalid_field"),
        (r#"{"from":"a","to":"b","amount":1"#, 400, "malformed_json"),
        ("", 400, "malformed_json"),
    ] {
        app.post("/transfers", body)
            .await
            .assert_error(status, code);
    }
    assert_eq!(app.store.pending_transfers().await.unwrap(), 0);

    // 500 characters (not bytes) is the limit; `null` is no description.
    let longest = format!(
        r#"{{"id":"tv-1","from":"a","to":"b","amount":1,"description":"{}"}}"#,
        "é".repeat(500)
    );
    let accepted = app.post("/transfers", &longest).await;
    assert_eq!(expect(&accepted, 202)["description"], "é".repeat(500));
    let no_description = app
        .post(
            "/transfers",
            r#"{"id":"tv-2","from":"a","to":"b","amount":1,"description":null}"#,
        )
        .await;
    assert_eq!(expect(&no_description, 202)["description"], Value::Null);
    assert_eq!(app.store.pending_transfers().await.unwrap(), 2);

    app.get("/transfers/nope")
        .await
        .assert_error(404, "transfer_not_found");
    app.get("/transfers/a%20b")
        .await
        .assert_error(400, "invalid_path");
}

#[tokio::test]
async fn transfer_ids_and_keys_replay_the_first_answer() {
    // Goal: a transfer's client id and an Idempotency-Key each make a retry replay the
    // first 202 (the same generated id, even for a body without one), queue nothing more,
    // refuse another body, and keep answering the first response after settlement.
    // Method: retries before and after settling; pending count and balances.
    let app = App::new();
    app.open("i-a", "0", "0", "50").await;
    app.open("i-b", "0", "0", "0").await;

    let body = r#"{"id":"tr-1","from":"i-a","to":"i-b","amount":10}"#;
    let first = app.post("/transfers", body).await;
    expect(&first, 202);
    assert_replay(&first, &app.post("/transfers", body).await);
    app.post(
        "/transfers",
        r#"{"id":"tr-1","from":"i-a","to":"i-b","amount":11}"#,
    )
    .await
    .assert_error(422, "idempotency_key_reused");
    // The id under an Idempotency-Key is still taken.
    post_key(&app, "/transfers", body, Some("tk-other"))
        .await
        .assert_error(409, "resource_exists");

    let keyed = r#"{"from":"i-a","to":"i-b","amount":"2.50"}"#;
    let generated = post_key(&app, "/transfers", keyed, Some("tk-1")).await;
    let generated_id = expect(&generated, 202)["id"].as_str().unwrap().to_owned();
    assert_generated(&generated_id);
    let retry = post_key(&app, "/transfers", keyed, Some("tk-1")).await;
    assert_replay(&generated, &retry);
    assert_eq!(retry.json()["id"], generated_id.as_str());
    post_key(
        &app,
        "/transfers",
        r#"{"from":"i-a","to":"i-b","amount":"2.51"}"#,
        Some("tk-1"),
    )
    .await
    .assert_error(422, "idempotency_key_reused");
    // Without the key, the same body is a new transfer.
    let fresh = app.post("/transfers", keyed).await;
    let fresh_id = expect(&fresh, 202)["id"].as_str().unwrap().to_owned();
    assert_ne!(fresh_id, generated_id);
    assert_eq!(app.store.pending_transfers().await.unwrap(), 3);

    assert_eq!(app.store.settle_transfers(1000).await.unwrap().done, 3);
    assert_eq!(balance(&app, "i-a", "CASH").await, bal("35.00", "0.00"));
    assert_eq!(balance(&app, "i-b", "CASH").await, bal("15.00", "0.00"));
    // Retries after settlement: the stored first answer (pending), nothing moves again.
    assert_replay(&first, &app.post("/transfers", body).await);
    assert_replay(
        &generated,
        &post_key(&app, "/transfers", keyed, Some("tk-1")).await,
    );
    assert_eq!(app.store.pending_transfers().await.unwrap(), 0);
    assert_eq!(
        app.get("/transfers/tr-1").await.json()["status"],
        "completed"
    );
    assert_eq!(balance(&app, "i-a", "CASH").await, bal("35.00", "0.00"));
}

// ---------------------------------------------------------------------------------------
// Pay-ins
// ---------------------------------------------------------------------------------------

const PAY_1: &str = "0193a2c4-1b2c-7d3e-8f40-5a6b7c8d9e01";
const PAY_2: &str = "0193a2c4-1b2c-7d3e-8f40-5a6b7c8d9e02";
const PAY_3: &str = "0193a2c4-1b2c-7d3e-8f40-5a6b7c8d9e03";
const PAY_4: &str = "0193a2c4-1b2c-7d3e-8f40-5a6b7c8d9e04";

#[tokio::test]
async fn a_pay_in_holds_at_once_and_is_captured_when_booked() {
    // Goal: `POST /payments` with an account holds the amount in the same commit, shows the
    // hold on the payment, refuses to let the hold be captured or voided by hand, and
    // captures it when the payment is booked. Method: intake, reads, a manual void/capture,
    // then a booked transition applied to the store as the engine would.
    let app = App::new();
    app.open("p-acc", "0", "0", "100").await;
    let body = format!(r#"{{"correlationId":"{PAY_1}","amount":30,"account":"p-acc"}}"#);
    let accepted = app.post("/payments", &body).await;
    let answer = expect(&accepted, 202);
    assert_eq!(answer["correlationId"], PAY_1);
    assert_eq!(balance(&app, "p-acc", "CASH").await, bal("70.00", "30.00"));

    let read = app.get(&format!("/payments/{PAY_1}")).await;
    let payment = expect(&read, 200);
    assert_eq!(payment["status"], "pending");
    let hold = &payment["hold"];
    let hold_id = hold["id"].as_str().unwrap().to_owned();
    assert_generated(&hold_id);
    assert_eq!(hold["account"], "p-acc");
    assert_eq!(hold["category"], "CASH");
    assert_eq!(hold["status"], "active");
    assert_eq!(hold["payment"], PAY_1);
    assert_eq!(
        hold["expiresAt"],
        Value::Null,
        "a pay-in's hold follows its payment"
    );
    assert!(
        read.text().contains(r#""amount":30.00,"captured":0.00"#),
        "{}",
        read.text()
    );

    // The hold is the payment's.
    post_empty(&app, &format!("/holds/{hold_id}/void"))
        .await
        .assert_error(409, "hold_owned_by_payment");
    post_empty(&app, &format!("/holds/{hold_id}/capture"))
        .await
        .assert_error(409, "hold_owned_by_payment");
    assert_eq!(balance(&app, "p-acc", "CASH").await, bal("70.00", "30.00"));

    // A repeat holds nothing more; the same id from another wallet is a reused key.
    expect(&app.post("/payments", &body).await, 202);
    assert_eq!(balance(&app, "p-acc", "CASH").await, bal("70.00", "30.00"));
    app.open("p-other", "0", "0", "100").await;
    app.post(
        "/payments",
        &format!(r#"{{"correlationId":"{PAY_1}","amount":30,"account":"p-other"}}"#),
    )
    .await
    .assert_error(422, "idempotency_key_reused");
    assert_eq!(
        balance(&app, "p-other", "CASH").await,
        bal("100.00", "0.00")
    );

    finish_payment(&app, PAY_1, true).await;
    let booked = app.get(&format!("/payments/{PAY_1}")).await.json();
    assert_eq!(booked["status"], "succeeded");
    assert_eq!(booked["hold"]["status"], "captured");
    assert_eq!(booked["hold"]["id"], hold_id.as_str());
    let hold_read = app.get(&format!("/holds/{hold_id}")).await;
    assert_eq!(raw(&hold_read.body, "captured"), "30.00");
    assert_eq!(balance(&app, "p-acc", "CASH").await, bal("70.00", "0.00"));
    // Journaled under the payment.
    assert_eq!(
        sorted(entries_of(&app, "p-acc", PAY_1).await),
        sorted(vec![
            entry("payment", "available", "CASH", "-30.00", PAY_1),
            entry("payment", "held", "CASH", "30.00", PAY_1),
            entry("payment", "held", "CASH", "-30.00", PAY_1),
        ])
    );
    let events = app.get("/events").await.json();
    let kinds: Vec<(&str, &str)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["type"].as_str().unwrap(), e["subject"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("hold.captured", hold_id.as_str()),
            ("payment.succeeded", PAY_1)
        ]
    );
}

#[tokio::test]
async fn a_failed_pay_in_is_released_and_a_refused_one_is_not_queued() {
    // Goal: a pay-in that definitively failed releases its hold; a pay-in without funds or
    // without an account is refused at once and nothing is stored or queued; `category`
    // needs `account`. Method: intake, a failed transition, then refusals and reads.
    let app = App::new();
    app.open("f-acc", "50", "0", "0").await;
    let body = format!(
        r#"{{"correlationId":"{PAY_2}","amount":"20","account":"f-acc","category":"FOOD"}}"#
    );
    expect(&app.post("/payments", &body).await, 202);
    assert_eq!(balance(&app, "f-acc", "FOOD").await, bal("30.00", "20.00"));
    let wakes = app.wakes.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(wakes, 1);

    finish_payment(&app, PAY_2, false).await;
    let failed = app.get(&format!("/payments/{PAY_2}")).await.json();
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["hold"]["status"], "voided");
    assert_eq!(failed["hold"]["category"], "FOOD");
    assert_eq!(balance(&app, "f-acc", "FOOD").await, bal("50.00", "0.00"));

    // Refused at once: nothing stored, nothing queued, the gateway not woken.
    let pending = app.store.pending_payments().await.unwrap();
    app.post(
        "/payments",
        &format!(
            r#"{{"correlationId":"{PAY_3}","amount":50.01,"account":"f-acc","category":"FOOD"}}"#
        ),
    )
    .await
    .assert_error(422, "insufficient_funds");
    app.get(&format!("/payments/{PAY_3}"))
        .await
        .assert_error(404, "payment_not_found");
    app.post(
        "/payments",
        &format!(r#"{{"correlationId":"{PAY_4}","amount":1,"account":"nobody"}}"#),
    )
    .await
    .assert_error(404, "account_not_found");
    app.get(&format!("/payments/{PAY_4}"))
        .await
        .assert_error(404, "payment_not_found");
    app.post(
        "/payments",
        &format!(r#"{{"correlationId":"{PAY_4}","amount":1,"category":"FOOD"}}"#),
    )
    .await
    .assert_error(422, "invalid_field");
    app.post(
        "/payments",
        &format!(r#"{{"correlationId":"{PAY_4}","amount":1,"account":"@external"}}"#),
    )
    .await
    .assert_error(422, "invalid_field");
    app.get(&format!("/payments/{PAY_4}"))
        .await
        .assert_error(404, "payment_not_found");
    assert_eq!(app.store.pending_payments().await.unwrap(), pending);
    assert_eq!(app.wakes.load(std::sync::atomic::Ordering::Relaxed), wakes);
    assert_eq!(balance(&app, "f-acc", "FOOD").await, bal("50.00", "0.00"));

    // Once funded, the refused correlation id can be used: it was never stored.
    let paid = app
        .post(
            "/payments",
            &format!(
                r#"{{"correlationId":"{PAY_3}","amount":50,"account":"f-acc","category":"FOOD"}}"#
            ),
        )
        .await;
    expect(&paid, 202);
    assert_eq!(balance(&app, "f-acc", "FOOD").await, bal("0.00", "50.00"));
}

// ---------------------------------------------------------------------------------------
// Idempotency across endpoints
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn accounts_replay_under_an_idempotency_key() {
    // Goal: `POST /accounts` with an Idempotency-Key replays its first 201 (body and
    // Location, even for a generated id); without a key a repeated id is `account_exists`;
    // a refusal under a key is replayed too. Method: repeated POSTs, then the account read.
    let app = App::new();
    let body = r#"{"id":"acc-k","balances":{"CASH":100}}"#;
    let first = post_key(&app, "/accounts", body, Some("ka-1")).await;
    expect(&first, 201);
    assert_eq!(first.header("location"), Some("/accounts/acc-k"));
    let again = post_key(&app, "/accounts", body, Some("ka-1")).await;
    assert_replay(&first, &again);
    assert_eq!(again.header("location"), Some("/accounts/acc-k"));
    post_key(
        &app,
        "/accounts",
        r#"{"id":"acc-k","balances":{"CASH":101}}"#,
        Some("ka-1"),
    )
    .await
    .assert_error(422, "idempotency_key_reused");
    post_key(&app, "/accounts", body, None)
        .await
        .assert_error(409, "account_exists");
    let exists = post_key(&app, "/accounts", body, Some("ka-2")).await;
    exists.assert_error(409, "account_exists");
    assert_eq!(exists.header("location"), None);
    assert_replay(
        &exists,
        &post_key(&app, "/accounts", body, Some("ka-2")).await,
    );
    assert_eq!(balance(&app, "acc-k", "CASH").await, bal("100.00", "0.00"));

    // A generated id: the replay names the same account.
    let generated = post_key(&app, "/accounts", "{}", Some("ka-3")).await;
    let id = expect(&generated, 201)["id"].as_str().unwrap().to_owned();
    assert_generated(&id);
    let replay = post_key(&app, "/accounts", "{}", Some("ka-3")).await;
    assert_replay(&generated, &replay);
    let location = format!("/accounts/{id}");
    assert_eq!(replay.header("location"), Some(location.as_str()));
    // Without the key, the same body opens another account.
    let other = expect(&post_key(&app, "/accounts", "{}", None).await, 201);
    assert_ne!(other["id"], id.as_str());
}

#[tokio::test]
async fn every_wallet_mutation_replays_under_an_idempotency_key() {
    // Goal: deposits, withdrawals, holds, captures, voids and transfers under an
    // Idempotency-Key: the same key and body replay the stored first response (status and
    // bytes, flagged) and change nothing; the same key with another body (or on another
    // endpoint) is `idempotency_key_reused`. Method: each request three times, then the
    // balances, which must show each effect exactly once.
    let app = App::new();
    app.open("k-acc", "0", "0", "100").await;
    app.open("k-to", "0", "0", "0").await;
    let placed = post_key(&app, "/accounts/k-acc/holds", r#"{"amount":20}"#, None).await;
    let capture_id = expect(&placed, 201)["id"].as_str().unwrap().to_owned();
    let placed = post_key(&app, "/accounts/k-acc/holds", r#"{"amount":5}"#, None).await;
    let void_id = expect(&placed, 201)["id"].as_str().unwrap().to_owned();

    let capture_uri = format!("/holds/{capture_id}/capture");
    let void_uri = format!("/holds/{void_id}/void");
    let cases: [(&str, &str, &str, &str, u16); 6] = [
        (
            "kk-dep",
            "/accounts/k-acc/deposits",
            r#"{"category":"CASH","amount":10}"#,
            r#"{"category":"CASH","amount":11}"#,
            201,
        ),
        (
            "kk-wd",
            "/accounts/k-acc/withdrawals",
            r#"{"category":"CASH","amount":3}"#,
            r#"{"category":"CASH","amount":4}"#,
            201,
        ),
        (
            "kk-hold",
            "/accounts/k-acc/holds",
            r#"{"amount":7}"#,
            r#"{"amount":8}"#,
            201,
        ),
        (
            "kk-cap",
            &capture_uri,
            r#"{"amount":15}"#,
            r#"{"amount":16}"#,
            200,
        ),
        ("kk-void", &void_uri, "", "{}", 200),
        (
            "kk-tr",
            "/transfers",
            r#"{"from":"k-acc","to":"k-to","amount":1}"#,
            r#"{"from":"k-acc","to":"k-to","amount":2}"#,
            202,
        ),
    ];
    for (key, uri, body, other, status) in cases {
        let first = post_key(&app, uri, body, Some(key)).await;
        expect(&first, status);
        let again = post_key(&app, uri, body, Some(key)).await;
        assert_replay(&first, &again);
        post_key(&app, uri, other, Some(key))
            .await
            .assert_error(422, "idempotency_key_reused");
        // The refusal consumed nothing: the key still replays.
        assert_replay(&first, &post_key(&app, uri, body, Some(key)).await);
    }
    // Wallet keys are one namespace: a key is tied to its endpoint.
    post_key(
        &app,
        "/transfers",
        r#"{"from":"k-acc","to":"k-to","amount":7}"#,
        Some("kk-hold"),
    )
    .await
    .assert_error(422, "idempotency_key_reused");
    post_key(
        &app,
        "/accounts/k-to/holds",
        r#"{"amount":7}"#,
        Some("kk-hold"),
    )
    .await
    .assert_error(422, "idempotency_key_reused");
    // An optional key must still be well formed.
    let bad = "x".repeat(256);
    for key in ["has space", bad.as_str()] {
        post_key(&app, "/accounts/k-acc/holds", r#"{"amount":1}"#, Some(key))
            .await
            .assert_error(400, "invalid_idempotency_key");
        post_key(
            &app,
            "/transfers",
            r#"{"from":"k-acc","to":"k-to","amount":1}"#,
            Some(key),
        )
        .await
        .assert_error(400, "invalid_idempotency_key");
    }
    // Without a key a repeated capture is not idempotent: the hold is final.
    post_key(&app, &capture_uri, r#"{"amount":15}"#, None)
        .await
        .assert_error(409, "hold_not_active");

    // 100 - 20 (captured 15, 5 back) - 5 (voided, back) + 10 - 3 - 7 (held):
    // available 100 - 15 + 10 - 3 - 7 = 85, held 7; one transfer of 1 pending.
    assert_eq!(balance(&app, "k-acc", "CASH").await, bal("85.00", "7.00"));
    assert_eq!(app.store.pending_transfers().await.unwrap(), 1);
    app.store.settle_transfers(1000).await.unwrap();
    assert_eq!(balance(&app, "k-acc", "CASH").await, bal("84.00", "7.00"));
    assert_eq!(balance(&app, "k-to", "CASH").await, bal("1.00", "0.00"));
}

#[tokio::test]
async fn a_refusal_is_replayed_even_after_funds_arrive() {
    // Goal: a refused mutation's answer is stored like any other: a retry with the same
    // key (or client id) answers the same 422 even once the money is there, and a new key
    // succeeds. Method: refused hold and withdrawal, a deposit, the same retries.
    let app = App::new();
    app.open("rf-acc", "0", "0", "5").await;
    let refused_hold = post_key(
        &app,
        "/accounts/rf-acc/holds",
        r#"{"amount":10}"#,
        Some("rf-1"),
    )
    .await;
    refused_hold.assert_error(422, "insufficient_funds");
    assert_eq!(refused_hold.header("idempotent-replayed"), None);
    let refused_id = post_key(
        &app,
        "/accounts/rf-acc/holds",
        r#"{"id":"rf-h","amount":10}"#,
        None,
    )
    .await;
    refused_id.assert_error(422, "insufficient_funds");
    let withdrawal = r#"{"category":"CASH","amount":10}"#;
    let refused_withdrawal = post_key(
        &app,
        "/accounts/rf-acc/withdrawals",
        withdrawal,
        Some("rf-2"),
    )
    .await;
    refused_withdrawal.assert_error(422, "insufficient_funds");

    let deposit = post_key(
        &app,
        "/accounts/rf-acc/deposits",
        r#"{"category":"CASH","amount":20}"#,
        Some("rf-dep"),
    )
    .await;
    assert_eq!(deposit.status, 201, "{}", deposit.text());
    assert_eq!(balance(&app, "rf-acc", "CASH").await, bal("25.00", "0.00"));

    assert_replay(
        &refused_hold,
        &post_key(
            &app,
            "/accounts/rf-acc/holds",
            r#"{"amount":10}"#,
            Some("rf-1"),
        )
        .await,
    );
    assert_replay(
        &refused_id,
        &post_key(
            &app,
            "/accounts/rf-acc/holds",
            r#"{"id":"rf-h","amount":10}"#,
            None,
        )
        .await,
    );
    assert_replay(
        &refused_withdrawal,
        &post_key(
            &app,
            "/accounts/rf-acc/withdrawals",
            withdrawal,
            Some("rf-2"),
        )
        .await,
    );
    assert_eq!(balance(&app, "rf-acc", "CASH").await, bal("25.00", "0.00"));
    app.get("/holds/rf-h")
        .await
        .assert_error(404, "hold_not_found");

    let fresh = post_key(
        &app,
        "/accounts/rf-acc/holds",
        r#"{"amount":10}"#,
        Some("rf-3"),
    )
    .await;
    expect(&fresh, 201);
    assert_eq!(balance(&app, "rf-acc", "CASH").await, bal("15.00", "10.00"));
}

/// A wallet port that, once armed, stops the next `execute` at a gate: it reports that the
/// call arrived, then waits for the gate to open before running it on the real store.
/// Every other call, and every `execute` after the stopped one, goes straight through.
struct Gated {
    inner: Arc<SqliteStore>,
    armed: Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
}

impl Gated {
    /// Arms the gate: returns (arrived, open).
    fn arm(&self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (arrived_tx, arrived_rx) = oneshot::channel();
        let (open_tx, open_rx) = oneshot::channel();
        *self.armed.lock().unwrap() = Some((arrived_tx, open_rx));
        (arrived_rx, open_tx)
    }
}

#[async_trait]
impl WalletStore for Gated {
    async fn execute(
        &self,
        mutation: Mutation,
        claim: Option<Claim>,
    ) -> Result<Replied<Effect>, LedgerError> {
        let gate = self.armed.lock().unwrap().take();
        if let Some((arrived, open)) = gate {
            arrived.send(()).unwrap();
            open.await.unwrap();
        }
        self.inner.execute(mutation, claim).await
    }

    async fn hold(&self, id: &ResourceId) -> Result<Option<HoldView>, LedgerError> {
        self.inner.hold(id).await
    }

    async fn transfer(&self, id: &ResourceId) -> Result<Option<TransferView>, LedgerError> {
        self.inner.transfer(id).await
    }

    async fn expire_holds(&self, now_ms: i64, limit: u32) -> Result<Sweep, LedgerError> {
        self.inner.expire_holds(now_ms, limit).await
    }

    async fn settle_transfers(&self, limit: u32) -> Result<Sweep, LedgerError> {
        self.inner.settle_transfers(limit).await
    }

    async fn pending_turn(
        &self,
        id: &ResourceId,
    ) -> Result<Option<(payd_domain::Transfer, bool)>, LedgerError> {
        self.inner.pending_turn(id).await
    }

    async fn settle_fenced(
        &self,
        id: &ResourceId,
        fences: &[payd_domain::Fence],
    ) -> Result<payd_ports::FencedSettle, LedgerError> {
        self.inner.settle_fenced(id, fences).await
    }

    async fn pending_transfers(&self) -> Result<u64, LedgerError> {
        self.inner.pending_transfers().await
    }

    async fn purge_idempotency(&self, now_ms: i64, limit: u32) -> Result<Sweep, LedgerError> {
        self.inner.purge_idempotency(now_ms, limit).await
    }

    async fn events(&self, after_seq: i64, limit: u32) -> Result<Vec<EventView>, LedgerError> {
        self.inner.events(after_seq, limit).await
    }
}

/// A request: its Idempotency-Key (if any), URI and body.
type Call<'a> = (Option<&'a str>, &'a str, &'a str);

#[tokio::test]
async fn a_concurrent_duplicate_is_refused_while_the_first_runs() {
    // Goal: while a request holds its idempotency key (header or client id), a duplicate is
    // refused with `409 idempotency_request_in_flight` and changes nothing, another key is
    // not blocked, and once the first answers a retry replays it. Method: a wallet port
    // that stops request A inside `execute` until the test opens the gate, so B provably
    // arrives while A is in flight.
    let mut gated = None;
    let app = App::with_wallet(|store| {
        let wallet = Arc::new(Gated {
            inner: store,
            armed: Mutex::new(None),
        });
        gated = Some(wallet.clone());
        wallet
    });
    let gated = gated.unwrap();
    app.open("g-acc", "0", "0", "100").await;
    app.open("g-to", "0", "0", "0").await;

    // (A: key header, uri, body), (another request, which must not be blocked), A's status.
    let cases: [(Call<'_>, Call<'_>, u16); 3] = [
        (
            (Some("g-1"), "/accounts/g-acc/holds", r#"{"amount":10}"#),
            (Some("g-2"), "/accounts/g-acc/holds", r#"{"amount":10}"#),
            201,
        ),
        (
            (
                None,
                "/transfers",
                r#"{"id":"g-tr","from":"g-acc","to":"g-to","amount":5}"#,
            ),
            (
                None,
                "/transfers",
                r#"{"id":"g-tr2","from":"g-acc","to":"g-to","amount":5}"#,
            ),
            202,
        ),
        (
            (
                Some("g-3"),
                "/accounts/g-acc/withdrawals",
                r#"{"category":"CASH","amount":1}"#,
            ),
            (
                Some("g-4"),
                "/accounts/g-acc/withdrawals",
                r#"{"category":"CASH","amount":1}"#,
            ),
            201,
        ),
    ];
    for ((key, uri, body), (other_key, other_uri, other_body), status) in cases {
        let (arrived, open) = gated.arm();
        let router = app.router.clone();
        let (a_uri, a_body) = (uri.to_owned(), body.to_owned());
        let a_key = key.map(str::to_owned);
        let a = tokio::spawn(async move {
            let mut headers = vec![JSON];
            if let Some(key) = &a_key {
                headers.push(("idempotency-key", key.as_str()));
            }
            send(&router, Method::POST, &a_uri, a_body, &headers).await
        });
        arrived.await.expect("request A reached the store");

        let before = balance(&app, "g-acc", "CASH").await;
        let b = post_key(&app, uri, body, key).await;
        b.assert_error(409, "idempotency_request_in_flight");
        assert_eq!(balance(&app, "g-acc", "CASH").await, before, "{uri}");
        // Another key goes through while A waits.
        let other = post_key(&app, other_uri, other_body, other_key).await;
        expect(&other, status);

        open.send(()).unwrap();
        let a = a.await.unwrap();
        expect(&a, status);
        let c = post_key(&app, uri, body, key).await;
        assert_replay(&a, &c);
    }
    // Two holds of 10, two withdrawals of 1; the two transfers are pending.
    assert_eq!(balance(&app, "g-acc", "CASH").await, bal("78.00", "20.00"));
    assert_eq!(app.store.pending_transfers().await.unwrap(), 2);
}

// ---------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn events_list_outcomes_in_commit_order_and_page() {
    // Goal: captures, voids, completed and rejected transfers each write one outbox event
    // (refusals none), listed oldest first with `evt_N` ids, type, subject and data, paged
    // by `after` and `limit`; bad paging parameters are `invalid_query`. Method: produce the
    // four outcomes (and a refusal), list, page through, and try bad queries.
    let app = App::new();
    app.open("e-a", "0", "0", "100").await;
    app.open("e-b", "0", "0", "0").await;
    let page = app.get("/events").await;
    assert_eq!(page.text(), r#"{"events":[],"next":null}"#);

    let holds = "/accounts/e-a/holds";
    expect(
        &post_key(&app, holds, r#"{"id":"e-h1","amount":20}"#, None).await,
        201,
    );
    expect(
        &post_key(&app, holds, r#"{"id":"e-h2","amount":10}"#, None).await,
        201,
    );
    post_key(&app, "/holds/e-h1/capture", r#"{"amount":21}"#, None)
        .await
        .assert_error(422, "capture_exceeds_hold");
    expect(
        &post_key(&app, "/holds/e-h1/capture", r#"{"amount":"12.34"}"#, None).await,
        200,
    );
    expect(&post_empty(&app, "/holds/e-h2/void").await, 200);
    let transfers = [
        r#"{"id":"e-t1","from":"e-a","to":"e-b","amount":5,"description":"ok"}"#,
        r#"{"id":"e-t2","from":"e-b","to":"e-a","amount":1000}"#,
    ];
    for body in transfers {
        expect(&app.post("/transfers", body).await, 202);
    }
    assert_eq!(app.store.settle_transfers(1000).await.unwrap().done, 2);

    let listed = app.get("/events").await;
    let page = expect(&listed, 200);
    assert_eq!(page["next"], Value::Null, "not a full page");
    let events = page["events"].as_array().unwrap();
    let summary: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e["type"].as_str().unwrap(), e["subject"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            ("hold.captured", "e-h1"),
            ("hold.voided", "e-h2"),
            ("transfer.completed", "e-t1"),
            ("transfer.rejected", "e-t2"),
        ]
    );
    let seqs: Vec<i64> = events
        .iter()
        .map(|e| {
            let id = e["id"].as_str().unwrap();
            id.strip_prefix("evt_").unwrap().parse().unwrap()
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    for event in events {
        assert!(
            parse_ms(event["createdAt"].as_str().unwrap()).is_ok(),
            "{event}"
        );
    }
    let captured = &events[0]["data"];
    assert_eq!(captured["id"], "e-h1");
    assert_eq!(captured["status"], "captured");
    // Amounts are JSON numbers with two decimals, as in every resource (read from the text:
    // a parsed number forgets its form).
    let text = listed.text();
    assert!(
        text.contains(r#""amount":20.00,"captured":12.34,"#),
        "{text}"
    );
    assert!(text.contains(r#""amount":5.00,"#), "{text}");
    assert_eq!(captured["account"], "e-a");
    assert_eq!(events[1]["data"]["status"], "voided");
    assert!(text.contains(r#""captured":0.00,"#), "{text}");
    let completed = &events[2]["data"];
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["description"], "ok");
    assert_eq!(completed["reason"], Value::Null);
    let rejected = &events[3]["data"];
    assert_eq!(rejected["status"], "rejected");
    assert_eq!(rejected["reason"], "insufficient_funds");
    assert_eq!(rejected["from"], "e-b");

    // Paging: full pages name their last event as `next`.
    let first = app.get("/events?limit=2").await.json();
    assert_eq!(first["events"].as_array().unwrap().len(), 2);
    assert_eq!(first["events"][0], events[0]);
    assert_eq!(first["events"][1], events[1]);
    assert_eq!(first["next"], events[1]["id"]);
    let next = first["next"].as_str().unwrap();
    let second = app
        .get(&format!("/events?after={next}&limit=2"))
        .await
        .json();
    assert_eq!(second["events"][0], events[2]);
    assert_eq!(second["events"][1], events[3]);
    assert_eq!(second["next"], events[3]["id"]);
    let last = second["next"].as_str().unwrap();
    let third = app
        .get(&format!("/events?after={last}&limit=2"))
        .await
        .json();
    assert_eq!(third["events"], Value::Array(Vec::new()));
    assert_eq!(third["next"], Value::Null);
    let tail = app
        .get(&format!(
            "/events?after={}",
            events[2]["id"].as_str().unwrap()
        ))
        .await
        .json();
    assert_eq!(tail["events"], Value::Array(vec![events[3].clone()]));

    for query in [
        "after=42",
        "after=evt_",
        "after=evt_-1",
        "after=evt_x",
        "limit=0",
        "limit=1001",
        "limit=ten",
        "page=2",
    ] {
        app.get(&format!("/events?{query}"))
            .await
            .assert_error(400, "invalid_query");
    }
}
