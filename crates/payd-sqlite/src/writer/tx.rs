//! [`SqliteTx`]: the command layer's transaction ([`LedgerTx`]) on the writer's connection.
//!
//! Every call runs its SQL at once, inside the writer's open transaction, so later calls
//! see earlier ones; the futures are always ready. The one thing kept back is balances:
//! the writer keeps accounts in memory ([`WriterState::cache`], coherent because it is the
//! only writer) and writes each changed account once, at the end of the batch
//! ([`WriterState::flush_balances`]), which turns N updates of the system account per batch
//! into one.

use std::collections::HashMap;

use payd_domain::gateway::Processor;
use payd_domain::{
    AccountId, Amount, AuthorizationRequest, Balances, Category, Code, CorrelationId, Entry,
    EntryCause, EventKind, Fence, IdempotencyKey, Mcc, MerchantPattern, MerchantRules,
    PriorAuthorization, ResourceId, Rules, TransactionId,
};
use payd_ledger::columns::bucket_column;
use payd_ledger::{
    Failure, LedgerTx, PendingTransfer, StoredClaim, StoredHold, StoredTransfer, Turn,
};
use payd_ports::{
    Claim, DepositReceipt, EventPayload, HoldView, NewPayment, NewWebhook, PaymentRecord, Refusal,
    StoredResponse, Sweep, TransferView, Transition, WebhookView, WithdrawalReceipt,
};
use rusqlite::{Connection, OptionalExtension, params};

use crate::schema::{self, balance_values, balances_from_row};
use crate::wallet::{HOLD_COLUMNS, TRANSFER_COLUMNS, hold_from_row, transfer_from_row};
use crate::{payments, wallet, webhooks};

/// Most accounts whose balances the writer keeps in memory. Past this the cache is emptied
/// after a commit (simple, and a refill costs one indexed read per account).
const CACHE_ACCOUNTS_MAX: usize = 200_000;

/// One cached account: its row number (`accounts.num`), its balances and the sequence of
/// its newest journal entry (the head of its entry chain) as of the current transaction,
/// and whether they still have to be written back before the commit.
#[derive(Clone, Copy)]
struct Cached {
    num: i64,
    balances: Balances,
    last_entry: Option<i64>,
    dirty: bool,
}

/// What the writer thread owns across transactions.
pub(crate) struct WriterState {
    pub(crate) conn: Connection,
    /// The rules decisions use. Merchant commands change them inside the transaction; the
    /// committed version is kept in `merchants_before` until the commit succeeds.
    rules: Rules,
    merchants_before: Option<MerchantRules>,
    /// Balances by account. Coherent because this thread is the only writer: every change
    /// to an account goes through here. Emptied on rollback.
    cache: HashMap<AccountId, Cached>,
    /// Accounts whose cached balances differ from their row in this transaction.
    dirty: Vec<AccountId>,
    /// The lease owner recorded on payments this process dispatches.
    instance: String,
}

impl WriterState {
    pub(crate) fn new(conn: Connection, rules: Rules, instance: String) -> WriterState {
        WriterState {
            conn,
            rules,
            merchants_before: None,
            cache: HashMap::new(),
            dirty: Vec::new(),
            instance,
        }
    }

