//! `mode = "pull_request"`: per stack, a branch holding its updates on top of the tracked branch,
//! and one pull (merge) request for it on the forge, edited in place when newer versions come.
//! Nothing is pushed or edited when the branch and the request already say the same.

use std::time::{Duration, Instant};

use berth_core::images::UpdateMode;
use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};

use super::Row;
use super::writeback;
use crate::ci::Gate;
use crate::error::{Error, Result};
use crate::forge::{Api, ApiError};
use crate::git::{Committer, Remote};
use crate::workspace::Snapshot;

/// Hidden first line of berth's update requests.
const MARKER: &str = "<!-- berth:image-updates -->";

/// What happened to one stack's request.
#[derive(Debug, Serialize)]
pub struct Opened {
    pub stack: String,
    pub branch: String,
    pub commit: String,
    pub number: Option<u64>,
    /// `created`, `updated` (branch or text changed) or `unchanged`.
    pub how: &'static str,
}

/// The forge's pull requests of one repository.
struct Pulls {
    api: Api,
    /// `owner/name`, or GitLab's URL-encoded path.
    project: String,
}

impl Pulls {
    fn list_path(&self) -> String {
        let p = &self.project;
        match self.api.provider.as_str() {
            "gitlab" => format!("/api/v4/projects/{p}/merge_requests"),
            "gitea" | "forgejo" => format!("/api/v1/repos/{p}/pulls"),
            _ => format!("/repos/{p}/pulls"),
        }
    }

    /// The open request from `branch`: (number, title, body).
    async fn find(
        &self,
        http: &reqwest::Client,
        branch: &str,
        deadline: Instant,
    ) -> Result<Option<(u64, String, String)>, ApiError> {
        let owner = self.project.split('/').next().unwrap_or("");
        let query = match self.api.provider.as_str() {
            "gitlab" => format!("?state=opened&source_branch={branch}&per_page=100"),
            "gitea" | "forgejo" => "?state=open&limit=50".to_string(),
            _ => format!("?state=open&head={owner}:{branch}&per_page=100"),
        };
        let all = self
            .api
            .get_all(
                http,
                &format!("{}{query}", self.list_path()),
                |v| v.as_array().cloned().unwrap_or_default(),
                deadline,
                &mut log,
            )
            .await?;
        let gitlab = self.api.provider == "gitlab";
        Ok(all
            .iter()
            .find(|p| match gitlab {
                true => p["source_branch"] == branch,
                false => p["head"]["ref"] == branch,
            })
            .and_then(|p| {
                let n = p[if gitlab { "iid" } else { "number" }].as_u64()?;
                let body = p[if gitlab { "description" } else { "body" }].as_str().unwrap_or("");
                Some((n, p["title"].as_str().unwrap_or("").to_string(), body.to_string()))
            }))
    }

    async fn create(
        &self,
        http: &reqwest::Client,
        branch: &str,
        base: &str,
        title: &str,
        body: &str,
        deadline: Instant,
    ) -> Result<Option<u64>, ApiError> {
        let (payload, key) = match self.api.provider.as_str() {
            "gitlab" => (
                json!({"source_branch": branch, "target_branch": base, "title": title, "description": body, "remove_source_branch": true}),
                "iid",
            ),
            _ => (json!({"head": branch, "base": base, "title": title, "body": body}), "number"),
        };
        let v: Value = self.api.write(http, Method::POST, &self.list_path(), &payload, deadline, &mut log).await?;
        Ok(v[key].as_u64())
    }

    async fn edit(
        &self,
        http: &reqwest::Client,
        number: u64,
        title: &str,
        body: &str,
        deadline: Instant,
    ) -> Result<(), ApiError> {
        let (method, payload) = match self.api.provider.as_str() {
            "gitlab" => (Method::PUT, json!({"title": title, "description": body})),
            _ => (Method::PATCH, json!({"title": title, "body": body})),
        };
        let path = format!("{}/{number}", self.list_path());
        self.api.write(http, method, &path, &payload, deadline, &mut log).await.map(|_| ())
    }
}

fn log(line: &str) {
    tracing::info!("{line}");
}

