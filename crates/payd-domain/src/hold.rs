//! Holds: money reserved on an account (available → held) until it is captured (it leaves),
//! voided (it returns), or expires (it returns, and can no longer be captured).
//!
//! Every step is a pure function of the hold and the time, returning the hold after the step
//! and the journal entries that explain it. The store applies the entries to the balances,
//! so a balance can only change through an entry.

use crate::ledger::{Bucket, Entry, pair};
use crate::{AccountId, Amount, Balances, Category, ResourceId};

/// Where a hold stands. Every status but `Active` is final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HoldStatus {
    /// Reserved; can be captured, voided, or expire.
    Active,
    /// Captured (fully or partly); the rest went back to available.
    Captured,
    /// Voided: everything went back to available.
    Voided,
    /// Expired: everything went back to available.
    Expired,
}

impl HoldStatus {
    /// The stored and wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            HoldStatus::Active => "active",
            HoldStatus::Captured => "captured",
            HoldStatus::Voided => "voided",
            HoldStatus::Expired => "expired",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<HoldStatus> {
        [
            HoldStatus::Active,
            HoldStatus::Captured,
            HoldStatus::Voided,
            HoldStatus::Expired,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }
}

/// A hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    /// Its id.
    pub id: ResourceId,
    /// The account whose money is held.
    pub account: AccountId,
    /// The category balance it holds.
    pub category: Category,
    /// The amount held when placed.
    pub amount: Amount,
    /// How much was captured (zero unless `Captured`).
    pub captured: Amount,
    /// Where it stands.
    pub status: HoldStatus,
    /// When it expires (ms since the epoch); `None` never (a pay-in's hold lives as long
    /// as its payment is unresolved).
    pub expires_at_ms: Option<i64>,
}

/// Why a hold step was refused. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HoldError {
    /// The available balance does not cover the hold.
    #[error("insufficient funds")]
    InsufficientFunds,
    /// The amount is zero or negative.
    #[error("amount must be positive")]
    InvalidAmount,
    /// The capture asks for more than the hold holds.
    #[error("capture amount exceeds the held amount")]
    ExceedsHold,
    /// The hold is already captured, voided or expired.
    #[error("hold is {}", .0.as_str())]
    NotActive(HoldStatus),
    /// The hold's time is up: it can no longer be captured (the store expires it).
    #[error("hold has expired")]
    Expired,
}

/// A step's result: the hold after it and the entries to post.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldStep {
    /// The hold after the step.
    pub hold: Hold,
    /// Balanced pairs of entries (one or two pairs).
    pub entries: Vec<Entry>,
}

impl Hold {
    /// Whether the hold's time is up at `now_ms` (whatever its status).
    pub fn is_due(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_some_and(|at| now_ms >= at)
    }

    fn active(&self, now_ms: i64) -> Result<(), HoldError> {
        match self.status {
            HoldStatus::Active if self.is_due(now_ms) => Err(HoldError::Expired),
            HoldStatus::Active => Ok(()),
            status => Err(HoldError::NotActive(status)),
        }
    }

    /// The entries that return `amount` from held to available.
    fn release_entries(&self, amount: Amount) -> [Entry; 2] {
        pair(
            (&self.account, Bucket::Held),
            (&self.account, Bucket::Available),
            self.category,
            amount,
        )
    }
}

/// Places a hold of `amount` on `account`'s `category`, whose balances are `balances`.
pub fn place(
    id: ResourceId,
    account: AccountId,
    category: Category,
    amount: Amount,
    expires_at_ms: Option<i64>,
    balances: &Balances,
) -> Result<HoldStep, HoldError> {
    if !amount.is_positive() {
        return Err(HoldError::InvalidAmount);
    }
    if !balances.covers(category, amount) {
        return Err(HoldError::InsufficientFunds);
    }
    let entries = pair(
        (&account, Bucket::Available),
        (&account, Bucket::Held),
        category,
        amount,
    )
    .to_vec();
    Ok(HoldStep {
        hold: Hold {
            id,
            account,
            category,
            amount,
            captured: Amount::ZERO,
            status: HoldStatus::Active,
            expires_at_ms,
        },
        entries,
    })
}

/// Captures `amount` of an active hold (all of it when `None`): the captured money leaves
/// to `sink` (the system account), the rest returns to available.
pub fn capture(
    hold: &Hold,
    amount: Option<Amount>,
    sink: &AccountId,
    now_ms: i64,
) -> Result<HoldStep, HoldError> {
    hold.active(now_ms)?;
    let amount = amount.unwrap_or(hold.amount);
    if !amount.is_positive() {
        return Err(HoldError::InvalidAmount);
    }
    let rest = hold
        .amount
        .checked_sub(amount)
        .filter(|rest| !rest.is_negative())
        .ok_or(HoldError::ExceedsHold)?;
    let mut entries = pair(
        (&hold.account, Bucket::Held),
        (sink, Bucket::Available),
        hold.category,
        amount,
    )
    .to_vec();
    if rest.is_positive() {
        entries.extend(hold.release_entries(rest));
    }
    Ok(HoldStep {
        hold: Hold {
            captured: amount,
            status: HoldStatus::Captured,
            ..hold.clone()
        },
        entries,
    })
}

