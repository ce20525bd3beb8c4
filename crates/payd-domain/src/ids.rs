//! Validated identifiers. Each can only be built through `parse`, so a value of one of these
//! types is always well formed; the API rejects bad input once, at the edge.

use std::fmt;

/// Why an identifier was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Empty text.
    #[error("must not be empty")]
    Empty,
    /// Longer than the type allows.
    #[error("must be at most {max} characters")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// A character outside the allowed set.
    #[error("contains a character that is not allowed: {allowed}")]
    BadCharacter {
        /// A description of the allowed set.
        allowed: &'static str,
    },
    /// Identifiers starting with `@` belong to system accounts.
    #[error("ids starting with '@' are reserved")]
    Reserved,
}

fn check(
    text: &str,
    max: usize,
    allowed: &'static str,
    ok: impl Fn(char) -> bool,
) -> Result<(), IdError> {
    if text.is_empty() {
        Err(IdError::Empty)
    } else if text.chars().count() > max {
        Err(IdError::TooLong { max })
    } else if !text.chars().all(ok) {
        Err(IdError::BadCharacter { allowed })
    } else {
        Ok(())
    }
}

/// An account id: 1–64 characters from `A-Z a-z 0-9 . _ : -`. System accounts use a leading
/// `@`, which clients cannot.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(String);

const ACCOUNT_CHARS: &str = "letters, digits, '.', '_', ':' and '-'";

impl AccountId {
    /// Longest account id.
    pub const LEN_MAX: usize = 64;

