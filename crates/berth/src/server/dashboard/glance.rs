//! State at a glance: what runs, what git wants, the last attempt when it differs, the
//! controller's own troubles (banners), timestamps and links to commits on the forge.

use std::collections::{BTreeMap, HashMap};

use berth_core::plan::{Action, Reason, Step};
use berth_core::record::{DeployRecord, DeployStatus};

use super::pages::{Badge, badge, short, status_badge};
use crate::controller::{RepoHandle, Shared};

/// A point in time: machine-readable, absolute (UTC; the script shows it in the reader's zone) and relative.
#[derive(Clone, Default)]
pub struct Stamp {
    pub iso: String,
    pub text: String,
    pub ago: String,
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

pub fn stamp(unix: i64) -> Stamp {
    let (y, mo, d) = civil(unix.div_euclid(86_400));
    let s = unix.rem_euclid(86_400);
    let (h, mi, se) = (s / 3600, s % 3600 / 60, s % 60);
    Stamp {
        iso: format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{se:02}Z"),
        text: format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{se:02} UTC"),
        ago: crate::output::age(unix),
    }
}

/// The web page of `commit` on the forge `remote` points at (GitHub, Gitea, Forgejo, GitLab), when it is one.
pub fn commit_link(remote: &str, commit: &str) -> Option<String> {
    let r = remote.trim().trim_end_matches('/').trim_end_matches(".git");
    let (host, path) = if let Some(rest) = r.strip_prefix("https://").or_else(|| r.strip_prefix("http://")) {
        rest.split_once('/')?
    } else if let Some(rest) = r.strip_prefix("ssh://") {
        let (host, path) = rest.split_once('/')?;
        (host, path)
    } else if !r.contains("://") && r.contains(':') && !r.starts_with('/') {
        r.split_once(':')? // scp-like: git@host:owner/repo
    } else {
        return None;
    };
    // Drop credentials and an ssh port; keep an http port.
    let host = host.rsplit('@').next()?;
    let host = if remote.starts_with("http") { host } else { host.split(':').next()? };
    let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-._~/:".contains(c));
    if !ok(host) || !ok(path) || path.split('/').filter(|p| !p.is_empty()).count() < 2 || host.contains('/') {
        return None;
    }
    let scheme = if remote.starts_with("http://") { "http" } else { "https" };
    let sep = if host.contains("gitlab") { "/-/commit/" } else { "/commit/" };
    Some(format!("{scheme}://{host}/{path}{sep}{commit}"))
}

/// What runs: the last verified deploy.
pub struct Running {
    pub id: i64,
    pub commit: String,
    pub at: Stamp,
    pub drifted: bool,
}

/// What git wants, compared with what runs.
pub struct Wants {
    /// `in_sync`, `behind`, `pending` or `unknown` (also the CSS class).
    pub key: &'static str,
    pub label: String,
    pub detail: String,
}

/// The last attempt, shown when it is not the deploy that runs.
pub struct Attempt {
    pub id: i64,
    pub badge: Badge,
    pub reason: String,
    pub at: Stamp,
    /// It got as far as the engine (anything before `up` leaves what runs alone).
    pub touched: bool,
}

/// One stack at a glance.
pub struct Glance {
    pub badge: Badge,
    pub running: Option<Running>,
    pub wants: Wants,
    pub attempt: Option<Attempt>,
}

/// Phases that change what runs on the engine.
const TOUCHING: [&str; 6] = ["start-first", "up", "converging", "smoke", "post-deploy", "rollback"];

/// Each stack's plan step at the repository's current commit (the controller's own decision).
pub fn plan_steps(shared: &Shared, repo: &RepoHandle) -> (String, HashMap<String, Step>) {
    let Some((commit, _)) = repo.current.read().ok().and_then(|c| c.clone()) else { return Default::default() };
    let Ok(snap) = repo.ws.snapshot(&commit) else { return (commit, HashMap::new()) };
    let Ok(history) = shared.state(|s| repo.ws.history(s)) else { return (commit, HashMap::new()) };
    let steps = match repo.ws.plan(&snap, &history, None, &BTreeMap::new()) {
        Ok((plan, _)) => plan.steps.into_iter().map(|s| (s.stack.clone(), s)).collect(),
        Err(_) => HashMap::new(),
    };
    (commit, steps)
}

/// How far behind the tip a deployed commit is (`None` when git cannot tell).
pub type Distance<'a> = &'a dyn Fn(&str) -> Option<usize>;

/// Put together a stack's glance from its newest deploy, its last success and the plan's step.
#[allow(clippy::too_many_arguments)]
pub fn glance(
    shared: &Shared,
    latest: Option<&DeployRecord>,
    success: Option<&DeployRecord>,
    step: Option<&Step>,
    tip: &str,
    manual: bool,
    drifted: bool,
    distance: Distance<'_>,
) -> Glance {
    let running = success.map(|s| Running {
        id: s.id,
        commit: short(&s.commit),
        at: stamp(s.finished_at.unwrap_or(s.started_at)),
        drifted,
    });
    let attempt = latest.filter(|l| success.is_none_or(|s| s.id != l.id)).map(|l| {
        let phases = shared.state(|s| s.phases(l.id)).unwrap_or_default();
        Attempt {
            id: l.id,
            badge: status_badge(l.status),
            reason: l.reason.clone().unwrap_or_default(),
            at: stamp(l.finished_at.unwrap_or(l.started_at)),
            touched: phases.iter().any(|(p, _)| TOUCHING.contains(&p.as_str())),
        }
    });
    let in_flight = latest.filter(|l| !l.status.is_final());
    let wants = match (in_flight, success, step) {
        (Some(l), _, _) => Wants {
            key: "pending",
            label: if l.status == DeployStatus::Queued { "deploy queued" } else { "deploying" }.into(),
            detail: format!("#{} at {}", l.id, short(&l.commit)),
        },
        (None, Some(s), Some(st)) if st.config_hash == s.config_hash => Wants {
            key: "in_sync",
            label: "in sync".into(),
            detail: if s.commit == tip || tip.is_empty() {
                String::new()
            } else {
                format!("git is at {}; nothing of this stack changed since {}", short(tip), short(&s.commit))
            },
        },
        (None, _, Some(st)) => {
            let why = match (st.action, st.reason) {
                (_, Reason::FailedBefore) => "this configuration failed before; berth retries it only once it changes",
                (_, Reason::Paused) => "paused: nothing deploys until it is resumed",
                (Action::Manual, _) | (_, Reason::Manual) => "manual: deploys only when asked",
                (_, Reason::DependencyFailed) => "a stack it comes after failed",
                (_, Reason::New) => "not deployed yet",
                _ => "a deploy is due",
            };
            let behind = success.and_then(|s| distance(&s.commit));
            Wants {
                key: "behind",
                label: match behind {
                    Some(n) if n > 0 => format!("behind by {n} commit{}", if n == 1 { "" } else { "s" }),
                    _ if success.is_none() => "not deployed".into(),
                    _ => "behind".into(),
                },
                detail: format!("git wants {}: {why}", short(tip)),
            }
        }
        (None, _, None) => Wants { key: "unknown", label: "unknown".into(), detail: String::new() },
    };
    let badge = match (success, latest.map(|l| l.status)) {
        (None, None) if manual => badge("manual"),
        (None, None) => badge("never"),
        (None, Some(s)) => status_badge(s),
        (Some(_), Some(s)) if !s.is_final() => badge("deploying"),
        // A failed attempt that touched the engine and was not rolled back: what runs is in doubt.
        (Some(_), Some(DeployStatus::Failed | DeployStatus::Interrupted))
            if attempt.as_ref().is_some_and(|a| a.touched) =>
        {
            badge("failed")
        }
        (Some(_), _) if drifted => badge("drifted"),
        (Some(_), _) => badge("ok"),
    };
    Glance { badge, running, wants, attempt }
}

/// Something wrong with the controller or a stack that the operator should see on every page.
pub struct Banner {
    /// `error`, `warn` or `info` (also the CSS class).
    pub level: &'static str,
    pub title: String,
    pub text: String,
    pub lines: Vec<String>,
    pub link: Option<(String, String)>,
}

/// The banners: rejected berth.toml, failing syncs, deploys waiting for CI, paused stacks.
/// `only` limits them to one stack (and its repository).
pub fn banners(shared: &Shared, only: Option<&str>) -> Vec<Banner> {
    let mut out = Vec::new();
    let rejections = shared.state(|s| s.rejections(50)).unwrap_or_default();
    for r in &shared.repos {
        if only.is_some_and(|s| {
            r.current.read().ok().and_then(|c| c.as_ref().and_then(|(_, p)| p.stack(s).cloned())).is_none()
        }) {
            continue;
        }
        let tip = r.mirror.tip().unwrap_or_default();
        let running = r.current.read().ok().and_then(|c| c.as_ref().map(|(c, _)| short(c))).unwrap_or_default();
        let rejected = rejections.iter().find(|x| x.0 == r.spec.name).filter(|x| !tip.is_empty() && x.1 == tip);
        if let Some((_, commit, errors, at)) = rejected {
            let t = stamp(*at);
            out.push(Banner {
                level: "error",
                title: format!("berth.toml of {} rejected at {}", r.spec.name, short(commit)),
                text: format!(
                    "Since {} ({}). berth keeps running the configuration of {running}; fix the file and push.",
                    t.text, t.ago
                ),
                lines: errors.clone(),
                link: commit_link(&r.spec.url, commit).map(|l| (l, "the commit".into())),
            });
            continue;
        }
        if let Some(sync) = r.last_sync.read().ok().and_then(|l| l.clone()).filter(|s| !s.ok) {
            let last =
                sync.last_ok.map(|t| format!("last good sync {}", stamp(t).text)).unwrap_or("no good sync yet".into());
            out.push(Banner {
                level: "error",
                title: format!("Sync of {} failing", r.spec.name),
                text: format!("{}; {last}. What runs stays as it is.", crate::redact::apply(&sync.message)),
                lines: Vec::new(),
                link: None,
            });
        }
    }
    let latest = shared.state(|s| s.latest()).unwrap_or_default();
    for d in latest.iter().filter(|d| d.phase == "ci" && !d.status.is_final() && only.is_none_or(|s| s == d.stack)) {
        let since =
            shared.state(|s| s.phases(d.id)).unwrap_or_default().into_iter().find(|p| p.0 == "ci").map(|p| p.1 / 1000);
        out.push(Banner {
            level: "info",
            title: format!("{} waits for CI", d.stack),
            text: format!(
                "{}{}",
                ci_line(&d.stack).unwrap_or_else(|| format!("CI of {}", short(&d.commit))),
                since.map(|t| format!(", since {} ({})", stamp(t).text, stamp(t).ago)).unwrap_or_default()
            ),
            lines: Vec::new(),
            link: Some((format!("/deploys/{}", d.id), format!("deploy #{}", d.id))),
        });
    }
    for (stack, by, at, reason) in shared.state(|s| s.paused()).unwrap_or_default() {
        if only.is_some_and(|s| s != stack) {
            continue;
        }
        let t = stamp(at);
        out.push(Banner {
            level: "warn",
            title: format!("{stack} is paused"),
            text: format!(
                "By {by} at {} ({}){}. berth neither deploys nor heals it until it is resumed.",
                t.text,
                t.ago,
                reason.map(|r| format!(": {r}")).unwrap_or_default()
            ),
            lines: Vec::new(),
            link: Some((format!("/stacks/{stack}"), stack.clone())),
        });
    }
    out.extend(freeze_banners(shared, only));
    out
}

/// A banner per freeze in force (on a stack's page, those that hold the stack).
fn freeze_banners(shared: &Shared, only: Option<&str>) -> Vec<Banner> {
    use berth_core::window::Scope;
    let freezes = shared.state(|s| s.freezes(crate::windows::now())).unwrap_or_default();
    let in_env = |stack: &str, env: &str| {
        shared.repos.iter().any(|r| {
            r.current
                .read()
                .ok()
                .and_then(|c| c.as_ref().map(|(_, p)| p.clone()))
                .is_some_and(|p| p.stack(stack).is_some_and(|s| p.environments_of(s).iter().any(|e| e.name == env)))
        })
    };
    freezes
        .into_iter()
        .filter(|f| match (&f.scope, only) {
            (_, None) | (Scope::All, _) => true,
            (Scope::Stack(s), Some(o)) => s == o,
            (Scope::Environment(e), Some(o)) => in_env(o, e),
        })
        .map(|f| {
            let until = stamp(f.until);
            let title = match &f.scope {
                Scope::All => "Deploys are frozen".to_string(),
                Scope::Environment(e) => format!("Environment {e} is frozen"),
                Scope::Stack(s) => format!("{s} is frozen"),
            };
            Banner {
                level: "warn",
                title,
                text: format!(
                    "Until {} by {}: {}. Deploys wait until then; self-heal and rollbacks still run.",
                    until.text, f.by, f.reason
                ),
                lines: Vec::new(),
                link: None,
            }
        })
        .collect()
}

/// What a deploy waiting for CI waits for, from its log ("waiting for gitea CI of … (owner/name)").
pub fn ci_line(stack: &str) -> Option<String> {
    let log = crate::deploy::live_log(stack)?;
    let line = log.lines().rev().find(|l| l.contains("waiting for") && l.contains("CI"))?;
    let at = line.find("waiting for")?;
    Some(crate::redact::apply(&line[at..]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc_and_absolute() {
        assert_eq!(stamp(0).iso, "1970-01-01T00:00:00Z");
        assert_eq!(stamp(1_709_210_096).text, "2024-02-29 12:34:56 UTC");
        assert_eq!(stamp(951_782_400).iso, "2000-02-29T00:00:00Z");
    }

    #[test]
    fn commit_links_come_from_forge_remotes_only() {
        let c = "0123456789abcdef0123456789abcdef01234567";
        let gh = format!("https://github.com/o/r/commit/{c}");
        assert_eq!(commit_link("https://github.com/o/r.git", c).as_deref(), Some(gh.as_str()));
        assert_eq!(commit_link("git@github.com:o/r.git", c).as_deref(), Some(gh.as_str()));
        assert_eq!(commit_link("https://user:tok@github.com/o/r", c).as_deref(), Some(gh.as_str()));
        assert_eq!(
            commit_link("ssh://git@git.example.com:2222/o/r.git", c),
            Some(format!("https://git.example.com/o/r/commit/{c}"))
        );
        assert_eq!(
            commit_link("https://gitlab.com/g/sub/r.git", c),
            Some(format!("https://gitlab.com/g/sub/r/-/commit/{c}"))
        );
        assert_eq!(commit_link("/srv/git/stacks", c), None);
        assert_eq!(commit_link("file:///srv/git/stacks", c), None);
        assert_eq!(commit_link("https://evil.test/o/r\"><x", c), None);
    }
}
