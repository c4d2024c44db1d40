//! Commit signatures before a deploy: which `verify_commits` settings apply to a commit, their key
//! material (a path or a secret), git's own `verify-commit` (through `git`), and the `berth/signature`
//! commit status a refused commit gets on the forge.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use berth_core::Project;
use berth_core::config::KeyRef;
use berth_core::record::{DeployStatus, History};
use berth_core::signing::{self, Format, VerifyCommits};
use std::time::{Duration, Instant};

use crate::bridge::block_on;
use crate::ci::{Gate, Report, Status};

use crate::error::{Error, Result};
use crate::git::{Repo, Signers};
use crate::state::State;
use crate::workspace::{Snapshot, Workspace};

/// The context of the commit status a refused commit gets.
pub const CONTEXT: &str = "berth/signature";
/// How long posting the refusal to one forge may take (retries included).
const POST_WITHIN: Duration = Duration::from_secs(15);

/// A commit refused by `verify_commits`.
#[derive(Debug, Clone)]
pub struct Refused {
    /// Why, in git's (or gpg's) words.
    pub why: String,
    /// What is recorded and shown: the commit and why.
    pub refusal: String,
}

impl Refused {
    pub fn new(commit: &str, why: String) -> Refused {
        Refused { refusal: signing::refusal(commit, &why), why }
    }

    /// The description of the `berth/signature` status: unsigned, or a key not allowed, and git's words.
    pub fn description(&self) -> String {
        let why = self.why.as_str();
        let what = if why == crate::git::NO_SIGNATURE {
            return "not deployed: the commit is unsigned".into();
        } else if why.contains(crate::git::KEY_NOT_LISTED) || why.contains("No public key") {
            "signed by a key that is not allowed"
        } else {
            "signature not verified"
        };
        format!("not deployed: {what} ({why})")
    }
}

/// The configurations that run now: those of the commits each stack last deployed successfully
/// (commits this repository does not have belong to another one).
pub fn running_projects(ws: &Workspace, history: &HashMap<String, History>) -> Vec<Arc<Snapshot>> {
    let commits: BTreeSet<&str> =
        history.values().filter_map(|h| h.last_success.as_ref()).map(|(c, _)| c.as_str()).collect();
    commits.into_iter().filter_map(|c| ws.snapshot(c).ok()).collect()
}

/// The `verify_commits` of every configuration that runs now.
pub fn running(running: &[Arc<Snapshot>]) -> Vec<Option<VerifyCommits>> {
    running.iter().map(|s| s.project.verify_commits.clone()).collect()
}

/// Where a refusal is posted: `extra` (the `[[repo]]`'s forge), then the CI gates that report
/// (`require_ci.report = true`) in the configurations that run now, each repository once. Never the
/// refused commit's own configuration: an unsigned commit must not choose where berth's tokens go.
pub fn status_targets<'a>(
    ws: &Workspace,
    running: impl IntoIterator<Item = &'a Project>,
    extra: Vec<Gate>,
) -> Vec<Gate> {
    let mut out = extra;
    for p in running {
        for st in &p.stacks {
            match ws.ci_gate(p, st) {
                Ok(Some(g)) if g.report && !out.iter().any(|o| o.same_target(&g)) => out.push(g),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot post the signature status there"),
            }
        }
    }
    out
}

/// Post the refusal of `commit` as a `berth/signature` failure to each target; the warnings of the
/// posts that failed (the refusal stands either way).
pub fn post_refusal(targets: &[Gate], commit: &str, refused: &Refused) -> Vec<String> {
    let description = refused.description();
    let status = Status { context: CONTEXT, state: Report::Failure, description: &description, target_url: None };
    let mut warnings = Vec::new();
    for g in targets {
        let mut notes = Vec::new();
        let posted =
            block_on(g.report(commit, &status, Instant::now() + POST_WITHIN, &mut |m: &str| notes.push(m.to_string())));
        for n in notes {
            tracing::info!("{n}");
        }
        if let Err(e) = posted {
            tracing::warn!(error = %e, forge = %g.provider, "cannot post the signature status");
            warnings
                .push(format!("could not post the {CONTEXT} status to {} ({}/{}): {e}", g.provider, g.owner, g.name));
        }
    }
    warnings
}

