//! The gateway's worker: moves accepted payments through their lifecycle.
//!
//! One loop per process (`Gateway::run`) repeats one testable step (`Gateway::step`):
//! 1. read the payments that need attention (bound ones first: expired leases, due unknowns);
//! 2. decide, with `payd_domain::gateway`, what each needs: an expired lease becomes an
//!    unknown outcome; an unknown outcome is re-posted to *its* processor, or, once the last
//!    uncertain call has settled, looked up there; a free payment is routed by the policy;
//! 3. commit every decision in one batch of compare-and-set transitions (a payment another
//!    worker moved meanwhile is dropped), and only then call processors, each call in its own
//!    task holding one of its processor's in-flight slots;
//! 4. each call records its outcome with one more transition.
//!
//! The loop never spins: with nothing to do it waits for intake to wake it (or a short
//! poll); with free payments but no usable processor it waits until a breaker allows a
//! probe (jittered, capped) or a call finishes; with every slot taken it waits for a call
//! to finish. Intake does not wake it in those two states: a new payment could not be
//! dispatched either, and each wake-up rereads the due payments (at 600 payments/s during
//! an outage, 600 rereads a second for nothing).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use payd_domain::CorrelationId;
use payd_domain::gateway::Processor;
use payd_domain::gateway::payment::PaymentState;
use payd_domain::gateway::routing::{Route, route};
use payd_ports::{
    LedgerError, Lookup, PaymentRecord, PaymentStore, ProcessorClient, ProcessorPayment, Transition,
};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio::task::JoinSet;

use crate::health::{ProcessorHealth, SharedHealth, poll_health};
use crate::inbox::{Inbox, Settle, Taken};
use crate::jitter::Jitter;
use crate::{Clock, GatewayConfig};

/// How stale the backlog count used for routing may be, in ms.
const BACKLOG_REFRESH_MS: i64 = 250;

/// What one step did (for the loop's pacing, and for tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepReport {
    /// Payments read as due.
    pub due: usize,
    /// Calls started (submissions and lookups).
    pub calls: usize,
    /// Transitions without a call (expired leases, postponements).
    pub moved: usize,
    /// Free payments are waiting because no processor is usable.
    pub held: bool,
    /// Some payment waits for an in-flight slot.
    pub saturated: bool,
}

/// A call decided in a step, started once its transition is committed.
enum Call {
    Submit {
        processor: Processor,
        dispatched: PaymentState,
    },
    Lookup {
        processor: Processor,
    },
}

/// Outcomes waiting for their commit. The first call to finish while no one records
/// becomes the recorder: it waits `coalesce_ms` for others, then commits them in batches of
/// at most `batch_max` until none is left; the others wait for their batch.
#[derive(Default)]
struct Outcomes {
    pending: Vec<(Transition, oneshot::Sender<()>)>,
    recording: bool,
}

/// Held by the recorder. Dropped, however that happens (the task cancelled mid-commit at
/// shutdown included), it hands recording over: the waiting calls are answered (their
/// outcomes were not recorded; their leases run out and resolve them as unknowns, which is
/// safe) and the next finished call becomes the recorder.
struct Recorder<'a> {
    outcomes: &'a Mutex<Outcomes>,
    /// False once the recorder found nothing left and resigned (under the same lock).
    armed: bool,
}

impl Drop for Recorder<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut outcomes = crate::lock(self.outcomes);
            outcomes.recording = false;
            outcomes.pending.clear();
        }
    }
}

struct Planned {
    record: PaymentRecord,
    transition: Option<Transition>,
    call: Option<(Call, OwnedSemaphorePermit)>,
}

