//! The ports of payd: traits for what the engine and the API need from the outside world,
//! so that the embedded SQLite store and the PostgreSQL store are interchangeable.
//!
//! # Layout
//! - [`error`]: [`LedgerError`], which is a [`Refusal`] (decided, client-visible, changed
//!   nothing) or a [`StoreFailure`] (could not run; keeps its cause).
//! - [`store`]: [`LedgerStore`], the ledger (card transactions, deposits, balances,
//!   entries, the merchant table), with its request and view types.
//! - [`gateway`]: [`PaymentStore`] (gateway payments, their queue and summary) and
//!   [`ProcessorClient`] (calls to the external processors).
//! - [`wallet`]: [`WalletStore`]: every other mutation ([`Mutation`]: accounts, holds,
//!   withdrawals, transfers, merchants, webhooks) with stored idempotent responses
//!   ([`Claim`]), the background sweeps and the event outbox.
//! - [`webhooks`]: [`WebhookStore`] (registered webhooks, the delivery schedule and the
//!   attempt log) and [`WebhookSender`] (one signed HTTP POST).
//! - [`events`]: the typed payloads of outbox events ([`EventPayload`]) and [`Money`], the
//!   one JSON form of an amount.
//! - [`health`]: [`HealthBoard`], the processors' health shared by the processes of one
//!   deployment (one poller per processor for all of them).
//! - [`decisions`]: [`DecisionCache`], recent card decisions kept beside the store, so
//!   that replays skip the database (the store stays the guard).
//! - [`outbox`]: [`OutboxStore`], the transactional outbox, and [`Publisher`], the work
//!   transport (RabbitMQ) its relay publishes to with confirms.
//! - [`in_flight`]: [`InFlightKeys`], the idempotency keys of requests being processed,
//!   held across processes.
//! - [`locks`]: [`AccountLocks`], per-account locks across processes (Redis), each grant
//!   carrying fencing tokens the store checks.
//! - [`clock`]: [`Clock`], the one source of time for the engine, the API and the stores.
//! - [`Store`]: the four store ports together, what a backend provides.
//! - `testkit` (feature `testkit`): the conformance suites every [`Store`] must pass,
//!   instantiated with [`store_conformance!`](crate::store_conformance) (one test per
//!   check of the four suites: `ledger`, `payments`, `wallet`, `webhooks`).

pub mod clock;
pub mod decisions;
pub mod error;
pub mod events;
pub mod gateway;
pub mod health;
pub mod in_flight;
pub mod locks;
pub mod outbox;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod wallet;
pub mod webhooks;

pub use clock::{Clock, ManualClock, TokioClock};
pub use decisions::DecisionCache;
pub use error::{LedgerError, Refusal, StoreFailure};
pub use events::{EventPayload, HoldEvent, Money, PaymentEvent, TransferEvent};
pub use gateway::{
    HealthError, HealthReport, Intake, Lookup, NewPayment, Payer, PaymentRecord, PaymentStore,
    PaymentSummary, ProcessorClient, ProcessorPayment, ProcessorTotals, Transition,
};
pub use health::{BreakerBus, HealthBoard, HealthReading, SoleBoard};
pub use in_flight::{InFlightGuard, InFlightKeys, LocalInFlight};
pub use locks::{AccountLocks, Grant, GrantOwners, LockError};
pub use outbox::{
    OutboxBacklog, OutboxMessage, OutboxStore, PAYMENTS_QUEUE, PublishError, Publisher, RelayError,
    SETTLE_QUEUE, TRANSFERS_QUEUE,
};
pub use store::{
    AccountView, DepositReceipt, DepositRequest, EntryPage, EntryQuery, EntryView, LedgerStore,
    NewAccount,
};
pub use wallet::{
    Claim, Effect, EventView, FencedSettle, HEADER_KEY_PREFIX, HoldView, Mutation, NewHold,
    NewTransfer, NewWithdrawal, Render, Replied, StoredResponse, Sweep, TransferView, WalletStore,
    WithdrawalReceipt,
};
pub use webhooks::{
    Attempt, AttemptOutcome, AttemptResult, AttemptView, Delivery, DeliveryStatus, DeliveryView,
    Leased, NewWebhook, SendOutcome, WebhookRequest, WebhookSender, WebhookStore, WebhookView,
};

/// Everything a store backend provides: the ledger, the gateway's payments, the wallet and
/// the webhooks, over one consistency domain (one database).
pub trait Store: LedgerStore + PaymentStore + WalletStore + WebhookStore {}

impl<T: LedgerStore + PaymentStore + WalletStore + WebhookStore> Store for T {}
