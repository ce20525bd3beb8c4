//! Probes, metrics, OpenAPI, unknown routes and methods, and store failures.

use axum::http::Method;
use payd_api::Code;
use payd_ports::{LedgerError, Refusal};

use crate::support::{App, Fault, send};

#[tokio::test]
async fn health_and_ready() {
    let app = App::new();
    let health = app.get("/health").await;
    assert_eq!(
        (health.status.as_u16(), health.text()),
        (200, r#"{"status":"ok"}"#.to_owned())
    );
    assert_eq!(health.header("content-type"), Some("application/json"));
    let ready = app.get("/ready").await;
    assert_eq!(
        (ready.status.as_u16(), ready.text()),
        (200, r#"{"status":"ready"}"#.to_owned())
    );

    // After shutdown: not ready, the card route answers 07, the rest 503 store_unavailable;
    // liveness is unaffected.
    app.store.shutdown();
    app.get("/ready").await.assert_error(503, "not_ready");
    assert_eq!(app.get("/health").await.status, 200);
    assert_eq!(
        app.authorize(&App::tx(None, "a", "1", "5411", "M")).await,
        "07"
    );
    app.post("/accounts", r#"{"id":"late"}"#)
        .await
        .assert_error(503, "store_unavailable");
    app.put("/merchants/X", r#"{"category":"MEAL"}"#)
        .await
        .assert_error(503, "store_unavailable");
}

#[tokio::test]
async fn every_store_error_maps_through_the_table() {
    let cases = [
        (
            LedgerError::unavailable("disk on fire"),
            503,
            "store_unavailable",
        ),
        (Refusal::BalanceOverflow.into(), 422, "balance_overflow"),
        (Refusal::AccountNotFound.into(), 404, "account_not_found"),
        (Refusal::AccountExists.into(), 409, "account_exists"),
        (
            Refusal::IdempotencyKeyReused.into(),
            422,
            "idempotency_key_reused",
        ),
    ];
    let key = [("idempotency-key", "k")];
    for (error, status, code) in cases {
        let router = Fault::Error(error.clone()).router();
        let deposit = send(
            &router,
            Method::POST,
            "/accounts/a/deposits",
            r#"{"category":"FOOD","amount":1}"#,
            &key,
        )
        .await;
        deposit.assert_error(status, code);
        send(&router, Method::POST, "/accounts", "{}", &[])
            .await
            .assert_error(status, code);
        send(&router, Method::GET, "/accounts/a/entries", "", &[])
            .await
            .assert_error(status, code);
        send(&router, Method::GET, "/merchants", "", &[])
            .await
            .assert_error(status, code);
        // The card route folds every failure into 07.
        let card = send(
            &router,
            Method::POST,
            "/transactions",
            App::tx(None, "a", "1", "5411", "M"),
            &[],
        )
        .await;
        assert_eq!(
            (card.status.as_u16(), card.code()),
            (200, "07".to_owned()),
            "{error:?}"
        );
    }
    let router = Fault::Error(LedgerError::unavailable("x")).router();
    send(&router, Method::GET, "/accounts/a", "", &[])
        .await
        .assert_error(503, "store_unavailable");
    send(&router, Method::GET, "/ready", "", &[])
        .await
        .assert_error(503, "not_ready");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json() {
    let app = App::new();
    app.get("/nope").await.assert_error(404, "not_found");
    app.get("/accounts/a/b/c")
        .await
        .assert_error(404, "not_found");
    app.post("/", "{}").await.assert_error(404, "not_found");
    let wrong_method = app.get("/transactions").await;
    wrong_method.assert_error(405, "method_not_allowed");
    assert_eq!(wrong_method.header("allow"), Some("POST"));
    app.delete("/accounts/a")
        .await
        .assert_error(405, "method_not_allowed");
    app.post("/merchants", "{}")
        .await
        .assert_error(405, "method_not_allowed");
    app.call(Method::PATCH, "/merchants/X", "", &[])
        .await
        .assert_error(405, "method_not_allowed");
}

#[tokio::test]
async fn every_error_code_is_documented_in_the_table() {
    // The table is the contract; the HTTP tests above exercise each of these codes.
    let names: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
    for expected in [
        "malformed_json",
        "invalid_field",
        "missing_field",
        "invalid_amount",
        "invalid_query",
        "invalid_path",
        "payload_too_large",
        "unsupported_media_type",
        "account_not_found",
        "account_exists",
        "merchant_not_found",
        "idempotency_key_missing",
        "invalid_idempotency_key",
        "idempotency_key_reused",
        "balance_overflow",
        "payment_not_found",
        "unauthorized",
        "admin_disabled",
        "not_found",
        "method_not_allowed",
        "not_ready",
        "store_unavailable",
        "internal",
        "insufficient_funds",
        "hold_not_found",
        "hold_not_active",
        "hold_expired",
        "hold_owned_by_payment",
        "capture_exceeds_hold",
        "transfer_not_found",
        "resource_exists",
        "idempotency_request_in_flight",
        "invalid_request",
        "webhook_not_found",
    ] {
        assert!(names.contains(&expected), "{expected}");
    }
    assert_eq!(names.len(), 34);
}

#[tokio::test]
async fn metrics_count_routes_not_raw_paths() {
    let app = App::new();
    app.open("met", "10", "0", "0").await;
    assert_eq!(
        app.authorize(&App::tx(None, "met", "1", "5411", "M")).await,
        "00"
    );
    assert_eq!(
        app.authorize(&App::tx(None, "met", "100", "5411", "M"))
            .await,
        "51"
    );
    assert_eq!(app.authorize("{").await, "07");
    app.get("/accounts/met").await;
    app.get("/accounts/another-id").await;
    app.get("/no/such/route").await;

    let response = app.get("/metrics").await;
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain"))
    );
    let text = response.text();
    for needle in [
        r#"payd_http_requests_total{method="POST",route="/transactions",status="200"}"#,
        r#"payd_http_requests_total{method="POST",route="/accounts",status="201"}"#,
        r#"payd_http_requests_total{method="GET",route="/accounts/{id}",status="200"}"#,
        r#"payd_http_requests_total{method="GET",route="/accounts/{id}",status="404"}"#,
        r#"payd_http_requests_total{method="GET",route="unmatched",status="404"}"#,
        r#"payd_authorizations_total{code="00"}"#,
        r#"payd_authorizations_total{code="51"}"#,
        r#"payd_authorizations_total{code="07"}"#,
        // Explicit buckets: a histogram, not a summary.
        r#"payd_http_request_duration_seconds_bucket{method="POST",route="/transactions",le="0.00005"}"#,
        r#"payd_http_request_duration_seconds_bucket{method="POST",route="/transactions",le="5"}"#,
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
    assert!(!text.contains("another-id"), "raw path leaked into labels");
}

#[tokio::test]
async fn openapi_lists_every_path() {
    let app = App::new();
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let spec = response.json();
    assert!(
        spec["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "{}",
        spec["openapi"]
    );
    let paths = spec["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/transactions", &["post"][..]),
        ("/authorize", &["post"]),
        ("/accounts", &["post"]),
        ("/accounts/{id}", &["get"]),
        ("/accounts/{id}/deposits", &["post"]),
        ("/accounts/{id}/entries", &["get"]),
        ("/merchants", &["get"]),
        ("/merchants/{pattern}", &["put", "delete"]),
        ("/payments", &["post"]),
        ("/payments/{correlationId}", &["get"]),
        ("/payments-summary", &["get"]),
        ("/purge-payments", &["post"]),
        ("/health", &["get"]),
        ("/ready", &["get"]),
        ("/metrics", &["get"]),
        ("/openapi.json", &["get"]),
        ("/accounts/{id}/withdrawals", &["post"]),
        ("/accounts/{id}/holds", &["post"]),
        ("/holds/{id}", &["get"]),
        ("/holds/{id}/capture", &["post"]),
        ("/holds/{id}/void", &["post"]),
        ("/transfers", &["post"]),
        ("/transfers/{id}", &["get"]),
        ("/events", &["get"]),
        ("/webhooks", &["post", "get"]),
        ("/webhooks/{id}", &["get", "delete"]),
        ("/webhooks/{id}/deliveries", &["get"]),
    ] {
        for method in methods {
            assert!(paths[path].get(*method).is_some(), "{method} {path}");
        }
    }
    assert_eq!(paths.len(), 27);
    let schemas = spec["components"]["schemas"].as_object().unwrap();
    for schema in [
        "AuthorizationRequest",
        "AuthorizationResponse",
        "Account",
        "Deposit",
        "Error",
        "Money",
    ] {
        assert!(
            schemas.contains_key(schema),
            "{schema}: {:?}",
            schemas.keys()
        );
    }
}

/// The committed `openapi.json` at the repository root is the generated document. Run with
/// `UPDATE_OPENAPI=1` to rewrite it after an intended API change.
#[test]
fn openapi_snapshot_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi.json");
    let generated = format!(
        "{}\n",
        payd_api::openapi().to_pretty_json().expect("encode")
    );
    if std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("write openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: the API changed. If intended, run `UPDATE_OPENAPI=1 cargo test -p payd-api \
         --test http openapi_snapshot` and commit the file.",
        path.display()
    );
}
