//! [`PgTx`]: the command layer's transaction ([`LedgerTx`]) on PostgreSQL, a unit of work.
//!
//! A batch of commands is one PostgreSQL transaction on one connection, and round trips are
//! what it costs: so the transaction loads, in one pipelined round trip before the first
//! command ([`PgTx::prefetch`]), every row the batch's commands name, taking row locks in
//! one global order (payments, then holds, then accounts, each sorted by key; then a shard
//! of the system account that no one else holds); keeps every change in memory, where
//! later commands of the batch read it; and writes them all at the end in a few bulk
//! statements (`UNNEST` of arrays), pipelined, before the COMMIT ([`PgTx::flush`]). A row a
//! command needs that the prefetch did not load is loaded (and locked) on demand.
//!
//! Guarantees that come from the database, not from this process:
//! - one decision per account at a time: an account's row is locked (`FOR UPDATE`) before
//!   its balances are read, so two processes' batches on one account take turns;
//! - every balance update is guarded: the row must still be as it was read (its entry
//!   chain's head) and no customer balance may go negative (`WHERE ... >= 0`), with the
//!   table's CHECKs as the backstop; an update that does not apply fails the batch;
//! - compare-and-set on a payment's version, and on a hold's or transfer's status;
//! - unique keys on every idempotency key and client id: a racing duplicate fails its
//!   batch, which is retried and then replays the winner's answer.

use std::collections::{BTreeSet, HashMap, HashSet};

use payd_domain::gateway::Processor;
use payd_domain::gateway::payment::PaymentState;
use payd_domain::{
    AccountId, Amount, AuthorizationRequest, Balances, Bucket, Category, Code, CorrelationId,
    Entry, EntryCause, EventKind, IdempotencyKey, Mcc, MerchantPattern, MerchantRules,
    PriorAuthorization, ResourceId, Rules, TransactionId, system_account,
};
use payd_ledger::columns::{balance_columns, bucket_column, state_columns, transfer_reason};
use payd_ledger::{
    Command, Failure, LedgerTx, PendingTransfer, StoredClaim, StoredHold, StoredTransfer,
};
use payd_ports::{
    Claim, DepositReceipt, EventPayload, HoldView, Mutation, NewPayment, NewWebhook, PaymentRecord,
    Refusal, StoredResponse, Sweep, TransferView, Transition, WebhookView, WithdrawalReceipt,
};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::schema::{
    self, BALANCE_COLUMNS, HOLD_COLUMNS, PAYMENT_COLUMNS, TRANSFER_COLUMNS, corrupt,
};
use crate::webhooks;

/// Awaits statements' futures together (pipelined on the connection), binding each
/// result to its name; if any failed, returns (from the enclosing function) the failure
/// that caused the others: after one statement fails, PostgreSQL answers every later one
/// of the transaction "current transaction is aborted", which says nothing about why (and
/// would hide a lock conflict the writer retries).
macro_rules! pipelined {
    ($($name:ident = $future:expr),+ $(,)?) => {
        let ($($name,)+) = tokio::join!($($future),+);
        let mut failures = Vec::new();
        $(let $name = keep($name, &mut failures);)+
        if let Some(failure) = cause(failures) {
            return Err(failure);
        }
    };
}

/// The value of a pipelined result, or its default with the failure kept aside.
fn keep<T: Default>(result: Result<T, Failure>, failures: &mut Vec<Failure>) -> T {
    result.unwrap_or_else(|failure| {
        failures.push(failure);
        T::default()
    })
}

/// Of the failures of one pipeline, the first that is not "current transaction is
/// aborted".
fn cause(failures: Vec<Failure>) -> Option<Failure> {
    let aborted = |failure: &Failure| {
        failure
            .source()
            .and_then(|source| source.downcast_ref::<tokio_postgres::Error>())
            .and_then(tokio_postgres::Error::code)
            == Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION)
    };
    let mut failures = failures.into_iter();
    let first = failures.next()?;
    if !aborted(&first) {
        return Some(first);
    }
    Some(failures.find(|failure| !aborted(failure)).unwrap_or(first))
}

/// Sequence numbers taken from `entries_sequence` per entry the prefetch expects (each
/// movement writes two); more are taken at flush if the batch wrote more.
const ENTRIES_PER_COMMAND: i64 = 4;

/// What a writer keeps across its transactions.
pub(crate) struct WriterState {
    /// The rules decisions use, and the merchant table's version they were loaded at.
    pub(crate) rules: Rules,
    pub(crate) merchant_version: i64,
    /// `transactions.seq` numbers reserved by this writer: `next..end`.
    tx_seq: (i64, i64),
    /// This writer's row in each second's booked totals.
    pub(crate) slot: i16,
    /// The lease owner recorded on payments this process dispatches.
    pub(crate) instance: String,
}

impl WriterState {
    pub(crate) fn new(mcc: payd_domain::MccMap, slot: i16, instance: String) -> WriterState {
        WriterState {
            rules: Rules {
                mcc,
                merchants: MerchantRules::new(Vec::new()),
            },
            // Not a version the table has: the first transaction loads the table.
            merchant_version: -1,
            tx_seq: (0, 0),
            slot,
            instance,
        }
    }
}

/// An account loaded (and locked) in this transaction.
struct AccountRow {
    /// `accounts.num`; `None` for an account this transaction creates.
    num: Option<i64>,
    /// As read; the guard of the update.
    base: Balances,
    base_last_entry: Option<i64>,
    /// As of now.
    balances: Balances,
    dirty: bool,
}

impl AccountRow {
    fn loaded(num: i64, balances: Balances, last_entry: Option<i64>) -> AccountRow {
        AccountRow {
            num: Some(num),
            base: balances,
            base_last_entry: last_entry,
            balances,
            dirty: false,
        }
    }
}

/// A journal entry waiting for its sequence number.
struct StagedEntry {
    account: AccountId,
    category: Category,
    bucket: Bucket,
    amount: Amount,
    cause: EntryCause,
    reference: String,
}

/// A hold as this transaction sees it.
struct HoldRow {
    stored: StoredHold,
    new: bool,
    dirty: bool,
}

/// A payment as this transaction sees it.
struct PaymentRow {
    record: PaymentRecord,
    /// Created here (with its hold).
    new: bool,
    /// The version it had when read (the guard), and attempts to add.
    base_version: u64,
    attempts_added: u32,
    dirty: bool,
}

/// One transaction of a writer: see the module documentation.
pub(crate) struct PgTx<'c> {
    tx: deadpool_postgres::Transaction<'c>,
    state: &'c mut WriterState,
    now_ms: i64,
    /// Whether the merchant table changed here (the version is bumped at flush).
    merchants_changed: bool,
    merchant_ops: Vec<(String, Option<&'static str>)>,
    accounts: HashMap<AccountId, AccountRow>,
    /// Accounts known not to exist (as of their lookup in this transaction).
    no_accounts: HashSet<AccountId>,
    entries: Vec<StagedEntry>,
    /// Sequence numbers reserved for entries, in increasing order, and whether an account
    /// was locked after they were taken (then they cannot serve its entries: fresh ones
    /// are taken at flush for all).
    sequences: Vec<i64>,
    locked_after_sequences: bool,
    prior: HashMap<String, Option<PriorAuthorization>>,
    new_transactions: Vec<(i64, AuthorizationRequest, Code, Option<Category>)>,
    deposits: HashMap<IdempotencyKey, Option<DepositReceipt>>,
    new_deposits: Vec<DepositReceipt>,
    claims: HashMap<String, Option<StoredClaim>>,
    new_claims: Vec<(Claim, StoredResponse)>,
    holds: HashMap<ResourceId, Option<HoldRow>>,
    transfers: HashMap<ResourceId, Option<StoredTransfer>>,
    new_transfers: Vec<(TransferView, Option<String>)>,
    settled_transfers: Vec<(i64, TransferView)>,
    /// Transfers handed out for settling in this transaction.
    taken_transfers: HashSet<i64>,
    withdrawals: Vec<WithdrawalReceipt>,
    payments: HashMap<CorrelationId, Option<PaymentRow>>,
    totals: HashMap<(Processor, i64), (i64, i64)>,
    events: Vec<(EventKind, String, String)>,
}

fn rows_error(error: schema::RowError) -> Failure {
    Failure::store("reading a row", error)
}

/// The keys a batch's commands name, for the prefetch.
#[derive(Default)]
struct Keys {
    accounts: BTreeSet<String>,
    transactions: BTreeSet<String>,
    deposits: BTreeSet<String>,
    claims: BTreeSet<String>,
    holds: BTreeSet<String>,
    payments: BTreeSet<String>,
    transfers: BTreeSet<String>,
    /// Whether some command moves money to or from the outside world.
    system: bool,
    commands: i64,
}

