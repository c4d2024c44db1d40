//! A deploy's page: why it did what it did. The commit (message, author, forge link, the stack's
//! changed files and, per service, what the deploy changed), every verification step with a failing container's own story, the phases with
//! their durations, CI waits, the rollback target, variables and the log.

use std::sync::Arc;

use askama::Template;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;

use super::glance::{self, Stamp};
use super::pages::{Badge, short, stack_changes, status_badge, when};
use super::servicediff::{self, DiffView};
use super::{Ctx, Page, blocking, html, message, verify};
use crate::controller::Shared;

/// One phase with how long it took.
pub struct Phase {
    pub name: String,
    pub took: String,
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

/// Pretty JSON with secret-named fields and known secret values redacted.
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
            verify::clean(&serde_json::to_string_pretty(&v).unwrap_or_default())
        }
        _ => String::new(),
    }
}

/// The commit as the page shows it.
#[derive(Default)]
pub struct Commit {
    pub id: String,
    pub short: String,
    pub subject: String,
    pub author: String,
    pub at: Option<Stamp>,
    pub link: Option<String>,
}

#[derive(Template)]
#[template(path = "deploy.html")]
struct DeployPage {
    page: Page,
    id: i64,
    stack: String,
    server: String,
    commit: Commit,
    badge: Badge,
    running: bool,
    trigger: String,
    started: Stamp,
    at: Stamp,
    reason: String,
    /// What this deploy went back to after failing (a link to that deploy).
    rollback_to: Option<(i64, String)>,
    /// The deploy this one is compared with for the changed files.
    since: String,
    changes: Vec<(String, String)>,
    more_changes: usize,
    /// What the deploy changed, service by service.
    diff: DiffView,
    /// What a deploy still waiting for CI waits for.
    ci_wait: Option<String>,
    phases: Vec<Phase>,
    /// Phases recorded so far (the event stream sends only later ones).
    phases_seen: usize,
    vars: Vec<(String, String)>,
    steps: Vec<verify::Step>,
    verify: String,
    log: String,
}

pub async fn deploy(ctx: Ctx, Path(id): Path<i64>) -> Response {
    if let Some(r) = ctx.read_refusal() {
        return r;
    }
    let shared: Arc<Shared> = ctx.dash.app.ctl.shared.clone();
    let ctl = ctx.dash.app.ctl.clone();
    let data = blocking(move || {
        let r = shared.state(|s| {
            let r = s.get(id)?;
            let before = s.success_before(&r.stack, id)?;
            Ok::<_, crate::state::StateError>((r, s.phases(id)?, s.verify_results(id)?, s.log(id)?, before))
        })?;
        let (record, _, _, _, before) = &r;
        let repo = ctl.repo_of_stack(&record.stack).cloned();
        let mut commit = Commit { id: record.commit.clone(), short: short(&record.commit), ..Default::default() };
        let mut changes = (Vec::new(), 0);
        if let Some(repo) = &repo {
            if let Ok(info) = repo.ws.repo.commit_info(&record.commit) {
                commit.subject = info.subject;
                commit.author = info.author;
                commit.at = (info.at > 0).then(|| glance::stamp(info.at));
            }
            commit.link = glance::commit_link(&repo.spec.url, &record.commit);
            let path = repo
                .ws
                .snapshot(&record.commit)
                .ok()
                .and_then(|s| s.project.stack(&record.stack).map(|d| d.path.clone()))
                .or_else(|| repo.current.read().ok()?.as_ref()?.1.stack(&record.stack).map(|d| d.path.clone()));
            if let (Some(b), Some(path)) = (before, path)
                && b.commit != record.commit
            {
                changes = stack_changes(&repo.ws.repo.diff(&b.commit, &record.commit).unwrap_or_default(), &path);
            }
        }
        let old = before.as_ref().map(|b| b.commit.as_str());
        let diff = servicediff::view(&shared, repo.as_ref(), &record.stack, old, &record.commit);
        Ok((r, commit, changes, diff))
    })
    .await;
    let ((record, phases, verify, log, before), commit, (changes, more_changes), diff) = match data {
        Ok(Ok(d)) => d,
        Ok(Err(crate::state::StateError::NoSuchDeploy(_))) => {
            return message(&ctx, StatusCode::NOT_FOUND, "No such deploy", format!("There is no deploy {id}."));
        }
        Ok(Err(e)) => return message(&ctx, StatusCode::INTERNAL_SERVER_ERROR, "Error", e.to_string()),
        Err(r) => return r,
    };
    let rolled_back = phases.iter().any(|(p, _)| p == "rollback");
    let running = !record.status.is_final();
    let page = ctx.page(&format!("Deploy {id}"));
    let p = DeployPage {
        page,
        id,
        stack: record.stack.clone(),
        server: record.server.clone(),
        commit,
        badge: status_badge(record.status),
        running,
        trigger: record.trigger.clone(),
        started: glance::stamp(record.started_at),
        at: when(&record),
        reason: verify::clean(&record.reason.clone().unwrap_or_default()),
        rollback_to: before.as_ref().filter(|_| rolled_back).map(|b| (b.id, short(&b.commit))),
        since: before.as_ref().map(|b| short(&b.commit)).unwrap_or_default(),
        changes,
        more_changes,
        diff,
        ci_wait: (running && record.phase == "ci")
            .then(|| glance::ci_line(&record.stack).unwrap_or_else(|| "waiting for CI".into())),
        phases: timings(&phases, record.finished_at),
        phases_seen: phases.len(),
        // Stored redacted already; redacting again keeps a page from ever showing a secret-named value.
        vars: berth_core::vars::redact(&record.vars).into_iter().collect(),
        steps: verify::steps(&verify),
        verify: pretty(&verify),
        // A running deploy's log lives in memory until it settles.
        log: verify::clean_log(&if record.status.is_final() {
            log
        } else {
            crate::deploy::live_log(&record.stack).unwrap_or(log)
        }),
    };
    html(StatusCode::OK, &p)
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
        assert!(!pretty("{\"smoke\":{\"API_TOKEN\":\"x\",\"ok\":true}}").contains("\"x\""));
    }
}
