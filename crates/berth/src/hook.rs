//! `pre_deploy`/`post_deploy` hooks: the commands that run them where the stack runs, and the
//! environment they get (the stack engine's Docker client settings and the `BERTH_*` variables).
//!
//! A local hook runs on the machine running berth with `DOCKER_HOST`, `DOCKER_CONFIG` and the TLS
//! settings of the stack's server, so `docker ...` reaches the stack's engine. A hook with
//! `on = "engine"` runs in a one-shot container on that engine: created, the commit's files copied
//! in at [`ROOT`], started attached, then removed whatever happened.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use berth_core::project::{Hook, HookOn};
use berth_core::{Mode, Stack};

use crate::docker::Engine;

/// Where the commit's files are in a hook's one-shot container.
pub const ROOT: &str = "/berth";

/// How long removing a hook's container may take, even past the deploy's deadline.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(30);

/// One hook run of one deploy.
pub struct Context<'a> {
    /// `pre_deploy` or `post_deploy`.
    pub which: &'a str,
    pub stack: &'a Stack,
    pub commit: &'a str,
    /// The stack's checkout of the commit (the whole repository tree).
    pub checkout: &'a Path,
    pub engine: &'a Engine,
    /// A private folder for generated files (the TLS folder of `DOCKER_CERT_PATH`).
    pub scratch: &'a Path,
    /// The deploy's resolved variables.
    pub vars: &'a BTreeMap<String, String>,
}

/// Runs a command within the deploy's deadline and log; its stdout, or why it failed.
pub type Exec<'e> = &'e mut dyn FnMut(Command, &str) -> Result<String, String>;

/// Run `hook` where it asks to run.
pub fn run(ctx: &Context<'_>, hook: &Hook, exec: Exec<'_>) -> Result<(), String> {
    if hook.is_empty() {
        return Ok(());
    }
    match &hook.on {
        HookOn::Local => exec(local(ctx, hook)?, ctx.which).map(drop),
        HookOn::Engine { image, volumes } => {
            let out = exec(create(ctx, hook, image, volumes), &format!("{} (creating its container)", ctx.which))?;
            let id = out.trim().to_string();
            if id.is_empty() {
                return Err(format!("{}: docker create printed no container id", ctx.which));
            }
            let ran =
                exec(ctx.engine.copy_into(&id, ctx.checkout, ROOT), &format!("{} (copying the files)", ctx.which))
                    .and_then(|_| exec(ctx.engine.start_attached(&id), ctx.which));
            // Outside the deploy's deadline: a timed-out hook's container must still go.
            if let Err(e) = crate::process::run(&mut ctx.engine.remove_container(&id), REMOVE_TIMEOUT) {
                tracing::warn!(container = %id, "cannot remove the container of {}: {e}", ctx.which);
            }
            ran.map(drop)
        }
    }
}

/// The `BERTH_*` variables, with the checkout at `root` and the hook's folder at `dir`.
fn berth_vars(ctx: &Context<'_>, root: &str, dir: &str) -> Vec<(&'static str, String)> {
    let mode = match ctx.stack.mode {
        Mode::Compose => "compose",
        Mode::Swarm => "swarm",
    };
    vec![
        ("BERTH_HOOK", ctx.which.to_string()),
        ("BERTH_STACK", ctx.stack.name.clone()),
        ("BERTH_PROJECT", ctx.stack.name.clone()),
        ("BERTH_COMMIT", ctx.commit.to_string()),
        ("BERTH_SERVER", ctx.stack.server.clone()),
        ("BERTH_MODE", mode.to_string()),
        ("BERTH_DOCKER_HOST", ctx.engine.endpoint()),
        ("BERTH_REPO_DIR", root.to_string()),
        ("BERTH_STACK_DIR", join(root, &ctx.stack.path)),
        ("BERTH_HOOK_DIR", join(root, dir)),
    ]
}

fn join(root: &str, rel: &str) -> String {
    if rel.is_empty() || rel == "." { root.to_string() } else { format!("{}/{rel}", root.trim_end_matches('/')) }
}

/// `run` with its script argument made absolute under `root` (the script may sit at the repository root).
fn argv(hook: &Hook, root: &str) -> Vec<String> {
    let mut argv = hook.run.clone();
    if let Some((i, path)) = &hook.script
        && let Some(a) = argv.get_mut(*i)
    {
        *a = join(root, path);
    }
    argv
}

