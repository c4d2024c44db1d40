//! CI gates: is commit X green on Woodpecker, Gitea/Forgejo, GitHub or GitLab?
//!
//! Only CI's own checks count: berth's `berth/*` statuses never do (a failed deploy must not
//! block the next deploy of the same commit), and `contexts`/`ignore_contexts` name the checks
//! that matter, like a branch protection's required checks. Every page of statuses and check
//! runs is read; transient API answers are retried until the gate's deadline ([`crate::forge`]).

use std::time::{Duration, Instant};

use berth_core::config::{CiToml, ForgeToml};
use serde_json::Value;

use crate::forge::{Api, ApiError};

/// What CI says about a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CiState {
    Success,
    Pending(String),
    Failure(String),
}

/// Why a gate did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    /// CI reported a failure: the commit is red.
    #[error("{0}")]
    Red(String),
    /// CI was still running when the gate's timeout ran out.
    #[error("{0}")]
    Timeout(String),
    /// The forge's API could not tell (refused, or kept failing until the deadline).
    #[error("{0}")]
    Unavailable(String),
}

/// A resolved gate: where to ask and as whom.
#[derive(Debug, Clone)]
pub struct Gate {
    pub provider: String,
    pub base: String,
    pub owner: String,
    pub name: String,
    pub token: Option<String>,
    pub timeout: Duration,
    /// Post deploy progress and outcomes back as commit statuses.
    pub report: bool,
    /// Checks that must pass (patterns; empty: every check reported).
    pub contexts: Vec<String>,
    /// Checks that never block (patterns).
    pub ignore_contexts: Vec<String>,
    /// `berth rollback` waits for CI too.
    pub gate_rollbacks: bool,
    /// The dashboard's public URL: statuses link to the deploy's page under it.
    pub public_url: Option<String>,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The prefix of berth's own status contexts (`berth/<stack>`).
pub const OWN_CONTEXT: &str = "berth/";

/// `owner/name` from a clone URL (`https://host/owner/name.git`, `git@host:owner/name.git`).
/// With `nested`, every path segment before the name is the owner (GitLab's subgroups).
pub fn owner_name(url: &str, nested: bool) -> Option<(String, String)> {
    let path = match url.split_once("://") {
        Some((_, rest)) => rest.split_once('/')?.1,
        None => url.split_once(':')?.1,
    };
    let mut parts: Vec<&str> = path.trim_end_matches('/').trim_end_matches(".git").split('/').collect();
    let name = parts.pop()?;
    let owner = if nested { parts.join("/") } else { parts.pop()?.to_string() };
    (!owner.is_empty() && !name.is_empty()).then(|| (owner, name.to_string()))
}

impl Gate {
    /// Resolve a `require_ci` setting; `repo_url` supplies owner/name when the setting does not.
    pub fn resolve(ci: &CiToml, repo_url: Option<&str>) -> Result<Gate, String> {
        let gitlab = ci.provider == "gitlab";
        let (owner, name) = match &ci.repo {
            Some(r) => r
                .trim_matches('/')
                .rsplit_once('/')
                .map(|(o, n)| (o.to_string(), n.to_string()))
                .ok_or("repo is not owner/name")?,
            None => repo_url
                .and_then(|u| owner_name(u, gitlab))
                .ok_or("cannot tell owner/name of the repository: set require_ci.repo")?,
        };
        let base = match (&ci.url, ci.provider.as_str()) {
            (Some(u), _) => u.trim_end_matches('/').to_string(),
            (None, "github") => "https://api.github.com".to_string(),
            (None, "gitlab") => "https://gitlab.com".to_string(),
            (None, p) => return Err(format!("provider `{p}` needs a url")),
        };
        let token = ci.token.as_ref().map(crate::secrets::resolve).transpose().map_err(|e| format!("CI token: {e}"))?;
        let timeout = ci.timeout.as_deref().map(berth_core::duration::parse).transpose()?.unwrap_or(DEFAULT_TIMEOUT);
        Ok(Gate {
            provider: ci.provider.clone(),
            base,
            owner,
            name,
            token,
            timeout,
            report: ci.report.unwrap_or(false),
            contexts: ci.contexts.clone().unwrap_or_default(),
            ignore_contexts: ci.ignore_contexts.clone().unwrap_or_default(),
            gate_rollbacks: ci.gate_rollbacks.unwrap_or(false),
            public_url: None,
        })
    }