/// Did one of `stacks` deploy `commit` successfully before?
pub fn deployed_before(state: &State, stacks: &[String], commit: &str) -> bool {
    stacks.iter().any(|s| {
        state
            .history(s, 100_000)
            .is_ok_and(|h| h.iter().any(|r| r.commit == commit && r.status == DeployStatus::Succeeded))
    })
}

/// Is `commit` signed by a key each of `required` allows? `Err` is the refusal.
pub fn check(repo: &Repo, commit: &str, required: &[&VerifyCommits]) -> std::result::Result<(), Refused> {
    for v in required {
        check_one(repo, commit, v).map_err(|why| Refused::new(commit, why))?;
    }
    Ok(())
}

fn check_one(repo: &Repo, commit: &str, v: &VerifyCommits) -> std::result::Result<(), String> {
    let what = match v.format {
        Format::Ssh => "allowed_signers",
        Format::Gpg => "keyring",
    };
    let scratch = Scratch::new().map_err(|e| format!("cannot make a folder for the keys: {e}"))?;
    let keys: PathBuf = match &v.keys {
        KeyRef::Path(p) => PathBuf::from(p),
        KeyRef::Secret(r) => {
            let text = crate::secrets::resolve(r).map_err(|e| format!("{what}: {e}"))?;
            let file = scratch.0.join("keys");
            std::fs::write(&file, format!("{text}\n")).map_err(|e| format!("cannot write the keys: {e}"))?;
            file
        }
    };
    let verdict = match v.format {
        Format::Ssh => {
            if !keys.is_file() {
                return Err(format!("the allowed signers file {} cannot be read", keys.display()));
            }
            repo.verify_commit(commit, &Signers::Ssh(&keys))
        }
        Format::Gpg if keys.is_dir() => repo.verify_commit(commit, &Signers::Gpg(&keys)),
        Format::Gpg => {
            let home = scratch.0.join("gnupg");
            make_private_dir(&home).map_err(|e| format!("cannot make a GNUPGHOME: {e}"))?;
            crate::git::import_gpg_keys(&home, &keys)?;
            repo.verify_commit(commit, &Signers::Gpg(&home))
        }
    };
    verdict.map_err(|e| e.to_string())?
}

/// The CLI's gate before planning `snap`: refuse (recorded as a rejected configuration and notified)
/// a commit not signed as the running configurations and its own ask. A rollback or heal to a commit
/// one of the `stacks` deployed successfully passes unchecked.
pub fn gate(ws: &Workspace, state: &State, snap: &Snapshot, stacks: &[String], trigger: &str) -> Result<()> {
    if signing::skips_check(trigger, &snap.commit, |c| deployed_before(state, stacks, c)) {
        return Ok(());
    }
    let projects = running_projects(ws, &ws.history(state)?);
    let running = running(&projects);
    let required = signing::required(None, running.iter().map(Option::as_ref), snap.project.verify_commits.as_ref());
    let Err(refused) = check(&ws.repo, &snap.commit, &required) else { return Ok(()) };
    let refusal = refused.refusal.clone();
    // Recorded as the controller records it for the checkout (`berth serve` calls that repository `default`).
    state.reject_config("default", &snap.commit, std::slice::from_ref(&refusal))?;
    for w in post_refusal(&status_targets(ws, projects.iter().map(|s| &s.project), Vec::new()), &snap.commit, &refused)
    {
        eprintln!("warning: {w}");
    }
    let notify = ws.snapshot("HEAD").map(|s| s.project.notify.clone()).unwrap_or_default();
    let notifier = crate::notify::Notifier::new(notify);
    notifier.send(&rejected(&snap.commit, &refusal));
    notifier.flush(std::time::Duration::from_secs(15));
    Err(Error::Unsigned(refusal))
}

/// The `config_rejected` notification of a refused commit.
pub fn rejected(commit: &str, refusal: &str) -> crate::notify::Event {
    crate::notify::Event {
        event: "config_rejected".into(),
        stack: None,
        server: None,
        commit: Some(commit.to_string()),
        deploy_id: None,
        detail: Some(refusal.to_string()),
        changes: None,
        pending: None,
        at: crate::state::now(),
    }
}

/// A private temporary folder, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> std::io::Result<Scratch> {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "berth-keys-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        make_private_dir(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// gpg refuses a home others can read.
fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(dir)
}
