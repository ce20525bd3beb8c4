//! The gateway engine under controlled time (tokio's paused clock) against an in-memory
//! payment store and scripted processors: routing, holding, recovery, unknown outcomes and
//! the health endpoint's rate limit. The same engine runs against SQLite and real simulator
//! processes in `payd-cli/tests/gateway_e2e.rs`; here every run is deterministic.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test doubles fail loudly by design.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use payd_domain::gateway::payment::PaymentState;
use payd_domain::gateway::{Outcome, Processor};
use payd_domain::{Amount, CorrelationId};
use payd_engine::{Gateway, GatewayConfig, SharedHealth, TokioClock};
use payd_ports::{
    HealthError, HealthReport, Intake, LedgerError, Lookup, NewPayment, PaymentRecord,
    PaymentStore, PaymentSummary, ProcessorClient, ProcessorPayment, Transition,
};
use tokio::sync::watch;
use tokio::time::Instant;

/// The health board of a gateway alone on its store.
fn alone() -> SharedHealth {
    SharedHealth {
        board: Arc::new(payd_ports::SoleBoard),
        breakers: None,
        instance: Arc::from("test"),
    }
}

/// A payment store in memory with the port's semantics (CAS on version, bound first).
#[derive(Default)]
struct MemoryPayments {
    payments: Mutex<BTreeMap<String, PaymentRecord>>,
    /// Calls of `due_payments`: each is a read of the queue by the worker.
    due_reads: AtomicUsize,
    /// Calls of `apply_transitions`: each is a commit in a real store.
    transition_commands: AtomicUsize,
    /// The most transitions one call of `apply_transitions` carried.
    largest_command: AtomicUsize,
    /// Shared by several processes: a restarted one may take over no lease before it
    /// expires (`orphaned_payments` is empty), as on PostgreSQL under a new instance id.
    shared: bool,
}

#[async_trait]
impl PaymentStore for MemoryPayments {
    async fn accept_payment(&self, payment: NewPayment) -> Result<Intake, LedgerError> {
        let mut payments = self.payments.lock().unwrap();
        if payments.contains_key(payment.id.as_str()) {
            return Ok(Intake::Duplicate);
        }
        payments.insert(
            payment.id.as_str().to_owned(),
            PaymentRecord {
                id: payment.id,
                amount: payment.amount,
                requested_at_ms: payment.requested_at_ms,
                state: PaymentState::new(payment.requested_at_ms),
                attempts: 0,
                version: 0,
                hold: None,
            },
        );
        Ok(Intake::Accepted)
    }

    async fn payment(&self, id: &CorrelationId) -> Result<Option<PaymentRecord>, LedgerError> {
        Ok(self.payments.lock().unwrap().get(id.as_str()).cloned())
    }

    async fn payments_summary(
        &self,
        _: Option<i64>,
        _: Option<i64>,
    ) -> Result<PaymentSummary, LedgerError> {
        Ok(PaymentSummary::default())
    }

    async fn purge_payments(&self) -> Result<u64, LedgerError> {
        Ok(0)
    }

    async fn due_payments(
        &self,
        now_ms: i64,
        fresh_due_ms: i64,
        limit: u32,
    ) -> Result<Vec<PaymentRecord>, LedgerError> {
        self.due_reads.fetch_add(1, Ordering::Relaxed);
        let payments = self.payments.lock().unwrap();
        let due = |r: &&PaymentRecord| r.state.due_ms().is_some_and(|d| d <= now_ms);
        let bound = |r: &&PaymentRecord| {
            matches!(
                r.state,
                PaymentState::Processing { .. } | PaymentState::Unknown { .. }
            )
        };
        let mut first: Vec<_> = payments
            .values()
            .filter(due)
            .filter(bound)
            .cloned()
            .collect();
        // A queued payment never sent waits for the grace (its message comes first).
        let past_grace = |r: &&PaymentRecord| {
            r.attempts > 0 || r.state.due_ms().is_some_and(|d| d <= fresh_due_ms)
        };
        let mut then: Vec<_> = payments
            .values()
            .filter(due)
            .filter(|r| !bound(r))
            .filter(past_grace)
            .cloned()
            .collect();
        first.sort_by_key(|r| r.state.due_ms());
        then.sort_by_key(|r| r.state.due_ms());
        first.extend(then);
        first.truncate(limit as usize);
        Ok(first)
    }

