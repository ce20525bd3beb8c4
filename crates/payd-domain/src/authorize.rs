//! The card authorization decision (levels L1–L3 of the spec) and its idempotency.
//!
//! [`decide`] is a pure function of the request, the account's balances, the rules and the
//! earlier answer for the same transaction id, if any. Serializing calls per account (L4) is
//! the store's job; this function only has to be right for one call.

use crate::{AccountId, Amount, Balances, Category, Mcc, Rules, TransactionId};

/// The answer code of `POST /transactions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// `00`: approved, the balance was debited.
    Approved,
    /// `51`: insufficient funds in both the category and CASH.
    InsufficientFunds,
    /// `07`: any other problem (unknown account, bad input, id reused with another body,
    /// internal error).
    Rejected,
}

impl Code {
    /// The two-character wire code.
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::Approved => "00",
            Code::InsufficientFunds => "51",
            Code::Rejected => "07",
        }
    }

    /// Parses a stored wire code.
    pub fn parse(text: &str) -> Option<Code> {
        match text {
            "00" => Some(Code::Approved),
            "51" => Some(Code::InsufficientFunds),
            "07" => Some(Code::Rejected),
            _ => None,
        }
    }
}

/// A validated card transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizationRequest {
    /// The client's id, the idempotency key; `None` means every request is new.
    pub id: Option<TransactionId>,
    /// The account to charge.
    pub account: AccountId,
    /// The amount, strictly positive.
    pub amount: Amount,
    /// The merchant category code.
    pub mcc: Mcc,
    /// The raw card-acceptor field, as received.
    pub merchant: String,
}

/// What the store remembers of a decided transaction with a client id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriorAuthorization {
    /// The account of the first request.
    pub account: AccountId,
    /// The amount of the first request.
    pub amount: Amount,
    /// The MCC of the first request.
    pub mcc: Mcc,
    /// The merchant field of the first request.
    pub merchant: String,
    /// The answer given.
    pub code: Code,
}

impl PriorAuthorization {
    /// Whether `request` is the same transaction (same account, amount, MCC and merchant).
    /// Amounts compare by value, so `19.9` and `"19.90"` are the same body.
    pub fn same_body(&self, request: &AuthorizationRequest) -> bool {
        self.account == request.account
            && self.amount == request.amount
            && self.mcc == request.mcc
            && self.merchant == request.merchant
    }
}

/// The outcome of [`decide`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The id was seen with the same body: answer as before and change nothing.
    Replay(Code),
    /// The id was seen with a different body: `07`, change nothing.
    IdConflict,
    /// No such account: `07`, change nothing (nothing is recorded, so a retry after the
    /// account exists is decided afresh).
    UnknownAccount,
    /// `51`: record the decision (the id replays `51`), move no money.
    Declined,
    /// `00`: debit the whole amount from `category`; `balances` are the account's new ones.
    Approved {
        /// The one category that pays the whole amount.
        category: Category,
        /// The account's balances after the debit.
        balances: Balances,
    },
}

impl Decision {
    /// The wire code of this decision.
    pub fn code(&self) -> Code {
        match self {
            Decision::Replay(code) => *code,
            Decision::IdConflict | Decision::UnknownAccount => Code::Rejected,
            Decision::Declined => Code::InsufficientFunds,
            Decision::Approved { .. } => Code::Approved,
        }
    }

    /// Whether the store must record the transaction (with its id) as decided.
    pub fn is_recorded(&self) -> bool {
        matches!(self, Decision::Declined | Decision::Approved { .. })
    }
}

