//! Forge webhooks: signature verification and push-event parsing (GitHub, Gitea, Forgejo, GitLab, generic).
//!
//! The controller's HTTP layer hands this module the raw body and a header
//! lookup; nothing here knows about HTTP crates. Flow for one delivery:
//! [`Provider::detect`] (or a provider pinned in config) → [`verify`] on the
//! *raw* bytes → [`event_kind`] → [`parse_push`] for pushes, with
//! [`delivery_id`] filled into [`Push::delivery`] by the caller.
//!
//! Only `ref`, `before` and `after` matter for deploys: forges truncate the
//! payload's commit and file lists, so berth diffs `before..after` itself.
//! Bodies must be JSON (GitHub's form-encoded content type is not accepted).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod pull;
mod push;
mod registry;
mod signature;

pub use pull::{PullRequest, parse_pull};
pub use push::{EventError, Push, parse_push};
pub use registry::{RegistryPush, parse_registry};
pub use signature::{SignatureError, sign, verify, verify_hub_signature, verify_token};

const HUB_SIGNATURE: &str = "x-hub-signature-256";
const GITEA_SIGNATURE: &str = "x-gitea-signature";
const FORGEJO_SIGNATURE: &str = "x-forgejo-signature";
const GITLAB_TOKEN: &str = "x-gitlab-token";
const GENERIC_DELIVERY: [&str; 2] = ["x-request-id", "x-delivery-id"];
/// Longest delivery id we keep; it ends up in logs and the deploy record.
const MAX_DELIVERY_LEN: usize = 128;

/// Request headers, looked up by lowercase name.
///
/// Implemented for any `Fn(&str) -> Option<String>` (wrap your HTTP
/// library's header map in a closure) and for `[(&str, &str)]` slices, which
/// compare names case-insensitively.
pub trait Headers {
    /// The value of header `name` (given in lowercase), if present.
    fn header(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Headers for F {
    fn header(&self, name: &str) -> Option<String> {
        self(name)
    }
}

impl Headers for [(&str, &str)] {
    fn header(&self, name: &str) -> Option<String> {
        self.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| (*v).to_string())
    }
}

/// A header's trimmed value; blank counts as absent.
fn get<H: Headers + ?Sized>(headers: &H, name: &str) -> Option<String> {
    headers.header(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// The forge that sent a webhook; decides which headers carry the signature and event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    GitHub,
    Gitea,
    Forgejo,
    GitLab,
    /// Anything else that signs like GitHub (`X-Hub-Signature-256`), e.g. `berth` CLI or a script.
    Generic,
}

impl Provider {
    /// Guess the provider from the event headers.
    ///
    /// Most specific first: Forgejo also sends `X-Gitea-*`, and Gitea and
    /// Forgejo both send `X-GitHub-Event` for compatibility. Headers are chosen
    /// by the sender, so callers that know the forge should pin it instead.
    pub fn detect<H: Headers + ?Sized>(headers: &H) -> Provider {
        [Provider::Forgejo, Provider::Gitea, Provider::GitLab, Provider::GitHub]
            .into_iter()
            .find(|p| get(headers, p.event_headers()[0]).is_some())
            .unwrap_or(Provider::Generic)
    }

    /// Lowercase name, as used in config and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::Gitea => "gitea",
            Provider::Forgejo => "forgejo",
            Provider::GitLab => "gitlab",
            Provider::Generic => "generic",
        }
    }

