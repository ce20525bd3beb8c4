//! `POST /transactions`: the card contract, levels L1–L3, validation and idempotency.

use std::sync::Arc;

use axum::http::Method;
use payd_domain::{AccountId, Amount, Code, Mcc, PriorAuthorization, TransactionId};
use payd_ports::DecisionCache;

use crate::support::{App, balances};

const BAKERY: &str = "PADARIA DO ZE               SAO PAULO BR";

#[tokio::test]
async fn l1_mcc_picks_the_category() {
    let app = App::new();
    app.open("l1", "100", "100", "100").await;
    for (mcc, expected) in [
        ("5411", balances("90.00", "100.00", "100.00")),
        ("5412", balances("80.00", "100.00", "100.00")),
        ("5811", balances("80.00", "90.00", "100.00")),
        ("5812", balances("80.00", "80.00", "100.00")),
        ("1234", balances("80.00", "80.00", "90.00")),
        ("0000", balances("80.00", "80.00", "80.00")),
    ] {
        assert_eq!(
            app.authorize(&App::tx(None, "l1", "10.00", mcc, BAKERY))
                .await,
            "00",
            "{mcc}"
        );
        assert_eq!(app.available("l1").await, expected, "after {mcc}");
    }
}

#[tokio::test]
async fn l1_exact_cover_is_approved_and_one_cent_more_is_not() {
    let app = App::new();
    app.open("exact", "0", "25.50", "0").await;
    assert_eq!(
        app.authorize(&App::tx(None, "exact", "25.51", "5811", BAKERY))
            .await,
        "51"
    );
    assert_eq!(
        app.authorize(&App::tx(None, "exact", "25.50", "5811", BAKERY))
            .await,
        "00"
    );
    assert_eq!(
        app.available("exact").await,
        balances("0.00", "0.00", "0.00")
    );
}

#[tokio::test]
async fn l2_falls_back_to_cash_for_the_whole_amount() {
    let app = App::new();
    app.open("l2", "50", "0", "100").await;
    assert_eq!(
        app.authorize(&App::tx(None, "l2", "60", "5411", BAKERY))
            .await,
        "00"
    );
    // FOOD untouched: the whole amount came from CASH.
    assert_eq!(
        app.available("l2").await,
        balances("50.00", "0.00", "40.00")
    );
}

#[tokio::test]
async fn l2_never_splits_a_transaction() {
    let app = App::new();
    app.open("split", "50", "0", "50").await;
    // FOOD + CASH would cover 80 together; neither does alone.
    assert_eq!(
        app.authorize(&App::tx(None, "split", "80", "5411", BAKERY))
            .await,
        "51"
    );
    assert_eq!(
        app.available("split").await,
        balances("50.00", "0.00", "50.00")
    );
}

#[tokio::test]
async fn l2_cash_never_borrows_from_food_or_meal() {
    let app = App::new();
    app.open("borrow", "100", "100", "5").await;
    assert_eq!(
        app.authorize(&App::tx(None, "borrow", "6", "9999", BAKERY))
            .await,
        "51"
    );
    assert_eq!(
        app.available("borrow").await,
        balances("100.00", "100.00", "5.00")
    );
}

