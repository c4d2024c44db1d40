//! PR plans through a real `berth serve`, real git and the real engine: a pull (merge) request
//! event makes one comment (edited in place on the next push) and a `berth/plan` status on a
//! fake forge that keeps them like the real APIs (GitHub, Gitea, GitLab).

use std::time::Duration;

use crate::common::forge::Forge;
use crate::common::server::Server;
use crate::common::*;
use serde_json::{Value, json};

/// A repository whose `[[repo]]` follows itself with PR plans reported to `forge`; two stacks
/// (`web` with services `app` and `side`, and `other`) deployed on main by the first sync.
struct Setup {
    repo: Repo,
    forge: Forge,
    web: String,
    other: String,
    _cleanup: Cleanup,
}

/// The forge's project: `owner/name` (GitLab: its numeric id).
fn project(kind: &str) -> &'static str {
    if kind == "gitlab" { "42" } else { "me/stacks" }
}

fn web_compose(color: &str) -> String {
    format!(
        "services:\n  app:\n    image: {IMAGE}\n    command: [\"sleep\", \"2147483647\"]\n    stop_signal: SIGKILL\n    \
         environment:\n      COLOR: {color}\n      DB_PASSWORD: ${{DB_PASSWORD}}\n  side:\n    image: {IMAGE}\n    \
         command: [\"sleep\", \"2147483647\"]\n    stop_signal: SIGKILL\n"
    )
}

/// `berth.toml`: the repo entry, then the stacks; `secret` is the file `DB_PASSWORD` is read from.
fn config(s: &Setup, extra: &str, secret: &str, hook: &str) -> String {
    format!(
        "[[repo]]\nname = \"stacks\"\nurl = \"{}\"\nbranch = \"main\"\npoll = \"0\"\npr_plans = true\n\
         webhook_secret = {{ env = \"BERTH_WEBHOOK_SECRET\" }}\nforge = {{ provider = \"{}\", url = \"{}\" }}\n{extra}\
         [defaults]\nverify = {{ stable = \"1s\" }}\n\
         [[stack]]\nname = \"{}\"\npath = \"stacks/web\"\nenv = {{ DB_PASSWORD = {{ file = \"{secret}\" }} }}\n\
         pre_deploy = [\"touch\", \"{hook}\"]\n\
         [[stack]]\nname = \"{}\"\npath = \"stacks/other\"\n",
        s.repo.path().display(),
        s.forge.kind,
        s.forge.base,
        s.web,
        s.other,
    )
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        let f = Files { dir: tempfile::tempdir().unwrap() };
        std::fs::write(f.path("old"), OLD_SECRET).unwrap();
        std::fs::write(f.path("new"), NEW_SECRET).unwrap();
        std::fs::write(f.path("host.env"), format!("HOST_SECRET={OLD_SECRET}\n")).unwrap();
        f
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

const OLD_SECRET: &str = "pr-old-secret-Kq81x";
const NEW_SECRET: &str = "pr-new-secret-Kq81x";
const HOST_TOKEN: &str = "pr-host-token-Kq81x";

fn setup(kind: &'static str, extra: &str, files: &Files) -> (Setup, Server) {
    docker();
    let (web, other) = (unique("prweb"), unique("prother"));
    let s = Setup {
        repo: Repo::new(),
        forge: Forge::start(kind),
        _cleanup: Cleanup(vec![web.clone(), other.clone()]),
        web,
        other,
    };
    s.repo.write("berth.toml", &config(&s, extra, &files.path("old"), &files.path("hook-main")));
    s.repo.write("stacks/web/compose.yaml", &web_compose("red"));
    s.repo.write("stacks/other/compose.yaml", &sleeper(&["x"]));
    s.repo.commit("main");
    // berth's own environment, which a fork's compose file must not be able to read.
    let server = Server::start_env(&s.repo, &[("PR_HOST_TOKEN", HOST_TOKEN)]);
    server.settle();
    (s, server)
}

/// Commit `change` on branch `feature` (created from main the first time) and publish it where
/// the forge keeps the request's head; main stays checked out.
fn push_pr(s: &Setup, number: u64, change: impl FnOnce(&Repo)) -> String {
    let exists = s.repo.git(&["branch", "--list", "feature"]);
    s.repo.git(if exists.is_empty() { &["checkout", "-q", "-b", "feature"] } else { &["checkout", "-q", "feature"] });
    change(&s.repo);
    let head = s.repo.commit("pr change");
    s.repo.git(&["checkout", "-q", "main"]);
    let head_ref = if s.forge.kind == "gitlab" {
        format!("refs/merge-requests/{number}/head")
    } else {
        format!("refs/pull/{number}/head")
    };
    s.repo.git(&["update-ref", &head_ref, &head]);
    head
}

/// The forge's event for request `number` at `head` (`fork`: from another repository).
fn event(kind: &str, number: u64, head: &str, action: &str, fork: bool) -> (&'static str, Value) {
    if kind == "gitlab" {
        let body = json!({
            "object_kind": "merge_request",
            "project": { "id": 42, "path_with_namespace": "me/stacks" },
            "object_attributes": { "iid": number, "action": action, "source_project_id": if fork { 77 } else { 42 },
                "target_project_id": 42, "source_branch": "feature", "target_branch": "main",
                "last_commit": { "id": head }, "url": format!("https://gitlab.example.com/me/stacks/-/merge_requests/{number}") },
        });
        return ("Merge Request Hook", body);
    }
    let head_repo = if fork { "stranger/stacks" } else { "me/stacks" };
    let body = json!({
        "action": action, "number": number,
        "pull_request": { "number": number, "html_url": format!("https://git.example.com/me/stacks/pulls/{number}"),
            "head": { "sha": head, "ref": "feature", "repo": { "full_name": head_repo } },
            "base": { "sha": head, "ref": "main", "repo": { "full_name": "me/stacks" } } },
        "repository": { "full_name": "me/stacks" },
    });
    ("pull_request", body)
}

/// Deliver the event and wait for the plan; returns the plan's outcome.
fn plan(s: &Setup, server: &Server, number: u64, head: &str, action: &str, fork: bool) -> Value {
    let kind = s.forge.kind;
    let (name, body) = event(kind, number, head, action, fork);
    let (code, answer) = server.deliver(kind, name, &body, "?wait=true");
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["status"], "planned", "{answer}");
    answer["plan"].clone()
}