    /// Headers naming the event, in order of preference.
    fn event_headers(self) -> &'static [&'static str] {
        match self {
            Provider::GitHub => &["x-github-event"],
            Provider::Gitea => &["x-gitea-event"],
            Provider::Forgejo => &["x-forgejo-event", "x-gitea-event"],
            Provider::GitLab => &["x-gitlab-event"],
            Provider::Generic => &[],
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a delivery is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A branch or tag push (including deletions): parse it with [`parse_push`].
    Push,
    /// A "the hook works" delivery; answer 200 and do nothing.
    Ping,
    /// A pull (merge) request opened, updated, closed...: parse it with [`parse_pull`].
    PullRequest,
    /// Anything else, by the forge's event name (`unknown` without one); ignore.
    Other(String),
}

/// Classify a delivery from its event header, falling back to the body's shape.
///
/// GitHub/Gitea/Forgejo `push` and GitLab `Push Hook`/`Tag Push Hook` are
/// pushes; `ping` is a ping. A body with `zen` or `hook_id` and no `ref` is a
/// ping for every provider (Gitea and Forgejo "test" deliveries send a push).
/// Without an event header (generic senders), an object with string `ref`,
/// `before` and `after` is a push.
pub fn event_kind<H: Headers + ?Sized>(provider: Provider, headers: &H, body: &[u8]) -> EventKind {
    let name = provider.event_headers().iter().find_map(|h| get(headers, h));
    match (provider, name.as_deref()) {
        (Provider::GitLab, Some("Push Hook" | "Tag Push Hook")) => return EventKind::Push,
        (Provider::GitLab, Some("Merge Request Hook")) => return EventKind::PullRequest,
        (Provider::GitLab, _) => {}
        (_, Some("push")) => return EventKind::Push,
        (_, Some("pull_request" | "pull_request_sync")) => return EventKind::PullRequest,
        (_, Some("ping")) => return EventKind::Ping,
        _ => {}
    }
    let top: Map<String, Value> = serde_json::from_slice(body).unwrap_or_default();
    let is_str = |k: &str| top.get(k).is_some_and(Value::is_string);
    if !top.contains_key("ref") && (top.contains_key("zen") || top.contains_key("hook_id")) {
        EventKind::Ping
    } else if name.is_none() && is_str("ref") && is_str("before") && is_str("after") {
        EventKind::Push
    } else {
        EventKind::Other(name.unwrap_or_else(|| "unknown".to_string()))
    }
}

/// The unique id of this delivery (for logs and de-duplicating retries), if the sender gave one.
///
/// Provider headers first (`X-GitHub-Delivery`, `X-Gitea-Delivery`,
/// `X-Forgejo-Delivery`, `X-Gitlab-Event-UUID`), then `X-Request-Id` and
/// `X-Delivery-Id`. Ids that are long or not printable ASCII are ignored: they
/// are logged and stored verbatim.
pub fn delivery_id<H: Headers + ?Sized>(provider: Provider, headers: &H) -> Option<String> {
    let specific: &[&str] = match provider {
        Provider::GitHub => &["x-github-delivery"],
        Provider::Gitea => &["x-gitea-delivery"],
        Provider::Forgejo => &["x-forgejo-delivery", "x-gitea-delivery"],
        Provider::GitLab => &["x-gitlab-event-uuid"],
        Provider::Generic => &[],
    };
    specific.iter().chain(&GENERIC_DELIVERY).find_map(|h| {
        get(headers, h).filter(|v| v.len() <= MAX_DELIVERY_LEN && v.bytes().all(|b| b.is_ascii_graphic()))
    })
}

#[cfg(test)]
mod tests {
    use super::Provider::*;
    use super::SignatureError::*;
    use super::*;

    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    const VECTOR: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    const SHA_A: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
    const SHA_B: &str = "59b20b8d5c6ff8d09518454d4dd8b7a30f095ab5";
    const ZERO: &str = "0000000000000000000000000000000000000000";
    const GL_AFTER: &str = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7";

    fn check(p: Provider, name: &str, value: &str) -> Result<(), SignatureError> {
        verify(p, &[(name, value)][..], BODY, SECRET)
    }

    #[test]
    fn github_documented_vector() {
        assert_eq!(sign(SECRET, BODY), VECTOR);
        assert_eq!(verify_hub_signature(VECTOR, BODY, SECRET), Ok(()));
        assert_eq!(verify_hub_signature(&VECTOR.to_uppercase().replace("SHA256", "sha256"), BODY, SECRET), Ok(()));
    }

    #[test]
    fn signatures_per_provider() {
        let hub = sign(SECRET, BODY);
        let hex = &hub["sha256=".len()..];
        // Flip one hex digit, keeping it valid hex.
        let flip = |s: &str| format!("{}{}", &s[..s.len() - 1], if s.ends_with('0') { '1' } else { '0' });
        for (p, name, good) in [
            (GitHub, "X-Hub-Signature-256", hub.as_str()),
            (Generic, "x-hub-signature-256", &hub),
            (Gitea, "X-Gitea-Signature", hex),
            (Forgejo, "X-Forgejo-Signature", hex),
            (Forgejo, "X-Gitea-Signature", hex),
        ] {
            assert_eq!(check(p, name, good), Ok(()), "{p} {name}");
            assert_eq!(check(p, name, &flip(good)), Err(Mismatch), "{p} {name}");
        }
        assert_eq!(check(GitLab, "X-Gitlab-Token", "It's a Secret to Everybody"), Ok(()));
        // Tampered body or wrong secret with the right signature.
        assert_eq!(verify_hub_signature(VECTOR, b"Hello, World?", SECRET), Err(Mismatch));
        assert_eq!(verify_hub_signature(VECTOR, BODY, b"wrong"), Err(Mismatch));
        // A closure over any header map works too.
        let lookup = |n: &str| (n == "x-hub-signature-256").then(|| hub.clone());
        assert_eq!(verify(GitHub, &lookup, BODY, SECRET), Ok(()));
    }

    #[test]
    fn missing_header() {
        let none: &[(&str, &str)] = &[("content-type", "application/json"), ("x-hub-signature-256", "  ")];
        let missing = |p| verify(p, none, BODY, SECRET).unwrap_err();
        assert_eq!(missing(GitHub), Missing { header: "x-hub-signature-256" });
        assert_eq!(missing(Generic), Missing { header: "x-hub-signature-256" });
        assert_eq!(missing(Gitea), Missing { header: "x-gitea-signature" });
        assert_eq!(missing(Forgejo), Missing { header: "x-forgejo-signature" });
        assert_eq!(missing(GitLab), Missing { header: "x-gitlab-token" });
    }

    #[test]
    fn malformed_header() {
        let bare = &VECTOR["sha256=".len()..];
        for bad in ["sha256=zz", "sha256=abc", "sha256=", "sha1=abcd", bare] {
            assert_eq!(verify_hub_signature(bad, BODY, SECRET), Err(Malformed), "{bad}");
        }
        assert_eq!(check(Gitea, "x-gitea-signature", VECTOR), Err(Malformed));
        assert_eq!(check(Gitea, "x-gitea-signature", "not hex at all"), Err(Malformed));
    }

    #[test]
    fn gitlab_token_compare() {
        let token = |t: &str, secret: &[u8]| verify(GitLab, &[("X-Gitlab-Token", t)][..], BODY, secret);
        assert_eq!(token("s3cret-token", b"s3cret-token"), Ok(()));
        for wrong in ["s3cret-tokem", "s3cret", "s3cret-token-and-more", "S3CRET-TOKEN"] {
            assert_eq!(token(wrong, b"s3cret-token"), Err(Mismatch), "{wrong}");
        }
        // An empty secret proves nothing, for HMAC or token.
        assert_eq!(token("", b""), Err(Missing { header: GITLAB_TOKEN }));
        assert_eq!(token("x", b""), Err(Mismatch));
        assert_eq!(verify_hub_signature(&sign(b"", BODY), BODY, b""), Err(Mismatch));
    }

    #[test]
    fn detects_provider_most_specific_first() {
        let detect = |h: &[(&str, &str)]| Provider::detect(h);
        assert_eq!(detect(&[("X-GitHub-Event", "push")]), GitHub);
        // Gitea also sends X-GitHub-Event; Forgejo also sends X-Gitea-* and X-GitHub-*.
        assert_eq!(detect(&[("X-GitHub-Event", "push"), ("X-Gitea-Event", "push")]), Gitea);
        assert_eq!(
            detect(&[("X-GitHub-Event", "push"), ("X-Gitea-Event", "push"), ("X-Forgejo-Event", "push")]),
            Forgejo
        );
        assert_eq!(detect(&[("X-Gitlab-Event", "Push Hook")]), GitLab);
        assert_eq!(detect(&[("X-Hub-Signature-256", "sha256=00")]), Generic);
    }

    // Trimmed real payloads: the fields berth reads plus enough noise to prove it ignores the rest.
    const GITHUB_PUSH: &str = r#"{"ref":"refs/heads/main","before":"6113728f27ae82c7b1a177c8d03f9e96e0adf246",
      "after":"59B20B8D5C6FF8D09518454D4DD8B7A30F095AB5","created":false,"deleted":false,"forced":false,"base_ref":null,
      "commits":[{"id":"59b20b8d5c6ff8d09518454d4dd8b7a30f095ab5","message":"bump","modified":["immich/compose.yaml"]}],
      "repository":{"id":1296269,"name":"homelab","full_name":"alice/homelab","private":true,"owner":{"login":"alice"},
        "html_url":"https://github.com/alice/homelab","url":"https://github.com/alice/homelab",
        "clone_url":"https://github.com/alice/homelab.git","ssh_url":"git@github.com:alice/homelab.git"},
      "pusher":{"name":"alice","email":"alice@example.com"},"sender":{"login":"alice","id":1}}"#;

    const GITEA_PUSH: &str = r#"{"ref":"refs/heads/prod","before":"6113728f27ae82c7b1a177c8d03f9e96e0adf246",
      "after":"59b20b8d5c6ff8d09518454d4dd8b7a30f095ab5","compare_url":"https://git.example.com/alice/homelab/compare/a...b",
      "commits":[{"id":"59b20b8d5c6ff8d09518454d4dd8b7a30f095ab5","message":"bump\n","modified":["a.yml"]}],
      "total_commits":1,"repository":{"id":3,"owner":{"id":1,"login":"alice","username":"alice"},"name":"homelab",
        "full_name":"alice/homelab","html_url":"https://git.example.com/alice/homelab",
        "clone_url":"https://git.example.com/alice/homelab.git","default_branch":"main"},
      "pusher":{"id":2,"login":"bob","full_name":"","email":"bob@example.com","username":"bob"},"sender":{"login":"bob"}}"#;

    const GITLAB_PUSH: &str = r#"{"object_kind":"push","event_name":"push","ref":"refs/heads/main","ref_protected":true,
      "before":"95790bf891e76fee5e1747ab589903a6a1f80f22","after":"da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
      "checkout_sha":"da1560886d4f094c3e6c9ef40349f7d38b5d27d7","user_id":4,"user_name":"John Smith",
      "user_username":"jsmith","project_id":15,"project":{"id":15,"name":"homelab","namespace":"Mike",
        "web_url":"https://gitlab.example.com/mike/homelab","git_ssh_url":"git@gitlab.example.com:mike/homelab.git",
        "git_http_url":"https://gitlab.example.com/mike/homelab.git","path_with_namespace":"mike/homelab"},
      "commits":[{"id":"da1560886d4f094c3e6c9ef40349f7d38b5d27d7","message":"fix","modified":["x"]}],
      "total_commits_count":1,"repository":{"name":"homelab","url":"git@gitlab.example.com:mike/homelab.git",
        "homepage":"https://gitlab.example.com/mike/homelab","git_http_url":"https://gitlab.example.com/mike/homelab.git"}}"#;

    #[test]
    fn parses_each_forges_push() {
        let summary = |p: Push| (p.branch, p.repo_url, p.repo_full_name, p.pusher, p.deleted, p.delivery);
        let s = |v: &str| Some(v.to_string());
        let p = parse_push(GitHub, GITHUB_PUSH.as_bytes()).unwrap();
        assert_eq!((&*p.git_ref, &*p.before, &*p.after, p.created()), ("refs/heads/main", SHA_A, SHA_B, false));
        let repo = s("https://github.com/alice/homelab.git");
        assert_eq!(summary(p), (s("main"), repo, s("alice/homelab"), s("alice"), false, None));
        for provider in [Gitea, Forgejo] {
            let p = parse_push(provider, GITEA_PUSH.as_bytes()).unwrap();
            let repo = s("https://git.example.com/alice/homelab.git");
            assert_eq!(summary(p), (s("prod"), repo, s("alice/homelab"), s("bob"), false, None));
        }
        let p = parse_push(GitLab, GITLAB_PUSH.as_bytes()).unwrap();
        assert_eq!((&*p.before, &*p.after), ("95790bf891e76fee5e1747ab589903a6a1f80f22", GL_AFTER));
        let repo = s("https://gitlab.example.com/mike/homelab.git");
        assert_eq!(summary(p), (s("main"), repo, s("mike/homelab"), s("jsmith"), false, None));
    }

    #[test]
    fn tags_and_deleted_branches() {
        let body = GITHUB_PUSH.replace("refs/heads/main", "refs/tags/v1.2.0").replace(SHA_A, ZERO);
        let p = parse_push(GitHub, body.as_bytes()).unwrap();
        assert_eq!((p.branch.as_deref(), p.tag(), p.created(), p.deleted), (None, Some("v1.2.0"), true, false));
        let body = GITLAB_PUSH.replace(r#""push""#, r#""tag_push""#).replace("heads/main", "tags/v2");
        assert_eq!(parse_push(GitLab, body.as_bytes()).unwrap().branch, None);

        // GitHub says so explicitly (and zeroes `after`) ...
        let body = GITHUB_PUSH.replace(r#""deleted":false"#, r#""deleted":true"#).replace(&SHA_B.to_uppercase(), ZERO);
        let p = parse_push(GitHub, body.as_bytes()).unwrap();
        assert_eq!((p.branch.as_deref(), p.deleted), (Some("main"), true));
        // ... GitLab only zeroes `after` and nulls `checkout_sha`.
        let body = GITLAB_PUSH.replacen(GL_AFTER, ZERO, 1).replacen(&format!(r#""{GL_AFTER}""#), "null", 1);
        assert!(parse_push(GitLab, body.as_bytes()).unwrap().deleted);
    }

    #[test]
    fn minimal_generic_push() {
        let body = format!(r#"{{"ref":"refs/heads/main","before":"{SHA_A}","after":"{SHA_B}","repository":null}}"#);
        let p = parse_push(Generic, body.as_bytes()).unwrap();
        assert_eq!((p.branch.as_deref(), p.repo_url, p.pusher), (Some("main"), None, None));
    }

    #[test]
    fn rejects_bad_payloads() {
        let malformed = |body: &str| match parse_push(GitHub, body.as_bytes()) {
            Err(EventError::Malformed(msg)) => msg,
            other => panic!("{body}: {other:?}"),
        };
        assert!(malformed(r#"{"ref": "#).contains("line 1"));
        assert!(malformed("payload=%7B%7D").contains("expected a JSON object"));
        assert!(malformed(r#"{"before":"a","after":"b"}"#).contains("missing field `ref`"));
        malformed(&format!(r#"["refs/heads/main","{SHA_A}","{SHA_B}"]"#));

        for (r, before, field) in [
            ("--upload-pack=evil", SHA_A, "ref"),
            ("main", SHA_A, "ref"),
            ("refs/heads/a..b", SHA_A, "ref"),
            ("refs/heads/x y", SHA_A, "ref"),
            ("refs/heads/main", "HEAD~1", "before"),
            ("refs/heads/main", "6113728f", "before"),
        ] {
            let body = format!(r#"{{"ref":"{r}","before":"{before}","after":"{SHA_B}"}}"#);
            assert!(
                matches!(parse_push(Generic, body.as_bytes()), Err(EventError::Invalid { field: f, .. }) if f == field)
            );
        }
    }

    #[test]
    fn classifies_events() {
        let ping = r#"{"zen":"Keep it logically awesome.","hook_id":42,"hook":{"type":"Repository"}}"#;
        let other = |s: &str| EventKind::Other(s.to_string());
        for (p, headers, body, kind) in [
            (GitHub, &[("X-GitHub-Event", "push")][..], GITHUB_PUSH, EventKind::Push),
            (GitHub, &[("X-GitHub-Event", "ping")], ping, EventKind::Ping),
            (GitHub, &[("X-GitHub-Event", "issues")], "{}", other("issues")),
            (Gitea, &[("X-Gitea-Event", "push")], GITEA_PUSH, EventKind::Push),
            (Forgejo, &[("X-Gitea-Event", "push")], GITEA_PUSH, EventKind::Push),
            (Forgejo, &[("X-Forgejo-Event", "create")], "{}", other("create")),
            (GitLab, &[("X-Gitlab-Event", "Push Hook")], GITLAB_PUSH, EventKind::Push),
            (GitLab, &[("X-Gitlab-Event", "Tag Push Hook")], GITLAB_PUSH, EventKind::Push),
            (GitLab, &[("X-Gitlab-Event", "Merge Request Hook")], "{}", EventKind::PullRequest),
            (GitHub, &[("X-GitHub-Event", "pull_request")], "{}", EventKind::PullRequest),
            (Gitea, &[("X-Gitea-Event", "pull_request")], "{}", EventKind::PullRequest),
            // Ping by body shape, whatever the header says; generic push by body shape only.
            (Gitea, &[("X-Gitea-Event", "hook")], ping, EventKind::Ping),
            (Generic, &[], r#"{"hook_id":1}"#, EventKind::Ping),
            (Generic, &[], GITLAB_PUSH, EventKind::Push),
            (Generic, &[], r#"{"ref":"refs/heads/main"}"#, other("unknown")),
            (Generic, &[], "not json", other("unknown")),
        ] {
            assert_eq!(event_kind(p, headers, body.as_bytes()), kind, "{p} {headers:?}");
        }
    }

    #[test]
    fn delivery_ids() {
        let uuid = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
        let long = "x".repeat(200);
        for (p, headers, expected) in [
            (GitHub, &[("X-GitHub-Delivery", uuid)][..], Some(uuid)),
            (Gitea, &[("X-Gitea-Delivery", uuid)], Some(uuid)),
            (Forgejo, &[("X-Forgejo-Delivery", uuid)], Some(uuid)),
            (Forgejo, &[("X-Gitea-Delivery", uuid)], Some(uuid)),
            (GitLab, &[("X-Gitlab-Event-UUID", uuid)], Some(uuid)),
            (Generic, &[("X-Request-Id", "req-1")], Some("req-1")),
            (Generic, &[("X-Delivery-Id", "d-2")], Some("d-2")),
            (GitHub, &[("X-GitHub-Delivery", "a b\u{7}"), ("X-Request-Id", "r")], Some("r")),
            (GitHub, &[("X-GitHub-Delivery", &long)], None),
            (GitLab, &[], None),
        ] {
            assert_eq!(delivery_id(p, headers).as_deref(), expected, "{p} {headers:?}");
        }
    }
}
