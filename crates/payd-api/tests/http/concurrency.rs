//! L4: simultaneous transactions. Many requests at once, on a multi-thread runtime, through
//! the real router and store: no lost update, no overdraft, and contention never becomes 07.

use std::collections::HashMap;
use std::sync::Arc;

use crate::support::{App, balances};

/// Fires `bodies` in parallel and returns the answer codes, in order.
async fn fire(app: &Arc<App>, bodies: Vec<String>) -> Vec<String> {
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let app = Arc::clone(app);
            tokio::spawn(async move { app.authorize(&body).await })
        })
        .collect();
    let mut codes = Vec::with_capacity(tasks.len());
    for task in tasks {
        codes.push(task.await.expect("task"));
    }
    codes
}

fn count(codes: &[String], code: &str) -> usize {
    codes.iter().filter(|c| *c == code).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_hot_account_approves_exactly_what_it_covers() {
    const K: usize = 37;
    const N: usize = 200;
    let app = Arc::new(App::new());
    // CASH covers exactly K transactions of 1.00.
    app.open("hot", "0", "0", &format!("{K}.00")).await;
    let bodies = (0..N)
        .map(|i| App::tx(Some(&format!("hot-{i}")), "hot", "1.00", "9999", "SHOP"))
        .collect();
    let codes = fire(&app, bodies).await;
    assert_eq!(count(&codes, "07"), 0, "{codes:?}");
    assert_eq!(count(&codes, "00"), K);
    assert_eq!(count(&codes, "51"), N - K);
    assert_eq!(app.available("hot").await, balances("0.00", "0.00", "0.00"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fallback_under_contention_never_splits_or_overdraws() {
    const N: usize = 200;
    let app = Arc::new(App::new());
    // FOOD covers 10 of 3.00 (30.00) and CASH 5 more (16.00 covers 5, leaves 1.00).
    app.open("fb", "30", "7", "16").await;
    let bodies = (0..N)
        .map(|_| App::tx(None, "fb", "3", "5411", "SHOP"))
        .collect();
    let codes = fire(&app, bodies).await;
    assert_eq!(count(&codes, "07"), 0);
    assert_eq!(count(&codes, "00"), 15);
    assert_eq!(count(&codes, "51"), N - 15);
    assert_eq!(app.available("fb").await, balances("0.00", "7.00", "1.00"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_accounts_at_once() {
    const ACCOUNTS: usize = 20;
    const PER_ACCOUNT: usize = 25;
    let app = Arc::new(App::new());
    let mut covers = HashMap::new();
    for a in 0..ACCOUNTS {
        let cover = a % 7 + 3; // 3..=9 approvals each
        app.open(&format!("acc-{a}"), &format!("{cover}.00"), "0", "0")
            .await;
        covers.insert(format!("acc-{a}"), cover);
    }
    // Interleaved so that every account is contended at the same time.
    let mut bodies = Vec::new();
    let mut owners = Vec::new();
    for i in 0..PER_ACCOUNT {
        for a in 0..ACCOUNTS {
            let account = format!("acc-{a}");
            bodies.push(App::tx(
                Some(&format!("m-{a}-{i}")),
                &account,
                "1",
                "5412",
                "SHOP",
            ));
            owners.push(account);
        }
    }
    let codes = fire(&app, bodies).await;
    assert_eq!(count(&codes, "07"), 0);
    let mut approved: HashMap<&str, usize> = HashMap::new();
    for (owner, code) in owners.iter().zip(&codes) {
        if code == "00" {
            *approved.entry(owner).or_default() += 1;
        }
    }
    for (account, cover) in &covers {
        assert_eq!(
            approved.get(account.as_str()).copied().unwrap_or(0),
            *cover,
            "{account}"
        );
        assert_eq!(
            app.available(account).await,
            balances("0.00", "0.00", "0.00"),
            "{account}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_replays_of_one_id_debit_once() {
    let app = Arc::new(App::new());
    app.open("rep", "100", "0", "0").await;
    let body = App::tx(Some("same"), "rep", "10", "5411", "SHOP");
    let codes = fire(&app, vec![body; 100]).await;
    assert_eq!(count(&codes, "00"), 100, "{codes:?}");
    assert_eq!(
        app.available("rep").await,
        balances("90.00", "0.00", "0.00")
    );
}