    /// The forge of a `[[repo]]` as a status target: `forge` (`[[repo]] forge`) where set, else the
    /// forge `kind` at the origin of `repo_url` (GitHub: its API), with `token` (the repo's own) when
    /// `forge` names none. Owner/name: `named`, else from `repo_url`.
    pub fn forge(
        kind: String,
        forge: Option<&ForgeToml>,
        repo_url: &str,
        token: Option<String>,
        named: Option<(String, String)>,
    ) -> Result<Gate, String> {
        let base = match forge.and_then(|f| f.url.clone()) {
            Some(u) => u.trim_end_matches('/').to_string(),
            None if kind == "github" => "https://api.github.com".to_string(),
            None => reqwest::Url::parse(repo_url)
                .ok()
                .filter(|u| u.scheme() == "https" || u.scheme() == "http")
                .map(|u| u.origin().ascii_serialization())
                .ok_or("the repository's url is not http(s): set forge.url to the forge's address")?,
        };
        let token = match forge.and_then(|f| f.token.as_ref()) {
            Some(r) => Some(crate::secrets::resolve(r).map_err(|e| format!("forge token: {e}"))?),
            None => token,
        };
        let (owner, name) = named
            .or_else(|| owner_name(repo_url, kind == "gitlab"))
            .ok_or("cannot tell the repository's owner/name")?;
        Ok(Gate {
            provider: kind,
            base,
            owner,
            name,
            token,
            timeout: Duration::from_secs(80),
            report: true,
            contexts: Vec::new(),
            ignore_contexts: Vec::new(),
            gate_rollbacks: false,
            public_url: None,
        })
    }

    /// Do two gates post to the same repository on the same forge?
    pub fn same_target(&self, other: &Gate) -> bool {
        (&self.provider, &self.base, &self.owner, &self.name)
            == (&other.provider, &other.base, &other.owner, &other.name)
    }

    pub fn api(&self) -> Api {
        Api { provider: self.provider.clone(), base: self.base.clone(), token: self.token.clone() }
    }

    /// GitLab's `:id`: the URL-encoded project path.
    fn gitlab_project(&self) -> String {
        format!("{}/{}", self.owner, self.name).replace('/', "%2F")
    }

    /// How long one API request may take: a slow answer counts as transient and is retried.
    pub fn request_timeout(&self) -> Duration {
        (self.timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(20))
    }

