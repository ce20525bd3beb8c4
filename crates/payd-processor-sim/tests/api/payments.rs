//! `POST /payments` and `GET /payments/{id}`.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use uuid::Uuid;

use crate::helpers::{AT, Sim, config, payment_body, settle};

#[tokio::test]
async fn books_once_then_answers_422_and_reads_back_exactly() {
    let sim = Sim::default_role();
    let id = Uuid::new_v4();

    let first = sim.pay(id, "19.9", "2025-07-15T12:34:56.789Z").await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    assert!(first.is_json());
    assert_eq!(
        first.field("message"),
        r#""payment processed successfully""#
    );

    // A retry, even with other values, is the same payment: 422, the first booking stands.
    let again = sim.pay(id, "5.00", AT).await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(again.code(), "payment_already_processed");

    let read = sim.get_payment(id).await;
    assert_eq!(read.status, StatusCode::OK);
    let fields = read.raw();
    assert_eq!(fields.len(), 3, "{}", read.body);
    assert_eq!(fields["correlationId"], format!("\"{id}\""));
    assert_eq!(fields["amount"], "19.90");
    assert_eq!(fields["requestedAt"], r#""2025-07-15T12:34:56.789Z""#);
    assert_eq!(sim.booked_count().await, 1);
}

#[tokio::test]
async fn amounts_are_exact_in_any_json_notation() {
    let sim = Sim::default_role();
    for (amount, shown) in [
        ("1990e-2", "19.90"),
        (r#""0.10""#, "0.10"),
        ("100", "100.00"),
    ] {
        let id = Uuid::new_v4();
        assert_eq!(
            sim.pay(id, amount, AT).await.status,
            StatusCode::OK,
            "{amount}"
        );
        assert_eq!(sim.get_payment(id).await.field("amount"), shown);
    }
}

#[tokio::test]
async fn unknown_or_malformed_ids_are_404_and_400() {
    let sim = Sim::default_role();
    let missing = sim.get_payment(Uuid::new_v4()).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.code(), "payment_not_found");
    let malformed = sim
        .request(Method::GET, "/payments/not-a-uuid", None, None)
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.code(), "invalid_path");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_book_exactly_once() {
    let sim = Sim::default_role();
    let id = Uuid::new_v4();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let sim = sim.clone();
            tokio::spawn(async move { sim.pay(id, "1.00", AT).await.status })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let duplicate = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNPROCESSABLE_ENTITY)
        .count();
    assert_eq!((ok, duplicate), (1, 63), "{statuses:?}");
    assert_eq!(sim.booked_count().await, 1);
}

#[tokio::test(start_paused = true)]
async fn duplicates_waiting_out_the_same_delay_book_exactly_once() {
    let sim = Sim::default_role();
    sim.set_delay_ms(100).await;
    let id = Uuid::new_v4();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let sim = sim.clone();
            tokio::spawn(async move { sim.pay(id, "1.00", AT).await.status })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        if task.await.unwrap() == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(sim.booked_count().await, 1);
}

#[tokio::test]
async fn failure_mode_answers_500_and_books_nothing() {
    let sim = Sim::default_role();
    sim.set_failing(true).await;
    let id = Uuid::new_v4();
    let failed = sim.pay(id, "10.00", AT).await;
    assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(failed.is_json());
    assert_eq!(failed.code(), "simulated_failure");
    assert_eq!(sim.get_payment(id).await.status, StatusCode::NOT_FOUND);
    assert_eq!(sim.booked_count().await, 0);

    // Recovery: the same payment books normally.
    sim.set_failing(false).await;
    assert_eq!(sim.pay(id, "10.00", AT).await.status, StatusCode::OK);
    assert_eq!(sim.get_payment(id).await.status, StatusCode::OK);
}

