//! Where a service's image version is written: the `image:` line of a compose file, or the env
//! variable (project `.env`, an `env_files` entry) its `image:` interpolates; and the minimal text
//! edit that changes it, leaving every other byte (formatting, comments) as it was.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_yaml_ng::Value;

use super::reference::ImageRef;
use crate::ownership::Sources;
use crate::project::Stack;
use crate::{tree, vars};

/// The exact bytes holding a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Spot {
    /// The repo-relative file.
    pub file: String,
    /// Byte range of the version in the file's text.
    pub start: usize,
    pub end: usize,
    /// The variable holding it, when the `image:` interpolates one.
    pub variable: Option<String>,
    /// The range holds the version alone (`1.2.0`), not with its separator (`:1.2.0`).
    pub bare: bool,
}

impl Spot {
    /// The text replacing the range for `version` (`tag` or `tag@digest`).
    pub fn replacement(&self, version: &str) -> String {
        if self.bare { version.to_string() } else { format!(":{version}") }
    }
}

/// A service's image: as written, as compose reads it, and where its version lives.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceImage {
    pub service: String,
    /// The compose file whose `image:` counts (the last one that sets it).
    pub file: String,
    /// The value as written (`registry/app:${APP_TAG}`).
    pub written: String,
    /// The value interpolated with the stack's variables.
    pub image: String,
    /// Where to edit it, or why it cannot be edited.
    pub spot: Result<Spot, String>,
}

/// A variable's value and the file and range it comes from (`None`: `berth.toml` `env`).
struct Var {
    value: String,
    at: Option<(String, usize, usize)>,
}

/// The images of `stack`'s services from its compose files (later files override earlier ones),
/// interpolated in compose's order: the project `.env`, then `env_files`, then `env`. Services
/// without `image:` (built ones) are left out; a file that is missing or not YAML is skipped.
/// `config`: the text of `berth.toml`, where a stack's `env` values are found to be edited.
pub fn images(stack: &Stack, sources: &Sources, config: Option<&str>) -> Vec<ServiceImage> {
    let mut vars: BTreeMap<String, Var> = BTreeMap::new();
    let dotenv = tree::join(&stack.path, ".env").unwrap_or_else(|| ".env".into());
    for f in std::iter::once(&dotenv).chain(&stack.env_files) {
        if let Some(text) = sources.get(f) {
            for (k, start, end) in env_spans(text) {
                vars.insert(k, Var { value: text[start..end].to_string(), at: Some((f.clone(), start, end)) });
            }
        }
    }
    let entry = stack.location.as_ref().filter(|l| l.file.starts_with(crate::config::FILE_NAME)).map(|l| l.line);
    for (k, v) in &stack.env {
        let at = config
            .zip(entry)
            .and_then(|(text, line)| config_env_span(text, line, k, v))
            .map(|(s, e)| (crate::config::FILE_NAME.to_string(), s, e));
        vars.insert(k.clone(), Var { value: v.clone(), at });
    }
    let mut found: BTreeMap<String, (String, String)> = BTreeMap::new();
    for file in &stack.compose_files {
        let Some(text) = sources.get(file) else { continue };
        let Ok(doc) = serde_yaml_ng::from_str::<Value>(text) else { continue };
        let Some(services) = doc.get("services").and_then(Value::as_mapping) else { continue };
        for (name, svc) in services {
            if let (Some(name), Some(image)) = (name.as_str(), svc.get("image").and_then(Value::as_str)) {
                found.insert(name.to_string(), (file.clone(), image.to_string()));
            }
        }
    }
    let lookup = |k: &str| vars.get(k).map(|v| v.value.clone());
    found
        .into_iter()
        .map(|(service, (file, written))| {
            let image = vars::interpolate(&written, &lookup).unwrap_or_else(|_| written.clone());
            let spot = spot(&service, &file, &written, sources.get(&file).unwrap_or(""), &vars);
            ServiceImage { service, file, written, image, spot }
        })
        .collect()
}

/// `KEY=value` lines of an env file with the byte range of each value (inside quotes when quoted).
pub fn env_spans(text: &str) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let here = offset;
        offset += line.len();
        let body = line.trim_end_matches(['\n', '\r']);
        let trimmed = body.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let lead = body.len() - trimmed.len();
        let (lead, trimmed) = match trimmed.strip_prefix("export ") {
            Some(t) => (lead + 7, t),
            None => (lead, trimmed),
        };
        let Some((k, v)) = trimmed.split_once('=') else { continue };
        let key = k.trim();
        if !vars::valid_key(key) {
            continue;
        }
        let vstart = here + lead + k.len() + 1;
        let lspace = v.len() - v.trim_start().len();
        let v = v.trim_start();
        let (s, e) = if v.len() >= 2 && (v.starts_with('"') || v.starts_with('\'')) && v[1..].contains(&v[..1]) {
            let close = v[1..].find(&v[..1]).unwrap_or(0) + 1;
            (vstart + lspace + 1, vstart + lspace + close)
        } else {
            let unquoted = v.split(" #").next().unwrap_or(v).trim_end();
            (vstart + lspace, vstart + lspace + unquoted.len())
        };
        out.push((key.to_string(), s, e));
    }
    out
}

