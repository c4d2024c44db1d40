//! The versioned REST API under `/api/v1` and its OpenAPI document: stacks, deploys, logs, triggering deploys.
//!
//! Every route is registered through `utoipa_axum::routes!`, which reads the method and path from the
//! handler's `#[utoipa::path]`: the served document is built from the same items as the router.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{IntoParams, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiError, App, parse_json};
use crate::controller::{Target, Through, Want};
use crate::keys::Scope;
use berth_core::api::{
    Accepted, DeployBody, DeployDetail, DeployList, DeployLog, ErrorBody, Pending, Rejection, Rejections, RollbackBody,
    StackDetail, StackList, StackSummary, Waited,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "berth API", description = "GitOps for self-hosted Docker: stacks, deploys, logs and rollbacks."),
    modifiers(&KeyAuth),
    // Answer bodies named only inside `IntoResponses` enums are not collected on their own.
    components(schemas(ErrorBody, Accepted, Waited, Pending)),
    security(("api_key" = [], "api_secret" = [])),
    tags((name = "stacks"), (name = "deploys"), (name = "config"), (name = "webhooks", description = "Signed by the sender: no API key"),
        (name = "komodo", description = "Komodo-compatible execute and read API"), (name = "server"))
)]
struct ApiDoc;

/// The two headers every call carries: the key's name and its secret.
struct KeyAuth;

impl utoipa::Modify for KeyAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        for (name, header) in [("api_key", "X-Api-Key"), ("api_secret", "X-Api-Secret")] {
            components.add_security_scheme(name, SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(header))));
        }
    }
}

/// The document's frame: title, security schemes, shared schemas, tags.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The `/api/v1` routes, each with its description.
pub fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(stacks))
        .routes(routes!(stack))
        .routes(routes!(deploy))
        .routes(routes!(rollback))
        .routes(routes!(deploys))
        .routes(routes!(deploy_detail))
        .routes(routes!(deploy_log))
        .routes(routes!(rejections))
        .routes(routes!(super::freezes::list, super::freezes::freeze))
        .routes(routes!(super::freezes::lift))
}

/// `Query` whose rejection answers in the API's JSON error shape.
pub struct Q<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Q(v)),
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

/// `Path` whose rejection answers in the API's JSON error shape.
pub struct P<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for P<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(P(v)),
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

/// `?wait=true[&timeout=SECONDS]`: hold the answer until the deploys settle.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Wait {
    /// Answer only when the deploys have finished (or `timeout` passed).
    #[serde(default)]
    pub wait: bool,
    /// Seconds to wait at most (default 600).
    #[param(minimum = 0, maximum = 3600)]
    pub timeout: Option<u64>,
}

impl Wait {
    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.timeout.unwrap_or(600).min(3600))
    }

    /// Refuse a timeout above the documented maximum rather than shorten it silently.
    pub fn check(self) -> Result<Wait, ApiError> {
        match self.timeout {
            Some(t) if t > 3600 => Err(ApiError::bad_request(format!("timeout {t} is above the maximum of 3600 s"))),
            _ => Ok(self),
        }
    }
}

/// An optional JSON object body: empty or `null` mean the defaults.
pub(super) fn optional_json<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Ok(T::default());
    }
    match parse_json::<serde_json::Value>(body)? {
        serde_json::Value::Null => Ok(T::default()),
        // serde would also read a struct from an array; the API takes objects only.
        v @ serde_json::Value::Object(_) => {
            serde_json::from_value(integral(v)).map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))
        }
        _ => Err(ApiError::bad_request("the body must be a JSON object")),
    }
}

/// JSON Schema counts `480.0` as an integer; serde does not, so turn integral floats into integers.
fn integral(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(integral).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, integral(v))).collect()),
        other => other,
    }
}

fn json<T: Serialize>(code: StatusCode, body: T) -> Response {
    (code, axum::Json(body)).into_response()
}

#[utoipa::path(get, path = "/api/v1/stacks", tag = "stacks",
    responses((status = 200, description = "Every stack of every repository", body = StackList), Errors))]
