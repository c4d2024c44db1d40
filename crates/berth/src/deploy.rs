//! The deploy executor: brings one stack to one commit on its Docker engine,
//! verifies that the new version really serves, and puts the last good one
//! back when it does not.
//!
//! Steps: take the stack's lock, check the commit out into the stack's own
//! work tree, resolve variables, `up -d --remove-orphans` (compose validates the
//! files first; a failed `up` that changed no container leaves the stack as it
//! was), read the resolved model (`config`), force-recreate the services that
//! bind-mount a file that changed (compose does not notice those by itself), then
//! converge (Engine API) and run the smoke checks. With a `pre_deploy` hook, and
//! for swarm stacks, `config` validates the files before anything runs. On failure
//! after `up` changed something, with `rollback = "auto"`, the same steps run for
//! the last successful deploy ([`berth_core::rollback::decide`] makes that call).
//! The caller ([`crate::executor`]) holds the stack's lock for the whole run and
//! records progress and the [`Outcome`]; this module never writes the state store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_core::record::DeployStatus;
use berth_core::vars;
use berth_core::{Mode, Stack};

use berth_core::rollback::{self, Cause, Decision};

use crate::converge;
use crate::docker::{self, Engine, ProjectRef};
use crate::git::Repo;
use crate::lock::{self, StackLock};
use crate::process::RunError;
use crate::smoke;

/// Everything one deploy needs.
pub struct Job {
    pub stack: Stack,
    pub commit: String,
    /// `--set` variables (or the replayed ones of the last success).
    pub overrides: BTreeMap<String, String>,
    /// Repo-relative paths changed since the stack's last successful deploy.
    pub changed_paths: Vec<String>,
    pub engine: Engine,
    /// The last successful deploy, to put back if this one fails (with `rollback = "auto"`).
    pub rollback: Option<Box<Job>>,
    /// The commit's CI gate and status target; the executor waits and reports ([`crate::status`]).
    pub ci: Option<crate::ci::Gate>,
}

impl Job {
    /// A deploy of `stack` at `commit` on `engine`: no variables, no changed paths, no rollback
    /// target, no CI gate until the builder methods below add them.
    pub fn new(stack: Stack, commit: impl Into<String>, engine: Engine) -> Job {
        Job {
            stack,
            commit: commit.into(),
            overrides: BTreeMap::new(),
            changed_paths: Vec::new(),
            engine,
            rollback: None,
            ci: None,
        }
    }

    pub fn overrides(self, overrides: BTreeMap<String, String>) -> Job {
        Job { overrides, ..self }
    }

    pub fn changed_paths(self, changed_paths: Vec<String>) -> Job {
        Job { changed_paths, ..self }
    }

    pub fn ci(self, ci: Option<crate::ci::Gate>) -> Job {
        Job { ci, ..self }
    }
}

/// Told about each phase a deploy enters (checkout, up, converging, smoke, rollback).
pub type Progress<'a> = &'a dyn Fn(&str);

/// How a deploy ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: DeployStatus,
    pub reason: Option<String>,
    /// Captured commands and their output, secrets redacted.
    pub log: String,
    /// The resolved variables, redacted.
    pub vars: BTreeMap<String, String>,
    /// Services force-recreated because a bind-mounted file changed.
    pub recreated: Vec<String>,
    /// Verification results (convergence and smoke checks), and the rollback's.
    pub verify: serde_json::Value,
}

/// Why an attempt failed, and whether it had touched what runs.
struct Failure {
    cause: Cause,
    touched: bool,
}

/// A failure that touched what runs (`touched`) or did not.
fn failure(touched: bool) -> impl Fn(Cause) -> Failure {
    move |cause| Failure { cause, touched }
}

/// Where stack `name` is checked out under the state dir.
pub fn work_dir(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("work").join(name)
}

/// The log so far (redacted) of each stack's running deploy, for live views; a stack runs
/// at most one deploy at a time.
static LIVE: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

/// The log so far of the deploy running for `stack`, if one is.
pub fn live_log(stack: &str) -> Option<String> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner()).get(stack).cloned()
}

