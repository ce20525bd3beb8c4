//! The writer thread: the only write connection and the sequencer of every command.
//!
//! Commands arrive over a bounded channel. The writer takes the first one (blocking), then
//! whatever else is already queued up to `batch_max`, applies them one after the other in a
//! single SQLite transaction, commits once (one fsync in strict mode: group commit), and only
//! then answers each command. Because one thread applies every command in order, "one
//! decision per account at a time" holds without any lock, and each command sees the effects
//! of the ones before it in the same batch (same connection, same transaction).
//!
//! The decisions are the command layer's (`payd_ledger::apply`, over [`tx::SqliteTx`]);
//! this module is the batch loop and the transaction around it. If a batch fails, it is
//! rolled back, every in-memory cache is dropped, and each of its commands is re-run in a
//! transaction of its own, so that only a command that fails by itself is answered
//! `Unavailable`.
//!
//! - `checkpoint`: the background checkpointer, which keeps checkpoints out of COMMIT.
//! - `tx`: [`tx::SqliteTx`], the command layer's transaction on the write connection, and
//!   the state the writer keeps across transactions (the balance cache, the rules).

mod checkpoint;
pub(crate) mod tx;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use payd_domain::Rules;
use payd_ledger::{Answer, Command, Failure, take_background};
use payd_ports::{Clock, LedgerError, StoreFailure};
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use checkpoint::Checkpointer;
use tx::WriterState;

/// What the store asks of the writer.
pub(crate) enum Job {
    /// A command of the command layer.
    Ledger(Command),
    /// A webhook delivery command (SQLite's own bookkeeping, outside the command layer).
    Webhook {
        command: crate::webhooks::WebhookCommand,
        reply: oneshot::Sender<Result<crate::webhooks::WebhookAnswer, LedgerError>>,
    },
    /// Sent by `shutdown`: close the queue, finish what is in it, exit.
    Stop,
}

/// A job of a batch: the ledger commands are applied by the command layer.
enum Pending {
    Ledger(Command),
    Webhook {
        command: crate::webhooks::WebhookCommand,
        reply: oneshot::Sender<Result<crate::webhooks::WebhookAnswer, LedgerError>>,
    },
}

/// What a pending job decided, answered once the commit is known good.
enum Decided {
    Ledger(Answer),
    Webhook(crate::webhooks::WebhookAnswer),
}

impl Pending {
    fn answer(self, decided: Decided) {
        match (self, decided) {
            (Pending::Ledger(command), Decided::Ledger(answer)) => command.answer(answer),
            (Pending::Webhook { reply, .. }, Decided::Webhook(answer)) => {
                let _ = reply.send(Ok(answer));
            }
            (pending, _) => pending.fail(StoreFailure::message(
                "internal error: an answer of another command",
            )),
        }
    }

    fn fail(self, failure: StoreFailure) {
        match self {
            Pending::Ledger(command) => command.fail(failure),
            Pending::Webhook { reply, .. } => {
                let _ = reply.send(Err(failure.into()));
            }
        }
    }
}

