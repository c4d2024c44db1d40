//! The effective-config diff of a change, stack by stack: both sides checked out in a scratch
//! folder, each touched stack rendered by compose (`config`) with its variables resolved as a
//! deploy resolves them, secrets masked. Used by `berth diff` and PR plans; runs no hook.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use berth_core::changes::{self, Index};
use berth_core::diff::{self, StackOutcome};
use berth_core::record::History;
use berth_core::{Stack, config, ownership};
use serde_json::Value;

use crate::docker::{self, Compose, Engine, ProjectRef};
use crate::error::{Error, Result};
use crate::output::short;
use crate::workspace::{Snapshot, Workspace};

/// How a side's secrets are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// Decrypt them; compare them by keyed hash (`(secret changed)`), never show them.
    Decrypt,
    /// Never decrypt or read them (a fork's pull request): each secret variable renders as
    /// [`variables::SECRET_REFERENCE`](crate::variables::SECRET_REFERENCE).
    References,
}

/// The scratch folder both sides are checked out in, removed when the diff ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The stacks `old..new` touches (limited to `only` when given).
pub fn touched(ws: &Workspace, old: &Snapshot, new: &Snapshot, only: &[String]) -> Result<BTreeSet<String>> {
    let changes = ws.repo.diff(&old.commit, &new.commit)?;
    let index = Index::new(&new.project, &new.sources, &HashMap::new());
    let mut touched: BTreeSet<String> = index.touched(&changes).into_keys().collect();
    if changes.iter().any(|c| c.path == config::FILE_NAME || c.old_path.as_deref() == Some(config::FILE_NAME)) {
        touched.extend(changes::redefined(&old.project, &new.project));
        touched.extend(changes::removed(&old.project, &new.project));
    }
    // Paths that belonged to stacks as the base defined them (a stack removed or moved).
    let old_index = Index::new(&old.project, &old.sources, &HashMap::new());
    touched.extend(old_index.touched(&changes).into_keys());
    if !only.is_empty() {
        touched.retain(|n| only.contains(n));
    }
    Ok(touched)
}

/// Each touched stack's outcome between `old` and `new`. `history` (read only when a stack
/// was touched) gives the overrides a reconcile of the head would replay and the plan's action.
pub fn compute(
    ws: &Workspace,
    old: &Snapshot,
    new: &Snapshot,
    only: &[String],
    history: impl FnOnce() -> Result<HashMap<String, History>>,
    compose: &Compose,
    secrets: Secrets,
) -> Result<Vec<StackOutcome>> {
    let touched = touched(ws, old, new, only)?;
    if touched.is_empty() {
        return Ok(Vec::new());
    }
    let changes = ws.repo.diff(&old.commit, &new.commit)?;
    let paths: Vec<String> =
        changes.iter().flat_map(|c| std::iter::once(c.path.clone()).chain(c.old_path.clone())).collect();
    let (plan, overrides) = ws.plan(new, &history()?, None, &BTreeMap::new())?;
    let actions: HashMap<&str, &str> = plan.steps.iter().map(|s| (s.stack.as_str(), s.action.as_str())).collect();
    let random = |n| crate::secrets::random_hex(n).map_err(|e| Error::Io(format!("cannot read /dev/urandom: {e}")));
    let dir = ws.state_dir.join("tmp").join(format!("diff-{}", random(8)?));
    let scratch = Scratch(std::path::absolute(&dir).unwrap_or(dir));
    let key = random(32)?;
    let sides = [(old, scratch.0.join("base")), (new, scratch.0.join("head"))];
    for (snap, dir) in &sides {
        ws.repo.checkout_into(&snap.commit, dir)?;
    }
    // Untrusted code may not make compose read host files: refuse what reads outside the repo.
    let refused: HashMap<&str, String> = match secrets {
        Secrets::Decrypt => HashMap::new(),
        Secrets::References => {
            let owned = ownership::derive(&new.project, &new.sources, &HashMap::new());
            new.project
                .stacks
                .iter()
                .zip(owned)
                .filter_map(|(s, o)| untrusted_reads(&o).map(|e| (s.name.as_str(), e)))
                .collect()
        }
    };
    // Both sides of every touched stack, rendered a few at a time: compose's start-up dominates.
    let none = BTreeMap::new();
    let work: Vec<(&String, usize)> = touched.iter().flat_map(|n| [(n, 0), (n, 1)]).collect();
    let mut rendered = parallel(&work, |(name, i)| {
        let (snap, dir) = &sides[*i];
        match refused.get(name.as_str()) {
            Some(e) if *i == 1 => Some(Err(e.clone())),
            _ => snap.project.stack(name).map(|s| {
                let vars = overrides.get(*name).unwrap_or(&none);
                render(snap, s, dir, vars, compose, key.as_bytes(), secrets)
            }),
        }
    })
    .into_iter();
    let mut next = || rendered.next().flatten().unwrap_or_else(|| Some(Err("not rendered".to_string())));
    let mut outcomes = Vec::new();
    for name in &touched {
        let (a, b) = (next(), next());
        let stack = new.project.stack(name).or(old.project.stack(name));
        let mut o = StackOutcome {
            name: name.clone(),
            server: stack.map(|s| s.server.clone()).unwrap_or_default(),
            state: "changed",
            action: actions.get(name.as_str()).map(|a| a.to_string()),
            diff: None,
            files: vec![],
            error: None,
        };
        match (a.transpose(), b.transpose()) {
            (Err(e), _) | (_, Err(e)) => (o.state, o.error) = ("error", Some(e)),
            (Ok(a), Ok(b)) => {
                o.state = match (&a, &b) {
                    (None, _) => "added",
                    (_, None) => "removed",
                    _ => "changed",
                };
                let d = diff::compare(a.as_ref(), b.as_ref(), &paths);
                let files: BTreeSet<&String> = d.services.iter().flat_map(|s| &s.bind_files).collect();
                for f in files {
                    o.files.push((f.clone(), ws.repo.file_diff(&old.commit, &new.commit, f)?));
                }
                o.diff = Some(d);
            }
        }
        outcomes.push(o);
    }
    Ok(outcomes)
}

