//! CI gates: is commit X green on Woodpecker, Gitea/Forgejo or GitHub?
//!
//! These APIs answer intermittently with empty bodies or 5xx under load, so a
//! transient answer is retried with backoff and jitter (and said in the log)
//! instead of failing the gate.

use std::time::{Duration, Instant};

use berth_core::config::CiToml;
use serde_json::Value;

/// What CI says about a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CiState {
    Success,
    Pending(String),
    Failure(String),
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
    /// Post deploy outcomes back as commit statuses.
    pub report: bool,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const ATTEMPTS: u32 = 6;

/// `owner/name` from a clone URL (`https://host/owner/name.git`, `git@host:owner/name.git`).
pub fn owner_name(url: &str) -> Option<(String, String)> {
    let path = match url.split_once("://") {
        Some((_, rest)) => rest.split_once('/')?.1,
        None => url.split_once(':')?.1,
    };
    let mut parts: Vec<&str> = path.trim_end_matches('/').trim_end_matches(".git").split('/').collect();
    let name = parts.pop()?;
    let owner = parts.pop()?;
    (!owner.is_empty() && !name.is_empty()).then(|| (owner.to_string(), name.to_string()))
}

impl Gate {
    /// Resolve a `require_ci` setting; `repo_url` supplies owner/name when the setting does not.
    pub fn resolve(ci: &CiToml, repo_url: Option<&str>) -> Result<Gate, String> {
        let (owner, name) = match &ci.repo {
            Some(r) => {
                r.split_once('/').map(|(o, n)| (o.to_string(), n.to_string())).ok_or("repo is not owner/name")?
            }
            None => {
                repo_url.and_then(owner_name).ok_or("cannot tell owner/name of the repository: set require_ci.repo")?
            }
        };
        let base = match (&ci.url, ci.provider.as_str()) {
            (Some(u), _) => u.trim_end_matches('/').to_string(),
            (None, "github") => "https://api.github.com".to_string(),
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
        })
    }

    /// How long one API request may take: a slow answer counts as transient and is retried.
    pub fn request_timeout(&self) -> Duration {
        (self.timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(20))
    }

    /// GET a JSON document, retrying transient failures (5xx, empty or broken bodies, timeouts).
    async fn get(&self, client: &reqwest::Client, path: &str, log: &mut dyn FnMut(&str)) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let mut delay = Duration::from_millis(200);
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let mut req = client.get(&url).header("Accept", "application/json").header("User-Agent", "berth");
            if let Some(t) = &self.token {
                req = match self.provider.as_str() {
                    "gitea" | "forgejo" => req.header("Authorization", format!("token {t}")),
                    _ => req.bearer_auth(t),
                };
            }
            let transient = match req.send().await {
                Ok(r) if r.status().is_server_error() => format!("HTTP {}", r.status().as_u16()),
                Ok(r) if !r.status().is_success() => {
                    return Err(format!("{} answered HTTP {} for {path}", self.provider, r.status().as_u16()));
                }
                Ok(r) => match r.text().await {
                    Ok(t) if t.trim().is_empty() => "an empty body".to_string(),
                    Ok(t) => match serde_json::from_str(&t) {
                        Ok(v) => return Ok(v),
                        Err(e) => format!("a body that is not JSON ({e})"),
                    },
                    Err(e) => format!("a broken body ({e})"),
                },
                Err(e) => {
                    let e = e.without_url();
                    let mut why = e.to_string();
                    let mut src = std::error::Error::source(&e);
                    while let Some(inner) = src {
                        why = format!("{why}: {inner}");
                        src = inner.source();
                    }
                    format!("no answer ({why})")
                }
            };
            last = transient;
            if attempt < ATTEMPTS {
                // Jitter from the clock's nanoseconds keeps retrying clients apart.
                let jitter = Duration::from_millis(u64::from(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.subsec_nanos())
                        .unwrap_or(0)
                        % 100,
                ));
                log(&format!(
                    "{} API gave {last} for {path}; retrying in {}ms",
                    self.provider,
                    (delay + jitter).as_millis()
                ));
                tokio::time::sleep(delay + jitter).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
        Err(format!("{} API kept failing ({last}) for {path}", self.provider))
    }

    /// One look at the CI state of `commit`.
    pub async fn state(
        &self,
        client: &reqwest::Client,
        commit: &str,
        log: &mut dyn FnMut(&str),
    ) -> Result<CiState, String> {
        let (o, n) = (&self.owner, &self.name);
        match self.provider.as_str() {
            "woodpecker" => {
                let repo = self.get(client, &format!("/api/repos/lookup/{o}/{n}"), log).await?;
                let id = repo["id"].as_i64().ok_or("woodpecker: the repo lookup has no id")?;
                let pipelines = self.get(client, &format!("/api/repos/{id}/pipelines"), log).await?;
                let mine: Vec<&Value> = pipelines
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["commit"].as_str() == Some(commit))
                    .collect();
                // The newest pipeline of the commit decides.
                let Some(p) = mine.iter().max_by_key(|p| p["number"].as_i64().unwrap_or(0)) else {
                    return Ok(CiState::Pending("no pipeline for this commit yet".into()));
                };
                let status = p["status"].as_str().unwrap_or("");
                let num = p["number"].as_i64().unwrap_or(0);
                Ok(match status {
                    "success" => CiState::Success,
                    "pending" | "running" | "blocked" | "created" => {
                        CiState::Pending(format!("pipeline #{num} is {status}"))
                    }
                    other => CiState::Failure(format!("pipeline #{num} is {other}")),
                })
            }
            "gitea" | "forgejo" => {
                let v = self.get(client, &format!("/api/v1/repos/{o}/{n}/commits/{commit}/status"), log).await?;
                Ok(combined(&v))
            }
            "github" => {
                let status = self.get(client, &format!("/repos/{o}/{n}/commits/{commit}/status"), log).await?;
                let checks = self.get(client, &format!("/repos/{o}/{n}/commits/{commit}/check-runs"), log).await?;
                let runs = checks["check_runs"].as_array().cloned().unwrap_or_default();
                if let Some(bad) = runs.iter().find(|r| {
                    r["status"] == "completed"
                        && !matches!(r["conclusion"].as_str(), Some("success" | "neutral" | "skipped"))
                }) {
                    return Ok(CiState::Failure(format!(
                        "check run `{}` concluded {}",
                        bad["name"].as_str().unwrap_or("?"),
                        bad["conclusion"].as_str().unwrap_or("?")
                    )));
                }
                let statuses = status["total_count"].as_i64().unwrap_or(0);
                match combined(&status) {
                    CiState::Failure(m) if statuses > 0 => return Ok(CiState::Failure(m)),
                    CiState::Pending(m) if statuses > 0 => return Ok(CiState::Pending(m)),
                    _ => {}
                }
                if let Some(r) = runs.iter().find(|r| r["status"] != "completed") {
                    return Ok(CiState::Pending(format!(
                        "check run `{}` is {}",
                        r["name"].as_str().unwrap_or("?"),
                        r["status"].as_str().unwrap_or("?")
                    )));
                }
                Ok(if runs.is_empty() && statuses == 0 {
                    CiState::Pending("no status reported yet".into())
                } else {
                    CiState::Success
                })
            }
            other => Err(format!("unknown CI provider `{other}`")),
        }
    }

    /// Wait (bounded by the gate's timeout) until `commit` is green; `Err` says why not.
    pub async fn wait(&self, commit: &str, log: &mut dyn FnMut(&str)) -> Result<(), String> {
        let client = reqwest::Client::builder()
            .timeout(self.request_timeout())
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        let deadline = Instant::now() + self.timeout;
        let mut said = String::new();
        loop {
            match self.state(&client, commit, log).await? {
                CiState::Success => return Ok(()),
                CiState::Failure(why) => {
                    return Err(format!("CI failed for {}: {why}", &commit[..commit.len().min(12)]));
                }
                CiState::Pending(why) => {
                    if why != said {
                        log(&format!("waiting for CI: {why}"));
                        said = why.clone();
                    }
                    if Instant::now() >= deadline {
                        return Err(format!("CI still pending after {}s: {why}", self.timeout.as_secs()));
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

impl Gate {
    /// Post a deploy's outcome as a commit status (`context` like `berth/staging`).
    /// Woodpecker has no status API; failures are logged, never fatal.
    pub async fn report(&self, commit: &str, context: &str, state: &str, description: &str) -> Result<(), String> {
        let path = match self.provider.as_str() {
            "gitea" | "forgejo" => format!("/api/v1/repos/{}/{}/statuses/{commit}", self.owner, self.name),
            "github" => format!("/repos/{}/{}/statuses/{commit}", self.owner, self.name),
            _ => return Ok(()),
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        let body = serde_json::json!({ "state": state, "context": context, "description": description });
        let mut delay = Duration::from_millis(200);
        let mut last = String::new();
        for _ in 0..4 {
            let mut req = client.post(format!("{}{path}", self.base)).header("User-Agent", "berth").json(&body);
            if let Some(t) = &self.token {
                req = match self.provider.as_str() {
                    "gitea" | "forgejo" => req.header("Authorization", format!("token {t}")),
                    _ => req.bearer_auth(t),
                };
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) if r.status().is_client_error() => {
                    return Err(format!("status post answered HTTP {}", r.status().as_u16()));
                }
                Ok(r) => last = format!("HTTP {}", r.status().as_u16()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        Err(format!("status post kept failing: {last}"))
    }
}

/// Gitea/Forgejo/GitHub combined status: `state` of success, pending, failure or error.
fn combined(v: &Value) -> CiState {
    let failing = || {
        v["statuses"]
            .as_array()
            .and_then(|s| s.iter().find(|x| matches!(x["state"].as_str(), Some("failure" | "error"))))
            .map(|x| format!("`{}` is {}", x["context"].as_str().unwrap_or("?"), x["state"].as_str().unwrap_or("?")))
            .unwrap_or_else(|| "combined status is failure".into())
    };
    match v["state"].as_str() {
        Some("success") => CiState::Success,
        Some("failure" | "error") => CiState::Failure(failing()),
        Some(s) => CiState::Pending(format!("combined status is {s}")),
        None => CiState::Pending("no combined status yet".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_and_name_from_clone_urls() {
        let o = |u| owner_name(u).map(|(a, b)| format!("{a}/{b}"));
        assert_eq!(o("https://git.example.com/me/stacks.git").as_deref(), Some("me/stacks"));
        assert_eq!(o("git@github.com:me/stacks.git").as_deref(), Some("me/stacks"));
        assert_eq!(o("ssh://git@host:2222/team/infra").as_deref(), Some("team/infra"));
        assert_eq!(o("/srv/repo"), None);
    }

    #[test]
    fn combined_statuses() {
        let v: Value =
            serde_json::json!({"state": "failure", "statuses": [{"context": "ci/build", "state": "failure"}]});
        assert_eq!(combined(&v), CiState::Failure("`ci/build` is failure".into()));
        assert_eq!(
            combined(&serde_json::json!({"state": "pending"})),
            CiState::Pending("combined status is pending".into())
        );
        assert_eq!(combined(&serde_json::json!({"state": "success"})), CiState::Success);
    }
}