/// Clears the "writer alive" flag however the thread ends, panics included.
struct AliveGuard(Arc<AtomicBool>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The writer: its state, its bounds and the checkpointer's connection.
pub(crate) struct Writer {
    state: WriterState,
    clock: Arc<dyn Clock>,
    batch_max: usize,
    /// The checkpointer's connection until `run` starts its thread.
    checkpoint_conn: Option<Connection>,
}

impl Writer {
    /// `checkpoint` is a second read-write connection to the same database, for the
    /// background checkpointer (`schema::open_checkpointer`); `instance` is recorded as
    /// the lease owner of the payments this process dispatches.
    pub(crate) fn new(
        conn: Connection,
        checkpoint: Connection,
        rules: Rules,
        batch_max: usize,
        clock: Arc<dyn Clock>,
        instance: String,
    ) -> Writer {
        Writer {
            state: WriterState::new(conn, rules, instance),
            clock,
            batch_max: batch_max.max(1),
            checkpoint_conn: Some(checkpoint),
        }
    }

    /// The thread's body: batches until the queue is closed and empty.
    pub(crate) fn run(mut self, mut queue: mpsc::Receiver<Job>, alive: Arc<AtomicBool>) {
        let _alive = AliveGuard(alive);
        // Stopped when this function returns, before the write connection closes.
        let mut checkpointer = self.checkpoint_conn.take().and_then(Checkpointer::start);
        let mut commands: Vec<Command> = Vec::with_capacity(self.batch_max);
        let mut webhooks: Vec<Pending> = Vec::new();
        tracing::info!(target: "payd_sqlite", "writer started");
        while let Some(first) = queue.blocking_recv() {
            metrics::gauge!("payd_writer_queue_depth").set(queue.len() as f64);
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match job {
                    // Refuse new commands (senders get an error), keep draining the queue.
                    Job::Stop => queue.close(),
                    Job::Ledger(command) => commands.push(command),
                    Job::Webhook { command, reply } => {
                        webhooks.push(Pending::Webhook { command, reply });
                    }
                }
                if commands.len() + webhooks.len() < self.batch_max {
                    next = queue.try_recv().ok();
                }
            }
            // Requests first, alone; then the gateway's bookkeeping and the webhooks'.
            let background = take_background(&mut commands);
            let requests: Vec<Pending> = commands.drain(..).map(Pending::Ledger).collect();
            let mut rest: Vec<Pending> = background.into_iter().map(Pending::Ledger).collect();
            rest.append(&mut webhooks);
            for part in [requests, rest] {
                if part.is_empty() {
                    continue;
                }
                self.run_batch(part);
                if let Some(checkpointer) = &mut checkpointer {
                    checkpointer.rewind_wal_if_due(&self.state.conn);
                }
            }
        }
        tracing::info!(target: "payd_sqlite", "writer stopped");
    }

    /// Applies and commits `batch`, then answers every job in it.
    fn run_batch(&mut self, batch: Vec<Pending>) {
        let started = Instant::now();
        let now_ms = self.clock.now_ms();
        match self.transaction(&batch, now_ms) {
            Ok(decided) => {
                metrics::histogram!("payd_writer_batch_size").record(batch.len() as f64);
                metrics::histogram!("payd_writer_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!("payd_writer_commits_total").increment(1);
                for (pending, decided) in batch.into_iter().zip(decided) {
                    pending.answer(decided);
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
                for pending in batch {
                    match self.transaction(std::slice::from_ref(&pending), now_ms) {
                        Ok(mut decided) => match decided.pop() {
                            Some(decided) => pending.answer(decided),
                            None => {
                                pending.fail(StoreFailure::message("internal error: no answer"))
                            }
                        },
                        Err(failure) => {
                            tracing::error!(target: "payd_sqlite", error = %failure, "command failed");
                            pending.fail(failure.into_store_failure());
                        }
                    }
                }
            }
        }
    }

    /// One SQLite transaction over `batch`: all of it committed, or none and every
    /// in-memory effect undone.
    fn transaction(&mut self, batch: &[Pending], now_ms: i64) -> Result<Vec<Decided>, Failure> {
        let result = self.apply_and_commit(batch, now_ms);
        match &result {
            Ok(_) => self.state.committed(),
            Err(_) => {
                // Harmless if the failed COMMIT already rolled back.
                if let Err(error) = self.state.conn.execute_batch("ROLLBACK") {
                    tracing::debug!(target: "payd_sqlite", %error, "rollback");
                }
                self.state.rolled_back();
            }
        }
        result
    }

    fn apply_and_commit(
        &mut self,
        batch: &[Pending],
        now_ms: i64,
    ) -> Result<Vec<Decided>, Failure> {
        // IMMEDIATE: take the write lock now, not at the first write.
        self.state
            .conn
            .prepare_cached("BEGIN IMMEDIATE")?
            .execute([])?;
        let mut decided = Vec::with_capacity(batch.len());
        for pending in batch {
            decided.push(match pending {
                Pending::Ledger(command) => {
                    let mut tx = self.state.tx(now_ms);
                    Decided::Ledger(crate::ready::block_on(payd_ledger::apply(
                        &mut tx, command,
                    ))?)
                }
                Pending::Webhook { command, .. } => {
                    Decided::Webhook(crate::webhooks::apply(&self.state.conn, command, now_ms)?)
                }
            });
        }
        self.state.flush_balances()?;
        self.state.conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(decided)
    }
}
