//! The writer thread: the only write connection and the sequencer of every command.
//!
//! Commands arrive over a bounded channel. The writer takes the first one (blocking), then
//! whatever else is already queued up to `batch_max`, applies them one after the other in a
//! single SQLite transaction, commits once (one fsync in strict mode: group commit), and only
//! then answers each command. Because one thread applies every command in order, "one
//! decision per account at a time" holds without any lock, and each command sees the effects
//! of the ones before it in the same batch (same connection, same transaction).
//!
//! If a batch fails with an SQLite error, it is rolled back, every in-memory cache is
//! dropped, and each of its commands is re-run in a transaction of its own, so that only a
//! command that fails by itself is answered `Unavailable`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use payd_domain::{
    AccountId, Amount, AuthorizationRequest, Balances, Bucket, Category, Code, Decision, Entry,
    EntryCause, Mcc, MerchantPattern, MerchantRules, MovementError, PriorAuthorization, Rules,
    decide, movement, system_account,
};
use payd_ports::{
    AccountView, Claim, DepositReceipt, DepositRequest, Effect, Intake, LedgerError, Mutation,
    NewAccount, NewPayment, Replied, Sweep, Transition,
};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use crate::payments;
use crate::schema::{self, balance_values, balances_from_row};

mod wallet;

/// A reply channel for one command.
type Reply<T> = oneshot::Sender<Result<T, LedgerError>>;

/// What the store asks of the writer.
pub(crate) enum Command {
    Authorize {
        request: AuthorizationRequest,
        reply: Reply<Code>,
    },
    OpenAccount {
        account: NewAccount,
        reply: Reply<AccountView>,
    },
    Deposit {
        deposit: DepositRequest,
        reply: Reply<DepositReceipt>,
    },
    PutMerchant {
        pattern: MerchantPattern,
        category: Category,
        reply: Reply<bool>,
    },
    DeleteMerchant {
        pattern: MerchantPattern,
        reply: Reply<bool>,
    },
    AcceptPayment {
        payment: NewPayment,
        reply: Reply<Intake>,
    },
    Transitions {
        transitions: Vec<Transition>,
        reply: Reply<Vec<bool>>,
    },
    PurgePayments {
        reply: Reply<u64>,
    },
    Execute {
        mutation: Mutation,
        claim: Option<Claim>,
        reply: Reply<Replied<Effect>>,
    },
    ExpireHolds {
        now_ms: i64,
        limit: u32,
        reply: Reply<Sweep>,
    },
    SettleTransfers {
        limit: u32,
        reply: Reply<Sweep>,
    },
    PurgeIdempotency {
        now_ms: i64,
        limit: u32,
        reply: Reply<Sweep>,
    },
    Webhook {
        command: crate::webhooks::WebhookCommand,
        reply: Reply<crate::webhooks::WebhookAnswer>,
    },
    /// Sent by `shutdown`: close the queue, finish what is in it, exit.
    Stop,
}

/// The result of applying one command: the value to answer once the commit is known good.
/// Client-visible refusals (`AccountExists`, ...) are answers too: they changed nothing.
enum Answer {
    Code(Code),
    Account(Result<AccountView, LedgerError>),
    Deposit(Result<DepositReceipt, LedgerError>),
    Flag(bool),
    Intake(Result<Intake, LedgerError>),
    Applied(Vec<bool>),
    Count(u64),
    Executed(Result<Replied<Effect>, LedgerError>),
    Swept(Sweep),
    Webhook(crate::webhooks::WebhookAnswer),
}

impl Command {
    /// Sends `outcome` to whoever waits for this command. A caller that gave up (dropped its
    /// future) is not an error: the effect is committed either way.
    fn reply(self, outcome: Result<Answer, LedgerError>) {
        let mismatch = || LedgerError::Unavailable("internal error: mismatched answer".to_owned());
        match self {
            Command::Authorize { reply, .. } => {
                let _ = reply.send(outcome.and_then(|a| match a {
                    Answer::Code(code) => Ok(code),
                    _ => Err(mismatch()),
                }));
            }
            Command::OpenAccount { reply, .. } => {
                let _ = reply.send(outcome.and_then(|a| match a {
                    Answer::Account(result) => result,
                    _ => Err(mismatch()),
                }));
            }
            Command::Deposit { reply, .. } => {
                let _ = reply.send(outcome.and_then(|a| match a {
                    Answer::Deposit(result) => result,
                    _ => Err(mismatch()),
                }));
            }
            Command::PutMerchant { reply, .. } | Command::DeleteMerchant { reply, .. } => {
                let _ = reply.send(outcome.and_then(|a| match a {
                    Answer::Flag(flag) => Ok(flag),
                    _ => Err(mismatch()),
                }));
            }
            Command::AcceptPayment { reply, .. } => {
                let _ = reply.send(outcome.and_then(|a| match a {
                    Answer::Intake(result) => result,
                    _ => Err(mismatch()),
                }));
            }
            Command::Transitions { reply, .. } => {
                let _ = reply.send(outcome.and_then(|a| match a {
                    Answer::Applied(applied) => Ok(applied),
                    _ => Err(mismatch()),
                }));
            }
            Command::PurgePayments { reply } => {
                let _ = reply.send(outcome.and_then(|a| match a {
                    Answer::Count(count) => Ok(count),
                    _ => Err(mismatch()),
                }));
            }
            Command::Execute { reply, .. } => {
                let _ = reply.send(outcome.and_then(|a| match a {
                    Answer::Executed(result) => result,
                    _ => Err(mismatch()),
                }));
            }
            Command::ExpireHolds { reply, .. }
            | Command::SettleTransfers { reply, .. }
            | Command::PurgeIdempotency { reply, .. } => {
                let _ = reply.send(outcome.and_then(|a| match a {
                    Answer::Swept(sweep) => Ok(sweep),
                    _ => Err(mismatch()),
                }));
            }
            Command::Webhook { reply, .. } => {
                let _ = reply.send(outcome.and_then(|a| match a {
                    Answer::Webhook(answer) => Ok(answer),
                    _ => Err(mismatch()),
                }));
            }
            Command::Stop => {}
        }
    }
}

