//! Signed entry points: forge push webhooks, `POST /sync` and `POST /deploy`.
//!
//! Nothing here acts before the HMAC signature over the raw body checked out.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_core::webhook::{self, EventKind, Provider};
use serde::Deserialize;
use serde_json::json;

use super::api::{Wait, answer};
use super::{ApiError, App, parse_json};
use crate::controller::{RepoHandle, Target, Want};

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HookQuery {
    /// Which `[[repo]]` (default: the one whose secret verifies the signature).
    pub repo: Option<String>,
    /// Answer only when the deploys have finished (or `timeout` passed).
    #[serde(default)]
    pub wait: bool,
    /// Seconds to wait at most (default 600).
    pub timeout: Option<u64>,
}

impl HookQuery {
    fn wait(&self) -> Wait {
        Wait { wait: self.wait, timeout: self.timeout }
    }
}

fn lookup(headers: &HeaderMap) -> impl Fn(&str) -> Option<String> + '_ {
    move |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

pub(super) fn unauthorized(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", msg)
}

/// Marks an answer to a delivery that berth ignored on purpose (for the metrics' `result`).
#[derive(Clone, Copy)]
struct Ignored;

fn ignored(reason: String) -> Response {
    let mut r = (StatusCode::ACCEPTED, axum::Json(json!({ "status": "ignored", "reason": reason }))).into_response();
    r.extensions_mut().insert(Ignored);
    r
}

/// How long an accepted push waits for its plan, to answer with the deploy ids it made.
const PLAN_BOUND: std::time::Duration = std::time::Duration::from_secs(2);

/// The repository whose webhook secret verifies this request.
pub(super) fn verified_repo<'a>(
    app: &'a App,
    q: &HookQuery,
    check: impl Fn(&[u8]) -> Result<(), webhook::SignatureError>,
) -> Result<&'a Arc<RepoHandle>, ApiError> {
    let candidates: Vec<&Arc<RepoHandle>> =
        match &q.repo {
            Some(name) => vec![app.ctl.repo(Some(name)).ok_or_else(|| {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_repo", format!("no repo named `{name}`"))
            })?],
            None => app.ctl.shared.repos.iter().collect(),
        };
    let mut last = None;
    let mut any_secret = false;
    for r in candidates {
        let Some(secret) = &r.webhook_secret else { continue };
        any_secret = true;
        match check(secret.as_bytes()) {
            Ok(()) => return Ok(r),
            Err(e) => last = Some(e),
        }
    }
    if !any_secret {
        return Err(unauthorized("no webhook secret is configured, so no request can be verified"));
    }
    Err(unauthorized(match last {
        Some(e) => format!("signature check failed: {e}"),
        None => "signature check failed".to_string(),
    }))
}

/// `POST /webhook`: a forge's push (GitHub, Gitea, Forgejo, GitLab or generic), verified by its
/// signature or token before anything else.
#[utoipa::path(post, path = "/webhook", tag = "webhooks", security(()), params(HookQuery),
    request_body(content = Object, description = "The forge's push payload", content_type = "application/json"),
    responses(
        (status = 200, description = "Waited (`wait=true`): the deploys and their outcome", body = Object),
        (status = 202, description = "Accepted (with the deploys when the plan was quick, and a `follow` link), a ping, or ignored with the reason", body = Object),
        super::api::Errors))]
pub async fn webhook(
    State(app): State<Arc<App>>,
    Query(q): Query<HookQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let provider = Provider::detect(&lookup(&headers));
    let result = webhook_inner(&app, &q, provider, &headers, &body).await;
    let outcome = match &result {
        Ok(r) if r.extensions().get::<Ignored>().is_some() => "ignored",
        Ok(r) if r.status() == StatusCode::OK => "ok",
        Ok(r) if r.status() == StatusCode::ACCEPTED => "accepted",
        Ok(_) => "other",
        Err(e) if e.status == StatusCode::UNAUTHORIZED => "unauthorized",
        Err(e) if e.status.is_client_error() => "rejected",
        Err(_) => "error",
    };
    app.ctl.shared.metrics.webhook(provider.as_str(), outcome);
    result
}

