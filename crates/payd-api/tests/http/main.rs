//! HTTP tests of payd-api: the real router (`tower::ServiceExt::oneshot`, no socket) over a
//! real SQLite store in a temporary directory.
//!
//! - `card`: `POST /transactions`, levels L1–L3, validation, idempotency.
//! - `concurrency`: L4, hundreds of simultaneous transactions.
//! - `accounts`: accounts, deposits, entries.
//! - `merchants`: the override table.
//! - `payments`: the gateway's intake, status, summary and purge.
//! - `webhooks`: registration, listing, deletion and the attempt log of webhooks.
//! - `ops`: probes, metrics, OpenAPI (and its committed snapshot), 404/405, store failures.

// Test helpers fail loudly by design: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod accounts;
mod card;
mod concurrency;
mod merchants;
mod ops;
mod payments;
mod support;
mod wallet;
mod webhooks;
