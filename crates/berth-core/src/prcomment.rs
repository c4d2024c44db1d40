//! The pull-request comment of a PR plan: a summary table (stack, server, action, services
//! recreated), each stack's diff folded under `<details>`, capped at the forge's comment size.

use crate::diff::{StackOutcome, Status};

/// The hidden marker that finds berth's comment among a request's comments.
pub const MARKER: &str = "<!-- berth-plan -->";

/// Longest comment body a forge takes (GitHub: 65536 characters; Gitea and Forgejo take the
/// same to stay safe; GitLab notes: 1,000,000), counted here in bytes, which is never fewer.
pub fn limit(provider: &str) -> usize {
    match provider {
        "gitlab" => 1_000_000,
        _ => 65_536,
    }
}

/// What one comment says.
pub struct Comment<'a> {
    pub base: &'a str,
    pub head: &'a str,
    pub stacks: &'a [StackOutcome],
    /// The request comes from a fork: secrets were not decrypted.
    pub fork: bool,
    /// The head could not be planned at all (an invalid `berth.toml`): the error.
    pub error: Option<&'a str>,
    /// Where the full plan is, when the comment has to leave parts out.
    pub full: Option<&'a str>,
}

fn short(c: &str) -> &str {
    &c[..c.len().min(12)]
}

/// Text safe inside a table cell or an HTML summary: one line, no `|`, no markup.
fn cell(s: &str) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    one.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('|', "\\|")
}

/// A fenced block whose fence is longer than any backtick run in `text`.
fn fenced(lang: &str, text: &str) -> String {
    let mut run = 0;
    let mut longest = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}{lang}\n{}\n{fence}\n", text.trim_end_matches('\n'))
}

fn action(o: &StackOutcome) -> String {
    let planned = o.action.as_deref().unwrap_or("deploy");
    match o.state {
        "error" => "❌ error".to_string(),
        "removed" => format!("{planned} (removed)"),
        "added" => format!("{planned} (new)"),
        _ => planned.to_string(),
    }
}

fn header(c: &Comment) -> String {
    let mut out = format!("{MARKER}\n### berth plan\n\n");
    out.push_str(&format!("`{}` → `{}`", short(c.base), short(c.head)));
    if c.fork {
        out.push_str(" · from a fork: secrets not decrypted, shown as `(secret reference)`");
    }
    out.push_str("\n\n");
    if let Some(e) = c.error {
        out.push_str(&format!("**The head cannot be planned:**\n\n{}\n", fenced("", e)));
        return out;
    }
    if c.stacks.is_empty() {
        out.push_str("No stack changes.\n");
        return out;
    }
    out.push_str("| stack | server | action | services recreated |\n|---|---|---|---|\n");
    for o in c.stacks {
        let recreated: Vec<String> = o.recreated().iter().map(|s| format!("`{s}`")).collect();
        let recreated = if o.state == "error" { cell(o.error.as_deref().unwrap_or("")) } else { recreated.join(", ") };
        out.push_str(&format!("| {} | {} | {} | {} |\n", cell(&o.name), cell(&o.server), action(o), recreated));
    }
    out
}

/// One stack's `<details>` block.
fn details(o: &StackOutcome) -> String {
    let Some(d) = &o.diff else {
        let e = o.error.as_deref().unwrap_or("");
        return format!(
            "<details><summary><b>{}</b>: error</summary>\n\n{}\n</details>\n",
            cell(&o.name),
            fenced("", e)
        );
    };
    let count = |s: Status| d.services.iter().filter(|x| x.status == s).count();
    let summary: Vec<String> = [Status::Recreate, Status::Updated, Status::Added, Status::Removed, Status::Unchanged]
        .into_iter()
        .filter(|s| count(*s) > 0)
        .map(|s| format!("{} {}", count(s), s.as_str()))
        .collect();
    let mut out = format!(
        "<details><summary><b>{}</b> on {}: {}</summary>\n\n",
        cell(&o.name),
        cell(&o.server),
        if summary.is_empty() { "no service changes".to_string() } else { summary.join(", ") }
    );
    for s in d.services.iter().filter(|s| s.status != Status::Unchanged) {
        let mut notes = Vec::new();
        if let Some((a, b)) = &s.image {
            let show = |i: &Option<String>| i.clone().unwrap_or_else(|| "(none)".into());
            notes.push(format!("image `{}` → `{}`", cell(&show(a)), cell(&show(b))));
        }
        if !s.bind_files.is_empty() {
            notes.push(format!("bind-mounted files changed: {}", cell(&s.bind_files.join(", "))));
        }
        let notes = if notes.is_empty() { String::new() } else { format!(" ({})", notes.join("; ")) };
        out.push_str(&format!("**{}**: {}{notes}\n\n", cell(&s.name), s.status.as_str()));
        if !s.diff.is_empty() {
            out.push_str(&fenced("diff", &s.diff));
            out.push('\n');
        }
    }
    if !d.project.is_empty() {
        out.push_str("**networks, volumes and other top-level keys**\n\n");
        out.push_str(&fenced("diff", &d.project));
        out.push('\n');
    }
    for (path, text) in &o.files {
        out.push_str(&format!("**bind-mounted file `{}`**\n\n", cell(path)));
        out.push_str(&fenced("diff", text));
        out.push('\n');
    }
    out.push_str("</details>\n");
    out
}

/// The comment, at most `limit` bytes: the table always, then as many stacks' details as fit;
/// what is left out is named, with a link to the full plan when there is one.
pub fn render(c: &Comment, limit: usize) -> String {
    let head = header(c);
    let blocks: Vec<String> = if c.error.is_some() { Vec::new() } else { c.stacks.iter().map(details).collect() };
    let full: usize = head.len() + blocks.iter().map(|b| b.len() + 1).sum::<usize>();
    if full <= limit {
        let mut out = head;
        for b in blocks {
            out.push('\n');
            out.push_str(&b);
        }
        return out;
    }
    let note = |left: &[&str]| {
        let where_ = match c.full {
            Some(u) => format!("[the full plan]({u})"),
            None => "`berth diff` of the head".to_string(),
        };
        let mut names = left.iter().take(5).copied().collect::<Vec<_>>().join(", ");
        if left.len() > 5 {
            names.push_str(&format!(" and {} more", left.len() - 5));
        }
        format!("\n_The plan is longer than a comment can be; left out here: {names}. See {where_}._\n")
    };
    let names: Vec<&str> = c.stacks.iter().map(|s| s.name.as_str()).collect();
    let reserve = note(&names).len();
    // The marker line survives any limit: it is how the comment is found again.
    let mut out = truncate(&head, limit.saturating_sub(reserve).max(MARKER.len() + 1));
    let mut left = Vec::new();
    for (b, name) in blocks.iter().zip(&names) {
        if left.is_empty() && out.len() + 1 + b.len() + reserve <= limit {
            out.push('\n');
            out.push_str(b);
        } else {
            left.push(*name);
        }
    }
    if left.is_empty() {
        left.push("the end of the table");
    }
    out.push_str(&note(&left));
    truncate(&out, limit.max(MARKER.len() + 1))
}

/// At most `max` bytes of `s`, cut at a line end (or a character boundary).
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let cut = &s[..end];
    cut.rfind('\n').map(|i| &cut[..=i]).unwrap_or(cut).to_string()
}

#[cfg(test)]
mod tests;
