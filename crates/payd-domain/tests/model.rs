//! Property test of the domain core against a naive reference model.
//!
//! Goal: random sequences of account openings, deposits and card transactions (with and
//! without ids, replays and conflicting replays) never overdraw, never split, always conserve
//! money, and never debit an id twice. Method: drive a small ledger machine built only from
//! `payd-domain` functions (`decide`, `Balances`, `movement`) next to a model written with
//! plain integers and the rules of the spec, and compare after every step.

// Test helpers panic on impossible states by design.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use payd_domain::{
    AccountId, Amount, AuthorizationRequest, Balances, Category, Code, Decision, Entry, Mcc,
    MccMap, MerchantRules, PriorAuthorization, Rules, decide, movement, system_account,
};
use proptest::prelude::*;

const ACCOUNTS: usize = 3;
const MCCS: [&str; 5] = ["5411", "5412", "5811", "5812", "7999"];
const MERCHANTS: [&str; 3] = [
    "UBER EATS                      SAO PAULO BR",
    "PADARIA DO ZE               SAO PAULO BR",
    "PICPAY*RECARGA           BELO HORIZONTE BR",
];

#[derive(Clone, Debug)]
enum Op {
    Open {
        account: usize,
        cents: [i64; 3],
    },
    Deposit {
        account: usize,
        category: usize,
        cents: i64,
    },
    Transaction {
        id: Option<u8>,
        account: usize,
        cents: i64,
        mcc: usize,
        merchant: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..ACCOUNTS, [0i64..5_000, 0i64..5_000, 0i64..5_000])
            .prop_map(|(account, cents)| Op::Open { account, cents }),
        1 => (0..ACCOUNTS, 0usize..3, 1i64..3_000)
            .prop_map(|(account, category, cents)| Op::Deposit { account, category, cents }),
        // Few distinct ids, so replays and conflicting replays are frequent.
        4 => (proptest::option::of(0u8..12), 0..ACCOUNTS, 1i64..4_000, 0..MCCS.len(), 0..MERCHANTS.len())
            .prop_map(|(id, account, cents, mcc, merchant)| Op::Transaction { id, account, cents, mcc, merchant }),
    ]
}

/// A transaction's body in the model: (account, cents, mcc index, merchant index).
type Body = (usize, i64, usize, usize);

/// The spec's rules, written as plainly as possible.
#[derive(Default)]
struct Model {
    balances: HashMap<usize, [i64; 3]>,
    seen: HashMap<u8, (Body, &'static str)>,
}

impl Model {
    fn category(mcc: usize, merchant: usize) -> usize {
        match merchant {
            0 => return 1, // UBER EATS → MEAL
            2 => return 2, // PICPAY* → CASH
            _ => {}
        }
        match MCCS[mcc] {
            "5411" | "5412" => 0,
            "5811" | "5812" => 1,
            _ => 2,
        }
    }

    fn transaction(
        &mut self,
        id: Option<u8>,
        account: usize,
        cents: i64,
        mcc: usize,
        merchant: usize,
    ) -> &'static str {
        let body = (account, cents, mcc, merchant);
        if let Some(id) = id
            && let Some((first, code)) = self.seen.get(&id)
        {
            return if *first == body { code } else { "07" };
        }
        let Some(balance) = self.balances.get_mut(&account) else {
            return "07";
        };
        let category = Model::category(mcc, merchant);
        let code = if balance[category] >= cents {
            balance[category] -= cents;
            "00"
        } else if category != 2 && balance[2] >= cents {
            balance[2] -= cents;
            "00"
        } else {
            "51"
        };
        if let Some(id) = id {
            self.seen.insert(id, (body, code));
        }
        code
    }
}

/// A ledger built only from domain functions, as a store would use them.
struct Machine {
    rules: Rules,
    balances: HashMap<AccountId, Balances>,
    priors: HashMap<String, PriorAuthorization>,
    entries: Vec<Entry>,
}

impl Machine {
    fn new() -> Machine {
        let mut balances = HashMap::new();
        balances.insert(system_account(), Balances::default());
        Machine {
            rules: Rules {
                mcc: MccMap::default(),
                merchants: MerchantRules::new(MerchantRules::default_entries()),
            },
            balances,
            priors: HashMap::new(),
            entries: Vec::new(),
        }
    }