/// Decides one card transaction.
///
/// - An id seen before answers as before (or `07` if the body differs).
/// - L1/L3: the merchant override, else the MCC, picks the category.
/// - L2: if that category cannot pay the *whole* amount, CASH pays it whole if it can.
///   Never a split; a CASH transaction never borrows from FOOD or MEAL.
pub fn decide(
    request: &AuthorizationRequest,
    prior: Option<&PriorAuthorization>,
    balances: Option<&Balances>,
    rules: &Rules,
) -> Decision {
    if let Some(prior) = prior {
        return if prior.same_body(request) {
            Decision::Replay(prior.code)
        } else {
            Decision::IdConflict
        };
    }
    let Some(balances) = balances else {
        return Decision::UnknownAccount;
    };
    let first = rules.category(request.mcc, &request.merchant);
    let candidates = [first, Category::Cash];
    let paying = if first == Category::Cash {
        &candidates[..1]
    } else {
        &candidates[..]
    };
    for &category in paying {
        if let Ok(after) = balances.debit(category, request.amount, false) {
            return Decision::Approved {
                category,
                balances: after,
            };
        }
    }
    Decision::Declined
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MccMap, MerchantPattern, MerchantRules};

    fn c(cents: i64) -> Amount {
        Amount::from_cents(cents)
    }

    fn request(amount: i64, mcc: &str, merchant: &str) -> AuthorizationRequest {
        AuthorizationRequest {
            id: None,
            account: AccountId::parse("acc").unwrap(),
            amount: c(amount),
            mcc: Mcc::parse(mcc).unwrap(),
            merchant: merchant.to_owned(),
        }
    }

    fn rules() -> Rules {
        Rules {
            mcc: MccMap::default(),
            merchants: MerchantRules::new([(
                MerchantPattern::parse("UBER EATS").unwrap(),
                Category::Meal,
            )]),
        }
    }

    fn approved_from(decision: &Decision) -> Option<Category> {
        match decision {
            Decision::Approved { category, .. } => Some(*category),
            _ => None,
        }
    }

    #[test]
    fn l1_debits_the_mcc_category() {
        let b = Balances::with_available(c(1000), c(1000), c(1000));
        let d = decide(&request(1000, "5411", "SHOP"), None, Some(&b), &rules());
        assert_eq!(approved_from(&d), Some(Category::Food));
        let Decision::Approved { balances, .. } = d else {
            unreachable!()
        };
        assert_eq!(balances.get(Category::Food).available, c(0));
        assert_eq!(balances.get(Category::Cash).available, c(1000));
        let d = decide(&request(1, "5812", "SHOP"), None, Some(&b), &rules());
        assert_eq!(approved_from(&d), Some(Category::Meal));
        let d = decide(&request(1, "1234", "SHOP"), None, Some(&b), &rules());
        assert_eq!(
            approved_from(&d),
            Some(Category::Cash),
            "unknown MCC → CASH"
        );
    }

    #[test]
    fn l2_falls_back_to_cash_for_the_whole_amount() {
        let b = Balances::with_available(c(500), c(0), c(700));
        let d = decide(&request(600, "5411", "SHOP"), None, Some(&b), &rules());
        assert_eq!(approved_from(&d), Some(Category::Cash));
        let Decision::Approved { balances, .. } = d else {
            unreachable!()
        };
        assert_eq!(
            balances.get(Category::Food).available,
            c(500),
            "no split: FOOD untouched"
        );
        assert_eq!(balances.get(Category::Cash).available, c(100));
    }

    #[test]
    fn l2_never_splits() {
        // FOOD 500 + CASH 500 would cover 800 together, but neither alone does.
        let b = Balances::with_available(c(500), c(0), c(500));
        let d = decide(&request(800, "5411", "SHOP"), None, Some(&b), &rules());
        assert_eq!(d, Decision::Declined);
        assert_eq!(d.code(), Code::InsufficientFunds);
    }

    #[test]
    fn l2_cash_never_borrows_from_benefits() {
        let b = Balances::with_available(c(10_000), c(10_000), c(5));
        let d = decide(&request(6, "9999", "SHOP"), None, Some(&b), &rules());
        assert_eq!(d, Decision::Declined);
    }

    #[test]
    fn exact_cover_is_approved() {
        let b = Balances::with_available(c(0), c(250), c(0));
        let d = decide(&request(250, "5811", "SHOP"), None, Some(&b), &rules());
        assert_eq!(approved_from(&d), Some(Category::Meal));
    }

    #[test]
    fn l3_merchant_override_beats_mcc() {
        let b = Balances::with_available(c(1000), c(1000), c(1000));
        let merchant = "UBER EATS                   SAO PAULO BR";
        let d = decide(&request(100, "5411", merchant), None, Some(&b), &rules());
        assert_eq!(approved_from(&d), Some(Category::Meal));
    }

    #[test]
    fn unknown_account_is_07_and_not_recorded() {
        let d = decide(&request(1, "5411", "SHOP"), None, None, &rules());
        assert_eq!(d, Decision::UnknownAccount);
        assert_eq!(d.code(), Code::Rejected);
        assert!(!d.is_recorded());
    }

    #[test]
    fn replays_answer_as_before_and_conflicts_are_07() {
        let req = request(100, "5411", "SHOP");
        let prior = PriorAuthorization {
            account: req.account.clone(),
            amount: req.amount,
            mcc: req.mcc,
            merchant: req.merchant.clone(),
            code: Code::InsufficientFunds,
        };
        let rich = Balances::with_available(c(1_000_000), c(0), c(0));
        assert_eq!(
            decide(&req, Some(&prior), Some(&rich), &rules()),
            Decision::Replay(Code::InsufficientFunds)
        );
        let mut other = req.clone();
        other.amount = c(101);
        assert_eq!(
            decide(&other, Some(&prior), Some(&rich), &rules()),
            Decision::IdConflict
        );
        let mut other = req;
        other.merchant = "SHOP2".to_owned();
        assert_eq!(
            decide(&other, Some(&prior), Some(&rich), &rules()).code(),
            Code::Rejected
        );
        assert!(!Decision::Replay(Code::Approved).is_recorded());
    }

    #[test]
    fn codes_round_trip() {
        for code in [Code::Approved, Code::InsufficientFunds, Code::Rejected] {
            assert_eq!(Code::parse(code.as_str()), Some(code));
        }
        assert_eq!(Code::parse("99"), None);
    }
}
