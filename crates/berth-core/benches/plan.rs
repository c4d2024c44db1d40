//! Benchmarks of berth's pure planning pipeline on generated repositories.
//!
//! Run with `cargo bench -p berth-core --bench plan` (or `scripts/bench-apply`, which
//! also measures a no-op `apply` end to end). Figures are in `docs/benchmarks.md`.
//!
//! The repository is generated in memory: `stacks` stacks `stacks/s{i}/` with a
//! compose file and config, script, doc and data files, a shared `libs/` folder
//! watched by every tenth stack (declared in `berth.toml` with `watch`, a
//! stack-level `ignore` and an `after` chain), and a global `**/README.md`
//! ignore. A commit touches `paths` evenly spread files (mostly modifications,
//! plus some additions, deletions and renames). Every stack was deployed at the
//! previous commit, so the plan redeploys exactly the stacks the commit touched;
//! each fixture checks that before it is measured.
//!
//! Each stack's compose file runs one service with an `env_file`, bind mounts of
//! `config/`, `secrets/` and `data/` and an interpolated image tag (the override
//! file of every fourth stack bind-mounts a script): so a stack owns what those
//! reference, not its `docs/`, `scripts/` or `Makefile`.
//!
//! `plan` runs the chain `berth apply` / `berth plan` run once git has answered
//! (see `Workspace::plan` in crates/berth/src/workspace.rs): `Project::load`,
//! `Index::new` (which walks every compose file; each text is parsed once, on the first
//! sample, and kept, as the binary keeps it per blob), `hash::owned_files`,
//! `hash::stack_hash` per stack, `Index::touched` for the one diff, `plan::build`.

use std::collections::{BTreeMap, HashMap};

use berth_core::changes::{Change, ChangeKind, Index};
use berth_core::plan::{self, Action, Plan};
use berth_core::record::{DeployStatus, History};
use std::sync::Arc;

use berth_core::ownership::Sources;
use berth_core::{Project, Tree, TreeEntry, hash, vars};
use divan::{Bencher, black_box};

fn main() {
    divan::main();
}

const PREVIOUS: &str = "1111111111111111111111111111111111111111";
const COMMIT: &str = "2222222222222222222222222222222222222222";

/// Files of the shared `libs/` folder.
const LIBS: usize = 20;
/// Files of a stack folder before padding with data files.
const BASE_FILES: usize = 12;
/// The largest commit of the scaling grid: each grid repository holds at least this many files.
const MAX_PATHS: usize = 100_000;

/// A 40-hex blob id, deterministic in (path, version).
fn oid(path: &str, version: u64) -> String {
    // FNV-1a, then two rounds of splitmix64 to fill 160 bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ version.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in path.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let (a, b) = (mix(h), mix(h.wrapping_add(0x9e37_79b9_7f4a_7c15)));
    format!("{a:016x}{b:016x}{:08x}", (a ^ b) as u32)
}

/// Paths of one stack folder: `files` of them (at least [`BASE_FILES`]).
fn stack_files(i: usize, files: usize) -> Vec<String> {
    let dir = format!("stacks/s{i}");
    let mut out: Vec<String> = [
        "compose.yaml",
        ".env",
        "README.md",
        "config/app.conf",
        "config/nginx.conf",
        "config/logging.yaml",
        "docs/notes.md",
        "docs/runbook.md",
        "scripts/init.sh",
        "scripts/healthcheck.sh",
        "secrets/.gitkeep",
        "Makefile",
    ]
    .iter()
    .map(|f| format!("{dir}/{f}"))
    .collect();
    if i.is_multiple_of(4) {
        // Compose loads the override file by default: it becomes a compose file of the stack.
        out[11] = format!("{dir}/compose.override.yaml");
    }
    for j in 0..files.saturating_sub(BASE_FILES) {
        out.push(format!("{dir}/data/d{}/f{j}.json", j % 16));
    }
    out
}

const COMPOSE: &str = "services:
  app:
    image: example/app:${TAG:-1}
    restart: unless-stopped
    env_file: .env
    environment:
      TZ: ${TZ:-UTC}
    volumes:
      - ./config:/etc/app:ro
      - ./secrets:/run/secrets:ro
      - ./data:/data
      - cache:/cache
    healthcheck:
      test: [\"CMD\", \"true\"]
      interval: 10s
volumes:
  cache: {}
";
const OVERRIDE: &str = "services:\n  app:\n    volumes:\n      - ./scripts/init.sh:/init.sh:ro\n";

/// The text of the compose files and `.env`s of `tree`, as the binary reads them from git.
fn sources(tree: &Tree) -> Sources {
    let (compose, over, env): (Arc<str>, Arc<str>, Arc<str>) = (COMPOSE.into(), OVERRIDE.into(), "TAG=1\n".into());
    let mut s = Sources::default();
    for e in tree.entries() {
        let text = match e.path.rsplit('/').next() {
            Some("compose.yaml") => &compose,
            Some("compose.override.yaml") => &over,
            Some(".env") => &env,
            _ => continue,
        };
        s.insert(e.path.clone(), text.clone());
    }
    s
}

fn index_of<'p>(p: &'p Project, sources: &Sources) -> Index<'p> {
    Index::new(p, sources, &HashMap::new())
}