/// Why a transaction could not be completed: an SQLite error, or an invariant the database
/// contradicts. Either way the whole transaction is rolled back.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    #[error("sqlite: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("{0}")]
    Invariant(String),
}

/// Most accounts whose balances the writer keeps in memory. Past this the cache is emptied
/// after a commit (simple, and a refill costs one indexed read per account).
const CACHE_ACCOUNTS_MAX: usize = 200_000;

/// One cached account: its row number (`accounts.num`), its balances and the sequence of
/// its newest journal entry (the head of its entry chain) as of the current transaction,
/// and whether they still have to be written back before the commit.
#[derive(Clone, Copy)]
struct Cached {
    num: i64,
    balances: Balances,
    last_entry: Option<i64>,
    dirty: bool,
}

/// The state owned by the writer thread.
pub(crate) struct Writer {
    conn: Connection,
    /// The rules decisions use. Merchant commands change them inside the transaction; the
    /// committed version is kept in `merchants_before` until the commit succeeds.
    rules: Rules,
    merchants_before: Option<MerchantRules>,
    /// Balances by account. Coherent because this thread is the only writer: every change
    /// to an account goes through here. Emptied on rollback.
    cache: HashMap<AccountId, Cached>,
    /// Accounts whose cached balances differ from their row in this transaction. Writing
    /// each once at the end of the batch (and not after every command) turns N updates of
    /// the system account per batch into one.
    dirty: Vec<AccountId>,
    system: AccountId,
    batch_max: usize,
    /// The checkpointer's connection until `run` starts its thread.
    checkpoint_conn: Option<Connection>,
}

/// Time between two passes of the background checkpointer. A pass copies every page
/// changed since the last one into the database file once, however often it changed, and
/// syncs the file, so longer intervals write less. `tests/throughput.rs` (10,000 accounts,
/// 64 callers, strict, 2 KiB pages; one noisy run each): every 20 ms wrote 9.6 KiB per
/// authorization (p99 19 ms), every 100 ms 8.1 KiB (p99 18 ms), every 250 ms 7.1 KiB (p99
/// 9 ms); the writer's own checkpoint every 10,000 pages wrote 7.3 KiB (p99 26-36 ms).
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

/// What the writer and the checkpointer share.
struct CheckpointState {
    /// `stop` (the writer is done) and `rewind` (the writer wants the WAL to start over).
    flags: Mutex<(bool, bool)>,
    wake: Condvar,
    /// WAL frames as of the last pass.
    wal_frames: AtomicI64,
    /// Bumped when, after a `rewind` request, a pass found at most [`REWIND_TAIL_FRAMES`]
    /// frames left to copy: the writer can now copy the rest quickly.
    caught_up: AtomicU64,
}

/// Frames the writer is willing to copy itself, between two batches, to rewind the WAL
/// (at 2 KiB pages, 256 KiB), then sync the database. The pause is that copy and sync:
/// traced (`perf record -e syscalls:sys_enter_fsync`, `bench/transfers.sh` strict), the
/// writer's sync of the database took 10-16 ms with 1024 frames and 1.6-2.7 ms with 128.
/// The checkpointer's back-to-back passes get that close: each copies what was committed
/// during the previous one, and at ~20k transfers/s a pass of a few milliseconds leaves a
/// tail well under 128 frames.
const REWIND_TAIL_FRAMES: i64 = 128;

/// Passes back to back at most, after a rewind request, before the writer is told to go
/// ahead anyway (if the checkpointer cannot catch up with the writer).
const REWIND_PASSES_MAX: u32 = 8;

