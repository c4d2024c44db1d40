//! `[defaults]` resolved into the template every stack starts from, with the folder's own secret files.

use std::collections::BTreeMap;
use std::time::Duration;

use super::servers::LOCAL_SERVER;
use super::stack::{Mode, Stack, parse_mode};
use crate::config::{ConfigFile, SecretRef};
use crate::duration;
use crate::error::ConfigError;
use crate::rollout::Rollout;
use crate::tree::Tree;
use crate::verify::{self, Rollback, Verify};

/// Per-stack deploy timeout when none is configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Name endings of encrypted env files picked up from a stack folder without being listed.
pub const SECRET_FILE_SUFFIXES: [&str; 5] = [".env.age", ".sops.env", ".sops.yaml", ".sops.yml", ".sops.json"];

/// What every new stack starts from (`[defaults]` resolved).
pub(super) struct Defaults {
    server: String,
    mode: Mode,
    timeout: Duration,
    self_heal: bool,
    age_identity: Option<SecretRef>,
    verify: Verify,
    rollback: Rollback,
    rollout: Rollout,
}

/// Resolve `[defaults]` (and `[berth] age_identity`); a bad value is reported and its default used.
pub(super) fn resolve(cfg: &ConfigFile, errors: &mut Vec<ConfigError>) -> Defaults {
    let d = &cfg.defaults;
    let mode = parse_mode(d.mode.as_deref()).unwrap_or_else(|e| {
        errors.push(ConfigError::new(e).at(None).help("set [defaults] mode = \"compose\""));
        Mode::Compose
    });
    let timeout = match d.timeout.as_deref().map(duration::parse) {
        None => DEFAULT_TIMEOUT,
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            errors.push(ConfigError::new(format!("[defaults] timeout: {e}")));
            DEFAULT_TIMEOUT
        }
    };
    let mut verr = Vec::new();
    let verify = verify::resolve(&Verify::default(), d.verify.as_ref(), &mut verr);
    let rollback = match d.rollback.as_deref().map(Rollback::parse) {
        None => Rollback::Auto,
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            verr.push(e);
            Rollback::Auto
        }
    };
    let rollout =
        d.rollout.as_ref().map_or_else(Rollout::default, |r| Rollout::resolve(&Rollout::default(), r, &mut verr));
    errors.extend(verr.into_iter().map(|e| ConfigError::new(format!("[defaults] {e}"))));
    Defaults {
        server: d.server.clone().unwrap_or_else(|| LOCAL_SERVER.into()),
        mode,
        timeout,
        self_heal: d.self_heal.unwrap_or(false),
        age_identity: cfg.berth.age_identity.clone(),
        verify,
        rollback,
        rollout,
    }
}

impl Defaults {
    /// A new stack of folder `path`, before any `[[stack]]` entry refines it.
    pub(super) fn stack(
        &self,
        name: String,
        path: String,
        compose_files: Vec<String>,
        tree: &Tree,
        origin: String,
    ) -> Stack {
        Stack {
            name,
            secrets: secret_files(tree, &path),
            compose_files,
            compose_declared: false,
            path,
            server: self.server.clone(),
            mode: self.mode,
            after: Vec::new(),
            watch: Vec::new(),
            ignore: Vec::new(),
            manual: false,
            env: BTreeMap::new(),
            secret_env: BTreeMap::new(),
            env_files: Vec::new(),
            timeout: self.timeout,
            pre_deploy: Default::default(),
            post_deploy: Default::default(),
            pull: None,
            tier: None,
            require_ci: None,
            self_heal: self.self_heal,
            images: Vec::new(),
            age_identity: self.age_identity.clone(),
            verify: self.verify.clone(),
            rollback: self.rollback,
            rollout: self.rollout.clone(),
            origin,
            location: None,
        }
    }
}

/// The encrypted env files directly in a stack folder.
pub(super) fn secret_files(tree: &Tree, dir: &str) -> Vec<String> {
    tree.under(dir)
        .iter()
        .filter(|e| !e.path[dir.len() + 1..].contains('/') && SECRET_FILE_SUFFIXES.iter().any(|s| e.path.ends_with(s)))
        .map(|e| e.path.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check, check_in};
    use super::*;

    #[test]
    fn defaults_apply_to_every_stack() {
        let p = check_in(
            &["stacks/a/compose.yaml", "stacks/b/compose.yaml"],
            "[defaults]\nmode = \"swarm\"\ntimeout = \"5m\"\nrollback = \"manual\"\nself_heal = true\n\
             verify = { timeout = \"30s\" }\n[[stack]]\nname = \"b\"\nmode = \"compose\"\n",
            &[],
        )
        .unwrap();
        let (a, b) = (p.stack("a").unwrap(), p.stack("b").unwrap());
        assert_eq!((a.mode, b.mode), (Mode::Swarm, Mode::Compose));
        assert_eq!(a.timeout, Duration::from_secs(300));
        assert_eq!(a.rollback, Rollback::Manual);
        assert!(a.self_heal && b.self_heal);
        assert_eq!(b.verify.timeout, Duration::from_secs(30));
        let p = check_in(&["stacks/a/compose.yaml"], "", &[]).unwrap();
        assert_eq!((p.stacks[0].timeout, p.stacks[0].rollback), (DEFAULT_TIMEOUT, Rollback::Auto));
    }

    #[test]
    fn bad_defaults_are_each_reported() {
        check(
            "[[server]]\nname = \"onyx\"\n[defaults]\nmode = \"kube\"\ntimeout = \"soon\"\nrollback = \"maybe\"\n",
            &[
                "unknown mode `kube`; use mode",
                "[defaults] timeout: `soon` is not a duration",
                "[defaults] rollback = \"maybe\"",
            ],
        );
    }

    #[test]
    fn secret_files_are_found_in_the_folder_only() {
        let t = Tree::from_paths(["s/a.env.age", "s/b.sops.yaml", "s/plain.env", "s/sub/c.sops.env", "t/d.env.age"]);
        assert_eq!(secret_files(&t, "s"), ["s/a.env.age", "s/b.sops.yaml"]);
    }
}
