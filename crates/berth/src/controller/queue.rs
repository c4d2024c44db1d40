//! The scheduler: owns the deploy queue; executors report to it by message.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use berth_core::record::DeployStatus;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::{RepoHandle, Shared};
use crate::deploy::{self, Job};
use crate::docker::Engine;
use crate::executor::{self, Request};
use crate::state::NewDeploy;
use crate::windows;

pub enum Msg {
    Enqueue {
        repo: usize,
        stack: String,
        server: String,
        commit: String,
        /// `None`: replay the last successful deploy's variables (a reconcile).
        overrides: Option<BTreeMap<String, String>>,
        trigger: String,
        batch: u64,
        /// Take the stack down instead (gone from the repository, `prune` on).
        remove: bool,
        /// Deploy even when the stack already runs this config (an explicit deploy).
        force: bool,
        /// Deploy through closed windows and freezes.
        through: Option<super::sync::Through>,
        reply: oneshot::Sender<Result<(i64, bool), String>>,
    },
    Finished {
        stack: String,
        status: DeployStatus,
        /// Set when the deploy failed because its engine could not be reached: try again later.
        retry: Option<Pending>,
    },
    /// A deploy window may have opened or a freeze been lifted: look at the waiting deploys again.
    Wake,
    /// A retry whose backoff has passed.
    Retry {
        stack: String,
        pending: Pending,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

pub struct Pending {
    id: i64,
    repo: usize,
    commit: String,
    overrides: Option<BTreeMap<String, String>>,
    trigger: String,
    batch: u64,
    /// How many times this deploy was retried after its engine was unreachable.
    attempt: u32,
    /// A removal rather than a deploy.
    remove: bool,
    /// An explicit deploy: it runs even when the stack already runs this config.
    force: bool,
    /// It waits for a deploy window or a freeze's end, and that was said (recorded, notified).
    held: bool,
    /// Forced through closed windows and freezes (who, why); recorded once it goes through one.
    through: Option<super::sync::Through>,
}

/// Retries of a deploy whose engine was unreachable, and the first pause (doubled each time, at most 5 min).
const MAX_RETRIES: u32 = 8;
const FIRST_BACKOFF: Duration = Duration::from_secs(5);

fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF.saturating_mul(1 << attempt.min(6)).min(Duration::from_secs(300))
}

#[derive(Default)]
struct Slot {
    running: Option<u64>,
    pending: Option<Pending>,
}

struct Queue {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Msg>,
    slots: HashMap<String, Slot>,
    running: usize,
    /// The batch and outcome of each stack's last deploy, to block dependents in the same batch.
    last: HashMap<String, (u64, DeployStatus)>,
    stopping: Option<Vec<oneshot::Sender<()>>>,
    /// When a timer wakes the queue for the next deploy window opening (unix seconds).
    wake_at: Option<i64>,
}

pub async fn run(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let mut q = Queue {
        tx: shared.sched_tx.clone(),
        shared,
        slots: HashMap::new(),
        running: 0,
        last: HashMap::new(),
        stopping: None,
        wake_at: None,
    };
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Enqueue { repo, stack, server, commit, overrides, trigger, batch, remove, force, through, reply } => {
                let name = stack.clone();
                let r = q.enqueue(repo, stack, server, commit, overrides, trigger, batch, remove, force);
                // A forced request makes the pending deploy (its own, or the one it joined) forced.
                let mut was_held = None;
                if r.is_ok()
                    && through.is_some()
                    && let Some(p) = q.slots.get_mut(&name).and_then(|s| s.pending.as_mut())
                {
                    was_held = p.held.then_some(p.id);
                    p.held = false;
                    p.through = through;
                }
                // Its "waiting" note goes before the answer: `?wait=true` waits for the outcome.
                if let Some(id) = was_held {
                    q.shared.state(|s| {
                        let _ = s.note_queued(id, "forced through a closed window or freeze");
                    });
                }
                let _ = reply.send(r);
            }
            Msg::Finished { stack, status, retry } => {
                q.running -= 1;
                if let Some(slot) = q.slots.get_mut(&stack)
                    && let Some(batch) = slot.running.take()
                {
                    q.last.insert(stack.clone(), (batch, status));
                }
                q.shared.settled.send_modify(|n| *n += 1);
                if let Some(pending) = retry.filter(|p| p.attempt < MAX_RETRIES && q.stopping.is_none()) {
                    let (tx, pause) = (q.tx.clone(), backoff(pending.attempt));
                    tracing::warn!(%stack, deploy_id = pending.id, retry_in = ?pause, "the engine is unreachable");
                    tokio::spawn(async move {
                        tokio::time::sleep(pause).await;
                        let _ = tx.send(Msg::Retry { stack, pending });
                    });
                }
            }
            Msg::Wake => q.wake_at = None,
            Msg::Retry { stack, pending } => {
                // A deploy queued or started meanwhile carries a newer commit: it supersedes the retry.
                let busy = q.slots.get(&stack).is_some_and(|s| s.running.is_some() || s.pending.is_some());
                if !busy && q.stopping.is_none() {
                    let server = q.shared.state(|s| s.get(pending.id)).map(|r| r.server).unwrap_or_default();
                    let trigger = format!("retry:{}", pending.id);
                    let Pending { repo, commit, overrides, batch, attempt, .. } = pending;
                    match q.enqueue(repo, stack.clone(), server, commit, overrides, trigger, batch, false, true) {
                        Ok((id, _)) => {
                            if let Some(p) = q.slots.get_mut(&stack).and_then(|s| s.pending.as_mut()) {
                                p.attempt = attempt + 1;
                            }
                            tracing::info!(%stack, deploy_id = id, attempt = attempt + 1, "retrying the deploy");
                        }
                        Err(e) => tracing::error!(%stack, error = %e, "cannot queue the retry"),
                    }
                }
            }
            Msg::Shutdown { reply } => {
                let cancelled: Vec<i64> = q.slots.values_mut().filter_map(|s| s.pending.take()).map(|p| p.id).collect();
                q.shared.state(|s| {
                    for id in cancelled {
                        let _ = s.finish(
                            id,
                            DeployStatus::Cancelled,
                            Some("berth shut down before this deploy started"),
                            "",
                            &BTreeMap::new(),
                        );
                    }
                });
                q.stopping.get_or_insert_with(Vec::new).push(reply);
            }
        }
        let depth = q.running + q.slots.values().filter(|s| s.pending.is_some()).count();
        q.shared.metrics.queue_depth.set(depth as i64);
        if q.stopping.is_some() {
            if q.running == 0 {
                for r in q.stopping.take().unwrap_or_default() {
                    let _ = r.send(());
                }
                q.stopping = Some(Vec::new());
            }
            continue;
        }
        q.schedule();
    }
}