impl Keys {
    fn of(commands: &[&Command]) -> Keys {
        let mut keys = Keys::default();
        for command in commands {
            keys.commands += 1;
            match command {
                Command::Authorize { request, .. } => {
                    keys.accounts.insert(request.account.as_str().to_owned());
                    if let Some(id) = &request.id {
                        keys.transactions.insert(id.as_str().to_owned());
                    }
                    keys.system = true;
                }
                Command::Deposit { deposit, .. } => {
                    keys.accounts.insert(deposit.account.as_str().to_owned());
                    keys.deposits.insert(deposit.key.as_str().to_owned());
                    keys.claims.insert(format!(
                        "{}{}",
                        payd_ports::HEADER_KEY_PREFIX,
                        deposit.key.as_str()
                    ));
                    keys.system = true;
                }
                Command::AcceptPayment { payment, .. } => {
                    keys.payments.insert(payment.id.as_str().to_owned());
                    if let Some(payer) = &payment.payer {
                        keys.accounts.insert(payer.account.as_str().to_owned());
                        keys.holds.insert(payer.hold.as_str().to_owned());
                    }
                }
                Command::Transitions { transitions, .. } => {
                    for change in transitions {
                        keys.payments.insert(change.id.as_str().to_owned());
                        keys.system |= matches!(change.next, PaymentState::Booked { .. });
                    }
                }
                Command::Execute {
                    mutation, claim, ..
                } => {
                    if let Some(claim) = claim {
                        keys.claims.insert(claim.key.clone());
                        if let Some(key) = claim.key.strip_prefix(payd_ports::HEADER_KEY_PREFIX) {
                            keys.deposits.insert(key.to_owned());
                        }
                    }
                    keys.mutation(mutation);
                }
                Command::PurgePayments { .. }
                | Command::ExpireHolds { .. }
                | Command::SettleTransfers { .. }
                | Command::PurgeIdempotency { .. } => {}
            }
        }
        keys
    }

    fn mutation(&mut self, mutation: &Mutation) {
        match mutation {
            Mutation::OpenAccount(account) => {
                self.accounts.insert(account.id.as_str().to_owned());
                self.system = true;
            }
            Mutation::PlaceHold(hold) => {
                self.holds.insert(hold.id.as_str().to_owned());
                self.accounts.insert(hold.account.as_str().to_owned());
            }
            Mutation::CaptureHold { id, .. } => {
                self.holds.insert(id.as_str().to_owned());
                self.system = true;
            }
            Mutation::VoidHold { id } => {
                self.holds.insert(id.as_str().to_owned());
            }
            Mutation::Withdraw(withdrawal) => {
                self.accounts.insert(withdrawal.account.as_str().to_owned());
                self.system = true;
            }
            Mutation::SubmitTransfer(new) => {
                self.transfers.insert(new.transfer.id.as_str().to_owned());
            }
            Mutation::PutMerchant { .. }
            | Mutation::DeleteMerchant { .. }
            | Mutation::CreateWebhook(_)
            | Mutation::DeleteWebhook { .. } => {}
        }
    }
}

fn vec(set: &BTreeSet<String>) -> Vec<String> {
    set.iter().cloned().collect()
}

