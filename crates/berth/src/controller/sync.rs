//! The syncer of one repository: fetch, validate the config at the new commit, plan, enqueue.
//!
//! Requests that arrive while a sync runs are drained together afterwards, so
//! a storm of pushes costs one fetch per round, not one per push.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use berth_core::plan::Action;
use berth_core::signing;
use tokio::sync::{mpsc, oneshot};

use super::{Enqueued, Shared, SyncInfo, queue};
use crate::error::Error;
use crate::state::now;
use crate::workspace::Snapshot;

/// Which stacks a request wants deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// Deploy the stacks whose config hash changed (all stacks, or only these).
    Reconcile { only: Option<Vec<String>> },
    /// Deploy these stacks whatever their state, with these variables; `through`: also through closed
    /// deploy windows and freezes (an admin's forced deploy, recorded).
    Force { stacks: Vec<String>, overrides: BTreeMap<String, String>, through: Option<Through> },
}

/// A deploy forced through closed windows and freezes: who and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Through {
    pub by: String,
    pub reason: String,
}

/// Which commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The tip of the tracked branch after fetching.
    Tip,
    /// A revision (tag, commit) in the mirror after fetching.
    Rev(String),
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SyncOutcome {
    pub commit: String,
    pub deploys: Vec<Enqueued>,
    /// Stacks that were considered and needed nothing.
    pub unchanged: Vec<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SyncError {
    #[error("fetching the repository failed: {0}")]
    Fetch(String),
    #[error("the configuration at {commit} is invalid and was rejected; the previous one keeps running: {errors:?}")]
    ConfigRejected { commit: String, errors: Vec<String> },
    /// The commit is not signed by an allowed key (`verify_commits`); the previous configuration keeps running.
    #[error("{0}; the previous configuration keeps running")]
    Unsigned(String),
    #[error("{0}")]
    Unknown(String),
    #[error("{0}")]
    Failed(String),
    #[error("the controller is shutting down")]
    Stopped,
}

type Reply = oneshot::Sender<Result<SyncOutcome, SyncError>>;

pub struct Request {
    pub want: Want,
    pub target: Target,
    pub trigger: String,
    pub reply: Option<Reply>,
}

impl Request {
    pub fn startup() -> Request {
        Request { want: Want::Reconcile { only: None }, target: Target::Tip, trigger: "startup".into(), reply: None }
    }
}

static BATCH: AtomicU64 = AtomicU64::new(1);

/// Pause after a sync round before the next one.
const ROUND_GAP: std::time::Duration = std::time::Duration::from_millis(200);

pub async fn run(shared: Arc<Shared>, repo: usize, mut rx: mpsc::UnboundedReceiver<Request>) {
    let poll = shared.repos[repo].spec.poll;
    loop {
        let first = match poll {
            Some(p) => match tokio::time::timeout(p, rx.recv()).await {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(_) => Request { trigger: "poll".into(), ..Request::startup() },
            },
            None => match rx.recv().await {
                Some(r) => r,
                None => return,
            },
        };
        let mut batch = vec![first];
        while let Ok(r) = rx.try_recv() {
            batch.push(r);
        }
        let shared2 = shared.clone();
        let replies = tokio::task::spawn_blocking(move || round(&shared2, repo, batch)).await;
        if let Err(e) = replies {
            tracing::error!(error = %e, "sync round panicked");
        }
        // Let a burst of pushes gather into the next round instead of fetching per push.
        tokio::time::sleep(ROUND_GAP).await;
    }
}

/// One round: one fetch, then every request of the batch (identical reconciles merged).
fn round(shared: &Shared, repo: usize, batch: Vec<Request>) {
    let h = &shared.repos[repo];
    let started = std::time::Instant::now();
    let fetched = h.mirror.fetch();
    let fetch_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut merged: Vec<(Want, Target, String, Vec<Reply>)> = Vec::new();
    for r in batch {
        match merged.iter_mut().find(|m| m.0 == r.want && m.1 == r.target) {
            Some(m) => {
                m.2 = r.trigger;
                m.3.extend(r.reply);
            }
            None => merged.push((r.want, r.target, r.trigger, r.reply.into_iter().collect())),
        }
    }
    for (want, target, trigger, replies) in merged {
        let result = match &fetched {
            Err(e) => Err(SyncError::Fetch(e.to_string())),
            Ok(()) => sync_one(shared, repo, &want, &target, &trigger),
        };
        if target == Target::Tip {
            let prev_ok = h.last_sync.read().ok().and_then(|l| l.as_ref().and_then(|s| s.last_ok));
            let info = SyncInfo {
                at: now(),
                commit: result.as_ref().ok().map(|o| o.commit.clone()),
                ok: result.is_ok(),
                message: match &result {
                    Ok(o) => format!("{} deploys queued", o.deploys.len()),
                    Err(e) => e.to_string(),
                },
                last_ok: if result.is_ok() { Some(now()) } else { prev_ok },
            };
            if let Ok(mut l) = h.last_sync.write() {
                *l = Some(info);
            }
        }
        match &result {
            Ok(o) => {
                tracing::info!(repo = %h.spec.name, commit = %o.commit, deploys = o.deploys.len(), %trigger, fetch_ms, "synced")
            }
            Err(e) => tracing::error!(repo = %h.spec.name, error = %e, %trigger, fetch_ms, "sync failed"),
        }
        for r in replies {
            let _ = r.send(result.clone());
        }
    }
}

fn sync_one(
    shared: &Shared,
    repo: usize,
    want: &Want,
    target: &Target,
    trigger: &str,
) -> Result<SyncOutcome, SyncError> {
    let h = &shared.repos[repo];
    let commit = match target {
        // The fetch worked, so a missing branch was deleted or renamed on the remote: an upstream fault, not a bad request.
        Target::Tip => h.mirror.tip().map_err(|_| {
            SyncError::Fetch(format!(
                "branch `{}` is not on the remote {} (deleted or renamed?); berth leaves what runs as it is: \
                 restore the branch or set `branch` in the repo's config",
                h.spec.branch, h.spec.url
            ))
        }),
        Target::Rev(r) => h.ws.repo.resolve(r).map_err(|e| SyncError::Unknown(e.to_string())),
    }?;
    let snap = match h.ws.snapshot(&commit) {
        Ok(s) => s,
        Err(Error::Config(errs)) => {
            let errors: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
            reject(shared, repo, &commit, &errors)?;
            return Err(SyncError::ConfigRejected { commit, errors });
        }
        Err(e) => return Err(SyncError::Failed(e.to_string())),
    };
    if let Err(refused) = signature(shared, repo, &snap, want, trigger) {
        if reject(shared, repo, &commit, std::slice::from_ref(&refused.refusal))? {
            post_refusal(shared, repo, &commit, &refused, trigger);
        }
        return Err(SyncError::Unsigned(refused.refusal));
    }
    if *target == Target::Tip
        && let Ok(mut cur) = h.current.write()
    {
        *cur = Some((commit.clone(), snap.project.clone()));
    }
    let history = shared.state(|s| h.ws.history(s)).map_err(|e| SyncError::Failed(e.to_string()))?;
    let (requested, overrides) = match want {
        Want::Reconcile { .. } => (None, BTreeMap::new()),
        Want::Force { stacks, overrides, .. } => {
            if let Some(missing) = stacks.iter().find(|s| snap.project.stack(s).is_none()) {
                return Err(SyncError::Unknown(format!("no stack named `{missing}` at {}", &commit[..12])));
            }
            (Some(stacks.clone()), overrides.clone())
        }
    };
    if let Want::Reconcile { only: Some(only) } = want
        && let Some(missing) = only.iter().find(|s| snap.project.stack(s).is_none())
    {
        return Err(SyncError::Unknown(format!("no stack named `{missing}` at {}", &commit[..12])));
    }
    let (plan, _) =
        h.ws.plan(&snap, &history, requested.as_deref(), &overrides).map_err(|e| SyncError::Failed(e.to_string()))?;
    let batch = BATCH.fetch_add(1, Ordering::Relaxed);
    let mut out = SyncOutcome { commit: commit.clone(), deploys: Vec::new(), unchanged: Vec::new() };
    for step in &plan.steps {
        let wanted = match want {
            Want::Reconcile { only: Some(only) } => only.contains(&step.stack),
            Want::Reconcile { only: None } => true,
            Want::Force { stacks, .. } => stacks.contains(&step.stack),
        };
        if !wanted {
            continue;
        }
        // Only a full reconcile takes down stacks gone from the repository.
        let remove = step.action == Action::Remove && matches!(want, Want::Reconcile { only: None });
        if step.action != Action::Deploy && !remove {
            out.unchanged.push(step.stack.clone());
            continue;
        }
        let (tx, rx) = oneshot::channel();
        let msg = queue::Msg::Enqueue {
            repo,
            stack: step.stack.clone(),
            server: step.server.clone(),
            commit: commit.clone(),
            // An explicit deploy without variables keeps the stack's pinned ones.
            overrides: (matches!(want, Want::Force { .. }) && !overrides.is_empty()).then(|| overrides.clone()),
            trigger: if remove { format!("prune:{trigger}") } else { trigger.to_string() },
            batch,
            remove,
            force: matches!(want, Want::Force { .. }),
            through: match want {
                Want::Force { through, .. } => through.clone(),
                Want::Reconcile { .. } => None,
            },
            reply: tx,
        };
        shared.sched_tx.send(msg).map_err(|_| SyncError::Stopped)?;
        let (id, joined) = rx.blocking_recv().map_err(|_| SyncError::Stopped)?.map_err(SyncError::Failed)?;
        out.deploys.push(Enqueued { stack: step.stack.clone(), id, joined });
    }
    // A push that deploys to an auto environment gets the next patch version.
    if matches!(want, Want::Reconcile { only: None }) && *target == Target::Tip && !out.deploys.is_empty() {
        let names: Vec<String> = out.deploys.iter().map(|d| d.stack.clone()).collect();
        let push = |t: &str| h.mirror.push_tag(t);
        shared.state(|s| crate::release::tag_auto_deploy_with(&h.ws.repo, s, &snap.project, &commit, &names, &push));
    }
    Ok(out)
}

/// Record a refused commit (once per repository and commit: polls see it again) and notify
/// through the targets of the configuration that keeps running. `true`: recorded now.
fn reject(shared: &Shared, repo: usize, commit: &str, errors: &[String]) -> Result<bool, SyncError> {
    let h = &shared.repos[repo];
    let already = shared.state(|s| s.rejections(1)).ok().and_then(|r| r.into_iter().next());
    if already.is_some_and(|(r, c, _, _)| r == h.spec.name && c == commit) {
        return Ok(false);
    }
    shared.state(|s| s.reject_config(&h.spec.name, commit, errors)).map_err(|e| SyncError::Failed(e.to_string()))?;
    tracing::error!(repo = %h.spec.name, %commit, ?errors, "configuration rejected; the previous one keeps running");
    let targets = h.current.read().ok().and_then(|c| c.as_ref().map(|(_, p)| p.notify.clone())).unwrap_or_default();
    crate::notify::Notifier::new(targets).send(&crate::signing::rejected(commit, &errors.join("; ")));
    Ok(true)
}

/// Post the refusal of an unsigned commit as a `berth/signature` status: to the `[[repo]]`'s
/// `forge` (its provider, else the forge whose webhook brought the commit) and to the CI gates that
/// report in the configurations that run now. In the background: a slow forge does not hold the sync.
fn post_refusal(shared: &Shared, repo: usize, commit: &str, refused: &crate::signing::Refused, trigger: &str) {
    let h = &shared.repos[repo];
    let mut extra = Vec::new();
    if let Some(f) = &h.spec.forge {
        let from_hook =
            trigger.strip_prefix("webhook:").filter(|p| matches!(*p, "github" | "gitea" | "forgejo" | "gitlab"));
        match f.provider.clone().or(from_hook.map(str::to_string)) {
            Some(kind) => match crate::ci::Gate::forge(kind, Some(f), &h.spec.url, h.mirror.token.clone(), None) {
                Ok(g) => extra.push(g),
                Err(e) => tracing::warn!(repo = %h.spec.name, error = %e, "cannot post the signature status"),
            },
            None => tracing::warn!(repo = %h.spec.name, "cannot post the signature status: set forge.provider"),
        }
    }
    let running = shared
        .state(|s| h.ws.history(s))
        .map(|hist| crate::signing::running_projects(&h.ws, &hist))
        .unwrap_or_default();
    let current = h.current.read().ok().and_then(|c| c.as_ref().map(|(_, p)| p.clone()));
    let projects = running.iter().map(|s| &s.project).chain(current.as_ref());
    let targets = crate::signing::status_targets(&h.ws, projects, extra);
    if targets.is_empty() {
        return;
    }
    let (commit, refused) = (commit.to_string(), refused.clone());
    let post = move || drop(crate::signing::post_refusal(&targets, &commit, &refused));
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => drop(rt.spawn_blocking(post)),
        Err(_) => post(),
    }
}

