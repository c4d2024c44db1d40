//! `berth diff`: what a change would do to each stack it touches, service by service, from
//! compose's rendered configuration on both sides (secrets compared by keyed hash, never shown).

use std::io::IsTerminal;

use berth_core::diff::{ServiceDiff, StackOutcome, Status};
use serde_json::{Value, json};

use crate::docker::Compose;
use crate::error::{Error, Result, exit};
use crate::output::short;
use crate::stackdiff::{self, Secrets};
use crate::workspace::{Snapshot, Workspace};

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
    for name in only {
        if new.project.stack(name).is_none() && old.project.stack(name).is_none() {
            return Err(Error::Unknown(new.project.unknown_stack(name)));
        }
    }
    let history = || ws.history(&ws.read_state()?);
    // Compose is needed only when a stack was touched.
    let outcomes = if stackdiff::touched(ws, &old, &new, only)?.is_empty() {
        Vec::new()
    } else {
        stackdiff::compute(ws, &old, &new, only, history, &Compose::detect()?, Secrets::Decrypt)?
    };
    let text = if as_json { json_text(&old.commit, &new.commit, &outcomes) } else { human(&old, &new, &outcomes) };
    print!("{}", crate::redact::apply(&text));
    Ok(if outcomes.iter().any(|o| o.error.is_some()) { exit::FAILED } else { exit::OK })
}

fn json_text(base: &str, head: &str, outcomes: &[StackOutcome]) -> String {
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

fn human(old: &Snapshot, new: &Snapshot, outcomes: &[StackOutcome]) -> String {
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
