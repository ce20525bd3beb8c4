//! The conformance suites every [`Store`] backend must pass, checked through the ports
//! alone: [`ledger`] ([`LedgerStore`](crate::LedgerStore)), [`payments`]
//! ([`PaymentStore`](crate::PaymentStore)), [`wallet`] ([`WalletStore`](crate::WalletStore))
//! and [`webhooks`] ([`WebhookStore`](crate::WebhookStore)).
//!
//! Each check is a `pub async fn name(store: Arc<dyn Store>, harness: &mut dyn Harness)`
//! that panics on failure. A backend's test crate instantiates all of them with
//! [`store_conformance!`](crate::store_conformance):
//!
//! ```ignore
//! payd_ports::store_conformance!(my_backend::fresh_store().await);
//! ```
//!
//! The expression is evaluated once per check, inside an async test (so it may `.await`),
//! and gives `Option<(Arc<dyn Store>, impl Harness)>`: a **fresh, empty store** (only the
//! system account, the default MCC map and the default merchant table), or `None` when the
//! backend's service is absent (the expression says so loudly; the check then passes
//! without running). Every check ends with [`Harness::assert_audit_clean`]. The test crate
//! needs `tokio` with the `macros` and `rt-multi-thread` features.

// A test suite fails by panicking: unwrapping is how a check says "this must work".
#![allow(clippy::unwrap_used)]

pub mod ledger;
pub mod payments;
pub mod wallet;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use payd_domain::{AccountId, Amount, Balances, Category, MerchantPattern, ResourceId};

use crate::{
    AccountView, Effect, LedgerError, Mutation, NewAccount, Refusal, Replied, Store, WalletStore,
};

/// What a backend gives each check besides the store.
#[async_trait]
pub trait Harness: Send + Sync {
    /// Stops `store` the way a process exit would (everything acknowledged stays) and
    /// opens the same data again: a restart.
    async fn reopen(&mut self, store: Arc<dyn Store>) -> Arc<dyn Store>;

    /// Runs the backend's audit of the store's invariants (`payd audit`) and panics,
    /// printing the report, if it finds a violation.
    async fn assert_audit_clean(&self);
}

/// Expands to one `#[tokio::test]` (multi-thread, 4 workers) per check of the four suites,
/// in modules `ledger`, `payments`, `wallet` and `webhooks`. `$factory` gives
/// `Option<(Arc<dyn Store>, impl Harness)>`; see the module documentation.
#[macro_export]
macro_rules! store_conformance {
    ($factory:expr $(,)?) => {
        $crate::store_conformance!(@suite ($factory) ledger:
            accounts_open_and_read_back
            authorization_rules
            transaction_idempotency
            fenced_authorizations_refuse_stale_grants
            deposits
            merchant_table
            entries_and_conservation
            concurrent_authorizations_one_account
            concurrent_authorizations_many_accounts
        );
        $crate::store_conformance!(@suite ($factory) payments:
            intake_is_idempotent
            transitions_are_compare_and_set
            due_payments_are_ordered
            summary_matches_brute_force
            purge_removes_everything
            orphaned_payments_are_the_ones_in_flight
        );
        $crate::store_conformance!(@suite ($factory) wallet:
            holds_capture_and_void
            holds_expire_and_cannot_be_captured
            transfers_settle_in_order_with_reasons
            fenced_settles_keep_the_order_and_refuse_stale_tokens
            withdrawals
            claims_replay_the_first_response
            pay_ins_follow_their_payment
            events_carry_typed_payloads
            opposite_transfers_in_parallel
            hot_account_under_mixed_load
        );
        $crate::store_conformance!(@suite ($factory) webhooks:
            register_list_get_delete
            live_webhooks_are_bounded
            a_webhook_receives_only_events_after_its_registration
            attempts_move_deliveries_to_delivered_retry_or_failed
            an_expired_lease_is_handed_out_again_and_the_stale_answer_is_only_logged
            deleting_a_webhook_cancels_its_pending_deliveries
            leases_are_bounded_and_say_when_more_is_ready
            deliveries_survive_a_restart
        );
    };
    (@suite ($factory:expr) $suite:ident: $($check:ident)*) => {
        mod $suite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let Some((store, mut harness)) = $factory else {
                        return;
                    };
                    $crate::testkit::within_timeout(
                        $crate::testkit::$suite::$check(store, &mut harness),
                    )
                    .await;
                    $crate::testkit::Harness::assert_audit_clean(&harness).await;
                }
            )*
        }
    };
}

/// Longest any single check may take; a deadlocked store fails instead of hanging CI.
const CHECK_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs one check, failing it past [`CHECK_TIMEOUT`].
pub async fn within_timeout(check: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(CHECK_TIMEOUT, check).await.is_err() {
        panic!("check did not finish within {CHECK_TIMEOUT:?}: is the store stuck?");
    }
}

// === Fixtures, shared by the suites and by backends' own tests ===

/// `cents` cents.
pub fn c(cents: i64) -> Amount {
    Amount::from_cents(cents)
}

/// A valid account id (panics otherwise).
pub fn account_id(text: &str) -> AccountId {
    AccountId::parse(text).expect("valid account id")
}

/// A valid resource id (panics otherwise).
pub fn rid(text: &str) -> ResourceId {
    ResourceId::parse(text).expect("valid resource id")
}

/// A valid merchant pattern (panics otherwise).
pub fn pattern(text: &str) -> MerchantPattern {
    MerchantPattern::parse(text).expect("valid merchant pattern")
}

/// Opens an account with these balances, through the one way to open one.
pub async fn open<S: WalletStore + ?Sized>(
    store: &S,
    id: &AccountId,
    balances: Balances,
) -> Result<AccountView, LedgerError> {
    let opened = store
        .execute(
            Mutation::OpenAccount(NewAccount {
                id: id.clone(),
                balances,
            }),
            None,
        )
        .await?;
    match opened {
        Replied::Fresh(Effect::Account(view)) => Ok(view),
        other => panic!("opening answers the account, not {other:?}"),
    }
}

/// Adds or replaces a merchant override; whether it was new.
pub async fn put_merchant<S: WalletStore + ?Sized>(
    store: &S,
    text: &str,
    category: Category,
) -> Result<bool, LedgerError> {
    let put = Mutation::PutMerchant {
        pattern: pattern(text),
        category,
    };
    match store.execute(put, None).await? {
        Replied::Fresh(Effect::Merchant { created, .. }) => Ok(created),
        other => panic!("putting a merchant answers it, not {other:?}"),
    }
}

/// Removes a merchant override; whether it existed.
pub async fn delete_merchant<S: WalletStore + ?Sized>(
    store: &S,
    text: &str,
) -> Result<bool, LedgerError> {
    let delete = Mutation::DeleteMerchant {
        pattern: pattern(text),
    };
    match store.execute(delete, None).await {
        Ok(Replied::Fresh(Effect::MerchantDeleted(_))) => Ok(true),
        Err(LedgerError::Refused(Refusal::MerchantNotFound)) => Ok(false),
        Err(error) => Err(error),
        Ok(other) => panic!("deleting a merchant answers, not {other:?}"),
    }
}

pub use ledger::{open_account, request};
pub use payments::correlation_id;
