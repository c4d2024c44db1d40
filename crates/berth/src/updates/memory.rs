//! The versions a stack's past deploys ran, read from berth's records and the commits they deployed,
//! so that a version whose deploy failed or was rolled back is not proposed again.

use std::collections::HashMap;

use berth_core::images::memory::Deployed;
use berth_core::images::reference::ImageRef;
use berth_core::images::source;
use berth_core::record::DeployStatus;

use crate::workspace::Workspace;

/// Deploys looked at per stack, newest first.
const DEPTH: usize = 50;

pub struct Memory<'a> {
    ws: &'a Workspace,
    /// The state store, opened at the first stack that has a rule.
    state: Option<Option<crate::state::State>>,
    /// Each stack's deploys, oldest first (empty: nothing failed, nothing to remember).
    deploys: HashMap<String, Vec<(i64, DeployStatus, String)>>,
    /// (commit, stack) → the version of each service's image: one snapshot read per commit.
    versions: HashMap<(String, String), HashMap<String, String>>,
}

impl<'a> Memory<'a> {
    pub fn new(ws: &'a Workspace) -> Memory<'a> {
        Memory { ws, state: None, deploys: HashMap::new(), versions: HashMap::new() }
    }

    /// The deploys of `stack`, oldest first, each with the version of `service`'s image it
    /// deployed. Empty when none of them failed (the common case costs one query).
    pub fn history(&mut self, stack: &str, service: &str) -> Vec<Deployed> {
        if !self.deploys.contains_key(stack) {
            let ws = self.ws;
            let state = self.state.get_or_insert_with(|| ws.read_state().ok());
            let records = state.as_ref().and_then(|s| s.history(stack, DEPTH).ok()).unwrap_or_default();
            let failed = records.iter().any(|d| matches!(d.status, DeployStatus::Failed | DeployStatus::RolledBack));
            let mut list: Vec<_> = match failed {
                true => records.into_iter().map(|d| (d.id, d.status, d.commit)).collect(),
                false => Vec::new(),
            };
            list.sort_by_key(|(id, _, _)| *id);
            self.deploys.insert(stack.to_string(), list);
        }
        let list = self.deploys.get(stack).cloned().unwrap_or_default();
        list.into_iter()
            .map(|(id, status, commit)| {
                let version = self.versions_at(&commit, stack).get(service).cloned();
                Deployed { id, status, version }
            })
            .collect()
    }

    fn versions_at(&mut self, commit: &str, stack: &str) -> &HashMap<String, String> {
        let ws = self.ws;
        self.versions.entry((commit.to_string(), stack.to_string())).or_insert_with(|| {
            let Ok(snap) = ws.snapshot(commit) else { return HashMap::new() };
            let Some(def) = snap.project.stack(stack) else { return HashMap::new() };
            source::images(def, &snap.sources, snap.config.as_deref())
                .into_iter()
                .filter_map(|si| Some((si.service, ImageRef::parse(&si.image).ok()?.version())))
                .collect()
        })
    }
}
