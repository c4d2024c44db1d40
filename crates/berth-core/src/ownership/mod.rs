//! What each stack owns: the files its compose model reads, derived from the committed compose files.
//!
//! A stack owns its compose files and what they reference: `include:` and `extends.file` (both
//! followed), `env_file`s, the project `.env`, bind-mount sources, `build` contexts and Dockerfiles,
//! `configs:` and `secrets:` `file:` sources; the env and encrypted files `berth.toml` gives it, and
//! the scripts its hooks run.
//! Paths are interpolated from the stack's known variables. When a path cannot be resolved, or a
//! compose file cannot be read or parsed, the stack owns its whole folder instead, and says why.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;

use crate::project::{Project, Stack};
use crate::tree::{self, Tree};
use crate::vars;

/// The text of repository files (compose and env files) at one commit, by repo-relative path.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    texts: HashMap<String, Arc<Source>>,
}

impl Sources {
    pub fn insert(&mut self, path: impl Into<String>, text: Arc<str>) {
        self.insert_source(path, Arc::new(Source::new(text)));
    }

    /// Add a file whose [`Source`] is shared: with other commits holding the same blob, or with
    /// earlier plans, so its compose references are parsed once however often it is walked.
    pub fn insert_source(&mut self, path: impl Into<String>, source: Arc<Source>) {
        self.texts.insert(path.into(), source);
    }

    pub fn get(&self, path: &str) -> Option<&str> {
        self.texts.get(path).map(|s| s.text())
    }

    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }
}

/// One file's text, and the parts of it that name files once it has been read as a compose file:
/// ownership is derived on every plan (its variables may differ), the parse only once per text.
#[derive(Debug)]
pub struct Source {
    text: Arc<str>,
    doc: OnceLock<Result<ComposeDoc, String>>,
}

impl Source {
    pub fn new(text: Arc<str>) -> Source {
        Source { text, doc: OnceLock::new() }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The compose references of this text, parsed on first use.
    fn doc(&self) -> &Result<ComposeDoc, String> {
        self.doc.get_or_init(|| parse(&self.text).map_err(|e| e.to_string()))
    }
}

/// How a stack uses a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Compose,
    Include,
    Extends,
    EnvFile,
    DotEnv,
    BindMount,
    BuildContext,
    Dockerfile,
    Config,
    Secret,
    Encrypted,
    /// The script a `pre_deploy`/`post_deploy` hook runs (its name is the hook).
    Hook,
    Watch,
    /// The whole stack folder (its references could not all be resolved).
    Folder,
}

/// Why a stack owns a path: the kind of reference, the service or name it belongs to, and the
/// file that makes it (`berth.toml` for what the stack's entry lists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Why {
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

impl Why {
    pub fn new(kind: Kind, name: Option<&str>, from: Option<&str>) -> Why {
        Why { kind, name: name.map(str::to_string), from: from.map(str::to_string) }
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            Kind::Compose => "compose file",
            Kind::Include => "included compose file",
            Kind::Extends => "extended compose file",
            Kind::EnvFile => "env_file",
            Kind::DotEnv => "project .env",
            Kind::BindMount => "bind mount",
            Kind::BuildContext => "build context",
            Kind::Dockerfile => "Dockerfile",
            Kind::Config => "config file",
            Kind::Secret => "secret file",
            Kind::Encrypted => "encrypted env file",
            Kind::Hook => "script",
            Kind::Watch => "watch glob",
            Kind::Folder => "stack folder",
        };
        if let (Kind::Hook, Some(n)) = (self.kind, &self.name) {
            write!(f, "{n} ")?;
        }
        f.write_str(what)?;
        match (self.kind, &self.name) {
            (Kind::Hook, _) => {}
            (Kind::Watch, Some(n)) => write!(f, " `{n}`")?,
            (Kind::Folder, Some(n)) => write!(f, " ({n})")?,
            (Kind::Config | Kind::Secret, Some(n)) => write!(f, " `{n}`")?,
            (_, Some(n)) => write!(f, " of service `{n}`")?,
            _ => {}
        }
        if let Some(from) = &self.from {
            write!(f, " in {from}")?;
        }
        Ok(())
    }
}

/// What one stack owns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owned {
    /// Single files.
    pub files: Vec<(String, Why)>,
    /// Paths owned with everything under them (bind mounts and build contexts may be folders).
    pub dirs: Vec<(String, Why)>,
    /// Set when the stack owns its whole folder: why its references were not enough.
    pub fallback: Option<String>,
    /// Files outside the repository that rendering the model reads (`env_file`, `include`,
    /// `extends`): a plan of untrusted code (a fork's pull request) must not render them.
    pub outside: Vec<String>,
}

