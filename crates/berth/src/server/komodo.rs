//! The Komodo-compatible execute/read API, so CI jobs and clients written for
//! Komodo (its Rust client 2.x, its TypeScript client, `km`) work unchanged.
//!
//! Requests come body-style (`POST /execute {"type","params"}`) or path-style
//! (`POST /execute/DeployStack` with the params as the body). Deploys answer
//! Komodo's `Update` object; its `_id` is the deploy id as a 24-digit hex
//! ObjectId, and `GetUpdate` moves it from `Queued`/`InProgress` to `Complete`.
//! Successes are always HTTP 200, as Komodo's older clients require.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_core::api::komodo;
use berth_core::record::{DeployRecord, DeployStatus};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, App, parse_json};
use crate::controller::{Target, Want};
use crate::keys::{Caller, Scope};

/// `{"type", "params"}`: the kind is matched by hand so an unknown one gets a message that
/// lists what berth implements; the params are then read as `komodo::StackParams` and the like.
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    params: Value,
}

/// The stack, refusing a service subset rather than ignoring it.
fn whole_stack(p: komodo::StackParams) -> Result<String, ApiError> {
    if p.services.is_empty() {
        return Ok(p.stack);
    }
    Err(ApiError::bad_request(format!(
        "berth deploys whole stacks: `services` ({}) is not supported; leave it out to deploy all of `{}`",
        p.services.join(", "),
        p.stack
    )))
}

/// `POST /execute`: a Komodo execution `{"type": "DeployStack", "params": {"stack": ...}}`
/// (also `POST /execute/{type}` with the params as the body).
#[utoipa::path(post, path = "/execute", tag = "komodo",
    request_body(content = komodo::Execute, content_type = "application/json"),
    responses((status = 200, description = "Komodo's `Update`; a batch answers a list of results", body = serde_json::Value), super::api::Errors))]
pub async fn execute(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let env: Envelope = parse_json(&body)?;
    run_execute(&app, &headers, &env.kind, env.params).await
}

/// `POST /execute/{kind}`: the execution named in the path, its params as the body.
pub async fn execute_path(
    State(app): State<Arc<App>>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params: Value = if body.is_empty() { json!({}) } else { parse_json(&body)? };
    run_execute(&app, &headers, &kind, params).await
}

/// `POST /read`: a Komodo read `{"type": "GetUpdate", "params": {"id": ...}}` or `GetVersion`
/// (also `POST /read/{type}` with the params as the body).
#[utoipa::path(post, path = "/read", tag = "komodo",
    request_body(content = komodo::Read, content_type = "application/json"),
    responses((status = 200, description = "What was read", body = Object), super::api::Errors))]
pub async fn read(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let env: Envelope = parse_json(&body)?;
    run_read(&app, &headers, &env.kind, env.params)
}

/// `POST /read/{kind}`: the read named in the path, its params as the body.
pub async fn read_path(
    State(app): State<Arc<App>>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params: Value = if body.is_empty() { json!({}) } else { parse_json(&body)? };
    run_read(&app, &headers, &kind, params)
}

/// `GET /version`: the bare version, without auth, as Komodo answers it.
#[utoipa::path(get, path = "/version", tag = "server", security(()),
    responses((status = 200, description = "berth's version", body = String, content_type = "text/plain")))]
pub async fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

fn params<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("invalid params: {e}")))
}

fn ok(v: Value) -> Result<Response, ApiError> {
    Ok((StatusCode::OK, axum::Json(v)).into_response())
}

async fn run_execute(app: &App, headers: &HeaderMap, kind: &str, p: Value) -> Result<Response, ApiError> {
    let caller = app.caller(headers, Scope::Deploy)?;
    match kind {
        "DeployStack" => ok(deploy(app, &caller, &whole_stack(params(p)?)?, false).await?),
        "DeployStackIfChanged" => ok(deploy(app, &caller, &whole_stack(params(p)?)?, true).await?),
        "BatchDeployStack" | "BatchDeployStackIfChanged" => {
            let pattern = params::<komodo::BatchParams>(p)?.pattern;
            let if_changed = kind == "BatchDeployStackIfChanged";
            let mut items = Vec::new();
            for stack in matching(app, &pattern)? {
                items.push(match deploy(app, &caller, &stack, if_changed).await {
                    Ok(update) => json!({ "status": "Ok", "data": update }),
                    Err(e) => json!({
                        "status": "Err",
                        "data": { "name": stack, "error": { "error": e.message, "trace": e.trace } },
                    }),
                });
            }
            ok(Value::Array(items))
        }
        other => Err(ApiError::bad_request(format!(
            "berth does not implement the execution `{other}` (supported: DeployStack, DeployStackIfChanged, BatchDeployStack, BatchDeployStackIfChanged)"
        ))),
    }
}

fn run_read(app: &App, headers: &HeaderMap, kind: &str, p: Value) -> Result<Response, ApiError> {
    app.caller(headers, Scope::Read)?;
    match kind {
        // Takes no params; whatever comes is ignored, as Komodo does.
        "GetVersion" => ok(json!({ "version": env!("CARGO_PKG_VERSION") })),
        "GetUpdate" => {
            let id = params::<komodo::IdParams>(p)?.id;
            if let Some(u) = noop_updates().lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
                return ok(u.clone());
            }
            let deploy_id = i64::from_str_radix(&id, 16)
                .ok()
                .filter(|_| id.len() == 24)
                .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown_update", format!("no update {id}")))?;
            let record = app
                .ctl
                .shared
                .state(|s| s.get(deploy_id))
                .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "unknown_update", format!("no update {id}")))?;
            let log = app.ctl.shared.state(|s| s.log(deploy_id)).unwrap_or_default();
            ok(update(&record, &log))
        }
        other => Err(ApiError::bad_request(format!(
            "berth does not implement the read `{other}` (supported: GetVersion, GetUpdate)"
        ))),
    }
}

