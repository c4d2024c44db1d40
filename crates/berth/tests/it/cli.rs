//! The CLI on real git repositories: validation errors, change detection edge cases, exit codes.

use crate::common::*;

fn stack(repo: &Repo, name: &str) {
    repo.stack(name, &sleeper(&["app"]));
}

#[test]
fn validate_summarises_a_good_repo_and_reports_every_error_of_a_bad_one() {
    let repo = Repo::new();
    stack(&repo, "web");
    repo.write("nodes/onyx/caddy/compose.yaml", &sleeper(&["caddy"]));
    repo.write("berth.toml", "[[server]]\nname = \"onyx\"\n");
    repo.commit("ok");
    let out = repo.berth(&["validate"]).ok();
    assert_eq!(out.stdout.trim(), "ok: berth.toml (2 stacks, 0 manual, on 2 servers: local, onyx)");

    // Uncommitted edits are what validate checks by default.
    repo.write(
        "berth.toml",
        "[[server]]\nname = \"onyx\"\n\n[[stack]]\nname = \"web\"\nafter = [\"cady\"]\n\n[[stack]]\nname = \"esc\"\npath = \"../../etc\"\n",
    );
    let out = repo.berth(&["validate"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("berth.toml:8:1: stack path `../../etc` leaves the repository"), "{}", out.stderr);
    assert!(
        out.stderr.contains("unknown stack `cady`") && out.stderr.contains("did you mean `caddy`?"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("invalid configuration (2 problems)"), "{}", out.stderr);
    // The committed config is still fine.
    repo.berth(&["validate", "--ref", "HEAD"]).ok();
}

#[test]
fn unknown_keys_malformed_toml_and_cycles_are_usage_errors() {
    let repo = Repo::new();
    stack(&repo, "a");
    stack(&repo, "b");
    repo.write("berth.toml", "[[stack]]\nname = \"a\"\nwach = [\"libs/**\"]\n");
    let out = repo.berth(&["validate"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("berth.toml:3:1") && out.stderr.contains("did you mean `watch`?"), "{}", out.stderr);

    repo.write("berth.toml", "[berth\n");
    let out = repo.berth(&["validate"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("berth.toml:1:"), "{}", out.stderr);

    repo.write("berth.toml", "[[stack]]\nname = \"a\"\nafter = [\"b\"]\n[[stack]]\nname = \"b\"\nafter = [\"a\"]\n");
    let out = repo.berth(&["validate"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("dependency cycle: a → b → a"), "{}", out.stderr);
    repo.commit("cycle");
    let out = repo.berth(&["apply"]);
    assert_eq!(out.code, 2, "apply must refuse an invalid config: {}", out.stdout);
}

#[test]
fn nodes_stacks_need_their_server_declared() {
    let repo = Repo::new();
    repo.write("nodes/heimdall/monitoring/compose.yaml", &sleeper(&["m"]));
    repo.commit("zero config");
    let out = repo.berth(&["plan"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("server `heimdall`, which is not declared"), "{}", out.stderr);
    assert!(out.stderr.contains("[[server]] name = \"heimdall\""), "{}", out.stderr);
}

#[test]
fn unknown_stacks_are_named_with_a_suggestion() {
    let repo = Repo::new();
    stack(&repo, "web");
    repo.commit("web");
    let out = repo.berth(&["deploy", "wbe"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("no stack named `wbe`") && out.stderr.contains("did you mean `web`?"),
        "{}",
        out.stderr
    );
    let out = repo.berth(&["deploy", "web", "--set", "1BAD=x"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
}

#[test]
fn changed_follows_renames_watch_globs_and_config_edits() {
    let repo = Repo::new();
    // a and b bind-mount extra.conf: moving it touches both.
    let mounting = format!("{}    volumes:\n      - ./extra.conf:/extra.conf\n", sleeper(&["app"]));
    repo.write("stacks/a/compose.yaml", &mounting);
    repo.write("stacks/b/compose.yaml", &mounting);
    stack(&repo, "c");
    repo.write("stacks/a/extra.conf", "x\n");
    repo.write("libs/common.env", "X=1\n");
    repo.write("stacks/a/README.md", "docs\n");
    repo.write(
        "berth.toml",
        "[discovery]\nignore = [\"**/README.md\"]\n[[stack]]\nname = \"c\"\nwatch = [\"libs/**\"]\n",
    );
    let base = repo.commit("base");

    repo.git(&["mv", "stacks/a/extra.conf", "stacks/b/extra.conf"]);
    repo.write("libs/common.env", "X=2\n");
    repo.write("stacks/a/README.md", "more docs\n");
    let head = repo.commit("move a file from a to b, touch libs");
    let out = repo.json(&["changed", "--from", &base, "--to", &head, "--json"]);
    let stacks: Vec<(String, Vec<String>)> = out["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let paths = s["paths"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
            (s["name"].as_str().unwrap().to_string(), paths)
        })
        .collect();
    assert_eq!(
        stacks,
        [
            ("a".to_string(), vec!["stacks/a/extra.conf".to_string()]),
            ("b".to_string(), vec!["stacks/b/extra.conf".to_string()]),
            ("c".to_string(), vec!["libs/common.env".to_string()]),
        ]
    );
    assert_eq!(out["all"], false);
    assert_eq!(
        out["stacks"][0]["why"]["stacks/a/extra.conf"][0],
        "bind mount of service `app` in stacks/a/compose.yaml"
    );
    assert_eq!(out["stacks"][2]["why"]["libs/common.env"][0], "watch glob `libs/**` in berth.toml");

    // A berth.toml edit marks exactly the stacks whose definition changed; deleted stacks are listed.
    repo.write(
        "berth.toml",
        "[discovery]\nignore = [\"**/README.md\"]\n[[stack]]\nname = \"c\"\nwatch = [\"libs/**\"]\nenv = { MODE = \"x\" }\n",
    );
    repo.remove("stacks/b");
    let third = repo.commit("redefine c, drop b");
    let out = repo.json(&["changed", "--from", &head, "--to", &third, "--json"]);
    assert_eq!(out["stacks"][0]["name"], "c");
    assert_eq!(out["stacks"][0]["paths"][0], "berth.toml");
    assert_eq!(out["stacks"].as_array().unwrap().len(), 1, "{out}");
    assert_eq!(out["removed"][0], "b");
}

#[test]
fn changed_treats_new_branches_and_force_pushes_as_everything() {
    let repo = Repo::new();
    stack(&repo, "a");
    stack(&repo, "b");
    let first = repo.commit("one");
    let null = "0".repeat(40);
    let out = repo.json(&["changed", "--from", &null, "--to", "HEAD", "--json"]);
    assert_eq!(out["all"], true);
    assert_eq!(out["stacks"].as_array().unwrap().len(), 2);

    // Rewrite history: the old tip is no longer an ancestor.
    repo.write("stacks/a/x", "1\n");
    let old_tip = repo.commit("two");
    repo.git(&["reset", "-q", "--hard", &first]);
    repo.write("stacks/b/y", "1\n");
    repo.commit("rewritten");
    let out = repo.json(&["changed", "--from", &old_tip, "--to", "HEAD", "--json"]);
    assert_eq!(out["all"], true);
    assert!(out["reason"].as_str().unwrap().contains("not an ancestor"), "{out}");
    let out = repo.json(&["changed", "--from", "deadbeefdeadbeef", "--to", "HEAD", "--json"]);
    assert_eq!(out["all"], true);
}

#[test]
fn plan_prints_a_readable_table_in_dependency_order() {
    let repo = Repo::new();
    stack(&repo, "app");
    stack(&repo, "db");
    repo.write("bootstrap/vault/compose.yaml", &sleeper(&["v"]));
    repo.write(
        "berth.toml",
        "[[stack]]\nname = \"app\"\nafter = [\"db\"]\n[[stack]]\nname = \"vault\"\npath = \"bootstrap/vault\"\nmanual = true\n",
    );
    repo.commit("plan");
    let out = repo.berth(&["plan"]).ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[1].starts_with("STACK"), "{}", out.stdout);
    let order: Vec<&str> = lines[2..5].iter().map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(order, ["db", "app", "vault"]);
    assert!(lines[4].contains("manual"));
    assert!(out.stdout.contains("2 to deploy, 0 unchanged, 0 blocked, 1 manual"), "{}", out.stdout);
}

#[test]
fn a_komodo_resource_sync_imports_into_a_valid_berth_toml() {
    // Shaped after Komodo's documented ResourceSync format (komo.do/docs/sync-resources).
    let komodo = r#"
[[server]]
name = "onyx"
description = "main host"
[server.config]
address = "https://192.168.1.20:8120"
region = "basement"
enabled = true

[[server]]
name = "heimdall"
[server.config]
address = "http://heimdall.lan:8120"

[[repo]]
name = "homelab"
[repo.config]
server = "onyx"
git_provider = "git.example.com"
git_account = "deploy-bot"
repo = "me/homelab"
branch = "main"

[[stack]]
name = "db"
[stack.config]
server = "onyx"
linked_repo = "homelab"
run_directory = "stacks/db"
file_paths = ["compose.yaml"]
pre_deploy = { path = "../../scripts", command = "sh validate-db.sh" }
environment = "DB_PASSWORD=[[KOMODO_DB_PASSWORD]]"

[[stack]]
name = "app"
deploy = true
after = ["db"]
tags = ["prod"]
[stack.config]
server = "heimdall"
linked_repo = "homelab"
run_directory = "./stacks/app/"
file_paths = ["compose.yaml", "compose.prod.yaml"]
environment = """
APP_TAG=1.4.2
# a comment
LOG_LEVEL=info
"""
ignore_services = ["migrate"]
registry_provider = "ghcr.io"
pre_deploy.command = "sh scripts/validate.sh"
post_deploy.command = "curl -fsS http://app/health"

[[procedure]]
name = "nightly"
"#;
    let repo = Repo::new();
    repo.write("komodo.toml", komodo);
    repo.write("stacks/db/compose.yaml", &sleeper(&["db"]));
    repo.write("stacks/app/compose.yaml", &sleeper(&["app", "migrate"]));
    repo.write("stacks/app/compose.prod.yaml", "services:\n  app:\n    environment:\n      PROD: \"1\"\n");
    // Hook scripts where Komodo finds them: relative to the run directory and the hook's path.
    repo.write("stacks/app/scripts/validate.sh", "exit 0\n");
    repo.write(
        "scripts/validate-db.sh",
        "test \"$DB_PASSWORD\" = s3cret && test -f validate-db.sh && touch \"$MARK\"\n",
    );
    let file = repo.path().join("komodo.toml").display().to_string();
    let strict = repo.berth(&["import", "komodo", "--strict", &file]);
    assert_eq!(strict.code, 2, "{}", strict.stderr);
    let out = repo.berth(&["import", "komodo", &file]).ok();
    assert!(!out.stdout.contains("[[KOMODO_DB_PASSWORD]]"), "{}", out.stdout);
    assert!(
        out.stderr.contains("imported 2 stacks and 2 servers: ") && out.stderr.contains("4 not mapped"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("confirm: stack `db`: `DB_PASSWORD` was the Komodo secret"), "{}", out.stderr);
    for w in [
        "server `onyx`: field `region` is not mapped",
        "stack `app`: field `registry_provider` is not mapped",
        "procedure `nightly`: berth has no equivalent",
    ] {
        assert!(out.stderr.contains(w), "missing warning `{w}` in:\n{}", out.stderr);
    }
    repo.write("berth.toml", &out.stdout);
    let v = repo.berth(&["validate"]);
    assert_eq!(v.code, 0, "imported config does not validate:\n{}\n{}", out.stdout, v.stderr);
    assert!(v.stdout.contains("2 stacks"), "{}", v.stdout);
    repo.commit("imported");
    let plan = repo.json(&["plan", "--json"]);
    let app = step(&plan, "app");
    assert_eq!(app["server"], "heimdall");
    assert_eq!(app["after"][0], "db");
    // The imported hook runs as Komodo ran it, with the secret filled from the environment.
    let db = unique("db");
    let _c = Cleanup(vec![db.clone()]);
    let cfg = std::fs::read_to_string(repo.path().join("berth.toml")).unwrap();
    let cfg = cfg
        .replace("name = \"db\"", &format!("name = \"{db}\""))
        .replace("after = [\"db\"]", &format!("after = [\"{db}\"]"))
        .replace("server = \"onyx\"\n", "");
    repo.write("berth.toml", &format!("[defaults]\nverify = {{ stable = \"1s\" }}\n{cfg}"));
    repo.commit("local db");
    docker();
    let mark = repo.state.path().join("validated");
    let mark = mark.display().to_string();
    let d = repo.berth_with(&["deploy", &db], &[("KOMODO_DB_PASSWORD", "s3cret"), ("MARK", &mark)]);
    assert_eq!(d.code, 0, "{}{}", d.stdout, d.stderr);
    assert!(std::path::Path::new(&mark).exists(), "the imported pre_deploy hook did not run");
}
