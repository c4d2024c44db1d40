//! The HTTP server of `berth serve`: the only module that knows HTTP.
//!
//! Routes: health, forge webhooks and signed sync/deploy calls (`hooks`), the
//! Komodo-compatible execute/read API (`komodo`) and the versioned REST API
//! (`api`). Every JSON error has one shape: `{"error", "code", "trace"}`.

mod api;
mod dashboard;
mod freezes;
mod hooks;
mod komodo;
mod registryhook;

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::controller::Controller;
use crate::keys::{self, Caller, Scope};

/// Shared by every handler.
pub struct App {
    pub ctl: Controller,
    deliveries: Mutex<Recent>,
}

/// The last delivery ids seen, for replay protection (bounded).
#[derive(Default)]
struct Recent {
    order: VecDeque<String>,
    seen: HashSet<String>,
}

const RECENT_DELIVERIES: usize = 10_000;

impl App {
    /// Record a delivery id; false if it was seen before (a replay).
    fn first_delivery(&self, id: &str) -> bool {
        let mut r = self.deliveries.lock().unwrap_or_else(|p| p.into_inner());
        if r.seen.contains(id) {
            return false;
        }
        r.seen.insert(id.to_string());
        r.order.push_back(id.to_string());
        if r.order.len() > RECENT_DELIVERIES
            && let Some(old) = r.order.pop_front()
        {
            r.seen.remove(&old);
        }
        true
    }

    /// Forget a delivery whose request failed, so the forge's redelivery (same id) is tried again.
    fn forget_delivery(&self, id: &str) {
        self.deliveries.lock().unwrap_or_else(|p| p.into_inner()).seen.remove(id);
    }

    /// Authenticate `X-Api-Key` + `X-Api-Secret` and require a scope.
    fn caller(&self, headers: &HeaderMap, need: Scope) -> Result<Caller, ApiError> {
        let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (Some(key), Some(secret)) = (h("x-api-key"), h("x-api-secret")) else {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "missing X-Api-Key / X-Api-Secret"));
        };
        let caller = self
            .ctl
            .shared
            .state(|s| keys::verify(s, &key, &secret))
            .map_err(|e| ApiError::internal(e.to_string()))?
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "invalid API key or secret"))?;
        if caller.scope < need {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("key `{}` has scope `{}`; this needs `{}`", caller.name, caller.scope.as_str(), need.as_str()),
            ));
        }
        Ok(caller)
    }
}

impl App {
    /// The repository that holds `stack`, checked against what `caller` may deploy.
    /// An unknown stack (404) is told apart from a key that does not cover it (403).
    pub fn deployable(
        &self,
        caller: &Caller,
        stack: &str,
    ) -> Result<&std::sync::Arc<crate::controller::RepoHandle>, ApiError> {
        let repo = self.ctl.repo_of_stack(stack).ok_or_else(|| ApiError::unknown_stack(stack))?;
        if !caller.may_deploy(stack) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("key `{}` may not deploy stack `{stack}`", caller.name),
            ));
        }
        Ok(repo)
    }
}

/// An error answer: `{"error": message, "code": code, "trace": [...]}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    code: &'static str,
    pub message: String,
    pub trace: Vec<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), trace: Vec::new() }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unknown_stack(name: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "unknown_stack", format!("no stack named `{name}`"))
    }

    pub fn with_trace(mut self, trace: Vec<String>) -> ApiError {
        self.trace = trace;
        self
    }
}

pub use berth_core::api::ErrorBody;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, error = %self.message, "request failed");
        }
        // An error may quote a command's output; the body hides every secret the process knows.
        let clean = |s: &str| crate::redact::apply(s).into_owned();
        let body = ErrorBody {
            error: clean(&self.message),
            code: self.code.to_string(),
            trace: self.trace.iter().map(|t| clean(t)).collect(),
        };
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<crate::controller::SyncError> for ApiError {
    fn from(e: crate::controller::SyncError) -> ApiError {
        use crate::controller::SyncError as S;
        match e {
            S::Unknown(m) => ApiError::new(StatusCode::NOT_FOUND, "unknown", m),
            S::ConfigRejected { errors, .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "config_rejected", "the configuration is invalid")
                    .with_trace(errors)
            }
            S::Unsigned(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unsigned_commit", m),
            S::Fetch(m) => ApiError::new(StatusCode::BAD_GATEWAY, "fetch_failed", m),
            S::Stopped => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "berth is shutting down"),
            S::Failed(m) => ApiError::internal(m),
        }
    }
}

/// Parse a JSON body, answering 400 with serde's message when it is malformed.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))
}

/// Every route but the dashboard's pages and the aliases (`/healthz`, `/execute/{kind}`, `/read/{kind}`), with the OpenAPI document
/// describing exactly them: both come from the handlers' annotations.
fn documented() -> (Router<std::sync::Arc<App>>, utoipa::openapi::OpenApi) {
    utoipa_axum::router::OpenApiRouter::with_openapi(api::document())
        .routes(utoipa_axum::routes!(health))
        .routes(utoipa_axum::routes!(metrics))
        .routes(utoipa_axum::routes!(hooks::webhook))
        .routes(utoipa_axum::routes!(hooks::sync))
        .routes(utoipa_axum::routes!(registryhook::registry))
        .routes(utoipa_axum::routes!(hooks::deploy))
        .routes(utoipa_axum::routes!(komodo::execute))
        .routes(utoipa_axum::routes!(komodo::read))
        .routes(utoipa_axum::routes!(komodo::version))
        .merge(api::routes())
        .split_for_parts()
}

