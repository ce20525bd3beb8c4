//! Webhook deliveries: the signature a receiver verifies and the retry schedule.
//!
//! Pure like the rest of the domain: the caller passes the current time and any randomness.
//!
//! # Signature
//! Every delivery is a `POST` of the event's JSON (`{"id":"evt_N","type":...}`) with three
//! headers:
//! - `Payd-Event-Id: evt_N`: the event id, also in the body; receivers deduplicate on it
//!   (delivery is at least once, with no ordering promise).
//! - `Payd-Timestamp: <unix seconds>`: when this attempt was signed.
//! - `Payd-Signature: v1=<hex>`: lowercase hex of HMAC-SHA256, keyed with the webhook's
//!   secret (its UTF-8 bytes), over the bytes `"{timestamp}.{body}"`, where `timestamp` is
//!   the `Payd-Timestamp` value exactly as sent and `body` the raw request body.
//!
//! Receivers recompute the HMAC, compare in constant time, and refuse timestamps too far
//! from their clock (replays): [`verify`] does all three. The header may carry several
//! comma-separated `v1=` values (room for secret rotation); one match is enough.
//!
//! # Retries
//! [`RetryPolicy`]: a failed attempt is retried after a capped, jittered exponential delay
//! (1 s doubling to a 1 h cap by default, each delay cut by up to half at random), until an
//! attempt fails at or after `give_up_after_ms` (24 h by default) since the delivery was
//! scheduled; the delivery is then marked failed. So a delivery is retried for at least
//! that long.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::gateway::backoff::Backoff;

/// The event id header (`evt_N`).
pub const EVENT_ID_HEADER: &str = "Payd-Event-Id";
/// The signing time header (unix seconds).
pub const TIMESTAMP_HEADER: &str = "Payd-Timestamp";
/// The signature header (`v1=<hex>`).
pub const SIGNATURE_HEADER: &str = "Payd-Signature";
/// The version prefix of the signature scheme.
pub const SIGNATURE_SCHEME: &str = "v1";
/// The replay window [`verify`] is usually called with: 5 minutes.
pub const DEFAULT_TOLERANCE_S: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (longer ones are hashed first).
    let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
        unreachable!("HMAC accepts keys of every length")
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn to_hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    text
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// The `Payd-Signature` value of `body` signed at `timestamp_s` (unix seconds) with
/// `secret`: `v1=` + lowercase hex HMAC-SHA256 over `"{timestamp_s}.{body}"`.
pub fn sign(secret: &str, timestamp_s: i64, body: &[u8]) -> String {
    let tag = mac(secret.as_bytes(), &timestamp_s.to_string(), body)
        .finalize()
        .into_bytes();
    format!("{SIGNATURE_SCHEME}={}", to_hex(&tag))
}

/// Why [`verify`] refused a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The timestamp is not an integer.
    #[error("the timestamp header is not unix seconds")]
    BadTimestamp,
    /// The timestamp is further than the tolerance from now.
    #[error("the timestamp is outside the tolerance window")]
    Stale,
    /// No `v1=<hex>` value in the signature header.
    #[error("the signature header has no v1 signature")]
    NoSignature,
    /// No `v1` value matches.
    #[error("no signature matches")]
    Mismatch,
}

/// Checks a delivery as a receiver would: `timestamp` and `signature` are the header values
/// exactly as received, `body` the raw body, `now_s` the receiver's clock (unix seconds),
/// `tolerance_s` how far the timestamp may be from it ([`DEFAULT_TOLERANCE_S`]). The HMAC
/// comparison is constant time.
pub fn verify(
    secret: &str,
    timestamp: &str,
    body: &[u8],
    signature: &str,
    now_s: i64,
    tolerance_s: i64,
) -> Result<(), VerifyError> {
    let signed_at: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    if signed_at.abs_diff(now_s) > tolerance_s.unsigned_abs() {
        return Err(VerifyError::Stale);
    }
    let mut candidates = signature
        .split(',')
        .filter_map(|part| part.trim().strip_prefix("v1="))
        .peekable();
    if candidates.peek().is_none() {
        return Err(VerifyError::NoSignature);
    }
    let expected = mac(secret.as_bytes(), timestamp.trim(), body);
    for candidate in candidates {
        if let Some(tag) = from_hex(candidate)
            && expected.clone().verify_slice(&tag).is_ok()
        {
            return Ok(());
        }
    }
    Err(VerifyError::Mismatch)
}