/// The `berth/plan` statuses posted for `commit`, in order: (state, description).
fn plan_statuses(forge: &Forge, commit: &str) -> Vec<(String, String)> {
    let key = if forge.kind == "gitlab" { "name" } else { "context" };
    forge
        .posts()
        .iter()
        .filter(|(p, v)| p.ends_with(commit) && v[key] == "berth/plan")
        .map(|(_, v)| {
            (v["state"].as_str().unwrap_or("").to_string(), v["description"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

/// The lines a diff adds and removes (headers left out).
fn changed_lines(diff: &str) -> Vec<&str> {
    diff.lines()
        .filter(|l| (l.starts_with('+') || l.starts_with('-')) && !l.starts_with("+++") && !l.starts_with("---"))
        .collect()
}

fn edit_in_place(kind: &'static str) {
    let files = Files::new();
    let (s, server) = setup(kind, "", &files);
    let list = s.forge.comments_path(project(kind), 7);
    // Others talked first: berth's comment is found again past the first page.
    for i in 0..60 {
        s.forge.seed_comment(&list, &format!("looks good {i}"));
    }
    let head = push_pr(&s, 7, |r| {
        r.write("stacks/web/compose.yaml", &web_compose("blue"));
    });
    let out = plan(&s, &server, 7, &head, "opened", false);
    assert_eq!(out["state"], "success", "{out}");
    assert_eq!(out["comment"]["how"], "created", "{out}");
    let ours: Vec<(u64, String)> =
        s.forge.comments(&list).into_iter().filter(|(_, b)| b.starts_with("<!-- berth-plan -->")).collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    let (id, body) = &ours[0];
    assert!(body.contains(&format!("| {} | local | deploy | `app` |", s.web)), "only app is recreated:\n{body}");
    assert!(!body.contains(&format!("| {} |", s.other)), "an untouched stack is not listed:\n{body}");
    let diff = body.split("```diff\n").nth(1).and_then(|d| d.split("\n```").next()).unwrap_or("");
    assert_eq!(changed_lines(diff), vec!["-    \"COLOR\": \"red\",", "+    \"COLOR\": \"blue\","], "{body}");
    let pending = if kind == "gitlab" { "running" } else { "pending" };
    assert_eq!(
        plan_statuses(&s.forge, &head),
        vec![
            (pending.to_string(), "planning".to_string()),
            ("success".to_string(), format!("1 stack change: {}", s.web)),
        ]
    );

    // A second push edits the same comment: PATCH (GitLab: PUT), never a second POST.
    let second = push_pr(&s, 7, |r| {
        r.write("stacks/web/compose.yaml", &web_compose("green"));
    });
    let out = plan(&s, &server, 7, &second, "synchronize", false);
    assert_eq!(out["comment"]["how"], "edited", "{out}");
    let hits = s.forge.hits();
    let posts = hits.iter().filter(|h| *h == &format!("POST {list}")).count();
    assert_eq!(posts, 1, "one comment created: {hits:#?}");
    let edit = if kind == "gitlab" { "PUT" } else { "PATCH" };
    let edited = format!("{edit} {}", s.forge.comment_path(project(kind), 7, *id));
    assert_eq!(hits.iter().filter(|h| **h == edited).count(), 1, "{hits:#?}");
    let body = s.forge.comments(&list).into_iter().find(|(i, _)| i == id).map(|(_, b)| b).unwrap_or_default();
    assert!(body.contains("+    \"COLOR\": \"green\","), "{body}");
    assert!(body.contains(&second[..12]), "the comment names the new head:\n{body}");
    // Nothing was deployed by a plan: main's config still runs.
    let env = inspect(&container(&s.web, "app"), "{{range .Config.Env}}{{println .}}{{end}}");
    assert!(env.contains("COLOR=red"), "a plan deployed: {env}");
}

#[test]
fn gitea_a_pull_request_gets_one_comment_edited_on_every_push() {
    edit_in_place("gitea");
}

#[test]
fn github_a_pull_request_gets_one_comment_edited_on_every_push() {
    edit_in_place("github");
}

#[test]
fn gitlab_a_merge_request_gets_one_note_edited_on_every_push() {
    edit_in_place("gitlab");
}

#[test]
fn a_changed_secret_shows_as_changed_and_its_value_nowhere() {
    let files = Files::new();
    let (s, server) = setup("gitea", "", &files);
    let head = push_pr(&s, 3, |r| {
        r.write("berth.toml", &config(&s, "", &files.path("new"), &files.path("hook-main")));
    });
    let out = plan(&s, &server, 3, &head, "opened", false);
    assert_eq!(out["state"], "success", "{out}");
    let body = s.forge.comments(&s.forge.comments_path("me/stacks", 3)).pop().map(|(_, b)| b).unwrap_or_default();
    assert!(body.contains("(secret changed)"), "{body}");
    assert!(body.contains(&format!("| {} | local | deploy | `app` |", s.web)), "{body}");
    let hits = s.forge.hits().join("\n");
    let posts: Vec<String> = s.forge.posts().iter().map(|(p, v)| format!("{p} {v}")).collect();
    let log = std::fs::read_to_string(s.repo.state.path().join("serve.log")).unwrap_or_default();
    assert_no_leak(
        &[("comment", body), ("answer", out.to_string()), ("forge", hits), ("posts", posts.join("\n")), ("log", log)],
        s.repo.state.path(),
        &[OLD_SECRET, NEW_SECRET],
    );
}

#[test]
fn an_invalid_compose_file_or_config_fails_the_plan_status_with_the_error() {
    let files = Files::new();
    let (s, server) = setup("github", "", &files);
    let head = push_pr(&s, 4, |r| {
        r.write("stacks/web/compose.yaml", "services:\n  app:\n    image: [not, an, image]\n");
    });
    let out = plan(&s, &server, 4, &head, "opened", false);
    assert_eq!(out["state"], "failure", "{out}");
    let statuses = plan_statuses(&s.forge, &head);
    let (state, description) = statuses.last().cloned().unwrap_or_default();
    assert_eq!(state, "failure", "{statuses:?}");
    assert!(
        description.contains(&format!("stack {}", s.web)) && description.contains("compose config"),
        "{description}"
    );
    let body = s.forge.comments(&s.forge.comments_path("me/stacks", 4)).pop().map(|(_, b)| b).unwrap_or_default();
    assert!(body.contains("❌ error") && body.contains("image"), "{body}");

    let bad = push_pr(&s, 4, |r| {
        r.write(
            "berth.toml",
            &format!("{}\nbogus_key = 1\n", config(&s, "", &files.path("old"), &files.path("hook-main"))),
        );
    });
    let out = plan(&s, &server, 4, &bad, "synchronize", false);
    assert_eq!(out["state"], "failure", "{out}");
    let (state, description) = plan_statuses(&s.forge, &bad).last().cloned().unwrap_or_default();
    assert_eq!(state, "failure");
    assert!(description.starts_with("berth.toml is invalid:") && description.contains("bogus_key"), "{description}");
}

#[test]
fn a_fork_pull_request_runs_no_hook_and_reads_no_secret() {
    let files = Files::new();
    let (s, server) = setup("gitea", "", &files);
    let hook = files.path("hook-fork");
    let head = push_pr(&s, 9, |r| {
        r.write("berth.toml", &config(&s, "", &files.path("new"), &hook));
        r.write(
            "stacks/web/compose.yaml",
            &web_compose("blue").replace("COLOR: blue", "COLOR: blue\n      LEAK: x${PR_HOST_TOKEN}x"),
        );
        // Compose would inline a host file's variables into the model.
        let other = format!("{}    env_file: [{}]\n", sleeper(&["x"]), files.path("host.env"));
        r.write("stacks/other/compose.yaml", &other);
    });
    let out = plan(&s, &server, 9, &head, "opened", true);
    // The stack whose compose reads a host file is refused, which fails the plan.
    assert_eq!(out["state"], "failure", "{out}");
    assert!(
        out["description"].as_str().unwrap_or("").starts_with(&format!("stack {}: not rendered", s.other)),
        "{out}"
    );
    assert_eq!(out["fork"], true);
    let body = s.forge.comments(&s.forge.comments_path("me/stacks", 9)).pop().map(|(_, b)| b).unwrap_or_default();
    assert!(body.contains("(secret reference)"), "{body}");
    assert!(body.contains("+    \"COLOR\": \"blue\","), "{body}");
    assert!(body.contains("+    \"LEAK\": \"xx\""), "berth's environment is not interpolated:\n{body}");
    assert!(body.contains("read files outside the repository"), "{body}");
    assert!(!std::path::Path::new(&hook).exists(), "a fork's hook ran");
    let log = std::fs::read_to_string(s.repo.state.path().join("serve.log")).unwrap_or_default();
    assert_no_leak(&[("comment", body), ("log", log)], s.repo.state.path(), &[OLD_SECRET, NEW_SECRET, HOST_TOKEN]);
    // Nothing deployed: the stacks ran once, at the first sync.
    assert!(server.deploys().iter().all(|d| d["commit"] != head.as_str()), "a plan deployed");
}

#[test]
fn same_repo_only_ignores_forks_and_closed_requests_are_not_planned() {
    let files = Files::new();
    let (s, server) = setup("github", "pr_plans_same_repo = true\n", &files);
    let head = push_pr(&s, 5, |r| {
        r.write("stacks/web/compose.yaml", &web_compose("blue"));
    });
    for (action, fork) in [("opened", true), ("closed", false)] {
        let (name, body) = event("github", 5, &head, action, fork);
        let (code, answer) = server.deliver("github", name, &body, "?wait=true");
        assert_eq!((code, answer["status"].as_str()), (202, Some("ignored")), "{answer}");
    }
    // A request into another branch is not planned either.
    let (name, mut body) = event("github", 5, &head, "opened", false);
    body["pull_request"]["base"]["ref"] = json!("develop");
    let (_, answer) = server.deliver("github", name, &body, "?wait=true");
    assert_eq!(answer["status"], "ignored", "{answer}");
    assert!(s.forge.hits().is_empty(), "{:?}", s.forge.hits());
    // Without ?wait the plan runs in the background and its comment appears.
    let (name, body) = event("github", 5, &head, "opened", false);
    let (code, answer) = server.deliver("github", name, &body, "");
    assert_eq!((code, answer["status"].as_str()), (202, Some("planning")), "{answer}");
    let list = s.forge.comments_path("me/stacks", 5);
    wait_for("the plan's comment", Duration::from_secs(60), || s.forge.comments(&list).pop());
}

#[test]
fn a_plan_longer_than_a_comment_links_to_its_full_page() {
    let files = Files::new();
    let public = "http://berth.example.com/ops";
    let (s, server) = setup("github", &format!("[dashboard]\nread = \"public\"\npublic_url = \"{public}\"\n"), &files);
    let big = "y".repeat(70_000);
    let head = push_pr(&s, 11, |r| {
        r.write(
            "stacks/web/compose.yaml",
            &web_compose("blue").replace("COLOR: blue", &format!("COLOR: blue\n      BIG: {big}")),
        );
    });
    let out = plan(&s, &server, 11, &head, "opened", false);
    assert_eq!(out["state"], "success", "{out}");
    let body = s.forge.comments(&s.forge.comments_path("me/stacks", 11)).pop().map(|(_, b)| b).unwrap_or_default();
    assert!(body.len() <= 65_536, "{}", body.len());
    assert!(body.contains(&format!("| {} | local | deploy | `app` |", s.web)), "{body}");
    assert!(body.contains(&format!("[the full plan]({public}/plans/stacks/11)")), "{body}");
    // The page has it all.
    let page = server.http.get(server.url("/plans/stacks/11")).send().unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let text = page.text().unwrap();
    assert!(text.contains(&big) && text.contains("COLOR"), "the full plan is on the page");
}

#[test]
fn ci_plan_comments_from_ci_and_edits_its_comment_on_the_next_run() {
    docker();
    let forge = Forge::start("gitea");
    let repo = Repo::new();
    repo.write("stacks/web/compose.yaml", &colored("red"));
    repo.commit("main");
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("stacks/web/compose.yaml", &colored("blue"));
    let first = repo.commit("blue");
    let args = ["ci", "plan", "--provider", "gitea", "--url", &forge.base, "--ci-repo", "me/stacks", "--pr", "12"];
    let env = [("BERTH_CI_TOKEN", "ci-token-Kq81x")];
    let run = repo.berth_with(&args, &env);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("| web | local | deploy | `app` |"), "{}", run.stdout);
    repo.write("stacks/web/compose.yaml", "services:\n  app:\n    image: [broken]\n");
    let second = repo.commit("broken");
    let run = repo.berth_with(&args, &env);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let list = forge.comments_path("me/stacks", 12);
    let comments = forge.comments(&list);
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(comments[0].1.contains("❌ error"), "{}", comments[0].1);
    let hits = forge.hits();
    assert_eq!(
        hits.iter()
            .filter(|h| h.starts_with(&format!("PATCH {}", forge.comment_path("me/stacks", 12, comments[0].0))))
            .count(),
        1,
        "{hits:#?}"
    );
    assert_eq!(plan_statuses(&forge, &first).last().map(|s| s.0.as_str()), Some("success"));
    assert_eq!(plan_statuses(&forge, &second).last().map(|s| s.0.as_str()), Some("failure"));
}

#[test]
fn a_pull_request_whose_fetch_failed_is_planned_when_the_forge_redelivers_it() {
    let files = Files::new();
    let (s, server) = setup("github", "", &files);
    let head = push_pr(&s, 9, |r| {
        r.write("stacks/web/compose.yaml", &web_compose("blue"));
    });
    let (name, body) = event("github", 9, &head, "opened", false);
    let delivery = [("X-GitHub-Delivery", "pr-redelivery-1")];
    // The repository cannot be fetched: berth cannot plan, and says so.
    let moved = s.repo.path().with_extension("away");
    std::fs::rename(s.repo.path(), &moved).unwrap();
    let (code, failed) = server.deliver_with("github", name, &body, "?wait=true", &delivery);
    std::fs::rename(&moved, s.repo.path()).unwrap();
    assert_eq!((code, failed["plan"]["state"].as_str()), (200, Some("error")), "{failed}");
    // The forge redelivers the same event: it is planned, not ignored as a replay.
    let (code, planned) = server.deliver_with("github", name, &body, "?wait=true", &delivery);
    assert_eq!((code, planned["plan"]["state"].as_str()), (200, Some("success")), "{planned}");
    // Once handled, the same delivery is a replay.
    let (_, again) = server.deliver_with("github", name, &body, "?wait=true", &delivery);
    assert!(again.to_string().contains("already received"), "{again}");
}

#[test]
fn a_comment_whose_answer_was_lost_is_found_and_edited_not_posted_twice() {
    let files = Files::new();
    let (s, server) = setup("gitea", "", &files);
    let list = s.forge.comments_path(project("gitea"), 9);
    // The forge makes the comment but its answer is lost (a proxy's 502).
    s.forge.fault(crate::common::forge::Fault::LostCreate, 1);
    let head = push_pr(&s, 9, |r| {
        r.write("stacks/web/compose.yaml", &web_compose("blue"));
    });
    let out = plan(&s, &server, 9, &head, "opened", false);
    assert_eq!((out["state"].as_str(), out["comment"]["how"].as_str()), (Some("success"), Some("edited")), "{out}");
    let ours: Vec<(u64, String)> =
        s.forge.comments(&list).into_iter().filter(|(_, b)| b.starts_with("<!-- berth-plan -->")).collect();
    assert_eq!(ours.len(), 1, "one comment, not two: {ours:?}");
    let posts = s.forge.hits().iter().filter(|h| **h == format!("POST {list}")).count();
    assert_eq!(posts, 1, "{:#?}", s.forge.hits());
}

#[test]
fn a_changed_bind_mounted_file_shows_its_own_diff() {
    let files = Files::new();
    let (s, server) = setup("github", "", &files);
    // main mounts a config file into `other`, and berth runs it.
    let before = s.repo.git(&["rev-parse", "HEAD"]).trim().to_string();
    s.repo.write(
        "stacks/other/compose.yaml",
        &format!(
            "services:\n  x:\n    image: {IMAGE}\n    command: [\"sleep\", \"2147483647\"]\n    stop_signal: SIGKILL\n    \
             volumes:\n      - ./app.conf:/etc/app.conf:ro\n"
        ),
    );
    s.repo.write("stacks/other/app.conf", "listen 80\nworkers 2\n");
    let main = s.repo.commit("a config file");
    let (code, body) = server.push(&before, &main, "?wait=true");
    assert_eq!(code, 200, "{body}");
    // The request changes one line of that file, nothing else.
    let head = push_pr(&s, 11, |r| {
        r.write("stacks/other/app.conf", "listen 80\nworkers 4\n");
    });
    let out = plan(&s, &server, 11, &head, "opened", false);
    assert_eq!(out["state"], "success", "{out}");
    let list = s.forge.comments_path(project("github"), 11);
    let body = s
        .forge
        .comments(&list)
        .into_iter()
        .map(|(_, b)| b)
        .find(|b| b.starts_with("<!-- berth-plan -->"))
        .unwrap_or_default();
    assert!(body.contains(&format!("| {} | local | deploy | `x` |", s.other)), "{body}");
    assert!(!body.contains(&format!("| {} |", s.web)), "an untouched stack is listed:\n{body}");
    assert!(body.contains("stacks/other/app.conf"), "{body}");
    assert!(body.contains("-workers 2") && body.contains("+workers 4") && !body.contains("-listen 80"), "{body}");
}
