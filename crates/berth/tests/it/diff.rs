//! `berth diff` on a real git repository with the real compose: per service what a change
//! recreates, the rendered-config diff, bind-mounted files' diffs, and secrets never shown.

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