/// What every stack of `project` owns, indexed like `project.stacks`. `extra` gives each stack's
/// deploy variables (overrides), which interpolation sees like compose does.
pub fn derive(project: &Project, sources: &Sources, extra: &HashMap<String, BTreeMap<String, String>>) -> Vec<Owned> {
    let none = BTreeMap::new();
    project.stacks.iter().map(|s| stack(s, sources, extra.get(&s.name).unwrap_or(&none))).collect()
}

/// The files whose text `derive` needs and `sources` lacks (that exist in `tree`): the compose and env
/// files, then what they include or extend. Callers read these and ask again until nothing is missing.
pub fn needed(project: &Project, tree: &Tree, sources: &Sources) -> Vec<String> {
    let mut want: Vec<String> = Vec::new();
    for s in &project.stacks {
        let mut w = Walk::new(s, sources, &BTreeMap::new());
        w.run();
        want.extend(w.missing);
    }
    want.retain(|p| tree.contains(p) && sources.get(p).is_none());
    want.sort();
    want.dedup();
    want
}

/// The project `.env` of a stack (compose reads it from the project directory, the stack folder).
fn dotenv(stack: &Stack) -> String {
    tree::join(&stack.path, ".env").unwrap_or_else(|| ".env".to_string())
}

fn stack(s: &Stack, sources: &Sources, extra: &BTreeMap<String, String>) -> Owned {
    let mut w = Walk::new(s, sources, extra);
    w.run();
    let mut o = w.owned;
    if !w.unresolved.is_empty() {
        o.fallback = Some(w.unresolved.join("; "));
    }
    o
}

/// The parts of a compose file that name files; the rest is skipped unparsed into values.
#[derive(Debug, Deserialize)]
struct ComposeDoc {
    #[serde(default)]
    include: Option<Value>,
    #[serde(default)]
    services: Option<BTreeMap<String, Option<ServiceDoc>>>,
    #[serde(default)]
    configs: Option<BTreeMap<String, Option<FileDoc>>>,
    #[serde(default)]
    secrets: Option<BTreeMap<String, Option<FileDoc>>>,
}

#[derive(Debug, Deserialize)]
struct ServiceDoc {
    #[serde(default)]
    env_file: Option<Value>,
    #[serde(default)]
    volumes: Option<Value>,
    #[serde(default)]
    build: Option<Value>,
    #[serde(default)]
    extends: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct FileDoc {
    #[serde(default)]
    file: Option<String>,
}

/// One stack's walk over its compose files.
struct Walk<'a> {
    stack: &'a Stack,
    sources: &'a Sources,
    vars: HashMap<String, String>,
    owned: Owned,
    unresolved: Vec<String>,
    /// Files whose text was wanted and not given.
    missing: Vec<String>,
}

impl<'a> Walk<'a> {
    fn new(stack: &'a Stack, sources: &'a Sources, extra: &BTreeMap<String, String>) -> Walk<'a> {
        let mut w = Walk {
            stack,
            sources,
            vars: HashMap::new(),
            owned: Owned::default(),
            unresolved: Vec::new(),
            missing: Vec::new(),
        };
        // Compose's order: the project `.env`, then what berth puts in the environment (env files, env, overrides).
        let from = Some("berth.toml");
        let dot = dotenv(stack);
        w.env_text(&dot);
        w.owned.files.push((dot, Why::new(Kind::DotEnv, None, None)));
        for f in &stack.env_files {
            w.env_text(f);
            w.owned.files.push((f.clone(), Why::new(Kind::EnvFile, None, from)));
        }
        for f in &stack.secrets {
            w.owned.files.push((f.clone(), Why::new(Kind::Encrypted, None, from)));
        }
        // A hook's script is part of how the stack deploys: fixing a failing one must count as a change.
        for (which, hook) in [("pre_deploy", &stack.pre_deploy), ("post_deploy", &stack.post_deploy)] {
            if let Some((_, script)) = &hook.script {
                w.owned.files.push((script.clone(), Why::new(Kind::Hook, Some(which), from)));
            }
        }
        w.vars.extend(stack.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        w.vars.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        w
    }

    fn env_text(&mut self, path: &str) {
        match self.sources.get(path) {
            Some(t) => self.vars.extend(vars::parse_env_file(t).unwrap_or_default()),
            None => self.missing.push(path.to_string()),
        }
    }

