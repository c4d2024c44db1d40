//! Image updates: `berth updates` against a real registry (Debian's docker-registry with
//! htpasswd auth): semver ranges, pre-releases, digest pins, rate limits, and `--apply` writing
//! the version back to git.

use std::io::Write;
use std::net::TcpListener;

use crate::common::http::Request;
use crate::common::registry::Registry;
use crate::common::{Repo, container, containers, docker, inspect, wait_for};

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
    // Three services of one repository: its tags are listed once.
    assert_eq!(out["registry"]["requests"], 1, "{}", out["registry"]);
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
fn a_version_set_in_berth_toml_env_is_edited_there() {
    docker();
    let reg = Registry::start();
    let image = reg.push_tags("tomlenv", &["1.2.0", "1.3.0"]);
    let repo = Repo::new();
    let toml = "# versions live here\n[[stack]]\nname = \"app\"\nenv = { APP_TAG = \"1.2.0\", OTHER = \"1.2.0\" }  # pinned\n[[stack.image]]\nsemver = \"^1\"\nmode = \"commit\"\n";
    repo.stack("app", &format!("services:\n  app:\n    image: {image}:${{APP_TAG}}\n")).write("berth.toml", toml);
    repo.commit("app");
    let out = updates(&repo, &reg, &["--apply"]);
    let app = row(&out, "app");
    assert_eq!((app["file"].as_str(), app["variable"].as_str()), (Some("berth.toml"), Some("APP_TAG")), "{app}");
    assert!(out["committed"].is_string(), "{out}");
    let written = std::fs::read_to_string(repo.path().join("berth.toml")).unwrap();
    assert_eq!(written, toml.replace("APP_TAG = \"1.2.0\"", "APP_TAG = \"1.3.0\""));
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
    assert!(row(&updates(&repo, &reg, &[]), "app")["update"].is_null());
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

/// A bare remote at `.../me/stacks.git` (so the forge repository is `me/stacks`) holding `repo`'s
/// branch; returns the remote's path and the branch.
fn remote(repo: &Repo) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("me/stacks.git");
    let o = std::process::Command::new("git").args(["init", "-q", "--bare"]).arg(&bare).output().unwrap();
    assert!(o.status.success());
    repo.git(&["remote", "add", "origin", &format!("file://{}", bare.display())]);
    let branch = repo.git(&["symbolic-ref", "--short", "HEAD"]).trim().to_string();
    repo.git(&["push", "-q", "origin", &branch]);
    (dir, bare, branch)
}

