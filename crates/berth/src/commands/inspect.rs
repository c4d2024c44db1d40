//! Read-only verbs: validate, changed, plan, status, history, logs.

use std::collections::BTreeMap;

use berth_core::changes::{self, Index};
use berth_core::config;
use berth_core::plan::{Action, Reason, Step};
use serde_json::json;

use crate::error::{Error, Result, exit};
use crate::git;
use crate::output::{age, short, table};
use crate::workspace::Workspace;

pub fn validate(ws: &Workspace, rev: Option<&str>) -> Result<i32> {
    let project = match rev {
        Some(r) => ws.snapshot(r)?.project.clone(),
        None => ws.snapshot_worktree()?,
    };
    ws.require_stacks(&project)?;
    let mut warnings = 0;
    for s in project.stacks.iter().filter(|s| s.mode == berth_core::Mode::Swarm) {
        for f in &s.compose_files {
            let text = match rev {
                Some(r) => ws.repo.read(&ws.repo.resolve(r)?, f)?.unwrap_or_default(),
                None => std::fs::read_to_string(ws.repo.root.join(f)).unwrap_or_default(),
            };
            for w in berth_core::compat::swarm_warnings(f, &text) {
                eprintln!("warning: stack `{}` (mode = \"swarm\"): {w}", s.name);
                warnings += 1;
            }
        }
    }
    if warnings > 0 {
        eprintln!("hint: a stack that needs these options can deploy with mode = \"compose\" instead");
    }
    // Stacks sharing a folder: the same compose project twice is an error, undeclared files a warning.
    let mut same = Vec::new();
    for found in berth_core::ownership::shared(&project) {
        match found {
            berth_core::ownership::Shared::SameProject { .. } => {
                same.push(berth_core::ConfigError::new(found.to_string()))
            }
            berth_core::ownership::Shared::Undeclared { .. } => eprintln!("warning: {found}"),
        }
    }
    if !same.is_empty() {
        return Err(Error::Config(same));
    }
    let manual = project.stacks.iter().filter(|s| s.manual).count();
    let servers: std::collections::BTreeSet<&str> = project.stacks.iter().map(|s| s.server.as_str()).collect();
    println!(
        "ok: {} ({} stack{}, {} manual, on {} server{}{})",
        if project.configured { config::FILE_NAME } else { "no berth.toml, defaults" },
        project.stacks.len(),
        plural(project.stacks.len()),
        manual,
        servers.len(),
        plural(servers.len()),
        if servers.is_empty() {
            String::new()
        } else {
            format!(": {}", servers.into_iter().collect::<Vec<_>>().join(", "))
        }
    );
    Ok(exit::OK)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

pub fn changed(ws: &Workspace, from: &str, to: &str, as_json: bool, names: bool) -> Result<i32> {
    let snap = ws.snapshot(to)?;
    ws.require_stacks(&snap.project)?;
    let everything = if git::is_null_rev(from) {
        Some("`from` is the null commit (a new branch)".to_string())
    } else {
        match ws.repo.resolve(from) {
            Err(_) => Some(format!("`from` ({from}) is not in the repository (force push or not fetched)")),
            Ok(f) if !ws.repo.is_ancestor(&f, &snap.commit)? => {
                Some(format!("`from` ({}) is not an ancestor of `to` (force push)", short(&f)))
            }
            Ok(_) => None,
        }
    };
    let mut touched: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut removed = Vec::new();
    let index = Index::new(&snap.project, &snap.sources, &std::collections::HashMap::new());
    if everything.is_some() {
        for s in &snap.project.stacks {
            touched.insert(s.name.clone(), Vec::new());
        }
    } else {
        let changes = ws.repo.diff(from, &snap.commit)?;
        touched = index.touched(&changes);
        // The old definitions tell which stacks berth.toml redefined and which are gone.
        if let Ok(old) = ws.snapshot(from) {
            if changes.iter().any(|c| c.path == config::FILE_NAME || c.old_path.as_deref() == Some(config::FILE_NAME)) {
                for name in changes::redefined(&old.project, &snap.project) {
                    touched.entry(name).or_default().push(config::FILE_NAME.to_string());
                }
            }
            removed = changes::removed(&old.project, &snap.project);
        }
    }
    if as_json {
        let stacks: Vec<_> = touched
            .iter()
            .map(|(name, paths)| {
                let i = snap.project.stacks.iter().position(|s| &s.name == name);
                let server = i.map(|i| snap.project.stacks[i].server.as_str()).unwrap_or("");
                // Why each path belongs to the stack, as the ownership rules decided it.
                let why: BTreeMap<&str, Vec<String>> = paths
                    .iter()
                    .map(|p| {
                        let reasons = index.explain(p).into_iter().filter(|(s, _)| Some(*s) == i);
                        let reasons = reasons.map(|(_, w)| w.to_string()).collect();
                        (p.as_str(), if p == config::FILE_NAME { vec!["stack definition".into()] } else { reasons })
                    })
                    .collect();
                let whole_folder = i.and_then(|i| index.owned(i).fallback.clone());
                json!({ "name": name, "server": server, "paths": paths, "why": why, "whole_folder": whole_folder })
            })
            .collect();
        let out = json!({
            "from": from, "to": snap.commit, "all": everything.is_some(), "reason": everything,
            "stacks": stacks, "removed": removed,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(exit::OK);
    }
    if let Some(why) = &everything {
        eprintln!("every stack counts as changed: {why}");
    }
    if names {
        for name in touched.keys() {
            println!("{name}");
        }
        return Ok(exit::OK);
    }
    for (name, paths) in &touched {
        if paths.is_empty() {
            println!("{name}");
        }
        for p in paths {
            println!("{name}\t{p}");
        }
    }
    for name in &removed {
        println!("{name}\t(removed)");
    }
    Ok(exit::OK)
}

/// One-line explanation of a plan step.
pub fn explain(step: &Step) -> String {
    let mut s = step.reason.as_str().to_string();
    match step.reason {
        Reason::PathsChanged => {
            s.push_str(": ");
            s.push_str(&step.paths[0]);
            if step.paths.len() > 1 {
                s.push_str(&format!(" (+{} more)", step.paths.len() - 1));
            }
            if let Some(d) = &step.detail {
                s.push_str(&format!("; {d}"));
            }
        }
        _ => {
            if let Some(d) = &step.detail {
                s.push_str(&format!(": {d}"));
            }
        }
    }
    s
}

pub fn plan(ws: &Workspace, rev: &str, as_json: bool, with_diff: bool) -> Result<i32> {
    let snap = ws.snapshot(rev)?;
    ws.require_stacks(&snap.project)?;
    let state = ws.read_state()?;
    let (plan, _) = ws.plan(&snap, &ws.history(&state)?, None, &BTreeMap::new())?;
    let now = crate::windows::now();
    let freezes = state.freezes(now)?;
    // Deploys a closed window or a freeze would hold back, with why and until when.
    let held: BTreeMap<&str, String> = plan
        .steps
        .iter()
        .filter(|s| s.action == Action::Deploy)
        .filter_map(|s| {
            let v = crate::windows::verdict(&snap.project, &snap.windows, &freezes, &s.stack, "apply", now);
            (!v.is_open()).then(|| (s.stack.as_str(), crate::windows::explain(&v)))
        })
        .collect();
    let diffs = if with_diff {
        let deploys: Vec<String> =
            plan.steps.iter().filter(|s| s.action == Action::Deploy).map(|s| s.stack.clone()).collect();
        super::diff::plan_diffs(ws, &snap, &deploys, &state)?
    } else {
        Vec::new()
    };
    if as_json {
        let mut v = serde_json::to_value(&plan).unwrap_or_default();
        v["held"] = json!(held);
        v["freezes"] = json!(freezes);
        if with_diff {
            v["diffs"] = super::diff::plan_json(&diffs);
        }
        let text = serde_json::to_string_pretty(&v).unwrap_or_default();
        println!("{}", crate::redact::apply(&text));
        return Ok(exit::OK);
    }
    println!("plan for {} ({} stacks)", short(&plan.commit), plan.steps.len());
    let rows: Vec<Vec<String>> = plan
        .steps
        .iter()
        .map(|s| {
            let why = match held.get(s.stack.as_str()) {
                Some(w) => format!("{}; held: {w}", explain(s)),
                None => explain(s),
            };
            vec![s.stack.clone(), s.server.clone(), s.action.as_str().to_string(), why]
        })
        .collect();
    table(&["STACK", "SERVER", "ACTION", "REASON"], &rows);
    print_freezes(&freezes);
    let n = |a: Action| plan.steps.iter().filter(|s| s.action == a).count();
    println!(
        "{} to deploy, {} unchanged, {} blocked, {} manual",
        n(Action::Deploy),
        n(Action::Skip),
        n(Action::Blocked),
        n(Action::Manual)
    );
    print!("{}", crate::redact::apply(&super::diff::plan_text(&diffs)));
    Ok(exit::OK)
}

pub fn status(ws: &Workspace, as_json: bool) -> Result<i32> {
    let state = ws.read_state()?;
    let latest = state.latest()?;
    // Stacks of the current commit that never deployed are listed too.
    let snap = ws.snapshot("HEAD").ok();
    let project = snap.as_ref().map(|s| &s.project);
    let mut rows: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    if let Some(p) = &project {
        for s in &p.stacks {
            let status = if s.manual { "manual" } else { "never deployed" };
            rows.insert(s.name.clone(), json!({ "stack": s.name, "server": s.server, "status": status }));
        }
    }
    for r in &latest {
        // A `running` deploy nobody holds the lock of was interrupted: say so without settling it here.
        let orphan = ws.abandoned(&r.stack, r.status)?;
        let (status, reason) = if orphan {
            (json!("interrupted"), json!("berth stopped during this deploy; the next apply redeploys the stack"))
        } else {
            (json!(r.status), json!(r.reason))
        };
        rows.insert(
            r.stack.clone(),
            json!({
                "stack": r.stack, "server": r.server, "status": status, "commit": r.commit, "deploy_id": r.id,
                "started_at": r.started_at, "finished_at": r.finished_at, "reason": reason,
                "in_repo": project.as_ref().map(|p| p.stack(&r.stack).is_some()),
            }),
        );
    }
    for (stack, by, at, reason) in state.paused()? {
        if let Some(row) = rows.get_mut(&stack) {
            let was = row["status"].as_str().unwrap_or("").to_string();
            row["status"] = json!(format!("paused ({was})"));
            row["paused"] = json!({ "by": by, "at": at, "reason": reason });
        }
    }
    let freezes = state.freezes(crate::windows::now())?;
    if let Some(p) = &project {
        for (name, row) in rows.iter_mut() {
            let Some(s) = p.stack(name) else { continue };
            let envs: Vec<&str> = p.environments_of(s).iter().map(|e| e.name.as_str()).collect();
            let subject = berth_core::window::Subject { stack: &s.name, server: &s.server, environments: &envs };
            if let Some(f) = freezes.iter().find(|f| f.applies(&subject)) {
                row["frozen"] = json!(f);
            }
        }
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows.values().collect::<Vec<_>>()).unwrap_or_default());
        return Ok(exit::OK);
    }
    let table_rows: Vec<Vec<String>> = rows
        .values()
        .map(|v| {
            let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
            vec![
                s("stack"),
                s("server"),
                s("status"),
                short(&s("commit")),
                v.get("started_at").and_then(|t| t.as_i64()).map(age).unwrap_or_default(),
                s("reason"),
            ]
        })
        .collect();
    table(&["STACK", "SERVER", "STATUS", "COMMIT", "LAST DEPLOY", "REASON"], &table_rows);
    print_freezes(&freezes);
    Ok(exit::OK)
}

/// The freezes in force, one line each.
fn print_freezes(freezes: &[berth_core::window::Freeze]) {
    for f in freezes {
        println!("frozen: {} until {} by {}: {}", f.scope, crate::windows::show(f.until), f.by, f.reason);
    }
}

pub fn history(ws: &Workspace, stack: &str, limit: usize, as_json: bool) -> Result<i32> {
    let state = ws.read_state()?;
    let records = state.history(stack, limit)?;
    if records.is_empty()
        && let Ok(snap) = ws.snapshot("HEAD")
        && snap.project.stack(stack).is_none()
    {
        return Err(Error::Unknown(snap.project.unknown_stack(stack)));
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&records).unwrap_or_default());
        return Ok(exit::OK);
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.status.to_string(),
                short(&r.commit),
                age(r.started_at),
                r.finished_at.map(|f| format!("{}s", f - r.started_at)).unwrap_or_else(|| "-".into()),
                r.trigger.clone(),
                r.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(&["ID", "STATUS", "COMMIT", "STARTED", "TOOK", "TRIGGER", "REASON"], &rows);
    Ok(exit::OK)
}

