//! Image updates: every image a rule governs checked against its registry (the newest version the
//! rule allows, why other tags were left out, versions whose deploy failed), then written back to
//! git by commit or pull request.

mod memory;
pub mod pulls;
pub mod writeback;

use std::collections::BTreeMap;

use berth_core::images::reference::ImageRef;
use berth_core::images::select::{self, Skip};
use berth_core::images::source::{self, ServiceImage, Spot};
use berth_core::images::{Policy, UpdateMode, Versioning, policy_for};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::registry::{self, Client};
use crate::workspace::{Snapshot, Workspace};

#[derive(Debug, Serialize)]
pub struct Skipped {
    pub tag: String,
    #[serde(flatten)]
    pub why: Skip,
    pub reason: String,
}

/// One service's image.
#[derive(Debug, Serialize)]
pub struct Row {
    pub stack: String,
    pub service: String,
    pub image: String,
    pub current: String,
    /// The rule, summarised (`semver ^1, pin digest`); absent: no rule governs the image.
    pub rule: Option<String>,
    pub mode: Option<UpdateMode>,
    /// The version to move to (`tag` or `tag@digest`); absent: up to date.
    pub update: Option<String>,
    /// Where to read about the new version (the image's `org.opencontainers.image.url`/`source`).
    pub notes: Option<String>,
    pub skipped: Vec<Skipped>,
    /// Where the version is written (`file` and `variable`), or why it cannot be written.
    pub file: Option<String>,
    pub variable: Option<String>,
    pub error: Option<String>,
    #[serde(skip)]
    pub spot: Option<Spot>,
}

/// Every image checked, and the registry traffic it took.
pub struct Checked {
    pub rows: Vec<Row>,
    /// HTTP requests sent to registries, and how many were answered from the cache (`304`).
    pub requests: u64,
    pub cached: u64,
}

/// Check every image of the stacks in `only` (empty: all) of `snap`. `writing`: the updates will
/// be written back, so each one to be committed also gets its release-notes link (two requests).
pub fn check(ws: &Workspace, snap: &Snapshot, only: &[String], writing: bool) -> Result<Checked> {
    check_registries(ws, snap, only, writing, &|_| true)
}

/// [`check`] of the images whose registry `asks` says to ask now (the others are left out).
pub fn check_registries(
    ws: &Workspace,
    snap: &Snapshot,
    only: &[String],
    writing: bool,
    asks: &dyn Fn(&str) -> bool,
) -> Result<Checked> {
    let project = &snap.project;
    for name in only {
        if project.stack(name).is_none() {
            return Err(Error::Usage(format!("no stack `{name}` at {}", &snap.commit[..snap.commit.len().min(12)])));
        }
    }
    let cache = ws.state_dir.join("registry-cache.json");
    let _ = std::fs::create_dir_all(&ws.state_dir);
    let mut clients: BTreeMap<Option<String>, Client> = BTreeMap::new();
    let mut memory = memory::Memory::new(ws);
    let mut rows = Vec::new();
    for stack in project.stacks.iter().filter(|s| only.is_empty() || only.contains(&s.name)) {
        let auth = project.server(&stack.server).and_then(|s| s.registry_auth.clone());
        let client = clients.entry(auth.clone()).or_insert_with(|| {
            let auths = registry::load_auths(auth.as_deref().map(std::path::Path::new));
            Client::new(auths, Some(cache.clone()))
        });
        for si in source::images(stack, &snap.sources, snap.config.as_deref()) {
            let parsed = ImageRef::parse(&si.image).ok();
            if parsed.as_ref().is_some_and(|r| !asks(&r.registry)) {
                continue;
            }
            let policy = parsed.and_then(|r| policy_for(&stack.images, &project.images, &si.service, &r.name));
            let history = match policy {
                Some(_) => memory.history(&stack.name, &si.service),
                None => Vec::new(),
            };
            rows.push(crate::bridge::block_on(check_one(client, &stack.name, &si, policy, &history, writing)));
        }
    }
    let (mut requests, mut cached) = (0, 0);
    for c in clients.values() {
        c.save();
        let s = *c.stats.lock().unwrap_or_else(|p| p.into_inner());
        requests += s.0;
        cached += s.1;
    }
    Ok(Checked { rows, requests, cached })
}

async fn check_one(
    client: &Client,
    stack: &str,
    si: &ServiceImage,
    policy: Option<&Policy>,
    history: &[berth_core::images::memory::Deployed],
    writing: bool,
) -> Row {
    let mut row = Row {
        stack: stack.to_string(),
        service: si.service.clone(),
        image: si.image.clone(),
        current: String::new(),
        rule: policy.map(Policy::describe),
        mode: policy.map(|p| p.mode),
        update: None,
        notes: None,
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
    if let Err(e) = decide(client, &r, policy, history, &mut row).await {
        row.error = Some(e);
    } else if writing && row.update.is_some() && policy.mode != UpdateMode::Report {
        // A link is a courtesy: a registry that will not say leaves it out.
        let tag = row.update.as_deref().map(|u| u.split_once('@').map_or(u, |(t, _)| t)).unwrap_or_default();
        row.notes = client.notes_link(&r, tag).await.ok().flatten();
    }
    row
}

async fn decide(
    client: &Client,
    r: &ImageRef,
    policy: &Policy,
    history: &[berth_core::images::memory::Deployed],
    row: &mut Row,
) -> std::result::Result<(), String> {
    use berth_core::images::memory::failed_with;
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
        if let Some(deploy) = failed_with(history, &tag) {
            skipped.push((tag, Skip::RolledBack { deploy }));
            continue;
        }
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
    let target = chosen.clone().unwrap_or_else(|| current.to_string());
    row.update = if policy.pin_digest {
        let digest = client.digest(r, &target).await.map_err(|e| e.to_string())?;
        let pinned = format!("{target}@{digest}");
        let unchanged = chosen.is_none() && r.digest.as_deref() == Some(digest.as_str());
        match failed_with(history, &pinned) {
            Some(deploy) if !unchanged => {
                skipped.push((pinned, Skip::RolledBack { deploy }));
                None
            }
            _ => (!unchanged).then_some(pinned),
        }
    } else {
        chosen
    };
    row.skipped = skipped.into_iter().map(|(tag, why)| Skipped { tag, reason: why.to_string(), why }).collect();
    Ok(())
}