    fn run(&mut self) {
        let mut queue: Vec<(String, String, Why)> = self
            .stack
            .compose_files
            .iter()
            .map(|f| (f.clone(), self.stack.path.clone(), Why::new(Kind::Compose, None, None)))
            .collect();
        queue.reverse();
        let mut seen = HashSet::new();
        while let Some((file, base, why)) = queue.pop() {
            if !seen.insert(file.clone()) {
                continue;
            }
            self.owned.files.push((file.clone(), why));
            let Some(source) = self.sources.texts.get(&file) else {
                self.missing.push(file.clone());
                self.unresolved.push(format!("`{file}` could not be read"));
                continue;
            };
            match source.doc() {
                Ok(doc) => self.document(doc, &file, &base, &mut queue),
                Err(e) => self.unresolved.push(format!("`{file}` is not valid YAML ({e})")),
            }
        }
    }

    /// A path of `file` resolved against `base`: `None` when it is outside the repository (absolute,
    /// `~`, a URL, above the root), or cannot be interpolated (then the stack falls back to its folder).
    fn path(&mut self, raw: &str, base: &str, file: &str) -> Option<String> {
        let vars = &self.vars;
        let value = match vars::interpolate(raw, &|k| vars.get(k).cloned()) {
            Ok(v) => v,
            Err(name) => {
                self.unresolved.push(format!("`{raw}` in `{file}` uses `{name}`, whose value berth does not know"));
                return None;
            }
        };
        if value.is_empty() || value.starts_with('~') || value.contains("://") || value.starts_with("git@") {
            return None;
        }
        tree::join(base, &value)
    }

    /// [`Self::path`] of a file compose reads while rendering, noting one outside the repository.
    fn read_path(&mut self, raw: &str, base: &str, file: &str) -> Option<String> {
        let p = self.path(raw, base, file);
        if p.is_none() {
            let vars = &self.vars;
            if let Ok(v) = vars::interpolate(raw, &|k| vars.get(k).cloned())
                && !v.is_empty()
                && !v.contains("://")
            {
                self.owned.outside.push(v);
            }
        }
        p
    }

    fn file(&mut self, raw: &str, base: &str, file: &str, why: Why) {
        if let Some(p) = self.read_path(raw, base, file) {
            self.owned.files.push((p, why));
        }
    }

    fn dir(&mut self, raw: &str, base: &str, file: &str, why: Why) -> Option<String> {
        let p = self.path(raw, base, file)?;
        self.owned.dirs.push((p.clone(), why));
        Some(p)
    }

    fn document(&mut self, doc: &ComposeDoc, file: &str, base: &str, queue: &mut Vec<(String, String, Why)>) {
        let from = Some(file);
        for inc in seq(doc.include.as_ref()) {
            let (paths, project_dir, env) = match inc {
                Value::String(_) => (vec![inc], None, Vec::new()),
                _ => (
                    seq(inc.get("path")),
                    inc.get("project_directory").and_then(Value::as_str),
                    seq(inc.get("env_file")),
                ),
            };
            for e in env.iter().filter_map(|e| e.as_str()) {
                self.file(e, base, file, Why::new(Kind::EnvFile, None, from));
            }
            for p in paths.iter().filter_map(|p| p.as_str()) {
                if let Some(path) = self.read_path(p, base, file) {
                    let inc_base = match project_dir.and_then(|d| self.path(d, base, file)) {
                        Some(d) => d,
                        None => tree::parent(&path).to_string(),
                    };
                    queue.push((path, inc_base, Why::new(Kind::Include, None, from)));
                }
            }
        }
        for (name, svc) in doc.services.iter().flatten() {
            if let Some(svc) = svc {
                self.service(name, svc, file, base, queue);
            }
        }
        for (defs, kind) in [(&doc.configs, Kind::Config), (&doc.secrets, Kind::Secret)] {
            for (name, def) in defs.iter().flatten() {
                if let Some(f) = def.as_ref().and_then(|d| d.file.as_deref()) {
                    self.dir(f, base, file, Why::new(kind, Some(name), from));
                }
            }
        }
    }

