//! Test harness: real git repositories in temp dirs, the real berth binary and the real Docker engine.

pub mod browser;
pub mod forge;
pub mod http;
pub mod registry;
pub mod server;
pub mod swarm;
pub mod web;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The image every test stack uses, built offline from Debian's static busybox.
pub const IMAGE: &str = "berth-test/busybox:1";

/// Fail (never skip) when the Docker engine is unreachable, and build the test image once.
pub fn docker() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let r = READY.get_or_init(|| {
        let v = Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]).output();
        match v {
            Ok(o) if o.status.success() => {}
            Ok(o) => return Err(format!("Docker engine unreachable: {}", String::from_utf8_lossy(&o.stderr))),
            Err(e) => return Err(format!("docker CLI missing: {e}")),
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-test-image");
        let o = Command::new(script).arg(IMAGE).output().map_err(|e| e.to_string())?;
        if !o.status.success() {
            return Err(format!("building {IMAGE} failed: {}", String::from_utf8_lossy(&o.stderr)));
        }
        Ok(())
    });
    if let Err(e) = r {
        panic!("these tests need the real Docker engine: {e}");
    }
}

/// Make sure `program` is installed: install Debian `package` when it is missing and we
/// are root with apt (as on a fresh machine of this project's kind); fail otherwise.
pub fn need(program: &str, package: &str) {
    let have = || {
        Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    need_that(&format!("`{program}`"), package, have);
}

/// Make sure `what` is there as `have` judges it, installing Debian `package` as `need` does.
pub fn need_that(what: &str, package: &str, have: impl Fn() -> bool) {
    static APT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if have() {
        return;
    }
    let _turn = APT.lock().unwrap_or_else(|p| p.into_inner());
    if !have() {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        if root {
            let install = |update: bool| {
                if update {
                    let _ = Command::new("apt-get").args(["update", "-qq"]).status();
                }
                Command::new("apt-get")
                    .args(["install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=120", package])
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false)
            };
            if !install(false) {
                install(true);
            }
        }
    }
    assert!(have(), "{what} is needed by this test: apt-get install {package}");
}

/// A virtualenv under the temp dir with `spec` from PyPI installed on first use (one per spec).
pub fn pip_venv(spec: &str) -> PathBuf {
    static PIP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = PIP.lock().unwrap_or_else(|p| p.into_inner());
    let slug: String = spec.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let venv = std::env::temp_dir().join(format!("berth-test-venv-{slug}"));
    let done = venv.join(".installed");
    if !done.exists() {
        let ok = Command::new("python3").arg("-m").arg("venv").arg(&venv).status().map(|s| s.success());
        assert!(matches!(ok, Ok(true)), "python3 -m venv failed: {spec} needs Python 3 with venv");
        let pip = Command::new(venv.join("bin/pip")).args(["install", "-q", spec]).output().unwrap();
        assert!(pip.status.success(), "pip install {spec}: {}", String::from_utf8_lossy(&pip.stderr));
        std::fs::write(&done, spec).unwrap();
    }
    venv
}

/// A command-line tool from PyPI (see `pip_venv`); returns the path of its `bin` program.
pub fn pip_tool(spec: &str, bin: &str) -> PathBuf {
    let program = pip_venv(spec).join("bin").join(bin);
    assert!(program.exists(), "{spec} installed no `{bin}`");
    program
}

/// Whether berth drives the `docker compose` plugin here: as berth decides (`BERTH_COMPOSE`
/// forces one; otherwise the plugin when it works).
pub fn compose_is_plugin() -> bool {
    match std::env::var("BERTH_COMPOSE").unwrap_or_default().trim() {
        "plugin" => true,
        "standalone" => false,
        _ => Command::new("docker").args(["compose", "version"]).output().is_ok_and(|o| o.status.success()),
    }
}

/// Where the docker CLI looks for plugins system-wide.
pub const SYSTEM_PLUGIN_DIRS: [&str; 4] = [
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
];

/// The compose plugin the docker CLI runs in this environment (its config folder's
/// `cli-plugins`, then the system folders).
pub fn compose_plugin() -> PathBuf {
    let config = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")));
    config
        .map(|c| c.join("cli-plugins"))
        .into_iter()
        .chain(SYSTEM_PLUGIN_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join("docker-compose"))
        .find(|p| p.is_file())
        .expect("the docker compose plugin is installed")
}

