//! Discovery by `[discovery]` patterns, merged with the declared `[[stack]]` entries that refine or add stacks.

use std::collections::HashMap;

use super::Source;
use super::defaults::Defaults;
use super::entry;
use super::stack::Stack;
use crate::config::ConfigFile;
use crate::discovery::{self, DEFAULT_PATTERNS, Pattern};
use crate::error::{ConfigError, did_you_mean};
use crate::tree::{self, Tree};

/// `[discovery]` resolved.
pub(super) struct Discovery {
    /// The patterns as written (the defaults when none are).
    pub texts: Vec<String>,
    /// Those of them that parse.
    pub patterns: Vec<Pattern>,
    /// Repo-relative globs that never trigger a deploy.
    pub ignore: Vec<String>,
}

pub(super) fn discovery(cfg: &ConfigFile, errors: &mut Vec<ConfigError>) -> Discovery {
    let (texts, ignore) = match &cfg.discovery {
        Some(d) => {
            (d.patterns.clone().unwrap_or_else(|| DEFAULT_PATTERNS.map(String::from).to_vec()), d.ignore.clone())
        }
        None => (DEFAULT_PATTERNS.map(String::from).to_vec(), Vec::new()),
    };
    let mut patterns = Vec::new();
    for p in &texts {
        match Pattern::parse(p) {
            Ok(p) => patterns.push(p),
            Err(e) => errors.push(e),
        }
    }
    for g in &ignore {
        if let Err(e) = crate::changes::glob(g) {
            errors.push(ConfigError::new(format!("[discovery] ignore: {e}")));
        }
    }
    Discovery { texts, patterns, ignore }
}

/// The discovered stacks, each refined by the `[[stack]]` entry naming it (by name, then path), then the
/// declared stacks discovery did not find. Unsorted: discovery order, then declaration order.
pub(super) fn stacks(
    src: &Source,
    cfg: &ConfigFile,
    tree: &Tree,
    patterns: &[Pattern],
    template: &Defaults,
    errors: &mut Vec<ConfigError>,
) -> Vec<Stack> {
    let mut stacks: Vec<Stack> = discovery::discover(tree, patterns)
        .into_iter()
        .map(|d| {
            let origin = format!("discovered by `{}`", d.pattern);
            let mut st = template.stack(d.name, d.path, d.compose_files, tree, origin);
            if let Some(server) = d.server {
                st.server = server;
            }
            st
        })
        .collect();
    let discovered = stacks.len();
    // Declared entries find their discovered stack by name, then path, in O(1).
    let by_disc_name: HashMap<String, usize> =
        stacks.iter().enumerate().map(|(i, s)| (s.name.clone(), i)).rev().collect();
    let by_disc_path: HashMap<String, usize> = stacks.iter().enumerate().map(|(i, s)| (s.path.clone(), i)).collect();

    for e in &cfg.stack {
        let l = src.at(e.span());
        let st = e.get_ref();
        let at = |m: String| ConfigError::new(m).at(l.clone());
        let path = match st.path.as_deref().map(|p| (p, tree::join("", p))) {
            None => None,
            Some((p, None)) => {
                errors.push(at(format!("stack path `{p}` leaves the repository")).help(
                    "stack paths are relative to the repository root and may not be absolute or use `..` to go above it",
                ));
                continue;
            }
            Some((_, Some(p))) => Some(p),
        };
        let target = st
            .name
            .as_ref()
            .and_then(|n| by_disc_name.get(n.as_str()).copied())
            .or_else(|| path.as_ref().and_then(|p| by_disc_path.get(p.as_str()).copied()));
        let idx = match target {
            Some(i) => {
                stacks[i].origin = format!(
                    "{}, refined at {}",
                    stacks[i].origin,
                    l.as_ref().map(|l| l.to_string()).unwrap_or_default()
                );
                i
            }
            None => {
                let Some(path) = path.clone() else {
                    let what =
                        st.name.as_deref().map(|n| format!("stack `{n}`")).unwrap_or_else(|| "this [[stack]]".into());
                    let mut e = at(format!("{what} matches no discovered stack and has no `path`"));
                    let names = stacks[..discovered].iter().map(|s| s.name.as_str());
                    e = match st.name.as_deref().and_then(|n| did_you_mean(n, names)) {
                        Some(best) => e.help(format!("did you mean `{best}`? Otherwise add path = \"...\"")),
                        None => e.help("add path = \"folder/of/the/stack\""),
                    };
                    errors.push(e);
                    continue;
                };
                let name = st.name.clone().unwrap_or_else(|| path.rsplit('/').next().unwrap_or("").to_string());
                let origin = format!("declared at {}", l.as_ref().map(|l| l.to_string()).unwrap_or_default());
                let compose = discovery::default_compose_files(tree, &path);
                stacks.push(template.stack(name, path, compose, tree, origin));
                stacks.len() - 1
            }
        };
        entry::apply(&mut stacks[idx], st, path, tree, &l, errors);
        let what = format!("stack `{}`", stacks[idx].name);
        let rules = crate::images::resolve(src.file, src.text, &what, &st.image, errors);
        stacks[idx].images.extend(rules);
    }
    stacks
}