/// Voids an active hold: everything returns to available. A hold whose time is up is
/// expired instead (see [`expire`]); voiding it is refused so the two never both happen.
pub fn void(hold: &Hold, now_ms: i64) -> Result<HoldStep, HoldError> {
    hold.active(now_ms)?;
    Ok(HoldStep {
        hold: Hold {
            status: HoldStatus::Voided,
            ..hold.clone()
        },
        entries: hold.release_entries(hold.amount).to_vec(),
    })
}

/// Expires an active hold whose time is up: everything returns to available. `None` when
/// the hold is not active or not due.
pub fn expire(hold: &Hold, now_ms: i64) -> Option<HoldStep> {
    (hold.status == HoldStatus::Active && hold.is_due(now_ms)).then(|| HoldStep {
        hold: Hold {
            status: HoldStatus::Expired,
            ..hold.clone()
        },
        entries: hold.release_entries(hold.amount).to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system_account;

    fn c(cents: i64) -> Amount {
        Amount::from_cents(cents)
    }

    fn placed(amount: i64, expires_at_ms: Option<i64>) -> Hold {
        let balances = Balances::with_available(c(0), c(0), c(1_000));
        place(
            ResourceId::parse("h1").unwrap(),
            AccountId::parse("a").unwrap(),
            Category::Cash,
            c(amount),
            expires_at_ms,
            &balances,
        )
        .unwrap()
        .hold
    }

    fn net(entries: &[Entry], account: &str, bucket: Bucket) -> i64 {
        entries
            .iter()
            .filter(|e| e.account.as_str() == account && e.bucket == bucket)
            .map(|e| e.amount.cents())
            .sum()
    }

    #[test]
    fn placing_needs_cover_and_a_positive_amount() {
        let balances = Balances::with_available(c(0), c(0), c(100));
        let id = || ResourceId::parse("h").unwrap();
        let a = || AccountId::parse("a").unwrap();
        let step = place(id(), a(), Category::Cash, c(100), None, &balances).unwrap();
        assert_eq!(net(&step.entries, "a", Bucket::Available), -100);
        assert_eq!(net(&step.entries, "a", Bucket::Held), 100);
        assert_eq!(
            place(id(), a(), Category::Cash, c(101), None, &balances),
            Err(HoldError::InsufficientFunds)
        );
        assert_eq!(
            place(id(), a(), Category::Food, c(1), None, &balances),
            Err(HoldError::InsufficientFunds)
        );
        assert_eq!(
            place(id(), a(), Category::Cash, c(0), None, &balances),
            Err(HoldError::InvalidAmount)
        );
    }

    #[test]
    fn partial_capture_releases_the_rest() {
        let hold = placed(100, Some(1_000));
        let step = capture(&hold, Some(c(30)), &system_account(), 999).unwrap();
        assert_eq!(step.hold.status, HoldStatus::Captured);
        assert_eq!(step.hold.captured, c(30));
        assert_eq!(net(&step.entries, "a", Bucket::Held), -100);
        assert_eq!(net(&step.entries, "a", Bucket::Available), 70);
        assert_eq!(net(&step.entries, "@external", Bucket::Available), 30);
        assert_eq!(
            step.entries.iter().map(|e| e.amount.cents()).sum::<i64>(),
            0
        );
        let full = capture(&hold, None, &system_account(), 0).unwrap();
        assert_eq!(full.entries.len(), 2, "nothing to release");
        assert_eq!(
            capture(&hold, Some(c(101)), &system_account(), 0),
            Err(HoldError::ExceedsHold)
        );
        assert_eq!(
            capture(&hold, Some(c(0)), &system_account(), 0),
            Err(HoldError::InvalidAmount)
        );
    }

    #[test]
    fn an_expired_hold_cannot_be_captured_or_voided() {
        let hold = placed(100, Some(1_000));
        assert_eq!(
            capture(&hold, None, &system_account(), 1_000),
            Err(HoldError::Expired)
        );
        assert_eq!(void(&hold, 1_000), Err(HoldError::Expired));
        assert_eq!(expire(&hold, 999), None, "not due yet");
        let step = expire(&hold, 1_000).unwrap();
        assert_eq!(step.hold.status, HoldStatus::Expired);
        assert_eq!(net(&step.entries, "a", Bucket::Available), 100);
        assert_eq!(
            capture(&step.hold, None, &system_account(), 0),
            Err(HoldError::NotActive(HoldStatus::Expired))
        );
        assert_eq!(expire(&step.hold, 2_000), None, "final");
    }

    #[test]
    fn final_statuses_stay_final() {
        let hold = placed(100, None);
        assert_eq!(expire(&hold, i64::MAX), None, "no expiry");
        let voided = void(&hold, 0).unwrap().hold;
        let captured = capture(&hold, None, &system_account(), 0).unwrap().hold;
        for done in [voided, captured] {
            let status = done.status;
            assert_eq!(void(&done, 0), Err(HoldError::NotActive(status)));
            assert_eq!(
                capture(&done, None, &system_account(), 0),
                Err(HoldError::NotActive(status))
            );
        }
        for status in ["active", "captured", "voided", "expired"] {
            assert_eq!(
                HoldStatus::parse(status).map(HoldStatus::as_str),
                Some(status)
            );
        }
    }
}
