//! Path → stack mapping: which stacks a set of changed paths touches, and why.
//!
//! A path belongs to a stack when the stack's compose model uses it (see
//! [`crate::ownership`]: compose files, env files, bind mounts, build contexts,
//! ...), when it lies in the stack's folder and the stack could not resolve
//! its references (the deepest stack folder wins for nested stacks), or when
//! it matches one of the stack's `watch` globs. Ignore globs exclude what lies
//! in owned folders, never a file a stack names. Lookups cost two hash probes
//! per directory level plus one glob-set match, so mapping is linear in the
//! number of changed paths.

use std::collections::{BTreeMap, HashMap};

use globset::{GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
use serde::Serialize;

use crate::ownership::{self, Kind, Owned, Sources, Why};
use crate::project::Project;

/// Compile a glob where `*` stays inside one path segment and `**` crosses them.
pub fn glob(pattern: &str) -> Result<GlobMatcher, String> {
    build(pattern).map(|g| g.compile_matcher())
}

fn build(pattern: &str) -> Result<globset::Glob, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| format!("invalid glob `{pattern}`: {e}"))
}

fn set<'a>(patterns: impl IntoIterator<Item = &'a String>) -> GlobSet {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        // Patterns were validated when the project was loaded.
        if let Ok(g) = build(p) {
            b.add(g);
        }
    }
    b.build().unwrap_or_else(|_| GlobSet::empty())
}

/// What git says happened to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
    Renamed,
    Copied,
    TypeChanged,
}

impl ChangeKind {
    /// From the status letter of `git diff --name-status`.
    pub fn from_status(status: &str) -> ChangeKind {
        match status.chars().next() {
            Some('A') => ChangeKind::Added,
            Some('D') => ChangeKind::Deleted,
            Some('R') => ChangeKind::Renamed,
            Some('C') => ChangeKind::Copied,
            Some('T') => ChangeKind::TypeChanged,
            _ => ChangeKind::Modified,
        }
    }
}

/// One changed path; renames and copies also carry the old path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub kind: ChangeKind,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_path: Option<String>,
}

/// Precomputed lookup structures for one project.
pub struct Index<'p> {
    project: &'p Project,
    owned: Vec<Owned>,
    /// Single files a stack references: (stack, index into its `owned.files`).
    files: HashMap<String, Vec<(usize, usize)>>,
    /// Paths owned with everything under them: (stack, index into its `owned.dirs`).
    dirs: HashMap<String, Vec<(usize, usize)>>,
    /// Every stack folder, with the stacks that own it whole (their references fell short).
    folders: HashMap<&'p str, Vec<usize>>,
    watch: GlobSet,
    watch_owner: Vec<(usize, &'p str)>,
    ignore: GlobSet,
    stack_ignore: Vec<Option<GlobSet>>,
}

/// How a path came to belong to a stack (see [`Index::explain`]).
enum Via<'a> {
    File(usize),
    Dir(usize),
    Folder,
    Watch(&'a str),
}

