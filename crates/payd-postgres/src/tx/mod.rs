//! [`PgTx`]: the command layer's transaction ([`LedgerTx`](payd_ledger::LedgerTx)) on
//! PostgreSQL, a unit of work.
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
//!
//! # Layout
//! - this file: the transaction's state, the pipelined prefetch and the row locks, the
//!   on-demand loads, and the decoding of rows;
//! - `ledger`: [`LedgerTx`](payd_ledger::LedgerTx) for [`PgTx`], the command layer's reads
//!   and staged writes;
//! - `flush`: the staged changes written in bulk before the COMMIT.

use std::collections::{BTreeSet, HashMap, HashSet};

use payd_domain::gateway::Processor;
use payd_domain::gateway::payment::PaymentState;
use payd_domain::{
    AccountId, Amount, AuthorizationRequest, Balances, Bucket, Category, Code, CorrelationId,
    EntryCause, EventKind, IdempotencyKey, Mcc, MerchantRules, PriorAuthorization, ResourceId,
    Rules, system_account,
};
use payd_ledger::{Command, Failure, StoredClaim, StoredHold, StoredTransfer};
use payd_ports::{
    Claim, DepositReceipt, Mutation, PaymentRecord, StoredResponse, TransferView, WithdrawalReceipt,
};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::schema::{
    self, BALANCE_COLUMNS, HOLD_COLUMNS, PAYMENT_COLUMNS, TRANSFER_COLUMNS, corrupt,
};

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

// After the macro: a `macro_rules!` is visible only below its definition.
mod flush;
mod ledger;

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

/// The merchant rules' stored version (bumped by every override change).
const READ_MERCHANT_VERSION: &str = "SELECT version FROM merchant_version";

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
    /// Whether new payments' and transfers' messages go to the outbox too
    /// ([`crate::PgConfig::outbox`]).
    pub(crate) outbox: bool,
}

