//! A private image registry with basic auth on loopback (Debian's docker-registry), and a
//! docker config folder logged in to it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{IMAGE, need, wait_for};

pub const USER: &str = "berth";
pub const PASSWORD: &str = "s3cret-pass";

/// A running registry; stopped (and its storage removed) when dropped, and the images the
/// engine pulled from it removed, even on panic.
pub struct Registry {
    pub port: u16,
    /// A docker config folder (`config.json` inside) logged in to the registry.
    pub creds: PathBuf,
    pushed: std::sync::Mutex<Vec<String>>,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        need("docker-registry", "docker-registry");
        need("htpasswd", "apache2-utils");
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let htpasswd = dir.path().join("htpasswd");
        let o = Command::new("htpasswd").args(["-Bbc"]).arg(&htpasswd).args([USER, PASSWORD]).output().unwrap();
        assert!(o.status.success());
        let config = format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
            dir.path().join("data").display(),
            htpasswd.display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let creds = dir.path().join("creds");
        std::fs::create_dir_all(&creds).unwrap();
        let r = Registry { port, creds, pushed: Default::default(), child, _dir: dir };
        wait_for("the registry", Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", port)).ok());
        // Written, not `docker login`: a credential helper on the host (`pass`) would take the
        // password and leave the folder without it.
        use base64::Engine as _;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
        let config = serde_json::json!({ "auths": { format!("127.0.0.1:{port}"): { "auth": auth } } });
        std::fs::write(r.creds.join("config.json"), config.to_string()).unwrap();
        r
    }

    fn docker(&self, args: &[&str]) {
        let o = Command::new("docker").args(args).env("DOCKER_CONFIG", &self.creds).output().unwrap();
        assert!(o.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }

    /// Push the test image as `berth/NAME:1` and remove the local tag: the image is then only
    /// in the registry. Returns its reference.
    pub fn push(&self, name: &str) -> String {
        let image = format!("127.0.0.1:{}/berth/{name}:1", self.port);
        self.docker(&["tag", IMAGE, &image]);
        self.docker(&["push", &image]);
        self.docker(&["rmi", &image]);
        self.pushed.lock().unwrap_or_else(|p| p.into_inner()).push(image.clone());
        image
    }

    /// Push the test image as `berth/NAME:TAG` for each tag, removing the local tags. Returns the
    /// name without tag (`127.0.0.1:PORT/berth/NAME`).
    pub fn push_tags(&self, name: &str, tags: &[&str]) -> String {
        let repo = format!("127.0.0.1:{}/berth/{name}", self.port);
        for tag in tags {
            let image = format!("{repo}:{tag}");
            self.docker(&["tag", IMAGE, &image]);
            self.docker(&["push", &image]);
            self.docker(&["rmi", &image]);
            self.pushed.lock().unwrap_or_else(|p| p.into_inner()).push(image);
        }
        repo
    }

    /// Push another image (the test image plus a label, built offline) under `image`, a reference
    /// `push` returned. The engine keeps what it had under that tag and does not keep the new
    /// image: only a pull brings it. Returns the new image's id.
    pub fn push_another(&self, image: &str) -> String {
        let had = super::docker_out(&["image", "inspect", "--format", "{{.Id}}", image]);
        let base = super::docker_out(&["create", IMAGE]);
        assert!(!base.is_empty(), "docker create {IMAGE} failed");
        self.docker(&["commit", "--change", "LABEL berth.test.another=1", &base, image]);
        let _ = Command::new("docker").args(["rm", "-f", &base]).output();
        let id = super::docker_out(&["image", "inspect", "--format", "{{.Id}}", image]);
        self.docker(&["push", image]);
        match had.is_empty() {
            true => self.docker(&["rmi", image]),
            false => {
                self.docker(&["tag", &had, image]);
                self.docker(&["rmi", &id]);
            }
        }
        id
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        for image in self.pushed.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = Command::new("docker").args(["rmi", "-f", image]).output();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