async fn stacks(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, ApiError> {
    app.caller(&headers, Scope::Read)?;
    let latest = app.ctl.shared.state(|s| s.latest()).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut out = Vec::new();
    for r in &app.ctl.shared.repos {
        let Ok(cur) = r.current.read() else { continue };
        let Some((commit, project)) = cur.as_ref() else { continue };
        for s in &project.stacks {
            let last = latest.iter().find(|d| d.stack == s.name);
            let never = if s.manual { "manual" } else { "never_deployed" };
            out.push(StackSummary {
                name: s.name.clone(),
                repo: r.spec.name.clone(),
                server: s.server.clone(),
                path: s.path.clone(),
                manual: s.manual,
                after: s.after.clone(),
                repo_commit: commit.clone(),
                status: last.map(|d| d.status.as_str()).unwrap_or(never).to_string(),
                last_deploy: last.cloned(),
            });
        }
    }
    Ok(json(StatusCode::OK, StackList { stacks: out }))
}

#[utoipa::path(get, path = "/api/v1/stacks/{name}", tag = "stacks", params(("name" = String, Path)),
    responses((status = 200, description = "The stack's definition and latest deploys", body = StackDetail), Errors))]
async fn stack(State(app): State<Arc<App>>, headers: HeaderMap, P(name): P<String>) -> Result<Response, ApiError> {
    app.caller(&headers, Scope::Read)?;
    let repo = app.ctl.repo_of_stack(&name).ok_or_else(|| ApiError::unknown_stack(&name))?;
    let def = repo
        .current
        .read()
        .ok()
        .and_then(|c| c.as_ref().and_then(|(_, p)| p.stack(&name).cloned()))
        .ok_or_else(|| ApiError::unknown_stack(&name))?;
    let history = app.ctl.shared.state(|s| s.history(&name, 20)).map_err(|e| ApiError::internal(e.to_string()))?;
    let definition = serde_json::to_value(&def).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(json(StatusCode::OK, StackDetail { name, repo: repo.spec.name.clone(), definition, deploys: history }))
}

/// `POST /api/v1/stacks/{name}/deploy`: deploy the stack now, changed or not.
#[utoipa::path(post, path = "/api/v1/stacks/{name}/deploy", tag = "stacks",
    params(("name" = String, Path), Wait), request_body(content = Option<DeployBody>),
    responses(Answered, Errors))]
async fn deploy(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    P(name): P<String>,
    Q(wait): Q<Wait>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = app.caller(&headers, Scope::Deploy)?;
    let wait = wait.check()?;
    let req: DeployBody = optional_json(&body)?;
    for k in req.vars.keys() {
        if !berth_core::vars::valid_key(k) {
            return Err(ApiError::bad_request(format!("`{k}` is not a valid variable name")));
        }
    }
    crate::redact::register(req.vars.iter().filter(|(k, _)| berth_core::vars::is_secret_key(k)).map(|(_, v)| v));
    let through = through(&caller, req.force)?;
    let repo = app.deployable(&caller, &name)?;
    let target = req.rev.map(Target::Rev).unwrap_or(Target::Tip);
    let want = Want::Force { stacks: vec![name], overrides: req.vars, through };
    let trigger = format!("api:{}", caller.name);
    let out = app.ctl.request(repo, want, target, &trigger).await?;
    answer(&app, out, &wait).await
}

/// `force` of a deploy or rollback: who and why, from an admin key with a reason.
fn through(caller: &crate::keys::Caller, force: Option<berth_core::api::Force>) -> Result<Option<Through>, ApiError> {
    match force.map(|f| f.reason) {
        None => Ok(None),
        Some(r) if r.is_empty() => {
            Err(ApiError::bad_request("`force` needs a `reason`: why deploy through a closed window or freeze"))
        }
        Some(_) if caller.scope < Scope::Admin => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "deploying through closed windows and freezes (`force`) needs an admin key",
        )),
        Some(reason) => Ok(Some(Through { by: caller.name.clone(), reason })),
    }
}

