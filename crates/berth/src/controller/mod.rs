//! The controller behind `berth serve`: repository mirrors kept in sync, and one
//! deploy queue for every stack.
//!
//! Two kinds of tasks: a syncer per repository (fetch, validate the config at
//! the new commit, plan, enqueue) and one scheduler that owns the queue (at
//! most one running and one pending deploy per stack, a global concurrency
//! limit, dependency order). Executors run on blocking threads and report to
//! the scheduler by message only.

mod queue;
mod sync;
mod updates;

pub use updates::Wake;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use berth_core::Project;
use berth_core::project::RepoSpec;
use berth_core::record::DeployRecord;
use tokio::sync::{mpsc, oneshot, watch};

use crate::docker::Compose;
use crate::git::{Mirror, Repo};
use crate::state::State;
use crate::workspace::Workspace;

pub use sync::{SyncError, SyncOutcome, Target, Through, Want};

/// The last sync of a repository, for health checks.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SyncInfo {
    pub at: i64,
    pub commit: Option<String>,
    pub ok: bool,
    pub message: String,
    /// When the last successful sync happened.
    pub last_ok: Option<i64>,
}

/// One mirrored repository.
pub struct RepoHandle {
    pub spec: RepoSpec,
    pub mirror: Mirror,
    pub ws: Workspace,
    pub webhook_secret: Option<String>,
    /// The commit and project the controller runs now (the newest valid config).
    pub current: RwLock<Option<(String, Project)>>,
    pub last_sync: RwLock<Option<SyncInfo>>,
    /// One PR plan at a time per repository (pushes in a row edit one comment in order).
    pub pr_lock: tokio::sync::Mutex<()>,
    sync_tx: mpsc::UnboundedSender<sync::Request>,
}

/// State shared by the HTTP handlers, syncers, scheduler and executors.
pub struct Shared {
    pub state: Mutex<State>,
    pub state_dir: PathBuf,
    pub repos: Vec<Arc<RepoHandle>>,
    pub compose: Compose,
    pub started: Instant,
    pub max_parallel: usize,
    pub metrics: crate::metrics::Metrics,
    pub dashboard: Dashboard,
    /// Bumped whenever a deploy settles; waiters re-check their deploys.
    settled: watch::Sender<u64>,
    sched_tx: mpsc::UnboundedSender<queue::Msg>,
    updates_tx: mpsc::UnboundedSender<updates::Wake>,
}

/// How the reason of a deploy held by a window or freeze begins.
pub const WAITING: &str = "waiting: ";

/// Handle to a running controller.
#[derive(Clone)]
pub struct Controller {
    pub shared: Arc<Shared>,
}

pub use berth_core::api::Enqueued;

impl Shared {
    /// Run `f` with the state store. Never held across an await.
    pub fn state<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        let guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&guard)
    }
}

impl crate::state::WithState for Shared {
    fn with_state<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        self.state(f)
    }
}

/// What the controller needs to start.
pub struct Setup {
    pub state_dir: PathBuf,
    pub repos: Vec<(RepoSpec, Option<String>, Option<String>)>,
    pub compose: Compose,
    pub max_parallel: usize,
    pub dashboard: Dashboard,
}

/// The dashboard's settings with its secrets read.
#[derive(Debug, Clone, Default)]
pub struct Dashboard {
    pub settings: berth_core::dashboard::Dashboard,
    /// htpasswd entries: (user, bcrypt hash).
    pub users: Vec<(String, String)>,
}