/// `berth.toml`: a global ignore, and every tenth stack declared with a watch on
/// `libs/**`, its own ignore, an env and a dependency on the previous declared one.
fn config(stacks: usize) -> String {
    let mut t = String::from(
        "[berth]\nmax_parallel = 4\n\n[discovery]\npatterns = [\"stacks/{stack}/\"]\nignore = [\"**/README.md\", \"**/*.swp\"]\n",
    );
    for i in (0..stacks).step_by(10) {
        t.push_str(&format!(
            "\n[[stack]]\nname = \"s{i}\"\nwatch = [\"libs/**\"]\nignore = [\"docs/**\"]\nenv = {{ TZ = \"UTC\", REPLICAS = \"{}\" }}\n",
            i % 3 + 1
        ));
        if i >= 10 {
            t.push_str(&format!("after = [\"s{}\"]\n", i - 10));
        }
    }
    t
}

/// Everything the planner is given for one run, as the binary would have it after talking to git.
struct Fixture {
    config: String,
    tree: Tree,
    sources: Sources,
    history: HashMap<String, History>,
    changes: Vec<Change>,
}

impl Fixture {
    /// `stacks` stacks of `files` files each (plus `libs/`), and a commit touching `paths` of them.
    fn new(stacks: usize, files: usize, paths: usize) -> Fixture {
        let config = config(stacks);
        let mut all: Vec<String> = (0..LIBS).map(|j| format!("libs/lib{j}/common.env")).collect();
        for i in 0..stacks {
            all.extend(stack_files(i, files));
        }
        all.sort();
        assert!(all.len() >= paths, "a tree of {} files cannot have {paths} changed", all.len());

        // Spread the changed paths evenly over the tree; a few are additions,
        // deletions and renames (never of a compose file, which keeps the old
        // commit a valid project too).
        let mut new_tree: Vec<TreeEntry> = Vec::with_capacity(all.len());
        let mut old_tree: Vec<TreeEntry> = Vec::with_capacity(all.len());
        let mut changes = Vec::with_capacity(paths);
        let mut next = 0;
        for (k, path) in all.iter().enumerate() {
            let changed = paths > 0 && next < paths && k == (2 * next + 1) * all.len() / (2 * paths);
            if !changed {
                let oid = oid(path, 0);
                new_tree.push(TreeEntry { path: path.clone(), oid: oid.clone() });
                old_tree.push(TreeEntry { path: path.clone(), oid });
                continue;
            }
            let compose = path.ends_with(".yaml") && path.rsplit('/').next().is_some_and(|f| f.starts_with("compose"));
            let kind = match next % 50 {
                _ if compose => ChangeKind::Modified,
                47 => ChangeKind::Added,
                48 => ChangeKind::Deleted,
                49 => ChangeKind::Renamed,
                _ => ChangeKind::Modified,
            };
            next += 1;
            match kind {
                ChangeKind::Added => {
                    new_tree.push(TreeEntry { path: path.clone(), oid: oid(path, 1) });
                    changes.push(Change { kind, path: path.clone(), old_path: None });
                }
                ChangeKind::Deleted => {
                    // The file stays; a sibling backup that existed before is what was deleted.
                    let gone = format!("{path}.bak");
                    new_tree.push(TreeEntry { path: path.clone(), oid: oid(path, 0) });
                    old_tree.push(TreeEntry { path: path.clone(), oid: oid(path, 0) });
                    old_tree.push(TreeEntry { path: gone.clone(), oid: oid(&gone, 0) });
                    changes.push(Change { kind, path: gone, old_path: None });
                }
                ChangeKind::Renamed => {
                    let from = format!("{path}.orig");
                    new_tree.push(TreeEntry { path: path.clone(), oid: oid(path, 0) });
                    old_tree.push(TreeEntry { path: from.clone(), oid: oid(path, 0) });
                    changes.push(Change { kind, path: path.clone(), old_path: Some(from) });
                }
                _ => {
                    new_tree.push(TreeEntry { path: path.clone(), oid: oid(path, 1) });
                    old_tree.push(TreeEntry { path: path.clone(), oid: oid(path, 0) });
                    changes.push(Change { kind, path: path.clone(), old_path: None });
                }
            }
        }
        assert_eq!(changes.len(), paths);

        // Every stack succeeded at the previous commit.
        let old_tree = Tree::new(old_tree);
        let old = Project::load("berth.toml", Some(&config), &old_tree).expect("generated config is valid");
        let history = hash::all(&index_of(&old, &sources(&old_tree)), &old_tree)
            .into_iter()
            .map(|(name, h)| {
                let hist = History {
                    last_success: Some((PREVIOUS.to_string(), h)),
                    latest: Some(DeployStatus::Succeeded),
                    ..Default::default()
                };
                (name, hist)
            })
            .collect();
        let tree = Tree::new(new_tree);
        let f = Fixture { config, sources: sources(&tree), tree, history, changes };
        f.check(stacks);
        f
    }

