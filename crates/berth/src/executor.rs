//! The executor every deploy runs through, whoever asked for it (`apply`, `deploy`,
//! `rollback`, `bootstrap`, or `berth serve`'s queue): take the stack's OS lock,
//! decide under it whether the deploy is still wanted, record it, run it, record
//! how it ended and notify. Ordering stays with the callers (the CLI's dispatcher,
//! the controller's queue); locking, the rollback target and recording live here once.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_core::record::DeployStatus;
use berth_core::vars;

use crate::deploy::{self, Job, Outcome};
use crate::lock::{self, LockError};
use crate::notify::{self, Notifier};
use crate::state::{NewDeploy, WithState};
use crate::workspace::Workspace;

/// One deploy to run. `job.rollback` is ignored: the target is chosen under the lock.
pub struct Request {
    pub job: Job,
    pub config_hash: String,
    pub trigger: String,
    /// The controller's queued record of this deploy; `None` records a new one.
    pub queued: Option<i64>,
    /// How long to wait for another deploy of the stack (zero: refuse at once).
    pub wait: Duration,
    /// A reconcile: when the stack already runs this exact config (another process
    /// deployed it while this one waited), there is nothing to do.
    pub reconcile: bool,
    /// When a failed deploy's engine does not answer either, what the caller does about it
    /// (the controller retries): added to the recorded reason, and `Ran::Deployed.unreachable` set.
    pub if_unreachable: Option<&'static str>,
}

/// What the executor tells its caller while it works.
pub enum Event<'a> {
    /// Another deploy holds the stack; this one waits for it.
    Waiting {
        holder: &'a str,
    },
    Started {
        id: i64,
    },
    Phase {
        id: i64,
        phase: &'a str,
    },
}

/// How a request ended.
pub enum Ran {
    /// It ran and was recorded as deploy `id`.
    /// `unreachable`: it failed and its engine did not answer afterwards.
    Deployed { id: i64, outcome: Box<Outcome>, unreachable: bool },
    /// The stack already runs this config: deploy `by` did it. Nothing new was recorded
    /// (a queued record is settled as succeeded, naming `by`).
    Current { by: i64 },
    /// It never started; recorded as `id` when it has a record.
    NotRun { id: Option<i64>, status: DeployStatus, reason: String },
}

impl Ran {
    pub fn status(&self) -> DeployStatus {
        match self {
            Ran::Deployed { outcome, .. } => outcome.status,
            Ran::Current { .. } => DeployStatus::Succeeded,
            Ran::NotRun { status, .. } => *status,
        }
    }

    pub fn id(&self) -> Option<i64> {
        match self {
            Ran::Deployed { id, .. } => Some(*id),
            Ran::Current { by } => Some(*by),
            Ran::NotRun { id, .. } => *id,
        }
    }

    pub fn reason(&self) -> Option<String> {
        match self {
            Ran::Deployed { outcome, .. } => outcome.reason.clone(),
            Ran::Current { by } => Some(format!("already running this config (deploy {by})")),
            Ran::NotRun { reason, .. } => Some(reason.clone()),
        }
    }
}

