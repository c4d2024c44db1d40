//! The resolved project: discovered and declared stacks merged, defaulted and validated.
//!
//! [`Project::load`] runs the phases in order, one file each: `servers`, `defaults`, discovery and the
//! declared entries (`merge`, `entry`), the whole-project `checks`, then `repos`, `environments` and the
//! remaining `settings`. Every phase reports into one error list, so every problem is found at once.

mod checks;
mod defaults;
mod entry;
mod environments;
mod hooks;
mod merge;
mod repos;
mod servers;
mod settings;
mod stack;
#[cfg(test)]
pub(crate) mod testing;
mod windows;

use std::time::Duration;

pub use checks::valid_name;
pub use defaults::{DEFAULT_TIMEOUT, SECRET_FILE_SUFFIXES};
pub use environments::Environment;
pub use hooks::{Hook, HookOn};
pub use repos::{DEFAULT_POLL, FORGE_PROVIDERS, RepoSpec, repo_specs};
pub use servers::{LOCAL_SERVER, Server};
pub use settings::{DEFAULT_LISTEN, DEFAULT_MAX_BODY, DEFAULT_MAX_PARALLEL};
pub use stack::{Mode, Pull, Stack};

use crate::config::{self, ConfigFile, NotifyToml, SecretRef};
use crate::dashboard::Dashboard;
use crate::error::{ConfigError, Location, did_you_mean};
use crate::tree::Tree;

/// Everything berth knows about the repository at one commit.
#[derive(Debug, Clone)]
pub struct Project {
    pub state_dir: Option<String>,
    pub max_parallel: usize,
    pub servers: Vec<Server>,
    /// Sorted by name.
    pub stacks: Vec<Stack>,
    /// Repo-relative globs that never trigger a deploy.
    pub ignore: Vec<String>,
    pub patterns: Vec<String>,
    /// Whether the project came from a `berth.toml` (false: zero-config defaults).
    pub configured: bool,
    pub repos: Vec<RepoSpec>,
    pub environments: Vec<Environment>,
    pub listen: String,
    pub max_body: usize,
    /// How often the controller checks for drift; `None`: never.
    pub drift_interval: Option<Duration>,
    pub notify: Vec<NotifyToml>,
    /// `[berth] prune`.
    pub prune: bool,
    pub age_identity: Option<SecretRef>,
    /// `[dashboard]` of `berth serve`.
    pub dashboard: Dashboard,
    /// `[berth] verify_commits`: deploy only commits signed by an allowed key.
    pub verify_commits: Option<crate::signing::VerifyCommits>,
    /// `[[window]]` deploy windows, their time zones still names (`window::resolve`).
    pub windows: Vec<crate::window::WindowSpec>,
    /// `[[image]]` update rules for every stack (a stack's own rules come first).
    pub images: Vec<crate::images::Policy>,
    /// `[updates]`: how image updates are written back to git.
    pub updates: crate::images::settings::Updates,
}

/// The text of `berth.toml`, to locate its entries in error messages.
struct Source<'a> {
    file: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn at(&self, span: std::ops::Range<usize>) -> Option<Location> {
        Some(Location::from_offset(self.file, self.text, span.start))
    }
}

impl Project {
    /// Resolve the project from the text of `berth.toml` (if any) and the repository tree.
    /// Every problem found is returned at once.
    pub fn load(file: &str, text: Option<&str>, tree: &Tree) -> Result<Project, Vec<ConfigError>> {
        let cfg = match text {
            Some(t) => config::parse(file, t)?,
            None => ConfigFile::default(),
        };
        let src = Source { file, text: text.unwrap_or("") };
        let mut errors = Vec::new();

        let servers = servers::resolve(&src, &cfg, &mut errors);
        let defaults = defaults::resolve(&cfg, &mut errors);
        let discovery = merge::discovery(&cfg, &mut errors);
        let mut stacks = merge::stacks(&src, &cfg, tree, &discovery.patterns, &defaults, &mut errors);

        checks::stacks(&stacks, &servers, &mut errors);
        checks::tiers(&mut stacks, &cfg.berth.tiers, &mut errors);
        // Sorted by name: `Project::stack` binary-searches.
        stacks.sort_by(|a, b| a.name.cmp(&b.name));
        checks::cycles(&stacks, &mut errors);

        let repos = repo_specs(file, src.text, &cfg, &mut errors);
        let environments = environments::resolve(&src, &cfg, &servers, &stacks, &mut errors);
        let settings = settings::resolve(&src, &cfg, &mut errors);
        let windows = windows::resolve(&src, &cfg, &servers, &stacks, &environments, &mut errors);
        let images = crate::images::resolve(file, src.text, "[[image]]", &cfg.image, &mut errors);
        let updates = crate::images::settings::resolve(
            cfg.updates.as_ref().and_then(|u| src.at(u.span())),
            cfg.updates.as_ref().map(|u| u.get_ref()),
            &mut errors,
        );
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Project {
            state_dir: settings.state_dir,
            max_parallel: settings.max_parallel,
            servers,
            stacks,
            ignore: discovery.ignore,
            patterns: discovery.texts,
            configured: !src.text.is_empty(),
            repos,
            environments,
            listen: settings.listen,
            max_body: settings.max_body,
            drift_interval: settings.drift_interval,
            notify: settings.notify,
            prune: settings.prune,
            age_identity: settings.age_identity,
            dashboard: settings.dashboard,
            verify_commits: settings.verify_commits,
            windows,
            images,
            updates,
        })
    }

    pub fn stack(&self, name: &str) -> Option<&Stack> {
        self.stacks.binary_search_by(|s| s.name.as_str().cmp(name)).ok().map(|i| &self.stacks[i])
    }

    pub fn server(&self, name: &str) -> Option<&Server> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// May berth take down a removed stack that ran on `server`?
    pub fn prunes(&self, server: &str) -> bool {
        self.server(server).and_then(|s| s.prune).unwrap_or(self.prune)
    }

    /// An error for an unknown stack name, with a suggestion.
    pub fn unknown_stack(&self, name: &str) -> ConfigError {
        let e = ConfigError::new(format!("no stack named `{name}` in this repository"));
        let names: Vec<&str> = self.stacks.iter().map(|s| s.name.as_str()).collect();
        let list = match names.len() {
            0 => "this repository has no stacks".to_string(),
            n @ 1..=12 => format!("stack{}: {}", if n == 1 { "" } else { "s" }, names.join(", ")),
            n => format!("{n} stacks, `berth plan` lists them"),
        };
        match did_you_mean(name, names.iter().copied()) {
            Some(best) => e.help(format!("did you mean `{best}`? {list}")),
            None => e.help(list),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::check;

    #[test]
    fn unknown_stacks_are_suggested_and_listed() {
        let p = check("[[server]]\nname = \"onyx\"\n", &[]).unwrap();
        let e = p.unknown_stack("cady");
        assert_eq!(e.message, "no stack named `cady` in this repository");
        assert_eq!(e.help.as_deref(), Some("did you mean `caddy`? stacks: caddy, quartermaster, web"));
    }
}