    fn service(
        &mut self,
        name: &str,
        svc: &ServiceDoc,
        file: &str,
        base: &str,
        queue: &mut Vec<(String, String, Why)>,
    ) {
        let why = |kind| Why::new(kind, Some(name), Some(file));
        for e in seq(svc.env_file.as_ref()) {
            if let Some(p) = e.as_str().or_else(|| e.get("path").and_then(Value::as_str)) {
                self.file(p, base, file, why(Kind::EnvFile));
            }
        }
        for v in seq(svc.volumes.as_ref()) {
            let source = match v {
                Value::String(s) => short_source(s),
                _ if v.get("type").and_then(Value::as_str) == Some("bind") => v.get("source").and_then(Value::as_str),
                _ => None,
            };
            // A short-syntax source is a path only when it starts like one; else it names a volume.
            if let Some(src) = source.filter(|s| s.starts_with('.') || s.starts_with('$')) {
                let resolved = {
                    let vars = &self.vars;
                    vars::interpolate(src, &|k| vars.get(k).cloned())
                };
                match resolved {
                    Ok(r) if !r.starts_with('.') => {} // a named volume or a host path, once interpolated
                    _ => {
                        self.dir(src, base, file, why(Kind::BindMount));
                    }
                }
            }
        }
        match &svc.build {
            Some(Value::String(ctx)) => {
                if let Some(c) = self.dir(ctx, base, file, why(Kind::BuildContext)) {
                    self.owned
                        .files
                        .push((format!("{c}/Dockerfile").trim_start_matches('/').to_string(), why(Kind::Dockerfile)));
                }
            }
            Some(b @ Value::Mapping(_)) => {
                let ctx = b.get("context").and_then(Value::as_str).unwrap_or(".");
                if let Some(c) = self.dir(ctx, base, file, why(Kind::BuildContext)) {
                    let dockerfile = b.get("dockerfile").and_then(Value::as_str).unwrap_or("Dockerfile");
                    self.file(dockerfile, &c, file, why(Kind::Dockerfile));
                }
            }
            _ => {}
        }
        if let Some(f) = svc.extends.as_ref().and_then(|e| e.get("file")).and_then(Value::as_str)
            && let Some(p) = self.read_path(f, base, file)
        {
            let b = tree::parent(&p).to_string();
            queue.push((p, b, why(Kind::Extends)));
        }
    }
}

/// A compose file's referencing parts. Merge keys (`<<: *anchor`) are applied first, as compose does.
fn parse(text: &str) -> Result<ComposeDoc, serde_yaml_ng::Error> {
    if text.contains("<<") {
        let mut v: Value = serde_yaml_ng::from_str(text)?;
        v.apply_merge()?;
        return ComposeDoc::deserialize(v);
    }
    serde_yaml_ng::from_str(text)
}

/// A value that may be one item or a list of them, as a list.
fn seq(v: Option<&Value>) -> Vec<&Value> {
    match v {
        Some(Value::Sequence(s)) => s.iter().collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(one) => vec![one],
    }
}

/// The source of a short-syntax volume (`SRC:DST[:MODE]`); a `:` inside `${...}` does not split.
fn short_source(v: &str) -> Option<&str> {
    let mut depth = 0;
    for (i, c) in v.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ':' if depth == 0 => return Some(&v[..i]),
            _ => {}
        }
    }
    None
}

/// Two stacks in one folder: what `validate` says about them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shared {
    /// Same folder, same compose files, same server: one compose project under two names.
    SameProject { a: String, b: String, folder: String, server: String },
    /// Same folder and neither stack lists its compose files in berth.toml.
    Undeclared { a: String, b: String, folder: String },
}

impl fmt::Display for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shared::SameProject { a, b, folder, server } => write!(
                f,
                "stacks `{a}` and `{b}` would be the same compose project: both deploy the same compose files of \
                 `{folder}` on server `{server}`; give each its own files with compose = [\"...\"] or remove one"
            ),
            Shared::Undeclared { a, b, folder } => write!(
                f,
                "stacks `{a}` and `{b}` share the folder `{folder}` and neither declares its compose files; list \
                 them with compose = [\"...\"] in each [[stack]] so each owns exactly its files"
            ),
        }
    }
}

/// Stacks sharing a folder, pair by pair (in name order).
pub fn shared(project: &Project) -> Vec<Shared> {
    let mut by_folder: BTreeMap<&str, Vec<&Stack>> = BTreeMap::new();
    for s in &project.stacks {
        by_folder.entry(&s.path).or_default().push(s);
    }
    let mut out = Vec::new();
    for (folder, stacks) in by_folder.into_iter().filter(|(_, s)| s.len() > 1) {
        for (i, a) in stacks.iter().enumerate() {
            for b in &stacks[i + 1..] {
                let (a_, b_, folder) = (a.name.clone(), b.name.clone(), folder.to_string());
                if a.server == b.server && a.compose_files == b.compose_files {
                    out.push(Shared::SameProject { a: a_, b: b_, folder, server: a.server.clone() });
                } else if !a.compose_declared && !b.compose_declared {
                    out.push(Shared::Undeclared { a: a_, b: b_, folder });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