struct Run<'a> {
    log: String,
    secrets: Vec<String>,
    /// Variables whose values came from secrets (encrypted files, secret references).
    secret_keys: std::collections::BTreeSet<String>,
    deadline: Instant,
    job: &'a Job,
    /// The stack's lock, handed down to the engine's commands (see [`StackLock::share_with`]).
    lock: &'a StackLock,
}

impl<'a> Run<'a> {
    /// A run of `job` from now, within its stack's timeout, continuing `log`.
    fn new(job: &'a Job, lock: &'a StackLock, log: String) -> Run<'a> {
        let deadline = Instant::now() + job.stack.timeout;
        Run { log, secrets: Vec::new(), secret_keys: Default::default(), deadline, job, lock }
    }

    fn note(&mut self, line: &str) {
        self.log.push_str(line);
        self.log.push('\n');
        self.publish();
    }

    fn publish(&self) {
        let log = self.redacted_log();
        LIVE.lock().unwrap_or_else(|p| p.into_inner()).insert(self.job.stack.name.clone(), log);
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Map a failed step's message to a [`Failure`]: the stack's timeout when it has run out,
    /// else `kind`. Built after the step returned, so it sees the deadline as the step left it.
    fn failed(&self, kind: fn(String) -> Cause, touched: bool) -> impl FnOnce(String) -> Failure + use<> {
        let out = self.remaining().is_zero();
        move |m| Failure { cause: if out { Cause::Timeout(m) } else { kind(m) }, touched }
    }

    fn compose(&mut self, project: &ProjectRef<'_>, args: &[&str], what: &str) -> Result<String, String> {
        let cmd = self.job.engine.compose(project, args);
        self.engine_exec(cmd, what)
    }

    /// `exec` of a command that changes the engine (compose, `docker stack`, `docker service`):
    /// it inherits the stack's lock, so a berth that dies cannot leave it running unlocked.
    fn engine_exec(&mut self, mut cmd: Command, what: &str) -> Result<String, String> {
        self.lock.share_with(&mut cmd);
        self.exec(cmd, what)
    }

    /// Run a command within the deploy's deadline, logging it and its output.
    fn exec(&mut self, mut cmd: Command, what: &str) -> Result<String, String> {
        let left = self.remaining();
        if left.is_zero() {
            return Err(format!("timed out after {}s before {what}", self.job.stack.timeout.as_secs()));
        }
        self.note(&format!("$ {}", crate::process::display(&cmd)));
        match crate::process::run(&mut cmd, left) {
            Ok(out) => {
                self.log.push_str(&out.stdout);
                self.log.push_str(&out.stderr);
                self.publish();
                if out.success() { Ok(out.stdout) } else { Err(format!("{what} failed: {}", out.error_summary())) }
            }
            Err(RunError::Timeout { output, timeout, .. }) => {
                self.log.push_str(&output.stdout);
                self.log.push_str(&output.stderr);
                self.publish();
                Err(format!("{what} timed out after {}s (stack timeout)", timeout.as_secs()))
            }
            Err(e) => Err(format!("{what}: {e}")),
        }
    }

    /// Run a `pre_deploy`/`post_deploy` hook where it asks to run ([`crate::hook`]), aimed at the
    /// stack's engine; `checkout` is the stack's work tree.
    fn hook(
        &mut self,
        which: &str,
        hook: &berth_core::project::Hook,
        checkout: &Path,
        scratch: &Path,
        vars: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        let job = self.job;
        let ctx = crate::hook::Context {
            which,
            stack: &job.stack,
            commit: &job.commit,
            checkout,
            engine: &job.engine,
            scratch,
            vars,
        };
        crate::hook::run(&ctx, hook, &mut |cmd, what| self.exec(cmd, what))
    }

    fn redacted_log(&self) -> String {
        let mut log = self.log.clone();
        for s in &self.secrets {
            log = log.replace(s.as_str(), vars::REDACTED);
        }
        crate::redact::apply(&log).into_owned() // also their escaped forms, and other stacks' secrets
    }
}

