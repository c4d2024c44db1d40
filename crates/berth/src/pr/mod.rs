//! PR plans: a pull (merge) request's head fetched, planned and diffed against its base, the
//! result commented on the request (one comment, edited on every push) and posted as the
//! `berth/plan` commit status. Nothing is deployed and no hook runs; a fork's plan reads no
//! secret.

mod cli;
mod comment;

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_core::diff::StackOutcome;
use berth_core::prcomment::{self, Comment};
use berth_core::webhook::{Provider, PullRequest};
use serde::Serialize;

use crate::ci::{Gate, Report, Status};
use crate::controller::{RepoHandle, Shared};
use crate::error::Error;
use crate::stackdiff::{self, Secrets};

pub use cli::{Ask, ci_plan};
pub use comment::Posted;

/// The commit status a PR plan posts.
pub const CONTEXT: &str = "berth/plan";
/// How long the forge calls of one plan may take (retries of transient answers included).
const API_DEADLINE: Duration = Duration::from_secs(60);

/// What one PR plan did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub number: u64,
    pub head: String,
    pub base: Option<String>,
    pub fork: bool,
    /// The `berth/plan` status: `success`, `failure` or `error` (berth could not plan).
    pub state: &'static str,
    pub description: String,
    pub stacks: Vec<StackOutcome>,
    pub comment: Option<Posted>,
    /// Forge calls that failed.
    pub warnings: Vec<String>,
}

/// The head planned against its base (or why the head cannot be planned).
struct Planned {
    base: Option<String>,
    stacks: Vec<StackOutcome>,
    /// The head's `berth.toml` is invalid.
    invalid: Option<String>,
}

/// Where a repository's PR comments and statuses go: `[[repo]] forge`, else the forge the
/// webhook came from at the repository's URL, with the repository's fetch token.
fn forge(repo: &RepoHandle, provider: Provider, pr: &PullRequest) -> Result<(Gate, comment::Thread), String> {
    let f = repo.spec.forge.as_ref();
    let kind = match (f.and_then(|f| f.provider.clone()), provider) {
        (Some(p), _) => p,
        (None, Provider::Generic) => return Err("cannot tell which forge sent the request: set forge.provider".into()),
        (None, p) => p.as_str().to_string(),
    };
    let named =
        pr.repo_full_name.as_deref().and_then(|n| n.rsplit_once('/')).map(|(o, n)| (o.to_string(), n.to_string()));
    let gate = Gate::forge(kind, f, &repo.spec.url, repo.mirror.token.clone(), named)?;
    let gitlab = gate.provider == "gitlab";
    let project = match (gitlab, pr.project_id) {
        (true, Some(id)) => id.to_string(),
        (true, None) => format!("{}/{}", gate.owner, gate.name).replace('/', "%2F"),
        (false, _) => format!("{}/{}", gate.owner, gate.name),
    };
    let thread = comment::Thread { api: gate.api(), project, number: pr.number };
    Ok((gate, thread))
}

