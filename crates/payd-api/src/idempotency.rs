//! Idempotent mutations: the claim a request makes, requests in flight, and the one
//! renderer of mutation outcomes.
//!
//! A mutating request is identified by its `Idempotency-Key` header (remembered for the
//! retention period, `--idempotency-retention-ms`) or, without one, by the resource id the
//! client chose (`hold:<id>`, `transfer:<id>`: remembered forever). The claim carries a
//! SHA-256 fingerprint of method, path and body, and [`render`]: the store runs the
//! mutation and stores what `render` makes of its outcome in the same commit
//! (`payd_ports::wallet`), so a retry replays exactly the first response.
//!
//! While a request holds a key, another request with the same key is refused with
//! `409 idempotency_request_in_flight` ([`enter`], over the store's
//! [`InFlightKeys`]: across every process that shares the store); without that, the second
//! would wait behind the first in the store and replay it, which looks the same to a
//! patient client but hides a client bug (two concurrent senders of one key).

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use payd_ports::{
    Claim, Effect, HEADER_KEY_PREFIX, InFlightGuard, InFlightKeys, LedgerError, Refusal, Replied,
    StoredResponse,
};
use sha2::{Digest, Sha256};

use crate::dto::idempotency_key;
use crate::dto::wallet::{HoldViewBody, TransferViewBody, WithdrawalBody};
use crate::dto::webhooks::WebhookCreatedBody;
use crate::dto::{AccountBody, MerchantBody};
use crate::error::{ApiError, Code};
use crate::response::json_bytes;

/// The header carrying the key.
pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set on a response that replays an earlier identical request.
pub(crate) const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// Holds `key` while the request runs, or `idempotency_request_in_flight` if another
/// request (of any process sharing the store) holds it.
pub(crate) async fn enter(keys: &dyn InFlightKeys, key: &str) -> Result<InFlightGuard, ApiError> {
    keys.enter(key).await?.ok_or_else(|| {
        ApiError::new(
            Code::IdempotencyRequestInFlight,
            "a request with this idempotency key is still being processed; retry it later",
        )
    })
}

/// SHA-256 over method, path and the body's canonical JSON (object keys sorted, no
/// whitespace), hex: a retry that reformats its JSON is still the same request. A body that
/// is not JSON is hashed as it is (such a request is refused before it is claimed anyway).
pub(crate) fn fingerprint(method: &str, path: &str, body: &[u8]) -> String {
    let canonical = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| serde_json::to_vec(&value).ok());
    let mut hasher = Sha256::new();
    for part in [
        method.as_bytes(),
        b" ",
        path.as_bytes(),
        b"\n",
        canonical.as_deref().unwrap_or(body),
    ] {
        hasher.update(part);
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// How a request identifies itself.
pub(crate) struct Request<'a> {
    pub(crate) headers: &'a HeaderMap,
    pub(crate) method: &'static str,
    pub(crate) path: &'a str,
    pub(crate) body: &'a [u8],
    /// `kind:id` when the client chose the resource's id.
    pub(crate) resource_key: Option<String>,
    /// Whether the header is required (withdrawals, like deposits).
    pub(crate) key_required: bool,
}

impl<'a> Request<'a> {
    /// A request without a client-chosen resource id, whose key header is optional.
    pub(crate) fn new(
        method: &'static str,
        uri: &'a Uri,
        headers: &'a HeaderMap,
        body: &'a [u8],
    ) -> Request<'a> {
        Request {
            headers,
            method,
            path: uri.path(),
            body,
            resource_key: None,
            key_required: false,
        }
    }

    /// Also identified by the resource id the client chose (`kind:id`), if any.
    pub(crate) fn keyed_by(self, resource_key: Option<String>) -> Request<'a> {
        Request {
            resource_key,
            ..self
        }
    }

    /// The `Idempotency-Key` header is required.
    pub(crate) fn key_required(self) -> Request<'a> {
        Request {
            key_required: true,
            ..self
        }
    }
}

/// The claim of `request` (none when it has neither a header key nor a client id), with
/// its in-flight guard.
pub(crate) async fn claim(
    in_flight: &dyn InFlightKeys,
    retention_ms: u64,
    now_ms: i64,
    request: Request<'_>,
) -> Result<Option<(Claim, InFlightGuard)>, ApiError> {
    let header = request
        .headers
        .get(IDEMPOTENCY_KEY)
        .map(HeaderValue::as_bytes);
    let (key, expires_at_ms) = if header.is_some() || request.key_required {
        let key = idempotency_key(header)?;
        let retention = i64::try_from(retention_ms).unwrap_or(i64::MAX);
        (
            format!("{HEADER_KEY_PREFIX}{key}"),
            Some(now_ms.saturating_add(retention)),
        )
    } else if let Some(resource) = request.resource_key {
        (resource, None)
    } else {
        return Ok(None);
    };
    let guard = enter(in_flight, &key).await?;
    Ok(Some((
        Claim {
            key,
            fingerprint: fingerprint(request.method, request.path, request.body),
            expires_at_ms,
            render,
        },
        guard,
    )))
}

