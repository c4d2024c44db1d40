//! The resolved project: discovered and declared stacks merged, defaulted and validated.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;

use crate::config::{self, ConfigFile, SecretRef, StackToml};
use crate::dag;
use crate::discovery::{self, DEFAULT_PATTERNS, Pattern};
use crate::duration;
use crate::error::{ConfigError, Location, did_you_mean};
use crate::tree::{self, Tree};
use crate::verify::{self, Rollback, Verify};

/// The server every stack targets unless told otherwise: the local engine.
pub const LOCAL_SERVER: &str = "local";
/// Per-stack deploy timeout when none is configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Stacks deployed at once when none is configured.
pub const DEFAULT_MAX_PARALLEL: usize = 4;

/// How a stack is deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Compose,
    /// `docker stack deploy` against a swarm manager.
    Swarm,
}

/// A Docker endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Server {
    pub name: String,
    /// `DOCKER_HOST` value; `None` is the local engine.
    pub docker: Option<String>,
    pub tls: Option<crate::config::TlsToml>,
    /// Docker client config file with registry credentials.
    pub registry_auth: Option<String>,
    /// Take down stacks of this server that were removed from the repository.
    #[serde(skip)]
    pub prune: Option<bool>,
}

/// One deployable stack, fully resolved. Every path is repo-relative.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stack {
    pub name: String,
    pub path: String,
    pub compose_files: Vec<String>,
    pub server: String,
    pub mode: Mode,
    pub after: Vec<String>,
    pub watch: Vec<String>,
    pub ignore: Vec<String>,
    pub manual: bool,
    pub env: BTreeMap<String, String>,
    /// Variables whose values are secrets read at deploy time (the reference is hashed, never the value).
    pub secret_env: BTreeMap<String, crate::config::SecretRef>,
    /// Encrypted env files: the folder's `*.env.age` (age) and `*.sops.{env,yaml,yml,json}` (SOPS), and the
    /// ones listed in `secrets`.
    pub secrets: Vec<String>,
    pub env_files: Vec<String>,
    #[serde(with = "secs")]
    pub timeout: Duration,
    pub pre_deploy: Vec<String>,
    pub post_deploy: Vec<String>,
    pub tier: Option<String>,
    /// CI gate of the stack itself (its environment's applies too).
    #[serde(skip)]
    pub require_ci: Option<crate::config::CiToml>,
    /// Redeploy the recorded deploy when the stack drifts.
    #[serde(skip)]
    pub self_heal: bool,
    /// The age identity for `secrets` (`[berth] age_identity`).
    #[serde(skip)]
    pub age_identity: Option<SecretRef>,
    /// How a deploy is verified. Not part of the config hash: it does not change what runs.
    #[serde(skip)]
    pub verify: Verify,
    #[serde(skip)]
    pub rollback: Rollback,
    /// Where the stack comes from: a discovery pattern, `berth.toml:LINE`, or both.
    #[serde(skip)]
    pub origin: String,
    /// The `[[stack]]` entry that declared or refined it, if any.
    #[serde(skip)]
    pub location: Option<Location>,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

/// A repository `berth serve` mirrors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSpec {
    pub name: String,
    pub url: String,
    pub branch: String,
    /// `None`: never poll.
    pub poll: Option<Duration>,
    pub token: Option<SecretRef>,
    pub webhook_secret: Option<SecretRef>,
}

/// A named deploy target: its servers and optionally a subset of stacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub name: String,
    pub servers: Vec<String>,
    pub stacks: Vec<String>,
    /// A push to the tracked branch deploys it (default); `false`: only promotion does.
    pub auto: bool,
    pub require_ci: Option<crate::config::CiToml>,
}

