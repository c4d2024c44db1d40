//! Image references as compose writes them (`registry/path/name:tag@sha256:..`): their parts and
//! the registry and repository they name (Docker Hub's defaults applied).

use serde::Serialize;

/// Docker Hub's registry name in references.
pub const DOCKER_HUB: &str = "docker.io";

/// One parsed reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageRef {
    /// The name as written, without tag or digest (`grafana/grafana`, `ghcr.io/me/app`).
    pub name: String,
    /// The registry host (and port): `docker.io` when the name has none.
    pub registry: String,
    /// The repository path in the registry (`library/redis` for `redis` on Docker Hub).
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parse a reference. `Err` says what is wrong with it.
    pub fn parse(text: &str) -> Result<ImageRef, String> {
        let t = text.trim();
        let (rest, digest) = match t.split_once('@') {
            Some((r, d)) if d.contains(':') => (r, Some(d.to_string())),
            Some(_) => return Err(format!("`{t}`: a digest is written `@sha256:<hex>`")),
            None => (t, None),
        };
        // A tag is after the last `:` that follows the last `/` (a registry's port is before it).
        let slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(rest[slash + i + 1..].to_string())),
            None => (rest, None),
        };
        if name.is_empty() || tag.as_deref() == Some("") || name.contains(char::is_whitespace) {
            return Err(format!("`{t}` is not an image reference"));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        Ok(ImageRef { name: name.to_string(), registry, repository, tag, digest })
    }

    /// The tag compose pulls when none is written.
    pub fn tag_or_latest(&self) -> &str {
        self.tag.as_deref().unwrap_or("latest")
    }

    /// The reference with another tag and digest (either may be absent).
    pub fn with(&self, tag: Option<&str>, digest: Option<&str>) -> String {
        let mut s = self.name.clone();
        if let Some(t) = tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    /// The version as written after the name: `tag`, `tag@digest` or `@digest`.
    pub fn version(&self) -> String {
        let full = self.with(self.tag.as_deref(), self.digest.as_deref());
        full[self.name.len()..].trim_start_matches(':').to_string()
    }
}

/// A Docker Hub name without its implied parts (`docker.io/library/redis` → `redis`), for matching
/// rules written either way.
pub fn short(name: &str) -> &str {
    let n = name.strip_prefix("docker.io/").unwrap_or(name);
    n.strip_prefix("library/").unwrap_or(n)
}

/// Is `registry` on this machine (where registries speak plain HTTP, as the Docker engine allows)?
pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => registry,
    };
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_their_parts() {
        let r = ImageRef::parse("redis:7").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("docker.io", "library/redis", Some("7"))
        );
        let r = ImageRef::parse("127.0.0.1:5000/berth/app:1.2.0@sha256:abc").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "berth/app");
        assert_eq!(r.tag.as_deref(), Some("1.2.0"));
        assert_eq!(r.digest.as_deref(), Some("sha256:abc"));
        assert_eq!(r.version(), "1.2.0@sha256:abc");
        let r = ImageRef::parse("localhost:5000/app").unwrap();
        assert_eq!((r.registry.as_str(), r.tag.as_deref()), ("localhost:5000", None));
        assert_eq!(r.tag_or_latest(), "latest");
        let r = ImageRef::parse("grafana/grafana:11.2.0").unwrap();
        assert_eq!(r.repository, "grafana/grafana");
        assert_eq!(r.with(Some("11.3.0"), None), "grafana/grafana:11.3.0");
        assert!(ImageRef::parse("app@latest").is_err());
        assert!(ImageRef::parse("app:").is_err());
    }

    #[test]
    fn loopback_registries_are_recognised() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("ghcr.io"));
        assert_eq!(short("docker.io/library/redis"), "redis");
    }
}
