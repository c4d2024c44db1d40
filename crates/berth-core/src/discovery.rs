//! Discovery: folders that match a path convention and hold a compose file become stacks.

use crate::error::ConfigError;
use crate::tree::{Tree, parent};

/// Compose file names in Docker Compose's order of preference.
pub const COMPOSE_NAMES: [&str; 4] = ["compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"];
/// Override files Compose loads by default next to the main file.
pub const OVERRIDE_NAMES: [&str; 4] =
    ["compose.override.yaml", "compose.override.yml", "docker-compose.override.yaml", "docker-compose.override.yml"];

/// Patterns used when `berth.toml` does not set any.
pub const DEFAULT_PATTERNS: [&str; 2] = ["nodes/{server}/{stack}/", "stacks/{stack}/"];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Server,
    Stack,
    Any,
}

/// A compiled pattern such as `nodes/{server}/{stack}/`.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub text: String,
    segments: Vec<Segment>,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, ConfigError> {
        let trimmed = text.trim_matches('/');
        let mut segments = Vec::new();
        for seg in trimmed.split('/') {
            segments.push(match seg {
                "{server}" => Segment::Server,
                "{stack}" => Segment::Stack,
                "*" => Segment::Any,
                "" | "." | ".." => {
                    return Err(ConfigError::new(format!(
                        "discovery pattern `{text}` has an empty, `.` or `..` segment"
                    ))
                    .help("write patterns like \"stacks/{stack}/\" relative to the repository root"));
                }
                s if s.contains(['{', '}', '*']) => {
                    return Err(ConfigError::new(format!(
                        "discovery pattern `{text}`: segment `{s}` mixes text and placeholders"
                    ))
                    .help("a segment is either literal text, `*`, `{server}` or `{stack}`"));
                }
                s => Segment::Literal(s.to_string()),
            });
        }
        if segments.iter().filter(|s| **s == Segment::Stack).count() != 1 {
            return Err(ConfigError::new(format!("discovery pattern `{text}` must contain `{{stack}}` exactly once")));
        }
        if segments.iter().filter(|s| **s == Segment::Server).count() > 1 {
            return Err(ConfigError::new(format!("discovery pattern `{text}` has `{{server}}` more than once")));
        }
        Ok(Pattern { text: text.to_string(), segments })
    }

    /// Match a folder; returns (stack name, server name) on success.
    pub fn matches<'a>(&self, dir: &'a str) -> Option<(&'a str, Option<&'a str>)> {
        let mut stack = None;
        let mut server = None;
        let mut parts = dir.split('/');
        for seg in &self.segments {
            // Every segment names a folder: the repository root ("") is never a stack of `{stack}/`.
            let part = parts.next().filter(|p| !p.is_empty())?;
            match seg {
                Segment::Literal(l) if l != part => return None,
                Segment::Literal(_) | Segment::Any => {}
                Segment::Server => server = Some(part),
                Segment::Stack => stack = Some(part),
            }
        }
        if parts.next().is_some() {
            return None;
        }
        Some((stack?, server))
    }
}

/// A stack found by a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    pub name: String,
    pub path: String,
    pub server: Option<String>,
    pub compose_files: Vec<String>,
    pub pattern: String,
}

/// The compose files Compose itself would load in `dir`: the preferred main file plus its override.
pub fn default_compose_files(tree: &Tree, dir: &str) -> Vec<String> {
    let in_dir = |name: &str| {
        if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") }
    };
    let mut files = Vec::new();
    if let Some(main) = COMPOSE_NAMES.iter().map(|n| in_dir(n)).find(|p| tree.contains(p)) {
        files.push(main);
        if let Some(ov) = OVERRIDE_NAMES.iter().map(|n| in_dir(n)).find(|p| tree.contains(p)) {
            files.push(ov);
        }
    }
    files
}

/// Every folder of the tree that matches one of the patterns (first pattern wins) and holds a compose file.
pub fn discover(tree: &Tree, patterns: &[Pattern]) -> Vec<Discovered> {
    let mut found: Vec<Discovered> = Vec::new();
    let mut last_dir: Option<&str> = None;
    for entry in tree.entries() {
        let file = entry.path.rsplit('/').next().unwrap_or("");
        if !COMPOSE_NAMES.contains(&file) {
            continue;
        }
        let dir = parent(&entry.path);
        if last_dir == Some(dir) {
            continue;
        }
        last_dir = Some(dir);
        for p in patterns {
            if let Some((name, server)) = p.matches(dir) {
                found.push(Discovered {
                    name: name.to_string(),
                    path: dir.to_string(),
                    server: server.map(str::to_string),
                    compose_files: default_compose_files(tree, dir),
                    pattern: p.text.clone(),
                });
                break;
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(p: &[&str]) -> Vec<Pattern> {
        p.iter().map(|p| Pattern::parse(p).unwrap()).collect()
    }

    #[test]
    fn finds_stacks_by_convention() {
        let tree = Tree::from_paths([
            "nodes/onyx/caddy/compose.yaml",
            "nodes/onyx/caddy/Caddyfile",
            "nodes/heimdall/monitoring/docker-compose.yml",
            "nodes/heimdall/monitoring/docker-compose.override.yml",
            "stacks/web/compose.yml",
            "stacks/web/sub/compose.yaml",
            "libs/common.env",
            "stacks/empty/README.md",
        ]);
        let found = discover(&tree, &pats(&DEFAULT_PATTERNS));
        let names: Vec<_> = found.iter().map(|d| (d.name.as_str(), d.server.as_deref())).collect();
        assert_eq!(names, vec![("monitoring", Some("heimdall")), ("caddy", Some("onyx")), ("web", None)]);
        assert_eq!(
            found[0].compose_files,
            vec![
                "nodes/heimdall/monitoring/docker-compose.yml",
                "nodes/heimdall/monitoring/docker-compose.override.yml"
            ]
        );
    }

    #[test]
    fn prefers_compose_yaml_like_compose_does() {
        let tree = Tree::from_paths(["stacks/a/docker-compose.yml", "stacks/a/compose.yaml"]);
        let found = discover(&tree, &pats(&["stacks/{stack}/"]));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].compose_files, vec!["stacks/a/compose.yaml"]);
    }

    #[test]
    fn a_compose_file_at_the_root_is_not_a_stack_named_empty() {
        // Found by fuzzing: `{stack}/` matched the root folder "" and discovered a stack with no name.
        let tree = Tree::from_paths(["compose.yaml", "web/compose.yaml"]);
        let found = discover(&tree, &pats(&["{stack}/"]));
        assert_eq!(found.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["web"]);
        let p = &pats(&["{server}/{stack}/"])[0];
        assert_eq!(p.matches("onyx/"), None);
        assert_eq!(p.matches("/web"), None);
        assert_eq!(p.matches("onyx/web"), Some(("web", Some("onyx"))));
    }

    #[test]
    fn rejects_bad_patterns() {
        assert!(Pattern::parse("stacks/").is_err());
        assert!(Pattern::parse("a/{stack}/{stack}").is_err());
        assert!(Pattern::parse("../{stack}").is_err());
        assert!(Pattern::parse("x{stack}").is_err());
        assert!(Pattern::parse("*/{stack}/").unwrap().matches("a/b").is_some());
    }
}
