//! Every error the API can answer, in one table.
//!
//! Each [`Code`] has exactly one HTTP status and one stable snake_case name, declared
//! together in the `error_codes!` table below (the meilisearch pattern), so the mapping
//! cannot drift between handlers. Clients switch on `code`; `message` is for humans and
//! may change. The card route (`POST /transactions`) never uses these bodies: it folds
//! every error into the `07` answer code, but it classifies with the same [`ApiError`].

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use payd_ports::{LedgerError, Refusal};
use serde::Serialize;
use utoipa::ToSchema;

macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $variant:ident = $status:ident, $name:literal;)*) => {
        /// A stable, client-visible error code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Code {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Code {
            /// Every code, in table order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The HTTP status this code is answered with.
            pub const fn status(self) -> StatusCode {
                match self {
                    $(Code::$variant => StatusCode::$status,)*
                }
            }

            /// The wire name (`snake_case`), stable forever once released.
            pub const fn as_str(self) -> &'static str {
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
    /// A field is present but its type or value is wrong.
    InvalidField = UNPROCESSABLE_ENTITY, "invalid_field";
    /// A required field is absent (or `null`).
    MissingField = UNPROCESSABLE_ENTITY, "missing_field";
    /// An amount is not a decimal with at most two places, or out of range.
    InvalidAmount = UNPROCESSABLE_ENTITY, "invalid_amount";
    /// A query-string parameter is unknown or invalid.
    InvalidQuery = BAD_REQUEST, "invalid_query";
    /// A path segment (account id, merchant pattern) is invalid.
    InvalidPath = BAD_REQUEST, "invalid_path";
    /// The body exceeds the request body limit.
    PayloadTooLarge = PAYLOAD_TOO_LARGE, "payload_too_large";
    /// The client declared a content type other than JSON.
    UnsupportedMediaType = UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type";
    /// No account with this id.
    AccountNotFound = NOT_FOUND, "account_not_found";
    /// `POST /accounts` with an id that is taken.
    AccountExists = CONFLICT, "account_exists";
    /// No merchant override with this pattern.
    MerchantNotFound = NOT_FOUND, "merchant_not_found";
    /// A deposit without an `Idempotency-Key` header.
    IdempotencyKeyMissing = BAD_REQUEST, "idempotency_key_missing";
    /// The `Idempotency-Key` header is not 1–255 printable ASCII characters.
    InvalidIdempotencyKey = BAD_REQUEST, "invalid_idempotency_key";
    /// The idempotency key was already used with a different body.
    IdempotencyKeyReused = UNPROCESSABLE_ENTITY, "idempotency_key_reused";
    /// The movement would overflow a balance.
    BalanceOverflow = UNPROCESSABLE_ENTITY, "balance_overflow";
    /// The available balance does not cover the amount (holds, withdrawals, pay-ins).
    InsufficientFunds = UNPROCESSABLE_ENTITY, "insufficient_funds";
    /// No hold with this id.
    HoldNotFound = NOT_FOUND, "hold_not_found";
    /// The hold is already captured, voided or expired.
    HoldNotActive = CONFLICT, "hold_not_active";
    /// The hold's time is up; it has been released and can no longer be captured.
    HoldExpired = CONFLICT, "hold_expired";
    /// The hold backs a pay-in; it follows its payment.
    HoldOwnedByPayment = CONFLICT, "hold_owned_by_payment";
    /// A capture for more than the hold holds.
    CaptureExceedsHold = UNPROCESSABLE_ENTITY, "capture_exceeds_hold";
    /// No transfer with this id.
    TransferNotFound = NOT_FOUND, "transfer_not_found";
    /// A hold, transfer or webhook id that is already taken by another request.
    ResourceExists = CONFLICT, "resource_exists";
    /// A request with this idempotency key is still being processed; retry later.
    IdempotencyRequestInFlight = CONFLICT, "idempotency_request_in_flight";
    /// The request is well formed but not acceptable (e.g. a transfer to the same account).
    InvalidRequest = UNPROCESSABLE_ENTITY, "invalid_request";
    /// No payment with this correlation id.
    PaymentNotFound = NOT_FOUND, "payment_not_found";
    /// No webhook with this id.
    WebhookNotFound = NOT_FOUND, "webhook_not_found";
    /// An admin endpoint without the right `Authorization: Bearer <admin token>`.
    Unauthorized = UNAUTHORIZED, "unauthorized";
    /// An admin endpoint while no admin token is configured (and not in `--dev` mode).
    AdminDisabled = FORBIDDEN, "admin_disabled";
    /// No such route.
    NotFound = NOT_FOUND, "not_found";
    /// The route exists but not with this method.
    MethodNotAllowed = METHOD_NOT_ALLOWED, "method_not_allowed";
    /// The store is not ready to take commands (readiness probe).
    NotReady = SERVICE_UNAVAILABLE, "not_ready";
    /// The store failed or is shutting down; nothing was acknowledged.
    StoreUnavailable = SERVICE_UNAVAILABLE, "store_unavailable";
    /// A bug on our side.
    Internal = INTERNAL_SERVER_ERROR, "internal";
}

