//! Per-stack locks: an OS file lock per stack under the state dir, so two berth
//! processes (or two threads) never deploy the same stack at once. The holder
//! writes who it is into the file, so a waiter can name the deploy it waits for.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot open lock file {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("stack `{stack}` is being deployed by {holder} (lock {path}; waited {}s)", waited.as_secs())]
    Busy { stack: String, path: PathBuf, holder: String, waited: Duration },
}

/// Who holds a stack's lock: written into the lock file by the holder.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// The holding process's command (`berth serve`, `berth apply`, ...).
    pub command: String,
    /// Unix seconds when the lock was taken.
    pub since: i64,
    /// The deploy it runs, once recorded.
    pub deploy: Option<i64>,
}

impl Holder {
    /// This process, from now.
    pub fn me() -> Holder {
        Holder { pid: std::process::id(), command: command(), since: crate::state::now(), deploy: None }
    }

    /// Whether the berth that took the lock has died while a command it started (compose,
    /// which inherits the lock) still holds it.
    fn gone(&self) -> bool {
        let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) else { return true };
        rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH)
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.deploy {
            Some(id) => write!(f, "deploy {id}")?,
            None => write!(f, "a deploy")?,
        }
        let ago = (crate::state::now() - self.since).max(0);
        write!(f, " of `{}` (pid {}", self.command, self.pid)?;
        if self.gone() {
            write!(f, ", gone; a command it started still runs")?;
        }
        write!(f, "), running for {ago}s")
    }
}

static COMMAND: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Name this process's verb (`berth serve`, `berth apply`, ...) for holders' descriptions.
pub fn set_command(verb: &str) {
    let _ = COMMAND.set(format!("berth {verb}"));
}

fn command() -> String {
    COMMAND.get().cloned().unwrap_or_else(|| "berth".to_string())
}

/// Held while a stack deploys; released on drop (and by the OS if berth dies).
#[derive(Debug)]
pub struct StackLock {
    file: File,
    holder: Holder,
}

impl StackLock {
    /// Let the process `cmd` starts inherit this lock, so the stack stays locked until that
    /// process ends even if berth dies first (`kill -9` mid-`compose up` leaves compose running;
    /// the next deploy must wait for it, not run beside it). Only for the engine's own commands:
    /// a hook could leave a daemon behind that would hold the stack forever.
    pub fn share_with(&self, cmd: &mut std::process::Command) {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let fd = self.file.as_raw_fd();
        // SAFETY: runs in the child between fork and exec and only calls fcntl, which is
        // async-signal-safe; `fd` stays open in the parent (and so in the child) meanwhile.
        unsafe {
            cmd.pre_exec(move || {
                let fd = std::os::fd::BorrowedFd::borrow_raw(fd);
                rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()).map_err(std::io::Error::from)
            });
        }
    }

    /// Record the deploy id this lock is held for, so waiters can name it.
    pub fn set_deploy(&mut self, id: i64) {
        self.holder.deploy = Some(id);
        write_holder(&mut self.file, &self.holder);
    }
}

fn write_holder(f: &mut File, h: &Holder) {
    // Best effort: the lock itself is what excludes; the text only names the holder.
    let text = serde_json::to_string(h).unwrap_or_default();
    let _ = f.set_len(0).and_then(|_| f.seek(SeekFrom::Start(0))).and_then(|_| f.write_all(text.as_bytes()));
}

fn read_holder(p: &Path) -> String {
    let mut text = String::new();
    let _ = File::open(p).and_then(|mut f| f.read_to_string(&mut text));
    match serde_json::from_str::<Holder>(&text) {
        Ok(h) => h.to_string(),
        Err(_) => "another berth process".to_string(),
    }
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
        .read(true)
        .write(true)
        .open(&p)
        .map_err(|source| LockError::Open { path: p.clone(), source })?;
    Ok((f, p))
}

/// Whether some process holds `stack`'s lock now (without taking it for longer than the check).
pub fn is_held(state_dir: &Path, stack: &str) -> Result<bool, LockError> {
    let (f, _) = open(state_dir, stack)?;
    Ok(f.try_lock().is_err())
}

/// Whether no other living berth holds `stack`'s lock: it is free, or held by this very
/// process, or by what a berth that died left running (its compose inherits the lock). A
/// `running` deploy of such a stack has nobody who will finish its record.
pub fn orphaned(state_dir: &Path, stack: &str) -> bool {
    match is_held(state_dir, stack) {
        Ok(false) => true,
        Ok(true) => {
            let mut text = String::new();
            let _ = File::open(path(state_dir, stack)).and_then(|mut f| f.read_to_string(&mut text));
            serde_json::from_str::<Holder>(&text).is_ok_and(|h| h.pid == std::process::id() || h.gone())
        }
        Err(_) => false,
    }
}

/// How long even a caller that would not wait keeps trying: [`is_held`] holds a free lock
/// for an instant to test it, and a check (`berth status`) must not refuse a deploy.
const GRACE: Duration = Duration::from_millis(200);

/// Take the lock, waiting up to `wait` for another holder to finish (`Duration::ZERO`: refuse
/// once it stays held for a moment). `waiting` is told once who holds it when the caller waits.
pub fn lock(
    state_dir: &Path,
    stack: &str,
    wait: Duration,
    mut waiting: impl FnMut(&str),
) -> Result<StackLock, LockError> {
    let (mut f, p) = open(state_dir, stack)?;
    let start = Instant::now();
    let mut told = false;
    loop {
        if f.try_lock().is_ok() {
            let holder = Holder::me();
            write_holder(&mut f, &holder);
            return Ok(StackLock { file: f, holder });
        }
        let holder = read_holder(&p);
        if start.elapsed() >= wait.max(GRACE) {
            return Err(LockError::Busy { stack: stack.to_string(), path: p, holder, waited: start.elapsed() });
        }
        if !told && start.elapsed() < wait {
            waiting(&holder);
            told = true;
        }
        std::thread::sleep(Duration::from_millis(if start.elapsed() < GRACE { 10 } else { 50 }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_excludes_others_until_dropped_and_names_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let mut held = lock(dir.path(), "app", Duration::ZERO, |_| {}).unwrap();
        held.set_deploy(42);
        assert!(is_held(dir.path(), "app").unwrap());
        let mut told = Vec::new();
        let busy = lock(dir.path(), "app", Duration::from_millis(150), |h| told.push(h.to_string()));
        match busy {
            Err(LockError::Busy { holder, .. }) => {
                assert!(holder.starts_with("deploy 42 of `berth"), "{holder}");
                assert!(holder.contains(&format!("pid {}", std::process::id())), "{holder}");
            }
            other => panic!("expected busy, got {other:?}"),
        }
        assert_eq!(told.len(), 1, "the waiter is told once: {told:?}");
        assert!(!is_held(dir.path(), "other").unwrap());
        drop(held);
        // A process another test forks at this moment shares the descriptor until it execs.
        assert!(lock(dir.path(), "app", Duration::from_secs(5), |_| {}).is_ok());
    }

    #[test]
    fn checking_a_lock_never_refuses_a_deploy_that_would_not_wait() {
        let dir = tempfile::tempdir().unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            // `berth status` in a loop, as an operator watching a deploy would.
            s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = is_held(dir.path(), "app");
                }
            });
            // The lock is free between deploys: that is when a check holds it for an instant.
            let refused = (0..2000)
                .filter(|_| {
                    std::thread::yield_now();
                    lock(dir.path(), "app", Duration::ZERO, |_| {}).is_err()
                })
                .count();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            assert_eq!(refused, 0, "a free lock was refused while another thread only checked it");
        });
    }
}
