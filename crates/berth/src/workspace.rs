//! The workspace: a stacks repository, its state dir, and snapshots of the project at a commit.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_core::changes::Index;
use berth_core::ownership::{self, Source, Sources};
use berth_core::plan::{self, Plan};
use berth_core::record::History;
use berth_core::{Project, Tree, config, hash, vars};

use crate::error::{Error, Result};
use crate::git::Repo;
use crate::state::State;

/// Per stack, the override variables a plan's deploy will use.
pub type VarsByStack = HashMap<String, BTreeMap<String, String>>;

/// Where berth works.
pub struct Workspace {
    pub repo: Repo,
    pub state_dir: PathBuf,
    cache: Cache,
}

/// The last few snapshots and diffs. Commits never change, so entries never go stale; the
/// syncer, the executor and the rollback of one push all look at the same commits, and each
/// git process they would repeat costs milliseconds on the push-to-deploy path.
#[derive(Default)]
struct Cache {
    snapshots: Mutex<VecDeque<Arc<Snapshot>>>,
    diffs: Mutex<VecDeque<(String, String, Changes)>>,
    /// Compose and env files' text by blob id, each parsed once: most commits change few of them.
    blobs: Mutex<HashMap<String, Arc<Source>>>,
}

type Changes = Arc<Vec<berth_core::changes::Change>>;

/// Snapshots kept: at most this many, and no more tree entries in all than `CACHED_ENTRIES` (a big
/// repository keeps a few, a homelab's keeps every commit its stacks were last deployed at).
const CACHED_SNAPSHOTS: usize = 64;
const CACHED_ENTRIES: usize = 50_000;
const CACHED_DIFFS: usize = 32;
/// Texts kept by blob id; the cache starts over when it grows past this.
const CACHED_BLOBS: usize = 4096;

fn remember<T>(list: &Mutex<VecDeque<T>>, item: T, cap: usize) {
    let mut l = list.lock().unwrap_or_else(|p| p.into_inner());
    l.push_front(item);
    l.truncate(cap);
}