/// The response to a mutation's outcome: the one function that makes both a fresh answer
/// and the bytes stored for its replays.
pub(crate) fn render(outcome: &Result<Effect, Refusal>) -> StoredResponse {
    let encoded = match outcome {
        Ok(Effect::Account(view)) => encode(StatusCode::CREATED, &AccountBody::from(view)),
        // A hold step answers the hold: 201 when placed, 200 after capture or void.
        Ok(Effect::Hold(view)) => {
            let status = if view.hold.status == payd_domain::HoldStatus::Active {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            encode(status, &HoldViewBody::from(view))
        }
        Ok(Effect::Withdrawal(receipt)) => {
            encode(StatusCode::CREATED, &WithdrawalBody::from(receipt))
        }
        Ok(Effect::Transfer(view)) => encode(StatusCode::ACCEPTED, &TransferViewBody::from(view)),
        Ok(Effect::Webhook { view, secret }) => encode(
            StatusCode::CREATED,
            &WebhookCreatedBody::new(view, secret.clone()),
        ),
        Ok(Effect::Merchant {
            pattern,
            category,
            created,
        }) => encode(
            if *created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            &MerchantBody::new(pattern, *category),
        ),
        Ok(Effect::WebhookDeleted(_) | Effect::MerchantDeleted(_)) => Ok(StoredResponse {
            status: StatusCode::NO_CONTENT.as_u16(),
            body: Vec::new(),
        }),
        Err(refusal) => Err(ApiError::from(refusal.clone())),
    };
    let error = match encoded {
        Ok(response) => return response,
        Err(error) => error,
    };
    StoredResponse {
        status: error.status().as_u16(),
        body: error.body_bytes(),
    }
}

fn encode<T: serde::Serialize>(status: StatusCode, body: &T) -> Result<StoredResponse, ApiError> {
    serde_json::to_vec(body)
        .map(|body| StoredResponse {
            status: status.as_u16(),
            body,
        })
        .map_err(|error| ApiError::new(Code::Internal, format!("failed to encode: {error}")))
}

/// The response of a mutation's reply, and whether it is a replay. Errors the store did
/// not store (the store was unavailable, the key was reused) are plain [`ApiError`]s.
pub(crate) fn stored(
    replied: Result<Replied<Effect>, LedgerError>,
) -> Result<(StoredResponse, bool), ApiError> {
    match replied {
        Ok(Replied::Fresh(effect)) => Ok((render(&Ok(effect)), false)),
        Ok(Replied::Replayed(stored)) => Ok((stored, true)),
        // Not the mutation's answer: nothing was stored under the key.
        Err(
            error @ (LedgerError::Unavailable(_)
            | LedgerError::Refused(Refusal::IdempotencyKeyReused)),
        ) => Err(error.into()),
        // A refusal: answered exactly as it was stored.
        Err(LedgerError::Refused(refusal)) => Ok((render(&Err(refusal)), false)),
    }
}

/// The HTTP response of a stored response.
pub(crate) fn to_response(stored: StoredResponse, replayed: bool) -> Result<Response, ApiError> {
    let status = StatusCode::from_u16(stored.status)
        .map_err(|_| ApiError::new(Code::Internal, "stored response has an invalid status"))?;
    let mut response = if status == StatusCode::NO_CONTENT {
        status.into_response()
    } else {
        json_bytes(status, stored.body)
    };
    if replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_cover_method_path_and_body() {
        let base = fingerprint("POST", "/transfers", b"{}");
        assert_eq!(base.len(), 64);
        assert_eq!(base, fingerprint("POST", "/transfers", b"{}"));
        assert_eq!(
            fingerprint("POST", "/t", br#"{"b": 1, "a": "x"}"#),
            fingerprint("POST", "/t", br#"{"a":"x","b":1}"#),
            "formatting and key order do not matter"
        );
        assert_ne!(
            fingerprint("POST", "/t", br#"{"a":"x","b":1}"#),
            fingerprint("POST", "/t", br#"{"a":"x","b":2}"#)
        );
        assert_ne!(base, fingerprint("POST", "/holds/x/void", b"{}"));
        assert_ne!(base, fingerprint("PUT", "/transfers", b"{}"));
    }

    #[test]
    fn refusals_render_like_errors() {
        let stored = render(&Err(Refusal::InsufficientFunds));
        assert_eq!(stored.status, 422);
        let body: serde_json::Value = serde_json::from_slice(&stored.body).unwrap();
        assert_eq!(body["code"], "insufficient_funds");
    }
}