/// Put `script` in front of the compose implementation berth uses: `script(real)` is a shell
/// script that ends up running the program at `real` with its arguments (the same for the plugin
/// and the standalone program: both see `--project-name P ... up`). Returns the environment to
/// give berth: a `PATH` with the wrapper first (standalone) or a `DOCKER_CONFIG` whose
/// `cli-plugins` holds it (plugin).
pub fn wrap_compose(dir: &Path, script: impl Fn(&str) -> String) -> Vec<(&'static str, String)> {
    let write = |path: &Path, real: &str| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, script(real)).unwrap();
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    };
    if compose_is_plugin() {
        let config = dir.join("docker-config");
        write(&config.join("cli-plugins/docker-compose"), &compose_plugin().display().to_string());
        vec![("DOCKER_CONFIG", config.display().to_string())]
    } else {
        let real =
            String::from_utf8(Command::new("sh").args(["-c", "command -v docker-compose"]).output().unwrap().stdout)
                .unwrap()
                .trim()
                .to_string();
        assert!(!real.is_empty(), "the standalone docker-compose is not on PATH");
        write(&dir.join("bin/docker-compose"), &real);
        vec![("PATH", format!("{}:{}", dir.join("bin").display(), std::env::var("PATH").unwrap_or_default()))]
    }
}

/// A short name unique to this test process and call, usable as a stack (compose project) name.
pub fn unique(stem: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("bt{}x{}-{stem}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

/// The berth binary with `--repo` and `--state-dir` given (the caller's `BERTH_REPO` and
/// `BERTH_STATE_DIR` do not leak in); add arguments and run it.
pub fn berth_command(repo: &Path, state: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
    c.arg("--repo").arg(repo).arg("--state-dir").arg(state);
    c.env_remove("BERTH_REPO").env_remove("BERTH_STATE_DIR");
    c
}

/// A git repository in a temp dir, plus a state dir for berth.
pub struct Repo {
    pub dir: tempfile::TempDir,
    pub state: tempfile::TempDir,
}

impl Repo {
    pub fn new() -> Repo {
        let r = Repo { dir: tempfile::tempdir().unwrap(), state: tempfile::tempdir().unwrap() };
        r.git(&["init", "-q", "-b", "main"]);
        r
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn git(&self, args: &[&str]) -> String {
        let o = Command::new("git")
            .arg("-C")
            .arg(self.path())
            .args(["-c", "user.email=test@berth", "-c", "user.name=berth-test", "-c", "commit.gpgsign=false"])
            .args(["-c", "safe.directory=*"])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    pub fn write(&self, path: &str, text: &str) -> &Repo {
        let p = self.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    /// Write the compose file of stack `name` in the default layout (`stacks/NAME/compose.yaml`).
    pub fn stack(&self, name: &str, compose: &str) -> &Repo {
        self.write(&format!("stacks/{name}/compose.yaml"), compose)
    }

    pub fn remove(&self, path: &str) -> &Repo {
        self.git(&["rm", "-q", "-r", path]);
        self
    }

    /// Commit everything; returns the commit id.
    pub fn commit(&self, msg: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", msg]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// The berth command for this repo with `args`, not yet run (to spawn it, pipe it, give it
    /// environment).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = berth_command(self.path(), self.state.path());
        c.args(args);
        c
    }

    /// Run berth against this repo; `PATH` may be replaced.
    pub fn berth_env(&self, args: &[&str], path_env: Option<&str>) -> Run {
        match path_env {
            Some(p) => self.berth_with(args, &[("PATH", p)]),
            None => self.berth_with(args, &[]),
        }
    }

    pub fn berth(&self, args: &[&str]) -> Run {
        self.berth_with(args, &[])
    }

    /// Run berth against this repo with extra environment variables.
    pub fn berth_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        Run::from(self.command(args).envs(env.iter().copied()).output().unwrap())
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let r = self.berth(args);
        assert_eq!(r.code, 0, "berth {args:?}: {}{}", r.stdout, r.stderr);
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("berth {args:?} printed no JSON ({e}): {}", r.stdout))
    }

    /// The stacks `berth plan` would deploy now, sorted.
    pub fn planned_deploys(&self) -> Vec<String> {
        let plan = self.json(&["plan", "--json"]);
        let mut names: Vec<String> = plan["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["action"] == "deploy")
            .map(|s| s["stack"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    }
}

/// The step of `stack` in the answer of `berth plan --json`.
#[track_caller]
pub fn step<'a>(plan: &'a serde_json::Value, stack: &str) -> &'a serde_json::Value {
    let steps = plan["steps"].as_array().unwrap_or_else(|| panic!("no steps in the plan: {plan}"));
    steps.iter().find(|s| s["stack"] == stack).unwrap_or_else(|| panic!("no step for {stack} in the plan: {plan}"))
}

/// What a berth run printed and returned.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "berth failed:\n{}\n{}", self.stdout, self.stderr);
        self
    }
}

/// Removes every container and network of the given compose projects, and the one-shot hook
/// containers berth runs for those stacks, when dropped, even on panic.
pub struct Cleanup(pub Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            let filter = format!("label=com.docker.compose.project={p}");
            let hooks = format!("label=berth.stack={p}");
            let mut ids = docker_out(&["ps", "-aq", "--filter", &filter]);
            ids.push('\n');
            ids.push_str(&docker_out(&["ps", "-aq", "--filter", &hooks]));
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f", "-v"];
                args.extend(ids);
                let _ = Command::new("docker").args(&args).output();
            }
            let nets = docker_out(&["network", "ls", "-q", "--filter", &filter]);
            for n in nets.split_whitespace() {
                let _ = Command::new("docker").args(["network", "rm", n]).output();
            }
        }
    }
}

