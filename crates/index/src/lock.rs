//! The writer's exclusive lock: `writer.lock` in the index directory, held with an OS file lock
//! (`File::try_lock`) for the writer's lifetime. The lock dies with the process (even on kill -9),
//! so a stale lock file never blocks the next writer.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use super::error::IndexError;

pub(crate) const LOCK_FILE: &str = "writer.lock";

/// Held while a writer is alive; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct WriterLock {
    _file: File,
}

/// Take the lock of `dir`, or fail at once with [`IndexError::Locked`].
pub(crate) fn acquire(dir: &Path) -> Result<WriterLock, IndexError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| IndexError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(WriterLock { _file: file }),
        Err(TryLockError::WouldBlock) => Err(IndexError::Locked(dir.to_path_buf())),
        Err(TryLockError::Error(e)) => Err(IndexError::io(&path, e)),
    }
}

/// Whether a writer holds the lock of `dir` now (a build in progress).
pub(crate) fn is_held(dir: &Path) -> bool {
    let Ok(file) = File::open(dir.join(LOCK_FILE)) else {
        return false;
    };
    matches!(file.try_lock_shared(), Err(TryLockError::WouldBlock))
}