async fn webhook_inner(
    app: &Arc<App>,
    q: &HookQuery,
    provider: Provider,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let h = lookup(headers);
    let repo = verified_repo(app, q, |secret| webhook::verify(provider, &h, body, secret))?;
    let push = match webhook::event_kind(provider, &h, body) {
        EventKind::Ping => {
            return Ok(axum::Json(json!({ "status": "pong", "provider": provider.as_str() })).into_response());
        }
        EventKind::Other(name) => return Ok(ignored(format!("`{name}` events are not pushes"))),
        EventKind::PullRequest => return pull_request(app, q, provider, repo, headers, body).await,
        EventKind::Push => webhook::parse_push(provider, body).map_err(|e| ApiError::bad_request(e.to_string()))?,
    };
    let delivery = webhook::delivery_id(provider, &h);
    if let Some(d) = &delivery
        && !app.first_delivery(d)
    {
        return Ok(ignored(format!("delivery {d} was already received")));
    }
    if let Some(tag) = push.tag() {
        return Ok(ignored(format!("push of tag `{tag}`; berth follows branch `{}`", repo.spec.branch)));
    }
    if push.branch.as_deref() != Some(repo.spec.branch.as_str()) {
        return Ok(ignored(format!(
            "push to `{}`; berth follows branch `{}`",
            push.branch.as_deref().unwrap_or(&push.git_ref),
            repo.spec.branch
        )));
    }
    if push.deleted {
        return Ok(ignored(format!("branch `{}` was deleted; nothing running is touched", repo.spec.branch)));
    }
    // Per-push lines at debug: at thousands of pushes a second, logging is the cost.
    tracing::debug!(provider = provider.as_str(), delivery = delivery.as_deref().unwrap_or(""), before = %push.before, after = %push.after, "push received");
    // A push of what was already synced needs no fetch (retries, storms of the same push).
    let synced = repo.current.read().ok().and_then(|c| c.as_ref().map(|(c, _)| c.clone()));
    if !q.wait && synced.as_deref() == Some(push.after.as_str()) {
        return Ok((
            StatusCode::ACCEPTED,
            axum::Json(json!({ "status": "accepted", "repo": repo.spec.name, "after": push.after, "synced": true })),
        )
            .into_response());
    }
    let result = accept(app, q, provider, repo, &push.after).await;
    // A failed request (a fetch that failed, say) must not turn the forge's redelivery into a replay.
    if result.is_err()
        && let Some(d) = &delivery
    {
        app.forget_delivery(d);
    }
    result
}

/// A verified pull (merge) request event: plan it in the background (or, with `?wait=true`,
/// answer with the plan once it is commented).
async fn pull_request(
    app: &Arc<App>,
    q: &HookQuery,
    provider: Provider,
    repo: &Arc<RepoHandle>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let pr = webhook::parse_pull(provider, body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if !repo.spec.pr_plans {
        return Ok(ignored(format!("pull requests are not planned for repo `{}` (pr_plans = true)", repo.spec.name)));
    }
    if !pr.plans() {
        return Ok(ignored(format!("pull request #{} was {}; nothing to plan", pr.number, pr.action)));
    }
    if pr.base_branch != repo.spec.branch {
        return Ok(ignored(format!(
            "pull request into `{}`; berth follows branch `{}`",
            pr.base_branch, repo.spec.branch
        )));
    }
    if pr.fork && repo.spec.pr_plans_same_repo {
        return Ok(ignored(format!("pull request #{} comes from a fork (pr_plans_same_repo = true)", pr.number)));
    }
    let delivery = webhook::delivery_id(provider, &lookup(headers));
    if let Some(d) = &delivery
        && !app.first_delivery(d)
    {
        return Ok(ignored(format!("delivery {d} was already received")));
    }
    let number = pr.number;
    let planned = crate::pr::run(app.ctl.shared.clone(), repo.clone(), provider, pr);
    // As for pushes: a plan berth could not make (a failed fetch, say) leaves the forge's
    // redelivery of the event free to try again.
    let app2 = app.clone();
    let run = async move {
        let out = planned.await;
        if out.state == "error"
            && let Some(d) = &delivery
        {
            app2.forget_delivery(d);
        }
        out
    };
    if q.wait {
        let out = run.await;
        // Errors quote compose's output: hide any secret value it may carry.
        let text = json!({ "status": "planned", "repo": repo.spec.name, "plan": out }).to_string();
        let text = crate::redact::apply(&text).into_owned();
        return Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], text).into_response());
    }
    tokio::spawn(run);
    Ok((StatusCode::ACCEPTED, axum::Json(json!({ "status": "planning", "repo": repo.spec.name, "number": number })))
        .into_response())
}

/// Sync a verified push to the tracked branch and answer with what it started.
async fn accept(
    app: &Arc<App>,
    q: &HookQuery,
    provider: Provider,
    repo: &RepoHandle,
    after: &str,
) -> Result<Response, ApiError> {
    let trigger = format!("webhook:{}", provider.as_str());
    let want = Want::Reconcile { only: None };
    if !q.wait {
        // Answer with the deploys when the plan is quick; else say where to follow them.
        let follow = format!("/api/v1/deploys?commit={after}");
        let body = match tokio::time::timeout(PLAN_BOUND, app.ctl.request(repo, want, Target::Tip, &trigger)).await {
            Ok(Ok(out)) => json!({
                "status": "accepted", "repo": repo.spec.name, "after": after, "commit": out.commit,
                "deploys": out.deploys, "unchanged": out.unchanged, "follow": follow,
            }),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => json!({ "status": "accepted", "repo": repo.spec.name, "after": after, "follow": follow }),
        };
        return Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response());
    }
    let out = app.ctl.request(repo, want, Target::Tip, &trigger).await?;
    answer(app, out, &q.wait()).await
}