    pub fn client(&self) -> Result<reqwest::Client, String> {
        reqwest::Client::builder()
            .timeout(self.request_timeout())
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))
    }

    /// One look at the CI state of `commit`; transient answers are retried until `deadline`.
    pub async fn state(
        &self,
        client: &reqwest::Client,
        commit: &str,
        deadline: Instant,
        log: &mut (dyn FnMut(&str) + Send),
    ) -> Result<CiState, ApiError> {
        let (o, n, api) = (&self.owner, &self.name, self.api());
        let checks: Vec<Check> = match self.provider.as_str() {
            "woodpecker" => return self.woodpecker(client, commit, deadline, log).await,
            "gitea" | "forgejo" => {
                let path = format!("/api/v1/repos/{o}/{n}/commits/{commit}/status?limit=50");
                api.get_all(client, &path, |v| list(&v["statuses"]), deadline, log)
                    .await?
                    .iter()
                    .map(|s| Check::status(s, "context"))
                    .collect()
            }
            "github" => {
                let path = format!("/repos/{o}/{n}/commits/{commit}/status?per_page=100");
                let statuses = api.get_all(client, &path, |v| list(&v["statuses"]), deadline, log).await?;
                let path = format!("/repos/{o}/{n}/commits/{commit}/check-runs?per_page=100");
                let runs = api.get_all(client, &path, |v| list(&v["check_runs"]), deadline, log).await?;
                statuses.iter().map(|s| Check::status(s, "context")).chain(runs.iter().map(Check::run)).collect()
            }
            "gitlab" => {
                // Pipeline jobs and external statuses alike (the latest of each name).
                let path = format!(
                    "/api/v4/projects/{}/repository/commits/{commit}/statuses?per_page=100",
                    self.gitlab_project()
                );
                api.get_all(client, &path, list, deadline, log)
                    .await?
                    .iter()
                    .map(|s| Check::status(s, "name"))
                    .collect()
            }
            other => return Err(ApiError::Refused(format!("unknown CI provider `{other}`"))),
        };
        Ok(judge(&checks, &self.contexts, &self.ignore_contexts))
    }

    async fn woodpecker(
        &self,
        client: &reqwest::Client,
        commit: &str,
        deadline: Instant,
        log: &mut (dyn FnMut(&str) + Send),
    ) -> Result<CiState, ApiError> {
        let (o, n, api) = (&self.owner, &self.name, self.api());
        let repo = api.get(client, &format!("/api/repos/lookup/{o}/{n}"), deadline, log).await?;
        let id = repo["id"].as_i64().ok_or(ApiError::Refused("woodpecker: the repo lookup has no id".into()))?;
        let pipelines = api.get(client, &format!("/api/repos/{id}/pipelines"), deadline, log).await?;
        let mine: Vec<&Value> =
            pipelines.as_array().into_iter().flatten().filter(|p| p["commit"].as_str() == Some(commit)).collect();
        // The newest pipeline of the commit decides.
        let Some(p) = mine.iter().max_by_key(|p| p["number"].as_i64().unwrap_or(0)) else {
            return Ok(CiState::Pending("no pipeline for this commit yet".into()));
        };
        let status = p["status"].as_str().unwrap_or("");
        let num = p["number"].as_i64().unwrap_or(0);
        Ok(match status {
            "success" => CiState::Success,
            "pending" | "running" | "blocked" | "created" => CiState::Pending(format!("pipeline #{num} is {status}")),
            other => CiState::Failure(format!("pipeline #{num} is {other}")),
        })
    }

    /// Wait (bounded by the gate's timeout) until `commit` is green.
    pub async fn wait(&self, commit: &str, log: &mut (dyn FnMut(&str) + Send)) -> Result<(), GateError> {
        let client = self.client().map_err(GateError::Unavailable)?;
        let deadline = Instant::now() + self.timeout;
        let mut said = String::new();
        let mut poll = Duration::from_secs(2);
        loop {
            match self.state(&client, commit, deadline, log).await {
                Ok(CiState::Success) => return Ok(()),
                Ok(CiState::Failure(why)) => {
                    return Err(GateError::Red(format!("CI failed for {}: {why}", short(commit))));
                }
                Ok(CiState::Pending(why)) => {
                    if why != said {
                        log(&format!("waiting for CI: {why}"));
                        said = why.clone();
                    }
                    if Instant::now() + poll >= deadline {
                        return Err(GateError::Timeout(format!(
                            "CI still pending after {}s: {why}",
                            self.timeout.as_secs()
                        )));
                    }
                }
                Err(e) => return Err(GateError::Unavailable(format!("cannot tell whether CI passed: {e}"))),
            }
            tokio::time::sleep(poll).await;
            // A long pipeline is polled less often, sparing the API's rate limit.
            poll = (poll * 5 / 4).min(Duration::from_secs(15));
        }
    }

    /// Post a commit status (`context` like `berth/staging`); Woodpecker has no status API.
    /// Transient answers are retried until `deadline`.
    pub async fn report(
        &self,
        commit: &str,
        status: &Status<'_>,
        deadline: Instant,
        log: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(), String> {
        let (o, n) = (&self.owner, &self.name);
        let Status { context, state, description, target_url } = *status;
        let description: String = description.chars().take(140).collect();
        let (path, mut body) = match self.provider.as_str() {
            "gitea" | "forgejo" => (
                format!("/api/v1/repos/{o}/{n}/statuses/{commit}"),
                serde_json::json!({ "state": state.word(), "context": context, "description": description }),
            ),
            "github" => (
                format!("/repos/{o}/{n}/statuses/{commit}"),
                serde_json::json!({ "state": state.word(), "context": context, "description": description }),
            ),
            "gitlab" => (
                format!("/api/v4/projects/{}/statuses/{commit}", self.gitlab_project()),
                serde_json::json!({ "state": state.gitlab(), "name": context, "description": description }),
            ),
            _ => return Ok(()),
        };
        if let Some(u) = target_url {
            body["target_url"] = Value::String(u.to_string());
        }
        let client = self.client()?;
        self.api().post(&client, &path, &body, deadline, log).await.map_err(|e| e.to_string())
    }
}

/// One commit status to post: `context` like `berth/staging`.
pub struct Status<'a> {
    pub context: &'a str,
    pub state: Report,
    pub description: &'a str,
    pub target_url: Option<&'a str>,
}