/// Build the router.
pub fn router(ctl: Controller, max_body: usize) -> Router {
    let app = std::sync::Arc::new(App { ctl, deliveries: Mutex::new(Recent::default()) });
    let (api, doc) = documented();
    let doc = std::sync::Arc::new(doc);
    Router::new()
        .route("/healthz", get(health))
        // Aliases of `/execute` and `/read` with the type in the path, as Komodo's clients call them.
        .route("/execute/{kind}", axum::routing::post(komodo::execute_path))
        .route("/read/{kind}", axum::routing::post(komodo::read_path))
        .merge(api)
        .merge(dashboard::routes(app.clone()))
        .route("/api/openapi.json", get(move || async move { axum::Json(doc.as_ref().clone()) }))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        // Refuse an announced oversized body at once, before reading it.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(max_body))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(15 * 60),
        ))
        // Outside the limits and the timeout, so their answers get the JSON error shape too.
        .layer(axum::middleware::from_fn_with_state(app.clone(), contract))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(app)
}

/// Every error answer has the documented JSON shape, including the ones the HTTP stack makes
/// itself (413 from the body limit, also for chunked bodies; 408; extractor rejections). Pages
/// (HTML) and JSON answers pass untouched. Oversized webhook deliveries are counted too.
async fn contract(
    State(app): State<std::sync::Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let webhook = (req.uri().path() == "/webhook").then(|| {
        let h = req.headers();
        berth_core::webhook::Provider::detect(&|n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string))
    });
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let kind = resp.headers().get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if kind.starts_with("application/json") || kind.starts_with("text/html") {
        return resp;
    }
    if let Some(provider) = webhook
        && status == StatusCode::PAYLOAD_TOO_LARGE
    {
        app.ctl.shared.metrics.webhook(provider.as_str(), "too_large");
    }
    let text = match axum::body::to_bytes(resp.into_body(), 64 * 1024).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => String::new(),
    };
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ("payload_too_large", "the request body is larger than `max_body`".to_string())
        }
        StatusCode::REQUEST_TIMEOUT => ("request_timeout", "the request took too long".to_string()),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "this route does not take that method".to_string()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("unsupported_media_type", "send the body as application/json".to_string())
        }
        s if s.is_server_error() => ("internal", "the request failed inside berth".to_string()),
        _ => ("bad_request", "the request was refused".to_string()),
    };
    let message = if text.is_empty() { message } else { format!("{message}: {text}") };
    ApiError::new(status, code, message).into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route; the API is described at /api/openapi.json")
}

/// `GET /metrics`: Prometheus metrics, in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "server", security(()),
    responses((status = 200, description = "The metrics", body = String,
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")))]
async fn metrics(State(app): State<std::sync::Arc<App>>) -> Response {
    // prometheus-client renders OpenMetrics text (it ends with `# EOF`): say so.
    let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(axum::http::header::CONTENT_TYPE, kind)], app.ctl.shared.metrics.render()).into_response()
}

/// `GET /health`: the state store, each repository's last sync, the deploys queued and running.
#[utoipa::path(get, path = "/health", tag = "server", security(()),
    responses((status = 200, description = "Healthy", body = Object),
        (status = 503, description = "The state store or a repository's sync is failing", body = Object)))]
async fn health(State(app): State<std::sync::Arc<App>>) -> Response {
    let shared = &app.ctl.shared;
    let db = shared.state(|s| s.ping());
    let mut healthy = db.is_ok();
    let repos: Vec<_> = shared
        .repos
        .iter()
        .map(|r| {
            let last = r.last_sync.read().ok().and_then(|l| l.clone());
            // A repo that never synced yet is starting, not broken.
            if last.as_ref().is_some_and(|l| !l.ok) {
                healthy = false;
            }
            json!({
                "name": r.spec.name, "branch": r.spec.branch,
                "last_sync": last,
                "commit": r.current.read().ok().and_then(|c| c.as_ref().map(|(c, _)| c.clone())),
            })
        })
        .collect();
    let (queued, running) = shared.state(|s| s.active()).unwrap_or_default();
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let body = json!({
        "status": if healthy { "ok" } else { "unhealthy" },
        "deploys": {
            "queued": queued, "running": running,
            "message": format!("{queued} deploy{} queued, {running} running", plural(queued)),
        },
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": shared.started.elapsed().as_secs(),
        "state": match &db { Ok(()) => "ok".to_string(), Err(e) => e.to_string() },
        "repos": repos,
    });
    let code = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, axum::Json(body)).into_response()
}

/// Serve until SIGTERM or SIGINT, then let running deploys finish (bounded by `grace`).
pub async fn serve(ctl: Controller, addr: SocketAddr, max_body: usize, grace: Duration) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "listening");
    // Print the bound address for scripts and tests (port 0 picks a free one).
    println!("listening on {}", listener.local_addr()?);
    let router = router(ctl.clone(), max_body);
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service).with_graceful_shutdown(signal()).await?;
    tracing::info!("shutting down: waiting for running deploys");
    ctl.shutdown(grace).await;
    tracing::info!("stopped");
    Ok(())
}

async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
