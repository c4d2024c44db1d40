//! Registry credentials kept by a credential helper: `docker login` through Debian's
//! `docker-credential-pass` (a throwaway GnuPG key and password store) and `berth updates`
//! reading them back; a missing helper warned about; an identity token from a helper traded at a
//! token service; the secrets never in berth's output.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::common::http::Request;
use crate::common::registry::{PASSWORD, Registry, USER};
use crate::common::{Repo, docker, need};

/// A GnuPG home with a key without passphrase and a `pass` store initialised for it; its
/// gpg-agent is stopped when dropped.
struct PassStore {
    dir: tempfile::TempDir,
}

impl PassStore {
    fn new() -> PassStore {
        need("gpg", "gnupg");
        need("pass", "pass");
        need("docker-credential-pass", "golang-docker-credential-helpers");
        let s = PassStore { dir: tempfile::tempdir().unwrap() };
        let gnupg = s.gnupg();
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700).create(&gnupg).unwrap();
        let spec = s.dir.path().join("key");
        std::fs::write(
            &spec,
            "%no-protection\nKey-Type: EDDSA\nKey-Curve: ed25519\nSubkey-Type: ECDH\nSubkey-Curve: cv25519\n\
             Name-Real: berth test\nName-Email: berth@test.invalid\nExpire-Date: 0\n%commit\n",
        )
        .unwrap();
        s.run("gpg", &["--batch", "--quiet", "--gen-key", &spec.to_string_lossy()]);
        s.run("pass", &["init", "berth@test.invalid"]);
        s
    }

    fn gnupg(&self) -> PathBuf {
        self.dir.path().join("gnupg")
    }

    /// The environment gpg, pass and the helper need to find this store.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GNUPGHOME", self.gnupg().to_string_lossy().into_owned()),
            ("PASSWORD_STORE_DIR", self.dir.path().join("store").to_string_lossy().into_owned()),
        ]
    }

    fn run(&self, program: &str, args: &[&str]) -> String {
        let o = Command::new(program).args(args).envs(self.env()).output().unwrap();
        assert!(o.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for PassStore {
    fn drop(&mut self) {
        let home = self.gnupg();
        let _ = Command::new("gpgconf").arg("--homedir").arg(&home).args(["--kill", "gpg-agent"]).output();
    }
}

/// `docker login` to `reg` with the docker config folder `dir`, its helpers finding `store`.
fn login(reg: &Registry, dir: &Path, store: &PassStore) {
    let mut c = Command::new("docker")
        .args(["login", &format!("127.0.0.1:{}", reg.port), "-u", USER, "--password-stdin"])
        .env("DOCKER_CONFIG", dir)
        .envs(store.env())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(PASSWORD.as_bytes()).unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success(), "docker login: {}", String::from_utf8_lossy(&o.stderr));
}

/// A repository with one stack on `image` at 1.0.0 and a `^1` rule.
fn repo_on(image: &str) -> Repo {
    let repo = Repo::new();
    repo.stack("app", &format!("services:\n  app:\n    image: {image}:1.0.0\n"))
        .write("berth.toml", "[[stack]]\nname = \"app\"\n[[stack.image]]\nsemver = \"^1\"\n");
    repo.commit("app");
    repo
}

fn app_row(stdout: &str) -> serde_json::Value {
    let out: serde_json::Value = serde_json::from_str(stdout).unwrap_or_else(|e| panic!("no JSON ({e}): {stdout}"));
    out["images"].as_array().unwrap().iter().find(|r| r["stack"] == "app").cloned().unwrap_or_else(|| panic!("{out}"))
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

#[test]
fn credentials_kept_by_a_credential_helper_list_the_tags() {
    docker();
    let store = PassStore::new();
    let reg = Registry::start();
    let image = reg.push_tags("helped", &["1.0.0", "1.1.0"]);
    let host = format!("127.0.0.1:{}", reg.port);
    let config = tempfile::tempdir().unwrap();
    let json = config.path().join("config.json");
    std::fs::write(&json, r#"{"credsStore": "pass"}"#).unwrap();
    login(&reg, config.path(), &store);
    // The credentials went to the helper: config.json names the registry and holds no secret.
    let written = std::fs::read_to_string(&json).unwrap();
    assert!(written.contains(&host) && !written.contains("\"auth\"") && !written.contains(PASSWORD), "{written}");
    assert!(store.run("docker-credential-pass", &["list"]).contains(&host));

    let repo = repo_on(&image);
    let dir = config.path().to_string_lossy().into_owned();
    let mut env: Vec<(&str, String)> = store.env();
    env.push(("DOCKER_CONFIG", dir));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = repo.berth_with(&["updates", "--json", "-vvv"], &env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let row = app_row(&r.stdout);
    assert_eq!(row["update"], "1.1.0", "{row}");
    assert!(r.stderr.contains("credentials from `docker-credential-pass`"), "{}", r.stderr);
    for (what, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        assert!(!text.contains(PASSWORD), "the password in berth's {what}:\n{text}");
        assert!(!text.contains(&basic(USER, PASSWORD)), "the basic credentials in berth's {what}:\n{text}");
    }

    // `credHelpers` for the host wins over a `credsStore` that is not installed.
    let mut doc: serde_json::Value = serde_json::from_str(&written).unwrap();
    doc["credsStore"] = "berth-not-installed".into();
    doc["credHelpers"] = serde_json::json!({ host.as_str(): "pass" });
    std::fs::write(&json, doc.to_string()).unwrap();
    let r = repo.berth_with(&["updates", "--json"], &env);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(app_row(&r.stdout)["update"], "1.1.0");
    assert!(!r.stderr.contains("berth-not-installed"), "{}", r.stderr);
}

#[test]
fn a_missing_credential_helper_is_warned_about_and_the_registry_refuses() {
    docker();
    let reg = Registry::start();
    let image = reg.push_tags("unhelped", &["1.0.0", "1.1.0"]);
    let host = format!("127.0.0.1:{}", reg.port);
    let config = tempfile::tempdir().unwrap();
    let doc = serde_json::json!({ "auths": { host.as_str(): {} }, "credHelpers": { host.as_str(): "berth-missing" } });
    std::fs::write(config.path().join("config.json"), doc.to_string()).unwrap();
    let repo = repo_on(&image);
    let dir = config.path().to_string_lossy().into_owned();
    let r = repo.berth_with(&["updates", "--json"], &[("DOCKER_CONFIG", dir.as_str())]);
    assert_eq!(r.code, 1, "a registry that could not be asked: {}\n{}", r.stdout, r.stderr);
    let warning = r.stderr.lines().find(|l| l.contains("docker-credential-berth-missing")).unwrap_or_else(|| {
        panic!("no warning naming the helper: {}", r.stderr);
    });
    assert!(warning.contains(&host) && warning.contains("not on PATH"), "{warning}");
    assert_eq!(r.stderr.matches("docker-credential-berth-missing").count(), 1, "asked once: {}", r.stderr);
    let row = app_row(&r.stdout);
    let error = row["error"].as_str().unwrap_or_else(|| panic!("no error: {row}"));
    assert!(error.contains("401") && error.contains("no credentials"), "{error}");
}

/// A registry with token auth on loopback: `/token` trades the refresh token `refresh` (an
/// OAuth2 `refresh_token` POST) for an access token the tag list wants. Returns its port and
/// the token requests' bodies.
fn token_registry(refresh: &'static str, access: &'static str) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let posts = Arc::new(Mutex::new(Vec::new()));
    let seen = posts.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let Some(req) = Request::read(&stream) else { continue };
            let body = String::from_utf8_lossy(&req.body).into_owned();
            let (status, extra, answer) = if req.method == "POST" && req.target == "/token" {
                seen.lock().unwrap().push(body.clone());
                let wanted = format!("refresh_token={refresh}");
                match body.contains("grant_type=refresh_token") && body.split('&').any(|p| p == wanted) {
                    true => ("200 OK", String::new(), format!(r#"{{"access_token":"{access}"}}"#)),
                    false => ("401 Unauthorized", String::new(), String::new()),
                }
            } else if req.head.contains(&format!("authorization: bearer {}", access.to_ascii_lowercase())) {
                ("200 OK", String::new(), r#"{"name":"berth/app","tags":["1.0.0","1.1.0"]}"#.to_string())
            } else {
                let challenge = format!(
                    "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"berth-test\",scope=\"repository:berth/app:pull\"\r\n"
                );
                ("401 Unauthorized", challenge, String::new())
            };
            let mut out = stream;
            let _ = write!(
                out,
                "HTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (port, posts)
}

#[test]
fn an_identity_token_from_a_helper_is_traded_for_an_access_token() {
    const REFRESH: &str = "refresh-token-from-the-helper";
    const ACCESS: &str = "access-token-for-tags";
    let (port, posts) = token_registry(REFRESH, ACCESS);
    let host = format!("127.0.0.1:{port}");
    // A helper speaking the protocol: the server address on stdin, the answer as JSON on stdout.
    let bin = tempfile::tempdir().unwrap();
    let asked = bin.path().join("asked");
    let script = format!(
        "#!/bin/sh\nread -r address\necho \"$1 $address\" >> '{}'\n\
         [ \"$address\" = '{host}' ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\n\
         printf '{{\"ServerURL\":\"%s\",\"Username\":\"<token>\",\"Secret\":\"{REFRESH}\"}}' \"$address\"\n",
        asked.display()
    );
    let helper = bin.path().join("docker-credential-berthtest");
    std::fs::write(&helper, script).unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(bin.path().join("config.json"), r#"{"credsStore": "berthtest"}"#).unwrap();

    let repo = Repo::new();
    for stack in ["app", "two"] {
        repo.stack(stack, &format!("services:\n  app:\n    image: {host}/berth/app:1.0.0\n"));
    }
    repo.write(
        "berth.toml",
        "[[stack]]\nname = \"app\"\n[[stack.image]]\nsemver = \"^1\"\n\n[[stack]]\nname = \"two\"\n[[stack.image]]\nsemver = \"^1\"\n",
    );
    repo.commit("two stacks");
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
    let dir = bin.path().to_string_lossy().into_owned();
    let r =
        repo.berth_with(&["updates", "--json", "-vvv"], &[("PATH", path.as_str()), ("DOCKER_CONFIG", dir.as_str())]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(app_row(&r.stdout)["update"], "1.1.0", "{}", r.stdout);
    assert_eq!(std::fs::read_to_string(&asked).unwrap(), format!("get {host}\n"), "the helper is asked once");
    let posts = posts.lock().unwrap();
    assert!(posts.len() == 1 && posts[0].contains("service=berth-test"), "{posts:?}");
    for secret in [REFRESH, ACCESS] {
        assert!(!r.stdout.contains(secret) && !r.stderr.contains(secret), "{secret} in berth's output:\n{}", r.stderr);
    }
}
