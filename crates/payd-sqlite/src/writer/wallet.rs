//! The writer's wallet commands: holds, withdrawals, transfers, pay-in holds, stored
//! idempotent responses and outbox events. Each decision is `payd_domain`'s (`hold`,
//! `transfer`); this file loads what a decision needs, posts the entries it returns through
//! [`Writer::post`] (the one way a wallet command changes a balance), and records the
//! result, inside the writer's transaction.

use payd_domain::gateway::payment::PaymentState;
use payd_domain::{
    AccountId, Amount, Entry, EntryCause, EventKind, Hold, HoldError, HoldStatus, MovementError,
    ResourceId, TransferStatus, hold, transfer,
};
use payd_ports::{
    Claim, Effect, HEADER_KEY_PREFIX, HoldView, Intake, LedgerError, Mutation, NewHold, NewPayment,
    NewTransfer, NewWithdrawal, Replied, StoredResponse, Sweep, TransferView, Transition,
    WithdrawalReceipt,
};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;

use super::{Failure, Writer};
use crate::payments;
use crate::wallet::{
    HOLD_COLUMNS, TRANSFER_COLUMNS, append_event, hold_from_row, hold_payload, transfer_from_row,
    transfer_payload,
};

fn hold_error(error: HoldError) -> LedgerError {
    match error {
        HoldError::InsufficientFunds => LedgerError::InsufficientFunds,
        HoldError::InvalidAmount => LedgerError::Invalid("amount must be positive".to_owned()),
        HoldError::ExceedsHold => LedgerError::CaptureExceedsHold,
        HoldError::NotActive(status) => LedgerError::HoldNotActive(status),
        HoldError::Expired => LedgerError::HoldExpired,
    }
}

fn movement_error(error: MovementError) -> LedgerError {
    match error {
        MovementError::InsufficientFunds => LedgerError::InsufficientFunds,
        MovementError::Overflow => LedgerError::BalanceOverflow,
    }
}

fn deposit_key_exists(conn: &Connection, key: &str) -> Result<bool, Failure> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM deposits WHERE key = ?1")?
        .query_row([key], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Whether an `Idempotency-Key` is held by a stored wallet response (so a deposit cannot
/// reuse it).
pub(super) fn header_key_claimed(conn: &Connection, key: &str) -> Result<bool, Failure> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM idempotency WHERE key = ?1")?
        .query_row([format!("{HEADER_KEY_PREFIX}{key}")], |_| Ok(()))
        .optional()?
        .is_some())
}

/// `claim` if it is made by the id of the resource `mutation` creates (a transfer or a
/// hold the client named; such claims are kept forever): the resource row keeps it.
fn resource_claim<'a>(mutation: &Mutation, claim: Option<&'a Claim>) -> Option<&'a Claim> {
    claim.filter(|claim| {
        claim.expires_at_ms.is_none()
            && !claim.key.starts_with(HEADER_KEY_PREFIX)
            && matches!(
                mutation,
                Mutation::SubmitTransfer(_) | Mutation::PlaceHold(_)
            )
    })
}

/// Deletes up to `limit` idempotency keys whose retention ended at `now_ms`.
pub(super) fn purge_idempotency(
    conn: &Connection,
    now_ms: i64,
    limit: u32,
) -> Result<Sweep, Failure> {
    let deleted = conn
        .prepare_cached(
            "DELETE FROM idempotency WHERE key IN (
                 SELECT key FROM idempotency WHERE expires_at_ms <= ?1 LIMIT ?2)",
        )?
        .execute(params![now_ms, limit])?;
    let next_due_ms: Option<i64> = conn
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

