//! Fuzz target: ownership derived from arbitrary compose and env files (includes, extends,
//! interpolation, merge keys), and the path → stack mapping and hashes built on it.
#![no_main]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arbitrary::Arbitrary;
use berth_core::changes::Index;
use berth_core::ownership::{self, Sources};
use berth_core::{Project, Tree, hash};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    /// Files under `s/`: (repo-relative path after `s/`, text). `s/a/compose.yaml` always exists.
    files: Vec<(String, String)>,
    compose: String,
    /// Deploy variables of stack `a` (as `--set` gives them).
    vars: Vec<(String, String)>,
    /// Paths to look up.
    paths: Vec<String>,
}

fuzz_target!(|input: Input| {
    let mut files: Vec<(String, &str)> = vec![("s/a/compose.yaml".to_string(), input.compose.as_str())];
    for (p, t) in &input.files {
        if !p.is_empty() && !p.starts_with('/') {
            files.push((format!("s/{p}"), t.as_str()));
        }
    }
    let tree = Tree::from_paths(files.iter().map(|(p, _)| p.as_str()));
    let Ok(project) = Project::load("berth.toml", Some("[discovery]\npatterns = [\"s/{stack}/\"]\n"), &tree) else {
        return;
    };
    // What the workspace does: read what `needed` names until nothing is missing (bounded, like it).
    let mut sources = Sources::default();
    for _ in 0..8 {
        let needed = ownership::needed(&project, &tree, &sources);
        if needed.is_empty() {
            break;
        }
        for p in needed {
            let text = files.iter().find(|(f, _)| *f == p).map_or("", |(_, t)| *t);
            sources.insert(p, Arc::from(text));
        }
    }
    let extra: HashMap<String, BTreeMap<String, String>> =
        HashMap::from([("a".to_string(), input.vars.into_iter().collect())]);
    let index = Index::new(&project, &sources, &extra);
    for (i, s) in project.stacks.iter().enumerate() {
        let o = index.owned(i);
        // Owned paths stay inside the repository.
        for (p, _) in o.files.iter().chain(&o.dirs) {
            assert!(!p.starts_with('/') && p.split('/').all(|s| s != ".." && s != "."), "{} owns {p:?}", s.name);
        }
    }
    for p in &input.paths {
        for (i, why) in index.explain(p) {
            assert!(i < project.stacks.len());
            let _ = why.to_string();
        }
    }
    let _ = hash::all(&index, &tree);
});