pub fn docker_out(args: &[&str]) -> String {
    Command::new("docker")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Running containers of a compose project: (service, container id), sorted by service.
pub fn containers(project: &str) -> Vec<(String, String)> {
    let filter = format!("label=com.docker.compose.project={project}");
    let out = docker_out(&[
        "ps",
        "--no-trunc",
        "--filter",
        &filter,
        "--format",
        "{{.Label \"com.docker.compose.service\"}} {{.ID}}",
    ]);
    let mut v: Vec<(String, String)> =
        out.lines().filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string()))).collect();
    v.sort();
    v
}

/// The id of the one running container of `service` in `project`.
#[track_caller]
pub fn container(project: &str, service: &str) -> String {
    containers(project)
        .into_iter()
        .find(|(s, _)| s == service)
        .map(|(_, id)| id)
        .unwrap_or_else(|| panic!("no running container for {project}/{service}: {:?}", containers(project)))
}

/// `docker inspect --format FORMAT ID`.
pub fn inspect(id: &str, format: &str) -> String {
    docker_out(&["inspect", "--format", format, id])
}

/// Poll `f` until it returns Some or the deadline passes.
#[track_caller]
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A compose file running one long-lived service `app` whose `COLOR` is `color`: which
/// version runs shows in the container's environment.
pub fn colored(color: &str) -> String {
    format!(
        "services:\n  app:\n    image: {IMAGE}\n    command: [\"sleep\", \"2147483647\"]\n    stop_signal: SIGKILL\n    environment:\n      COLOR: {color}\n"
    )
}

/// A compose file running one long-lived busybox service per name.
pub fn sleeper(services: &[&str]) -> String {
    let mut s = String::from("services:\n");
    for name in services {
        s.push_str(&format!(
            "  {name}:\n    image: {IMAGE}\n    command: [\"sleep\", \"2147483647\"]\n    stop_signal: SIGKILL\n"
        ));
    }
    s
}

/// Run openssl in `dir`, failing the test on error.
pub fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
    assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// A test CA in `dir` (`ca.pem`, `ca.key`).
pub fn make_ca(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=berth test CA",
        ],
    );
}

