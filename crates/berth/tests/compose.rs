//! The compose implementations: the plugin next to registry credentials, `doctor` in the
//! environment a deploy uses, and choosing one with `BERTH_COMPOSE`.

mod common;

use std::path::{Path, PathBuf};

use common::registry::Registry;
use common::*;

/// A docker config folder of the user's own with the compose plugin in its `cli-plugins` (as
/// `~/.docker/cli-plugins` is on a machine without a system-wide plugin): a wrapper that notes
/// each call in `calls` and runs the installed plugin. Returns the folder.
fn users_own_plugin(home: &Path) -> PathBuf {
    let config = home.join("docker");
    let plugin = config.join("cli-plugins/docker-compose");
    std::fs::create_dir_all(plugin.parent().unwrap()).unwrap();
    let script = format!(
        "#!/bin/sh\necho \"$*\" >> {}\nexec {} \"$@\"\n",
        home.join("calls").display(),
        compose_plugin().display()
    );
    std::fs::write(&plugin, script).unwrap();
    std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    config
}

#[test]
fn registry_credentials_keep_the_users_compose_plugin() {
    docker();
    let s = unique("plugreg");
    let _c = Cleanup(vec![s.clone()]);
    let registry = Registry::start();
    let image = registry.push(&s);
    let home = tempfile::tempdir().unwrap();
    let user_config = users_own_plugin(home.path());
    let cache = home.path().join("cache");
    let (user_config, cache_s) = (user_config.display().to_string(), cache.display().to_string());
    let env = [("DOCKER_CONFIG", user_config.as_str()), ("XDG_CACHE_HOME", &cache_s), ("BERTH_COMPOSE", "plugin")];

    let repo = Repo::new();
    repo.write(
        &format!("stacks/{s}/compose.yaml"),
        &format!("services:\n  app:\n    image: {image}\n    command: [\"sleep\", \"2147483647\"]\n    stop_signal: SIGKILL\n"),
    );
    let auth = registry.creds.join("config.json");
    repo.write(
        "berth.toml",
        &format!(
            "[defaults]\nverify = {{ stable = \"1s\" }}\n[[server]]\nname = \"local\"\nregistry_auth = \"{}\"\n",
            auth.display()
        ),
    );
    repo.commit("a private image, pulled with the plugin");
    let out = repo.berth_with(&["apply"], &env);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let id = container(&s, "app");
    assert_eq!(inspect(&id, "{{.Config.Image}}"), image);
    // Compose v2 named the container: the plugin ran, and it was the user's own.
    assert_eq!(inspect(&id, "{{.Name}}"), format!("/{s}-app-1"));
    let calls = std::fs::read_to_string(home.path().join("calls")).unwrap_or_default();
    assert!(
        calls.lines().any(|l| l.starts_with("compose ")
            && l.contains(&format!("--project-name {s} "))
            && l.ends_with(" up --detach --remove-orphans")),
        "the user's plugin did not run the deploy:\n{calls}"
    );

    // doctor checks the environment deploys use: the same DOCKER_CONFIG and so the same plugin.
    let out = repo.berth_with(&["doctor"], &env);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let line = out.stdout.lines().find(|l| l.contains("server local compose")).unwrap_or_default();
    assert!(line.starts_with('✓'), "{}", out.stdout);
    assert!(line.contains(&format!("{user_config}/cli-plugins/docker-compose")), "{line}");
    assert!(line.contains(&format!("DOCKER_CONFIG {cache_s}/berth/docker-config/")), "{line}");

    // Credentials that cannot be read are a ✗ before any deploy tries them.
    repo.write(
        "berth.toml",
        "[defaults]\nverify = { stable = \"1s\" }\n[[server]]\nname = \"local\"\nregistry_auth = \"/nonexistent/berth/config.json\"\n",
    );
    repo.commit("credentials gone");
    let out = repo.berth_with(&["doctor"], &env);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.lines().any(|l| l.starts_with("✗ server local registry_auth: cannot read /nonexistent")),
        "{}",
        out.stdout
    );
    let _ = std::process::Command::new("docker").args(["rmi", "-f", &image]).output();
}

#[test]
fn berth_compose_chooses_the_implementation() {
    docker();
    need("docker-compose", "docker-compose");
    let (v1, v2) = (unique("v1"), unique("v2"));
    let _c = Cleanup(vec![v1.clone(), v2.clone()]);
    let repo = Repo::new();
    repo.write("berth.toml", "[defaults]\nverify = { stable = \"1s\" }\n");
    repo.write(&format!("stacks/{v1}/compose.yaml"), &sleeper(&["app"]));
    repo.commit("one stack");
    let standalone = [("BERTH_COMPOSE", "standalone")];
    let out = repo.berth_with(&["doctor"], &standalone);
    assert!(out.stdout.contains("✓ compose: standalone docker-compose 1."), "{}", out.stdout);
    repo.berth_with(&["apply"], &standalone).ok();
    // Compose v1 names containers PROJECT_SERVICE_N, v2 PROJECT-SERVICE-N.
    assert_eq!(inspect(&container(&v1, "app"), "{{.Name}}"), format!("/{v1}_app_1"));

    repo.write(&format!("stacks/{v2}/compose.yaml"), &sleeper(&["app"]));
    repo.commit("another");
    let plugin = [("BERTH_COMPOSE", "plugin")];
    assert!(repo.berth_with(&["doctor"], &plugin).stdout.contains("✓ compose: docker compose plugin "));
    repo.berth_with(&["apply"], &plugin).ok();
    assert_eq!(inspect(&container(&v2, "app"), "{{.Name}}"), format!("/{v2}-app-1"));

    // A value berth does not know is refused, naming the variable and what it accepts.
    repo.write(&format!("stacks/{v2}/compose.yaml"), &sleeper(&["app", "extra"]));
    repo.commit("changed");
    let out = repo.berth_with(&["apply"], &[("BERTH_COMPOSE", "v3")]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("BERTH_COMPOSE=\"v3\" is not `plugin`, `standalone` or `auto`"), "{}", out.stderr);
    let out = repo.berth_with(&["doctor"], &[("BERTH_COMPOSE", "v3")]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stdout.contains("✗ compose: BERTH_COMPOSE"), "{}", out.stdout);
}