fn in_remote(bare: &std::path::Path, args: &[&str]) -> String {
    let o = std::process::Command::new("git").arg("--git-dir").arg(bare).args(args).output().unwrap();
    assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn pull_request_mode_keeps_one_request_per_stack_and_edits_it_when_a_newer_version_comes() {
    for kind in ["gitea", "github", "gitlab"] {
        update_requests_on(kind);
    }
}

fn update_requests_on(kind: &'static str) {
    docker();
    let reg = Registry::start();
    let image = reg.push_tags("prm", &["1.2.0", "1.3.0"]);
    let forge = crate::common::forge::Forge::start(kind);
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("updates_ed25519");
    let o = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "bot@example.com", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let signers = keys.path().join("allowed_signers");
    std::fs::write(&signers, format!("bot@example.com {public}")).unwrap();
    let repo = Repo::new();
    repo.stack("web", &format!("services:\n  app:\n    image: {image}:${{APP_TAG}}\n"))
        .write("stacks/web/.env", "APP_TAG=1.2.0 # keep\n")
        .write(
            "berth.toml",
            &format!(
                "[updates]\nauthor = \"berth bot <bot@example.com>\"\nsigning_key = \"{}\"\nforge = {{ provider = \"{kind}\", url = \"{}\", token = {{ env = \"FORGE_TOKEN\" }} }}\n\n\
                 [[stack]]\nname = \"web\"\n[[stack.image]]\nsemver = \"^1\"\nmode = \"pull_request\"\n",
                key.display(),
                forge.base
            ),
        );
    let head = repo.commit("web");
    let (_dir, bare, branch) = remote(&repo);
    let creds = reg.creds.to_string_lossy().into_owned();
    let env = [("DOCKER_CONFIG", creds.as_str()), ("FORGE_TOKEN", "forge-token-1")];
    let apply = || {
        let r = repo.berth_with(&["updates", "--json", "--apply"], &env);
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap()
    };

    // The forge creates the request but the answer is lost: the retry must not open a second one.
    forge.fault(crate::common::forge::Fault::LostCreate, 1);
    let out = apply();
    assert!(out["committed"].is_null(), "pull_request mode commits nothing on {branch}: {out}");
    let pr = &out["pull_requests"][0];
    assert_eq!(
        (pr["how"].as_str(), pr["number"].as_u64(), pr["branch"].as_str()),
        (Some("updated"), Some(1), Some("berth/updates/web")),
        "{out}"
    );
    // The branch: the tracked branch plus the one-line edit, by the configured author.
    assert_eq!(in_remote(&bare, &["show", "berth/updates/web:stacks/web/.env"]), "APP_TAG=1.3.0 # keep");
    assert_eq!(in_remote(&bare, &["rev-parse", "berth/updates/web^"]), head);
    assert_eq!(
        in_remote(&bare, &["log", "-1", "--format=%an <%ae>", "berth/updates/web"]),
        "berth bot <bot@example.com>"
    );
    // Signed with the configured key.
    let allowed = format!("gpg.ssh.allowedSignersFile={}", signers.display());
    in_remote(&bare, &["-c", &allowed, "verify-commit", "berth/updates/web"]);
    // The checkout is left alone.
    assert_eq!(
        (repo.git(&["rev-parse", "HEAD"]).trim(), repo.git(&["status", "--porcelain"]).as_str()),
        (head.as_str(), "")
    );
    let pulls = forge.data.lock().unwrap().pulls.clone();
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[&1]["title"], format!("Update {image} to 1.3.0"));
    let (head_ref, base_ref, text) = match kind {
        "gitlab" => (&pulls[&1]["source_branch"], &pulls[&1]["target_branch"], &pulls[&1]["description"]),
        _ => (&pulls[&1]["head"]["ref"], &pulls[&1]["base"]["ref"], &pulls[&1]["body"]),
    };
    assert_eq!((head_ref.as_str(), base_ref.as_str()), (Some("berth/updates/web"), Some(branch.as_str())));
    assert!(text.as_str().unwrap().contains("1.2.0 -> 1.3.0"), "{}", pulls[&1]);

    // Nothing new: nothing pushed, nothing edited.
    let tip = in_remote(&bare, &["rev-parse", "berth/updates/web"]);
    let writes = |f: &crate::common::forge::Forge| f.hits().iter().filter(|h| !h.starts_with("GET")).count();
    let before = writes(&forge);
    let out = apply();
    assert_eq!(out["pull_requests"][0]["how"], "unchanged", "{out}");
    assert_eq!((in_remote(&bare, &["rev-parse", "berth/updates/web"]), writes(&forge)), (tip, before));
    // At -vvv, neither the forge token nor the registry password is printed.
    let loud = repo.berth_with(&["-vvv", "updates", "--apply"], &env);
    assert_eq!(loud.code, 0, "{}", loud.stderr);
    for secret in ["forge-token-1", crate::common::registry::PASSWORD] {
        assert!(!loud.stdout.contains(secret) && !loud.stderr.contains(secret), "{secret} printed at -vvv");
    }
    assert!(loud.stderr.contains("DEBUG"), "-vvv logged nothing: {}", loud.stderr);

    // A newer version: the same request, edited, on a rewritten branch.
    reg.push_tags("prm", &["1.4.0"]);
    let out = apply();
    assert_eq!(
        (out["pull_requests"][0]["how"].as_str(), out["pull_requests"][0]["number"].as_u64()),
        (Some("updated"), Some(1)),
        "{out}"
    );
    assert_eq!(in_remote(&bare, &["show", "berth/updates/web:stacks/web/.env"]), "APP_TAG=1.4.0 # keep");
    let pulls = forge.data.lock().unwrap().pulls.clone();
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert_eq!(pulls[&1]["title"], format!("Update {image} to 1.4.0"));
    let edit = match kind {
        "gitea" => "PATCH /api/v1/repos/me/stacks/pulls/1",
        "github" => "PATCH /repos/me/stacks/pulls/1",
        // GitLab's project is the remote's whole path (nested groups), here a file:// one.
        _ => "PUT /api/v4/projects/",
    };
    let edited =
        |h: &String| h.starts_with(edit) && (kind != "gitlab" || h.ends_with("%2Fme%2Fstacks/merge_requests/1"));
    assert!(forge.hits().iter().any(edited), "{kind}: {:?}", forge.hits());
}

/// Stack `s` running `image:${APP_TAG}` (`.env` says `tag`) with `command`, pulled with the
/// registry's credentials, under a `semver = "^1"` commit-mode rule; committed.
fn committed_stack(repo: &Repo, reg: &Registry, s: &str, image: &str, tag: &str, command: &str) {
    repo.stack(
        s,
        &format!(
            "services:\n  app:\n    image: {image}:${{APP_TAG}}\n    command: {command}\n    stop_signal: SIGKILL\n"
        ),
    )
    .write(&format!("stacks/{s}/.env"), &format!("APP_TAG={tag}\n"))
    .write(
        "berth.toml",
        &format!(
            "[defaults]\nverify = {{ stable = \"1s\" }}\n[[server]]\nname = \"local\"\nregistry_auth = \"{}\"\n\n\
             [[stack]]\nname = \"{s}\"\n[[stack.image]]\nsemver = \"^1\"\nmode = \"commit\"\n",
            reg.creds.join("config.json").display()
        ),
    );
    repo.commit(tag);
}

