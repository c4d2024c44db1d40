//! The effective-configuration diff of a stack between two commits: per service, whether a
//! deploy recreates it, and a line diff of compose's rendered model with secrets masked.

use std::collections::BTreeSet;

use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;

use crate::textdiff::{self, Line};

/// What a deploy of the new side does to a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Its hashed configuration or a bind-mounted file changed: compose recreates the container.
    Recreate,
    /// Only fields compose applies without recreating changed (replicas, depends_on, build...).
    Updated,
    Unchanged,
    Added,
    Removed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Recreate => "recreate",
            Status::Updated => "updated",
            Status::Unchanged => "unchanged",
            Status::Added => "added",
            Status::Removed => "removed",
        }
    }
}

/// One service's change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceDiff {
    pub name: String,
    pub status: Status,
    /// `image` before and after, when it changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<(Option<String>, Option<String>)>,
    /// Changed repository paths the service bind-mounts (relative to the repository root).
    pub bind_files: Vec<String>,
    /// Unified diff of the pretty-printed service, secrets shown as `(secret changed)` /
    /// `(secret unchanged)`.
    pub diff: String,
}

impl ServiceDiff {
    /// What is said beside the service's status: its image change and its changed bind-mounted files.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some((a, b)) = &self.image {
            let show = |i: &Option<String>| i.clone().unwrap_or_else(|| "(none)".into());
            notes.push(format!("image {} → {}", show(a), show(b)));
        }
        if !self.bind_files.is_empty() {
            notes.push(format!("bind-mounted files changed: {}", self.bind_files.join(", ")));
        }
        notes
    }
}

/// A stack's change: its services, then what changed outside them (networks, volumes...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StackDiff {
    pub services: Vec<ServiceDiff>,
    /// Unified diff of the top-level keys other than `services` and `name`.
    pub project: String,
}

/// One touched stack's outcome between two commits, as `berth diff` and PR plans report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StackOutcome {
    pub name: String,
    pub server: String,
    /// `changed`, `added`, `removed` or `error`.
    pub state: &'static str,
    /// What the plan of the new side does with the stack (`deploy`, `skip`, `manual`...), when planned.
    pub action: Option<String>,
    pub diff: Option<StackDiff>,
    /// Changed bind-mounted files with their text diff.
    pub files: Vec<(String, String)>,
    pub error: Option<String>,
}

impl StackOutcome {
    /// The services a deploy of the new side recreates or creates.
    pub fn recreated(&self) -> Vec<&str> {
        let Some(d) = &self.diff else { return Vec::new() };
        d.services
            .iter()
            .filter(|s| matches!(s.status, Status::Recreate | Status::Added))
            .map(|s| s.name.as_str())
            .collect()
    }

    /// One line for a notification or a page: `recreates web, worker`, `recreates no service`;
    /// none when the stack could not be rendered.
    pub fn summary(&self) -> Option<String> {
        self.diff.as_ref()?;
        let recreated = self.recreated();
        Some(if recreated.is_empty() {
            "recreates no service".to_string()
        } else {
            format!("recreates {}", recreated.join(", "))
        })
    }
}

/// Service fields compose leaves out of its config hash: changing them recreates nothing.
const NOT_HASHED: [&str; 5] = ["build", "pull_policy", "scale", "depends_on", "profiles"];

const TOKEN_OPEN: &str = "«secret:";
const TOKEN_CLOSE: &str = "»";
pub const SECRET_CHANGED: &str = "(secret changed)";
pub const SECRET_UNCHANGED: &str = "(secret unchanged)";

/// Make paths under the scratch work tree `root` relative to it (`.` for the root itself),
/// so that the two sides, checked out in different folders, compare equal.
pub fn relativize(model: &mut Value, root: &str) {
    let root = root.trim_end_matches('/');
    let prefix = format!("{root}/");
    walk_strings(model, &mut |s| {
        if s == root {
            *s = ".".to_string();
        } else if s.contains(&prefix) {
            *s = s.replace(&prefix, "");
        }
    });
}

