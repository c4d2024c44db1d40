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
    /// Each stack's deploys, oldest first (empty: nothing failed, nothing to remember).
    deploys: HashMap<String, Vec<(i64, DeployStatus, String)>>,
    /// (commit, stack, service) → version.
    versions: HashMap<(String, String, String), Option<String>>,
}

impl<'a> Memory<'a> {
    pub fn new(ws: &'a Workspace) -> Memory<'a> {
        Memory { ws, deploys: HashMap::new(), versions: HashMap::new() }
    }

    /// The deploys of `stack`, oldest first, each with the version of `service`'s image it
    /// deployed. Empty when none of them failed (the common case costs one query).
    pub fn history(&mut self, stack: &str, service: &str) -> Vec<Deployed> {
        if !self.deploys.contains_key(stack) {
            let records = self.ws.read_state().and_then(|s| Ok(s.history(stack, DEPTH)?)).unwrap_or_default();
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
            .map(|(id, status, commit)| Deployed { id, status, version: self.version(&commit, stack, service) })
            .collect()
    }

    fn version(&mut self, commit: &str, stack: &str, service: &str) -> Option<String> {
        let key = (commit.to_string(), stack.to_string(), service.to_string());
        if let Some(v) = self.versions.get(&key) {
            return v.clone();
        }
        let v = self.ws.snapshot(commit).ok().and_then(|snap| {
            let def = snap.project.stack(stack)?;
            let si = source::images(def, &snap.sources, snap.config.as_deref())
                .into_iter()
                .find(|si| si.service == service)?;
            ImageRef::parse(&si.image).ok().map(|r| r.version())
        });
        self.versions.insert(key, v.clone());
        v
    }
}
