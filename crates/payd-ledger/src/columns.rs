//! How domain values are laid out in columns: the one mapping every backend stores and
//! reads (the tables of the SQLite and PostgreSQL stores have the same columns).

use payd_domain::gateway::Processor;
use payd_domain::gateway::payment::PaymentState;
use payd_domain::{
    Amount, Balances, Bucket, Category, CategoryBalance, RejectReason, TransferStatus,
};

/// A payment state's columns: (status, processor, due_ms, sent_ms, unknown_since_ms).
/// `due_ms` is a queued or unknown payment's next attempt and a processing payment's
/// lease end.
pub type StateColumns = (
    &'static str,
    Option<&'static str>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// The columns of `state`.
pub fn state_columns(state: &PaymentState) -> StateColumns {
    match *state {
        PaymentState::Queued { due_ms } => ("queued", None, Some(due_ms), None, None),
        PaymentState::Processing {
            processor,
            sent_ms,
            lease_until_ms,
            unknown_since_ms,
        } => (
            "processing",
            Some(processor.as_str()),
            Some(lease_until_ms),
            Some(sent_ms),
            unknown_since_ms,
        ),
        PaymentState::Unknown {
            processor,
            last_sent_ms,
            due_ms,
        } => (
            "unknown",
            Some(processor.as_str()),
            Some(due_ms),
            Some(last_sent_ms),
            None,
        ),
        PaymentState::Booked { processor } => {
            ("booked", Some(processor.as_str()), None, None, None)
        }
        PaymentState::Failed => ("failed", None, None, None, None),
    }
}

/// Rebuilds a state from its columns; `Err` names what is corrupt.
pub fn state_from_columns(
    status: &str,
    processor: Option<&str>,
    due_ms: Option<i64>,
    sent_ms: Option<i64>,
    unknown_since_ms: Option<i64>,
) -> Result<PaymentState, String> {
    let processor = || -> Result<Processor, String> {
        let text = processor.unwrap_or_default();
        text.parse().map_err(|_| format!("processor {text:?}"))
    };
    let need = |value: Option<i64>, what: &str| value.ok_or_else(|| format!("{what} NULL"));
    Ok(match status {
        "queued" => PaymentState::Queued {
            due_ms: need(due_ms, "due_ms")?,
        },
        "processing" => PaymentState::Processing {
            processor: processor()?,
            sent_ms: need(sent_ms, "sent_ms")?,
            lease_until_ms: need(due_ms, "due_ms")?,
            unknown_since_ms,
        },
        "unknown" => PaymentState::Unknown {
            processor: processor()?,
            last_sent_ms: need(sent_ms, "sent_ms")?,
            due_ms: need(due_ms, "due_ms")?,
        },
        "booked" => PaymentState::Booked {
            processor: processor()?,
        },
        "failed" => PaymentState::Failed,
        other => return Err(format!("status {other:?}")),
    })
}

/// The six balance columns of an account, in table order: FOOD available, FOOD held,
/// MEAL available, MEAL held, CASH available, CASH held.
pub fn balance_columns(balances: &Balances) -> [i64; 6] {
    let [food, meal, cash] = Category::ALL.map(|c| balances.get(c));
    [
        food.available.cents(),
        food.held.cents(),
        meal.available.cents(),
        meal.held.cents(),
        cash.available.cents(),
        cash.held.cents(),
    ]
}

/// Balances from the six columns, in the order of [`balance_columns`].
pub fn balances_from_columns(columns: [i64; 6]) -> Balances {
    let part = |at: usize| CategoryBalance {
        available: Amount::from_cents(columns[at]),
        held: Amount::from_cents(columns[at + 1]),
    };
    Balances::from_parts([part(0), part(2), part(4)])
}

/// A transfer's status from its `status` and `reason` columns; `Err` names what is corrupt.
pub fn transfer_status(status: &str, reason: Option<&str>) -> Result<TransferStatus, String> {
    match (status, reason) {
        ("pending", None) => Ok(TransferStatus::Pending),
        ("completed", None) => Ok(TransferStatus::Completed),
        ("rejected", Some(reason)) => RejectReason::parse(reason)
            .map(TransferStatus::Rejected)
            .ok_or_else(|| format!("transfer reason {reason:?}")),
        _ => Err(format!("transfer status {status:?}")),
    }
}

/// A transfer status's `reason` column.
pub fn transfer_reason(status: TransferStatus) -> Option<&'static str> {
    match status {
        TransferStatus::Rejected(reason) => Some(reason.as_str()),
        TransferStatus::Pending | TransferStatus::Completed => None,
    }
}

/// An entry's `bucket` column: 0 available, 1 held.
pub fn bucket_column(bucket: Bucket) -> i16 {
    i16::from(bucket == Bucket::Held)
}

/// The bucket of an entry's `bucket` column, as [`bucket_column`] wrote it.
pub fn bucket_from_column(column: i64) -> Bucket {
    if column == 0 {
        Bucket::Available
    } else {
        Bucket::Held
    }
}

/// The due payments, class by class, as `WHERE` conditions on `status`: those bound to a
/// processor (whose outcome is owed) before the queued (not yet sent); with whether the
/// class's fresh payments (never sent yet, `attempts = 0`) wait for the sweep's grace
/// (see `PaymentStore::due_payments`).
pub const DUE_PAYMENT_CLASSES: [(&str, bool); 2] = [
    ("status = 'processing' OR status = 'unknown'", false),
    ("status = 'queued'", true),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_round_trips_through_its_columns() {
        let states = [
            PaymentState::Queued { due_ms: 5 },
            PaymentState::Processing {
                processor: Processor::Fallback,
                sent_ms: 1,
                lease_until_ms: 9,
                unknown_since_ms: Some(0),
            },
            PaymentState::Unknown {
                processor: Processor::Default,
                last_sent_ms: 3,
                due_ms: 4,
            },
            PaymentState::Booked {
                processor: Processor::Default,
            },
            PaymentState::Failed,
        ];
        for state in states {
            let (status, processor, due, sent, unknown) = state_columns(&state);
            assert_eq!(
                state_from_columns(status, processor, due, sent, unknown),
                Ok(state)
            );
        }
        assert!(state_from_columns("booked", Some("other"), None, None, None).is_err());
        assert!(state_from_columns("queued", None, None, None, None).is_err());
    }

    #[test]
    fn balances_and_transfer_statuses_round_trip() {
        let balances = balances_from_columns([1, 2, 3, 4, 5, 6]);
        assert_eq!(balance_columns(&balances), [1, 2, 3, 4, 5, 6]);
        let rejected = TransferStatus::Rejected(RejectReason::InsufficientFunds);
        assert_eq!(
            transfer_status("rejected", transfer_reason(rejected)),
            Ok(rejected)
        );
        assert!(transfer_status("completed", Some("x")).is_err());
    }
}