impl crate::rollout::Steps for Run<'_> {
    fn engine_exec(&mut self, cmd: Command, what: &str) -> Result<String, String> {
        Run::engine_exec(self, cmd, what)
    }

    fn note(&mut self, line: &str) {
        Run::note(self, line)
    }

    fn remaining(&self) -> Duration {
        Run::remaining(self)
    }
}

impl Drop for Run<'_> {
    fn drop(&mut self) {
        LIVE.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.job.stack.name);
    }
}

/// Deploy one stack. Never panics on docker or git failures: they become a failed outcome.
/// `lock` is the stack's lock, held by the caller for the whole run.
pub fn run(repo: &Repo, state_dir: &Path, job: &Job, lock: &StackLock, progress: Progress<'_>) -> Outcome {
    let mut r = Run::new(job, lock, String::new());
    let mut resolved = BTreeMap::new();
    let mut verify = serde_json::Map::new();
    let forward = attempt(repo, state_dir, &mut r, &mut resolved, progress, &mut verify);
    let vars = crate::variables::recorded(&resolved, &r.secret_keys);
    let (status, reason, recreated) = match forward {
        Ok(recreated) => (DeployStatus::Succeeded, None, recreated),
        Err(f) => {
            r.note(&format!("error: {}", f.cause));
            match rollback::decide(&f.cause, f.touched, job.stack.rollback, job.rollback.as_ref()) {
                Decision::RollBack { to: back } => {
                    progress("rollback");
                    r.note(&format!("rolling back to {} (the last successful deploy)", short(&back.commit)));
                    // The rollback continues the log, so a live view shows it whole.
                    let mut rb = Run::new(back, lock, std::mem::take(&mut r.log));
                    rb.secrets = r.secrets.clone();
                    let mut rb_vars = BTreeMap::new();
                    let mut rb_verify = serde_json::Map::new();
                    let result = attempt(repo, state_dir, &mut rb, &mut rb_vars, progress, &mut rb_verify);
                    r.log = std::mem::take(&mut rb.log);
                    r.secrets.extend(std::mem::take(&mut rb.secrets));
                    verify.insert("rollback".into(), serde_json::Value::Object(rb_verify));
                    match result {
                        Ok(_) => {
                            (DeployStatus::RolledBack, Some(rollback::rolled_back(&f.cause, &back.commit)), Vec::new())
                        }
                        Err(g) => {
                            (DeployStatus::Failed, Some(rollback::rollback_failed(&f.cause, &g.cause)), Vec::new())
                        }
                    }
                }
                d => (DeployStatus::Failed, d.reason(&f.cause), Vec::new()),
            }
        }
    };
    let reason = reason.map(|reason| r.secrets.iter().fold(reason, |acc, s| acc.replace(s.as_str(), vars::REDACTED)));
    let reason = reason.map(|reason| crate::redact::apply(&reason).into_owned()); // escaped forms too ("a\"b")
    progress("done");
    Outcome { status, reason, log: r.redacted_log(), vars, recreated, verify: serde_json::Value::Object(verify) }
}

