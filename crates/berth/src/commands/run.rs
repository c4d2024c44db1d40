//! Verbs that change the hosts: apply (reconcile), deploy (one stack, explicitly),
//! bootstrap (the manual stacks) and rollback.

use std::collections::BTreeMap;

use berth_core::plan::Action;
use berth_core::record::DeployStatus;
use berth_core::vars;

use crate::dispatch::{self, Context, Event};
use crate::error::{Error, Result, exit};
use crate::output::short;
use crate::state::WithState;
use crate::workspace::Workspace;

/// `force`: the reason given with `--force`, to deploy through closed windows and freezes.
pub fn apply(ws: &Workspace, rev: &str, wait: bool, force: Option<&str>) -> Result<i32> {
    execute(ws, rev, None, &BTreeMap::new(), "apply", wait, force)
}

pub fn deploy(ws: &Workspace, stack: &str, rev: &str, set: &[String], wait: bool, force: Option<&str>) -> Result<i32> {
    // Variables pinned by earlier deploys stay unless set again (secret ones cannot be replayed).
    let mut overrides: BTreeMap<String, String> =
        ws.state()?.summaries()?.remove(stack).map(|h| vars::replayable(&h.overrides)).unwrap_or_default();
    for s in set {
        let (k, v) = vars::parse_set(s).map_err(|e| Error::Usage(format!("--set {e}")))?;
        overrides.insert(k, v);
    }
    execute(ws, rev, Some(stack), &overrides, "deploy", wait, force)
}

/// `berth bootstrap`: bring up the `manual = true` stacks (secrets service, reverse
/// proxy, berth itself) in dependency order, skipping those already running this config.
pub fn bootstrap(ws: &Workspace, rev: &str) -> Result<i32> {
    let snap = ws.snapshot(rev)?;
    let manual: Vec<String> = snap.project.stacks.iter().filter(|s| s.manual).map(|s| s.name.clone()).collect();
    if manual.is_empty() {
        println!("no stack is marked manual = true: nothing to bootstrap");
        return Ok(exit::OK);
    }
    println!("bootstrapping {}", manual.join(", "));
    run_plan(ws, snap, Some(&manual), &BTreeMap::new(), "bootstrap", true, true, None)
}

fn execute(
    ws: &Workspace,
    rev: &str,
    only: Option<&str>,
    overrides: &BTreeMap<String, String>,
    trigger: &str,
    wait: bool,
    force: Option<&str>,
) -> Result<i32> {
    let snap = ws.snapshot(rev)?;
    if let Some(name) = only
        && snap.project.stack(name).is_none()
    {
        return Err(Error::Unknown(snap.project.unknown_stack(name)));
    }
    let requested: Option<Vec<String>> = only.map(|s| vec![s.to_string()]);
    run_plan(ws, snap, requested.as_deref(), overrides, trigger, false, wait, force)
}

