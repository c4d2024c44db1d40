//! `berth ci status|watch|plan`: the CI state of a commit, for people and scripts; a PR plan posted from CI.

use std::time::{Duration, Instant};

use berth_core::config::{CiToml, SecretRef};

use crate::ci::{CiState, Gate};
use crate::cli::{CiCommand, CiTarget};
use crate::error::{Error, Result, exit};
use crate::output::short;
use crate::workspace::Workspace;

/// Exit code of `ci status` while CI is still running.
const PENDING: i32 = 4;
/// How long `ci status` retries a flaky API.
const LOOK: Duration = Duration::from_secs(60);

fn gate(ws: &Workspace, t: &CiTarget, timeout: Option<&str>) -> Result<Gate> {
    let configured = ws.snapshot("HEAD").ok().and_then(|s| {
        let p = &s.project;
        p.environments
            .iter()
            .find_map(|e| e.require_ci.clone())
            .or_else(|| p.stacks.iter().find_map(|st| st.require_ci.clone()))
    });
    let mut ci = match (&t.provider, configured) {
        (Some(p), _) => CiToml {
            provider: p.clone(),
            url: None,
            repo: None,
            token: None,
            timeout: None,
            report: None,
            contexts: None,
            ignore_contexts: None,
            gate_rollbacks: None,
        },
        (None, Some(c)) => c,
        (None, None) => {
            return Err(Error::Usage("no require_ci in berth.toml: give --provider (and --url)".into()));
        }
    };
    if t.url.is_some() {
        ci.url = t.url.clone();
    }
    if t.ci_repo.is_some() {
        ci.repo = t.ci_repo.clone();
    }
    if ci.token.is_none() && std::env::var_os(&t.token_env).is_some() {
        ci.token = Some(SecretRef { file: None, env: Some(t.token_env.clone()) });
    }
    if let Some(tm) = timeout {
        ci.timeout = Some(tm.to_string());
    }
    Gate::resolve(&ci, ws.repo.remote_url().as_deref()).map_err(Error::Usage)
}

pub fn run(ws: &Workspace, command: &CiCommand) -> Result<i32> {
    let (t, timeout) = match command {
        CiCommand::Status { target } => (target, None),
        CiCommand::Watch { target, timeout } => (target, Some(timeout.as_str())),
        CiCommand::Plan { target, pr, base, no_secrets, dry_run } => {
            let gate = gate(ws, target, None)?;
            let head = target.commit.as_deref().unwrap_or("HEAD");
            let ask =
                crate::pr::Ask { number: *pr, head, base: base.as_deref(), no_secrets: *no_secrets, dry_run: *dry_run };
            return crate::pr::ci_plan(ws, &gate, &ask);
        }
    };
    let gate = gate(ws, t, timeout)?;
    let commit = ws.repo.resolve(t.commit.as_deref().unwrap_or("HEAD"))?;
    let mut log = |m: &str| eprintln!("{m}");
    println!("{} CI of {}/{} at {}", gate.provider, gate.owner, gate.name, short(&commit));
    match timeout {
        None => {
            let client = gate.client().map_err(Error::Io)?;
            // One look, but a flaky API gets a minute of retries.
            let deadline = Instant::now() + LOOK;
            let state = crate::bridge::block_on(gate.state(&client, &commit, deadline, &mut log))
                .map_err(|e| Error::Io(e.to_string()))?;
            Ok(match state {
                CiState::Success => {
                    println!("success");
                    exit::OK
                }
                CiState::Pending(why) => {
                    println!("pending: {why}");
                    PENDING
                }
                CiState::Failure(why) => {
                    println!("failure: {why}");
                    exit::FAILED
                }
            })
        }
        Some(_) => match crate::bridge::block_on(gate.wait(&commit, &mut |m: &str| println!("{m}"))) {
            Ok(()) => {
                println!("success");
                Ok(exit::OK)
            }
            Err(why) => {
                println!("{why}");
                Ok(exit::FAILED)
            }
        },
    }
}