/// The state of a commit status berth posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    Pending,
    Success,
    /// The deploy of this commit failed or was rolled back.
    Failure,
    /// berth could not tell or could not finish (a CI timeout, an unreachable API): not the code's fault.
    Error,
}

impl Report {
    /// GitHub's and Gitea's words.
    pub fn word(self) -> &'static str {
        match self {
            Report::Pending => "pending",
            Report::Success => "success",
            Report::Failure => "failure",
            Report::Error => "error",
        }
    }

    /// GitLab has no `error`: `canceled` says "did not finish" without blaming the code.
    fn gitlab(self) -> &'static str {
        match self {
            Report::Pending => "running",
            Report::Success => "success",
            Report::Failure => "failed",
            Report::Error => "canceled",
        }
    }
}

fn list(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

pub fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Passed,
    Running,
    Failed,
}

/// One status or check run, as far as the gate is concerned.
#[derive(Debug, Clone)]
struct Check {
    name: String,
    verdict: Verdict,
    /// The provider's word for it (`failure`, `timed_out`, `running`).
    word: String,
    description: String,
    url: String,
}

impl Check {
    /// A commit status (GitHub, Gitea: `context`; GitLab: `name`).
    fn status(s: &Value, name_key: &str) -> Check {
        let text = |k: &str| s[k].as_str().unwrap_or("").to_string();
        let word = if s["status"].is_string() { text("status") } else { text("state") };
        let verdict = match word.as_str() {
            "success" | "warning" | "skipped" | "manual" => Verdict::Passed,
            // GitLab: a job allowed to fail does not fail its pipeline.
            "failed" if s["allow_failure"].as_bool() == Some(true) => Verdict::Passed,
            "failure" | "error" | "failed" | "canceled" | "cancelled" => Verdict::Failed,
            _ => Verdict::Running,
        };
        let url = [text("target_url"), text("web_url")].into_iter().find(|u| !u.is_empty()).unwrap_or_default();
        Check { name: text(name_key), verdict, word, description: text("description"), url }
    }

    /// A GitHub check run (how GitHub Actions reports).
    fn run(r: &Value) -> Check {
        let text = |v: &Value| v.as_str().unwrap_or("").to_string();
        let (verdict, word) = if r["status"] == "completed" {
            let c = text(&r["conclusion"]);
            let ok = matches!(c.as_str(), "success" | "neutral" | "skipped");
            (if ok { Verdict::Passed } else { Verdict::Failed }, c)
        } else {
            (Verdict::Running, text(&r["status"]))
        };
        let description = [&r["output"]["title"], &r["output"]["summary"]]
            .into_iter()
            .map(text)
            .find(|t| !t.is_empty())
            .unwrap_or_default();
        let url = [&r["details_url"], &r["html_url"]].into_iter().map(text).find(|u| !u.is_empty()).unwrap_or_default();
        Check { name: text(&r["name"]), verdict, word, description, url }
    }

    fn says(&self) -> String {
        let mut s = format!("`{}` is {}", self.name, self.word);
        let description: String = self.description.lines().next().unwrap_or("").chars().take(200).collect();
        if !description.is_empty() {
            s.push_str(&format!(": {description}"));
        }
        if !self.url.is_empty() {
            s.push_str(&format!(" ({})", self.url));
        }
        s
    }
}