/// Plan (a reconcile, or the `requested` stacks) and run the deploys.
/// `skip_unchanged` drops requested stacks already running this exact config.
/// `wait`: wait for a stack another deploy holds (else refuse it).
/// `force`: deploy through closed windows and freezes, recording this reason.
#[allow(clippy::too_many_arguments)]
fn run_plan(
    ws: &Workspace,
    snap: std::sync::Arc<crate::workspace::Snapshot>,
    requested: Option<&[String]>,
    overrides: &BTreeMap<String, String>,
    trigger: &str,
    skip_unchanged: bool,
    wait: bool,
    force: Option<&str>,
) -> Result<i32> {
    let state = ws.state()?;
    crate::signing::gate(ws, &state, &snap, requested.unwrap_or(&[]), trigger)?;
    super::settle_interrupted(ws, &state)?;
    let only = requested.filter(|r| r.len() == 1 && !skip_unchanged).map(|r| r[0].as_str());
    let (mut plan, vars) = ws.plan(&snap, &ws.history(&state)?, requested, overrides)?;
    if skip_unchanged {
        for s in plan.steps.iter_mut() {
            if s.action == Action::Deploy && s.previous_hash.as_deref() == Some(s.config_hash.as_str()) {
                s.action = Action::Skip;
                s.reason = berth_core::plan::Reason::Unchanged;
                println!("- {:<20} already running this config", s.stack);
            }
        }
    }
    let (forced, held) = windows_gate(&state, &snap, &mut plan, &vars, trigger, force)?;
    let count = |a: Action| plan.steps.iter().filter(|s| s.action == a).count();
    if only.is_none() {
        println!(
            "plan for {}: {} to deploy, {} unchanged, {} blocked, {} manual",
            short(&plan.commit),
            count(Action::Deploy),
            count(Action::Skip),
            count(Action::Blocked),
            count(Action::Manual)
        );
        for s in plan.steps.iter().filter(|s| s.action == Action::Blocked && !held.contains(&s.stack)) {
            println!("- {:<20} blocked: {}", s.stack, super::inspect::explain(s));
        }
    }
    let (removed, not_removed) = prune(ws, &state, &plan)?;
    if count(Action::Deploy) == 0 {
        if not_removed > 0 {
            return Ok(exit::FAILED);
        }
        if removed > 0 {
            return Ok(exit::OK);
        }
        match held.len() {
            0 => println!("nothing to deploy"),
            n => println!("nothing deployed: {n} held by a deploy window or freeze"),
        }
        return Ok(if count(Action::Blocked) > 0 { exit::FAILED } else { exit::OK });
    }
    let engines = super::engines(&snap.project, plan.to_deploy().map(|s| s.server.as_str()))?;
    let notifier = crate::notify::Notifier::new(snap.project.notify.clone());
    let state = std::sync::Mutex::new(state);
    let ctx = Context {
        ws,
        state: &state,
        engines: &engines,
        trigger,
        max_parallel: snap.project.max_parallel,
        notifier: &notifier,
        wait,
        reconcile: requested.is_none() || skip_unchanged,
    };
    let done = dispatch::run(&ctx, &snap.project, &plan, &vars, |e| match e {
        Event::Started { stack, id } => {
            println!("→ {stack:<20} deploying (deploy {id})");
            if let (Some(reason), Some((_, closed))) = (force, forced.iter().find(|(s, _)| s == stack)) {
                let (by, now) = (crate::release::actor(), crate::windows::now());
                if let Err(e) = state.with_state(|s| s.record_override(id, &by, reason, closed, now)) {
                    eprintln!("warning: the override of deploy {id} was not recorded: {e}");
                }
            }
        }
        Event::Finished { stack, id, outcome, took } => match &outcome.reason {
            None => {
                let extra = if outcome.recreated.is_empty() {
                    String::new()
                } else {
                    format!(", recreated {} for changed bind mounts", outcome.recreated.join(" "))
                };
                println!("✓ {stack:<20} deployed in {:.1}s (deploy {id}{extra})", took.as_secs_f64())
            }
            Some(r) => println!("✗ {stack:<20} failed: {r} (deploy {id}; `berth logs {id}`)"),
        },
        Event::Phase { stack, id, phase } => {
            if matches!(phase, "converging" | "smoke" | "rollback") {
                println!("  {stack:<20} {phase} (deploy {id})");
            }
        }
        Event::Blocked { stack, id, by } => {
            println!("- {stack:<20} blocked: dependency `{by}` did not deploy (deploy {id})")
        }
        Event::Waiting { stack, holder } => println!("… {stack:<20} waiting for {holder}"),
        Event::Current { stack, by } => println!("= {stack:<20} already running this config (deploy {by})"),
        Event::NotRun { stack, reason } => println!("✗ {stack:<20} not deployed: {reason}"),
    })?;
    let state = state.into_inner().unwrap_or_else(|p| p.into_inner());
    if trigger == "apply" {
        let deployed: Vec<String> =
            done.iter().filter(|d| d.status == DeployStatus::Succeeded).map(|d| d.stack.clone()).collect();
        if let Some(r) = crate::release::tag_auto_deploy(&ws.repo, &state, &snap.project, &plan.commit, &deployed) {
            println!(
                "released {} to {}{}",
                r.tag,
                r.env,
                if r.pushed { "" } else { " (tag kept locally: the remote refused it)" }
            );
        }
    }
    notifier.flush(std::time::Duration::from_secs(15));
    let n = |st: DeployStatus| done.iter().filter(|d| d.status == st).count();
    let (ok, failed, blocked) = (n(DeployStatus::Succeeded), n(DeployStatus::Failed), n(DeployStatus::Blocked));
    let (rolled, refused) = (n(DeployStatus::RolledBack), n(DeployStatus::Cancelled));
    print!("{trigger}: {ok} deployed, {failed} failed, {rolled} rolled back, {blocked} blocked");
    println!("{}", if refused > 0 { format!(", {refused} refused (busy)") } else { String::new() });
    if !held.is_empty() {
        println!("  held by a deploy window or freeze: {}", held.join(", "));
    }
    for d in done.iter().filter(|d| d.status != DeployStatus::Succeeded) {
        let id = d.id.map(|i| format!(" (deploy {i})")).unwrap_or_default();
        println!("  {} {}{id}: {}", d.stack, d.status, d.reason.as_deref().unwrap_or(""));
    }
    let failed = failed + refused;
    Ok(if failed + blocked + not_removed + count(Action::Blocked) > 0 {
        exit::FAILED
    } else if rolled > 0 {
        exit::ROLLED_BACK
    } else {
        exit::OK
    })
}

