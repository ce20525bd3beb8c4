//! The background checkpointer: copies the WAL into the database on a connection of its
//! own, so checkpoints never run inside the writer's COMMIT, and lets the writer rewind the
//! WAL between batches with a short pause.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use crate::schema;

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
pub(super) struct Checkpointer {
    state: Arc<CheckpointState>,
    handle: Option<JoinHandle<()>>,
    /// `caught_up` when the writer asked for a rewind.
    rewind_asked: Option<u64>,
}

impl Checkpointer {
    /// Starts the thread; `None` (and a logged error) if it cannot be started, in which case
    /// the writer's `wal_autocheckpoint` safety net still bounds the WAL.
    pub(super) fn start(conn: Connection) -> Option<Checkpointer> {
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
    pub(super) fn rewind_wal_if_due(&mut self, conn: &Connection) {
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