/// A full commit id (which needs no `rev-parse` to be known).
fn is_commit_id(rev: &str) -> bool {
    (rev.len() == 40 || rev.len() == 64) && rev.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A stack to take down, as it was last deployed.
pub struct Removal {
    pub stack: berth_core::Stack,
    pub server: berth_core::project::Server,
    pub last: berth_core::record::DeployRecord,
}

/// The project as it is at one commit.
pub struct Snapshot {
    pub commit: String,
    pub tree: Tree,
    pub project: Project,
    /// The text of the compose and env files the stacks' ownership is derived from.
    pub sources: Sources,
    /// `[[window]]` deploy windows with their time zones.
    pub windows: Vec<berth_core::window::Window>,
    /// The text of `berth.toml`, if the commit has one.
    pub config: Option<String>,
}

impl Snapshot {
    /// The committed text of a compose, env or config file berth read.
    pub fn text(&self, file: &str) -> Option<&str> {
        match file {
            config::FILE_NAME => self.config.as_deref(),
            _ => self.sources.get(file),
        }
    }
}

impl Workspace {
    /// Find the repository (`--repo`, else the checkout around the current directory)
    /// and the state dir (`--state-dir`, else `[berth] state_dir`, else `.berth/` in the repo).
    pub fn open(repo: Option<&Path>, state_dir: Option<&Path>) -> Result<Workspace> {
        let start = match repo {
            Some(p) => p.to_path_buf(),
            None => {
                std::env::current_dir().map_err(|e| Error::Io(format!("cannot read the current directory: {e}")))?
            }
        };
        if !start.is_dir() {
            return Err(Error::Usage(format!("--repo {}: no such directory", start.display())));
        }
        let repo = Repo::discover(&start)?;
        let state_dir = match state_dir {
            Some(p) => p.to_path_buf(),
            None => {
                let configured = std::fs::read_to_string(repo.root.join(config::FILE_NAME))
                    .ok()
                    .and_then(|t| config::parse(config::FILE_NAME, &t).ok())
                    .and_then(|c| c.berth.state_dir);
                match configured {
                    Some(d) => repo.root.join(d),
                    None => repo.root.join(".berth"),
                }
            }
        };
        Ok(Workspace::new(repo, state_dir))
    }

    pub fn new(repo: Repo, state_dir: PathBuf) -> Workspace {
        Workspace { repo, state_dir, cache: Cache::default() }
    }

    pub fn state(&self) -> Result<State> {
        Ok(State::open(&self.state_dir)?)
    }

    /// The state store for a command that only reads: an empty one when there is none yet, so
    /// that looking at a repository never creates a state dir in it.
    pub fn read_state(&self) -> Result<State> {
        Ok(State::open_existing(&self.state_dir)?)
    }

    /// Refuse a folder that is no stacks repository (no stack found, no berth.toml, no state):
    /// berth was most likely run in the wrong place, and reporting zero stacks would hide that.
    pub fn require_stacks(&self, project: &Project) -> Result<()> {
        if !project.stacks.is_empty() || project.configured || self.state_dir.join("berth.db").exists() {
            return Ok(());
        }
        Err(Error::Usage(format!(
            "{} is not a stacks repository: it has no berth.toml and no stack (a folder with a compose file under \
             {}); run berth in your stacks repository, pass --repo PATH, or add a berth.toml",
            self.repo.root.display(),
            berth_core::discovery::DEFAULT_PATTERNS.join(" or ")
        )))
    }

    /// Load the project at a revision.
    pub fn snapshot(&self, rev: &str) -> Result<Arc<Snapshot>> {
        let cached = |commit: &str| self.cached(commit);
        if is_commit_id(rev)
            && let Some(s) = cached(rev)
        {
            return Ok(s);
        }
        // A full id needs no `rev-parse`: reading its tree fails just as clearly when it is not there.
        let commit = if is_commit_id(rev) { rev.to_string() } else { self.repo.resolve(rev)? };
        if let Some(s) = cached(&commit) {
            return Ok(s);
        }
        let tree = self.repo.tree(&commit)?;
        let text = if tree.contains(config::FILE_NAME) { self.repo.read(&commit, config::FILE_NAME)? } else { None };
        let file = format!("{}@{}", config::FILE_NAME, &commit[..commit.len().min(12)]);
        let project = Project::load(&file, text.as_deref(), &tree).map_err(Error::Config)?;
        let windows = crate::windows::zones(&project).map_err(Error::Config)?;
        let sources = self.sources(&project, &tree)?;
        let refused = berth_core::rollout::check_project(&project, &|f| sources.get(f).map(str::to_string));
        if !refused.is_empty() {
            return Err(Error::Config(refused));
        }
        let snap = Arc::new(Snapshot { commit, tree, project, sources, windows, config: text });
        let mut l = self.cache.snapshots.lock().unwrap_or_else(|p| p.into_inner());
        l.push_front(snap.clone());
        let mut entries: usize = l.iter().map(|s| s.tree.entries().len()).sum();
        while l.len() > 2 && (l.len() > CACHED_SNAPSHOTS || entries > CACHED_ENTRIES) {
            entries -= l.pop_back().map(|s| s.tree.entries().len()).unwrap_or(0);
        }
        Ok(snap)
    }

    /// The compose and env files' text ownership needs: one `git cat-file --batch` per level of
    /// `include`/`extends` for the blobs not already cached.
    fn sources(&self, project: &Project, tree: &Tree) -> Result<Sources> {
        let mut sources = Sources::default();
        // Each round reads what the previous one's includes named; a cycle stops at the paths read.
        for _ in 0..8 {
            let needed = ownership::needed(project, tree, &sources);
            if needed.is_empty() {
                break;
            }
            let with_oid: Vec<(String, &str)> =
                needed.into_iter().filter_map(|p| tree.get(&p).map(|e| (p, e.oid.as_str()))).collect();
            let mut missing = Vec::new();
            {
                let cache = self.cache.blobs.lock().unwrap_or_else(|p| p.into_inner());
                for (path, oid) in &with_oid {
                    match cache.get(*oid) {
                        Some(t) => sources.insert_source(path.clone(), t.clone()),
                        None => missing.push((path.clone(), *oid)),
                    }
                }
            }
            let oids: Vec<&str> = missing.iter().map(|(_, o)| *o).collect();
            let texts = self.repo.blobs(&oids)?;
            let mut cache = self.cache.blobs.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() + texts.len() > CACHED_BLOBS {
                cache.clear();
            }
            for ((path, oid), text) in missing.into_iter().zip(texts) {
                // A file that is no text stays unread: its stack owns its whole folder and says why.
                let source = Arc::new(Source::new(Arc::from(text.unwrap_or_default())));
                cache.insert(oid.to_string(), source.clone());
                sources.insert_source(path, source);
            }
        }
        Ok(sources)
    }

    /// A cached snapshot, moved to the front (the least recently used go first).
    fn cached(&self, commit: &str) -> Option<Arc<Snapshot>> {
        let mut l = self.cache.snapshots.lock().unwrap_or_else(|p| p.into_inner());
        let i = l.iter().position(|s| s.commit == commit)?;
        let s = l.remove(i)?;
        l.push_front(s.clone());
        Some(s)
    }

    /// The paths changed between two commits.
    fn diff(&self, from: &str, to: &str) -> Result<Changes> {
        {
            let l = self.cache.diffs.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((_, _, d)) = l.iter().find(|(f, t, _)| f == from && t == to) {
                return Ok(d.clone());
            }
        }
        // Both trees at hand: comparing their blob ids is the same answer without a git process.
        let d = match (self.cached(from), self.cached(to)) {
            (Some(a), Some(b)) => Arc::new(b.tree.changes_since(&a.tree)),
            _ => Arc::new(self.repo.diff(from, to)?),
        };
        if is_commit_id(from) && is_commit_id(to) {
            remember(&self.cache.diffs, (from.to_string(), to.to_string(), d.clone()), CACHED_DIFFS);
        }
        Ok(d)
    }

    /// Load the project from the work tree, uncommitted edits included (for `validate`).
    pub fn snapshot_worktree(&self) -> Result<Project> {
        let tree = self.repo.worktree_files()?;
        let text = std::fs::read_to_string(self.repo.root.join(config::FILE_NAME)).ok();
        let project = Project::load(config::FILE_NAME, text.as_deref(), &tree).map_err(Error::Config)?;
        let read = |f: &str| std::fs::read_to_string(self.repo.root.join(f)).ok();
        let refused = berth_core::rollout::check_project(&project, &read);
        if !refused.is_empty() {
            return Err(Error::Config(refused));
        }
        crate::windows::zones(&project).map_err(Error::Config)?;
        Ok(project)
    }

    /// Every stack's deploy history, as plans read it. A deploy still `running` whose stack
    /// lock nobody holds was interrupted (its berth died); read-only commands see it as such
    /// without recording anything, and the next apply or controller start settles it.
    pub fn history(&self, state: &State) -> Result<HashMap<String, History>> {
        let mut history = state.summaries()?;
        for (stack, h) in history.iter_mut() {
            if let Some(status) = h.latest
                && self.abandoned(stack, status)?
            {
                h.latest = Some(berth_core::record::DeployStatus::Interrupted);
            }
        }
        Ok(history)
    }

    /// Whether `stack`'s latest deploy, in `status`, was left by a berth that died (`kill -9`,
    /// a crash, a reboot): still `running` while no living berth holds the stack's lock.
    pub fn abandoned(&self, stack: &str, status: berth_core::record::DeployStatus) -> Result<bool> {
        Ok(status == berth_core::record::DeployStatus::Running && crate::lock::orphaned(&self.state_dir, stack))
    }

    /// A job that puts back deploy `last` (its commit, definition and replayable variables).
    pub fn job_for(
        &self,
        last: &berth_core::record::DeployRecord,
        engine: &crate::docker::Engine,
        changed_paths: &[String],
    ) -> Option<crate::deploy::Job> {
        let snap = self.snapshot(&last.commit).ok()?;
        let def = snap.project.stack(&last.stack)?.clone();
        let job = crate::deploy::Job::new(def, last.commit.clone(), engine.clone());
        Some(job.overrides(vars::replayable(&last.overrides)).changed_paths(changed_paths.to_vec()))
    }

    /// What to take down for a stack gone from the repository, from `last`, its last successful deploy
    /// (berth only removes what its own records say it deployed): that commit's definition and server.
    /// Reads git, so callers look `last` up first and do not hold the state store meanwhile.
    pub fn removal(&self, last: berth_core::record::DeployRecord) -> Result<Option<Removal>> {
        let snap = self.snapshot(&last.commit)?;
        let (Some(def), Some(server)) = (snap.project.stack(&last.stack), snap.project.server(&last.server)) else {
            return Ok(None);
        };
        Ok(Some(Removal { stack: def.clone(), server: server.clone(), last }))
    }

    /// The CI gate of `stack` (its own `require_ci`, else its environment's), resolved.
    pub fn ci_gate(&self, project: &Project, stack: &berth_core::Stack) -> Result<Option<crate::ci::Gate>> {
        let Some(ci) = project.ci_gate(stack) else { return Ok(None) };
        let url = self.repo.remote_url();
        crate::ci::Gate::resolve(ci, url.as_deref())
            .map(|g| Some(crate::ci::Gate { public_url: project.dashboard.public_url.clone(), ..g }))
            .map_err(|e| Error::Usage(format!("stack `{}` require_ci: {e}", stack.name)))
    }

    /// Plan a reconcile (`requested = None`) or an explicit deploy of some stacks.
    /// `overrides` are the `--set` variables of an explicit deploy; a reconcile
    /// replays each stack's last successful overrides so pinned variables stick
    /// (all but secret-named ones, which are stored redacted and so cannot be).
    pub fn plan(
        &self,
        snap: &Snapshot,
        history: &HashMap<String, History>,
        requested: Option<&[String]>,
        overrides: &BTreeMap<String, String>,
    ) -> Result<(Plan, VarsByStack)> {
        let mut vars_by_stack = HashMap::new();
        let mut hashed_by_stack = HashMap::new();
        for s in &snap.project.stacks {
            let vars = match requested {
                Some(r) if r.contains(&s.name) => overrides.clone(),
                // Secret values are stored redacted, so they cannot be replayed.
                _ => history.get(&s.name).map(|h| vars::replayable(&h.overrides)).unwrap_or_default(),
            };
            // Secret values stay out of the hash too, so a reconcile that cannot replay
            // them does not count as a change.
            hashed_by_stack.insert(s.name.clone(), vars::replayable(&vars));
            vars_by_stack.insert(s.name.clone(), vars);
        }
        // Ownership sees the same variables the hash does, so the two agree.
        let index = Index::new(&snap.project, &snap.sources, &hashed_by_stack);
        let files = hash::owned_files(&index, &snap.tree);
        let mut hashes = BTreeMap::new();
        let none = BTreeMap::new();
        for (s, f) in snap.project.stacks.iter().zip(&files) {
            let hashed = hashed_by_stack.get(&s.name).unwrap_or(&none);
            hashes.insert(s.name.clone(), hash::stack_hash(s, snap.project.server(&s.server), f, hashed));
        }
        // Paths changed since each stack's last success, one diff per distinct commit.
        let mut by_commit: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for s in &snap.project.stacks {
            if let Some(h) = history.get(&s.name)
                && let Some((commit, prev)) = &h.last_success
                && Some(prev) != hashes.get(&s.name)
                && commit != &snap.commit
            {
                by_commit.entry(commit.as_str()).or_default().push(&s.name);
            }
        }
        let mut touched = BTreeMap::new();
        for (commit, stacks) in by_commit {
            let Ok(changes) = self.diff(commit, &snap.commit) else { continue };
            let mut t = index.touched(&changes);
            for s in stacks {
                if let Some(p) = t.remove(s) {
                    touched.insert(s.to_string(), p);
                }
            }
        }
        // Stacks berth deployed that the repository no longer has.
        let gone: Vec<(String, String)> = history
            .iter()
            .filter(|(name, h)| {
                snap.project.stack(name).is_none()
                    && h.last_success.is_some()
                    && h.latest != Some(berth_core::record::DeployStatus::Removed)
            })
            .map(|(name, h)| (name.clone(), h.server.clone().unwrap_or_default()))
            .collect();
        let mut gone = gone;
        gone.sort();
        let mut plan = plan::build(
            &snap.project,
            &plan::Inputs { commit: &snap.commit, hashes: &hashes, history, touched: &touched, requested, gone: &gone },
        );
        // A stack whose references could not all be resolved owns its whole folder: say so.
        let whole: HashMap<&str, String> = (snap.project.stacks.iter().enumerate())
            .filter_map(|(i, s)| {
                let why = index.owned(i).fallback.as_ref()?;
                Some((s.name.as_str(), format!("owns its whole folder `{}`: {why}", s.path)))
            })
            .collect();
        for step in &mut plan.steps {
            if let Some(note) = whole.get(step.stack.as_str()) {
                let note = note.clone();
                step.detail = Some(match step.detail.take() {
                    Some(d) => format!("{d}; {note}"),
                    None => note,
                });
            }
        }
        Ok((plan, vars_by_stack))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let ok = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.email=t@berth", "-c", "user.name=t", "-c", "commit.gpgsign=false"])
            .args(args)
            .output()
            .map(|o| o.status.success());
        assert!(matches!(ok, Ok(true)), "git {args:?}");
    }

    #[test]
    fn a_commit_is_read_from_git_once() {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q", "-b", "main"]);
        std::fs::create_dir_all(dir.path().join("stacks/web")).unwrap();
        std::fs::write(dir.path().join("stacks/web/compose.yaml"), "services: {}\n").unwrap();
        git(dir.path(), &["add", "-A"]);
        git(dir.path(), &["commit", "-q", "-m", "one"]);
        let ws = Workspace::open(Some(dir.path()), Some(&dir.path().join(".berth"))).unwrap();
        let a = ws.snapshot("HEAD").unwrap();
        let b = ws.snapshot(&a.commit).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "the same commit was loaded twice");
        assert_eq!(b.project.stacks[0].name, "web");
        assert!(is_commit_id(&a.commit) && !is_commit_id("HEAD") && !is_commit_id(&a.commit[..12]));
    }
}
