//! payd's domain core: pure, synchronous rules with no IO, no clock and no randomness.
//!
//! # Layout
//! - [`amount`]: [`Amount`], money in integer cents with checked arithmetic and exact parsing
//!   from decimal text (`19.9`, `19.90`, `1.99e1`; never through `f64`).
//! - [`ids`]: validated identifiers ([`AccountId`], [`TransactionId`], [`IdempotencyKey`],
//!   [`CorrelationId`], [`Mcc`]).
//! - [`balance`]: the three [`Category`] balances of an account, each `available` + `held`.
//! - [`rules`]: which category pays: the MCC map and the merchant override table.
//! - [`authorize`]: the L1–L3 card decision and its idempotent replay semantics.
//! - [`ledger`]: double-entry [`Entry`] pairs for every movement, balanced against a system
//!   account so that money is provably conserved.
//! - [`hold`]: holds (place → capture / void / expire) as pure steps returning entries.
//! - [`transfer`]: transfers between accounts (validated at intake, settled later in
//!   order) and withdrawals.
//! - [`fence`]: fencing tokens, which make a distributed lock's expiry safe: a write
//!   carrying an older token than one already written is refused.
//! - [`event`]: the kinds of state-change events written to the outbox.
//! - [`timestamp`]: instants as ms since the epoch and their ISO-8601 wire form.
//! - [`webhook`]: webhook deliveries: the HMAC-SHA256 signature (sign and verify) and the
//!   retry schedule.
//! - [`gateway`]: the payment gateway's rules: a payment's lifecycle across processors
//!   (never booked at two), the circuit breaker, the routing policy, backoff.
//!
//! Callers (the store adapters) load state, call these functions, and persist what they
//! return, all inside one serialized step per account.
#![deny(clippy::float_arithmetic)]

pub mod amount;
pub mod authorize;
pub mod balance;
pub mod event;
pub mod fence;
pub mod gateway;
pub mod hold;
pub mod ids;
pub mod ledger;
pub mod rules;
pub mod timestamp;
pub mod transfer;
pub mod webhook;

pub use amount::{Amount, AmountError};
pub use authorize::{AuthorizationRequest, Code, Decision, PriorAuthorization, decide};
pub use balance::{Balances, Category, CategoryBalance, MovementError};
pub use event::EventKind;
pub use fence::Fence;
pub use hold::{Hold, HoldError, HoldStatus, HoldStep};
pub use ids::{AccountId, CorrelationId, IdError, IdempotencyKey, Mcc, ResourceId, TransactionId};
pub use ledger::{Bucket, Entry, EntryCause, SYSTEM_ACCOUNT, movement, pair, system_account};
pub use rules::{MccMap, MerchantPattern, MerchantRules, Rules, merchant_name};
pub use transfer::{RejectReason, Transfer, TransferInvalid, TransferStatus};
