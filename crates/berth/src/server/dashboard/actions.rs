//! The dashboard's write actions: deploy a stack now (an admin also through closed windows and
//! freezes), roll it back, pause and resume it (CSRF-checked form posts).

use std::collections::BTreeMap;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::auth::{CsrfForm, Posted, csrf_of};
use super::{Ctx, blocking, message};
use crate::controller::{Target, Through, Want};

/// The refusal, unless the writer may act on `stack` and the form carries its CSRF token.
pub fn refusal(ctx: &Ctx, stack: &str, form: &CsrfForm) -> Option<Response> {
    if !ctx.csrf_ok(&form.csrf) {
        return Some(message(ctx, StatusCode::FORBIDDEN, "Refused", "The form was stale or not from this dashboard."));
    }
    if !ctx.may_write(stack) {
        return Some(message(ctx, StatusCode::FORBIDDEN, "Refused", format!("You may not deploy `{stack}`.")));
    }
    None
}

/// `POST …/stacks/{name}/deploy`: deploy the branch tip now, keeping the stack's pinned variables.
/// With `force` (an admin, and a `reason`) it goes through closed windows and freezes, recorded
/// as `berth deploy --force --reason` records it.
pub async fn deploy(ctx: Ctx, Path(name): Path<String>, form: Posted) -> Response {
    let form = csrf_of(form);
    if let Some(r) = refusal(&ctx, &name, &form) {
        return r;
    }
    let through = if form.force.is_empty() {
        None
    } else if !ctx.may_admin() {
        let text = "Only an admin may deploy through a closed window or freeze.";
        return message(&ctx, StatusCode::FORBIDDEN, "Refused", text);
    } else {
        let reason: String = form.reason.trim().chars().take(500).collect();
        if reason.is_empty() {
            let text = "Say why it deploys through the closed window or freeze: the reason is empty.";
            return message(&ctx, StatusCode::BAD_REQUEST, "Not deployed", text);
        }
        let by = ctx.writer.as_ref().map(|w| w.name.clone()).unwrap_or_default();
        Some(Through { by, reason })
    };
    let want = Want::Force { stacks: vec![name.clone()], overrides: BTreeMap::new(), through };
    request(&ctx, &name, want, Target::Tip, "dashboard").await
}

/// `POST …/stacks/{name}/rollback`: put back the successful deploy before the current one.
pub async fn rollback(ctx: Ctx, Path(name): Path<String>, form: Posted) -> Response {
    if let Some(r) = refusal(&ctx, &name, &csrf_of(form)) {
        return r;
    }
    let shared = ctx.dash.app.ctl.shared.clone();
    let n = name.clone();
    let earlier = blocking(move || {
        shared.state(|s| {
            let current = s.last_success(&n, None)?;
            s.last_success(&n, current.map(|c| c.id))
        })
    })
    .await;
    let earlier = match earlier {
        Ok(Ok(Some(r))) => r,
        Ok(Ok(None)) => {
            let text = format!("Stack `{name}` has no earlier successful deploy.");
            return message(&ctx, StatusCode::CONFLICT, "Nothing to roll back to", text);
        }
        Ok(Err(e)) => return message(&ctx, StatusCode::INTERNAL_SERVER_ERROR, "Error", e.to_string()),
        Err(r) => return r,
    };
    let overrides = berth_core::vars::replayable(&earlier.overrides);
    let want = Want::Force { stacks: vec![name.clone()], overrides, through: None };
    request(&ctx, &name, want, Target::Rev(earlier.commit), "dashboard-rollback").await
}

/// Hand the deploy to the controller and show it (or the stack when nothing needed deploying).
async fn request(ctx: &Ctx, stack: &str, want: Want, target: Target, why: &str) -> Response {
    let Some(repo) = ctx.dash.app.ctl.repo_of_stack(stack).cloned() else {
        return message(ctx, StatusCode::NOT_FOUND, "No such stack", format!("There is no stack named `{stack}`."));
    };
    let who = ctx.writer.as_ref().map(|w| w.name.clone()).unwrap_or_default();
    match ctx.dash.app.ctl.request(&repo, want, target, &format!("{why}:{who}")).await {
        Ok(out) => match out.deploys.first() {
            Some(d) => Redirect::to(&format!("{}/deploys/{}", ctx.base, d.id)).into_response(),
            None => Redirect::to(&format!("{}/stacks/{stack}", ctx.base)).into_response(),
        },
        Err(e) => message(ctx, StatusCode::BAD_GATEWAY, "The deploy did not start", e.to_string()),
    }
}

/// `POST …/stacks/{name}/pause` (optional `reason`): berth neither deploys nor heals the stack until resumed.
pub async fn pause(ctx: Ctx, Path(name): Path<String>, form: Posted) -> Response {
    set_paused(ctx, name, form, true).await
}

/// `POST …/stacks/{name}/resume`.
pub async fn resume(ctx: Ctx, Path(name): Path<String>, form: Posted) -> Response {
    set_paused(ctx, name, form, false).await
}

async fn set_paused(ctx: Ctx, name: String, form: Posted, paused: bool) -> Response {
    let form = csrf_of(form);
    if let Some(r) = refusal(&ctx, &name, &form) {
        return r;
    }
    if ctx.dash.app.ctl.repo_of_stack(&name).is_none() {
        return message(&ctx, StatusCode::NOT_FOUND, "No such stack", format!("There is no stack named `{name}`."));
    }
    let who = format!("dashboard:{}", ctx.writer.as_ref().map(|w| w.name.clone()).unwrap_or_default());
    let reason: String = form.reason.trim().chars().take(200).collect();
    let shared = ctx.dash.app.ctl.shared.clone();
    let n = name.clone();
    let done = blocking(move || {
        shared.state(|s| s.set_paused(&n, paused, &who, Some(reason.as_str()).filter(|r| !r.is_empty())))
    })
    .await;
    match done {
        Ok(Ok(_)) => Redirect::to(&format!("{}/stacks/{name}", ctx.base)).into_response(),
        Ok(Err(e)) => message(&ctx, StatusCode::INTERNAL_SERVER_ERROR, "Error", e.to_string()),
        Err(r) => r,
    }
}
