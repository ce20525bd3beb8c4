//! Accounts, deposits and entries: happy paths and every error code, with "nothing changed"
//! checked after each refusal.

use axum::http::Method;
use serde_json::json;

use crate::support::{App, balances};

#[tokio::test]
async fn open_and_read_an_account() {
    let app = App::new();
    let response = app
        .post(
            "/accounts",
            r#"{"id":"acc-1","balances":{"FOOD":100.00,"MEAL":50,"CASH":"10.00"}}"#,
        )
        .await;
    assert_eq!(response.status, 201, "{}", response.text());
    assert_eq!(response.header("location"), Some("/accounts/acc-1"));
    // Exact text: amounts are numbers with two decimals.
    let expected = r#"{"id":"acc-1","balances":{"FOOD":{"available":100.00,"held":0.00},"MEAL":{"available":50.00,"held":0.00},"CASH":{"available":10.00,"held":0.00}}}"#;
    assert_eq!(response.text(), expected);
    let read = app.get("/accounts/acc-1").await;
    assert_eq!(read.status, 200);
    assert_eq!(read.text(), expected);
}

#[tokio::test]
async fn generated_ids_and_optional_balances() {
    let app = App::new();
    for body in [
        "",
        "{}",
        r#"{"balances":{}}"#,
        r#"{"balances":{"MEAL":"0.5"}}"#,
    ] {
        let response = app.post("/accounts", body).await;
        assert_eq!(response.status, 201, "{body:?}: {}", response.text());
        let id = response.json()["id"].as_str().unwrap().to_owned();
        // A UUIDv7.
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(&id[14..15], "7", "{id}");
        assert_eq!(
            response.header("location"),
            Some(format!("/accounts/{id}").as_str())
        );
        let meal = if body.contains("MEAL") {
            "0.50"
        } else {
            "0.00"
        };
        assert_eq!(app.available(&id).await, balances("0.00", meal, "0.00"));
    }
    // Without a content type the body is still read as JSON.
    let response = app
        .call(Method::POST, "/accounts", r#"{"id":"no-ct"}"#, &[])
        .await;
    assert_eq!(response.status, 201, "{}", response.text());
}

#[tokio::test]
async fn account_errors() {
    let app = App::new();
    app.open("dup", "1", "2", "3").await;
    app.post("/accounts", r#"{"id":"dup","balances":{"FOOD":99}}"#)
        .await
        .assert_error(409, "account_exists");
    assert_eq!(app.available("dup").await, balances("1.00", "2.00", "3.00"));

    for (body, status, code) in [
        (r#"{"id":"x1","balances":{"GAS":1}}"#, 422, "invalid_field"),
        (r#"{"id":"x1","balances":{"food":1}}"#, 422, "invalid_field"),
        (r#"{"id":"x1","balance":{"FOOD":1}}"#, 422, "invalid_field"),
        (r#"{"id":"x1","balances":[1]}"#, 422, "invalid_field"),
        (
            r#"{"id":"x1","balances":{"FOOD":true}}"#,
            422,
            "invalid_field",
        ),
        (
            r#"{"id":"x1","balances":{"FOOD":-1}}"#,
            422,
            "invalid_amount",
        ),
        (
            r#"{"id":"x1","balances":{"FOOD":1.005}}"#,
            422,
            "invalid_amount",
        ),
        (
            r#"{"id":"x1","balances":{"FOOD":"ten"}}"#,
            422,
            "invalid_amount",
        ),
        (
            r#"{"id":"x1","balances":{"FOOD":1e16}}"#,
            422,
            "invalid_amount",
        ),
        (r#"{"id":"@system"}"#, 422, "invalid_field"),
        (r#"{"id":"a b"}"#, 422, "invalid_field"),
        (r#"{"id":""}"#, 422, "invalid_field"),
        (r#"{"id":12}"#, 422, "invalid_field"),
        (r#"{"id":"x1""#, 400, "malformed_json"),
        ("nope", 400, "malformed_json"),
    ] {
        app.post("/accounts", body).await.assert_error(status, code);
    }
    app.get("/accounts/x1")
        .await
        .assert_error(404, "account_not_found");

    let response = app
        .call(
            Method::POST,
            "/accounts",
            r#"{"id":"x1"}"#,
            &[("content-type", "text/plain")],
        )
        .await;
    response.assert_error(415, "unsupported_media_type");
    let big = format!(
        r#"{{"id":"x1","pad":"{}"}}"#,
        "x".repeat(payd_api::BODY_LIMIT)
    );
    app.post("/accounts", &big)
        .await
        .assert_error(413, "payload_too_large");
    app.get("/accounts/x1")
        .await
        .assert_error(404, "account_not_found");

    app.get("/accounts/nobody")
        .await
        .assert_error(404, "account_not_found");
    app.get("/accounts/@external")
        .await
        .assert_error(400, "invalid_path");
    app.get("/accounts/a%20b")
        .await
        .assert_error(400, "invalid_path");
    app.get("/accounts/%FF")
        .await
        .assert_error(400, "invalid_path");
}

fn deposit_headers(key: &str) -> [(&str, &str); 2] {
    [
        ("content-type", "application/json"),
        ("idempotency-key", key),
    ]
}

#[tokio::test]
async fn deposits_credit_once_and_replay() {
    let app = App::new();
    app.open("dep", "100", "0", "0").await;
    let body = r#"{"category":"FOOD","amount":25.00}"#;
    let first = app
        .call(
            Method::POST,
            "/accounts/dep/deposits",
            body,
            &deposit_headers("k-1"),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.text());
    assert_eq!(first.header("idempotent-replayed"), None);
    let receipt = first.json();
    assert_eq!(receipt["id"], "k-1");
    assert_eq!(receipt["account"], "dep");
    assert_eq!(receipt["category"], "FOOD");
    let text = first.text();
    assert!(text.contains(r#""amount":25.00"#), "{text}");
    assert!(text.contains(r#""availableAfter":125.00"#), "{text}");
    let created = receipt["createdAt"].as_str().unwrap();
    assert_eq!(created.len(), "2026-11-21T13:45:00.123Z".len(), "{created}");
    assert!(
        created.ends_with('Z') && &created[10..11] == "T" && &created[19..20] == ".",
        "{created}"
    );
    assert_eq!(
        app.available("dep").await,
        balances("125.00", "0.00", "0.00")
    );

    // Replays, in any amount notation, answer the same status and body.
    for body in [
        body,
        r#"{"category":"FOOD","amount":"25"}"#,
        r#"{"amount":2.5e1,"category":"FOOD"}"#,
    ] {
        let replay = app
            .call(
                Method::POST,
                "/accounts/dep/deposits",
                body,
                &deposit_headers("k-1"),
            )
            .await;
        assert_eq!(replay.status, 201, "{}", replay.text());
        assert_eq!(replay.header("idempotent-replayed"), Some("true"));
        assert_eq!(replay.body, first.body);
    }
    assert_eq!(
        app.available("dep").await,
        balances("125.00", "0.00", "0.00")
    );

    // Another key is another deposit.
    let second = app
        .call(
            Method::POST,
            "/accounts/dep/deposits",
            r#"{"category":"CASH","amount":"0.01"}"#,
            &deposit_headers("k-2"),
        )
        .await;
    assert_eq!(second.status, 201);
    assert!(
        second.text().contains(r#""availableAfter":0.01"#),
        "{}",
        second.text()
    );
    assert_eq!(
        app.available("dep").await,
        balances("125.00", "0.00", "0.01")
    );
}

#[tokio::test]
async fn deposit_errors_change_nothing() {
    let app = App::new();
    app.open("de", "10", "0", "0").await;
    let ok = r#"{"category":"FOOD","amount":5}"#;
    assert_eq!(
        app.call(
            Method::POST,
            "/accounts/de/deposits",
            ok,
            &deposit_headers("used")
        )
        .await
        .status,
        201
    );

    let post = |uri: &'static str, body: &'static str, key: Option<&'static str>| {
        let app = &app;
        async move {
            let mut headers = vec![("content-type", "application/json")];
            if let Some(key) = key {
                headers.push(("idempotency-key", key));
            }
            app.call(Method::POST, uri, body, &headers).await
        }
    };
    post("/accounts/de/deposits", ok, None)
        .await
        .assert_error(400, "idempotency_key_missing");
    post("/accounts/de/deposits", ok, Some("has space"))
        .await
        .assert_error(400, "invalid_idempotency_key");
    let long_key = "k".repeat(256);
    app.call(
        Method::POST,
        "/accounts/de/deposits",
        ok,
        &deposit_headers(&long_key),
    )
    .await
    .assert_error(400, "invalid_idempotency_key");
    post(
        "/accounts/de/deposits",
        r#"{"category":"FOOD","amount":6}"#,
        Some("used"),
    )
    .await
    .assert_error(422, "idempotency_key_reused");
    post(
        "/accounts/de/deposits",
        r#"{"category":"MEAL","amount":5}"#,
        Some("used"),
    )
    .await
    .assert_error(422, "idempotency_key_reused");
    post("/accounts/nobody/deposits", ok, Some("k-nobody"))
        .await
        .assert_error(404, "account_not_found");
    post("/accounts/@x/deposits", ok, Some("k-x"))
        .await
        .assert_error(400, "invalid_path");
    for (body, status, code) in [
        (r#"{"category":"GAS","amount":5}"#, 422, "invalid_field"),
        (r#"{"category":5,"amount":5}"#, 422, "invalid_field"),
        (r#"{"amount":5}"#, 422, "missing_field"),
        (r#"{"category":"FOOD"}"#, 422, "missing_field"),
        (r#"{"category":"FOOD","amount":0}"#, 422, "invalid_amount"),
        (r#"{"category":"FOOD","amount":-5}"#, 422, "invalid_amount"),
        (
            r#"{"category":"FOOD","amount":5.001}"#,
            422,
            "invalid_amount",
        ),
        (
            r#"{"category":"FOOD","amount":false}"#,
            422,
            "invalid_field",
        ),
        (
            r#"{"category":"FOOD","amount":5,"note":"x"}"#,
            422,
            "invalid_field",
        ),
        (r#"{"category":"FOOD","amount":5"#, 400, "malformed_json"),
        ("", 400, "malformed_json"),
    ] {
        post("/accounts/de/deposits", body, Some("k-new"))
            .await
            .assert_error(status, code);
    }
    let big = format!(
        r#"{{"category":"FOOD","amount":5,"x":"{}"}}"#,
        "x".repeat(70_000)
    );
    app.call(
        Method::POST,
        "/accounts/de/deposits",
        big,
        &deposit_headers("k-big"),
    )
    .await
    .assert_error(413, "payload_too_large");
    app.call(
        Method::POST,
        "/accounts/de/deposits",
        ok,
        &[("content-type", "text/csv"), ("idempotency-key", "k-csv")],
    )
    .await
    .assert_error(415, "unsupported_media_type");
    assert_eq!(app.available("de").await, balances("15.00", "0.00", "0.00"));
    // The refused key was not consumed.
    assert_eq!(
        post("/accounts/de/deposits", ok, Some("k-new"))
            .await
            .status,
        201
    );
}

#[tokio::test]
async fn entries_page_newest_first() {
    let app = App::new();
    app.open("ent", "100", "0", "20").await;
    let deposit = app
        .call(
            Method::POST,
            "/accounts/ent/deposits",
            r#"{"category":"MEAL","amount":5}"#,
            &deposit_headers("k-e"),
        )
        .await;
    assert_eq!(deposit.status, 201);
    let tx = App::tx(Some("tx-e"), "ent", "1.25", "5411", "SHOP");
    assert_eq!(app.authorize(&tx).await, "00");

    let all = app.get("/accounts/ent/entries").await;
    assert_eq!(all.status, 200, "{}", all.text());
    let page = all.json();
    let entries = page["entries"].as_array().unwrap();
    assert!(entries.len() >= 3, "{page}");
    assert_eq!(page["next"], serde_json::Value::Null);
    let first = &entries[0];
    assert_eq!(first["cause"], "transaction");
    assert_eq!(first["category"], "FOOD");
    assert_eq!(first["reference"], "tx-e");
    assert!(all.text().contains(r#""amount":-1.25"#), "{}", all.text());
    assert_eq!(entries[1]["cause"], "deposit");
    assert_eq!(entries[1]["reference"], "k-e");
    assert_eq!(entries[1]["category"], "MEAL");
    assert!(
        entries[2..].iter().all(|e| e["cause"] == "opening"),
        "{page}"
    );
    let sequences: Vec<i64> = entries
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert!(sequences.windows(2).all(|w| w[0] > w[1]), "{sequences:?}");
    assert!(first["createdAt"].as_str().unwrap().ends_with('Z'));

    // Paging with limit and before.
    let mut seen = Vec::new();
    let mut uri = "/accounts/ent/entries?limit=1".to_owned();
    loop {
        let page = app.get(&uri).await.json();
        let batch = page["entries"].as_array().unwrap();
        assert!(batch.len() <= 1);
        seen.extend(batch.iter().map(|e| e["sequence"].as_i64().unwrap()));
        match page["next"].as_i64() {
            Some(next) => uri = format!("/accounts/ent/entries?limit=1&before={next}"),
            None => break,
        }
        assert!(seen.len() <= sequences.len(), "paging does not end");
    }
    assert_eq!(seen, sequences);
}

#[tokio::test]
async fn entries_errors() {
    let app = App::new();
    app.open("ee", "1", "0", "0").await;
    for query in [
        "limit=0",
        "limit=1001",
        "limit=abc",
        "limit=-1",
        "before=x",
        "before=1.5",
        "page=2",
    ] {
        app.get(&format!("/accounts/ee/entries?{query}"))
            .await
            .assert_error(400, "invalid_query");
    }
    assert_eq!(app.get("/accounts/ee/entries?limit=1000").await.status, 200);
    app.get("/accounts/nobody/entries")
        .await
        .assert_error(404, "account_not_found");
    app.get("/accounts/@x/entries")
        .await
        .assert_error(400, "invalid_path");
}

#[tokio::test]
async fn account_views_are_json_numbers() {
    let app = App::new();
    app.open("num", "0.1", "0.2", "1234567.89").await;
    let body = app.get("/accounts/num").await.json();
    assert_eq!(
        body,
        json!({"id":"num","balances":{
            "FOOD":{"available":0.1,"held":0.0},
            "MEAL":{"available":0.2,"held":0.0},
            "CASH":{"available":1234567.89,"held":0.0}}})
    );
    assert_eq!(
        app.available("num").await,
        balances("0.10", "0.20", "1234567.89")
    );
}
