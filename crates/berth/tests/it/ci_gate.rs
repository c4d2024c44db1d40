//! CI gates and commit statuses against fake forges that keep state like the real APIs
//! (combined statuses include what berth posted, pages of 30 with `Link`, 429 with
//! `Retry-After`, check runs next to statuses), with real git repos and the real engine.

use crate::common::forge::{Fault, Forge, gated_repo};
use crate::common::*;
use serde_json::Value;

/// berth's posts for `context`: (state, description, target_url).
fn berth_posts(forge: &Forge, context: &str) -> Vec<(String, String, String)> {
    forge.posted(context)
}

fn head(repo: &Repo) -> String {
    repo.git(&["rev-parse", "HEAD"])
}

#[test]
fn berths_own_failed_status_never_blocks_its_commit_and_rollbacks_do_not_wait_for_ci() {
    let forge = Forge::start("gitea");
    let f = Fixture::of(&["own"], |n| {
        gated_repo(
            &format!(
                "{{ provider = \"gitea\", url = \"{}\", timeout = \"60s\", report = true, ignore_contexts = [\"lint*\"] }}",
                forge.base
            ),
            &n[0],
            "[dashboard]\npublic_url = \"https://berth.example.com/ops/\"\n",
        )
    });
    let (s, repo) = (f.stack(), &f.repo);
    let first = head(repo);
    // What an earlier failed deploy left on the commit, next to green CI and an ignored red lint.
    forge.status(&first, "ci/build", "success", "build passed", "https://ci.example.com/1");
    forge.status(&first, "lint", "failure", "style", "https://ci.example.com/2");
    forge.status(&first, &format!("berth/{s}"), "failure", "rolled back", "");
    let out = repo.berth(&["apply"]);
    assert_eq!(out.code, 0, "berth's own status blocked the gate: {}{}", out.stdout, out.stderr);
    container(&s, "app");

    // Statuses people can follow: pending at the start and while waiting, then the outcome,
    // each linking the deploy's dashboard page.
    let id = repo.json(&["history", &s, "--json"])[0]["id"].as_i64().unwrap();
    let posts = berth_posts(&forge, &format!("berth/{s}"));
    let states: Vec<&str> = posts.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(states, ["pending", "pending", "success"], "{posts:?}");
    assert!(posts[0].1.contains("waiting for CI"), "{posts:?}");
    assert!(posts[2].1.starts_with("deployed and verified in "), "{posts:?}");
    let url = format!("https://berth.example.com/ops/deploys/{id}");
    assert!(posts.iter().all(|p| p.2 == url), "{posts:?}");

    // A second commit, deployed; then CI turns red on the first and an operator rolls back to it.
    repo.stack(&s, &colored("blue"));
    let second = repo.commit("blue");
    forge.status(&second, "ci/build", "success", "", "");
    repo.berth(&["apply"]).ok();
    assert!(inspect(&container(&s, "app"), "{{json .Config.Env}}").contains("COLOR=blue"));
    forge.status(&first, "ci/build", "failure", "flaky test", "https://ci.example.com/3");
    let out = repo.berth(&["rollback", &s, "--ref", &first]);
    assert_eq!(out.code, 0, "a rollback waited for CI: {}{}", out.stdout, out.stderr);
    assert!(inspect(&container(&s, "app"), "{{json .Config.Env}}").contains("COLOR=red"));
    let rb = repo.json(&["history", &s, "--json"])[0]["id"].to_string();
    let log = repo.berth(&["logs", &rb]).stdout;
    assert!(log.contains("not waiting for CI: rollbacks are not gated"), "{log}");
}

