//! The processors' wire format and the meaning of their answers, as pure functions.

use payd_domain::gateway::Outcome;
use payd_domain::timestamp::format_ms;
use payd_ports::{HealthError, HealthReport, Lookup, ProcessorPayment};

/// The body of `POST /payments`. The amount is written from integer cents as a JSON number
/// with two decimals, and `requestedAt` is the instant fixed at intake, identical on every
/// attempt.
pub fn submit_body(payment: &ProcessorPayment) -> String {
    format!(
        r#"{{"correlationId":"{}","amount":{},"requestedAt":"{}"}}"#,
        payment.id.as_str(),
        payment.amount,
        format_ms(payment.requested_at_ms)
    )
}

/// What an HTTP status to `POST /payments` means.
pub fn submit_outcome(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Booked,
        // Already booked: by an earlier attempt of ours whose answer we did not see.
        422 => Outcome::AlreadyBooked,
        // 5xx (failing), 429 (overloaded), and any other 4xx (our request was refused):
        // the processor answered, and it did not book.
        _ => Outcome::Rejected,
    }
}

/// What a transport error means. `connect`: no connection was made, so nothing was sent.
/// Anything else (a timeout, a connection lost mid-call) may have reached the processor.
pub fn transport_outcome(connect: bool, timeout: bool) -> Outcome {
    if connect && !timeout {
        Outcome::Rejected
    } else {
        Outcome::Unknown
    }
}

/// What an HTTP status to `GET /payments/{id}` means.
pub fn lookup_outcome(status: u16) -> Lookup {
    match status {
        200 => Lookup::Found,
        404 => Lookup::NotFound,
        _ => Lookup::Unavailable,
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthBody {
    failing: bool,
    min_response_time: u64,
}

/// Reads the answer of `GET /payments/service-health`.
pub fn health_report(status: u16, body: &[u8]) -> Result<HealthReport, HealthError> {
    match status {
        200 => {
            let body: HealthBody = serde_json::from_slice(body)
                .map_err(|error| HealthError::Unavailable(format!("bad health body: {error}")))?;
            Ok(HealthReport {
                failing: body.failing,
                min_response_ms: body.min_response_time,
            })
        }
        429 => Err(HealthError::RateLimited),
        other => Err(HealthError::Unavailable(format!(
            "health endpoint answered HTTP {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use payd_domain::{Amount, CorrelationId};

    #[test]
    fn body_is_exact() {
        let payment = ProcessorPayment {
            id: CorrelationId::parse("4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3").unwrap(),
            amount: Amount::from_cents(1990),
            requested_at_ms: 1_752_582_896_789,
        };
        assert_eq!(
            submit_body(&payment),
            r#"{"correlationId":"4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3","amount":19.90,"requestedAt":"2025-07-15T12:34:56.789Z"}"#
        );
    }

    #[test]
    fn statuses_map_to_explicit_outcomes() {
        assert_eq!(submit_outcome(200), Outcome::Booked);
        assert_eq!(submit_outcome(201), Outcome::Booked);
        assert_eq!(submit_outcome(422), Outcome::AlreadyBooked);
        for status in [500, 502, 503, 429, 400, 404] {
            assert_eq!(submit_outcome(status), Outcome::Rejected, "{status}");
        }
        assert_eq!(
            transport_outcome(true, false),
            Outcome::Rejected,
            "refused: nothing sent"
        );
        assert_eq!(
            transport_outcome(true, true),
            Outcome::Unknown,
            "connect timeout: stay safe"
        );
        assert_eq!(transport_outcome(false, true), Outcome::Unknown);
        assert_eq!(
            transport_outcome(false, false),
            Outcome::Unknown,
            "cut mid-call"
        );
        assert_eq!(lookup_outcome(200), Lookup::Found);
        assert_eq!(lookup_outcome(404), Lookup::NotFound);
        assert_eq!(lookup_outcome(500), Lookup::Unavailable);
    }

    #[test]
    fn health_bodies() {
        assert_eq!(
            health_report(200, br#"{"failing": true, "minResponseTime": 250}"#),
            Ok(HealthReport {
                failing: true,
                min_response_ms: 250
            })
        );
        assert_eq!(health_report(429, b""), Err(HealthError::RateLimited));
        assert!(matches!(
            health_report(200, b"{}"),
            Err(HealthError::Unavailable(_))
        ));
        assert!(matches!(
            health_report(500, b""),
            Err(HealthError::Unavailable(_))
        ));
    }
}