#[cfg(test)]
mod tests {
    use super::super::testing::check;

    const ONYX: &str = "[[server]]\nname = \"onyx\"\n";

    #[test]
    fn declared_stacks_refine_and_add() {
        let p = check(
            r#"
[[server]]
name = "onyx"
[[stack]]
name = "quartermaster"
watch = ["libs/**"]
env_files = ["../../../libs/common.env"]
after = ["caddy"]
[[stack]]
name = "op-connect"
path = "bootstrap/op-connect"
server = "onyx"
manual = true
[[stack]]
name = "site"
path = "stacks/web"
"#,
            &[],
        )
        .unwrap();
        let qm = p.stack("quartermaster").unwrap();
        assert_eq!(qm.server, "onyx");
        assert_eq!(qm.watch, ["libs/**"]);
        assert_eq!(qm.env_files, ["libs/common.env"]);
        assert!(qm.origin.starts_with("discovered by `nodes/{server}/{stack}/`, refined at berth.toml:4:1"));
        let op = p.stack("op-connect").unwrap();
        assert!(op.manual);
        assert_eq!(op.compose_files, ["bootstrap/op-connect/compose.yaml"]);
        assert_eq!(op.origin, "declared at berth.toml:9:1");
        // Found by path and renamed.
        assert_eq!(p.stack("site").unwrap().path, "stacks/web");
        assert!(p.stack("web").is_none());
        assert_eq!(p.stacks.len(), 4);
    }

    #[test]
    fn entries_that_match_nothing_need_a_path() {
        check(
            &format!("{ONYX}[[stack]]\nname = \"cady\"\n[[stack]]\nwatch = [\"x\"]\n[[stack]]\npath = \"/etc\"\n"),
            &[
                "berth.toml:3:1: stack `cady` matches no discovered stack and has no `path` (help: did you mean `caddy`?",
                "berth.toml:5:1: this [[stack]] matches no discovered stack",
                "berth.toml:7:1: stack path `/etc` leaves the repository",
            ],
        );
    }

    #[test]
    fn discovery_patterns_and_ignores_are_checked() {
        let p = check("[discovery]\npatterns = [\"stacks/{stack}/\"]\nignore = [\"**/README.md\"]\n", &[]).unwrap();
        assert_eq!(p.patterns, ["stacks/{stack}/"]);
        assert_eq!(p.ignore, ["**/README.md"]);
        assert_eq!(p.stacks.len(), 1);
        check("[discovery]\npatterns = [\"stacks/{nope}/\"]\nignore = [\"[x\"]\n", &["{nope}", "[discovery] ignore: "]);
    }
}
