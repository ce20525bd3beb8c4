//! A client for one simulator router.

use std::collections::HashMap;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use payd_processor_sim::{Role, SimConfig, router};
use serde_json::value::RawValue;
use tower::ServiceExt;
use uuid::Uuid;

pub(crate) const TOKEN: &str = "123";
pub(crate) const AT: &str = "2025-07-15T12:34:56.000Z";

/// One answer: status, headers, body text.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Answer {
    /// The body's top-level fields as raw JSON text, so numbers are compared digit by digit.
    pub(crate) fn raw(&self) -> HashMap<String, String> {
        let fields: HashMap<String, Box<RawValue>> = serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("not a JSON object ({error}): {}", self.body));
        fields
            .into_iter()
            .map(|(key, value)| (key, value.get().to_owned()))
            .collect()
    }

    /// One raw field.
    pub(crate) fn field(&self, name: &str) -> String {
        self.raw()
            .remove(name)
            .unwrap_or_else(|| panic!("no `{name}` in {}", self.body))
    }

    /// The error code of a JSON error body.
    pub(crate) fn code(&self) -> String {
        let code = self.field("code");
        assert!(self.raw().contains_key("message"), "{}", self.body);
        serde_json::from_str(&code).unwrap()
    }

    pub(crate) fn is_json(&self) -> bool {
        self.headers
            .get("content-type")
            .is_some_and(|v| v == "application/json")
    }
}

/// A fresh simulator.
#[derive(Clone)]
pub(crate) struct Sim {
    app: Router,
}

pub(crate) fn config() -> SimConfig {
    SimConfig::for_role(Role::Default)
}

impl Sim {
    pub(crate) fn new(config: &SimConfig) -> Sim {
        Sim {
            app: router(config),
        }
    }

    pub(crate) fn default_role() -> Sim {
        Sim::new(&config())
    }

    pub(crate) async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        Answer {
            status,
            headers,
            body: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }

    pub(crate) async fn request(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> Answer {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            builder = builder.header("X-Rinha-Token", token);
        }
        let body = match body {
            Some(text) => {
                builder = builder.header("content-type", "application/json");
                Body::from(text)
            }
            None => Body::empty(),
        };
        self.send(builder.body(body).unwrap()).await
    }

    /// `POST /payments` with a raw body.
    pub(crate) async fn post_raw(&self, body: impl Into<String>) -> Answer {
        self.request(Method::POST, "/payments", None, Some(body.into()))
            .await
    }

    /// `POST /payments` with `amount` as raw JSON text.
    pub(crate) async fn pay(&self, id: Uuid, amount: &str, requested_at: &str) -> Answer {
        self.post_raw(payment_body(id, amount, requested_at)).await
    }

    pub(crate) async fn get_payment(&self, id: Uuid) -> Answer {
        self.request(Method::GET, &format!("/payments/{id}"), None, None)
            .await
    }

    pub(crate) async fn health(&self) -> Answer {
        self.request(Method::GET, "/payments/service-health", None, None)
            .await
    }

    pub(crate) async fn admin_put(&self, what: &str, body: &str) -> Answer {
        let uri = format!("/admin/configurations/{what}");
        self.request(Method::PUT, &uri, Some(TOKEN), Some(body.to_owned()))
            .await
    }

    pub(crate) async fn set_delay_ms(&self, delay_ms: u64) {
        let answer = self
            .admin_put("delay", &format!(r#"{{"delay":{delay_ms}}}"#))
            .await;
        assert!(answer.status.is_success(), "{answer:?}");
    }

    pub(crate) async fn set_failing(&self, failing: bool) {
        let answer = self
            .admin_put("failure", &format!(r#"{{"failure":{failing}}}"#))
            .await;
        assert!(answer.status.is_success(), "{answer:?}");
    }

    /// `GET /admin/payments-summary` with a raw query string (`""` for none).
    pub(crate) async fn summary(&self, query: &str) -> Answer {
        let uri = format!("/admin/payments-summary{query}");
        self.request(Method::GET, &uri, Some(TOKEN), None).await
    }

    /// `totalRequests` of the unbounded summary.
    pub(crate) async fn booked_count(&self) -> u64 {
        let answer = self.summary("").await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        answer.field("totalRequests").parse().unwrap()
    }
}

pub(crate) fn payment_body(id: Uuid, amount: &str, requested_at: &str) -> String {
    format!(r#"{{"correlationId":"{id}","amount":{amount},"requestedAt":"{requested_at}"}}"#)
}

/// Lets spawned tasks run up to their next real wait (on a current-thread runtime).
pub(crate) async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}