#[test]
fn rollbacks_wait_for_ci_when_the_gate_says_so() {
    let forge = Forge::start("github");
    let f = Fixture::of(&["gaterb"], |n| {
        gated_repo(
            &format!("{{ provider = \"github\", url = \"{}\", timeout = \"30s\", gate_rollbacks = true }}", forge.base),
            &n[0],
            "",
        )
    });
    let (s, repo) = (f.stack(), &f.repo);
    let first = head(repo);
    forge.check_run(&first, "build", "completed", Some("success"));
    repo.berth(&["apply"]).ok();
    repo.stack(&s, &colored("blue"));
    let second = repo.commit("blue");
    forge.check_run(&second, "build", "completed", Some("success"));
    repo.berth(&["apply"]).ok();
    forge.check_run(&first, "security", "completed", Some("failure"));
    let out = repo.berth(&["rollback", &s, "--ref", &first]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(inspect(&container(&s, "app"), "{{json .Config.Env}}").contains("COLOR=blue"), "the rollback ran");
    let h = repo.json(&["history", &s, "--json"]);
    assert!(h[0]["reason"].as_str().unwrap().contains("`security` is failure"), "{}", h[0]);
}

#[test]
fn every_page_of_check_runs_and_statuses_is_read() {
    let repo = Repo::new();
    repo.git(&["remote", "add", "origin", "git@github.com:team/infra.git"]);
    repo.write("README.md", "x\n");
    let commit = repo.commit("one");
    let gh = Forge::start("github");
    // 135 check runs, the failing one far past the first page (30 by default, 100 at most).
    for i in 0..135 {
        let conclusion = if i == 120 { "failure" } else { "success" };
        gh.check_run(&commit, &format!("job {i}"), "completed", Some(conclusion));
    }
    let out = repo.berth(&["ci", "status", "--provider", "github", "--url", &gh.base]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("`job 120` is failure: job 120 completed (https://ci.example.com/runs/121)"),
        "{}",
        out.stdout
    );
    let pages: Vec<String> = gh.hits().into_iter().filter(|h| h.contains("/check-runs")).collect();
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert!(pages[0].contains("per_page=100"), "{pages:?}");

    // 35 statuses, the failing one on the second page (Gitea: 30 by default, 50 at most).
    let gitea = Forge::start("gitea");
    for i in 0..75 {
        let state = if i == 60 { "failure" } else { "success" };
        gitea.status(&commit, &format!("ci/{i:02}"), state, "", "");
    }
    let out = repo.berth(&["ci", "status", "--provider", "gitea", "--url", &gitea.base]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("`ci/60` is failure"), "{}", out.stdout);
}

#[test]
fn transient_answers_are_retried_until_the_gates_deadline() {
    let repo = Repo::new();
    repo.git(&["remote", "add", "origin", "https://git.example.com/me/stacks.git"]);
    repo.write("README.md", "x\n");
    let commit = repo.commit("one");
    let gitea = Forge::start("gitea");
    gitea.status(&commit, "ci/build", "success", "", "");
    // Eight 502s in a row, an empty body, then a rate limit: none of it is the answer.
    gitea.fault(Fault::Status(502), 8);
    gitea.fault(Fault::EmptyBody, 1);
    gitea.fault(Fault::RateLimited(1), 1);
    let out = repo.berth(&["ci", "watch", "--provider", "gitea", "--url", &gitea.base, "--timeout", "120s"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stdout.matches("gave HTTP 502").count(), 8, "{}", out.stdout);
    assert!(out.stdout.contains("an empty body"), "{}", out.stdout);
    assert!(
        out.stdout.contains("HTTP 429 (rate limited)") && out.stdout.contains("as the API asked"),
        "{}",
        out.stdout
    );

    // `ci status` says why an empty state is not an answer, and what a failed check said.
    let empty = repo.berth(&["ci", "status", "--provider", "gitea", "--url", &Forge::start("gitea").base]);
    assert_eq!(empty.code, 4, "{}{}", empty.stdout, empty.stderr);
    assert!(empty.stdout.contains("pending: no CI has reported yet"), "{}", empty.stdout);
    gitea.status(&commit, "ci/test", "failure", "3 tests failed", "https://ci.example.com/builds/7");
    let red = repo.berth(&["ci", "status", "--provider", "gitea", "--url", &gitea.base]);
    assert_eq!(red.code, 1);
    assert!(
        red.stdout.contains("failure: `ci/test` is failure: 3 tests failed (https://ci.example.com/builds/7)"),
        "{}",
        red.stdout
    );
}

#[test]
fn gitlab_gates_on_its_pipeline_and_a_timeout_is_not_a_failure_of_the_code() {
    let lab = Forge::start("gitlab");
    let f = Fixture::of(&["gitlab"], |n| {
        gated_repo(
            &format!("{{ provider = \"gitlab\", url = \"{}\", timeout = \"3s\", report = true }}", lab.base),
            &n[0],
            "",
        )
    });
    let (s, repo) = (f.stack(), &f.repo);
    let commit = head(repo);
    // A job allowed to fail, and a pipeline job still running when the gate gives up.
    lab.status(&commit, "build", "running", "", "");
    let out = repo.berth(&["apply"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(containers(&s).is_empty());
    let posts = berth_posts(&lab, &format!("berth/{s}"));
    let last = posts.last().unwrap_or_else(|| panic!("no status posted: {:?}", lab.posts()));
    assert_eq!(last.0, "canceled", "a gate timeout was reported as a failure of the code: {posts:?}");
    assert!(last.1.contains("CI still pending"), "{posts:?}");
    assert!(lab.posts()[0].0.starts_with("/api/v4/projects/me%2Fstacks/statuses/"), "{:?}", lab.posts());

    lab.status(&commit, "build", "success", "", "");
    lab.status(&commit, "lint", "failed", "", "");
    lab.data.lock().unwrap().statuses.get_mut(&commit).unwrap().last_mut().unwrap()["allow_failure"] =
        Value::Bool(true);
    // A gate that gave up blocked the deploy without marking the config as failed: apply retries it.
    let out = repo.berth(&["apply"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    container(&s, "app");
    let posts = berth_posts(&lab, &format!("berth/{s}"));
    assert_eq!(posts.last().unwrap().0, "success", "{posts:?}");
    assert!(posts.iter().any(|p| p.0 == "running"), "GitLab's pending is `running`: {posts:?}");
}

#[test]
fn a_deploy_waiting_for_ci_shows_on_the_dashboard_until_ci_is_green() {
    let gitea = Forge::start("gitea");
    let ci = format!("{{ provider = \"gitea\", url = \"{}\", repo = \"me/stacks\", timeout = \"2m\" }}", gitea.base);
    let f = Fixture::of(&["waits"], |n| gated_repo(&ci, &n[0], "[dashboard]\nread = \"public\"\n"));
    let (s, repo) = (f.stack(), &f.repo);
    let commit = head(repo);
    gitea.status(&commit, "ci/test", "pending", "running the tests", "");
    let server = server::Server::start(repo);
    // The first sync queues the deploy; it waits for CI, and the overview says so.
    wait_for("the deploy to wait for CI", std::time::Duration::from_secs(60), || {
        server.deploys().iter().any(|d| d["stack"] == s.as_str() && d["phase"] == "ci").then_some(())
    });
    let page = || server.http.get(server.url("/")).send().unwrap().text().unwrap();
    let html = page();
    assert!(html.contains(&format!("{s} waits for CI")), "{html}");
    gitea.status(&commit, "ci/test", "success", "all green", "");
    let done = server.settle();
    let mine: Vec<_> = done.iter().filter(|d| d["stack"] == s.as_str()).collect();
    assert_eq!(mine[0]["status"], "succeeded", "{mine:?}");
    container(&s, "app");
    assert!(!page().contains("waits for CI"), "the banner stays after CI went green");
}
