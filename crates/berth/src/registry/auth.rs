//! Registry credentials from a Docker `config.json`: `auths` entries, and the credential helpers
//! `credHelpers` (per registry) and `credsStore` (all registries) name, asked lazily, once per host.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

/// How long a credential helper may take (a keychain may be slow to unlock, never forever).
const HELPER_TIMEOUT: Duration = Duration::from_secs(20);
/// The address `docker login` stores Docker Hub's credentials under.
const DOCKER_HUB: &str = "https://index.docker.io/v1/";

/// What berth may send a registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// `user:password` in base64, for basic auth and the token service.
    Basic(String),
    /// An identity (refresh) token: traded at a token service's realm for an access token.
    Identity(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::Basic(_) => "Basic(********)",
            Credential::Identity(_) => "Identity(********)",
        })
    }
}

/// The credentials of one `config.json`; helpers are run when a host's credentials are first needed.
#[derive(Debug, Default)]
pub struct Auths {
    /// `auths` entries with an `auth` or `identitytoken`, per host.
    inline: HashMap<String, Credential>,
    /// The `auths` keys as written (`https://index.docker.io/v1/`, `host:port`), per host.
    keys: HashMap<String, Vec<String>>,
    /// `credHelpers`: the helper's name per host.
    helpers: HashMap<String, String>,
    /// `credsStore`: the helper for every other host.
    store: Option<String>,
    /// What each helper said, per host: asked at most once per run.
    asked: tokio::sync::Mutex<HashMap<String, Option<Credential>>>,
}

/// The host a `config.json` key names (`https://index.docker.io/v1/` is `docker.io`).
fn host_of(key: &str) -> String {
    let host = key.trim_start_matches("https://").trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        h => h.to_string(),
    }
}

/// The credentials of `config` (a `config.json` or the folder holding one), else of
/// `$DOCKER_CONFIG/config.json`, else of `~/.docker/config.json`.
pub fn load_auths(config: Option<&Path>) -> Auths {
    let path = match config {
        Some(p) if p.is_dir() => p.join("config.json"),
        Some(p) => p.to_path_buf(),
        None => match std::env::var_os("DOCKER_CONFIG") {
            Some(d) => PathBuf::from(d).join("config.json"),
            None => match std::env::var_os("HOME") {
                Some(h) => PathBuf::from(h).join(".docker/config.json"),
                None => return Auths::default(),
            },
        },
    };
    let Ok(text) = std::fs::read_to_string(&path) else { return Auths::default() };
    let Ok(doc) = serde_json::from_str::<Value>(&text) else {
        tracing::warn!("{}: not JSON; registries are asked without credentials", path.display());
        return Auths::default();
    };
    parse(&doc)
}

fn parse(doc: &Value) -> Auths {
    let mut out = Auths::default();
    for (key, v) in doc.get("auths").and_then(Value::as_object).into_iter().flatten() {
        let host = host_of(key);
        out.keys.entry(host.clone()).or_default().push(key.clone());
        let text = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        let cred = match (text("identitytoken"), text("auth")) {
            (Some(t), _) => Credential::Identity(t),
            (None, Some(a)) => Credential::Basic(a),
            (None, None) => continue,
        };
        register(&cred);
        out.inline.insert(host, cred);
    }
    for (key, v) in doc.get("credHelpers").and_then(Value::as_object).into_iter().flatten() {
        if let Some(name) = v.as_str().filter(|n| !n.is_empty()) {
            out.helpers.insert(host_of(key), name.to_string());
        }
    }
    out.store = doc.get("credsStore").and_then(Value::as_str).filter(|n| !n.is_empty()).map(str::to_string);
    out
}

/// Hide a credential, and the password inside a basic one, from every log line.
fn register(cred: &Credential) {
    match cred {
        Credential::Identity(t) => crate::redact::register([t]),
        Credential::Basic(b) => {
            use base64::Engine as _;
            let plain =
                base64::engine::general_purpose::STANDARD.decode(b).ok().and_then(|p| String::from_utf8(p).ok());
            let password = plain.as_deref().and_then(|p| p.split_once(':')).map(|(_, pw)| pw.to_string());
            crate::redact::register([b.clone()].into_iter().chain(password));
        }
    }
}

impl Auths {
    /// The helper asked for `host`'s credentials, if any (`credHelpers` before `credsStore`).
    fn helper(&self, host: &str) -> Option<&str> {
        self.helpers.get(host).or(self.store.as_ref()).map(String::as_str)
    }