impl Queue {
    #[allow(clippy::too_many_arguments)]
    fn enqueue(
        &mut self,
        repo: usize,
        stack: String,
        server: String,
        commit: String,
        overrides: Option<BTreeMap<String, String>>,
        trigger: String,
        batch: u64,
        remove: bool,
        force: bool,
    ) -> Result<(i64, bool), String> {
        if self.stopping.is_some() {
            return Err("berth is shutting down".into());
        }
        let slot = self.slots.entry(stack.clone()).or_default();
        if let Some(p) = &mut slot.pending {
            // Coalesce: the pending deploy takes the newest commit.
            p.commit = commit;
            p.trigger = trigger;
            p.batch = batch;
            p.remove = remove;
            p.force |= force;
            if overrides.is_some() {
                p.overrides = overrides;
            }
            let (id, commit, trigger) = (p.id, p.commit.clone(), p.trigger.clone());
            self.shared.state(|s| s.retarget(id, &commit, &trigger)).map_err(|e| e.to_string())?;
            return Ok((id, true));
        }
        let redacted = overrides.as_ref().map(super::redacted).unwrap_or_default();
        let id = self
            .shared
            .state(|s| {
                s.enqueue(&NewDeploy {
                    stack: &stack,
                    server: &server,
                    commit: &commit,
                    config_hash: "",
                    vars: &redacted,
                    overrides: &redacted,
                    trigger: &trigger,
                })
            })
            .map_err(|e| e.to_string())?;
        slot.pending = Some(Pending {
            id,
            repo,
            commit,
            overrides,
            trigger,
            batch,
            attempt: 0,
            remove,
            force,
            held: false,
            through: None,
        });
        Ok((id, false))
    }

