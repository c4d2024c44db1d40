//! Commit signatures before a deploy: which `verify_commits` settings apply to a commit, their key
//! material (a path or a secret), and git's own `verify-commit` (through `git`).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use berth_core::config::KeyRef;
use berth_core::record::{DeployStatus, History};
use berth_core::signing::{self, Format, VerifyCommits};

use crate::error::{Error, Result};
use crate::git::{Repo, Signers};
use crate::state::State;
use crate::workspace::{Snapshot, Workspace};

/// The `verify_commits` of every configuration that runs now: those of the commits each stack last
/// deployed successfully (commits this repository does not have belong to another one).
pub fn running(ws: &Workspace, history: &HashMap<String, History>) -> Vec<Option<VerifyCommits>> {
    let commits: BTreeSet<&str> =
        history.values().filter_map(|h| h.last_success.as_ref()).map(|(c, _)| c.as_str()).collect();
    commits.into_iter().filter_map(|c| ws.snapshot(c).ok()).map(|s| s.project.verify_commits.clone()).collect()
}

/// Did one of `stacks` deploy `commit` successfully before?
pub fn deployed_before(state: &State, stacks: &[String], commit: &str) -> bool {
    stacks.iter().any(|s| {
        state
            .history(s, 100_000)
            .is_ok_and(|h| h.iter().any(|r| r.commit == commit && r.status == DeployStatus::Succeeded))
    })
}

/// Is `commit` signed by a key each of `required` allows? `Err` is the refusal, ready to record and show.
pub fn check(repo: &Repo, commit: &str, required: &[&VerifyCommits]) -> std::result::Result<(), String> {
    for v in required {
        check_one(repo, commit, v).map_err(|why| signing::refusal(commit, &why))?;
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
    let running = running(ws, &ws.history(state)?);
    let required = signing::required(None, running.iter().map(Option::as_ref), snap.project.verify_commits.as_ref());
    let Err(refusal) = check(&ws.repo, &snap.commit, &required) else { return Ok(()) };
    // Recorded as the controller records it for the checkout (`berth serve` calls that repository `default`).
    state.reject_config("default", &snap.commit, std::slice::from_ref(&refusal))?;
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
