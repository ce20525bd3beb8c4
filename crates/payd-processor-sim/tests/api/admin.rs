//! The admin endpoints: token, configuration, purge.

use axum::http::{Method, StatusCode};
use uuid::Uuid;

use crate::helpers::{AT, Sim, TOKEN};

/// Every admin route with a body that would succeed.
const ADMIN_CALLS: &[(&str, &str, Option<&str>)] = &[
    ("GET", "/admin/payments-summary", None),
    ("PUT", "/admin/configurations/delay", Some(r#"{"delay":0}"#)),
    (
        "PUT",
        "/admin/configurations/failure",
        Some(r#"{"failure":false}"#),
    ),
    (
        "PUT",
        "/admin/configurations/token",
        Some(r#"{"token":"123"}"#),
    ),
    ("POST", "/admin/purge-payments", None),
];

async fn call(
    sim: &Sim,
    (method, uri, body): (&str, &str, Option<&str>),
    token: Option<&str>,
) -> crate::helpers::Answer {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    sim.request(method, uri, token, body.map(str::to_owned))
        .await
}

#[tokio::test]
async fn every_admin_route_requires_the_token() {
    let sim = Sim::default_role();
    for &route in ADMIN_CALLS {
        for token in [None, Some("wrong"), Some("")] {
            let answer = call(&sim, route, token).await;
            assert_eq!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "{route:?} {token:?}"
            );
            assert_eq!(answer.code(), "unauthorized");
        }
        let answer = call(&sim, route, Some(TOKEN)).await;
        assert!(answer.status.is_success(), "{route:?}: {answer:?}");
    }
}

#[tokio::test]
async fn the_token_can_be_changed() {
    let sim = Sim::default_role();
    let changed = sim.admin_put("token", r#"{"token":"s3cret-Token"}"#).await;
    assert!(changed.status.is_success(), "{changed:?}");

    let old = sim
        .request(Method::GET, "/admin/payments-summary", Some(TOKEN), None)
        .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let new = sim
        .request(
            Method::GET,
            "/admin/payments-summary",
            Some("s3cret-Token"),
            None,
        )
        .await;
    assert_eq!(new.status, StatusCode::OK);
}

#[tokio::test]
async fn unsendable_tokens_are_refused() {
    let sim = Sim::default_role();
    for body in [
        r#"{"token":""}"#,
        r#"{"token":"has space"}"#,
        r#"{"token":"é"}"#,
        r#"{"token":5}"#,
        "{}",
    ] {
        let answer = sim.admin_put("token", body).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer.code(), "invalid_field", "{body}");
    }
    // The old token still works.
    assert_eq!(sim.summary("").await.status, StatusCode::OK);
}

#[tokio::test]
async fn delay_and_failure_bodies_are_validated() {
    let sim = Sim::default_role();
    for (what, body, code) in [
        ("delay", r#"{"delay":60001}"#, "invalid_field"),
        ("delay", r#"{"delay":-1}"#, "invalid_field"),
        ("delay", r#"{"delay":1.5}"#, "invalid_field"),
        ("delay", r#"{"delay":"100"}"#, "invalid_field"),
        ("delay", r#"{"delay":"#, "malformed_json"),
        ("failure", r#"{"failure":"yes"}"#, "invalid_field"),
        ("failure", "{}", "invalid_field"),
    ] {
        let answer = sim.admin_put(what, body).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer.code(), code, "{body}");
    }
    let max = sim.admin_put("delay", r#"{"delay":60000}"#).await;
    assert_eq!(max.status, StatusCode::NO_CONTENT);
    assert!(max.body.is_empty());
    let health = sim.health().await;
    assert_eq!(health.field("minResponseTime"), "60000");
}

#[tokio::test]
async fn purge_forgets_every_payment() {
    let sim = Sim::default_role();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    sim.pay(a, "1.00", AT).await;
    sim.pay(b, "2.00", AT).await;
    assert_eq!(sim.booked_count().await, 2);

    let purged = sim
        .request(Method::POST, "/admin/purge-payments", Some(TOKEN), None)
        .await;
    assert_eq!(purged.status, StatusCode::OK);
    assert_eq!(purged.field("message"), r#""All payments purged.""#);

    assert_eq!(sim.booked_count().await, 0);
    assert_eq!(sim.get_payment(a).await.status, StatusCode::NOT_FOUND);
    // A purged id can be booked again.
    assert_eq!(sim.pay(a, "1.00", AT).await.status, StatusCode::OK);
}
