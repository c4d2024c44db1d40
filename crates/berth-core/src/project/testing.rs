//! The one test helper of the project phases: load a `berth.toml` text against a tree and check the outcome.

use super::Project;
use crate::tree::Tree;

/// The repository most tests load against: two stacks of server `onyx`, one by convention, one outside it.
pub const TREE: &[&str] = &[
    "nodes/onyx/caddy/compose.yaml",
    "nodes/onyx/quartermaster/compose.yaml",
    "nodes/onyx/quartermaster/.env",
    "stacks/web/compose.yaml",
    "bootstrap/op-connect/compose.yaml",
    "libs/common.env",
];

/// [`check_in`] against [`TREE`].
pub fn check(toml: &str, expect: &[&str]) -> Option<Project> {
    check_in(TREE, toml, expect)
}

/// Load `toml` (empty: no `berth.toml` at all) against a tree of `paths`. With nothing expected it must load,
/// and the project is returned. Otherwise loading must fail with one error per expected fragment, in order,
/// each found in the error's text (`file:line:col: message`) or its help.
pub fn check_in(paths: &[&str], toml: &str, expect: &[&str]) -> Option<Project> {
    let text = (!toml.is_empty()).then_some(toml);
    match Project::load("berth.toml", text, &Tree::from_paths(paths.iter().copied())) {
        Ok(p) => {
            assert!(expect.is_empty(), "loaded, but expected errors {expect:#?}");
            Some(p)
        }
        Err(errors) => {
            let texts: Vec<String> = errors
                .iter()
                .map(|e| match &e.help {
                    Some(h) => format!("{e} (help: {h})"),
                    None => e.to_string(),
                })
                .collect();
            assert_eq!(texts.len(), expect.len(), "errors: {texts:#?}");
            for (t, x) in texts.iter().zip(expect) {
                assert!(t.contains(x), "expected {x:?} in {t:?}; errors: {texts:#?}");
            }
            None
        }
    }
}
