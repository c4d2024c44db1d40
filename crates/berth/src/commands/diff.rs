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
    let stacks: Vec<Value> = outcomes.iter().map(stack_json).collect();
    let out = json!({ "base": base, "head": head, "stacks": stacks });
    serde_json::to_string_pretty(&out).unwrap_or_default() + "\n"
}

/// One stack's outcome as `berth diff --json` and `berth plan --diff --json` give it.
pub fn stack_json(o: &StackOutcome) -> Value {
    let files: Vec<Value> = o.files.iter().map(|(p, d)| json!({ "path": p, "diff": d })).collect();
    json!({
        "name": o.name, "server": o.server, "state": o.state, "error": o.error,
        "summary": o.summary(),
        "services": o.diff.as_ref().map(|d| &d.services), "project": o.diff.as_ref().map(|d| &d.project),
        "files": files,
    })
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
    let mut out = format!("diff {} → {}\n", short(&old.commit), short(&new.commit));
    if outcomes.is_empty() {
        out.push_str("no stack changed\n");
    }
    for o in outcomes {
        out.push('\n');
        out.push_str(&stack_text(o, ""));
    }
    out
}

/// One stack's outcome, service by service (colored on a terminal); `note` follows its title.
pub fn stack_text(o: &StackOutcome, note: &str) -> String {
    let p = Paint(std::io::stdout().is_terminal());
    let mut out = String::new();
    let title = p.with("1", &format!("stack {} on {}{note}", o.name, o.server));
    let Some(d) = &o.diff else {
        out.push_str(&format!("{title}: {}\n    {}\n", p.with("31", "error"), o.error.clone().unwrap_or_default()));
        return out;
    };
    let count = |s: Status| d.services.iter().filter(|x| x.status == s).count();
    let mut summary: Vec<String> =
        [Status::Recreate, Status::Updated, Status::Added, Status::Removed, Status::Unchanged]
            .into_iter()
            .filter(|s| count(*s) > 0)
            .map(|s| format!("{} {}", count(s), s.as_str()))
            .collect();
    if summary.is_empty() {
        summary.push("no service changed".into());
    }
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
    let notes = s.notes();
    out.push_str(&format!("  {status}{}{}\n", if notes.is_empty() { "" } else { "  " }, notes.join("; ")));
    if matches!(s.status, Status::Recreate | Status::Updated) {
        p.diff(out, &s.diff);
    }
}

/// One stack `berth plan --diff` would deploy: the commit of its last successful deploy (none
/// if it never deployed) and its diff from there to the planned commit.
pub struct PlanDiff {
    pub stack: String,
    pub since: Option<String>,
    pub outcome: Option<StackOutcome>,
}

/// The diff of each stack in `stacks` between its last successful deploy and `new`; stacks last
/// deployed from one commit are rendered together.
pub fn plan_diffs(
    ws: &Workspace,
    new: &Snapshot,
    stacks: &[String],
    state: &crate::state::State,
) -> Result<Vec<PlanDiff>> {
    let history = ws.history(state)?;
    let mut by_commit: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut out = Vec::new();
    for name in stacks {
        match state.last_success(name, None)? {
            Some(r) => by_commit.entry(r.commit).or_default().push(name.clone()),
            None => out.push(PlanDiff { stack: name.clone(), since: None, outcome: None }),
        }
    }
    let compose = if by_commit.keys().any(|c| *c != new.commit) { Some(Compose::detect()?) } else { None };
    for (commit, names) in by_commit {
        let rendered = match (&compose, commit != new.commit) {
            (Some(compose), true) => ws.snapshot(&commit).and_then(|old| {
                stackdiff::compute(ws, &old, new, &names, || Ok(history.clone()), compose, Secrets::Decrypt)
            }),
            _ => Ok(Vec::new()),
        };
        for name in names {
            let outcome = match &rendered {
                Ok(all) => all.iter().find(|o| o.name == name).cloned().unwrap_or_else(|| unchanged(new, &name)),
                Err(e) => {
                    StackOutcome { error: Some(e.to_string()), diff: None, state: "error", ..unchanged(new, &name) }
                }
            };
            out.push(PlanDiff { stack: name, since: Some(commit.clone()), outcome: Some(outcome) });
        }
    }
    let order: std::collections::HashMap<&String, usize> = stacks.iter().enumerate().map(|(i, s)| (s, i)).collect();
    out.sort_by_key(|d| order.get(&d.stack).copied().unwrap_or(usize::MAX));
    Ok(out)
}

/// A stack no changed path touches: nothing to recreate.
fn unchanged(snap: &Snapshot, name: &str) -> StackOutcome {
    StackOutcome {
        name: name.to_string(),
        server: snap.project.stack(name).map(|s| s.server.clone()).unwrap_or_default(),
        state: "unchanged",
        action: Some("deploy".into()),
        diff: Some(berth_core::diff::StackDiff { services: Vec::new(), project: String::new() }),
        files: Vec::new(),
        error: None,
    }
}

/// `berth plan --diff`'s text after the plan.
pub fn plan_text(diffs: &[PlanDiff]) -> String {
    if diffs.is_empty() {
        return String::new();
    }
    let mut out = "\ndiff of each stack to deploy, since its last successful deploy:\n".to_string();
    for d in diffs {
        out.push('\n');
        match (&d.since, &d.outcome) {
            (Some(since), Some(o)) => out.push_str(&stack_text(o, &format!(" since {}", short(since)))),
            _ => out
                .push_str(&format!("stack {}: first deploy, no earlier successful deploy to compare with\n", d.stack)),
        }
    }
    out
}

/// `berth plan --diff --json`'s `diffs`.
pub fn plan_json(diffs: &[PlanDiff]) -> Value {
    let rows: Vec<Value> = diffs
        .iter()
        .map(|d| {
            let mut v = d.outcome.as_ref().map(stack_json).unwrap_or_else(|| json!({ "name": d.stack }));
            v["since"] = json!(d.since);
            v
        })
        .collect();
    Value::Array(rows)
}
