//! A repository laid out like a real Komodo homelab, switched to berth end to end on the real
//! engine: imported from its ResourceSync file, validated, planned, one stack adopted as it runs,
//! applied across two servers; each stack owns exactly its files, two stacks share one folder,
//! hooks under `scripts/` reach their stack's engine, and README/docs commits deploy nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::common::*;
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
    let f = Fixture::bare(&["db", "media", "photos", "proxy"]);
    assert!(compose_is_plugin(), "this test drives the compose plugin");
    let [db, media, photos, proxy] = [0, 1, 2, 3].map(|i| f.stacks[i].clone());
    let edge = Relay::start();
    let hooks = tempfile::tempdir().unwrap();
    let hook_out = hooks.path().display().to_string();
    let env = [("HOOK_OUT", hook_out.as_str())];

    let repo = &f.repo;
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

    // Import: everything maps but the descriptive fields, which are listed (so --strict refuses).
    let file = repo.path().join("komodo/resources.toml").display().to_string();
    let strict = repo.berth(&["import", "komodo", "--strict", &file]);
    assert_eq!(strict.code, 2, "{}", strict.stderr);
    assert!(strict.stderr.contains("--strict: 3 fields or resources were not mapped"), "{}", strict.stderr);
    let out = repo.berth(&["import", "komodo", &file]).ok();
    assert!(
        out.stderr.contains("imported 4 stacks and 2 servers: 14 fields mapped, 3 need confirmation, 3 not mapped"),
        "{}",
        out.stderr
    );
    for w in [
        format!("not imported: stack `{db}`: field `description` is not mapped"),
        format!("not imported: stack `{media}`: field `tags` is not mapped"),
        format!("not imported: stack `{photos}`: field `tags` is not mapped"),
        "confirm: server `edge`: docker endpoint `ssh://root@edge.lan` is a guess".to_string(),
    ] {
        assert!(out.stderr.contains(&w), "missing `{w}` in:\n{}", out.stderr);
    }
    // Komodo's hook folders, relative to the run directory, as berth hook folders.
    assert!(out.stdout.contains("pre_deploy = { run = [\"sh\", \"validate-media.sh\"], dir = \"scripts\" }"));
    assert!(out.stdout.contains("pre_deploy = [\"sh\", \"scripts/validate-photos.sh\"]"), "{}", out.stdout);
    // The user confirms the endpoints: the NAS is the machine berth runs on, the edge host is
    // reached over TCP.
    let toml: Vec<String> = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with("docker = \"ssh://root@nas.lan\""))
        .map(|l| match l.starts_with("docker = \"ssh://root@edge.lan\"") {
            true => format!("docker = {:?}", edge.endpoint()),
            false => l.to_string(),
        })
        .collect();
    repo.write("berth.toml", &format!("[defaults]\nverify = {{ stable = \"1s\" }}\n{}\n", toml.join("\n")));
    let imported = repo.commit("switch to berth");

    let v = repo.berth(&["validate"]).ok();
    assert!(v.stdout.contains("4 stacks, 0 manual, on 2 servers: edge, nas"), "{}", v.stdout);
    assert!(!v.stderr.contains("share the folder"), "stacks that list their compose files warned: {}", v.stderr);
    let plan = repo.json(&["plan", "--json"]);
    let steps: BTreeMap<String, (String, Value)> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (s["stack"].as_str().unwrap().to_string(), (s["server"].as_str().unwrap().to_string(), s["after"].clone()))
        })
        .collect();
    assert_eq!(steps[&proxy], ("edge".to_string(), serde_json::json!([media])));
    assert_eq!(steps[&photos], ("nas".to_string(), serde_json::json!([db])));
    assert_eq!(steps.len(), 4);

    // Each stack owns exactly the files its compose model reads, and why.
    let changed = repo.json(&["changed", "--from", &empty, "--to", &imported, "--json"]);
    let own = owned(&changed);
    let files = |s: &str| own[s].keys().map(String::as_str).collect::<Vec<_>>();
    let photos_file = format!("{nas}/{photos}-compose.yaml");
    assert_eq!(files(&db), ["berth.toml", "hosts/nas/db/compose.yaml"]);
    let nas_files = |compose: &str, conf: &str, script: &str| {
        ["berth.toml", ".env", compose, conf, script].map(|f| match f {
            "berth.toml" => f.to_string(),
            f => format!("{nas}/{f}"),
        })
    };
    assert_eq!(files(&media), nas_files("compose.yaml", "conf/media.conf", "scripts/validate-media.sh"));
    let photos_compose = format!("{photos}-compose.yaml");
    assert_eq!(files(&photos), nas_files(&photos_compose, "conf/photos.conf", "scripts/validate-photos.sh"));
    let edge_files =
        ["compose.yaml", "scripts/validate.sh", "site/index.html"].map(|f| format!("hosts/edge/proxy/{f}"));
    assert_eq!(files(&proxy)[1..], edge_files);
    assert_eq!(own[&media]["hosts/nas/media/.env"], ["project .env"]);
    assert_eq!(own[&media]["hosts/nas/media/scripts/validate-media.sh"], ["pre_deploy script in berth.toml"]);
    assert_eq!(
        own[&photos]["hosts/nas/media/conf/photos.conf"],
        [format!("bind mount of service `app` in {photos_file}")]
    );
    assert!(changed["stacks"].as_array().unwrap().iter().all(|s| s["whole_folder"].is_null()), "{changed}");

    // `db` ran under Komodo: adopted as it runs, not redeployed.
    let _clone = compose_up_in_clone(repo, "hosts/nas/db", &db);
    let db_id = container(&db, "db");
    let a = repo.berth(&["adopt", &db]).ok();
    assert!(a.stdout.contains("adopt: 1 adopted, 0 already deployed, 0 not adopted"), "{}", a.stdout);

    let out = repo.berth_with(&["apply"], &env).ok();
    assert!(out.stdout.contains("3 to deploy, 1 unchanged"), "{}", out.stdout);
    assert!(out.stdout.contains("apply: 3 deployed, 0 failed"), "{}", out.stdout);
    assert_eq!(container(&db, "db"), db_id, "the adopted stack was redeployed");
    let ids = || [&db, &media, &photos, &proxy].map(|s| containers(s));
    let before = ids();
    assert_eq!(docker_out(&["exec", &container(&media, "app"), "cat", "/conf"]), "media=1");
    assert_eq!(docker_out(&["exec", &container(&photos, "app"), "cat", "/conf"]), "photos=1");

    // The hooks ran from `scripts/` with their stack's engine: the edge stack's through the relay.
    let edge_env = env_of(hooks.path(), &proxy);
    assert_eq!(edge_env.get("DOCKER_HOST"), Some(&edge.endpoint()), "{edge_env:?}");
    assert_eq!(edge_env.get("BERTH_DOCKER_HOST"), Some(&edge.endpoint()));
    assert_eq!(edge_env["BERTH_SERVER"], "edge");
    assert!(edge_env["BERTH_HOOK_DIR"].ends_with("/hosts/edge/proxy/scripts"), "{edge_env:?}");
    assert!(edge.saw(&format!("hookprobe-{proxy}")), "the edge hook's docker call did not reach the edge endpoint");
    for s in [&media, &photos] {
        let e = env_of(hooks.path(), s);
        assert_eq!(e["BERTH_SERVER"], "nas");
        assert_eq!(e.get("DOCKER_HOST"), std::env::var("DOCKER_HOST").ok().as_ref(), "{e:?}");
        assert!(!edge.saw(&format!("hookprobe-{s}")) && !edge.saw(s), "{s} went through the edge endpoint");
    }
    assert!(env_of(hooks.path(), &media)["BERTH_HOOK_DIR"].ends_with("/hosts/nas/media/scripts"));
    let clear = || {
        for e in std::fs::read_dir(hooks.path()).unwrap().flatten() {
            std::fs::remove_file(e.path()).unwrap();
        }
    };
    clear();

    // README and docs commits, also inside the shared folder, deploy nothing.
    repo.write("README.md", "# homelab\nhow it runs\n");
    repo.write("docs/hosts.md", "nas, edge, and a spare\n");
    repo.write(&format!("{nas}/README.md"), "# media\nmore\n");
    repo.write(&format!("{nas}/docs/restore.md"), "steps\n");
    let docs = repo.commit("docs");
    let changed = repo.json(&["changed", "--from", &imported, "--to", &docs, "--json"]);
    assert_eq!(changed["stacks"], serde_json::json!([]), "{changed}");
    let out = repo.berth_with(&["apply"], &env).ok();
    assert!(out.stdout.contains("nothing to deploy"), "{}", out.stdout);
    assert_eq!(ids(), before);
    assert_eq!(std::fs::read_dir(hooks.path()).unwrap().count(), 0, "a hook ran for a docs commit");

    // A commit to one of the two stacks of the shared folder redeploys exactly that stack.
    repo.write(&photos_file, &mounting("${CONF_DIR}/photos.conf", "green"));
    let green = repo.commit("photos turn green");
    let changed = repo.json(&["changed", "--from", &docs, "--to", &green, "--json"]);
    let own = owned(&changed);
    assert_eq!(own.keys().collect::<Vec<_>>(), [&photos], "{changed}");
    assert_eq!(own[&photos][&photos_file], ["compose file"]);
    assert_eq!(repo.planned_deploys(), [photos.as_str()]);
    let out = repo.berth_with(&["apply"], &env).ok();
    assert!(out.stdout.contains("apply: 1 deployed, 0 failed"), "{}", out.stdout);
    let after = ids();
    assert_ne!(after[2], before[2], "the edited stack was not redeployed");
    assert_eq!([&after[0], &after[1], &after[3]], [&before[0], &before[1], &before[3]], "another stack was redeployed");
    assert!(inspect(&container(&photos, "app"), "{{json .Config.Env}}").contains("COLOR=green"));
    assert_eq!(env_of(hooks.path(), &photos)["BERTH_COMMIT"], green);
    assert_eq!(std::fs::read_dir(hooks.path()).unwrap().count(), 1, "a hook of an unchanged stack ran");
    clear();

    // The folder's `.env` belongs to both stacks of the folder: moving their mounts redeploys
    // both, once their validation scripts (which check the old folder) stop failing.
    repo.git(&["mv", &format!("{nas}/conf"), &format!("{nas}/settings")]);
    repo.write(&format!("{nas}/.env"), "CONF_DIR=./settings\n");
    repo.commit("conf moves to settings");
    let mut both = vec![media.clone(), photos.clone()];
    both.sort();
    assert_eq!(repo.planned_deploys(), both);
    let out = repo.berth_with(&["apply"], &env);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("apply: 0 deployed, 2 failed"), "{}", out.stdout);
    assert!(out.stdout.contains(&format!("{media} failed (deploy ")) && out.stdout.contains("pre_deploy failed"));
    assert_eq!(ids(), after, "a failed validation touched what runs");
    repo.write(&format!("{nas}/scripts/validate-media.sh"), &validation("settings/media.conf"));
    repo.write(&format!("{nas}/scripts/validate-photos.sh"), &validation("settings/photos.conf"));
    repo.commit("scripts follow");
    // The fixed scripts are the stacks' own files: the failed stacks deploy again.
    assert_eq!(repo.planned_deploys(), both);
    repo.berth_with(&["apply"], &env).ok();
    let moved = ids();
    assert_eq!([&moved[0], &moved[3]], [&before[0], &before[3]], "a stack outside the folder was redeployed");
    assert_ne!(moved[1], before[1]);
    assert_eq!(docker_out(&["exec", &container(&media, "app"), "cat", "/conf"]), "media=1");
    assert!(inspect(&container(&media, "app"), "{{json .Mounts}}").contains("/hosts/nas/media/settings/media.conf"));
}