pub fn logs(ws: &Workspace, id: i64) -> Result<i32> {
    let state = ws.read_state()?;
    let r = state.get(id)?;
    println!("# deploy {} of {} at {}: {}", r.id, r.stack, short(&r.commit), r.status);
    if let Some(why) = &r.reason {
        println!("# {why}");
    }
    if let Some((by, reason, closed, _)) = state.override_of(id)? {
        println!("# forced through a closed window by {by}: {reason} ({closed})");
    }
    print!("{}", state.log(id)?);
    let verify = state.verify_results(id)?;
    if !verify.is_empty() && verify != "{}" {
        let pretty = serde_json::from_str::<serde_json::Value>(&verify)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or(verify);
        println!("# verification\n{pretty}");
    }
    Ok(if r.status.is_failure() { exit::FAILED } else { exit::OK })
}

/// `berth history --env ENV`: the environment's releases with their deploy outcomes.
pub fn releases(ws: &Workspace, env: &str, as_json: bool) -> Result<i32> {
    let state = ws.read_state()?;
    let releases = state.releases(Some(env))?;
    let deploys = state.list(None, 10_000)?;
    let outcome = |commit: &str| {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for d in deploys.iter().filter(|d| d.commit == commit) {
            *counts.entry(d.status.as_str()).or_default() += 1;
        }
        counts.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", ")
    };
    if as_json {
        let v: Vec<_> = releases.iter().map(|r| json!({ "release": r, "deploys": outcome(&r.commit) })).collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(exit::OK);
    }
    let rows: Vec<Vec<String>> = releases
        .iter()
        .map(|r| {
            vec![
                r.tag.clone(),
                short(&r.commit),
                r.kind.clone(),
                r.from_tag.clone().unwrap_or_default(),
                r.by.clone(),
                age(r.at),
                if r.pushed { "yes".into() } else { "no".into() },
                outcome(&r.commit),
            ]
        })
        .collect();
    table(&["VERSION", "COMMIT", "KIND", "FROM", "BY", "WHEN", "PUSHED", "DEPLOYS"], &rows);
    Ok(exit::OK)
}
