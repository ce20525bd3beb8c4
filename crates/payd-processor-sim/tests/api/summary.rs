//! `GET /admin/payments-summary`.

use axum::http::StatusCode;
use payd_processor_sim::{Role, SimConfig};
use uuid::Uuid;

use crate::helpers::Sim;

/// Books one payment per `(amount, requestedAt)`.
async fn book(sim: &Sim, payments: &[(&str, &str)]) {
    for (amount, at) in payments {
        let answer = sim.pay(Uuid::new_v4(), amount, at).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    }
}

#[tokio::test]
async fn bounds_are_inclusive_to_the_millisecond() {
    let sim = Sim::default_role();
    book(
        &sim,
        &[
            ("1.00", "2025-07-15T12:00:00.000Z"),
            ("2.00", "2025-07-15T12:00:00.001Z"),
            ("4.00", "2025-07-15T12:00:01.999Z"),
            ("8.00", "2025-07-15T12:00:02.000Z"),
        ],
    )
    .await;

    let both_ends = sim
        .summary("?from=2025-07-15T12:00:00.001Z&to=2025-07-15T12:00:01.999Z")
        .await;
    assert_eq!(both_ends.status, StatusCode::OK);
    assert_eq!(both_ends.field("totalRequests"), "2");
    assert_eq!(both_ends.field("totalAmount"), "6.00");

    let one_ms = sim
        .summary("?from=2025-07-15T12:00:02.000Z&to=2025-07-15T12:00:02.000Z")
        .await;
    assert_eq!(one_ms.field("totalAmount"), "8.00");

    let just_outside = sim
        .summary("?from=2025-07-15T12:00:00.002Z&to=2025-07-15T12:00:01.998Z")
        .await;
    assert_eq!(just_outside.field("totalRequests"), "0");
    assert_eq!(just_outside.field("totalAmount"), "0.00");

    // Bounds without milliseconds are whole seconds.
    let seconds = sim
        .summary("?from=2025-07-15T12:00:00Z&to=2025-07-15T12:00:02Z")
        .await;
    assert_eq!(seconds.field("totalAmount"), "15.00");

    // Inverted windows are empty, not an error.
    let inverted = sim
        .summary("?from=2025-07-15T12:00:02.000Z&to=2025-07-15T12:00:00.000Z")
        .await;
    assert_eq!(inverted.status, StatusCode::OK);
    assert_eq!(inverted.field("totalRequests"), "0");
}

#[tokio::test]
async fn missing_or_empty_bounds_are_unbounded() {
    let sim = Sim::default_role();
    book(
        &sim,
        &[
            ("1.00", "1999-01-01T00:00:00.000Z"),
            ("2.00", "2099-01-01T00:00:00.000Z"),
        ],
    )
    .await;
    for query in [
        "",
        "?",
        "?from=&to=",
        "?from=2000-01-01T00:00:00.000Z",
        "?to=2000-01-01T00:00:00Z",
    ] {
        let answer = sim.summary(query).await;
        assert_eq!(answer.status, StatusCode::OK, "{query}");
        let expected = match query {
            "?from=2000-01-01T00:00:00.000Z" => "2.00",
            "?to=2000-01-01T00:00:00Z" => "1.00",
            _ => "3.00",
        };
        assert_eq!(answer.field("totalAmount"), expected, "{query}");
    }
}

#[tokio::test]
async fn fees_are_rounded_half_up_per_payment_and_exact() {
    let sim = Sim::default_role();
    // At 5 %: 19.90 → 0.995 → 1.00; 0.10 → 0.005 → 0.01; 0.09 → 0.0045 → 0.00;
    // 0.30 → 0.015 → 0.02. Rounding the total instead would give 1.02, not 1.03.
    book(
        &sim,
        &[
            ("19.90", "2025-07-15T12:00:00.000Z"),
            ("0.10", "2025-07-15T12:00:00.000Z"),
            ("0.09", "2025-07-15T12:00:00.000Z"),
            ("0.30", "2025-07-15T12:00:00.000Z"),
        ],
    )
    .await;
    let answer = sim.summary("").await;
    let fields = answer.raw();
    assert_eq!(fields.len(), 4, "{}", answer.body);
    assert_eq!(fields["totalRequests"], "4");
    assert_eq!(fields["totalAmount"], "20.39");
    assert_eq!(fields["totalFee"], "1.03");
    assert_eq!(fields["feePerTransaction"], "0.05");
}

#[tokio::test]
async fn the_fallback_charges_its_own_fee() {
    let sim = Sim::new(&SimConfig::for_role(Role::Fallback));
    book(
        &sim,
        &[
            ("0.30", "2025-07-15T12:00:00.000Z"),
            ("100.00", "2025-07-15T12:00:00.000Z"),
        ],
    )
    .await;
    let answer = sim.summary("").await;
    // 0.30 × 15 % = 0.045 → 0.05; 100.00 × 15 % = 15.00.
    assert_eq!(answer.field("totalFee"), "15.05");
    assert_eq!(answer.field("feePerTransaction"), "0.15");
    assert_eq!(answer.field("totalAmount"), "100.30");
}

#[tokio::test]
async fn large_totals_do_not_overflow() {
    let sim = Sim::default_role();
    // 10 payments of the largest accepted amount: 10^14 units, beyond f64's exact cents.
    for _ in 0..10 {
        book(&sim, &[("10000000000000.00", "2025-07-15T12:00:00.000Z")]).await;
    }
    book(&sim, &[("0.01", "2025-07-15T12:00:00.000Z")]).await;
    let answer = sim.summary("").await;
    assert_eq!(answer.field("totalAmount"), "100000000000000.01");
    assert_eq!(answer.field("totalFee"), "5000000000000.00");
}

#[tokio::test]
async fn bad_bounds_are_400() {
    let sim = Sim::default_role();
    for query in [
        "?from=yesterday",
        "?to=2025-07-15",
        "?from=2025-07-15T12:00:00.000+01:00",
        "?to=2025-07-15T12:00:00.0001Z",
    ] {
        let answer = sim.summary(query).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(answer.code(), "invalid_timestamp", "{query}");
    }
}
