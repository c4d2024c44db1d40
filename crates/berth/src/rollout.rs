//! Start-first rollouts of compose services (`rollout = "start-first"`): the new containers start
//! beside the old ones, and only once they are ready are the old ones drained (disconnected from
//! their networks, given `drain` to finish, stopped and removed). A new container that is not ready
//! is removed and the old ones keep serving, untouched.
//!
//! Runs before the stack's `up`, which then finds each rolled service at its declared scale with the
//! new configuration and leaves it alone. The command lines come from [`crate::docker::rollout`], the
//! engine reads from [`crate::converge::rollout`].

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use berth_core::Stack;
use berth_core::rollback::Cause;
use berth_core::rollout::Order;

use crate::bridge::block_on;
use crate::converge::{self, Report};
use crate::docker::{self, Engine, ProjectRef, rollout as cmd};

/// What a rollout needs from the deploy running it: engine commands under the stack's lock, its log,
/// and its deadline.
pub trait Steps {
    /// Run a command that changes the engine, logged, within the deploy's deadline.
    fn engine_exec(&mut self, cmd: Command, what: &str) -> Result<String, String>;
    fn note(&mut self, line: &str);
    fn remaining(&self) -> Duration;
}

/// One stack's rollout: its definition and rendered model, and where it runs.
pub struct Rollout<'a> {
    pub stack: &'a Stack,
    pub engine: &'a Engine,
    pub project: &'a ProjectRef<'a>,
    /// The output of `compose config`.
    pub config: &'a str,
    /// Services whose bind-mounted files changed (an empty name: maybe any).
    pub bind_changed: &'a [String],
}

/// Why a rollout stopped; `touched`: an earlier service was already rolled out.
pub struct Failed {
    pub cause: Cause,
    pub touched: bool,
    /// The new containers' verification, when that is what failed.
    pub report: Option<Report>,
}

/// Roll out every start-first service that has containers and changed (configuration, image, or a
/// bind-mounted file), one service at a time. Returns the services rolled out.
pub fn start_first(steps: &mut dyn Steps, r: &Rollout<'_>) -> Result<Vec<String>, Failed> {
    let stack = r.stack;
    let untouched = |cause| Failed { cause, touched: false, report: None };
    // What `compose config` rendered (includes, overrides and variables applied) must allow it too.
    let refused = berth_core::rollout::check(
        &stack.name,
        &stack.rollout,
        stack.location.as_ref(),
        &[("the compose model (compose config)", r.config)],
    );
    if !refused.is_empty() {
        let lines: Vec<String> = refused.iter().map(|e| e.message.clone()).collect();
        return Err(untouched(Cause::ComposeRejected(lines.join("; "))));
    }
    let services: Vec<_> = docker::services(r.config)
        .map_err(|e| untouched(Cause::ComposeRejected(e)))?
        .into_iter()
        .filter(|s| !s.one_shot && stack.rollout.order_of(&s.name) == Order::StartFirst)
        .collect();
    if services.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = steps
        .engine_exec(r.engine.compose_config_hash(r.project), "compose config --hash")
        .map(|out| docker::config_hashes(&out))
        .map_err(|e| untouched(Cause::ComposeRejected(e)))?;
    let engine = r.engine.clone();
    let project = stack.name.clone();
    let looked = block_on(async {
        let docker = converge::connect(&engine).await?;
        let images = converge::expected_images(&docker, &services).await?;
        let mut members = BTreeMap::new();
        for s in &services {
            members.insert(s.name.clone(), converge::rollout::members(&docker, &project, &s.name).await?);
        }
        Ok::<_, String>((images, members))
    });
    let (images, members) = looked.map_err(|e| untouched(Cause::UpFailed { error: e, unchanged: true }))?;
    let mut rolled = Vec::new();
    for s in &services {
        let old = members.get(&s.name).cloned().unwrap_or_default();
        if old.is_empty() {
            continue; // nothing serves yet: `up` creates it
        }
        let stale = old.iter().any(|c| {
            hashes.get(&s.name).is_some_and(|h| *h != c.config_hash)
                || images.get(&s.name).is_some_and(|i| *i != c.image)
        }) || r.bind_changed.iter().any(|b| b.is_empty() || *b == s.name);
        if !stale {
            continue;
        }
        let touched = !rolled.is_empty();
        one(steps, r, &s.name, &old).map_err(|(cause, report)| Failed { cause, touched, report })?;
        rolled.push(s.name.clone());
    }
    Ok(rolled)
}

