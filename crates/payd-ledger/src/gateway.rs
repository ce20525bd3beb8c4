//! The gateway's use cases: intake (with a pay-in's hold) and the compare-and-set
//! transitions the engine decides, which capture or release a pay-in's hold and announce
//! final and unknown outcomes.

use payd_domain::gateway::payment::PaymentState;
use payd_domain::{EventKind, hold, system_account};
use payd_ports::{
    EventPayload, Intake, NewHold, NewPayment, PaymentEvent, PaymentRecord, Refusal, Transition,
};

use crate::tx::{Failure, LedgerTx};
use crate::wallet::{apply_hold_step, place_hold};

/// Intake: stores and queues a payment. A pay-in first places its payer's hold in the same
/// transaction (refused at once, and nothing queued, without the funds). The same id with
/// the same amount (and, for a pay-in, the same account and category) is a duplicate;
/// with anything else it is a reused key.
pub async fn accept_payment<T: LedgerTx>(
    tx: &mut T,
    payment: &NewPayment,
) -> Result<Result<Intake, Refusal>, Failure> {
    let Some(payer) = &payment.payer else {
        if tx.insert_payment(payment, None).await? {
            return Ok(Ok(Intake::Accepted));
        }
        let existing = tx
            .payment(&payment.id)
            .await?
            .ok_or_else(|| Failure::invariant("a payment vanished during intake"))?;
        return Ok(
            if existing.amount == payment.amount && existing.hold.is_none() {
                Ok(Intake::Duplicate)
            } else {
                Err(Refusal::IdempotencyKeyReused)
            },
        );
    };
    if let Some(existing) = tx.payment(&payment.id).await? {
        let held = match &existing.hold {
            Some(hold) => tx.hold(hold).await?,
            None => None,
        };
        let same = existing.amount == payment.amount
            && held.is_some_and(|stored| {
                stored.view.hold.account == payer.account
                    && stored.view.hold.category == payer.category
            });
        return Ok(if same {
            Ok(Intake::Duplicate)
        } else {
            Err(Refusal::IdempotencyKeyReused)
        });
    }
    let new_hold = NewHold {
        id: payer.hold.clone(),
        account: payer.account.clone(),
        category: payer.category,
        amount: payment.amount,
        expires_at_ms: i64::MAX,
    };
    if let Err(refusal) = place_hold(tx, &new_hold, Some(&payment.id), None).await? {
        return Ok(Err(refusal));
    }
    if !tx.insert_payment(payment, Some(&payer.hold)).await? {
        return Err(Failure::invariant(
            "a pay-in's id was taken between its check and its insert",
        ));
    }
    Ok(Ok(Intake::Accepted))
}

/// Whether a payment's outcome is uncertain already (unknown, or re-sent after being
/// unknown), so that becoming unknown again is not news.
fn is_uncertain(state: &PaymentState) -> bool {
    matches!(
        state,
        PaymentState::Unknown { .. }
            | PaymentState::Processing {
                unknown_since_ms: Some(_),
                ..
            }
    )
}

fn is_final(state: &PaymentState) -> bool {
    matches!(state, PaymentState::Booked { .. } | PaymentState::Failed)
}

/// One compare-and-set transition: applied only if the payment is still at the expected
/// version and not final. A booked payment counts in the summary's totals; a pay-in's hold
/// is captured when its payment is booked and released when it definitively failed; final
/// and newly unknown outcomes are announced. Returns whether it applied.
pub async fn transition<T: LedgerTx>(tx: &mut T, change: &Transition) -> Result<bool, Failure> {
    let Some(before) = tx.payment(&change.id).await? else {
        return Ok(false);
    };
    if before.version != change.expected_version || is_final(&before.state) {
        return Ok(false);
    }
    tx.update_payment(&before, change).await?;
    let (kind, status) = match change.next {
        PaymentState::Booked { processor } => {
            tx.add_booked(processor, before.requested_at_ms, before.amount)
                .await?;
            (EventKind::PaymentSucceeded, "succeeded")
        }
        PaymentState::Failed => (EventKind::PaymentFailed, "failed"),
        PaymentState::Unknown { .. } if !is_uncertain(&before.state) => {
            (EventKind::PaymentUnknown, "unknown")
        }
        _ => return Ok(true),
    };
    match change.next {
        PaymentState::Booked { .. } => settle_payment_hold(tx, &before, true).await?,
        PaymentState::Failed => settle_payment_hold(tx, &before, false).await?,
        _ => {}
    }
    let payload = PaymentEvent::new(
        &change.id,
        before.amount,
        status,
        change.next.processor(),
        before.hold.as_ref(),
    );
    tx.append_event(kind, change.id.as_str(), &EventPayload::Payment(payload))
        .await?;
    Ok(true)
}

/// Captures (booked) or releases (failed) a pay-in's hold; nothing for a plain payment.
async fn settle_payment_hold<T: LedgerTx>(
    tx: &mut T,
    payment: &PaymentRecord,
    capture: bool,
) -> Result<(), Failure> {
    let Some(id) = &payment.hold else {
        return Ok(());
    };
    let stored = tx
        .hold(id)
        .await?
        .ok_or_else(|| Failure::invariant(format!("pay-in hold {id} is missing")))?;
    let now_ms = tx.now_ms();
    let step = if capture {
        hold::capture(&stored.view.hold, None, &system_account(), now_ms)
    } else {
        hold::void(&stored.view.hold, now_ms)
    }
    .map_err(|error| Failure::invariant(format!("pay-in hold {id}: {error}")))?;
    apply_hold_step(tx, stored.view, step)
        .await?
        .map_err(|error| Failure::invariant(format!("pay-in hold {id}: {error}")))?;
    Ok(())
}
