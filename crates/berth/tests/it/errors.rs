//! The CLI's answers to mistakes and accidents: unknown stacks and revisions, a closed stdout, a
//! damaged state database, a folder that is no stacks repository, the reason of a failed deploy.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// Run berth with explicit `--repo`/`--state-dir` (the state dir need not exist), killing it when it
/// has not finished within `secs` (then the code is -1: it hung).
fn berth_in(repo: &Path, state: &Path, args: &[&str], secs: u64) -> Run {
    let mut child = berth_command(repo, state)
        .args(args)
        .env_remove("BERTH_SERVER")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let mut run = Run::from(out);
    if Instant::now() >= deadline {
        run.code = -1;
    }
    run
}

fn stack(repo: &Repo, name: &str) {
    repo.stack(name, &sleeper(&["app"]));
}

#[test]
fn watch_of_an_unknown_stack_or_commit_fails_at_once() {
    let repo = Repo::new();
    stack(&repo, "web");
    stack(&repo, "api");
    repo.commit("two stacks");
    let state = repo.state.path();
    let out = berth_in(repo.path(), state, &["watch", "--stack", "wbe", "--timeout", "60s"], 30);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("no stack named `wbe`"), "{}", out.stderr);
    assert!(out.stderr.contains("did you mean `web`?") && out.stderr.contains("api, web"), "{}", out.stderr);

    let sha = "0123456789abcdef0123456789abcdef01234567";
    let out = berth_in(repo.path(), state, &["watch", "--commit", sha, "--timeout", "60s"], 30);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains(&format!("unknown revision `{sha}` in")), "{}", out.stderr);
    let out = berth_in(repo.path(), state, &["watch", "--commit", "no-such-branch", "--timeout", "60s"], 30);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);

    // A known stack that has not deployed yet is worth waiting for (until the timeout).
    let out = berth_in(repo.path(), state, &["watch", "--stack", "web", "--timeout", "1s"], 30);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("no deploy appeared"), "{}", out.stderr);
}

#[test]
fn watch_of_an_unknown_stack_on_a_server_fails_at_once() {
    // `berth serve` deploys `web` at start: take it down afterwards (the name is what is suggested).
    let _c = Cleanup(vec!["web".to_string()]);
    let repo = Repo::new();
    stack(&repo, "web");
    repo.commit("one stack");
    let server = crate::common::server::Server::start(&repo);
    let remote = |args: &[&str]| {
        let mut all = vec!["watch", "--server", &server.base, "--api-key", &server.key, "--api-secret", &server.secret];
        all.extend(args);
        berth_in(repo.path(), repo.state.path(), &all, 30)
    };
    let out = remote(&["--stack", "wbe", "--timeout", "60s"]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("has no stack named `wbe`") && out.stderr.contains("did you mean `web`?"),
        "{}",
        out.stderr
    );
    let out = remote(&["--commit", "main", "--timeout", "60s"]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("give a commit id"), "{}", out.stderr);
}

