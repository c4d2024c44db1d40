//! The dashboard's pages: the overview of every stack, a stack's page and a deploy's page.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use berth_core::record::{DeployRecord, DeployStatus};
use serde::Deserialize;

use super::{Ctx, Page, blocking, html, message};
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

fn badge(key: &str) -> Badge {
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

/// The badge of a stack: its latest deploy's outcome, drift over success, manual when never deployed.
fn stack_badge(latest: Option<&DeployRecord>, manual: bool, drifted: bool) -> Badge {
    match latest.map(|d| d.status) {
        None if manual => badge("manual"),
        None => badge("never"),
        Some(DeployStatus::Succeeded) if drifted => badge("drifted"),
        Some(s) => status_badge(s),
    }
}

fn short(commit: &str) -> String {
    commit.chars().take(12).collect()
}

fn when(r: &DeployRecord) -> String {
    crate::output::age(r.finished_at.unwrap_or(r.started_at))
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
    pub badge: Badge,
    pub commit: String,
    pub tag: String,
    pub age: String,
    pub deploy_id: Option<i64>,
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
    rows: Vec<Row>,
    total: usize,
    servers: Vec<String>,
    badges: Vec<Badge>,
    server: String,
    status: String,
}

fn stack_rows(shared: &Shared) -> Result<Vec<Row>, String> {
    let latest = shared.state(|s| s.latest()).map_err(|e| e.to_string())?;
    let paused = shared.state(|s| s.paused()).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for r in &shared.repos {
        let Some((_, project)) = r.current.read().ok().and_then(|c| c.clone()) else { continue };
        let tags = tags(r);
        for s in &project.stacks {
            let last = latest.iter().find(|d| d.stack == s.name);
            let success = shared.state(|st| st.last_success(&s.name, None)).ok().flatten();
            let commit = success.as_ref().map(|d| d.commit.clone()).unwrap_or_default();
            rows.push(Row {
                name: s.name.clone(),
                repo: r.spec.name.clone(),
                server: s.server.clone(),
                mode: format!("{:?}", s.mode).to_lowercase(),
                manual: s.manual,
                paused: paused.iter().any(|p| p.0 == s.name),
                badge: stack_badge(last, s.manual, drifted(shared, &s.name)),
                tag: tags.get(&commit).map(|t| t.join(", ")).unwrap_or_default(),
                commit: short(&commit),
                age: last.map(when).unwrap_or_default(),
                deploy_id: last.map(|d| d.id),
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
    let rows = match blocking(move || stack_rows(&shared)).await {
        Ok(Ok(rows)) => rows,
        Ok(Err(e)) => return message(&ctx, StatusCode::INTERNAL_SERVER_ERROR, "Error", e),
        Err(r) => return r,
    };
    let total = rows.len();
    let mut servers: Vec<String> = rows.iter().map(|r| r.server.clone()).collect();
    servers.sort();
    servers.dedup();
    let rows = rows
        .into_iter()
        .filter(|r| f.server.is_empty() || r.server == f.server)
        .filter(|r| f.status.is_empty() || r.badge.key == f.status)
        .collect();
    let page = ctx.page("Stacks");
    html(
        StatusCode::OK,
        &Overview { page, rows, total, servers, badges: BADGES.to_vec(), server: f.server, status: f.status },
    )
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
    pub age: String,
    pub duration: String,
    pub reason: String,
}

fn history_row(d: &DeployRecord) -> HistoryRow {
    HistoryRow {
        id: d.id,
        badge: status_badge(d.status),
        commit: short(&d.commit),
        trigger: d.trigger.clone(),
        age: when(d),
        duration: d.finished_at.map(|f| format!("{}s", (f - d.started_at).max(0))).unwrap_or_default(),
        reason: d.reason.clone().unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "stack.html")]
struct StackPage {
    page: Page,
    name: String,
    repo: String,
    server: String,
    mode: String,
    path: String,
    manual: bool,
    /// Who paused the stack, when and why, in one line.
    paused: Option<String>,
    badge: Badge,
    current: Option<HistoryRow>,
    tag: String,
    checks: Vec<Check>,
    verify: String,
    previous: String,
    changes: Vec<(String, String)>,
    more_changes: usize,
    history: Vec<HistoryRow>,
    can_write: bool,
    can_roll_back: bool,
    csrf: String,
}

const MAX_CHANGES: usize = 50;

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
    let (n, repo_name) = (name.clone(), repo.spec.name.clone());
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
        let drift = drifted(&shared, &n);
        let paused = shared.state(|s| s.paused()).unwrap_or_default().into_iter().find(|p| p.0 == n).map(
            |(_, by, at, reason)| match reason {
                Some(r) => format!("by {by}, {}: {r}", crate::output::age(at)),
                None => format!("by {by}, {}", crate::output::age(at)),
            },
        );
        (history, current, previous, verify, changes, tags, drift, paused)
    })
    .await;
    let (history, current, previous, verify, changes, tags, drift, paused) = match data {
        Ok(d) => d,
        Err(r) => return r,
    };
    let prefix = format!("{}/", def.path.trim_end_matches('/'));
    let mine: Vec<(String, String)> = changes
        .iter()
        .filter(|c| c.path.starts_with(&prefix) || c.old_path.as_deref().is_some_and(|p| p.starts_with(&prefix)))
        .map(|c| (format!("{:?}", c.kind).to_lowercase(), c.path.clone()))
        .collect();
    let can_write = ctx.may_write(&name);
    let page = ctx.page(&name);
    let p = StackPage {
        page,
        repo: repo_name,
        server: def.server.clone(),
        mode: format!("{:?}", def.mode).to_lowercase(),
        path: def.path.clone(),
        manual: def.manual,
        paused,
        badge: stack_badge(history.first(), def.manual, drift),
        tag: current.as_ref().and_then(|c| tags.get(&c.commit)).map(|t| t.join(", ")).unwrap_or_default(),
        current: current.as_ref().map(history_row),
        checks: checks(&verify),
        verify: pretty(&verify),
        previous: previous.as_ref().map(|p| short(&p.commit)).unwrap_or_default(),
        more_changes: mine.len().saturating_sub(MAX_CHANGES),
        changes: mine.into_iter().take(MAX_CHANGES).collect(),
        history: history.iter().map(history_row).collect(),
        can_write,
        can_roll_back: can_write && previous.is_some(),
        csrf: ctx.csrf(),
        name,
    };
    html(StatusCode::OK, &p)
}

/// One verification step's outcome (converge, smoke, rollback, ...).
pub struct Check {
    pub name: String,
    pub badge: Badge,
    pub summary: String,
}

/// The steps of verification results that say whether they passed.
fn checks(json: &str) -> Vec<Check> {
    let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(json) else { return Vec::new() };
    m.iter()
        .filter_map(|(name, v)| {
            let ok = v.get("ok")?.as_bool()?;
            let summary = v.get("summary").and_then(|s| s.as_str()).unwrap_or_default().to_string();
            Some(Check { name: name.clone(), badge: if ok { badge("ok") } else { badge("failed") }, summary })
        })
        .collect()
}

/// Pretty JSON with secret-named fields redacted (verification results carry no secrets, but be sure).
fn pretty(json: &str) -> String {
    fn scrub(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if berth_core::vars::is_secret_key(k) && x.is_string() {
                        *x = serde_json::Value::String(berth_core::vars::REDACTED.into());
                    } else {
                        scrub(x);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(scrub),
            _ => {}
        }
    }
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(mut v) if !v.is_null() && v.as_object().is_none_or(|m| !m.is_empty()) => {
            scrub(&mut v);
            serde_json::to_string_pretty(&v).unwrap_or_default()
        }
        _ => String::new(),
    }
}

/// One phase with how long it took.
pub struct Phase {
    pub name: String,
    pub took: String,
}

#[derive(Template)]
#[template(path = "deploy.html")]
struct DeployPage {
    page: Page,
    id: i64,
    stack: String,
    server: String,
    commit: String,
    badge: Badge,
    running: bool,
    trigger: String,
    age: String,
    reason: String,
    phases: Vec<Phase>,
    /// Phases recorded so far (the event stream sends only later ones).
    phases_seen: usize,
    vars: Vec<(String, String)>,
    checks: Vec<Check>,
    verify: String,
    log: String,
}

pub async fn deploy(ctx: Ctx, Path(id): Path<i64>) -> Response {
    if let Some(r) = ctx.read_refusal() {
        return r;
    }
    let shared: Arc<Shared> = ctx.dash.app.ctl.shared.clone();
    let data = blocking(move || {
        shared.state(|s| {
            let r = s.get(id)?;
            Ok::<_, crate::state::StateError>((r, s.phases(id)?, s.verify_results(id)?, s.log(id)?))
        })
    })
    .await;
    let (record, phases, verify, log) = match data {
        Ok(Ok(d)) => d,
        Ok(Err(crate::state::StateError::NoSuchDeploy(_))) => {
            return message(&ctx, StatusCode::NOT_FOUND, "No such deploy", format!("There is no deploy {id}."));
        }
        Ok(Err(e)) => return message(&ctx, StatusCode::INTERNAL_SERVER_ERROR, "Error", e.to_string()),
        Err(r) => return r,
    };
    let page = ctx.page(&format!("Deploy {id}"));
    let p = DeployPage {
        page,
        id,
        stack: record.stack.clone(),
        server: record.server.clone(),
        commit: record.commit.clone(),
        badge: status_badge(record.status),
        running: !record.status.is_final(),
        trigger: record.trigger.clone(),
        age: when(&record),
        reason: record.reason.clone().unwrap_or_default(),
        phases: timings(&phases, record.finished_at),
        phases_seen: phases.len(),
        // Stored redacted already; redacting again keeps a page from ever showing a secret-named value.
        vars: berth_core::vars::redact(&record.vars).into_iter().collect(),
        checks: checks(&verify),
        verify: pretty(&verify),
        // A running deploy's log lives in memory until it settles.
        log: if record.status.is_final() { log } else { crate::deploy::live_log(&record.stack).unwrap_or(log) },
    };
    html(StatusCode::OK, &p)
}

/// Durations between phase starts (the last one runs until the deploy finished).
pub fn timings(phases: &[(String, i64)], finished: Option<i64>) -> Vec<Phase> {
    phases
        .iter()
        .enumerate()
        .filter(|(_, (name, _))| name != "done")
        .map(|(i, (name, at))| {
            let end = phases.get(i + 1).map(|(_, t)| *t).or(finished.map(|f| f * 1000));
            let took = end.map(|e| format!("{:.1}s", (e - at).max(0) as f64 / 1000.0)).unwrap_or_else(|| "…".into());
            Phase { name: name.clone(), took }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_get_their_durations() {
        let p = [("checkout".to_string(), 1_000), ("up".to_string(), 3_500), ("done".to_string(), 4_000)];
        let t = timings(&p, Some(4));
        assert_eq!(
            t.iter().map(|p| (p.name.as_str(), p.took.as_str())).collect::<Vec<_>>(),
            [("checkout", "2.5s"), ("up", "0.5s")]
        );
        assert_eq!(timings(&p[..1], None)[0].took, "…");
    }

    #[test]
    fn badges_prefer_drift_over_success() {
        assert_eq!(stack_badge(None, true, false).key, "manual");
        assert_eq!(stack_badge(None, false, true).key, "never");
        let c = checks("{\"converge\":{\"ok\":true,\"summary\":\"stable\"},\"smoke\":{\"ok\":false}}");
        assert_eq!(
            c.iter().map(|c| (c.name.as_str(), c.badge.key)).collect::<Vec<_>>(),
            [("converge", "ok"), ("smoke", "failed")]
        );
        assert!(!pretty("{\"smoke\":{\"API_TOKEN\":\"x\",\"ok\":true}}").contains("\"x\""));
    }
}
