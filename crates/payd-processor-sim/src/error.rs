//! Every error the simulator can answer, in one table.
//!
//! Each [`Code`] has exactly one HTTP status and one stable snake_case name, declared together
//! in the `error_codes!` table, so handlers cannot drift apart. Callers switch on `code`;
//! `message` is for humans. The only 500 a well-behaved simulator answers is
//! [`Code::SimulatedFailure`]; [`Code::Internal`] exists so that a bug becomes an answer
//! rather than a panic.

use std::borrow::Cow;
use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $variant:ident = $status:ident, $name:literal;)*) => {
        /// A stable, client-visible error code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub(crate) enum Code {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Code {
            /// Every code, in table order.
            #[cfg(test)]
            pub(crate) const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The HTTP status this code is answered with.
            pub(crate) const fn status(self) -> StatusCode {
                match self {
                    $(Code::$variant => StatusCode::$status,)*
                }
            }

            /// The wire name, stable once released.
            pub(crate) const fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $name,)*
                }
            }
        }
    };
}

error_codes! {
    /// The body is not syntactically valid JSON (or could not be read).
    MalformedJson = BAD_REQUEST, "malformed_json";
    /// A body field is missing, has the wrong type or an invalid value.
    InvalidField = BAD_REQUEST, "invalid_field";
    /// `amount` is not a decimal > 0 with at most two places (or is out of range).
    InvalidAmount = BAD_REQUEST, "invalid_amount";
    /// A timestamp (`requestedAt`, `from`, `to`) is not ISO-8601 UTC with at most ms precision.
    InvalidTimestamp = BAD_REQUEST, "invalid_timestamp";
    /// The query string could not be read.
    InvalidQuery = BAD_REQUEST, "invalid_query";
    /// A path segment (the correlation id) is invalid.
    InvalidPath = BAD_REQUEST, "invalid_path";
    /// Missing or wrong `X-Rinha-Token` on an admin endpoint.
    Unauthorized = UNAUTHORIZED, "unauthorized";
    /// No booked payment with this correlation id (or not yet: the delay may still run).
    PaymentNotFound = NOT_FOUND, "payment_not_found";
    /// No such route.
    NotFound = NOT_FOUND, "not_found";
    /// The route exists but not with this method.
    MethodNotAllowed = METHOD_NOT_ALLOWED, "method_not_allowed";
    /// The body exceeds the request body limit.
    PayloadTooLarge = PAYLOAD_TOO_LARGE, "payload_too_large";
    /// This correlation id was booked before; the payment counts as booked.
    PaymentAlreadyProcessed = UNPROCESSABLE_ENTITY, "payment_already_processed";
    /// More than `max_in_flight` payments are being processed; nothing was booked.
    Overloaded = TOO_MANY_REQUESTS, "overloaded";
    /// The health endpoint was called again within its rate-limit window.
    HealthRateLimited = TOO_MANY_REQUESTS, "health_rate_limited";
    /// Failure mode is on: the simulated processor error. Nothing was booked.
    SimulatedFailure = INTERNAL_SERVER_ERROR, "simulated_failure";
    /// The server is shutting down and dropped the payment before booking it.
    ShuttingDown = SERVICE_UNAVAILABLE, "shutting_down";
    /// A bug in the simulator.
    Internal = INTERNAL_SERVER_ERROR, "internal";
}

/// An error answer: a [`Code`], a message, and for 429s a hint of when to retry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SimError {
    /// The stable code, which decides the status.
    pub(crate) code: Code,
    /// Helpful text (which field, which limit).
    pub(crate) message: Cow<'static, str>,
    /// Sent as `Retry-After` (whole seconds, rounded up) so callers back off just enough.
    pub(crate) retry_after: Option<Duration>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
}

impl SimError {
    /// An error with a message.
    pub(crate) fn new(code: Code, message: impl Into<Cow<'static, str>>) -> SimError {
        SimError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Adds a `Retry-After` hint.
    pub(crate) fn retry_after(mut self, wait: Duration) -> SimError {
        self.retry_after = Some(wait);
        self
    }

    /// `invalid_field` for `field` with the reason.
    pub(crate) fn invalid_field(field: &str, reason: impl std::fmt::Display) -> SimError {
        SimError::new(Code::InvalidField, format!("field `{field}`: {reason}"))
    }

    /// Maps a body-parsing error: broken JSON is `malformed_json`, well-formed JSON of the
    /// wrong shape (missing field, wrong type) is `invalid_field`; serde's message names the
    /// field.
    pub(crate) fn from_json(error: &serde_json::Error) -> SimError {
        match error.classify() {
            serde_json::error::Category::Data => {
                SimError::new(Code::InvalidField, error.to_string())
            }
            serde_json::error::Category::Io
            | serde_json::error::Category::Syntax
            | serde_json::error::Category::Eof => {
                SimError::new(Code::MalformedJson, error.to_string())
            }
        }
    }

    /// Maps a failure to buffer the body: over the limit is 413, anything else (the client
    /// hung up, a broken chunked encoding) means there is no JSON to read.
    pub(crate) fn from_body(rejection: &BytesRejection) -> SimError {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            SimError::new(Code::PayloadTooLarge, rejection.body_text())
        } else {
            SimError::new(Code::MalformedJson, "failed to read the request body")
        }
    }

    /// A bug: logged, answered as `internal`.
    pub(crate) fn internal(what: impl Into<Cow<'static, str>>) -> SimError {
        SimError::new(Code::Internal, what)
    }
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for SimError {}

impl IntoResponse for SimError {
    fn into_response(self) -> Response {
        if self.code == Code::Internal {
            tracing::error!(message = %self.message, "Internal error.");
        }
        let body = ErrorBody {
            code: self.code.as_str(),
            message: &self.message,
        };
        let mut response = json_response(self.code.status(), &body);
        if let Some(wait) = self.retry_after {
            // Round up: "0" would invite an immediate retry that is bound to fail again.
            let seconds = u64::try_from(wait.as_millis().div_ceil(1000)).unwrap_or(u64::MAX);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}

/// `value` as a JSON response. Our bodies are plain structs of strings, integers and
/// pre-validated raw numbers, so serialization cannot fail; the fallback keeps even that
/// impossible path panic-free.
pub(crate) fn json_response(status: StatusCode, value: &impl Serialize) -> Response {
    let (status, bytes) = match serde_json::to_vec(value) {
        Ok(bytes) => (status, bytes),
        Err(error) => {
            tracing::error!(%error, "Failed to encode a response body.");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                br#"{"code":"internal","message":"failed to encode the response"}"#.to_vec(),
            )
        }
    };
    let mut response = (status, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn names_are_unique_snake_case() {
        let mut seen = HashSet::new();
        for code in Code::ALL {
            let name = code.as_str();
            assert!(seen.insert(name), "duplicate {name}");
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
        }
    }

    #[test]
    fn only_the_simulated_failure_and_bugs_are_500() {
        for code in Code::ALL {
            let status = code.status();
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{code:?}"
            );
            if status == StatusCode::INTERNAL_SERVER_ERROR {
                assert!(
                    matches!(code, Code::SimulatedFailure | Code::Internal),
                    "{code:?}"
                );
            }
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let response = SimError::new(Code::Overloaded, "busy")
            .retry_after(Duration::from_millis(1001))
            .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let response = SimError::new(Code::Overloaded, "busy")
            .retry_after(Duration::ZERO)
            .into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }
}
