//! Freezes on the dashboard: the list in force and, for admins, the forms that freeze and lift them
//! (CSRF-checked form posts recording the same freezes as `berth freeze` and `/api/v1/freezes`).

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use berth_core::window::{Freeze, Scope};

use super::glance::{Stamp, stamp};
use super::{Ctx, blocking, message};
use crate::controller::Shared;
use crate::windows;

/// A freeze in force, as the overview lists it.
pub struct Row {
    /// `all`, `environment` or `stack` (the lift form's `scope`).
    pub kind: &'static str,
    pub name: String,
    /// What it holds, in words.
    pub label: String,
    pub until: Stamp,
    pub by: String,
    pub reason: String,
}

fn row(f: &Freeze, now: i64) -> Row {
    let (kind, name) = match &f.scope {
        Scope::All => ("all", String::new()),
        Scope::Environment(e) => ("environment", e.clone()),
        Scope::Stack(s) => ("stack", s.clone()),
    };
    let mut until = stamp(f.until);
    // An end lies ahead: say how far, not "ago".
    let left = std::time::Duration::from_secs((f.until - now).max(0).unsigned_abs());
    until.ago = format!("in {}", berth_core::duration::human(left));
    Row { kind, name, label: f.scope.to_string(), until, by: f.by.clone(), reason: f.reason.clone() }
}

/// What the overview shows of freezes: those in force and the names the freeze form offers.
#[derive(Default)]
pub struct Section {
    pub rows: Vec<Row>,
    pub environments: Vec<String>,
    pub stacks: Vec<String>,
}

/// The project freezes are checked against: the first repository's current one (as the API does).
fn project(shared: &Shared) -> Option<berth_core::Project> {
    shared.repos.iter().find_map(|r| r.current.read().ok().and_then(|c| c.as_ref().map(|c| c.1.clone())))
}

/// Freezes in force and the environments and stacks of the current configuration.
pub fn section(shared: &Shared) -> Section {
    let now = windows::now();
    let rows = shared.state(|s| s.freezes(now)).unwrap_or_default().iter().map(|f| row(f, now)).collect();
    let Some(p) = project(shared) else { return Section { rows, ..Section::default() } };
    let mut stacks: Vec<String> = p.stacks.iter().map(|s| s.name.clone()).collect();
    stacks.sort();
    Section { rows, environments: p.environments.iter().map(|e| e.name.clone()).collect(), stacks }
}

/// A posted form as its fields in order (repeated `stack` checkboxes included).
type Fields = Result<Form<Vec<(String, String)>>, FormRejection>;

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).unwrap_or_default()
}

/// The refusal, unless an admin posted the form with their CSRF token.
fn refusal(ctx: &Ctx, fields: &[(String, String)]) -> Option<Response> {
    if !ctx.csrf_ok(field(fields, "csrf")) {
        return Some(message(ctx, StatusCode::FORBIDDEN, "Refused", "The form was stale or not from this dashboard."));
    }
    if !ctx.may_admin() {
        return Some(message(ctx, StatusCode::FORBIDDEN, "Refused", "Only an admin may freeze and unfreeze deploys."));
    }
    None
}

/// What the form names: everything, an environment, or the stacks ticked (checked like the API does).
fn scopes(shared: &Shared, fields: &[(String, String)]) -> Result<Vec<Scope>, (StatusCode, String)> {
    let Some(p) = project(shared) else {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "No configuration is loaded yet.".into()));
    };
    let unknown = |e: berth_core::error::ConfigError| {
        let m = match &e.help {
            Some(h) => format!("{}; {h}", e.message),
            None => e.message.clone(),
        };
        (StatusCode::NOT_FOUND, m)
    };
    match field(fields, "scope") {
        "all" => Ok(vec![Scope::All]),
        "environment" => {
            let env = field(fields, "environment");
            if env.is_empty() {
                return Err((StatusCode::BAD_REQUEST, "Choose an environment.".into()));
            }
            windows::scopes(&p, &[], Some(env)).map_err(unknown)
        }
        "stacks" => {
            let stacks: Vec<String> = fields
                .iter()
                .filter(|(k, v)| k == "stack" && !v.trim().is_empty())
                .map(|(_, v)| v.trim().into())
                .collect();
            if stacks.is_empty() {
                return Err((StatusCode::BAD_REQUEST, "Tick the stacks to freeze.".into()));
            }
            windows::scopes(&p, &stacks, None).map_err(unknown)
        }
        other => Err((StatusCode::BAD_REQUEST, format!("Unknown scope `{other}`: all, environment or stacks."))),
    }
}

