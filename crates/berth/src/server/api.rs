//! The versioned REST API under `/api/v1`: stacks, deploys, logs, triggering deploys.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, App, parse_json};
use crate::controller::{Target, Want};
use crate::keys::Scope;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/v1/stacks", get(stacks))
        .route("/api/v1/stacks/{name}", get(stack))
        .route("/api/v1/stacks/{name}/deploy", post(deploy))
        .route("/api/v1/stacks/{name}/rollback", post(rollback))
        .route("/api/v1/deploys", get(deploys))
        .route("/api/v1/deploys/{id}", get(deploy_detail))
        .route("/api/v1/deploys/{id}/log", get(deploy_log))
        .route("/api/v1/config/rejections", get(rejections))
}

/// `?wait=true[&timeout=SECONDS]`: hold the answer until the deploys settle.
#[derive(Debug, Default, Deserialize)]
pub struct Wait {
    #[serde(default)]
    pub wait: bool,
    pub timeout: Option<u64>,
}

impl Wait {
    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.timeout.unwrap_or(600).min(3600))
    }
}

async fn stacks(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, ApiError> {
    app.caller(&headers, Scope::Read)?;
    let latest = app.ctl.shared.state(|s| s.latest()).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut out = Vec::new();
    for r in &app.ctl.shared.repos {
        let Ok(cur) = r.current.read() else { continue };
        let Some((commit, project)) = cur.as_ref() else { continue };
        for s in &project.stacks {
            let last = latest.iter().find(|d| d.stack == s.name);
            out.push(json!({
                "name": s.name, "repo": r.spec.name, "server": s.server, "path": s.path, "manual": s.manual,
                "after": s.after, "repo_commit": commit,
                "status": last.map(|d| d.status.as_str()).unwrap_or(if s.manual { "manual" } else { "never_deployed" }),
                "last_deploy": last,
            }));
        }
    }
    Ok(axum::Json(json!({ "stacks": out })).into_response())
}

async fn stack(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    app.caller(&headers, Scope::Read)?;
    let repo = app.ctl.repo_of_stack(&name).ok_or_else(|| ApiError::unknown_stack(&name))?;
    let def = repo
        .current
        .read()
        .ok()
        .and_then(|c| c.as_ref().and_then(|(_, p)| p.stack(&name).cloned()))
        .ok_or_else(|| ApiError::unknown_stack(&name))?;
    let history = app.ctl.shared.state(|s| s.history(&name, 20)).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(axum::Json(json!({ "name": name, "repo": repo.spec.name, "definition": def, "deploys": history }))
        .into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployBody {
    #[serde(default)]
    vars: BTreeMap<String, String>,
    /// A revision (tag or commit) instead of the branch tip.
    #[serde(default, rename = "ref")]
    rev: Option<String>,
}

async fn deploy(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(wait): Query<Wait>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = app.caller(&headers, Scope::Deploy)?;
    let req: DeployBody = if body.is_empty() { DeployBody::default() } else { parse_json(&body)? };
    for k in req.vars.keys() {
        if !berth_core::vars::valid_key(k) {
            return Err(ApiError::bad_request(format!("`{k}` is not a valid variable name")));
        }
    }
    let repo = app.deployable(&caller, &name)?;
    let target = req.rev.map(Target::Rev).unwrap_or(Target::Tip);
    let want = Want::Force { stacks: vec![name], overrides: req.vars };
    let trigger = format!("api:{}", caller.name);
    let out = app.ctl.request(repo, want, target, &trigger).await?;
    answer(&app, out, &wait).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    /// The deploy to put back.
    to: Option<i64>,
    #[serde(rename = "ref")]
    rev: Option<String>,
}

/// `POST /api/v1/stacks/{name}/rollback`: put back an earlier deploy (default: the success before the current one).
async fn rollback(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(wait): Query<Wait>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = app.caller(&headers, Scope::Deploy)?;
    let req: RollbackBody = if body.is_empty() { RollbackBody::default() } else { parse_json(&body)? };
    let repo = app.deployable(&caller, &name)?;
    let internal = |e: crate::state::StateError| ApiError::internal(e.to_string());
    let (target, overrides) = match (req.to, req.rev) {
        (Some(id), _) => {
            let r = app.ctl.shared.state(|s| s.get(id)).map_err(|_| {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_deploy", format!("no deploy with id {id}"))
            })?;
            if r.stack != name {
                return Err(ApiError::bad_request(format!("deploy {id} is of stack `{}`", r.stack)));
            }
            (Target::Rev(r.commit), r.overrides)
        }
        (None, Some(rev)) => (Target::Rev(rev), BTreeMap::new()),
        (None, None) => {
            let current = app.ctl.shared.state(|s| s.last_success(&name, None)).map_err(internal)?;
            let earlier =
                app.ctl.shared.state(|s| s.last_success(&name, current.as_ref().map(|c| c.id))).map_err(internal)?;
            let r = earlier.ok_or_else(|| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    "nothing_to_roll_back",
                    format!("stack `{name}` has no earlier successful deploy"),
                )
            })?;
            (Target::Rev(r.commit), r.overrides)
        }
    };
    let overrides = berth_core::vars::replayable(&overrides);
    let want = Want::Force { stacks: vec![name], overrides };
    let trigger = format!("rollback:{}", caller.name);
    let out = app.ctl.request(repo, want, target, &trigger).await?;
    answer(&app, out, &wait).await
}

/// Answer with the deploys a request created or joined; with `wait`, with their outcome.
pub async fn answer(app: &App, out: crate::controller::SyncOutcome, wait: &Wait) -> Result<Response, ApiError> {
    let ids: Vec<i64> = out.deploys.iter().map(|d| d.id).collect();
    if !wait.wait {
        return Ok((
            StatusCode::ACCEPTED,
            axum::Json(json!({ "commit": out.commit, "deploys": out.deploys, "unchanged": out.unchanged })),
        )
            .into_response());
    }
    let records = app.ctl.wait(&ids, wait.duration()).await;
    let settled = records.iter().all(|r| r.status.is_final());
    let ok = records.iter().all(|r| r.status == berth_core::record::DeployStatus::Succeeded);
    let code = if !settled { StatusCode::ACCEPTED } else { StatusCode::OK };
    Ok((
        code,
        axum::Json(json!({
            "commit": out.commit, "deploys": records, "unchanged": out.unchanged, "settled": settled, "success": settled && ok,
        })),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    stack: Option<String>,
    limit: Option<usize>,
}

async fn deploys(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    app.caller(&headers, Scope::Read)?;
    let limit = q.limit.unwrap_or(50).min(1000);
    let list =
        app.ctl.shared.state(|s| s.list(q.stack.as_deref(), limit)).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(axum::Json(json!({ "deploys": list })).into_response())
}

fn deploy_record(app: &App, id: i64) -> Result<berth_core::record::DeployRecord, ApiError> {
    app.ctl.shared.state(|s| s.get(id)).map_err(|e| match e {
        crate::state::StateError::NoSuchDeploy(id) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_deploy", format!("no deploy with id {id}"))
        }
        other => ApiError::internal(other.to_string()),
    })
}

async fn deploy_detail(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    app.caller(&headers, Scope::Read)?;
    let record = deploy_record(&app, id)?;
    let verify = app.ctl.shared.state(|s| s.verify_results(id)).unwrap_or_default();
    let mut v = serde_json::to_value(&record).map_err(|e| ApiError::internal(e.to_string()))?;
    v["verify"] = serde_json::from_str(&verify).unwrap_or(serde_json::Value::Null);
    Ok(axum::Json(v).into_response())
}

async fn deploy_log(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    app.caller(&headers, Scope::Read)?;
    let record = deploy_record(&app, id)?;
    let log = app.ctl.shared.state(|s| s.log(id)).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(axum::Json(json!({ "id": id, "status": record.status, "log": log })).into_response())
}

async fn rejections(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, ApiError> {
    app.caller(&headers, Scope::Read)?;
    let list = app.ctl.shared.state(|s| s.rejections(20)).map_err(|e| ApiError::internal(e.to_string()))?;
    let list: Vec<_> = list
        .into_iter()
        .map(|(repo, commit, errors, at)| json!({ "repo": repo, "commit": commit, "errors": errors, "at": at }))
        .collect();
    Ok(axum::Json(json!({ "rejections": list })).into_response())
}
