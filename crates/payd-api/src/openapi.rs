//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` attributes and the
//! wire types' `ToSchema` derives, so it cannot drift from the code. A committed copy
//! (`openapi.json` at the repository root) is compared against it by a test.

use utoipa::OpenApi;

use crate::routes::{accounts, card, merchants, ops, payments, wallet, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "payd",
        description = "payd payment engine: card authorization, accounts, deposits and withdrawals, \
            holds, transfers, merchant overrides, a payment gateway that forwards payments (and pay-ins \
            from a wallet) to a default or a fallback processor, and an event outbox. \
            Mutations are idempotent by `Idempotency-Key` (or the client's resource id): a retry with the \
            same request replays the first response with `Idempotent-Replayed: true`. \
            Money is a JSON number with at most two decimals (exact, never rounded); a decimal string is \
            accepted too. Every error is `{\"code\", \"message\"}` with a stable snake_case `code`, \
            except on the card route, which always answers HTTP 200 with `00`, `51` or `07`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        card::transactions,
        card::authorize,
        accounts::create,
        accounts::get,
        accounts::deposit,
        accounts::entries,
        wallet::withdraw,
        wallet::place_hold,
        wallet::get_hold,
        wallet::capture_hold,
        wallet::void_hold,
        wallet::submit_transfer,
        wallet::get_transfer,
        wallet::events,
        webhooks::create,
        webhooks::list,
        webhooks::get,
        webhooks::delete,
        webhooks::deliveries,
        merchants::list,
        merchants::put,
        merchants::delete,
        payments::accept,
        payments::get,
        payments::summary,
        payments::purge,
        ops::health,
        ops::ready,
        ops::metrics,
        ops::openapi,
    ),
    tags(
        (name = "card", description = "Card authorization (levels L1–L4)."),
        (name = "accounts", description = "Accounts, balances, deposits and ledger entries."),
        (name = "holds", description = "Holds: reserve, capture, void; they expire."),
        (name = "transfers", description = "Transfers between accounts, settled asynchronously in order."),
        (name = "events", description = "The outbox of state changes (also delivered to webhooks)."),
        (name = "webhooks", description = "Endpoints that receive every event, signed (HMAC-SHA256), retried for at least 24 h."),
        (name = "merchants", description = "Merchant overrides of the MCC (L3)."),
        (name = "payments", description = "The payment gateway: accept, forward to processors, summarize."),
        (name = "ops", description = "Probes, metrics and this document."),
    ),
)]
struct ApiDoc;

/// The OpenAPI document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