/// Replace secrets by keyed-hash tokens: every occurrence of a value in `secrets`, and the
/// whole value of each service environment variable whose name `is_secret` says is secret.
/// Equal values give equal tokens under one `key`; the values cannot be recovered from them.
pub fn mask(model: &mut Value, key: &[u8], secrets: &[String], is_secret: &dyn Fn(&str) -> bool) {
    let token = |v: &str| {
        let mut mac = <Hmac<Sha256>>::new_from_slice(key).expect("HMAC accepts keys of any length");
        mac.update(v.as_bytes());
        format!("{TOKEN_OPEN}{}{TOKEN_CLOSE}", hex::encode(&mac.finalize().into_bytes()[..8]))
    };
    if let Some(services) = model.get_mut("services").and_then(Value::as_object_mut) {
        for svc in services.values_mut() {
            match svc.get_mut("environment") {
                Some(Value::Object(env)) => {
                    for (k, v) in env.iter_mut() {
                        if let Some(s) = v.as_str().filter(|_| is_secret(k)) {
                            *v = Value::String(token(s));
                        }
                    }
                }
                // The list form: `KEY=value`.
                Some(Value::Array(env)) => {
                    for v in env.iter_mut() {
                        if let Some((k, val)) = v.as_str().and_then(|s| s.split_once('='))
                            && is_secret(k)
                        {
                            *v = Value::String(format!("{k}={}", token(val)));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let mut values: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    values.sort_by_key(|s| std::cmp::Reverse(s.len()));
    walk_strings(model, &mut |s| {
        for v in &values {
            if s.contains(v.as_str()) {
                *s = s.replace(v.as_str(), &token(v));
            }
        }
    });
}

fn walk_strings(v: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter_mut().for_each(|x| walk_strings(x, f)),
        Value::Object(o) => o.values_mut().for_each(|x| walk_strings(x, f)),
        _ => {}
    }
}

/// Compare two masked, relativized models (`None`: the stack does not exist on that side).
/// `changed_paths` are the repository paths the change touched.
pub fn compare(old: Option<&Value>, new: Option<&Value>, changed_paths: &[String]) -> StackDiff {
    let services = |m: Option<&Value>| m.and_then(|m| m.get("services")).and_then(Value::as_object).cloned();
    let (a, b) = (services(old).unwrap_or_default(), services(new).unwrap_or_default());
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut out = Vec::new();
    for name in names {
        let (o, n) = (a.get(name), b.get(name));
        let bind_files: Vec<String> = match n {
            Some(n) => {
                let sources = bind_sources(n);
                let mut files: Vec<String> = changed_paths
                    .iter()
                    .filter(|p| sources.iter().any(|s| s == "." || *p == s || p.starts_with(&format!("{s}/"))))
                    .cloned()
                    .collect();
                files.sort();
                files
            }
            None => Vec::new(),
        };
        let status = match (o, n) {
            (None, _) => Status::Added,
            (_, None) => Status::Removed,
            (Some(o), Some(n)) if hashed(o) != hashed(n) || !bind_files.is_empty() => Status::Recreate,
            (Some(o), Some(n)) if o != n => Status::Updated,
            _ => Status::Unchanged,
        };
        let image = |v: Option<&Value>| v.and_then(|v| v.get("image")).and_then(Value::as_str).map(str::to_string);
        let (io, inew) = (image(o), image(n));
        let image = (io != inew && o.is_some() && n.is_some()).then_some((io, inew));
        out.push(ServiceDiff { name: name.clone(), status, image, bind_files, diff: render(o, n) });
    }
    let rest = |m: Option<&Value>| {
        let mut m = m.and_then(Value::as_object).cloned().unwrap_or_default();
        m.remove("services");
        m.remove("name");
        (!m.is_empty()).then_some(Value::Object(m))
    };
    let (ra, rb) = (rest(old), rest(new));
    StackDiff { services: out, project: render(ra.as_ref(), rb.as_ref()) }
}

/// The service as compose hashes it.
fn hashed(svc: &Value) -> Value {
    let mut v = svc.clone();
    if let Some(o) = v.as_object_mut() {
        for k in NOT_HASHED {
            o.remove(k);
        }
        if let Some(d) = o.get_mut("deploy").and_then(Value::as_object_mut) {
            d.remove("replicas");
        }
    }
    v
}

/// Bind-mount sources of a service: long syntax (`type: bind`) and short `src:dst[:mode]`.
fn bind_sources(svc: &Value) -> Vec<String> {
    let Some(vols) = svc.get("volumes").and_then(Value::as_array) else { return Vec::new() };
    vols.iter()
        .filter_map(|v| match v {
            Value::String(s) => {
                let src = s.split(':').next().unwrap_or("");
                (src.starts_with('.') || src.contains('/')).then(|| src.trim_start_matches("./").to_string())
            }
            Value::Object(_) if v.get("type").and_then(Value::as_str) == Some("bind") => {
                v.get("source").and_then(Value::as_str).map(|s| s.trim_start_matches("./").to_string())
            }
            _ => None,
        })
        .map(|s| if s.is_empty() { ".".to_string() } else { s })
        .collect()
}

/// Unified diff of two values pretty-printed, tokens replaced by what a reader may see.
fn render(old: Option<&Value>, new: Option<&Value>) -> String {
    let pretty = |v: Option<&Value>| v.map(|v| serde_json::to_string_pretty(v).unwrap_or_default()).unwrap_or_default();
    let (a, b) = (pretty(old), pretty(new));
    let lines = textdiff::lines(&a, &b);
    if !textdiff::changed(&lines) {
        return String::new();
    }
    // A token on both sides stands for the same value on both sides.
    let labeled: Vec<Line> = lines
        .into_iter()
        .map(|l| match l {
            Line::Same(t) => Line::Same(label(&t, None)),
            Line::Removed(t) => Line::Removed(label(&t, Some(&b))),
            Line::Added(t) => Line::Added(label(&t, Some(&a))),
        })
        .collect();
    textdiff::unified(&labeled, 3)
}

/// `line` with each secret token replaced: unchanged when `other` (the other side) has it too.
fn label(line: &str, other: Option<&str>) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find(TOKEN_OPEN) {
        let Some(len) = rest[start..].find(TOKEN_CLOSE) else { break };
        let token = &rest[start..start + len + TOKEN_CLOSE.len()];
        out.push_str(&rest[..start]);
        out.push_str(if other.is_none_or(|o| o.contains(token)) { SECRET_UNCHANGED } else { SECRET_CHANGED });
        rest = &rest[start + token.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;
