//! `berth diff` on a real git repository with the real compose: per service what a change
//! recreates, the rendered-config diff, bind-mounted files' diffs, and secrets never shown.

use std::time::Duration;

use crate::common::server::Server;
use crate::common::*;

const OLD_SECRET: &str = "planted-old-Zq9xw";
const NEW_SECRET: &str = "planted-new-Zq9xw";

fn compose(tag: &str, cache: bool) -> String {
    let mut s = format!(
        "services:\n  web:\n    image: example/web:{tag}\n    environment:\n      LOG_LEVEL: ${{LOG_LEVEL}}\n      \
         DB_PASSWORD: ${{DB_PASSWORD}}\n    volumes:\n      - ./nginx.conf:/etc/nginx/nginx.conf:ro\n  \
         db:\n    image: example/db:16\n"
    );
    if cache {
        s.push_str("  cache:\n    image: example/cache:7\n");
    }
    s
}

fn berth_toml(level: &str, secret: &str) -> String {
    format!("[[stack]]\nname = \"app\"\nenv = {{ LOG_LEVEL = \"{level}\", DB_PASSWORD = \"{secret}\" }}\n")
}

/// main: the base; branch `feature`: one commit changing an image tag, a variable, a secret-named
/// variable, a bind-mounted file, and adding a service. Another stack stays as it is.
fn repo() -> (Repo, String, String) {
    let repo = Repo::new();
    repo.write("berth.toml", &berth_toml("info", OLD_SECRET));
    repo.write("stacks/app/compose.yaml", &compose("1.0", false));
    repo.write("stacks/app/nginx.conf", "worker_processes 1;\nevents {}\n");
    repo.write("stacks/other/compose.yaml", "services:\n  x:\n    image: example/x:1\n");
    let base = repo.commit("base");
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("berth.toml", &berth_toml("debug", NEW_SECRET));
    repo.write("stacks/app/compose.yaml", &compose("1.1", true));
    repo.write("stacks/app/nginx.conf", "worker_processes 2;\nevents {}\n");
    let head = repo.commit("change");
    (repo, base, head)
}

fn no_secret(text: &str) {
    for s in [OLD_SECRET, NEW_SECRET, "planted-"] {
        assert!(!text.contains(s), "a secret value leaked:\n{text}");
    }
}

#[test]
fn diff_shows_services_recreated_and_their_config_diff_without_secrets() {
    docker();
    let (repo, base, head) = repo();
    // Default base: the merge base with `main`.
    let r = repo.berth(&["diff"]).ok();
    let out = r.stdout.clone();
    no_secret(&format!("{out}{}", r.stderr));
    assert!(out.starts_with(&format!("diff {} → {}\n", &base[..10], &head[..10])), "{out}");
    assert!(out.contains("stack app on local: 1 recreate, 1 added, 1 unchanged\n"), "{out}");
    assert!(!out.contains("stack other"), "an untouched stack is not listed:\n{out}");
    assert!(
        out.contains(
            "  ~ web    recreate  image example/web:1.0 → example/web:1.1; bind-mounted files changed: \
             stacks/app/nginx.conf\n"
        ),
        "{out}"
    );
    assert!(out.contains("  + cache  added\n") && out.contains("  = db     unchanged\n"), "{out}");
    for line in [
        "    -    \"DB_PASSWORD\": \"(secret changed)\",",
        "    +    \"DB_PASSWORD\": \"(secret changed)\",",
        "    -    \"LOG_LEVEL\": \"info\"",
        "    +    \"LOG_LEVEL\": \"debug\"",
        "    -  \"image\": \"example/web:1.0\",",
        "    +  \"image\": \"example/web:1.1\",",
        "  bind-mounted file stacks/app/nginx.conf:",
        "    -worker_processes 1;",
        "    +worker_processes 2;",
    ] {
        assert!(out.lines().any(|l| l == line), "missing {line:?} in:\n{out}");
    }
    assert!(!out.contains("\x1b["), "plain when stdout is no terminal");

    let v = repo.json(&["diff", "--base", &base, "--head", &head, "--json"]);
    no_secret(&v.to_string());
    assert_eq!((v["base"].as_str(), v["head"].as_str()), (Some(base.as_str()), Some(head.as_str())));
    let stacks = v["stacks"].as_array().unwrap();
    assert_eq!(stacks.len(), 1, "{v:#}");
    let app = &stacks[0];
    assert_eq!((app["name"].as_str(), app["state"].as_str()), (Some("app"), Some("changed")));
    let status: Vec<(&str, &str)> = app["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(status, [("cache", "added"), ("db", "unchanged"), ("web", "recreate")]);
    let web = &app["services"][2];
    assert_eq!(web["image"], serde_json::json!(["example/web:1.0", "example/web:1.1"]));
    assert_eq!(web["bind_files"], serde_json::json!(["stacks/app/nginx.conf"]));
    assert!(web["diff"].as_str().unwrap().contains("(secret changed)"));
    assert_eq!(app["files"][0]["path"], "stacks/app/nginx.conf");
    assert!(app["files"][0]["diff"].as_str().unwrap().contains("+worker_processes 2;"));

    // Named stacks only; nothing between equal commits.
    let r = repo.json(&["diff", "--base", &base, "other", "--json"]);
    assert_eq!(r["stacks"], serde_json::json!([]));
    let r = repo.berth(&["diff", "--base", &head]).ok();
    assert!(r.stdout.ends_with("no stack changed\n"), "{}", r.stdout);
    let r = repo.berth(&["diff", "--base", &base, "nope"]);
    assert_eq!(r.code, 2, "{r:?}");
    // The scratch work trees are gone.
    let tmp = repo.state.path().join("tmp");
    assert!(std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0) == 0, "{:?}", walk(&tmp));
}

