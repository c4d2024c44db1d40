//! Release versions: `vMAJOR.MINOR.PATCH` tags, the next patch and the next minor.

use std::fmt;

/// A semantic version tag such as `v1.2.3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl Version {
    /// Parse `v1.2.3` (the `v` is required: other tags are not releases).
    pub fn parse(tag: &str) -> Option<Version> {
        let mut parts = tag.strip_prefix('v')?.split('.');
        let num = |p: Option<&str>| p.filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))?.parse().ok();
        let v = Version { major: num(parts.next())?, minor: num(parts.next())?, patch: num(parts.next())? };
        parts.next().is_none().then_some(v)
    }

    pub fn next_patch(self) -> Version {
        Version { patch: self.patch + 1, ..self }
    }

    pub fn next_minor(self) -> Version {
        Version { minor: self.minor + 1, patch: 0, ..self }
    }

    /// The newest release among `tags` (other tags are ignored).
    pub fn latest<'a>(tags: impl IntoIterator<Item = &'a str>) -> Option<Version> {
        tags.into_iter().filter_map(Version::parse).max()
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_steps() {
        let v = Version::parse("v1.2.3").unwrap();
        assert_eq!(v.next_patch().to_string(), "v1.2.4");
        assert_eq!(v.next_minor().to_string(), "v1.3.0");
        assert!(Version::parse("1.2.3").is_none());
        assert!(Version::parse("v1.2").is_none());
        assert!(Version::parse("v1.2.3-rc1").is_none());
        assert_eq!(Version::latest(["v1.2.3", "v1.10.0", "nightly", "v1.9.9"]).unwrap().to_string(), "v1.10.0");
        assert_eq!(Version::latest(["x"]), None);
    }
}
