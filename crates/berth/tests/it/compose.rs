//! The compose implementations: the plugin next to registry credentials, `doctor` in the
//! environment a deploy uses, choosing one with `BERTH_COMPOSE`, and the `pull` policy.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::registry::Registry;
use crate::common::*;

/// A machine whose only compose plugin is the user's own. `run` starts a program in a private
/// mount namespace where empty folders cover the system-wide plugin folders; the user's docker
/// config folder (`config`) holds the plugin in its `cli-plugins`: a wrapper that notes each
/// call in `calls` and runs the real plugin, reachable in there at `<home>/real/docker-compose`.
struct UsersOwnPlugin {
    config: PathBuf,
    calls: PathBuf,
    hide: PathBuf,
}

impl UsersOwnPlugin {
    fn new(home: &Path) -> UsersOwnPlugin {
        let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
        assert!(root, "hiding the system's plugin folders takes a mount namespace: run as root (CI does)");
        let (real, empty) = (home.join("real"), home.join("empty"));
        std::fs::create_dir_all(&real).unwrap();
        std::fs::create_dir_all(&empty).unwrap();
        let mut hide = format!(
            "#!/bin/sh\nset -e\nmount --bind {} {}\n",
            compose_plugin().parent().unwrap().display(),
            real.display()
        );
        for d in SYSTEM_PLUGIN_DIRS.iter().filter(|d| Path::new(d).is_dir()) {
            hide.push_str(&format!("mount --bind {} {d}\n", empty.display()));
        }
        hide.push_str("exec \"$@\"\n");
        let (config, calls) = (home.join("docker"), home.join("calls"));
        let wrapper =
            format!("#!/bin/sh\necho \"$*\" >> {}\nexec {}/docker-compose \"$@\"\n", calls.display(), real.display());
        for (path, text) in [(home.join("hide"), hide), (config.join("cli-plugins/docker-compose"), wrapper)] {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
        UsersOwnPlugin { config, calls, hide: home.join("hide") }
    }

    /// `program args` on that machine, with `env`.
    fn run(&self, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
        let o = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--"])
            .arg(&self.hide)
            .arg(program)
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        Run::from(o)
    }

    fn berth(&self, repo: &Repo, args: &[&str], env: &[(&str, &str)]) -> Run {
        let (r, st) = (repo.path().display().to_string(), repo.state.path().display().to_string());
        let mut all = vec!["--repo", &r, "--state-dir", &st];
        all.extend(args);
        self.run(Path::new(env!("CARGO_BIN_EXE_berth")), &all, env)
    }
}

#[test]
fn registry_credentials_keep_the_users_compose_plugin() {
    let f = Fixture::bare(&["plugreg"]);
    let s = f.stack();
    let registry = Registry::start();
    let image = registry.push(&s);
    let home = tempfile::tempdir().unwrap();
    let machine = UsersOwnPlugin::new(home.path());
    let cache = home.path().join("cache");
    let (user_config, cache_s) = (machine.config.display().to_string(), cache.display().to_string());
    let env = [("DOCKER_CONFIG", user_config.as_str()), ("XDG_CACHE_HOME", &cache_s), ("BERTH_COMPOSE", "plugin")];

    // The trap: the registry's config folder alone hides the user's plugin.
    let creds = registry.creds.display().to_string();
    let hidden =
        machine.run(Path::new("docker"), &["compose", "--project-name", &s, "ps"], &[("DOCKER_CONFIG", &creds)]);
    assert!(hidden.code != 0 && hidden.stderr.contains("unknown flag: --project-name"), "{hidden:?}");

    let repo = &f.repo;
    repo.stack(&s, &format!("services:\n  app:\n    image: {image}\n    command: [\"sleep\", \"2147483647\"]\n    stop_signal: SIGKILL\n"),
    );
    repo.write(
        "berth.toml",
        &format!(
            "[defaults]\nverify = {{ stable = \"1s\" }}\n[[server]]\nname = \"local\"\nregistry_auth = \"{}\"\n",
            registry.creds.join("config.json").display()
        ),
    );
    repo.commit("a private image, pulled with the plugin");
    let out = machine.berth(repo, &["apply"], &env);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let id = container(&s, "app");
    assert_eq!(inspect(&id, "{{.Config.Image}}"), image);
    // Compose v2 named the container, and the user's plugin ran the deploy.
    assert_eq!(inspect(&id, "{{.Name}}"), format!("/{s}-app-1"));
    let calls = std::fs::read_to_string(&machine.calls).unwrap_or_default();
    assert!(
        calls.lines().any(|l| l.starts_with("compose ")
            && l.contains(&format!("--project-name {s} "))
            && l.ends_with(" up --detach --remove-orphans")),
        "the user's plugin did not run the deploy:\n{calls}"
    );

    // doctor checks the environment deploys use: the same DOCKER_CONFIG and so the same plugin.
    let out = machine.berth(repo, &["doctor"], &env);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let line = out.stdout.lines().find(|l| l.contains("server local compose")).unwrap_or_default();
    assert!(line.starts_with('✓'), "{}", out.stdout);
    assert!(line.contains(&format!("{user_config}/cli-plugins/docker-compose")), "{line}");
    assert!(line.contains(&format!("DOCKER_CONFIG {cache_s}/berth/docker-config/")), "{line}");

    // Credentials that cannot be read are a ✗ before any deploy tries them, and so is the
    // plugin they would hide (there is no folder to link them from).
    repo.write(
        "berth.toml",
        "[defaults]\nverify = { stable = \"1s\" }\n[[server]]\nname = \"local\"\nregistry_auth = \"/nonexistent/berth/config.json\"\n",
    );
    repo.commit("credentials gone");
    let out = machine.berth(repo, &["doctor"], &env);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines.iter().any(|l| l.starts_with("✗ server local registry_auth: cannot read /nonexistent")), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("✗ server local compose: `docker compose` does not run")), "{lines:?}");
}