/// The forge of `[updates] forge`, for the repository `origin` points at.
fn forge(remote: &dyn Remote, snap: &Snapshot) -> Result<Pulls> {
    let f = snap.project.updates.forge.as_ref().ok_or_else(|| {
        Error::Usage(
            "mode = \"pull_request\" needs a forge to open requests on: set [updates] forge = { provider = \"gitea\", url = \"https://git.example.com\", token = { env = \"TOKEN\" } }".into(),
        )
    })?;
    let kind = f.provider.clone().unwrap_or_default();
    let url = remote.url().ok_or_else(|| {
        Error::Usage("mode = \"pull_request\" needs an `origin` remote to push the update branch to".into())
    })?;
    let gate =
        Gate::forge(kind, Some(f), &url, None, None).map_err(|e| Error::Usage(format!("[updates] forge: {e}")))?;
    let project = match gate.provider.as_str() {
        "gitlab" => format!("{}/{}", gate.owner, gate.name).replace('/', "%2F"),
        _ => format!("{}/{}", gate.owner, gate.name),
    };
    Ok(Pulls { api: gate.api(), project })
}

/// Push each stack's `pull_request` updates to its branch and open or edit its request against
/// `base_branch` (whose head is `snap`).
pub fn open(
    remote: &dyn Remote,
    snap: &Snapshot,
    base_branch: &str,
    who: &Committer,
    rows: &[Row],
) -> Result<Vec<Opened>> {
    let chosen = writeback::to_write(rows, UpdateMode::PullRequest);
    if chosen.is_empty() {
        return Ok(Vec::new());
    }
    let pulls = forge(remote, snap)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| Error::Io(format!("HTTP client: {e}")))?;
    let mut stacks: Vec<&str> = chosen.iter().map(|r| r.stack.as_str()).collect();
    stacks.dedup();
    let mut out = Vec::new();
    for stack in stacks {
        let mine: Vec<&Row> = chosen.iter().copied().filter(|r| r.stack == stack).collect();
        let edits = writeback::edit(&mine, writeback::committed(snap))?;
        let branch = format!("{}{stack}", snap.project.updates.branch_prefix);
        let message = edits.message(&format!(" in {stack}"));
        let commit = remote.local().commit_on(&snap.commit, &edits.files, &message, who)?;
        let pushed = match remote.remote_branch(&branch)? {
            Some(there) if remote.tree_of(&there)? == remote.tree_of(&commit)? => false,
            _ => {
                remote.push_commit(&commit, &branch, true)?;
                true
            }
        };
        let title = match mine.as_slice() {
            [one] => format!("Update {} to {}", one.image, one.update.as_deref().unwrap_or("")),
            _ => format!("Update {} images in {stack}", edits.lines.len()),
        };
        let body = format!(
            "{MARKER}\nberth found newer versions allowed by the image rules of `{stack}`:\n\n{}\n\nMerging deploys them, verified and rolled back like any push. berth keeps this branch and text up to date.\n",
            edits.lines.join("\n")
        );
        let deadline = Instant::now() + Duration::from_secs(90);
        let answer = crate::bridge::block_on(async {
            match pulls.find(&http, &branch, deadline).await? {
                None => match pulls.create(&http, &branch, base_branch, &title, &body, deadline).await {
                    Ok(n) => Ok((n, "created")),
                    // A create whose answer was lost and retried meets its own request ("already
                    // exists"): edit the one there rather than fail or open a second.
                    Err(ApiError::Refused(why)) => match pulls.find(&http, &branch, deadline).await? {
                        Some((n, _, _)) => {
                            pulls.edit(&http, n, &title, &body, deadline).await.map(|_| (Some(n), "updated"))
                        }
                        None => Err(ApiError::Refused(why)),
                    },
                    Err(e) => Err(e),
                },
                Some((n, t, b)) if t == title && b == body => {
                    Ok((Some(n), if pushed { "updated" } else { "unchanged" }))
                }
                Some((n, _, _)) => pulls.edit(&http, n, &title, &body, deadline).await.map(|_| (Some(n), "updated")),
            }
        })
        .map_err(|e| Error::Io(format!("{} pull request for {branch}: {e}", pulls.api.provider)))?;
        out.push(Opened { stack: stack.to_string(), branch, commit, number: answer.0, how: answer.1 });
    }
    Ok(out)
}