#[test]
fn history_of_an_unknown_stack_is_a_usage_error_with_a_suggestion() {
    let repo = Repo::new();
    stack(&repo, "web");
    stack(&repo, "db");
    repo.commit("two stacks");
    let out = repo.berth(&["history", "wbe"]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(!out.stderr.contains("invalid configuration"), "{}", out.stderr);
    assert!(out.stderr.contains("no stack named `wbe`"), "{}", out.stderr);
    assert!(out.stderr.contains("did you mean `web`? stacks: db, web"), "{}", out.stderr);
}

#[test]
fn every_unknown_key_of_berth_toml_is_reported() {
    let repo = Repo::new();
    stack(&repo, "web");
    repo.write(
        "berth.toml",
        "[berth]\nmax_paralel = 2\n\n[[stack]]\nname = \"web\"\nwach = [\"libs/**\"]\nverify = { stabel = \"1s\" }\n",
    );
    let out = repo.berth(&["validate"]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    for (at, key, hint) in [
        ("berth.toml:2:1", "max_paralel", "max_parallel"),
        ("berth.toml:6:1", "wach", "watch"),
        ("berth.toml:7:12", "stabel", "stable"),
    ] {
        assert!(out.stderr.contains(&format!("{at}: unknown key `{key}`")), "{key}: {}", out.stderr);
        assert!(out.stderr.contains(&format!("did you mean `{hint}`?")), "{hint}: {}", out.stderr);
    }
    assert!(out.stderr.contains("invalid configuration (3 problems)"), "{}", out.stderr);
}

#[test]
fn changed_with_an_unknown_revision_names_it() {
    let repo = Repo::new();
    stack(&repo, "web");
    let head = repo.commit("one");
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let out = repo.berth(&["changed", "--from", &head, "--to", sha]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(!out.stderr.contains("not a tree object"), "{}", out.stderr);
    let repo_path = std::fs::canonicalize(repo.path()).unwrap();
    assert!(out.stderr.contains(&format!("unknown revision `{sha}` in {}", repo_path.display())), "{}", out.stderr);
    let out = repo.berth(&["plan", "--ref", "nosuch"]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("unknown revision `nosuch`"), "{}", out.stderr);
}

#[test]
fn a_folder_without_stacks_is_refused_and_read_only_commands_create_no_state() {
    // A git repository that is no stacks repository.
    let elsewhere = Repo::new();
    elsewhere.write("README.md", "notes\n");
    elsewhere.commit("notes");
    let state = elsewhere.path().join(".berth");
    for args in [&["plan"][..], &["validate"], &["apply"]] {
        let out = berth_in(elsewhere.path(), &state, args, 60);
        assert_eq!(out.code, 2, "{args:?}: {}{}", out.stdout, out.stderr);
        assert!(out.stderr.contains("is not a stacks repository"), "{args:?}: {}", out.stderr);
    }
    assert!(!state.exists(), "a state dir was created in a folder that is no stacks repository");

    // In a stacks repository, looking creates nothing either.
    let repo = Repo::new();
    stack(&repo, "web");
    let head = repo.commit("one");
    let state = repo.path().join(".berth");
    for args in [
        &["validate"][..],
        &["plan"],
        &["changed", "--from", &head, "--to", "HEAD"],
        &["status"],
        &["history", "web"],
        &["history", "--env", "prod"],
    ] {
        let out = berth_in(repo.path(), &state, args, 60);
        assert_eq!(out.code, 0, "{args:?}: {}{}", out.stdout, out.stderr);
    }
    assert!(!state.exists(), "a read-only command created the state dir");
    // Outside any git repository: a usage error.
    let plain = tempfile::tempdir().unwrap();
    let out = berth_in(plain.path(), &plain.path().join(".berth"), &["plan"], 60);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("is not inside a git repository"), "{}", out.stderr);
}

#[test]
fn a_damaged_state_database_says_how_to_recover() {
    let repo = Repo::new();
    stack(&repo, "web");
    repo.commit("one");
    let db = repo.state.path().join("berth.db");
    std::fs::write(&db, "this is not a database, it is a note\n".repeat(200)).unwrap();
    let out = repo.berth(&["status"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let shown = db.display().to_string();
    assert!(out.stderr.contains(&shown), "{}", out.stderr);
    let aside = repo.state.path().join("damaged");
    assert!(
        out.stderr.contains(&format!("mkdir {} && mv {shown}* {}/", aside.display(), aside.display())),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("keeps no backup") && out.stderr.contains("history"), "{}", out.stderr);
    assert!(out.stderr.contains("next `berth apply` redeploys"), "{}", out.stderr);

    // Following the advice works: berth starts over with an empty state.
    std::fs::create_dir(&aside).unwrap();
    std::fs::rename(&db, aside.join("berth.db")).unwrap();
    repo.berth(&["keys", "create", "--name", "ops", "--scope", "read"]).ok();
    repo.berth(&["status"]).ok();

    // A real database with damaged pages ("malformed"): the same advice.
    let mut bytes = std::fs::read(&db).unwrap();
    for b in bytes.iter_mut().skip(100) {
        *b = 7;
    }
    std::fs::write(&db, bytes).unwrap();
    let out = repo.berth(&["status"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("malformed") && out.stderr.contains("keeps no backup"), "{}", out.stderr);
}

/// Run `berth` with its stdout a pipe nobody reads (every write fails with EPIPE): it ends as
/// a shell pipeline's writer does (141, SIGPIPE) without a panic.
#[track_caller]
fn ends_quietly_into_a_closed_pipe(mut berth: Command) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = berth.stdout(writer).stderr(Stdio::piped()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{berth:?}: {stderr}");
    assert_eq!(out.status.code(), Some(141), "{berth:?}: {stderr}");
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let repo = Repo::new();
    for i in 0..50 {
        stack(&repo, &format!("s{i}"));
    }
    let head = repo.commit("many stacks");
    for args in [&["plan"][..], &["changed", "--from", "0000000000000000000000000000000000000000", "--to", &head]] {
        ends_quietly_into_a_closed_pipe(repo.command(args));
    }
}

/// A `PATH` on which `docker compose` is missing, so berth falls back to docker-compose 1.x
/// (the real one; only the plugin is hidden).
fn without_the_plugin(dir: &Path) -> String {
    need("docker-compose", "docker-compose");
    let docker = Command::new("sh").args(["-c", "command -v docker"]).output().unwrap();
    let docker = String::from_utf8_lossy(&docker.stdout).trim().to_string();
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = compose ]; then echo \"docker: 'compose' is not a docker command.\" >&2; exit 1; fi\nexec {docker} \"$@\"\n"
    );
    let shim = dir.join("docker");
    std::fs::write(&shim, script).unwrap();
    let mut mode = std::fs::metadata(&shim).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut mode, 0o755);
    std::fs::set_permissions(&shim, mode).unwrap();
    format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default())
}

/// A deploy whose compose file is broken records compose's own message as its reason (with the
/// plugin and with docker-compose 1.x, whose last line is only the error's location), and its log
/// piped into a reader that stops early ends quietly.
#[test]
fn a_failed_deploy_s_reason_is_compose_s_message() {
    docker();
    let bin = tempfile::tempdir().unwrap();
    let v1 = without_the_plugin(bin.path());
    for (path, expected) in
        [(None, "did not find expected key"), (Some(v1.as_str()), "expected <block end>, but found")]
    {
        let f = Fixture::bare(&["badyaml"]);
        let (s, repo) = (f.stack(), &f.repo);
        repo.stack(&s, &format!("services:\n  app:\n    image: {IMAGE}\n   command: x\n"));
        repo.commit("bad yaml");
        let out = repo.berth_env(&["apply"], path);
        assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
        let h = repo.json(&["history", &s, "--json"]);
        let reason = h[0]["reason"].as_str().unwrap_or_default().to_string();
        assert!(reason.contains(expected), "the reason is not compose's message: {reason}");
        assert!(reason.contains("compose.yaml"), "{reason}");

        let id = h[0]["id"].as_i64().unwrap().to_string();
        ends_quietly_into_a_closed_pipe(repo.command(&["logs", &id]));
    }
}