impl<'c> PgTx<'c> {
    pub(crate) fn new(
        tx: deadpool_postgres::Transaction<'c>,
        state: &'c mut WriterState,
        now_ms: i64,
    ) -> PgTx<'c> {
        PgTx {
            tx,
            state,
            now_ms,
            merchants_changed: false,
            merchant_ops: Vec::new(),
            accounts: HashMap::new(),
            no_accounts: HashSet::new(),
            entries: Vec::new(),
            sequences: Vec::new(),
            locked_after_sequences: false,
            prior: HashMap::new(),
            new_transactions: Vec::new(),
            deposits: HashMap::new(),
            new_deposits: Vec::new(),
            claims: HashMap::new(),
            new_claims: Vec::new(),
            holds: HashMap::new(),
            transfers: HashMap::new(),
            new_transfers: Vec::new(),
            settled_transfers: Vec::new(),
            taken_transfers: HashSet::new(),
            withdrawals: Vec::new(),
            payments: HashMap::new(),
            totals: HashMap::new(),
            events: Vec::new(),
        }
    }

    /// Commits everything (after [`PgTx::flush`]).
    pub(crate) async fn commit(mut self) -> Result<(), Failure> {
        self.flush().await?;
        self.tx.commit().await?;
        Ok(())
    }

    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Failure> {
        let statement = self.tx.prepare_cached(sql).await?;
        Ok(self.tx.query(&statement, params).await?)
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Failure> {
        let statement = self.tx.prepare_cached(sql).await?;
        Ok(self.tx.execute(&statement, params).await?)
    }

    // ---- the prefetch --------------------------------------------------------------------

    /// Loads (and locks) what `commands` name, in one pipelined round trip; see the module
    /// documentation for the lock order.
    pub(crate) async fn prefetch(&mut self, commands: &[&Command]) -> Result<(), Failure> {
        let keys = Keys::of(commands);
        let payments = vec(&keys.payments);
        let holds = vec(&keys.holds);
        let accounts = vec(&keys.accounts);
        let transactions = vec(&keys.transactions);
        let deposits = vec(&keys.deposits);
        let claims = vec(&keys.claims);
        let transfers = vec(&keys.transfers);
        let sequences = keys.commands.saturating_mul(ENTRIES_PER_COMMAND);
        let system = system_account();
        let system_id = system.as_str();
        let locks_holds = !holds.is_empty() || !payments.is_empty();
        let lock_payments = async {
            if payments.is_empty() {
                return Ok(Vec::new());
            }
            self.query(
                &format!(
                    "SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = ANY($1)
                      ORDER BY id FOR UPDATE"
                ),
                &[&payments],
            )
            .await
        };
        let lock_holds = async {
            if !locks_holds {
                return Ok(Vec::new());
            }
            self.query(
                &format!(
                    "SELECT {HOLD_COLUMNS}, fingerprint FROM holds
                      WHERE id = ANY($1::text[] || ARRAY(
                                SELECT hold FROM payments WHERE id = ANY($2) AND hold IS NOT NULL))
                      ORDER BY id FOR UPDATE"
                ),
                &[&holds, &payments],
            )
            .await
        };
        let lock_accounts = async {
            if accounts.is_empty() && !locks_holds {
                return Ok(Vec::new());
            }
            self.query(
                &format!(
                    "SELECT id, num, {BALANCE_COLUMNS}, last_entry FROM accounts
                      WHERE shard = 0
                        AND id = ANY($1::text[] || ARRAY(
                                SELECT account FROM holds
                                 WHERE id = ANY($2::text[] || ARRAY(
                                         SELECT hold FROM payments
                                          WHERE id = ANY($3) AND hold IS NOT NULL))))
                      ORDER BY id FOR UPDATE"
                ),
                &[&accounts, &holds, &payments],
            )
            .await
        };
        let lock_system = async {
            if !keys.system {
                return Ok(Vec::new());
            }
            self.query(SYSTEM_SHARD_FREE, &[&system_id]).await
        };
        let read_transactions = async {
            if transactions.is_empty() {
                return Ok(Vec::new());
            }
            self.query(
                "SELECT client_id, account, amount_cents, mcc, merchant, code FROM transactions
                  WHERE client_id = ANY($1)",
                &[&transactions],
            )
            .await
        };
        let read_deposits = async {
            if deposits.is_empty() {
                return Ok(Vec::new());
            }
            self.query(
                "SELECT key, account, category, amount_cents, available_after_cents, created_at_ms
                   FROM deposits WHERE key = ANY($1)",
                &[&deposits],
            )
            .await
        };
        let read_claims = async {
            if claims.is_empty() {
                return Ok(Vec::new());
            }
            self.query(
                "SELECT key, fingerprint, status, body FROM idempotency WHERE key = ANY($1)",
                &[&claims],
            )
            .await
        };
        let read_transfers = async {
            if transfers.is_empty() {
                return Ok(Vec::new());
            }
            self.query(
                &format!(
                    "SELECT {TRANSFER_COLUMNS}, fingerprint FROM transfers WHERE id = ANY($1)"
                ),
                &[&transfers],
            )
            .await
        };
        let read_version = self.query("SELECT version FROM merchant_version", &[]);
        // After every lock of the pipeline: see `StagedEntry` and `flush`.
        let take_sequences = async {
            if sequences == 0 {
                return Ok(Vec::new());
            }
            self.query(TAKE_SEQUENCES, &[&sequences]).await
        };
        pipelined!(
            payment_rows = lock_payments,
            hold_rows = lock_holds,
            account_rows = lock_accounts,
            system_rows = lock_system,
            transaction_rows = read_transactions,
            deposit_rows = read_deposits,
            claim_rows = read_claims,
            transfer_rows = read_transfers,
            version_rows = read_version,
            sequence_rows = take_sequences,
        );
        for key in &payments {
            let id = schema::correlation_id(key).map_err(rows_error_corrupt)?;
            self.payments.insert(id, None);
        }
        for row in &payment_rows {
            let record = schema::payment(row).map_err(rows_error)?;
            self.payments
                .insert(record.id.clone(), Some(PaymentRow::read(record)));
        }
        for key in &holds {
            self.holds
                .insert(schema::resource_id(key).map_err(rows_error_corrupt)?, None);
        }
        for row in &hold_rows {
            let stored = stored_hold(row)?;
            self.holds.insert(
                stored.view.hold.id.clone(),
                Some(HoldRow {
                    stored,
                    new: false,
                    dirty: false,
                }),
            );
        }
        for key in &accounts {
            if !key.starts_with('@') {
                self.no_accounts
                    .insert(schema::account_id(key).map_err(rows_error_corrupt)?);
            }
        }
        for row in &account_rows {
            let id = schema::account_id(row.try_get(0)?).map_err(rows_error_corrupt)?;
            self.no_accounts.remove(&id);
            self.accounts.insert(id, account_row(row, 1)?);
        }
        if let Some(row) = system_rows.first() {
            self.accounts.insert(system, account_row(row, 0)?);
        }
        for key in &transactions {
            self.prior.insert(key.clone(), None);
        }
        for row in &transaction_rows {
            let key: String = row.try_get(0)?;
            self.prior.insert(key, Some(prior_authorization(row, 1)?));
        }
        for key in &deposits {
            if let Ok(key) = IdempotencyKey::parse(key) {
                self.deposits.insert(key, None);
            }
        }
        for row in &deposit_rows {
            let receipt = deposit_receipt(row)?;
            self.deposits.insert(receipt.key.clone(), Some(receipt));
        }
        for key in &claims {
            self.claims.insert(key.clone(), None);
        }
        for row in &claim_rows {
            let key: String = row.try_get(0)?;
            self.claims.insert(key, Some(stored_claim(row, 1)?));
        }
        for key in &transfers {
            self.transfers
                .insert(schema::resource_id(key).map_err(rows_error_corrupt)?, None);
        }
        for row in &transfer_rows {
            let stored = StoredTransfer {
                view: schema::transfer(row).map_err(rows_error)?,
                fingerprint: row.try_get(10)?,
            };
            self.transfers
                .insert(stored.view.transfer.id.clone(), Some(stored));
        }
        let version: i64 = version_rows
            .first()
            .ok_or_else(|| Failure::invariant("merchant_version has no row"))?
            .try_get(0)?;
        if version != self.state.merchant_version {
            let merchants = schema::merchants(&*self.tx).await.map_err(rows_error)?;
            self.state.rules.merchants = MerchantRules::new(merchants);
            self.state.merchant_version = version;
        }
        self.sequences = sequences_of(&sequence_rows)?;
        Ok(())
    }

    // ---- on-demand loads -------------------------------------------------------------

    /// Marks that an account was locked after the prefetch's sequence numbers were taken.
    fn locked_late(&mut self) {
        if !self.sequences.is_empty() {
            self.locked_after_sequences = true;
        }
    }

    async fn load_account(&mut self, id: &AccountId) -> Result<(), Failure> {
        if self.accounts.contains_key(id) || self.no_accounts.contains(id) {
            return Ok(());
        }
        let rows = if id.is_system() {
            let mut rows = self.query(SYSTEM_SHARD_FREE, &[&id.as_str()]).await?;
            if rows.is_empty() {
                // Every row is held by another transaction: wait for one.
                rows = self.query(SYSTEM_SHARD_ANY, &[&id.as_str()]).await?;
            }
            rows
        } else {
            self.query(
                &format!(
                    "SELECT num, {BALANCE_COLUMNS}, last_entry FROM accounts
                      WHERE shard = 0 AND id = $1 FOR UPDATE"
                ),
                &[&id.as_str()],
            )
            .await?
        };
        match rows.first() {
            Some(row) => {
                self.locked_late();
                self.accounts.insert(id.clone(), account_row(row, 0)?);
            }
            None => {
                self.no_accounts.insert(id.clone());
            }
        }
        Ok(())
    }

    async fn load_hold(&mut self, id: &ResourceId) -> Result<(), Failure> {
        if self.holds.contains_key(id) {
            return Ok(());
        }
        let rows = self
            .query(
                &format!("SELECT {HOLD_COLUMNS}, fingerprint FROM holds WHERE id = $1 FOR UPDATE"),
                &[&id.as_str()],
            )
            .await?;
        let row = match rows.first() {
            Some(row) => Some(HoldRow {
                stored: stored_hold(row)?,
                new: false,
                dirty: false,
            }),
            None => None,
        };
        self.holds.insert(id.clone(), row);
        Ok(())
    }

    async fn load_payment(&mut self, id: &CorrelationId) -> Result<(), Failure> {
        if self.payments.contains_key(id) {
            return Ok(());
        }
        let rows = self
            .query(
                &format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1 FOR UPDATE"),
                &[&id.as_str()],
            )
            .await?;
        let row = match rows.first() {
            Some(row) => Some(PaymentRow::read(schema::payment(row).map_err(rows_error)?)),
            None => None,
        };
        self.payments.insert(id.clone(), row);
        Ok(())
    }

    /// Locks the customer accounts `ids` (those not loaded yet) in key order.
    async fn lock_accounts(&mut self, ids: BTreeSet<String>) -> Result<(), Failure> {
        let wanted: Vec<String> = ids
            .into_iter()
            .filter(|id| {
                schema::account_id(id).is_ok_and(|id| {
                    !id.is_system()
                        && !self.accounts.contains_key(&id)
                        && !self.no_accounts.contains(&id)
                })
            })
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let rows = self
            .query(
                &format!(
                    "SELECT id, num, {BALANCE_COLUMNS}, last_entry FROM accounts
                      WHERE shard = 0 AND id = ANY($1) ORDER BY id FOR UPDATE"
                ),
                &[&wanted],
            )
            .await?;
        self.locked_late();
        for key in &wanted {
            self.no_accounts
                .insert(schema::account_id(key).map_err(rows_error_corrupt)?);
        }
        for row in &rows {
            let id = schema::account_id(row.try_get(0)?).map_err(rows_error_corrupt)?;
            self.no_accounts.remove(&id);
            self.accounts.insert(id, account_row(row, 1)?);
        }
        Ok(())
    }

    // ---- the flush -------------------------------------------------------------------

    /// Writes every change staged so far, in bulk, pipelined. Runs before COMMIT, and
    /// before any statement that must see the batch's earlier changes in the database.
    pub(crate) async fn flush(&mut self) -> Result<(), Failure> {
        self.number_entries().await?;
        self.insert_new_accounts().await?;
        let entries = std::mem::take(&mut self.entries);
        let sequences = std::mem::take(&mut self.sequences);
        let writes = Writes::collect(self, &entries, &sequences)?;
        writes.run(self).await?;
        // What is written is now the base of any later change in this transaction.
        for row in self.accounts.values_mut() {
            row.base = row.balances;
            row.dirty = false;
        }
        for row in self.holds.values_mut().flatten() {
            row.new = false;
            row.dirty = false;
        }
        for row in self.payments.values_mut().flatten() {
            row.new = false;
            row.dirty = false;
            row.base_version = row.record.version;
            row.attempts_added = 0;
        }
        self.new_transactions.clear();
        self.new_deposits.clear();
        self.new_claims.clear();
        self.new_transfers.clear();
        self.settled_transfers.clear();
        self.withdrawals.clear();
        self.totals.clear();
        self.events.clear();
        self.merchant_ops.clear();
        self.merchants_changed = false;
        Ok(())
    }

    /// Gives every staged entry its sequence number and links it into its account's chain.
    async fn number_entries(&mut self) -> Result<(), Failure> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let needed = self.entries.len();
        if self.locked_after_sequences || self.sequences.len() < needed {
            let count = i64::try_from(needed).unwrap_or(i64::MAX);
            let rows = self.query(TAKE_SEQUENCES, &[&count]).await?;
            self.sequences = sequences_of(&rows)?;
            self.locked_after_sequences = false;
        }
        if self.sequences.len() < needed {
            return Err(Failure::invariant("too few entry sequence numbers"));
        }
        Ok(())
    }

    /// Inserts the accounts this transaction created, with their final balances and
    /// chain heads; their `num` is known from then on.
    async fn insert_new_accounts(&mut self) -> Result<(), Failure> {
        let new: Vec<AccountId> = self
            .accounts
            .iter()
            .filter(|(_, row)| row.num.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = new.iter().map(|id| id.as_str().to_owned()).collect();
        let mut columns: [Vec<i64>; 6] = Default::default();
        for id in &new {
            let values = balance_columns(&self.accounts[id].balances);
            for (column, value) in columns.iter_mut().zip(values) {
                column.push(value);
            }
        }
        let rows = self
            .query(
                "INSERT INTO accounts (id, food_available, food_held, meal_available, meal_held,
                                       cash_available, cash_held, created_at_ms)
                 SELECT id, fa, fh, ma, mh, ca, ch, $8
                   FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[],
                               $5::bigint[], $6::bigint[], $7::bigint[])
                        AS n(id, fa, fh, ma, mh, ca, ch)
                 RETURNING id, num",
                &[
                    &ids,
                    &columns[0],
                    &columns[1],
                    &columns[2],
                    &columns[3],
                    &columns[4],
                    &columns[5],
                    &self.now_ms,
                ],
            )
            .await?;
        for row in &rows {
            let id = schema::account_id(row.try_get(0)?).map_err(rows_error_corrupt)?;
            let num: i64 = row.try_get(1)?;
            let account = self
                .accounts
                .get_mut(&id)
                .ok_or_else(|| Failure::invariant(format!("inserted unknown account {id}")))?;
            account.num = Some(num);
            // The row holds its balances; an update writes only the chain head.
            account.base = account.balances;
            account.base_last_entry = None;
            account.dirty = true;
        }
        Ok(())
    }
}

fn rows_error_corrupt(error: schema::Corrupt) -> Failure {
    Failure::store("reading a row", error)
}

/// The first shard of a system account that no other transaction holds, locked.
const SYSTEM_SHARD_FREE: &str = "SELECT num, food_available, food_held, meal_available, meal_held, cash_available, cash_held, last_entry FROM accounts WHERE id = $1 ORDER BY shard LIMIT 1 FOR UPDATE SKIP LOCKED";