    /// A transaction's view, at `now_ms`.
    pub(crate) fn tx(&mut self, now_ms: i64) -> SqliteTx<'_> {
        SqliteTx {
            state: self,
            now_ms,
        }
    }

    /// Writes every balance changed in this transaction, once per account.
    pub(crate) fn flush_balances(&mut self) -> Result<(), Failure> {
        let mut statement = self.conn.prepare_cached(
            "UPDATE accounts SET food_available = ?2, food_held = ?3, meal_available = ?4,
                                 meal_held = ?5, cash_available = ?6, cash_held = ?7,
                                 last_entry = ?8
             WHERE num = ?1",
        )?;
        for id in self.dirty.drain(..) {
            let Some(cached) = self.cache.get_mut(&id) else {
                return Err(Failure::invariant(format!(
                    "dirty account {id} left the cache"
                )));
            };
            cached.dirty = false;
            let v = balance_values(&cached.balances);
            let updated = statement.execute(params![
                cached.num,
                v[0],
                v[1],
                v[2],
                v[3],
                v[4],
                v[5],
                cached.last_entry
            ])?;
            if updated != 1 {
                return Err(Failure::invariant(format!("account {id} vanished")));
            }
        }
        Ok(())
    }

    /// After a commit: the rules and the cache are the committed state.
    pub(crate) fn committed(&mut self) {
        self.merchants_before = None;
        if self.cache.len() > CACHE_ACCOUNTS_MAX {
            self.cache.clear();
        }
    }

    /// After a rollback: every in-memory effect of the transaction is undone.
    pub(crate) fn rolled_back(&mut self) {
        self.cache.clear();
        self.dirty.clear();
        if let Some(merchants) = self.merchants_before.take() {
            self.rules.merchants = merchants;
        }
    }

    /// Keeps the committed merchant table before the first change of a transaction.
    fn backup_merchants(&mut self) {
        if self.merchants_before.is_none() {
            self.merchants_before = Some(self.rules.merchants.clone());
        }
    }

    fn cached(&mut self, id: &AccountId) -> Result<&mut Cached, Failure> {
        self.cache
            .get_mut(id)
            .ok_or_else(|| Failure::invariant(format!("account {id} is not loaded")))
    }

    fn mark_dirty(&mut self, id: &AccountId) -> Result<(), Failure> {
        let cached = self.cached(id)?;
        if !cached.dirty {
            cached.dirty = true;
            self.dirty.push(id.clone());
        }
        Ok(())
    }
}

/// One transaction of the writer: see the module documentation.
pub(crate) struct SqliteTx<'w> {
    state: &'w mut WriterState,
    now_ms: i64,
}

impl SqliteTx<'_> {
    fn conn(&self) -> &Connection {
        &self.state.conn
    }

    fn load_balances(&mut self, id: &AccountId) -> Result<Option<Balances>, Failure> {
        if let Some(cached) = self.state.cache.get(id) {
            return Ok(Some(cached.balances));
        }
        let loaded = self
            .conn()
            .prepare_cached(
                "SELECT num, food_available, food_held, meal_available, meal_held,
                        cash_available, cash_held, last_entry FROM accounts WHERE id = ?1",
            )?
            .query_row([id.as_str()], |row| {
                Ok(Cached {
                    num: row.get(0)?,
                    balances: balances_from_row(row, 1)?,
                    last_entry: row.get(7)?,
                    dirty: false,
                })
            })
            .optional()?;
        Ok(loaded.map(|cached| {
            self.state.cache.insert(id.clone(), cached);
            cached.balances
        }))
    }
}

