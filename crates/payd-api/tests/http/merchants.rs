//! `GET/PUT/DELETE /merchants`: the L3 override table.

use serde_json::json;

use crate::support::App;

#[tokio::test]
async fn list_put_replace_delete() {
    let app = App::new();
    let defaults = app.get("/merchants").await;
    assert_eq!(defaults.status, 200);
    let list = defaults.json();
    let merchants = list["merchants"].as_array().unwrap();
    assert!(
        merchants.contains(&json!({"pattern":"UBER EATS","category":"MEAL"})),
        "{list}"
    );
    assert!(
        merchants.contains(&json!({"pattern":"PICPAY*","category":"CASH"})),
        "{list}"
    );

    // New → 201, normalized (upper case, single spaces); replace → 200.
    let put = app
        .put("/merchants/Casa%20%20do%20Pao", r#"{"category":"FOOD"}"#)
        .await;
    assert_eq!(put.status, 201, "{}", put.text());
    assert_eq!(
        put.json(),
        json!({"pattern":"CASA DO PAO","category":"FOOD"})
    );
    let put = app
        .put("/merchants/CASA%20DO%20PAO", r#"{"category":"MEAL"}"#)
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(
        put.json(),
        json!({"pattern":"CASA DO PAO","category":"MEAL"})
    );
    let put = app
        .put("/merchants/padoca*", r#"{"category":"FOOD"}"#)
        .await;
    assert_eq!(put.status, 201);
    assert_eq!(put.json(), json!({"pattern":"PADOCA*","category":"FOOD"}));

    let list = app.get("/merchants").await.json();
    let merchants = list["merchants"].as_array().unwrap();
    assert!(
        merchants.contains(&json!({"pattern":"CASA DO PAO","category":"MEAL"})),
        "{list}"
    );
    assert!(
        merchants.contains(&json!({"pattern":"PADOCA*","category":"FOOD"})),
        "{list}"
    );
    let count = merchants.len();

    assert_eq!(app.delete("/merchants/casa%20do%20pao").await.status, 204);
    assert_eq!(app.delete("/merchants/PADOCA*").await.status, 204);
    app.delete("/merchants/PADOCA*")
        .await
        .assert_error(404, "merchant_not_found");
    // A prefix pattern and the exact name are different entries.
    app.delete("/merchants/PICPAY")
        .await
        .assert_error(404, "merchant_not_found");
    assert_eq!(
        app.get("/merchants").await.json()["merchants"]
            .as_array()
            .unwrap()
            .len(),
        count - 2
    );
}

#[tokio::test]
async fn merchant_errors_change_nothing() {
    let app = App::new();
    let before = app.get("/merchants").await.body;
    for (uri, body, status, code) in [
        (
            "/merchants/SHOP",
            r#"{"category":"GAS"}"#,
            422,
            "invalid_field",
        ),
        (
            "/merchants/SHOP",
            r#"{"category":"meal"}"#,
            422,
            "invalid_field",
        ),
        ("/merchants/SHOP", r#"{"category":1}"#, 422, "invalid_field"),
        ("/merchants/SHOP", r#"{}"#, 422, "missing_field"),
        (
            "/merchants/SHOP",
            r#"{"category":"MEAL","extra":1}"#,
            422,
            "invalid_field",
        ),
        ("/merchants/SHOP", r#"{"category":"#, 400, "malformed_json"),
        (
            "/merchants/A*B",
            r#"{"category":"MEAL"}"#,
            400,
            "invalid_path",
        ),
        (
            "/merchants/*",
            r#"{"category":"MEAL"}"#,
            400,
            "invalid_path",
        ),
        (
            "/merchants/%20",
            r#"{"category":"MEAL"}"#,
            400,
            "invalid_path",
        ),
    ] {
        app.put(uri, body).await.assert_error(status, code);
    }
    let long = "A".repeat(65);
    app.put(&format!("/merchants/{long}"), r#"{"category":"MEAL"}"#)
        .await
        .assert_error(400, "invalid_path");
    app.delete("/merchants/A*B")
        .await
        .assert_error(400, "invalid_path");
    app.delete("/merchants/NOT%20THERE")
        .await
        .assert_error(404, "merchant_not_found");
    assert_eq!(app.get("/merchants").await.body, before);
}

// Goal: merchant changes are idempotent under an Idempotency-Key like every mutation: a
// retried PUT replays its first answer (201, not 200) and a retried DELETE its 204 (not
// 404); the same key with another body or path is refused.
#[tokio::test]
async fn merchant_changes_replay_under_a_key() {
    use axum::http::Method;
    let app = App::new();
    let put = |key: &'static str, body: &'static str| {
        let app = &app;
        async move {
            app.call(
                Method::PUT,
                "/merchants/PADARIA%20NOVA",
                body,
                &[
                    ("idempotency-key", key),
                    ("content-type", "application/json"),
                ],
            )
            .await
        }
    };
    let first = put("m-1", r#"{"category":"FOOD"}"#).await;
    assert_eq!(first.status, 201);
    let again = put("m-1", r#"{ "category": "FOOD" }"#).await;
    assert_eq!(
        again.status, 201,
        "the first answer, although the pattern exists now"
    );
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    put("m-1", r#"{"category":"MEAL"}"#)
        .await
        .assert_error(422, "idempotency_key_reused");
    let delete = |key: &'static str| {
        let app = &app;
        async move {
            app.call(
                Method::DELETE,
                "/merchants/PADARIA%20NOVA",
                "",
                &[("idempotency-key", key)],
            )
            .await
        }
    };
    assert_eq!(delete("m-2").await.status, 204);
    let replayed = delete("m-2").await;
    assert_eq!(replayed.status, 204);
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    delete("m-3").await.assert_error(404, "merchant_not_found");
    let list = app.get("/merchants").await.json();
    assert!(
        !list["merchants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["pattern"] == "PADARIA NOVA"),
        "{list}"
    );
}
