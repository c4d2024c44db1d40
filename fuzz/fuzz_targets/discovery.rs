//! Fuzz target: discovery patterns, repo-relative path arithmetic and the path → stack mapping of changed files.
#![no_main]

use arbitrary::Arbitrary;
use berth_core::changes::{Change, ChangeKind, Index, glob};
use berth_core::ownership::Sources;
use berth_core::discovery::{COMPOSE_NAMES, Pattern, discover};
use berth_core::tree::{join, parent};
use berth_core::{Project, Tree};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    patterns: Vec<String>,
    /// Files of the tree; `compose` appends a compose file name so stacks exist.
    files: Vec<(String, Option<u8>)>,
    ignore: Vec<String>,
    /// Declared stacks: (folder, watch globs, ignore globs).
    stacks: Vec<(String, Vec<String>, Vec<String>)>,
    /// Changed paths: (status letter, path, old path of a rename).
    changes: Vec<(u8, String, Option<String>)>,
    /// A base folder and relative paths for `tree::join`.
    join: (String, Vec<String>),
}

/// A TOML basic string.
fn q(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn list(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|s| q(s)).collect::<Vec<_>>().join(", "))
}

fuzz_target!(|input: Input| {
    // Patterns alone: a match names one segment as the stack, and consumes the whole folder.
    let files: Vec<String> = input
        .files
        .iter()
        .map(|(p, c)| match c {
            Some(i) => format!("{p}/{}", COMPOSE_NAMES[usize::from(*i) % COMPOSE_NAMES.len()]),
            None => p.clone(),
        })
        .collect();
    let tree = Tree::from_paths(files.iter().map(String::as_str));
    let patterns: Vec<Pattern> = input.patterns.iter().filter_map(|p| Pattern::parse(p).ok()).collect();
    for p in &patterns {
        for f in &files {
            let dir = parent(f);
            if let Some((stack, server)) = p.matches(dir) {
                assert!(!stack.contains('/') && server.is_none_or(|s| !s.contains('/')), "{} {dir}", p.text);
            }
        }
    }
    for d in discover(&tree, &patterns) {
        assert!(!d.compose_files.is_empty(), "{d:?}");
        for f in &d.compose_files {
            assert!(tree.contains(f) && parent(f) == d.path, "{d:?}");
        }
    }

    // Joins never leave the repository.
    let (base, rels) = &input.join;
    for rel in rels {
        if let Some(j) = join(base, rel) {
            assert!(!j.starts_with('/') && j.split('/').all(|s| s != ".." && s != "."), "{base:?} + {rel:?} = {j:?}");
        }
    }
    for f in &files {
        let under = tree.under(parent(f));
        assert!(under.iter().all(|e| e.path.starts_with(parent(f))));
    }

    // The mapping, through a project built from the input.
    let mut text = String::new();
    text.push_str(&format!("[discovery]\npatterns = {}\nignore = {}\n", list(&input.patterns), list(&input.ignore)));
    for (path, watch, ignore) in &input.stacks {
        text.push_str(&format!("[[stack]]\npath = {}\nwatch = {}\nignore = {}\n", q(path), list(watch), list(ignore)));
    }
    let Ok(project) = Project::load("berth.toml", Some(&text), &tree) else { return };
    let index = Index::new(&project, &Sources::default(), &Default::default());
    let changes: Vec<Change> = input
        .changes
        .iter()
        .map(|(k, p, old)| Change {
            kind: ChangeKind::from_status(&char::from(*k).to_string()),
            path: p.clone(),
            old_path: old.clone(),
        })
        .collect();
    let touched = index.touched(&changes);
    for (name, paths) in &touched {
        assert!(project.stack(name).is_some());
        assert!(!paths.is_empty() && paths.windows(2).all(|w| w[0] < w[1]), "{name}: {paths:?}");
        for p in paths {
            assert!(changes.iter().any(|c| &c.path == p || c.old_path.as_ref() == Some(p)), "{p}");
        }
    }
    // A changed compose file of a stack always touches it, whatever the ignore globs say.
    let project_ignored = |p: &str| project.ignore.iter().any(|g| glob(g).is_ok_and(|m| m.is_match(p)));
    for c in &changes {
        for s in &project.stacks {
            if s.compose_files.contains(&c.path)
                && !project_ignored(&c.path)
                && deepest(&project, &c.path) == Some(&s.path)
            {
                assert!(
                    touched.get(&s.name).is_some_and(|ps| ps.contains(&c.path)),
                    "{} not touched by {}",
                    s.name,
                    c.path
                );
            }
        }
    }
});

/// The deepest stack folder that holds `path`.
fn deepest<'p>(project: &'p Project, path: &str) -> Option<&'p String> {
    project
        .stacks
        .iter()
        .map(|s| &s.path)
        .filter(|d| path.len() > d.len() && path.starts_with(d.as_str()) && path.as_bytes()[d.len()] == b'/')
        .max_by_key(|d| d.len())
}
