//! `[[server]]` entries resolved into Docker endpoints, with the implicit `local` engine.

use serde::Serialize;

use super::Source;
use super::checks::{NAME_HELP, valid_name};
use crate::config::{ConfigFile, TlsToml};
use crate::error::ConfigError;

/// The server every stack targets unless told otherwise: the local engine.
pub const LOCAL_SERVER: &str = "local";

/// A Docker endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Server {
    pub name: String,
    /// `DOCKER_HOST` value; `None` is the local engine.
    pub docker: Option<String>,
    pub tls: Option<TlsToml>,
    /// Docker client config file with registry credentials.
    pub registry_auth: Option<String>,
    /// Take down stacks of this server that were removed from the repository.
    #[serde(skip)]
    pub prune: Option<bool>,
}

/// The declared servers, plus `local` first unless declared.
pub(super) fn resolve(src: &Source, cfg: &ConfigFile, errors: &mut Vec<ConfigError>) -> Vec<Server> {
    let mut servers: Vec<Server> = Vec::new();
    for s in &cfg.server {
        let l = src.at(s.span());
        let s = s.get_ref();
        if !valid_name(&s.name) {
            errors.push(ConfigError::new(format!("invalid server name `{}`", s.name)).at(l).help(NAME_HELP));
        } else if servers.iter().any(|x| x.name == s.name) {
            errors.push(ConfigError::new(format!("server `{}` is declared twice", s.name)).at(l));
        } else {
            if s.tls.is_some() && !s.docker.as_deref().is_some_and(|d| d.starts_with("tcp://")) {
                errors.push(
                    ConfigError::new(format!("server `{}`: tls needs a tcp:// docker endpoint", s.name)).at(l.clone()),
                );
            }
            servers.push(Server {
                name: s.name.clone(),
                docker: s.docker.clone(),
                tls: s.tls.clone(),
                registry_auth: s.registry_auth.clone(),
                prune: s.prune,
            });
        }
    }
    if !servers.iter().any(|s| s.name == LOCAL_SERVER) {
        servers
            .insert(0, Server { name: LOCAL_SERVER.into(), docker: None, tls: None, registry_auth: None, prune: None });
    }
    servers
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check, check_in};

    #[test]
    fn local_is_implicit_unless_declared() {
        let p = check("[[server]]\nname = \"onyx\"\ndocker = \"ssh://onyx\"\n", &[]).unwrap();
        let names: Vec<_> = p.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["local", "onyx"]);
        assert_eq!(p.server("onyx").unwrap().docker.as_deref(), Some("ssh://onyx"));
        let p = check_in(&["stacks/a/compose.yaml"], "[[server]]\nname = \"local\"\nprune = true\n", &[]).unwrap();
        assert_eq!(p.servers.len(), 1);
        assert!(p.prunes("local"));
    }

    #[test]
    fn zero_config_needs_declared_servers_for_nodes() {
        check("", &["stack `caddy` targets server `onyx`", "stack `quartermaster` targets server `onyx`"]);
        let p = check_in(&["stacks/a/compose.yaml", "stacks/b/compose.yml"], "", &[]).unwrap();
        assert_eq!(p.stacks.iter().map(|s| s.server.as_str()).collect::<Vec<_>>(), ["local", "local"]);
        assert!(!p.configured);
    }

    #[test]
    fn bad_servers_are_reported() {
        let tls = "tls = { ca = \"ca.pem\", cert = \"c.pem\", key = \"k.pem\" }";
        check(
            &format!(
                "[[server]]\nname = \"onyx\"\n[[server]]\nname = \"onyx\"\n[[server]]\nname = \"Big\"\n\
                 [[server]]\nname = \"s\"\ndocker = \"ssh://s\"\n{tls}\n"
            ),
            &[
                "berth.toml:3:1: server `onyx` is declared twice",
                "berth.toml:5:1: invalid server name `Big` (help: names use lowercase",
                "berth.toml:7:1: server `s`: tls needs a tcp:// docker endpoint",
            ],
        );
    }
}