fn hub_signed<'a>(
    app: &'a App,
    q: &HookQuery,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<&'a Arc<RepoHandle>, ApiError> {
    let Some(sig) = headers.get("x-hub-signature-256").and_then(|v| v.to_str().ok()) else {
        return Err(unauthorized("missing X-Hub-Signature-256 (sha256=<hex HMAC-SHA256 of the body>)"));
    };
    verified_repo(app, q, |secret| webhook::verify_hub_signature(sig, body, secret))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncBody {
    #[serde(default)]
    services: Vec<String>,
    #[serde(default)]
    all: bool,
}

/// `POST /sync`: `{"services": ["platform/postgres"]}` or `{"all": true}`, signed with `X-Hub-Signature-256`.
#[utoipa::path(post, path = "/sync", tag = "webhooks", security(()), params(HookQuery),
    request_body(content = SyncBody, content_type = "application/json"),
    responses((status = 200, description = "Waited: the deploys and their outcome", body = Object),
        (status = 202, description = "The deploys it created or joined", body = Object), super::api::Errors))]
pub async fn sync(
    State(app): State<Arc<App>>,
    Query(q): Query<HookQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let repo = hub_signed(&app, &q, &headers, &body)?;
    let req: SyncBody = parse_json(&body)?;
    let only = match (req.all, req.services.is_empty()) {
        (true, true) => None,
        (false, false) => {
            let mut names = Vec::new();
            let guard = repo.current.read().map_err(|_| ApiError::internal("state poisoned"))?;
            let cur = guard.as_ref().map(|(_, p)| p);
            for s in &req.services {
                let found = cur.and_then(|p| {
                    p.stack(s).or_else(|| p.stacks.iter().find(|x| x.path == *s || x.path.ends_with(&format!("/{s}"))))
                });
                match found {
                    Some(st) => names.push(st.name.clone()),
                    None => return Err(ApiError::unknown_stack(s)),
                }
            }
            Some(names)
        }
        _ => return Err(ApiError::bad_request("give either \"services\": [...] or \"all\": true")),
    };
    let out = app.ctl.request(repo, Want::Reconcile { only }, Target::Tip, "sync").await?;
    answer(&app, out, &q.wait()).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseBody {
    env: String,
    tag: String,
    #[serde(default)]
    triggered_by: Option<String>,
}

/// `POST /deploy`: `{"env": "staging", "tag": "v1.2.4", "triggered_by": "ci"}`, signed with `X-Hub-Signature-256`.
#[utoipa::path(post, path = "/deploy", tag = "webhooks", security(()), params(HookQuery),
    request_body(content = ReleaseBody, content_type = "application/json"),
    responses((status = 200, description = "Waited: the deploys and their outcome", body = Object),
        (status = 202, description = "The deploys it created or joined", body = Object), super::api::Errors))]
pub async fn deploy(
    State(app): State<Arc<App>>,
    Query(q): Query<HookQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let repo = hub_signed(&app, &q, &headers, &body)?;
    let req: ReleaseBody = parse_json(&body)?;
    let stacks: Vec<String> = {
        let cur = repo.current.read().map_err(|_| ApiError::internal("state poisoned"))?;
        let Some((_, project)) = cur.as_ref() else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the repository has not synced yet",
            ));
        };
        let Some(env) = project.environments.iter().find(|e| e.name == req.env) else {
            let known: Vec<&str> = project.environments.iter().map(|e| e.name.as_str()).collect();
            return Err(ApiError::bad_request(format!(
                "unknown environment `{}` (configured: {})",
                req.env,
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            )));
        };
        project.environment_stacks(env).iter().filter(|s| !s.manual).map(|s| s.name.clone()).collect()
    };
    if req.tag.starts_with('-') || req.tag.is_empty() {
        return Err(ApiError::bad_request("invalid tag"));
    }
    let trigger = format!("deploy:{}", req.triggered_by.as_deref().unwrap_or("api"));
    let want = Want::Force { stacks, overrides: Default::default(), through: None };
    let out = app.ctl.request(repo, want, Target::Rev(format!("refs/tags/{}", req.tag)), &trigger).await?;
    let release = crate::state::Release {
        tag: req.tag.clone(),
        commit: out.commit.clone(),
        env: req.env.clone(),
        kind: "deploy".into(),
        from_tag: None,
        by: req.triggered_by.clone().unwrap_or_else(|| "api".into()),
        at: crate::state::now(),
        pushed: true,
        note: None,
    };
    app.ctl.shared.state(|s| s.add_release(&release)).map_err(|e| ApiError::internal(e.to_string()))?;
    answer(&app, out, &q.wait()).await
}
