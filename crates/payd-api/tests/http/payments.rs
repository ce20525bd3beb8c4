//! The gateway's endpoints: `POST /payments`, `GET /payments/{id}`, `GET /payments-summary`,
//! `POST /purge-payments`. Processing is the engine's job (tested in payd-engine and end to
//! end in payd-cli); here: intake, idempotency, validation, reads, the summary's contract and
//! the admin guard.

use std::sync::atomic::Ordering;

use axum::http::Method;
use payd_api::AdminAccess;
use payd_domain::CorrelationId;
use payd_domain::gateway::Processor;
use payd_domain::gateway::payment::PaymentState;
use payd_domain::timestamp::format_ms;
use payd_ports::{PaymentStore, Transition};

use crate::support::{App, Fault};

const ID: &str = "4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3";

fn body(id: &str, amount: &str) -> String {
    format!(r#"{{"correlationId":"{id}","amount":{amount}}}"#)
}

/// Books a stored payment at `processor` as the engine would (dispatch, then booked).
async fn book(app: &App, id: &str, processor: Processor) {
    let id = CorrelationId::parse(id).unwrap();
    let record = app.store.payment(&id).await.unwrap().unwrap();
    let dispatched = record
        .state
        .dispatch(processor, record.requested_at_ms, 1_000)
        .unwrap();
    let steps = [
        (dispatched, record.version, true),
        (
            PaymentState::Booked { processor },
            record.version + 1,
            false,
        ),
    ];
    for (next, expected_version, counts_attempt) in steps {
        let t = Transition {
            id: id.clone(),
            expected_version,
            next,
            counts_attempt,
        };
        assert_eq!(
            app.store.apply_transitions(vec![t]).await.unwrap(),
            vec![true]
        );
    }
}

#[tokio::test]
async fn accepts_stores_and_wakes_the_gateway() {
    let app = App::new();
    let response = app.post("/payments", &body(ID, "19.90")).await;
    assert_eq!(response.status, 202, "{}", response.text());
    assert_eq!(response.json()["correlationId"], ID);
    assert_eq!(app.wakes.load(Ordering::Relaxed), 1);
    let payment = app.get(&format!("/payments/{ID}")).await;
    assert_eq!(payment.status, 200);
    let json = payment.json();
    assert_eq!(json["status"], "pending");
    assert_eq!(json["processor"], serde_json::Value::Null);
    assert_eq!(json["attempts"], 0);
    assert!(
        payment.text().contains(r#""amount":19.90"#),
        "{}",
        payment.text()
    );
    let requested_at = json["requestedAt"].as_str().unwrap();
    assert_eq!(requested_at.len(), 24, "{requested_at}");
    assert!(requested_at.ends_with('Z'));
}

#[tokio::test]
async fn correlation_id_is_the_idempotency_key() {
    let app = App::new();
    assert_eq!(app.post("/payments", &body(ID, "19.9")).await.status, 202);
    let first = app.get(&format!("/payments/{ID}")).await.json();
    // The same payment again, even with the amount spelled differently: accepted, unchanged.
    assert_eq!(
        app.post("/payments", &body(ID, r#""19.90""#)).await.status,
        202
    );
    assert_eq!(
        app.get(&format!("/payments/{ID}")).await.json(),
        first,
        "requestedAt is fixed once"
    );
    // Upper-case hex is the same UUID.
    assert_eq!(
        app.post("/payments", &body(&ID.to_uppercase(), "19.90"))
            .await
            .status,
        202
    );
    assert_eq!(app.store.pending_payments().await.unwrap(), 1);
    // Another amount under the same id is refused.
    app.post("/payments", &body(ID, "20.00"))
        .await
        .assert_error(422, "idempotency_key_reused");
    assert_eq!(app.get(&format!("/payments/{ID}")).await.json(), first);
}

#[tokio::test]
async fn bad_input_is_refused_and_nothing_is_stored() {
    let app = App::new();
    let cases: &[(&str, u16, &str)] = &[
        ("{", 400, "malformed_json"),
        ("", 400, "malformed_json"),
        ("[]", 422, "invalid_field"),
        (r#"{"amount": 1}"#, 422, "missing_field"),
        (
            &format!(r#"{{"correlationId":"{ID}"}}"#),
            422,
            "missing_field",
        ),
        (
            &format!(r#"{{"correlationId":"{ID}","amount":null}}"#),
            422,
            "missing_field",
        ),
        (
            r#"{"correlationId":"not-a-uuid","amount":1}"#,
            422,
            "invalid_field",
        ),
        (r#"{"correlationId":42,"amount":1}"#, 422, "invalid_field"),
        (&body(ID, "0"), 422, "invalid_amount"),
        (&body(ID, "-5"), 422, "invalid_amount"),
        (&body(ID, "19.905"), 422, "invalid_amount"),
        (&body(ID, r#""abc""#), 422, "invalid_amount"),
        (&body(ID, "true"), 422, "invalid_field"),
        (
            &format!(r#"{{"correlationId":"{ID}","amount":1,"extra":1}}"#),
            422,
            "invalid_field",
        ),
    ];
    for (request, status, code) in cases {
        let response = app.post("/payments", request).await;
        assert_eq!(
            response.status.as_u16(),
            *status,
            "{request}: {}",
            response.text()
        );
        response.assert_error(*status, code);
    }
    let text = app
        .call(
            Method::POST,
            "/payments",
            body(ID, "1"),
            &[("content-type", "text/plain")],
        )
        .await;
    text.assert_error(415, "unsupported_media_type");
    app.post("/payments", &"x".repeat(70_000))
        .await
        .assert_error(413, "payload_too_large");
    assert_eq!(
        app.store.pending_payments().await.unwrap(),
        0,
        "nothing stored"
    );
    assert_eq!(app.wakes.load(Ordering::Relaxed), 0, "nothing to wake for");
    app.get(&format!("/payments/{ID}"))
        .await
        .assert_error(404, "payment_not_found");
}

#[tokio::test]
async fn payment_reads_validate_the_path() {
    let app = App::new();
    app.get("/payments/nope")
        .await
        .assert_error(400, "invalid_path");
    app.get(&format!("/payments/{ID}"))
        .await
        .assert_error(404, "payment_not_found");
}

#[tokio::test]
async fn summary_counts_booked_payments_per_processor_within_inclusive_bounds() {
    let app = App::new();
    let empty = app.get("/payments-summary").await;
    assert_eq!(empty.status, 200);
    assert_eq!(
        empty.text(),
        r#"{"default":{"totalRequests":0,"totalAmount":0.00},"fallback":{"totalRequests":0,"totalAmount":0.00}}"#
    );
    let ids = [
        "00000000-0000-4000-8000-000000000001",
        "00000000-0000-4000-8000-000000000002",
        "00000000-0000-4000-8000-000000000003",
        "00000000-0000-4000-8000-000000000004",
    ];
    for (id, amount) in ids.iter().zip(["10.10", "20.20", "30.30", "40.40"]) {
        assert_eq!(app.post("/payments", &body(id, amount)).await.status, 202);
    }
    book(&app, ids[0], Processor::Default).await;
    book(&app, ids[1], Processor::Default).await;
    book(&app, ids[2], Processor::Fallback).await;
    // ids[3] stays queued: never counted.
    let all = app.get("/payments-summary").await.json();
    assert_eq!(all["default"]["totalRequests"], 2);
    assert_eq!(all["default"]["totalAmount"].as_f64(), Some(30.30));
    assert_eq!(all["fallback"]["totalRequests"], 1);
    assert_eq!(all["fallback"]["totalAmount"].as_f64(), Some(30.30));

    // Bounds are inclusive at the millisecond: exactly the requestedAt of ids[0].
    let at = app.get(&format!("/payments/{}", ids[0])).await.json()["requestedAt"]
        .as_str()
        .unwrap()
        .to_owned();
    let exact = app
        .get(&format!("/payments-summary?from={at}&to={at}"))
        .await
        .json();
    assert!(
        exact["default"]["totalRequests"].as_u64().unwrap() >= 1,
        "{exact}"
    );
    let ms = payd_domain::timestamp::parse_ms(&at).unwrap();
    let before = app
        .get(&format!(
            "/payments-summary?from={}&to={}",
            format_ms(ms - 10_000),
            format_ms(ms - 1)
        ))
        .await
        .json();
    assert_eq!(before["default"]["totalRequests"], 0);
    let empty_bounds = app.get("/payments-summary?from=&to=").await.json();
    assert_eq!(empty_bounds, all, "empty parameters are unbounded");
    for bad in [
        "?from=yesterday",
        "?to=2025-07-15T12:34:56",
        "?from=2025-13-01T00:00:00.000Z",
        "?since=1",
    ] {
        app.get(&format!("/payments-summary{bad}"))
            .await
            .assert_error(400, "invalid_query");
    }
}

#[tokio::test]
async fn purge_needs_the_admin_token() {
    let app = App::with_admin(AdminAccess::Token("s3cret".to_owned()));
    assert_eq!(app.post("/payments", &body(ID, "1")).await.status, 202);
    app.post("/purge-payments", "")
        .await
        .assert_error(401, "unauthorized");
    let wrong = [("authorization", "Bearer s3cre")];
    app.call(Method::POST, "/purge-payments", "", &wrong)
        .await
        .assert_error(401, "unauthorized");
    assert_eq!(
        app.store.pending_payments().await.unwrap(),
        1,
        "nothing purged"
    );
    let right = [("authorization", "Bearer s3cret")];
    let purged = app.call(Method::POST, "/purge-payments", "", &right).await;
    assert_eq!(purged.status, 200, "{}", purged.text());
    assert_eq!(purged.json()["purged"], 1);
    app.get(&format!("/payments/{ID}"))
        .await
        .assert_error(404, "payment_not_found");

    let closed = App::with_admin(AdminAccess::Closed);
    closed
        .call(Method::POST, "/purge-payments", "", &right)
        .await
        .assert_error(403, "admin_disabled");
    let dev = App::with_admin(AdminAccess::Open);
    assert_eq!(dev.post("/purge-payments", "").await.status, 200);
}

#[tokio::test]
async fn an_unavailable_store_is_503() {
    let router = Fault::Error(payd_ports::LedgerError::unavailable("down")).router();
    let send = |method, uri: &'static str, body: String| {
        let router = router.clone();
        async move {
            crate::support::send(
                &router,
                method,
                uri,
                body,
                &[("content-type", "application/json")],
            )
            .await
        }
    };
    send(Method::POST, "/payments", body(ID, "1"))
        .await
        .assert_error(503, "store_unavailable");
    send(Method::GET, "/payments-summary", String::new())
        .await
        .assert_error(503, "store_unavailable");
    send(Method::POST, "/purge-payments", String::new())
        .await
        .assert_error(503, "store_unavailable");
}