/// Default poll interval of a `[[repo]]`.
pub const DEFAULT_POLL: Duration = Duration::from_secs(300);
/// Default listen address of `berth serve`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default request body limit of `berth serve`.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

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
    pub notify: Vec<crate::config::NotifyToml>,
    /// `[berth] prune`.
    pub prune: bool,
    pub age_identity: Option<SecretRef>,
    /// `[dashboard]` of `berth serve`.
    pub dashboard: crate::dashboard::Dashboard,
}

/// Is `name` a valid stack or server name (`[a-z0-9][a-z0-9_-]*`)?
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

const NAME_HELP: &str = "names use lowercase letters, digits, `-` and `_`, and start with a letter or digit";

impl Project {
    /// Resolve the project from the text of `berth.toml` (if any) and the repository tree.
    /// Every problem found is returned at once.
    pub fn load(file: &str, text: Option<&str>, tree: &Tree) -> Result<Project, Vec<ConfigError>> {
        let cfg = match text {
            Some(t) => config::parse(file, t)?,
            None => ConfigFile::default(),
        };
        let text = text.unwrap_or("");
        let mut errors = Vec::new();
        let loc = |span: std::ops::Range<usize>| Some(Location::from_offset(file, text, span.start));

        // Servers: an implicit `local` unless declared.
        let mut servers: Vec<Server> = Vec::new();
        for s in &cfg.server {
            let l = loc(s.span());
            let s = s.get_ref();
            if !valid_name(&s.name) {
                errors.push(ConfigError::new(format!("invalid server name `{}`", s.name)).at(l).help(NAME_HELP));
            } else if servers.iter().any(|x| x.name == s.name) {
                errors.push(ConfigError::new(format!("server `{}` is declared twice", s.name)).at(l));
            } else {
                if s.tls.is_some() && !s.docker.as_deref().is_some_and(|d| d.starts_with("tcp://")) {
                    errors.push(
                        ConfigError::new(format!("server `{}`: tls needs a tcp:// docker endpoint", s.name))
                            .at(l.clone()),
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
            servers.insert(
                0,
                Server { name: LOCAL_SERVER.into(), docker: None, tls: None, registry_auth: None, prune: None },
            );
        }

        // Defaults.
        let default_server = cfg.defaults.server.clone().unwrap_or_else(|| LOCAL_SERVER.into());
        let default_mode = parse_mode(cfg.defaults.mode.as_deref()).unwrap_or_else(|e| {
            errors.push(ConfigError::new(e).at(None).help("set [defaults] mode = \"compose\""));
            Mode::Compose
        });
        let default_timeout = match cfg.defaults.timeout.as_deref().map(duration::parse) {
            None => DEFAULT_TIMEOUT,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                errors.push(ConfigError::new(format!("[defaults] timeout: {e}")));
                DEFAULT_TIMEOUT
            }
        };

        let mut verr = Vec::new();
        let default_verify = verify::resolve(&Verify::default(), cfg.defaults.verify.as_ref(), &mut verr);
        let default_rollback = match cfg.defaults.rollback.as_deref().map(Rollback::parse) {
            None => Rollback::Auto,
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                verr.push(e);
                Rollback::Auto
            }
        };
        errors.extend(verr.into_iter().map(|e| ConfigError::new(format!("[defaults] {e}"))));

        let default_self_heal = cfg.defaults.self_heal.unwrap_or(false);

        // Discovery.
        let (pattern_texts, ignore) = match &cfg.discovery {
            Some(d) => {
                (d.patterns.clone().unwrap_or_else(|| DEFAULT_PATTERNS.map(String::from).to_vec()), d.ignore.clone())
            }
            None => (DEFAULT_PATTERNS.map(String::from).to_vec(), Vec::new()),
        };
        let mut patterns = Vec::new();
        for p in &pattern_texts {
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

        let template = Defaults {
            server: default_server.clone(),
            mode: default_mode,
            timeout: default_timeout,
            self_heal: default_self_heal,
            age_identity: cfg.berth.age_identity.clone(),
            verify: default_verify.clone(),
            rollback: default_rollback,
        };
        let mut stacks: Vec<Stack> = discovery::discover(tree, &patterns)
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
        let by_disc_path: HashMap<String, usize> =
            stacks.iter().enumerate().map(|(i, s)| (s.path.clone(), i)).collect();

        // Declared stacks refine discovered ones or add new ones.
        for entry in &cfg.stack {
            let l = loc(entry.span());
            let st = entry.get_ref();
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
                        let what = st
                            .name
                            .as_deref()
                            .map(|n| format!("stack `{n}`"))
                            .unwrap_or_else(|| "this [[stack]]".into());
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
            apply_entry(&mut stacks[idx], st, path, tree, &l, &mut errors);
        }

        // Whole-project checks.
        let mut by_name: HashMap<&str, &Stack> = HashMap::new();
        for s in &stacks {
            if !valid_name(&s.name) {
                errors.push(
                    ConfigError::new(format!("invalid stack name `{}` ({})", s.name, s.origin))
                        .at(s.location.clone())
                        .help(NAME_HELP),
                );
            }
            if let Some(other) = by_name.insert(&s.name, s) {
                errors.push(
                    ConfigError::new(format!("two stacks are named `{}`: `{}` and `{}`", s.name, other.path, s.path))
                        .help("give one of them another name with [[stack]] name = \"...\" and path = \"...\""),
                );
            }
            if s.compose_files.is_empty() {
                errors.push(
                    ConfigError::new(format!("stack `{}` has no compose file in `{}`", s.name, s.path))
                        .help("add compose.yaml to the folder or list files with compose = [\"...\"]"),
                );
            }
            if !servers.iter().any(|x| x.name == s.server) {
                let hint = match did_you_mean(&s.server, servers.iter().map(|x| x.name.as_str())) {
                    Some(best) => format!("did you mean `{best}`? Or declare it: [[server]] name = \"{}\"", s.server),
                    None => format!("declare it in berth.toml: [[server]] name = \"{}\"", s.server),
                };
                errors.push(
                    ConfigError::new(format!(
                        "stack `{}` targets server `{}`, which is not declared",
                        s.name, s.server
                    ))
                    .at(s.location.clone())
                    .help(hint),
                );
            }
            for d in &s.after {
                if d == &s.name {
                    errors.push(ConfigError::new(format!("stack `{}` lists itself in `after`", s.name)));
                }
            }
        }
        for s in &stacks {
            for d in &s.after {
                if !by_name.contains_key(d.as_str()) {
                    let e = ConfigError::new(format!("stack `{}` comes after unknown stack `{d}`", s.name))
                        .at(s.location.clone());
                    errors.push(match did_you_mean(d, by_name.keys().copied()) {
                        Some(best) => e.help(format!("did you mean `{best}`?")),
                        None => e,
                    });
                }
            }
        }
        drop(by_name);
        // Tiers order whole groups: each stack comes after every stack of the nearest earlier, non-empty tier.
        let tiers = &cfg.berth.tiers;
        for s in &stacks {
            if let Some(t) = &s.tier
                && !tiers.contains(t)
            {
                let e = ConfigError::new(format!("stack `{}` is in unknown tier `{t}`", s.name)).at(s.location.clone());
                errors.push(match did_you_mean(t, tiers.iter().map(String::as_str)) {
                    Some(best) => e.help(format!("did you mean `{best}`? Tiers are listed in [berth] tiers")),
                    None => e.help("list it in [berth] tiers = [...]"),
                });
            }
        }
        let rank = |s: &Stack| s.tier.as_ref().and_then(|t| tiers.iter().position(|x| x == t));
        let ranks: Vec<Option<usize>> = stacks.iter().map(rank).collect();
        for i in 0..stacks.len() {
            let Some(r) = ranks[i] else { continue };
            let earlier = (0..r).rev().find_map(|k| {
                let members: Vec<String> =
                    stacks.iter().zip(&ranks).filter(|(_, rr)| **rr == Some(k)).map(|(s, _)| s.name.clone()).collect();
                (!members.is_empty()).then_some(members)
            });
            for d in earlier.unwrap_or_default() {
                if !stacks[i].after.contains(&d) {
                    stacks[i].after.push(d);
                }
            }
        }
        stacks.sort_by(|a, b| a.name.cmp(&b.name));
        if errors.is_empty()
            && let Err(cycle) = dag::order(&stacks)
        {
            errors.push(
                ConfigError::new(format!("dependency cycle: {}", cycle.join(" → ")))
                    .help("remove one of these `after` entries"),
            );
        }

        let repos = repo_specs(file, text, &cfg, &mut errors);
        let mut environments: Vec<Environment> = Vec::new();
        for e in &cfg.environment {
            let l = loc(e.span());
            let e = e.get_ref();
            if !valid_name(&e.name) {
                errors.push(
                    ConfigError::new(format!("invalid environment name `{}`", e.name)).at(l.clone()).help(NAME_HELP),
                );
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
        let drift_interval = match cfg.berth.drift_interval.as_deref().map(duration::parse) {
            None => Some(Duration::from_secs(300)),
            Some(Ok(d)) if d.is_zero() => None,
            Some(Ok(d)) => Some(d),
            Some(Err(e)) => {
                errors.push(ConfigError::new(format!("[berth] drift_interval: {e}")));
                None
            }
        };
        for n in &cfg.notify {
            let l = loc(n.span());
            let n = n.get_ref();
            if !["webhook", "ntfy", "slack", "discord", "gotify"].contains(&n.kind.as_str()) {
                errors.push(
                    ConfigError::new(format!("unknown notify kind `{}`", n.kind))
                        .at(l.clone())
                        .help("use webhook, ntfy, slack, discord or gotify"),
                );
            }
            if !(n.url.starts_with("http://") || n.url.starts_with("https://")) {
                errors.push(ConfigError::new(format!("notify url `{}` must be http(s)", n.url)).at(l.clone()));
            }
            for e in n.events.iter().flatten() {
                if !crate::config::NOTIFY_EVENTS.contains(&e.as_str()) {
                    let err = ConfigError::new(format!("unknown notify event `{e}`")).at(l.clone());
                    errors.push(match did_you_mean(e, crate::config::NOTIFY_EVENTS) {
                        Some(best) => err.help(format!("did you mean `{best}`?")),
                        None => err.help(format!("events: {}", crate::config::NOTIFY_EVENTS.join(", "))),
                    });
                }
            }
        }
        let dashboard = crate::dashboard::resolve(cfg.dashboard.as_ref().map(|d| d.get_ref()), &mut errors);
        let max_parallel = cfg.berth.max_parallel.unwrap_or(DEFAULT_MAX_PARALLEL);
        if max_parallel == 0 {
            errors.push(ConfigError::new("[berth] max_parallel must be at least 1"));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Project {
            state_dir: cfg.berth.state_dir.clone(),
            max_parallel,
            servers,
            stacks,
            ignore,
            patterns: pattern_texts,
            configured: !text.is_empty(),
            repos,
            environments,
            listen: cfg.berth.listen.clone().unwrap_or_else(|| DEFAULT_LISTEN.into()),
            max_body: cfg.berth.max_body.unwrap_or(DEFAULT_MAX_BODY),
            drift_interval,
            notify: cfg.notify.iter().map(|n| n.get_ref().clone()).collect(),
            prune: cfg.berth.prune.unwrap_or(false),
            age_identity: cfg.berth.age_identity.clone(),
            dashboard,
        })
    }

    pub fn stack(&self, name: &str) -> Option<&Stack> {
        self.stacks.binary_search_by(|s| s.name.as_str().cmp(name)).ok().map(|i| &self.stacks[i])
    }

    /// May berth take down a removed stack that ran on `server`?
    pub fn prunes(&self, server: &str) -> bool {
        self.server(server).and_then(|s| s.prune).unwrap_or(self.prune)
    }

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
    pub fn ci_gate<'a>(&'a self, stack: &'a Stack) -> Option<&'a crate::config::CiToml> {
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

    pub fn server(&self, name: &str) -> Option<&Server> {
        self.servers.iter().find(|s| s.name == name)
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

/// The `[[repo]]` entries of a parsed file, validated (errors are appended to `errors`).
pub fn repo_specs(file: &str, text: &str, cfg: &ConfigFile, errors: &mut Vec<ConfigError>) -> Vec<RepoSpec> {
    let loc = |span: std::ops::Range<usize>| Some(Location::from_offset(file, text, span.start));
    let mut repos: Vec<RepoSpec> = Vec::new();
    for r in &cfg.repo {
        let l = loc(r.span());
        let r = r.get_ref();
        let at = |m: String| ConfigError::new(m).at(l.clone());
        if !valid_name(&r.name) {
            errors.push(at(format!("invalid repo name `{}`", r.name)).help(NAME_HELP));
        }
        if repos.iter().any(|x| x.name == r.name) {
            errors.push(at(format!("repo `{}` is declared twice", r.name)));
        }
        if url_has_password(&r.url) {
            errors.push(
                at(format!("repo `{}`: the url carries credentials", r.name))
                    .help("remove the password or token from the url and use token = { file = \"...\" } instead"),
            );
        }
        let poll = match r.poll.as_deref().map(duration::parse) {
            None => Some(DEFAULT_POLL),
            Some(Ok(d)) if d.is_zero() => None,
            Some(Ok(d)) => Some(d),
            Some(Err(e)) => {
                errors.push(at(format!("repo `{}` poll: {e}", r.name)));
                None
            }
        };
        for (what, s) in [("token", &r.token), ("webhook_secret", &r.webhook_secret)] {
            if let Some(s) = s
                && s.file.is_some() == s.env.is_some()
            {
                errors.push(at(format!("repo `{}` {what}: give exactly one of file or env", r.name)).help(format!(
                    "{what} = {{ file = \"/run/secrets/{what}\" }} or {what} = {{ env = \"BERTH_{}\" }}",
                    what.to_uppercase()
                )));
            }
        }
        repos.push(RepoSpec {
            name: r.name.clone(),
            url: r.url.clone(),
            branch: r.branch.clone().unwrap_or_else(|| "main".into()),
            poll,
            token: r.token.clone(),
            webhook_secret: r.webhook_secret.clone(),
        });
    }
    repos
}

/// What every new stack starts from (`[defaults]` resolved).
struct Defaults {
    server: String,
    mode: Mode,
    timeout: Duration,
    self_heal: bool,
    age_identity: Option<SecretRef>,
    verify: Verify,
    rollback: Rollback,
}

impl Defaults {
    fn stack(&self, name: String, path: String, compose_files: Vec<String>, tree: &Tree, origin: String) -> Stack {
        Stack {
            name,
            secrets: secret_files(tree, &path),
            compose_files,
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
            pre_deploy: Vec::new(),
            post_deploy: Vec::new(),
            tier: None,
            require_ci: None,
            self_heal: self.self_heal,
            age_identity: self.age_identity.clone(),
            verify: self.verify.clone(),
            rollback: self.rollback,
            origin,
            location: None,
        }
    }
}

/// Name endings of encrypted env files picked up from a stack folder without being listed.
pub const SECRET_FILE_SUFFIXES: [&str; 5] = [".env.age", ".sops.env", ".sops.yaml", ".sops.yml", ".sops.json"];

/// The encrypted env files directly in a stack folder.
fn secret_files(tree: &Tree, dir: &str) -> Vec<String> {
    tree.under(dir)
        .iter()
        .filter(|e| !e.path[dir.len() + 1..].contains('/') && SECRET_FILE_SUFFIXES.iter().any(|s| e.path.ends_with(s)))
        .map(|e| e.path.clone())
        .collect()
}

fn check_ci(ci: &crate::config::CiToml) -> Result<(), String> {
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

/// Does a URL carry a password or token (`https://user:secret@host/...`)?
fn url_has_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else { return false };
    let authority = rest.split('/').next().unwrap_or("");
    authority.rsplit_once('@').is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

fn parse_mode(m: Option<&str>) -> Result<Mode, String> {
    match m {
        None | Some("compose") => Ok(Mode::Compose),
        Some("swarm") => Ok(Mode::Swarm),
        Some(other) => Err(format!("unknown mode `{other}`; use mode = \"compose\" or \"swarm\"")),
    }
}

fn apply_entry(
    stack: &mut Stack,
    st: &StackToml,
    path: Option<String>,
    tree: &Tree,
    l: &Option<Location>,
    errors: &mut Vec<ConfigError>,
) {
    let at = |m: String| ConfigError::new(m).at(l.clone());
    stack.location = l.clone();
    if let Some(n) = &st.name {
        stack.name = n.clone();
    }
    if let Some(p) = path
        && p != stack.path
    {
        stack.compose_files = discovery::default_compose_files(tree, &p);
        stack.secrets = secret_files(tree, &p);
        stack.path = p;
    }
    if tree.under(&stack.path).is_empty() {
        errors.push(at(format!("stack `{}`: folder `{}` does not exist in the repository", stack.name, stack.path)));
    }
    if let Some(files) = &st.compose {
        stack.compose_files.clear();
        for f in files {
            match tree::join(&stack.path, f) {
                Some(p) if tree.contains(&p) => stack.compose_files.push(p),
                Some(p) => errors.push(at(format!("stack `{}`: compose file `{p}` does not exist", stack.name))),
                None => errors.push(at(format!("stack `{}`: compose file `{f}` leaves the repository", stack.name))),
            }
        }
    }
    for f in &st.env_files {
        match tree::join(&stack.path, f) {
            Some(p) if tree.contains(&p) => stack.env_files.push(p),
            Some(p) => errors.push(at(format!("stack `{}`: env file `{p}` does not exist", stack.name))),
            None => errors.push(at(format!("stack `{}`: env file `{f}` leaves the repository", stack.name))),
        }
    }
    if let Some(s) = &st.server {
        stack.server = s.clone();
    }
    if st.mode.is_some() {
        match parse_mode(st.mode.as_deref()) {
            Ok(m) => stack.mode = m,
            Err(e) => errors.push(at(format!("stack `{}`: {e}", stack.name))),
        }
    }
    if let Some(t) = &st.timeout {
        match duration::parse(t) {
            Ok(d) => stack.timeout = d,
            Err(e) => errors.push(at(format!("stack `{}` timeout: {e}", stack.name))),
        }
    }
    let mut verr = Vec::new();
    stack.verify = verify::resolve(&stack.verify, st.verify.as_ref(), &mut verr);
    if let Some(r) = &st.rollback {
        match Rollback::parse(r) {
            Ok(r) => stack.rollback = r,
            Err(e) => verr.push(e),
        }
    }
    errors.extend(verr.into_iter().map(|e| at(format!("stack `{}`: {e}", stack.name))));
    for g in st.watch.iter().chain(&st.ignore) {
        if let Err(e) = crate::changes::glob(g) {
            errors.push(at(format!("stack `{}`: {e}", stack.name)));
        }
    }
    for k in st.env.keys() {
        if !crate::vars::valid_key(k) {
            errors.push(at(format!("stack `{}`: `{k}` is not a valid variable name", stack.name)));
        }
    }
    for (what, cmd) in [("pre_deploy", &st.pre_deploy), ("post_deploy", &st.post_deploy)] {
        if cmd.as_ref().is_some_and(|c| c.is_empty() || c[0].is_empty()) {
            errors.push(at(format!(
                "stack `{}`: {what} needs a program, e.g. [\"sh\", \"scripts/check.sh\"]",
                stack.name
            )));
        }
    }
    if let Some(c) = &st.pre_deploy {
        stack.pre_deploy = c.clone();
    }
    if let Some(c) = &st.post_deploy {
        stack.post_deploy = c.clone();
    }
    if st.tier.is_some() {
        stack.tier = st.tier.clone();
    }
    if let Some(h) = st.self_heal {
        stack.self_heal = h;
    }
    if let Some(ci) = &st.require_ci {
        if let Err(m) = check_ci(ci) {
            errors.push(at(format!("stack `{}` require_ci: {m}", stack.name)));
        }
        stack.require_ci = Some(ci.clone());
    }
    stack.after.extend(st.after.iter().cloned());
    stack.watch.extend(st.watch.iter().cloned());
    stack.ignore.extend(st.ignore.iter().cloned());
    for (k, v) in &st.env {
        match v {
            crate::config::EnvValue::Plain(v) => {
                stack.env.insert(k.clone(), v.clone());
            }
            crate::config::EnvValue::Secret(r) => {
                if r.file.is_some() == r.env.is_some() {
                    errors.push(at(format!("stack `{}` env `{k}`: give exactly one of file or env", stack.name)));
                }
                stack.secret_env.insert(k.clone(), r.clone());
            }
        }
    }
    for f in &st.secrets {
        match tree::join(&stack.path, f) {
            Some(p) if tree.contains(&p) => {
                if !stack.secrets.contains(&p) {
                    stack.secrets.push(p);
                }
            }
            Some(p) => errors.push(at(format!("stack `{}`: secret file `{p}` does not exist", stack.name))),
            None => errors.push(at(format!("stack `{}`: secret file `{f}` leaves the repository", stack.name))),
        }
    }
    if let Some(m) = st.manual {
        stack.manual = m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> Tree {
        Tree::from_paths([
            "nodes/onyx/caddy/compose.yaml",
            "nodes/onyx/quartermaster/compose.yaml",
            "nodes/onyx/quartermaster/.env",
            "stacks/web/compose.yaml",
            "bootstrap/op-connect/compose.yaml",
            "libs/common.env",
        ])
    }

    fn errors(text: &str) -> Vec<String> {
        Project::load("berth.toml", Some(text), &tree()).unwrap_err().into_iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn zero_config_needs_declared_servers_for_nodes() {
        let errs = Project::load("berth.toml", None, &tree()).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].message.contains("server `onyx`"));
        let only_stacks = Tree::from_paths(["stacks/a/compose.yaml", "stacks/b/compose.yml"]);
        let p = Project::load("berth.toml", None, &only_stacks).unwrap();
        assert_eq!(p.stacks.iter().map(|s| s.server.as_str()).collect::<Vec<_>>(), ["local", "local"]);
    }

    #[test]
    fn declared_stacks_refine_and_add() {
        let p = Project::load(
            "berth.toml",
            Some(
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
"#,
            ),
            &tree(),
        )
        .unwrap();
        let qm = p.stack("quartermaster").unwrap();
        assert_eq!(qm.server, "onyx");
        assert_eq!(qm.watch, ["libs/**"]);
        assert_eq!(qm.env_files, ["libs/common.env"]);
        let op = p.stack("op-connect").unwrap();
        assert!(op.manual);
        assert_eq!(op.compose_files, ["bootstrap/op-connect/compose.yaml"]);
        assert_eq!(p.stacks.len(), 4);
    }

    #[test]
    fn reports_every_error_at_once() {
        let errs = errors(
            r#"
[[server]]
name = "onyx"
[[stack]]
name = "Bad Name"
path = "stacks/web"
[[stack]]
name = "escape"
path = "../outside"
[[stack]]
name = "caddy"
after = ["quatermaster"]
server = "nowhere"
"#,
        );
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(errs.iter().any(|e| e.starts_with("berth.toml:7:1: stack path `../outside` leaves")), "{errs:#?}");
        assert!(errs.iter().any(|e| e.contains("invalid stack name `Bad Name`")));
        assert!(errs.iter().any(|e| e.contains("unknown stack `quatermaster`")));
        assert!(errs.iter().any(|e| e.contains("server `nowhere`")));
    }

    #[test]
    fn cycles_are_named() {
        let errs = errors(
            r#"
[[server]]
name = "onyx"
[[stack]]
name = "caddy"
after = ["web"]
[[stack]]
name = "web"
after = ["quartermaster"]
[[stack]]
name = "quartermaster"
after = ["caddy"]
"#,
        );
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("caddy → web → quartermaster → caddy"), "{errs:?}");
    }

    #[test]
    fn repos_and_environments_are_checked() {
        let p = Project::load(
            "berth.toml",
            Some(
                "[[server]]\nname = \"onyx\"\n[[repo]]\nname = \"homelab\"\nurl = \"https://git.example.com/me/homelab.git\"\nwebhook_secret = { env = \"HOOK\" }\n[[environment]]\nname = \"staging\"\nservers = [\"onyx\"]\n",
            ),
            &tree(),
        )
        .unwrap();
        assert_eq!(p.repos[0].branch, "main");
        assert_eq!(p.repos[0].poll, Some(DEFAULT_POLL));
        let env = &p.environments[0];
        let names: Vec<_> = p.environment_stacks(env).iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["caddy", "quartermaster"]);
        let errs = errors(
            "[[server]]\nname = \"onyx\"\n[[repo]]\nname = \"r\"\nurl = \"https://me:tok@git.example.com/x.git\"\ntoken = { file = \"a\", env = \"B\" }\n[[environment]]\nname = \"prod\"\nservers = [\"nowhere\"]\n",
        );
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(url_has_password("https://u:p@h/x"));
        assert!(!url_has_password("ssh://git@h/x"));
        assert!(!url_has_password("https://h/x@y"));
    }

    #[test]
    fn tiers_order_whole_groups() {
        let t = Tree::from_paths([
            "stacks/db/compose.yaml",
            "stacks/proxy/compose.yaml",
            "stacks/app/compose.yaml",
            "stacks/free/compose.yaml",
        ]);
        let cfg = "[berth]\ntiers = [\"infra\", \"platform\", \"apps\"]\n[[stack]]\nname = \"db\"\ntier = \"infra\"\n[[stack]]\nname = \"proxy\"\ntier = \"infra\"\n[[stack]]\nname = \"app\"\ntier = \"apps\"\n";
        let p = Project::load("berth.toml", Some(cfg), &t).unwrap();
        assert_eq!(p.stack("app").unwrap().after, ["db", "proxy"]);
        assert!(p.stack("free").unwrap().after.is_empty());
        let bad = Project::load("berth.toml", Some(&cfg.replace("tier = \"apps\"", "tier = \"aps\"")), &t).unwrap_err();
        assert!(bad[0].help.as_deref().unwrap().contains("apps"), "{bad:?}");
    }

    #[test]
    fn names_are_validated() {
        assert!(valid_name("a-b_9"));
        assert!(!valid_name("-a"));
        assert!(!valid_name("A"));
        assert!(!valid_name(""));
    }

    #[test]
    fn duplicate_discovered_names_need_disambiguation() {
        let t = Tree::from_paths(["nodes/a/caddy/compose.yaml", "nodes/b/caddy/compose.yaml"]);
        let text = "[[server]]\nname = \"a\"\n[[server]]\nname = \"b\"\n";
        let errs = Project::load("berth.toml", Some(text), &t).unwrap_err();
        assert!(errs[0].message.contains("two stacks are named `caddy`"), "{errs:?}");
    }
}