/// Any shard of a system account, waiting for it (every shard was held).
const SYSTEM_SHARD_ANY: &str = "SELECT num, food_available, food_held, meal_available, meal_held, cash_available, cash_held, last_entry FROM accounts WHERE id = $1 ORDER BY random() LIMIT 1 FOR UPDATE";

/// `$1` fresh entry sequence numbers.
const TAKE_SEQUENCES: &str =
    "SELECT nextval('entries_sequence') FROM generate_series(1, $1::bigint)";

fn sequences_of(rows: &[Row]) -> Result<Vec<i64>, Failure> {
    let mut sequences = rows
        .iter()
        .map(|row| row.try_get::<_, i64>(0))
        .collect::<Result<Vec<i64>, _>>()?;
    sequences.sort_unstable();
    Ok(sequences)
}

/// An account row from `num, <six balances>, last_entry` starting at `first`.
fn account_row(row: &Row, first: usize) -> Result<AccountRow, Failure> {
    Ok(AccountRow::loaded(
        row.try_get(first)?,
        schema::balances(row, first + 1).map_err(rows_error)?,
        row.try_get(first + 7)?,
    ))
}

fn stored_hold(row: &Row) -> Result<StoredHold, Failure> {
    Ok(StoredHold {
        view: schema::hold(row).map_err(rows_error)?,
        fingerprint: row.try_get(10)?,
    })
}

fn prior_authorization(row: &Row, first: usize) -> Result<PriorAuthorization, Failure> {
    let mcc: i32 = row.try_get(first + 2)?;
    let code: &str = row.try_get(first + 4)?;
    Ok(PriorAuthorization {
        account: schema::account_id(row.try_get(first)?).map_err(rows_error_corrupt)?,
        amount: Amount::from_cents(row.try_get(first + 1)?),
        mcc: u16::try_from(mcc)
            .ok()
            .and_then(Mcc::from_code)
            .ok_or_else(|| rows_error_corrupt(corrupt("mcc", mcc.to_string())))?,
        merchant: row.try_get(first + 3)?,
        code: Code::parse(code).ok_or_else(|| rows_error_corrupt(corrupt("code", code)))?,
    })
}

fn deposit_receipt(row: &Row) -> Result<DepositReceipt, Failure> {
    let key: &str = row.try_get(0)?;
    Ok(DepositReceipt {
        key: IdempotencyKey::parse(key)
            .map_err(|_| rows_error_corrupt(corrupt("deposit key", key)))?,
        account: schema::account_id(row.try_get(1)?).map_err(rows_error_corrupt)?,
        category: schema::category(row.try_get(2)?).map_err(rows_error_corrupt)?,
        amount: Amount::from_cents(row.try_get(3)?),
        available_after: Amount::from_cents(row.try_get(4)?),
        created_at_ms: row.try_get(5)?,
        replayed: false,
    })
}

fn stored_claim(row: &Row, first: usize) -> Result<StoredClaim, Failure> {
    let status: i32 = row.try_get(first + 1)?;
    Ok(StoredClaim {
        fingerprint: row.try_get(first)?,
        response: StoredResponse {
            status: u16::try_from(status)
                .map_err(|_| rows_error_corrupt(corrupt("status", status.to_string())))?,
            body: row.try_get(first + 2)?,
        },
    })
}

impl PaymentRow {
    fn read(record: PaymentRecord) -> PaymentRow {
        PaymentRow {
            base_version: record.version,
            record,
            new: false,
            attempts_added: 0,
            dirty: false,
        }
    }
}

/// Every staged change, as the arrays of the bulk statements.
#[derive(Default)]
struct Writes {
    // accounts: num, six deltas, new chain head, the head read (the guard)
    account_nums: Vec<i64>,
    account_deltas: [Vec<i64>; 6],
    account_heads: Vec<Option<i64>>,
    account_base_heads: Vec<Option<i64>>,
    // entries
    entry_sequences: Vec<i64>,
    entry_accounts: Vec<i64>,
    entry_categories: Vec<String>,
    entry_buckets: Vec<i16>,
    entry_amounts: Vec<i64>,
    entry_causes: Vec<String>,
    entry_references: Vec<String>,
    entry_prevs: Vec<Option<i64>>,
}

impl Writes {
    /// Numbers the entries (`sequences` are enough and sorted), links the chains, and
    /// takes the account changes.
    fn collect(
        tx: &mut PgTx<'_>,
        entries: &[StagedEntry],
        sequences: &[i64],
    ) -> Result<Writes, Failure> {
        let mut writes = Writes::default();
        let mut heads: HashMap<&AccountId, Option<i64>> = HashMap::new();
        for (entry, sequence) in entries.iter().zip(sequences) {
            let row = tx.accounts.get(&entry.account).ok_or_else(|| {
                Failure::invariant(format!("entry for unloaded account {}", entry.account))
            })?;
            let num = row
                .num
                .ok_or_else(|| Failure::invariant("an entry's account has no number"))?;
            let head = heads.entry(&entry.account).or_insert(row.base_last_entry);
            writes.entry_sequences.push(*sequence);
            writes.entry_accounts.push(num);
            writes
                .entry_categories
                .push(entry.category.as_str().to_owned());
            writes.entry_buckets.push(bucket_column(entry.bucket));
            writes.entry_amounts.push(entry.amount.cents());
            writes.entry_causes.push(entry.cause.as_str().to_owned());
            writes.entry_references.push(entry.reference.clone());
            writes.entry_prevs.push(*head);
            *head = Some(*sequence);
        }
        let heads: HashMap<AccountId, Option<i64>> = heads
            .into_iter()
            .map(|(id, head)| (id.clone(), head))
            .collect();
        for (id, row) in &tx.accounts {
            let head = heads.get(id).copied();
            if !row.dirty && head.is_none() {
                continue;
            }
            let num = row
                .num
                .ok_or_else(|| Failure::invariant("a changed account has no number"))?;
            let base = balance_columns(&row.base);
            let now = balance_columns(&row.balances);
            for (column, (now, base)) in writes
                .account_deltas
                .iter_mut()
                .zip(now.into_iter().zip(base))
            {
                column.push(now.checked_sub(base).ok_or_else(|| {
                    Failure::invariant(format!("a balance change of {id} overflows"))
                })?);
            }
            writes.account_nums.push(num);
            writes
                .account_heads
                .push(head.unwrap_or(row.base_last_entry));
            writes.account_base_heads.push(row.base_last_entry);
        }
        // A new account's chain head is written by this update too: its row was
        // inserted without one.
        Ok(writes)
    }

    /// Runs every bulk statement, pipelined, the event head last.
    async fn run(self, tx: &PgTx<'_>) -> Result<(), Failure> {
        let accounts = async {
            if self.account_nums.is_empty() {
                return Ok(());
            }
            let expected = self.account_nums.len() as u64;
            let d = &self.account_deltas;
            let updated = tx
                .execute(
                    "UPDATE accounts AS a
                        SET food_available = a.food_available + d.fa,
                            food_held = a.food_held + d.fh,
                            meal_available = a.meal_available + d.ma,
                            meal_held = a.meal_held + d.mh,
                            cash_available = a.cash_available + d.ca,
                            cash_held = a.cash_held + d.ch,
                            last_entry = d.head
                       FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[],
                                   $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[],
                                   $9::bigint[])
                            AS d(num, fa, fh, ma, mh, ca, ch, head, base_head)
                      WHERE a.num = d.num
                        AND a.last_entry IS NOT DISTINCT FROM d.base_head
                        AND (substr(a.id, 1, 1) = '@'
                             OR (a.food_available + d.fa >= 0 AND a.meal_available + d.ma >= 0
                                 AND a.cash_available + d.ca >= 0))
                        AND a.food_held + d.fh >= 0 AND a.meal_held + d.mh >= 0
                        AND a.cash_held + d.ch >= 0",
                    &[
                        &self.account_nums,
                        &d[0],
                        &d[1],
                        &d[2],
                        &d[3],
                        &d[4],
                        &d[5],
                        &self.account_heads,
                        &self.account_base_heads,
                    ],
                )
                .await?;
            if updated != expected {
                return Err(Failure::invariant(format!(
                    "{updated} of {expected} guarded balance updates applied"
                )));
            }
            Ok(())
        };
        let entries = async {
            if self.entry_sequences.is_empty() {
                return Ok(());
            }
            tx.execute(
                "INSERT INTO entries (sequence, account, category, bucket, amount_cents, cause,
                                      reference, created_at_ms, prev)
                 SELECT s, a, c, b, m, k, r, $9, p
                   FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::smallint[],
                               $5::bigint[], $6::text[], $7::text[], $8::bigint[])
                        AS e(s, a, c, b, m, k, r, p)",
                &[
                    &self.entry_sequences,
                    &self.entry_accounts,
                    &self.entry_categories,
                    &self.entry_buckets,
                    &self.entry_amounts,
                    &self.entry_causes,
                    &self.entry_references,
                    &self.entry_prevs,
                    &tx.now_ms,
                ],
            )
            .await
            .map(|_| ())
        };
        let rest = tx.write_records();
        pipelined!(_accounts = accounts, _entries = entries, _rest = rest);
        tx.write_events().await
    }
}

