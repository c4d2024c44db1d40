//! `berth updates`: for every image a rule governs, the current version, the newest the rule
//! allows and why other tags were skipped; `--apply` writes `mode = "commit"` updates and commits.

use std::collections::BTreeMap;

use berth_core::images::reference::ImageRef;
use berth_core::images::select::{self, Skip};
use berth_core::images::source::{self, ServiceImage, Spot};
use berth_core::images::{Policy, UpdateMode, Versioning, policy_for};
use serde::Serialize;

use crate::error::{Error, Result, exit};
use crate::registry::{self, Client};
use crate::workspace::Workspace;

#[derive(Debug, Serialize)]
struct Skipped {
    tag: String,
    #[serde(flatten)]
    why: Skip,
    reason: String,
}

/// One service's image.
#[derive(Debug, Serialize)]
struct Row {
    stack: String,
    service: String,
    image: String,
    current: String,
    /// The rule, summarised (`semver ^1, pin digest`); absent: no rule governs the image.
    rule: Option<String>,
    mode: Option<UpdateMode>,
    /// The version to move to (`tag` or `tag@digest`); absent: up to date.
    update: Option<String>,
    skipped: Vec<Skipped>,
    /// Where the version is written (`file` and `variable`), or why it cannot be written.
    file: Option<String>,
    variable: Option<String>,
    error: Option<String>,
    #[serde(skip)]
    spot: Option<Spot>,
}

pub fn updates(ws: &Workspace, rev: &str, only: &[String], json: bool, apply: bool) -> Result<i32> {
    let snap = ws.snapshot(rev)?;
    let project = &snap.project;
    for name in only {
        if project.stack(name).is_none() {
            return Err(Error::Usage(format!("no stack `{name}` at {rev}")));
        }
    }
    let cache = ws.state_dir.join("registry-cache.json");
    let _ = std::fs::create_dir_all(&ws.state_dir);
    let mut clients: BTreeMap<Option<String>, Client> = BTreeMap::new();
    let mut rows = Vec::new();
    for stack in project.stacks.iter().filter(|s| only.is_empty() || only.contains(&s.name)) {
        let auth = project.server(&stack.server).and_then(|s| s.registry_auth.clone());
        let client = clients.entry(auth.clone()).or_insert_with(|| {
            let auths = registry::load_auths(auth.as_deref().map(std::path::Path::new));
            Client::new(auths, Some(cache.clone()))
        });
        for si in source::images(stack, &snap.sources) {
            let policy = ImageRef::parse(&si.image)
                .ok()
                .and_then(|r| policy_for(&stack.images, &project.images, &si.service, &r.name));
            rows.push(crate::bridge::block_on(check(client, &stack.name, &si, policy)));
        }
    }
    let (mut requests, mut cached) = (0, 0);
    for c in clients.values() {
        c.save();
        let s = *c.stats.lock().unwrap_or_else(|p| p.into_inner());
        requests += s.0;
        cached += s.1;
    }
    let failed = rows.iter().any(|r| r.error.is_some() && r.rule.is_some());
    let mut committed = None;
    if apply {
        committed = write_back(ws, &snap.sources, &rows)?;
    }
    if json {
        // HTTP requests sent to registries, and how many were answered from the cache (`304`).
        let registry = serde_json::json!({ "requests": requests, "cached": cached });
        let out =
            serde_json::json!({ "commit": snap.commit, "images": rows, "committed": committed, "registry": registry });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        print(&rows);
        if let Some(c) = &committed {
            println!("committed {}", &c[..c.len().min(12)]);
        }
    }
    Ok(if failed { exit::FAILED } else { exit::OK })
}

async fn check(client: &Client, stack: &str, si: &ServiceImage, policy: Option<&Policy>) -> Row {
    let mut row = Row {
        stack: stack.to_string(),
        service: si.service.clone(),
        image: si.image.clone(),
        current: String::new(),
        rule: policy.map(Policy::describe),
        mode: policy.map(|p| p.mode),
        update: None,
        skipped: Vec::new(),
        file: si.spot.as_ref().ok().map(|s| s.file.clone()),
        variable: si.spot.as_ref().ok().and_then(|s| s.variable.clone()),
        error: None,
        spot: si.spot.clone().ok(),
    };
    let r = match ImageRef::parse(&si.image) {
        Ok(r) => r,
        Err(e) => {
            row.error = Some(e);
            return row;
        }
    };
    row.image = r.name.clone();
    row.current = r.version();
    let Some(policy) = policy else { return row };
    if let Err(e) = decide(client, &r, policy, &mut row).await {
        row.error = Some(e);
    }
    row
}

