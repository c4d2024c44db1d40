//! The docker adapter: the only module that knows the docker and compose command lines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_core::Server;
use berth_core::config::TlsToml;

use crate::process::{self, RunError};

mod model;
pub use model::{ServiceSpec, bind_sources, config_hashes, services};
mod plugins;
pub mod rollout;

pub use model::parse_model;

const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("neither `docker compose` nor `docker-compose` works on this machine")]
    NoCompose,
    #[error("{CHOICE_ENV}={choice} asks for {program}, which does not work on this machine")]
    Forced { choice: &'static str, program: &'static str },
    #[error("{CHOICE_ENV}={0:?} is not `plugin`, `standalone` or `auto`")]
    BadChoice(String),
    #[error("{program} does not run with the environment of server `{server}` (DOCKER_CONFIG={config}): {message}")]
    ComposeBroken { server: String, program: &'static str, config: String, message: String },
    #[error("the Docker engine at {endpoint} is unreachable: {message}")]
    Unreachable { endpoint: String, message: String },
    #[error(transparent)]
    Run(#[from] RunError),
}

/// The environment variable that forces a compose implementation: `plugin`, `standalone` or `auto`.
pub const CHOICE_ENV: &str = "BERTH_COMPOSE";

/// Which Compose implementation runs stacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compose {
    /// The `docker compose` CLI plugin (Compose v2), and where the docker CLI finds it.
    Plugin { version: String, path: Option<PathBuf> },
    /// The standalone `docker-compose` program.
    Standalone { version: String },
}

impl Compose {
    /// Prefer the plugin, fall back to the standalone program; `BERTH_COMPOSE` forces one.
    pub fn detect() -> Result<Compose, DockerError> {
        let choice = std::env::var(CHOICE_ENV).unwrap_or_default().trim().to_ascii_lowercase();
        let (plugin, standalone) = match choice.as_str() {
            "" | "auto" => (true, true),
            "plugin" => (true, false),
            "standalone" => (false, true),
            other => return Err(DockerError::BadChoice(other.to_string())),
        };
        if plugin
            && process::on_path("docker")
            && let Ok(out) = process::run(Command::new("docker").args(["compose", "version", "--short"]), PROBE_TIMEOUT)
            && out.success()
        {
            let path = plugins::find(plugins::config_dir(std::env::var_os("DOCKER_CONFIG")).as_deref());
            return Ok(Compose::Plugin { version: out.stdout.trim().to_string(), path });
        }
        if standalone
            && process::on_path("docker-compose")
            && let Ok(out) = process::run(Command::new("docker-compose").args(["version", "--short"]), PROBE_TIMEOUT)
            && out.success()
        {
            return Ok(Compose::Standalone { version: out.stdout.trim().to_string() });
        }
        Err(match (plugin, standalone) {
            (true, false) => DockerError::Forced { choice: "plugin", program: "`docker compose`" },
            (false, true) => DockerError::Forced { choice: "standalone", program: "`docker-compose`" },
            _ => DockerError::NoCompose,
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Compose::Plugin { version, path: Some(p) } => format!("docker compose plugin {version} ({})", p.display()),
            Compose::Plugin { version, path: None } => format!("docker compose plugin {version}"),
            Compose::Standalone { version } => format!("standalone docker-compose {version}"),
        }
    }
}

/// One Docker endpoint, with the compose implementation to drive it.
#[derive(Debug, Clone)]
pub struct Engine {
    /// `DOCKER_HOST` value; `None` is the environment's default (the local socket).
    pub host: Option<String>,
    /// Client certificates for a TLS `tcp://` endpoint.
    pub tls: Option<TlsToml>,
    /// `DOCKER_CONFIG` directory with registry credentials.
    pub docker_config: Option<PathBuf>,
    pub compose: Compose,
}

/// A compose project to act on.
pub struct ProjectRef<'a> {
    pub name: &'a str,
    /// Absolute paths of the compose files.
    pub files: &'a [PathBuf],
    /// Working directory (the stack folder): relative paths and `.env` resolve here.
    pub dir: &'a Path,
    /// Variables for interpolation, passed as the process environment.
    pub vars: &'a BTreeMap<String, String>,
}