/// The command of a local hook: in its folder of the checkout, aimed at the stack's engine.
pub fn local(ctx: &Context<'_>, hook: &Hook) -> Result<Command, String> {
    let root = ctx.checkout.display().to_string();
    let argv = argv(hook, &root);
    let (program, args) = argv.split_first().ok_or_else(|| format!("{} has no program", ctx.which))?;
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(ctx.checkout.join(&hook.dir)).envs(ctx.vars);
    // A DOCKER_* among the deploy's variables must not redirect the hook to another engine.
    for k in ["DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONFIG"] {
        if ctx.vars.contains_key(k) {
            match std::env::var_os(k) {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
    }
    if ctx.engine.host.is_some() {
        cmd.env_remove("DOCKER_CONTEXT"); // it would win over DOCKER_HOST
    }
    let client = ctx.engine.client_env(ctx.scratch).map_err(|e| format!("{}: {e}", ctx.which))?;
    cmd.envs(client).envs(berth_vars(ctx, &root, &hook.dir));
    Ok(cmd)
}

/// `docker create` of an engine hook's container: the variables by name, the values in the CLI's environment.
fn create(ctx: &Context<'_>, hook: &Hook, image: &str, volumes: &[String]) -> Command {
    let berth = berth_vars(ctx, ROOT, &hook.dir);
    let names: Vec<String> = ctx.vars.keys().cloned().chain(berth.iter().map(|(k, _)| k.to_string())).collect();
    let labels = [("berth.stack", ctx.stack.name.as_str()), ("berth.hook", ctx.which)];
    let mut cmd = ctx.engine.create_oneshot(image, &join(ROOT, &hook.dir), volumes, &names, &labels, &argv(hook, ROOT));
    cmd.envs(ctx.vars).envs(berth);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::{Project, Tree};

    fn project(hook: &str) -> Project {
        let tree = Tree::from_paths(["stacks/web/compose.yaml", "scripts/check.sh"]);
        let toml = format!(
            "[[server]]\nname = \"edge\"\ndocker = \"ssh://deploy@10.0.0.5\"\n[[stack]]\nname = \"web\"\nserver = \"edge\"\npre_deploy = {hook}\n"
        );
        Project::load("berth.toml", Some(&toml), &tree).unwrap()
    }

    fn env(c: &Command, key: &str) -> Option<String> {
        c.get_envs().find(|(k, _)| *k == key).and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()))
    }

    fn engine() -> Engine {
        Engine {
            host: Some("ssh://deploy@10.0.0.5".into()),
            tls: None,
            docker_config: Some("/etc/berth/registry".into()),
            compose: crate::docker::Compose::Plugin { version: "2".into(), path: None },
        }
    }

    #[test]
    fn a_local_hook_reaches_the_stacks_engine_and_finds_its_script_at_the_root() {
        let p = project(r#"["sh", "scripts/check.sh", "--fast"]"#);
        let stack = p.stack("web").unwrap();
        let vars = BTreeMap::from([("DOCKER_HOST".to_string(), "tcp://elsewhere".to_string())]);
        let (e, scratch) = (engine(), tempfile::tempdir().unwrap());
        let ctx = Context {
            which: "pre_deploy",
            stack,
            commit: "abc",
            checkout: Path::new("/state/work/web"),
            engine: &e,
            scratch: scratch.path(),
            vars: &vars,
        };
        let c = local(&ctx, &stack.pre_deploy).unwrap();
        let args: Vec<_> = c.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["/state/work/web/scripts/check.sh", "--fast"]);
        assert_eq!(c.get_current_dir(), Some(Path::new("/state/work/web/stacks/web")));
        assert_eq!(env(&c, "DOCKER_HOST").as_deref(), Some("ssh://deploy@10.0.0.5"));
        assert_eq!(env(&c, "DOCKER_CONFIG").as_deref(), Some("/etc/berth/registry"));
        assert_eq!(env(&c, "BERTH_STACK_DIR").as_deref(), Some("/state/work/web/stacks/web"));
        assert_eq!(env(&c, "BERTH_REPO_DIR").as_deref(), Some("/state/work/web"));
        assert_eq!(env(&c, "BERTH_SERVER").as_deref(), Some("edge"));
        assert_eq!(env(&c, "BERTH_HOOK").as_deref(), Some("pre_deploy"));
    }

    #[test]
    fn an_engine_hook_is_a_container_with_the_files_at_the_root_and_no_values_on_its_command_line() {
        let p = project(
            r#"{ run = ["sh", "scripts/check.sh"], on = "engine", image = "alpine:3", volumes = ["/srv:/srv"] }"#,
        );
        let stack = p.stack("web").unwrap();
        let vars = BTreeMap::from([("DB_PASSWORD".to_string(), "hunter22".to_string())]);
        let (e, scratch) = (engine(), tempfile::tempdir().unwrap());
        let ctx = Context {
            which: "pre_deploy",
            stack,
            commit: "abc",
            checkout: Path::new("/state/work/web"),
            engine: &e,
            scratch: scratch.path(),
            vars: &vars,
        };
        let HookOn::Engine { image, volumes } = &stack.pre_deploy.on else { panic!("not an engine hook") };
        let c = create(&ctx, &stack.pre_deploy, image, volumes);
        let args = crate::process::display(&c);
        assert!(
            args.contains("create --workdir /berth/stacks/web --volume /srv:/srv --env DB_PASSWORD --env BERTH_HOOK"),
            "{args}"
        );
        assert!(args.ends_with("alpine:3 sh /berth/scripts/check.sh"), "{args}");
        assert!(!args.contains("hunter22"), "{args}");
        assert_eq!(env(&c, "DB_PASSWORD").as_deref(), Some("hunter22"));
        assert_eq!(env(&c, "DOCKER_HOST").as_deref(), Some("ssh://deploy@10.0.0.5"));
        assert_eq!(env(&c, "BERTH_STACK_DIR").as_deref(), Some("/berth/stacks/web"));
    }
}
