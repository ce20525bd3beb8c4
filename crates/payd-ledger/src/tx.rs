//! [`LedgerTx`]: what a store backend gives the command layer inside one transaction, and
//! [`Failure`], how a transaction fails.
//!
//! The trait is deliberately low level: load a row (for update), stage a change, append a
//! journal entry or an event. Every rule (what may be debited, what a replay answers, what
//! an event says) is the command layer's, so that no backend can decide differently. A
//! backend adds SQL, locking and batching only:
//! - the embedded SQLite store applies each call at once on its single write connection,
//!   and its futures are always ready;
//! - a shared store (PostgreSQL) loads rows with row locks, keeps changes in memory and
//!   writes them in bulk when the transaction commits, so later calls in the same
//!   transaction must see earlier ones through its own staged state.
//!
//! Every call sees the effects of every earlier call in the same transaction. A
//! transaction's calls are applied all or none: the caller commits or rolls back.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;

use payd_domain::gateway::Processor;
use payd_domain::{
    AccountId, Amount, AuthorizationRequest, Balances, Category, Code, CorrelationId, Entry,
    EntryCause, EventKind, Fence, IdempotencyKey, MerchantPattern, PriorAuthorization, ResourceId,
    Rules, TransactionId,
};
use payd_ports::{
    Claim, DepositReceipt, EventPayload, HoldView, NewPayment, NewWebhook, PaymentRecord, Refusal,
    StoreFailure, StoredResponse, Sweep, TransferView, Transition, WebhookView, WithdrawalReceipt,
};

/// Why a transaction cannot complete: the store failed (I/O, connection, a lock conflict
/// the backend resolves by retrying), or the data contradicts an invariant (a bug, or a
/// hand-edited database). Either way the whole transaction is rolled back.
///
/// Like `anyhow::Error`, it is not itself an `Error`, so that `?` turns any error into one
/// while keeping it as the source (a backend can downcast it, e.g. to tell a deadlock,
/// which it retries, from a broken connection).
pub struct Failure {
    context: Cow<'static, str>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
    invariant: bool,
}

impl Failure {
    /// The stored data contradicts an invariant.
    pub fn invariant(what: impl Into<Cow<'static, str>>) -> Failure {
        Failure {
            context: what.into(),
            source: None,
            invariant: true,
        }
    }

    /// The store failed doing `context`.
    pub fn store(
        context: impl Into<Cow<'static, str>>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Failure {
        Failure {
            context: context.into(),
            source: Some(Box::new(source)),
            invariant: false,
        }
    }

    /// Whether the data contradicts an invariant (as opposed to a store error).
    pub fn is_invariant(&self) -> bool {
        self.invariant
    }

    /// The error that caused it, if any.
    pub fn source(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }

    /// The failure as the store answers it to every command of the transaction.
    pub fn into_store_failure(self) -> StoreFailure {
        match self.source {
            Some(source) => StoreFailure::boxed(self.context, source),
            None => StoreFailure::message(self.context),
        }
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for Failure {
    fn from(error: E) -> Failure {
        Failure::store("store", error)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Some(source) => write!(f, "{}: {source}", self.context),
            None => f.write_str(&self.context),
        }
    }
}

impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Failure({self})")
    }
}

/// A stored idempotent response and the fingerprint of the request that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredClaim {
    /// The first request's fingerprint.
    pub fingerprint: String,
    /// Its response.
    pub response: StoredResponse,
}

/// A hold as stored, with the fingerprint of the request that placed it when its id was
/// the client's (the row is then the claim: see `payd_ports::wallet`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredHold {
    /// The hold.
    pub view: HoldView,
    /// The placing request's fingerprint.
    pub fingerprint: Option<String>,
}

/// A transfer as stored, with its creation fingerprint (as for holds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredTransfer {
    /// The transfer.
    pub view: TransferView,
    /// The submitting request's fingerprint.
    pub fingerprint: Option<String>,
}

/// A pending transfer handed out for settling, with the store's key for its row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingTransfer {
    /// The store's row key (its acceptance order).
    pub seq: i64,
    /// The transfer.
    pub view: TransferView,
}

/// Whether one transfer may be settled now ([`LedgerTx::pending_transfer`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Turn {
    /// Not pending any more, or unknown.
    Gone,
    /// Pending, but after an earlier pending transfer of one of its accounts (or held by
    /// another settler).
    Waiting,
    /// Its turn: settle it.
    Ready(PendingTransfer),
}

/// One transaction of a store backend. See the module documentation.
///
/// Money is only ever changed through [`LedgerTx::set_balances`] with
/// [`LedgerTx::insert_entries`] for the same movement, by the command layer.
pub trait LedgerTx: Send {
    /// The transaction's time, ms since the epoch (one value for all its commands).
    fn now_ms(&self) -> i64;