impl Engine {
    /// The engine of a configured server.
    pub fn for_server(server: &Server, compose: &Compose) -> Engine {
        // `registry_auth` names a config.json (or the folder holding one); DOCKER_CONFIG wants the folder.
        let registry = server.registry_auth.as_ref().map(|p| {
            let p = PathBuf::from(p);
            if p.file_name().is_some_and(|n| n == "config.json") {
                p.parent().map(Path::to_path_buf).unwrap_or(p)
            } else {
                p
            }
        });
        let docker_config = registry.map(|r| match compose {
            Compose::Plugin { path, .. } => plugins::config_for(&r, path.as_deref(), plugins::cache_dir().as_deref())
                .unwrap_or_else(|e| {
                    tracing::warn!(
                        registry_auth = %r.display(),
                        "cannot prepare a docker config folder that keeps the compose plugin next to these \
                         registry credentials ({e}); `berth doctor` shows whether deploys still find it"
                    );
                    r
                }),
            Compose::Standalone { .. } => r,
        });
        Engine { host: server.docker.clone(), tls: server.tls.clone(), docker_config, compose: compose.clone() }
    }

    /// The compose plugin the docker CLI runs for this engine (its `DOCKER_CONFIG` decides).
    pub fn plugin(&self) -> Option<PathBuf> {
        let config = match &self.docker_config {
            Some(d) => Some(d.clone()),
            None => plugins::config_dir(std::env::var_os("DOCKER_CONFIG")),
        };
        // Through a generated config folder, name the plugin's real folder.
        let p = plugins::find(config.as_deref())?;
        match (p.parent().and_then(|d| std::fs::canonicalize(d).ok()), p.file_name()) {
            (Some(dir), Some(name)) => Some(dir.join(name)),
            _ => Some(p),
        }
    }

    /// The `DOCKER_CONFIG` compose runs with for this engine.
    pub fn config_dir(&self) -> String {
        let config = self.docker_config.clone().or_else(|| plugins::config_dir(std::env::var_os("DOCKER_CONFIG")));
        config.map(|d| d.display().to_string()).unwrap_or_else(|| "unset".into())
    }

    /// Whether the registry credentials of `registry_auth` can be read (`Ok` without any).
    pub fn check_registry_auth(&self) -> Result<(), String> {
        let Some(dir) = &self.docker_config else { return Ok(()) };
        let file = dir.join("config.json");
        let text = std::fs::read_to_string(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        serde_json::from_str::<serde_json::Value>(&text)
            .map(drop)
            .map_err(|e| format!("{} is not a docker config.json: {e}", file.display()))
    }

    /// Run `compose version` exactly as deploys to this engine run compose: the same program,
    /// `DOCKER_HOST`, TLS flags and `DOCKER_CONFIG` (and so the same plugin).
    pub fn compose_version(&self, server: &str) -> Result<String, DockerError> {
        let program = match self.compose {
            Compose::Plugin { .. } => "`docker compose`",
            Compose::Standalone { .. } => "`docker-compose`",
        };
        let broken = |message: String| DockerError::ComposeBroken {
            server: server.to_string(),
            program,
            config: self.config_dir(),
            message,
        };
        let out = process::run(self.compose_program().args(["version", "--short"]), PROBE_TIMEOUT)
            .map_err(|e| broken(e.to_string()))?;
        if !out.success() || out.stdout.trim().is_empty() {
            return Err(broken(out.error_summary()));
        }
        Ok(out.stdout.trim().to_string())
    }

    /// Environment and TLS flags shared by `docker` and `docker-compose` invocations.
    fn target(&self, c: &mut Command) {
        if let Some(h) = &self.host {
            c.env("DOCKER_HOST", h);
            // docker-compose 1.x applies its TLS flags only to a host given with -H.
            if self.tls.is_some() && c.get_program() == "docker-compose" {
                c.args(["-H", h]);
            }
        }
        if let Some(d) = &self.docker_config {
            c.env("DOCKER_CONFIG", d);
        }
        if let Some(t) = &self.tls {
            c.args(["--tlsverify", "--tlscacert", &t.ca, "--tlscert", &t.cert, "--tlskey", &t.key]);
        }
    }

    pub fn endpoint(&self) -> String {
        self.host.clone().unwrap_or_else(|| {
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string())
        })
    }

