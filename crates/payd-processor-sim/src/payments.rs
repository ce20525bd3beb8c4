//! `POST /payments` and `GET /payments/{correlationId}`.
//!
//! Each request goes parse → apply → encode: [`NewPayment::parse`] is pure, [`book_after`]
//! is the effect (delay, failure mode, booking), and the handlers only encode.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use payd_domain::Amount;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::OwnedSemaphorePermit;
use uuid::Uuid;

use crate::error::{Code, SimError, json_response};
use crate::state::Sim;
use crate::store::{AlreadyBooked, Payment};
use crate::timestamp;

/// The wire form of `POST /payments`. `amount` stays raw JSON text so that it is read
/// exactly by [`Amount::parse_positive`], never through `f64`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PaymentBody<'a> {
    correlation_id: String,
    #[serde(borrow)]
    amount: &'a RawValue,
    requested_at: String,
}

/// A validated `POST /payments` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NewPayment {
    pub(crate) id: Uuid,
    pub(crate) payment: Payment,
}

impl NewPayment {
    /// Reads and validates a body; every failure is a 400 naming the field.
    pub(crate) fn parse(bytes: &[u8]) -> Result<NewPayment, SimError> {
        let body: PaymentBody<'_> =
            serde_json::from_slice(bytes).map_err(|error| SimError::from_json(&error))?;
        let id = Uuid::try_parse(&body.correlation_id)
            .map_err(|_| SimError::invalid_field("correlationId", "must be a UUID"))?;
        let amount = parse_amount(body.amount)?;
        let requested_at = timestamp::parse(&body.requested_at).map_err(|reason| {
            SimError::new(
                Code::InvalidTimestamp,
                format!("field `requestedAt`: {reason}"),
            )
        })?;
        Ok(NewPayment {
            id,
            payment: Payment {
                amount,
                requested_at,
            },
        })
    }
}

/// A JSON number (`19.90`) or a string holding one (`"19.90"`), read exactly.
fn parse_amount(raw: &RawValue) -> Result<Amount, SimError> {
    let invalid = |reason: &dyn std::fmt::Display| {
        SimError::new(Code::InvalidAmount, format!("field `amount`: {reason}"))
    };
    let text = raw.get();
    let parsed = if text.starts_with('"') {
        // A string: decode escapes first, then the content must be a plain decimal.
        let content: String = serde_json::from_str(text).map_err(|error| invalid(&error))?;
        Amount::parse_positive(&content)
    } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        Amount::parse_positive(text)
    } else {
        return Err(invalid(&"must be a number"));
    };
    parsed.map_err(|error| invalid(&error))
}

/// The effect of one accepted `POST /payments`: wait the delay, then fail or book.
///
/// Runs in its own task, so a caller that gives up (timeout, closed connection) does not
/// cancel it: the payment is still booked when the delay ends, as with the real processor.
/// `_permit` keeps the request counted as in flight until then.
async fn book_after(
    sim: Arc<Sim>,
    new: NewPayment,
    delay: Duration,
    _permit: OwnedSemaphorePermit,
) -> Result<(), SimError> {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    // Read after the delay: failure mode switched on meanwhile applies to this request.
    if sim.failing() {
        return Err(SimError::new(
            Code::SimulatedFailure,
            "the processor is in failure mode; the payment was not booked",
        ));
    }
    sim.payments()
        .book(new.id, new.payment)
        .map_err(|AlreadyBooked| {
            SimError::new(
                Code::PaymentAlreadyProcessed,
                format!("payment {} was already processed", new.id),
            )
        })
}

#[derive(Serialize)]
struct Message {
    message: &'static str,
}