/// Deploy one stack for a Komodo client; returns the `Update`.
async fn deploy(app: &App, caller: &Caller, stack: &str, if_changed: bool) -> Result<Value, ApiError> {
    let repo = app.deployable(caller, stack)?;
    let want = if if_changed {
        Want::Reconcile { only: Some(vec![stack.to_string()]) }
    } else {
        Want::Force { stacks: vec![stack.to_string()], overrides: Default::default(), through: None }
    };
    let trigger = format!("komodo:{}", caller.name);
    let out = app.ctl.request(repo, want, Target::Tip, &trigger).await?;
    match out.deploys.first() {
        Some(d) => {
            let record = app.ctl.shared.state(|s| s.get(d.id)).map_err(|e| ApiError::internal(e.to_string()))?;
            Ok(update(&record, ""))
        }
        None => Ok(noop(stack, &out.commit, &trigger)),
    }
}

/// Stacks whose names match a Komodo batch pattern: names or wildcards, comma or newline separated.
fn matching(app: &App, pattern: &str) -> Result<Vec<String>, ApiError> {
    if let Some(c) = pattern.chars().find(|c| !(c.is_ascii_alphanumeric() || "_.*?, \n-".contains(*c))) {
        return Err(ApiError::bad_request(format!(
            "pattern: `{c}` cannot appear in a stack name or wildcard (names, `*`, `?`, separated by commas or newlines)"
        )));
    }
    let mut globs = Vec::new();
    for p in pattern.split([',', '\n']).map(str::trim).filter(|p| !p.is_empty()) {
        globs.push(berth_core::changes::glob(p).map_err(ApiError::bad_request)?);
    }
    let mut names: Vec<String> = Vec::new();
    for r in &app.ctl.shared.repos {
        if let Ok(cur) = r.current.read()
            && let Some((_, project)) = cur.as_ref()
        {
            names.extend(
                project.stacks.iter().filter(|s| globs.iter().any(|g| g.is_match(&s.name))).map(|s| s.name.clone()),
            );
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// The Komodo `Update` for a deploy record. As in Komodo, `success` is false until it completes.
fn update(r: &DeployRecord, log: &str) -> Value {
    let status = match r.status {
        DeployStatus::Queued => "Queued",
        DeployStatus::Running => "InProgress",
        _ => "Complete",
    };
    let done = r.status.is_final();
    let success = done && r.status == DeployStatus::Succeeded;
    let (start, end) = (r.started_at * 1000, r.finished_at.map(|t| t * 1000));
    let logs = if done {
        vec![komodo::Log {
            stage: "Deploy Stack".into(),
            command: format!("berth deploy {} (deploy {}, {})", r.stack, r.id, r.status),
            stdout: log.to_string(),
            stderr: r.reason.clone().unwrap_or_default(),
            success,
            start_ts: start,
            end_ts: end.unwrap_or(start),
        }]
    } else {
        Vec::new()
    };
    to_value(&komodo::Update {
        id: komodo::ObjectId { oid: format!("{:024x}", r.id) },
        operation: "DeployStack".into(),
        start_ts: start,
        success,
        operator: r.trigger.clone(),
        target: komodo::Target { kind: "Stack".into(), id: r.stack.clone() },
        logs,
        end_ts: end,
        status: status.into(),
        commit_hash: r.commit.clone(),
        other_data: String::new(),
    })
}

fn to_value(u: &komodo::Update) -> Value {
    serde_json::to_value(u).unwrap_or(Value::Null)
}

/// Updates for "nothing changed" answers, kept so `GetUpdate` finds them (bounded).
fn noop_updates() -> &'static Mutex<HashMap<String, Value>> {
    static M: OnceLock<Mutex<HashMap<String, Value>>> = OnceLock::new();
    M.get_or_init(|| Mutex::new(HashMap::new()))
}

fn noop(stack: &str, commit: &str, operator: &str) -> Value {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    // Above any deploy id, so the two never collide.
    let id = format!("ff{:022x}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let now = crate::state::now() * 1000;
    let u = to_value(&komodo::Update {
        id: komodo::ObjectId { oid: id.clone() },
        operation: "DeployStack".into(),
        start_ts: now,
        success: true,
        operator: operator.to_string(),
        target: komodo::Target { kind: "Stack".into(), id: stack.to_string() },
        logs: vec![komodo::Log {
            stage: "Deploy Stack".into(),
            command: "berth deploy-if-changed".into(),
            stdout: "Deploy cancelled after no changes detected.".into(),
            stderr: String::new(),
            success: true,
            start_ts: now,
            end_ts: now,
        }],
        end_ts: Some(now),
        status: "Complete".into(),
        commit_hash: commit.to_string(),
        other_data: String::new(),
    });
    let mut m = noop_updates().lock().unwrap_or_else(|e| e.into_inner());
    if m.len() > 10_000 {
        m.clear();
    }
    m.insert(id, u.clone());
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_subset_is_refused_not_ignored() {
        let whole: komodo::StackParams = params(json!({"stack": "web", "services": [], "stop_time": null})).unwrap();
        assert_eq!(whole_stack(whole).unwrap(), "web");
        let subset: komodo::StackParams = params(json!({"stack": "web", "services": ["api", "worker"]})).unwrap();
        let e = whole_stack(subset).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("`services` (api, worker) is not supported"), "{}", e.message);
        let missing = params::<komodo::StackParams>(json!({"services": []})).unwrap_err();
        assert!(missing.message.contains("invalid params: missing field `stack`"), "{}", missing.message);
    }
}
