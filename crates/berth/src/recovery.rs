//! Crash recovery: re-verify the stacks whose deploys a dying berth interrupted,
//! and apply their rollback policy when they do not converge.

use berth_core::record::{DeployRecord, DeployStatus};

use crate::deploy::{self, Job};
use crate::docker::{Compose, Engine};
use crate::state::{NewDeploy, WithState};
use crate::workspace::Workspace;

/// Re-verify each interrupted deploy's stack; every check is recorded as a new
/// deploy with trigger `recovery`. Returns (stack, outcome) pairs.
pub fn recover(
    ws: &Workspace,
    state: &impl WithState,
    compose: &Compose,
    interrupted: &[DeployRecord],
) -> Vec<(String, DeployStatus)> {
    let mut out = Vec::new();
    for r in interrupted {
        let Ok(snap) = ws.snapshot(&r.commit) else {
            tracing::warn!(deploy_id = r.id, "cannot load the interrupted deploy's commit; not re-verifying");
            continue;
        };
        let Some(stack) = snap.project.stack(&r.stack).cloned() else { continue };
        let Some(server) = snap.project.server(&stack.server) else { continue };
        let engine = Engine::for_server(server, compose);
        let overrides = berth_core::vars::replayable(&r.overrides);
        let rollback = state.with_state(|s| ws.previous_job(s, &r.stack, None, &engine, &[])).map(Box::new);
        let job = Job {
            stack,
            commit: r.commit.clone(),
            overrides: overrides.clone(),
            changed_paths: Vec::new(),
            engine,
            rollback,
            verify_only: true,
            ci: None,
        };
        let redacted = berth_core::vars::redact(&overrides);
        let Ok(id) = state.with_state(|s| {
            s.begin(&NewDeploy {
                stack: &r.stack,
                server: &r.server,
                commit: &r.commit,
                config_hash: &r.config_hash,
                vars: &redacted,
                overrides: &redacted,
                trigger: "recovery",
            })
        }) else {
            continue;
        };
        let progress = |phase: &str| {
            let _ = state.with_state(|s| s.set_phase(id, phase));
        };
        let outcome = deploy::run(&ws.repo, &ws.state_dir, &job, &progress);
        let reason = match &outcome.reason {
            None => format!("re-verified after deploy {} was interrupted", r.id),
            Some(why) => format!("deploy {} was interrupted and does not serve: {why}", r.id),
        };
        state.with_state(|s| {
            let _ = s.set_verify(id, &outcome.verify.to_string());
            let _ = s.finish(id, outcome.status, Some(&reason), &outcome.log, &outcome.vars);
        });
        tracing::warn!(stack = %r.stack, interrupted = r.id, status = %outcome.status, "recovered");
        out.push((r.stack.clone(), outcome.status));
    }
    out
}
