//! Which tags a policy adopts: versions read from tags, ordered, filtered (range, pre-releases,
//! ignore list, newer than the current one) with the reason for each tag left out; the age check.

use std::cmp::Ordering;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::{Policy, Versioning};

/// Why a tag is not adopted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Skip {
    /// The tag is no version the policy reads (`latest`, `1.4-alpine` under semver).
    NotAVersion,
    /// A pre-release the policy does not adopt.
    PreRelease,
    /// Outside the semver range.
    OutOfRange,
    /// In the ignore list (the pattern).
    Ignored { pattern: String },
    /// Not newer than the current version.
    NotNewer,
    /// Newer, but younger than `min_age`.
    TooYoung { age_secs: u64, min_age_secs: u64 },
    /// A deploy that brought this version in failed or was rolled back, and none with it succeeded since.
    RolledBack { deploy: i64 },
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::duration::human;
        match self {
            Skip::NotAVersion => f.write_str("not a version"),
            Skip::PreRelease => f.write_str("pre-release"),
            Skip::OutOfRange => f.write_str("outside the range"),
            Skip::Ignored { pattern } => write!(f, "ignored (`{pattern}`)"),
            Skip::NotNewer => f.write_str("not newer"),
            Skip::RolledBack { deploy } => write!(f, "rolled back in deploy {deploy}"),
            Skip::TooYoung { age_secs, min_age_secs } => write!(
                f,
                "too new ({} old, min_age {})",
                human(Duration::from_secs(*age_secs)),
                human(Duration::from_secs(*min_age_secs))
            ),
        }
    }
}

/// The tags a policy would adopt, newest first, and the others with their reasons.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Ranking {
    pub candidates: Vec<String>,
    pub skipped: Vec<(String, Skip)>,
}

/// A version read from a tag, comparable with the others of the same policy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Semver(semver::Version),
    Natural(Vec<Part>),
}

/// A run of digits (compared as a number: by length without leading zeros, then digit by digit)
/// or of other characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    Text(String),
    Num(usize, String),
}

fn natural(s: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        let digit = c.is_ascii_digit();
        let end = rest.find(|c: char| c.is_ascii_digit() != digit).unwrap_or(rest.len());
        let run = &rest[..end];
        parts.push(match digit {
            true => {
                let n = run.trim_start_matches('0');
                Part::Num(n.len(), n.to_string())
            }
            false => Part::Text(run.to_string()),
        });
        rest = &rest[end..];
    }
    parts
}

/// A semantic version from a tag (`1.2.3`, `v1.2.3`, `2.0.0-rc1`).
pub fn semver_of(tag: &str) -> Option<semver::Version> {
    semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()
}

fn key(policy: &Policy, tag: &str) -> Option<Key> {
    match &policy.versioning {
        Versioning::Semver { .. } => semver_of(tag).map(Key::Semver),
        Versioning::Regex { pattern, .. } => {
            let c = pattern.captures(tag)?;
            let m = c.name("version").or_else(|| c.get(1))?;
            Some(Key::Natural(natural(m.as_str())))
        }
        Versioning::Tag => None,
    }
}

/// Does the semver range admit `v` under the policy's pre-release setting? `None` keeps semver's
/// own rule: a pre-release only when the range names one of the same `x.y.z`.
fn admits(policy: &Policy, range: &semver::VersionReq, v: &semver::Version) -> Result<(), Skip> {
    if v.pre.is_empty() {
        return if range.matches(v) { Ok(()) } else { Err(Skip::OutOfRange) };
    }
    match policy.prerelease {
        Some(false) => Err(Skip::PreRelease),
        None if range.matches(v) => Ok(()),
        None => Err(Skip::PreRelease),
        Some(true) => {
            let mut release = v.clone();
            release.pre = semver::Prerelease::EMPTY;
            if range.matches(v) || range.matches(&release) { Ok(()) } else { Err(Skip::OutOfRange) }
        }
    }
}

/// Rank `tags` against the `current` tag. `Err` when the current tag is no version the policy
/// reads (there is nothing to compare with). A digest-only policy ranks nothing.
pub fn rank(policy: &Policy, current: &str, tags: &[String]) -> Result<Ranking, String> {
    if let Versioning::Tag = policy.versioning {
        return Ok(Ranking::default());
    }
    let now = key(policy, current).ok_or_else(|| match &policy.versioning {
        Versioning::Semver { .. } => format!(
            "the current tag `{current}` is not a semantic version; follow it with pin = \"digest\" or write a version"
        ),
        _ => format!("the current tag `{current}` does not match the rule's regex"),
    })?;
    let mut out = Ranking::default();
    let mut newer: Vec<(Key, String)> = Vec::new();
    for tag in tags {
        if tag == current {
            continue;
        }
        let verdict = (|| {
            let k = key(policy, tag).ok_or(Skip::NotAVersion)?;
            if let Some((p, _)) = policy.ignore.iter().find(|(_, g)| g.is_match(tag)) {
                return Err(Skip::Ignored { pattern: p.clone() });
            }
            if let (Versioning::Semver { range, .. }, Key::Semver(v)) = (&policy.versioning, &k) {
                admits(policy, range, v)?;
            }
            if k.cmp(&now) != Ordering::Greater {
                return Err(Skip::NotNewer);
            }
            Ok(k)
        })();
        match verdict {
            Ok(k) => newer.push((k, tag.clone())),
            Err(s) => out.skipped.push((tag.clone(), s)),
        }
    }
    newer.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    out.candidates = newer.into_iter().map(|(_, t)| t).collect();
    Ok(out)
}

/// May a version created at `created` be adopted at `now`?
pub fn old_enough(policy: &Policy, created: jiff::Timestamp, now: jiff::Timestamp) -> Result<(), Skip> {
    let Some(min) = policy.min_age else { return Ok(()) };
    let age = now.as_second().saturating_sub(created.as_second()).max(0) as u64;
    if age < min.as_secs() { Err(Skip::TooYoung { age_secs: age, min_age_secs: min.as_secs() }) } else { Ok(()) }
}
