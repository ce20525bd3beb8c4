//! The ledger store port.
//!
//! An implementation applies each command *atomically and serialized per account*: it loads
//! the state the command needs, asks `payd-domain` for the decision (through the command
//! layer, `payd-ledger`, which is the same for every store), and persists the decision's
//! effects (balances, ledger entries, idempotency records) in one durable commit before it
//! answers. "Durable before acknowledged": an `Ok` means the effect survives a process crash
//! (and, with the store's strongest durability, power loss).

use async_trait::async_trait;
use payd_domain::{
    AccountId, Amount, AuthorizationRequest, Balances, Bucket, Category, Code, EntryCause, Fence,
    IdempotencyKey, MerchantPattern,
};

use crate::LedgerError;

/// `POST /accounts`: a new account with initial available balances.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAccount {
    /// The account id (the API generates one when the client gives none).
    pub id: AccountId,
    /// Initial available balances (non-negative); held is zero.
    pub balances: Balances,
}

/// An account as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountView {
    /// The account id.
    pub id: AccountId,
    /// Current balances.
    pub balances: Balances,
}

/// `POST /accounts/{id}/deposits`: money enters from the system account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepositRequest {
    /// The idempotency key; a repeat with the same body replays the first receipt.
    pub key: IdempotencyKey,
    /// The account credited.
    pub account: AccountId,
    /// The category credited.
    pub category: Category,
    /// Strictly positive amount.
    pub amount: Amount,
}

/// The result of a deposit; a replay returns the first one unchanged, with `replayed` set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepositReceipt {
    /// The idempotency key of the deposit.
    pub key: IdempotencyKey,
    /// The account credited.
    pub account: AccountId,
    /// The category credited.
    pub category: Category,
    /// The amount credited.
    pub amount: Amount,
    /// The category's available balance right after this deposit.
    pub available_after: Amount,
    /// When the deposit was committed, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// `true` when this answer replays an earlier identical request.
    pub replayed: bool,
}

/// One ledger entry as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryView {
    /// Position in the ledger: strictly increasing with commit order, usable as a cursor.
    pub sequence: i64,
    /// The account whose balance changed.
    pub account: AccountId,
    /// The category balance that changed.
    pub category: Category,
    /// Which part of it: available, or held by holds.
    pub bucket: Bucket,
    /// Signed change, in cents (negative = money left the account).
    pub amount: Amount,
    /// Why the money moved.
    pub cause: EntryCause,
    /// The id of the cause: a transaction's id, a deposit's key, or the account id.
    pub reference: String,
    /// Commit time, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// Which entries to read: newest first, strictly before `before_sequence` when given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryQuery {
    /// Cursor: only entries with a smaller sequence.
    pub before_sequence: Option<i64>,
    /// Page size, 1..=1000 (implementations clamp).
    pub limit: u32,
}

/// One page of entries and the cursor for the next (older) page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryPage {
    /// Newest first.
    pub entries: Vec<EntryView>,
    /// Pass as `before_sequence` to read on; `None` when this is the last page.
    pub next_before_sequence: Option<i64>,
}

impl EntryPage {
    /// The page of `limit` entries from `read`, which holds up to `limit + 1` (newest first):
    /// the one past the page only says that another page follows.
    pub fn from_overfetch(mut read: Vec<EntryView>, limit: usize) -> EntryPage {
        let more = read.len() > limit;
        read.truncate(limit);
        let next_before_sequence = if more {
            read.last().map(|e| e.sequence)
        } else {
            None
        };
        EntryPage {
            entries: read,
            next_before_sequence,
        }
    }
}

/// The ledger: the system of record for balances, card transactions and deposits.
///
/// Every mutating method is atomic (all of its effects or none), serialized with every other
/// command on the same account (in every process sharing the store), and durable before it
/// returns `Ok`. Reads see every acknowledged write. Accounts are opened, and the merchant
/// table changed, through [`WalletStore::execute`](crate::WalletStore::execute).
#[async_trait]
pub trait LedgerStore: Send + Sync + 'static {
    /// Decides and records one card transaction (see `payd_domain::decide`). Returns the
    /// answer code; `Err` only when the store is unavailable (the API answers `07`).
    /// Approved and declined transactions with an id are remembered forever, so the id
    /// replays the same code after any restart.
    async fn authorize(&self, request: AuthorizationRequest) -> Result<Code, LedgerError>;

    /// [`LedgerStore::authorize`] for the holder of the account's lock
    /// (`--account-lock redis`): decided only if `fence`, the grant's token for
    /// `request.account`, is current (it is then recorded); `Ok(None)`, with nothing done,
    /// if a later grant's decision reached the store first.
    async fn authorize_fenced(
        &self,
        request: AuthorizationRequest,
        fence: Fence,
    ) -> Result<Option<Code>, LedgerError>;

    /// Credits a deposit, idempotently by key: same key and body → the first receipt with
    /// `replayed = true`; same key, other body → [`Refusal::IdempotencyKeyReused`].
    ///
    /// [`Refusal::IdempotencyKeyReused`]: crate::Refusal::IdempotencyKeyReused
    async fn deposit(&self, deposit: DepositRequest) -> Result<DepositReceipt, LedgerError>;

    /// Reads an account; `Ok(None)` if it does not exist.
    async fn account(&self, id: &AccountId) -> Result<Option<AccountView>, LedgerError>;

    /// Reads an account's entries, newest first; [`Refusal::AccountNotFound`] for an
    /// unknown account.
    ///
    /// [`Refusal::AccountNotFound`]: crate::Refusal::AccountNotFound
    async fn entries(&self, id: &AccountId, query: EntryQuery) -> Result<EntryPage, LedgerError>;

    /// The merchant override table, sorted by pattern text.
    async fn merchants(&self) -> Result<Vec<(MerchantPattern, Category)>, LedgerError>;

    /// Whether the store can take commands (open, writer alive, not shutting down).
    fn is_ready(&self) -> bool;
}