/// Plan `pr` and report it on the forge. One plan per repository at a time, so that two pushes
/// in a row edit one comment in order.
pub async fn run(shared: Arc<Shared>, repo: Arc<RepoHandle>, provider: Provider, pr: PullRequest) -> Outcome {
    let _one = repo.pr_lock.lock().await;
    let mut out = Outcome {
        number: pr.number,
        head: pr.head.clone(),
        base: None,
        fork: pr.fork,
        state: "error",
        description: String::new(),
        stacks: Vec::new(),
        comment: None,
        warnings: Vec::new(),
    };
    let (gate, thread) = match forge(&repo, provider, &pr) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(repo = %repo.spec.name, pr = pr.number, error = %e, "cannot report PR plans");
            out.description = e.clone();
            out.warnings.push(e);
            return out;
        }
    };
    let client = match gate.client() {
        Ok(c) => c,
        Err(e) => {
            out.warnings.push(e);
            return out;
        }
    };
    let deadline = Instant::now() + API_DEADLINE;
    let mut log = |m: &str| tracing::info!(pr = pr.number, "{m}");
    if let Err(e) = gate.report(&pr.head, &status(Report::Pending, "planning", &pr), deadline, &mut log).await {
        out.warnings.push(format!("cannot post the pending status: {e}"));
    }
    let (s, r, p) = (shared.clone(), repo.clone(), pr.clone());
    let planned = tokio::task::spawn_blocking(move || plan(&s, &r, provider, &p))
        .await
        .unwrap_or_else(|e| Err(format!("the plan stopped: {e}")));
    let (state, description, body) = match planned {
        Err(e) => (Report::Error, format!("cannot plan: {e}"), None),
        Ok(p) => {
            out.base = p.base.clone();
            let (state, description) = verdict(&p);
            let base = p.base.as_deref().unwrap_or("");
            let link = shared.dashboard.settings.public_url.as_ref().map(|u| page(u, &repo.spec.name, pr.number));
            let c = Comment {
                base,
                head: &pr.head,
                stacks: &p.stacks,
                fork: pr.fork,
                error: p.invalid.as_deref(),
                full: link.as_deref(),
            };
            let body = crate::redact::apply(&prcomment::render(&c, prcomment::limit(&gate.provider))).into_owned();
            let whole = crate::redact::apply(&prcomment::render(&c, usize::MAX)).into_owned();
            let record = crate::state::PrPlan {
                repo: repo.spec.name.clone(),
                number: pr.number,
                head: pr.head.clone(),
                base: p.base.clone(),
                state: state.word().to_string(),
                description: crate::redact::apply(&description).into_owned(),
                body: whole,
                at: crate::state::now(),
            };
            if let Err(e) = shared.state(|s| s.save_pr_plan(&record)) {
                out.warnings.push(format!("cannot record the plan: {e}"));
            }
            out.stacks = p.stacks;
            (state, description, Some(body))
        }
    };
    let description = crate::redact::apply(&description).into_owned();
    if let Some(body) = body {
        match thread.upsert(&client, &body, deadline, &mut log).await {
            Ok(p) => out.comment = Some(p),
            Err(e) => out.warnings.push(format!("cannot comment on the request: {e}")),
        }
    }
    if let Err(e) = gate.report(&pr.head, &status(state, &description, &pr), deadline, &mut log).await {
        out.warnings.push(format!("cannot post the {CONTEXT} status: {e}"));
    }
    for w in &out.warnings {
        tracing::warn!(repo = %repo.spec.name, pr = pr.number, "{w}");
    }
    out.state = state.word();
    out.description = description;
    out
}

/// The dashboard page of a request's full plan.
pub fn page(public_url: &str, repo: &str, number: u64) -> String {
    format!("{}/plans/{repo}/{number}", public_url.trim_end_matches('/'))
}

fn status<'a>(state: Report, description: &'a str, pr: &'a PullRequest) -> Status<'a> {
    Status { context: CONTEXT, state, description, target_url: pr.url.as_deref() }
}

/// The status of a plan: failure when the head's config or a compose file is invalid.
fn verdict(p: &Planned) -> (Report, String) {
    judge(&p.stacks, p.invalid.as_deref())
}

/// The status of the plan of `stacks`, or of a head whose `berth.toml` is `invalid`.
fn judge(stacks: &[StackOutcome], invalid: Option<&str>) -> (Report, String) {
    if let Some(e) = invalid {
        let first = e.lines().next().unwrap_or("");
        return (Report::Failure, format!("berth.toml is invalid: {first}"));
    }
    if let Some(o) = stacks.iter().find(|o| o.error.is_some()) {
        return (Report::Failure, format!("stack {}: {}", o.name, o.error.as_deref().unwrap_or("")));
    }
    let changed: Vec<&str> = stacks.iter().map(|o| o.name.as_str()).collect();
    match changed.len() {
        0 => (Report::Success, "no stack changes".into()),
        n => (Report::Success, format!("{n} stack{} change: {}", if n == 1 { "" } else { "s" }, changed.join(", "))),
    }
}

/// Fetch the head, plan it against the merge base with its target branch, diff each touched stack.
fn plan(shared: &Shared, repo: &RepoHandle, provider: Provider, pr: &PullRequest) -> Result<Planned, String> {
    repo.mirror.fetch_pull(&pr.head_ref(provider), pr.number, &pr.head).map_err(|e| e.to_string())?;
    let new = match repo.ws.snapshot(&pr.head) {
        Ok(s) => s,
        Err(Error::Config(errs)) => {
            let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
            return Ok(Planned { base: None, stacks: Vec::new(), invalid: Some(text.join("\n")) });
        }
        Err(e) => return Err(e.to_string()),
    };
    let ws = &repo.ws;
    let base = ws.repo.merge_base(&new.commit, &format!("refs/heads/{}", pr.base_branch)).map_err(|e| e.to_string())?;
    let old = ws.snapshot(&base).map_err(|e| format!("the base {}: {e}", crate::output::short(&base)))?;
    let secrets = if pr.fork { Secrets::References } else { Secrets::Decrypt };
    let history = || shared.state(|s| ws.history(s));
    let stacks =
        stackdiff::compute(ws, &old, &new, &[], history, &shared.compose, secrets).map_err(|e| e.to_string())?;
    Ok(Planned { base: Some(base), stacks, invalid: None })
}
