//! A repository laid out like a real Komodo homelab, switched to berth end to end on the real
//! engine: imported from its ResourceSync file, validated, planned, one stack adopted as it runs,
//! applied across two servers; each stack owns exactly its files, two stacks share one folder,
//! hooks under `scripts/` reach their stack's engine, and README/docs commits deploy nothing.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

/// A service that bind-mounts `mount` (as written in the compose file) read-only at /conf.
fn mounting(mount: &str, color: &str) -> String {
    format!(
        "services:\n  app:\n    image: {IMAGE}\n    command: [\"sleep\", \"2147483647\"]\n    stop_signal: SIGKILL\n    \
         environment:\n      COLOR: {color}\n    volumes:\n      - {mount}:/conf:ro\n"
    )
}

/// The Komodo ResourceSync file of the homelab: `db` and `media` + `photos` (one folder) on the
/// NAS, `proxy` on the edge host after `media`.
fn komodo(db: &str, media: &str, photos: &str, proxy: &str) -> String {
    format!(
        r#"
[[server]]
name = "nas"
description = "the machine berth runs on"
[server.config]
address = "https://nas.lan:8120"
enabled = true

[[server]]
name = "edge"
[server.config]
address = "https://edge.lan:8120"
enabled = true

[[repo]]
name = "homelab"
[repo.config]
server = "nas"
git_provider = "git.example.com"
repo = "me/homelab"
branch = "main"

[[stack]]
name = "{db}"
description = "the database"
[stack.config]
server = "nas"
linked_repo = "homelab"
run_directory = "hosts/nas/db"
file_paths = ["compose.yaml"]

[[stack]]
name = "{media}"
tags = ["media"]
after = ["{db}"]
[stack.config]
server = "nas"
linked_repo = "homelab"
run_directory = "hosts/nas/media"
file_paths = ["compose.yaml"]
pre_deploy = {{ path = "scripts", command = "sh validate-media.sh" }}

[[stack]]
name = "{photos}"
tags = ["media"]
after = ["{db}"]
[stack.config]
server = "nas"
linked_repo = "homelab"
run_directory = "hosts/nas/media"
file_paths = ["{photos}-compose.yaml"]
pre_deploy.command = "sh scripts/validate-photos.sh"

[[stack]]
name = "{proxy}"
after = ["{media}"]
[stack.config]
server = "edge"
linked_repo = "homelab"
run_directory = "./hosts/edge/proxy/"
file_paths = ["compose.yaml"]
pre_deploy = {{ path = "scripts", command = "sh validate.sh" }}
"#
    )
}

/// A validation script as the homelab has them: checks the engine and a file it needs, and
/// leaves its environment in `$HOOK_OUT/<stack>.env` for the test.
fn validation(needs: &str) -> String {
    format!(
        "set -e\ndocker volume ls -q --filter name=hookprobe-\"$BERTH_STACK\" >/dev/null\n\
         test -f \"$BERTH_STACK_DIR/{needs}\"\nenv > \"$HOOK_OUT/$BERTH_STACK.env\"\n"
    )
}

/// `KEY=VALUE` lines of a hook's environment dump.
fn env_of(dir: &Path, stack: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(dir.join(format!("{stack}.env")))
        .unwrap_or_else(|e| panic!("the pre_deploy hook of {stack} left no environment: {e}"));
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Per stack of `changed --json`: its paths, and why each belongs to it.
fn owned(changed: &Value) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    changed["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let why = s["why"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(p, w)| {
                    (p.clone(), w.as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect())
                })
                .collect();
            (s["name"].as_str().unwrap().to_string(), why)
        })
        .collect()
}