#[test]
fn a_version_whose_deploy_rolled_back_is_not_proposed_again() {
    let f = crate::common::Fixture::bare(&["rb"]);
    let s = f.stack();
    let reg = Registry::start();
    let image = reg.push_tags(&s, &["1.2.0"]);
    // 1.3.0 starts and exits at once: its deploy fails verification and is rolled back.
    reg.push_changed(&format!("{image}:1.3.0"), "ENV BROKEN=1");
    let repo = &f.repo;
    // The service exits at once when the image says BROKEN.
    committed_stack(
        repo,
        &reg,
        &s,
        &image,
        "1.2.0",
        r#"["sh", "-c", "test -z \"$$BROKEN\" && exec sleep 2147483647"]"#,
    );
    repo.berth(&["apply"]).ok();
    let out = updates(repo, &reg, &["--apply"]);
    assert_eq!(row(&out, &s)["update"], "1.3.0", "{out}");
    let r = repo.berth(&["apply"]);
    assert_ne!(r.code, 0, "the broken version deployed: {}{}", r.stdout, r.stderr);
    let history = repo.json(&["history", &s, "--json"]);
    let failed = history
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["status"] == "rolled_back")
        .unwrap_or_else(|| panic!("{history}"));
    let id = failed["id"].as_i64().unwrap();

    // The operator reverts the update in git; berth does not propose the version again.
    repo.git(&["revert", "--no-edit", "HEAD"]);
    let out = updates(repo, &reg, &[]);
    let r = row(&out, &s);
    assert!(r["update"].is_null(), "{r}");
    assert_eq!(skip_reason(r, "1.3.0"), format!("rolled back in deploy {id}"), "{r}");
    // A newer version is.
    reg.push_tags(&s, &["1.4.0"]);
    let out = updates(repo, &reg, &[]);
    assert_eq!(row(&out, &s)["update"], "1.4.0", "{out}");
}

#[test]
fn serve_commits_an_update_a_registry_reports_and_deploys_it() {
    let f = crate::common::Fixture::bare(&["srvupd"]);
    let s = f.stack();
    let reg = Registry::start();
    let image = reg.push_tags(&s, &["1.0.0"]);
    let repo = &f.repo;
    // berth serve follows this checkout: a push into its branch updates it, as a bare remote takes it.
    repo.git(&["config", "receive.denyCurrentBranch", "updateInstead"]);
    committed_stack(repo, &reg, &s, &image, "1.0.0", r#"["sleep", "2147483647"]"#);
    let server = crate::common::server::Server::start(repo);
    let first = server.settle();
    let log = || std::fs::read_to_string(repo.state.path().join("serve.log")).unwrap_or_default();
    assert!(first.iter().any(|d| d["status"] == "succeeded"), "{first:?}\n{}", log());
    let running = || inspect(&container(&s, "app"), "{{.Config.Image}}");
    assert_eq!(running(), format!("{image}:1.0.0"));

    // The new version says where its release notes are.
    reg.push_changed(&format!("{image}:1.1.0"), "LABEL org.opencontainers.image.source=https://git.example.com/me/app");
    // Distribution's notification envelope, as the registry's `notifications` endpoint posts it.
    let host = format!("127.0.0.1:{}", reg.port);
    let envelope = serde_json::json!({"events": [
        {"id": "e1", "action": "push", "target": {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "repository": format!("berth/{s}"), "tag": "1.1.0", "digest": "sha256:00"}, "request": {"host": host}},
        {"id": "e2", "action": "pull", "target": {"repository": format!("berth/{s}"), "tag": "1.0.0"}}
    ]})
    .to_string()
    .into_bytes();
    let kind = ("Content-Type", "application/vnd.docker.distribution.events.v1+json");
    let (status, _) =
        server.raw("/hooks/registry", &[kind, ("Authorization", "Bearer not-the-secret")], envelope.clone());
    assert_eq!(status, 401, "a notification without the secret is refused");
    let bearer = format!("Bearer {}", crate::common::server::SECRET);
    let (status, body) = server.raw("/hooks/registry", &[kind, ("Authorization", &bearer)], envelope);
    assert_eq!((status, body["pushes"].as_u64()), (202, Some(1)), "{body}");

    // berth commits 1.1.0 to the branch it follows, syncs, and deploys it.
    // (No container runs for a moment while compose recreates it.)
    let now_running =
        || containers(&s).into_iter().find(|(svc, _)| svc == "app").map(|(_, id)| inspect(&id, "{{.Config.Image}}"));
    wait_for("the update deployed", std::time::Duration::from_secs(180), || {
        (now_running() == Some(format!("{image}:1.1.0"))).then_some(())
    });
    assert_eq!(std::fs::read_to_string(repo.path().join(format!("stacks/{s}/.env"))).unwrap(), "APP_TAG=1.1.0\n");
    let msg = repo.git(&["log", "-1", "--format=%B"]);
    assert!(msg.contains(&format!("{image} ({s}/app): 1.0.0 -> 1.1.0 (https://git.example.com/me/app)")), "{msg}");
    let head = repo.git(&["rev-parse", "HEAD"]).trim().to_string();
    let settled = server.settle();
    assert!(
        settled.iter().any(|d| d["commit"] == head.as_str() && d["status"] == "succeeded" && d["trigger"] == "updates"),
        "no verified deploy of the update commit: {settled:?}"
    );
}
