//! The writers: tasks that apply the command layer's commands in batches, one PostgreSQL
//! transaction per batch.
//!
//! Each writer takes the first queued command, then whatever else is queued up to
//! `batch_max`, and applies them in one transaction ([`PgTx`]): one prefetch, the commands
//! in memory, one bulk flush, one COMMIT, then every answer. So a hot account costs one
//! commit per batch, not one per request. Commands for one account always go to the same
//! writer (the route is a hash of the account), so they batch together.
//!
//! A batch that fails:
//! - on a lock conflict (deadlock, serialization failure, a unique key another process
//!   just took, a statement timeout) is retried whole, after a short jittered pause, up to
//!   [`CONFLICT_RETRIES`] times: two processes' batches racing is not the client's
//!   failure;
//! - because the database cannot be reached, answers every command `Unavailable` (nothing
//!   was acknowledged; the pool reconnects by itself);
//! - for any other reason (a command the data contradicts), is run again one command per
//!   transaction, so only the command that fails by itself is answered `Unavailable`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use payd_ledger::{Answer, Command, Failure, fail_all};
use payd_ports::Clock;
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;

use crate::tx::{PgTx, WriterState};

/// Most retries of a batch that lost a lock conflict before its commands are answered
/// `Unavailable` (each retry waits a little longer: about 1.5 s in all).
pub(crate) const CONFLICT_RETRIES: u32 = 24;

/// What went wrong with a batch, for what to do next.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    /// Another transaction won a race: retry.
    Conflict,
    /// The database is unreachable: answer everyone, retry nothing.
    Connection,
    /// Anything else: isolate the command that fails.
    Other,
}

/// Reads the PostgreSQL error behind a failure (see `payd_ledger::Failure`).
fn kind(failure: &Failure) -> Kind {
    let Some(source) = failure.source() else {
        return Kind::Other;
    };
    if source
        .downcast_ref::<deadpool_postgres::PoolError>()
        .is_some()
    {
        return Kind::Connection;
    }
    let Some(error) = source.downcast_ref::<tokio_postgres::Error>() else {
        return Kind::Other;
    };
    if error.is_closed() {
        return Kind::Connection;
    }
    match error.code() {
        Some(code)
            if *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::UNIQUE_VIOLATION
                || *code == SqlState::QUERY_CANCELED
                || *code == SqlState::LOCK_NOT_AVAILABLE =>
        {
            Kind::Conflict
        }
        Some(code)
            if *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW =>
        {
            Kind::Connection
        }
        Some(_) => Kind::Other,
        // No SQL state: an I/O error, the connection broke.
        None => Kind::Connection,
    }
}

/// Which of a batch's three transactions a command goes into: requests first (someone
/// waits on them), then the sweeps (they lock many rows), then the gateway's bookkeeping.
fn class(command: &Command) -> usize {
    match command {
        Command::ExpireHolds { .. }
        | Command::SettleTransfers { .. }
        | Command::SettleFenced { .. }
        | Command::PurgeIdempotency { .. } => 1,
        command if command.is_background() => 2,
        _ => 0,
    }
}

/// A jittered pause that doubles with the retries: 2 to 4 ms after the first, up to 64 to
/// 128 ms. `jitter` is a xorshift state: the pauses of racing writers must differ, not be
/// unpredictable.
fn pause(jitter: &mut u64, retries: u32) -> Duration {
    *jitter ^= *jitter << 13;
    *jitter ^= *jitter >> 7;
    *jitter ^= *jitter << 17;
    let base_us = 1_000_u64 << retries.clamp(1, 6);
    Duration::from_micros(base_us + *jitter % base_us)
}

/// One writer task's state.
pub(crate) struct Writer {
    pub(crate) pool: Pool,
    pub(crate) state: WriterState,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) batch_max: usize,
    /// Cleared when the database cannot be reached (the store's readiness).
    pub(crate) ready: Arc<AtomicBool>,
    /// Randomness for the retry pauses.
    pub(crate) jitter: u64,
}

impl Writer {
    /// Batches until the queue is closed and empty.
    pub(crate) async fn run(mut self, mut queue: mpsc::Receiver<Command>) {
        let mut parts: [Vec<Command>; 3] = Default::default();
        while let Some(first) = queue.recv().await {
            metrics::gauge!("payd_writer_queue_depth").set(queue.len() as f64);
            let mut taken = 1;
            parts[class(&first)].push(first);
            while taken < self.batch_max {
                match queue.try_recv() {
                    Ok(command) => {
                        parts[class(&command)].push(command);
                        taken += 1;
                    }
                    Err(_) => break,
                }
            }
            for part in &mut parts {
                if !part.is_empty() {
                    self.run_batch(std::mem::take(part)).await;
                }
            }
        }
    }