#[test]
fn an_invalid_compose_file_on_the_head_is_an_error_naming_the_stack() {
    docker();
    let (repo, base, _) = repo();
    repo.write("stacks/app/compose.yaml", "services:\n  web:\n    image: [\n");
    repo.commit("broken");
    let r = repo.berth(&["diff", "--base", &base]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("stack app on local: error"), "{}", r.stdout);
    assert!(r.stdout.contains("compose config at"), "{}", r.stdout);
    no_secret(&format!("{}{}", r.stdout, r.stderr));
}

#[test]
fn standalone_compose_renders_the_same_classification() {
    docker();
    need("docker-compose", "docker-compose");
    let (repo, base, _) = repo();
    let r = repo.berth_with(&["diff", "--base", &base, "--json"], &[("BERTH_COMPOSE", "standalone")]);
    assert_eq!(r.code, 0, "{r:?}");
    no_secret(&format!("{}{}", r.stdout, r.stderr));
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let status: Vec<&str> =
        v["stacks"][0]["services"].as_array().unwrap().iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert_eq!(status, ["added", "unchanged", "recreate"], "{v:#}");
    assert_eq!(v["stacks"][0]["services"][2]["bind_files"], serde_json::json!(["stacks/app/nginx.conf"]));
}

/// `app` reads a level and a secret; `side` reads neither.
fn two_services(image: &str) -> String {
    format!(
        "services:\n  app:\n    image: {image}\n    command: [\"sleep\", \"2147483647\"]\n    stop_signal: SIGKILL\n    \
         environment:\n      LEVEL: ${{LEVEL}}\n      DB_PASSWORD: ${{DB_PASSWORD}}\n  \
         side:\n    image: {image}\n    command: [\"sleep\", \"2147483647\"]\n    stop_signal: SIGKILL\n"
    )
}

/// The lines a unified diff removes and adds (not its headers), the CLI's indent taken off.
fn changed_lines(diff: &str) -> Vec<&str> {
    diff.lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .filter(|l| (l.starts_with('-') || l.starts_with('+')) && !l.starts_with("---"))
        .collect()
}

/// HTML text back to plain text (what askama escapes).
fn unescape(s: &str) -> String {
    s.replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&gt;", ">")
        .replace("&lt;", "<")
        .replace("&amp;", "&")
}

