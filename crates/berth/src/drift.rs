//! Drift: does what runs on each server still match the last successful deploy?
//! And self-heal: put the recorded deploy back, within limits.

use crate::converge::{self, ContainerState};
use crate::docker::{Compose, Engine};
use crate::state::{State, WithState};
use crate::workspace::Workspace;

/// Heal at most this many times per stack within [`HEAL_WINDOW`] seconds, then only report.
pub const HEAL_LIMIT: usize = 5;
pub const HEAL_WINDOW: i64 = 300;

/// One stack's drift.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Drift {
    pub stack: String,
    pub server: String,
    /// The deploy whose state is expected.
    pub deploy_id: i64,
    pub commit: String,
    pub findings: Vec<String>,
    pub paused: bool,
    pub self_heal: bool,
}

impl Drift {
    /// The notification for this drift.
    pub fn event(&self) -> crate::notify::Event {
        crate::notify::Event {
            event: "drift".into(),
            stack: Some(self.stack.clone()),
            server: Some(self.server.clone()),
            commit: Some(self.commit.clone()),
            deploy_id: Some(self.deploy_id),
            detail: Some(self.findings.join("; ")),
            changes: None,
            pending: None,
            at: crate::state::now(),
        }
    }
}

/// Compare every deployed stack of the project at HEAD with its last successful deploy.
pub fn check(ws: &Workspace, state: &State, compose: &Compose) -> crate::error::Result<Vec<Drift>> {
    check_at(ws, "HEAD", state, compose)
}

/// [`check`] at a revision, borrowing the state store only for short moments.
pub fn check_at(
    ws: &Workspace,
    rev: &str,
    with: &impl WithState,
    compose: &Compose,
) -> crate::error::Result<Vec<Drift>> {
    let snap = ws.snapshot(rev)?;
    let mut paused: Vec<String> = Vec::new();
    let mut lasts = std::collections::HashMap::new();
    let mut err = None;
    with.with_state(|state| {
        match state.paused() {
            Ok(p) => paused = p.into_iter().map(|p| p.0).collect(),
            Err(e) => err = Some(e),
        }
        for s in &snap.project.stacks {
            if let Ok(Some(last)) = state.last_success(&s.name, None) {
                let verify = state.verify_results(last.id).unwrap_or_default();
                lasts.insert(s.name.clone(), (last, verify));
            }
        }
    });
    if let Some(e) = err {
        return Err(e.into());
    }
    let mut out = Vec::new();
    for s in &snap.project.stacks {
        if s.mode != berth_core::Mode::Compose {
            continue;
        }
        let Some((last, verify)) = lasts.remove(&s.name) else { continue };
        let baseline: Vec<ContainerState> = serde_json::from_str::<serde_json::Value>(&verify)
            .ok()
            .and_then(|v| serde_json::from_value(v["converge"]["containers"].clone()).ok())
            .unwrap_or_default();
        if baseline.is_empty() {
            continue;
        }
        let Some(server) = snap.project.server(&s.server) else { continue };
        let engine = Engine::for_server(server, compose);
        let findings = crate::bridge::block_on(async {
            match converge::connect(&engine).await {
                Ok(d) => converge::drift(&d, &s.name, &baseline).await,
                Err(e) => Err(e),
            }
        })
        .unwrap_or_else(|e| vec![format!("cannot observe: {e}")]);
        if !findings.is_empty() {
            out.push(Drift {
                stack: s.name.clone(),
                server: s.server.clone(),
                deploy_id: last.id,
                commit: last.commit.clone(),
                findings,
                paused: paused.contains(&s.name),
                self_heal: s.self_heal,
            });
        }
    }
    Ok(out)
}

/// May `stack` be healed now (not paused, under the limit)?
pub fn may_heal(state: &State, d: &Drift) -> Result<bool, crate::state::StateError> {
    if d.paused {
        return Ok(false);
    }
    Ok(state.count_since(&d.stack, "heal", crate::state::now() - HEAL_WINDOW)? < HEAL_LIMIT)
}