/// One deploy attempt: the compose steps, then verification.
fn attempt(
    repo: &Repo,
    state_dir: &Path,
    r: &mut Run<'_>,
    resolved: &mut BTreeMap<String, String>,
    progress: Progress<'_>,
    verify: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<String>, Failure> {
    let (config, recreated) = steps(repo, state_dir, r, resolved, progress, verify)?;
    let job = r.job;
    let services = docker::services(&config).map_err(|m| failure(true)(Cause::AfterUp(m)))?;
    progress("converging");
    let v = &job.stack.verify;
    let swarm = job.stack.mode == Mode::Swarm;
    let engine = job.engine.clone();
    let project = job.stack.name.clone();
    let (report, checks) = crate::bridge::block_on(async {
        let docker = match converge::connect(&engine).await {
            Ok(d) => d,
            Err(e) => return (converge::Report { ok: false, summary: e, containers: Vec::new() }, Vec::new()),
        };
        let expected = if swarm {
            Default::default()
        } else {
            match converge::expected_images(&docker, &services).await {
                Ok(e) => e,
                Err(e) => return (converge::Report { ok: false, summary: e, containers: Vec::new() }, Vec::new()),
            }
        };
        let report = if swarm {
            converge::converge_swarm(&docker, &project, &services, &v.ignore_services, v.timeout, v.stable).await
        } else {
            converge::converge(&docker, &project, &services, &v.ignore_services, &expected, v.timeout, v.stable).await
        };
        if !report.ok || v.http.is_empty() {
            return (report, Vec::new());
        }
        progress("smoke");
        let mut checks = Vec::new();
        for c in &v.http {
            let res = smoke::run(c).await;
            let failed = !res.ok;
            checks.push(res);
            if failed {
                break;
            }
        }
        (report, checks)
    });
    r.note(&format!("converge: {}", report.summary));
    for c in &checks {
        r.note(&format!(
            "smoke {}: {} after {} tr{}",
            c.url,
            c.detail,
            c.tries,
            if c.tries == 1 { "y" } else { "ies" }
        ));
    }
    verify.insert("converge".into(), serde_json::to_value(&report).unwrap_or_default());
    verify.insert("http".into(), serde_json::to_value(&checks).unwrap_or_default());
    if !report.ok {
        return Err(failure(true)(Cause::Verification(report.summary)));
    }
    if let Some(c) = checks.iter().find(|c| !c.ok) {
        return Err(failure(true)(Cause::Smoke { url: c.url.clone(), detail: c.detail.clone() }));
    }
    if !job.stack.post_deploy.is_empty() {
        progress("post-deploy");
        let dir = work_dir(state_dir, &job.stack.name);
        let vars = resolved.clone();
        let result = r.hook("post_deploy", &job.stack.post_deploy, &dir, &state_dir.join("tmp"), &vars);
        result.map_err(r.failed(Cause::Hook, true))?;
    }
    Ok(recreated)
}

fn steps(
    repo: &Repo,
    state_dir: &Path,
    r: &mut Run<'_>,
    resolved: &mut BTreeMap<String, String>,
    progress: Progress<'_>,
    verify: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<(String, Vec<String>), Failure> {
    let untouched = failure(false);
    let job = r.job;
    let stack = &job.stack;
    // Absolute: compose runs in the stack's folder and would resolve relative file paths twice.
    let dir = work_dir(state_dir, &stack.name);
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let swarm = stack.mode == Mode::Swarm;
    let start_first = !swarm && stack.rollout.any_start_first();
    // Validate before anything runs when something runs before `up`; else `up` validates.
    let validate_first = swarm || !stack.pre_deploy.is_empty() || start_first;
    // The containers before `up`, read while git checks out: did a failed `up` change any?
    let before = (!validate_first).then(|| {
        let (engine, name) = (job.engine.clone(), stack.name.clone());
        std::thread::spawn(move || containers(&engine, &name))
    });
    progress("checkout");
    r.note(&format!("checkout {} into {}", job.commit, dir.display()));
    repo.checkout_into(&job.commit, &dir)
        .map_err(|e| untouched(Cause::Checkout { commit: job.commit.clone(), error: e.to_string() }))?;

    let v = crate::variables::resolve(stack, &dir, &job.overrides).map_err(|e| untouched(Cause::Variables(e)))?;
    for n in &v.notes {
        r.note(n);
    }
    r.secrets = v.secrets(); // registered for redaction too: every log line of this process hides them
    r.secret_keys = v.secret_keys;
    *resolved = v.values;

    let files: Vec<PathBuf> = stack.compose_files.iter().map(|f| dir.join(f)).collect();
    let stack_dir = dir.join(&stack.path);
    let project = ProjectRef { name: &stack.name, files: &files, dir: &stack_dir, vars: resolved };

    let validated = if !validate_first {
        None
    } else if swarm {
        let cmd = job.engine.stack(&project, "config", &[], false);
        let result = r.exec(cmd, "docker stack config (the stack's compose files were rejected)");
        Some(result.map_err(r.failed(Cause::ComposeRejected, false))?)
    } else {
        let what = "compose config (the stack's compose files were rejected)";
        Some(r.compose(&project, &["config"], what).map_err(r.failed(Cause::ComposeRejected, false))?)
    };
    if !stack.pre_deploy.is_empty() {
        progress("pre-deploy");
        let result = r.hook("pre_deploy", &stack.pre_deploy, &dir, &state_dir.join("tmp"), resolved);
        result.map_err(r.failed(Cause::Hook, false))?;
    }
    // Pull policy (`pull = "always"`): fresh images before `up`; `missing` is what `up` does anyway.
    if stack.pull == Some(berth_core::project::Pull::Always) && !swarm {
        progress("pull");
        r.compose(&project, &["pull"], "compose pull").map_err(r.failed(Cause::Pull, false))?;
    }
    let changed: Vec<PathBuf> = job.changed_paths.iter().map(|p| dir.join(p)).collect();
    // Start-first services roll out before `up`, which then finds them at their new configuration.
    let mut rolled = Vec::new();
    if start_first && let Some(config) = &validated {
        progress("start-first");
        let bind_changed = bind_changed(r, config, &changed);
        let plan = crate::rollout::Rollout {
            stack,
            engine: &job.engine,
            project: &project,
            config,
            bind_changed: &bind_changed,
        };
        match crate::rollout::start_first(r, &plan) {
            Ok(done) => rolled = done,
            Err(f) => {
                if let Some(report) = f.report {
                    verify.insert("converge".into(), serde_json::to_value(&report).unwrap_or_default());
                }
                let timed_out = r.remaining().is_zero();
                let cause = if timed_out { Cause::Timeout(f.cause.to_string()) } else { f.cause };
                return Err(Failure { cause, touched: f.touched });
            }
        }
    }
    progress("up");
    if swarm {
        let with_order = match &validated {
            Some(config) if stack.rollout.any_start_first() => swarm_order_file(r, state_dir, stack, config)?,
            _ => None,
        };
        let files: Vec<PathBuf> = files.iter().cloned().chain(with_order).collect();
        let project = ProjectRef { files: &files, ..project };
        let cmd = job.engine.stack(&project, "deploy", &["--with-registry-auth", "--prune"], true);
        r.engine_exec(cmd, "docker stack deploy").map_err(r.failed(up_failed, true))?;
    } else if let Err(reason) = r.compose(&project, &["up", "--detach", "--remove-orphans"], "compose up") {
        let before = before.and_then(|t| t.join().ok()).flatten();
        // Rejected files, a missing image: compose stopped before changing anything, so nothing to roll back.
        let unchanged = matches!(before, Some(b) if containers(&job.engine, &stack.name).as_ref() == Some(&b));
        let timed_out = r.remaining().is_zero();
        return Err(Failure {
            cause: if timed_out && !unchanged {
                Cause::Timeout(reason)
            } else {
                Cause::UpFailed { error: reason, unchanged }
            },
            touched: !unchanged,
        });
    }
    let config = match validated {
        Some(config) => config,
        None => r.compose(&project, &["config"], "compose config").map_err(r.failed(Cause::AfterUp, true))?,
    };

    // `up` leaves a container alone when only a bind-mounted file changed: recreate those services
    // (the ones rolled out start-first already run the new files).
    let mut services = bind_changed(r, &config, &changed);
    services.retain(|s| !rolled.contains(s));
    services.sort();
    services.dedup();
    if swarm {
        for svc in services.iter().filter(|s| !s.is_empty()) {
            r.note(&format!("bind-mounted files changed; forcing an update of {svc}"));
            let cmd = job.engine.force_update(&stack.name, svc);
            r.engine_exec(cmd, "docker service update --force").map_err(r.failed(Cause::AfterUp, true))?;
        }
    } else if !services.is_empty() {
        let mut args = vec!["up", "--detach", "--no-deps", "--force-recreate"];
        // An empty name stands for "the whole stack" (we could not tell which services).
        args.extend(services.iter().filter(|s| !s.is_empty()).map(String::as_str));
        r.note(&format!("bind-mounted files changed; recreating: {}", services.join(" ")));
        let result = r.compose(&project, &args, "recreating services with changed bind mounts");
        result.map_err(r.failed(Cause::AfterUp, true))?;
    }
    Ok((config, services))
}

/// The compose file that makes swarm start new tasks first for the stack's start-first services
/// (`rollout`), written under the state folder; `None` when every service sets its own order.
fn swarm_order_file(
    r: &mut Run<'_>,
    state_dir: &Path,
    stack: &berth_core::Stack,
    config: &str,
) -> Result<Option<PathBuf>, Failure> {
    let untouched = failure(false);
    let text = crate::docker::rollout::swarm_order_override(config, |s| {
        stack.rollout.order_of(s) == berth_core::rollout::Order::StartFirst
    })
    .map_err(|e| untouched(Cause::ComposeRejected(e)))?;
    let Some(text) = text else { return Ok(None) };
    let file = state_dir.join("tmp").join(format!("{}.start-first.yml", stack.name));
    // Absolute: `docker stack deploy` runs in the stack's folder.
    let file = std::path::absolute(&file).unwrap_or(file);
    let written = file.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| std::fs::write(&file, text));
    written.map_err(|e| untouched(Cause::ComposeRejected(format!("cannot write {}: {e}", file.display()))))?;
    r.note(&format!("rollout start-first: update_config.order set in {}", file.display()));
    Ok(Some(file))
}

/// The services that bind-mount one of the `changed` files, per the rendered model `config`; an empty
/// name stands for "the whole stack" when the model cannot tell.
fn bind_changed(r: &mut Run<'_>, config: &str, changed: &[PathBuf]) -> Vec<String> {
    let mut services: Vec<String> = match docker::bind_sources(config) {
        Ok(binds) => binds
            .into_iter()
            .filter(|(_, src)| changed.iter().any(|c| c == src || c.starts_with(src)))
            .map(|(svc, _)| svc)
            .collect(),
        Err(e) => {
            r.note(&format!("warning: {e}; recreating every service whose files may have changed"));
            if changed.is_empty() { Vec::new() } else { vec![String::new()] }
        }
    };
    services.sort();
    services.dedup();
    services
}

/// The containers of compose project `project` (id and state), or `None` when the engine
/// cannot tell.
fn containers(engine: &Engine, project: &str) -> Option<Vec<(String, String)>> {
    crate::bridge::block_on(async {
        let docker = converge::connect(engine).await.ok()?;
        converge::containers(&docker, project).await.ok()
    })
}

/// A failed `up`, whose containers changed (an unchanged one is told apart where `up` fails).
fn up_failed(error: String) -> Cause {
    Cause::UpFailed { error, unchanged: false }
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// Take down a stack removed from the repository: `compose down --remove-orphans`
/// (or `docker stack rm`) with its definition at its last deployed commit.
/// Returns the captured log, or why it failed.
pub fn remove(repo: &Repo, state_dir: &Path, stack: &Stack, commit: &str, engine: &Engine) -> Result<String, String> {
    let job = Job::new(stack.clone(), commit, engine.clone());
    let held = lock::lock(state_dir, &stack.name, stack.timeout, |_| {}).map_err(|e| e.to_string())?;
    let mut r = Run::new(&job, &held, String::new());
    let dir = work_dir(state_dir, &stack.name);
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    repo.checkout_into(commit, &dir).map_err(|e| format!("checkout of {} failed: {e}", short(commit)))?;
    let files: Vec<PathBuf> = stack.compose_files.iter().map(|f| dir.join(f)).collect();
    let stack_dir = dir.join(&stack.path);
    let vars = stack.env.clone();
    let project = ProjectRef { name: &stack.name, files: &files, dir: &stack_dir, vars: &vars };
    if stack.mode == Mode::Swarm {
        r.engine_exec(engine.stack_rm(&stack.name), "docker stack rm")?;
    } else {
        r.compose(&project, &["down", "--remove-orphans"], "compose down")?;
    }
    Ok(std::mem::take(&mut r.log))
}