    /// The plan must redeploy exactly the stacks the commit touched, for the paths that touched them.
    fn check(&self, stacks: usize) {
        let plan = plan(self);
        assert_eq!(plan.steps.len(), stacks);
        let project = Project::load("berth.toml", Some(&self.config), &self.tree).unwrap();
        let touched = index_of(&project, &self.sources).touched(&self.changes);
        let deployed: BTreeMap<&str, &[String]> =
            plan.to_deploy().map(|s| (s.stack.as_str(), s.paths.as_slice())).collect();
        let expected: BTreeMap<&str, &[String]> = touched.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
        assert_eq!(deployed, expected);
        assert!(plan.steps.iter().all(|s| matches!(s.action, Action::Deploy | Action::Skip)));
    }
}

/// The planning chain of `Workspace::plan` for a reconcile (`berth apply`), without git.
fn plan(f: &Fixture) -> Plan {
    let project = Project::load("berth.toml", Some(&f.config), &f.tree).expect("valid project");
    let mut vars_by_stack: HashMap<String, BTreeMap<String, String>> = HashMap::new();
    let mut hashed_by_stack: HashMap<String, BTreeMap<String, String>> = HashMap::new();
    for s in &project.stacks {
        let vars: BTreeMap<String, String> = f
            .history
            .get(&s.name)
            .map(|h| h.overrides.iter().filter(|(k, _)| !vars::is_secret_key(k)))
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let hashed: BTreeMap<String, String> =
            vars.iter().filter(|(k, _)| !vars::is_secret_key(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
        hashed_by_stack.insert(s.name.clone(), hashed);
        vars_by_stack.insert(s.name.clone(), vars);
    }
    let index = Index::new(&project, &f.sources, &hashed_by_stack);
    let files = hash::owned_files(&index, &f.tree);
    let mut hashes = BTreeMap::new();
    for (s, owned) in project.stacks.iter().zip(&files) {
        hashes.insert(s.name.clone(), hash::stack_hash(s, project.server(&s.server), owned, &hashed_by_stack[&s.name]));
    }
    // Stacks whose hash moved since their last success, grouped by that success's commit.
    let mut by_commit: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in &project.stacks {
        if let Some(h) = f.history.get(&s.name)
            && let Some((commit, prev)) = &h.last_success
            && Some(prev) != hashes.get(&s.name)
            && commit != COMMIT
        {
            by_commit.entry(commit.as_str()).or_default().push(&s.name);
        }
    }
    let mut touched = BTreeMap::new();
    for (_commit, stacks) in by_commit {
        // The binary asks git for the diff from `_commit` here; the fixture holds it.
        let mut t = index.touched(&f.changes);
        for s in stacks {
            if let Some(p) = t.remove(s) {
                touched.insert(s.to_string(), p);
            }
        }
    }
    black_box(&vars_by_stack);
    plan::build(
        &project,
        &plan::Inputs {
            commit: COMMIT,
            hashes: &hashes,
            history: &f.history,
            touched: &touched,
            requested: None,
            gone: &[],
        },
    )
}

/// Files per stack of the scaling grid: enough for the largest commit, at least [`BASE_FILES`].
fn grid_files(stacks: usize) -> usize {
    BASE_FILES.max(MAX_PATHS.div_ceil(stacks))
}

/// The acceptance figure: 1,000 stacks, a commit touching 10,000 files. With 12
/// files per stack (12,020 files, the commit touching 83% of them) and with 100
/// (100,020 files, the grid's 1,000-stack repository).
#[divan::bench(args = [12, 100], sample_count = 30)]
fn plan_1000_stacks_10000_paths(bencher: Bencher, files_per_stack: usize) {
    let f = Fixture::new(1_000, files_per_stack, 10_000);
    bencher.bench(|| plan(black_box(&f)));
}

/// Scaling: the whole planning chain for stacks × changed paths. The repository
/// of each stack count is the same whatever the commit size (see [`grid_files`]).
#[divan::bench(consts = [100, 1_000, 10_000], args = [1, 1_000, 100_000], sample_count = 10)]
fn plan_grid<const STACKS: usize>(bencher: Bencher, paths: usize) {
    let f = Fixture::new(STACKS, grid_files(STACKS), paths);
    bencher.bench(|| plan(black_box(&f)));
}

/// Scaling of the path → stack mapping alone (`Index::touched`, index built beforehand).
#[divan::bench(consts = [100, 1_000, 10_000], args = [1, 1_000, 100_000], sample_count = 20)]
fn touched_grid<const STACKS: usize>(bencher: Bencher, paths: usize) {
    let f = Fixture::new(STACKS, grid_files(STACKS), paths);
    let project = Project::load("berth.toml", Some(&f.config), &f.tree).unwrap();
    let index = index_of(&project, &f.sources);
    bencher.bench(|| index.touched(black_box(&f.changes)));
}

/// Each stage of the chain alone, for 1,000 and 10,000 stacks of 12 files and a
/// commit touching 10,000 paths.
#[divan::bench_group(sample_count = 20)]
mod stages {
    use super::*;

    fn fixture(stacks: usize) -> Fixture {
        Fixture::new(stacks, BASE_FILES, 10_000)
    }

    #[divan::bench(consts = [1_000, 10_000])]
    fn load<const STACKS: usize>(bencher: Bencher) {
        let f = fixture(STACKS);
        bencher.bench(|| Project::load("berth.toml", Some(black_box(&f.config)), black_box(&f.tree)).unwrap());
    }

    /// `load` with a `berth.toml` that declares no `[[stack]]` (discovery and defaults only).
    #[divan::bench(consts = [1_000, 10_000])]
    fn load_undeclared<const STACKS: usize>(bencher: Bencher) {
        let f = fixture(STACKS);
        let config = &f.config[..f.config.find("[[stack]]").unwrap_or(f.config.len())];
        bencher.bench(|| Project::load("berth.toml", Some(black_box(config)), black_box(&f.tree)).unwrap());
    }

    /// Every compose file parsed before, as the binary keeps each parse by blob id.
    #[divan::bench(consts = [1_000, 10_000])]
    fn index<const STACKS: usize>(bencher: Bencher) {
        let f = fixture(STACKS);
        let p = Project::load("berth.toml", Some(&f.config), &f.tree).unwrap();
        bencher.bench(|| {
            black_box(index_of(black_box(&p), &f.sources));
        });
    }

    /// `index` for texts never parsed before (a commit that changed every compose file).
    #[divan::bench(consts = [1_000, 10_000])]
    fn index_unparsed<const STACKS: usize>(bencher: Bencher) {
        let f = fixture(STACKS);
        let p = Project::load("berth.toml", Some(&f.config), &f.tree).unwrap();
        bencher.with_inputs(|| sources(&f.tree)).bench_refs(|s| {
            black_box(index_of(black_box(&p), s));
        });
    }

    #[divan::bench(consts = [1_000, 10_000])]
    fn owned_files<const STACKS: usize>(bencher: Bencher) {
        let f = fixture(STACKS);
        let p = Project::load("berth.toml", Some(&f.config), &f.tree).unwrap();
        let idx = index_of(&p, &f.sources);
        bencher.bench(|| hash::owned_files(&idx, black_box(&f.tree)).len());
    }

    #[divan::bench(consts = [1_000, 10_000])]
    fn stack_hashes<const STACKS: usize>(bencher: Bencher) {
        let f = fixture(STACKS);
        let p = Project::load("berth.toml", Some(&f.config), &f.tree).unwrap();
        let idx = index_of(&p, &f.sources);
        let files = hash::owned_files(&idx, &f.tree);
        let none = BTreeMap::new();
        bencher.bench(|| {
            p.stacks
                .iter()
                .zip(&files)
                .map(|(s, owned)| hash::stack_hash(s, p.server(&s.server), owned, &none))
                .collect::<Vec<_>>()
        });
    }

    #[divan::bench(consts = [1_000, 10_000])]
    fn touched<const STACKS: usize>(bencher: Bencher) {
        let f = fixture(STACKS);
        let p = Project::load("berth.toml", Some(&f.config), &f.tree).unwrap();
        let idx = index_of(&p, &f.sources);
        bencher.bench(|| idx.touched(black_box(&f.changes)));
    }

    #[divan::bench(consts = [1_000, 10_000])]
    fn build<const STACKS: usize>(bencher: Bencher) {
        let f = fixture(STACKS);
        let p = Project::load("berth.toml", Some(&f.config), &f.tree).unwrap();
        let idx = index_of(&p, &f.sources);
        let hashes = hash::all(&idx, &f.tree);
        let touched = idx.touched(&f.changes);
        bencher.bench(|| {
            plan::build(
                &p,
                &plan::Inputs {
                    commit: COMMIT,
                    hashes: &hashes,
                    history: &f.history,
                    touched: &touched,
                    requested: None,
                    gone: &[],
                },
            )
        });
    }
}