    async fn orphaned_payments(&self, limit: u32) -> Result<Vec<PaymentRecord>, LedgerError> {
        if self.shared {
            return Ok(Vec::new());
        }
        let payments = self.payments.lock().unwrap();
        Ok(payments
            .values()
            .filter(|r| matches!(r.state, PaymentState::Processing { .. }))
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn pending_payments(&self) -> Result<u64, LedgerError> {
        Ok(self
            .payments
            .lock()
            .unwrap()
            .values()
            .filter(|r| !r.state.is_final())
            .count() as u64)
    }

    async fn apply_transitions(
        &self,
        transitions: Vec<Transition>,
    ) -> Result<Vec<bool>, LedgerError> {
        self.transition_commands.fetch_add(1, Ordering::Relaxed);
        self.largest_command
            .fetch_max(transitions.len(), Ordering::Relaxed);
        let mut payments = self.payments.lock().unwrap();
        Ok(transitions
            .into_iter()
            .map(|t| match payments.get_mut(t.id.as_str()) {
                Some(record) if record.version == t.expected_version => {
                    record.state = t.next;
                    record.version += 1;
                    record.attempts += u32::from(t.counts_attempt);
                    true
                }
                _ => false,
            })
            .collect())
    }
}

/// How a scripted processor behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Books after `delay_ms`.
    Healthy { delay_ms: u64 },
    /// Answers 500 at once.
    Failing,
    /// Never answers within the client's timeout; books anyway after the timeout (the worst
    /// case: our call gives up, the processor books later).
    BlackHole,
}

const CLIENT_TIMEOUT_MS: u64 = 10_000;

#[derive(Default)]
struct Processors {
    modes: Mutex<HashMap<Processor, Mode>>,
    booked: Mutex<HashMap<Processor, HashSet<String>>>,
    submits: Mutex<Vec<(Processor, Instant)>>,
    health_calls: Mutex<Vec<(Processor, Instant)>>,
}

impl Processors {
    fn new(default: Mode, fallback: Mode) -> Arc<Processors> {
        let processors = Processors::default();
        processors.set(Processor::Default, default);
        processors.set(Processor::Fallback, fallback);
        Arc::new(processors)
    }

    fn set(&self, processor: Processor, mode: Mode) {
        self.modes.lock().unwrap().insert(processor, mode);
    }

    fn mode(&self, processor: Processor) -> Mode {
        self.modes.lock().unwrap()[&processor]
    }

    fn book(&self, processor: Processor, id: &str) -> Outcome {
        let mut booked = self.booked.lock().unwrap();
        if booked.entry(processor).or_default().insert(id.to_owned()) {
            Outcome::Booked
        } else {
            Outcome::AlreadyBooked
        }
    }

    fn booked(&self, processor: Processor) -> HashSet<String> {
        self.booked
            .lock()
            .unwrap()
            .get(&processor)
            .cloned()
            .unwrap_or_default()
    }

    fn submits_to(&self, processor: Processor) -> usize {
        self.submits
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| *p == processor)
            .count()
    }
}

#[async_trait]
impl ProcessorClient for Processors {
    async fn submit(&self, processor: Processor, payment: &ProcessorPayment) -> Outcome {
        self.submits
            .lock()
            .unwrap()
            .push((processor, Instant::now()));
        match self.mode(processor) {
            Mode::Healthy { delay_ms } => {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                self.book(processor, payment.id.as_str())
            }
            Mode::Failing => Outcome::Rejected,
            Mode::BlackHole => {
                tokio::time::sleep(Duration::from_millis(CLIENT_TIMEOUT_MS)).await;
                self.book(processor, payment.id.as_str());
                Outcome::Unknown
            }
        }
    }

    async fn lookup(&self, processor: Processor, id: &CorrelationId) -> Lookup {
        if self.booked(processor).contains(id.as_str()) {
            Lookup::Found
        } else {
            Lookup::NotFound
        }
    }

    async fn health(&self, processor: Processor) -> Result<HealthReport, HealthError> {
        self.health_calls
            .lock()
            .unwrap()
            .push((processor, Instant::now()));
        let (failing, min_response_ms) = match self.mode(processor) {
            Mode::Healthy { delay_ms } => (false, delay_ms),
            Mode::Failing => (true, 0),
            Mode::BlackHole => (false, CLIENT_TIMEOUT_MS),
        };
        Ok(HealthReport {
            failing,
            min_response_ms,
        })
    }
}