/// The gateway engine. Cheap to share (`Arc`).
pub struct Gateway {
    store: Arc<dyn PaymentStore>,
    client: Arc<dyn ProcessorClient>,
    clock: Arc<dyn Clock>,
    config: GatewayConfig,
    /// Where the health pollers share the processors' health with other processes.
    shared_health: SharedHealth,
    health: [Arc<ProcessorHealth>; 2],
    slots: [Arc<Semaphore>; 2],
    /// Payments this process is working on right now, so one step never starts a second
    /// call for a payment whose first call (or lookup) has not finished.
    busy: Mutex<HashSet<CorrelationId>>,
    /// Woken by intake: new work.
    arrived: Notify,
    /// Woken by a finished call: a slot is free, and a processor's health may have changed.
    finished: Notify,
    /// The last backlog count and when it was taken.
    backlog: Mutex<Option<(u64, i64)>>,
    /// Outcomes of finished calls waiting to be committed together.
    outcomes: Mutex<Outcomes>,
    /// Randomness for the backoff's jitter.
    jitter: Jitter,
    /// Payments the work transport announced to this worker, not leased yet.
    inbox: Inbox,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn index(processor: Processor) -> usize {
    match processor {
        Processor::Default => 0,
        Processor::Fallback => 1,
    }
}

impl Gateway {
    /// A gateway over these ports.
    pub fn new(
        store: Arc<dyn PaymentStore>,
        client: Arc<dyn ProcessorClient>,
        clock: Arc<dyn Clock>,
        config: GatewayConfig,
        shared_health: SharedHealth,
    ) -> Arc<Gateway> {
        let slots = || Arc::new(Semaphore::new(config.in_flight_max.max(1) as usize));
        let health = || Arc::new(ProcessorHealth::new(config.breaker));
        let jitter = Jitter::seeded(clock.now_ms());
        Arc::new(Gateway {
            store,
            client,
            clock,
            config,
            shared_health,
            health: [health(), health()],
            slots: [slots(), slots()],
            busy: Mutex::new(HashSet::new()),
            arrived: Notify::new(),
            finished: Notify::new(),
            backlog: Mutex::new(None),
            outcomes: Mutex::new(Outcomes::default()),
            jitter,
            inbox: Inbox::default(),
        })
    }

    /// Tells the worker there is new work (called by intake after a payment is accepted).
    pub fn wake(&self) {
        self.arrived.notify_one();
    }

    /// Hands the worker a payment a message announced (the work transport's consumer calls
    /// this). `settle` is sent once the payment needs nothing more from this worker (its
    /// lease committed, or it is elsewhere already); then the message may be acknowledged.
    pub fn offer(&self, id: CorrelationId, settle: Settle) {
        self.inbox.push(id, settle);
        self.arrived.notify_one();
    }

    /// Counts a breaker opened on this process's own calls, and tells the other processes
    /// (without waiting: the call's outcome is recorded meanwhile).
    fn announce_opened(&self, processor: Processor) {
        metrics::counter!("payd_breaker_opened_total", "processor" => processor.as_str(), "cause" => "calls")
            .increment(1);
        let Some(bus) = self.shared_health.breakers.clone() else {
            return;
        };
        let instance = self.shared_health.instance.clone();
        tokio::spawn(async move {
            match bus.announce(processor, &instance).await {
                Ok(()) => metrics::counter!("payd_breaker_shared_total", "processor" => processor.as_str(), "direction" => "sent")
                    .increment(1),
                Err(error) => tracing::debug!(processor = processor.as_str(), %error, "Could not announce an opened breaker."),
            }
        });
    }

    /// Another process announced that its breaker for `processor` opened (see
    /// [`SharedHealth::breakers`]): opens this process's too if it is closed.
    pub fn on_peer_trip(&self, processor: Processor) {
        let name = processor.as_str();
        metrics::counter!("payd_breaker_shared_total", "processor" => name, "direction" => "received")
            .increment(1);
        if self.health(processor).on_peer_trip(self.clock.now_ms()) {
            metrics::counter!("payd_breaker_opened_total", "processor" => name, "cause" => "peer")
                .increment(1);
        }
    }

    /// What the engine knows about a processor.
    pub fn health(&self, processor: Processor) -> &ProcessorHealth {
        &self.health[index(processor)]
    }

    fn release(&self, id: &CorrelationId) {
        crate::lock(&self.busy).remove(id);
    }