async fn decide(client: &Client, r: &ImageRef, policy: &Policy, row: &mut Row) -> std::result::Result<(), String> {
    let current = r.tag_or_latest();
    let ranking = match policy.versioning {
        Versioning::Tag => select::Ranking::default(),
        _ => {
            let tags = client.tags(r).await.map_err(|e| e.to_string())?;
            select::rank(policy, current, &tags)?
        }
    };
    let mut skipped: Vec<(String, Skip)> = ranking.skipped;
    let mut chosen = None;
    let now = jiff::Timestamp::now();
    for tag in ranking.candidates {
        if policy.min_age.is_some() {
            match client.created(r, &tag).await.map_err(|e| e.to_string())? {
                Some(created) => {
                    if let Err(s) = select::old_enough(policy, created, now) {
                        skipped.push((tag, s));
                        continue;
                    }
                }
                None => {
                    skipped.push((
                        tag,
                        Skip::TooYoung { age_secs: 0, min_age_secs: policy.min_age.map(|d| d.as_secs()).unwrap_or(0) },
                    ));
                    continue;
                }
            }
        }
        chosen = Some(tag);
        break;
    }
    row.skipped = skipped.into_iter().map(|(tag, why)| Skipped { tag, reason: why.to_string(), why }).collect();
    let target = chosen.clone().unwrap_or_else(|| current.to_string());
    row.update = if policy.pin_digest {
        let digest = client.digest(r, &target).await.map_err(|e| e.to_string())?;
        let unchanged = chosen.is_none() && r.digest.as_deref() == Some(digest.as_str());
        (!unchanged).then(|| format!("{target}@{digest}"))
    } else {
        chosen
    };
    Ok(())
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

/// Edit every `mode = "commit"` update into the work tree and commit them in one commit. A file
/// that differs from the commit checked (uncommitted edits) is refused, never overwritten.
fn write_back(ws: &Workspace, sources: &berth_core::ownership::Sources, rows: &[Row]) -> Result<Option<String>> {
    let mut by_file: BTreeMap<String, Vec<(&Row, &Spot, &str)>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.mode == Some(UpdateMode::Commit) && r.error.is_none()) {
        let (Some(update), Some(spot)) = (&r.update, &r.spot) else { continue };
        by_file.entry(spot.file.clone()).or_default().push((r, spot, update));
    }
    if by_file.is_empty() {
        return Ok(None);
    }
    let mut lines = Vec::new();
    let mut files = Vec::new();
    for (file, mut edits) in by_file {
        let path = ws.repo.root.join(&file);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Io(format!("{file}: {e}")))?;
        if Some(text.as_str()) != sources.get(&file) {
            return Err(Error::Usage(format!("{file} has uncommitted changes: commit or stash them before --apply")));
        }
        // From the end: earlier ranges keep their offsets. One range written for several services once.
        edits.sort_by_key(|(_, s, _)| std::cmp::Reverse(s.start));
        edits.dedup_by_key(|(_, s, _)| s.start);
        let mut out = text.clone();
        for (row, spot, update) in &edits {
            out = source::edit(&out, spot.start, spot.end, &spot.replacement(update))
                .ok_or_else(|| Error::Io(format!("{file}: the version's place moved")))?;
            lines.push(format!("- {} ({}/{}): {} -> {update}", row.image, row.stack, row.service, row.current));
        }
        std::fs::write(&path, out).map_err(|e| Error::Io(format!("{file}: {e}")))?;
        files.push(file);
    }
    lines.sort();
    let subject =
        if lines.len() == 1 { "Update 1 image".to_string() } else { format!("Update {} images", lines.len()) };
    let message = format!("{subject}\n\n{}\n", lines.join("\n"));
    let commit = ws.repo.commit_paths(&files, &message)?;
    if ws.repo.remote_url().is_some() {
        let branch = ws.repo.current_branch()?;
        if let Err(e) = ws.repo.push_branch(&branch) {
            eprintln!("warning: committed but not pushed: {e}");
        }
    }
    Ok(Some(commit))
}
