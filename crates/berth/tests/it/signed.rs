//! `verify_commits`: only commits signed by an allowed key deploy (ssh and gpg through git's own
//! `verify-commit`), from the CLI and from `berth serve`; rollbacks to what berth deployed pass;
//! a refusal is posted as a `berth/signature` commit status where the running configuration reports.

use std::path::{Path, PathBuf};
use std::process::Command;

use std::time::Duration;

use crate::common::forge::Forge;
use crate::common::server::Server;
use crate::common::*;
use serde_json::Value;

/// A throwaway ed25519 key pair `dir/name` (private) and `dir/name.pub`.
fn ssh_key(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(o.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&o.stderr));
    key
}

/// An allowed-signers file listing the public halves of `keys`.
fn allowed_signers(dir: &Path, keys: &[&Path]) -> PathBuf {
    let file = dir.join("allowed_signers");
    let lines: Vec<String> = keys
        .iter()
        .map(|k| format!("ops@berth {}", std::fs::read_to_string(k.with_extension("pub")).unwrap().trim()))
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    file
}

/// Commit everything, signed with an ssh key (through git, which runs `ssh-keygen -Y sign`).
fn commit_ssh(repo: &Repo, msg: &str, key: &Path) -> String {
    repo.git(&["add", "-A"]);
    let signing = format!("user.signingkey={}", key.display());
    repo.git(&["-c", "gpg.format=ssh", "-c", &signing, "commit", "-q", "-S", "--allow-empty", "-m", msg]);
    repo.git(&["rev-parse", "HEAD"])
}

fn ssh_setting(file: &Path) -> String {
    format!("[berth]\nverify_commits = {{ format = \"ssh\", allowed_signers = \"{}\" }}\n", file.display())
}

#[track_caller]
fn refused(r: &Run, why: &str) {
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("is not signed by an allowed key") && r.stderr.contains(why), "{}", r.stderr);
}

