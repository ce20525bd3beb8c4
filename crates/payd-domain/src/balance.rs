//! Category balances: every account holds one balance per [`Category`], each split into
//! `available` (spendable) and `held` (reserved by holds).

use std::fmt;
use std::str::FromStr;

use crate::Amount;
use crate::ledger::Bucket;

/// The benefit categories a balance can belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    /// Groceries (supermarkets).
    Food,
    /// Prepared meals (restaurants).
    Meal,
    /// Free-use cash; the fallback for everything else.
    Cash,
}

impl Category {
    /// All categories, in storage order.
    pub const ALL: [Category; 3] = [Category::Food, Category::Meal, Category::Cash];

    /// The wire name: `FOOD`, `MEAL` or `CASH`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Category::Food => "FOOD",
            Category::Meal => "MEAL",
            Category::Cash => "CASH",
        }
    }

    const fn index(self) -> usize {
        match self {
            Category::Food => 0,
            Category::Meal => 1,
            Category::Cash => 2,
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not `FOOD`, `MEAL` or `CASH`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("category must be one of FOOD, MEAL, CASH")]
pub struct UnknownCategory;

impl FromStr for Category {
    type Err = UnknownCategory;

    /// Exact, upper-case names only: the wire format is a closed set.
    fn from_str(text: &str) -> Result<Category, UnknownCategory> {
        match text {
            "FOOD" => Ok(Category::Food),
            "MEAL" => Ok(Category::Meal),
            "CASH" => Ok(Category::Cash),
            _ => Err(UnknownCategory),
        }
    }
}

/// One category's balance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CategoryBalance {
    /// Spendable now.
    pub available: Amount,
    /// Reserved by holds; not spendable until captured or released.
    pub held: Amount,
}

/// Why a movement could not be applied to a balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MovementError {
    /// The available balance does not cover the amount.
    #[error("insufficient funds")]
    InsufficientFunds,
    /// The resulting balance would not fit in an `i64` of cents.
    #[error("balance would overflow")]
    Overflow,
}

/// The balances of one account, one per category.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Balances([CategoryBalance; 3]);

impl Balances {
    /// Balances with the given available amounts and nothing held.
    pub fn with_available(food: Amount, meal: Amount, cash: Amount) -> Balances {
        let of = |available| CategoryBalance {
            available,
            held: Amount::ZERO,
        };
        Balances([of(food), of(meal), of(cash)])
    }

    /// Builds balances from their stored parts, in [`Category::ALL`] order.
    pub fn from_parts(parts: [CategoryBalance; 3]) -> Balances {
        Balances(parts)
    }

    /// One category's balance.
    pub fn get(&self, category: Category) -> CategoryBalance {
        self.0[category.index()]
    }

    /// Whether `category` can pay `amount` from its available balance.
    pub fn covers(&self, category: Category, amount: Amount) -> bool {
        self.get(category).available >= amount
    }

    /// Takes `amount` from `category`'s available balance. With `allow_negative` (system
    /// accounts) the balance may go below zero; otherwise that is
    /// [`MovementError::InsufficientFunds`].
    pub fn debit(
        &self,
        category: Category,
        amount: Amount,
        allow_negative: bool,
    ) -> Result<Balances, MovementError> {
        debug_assert!(
            !amount.is_negative(),
            "movements carry non-negative amounts"
        );
        let mut next = *self;
        let slot = &mut next.0[category.index()];
        if !allow_negative && slot.available < amount {
            return Err(MovementError::InsufficientFunds);
        }
        slot.available = slot
            .available
            .checked_sub(amount)
            .ok_or(MovementError::Overflow)?;
        Ok(next)
    }

    /// Adds `amount` to `category`'s available balance. The category's total (available +
    /// held) must fit too: otherwise a hold could never be released back to available.
    pub fn credit(&self, category: Category, amount: Amount) -> Result<Balances, MovementError> {
        debug_assert!(
            !amount.is_negative(),
            "movements carry non-negative amounts"
        );
        let mut next = *self;
        let slot = &mut next.0[category.index()];
        slot.available
            .checked_add(slot.held)
            .and_then(|total| total.checked_add(amount))
            .ok_or(MovementError::Overflow)?;
        slot.available = slot
            .available
            .checked_add(amount)
            .ok_or(MovementError::Overflow)?;
        Ok(next)
    }

    /// Moves `amount` of `category` from available to held (a hold is placed):
    /// [`MovementError::InsufficientFunds`] unless available covers it.
    pub fn reserve(&self, category: Category, amount: Amount) -> Result<Balances, MovementError> {
        let mut next = self.debit(category, amount, false)?;
        let slot = &mut next.0[category.index()];
        slot.held = slot
            .held
            .checked_add(amount)
            .ok_or(MovementError::Overflow)?;
        Ok(next)
    }

    /// Moves `amount` of `category` from held back to available (a hold is voided, expires,
    /// or is captured for less than its amount).
    pub fn release(&self, category: Category, amount: Amount) -> Result<Balances, MovementError> {
        let next = self.settle(category, amount)?;
        next.credit(category, amount)
    }

