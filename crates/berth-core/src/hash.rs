//! Config hash: SHA-256 over a canonical encoding of everything that defines a running stack.
//!
//! Inputs, in order: a format tag, the resolved stack definition (JSON with sorted
//! maps: compose files, env, env files, server, mode, ...), every file the stack
//! owns at the commit as `path NUL blob-id NUL` (what its compose model reads,
//! or its whole folder when that could not be resolved, minus ignored paths;
//! and watched shared files: exactly what `changes::Index` maps to it), and the
//! deploy's extra variables as `key NUL value NUL`. Blob ids are git's content
//! hashes, so the hash is content-addressed without reading any file.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::changes::Index;
use crate::tree::Tree;

const FORMAT: &[u8] = b"berth-config-hash-v1\0";

/// The files each stack owns in `tree`, as (path, oid), indexed like `project.stacks`.
pub fn owned_files<'t>(index: &Index<'_>, tree: &'t Tree) -> Vec<Vec<(&'t str, &'t str)>> {
    let mut files = vec![Vec::new(); index.project().stacks.len()];
    let mut owners = Vec::new();
    for e in tree.entries() {
        owners.clear();
        index.owners(&e.path, &mut owners);
        for &o in &owners {
            let list: &mut Vec<(&str, &str)> = &mut files[o];
            if list.last().map(|l| l.0) != Some(e.path.as_str()) {
                list.push((e.path.as_str(), e.oid.as_str()));
            }
        }
    }
    files
}

/// Hash of one stack given its server, owned files and the deploy's extra variables.
/// The server's definition counts: a new endpoint or new registry credentials redeploy.
pub fn stack_hash(
    stack: &crate::project::Stack,
    server: Option<&crate::project::Server>,
    files: &[(&str, &str)],
    extra_vars: &BTreeMap<String, String>,
) -> String {
    let mut h = Sha256::new();
    h.update(FORMAT);
    // Serialising a struct of strings, vectors and BTreeMaps cannot fail.
    h.update(serde_json::to_vec(stack).unwrap_or_default());
    h.update(b"\0server\0");
    h.update(serde_json::to_vec(&server).unwrap_or_default());
    h.update(b"\0files\0");
    for (path, oid) in files {
        h.update(path.as_bytes());
        h.update(b"\0");
        h.update(oid.as_bytes());
        h.update(b"\0");
    }
    h.update(b"vars\0");
    for (k, v) in extra_vars {
        h.update(k.as_bytes());
        h.update(b"\0");
        h.update(v.as_bytes());
        h.update(b"\0");
    }
    hex::encode(h.finalize())
}

/// Hashes of every stack of the project (no extra variables), by stack name.
pub fn all(index: &Index<'_>, tree: &Tree) -> BTreeMap<String, String> {
    let none = BTreeMap::new();
    let files = owned_files(index, tree);
    let p = index.project();
    p.stacks.iter().zip(&files).map(|(s, f)| (s.name.clone(), stack_hash(s, p.server(&s.server), f, &none))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::Project;
    use crate::tree::TreeEntry;

    fn tree(conf_oid: &str, readme_oid: &str) -> Tree {
        Tree::new(vec![
            TreeEntry { path: "stacks/a/compose.yaml".into(), oid: "1".into() },
            TreeEntry { path: "stacks/a/app.conf".into(), oid: conf_oid.into() },
            TreeEntry { path: "stacks/a/README.md".into(), oid: readme_oid.into() },
            TreeEntry { path: "stacks/b/compose.yaml".into(), oid: "3".into() },
            TreeEntry { path: "libs/x.env".into(), oid: "4".into() },
        ])
    }

    const CFG: &str = "[discovery]\nignore = [\"**/README.md\"]\n[[stack]]\nname = \"b\"\nwatch = [\"libs/**\"]\n";

    fn hashes(t: &Tree, cfg: &str) -> BTreeMap<String, String> {
        let p = Project::load("berth.toml", Some(cfg), t).unwrap();
        all(&Index::new(&p, &crate::ownership::Sources::default(), &std::collections::HashMap::new()), t)
    }

    #[test]
    fn content_changes_change_only_the_owner() {
        let before = hashes(&tree("2", "r"), CFG);
        let after = hashes(&tree("2b", "r"), CFG);
        assert_ne!(before["a"], after["a"]);
        assert_eq!(before["b"], after["b"]);
    }

    #[test]
    fn ignored_files_do_not_count() {
        assert_eq!(hashes(&tree("2", "r"), CFG), hashes(&tree("2", "r2"), CFG));
    }

    #[test]
    fn definitions_and_variables_count() {
        let t = tree("2", "r");
        let before = hashes(&t, CFG);
        let after = hashes(&t, &format!("{CFG}env = {{ TAG = \"2\" }}\n"));
        assert_eq!(before["a"], after["a"]);
        assert_ne!(before["b"], after["b"]);
        let p = Project::load("berth.toml", Some(CFG), &t).unwrap();
        let mut vars = BTreeMap::new();
        vars.insert("APP_TAG".to_string(), "abc".to_string());
        assert_ne!(stack_hash(&p.stacks[0], None, &[], &vars), stack_hash(&p.stacks[0], None, &[], &BTreeMap::new()));
    }

    #[test]
    fn watched_files_count() {
        let mut t = tree("2", "r").entries().to_vec();
        let before = hashes(&Tree::new(t.clone()), CFG);
        t[0].oid = "4b".into();
        assert_eq!(t[0].path, "libs/x.env");
        let after = hashes(&Tree::new(t), CFG);
        assert_ne!(before["b"], after["b"]);
        assert_eq!(before["a"], after["a"]);
    }
}