struct Harness {
    store: Arc<MemoryPayments>,
    processors: Arc<Processors>,
    gateway: Arc<Gateway>,
    stop: watch::Sender<bool>,
    worker: tokio::task::JoinHandle<()>,
    clock: TokioClock,
}

async fn start(processors: Arc<Processors>, config: GatewayConfig) -> Harness {
    start_on(Arc::new(MemoryPayments::default()), processors, config).await
}

async fn start_on(
    store: Arc<MemoryPayments>,
    processors: Arc<Processors>,
    config: GatewayConfig,
) -> Harness {
    let clock = TokioClock::starting_at(1_700_000_000_000);
    let gateway = Gateway::new(
        store.clone(),
        processors.clone(),
        Arc::new(clock),
        config,
        alone(),
    );
    let (stop, stopped) = watch::channel(false);
    let worker = tokio::spawn(gateway.clone().run(stopped));
    Harness {
        store,
        processors,
        gateway,
        stop,
        worker,
        clock,
    }
}

impl Harness {
    async fn accept(&self, n: usize) -> Vec<CorrelationId> {
        use payd_engine::Clock;
        let mut ids = Vec::new();
        for _ in 0..n {
            let serial = self.store.payments.lock().unwrap().len();
            let id =
                CorrelationId::parse(&format!("00000000-0000-4000-8000-{serial:012x}")).unwrap();
            let payment = NewPayment {
                id: id.clone(),
                amount: Amount::from_cents(1990),
                requested_at_ms: self.clock.now_ms(),
                payer: None,
            };
            assert_eq!(
                self.store.accept_payment(payment).await.unwrap(),
                Intake::Accepted
            );
            ids.push(id);
        }
        self.gateway.wake();
        ids
    }

    /// One second of intake at 600 payments/s, each payment waking the worker as the API
    /// does.
    async fn accept_for_a_second_at_600_per_s(&self) {
        for _ in 0..600 {
            self.accept(1).await;
            tokio::time::sleep(Duration::from_micros(1_666)).await;
        }
    }

    async fn states(&self) -> Vec<PaymentState> {
        self.store
            .payments
            .lock()
            .unwrap()
            .values()
            .map(|r| r.state)
            .collect()
    }

    async fn booked_count(&self) -> usize {
        self.states()
            .await
            .iter()
            .filter(|s| matches!(s, PaymentState::Booked { .. }))
            .count()
    }

    /// Waits until `booked` payments are booked; fails if that takes 15 virtual seconds
    /// (the backlog did not drain after a recovery).
    async fn drains_to(&self, booked: usize) {
        let recovered_at = Instant::now();
        while self.booked_count().await < booked {
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(
                recovered_at.elapsed() < Duration::from_secs(15),
                "backlog did not drain after recovery"
            );
        }
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.worker.await.unwrap();
    }

    /// Every payment is booked at exactly one processor, and the processors agree.
    fn assert_booked_once(&self) {
        let default = self.processors.booked(Processor::Default);
        let fallback = self.processors.booked(Processor::Fallback);
        assert!(
            default.is_disjoint(&fallback),
            "a payment was booked at both processors"
        );
        for record in self.store.payments.lock().unwrap().values() {
            if let PaymentState::Booked { processor } = record.state {
                assert!(
                    self.processors
                        .booked(processor)
                        .contains(record.id.as_str())
                );
            }
        }
    }
}

fn config() -> GatewayConfig {
    GatewayConfig {
        settle_ms: 15_000,
        lease_ms: 30_000,
        ..GatewayConfig::default()
    }
}

/// Goal: the health endpoint is called at most once per interval per processor, even when
/// its answers are slow. Method: run the gateway for 61 virtual seconds and look at the gaps
/// between health calls.
#[tokio::test(start_paused = true)]
async fn health_polls_respect_the_rate_limit() {
    let processors = Processors::new(Mode::Healthy { delay_ms: 5 }, Mode::Healthy { delay_ms: 5 });
    let harness = start(processors.clone(), config()).await;
    tokio::time::sleep(Duration::from_millis(61_000)).await;
    harness.stop().await;
    let calls = processors.health_calls.lock().unwrap().clone();
    for processor in Processor::ALL {
        let times: Vec<Instant> = calls
            .iter()
            .filter(|(p, _)| *p == processor)
            .map(|(_, t)| *t)
            .collect();
        assert!(
            (12..=13).contains(&times.len()),
            "{processor}: {} polls in 61 s",
            times.len()
        );
        for pair in times.windows(2) {
            assert!(
                pair[1] - pair[0] >= Duration::from_millis(5_000),
                "{processor}: polls closer than 5 s"
            );
        }
    }
}

