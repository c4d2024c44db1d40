//! `POST /hooks/registry`: a registry's push notifications (Distribution's `notifications`
//! endpoint) start an image update check at once instead of at the next poll.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::hooks::{HookQuery, unauthorized, verified_repo};
use super::{ApiError, App};
use crate::controller::Wake;

/// `POST /hooks/registry`: Distribution's event envelope, authenticated with
/// `Authorization: Bearer <the repository's webhook secret>` (a header in the registry's endpoint config).
#[utoipa::path(post, path = "/hooks/registry", tag = "webhooks", security(()), params(HookQuery),
    request_body(content = Object, content_type = "application/vnd.docker.distribution.events.v1+json"),
    responses((status = 202, description = "Tags were pushed: image updates are being checked", body = Object),
        (status = 200, description = "No tag pushes in the notification (pulls, blobs): nothing to do", body = Object),
        super::api::Errors))]
pub async fn registry(
    State(app): State<Arc<App>>,
    Query(q): Query<HookQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(token) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
    else {
        return Err(unauthorized(
            "missing `Authorization: Bearer <webhook secret>`; add it to the registry's notification endpoint headers",
        ));
    };
    verified_repo(&app, &q, |secret| berth_core::webhook::verify_token(token.trim(), secret))?;
    let pushes = berth_core::webhook::parse_registry(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e))?;
    if pushes.is_empty() {
        return Ok((StatusCode::OK, axum::Json(json!({ "pushes": 0 }))).into_response());
    }
    let names: Vec<String> = pushes
        .iter()
        .map(|p| match &p.host {
            Some(h) => format!("{h}/{}:{}", p.repository, p.tag),
            None => format!("{}:{}", p.repository, p.tag),
        })
        .collect();
    app.ctl.check_updates(Wake::Pushed(names.clone()));
    Ok((StatusCode::ACCEPTED, axum::Json(json!({ "pushes": names.len(), "tags": names }))).into_response())
}
