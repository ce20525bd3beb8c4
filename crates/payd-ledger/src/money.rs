//! Moving money: the one way a wallet command changes balances ([`post`]), and opening an
//! account.

use payd_domain::{
    AccountId, Amount, Balances, Category, Entry, EntryCause, Fence, MovementError, fence,
    movement, system_account,
};
use payd_ports::{AccountView, NewAccount, Refusal};

use crate::tx::{Failure, LedgerTx};

/// Admits a write under a lock grant: `false` (nothing recorded) if one of `fences` is older
/// than its account's record; else the fences are recorded, whatever the write then does,
/// so that every earlier grant is fenced out from now on.
pub(crate) async fn admit_fences<T: LedgerTx>(
    tx: &mut T,
    fences: &[Fence],
) -> Result<bool, Failure> {
    let accounts: Vec<AccountId> = fences.iter().map(|f| f.account.clone()).collect();
    let recorded = tx.fence_tokens(&accounts).await?;
    if !fence::is_current(fences, |account| recorded.get(account).copied()) {
        return Ok(false);
    }
    tx.record_fences(fences).await?;
    Ok(true)
}

/// The system account's balances (the part this transaction uses, on a store that splits
/// it); it always exists.
pub(crate) async fn system_balances<T: LedgerTx>(tx: &mut T) -> Result<Balances, Failure> {
    tx.balances(&system_account())
        .await?
        .ok_or_else(|| Failure::invariant("the system account is missing"))
}

/// The refusal for a movement that cannot be applied.
pub(crate) fn movement_refusal(error: MovementError) -> Refusal {
    match error {
        MovementError::InsufficientFunds => Refusal::InsufficientFunds,
        MovementError::Overflow => Refusal::BalanceOverflow,
    }
}

/// Applies `entries` to their accounts' balances, all or none, and journals them under
/// `cause` and `reference`. `Err` (and nothing changed) if a balance would go negative or
/// overflow; every account must exist.
pub(crate) async fn post<T: LedgerTx>(
    tx: &mut T,
    entries: &[Entry],
    cause: EntryCause,
    reference: &str,
) -> Result<Result<(), MovementError>, Failure> {
    // Every check before the first write: new balances are computed for all the entries'
    // accounts (an account may appear in several entries), then written.
    let mut next: Vec<(AccountId, Balances)> = Vec::with_capacity(3);
    for entry in entries {
        let current = match next.iter().find(|(id, _)| *id == entry.account) {
            Some((_, balances)) => *balances,
            None => tx.balances(&entry.account).await?.ok_or_else(|| {
                Failure::invariant(format!("an entry for missing account {}", entry.account))
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
        tx.set_balances(&id, balances)?;
    }
    tx.insert_entries(entries, cause, reference).await?;
    Ok(Ok(()))
}

/// Opens an account: its initial available balances come from the system account as
/// `opening` entries. The id must be free (system ids never are); balances must be
/// non-negative and not held.
pub(crate) async fn open_account<T: LedgerTx>(
    tx: &mut T,
    account: &NewAccount,
) -> Result<Result<AccountView, Refusal>, Failure> {
    if account.id.is_system() || tx.balances(&account.id).await?.is_some() {
        return Ok(Err(Refusal::AccountExists));
    }
    let mut system_after = system_balances(tx).await?;
    for category in Category::ALL {
        let part = account.balances.get(category);
        if part.available.is_negative() || part.held != Amount::ZERO {
            return Ok(Err(Refusal::Invalid(
                "opening balances must be non-negative and not held".to_owned(),
            )));
        }
        system_after = match system_after.debit(category, part.available, true) {
            Ok(next) => next,
            Err(_) => return Ok(Err(Refusal::BalanceOverflow)),
        };
    }
    tx.insert_account(&account.id, account.balances).await?;
    let system = system_account();
    for category in Category::ALL {
        let amount = account.balances.get(category).available;
        if amount.is_positive() {
            tx.insert_entries(
                &movement(&system, &account.id, category, amount),
                EntryCause::Opening,
                account.id.as_str(),
            )
            .await?;
        }
    }
    tx.set_balances(&system, system_after)?;
    Ok(Ok(AccountView {
        id: account.id.clone(),
        balances: account.balances,
    }))
}
