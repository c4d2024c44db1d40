//! Fuzz target: `berth.toml` parsing and full project validation against a repository tree.
//!
//! Input: the text of `berth.toml`, then optionally a NUL byte and the tree's file paths, one a line
//! (TOML text cannot contain NUL, so the split is unambiguous).
#![no_main]

use berth_core::changes::{Change, ChangeKind, Index};
use berth_core::ownership::Sources;
use berth_core::project::valid_name;
use berth_core::{Project, Tree, dag, hash};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (toml, paths) = text.split_once('\0').unwrap_or((text, ""));
    let tree = Tree::from_paths(paths.lines().filter(|p| !p.is_empty()));
    let project = match Project::load("berth.toml", Some(toml), &tree) {
        Ok(p) => p,
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in errors {
                let _ = e.to_string();
            }
            return;
        }
    };
    // A project that exists is valid.
    for pair in project.stacks.windows(2) {
        assert!(pair[0].name < pair[1].name, "stacks not sorted and unique: {} {}", pair[0].name, pair[1].name);
    }
    for s in &project.stacks {
        assert!(valid_name(&s.name), "{:?}", s.name);
        assert!(!s.compose_files.is_empty(), "{}", s.name);
        assert!(project.server(&s.server).is_some(), "{}: server {}", s.name, s.server);
        assert!(project.stack(&s.name).is_some());
        for p in std::iter::once(&s.path).chain(&s.compose_files).chain(&s.env_files) {
            assert!(inside(p), "{}: path {p:?} leaves the repository", s.name);
        }
        for d in &s.after {
            assert!(project.stack(d).is_some() && d != &s.name, "{}: after {d}", s.name);
        }
    }
    let order = dag::order(&project.stacks).expect("a valid project has no cycle");
    assert_eq!(order.len(), project.stacks.len());
    // Everything downstream of loading accepts any valid project.
    let index = Index::new(&project, &Sources::default(), &Default::default());
    let hashes = hash::all(&index, &tree);
    assert_eq!(hashes.len(), project.stacks.len());
    let changes: Vec<Change> = tree
        .entries()
        .iter()
        .map(|e| Change { kind: ChangeKind::Modified, path: e.path.clone(), old_path: None })
        .collect();
    for name in index.touched(&changes).keys() {
        assert!(project.stack(name).is_some());
    }
});

fn inside(path: &str) -> bool {
    !path.starts_with('/') && !path.contains('\\') && path.split('/').all(|s| s != ".." && s != ".")
}