    /// `host`'s credentials as far as known without running a helper: an `auths` entry when no
    /// helper is named for it, else what its helper already said.
    pub async fn known(&self, host: &str) -> Option<Credential> {
        if let Some(said) = self.asked.lock().await.get(host) {
            return said.clone().or_else(|| self.inline.get(host).cloned());
        }
        match self.helper(host) {
            Some(_) => None,
            None => self.inline.get(host).cloned(),
        }
    }

    /// `host`'s credentials, running its helper on first need; a helper that has none, fails or
    /// is missing leaves the `auths` entry (if any).
    pub async fn get(&self, host: &str) -> Option<Credential> {
        let Some(helper) = self.helper(host).map(str::to_string) else { return self.inline.get(host).cloned() };
        // Held while the helper runs: helpers are asked one at a time, and a second request to
        // the host waits for this answer instead of asking again.
        let mut asked = self.asked.lock().await;
        if let Some(said) = asked.get(host) {
            return said.clone().or_else(|| self.inline.get(host).cloned());
        }
        let addresses = self.addresses(host);
        let h = host.to_string();
        let said = tokio::task::spawn_blocking(move || ask(&helper, &h, &addresses)).await.unwrap_or_else(|e| {
            tracing::warn!("asking the credential helper for {host} failed: {e}; asking it without credentials");
            None
        });
        if let Some(c) = &said {
            register(c);
        }
        asked.insert(host.to_string(), said.clone());
        said.or_else(|| self.inline.get(host).cloned())
    }

    /// The server addresses a helper may keep `host`'s credentials under, likeliest first: the
    /// `auths` keys `docker login` wrote, then Docker Hub's address or the bare and `https://` host.
    fn addresses(&self, host: &str) -> Vec<String> {
        let mut out: Vec<String> = self.keys.get(host).cloned().unwrap_or_default();
        let defaults = match host {
            "docker.io" => vec![DOCKER_HUB.to_string()],
            h => vec![h.to_string(), format!("https://{h}")],
        };
        for d in defaults {
            if !out.contains(&d) {
                out.push(d);
            }
        }
        out
    }
}

/// What a helper's `get` said for one address.
enum Answer {
    Found(Credential),
    NotFound,
    Failed(String),
}

/// Ask `docker-credential-NAME get` for each address until one has credentials. A helper that
/// cannot be run or fails is reported once and not asked again.
fn ask(name: &str, host: &str, addresses: &[String]) -> Option<Credential> {
    let program = format!("docker-credential-{name}");
    if !crate::process::on_path(&program) {
        tracing::warn!(
            "{host}: the credential helper `{program}` (config.json names `{name}`) is not on PATH: install it or \
             change config.json's credsStore/credHelpers; asking {host} without credentials"
        );
        return None;
    }
    for address in addresses {
        match get(&program, address) {
            Answer::Found(c) => {
                tracing::debug!("{host}: credentials from `{program}` (for {address})");
                return Some(c);
            }
            Answer::NotFound => {}
            Answer::Failed(why) => {
                tracing::warn!(
                    "{host}: the credential helper `{program}` failed: {why}; run `{program} get` by hand (server \
                     address on stdin) or `docker login {host}` again; asking {host} without credentials"
                );
                return None;
            }
        }
    }
    tracing::debug!("{host}: `{program}` has no credentials for it (asked for {})", addresses.join(", "));
    None
}

fn get(program: &str, address: &str) -> Answer {
    let mut cmd = Command::new(program);
    cmd.arg("get");
    let (out, stdout) = match crate::process::run_with_input(&mut cmd, address.as_bytes().to_vec(), HELPER_TIMEOUT) {
        Ok(r) => r,
        Err(e) => return Answer::Failed(e.to_string()),
    };
    let stdout = String::from_utf8_lossy(&stdout);
    if !out.success() {
        // Helpers say so on stdout (the protocol) or stderr (some builds).
        let text = format!("{stdout}\n{}", out.stderr);
        if text.contains("credentials not found") {
            return Answer::NotFound;
        }
        // Never echo stdout: a half-written answer may hold the secret.
        return Answer::Failed(crate::process::Output { stdout: String::new(), ..out }.error_summary());
    }
    parse_answer(&stdout)
}