    /// The rules card decisions use, as of this transaction (the merchant table may have
    /// been changed by another process since the last one).
    fn rules(&mut self) -> impl Future<Output = Result<&Rules, Failure>> + Send;

    // ---- accounts and the journal ----------------------------------------------------

    /// An account's balances as of this transaction, `None` if it does not exist. The
    /// account is then loaded (on a shared store: locked) for the rest of the
    /// transaction. The system account (`payd_domain::system_account`) always exists.
    fn balances(
        &mut self,
        id: &AccountId,
    ) -> impl Future<Output = Result<Option<Balances>, Failure>> + Send;

    /// New balances for an account loaded by [`LedgerTx::balances`] in this transaction.
    fn set_balances(&mut self, id: &AccountId, balances: Balances) -> Result<(), Failure>;

    /// Creates an account with these balances; it is loaded from then on. The caller has
    /// checked that the id is free in this transaction.
    fn insert_account(
        &mut self,
        id: &AccountId,
        balances: Balances,
    ) -> impl Future<Output = Result<(), Failure>> + Send;

    /// Journals `entries` (of accounts loaded in this transaction) under one cause and
    /// reference.
    fn insert_entries(
        &mut self,
        entries: &[Entry],
        cause: EntryCause,
        reference: &str,
    ) -> impl Future<Output = Result<(), Failure>> + Send;

    // ---- card transactions and deposits ----------------------------------------------

    /// The decided transaction with this client id, if any.
    fn prior_authorization(
        &mut self,
        id: &TransactionId,
    ) -> impl Future<Output = Result<Option<PriorAuthorization>, Failure>> + Send;

    /// Records a decided card transaction; returns its sequence number (unique, used as
    /// the journal reference of an id-less transaction).
    fn insert_transaction(
        &mut self,
        request: &AuthorizationRequest,
        code: Code,
        category: Option<Category>,
    ) -> impl Future<Output = Result<i64, Failure>> + Send;

    /// The deposit made under this key, if any (`replayed: false`, as it was first made).
    fn deposit(
        &mut self,
        key: &IdempotencyKey,
    ) -> impl Future<Output = Result<Option<DepositReceipt>, Failure>> + Send;

    /// Records a deposit's receipt under its key.
    fn insert_deposit(
        &mut self,
        receipt: &DepositReceipt,
    ) -> impl Future<Output = Result<(), Failure>> + Send;

    // ---- the merchant table ----------------------------------------------------------

    /// Adds or replaces a merchant override, in the table and in [`LedgerTx::rules`];
    /// whether the pattern was new.
    fn put_merchant(
        &mut self,
        pattern: &MerchantPattern,
        category: Category,
    ) -> impl Future<Output = Result<bool, Failure>> + Send;

    /// Removes a merchant override, from the table and the rules; whether it existed.
    fn delete_merchant(
        &mut self,
        pattern: &MerchantPattern,
    ) -> impl Future<Output = Result<bool, Failure>> + Send;

    // ---- stored idempotent responses -------------------------------------------------

    /// The response stored under a claim key, if any.
    fn stored_response(
        &mut self,
        key: &str,
    ) -> impl Future<Output = Result<Option<StoredClaim>, Failure>> + Send;

    /// Stores the response of `claim`'s request.
    fn store_response(
        &mut self,
        claim: &Claim,
        response: &StoredResponse,
    ) -> impl Future<Output = Result<(), Failure>> + Send;

