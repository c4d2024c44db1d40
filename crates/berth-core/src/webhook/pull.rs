//! Pull/merge-request payloads: GitHub and Gitea/Forgejo `pull_request`, GitLab `Merge Request Hook`,
//! reduced to what a PR plan needs and checked before git sees them.

use serde::Deserialize;

use super::Provider;
use super::push::{EventError, is_valid_ref, nonempty};

/// A pull (merge) request event, reduced to what berth needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    /// GitHub/Gitea `number`, GitLab `iid`.
    pub number: u64,
    /// The forge's word: `opened`, `synchronize`, `synchronized`, `reopened`, `closed`; GitLab `open`, `update`...
    pub action: String,
    /// The head commit, lowercase hex.
    pub head: String,
    /// The branch the request merges into.
    pub base_branch: String,
    /// The head lives in another repository than the base (a fork).
    pub fork: bool,
    /// `owner/name` of the base repository (GitLab: `path_with_namespace`).
    pub repo_full_name: Option<String>,
    /// GitLab's numeric project id of the base project.
    pub project_id: Option<u64>,
    /// The request's web page.
    pub url: Option<String>,
}

impl PullRequest {
    /// Whether this action may change what the request would deploy (opened, new commits, reopened).
    pub fn plans(&self) -> bool {
        matches!(
            self.action.as_str(),
            "opened" | "synchronize" | "synchronized" | "reopened" | "open" | "update" | "reopen"
        )
    }

    /// The ref the forge keeps the head under in the base repository.
    pub fn head_ref(&self, provider: Provider) -> String {
        match provider {
            Provider::GitLab => format!("refs/merge-requests/{}/head", self.number),
            _ => format!("refs/pull/{}/head", self.number),
        }
    }
}

#[derive(Deserialize)]
struct Raw {
    action: Option<String>,
    number: Option<u64>,
    pull_request: Option<RawPr>,
    repository: Option<RawRepo>,
    // GitLab
    object_attributes: Option<RawMr>,
    project: Option<RawProject>,
}

#[derive(Deserialize)]
struct RawPr {
    number: Option<u64>,
    html_url: Option<String>,
    head: RawSide,
    base: RawSide,
}

#[derive(Deserialize)]
struct RawSide {
    sha: String,
    #[serde(rename = "ref")]
    git_ref: String,
    repo: Option<RawRepo>,
    repo_id: Option<u64>,
}

#[derive(Deserialize)]
struct RawRepo {
    full_name: Option<String>,
    id: Option<u64>,
}

#[derive(Deserialize)]
struct RawMr {
    iid: u64,
    action: Option<String>,
    source_project_id: Option<u64>,
    target_project_id: Option<u64>,
    target_branch: String,
    last_commit: RawCommit,
    url: Option<String>,
}

#[derive(Deserialize)]
struct RawCommit {
    id: String,
}

#[derive(Deserialize)]
struct RawProject {
    id: Option<u64>,
    path_with_namespace: Option<String>,
}

