//! The booked payments, in memory.
//!
//! The simulator impersonates an external processor, not our ledger: its state lives only in
//! this process and a restart loses it (like `POST /admin/purge-payments`). [`Payments`] is
//! plain synchronous data; [`crate::state`] puts it behind a lock.
//!
//! Two views of the same set: `by_id` answers "is this correlation id booked?" (the 422
//! check and `GET /payments/{id}`), `by_time` keeps payments ordered by `requestedAt` so a
//! summary visits only the payments inside its window. The gateway test polls the summary
//! every few seconds over a 13-second window while 600 payments/s pile up; a full scan
//! would grow with the whole run.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use payd_domain::Amount;
use uuid::Uuid;

use crate::fee::fee_cents;
use crate::timestamp::Timestamp;

/// One booked payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Payment {
    pub(crate) amount: Amount,
    pub(crate) requested_at: Timestamp,
}

/// Totals over a window, in cents. `i128` so that no number of payments overflows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) total_cents: i128,
    pub(crate) total_requests: u64,
    /// Sum of each payment's fee, each rounded half-up to the cent (see [`crate::fee`]).
    pub(crate) total_fee_cents: i128,
}

/// `correlationId` already booked; the first booking stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AlreadyBooked;

/// Every booked payment, indexed twice.
#[derive(Debug, Default)]
pub(crate) struct Payments {
    by_id: HashMap<Uuid, Payment>,
    /// `(requestedAt in unix ms, id)` → amount: the id makes keys unique when many
    /// payments share a millisecond, and the amount saves a lookup per summarized payment.
    by_time: BTreeMap<(i64, Uuid), Amount>,
}

impl Payments {
    /// Books `payment` under `id` unless `id` is already booked. Both indexes change
    /// together or not at all.
    pub(crate) fn book(&mut self, id: Uuid, payment: Payment) -> Result<(), AlreadyBooked> {
        match self.by_id.entry(id) {
            Entry::Occupied(_) => Err(AlreadyBooked),
            Entry::Vacant(slot) => {
                self.by_time
                    .insert((payment.requested_at.unix_ms, id), payment.amount);
                slot.insert(payment);
                Ok(())
            }
        }
    }

    pub(crate) fn get(&self, id: &Uuid) -> Option<&Payment> {
        self.by_id.get(id)
    }

    /// Totals over payments with `from_ms <= requestedAt <= to_ms` (both inclusive; `None`
    /// is unbounded on that side). An empty or inverted window sums to zero.
    pub(crate) fn summary(
        &self,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
        fee_bps: u32,
    ) -> Summary {
        if let (Some(from), Some(to)) = (from_ms, to_ms)
            && from > to
        {
            // `BTreeMap::range` panics on an inverted range.
            return Summary::default();
        }
        let lower = from_ms.map_or(Bound::Unbounded, |ms| Bound::Included((ms, Uuid::nil())));
        let upper = to_ms.map_or(Bound::Unbounded, |ms| Bound::Included((ms, Uuid::max())));
        let mut summary = Summary::default();
        for amount in self
            .by_time
            .range((lower, upper))
            .map(|(_, amount)| *amount)
        {
            summary.total_cents += i128::from(amount.cents());
            summary.total_requests += 1;
            summary.total_fee_cents += fee_cents(amount.cents(), fee_bps);
        }
        summary
    }

    /// Forgets every payment.
    pub(crate) fn purge(&mut self) {
        self.by_id.clear();
        self.by_time.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timestamp;

    fn payment(cents: i64, at: &str) -> Payment {
        Payment {
            amount: Amount::from_cents(cents),
            requested_at: timestamp::parse(at).unwrap(),
        }
    }

    #[test]
    fn books_once_per_id() {
        let mut payments = Payments::default();
        let id = Uuid::new_v4();
        assert_eq!(
            payments.book(id, payment(100, "2025-01-01T00:00:00.000Z")),
            Ok(())
        );
        assert_eq!(
            payments.book(id, payment(200, "2025-01-01T00:00:01.000Z")),
            Err(AlreadyBooked)
        );
        assert_eq!(payments.get(&id).map(|p| p.amount.cents()), Some(100));
        assert_eq!(payments.summary(None, None, 0).total_requests, 1);
    }

    #[test]
    fn summary_bounds_are_inclusive_and_same_millisecond_payments_all_count() {
        let mut payments = Payments::default();
        let at = "2025-01-01T00:00:00.500Z";
        let ms = timestamp::parse(at).unwrap().unix_ms;
        for cents in [100, 200, 300] {
            payments.book(Uuid::new_v4(), payment(cents, at)).unwrap();
        }
        payments.book(Uuid::max(), payment(1, at)).unwrap();
        payments.book(Uuid::nil(), payment(2, at)).unwrap();
        assert_eq!(payments.summary(Some(ms), Some(ms), 0).total_requests, 5);
        assert_eq!(payments.summary(Some(ms), Some(ms), 0).total_cents, 603);
        assert_eq!(payments.summary(Some(ms + 1), None, 0).total_requests, 0);
        assert_eq!(payments.summary(None, Some(ms - 1), 0).total_requests, 0);
        assert_eq!(
            payments.summary(Some(ms + 1), Some(ms - 1), 0),
            Summary::default()
        );
    }

    #[test]
    fn purge_empties_both_indexes() {
        let mut payments = Payments::default();
        let id = Uuid::new_v4();
        payments
            .book(id, payment(100, "2025-01-01T00:00:00.000Z"))
            .unwrap();
        payments.purge();
        assert!(payments.get(&id).is_none());
        assert_eq!(payments.summary(None, None, 500), Summary::default());
        assert_eq!(
            payments.book(id, payment(100, "2025-01-01T00:00:00.000Z")),
            Ok(())
        );
    }
}