/// `berth rollback`: deploy an earlier version (a deploy's commit and variables, or a revision).
/// Freezes let it through; `force` overrides a closed window with `self_heal = false`.
pub fn rollback(
    ws: &Workspace,
    stack: &str,
    to: Option<i64>,
    rev: Option<&str>,
    wait: bool,
    force: Option<&str>,
) -> Result<i32> {
    let state = ws.state()?;
    let (commit, overrides) = match (to, rev) {
        (Some(id), _) => {
            let r = state.get(id)?;
            if r.stack != stack {
                return Err(Error::Usage(format!("deploy {id} is of stack `{}`, not `{stack}`", r.stack)));
            }
            (r.commit, r.overrides)
        }
        (None, Some(rev)) => (ws.repo.resolve(rev)?, BTreeMap::new()),
        (None, None) => {
            // The success before the one running now.
            let current = state.last_success(stack, None)?;
            let earlier = state
                .last_success(stack, current.as_ref().map(|c| c.id))?
                .filter(|e| current.as_ref().is_none_or(|c| c.commit != e.commit || c.overrides != e.overrides));
            match earlier {
                Some(r) => (r.commit, r.overrides),
                None => {
                    return Err(Error::Usage(format!(
                        "stack `{stack}` has no earlier successful deploy to roll back to; use --to ID or --ref REV"
                    )));
                }
            }
        }
    };
    // Secret values are stored redacted and cannot be replayed.
    let overrides = vars::replayable(&overrides);
    println!("rolling `{stack}` back to {}", short(&commit));
    execute(ws, &commit, Some(stack), &overrides, "rollback", wait, force)
}

