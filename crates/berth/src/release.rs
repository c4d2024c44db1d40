//! Versioned releases: patch tags for pushes that deploy to auto environments,
//! minor tags for promotions, all annotated, pushed when the remote accepts it.

use berth_core::version::Version;

use crate::git::Repo;
use crate::state::{Release, State, now};

/// The version after the newest release tag in `repo` (`v0.1.0` when there is none).
pub fn next(repo: &Repo, minor: bool) -> Result<Version, crate::git::GitError> {
    let tags = repo.tags()?;
    Ok(match Version::latest(tags.iter().map(|(t, _)| t.as_str())) {
        Some(v) if minor => v.next_minor(),
        Some(v) => v.next_patch(),
        None => Version { major: 0, minor: 1, patch: 0 },
    })
}

/// The release tag already on `commit`, if any.
pub fn tag_of(repo: &Repo, commit: &str) -> Option<String> {
    repo.tags()
        .ok()?
        .into_iter()
        .filter(|(t, c)| c == commit && Version::parse(t).is_some())
        .map(|(t, _)| t)
        .max_by_key(|t| Version::parse(t))
}

/// What a release is: for which environment, why, from which tag, by whom.
pub struct Meta<'a> {
    pub env: &'a str,
    /// `patch`, `promotion` or `deploy`.
    pub kind: &'a str,
    pub from_tag: Option<&'a str>,
    pub by: &'a str,
}

/// Tag `commit` as `version`, push it if the remote accepts, and record the release.
pub fn make(
    repo: &Repo,
    state: &State,
    version: Version,
    commit: &str,
    meta: &Meta<'_>,
) -> Result<Release, crate::git::GitError> {
    let Meta { env, kind, from_tag, by } = *meta;
    let tag = version.to_string();
    let message = match from_tag {
        Some(f) => format!("berth: {kind} of {f} to {env} by {by}"),
        None => format!("berth: {kind} to {env} by {by}"),
    };
    repo.create_tag(&tag, commit, &message)?;
    let (pushed, note) = match repo.push_tag(&tag) {
        Ok(()) => (true, None),
        Err(e) => {
            tracing::warn!(%tag, error = %e, "the remote refused the tag; it is kept locally");
            (false, Some(format!("not pushed, kept locally: {e}")))
        }
    };
    let release = Release {
        tag,
        commit: commit.to_string(),
        env: env.to_string(),
        kind: kind.to_string(),
        from_tag: from_tag.map(str::to_string),
        by: by.to_string(),
        at: now(),
        pushed,
        note,
    };
    if let Err(e) = state.add_release(&release) {
        tracing::error!(error = %e, "cannot record the release");
    }
    Ok(release)
}

/// Who is acting, for the record.
pub fn actor() -> String {
    std::env::var("BERTH_ACTOR").or_else(|_| std::env::var("USER")).unwrap_or_else(|_| "unknown".into())
}

/// After a push (or an apply) deployed `deployed` stacks at `commit`: if any belongs to an
/// `auto` environment and the commit has no release tag yet, tag it with the next patch
/// version and record it for each such environment.
pub fn tag_auto_deploy(
    repo: &Repo,
    state: &State,
    project: &berth_core::Project,
    commit: &str,
    deployed: &[String],
) -> Option<Release> {
    let mut envs: Vec<&str> = Vec::new();
    for name in deployed {
        let Some(s) = project.stack(name) else { continue };
        for e in project.environments_of(s).into_iter().filter(|e| e.auto) {
            if !envs.contains(&e.name.as_str()) {
                envs.push(&e.name);
            }
        }
    }
    if envs.is_empty() || tag_of(repo, commit).is_some() {
        return None;
    }
    let version = next(repo, false).ok()?;
    let by = actor();
    let meta = Meta { env: envs[0], kind: "patch", from_tag: None, by: &by };
    let first = match make(repo, state, version, commit, &meta) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot tag the release");
            return None;
        }
    };
    for env in &envs[1..] {
        let _ = state.add_release(&Release { env: env.to_string(), ..first.clone() });
    }
    Some(first)
}