impl<'p> Index<'p> {
    /// The index of `project`, whose ownership comes from the compose files' text in `sources`
    /// interpolated with each stack's `extra` variables (see [`crate::ownership`]).
    pub fn new(
        project: &'p Project,
        sources: &Sources,
        extra: &HashMap<String, BTreeMap<String, String>>,
    ) -> Index<'p> {
        Index::with(project, ownership::derive(project, sources, extra))
    }

    /// The index of `project` with ownership already derived (indexed like `project.stacks`).
    pub fn with(project: &'p Project, owned: Vec<Owned>) -> Index<'p> {
        let mut files: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        let mut dirs: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        let mut folders: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut watch_owner = Vec::new();
        let mut watch_patterns = Vec::new();
        let mut stack_ignore = Vec::new();
        for (i, (s, o)) in project.stacks.iter().zip(&owned).enumerate() {
            let whole = folders.entry(s.path.as_str()).or_default();
            if o.fallback.is_some() {
                whole.push(i);
            }
            for (n, (f, _)) in o.files.iter().enumerate() {
                files.entry(f.clone()).or_default().push((i, n));
            }
            for (n, (d, _)) in o.dirs.iter().enumerate() {
                dirs.entry(d.clone()).or_default().push((i, n));
            }
            for w in &s.watch {
                watch_patterns.push(w);
                watch_owner.push((i, w.as_str()));
            }
            stack_ignore.push((!s.ignore.is_empty()).then(|| set(&s.ignore)));
        }
        Index {
            project,
            owned,
            files,
            dirs,
            folders,
            watch: set(watch_patterns),
            watch_owner,
            ignore: set(&project.ignore),
            stack_ignore,
        }
    }

    pub fn project(&self) -> &'p Project {
        self.project
    }

    /// What stack `i` owns, and why.
    pub fn owned(&self, i: usize) -> &Owned {
        &self.owned[i]
    }

    /// Push the index of every stack `path` belongs to onto `out` (may repeat).
    pub fn owners(&self, path: &str, out: &mut Vec<usize>) {
        self.visit(path, &mut |s, _| out.push(s));
    }

    /// Every stack `path` belongs to, with why (a stack may own it for several reasons).
    pub fn explain(&self, path: &str) -> Vec<(usize, Why)> {
        let mut out = Vec::new();
        self.visit(path, &mut |s, via| {
            let why = match via {
                Via::File(n) => self.owned[s].files[n].1.clone(),
                Via::Dir(n) => self.owned[s].dirs[n].1.clone(),
                Via::Folder => Why::new(Kind::Folder, self.owned[s].fallback.as_deref(), None),
                Via::Watch(g) => Why::new(Kind::Watch, Some(g), Some("berth.toml")),
            };
            if !out.contains(&(s, why.clone())) {
                out.push((s, why));
            }
        });
        out
    }

    /// Files a stack references are its own whatever the ignore globs say; what lies in an owned
    /// folder counts unless an ignore glob (global, or the stack's, relative to its folder) excludes it.
    fn visit<'a>(&'a self, path: &str, f: &mut dyn FnMut(usize, Via<'a>)) {
        if let Some(owners) = self.files.get(path) {
            for &(s, n) in owners {
                f(s, Via::File(n));
            }
        }
        if self.ignore.is_match(path) {
            return;
        }
        let ignored = |s: usize| {
            let dir = self.project.stacks[s].path.as_str();
            in_dir(path, dir) && self.stack_ignore[s].as_ref().is_some_and(|g| g.is_match(&path[dir.len() + 1..]))
        };
        let mut level = path;
        let mut folder_found = false;
        loop {
            if let Some(owners) = self.dirs.get(level) {
                for &(s, n) in owners {
                    if !ignored(s) {
                        f(s, Via::Dir(n));
                    }
                }
            }
            // The deepest stack folder above the path is the only one that may own it whole.
            if level.len() < path.len()
                && !folder_found
                && let Some(whole) = self.folders.get(level)
            {
                folder_found = true;
                for &s in whole {
                    if !ignored(s) {
                        f(s, Via::Folder);
                    }
                }
            }
            match level.rfind('/') {
                Some(i) => level = &level[..i],
                None if !level.is_empty() => level = "",
                None => break,
            }
        }
        if !self.watch_owner.is_empty() {
            for m in self.watch.matches(path) {
                let (s, g) = self.watch_owner[m];
                f(s, Via::Watch(g));
            }
        }
    }

    /// Stacks touched by `changes`, each with the paths (old and new sides) that touched it.
    pub fn touched(&self, changes: &[Change]) -> BTreeMap<String, Vec<String>> {
        let mut hits: Vec<Vec<&str>> = vec![Vec::new(); self.project.stacks.len()];
        let mut owners = Vec::new();
        for c in changes {
            for p in std::iter::once(c.path.as_str()).chain(c.old_path.as_deref()) {
                owners.clear();
                self.owners(p, &mut owners);
                for &o in &owners {
                    if hits[o].last() != Some(&p) {
                        hits[o].push(p);
                    }
                }
            }
        }
        hits.into_iter()
            .enumerate()
            .filter(|(_, h)| !h.is_empty())
            .map(|(i, h)| {
                let mut paths: Vec<String> = h.into_iter().map(str::to_string).collect();
                paths.sort();
                paths.dedup();
                (self.project.stacks[i].name.clone(), paths)
            })
            .collect()
    }
}