/// `berth promote`: deploy an environment at a release. With `--from`, the source
/// environment's release (its newest, or `--tag`) is tagged with the next minor
/// version and deployed; without, `--tag` itself (e.g. a hotfix) is deployed.
/// A closed window or a freeze refuses the promotion before any tag is made, unless `force`
/// gives a reason (recorded on each deploy, as `berth deploy --force` does).
pub fn promote(ws: &Workspace, from: Option<&str>, to: &str, tag: Option<&str>, force: Option<&str>) -> Result<i32> {
    let head = ws.snapshot("HEAD")?;
    let known = |name: &str| head.project.environments.iter().any(|e| e.name == name);
    for env in std::iter::once(to).chain(from) {
        if !known(env) {
            let names: Vec<&str> = head.project.environments.iter().map(|e| e.name.as_str()).collect();
            return Err(Error::Usage(format!("unknown environment `{env}` (configured: {})", names.join(", "))));
        }
    }
    let state = ws.state()?;
    let (source, commit) = match (tag, from) {
        (Some(t), _) => (t.to_string(), ws.repo.resolve(&format!("refs/tags/{t}"))?),
        (None, Some(f)) => {
            let r = state.releases(Some(f))?.into_iter().next().ok_or_else(|| {
                Error::Usage(format!("environment `{f}` has no release yet; deploy to it first or give --tag"))
            })?;
            (r.tag, r.commit)
        }
        (None, None) => return Err(Error::Usage("give --from ENV or --tag TAG".into())),
    };
    let snap = ws.snapshot(&commit)?;
    let Some(env) = snap.project.environments.iter().find(|e| e.name == to) else {
        return Err(Error::Usage(format!("environment `{to}` does not exist at {}", short(&commit))));
    };
    let stacks: Vec<String> =
        snap.project.environment_stacks(env).iter().filter(|s| !s.manual).map(|s| s.name.clone()).collect();
    if force.is_none() && !stacks.is_empty() {
        // Refuse before tagging: a release nothing deployed would mislead the next promotion.
        let (mut plan, vars) = ws.plan(&snap, &ws.history(&state)?, Some(&stacks), &BTreeMap::new())?;
        let (_, held) = windows_gate(&state, &snap, &mut plan, &vars, "promote", None)?;
        if !held.is_empty() {
            println!(
                "promotion to {to} refused: {} held by a deploy window or freeze; nothing deployed, no release made",
                held.join(", ")
            );
            return Ok(exit::FAILED);
        }
    }
    let by = crate::release::actor();
    match from {
        Some(f) => {
            let version = crate::release::next(&ws.repo, true)?;
            let meta = crate::release::Meta { env: to, kind: "promotion", from_tag: Some(&source), by: &by };
            let r = crate::release::make(&ws.repo, &state, version, &commit, &meta)?;
            println!(
                "promoting {source} ({f}) to {to} as {}{}",
                r.tag,
                if r.pushed { "" } else { " (tag kept locally: the remote refused it)" }
            );
        }
        None => {
            state.add_release(&crate::state::Release {
                tag: source.clone(),
                commit: commit.clone(),
                env: to.to_string(),
                kind: "deploy".into(),
                from_tag: None,
                by,
                at: crate::state::now(),
                pushed: true,
                note: None,
            })?;
            println!("deploying {source} to {to}");
        }
    }
    if stacks.is_empty() {
        println!("environment `{to}` has no stacks at {}", short(&commit));
        return Ok(exit::OK);
    }
    run_plan(ws, snap, Some(&stacks), &BTreeMap::new(), "promote", false, true, force)
}

/// `berth drift [--heal]`: report stacks whose containers no longer match their last
/// successful deploy; with `--heal`, redeploy those with `self_heal` (within limits).
pub fn drift(ws: &Workspace, as_json: bool, heal: bool) -> Result<i32> {
    let state = ws.state()?;
    let compose = crate::docker::Compose::detect()?;
    let found = crate::drift::check(ws, &state, &compose)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&found).unwrap_or_default());
    } else if found.is_empty() {
        println!("no drift: every deployed stack runs what berth deployed");
    }
    let notifier = crate::notify::Notifier::new(ws.snapshot("HEAD")?.project.notify.clone());
    for d in &found {
        notifier.send(&d.event());
    }
    let mut code = if found.is_empty() { exit::OK } else { exit::FAILED };
    for d in &found {
        if !as_json {
            println!("✗ {:<20} drifted from deploy {} ({}):", d.stack, d.deploy_id, short(&d.commit));
            for f in &d.findings {
                println!("    {f}");
            }
        }
        if !heal || !d.self_heal {
            continue;
        }
        if !crate::drift::may_heal(&state, d)? {
            println!(
                "  {}: not healed ({})",
                d.stack,
                if d.paused { "paused" } else { "self-heal limit reached; look at it" }
            );
            continue;
        }
        let last = state.get(d.deploy_id)?;
        println!("  healing {}: redeploying deploy {}", d.stack, d.deploy_id);
        let r = execute(ws, &last.commit, Some(&d.stack), &vars::replayable(&last.overrides), "heal", true, None)?;
        if r == exit::OK {
            code = exit::OK.max(code);
        }
    }
    notifier.flush(std::time::Duration::from_secs(15));
    Ok(code)
}

/// The stacks forced through a closed window (with what was closed), and those refused.
type Gated = (Vec<(String, String)>, Vec<String>);