    fn schedule(&mut self) {
        let mut ready: Vec<(i64, String)> = self
            .slots
            .iter()
            .filter(|(_, s)| s.running.is_none())
            .filter_map(|(name, s)| s.pending.as_ref().map(|p| (p.id, name.clone())))
            .collect();
        ready.sort();
        for (_, name) in ready {
            if self.running >= self.shared.max_parallel {
                return;
            }
            if self.held(&name) {
                continue;
            }
            let Some(p) = self.slots.get(&name).and_then(|s| s.pending.as_ref()) else { continue };
            let after = self.shared.repos[p.repo]
                .current
                .read()
                .ok()
                .and_then(|c| c.as_ref().and_then(|(_, proj)| proj.stack(&name).map(|s| s.after.clone())))
                .unwrap_or_default();
            // Wait for dependencies that are queued or running; block on ones that failed in this batch.
            let busy =
                after.iter().any(|d| self.slots.get(d).is_some_and(|s| s.running.is_some() || s.pending.is_some()));
            if busy {
                continue;
            }
            let failed = after.iter().find(|d| {
                self.last.get(d.as_str()).is_some_and(|(b, st)| *b == p.batch && *st != DeployStatus::Succeeded)
            });
            let Some(slot) = self.slots.get_mut(&name) else { continue };
            let Some(p) = slot.pending.take() else { continue };
            if let Some(dep) = failed {
                let reason = format!("dependency `{dep}` did not deploy");
                self.shared.state(|s| {
                    let _ = s.finish(p.id, DeployStatus::Blocked, Some(&reason), "", &BTreeMap::new());
                });
                self.last.insert(name.clone(), (p.batch, DeployStatus::Blocked));
                self.shared.settled.send_modify(|n| *n += 1);
                continue;
            }
            slot.running = Some(p.batch);
            self.running += 1;
            let shared = self.shared.clone();
            let tx = self.tx.clone();
            let span = tracing::info_span!("deploy", deploy_id = p.id, stack = %name, commit = %p.commit);
            tokio::spawn(
                async move {
                    let stack = name.clone();
                    let (status, retry) = tokio::task::spawn_blocking({
                        let span = tracing::Span::current();
                        move || span.in_scope(|| execute(&shared, &name, p))
                    })
                    .await
                    .unwrap_or((DeployStatus::Failed, None));
                    let _ = tx.send(Msg::Finished { stack, status, retry });
                }
                .instrument(span),
            );
        }
    }
}