impl PgTx<'_> {
    /// Everything but balances, entries and events: one bulk statement per table.
    async fn write_records(&self) -> Result<(), Failure> {
        pipelined!(
            _transactions = self.write_transactions(),
            _deposits = self.write_deposits(),
            _claims = self.write_claims(),
            _holds = self.write_holds(),
            _transfers = self.write_transfers(),
            _withdrawals = self.write_withdrawals(),
            _payments = self.write_payments(),
            _totals = self.write_totals(),
            _merchants = self.write_merchants(),
        );
        Ok(())
    }

    async fn write_transactions(&self) -> Result<(), Failure> {
        if self.new_transactions.is_empty() {
            return Ok(());
        }
        let mut seqs = Vec::new();
        let mut ids: Vec<Option<String>> = Vec::new();
        let mut accounts = Vec::new();
        let mut amounts = Vec::new();
        let mut mccs: Vec<i32> = Vec::new();
        let mut merchants = Vec::new();
        let mut codes = Vec::new();
        let mut categories: Vec<Option<String>> = Vec::new();
        for (seq, request, code, category) in &self.new_transactions {
            seqs.push(*seq);
            ids.push(request.id.as_ref().map(|id| id.as_str().to_owned()));
            accounts.push(request.account.as_str().to_owned());
            amounts.push(request.amount.cents());
            mccs.push(i32::from(request.mcc.code()));
            merchants.push(request.merchant.clone());
            codes.push(code.as_str().to_owned());
            categories.push(category.map(|c| c.as_str().to_owned()));
        }
        self.execute(
            "INSERT INTO transactions (seq, client_id, account, amount_cents, mcc, merchant, code,
                                       category, created_at_ms)
             SELECT s, i, a, m, c, n, k, g, $9
               FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::integer[],
                           $6::text[], $7::text[], $8::text[])
                    AS t(s, i, a, m, c, n, k, g)",
            &[
                &seqs,
                &ids,
                &accounts,
                &amounts,
                &mccs,
                &merchants,
                &codes,
                &categories,
                &self.now_ms,
            ],
        )
        .await?;
        Ok(())
    }

    async fn write_deposits(&self) -> Result<(), Failure> {
        if self.new_deposits.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = self
            .new_deposits
            .iter()
            .map(|d| d.key.as_str().to_owned())
            .collect();
        let accounts: Vec<String> = self
            .new_deposits
            .iter()
            .map(|d| d.account.as_str().to_owned())
            .collect();
        let categories: Vec<String> = self
            .new_deposits
            .iter()
            .map(|d| d.category.as_str().to_owned())
            .collect();
        let amounts: Vec<i64> = self.new_deposits.iter().map(|d| d.amount.cents()).collect();
        let after: Vec<i64> = self
            .new_deposits
            .iter()
            .map(|d| d.available_after.cents())
            .collect();
        self.execute(
            "INSERT INTO deposits (key, account, category, amount_cents, available_after_cents,
                                   created_at_ms)
             SELECT k, a, c, m, v, $6
               FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
                    AS d(k, a, c, m, v)",
            &[
                &keys,
                &accounts,
                &categories,
                &amounts,
                &after,
                &self.now_ms,
            ],
        )
        .await?;
        Ok(())
    }

    async fn write_claims(&self) -> Result<(), Failure> {
        if self.new_claims.is_empty() {
            return Ok(());
        }
        let keys: Vec<&str> = self
            .new_claims
            .iter()
            .map(|(c, _)| c.key.as_str())
            .collect();
        let fingerprints: Vec<&str> = self
            .new_claims
            .iter()
            .map(|(c, _)| c.fingerprint.as_str())
            .collect();
        let statuses: Vec<i32> = self
            .new_claims
            .iter()
            .map(|(_, r)| i32::from(r.status))
            .collect();
        let bodies: Vec<&[u8]> = self
            .new_claims
            .iter()
            .map(|(_, r)| r.body.as_slice())
            .collect();
        let expires: Vec<Option<i64>> = self
            .new_claims
            .iter()
            .map(|(c, _)| c.expires_at_ms)
            .collect();
        self.execute(
            "INSERT INTO idempotency (key, fingerprint, status, body, created_at_ms, expires_at_ms)
             SELECT k, f, s, b, $6, e
               FROM unnest($1::text[], $2::text[], $3::integer[], $4::bytea[], $5::bigint[])
                    AS i(k, f, s, b, e)",
            &[
                &keys,
                &fingerprints,
                &statuses,
                &bodies,
                &expires,
                &self.now_ms,
            ],
        )
        .await?;
        Ok(())
    }

    async fn write_holds(&self) -> Result<(), Failure> {
        let (new, changed): (Vec<&HoldRow>, Vec<&HoldRow>) = self
            .holds
            .values()
            .flatten()
            .filter(|row| row.new || row.dirty)
            .partition(|row| row.new);
        let insert = async {
            if new.is_empty() {
                return Ok(());
            }
            let view = |row: &&HoldRow| row.stored.view.clone();
            let views: Vec<HoldView> = new.iter().map(view).collect();
            let ids: Vec<&str> = views.iter().map(|v| v.hold.id.as_str()).collect();
            let accounts: Vec<&str> = views.iter().map(|v| v.hold.account.as_str()).collect();
            let categories: Vec<&str> = views.iter().map(|v| v.hold.category.as_str()).collect();
            let amounts: Vec<i64> = views.iter().map(|v| v.hold.amount.cents()).collect();
            let captured: Vec<i64> = views.iter().map(|v| v.hold.captured.cents()).collect();
            let statuses: Vec<&str> = views.iter().map(|v| v.hold.status.as_str()).collect();
            let expires: Vec<Option<i64>> = views.iter().map(|v| v.hold.expires_at_ms).collect();
            let payments: Vec<Option<&str>> = views
                .iter()
                .map(|v| v.payment.as_ref().map(CorrelationId::as_str))
                .collect();
            let fingerprints: Vec<Option<&str>> = new
                .iter()
                .map(|row| row.stored.fingerprint.as_deref())
                .collect();
            let created: Vec<i64> = views.iter().map(|v| v.created_at_ms).collect();
            let updated: Vec<i64> = views.iter().map(|v| v.updated_at_ms).collect();
            self.execute(
                "INSERT INTO holds (id, account, category, amount_cents, captured_cents, status,
                                    expires_at_ms, payment, fingerprint, created_at_ms,
                                    updated_at_ms)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[],
                                      $5::bigint[], $6::text[], $7::bigint[], $8::text[],
                                      $9::text[], $10::bigint[], $11::bigint[])",
                &[
                    &ids,
                    &accounts,
                    &categories,
                    &amounts,
                    &captured,
                    &statuses,
                    &expires,
                    &payments,
                    &fingerprints,
                    &created,
                    &updated,
                ],
            )
            .await
            .map(|_| ())
        };
        let update = async {
            if changed.is_empty() {
                return Ok(());
            }
            let ids: Vec<&str> = changed
                .iter()
                .map(|r| r.stored.view.hold.id.as_str())
                .collect();
            let statuses: Vec<&str> = changed
                .iter()
                .map(|r| r.stored.view.hold.status.as_str())
                .collect();
            let captured: Vec<i64> = changed
                .iter()
                .map(|r| r.stored.view.hold.captured.cents())
                .collect();
            let updated_at: Vec<i64> = changed
                .iter()
                .map(|r| r.stored.view.updated_at_ms)
                .collect();
            let updated = self
                .execute(
                    "UPDATE holds AS h SET status = u.s, captured_cents = u.c, updated_at_ms = u.t
                       FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])
                            AS u(id, s, c, t)
                      WHERE h.id = u.id AND h.status = 'active'",
                    &[&ids, &statuses, &captured, &updated_at],
                )
                .await?;
            if updated != changed.len() as u64 {
                return Err(Failure::invariant("a hold changed was no longer active"));
            }
            Ok(())
        };
        pipelined!(_insert = insert, _update = update);
        Ok(())
    }

    async fn write_transfers(&self) -> Result<(), Failure> {
        let insert = async {
            if self.new_transfers.is_empty() {
                return Ok(());
            }
            let t = &self.new_transfers;
            let ids: Vec<&str> = t.iter().map(|(v, _)| v.transfer.id.as_str()).collect();
            let from: Vec<&str> = t.iter().map(|(v, _)| v.transfer.from.as_str()).collect();
            let to: Vec<&str> = t.iter().map(|(v, _)| v.transfer.to.as_str()).collect();
            let categories: Vec<&str> = t
                .iter()
                .map(|(v, _)| v.transfer.category.as_str())
                .collect();
            let amounts: Vec<i64> = t.iter().map(|(v, _)| v.transfer.amount.cents()).collect();
            let descriptions: Vec<Option<&str>> =
                t.iter().map(|(v, _)| v.description.as_deref()).collect();
            let fingerprints: Vec<Option<&str>> = t.iter().map(|(_, f)| f.as_deref()).collect();
            // In acceptance order: `seq` is given in the order of the rows.
            self.execute(
                "INSERT INTO transfers (id, from_account, to_account, category, amount_cents,
                                        description, status, fingerprint, created_at_ms,
                                        updated_at_ms)
                 SELECT i, f, t, c, a, d, 'pending', p, $8, $8
                   FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                               $6::text[], $7::text[]) WITH ORDINALITY AS n(i, f, t, c, a, d, p, o)
                  ORDER BY o",
                &[
                    &ids,
                    &from,
                    &to,
                    &categories,
                    &amounts,
                    &descriptions,
                    &fingerprints,
                    &self.now_ms,
                ],
            )
            .await
            .map(|_| ())
        };
        let settle = async {
            if self.settled_transfers.is_empty() {
                return Ok(());
            }
            let s = &self.settled_transfers;
            let seqs: Vec<i64> = s.iter().map(|(seq, _)| *seq).collect();
            let statuses: Vec<&str> = s.iter().map(|(_, v)| v.status.as_str()).collect();
            let reasons: Vec<Option<&str>> =
                s.iter().map(|(_, v)| transfer_reason(v.status)).collect();
            let updated_at: Vec<i64> = s.iter().map(|(_, v)| v.updated_at_ms).collect();
            let updated = self
                .execute(
                    "UPDATE transfers AS t SET status = u.s, reason = u.r, updated_at_ms = u.m
                       FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[])
                            AS u(seq, s, r, m)
                      WHERE t.seq = u.seq AND t.status = 'pending'",
                    &[&seqs, &statuses, &reasons, &updated_at],
                )
                .await?;
            if updated != seqs.len() as u64 {
                return Err(Failure::invariant(
                    "a settled transfer was no longer pending",
                ));
            }
            Ok(())
        };
        pipelined!(_insert = insert, _settle = settle);
        Ok(())
    }

    async fn write_withdrawals(&self) -> Result<(), Failure> {
        if self.withdrawals.is_empty() {
            return Ok(());
        }
        let w = &self.withdrawals;
        let ids: Vec<&str> = w.iter().map(|r| r.id.as_str()).collect();
        let accounts: Vec<&str> = w.iter().map(|r| r.account.as_str()).collect();
        let categories: Vec<&str> = w.iter().map(|r| r.category.as_str()).collect();
        let amounts: Vec<i64> = w.iter().map(|r| r.amount.cents()).collect();
        let after: Vec<i64> = w.iter().map(|r| r.available_after.cents()).collect();
        self.execute(
            "INSERT INTO withdrawals (id, account, category, amount_cents, available_after_cents,
                                      created_at_ms)
             SELECT i, a, c, m, v, $6
               FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
                    AS w(i, a, c, m, v)",
            &[&ids, &accounts, &categories, &amounts, &after, &self.now_ms],
        )
        .await?;
        Ok(())
    }

    async fn write_payments(&self) -> Result<(), Failure> {
        let (new, changed): (Vec<&PaymentRow>, Vec<&PaymentRow>) = self
            .payments
            .values()
            .flatten()
            .filter(|row| row.new || row.dirty)
            .partition(|row| row.new);
        let owner = self.state.instance.as_str();
        let columns = |rows: &[&PaymentRow]| {
            let mut c = PaymentColumns::default();
            for row in rows {
                let r = &row.record;
                let (status, processor, due, sent, unknown) = state_columns(&r.state);
                c.ids.push(r.id.as_str().to_owned());
                c.statuses.push(status);
                c.processors.push(processor);
                c.dues.push(due);
                c.sents.push(sent);
                c.unknowns.push(unknown);
                c.owners
                    .push(matches!(r.state, PaymentState::Processing { .. }).then_some(owner));
                c.versions
                    .push(i64::try_from(r.version).unwrap_or(i64::MAX));
                c.base_versions
                    .push(i64::try_from(row.base_version).unwrap_or(i64::MAX));
                // Added by an update; the whole count by an insert.
                let attempts = if row.new {
                    r.attempts
                } else {
                    row.attempts_added
                };
                c.attempts.push(i32::try_from(attempts).unwrap_or(i32::MAX));
                c.amounts.push(r.amount.cents());
                c.requested.push(r.requested_at_ms);
                c.holds.push(r.hold.as_ref().map(|h| h.as_str().to_owned()));
            }
            c
        };
        let insert = async {
            if new.is_empty() {
                return Ok(());
            }
            let c = columns(&new);
            self.execute(
                "INSERT INTO payments (id, amount_cents, requested_at_ms, status, processor, due_ms,
                                       sent_ms, unknown_since_ms, hold, version, attempts,
                                       lease_owner, created_at_ms, updated_at_ms)
                 SELECT i, a, r, s, p, d, t, u, h, v, k, o, $13, $13
                   FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[],
                               $6::bigint[], $7::bigint[], $8::bigint[], $9::text[], $10::bigint[],
                               $11::integer[], $12::text[])
                        AS x(i, a, r, s, p, d, t, u, h, v, k, o)",
                &[
                    &c.ids,
                    &c.amounts,
                    &c.requested,
                    &c.statuses,
                    &c.processors,
                    &c.dues,
                    &c.sents,
                    &c.unknowns,
                    &c.holds,
                    &c.versions,
                    &c.attempts,
                    &c.owners,
                    &self.now_ms,
                ],
            )
            .await
            .map(|_| ())
        };
        let update = async {
            if changed.is_empty() {
                return Ok(());
            }
            let c = columns(&changed);
            let updated = self
                .execute(
                    "UPDATE payments AS p
                        SET status = u.s, processor = u.p, due_ms = u.d, sent_ms = u.t,
                            unknown_since_ms = u.n, attempts = p.attempts + u.a,
                            version = u.v, lease_owner = u.o, updated_at_ms = $11
                       FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[],
                                   $5::bigint[], $6::bigint[], $7::integer[], $8::bigint[],
                                   $9::bigint[], $10::text[])
                            AS u(id, s, p, d, t, n, a, v, b, o)
                      WHERE p.id = u.id AND p.version = u.b",
                    &[
                        &c.ids,
                        &c.statuses,
                        &c.processors,
                        &c.dues,
                        &c.sents,
                        &c.unknowns,
                        &c.attempts,
                        &c.versions,
                        &c.base_versions,
                        &c.owners,
                        &self.now_ms,
                    ],
                )
                .await?;
            if updated != changed.len() as u64 {
                return Err(Failure::invariant("a payment moved during its transition"));
            }
            Ok(())
        };
        pipelined!(_insert = insert, _update = update);
        Ok(())
    }

    async fn write_totals(&self) -> Result<(), Failure> {
        if self.totals.is_empty() {
            return Ok(());
        }
        let mut processors = Vec::new();
        let mut seconds = Vec::new();
        let mut requests = Vec::new();
        let mut amounts = Vec::new();
        for ((processor, second), (count, cents)) in &self.totals {
            processors.push(processor.as_str());
            seconds.push(*second);
            requests.push(*count);
            amounts.push(*cents);
        }
        self.execute(
            "INSERT INTO payment_totals (processor, second, shard, requests, amount_cents)
             SELECT p, s, $5, r, a FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[])
                    AS t(p, s, r, a)
             ON CONFLICT (processor, second, shard) DO UPDATE
                SET requests = payment_totals.requests + excluded.requests,
                    amount_cents = payment_totals.amount_cents + excluded.amount_cents",
            &[&processors, &seconds, &requests, &amounts, &self.state.slot],
        )
        .await?;
        Ok(())
    }

    async fn write_merchants(&self) -> Result<(), Failure> {
        if !self.merchants_changed {
            return Ok(());
        }
        // In order: a put and a delete of the same pattern in one batch apply as sent.
        for (pattern, category) in &self.merchant_ops {
            match category {
                Some(category) => {
                    self.execute(
                        "INSERT INTO merchants (pattern, category) VALUES ($1, $2)
                         ON CONFLICT (pattern) DO UPDATE SET category = excluded.category",
                        &[pattern, category],
                    )
                    .await?;
                }
                None => {
                    self.execute("DELETE FROM merchants WHERE pattern = $1", &[pattern])
                        .await?;
                }
            }
        }
        self.execute("UPDATE merchant_version SET version = version + 1", &[])
            .await?;
        Ok(())
    }

    /// The batch's events, numbered from the event head, which stays locked until COMMIT:
    /// so sequences are given out in commit order. The last statement before COMMIT, so
    /// the lock is held as briefly as can be.
    async fn write_events(&self) -> Result<(), Failure> {
        if self.events.is_empty() {
            return Ok(());
        }
        let kinds: Vec<&str> = self.events.iter().map(|(k, _, _)| k.as_str()).collect();
        let subjects: Vec<&str> = self.events.iter().map(|(_, s, _)| s.as_str()).collect();
        let payloads: Vec<&str> = self.events.iter().map(|(_, _, p)| p.as_str()).collect();
        let count = i64::try_from(self.events.len()).unwrap_or(i64::MAX);
        self.execute(
            "WITH head AS (UPDATE event_head SET seq = seq + $4 RETURNING seq - $4 AS base)
             INSERT INTO events (seq, kind, subject, payload, created_at_ms)
             SELECT head.base + e.o, e.k, e.s, e.p, $5
               FROM head, unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS e(k, s, p, o)",
            &[&kinds, &subjects, &payloads, &count, &self.now_ms],
        )
        .await?;
        Ok(())
    }
}