#[test]
fn only_commits_signed_by_an_allowed_ssh_key_deploy() {
    let f = Fixture::bare(&["ssh"]);
    need("ssh-keygen", "openssh-client");
    let s = f.stack();
    let keys = tempfile::tempdir().unwrap();
    let (ops, other) = (ssh_key(keys.path(), "ops"), ssh_key(keys.path(), "other"));
    let signers = allowed_signers(keys.path(), &[&ops]);
    let repo = &f.repo;
    repo.write("berth.toml", &ssh_setting(&signers));
    repo.stack(&s, &colored("red"));
    let first = commit_ssh(repo, "signed by ops", &ops);
    repo.berth(&["apply"]).ok();
    let id = container(&s, "app");
    let deploys = |repo: &Repo| repo.json(&["history", &s, "--json"]).as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(deploys(repo), 1);

    // Unsigned, then signed by a key the allowed signers do not list: nothing deploys.
    repo.stack(&s, &colored("green"));
    let unsigned = repo.commit("unsigned");
    refused(&repo.berth(&["apply"]), "no signature");
    let stranger = commit_ssh(repo, "signed by another key", &other);
    refused(&repo.berth(&["deploy", &s]), "which the allowed signers do not list");
    assert!(!stranger.is_empty() && unsigned != stranger);
    // An unsigned commit cannot switch the check off: the running configuration still asks.
    std::fs::remove_file(repo.path().join("berth.toml")).unwrap();
    repo.commit("unsigned, and without verify_commits");
    refused(&repo.berth(&["apply"]), "no signature");
    assert_eq!(container(&s, "app"), id, "a refused commit touched the stack");
    assert_eq!(deploys(repo), 1, "a refused commit was deployed");

    // A signed commit deploys.
    repo.write("berth.toml", &ssh_setting(&signers));
    let second = commit_ssh(repo, "signed by ops again", &ops);
    repo.berth(&["apply"]).ok();
    assert_ne!(container(&s, "app"), id);
    assert!(inspect(&container(&s, "app"), "{{range .Config.Env}}{{println .}}{{end}}").contains("COLOR=green"));

    // Rotate the allowed keys to `other` only: the commits signed by `ops` no longer pass, but a
    // rollback to one berth deployed is allowed (it was checked when it deployed).
    allowed_signers(keys.path(), &[&other]);
    refused(&repo.berth(&["deploy", &s, "--ref", &second]), "which the allowed signers do not list");
    let r = repo.berth(&["rollback", &s, "--ref", &first]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(inspect(&container(&s, "app"), "{{range .Config.Env}}{{println .}}{{end}}").contains("COLOR=red"));
}

/// A throwaway GNUPGHOME with one signing key; returns its fingerprint.
fn gpg_home(home: &Path) -> String {
    let gpg = |args: &[&str]| {
        let o = Command::new("gpg").env("GNUPGHOME", home).args(["--batch", "--quiet"]).args(args).output().unwrap();
        assert!(o.status.success(), "gpg {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    gpg(&["--passphrase", "", "--quick-gen-key", "berth test <ops@berth>", "ed25519", "sign", "never"]);
    let out = gpg(&["--with-colons", "--list-secret-keys"]);
    out.lines().find_map(|l| l.strip_prefix("fpr:").map(|f| f.trim_matches(':').to_string())).unwrap()
}

/// Stops the gpg-agent a throwaway GNUPGHOME started, even on panic.
struct Agent(PathBuf);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf").env("GNUPGHOME", &self.0).args(["--kill", "gpg-agent"]).output();
    }
}

#[test]
fn commits_signed_with_an_allowed_gpg_key_deploy() {
    let f = Fixture::bare(&["gpg"]);
    need("gpg", "gnupg");
    let s = f.stack();
    let keys = tempfile::tempdir().unwrap();
    let home = keys.path().join("gnupg");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let _agent = Agent(home.clone());
    let fpr = gpg_home(&home);
    let repo = &f.repo;
    let commit_gpg = |msg: &str| {
        repo.git(&["add", "-A"]);
        let o = Command::new("git")
            .arg("-C")
            .arg(repo.path())
            .env("GNUPGHOME", &home)
            .args(["-c", "user.email=ops@berth", "-c", "user.name=ops", "-c", "gpg.format=openpgp"])
            .args(["-c", &format!("user.signingkey={fpr}"), "commit", "-q", "-S", "--allow-empty", "-m", msg])
            .output()
            .unwrap();
        assert!(o.status.success(), "git commit -S: {}", String::from_utf8_lossy(&o.stderr));
        repo.git(&["rev-parse", "HEAD"])
    };
    let setting = |keyring: &Path| {
        format!("[berth]\nverify_commits = {{ format = \"gpg\", keyring = \"{}\" }}\n", keyring.display())
    };
    // The keyring as a GNUPGHOME folder.
    repo.write("berth.toml", &setting(&home));
    repo.stack(&s, &colored("red"));
    commit_gpg("signed");
    repo.berth(&["apply"]).ok();
    let id = container(&s, "app");

    repo.stack(&s, &colored("green"));
    repo.commit("unsigned");
    refused(&repo.berth(&["apply"]), "");
    assert_eq!(container(&s, "app"), id);

    // The keyring as an exported public key file (imported into a private GNUPGHOME for the check).
    let exported =
        Command::new("gpg").env("GNUPGHOME", &home).args(["--batch", "--armor", "--export", &fpr]).output().unwrap();
    let public = keys.path().join("ops.asc");
    std::fs::write(&public, &exported.stdout).unwrap();
    repo.write("berth.toml", &setting(&public));
    commit_gpg("signed, with the keyring as a file");
    repo.berth(&["apply"]).ok();
    let second = container(&s, "app");
    assert_ne!(second, id);

    // The keys as a secret reference to their armored text.
    repo.write("berth.toml", "[berth]\nverify_commits = { format = \"gpg\", keyring = { env = \"DEPLOYERS\" } }\n");
    repo.stack(&s, &colored("blue"));
    commit_gpg("signed, with the keys from the environment");
    let armored = String::from_utf8(exported.stdout).unwrap();
    repo.berth_with(&["apply"], &[("DEPLOYERS", armored.as_str())]).ok();
    assert_ne!(container(&s, "app"), second);
}

#[test]
fn the_controller_rejects_and_records_an_unsigned_push() {
    let f = Fixture::bare(&["srv"]);
    need("ssh-keygen", "openssh-client");
    let s = f.stack();
    let keys = tempfile::tempdir().unwrap();
    let ops = ssh_key(keys.path(), "ops");
    let signers = allowed_signers(keys.path(), &[&ops]);
    let repo = &f.repo;
    repo.write("berth.toml", &ssh_setting(&signers));
    repo.stack(&s, &colored("red"));
    let first = commit_ssh(repo, "signed", &ops);
    let server = Server::start(repo);
    server.settle();
    let id = container(&s, "app");

    repo.stack(&s, &colored("green"));
    let bad = repo.commit("unsigned");
    let (code, body) = server.push(&first, &bad, "?wait=true");
    assert_eq!((code, body["code"].as_str()), (422, Some("unsigned_commit")), "{body}");
    assert!(body["error"].as_str().unwrap_or("").contains("is not signed by an allowed key"), "{body}");
    let rej = server.get("/api/v1/config/rejections").unwrap();
    assert_eq!(rej["rejections"][0]["commit"], bad.as_str(), "{rej}");
    assert!(rej["rejections"][0]["errors"][0].as_str().unwrap().contains("not signed by an allowed key"), "{rej}");
    assert_eq!(container(&s, "app"), id, "an unsigned push touched the running stack");
    assert_eq!(server.deploys().len(), 1);

    // The same change signed deploys.
    let good = commit_ssh(repo, "signed again", &ops);
    let (code, body) = server.push(&bad, &good, "?wait=true");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["success"], true, "{body}");
    assert_ne!(container(&s, "app"), id);
}

