#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Property test of holds, transfers and withdrawals against a naive reference model.
//!
//! Goal: random sequences of deposits, holds (place, full or partial capture, void, expiry as
//! time passes), transfers (submitted, then settled in acceptance order) and withdrawals
//! never overdraw, always conserve money, keep `held` equal to the active holds, never
//! capture an expired hold, and never leave a final state. Method: drive a small ledger
//! machine built only from `payd-domain` functions (`hold::*`, `Transfer::validate`,
//! `transfer::settle`, `transfer::withdraw`, `movement`, `Balances::apply`) next to a model
//! written with plain `i128` arithmetic and status strings, and compare after every step.
//!
//! The model refuses a deposit or a transfer that would take the target's category balance
//! (available + held) past `i64::MAX` cents, so that a held amount can always come back to
//! available; see `a_held_amount_can_always_come_back_to_available` for why.

use std::collections::HashMap;

use payd_domain::transfer;
use payd_domain::{
    AccountId, Amount, Balances, Bucket, Category, Entry, Hold, HoldError, HoldStatus,
    MovementError, RejectReason, ResourceId, Transfer, TransferInvalid, TransferStatus, hold,
    movement, system_account,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Client accounts `acc-0` .. `acc-2`, all opened (with nothing) before the first step.
const ACCOUNTS: usize = 3;
/// A transfer party that was never opened.
const GHOST: usize = ACCOUNTS;
/// The system account, as a transfer party and as the model's last row.
const SYSTEM: usize = ACCOUNTS + 1;
const HALF: i64 = i64::MAX / 2;
const START_MS: i64 = 1_700_000_000_000;

/// An amount to place, move or withdraw, resolved against the model when the step runs.
#[derive(Clone, Copy, Debug)]
enum Cents {
    /// This many cents.
    Abs(i64),
    /// The boundary plus this: for a debit (hold, withdrawal, transfer) the source's
    /// available balance (exactly all of it, one cent more, ...); for a deposit the most
    /// that the target's available bucket and the system account can still take.
    Rel(i64),
}

#[derive(Clone, Copy, Debug)]
enum CaptureAmount {
    /// Capture everything (`None`).
    Full,
    /// A fixed amount of cents.
    Cents(i64),
    /// The hold's amount plus this (so exactly it, one less, one more, ...).
    Relative(i64),
}

#[derive(Clone, Debug)]
enum Op {
    Deposit {
        account: usize,
        category: usize,
        cents: Cents,
    },
    PlaceHold {
        account: usize,
        category: usize,
        cents: Cents,
        ttl_ms: Option<i64>,
    },
    Capture {
        hold: usize,
        amount: CaptureAmount,
    },
    Void {
        hold: usize,
    },
    AdvanceTime {
        ms: i64,
        expire: bool,
    },
    SubmitTransfer {
        from: usize,
        to: usize,
        category: usize,
        cents: Cents,
    },
    SettlePending,
    Withdraw {
        account: usize,
        category: usize,
        cents: Cents,
    },
}

/// Zero, negative, small, larger than most balances, and huge (overflow paths).
fn cents() -> impl Strategy<Value = i64> {
    prop_oneof![
        2 => Just(0i64),
        1 => -100i64..0,
        8 => 1i64..200,
        4 => 200i64..20_000,
        2 => prop::sample::select(vec![HALF - 1, HALF, HALF + 1, i64::MAX - 1, i64::MAX]),
    ]
}

/// Multiples of 100 ms, so that "now == expires_at" happens often.
fn ms() -> impl Strategy<Value = i64> {
    prop::sample::select(vec![0i64, 100, 200, 300, 500, 1_000])
}

/// Deposits fill up to the overflow boundary only now and then.
fn deposit_amount() -> impl Strategy<Value = Cents> {
    prop_oneof![
        8 => cents().prop_map(Cents::Abs),
        2 => (-1i64..=1).prop_map(Cents::Rel),
    ]
}

fn amount() -> impl Strategy<Value = Cents> {
    prop_oneof![
        3 => cents().prop_map(Cents::Abs),
        2 => (-2i64..=1).prop_map(Cents::Rel),
    ]
}

/// A modest first deposit, so that most sequences start with money to move.
fn opening() -> impl Strategy<Value = Op> {
    (0..ACCOUNTS, 0usize..3, 1i64..5_000).prop_map(|(account, category, cents)| Op::Deposit {
        account,
        category,
        cents: Cents::Abs(cents),
    })
}

fn op() -> impl Strategy<Value = Op> {
    let account = 0..ACCOUNTS;
    // Mostly real accounts; sometimes one never opened, or the system account.
    let party = prop_oneof![8 => 0..ACCOUNTS, 1 => Just(GHOST), 1 => Just(SYSTEM)];
    // Mostly one category, so that money meets in it.
    let category = prop_oneof![1 => Just(0usize), 1 => Just(1usize), 4 => Just(2usize)];
    let hold = 0usize..64;
    let capture_amount = prop_oneof![
        2 => Just(CaptureAmount::Full),
        2 => cents().prop_map(CaptureAmount::Cents),
        3 => (-3i64..=1).prop_map(CaptureAmount::Relative),
    ];
    prop_oneof![
        4 => (account.clone(), category.clone(), deposit_amount())
            .prop_map(|(account, category, cents)| Op::Deposit { account, category, cents }),
        4 => (account.clone(), category.clone(), amount(), proptest::option::of(ms()))
            .prop_map(|(account, category, cents, ttl_ms)| Op::PlaceHold { account, category, cents, ttl_ms }),
        3 => (hold.clone(), capture_amount)
            .prop_map(|(hold, amount)| Op::Capture { hold, amount }),
        2 => hold.prop_map(|hold| Op::Void { hold }),
        2 => (ms(), any::<bool>()).prop_map(|(ms, expire)| Op::AdvanceTime { ms, expire }),
        4 => (party.clone(), party, category.clone(), amount())
            .prop_map(|(from, to, category, cents)| Op::SubmitTransfer { from, to, category, cents }),
        2 => Just(Op::SettlePending),
        2 => (account, category, amount())
            .prop_map(|(account, category, cents)| Op::Withdraw { account, category, cents }),
    ]
}

/// Whether an outcome may have moved money or changed a hold (anything else must not).
fn changed(outcome: &str) -> bool {
    outcome == "ok"
        || ((outcome.starts_with("expired:[") || outcome.starts_with("settled:["))
            && !outcome.ends_with("[]"))
}

// ---------------------------------------------------------------------------------------
// The reference model: plain numbers and strings, written from the spec, no domain code.
// ---------------------------------------------------------------------------------------

struct ModelHold {
    account: usize,
    category: usize,
    amount: i128,
    captured: i128,
    status: &'static str,
    expires_at: Option<i128>,
}

struct ModelTransfer {
    from: usize,
    to: usize,
    category: usize,
    amount: i128,
    status: String,
}

struct Model {
    now: i128,
    /// `[account][category]`, rows `0..ACCOUNTS` and `SYSTEM` (the `GHOST` row stays zero).
    available: [[i128; 3]; SYSTEM + 1],
    held: [[i128; 3]; SYSTEM + 1],
    holds: Vec<ModelHold>,
    transfers: Vec<ModelTransfer>,
}

fn fits(value: i128) -> bool {
    i128::from(i64::MIN) <= value && value <= i128::from(i64::MAX)
}

fn clamp(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}

impl Model {
    fn new() -> Model {
        Model {
            now: i128::from(START_MS),
            available: [[0; 3]; SYSTEM + 1],
            held: [[0; 3]; SYSTEM + 1],
            holds: Vec::new(),
            transfers: Vec::new(),
        }
    }

    /// Turns a generated amount into cents (input generation, not a prediction).
    fn resolve(&self, account: usize, category: usize, cents: Cents) -> i64 {
        match cents {
            Cents::Abs(cents) => cents,
            Cents::Rel(delta) => clamp(self.available[account][category] + i128::from(delta)),
        }
    }

    /// Turns a generated deposit amount into cents.
    fn resolve_deposit(&self, account: usize, category: usize, cents: Cents) -> i64 {
        match cents {
            Cents::Abs(cents) => cents,
            Cents::Rel(delta) => {
                let target_room = i128::from(i64::MAX) - self.available[account][category];
                let system_room = self.available[SYSTEM][category] - i128::from(i64::MIN);
                clamp(target_room.min(system_room) + i128::from(delta))
            }
        }
    }

    fn deposit(&mut self, account: usize, category: usize, cents: i64) -> String {
        let cents = i128::from(cents);
        if cents <= 0 {
            return "invalid_amount".into();
        }
        let to = self.available[account][category] + cents;
        let from = self.available[SYSTEM][category] - cents;
        // Refused when a number would not fit an i64 of cents, counting the target's whole
        // category balance (available + held): a hold must always be able to come back to
        // available (void, expiry, the rest of a partial capture).
        if !fits(to + self.held[account][category]) || !fits(from) {
            return "overflow".into();
        }
        self.available[account][category] = to;
        self.available[SYSTEM][category] = from;
        "ok".into()
    }

    fn place_hold(
        &mut self,
        account: usize,
        category: usize,
        cents: i64,
        ttl_ms: Option<i64>,
    ) -> String {
        let cents = i128::from(cents);
        if cents <= 0 {
            return "invalid_amount".into();
        }
        if self.available[account][category] < cents {
            return "insufficient_funds".into();
        }
        self.available[account][category] -= cents;
        self.held[account][category] += cents;
        self.holds.push(ModelHold {
            account,
            category,
            amount: cents,
            captured: 0,
            status: "active",
            expires_at: ttl_ms.map(|ttl| self.now + i128::from(ttl)),
        });
        "ok".into()
    }

    /// Why an operation on hold `index` cannot happen now, if it cannot.
    fn hold_refusal(&self, index: usize) -> Option<String> {
        let hold = &self.holds[index];
        if hold.status != "active" {
            Some(format!("not_active:{}", hold.status))
        } else if hold.expires_at.is_some_and(|at| self.now >= at) {
            Some("expired".into())
        } else {
            None
        }
    }

    fn capture(&mut self, index: usize, cents: Option<i64>) -> String {
        if let Some(refusal) = self.hold_refusal(index) {
            return refusal;
        }
        let hold = &mut self.holds[index];
        let cents = cents.map_or(hold.amount, i128::from);
        if cents <= 0 {
            return "invalid_amount".into();
        }
        if cents > hold.amount {
            return "exceeds_hold".into();
        }
        let (a, c) = (hold.account, hold.category);
        self.held[a][c] -= hold.amount;
        self.available[a][c] += hold.amount - cents;
        self.available[SYSTEM][c] += cents;
        hold.status = "captured";
        hold.captured = cents;
        "ok".into()
    }

    fn void(&mut self, index: usize) -> String {
        if let Some(refusal) = self.hold_refusal(index) {
            return refusal;
        }
        let hold = &mut self.holds[index];
        let (a, c) = (hold.account, hold.category);
        self.held[a][c] -= hold.amount;
        self.available[a][c] += hold.amount;
        hold.status = "voided";
        "ok".into()
    }

    fn advance(&mut self, ms: i64, expire: bool) -> String {
        self.now += i128::from(ms);
        if !expire {
            return "time".into();
        }
        let mut expired = Vec::new();
        for (index, hold) in self.holds.iter_mut().enumerate() {
            if hold.status == "active" && hold.expires_at.is_some_and(|at| self.now >= at) {
                let (a, c) = (hold.account, hold.category);
                self.held[a][c] -= hold.amount;
                self.available[a][c] += hold.amount;
                hold.status = "expired";
                expired.push(index);
            }
        }
        format!("expired:{expired:?}")
    }

    fn submit(&mut self, from: usize, to: usize, category: usize, cents: i64) -> String {
        if from == to {
            return "same_account".into();
        }
        if cents <= 0 {
            return "non_positive".into();
        }
        if from == SYSTEM || to == SYSTEM {
            return "system_account".into();
        }
        self.transfers.push(ModelTransfer {
            from,
            to,
            category,
            amount: i128::from(cents),
            status: "pending".into(),
        });
        "accepted".into()
    }

    fn settle_pending(&mut self) -> String {
        let mut settled = Vec::new();
        for t in self.transfers.iter_mut().filter(|t| t.status == "pending") {
            let c = t.category;
            t.status = if t.from == GHOST || t.to == GHOST {
                "rejected:account_not_found".into()
            } else if self.available[t.from][c] < t.amount {
                "rejected:insufficient_funds".into()
            } else if !fits(self.available[t.to][c] + self.held[t.to][c] + t.amount) {
                // As for deposits: the target's holds must still be able to come back.
                "rejected:balance_overflow".into()
            } else {
                self.available[t.from][c] -= t.amount;
                self.available[t.to][c] += t.amount;
                "completed".into()
            };
            settled.push(t.status.clone());
        }
        format!("settled:{settled:?}")
    }

    fn withdraw(&mut self, account: usize, category: usize, cents: i64) -> String {
        let cents = i128::from(cents);
        if cents <= 0 || self.available[account][category] < cents {
            return "refused".into();
        }
        self.available[account][category] -= cents;
        self.available[SYSTEM][category] += cents;
        "ok".into()
    }
}

// ---------------------------------------------------------------------------------------
// The machine: a ledger built only from domain functions, posting entries as a store does.
// ---------------------------------------------------------------------------------------

struct Machine {
    now_ms: i64,
    balances: HashMap<AccountId, Balances>,
    /// In placement order (the model's order too).
    holds: Vec<Hold>,
    /// When each captured hold was captured.
    captured_at: HashMap<ResourceId, i64>,
    /// In acceptance order, with how many times each was settled.
    transfers: Vec<(Transfer, TransferStatus, u32)>,
    journal: Vec<Entry>,
    next_id: u32,
}

fn party(n: usize) -> AccountId {
    match n {
        GHOST => AccountId::parse("acc-ghost").unwrap(),
        SYSTEM => system_account(),
        n => AccountId::parse(&format!("acc-{n}")).unwrap(),
    }
}

fn hold_error(error: HoldError) -> String {
    match error {
        HoldError::InsufficientFunds => "insufficient_funds".into(),
        HoldError::InvalidAmount => "invalid_amount".into(),
        HoldError::ExceedsHold => "exceeds_hold".into(),
        HoldError::NotActive(status) => format!("not_active:{}", status.as_str()),
        HoldError::Expired => "expired".into(),
    }
}

fn transfer_status(status: TransferStatus) -> String {
    match status {
        TransferStatus::Rejected(reason) => format!("rejected:{}", reason.as_str()),
        status => status.as_str().into(),
    }
}

impl Machine {
    fn new() -> Machine {
        let mut balances = HashMap::new();
        balances.insert(system_account(), Balances::default());
        for n in 0..ACCOUNTS {
            balances.insert(party(n), Balances::default());
        }
        Machine {
            now_ms: START_MS,
            balances,
            holds: Vec::new(),
            captured_at: HashMap::new(),
            transfers: Vec::new(),
            journal: Vec::new(),
            next_id: 0,
        }
    }

    fn fresh_id(&mut self, prefix: &str) -> ResourceId {
        self.next_id += 1;
        ResourceId::parse(&format!("{prefix}-{}", self.next_id)).unwrap()
    }

    fn balances(&self, n: usize) -> Balances {
        self.balances[&party(n)]
    }

    /// Posts entries all or nothing, as the store does: each through `Balances::apply`,
    /// negative available allowed for system accounts only.
    fn post(&mut self, entries: &[Entry]) -> Result<(), MovementError> {
        let mut next = self.balances.clone();
        for entry in entries {
            let balances = next
                .get_mut(&entry.account)
                .expect("entries only name existing accounts");
            *balances = balances.apply(
                entry.category,
                entry.bucket,
                entry.amount,
                entry.account.is_system(),
            )?;
        }
        self.balances = next;
        self.journal.extend_from_slice(entries);
        Ok(())
    }

    /// Posts entries a domain function approved: they must apply.
    fn post_approved(&mut self, what: &str, entries: &[Entry]) -> Result<(), TestCaseError> {
        self.post(entries).map_err(|error| {
            TestCaseError::fail(format!(
                "{what}: the domain approved entries that cannot be posted ({error}): {entries:?}"
            ))
        })
    }

    /// A deposit as the store makes one: the target must take the credit and the system
    /// account the (negative-allowed) debit, then the movement is posted.
    fn deposit(
        &mut self,
        account: usize,
        category: usize,
        cents: i64,
    ) -> Result<String, TestCaseError> {
        if cents <= 0 {
            return Ok("invalid_amount".into());
        }
        let (account, category, amount) = (
            party(account),
            Category::ALL[category],
            Amount::from_cents(cents),
        );
        let system = system_account();
        if self.balances[&account].credit(category, amount).is_err()
            || self.balances[&system]
                .debit(category, amount, true)
                .is_err()
        {
            return Ok("overflow".into());
        }
        self.post_approved("deposit", &movement(&system, &account, category, amount))?;
        Ok("ok".into())
    }

    fn place_hold(
        &mut self,
        account: usize,
        category: usize,
        cents: i64,
        ttl_ms: Option<i64>,
    ) -> Result<String, TestCaseError> {
        let id = self.fresh_id("h");
        let step = hold::place(
            id,
            party(account),
            Category::ALL[category],
            Amount::from_cents(cents),
            ttl_ms.map(|ttl| self.now_ms + ttl),
            &self.balances(account),
        );
        Ok(match step {
            Ok(step) => {
                prop_assert_eq!(step.hold.status, HoldStatus::Active);
                self.post_approved("place", &step.entries)?;
                self.holds.push(step.hold);
                "ok".into()
            }
            Err(error) => hold_error(error),
        })
    }

    fn capture(&mut self, index: usize, cents: Option<i64>) -> Result<String, TestCaseError> {
        let before = self.holds[index].clone();
        let step = hold::capture(
            &before,
            cents.map(Amount::from_cents),
            &system_account(),
            self.now_ms,
        );
        Ok(match step {
            Ok(step) => {
                prop_assert_eq!(&step.hold.id, &before.id);
                prop_assert_eq!(step.hold.status, HoldStatus::Captured);
                self.post_approved("capture", &step.entries)?;
                self.captured_at.insert(before.id, self.now_ms);
                self.holds[index] = step.hold;
                "ok".into()
            }
            Err(error) => hold_error(error),
        })
    }

    fn void(&mut self, index: usize) -> Result<String, TestCaseError> {
        let before = self.holds[index].clone();
        Ok(match hold::void(&before, self.now_ms) {
            Ok(step) => {
                prop_assert_eq!(step.hold.status, HoldStatus::Voided);
                self.post_approved("void", &step.entries)?;
                self.holds[index] = step.hold;
                "ok".into()
            }
            Err(error) => hold_error(error),
        })
    }

    /// Lets time pass; with `expire`, offers every hold to `hold::expire` (which picks the
    /// active, due ones).
    fn advance(&mut self, ms: i64, expire: bool) -> Result<String, TestCaseError> {
        self.now_ms += ms;
        if !expire {
            return Ok("time".into());
        }
        let mut expired = Vec::new();
        for index in 0..self.holds.len() {
            if let Some(step) = hold::expire(&self.holds[index], self.now_ms) {
                prop_assert_eq!(step.hold.status, HoldStatus::Expired);
                self.post_approved("expire", &step.entries)?;
                self.holds[index] = step.hold;
                expired.push(index);
            }
        }
        Ok(format!("expired:{expired:?}"))
    }

    fn submit(&mut self, from: usize, to: usize, category: usize, cents: i64) -> String {
        let transfer = Transfer {
            id: self.fresh_id("t"),
            from: party(from),
            to: party(to),
            category: Category::ALL[category],
            amount: Amount::from_cents(cents),
        };
        match transfer.validate() {
            Ok(()) => {
                self.transfers.push((transfer, TransferStatus::Pending, 0));
                "accepted".into()
            }
            Err(TransferInvalid::SameAccount) => "same_account".into(),
            Err(TransferInvalid::NonPositive) => "non_positive".into(),
            Err(TransferInvalid::SystemAccount) => "system_account".into(),
        }
    }

    /// Settles every pending transfer, in acceptance order, each against the balances as
    /// the earlier ones left them.
    fn settle_pending(&mut self) -> Result<String, TestCaseError> {
        let mut settled = Vec::new();
        for index in 0..self.transfers.len() {
            if self.transfers[index].1 != TransferStatus::Pending {
                continue;
            }
            let transfer = self.transfers[index].0.clone();
            let decision = transfer::settle(
                &transfer,
                self.balances.get(&transfer.from),
                self.balances.get(&transfer.to),
            );
            let status = match decision {
                Ok(entries) => {
                    self.post_approved("settle", &entries)?;
                    TransferStatus::Completed
                }
                Err(reason) => TransferStatus::Rejected(reason),
            };
            self.transfers[index].1 = status;
            self.transfers[index].2 += 1;
            settled.push(transfer_status(status));
        }
        Ok(format!("settled:{settled:?}"))
    }

    fn withdraw(
        &mut self,
        account: usize,
        category: usize,
        cents: i64,
    ) -> Result<String, TestCaseError> {
        let entries = transfer::withdraw(
            &party(account),
            &self.balances(account),
            Category::ALL[category],
            Amount::from_cents(cents),
            &system_account(),
        );
        Ok(match entries {
            Some(entries) => {
                self.post_approved("withdraw", &entries)?;
                "ok".into()
            }
            None => "refused".into(),
        })
    }
}

/// Applies one operation to both sides and checks they agree on its outcome, and that a
/// refused operation changed nothing.
fn step(machine: &mut Machine, model: &mut Model, op: &Op) -> Result<(), TestCaseError> {
    let journal_before = machine.journal.len();
    let balances_before = machine.balances.clone();
    let holds_before = machine.holds.clone();
    let (got, expected) = match *op {
        Op::Deposit {
            account,
            category,
            cents,
        } => {
            let cents = model.resolve_deposit(account, category, cents);
            (
                machine.deposit(account, category, cents)?,
                model.deposit(account, category, cents),
            )
        }
        Op::PlaceHold {
            account,
            category,
            cents,
            ttl_ms,
        } => {
            let cents = model.resolve(account, category, cents);
            (
                machine.place_hold(account, category, cents, ttl_ms)?,
                model.place_hold(account, category, cents, ttl_ms),
            )
        }
        Op::Capture { hold, amount } => {
            if model.holds.is_empty() {
                return Ok(());
            }
            let index = hold % model.holds.len();
            let cents = match amount {
                CaptureAmount::Full => None,
                CaptureAmount::Cents(c) => Some(c),
                CaptureAmount::Relative(delta) => Some(
                    i64::try_from(model.holds[index].amount)
                        .unwrap()
                        .saturating_add(delta),
                ),
            };
            (machine.capture(index, cents)?, model.capture(index, cents))
        }
        Op::Void { hold } => {
            if model.holds.is_empty() {
                return Ok(());
            }
            let index = hold % model.holds.len();
            (machine.void(index)?, model.void(index))
        }
        Op::AdvanceTime { ms, expire } => (machine.advance(ms, expire)?, model.advance(ms, expire)),
        Op::SubmitTransfer {
            from,
            to,
            category,
            cents,
        } => {
            let cents = model.resolve(from, category, cents);
            (
                machine.submit(from, to, category, cents),
                model.submit(from, to, category, cents),
            )
        }
        Op::SettlePending => (machine.settle_pending()?, model.settle_pending()),
        Op::Withdraw {
            account,
            category,
            cents,
        } => {
            let cents = model.resolve(account, category, cents);
            (
                machine.withdraw(account, category, cents)?,
                model.withdraw(account, category, cents),
            )
        }
    };
    prop_assert_eq!(&got, &expected, "outcome of {:?}", op);
    if !changed(&got) {
        prop_assert_eq!(
            machine.journal.len(),
            journal_before,
            "refused, yet entries: {:?}",
            op
        );
        prop_assert!(
            machine.balances == balances_before,
            "refused, yet balances moved: {:?}",
            op
        );
        prop_assert_eq!(
            &machine.holds,
            &holds_before,
            "refused, yet a hold changed: {:?}",
            op
        );
    }
    Ok(())
}

fn balance_of(balances: &Balances, category: Category, bucket: Bucket) -> i64 {
    let balance = balances.get(category);
    match bucket {
        Bucket::Available => balance.available.cents(),
        Bucket::Held => balance.held.cents(),
    }
}

/// Every invariant, checked after every step.
fn check(machine: &Machine, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(machine.now_ms, i64::try_from(model.now).unwrap());
    prop_assert!(
        !machine.balances.contains_key(&party(GHOST)),
        "the ghost was never opened"
    );

    // The machine's balances equal the model's.
    for n in (0..ACCOUNTS).chain([SYSTEM]) {
        let balances = machine.balances(n);
        for (c, category) in Category::ALL.into_iter().enumerate() {
            let got = balances.get(category);
            prop_assert_eq!(
                (
                    i128::from(got.available.cents()),
                    i128::from(got.held.cents())
                ),
                (model.available[n][c], model.held[n][c]),
                "balance of {} {}",
                party(n),
                category
            );
        }
    }

    for category in Category::ALL {
        // Money is conserved: all balances, and all journal entries, sum to zero.
        let total: i128 = machine
            .balances
            .values()
            .map(|b| {
                i128::from(b.get(category).available.cents())
                    + i128::from(b.get(category).held.cents())
            })
            .sum();
        prop_assert_eq!(total, 0, "balances of {} sum to zero", category);
        let journal: i128 = machine
            .journal
            .iter()
            .filter(|e| e.category == category)
            .map(|e| i128::from(e.amount.cents()))
            .sum();
        prop_assert_eq!(journal, 0, "journal of {} sums to zero", category);

        for (account, balances) in &machine.balances {
            // Each balance is the sum of its entries.
            for bucket in [Bucket::Available, Bucket::Held] {
                let own: i128 = machine
                    .journal
                    .iter()
                    .filter(|e| {
                        &e.account == account && e.category == category && e.bucket == bucket
                    })
                    .map(|e| i128::from(e.amount.cents()))
                    .sum();
                prop_assert_eq!(
                    own,
                    i128::from(balance_of(balances, category, bucket)),
                    "{} {} {} is the sum of its entries",
                    account,
                    category,
                    bucket.as_str()
                );
            }
            // No overdraft; held never negative.
            let balance = balances.get(category);
            prop_assert!(
                account.is_system() || !balance.available.is_negative(),
                "overdraft on {} {}",
                account,
                category
            );
            prop_assert!(
                !balance.held.is_negative(),
                "negative held on {} {}",
                account,
                category
            );
            // Held is exactly the active holds.
            let active: i128 = machine
                .holds
                .iter()
                .filter(|h| {
                    &h.account == account
                        && h.category == category
                        && h.status == HoldStatus::Active
                })
                .map(|h| i128::from(h.amount.cents()))
                .sum();
            prop_assert_eq!(
                i128::from(balance.held.cents()),
                active,
                "held of {} {} is its active holds",
                account,
                category
            );
        }
    }

    // Holds: same statuses as the model; expired holds never captured; final is final.
    prop_assert_eq!(machine.holds.len(), model.holds.len());
    for (hold, expected) in machine.holds.iter().zip(&model.holds) {
        prop_assert_eq!(
            hold.status.as_str(),
            expected.status,
            "status of {}",
            hold.id
        );
        prop_assert_eq!(
            i128::from(hold.captured.cents()),
            expected.captured,
            "captured of {}",
            hold.id
        );
        prop_assert_eq!(hold.expires_at_ms.map(i128::from), expected.expires_at);
        prop_assert_eq!(
            (
                party(expected.account),
                Category::ALL[expected.category],
                i128::from(hold.amount.cents())
            ),
            (hold.account.clone(), hold.category, expected.amount)
        );
        if let Some(at) = machine.captured_at.get(&hold.id) {
            prop_assert_eq!(hold.status, HoldStatus::Captured);
            prop_assert!(
                hold.expires_at_ms.is_none_or(|expires| *at < expires),
                "{} captured at {} though it expired at {:?}",
                hold.id,
                at,
                hold.expires_at_ms
            );
        }
        if hold.status != HoldStatus::Active {
            let refused = Err(HoldError::NotActive(hold.status));
            for now in [machine.now_ms, i64::MIN, i64::MAX] {
                prop_assert_eq!(
                    hold::capture(hold, None, &system_account(), now),
                    refused.clone()
                );
                prop_assert_eq!(
                    hold::capture(hold, Some(Amount::from_cents(1)), &system_account(), now),
                    refused.clone()
                );
                prop_assert_eq!(hold::void(hold, now), refused.clone());
                prop_assert_eq!(hold::expire(hold, now), None);
            }
        }
    }

    // Transfers: same statuses as the model; every final one was settled exactly once.
    prop_assert_eq!(machine.transfers.len(), model.transfers.len());
    for ((transfer, status, settled), expected) in machine.transfers.iter().zip(&model.transfers) {
        prop_assert_eq!(
            transfer_status(*status),
            expected.status.clone(),
            "status of {}",
            transfer.id
        );
        prop_assert_eq!(
            (
                party(expected.from),
                party(expected.to),
                Category::ALL[expected.category]
            ),
            (
                transfer.from.clone(),
                transfer.to.clone(),
                transfer.category
            )
        );
        prop_assert_eq!(i128::from(transfer.amount.cents()), expected.amount);
        let expected_settlements = u32::from(*status != TransferStatus::Pending);
        prop_assert_eq!(
            *settled,
            expected_settlements,
            "{} settled once",
            transfer.id
        );
    }
    Ok(())
}

fn run(ops: &[Op]) -> Result<(Machine, Model), TestCaseError> {
    let mut machine = Machine::new();
    let mut model = Model::new();
    for op in ops {
        step(&mut machine, &mut model, op)?;
        check(&machine, &model)?;
    }
    Ok((machine, model))
}

proptest! {
    #[test]
    fn holds_transfers_and_withdrawals_match_the_model(
        opening in proptest::collection::vec(opening(), 0..6),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        run(&[opening, ops].concat())?;
    }
}

// ---------------------------------------------------------------------------------------
// Tricky sequences, spelled out.
// ---------------------------------------------------------------------------------------

fn available(machine: &Machine, n: usize, category: Category) -> i64 {
    machine.balances(n).get(category).available.cents()
}

fn held(machine: &Machine, n: usize, category: Category) -> i64 {
    machine.balances(n).get(category).held.cents()
}

#[test]
fn a_partly_captured_hold_cannot_be_voided() {
    use Op::*;
    let (mut machine, mut model) = run(&[
        Deposit {
            account: 0,
            category: 2,
            cents: Cents::Abs(100),
        },
        PlaceHold {
            account: 0,
            category: 2,
            cents: Cents::Abs(100),
            ttl_ms: Some(1_000),
        },
        Capture {
            hold: 0,
            amount: CaptureAmount::Cents(30),
        },
    ])
    .unwrap();
    assert_eq!(
        available(&machine, 0, Category::Cash),
        70,
        "the rest came back"
    );
    assert_eq!(held(&machine, 0, Category::Cash), 0);
    assert_eq!(
        available(&machine, SYSTEM, Category::Cash),
        -70,
        "30 left for good"
    );
    assert_eq!(machine.holds[0].captured.cents(), 30);
    let journal = machine.journal.len();
    assert_eq!(machine.void(0).unwrap(), "not_active:captured");
    assert_eq!(machine.capture(0, None).unwrap(), "not_active:captured");
    assert_eq!(machine.capture(0, Some(70)).unwrap(), "not_active:captured");
    // Even once its time is up, a captured hold does not expire.
    for op in [
        AdvanceTime {
            ms: 5_000,
            expire: true,
        },
        Void { hold: 0 },
    ] {
        step(&mut machine, &mut model, &op).unwrap();
        check(&machine, &model).unwrap();
    }
    assert_eq!(machine.journal.len(), journal);
    assert_eq!(available(&machine, 0, Category::Cash), 70);
    assert_eq!(machine.holds[0].status, HoldStatus::Captured);
}

#[test]
fn opposite_transfers_settle_in_acceptance_order() {
    use Op::*;
    let (machine, _) = run(&[
        Deposit {
            account: 0,
            category: 0,
            cents: Cents::Abs(100),
        },
        Deposit {
            account: 1,
            category: 0,
            cents: Cents::Abs(50),
        },
        // B → A for 120 is covered only thanks to A → B for 80 before it.
        SubmitTransfer {
            from: 0,
            to: 1,
            category: 0,
            cents: Cents::Abs(80),
        },
        SubmitTransfer {
            from: 1,
            to: 0,
            category: 0,
            cents: Cents::Abs(120),
        },
        // A now has 140: this one drains it, so the next is rejected.
        SubmitTransfer {
            from: 0,
            to: 2,
            category: 0,
            cents: Cents::Abs(140),
        },
        SubmitTransfer {
            from: 0,
            to: 1,
            category: 0,
            cents: Cents::Abs(1),
        },
        // Other categories do not help.
        SubmitTransfer {
            from: 1,
            to: 0,
            category: 1,
            cents: Cents::Abs(1),
        },
        SettlePending,
        SettlePending,
    ])
    .unwrap();
    let statuses: Vec<_> = machine.transfers.iter().map(|(_, s, _)| *s).collect();
    assert_eq!(
        statuses,
        [
            TransferStatus::Completed,
            TransferStatus::Completed,
            TransferStatus::Completed,
            TransferStatus::Rejected(RejectReason::InsufficientFunds),
            TransferStatus::Rejected(RejectReason::InsufficientFunds),
        ]
    );
    assert_eq!(available(&machine, 0, Category::Food), 0);
    assert_eq!(available(&machine, 1, Category::Food), 10);
    assert_eq!(available(&machine, 2, Category::Food), 140);
    assert_eq!(available(&machine, SYSTEM, Category::Food), -150);
    assert!(
        machine
            .transfers
            .iter()
            .all(|(_, _, settled)| *settled == 1)
    );
}

#[test]
fn a_hold_expires_at_exactly_its_expiry_time() {
    use Op::*;
    let (mut machine, mut model) = run(&[
        Deposit {
            account: 2,
            category: 1,
            cents: Cents::Abs(500),
        },
        PlaceHold {
            account: 2,
            category: 1,
            cents: Cents::Abs(200),
            ttl_ms: Some(1_000),
        },
        PlaceHold {
            account: 2,
            category: 1,
            cents: Cents::Abs(100),
            ttl_ms: Some(1_000),
        },
        AdvanceTime {
            ms: 500,
            expire: true,
        },
        AdvanceTime {
            ms: 499,
            expire: true,
        },
    ])
    .unwrap();
    let expires_at = START_MS + 1_000;
    assert_eq!(machine.now_ms, expires_at - 1);
    assert!(
        machine.holds.iter().all(|h| h.status == HoldStatus::Active),
        "not due yet"
    );
    assert_eq!(held(&machine, 2, Category::Meal), 300);
    // One millisecond later, at exactly `expires_at_ms`, the holds are due: neither capture
    // nor void, and the sweep expires both.
    step(
        &mut machine,
        &mut model,
        &AdvanceTime {
            ms: 1,
            expire: false,
        },
    )
    .unwrap();
    assert_eq!(machine.now_ms, expires_at);
    assert_eq!(machine.capture(0, None).unwrap(), "expired");
    assert_eq!(machine.capture(0, Some(1)).unwrap(), "expired");
    assert_eq!(machine.void(1).unwrap(), "expired");
    assert_eq!(
        held(&machine, 2, Category::Meal),
        300,
        "due, not yet expired: still held"
    );
    assert_eq!(
        machine.advance(0, true).unwrap(),
        "expired:[0, 1]",
        "expired at exactly expires_at_ms"
    );
    model.advance(0, true);
    check(&machine, &model).unwrap();
    assert_eq!(held(&machine, 2, Category::Meal), 0);
    assert_eq!(
        available(&machine, 2, Category::Meal),
        500,
        "everything came back"
    );
    assert_eq!(machine.capture(0, None).unwrap(), "not_active:expired");
    assert_eq!(machine.void(1).unwrap(), "not_active:expired");
    assert_eq!(
        machine.advance(0, true).unwrap(),
        "expired:[]",
        "expiry is final"
    );
}

/// Found by the property above: an account's category balance (available + held) can be
/// pushed past `i64::MAX` cents while each bucket alone still fits, because
/// `Balances::credit` (the store's deposit check, and `transfer::settle`'s overflow check)
/// looks at the available bucket only. Then the hold can never come back: the entries of its
/// void or expiry (or the rest of a partial capture) overflow available and cannot be posted.
#[test]
fn a_held_amount_can_always_come_back_to_available() {
    use Op::*;
    let rich = [
        Deposit {
            account: 0,
            category: 2,
            cents: Cents::Abs(i64::MAX),
        },
        PlaceHold {
            account: 0,
            category: 2,
            cents: Cents::Abs(1),
            ttl_ms: Some(100),
        },
    ];
    // A top-up of one cent: the system account would reach exactly i64::MIN (so it fits),
    // acc-0 would hold available i64::MAX, held 1.
    let (mut machine, _) = run(&rich).unwrap();
    assert_eq!(
        machine.deposit(0, 2, 1).unwrap(),
        "overflow",
        "the deposit must be refused, or the hold can no longer be voided: {:?}",
        machine.void(0).map(|_| ())
    );
    // The same cent, arriving by transfer.
    let (mut machine, _) = run(&[
        Deposit {
            account: 1,
            category: 2,
            cents: Cents::Abs(1),
        },
        rich[0].clone(),
        rich[1].clone(),
        SubmitTransfer {
            from: 1,
            to: 0,
            category: 2,
            cents: Cents::Abs(1),
        },
    ])
    .unwrap();
    assert_eq!(
        machine.settle_pending().unwrap(),
        r#"settled:["rejected:balance_overflow"]"#,
        "the transfer must be rejected, or the hold can no longer expire: {:?}",
        machine.advance(100, true).map(|_| ())
    );
}
