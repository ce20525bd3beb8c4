//! A gateway payment's lifecycle across processors.
//!
//! ```text
//!            dispatch(p)                 Booked/AlreadyBooked
//!  Queued ─────────────▶ Processing(p) ───────────────────────▶ Booked(p)
//!    ▲   ◀── Rejected ──┘    │   ▲  │
//!    │   (not bound)         │   │  └── lease expired (crash) ─┐
//!    │               Unknown │   │ dispatch(p) again           ▼
//!    │                       └──▶ Unknown(p) ◀── Rejected (bound) ──
//!    └──── status 404 after settle_ms ──┘  └── status found ──▶ Booked(p)
//! ```
//!
//! The rule the type enforces: once an attempt at processor `p` may have booked the
//! payment (a timeout, a cut connection, a crash mid-call), the payment is *bound* to `p`:
//! it can only be sent to `p` again or resolved by asking `p`, until `p` says it is booked
//! or, after the last uncertain call can no longer land, that it is not.

use super::{Outcome, Processor};

/// Where a payment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentState {
    /// Free to go to any processor once `due_ms` has passed.
    Queued {
        /// Earliest next attempt, ms since the epoch.
        due_ms: i64,
    },
    /// A call to `processor` is out, leased until `lease_until_ms` (after which a crashed
    /// worker's call is presumed uncertain).
    Processing {
        /// Where the call went.
        processor: Processor,
        /// When the call was sent.
        sent_ms: i64,
        /// When the lease runs out.
        lease_until_ms: i64,
        /// The last earlier call to `processor` whose outcome is still unknown, if any: a
        /// rejection of this call does not free the payment while that one may land.
        unknown_since_ms: Option<i64>,
    },
    /// A call to `processor` may have booked it; bound to `processor`.
    Unknown {
        /// The processor it is bound to.
        processor: Processor,
        /// When the last call with an unknown outcome was sent.
        last_sent_ms: i64,
        /// When to try to resolve it next.
        due_ms: i64,
    },
    /// Booked at `processor` (final).
    Booked {
        /// The processor that confirmed it.
        processor: Processor,
    },
    /// Definitely not booked anywhere, and given up on (final).
    Failed,
}

/// The short name of a state (`queued`, `processing`, `unknown`, `booked`, `failed`).
impl PaymentState {
    /// The wire and storage name of the state.
    pub const fn name(&self) -> &'static str {
        match self {
            PaymentState::Queued { .. } => "queued",
            PaymentState::Processing { .. } => "processing",
            PaymentState::Unknown { .. } => "unknown",
            PaymentState::Booked { .. } => "booked",
            PaymentState::Failed => "failed",
        }
    }

    /// The processor the payment is at or bound to, if any.
    pub const fn processor(&self) -> Option<Processor> {
        match self {
            PaymentState::Processing { processor, .. }
            | PaymentState::Unknown { processor, .. }
            | PaymentState::Booked { processor } => Some(*processor),
            PaymentState::Queued { .. } | PaymentState::Failed => None,
        }
    }

    /// When the payment next needs attention (an attempt, a resolution or a lease check).
    pub const fn due_ms(&self) -> Option<i64> {
        match self {
            PaymentState::Queued { due_ms } | PaymentState::Unknown { due_ms, .. } => Some(*due_ms),
            PaymentState::Processing { lease_until_ms, .. } => Some(*lease_until_ms),
            PaymentState::Booked { .. } | PaymentState::Failed => None,
        }
    }

    /// Whether the state is final.
    pub const fn is_final(&self) -> bool {
        matches!(self, PaymentState::Booked { .. } | PaymentState::Failed)
    }
}

/// A transition that the lifecycle does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The payment is bound to another processor (its outcome there is unknown).
    #[error("payment is bound to the {0} processor")]
    BoundElsewhere(Processor),
    /// The payment is not waiting for this step (already booked, in flight, not due, ...).
    #[error("payment is {0}, not ready for this step")]
    NotReady(&'static str),
}

impl PaymentState {
    /// A new payment, due at once.
    pub const fn new(now_ms: i64) -> PaymentState {
        PaymentState::Queued { due_ms: now_ms }
    }

