//! The ledger store's own use cases: card authorizations (`payd_domain::decide`) and
//! deposits, each remembered forever under its client id or idempotency key.

use payd_domain::{
    AuthorizationRequest, Code, Decision, EntryCause, Fence, IdempotencyKey, decide, movement,
    system_account,
};
use payd_ports::{DepositReceipt, DepositRequest, HEADER_KEY_PREFIX, Refusal};

use crate::money::{admit_fences, system_balances};
use crate::tx::{Failure, LedgerTx};

/// [`authorize`] under the account's lock grant: `None`, with nothing done, unless `fence`
/// names the request's account and is current (then it is recorded, fencing out every
/// earlier grant).
pub async fn authorize_fenced<T: LedgerTx>(
    tx: &mut T,
    request: &AuthorizationRequest,
    fence: &Fence,
) -> Result<Option<Code>, Failure> {
    if fence.account != request.account {
        return Ok(None);
    }
    if !admit_fences(tx, std::slice::from_ref(fence)).await? {
        return Ok(None);
    }
    Ok(Some(authorize(tx, request).await?))
}

/// Decides and records one card transaction. Approved and declined decisions with an id
/// are recorded, so the id replays the same code forever; an unknown account answers `07`
/// and records nothing (a retry once the account exists is decided afresh).
pub async fn authorize<T: LedgerTx>(
    tx: &mut T,
    request: &AuthorizationRequest,
) -> Result<Code, Failure> {
    // The edge validates both; refusing here keeps the domain's debug assertions (and the
    // system account) out of reach of a buggy caller.
    if !request.amount.is_positive() || request.account.is_system() {
        return Ok(Code::Rejected);
    }
    let prior = match &request.id {
        Some(id) => tx.prior_authorization(id).await?,
        None => None,
    };
    // A replay or a conflict never looks at balances.
    let balances = match prior {
        Some(_) => None,
        None => tx.balances(&request.account).await?,
    };
    let decision = {
        let rules = tx.rules().await?;
        decide(request, prior.as_ref(), balances.as_ref(), rules)
    };
    match decision {
        Decision::Replay(code) => Ok(code),
        Decision::IdConflict | Decision::UnknownAccount => Ok(Code::Rejected),
        Decision::Declined => {
            tx.insert_transaction(request, Code::InsufficientFunds, None)
                .await?;
            Ok(Code::InsufficientFunds)
        }
        Decision::Approved {
            category,
            balances: after,
        } => {
            // Every check before the first write.
            let system = system_account();
            let system_after = system_balances(tx)
                .await?
                .credit(category, request.amount)
                .map_err(|_| Failure::invariant("system account overflow on a card debit"))?;
            let seq = tx
                .insert_transaction(request, Code::Approved, Some(category))
                .await?;
            // Client ids are printable ASCII without spaces, so `transaction <seq>` can
            // never be mistaken for one.
            let reference = match &request.id {
                Some(id) => id.as_str().to_owned(),
                None => format!("transaction {seq}"),
            };
            tx.insert_entries(
                &movement(&request.account, &system, category, request.amount),
                EntryCause::Transaction,
                &reference,
            )
            .await?;
            tx.set_balances(&request.account, after)?;
            tx.set_balances(&system, system_after)?;
            Ok(Code::Approved)
        }
    }
}

/// Whether an `Idempotency-Key` already answers another kind of request: the key space is
/// one, shared by deposits (which keep their keys in their own receipts) and every other
/// mutation (whose responses are stored under `key:<key>`).
pub(crate) async fn header_key_taken_by_a_mutation<T: LedgerTx>(
    tx: &mut T,
    key: &IdempotencyKey,
) -> Result<bool, Failure> {
    Ok(tx
        .stored_response(&format!("{HEADER_KEY_PREFIX}{}", key.as_str()))
        .await?
        .is_some())
}

/// Credits a deposit, idempotently by key: same key and body → the first receipt with
/// `replayed`; same key, other body → `IdempotencyKeyReused`. A refusal consumes no key.
pub async fn deposit<T: LedgerTx>(
    tx: &mut T,
    deposit: &DepositRequest,
) -> Result<Result<DepositReceipt, Refusal>, Failure> {
    if header_key_taken_by_a_mutation(tx, &deposit.key).await? {
        return Ok(Err(Refusal::IdempotencyKeyReused));
    }
    if let Some(first) = tx.deposit(&deposit.key).await? {
        let same_body = first.account == deposit.account
            && first.category == deposit.category
            && first.amount == deposit.amount;
        return Ok(if same_body {
            Ok(DepositReceipt {
                replayed: true,
                ..first
            })
        } else {
            Err(Refusal::IdempotencyKeyReused)
        });
    }
    if !deposit.amount.is_positive() {
        return Ok(Err(Refusal::Invalid(
            "deposit amount must be positive".to_owned(),
        )));
    }
    if deposit.account.is_system() {
        return Ok(Err(Refusal::AccountNotFound));
    }
    let Some(balances) = tx.balances(&deposit.account).await? else {
        return Ok(Err(Refusal::AccountNotFound));
    };
    let Ok(after) = balances.credit(deposit.category, deposit.amount) else {
        return Ok(Err(Refusal::BalanceOverflow));
    };
    let Ok(system_after) = system_balances(tx)
        .await?
        .debit(deposit.category, deposit.amount, true)
    else {
        return Ok(Err(Refusal::BalanceOverflow));
    };
    let receipt = DepositReceipt {
        key: deposit.key.clone(),
        account: deposit.account.clone(),
        category: deposit.category,
        amount: deposit.amount,
        available_after: after.get(deposit.category).available,
        created_at_ms: tx.now_ms(),
        replayed: false,
    };
    tx.insert_deposit(&receipt).await?;
    let system = system_account();
    tx.insert_entries(
        &movement(&system, &deposit.account, deposit.category, deposit.amount),
        EntryCause::Deposit,
        deposit.key.as_str(),
    )
    .await?;
    tx.set_balances(&deposit.account, after)?;
    tx.set_balances(&system, system_after)?;
    Ok(Ok(receipt))
}
