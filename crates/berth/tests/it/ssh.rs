//! `ssh://` Docker endpoints: the docker CLI and the Engine API client both reach the engine through a real sshd.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

/// A private sshd on a loopback port whose "remote" docker is this machine's, and a client
/// configuration for it. The `ssh` berth finds first on its PATH is the real client, pointed at
/// that configuration: OpenSSH reads `~/.ssh` of the passwd home, which a test must not touch.
struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    user: String,
    child: std::process::Child,
}

impl Sshd {
    fn start() -> Sshd {
        need("/usr/sbin/sshd", "openssh-server");
        need("ssh", "openssh-client");
        needs_paramiko_when_standalone_compose();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let p = |f: &str| d.join(f).display().to_string();
        for key in ["host_key", "id"] {
            let o = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f", &p(key)]).output().unwrap();
            assert!(o.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&o.stderr));
        }
        std::fs::copy(d.join("id.pub"), d.join("authorized_keys")).unwrap();
        // Every command a client asks for is written down, then run as sshd would run it.
        script(
            &d.join("record"),
            &format!(
                "#!/bin/sh\necho \"$SSH_ORIGINAL_COMMAND\" >> {}\nexec /bin/sh -c \"$SSH_ORIGINAL_COMMAND\"\n",
                p("commands")
            ),
        );
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 StrictModes no\nUsePAM no\nLogLevel VERBOSE\nForceCommand {}\n",
                p("host_key"),
                p("sshd.pid"),
                p("authorized_keys"),
                p("record")
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("ssh_config"),
            format!(
                "Host 127.0.0.1\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  \
                 StrictHostKeyChecking accept-new\n  BatchMode yes\n",
                p("id"),
                p("known_hosts")
            ),
        )
        .unwrap();
        let real_ssh = which("ssh");
        std::fs::create_dir(d.join("bin")).unwrap();
        script(&d.join("bin/ssh"), &format!("#!/bin/sh\nexec {real_ssh} -F {} \"$@\"\n", p("ssh_config")));
        // Debian's sshd refuses to start as root without its privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let log = std::fs::File::create(d.join("sshd.log")).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let user = String::from_utf8_lossy(&Command::new("id").arg("-un").output().unwrap().stdout).trim().to_string();
        let sshd = Sshd { dir, port, user, child };
        wait_for("sshd to listen", Duration::from_secs(20), || sshd.log().contains("Server listening").then_some(()));
        sshd
    }

    fn endpoint(&self) -> String {
        format!("ssh://{}@127.0.0.1:{}", self.user, self.port)
    }

    /// PATH for berth: the configured `ssh` first.
    fn path_env(&self) -> String {
        format!("{}:{}", self.dir.path().join("bin").display(), std::env::var("PATH").unwrap_or_default())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Commands clients ran through this sshd, one a line; the record starts over.
    fn take_commands(&self) -> Vec<String> {
        let path = self.dir.path().join("commands");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        text.lines().map(str::to_string).collect()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The standalone docker-compose 1.x (docker-py) refuses `ssh://` without paramiko, even when it
/// runs the ssh client as it does by default.
fn needs_paramiko_when_standalone_compose() {
    if compose_is_plugin() {
        return;
    }
    let compose = which("docker-compose");
    let text = std::fs::read_to_string(&compose).unwrap_or_default();
    let shebang: Vec<&str> =
        text.lines().next().and_then(|l| l.strip_prefix("#!")).unwrap_or("python3").split_whitespace().collect();
    let python = match shebang.as_slice() {
        [env, interpreter, ..] if env.ends_with("/env") => interpreter.to_string(),
        [interpreter, ..] => interpreter.to_string(),
        [] => "python3".to_string(),
    };
    need_that("python's paramiko (docker-compose's ssh:// support)", "python3-paramiko", || {
        Command::new(&python).args(["-c", "import paramiko"]).output().is_ok_and(|o| o.status.success())
    });
}

fn script(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Absolute path of `program` on the current PATH.
fn which(program: &str) -> String {
    let dirs = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&dirs)
        .map(|d: PathBuf| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{program}` is not on PATH"))
        .display()
        .to_string()
}

#[test]
fn an_ssh_endpoint_carries_deploys_verification_and_drift_checks() {
    let f = Fixture::bare(&["ssh"]);
    let sshd = Sshd::start();
    let (s, repo) = (f.stack(), &f.repo);
    repo.write(
        "berth.toml",
        &format!(
            "[defaults]\nverify = {{ stable = \"1s\" }}\n[[server]]\nname = \"far\"\ndocker = \"{}\"\n",
            sshd.endpoint()
        ),
    );
    repo.write(&format!("nodes/far/{s}/compose.yaml"), &sleeper(&["app"]));
    repo.commit("over ssh");
    let path = sshd.path_env();
    let out = repo.berth_env(&["apply"], Some(&path));
    assert_eq!(out.code, 0, "{}{}\nsshd:\n{}", out.stdout, out.stderr, sshd.log());

    let id = container(&s, "app");
    assert_eq!(inspect(&id, "{{index .Config.Labels \"com.docker.compose.project\"}}"), s);
    assert_eq!(inspect(&id, "{{.State.Status}}"), "running");
    let h = repo.json(&["history", &s, "--json"]);
    assert_eq!((h[0]["status"].as_str(), h[0]["server"].as_str()), (Some("succeeded"), Some("far")), "{}", h[0]);
    let log = repo.berth(&["logs", &h[0]["id"].to_string()]).ok().stdout;
    assert!(log.contains("converged and stable") && log.contains(&id[..12]), "verification through ssh: {log}");
    assert!(sshd.log().contains(&format!("Accepted publickey for {}", sshd.user)), "{}", sshd.log());
    let commands = sshd.take_commands();
    assert!(commands.iter().any(|c| c == "docker system dial-stdio"), "no engine session through ssh: {commands:?}");

    // Drift checks use only the Engine API client: it reaches the engine through ssh too.
    let out = repo.berth_env(&["drift"], Some(&path));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let commands = sshd.take_commands();
    assert!(
        !commands.is_empty() && commands.iter().all(|c| c == "docker system dial-stdio"),
        "the Engine API client did not go through ssh: {commands:?}"
    );
    docker_out(&["stop", "--time", "0", &id]);
    let out = repo.berth_env(&["drift"], Some(&path));
    assert_eq!(out.code, 1, "a stopped container must show as drift: {}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains(&s), "{}", out.stdout);

    // With the host unreachable, the check says what the ssh client said.
    drop(sshd);
    let out = repo.berth_env(&["drift"], Some(&path));
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("cannot observe") && out.stdout.contains("Connection refused"),
        "{}{}",
        out.stdout,
        out.stderr
    );
}