#[tokio::test]
async fn l3_merchant_override_beats_the_mcc() {
    let app = App::new();
    app.open("l3", "100", "100", "100").await;
    // Without an override the MCC decides.
    assert_eq!(
        app.authorize(&App::tx(None, "l3", "1", "5411", BAKERY))
            .await,
        "00"
    );
    assert_eq!(
        app.available("l3").await,
        balances("99.00", "100.00", "100.00")
    );

    let put = app
        .put("/merchants/padaria%20do%20ze", r#"{"category":"MEAL"}"#)
        .await;
    assert_eq!(put.status, 201, "{}", put.text());
    assert_eq!(
        put.json(),
        serde_json::json!({"pattern": "PADARIA DO ZE", "category": "MEAL"})
    );
    assert_eq!(
        app.authorize(&App::tx(None, "l3", "1", "5411", BAKERY))
            .await,
        "00"
    );
    assert_eq!(
        app.available("l3").await,
        balances("99.00", "99.00", "100.00")
    );

    // Same merchant, another city: still the override.
    let rio = format!("{:<25}{:>12} {}", "PADARIA DO ZE", "RIO", "BR");
    assert_eq!(
        app.authorize(&App::tx(None, "l3", "1", "5411", &rio)).await,
        "00"
    );
    assert_eq!(
        app.available("l3").await,
        balances("99.00", "98.00", "100.00")
    );

    // A prefix pattern.
    let put = app
        .put("/merchants/MERCADO*", r#"{"category":"FOOD"}"#)
        .await;
    assert_eq!(put.status, 201, "{}", put.text());
    let mercado = format!("{:<25}{:>12} {}", "MERCADO LIVRE 42", "SAO PAULO", "BR");
    assert_eq!(
        app.authorize(&App::tx(None, "l3", "1", "5811", &mercado))
            .await,
        "00"
    );
    assert_eq!(
        app.available("l3").await,
        balances("98.00", "98.00", "100.00")
    );

    // The default table: UBER EATS is MEAL whatever the MCC.
    let uber = format!("{:<25}{:>12} {}", "UBER EATS", "SAO PAULO", "BR");
    assert_eq!(
        app.authorize(&App::tx(None, "l3", "1", "5411", &uber))
            .await,
        "00"
    );
    assert_eq!(
        app.available("l3").await,
        balances("98.00", "97.00", "100.00")
    );

    // Removing the override gives the MCC back.
    assert_eq!(app.delete("/merchants/PADARIA%20DO%20ZE").await.status, 204);
    assert_eq!(
        app.authorize(&App::tx(None, "l3", "1", "5411", BAKERY))
            .await,
        "00"
    );
    assert_eq!(
        app.available("l3").await,
        balances("97.00", "97.00", "100.00")
    );
}

#[tokio::test]
async fn l3_override_still_falls_back_to_cash() {
    let app = App::new();
    app.open("l3b", "100", "0", "10").await;
    let uber = format!("{:<25}{:>12} {}", "UBER EATS", "SAO PAULO", "BR");
    // MEAL (the override) is empty: CASH pays, FOOD (the MCC's) is never used.
    assert_eq!(
        app.authorize(&App::tx(None, "l3b", "10", "5411", &uber))
            .await,
        "00"
    );
    assert_eq!(
        app.available("l3b").await,
        balances("100.00", "0.00", "0.00")
    );
    assert_eq!(
        app.authorize(&App::tx(None, "l3b", "1", "5411", &uber))
            .await,
        "51"
    );
}

#[tokio::test]
async fn unknown_account_is_07() {
    let app = App::new();
    assert_eq!(
        app.authorize(&App::tx(Some("u1"), "ghost", "1", "5411", BAKERY))
            .await,
        "07"
    );
    // Not recorded: once the account exists the same id is decided afresh.
    app.open("ghost", "5", "0", "0").await;
    assert_eq!(
        app.authorize(&App::tx(Some("u1"), "ghost", "1", "5411", BAKERY))
            .await,
        "00"
    );
}

#[tokio::test]
async fn malformed_bodies_are_07_with_http_200() {
    let app = App::new();
    app.open("m", "100", "100", "100").await;
    for body in [
        "",
        "{",
        "not json",
        "[]",
        "null",
        "42",
        r#"{"account":"m""#,
        "{\"account\":\"m\",}",
    ] {
        assert_eq!(app.authorize(body).await, "07", "{body:?}");
    }
    // Content type is not checked on the card route: a good body with a wrong type passes,
    // and a bad one is just 07.
    let good = App::tx(None, "m", "1", "5411", BAKERY);
    let response = app
        .call(
            Method::POST,
            "/transactions",
            good,
            &[("content-type", "text/plain")],
        )
        .await;
    assert_eq!(
        (response.status.as_u16(), response.code()),
        (200, "00".to_owned())
    );
    assert_eq!(
        app.available("m").await,
        balances("99.00", "100.00", "100.00")
    );
}

#[tokio::test]
async fn missing_fields_and_wrong_types_are_07_and_debit_nothing() {
    let app = App::new();
    app.open("v", "100", "100", "100").await;
    let bodies = [
        // Missing fields.
        r#"{"totalAmount":1,"mcc":"5411","merchant":"M"}"#,
        r#"{"account":"v","mcc":"5411","merchant":"M"}"#,
        r#"{"account":"v","totalAmount":1,"merchant":"M"}"#,
        r#"{"account":"v","totalAmount":1,"mcc":"5411"}"#,
        r#"{"account":"v","totalAmount":null,"mcc":"5411","merchant":"M"}"#,
        // Wrong types.
        r#"{"account":"v","totalAmount":true,"mcc":"5411","merchant":"M"}"#,
        r#"{"account":"v","totalAmount":{"value":1},"mcc":"5411","merchant":"M"}"#,
        r#"{"account":"v","totalAmount":[1],"mcc":"5411","merchant":"M"}"#,
        r#"{"account":"v","totalAmount":1,"mcc":5411,"merchant":"M"}"#,
        r#"{"account":1,"totalAmount":1,"mcc":"5411","merchant":"M"}"#,
        r#"{"account":"v","totalAmount":1,"mcc":"5411","merchant":7}"#,
        r#"{"id":5,"account":"v","totalAmount":1,"mcc":"5411","merchant":"M"}"#,
        // Invalid values.
        r#"{"account":"v","totalAmount":1,"mcc":"541","merchant":"M"}"#,
        r#"{"account":"v","totalAmount":1,"mcc":"54111","merchant":"M"}"#,
        r#"{"account":"v","totalAmount":1,"mcc":"54a1","merchant":"M"}"#,
        r#"{"account":"v v","totalAmount":1,"mcc":"5411","merchant":"M"}"#,
        r#"{"id":"has space","account":"v","totalAmount":1,"mcc":"5411","merchant":"M"}"#,
        r#"{"account":"v","totalAmount":"1,00","mcc":"5411","merchant":"M"}"#,
        r#"{"account":"v","totalAmount":"","mcc":"5411","merchant":"M"}"#,
    ];
    for body in bodies {
        assert_eq!(app.authorize(body).await, "07", "{body}");
    }
    let long = "M".repeat(101);
    assert_eq!(
        app.authorize(&App::tx(None, "v", "1", "5411", &long)).await,
        "07"
    );
    let longest = "M".repeat(100);
    assert_eq!(
        app.authorize(&App::tx(None, "v", "1", "5411", &longest))
            .await,
        "00"
    );
    assert_eq!(
        app.available("v").await,
        balances("99.00", "100.00", "100.00")
    );
}

#[tokio::test]
async fn zero_negative_and_sub_cent_amounts_are_07() {
    let app = App::new();
    app.open("amt", "100", "100", "100").await;
    for amount in [
        "0",
        "0.00",
        "-1",
        "-0.01",
        "19.905",
        "0.001",
        r#""19.905""#,
        r#""-5""#,
        "1e-3",
        "1e20",
    ] {
        assert_eq!(
            app.authorize(&App::tx(None, "amt", amount, "5411", BAKERY))
                .await,
            "07",
            "{amount}"
        );
    }
    assert_eq!(
        app.available("amt").await,
        balances("100.00", "100.00", "100.00")
    );
    // Trailing zeros below the cent are not extra precision.
    assert_eq!(
        app.authorize(&App::tx(None, "amt", "0.010", "5411", BAKERY))
            .await,
        "00"
    );
    assert_eq!(
        app.available("amt").await,
        balances("99.99", "100.00", "100.00")
    );
}

#[tokio::test]
async fn string_and_number_amounts_are_the_same_transaction() {
    let app = App::new();
    app.open("eq", "100", "0", "0").await;
    assert_eq!(
        app.authorize(&App::tx(Some("eq-1"), "eq", r#""19.90""#, "5411", BAKERY))
            .await,
        "00"
    );
    // The same id with the same amount in other notations is a replay, not a new debit
    // and not a conflict.
    for amount in ["19.9", "19.90", "1.99e1", "1990e-2", r#""19.9""#] {
        assert_eq!(
            app.authorize(&App::tx(Some("eq-1"), "eq", amount, "5411", BAKERY))
                .await,
            "00",
            "{amount}"
        );
    }
    assert_eq!(app.available("eq").await, balances("80.10", "0.00", "0.00"));
}

#[tokio::test]
async fn aliases_account_id_and_amount() {
    let app = App::new();
    app.open("alias", "100", "0", "0").await;
    let body =
        format!(r#"{{"accountId":"alias","amount":12.34,"mcc":"5411","merchant":"{BAKERY}"}}"#);
    assert_eq!(app.authorize(&body).await, "00");
    assert_eq!(
        app.available("alias").await,
        balances("87.66", "0.00", "0.00")
    );
    // The `/authorize` alias route.
    let response = app.post("/authorize", &body).await;
    assert_eq!(
        (response.status.as_u16(), response.code()),
        (200, "00".to_owned())
    );
    assert_eq!(
        app.available("alias").await,
        balances("75.32", "0.00", "0.00")
    );
    // Unknown fields are ignored.
    let extra = format!(
        r#"{{"account":"alias","totalAmount":0.32,"mcc":"5411","merchant":"{BAKERY}","currency":"BRL"}}"#
    );
    assert_eq!(app.authorize(&extra).await, "00");
    assert_eq!(
        app.available("alias").await,
        balances("75.00", "0.00", "0.00")
    );
}

#[tokio::test]
async fn same_id_replays_and_debits_once() {
    let app = App::new();
    app.open("idem", "100", "0", "0").await;
    let body = App::tx(Some("tx-1"), "idem", "30", "5411", BAKERY);
    for _ in 0..3 {
        assert_eq!(app.authorize(&body).await, "00");
    }
    assert_eq!(
        app.available("idem").await,
        balances("70.00", "0.00", "0.00")
    );
    // Via the alias route too: the id space is shared.
    assert_eq!(app.post("/authorize", &body).await.code(), "00");
    assert_eq!(
        app.available("idem").await,
        balances("70.00", "0.00", "0.00")
    );
}

#[tokio::test]
async fn same_id_with_another_body_is_07_and_debits_nothing() {
    let app = App::new();
    app.open("conf", "100", "100", "100").await;
    app.open("conf2", "100", "100", "100").await;
    assert_eq!(
        app.authorize(&App::tx(Some("tx-c"), "conf", "30", "5411", BAKERY))
            .await,
        "00"
    );
    for other in [
        App::tx(Some("tx-c"), "conf", "30.01", "5411", BAKERY),
        App::tx(Some("tx-c"), "conf", "30", "5811", BAKERY),
        App::tx(Some("tx-c"), "conf", "30", "5411", "ANOTHER SHOP"),
        App::tx(Some("tx-c"), "conf2", "30", "5411", BAKERY),
    ] {
        assert_eq!(app.authorize(&other).await, "07", "{other}");
    }
    assert_eq!(
        app.available("conf").await,
        balances("70.00", "100.00", "100.00")
    );
    assert_eq!(
        app.available("conf2").await,
        balances("100.00", "100.00", "100.00")
    );
    // The original still replays.
    assert_eq!(
        app.authorize(&App::tx(Some("tx-c"), "conf", "30", "5411", BAKERY))
            .await,
        "00"
    );
}

#[tokio::test]
async fn a_declined_id_replays_51_even_after_a_deposit() {
    let app = App::new();
    app.open("d51", "1", "0", "0").await;
    let body = App::tx(Some("tx-51"), "d51", "5", "5411", BAKERY);
    assert_eq!(app.authorize(&body).await, "51");
    let deposit = app
        .call(
            Method::POST,
            "/accounts/d51/deposits",
            r#"{"category":"FOOD","amount":10}"#,
            &[("idempotency-key", "dep-51")],
        )
        .await;
    assert_eq!(deposit.status, 201, "{}", deposit.text());
    assert_eq!(app.authorize(&body).await, "51");
    assert_eq!(
        app.available("d51").await,
        balances("11.00", "0.00", "0.00")
    );
}

#[tokio::test]
async fn oversized_body_is_07_with_http_200() {
    let app = App::new();
    app.open("big", "100", "0", "0").await;
    let padding = " ".repeat(payd_api::BODY_LIMIT);
    let body = format!("{}{padding}", App::tx(None, "big", "1", "5411", BAKERY));
    assert_eq!(app.authorize(&body).await, "07");
    assert_eq!(
        app.available("big").await,
        balances("100.00", "0.00", "0.00")
    );
}

#[tokio::test]
async fn answers_are_exact_json() {
    let app = App::new();
    app.open("exactjson", "1", "0", "0").await;
    let response = app
        .post(
            "/transactions",
            &App::tx(None, "exactjson", "1", "5411", BAKERY),
        )
        .await;
    assert_eq!(response.text(), r#"{"code":"00"}"#);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let response = app
        .post(
            "/transactions",
            &App::tx(None, "exactjson", "1", "5411", BAKERY),
        )
        .await;
    assert_eq!(response.text(), r#"{"code":"51"}"#);
    assert_eq!(
        app.post("/transactions", "{").await.text(),
        r#"{"code":"07"}"#
    );
}

/// A decision cache in memory, with the port's semantics.
#[derive(Default)]
struct MemoryDecisions(std::sync::Mutex<std::collections::HashMap<String, PriorAuthorization>>);

#[async_trait::async_trait]
impl DecisionCache for MemoryDecisions {
    async fn get(&self, id: &TransactionId) -> Option<PriorAuthorization> {
        self.0.lock().unwrap().get(id.as_str()).cloned()
    }

    async fn put(&self, id: &TransactionId, prior: &PriorAuthorization) {
        self.0
            .lock()
            .unwrap()
            .insert(id.as_str().to_owned(), prior.clone());
    }
}

impl MemoryDecisions {
    /// What it holds for `id`, waiting a little: the API writes it off the request's path.
    async fn awaited(&self, id: &str) -> Option<PriorAuthorization> {
        for _ in 0..100 {
            if let Some(prior) = self.0.lock().unwrap().get(id).cloned() {
                return Some(prior);
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        None
    }
}

/// Goal: with a decision cache, a committed `00`/`51` is remembered under its id, a
/// replay with the same body is answered from the cache (the store is not asked), and
/// anything else (another body under a cached id, an id the cache lacks, a `07`) is the
/// store's to decide. Method: an in-memory cache; an entry planted for an id the store has
/// never seen proves which of the two answered.
#[tokio::test]
async fn a_decision_cache_answers_replays_and_nothing_else() {
    let cache = Arc::new(MemoryDecisions::default());
    let app = App::with_decisions(cache.clone());
    app.open("cached", "0", "0", "100").await;

    // Decided by the store, then remembered with its code.
    let first = App::tx(Some("t-1"), "cached", "30.00", "1234", BAKERY);
    assert_eq!(app.authorize(&first).await, "00");
    let remembered = cache.awaited("t-1").await.expect("t-1 is cached");
    assert_eq!(remembered.code, Code::Approved);
    assert_eq!(remembered.amount, Amount::from_cents(3_000));
    let declined = App::tx(Some("t-2"), "cached", "500.00", "1234", BAKERY);
    assert_eq!(app.authorize(&declined).await, "51");
    assert_eq!(
        cache.awaited("t-2").await.map(|p| p.code),
        Some(Code::InsufficientFunds)
    );
    // An unknown account's 07 is not recorded by the store, so not cached either.
    assert_eq!(
        app.authorize(&App::tx(Some("t-3"), "nobody", "1.00", "1234", BAKERY))
            .await,
        "07"
    );
    assert_eq!(cache.awaited("t-3").await, None);

    // An entry the store does not have: a same-body request is answered from it.
    let planted = App::tx(Some("t-9"), "cached", "1.00", "1234", BAKERY);
    cache
        .put(
            &TransactionId::parse("t-9").unwrap(),
            &PriorAuthorization {
                account: AccountId::parse("cached").unwrap(),
                amount: Amount::from_cents(100),
                mcc: Mcc::parse("1234").unwrap(),
                merchant: BAKERY.to_owned(),
                code: Code::InsufficientFunds,
            },
        )
        .await;
    assert_eq!(
        app.authorize(&planted).await,
        "51",
        "the cache answers the replay"
    );
    assert_eq!(
        app.available("cached").await,
        balances("0.00", "0.00", "70.00"),
        "and nothing moved"
    );
    // Under the same id with another body, the store decides (it has never seen t-9).
    let other = App::tx(Some("t-9"), "cached", "2.00", "1234", BAKERY);
    assert_eq!(app.authorize(&other).await, "00");
    assert_eq!(
        app.available("cached").await,
        balances("0.00", "0.00", "68.00")
    );
    // A replay of t-1 with the same body: the cached 00, and no second debit.
    assert_eq!(app.authorize(&first).await, "00");
    assert_eq!(
        app.available("cached").await,
        balances("0.00", "0.00", "68.00")
    );
}