#[tokio::test]
async fn failure_mode_does_not_hide_that_a_payment_was_booked_before() {
    // Spec order: failure first, then the duplicate check.
    let sim = Sim::default_role();
    let id = Uuid::new_v4();
    assert_eq!(sim.pay(id, "1.00", AT).await.status, StatusCode::OK);
    sim.set_failing(true).await;
    assert_eq!(
        sim.pay(id, "1.00", AT).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(sim.get_payment(id).await.status, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn the_delay_runs_before_booking() {
    let sim = Sim::default_role();
    sim.set_delay_ms(1000).await;
    let id = Uuid::new_v4();
    let started = tokio::time::Instant::now();
    let post = tokio::spawn({
        let sim = sim.clone();
        async move { sim.pay(id, "7.77", AT).await }
    });
    settle().await;

    tokio::time::advance(Duration::from_millis(999)).await;
    assert_eq!(sim.get_payment(id).await.status, StatusCode::NOT_FOUND);
    assert_eq!(sim.booked_count().await, 0);

    tokio::time::advance(Duration::from_millis(1)).await;
    let answer = post.await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(started.elapsed(), Duration::from_millis(1000));
    assert_eq!(sim.get_payment(id).await.field("amount"), "7.77");
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_times_out_still_gets_its_payment_booked() {
    let sim = Sim::default_role();
    sim.set_delay_ms(1000).await;
    let id = Uuid::new_v4();

    let gave_up = tokio::time::timeout(Duration::from_millis(500), sim.pay(id, "3.00", AT)).await;
    assert!(gave_up.is_err(), "the caller should have timed out");
    assert_eq!(sim.get_payment(id).await.status, StatusCode::NOT_FOUND);

    tokio::time::sleep(Duration::from_millis(501)).await;
    assert_eq!(sim.get_payment(id).await.status, StatusCode::OK);
    // The retry of the timed-out request learns it was booked.
    assert_eq!(
        sim.pay(id, "3.00", AT).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[tokio::test(start_paused = true)]
async fn failure_mode_switched_on_during_the_delay_applies() {
    let sim = Sim::default_role();
    sim.set_delay_ms(1000).await;
    let id = Uuid::new_v4();
    let post = tokio::spawn({
        let sim = sim.clone();
        async move { sim.pay(id, "1.00", AT).await.status }
    });
    settle().await;
    sim.set_failing(true).await;
    assert_eq!(post.await.unwrap(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(sim.get_payment(id).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test(start_paused = true)]
async fn more_than_max_in_flight_is_429_at_once_and_books_nothing() {
    let sim = Sim::new(&{
        let mut config = config();
        config.max_in_flight = 2;
        config.delay_ms = 1000;
        config
    });
    let (first, second, third) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let in_flight: Vec<_> = [first, second]
        .into_iter()
        .map(|id| {
            let sim = sim.clone();
            tokio::spawn(async move { sim.pay(id, "1.00", AT).await.status })
        })
        .collect();
    settle().await;

    let started = tokio::time::Instant::now();
    let refused = sim.pay(third, "1.00", AT).await;
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "429 must not wait out the delay"
    );
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.code(), "overloaded");
    assert!(refused.headers.contains_key("retry-after"));

    for task in in_flight {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(sim.get_payment(third).await.status, StatusCode::NOT_FOUND);
    // Capacity is back once the others are booked.
    assert_eq!(sim.pay(third, "1.00", AT).await.status, StatusCode::OK);
    assert_eq!(sim.booked_count().await, 3);
}

#[tokio::test]
async fn bad_bodies_are_400_and_book_nothing() {
    let sim = Sim::default_role();
    let id = Uuid::new_v4();
    let good = |amount: &str| payment_body(id, amount, AT);
    let cases: Vec<(String, &str)> = vec![
        ("{".to_owned(), "malformed_json"),
        (String::new(), "malformed_json"),
        (format!("{} trailing", good("1.00")), "malformed_json"),
        ("[]".to_owned(), "invalid_field"),
        (
            r#"{"amount":1.00,"requestedAt":"2025-07-15T12:34:56.000Z"}"#.to_owned(),
            "invalid_field",
        ),
        (
            payment_body(id, "1.00", AT).replace(&id.to_string(), "1234"),
            "invalid_field",
        ),
        (
            format!(r#"{{"correlationId":7,"amount":1,"requestedAt":"{AT}"}}"#),
            "invalid_field",
        ),
        (good("0"), "invalid_amount"),
        (good("0.00"), "invalid_amount"),
        (good("-5.00"), "invalid_amount"),
        (good("19.905"), "invalid_amount"),
        (good("0.001"), "invalid_amount"),
        (good(r#""ten""#), "invalid_amount"),
        (good("null"), "invalid_amount"),
        (good("true"), "invalid_amount"),
        (
            payment_body(id, "1.00", "2025-07-15T12:34:56"),
            "invalid_timestamp",
        ),
        (
            payment_body(id, "1.00", "2025-02-30T12:34:56.000Z"),
            "invalid_timestamp",
        ),
        (
            payment_body(id, "1.00", "2025-07-15T12:34:56.0005Z"),
            "invalid_timestamp",
        ),
        (payment_body(id, "1.00", "yesterday"), "invalid_timestamp"),
        (
            format!(r#"{{"correlationId":"{id}","amount":1.00}}"#),
            "invalid_field",
        ),
    ];
    for (body, code) in cases {
        let answer = sim.post_raw(body.clone()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}: {answer:?}");
        assert!(answer.is_json(), "{body}");
        assert_eq!(answer.code(), code, "{body}: {}", answer.body);
    }
    assert_eq!(sim.get_payment(id).await.status, StatusCode::NOT_FOUND);
    assert_eq!(sim.booked_count().await, 0);
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let sim = Sim::default_role();
    let body = payment_body(Uuid::new_v4(), &format!("1{}", " ".repeat(100_000)), AT);
    let answer = sim.post_raw(body).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.code(), "payload_too_large");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let sim = Sim::default_role();
    let missing = sim.request(Method::GET, "/nope", None, None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.code(), "not_found");
    let wrong_method = sim.request(Method::DELETE, "/payments", None, None).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.code(), "method_not_allowed");
}