/// When to retry a failed delivery, and when to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay after the n-th failed attempt: `base * 2^(n-1)` capped, minus jitter.
    pub backoff: Backoff,
    /// An attempt that fails this long (ms) after the delivery was scheduled is the last.
    pub give_up_after_ms: i64,
}

impl Default for RetryPolicy {
    /// 1 s doubling to 1 h, up to half of each delay jittered away, for 24 h.
    fn default() -> RetryPolicy {
        RetryPolicy {
            backoff: Backoff {
                base_ms: 1_000,
                cap_ms: 3_600_000,
                jitter_percent: 50,
            },
            give_up_after_ms: 24 * 3_600_000,
        }
    }
}

/// What follows a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Try again at this instant (ms since the epoch).
    At(i64),
    /// The delivery is failed for good.
    GiveUp,
}

impl RetryPolicy {
    /// After attempt number `attempt` (1 = the first) failed at `now_ms`, for a delivery
    /// scheduled at `scheduled_at_ms`: the next attempt's time, or [`Retry::GiveUp`] once
    /// `give_up_after_ms` have passed since scheduling. `random` is any `u32` from the
    /// caller's RNG (the jitter).
    pub fn after_failure(
        &self,
        scheduled_at_ms: i64,
        attempt: u32,
        now_ms: i64,
        random: u32,
    ) -> Retry {
        if now_ms.saturating_sub(scheduled_at_ms) >= self.give_up_after_ms {
            return Retry::GiveUp;
        }
        let delay = self.backoff.delay_ms(attempt.saturating_sub(1), random);
        Retry::At(now_ms.saturating_add(i64::try_from(delay).unwrap_or(i64::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &str = "whsec_test_secret_0123456789";

    #[test]
    fn known_answer() {
        // Computed independently:
        // printf '1700000000.{"id":"evt_1"}' | openssl dgst -sha256 -hmac "$SECRET"
        assert_eq!(
            sign(SECRET, 1_700_000_000, br#"{"id":"evt_1"}"#),
            "v1=7e9a82a20098cf01f04d9c09f5a7459669bfecf51392ce3adb1445906fceff61"
        );
        // The primitive itself: RFC 4231, test case 2.
        let mut m = HmacSha256::new_from_slice(b"Jefe").unwrap();
        m.update(b"what do ya want for nothing?");
        assert_eq!(
            to_hex(&m.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verify_accepts_own_signatures_only() {
        let body = br#"{"id":"evt_7","type":"hold.voided"}"#;
        let now = 1_700_000_000;
        let signature = sign(SECRET, now, body);
        let ts = now.to_string();
        assert_eq!(verify(SECRET, &ts, body, &signature, now, 300), Ok(()));
        // Within tolerance either way.
        assert_eq!(
            verify(SECRET, &ts, body, &signature, now + 300, 300),
            Ok(())
        );
        assert_eq!(
            verify(SECRET, &ts, body, &signature, now - 300, 300),
            Ok(())
        );
        assert_eq!(
            verify(SECRET, &ts, body, &signature, now + 301, 300),
            Err(VerifyError::Stale)
        );
        // Another secret, body or timestamp.
        assert_eq!(
            verify("another secret......", &ts, body, &signature, now, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, &ts, b"{}", &signature, now, 300),
            Err(VerifyError::Mismatch)
        );
        let later = (now + 1).to_string();
        assert_eq!(
            verify(SECRET, &later, body, &signature, now, 300),
            Err(VerifyError::Mismatch)
        );
        // Malformed headers.
        assert_eq!(
            verify(SECRET, "soon", body, &signature, now, 300),
            Err(VerifyError::BadTimestamp)
        );
        assert_eq!(
            verify(SECRET, &ts, body, "sha256=abc", now, 300),
            Err(VerifyError::NoSignature)
        );
        assert_eq!(
            verify(SECRET, &ts, body, "v1=zz", now, 300),
            Err(VerifyError::Mismatch)
        );
        // Several values (rotation): one match is enough; uppercase hex is fine.
        let several = format!(
            "v1={}, {}",
            "00".repeat(32),
            signature.to_uppercase().replace("V1=", "v1=")
        );
        assert_eq!(verify(SECRET, &ts, body, &several, now, 300), Ok(()));
    }

    #[test]
    fn hex_round_trips() {
        let bytes = [0u8, 1, 0x7f, 0x80, 0xff];
        assert_eq!(to_hex(&bytes), "00017f80ff");
        assert_eq!(from_hex("00017f80ff").as_deref(), Some(&bytes[..]));
        assert_eq!(from_hex("0"), None);
        assert_eq!(from_hex("0g"), None);
    }

    #[test]
    fn default_schedule_doubles_to_an_hour_and_lasts_a_day() {
        let policy = RetryPolicy {
            backoff: Backoff {
                jitter_percent: 0,
                ..RetryPolicy::default().backoff
            },
            ..RetryPolicy::default()
        };
        let start = 1_000_000;
        let mut now = start;
        let mut delays = Vec::new();
        let mut attempt = 1;
        while let Retry::At(next) = policy.after_failure(start, attempt, now, 0) {
            delays.push(next - now);
            now = next;
            attempt += 1;
        }
        assert_eq!(
            &delays[..13],
            &[
                1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 512_000,
                1_024_000, 2_048_000, 3_600_000
            ]
        );
        assert!(delays[13..].iter().all(|d| *d == 3_600_000));
        // The last attempt failed at least 24 h after scheduling, and not an hour later.
        assert!(now - start >= 24 * 3_600_000, "{}", now - start);
        assert!(now - start < 25 * 3_600_000, "{}", now - start);
        // 12 growing delays then 23 of an hour: 36 attempts in all without jitter.
        assert_eq!(attempt, 36);
    }

    #[test]
    fn give_up_exactly_at_the_window() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.after_failure(0, 5, policy.give_up_after_ms, 0),
            Retry::GiveUp
        );
        assert!(matches!(
            policy.after_failure(0, 5, policy.give_up_after_ms - 1, 0),
            Retry::At(_)
        ));
    }

    proptest! {
        #[test]
        fn retries_never_stop_early_and_stay_within_the_cap(
            randoms in proptest::collection::vec(any::<u32>(), 64),
        ) {
            let policy = RetryPolicy::default();
            let start = 1_700_000_000_000_i64;
            let mut now = start;
            let mut attempt = 1;
            for random in randoms.iter().cycle().take(1_000) {
                match policy.after_failure(start, attempt, now, *random) {
                    Retry::At(next) => {
                        let delay = next - now;
                        prop_assert!((500..=3_600_000).contains(&delay), "{delay}");
                        now = next;
                        attempt += 1;
                    }
                    Retry::GiveUp => break,
                }
            }
            prop_assert!(now - start >= policy.give_up_after_ms);
        }

        #[test]
        fn any_body_verifies_with_its_signature(
            body in proptest::collection::vec(any::<u8>(), 0..256),
            ts in 0i64..4_000_000_000,
        ) {
            let signature = sign(SECRET, ts, &body);
            prop_assert_eq!(verify(SECRET, &ts.to_string(), &body, &signature, ts, 0), Ok(()));
        }
    }
}