fn back(ctx: &Ctx) -> Response {
    Redirect::to(&format!("{}/#freezes", ctx.base)).into_response()
}

/// `POST …/freezes` (`scope` = all | environment | stacks, `environment`, `stack`…, `until`, `reason`):
/// freeze until a time, recorded with the signed-in admin as who.
pub async fn freeze(ctx: Ctx, form: Fields) -> Response {
    let fields = form.map(|f| f.0).unwrap_or_default();
    if let Some(r) = refusal(&ctx, &fields) {
        return r;
    }
    let shared = ctx.dash.app.ctl.shared.clone();
    let scopes = match scopes(&shared, &fields) {
        Ok(s) => s,
        Err((code, text)) => return message(&ctx, code, "Not frozen", text),
    };
    let now = windows::now();
    let until = match windows::parse_until(field(&fields, "until"), now) {
        Ok(u) => u,
        Err(e) => return message(&ctx, StatusCode::BAD_REQUEST, "Not frozen", format!("Until: {e}")),
    };
    let reason: String = field(&fields, "reason").chars().take(500).collect();
    if reason.is_empty() {
        return message(&ctx, StatusCode::BAD_REQUEST, "Not frozen", "Say why: the reason is empty.");
    }
    let who = ctx.writer.as_ref().map(|w| w.name.clone()).unwrap_or_default();
    let (by, why) = (who.clone(), reason.clone());
    let done = blocking(move || {
        shared.state(|s| {
            for sc in &scopes {
                s.freeze(sc, until, &why, &by, now)?;
            }
            Ok::<(), crate::state::StateError>(())
        })
    })
    .await;
    match done {
        Ok(Ok(())) => {
            tracing::info!(by = %who, until, %reason, "freeze from the dashboard");
            back(&ctx)
        }
        Ok(Err(e)) => message(&ctx, StatusCode::INTERNAL_SERVER_ERROR, "Error", e.to_string()),
        Err(r) => r,
    }
}

/// `POST …/freezes/lift` (`scope` = all | environment | stack, `name`): lift one freeze; deploys
/// that waited for it start at once.
pub async fn lift(ctx: Ctx, form: Fields) -> Response {
    let fields = form.map(|f| f.0).unwrap_or_default();
    if let Some(r) = refusal(&ctx, &fields) {
        return r;
    }
    let name = field(&fields, "name").to_string();
    let scope = match (field(&fields, "scope"), name.is_empty()) {
        ("all", _) => Scope::All,
        ("environment", false) => Scope::Environment(name),
        ("stack", false) => Scope::Stack(name),
        _ => return message(&ctx, StatusCode::BAD_REQUEST, "Not lifted", "The form names no freeze."),
    };
    let shared = ctx.dash.app.ctl.shared.clone();
    let done = blocking(move || shared.state(|s| s.unfreeze(&[scope], windows::now()))).await;
    match done {
        Ok(Ok(lifted)) => {
            let who = ctx.writer.as_ref().map(|w| w.name.as_str()).unwrap_or_default();
            tracing::info!(by = %who, lifted = lifted.len(), "unfreeze from the dashboard");
            ctx.dash.app.ctl.recheck();
            back(&ctx)
        }
        Ok(Err(e)) => message(&ctx, StatusCode::INTERNAL_SERVER_ERROR, "Error", e.to_string()),
        Err(r) => r,
    }
}
