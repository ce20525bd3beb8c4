//! How a store answers `GET /payments-summary` without scanning every payment: the same
//! plan for every backend.
//!
//! Stores keep booked totals per processor and second of `requestedAt`, updated in the
//! commit of each booking. A window `[from_ms, to_ms]` (inclusive, `None` = unbounded) is
//! read as the whole seconds inside it, from those totals, plus its partial seconds at each
//! edge, from the booked payments themselves (through an index on `requested_at_ms`). So
//! the cost grows with the window's length in seconds plus the payments of two seconds at
//! most, never with the number of payments.

use payd_domain::Amount;
use payd_domain::gateway::Processor;
use payd_ports::PaymentSummary;

/// What to read for one window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SummaryPlan {
    /// Whole seconds `[first, last]` to read from the per-second totals.
    pub seconds: Option<(i64, i64)>,
    /// Millisecond ranges `[low, high]` (inclusive) to read from the booked payments.
    pub edges: Vec<(i64, i64)>,
}

/// The plan for `[from_ms, to_ms]`; an empty plan for an empty (inverted) window.
pub fn plan(from_ms: Option<i64>, to_ms: Option<i64>) -> SummaryPlan {
    let from_ms = from_ms.unwrap_or(i64::MIN);
    let to_ms = to_ms.unwrap_or(i64::MAX);
    if from_ms > to_ms {
        return SummaryPlan::default();
    }
    // The whole seconds [first, last] lie entirely inside the window:
    // first = ceil(from / 1000), last = floor((to + 1) / 1000) - 1.
    let first = if from_ms == i64::MIN {
        i64::MIN
    } else {
        from_ms.div_euclid(1_000) + i64::from(from_ms.rem_euclid(1_000) != 0)
    };
    let last = if to_ms == i64::MAX {
        i64::MAX
    } else {
        (to_ms + 1).div_euclid(1_000) - 1
    };
    if first > last {
        // Within one or two partial seconds: read the payments directly.
        return SummaryPlan {
            seconds: None,
            edges: vec![(from_ms, to_ms)],
        };
    }
    let mut edges = Vec::with_capacity(2);
    if from_ms != i64::MIN && from_ms < first.saturating_mul(1_000) {
        edges.push((from_ms, first * 1_000 - 1));
    }
    if to_ms != i64::MAX && last.saturating_add(1).saturating_mul(1_000) <= to_ms {
        edges.push(((last + 1) * 1_000, to_ms));
    }
    SummaryPlan {
        seconds: Some((first, last)),
        edges,
    }
}

/// Adds `requests` payments summing to `amount` to `processor`'s totals; `None` if the
/// amount overflows (the stored data is then corrupt: no real total reaches 2^63 cents).
pub fn add(
    summary: &mut PaymentSummary,
    processor: Processor,
    requests: u64,
    amount: Amount,
) -> Option<()> {
    let totals = match processor {
        Processor::Default => &mut summary.default,
        Processor::Fallback => &mut summary.fallback,
    };
    totals.requests = totals.requests.checked_add(requests)?;
    totals.amount = totals.amount.checked_add(amount)?;
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_split_into_whole_seconds_and_edges() {
        assert_eq!(
            plan(Some(1_500), Some(4_200)),
            SummaryPlan {
                seconds: Some((2, 3)),
                edges: vec![(1_500, 1_999), (4_000, 4_200)],
            }
        );
        assert_eq!(
            plan(Some(2_000), Some(3_999)),
            SummaryPlan {
                seconds: Some((2, 3)),
                edges: vec![],
            },
            "aligned: no edges"
        );
        assert_eq!(
            plan(Some(1_050), Some(1_950)),
            SummaryPlan {
                seconds: None,
                edges: vec![(1_050, 1_950)],
            },
            "inside one second"
        );
        assert_eq!(
            plan(None, None),
            SummaryPlan {
                seconds: Some((i64::MIN, i64::MAX)),
                edges: vec![],
            }
        );
        assert_eq!(plan(Some(5), Some(4)), SummaryPlan::default(), "inverted");
        assert_eq!(
            plan(Some(-1_500), None),
            SummaryPlan {
                seconds: Some((-1, i64::MAX)),
                edges: vec![(-1_500, -1_001)],
            },
            "negative instants round like positive ones"
        );
    }

    #[test]
    fn totals_add_up_and_overflow_is_refused() {
        let mut summary = PaymentSummary::default();
        add(&mut summary, Processor::Default, 2, Amount::from_cents(300)).unwrap();
        add(&mut summary, Processor::Fallback, 1, Amount::from_cents(5)).unwrap();
        add(&mut summary, Processor::Default, 1, Amount::from_cents(1)).unwrap();
        assert_eq!(
            (summary.default.requests, summary.default.amount.cents()),
            (3, 301)
        );
        assert_eq!(summary.fallback.requests, 1);
        assert!(
            add(
                &mut summary,
                Processor::Default,
                1,
                Amount::from_cents(i64::MAX)
            )
            .is_none()
        );
    }
}
