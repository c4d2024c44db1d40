//! Image update policies: `[[stack.image]]` and `[[image]]` rules checked into [`Policy`], and which
//! rule governs a service's image. Tag selection is in [`select`], image names in [`reference`],
//! where a version is written (compose `image:` or an env variable) and its edit in [`source`].

pub mod memory;
pub mod reference;
pub mod select;
pub mod settings;
pub mod source;

use std::time::Duration;

use globset::{Glob, GlobMatcher};
use serde::Serialize;
use toml::Spanned;

use crate::config::{ImageToml, locate};
use crate::error::{ConfigError, Location};

/// What berth does with a newer version it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateMode {
    /// Only `berth updates` shows it.
    Report,
    /// `berth updates --apply` writes it to the branch and commits.
    Commit,
    /// `berth updates --apply` pushes a branch per stack and opens or edits its pull request.
    PullRequest,
}

/// How versions are read from tags and ordered.
#[derive(Debug, Clone)]
pub enum Versioning {
    /// Tags are semantic versions (an optional leading `v`) within `range`.
    Semver { range: semver::VersionReq, text: String },
    /// Tags matching `pattern`; the capture group is the version, ordered naturally (numbers as numbers).
    Regex { pattern: regex_lite::Regex, text: String },
    /// No tag moves: only the digest of the current tag is followed (`pin = "digest"` alone).
    Tag,
}

/// One checked rule.
#[derive(Debug, Clone)]
pub struct Policy {
    pub service: Option<String>,
    /// The image glob as written, and its matcher.
    pub image: Option<(String, GlobMatcher)>,
    pub versioning: Versioning,
    /// Write the digest with the tag (`tag@sha256:..`) and follow it.
    pub pin_digest: bool,
    pub prerelease: Option<bool>,
    pub min_age: Option<Duration>,
    pub ignore: Vec<(String, GlobMatcher)>,
    pub mode: UpdateMode,
    /// Where the rule is written (`berth.toml:LINE`).
    pub location: Option<Location>,
}

/// Rules compare as written (their compiled patterns have no equality).
impl PartialEq for Policy {
    fn eq(&self, o: &Policy) -> bool {
        let texts = |p: &Policy| p.ignore.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>();
        self.service == o.service
            && self.image.as_ref().map(|i| &i.0) == o.image.as_ref().map(|i| &i.0)
            && self.describe() == o.describe()
            && texts(self) == texts(o)
            && self.mode == o.mode
            && self.location == o.location
    }
}

impl Eq for Policy {}

impl Policy {
    /// Does this rule govern `service`'s image `name` (the image without tag or digest)?
    pub fn applies(&self, service: &str, name: &str) -> bool {
        self.service.as_deref().is_none_or(|s| s == service)
            && self.image.as_ref().is_none_or(|(_, g)| g.is_match(name) || g.is_match(reference::short(name)))
    }

    /// How specific the rule is: a service rule before an image rule before a rule for every image.
    fn rank(&self) -> u8 {
        match (&self.service, &self.image) {
            (Some(_), Some(_)) => 0,
            (Some(_), None) => 1,
            (None, Some(_)) => 2,
            (None, None) => 3,
        }
    }

    /// A one-line summary for listings: `semver ^1`, `regex ..`, `pin digest`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        match &self.versioning {
            Versioning::Semver { text, .. } => parts.push(format!("semver {text}")),
            Versioning::Regex { text, .. } => parts.push(format!("regex {text}")),
            Versioning::Tag => {}
        }
        if self.pin_digest {
            parts.push("pin digest".into());
        }
        if let Some(p) = self.prerelease {
            parts.push(format!("prerelease {p}"));
        }
        if let Some(a) = self.min_age {
            parts.push(format!("min_age {}", crate::duration::human(a)));
        }
        parts.join(", ")
    }
}

/// The rule governing `service`'s image `name`: the stack's own rules first, the most specific
/// winning (then the first written), else the project's `[[image]]` rules the same way.
pub fn policy_for<'a>(stack: &'a [Policy], global: &'a [Policy], service: &str, name: &str) -> Option<&'a Policy> {
    let best = |rules: &'a [Policy]| rules.iter().filter(|p| p.applies(service, name)).min_by_key(|p| p.rank());
    best(stack).or_else(|| best(global))
}

