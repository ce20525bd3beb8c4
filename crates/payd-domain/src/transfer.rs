//! Transfers between two accounts and withdrawals to the outside world.
//!
//! A transfer is accepted as `pending` and settled later, in acceptance order, by
//! [`settle`]: a pure decision over the two accounts' balances as they are at that moment.

use crate::ledger::{Entry, movement};
use crate::{AccountId, Amount, Balances, Category, ResourceId};

/// Why a transfer was rejected. Final, like a completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The source's available balance did not cover the amount.
    InsufficientFunds,
    /// The source or the target account does not exist.
    AccountNotFound,
    /// The target's balance would overflow.
    BalanceOverflow,
}

impl RejectReason {
    /// The stored and wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectReason::InsufficientFunds => "insufficient_funds",
            RejectReason::AccountNotFound => "account_not_found",
            RejectReason::BalanceOverflow => "balance_overflow",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<RejectReason> {
        [
            RejectReason::InsufficientFunds,
            RejectReason::AccountNotFound,
            RejectReason::BalanceOverflow,
        ]
        .into_iter()
        .find(|reason| reason.as_str() == text)
    }
}

/// Where a transfer stands; `Completed` and `Rejected` are final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferStatus {
    /// Accepted, not settled yet.
    Pending,
    /// The money moved.
    Completed,
    /// Nothing moved, for this reason.
    Rejected(RejectReason),
}

impl TransferStatus {
    /// The stored and wire name of the status (without the reason).
    pub const fn as_str(self) -> &'static str {
        match self {
            TransferStatus::Pending => "pending",
            TransferStatus::Completed => "completed",
            TransferStatus::Rejected(_) => "rejected",
        }
    }
}

/// A transfer as accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// Its id.
    pub id: ResourceId,
    /// The account debited.
    pub from: AccountId,
    /// The account credited.
    pub to: AccountId,
    /// The category moved (the same on both sides).
    pub category: Category,
    /// Strictly positive amount.
    pub amount: Amount,
}

/// Why a transfer request is not acceptable at all (answered at once, nothing stored).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransferInvalid {
    /// `from` and `to` are the same account.
    #[error("a transfer needs two different accounts")]
    SameAccount,
    /// The amount is zero or negative.
    #[error("amount must be positive")]
    NonPositive,
    /// A system account on either side.
    #[error("system accounts cannot take part in transfers")]
    SystemAccount,
}

impl Transfer {
    /// Checks what can be checked without balances.
    pub fn validate(&self) -> Result<(), TransferInvalid> {
        if self.from == self.to {
            Err(TransferInvalid::SameAccount)
        } else if !self.amount.is_positive() {
            Err(TransferInvalid::NonPositive)
        } else if self.from.is_system() || self.to.is_system() {
            Err(TransferInvalid::SystemAccount)
        } else {
            Ok(())
        }
    }
}

/// Settles a pending transfer given the two accounts' balances now (`None`: the account
/// does not exist): the entries to post, or why it is rejected.
pub fn settle(
    transfer: &Transfer,
    from: Option<&Balances>,
    to: Option<&Balances>,
) -> Result<[Entry; 2], RejectReason> {
    let (Some(from), Some(to)) = (from, to) else {
        return Err(RejectReason::AccountNotFound);
    };
    if !from.covers(transfer.category, transfer.amount) {
        return Err(RejectReason::InsufficientFunds);
    }
    if to.credit(transfer.category, transfer.amount).is_err() {
        return Err(RejectReason::BalanceOverflow);
    }
    Ok(movement(
        &transfer.from,
        &transfer.to,
        transfer.category,
        transfer.amount,
    ))
}

/// A withdrawal of `amount` of `category` from `account` (balances `balances`) to `sink`
/// (the system account): the entries, or `None` when available does not cover it.
pub fn withdraw(
    account: &AccountId,
    balances: &Balances,
    category: Category,
    amount: Amount,
    sink: &AccountId,
) -> Option<[Entry; 2]> {
    (amount.is_positive() && balances.covers(category, amount))
        .then(|| movement(account, sink, category, amount))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system_account;

    fn c(cents: i64) -> Amount {
        Amount::from_cents(cents)
    }

    fn transfer(from: &str, to: &str, cents: i64) -> Transfer {
        Transfer {
            id: ResourceId::parse("t").unwrap(),
            from: AccountId::parse(from).unwrap(),
            to: AccountId::parse(to).unwrap(),
            category: Category::Cash,
            amount: c(cents),
        }
    }

    #[test]
    fn validation() {
        assert_eq!(transfer("a", "b", 1).validate(), Ok(()));
        assert_eq!(
            transfer("a", "a", 1).validate(),
            Err(TransferInvalid::SameAccount)
        );
        assert_eq!(
            transfer("a", "b", 0).validate(),
            Err(TransferInvalid::NonPositive)
        );
        let mut to_system = transfer("a", "b", 1);
        to_system.to = system_account();
        assert_eq!(to_system.validate(), Err(TransferInvalid::SystemAccount));
    }

    #[test]
    fn settling() {
        let t = transfer("a", "b", 100);
        let rich = Balances::with_available(c(0), c(0), c(100));
        let poor = Balances::with_available(c(1_000), c(0), c(99));
        let [debit, credit] = settle(&t, Some(&rich), Some(&poor)).unwrap();
        assert_eq!((debit.account.as_str(), debit.amount), ("a", c(-100)));
        assert_eq!((credit.account.as_str(), credit.amount), ("b", c(100)));
        assert_eq!(
            settle(&t, Some(&poor), Some(&rich)),
            Err(RejectReason::InsufficientFunds),
            "categories do not mix"
        );
        assert_eq!(
            settle(&t, None, Some(&rich)),
            Err(RejectReason::AccountNotFound)
        );
        assert_eq!(
            settle(&t, Some(&rich), None),
            Err(RejectReason::AccountNotFound)
        );
        let full = Balances::with_available(c(0), c(0), c(i64::MAX));
        assert_eq!(
            settle(&t, Some(&rich), Some(&full)),
            Err(RejectReason::BalanceOverflow)
        );
        for reason in [
            RejectReason::InsufficientFunds,
            RejectReason::AccountNotFound,
            RejectReason::BalanceOverflow,
        ] {
            assert_eq!(RejectReason::parse(reason.as_str()), Some(reason));
        }
    }

    #[test]
    fn withdrawals_need_cover() {
        let a = AccountId::parse("a").unwrap();
        let b = Balances::with_available(c(0), c(0), c(10));
        assert!(withdraw(&a, &b, Category::Cash, c(10), &system_account()).is_some());
        assert!(withdraw(&a, &b, Category::Cash, c(11), &system_account()).is_none());
        assert!(withdraw(&a, &b, Category::Cash, c(0), &system_account()).is_none());
    }
}
