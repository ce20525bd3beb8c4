//! Time for the engine.

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Milliseconds since the Unix epoch, as the engine sees them.
pub trait Clock: Send + Sync + 'static {
    /// Now, in ms since the epoch.
    fn now_ms(&self) -> i64;
}

/// The wall clock read once at start, then advanced by tokio's monotonic clock. Monotonic
/// (a wall-clock step backwards cannot reorder due times) and, in tests under
/// `tokio::time::pause`, controlled by `advance`.
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    start_ms: i64,
    start: Instant,
}

impl TokioClock {
    /// Starts at the current wall-clock time.
    pub fn new() -> TokioClock {
        let start_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        TokioClock::starting_at(start_ms)
    }

    /// Starts at `start_ms` (tests).
    pub fn starting_at(start_ms: i64) -> TokioClock {
        TokioClock {
            start_ms,
            start: Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> TokioClock {
        TokioClock::new()
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> i64 {
        let elapsed_ms = i64::try_from(self.start.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.start_ms.saturating_add(elapsed_ms)
    }
}