/// `verify_commits` with a CI gate that reports to `forge` (owner/name given: the controller's mirror has no forge remote).
fn reporting_setting(signers: &Path, forge: &Forge, stack: &str) -> String {
    format!(
        "{}[defaults]\nverify = {{ stable = \"1s\" }}\n[[stack]]\nname = \"{stack}\"\n\
         require_ci = {{ provider = \"{}\", url = \"{}\", repo = \"me/stacks\", timeout = \"60s\", report = true }}\n",
        ssh_setting(signers),
        forge.kind,
        forge.base
    )
}

#[test]
fn a_refused_commit_gets_a_failed_signature_status_from_the_cli() {
    let f = Fixture::bare(&["sigst"]);
    need("ssh-keygen", "openssh-client");
    let s = f.stack();
    let forge = Forge::start("gitea");
    let keys = tempfile::tempdir().unwrap();
    let (ops, other) = (ssh_key(keys.path(), "ops"), ssh_key(keys.path(), "other"));
    let signers = allowed_signers(keys.path(), &[&ops]);
    let repo = &f.repo;
    repo.write("berth.toml", &reporting_setting(&signers, &forge, &s));
    repo.stack(&s, &colored("red"));
    let first = commit_ssh(repo, "signed", &ops);
    forge.status(&first, "ci/build", "success", "build passed", "https://ci.example.com/1");
    repo.berth(&["apply"]).ok();
    assert!(forge.posted("berth/signature").is_empty(), "a signed commit got a signature status");

    repo.stack(&s, &colored("green"));
    let unsigned = repo.commit("unsigned");
    refused(&repo.berth(&["apply"]), "no signature");
    let stranger = commit_ssh(repo, "signed by another key", &other);
    refused(&repo.berth(&["apply"]), "which the allowed signers do not list");
    let on = |commit: &str| -> Vec<(String, String)> {
        forge
            .posts()
            .into_iter()
            .filter(|(p, v)| p.ends_with(commit) && v["context"] == "berth/signature")
            .map(|(p, v)| (p, v["state"].as_str().unwrap_or("").to_string()))
            .collect()
    };
    assert_eq!(
        on(&unsigned),
        [(format!("/api/v1/repos/me/stacks/statuses/{unsigned}"), "failure".to_string())],
        "{:?}",
        forge.posts()
    );
    assert_eq!(on(&stranger).len(), 1, "{:?}", forge.posts());
    let posted = forge.posted("berth/signature");
    assert_eq!(posted[0].1, "not deployed: the commit is unsigned", "{posted:?}");
    assert!(
        posted[1].1.starts_with("not deployed: signed by a key that is not allowed (signed with key "),
        "{posted:?}"
    );
    assert!(posted.iter().all(|p| p.0 == "failure"), "{posted:?}");
}