    /// Sends an attempt to `processor` at `now_ms`, leased for `lease_ms`. A queued payment
    /// may go anywhere; an unknown one only to the processor it is bound to.
    pub fn dispatch(
        &self,
        processor: Processor,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<PaymentState, TransitionError> {
        let unknown_since_ms = match *self {
            PaymentState::Queued { due_ms } if due_ms <= now_ms => None,
            PaymentState::Unknown {
                processor: bound,
                last_sent_ms,
                due_ms,
            } if due_ms <= now_ms => {
                if bound != processor {
                    return Err(TransitionError::BoundElsewhere(bound));
                }
                Some(last_sent_ms)
            }
            _ => return Err(TransitionError::NotReady(self.name())),
        };
        Ok(PaymentState::Processing {
            processor,
            sent_ms: now_ms,
            lease_until_ms: now_ms.saturating_add(lease_ms),
            unknown_since_ms,
        })
    }

    /// Records the outcome of the call in flight. `retry_in_ms` is when a rejected payment
    /// may be tried again; `recheck_in_ms` when an unknown one is looked at again.
    pub fn record(
        &self,
        outcome: Outcome,
        now_ms: i64,
        retry_in_ms: i64,
        recheck_in_ms: i64,
    ) -> Result<PaymentState, TransitionError> {
        let PaymentState::Processing {
            processor,
            sent_ms,
            unknown_since_ms,
            ..
        } = *self
        else {
            return Err(TransitionError::NotReady(self.name()));
        };
        Ok(match (outcome, unknown_since_ms) {
            (Outcome::Booked | Outcome::AlreadyBooked, _) => PaymentState::Booked { processor },
            (Outcome::Rejected, None) => PaymentState::Queued {
                due_ms: now_ms.saturating_add(retry_in_ms),
            },
            // An earlier uncertain call may still land: stay bound.
            (Outcome::Rejected, Some(last_sent_ms)) => PaymentState::Unknown {
                processor,
                last_sent_ms,
                due_ms: now_ms.saturating_add(retry_in_ms),
            },
            (Outcome::Unknown, _) => PaymentState::Unknown {
                processor,
                last_sent_ms: sent_ms,
                due_ms: now_ms.saturating_add(recheck_in_ms),
            },
        })
    }

    /// A worker's lease ran out (it crashed or hung): the call it made, if any, is now of
    /// unknown outcome, due for resolution at once.
    pub fn expire_lease(&self, now_ms: i64) -> Result<PaymentState, TransitionError> {
        match *self {
            PaymentState::Processing { lease_until_ms, .. } if lease_until_ms <= now_ms => {
                self.abandon(now_ms)
            }
            _ => Err(TransitionError::NotReady(self.name())),
        }
    }

    /// The worker that held this payment is gone (the process restarted): whatever call it
    /// made is of unknown outcome, due for resolution at `now_ms`, whatever its lease says.
    pub fn abandon(&self, now_ms: i64) -> Result<PaymentState, TransitionError> {
        match *self {
            PaymentState::Processing {
                processor, sent_ms, ..
            } => Ok(PaymentState::Unknown {
                processor,
                last_sent_ms: sent_ms,
                due_ms: now_ms,
            }),
            _ => Err(TransitionError::NotReady(self.name())),
        }
    }

    /// Records the answer of the bound processor's status query (`GET /payments/{id}`) made
    /// at `now_ms`. Found → booked. Not found frees the payment only when the last uncertain
    /// call was sent at least `settle_ms` ago (its delay at the processor has passed);
    /// otherwise it stays bound and is looked at again in `recheck_in_ms`.
    pub fn status_checked(
        &self,
        found: bool,
        now_ms: i64,
        settle_ms: i64,
        recheck_in_ms: i64,
    ) -> Result<PaymentState, TransitionError> {
        let PaymentState::Unknown {
            processor,
            last_sent_ms,
            ..
        } = *self
        else {
            return Err(TransitionError::NotReady(self.name()));
        };
        Ok(if found {
            PaymentState::Booked { processor }
        } else if now_ms.saturating_sub(last_sent_ms) >= settle_ms {
            PaymentState::Queued { due_ms: now_ms }
        } else {
            PaymentState::Unknown {
                processor,
                last_sent_ms,
                due_ms: now_ms.saturating_add(recheck_in_ms),
            }
        })
    }

    /// Moves the next attempt of a waiting payment to `due_ms`, changing nothing else (its
    /// processor cannot be called now: breaker open, or no free slot).
    pub fn postpone(&self, due_ms: i64) -> Result<PaymentState, TransitionError> {
        match *self {
            PaymentState::Queued { .. } => Ok(PaymentState::Queued { due_ms }),
            PaymentState::Unknown {
                processor,
                last_sent_ms,
                ..
            } => Ok(PaymentState::Unknown {
                processor,
                last_sent_ms,
                due_ms,
            }),
            _ => Err(TransitionError::NotReady(self.name())),
        }
    }

    /// Gives up on a payment that is definitely not booked anywhere.
    pub fn fail(&self) -> Result<PaymentState, TransitionError> {
        match self {
            PaymentState::Queued { .. } => Ok(PaymentState::Failed),
            _ => Err(TransitionError::NotReady(self.name())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Processor::{Default as D, Fallback as F};
    use proptest::prelude::*;

    #[test]
    fn happy_path() {
        let s = PaymentState::new(0).dispatch(D, 0, 1_000).unwrap();
        assert_eq!(s.name(), "processing");
        assert_eq!(
            s.record(Outcome::Booked, 5, 100, 100).unwrap(),
            PaymentState::Booked { processor: D }
        );
        let s = PaymentState::new(0).dispatch(F, 0, 1_000).unwrap();
        assert_eq!(
            s.record(Outcome::AlreadyBooked, 5, 100, 100).unwrap(),
            PaymentState::Booked { processor: F }
        );
    }

    #[test]
    fn rejection_frees_the_payment_after_backoff() {
        let s = PaymentState::new(0).dispatch(D, 0, 1_000).unwrap();
        let s = s.record(Outcome::Rejected, 10, 200, 0).unwrap();
        assert_eq!(s, PaymentState::Queued { due_ms: 210 });
        assert!(s.dispatch(F, 209, 1_000).is_err(), "not due yet");
        assert!(
            s.dispatch(F, 210, 1_000).is_ok(),
            "free to go to the other processor"
        );
    }

    #[test]
    fn unknown_outcome_binds_to_the_processor() {
        let s = PaymentState::new(0).dispatch(D, 0, 1_000).unwrap();
        let s = s.record(Outcome::Unknown, 1_500, 0, 500).unwrap();
        assert_eq!(
            s,
            PaymentState::Unknown {
                processor: D,
                last_sent_ms: 0,
                due_ms: 2_000
            }
        );
        assert_eq!(
            s.dispatch(F, 2_000, 1_000),
            Err(TransitionError::BoundElsewhere(D))
        );
        // A rejected re-post does not free it: the first call may still land.
        let s = s
            .dispatch(D, 2_000, 1_000)
            .unwrap()
            .record(Outcome::Rejected, 2_010, 300, 0)
            .unwrap();
        assert_eq!(
            s,
            PaymentState::Unknown {
                processor: D,
                last_sent_ms: 0,
                due_ms: 2_310
            }
        );
        // A re-post answered 422 resolves it as booked there.
        let s = s
            .dispatch(D, 2_310, 1_000)
            .unwrap()
            .record(Outcome::AlreadyBooked, 2_320, 0, 0)
            .unwrap();
        assert_eq!(s, PaymentState::Booked { processor: D });
    }

    #[test]
    fn status_404_frees_only_after_settle_time() {
        let s = PaymentState::Unknown {
            processor: D,
            last_sent_ms: 1_000,
            due_ms: 1_000,
        };
        assert_eq!(
            s.status_checked(true, 2_000, 10_000, 500).unwrap(),
            PaymentState::Booked { processor: D }
        );
        assert_eq!(
            s.status_checked(false, 5_000, 10_000, 500).unwrap(),
            PaymentState::Unknown {
                processor: D,
                last_sent_ms: 1_000,
                due_ms: 5_500
            }
        );
        assert_eq!(
            s.status_checked(false, 11_000, 10_000, 500).unwrap(),
            PaymentState::Queued { due_ms: 11_000 }
        );
    }

    #[test]
    fn expired_lease_becomes_unknown_at_that_processor() {
        let s = PaymentState::new(0).dispatch(F, 100, 1_000).unwrap();
        assert!(s.expire_lease(1_099).is_err());
        assert_eq!(
            s.expire_lease(1_100).unwrap(),
            PaymentState::Unknown {
                processor: F,
                last_sent_ms: 100,
                due_ms: 1_100
            }
        );
    }

    #[test]
    fn postpone_keeps_the_binding() {
        let s = PaymentState::Unknown {
            processor: F,
            last_sent_ms: 5,
            due_ms: 10,
        };
        assert_eq!(
            s.postpone(99).unwrap(),
            PaymentState::Unknown {
                processor: F,
                last_sent_ms: 5,
                due_ms: 99
            }
        );
        assert_eq!(
            PaymentState::new(0).postpone(7).unwrap(),
            PaymentState::Queued { due_ms: 7 }
        );
        assert!(
            PaymentState::new(0)
                .dispatch(D, 0, 10)
                .unwrap()
                .postpone(1)
                .is_err()
        );
    }

    #[test]
    fn abandoned_calls_are_unknown_at_once() {
        let s = PaymentState::new(0).dispatch(D, 100, 30_000).unwrap();
        let expected = PaymentState::Unknown {
            processor: D,
            last_sent_ms: 100,
            due_ms: 200,
        };
        assert_eq!(s.abandon(200).unwrap(), expected);
        assert!(PaymentState::new(0).abandon(1).is_err());
    }

    #[test]
    fn final_states_refuse_everything() {
        for s in [PaymentState::Booked { processor: D }, PaymentState::Failed] {
            assert!(s.is_final());
            assert!(s.dispatch(D, i64::MAX, 1).is_err());
            assert!(s.record(Outcome::Booked, 0, 0, 0).is_err());
            assert!(s.status_checked(true, 0, 0, 0).is_err());
            assert!(s.expire_lease(i64::MAX).is_err());
            assert!(s.fail().is_err());
            assert!(s.postpone(0).is_err());
        }
        assert_eq!(PaymentState::new(0).fail(), Ok(PaymentState::Failed));
    }

    #[derive(Clone, Debug)]
    enum Event {
        Dispatch(bool),
        Record(u8),
        Expire,
        Status(bool),
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            any::<bool>().prop_map(Event::Dispatch),
            (0u8..4).prop_map(Event::Record),
            Just(Event::Expire),
            any::<bool>().prop_map(Event::Status),
        ]
    }

    proptest! {
        /// Whatever happens, a payment is never dispatched to a second processor while a
        /// call at the first may still land, and once booked it stays booked where it was.
        #[test]
        fn never_two_processors_while_uncertain(events in proptest::collection::vec(event(), 1..60)) {
            const SETTLE: i64 = 1_000;
            let mut state = PaymentState::new(0);
            let mut now = 0i64;
            // The processor whose last call may still land, and when that call went out.
            let mut uncertain: Option<(Processor, i64)> = None;
            let mut booked_at: Option<Processor> = None;
            for e in events {
                now += 300;
                let next = match e {
                    Event::Dispatch(to_default) => {
                        let p = if to_default { D } else { F };
                        let next = state.dispatch(p, now, 500);
                        if let (Ok(PaymentState::Processing { .. }), Some((q, _))) = (next, uncertain) {
                            prop_assert_eq!(p, q, "sent elsewhere while uncertain");
                        }
                        next
                    }
                    Event::Record(n) => {
                        let outcome = [Outcome::Booked, Outcome::AlreadyBooked, Outcome::Rejected, Outcome::Unknown][usize::from(n)];
                        let before = state;
                        let next = state.record(outcome, now, 100, 100);
                        if let (Ok(_), PaymentState::Processing { processor, sent_ms, .. }) = (next, before) {
                            match outcome {
                                Outcome::Unknown => uncertain = Some((processor, sent_ms)),
                                Outcome::Booked | Outcome::AlreadyBooked => booked_at = Some(processor),
                                Outcome::Rejected => {}
                            }
                        }
                        next
                    }
                    Event::Expire => {
                        let before = state;
                        let next = state.expire_lease(now);
                        if let (Ok(_), PaymentState::Processing { processor, sent_ms, .. }) = (next, before) {
                            uncertain = Some((processor, sent_ms));
                        }
                        next
                    }
                    Event::Status(found) => {
                        let next = state.status_checked(found, now, SETTLE, 100);
                        if let Ok(PaymentState::Queued { .. }) = next {
                            let (_, sent) = uncertain.take().expect("freed without an uncertain call");
                            prop_assert!(now - sent >= SETTLE, "freed before the call could settle");
                        }
                        if let (Ok(PaymentState::Booked { processor }), true) = (next, found) {
                            booked_at = Some(processor);
                        }
                        next
                    }
                };
                if let Ok(next) = next {
                    if let Some(p) = booked_at {
                        prop_assert_eq!(next, PaymentState::Booked { processor: p });
                    }
                    state = next;
                }
            }
        }
    }
}
