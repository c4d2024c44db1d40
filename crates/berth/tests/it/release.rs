//! Environments, version tags, promotion and CI gates, on real git repos and the real engine.

use std::process::Command;

use crate::common::forge::gated_repo;
use crate::common::http::Api;
use crate::common::*;

fn remote_tags(bare: &std::path::Path) -> String {
    let o = Command::new("git").arg("-C").arg(bare).args(["tag", "-l"]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// A bare repository in a temp dir made `repo`'s `origin` (where release tags go).
fn bare_origin(repo: &Repo) -> tempfile::TempDir {
    let bare = tempfile::tempdir().unwrap();
    assert!(Command::new("git").args(["init", "-q", "--bare"]).arg(bare.path()).status().unwrap().success());
    repo.git(&["remote", "add", "origin", &bare.path().display().to_string()]);
    bare
}

#[test]
fn staging_follows_pushes_and_production_moves_by_promotion() {
    let f = Fixture::bare(&["stg", "prd"]);
    let (stg, prd) = (f.stacks[0].clone(), f.stacks[1].clone());
    let (repo, bare) = (&f.repo, bare_origin(&f.repo));
    repo.write(
        "berth.toml",
        "[defaults]\nverify = { stable = \"1s\" }\n[[server]]\nname = \"prod\"\n\n[[environment]]\nname = \"staging\"\nservers = [\"local\"]\nauto = true\n\n[[environment]]\nname = \"production\"\nservers = [\"prod\"]\nauto = false\n",
    );
    repo.write(&format!("nodes/local/{stg}/compose.yaml"), &colored("red"));
    repo.write(&format!("nodes/prod/{prd}/compose.yaml"), &colored("red"));
    repo.write("README.md", "stacks\n");
    let first = repo.commit("first");
    repo.git(&["tag", "-a", "-m", "old release", "v1.2.3", &first]);
    repo.write(&format!("nodes/local/{stg}/compose.yaml"), &colored("green"));
    repo.write(&format!("nodes/prod/{prd}/compose.yaml"), &colored("green"));
    let second = repo.commit("green");
    repo.git(&["push", "-q", "origin", "main", "--tags"]);

    // A reconcile deploys staging only and tags the commit with the next patch version.
    let out = repo.berth(&["apply"]).ok();
    assert!(out.stdout.contains("released v1.2.4 to staging"), "{}", out.stdout);
    container(&stg, "app");
    assert!(containers(&prd).is_empty(), "production moved without a promotion");
    assert!(remote_tags(bare.path()).contains("v1.2.4"), "the tag was not pushed");
    assert_eq!(repo.git(&["rev-list", "-n1", "v1.2.4"]), second);

    // Promotion: the same commit, a new minor version, recorded.
    let out = repo.berth_env(&["promote", "--from", "staging", "--to", "production"], None);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("promoting v1.2.4 (staging) to production as v1.3.0"), "{}", out.stdout);
    assert!(inspect(&container(&prd, "app"), "{{json .Config.Env}}").contains("COLOR=green"));
    assert!(remote_tags(bare.path()).contains("v1.3.0"));
    let hist = repo.json(&["history", "--env", "production", "--json"]);
    assert_eq!(hist[0]["release"]["tag"], "v1.3.0");
    assert_eq!(hist[0]["release"]["kind"], "promotion");
    assert_eq!(hist[0]["release"]["from_tag"], "v1.2.4");
    assert!(hist[0]["deploys"].as_str().unwrap().contains("succeeded"), "{hist}");

    // A hotfix tag made from the production tag deploys to production directly.
    repo.write(&format!("nodes/prod/{prd}/compose.yaml"), &colored("hotfix"));
    let fix = repo.commit("hotfix");
    repo.git(&["tag", "-a", "-m", "hotfix", "v1.3.1", &fix]);
    let out = repo.berth(&["promote", "--to", "production", "--tag", "v1.3.1"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(inspect(&container(&prd, "app"), "{{json .Config.Env}}").contains("COLOR=hotfix"));

    // A read-only remote: the tag is kept locally and the refusal is reported.
    std::fs::write(bare.path().join("hooks/pre-receive"), "#!/bin/sh\necho read-only >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(
        bare.path().join("hooks/pre-receive"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    repo.write(&format!("nodes/local/{stg}/compose.yaml"), &colored("blue"));
    repo.commit("blue");
    let out = repo.berth(&["apply"]).ok();
    assert!(out.stdout.contains("released v1.3.2 to staging (tag kept locally"), "{}", out.stdout);
    assert!(repo.git(&["tag", "-l"]).contains("v1.3.2"));
    assert!(!remote_tags(bare.path()).contains("v1.3.2"));
    let rel = repo.json(&["history", "--env", "staging", "--json"]);
    assert_eq!(rel[0]["release"]["pushed"], false);
}

#[test]
fn a_ci_gate_rides_out_flaky_answers_and_blocks_red_commits() {
    docker();
    let (ok, red) = (unique("green"), unique("red"));
    let _c = Cleanup(vec![ok.clone(), red.clone()]);
    // Gitea's combined status API (GET /api/v1/repos/{owner}/{repo}/commits/{ref}/status,
    // documented at https://docs.gitea.com/api): a 502, an empty body, pending, then success.
    let api = Api::start(Box::new(|path, n| {
        if path.contains("/status") {
            match n {
                0 => (502, "bad gateway".into()),
                1 => (200, String::new()),
                2 => (0, String::new()), // no answer at all
                3 => (200, r#"{"state":"pending","statuses":[{"context":"ci/build","state":"pending"}]}"#.into()),
                _ => (200, r#"{"state":"success","statuses":[{"context":"ci/build","state":"success"}]}"#.into()),
            }
        } else {
            (404, "{}".into())
        }
    }));
    let repo = gated_repo(
        &format!("{{ provider = \"gitea\", url = \"{}\", timeout = \"60s\", report = true }}", api.base),
        &ok,
        "",
    );
    let out = repo.berth(&["apply"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    container(&ok, "app");
    let id = repo.json(&["history", &ok, "--json"])[0]["id"].to_string();
    let log = repo.berth(&["logs", &id]).stdout;
    assert!(log.contains("HTTP 502") && log.contains("an empty body") && log.contains("retrying"), "{log}");
    assert!(log.contains("no answer ("), "a request that got no answer was not retried: {log}");
    assert!(log.contains("CI is green"), "{log}");
    assert!(api.hits.lock().unwrap().iter().any(|h| h.starts_with("/api/v1/repos/me/stacks/commits/")));
    // The outcome went back to the forge as a commit status.
    let commit = repo.git(&["rev-parse", "HEAD"]);
    let posts = api.posts.lock().unwrap().clone();
    let status = posts
        .iter()
        .rfind(|p| p.starts_with(&format!("/api/v1/repos/me/stacks/statuses/{commit} ")))
        .unwrap_or_else(|| panic!("{posts:?}"));
    assert!(status.contains("\"state\":\"success\"") && status.contains(&format!("berth/{ok}")), "{status}");

    // Red CI: nothing deployed, the reason recorded.
    let red_api = Api::start(Box::new(|_, _| {
        (200, r#"{"state":"failure","statuses":[{"context":"ci/test","state":"failure"}]}"#.into())
    }));
    let repo = gated_repo(&format!("{{ provider = \"forgejo\", url = \"{}\" }}", red_api.base), &red, "");
    let out = repo.berth(&["apply"]);
    assert_eq!(out.code, 1);
    assert!(containers(&red).is_empty());
    let h = repo.json(&["history", &red, "--json"]);
    assert!(h[0]["reason"].as_str().unwrap().contains("`ci/test` is failure"), "{}", h[0]);
}

#[test]
fn ci_status_and_watch_speak_woodpecker_and_github() {
    // Woodpecker: GET /api/repos/lookup/{owner}/{name} and /api/repos/{id}/pipelines
    // (https://woodpecker-ci.org/api), pipelines carry `commit`, `number` and `status`.
    let repo = Repo::new();
    repo.git(&["remote", "add", "origin", "git@git.example.com:team/infra.git"]);
    repo.write("README.md", "x\n");
    let head = repo.commit("one");
    let h = head.clone();
    let wp = Api::start(Box::new(move |path, n| match path {
        "/api/repos/lookup/team/infra" => (200, r#"{"id": 7, "full_name": "team/infra"}"#.into()),
        "/api/repos/7/pipelines" => {
            let status = if n < 2 { "running" } else { "success" };
            (
                200,
                format!(
                    r#"[{{"number": 12, "commit": "{h}", "status": "{status}"}}, {{"number": 11, "commit": "0000", "status": "failure"}}]"#
                ),
            )
        }
        _ => (404, "{}".into()),
    }));
    let run = |args: &[&str]| repo.berth(args);
    let out = run(&["ci", "status", "--provider", "woodpecker", "--url", &wp.base]);
    assert_eq!(out.code, 4, "pending: {}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("pipeline #12 is running"), "{}", out.stdout);
    let out = run(&["ci", "watch", "--provider", "woodpecker", "--url", &wp.base, "--timeout", "60s"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);

    // GitHub: combined status plus check runs; a failed check run fails the commit
    // (https://docs.github.com/rest/commits/statuses, /rest/checks/runs).
    let gh = Api::start(Box::new(|path, _| {
        if path.contains("/status?") {
            (200, r#"{"state":"pending","total_count":0,"statuses":[]}"#.into())
        } else if path.contains("/check-runs?") {
            (
                200,
                r#"{"total_count":1,"check_runs":[{"name":"build","status":"completed","conclusion":"failure"}]}"#
                    .into(),
            )
        } else {
            (404, "{}".into())
        }
    }));
    let out = run(&["ci", "status", "--provider", "github", "--url", &gh.base, "--commit", &head]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("`build` is failure"), "{}", out.stdout);
    assert!(
        gh.hits.lock().unwrap().iter().any(|p| p.starts_with(&format!("/repos/team/infra/commits/{head}/check-runs?")))
    );
}

#[test]
fn github_gates_and_receives_the_deploy_status() {
    // GitHub: combined status and check runs both green (https://docs.github.com/rest/commits/statuses).
    let gh = Api::start(Box::new(|path, _| {
        if path.contains("/status?") {
            (200, r#"{"state":"success","total_count":1,"statuses":[{"context":"ci","state":"success"}]}"#.into())
        } else if path.contains("/check-runs?") {
            (
                200,
                r#"{"total_count":1,"check_runs":[{"name":"build","status":"completed","conclusion":"success"}]}"#
                    .into(),
            )
        } else if path.contains("/statuses/") {
            (201, r#"{"id":1}"#.into())
        } else {
            (404, "{}".into())
        }
    }));
    let f = Fixture::of(&["ghstatus"], |n| {
        gated_repo(&format!("{{ provider = \"github\", url = \"{}\", report = true }}", gh.base), &n[0], "")
    });
    let (s, repo) = (f.stack(), &f.repo);
    repo.berth(&["apply"]).ok();
    let commit = repo.git(&["rev-parse", "HEAD"]);
    let posts = gh.posts.lock().unwrap().clone();
    let status = posts
        .iter()
        .rfind(|p| p.starts_with(&format!("/repos/me/stacks/statuses/{commit} ")))
        .unwrap_or_else(|| panic!("{posts:?}"));
    assert!(status.contains("\"state\":\"success\"") && status.contains(&format!("berth/{s}")), "{status}");
}

/// A pre-receive hook that refuses tags (protected tags) and accepts branches.
fn refuse_tags(bare: &std::path::Path) {
    let hook = bare.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\nwhile read old new ref; do\n  case \"$ref\" in refs/tags/*) echo \"tags are protected\" >&2; exit 1;; esac\ndone\n",
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

#[test]
fn berth_serve_pushes_release_tags_keeps_refused_ones_and_versions_always_increase() {
    let f = Fixture::bare(&["srvrel"]);
    let (s, repo, bare) = (f.stack(), &f.repo, bare_origin(&f.repo));
    repo.write(
        "berth.toml",
        &format!(
            "[defaults]\nverify = {{ stable = \"1s\" }}\n[[environment]]\nname = \"staging\"\nservers = [\"local\"]\nauto = true\n\n[[repo]]\nname = \"stacks\"\nurl = \"{}\"\nbranch = \"main\"\nwebhook_secret = {{ env = \"BERTH_WEBHOOK_SECRET\" }}\n",
            bare.path().display()
        ),
    );
    repo.write(&format!("nodes/local/{s}/compose.yaml"), &colored("red"));
    let mut tip = repo.commit("first");
    repo.git(&["push", "-q", "origin", "main"]);
    let server = crate::common::server::Server::start(repo);
    server.settle();
    let mirror = repo.state.path().join("mirrors/stacks.git");
    let mirror_tags = || remote_tags(&mirror);
    // The startup deploy released v0.1.0, and the remote has it.
    crate::common::wait_for("v0.1.0 on the remote", std::time::Duration::from_secs(60), || {
        remote_tags(bare.path()).contains("v0.1.0").then_some(())
    });

    let mut push = |color: &str| {
        repo.write(&format!("nodes/local/{s}/compose.yaml"), &colored(color));
        let next = repo.commit(color);
        repo.git(&["push", "-q", "origin", "main"]);
        let (code, body) = server.push(&tip, &next, "?wait=true");
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["success"], true, "{body}");
        tip = next;
    };
    push("green");
    assert!(remote_tags(bare.path()).contains("v0.1.1"), "{}", remote_tags(bare.path()));

    // The remote refuses tags: the next release is kept in the mirror, and survives the fetches after it.
    refuse_tags(bare.path());
    push("blue");
    assert!(!remote_tags(bare.path()).contains("v0.1.2"));
    assert!(mirror_tags().contains("v0.1.2"), "{}", mirror_tags());
    push("yellow");
    push("white");
    let local = mirror_tags();
    assert!(local.contains("v0.1.2") && local.contains("v0.1.3") && local.contains("v0.1.4"), "{local}");

    let hist = repo.json(&["history", "--env", "staging", "--json"]);
    let tags: Vec<&str> = hist.as_array().unwrap().iter().map(|h| h["release"]["tag"].as_str().unwrap()).collect();
    assert_eq!(tags, ["v0.1.4", "v0.1.3", "v0.1.2", "v0.1.1", "v0.1.0"], "{hist}");
    let pushed: Vec<bool> = hist.as_array().unwrap().iter().map(|h| h["release"]["pushed"] == true).collect();
    assert_eq!(pushed, [false, false, false, true, true], "{hist}");
    assert!(hist[0]["release"]["note"].as_str().unwrap().contains("tags are protected"), "{hist}");
}