/// Goal: a healthy, fast default gets every payment and the fallback none.
#[tokio::test(start_paused = true)]
async fn healthy_default_takes_everything() {
    let processors = Processors::new(
        Mode::Healthy { delay_ms: 10 },
        Mode::Healthy { delay_ms: 1 },
    );
    let harness = start(processors.clone(), config()).await;
    harness.accept(500).await;
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert_eq!(harness.booked_count().await, 500);
    assert_eq!(processors.booked(Processor::Default).len(), 500);
    assert_eq!(
        processors.submits_to(Processor::Fallback),
        0,
        "fallback used while default was healthy"
    );
    harness.assert_booked_once();
    harness.stop().await;
}

/// Goal: when the default fails, new payments go to the fallback; when both fail, payments
/// wait without a storm of requests; on recovery the backlog drains promptly.
#[tokio::test(start_paused = true)]
async fn failover_hold_and_recovery() {
    let processors = Processors::new(Mode::Failing, Mode::Healthy { delay_ms: 20 });
    let harness = start(processors.clone(), config()).await;
    // Let the first health poll land: from then on the engine knows the default is failing.
    tokio::time::sleep(Duration::from_millis(100)).await;
    harness.accept(100).await;
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    assert_eq!(harness.booked_count().await, 100, "fallback took over");
    assert!(
        processors.submits_to(Processor::Default) <= 10,
        "default hammered while failing"
    );

    processors.set(Processor::Fallback, Mode::Failing);
    // One poll interval later the engine knows both fail; what follows are retries only.
    tokio::time::sleep(Duration::from_millis(5_100)).await;
    let before = processors.submits.lock().unwrap().len();
    harness.accept(200).await;
    tokio::time::sleep(Duration::from_millis(60_000)).await;
    let during = processors.submits.lock().unwrap().len() - before;
    assert_eq!(
        harness.booked_count().await,
        100,
        "nothing can be booked while both fail"
    );
    // Probes only: a handful per breaker period, never one per payment per retry.
    assert!(
        during <= 80,
        "{during} calls in 60 s while both processors failed"
    );
    assert!(
        harness
            .states()
            .await
            .iter()
            .all(|s| !matches!(s, PaymentState::Failed)),
        "nothing given up"
    );

    processors.set(Processor::Default, Mode::Healthy { delay_ms: 20 });
    harness.drains_to(300).await;
    harness.assert_booked_once();
    harness.stop().await;
}

/// Goal: while both processors fail, intake does not make the worker reread the queue
/// (the engine's "never spins"): at 600 payments/s during an outage, one read per intake
/// was 600 reads a second for payments that could not go anywhere. Method: with both
/// processors failing and known to fail, accept 600 payments one by one over one second
/// (each wakes the worker, as the API does) and count the worker's reads of the queue.
#[tokio::test(start_paused = true)]
async fn intake_does_not_wake_a_held_queue() {
    let processors = Processors::new(Mode::Failing, Mode::Failing);
    let harness = start(processors.clone(), config()).await;
    // The first health polls land and the first payments open both breakers.
    tokio::time::sleep(Duration::from_millis(100)).await;
    harness.accept(20).await;
    tokio::time::sleep(Duration::from_millis(5_100)).await;
    let before = harness.store.due_reads.load(Ordering::Relaxed);
    harness.accept_for_a_second_at_600_per_s().await;
    let reads = harness.store.due_reads.load(Ordering::Relaxed) - before;
    // Waits are the breaker's reopening and the jittered hold (at least ~50 ms each), plus
    // one read per finished probe call.
    assert!(
        reads <= 60,
        "{reads} reads of the queue in one second of intake while both processors failed"
    );
    assert_eq!(harness.booked_count().await, 0);
    // And the held payments still go out as soon as a processor recovers.
    processors.set(Processor::Default, Mode::Healthy { delay_ms: 20 });
    harness.drains_to(620).await;
    harness.assert_booked_once();
    harness.stop().await;
}