impl Queue {
    /// Whether the pending deploy of `name` must wait for a deploy window or a freeze's end. The
    /// first time, the wait is recorded on its row, logged and notified; a timer wakes the queue at
    /// the opening (removals and restores are never held: `windows::is_restore`).
    fn held(&mut self, name: &str) -> bool {
        let Some(p) = self.slots.get(name).and_then(|s| s.pending.as_ref()) else { return false };
        if p.remove {
            return false;
        }
        let now = windows::now();
        let freezes = self.shared.state(|s| s.freezes(now)).unwrap_or_default();
        // Under the read lock only: the project is not copied.
        let judged = self.shared.repos[p.repo].current.read().ok().and_then(|c| {
            let project = &c.as_ref()?.1;
            if project.windows.is_empty() && freezes.is_empty() {
                return None;
            }
            let zones = windows::zones(project).ok()?;
            let v = windows::verdict(project, &zones, &freezes, name, &p.trigger, now);
            let server = project.stack(name).map(|s| s.server.clone()).unwrap_or_default();
            (!v.is_open()).then(|| (v, server, project.notify.clone()))
        });
        let Some((v, server, notify)) = judged else { return false };
        if let Some(p) = self.slots.get_mut(name).and_then(|s| s.pending.as_mut())
            && let Some(t) = p.through.take()
        {
            // Forced: it goes now, and the override is recorded as the CLI's `--force` records it.
            let closed = windows::explain(&v);
            tracing::info!(stack = %name, deploy_id = p.id, by = %t.by, reason = %t.reason, %closed, "deploying through a closed window");
            let id = p.id;
            self.shared.state(|s| {
                if let Err(e) = s.record_override(id, &t.by, &t.reason, &closed, now) {
                    tracing::error!(deploy_id = id, error = %e, "the window override was not recorded");
                }
            });
            p.through = Some(t);
            return false;
        }
        if let Some(at) = v.opens {
            self.wake(at);
        }
        let Some(p) = self.slots.get_mut(name).and_then(|s| s.pending.as_mut()) else { return true };
        if !p.held {
            p.held = true;
            let why = format!("{}{}", super::WAITING, windows::explain(&v));
            tracing::info!(stack = %name, deploy_id = p.id, reason = %why, "deploy waits for its window");
            self.shared.state(|s| {
                let _ = s.note_queued(p.id, &why);
            });
            // `?wait=true` callers answer with it held.
            self.shared.settled.send_modify(|n| *n += 1);
            crate::notify::Notifier::new(notify).send(&crate::notify::Event::deploy(
                "waiting",
                name,
                &server,
                &p.commit,
                p.id,
                Some(why),
            ));
        }
        true
    }

    /// Wake the queue at `at` (unix seconds) unless an earlier wake is already set.
    fn wake(&mut self, at: i64) {
        let now = windows::now();
        if self.wake_at.is_some_and(|w| w <= at && w >= now) {
            return;
        }
        self.wake_at = Some(at);
        let tx = self.tx.clone();
        // Whole seconds from a truncated `now`: the timer never fires before the opening.
        let delay = Duration::from_secs((at - now).max(0) as u64);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Msg::Wake);
        });
    }
}

/// Run one deploy to the end and record it; hand it back for a retry when its engine was unreachable. Blocking.
fn execute(shared: &Shared, name: &str, p: Pending) -> (DeployStatus, Option<Pending>) {
    let started = std::time::Instant::now();
    let (status, retry) = execute_inner(shared, name, p);
    shared.metrics.deployed(name, status.as_str(), started.elapsed().as_secs_f64());
    (status, retry)
}