/// An error answer: a [`Code`] and a human-readable message saying what to fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The stable code, which decides the status.
    pub code: Code,
    /// Helpful text (which field, which limit).
    pub message: Cow<'static, str>,
}

/// The wire form of every error.
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
pub(crate) struct ErrorBody {
    /// Stable snake_case code, e.g. `account_not_found`.
    #[schema(example = "invalid_field")]
    code: &'static str,
    /// Human-readable explanation; not stable.
    #[schema(example = "field `mcc`: must be exactly 4 digits")]
    message: Cow<'static, str>,
}

impl ApiError {
    /// An error with a message.
    pub fn new(code: Code, message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// `missing_field` for `field`.
    pub(crate) fn missing(field: &str) -> ApiError {
        ApiError::new(Code::MissingField, format!("field `{field}` is required"))
    }

    /// `invalid_field` for `field` with the reason.
    pub(crate) fn invalid(field: &str, reason: impl std::fmt::Display) -> ApiError {
        ApiError::new(Code::InvalidField, format!("field `{field}`: {reason}"))
    }

    /// `invalid_amount` for `field` with the reason.
    pub(crate) fn invalid_amount(field: &str, reason: impl std::fmt::Display) -> ApiError {
        ApiError::new(Code::InvalidAmount, format!("field `{field}`: {reason}"))
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        match refusal {
            Refusal::AccountExists => ApiError::new(
                Code::AccountExists,
                "an account with this id already exists",
            ),
            Refusal::AccountNotFound => {
                ApiError::new(Code::AccountNotFound, "no account with this id")
            }
            Refusal::IdempotencyKeyReused => ApiError::new(
                Code::IdempotencyKeyReused,
                "this Idempotency-Key was already used with a different request body",
            ),
            Refusal::BalanceOverflow => ApiError::new(
                Code::BalanceOverflow,
                "the movement would overflow a balance",
            ),
            Refusal::InsufficientFunds => ApiError::new(
                Code::InsufficientFunds,
                "the available balance does not cover the amount",
            ),
            Refusal::HoldNotFound => ApiError::new(Code::HoldNotFound, "no hold with this id"),
            Refusal::HoldNotActive(status) => ApiError::new(
                Code::HoldNotActive,
                format!("the hold is already {}", status.as_str()),
            ),
            Refusal::HoldExpired => ApiError::new(
                Code::HoldExpired,
                "the hold has expired and its amount was released",
            ),
            Refusal::HoldOwnedByPayment => ApiError::new(
                Code::HoldOwnedByPayment,
                "this hold backs a payment; it is captured or released with the payment",
            ),
            Refusal::CaptureExceedsHold => ApiError::new(
                Code::CaptureExceedsHold,
                "the capture amount exceeds the held amount",
            ),
            Refusal::ResourceExists => ApiError::new(
                Code::ResourceExists,
                "this id is already taken by another request",
            ),
            Refusal::Invalid(reason) => ApiError::new(Code::InvalidRequest, reason),
            Refusal::MerchantNotFound => ApiError::new(
                Code::MerchantNotFound,
                "no merchant override with this pattern",
            ),
            Refusal::WebhookNotFound => {
                ApiError::new(Code::WebhookNotFound, "no webhook with this id")
            }
        }
    }
}

/// The whole chain of causes of an error, `outer: inner: innermost`, for a log line.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Errors often repeat their source in their own message.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl From<LedgerError> for ApiError {
    fn from(error: LedgerError) -> ApiError {
        match error {
            LedgerError::Refused(refusal) => refusal.into(),
            LedgerError::Unavailable(failure) => {
                // Not the client's fault: the one ledger error worth a log line, with its
                // causes (the store's own error: SQLite's, PostgreSQL's, the connection's).
                tracing::error!(error = %causes(&failure), "Ledger store unavailable.");
                ApiError::new(
                    Code::StoreUnavailable,
                    "the ledger store is unavailable; nothing was acknowledged, retry later \
                     (with the same idempotency key)",
                )
            }
        }
    }
}

impl ApiError {
    /// The JSON body of this error.
    pub(crate) fn body_bytes(&self) -> Vec<u8> {
        let body = ErrorBody {
            code: self.code.as_str(),
            message: self.message.clone(),
        };
        // Serializing two strings cannot fail; the fallback keeps this path panic-free.
        serde_json::to_vec(&body).unwrap_or_else(|_| {
            br#"{"code":"internal","message":"failed to encode the error"}"#.to_vec()
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.code == Code::Internal {
            tracing::error!(message = %self.message, "Internal error.");
        }
        let bytes = self.body_bytes();
        let mut response = (self.code.status(), bytes).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
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
    fn statuses_are_client_or_server_errors() {
        for code in Code::ALL {
            let status = code.status();
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{code:?}"
            );
        }
        assert_eq!(
            Code::PayloadTooLarge.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            Code::StoreUnavailable.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn ledger_errors_map() {
        assert_eq!(
            ApiError::from(Refusal::AccountExists).code,
            Code::AccountExists
        );
        assert_eq!(
            ApiError::from(Refusal::AccountNotFound).code,
            Code::AccountNotFound
        );
        assert_eq!(
            ApiError::from(LedgerError::unavailable("x")).code,
            Code::StoreUnavailable
        );
    }
}