/// `f` over `items` on up to 4 threads (as many as there are cores), the results in order;
/// `None` for an item whose thread panicked.
fn parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<Option<R>> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4).min(items.len());
    if workers <= 1 {
        return items.iter().map(|x| Some(f(x))).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<R>>> = items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let (Some(item), Some(slot)) = (items.get(i), slots.get(i)) else { break };
                    let r = f(item);
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                }
            });
        }
    });
    slots.into_iter().map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner())).collect()
}

/// Why a stack of untrusted code is not rendered: compose would read files outside the
/// repository, or paths berth cannot resolve (which could point anywhere).
fn untrusted_reads(o: &ownership::Owned) -> Option<String> {
    if !o.outside.is_empty() {
        return Some(format!(
            "not rendered: the request's compose files read files outside the repository ({})",
            o.outside.join(", ")
        ));
    }
    o.fallback
        .as_ref()
        .map(|why| format!("not rendered: the request's compose files name paths berth cannot resolve ({why})"))
}

/// Compose runs for untrusted code without berth's environment (its tokens and secrets would
/// be interpolated into the model): only what compose needs to run, and what the engine set.
fn confine(cmd: &mut std::process::Command) {
    let explicit: Vec<(std::ffi::OsString, std::ffi::OsString)> =
        cmd.get_envs().filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))).collect();
    cmd.env_clear();
    for k in ["PATH", "HOME", "DOCKER_CONFIG", "XDG_RUNTIME_DIR", "TMPDIR"] {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    cmd.envs(explicit);
}

/// A stack's model on one side: variables resolved as a deploy resolves them, compose's
/// rendering, paths made relative to the work tree, secrets masked.
fn render(
    snap: &Snapshot,
    stack: &Stack,
    dir: &Path,
    overrides: &BTreeMap<String, String>,
    compose: &Compose,
    key: &[u8],
    secrets: Secrets,
) -> std::result::Result<Value, String> {
    let at = short(&snap.commit);
    let server =
        snap.project.server(&stack.server).ok_or_else(|| format!("server `{}` is not declared", stack.server))?;
    let engine = Engine::for_server(server, compose);
    let v = match secrets {
        Secrets::Decrypt => crate::variables::resolve(stack, dir, overrides),
        Secrets::References => crate::variables::resolve_references(stack, dir, overrides),
    }
    .map_err(|e| format!("at {at}: {e}"))?;
    let files: Vec<PathBuf> = stack.compose_files.iter().map(|f| dir.join(f)).collect();
    let stack_dir = dir.join(&stack.path);
    let project = ProjectRef { name: &stack.name, files: &files, dir: &stack_dir, vars: &v.values };
    let mut cmd = engine.compose_model(&project);
    if secrets == Secrets::References {
        confine(&mut cmd);
    }
    let out = crate::process::run(&mut cmd, stack.timeout).map_err(|e| format!("compose config at {at}: {e}"))?;
    if !out.success() {
        return Err(format!("compose config at {at} rejected the stack's files: {}", out.error_summary()));
    }
    let mut model = docker::parse_model(&out.stdout)?;
    diff::relativize(&mut model, &dir.display().to_string());
    // A reference stands for no value: shown as it is, not as a hash of the placeholder.
    let is_secret =
        |k: &str| v.is_secret(k) && v.values.get(k).map(String::as_str) != Some(crate::variables::SECRET_REFERENCE);
    let values: Vec<String> = v.secrets().into_iter().filter(|x| x != crate::variables::SECRET_REFERENCE).collect();
    diff::mask(&mut model, key, &values, &is_secret);
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_keeps_the_order_of_its_items() {
        let items: Vec<u64> = (0..23).collect();
        let out = parallel(&items, |x| {
            // Later items finish first.
            std::thread::sleep(std::time::Duration::from_millis(23 - x));
            x * 2
        });
        assert_eq!(out, items.iter().map(|x| Some(x * 2)).collect::<Vec<_>>());
        assert!(parallel(&[] as &[u64], |x| *x).is_empty());
    }
}
