//! `[[environment]]` deploy targets, the CI gates of stacks and environments, and which stacks each one holds.

use super::checks::{NAME_HELP, valid_name};
use super::{Project, Server, Source, Stack};
use crate::config::{CiToml, ConfigFile};
use crate::duration;
use crate::error::ConfigError;

/// A named deploy target: its servers and optionally a subset of stacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub name: String,
    pub servers: Vec<String>,
    pub stacks: Vec<String>,
    /// A push to the tracked branch deploys it (default); `false`: only promotion does.
    pub auto: bool,
    pub require_ci: Option<CiToml>,
}

/// The environments, each checked against the servers and stacks of the project.
pub(super) fn resolve(
    src: &Source,
    cfg: &ConfigFile,
    servers: &[Server],
    stacks: &[Stack],
    errors: &mut Vec<ConfigError>,
) -> Vec<Environment> {
    let mut environments: Vec<Environment> = Vec::new();
    for e in &cfg.environment {
        let l = src.at(e.span());
        let e = e.get_ref();
        if !valid_name(&e.name) {
            errors
                .push(ConfigError::new(format!("invalid environment name `{}`", e.name)).at(l.clone()).help(NAME_HELP));
        }
        for s in &e.servers {
            if !servers.iter().any(|x| &x.name == s) {
                errors.push(
                    ConfigError::new(format!("environment `{}` names unknown server `{s}`", e.name)).at(l.clone()),
                );
            }
        }
        for s in &e.stacks {
            if !stacks.iter().any(|x| &x.name == s) {
                errors.push(
                    ConfigError::new(format!("environment `{}` names unknown stack `{s}`", e.name)).at(l.clone()),
                );
            }
        }
        environments.push(Environment {
            name: e.name.clone(),
            servers: e.servers.clone(),
            stacks: e.stacks.clone(),
            auto: e.auto.unwrap_or(true),
            require_ci: e.require_ci.clone(),
        });
        if let Some(ci) = &e.require_ci
            && let Err(m) = check_ci(ci)
        {
            errors.push(ConfigError::new(format!("environment `{}` require_ci: {m}", e.name)).at(l.clone()));
        }
    }
    environments
}

/// A `require_ci` table: a known provider, with the url it needs, an `owner/name` repo and a valid timeout.
pub(super) fn check_ci(ci: &CiToml) -> Result<(), String> {
    match ci.provider.as_str() {
        "woodpecker" | "gitea" | "forgejo" if ci.url.is_none() => {
            Err(format!("provider `{}` needs url = \"https://...\"", ci.provider))
        }
        "woodpecker" | "gitea" | "forgejo" | "github" | "gitlab" => Ok(()),
        other => Err(format!("unknown provider `{other}` (woodpecker, gitea, forgejo, github or gitlab)")),
    }?;
    if let Some(r) = &ci.repo {
        let parts = r.split('/').filter(|p| !p.is_empty()).count();
        // GitLab projects may sit in nested groups.
        if parts < 2 || parts > 2 && ci.provider != "gitlab" {
            return Err(format!("repo `{r}` is not owner/name"));
        }
    }
    for p in ci.contexts.iter().chain(&ci.ignore_contexts).flatten() {
        if p.trim().is_empty() {
            return Err("contexts and ignore_contexts take non-empty names".into());
        }
    }
    if let Some(t) = &ci.timeout {
        duration::parse(t)?;
    }
    Ok(())
}

impl Project {
    /// The environments a stack belongs to.
    pub fn environments_of(&self, stack: &Stack) -> Vec<&Environment> {
        self.environments
            .iter()
            .filter(|e| {
                if e.stacks.is_empty() { e.servers.contains(&stack.server) } else { e.stacks.contains(&stack.name) }
            })
            .collect()
    }

    /// Does a push to the tracked branch deploy this stack? Stacks outside every
    /// environment do; stacks of environments do when one of them is `auto`.
    pub fn auto_deploys(&self, stack: &Stack) -> bool {
        let envs = self.environments_of(stack);
        envs.is_empty() || envs.iter().any(|e| e.auto)
    }

    /// The CI gate of a stack: its own, else the first of its environments'.
    pub fn ci_gate<'a>(&'a self, stack: &'a Stack) -> Option<&'a CiToml> {
        stack
            .require_ci
            .as_ref()
            .or_else(|| self.environments_of(stack).into_iter().find_map(|e| e.require_ci.as_ref()))
    }

    /// Stacks that belong to an environment: its stacks if listed, else every stack on its servers.
    pub fn environment_stacks(&self, env: &Environment) -> Vec<&Stack> {
        self.stacks
            .iter()
            .filter(
                |s| if env.stacks.is_empty() { env.servers.contains(&s.server) } else { env.stacks.contains(&s.name) },
            )
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::check;
    use super::*;

    const ONYX: &str = "[[server]]\nname = \"onyx\"\n";

    #[test]
    fn environments_hold_their_servers_stacks_or_a_subset() {
        let p = check(
            &format!(
                "{ONYX}[[stack]]\nname = \"caddy\"\nrequire_ci = {{ provider = \"github\" }}\n\
                 [[environment]]\nname = \"staging\"\nservers = [\"onyx\"]\n\
                 require_ci = {{ provider = \"gitea\", url = \"https://git\" }}\n\
                 [[environment]]\nname = \"prod\"\nservers = [\"local\"]\nstacks = [\"web\"]\nauto = false\n"
            ),
            &[],
        )
        .unwrap();
        let names = |env: &Environment| p.environment_stacks(env).iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&p.environments[0]), ["caddy", "quartermaster"]);
        assert_eq!(names(&p.environments[1]), ["web"]);
        let (caddy, qm, web) = (p.stack("caddy").unwrap(), p.stack("quartermaster").unwrap(), p.stack("web").unwrap());
        assert_eq!(p.ci_gate(caddy).unwrap().provider, "github");
        assert_eq!(p.ci_gate(qm).unwrap().provider, "gitea");
        assert!(p.auto_deploys(qm) && !p.auto_deploys(web));
    }

    #[test]
    fn bad_environments_are_reported() {
        check(
            &format!(
                "{ONYX}[[environment]]\nname = \"Prod\"\nservers = [\"nowhere\"]\nstacks = [\"wbe\"]\n\
                 require_ci = {{ provider = \"woodpecker\" }}\n"
            ),
            &[
                "berth.toml:3:1: invalid environment name `Prod`",
                "environment `Prod` names unknown server `nowhere`",
                "environment `Prod` names unknown stack `wbe`",
                "environment `Prod` require_ci: provider `woodpecker` needs url",
            ],
        );
    }

    #[test]
    fn ci_gates_are_checked() {
        let ci = |provider: &str, url: Option<&str>, repo: Option<&str>| CiToml {
            provider: provider.into(),
            url: url.map(String::from),
            repo: repo.map(String::from),
            token: None,
            timeout: None,
            report: None,
            contexts: None,
            ignore_contexts: None,
            gate_rollbacks: None,
        };
        assert!(check_ci(&ci("github", None, Some("me/web"))).is_ok());
        assert!(check_ci(&ci("forgejo", Some("https://f"), None)).is_ok());
        assert!(check_ci(&ci("github", None, Some("web"))).unwrap_err().contains("not owner/name"));
        assert!(check_ci(&ci("forgejo", None, None)).unwrap_err().contains("needs url"));
        assert!(check_ci(&ci("gitlab", None, Some("group/sub/web"))).is_ok());
        assert!(check_ci(&ci("github", None, Some("group/sub/web"))).is_err());
    }
}