fn transfer_with_fingerprint(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredTransfer> {
    Ok(StoredTransfer {
        view: transfer_from_row(row)?,
        fingerprint: row.get(10)?,
    })
}

impl LedgerTx for SqliteTx<'_> {
    fn now_ms(&self) -> i64 {
        self.now_ms
    }

    async fn rules(&mut self) -> Result<&Rules, Failure> {
        Ok(&self.state.rules)
    }

    async fn balances(&mut self, id: &AccountId) -> Result<Option<Balances>, Failure> {
        self.load_balances(id)
    }

    fn set_balances(&mut self, id: &AccountId, balances: Balances) -> Result<(), Failure> {
        self.state.cached(id)?.balances = balances;
        self.state.mark_dirty(id)
    }

    async fn insert_account(&mut self, id: &AccountId, balances: Balances) -> Result<(), Failure> {
        let values = balance_values(&balances);
        self.conn()
            .prepare_cached(
                "INSERT INTO accounts (id, food_available, food_held, meal_available, meal_held,
                                       cash_available, cash_held, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                id.as_str(),
                values[0],
                values[1],
                values[2],
                values[3],
                values[4],
                values[5],
                self.now_ms
            ])?;
        // The row was just written with these values: cached clean.
        let num = self.conn().last_insert_rowid();
        self.state.cache.insert(
            id.clone(),
            Cached {
                num,
                balances,
                last_entry: None,
                dirty: false,
            },
        );
        Ok(())
    }

    /// One execution of a one-row INSERT per entry rather than one multi-row INSERT: a
    /// statement that may write several rows and abort on a CHECK needs a statement
    /// journal, which cost more.
    async fn insert_entries(
        &mut self,
        entries: &[Entry],
        cause: EntryCause,
        reference: &str,
    ) -> Result<(), Failure> {
        for entry in entries {
            let cached = self.state.cached(&entry.account)?;
            let (num, prev) = (cached.num, cached.last_entry);
            self.conn()
                .prepare_cached(
                    "INSERT INTO entries (account, category, bucket, amount_cents, cause, reference,
                                          created_at_ms, prev)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    num,
                    entry.category.as_str(),
                    bucket_column(entry.bucket),
                    entry.amount.cents(),
                    cause.as_str(),
                    reference,
                    self.now_ms,
                    prev
                ])?;
            // The entry becomes the head of its account's chain; the account row is
            // written back with it by `flush_balances`.
            let sequence = self.conn().last_insert_rowid();
            self.state.cached(&entry.account)?.last_entry = Some(sequence);
            self.state.mark_dirty(&entry.account)?;
        }
        Ok(())
    }

    async fn prior_authorization(
        &mut self,
        id: &TransactionId,
    ) -> Result<Option<PriorAuthorization>, Failure> {
        let row = self
            .conn()
            .prepare_cached(
                "SELECT account, amount_cents, mcc, merchant, code FROM transactions
                  WHERE client_id = ?1",
            )?
            .query_row([id.as_str()], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, u16>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                ))
            })
            .optional()?;
        let Some((account, amount_cents, mcc, merchant, code)) = row else {
            return Ok(None);
        };
        Ok(Some(PriorAuthorization {
            account: schema::account_from_text(&account)?,
            amount: Amount::from_cents(amount_cents),
            mcc: Mcc::from_code(mcc).ok_or_else(|| schema::corrupt("mcc", &mcc.to_string()))?,
            merchant,
            code: Code::parse(&code).ok_or_else(|| schema::corrupt("code", &code))?,
        }))
    }

    async fn insert_transaction(
        &mut self,
        request: &AuthorizationRequest,
        code: Code,
        category: Option<Category>,
    ) -> Result<i64, Failure> {
        self.conn()
            .prepare_cached(
                "INSERT INTO transactions (client_id, account, amount_cents, mcc, merchant, code,
                                           category, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                request.id.as_ref().map(TransactionId::as_str),
                request.account.as_str(),
                request.amount.cents(),
                request.mcc.code(),
                request.merchant,
                code.as_str(),
                category.map(Category::as_str),
                self.now_ms
            ])?;
        Ok(self.conn().last_insert_rowid())
    }

    async fn deposit(&mut self, key: &IdempotencyKey) -> Result<Option<DepositReceipt>, Failure> {
        let row = self
            .conn()
            .prepare_cached(
                "SELECT account, category, amount_cents, available_after_cents, created_at_ms
                 FROM deposits WHERE key = ?1",
            )?
            .query_row([key.as_str()], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, i64>(4)?,
                ))
            })
            .optional()?;
        let Some((account, category, amount, available_after, created_at_ms)) = row else {
            return Ok(None);
        };
        Ok(Some(DepositReceipt {
            key: key.clone(),
            account: schema::account_from_text(&account)?,
            category: schema::category_from_text(&category)?,
            amount: Amount::from_cents(amount),
            available_after: Amount::from_cents(available_after),
            created_at_ms,
            replayed: false,
        }))
    }

    async fn insert_deposit(&mut self, receipt: &DepositReceipt) -> Result<(), Failure> {
        self.conn()
            .prepare_cached(
                "INSERT INTO deposits (key, account, category, amount_cents, available_after_cents,
                                       created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                receipt.key.as_str(),
                receipt.account.as_str(),
                receipt.category.as_str(),
                receipt.amount.cents(),
                receipt.available_after.cents(),
                receipt.created_at_ms
            ])?;
        Ok(())
    }

    async fn put_merchant(
        &mut self,
        pattern: &MerchantPattern,
        category: Category,
    ) -> Result<bool, Failure> {
        let text = pattern.to_string();
        let existed = self
            .conn()
            .prepare_cached("SELECT 1 FROM merchants WHERE pattern = ?1")?
            .query_row([&text], |_| Ok(()))
            .optional()?
            .is_some();
        self.conn()
            .prepare_cached(
                "INSERT INTO merchants (pattern, category) VALUES (?1, ?2)
                 ON CONFLICT (pattern) DO UPDATE SET category = excluded.category",
            )?
            .execute([text.as_str(), category.as_str()])?;
        self.state.backup_merchants();
        self.state.rules.merchants.insert(pattern.clone(), category);
        Ok(!existed)
    }

    async fn delete_merchant(&mut self, pattern: &MerchantPattern) -> Result<bool, Failure> {
        let deleted = self
            .conn()
            .prepare_cached("DELETE FROM merchants WHERE pattern = ?1")?
            .execute([pattern.to_string()])?;
        if deleted > 0 {
            self.state.backup_merchants();
            self.state.rules.merchants.remove(pattern);
        }
        Ok(deleted > 0)
    }

    async fn stored_response(&mut self, key: &str) -> Result<Option<StoredClaim>, Failure> {
        Ok(self
            .conn()
            .prepare_cached("SELECT fingerprint, status, body FROM idempotency WHERE key = ?1")?
            .query_row([key], |row| {
                Ok(StoredClaim {
                    fingerprint: row.get(0)?,
                    response: StoredResponse {
                        status: row.get(1)?,
                        body: row.get(2)?,
                    },
                })
            })
            .optional()?)
    }

    async fn store_response(
        &mut self,
        claim: &Claim,
        response: &StoredResponse,
    ) -> Result<(), Failure> {
        self.conn()
            .prepare_cached(
                "INSERT INTO idempotency (key, fingerprint, status, body, created_at_ms,
                                          expires_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                claim.key,
                claim.fingerprint,
                response.status,
                response.body,
                self.now_ms,
                claim.expires_at_ms
            ])?;
        Ok(())
    }

    async fn purge_idempotency(&mut self, now_ms: i64, limit: u32) -> Result<Sweep, Failure> {
        let deleted = self
            .conn()
            .prepare_cached(
                "DELETE FROM idempotency WHERE key IN (
                     SELECT key FROM idempotency WHERE expires_at_ms <= ?1 LIMIT ?2)",
            )?
            .execute(params![now_ms, limit])?;
        let next_due_ms: Option<i64> = self
            .conn()
            .prepare_cached(
                "SELECT MIN(expires_at_ms) FROM idempotency WHERE expires_at_ms IS NOT NULL",
            )?
            .query_row([], |row| row.get(0))?;
        Ok(Sweep {
            done: u32::try_from(deleted).unwrap_or(u32::MAX),
            more: deleted as u64 >= u64::from(limit),
            next_due_ms,
        })
    }

    async fn hold(&mut self, id: &ResourceId) -> Result<Option<StoredHold>, Failure> {
        Ok(self
            .conn()
            .prepare_cached(&format!(
                "SELECT {HOLD_COLUMNS}, fingerprint FROM holds WHERE id = ?1"
            ))?
            .query_row([id.as_str()], |row| {
                Ok(StoredHold {
                    view: hold_from_row(row)?,
                    fingerprint: row.get(10)?,
                })
            })
            .optional()?)
    }

    async fn insert_hold(
        &mut self,
        view: &HoldView,
        fingerprint: Option<&str>,
    ) -> Result<(), Failure> {
        let hold = &view.hold;
        self.conn()
            .prepare_cached(
                "INSERT INTO holds (id, account, category, amount_cents, captured_cents, status,
                                    expires_at_ms, payment, fingerprint, created_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, 0, 'active', ?5, ?6, ?7, ?8, ?8)",
            )?
            .execute(params![
                hold.id.as_str(),
                hold.account.as_str(),
                hold.category.as_str(),
                hold.amount.cents(),
                hold.expires_at_ms,
                view.payment.as_ref().map(CorrelationId::as_str),
                fingerprint,
                view.created_at_ms
            ])?;
        Ok(())
    }

    async fn update_hold(&mut self, view: &HoldView) -> Result<(), Failure> {
        let hold = &view.hold;
        let updated = self
            .conn()
            .prepare_cached(
                "UPDATE holds SET status = ?2, captured_cents = ?3, updated_at_ms = ?4
                  WHERE id = ?1 AND status = 'active'",
            )?
            .execute(params![
                hold.id.as_str(),
                hold.status.as_str(),
                hold.captured.cents(),
                view.updated_at_ms
            ])?;
        if updated != 1 {
            return Err(Failure::invariant(format!(
                "hold {} was not active",
                hold.id
            )));
        }
        Ok(())
    }

    async fn due_holds(&mut self, at_ms: i64, limit: u32) -> Result<Vec<HoldView>, Failure> {
        let mut statement = self.conn().prepare_cached(&format!(
            "SELECT {HOLD_COLUMNS} FROM holds
              WHERE status = 'active' AND expires_at_ms IS NOT NULL AND expires_at_ms <= ?1
              ORDER BY expires_at_ms LIMIT ?2"
        ))?;
        let due = statement
            .query_map(params![at_ms, limit], hold_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(due)
    }

    async fn next_hold_expiry(&mut self) -> Result<Option<i64>, Failure> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT MIN(expires_at_ms) FROM holds
                  WHERE status = 'active' AND expires_at_ms IS NOT NULL",
            )?
            .query_row([], |row| row.get(0))?)
    }

    async fn insert_withdrawal(&mut self, receipt: &WithdrawalReceipt) -> Result<(), Failure> {
        let inserted = self
            .conn()
            .prepare_cached(
                "INSERT INTO withdrawals (id, account, category, amount_cents,
                                          available_after_cents, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO NOTHING",
            )?
            .execute(params![
                receipt.id.as_str(),
                receipt.account.as_str(),
                receipt.category.as_str(),
                receipt.amount.cents(),
                receipt.available_after.cents(),
                receipt.created_at_ms
            ])?;
        if inserted != 1 {
            // Ids are generated UUIDs: a clash is a bug, and the whole batch rolls back.
            return Err(Failure::invariant(format!(
                "withdrawal id {} already used",
                receipt.id
            )));
        }
        Ok(())
    }

    async fn transfer(&mut self, id: &ResourceId) -> Result<Option<StoredTransfer>, Failure> {
        Ok(self
            .conn()
            .prepare_cached(&format!(
                "SELECT {TRANSFER_COLUMNS}, fingerprint FROM transfers WHERE id = ?1"
            ))?
            .query_row([id.as_str()], transfer_with_fingerprint)
            .optional()?)
    }

    async fn insert_transfer(
        &mut self,
        view: &TransferView,
        fingerprint: Option<&str>,
    ) -> Result<bool, Failure> {
        let transfer = &view.transfer;
        let inserted = self
            .conn()
            .prepare_cached(
                "INSERT INTO transfers (id, from_account, to_account, category, amount_cents,
                                        description, status, fingerprint, created_at_ms,
                                        updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8, ?8)
                 ON CONFLICT (id) DO NOTHING",
            )?
            .execute(params![
                transfer.id.as_str(),
                transfer.from.as_str(),
                transfer.to.as_str(),
                transfer.category.as_str(),
                transfer.amount.cents(),
                view.description,
                fingerprint,
                view.created_at_ms
            ])?;
        Ok(inserted == 1)
    }

    /// Oldest first by `seq`, the acceptance order: one writer settles, so in order per
    /// account. With the row number, so the update finds the row by it, not by the id
    /// index.
    async fn pending_transfers(&mut self, limit: u32) -> Result<Vec<PendingTransfer>, Failure> {
        let mut statement = self.conn().prepare_cached(&format!(
            "SELECT {TRANSFER_COLUMNS}, seq FROM transfers WHERE status = 'pending'
              ORDER BY seq LIMIT ?1"
        ))?;
        let pending = statement
            .query_map([limit], |row| {
                Ok(PendingTransfer {
                    seq: row.get(10)?,
                    view: transfer_from_row(row)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(pending)
    }

    /// One writer: nothing else settles meanwhile, so the turn is the order in the table.
    async fn pending_transfer(&mut self, id: &ResourceId) -> Result<Turn, Failure> {
        Ok(match wallet::pending_turn(self.conn(), id)? {
            None => Turn::Gone,
            Some((_, _, false)) => Turn::Waiting,
            Some((seq, view, true)) => Turn::Ready(PendingTransfer { seq, view }),
        })
    }

    async fn fence_tokens(
        &mut self,
        accounts: &[AccountId],
    ) -> Result<HashMap<AccountId, i64>, Failure> {
        let mut statement = self
            .conn()
            .prepare_cached("SELECT token FROM account_fences WHERE account = ?1")?;
        let mut tokens = HashMap::with_capacity(accounts.len());
        for account in accounts {
            if let Some(token) = statement
                .query_row([account.as_str()], |row| row.get::<_, i64>(0))
                .optional()?
            {
                tokens.insert(account.clone(), token);
            }
        }
        Ok(tokens)
    }

    async fn record_fences(&mut self, fences: &[Fence]) -> Result<(), Failure> {
        let mut statement = self.conn().prepare_cached(
            "INSERT INTO account_fences (account, token) VALUES (?1, ?2)
             ON CONFLICT (account) DO UPDATE SET token = MAX(token, excluded.token)",
        )?;
        for fence in fences {
            statement.execute(params![fence.account.as_str(), fence.token])?;
        }
        Ok(())
    }

    async fn update_transfer(&mut self, seq: i64, view: &TransferView) -> Result<(), Failure> {
        let reason = payd_ledger::columns::transfer_reason(view.status);
        let updated = self
            .conn()
            .prepare_cached(
                "UPDATE transfers SET status = ?2, reason = ?3, updated_at_ms = ?4
                  WHERE seq = ?1 AND status = 'pending'",
            )?
            .execute(params![
                seq,
                view.status.as_str(),
                reason,
                view.updated_at_ms
            ])?;
        if updated != 1 {
            return Err(Failure::invariant(format!(
                "transfer {} was not pending",
                view.transfer.id
            )));
        }
        Ok(())
    }

    async fn append_event(
        &mut self,
        kind: EventKind,
        subject: &str,
        payload: &EventPayload,
    ) -> Result<(), Failure> {
        Ok(wallet::append_event(
            self.conn(),
            kind,
            subject,
            payload,
            self.now_ms,
        )?)
    }

    async fn insert_payment(
        &mut self,
        payment: &NewPayment,
        hold: Option<&ResourceId>,
    ) -> Result<bool, Failure> {
        Ok(payments::insert(
            self.conn(),
            payment,
            hold.map(ResourceId::as_str),
            self.now_ms,
        )?)
    }

    async fn payment(&mut self, id: &CorrelationId) -> Result<Option<PaymentRecord>, Failure> {
        Ok(payments::payment(self.conn(), id)?)
    }

    async fn update_payment(
        &mut self,
        before: &PaymentRecord,
        change: &Transition,
    ) -> Result<(), Failure> {
        let guarded = Transition {
            expected_version: before.version,
            ..change.clone()
        };
        if !payments::update(self.conn(), &guarded, &self.state.instance, self.now_ms)? {
            return Err(Failure::invariant(format!(
                "payment {} moved during its transition",
                change.id
            )));
        }
        Ok(())
    }

    async fn add_booked(
        &mut self,
        processor: Processor,
        requested_at_ms: i64,
        amount: Amount,
    ) -> Result<(), Failure> {
        Ok(payments::add_booked(
            self.conn(),
            processor,
            requested_at_ms,
            amount,
        )?)
    }

    async fn purge_payments(&mut self) -> Result<u64, Failure> {
        Ok(payments::purge(self.conn())?)
    }

    async fn create_webhook(
        &mut self,
        webhook: &NewWebhook,
    ) -> Result<Result<WebhookView, Refusal>, Failure> {
        Ok(webhooks::create(self.conn(), webhook, self.now_ms)?)
    }

    async fn delete_webhook(&mut self, id: &ResourceId) -> Result<bool, Failure> {
        Ok(webhooks::delete(self.conn(), id, self.now_ms)?)
    }
}