#[derive(Default)]
struct PaymentColumns<'a> {
    ids: Vec<String>,
    statuses: Vec<&'static str>,
    processors: Vec<Option<&'static str>>,
    dues: Vec<Option<i64>>,
    sents: Vec<Option<i64>>,
    unknowns: Vec<Option<i64>>,
    owners: Vec<Option<&'a str>>,
    versions: Vec<i64>,
    base_versions: Vec<i64>,
    attempts: Vec<i32>,
    amounts: Vec<i64>,
    requested: Vec<i64>,
    holds: Vec<Option<String>>,
}

impl LedgerTx for PgTx<'_> {
    fn now_ms(&self) -> i64 {
        self.now_ms
    }

    async fn rules(&mut self) -> Result<&Rules, Failure> {
        Ok(&self.state.rules)
    }

    async fn balances(&mut self, id: &AccountId) -> Result<Option<Balances>, Failure> {
        self.load_account(id).await?;
        Ok(self.accounts.get(id).map(|row| row.balances))
    }

    fn set_balances(&mut self, id: &AccountId, balances: Balances) -> Result<(), Failure> {
        let row = self
            .accounts
            .get_mut(id)
            .ok_or_else(|| Failure::invariant(format!("account {id} is not loaded")))?;
        row.balances = balances;
        row.dirty = true;
        Ok(())
    }

    async fn insert_account(&mut self, id: &AccountId, balances: Balances) -> Result<(), Failure> {
        self.no_accounts.remove(id);
        self.accounts.insert(
            id.clone(),
            AccountRow {
                num: None,
                base: Balances::default(),
                base_last_entry: None,
                balances,
                dirty: true,
            },
        );
        Ok(())
    }

    async fn insert_entries(
        &mut self,
        entries: &[Entry],
        cause: EntryCause,
        reference: &str,
    ) -> Result<(), Failure> {
        for entry in entries {
            if !self.accounts.contains_key(&entry.account) {
                return Err(Failure::invariant(format!(
                    "account {} is not loaded",
                    entry.account
                )));
            }
            self.entries.push(StagedEntry {
                account: entry.account.clone(),
                category: entry.category,
                bucket: entry.bucket,
                amount: entry.amount,
                cause,
                reference: reference.to_owned(),
            });
        }
        Ok(())
    }

    async fn prior_authorization(
        &mut self,
        id: &TransactionId,
    ) -> Result<Option<PriorAuthorization>, Failure> {
        if let Some(known) = self.prior.get(id.as_str()) {
            return Ok(known.clone());
        }
        let rows = self
            .query(
                "SELECT account, amount_cents, mcc, merchant, code FROM transactions
                  WHERE client_id = $1",
                &[&id.as_str()],
            )
            .await?;
        let prior = rows
            .first()
            .map(|row| prior_authorization(row, 0))
            .transpose()?;
        self.prior.insert(id.as_str().to_owned(), prior.clone());
        Ok(prior)
    }

    async fn insert_transaction(
        &mut self,
        request: &AuthorizationRequest,
        code: Code,
        category: Option<Category>,
    ) -> Result<i64, Failure> {
        let (next, end) = self.state.tx_seq;
        let seq = if next < end {
            next
        } else {
            let rows = self
                .query("SELECT nextval('transactions_seq')", &[])
                .await?;
            let base: i64 = rows
                .first()
                .ok_or_else(|| Failure::invariant("nextval returned nothing"))?
                .try_get(0)?;
            // The sequence steps by 1000: this writer owns base..base + 1000.
            self.state.tx_seq = (base, base + 1_000);
            base
        };
        self.state.tx_seq.0 = seq + 1;
        if let Some(id) = &request.id {
            self.prior.insert(
                id.as_str().to_owned(),
                Some(PriorAuthorization {
                    account: request.account.clone(),
                    amount: request.amount,
                    mcc: request.mcc,
                    merchant: request.merchant.clone(),
                    code,
                }),
            );
        }
        self.new_transactions
            .push((seq, request.clone(), code, category));
        Ok(seq)
    }

    async fn deposit(&mut self, key: &IdempotencyKey) -> Result<Option<DepositReceipt>, Failure> {
        if let Some(known) = self.deposits.get(key) {
            return Ok(known.clone());
        }
        let rows = self
            .query(
                "SELECT key, account, category, amount_cents, available_after_cents, created_at_ms
                   FROM deposits WHERE key = $1",
                &[&key.as_str()],
            )
            .await?;
        let receipt = rows.first().map(deposit_receipt).transpose()?;
        self.deposits.insert(key.clone(), receipt.clone());
        Ok(receipt)
    }

    async fn insert_deposit(&mut self, receipt: &DepositReceipt) -> Result<(), Failure> {
        self.deposits
            .insert(receipt.key.clone(), Some(receipt.clone()));
        self.new_deposits.push(receipt.clone());
        Ok(())
    }

    async fn put_merchant(
        &mut self,
        pattern: &MerchantPattern,
        category: Category,
    ) -> Result<bool, Failure> {
        // The table as of this transaction (loaded at the prefetch, with this batch's
        // changes): `remove` says whether the pattern was there.
        let created = !self.state.rules.merchants.remove(pattern);
        self.state.rules.merchants.insert(pattern.clone(), category);
        self.merchant_ops
            .push((pattern.to_string(), Some(category.as_str())));
        self.merchants_changed = true;
        Ok(created)
    }

    async fn delete_merchant(&mut self, pattern: &MerchantPattern) -> Result<bool, Failure> {
        let existed = self.state.rules.merchants.remove(pattern);
        if existed {
            self.merchant_ops.push((pattern.to_string(), None));
            self.merchants_changed = true;
        }
        Ok(existed)
    }

    async fn stored_response(&mut self, key: &str) -> Result<Option<StoredClaim>, Failure> {
        if let Some(known) = self.claims.get(key) {
            return Ok(known.clone());
        }
        let rows = self
            .query(
                "SELECT fingerprint, status, body FROM idempotency WHERE key = $1",
                &[&key],
            )
            .await?;
        let claim = rows.first().map(|row| stored_claim(row, 0)).transpose()?;
        self.claims.insert(key.to_owned(), claim.clone());
        Ok(claim)
    }

    async fn store_response(
        &mut self,
        claim: &Claim,
        response: &StoredResponse,
    ) -> Result<(), Failure> {
        self.claims.insert(
            claim.key.clone(),
            Some(StoredClaim {
                fingerprint: claim.fingerprint.clone(),
                response: response.clone(),
            }),
        );
        self.new_claims.push((claim.clone(), response.clone()));
        Ok(())
    }

    async fn purge_idempotency(&mut self, now_ms: i64, limit: u32) -> Result<Sweep, Failure> {
        self.flush().await?;
        let limit = i64::from(limit);
        let deleted = self
            .execute(
                "DELETE FROM idempotency WHERE key IN (
                     SELECT key FROM idempotency WHERE expires_at_ms <= $1 LIMIT $2
                     FOR UPDATE SKIP LOCKED)",
                &[&now_ms, &limit],
            )
            .await?;
        // Claims on requests in flight left behind by a crash.
        self.execute(
            "DELETE FROM request_claims WHERE key IN (
                 SELECT key FROM request_claims WHERE expires_at_ms <= $1 LIMIT $2
                 FOR UPDATE SKIP LOCKED)",
            &[&now_ms, &limit],
        )
        .await?;
        let next: Option<i64> = self
            .query(
                "SELECT MIN(expires_at_ms) FROM idempotency WHERE expires_at_ms IS NOT NULL",
                &[],
            )
            .await?
            .first()
            .map(|row| row.try_get(0))
            .transpose()?
            .flatten();
        Ok(Sweep {
            done: u32::try_from(deleted).unwrap_or(u32::MAX),
            more: i64::try_from(deleted).unwrap_or(i64::MAX) >= limit,
            next_due_ms: next,
        })
    }

    async fn hold(&mut self, id: &ResourceId) -> Result<Option<StoredHold>, Failure> {
        self.load_hold(id).await?;
        Ok(self
            .holds
            .get(id)
            .and_then(|row| row.as_ref())
            .map(|row| row.stored.clone()))
    }

    async fn insert_hold(
        &mut self,
        view: &HoldView,
        fingerprint: Option<&str>,
    ) -> Result<(), Failure> {
        self.holds.insert(
            view.hold.id.clone(),
            Some(HoldRow {
                stored: StoredHold {
                    view: view.clone(),
                    fingerprint: fingerprint.map(str::to_owned),
                },
                new: true,
                dirty: false,
            }),
        );
        Ok(())
    }

    async fn update_hold(&mut self, view: &HoldView) -> Result<(), Failure> {
        let row = self
            .holds
            .get_mut(&view.hold.id)
            .and_then(|row| row.as_mut())
            .ok_or_else(|| Failure::invariant(format!("hold {} is not loaded", view.hold.id)))?;
        if row.stored.view.hold.status != payd_domain::HoldStatus::Active {
            return Err(Failure::invariant(format!(
                "hold {} was not active",
                view.hold.id
            )));
        }
        row.stored.view = view.clone();
        row.dirty = true;
        Ok(())
    }

    async fn due_holds(&mut self, at_ms: i64, limit: u32) -> Result<Vec<HoldView>, Failure> {
        let rows = self
            .query(
                &format!(
                    "SELECT {HOLD_COLUMNS}, fingerprint FROM holds
                      WHERE status = 'active' AND expires_at_ms IS NOT NULL AND expires_at_ms <= $1
                      ORDER BY expires_at_ms LIMIT $2 FOR UPDATE SKIP LOCKED"
                ),
                &[&at_ms, &i64::from(limit)],
            )
            .await?;
        let mut due = Vec::with_capacity(rows.len());
        let mut accounts = BTreeSet::new();
        for row in &rows {
            let stored = stored_hold(row)?;
            let id = stored.view.hold.id.clone();
            // Already loaded here: this transaction's own view of it wins.
            let view = match self.holds.get(&id) {
                Some(Some(known)) => known.stored.view.clone(),
                Some(None) => continue,
                None => {
                    let view = stored.view.clone();
                    self.holds.insert(
                        id,
                        Some(HoldRow {
                            stored,
                            new: false,
                            dirty: false,
                        }),
                    );
                    view
                }
            };
            if view.hold.status == payd_domain::HoldStatus::Active {
                accounts.insert(view.hold.account.as_str().to_owned());
                due.push(view);
            }
        }
        self.lock_accounts(accounts).await?;
        Ok(due)
    }

    async fn next_hold_expiry(&mut self) -> Result<Option<i64>, Failure> {
        self.flush().await?;
        Ok(self
            .query(
                "SELECT MIN(expires_at_ms) FROM holds
                  WHERE status = 'active' AND expires_at_ms IS NOT NULL",
                &[],
            )
            .await?
            .first()
            .map(|row| row.try_get(0))
            .transpose()?
            .flatten())
    }

    async fn insert_withdrawal(&mut self, receipt: &WithdrawalReceipt) -> Result<(), Failure> {
        self.withdrawals.push(receipt.clone());
        Ok(())
    }

    async fn transfer(&mut self, id: &ResourceId) -> Result<Option<StoredTransfer>, Failure> {
        if let Some(known) = self.transfers.get(id) {
            return Ok(known.clone());
        }
        let rows = self
            .query(
                &format!("SELECT {TRANSFER_COLUMNS}, fingerprint FROM transfers WHERE id = $1"),
                &[&id.as_str()],
            )
            .await?;
        let stored = rows
            .first()
            .map(|row| -> Result<StoredTransfer, Failure> {
                Ok(StoredTransfer {
                    view: schema::transfer(row).map_err(rows_error)?,
                    fingerprint: row.try_get(10)?,
                })
            })
            .transpose()?;
        self.transfers.insert(id.clone(), stored.clone());
        Ok(stored)
    }

    async fn insert_transfer(
        &mut self,
        view: &TransferView,
        fingerprint: Option<&str>,
    ) -> Result<bool, Failure> {
        if self.transfer(&view.transfer.id).await?.is_some() {
            return Ok(false);
        }
        self.transfers.insert(
            view.transfer.id.clone(),
            Some(StoredTransfer {
                view: view.clone(),
                fingerprint: fingerprint.map(str::to_owned),
            }),
        );
        self.new_transfers
            .push((view.clone(), fingerprint.map(str::to_owned)));
        Ok(true)
    }

    /// Takes pending transfers no other settler holds (`SKIP LOCKED`), oldest first; locks
    /// their accounts in key order; then keeps only those no earlier pending transfer of
    /// one of their accounts precedes (one another settler holds, or one this settler had
    /// to leave): so per account they settle in acceptance order.
    async fn pending_transfers(&mut self, limit: u32) -> Result<Vec<PendingTransfer>, Failure> {
        let taken: Vec<i64> = self.taken_transfers.iter().copied().collect();
        let rows = self
            .query(
                &format!(
                    "SELECT {TRANSFER_COLUMNS}, seq FROM transfers
                      WHERE status = 'pending' AND NOT (seq = ANY($2))
                      ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED"
                ),
                &[&i64::from(limit), &taken],
            )
            .await?;
        let mut picked = Vec::with_capacity(rows.len());
        let mut accounts = BTreeSet::new();
        for row in &rows {
            let view = schema::transfer(row).map_err(rows_error)?;
            let seq: i64 = row.try_get(10)?;
            accounts.insert(view.transfer.from.as_str().to_owned());
            accounts.insert(view.transfer.to.as_str().to_owned());
            picked.push(PendingTransfer { seq, view });
        }
        if picked.is_empty() {
            return Ok(picked);
        }
        let seqs: Vec<i64> = picked.iter().map(|p| p.seq).collect();
        let ids: Vec<String> = accounts.iter().cloned().collect();
        self.lock_accounts(accounts).await?;
        // The earliest pending transfer of each account that this transaction did not take.
        let blockers = self
            .query(
                "SELECT account, MIN(seq) FROM (
                     SELECT from_account AS account, seq FROM transfers
                      WHERE status = 'pending' AND from_account = ANY($1) AND NOT (seq = ANY($2))
                     UNION ALL
                     SELECT to_account, seq FROM transfers
                      WHERE status = 'pending' AND to_account = ANY($1) AND NOT (seq = ANY($2))
                 ) AS others GROUP BY account",
                &[&ids, &seqs],
            )
            .await?;
        let mut first_waiting: HashMap<String, i64> = HashMap::new();
        for row in &blockers {
            first_waiting.insert(row.try_get(0)?, row.try_get(1)?);
        }
        let mut settleable = Vec::with_capacity(picked.len());
        for pending in picked {
            let transfer = &pending.view.transfer;
            let waits = [transfer.from.as_str(), transfer.to.as_str()]
                .iter()
                .any(|account| {
                    first_waiting
                        .get(*account)
                        .is_some_and(|first| *first < pending.seq)
                });
            if waits {
                // Its accounts' later transfers wait for it too.
                for account in [transfer.from.as_str(), transfer.to.as_str()] {
                    let first = first_waiting
                        .entry(account.to_owned())
                        .or_insert(pending.seq);
                    *first = (*first).min(pending.seq);
                }
                continue;
            }
            self.taken_transfers.insert(pending.seq);
            settleable.push(pending);
        }
        Ok(settleable)
    }

    async fn update_transfer(&mut self, seq: i64, view: &TransferView) -> Result<(), Failure> {
        let fingerprint = self
            .transfers
            .get(&view.transfer.id)
            .and_then(|known| known.as_ref())
            .and_then(|known| known.fingerprint.clone());
        self.transfers.insert(
            view.transfer.id.clone(),
            Some(StoredTransfer {
                view: view.clone(),
                fingerprint,
            }),
        );
        self.settled_transfers.push((seq, view.clone()));
        Ok(())
    }

    async fn append_event(
        &mut self,
        kind: EventKind,
        subject: &str,
        payload: &EventPayload,
    ) -> Result<(), Failure> {
        self.events
            .push((kind, subject.to_owned(), payload.to_json()));
        Ok(())
    }

    async fn insert_payment(
        &mut self,
        payment: &NewPayment,
        hold: Option<&ResourceId>,
    ) -> Result<bool, Failure> {
        self.load_payment(&payment.id).await?;
        if matches!(self.payments.get(&payment.id), Some(Some(_))) {
            return Ok(false);
        }
        let record = PaymentRecord {
            id: payment.id.clone(),
            amount: payment.amount,
            requested_at_ms: payment.requested_at_ms,
            state: PaymentState::new(payment.requested_at_ms),
            attempts: 0,
            version: 0,
            hold: hold.cloned(),
        };
        self.payments.insert(
            payment.id.clone(),
            Some(PaymentRow {
                record,
                new: true,
                base_version: 0,
                attempts_added: 0,
                dirty: false,
            }),
        );
        Ok(true)
    }

    async fn payment(&mut self, id: &CorrelationId) -> Result<Option<PaymentRecord>, Failure> {
        self.load_payment(id).await?;
        Ok(self
            .payments
            .get(id)
            .and_then(|row| row.as_ref())
            .map(|row| row.record.clone()))
    }

    async fn update_payment(
        &mut self,
        before: &PaymentRecord,
        change: &Transition,
    ) -> Result<(), Failure> {
        let row = self
            .payments
            .get_mut(&change.id)
            .and_then(|row| row.as_mut())
            .ok_or_else(|| Failure::invariant(format!("payment {} is not loaded", change.id)))?;
        if row.record.version != before.version {
            return Err(Failure::invariant(format!(
                "payment {} moved during its transition",
                change.id
            )));
        }
        row.record.state = change.next;
        row.record.version += 1;
        if change.counts_attempt {
            row.record.attempts += 1;
            row.attempts_added += 1;
        }
        if row.new {
            // Written by the insert with its final state; the update is not needed.
            return Ok(());
        }
        row.dirty = true;
        Ok(())
    }

    async fn add_booked(
        &mut self,
        processor: Processor,
        requested_at_ms: i64,
        amount: Amount,
    ) -> Result<(), Failure> {
        let total = self
            .totals
            .entry((processor, requested_at_ms.div_euclid(1_000)))
            .or_insert((0, 0));
        total.0 += 1;
        total.1 = total
            .1
            .checked_add(amount.cents())
            .ok_or_else(|| Failure::invariant("booked total overflows"))?;
        Ok(())
    }

    async fn purge_payments(&mut self) -> Result<u64, Failure> {
        self.flush().await?;
        let deleted = self
            .execute("DELETE FROM payments WHERE hold IS NULL", &[])
            .await?;
        self.execute("DELETE FROM payment_totals", &[]).await?;
        self.payments
            .retain(|_, row| row.as_ref().is_some_and(|row| row.record.hold.is_some()));
        Ok(deleted)
    }

    async fn create_webhook(
        &mut self,
        webhook: &NewWebhook,
    ) -> Result<Result<WebhookView, Refusal>, Failure> {
        webhooks::create(&*self.tx, webhook, self.now_ms).await
    }

    async fn delete_webhook(&mut self, id: &ResourceId) -> Result<bool, Failure> {
        webhooks::delete(&*self.tx, id, self.now_ms).await
    }
}