impl Controller {
    /// Open the state, settle what a previous run left behind, and start the
    /// scheduler and one syncer per repository (each syncs once at start).
    pub fn start(setup: Setup) -> Result<Controller, crate::error::Error> {
        let state = State::open(&setup.state_dir)?;
        // An interruption is not a failure of that config: the first sync's plan redeploys
        // interrupted stacks (reason `interrupted`).
        let interrupted = state.settle_abandoned(
            "berth stopped while this deploy was running; the stack is redeployed",
            "berth stopped before this deploy started",
            |r| crate::lock::orphaned(&setup.state_dir, &r.stack),
        )?;
        if !interrupted.is_empty() {
            tracing::warn!(deploys = interrupted.len(), "deploys were interrupted by a previous run; redeploying");
        }
        let (sched_tx, sched_rx) = mpsc::unbounded_channel();
        let (settled, _) = watch::channel(0u64);
        let (updates_tx, updates_rx) = mpsc::unbounded_channel();
        let mut repos = Vec::new();
        let mut sync_rxs = Vec::new();
        for (spec, token, webhook_secret) in setup.repos {
            let root = setup.state_dir.join("mirrors").join(format!("{}.git", spec.name));
            let mirror = Mirror {
                url: spec.url.clone(),
                branch: spec.branch.clone(),
                repo: Repo { root: root.clone(), mirror: true },
                token,
            };
            let ws = Workspace::new(Repo { root, mirror: true }, setup.state_dir.clone());
            let (sync_tx, sync_rx) = mpsc::unbounded_channel();
            repos.push(Arc::new(RepoHandle {
                spec,
                mirror,
                ws,
                webhook_secret,
                current: RwLock::new(None),
                last_sync: RwLock::new(None),
                pr_lock: tokio::sync::Mutex::new(()),
                sync_tx,
            }));
            sync_rxs.push(sync_rx);
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            state_dir: setup.state_dir,
            repos,
            compose: setup.compose,
            started: Instant::now(),
            max_parallel: setup.max_parallel,
            metrics: crate::metrics::Metrics::default(),
            dashboard: setup.dashboard,
            settled,
            sched_tx,
            updates_tx,
        });
        tokio::spawn(queue::run(shared.clone(), sched_rx));
        tokio::spawn(drift_loop(Controller { shared: shared.clone() }));
        tokio::spawn(updates::run(shared.clone(), updates_rx));
        for (i, rx) in sync_rxs.into_iter().enumerate() {
            tokio::spawn(sync::run(shared.clone(), i, rx));
            let _ = shared.repos[i].sync_tx.send(sync::Request::startup());
        }
        Ok(Controller { shared })
    }

    pub fn repo(&self, name: Option<&str>) -> Option<&Arc<RepoHandle>> {
        match name {
            Some(n) => self.shared.repos.iter().find(|r| r.spec.name == n),
            None => self.shared.repos.first(),
        }
    }

    /// The repository whose current project has `stack`.
    pub fn repo_of_stack(&self, stack: &str) -> Option<&Arc<RepoHandle>> {
        self.shared.repos.iter().find(|r| {
            r.current.read().map(|c| c.as_ref().is_some_and(|(_, p)| p.stack(stack).is_some())).unwrap_or(false)
        })
    }

    /// Ask a repository's syncer for deploys and wait until they are enqueued.
    pub async fn request(
        &self,
        repo: &RepoHandle,
        want: Want,
        target: Target,
        trigger: &str,
    ) -> Result<SyncOutcome, SyncError> {
        let (tx, rx) = oneshot::channel();
        let req = sync::Request { want, target, trigger: trigger.to_string(), reply: Some(tx) };
        repo.sync_tx.send(req).map_err(|_| SyncError::Stopped)?;
        rx.await.map_err(|_| SyncError::Stopped)?
    }

    /// Check image updates now (a registry reported new tags).
    pub fn check_updates(&self, wake: Wake) {
        let _ = self.shared.updates_tx.send(wake);
    }

    /// Look at the deploys waiting for a window or a freeze again (a freeze was lifted).
    pub fn recheck(&self) {
        let _ = self.shared.sched_tx.send(queue::Msg::Wake);
    }

    /// Wait until every deploy in `ids` has settled (or waits for a deploy window or freeze), or the
    /// timeout passes; returns their records.
    pub async fn wait(&self, ids: &[i64], timeout: Duration) -> Vec<DeployRecord> {
        let mut rx = self.shared.settled.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let records: Vec<DeployRecord> =
                self.shared.state(|s| ids.iter().filter_map(|id| s.get(*id).ok()).collect());
            // A deploy held by a deploy window or freeze may wait for days: answer with it queued.
            let held = |r: &DeployRecord| {
                r.status == berth_core::record::DeployStatus::Queued
                    && r.reason.as_deref().is_some_and(|w| w.starts_with(WAITING))
            };
            if records.iter().all(|r| r.status.is_final() || held(r)) || tokio::time::Instant::now() >= deadline {
                return records;
            }
            let _ = tokio::time::timeout_at(deadline, rx.changed()).await;
        }
    }

    /// Stop taking deploys, cancel queued ones and wait (bounded) for running ones.
    pub async fn shutdown(&self, grace: Duration) {
        let (tx, rx) = oneshot::channel();
        if self.shared.sched_tx.send(queue::Msg::Shutdown { reply: tx }).is_ok()
            && tokio::time::timeout(grace, rx).await.is_err()
        {
            tracing::warn!("deploys still running after {}s; recording them as interrupted", grace.as_secs());
        }
        self.shared.state(|s| {
            let _: Result<_, _> = s.settle_abandoned(
                "berth shut down before this deploy finished",
                "berth shut down before this deploy started",
                |r| crate::lock::orphaned(&self.shared.state_dir, &r.stack),
            );
        });
    }
}