/// `POST /api/v1/stacks/{name}/rollback`: put back an earlier deploy (default: the success before the current one).
#[utoipa::path(post, path = "/api/v1/stacks/{name}/rollback", tag = "stacks",
    params(("name" = String, Path), Wait), request_body(content = Option<RollbackBody>),
    responses(Answered, Errors))]
async fn rollback(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    P(name): P<String>,
    Q(wait): Q<Wait>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = app.caller(&headers, Scope::Deploy)?;
    let wait = wait.check()?;
    let req: RollbackBody = optional_json(&body)?;
    let through = through(&caller, req.force)?;
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
    let want = Want::Force { stacks: vec![name], overrides, through };
    let trigger = format!("rollback:{}", caller.name);
    let out = app.ctl.request(repo, want, target, &trigger).await?;
    answer(&app, out, &wait).await
}

/// Answer with the deploys a request created or joined; with `wait`, with their outcome.
pub async fn answer(app: &App, out: crate::controller::SyncOutcome, wait: &Wait) -> Result<Response, ApiError> {
    let ids: Vec<i64> = out.deploys.iter().map(|d| d.id).collect();
    if !wait.wait {
        let body = Accepted { commit: out.commit, deploys: out.deploys, unchanged: out.unchanged };
        return Ok(json(StatusCode::ACCEPTED, body));
    }
    let records = app.ctl.wait(&ids, wait.duration()).await;
    let settled = records.iter().all(|r| r.status.is_final());
    let ok = records.iter().all(|r| r.status == berth_core::record::DeployStatus::Succeeded);
    let code = if !settled { StatusCode::ACCEPTED } else { StatusCode::OK };
    let success = settled && ok;
    Ok(json(code, Waited { commit: out.commit, deploys: records, unchanged: out.unchanged, settled, success }))
}

/// What a deploy request answers.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code, reason = "describes answers for the OpenAPI document; never built")]
enum Answered {
    /// Waited, and every deploy reached a final status.
    #[response(status = 200)]
    Settled(#[to_schema] Waited),
    /// Accepted (no `wait`), or waited and not settled before the timeout.
    #[response(status = 202)]
    Pending(#[to_schema] Pending),
}

/// The error answers every API route can give.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code, reason = "describes answers for the OpenAPI document; never built")]
pub enum Errors {
    /// Malformed body, query or path.
    #[response(status = 400)]
    BadRequest(#[to_schema] ErrorBody),
    /// No or a wrong API key.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The key's scope or stack patterns do not allow this.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// Unknown stack or deploy.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// Nothing to roll back to.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// The body is larger than `max_body`.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The repository's configuration is invalid.
    #[response(status = 422)]
    Unprocessable(ErrorBody),
    /// Fetching the repository failed.
    #[response(status = 502)]
    BadGateway(ErrorBody),
    /// berth is shutting down.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only this stack's deploys.
    stack: Option<String>,
    /// Only deploys of this commit (a full id or a prefix of at least 4 hex digits).
    #[param(pattern = "^[0-9a-fA-F]{4,64}$")]
    commit: Option<String>,
    /// At most this many (default 50).
    #[param(minimum = 0, maximum = 1000)]
    limit: Option<u64>,
}

#[utoipa::path(get, path = "/api/v1/deploys", tag = "deploys", params(ListQuery),
    responses((status = 200, description = "The newest deploys first", body = DeployList), Errors))]
async fn deploys(State(app): State<Arc<App>>, headers: HeaderMap, Q(q): Q<ListQuery>) -> Result<Response, ApiError> {
    app.caller(&headers, Scope::Read)?;
    let limit = match q.limit.unwrap_or(50) {
        n @ 0..=1000 => n as usize,
        n => return Err(ApiError::bad_request(format!("limit {n} is above the maximum of 1000"))),
    };
    let list = match &q.commit {
        None => app.ctl.shared.state(|s| s.list(q.stack.as_deref(), limit)),
        Some(c) if c.len() >= 4 && c.bytes().all(|b| b.is_ascii_hexdigit()) => {
            let c = c.to_ascii_lowercase();
            app.ctl.shared.state(|s| s.list_for_commit(q.stack.as_deref(), &c, limit))
        }
        Some(c) => return Err(ApiError::bad_request(format!("commit `{c}` is not 4 to 64 hex digits"))),
    }
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(json(StatusCode::OK, DeployList { deploys: list }))
}

fn deploy_record(app: &App, id: i64) -> Result<berth_core::record::DeployRecord, ApiError> {
    app.ctl.shared.state(|s| s.get(id)).map_err(|e| match e {
        crate::state::StateError::NoSuchDeploy(id) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_deploy", format!("no deploy with id {id}"))
        }
        other => ApiError::internal(other.to_string()),
    })
}

