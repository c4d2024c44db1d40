//! `berth diff`: what a change would do to each stack it touches, service by service, from
//! compose's rendered configuration on both sides (secrets compared by keyed hash, never shown).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use berth_core::changes::{self, Index};
use berth_core::diff::{self, ServiceDiff, StackDiff, Status};
use berth_core::{Stack, config};
use serde_json::{Value, json};

use crate::docker::{self, Compose, Engine, ProjectRef};
use crate::error::{Error, Result, exit};
use crate::output::short;
use crate::workspace::{Snapshot, Workspace};

/// One touched stack's outcome.
struct Outcome {
    name: String,
    server: String,
    /// `changed`, `added`, `removed` or `error`.
    state: &'static str,
    diff: Option<StackDiff>,
    /// Changed bind-mounted files with their text diff.
    files: Vec<(String, String)>,
    error: Option<String>,
}

/// The scratch folder both sides are checked out in, removed when the command ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn diff(ws: &Workspace, base: Option<&str>, head: &str, only: &[String], as_json: bool) -> Result<i32> {
    let new = ws.snapshot(head)?;
    ws.require_stacks(&new.project)?;
    let base = match base {
        Some(b) => b.to_string(),
        None => {
            let against = ws.repo.default_base().ok_or_else(|| {
                Error::Usage("no upstream branch, `main` or `master` to compare with; pass --base REV".into())
            })?;
            ws.repo.merge_base(&new.commit, &against)?
        }
    };
    let old = ws.snapshot(&base)?;
    let changes = ws.repo.diff(&old.commit, &new.commit)?;
    let index = Index::new(&new.project, &new.sources, &HashMap::new());
    let mut touched: BTreeSet<String> = index.touched(&changes).into_keys().collect();
    if changes.iter().any(|c| c.path == config::FILE_NAME || c.old_path.as_deref() == Some(config::FILE_NAME)) {
        touched.extend(changes::redefined(&old.project, &new.project));
        touched.extend(changes::removed(&old.project, &new.project));
    }
    // Paths that belonged to stacks as the base defined them (a stack removed or moved).
    let old_index = Index::new(&old.project, &old.sources, &HashMap::new());
    touched.extend(old_index.touched(&changes).into_keys());
    for name in only {
        if new.project.stack(name).is_none() && old.project.stack(name).is_none() {
            return Err(Error::Unknown(new.project.unknown_stack(name)));
        }
    }
    if !only.is_empty() {
        touched.retain(|n| only.contains(n));
    }
    let paths: Vec<String> =
        changes.iter().flat_map(|c| std::iter::once(c.path.clone()).chain(c.old_path.clone())).collect();

    let mut outcomes = Vec::new();
    if !touched.is_empty() {
        let state = ws.read_state()?;
        // The overrides a reconcile of the head would replay.
        let (_, overrides) = ws.plan(&new, &ws.history(&state)?, None, &BTreeMap::new())?;
        let compose = Compose::detect()?;
        let id = crate::secrets::random_hex(8).map_err(|e| Error::Io(format!("cannot read /dev/urandom: {e}")))?;
        let dir = ws.state_dir.join("tmp").join(format!("diff-{id}"));
        let scratch = Scratch(std::path::absolute(&dir).unwrap_or(dir));
        let key = crate::secrets::random_hex(32).map_err(|e| Error::Io(format!("cannot read /dev/urandom: {e}")))?;
        let sides = [(&old, scratch.0.join("base")), (&new, scratch.0.join("head"))];
        for (snap, dir) in &sides {
            ws.repo.checkout_into(&snap.commit, dir)?;
        }
        for name in &touched {
            let none = BTreeMap::new();
            let vars = overrides.get(name).unwrap_or(&none);
            let side = |i: usize| {
                let (snap, dir) = &sides[i];
                snap.project.stack(name).map(|s| render(snap, s, dir, vars, &compose, key.as_bytes()))
            };
            let (a, b) = (side(0), side(1));
            let stack = new.project.stack(name).or(old.project.stack(name));
            let server = stack.map(|s| s.server.clone()).unwrap_or_default();
            let mut o =
                Outcome { name: name.clone(), server, state: "changed", diff: None, files: vec![], error: None };
            match (a.transpose(), b.transpose()) {
                (Err(e), _) | (_, Err(e)) => (o.state, o.error) = ("error", Some(e)),
                (Ok(a), Ok(b)) => {
                    o.state = match (&a, &b) {
                        (None, _) => "added",
                        (_, None) => "removed",
                        _ => "changed",
                    };
                    let d = diff::compare(a.as_ref(), b.as_ref(), &paths);
                    let files: BTreeSet<&String> = d.services.iter().flat_map(|s| &s.bind_files).collect();
                    for f in files {
                        o.files.push((f.clone(), ws.repo.file_diff(&old.commit, &new.commit, f)?));
                    }
                    o.diff = Some(d);
                }
            }
            outcomes.push(o);
        }
    }
    let text = if as_json { json_text(&old.commit, &new.commit, &outcomes) } else { human(&old, &new, &outcomes) };
    print!("{}", crate::redact::apply(&text));
    Ok(if outcomes.iter().any(|o| o.error.is_some()) { exit::FAILED } else { exit::OK })
}