impl Writer {
    /// Applies one mutation, idempotently under `claim` (see `payd_ports::wallet`).
    pub(super) fn execute(
        &mut self,
        mutation: &Mutation,
        claim: Option<&Claim>,
        now_ms: i64,
    ) -> Result<Result<Replied<Effect>, LedgerError>, Failure> {
        if let Some(claim) = claim {
            let stored = self
                .conn
                .prepare_cached("SELECT fingerprint, status, body FROM idempotency WHERE key = ?1")?
                .query_row([&claim.key], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, u16>(1)?,
                        row.get::<_, Vec<u8>>(2)?,
                    ))
                })
                .optional()?;
            if let Some((fingerprint, status, body)) = stored {
                return Ok(if fingerprint == claim.fingerprint {
                    Ok(Replied::Replayed(StoredResponse { status, body }))
                } else {
                    Err(LedgerError::IdempotencyKeyReused)
                });
            }
        }
        let resource_claim = resource_claim(mutation, claim);
        // Deposits keep their keys (and receipts) in their own table; an `Idempotency-Key`
        // is one namespace, so a key a deposit used is taken for anything else.
        if let Some(key) = claim.and_then(|claim| claim.key.strip_prefix(HEADER_KEY_PREFIX))
            && deposit_key_exists(&self.conn, key)?
        {
            return Ok(Err(LedgerError::IdempotencyKeyReused));
        }
        let fingerprint = resource_claim.map(|claim| claim.fingerprint.as_str());
        let outcome = self.mutate(mutation, fingerprint, now_ms)?;
        // The id is taken: by this very request before (a replay), or by another.
        if let (Some(claim), Err(LedgerError::ResourceExists)) = (resource_claim, &outcome)
            && let Some(replayed) = self.replay_creation(mutation, claim)?
        {
            return Ok(replayed);
        }
        // A resource created under its own id keeps the claim in its row; refusals (and
        // every other claim) are stored here.
        let kept_by_resource = resource_claim.is_some() && outcome.is_ok();
        if let Some(claim) = claim
            && !kept_by_resource
            && !matches!(outcome, Err(LedgerError::Unavailable(_)))
        {
            let response = (claim.render)(&outcome);
            self.conn
                .prepare_cached(
                    "INSERT INTO idempotency (key, fingerprint, status, body, created_at_ms, expires_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    claim.key,
                    claim.fingerprint,
                    response.status,
                    response.body,
                    now_ms,
                    claim.expires_at_ms
                ])?;
        }
        Ok(outcome.map(Replied::Fresh))
    }

    /// Replays the first response to a resource created under `claim` (its own id): the
    /// response is rendered again from the row's creation values, which are exactly what
    /// the first response was rendered from. `None`: no such resource, or one created
    /// without this kind of claim (the mutation then answers `ResourceExists`).
    fn replay_creation(
        &self,
        mutation: &Mutation,
        claim: &Claim,
    ) -> Result<Option<Result<Replied<Effect>, LedgerError>>, Failure> {
        let (fingerprint, created) = match mutation {
            Mutation::SubmitTransfer(new) => {
                let row = self
                    .conn
                    .prepare_cached(&format!(
                        "SELECT {TRANSFER_COLUMNS}, fingerprint FROM transfers WHERE id = ?1"
                    ))?
                    .query_row([new.transfer.id.as_str()], |row| {
                        Ok((transfer_from_row(row)?, row.get::<_, Option<String>>(10)?))
                    })
                    .optional()?;
                let Some((view, fingerprint)) = row else {
                    return Ok(None);
                };
                let created = TransferView {
                    status: TransferStatus::Pending,
                    updated_at_ms: view.created_at_ms,
                    ..view
                };
                (fingerprint, Effect::Transfer(created))
            }
            Mutation::PlaceHold(new) => {
                let row = self
                    .conn
                    .prepare_cached(&format!(
                        "SELECT {HOLD_COLUMNS}, fingerprint FROM holds WHERE id = ?1"
                    ))?
                    .query_row([new.id.as_str()], |row| {
                        Ok((hold_from_row(row)?, row.get::<_, Option<String>>(10)?))
                    })
                    .optional()?;
                let Some((view, fingerprint)) = row else {
                    return Ok(None);
                };
                let created = HoldView {
                    hold: Hold {
                        status: HoldStatus::Active,
                        captured: Amount::ZERO,
                        ..view.hold
                    },
                    updated_at_ms: view.created_at_ms,
                    ..view
                };
                (fingerprint, Effect::Hold(created))
            }
            _ => return Ok(None),
        };
        Ok(match fingerprint {
            None => None,
            Some(first) if first == claim.fingerprint => {
                Some(Ok(Replied::Replayed((claim.render)(&Ok(created)))))
            }
            Some(_) => Some(Err(LedgerError::IdempotencyKeyReused)),
        })
    }

    fn mutate(
        &mut self,
        mutation: &Mutation,
        fingerprint: Option<&str>,
        now_ms: i64,
    ) -> Result<Result<Effect, LedgerError>, Failure> {
        Ok(match mutation {
            Mutation::OpenAccount(account) => {
                self.open_account(account, now_ms)?.map(Effect::Account)
            }
            Mutation::PlaceHold(new) => self
                .place_hold(new, None, fingerprint, now_ms)?
                .map(Effect::Hold),
            Mutation::CaptureHold { id, amount } => self
                .finish_hold(id, now_ms, |hold| {
                    hold::capture(hold, *amount, &payd_domain::system_account(), now_ms)
                })?
                .map(Effect::Hold),
            Mutation::VoidHold { id } => self
                .finish_hold(id, now_ms, |hold| hold::void(hold, now_ms))?
                .map(Effect::Hold),
            Mutation::Withdraw(withdrawal) => {
                self.withdraw(withdrawal, now_ms)?.map(Effect::Withdrawal)
            }
            Mutation::SubmitTransfer(new) => self
                .submit_transfer(new, fingerprint, now_ms)?
                .map(Effect::Transfer),
            Mutation::PutMerchant { pattern, category } => Ok(Effect::Merchant {
                pattern: pattern.clone(),
                category: *category,
                created: self.put_merchant(pattern, *category)?,
            }),
            Mutation::DeleteMerchant { pattern } => {
                if self.delete_merchant(pattern)? {
                    Ok(Effect::MerchantDeleted(pattern.clone()))
                } else {
                    Err(LedgerError::MerchantNotFound)
                }
            }
            Mutation::CreateWebhook(webhook) => {
                crate::webhooks::create(&self.conn, webhook, now_ms)?.map(|view| Effect::Webhook {
                    view,
                    secret: webhook.secret.clone(),
                })
            }
            Mutation::DeleteWebhook { id } => {
                if crate::webhooks::delete(&self.conn, id, now_ms)? {
                    Ok(Effect::WebhookDeleted(id.clone()))
                } else {
                    Err(LedgerError::WebhookNotFound)
                }
            }
        })
    }

    /// Applies `entries` to the balances, all or none, and journals them. `Err` (and
    /// nothing changed) if a balance would go negative or overflow.
    fn post(
        &mut self,
        entries: &[Entry],
        cause: EntryCause,
        reference: &str,
        now_ms: i64,
    ) -> Result<Result<(), MovementError>, Failure> {
        let mut next: Vec<(AccountId, payd_domain::Balances)> = Vec::with_capacity(3);
        for entry in entries {
            let current = match next.iter().find(|(id, _)| *id == entry.account) {
                Some((_, balances)) => *balances,
                None => self.balances(&entry.account)?.ok_or_else(|| {
                    Failure::Invariant(format!("entry for missing account {}", entry.account))
                })?,
            };
            let after = match current.apply(
                entry.category,
                entry.bucket,
                entry.amount,
                entry.account.is_system(),
            ) {
                Ok(after) => after,
                Err(error) => return Ok(Err(error)),
            };
            match next.iter_mut().find(|(id, _)| *id == entry.account) {
                Some(slot) => slot.1 = after,
                None => next.push((entry.account.clone(), after)),
            }
        }
        for (id, balances) in next {
            self.set_balances(&id, balances)?;
        }
        self.insert_entries(entries, cause, reference, now_ms)?;
        Ok(Ok(()))
    }

    // ---- holds -----------------------------------------------------------------------

    /// Places a hold; `payment` when it backs a pay-in (no expiry, journaled as `payment`).
    fn place_hold(
        &mut self,
        new: &NewHold,
        payment: Option<&payd_domain::CorrelationId>,
        fingerprint: Option<&str>,
        now_ms: i64,
    ) -> Result<Result<HoldView, LedgerError>, Failure> {
        if self.load_hold(&new.id)?.is_some() {
            return Ok(Err(LedgerError::ResourceExists));
        }
        if new.account.is_system() {
            return Ok(Err(LedgerError::AccountNotFound));
        }
        let Some(balances) = self.balances(&new.account)? else {
            return Ok(Err(LedgerError::AccountNotFound));
        };
        let expires_at_ms = payment.is_none().then_some(new.expires_at_ms);
        let step = match hold::place(
            new.id.clone(),
            new.account.clone(),
            new.category,
            new.amount,
            expires_at_ms,
            &balances,
        ) {
            Ok(step) => step,
            Err(error) => return Ok(Err(hold_error(error))),
        };
        let (cause, reference) = match payment {
            Some(payment) => (EntryCause::Payment, payment.as_str()),
            None => (EntryCause::Hold, new.id.as_str()),
        };
        if let Err(error) = self.post(&step.entries, cause, reference, now_ms)? {
            return Ok(Err(movement_error(error)));
        }
        let hold = step.hold;
        self.conn
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
                payment.map(|p| p.as_str()),
                fingerprint,
                now_ms
            ])?;
        Ok(Ok(HoldView {
            hold,
            payment: payment.cloned(),
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        }))
    }

    fn load_hold(&self, id: &ResourceId) -> Result<Option<HoldView>, Failure> {
        Ok(self
            .conn
            .prepare_cached(&format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id = ?1"))?
            .query_row([id.as_str()], hold_from_row)
            .optional()?)
    }

    /// Captures or voids a hold through the API. A hold whose time is up is expired here
    /// (released, `hold.expired` announced) and the request answered `HoldExpired`; a
    /// pay-in's hold follows its payment and is refused.
    fn finish_hold(
        &mut self,
        id: &ResourceId,
        now_ms: i64,
        step: impl FnOnce(&Hold) -> Result<payd_domain::HoldStep, HoldError>,
    ) -> Result<Result<HoldView, LedgerError>, Failure> {
        let Some(view) = self.load_hold(id)? else {
            return Ok(Err(LedgerError::HoldNotFound));
        };
        if view.payment.is_some() {
            return Ok(Err(LedgerError::HoldOwnedByPayment));
        }
        match step(&view.hold) {
            Ok(step) => Ok(self
                .apply_hold_step(view, step, now_ms)?
                .map_err(movement_error)),
            Err(HoldError::Expired) => {
                if let Some(step) = hold::expire(&view.hold, now_ms)
                    && let Err(error) = self.apply_hold_step(view, step, now_ms)?
                {
                    return Ok(Err(movement_error(error)));
                }
                Ok(Err(LedgerError::HoldExpired))
            }
            Err(error) => Ok(Err(hold_error(error))),
        }
    }

    /// Posts a hold step's entries, stores the hold's new status and announces it.
    fn apply_hold_step(
        &mut self,
        view: HoldView,
        step: payd_domain::HoldStep,
        now_ms: i64,
    ) -> Result<Result<HoldView, MovementError>, Failure> {
        let (cause, kind) = match step.hold.status {
            HoldStatus::Captured => (EntryCause::Capture, EventKind::HoldCaptured),
            HoldStatus::Voided => (EntryCause::Void, EventKind::HoldVoided),
            HoldStatus::Expired => (EntryCause::Expiry, EventKind::HoldExpired),
            HoldStatus::Active => {
                return Err(Failure::Invariant("a hold step left it active".to_owned()));
            }
        };
        // A pay-in's movements are journaled under its payment, like its hold was.
        let (cause, reference) = match &view.payment {
            Some(payment) => (EntryCause::Payment, payment.as_str().to_owned()),
            None => (cause, view.hold.id.as_str().to_owned()),
        };
        if let Err(error) = self.post(&step.entries, cause, &reference, now_ms)? {
            return Ok(Err(error));
        }
        let hold = step.hold;
        let updated = self
            .conn
            .prepare_cached(
                "UPDATE holds SET status = ?2, captured_cents = ?3, updated_at_ms = ?4
                  WHERE id = ?1 AND status = 'active'",
            )?
            .execute(params![
                hold.id.as_str(),
                hold.status.as_str(),
                hold.captured.cents(),
                now_ms
            ])?;
        if updated != 1 {
            return Err(Failure::Invariant(format!(
                "hold {} was not active",
                hold.id
            )));
        }
        let after = HoldView {
            hold,
            updated_at_ms: now_ms,
            ..view
        };
        append_event(
            &self.conn,
            kind,
            after.hold.id.as_str(),
            &hold_payload(&after),
            now_ms,
        )?;
        Ok(Ok(after))
    }

    /// Expires up to `limit` active holds due at `at_ms`.
    pub(super) fn expire_holds(
        &mut self,
        at_ms: i64,
        limit: u32,
        now_ms: i64,
    ) -> Result<Sweep, Failure> {
        let due: Vec<HoldView> = {
            let mut statement = self.conn.prepare_cached(&format!(
                "SELECT {HOLD_COLUMNS} FROM holds
                  WHERE status = 'active' AND expires_at_ms IS NOT NULL AND expires_at_ms <= ?1
                  ORDER BY expires_at_ms LIMIT ?2"
            ))?;
            statement
                .query_map(params![at_ms, limit], hold_from_row)?
                .collect::<rusqlite::Result<_>>()?
        };
        let mut done = 0_u32;
        for view in due {
            if let Some(step) = hold::expire(&view.hold, at_ms) {
                self.apply_hold_step(view, step, now_ms)?
                    .map_err(|error| Failure::Invariant(format!("releasing a hold: {error}")))?;
                done += 1;
            }
        }
        let next_due_ms: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT MIN(expires_at_ms) FROM holds
                  WHERE status = 'active' AND expires_at_ms IS NOT NULL",
            )?
            .query_row([], |row| row.get(0))?;
        Ok(Sweep {
            done,
            more: done >= limit,
            next_due_ms,
        })
    }

    // ---- withdrawals and transfers ---------------------------------------------------

    fn withdraw(
        &mut self,
        withdrawal: &NewWithdrawal,
        now_ms: i64,
    ) -> Result<Result<WithdrawalReceipt, LedgerError>, Failure> {
        if withdrawal.account.is_system() {
            return Ok(Err(LedgerError::AccountNotFound));
        }
        let Some(balances) = self.balances(&withdrawal.account)? else {
            return Ok(Err(LedgerError::AccountNotFound));
        };
        let system = self.system.clone();
        let Some(entries) = transfer::withdraw(
            &withdrawal.account,
            &balances,
            withdrawal.category,
            withdrawal.amount,
            &system,
        ) else {
            return Ok(Err(if withdrawal.amount.is_positive() {
                LedgerError::InsufficientFunds
            } else {
                LedgerError::Invalid("amount must be positive".to_owned())
            }));
        };
        if let Err(error) = self.post(
            &entries,
            EntryCause::Withdrawal,
            withdrawal.id.as_str(),
            now_ms,
        )? {
            return Ok(Err(movement_error(error)));
        }
        let available_after = self
            .balances(&withdrawal.account)?
            .map_or(Amount::ZERO, |b| b.get(withdrawal.category).available);
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO withdrawals (id, account, category, amount_cents, available_after_cents, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO NOTHING",
            )?
            .execute(params![
                withdrawal.id.as_str(),
                withdrawal.account.as_str(),
                withdrawal.category.as_str(),
                withdrawal.amount.cents(),
                available_after.cents(),
                now_ms
            ])?;
        if inserted != 1 {
            // Ids are generated UUIDs: a clash is a bug, and the whole batch rolls back.
            return Err(Failure::Invariant(format!(
                "withdrawal id {} already used",
                withdrawal.id
            )));
        }
        Ok(Ok(WithdrawalReceipt {
            id: withdrawal.id.clone(),
            account: withdrawal.account.clone(),
            category: withdrawal.category,
            amount: withdrawal.amount,
            available_after,
            created_at_ms: now_ms,
        }))
    }

    fn submit_transfer(
        &mut self,
        new: &NewTransfer,
        fingerprint: Option<&str>,
        now_ms: i64,
    ) -> Result<Result<TransferView, LedgerError>, Failure> {
        let transfer = &new.transfer;
        if let Err(invalid) = transfer.validate() {
            return Ok(Err(LedgerError::Invalid(invalid.to_string())));
        }
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO transfers (id, from_account, to_account, category, amount_cents,
                                        description, status, fingerprint, created_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8, ?8)
                 ON CONFLICT (id) DO NOTHING",
            )?
            .execute(params![
                transfer.id.as_str(),
                transfer.from.as_str(),
                transfer.to.as_str(),
                transfer.category.as_str(),
                transfer.amount.cents(),
                new.description,
                fingerprint,
                now_ms
            ])?;
        if inserted != 1 {
            return Ok(Err(LedgerError::ResourceExists));
        }
        Ok(Ok(TransferView {
            transfer: transfer.clone(),
            description: new.description.clone(),
            status: TransferStatus::Pending,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        }))
    }

    /// Settles up to `limit` pending transfers in acceptance order.
    pub(super) fn settle_transfers(&mut self, limit: u32, now_ms: i64) -> Result<Sweep, Failure> {
        // With the row number: the update below finds the row by it, not through the id
        // index.
        let pending: Vec<(i64, TransferView)> = {
            let mut statement = self.conn.prepare_cached(&format!(
                "SELECT {TRANSFER_COLUMNS}, seq FROM transfers WHERE status = 'pending'
                  ORDER BY seq LIMIT ?1"
            ))?;
            statement
                .query_map([limit], |row| Ok((row.get(10)?, transfer_from_row(row)?)))?
                .collect::<rusqlite::Result<_>>()?
        };
        let done = u32::try_from(pending.len()).unwrap_or(u32::MAX);
        for (seq, view) in pending {
            let transfer = &view.transfer;
            let from = self.balances(&transfer.from)?;
            let to = self.balances(&transfer.to)?;
            let status = match transfer::settle(transfer, from.as_ref(), to.as_ref()) {
                Ok(entries) => {
                    match self.post(&entries, EntryCause::Transfer, transfer.id.as_str(), now_ms)? {
                        Ok(()) => TransferStatus::Completed,
                        Err(MovementError::Overflow) => {
                            TransferStatus::Rejected(payd_domain::RejectReason::BalanceOverflow)
                        }
                        Err(MovementError::InsufficientFunds) => {
                            TransferStatus::Rejected(payd_domain::RejectReason::InsufficientFunds)
                        }
                    }
                }
                Err(reason) => TransferStatus::Rejected(reason),
            };
            let reason = match status {
                TransferStatus::Rejected(reason) => Some(reason.as_str()),
                _ => None,
            };
            self.conn
                .prepare_cached(
                    "UPDATE transfers SET status = ?2, reason = ?3, updated_at_ms = ?4
                      WHERE seq = ?1 AND status = 'pending'",
                )?
                .execute(params![seq, status.as_str(), reason, now_ms])?;
            let kind = match status {
                TransferStatus::Completed => EventKind::TransferCompleted,
                _ => EventKind::TransferRejected,
            };
            let after = TransferView {
                status,
                updated_at_ms: now_ms,
                ..view
            };
            append_event(
                &self.conn,
                kind,
                after.transfer.id.as_str(),
                &transfer_payload(&after),
                now_ms,
            )?;
        }
        Ok(Sweep {
            done,
            more: done >= limit,
            next_due_ms: None,
        })
    }

    // ---- the gateway, with pay-ins ---------------------------------------------------

    /// Intake: a plain payment is one INSERT; a pay-in first places its payer's hold in
    /// the same transaction (refused at once, and nothing queued, without the funds).
    pub(super) fn accept_payment(
        &mut self,
        payment: &NewPayment,
        now_ms: i64,
    ) -> Result<Result<Intake, LedgerError>, Failure> {
        let Some(payer) = &payment.payer else {
            return Ok(payments::accept(&self.conn, payment, None, now_ms)?);
        };
        if let Some((amount_cents, hold)) = payments::existing(&self.conn, &payment.id)? {
            let held = match hold {
                Some(hold) => ResourceId::parse(&hold)
                    .ok()
                    .map(|id| self.load_hold(&id))
                    .transpose()?
                    .flatten(),
                None => None,
            };
            let same = amount_cents == payment.amount.cents()
                && held.is_some_and(|view| {
                    view.hold.account == payer.account && view.hold.category == payer.category
                });
            return Ok(if same {
                Ok(Intake::Duplicate)
            } else {
                Err(LedgerError::IdempotencyKeyReused)
            });
        }
        let new_hold = NewHold {
            id: payer.hold.clone(),
            account: payer.account.clone(),
            category: payer.category,
            amount: payment.amount,
            expires_at_ms: i64::MAX,
        };
        if let Err(error) = self.place_hold(&new_hold, Some(&payment.id), None, now_ms)? {
            return Ok(Err(error));
        }
        Ok(payments::accept(
            &self.conn,
            payment,
            Some(payer.hold.as_str()),
            now_ms,
        )?)
    }

    /// One compare-and-set transition; a pay-in's hold is captured when its payment is
    /// booked and voided when it definitively failed, in the same transaction. Final and
    /// unknown outcomes are announced in the outbox.
    pub(super) fn transition(&mut self, change: &Transition, now_ms: i64) -> Result<bool, Failure> {
        let becomes_unknown = matches!(change.next, PaymentState::Unknown { .. })
            && !payments::is_uncertain(&self.conn, &change.id)?;
        let Some(applied) = payments::transition(&self.conn, change, now_ms)? else {
            return Ok(false);
        };
        let (kind, status) = match change.next {
            PaymentState::Booked { .. } => (EventKind::PaymentSucceeded, "succeeded"),
            PaymentState::Failed => (EventKind::PaymentFailed, "failed"),
            PaymentState::Unknown { .. } if becomes_unknown => {
                (EventKind::PaymentUnknown, "unknown")
            }
            _ => return Ok(true),
        };
        if let Some(hold_id) = &applied.hold {
            let final_step = match change.next {
                PaymentState::Booked { .. } => Some(true),
                PaymentState::Failed => Some(false),
                _ => None,
            };
            if let Some(capture) = final_step {
                self.settle_payment_hold(hold_id, capture, now_ms)?;
            }
        }
        let processor = match change.next {
            PaymentState::Booked { processor } | PaymentState::Unknown { processor, .. } => {
                Some(processor.as_str())
            }
            _ => None,
        };
        let payload = json!({
            "correlationId": change.id.as_str(),
            "amount": Amount::from_cents(applied.amount_cents).to_string(),
            "status": status,
            "processor": processor,
            "hold": applied.hold,
        });
        append_event(&self.conn, kind, change.id.as_str(), &payload, now_ms)?;
        Ok(true)
    }

    fn settle_payment_hold(
        &mut self,
        hold_id: &str,
        capture: bool,
        now_ms: i64,
    ) -> Result<(), Failure> {
        let id = ResourceId::parse(hold_id)
            .map_err(|_| Failure::Invariant(format!("bad hold id {hold_id}")))?;
        let view = self
            .load_hold(&id)?
            .ok_or_else(|| Failure::Invariant(format!("pay-in hold {hold_id} is missing")))?;
        let system = self.system.clone();
        let step = if capture {
            hold::capture(&view.hold, None, &system, now_ms)
        } else {
            hold::void(&view.hold, now_ms)
        }
        .map_err(|error| Failure::Invariant(format!("pay-in hold {hold_id}: {error}")))?;
        self.apply_hold_step(view, step, now_ms)?
            .map_err(|error| Failure::Invariant(format!("pay-in hold {hold_id}: {error}")))?;
        Ok(())
    }
}
