//! Image updates under `berth serve`: each repository's images checked every `[updates] poll`
//! and whenever a registry reports a pushed tag, written back (a commit on the tracked branch, or
//! pull requests), and the repository synced so the push path deploys what was committed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{Controller, RepoHandle, Shared, Target, Want};
use crate::updates::{self, pulls, writeback};

/// Why a check runs.
#[derive(Debug, Clone)]
pub enum Wake {
    /// A registry reported pushes to these repositories (`host/repository` or `repository`).
    Pushed(Vec<String>),
}

pub async fn run(shared: Arc<Shared>, mut wake: mpsc::UnboundedReceiver<Wake>) {
    let ctl = Controller { shared: shared.clone() };
    // When each repository last asked each registry ("" for those on the default interval).
    let mut last: HashMap<(usize, String), Instant> = HashMap::new();
    loop {
        let woken = tokio::select! {
            w = wake.recv() => match w {
                Some(w) => Some(w),
                None => return,
            },
            _ = tokio::time::sleep(Duration::from_secs(5)) => None,
        };
        for (i, repo) in shared.repos.iter().enumerate() {
            let Some((commit, project)) = repo.current.read().ok().and_then(|c| c.clone()) else { continue };
            let ruled = !project.images.is_empty() || project.stacks.iter().any(|s| !s.images.is_empty());
            let hosts = match &woken {
                // A notification: every registry now.
                Some(_) => Some(vec!["*".to_string()]),
                None => berth_core::images::settings::due(&project.updates, &|key| {
                    last.get(&(i, key.to_string())).map(Instant::elapsed)
                }),
            };
            let Some(hosts) = hosts.filter(|_| ruled) else { continue };
            for h in &hosts {
                last.insert((i, if h == "*" { String::new() } else { h.clone() }), Instant::now());
            }
            let asks_all = woken.is_some();
            if let Some(Wake::Pushed(what)) = &woken {
                tracing::info!(repo = %repo.spec.name, pushed = ?what, "a registry reported new tags; checking image updates");
            }
            let r = repo.clone();
            let done = tokio::task::spawn_blocking(move || {
                let asks =
                    |registry: &str| asks_all || berth_core::images::settings::asks(&project.updates, &hosts, registry);
                check_and_write(&r, &commit, &asks)
            })
            .await;
            match done {
                Ok(Ok(true)) => {
                    let want = Want::Reconcile { only: None };
                    if let Err(e) = ctl.request(repo, want, Target::Tip, "updates").await {
                        tracing::error!(repo = %repo.spec.name, error = %e, "image updates committed, but the sync failed");
                    }
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::error!(repo = %repo.spec.name, error = %e, "image updates"),
                Err(e) => tracing::error!(repo = %repo.spec.name, error = %e, "image updates stopped"),
            }
        }
    }
}

/// Check `commit`'s images whose registry `asks` says, and write the updates back; true when a
/// commit was pushed to the tracked branch.
fn check_and_write(repo: &RepoHandle, commit: &str, asks: &dyn Fn(&str) -> bool) -> Result<bool, crate::error::Error> {
    let snap = repo.ws.snapshot(commit)?;
    let checked = updates::check_registries(&repo.ws, &snap, &[], true, asks)?;
    for r in checked.rows.iter().filter(|r| r.rule.is_some()) {
        match (&r.error, &r.update) {
            (Some(e), _) => {
                tracing::warn!(stack = %r.stack, service = %r.service, image = %r.image, error = %e, "image update check")
            }
            (None, Some(u)) => {
                tracing::info!(stack = %r.stack, service = %r.service, image = %r.image, from = %r.current, to = %u, "image update found")
            }
            (None, None) => {}
        }
    }
    let who = writeback::committer(&snap.project);
    let committed = writeback::commit_to(&repo.mirror, &snap, &repo.spec.branch, &who, &checked.rows)?;
    let base = match &committed {
        Some(c) => {
            tracing::info!(repo = %repo.spec.name, commit = %c, "image updates committed and pushed");
            // The new commit is in the mirror already (built there); requests branch off it.
            repo.ws.snapshot(c)?
        }
        None => snap,
    };
    for o in pulls::open(&repo.mirror, &base, &repo.spec.branch, &who, &checked.rows)? {
        tracing::info!(stack = %o.stack, branch = %o.branch, number = ?o.number, how = o.how, "image update pull request");
    }
    Ok(committed.is_some())
}
