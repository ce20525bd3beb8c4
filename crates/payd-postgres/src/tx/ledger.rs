//! [`LedgerTx`] on a batch's transaction: the command layer's reads and staged writes,
//! served from the rows the prefetch loaded (loading any other on demand).

use std::collections::{BTreeSet, HashMap};

use payd_domain::gateway::Processor;
use payd_domain::gateway::payment::PaymentState;
use payd_domain::{
    AccountId, Amount, AuthorizationRequest, Balances, Category, Code, CorrelationId, Entry,
    EntryCause, EventKind, Fence, IdempotencyKey, MerchantPattern, PriorAuthorization, ResourceId,
    Rules, TransactionId, TransferStatus,
};
use payd_ledger::{
    Failure, LedgerTx, PendingTransfer, StoredClaim, StoredHold, StoredTransfer, Turn,
};
use payd_ports::{
    Claim, DepositReceipt, EventPayload, HoldView, NewPayment, NewWebhook, PaymentRecord, Refusal,
    StoredResponse, Sweep, TransferView, Transition, WebhookView, WithdrawalReceipt,
};

use crate::schema::{HOLD_COLUMNS, TRANSFER_COLUMNS};
use crate::{schema, webhooks};

use super::{
    AccountRow, HoldRow, PaymentRow, PgTx, StagedEntry, deposit_receipt, prior_authorization,
    rows_error, stored_claim, stored_hold,
};

impl LedgerTx for PgTx<'_> {
    fn now_ms(&self) -> i64 {
        self.now_ms
    }

    async fn rules(&mut self) -> Result<&Rules, Failure> {
        self.current_rules().await
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
        let mut first_waiting = self.first_pending(&ids, &seqs).await?;
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

    /// Locks the transfer's row (skipping it if another settler holds it), then its
    /// accounts, then asks whether an earlier transfer of theirs is still pending.
    async fn pending_transfer(&mut self, id: &ResourceId) -> Result<Turn, Failure> {
        let settled_here = self
            .transfers
            .get(id)
            .and_then(Option::as_ref)
            .is_some_and(|known| known.view.status != TransferStatus::Pending);
        if settled_here {
            return Ok(Turn::Gone);
        }
        // Asked before the accounts' locks, which is safe: an earlier pending transfer can
        // only stop being pending later, never appear (a fenced settle holds them anyway).
        let taken: Vec<i64> = self.taken_transfers.iter().copied().collect();
        let rows = self
            .query(
                &format!("{} FOR UPDATE OF t SKIP LOCKED", *schema::PENDING_TURN),
                &[&id.as_str(), &taken],
            )
            .await?;
        let Some(row) = rows.first() else {
            // Settled, unknown, or being settled by another transaction: which one?
            let pending = self
                .query(
                    "SELECT 1 FROM transfers WHERE id = $1 AND status = 'pending'",
                    &[&id.as_str()],
                )
                .await?;
            return Ok(if pending.is_empty() {
                Turn::Gone
            } else {
                Turn::Waiting
            });
        };
        let view = schema::transfer(row).map_err(rows_error)?;
        let seq: i64 = row.try_get(10)?;
        let first: bool = row.try_get(11)?;
        if self.taken_transfers.contains(&seq) {
            return Ok(Turn::Gone);
        }
        if !first {
            return Ok(Turn::Waiting);
        }
        let ids =
            [&view.transfer.from, &view.transfer.to].map(|account| account.as_str().to_owned());
        self.lock_accounts(ids.into_iter().collect()).await?;
        self.taken_transfers.insert(seq);
        Ok(Turn::Ready(PendingTransfer { seq, view }))
    }

    async fn fence_tokens(
        &mut self,
        accounts: &[AccountId],
    ) -> Result<HashMap<AccountId, i64>, Failure> {
        self.lock_accounts(accounts.iter().map(|a| a.as_str().to_owned()).collect())
            .await?;
        let unknown: Vec<&str> = accounts
            .iter()
            .filter(|account| !self.fences.contains_key(*account))
            .map(AccountId::as_str)
            .collect();
        if !unknown.is_empty() {
            let rows = self
                .query(
                    "SELECT account, token FROM account_fences WHERE account = ANY($1)",
                    &[&unknown],
                )
                .await?;
            let mut found = HashMap::new();
            for row in &rows {
                let account: &str = row.try_get(0)?;
                found.insert(account.to_owned(), row.try_get::<_, i64>(1)?);
            }
            for account in accounts {
                if !self.fences.contains_key(account) {
                    let token = found.get(account.as_str()).copied();
                    self.fences.insert(account.clone(), token);
                }
            }
        }
        Ok(accounts
            .iter()
            .filter_map(|account| {
                let token = (*self.fences.get(account)?)?;
                Some((account.clone(), token))
            })
            .collect())
    }

    async fn record_fences(&mut self, fences: &[Fence]) -> Result<(), Failure> {
        for fence in fences {
            let known = self.fences.entry(fence.account.clone()).or_default();
            let token = known.map_or(fence.token, |known| known.max(fence.token));
            *known = Some(token);
            self.new_fences.insert(fence.account.clone(), token);
        }
        Ok(())
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
