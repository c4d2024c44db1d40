//! The deploy executor: brings one stack to one commit on its Docker engine.
//!
//! Steps: take the stack's lock, check the commit out into the stack's own
//! work tree, resolve variables, let compose validate the files (`config`),
//! `up -d --remove-orphans`, then force-recreate the services that bind-mount
//! a file that changed (compose does not notice those by itself). The
//! executor never touches the state store: it reports an [`Outcome`] to the
//! dispatcher, which records it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_core::Stack;
use berth_core::record::DeployStatus;
use berth_core::vars;

use crate::docker::{self, Engine, ProjectRef};
use crate::git::Repo;
use crate::lock;
use crate::process::RunError;

/// Everything one deploy needs.
pub struct Job {
    pub stack: Stack,
    pub commit: String,
    /// `--set` variables (or the replayed ones of the last success).
    pub overrides: BTreeMap<String, String>,
    /// Repo-relative paths changed since the stack's last successful deploy.
    pub changed_paths: Vec<String>,
    pub engine: Engine,
}

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
}

/// Where stack `name` is checked out under the state dir.
pub fn work_dir(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("work").join(name)
}

struct Run<'a> {
    log: String,
    secrets: Vec<String>,
    deadline: Instant,
    job: &'a Job,
}

impl Run<'_> {
    fn note(&mut self, line: &str) {
        self.log.push_str(line);
        self.log.push('\n');
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    fn compose(&mut self, project: &ProjectRef<'_>, args: &[&str], what: &str) -> Result<String, String> {
        let left = self.remaining();
        if left.is_zero() {
            return Err(format!("timed out after {}s before {what}", self.job.stack.timeout.as_secs()));
        }
        match self.job.engine.run_compose(project, args, left) {
            Ok((line, out)) => {
                self.note(&format!("$ {line}"));
                self.log.push_str(&out.stdout);
                self.log.push_str(&out.stderr);
                if out.success() { Ok(out.stdout) } else { Err(format!("{what} failed: {}", out.last_error_line())) }
            }
            Err(RunError::Timeout { output, timeout, .. }) => {
                self.log.push_str(&output.stdout);
                self.log.push_str(&output.stderr);
                Err(format!("{what} timed out after {}s (stack timeout)", timeout.as_secs()))
            }
            Err(e) => Err(format!("{what}: {e}")),
        }
    }

    fn redacted_log(&self) -> String {
        let mut log = self.log.clone();
        for s in &self.secrets {
            log = log.replace(s.as_str(), vars::REDACTED);
        }
        log
    }
}

/// Deploy one stack. Never panics on docker or git failures: they become a failed outcome.
pub fn run(repo: &Repo, state_dir: &Path, job: &Job) -> Outcome {
    let mut r = Run { log: String::new(), secrets: Vec::new(), deadline: Instant::now() + job.stack.timeout, job };
    let mut resolved = BTreeMap::new();
    let result = steps(repo, state_dir, &mut r, &mut resolved);
    let vars = vars::redact(&resolved);
    match result {
        Ok(recreated) => {
            Outcome { status: DeployStatus::Succeeded, reason: None, log: r.redacted_log(), vars, recreated }
        }
        Err(reason) => {
            r.note(&format!("error: {reason}"));
            let reason = r.secrets.iter().fold(reason, |acc, s| acc.replace(s.as_str(), vars::REDACTED));
            Outcome {
                status: DeployStatus::Failed,
                reason: Some(reason),
                log: r.redacted_log(),
                vars,
                recreated: Vec::new(),
            }
        }
    }
}

fn steps(
    repo: &Repo,
    state_dir: &Path,
    r: &mut Run<'_>,
    resolved: &mut BTreeMap<String, String>,
) -> Result<Vec<String>, String> {
    let job = r.job;
    let stack = &job.stack;
    let _lock = lock::lock(state_dir, &stack.name, r.remaining()).map_err(|e| e.to_string())?;

    let dir = work_dir(state_dir, &stack.name);
    r.note(&format!("checkout {} into {}", job.commit, dir.display()));
    repo.checkout_into(&job.commit, &dir).map_err(|e| format!("checkout of {} failed: {e}", short(&job.commit)))?;

    for f in &stack.env_files {
        let text = std::fs::read_to_string(dir.join(f)).map_err(|e| format!("cannot read env file {f}: {e}"))?;
        let parsed = vars::parse_env_file(&text).map_err(|(line, m)| format!("{f}:{line}: {m}"))?;
        resolved.extend(parsed);
    }
    resolved.extend(stack.env.clone());
    resolved.extend(job.overrides.clone());
    r.secrets =
        resolved.iter().filter(|(k, v)| vars::is_secret_key(k) && v.len() >= 4).map(|(_, v)| v.clone()).collect();

    let files: Vec<PathBuf> = stack.compose_files.iter().map(|f| dir.join(f)).collect();
    let stack_dir = dir.join(&stack.path);
    let project = ProjectRef { name: &stack.name, files: &files, dir: &stack_dir, vars: resolved };

    let config = r.compose(&project, &["config"], "compose config (the stack's compose files were rejected)")?;
    r.compose(&project, &["up", "--detach", "--remove-orphans"], "compose up")?;

    // `up` leaves a container alone when only a bind-mounted file changed: recreate those services.
    let changed: Vec<PathBuf> = job.changed_paths.iter().map(|p| dir.join(p)).collect();
    let mut services: Vec<String> = match docker::bind_sources(&config) {
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
    if !services.is_empty() {
        let mut args = vec!["up", "--detach", "--no-deps", "--force-recreate"];
        // An empty name stands for "the whole stack" (we could not tell which services).
        args.extend(services.iter().filter(|s| !s.is_empty()).map(String::as_str));
        r.note(&format!("bind-mounted files changed; recreating: {}", services.join(" ")));
        r.compose(&project, &args, "recreating services with changed bind mounts")?;
    }
    Ok(services)
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}