    fn docker(&self) -> Command {
        let mut c = Command::new("docker");
        self.target(&mut c);
        c
    }

    /// The engine's version, or why it cannot be reached.
    pub fn ping(&self) -> Result<String, DockerError> {
        let out = process::run(self.docker().args(["version", "--format", "{{.Server.Version}}"]), PROBE_TIMEOUT)
            .map_err(|e| DockerError::Unreachable { endpoint: self.endpoint(), message: e.to_string() })?;
        if !out.success() || out.stdout.trim().is_empty() {
            return Err(DockerError::Unreachable { endpoint: self.endpoint(), message: out.error_summary() });
        }
        Ok(out.stdout.trim().to_string())
    }

    /// A compose command for `project` with `args` after the global options.
    pub fn compose(&self, project: &ProjectRef<'_>, args: &[&str]) -> Command {
        let mut c = self.compose_program();
        c.current_dir(project.dir).arg("--project-name").arg(project.name);
        c.arg("--project-directory").arg(project.dir);
        for f in project.files {
            c.arg("--file").arg(f);
        }
        c.args(args).envs(project.vars).env_remove("COMPOSE_PROJECT_NAME").env_remove("COMPOSE_FILE");
        c
    }

    /// `compose config --hash '*'`: per service, the config hash compose labels its containers
    /// with (`com.docker.compose.config-hash`) for these files, folder and variables.
    pub fn compose_config_hash(&self, project: &ProjectRef<'_>) -> Command {
        self.compose(project, &["config", "--hash", "*"])
    }

    /// `docker compose` or `docker-compose`, aimed at this engine, before any compose option.
    fn compose_program(&self) -> Command {
        match &self.compose {
            Compose::Plugin { .. } => {
                let mut c = self.docker();
                c.arg("compose");
                c
            }
            Compose::Standalone { .. } => {
                let mut c = Command::new("docker-compose");
                self.target(&mut c);
                c
            }
        }
    }

    /// A `docker stack` command for a swarm stack: `stack <verb> -c files... [args] [name]`.
    pub fn stack(&self, project: &ProjectRef<'_>, verb: &str, args: &[&str], with_name: bool) -> Command {
        let mut c = self.docker();
        c.current_dir(project.dir).args(["stack", verb]);
        for f in project.files {
            c.arg("--compose-file").arg(f);
        }
        c.args(args);
        if with_name {
            c.arg(project.name);
        }
        c.envs(project.vars);
        c
    }

    /// `docker stack rm NAME`: takes no compose files, only the stack's name.
    pub fn stack_rm(&self, name: &str) -> Command {
        let mut c = self.docker();
        c.args(["stack", "rm", name]);
        c
    }

    /// The environment a program needs for `docker ...` to reach this engine exactly as berth
    /// does: `DOCKER_HOST`, `DOCKER_CONFIG`, and for TLS `DOCKER_TLS_VERIFY` with `DOCKER_CERT_PATH`
    /// (a folder under `scratch` linking the configured files by the names the CLI reads).
    pub fn client_env(&self, scratch: &Path) -> Result<Vec<(&'static str, String)>, String> {
        let mut env = Vec::new();
        if let Some(h) = &self.host {
            env.push(("DOCKER_HOST", h.clone()));
        }
        if let Some(d) = &self.docker_config {
            env.push(("DOCKER_CONFIG", d.display().to_string()));
        }
        if let Some(t) = &self.tls {
            let dir = cert_dir(t, scratch)?;
            env.push(("DOCKER_TLS_VERIFY", "1".to_string()));
            env.push(("DOCKER_CERT_PATH", dir.display().to_string()));
        }
        Ok(env)
    }