    /// Forgets up to `limit` stored responses whose retention ended at `now_ms`.
    fn purge_idempotency(
        &mut self,
        now_ms: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Sweep, Failure>> + Send;

    // ---- holds and withdrawals -------------------------------------------------------

    /// A hold (on a shared store: locked for the transaction).
    fn hold(
        &mut self,
        id: &ResourceId,
    ) -> impl Future<Output = Result<Option<StoredHold>, Failure>> + Send;

    /// Stores a new, active hold.
    fn insert_hold(
        &mut self,
        view: &HoldView,
        fingerprint: Option<&str>,
    ) -> impl Future<Output = Result<(), Failure>> + Send;

    /// Stores a hold's step out of `active` (its status, captured amount, update time);
    /// fails if it was no longer active.
    fn update_hold(&mut self, view: &HoldView) -> impl Future<Output = Result<(), Failure>> + Send;

    /// Up to `limit` active holds whose expiry is at or before `at_ms`, soonest first (on
    /// a shared store, only those no other transaction is expiring now).
    fn due_holds(
        &mut self,
        at_ms: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<HoldView>, Failure>> + Send;

    /// The soonest expiry among active holds, after this transaction's changes.
    fn next_hold_expiry(&mut self) -> impl Future<Output = Result<Option<i64>, Failure>> + Send;

    /// Records a withdrawal (ids are generated: a clash is a failure).
    fn insert_withdrawal(
        &mut self,
        receipt: &WithdrawalReceipt,
    ) -> impl Future<Output = Result<(), Failure>> + Send;

    // ---- transfers -------------------------------------------------------------------

    /// A transfer by id.
    fn transfer(
        &mut self,
        id: &ResourceId,
    ) -> impl Future<Output = Result<Option<StoredTransfer>, Failure>> + Send;

    /// Stores a new pending transfer; `false` (and nothing stored) if its id is taken.
    fn insert_transfer(
        &mut self,
        view: &TransferView,
        fingerprint: Option<&str>,
    ) -> impl Future<Output = Result<bool, Failure>> + Send;

    /// Up to `limit` pending transfers this transaction may settle now, in acceptance
    /// order. On a shared store, only transfers no other settler holds, and none that an
    /// earlier pending transfer of one of its accounts precedes: so transfers settle in
    /// acceptance order per account whatever the number of settlers.
    fn pending_transfers(
        &mut self,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<PendingTransfer>, Failure>> + Send;

    /// The transfer `id` if this transaction may settle it now: pending, held by no other
    /// settler, and the oldest pending transfer of both its accounts (which are then
    /// loaded, on a shared store locked).
    fn pending_transfer(
        &mut self,
        id: &ResourceId,
    ) -> impl Future<Output = Result<Turn, Failure>> + Send;

    /// The largest fencing token a fenced write recorded for each of `accounts` (absent:
    /// none yet). On a shared store the accounts are locked first, so that no other
    /// fenced write on them runs between this read and [`LedgerTx::record_fences`].
    fn fence_tokens(
        &mut self,
        accounts: &[AccountId],
    ) -> impl Future<Output = Result<HashMap<AccountId, i64>, Failure>> + Send;

    /// Records the tokens of a fenced write (each the largest of its account so far: the
    /// caller checked them against [`LedgerTx::fence_tokens`]).
    fn record_fences(
        &mut self,
        fences: &[Fence],
    ) -> impl Future<Output = Result<(), Failure>> + Send;

    /// Stores a pending transfer's outcome (`view.status` is completed or rejected).
    fn update_transfer(
        &mut self,
        seq: i64,
        view: &TransferView,
    ) -> impl Future<Output = Result<(), Failure>> + Send;

    // ---- the outbox ------------------------------------------------------------------

    /// Appends an event, committed with this transaction; events get their sequence in
    /// commit order.
    fn append_event(
        &mut self,
        kind: EventKind,
        subject: &str,
        payload: &EventPayload,
    ) -> impl Future<Output = Result<(), Failure>> + Send;

    // ---- gateway payments ------------------------------------------------------------

    /// Stores and queues a new payment (with its pay-in's hold); `false` (and nothing
    /// stored) if a payment with its id exists.
    fn insert_payment(
        &mut self,
        payment: &NewPayment,
        hold: Option<&ResourceId>,
    ) -> impl Future<Output = Result<bool, Failure>> + Send;

    /// A payment (on a shared store: locked for the transaction).
    fn payment(
        &mut self,
        id: &CorrelationId,
    ) -> impl Future<Output = Result<Option<PaymentRecord>, Failure>> + Send;

    /// Stores `change` of a payment read as `before` in this transaction (its version
    /// bumped, an attempt counted if asked, the lease owner recorded for `processing`);
    /// fails if the payment is no longer at `before.version`.
    fn update_payment(
        &mut self,
        before: &PaymentRecord,
        change: &Transition,
    ) -> impl Future<Output = Result<(), Failure>> + Send;

    /// Adds a booked payment to the summary's per-second totals.
    fn add_booked(
        &mut self,
        processor: Processor,
        requested_at_ms: i64,
        amount: Amount,
    ) -> impl Future<Output = Result<(), Failure>> + Send;

    /// Deletes every plain payment and every booked total (pay-ins are kept: their holds
    /// and journal entries refer to them); how many payments were deleted.
    fn purge_payments(&mut self) -> impl Future<Output = Result<u64, Failure>> + Send;

    // ---- webhooks --------------------------------------------------------------------

    /// Registers a webhook that receives the events committed after this transaction.
    fn create_webhook(
        &mut self,
        webhook: &NewWebhook,
    ) -> impl Future<Output = Result<Result<WebhookView, Refusal>, Failure>> + Send;

    /// Deletes a live webhook and cancels its pending deliveries; whether it was live.
    fn delete_webhook(
        &mut self,
        id: &ResourceId,
    ) -> impl Future<Output = Result<bool, Failure>> + Send;
}