    async fn run_batch(&mut self, batch: Vec<Command>) {
        let started = Instant::now();
        match self.attempt(&batch).await {
            Ok(answers) => {
                metrics::histogram!("payd_writer_batch_size").record(batch.len() as f64);
                metrics::histogram!("payd_writer_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!("payd_writer_commits_total").increment(1);
                for (command, answer) in batch.into_iter().zip(answers) {
                    command.answer(answer);
                }
            }
            Err(failure) => {
                metrics::counter!("payd_writer_failed_batches_total").increment(1);
                if batch.len() == 1 || kind(&failure) != Kind::Other {
                    tracing::warn!(target: "payd_postgres", error = %failure, commands = batch.len(), "batch failed");
                    fail_all(batch, failure.into_store_failure());
                    return;
                }
                tracing::warn!(
                    target: "payd_postgres",
                    error = %failure,
                    commands = batch.len(),
                    "batch failed; retrying each command alone"
                );
                for command in batch {
                    let single = [command];
                    match self.attempt(&single).await {
                        Ok(mut answers) => {
                            let [command] = single;
                            match answers.pop() {
                                Some(answer) => command.answer(answer),
                                None => command.fail(payd_ports::StoreFailure::message(
                                    "internal error: no answer",
                                )),
                            }
                        }
                        Err(failure) => {
                            tracing::error!(target: "payd_postgres", error = %failure, "command failed");
                            let [command] = single;
                            command.fail(failure.into_store_failure());
                        }
                    }
                }
            }
        }
    }

    /// Runs `batch` in one transaction, retrying it whole after lock conflicts.
    async fn attempt(&mut self, batch: &[Command]) -> Result<Vec<Answer>, Failure> {
        let mut retries = 0;
        loop {
            let result = self.transaction(batch).await;
            let failure = match result {
                Ok(answers) => {
                    self.ready.store(true, Ordering::Release);
                    return Ok(answers);
                }
                Err(failure) => failure,
            };
            // The rules may hold the failed batch's merchant changes: reload them.
            self.state.merchant_version = -1;
            match kind(&failure) {
                Kind::Conflict if retries < CONFLICT_RETRIES => {
                    retries += 1;
                    metrics::counter!("payd_pg_conflict_retries_total").increment(1);
                    tracing::debug!(target: "payd_postgres", error = %failure, retries, "lock conflict; retrying the batch");
                    tokio::time::sleep(pause(&mut self.jitter, retries)).await;
                }
                Kind::Connection => {
                    self.ready.store(false, Ordering::Release);
                    return Err(failure);
                }
                _ => return Err(failure),
            }
        }
    }

    async fn transaction(&mut self, batch: &[Command]) -> Result<Vec<Answer>, Failure> {
        let now_ms = self.clock.now_ms();
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let mut tx = PgTx::new(transaction, &mut self.state, now_ms);
        let commands: Vec<&Command> = batch.iter().collect();
        tx.prefetch(&commands).await?;
        let mut answers = Vec::with_capacity(batch.len());
        for command in batch {
            answers.push(payd_ledger::apply(&mut tx, command).await?);
        }
        tx.commit().await?;
        Ok(answers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_are_jittered_and_bounded() {
        let mut jitter = 0x9e37_79b9_7f4a_7c15;
        let first = pause(&mut jitter, 1).as_micros();
        assert!((2_000..4_000).contains(&first), "{first}");
        let second = pause(&mut jitter, 2).as_micros();
        assert!((4_000..8_000).contains(&second), "{second}");
        for retries in [6, 24, u32::MAX] {
            let last = pause(&mut jitter, retries).as_micros();
            assert!((64_000..128_000).contains(&last), "{last}");
        }
        let (a, b) = (pause(&mut jitter, 3), pause(&mut jitter, 3));
        assert_ne!(a, b, "jittered");
    }

    #[test]
    fn sweeps_and_bookkeeping_commit_apart_from_requests() {
        let (reply, _) = tokio::sync::oneshot::channel();
        assert_eq!(class(&Command::SettleTransfers { limit: 1, reply }), 1);
        let (reply, _) = tokio::sync::oneshot::channel();
        assert_eq!(
            class(&Command::Transitions {
                transitions: Vec::new(),
                reply
            }),
            2
        );
        let (reply, _) = tokio::sync::oneshot::channel();
        assert_eq!(class(&Command::PurgePayments { reply }), 0);
    }
}
