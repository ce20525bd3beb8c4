//! Extractors whose rejections are [`ApiError`]s, so that no axum default rejection text
//! (plain-text bodies, their own status choices) ever reaches a client.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, Code};

/// Largest request body, in bytes. Every payload of this API is well under 1 KiB; 64 KiB
/// leaves room for large merchant tables without letting a client make us buffer megabytes.
pub const BODY_LIMIT: usize = 64 * 1024;

/// A JSON request body as raw bytes, after the content-type check. Handlers parse it with
/// the functions of [`crate::dto`], which report field-level errors through the error table.
#[derive(Debug)]
pub(crate) struct JsonBytes(pub(crate) Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        check_content_type(req.headers())?;
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        Ok(JsonBytes(bytes))
    }
}

/// Maps a failure to buffer the body: over the limit is 413, anything else (the client
/// hung up, a broken chunked encoding) means we have no JSON to read.
pub(crate) fn body_error(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            Code::PayloadTooLarge,
            format!("the request body is larger than {BODY_LIMIT} bytes"),
        )
    } else {
        ApiError::new(Code::MalformedJson, "failed to read the request body")
    }
}

/// A missing `Content-Type` is accepted (curl and many load tools send none); a declared
/// non-JSON type is a client mistake worth telling apart from bad JSON.
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .to_str()
        .ok()
        .and_then(|text| text.split(';').next())
        .map(|mime| mime.trim().to_ascii_lowercase());
    match essence {
        Some(mime) if mime == "application/json" || mime.ends_with("+json") => Ok(()),
        _ => Err(ApiError::new(
            Code::UnsupportedMediaType,
            "the request body must be JSON (Content-Type: application/json)",
        )),
    }
}

/// One percent-decoded path parameter.
#[derive(Debug)]
pub(crate) struct PathParam(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathParam(value)),
            Err(rejection) => Err(ApiError::new(Code::InvalidPath, rejection.body_text())),
        }
    }
}

/// A query string deserialized into `T`.
#[derive(Debug)]
pub(crate) struct QueryParams<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        match Query::<T>::try_from_uri(&parts.uri) {
            Ok(Query(value)) => Ok(QueryParams(value)),
            Err(rejection) => Err(ApiError::new(Code::InvalidQuery, rejection.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn with_type(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn content_types() {
        assert!(check_content_type(&HeaderMap::new()).is_ok());
        assert!(check_content_type(&with_type("application/json")).is_ok());
        assert!(check_content_type(&with_type("Application/JSON; charset=utf-8")).is_ok());
        assert!(check_content_type(&with_type("application/problem+json")).is_ok());
        let error = check_content_type(&with_type("text/plain")).unwrap_err();
        assert_eq!(error.code, Code::UnsupportedMediaType);
        assert!(check_content_type(&with_type("application/x-www-form-urlencoded")).is_err());
    }
}
