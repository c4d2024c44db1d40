//! `pre_deploy`/`post_deploy` hooks: where they run, the folder they run in, and the script they name.
//!
//! A relative script is looked up in the hook's folder (the stack folder unless `dir` says
//! otherwise), else at the repository root; it must exist in the commit.

use serde::{Serialize, Serializer};

use crate::config::{HookTableToml, HookToml};
use crate::tree::{self, Tree};

/// Programs whose first argument, when it is not an option, is the script they run.
const INTERPRETERS: &[&str] = &["sh", "bash", "ash", "dash", "zsh", "python", "python3", "perl", "node", "ruby"];

/// Where a hook runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "on")]
pub enum HookOn {
    /// On the machine running berth, with the stack engine's Docker environment.
    #[default]
    Local,
    /// In a one-shot container on the stack's engine, the commit's files copied in.
    Engine { image: String, volumes: Vec<String> },
}

/// One resolved hook; empty when the stack has none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hook {
    pub run: Vec<String>,
    /// Repo-relative folder the hook runs in.
    pub dir: String,
    pub on: HookOn,
    /// The argument of `run` that names a script in the commit, and that script's repo-relative path.
    pub script: Option<(usize, String)>,
    /// Whether `dir` was given (a hook without it hashes as its bare argument vector).
    explicit_dir: bool,
}

impl Hook {
    pub fn is_empty(&self) -> bool {
        self.run.is_empty()
    }
}

// A plain local hook hashes as its argument vector, as before hooks had options.
impl Serialize for Hook {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.on == HookOn::Local && !self.explicit_dir {
            return self.run.serialize(s);
        }
        #[derive(Serialize)]
        struct Full<'a> {
            run: &'a [String],
            dir: &'a str,
            #[serde(flatten)]
            on: &'a HookOn,
        }
        Full { run: &self.run, dir: &self.dir, on: &self.on }.serialize(s)
    }
}

/// Resolve hook `which` of the stack at `stack_path` against the commit's `tree`; errors name the problem.
pub(super) fn resolve(which: &str, stack_path: &str, toml: &HookToml, tree: &Tree) -> Result<Hook, Vec<String>> {
    let t = match toml {
        HookToml::Argv(run) => HookTableToml { run: run.clone(), ..Default::default() },
        HookToml::Table(t) => t.clone(),
    };
    let mut errors = Vec::new();
    if t.run.first().is_none_or(|p| p.is_empty()) {
        errors.push(format!("{which} needs a program, e.g. [\"sh\", \"scripts/check.sh\"]"));
    }
    let dir = match &t.dir {
        None => stack_path.to_string(),
        Some(d) => match tree::join(stack_path, d) {
            Some(p) if !tree.under(&p).is_empty() => p,
            Some(p) => {
                errors.push(format!("{which}.dir `{p}` does not exist in the commit"));
                p
            }
            None => {
                errors.push(format!("{which}.dir `{d}` leaves the repository"));
                stack_path.to_string()
            }
        },
    };
    let on = match (t.on.as_deref(), &t.image) {
        (None | Some("local"), None) if t.volumes.is_empty() => HookOn::Local,
        (None | Some("local"), _) => {
            errors.push(format!("{which}: `image` and `volumes` need on = \"engine\""));
            HookOn::Local
        }
        (Some("engine"), Some(image)) if !image.is_empty() => {
            HookOn::Engine { image: image.clone(), volumes: t.volumes.clone() }
        }
        (Some("engine"), _) => {
            errors.push(format!("{which}: on = \"engine\" needs the `image` of the one-shot container"));
            HookOn::Local
        }
        (Some(other), _) => {
            errors.push(format!("{which}: unknown on = `{other}`; use \"local\" or \"engine\""));
            HookOn::Local
        }
    };
    let script = match script_arg(&t.run) {
        Some(i) => match find_script(&dir, &t.run[i], tree) {
            Ok(p) => Some((i, p)),
            Err(e) => {
                errors.push(format!("{which}: {e}"));
                None
            }
        },
        None => None,
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Hook { run: t.run, dir, on, script, explicit_dir: t.dir.is_some() })
}

/// The index of the argument that names a script: a program given as a relative path, or the
/// first argument of an interpreter (not an option such as `-c`).
fn script_arg(run: &[String]) -> Option<usize> {
    let program = run.first()?;
    let relative = |a: &str| !a.is_empty() && !a.starts_with('/') && !a.starts_with('-');
    if program.contains('/') {
        return relative(program).then_some(0);
    }
    let arg = run.get(1)?;
    (INTERPRETERS.contains(&program.as_str()) && relative(arg)).then_some(1)
}