/// Parse a pull-request (GitHub, Gitea, Forgejo) or merge-request (GitLab) payload.
pub fn parse_pull(provider: Provider, body: &[u8]) -> Result<PullRequest, EventError> {
    let raw: Raw = serde_json::from_slice(body).map_err(|e| EventError::Malformed(e.to_string()))?;
    let oid = |v: &str| {
        let ok = (v.len() == 40 || v.len() == 64) && v.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| v.to_ascii_lowercase())
            .ok_or(EventError::Invalid { field: "head", expected: "a 40 or 64 digit hex commit id" })
    };
    let branch = |b: &str| {
        is_valid_ref(&format!("refs/heads/{b}"))
            .then(|| b.to_string())
            .ok_or(EventError::Invalid { field: "base", expected: "a branch name" })
    };
    let pr = match (provider, raw.object_attributes, raw.pull_request) {
        (Provider::GitLab, Some(mr), _) => PullRequest {
            number: mr.iid,
            action: mr.action.unwrap_or_default(),
            head: oid(&mr.last_commit.id)?,
            base_branch: branch(&mr.target_branch)?,
            fork: mr.source_project_id != mr.target_project_id,
            repo_full_name: raw.project.as_ref().and_then(|p| nonempty(&p.path_with_namespace)),
            project_id: raw.project.as_ref().and_then(|p| p.id).or(mr.target_project_id),
            url: nonempty(&mr.url),
        },
        (_, _, Some(p)) => {
            let name = |s: &RawSide| s.repo.as_ref().and_then(|r| nonempty(&r.full_name));
            let id = |s: &RawSide| s.repo_id.or(s.repo.as_ref().and_then(|r| r.id));
            // A head repository that is gone (a deleted fork) counts as a fork.
            let same = match (name(&p.head), name(&p.base)) {
                (Some(h), Some(b)) => h.eq_ignore_ascii_case(&b),
                _ => id(&p.head).is_some() && id(&p.head) == id(&p.base),
            };
            PullRequest {
                number: p.number.or(raw.number).ok_or(EventError::Malformed("no pull request number".into()))?,
                action: raw.action.unwrap_or_default(),
                head: oid(&p.head.sha)?,
                base_branch: branch(&p.base.git_ref)?,
                fork: !same,
                repo_full_name: name(&p.base).or_else(|| raw.repository.as_ref().and_then(|r| nonempty(&r.full_name))),
                project_id: None,
                url: nonempty(&p.html_url),
            }
        }
        _ => return Err(EventError::Malformed("no pull_request (or GitLab object_attributes) object".into())),
    };
    Ok(pr)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";

    fn github(head_repo: &str, action: &str) -> String {
        serde_json::json!({
            "action": action, "number": 7,
            "pull_request": {
                "number": 7, "html_url": "https://github.com/me/stacks/pull/7",
                "head": { "sha": A, "ref": "feature", "repo": { "full_name": head_repo, "id": 2 } },
                "base": { "sha": A, "ref": "main", "repo": { "full_name": "me/stacks", "id": 1 } },
            },
            "repository": { "full_name": "me/stacks" },
        })
        .to_string()
    }

    #[test]
    fn github_and_gitea_pull_requests() {
        let pr = parse_pull(Provider::GitHub, github("me/stacks", "synchronize").as_bytes()).unwrap();
        assert_eq!((pr.number, pr.head.as_str(), pr.base_branch.as_str(), pr.fork), (7, A, "main", false));
        assert!(pr.plans());
        assert_eq!(pr.head_ref(Provider::GitHub), "refs/pull/7/head");
        assert_eq!(pr.repo_full_name.as_deref(), Some("me/stacks"));
        let fork = parse_pull(Provider::Gitea, github("stranger/stacks", "synchronized").as_bytes()).unwrap();
        assert!(fork.fork && fork.plans());
        let closed = parse_pull(Provider::Gitea, github("me/stacks", "closed").as_bytes()).unwrap();
        assert!(!closed.plans());
    }

    #[test]
    fn gitlab_merge_requests() {
        let body = |source: u64| {
            serde_json::json!({
                "object_kind": "merge_request",
                "project": { "id": 42, "path_with_namespace": "group/sub/stacks" },
                "object_attributes": { "iid": 3, "action": "update", "source_project_id": source,
                    "target_project_id": 42, "source_branch": "f", "target_branch": "main",
                    "last_commit": { "id": A }, "url": "https://gitlab.com/group/sub/stacks/-/merge_requests/3" },
            })
            .to_string()
        };
        let mr = parse_pull(Provider::GitLab, body(42).as_bytes()).unwrap();
        assert_eq!((mr.number, mr.project_id, mr.fork), (3, Some(42), false));
        assert_eq!(mr.head_ref(Provider::GitLab), "refs/merge-requests/3/head");
        assert!(parse_pull(Provider::GitLab, body(9).as_bytes()).unwrap().fork);
    }

    #[test]
    fn unsafe_values_are_refused() {
        let bad = github("me/stacks", "opened").replace(A, "--upload-pack=x");
        assert!(matches!(parse_pull(Provider::GitHub, bad.as_bytes()), Err(EventError::Invalid { field: "head", .. })));
        let bad = github("me/stacks", "opened").replace("\"main\"", "\"ma..in\"");
        assert!(matches!(parse_pull(Provider::GitHub, bad.as_bytes()), Err(EventError::Invalid { field: "base", .. })));
        assert!(parse_pull(Provider::GitHub, b"[]").is_err());
    }
}
