//! `/api/v1/freezes`: list freezes (read scope), freeze and lift freezes (admin scope).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_core::api::{FreezeBody, FreezeView, Freezes, LiftBody};
use berth_core::window::Scope;

use super::api::{Errors, optional_json};
use super::{ApiError, App, parse_json};
use crate::keys;
use crate::windows;

/// The scopes `stacks` or `environment` name, checked against the first repository's current project.
fn scopes(app: &App, stacks: &[String], environment: Option<&str>) -> Result<Vec<Scope>, ApiError> {
    let project = app
        .ctl
        .shared
        .repos
        .iter()
        .find_map(|r| r.current.read().ok().and_then(|c| c.as_ref().map(|c| c.1.clone())))
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_synced", "no configuration loaded yet"))?;
    if environment.is_some() && !stacks.is_empty() {
        return Err(ApiError::bad_request("give stacks or an environment, not both"));
    }
    windows::scopes(&project, stacks, environment).map_err(|e| {
        let m = match &e.help {
            Some(h) => format!("{}; {h}", e.message),
            None => e.message.clone(),
        };
        ApiError::new(StatusCode::NOT_FOUND, "unknown_name", m)
    })
}

fn internal(e: crate::state::StateError) -> ApiError {
    ApiError::internal(e.to_string())
}

fn answer(code: StatusCode, list: &[berth_core::window::Freeze]) -> Response {
    let freezes = list.iter().map(FreezeView::from).collect();
    (code, axum::Json(Freezes { freezes })).into_response()
}

/// The freezes in force.
#[utoipa::path(get, path = "/api/v1/freezes", tag = "deploys",
    responses((status = 200, description = "Freezes in force, the earliest end first", body = Freezes), Errors))]
pub async fn list(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, ApiError> {
    app.caller(&headers, keys::Scope::Read)?;
    let list = app.ctl.shared.state(|s| s.freezes(windows::now())).map_err(internal)?;
    Ok(answer(StatusCode::OK, &list))
}

/// Freeze stacks, an environment, or everything until a time. Needs an admin key.
#[utoipa::path(post, path = "/api/v1/freezes", tag = "deploys", request_body = FreezeBody,
    responses((status = 201, description = "The freezes made", body = Freezes), Errors))]
pub async fn freeze(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let caller = app.caller(&headers, keys::Scope::Admin)?;
    let body: FreezeBody = parse_json(&body)?;
    let scopes = scopes(&app, &body.stacks, body.environment.as_deref())?;
    let now = windows::now();
    let until = windows::parse_until(&body.until, now).map_err(|e| ApiError::bad_request(format!("until: {e}")))?;
    let reason = body.reason.trim();
    if reason.is_empty() {
        return Err(ApiError::bad_request("`reason` is empty: say why"));
    }
    let made = app
        .ctl
        .shared
        .state(|s| {
            for sc in &scopes {
                s.freeze(sc, until, reason, &caller.name, now)?;
            }
            s.freezes(now)
        })
        .map_err(internal)?;
    let made: Vec<_> = made.into_iter().filter(|f| scopes.contains(&f.scope)).collect();
    tracing::info!(by = %caller.name, until, %reason, "freeze");
    Ok(answer(StatusCode::CREATED, &made))
}

/// Lift freezes: of stacks, of an environment, or (empty body) every freeze. Needs an admin key.
/// Deploys that waited for them start at once.
#[utoipa::path(post, path = "/api/v1/freezes/lift", tag = "deploys", request_body(content = Option<LiftBody>),
    responses((status = 200, description = "The freezes lifted", body = Freezes), Errors))]
pub async fn lift(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let caller = app.caller(&headers, keys::Scope::Admin)?;
    let body: LiftBody = optional_json(&body)?;
    let all = body.stacks.is_empty() && body.environment.is_none();
    let scopes = if all { Vec::new() } else { scopes(&app, &body.stacks, body.environment.as_deref())? };
    let lifted = app.ctl.shared.state(|s| s.unfreeze(&scopes, windows::now())).map_err(internal)?;
    tracing::info!(by = %caller.name, lifted = lifted.len(), "unfreeze");
    app.ctl.recheck();
    Ok(answer(StatusCode::OK, &lifted))
}
