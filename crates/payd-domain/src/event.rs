//! The kinds of events written to the outbox, in the same commit as the state change they
//! report, and delivered to webhooks.

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A payment was booked by a processor.
    PaymentSucceeded,
    /// A payment definitively failed.
    PaymentFailed,
    /// A payment's outcome at its processor became unknown.
    PaymentUnknown,
    /// A transfer moved its money.
    TransferCompleted,
    /// A transfer was rejected.
    TransferRejected,
    /// A hold was captured.
    HoldCaptured,
    /// A hold was voided.
    HoldVoided,
    /// A hold expired.
    HoldExpired,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 8] = [
        EventKind::PaymentSucceeded,
        EventKind::PaymentFailed,
        EventKind::PaymentUnknown,
        EventKind::TransferCompleted,
        EventKind::TransferRejected,
        EventKind::HoldCaptured,
        EventKind::HoldVoided,
        EventKind::HoldExpired,
    ];

    /// The stored and wire name (`resource.verb`).
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::PaymentSucceeded => "payment.succeeded",
            EventKind::PaymentFailed => "payment.failed",
            EventKind::PaymentUnknown => "payment.unknown",
            EventKind::TransferCompleted => "transfer.completed",
            EventKind::TransferRejected => "transfer.rejected",
            EventKind::HoldCaptured => "hold.captured",
            EventKind::HoldVoided => "hold.voided",
            EventKind::HoldExpired => "hold.expired",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<EventKind> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(EventKind::parse("payment"), None);
    }
}