    /// The number of payments not final yet, refreshed at most every [`BACKLOG_REFRESH_MS`]:
    /// routing only needs its order of magnitude, and counting costs a scan of the backlog.
    async fn backlog(&self, now_ms: i64) -> Result<u64, LedgerError> {
        let cached = *crate::lock(&self.backlog);
        if let Some((count, at_ms)) = cached
            && now_ms.saturating_sub(at_ms) < BACKLOG_REFRESH_MS
        {
            return Ok(count);
        }
        let count = self.store.pending_payments().await?;
        metrics::gauge!("payd_gateway_backlog").set(count as f64);
        *crate::lock(&self.backlog) = Some((count, now_ms));
        Ok(count)
    }

    /// Recovers after a restart: the payments the store says this process may take over
    /// at once ([`PaymentStore::orphaned_payments`]: every one on the embedded store, its
    /// own instance's on a shared one) were in flight in a previous run, so each call's
    /// outcome is unknown now. Leases of other live processes are never touched: they are
    /// taken over, as unknown outcomes, only once they expire. Returns how many were
    /// recovered.
    pub async fn recover(&self) -> Result<usize, LedgerError> {
        let now_ms = self.clock.now_ms();
        let mut recovered = 0;
        loop {
            let orphans = self
                .store
                .orphaned_payments(self.config.batch_max.max(1))
                .await?;
            let transitions: Vec<Transition> = orphans
                .iter()
                .filter_map(|record| {
                    let next = record.state.abandon(now_ms).ok()?;
                    Some(Transition {
                        id: record.id.clone(),
                        expected_version: record.version,
                        next,
                        counts_attempt: false,
                    })
                })
                .collect();
            if transitions.is_empty() {
                return Ok(recovered);
            }
            let applied = self
                .store
                .apply_transitions(transitions)
                .await?
                .into_iter()
                .filter(|a| *a)
                .count();
            // Another process moved them meanwhile: nothing left for this one.
            if applied == 0 {
                return Ok(recovered);
            }
            recovered += applied;
        }
    }

