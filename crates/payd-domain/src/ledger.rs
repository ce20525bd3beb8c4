//! Double-entry ledger entries.
//!
//! Every movement of money is a pair of entries of opposite sign on two accounts, one of
//! which is often the system account [`SYSTEM_ACCOUNT`] (`@external`: the world outside
//! payd, where deposits come from and card spending goes to). Hence the sum of all entries,
//! per category, is always zero, and each account's balance is the sum of its entries: the
//! offline audit checks exactly these two facts.

use crate::{AccountId, Amount, Category};

/// The name of the system account that stands for money entering or leaving payd.
pub const SYSTEM_ACCOUNT: &str = "external";

/// Why money moved; stored with each entry so the journal explains itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryCause {
    /// The initial balances given when the account was opened.
    Opening,
    /// `POST /accounts/{id}/deposits`.
    Deposit,
    /// An approved card transaction.
    Transaction,
}

impl EntryCause {
    /// The stored and wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            EntryCause::Opening => "opening",
            EntryCause::Deposit => "deposit",
            EntryCause::Transaction => "transaction",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<EntryCause> {
        match text {
            "opening" => Some(EntryCause::Opening),
            "deposit" => Some(EntryCause::Deposit),
            "transaction" => Some(EntryCause::Transaction),
            _ => None,
        }
    }
}

/// One leg of a movement: `amount` is signed (negative = money leaves `account`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The account whose balance changes.
    pub account: AccountId,
    /// The category balance that changes.
    pub category: Category,
    /// Signed change of the available balance, in cents.
    pub amount: Amount,
}

/// The two entries that move `amount` of `category` from `source` to `target`.
/// `amount` must be non-negative; the pair always sums to zero.
pub fn movement(
    source: &AccountId,
    target: &AccountId,
    category: Category,
    amount: Amount,
) -> [Entry; 2] {
    debug_assert!(!amount.is_negative());
    // `amount` is non-negative, so its negation cannot overflow.
    let negated = Amount::from_cents(-amount.cents());
    [
        Entry {
            account: source.clone(),
            category,
            amount: negated,
        },
        Entry {
            account: target.clone(),
            category,
            amount,
        },
    ]
}

/// The system account as an [`AccountId`].
pub fn system_account() -> AccountId {
    AccountId::system(SYSTEM_ACCOUNT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_movement_balances() {
        let a = AccountId::parse("a").unwrap();
        let pair = movement(
            &a,
            &system_account(),
            Category::Meal,
            Amount::from_cents(1234),
        );
        assert_eq!(pair[0].amount.cents() + pair[1].amount.cents(), 0);
        assert_eq!(pair[0].account, a);
        assert_eq!(pair[0].amount.cents(), -1234);
        assert_eq!(pair[1].account.as_str(), "@external");
        assert!(pair.iter().all(|e| e.category == Category::Meal));
    }

    #[test]
    fn causes_round_trip() {
        for cause in [
            EntryCause::Opening,
            EntryCause::Deposit,
            EntryCause::Transaction,
        ] {
            assert_eq!(EntryCause::parse(cause.as_str()), Some(cause));
        }
        assert_eq!(EntryCause::parse("x"), None);
    }
}