/// The background checkpointer: the thread `payd-checkpoint` with its own connection,
/// running a PASSIVE checkpoint every [`CHECKPOINT_INTERVAL`] while the writer keeps
/// committing. Stopped and joined on drop.
///
/// Checkpoints used to run inside the writer's COMMIT every 10,000 pages (SQLite's
/// `wal_autocheckpoint`), and the copy and sync of up to 40 MiB stalled every command
/// queued behind it. `tests/throughput.rs` (10,000 accounts, 64 callers, 300,000
/// authorizations): p99 26-36 ms strict and 40-49 ms relaxed that way, 5.7 ms and 4.9 ms
/// with this checkpointer.
///
/// SQLite starts the WAL over only when a write transaction begins with every frame
/// already copied, which a busy writer never sees. So once the WAL holds
/// [`schema::WAL_RESTART_FRAMES`], the writer asks for a rewind: the checkpointer runs
/// passes back to back until one starts with at most [`REWIND_TAIL_FRAMES`] to copy, then
/// the writer copies the frames committed since (a short pause between two batches), and
/// its next BEGIN starts the WAL over.
struct Checkpointer {
    state: Arc<CheckpointState>,
    handle: Option<JoinHandle<()>>,
    /// `caught_up` when the writer asked for a rewind.
    rewind_asked: Option<u64>,
}

impl Checkpointer {
    /// Starts the thread; `None` (and a logged error) if it cannot be started, in which case
    /// the writer's `wal_autocheckpoint` safety net still bounds the WAL.
    fn start(conn: Connection) -> Option<Checkpointer> {
        let state = Arc::new(CheckpointState {
            flags: Mutex::new((false, false)),
            wake: Condvar::new(),
            wal_frames: AtomicI64::new(0),
            caught_up: AtomicU64::new(0),
        });
        let shared = Arc::clone(&state);
        let spawned = std::thread::Builder::new()
            .name("payd-checkpoint".to_owned())
            .spawn(move || Checkpointer::run(&conn, &shared));
        match spawned {
            Ok(handle) => Some(Checkpointer {
                state,
                handle: Some(handle),
                rewind_asked: None,
            }),
            Err(error) => {
                tracing::error!(target: "payd_sqlite", %error, "cannot start the checkpointer");
                None
            }
        }
    }

    fn run(conn: &Connection, state: &CheckpointState) {
        // WAL frames at the start of the previous pass, and passes since a rewind request.
        let mut previous: i64 = 0;
        let mut rewind_passes: u32 = 0;
        loop {
            let rewind = {
                let Ok(mut flags) = state.flags.lock() else {
                    return;
                };
                if !flags.0 && !flags.1 {
                    flags = match state.wake.wait_timeout(flags, CHECKPOINT_INTERVAL) {
                        Ok((flags, _)) => flags,
                        Err(_) => return,
                    };
                }
                if flags.0 {
                    return;
                }
                flags.1
            };
            // The lock is released: the writer never waits on a checkpoint's sync.
            let tail = match schema::checkpoint_passive(conn) {
                Ok(Some((frames, _))) => {
                    state.wal_frames.store(frames, Ordering::Relaxed);
                    // The previous pass copied everything up to `previous`, so this one
                    // started with `frames - previous` to copy (all if the WAL started over).
                    let tail = if frames >= previous {
                        frames - previous
                    } else {
                        frames
                    };
                    previous = frames;
                    tail
                }
                // The writer was rewinding the WAL.
                Ok(None) => i64::MAX,
                Err(error) => {
                    tracing::warn!(target: "payd_sqlite", %error, "background checkpoint failed");
                    // No retry storm (and no log storm) on a persistent error.
                    std::thread::sleep(CHECKPOINT_INTERVAL);
                    i64::MAX
                }
            };
            if rewind {
                rewind_passes += 1;
                if tail <= REWIND_TAIL_FRAMES || rewind_passes >= REWIND_PASSES_MAX {
                    rewind_passes = 0;
                    if let Ok(mut flags) = state.flags.lock() {
                        flags.1 = false;
                    }
                    state.caught_up.fetch_add(1, Ordering::Release);
                }
            }
        }
    }