/// A helper's `{"ServerURL":..,"Username":..,"Secret":..}`; empty fields mean none (older `pass`
/// and `secretservice` answer so instead of failing).
fn parse_answer(stdout: &str) -> Answer {
    let Ok(doc) = serde_json::from_str::<Value>(stdout) else {
        return Answer::Failed("its answer is not the JSON of the credential helper protocol".into());
    };
    let field = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or("");
    let (user, secret) = (field("Username"), field("Secret"));
    if secret.is_empty() {
        return Answer::NotFound;
    }
    crate::redact::register([secret]);
    if user == "<token>" {
        return Answer::Found(Credential::Identity(secret.to_string()));
    }
    use base64::Engine as _;
    Answer::Found(Credential::Basic(base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    }

    #[test]
    fn credentials_are_read_per_host() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.json");
        let b = basic("u", "p");
        std::fs::write(
            &f,
            format!(
                r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{b}"}},"127.0.0.1:5000":{{"auth":"{b}"}},"ghcr.io":{{"identitytoken":"idt-1"}}}}}}"#
            ),
        )
        .unwrap();
        let a = load_auths(Some(dir.path()));
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert_eq!(rt.block_on(a.get("docker.io")), Some(Credential::Basic(b.clone())));
        assert_eq!(rt.block_on(a.known("127.0.0.1:5000")), Some(Credential::Basic(b)));
        assert_eq!(rt.block_on(a.get("ghcr.io")), Some(Credential::Identity("idt-1".into())));
        assert_eq!(rt.block_on(a.get("quay.io")), None);
    }

    #[test]
    fn helpers_are_named_per_host_before_the_store() {
        let a = parse(&serde_json::json!({
            "auths": { "https://index.docker.io/v1/": {}, "reg.example:5000": {} },
            "credsStore": "pass",
            "credHelpers": { "gcr.io": "gcloud", "https://index.docker.io/v1/": "hub" },
        }));
        assert_eq!(a.helper("gcr.io"), Some("gcloud"));
        assert_eq!(a.helper("docker.io"), Some("hub"));
        assert_eq!(a.helper("reg.example:5000"), Some("pass"));
        assert_eq!(a.addresses("docker.io"), [DOCKER_HUB]);
        assert_eq!(a.addresses("reg.example:5000"), ["reg.example:5000", "https://reg.example:5000"]);
        assert_eq!(a.addresses("quay.io"), ["quay.io", "https://quay.io"]);
    }

    #[test]
    fn helper_answers_are_credentials_tokens_or_none() {
        let got = parse_answer(r#"{"ServerURL":"r","Username":"u","Secret":"helper-pw-1"}"#);
        assert!(matches!(got, Answer::Found(Credential::Basic(b)) if b == basic("u", "helper-pw-1")));
        assert_eq!(crate::redact::apply("x helper-pw-1"), "x ********");
        let got = parse_answer(r#"{"ServerURL":"r","Username":"<token>","Secret":"refresh-1"}"#);
        assert!(matches!(got, Answer::Found(Credential::Identity(t)) if t == "refresh-1"));
        assert!(matches!(parse_answer(r#"{"ServerURL":"r","Username":"","Secret":""}"#), Answer::NotFound));
        assert!(matches!(parse_answer("oops"), Answer::Failed(_)));
        assert_eq!(format!("{:?}", Credential::Basic("c2VjcmV0".into())), "Basic(********)");
    }

    #[test]
    fn a_helper_that_fails_is_told_from_one_without_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let script = |name: &str, body: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
            p.to_string_lossy().into_owned()
        };
        let none = script("none", "echo 'credentials not found in native keychain'; exit 1");
        assert!(matches!(get(&none, "r"), Answer::NotFound));
        let broken =
            script("broken", "echo 'half {\"Secret\":\"x-leaked-1\"'; echo 'gpg: decryption failed' >&2; exit 2");
        match get(&broken, "r") {
            Answer::Failed(why) => assert!(why.contains("decryption failed") && !why.contains("x-leaked-1"), "{why}"),
            _ => panic!("a failing helper is a failure"),
        }
        let echo = script(
            "echo",
            "read -r a; printf '{\"ServerURL\":\"%s\",\"Username\":\"u\",\"Secret\":\"echo-pw-%s\"}' \"$a\" \"$1\"",
        );
        assert!(matches!(get(&echo, "r:1"), Answer::Found(Credential::Basic(b)) if b == basic("u", "echo-pw-get")));
    }

    #[test]
    fn a_missing_helper_gives_no_credentials() {
        let a = parse(&serde_json::json!({ "credHelpers": { "127.0.0.1:1": "berth-no-such-helper" } }));
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert_eq!(rt.block_on(a.get("127.0.0.1:1")), None);
        assert!(rt.block_on(a.asked.lock()).contains_key("127.0.0.1:1"));
    }
}