/// `*` matches any text (slashes too); everything else literally.
pub fn matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else { return false };
    let mut parts: Vec<&str> = parts.collect();
    let Some(last) = parts.pop() else { return rest.is_empty() };
    for p in parts {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The gate's verdict over a commit's checks: berth's own and ignored ones left out; with
/// `contexts`, each must have reported and passed; without, every check reported must pass.
fn judge(checks: &[Check], contexts: &[String], ignore: &[String]) -> CiState {
    let counted: Vec<&Check> = checks
        .iter()
        .filter(|c| !c.name.starts_with(OWN_CONTEXT) && !ignore.iter().any(|p| matches(p, &c.name)))
        .filter(|c| contexts.is_empty() || contexts.iter().any(|p| matches(p, &c.name)))
        .collect();
    if let Some(bad) = counted.iter().find(|c| c.verdict == Verdict::Failed) {
        return CiState::Failure(bad.says());
    }
    if let Some(missing) = contexts.iter().find(|p| !counted.iter().any(|c| matches(p, &c.name))) {
        return CiState::Pending(format!("`{missing}` has not reported yet"));
    }
    if let Some(running) = counted.iter().find(|c| c.verdict == Verdict::Running) {
        return CiState::Pending(running.says());
    }
    if counted.is_empty() {
        let others = checks.len();
        return CiState::Pending(if others == 0 {
            "no CI has reported yet".into()
        } else {
            format!("no CI has reported yet (only {others} check(s) the gate ignores)")
        });
    }
    CiState::Success
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn owner_and_name_from_clone_urls() {
        let o = |u, nested| owner_name(u, nested).map(|(a, b)| format!("{a}/{b}"));
        assert_eq!(o("https://git.example.com/me/stacks.git", false).as_deref(), Some("me/stacks"));
        assert_eq!(o("git@github.com:me/stacks.git", false).as_deref(), Some("me/stacks"));
        assert_eq!(o("ssh://git@host:2222/team/infra", false).as_deref(), Some("team/infra"));
        assert_eq!(o("https://gitlab.com/group/sub/infra.git", true).as_deref(), Some("group/sub/infra"));
        assert_eq!(o("/srv/repo", false), None);
    }

    #[test]
    fn patterns() {
        assert!(matches("ci/*", "ci/build"));
        assert!(matches("*", "anything/at/all"));
        assert!(matches("build", "build"));
        assert!(!matches("build", "build-arm"));
        assert!(matches("test (*)", "test (ubuntu)"));
        assert!(!matches("ci/*/x", "ci/y"));
    }

    fn statuses(v: Value) -> Vec<Check> {
        v.as_array().unwrap().iter().map(|s| Check::status(s, "context")).collect()
    }

    #[test]
    fn berths_own_statuses_never_decide() {
        let checks = statuses(json!([
            {"context": "berth/web", "state": "failure", "description": "rolled back"},
            {"context": "ci/build", "state": "success"},
        ]));
        assert_eq!(judge(&checks, &[], &[]), CiState::Success);
        let only_ours = statuses(json!([{"context": "berth/web", "state": "failure"}]));
        assert_eq!(
            judge(&only_ours, &[], &[]),
            CiState::Pending("no CI has reported yet (only 1 check(s) the gate ignores)".into())
        );
        assert_eq!(judge(&[], &[], &[]), CiState::Pending("no CI has reported yet".into()));
    }

    #[test]
    fn contexts_name_the_checks_that_matter() {
        let checks = statuses(json!([
            {"context": "ci/build", "state": "success"},
            {"context": "ci/lint", "state": "failure", "description": "style", "target_url": "https://ci/9"},
            {"context": "coverage", "state": "pending"},
        ]));
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(judge(&checks, &[], &[]), CiState::Failure("`ci/lint` is failure: style (https://ci/9)".into()));
        assert_eq!(judge(&checks, &s(&["ci/build"]), &[]), CiState::Success);
        assert_eq!(
            judge(&checks, &s(&["ci/build", "deploy-check"]), &[]),
            CiState::Pending("`deploy-check` has not reported yet".into())
        );
        assert_eq!(judge(&checks, &[], &s(&["ci/lint"])), CiState::Pending("`coverage` is pending".into()));
        assert_eq!(judge(&checks, &[], &s(&["ci/lint", "cov*"])), CiState::Success);
    }

    #[test]
    fn check_runs_and_gitlab_jobs() {
        let runs: Vec<Check> = [
            json!({"name": "build", "status": "completed", "conclusion": "success"}),
            json!({"name": "test", "status": "completed", "conclusion": "timed_out",
                   "details_url": "https://gh/runs/2", "output": {"title": "took too long"}}),
            json!({"name": "docs", "status": "in_progress", "conclusion": null}),
        ]
        .iter()
        .map(Check::run)
        .collect();
        assert_eq!(
            judge(&runs, &[], &[]),
            CiState::Failure("`test` is timed_out: took too long (https://gh/runs/2)".into())
        );
        assert_eq!(judge(&runs[..1], &[], &[]), CiState::Success);
        assert_eq!(judge(&runs[2..], &[], &[]), CiState::Pending("`docs` is in_progress".into()));
        let jobs: Vec<Check> = [
            json!({"name": "lint", "status": "failed", "allow_failure": true}),
            json!({"name": "build", "status": "success"}),
        ]
        .iter()
        .map(|j| Check::status(j, "name"))
        .collect();
        assert_eq!(judge(&jobs, &[], &[]), CiState::Success, "a job allowed to fail does not block");
    }
}