    /// `docker create` of a one-shot container running `argv` in `workdir`; `env` names variables
    /// passed from this process's environment (`--env KEY`, so values never reach the command line).
    pub fn create_oneshot(
        &self,
        image: &str,
        workdir: &str,
        volumes: &[String],
        env: &[String],
        labels: &[(&str, &str)],
        argv: &[String],
    ) -> Command {
        let mut c = self.docker();
        c.args(["create", "--workdir", workdir]);
        for v in volumes {
            c.arg("--volume").arg(v);
        }
        for k in env {
            c.arg("--env").arg(k);
        }
        for (k, v) in labels {
            c.arg("--label").arg(format!("{k}={v}"));
        }
        c.arg(image).args(argv);
        c
    }

    /// `docker cp SRC/. ID:DEST`: a folder's content into a container (through the API, so any engine).
    pub fn copy_into(&self, id: &str, src: &Path, dest: &str) -> Command {
        let mut c = self.docker();
        c.arg("cp").arg(src.join(".")).arg(format!("{id}:{dest}"));
        c
    }

    /// `docker start --attach ID`: run a created container, its output and exit code ours.
    pub fn start_attached(&self, id: &str) -> Command {
        let mut c = self.docker();
        c.args(["start", "--attach", id]);
        c
    }

    /// `docker rm --force ID`.
    pub fn remove_container(&self, id: &str) -> Command {
        let mut c = self.docker();
        c.args(["rm", "--force", id]);
        c
    }

    /// `docker system dial-stdio`: a byte stream to the engine's API through whatever transport the
    /// CLI uses for the endpoint (for `ssh://`, the ssh client with the user's configuration).
    pub fn dial_stdio(&self) -> Command {
        let mut c = self.docker();
        c.args(["system", "dial-stdio"]);
        c
    }

    /// `docker service update --force` of some services of a swarm stack (bind-mounted files changed).
    pub fn force_update(&self, stack: &str, service: &str) -> Command {
        let mut c = self.docker();
        c.args(["service", "update", "--force", "--detach", &format!("{stack}_{service}")]);
        c
    }
}