    /// Runs the worker and one health poller per processor until `shutdown` turns true,
    /// then waits for the calls in flight to finish and record their outcomes.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        match self.recover().await {
            Ok(0) => {}
            Ok(count) => tracing::info!(
                count,
                "Resumed payments that were in flight before the restart."
            ),
            Err(error) => tracing::error!(%error, "Could not recover in-flight payments."),
        }
        let mut pollers = JoinSet::new();
        for processor in Processor::ALL {
            pollers.spawn(poll_health(
                self.client.clone(),
                processor,
                self.health[index(processor)].clone(),
                self.clock.clone(),
                self.config.health_interval_ms,
                self.shared_health.clone(),
                shutdown.clone(),
            ));
        }
        let mut calls = JoinSet::new();
        let mut stop = shutdown.clone();
        loop {
            if *stop.borrow() {
                break;
            }
            while calls.try_join_next().is_some() {}
            // How long to wait, and whether intake may cut the wait short.
            let (wait_ms, on_arrival) = match self.step_into(&mut calls).await {
                Ok(report) if report.held => (self.hold_ms(), false),
                Ok(report) if report.saturated => (self.config.idle_poll_ms, false),
                Ok(report) if report.calls + report.moved > 0 => (0, true),
                Ok(_) => (self.config.idle_poll_ms, true),
                Err(error) => {
                    tracing::warn!(%error, "Gateway step failed; backing off.");
                    (self.config.backoff.cap_ms, false)
                }
            };
            if wait_ms > 0 {
                let arrival = tokio::select! {
                    () = self.arrived.notified(), if on_arrival => true,
                    () = self.finished.notified() => false,
                    () = tokio::time::sleep(Duration::from_millis(wait_ms)) => false,
                    _ = stop.wait_for(|s| *s) => break,
                };
                if arrival {
                    // Let more payments arrive: their leases share one commit.
                    tokio::time::sleep(Duration::from_millis(self.config.coalesce_ms)).await;
                }
            }
        }
        // Calls in flight finish and record their outcomes; each is bounded by its timeout.
        while calls.join_next().await.is_some() {}
        while pollers.join_next().await.is_some() {}
    }

    /// How long to wait when no processor is usable: until the first breaker allows a
    /// probe, jittered and capped, so held payments neither spin nor storm.
    fn hold_ms(&self) -> u64 {
        let now_ms = self.clock.now_ms();
        let reopen_ms = Processor::ALL
            .iter()
            .filter_map(|p| self.health(*p).reopens_at_ms())
            .min()
            .map(|at| u64::try_from(at.saturating_sub(now_ms)).unwrap_or(0));
        let backoff = self.config.backoff.delay_ms(3, self.jitter.next_u32());
        reopen_ms.map_or(backoff, |ms| ms.clamp(1, backoff.max(1)))
    }

    /// One step, with its calls detached (tests drive the gateway step by step with this).
    pub async fn step(self: &Arc<Self>) -> Result<StepReport, LedgerError> {
        let mut calls = JoinSet::new();
        let report = self.step_into(&mut calls).await?;
        calls.detach_all();
        Ok(report)
    }

    async fn step_into(
        self: &Arc<Self>,
        calls: &mut JoinSet<()>,
    ) -> Result<StepReport, LedgerError> {
        let now_ms = self.clock.now_ms();
        let mut offered = self.inbox.take(&*self.store, now_ms).await?;
        let result = self.step_with(&mut offered, now_ms, calls).await;
        // What this step did not lease waits for the next.
        self.inbox.give_back(offered);
        result
    }

    async fn step_with(
        self: &Arc<Self>,
        offered: &mut Taken,
        now_ms: i64,
        calls: &mut JoinSet<()>,
    ) -> Result<StepReport, LedgerError> {
        // The sweep: what no message brought (retries, expired leases, unknown outcomes),
        // and, past the grace, new payments whose message is late or was lost.
        let swept = self
            .store
            .due_payments(
                now_ms,
                now_ms.saturating_sub(self.config.sweep_grace_ms),
                self.config.batch_max,
            )
            .await?;
        let mut due = offered.records();
        due.extend(swept.into_iter().filter(|r| !offered.contains(&r.id)));
        let mut report = StepReport {
            due: due.len(),
            ..StepReport::default()
        };
        if due.is_empty() {
            return Ok(report);
        }
        let backlog = self.backlog(now_ms).await?;
        let mut planned = Vec::with_capacity(due.len());
        for record in due {
            if !crate::lock(&self.busy).insert(record.id.clone()) {
                continue;
            }
            if let Some(plan) = self.plan(record, now_ms, backlog, &mut report) {
                planned.push(plan);
            }
        }
        let transitions: Vec<Transition> = planned
            .iter()
            .filter_map(|p| p.transition.clone())
            .collect();
        let mut applied = if transitions.is_empty() {
            Vec::new().into_iter()
        } else {
            match self.store.apply_transitions(transitions).await {
                Ok(applied) => applied.into_iter(),
                Err(error) => {
                    for plan in &planned {
                        self.forget(plan);
                    }
                    return Err(error);
                }
            }
        };
        for plan in planned {
            let committed = match plan.transition {
                Some(_) => {
                    // Leased here, or moved by another worker: either way not this one's.
                    offered.settle(&plan.record.id);
                    applied.next().unwrap_or(false)
                }
                None => true,
            };
            match plan.call {
                Some((call, slot)) if committed => {
                    report.calls += 1;
                    let gateway = self.clone();
                    calls.spawn(async move { gateway.call(plan.record, call, slot).await });
                }
                _ if committed => {
                    report.moved += 1;
                    self.release(&plan.record.id);
                }
                _ => self.forget(&plan),
            }
        }
        Ok(report)
    }

    /// Drops a plan whose transition did not commit: its call never goes out.
    fn forget(&self, plan: &Planned) {
        if let Some((Call::Submit { processor, .. }, _)) = &plan.call {
            self.health(*processor).on_cancel();
        }
        self.release(&plan.record.id);
    }

    /// Decides what one due payment needs. `None`: nothing now (it was released).
    fn plan(
        &self,
        record: PaymentRecord,
        now_ms: i64,
        backlog: u64,
        report: &mut StepReport,
    ) -> Option<Planned> {
        let transition = |next: PaymentState, counts_attempt: bool| Transition {
            id: record.id.clone(),
            expected_version: record.version,
            next,
            counts_attempt,
        };
        match record.state {
            PaymentState::Processing { .. } => {
                let next = record.state.expire_lease(now_ms).ok();
                let transition = next.map(|next| transition(next, false));
                Some(Planned {
                    record,
                    transition,
                    call: None,
                })
            }
            PaymentState::Unknown {
                processor,
                last_sent_ms,
                ..
            } => {
                let health = self.health(processor);
                if health.view(now_ms, self.config.in_flight_max).admission
                    == payd_domain::gateway::breaker::Admission::Refused
                {
                    // Bound to a processor that cannot be called now: look again when its
                    // breaker allows a probe.
                    let due_ms = health
                        .reopens_at_ms()
                        .unwrap_or(now_ms + self.config.recheck_ms);
                    let next = record.state.postpone(due_ms.max(now_ms + 1)).ok();
                    let transition = next.map(|next| transition(next, false));
                    return Some(Planned {
                        record,
                        transition,
                        call: None,
                    });
                }
                let Ok(slot) = self.slots[index(processor)].clone().try_acquire_owned() else {
                    report.saturated = true;
                    self.release(&record.id);
                    return None;
                };
                if now_ms.saturating_sub(last_sent_ms) >= self.config.settle_ms {
                    let call = Some((Call::Lookup { processor }, slot));
                    return Some(Planned {
                        record,
                        transition: None,
                        call,
                    });
                }
                self.dispatch(record, processor, now_ms, slot)
            }
            PaymentState::Queued { .. } => {
                if report.held {
                    self.release(&record.id);
                    return None;
                }
                let views =
                    Processor::ALL.map(|p| self.health(p).view(now_ms, self.config.in_flight_max));
                match route(&views[0], &views[1], backlog, &self.config.routing) {
                    Route::Hold => {
                        report.held = true;
                        self.release(&record.id);
                        None
                    }
                    Route::Send(processor) => {
                        let Ok(slot) = self.slots[index(processor)].clone().try_acquire_owned()
                        else {
                            report.saturated = true;
                            self.release(&record.id);
                            return None;
                        };
                        self.health(processor).on_dispatch(now_ms);
                        self.dispatch(record, processor, now_ms, slot)
                    }
                }
            }
            PaymentState::Booked { .. } | PaymentState::Failed => {
                self.release(&record.id);
                None
            }
        }
    }

    fn dispatch(
        &self,
        record: PaymentRecord,
        processor: Processor,
        now_ms: i64,
        slot: OwnedSemaphorePermit,
    ) -> Option<Planned> {
        match record
            .state
            .dispatch(processor, now_ms, self.config.lease_ms)
        {
            Ok(dispatched) => {
                let transition = Some(Transition {
                    id: record.id.clone(),
                    expected_version: record.version,
                    next: dispatched,
                    counts_attempt: true,
                });
                Some(Planned {
                    record,
                    transition,
                    call: Some((
                        Call::Submit {
                            processor,
                            dispatched,
                        },
                        slot,
                    )),
                })
            }
            Err(error) => {
                tracing::error!(%error, id = %record.id, "Refused transition; leaving the payment as it is.");
                self.release(&record.id);
                None
            }
        }
    }

    /// Makes one call and records what it established.
    async fn call(self: Arc<Self>, record: PaymentRecord, call: Call, slot: OwnedSemaphorePermit) {
        let next = match call {
            Call::Submit {
                processor,
                dispatched,
            } => {
                let payment = ProcessorPayment {
                    id: record.id.clone(),
                    amount: record.amount,
                    requested_at_ms: record.requested_at_ms,
                };
                let started = tokio::time::Instant::now();
                let outcome = self.client.submit(processor, &payment).await;
                let latency = started.elapsed();
                let now_ms = self.clock.now_ms();
                let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
                let health = self.health(processor);
                if health.on_outcome(outcome, latency_ms, now_ms) {
                    self.announce_opened(processor);
                }
                let (rejected_percent, unknown_percent) = health.failure_rates_percent();
                let name = processor.as_str();
                metrics::gauge!("payd_processor_rejected_percent", "processor" => name)
                    .set(f64::from(rejected_percent));
                metrics::gauge!("payd_processor_unknown_percent", "processor" => name)
                    .set(f64::from(unknown_percent));
                metrics::counter!("payd_gateway_calls_total", "processor" => processor.as_str(), "outcome" => outcome.as_str()).increment(1);
                metrics::histogram!("payd_gateway_call_seconds", "processor" => processor.as_str())
                    .record(latency.as_secs_f64());
                let retry_ms = self
                    .config
                    .backoff
                    .delay_ms(record.attempts, self.jitter.next_u32());
                let retry_ms = i64::try_from(retry_ms).unwrap_or(i64::MAX);
                dispatched
                    .record(outcome, now_ms, retry_ms, self.config.recheck_ms)
                    .map(|next| (next, record.version + 1))
            }
            Call::Lookup { processor } => {
                let lookup = self.client.lookup(processor, &record.id).await;
                let now_ms = self.clock.now_ms();
                let (settle_ms, recheck_ms) = (self.config.settle_ms, self.config.recheck_ms);
                let next = match lookup {
                    Lookup::Found => record
                        .state
                        .status_checked(true, now_ms, settle_ms, recheck_ms),
                    Lookup::NotFound => record
                        .state
                        .status_checked(false, now_ms, settle_ms, recheck_ms),
                    Lookup::Unavailable => record.state.postpone(now_ms + recheck_ms),
                };
                next.map(|next| (next, record.version))
            }
        };
        drop(slot);
        match next {
            Ok((next, expected_version)) => {
                let transition = Transition {
                    id: record.id.clone(),
                    expected_version,
                    next,
                    counts_attempt: false,
                };
                // From the processor's answer to its commit: how late the summary shows
                // what a processor already booked.
                let answered = std::time::Instant::now();
                self.record(transition).await;
                metrics::histogram!("payd_gateway_outcome_record_seconds")
                    .record(answered.elapsed().as_secs_f64());
            }
            Err(error) => {
                tracing::error!(%error, id = %record.id, "Refused transition after a call.")
            }
        }
        self.release(&record.id);
        self.finished.notify_one();
    }

    /// Commits the transition a finished call established, together with the outcomes of
    /// the calls that finish within `coalesce_ms` (see [`Outcomes`]). Returns once it is
    /// committed, or failed to be: then the lease runs out and the payment is resolved as
    /// an unknown outcome (safe, only slower).
    async fn record(&self, transition: Transition) {
        let (done, recorded) = oneshot::channel();
        let recorder = {
            let mut outcomes = crate::lock(&self.outcomes);
            outcomes.pending.push((transition, done));
            !std::mem::replace(&mut outcomes.recording, true)
        };
        if recorder {
            let mut recorder = Recorder {
                outcomes: &self.outcomes,
                armed: true,
            };
            tokio::time::sleep(Duration::from_millis(self.config.coalesce_ms)).await;
            loop {
                let batch: Vec<_> = {
                    let mut outcomes = crate::lock(&self.outcomes);
                    if outcomes.pending.is_empty() {
                        // Resign under the lock: the next outcome finds no recorder.
                        outcomes.recording = false;
                        recorder.armed = false;
                        break;
                    }
                    let take = outcomes
                        .pending
                        .len()
                        .min(self.config.batch_max.max(1) as usize);
                    outcomes.pending.drain(..take).collect()
                };
                let (transitions, waiting): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                let count = transitions.len();
                if let Err(error) = self.store.apply_transitions(transitions).await {
                    tracing::warn!(%error, count, "Could not record processor outcomes.");
                }
                for done in waiting {
                    let _ = done.send(());
                }
            }
        }
        let _ = recorded.await;
    }
}
