//! `POST /transactions` (and its alias `POST /authorize`): the card authorization.
//!
//! The contract is "always HTTP 200 with a code": whatever goes wrong, from a truncated body
//! to an unavailable store, the answer is `{"code":"07"}`. So this handler classifies errors
//! with the same [`ApiError`] table as the others, logs them, and folds them into `07`.
//!
//! With a decision cache (Redis), a replayed id with the same body is answered from it,
//! without the store; the store records every decision first and answers everything else.
//! With an account lock (Redis, [`crate::AccountLock`]), the store decides under it.

use std::sync::{Arc, LazyLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::Response;
use payd_domain::Code as CardCode;
use payd_domain::{AuthorizationRequest, PriorAuthorization, TransactionId};
use payd_ports::{DecisionCache, LedgerError};

use super::{Shared, json_bytes};
use crate::dto::{AuthorizationAnswer, AuthorizationBody, parse_authorization};
use crate::extract::body_error;
use crate::metrics::record_authorization;

/// The three possible bodies, encoded once: this is the hottest route.
static ANSWERS: LazyLock<[Bytes; 3]> = LazyLock::new(|| {
    [
        CardCode::Approved,
        CardCode::InsufficientFunds,
        CardCode::Rejected,
    ]
    .map(|code| {
        let answer = AuthorizationAnswer { code: code.into() };
        // Encoding a one-field struct of a unit enum cannot fail; the fallback is the same
        // text written by hand.
        serde_json::to_vec(&answer).map_or_else(
            |_| Bytes::from(format!(r#"{{"code":"{}"}}"#, code.as_str())),
            Bytes::from,
        )
    })
});

fn answer(code: CardCode) -> Response {
    let index = match code {
        CardCode::Approved => 0,
        CardCode::InsufficientFunds => 1,
        CardCode::Rejected => 2,
    };
    json_bytes(StatusCode::OK, ANSWERS[index].clone())
}

/// Authorizes a card transaction.
///
/// L1: the MCC picks the category (5411/5412 FOOD, 5811/5812 MEAL, else CASH). L2: if it
/// cannot pay the whole amount, CASH pays it whole if it can; never a split, and CASH never
/// borrows. L3: a merchant override beats the MCC. With an `id`, a repeat answers as the first
/// time. The content type is not checked: a non-JSON body is simply `07`.
#[utoipa::path(
    post,
    path = "/transactions",
    tag = "card",
    operation_id = "authorize",
    request_body(content = AuthorizationBody<'_>, content_type = "application/json"),
    responses(
        (status = 200, description = "Always 200; the decision is in `code`.", body = AuthorizationAnswer),
    ),
)]
pub(crate) async fn transactions(
    State(ctx): State<Shared>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    answer(decide(&ctx, body).await)
}

/// Alias of `POST /transactions`, same contract.
#[utoipa::path(
    post,
    path = "/authorize",
    tag = "card",
    operation_id = "authorize_alias",
    request_body(content = AuthorizationBody<'_>, content_type = "application/json"),
    responses(
        (status = 200, description = "Always 200; the decision is in `code`.", body = AuthorizationAnswer),
    ),
)]
pub(crate) async fn authorize(
    State(ctx): State<Shared>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    answer(decide(&ctx, body).await)
}

async fn decide(ctx: &Shared, body: Result<Bytes, BytesRejection>) -> CardCode {
    let parsed = body
        .map_err(body_error)
        .and_then(|bytes| parse_authorization(&bytes));
    let code = match parsed {
        // A client mistake: not worth more than a debug line at this request rate.
        Err(error) => {
            tracing::debug!(%error, "Card transaction refused.");
            CardCode::Rejected
        }
        Ok(request) => match replayed_from_cache(ctx, &request).await {
            Some(code) => code,
            None => {
                let remember = remembered(ctx, &request);
                match decided(ctx, request).await {
                    Ok(code) => {
                        if let Some((cache, id, prior)) = remember {
                            remember_decision(cache, id, prior, code);
                        }
                        code
                    }
                    // Only `Unavailable` is possible here: not the client's fault, so it is
                    // logged.
                    Err(error) => {
                        tracing::error!(%error, "Card transaction not decided: answering 07.");
                        CardCode::Rejected
                    }
                }
            }
        },
    };
    record_authorization(code.as_str());
    code
}

/// The store's decision; with an account lock, under the account's lock (a decision the
/// store refused because the grant was stale is taken once more under a new grant), and by
/// the store alone when no lock can be had.
async fn decided(ctx: &Shared, request: AuthorizationRequest) -> Result<CardCode, LedgerError> {
    if let Some(lock) = &ctx.account_lock {
        for _ in 0..2 {
            let Some(grant) = lock.acquire(&request.account).await else {
                break;
            };
            let Some(fence) = grant.fences.first().cloned() else {
                break;
            };
            let decided = ctx.store.authorize_fenced(request.clone(), fence).await;
            lock.release(&grant).await;
            match decided? {
                Some(code) => return Ok(code),
                None => lock.stale(),
            }
        }
    }
    ctx.store.authorize(request).await
}

/// The answer to a replay of a transaction id the cache remembers with the same body.
/// Anything else (no id, not cached, another body: an id conflict) is the store's to answer.
async fn replayed_from_cache(ctx: &Shared, request: &AuthorizationRequest) -> Option<CardCode> {
    let (cache, id) = ctx.decisions.as_ref().zip(request.id.as_ref())?;
    let prior = cache.get(id).await?;
    prior.same_body(request).then_some(prior.code)
}

/// What to remember of `request` once the store has decided it, if there is a cache.
fn remembered(
    ctx: &Shared,
    request: &AuthorizationRequest,
) -> Option<(Arc<dyn DecisionCache>, TransactionId, PriorAuthorization)> {
    let (cache, id) = ctx.decisions.as_ref().zip(request.id.as_ref())?;
    let prior = PriorAuthorization {
        account: request.account.clone(),
        amount: request.amount,
        mcc: request.mcc,
        merchant: request.merchant.clone(),
        // Set from the store's answer.
        code: CardCode::Rejected,
    };
    Some((cache.clone(), id.clone(), prior))
}

/// Caches a committed decision, off the request's path. Only `00` and `51` are recorded
/// under their id by the store; a `07` (unknown account, id conflict, store failure) is
/// not, so it is not cached either.
fn remember_decision(
    cache: Arc<dyn DecisionCache>,
    id: TransactionId,
    mut prior: PriorAuthorization,
    code: CardCode,
) {
    if code == CardCode::Rejected {
        return;
    }
    prior.code = code;
    tokio::spawn(async move { cache.put(&id, &prior).await });
}