    /// Takes `amount` of `category` out of held (a hold is captured: the money leaves).
    /// Held can never go below zero: that would mean a hold was spent twice.
    pub fn settle(&self, category: Category, amount: Amount) -> Result<Balances, MovementError> {
        debug_assert!(
            !amount.is_negative(),
            "movements carry non-negative amounts"
        );
        let mut next = *self;
        let slot = &mut next.0[category.index()];
        if slot.held < amount {
            return Err(MovementError::InsufficientFunds);
        }
        slot.held = slot
            .held
            .checked_sub(amount)
            .ok_or(MovementError::Overflow)?;
        Ok(next)
    }

    /// Applies one journal entry's signed `delta` to a bucket. Available may go below zero
    /// only with `allow_negative` (system accounts); held never does.
    pub fn apply(
        &self,
        category: Category,
        bucket: Bucket,
        delta: Amount,
        allow_negative: bool,
    ) -> Result<Balances, MovementError> {
        let mut next = *self;
        let slot = &mut next.0[category.index()];
        let (part, may_go_negative) = match bucket {
            Bucket::Available => (&mut slot.available, allow_negative),
            Bucket::Held => (&mut slot.held, false),
        };
        let after = part.checked_add(delta).ok_or(MovementError::Overflow)?;
        if after.is_negative() && !may_go_negative {
            return Err(MovementError::InsufficientFunds);
        }
        *part = after;
        Ok(next)
    }

    /// The sum over categories of available + held, or `None` on overflow.
    pub fn total(&self) -> Option<Amount> {
        self.0.iter().try_fold(Amount::ZERO, |sum, b| {
            sum.checked_add(b.available)?.checked_add(b.held)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(cents: i64) -> Amount {
        Amount::from_cents(cents)
    }

    #[test]
    fn categories_parse_exactly() {
        for category in Category::ALL {
            assert_eq!(category.as_str().parse(), Ok(category));
        }
        assert_eq!("food".parse::<Category>(), Err(UnknownCategory));
        assert_eq!("".parse::<Category>(), Err(UnknownCategory));
    }

    #[test]
    fn debit_needs_cover_unless_negative_allowed() {
        let b = Balances::with_available(c(100), c(0), c(50));
        let after = b.debit(Category::Food, c(100), false).unwrap();
        assert_eq!(after.get(Category::Food).available, c(0));
        assert_eq!(
            after.get(Category::Cash).available,
            c(50),
            "other categories untouched"
        );
        assert_eq!(
            b.debit(Category::Food, c(101), false),
            Err(MovementError::InsufficientFunds)
        );
        let system = b.debit(Category::Meal, c(7), true).unwrap();
        assert_eq!(system.get(Category::Meal).available, c(-7));
    }

    #[test]
    fn credit_reports_overflow() {
        let b = Balances::with_available(c(i64::MAX), c(0), c(0));
        assert_eq!(b.credit(Category::Food, c(1)), Err(MovementError::Overflow));
        assert_eq!(
            b.credit(Category::Meal, c(1))
                .unwrap()
                .get(Category::Meal)
                .available,
            c(1)
        );
    }

    #[test]
    fn reserve_release_settle() {
        let b = Balances::with_available(c(0), c(0), c(100));
        let held = b.reserve(Category::Cash, c(60)).unwrap();
        assert_eq!(
            held.get(Category::Cash),
            CategoryBalance {
                available: c(40),
                held: c(60)
            }
        );
        assert_eq!(
            held.reserve(Category::Cash, c(41)),
            Err(MovementError::InsufficientFunds)
        );
        let partly = held.settle(Category::Cash, c(25)).unwrap();
        assert_eq!(partly.get(Category::Cash).held, c(35));
        let back = partly.release(Category::Cash, c(35)).unwrap();
        assert_eq!(
            back.get(Category::Cash),
            CategoryBalance {
                available: c(75),
                held: c(0)
            }
        );
        assert_eq!(
            back.settle(Category::Cash, c(1)),
            Err(MovementError::InsufficientFunds),
            "held never goes negative"
        );
        assert_eq!(
            b.release(Category::Cash, c(1)),
            Err(MovementError::InsufficientFunds)
        );
    }

    #[test]
    fn applying_entries() {
        let b = Balances::with_available(c(0), c(0), c(10));
        let after = b
            .apply(Category::Cash, Bucket::Held, c(5), false)
            .unwrap()
            .apply(Category::Cash, Bucket::Available, c(-10), false)
            .unwrap();
        assert_eq!(
            after.get(Category::Cash),
            CategoryBalance {
                available: c(0),
                held: c(5)
            }
        );
        assert_eq!(
            after.apply(Category::Cash, Bucket::Available, c(-1), false),
            Err(MovementError::InsufficientFunds)
        );
        assert!(
            after
                .apply(Category::Cash, Bucket::Available, c(-1), true)
                .is_ok()
        );
        assert_eq!(
            after.apply(Category::Cash, Bucket::Held, c(-6), true),
            Err(MovementError::InsufficientFunds),
            "held never goes negative, even for system accounts"
        );
        assert_eq!(
            after.apply(Category::Cash, Bucket::Held, c(i64::MAX), false),
            Err(MovementError::Overflow)
        );
    }

    #[test]
    fn total_sums_everything() {
        let b = Balances::from_parts([
            CategoryBalance {
                available: c(1),
                held: c(2),
            },
            CategoryBalance {
                available: c(3),
                held: c(0),
            },
            CategoryBalance {
                available: c(4),
                held: c(5),
            },
        ]);
        assert_eq!(b.total(), Some(c(15)));
    }
}