/// The folder `DOCKER_CERT_PATH` names for `tls`: the files' own folder when they carry the names the
/// docker CLI reads (`ca.pem`, `cert.pem`, `key.pem`), else a folder of links under `scratch`.
fn cert_dir(tls: &TlsToml, scratch: &Path) -> Result<PathBuf, String> {
    let files = [("ca.pem", &tls.ca), ("cert.pem", &tls.cert), ("key.pem", &tls.key)];
    let parents: Vec<&Path> = files.iter().filter_map(|(_, f)| Path::new(f.as_str()).parent()).collect();
    let named = files.iter().all(|(n, f)| Path::new(f.as_str()).file_name().is_some_and(|x| x == *n));
    if named && parents.len() == 3 && parents.iter().all(|p| *p == parents[0]) {
        return Ok(parents[0].to_path_buf());
    }
    use sha2::Digest;
    let id = hex::encode(sha2::Sha256::digest(format!("{}\0{}\0{}", tls.ca, tls.cert, tls.key)));
    let dir = scratch.join(format!("certs-{}", &id[..16]));
    let fail = |e: std::io::Error| format!("cannot prepare the TLS folder {} for hooks: {e}", dir.display());
    std::fs::create_dir_all(&dir).map_err(fail)?;
    for (name, target) in files {
        let link = dir.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(target, &link).map_err(fail)?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_config_hash_lines() {
        let out = "db bbf15c57da9e\nweb fb61b1c286ca\nWARN[0000] something odd\n\n";
        let h = config_hashes(out);
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h["db"], "bbf15c57da9e");
        assert_eq!(h["web"], "fb61b1c286ca");
        let c = engine(None).compose_config_hash(&ProjectRef {
            name: "p",
            files: &[PathBuf::from("/w/p/compose.yaml")],
            dir: Path::new("/w/p"),
            vars: &BTreeMap::new(),
        });
        assert_eq!(
            args(&c),
            [
                "compose",
                "--project-name",
                "p",
                "--project-directory",
                "/w/p",
                "--file",
                "/w/p/compose.yaml",
                "config",
                "--hash",
                "*"
            ]
        );
    }

    fn args(c: &Command) -> Vec<String> {
        c.get_args().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    fn env(c: &Command, key: &str) -> Option<String> {
        c.get_envs().find(|(k, _)| *k == key).and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()))
    }

    fn engine(host: Option<&str>) -> Engine {
        Engine {
            host: host.map(str::to_string),
            tls: None,
            docker_config: None,
            compose: Compose::Plugin { version: "2".into(), path: None },
        }
    }

    #[test]
    fn the_api_stream_to_an_ssh_endpoint_goes_through_the_docker_cli() {
        let c = engine(Some("ssh://deploy@10.0.0.5:2222")).dial_stdio();
        assert_eq!(c.get_program(), "docker");
        assert_eq!(args(&c), ["system", "dial-stdio"]);
        assert_eq!(env(&c, "DOCKER_HOST").as_deref(), Some("ssh://deploy@10.0.0.5:2222"));
    }

    #[test]
    fn registry_auth_is_the_folder_of_its_config_json() {
        let server = |auth: &str| Server {
            name: "local".into(),
            docker: None,
            tls: None,
            registry_auth: Some(auth.into()),
            prune: None,
        };
        let standalone = Compose::Standalone { version: "1.29.2".into() };
        let e = Engine::for_server(&server("/etc/berth/registry/config.json"), &standalone);
        assert_eq!(e.docker_config, Some(PathBuf::from("/etc/berth/registry")));
        // A plugin the registry folder sees anyway (or none found): the folder itself.
        let plugin = Compose::Plugin { version: "2.40.3".into(), path: None };
        let e = Engine::for_server(&server("/etc/berth/registry"), &plugin);
        assert_eq!(e.docker_config, Some(PathBuf::from("/etc/berth/registry")));
    }

    #[test]
    fn hooks_get_the_engines_client_environment() {
        let scratch = tempfile::tempdir().unwrap();
        let mut e = engine(Some("tcp://10.0.0.5:2376"));
        e.docker_config = Some(PathBuf::from("/etc/berth/registry"));
        e.tls =
            Some(TlsToml { ca: "/pki/ca.crt".into(), cert: "/pki/client.crt".into(), key: "/pki/client.key".into() });
        let env: BTreeMap<_, _> = e.client_env(scratch.path()).unwrap().into_iter().collect();
        assert_eq!(env["DOCKER_HOST"], "tcp://10.0.0.5:2376");
        assert_eq!(env["DOCKER_CONFIG"], "/etc/berth/registry");
        assert_eq!(env["DOCKER_TLS_VERIFY"], "1");
        let certs = Path::new(&env["DOCKER_CERT_PATH"]);
        assert!(certs.starts_with(scratch.path()));
        assert_eq!(std::fs::read_link(certs.join("key.pem")).unwrap(), Path::new("/pki/client.key"));
        assert_eq!(std::fs::read_link(certs.join("ca.pem")).unwrap(), Path::new("/pki/ca.crt"));
        // Files already named as the CLI wants them: their own folder.
        e.tls = Some(TlsToml { ca: "/pki/ca.pem".into(), cert: "/pki/cert.pem".into(), key: "/pki/key.pem".into() });
        let env: BTreeMap<_, _> = e.client_env(scratch.path()).unwrap().into_iter().collect();
        assert_eq!(env["DOCKER_CERT_PATH"], "/pki");
        // The local engine: nothing to set, the hook inherits berth's own environment.
        assert!(engine(None).client_env(scratch.path()).unwrap().is_empty());
    }

    #[test]
    fn stack_rm_names_the_stack_and_no_compose_file() {
        let c = engine(None).stack_rm("web");
        assert_eq!(args(&c), ["stack", "rm", "web"]);
        assert_eq!(env(&c, "DOCKER_HOST"), None);
    }
}