/// Run `req` to the end. Blocking; never panics on docker, git or state failures.
pub fn run(ws: &Workspace, state: &impl WithState, notifier: &Notifier, req: Request, on: &dyn Fn(Event<'_>)) -> Ran {
    let Request { mut job, config_hash, trigger, queued, wait, reconcile, if_unreachable } = req;
    let name = job.stack.name.clone();
    let not_run = |status: DeployStatus, reason: String| {
        if let Some(id) = queued {
            state.with_state(|s| {
                let _ = s.finish(id, status, Some(&reason), "", &BTreeMap::new());
            });
        }
        Ran::NotRun { id: queued, status, reason }
    };
    let mut held = match lock::lock(&ws.state_dir, &name, wait, |holder| on(Event::Waiting { holder })) {
        Ok(l) => l,
        Err(e @ LockError::Busy { .. }) => return not_run(DeployStatus::Cancelled, e.to_string()),
        Err(e) => return not_run(DeployStatus::Failed, e.to_string()),
    };
    // Under the lock, history is settled: whatever ran before has recorded its end, or its
    // berth died (and what it started has ended, since it held the lock): say so.
    state.with_state(|s| {
        for r in s.history(&name, 3).unwrap_or_default() {
            if r.status == DeployStatus::Running && Some(r.id) != queued {
                let _ = s.interrupt(r.id, "berth stopped while this deploy was running; the stack is redeployed");
            }
        }
    });
    let last = match state.with_state(|s| s.last_success(&name, None)) {
        Ok(l) => l,
        Err(e) => return not_run(DeployStatus::Failed, e.to_string()),
    };
    if reconcile && let Some(last) = last.as_ref().filter(|l| l.config_hash == config_hash && !config_hash.is_empty()) {
        // A queued request is satisfied: the stack runs what it asked for. Its record says
        // which deploy did it and carries that deploy's verification (drift compares with it).
        if let Some(id) = queued {
            let reason = format!("already running this config: deploy {} deployed and verified it", last.id);
            state.with_state(|s| {
                let _ = s.start(id, &config_hash, &vars::redact(&job.overrides));
                let _ = s.verify_results(last.id).and_then(|v| s.set_verify(id, &v));
                let _ = s.finish(id, DeployStatus::Succeeded, Some(&reason), "", &last.vars);
            });
        }
        return Ran::Current { by: last.id };
    }
    // What the deploy changes is told from the last success's commit, when a diff of it is known.
    let since = last.as_ref().map(|l| l.commit.clone());
    job.rollback = last.and_then(|l| ws.job_for(&l, &job.engine, &job.changed_paths).map(Box::new));

    let redacted = vars::redact(&job.overrides);
    let server = job.stack.server.clone();
    let recorded = state.with_state(|s| match queued {
        Some(id) => s.start(id, &config_hash, &redacted).map(|_| id),
        None => s.begin(&NewDeploy {
            stack: &name,
            server: &server,
            commit: &job.commit,
            config_hash: &config_hash,
            vars: &redacted,
            overrides: &redacted,
            trigger: &trigger,
        }),
    });
    let id = match recorded {
        Ok(id) => id,
        Err(e) => return not_run(DeployStatus::Failed, e.to_string()),
    };
    held.set_deploy(id);
    on(Event::Started { id });
    notifier.send(
        &notify::Event::deploy("started", &name, &server, &job.commit, id, None).with_changes(since.as_deref(), false),
    );
    let progress = |phase: &str| {
        state.with_state(|s| {
            let _ = s.set_phase(id, phase);
        });
        on(Event::Phase { id, phase });
    };
    // The CI gate and commit statuses (`crate::status`) frame the deploy; a closed gate touches nothing.
    let mut follow = crate::status::Session::start(&job, &trigger, id);
    let mut outcome = match follow.gate(&progress) {
        Some(refused) => refused,
        None => deploy::run(&ws.repo, &ws.state_dir, &job, &held, &progress),
    };
    follow.finish(&mut outcome);
    // A failure while the engine is gone says nothing about the new version: say so in the record.
    let unreachable = match if_unreachable {
        Some(note) if outcome.status == DeployStatus::Failed => job.engine.ping().err().map(|e| (e, note)),
        _ => None,
    };
    if let Some((e, note)) = &unreachable {
        let why = outcome.reason.take().unwrap_or_default();
        outcome.reason = Some(format!("{why}; {e}; {note}"));
    }
    state.with_state(|s| {
        let _ = s.set_verify(id, &outcome.verify.to_string());
        if let Err(e) = s.finish(id, outcome.status, outcome.reason.as_deref(), &outcome.log, &outcome.vars) {
            tracing::error!(deploy_id = id, error = %e, "cannot record the deploy's outcome");
        }
    });
    drop(held);
    let what = match outcome.status {
        DeployStatus::Succeeded => "succeeded",
        DeployStatus::RolledBack => "rolled_back",
        // The CI gate refused it: nothing was deployed, nothing failed.
        DeployStatus::Blocked => "blocked",
        _ => "failed",
    };
    let done = notify::Event::deploy(what, &name, &server, &job.commit, id, outcome.reason.clone());
    notifier.send(&done.with_changes(since.as_deref(), true));
    Ran::Deployed { id, outcome: Box::new(outcome), unreachable: unreachable.is_some() }
}
