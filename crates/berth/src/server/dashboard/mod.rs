//! The web dashboard: server-rendered pages (askama templates compiled in), its assets and routes.
//!
//! Every page works without JavaScript; the one small script only enhances it (live
//! deploy log, container list and container logs over server-sent events, filters that
//! apply on change, times in the reader's zone). Links are absolute,
//! built from the request's origin (forwarded headers only from trusted proxies) and the
//! configured `base_path`.

mod actions;
mod auth;
mod containers;
mod deploys;
mod freezes;
mod glance;
mod live;
mod pages;
mod plans;
mod servicediff;
mod verify;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::App;

pub use auth::Ctx;

/// Everything the dashboard's handlers share.
pub struct Dash {
    pub app: Arc<App>,
    pub sessions: auth::Sessions,
    /// Key of the CSRF tokens of sessionless identities (basic, forward); random per process.
    csrf_key: Vec<u8>,
}

impl Dash {
    pub fn settings(&self) -> &berth_core::dashboard::Dashboard {
        &self.app.ctl.shared.dashboard.settings
    }
}

const CSS: &str = include_str!("../../../assets/dashboard.css");
const JS: &str = include_str!("../../../assets/dashboard.js");
/// Asset URLs carry the version, so they can be cached for long.
pub const ASSET_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The dashboard's routes under its `base_path` (nothing when disabled).
pub fn routes(app: Arc<App>) -> Router<Arc<App>> {
    let settings = &app.ctl.shared.dashboard.settings;
    if !settings.enabled {
        return Router::new();
    }
    let b = settings.base_path.clone();
    let csrf_key = crate::secrets::random_hex(32).map(String::into_bytes).unwrap_or_else(|e| {
        // Without randomness no session could be opened either; keep serving read-only pages.
        tracing::error!(error = %e, "no randomness for the dashboard's CSRF key");
        Vec::new()
    });
    let dash = Arc::new(Dash { app, sessions: auth::Sessions::default(), csrf_key });
    let mut r = Router::new()
        .route(&format!("{b}/"), get(pages::overview))
        .route(&format!("{b}/stacks/{{name}}"), get(pages::stack))
        .route(&format!("{b}/stacks/{{name}}/deploy"), post(actions::deploy))
        .route(&format!("{b}/stacks/{{name}}/rollback"), post(actions::rollback))
        .route(&format!("{b}/stacks/{{name}}/pause"), post(actions::pause))
        .route(&format!("{b}/stacks/{{name}}/resume"), post(actions::resume))
        .route(&format!("{b}/stacks/{{name}}/services/{{service}}/restart"), post(containers::restart))
        .route(&format!("{b}/freezes"), post(freezes::freeze))
        .route(&format!("{b}/freezes/lift"), post(freezes::lift))
        .route(&format!("{b}/stacks/{{name}}/containers/events"), get(containers::events))
        .route(&format!("{b}/stacks/{{name}}/containers/{{id}}/logs"), get(containers::logs))
        .route(&format!("{b}/stacks/{{name}}/containers/{{id}}/follow"), get(containers::follow))
        .route(&format!("{b}/deploys/{{id}}"), get(deploys::deploy))
        .route(&format!("{b}/plans/{{repo}}/{{number}}"), get(plans::plan))
        .route(&format!("{b}/deploys/{{id}}/log"), get(live::log))
        .route(&format!("{b}/deploys/{{id}}/events"), get(live::events))
        .route(&format!("{b}/login"), get(auth::login_form).post(auth::login))
        .route(&format!("{b}/logout"), post(auth::logout))
        .route(&format!("{b}/assets/{{file}}"), get(asset));
    if !b.is_empty() {
        r = r.route(&b, get(pages::to_overview));
    }
    r.with_state(dash)
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "dashboard.css" => (CSS, "text/css; charset=utf-8"),
        "dashboard.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "public, max-age=604800, immutable")], body).into_response()
}

/// The parts of every page: where links point, who is signed in, and the forms that go with it.
pub struct Page {
    pub title: String,
    /// Origin and base path, e.g. `https://ops.example.com/berth`; every link starts with it.
    pub base: String,
    /// This page's own absolute URL (for the skip link: every link stays absolute).
    pub url: String,
    pub asset_version: &'static str,
    /// Who is signed in (for reading), if anyone.
    pub user: Option<String>,
    /// A key session is open: show the logout form (with this CSRF token).
    pub logout_csrf: Option<String>,
    /// Offer a login link (an identity could still be gained).
    pub login: bool,
}

/// Render a template as an HTML answer with the dashboard's headers.
pub fn html<T: Template>(status: StatusCode, t: &T) -> Response {
    match t.render() {
        Ok(body) => {
            let mut r = (status, body).into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; \
                     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
                ),
            );
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot render a dashboard page");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot render the page").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct Message {
    pub page: Page,
    pub heading: String,
    pub text: String,
}

/// A page that only says something (an error, a refusal).
pub fn message(ctx: &Ctx, status: StatusCode, heading: &str, text: impl Into<String>) -> Response {
    let page = ctx.page(heading);
    html(status, &Message { page, heading: heading.to_string(), text: text.into() })
}

/// Run blocking work (SQLite, git) off the async threads.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Response> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        tracing::error!(error = %e, "a dashboard task failed");
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
    })
}
