//! The dashboard's pages: the overview of every stack and a stack's page.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use berth_core::record::{DeployRecord, DeployStatus};
use serde::Deserialize;

use super::glance::{self, Banner, Glance, Stamp, stamp};
use super::{Ctx, Page, blocking, containers, freezes, html, message, verify};
use crate::controller::Shared;

/// A status badge: a CSS class / filter key and its label.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Badge {
    pub key: &'static str,
    pub label: &'static str,
}

/// Every badge, in the filter's order.
const BADGES: [Badge; 9] = [
    Badge { key: "ok", label: "ok" },
    Badge { key: "deploying", label: "deploying" },
    Badge { key: "failed", label: "failed" },
    Badge { key: "rolled_back", label: "rolled back" },
    Badge { key: "drifted", label: "drifted" },
    Badge { key: "manual", label: "manual" },
    Badge { key: "never", label: "never deployed" },
    Badge { key: "cancelled", label: "cancelled" },
    Badge { key: "removed", label: "removed" },
];

pub fn badge(key: &str) -> Badge {
    BADGES.iter().copied().find(|b| b.key == key).unwrap_or(BADGES[2])
}

/// The badge of a deploy outcome.
pub fn status_badge(s: DeployStatus) -> Badge {
    badge(match s {
        DeployStatus::Queued | DeployStatus::Running => "deploying",
        DeployStatus::Succeeded => "ok",
        DeployStatus::RolledBack => "rolled_back",
        DeployStatus::Failed | DeployStatus::Blocked | DeployStatus::Interrupted => "failed",
        DeployStatus::Cancelled => "cancelled",
        DeployStatus::Removed => "removed",
    })
}

pub fn short(commit: &str) -> String {
    commit.chars().take(12).collect()
}

pub fn when(r: &DeployRecord) -> Stamp {
    stamp(r.finished_at.unwrap_or(r.started_at))
}

fn drifted(shared: &Shared, stack: &str) -> bool {
    let label = crate::metrics::StackLabel { stack: stack.to_string() };
    shared.metrics.drift.get(&label).is_some_and(|g| g.get() == 1)
}

/// Tags of the mirror, by commit.
fn tags(repo: &crate::controller::RepoHandle) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (tag, commit) in repo.ws.repo.tags().unwrap_or_default() {
        out.entry(commit).or_default().push(tag);
    }
    out
}

pub struct Row {
    pub name: String,
    pub repo: String,
    pub server: String,
    pub mode: String,
    pub manual: bool,
    /// Stopped on purpose by an operator (`berth pause`): never deployed or healed automatically.
    pub paused: bool,
    pub glance: Glance,
    pub tag: String,
}

#[derive(Deserialize, Default)]
pub struct Filter {
    #[serde(default)]
    server: String,
    #[serde(default)]
    status: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    page: Page,
    banners: Vec<Banner>,
    rows: Vec<Row>,
    total: usize,
    servers: Vec<String>,
    badges: Vec<Badge>,
    server: String,
    status: String,
    freezes: freezes::Section,
    /// An admin: show the freeze form and the unfreeze buttons.
    can_freeze: bool,
    csrf: String,
}