/// The byte range of the quoted `value` of `key = "value"` in the `[[stack]]` entry of `text`
/// whose location is `line` (1-based), up to the next `[[stack]]`. `None` when it is not written
/// there literally, or more than once.
fn config_env_span(text: &str, line: usize, key: &str, value: &str) -> Option<(usize, usize)> {
    let start: usize = text.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum();
    let rest = text.get(start..)?;
    let end = start + rest.get(1..).and_then(|r| r.find("\n[[stack]]")).map_or(rest.len(), |i| i + 1);
    let region = &text[start..end];
    let mut found = None;
    for (i, _) in region.match_indices(key) {
        let whole = !region[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '.');
        let after = region[i + key.len()..].trim_start_matches([' ', '\t']);
        let Some(after) = after.strip_prefix('=').map(|a| a.trim_start_matches([' ', '\t'])) else { continue };
        let Some(quote) = after.chars().next().filter(|q| *q == '"' || *q == '\'') else { continue };
        let at = region.len() - after.len() + 1;
        if whole && region[at..].starts_with(value) && region[at + value.len()..].starts_with(quote) {
            if found.is_some() {
                return None;
            }
            found = Some((start + at, start + at + value.len()));
        }
    }
    found
}

/// The `${NAME}` / `$NAME` a text is made of, alone.
fn sole_variable(text: &str) -> Option<&str> {
    let name = text.strip_prefix("${").and_then(|t| t.strip_suffix('}')).or_else(|| text.strip_prefix('$'))?;
    vars::valid_key(name).then_some(name)
}

fn spot(service: &str, file: &str, written: &str, text: &str, vars: &BTreeMap<String, Var>) -> Result<Spot, String> {
    // The whole reference in one variable: its version is the part after the name.
    if let Some(name) = sole_variable(written) {
        let v = vars.get(name).ok_or_else(|| format!("`{name}` is not set in an env file berth reads"))?;
        let (f, s, e) = v.at.clone().ok_or_else(|| format!("`{name}` is set in berth.toml `env`"))?;
        let r = ImageRef::parse(&v.value)?;
        return Ok(Spot { file: f, start: s + r.name.len(), end: e, variable: Some(name.into()), bare: false });
    }
    let (name_part, version) = split_version(written);
    if let Some(name) = version.strip_prefix(':').and_then(sole_variable) {
        let v = vars.get(name).ok_or_else(|| format!("`{name}` is not set in an env file berth reads"))?;
        let (f, s, e) = v.at.clone().ok_or_else(|| format!("`{name}` is set in berth.toml `env`"))?;
        return Ok(Spot { file: f, start: s, end: e, variable: Some(name.into()), bare: true });
    }
    if version.contains('$') {
        return Err(format!("the version in `{written}` mixes text and variables"));
    }
    let (s, e) = image_value(text, service, written)
        .ok_or_else(|| format!("the `image:` of service `{service}` was not found in `{file}` as written"))?;
    Ok(Spot { file: file.to_string(), start: s + name_part.len(), end: e, variable: None, bare: false })
}

/// `written` split into the name and what follows it (`:tag`, `:tag@digest`, `@digest` or nothing).
fn split_version(written: &str) -> (&str, &str) {
    let at = written.find('@').unwrap_or(written.len());
    let slash = written[..at].rfind('/').map(|i| i + 1).unwrap_or(0);
    let cut = written[slash..at].rfind(':').map(|i| slash + i).unwrap_or(at);
    written.split_at(cut)
}

/// Byte range of the `image:` value of `service` in a compose text: the service's block under the
/// top-level `services:`, its first `image:` key, checked to hold exactly `written`.
fn image_value(text: &str, service: &str, written: &str) -> Option<(usize, usize)> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let key_of = |l: &str| {
        let t = l.trim_start();
        let (k, _) = t.split_once(':')?;
        Some(k.trim().trim_matches(['"', '\'']).to_string())
    };
    let mut offset = 0;
    let mut in_services = false;
    let mut services_indent: Option<usize> = None;
    let mut service_indent: Option<usize> = None;
    let mut child_indent: Option<usize> = None;
    for line in text.split_inclusive('\n') {
        let here = offset;
        offset += line.len();
        let body = line.trim_end_matches(['\n', '\r']);
        let t = body.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let ind = indent(body);
        if ind == 0 {
            in_services = key_of(body).as_deref() == Some("services");
            service_indent = None;
            services_indent = None;
            continue;
        }
        if !in_services {
            continue;
        }
        match service_indent {
            Some(si) if ind > si => {
                if child_indent.is_none() {
                    child_indent = Some(ind);
                }
                if Some(ind) == child_indent && key_of(body).as_deref() == Some("image") {
                    let colon = body.find(':')?;
                    let raw = &body[colon + 1..];
                    let v = raw.split(" #").next().unwrap_or(raw).trim();
                    let inner = v.trim_matches(['"', '\'']);
                    if inner != written {
                        return None;
                    }
                    let start = here + colon + 1 + raw.find(inner)?;
                    return Some((start, start + inner.len()));
                }
            }
            _ if *services_indent.get_or_insert(ind) == ind => {
                service_indent = (key_of(body).as_deref() == Some(service)).then_some(ind);
                child_indent = None;
            }
            _ => {}
        }
    }
    None
}

/// `text` with `start..end` replaced by `with`.
pub fn edit(text: &str, start: usize, end: usize, with: &str) -> Option<String> {
    let (a, b) = (text.get(..start)?, text.get(end..)?);
    Some(format!("{a}{with}{b}"))
}
