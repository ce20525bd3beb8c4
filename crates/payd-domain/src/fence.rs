//! Fencing tokens: what makes a distributed lock safe to lose.
//!
//! A lock service (Redis, for the transfer pipeline) grants a lock on an account with a
//! token larger than every token it granted for that account before. The store remembers,
//! per account, the largest token a write carried, and accepts a write only if each of its
//! tokens is at least that: a holder that paused past its lock's expiry (while another was
//! granted the account and wrote) finds its write refused, however late it wakes up.

use crate::AccountId;

/// A lock grant's token for one account, as a fenced write carries it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fence {
    /// The account the lock was granted on.
    pub account: AccountId,
    /// The grant's token: larger for every later grant on the account.
    pub token: i64,
}

/// Whether a write carrying `fences` may go ahead, given the largest token the store
/// recorded for each account (`recorded(account)`, `None` if no fenced write touched it
/// yet): only if no fence is older than its account's record. Equal is current: the same
/// grant may write twice (a redelivered message).
pub fn is_current(fences: &[Fence], recorded: impl Fn(&AccountId) -> Option<i64>) -> bool {
    fences
        .iter()
        .all(|fence| recorded(&fence.account).is_none_or(|last| fence.token >= last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fence(account: &str, token: i64) -> Fence {
        Fence {
            account: AccountId::parse(account).unwrap(),
            token,
        }
    }

    /// Goal: a write is refused as soon as one of its accounts saw a later grant's write,
    /// and accepted when its tokens are the latest (or the first) for every account.
    #[test]
    fn a_write_with_an_older_token_than_recorded_is_refused() {
        let recorded = |account: &AccountId| match account.as_str() {
            "a" => Some(10),
            _ => None,
        };
        assert!(is_current(&[fence("a", 10), fence("b", 1)], recorded));
        assert!(is_current(&[fence("a", 11)], recorded));
        assert!(!is_current(&[fence("b", 99), fence("a", 9)], recorded));
        assert!(is_current(&[], recorded));
    }
}