    fn apply_movement(
        &mut self,
        source: &AccountId,
        target: &AccountId,
        category: Category,
        amount: Amount,
    ) {
        for entry in movement(source, target, category, amount) {
            let balances = self.balances.get_mut(&entry.account).unwrap();
            *balances = if entry.amount.is_negative() {
                balances
                    .debit(
                        category,
                        Amount::from_cents(-entry.amount.cents()),
                        entry.account.is_system(),
                    )
                    .unwrap()
            } else {
                balances.credit(category, entry.amount).unwrap()
            };
            self.entries.push(entry);
        }
    }

    fn transaction(&mut self, request: &AuthorizationRequest) -> Code {
        let key = request.id.as_ref().map(|id| id.as_str().to_owned());
        let prior = key.as_ref().and_then(|k| self.priors.get(k));
        let decision = decide(
            request,
            prior,
            self.balances.get(&request.account),
            &self.rules,
        );
        let entries_before = self.entries.len();
        if let Decision::Approved { category, balances } = &decision {
            self.apply_movement(
                &request.account,
                &system_account(),
                *category,
                request.amount,
            );
            assert_eq!(
                self.balances[&request.account], *balances,
                "decision's balances are applied"
            );
            assert_eq!(
                self.entries.len(),
                entries_before + 2,
                "one movement: never a split"
            );
        } else {
            assert_eq!(
                self.entries.len(),
                entries_before,
                "nothing moves unless approved"
            );
        }
        if decision.is_recorded()
            && let Some(key) = key
        {
            self.priors.insert(
                key,
                PriorAuthorization {
                    account: request.account.clone(),
                    amount: request.amount,
                    mcc: request.mcc,
                    merchant: request.merchant.clone(),
                    code: decision.code(),
                },
            );
        }
        decision.code()
    }
}

fn account_id(n: usize) -> AccountId {
    AccountId::parse(&format!("acc-{n}")).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn domain_matches_the_reference_model(ops in proptest::collection::vec(op(), 1..80)) {
        let mut model = Model::default();
        let mut machine = Machine::new();
        for op in ops {
            match op {
                Op::Open { account, cents } => {
                    if model.balances.contains_key(&account) {
                        continue;
                    }
                    model.balances.insert(account, cents);
                    machine.balances.insert(account_id(account), Balances::default());
                    for (category, c) in Category::ALL.into_iter().zip(cents) {
                        if c > 0 {
                            machine.apply_movement(&system_account(), &account_id(account), category, Amount::from_cents(c));
                        }
                    }
                }
                Op::Deposit { account, category, cents } => {
                    let Some(balance) = model.balances.get_mut(&account) else { continue };
                    balance[category] += cents;
                    machine.apply_movement(&system_account(), &account_id(account), Category::ALL[category], Amount::from_cents(cents));
                }
                Op::Transaction { id, account, cents, mcc, merchant } => {
                    let expected = model.transaction(id, account, cents, mcc, merchant);
                    let request = AuthorizationRequest {
                        id: id.map(|n| payd_domain::TransactionId::parse(&format!("tx-{n}")).unwrap()),
                        account: account_id(account),
                        amount: Amount::from_cents(cents),
                        mcc: Mcc::parse(MCCS[mcc]).unwrap(),
                        merchant: MERCHANTS[merchant].to_owned(),
                    };
                    let code = machine.transaction(&request);
                    prop_assert_eq!(code.as_str(), expected);
                }
            }
            // Balances agree with the model and never go negative.
            for (account, cents) in &model.balances {
                let balances = machine.balances[&account_id(*account)];
                for (category, c) in Category::ALL.into_iter().zip(cents) {
                    prop_assert_eq!(balances.get(category).available.cents(), *c);
                    prop_assert!(*c >= 0, "overdraft");
                }
            }
            // Money is conserved: entries sum to zero per category, and every account's
            // balance (the system account's too) is the sum of its entries.
            for category in Category::ALL {
                let sum: i64 = machine.entries.iter().filter(|e| e.category == category).map(|e| e.amount.cents()).sum();
                prop_assert_eq!(sum, 0);
                for (account, balances) in &machine.balances {
                    let own: i64 = machine.entries.iter()
                        .filter(|e| e.category == category && &e.account == account)
                        .map(|e| e.amount.cents()).sum();
                    prop_assert_eq!(own, balances.get(category).available.cents());
                }
            }
        }
    }
}
