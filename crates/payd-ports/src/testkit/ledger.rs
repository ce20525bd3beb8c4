//! The [`LedgerStore`](crate::LedgerStore) suite: card authorizations (the L1–L4 rules,
//! idempotency, serialization per account under concurrency), deposits, the merchant
//! table, and the journal (pagination, conservation of money).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use payd_domain::{
    AccountId, Amount, AuthorizationRequest, Balances, Category, Code, EntryCause, IdempotencyKey,
    Mcc, MerchantRules, TransactionId, system_account,
};

use super::{Harness, account_id, c, pattern};
use crate::{
    AccountView, DepositReceipt, DepositRequest, EntryQuery, EntryView, LedgerError, Refusal, Store,
};

/// A movement's identity in the journal: cause, reference and category.
type MovementKey = (&'static str, String, Category);

// ---- helpers -------------------------------------------------------------------------

/// A 40-character card-acceptor field: name (25), city (12), space, country.
fn acceptor(name: &str) -> String {
    format!("{name:<25}{:>12} BR", "SAO PAULO")
}

/// A card transaction (panics on invalid fields).
pub fn request(
    id: Option<&str>,
    account: &AccountId,
    cents: i64,
    mcc: &str,
    merchant: &str,
) -> AuthorizationRequest {
    AuthorizationRequest {
        id: id.map(|id| TransactionId::parse(id).expect("valid transaction id")),
        account: account.clone(),
        amount: c(cents),
        mcc: Mcc::parse(mcc).expect("valid mcc"),
        merchant: merchant.to_owned(),
    }
}

fn deposit_request(
    key: &str,
    account: &AccountId,
    category: Category,
    cents: i64,
) -> DepositRequest {
    DepositRequest {
        key: IdempotencyKey::parse(key).expect("valid key"),
        account: account.clone(),
        category,
        amount: c(cents),
    }
}

/// Opens account `id` with these available balances, in cents; returns its id.
pub async fn open_account(
    store: &Arc<dyn Store>,
    id: &str,
    food: i64,
    meal: i64,
    cash: i64,
) -> AccountId {
    let id = account_id(id);
    let balances = Balances::with_available(c(food), c(meal), c(cash));
    let view = try_open(store, &id, balances)
        .await
        .expect("open the account");
    assert_eq!(
        view,
        AccountView {
            id: id.clone(),
            balances
        },
        "opening returns the new account"
    );
    id
}

async fn try_open(
    store: &Arc<dyn Store>,
    id: &AccountId,
    balances: Balances,
) -> Result<AccountView, LedgerError> {
    super::open(&**store, id, balances).await
}

async fn put_merchant(store: &Arc<dyn Store>, text: &str, category: Category) -> bool {
    super::put_merchant(&**store, text, category)
        .await
        .expect("put a merchant")
}

async fn delete_merchant(store: &Arc<dyn Store>, text: &str) -> bool {
    super::delete_merchant(&**store, text)
        .await
        .expect("delete a merchant")
}

async fn balances(store: &Arc<dyn Store>, id: &AccountId) -> Balances {
    store
        .account(id)
        .await
        .expect("account read")
        .unwrap_or_else(|| panic!("account {id} exists"))
        .balances
}

/// FOOD, MEAL, CASH available cents.
async fn available(store: &Arc<dyn Store>, id: &AccountId) -> [i64; 3] {
    let b = balances(store, id).await;
    Category::ALL.map(|category| b.get(category).available.cents())
}

async fn authorize(store: &Arc<dyn Store>, request: AuthorizationRequest) -> Code {
    store.authorize(request).await.expect("authorize answers")
}

/// Every entry of an account, newest first, read in pages of `page` via the cursor.
async fn all_entries(store: &Arc<dyn Store>, id: &AccountId, page: u32) -> Vec<EntryView> {
    let mut entries: Vec<EntryView> = Vec::new();
    let mut before = None;
    loop {
        let got = store
            .entries(
                id,
                EntryQuery {
                    before_sequence: before,
                    limit: page,
                },
            )
            .await
            .expect("entries");
        assert!(
            got.entries.len() <= page as usize,
            "a page holds at most `limit` entries"
        );
        assert!(
            !got.entries.is_empty() || (before.is_none() && got.next_before_sequence.is_none()),
            "only an empty ledger gives an empty page; a cursor never leads to an empty page"
        );
        if let Some(before) = before {
            assert!(
                got.entries.iter().all(|e| e.sequence < before),
                "entries are strictly before the cursor"
            );
        }
        entries.extend(got.entries);
        match got.next_before_sequence {
            Some(next) => {
                assert_eq!(
                    Some(next),
                    entries.last().map(|e| e.sequence),
                    "the cursor is the oldest entry of the page"
                );
                before = Some(next);
            }
            None => break,
        }
    }
    assert!(
        entries.windows(2).all(|w| w[0].sequence > w[1].sequence),
        "newest first, no duplicates"
    );
    assert!(
        entries.iter().all(|e| &e.account == id),
        "only the account's own entries"
    );
    entries
}

/// Sum of entry amounts per category (FOOD, MEAL, CASH).
fn sums(entries: &[EntryView]) -> [i64; 3] {
    Category::ALL.map(|category| {
        entries
            .iter()
            .filter(|e| e.category == category)
            .map(|e| e.amount.cents())
            .sum()
    })
}

// ---- checks --------------------------------------------------------------------------

/// Goal: an opened account reads back as opened, its id cannot be taken twice, unknown ids
/// read as absent. Method: open, read, open again with other balances, read an unknown id.
pub async fn accounts_open_and_read_back(store: Arc<dyn Store>, _harness: &mut dyn Harness) {
    assert!(store.is_ready(), "a fresh store is ready");
    let id = account_id("alice");
    let balances = Balances::with_available(c(10_000), c(2_050), c(1));
    let view = try_open(&store, &id, balances).await.expect("open");
    assert_eq!(
        view,
        AccountView {
            id: id.clone(),
            balances
        }
    );
    assert_eq!(store.account(&id).await, Ok(Some(view.clone())));

    let other = Balances::with_available(c(1), c(1), c(1));
    assert_eq!(
        try_open(&store, &id, other).await,
        Err(Refusal::AccountExists.into())
    );
    assert_eq!(
        store.account(&id).await,
        Ok(Some(view)),
        "a refused open changes nothing"
    );

    let empty = open_account(&store, "empty", 0, 0, 0).await;
    assert_eq!(available(&store, &empty).await, [0, 0, 0]);
    assert_eq!(store.account(&account_id("nobody")).await, Ok(None));
}

/// Goal: L1 (MCC picks the category), L2 (CASH pays the whole amount, never a split, CASH
/// never borrows), L3 (a merchant override beats the MCC), and an unknown account is `07`
/// and records nothing. Method: one account per rule, balances read back after each call.
pub async fn authorization_rules(store: Arc<dyn Store>, _harness: &mut dyn Harness) {
    let shop = acceptor("SUPERMERCADO BOM");
    // L1
    let l1 = open_account(&store, "l1", 1000, 1000, 1000).await;
    assert_eq!(
        authorize(&store, request(None, &l1, 300, "5411", &shop)).await,
        Code::Approved
    );
    assert_eq!(
        available(&store, &l1).await,
        [700, 1000, 1000],
        "5411 → FOOD"
    );
    assert_eq!(
        authorize(&store, request(None, &l1, 200, "5812", &shop)).await,
        Code::Approved
    );
    assert_eq!(
        available(&store, &l1).await,
        [700, 800, 1000],
        "5812 → MEAL"
    );
    assert_eq!(
        authorize(&store, request(None, &l1, 100, "5999", &shop)).await,
        Code::Approved
    );
    assert_eq!(
        available(&store, &l1).await,
        [700, 800, 900],
        "unmapped MCC → CASH"
    );

    // L2: FOOD cannot pay 6.00, CASH pays all of it.
    let l2 = open_account(&store, "l2", 500, 0, 700).await;
    assert_eq!(
        authorize(&store, request(None, &l2, 600, "5411", &shop)).await,
        Code::Approved
    );
    assert_eq!(
        available(&store, &l2).await,
        [500, 0, 100],
        "CASH pays the whole amount, FOOD untouched"
    );

    // L2: FOOD 5 + CASH 5 could pay 8 together, but never split.
    let split = open_account(&store, "split", 500, 0, 500).await;
    assert_eq!(
        authorize(&store, request(None, &split, 800, "5411", &shop)).await,
        Code::InsufficientFunds
    );
    assert_eq!(
        available(&store, &split).await,
        [500, 0, 500],
        "a decline moves no money"
    );

    // L2: a CASH purchase never borrows from FOOD or MEAL.
    let cash = open_account(&store, "cash-only", 10_000, 10_000, 5).await;
    assert_eq!(
        authorize(&store, request(None, &cash, 6, "5999", &shop)).await,
        Code::InsufficientFunds
    );
    assert_eq!(available(&store, &cash).await, [10_000, 10_000, 5]);

    // L3: the override beats the MCC (5411 would be FOOD), in any city.
    let l3 = open_account(&store, "l3", 1000, 1000, 1000).await;
    assert!(put_merchant(&store, "PADARIA CENTRAL", Category::Meal).await);
    let bakery = acceptor("PADARIA CENTRAL");
    assert_eq!(
        authorize(&store, request(None, &l3, 250, "5411", &bakery)).await,
        Code::Approved
    );
    assert_eq!(
        available(&store, &l3).await,
        [1000, 750, 1000],
        "merchant override → MEAL"
    );
    let elsewhere = format!("{:<25}{:>12} BR", "PADARIA CENTRAL", "RIO");
    assert_eq!(
        authorize(&store, request(None, &l3, 50, "5411", &elsewhere)).await,
        Code::Approved
    );
    assert_eq!(
        available(&store, &l3).await,
        [1000, 700, 1000],
        "same merchant, other city"
    );

    // Unknown account: 07, nothing recorded, so the same id is decided afresh later.
    let system = system_account();
    let system_before = balances(&store, &system).await;
    let ghost = account_id("ghost");
    let first = request(Some("ghost-1"), &ghost, 100, "5411", &shop);
    assert_eq!(authorize(&store, first.clone()).await, Code::Rejected);
    assert_eq!(store.account(&ghost).await, Ok(None), "no account appears");
    assert_eq!(
        balances(&store, &system).await,
        system_before,
        "no money moved"
    );
    open_account(&store, "ghost", 1000, 0, 0).await;
    assert_eq!(
        authorize(&store, first).await,
        Code::Approved,
        "a 07 for an unknown account is not remembered"
    );
    assert_eq!(available(&store, &ghost).await, [900, 0, 0]);
}

/// Goal: a transaction id is decided once: same body replays the same code (a `51` stays
/// `51` even once affordable), another body is `07`, money moves once even under
/// concurrent duplicates; id-less requests are always new. Method: repeat requests and
/// read the balance after each.
pub async fn transaction_idempotency(store: Arc<dyn Store>, _harness: &mut dyn Harness) {
    {
        let shop = acceptor("MERCADO IDEM");
        let acc = open_account(&store, "idem", 1000, 0, 0).await;
        let t1 = request(Some("t-1"), &acc, 400, "5411", &shop);
        assert_eq!(authorize(&store, t1.clone()).await, Code::Approved);
        assert_eq!(
            authorize(&store, t1.clone()).await,
            Code::Approved,
            "replay answers as before"
        );
        assert_eq!(available(&store, &acc).await, [600, 0, 0], "debited once");

        // Same id, any other body: 07 and nothing debited.
        let mut other_amount = t1.clone();
        other_amount.amount = c(401);
        let mut other_merchant = t1.clone();
        other_merchant.merchant = acceptor("MERCADO OUTRO");
        let mut other_mcc = t1.clone();
        other_mcc.mcc = Mcc::parse("5412").expect("mcc");
        let second = open_account(&store, "idem-2", 1000, 0, 0).await;
        let mut other_account = t1.clone();
        other_account.account = second.clone();
        for conflict in [other_amount, other_merchant, other_mcc, other_account] {
            assert_eq!(authorize(&store, conflict).await, Code::Rejected);
        }
        assert_eq!(available(&store, &acc).await, [600, 0, 0]);
        assert_eq!(available(&store, &second).await, [1000, 0, 0]);
        assert_eq!(
            authorize(&store, t1).await,
            Code::Approved,
            "conflicts do not change the record"
        );

        // A 51 is remembered as 51, even after a deposit makes it affordable.
        let t2 = request(Some("t-2"), &acc, 5000, "5411", &shop);
        assert_eq!(authorize(&store, t2.clone()).await, Code::InsufficientFunds);
        store
            .deposit(deposit_request("idem-dep", &acc, Category::Food, 10_000))
            .await
            .expect("deposit");
        assert_eq!(
            authorize(&store, t2).await,
            Code::InsufficientFunds,
            "51 replays 51"
        );
        assert_eq!(available(&store, &acc).await, [10_600, 0, 0]);

        // 50 concurrent copies of one new id: one decision, one debit.
        let t3 = request(Some("t-3"), &acc, 100, "5411", &shop);
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (store, t3) = (Arc::clone(&store), t3.clone());
                tokio::spawn(async move { store.authorize(t3).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.expect("task"), Ok(Code::Approved));
        }
        assert_eq!(
            available(&store, &acc).await,
            [10_500, 0, 0],
            "concurrent duplicates debit once"
        );

        // No id: every request is new.
        let anonymous = request(None, &acc, 250, "5411", &shop);
        assert_eq!(authorize(&store, anonymous.clone()).await, Code::Approved);
        assert_eq!(authorize(&store, anonymous).await, Code::Approved);
        assert_eq!(
            available(&store, &acc).await,
            [10_000, 0, 0],
            "id-less requests are each debited"
        );
    }
}

// Goal: a card decision under an account lock's grant is made (and its token recorded)
// when the token is current, and refused with nothing done (no debit, no id remembered)
// once a later grant's decision reached the store, or when the grant is for another
// account; the same grant may decide again (its replay answers as before).
pub async fn fenced_authorizations_refuse_stale_grants(
    store: Arc<dyn Store>,
    _harness: &mut dyn Harness,
) {
    let shop = acceptor("MERCADO FENCE");
    let acc = open_account(&store, "fenced", 1000, 0, 0).await;
    let other = open_account(&store, "fenced-2", 1000, 0, 0).await;
    let fence = |account: &AccountId, token: i64| payd_domain::Fence {
        account: account.clone(),
        token,
    };
    let decide = |request: AuthorizationRequest, fence: payd_domain::Fence| {
        let store = store.clone();
        async move { store.authorize_fenced(request, fence).await.unwrap() }
    };
    let first = request(Some("f-1"), &acc, 100, "5411", &shop);
    assert_eq!(
        decide(first.clone(), fence(&acc, 5)).await,
        Some(Code::Approved)
    );
    assert_eq!(
        decide(first, fence(&acc, 5)).await,
        Some(Code::Approved),
        "the same grant again: the replay"
    );
    assert_eq!(
        decide(
            request(Some("f-2"), &acc, 100, "5411", &shop),
            fence(&acc, 7)
        )
        .await,
        Some(Code::Approved)
    );
    let stale = request(Some("f-3"), &acc, 100, "5411", &shop);
    assert_eq!(decide(stale.clone(), fence(&acc, 6)).await, None, "6 < 7");
    assert_eq!(
        decide(stale.clone(), fence(&other, 99)).await,
        None,
        "a grant of another account"
    );
    assert_eq!(available(&store, &acc).await, [800, 0, 0], "two debits");
    assert_eq!(
        authorize(&store, stale).await,
        Code::Approved,
        "f-3 was not remembered: decided afresh"
    );
    assert_eq!(available(&store, &other).await, [1000, 0, 0]);
}

/// Goal: deposits credit and return a receipt; a key replays its receipt or refuses another
/// body; unknown accounts and overflows (of the account or of the system account) change
/// nothing and consume no key. Method: deposit, replay, conflict, failures, balances read
/// after each.
pub async fn deposits(store: Arc<dyn Store>, _harness: &mut dyn Harness) {
    let acc = open_account(&store, "dep", 0, 0, 0).await;
    let system = system_account();
    let first = store
        .deposit(deposit_request("dep-1", &acc, Category::Meal, 2500))
        .await
        .expect("deposit");
    assert_eq!(
        first,
        DepositReceipt {
            key: IdempotencyKey::parse("dep-1").expect("key"),
            account: acc.clone(),
            category: Category::Meal,
            amount: c(2500),
            available_after: c(2500),
            created_at_ms: first.created_at_ms,
            replayed: false,
        }
    );
    assert!(
        first.created_at_ms > 1_600_000_000_000,
        "created_at_ms is Unix milliseconds"
    );
    assert_eq!(available(&store, &acc).await, [0, 2500, 0]);

    let replay = store
        .deposit(deposit_request("dep-1", &acc, Category::Meal, 2500))
        .await;
    assert_eq!(
        replay,
        Ok(DepositReceipt {
            replayed: true,
            ..first.clone()
        }),
        "replay returns the first receipt"
    );
    assert_eq!(
        available(&store, &acc).await,
        [0, 2500, 0],
        "a replay credits nothing"
    );

    let other = open_account(&store, "dep-other", 0, 0, 0).await;
    for conflict in [
        deposit_request("dep-1", &acc, Category::Meal, 2600),
        deposit_request("dep-1", &acc, Category::Cash, 2500),
        deposit_request("dep-1", &other, Category::Meal, 2500),
    ] {
        assert_eq!(
            store.deposit(conflict).await,
            Err(Refusal::IdempotencyKeyReused.into())
        );
    }
    assert_eq!(available(&store, &acc).await, [0, 2500, 0]);
    assert_eq!(available(&store, &other).await, [0, 0, 0]);

    let second = store
        .deposit(deposit_request("dep-2", &acc, Category::Meal, 500))
        .await
        .expect("deposit");
    assert_eq!(
        second.available_after,
        c(3000),
        "available_after is the balance after this deposit"
    );

    // Unknown account: refused, and the key is not consumed.
    let ghost = account_id("dep-ghost");
    let to_ghost = deposit_request("dep-ghost-1", &ghost, Category::Cash, 100);
    assert_eq!(
        store.deposit(to_ghost.clone()).await,
        Err(Refusal::AccountNotFound.into())
    );
    open_account(&store, "dep-ghost", 0, 0, 0).await;
    let late = store.deposit(to_ghost).await.expect("deposit after open");
    assert!(!late.replayed);
    assert_eq!(available(&store, &ghost).await, [0, 0, 100]);

    // The account's balance would pass i64::MAX (and so would the system account's, which
    // mirrors it: FOOD is only used here).
    let big = open_account(&store, "dep-big", i64::MAX - 5, 0, 0).await;
    let system_before = balances(&store, &system).await;
    assert_eq!(
        store
            .deposit(deposit_request("dep-big-1", &big, Category::Food, 10))
            .await,
        Err(Refusal::BalanceOverflow.into())
    );
    assert_eq!(
        available(&store, &big).await,
        [i64::MAX - 5, 0, 0],
        "nothing credited"
    );
    assert_eq!(
        balances(&store, &system).await,
        system_before,
        "nothing debited"
    );
    let fits = store
        .deposit(deposit_request("dep-big-1", &big, Category::Food, 5))
        .await
        .expect("key not consumed");
    assert_eq!(fits.available_after, c(i64::MAX));

    // Only the system account would pass i64::MIN: it stands at -i64::MAX in FOOD now.
    let system_before = balances(&store, &system).await;
    assert_eq!(system_before.get(Category::Food).available, c(-i64::MAX));
    assert_eq!(
        store
            .deposit(deposit_request("dep-sys", &acc, Category::Food, 2))
            .await,
        Err(Refusal::BalanceOverflow.into())
    );
    assert_eq!(available(&store, &acc).await, [0, 3000, 0]);
    assert_eq!(balances(&store, &system).await, system_before);
}

/// Goal: the merchant table is a sorted, persistent set of overrides that later decisions
/// follow (exact beats prefix beats MCC). Method: put/replace/delete, list, and a
/// transaction after each change, checked by which balance paid.
pub async fn merchant_table(store: Arc<dyn Store>, _harness: &mut dyn Harness) {
    let initial = store.merchants().await.expect("merchants");
    for entry in MerchantRules::default_entries() {
        assert!(
            initial.contains(&entry),
            "a fresh store has the default override {entry:?}"
        );
    }

    assert!(
        put_merchant(&store, "ACME MARKET", Category::Food).await,
        "new"
    );
    assert!(
        !put_merchant(&store, "ACME MARKET", Category::Meal).await,
        "replaced"
    );
    assert!(put_merchant(&store, "ACME*", Category::Cash).await);
    assert!(put_merchant(&store, "ZED BAR", Category::Meal).await);
    assert!(put_merchant(&store, "ACME MARKET B", Category::Food).await);

    let table = store.merchants().await.expect("merchants");
    let texts: Vec<String> = table.iter().map(|(p, _)| p.to_string()).collect();
    let mut sorted = texts.clone();
    sorted.sort();
    assert_eq!(texts, sorted, "sorted by pattern text");
    assert_eq!(
        texts.iter().collect::<HashSet<_>>().len(),
        texts.len(),
        "no duplicates"
    );
    for entry in [
        (pattern("ACME MARKET"), Category::Meal),
        (pattern("ACME*"), Category::Cash),
        (pattern("ZED BAR"), Category::Meal),
    ] {
        assert!(table.contains(&entry), "{entry:?} listed");
    }

    let acc = open_account(&store, "merchant", 1000, 1000, 1000).await;
    let market = acceptor("ACME MARKET");
    assert_eq!(
        authorize(&store, request(None, &acc, 10, "5999", &market)).await,
        Code::Approved
    );
    assert_eq!(
        available(&store, &acc).await,
        [1000, 990, 1000],
        "exact override (MEAL) beats prefix and MCC"
    );
    assert_eq!(
        authorize(
            &store,
            request(None, &acc, 10, "5411", &acceptor("ACME TOOLS"))
        )
        .await,
        Code::Approved
    );
    assert_eq!(
        available(&store, &acc).await,
        [1000, 990, 990],
        "prefix override (CASH) beats MCC"
    );

    assert!(delete_merchant(&store, "ACME MARKET").await);
    assert!(
        !delete_merchant(&store, "ACME MARKET").await,
        "already gone"
    );
    assert_eq!(
        authorize(&store, request(None, &acc, 10, "5812", &market)).await,
        Code::Approved
    );
    assert_eq!(
        available(&store, &acc).await,
        [1000, 990, 980],
        "after the delete the prefix applies"
    );
    assert!(delete_merchant(&store, "ACME*").await);
    assert_eq!(
        authorize(&store, request(None, &acc, 10, "5812", &market)).await,
        Code::Approved
    );
    assert_eq!(
        available(&store, &acc).await,
        [1000, 980, 980],
        "no override left: the MCC decides"
    );

    let table = store.merchants().await.expect("merchants");
    assert!(
        !table
            .iter()
            .any(|(p, _)| p == &pattern("ACME MARKET") || p == &pattern("ACME*"))
    );
    assert!(table.contains(&(pattern("ZED BAR"), Category::Meal)));
}

/// Goal: the journal explains every balance. Entries come newest first and paginate without
/// gaps or repeats; each movement is two legs summing to zero; each account's balance
/// (the system account's too) is the sum of its entries; all balances sum to zero per
/// category. Method: a mixed workload, then every ledger read back in small pages.
pub async fn entries_and_conservation(store: Arc<dyn Store>, _harness: &mut dyn Harness) {
    let shop = acceptor("MERCADO LEDGER");
    let a = open_account(&store, "ledger-a", 1000, 500, 300).await;
    let b = open_account(&store, "ledger-b", 200, 200, 200).await;
    let mut expected_a = 3;
    for (i, category) in Category::ALL.iter().cycle().take(5).enumerate() {
        store
            .deposit(deposit_request(
                &format!("ledger-dep-{i}"),
                &a,
                *category,
                100 + i as i64,
            ))
            .await
            .expect("deposit");
        expected_a += 1;
    }
    for i in 0..12 {
        let id = format!("ledger-t-{i}");
        let id = (i % 2 == 0).then_some(id.as_str());
        let mcc = ["5411", "5811", "5999"][i % 3];
        if authorize(&store, request(id, &a, 90, mcc, &shop)).await == Code::Approved {
            expected_a += 1;
        }
    }
    assert_eq!(
        authorize(
            &store,
            request(Some("ledger-big"), &a, 1_000_000, "5411", &shop)
        )
        .await,
        Code::InsufficientFunds
    );
    assert_eq!(
        authorize(&store, request(Some("ledger-b-1"), &b, 150, "5411", &shop)).await,
        Code::Approved
    );
    assert_eq!(
        authorize(
            &store,
            request(
                Some("ledger-ghost"),
                &account_id("ledger-ghost"),
                1,
                "5411",
                &shop
            )
        )
        .await,
        Code::Rejected
    );
    assert_eq!(
        authorize(&store, request(Some("ledger-last"), &a, 7, "5999", &shop)).await,
        Code::Approved
    );
    expected_a += 1;

    let system = system_account();
    let mut legs: BTreeMap<MovementKey, Vec<(AccountId, i64)>> = BTreeMap::new();
    let mut total = [0i64; 3];
    for id in [&a, &b, &system] {
        let paged = all_entries(&store, id, 4).await;
        let whole = store
            .entries(
                id,
                EntryQuery {
                    before_sequence: None,
                    limit: 1000,
                },
            )
            .await
            .expect("entries");
        assert_eq!(
            whole.next_before_sequence, None,
            "everything fits in one page of 1000"
        );
        assert_eq!(paged, whole.entries, "pages cover every entry exactly once");
        let balance = available(&store, id).await;
        assert_eq!(
            sums(&paged),
            balance,
            "balance of {id} == sum of its entries"
        );
        for (sum, part) in total.iter_mut().zip(balance) {
            *sum += part;
        }
        for entry in paged {
            assert_ne!(entry.amount, Amount::ZERO, "no empty entries");
            legs.entry((
                entry.cause.as_str(),
                entry.reference.clone(),
                entry.category,
            ))
            .or_default()
            .push((entry.account.clone(), entry.amount.cents()));
        }
    }
    assert_eq!(
        total,
        [0, 0, 0],
        "all balances, the system account's included, sum to zero"
    );
    for ((cause, reference, category), movement) in &legs {
        assert_eq!(
            movement.len(),
            2,
            "{cause} {reference} {category}: a movement has two legs"
        );
        assert_eq!(
            movement[0].1 + movement[1].1,
            0,
            "{cause} {reference} {category}: legs sum to zero"
        );
        assert!(
            movement.iter().any(|(id, _)| id == &system),
            "every movement here involves the system account"
        );
    }
    for reference in ["ledger-a", "ledger-b"] {
        assert!(
            legs.keys()
                .any(|(cause, r, _)| *cause == EntryCause::Opening.as_str() && r == reference),
            "opening entries reference the account"
        );
    }
    assert!(
        legs.contains_key(&(
            EntryCause::Deposit.as_str(),
            "ledger-dep-0".to_owned(),
            Category::Food
        )),
        "deposit entries reference the key"
    );
    assert!(
        !legs
            .keys()
            .any(|(_, r, _)| r == "ledger-big" || r == "ledger-ghost"),
        "declines and 07s move no money"
    );

    let entries_a = all_entries(&store, &a, 1000).await;
    assert_eq!(
        entries_a.len(),
        expected_a,
        "one entry per opening category, deposit and approval of ledger-a"
    );
    let newest = &entries_a[0];
    assert_eq!(
        (
            newest.cause,
            newest.reference.as_str(),
            newest.category,
            newest.amount
        ),
        (
            EntryCause::Transaction,
            "ledger-last",
            Category::Cash,
            c(-7)
        ),
        "newest first"
    );
    let one = store
        .entries(
            &a,
            EntryQuery {
                before_sequence: None,
                limit: 0,
            },
        )
        .await
        .expect("entries");
    assert_eq!(one.entries.len(), 1, "limit is clamped to at least 1");
    let older = store
        .entries(
            &a,
            EntryQuery {
                before_sequence: Some(newest.sequence),
                limit: 1,
            },
        )
        .await
        .expect("entries");
    assert_eq!(
        older.entries.first(),
        entries_a.get(1),
        "before_sequence is exclusive"
    );
    assert_eq!(
        store
            .entries(
                &account_id("ledger-ghost"),
                EntryQuery {
                    before_sequence: None,
                    limit: 10
                }
            )
            .await,
        Err(Refusal::AccountNotFound.into())
    );
}

/// `attempts` authorizations of 1.00 at `id` (5411: FOOD first, then CASH), half with an id
/// and half without: both paths must serialize.
fn hammer_requests(id: &AccountId, attempts: usize) -> Vec<AuthorizationRequest> {
    (0..attempts)
        .map(|i| {
            let tx_id = format!("{id}-{i}");
            request(
                (i % 2 == 0).then_some(tx_id.as_str()),
                id,
                100,
                "5411",
                "SUPERMERCADO HOT",
            )
        })
        .collect()
}

fn spawn_authorize(
    store: &Arc<dyn Store>,
    request: AuthorizationRequest,
) -> tokio::task::JoinHandle<Result<Code, LedgerError>> {
    let store = Arc::clone(store);
    tokio::spawn(async move { store.authorize(request).await })
}

async fn count_codes(tasks: Vec<tokio::task::JoinHandle<Result<Code, LedgerError>>>) -> [usize; 3] {
    let mut counts = [0; 3];
    for task in tasks {
        match task.await.expect("task").expect("authorize answers") {
            Code::Approved => counts[0] += 1,
            Code::InsufficientFunds => counts[1] += 1,
            Code::Rejected => counts[2] += 1,
        }
    }
    counts
}

/// The FOOD and CASH split of `k` whole units: FOOD pays first, then CASH (L2).
fn split(k: i64) -> (i64, i64) {
    (k / 2 * 100, (k - k / 2) * 100)
}

/// Goal: one decision per account at a time (L4): no overdraft, no lost update. Method:
/// 200 parallel authorizations of 1.00 at one account covering exactly 37 of them; exactly
/// 37 `00`, 163 `51`, no `07`, and the balance ends at exactly zero.
pub async fn concurrent_authorizations_one_account(
    store: Arc<dyn Store>,
    _harness: &mut dyn Harness,
) {
    {
        const K: i64 = 37;
        let (food, cash) = split(K);
        let hot = open_account(&store, "hot", food, 0, cash).await;
        let tasks = hammer_requests(&hot, 200)
            .into_iter()
            .map(|r| spawn_authorize(&store, r))
            .collect();
        let counts = count_codes(tasks).await;
        assert_eq!(counts, [K as usize, 200 - K as usize, 0], "[00, 51, 07]");
        assert_eq!(available(&store, &hot).await, [0, 0, 0], "exactly drained");
        let entries = all_entries(&store, &hot, 1000).await;
        assert_eq!(
            entries.len(),
            2 + K as usize,
            "two openings and one entry per approval"
        );
        assert_eq!(sums(&entries), [0, 0, 0]);
    }
}

/// Goal: serialization per account holds while many accounts are decided at once, and
/// accounts do not disturb each other. Method: 20 accounts, each with its own K, 200
/// parallel authorizations each (4000 in flight), interleaved.
pub async fn concurrent_authorizations_many_accounts(
    store: Arc<dyn Store>,
    _harness: &mut dyn Harness,
) {
    {
        let mut accounts = Vec::new();
        for i in 0..20i64 {
            let k = 3 + 9 * i; // 3 ..= 174, always below 200
            let (food, cash) = split(k);
            accounts.push((
                open_account(&store, &format!("many-{i}"), food, 0, cash).await,
                k,
            ));
        }
        let mut per_account: Vec<Vec<_>> = accounts.iter().map(|_| Vec::new()).collect();
        let mut pending: Vec<_> = accounts
            .iter()
            .map(|(id, _)| hammer_requests(id, 200).into_iter())
            .collect();
        // Interleaved: one request per account in turn, all 4000 in flight together.
        for _ in 0..200 {
            for (tasks, requests) in per_account.iter_mut().zip(pending.iter_mut()) {
                tasks.extend(requests.next().map(|r| spawn_authorize(&store, r)));
            }
        }
        for ((id, k), tasks) in accounts.iter().zip(per_account) {
            let k = *k as usize;
            assert_eq!(
                count_codes(tasks).await,
                [k, 200 - k, 0],
                "{id}: [00, 51, 07]"
            );
            assert_eq!(
                available(&store, id).await,
                [0, 0, 0],
                "{id}: exactly drained"
            );
        }
        assert_eq!(
            available(&store, &system_account()).await,
            [0, 0, 0],
            "all money that came in went out"
        );
    }
}
