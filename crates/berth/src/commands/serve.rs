//! `berth serve` and `berth keys`: starting the controller and managing its API keys.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use berth_core::config::{self, SecretRef};
use berth_core::project::{self, DEFAULT_LISTEN, DEFAULT_MAX_BODY, DEFAULT_MAX_PARALLEL, DEFAULT_POLL, RepoSpec};
use berth_core::{ConfigError, duration};

use crate::cli::{Global, KeysCommand};
use crate::controller::{Controller, Setup};
use crate::docker::Compose;
use crate::error::{Error, Result, exit};
use crate::keys::{self, Scope};
use crate::output::table;
use crate::secrets;
use crate::state::State;
use crate::workspace::Workspace;

/// Everything `serve` reads from its configuration.
struct ServeConfig {
    state_dir: PathBuf,
    repos: Vec<RepoSpec>,
    listen: String,
    max_parallel: usize,
    max_body: usize,
    dashboard: berth_core::dashboard::Dashboard,
}

fn load(g: &Global, config_file: Option<&Path>) -> Result<ServeConfig> {
    if let Some(path) = config_file {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Usage(format!("cannot read {file}: {e}")))?;
        let cfg = config::parse(&file, &text)?;
        let mut errors = Vec::new();
        let repos = project::repo_specs(&file, &text, &cfg, &mut errors);
        let dashboard = berth_core::dashboard::resolve(cfg.dashboard.as_ref().map(|d| d.get_ref()), &mut errors);
        if !errors.is_empty() {
            return Err(Error::Config(errors));
        }
        if repos.is_empty() {
            return Err(Error::Config(vec![
                ConfigError::new(format!("{file} declares no [[repo]] to follow"))
                    .help("add [[repo]] name = \"stacks\" url = \"...\" branch = \"main\""),
            ]));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let state_dir =
            g.state_dir.clone().unwrap_or_else(|| base.join(cfg.berth.state_dir.as_deref().unwrap_or(".berth")));
        return Ok(ServeConfig {
            state_dir,
            repos,
            listen: cfg.berth.listen.unwrap_or_else(|| DEFAULT_LISTEN.into()),
            max_parallel: cfg.berth.max_parallel.unwrap_or(DEFAULT_MAX_PARALLEL),
            max_body: cfg.berth.max_body.unwrap_or(DEFAULT_MAX_BODY),
            dashboard,
        });
    }
    let ws = Workspace::open(g.repo.as_deref(), g.state_dir.as_deref())?;
    let snap = ws.snapshot("HEAD")?;
    let mut repos = snap.project.repos.clone();
    if repos.is_empty() {
        // Follow the checkout itself: its current branch, fetched like any remote.
        let branch = ws.repo.current_branch()?;
        repos.push(RepoSpec {
            name: "default".into(),
            url: ws.repo.root.display().to_string(),
            branch,
            poll: Some(DEFAULT_POLL),
            token: None,
            webhook_secret: Some(SecretRef { file: None, env: Some("BERTH_WEBHOOK_SECRET".into()) }),
            verify_commits: snap.project.verify_commits.clone(),
            pr_plans: false,
            pr_plans_same_repo: false,
            forge: None,
        });
    }
    Ok(ServeConfig {
        state_dir: ws.state_dir,
        repos,
        listen: snap.project.listen.clone(),
        max_parallel: snap.project.max_parallel,
        max_body: snap.project.max_body,
        dashboard: snap.project.dashboard.clone(),
    })
}

pub fn serve(g: &Global, config_file: Option<&Path>, listen: Option<&str>, grace: &str) -> Result<i32> {
    // Pin a `BERTH_NOW` clock to the start.
    let _ = crate::windows::now();
    let cfg = load(g, config_file)?;
    let grace = duration::parse(grace).map_err(|e| Error::Usage(format!("--shutdown-grace: {e}")))?;
    let listen = listen.unwrap_or(&cfg.listen);
    let addr: SocketAddr =
        listen.parse().map_err(|_| Error::Usage(format!("`{listen}` is not an address like 127.0.0.1:8080")))?;
    let mut repos = Vec::new();
    for spec in cfg.repos {
        let resolve = |what: &str, r: &Option<SecretRef>| -> Result<Option<String>> {
            match r {
                None => Ok(None),
                Some(r) => match secrets::resolve(r) {
                    Ok(v) => Ok(Some(v)),
                    // The implicit repo's secret is optional: without it webhooks are refused.
                    Err(secrets::SecretError::Env(var)) if spec.name == "default" && what == "webhook_secret" => {
                        tracing::warn!("{var} is not set: every webhook, /sync and /deploy call will be refused");
                        Ok(None)
                    }
                    Err(e) => Err(Error::Usage(format!("repo `{}` {what}: {e}", spec.name))),
                },
            }
        };
        let token = resolve("token", &spec.token)?;
        let secret = resolve("webhook_secret", &spec.webhook_secret)?;
        repos.push((spec, token, secret));
    }
    let dashboard = dashboard_setup(cfg.dashboard)?;
    let compose = Compose::detect()?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| Error::Io(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let ctl = Controller::start(Setup {
            state_dir: cfg.state_dir,
            repos,
            compose,
            max_parallel: cfg.max_parallel,
            dashboard,
        })?;
        crate::server::serve(ctl, addr, cfg.max_body, grace)
            .await
            .map_err(|e| Error::Io(format!("cannot serve on {addr}: {e}")))
    })?;
    Ok(exit::OK)
}

/// Read the dashboard's htpasswd entries (when basic auth is configured).
fn dashboard_setup(settings: berth_core::dashboard::Dashboard) -> Result<crate::controller::Dashboard> {
    let users = match &settings.htpasswd {
        Some(r) => {
            let text = secrets::resolve(r).map_err(|e| Error::Usage(format!("[dashboard] htpasswd: {e}")))?;
            berth_core::dashboard::parse_htpasswd(&text)
                .map_err(|e| Error::Usage(format!("[dashboard] htpasswd: {e}")))?
        }
        None => Vec::new(),
    };
    Ok(crate::controller::Dashboard { settings, users })
}

pub fn keys(g: &Global, command: &KeysCommand) -> Result<i32> {
    let state_dir = match &g.state_dir {
        Some(d) => d.clone(),
        None => Workspace::open(g.repo.as_deref(), None)?.state_dir,
    };
    let state = State::open(&state_dir)?;
    match command {
        KeysCommand::Create { name, scope, stacks } => {
            let scope = Scope::parse(scope)
                .ok_or_else(|| Error::Usage(format!("unknown scope `{scope}`: use read, deploy or admin")))?;
            if !project::valid_name(name) {
                return Err(Error::Usage(format!("invalid key name `{name}`: use lowercase letters, digits, - and _")));
            }
            let (k, secret) = keys::create(&state, name, scope, stacks).map_err(Error::Usage)?;
            println!("key:    {}", k.key);
            println!("secret: {secret}");
            eprintln!(
                "The secret is shown only now; berth stores a hash of it. Send both as X-Api-Key and X-Api-Secret."
            );
        }
        KeysCommand::List => {
            let rows: Vec<Vec<String>> = state
                .keys()?
                .into_iter()
                .map(|k| vec![k.name, k.key, k.scope, k.stacks, crate::output::age(k.created_at)])
                .collect();
            table(&["NAME", "KEY", "SCOPE", "STACKS", "CREATED"], &rows);
        }
        KeysCommand::Delete { name } => {
            if !state.delete_key(name)? {
                return Err(Error::Usage(format!("no key named `{name}`")));
            }
            println!("deleted key `{name}`");
        }
    }
    Ok(exit::OK)
}
