//! What a deploy changes, service by service: a stack's diff (stackdiff) between the commit of
//! its previous successful deploy and the deploy's commit, computed once per (stack, old, new)
//! on its own thread and kept in memory for the dashboard's deploy page and notifications.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use berth_core::diff::{StackDiff, StackOutcome};
use berth_core::record::History;

use crate::docker::Compose;
use crate::error::Result;
use crate::stackdiff::{self, Secrets};
use crate::workspace::Workspace;

/// Diffs kept; the oldest goes first.
const CAPACITY: usize = 256;

/// A stack between two commits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub stack: String,
    pub old: String,
    pub new: String,
}

/// A finished computation: the stack's outcome, or why it could not be computed.
pub type Done = Arc<std::result::Result<StackOutcome, String>>;

enum Slot {
    Computing,
    Done(Done),
}

#[derive(Default)]
struct Cache {
    slots: HashMap<Key, Slot>,
    order: VecDeque<Key>,
}

struct Shared {
    cache: Mutex<Cache>,
    settled: Condvar,
    /// One computation at a time: each runs compose on two checkouts.
    one: Mutex<()>,
}

fn shared() -> &'static Shared {
    static S: std::sync::OnceLock<Shared> = std::sync::OnceLock::new();
    S.get_or_init(|| Shared { cache: Mutex::new(Cache::default()), settled: Condvar::new(), one: Mutex::new(()) })
}

fn cache() -> std::sync::MutexGuard<'static, Cache> {
    shared().cache.lock().unwrap_or_else(|p| p.into_inner())
}

/// The diff of `key` if it is computed, without waiting.
pub fn known(key: &Key) -> Option<Done> {
    match cache().slots.get(key) {
        Some(Slot::Done(d)) => Some(d.clone()),
        _ => None,
    }
}

/// Start computing `key` with `compute` on its own thread unless it is computed or being
/// computed (a failed computation is tried again).
pub fn start(key: Key, compute: impl FnOnce() -> std::result::Result<StackOutcome, String> + Send + 'static) {
    {
        let mut c = cache();
        match c.slots.get(&key) {
            Some(Slot::Computing) => return,
            Some(Slot::Done(d)) if d.is_ok() => return,
            Some(Slot::Done(_)) => {}
            None => {
                c.order.push_back(key.clone());
                while c.order.len() > CAPACITY {
                    if let Some(old) = c.order.pop_front() {
                        c.slots.remove(&old);
                    }
                }
            }
        }
        c.slots.insert(key.clone(), Slot::Computing);
    }
    /// Settles the slot even if the computation panics, so that waiters do not wait forever.
    struct Settle(Key, Option<Done>);
    impl Drop for Settle {
        fn drop(&mut self) {
            let done = self.1.take().unwrap_or_else(|| Arc::new(Err("the diff computation stopped".into())));
            let mut c = cache();
            if c.slots.contains_key(&self.0) {
                c.slots.insert(self.0.clone(), Slot::Done(done));
            }
            shared().settled.notify_all();
        }
    }
    let spawned = std::thread::Builder::new().name("deploy-diff".into()).spawn(move || {
        let mut settle = Settle(key, None);
        let _one = shared().one.lock().unwrap_or_else(|p| p.into_inner());
        settle.1 = Some(Arc::new(compute()));
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the deploy diff");
    }
}

/// Wait up to `bound` for `key` (started with [`start`]): none if it is still computing.
pub fn wait(key: &Key, bound: Duration) -> Option<Done> {
    let deadline = Instant::now() + bound;
    let mut c = cache();
    loop {
        match c.slots.get(key) {
            Some(Slot::Done(d)) => return Some(d.clone()),
            None => return None,
            Some(Slot::Computing) => {}
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        c = shared().settled.wait_timeout(c, left).unwrap_or_else(|p| p.into_inner()).0;
    }
}

/// The diff of `key.stack` between its two commits in `ws`. A stack no changed path touches
/// has no service to recreate.
pub fn compute(
    ws: &Workspace,
    key: &Key,
    history: impl FnOnce() -> Result<HashMap<String, History>>,
    compose: &Compose,
) -> std::result::Result<StackOutcome, String> {
    let old = ws.snapshot(&key.old).map_err(|e| e.to_string())?;
    let new = ws.snapshot(&key.new).map_err(|e| e.to_string())?;
    let only = [key.stack.clone()];
    let outcomes =
        stackdiff::compute(ws, &old, &new, &only, history, compose, Secrets::Decrypt).map_err(|e| e.to_string())?;
    Ok(outcomes.into_iter().next().unwrap_or_else(|| StackOutcome {
        name: key.stack.clone(),
        server: new.project.stack(&key.stack).map(|s| s.server.clone()).unwrap_or_default(),
        state: "unchanged",
        action: None,
        diff: Some(StackDiff { services: Vec::new(), project: String::new() }),
        files: Vec::new(),
        error: None,
    }))
}

/// The summary line of `key` when it is known (a notification never waits for it).
pub fn summary(key: &Key) -> Option<String> {
    known(key)?.as_ref().as_ref().ok()?.summary()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: &str) -> Key {
        Key { stack: n.into(), old: "a".into(), new: "b".into() }
    }

    #[test]
    fn computes_once_and_waits_with_a_bound() {
        let k = key("cache-test-web");
        assert!(known(&k).is_none());
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        start(k.clone(), move || {
            let _ = rx.recv_timeout(Duration::from_secs(10));
            Err("nothing to render".into())
        });
        // Still computing: a second start is a no-op and a short wait gives up.
        start(k.clone(), || panic!("computed twice"));
        assert!(wait(&k, Duration::from_millis(10)).is_none());
        tx.send(()).unwrap();
        let done = wait(&k, Duration::from_secs(10)).expect("settled");
        assert_eq!(done.as_ref().as_ref().err().map(String::as_str), Some("nothing to render"));
        // A failure is tried again; a panic settles the slot too.
        start(k.clone(), || panic!("boom"));
        let done = wait(&k, Duration::from_secs(10)).expect("settled");
        assert!(done.is_err());
        assert!(summary(&k).is_none());
    }
}