/// `NAME.pem` and `NAME.key` in `dir`, signed by the test CA, with extra X.509 extension lines.
pub fn sign_cert(dir: &Path, name: &str, extensions: &str) {
    let (key, csr, pem, ext) =
        (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.ext"));
    openssl(
        dir,
        &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", &format!("/CN={name}")],
    );
    std::fs::write(dir.join(&ext), format!("basicConstraints=CA:FALSE\n{extensions}")).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
}

/// None of `secrets` in any of `outputs` (what, text) nor in any file of the state dir `state`
/// (its work trees aside: they hold the repository's own files). The state database must be
/// among the files searched, else the check proves nothing.
#[track_caller]
pub fn assert_no_leak<W: std::fmt::Display>(outputs: &[(W, String)], state: &Path, secrets: &[&str]) {
    let mut haystacks: Vec<(String, Vec<u8>)> =
        outputs.iter().map(|(what, text)| (what.to_string(), text.clone().into_bytes())).collect();
    let files: Vec<PathBuf> = walk(state).into_iter().filter(|f| !f.starts_with(state.join("work"))).collect();
    assert!(files.iter().any(|f| f.ends_with("berth.db")), "no state database under {}: {files:?}", state.display());
    for file in files {
        haystacks.push((file.display().to_string(), std::fs::read(&file).unwrap_or_default()));
    }
    for (what, bytes) in &haystacks {
        for secret in secrets {
            if let Some(at) = bytes.windows(secret.len()).position(|w| w == secret.as_bytes()) {
                let around = String::from_utf8_lossy(&bytes[at.saturating_sub(200)..(at + 200).min(bytes.len())]);
                panic!("the secret {secret} leaked into {what}: ...{around}...");
            }
        }
    }
}

/// Every file under `dir`, recursively (for grepping a state dir for secrets).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

/// Relay one TCP client to the local engine's socket until either side closes; with `log`, keep
/// what the client sent (a test can then see which requests went where).
pub fn relay_to_engine(client: std::net::TcpStream, log: Option<std::sync::Arc<std::sync::Mutex<Vec<u8>>>>) {
    use std::io::{Read, Write};
    use std::net::Shutdown;
    let Ok(engine) = std::os::unix::net::UnixStream::connect("/var/run/docker.sock") else { return };
    let (Ok(mut c_read), Ok(mut e_write)) = (client.try_clone(), engine.try_clone()) else { return };
    let (mut e_read, mut c_write) = (engine, client);
    let up = std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        while let Ok(n) = c_read.read(&mut buf) {
            if n == 0 || e_write.write_all(&buf[..n]).is_err() {
                break;
            }
            if let Some(l) = &log {
                l.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(&buf[..n]);
            }
        }
        let _ = e_write.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut e_read, &mut c_write);
    let _ = c_write.shutdown(Shutdown::Both);
    let _ = up.join();
}

/// A TCP endpoint in front of the local engine's socket that remembers what clients sent:
/// a second "server" that is really the same engine, so a test can see which requests went where.
pub struct Relay {
    pub port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Relay {
    pub fn start() -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || relay_to_engine(client, Some(log)));
            }
        });
        Relay { port, seen }
    }

    /// Its `DOCKER_HOST`.
    pub fn endpoint(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// Whether a client sent `needle` through it.
    pub fn saw(&self, needle: &str) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.windows(needle.len()).any(|w| w == needle.as_bytes())
    }
}

/// The start most tests share: the engine checked, a fresh repository with one [`colored`]
/// stack per name (uniquely named from the stems given), committed, and the stacks'
/// containers removed when the fixture drops (declare a [`server::Server`] after it, so that
/// the server stops first).
pub struct Fixture {
    pub repo: Repo,
    pub stacks: Vec<String>,
    /// The first commit.
    pub first: String,
    _cleanup: Cleanup,
}

impl Fixture {
    /// Stacks running `colored("red")`, committed with no berth.toml.
    pub fn new(stems: &[&str]) -> Fixture {
        Fixture::with(stems, |_| None)
    }

    /// The same, with the berth.toml `config` writes from the stack names (`None`: none).
    pub fn with(stems: &[&str], config: impl FnOnce(&[String]) -> Option<String>) -> Fixture {
        let mut f = Fixture::bare(stems);
        if let Some(toml) = config(&f.stacks) {
            f.repo.write("berth.toml", &toml);
        }
        for s in &f.stacks {
            f.repo.stack(s, &colored("red"));
        }
        f.first = f.repo.commit("first");
        f
    }

    /// The engine checked, the names and their cleanup, an empty repository: nothing written or
    /// committed (`first` is empty), for tests that lay the repository out themselves.
    pub fn bare(stems: &[&str]) -> Fixture {
        docker();
        let stacks: Vec<String> = stems.iter().map(|s| unique(s)).collect();
        Fixture { repo: Repo::new(), _cleanup: Cleanup(stacks.clone()), stacks, first: String::new() }
    }

    /// The engine checked, the names and their cleanup, around the repository `build` lays out
    /// and commits from the names (as `forge::gated_repo` does); `first` is its HEAD.
    pub fn of(stems: &[&str], build: impl FnOnce(&[String]) -> Repo) -> Fixture {
        let mut f = Fixture::bare(stems);
        f.repo = build(&f.stacks);
        f.first = f.repo.git(&["rev-parse", "HEAD"]);
        f
    }

    /// The first stack's name.
    pub fn stack(&self) -> String {
        self.stacks[0].clone()
    }

    /// `berth serve` on the repository, settled on the first commit.
    pub fn serve(&self) -> server::Server {
        let server = server::Server::start(&self.repo);
        server.settle();
        server
    }
}
