//! Command implementations: one function per verb, sharing workspace setup.

mod adopt;
mod ci;
mod diff;
mod doctor;
mod freeze;
mod inspect;
mod run;
mod serve;
mod trigger;
mod updates;
mod watch;

use std::collections::HashMap;

use berth_core::Project;

use crate::cli::{Cli, Command};
use crate::docker::{Compose, Engine};
use crate::error::{Error, Result};
use crate::state::State;
use crate::workspace::Workspace;

/// Run the command; returns the exit code for outcomes that are not errors.
pub fn run(cli: Cli) -> Result<i32> {
    let g = &cli.global;
    let ws = || Workspace::open(g.repo.as_deref(), g.state_dir.as_deref());
    match cli.command {
        Command::Validate { r#ref } => inspect::validate(&ws()?, r#ref.as_deref()),
        Command::Changed { from, to, json, names } => inspect::changed(&ws()?, &from, &to, json, names),
        Command::Updates { stacks, r#ref, json, apply } => updates::updates(&ws()?, &r#ref, &stacks, json, apply),
        Command::Plan { r#ref, json, diff } => inspect::plan(&ws()?, &r#ref, json, diff),
        Command::Diff { base, head, stacks, json } => diff::diff(&ws()?, base.as_deref(), &head, &stacks, json),
        Command::Apply { r#ref, no_wait, force, reason } => {
            let ws = ws()?;
            ws.require_stacks(&ws.snapshot(&r#ref)?.project)?;
            run::apply(&ws, &r#ref, !no_wait, reason.filter(|_| force).as_deref())
        }
        Command::Deploy { stack, r#ref, set, no_wait, force, reason } => {
            run::deploy(&ws()?, &stack, &r#ref, &set, !no_wait, reason.filter(|_| force).as_deref())
        }
        Command::Bootstrap { r#ref } => run::bootstrap(&ws()?, &r#ref),
        Command::Adopt { stacks, r#ref } => adopt::adopt(&ws()?, &stacks, &r#ref),
        Command::Drift { json, heal } => run::drift(&ws()?, json, heal),
        Command::Pause { stack, reason } => run::pause(&ws()?, &stack, true, reason.as_deref()),
        Command::Resume { stack } => run::pause(&ws()?, &stack, false, None),
        Command::Freeze { stacks, env, until, reason } => {
            freeze::freeze(&ws()?, &stacks, env.as_deref(), &until, &reason)
        }
        Command::Unfreeze { stacks, env } => freeze::unfreeze(&ws()?, &stacks, env.as_deref()),
        Command::Ci { command } => ci::run(&ws()?, &command),
        Command::Import { from: crate::cli::ImportFrom::Komodo { file, strict } } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Error::Usage(format!("cannot read {}: {e}", file.display())))?;
            let out = berth_core::import::komodo(&text).map_err(Error::Usage)?;
            print!("{}", out.toml);
            for c in &out.confirm {
                eprintln!("confirm: {c}");
            }
            for w in &out.warnings {
                eprintln!("not imported: {w}");
            }
            eprintln!("{}", out.summary());
            if strict && !out.warnings.is_empty() {
                return Err(Error::Usage(format!(
                    "--strict: {} fields or resources were not mapped (listed above)",
                    out.warnings.len()
                )));
            }
            Ok(crate::error::exit::OK)
        }
        Command::Status { json } => inspect::status(&ws()?, json),
        Command::History { stack: Some(stack), limit, json, .. } => inspect::history(&ws()?, &stack, limit, json),
        Command::History { env: Some(env), json, .. } => inspect::releases(&ws()?, &env, json),
        Command::History { .. } => Err(Error::Usage("give a stack or --env".into())),
        Command::Promote { from, to, tag, force, reason } => {
            run::promote(&ws()?, from.as_deref(), &to, tag.as_deref(), reason.filter(|_| force).as_deref())
        }
        Command::Logs { id } => inspect::logs(&ws()?, id),
        Command::Rollback { stack, to, r#ref, no_wait, force, reason } => {
            run::rollback(&ws()?, &stack, to, r#ref.as_deref(), !no_wait, reason.filter(|_| force).as_deref())
        }
        Command::Watch { id, commit, stack, server, api_key, api_secret, timeout } => {
            let target = watch::Target { id, commit, stack };
            let timeout = berth_core::duration::parse(&timeout).map_err(|e| Error::Usage(format!("--timeout: {e}")))?;
            match server {
                Some(url) => watch::remote(&url, api_key.as_deref(), api_secret.as_deref(), &target, timeout),
                None => watch::local(&ws()?, &target, timeout),
            }
        }
        Command::Doctor => doctor::doctor(g.repo.as_deref(), g.state_dir.as_deref()),
        Command::Serve { config, listen, shutdown_grace, .. } => {
            serve::serve(g, config.as_deref(), listen.as_deref(), &shutdown_grace)
        }
        Command::Keys { command } => serve::keys(g, &command),
        Command::Trigger { stacks, server, api_key, api_secret, wait } => {
            trigger::trigger(&stacks, &server, &api_key, &api_secret, wait)
        }
    }
}

/// Engines for the servers that `stacks` deploy to, each checked reachable.
/// Nothing here runs when there is nothing to deploy.
fn engines<'a>(project: &Project, servers: impl IntoIterator<Item = &'a str>) -> Result<HashMap<String, Engine>> {
    let mut names: Vec<&str> = servers.into_iter().collect();
    names.sort_unstable();
    names.dedup();
    let mut servers = Vec::new();
    for name in names {
        let server = project.server(name).ok_or_else(|| Error::Usage(format!("server `{name}` is not declared")))?;
        servers.push((name, server));
    }
    // Detection and the pings are independent processes: run them at once. A ping runs only
    // `docker`, so its engine is built without the compose plugin (whose folder `registry_auth` needs).
    let (compose, pinged) = std::thread::scope(|s| {
        let pings: Vec<_> = servers
            .iter()
            .map(|(name, server)| {
                let probe = Engine::for_server(server, &Compose::Standalone { version: String::new() });
                let endpoint = probe.endpoint();
                (*name, endpoint, s.spawn(move || probe.ping()))
            })
            .collect();
        let compose = Compose::detect();
        let pinged: Vec<_> = pings
            .into_iter()
            .map(|(name, endpoint, h)| {
                let unanswered =
                    || crate::docker::DockerError::Unreachable { endpoint, message: "the check did not finish".into() };
                (name, h.join().unwrap_or_else(|_| Err(unanswered())))
            })
            .collect();
        (compose, pinged)
    });
    let compose = compose?;
    for (name, ping) in pinged {
        ping.map_err(|e| match e {
            crate::docker::DockerError::Unreachable { endpoint, message } => {
                crate::docker::DockerError::Unreachable { endpoint: format!("{endpoint} (server `{name}`)"), message }
            }
            other => other,
        })?;
    }
    Ok(servers.into_iter().map(|(name, server)| (name.to_string(), Engine::for_server(server, &compose))).collect())
}

/// Deploys left `running` whose stack lock nobody holds belonged to a berth that
/// died (`kill -9`, a crash, a reboot): record them as interrupted. An interruption
/// is not a failure of that config: the plan redeploys the stack (reason
/// `interrupted`), so nothing is re-verified or rolled back here and this is fast.
fn settle_interrupted(ws: &Workspace, state: &State) -> Result<()> {
    for r in state.latest()? {
        let why = "berth stopped while this deploy was running; the next apply redeploys the stack";
        if ws.abandoned(&r.stack, r.status)? && state.interrupt(r.id, why)? {
            println!("! {:<20} deploy {} was interrupted; it will be redeployed", r.stack, r.id);
        }
    }
    Ok(())
}