/// Check rules as written (`what` names their table in messages, e.g. "stack `web`"). Every
/// problem is reported at the rule's line.
pub fn resolve(
    file: &str,
    text: &str,
    what: &str,
    rules: &[Spanned<ImageToml>],
    errors: &mut Vec<ConfigError>,
) -> Vec<Policy> {
    let mut out = Vec::new();
    for rule in rules {
        let l = Some(locate(file, text, rule));
        match policy(rule.get_ref(), l.clone()) {
            Ok(p) => out.push(p),
            Err(es) => errors.extend(es.into_iter().map(|(m, h)| {
                let e = ConfigError::new(format!("{what} image rule: {m}")).at(l.clone());
                match h {
                    Some(h) => e.help(h),
                    None => e,
                }
            })),
        }
    }
    out
}

type Problem = (String, Option<String>);

fn glob(text: &str) -> Result<GlobMatcher, String> {
    Glob::new(text).map(|g| g.compile_matcher()).map_err(|e| format!("`{text}` is not a valid pattern: {e}"))
}

fn policy(t: &ImageToml, location: Option<Location>) -> Result<Policy, Vec<Problem>> {
    let mut errs: Vec<Problem> = Vec::new();
    let image = match &t.image {
        Some(i) => match glob(i) {
            Ok(g) => Some((i.clone(), g)),
            Err(e) => {
                errs.push((format!("image {e}"), None));
                None
            }
        },
        None => None,
    };
    let versioning = match (&t.semver, &t.regex) {
        (Some(_), Some(_)) => {
            errs.push(("`semver` and `regex` exclude each other".into(), Some("keep one of them".into())));
            Versioning::Tag
        }
        (Some(s), None) => match semver::VersionReq::parse(s) {
            Ok(range) => Versioning::Semver { range, text: s.clone() },
            Err(e) => {
                errs.push((
                    format!("semver `{s}` is not a version range: {e}"),
                    Some("write e.g. \"^1.4\", \"~2.3\" or \">=1.2, <2\"".into()),
                ));
                Versioning::Tag
            }
        },
        (None, Some(r)) => match regex_lite::Regex::new(r) {
            Ok(pattern) if pattern.captures_len() > 1 => Versioning::Regex { pattern, text: r.clone() },
            Ok(_) => {
                errs.push((
                    format!("regex `{r}` has no capture group"),
                    Some("put the version in parentheses, e.g. \"^RELEASE\\\\.(\\\\d{4}-\\\\d{2}-\\\\d{2})\"".into()),
                ));
                Versioning::Tag
            }
            Err(e) => {
                errs.push((format!("regex `{r}` is not valid: {e}"), None));
                Versioning::Tag
            }
        },
        (None, None) => Versioning::Tag,
    };
    let pin_digest = match t.pin.as_deref() {
        None => false,
        Some("digest") => true,
        Some(other) => {
            errs.push((format!("unknown pin `{other}`"), Some("the only pin is pin = \"digest\"".into())));
            false
        }
    };
    if t.semver.is_none() && t.regex.is_none() && t.pin.is_none() {
        errs.push((
            "says neither how tags move nor what to follow".into(),
            Some("add semver = \"^1\", regex = \"..\" or pin = \"digest\"".into()),
        ));
    }
    if t.prerelease.is_some() && t.semver.is_none() {
        errs.push(("`prerelease` applies to `semver` rules only".into(), None));
    }
    let min_age = match &t.min_age {
        Some(a) => match crate::duration::parse(a) {
            Ok(d) => Some(d),
            Err(e) => {
                errs.push((format!("min_age: {e}"), None));
                None
            }
        },
        None => None,
    };
    let mut ignore = Vec::new();
    for i in &t.ignore {
        match glob(i) {
            Ok(g) => ignore.push((i.clone(), g)),
            Err(e) => errs.push((format!("ignore {e}"), None)),
        }
    }
    let mode = match t.mode.as_deref() {
        None | Some("report") => UpdateMode::Report,
        Some("commit") => UpdateMode::Commit,
        Some("pull_request") => UpdateMode::PullRequest,
        Some(other) => {
            errs.push((
                format!("unknown mode `{other}`"),
                Some("use mode = \"report\", \"commit\" or \"pull_request\"".into()),
            ));
            UpdateMode::Report
        }
    };
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(Policy {
        service: t.service.clone(),
        image,
        versioning,
        pin_digest,
        prerelease: t.prerelease,
        min_age,
        ignore,
        mode,
        location,
    })
}

#[cfg(test)]
mod tests;
