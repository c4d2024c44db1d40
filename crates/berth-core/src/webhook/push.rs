//! Push payloads: the forges' push events, parsed leniently into a [`Push`] and checked before git sees them.

use serde::{Deserialize, Serialize};

use super::Provider;

/// A push, reduced to what berth needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Push {
    /// Full ref, e.g. `refs/heads/main` or `refs/tags/v1.2`.
    pub git_ref: String,
    /// Branch name for `refs/heads/*`, `None` for tags and other refs.
    pub branch: Option<String>,
    /// Commit before the push, lowercase hex; all zeros when the ref was created.
    pub before: String,
    /// Commit after the push, lowercase hex; all zeros when the ref was deleted.
    pub after: String,
    pub repo_url: Option<String>,
    /// `owner/name` (GitLab: `path_with_namespace`).
    pub repo_full_name: Option<String>,
    /// Set by the caller from [`delivery_id`](super::delivery_id); [`parse_push`] leaves it `None`.
    pub delivery: Option<String>,
    pub pusher: Option<String>,
    /// The ref was deleted (`deleted: true`, or `after` is all zeros).
    pub deleted: bool,
}

impl Push {
    /// The ref was created by this push, so there is no `before` to diff against.
    pub fn created(&self) -> bool {
        is_zero_oid(&self.before)
    }

    /// Tag name for `refs/tags/*`.
    pub fn tag(&self) -> Option<&str> {
        self.git_ref.strip_prefix("refs/tags/")
    }
}

/// Why a push payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Not JSON, not an object, or missing `ref`/`before`/`after` (serde's message).
    #[error("malformed push payload: {0}")]
    Malformed(String),
    /// A field that berth hands to git has an unsafe or impossible value.
    #[error("invalid `{field}` in push payload: expected {expected}")]
    Invalid { field: &'static str, expected: &'static str },
}

// Lenient superset of the forges' push payloads: unknown fields are ignored,
// optional ones may be missing or null.
#[derive(Deserialize)]
struct RawPush {
    #[serde(rename = "ref")]
    git_ref: String,
    before: String,
    after: String,
    deleted: Option<bool>,
    repository: Option<RawRepo>,
    /// GitLab's richer repository object.
    project: Option<RawRepo>,
    pusher: Option<RawUser>,
    /// GitLab puts the pusher at top level.
    user_username: Option<String>,
}

#[derive(Deserialize)]
struct RawRepo {
    clone_url: Option<String>,
    git_http_url: Option<String>,
    html_url: Option<String>,
    web_url: Option<String>,
    full_name: Option<String>,
    path_with_namespace: Option<String>,
}

#[derive(Deserialize)]
struct RawUser {
    login: Option<String>,
    username: Option<String>,
    name: Option<String>,
}

/// Parse a push payload from any supported forge.
///
/// `ref` must look like a git ref (`refs/...`, no `..`, spaces or control
/// characters) and `before`/`after` like object ids (40 or 64 hex digits),
/// since they are passed to git.
pub fn parse_push(provider: Provider, body: &[u8]) -> Result<Push, EventError> {
    // Straight into the struct (no intermediate JSON tree: this is the webhook hot path).
    // serde would otherwise accept a JSON array as the struct's fields in order.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(EventError::Malformed("expected a JSON object".to_string()));
    }
    let raw: RawPush = serde_json::from_slice(body).map_err(|e| EventError::Malformed(e.to_string()))?;

    if !is_valid_ref(&raw.git_ref) {
        return Err(EventError::Invalid { field: "ref", expected: "a git ref like refs/heads/main" });
    }
    let oid = |field: &'static str, v: &str| {
        let ok = (v.len() == 40 || v.len() == 64) && v.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| v.to_ascii_lowercase())
            .ok_or(EventError::Invalid { field, expected: "a 40 or 64 digit hex commit id" })
    };
    let before = oid("before", &raw.before)?;
    let after = oid("after", &raw.after)?;

    // GitLab's `project` is the better source; the others only have `repository`.
    let repos = match provider {
        Provider::GitLab => [raw.project, raw.repository],
        _ => [raw.repository, raw.project],
    };
    let pick = |field: fn(&RawRepo) -> &Option<String>| repos.iter().flatten().find_map(|r| nonempty(field(r)));
    let repo_url = pick(|r| &r.clone_url)
        .or_else(|| pick(|r| &r.git_http_url))
        .or_else(|| pick(|r| &r.html_url))
        .or_else(|| pick(|r| &r.web_url));
    let repo_full_name = pick(|r| &r.full_name).or_else(|| pick(|r| &r.path_with_namespace));
    let pusher = raw
        .pusher
        .as_ref()
        .and_then(|p| nonempty(&p.login).or_else(|| nonempty(&p.username)).or_else(|| nonempty(&p.name)))
        .or_else(|| nonempty(&raw.user_username));

    Ok(Push {
        branch: raw.git_ref.strip_prefix("refs/heads/").map(str::to_string),
        git_ref: raw.git_ref,
        deleted: raw.deleted.unwrap_or(false) || is_zero_oid(&after),
        before,
        after,
        repo_url,
        repo_full_name,
        delivery: None,
        pusher,
    })
}

pub(super) fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

fn is_zero_oid(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b == b'0')
}

/// A conservative subset of `git check-ref-format`: enough that the ref can
/// never be read as an option, a range or a revision expression.
pub(super) fn is_valid_ref(r: &str) -> bool {
    r.len() <= 1024
        && r.starts_with("refs/")
        && !["/", ".", ".lock"].iter().any(|s| r.ends_with(s))
        && !["..", "//", "@{", "/."].iter().any(|s| r.contains(s))
        && r.chars().all(|c| !c.is_control() && !matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\'))
}
