//! `[updates]`: how image updates are written back to git (identity, signing key, the forge
//! that receives update pull requests).

use serde::Deserialize;

use crate::config::ForgeToml;
use crate::error::{ConfigError, Location};

/// The text of `[updates]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatesToml {
    /// Author and committer of update commits: `Name <email>` (default: the repository's
    /// `user.name`/`user.email`, else `berth <berth@localhost>`).
    pub author: Option<String>,
    /// An SSH private key (path): update commits are signed with it (git's `ssh` signature format).
    pub signing_key: Option<String>,
    /// Where `mode = "pull_request"` opens its requests: `provider` (required), `url`, `token`.
    pub forge: Option<ForgeToml>,
    /// Branch name prefix of update pull requests (default `berth/updates/`), followed by the stack.
    pub branch_prefix: Option<String>,
    /// `berth serve` checks the registries this often (`6h`; default: only when a registry notifies).
    pub poll: Option<String>,
    /// Per registry host, another interval (`{ "docker.io" = "24h" }`, e.g. for a rate-limited one).
    #[serde(default)]
    pub registry_poll: std::collections::BTreeMap<String, String>,
}

/// `[updates]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Updates {
    pub author: Option<(String, String)>,
    pub signing_key: Option<String>,
    pub forge: Option<ForgeToml>,
    pub branch_prefix: String,
    pub poll: Option<std::time::Duration>,
    pub registry_poll: std::collections::BTreeMap<String, std::time::Duration>,
}

impl Default for Updates {
    fn default() -> Updates {
        Updates {
            author: None,
            signing_key: None,
            forge: None,
            branch_prefix: "berth/updates/".into(),
            poll: None,
            registry_poll: Default::default(),
        }
    }
}

/// `Name <email>` → (name, email).
fn identity(s: &str) -> Option<(String, String)> {
    let (name, rest) = s.split_once('<')?;
    let email = rest.strip_suffix('>')?.trim();
    let name = name.trim();
    (!name.is_empty() && email.contains('@')).then(|| (name.to_string(), email.to_string()))
}

pub fn resolve(at: Option<Location>, t: Option<&UpdatesToml>, errors: &mut Vec<ConfigError>) -> Updates {
    let Some(t) = t else { return Updates::default() };
    let err = |m: String| ConfigError::new(m).at(at.clone());
    let author = t.author.as_deref().and_then(|a| {
        let id = identity(a);
        if id.is_none() {
            errors.push(
                err(format!("[updates] author `{a}` is not `Name <email>`"))
                    .help("author = \"berth <berth@example.com>\""),
            );
        }
        id
    });
    if let Some(f) = &t.forge {
        match f.provider.as_deref() {
            Some(p) if crate::project::FORGE_PROVIDERS.contains(&p) => {}
            Some(p) => errors.push(
                err(format!("[updates] forge: unknown provider `{p}`"))
                    .help(format!("provider is one of {}", crate::project::FORGE_PROVIDERS.join(", "))),
            ),
            None => errors.push(err("[updates] forge: provider is missing".into()).help(
                "forge = { provider = \"gitea\", url = \"https://git.example.com\", token = { env = \"TOKEN\" } }",
            )),
        }
        if let Some(u) = f.url.as_deref().filter(|u| !u.starts_with("http://") && !u.starts_with("https://")) {
            errors.push(err(format!("[updates] forge: url `{u}` is not an http(s) URL")));
        }
    }
    let branch_prefix = t.branch_prefix.clone().unwrap_or_else(|| Updates::default().branch_prefix);
    if branch_prefix.is_empty() || branch_prefix.contains("..") || branch_prefix.contains(' ') {
        errors.push(err(format!("[updates] branch_prefix `{branch_prefix}` is no usable branch name prefix")));
    }
    let mut interval = |what: &str, p: &str| match crate::duration::parse(p) {
        Ok(d) if d >= std::time::Duration::from_secs(60) => Some(d),
        Ok(_) => {
            errors.push(err(format!("[updates] {what} `{p}` is shorter than a minute")).help("poll = \"6h\""));
            None
        }
        Err(e) => {
            errors.push(err(format!("[updates] {what}: {e}")));
            None
        }
    };
    let poll = t.poll.as_deref().and_then(|p| interval("poll", p));
    let registry_poll = t
        .registry_poll
        .iter()
        .filter_map(|(host, p)| Some((host.clone(), interval(&format!("registry_poll `{host}`"), p)?)))
        .collect();
    Updates { author, signing_key: t.signing_key.clone(), forge: t.forge.clone(), branch_prefix, poll, registry_poll }
}

/// Which registries a poll asks now. `last`: when each was last asked (the key `""` stands for
/// every registry without its own interval); `elapsed` gives the time since. `None`: none is due;
/// `Some(list)`: those hosts, where `*` means every registry without its own interval.
pub fn due(updates: &Updates, elapsed: &dyn Fn(&str) -> Option<std::time::Duration>) -> Option<Vec<String>> {
    let is_due = |key: &str, every: std::time::Duration| elapsed(key).is_none_or(|e| e >= every);
    let mut hosts: Vec<String> =
        updates.registry_poll.iter().filter(|(h, every)| is_due(h, **every)).map(|(h, _)| h.clone()).collect();
    if updates.poll.is_some_and(|every| is_due("", every)) {
        hosts.push("*".into());
    }
    (!hosts.is_empty()).then_some(hosts)
}

/// Whether a poll of `hosts` (from [`due`]) asks `registry`.
pub fn asks(updates: &Updates, hosts: &[String], registry: &str) -> bool {
    hosts.iter().any(|h| h == registry)
        || (hosts.iter().any(|h| h == "*") && !updates.registry_poll.contains_key(registry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_identity_and_refuses_bad_values() {
        assert_eq!(identity("berth bot <bot@example.com>"), Some(("berth bot".into(), "bot@example.com".into())));
        assert_eq!(identity("bot@example.com"), None);
        let mut errors = Vec::new();
        let t = UpdatesToml {
            author: Some("nobody".into()),
            forge: Some(ForgeToml { provider: Some("svn".into()), url: Some("h".into()), token: None }),
            ..Default::default()
        };
        let u = resolve(None, Some(&t), &mut errors);
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(
            text[0].contains("author `nobody`") && text[1].contains("`svn`") && text[2].contains("`h`"),
            "{text:?}"
        );
        assert_eq!(u.branch_prefix, "berth/updates/");
    }

    #[test]
    fn registries_are_due_on_their_own_intervals() {
        use std::time::Duration;
        let h = Duration::from_secs(3600);
        let u =
            Updates { poll: Some(h), registry_poll: [("docker.io".to_string(), 24 * h)].into(), ..Default::default() };
        // Never asked: all due.
        assert_eq!(due(&u, &|_| None), Some(vec!["docker.io".to_string(), "*".to_string()]));
        // Two hours on: the default is due, Docker Hub is not.
        let hosts = due(&u, &|_| Some(2 * h)).unwrap();
        assert_eq!(hosts, vec!["*".to_string()]);
        assert!(asks(&u, &hosts, "ghcr.io") && !asks(&u, &hosts, "docker.io"));
        // Half an hour on: nothing.
        assert_eq!(due(&u, &|_| Some(h / 2)), None);
        // No intervals at all: only notifications start a check.
        assert_eq!(due(&Updates::default(), &|_| None), None);
    }
}