impl WriterState {
    pub(crate) fn new(
        mcc: payd_domain::MccMap,
        slot: i16,
        instance: String,
        outbox: bool,
    ) -> WriterState {
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
            outbox,
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
    /// Whether this transaction compared the cached merchant rules with the stored version.
    rules_current: bool,
    merchant_ops: Vec<(String, Option<&'static str>)>,
    accounts: HashMap<AccountId, AccountRow>,
    /// Accounts known not to exist (as of their lookup in this transaction).
    no_accounts: HashSet<AccountId>,
    entries: Vec<StagedEntry>,
    /// Sequence numbers reserved for entries, in increasing order (taken again at flush
    /// if they are not newer than a chain head the entries link to).
    sequences: Vec<i64>,
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
    /// Fencing tokens as of this transaction, by account (`None`: none recorded yet).
    fences: HashMap<AccountId, Option<i64>>,
    /// Tokens recorded here, written at flush.
    new_fences: HashMap<AccountId, i64>,
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
    /// Whether some command reads or changes the merchant rules (a card decision, an
    /// override): only then is the rules' version read.
    rules: bool,
    /// Whether some command may touch the holds of the payments it names (a transition, a
    /// pay-in): a plain payment's intake does not, and its prefetch skips holds and accounts.
    payment_holds: bool,
    /// Commands that may write journal entries, for the sequence numbers taken ahead.
    entry_commands: i64,
}

impl Keys {
    fn of(commands: &[&Command]) -> Keys {
        let mut keys = Keys::default();
        for command in commands {
            // Every command but a plain payment's intake may write entries (taken ahead;
            // the flush takes more if a batch writes more).
            let plain_payment = matches!(command, Command::AcceptPayment { payment, .. } if payment.payer.is_none());
            if !plain_payment {
                keys.entry_commands += 1;
            }
            match command {
                Command::Authorize { request, .. } | Command::AuthorizeFenced { request, .. } => {
                    keys.accounts.insert(request.account.as_str().to_owned());
                    if let Some(id) = &request.id {
                        keys.transactions.insert(id.as_str().to_owned());
                    }
                    keys.system = true;
                    keys.rules = true;
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
                        keys.payment_holds = true;
                    }
                }
                Command::Transitions { transitions, .. } => {
                    keys.payment_holds = true;
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
                Command::SettleFenced { id, fences, .. } => {
                    keys.transfers.insert(id.as_str().to_owned());
                    for fence in fences {
                        keys.accounts.insert(fence.account.as_str().to_owned());
                    }
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
            Mutation::PutMerchant { .. } | Mutation::DeleteMerchant { .. } => {
                self.rules = true;
            }
            Mutation::CreateWebhook(_) | Mutation::DeleteWebhook { .. } => {}
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
            rules_current: false,
            merchant_ops: Vec::new(),
            accounts: HashMap::new(),
            no_accounts: HashSet::new(),
            entries: Vec::new(),
            sequences: Vec::new(),
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
            fences: HashMap::new(),
            new_fences: HashMap::new(),
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
        let sequences = keys.entry_commands.saturating_mul(ENTRIES_PER_COMMAND);
        let system = system_account();
        let system_id = system.as_str();
        // A payment's hold is loaded with it only where a command may touch it; elsewhere
        // (and wherever this guess is short) `load_hold` takes it on demand, in the same
        // order: payment, then hold, then account.
        let locks_holds = !holds.is_empty() || keys.payment_holds;
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
        let read_version = async {
            if !keys.rules {
                return Ok(Vec::new());
            }
            self.query(READ_MERCHANT_VERSION, &[]).await
        };
        // After every lock of the pipeline, so usually newer than every chain head it links
        // to; `flush` checks that, and takes new ones if not.
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
        if keys.rules {
            self.refresh_rules(&version_rows).await?;
        }
        self.sequences = sequences_of(&sequence_rows)?;
        Ok(())
    }

    /// Reloads the cached merchant rules if `version_rows` (the stored version) differ.
    async fn refresh_rules(&mut self, version_rows: &[Row]) -> Result<(), Failure> {
        let version: i64 = version_rows
            .first()
            .ok_or_else(|| Failure::invariant("merchant_version has no row"))?
            .try_get(0)?;
        if version != self.state.merchant_version {
            let merchants = schema::merchants(&*self.tx).await.map_err(rows_error)?;
            self.state.rules.merchants = MerchantRules::new(merchants);
            self.state.merchant_version = version;
        }
        self.rules_current = true;
        Ok(())
    }

    // ---- on-demand loads -------------------------------------------------------------

    /// The merchant rules, current as of this transaction (read here if the prefetch did
    /// not expect a command to need them).
    pub(crate) async fn current_rules(&mut self) -> Result<&Rules, Failure> {
        if !self.rules_current {
            let rows = self.query(READ_MERCHANT_VERSION, &[]).await?;
            self.refresh_rules(&rows).await?;
        }
        Ok(&self.state.rules)
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
    /// The earliest pending transfer (its `seq`) of each of `accounts`, leaving out
    /// `excluded` (transfers this transaction settles).
    async fn first_pending(
        &self,
        accounts: &[String],
        excluded: &[i64],
    ) -> Result<HashMap<String, i64>, Failure> {
        let rows = self
            .query(
                "SELECT account, MIN(seq) FROM (
                     SELECT from_account AS account, seq FROM transfers
                      WHERE status = 'pending' AND from_account = ANY($1) AND NOT (seq = ANY($2))
                     UNION ALL
                     SELECT to_account, seq FROM transfers
                      WHERE status = 'pending' AND to_account = ANY($1) AND NOT (seq = ANY($2))
                 ) AS others GROUP BY account",
                &[&accounts, &excluded],
            )
            .await?;
        let mut first = HashMap::with_capacity(rows.len());
        for row in &rows {
            first.insert(row.try_get(0)?, row.try_get(1)?);
        }
        Ok(first)
    }

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
