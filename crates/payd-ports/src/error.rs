//! What a store answers when a command does not succeed: a [`Refusal`] (the command was
//! decided and refused; the client can act on it) or a [`StoreFailure`] (the store could
//! not run it; nothing was acknowledged), both carried by [`LedgerError`].

use std::borrow::Cow;
use std::sync::Arc;

use payd_domain::HoldStatus;

/// A client-visible refusal: the command was decided, answered, and changed nothing (an
/// expired hold is released on the way; see [`Refusal::HoldExpired`]). Refusals are stored
/// as idempotent answers like successes are, so a retry gets the same one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Opening an account with an id that already exists.
    #[error("account already exists")]
    AccountExists,
    /// The account does not exist.
    #[error("account not found")]
    AccountNotFound,
    /// An idempotency key was reused with a different request body.
    #[error("idempotency key was already used with a different request")]
    IdempotencyKeyReused,
    /// The movement would overflow a balance (including the system account's).
    #[error("balance would overflow")]
    BalanceOverflow,
    /// The available balance does not cover the amount (holds, withdrawals, pay-ins).
    #[error("insufficient funds")]
    InsufficientFunds,
    /// No hold with that id.
    #[error("hold not found")]
    HoldNotFound,
    /// The hold is captured, voided or expired already.
    #[error("hold is {}", .0.as_str())]
    HoldNotActive(HoldStatus),
    /// The hold's time is up; it was expired (its amount released) instead of captured or
    /// voided.
    #[error("hold has expired")]
    HoldExpired,
    /// The hold backs a pay-in: it is captured or released with its payment, not directly.
    #[error("hold backs a payment")]
    HoldOwnedByPayment,
    /// A capture for more than the hold holds.
    #[error("capture amount exceeds the held amount")]
    CaptureExceedsHold,
    /// No merchant override with that pattern.
    #[error("merchant override not found")]
    MerchantNotFound,
    /// No webhook with that id.
    #[error("webhook not found")]
    WebhookNotFound,
    /// A hold or transfer id that is already taken (by a request with another key).
    #[error("a resource with this id already exists")]
    ResourceExists,
    /// A request the store refuses as malformed or out of bounds (the edge validates
    /// first; this guards against a caller that did not, and states limits such as the
    /// number of live webhooks).
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// The store could not run a command (writer stopped, database unreachable, I/O error,
/// an invariant the stored data contradicts, shutting down). Nothing was acknowledged:
/// stores answer only once a commit's outcome is known, so a command either is committed
/// and answered, or is answered with this and was not applied, except when the connection
/// died during the commit itself; then the command may have been applied, and a retry with
/// the same idempotency key settles which.
///
/// Keeps the error that caused it ([`std::error::Error::source`]), for the logs.
#[derive(Clone, Debug)]
pub struct StoreFailure {
    context: Cow<'static, str>,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl StoreFailure {
    /// A failure of `context` ("committing a batch") caused by `source`.
    pub fn new(
        context: impl Into<Cow<'static, str>>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> StoreFailure {
        StoreFailure {
            context: context.into(),
            source: Some(Arc::new(source)),
        }
    }

    /// A failure of `context` caused by an already boxed error.
    pub fn boxed(
        context: impl Into<Cow<'static, str>>,
        source: Box<dyn std::error::Error + Send + Sync>,
    ) -> StoreFailure {
        StoreFailure {
            context: context.into(),
            source: Some(Arc::from(source)),
        }
    }

    /// A failure without an underlying error ("the store is shut down").
    pub fn message(context: impl Into<Cow<'static, str>>) -> StoreFailure {
        StoreFailure {
            context: context.into(),
            source: None,
        }
    }

    /// What failed.
    pub fn context(&self) -> &str {
        &self.context
    }
}

impl std::fmt::Display for StoreFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Some(source) => write!(f, "{}: {source}", self.context),
            None => f.write_str(&self.context),
        }
    }
}

impl std::error::Error for StoreFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

/// Why a store command did not succeed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum LedgerError {
    /// Decided and refused; changed nothing. The API answers it with its own code.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The store could not run the command; nothing was acknowledged (the API answers
    /// `503 store_unavailable`).
    #[error("store unavailable: {0}")]
    Unavailable(#[from] StoreFailure),
}

impl LedgerError {
    /// A [`LedgerError::Unavailable`] without an underlying error.
    pub fn unavailable(context: impl Into<Cow<'static, str>>) -> LedgerError {
        LedgerError::Unavailable(StoreFailure::message(context))
    }

    /// The refusal, if this is one.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            LedgerError::Refused(refusal) => Some(refusal),
            LedgerError::Unavailable(_) => None,
        }
    }
}

/// Refusals compare by value; failures by their text (they carry no identity beyond it),
/// so tests can compare whole results.
impl PartialEq for LedgerError {
    fn eq(&self, other: &LedgerError) -> bool {
        match (self, other) {
            (LedgerError::Refused(a), LedgerError::Refused(b)) => a == b,
            (LedgerError::Unavailable(a), LedgerError::Unavailable(b)) => {
                a.to_string() == b.to_string()
            }
            _ => false,
        }
    }
}

impl Eq for LedgerError {}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_failure_keeps_its_source() {
        let io = std::io::Error::other("disk on fire");
        let error = LedgerError::from(StoreFailure::new("committing a batch", io));
        assert_eq!(
            error.to_string(),
            "store unavailable: committing a batch: disk on fire"
        );
        let LedgerError::Unavailable(failure) = &error else {
            panic!("unavailable")
        };
        assert_eq!(
            failure.source().map(ToString::to_string),
            Some("disk on fire".to_owned())
        );
        assert_eq!(error.refusal(), None);
    }

    #[test]
    fn refusals_compare_by_value() {
        let refused = LedgerError::from(Refusal::HoldNotActive(HoldStatus::Voided));
        assert_eq!(refused.to_string(), "hold is voided");
        assert_eq!(refused, Refusal::HoldNotActive(HoldStatus::Voided).into());
        assert_ne!(refused, Refusal::HoldExpired.into());
        assert_ne!(refused, LedgerError::unavailable("hold is voided"));
        assert_eq!(
            LedgerError::unavailable("shut down"),
            LedgerError::unavailable("shut down")
        );
    }
}