#[test]
fn berth_compose_chooses_the_implementation() {
    let f = Fixture::bare(&["v1", "v2"]);
    need("docker-compose", "docker-compose");
    let (v1, v2) = (f.stacks[0].clone(), f.stacks[1].clone());
    let repo = &f.repo;
    repo.write("berth.toml", "[defaults]\nverify = { stable = \"1s\" }\n");
    repo.stack(&v1, &sleeper(&["app"]));
    repo.commit("one stack");
    let standalone = [("BERTH_COMPOSE", "standalone")];
    let out = repo.berth_with(&["doctor"], &standalone);
    assert!(out.stdout.contains("✓ compose: standalone docker-compose 1."), "{}", out.stdout);
    repo.berth_with(&["apply"], &standalone).ok();
    // Compose v1 names containers PROJECT_SERVICE_N, v2 PROJECT-SERVICE-N.
    assert_eq!(inspect(&container(&v1, "app"), "{{.Name}}"), format!("/{v1}_app_1"));

    repo.stack(&v2, &sleeper(&["app"]));
    repo.commit("another");
    let plugin = [("BERTH_COMPOSE", "plugin")];
    assert!(repo.berth_with(&["doctor"], &plugin).stdout.contains("✓ compose: docker compose plugin "));
    repo.berth_with(&["apply"], &plugin).ok();
    assert_eq!(inspect(&container(&v2, "app"), "{{.Name}}"), format!("/{v2}-app-1"));

    // A value berth does not know is refused, naming the variable and what it accepts.
    repo.stack(&v2, &sleeper(&["app", "extra"]));
    repo.commit("changed");
    let out = repo.berth_with(&["apply"], &[("BERTH_COMPOSE", "v3")]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("BERTH_COMPOSE=\"v3\" is not `plugin`, `standalone` or `auto`"), "{}", out.stderr);
    let out = repo.berth_with(&["doctor"], &[("BERTH_COMPOSE", "v3")]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stdout.contains("✗ compose: BERTH_COMPOSE"), "{}", out.stdout);
}

/// `pull = "always"` pulls before `up`: a new image pushed under the same tag replaces the
/// container; a stack without it keeps the image it has.
#[test]
fn pull_always_runs_the_image_the_registry_has_now() {
    let f = Fixture::bare(&["pullalways", "pulldefault"]);
    let (always, default) = (f.stacks[0].clone(), f.stacks[1].clone());
    let registry = Registry::start();
    let image = registry.push(&always);
    let old = docker_out(&["image", "inspect", "--format", "{{.Id}}", IMAGE]);
    let repo = &f.repo;
    let compose = format!(
        "services:\n  app:\n    image: {image}\n    command: [\"sleep\", \"2147483647\"]\n    stop_signal: SIGKILL\n"
    );
    repo.stack(&always, &compose);
    repo.stack(&default, &compose);
    repo.write(
        "berth.toml",
        &format!(
            "[defaults]\nverify = {{ stable = \"1s\" }}\n[[server]]\nname = \"local\"\nregistry_auth = \"{}\"\n\
             [[stack]]\nname = \"{always}\"\npull = \"always\"\n",
            registry.creds.join("config.json").display()
        ),
    );
    repo.commit("one image, two pull policies");
    repo.berth(&["apply"]).ok();
    let image_of = |s: &str| inspect(&container(s, "app"), "{{.Image}}");
    assert_eq!(image_of(&always), old);
    assert_eq!(image_of(&default), old);
    let default_id = container(&default, "app");

    let new = registry.push_another(&image);
    assert_ne!(new, old);
    // Without a pull policy, compose keeps the image the engine has.
    repo.berth(&["deploy", &default]).ok();
    assert_eq!(container(&default, "app"), default_id);
    assert_eq!(image_of(&default), old);
    let out = repo.berth(&["deploy", &always]).ok();
    assert_eq!(image_of(&always), new, "{}", out.stdout);
    let pulled = |s: &str| {
        let id = repo.json(&["history", s, "--json"])[0]["id"].to_string();
        repo.berth(&["logs", &id]).ok().stdout.lines().any(|l| l.starts_with("$ ") && l.ends_with(" pull"))
    };
    assert!(pulled(&always) && !pulled(&default));
    assert_eq!(image_of(&default), old, "the stack without `pull` changed image");
}