fn stack_rows(shared: &Shared) -> Result<Vec<Row>, String> {
    let latest = shared.state(|s| s.latest()).map_err(|e| e.to_string())?;
    let paused = shared.state(|s| s.paused()).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for r in &shared.repos {
        let Some((_, project)) = r.current.read().ok().and_then(|c| c.clone()) else { continue };
        let tags = tags(r);
        let (tip, steps) = glance::plan_steps(shared, r);
        for s in &project.stacks {
            let last = latest.iter().find(|d| d.stack == s.name);
            let success = shared.state(|st| st.last_success(&s.name, None)).ok().flatten();
            let commit = success.as_ref().map(|d| d.commit.clone()).unwrap_or_default();
            // The overview does not count commits (one git call per stack); the stack page does.
            let g = glance::glance(
                shared,
                last,
                success.as_ref(),
                steps.get(&s.name),
                &tip,
                s.manual,
                drifted(shared, &s.name),
                &|_| None,
            );
            rows.push(Row {
                name: s.name.clone(),
                repo: r.spec.name.clone(),
                server: s.server.clone(),
                mode: format!("{:?}", s.mode).to_lowercase(),
                manual: s.manual,
                paused: paused.iter().any(|p| p.0 == s.name),
                glance: g,
                tag: tags.get(&commit).map(|t| t.join(", ")).unwrap_or_default(),
            });
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(rows)
}

pub async fn overview(ctx: Ctx, Query(f): Query<Filter>) -> Response {
    if let Some(r) = ctx.read_refusal() {
        return r;
    }
    let shared = ctx.dash.app.ctl.shared.clone();
    let data = blocking(move || (stack_rows(&shared), glance::banners(&shared, None), freezes::section(&shared)));
    let (rows, banners, freezes) = match data.await {
        Ok((Ok(rows), banners, freezes)) => (rows, banners, freezes),
        Ok((Err(e), _, _)) => return message(&ctx, StatusCode::INTERNAL_SERVER_ERROR, "Error", e),
        Err(r) => return r,
    };
    let total = rows.len();
    let mut servers: Vec<String> = rows.iter().map(|r| r.server.clone()).collect();
    servers.sort();
    servers.dedup();
    let rows = rows
        .into_iter()
        .filter(|r| f.server.is_empty() || r.server == f.server)
        .filter(|r| {
            f.status.is_empty()
                || r.glance.badge.key == f.status
                || r.glance.attempt.as_ref().is_some_and(|a| a.badge.key == f.status)
        })
        .collect();
    let page = ctx.page("Stacks");
    let overview = Overview {
        page,
        banners,
        rows,
        total,
        servers,
        badges: BADGES.to_vec(),
        server: f.server,
        status: f.status,
        freezes,
        can_freeze: ctx.may_admin(),
        csrf: ctx.csrf(),
    };
    html(StatusCode::OK, &overview)
}

pub async fn to_overview(ctx: Ctx) -> Response {
    Redirect::to(&format!("{}/", ctx.base)).into_response()
}

/// One row of a history table.
pub struct HistoryRow {
    pub id: i64,
    pub badge: Badge,
    pub commit: String,
    pub trigger: String,
    pub at: Stamp,
    pub duration: String,
    pub reason: String,
}

fn history_row(d: &DeployRecord) -> HistoryRow {
    HistoryRow {
        id: d.id,
        badge: status_badge(d.status),
        commit: short(&d.commit),
        trigger: d.trigger.clone(),
        at: when(d),
        duration: d.finished_at.map(|f| format!("{}s", (f - d.started_at).max(0))).unwrap_or_default(),
        reason: d.reason.clone().unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "stack.html")]
struct StackPage {
    page: Page,
    banners: Vec<Banner>,
    name: String,
    repo: String,
    server: String,
    mode: String,
    path: String,
    manual: bool,
    paused: bool,
    glance: Glance,
    current: Option<HistoryRow>,
    tag: String,
    steps: Vec<verify::Step>,
    previous: String,
    changes: Vec<(String, String)>,
    more_changes: usize,
    history: Vec<HistoryRow>,
    containers: Vec<containers::Row>,
    services: Vec<String>,
    engine_error: String,
    can_write: bool,
    can_roll_back: bool,
    /// What holds the stack's deploys now (a closed window, a freeze), if anything.
    held: String,
    /// An admin may deploy it through what holds it.
    can_force: bool,
    csrf: String,
}

const MAX_CHANGES: usize = 50;

/// The changes of a stack (kind, path) among `changes`, at most [`MAX_CHANGES`], and how many more.
pub fn stack_changes(changes: &[berth_core::changes::Change], path: &str) -> (Vec<(String, String)>, usize) {
    let prefix = format!("{}/", path.trim_end_matches('/'));
    let mine: Vec<(String, String)> = changes
        .iter()
        .filter(|c| {
            prefix == "./"
                || prefix == "/"
                || c.path.starts_with(&prefix)
                || c.old_path.as_deref().is_some_and(|p| p.starts_with(&prefix))
        })
        .map(|c| (format!("{:?}", c.kind).to_lowercase(), c.path.clone()))
        .collect();
    let more = mine.len().saturating_sub(MAX_CHANGES);
    (mine.into_iter().take(MAX_CHANGES).collect(), more)
}

/// What holds a deploy of `stack` started now from the dashboard, in words ("" when nothing does).
fn held(shared: &Shared, repo: &crate::controller::RepoHandle, stack: &str) -> String {
    let Some((_, project)) = repo.current.read().ok().and_then(|c| c.clone()) else { return String::new() };
    let now = crate::windows::now();
    let freezes = shared.state(|s| s.freezes(now)).unwrap_or_default();
    if project.windows.is_empty() && freezes.is_empty() {
        return String::new();
    }
    let Ok(zones) = crate::windows::zones(&project) else { return String::new() };
    let v = crate::windows::verdict(&project, &zones, &freezes, stack, "dashboard", now);
    if v.is_open() { String::new() } else { crate::windows::explain(&v) }
}

pub async fn stack(ctx: Ctx, Path(name): Path<String>) -> Response {
    if let Some(r) = ctx.read_refusal() {
        return r;
    }
    let Some(repo) = ctx.dash.app.ctl.repo_of_stack(&name).cloned() else {
        return message(&ctx, StatusCode::NOT_FOUND, "No such stack", format!("There is no stack named `{name}`."));
    };
    let Some(def) = repo.current.read().ok().and_then(|c| c.as_ref().and_then(|(_, p)| p.stack(&name).cloned())) else {
        return message(&ctx, StatusCode::NOT_FOUND, "No such stack", format!("There is no stack named `{name}`."));
    };
    let shared = ctx.dash.app.ctl.shared.clone();
    let (n, repo_name, manual) = (name.clone(), repo.spec.name.clone(), def.manual);
    let data = blocking(move || {
        let history = shared.state(|s| s.history(&n, 25)).unwrap_or_default();
        let current = shared.state(|s| s.last_success(&n, None)).ok().flatten();
        let previous = current.as_ref().and_then(|c| shared.state(|s| s.last_success(&n, Some(c.id))).ok().flatten());
        let verify = current.as_ref().and_then(|c| shared.state(|s| s.verify_results(c.id)).ok()).unwrap_or_default();
        let changes = match (&previous, &current) {
            (Some(p), Some(c)) if p.commit != c.commit => repo.ws.repo.diff(&p.commit, &c.commit).unwrap_or_default(),
            _ => Vec::new(),
        };
        let tags = tags(&repo);
        let (tip, steps) = glance::plan_steps(&shared, &repo);
        let distance = |from: &str| repo.ws.repo.count_between(from, &tip).ok();
        let g = glance::glance(
            &shared,
            history.first(),
            current.as_ref(),
            steps.get(&n),
            &tip,
            manual,
            drifted(&shared, &n),
            &distance,
        );
        let banners = glance::banners(&shared, Some(&n));
        let held = held(&shared, &repo, &n);
        let paused = shared.state(|s| s.paused()).unwrap_or_default().iter().any(|p| p.0 == n);
        (history, current, previous, verify, changes, tags, g, banners, paused, held)
    })
    .await;
    let (history, current, previous, verify, changes, tags, glance, banners, paused, held) = match data {
        Ok(d) => d,
        Err(r) => return r,
    };
    let (containers, engine_error) = match containers::current(&ctx, &name).await {
        Ok(c) => (c, String::new()),
        Err(e) => (Vec::new(), e),
    };
    let mut services: Vec<String> = containers.iter().map(|c| c.service.clone()).filter(|s| !s.is_empty()).collect();
    services.dedup();
    let (changes, more_changes) = stack_changes(&changes, &def.path);
    let can_write = ctx.may_write(&name);
    let page = ctx.page(&name);
    let p = StackPage {
        page,
        banners,
        repo: repo_name,
        server: def.server.clone(),
        mode: format!("{:?}", def.mode).to_lowercase(),
        path: def.path.clone(),
        manual: def.manual,
        paused,
        glance,
        tag: current.as_ref().and_then(|c| tags.get(&c.commit)).map(|t| t.join(", ")).unwrap_or_default(),
        current: current.as_ref().map(history_row),
        steps: verify::steps(&verify),
        previous: previous.as_ref().map(|p| short(&p.commit)).unwrap_or_default(),
        more_changes,
        changes,
        history: history.iter().map(history_row).collect(),
        containers,
        services,
        engine_error,
        can_write,
        can_roll_back: can_write && previous.is_some(),
        can_force: can_write && !held.is_empty() && ctx.may_admin(),
        held,
        csrf: ctx.csrf(),
        name,
    };
    html(StatusCode::OK, &p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stack_path_selects_its_changes() {
        use berth_core::changes::{Change, ChangeKind};
        let c = |p: &str| Change { kind: ChangeKind::Modified, path: p.into(), old_path: None };
        let all = [c("stacks/web/compose.yaml"), c("stacks/webby/compose.yaml"), c("README.md")];
        let (mine, more) = stack_changes(&all, "stacks/web");
        assert_eq!((mine, more), (vec![("modified".to_string(), "stacks/web/compose.yaml".to_string())], 0));
    }
}