/// Roll out `service`, whose containers are `old`.
fn one(
    steps: &mut dyn Steps,
    r: &Rollout<'_>,
    service: &str,
    old: &[converge::rollout::Member],
) -> Result<(), (Cause, Option<Report>)> {
    let stack = r.stack;
    let want = docker::rollout::declared_scale(r.config, service);
    steps.note(&format!(
        "start-first: starting {want} new container(s) of `{service}` beside the {} running",
        old.len()
    ));
    let args = cmd::scale_up_args(service, old.len() + want);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let up = steps.engine_exec(r.engine.compose(r.project, &args), "compose up (start-first)");
    let engine = r.engine.clone();
    let (project, name) = (stack.name.clone(), service.to_string());
    let now = block_on(async {
        let docker = converge::connect(&engine).await?;
        converge::rollout::members(&docker, &project, &name).await
    });
    let new: Vec<String> = match &now {
        Ok(now) => now.iter().filter(|c| !old.iter().any(|o| o.id == c.id)).map(|c| c.id.clone()).collect(),
        Err(_) => Vec::new(),
    };
    let ready = match (up, now) {
        (Err(e), _) => Err((Cause::UpFailed { error: e, unchanged: true }, None)),
        (Ok(_), Err(e)) => Err((Cause::Verification(e), None)),
        (Ok(_), Ok(_)) if new.is_empty() => {
            Err((Cause::Verification(format!("compose created no new container of `{service}`")), None))
        }
        (Ok(_), Ok(_)) => match hide_and_start(steps, r, &new) {
            Err(e) => Err((Cause::UpFailed { error: e, unchanged: true }, None)),
            Ok(hidden) => {
                let v = &stack.verify;
                let timeout = v.timeout.min(steps.remaining());
                let (engine, name, ids) = (r.engine.clone(), service.to_string(), new.clone());
                let report = block_on(async {
                    match converge::connect(&engine).await {
                        Ok(docker) => converge::rollout::ready(&docker, &name, &ids, timeout, v.stable).await,
                        Err(e) => Report { ok: false, summary: e, containers: Vec::new() },
                    }
                });
                steps.note(&format!("start-first: `{service}`: {}", report.summary));
                if !report.ok {
                    Err((Cause::Verification(report.summary.clone()), Some(report)))
                } else {
                    // Ready: the new containers take the service's name on every network.
                    promote(steps, r, &hidden).map_err(|e| (Cause::UpFailed { error: e, unchanged: true }, None))
                }
            }
        },
    };
    if let Err((cause, report)) = ready {
        // The old containers were never touched: removing the new ones is the whole rollback.
        for id in &new {
            let _ = steps.engine_exec(r.engine.remove_container(id), "removing a new container that failed");
        }
        let kept = old.iter().map(|o| short(&o.id)).collect::<Vec<_>>().join(", ");
        let kept = format!("the new containers were removed and the old ones ({kept}) kept serving");
        let cause = match cause {
            Cause::Verification(m) => Cause::Verification(format!("start-first rollout of `{service}`: {m}; {kept}")),
            Cause::UpFailed { error, .. } => Cause::UpFailed {
                error: format!("start-first rollout of `{service}`: {error}; {kept}"),
                unchanged: true,
            },
            other => other,
        };
        return Err((cause, report));
    }
    drain(steps, r, service, old);
    Ok(())
}

/// A new container's networks and the aliases it takes there once ready.
type Hidden = Vec<(String, Vec<(String, Vec<String>)>)>;

/// Start each of `new` attached to its networks without its aliases, so Docker's DNS does not hand it
/// out under the service's name (or any alias) before it is ready; it still reaches every other
/// service while it starts.
fn hide_and_start(steps: &mut dyn Steps, r: &Rollout<'_>, new: &[String]) -> Result<Hidden, String> {
    let mut hidden = Vec::new();
    for id in new {
        let engine = r.engine.clone();
        let nets = block_on(async {
            let docker = converge::connect(&engine).await?;
            converge::rollout::networks(&docker, id).await
        })?;
        for (n, _) in &nets {
            steps.engine_exec(r.engine.network_disconnect(n, id), "docker network disconnect")?;
            steps.engine_exec(r.engine.network_connect(n, id, &[]), "docker network connect (no alias)")?;
        }
        steps.engine_exec(r.engine.start_container(id), "docker start")?;
        hidden.push((id.clone(), nets));
    }
    Ok(hidden)
}

/// Give ready containers back their aliases: their endpoints are re-created with them (connections
/// they opened while starting are reset once, while the old containers still serve).
fn promote(steps: &mut dyn Steps, r: &Rollout<'_>, hidden: &Hidden) -> Result<(), String> {
    for (id, nets) in hidden {
        for (n, aliases) in nets {
            steps.engine_exec(r.engine.network_disconnect(n, id), "docker network disconnect")?;
            steps.engine_exec(r.engine.network_connect(n, id, aliases), "docker network connect")?;
        }
    }
    Ok(())
}

/// Take `old` out of service: off every network (DNS and proxies stop sending new requests), a
/// `drain` pause for what is in flight, then stop (its own signal and grace period) and remove.
/// A failure here is logged, not fatal: the new containers already serve.
fn drain(steps: &mut dyn Steps, r: &Rollout<'_>, service: &str, old: &[converge::rollout::Member]) {
    let drain = r.stack.rollout.drain;
    steps.note(&format!(
        "start-first: draining {} old container(s) of `{service}` for {}ms",
        old.len(),
        drain.as_millis()
    ));
    for o in old {
        for n in &o.networks {
            if let Err(e) = steps.engine_exec(r.engine.network_disconnect(n, &o.id), "docker network disconnect") {
                steps.note(&format!("warning: {e}"));
            }
        }
    }
    std::thread::sleep(drain.min(steps.remaining()));
    for o in old {
        if let Err(e) = steps.engine_exec(r.engine.stop_container(&o.id), "docker stop") {
            steps.note(&format!("warning: {e}"));
        }
        if let Err(e) = steps.engine_exec(r.engine.remove_container(&o.id), "docker rm") {
            steps.note(&format!("warning: {e}; compose's next `up` scales `{service}` back to its declared size"));
        }
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
