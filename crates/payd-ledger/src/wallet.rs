//! The wallet's use cases: every [`Mutation`] (idempotent under a [`Claim`]), and the
//! sweeps that expire holds and settle transfers. Each decision is `payd_domain`'s
//! (`hold`, `transfer`); this module loads what a decision needs, posts the entries it
//! returns, records the result and announces it in the outbox.

use payd_domain::{
    AccountId, Amount, EntryCause, EventKind, Fence, Hold, HoldError, HoldStatus, HoldStep,
    MovementError, RejectReason, ResourceId, TransferStatus, hold, system_account, transfer,
};
use payd_ports::{
    Claim, Effect, EventPayload, FencedSettle, HEADER_KEY_PREFIX, HoldEvent, HoldView, Mutation,
    NewHold, NewTransfer, NewWithdrawal, Refusal, Replied, Sweep, TransferEvent, TransferView,
    WithdrawalReceipt,
};

use crate::money::{admit_fences, movement_refusal, open_account, post};
use crate::tx::{Failure, LedgerTx, PendingTransfer, Turn};

fn hold_refusal(error: HoldError) -> Refusal {
    match error {
        HoldError::InsufficientFunds => Refusal::InsufficientFunds,
        HoldError::InvalidAmount => Refusal::Invalid("amount must be positive".to_owned()),
        HoldError::ExceedsHold => Refusal::CaptureExceedsHold,
        HoldError::NotActive(status) => Refusal::HoldNotActive(status),
        HoldError::Expired => Refusal::HoldExpired,
    }
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

/// Applies one mutation, idempotently under `claim` (see `payd_ports::wallet`).
pub async fn execute<T: LedgerTx>(
    tx: &mut T,
    mutation: &Mutation,
    claim: Option<&Claim>,
) -> Result<Result<Replied<Effect>, Refusal>, Failure> {
    if let Some(claim) = claim
        && let Some(stored) = tx.stored_response(&claim.key).await?
    {
        return Ok(if stored.fingerprint == claim.fingerprint {
            Ok(Replied::Replayed(stored.response))
        } else {
            Err(Refusal::IdempotencyKeyReused)
        });
    }
    // Deposits keep their keys (and receipts) in their own table; an `Idempotency-Key` is
    // one namespace, so a key a deposit used is taken for anything else.
    if let Some(key) = claim.and_then(|claim| claim.key.strip_prefix(HEADER_KEY_PREFIX))
        && let Ok(key) = payd_domain::IdempotencyKey::parse(key)
        && tx.deposit(&key).await?.is_some()
    {
        return Ok(Err(Refusal::IdempotencyKeyReused));
    }
    let resource_claim = resource_claim(mutation, claim);
    let fingerprint = resource_claim.map(|claim| claim.fingerprint.as_str());
    let outcome = mutate(tx, mutation, fingerprint).await?;
    // The id is taken: by this very request before (a replay), or by another.
    if let (Some(claim), Err(Refusal::ResourceExists)) = (resource_claim, &outcome)
        && let Some(replayed) = replay_creation(tx, mutation, claim).await?
    {
        return Ok(replayed);
    }
    // A resource created under its own id keeps the claim in its row; refusals (and every
    // other claim) are stored as responses.
    let kept_by_resource = resource_claim.is_some() && outcome.is_ok();
    if let Some(claim) = claim
        && !kept_by_resource
    {
        tx.store_response(claim, &(claim.render)(&outcome)).await?;
    }
    Ok(outcome.map(Replied::Fresh))
}

/// Replays the first response to a resource created under `claim` (its own id): the
/// response is rendered again from the row's creation values, which are exactly what the
/// first response was rendered from. `None`: no such resource, or one created without this
/// kind of claim (the mutation then answers `ResourceExists`).
async fn replay_creation<T: LedgerTx>(
    tx: &mut T,
    mutation: &Mutation,
    claim: &Claim,
) -> Result<Option<Result<Replied<Effect>, Refusal>>, Failure> {
    let (fingerprint, created) = match mutation {
        Mutation::SubmitTransfer(new) => {
            let Some(stored) = tx.transfer(&new.transfer.id).await? else {
                return Ok(None);
            };
            let created = TransferView {
                status: TransferStatus::Pending,
                updated_at_ms: stored.view.created_at_ms,
                ..stored.view
            };
            (stored.fingerprint, Effect::Transfer(created))
        }
        Mutation::PlaceHold(new) => {
            let Some(stored) = tx.hold(&new.id).await? else {
                return Ok(None);
            };
            let view = stored.view;
            let created = HoldView {
                hold: Hold {
                    status: HoldStatus::Active,
                    captured: Amount::ZERO,
                    ..view.hold
                },
                updated_at_ms: view.created_at_ms,
                ..view
            };
            (stored.fingerprint, Effect::Hold(created))
        }
        _ => return Ok(None),
    };
    Ok(match fingerprint {
        None => None,
        Some(first) if first == claim.fingerprint => {
            Some(Ok(Replied::Replayed((claim.render)(&Ok(created)))))
        }
        Some(_) => Some(Err(Refusal::IdempotencyKeyReused)),
    })
}

async fn mutate<T: LedgerTx>(
    tx: &mut T,
    mutation: &Mutation,
    fingerprint: Option<&str>,
) -> Result<Result<Effect, Refusal>, Failure> {
    let now_ms = tx.now_ms();
    Ok(match mutation {
        Mutation::OpenAccount(account) => open_account(tx, account).await?.map(Effect::Account),
        Mutation::PlaceHold(new) => place_hold(tx, new, None, fingerprint)
            .await?
            .map(Effect::Hold),
        Mutation::CaptureHold { id, amount } => finish_hold(tx, id, |hold| {
            hold::capture(hold, *amount, &system_account(), now_ms)
        })
        .await?
        .map(Effect::Hold),
        Mutation::VoidHold { id } => finish_hold(tx, id, |hold| hold::void(hold, now_ms))
            .await?
            .map(Effect::Hold),
        Mutation::Withdraw(withdrawal) => withdraw(tx, withdrawal).await?.map(Effect::Withdrawal),
        Mutation::SubmitTransfer(new) => submit_transfer(tx, new, fingerprint)
            .await?
            .map(Effect::Transfer),
        Mutation::PutMerchant { pattern, category } => Ok(Effect::Merchant {
            pattern: pattern.clone(),
            category: *category,
            created: tx.put_merchant(pattern, *category).await?,
        }),
        Mutation::DeleteMerchant { pattern } => {
            if tx.delete_merchant(pattern).await? {
                Ok(Effect::MerchantDeleted(pattern.clone()))
            } else {
                Err(Refusal::MerchantNotFound)
            }
        }
        Mutation::CreateWebhook(webhook) => {
            tx.create_webhook(webhook)
                .await?
                .map(|view| Effect::Webhook {
                    view,
                    secret: webhook.secret.clone(),
                })
        }
        Mutation::DeleteWebhook { id } => {
            if tx.delete_webhook(id).await? {
                Ok(Effect::WebhookDeleted(id.clone()))
            } else {
                Err(Refusal::WebhookNotFound)
            }
        }
    })
}

// ---- holds ---------------------------------------------------------------------------

/// Places a hold; `payment` when it backs a pay-in (no expiry, journaled as `payment`).
pub(crate) async fn place_hold<T: LedgerTx>(
    tx: &mut T,
    new: &NewHold,
    payment: Option<&payd_domain::CorrelationId>,
    fingerprint: Option<&str>,
) -> Result<Result<HoldView, Refusal>, Failure> {
    if tx.hold(&new.id).await?.is_some() {
        return Ok(Err(Refusal::ResourceExists));
    }
    if new.account.is_system() {
        return Ok(Err(Refusal::AccountNotFound));
    }
    let Some(balances) = tx.balances(&new.account).await? else {
        return Ok(Err(Refusal::AccountNotFound));
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
        Err(error) => return Ok(Err(hold_refusal(error))),
    };
    let (cause, reference) = match payment {
        Some(payment) => (EntryCause::Payment, payment.as_str()),
        None => (EntryCause::Hold, new.id.as_str()),
    };
    if let Err(error) = post(tx, &step.entries, cause, reference).await? {
        return Ok(Err(movement_refusal(error)));
    }
    let now_ms = tx.now_ms();
    let view = HoldView {
        hold: step.hold,
        payment: payment.cloned(),
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
    };
    tx.insert_hold(&view, fingerprint).await?;
    Ok(Ok(view))
}

/// Captures or voids a hold through the API. A hold whose time is up is expired here
/// (released, `hold.expired` announced) and the request answered `HoldExpired`; a pay-in's
/// hold follows its payment and is refused.
async fn finish_hold<T: LedgerTx>(
    tx: &mut T,
    id: &ResourceId,
    step: impl FnOnce(&Hold) -> Result<HoldStep, HoldError>,
) -> Result<Result<HoldView, Refusal>, Failure> {
    let Some(stored) = tx.hold(id).await? else {
        return Ok(Err(Refusal::HoldNotFound));
    };
    let view = stored.view;
    if view.payment.is_some() {
        return Ok(Err(Refusal::HoldOwnedByPayment));
    }
    match step(&view.hold) {
        Ok(step) => Ok(apply_hold_step(tx, view, step)
            .await?
            .map_err(movement_refusal)),
        Err(HoldError::Expired) => {
            if let Some(step) = hold::expire(&view.hold, tx.now_ms())
                && let Err(error) = apply_hold_step(tx, view, step).await?
            {
                return Ok(Err(movement_refusal(error)));
            }
            Ok(Err(Refusal::HoldExpired))
        }
        Err(error) => Ok(Err(hold_refusal(error))),
    }
}

/// Posts a hold step's entries, stores the hold's new status and announces it.
pub(crate) async fn apply_hold_step<T: LedgerTx>(
    tx: &mut T,
    view: HoldView,
    step: HoldStep,
) -> Result<Result<HoldView, MovementError>, Failure> {
    let (cause, kind) = match step.hold.status {
        HoldStatus::Captured => (EntryCause::Capture, EventKind::HoldCaptured),
        HoldStatus::Voided => (EntryCause::Void, EventKind::HoldVoided),
        HoldStatus::Expired => (EntryCause::Expiry, EventKind::HoldExpired),
        HoldStatus::Active => return Err(Failure::invariant("a hold step left it active")),
    };
    // A pay-in's movements are journaled under its payment, like its hold was.
    let (cause, reference) = match &view.payment {
        Some(payment) => (EntryCause::Payment, payment.as_str().to_owned()),
        None => (cause, view.hold.id.as_str().to_owned()),
    };
    if let Err(error) = post(tx, &step.entries, cause, &reference).await? {
        return Ok(Err(error));
    }
    let after = HoldView {
        hold: step.hold,
        updated_at_ms: tx.now_ms(),
        ..view
    };
    tx.update_hold(&after).await?;
    tx.append_event(
        kind,
        after.hold.id.as_str(),
        &EventPayload::Hold(HoldEvent::of(&after)),
    )
    .await?;
    Ok(Ok(after))
}

/// Expires up to `limit` active holds due at `at_ms`.
pub async fn expire_holds<T: LedgerTx>(
    tx: &mut T,
    at_ms: i64,
    limit: u32,
) -> Result<Sweep, Failure> {
    let due = tx.due_holds(at_ms, limit).await?;
    let mut done = 0_u32;
    for view in due {
        if let Some(step) = hold::expire(&view.hold, at_ms) {
            apply_hold_step(tx, view, step)
                .await?
                .map_err(|error| Failure::invariant(format!("releasing a hold: {error}")))?;
            done += 1;
        }
    }
    Ok(Sweep {
        done,
        more: done >= limit,
        next_due_ms: tx.next_hold_expiry().await?,
    })
}

// ---- withdrawals and transfers -------------------------------------------------------

async fn withdraw<T: LedgerTx>(
    tx: &mut T,
    withdrawal: &NewWithdrawal,
) -> Result<Result<WithdrawalReceipt, Refusal>, Failure> {
    if withdrawal.account.is_system() {
        return Ok(Err(Refusal::AccountNotFound));
    }
    let Some(balances) = tx.balances(&withdrawal.account).await? else {
        return Ok(Err(Refusal::AccountNotFound));
    };
    let Some(entries) = transfer::withdraw(
        &withdrawal.account,
        &balances,
        withdrawal.category,
        withdrawal.amount,
        &system_account(),
    ) else {
        return Ok(Err(if withdrawal.amount.is_positive() {
            Refusal::InsufficientFunds
        } else {
            Refusal::Invalid("amount must be positive".to_owned())
        }));
    };
    if let Err(error) = post(tx, &entries, EntryCause::Withdrawal, withdrawal.id.as_str()).await? {
        return Ok(Err(movement_refusal(error)));
    }
    let available_after = tx
        .balances(&withdrawal.account)
        .await?
        .map_or(Amount::ZERO, |b| b.get(withdrawal.category).available);
    let receipt = WithdrawalReceipt {
        id: withdrawal.id.clone(),
        account: withdrawal.account.clone(),
        category: withdrawal.category,
        amount: withdrawal.amount,
        available_after,
        created_at_ms: tx.now_ms(),
    };
    tx.insert_withdrawal(&receipt).await?;
    Ok(Ok(receipt))
}

async fn submit_transfer<T: LedgerTx>(
    tx: &mut T,
    new: &NewTransfer,
    fingerprint: Option<&str>,
) -> Result<Result<TransferView, Refusal>, Failure> {
    if let Err(invalid) = new.transfer.validate() {
        return Ok(Err(Refusal::Invalid(invalid.to_string())));
    }
    let now_ms = tx.now_ms();
    let view = TransferView {
        transfer: new.transfer.clone(),
        description: new.description.clone(),
        status: TransferStatus::Pending,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
    };
    if !tx.insert_transfer(&view, fingerprint).await? {
        return Ok(Err(Refusal::ResourceExists));
    }
    Ok(Ok(view))
}

/// Settles up to `limit` pending transfers in acceptance order.
pub async fn settle_transfers<T: LedgerTx>(tx: &mut T, limit: u32) -> Result<Sweep, Failure> {
    let pending = tx.pending_transfers(limit).await?;
    let done = u32::try_from(pending.len()).unwrap_or(u32::MAX);
    for pending in pending {
        settle_pending(tx, pending).await?;
    }
    Ok(Sweep {
        done,
        more: done >= limit,
        next_due_ms: None,
    })
}

/// Settles the transfer `id` for the holder of its accounts' locks (the transfer
/// pipeline): refused as [`FencedSettle::Stale`] unless the fences name both of its
/// accounts and every one is current (even when the transfer was settled meanwhile: a
/// stale holder's write is refused, not only harmless); then settled only if it is its
/// accounts' oldest pending transfer, so that the order per account is the sweep's.
pub async fn settle_fenced<T: LedgerTx>(
    tx: &mut T,
    id: &ResourceId,
    fences: &[Fence],
) -> Result<FencedSettle, Failure> {
    let Some(stored) = tx.transfer(id).await? else {
        return Ok(FencedSettle::NotPending);
    };
    let transfer = &stored.view.transfer;
    let covers = |account: &AccountId| fences.iter().any(|f| &f.account == account);
    if !(covers(&transfer.from) && covers(&transfer.to)) {
        return Ok(FencedSettle::Stale);
    }
    if !admit_fences(tx, fences).await? {
        return Ok(FencedSettle::Stale);
    }
    Ok(match tx.pending_transfer(id).await? {
        Turn::Gone => FencedSettle::NotPending,
        Turn::Waiting => FencedSettle::Waiting,
        Turn::Ready(pending) => FencedSettle::Settled(settle_pending(tx, pending).await?),
    })
}

/// Settles one pending transfer handed out by the store: moves its money (or says why
/// not), stores its new status and writes its event.
async fn settle_pending<T: LedgerTx>(
    tx: &mut T,
    PendingTransfer { seq, view }: PendingTransfer,
) -> Result<TransferStatus, Failure> {
    let status = settle_one(tx, &view).await?;
    let kind = match status {
        TransferStatus::Completed => EventKind::TransferCompleted,
        _ => EventKind::TransferRejected,
    };
    let after = TransferView {
        status,
        updated_at_ms: tx.now_ms(),
        ..view
    };
    tx.update_transfer(seq, &after).await?;
    tx.append_event(
        kind,
        after.transfer.id.as_str(),
        &EventPayload::Transfer(TransferEvent::of(&after)),
    )
    .await?;
    Ok(status)
}

/// Moves one transfer's money, or says why not.
async fn settle_one<T: LedgerTx>(
    tx: &mut T,
    view: &TransferView,
) -> Result<TransferStatus, Failure> {
    let transfer = &view.transfer;
    let from = tx.balances(&transfer.from).await?;
    let to = tx.balances(&transfer.to).await?;
    Ok(
        match transfer::settle(transfer, from.as_ref(), to.as_ref()) {
            Ok(entries) => {
                match post(tx, &entries, EntryCause::Transfer, transfer.id.as_str()).await? {
                    Ok(()) => TransferStatus::Completed,
                    Err(MovementError::Overflow) => {
                        TransferStatus::Rejected(RejectReason::BalanceOverflow)
                    }
                    Err(MovementError::InsufficientFunds) => {
                        TransferStatus::Rejected(RejectReason::InsufficientFunds)
                    }
                }
            }
            Err(reason) => TransferStatus::Rejected(reason),
        },
    )
}
