//! Per-stack locks: an OS file lock per stack under the state dir, so two berth
//! processes (or two threads) never run compose on the same project at once.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot open lock file {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("stack `{stack}` is being deployed by another berth process (lock {path} held for {}s)", waited.as_secs())]
    Busy { stack: String, path: PathBuf, waited: Duration },
}

/// Held while a stack deploys; released on drop (and by the OS if berth dies).
#[derive(Debug)]
pub struct StackLock {
    _file: File,
}

fn path(state_dir: &Path, stack: &str) -> PathBuf {
    state_dir.join("locks").join(format!("{stack}.lock"))
}

fn open(state_dir: &Path, stack: &str) -> Result<(File, PathBuf), LockError> {
    let p = path(state_dir, stack);
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).map_err(|source| LockError::Open { path: p.clone(), source })?;
    }
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|source| LockError::Open { path: p.clone(), source })?;
    Ok((f, p))
}

/// Try to take the lock without waiting.
pub fn try_lock(state_dir: &Path, stack: &str) -> Result<Option<StackLock>, LockError> {
    let (f, _) = open(state_dir, stack)?;
    Ok(f.try_lock().ok().map(|_| StackLock { _file: f }))
}

/// Take the lock, waiting up to `wait` for another holder to finish.
pub fn lock(state_dir: &Path, stack: &str, wait: Duration) -> Result<StackLock, LockError> {
    let (f, p) = open(state_dir, stack)?;
    let start = Instant::now();
    loop {
        if f.try_lock().is_ok() {
            return Ok(StackLock { _file: f });
        }
        if start.elapsed() >= wait {
            return Err(LockError::Busy { stack: stack.to_string(), path: p, waited: start.elapsed() });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_excludes_others_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path(), "app", Duration::ZERO).unwrap();
        assert!(try_lock(dir.path(), "app").unwrap().is_none());
        assert!(matches!(lock(dir.path(), "app", Duration::from_millis(150)), Err(LockError::Busy { .. })));
        assert!(try_lock(dir.path(), "other").unwrap().is_some());
        drop(held);
        assert!(try_lock(dir.path(), "app").unwrap().is_some());
    }
}