#[test]
fn plan_diff_the_deploy_page_and_notifications_tell_the_same_change() {
    let f = Fixture::bare(&["pdweb", "pdother"]);
    let (web, other) = (f.stacks[0].clone(), f.stacks[1].clone());
    let secrets = tempfile::tempdir().unwrap();
    let planted = format!("planted-{}-pd", std::process::id());
    let file = secrets.path().join("db");
    std::fs::write(&file, &planted).unwrap();
    let slack = crate::common::http::Api::start(Box::new(|_, _| (200, "{}".into())));
    let toml = |level: &str| {
        format!(
            "[defaults]\nverify = {{ timeout = \"60s\", stable = \"1s\" }}\n\
             [[notify]]\nkind = \"slack\"\nurl = \"{}/slack\"\nevents = [\"succeeded\"]\n\
             [[stack]]\nname = \"{web}\"\nenv = {{ LEVEL = \"{level}\", DB_PASSWORD = {{ file = \"{}\" }} }}\n",
            slack.base,
            file.display()
        )
    };
    let repo = &f.repo;
    repo.write("berth.toml", &toml("info"));
    repo.stack(&web, &two_services(IMAGE));
    repo.stack(&other, &sleeper(&["x"]));
    let first = repo.commit("two stacks");
    // Nothing deployed yet: nothing to compare with, and compose is not needed for that.
    let r = repo.berth(&["plan", "--diff"]).ok();
    let want = format!("stack {web}: first deploy, no earlier successful deploy to compare with\n");
    assert!(r.stdout.contains(&want) && r.stdout.contains("2 to deploy"), "{}", r.stdout);
    repo.berth(&["apply"]).ok();
    assert!(inspect(&container(&web, "app"), "{{json .Config.Env}}").contains(&planted), "the secret is deployed");

    repo.write("berth.toml", &toml("debug"));
    let second = repo.commit("debug level");
    // The plan, then what each deploy changes since the stack's last success.
    let r = repo.berth(&["plan", "--diff"]).ok();
    let out = r.stdout.clone();
    no_secret_in(&format!("{out}{}", r.stderr), &planted);
    assert!(out.contains("1 to deploy, 1 unchanged"), "{out}");
    let title = format!("stack {web} on local since {}: 1 recreate, 1 unchanged\n", &first[..10]);
    assert!(out.contains(&title), "{out}");
    assert!(!out.contains(&format!("stack {other}")), "a stack the plan skips has no diff:\n{out}");
    assert!(out.contains("  ~ app   recreate\n") && out.contains("  = side  unchanged\n"), "{out}");
    let after = &out[out.find(&title).unwrap()..];
    assert_eq!(changed_lines(after), ["-    \"LEVEL\": \"info\"", "+    \"LEVEL\": \"debug\""], "{out}");
    assert!(after.contains("\"DB_PASSWORD\": \"(secret unchanged)\""), "{out}");

    let v = repo.json(&["plan", "--diff", "--json"]);
    no_secret_in(&v.to_string(), &planted);
    let d = &v["diffs"][0];
    assert_eq!((d["name"].as_str(), d["since"].as_str()), (Some(web.as_str()), Some(first.as_str())), "{v:#}");
    assert_eq!(d["summary"], "recreates app");
    let app_diff = d["services"][0]["diff"].as_str().unwrap().to_string();
    assert_eq!(changed_lines(&app_diff), ["-    \"LEVEL\": \"info\"", "+    \"LEVEL\": \"debug\""]);

    // `berth serve` deploys the second commit; its page shows the same diff.
    let server = Server::start(repo);
    let deploys = server.settle();
    let id = deploys
        .iter()
        .find(|d| d["stack"] == web.as_str() && d["commit"] == second.as_str() && d["status"] == "succeeded")
        .unwrap_or_else(|| panic!("no deploy of the second commit: {deploys:?}"))["id"]
        .as_i64()
        .unwrap();
    let http = crate::common::web::client(None);
    let cookie = crate::common::web::login(&http, &server.base, &server.key, &server.secret);
    let (status, html, _) =
        crate::common::web::get(&http, &server.url(&format!("/deploys/{id}")), &[("Cookie", &cookie)]);
    assert_eq!(status, 200, "{html}");
    no_secret_in(&html, &planted);
    let section = unescape(crate::common::web::card(&html, "service-diff"));
    assert!(
        section.contains(&format!("Since <code>{}</code>: <strong>recreates app</strong>.", &first[..12])),
        "{section}"
    );
    assert!(
        section.contains(
            "<details class=\"service-diff\"><summary><span class=\"kind recreate\">recreate</span> <code>app</code>"
        ),
        "{section}"
    );
    assert!(!section.contains("<code>side</code>"), "an unchanged service is not listed: {section}");
    assert!(
        section.contains(&format!("<pre class=\"diff\">{}</pre>", app_diff.trim_end()))
            || section.contains(&format!("<pre class=\"diff\">{app_diff}</pre>")),
        "the page's diff differs from the CLI's:\n{app_diff}\n{section}"
    );
    // A reload is served from the cache, the same.
    let (_, again, _) = crate::common::web::get(&http, &server.url(&format!("/deploys/{id}")), &[("Cookie", &cookie)]);
    assert_eq!(unescape(crate::common::web::card(&again, "service-diff")), section);

    // The serve deploy's notification says what it recreated.
    let posts = wait_for("the succeeded notification with its summary", Duration::from_secs(30), || {
        let p = slack.posts.lock().unwrap().clone();
        p.iter().any(|p| p.contains(&format!("{web}: deployed at {}", &second[..10]))).then_some(p)
    });
    let line = posts.iter().find(|p| p.contains(&second[..10])).unwrap();
    assert!(line.contains(" (recreates app)"), "{posts:?}");
    no_secret_in(&format!("{posts:?}"), &planted);
}

fn no_secret_in(text: &str, planted: &str) {
    assert!(!text.contains(planted) && !text.contains("planted-"), "a secret value leaked:\n{text}");
}
