//! `GET /payments/service-health`.

use std::time::Duration;

use axum::http::StatusCode;

use crate::helpers::{Sim, config};

#[tokio::test(start_paused = true)]
async fn one_answer_per_window_for_all_callers() {
    let sim = Sim::default_role();
    let first = sim.health().await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(first.is_json());

    // Another caller (a clone shares the state) within the window.
    let other = sim.clone();
    let refused = other.health().await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.code(), "health_rate_limited");
    assert_eq!(refused.headers["retry-after"], "5");

    tokio::time::advance(Duration::from_millis(4999)).await;
    let still_refused = sim.health().await;
    assert_eq!(still_refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(still_refused.headers["retry-after"], "1");

    // Refused calls did not extend the window: 5 s after the first answer, it answers again.
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(sim.health().await.status, StatusCode::OK);
    assert_eq!(sim.health().await.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(start_paused = true)]
async fn reports_failure_mode_and_delay() {
    let sim = Sim::default_role();
    let healthy = sim.health().await;
    assert_eq!(healthy.field("failing"), "false");
    assert_eq!(healthy.field("minResponseTime"), "0");
    assert_eq!(healthy.raw().len(), 2, "{}", healthy.body);

    sim.set_failing(true).await;
    sim.set_delay_ms(1234).await;
    tokio::time::advance(Duration::from_secs(5)).await;
    let degraded = sim.health().await;
    assert_eq!(degraded.status, StatusCode::OK);
    assert_eq!(degraded.field("failing"), "true");
    assert_eq!(degraded.field("minResponseTime"), "1234");
}

#[tokio::test(start_paused = true)]
async fn the_interval_is_configurable() {
    let sim = Sim::new(&{
        let mut config = config();
        config.health_interval_ms = 100;
        config
    });
    assert_eq!(sim.health().await.status, StatusCode::OK);
    assert_eq!(sim.health().await.status, StatusCode::TOO_MANY_REQUESTS);
    tokio::time::advance(Duration::from_millis(100)).await;
    assert_eq!(sim.health().await.status, StatusCode::OK);

    let unlimited = Sim::new(&{
        let mut config = config();
        config.health_interval_ms = 0;
        config
    });
    for _ in 0..3 {
        assert_eq!(unlimited.health().await.status, StatusCode::OK);
    }
}
