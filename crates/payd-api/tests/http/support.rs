//! A test app: the real router over a real SQLite store in a temporary directory, driven with
//! `tower::ServiceExt::oneshot` (no socket).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use payd_api::{AdminAccess, AppState, WalletConfig, install_metrics_recorder, router};
use payd_domain::{AccountId, AuthorizationRequest, Category, Code, MerchantPattern};
use payd_domain::{CorrelationId, ResourceId};
use payd_ports::{
    AccountView, DepositReceipt, DepositRequest, EntryPage, EntryQuery, Intake, LedgerError,
    LedgerStore, NewPayment, PaymentRecord, PaymentStore, PaymentSummary, Transition,
};
use payd_ports::{Attempt, AttemptView, DeliveryView, Leased, WebhookStore, WebhookView};
use payd_ports::{
    Claim, Effect, EventView, HoldView, Mutation, Replied, Sweep, TransferView, WalletStore,
};
use payd_ports::{Clock, LocalInFlight, Store, TokioClock};
use payd_sqlite::{SqliteConfig, SqliteStore};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tempfile::TempDir;
use tower::ServiceExt;

/// The router and the store behind it.
pub(crate) struct App {
    pub(crate) router: Router,
    pub(crate) store: Arc<SqliteStore>,
    /// How often intake woke the gateway.
    pub(crate) wakes: Arc<AtomicUsize>,
    _dir: TempDir,
}

/// A buffered response.
#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Resp {
    /// The body as JSON; panics (test failure) with the body text if it is not JSON.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `code` of a JSON body (card answer or error).
    pub(crate) fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an error answer: status, JSON content type, code, and a non-empty message.
    #[track_caller]
    pub(crate) fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text());
        assert_eq!(self.header("content-type"), Some("application/json"));
        let body = self.json();
        assert_eq!(body["code"], code, "body: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "body: {body}"
        );
    }
}

impl App {
    pub(crate) fn new() -> App {
        App::with_admin(AdminAccess::Open)
    }