#[test]
fn the_controller_posts_a_failed_signature_status_for_an_unsigned_push() {
    let f = Fixture::bare(&["sigsrv"]);
    need("ssh-keygen", "openssh-client");
    let s = f.stack();
    let forge = Forge::start("github");
    let keys = tempfile::tempdir().unwrap();
    let ops = ssh_key(keys.path(), "ops");
    let signers = allowed_signers(keys.path(), &[&ops]);
    let repo = &f.repo;
    repo.write("berth.toml", &reporting_setting(&signers, &forge, &s));
    repo.stack(&s, &colored("red"));
    let first = commit_ssh(repo, "signed", &ops);
    forge.check_run(&first, "build", "completed", Some("success"));
    let server = Server::start(repo);
    server.settle();

    // The unsigned commit also drops the CI gate: its own configuration is not trusted to say where statuses go.
    repo.write("berth.toml", &ssh_setting(&signers));
    repo.stack(&s, &colored("green"));
    let bad = repo.commit("unsigned");
    let (code, body) = server.push(&first, &bad, "?wait=true");
    assert_eq!((code, body["code"].as_str()), (422, Some("unsigned_commit")), "{body}");
    let posted = wait_for("the signature status", Duration::from_secs(30), || {
        let p: Vec<(String, Value)> =
            forge.posts().into_iter().filter(|(_, v)| v["context"] == "berth/signature").collect();
        (!p.is_empty()).then_some(p)
    });
    assert_eq!(posted[0].0, format!("/repos/me/stacks/statuses/{bad}"), "{posted:?}");
    assert_eq!(posted[0].1["state"], "failure", "{posted:?}");
    assert_eq!(posted[0].1["description"], "not deployed: the commit is unsigned", "{posted:?}");
    // A second delivery of the same commit is not posted again.
    let (code, _) = server.push(&first, &bad, "?wait=true");
    assert_eq!(code, 422);
    assert_eq!(forge.posted("berth/signature").len(), 1, "{:?}", forge.posts());
}

#[test]
fn a_repos_forge_gets_the_signature_status_of_an_unsigned_push() {
    let f = Fixture::bare(&["sigrepo"]);
    need("ssh-keygen", "openssh-client");
    let s = f.stack();
    let forge = Forge::start("gitea");
    let keys = tempfile::tempdir().unwrap();
    let ops = ssh_key(keys.path(), "ops");
    let signers = allowed_signers(keys.path(), &[&ops]);
    // The forge's repository `me/stacks`, served to berth as a bare repository.
    let remote = tempfile::tempdir().unwrap();
    let bare = remote.path().join("me/stacks.git");
    assert!(Command::new("git").args(["init", "-q", "--bare"]).arg(&bare).status().unwrap().success());
    let url = format!("file://{}", bare.display());
    let repo = &f.repo;
    repo.git(&["remote", "add", "origin", &url]);
    // Where statuses go and which keys count come from `[[repo]]`, not from the commits.
    repo.write(
        "berth.toml",
        &format!(
            "[defaults]\nverify = {{ stable = \"1s\" }}\n\n[[repo]]\nname = \"stacks\"\nurl = \"{url}\"\nbranch = \"main\"\n\
             webhook_secret = {{ env = \"BERTH_WEBHOOK_SECRET\" }}\n\
             verify_commits = {{ format = \"ssh\", allowed_signers = \"{}\" }}\n\
             forge = {{ provider = \"gitea\", url = \"{}\" }}\n",
            signers.display(),
            forge.base
        ),
    );
    repo.stack(&s, &colored("red"));
    let first = commit_ssh(repo, "signed", &ops);
    repo.git(&["push", "-q", "origin", "HEAD:refs/heads/main"]);
    let server = Server::start(repo);
    server.settle();
    assert!(forge.posted("berth/signature").is_empty(), "a signed commit got a signature status");

    repo.stack(&s, &colored("green"));
    let bad = repo.commit("unsigned");
    repo.git(&["push", "-q", "origin", "HEAD:refs/heads/main"]);
    let (code, body) = server.push(&first, &bad, "?repo=stacks&wait=true");
    assert_eq!((code, body["code"].as_str()), (422, Some("unsigned_commit")), "{body}");
    let posted = wait_for("the signature status", Duration::from_secs(30), || {
        let p: Vec<(String, Value)> =
            forge.posts().into_iter().filter(|(_, v)| v["context"] == "berth/signature").collect();
        (!p.is_empty()).then_some(p)
    });
    assert_eq!(posted[0].0, format!("/api/v1/repos/me/stacks/statuses/{bad}"), "{posted:?}");
    assert_eq!(
        (posted[0].1["state"].as_str(), posted[0].1["description"].as_str()),
        (Some("failure"), Some("not deployed: the commit is unsigned")),
        "{posted:?}"
    );
}
