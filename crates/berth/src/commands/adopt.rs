//! `berth adopt`: record compose projects that already run (started by hand or by another tool)
//! as deployed at a commit, when they run exactly what berth would deploy from it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use berth_core::record::DeployStatus;
use berth_core::{Mode, Stack, vars};

use crate::adopt::{self, Expected};
use crate::docker::{self, Compose, Engine, ProjectRef};
use crate::error::{Error, Result, exit};
use crate::output::short;
use crate::state::{NewDeploy, State};
use crate::workspace::{Snapshot, Workspace};

/// How one stack's adoption ended.
enum Adoption {
    Adopted {
        id: i64,
        containers: usize,
    },
    /// berth already deployed (or adopted) this exact config.
    Current {
        id: i64,
    },
    NotAdopted(Vec<String>),
}

pub fn adopt(ws: &Workspace, names: &[String], rev: &str) -> Result<i32> {
    let snap = ws.snapshot(rev)?;
    ws.require_stacks(&snap.project)?;
    let mut chosen: Vec<&Stack> = Vec::new();
    for n in names {
        let Some(s) = snap.project.stack(n) else { return Err(Error::Unknown(snap.project.unknown_stack(n))) };
        if !chosen.iter().any(|c| c.name == s.name) {
            chosen.push(s);
        }
    }
    if names.is_empty() {
        chosen = snap.project.stacks.iter().collect();
    }
    let state = ws.state()?;
    let (plan, vars_by_stack) = ws.plan(&snap, &ws.history(&state)?, None, &BTreeMap::new())?;
    let compose = Compose::detect()?;
    let (mut adopted, mut current, mut refused) = (0, 0, 0);
    for stack in chosen {
        let Some(step) = plan.steps.iter().find(|s| s.stack == stack.name) else { continue };
        let overrides = vars_by_stack.get(&stack.name).cloned().unwrap_or_default();
        let result = adopt_one(ws, &state, &snap, stack, &step.config_hash, &overrides, &compose)
            .unwrap_or_else(|e| Adoption::NotAdopted(vec![e]));
        match result {
            Adoption::Adopted { id, containers } => {
                adopted += 1;
                println!(
                    "✓ {:<20} adopted at {} as deploy {id} ({containers} container{} matched)",
                    stack.name,
                    short(&snap.commit),
                    if containers == 1 { "" } else { "s" }
                );
            }
            Adoption::Current { id } => {
                current += 1;
                println!("= {:<20} already deployed by berth at this config (deploy {id}); skipped", stack.name);
            }
            Adoption::NotAdopted(why) => {
                refused += 1;
                println!("✗ {:<20} not adopted:", stack.name);
                for w in &why {
                    println!("    {w}");
                }
                if stack.mode == Mode::Compose && !why.is_empty() {
                    println!(
                        "    make the repository describe what runs and commit, or let berth replace it: berth deploy {}",
                        stack.name
                    );
                }
            }
        }
    }
    println!("adopt: {adopted} adopted, {current} already deployed, {refused} not adopted");
    Ok(if refused > 0 { exit::FAILED } else { exit::OK })
}

/// Compare one stack with what runs and record it when it matches. `Err` is a reason not to adopt.
fn adopt_one(
    ws: &Workspace,
    state: &State,
    snap: &Snapshot,
    stack: &Stack,
    config_hash: &str,
    overrides: &BTreeMap<String, String>,
    compose: &Compose,
) -> Result<Adoption, String> {
    if stack.mode == Mode::Swarm {
        return Err(format!(
            "swarm stacks cannot be adopted yet; deploy it once with `berth deploy {}` (unchanged services keep \
             running)",
            stack.name
        ));
    }
    let server =
        snap.project.server(&stack.server).ok_or_else(|| format!("server `{}` is not declared", stack.server))?;
    let engine = Engine::for_server(server, compose);
    let _lock = crate::lock::lock(&ws.state_dir, &stack.name, Duration::ZERO, |_| {}).map_err(|e| e.to_string())?;
    // Under the lock, the history is settled.
    let last = state.last_success(&stack.name, None).map_err(|e| e.to_string())?;
    if let Some(last) = last.filter(|l| l.config_hash == config_hash) {
        return Ok(Adoption::Current { id: last.id });
    }
    let mut log = String::new();
    let dir = crate::deploy::work_dir(&ws.state_dir, &stack.name);
    log.push_str(&format!("checkout {} into {}\n", snap.commit, dir.display()));
    ws.repo
        .checkout_into(&snap.commit, &dir)
        .map_err(|e| format!("checkout of {} failed: {e}", short(&snap.commit)))?;
    let crate::variables::Variables { values: resolved, secret_keys, .. } =
        crate::variables::resolve(stack, &dir, overrides)?;
    let files: Vec<PathBuf> = stack.compose_files.iter().map(|f| dir.join(f)).collect();
    let stack_dir = dir.join(&stack.path);
    let project = ProjectRef { name: &stack.name, files: &files, dir: &stack_dir, vars: &resolved };
    let mut run = |mut cmd: std::process::Command, what: &str| -> Result<String, String> {
        log.push_str(&format!("$ {}\n", crate::process::display(&cmd)));
        let out = crate::process::run(&mut cmd, stack.timeout).map_err(|e| format!("{what}: {e}"))?;
        if !out.success() {
            return Err(format!("{what} failed: {}", out.error_summary()));
        }
        log.push_str(&out.stdout);
        Ok(out.stdout)
    };
    let config =
        run(engine.compose(&project, &["config"]), "compose config (the stack's compose files were rejected)")?;
    let hashes = docker::config_hashes(&run(engine.compose_config_hash(&project), "compose config --hash")?);
    let services = docker::services(&config)?;
    let (seen, images) = crate::bridge::block_on(async {
        let d = crate::converge::connect(&engine).await?;
        let seen = adopt::observe(&d, &stack.name).await?;
        Ok::<_, String>((seen, adopt::images(&d, &services).await))
    })?;
    let expected = Expected { services, hashes, images, dir: stack_dir.display().to_string() };
    let mismatches = adopt::compare(&stack.name, &expected, &seen);
    if !mismatches.is_empty() {
        return Ok(Adoption::NotAdopted(mismatches));
    }
    let summary = format!(
        "adopted: {} container{} of compose project `{}` run the services, images and compose config hashes of {}",
        seen.len(),
        if seen.len() == 1 { "" } else { "s" },
        stack.name,
        short(&snap.commit)
    );
    for c in &seen {
        log.push_str(&format!("{} {} {} {} {}\n", c.service, c.id, c.state, c.image, c.config_hash));
    }
    let recorded = crate::variables::recorded(&resolved, &secret_keys);
    let kept = vars::redact(overrides);
    let record = |s: &State| -> Result<i64, crate::state::StateError> {
        let id = s.begin(&NewDeploy {
            stack: &stack.name,
            server: &stack.server,
            commit: &snap.commit,
            config_hash,
            vars: &recorded,
            overrides: &kept,
            trigger: "adopt",
        })?;
        s.set_verify(id, &adopt::verify_record(&summary, &seen).to_string())?;
        s.finish(id, DeployStatus::Succeeded, Some(&summary), &crate::redact::apply(&log), &recorded)?;
        Ok(id)
    };
    let id = record(state).map_err(|e| e.to_string())?;
    Ok(Adoption::Adopted { id, containers: seen.len() })
}