    /// Called by the writer between batches (see the type's documentation).
    fn rewind_wal_if_due(&mut self, conn: &Connection) {
        if self.state.wal_frames.load(Ordering::Relaxed) < schema::WAL_RESTART_FRAMES {
            return;
        }
        let caught_up = self.state.caught_up.load(Ordering::Acquire);
        match self.rewind_asked {
            None => {
                self.rewind_asked = Some(caught_up);
                if let Ok(mut flags) = self.state.flags.lock() {
                    flags.1 = true;
                }
                self.state.wake.notify_all();
            }
            Some(asked) if caught_up > asked => match schema::checkpoint_passive(conn) {
                // The next BEGIN starts the WAL over.
                Ok(Some((frames, copied))) if frames == copied => {
                    self.state.wal_frames.store(0, Ordering::Relaxed);
                    self.rewind_asked = None;
                }
                // A reader still uses old frames, or the checkpointer is mid-pass: ask again.
                Ok(_) => self.rewind_asked = None,
                Err(error) => {
                    self.rewind_asked = None;
                    tracing::warn!(target: "payd_sqlite", %error, "checkpoint before rewinding the WAL failed");
                }
            },
            Some(_) => {}
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        if let Ok(mut flags) = self.state.flags.lock() {
            flags.0 = true;
        }
        self.state.wake.notify_all();
        if let Some(handle) = self.handle.take()
            && handle.join().is_err()
        {
            tracing::error!(target: "payd_sqlite", "the checkpointer panicked");
        }
    }
}

/// The gateway's transitions (leases and outcomes): work no request is waiting for.
fn is_background(command: &Command) -> bool {
    matches!(command, Command::Transitions { .. })
}

/// Moves the background commands out of `batch` (both keep their order) so that the requests
/// commit first, on their own: while the gateway drains a backlog, its outcome commits queue
/// up alongside each arriving request, and merged into one transaction they made the request
/// wait for all of them (in a 50 s outage-and-drain run, intake p99 during the drain went from
/// 4.0 / 9.2 / 11.2 ms to 3.0 / 4.8 / 5.0 ms, interleaved pairs). Commands queued together
/// were sent concurrently, none answered yet, so any order among them is a valid serial order.
fn take_background(batch: &mut Vec<Command>) -> Vec<Command> {
    if !batch.iter().any(is_background) {
        return Vec::new();
    }
    let (background, requests) = batch.drain(..).partition(is_background);
    *batch = requests;
    background
}

/// Clears the "writer alive" flag however the thread ends, panics included.
struct AliveGuard(Arc<AtomicBool>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn unavailable(reason: impl std::fmt::Display) -> LedgerError {
    LedgerError::Unavailable(reason.to_string())
}

impl Writer {
    /// `checkpoint` is a second read-write connection to the same database, for the
    /// background checkpointer (`schema::open_checkpointer`).
    pub(crate) fn new(
        conn: Connection,
        checkpoint: Connection,
        rules: Rules,
        batch_max: usize,
    ) -> Writer {
        Writer {
            conn,
            rules,
            merchants_before: None,
            cache: HashMap::new(),
            dirty: Vec::new(),
            system: system_account(),
            batch_max: batch_max.max(1),
            checkpoint_conn: Some(checkpoint),
        }
    }

    /// The thread's body: batches until the queue is closed and empty.
    pub(crate) fn run(mut self, mut queue: mpsc::Receiver<Command>, alive: Arc<AtomicBool>) {
        let _alive = AliveGuard(alive);
        // Stopped when this function returns, before the write connection closes.
        let mut checkpointer = self.checkpoint_conn.take().and_then(Checkpointer::start);
        let mut batch: Vec<Command> = Vec::with_capacity(self.batch_max);
        tracing::info!(target: "payd_sqlite", "writer started");
        while let Some(first) = queue.blocking_recv() {
            metrics::gauge!("payd_writer_queue_depth").set(queue.len() as f64);
            let mut next = Some(first);
            while let Some(command) = next.take() {
                match command {
                    // Refuse new commands (senders get an error), keep draining the queue.
                    Command::Stop => queue.close(),
                    command => batch.push(command),
                }
                if batch.len() < self.batch_max {
                    next = queue.try_recv().ok();
                }
            }
            let mut background = take_background(&mut batch);
            for part in [&mut batch, &mut background] {
                if part.is_empty() {
                    continue;
                }
                self.run_batch(part);
                if let Some(checkpointer) = &mut checkpointer {
                    checkpointer.rewind_wal_if_due(&self.conn);
                }
            }
        }
        tracing::info!(target: "payd_sqlite", "writer stopped");
    }

    /// Applies and commits `batch`, then answers every command in it.
    fn run_batch(&mut self, batch: &mut Vec<Command>) {
        let started = Instant::now();
        let now_ms = now_ms();
        match self.transaction(batch, now_ms) {
            Ok(answers) => {
                metrics::histogram!("payd_writer_batch_size").record(batch.len() as f64);
                metrics::histogram!("payd_writer_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!("payd_writer_commits_total").increment(1);
                for (command, answer) in batch.drain(..).zip(answers) {
                    command.reply(Ok(answer));
                }
            }
            Err(failure) => {
                metrics::counter!("payd_writer_failed_batches_total").increment(1);
                tracing::warn!(
                    target: "payd_sqlite",
                    error = %failure,
                    commands = batch.len(),
                    "group commit failed; retrying each command alone"
                );
                // Isolate the culprit: each command in its own transaction.
                for command in batch.drain(..) {
                    match self.transaction(std::slice::from_ref(&command), now_ms) {
                        Ok(mut answers) => match answers.pop() {
                            Some(answer) => command.reply(Ok(answer)),
                            None => command.reply(Err(unavailable("internal error: no answer"))),
                        },
                        Err(failure) => {
                            tracing::error!(target: "payd_sqlite", error = %failure, "command failed");
                            command.reply(Err(unavailable(failure)));
                        }
                    }
                }
            }
        }
    }

    /// One SQLite transaction over `commands`: all of them committed, or none and every
    /// in-memory effect undone.
    fn transaction(&mut self, commands: &[Command], now_ms: i64) -> Result<Vec<Answer>, Failure> {
        let result = self.apply_and_commit(commands, now_ms);
        match &result {
            Ok(_) => {
                self.merchants_before = None;
                if self.cache.len() > CACHE_ACCOUNTS_MAX {
                    self.cache.clear();
                }
            }
            Err(_) => {
                // Harmless if the failed COMMIT already rolled back.
                if let Err(error) = self.conn.execute_batch("ROLLBACK") {
                    tracing::debug!(target: "payd_sqlite", %error, "rollback");
                }
                self.cache.clear();
                self.dirty.clear();
                if let Some(merchants) = self.merchants_before.take() {
                    self.rules.merchants = merchants;
                }
            }
        }
        result
    }

    fn apply_and_commit(
        &mut self,
        commands: &[Command],
        now_ms: i64,
    ) -> Result<Vec<Answer>, Failure> {
        // IMMEDIATE: take the write lock now, not at the first write.
        self.conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let mut answers = Vec::with_capacity(commands.len());
        for command in commands {
            answers.push(self.apply(command, now_ms)?);
        }
        self.flush_balances()?;
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(answers)
    }

    fn apply(&mut self, command: &Command, now_ms: i64) -> Result<Answer, Failure> {
        Ok(match command {
            Command::Authorize { request, .. } => Answer::Code(self.authorize(request, now_ms)?),
            Command::OpenAccount { account, .. } => {
                Answer::Account(self.open_account(account, now_ms)?)
            }
            Command::Deposit { deposit, .. } => Answer::Deposit(self.deposit(deposit, now_ms)?),
            Command::PutMerchant {
                pattern, category, ..
            } => Answer::Flag(self.put_merchant(pattern, *category)?),
            Command::DeleteMerchant { pattern, .. } => Answer::Flag(self.delete_merchant(pattern)?),
            Command::AcceptPayment { payment, .. } => {
                Answer::Intake(self.accept_payment(payment, now_ms)?)
            }
            Command::Transitions { transitions, .. } => Answer::Applied(
                transitions
                    .iter()
                    .map(|change| self.transition(change, now_ms))
                    .collect::<Result<Vec<bool>, Failure>>()?,
            ),
            Command::PurgePayments { .. } => Answer::Count(payments::purge(&self.conn)?),
            Command::Execute {
                mutation, claim, ..
            } => Answer::Executed(self.execute(mutation, claim.as_ref(), now_ms)?),
            Command::ExpireHolds {
                now_ms: at_ms,
                limit,
                ..
            } => Answer::Swept(self.expire_holds(*at_ms, *limit, now_ms)?),
            Command::SettleTransfers { limit, .. } => {
                Answer::Swept(self.settle_transfers(*limit, now_ms)?)
            }
            Command::PurgeIdempotency {
                now_ms: at_ms,
                limit,
                ..
            } => Answer::Swept(wallet::purge_idempotency(&self.conn, *at_ms, *limit)?),
            Command::Webhook { command, .. } => {
                Answer::Webhook(crate::webhooks::apply(&self.conn, command, now_ms)?)
            }
            Command::Stop => Answer::Flag(false),
        })
    }

    // ---- commands --------------------------------------------------------------------

    fn authorize(&mut self, request: &AuthorizationRequest, now_ms: i64) -> Result<Code, Failure> {
        // The edge validates both; refusing here keeps the domain's debug assertions (and
        // the system account) out of reach of a buggy caller.
        if !request.amount.is_positive() || request.account.is_system() {
            return Ok(Code::Rejected);
        }
        let prior = match &request.id {
            Some(id) => self.prior_authorization(id.as_str())?,
            None => None,
        };
        // A replay or conflict never looks at balances.
        let balances = match prior {
            Some(_) => None,
            None => self.balances(&request.account)?,
        };
        let decision = decide(request, prior.as_ref(), balances.as_ref(), &self.rules);
        match decision {
            Decision::Replay(code) => Ok(code),
            Decision::IdConflict | Decision::UnknownAccount => Ok(Code::Rejected),
            Decision::Declined => {
                self.insert_transaction(request, Code::InsufficientFunds, None, now_ms)?;
                Ok(Code::InsufficientFunds)
            }
            Decision::Approved {
                category,
                balances: after,
            } => {
                // Every check before the first write.
                let system_after = self
                    .system_balances()?
                    .credit(category, request.amount)
                    .map_err(|_| {
                        Failure::Invariant("system account overflow on a card debit".to_owned())
                    })?;
                let seq =
                    self.insert_transaction(request, Code::Approved, Some(category), now_ms)?;
                // Client ids are printable ASCII without spaces, so `transaction <seq>` can
                // never be mistaken for one.
                let reference = match &request.id {
                    Some(id) => id.as_str().to_owned(),
                    None => format!("transaction {seq}"),
                };
                let system = self.system.clone();
                self.insert_movement(
                    &request.account,
                    &system,
                    category,
                    request.amount,
                    EntryCause::Transaction,
                    &reference,
                    now_ms,
                )?;
                self.set_balances(&request.account, after)?;
                self.set_balances(&system, system_after)?;
                Ok(Code::Approved)
            }
        }
    }

    fn open_account(
        &mut self,
        account: &NewAccount,
        now_ms: i64,
    ) -> Result<Result<AccountView, LedgerError>, Failure> {
        // System ids are taken by definition.
        if account.id.is_system() || self.balances(&account.id)?.is_some() {
            return Ok(Err(LedgerError::AccountExists));
        }
        let mut system_after = self.system_balances()?;
        for category in Category::ALL {
            let part = account.balances.get(category);
            if part.available.is_negative() || part.held != Amount::ZERO {
                return Ok(Err(unavailable(
                    "opening balances must be non-negative and not held",
                )));
            }
            system_after = match system_after.debit(category, part.available, true) {
                Ok(next) => next,
                Err(_) => return Ok(Err(LedgerError::BalanceOverflow)),
            };
        }
        let values = balance_values(&account.balances);
        self.conn
            .prepare_cached(
                "INSERT INTO accounts (id, food_available, food_held, meal_available, meal_held,
                                       cash_available, cash_held, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                account.id.as_str(),
                values[0],
                values[1],
                values[2],
                values[3],
                values[4],
                values[5],
                now_ms
            ])?;
        // The row was just written with these values: cached clean.
        self.cache.insert(
            account.id.clone(),
            Cached {
                num: self.conn.last_insert_rowid(),
                balances: account.balances,
                last_entry: None,
                dirty: false,
            },
        );
        let system = self.system.clone();
        for category in Category::ALL {
            let amount = account.balances.get(category).available;
            if amount.is_positive() {
                self.insert_movement(
                    &system,
                    &account.id,
                    category,
                    amount,
                    EntryCause::Opening,
                    account.id.as_str(),
                    now_ms,
                )?;
            }
        }
        self.set_balances(&system, system_after)?;
        Ok(Ok(AccountView {
            id: account.id.clone(),
            balances: account.balances,
        }))
    }

    fn deposit(
        &mut self,
        deposit: &DepositRequest,
        now_ms: i64,
    ) -> Result<Result<DepositReceipt, LedgerError>, Failure> {
        if wallet::header_key_claimed(&self.conn, deposit.key.as_str())? {
            return Ok(Err(LedgerError::IdempotencyKeyReused));
        }
        if let Some(first) = self.prior_deposit(deposit)? {
            let same_body = first.account == deposit.account
                && first.category == deposit.category
                && first.amount == deposit.amount;
            return Ok(if same_body {
                Ok(first)
            } else {
                Err(LedgerError::IdempotencyKeyReused)
            });
        }
        if !deposit.amount.is_positive() {
            return Ok(Err(unavailable("deposit amount must be positive")));
        }
        if deposit.account.is_system() {
            return Ok(Err(LedgerError::AccountNotFound));
        }
        let Some(balances) = self.balances(&deposit.account)? else {
            return Ok(Err(LedgerError::AccountNotFound));
        };
        let overflow = |_: MovementError| LedgerError::BalanceOverflow;
        let after = match balances
            .credit(deposit.category, deposit.amount)
            .map_err(overflow)
        {
            Ok(after) => after,
            Err(error) => return Ok(Err(error)),
        };
        let system_after = match self
            .system_balances()?
            .debit(deposit.category, deposit.amount, true)
            .map_err(overflow)
        {
            Ok(after) => after,
            Err(error) => return Ok(Err(error)),
        };
        let available_after = after.get(deposit.category).available;
        self.conn
            .prepare_cached(
                "INSERT INTO deposits (key, account, category, amount_cents, available_after_cents, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                deposit.key.as_str(),
                deposit.account.as_str(),
                deposit.category.as_str(),
                deposit.amount.cents(),
                available_after.cents(),
                now_ms
            ])?;
        let system = self.system.clone();
        self.insert_movement(
            &system,
            &deposit.account,
            deposit.category,
            deposit.amount,
            EntryCause::Deposit,
            deposit.key.as_str(),
            now_ms,
        )?;
        self.set_balances(&deposit.account, after)?;
        self.set_balances(&system, system_after)?;
        Ok(Ok(DepositReceipt {
            key: deposit.key.clone(),
            account: deposit.account.clone(),
            category: deposit.category,
            amount: deposit.amount,
            available_after,
            created_at_ms: now_ms,
            replayed: false,
        }))
    }

    fn put_merchant(
        &mut self,
        pattern: &MerchantPattern,
        category: Category,
    ) -> Result<bool, Failure> {
        let text = pattern.to_string();
        let existed = self
            .conn
            .prepare_cached("SELECT 1 FROM merchants WHERE pattern = ?1")?
            .query_row([&text], |_| Ok(()))
            .optional()?
            .is_some();
        self.conn
            .prepare_cached(
                "INSERT INTO merchants (pattern, category) VALUES (?1, ?2)
                 ON CONFLICT (pattern) DO UPDATE SET category = excluded.category",
            )?
            .execute([text.as_str(), category.as_str()])?;
        self.backup_merchants();
        self.rules.merchants.insert(pattern.clone(), category);
        Ok(!existed)
    }

    fn delete_merchant(&mut self, pattern: &MerchantPattern) -> Result<bool, Failure> {
        let deleted = self
            .conn
            .prepare_cached("DELETE FROM merchants WHERE pattern = ?1")?
            .execute([pattern.to_string()])?;
        if deleted > 0 {
            self.backup_merchants();
            self.rules.merchants.remove(pattern);
        }
        Ok(deleted > 0)
    }

    // ---- state helpers ---------------------------------------------------------------

    /// Keeps the committed merchant table before the first change of a transaction.
    fn backup_merchants(&mut self) {
        if self.merchants_before.is_none() {
            self.merchants_before = Some(self.rules.merchants.clone());
        }
    }

    /// An account's balances as of this transaction; `None` if it does not exist. Loads
    /// the account into the cache, which every later step of the command relies on.
    fn balances(&mut self, id: &AccountId) -> Result<Option<Balances>, Failure> {
        if let Some(cached) = self.cache.get(id) {
            return Ok(Some(cached.balances));
        }
        let loaded = self
            .conn
            .prepare_cached(
                "SELECT num, food_available, food_held, meal_available, meal_held,
                        cash_available, cash_held, last_entry FROM accounts WHERE id = ?1",
            )?
            .query_row([id.as_str()], |row| {
                Ok(Cached {
                    num: row.get(0)?,
                    balances: balances_from_row(row, 1)?,
                    last_entry: row.get(7)?,
                    dirty: false,
                })
            })
            .optional()?;
        Ok(loaded.map(|cached| {
            self.cache.insert(id.clone(), cached);
            cached.balances
        }))
    }

    fn system_balances(&mut self) -> Result<Balances, Failure> {
        let system = self.system.clone();
        self.balances(&system)?
            .ok_or_else(|| Failure::Invariant("the system account is missing".to_owned()))
    }

    /// The cached entry of an account loaded by [`Writer::balances`] in this transaction.
    fn cached(&mut self, id: &AccountId) -> Result<&mut Cached, Failure> {
        self.cache
            .get_mut(id)
            .ok_or_else(|| Failure::Invariant(format!("account {id} is not loaded")))
    }

    /// Records new balances for `id` (loaded by [`Writer::balances`] in this transaction),
    /// written back by [`Writer::flush_balances`].
    fn set_balances(&mut self, id: &AccountId, balances: Balances) -> Result<(), Failure> {
        let cached = self.cached(id)?;
        cached.balances = balances;
        if !cached.dirty {
            cached.dirty = true;
            self.dirty.push(id.clone());
        }
        Ok(())
    }

    /// Links a new journal entry at the head of `id`'s chain; returns the previous head.
    /// The account row is written back by [`Writer::flush_balances`].
    fn push_entry(&mut self, id: &AccountId, sequence: i64) -> Result<Option<i64>, Failure> {
        let cached = self.cached(id)?;
        let prev = cached.last_entry.replace(sequence);
        if !cached.dirty {
            cached.dirty = true;
            self.dirty.push(id.clone());
        }
        Ok(prev)
    }

    /// Writes every balance changed in this transaction, once per account.
    fn flush_balances(&mut self) -> Result<(), Failure> {
        let mut statement = self.conn.prepare_cached(
            "UPDATE accounts SET food_available = ?2, food_held = ?3, meal_available = ?4,
                                 meal_held = ?5, cash_available = ?6, cash_held = ?7,
                                 last_entry = ?8
             WHERE num = ?1",
        )?;
        for id in self.dirty.drain(..) {
            let Some(cached) = self.cache.get_mut(&id) else {
                return Err(Failure::Invariant(format!(
                    "dirty account {id} left the cache"
                )));
            };
            cached.dirty = false;
            let v = balance_values(&cached.balances);
            let updated = statement.execute(params![
                cached.num,
                v[0],
                v[1],
                v[2],
                v[3],
                v[4],
                v[5],
                cached.last_entry
            ])?;
            if updated != 1 {
                return Err(Failure::Invariant(format!("account {id} vanished")));
            }
        }
        Ok(())
    }

    fn prior_authorization(&mut self, id: &str) -> Result<Option<PriorAuthorization>, Failure> {
        let row = self
            .conn
            .prepare_cached("SELECT account, amount_cents, mcc, merchant, code FROM transactions WHERE client_id = ?1")?
            .query_row([id], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, u16>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                ))
            })
            .optional()?;
        let Some((account, amount_cents, mcc, merchant, code)) = row else {
            return Ok(None);
        };
        Ok(Some(PriorAuthorization {
            account: schema::account_from_text(&account)?,
            amount: Amount::from_cents(amount_cents),
            mcc: Mcc::from_code(mcc).ok_or_else(|| schema::corrupt("mcc", &mcc.to_string()))?,
            merchant,
            code: Code::parse(&code).ok_or_else(|| schema::corrupt("code", &code))?,
        }))
    }

    fn prior_deposit(
        &mut self,
        deposit: &DepositRequest,
    ) -> Result<Option<DepositReceipt>, Failure> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT account, category, amount_cents, available_after_cents, created_at_ms
                 FROM deposits WHERE key = ?1",
            )?
            .query_row([deposit.key.as_str()], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, i64>(4)?,
                ))
            })
            .optional()?;
        let Some((account, category, amount, available_after, created_at_ms)) = row else {
            return Ok(None);
        };
        Ok(Some(DepositReceipt {
            key: deposit.key.clone(),
            account: schema::account_from_text(&account)?,
            category: schema::category_from_text(&category)?,
            amount: Amount::from_cents(amount),
            available_after: Amount::from_cents(available_after),
            created_at_ms,
            replayed: true,
        }))
    }

    /// Records a decided card transaction; returns its sequence number.
    fn insert_transaction(
        &mut self,
        request: &AuthorizationRequest,
        code: Code,
        category: Option<Category>,
        now_ms: i64,
    ) -> Result<i64, Failure> {
        let mut statement = self.conn.prepare_cached(
            "INSERT INTO transactions (client_id, account, amount_cents, mcc, merchant, code, category, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        statement.execute(params![
            request.id.as_ref().map(|id| id.as_str()),
            request.account.as_str(),
            request.amount.cents(),
            request.mcc.code(),
            request.merchant,
            code.as_str(),
            category.map(Category::as_str),
            now_ms
        ])?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The two entries of one movement (domain [`movement`]); balances are the caller's.
    #[allow(clippy::too_many_arguments)]
    fn insert_movement(
        &mut self,
        source: &AccountId,
        target: &AccountId,
        category: Category,
        amount: Amount,
        cause: EntryCause,
        reference: &str,
        now_ms: i64,
    ) -> Result<(), Failure> {
        self.insert_entries(
            &movement(source, target, category, amount),
            cause,
            reference,
            now_ms,
        )
    }

    /// Journal rows for `entries`, whose accounts are loaded. One execution of a one-row
    /// INSERT per entry rather than one multi-row INSERT: a statement that may write
    /// several rows and abort on a CHECK needs a statement journal, which cost more.
    fn insert_entries(
        &mut self,
        entries: &[Entry],
        cause: EntryCause,
        reference: &str,
        now_ms: i64,
    ) -> Result<(), Failure> {
        for entry in entries {
            let (num, prev) = match self.cache.get(&entry.account) {
                Some(cached) => (cached.num, cached.last_entry),
                None => {
                    return Err(Failure::Invariant(format!(
                        "account {} is not loaded",
                        entry.account
                    )));
                }
            };
            self.conn
                .prepare_cached(
                    "INSERT INTO entries (account, category, bucket, amount_cents, cause, reference,
                                          created_at_ms, prev)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    num,
                    entry.category.as_str(),
                    i64::from(entry.bucket == Bucket::Held),
                    entry.amount.cents(),
                    cause.as_str(),
                    reference,
                    now_ms,
                    prev
                ])?;
            let sequence = self.conn.last_insert_rowid();
            self.push_entry(&entry.account, sequence)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{Command, take_background};
    use tokio::sync::oneshot;

    fn transitions() -> Command {
        Command::Transitions {
            transitions: Vec::new(),
            reply: oneshot::channel().0,
        }
    }

    fn request(limit: u32) -> Command {
        Command::SettleTransfers {
            limit,
            reply: oneshot::channel().0,
        }
    }

    fn limits(batch: &[Command]) -> Vec<u32> {
        batch
            .iter()
            .filter_map(|c| match c {
                Command::SettleTransfers { limit, .. } => Some(*limit),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn requests_commit_before_the_gateways_transitions_in_their_order() {
        let mut batch = vec![
            transitions(),
            request(1),
            transitions(),
            request(2),
            request(3),
        ];
        let background = take_background(&mut batch);
        assert_eq!(limits(&batch), vec![1, 2, 3]);
        assert_eq!(batch.len(), 3);
        assert_eq!(background.len(), 2);
        assert!(
            background
                .iter()
                .all(|c| matches!(c, Command::Transitions { .. }))
        );
    }

    #[test]
    fn a_batch_of_one_kind_stays_whole() {
        let mut requests = vec![request(1), request(2)];
        assert!(take_background(&mut requests).is_empty());
        assert_eq!(limits(&requests), vec![1, 2]);
        let mut gateway = vec![transitions(), transitions()];
        assert_eq!(take_background(&mut gateway).len(), 2);
        assert!(gateway.is_empty());
    }
}
