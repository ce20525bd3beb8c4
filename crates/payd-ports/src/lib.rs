//! The ports of payd: traits for what the engine and the API need from the outside world,
//! so that the embedded SQLite store and a future PostgreSQL store are interchangeable.
//!
//! # Layout
//! - [`store`]: [`LedgerStore`], the ledger (accounts, balances, card transactions,
//!   deposits, merchant overrides, entries), with its request and view types and
//!   [`LedgerError`].
//! - [`gateway`]: [`PaymentStore`] (gateway payments, their queue and summary) and
//!   [`ProcessorClient`] (calls to the external processors).
//! - [`wallet`]: [`WalletStore`]: holds, withdrawals, transfers, stored idempotent
//!   responses ([`Claim`]) and the event outbox.
//! - [`webhooks`]: [`WebhookStore`] (registered webhooks, the delivery schedule and the
//!   attempt log) and [`WebhookSender`] (one signed HTTP POST).
//! - `testkit` (feature `testkit`): the conformance suite every [`LedgerStore`]
//!   implementation must pass; adapters instantiate it with
//!   [`ledger_store_conformance!`](crate::ledger_store_conformance).
//! - `payment_testkit` (feature `testkit`): the same for [`PaymentStore`], with
//!   [`payment_store_conformance!`](crate::payment_store_conformance).

pub mod gateway;
#[cfg(feature = "testkit")]
pub mod payment_testkit;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod wallet;
pub mod webhooks;

pub use gateway::{
    HealthError, HealthReport, Intake, Lookup, NewPayment, Payer, PaymentRecord, PaymentStore,
    PaymentSummary, ProcessorClient, ProcessorPayment, ProcessorTotals, Transition,
};
pub use store::{
    AccountView, DepositReceipt, DepositRequest, EntryPage, EntryQuery, EntryView, LedgerError,
    LedgerStore, NewAccount,
};
pub use wallet::{
    Claim, Effect, EventView, HEADER_KEY_PREFIX, HoldView, Mutation, NewHold, NewTransfer,
    NewWithdrawal, Render, Replied, StoredResponse, Sweep, TransferView, WalletStore,
    WithdrawalReceipt,
};
pub use webhooks::{
    Attempt, AttemptOutcome, AttemptResult, AttemptView, Delivery, DeliveryStatus, DeliveryView,
    Leased, NewWebhook, SendOutcome, WebhookRequest, WebhookSender, WebhookStore, WebhookView,
};
