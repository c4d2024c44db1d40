//! A pull request's full plan (`/plans/<repo>/<number>`): what the PR comment links to when
//! the forge's size limit cut it.

use std::sync::Arc;

use askama::Template;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;

use super::{Ctx, Page, blocking, html, message};
use crate::controller::Shared;
use crate::state::PrPlan;

#[derive(Template)]
#[template(path = "plan.html")]
struct PlanPage {
    page: Page,
    plan: PrPlan,
    badge: &'static str,
}

pub async fn plan(ctx: Ctx, Path((repo, number)): Path<(String, u64)>) -> Response {
    if let Some(r) = ctx.read_refusal() {
        return r;
    }
    let shared: Arc<Shared> = ctx.dash.app.ctl.shared.clone();
    let (r, n) = (repo.clone(), number);
    match blocking(move || shared.state(|s| s.pr_plan(&r, n))).await {
        Ok(Ok(Some(plan))) => {
            let badge = if plan.state == "success" { "ok" } else { "failed" };
            let page = ctx.page(&format!("Plan of #{number}"));
            html(StatusCode::OK, &PlanPage { page, plan, badge })
        }
        Ok(Ok(None)) => message(
            &ctx,
            StatusCode::NOT_FOUND,
            "No such plan",
            format!("repo `{repo}` has no plan of pull request #{number}"),
        ),
        Ok(Err(e)) => message(&ctx, StatusCode::INTERNAL_SERVER_ERROR, "Cannot read the plan", e.to_string()),
        Err(r) => r,
    }
}