/// Deploy windows and freezes: a stack whose window is closed is refused (its step blocked) and
/// said so with the next opening and recorded as a `blocked` deploy with the reason, unless `force`
/// gives a reason; returns the forced stacks with what was closed, and the refused ones. `bootstrap`
/// (bringing up the stacks berth needs) is never held.
fn windows_gate(
    state: &crate::state::State,
    snap: &crate::workspace::Snapshot,
    plan: &mut berth_core::plan::Plan,
    vars: &crate::workspace::VarsByStack,
    trigger: &str,
    force: Option<&str>,
) -> Result<Gated> {
    let (mut forced, mut refused) = (Vec::new(), Vec::new());
    if trigger == "bootstrap" {
        return Ok((forced, refused));
    }
    let now = crate::windows::now();
    let freezes = state.freezes(now)?;
    for s in plan.steps.iter_mut().filter(|s| s.action == Action::Deploy) {
        let v = crate::windows::verdict(&snap.project, &snap.windows, &freezes, &s.stack, trigger, now);
        if v.is_open() {
            continue;
        }
        let why = crate::windows::explain(&v);
        match force {
            Some(reason) => {
                println!("! {:<20} {why}: deploying anyway (--force: {reason})", s.stack);
                forced.push((s.stack.clone(), why));
            }
            None => {
                let redacted = vars.get(&s.stack).map(vars::redact).unwrap_or_default();
                let record = crate::state::NewDeploy {
                    stack: &s.stack,
                    server: &s.server,
                    commit: &plan.commit,
                    config_hash: &s.config_hash,
                    vars: &redacted,
                    overrides: &redacted,
                    trigger,
                };
                let id = state.record_blocked(&record, &format!("not deployed: {why}"))?;
                println!(
                    "✗ {:<20} not deployed: {why}; to deploy now anyway: --force --reason TEXT (deploy {id})",
                    s.stack
                );
                s.action = Action::Blocked;
                refused.push(s.stack.clone());
            }
        }
    }
    Ok((forced, refused))
}

/// `berth pause` / `berth resume`.
pub fn pause(ws: &Workspace, stack: &str, paused: bool, reason: Option<&str>) -> Result<i32> {
    let snap = ws.snapshot("HEAD")?;
    if snap.project.stack(stack).is_none() {
        return Err(Error::Unknown(snap.project.unknown_stack(stack)));
    }
    let state = ws.state()?;
    let changed = state.set_paused(stack, paused, &crate::release::actor(), reason)?;
    println!(
        "{stack} {}",
        match (paused, changed) {
            (true, true) => "paused: berth will not deploy or heal it until `berth resume`",
            (true, false) => "was already paused",
            (false, true) => "resumed",
            (false, false) => "was not paused",
        }
    );
    Ok(exit::OK)
}

/// Take down the stacks the plan marks `remove` (gone from the repository, `prune` on).
/// Only stacks berth itself deployed reach this: they come from its own records.
/// Returns how many were removed and how many could not be.
fn prune(ws: &Workspace, state: &crate::state::State, plan: &berth_core::plan::Plan) -> Result<(usize, usize)> {
    let (mut n, mut failed) = (0, 0);
    for step in plan.steps.iter().filter(|s| s.action == Action::Remove) {
        let Some(last) = state.last_success(&step.stack, None)? else { continue };
        let Some(crate::workspace::Removal { stack, server, last }) = ws.removal(last)? else { continue };
        let engine = crate::docker::Engine::for_server(&server, &crate::docker::Compose::detect()?);
        let record = crate::state::NewDeploy {
            stack: &step.stack,
            server: &last.server,
            commit: &last.commit,
            config_hash: &last.config_hash,
            vars: &BTreeMap::new(),
            overrides: &BTreeMap::new(),
            trigger: "prune",
        };
        let id = state.begin(&record)?;
        match crate::deploy::remove(&ws.repo, &ws.state_dir, &stack, &last.commit, &engine) {
            Ok(log) => {
                state.finish(id, DeployStatus::Removed, Some("removed from the repository"), &log, &BTreeMap::new())?;
                println!("- {:<20} removed (deploy {id})", step.stack);
                n += 1;
            }
            Err(why) => {
                state.finish(id, DeployStatus::Failed, Some(&why), "", &BTreeMap::new())?;
                println!("✗ {:<20} could not be removed: {why}", step.stack);
                failed += 1;
            }
        }
    }
    Ok((n, failed))
}
