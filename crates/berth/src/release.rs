//! Versioned releases: patch tags for pushes that deploy to auto environments,
//! minor tags for promotions, all annotated, pushed when the remote accepts it.

use berth_core::version::Version;

use crate::git::Repo;
use crate::state::{Release, State, now};

/// The version after the newest release tag in `repo` (`v0.1.0` when there is none).
pub fn next(repo: &Repo, minor: bool) -> Result<Version, crate::git::GitError> {
    next_after(repo, None, minor)
}

/// The version after the newest release in `repo`'s tags and in berth's release records, so
/// versions always increase even where a tag never reached the remote or went missing.
pub fn next_after(repo: &Repo, state: Option<&State>, minor: bool) -> Result<Version, crate::git::GitError> {
    let mut names: Vec<String> = repo.tags()?.into_iter().map(|(t, _)| t).collect();
    if let Some(s) = state {
        match s.releases(None) {
            Ok(rs) => names.extend(rs.into_iter().map(|r| r.tag)),
            Err(e) => tracing::warn!(error = %e, "cannot read the release records; versions come from tags only"),
        }
    }
    Ok(match Version::latest(names.iter().map(String::as_str)) {
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

/// How a tag reaches the remote (the checkout's `origin`, or a mirror with its credentials).
pub type Push<'a> = &'a dyn Fn(&str) -> Result<(), crate::git::GitError>;

/// Tag `commit` as `version`, push it if the remote accepts, and record the release.
pub fn make(
    repo: &Repo,
    state: &State,
    version: Version,
    commit: &str,
    meta: &Meta<'_>,
) -> Result<Release, crate::git::GitError> {
    make_with(repo, state, version, commit, meta, &|t| repo.push_tag(t))
}

/// [`make`], pushing through `push`.
pub fn make_with(
    repo: &Repo,
    state: &State,
    version: Version,
    commit: &str,
    meta: &Meta<'_>,
    push: Push<'_>,
) -> Result<Release, crate::git::GitError> {
    let Meta { env, kind, from_tag, by } = *meta;
    let tag = version.to_string();
    let message = match from_tag {
        Some(f) => format!("berth: {kind} of {f} to {env} by {by}"),
        None => format!("berth: {kind} to {env} by {by}"),
    };
    repo.create_tag(&tag, commit, &message)?;
    let (pushed, note) = match push(&tag) {
        Ok(()) => (true, None),
        Err(e) => {
            tracing::warn!(%tag, error = %e, "the tag was not pushed; it is kept locally");
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
    tag_auto_deploy_with(repo, state, project, commit, deployed, &|t| repo.push_tag(t))
}

/// [`tag_auto_deploy`], pushing through `push` (`berth serve`: its mirror).
pub fn tag_auto_deploy_with(
    repo: &Repo,
    state: &State,
    project: &berth_core::Project,
    commit: &str,
    deployed: &[String],
    push: Push<'_>,
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
    let version = next_after(repo, Some(state), false).ok()?;
    let by = actor();
    let meta = Meta { env: envs[0], kind: "patch", from_tag: None, by: &by };
    let first = match make_with(repo, state, version, commit, &meta, push) {
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