    /// An app whose admin endpoints are guarded by `admin`.
    pub(crate) fn with_admin(admin: AdminAccess) -> App {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, clock) = open_store(dir.path());
        let wakes = Arc::new(AtomicUsize::new(0));
        let counter = wakes.clone();
        let router = router(AppState {
            on_payment_accepted: Arc::new(move || {
                counter.fetch_add(1, Ordering::Relaxed);
            }),
            admin,
            ..state(store.clone(), clock)
        });
        App {
            router,
            store,
            wakes,
            _dir: dir,
        }
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        uri: &str,
        body: impl Into<Body>,
        headers: &[(&str, &str)],
    ) -> Resp {
        send(&self.router, method, uri, body, headers).await
    }

    pub(crate) async fn get(&self, uri: &str) -> Resp {
        self.call(Method::GET, uri, Body::empty(), &[]).await
    }

    pub(crate) async fn post(&self, uri: &str, body: &str) -> Resp {
        let json = [("content-type", "application/json")];
        self.call(Method::POST, uri, body.to_owned(), &json).await
    }

    pub(crate) async fn put(&self, uri: &str, body: &str) -> Resp {
        let json = [("content-type", "application/json")];
        self.call(Method::PUT, uri, body.to_owned(), &json).await
    }

    pub(crate) async fn delete(&self, uri: &str) -> Resp {
        self.call(Method::DELETE, uri, Body::empty(), &[]).await
    }

    /// `POST /transactions` with `body`; asserts the always-200 contract and returns the code.
    pub(crate) async fn authorize(&self, body: &str) -> String {
        let response = self.post("/transactions", body).await;
        assert_eq!(response.status, StatusCode::OK, "body: {}", response.text());
        response.code()
    }

    /// A card transaction body.
    pub(crate) fn tx(
        id: Option<&str>,
        account: &str,
        amount: &str,
        mcc: &str,
        merchant: &str,
    ) -> String {
        let id = id.map(|id| format!(r#""id":"{id}","#)).unwrap_or_default();
        format!(
            r#"{{{id}"account":"{account}","totalAmount":{amount},"mcc":"{mcc}","merchant":"{merchant}"}}"#
        )
    }

    /// Opens an account with the given available balances (decimal text); asserts 201.
    pub(crate) async fn open(&self, id: &str, food: &str, meal: &str, cash: &str) {
        let body =
            format!(r#"{{"id":"{id}","balances":{{"FOOD":{food},"MEAL":{meal},"CASH":{cash}}}}}"#);
        let response = self.post("/accounts", &body).await;
        assert_eq!(
            response.status,
            StatusCode::CREATED,
            "body: {}",
            response.text()
        );
    }

    /// The available balances of an account as exact JSON text, e.g. `["90.00","0.00","5.00"]`
    /// in FOOD, MEAL, CASH order.
    pub(crate) async fn available(&self, id: &str) -> [String; 3] {
        let response = self.get(&format!("/accounts/{id}")).await;
        assert_eq!(response.status, StatusCode::OK, "body: {}", response.text());
        let account: AccountWire = serde_json::from_slice(&response.body).expect("account body");
        let of = |name: &str| {
            let balance = &account.balances[name];
            assert_eq!(balance.held.get(), "0.00");
            balance.available.get().to_owned()
        };
        [of("FOOD"), of("MEAL"), of("CASH")]
    }
}

#[derive(Deserialize)]
struct AccountWire {
    balances: HashMap<String, BalanceWire>,
}

#[derive(Deserialize)]
struct BalanceWire {
    available: Box<RawValue>,
    held: Box<RawValue>,
}

/// `["FOOD","MEAL","CASH"]` expectations, written briefly.
pub(crate) fn balances(food: &str, meal: &str, cash: &str) -> [String; 3] {
    [food.to_owned(), meal.to_owned(), cash.to_owned()]
}

/// A store that fails every call with a chosen error: for the error paths a healthy SQLite
/// store cannot produce on demand (overflow, unavailability of both ports).
pub(crate) enum Fault {
    /// Every command answers this error.
    Error(LedgerError),
}

#[async_trait]
impl LedgerStore for Fault {
    async fn authorize(&self, _request: AuthorizationRequest) -> Result<Code, LedgerError> {
        Err(self.error())
    }

    async fn authorize_fenced(
        &self,
        _: AuthorizationRequest,
        _: payd_domain::Fence,
    ) -> Result<Option<Code>, LedgerError> {
        Err(self.error())
    }

    async fn deposit(&self, _deposit: DepositRequest) -> Result<DepositReceipt, LedgerError> {
        Err(self.error())
    }

    async fn account(&self, _id: &AccountId) -> Result<Option<AccountView>, LedgerError> {
        Err(self.error())
    }

    async fn entries(&self, _id: &AccountId, _query: EntryQuery) -> Result<EntryPage, LedgerError> {
        Err(self.error())
    }

    async fn merchants(&self) -> Result<Vec<(MerchantPattern, Category)>, LedgerError> {
        Err(self.error())
    }

    fn is_ready(&self) -> bool {
        false
    }
}

impl Fault {
    fn error(&self) -> LedgerError {
        let Fault::Error(error) = self;
        error.clone()
    }

    /// A router over this faulty store, with a throwaway `App` for its helpers.
    pub(crate) fn router(self) -> Router {
        router(state(Arc::new(self), Arc::new(TokioClock::new())))
    }
}

#[async_trait]
impl PaymentStore for Fault {
    async fn accept_payment(&self, _payment: NewPayment) -> Result<Intake, LedgerError> {
        Err(self.error())
    }

    async fn payment(&self, _id: &CorrelationId) -> Result<Option<PaymentRecord>, LedgerError> {
        Err(self.error())
    }

    async fn payments_summary(
        &self,
        _: Option<i64>,
        _: Option<i64>,
    ) -> Result<PaymentSummary, LedgerError> {
        Err(self.error())
    }

    async fn purge_payments(&self) -> Result<u64, LedgerError> {
        Err(self.error())
    }

    async fn due_payments(
        &self,
        _: i64,
        _: i64,
        _: u32,
    ) -> Result<Vec<PaymentRecord>, LedgerError> {
        Err(self.error())
    }

    async fn orphaned_payments(&self, _: u32) -> Result<Vec<PaymentRecord>, LedgerError> {
        Err(self.error())
    }

    async fn pending_payments(&self) -> Result<u64, LedgerError> {
        Err(self.error())
    }

    async fn apply_transitions(&self, _: Vec<Transition>) -> Result<Vec<bool>, LedgerError> {
        Err(self.error())
    }
}

#[async_trait]
impl WalletStore for Fault {
    async fn execute(
        &self,
        _mutation: Mutation,
        _claim: Option<Claim>,
    ) -> Result<Replied<Effect>, LedgerError> {
        Err(self.error())
    }

    async fn hold(&self, _id: &ResourceId) -> Result<Option<HoldView>, LedgerError> {
        Err(self.error())
    }

    async fn transfer(&self, _id: &ResourceId) -> Result<Option<TransferView>, LedgerError> {
        Err(self.error())
    }

    async fn expire_holds(&self, _: i64, _: u32) -> Result<Sweep, LedgerError> {
        Err(self.error())
    }

    async fn settle_transfers(&self, _: u32) -> Result<Sweep, LedgerError> {
        Err(self.error())
    }

    async fn pending_turn(
        &self,
        _: &ResourceId,
    ) -> Result<Option<(payd_domain::Transfer, bool)>, LedgerError> {
        Err(self.error())
    }

    async fn settle_fenced(
        &self,
        _: &ResourceId,
        _: &[payd_domain::Fence],
    ) -> Result<payd_ports::FencedSettle, LedgerError> {
        Err(self.error())
    }

    async fn pending_transfers(&self) -> Result<u64, LedgerError> {
        Err(self.error())
    }

    async fn purge_idempotency(&self, _: i64, _: u32) -> Result<Sweep, LedgerError> {
        Err(self.error())
    }

    async fn events(&self, _: i64, _: u32) -> Result<Vec<EventView>, LedgerError> {
        Err(self.error())
    }
}

#[async_trait]
impl WebhookStore for Fault {
    async fn webhooks(&self) -> Result<Vec<WebhookView>, LedgerError> {
        Err(self.error())
    }

    async fn webhook(&self, _: &ResourceId) -> Result<Option<WebhookView>, LedgerError> {
        Err(self.error())
    }

    async fn lease_deliveries(&self, _: i64, _: u32, _: i64) -> Result<Leased, LedgerError> {
        Err(self.error())
    }

    async fn record_attempt(&self, _: Attempt) -> Result<bool, LedgerError> {
        Err(self.error())
    }

    async fn delivery_attempts(
        &self,
        _: &ResourceId,
        _: u32,
    ) -> Result<Vec<AttemptView>, LedgerError> {
        Err(self.error())
    }

    async fn delivery(&self, _: &ResourceId, _: i64) -> Result<Option<DeliveryView>, LedgerError> {
        Err(self.error())
    }
}

/// Sends one request to a bare router.
pub(crate) async fn send(
    router: &Router,
    method: Method,
    uri: &str,
    body: impl Into<Body>,
    headers: &[(&str, &str)],
) -> Resp {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(body.into()).expect("request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.expect("body");
    Resp {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

impl App {
    /// An app whose wallet port is `wrap(store)`: a test double around the real store (e.g.
    /// one that pauses `execute`); every other port is the store itself.
    pub(crate) fn with_wallet(wrap: impl FnOnce(Arc<SqliteStore>) -> Arc<dyn WalletStore>) -> App {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, clock) = open_store(dir.path());
        let wrapped = Arc::new(WalletWrapped {
            wallet: wrap(store.clone()),
            inner: store.clone(),
        });
        let router = router(state(wrapped, clock));
        App {
            router,
            store,
            wakes: Arc::new(AtomicUsize::new(0)),
            _dir: dir,
        }
    }
}

/// A fresh embedded store in `dir`, and its clock: the API must read the same one, as in
/// `payd serve` (two `TokioClock`s started apart can disagree by a millisecond, and a
/// hold's expiry, reckoned by the API, would then precede or pass its `createdAt` by one).
fn open_store(dir: &std::path::Path) -> (Arc<SqliteStore>, Arc<dyn Clock>) {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let mut config = SqliteConfig::new(dir);
    config.clock = clock.clone();
    (
        Arc::new(SqliteStore::open(config).expect("open store")),
        clock,
    )
}

/// The app's state over `store` on `clock`, as `payd serve` builds it (one process:
/// in-flight keys in memory), with admin endpoints open.
pub(crate) fn state(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> AppState {
    AppState {
        store,
        in_flight: Arc::new(LocalInFlight::default()),
        clock,
        on_payment_accepted: Arc::new(|| {}),
        on_transfer_accepted: Arc::new(|| {}),
        wallet_config: WalletConfig::default(),
        admin: AdminAccess::Open,
        metrics: install_metrics_recorder(),
        decisions: None,
        account_lock: None,
    }
}

/// The real store with its wallet port replaced by a test double.
struct WalletWrapped {
    wallet: Arc<dyn WalletStore>,
    inner: Arc<SqliteStore>,
}

#[async_trait]
impl LedgerStore for WalletWrapped {
    async fn authorize(&self, request: AuthorizationRequest) -> Result<Code, LedgerError> {
        self.inner.authorize(request).await
    }

    async fn authorize_fenced(
        &self,
        request: AuthorizationRequest,
        fence: payd_domain::Fence,
    ) -> Result<Option<Code>, LedgerError> {
        self.inner.authorize_fenced(request, fence).await
    }

    async fn deposit(&self, deposit: DepositRequest) -> Result<DepositReceipt, LedgerError> {
        self.inner.deposit(deposit).await
    }

    async fn account(&self, id: &AccountId) -> Result<Option<AccountView>, LedgerError> {
        self.inner.account(id).await
    }

    async fn entries(&self, id: &AccountId, query: EntryQuery) -> Result<EntryPage, LedgerError> {
        self.inner.entries(id, query).await
    }

    async fn merchants(&self) -> Result<Vec<(MerchantPattern, Category)>, LedgerError> {
        self.inner.merchants().await
    }

    fn is_ready(&self) -> bool {
        self.inner.is_ready()
    }
}

#[async_trait]
impl WalletStore for WalletWrapped {
    async fn execute(
        &self,
        mutation: Mutation,
        claim: Option<Claim>,
    ) -> Result<Replied<Effect>, LedgerError> {
        self.wallet.execute(mutation, claim).await
    }

    async fn hold(&self, id: &ResourceId) -> Result<Option<HoldView>, LedgerError> {
        self.wallet.hold(id).await
    }

    async fn transfer(&self, id: &ResourceId) -> Result<Option<TransferView>, LedgerError> {
        self.wallet.transfer(id).await
    }

    async fn expire_holds(&self, now_ms: i64, limit: u32) -> Result<Sweep, LedgerError> {
        self.wallet.expire_holds(now_ms, limit).await
    }

    async fn settle_transfers(&self, limit: u32) -> Result<Sweep, LedgerError> {
        self.wallet.settle_transfers(limit).await
    }

    async fn pending_turn(
        &self,
        id: &ResourceId,
    ) -> Result<Option<(payd_domain::Transfer, bool)>, LedgerError> {
        self.wallet.pending_turn(id).await
    }

    async fn settle_fenced(
        &self,
        id: &ResourceId,
        fences: &[payd_domain::Fence],
    ) -> Result<payd_ports::FencedSettle, LedgerError> {
        self.wallet.settle_fenced(id, fences).await
    }

    async fn pending_transfers(&self) -> Result<u64, LedgerError> {
        self.wallet.pending_transfers().await
    }

    async fn purge_idempotency(&self, now_ms: i64, limit: u32) -> Result<Sweep, LedgerError> {
        self.wallet.purge_idempotency(now_ms, limit).await
    }

    async fn events(&self, after_seq: i64, limit: u32) -> Result<Vec<EventView>, LedgerError> {
        self.wallet.events(after_seq, limit).await
    }
}

#[async_trait]
impl PaymentStore for WalletWrapped {
    async fn accept_payment(&self, payment: NewPayment) -> Result<Intake, LedgerError> {
        self.inner.accept_payment(payment).await
    }

    async fn payment(&self, id: &CorrelationId) -> Result<Option<PaymentRecord>, LedgerError> {
        self.inner.payment(id).await
    }

    async fn payments_summary(
        &self,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<PaymentSummary, LedgerError> {
        self.inner.payments_summary(from_ms, to_ms).await
    }

    async fn purge_payments(&self) -> Result<u64, LedgerError> {
        self.inner.purge_payments().await
    }

    async fn due_payments(
        &self,
        now_ms: i64,
        fresh_due_ms: i64,
        limit: u32,
    ) -> Result<Vec<PaymentRecord>, LedgerError> {
        self.inner.due_payments(now_ms, fresh_due_ms, limit).await
    }

    async fn orphaned_payments(&self, limit: u32) -> Result<Vec<PaymentRecord>, LedgerError> {
        self.inner.orphaned_payments(limit).await
    }

    async fn pending_payments(&self) -> Result<u64, LedgerError> {
        self.inner.pending_payments().await
    }

    async fn apply_transitions(&self, changes: Vec<Transition>) -> Result<Vec<bool>, LedgerError> {
        self.inner.apply_transitions(changes).await
    }
}

#[async_trait]
impl WebhookStore for WalletWrapped {
    async fn webhooks(&self) -> Result<Vec<WebhookView>, LedgerError> {
        self.inner.webhooks().await
    }

    async fn webhook(&self, id: &ResourceId) -> Result<Option<WebhookView>, LedgerError> {
        self.inner.webhook(id).await
    }

    async fn lease_deliveries(
        &self,
        now_ms: i64,
        limit: u32,
        lease_ms: i64,
    ) -> Result<Leased, LedgerError> {
        self.inner.lease_deliveries(now_ms, limit, lease_ms).await
    }

    async fn record_attempt(&self, attempt: Attempt) -> Result<bool, LedgerError> {
        self.inner.record_attempt(attempt).await
    }

    async fn delivery_attempts(
        &self,
        webhook: &ResourceId,
        limit: u32,
    ) -> Result<Vec<AttemptView>, LedgerError> {
        self.inner.delivery_attempts(webhook, limit).await
    }

    async fn delivery(
        &self,
        webhook: &ResourceId,
        event_seq: i64,
    ) -> Result<Option<DeliveryView>, LedgerError> {
        self.inner.delivery(webhook, event_seq).await
    }
}

impl App {
    /// An app whose card decisions are cached in `decisions` (a test double of the port).
    pub(crate) fn with_decisions(decisions: Arc<dyn payd_ports::DecisionCache>) -> App {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, clock) = open_store(dir.path());
        let router = router(AppState {
            decisions: Some(decisions),
            ..state(store.clone(), clock)
        });
        App {
            router,
            store,
            wakes: Arc::new(AtomicUsize::new(0)),
            _dir: dir,
        }
    }
}
