//! Image updates: `berth updates` against a real registry (Debian's docker-registry with
//! htpasswd auth): semver ranges, pre-releases, digest pins, rate limits, and `--apply` writing
//! the version back to git.

use std::io::Write;
use std::net::TcpListener;

use crate::common::http::Request;
use crate::common::registry::Registry;
use crate::common::{Repo, docker};

fn updates(repo: &Repo, reg: &Registry, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["updates", "--json"];
    all.extend(args);
    let creds = reg.creds.to_string_lossy().into_owned();
    let r = repo.berth_with(&all, &[("DOCKER_CONFIG", creds.as_str())]);
    assert_eq!(r.code, 0, "berth {all:?}: {}{}", r.stdout, r.stderr);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("no JSON ({e}): {}", r.stdout))
}

fn row<'a>(out: &'a serde_json::Value, stack: &str) -> &'a serde_json::Value {
    out["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["stack"] == stack)
        .unwrap_or_else(|| panic!("no {stack}: {out}"))
}

fn skip_reason<'a>(r: &'a serde_json::Value, tag: &str) -> &'a str {
    r["skipped"].as_array().unwrap().iter().find(|s| s["tag"] == tag).and_then(|s| s["reason"].as_str()).unwrap_or("")
}

#[test]
fn semver_rules_propose_the_newest_allowed_tag_and_apply_commits_it() {
    docker();
    let reg = Registry::start();
    let image = reg.push_tags("app", &["1.2.0", "1.3.0", "2.0.0-rc1", "2.0.0"]);
    let repo = Repo::new();
    repo.stack("app", &format!("services:\n  app:\n    # tag in .env\n    image: {image}:${{APP_TAG}}\n"))
        .write("stacks/app/.env", "# the app's version\nAPP_TAG=1.2.0   # bumped by berth\nOTHER=x\n")
        .stack("rc", &format!("services:\n  app:\n    image: {image}:1.3.0\n"))
        .stack("norc", &format!("services:\n  app:\n    image: {image}:1.3.0\n"))
        .write(
            "berth.toml",
            "[[stack]]\nname = \"app\"\n[[stack.image]]\nsemver = \"^1\"\nmode = \"commit\"\n\n\
             [[stack]]\nname = \"rc\"\n[[stack.image]]\nsemver = \"^2.0.0-0\"\nignore = [\"2.0.0\"]\n\n\
             [[stack]]\nname = \"norc\"\n[[stack.image]]\nsemver = \"^2.0.0-0\"\nprerelease = false\nignore = [\"2.0.0\"]\n",
        );
    repo.commit("stacks");
    let out = updates(&repo, &reg, &[]);
    let app = row(&out, "app");
    assert_eq!(app["current"], "1.2.0", "{app}");
    assert_eq!(app["update"], "1.3.0", "{app}");
    assert_eq!((app["file"].as_str(), app["variable"].as_str()), (Some("stacks/app/.env"), Some("APP_TAG")));
    assert_eq!(skip_reason(app, "2.0.0"), "outside the range", "{app}");
    assert_eq!(skip_reason(app, "2.0.0-rc1"), "pre-release", "{app}");
    assert_eq!(row(&out, "rc")["update"], "2.0.0-rc1", "{out}");
    let norc = row(&out, "norc");
    assert!(norc["update"].is_null(), "{norc}");
    assert_eq!(skip_reason(norc, "2.0.0-rc1"), "pre-release", "{norc}");
    assert_eq!(skip_reason(norc, "2.0.0"), "ignored (`2.0.0`)", "{norc}");

    // The text listing says the same.
    let creds = reg.creds.to_string_lossy().into_owned();
    let text = repo.berth_with(&["updates", "app"], &[("DOCKER_CONFIG", creds.as_str())]).ok().stdout;
    assert!(text.contains("1.2.0") && text.contains("1.3.0") && text.contains("2.0.0 (outside the range)"), "{text}");

    // --apply: only the commit-mode rule is written, in place, and committed.
    let out = updates(&repo, &reg, &["--apply"]);
    assert!(out["committed"].is_string(), "{out}");
    let env = std::fs::read_to_string(repo.path().join("stacks/app/.env")).unwrap();
    assert_eq!(env, "# the app's version\nAPP_TAG=1.3.0   # bumped by berth\nOTHER=x\n");
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
    let msg = repo.git(&["log", "-1", "--format=%B"]);
    assert!(msg.contains(&format!("{image} (app/app): 1.2.0 -> 1.3.0")), "{msg}");
    assert_eq!(repo.git(&["show", "--name-only", "--format=", "HEAD"]), "stacks/app/.env");
    let again = updates(&repo, &reg, &[]);
    assert!(row(&again, "app")["update"].is_null(), "{again}");
}