fn in_dir(path: &str, dir: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

/// Names of stacks whose definition differs between two versions of the project
/// (new stacks included). Used when `berth.toml` itself changed.
pub fn redefined(old: &Project, new: &Project) -> Vec<String> {
    new.stacks
        .iter()
        .filter(|s| old.stack(&s.name).map(definition) != Some(definition(s)))
        .map(|s| s.name.clone())
        .collect()
}

/// The canonical definition of a stack: what it is, not where it was written.
fn definition(s: &crate::project::Stack) -> Vec<u8> {
    serde_json::to_vec(s).unwrap_or_default()
}

/// Names of stacks present in `old` and gone from `new`.
pub fn removed(old: &Project, new: &Project) -> Vec<String> {
    old.stacks.iter().filter(|s| new.stack(&s.name).is_none()).map(|s| s.name.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Tree;

    fn project() -> Project {
        let tree = Tree::from_paths([
            "stacks/app/compose.yaml",
            "stacks/app/nginx.conf",
            "stacks/app/README.md",
            "stacks/app/docs/x.md",
            "stacks/db/compose.yaml",
            "stacks/db/nested/compose.yaml",
            "stacks/web/compose.yaml",
            "libs/common.env",
            "libs/sub/deep.env",
            "shared/web.yaml",
        ]);
        let cfg = r#"
[discovery]
patterns = ["stacks/{stack}/", "stacks/db/{stack}/"]
ignore = ["**/README.md"]
[[stack]]
name = "app"
watch = ["libs/*"]
ignore = ["docs/**"]
[[stack]]
name = "web"
compose = ["compose.yaml", "../../shared/web.yaml"]
watch = ["libs/**"]
"#;
        Project::load("berth.toml", Some(cfg), &tree).unwrap()
    }

    fn index(p: &Project) -> Index<'_> {
        Index::new(p, &Sources::default(), &HashMap::new())
    }

    fn ch(kind: ChangeKind, path: &str, old: Option<&str>) -> Change {
        Change { kind, path: path.into(), old_path: old.map(Into::into) }
    }

    #[test]
    fn maps_paths_to_stacks() {
        let p = project();
        let idx = index(&p);
        let t = idx.touched(&[
            ch(ChangeKind::Modified, "stacks/app/nginx.conf", None),
            ch(ChangeKind::Modified, "stacks/app/README.md", None),
            ch(ChangeKind::Modified, "stacks/app/docs/x.md", None),
            ch(ChangeKind::Modified, "stacks/db/nested/compose.yaml", None),
        ]);
        assert_eq!(t.keys().collect::<Vec<_>>(), ["nested", "app"].iter().rev().collect::<Vec<_>>());
        assert_eq!(t["app"], ["stacks/app/nginx.conf"]);
    }

    #[test]
    fn watch_globs_do_not_cross_slashes_with_one_star() {
        let p = project();
        let idx = index(&p);
        let t = idx.touched(&[ch(ChangeKind::Modified, "libs/sub/deep.env", None)]);
        assert_eq!(t.keys().collect::<Vec<_>>(), ["web"]);
        let t = idx.touched(&[ch(ChangeKind::Modified, "libs/common.env", None)]);
        assert_eq!(t.keys().collect::<Vec<_>>(), ["app", "web"]);
    }

    #[test]
    fn renames_touch_both_sides_and_external_compose_files_count() {
        let p = project();
        let idx = index(&p);
        let t = idx.touched(&[
            ch(ChangeKind::Renamed, "stacks/web/x.conf", Some("stacks/app/x.conf")),
            ch(ChangeKind::Modified, "shared/web.yaml", None),
        ]);
        assert_eq!(t["app"], ["stacks/app/x.conf"]);
        assert_eq!(t["web"], ["shared/web.yaml", "stacks/web/x.conf"]);
    }

    #[test]
    fn redefinitions_are_detected() {
        let a = project();
        let mut b = a.clone();
        b.stacks[0].env.insert("X".into(), "1".into());
        assert_eq!(redefined(&a, &b), [b.stacks[0].name.clone()]);
        assert!(removed(&a, &b).is_empty());
    }
}