fn execute_inner(shared: &Shared, name: &str, p: Pending) -> (DeployStatus, Option<Pending>) {
    if p.remove {
        return (remove(shared, name, &p), None);
    }
    let fail = |reason: String| {
        tracing::error!(%reason, "deploy failed before it started");
        shared.state(|s| {
            let _ = s.finish(p.id, DeployStatus::Failed, Some(&reason), "", &BTreeMap::new());
        });
        (DeployStatus::Failed, None)
    };
    let repo = &shared.repos[p.repo];
    let snap = match repo.ws.snapshot(&p.commit) {
        Ok(s) => s,
        Err(e) => return fail(format!("cannot load the project at {}: {e}", &p.commit)),
    };
    let Some(stack) = snap.project.stack(name).cloned() else {
        return fail(format!("stack `{name}` does not exist at {}", &p.commit));
    };
    let history = match shared.state(|s| s.summaries()) {
        Ok(h) => h,
        Err(e) => return fail(e.to_string()),
    };
    let requested = [name.to_string()];
    let overrides = p
        .overrides
        .clone()
        .unwrap_or_else(|| history.get(name).map(|h| berth_core::vars::replayable(&h.overrides)).unwrap_or_default());
    let (plan, _) = match repo.ws.plan(&snap, &history, Some(&requested), &overrides) {
        Ok(p) => p,
        Err(e) => return fail(e.to_string()),
    };
    let Some(step) = plan.steps.iter().find(|s| s.stack == name) else {
        return fail(format!("stack `{name}` is not in the plan"));
    };
    let Some(server) = snap.project.server(&stack.server) else {
        return fail(format!("server `{}` is not declared", stack.server));
    };
    let engine = Engine::for_server(server, &shared.compose);
    if !snap.project.notify.is_empty() {
        changes_in_background(shared, repo, name, &p.commit);
    }
    let notifier = crate::notify::Notifier::new(snap.project.notify.clone());
    let ci = match repo.ws.ci_gate(&snap.project, &stack) {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    tracing::info!(trigger = %p.trigger, "deploy started");
    let wait = stack.timeout;
    let job = Job::new(stack, p.commit.clone(), engine).overrides(overrides).changed_paths(step.paths.clone()).ci(ci);
    let req = Request {
        job,
        config_hash: step.config_hash.clone(),
        trigger: p.trigger.clone(),
        queued: Some(p.id),
        wait,
        reconcile: !p.force,
        if_unreachable: Some("berth retries this deploy with backoff"),
    };
    let on = |e: executor::Event<'_>| {
        if let executor::Event::Waiting { holder } = e {
            tracing::info!(%holder, "waiting for the stack's lock");
        }
    };
    let ran = executor::run(&repo.ws, shared, &notifier, req, &on);
    let status = ran.status();
    match (&ran, ran.reason()) {
        (executor::Ran::Current { by }, _) => tracing::info!(by, "the stack already runs this config"),
        (_, None) => tracing::info!("deploy succeeded"),
        (_, Some(r)) if status == DeployStatus::RolledBack => tracing::warn!(reason = %r, "deploy rolled back"),
        (_, Some(r)) => tracing::error!(reason = %r, "deploy failed"),
    }
    // A failure while the engine is gone says nothing about the new version: try again once it answers.
    let unreachable = matches!(ran, executor::Ran::Deployed { unreachable: true, .. });
    (status, unreachable.then_some(p))
}

/// Take down a stack gone from the repository, with the definition and server of its last successful
/// deploy: only what berth's own records say it deployed is ever removed.
fn remove(shared: &Shared, name: &str, p: &Pending) -> DeployStatus {
    let repo = &shared.repos[p.repo];
    // The record under the state lock, the git read after it.
    let last = shared.state(|s| s.last_success(name, None));
    let found = match last {
        Ok(Some(last)) => repo.ws.removal(last).map_err(|e| e.to_string()),
        Ok(None) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
    .and_then(|r| r.ok_or_else(|| format!("berth has no successful deploy of `{name}` it could take down")));
    let result = found.and_then(|r| {
        shared.state(|s| s.start(p.id, "", &BTreeMap::new())).map_err(|e| e.to_string())?;
        let engine = Engine::for_server(&r.server, &shared.compose);
        deploy::remove(&repo.ws.repo, &shared.state_dir, &r.stack, &r.last.commit, &engine)
    });
    let (status, reason, log) = match result {
        Ok(log) => (DeployStatus::Removed, "removed from the repository".to_string(), log),
        Err(why) => (DeployStatus::Failed, format!("could not remove the stack: {why}"), String::new()),
    };
    match status {
        DeployStatus::Removed => tracing::info!("stack removed"),
        _ => tracing::error!(%reason, "removal failed"),
    }
    shared.state(|s| {
        if let Err(e) = s.finish(p.id, status, Some(&reason), &log, &BTreeMap::new()) {
            tracing::error!(error = %e, "cannot record the removal");
        }
    });
    status
}

/// Compute what the deploy of `name` at `commit` changes since the stack's last success on its
/// own thread, for the notifications' summary line (`recreates web`); the deploy never waits.
fn changes_in_background(shared: &Shared, repo: &Arc<RepoHandle>, name: &str, commit: &str) {
    let Ok(Some(last)) = shared.state(|s| s.last_success(name, None)) else { return };
    if last.commit == commit {
        return;
    }
    let history = shared.state(|s| repo.ws.history(s));
    let key = crate::deploydiff::Key { stack: name.to_string(), old: last.commit, new: commit.to_string() };
    let (r, k, compose) = (repo.clone(), key.clone(), shared.compose.clone());
    crate::deploydiff::start(key, move || crate::deploydiff::compute(&r.ws, &k, || history, &compose));
}