#[test]
fn a_moving_tag_is_followed_by_digest() {
    docker();
    let reg = Registry::start();
    let image = reg.push_tags("mv", &["stable"]);
    let repo = Repo::new();
    let rule = "[[stack]]\nname = \"mv\"\n[[stack.image]]\npin = \"digest\"\nmode = \"commit\"\n";
    repo.stack("mv", &format!("services:\n  app:\n    image: {image}:stable # moving\n")).write("berth.toml", rule);
    repo.commit("mv");
    // Unpinned: the first answer pins the tag's digest.
    let out = updates(&repo, &reg, &["--apply"]);
    let first = row(&out, "mv")["update"].as_str().unwrap().to_string();
    assert!(first.starts_with("stable@sha256:"), "{out}");
    let compose = std::fs::read_to_string(repo.path().join("stacks/mv/compose.yaml")).unwrap();
    assert_eq!(compose, format!("services:\n  app:\n    image: {image}:{first} # moving\n"));
    let again = updates(&repo, &reg, &[]);
    assert!(row(&again, "mv")["update"].is_null(), "{again}");
    // The digest was asked once more and the registry answered "not modified" from the ETag.
    assert_eq!(again["registry"], serde_json::json!({ "requests": 1, "cached": 1 }), "{again}");
    // The tag moves: the new digest is proposed.
    reg.push_another(&format!("{image}:stable"));
    let out = updates(&repo, &reg, &[]);
    let second = row(&out, "mv")["update"].as_str().unwrap().to_string();
    assert!(second.starts_with("stable@sha256:") && second != first, "{first} then {second}");
    assert_eq!(row(&out, "mv")["current"], first.as_str());
}

#[test]
fn a_rate_limited_registry_is_retried_after_retry_after() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, std::time::Instant)>::new()));
    let seen = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let Some(req) = Request::read(&stream) else { continue };
            let n = {
                let mut s = seen.lock().unwrap();
                s.push((req.target.clone(), std::time::Instant::now()));
                s.len()
            };
            let (status, extra, body) = match n {
                1 => ("429 Too Many Requests", "Retry-After: 1\r\n", String::new()),
                _ => ("200 OK", "", r#"{"name":"berth/app","tags":["1.0.0","1.1.0","2.0.0"]}"#.to_string()),
            };
            let mut out = stream;
            let _ = write!(
                out,
                "HTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let repo = Repo::new();
    repo.stack("app", &format!("services:\n  app:\n    image: 127.0.0.1:{port}/berth/app:1.0.0\n"))
        .write("berth.toml", "[[stack]]\nname = \"app\"\n[[stack.image]]\nsemver = \"^1\"\n");
    repo.commit("app");
    let r = repo.berth(&["updates", "--json"]).ok();
    let out: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(row(&out, "app")["update"], "1.1.0", "{out}");
    let hits = hits.lock().unwrap();
    assert_eq!(hits.len(), 2, "one refusal, one answer");
    assert!(hits[1].1 - hits[0].1 >= std::time::Duration::from_millis(900), "retried before Retry-After");
}