/// Goal: the worker commits leases and outcomes in batches, so that intake has fewer
/// commits to wait behind (at 600 payments/s, a lease and an outcome committed alone per
/// payment made three commits per payment, intake's included). Method: a steady second of
/// intake, one payment every 1.67 ms, each waking the worker as the API does, against a
/// default answering in 1 ms; count the worker's transition commands with and without
/// coalescing (1,200 without: a lease and an outcome each; 480 with 5 ms). Then a burst: no
/// command may carry more than `batch_max` transitions.
#[tokio::test(start_paused = true)]
async fn leases_and_outcomes_share_commits() {
    async fn commands_for_a_steady_second(coalesce_ms: u64) -> usize {
        let processors =
            Processors::new(Mode::Healthy { delay_ms: 1 }, Mode::Healthy { delay_ms: 1 });
        let harness = start(
            processors,
            GatewayConfig {
                coalesce_ms,
                ..config()
            },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        harness.accept_for_a_second_at_600_per_s().await;
        harness.drains_to(600).await;
        harness.assert_booked_once();
        let commands = harness.store.transition_commands.load(Ordering::Relaxed);
        harness.stop().await;
        commands
    }
    let alone = commands_for_a_steady_second(0).await;
    let coalesced = commands_for_a_steady_second(5).await;
    assert!(alone >= 1_100, "{alone} commands without coalescing");
    assert!(
        coalesced <= 500,
        "{coalesced} commands for 600 payments ({alone} without coalescing)"
    );

    let processors = Processors::new(Mode::Healthy { delay_ms: 1 }, Mode::Healthy { delay_ms: 1 });
    let harness = start(processors, config()).await;
    harness.accept(1_000).await;
    harness.drains_to(1_000).await;
    let largest = harness.store.largest_command.load(Ordering::Relaxed);
    assert!(largest <= 64, "one command carried {largest} transitions");
    harness.assert_booked_once();
    harness.stop().await;
}

/// Goal: after a restart, every payment that was in flight becomes an unknown outcome at
/// once, however many there are. Method: 200 payments processing at the default (more than
/// three worker batches), a new gateway on the same store, `recover`. It used to stop after
/// the first batch: the next read began with the payments it had just recovered.
#[tokio::test(start_paused = true)]
async fn recovery_takes_every_payment_in_flight() {
    use payd_engine::Clock;
    let store = Arc::new(MemoryPayments::default());
    let clock = TokioClock::starting_at(1_700_000_000_000);
    in_flight_at_default(&store, 200, clock.now_ms());
    let config = GatewayConfig {
        batch_max: 64,
        ..config()
    };
    let processors = Processors::new(Mode::Healthy { delay_ms: 0 }, Mode::Healthy { delay_ms: 0 });
    let gateway = Gateway::new(store.clone(), processors, Arc::new(clock), config, alone());
    assert_eq!(gateway.recover().await.unwrap(), 200);
    let states: Vec<PaymentState> = store
        .payments
        .lock()
        .unwrap()
        .values()
        .map(|r| r.state)
        .collect();
    assert!(
        states.iter().all(|s| matches!(
            s,
            PaymentState::Unknown {
                processor: Processor::Default,
                ..
            }
        )),
        "every payment in flight is an unknown outcome at its processor"
    );
}

/// `n` payments in flight at the default processor under a 30 s lease, sent from 500 ms
/// before `now_ms`, as another process (or a previous run) left them.
fn in_flight_at_default(store: &MemoryPayments, n: u64, now_ms: i64) -> Vec<CorrelationId> {
    (0..n)
        .map(|serial| {
            let id =
                CorrelationId::parse(&format!("00000000-0000-4000-8000-{serial:012x}")).unwrap();
            let state = PaymentState::new(now_ms - 1_000)
                .dispatch(Processor::Default, now_ms - 500 + serial as i64, 30_000)
                .unwrap();
            store.payments.lock().unwrap().insert(
                id.as_str().to_owned(),
                PaymentRecord {
                    id: id.clone(),
                    amount: Amount::from_cents(1990),
                    requested_at_ms: now_ms - 1_000,
                    state,
                    attempts: 1,
                    version: 1,
                    hold: None,
                },
            );
            id
        })
        .collect()
}

/// Goal: on a store shared by several processes, a starting gateway leaves the payments
/// another live process has in flight alone until their leases expire, then takes them
/// over as unknown outcomes at the processor they were sent to, never the other one.
/// Method: 20 payments in flight at the default under a 30 s lease, on a shared store; a
/// new gateway starts (its recovery takes nothing); nothing of theirs moves for 29 s; after
/// the lease each is re-posted to the default (a 422 there books it) and none goes to the
/// fallback.
#[tokio::test(start_paused = true)]
async fn a_shared_store_takes_over_leases_only_once_they_expire() {
    use payd_engine::Clock;
    let store = Arc::new(MemoryPayments {
        shared: true,
        ..MemoryPayments::default()
    });
    let now_ms = TokioClock::starting_at(1_700_000_000_000).now_ms();
    let ids = in_flight_at_default(&store, 20, now_ms);
    let processors = Processors::new(Mode::Healthy { delay_ms: 5 }, Mode::Healthy { delay_ms: 5 });
    let harness = start_on(store, processors.clone(), config()).await;
    assert_eq!(harness.gateway.recover().await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(29_000)).await;
    for id in &ids {
        let record = harness.store.payment(id).await.unwrap().unwrap();
        assert!(
            matches!(record.state, PaymentState::Processing { .. }) && record.version == 1,
            "{id} is another live process's until its lease ends: {:?}",
            record.state
        );
    }
    assert_eq!(processors.booked(Processor::Default).len(), 0);
    tokio::time::sleep(Duration::from_millis(30_000)).await;
    for id in &ids {
        let record = harness.store.payment(id).await.unwrap().unwrap();
        assert_eq!(
            record.state,
            PaymentState::Booked {
                processor: Processor::Default
            },
            "{id}"
        );
    }
    assert!(processors.booked(Processor::Fallback).is_empty());
    harness.assert_booked_once();
    harness.stop().await;
}

/// Goal: a payment whose call timed out stays with that processor, even when the processor
/// then fails and the fallback is healthy, until that processor tells us it booked it (or,
/// after the settle time, that it did not). Never booked at both.
#[tokio::test(start_paused = true)]
async fn unknown_outcomes_stay_bound_to_their_processor() {
    let processors = Processors::new(Mode::BlackHole, Mode::Healthy { delay_ms: 5 });
    let harness = start(processors.clone(), config()).await;
    let ids = harness.accept(20).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    // The default now fails outright; the fallback is healthy and cheap to reach.
    processors.set(Processor::Default, Mode::Failing);
    tokio::time::sleep(Duration::from_millis(60_000)).await;
    // The black hole booked the first calls after the timeout; the engine found out through
    // a re-post (422) or a lookup, and never sent those payments to the fallback.
    let default = processors.booked(Processor::Default);
    for id in &ids {
        let record = harness.store.payment(id).await.unwrap().unwrap();
        assert!(
            matches!(record.state, PaymentState::Booked { .. }),
            "{id}: {:?}",
            record.state
        );
    }
    assert!(!default.is_empty(), "the black hole booked some payments");
    harness.assert_booked_once();
    harness.stop().await;
}

/// Goal: an unknown outcome that the processor never booked is freed after the settle time
/// (a lookup answers 404) and then booked elsewhere, exactly once.
#[tokio::test(start_paused = true)]
async fn unbooked_unknowns_are_freed_after_settling() {
    let processors = Processors::new(Mode::Healthy { delay_ms: 5 }, Mode::Healthy { delay_ms: 5 });
    let harness = start(processors.clone(), config()).await;
    // A payment whose call went out before a crash, never booked anywhere.
    let id = harness.accept(1).await.remove(0);
    let dispatched = PaymentState::new(0)
        .dispatch(Processor::Default, 0, 30_000)
        .unwrap();
    {
        let mut payments = harness.store.payments.lock().unwrap();
        let record = payments.get_mut(id.as_str()).unwrap();
        record.state = dispatched;
        record.version += 1;
    }
    processors.set(Processor::Default, Mode::Failing);
    tokio::time::sleep(Duration::from_millis(40_000)).await;
    let record = harness.store.payment(&id).await.unwrap().unwrap();
    assert_eq!(
        record.state,
        PaymentState::Booked {
            processor: Processor::Fallback
        }
    );
    harness.assert_booked_once();
    harness.stop().await;
}

/// Offers `ids` to the gateway as the work transport's consumer does; the receivers say
/// when each message may be acknowledged.
fn offer_all(gateway: &Gateway, ids: &[CorrelationId]) -> Vec<tokio::sync::oneshot::Receiver<()>> {
    ids.iter()
        .map(|id| {
            let (settle, settled) = tokio::sync::oneshot::channel();
            gateway.offer(id.clone(), settle);
            settled
        })
        .collect()
}

/// How many of `receivers` were settled since the last look.
fn settled_now(receivers: &mut [tokio::sync::oneshot::Receiver<()>]) -> usize {
    receivers
        .iter_mut()
        .map(|receiver| receiver.try_recv().is_ok())
        .filter(|settled| *settled)
        .count()
}

/// A gateway fed by a work transport: the sweep leaves queued payments to their message
/// for a minute.
fn queue_fed() -> GatewayConfig {
    GatewayConfig {
        sweep_grace_ms: 60_000,
        ..config()
    }
}

/// Goal: with a work transport, a payment goes out because its message offered it, and the
/// message is settled (may be acknowledged) once its lease is committed; the sweep leaves
/// queued payments alone during the grace. Method: 50 payments offered, 10 accepted but not
/// offered; after a second the 50 are booked and settled, the 10 still queued.
#[tokio::test(start_paused = true)]
async fn offered_payments_go_out_and_their_messages_are_settled() {
    let processors = Processors::new(Mode::Healthy { delay_ms: 5 }, Mode::Healthy { delay_ms: 5 });
    let harness = start(processors.clone(), queue_fed()).await;
    let offered = harness.accept(50).await;
    let unannounced = harness.accept(10).await;
    let settled = offer_all(&harness.gateway, &offered);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    for mut receiver in settled {
        assert_eq!(
            receiver.try_recv(),
            Ok(()),
            "a booked payment's message unsettled"
        );
    }
    assert_eq!(harness.booked_count().await, 50);
    let payments = harness.store.payments.lock().unwrap().clone();
    for id in &unannounced {
        assert!(
            matches!(payments[id.as_str()].state, PaymentState::Queued { .. }),
            "the sweep took a payment within its grace"
        );
    }
    drop(payments);
    harness.assert_booked_once();
    harness.stop().await;
}

/// Goal: a redelivered message (its payment already booked) and a message for a payment the
/// store does not have are settled without a call. Method: book 5 through offers, offer
/// them again and one unknown id; count the processors' calls.
#[tokio::test(start_paused = true)]
async fn redelivered_messages_are_settled_without_a_second_call() {
    let processors = Processors::new(Mode::Healthy { delay_ms: 5 }, Mode::Healthy { delay_ms: 5 });
    let harness = start(processors.clone(), queue_fed()).await;
    let ids = harness.accept(5).await;
    offer_all(&harness.gateway, &ids);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(harness.booked_count().await, 5);
    let calls = processors.submits.lock().unwrap().len();
    let mut again = ids.clone();
    again.push(CorrelationId::parse("00000000-0000-4000-8000-ffffffffffff").unwrap());
    let settled = offer_all(&harness.gateway, &again);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for mut receiver in settled {
        assert_eq!(receiver.try_recv(), Ok(()));
    }
    assert_eq!(
        processors.submits.lock().unwrap().len(),
        calls,
        "a payment was sent twice"
    );
    harness.assert_booked_once();
    harness.stop().await;
}

/// Goal: an offered payment that cannot go out yet (every in-flight slot taken) keeps its
/// message unsettled, so the broker still holds it, and goes out, settled, once a slot
/// frees. Method: 2 slots per processor, calls of 1 s, 10 offers: after 100 ms at most 4
/// settled; after the calls finished, all 10.
#[tokio::test(start_paused = true)]
async fn offers_wait_unsettled_while_no_slot_is_free() {
    let processors = Processors::new(
        Mode::Healthy { delay_ms: 1_000 },
        Mode::Healthy { delay_ms: 1_000 },
    );
    let config = GatewayConfig {
        in_flight_max: 2,
        ..queue_fed()
    };
    let harness = start(processors.clone(), config).await;
    let ids = harness.accept(10).await;
    let mut settled = offer_all(&harness.gateway, &ids);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let early = settled_now(&mut settled);
    assert!(
        (1..=4).contains(&early),
        "{early} messages settled with 4 slots in all"
    );
    harness.drains_to(10).await;
    let rest = settled_now(&mut settled);
    assert_eq!(
        early + rest,
        10,
        "every message settled once its payment went out"
    );
    harness.assert_booked_once();
    harness.stop().await;
}