/// `POST /payments`.
pub(crate) async fn create(
    State(sim): State<Arc<Sim>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, SimError> {
    // Overload is decided first and answered at once: a processor at capacity does not
    // make the caller wait for a no.
    let Some(permit) = sim.try_enter() else {
        return Err(SimError::new(
            Code::Overloaded,
            "too many payments in flight; nothing was booked, retry later",
        )
        .retry_after(Duration::from_secs(1)));
    };
    let bytes = body.map_err(|rejection| SimError::from_body(&rejection))?;
    // Invalid bodies are refused before the delay: validation is not processing.
    let new = NewPayment::parse(&bytes)?;
    let delay = Duration::from_millis(sim.delay_ms());
    let booking = tokio::spawn(book_after(Arc::clone(&sim), new, delay, permit));
    match booking.await {
        Ok(result) => result?,
        // The runtime is shutting down and dropped the task before it booked anything.
        Err(error) if error.is_cancelled() => {
            return Err(SimError::new(
                Code::ShuttingDown,
                "the processor is shutting down; the payment was not booked",
            ));
        }
        Err(error) => return Err(SimError::internal(format!("booking task failed: {error}"))),
    }
    Ok(json_response(
        StatusCode::OK,
        &Message {
            message: "payment processed successfully",
        },
    ))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PaymentView<'a> {
    correlation_id: String,
    amount: Box<RawValue>,
    requested_at: &'a str,
}

/// `GET /payments/{correlationId}`.
pub(crate) async fn fetch(
    State(sim): State<Arc<Sim>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, SimError> {
    let Path(id) =
        id.map_err(|rejection| SimError::new(Code::InvalidPath, rejection.body_text()))?;
    let id = Uuid::try_parse(&id)
        .map_err(|_| SimError::new(Code::InvalidPath, "the correlation id must be a UUID"))?;
    // Copy out and release the lock before encoding.
    let payment = sim.payments().get(&id).cloned();
    let Some(payment) = payment else {
        return Err(SimError::new(
            Code::PaymentNotFound,
            format!("no payment {id} is booked (yet)"),
        ));
    };
    let view = PaymentView {
        correlation_id: id.hyphenated().to_string(),
        amount: json_number(payment.amount.to_string())?,
        requested_at: &payment.requested_at.text,
    };
    Ok(json_response(StatusCode::OK, &view))
}

/// Decimal text (`19.90`) as a JSON number, digits preserved. Our texts are always valid
/// numbers; an error here is a bug.
pub(crate) fn json_number(text: String) -> Result<Box<RawValue>, SimError> {
    RawValue::from_string(text)
        .map_err(|error| SimError::internal(format!("not a JSON number: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<NewPayment, SimError> {
        NewPayment::parse(body.as_bytes())
    }

    const ID: &str = "4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3";

    fn body(amount: &str) -> String {
        format!(
            r#"{{"correlationId":"{ID}","amount":{amount},"requestedAt":"2025-07-15T12:34:56.000Z"}}"#
        )
    }

    #[test]
    fn amounts_are_read_exactly_from_numbers_and_strings() {
        for (amount, cents) in [
            ("19.90", 1990),
            ("19.9", 1990),
            ("1990e-2", 1990),
            (r#""19.90""#, 1990),
            ("0.01", 1),
            ("19.900", 1990),
        ] {
            let parsed = parse(&body(amount)).unwrap();
            assert_eq!(parsed.payment.amount.cents(), cents, "{amount}");
        }
    }

    #[test]
    fn bad_amounts_are_invalid_amount() {
        for amount in [
            "0", "0.00", "-1", "19.905", "0.001", r#""abc""#, r#""""#, "null", "true", "{}", "[]",
            "1e30", r#"" 1""#,
        ] {
            let error = parse(&body(amount)).unwrap_err();
            assert_eq!(error.code, Code::InvalidAmount, "{amount}: {error}");
        }
    }

    #[test]
    fn shape_errors_name_their_code() {
        assert_eq!(parse("{").unwrap_err().code, Code::MalformedJson);
        assert_eq!(parse("").unwrap_err().code, Code::MalformedJson);
        assert_eq!(
            parse(&format!("{} x", body("1"))).unwrap_err().code,
            Code::MalformedJson
        );
        assert_eq!(
            parse(r#"{"amount":1}"#).unwrap_err().code,
            Code::InvalidField
        );
        assert_eq!(parse("[]").unwrap_err().code, Code::InvalidField);
        let not_uuid = body("1").replace(ID, "not-a-uuid");
        assert_eq!(parse(&not_uuid).unwrap_err().code, Code::InvalidField);
        let bad_time = body("1").replace("12:34:56.000Z", "12:34:56");
        assert_eq!(parse(&bad_time).unwrap_err().code, Code::InvalidTimestamp);
    }
}