#[utoipa::path(get, path = "/api/v1/deploys/{id}", tag = "deploys", params(("id" = i64, Path)),
    responses((status = 200, description = "One deploy with its verification results", body = DeployDetail), Errors))]
async fn deploy_detail(State(app): State<Arc<App>>, headers: HeaderMap, P(id): P<i64>) -> Result<Response, ApiError> {
    app.caller(&headers, Scope::Read)?;
    let record = deploy_record(&app, id)?;
    let verify = app.ctl.shared.state(|s| s.verify_results(id)).unwrap_or_default();
    let verify = serde_json::from_str(&verify).unwrap_or(serde_json::Value::Null);
    Ok(json(StatusCode::OK, DeployDetail { record, verify }))
}

#[utoipa::path(get, path = "/api/v1/deploys/{id}/log", tag = "deploys", params(("id" = i64, Path)),
    responses((status = 200, description = "The deploy's log", body = DeployLog), Errors))]
async fn deploy_log(State(app): State<Arc<App>>, headers: HeaderMap, P(id): P<i64>) -> Result<Response, ApiError> {
    app.caller(&headers, Scope::Read)?;
    let record = deploy_record(&app, id)?;
    let log = app.ctl.shared.state(|s| s.log(id)).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(json(StatusCode::OK, DeployLog { id, status: record.status, log }))
}

#[utoipa::path(get, path = "/api/v1/config/rejections", tag = "config",
    responses((status = 200, description = "Configurations berth refused, newest first", body = Rejections), Errors))]
async fn rejections(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, ApiError> {
    app.caller(&headers, Scope::Read)?;
    let list = app.ctl.shared.state(|s| s.rejections(20)).map_err(|e| ApiError::internal(e.to_string()))?;
    let rejections =
        list.into_iter().map(|(repo, commit, errors, at)| Rejection { repo, commit, errors, at }).collect();
    Ok(json(StatusCode::OK, Rejections { rejections }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_objects_or_nothing() {
        assert!(optional_json::<RollbackBody>(b"[null, null]").is_err());
        assert!(optional_json::<RollbackBody>(b"null").is_ok_and(|b| b.to.is_none()));
        assert_eq!(optional_json::<RollbackBody>(br#"{"to": 480.0}"#).ok().and_then(|b| b.to), Some(480));
        assert!(optional_json::<RollbackBody>(br#"{"to": 4.5}"#).is_err());
    }

    #[test]
    fn the_document_describes_every_route_with_its_schemas() {
        let (_, doc) = super::super::documented();
        let paths: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
        for p in [
            "/api/v1/stacks",
            "/api/v1/stacks/{name}/deploy",
            "/api/v1/deploys/{id}/log",
            "/api/v1/config/rejections",
            "/webhook",
            "/sync",
            "/deploy",
            "/execute",
            "/read",
            "/health",
            "/metrics",
            "/version",
        ] {
            assert!(paths.contains(&p), "{p} missing from {paths:?}");
        }
        let v = serde_json::to_value(&doc).unwrap();
        assert!(v["components"]["schemas"]["DeployRecord"]["properties"]["status"].is_object(), "{v}");
        assert_eq!(v["components"]["securitySchemes"]["api_key"]["name"], "X-Api-Key");
        let deploy = &v["paths"]["/api/v1/stacks/{name}/deploy"]["post"]["responses"];
        for code in ["200", "202", "400", "401", "403", "404"] {
            assert!(deploy[code].is_object(), "no {code} answer: {deploy}");
        }
    }
}
