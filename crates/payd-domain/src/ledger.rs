//! Double-entry ledger entries.
//!
//! Every movement of money is a pair of entries of opposite sign on two accounts, one of
//! which is often the system account [`SYSTEM_ACCOUNT`] (`@external`: the world outside
//! payd, where deposits come from and card spending goes to). Hence the sum of all entries,
//! per category, is always zero, and each account's balance is the sum of its entries: the
//! offline audit checks exactly these two facts.
//!
//! A balance has two buckets, `available` and `held`, and the journal records both: placing
//! a hold is a movement from the account's available bucket to its own held bucket, a
//! capture moves money out of the held bucket, a void or an expiry moves it back. So the
//! held part of a balance is explained by the journal as well as the available part.

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
    /// `POST /accounts/{id}/withdrawals`: money leaves to the outside world.
    Withdrawal,
    /// A hold placed (available → held).
    Hold,
    /// A hold captured (held → the outside world; any rest back to available).
    Capture,
    /// A hold voided (held → available).
    Void,
    /// A hold expired (held → available).
    Expiry,
    /// A transfer between two accounts.
    Transfer,
    /// A pay-in from a wallet: its hold, and its capture or release.
    Payment,
}

impl EntryCause {
    /// The stored and wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            EntryCause::Opening => "opening",
            EntryCause::Deposit => "deposit",
            EntryCause::Transaction => "transaction",
            EntryCause::Withdrawal => "withdrawal",
            EntryCause::Hold => "hold",
            EntryCause::Capture => "capture",
            EntryCause::Void => "void",
            EntryCause::Expiry => "expiry",
            EntryCause::Transfer => "transfer",
            EntryCause::Payment => "payment",
        }
    }

    /// Every cause.
    pub const ALL: [EntryCause; 10] = [
        EntryCause::Opening,
        EntryCause::Deposit,
        EntryCause::Transaction,
        EntryCause::Withdrawal,
        EntryCause::Hold,
        EntryCause::Capture,
        EntryCause::Void,
        EntryCause::Expiry,
        EntryCause::Transfer,
        EntryCause::Payment,
    ];

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<EntryCause> {
        EntryCause::ALL
            .into_iter()
            .find(|cause| cause.as_str() == text)
    }
}

/// Which part of a category balance an entry changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// Spendable.
    Available,
    /// Reserved by holds.
    Held,
}

impl Bucket {
    /// The stored and wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Bucket::Available => "available",
            Bucket::Held => "held",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<Bucket> {
        match text {
            "available" => Some(Bucket::Available),
            "held" => Some(Bucket::Held),
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
    /// The part of that balance that changes.
    pub bucket: Bucket,
    /// Signed change, in cents.
    pub amount: Amount,
}

/// The two entries that move `amount` of `category` from one (account, bucket) to
/// another. `amount` must be non-negative; the pair always sums to zero.
pub fn pair(
    source: (&AccountId, Bucket),
    target: (&AccountId, Bucket),
    category: Category,
    amount: Amount,
) -> [Entry; 2] {
    debug_assert!(!amount.is_negative());
    // `amount` is non-negative, so its negation cannot overflow.
    let negated = Amount::from_cents(-amount.cents());
    [
        Entry {
            account: source.0.clone(),
            category,
            bucket: source.1,
            amount: negated,
        },
        Entry {
            account: target.0.clone(),
            category,
            bucket: target.1,
            amount,
        },
    ]
}

/// The two entries that move available money of `category` from `source` to `target`.
pub fn movement(
    source: &AccountId,
    target: &AccountId,
    category: Category,
    amount: Amount,
) -> [Entry; 2] {
    pair(
        (source, Bucket::Available),
        (target, Bucket::Available),
        category,
        amount,
    )
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
        for cause in EntryCause::ALL {
            assert_eq!(EntryCause::parse(cause.as_str()), Some(cause));
        }
        assert_eq!(EntryCause::parse("x"), None);
        for bucket in [Bucket::Available, Bucket::Held] {
            assert_eq!(Bucket::parse(bucket.as_str()), Some(bucket));
        }
    }

    #[test]
    fn a_reservation_stays_in_the_account() {
        let a = AccountId::parse("a").unwrap();
        let [from, to] = pair(
            (&a, Bucket::Available),
            (&a, Bucket::Held),
            Category::Cash,
            Amount::from_cents(5),
        );
        assert_eq!((from.bucket, from.amount.cents()), (Bucket::Available, -5));
        assert_eq!((to.bucket, to.amount.cents()), (Bucket::Held, 5));
    }
}
