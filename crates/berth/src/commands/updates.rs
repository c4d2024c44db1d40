//! `berth updates`: for every image a rule governs, the current version, the newest the rule
//! allows and why other tags were skipped; `--apply` commits `mode = "commit"` updates and opens
//! or edits the pull requests of `mode = "pull_request"` ones.

use berth_core::images::select::Skip;

use crate::error::{Result, exit};
use crate::updates::{self, Row, Skipped, pulls, writeback};
use crate::workspace::Workspace;

pub fn updates(ws: &Workspace, rev: &str, only: &[String], json: bool, apply: bool) -> Result<i32> {
    let snap = ws.snapshot(rev)?;
    let checked = updates::check(ws, &snap, only, apply)?;
    let rows = checked.rows;
    let failed = rows.iter().any(|r| r.error.is_some() && r.rule.is_some());
    let (mut committed, mut requests) = (None, Vec::new());
    if apply {
        let who = writeback::committer(&snap.project);
        committed = writeback::commit(ws, &snap, &who, &rows)?;
        // Requests branch off the commit checked (plus what was just committed on it).
        let base = match &committed {
            Some(c) => ws.snapshot(c)?,
            None => snap.clone(),
        };
        requests = pulls::open(&ws.repo, &base, &ws.repo.current_branch()?, &who, &rows)?;
    }
    if json {
        let out = serde_json::json!({
            "commit": snap.commit, "images": rows, "committed": committed, "pull_requests": requests,
            "registry": { "requests": checked.requests, "cached": checked.cached },
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        print(&rows);
        if let Some(c) = &committed {
            println!("committed {}", &c[..c.len().min(12)]);
        }
        for r in &requests {
            let n = r.number.map(|n| format!(" #{n}")).unwrap_or_default();
            println!("pull request{n} for {} ({}): {}", r.stack, r.branch, r.how);
        }
    }
    Ok(if failed { exit::FAILED } else { exit::OK })
}

fn print(rows: &[Row]) {
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let newest = match (&r.rule, &r.update, &r.error) {
                (None, _, _) => "-".to_string(),
                (_, _, Some(e)) => format!("error: {e}"),
                (_, Some(u), _) => u.clone(),
                (_, None, _) => "up to date".to_string(),
            };
            vec![
                r.stack.clone(),
                r.service.clone(),
                r.image.clone(),
                r.current.clone(),
                newest,
                r.rule.clone().unwrap_or_else(|| "no rule".into()),
                skipped_summary(&r.skipped),
            ]
        })
        .collect();
    crate::output::table(&["STACK", "SERVICE", "IMAGE", "CURRENT", "NEWEST ALLOWED", "RULE", "SKIPPED"], &table);
}

/// Newer tags left out each with its reason; older and unreadable ones counted.
fn skipped_summary(skipped: &[Skipped]) -> String {
    let mut parts = Vec::new();
    let (mut older, mut other) = (0, 0);
    for s in skipped {
        match s.why {
            Skip::NotNewer => older += 1,
            Skip::NotAVersion => other += 1,
            _ => parts.push(format!("{} ({})", s.tag, s.reason)),
        }
    }
    if older > 0 {
        parts.push(format!("{older} not newer"));
    }
    if other > 0 {
        parts.push(format!("{other} not versions"));
    }
    parts.join(", ")
}