/// Check every repository's stacks for drift on the configured interval; report it,
/// and heal stacks with `self_heal` (within the limit) by redeploying their recorded deploy.
async fn drift_loop(ctl: Controller) {
    let mut last = Instant::now();
    loop {
        // Re-read the interval often: the first sync (or a new config) may change it.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let interval = ctl
            .shared
            .repos
            .iter()
            .filter_map(|r| r.current.read().ok().and_then(|c| c.as_ref().map(|(_, p)| p.drift_interval)))
            .flatten()
            .min()
            .unwrap_or(std::time::Duration::from_secs(300));
        if last.elapsed() < interval {
            continue;
        }
        last = Instant::now();
        for repo in ctl.shared.repos.clone() {
            let Some((commit, project)) = repo.current.read().ok().and_then(|c| c.clone()) else { continue };
            if project.drift_interval.is_none() {
                continue;
            }
            let shared = ctl.shared.clone();
            let r2 = repo.clone();
            let found =
                tokio::task::spawn_blocking(move || crate::drift::check_at(&r2.ws, &commit, &*shared, &shared.compose))
                    .await;
            let Ok(Ok(found)) = found else { continue };
            for st in &project.stacks {
                let drifted = found.iter().any(|d| d.stack == st.name);
                ctl.shared
                    .metrics
                    .drift
                    .get_or_create(&crate::metrics::StackLabel { stack: st.name.clone() })
                    .set(i64::from(drifted));
            }
            let notifier = crate::notify::Notifier::new(project.notify.clone());
            for d in found {
                tracing::warn!(stack = %d.stack, findings = ?d.findings, "drift detected");
                notifier.send(&d.event());
                let may = ctl.shared.state(|s| crate::drift::may_heal(s, &d)).unwrap_or(false);
                if !d.self_heal || !may {
                    continue;
                }
                let Ok(last) = ctl.shared.state(|s| s.get(d.deploy_id)) else { continue };
                let want = Want::Force {
                    stacks: vec![d.stack.clone()],
                    overrides: berth_core::vars::replayable(&last.overrides),
                    through: None,
                };
                if let Err(e) = ctl.request(&repo, want, Target::Rev(last.commit.clone()), "heal").await {
                    tracing::error!(stack = %d.stack, error = %e, "self-heal failed to start");
                }
            }
        }
    }
}

/// Variables (redacted) for recording.
pub(crate) fn redacted(vars: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    berth_core::vars::redact(vars)
}