/// A stack's model on one side: variables resolved as a deploy resolves them, compose's
/// rendering, paths made relative to the work tree, secrets masked.
fn render(
    snap: &Snapshot,
    stack: &Stack,
    dir: &Path,
    overrides: &BTreeMap<String, String>,
    compose: &Compose,
    key: &[u8],
) -> std::result::Result<Value, String> {
    let at = short(&snap.commit);
    let server =
        snap.project.server(&stack.server).ok_or_else(|| format!("server `{}` is not declared", stack.server))?;
    let engine = Engine::for_server(server, compose);
    let v = crate::variables::resolve(stack, dir, overrides).map_err(|e| format!("at {at}: {e}"))?;
    let files: Vec<PathBuf> = stack.compose_files.iter().map(|f| dir.join(f)).collect();
    let stack_dir = dir.join(&stack.path);
    let project = ProjectRef { name: &stack.name, files: &files, dir: &stack_dir, vars: &v.values };
    let out = crate::process::run(&mut engine.compose_model(&project), stack.timeout)
        .map_err(|e| format!("compose config at {at}: {e}"))?;
    if !out.success() {
        return Err(format!("compose config at {at} rejected the stack's files: {}", out.error_summary()));
    }
    let mut model = docker::parse_model(&out.stdout)?;
    diff::relativize(&mut model, &dir.display().to_string());
    diff::mask(&mut model, key, &v.secrets(), &|k: &str| v.is_secret(k));
    Ok(model)
}

fn json_text(base: &str, head: &str, outcomes: &[Outcome]) -> String {
    let stacks: Vec<Value> = outcomes
        .iter()
        .map(|o| {
            let files: Vec<Value> = o.files.iter().map(|(p, d)| json!({ "path": p, "diff": d })).collect();
            json!({
                "name": o.name, "server": o.server, "state": o.state, "error": o.error,
                "services": o.diff.as_ref().map(|d| &d.services), "project": o.diff.as_ref().map(|d| &d.project),
                "files": files,
            })
        })
        .collect();
    let out = json!({ "base": base, "head": head, "stacks": stacks });
    serde_json::to_string_pretty(&out).unwrap_or_default() + "\n"
}

/// ANSI colors, on a terminal only.
struct Paint(bool);

impl Paint {
    fn with(&self, code: &str, s: &str) -> String {
        if self.0 { format!("\x1b[{code}m{s}\x1b[0m") } else { s.to_string() }
    }

    /// A diff, its lines colored by their mark, indented.
    fn diff(&self, out: &mut String, text: &str) {
        for l in text.lines() {
            let code = match l.as_bytes().first() {
                Some(b'+') if !l.starts_with("+++") => "32",
                Some(b'-') if !l.starts_with("---") => "31",
                Some(b'@') => "36",
                _ => "",
            };
            let line = if code.is_empty() { l.to_string() } else { self.with(code, l) };
            out.push_str(&format!("    {line}\n"));
        }
    }
}

fn human(old: &Snapshot, new: &Snapshot, outcomes: &[Outcome]) -> String {
    let p = Paint(std::io::stdout().is_terminal());
    let mut out = format!("diff {} → {}\n", short(&old.commit), short(&new.commit));
    if outcomes.is_empty() {
        out.push_str("no stack changed\n");
    }
    for o in outcomes {
        out.push('\n');
        let title = p.with("1", &format!("stack {} on {}", o.name, o.server));
        let Some(d) = &o.diff else {
            out.push_str(&format!("{title}: {}\n    {}\n", p.with("31", "error"), o.error.clone().unwrap_or_default()));
            continue;
        };
        let count = |s: Status| d.services.iter().filter(|x| x.status == s).count();
        let summary: Vec<String> =
            [Status::Recreate, Status::Updated, Status::Added, Status::Removed, Status::Unchanged]
                .into_iter()
                .filter(|s| count(*s) > 0)
                .map(|s| format!("{} {}", count(s), s.as_str()))
                .collect();
        let what = if o.state == "changed" { String::new() } else { format!(" ({})", o.state) };
        out.push_str(&format!("{title}{what}: {}\n", summary.join(", ")));
        let width = d.services.iter().map(|s| s.name.len()).max().unwrap_or(0);
        for s in &d.services {
            service(&mut out, &p, s, width);
        }
        if !d.project.is_empty() {
            out.push_str("  networks, volumes and other top-level keys:\n");
            p.diff(&mut out, &d.project);
        }
        for (path, text) in &o.files {
            out.push_str(&format!("  bind-mounted file {path}:\n"));
            p.diff(&mut out, text);
        }
    }
    out
}

fn service(out: &mut String, p: &Paint, s: &ServiceDiff, width: usize) {
    let (mark, code) = match s.status {
        Status::Recreate => ("~", "33"),
        Status::Updated => ("~", "33"),
        Status::Added => ("+", "32"),
        Status::Removed => ("-", "31"),
        Status::Unchanged => ("=", "2"),
    };
    let status = p.with(code, &format!("{mark} {:<width$}  {}", s.name, s.status.as_str()));
    let mut notes = Vec::new();
    if let Some((a, b)) = &s.image {
        let show = |i: &Option<String>| i.clone().unwrap_or_else(|| "(none)".into());
        notes.push(format!("image {} → {}", show(a), show(b)));
    }
    if !s.bind_files.is_empty() {
        notes.push(format!("bind-mounted files changed: {}", s.bind_files.join(", ")));
    }
    out.push_str(&format!("  {status}{}{}\n", if notes.is_empty() { "" } else { "  " }, notes.join("; ")));
    if matches!(s.status, Status::Recreate | Status::Updated) {
        p.diff(out, &s.diff);
    }
}