/// `script` in the hook's folder `dir`, else at the repository root.
fn find_script(dir: &str, script: &str, tree: &Tree) -> Result<String, String> {
    let here = tree::join(dir, script);
    let root = tree::join("", script);
    for p in [&here, &root].into_iter().flatten() {
        if tree.contains(p) {
            return Ok(p.clone());
        }
    }
    Err(match (here, root) {
        (Some(h), Some(r)) if h != r => {
            format!("script `{script}` does not exist in the commit (looked for `{h}` and `{r}`)")
        }
        (Some(h), _) | (None, Some(h)) => format!("script `{script}` does not exist in the commit (looked for `{h}`)"),
        (None, None) => format!("script `{script}` leaves the repository"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TREE: &[&str] = &["stacks/web/compose.yaml", "stacks/web/check.sh", "scripts/validate.sh", "ops/tool.py"];

    fn hook(toml: &str) -> Result<Hook, Vec<String>> {
        #[derive(serde::Deserialize)]
        struct H {
            pre_deploy: HookToml,
        }
        let h: H = toml::from_str(toml).unwrap();
        resolve("pre_deploy", "stacks/web", &h.pre_deploy, &Tree::from_paths(TREE.iter().copied()))
    }

    #[test]
    fn a_script_is_found_in_the_stack_folder_then_at_the_root() {
        let h = hook(r#"pre_deploy = ["sh", "check.sh"]"#).unwrap();
        assert_eq!(h.script, Some((1, "stacks/web/check.sh".into())));
        assert_eq!(h.dir, "stacks/web");
        let h = hook(r#"pre_deploy = ["bash", "scripts/validate.sh", "x"]"#).unwrap();
        assert_eq!(h.script, Some((1, "scripts/validate.sh".into())));
        let h = hook(r#"pre_deploy = ["./check.sh"]"#).unwrap();
        assert_eq!(h.script, Some((0, "stacks/web/check.sh".into())));
        let h = hook(r#"pre_deploy = { run = ["python3", "tool.py"], dir = "../../ops" }"#).unwrap();
        assert_eq!((h.dir.as_str(), h.script), ("ops", Some((1, "ops/tool.py".into()))));
        // No script named: `sh -c`, a program on PATH, an absolute path.
        for argv in [r#"["sh", "-c", "exit 0"]"#, r#"["true"]"#, r#"["/usr/bin/env", "x"]"#] {
            assert_eq!(hook(&format!("pre_deploy = {argv}")).unwrap().script, None, "{argv}");
        }
    }

    #[test]
    fn a_missing_script_is_an_error_naming_where_it_was_looked_for() {
        assert_eq!(
            hook(r#"pre_deploy = ["sh", "validate-web.sh"]"#).unwrap_err(),
            [
                "pre_deploy: script `validate-web.sh` does not exist in the commit (looked for `stacks/web/validate-web.sh` and `validate-web.sh`)"
            ]
        );
        assert_eq!(
            hook(r#"pre_deploy = ["sh", "../../../x.sh"]"#).unwrap_err(),
            ["pre_deploy: script `../../../x.sh` leaves the repository"]
        );
    }

    #[test]
    fn engine_hooks_need_an_image_and_options_are_checked() {
        let h = hook(
            r#"pre_deploy = { run = ["sh", "check.sh"], on = "engine", image = "alpine:3", volumes = ["/srv:/srv"] }"#,
        )
        .unwrap();
        assert_eq!(h.on, HookOn::Engine { image: "alpine:3".into(), volumes: vec!["/srv:/srv".into()] });
        assert!(
            hook(r#"pre_deploy = { run = ["true"], on = "engine" }"#).unwrap_err()[0].contains("needs the `image`")
        );
        assert!(
            hook(r#"pre_deploy = { run = ["true"], image = "x" }"#).unwrap_err()[0].contains("need on = \"engine\"")
        );
        assert!(
            hook(r#"pre_deploy = { run = ["true"], on = "moon" }"#).unwrap_err()[0].contains("unknown on = `moon`")
        );
        assert!(hook(r#"pre_deploy = { run = ["true"], dir = "nope" }"#).unwrap_err()[0].contains("does not exist"));
    }

    #[test]
    fn a_plain_hook_hashes_as_its_argument_vector() {
        let h = hook(r#"pre_deploy = ["sh", "check.sh"]"#).unwrap();
        assert_eq!(serde_json::to_string(&h).unwrap(), r#"["sh","check.sh"]"#);
        let h = hook(r#"pre_deploy = { run = ["true"], on = "engine", image = "i" }"#).unwrap();
        assert_eq!(
            serde_json::to_string(&h).unwrap(),
            r#"{"run":["true"],"dir":"stacks/web","on":"engine","image":"i","volumes":[]}"#
        );
    }
}