/// Is the commit of `snap` signed as `verify_commits` asks: the repository's `[[repo]]` entry, the
/// configurations that run now and the commit's own? A rollback to a commit berth deployed passes.
fn signature(
    shared: &Shared,
    repo: usize,
    snap: &Snapshot,
    want: &Want,
    trigger: &str,
) -> Result<(), crate::signing::Refused> {
    let h = &shared.repos[repo];
    let stacks = match want {
        Want::Force { stacks, .. } => stacks.clone(),
        Want::Reconcile { only } => only.clone().unwrap_or_default(),
    };
    let (skip, history) = shared.state(|s| {
        let skip = signing::skips_check(trigger, &snap.commit, |c| crate::signing::deployed_before(s, &stacks, c));
        (skip, h.ws.history(s))
    });
    if skip {
        return Ok(());
    }
    let history = history
        .map_err(|e| crate::signing::Refused::new(&snap.commit, format!("cannot read the deploy history: {e}")))?;
    let mut running = crate::signing::running(&crate::signing::running_projects(&h.ws, &history));
    running.push(h.current.read().ok().and_then(|c| c.as_ref().and_then(|(_, p)| p.verify_commits.clone())));
    let required = signing::required(
        h.spec.verify_commits.as_ref(),
        running.iter().map(Option::as_ref),
        snap.project.verify_commits.as_ref(),
    );
    crate::signing::check(&h.ws.repo, &snap.commit, &required)
}