    /// A client-chosen account id.
    pub fn parse(text: &str) -> Result<AccountId, IdError> {
        check(text, Self::LEN_MAX, ACCOUNT_CHARS, |c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-' | '@')
        })?;
        if text.starts_with('@') {
            return Err(IdError::Reserved);
        }
        if text.contains('@') {
            return Err(IdError::BadCharacter {
                allowed: ACCOUNT_CHARS,
            });
        }
        Ok(AccountId(text.to_owned()))
    }

    /// A system account (`@name`); only the domain and the stores create these.
    pub fn system(name: &str) -> AccountId {
        AccountId(format!("@{name}"))
    }

    /// Whether this is a system account, whose balance may go negative.
    pub fn is_system(&self) -> bool {
        self.0.starts_with('@')
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The id of a hold, a transfer or a webhook: 1–64 characters from `A-Z a-z 0-9 . _ : -`
/// (URL-safe, so it can appear in a path unescaped). Clients may choose it; the API
/// generates a UUIDv7 otherwise.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceId(String);

impl ResourceId {
    /// Longest resource id.
    pub const LEN_MAX: usize = 64;

    /// Validates a resource id.
    pub fn parse(text: &str) -> Result<ResourceId, IdError> {
        check(text, Self::LEN_MAX, ACCOUNT_CHARS, |c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')
        })?;
        Ok(ResourceId(text.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A client-supplied card transaction id (the idempotency key of `POST /transactions`):
/// 1–128 printable ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TransactionId(String);

impl TransactionId {
    /// Longest transaction id.
    pub const LEN_MAX: usize = 128;

    /// Validates a transaction id.
    pub fn parse(text: &str) -> Result<TransactionId, IdError> {
        check(text, Self::LEN_MAX, "printable ASCII", |c| {
            c.is_ascii_graphic()
        })?;
        Ok(TransactionId(text.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An `Idempotency-Key` header value: 1–255 printable ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Longest key.
    pub const LEN_MAX: usize = 255;

    /// Validates a key.
    pub fn parse(text: &str) -> Result<IdempotencyKey, IdError> {
        check(text, Self::LEN_MAX, "printable ASCII", |c| {
            c.is_ascii_graphic()
        })?;
        Ok(IdempotencyKey(text.to_owned()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A merchant category code: exactly four ASCII digits (`"0742"` keeps its leading zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mcc(u16);

impl Mcc {
    /// Validates a four-digit MCC.
    pub fn parse(text: &str) -> Result<Mcc, IdError> {
        if text.len() != 4 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdError::BadCharacter {
                allowed: "exactly four digits",
            });
        }
        text.parse().map(Mcc).map_err(|_| IdError::BadCharacter {
            allowed: "exactly four digits",
        })
    }

    /// The code as a number (`742` for `"0742"`).
    pub fn code(self) -> u16 {
        self.0
    }

    /// Rebuilds an MCC from a stored number; `None` above 9999.
    pub fn from_code(code: u16) -> Option<Mcc> {
        (code <= 9999).then_some(Mcc(code))
    }
}

impl fmt::Display for Mcc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}", self.0)
    }
}

/// A payment's correlation id: a UUID in its canonical 8-4-4-4-12 hexadecimal form, stored
/// lower-cased. It is the payment's idempotency key at payd and at the processors.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CorrelationId(String);

impl CorrelationId {
    /// Validates a UUID (any version; upper or lower case hex).
    pub fn parse(text: &str) -> Result<CorrelationId, IdError> {
        let bad = || IdError::BadCharacter {
            allowed: "a UUID (8-4-4-4-12 hexadecimal digits)",
        };
        let bytes = text.as_bytes();
        if bytes.len() != 36 {
            return Err(bad());
        }
        for (at, byte) in bytes.iter().enumerate() {
            let dash = matches!(at, 8 | 13 | 18 | 23);
            if dash != (*byte == b'-') || (!dash && !byte.is_ascii_hexdigit()) {
                return Err(bad());
            }
        }
        Ok(CorrelationId(text.to_ascii_lowercase()))
    }

    /// The id as text (lower case).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! display_as_str {
    ($($ty:ty),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}
display_as_str!(
    AccountId,
    ResourceId,
    TransactionId,
    IdempotencyKey,
    CorrelationId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids() {
        assert!(AccountId::parse("acc-1").is_ok());
        assert!(AccountId::parse("user:42_a.b").is_ok());
        assert_eq!(AccountId::parse(""), Err(IdError::Empty));
        assert_eq!(AccountId::parse("@external"), Err(IdError::Reserved));
        assert!(matches!(
            AccountId::parse("a@b"),
            Err(IdError::BadCharacter { .. })
        ));
        assert!(matches!(
            AccountId::parse("a b"),
            Err(IdError::BadCharacter { .. })
        ));
        assert!(matches!(
            AccountId::parse("ação"),
            Err(IdError::BadCharacter { .. })
        ));
        assert_eq!(
            AccountId::parse(&"a".repeat(65)),
            Err(IdError::TooLong { max: 64 })
        );
        assert!(AccountId::parse(&"a".repeat(64)).is_ok());
        assert!(AccountId::system("external").is_system());
        assert!(!AccountId::parse("x").unwrap().is_system());
    }

    #[test]
    fn resource_ids() {
        assert!(ResourceId::parse("tr-1:a.b_c").is_ok());
        assert!(ResourceId::parse("@x").is_err());
        assert!(ResourceId::parse("a/b").is_err());
        assert_eq!(ResourceId::parse(""), Err(IdError::Empty));
        assert_eq!(
            ResourceId::parse(&"a".repeat(65)),
            Err(IdError::TooLong { max: 64 })
        );
    }

    #[test]
    fn transaction_ids_and_keys() {
        assert!(TransactionId::parse("3f1c-…").is_err());
        assert!(TransactionId::parse("tx 1").is_err());
        assert!(TransactionId::parse("tx-1").is_ok());
        assert_eq!(
            TransactionId::parse(&"k".repeat(129)),
            Err(IdError::TooLong { max: 128 })
        );
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert!(IdempotencyKey::parse("").is_err());
    }

    #[test]
    fn correlation_ids_are_uuids() {
        let id = CorrelationId::parse("4A7901B8-7D26-4D9D-AA19-4DC1C7CF60B3").unwrap();
        assert_eq!(id.as_str(), "4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3");
        for bad in [
            "",
            "4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b",
            "4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b33",
            "4a7901b87d26-4d9d-aa19-4dc1c7cf60b3-",
            "4a7901b8-7d26-4d9d-aa19-4dc1c7cf60bg",
            "{4a7901b8-7d26-4d9d-aa19-4dc1c7cf60}",
        ] {
            assert!(CorrelationId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mccs_are_four_digits() {
        assert_eq!(Mcc::parse("5411").map(Mcc::code), Ok(5411));
        assert_eq!(
            Mcc::parse("0742").map(|m| m.to_string()),
            Ok("0742".to_owned())
        );
        for bad in ["541", "54111", "54a1", "", "-541", "+541", " 541"] {
            assert!(Mcc::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Mcc::from_code(10000), None);
    }
}