fn deploys(repo: &Repo) -> Vec<String> {
    let plan = repo.json(&["plan", "--json"]);
    let mut v: Vec<String> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["action"] == "deploy")
        .map(|s| s["stack"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// `compose -p STACK up -d` in a clone of the repository, as Komodo ran the stack before berth.
fn compose_up_in_clone(repo: &Repo, folder: &str, stack: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let clone = dir.path().join("c");
    let o = Command::new("git").arg("clone").arg("-q").arg(repo.path()).arg(&clone).output().unwrap();
    assert!(o.status.success(), "git clone: {}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new("docker")
        .arg("compose")
        .current_dir(clone.join(folder))
        .args(["-p", stack, "-f", "compose.yaml", "up", "-d"])
        .env_remove("COMPOSE_PROJECT_NAME")
        .env_remove("COMPOSE_FILE")
        .output()
        .unwrap();
    assert!(o.status.success(), "compose up {stack}: {}", String::from_utf8_lossy(&o.stderr));
    dir
}

#[test]
fn a_komodo_homelab_imports_applies_and_redeploys_exactly_what_changed() {
    docker();
    assert!(compose_is_plugin(), "this test drives the compose plugin");
    let (db, media, photos, proxy) = (unique("db"), unique("media"), unique("photos"), unique("proxy"));
    let _c = Cleanup(vec![db.clone(), media.clone(), photos.clone(), proxy.clone()]);
    let edge = Relay::start();
    let hooks = tempfile::tempdir().unwrap();
    let hook_out = hooks.path().display().to_string();
    let env = [("HOOK_OUT", hook_out.as_str())];

    let repo = Repo::new();
    repo.write("README.md", "# homelab\n");
    let empty = repo.commit("start");
    repo.write("komodo/resources.toml", &komodo(&db, &media, &photos, &proxy));
    repo.write("docs/hosts.md", "nas, edge\n");
    repo.write("hosts/nas/db/compose.yaml", &sleeper(&["db"]));
    // Two stacks in one folder, their files side by side; the mounts' folder comes from `.env`.
    let nas = "hosts/nas/media";
    repo.write(&format!("{nas}/compose.yaml"), &mounting("${CONF_DIR}/media.conf", "blue"));
    repo.write(&format!("{nas}/{photos}-compose.yaml"), &mounting("${CONF_DIR}/photos.conf", "blue"));
    repo.write(&format!("{nas}/.env"), "CONF_DIR=./conf\n");
    repo.write(&format!("{nas}/conf/media.conf"), "media=1\n");
    repo.write(&format!("{nas}/conf/photos.conf"), "photos=1\n");
    repo.write(&format!("{nas}/README.md"), "# media\n");
    repo.write(&format!("{nas}/scripts/validate-media.sh"), &validation("conf/media.conf"));
    repo.write(&format!("{nas}/scripts/validate-photos.sh"), &validation("conf/photos.conf"));
    repo.write("hosts/edge/proxy/compose.yaml", &mounting("./site", "red"));
    repo.write("hosts/edge/proxy/site/index.html", "hello\n");
    repo.write("hosts/edge/proxy/scripts/validate.sh", &validation("site/index.html"));

    // Import: everything maps but the descriptive fields, which are listed.
    let file = repo.path().join("komodo/resources.toml").display().to_string();
    let strict = repo.berth(&["import", "komodo", "--strict", &file]);
    assert_eq!(strict.code, 2, "{}", strict.stderr);
    let out = repo.berth(&["import", "komodo", &file]).ok();
    eprintln!("{}", out.stderr);
    eprintln!("{}", out.stdout);
    // The servers' endpoints as the user confirms them: the NAS is this machine, the edge host
    // is reached over TCP.
    let toml = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with("docker = \"ssh://root@nas.lan\""))
        .map(|l| {
            if l.starts_with("docker = \"ssh://root@edge.lan\"") {
                format!("docker = {:?}", edge.endpoint())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    repo.write("berth.toml", &format!("[defaults]\nverify = {{ stable = \"1s\" }}\n{toml}\n"));
    let imported = repo.commit("switch to berth");

    let v = repo.berth(&["validate"]).ok();
    eprintln!("{}{}", v.stdout, v.stderr);
    let plan = repo.json(&["plan", "--json"]);
    eprintln!("{plan:#}");
    let changed = repo.json(&["changed", "--from", &empty, "--to", &imported, "--json"]);
    eprintln!("{changed:#}");
    let own = owned(&changed);
    eprintln!("{own:#?}");

    // `db` ran under Komodo: adopted as it runs, not redeployed.
    let _clone = compose_up_in_clone(&repo, "hosts/nas/db", &db);
    let db_id = container(&db, "db");
    let a = repo.berth(&["adopt", &db]);
    eprintln!("{}{}", a.stdout, a.stderr);

    let out = repo.berth_with(&["apply"], &env);
    eprintln!("{}{}", out.stdout, out.stderr);
    assert_eq!(out.code, 0);
    assert_eq!(container(&db, "db"), db_id);
    for s in [&media, &photos, &proxy] {
        eprintln!("{s}: {:#?}", env_of(hooks.path(), s));
    }
    assert!(edge.saw(&format!("hookprobe-{proxy}")));
}
