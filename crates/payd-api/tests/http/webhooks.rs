//! `/webhooks`: registration (with a given or generated secret, shown only once), listing,
//! reading, deletion, the attempt log, validation, and store failures.

use axum::http::Method;
use payd_ports::{Attempt, AttemptOutcome, LedgerError, WebhookStore};

use crate::support::{App, Fault, send};

#[tokio::test]
async fn register_list_get_delete() {
    let app = App::new();
    let created = app
        .post(
            "/webhooks",
            r#"{"id":"orders","url":"http://127.0.0.1:9/hook","secret":"0123456789abcdef"}"#,
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let body = created.json();
    assert_eq!(body["id"], "orders");
    assert_eq!(body["url"], "http://127.0.0.1:9/hook");
    assert_eq!(body["secret"], "0123456789abcdef");
    assert!(body["afterEvent"].is_null());
    assert!(body["createdAt"].as_str().is_some());

    // Generated id and secret.
    let generated = app
        .post("/webhooks", r#"{"url":"https://example.com/h"}"#)
        .await;
    assert_eq!(generated.status, 201, "{}", generated.text());
    let generated = generated.json();
    let secret = generated["secret"].as_str().unwrap();
    assert!(
        secret.starts_with("whsec_") && secret.len() == 70,
        "{secret}"
    );
    let id = generated["id"].as_str().unwrap().to_owned();

    // The secret is never shown again.
    let listed = app.get("/webhooks").await;
    assert_eq!(listed.status, 200);
    let listed = listed.json();
    let hooks = listed["webhooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 2);
    // Listed by creation time, then id: both may share a millisecond.
    let mut ids: Vec<&str> = hooks.iter().map(|h| h["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    let mut expected = vec!["orders", id.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    assert!(hooks.iter().all(|h| h.get("secret").is_none()));
    let one = app.get("/webhooks/orders").await;
    assert_eq!(one.status, 200);
    assert!(one.json().get("secret").is_none());

    // The client's id is an idempotency key: the same registration replays its first
    // answer (secret included), another one under that id is refused.
    let again = app
        .post(
            "/webhooks",
            r#"{"id":"orders","url":"http://127.0.0.1:9/hook","secret":"0123456789abcdef"}"#,
        )
        .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, created.body);
    app.post("/webhooks", r#"{"id":"orders","url":"http://h/"}"#)
        .await
        .assert_error(422, "idempotency_key_reused");

    // Deletion, unknown ids.
    let deleted = app.delete("/webhooks/orders").await;
    assert_eq!(deleted.status, 204);
    app.delete("/webhooks/orders")
        .await
        .assert_error(404, "webhook_not_found");
    app.get("/webhooks/orders")
        .await
        .assert_error(404, "webhook_not_found");
    app.get("/webhooks/orders/deliveries")
        .await
        .assert_error(404, "webhook_not_found");
    app.get("/webhooks/a%2Fb")
        .await
        .assert_error(400, "invalid_path");
    assert_eq!(
        app.get("/webhooks").await.json()["webhooks"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn registrations_are_validated() {
    let app = App::new();
    for (body, status, code) in [
        ("{}", 422, "missing_field"),
        (r#"{"url":"ftp://example.com/"}"#, 422, "invalid_field"),
        (r#"{"url":"not a url"}"#, 422, "invalid_field"),
        (
            r#"{"url":"http://h/","secret":"short"}"#,
            422,
            "invalid_field",
        ),
        (r#"{"url":"http://h/","other":1}"#, 422, "invalid_field"),
        ("{", 400, "malformed_json"),
    ] {
        app.post("/webhooks", body).await.assert_error(status, code);
    }
    app.call(
        Method::POST,
        "/webhooks",
        r#"{"url":"http://h/"}"#,
        &[("content-type", "text/plain")],
    )
    .await
    .assert_error(415, "unsupported_media_type");
}

#[tokio::test]
async fn the_attempt_log_is_listed_newest_first() {
    let app = App::new();
    let created = app
        .post("/webhooks", r#"{"id":"w","url":"http://127.0.0.1:9/"}"#)
        .await;
    assert_eq!(created.status, 201);
    let webhook = payd_domain::ResourceId::parse("w").unwrap();
    for (attempt, outcome) in [
        (
            1,
            AttemptOutcome::Failed {
                status: Some(500),
                error: "HTTP 500".to_owned(),
                retry_at_ms: Some(2_000),
            },
        ),
        (2, AttemptOutcome::Delivered { status: 200 }),
    ] {
        app.store
            .record_attempt(Attempt {
                webhook: webhook.clone(),
                event_seq: 7,
                attempt,
                at_ms: 1_000 * i64::from(attempt),
                duration_ms: 3,
                outcome,
            })
            .await
            .unwrap();
    }
    let listed = app.get("/webhooks/w/deliveries").await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    let body = listed.json();
    let attempts = body["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["event"], "evt_7");
    assert_eq!(attempts[0]["attempt"], 2);
    assert_eq!(attempts[0]["status"], 200);
    assert_eq!(attempts[0]["result"], "delivered");
    assert!(attempts[0]["error"].is_null());
    assert_eq!(attempts[1]["result"], "retrying");
    assert_eq!(attempts[1]["error"], "HTTP 500");
    assert_eq!(attempts[1]["durationMs"], 3);
    let limited = app.get("/webhooks/w/deliveries?limit=1").await.json();
    assert_eq!(limited["attempts"].as_array().unwrap().len(), 1);
    app.get("/webhooks/w/deliveries?limit=0")
        .await
        .assert_error(400, "invalid_query");
}

#[tokio::test]
async fn store_failures_map_through_the_table() {
    let router = Fault::Error(LedgerError::unavailable("disk on fire")).router();
    for (method, uri, body) in [
        (Method::POST, "/webhooks", r#"{"url":"http://h/"}"#),
        (Method::GET, "/webhooks", ""),
        (Method::GET, "/webhooks/w", ""),
        (Method::DELETE, "/webhooks/w", ""),
        (Method::GET, "/webhooks/w/deliveries", ""),
    ] {
        send(&router, method, uri, body, &[])
            .await
            .assert_error(503, "store_unavailable");
    }
}

// Goal: registration and deletion are idempotent under an Idempotency-Key: a retry gets
// the first answer (the generated secret too) and registers nothing more; a retried delete
// replays its 204 instead of answering 404.
#[tokio::test]
async fn registration_and_deletion_replay_under_a_key() {
    let app = App::new();
    let body = r#"{"url":"http://127.0.0.1:9/hook"}"#;
    let register = || {
        app.call(
            Method::POST,
            "/webhooks",
            body,
            &[
                ("idempotency-key", "wh-1"),
                ("content-type", "application/json"),
            ],
        )
    };
    let first = register().await;
    assert_eq!(first.status, 201, "{}", first.text());
    let again = register().await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body, "same id, same generated secret");
    assert_eq!(
        app.get("/webhooks").await.json()["webhooks"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let id = first.json()["id"].as_str().unwrap().to_owned();
    let path = format!("/webhooks/{id}");
    let deleted = app
        .call(Method::DELETE, &path, "", &[("idempotency-key", "wh-del")])
        .await;
    assert_eq!(deleted.status, 204);
    let replayed = app
        .call(Method::DELETE, &path, "", &[("idempotency-key", "wh-del")])
        .await;
    assert_eq!(replayed.status, 204);
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    app.call(Method::DELETE, &path, "", &[])
        .await
        .assert_error(404, "webhook_not_found");
}
