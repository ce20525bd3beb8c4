//! The data directory's lock: one process per embedded store.
//!
//! The store's guarantees rest on its writer thread being the only writer (one decision per
//! account at a time, the balance cache, the outbox order, taking over every payment in
//! flight at start). A second `payd serve` on the same directory would break all of them,
//! so opening takes an exclusive advisory lock on `payd.lock` (`flock`), held until the
//! store is dropped; the operating system releases it when the process dies, however it
//! dies. (Readers such as `payd audit` do not take it.)

use std::fs::{File, OpenOptions};
use std::path::Path;

/// Holds the lock until dropped.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock, failing at once if another process holds it.
    pub(crate) fn acquire(path: &Path) -> std::io::Result<DirLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        lock_exclusive(&file).map_err(|error| {
            if error.kind() == std::io::ErrorKind::WouldBlock {
                std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    "another payd process has this data directory open",
                )
            } else {
                error
            }
        })?;
        Ok(DirLock { _file: file })
    }
}

#[cfg(unix)]
fn lock_exclusive(file: &File) -> std::io::Result<()> {
    rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .map_err(std::io::Error::from)
}

#[cfg(not(unix))]
fn lock_exclusive(file: &File) -> std::io::Result<()> {
    file.try_lock().map_err(|error| match error {
        std::fs::TryLockError::WouldBlock => std::io::ErrorKind::WouldBlock.into(),
        std::fs::TryLockError::Error(error) => error,
    })
}
