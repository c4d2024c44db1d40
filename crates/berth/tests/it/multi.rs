//! Several servers, swarm stacks, dependency-ordered parallel deploys, hooks and bootstrap.

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use crate::common::swarm::Swarm;
use crate::common::*;

#[test]
fn each_stack_goes_to_its_own_server() {
    let f = Fixture::bare(&["remote", "local"]);
    let (remote, local) = (f.stacks[0].clone(), f.stacks[1].clone());
    let proxy = Relay::start();
    let repo = &f.repo;
    repo.write(
        "berth.toml",
        &format!("[defaults]\nverify = {{ stable = \"1s\" }}\n[[server]]\nname = \"edge\"\ndocker = \"tcp://127.0.0.1:{}\"\n", proxy.port),
    );
    repo.write(&format!("nodes/edge/{remote}/compose.yaml"), &sleeper(&["app"]));
    repo.stack(&local, &sleeper(&["app"]));
    repo.commit("two servers");
    let plan = repo.json(&["plan", "--json"]);
    assert_eq!(step(&plan, &remote)["server"], "edge");
    assert_eq!(step(&plan, &local)["server"], "local");
    repo.berth(&["apply"]).ok();
    container(&remote, "app");
    container(&local, "app");
    assert!(proxy.saw(&remote), "the edge stack did not go through the edge endpoint");
    assert!(!proxy.saw(&local), "the local stack went through the edge endpoint");
    let doc = repo.berth(&["doctor"]).ok();
    assert!(
        doc.stdout.contains("✓ server edge: Docker") && doc.stdout.contains(&format!("127.0.0.1:{}", proxy.port)),
        "{}",
        doc.stdout
    );
}

/// Hooks run where the stack runs: a local hook's `docker` reaches the stack's server (here a
/// second endpoint), and an `on = "engine"` hook runs in a one-shot container on that engine
/// with the commit's files; a hook script missing from the commit fails `validate`.
#[test]
fn hooks_reach_the_stacks_engine_locally_and_in_a_container_there() {
    let f = Fixture::bare(&["hooked"]);
    let s = f.stack();
    let marker = unique("hookvol");
    struct Volume(String);
    impl Drop for Volume {
        fn drop(&mut self) {
            let _ = Command::new("docker").args(["volume", "rm", "-f", &self.0]).output();
        }
    }
    let _v = Volume(marker.clone());
    let proxy = Relay::start();
    let out = tempfile::tempdir().unwrap();
    let repo = &f.repo;
    repo.write(
        "berth.toml",
        &format!(
            "[defaults]\nverify = {{ stable = \"1s\" }}\n[[server]]\nname = \"edge\"\ndocker = \"tcp://127.0.0.1:{port}\"\n\
             [[stack]]\nname = \"{s}\"\nserver = \"edge\"\npath = \"stacks/app\"\nenv = {{ GREETING = \"hi\" }}\n\
             pre_deploy = [\"sh\", \"scripts/prepare.sh\", \"{marker}\", \"{o}/local.txt\"]\n\
             post_deploy = {{ run = [\"sh\", \"check.sh\"], on = \"engine\", image = \"{IMAGE}\", volumes = [\"{o}:/out\"] }}\n",
            port = proxy.port,
            o = out.path().display()
        ),
    );
    // At the repository root: found there because the stack folder has no `scripts/`.
    repo.write(
        "scripts/prepare.sh",
        "docker volume create \"$1\" >/dev/null || exit 1\n\
         echo \"$DOCKER_HOST|$BERTH_STACK|$BERTH_SERVER|$BERTH_HOOK|$BERTH_COMMIT|$(pwd)|$BERTH_STACK_DIR|$GREETING\" > \"$2\"\n",
    );
    repo.write("stacks/app/compose.yaml", &sleeper(&["app"]));
    repo.write("stacks/app/check.sh", "echo \"$(cat note.txt)|$BERTH_HOOK|$BERTH_STACK|$(pwd)\" > /out/engine.txt\n");
    repo.write("stacks/app/note.txt", "from the commit");
    let commit = repo.commit("hooks");
    repo.berth(&["apply"]).ok();
    let h = repo.json(&["history", &s, "--json"]);
    assert_eq!(h[0]["status"], "succeeded", "{}", h[0]);
    // The local hook's `docker volume create` went to the stack's endpoint.
    assert!(proxy.saw(&marker), "the pre_deploy hook's docker call did not reach the edge endpoint");
    let local = std::fs::read_to_string(out.path().join("local.txt")).unwrap();
    let f: Vec<&str> = local.trim().split('|').collect();
    assert_eq!(f[..5], [&format!("tcp://127.0.0.1:{}", proxy.port), &s, "edge", "pre_deploy", &commit][..], "{local}");
    assert!(f[5].ends_with("/stacks/app") && f[6] == f[5] && f[7] == "hi", "{local}");
    // The engine hook saw the commit's files in its folder; its container is gone.
    let engine = std::fs::read_to_string(out.path().join("engine.txt")).unwrap();
    assert_eq!(engine.trim(), format!("from the commit|post_deploy|{s}|/berth/stacks/app"));
    assert!(proxy.saw("berth.hook"), "the one-shot container was not created through the edge endpoint");
    assert_eq!(docker_out(&["ps", "-aq", "--filter", &format!("label=berth.stack={s}")]), "");

    // A hook script that is not in the commit is a configuration error.
    repo.remove("scripts/prepare.sh");
    repo.commit("script gone");
    let v = repo.berth(&["validate"]);
    assert_eq!(v.code, 2, "{}{}", v.stdout, v.stderr);
    assert!(v.stderr.contains("pre_deploy: script `scripts/prepare.sh` does not exist in the commit"), "{}", v.stderr);
}

#[test]
fn a_dag_deploys_in_order_in_parallel_and_blocks_behind_a_failure() {
    docker();
    let names: Vec<String> = ["a", "b", "c", "d", "e"].iter().map(|n| unique(n)).collect();
    let _c = Cleanup(names.clone());
    let (a, b, c, d, e) = (&names[0], &names[1], &names[2], &names[3], &names[4]);
    let timeline = tempfile::NamedTempFile::new().unwrap();
    let tl = timeline.path().display().to_string();
    let repo = Repo::new();
    // b → c → d is a chain; a and e are independent; c's pre-deploy hook fails.
    let hook = |fail: bool| {
        format!(
            "pre_deploy = [\"sh\", \"-c\", \"echo start $BERTH_STACK $(date +%s%N) >> {tl}; sleep 1; echo end $BERTH_STACK $(date +%s%N) >> {tl}; echo env $BERTH_STACK $BERTH_COMMIT $BERTH_SERVER $GREETING >> {tl}; exit {}\"]\n",
            if fail { 1 } else { 0 }
        )
    };
    let mut cfg = String::from("[berth]\nmax_parallel = 4\n[defaults]\nverify = { stable = \"1s\" }\n");
    for n in [a, b, e] {
        cfg.push_str(&format!("[[stack]]\nname = \"{n}\"\nenv = {{ GREETING = \"hi\" }}\n{}", hook(false)));
    }
    cfg.push_str(&format!("[[stack]]\nname = \"{c}\"\nafter = [\"{b}\"]\n{}", hook(true)));
    cfg.push_str(&format!("[[stack]]\nname = \"{d}\"\nafter = [\"{c}\"]\n{}", hook(false)));
    repo.write("berth.toml", &cfg);
    for n in &names {
        repo.stack(n, &sleeper(&["app"]));
    }
    let commit = repo.commit("five stacks");
    let out = repo.berth(&["apply"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    for n in [a, b, e] {
        container(n, "app");
    }
    assert!(containers(c).is_empty() && containers(d).is_empty());
    assert_eq!(repo.json(&["history", c, "--json"])[0]["status"], "failed");
    assert!(repo.json(&["history", c, "--json"])[0]["reason"].as_str().unwrap().contains("pre_deploy"));
    assert_eq!(repo.json(&["history", d, "--json"])[0]["status"], "blocked");

    let text = std::fs::read_to_string(timeline.path()).unwrap();
    let at = |what: &str, n: &str| -> u128 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{what} {n} ")).and_then(|t| t.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no `{what} {n}` in\n{text}"))
    };
    // Independent stacks overlap; a dependent starts only after its dependency finished.
    assert!(at("start", e) < at("end", a) && at("start", a) < at("end", e), "a and e did not overlap:\n{text}");
    assert!(at("start", c) > at("end", b), "c started before b finished:\n{text}");
    assert!(!text.contains(&format!("start {d} ")), "d ran although c failed:\n{text}");
    assert!(text.contains(&format!("env {a} {commit} local hi")), "hook environment:\n{text}");
}

#[test]
fn bootstrap_brings_up_manual_stacks_in_order_once() {
    let f = Fixture::bare(&["vault", "proxy"]);
    let (vault, proxy) = (f.stacks[0].clone(), f.stacks[1].clone());
    let repo = &f.repo;
    repo.write(
        "berth.toml",
        &format!(
            "[defaults]\nverify = {{ stable = \"1s\" }}\n[[stack]]\nname = \"{vault}\"\npath = \"bootstrap/{vault}\"\nmanual = true\n[[stack]]\nname = \"{proxy}\"\npath = \"bootstrap/{proxy}\"\nmanual = true\nafter = [\"{vault}\"]\n"
        ),
    );
    repo.write(&format!("bootstrap/{vault}/compose.yaml"), &sleeper(&["v"]));
    repo.write(&format!("bootstrap/{proxy}/compose.yaml"), &sleeper(&["p"]));
    repo.commit("bootstrap tier");
    let out = repo.berth(&["apply"]).ok();
    assert!(out.stdout.contains("nothing to deploy"), "apply must never deploy manual stacks: {}", out.stdout);
    let out = repo.berth(&["bootstrap"]).ok();
    let first_vault = out.stdout.find(&format!("→ {vault}")).unwrap();
    let first_proxy = out.stdout.find(&format!("→ {proxy}")).unwrap();
    assert!(first_vault < first_proxy, "{}", out.stdout);
    container(&vault, "v");
    container(&proxy, "p");
    let again = repo.berth(&["bootstrap"]).ok();
    assert!(again.stdout.contains("nothing to deploy"), "{}", again.stdout);
}

#[test]
fn validate_warns_about_options_swarm_ignores() {
    let repo = Repo::new();
    repo.write("stacks/web/compose.yaml", "services:\n  web:\n    image: x\n    container_name: web\n    build: .\n");
    repo.write("berth.toml", "[[stack]]\nname = \"web\"\nmode = \"swarm\"\n");
    let out = repo.berth(&["validate"]).ok();
    assert!(out.stderr.contains("uses `container_name`") && out.stderr.contains("uses `build`"), "{}", out.stderr);
    assert!(out.stderr.contains("mode = \"compose\""), "{}", out.stderr);
}

#[test]
fn swarm_stacks_deploy_converge_and_roll_back() {
    docker();
    let s = unique("swarm");
    let _swarm = Swarm::join(vec![s.clone()]);
    let repo = Repo::new();
    repo.write(
        "berth.toml",
        &format!("[defaults]\nverify = {{ timeout = \"60s\", stable = \"2s\" }}\n[[stack]]\nname = \"{s}\"\nmode = \"swarm\"\n"),
    );
    let stack = |image: &str, color: &str| {
        format!(
            "services:\n  app:\n    image: {image}\n    command: [\"sleep\", \"2147483647\"]\n    environment:\n      COLOR: {color}\n    deploy:\n      replicas: 2\n"
        )
    };
    repo.stack(&s, &stack(IMAGE, "red"));
    repo.commit("swarm red");
    let out = repo.berth(&["apply"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let env = crate::common::swarm::service_env(&format!("{s}_app"));
    assert!(env.contains("COLOR=red"), "{env}");
    let verify = repo.berth(&["logs", &repo.json(&["history", &s, "--json"])[0]["id"].to_string()]).stdout;
    assert!(verify.contains("2/2 running"), "{verify}");

    // An image that cannot exist: tasks keep failing, berth rolls back to red.
    repo.stack(&s, &stack("berth-test/does-not-exist:1", "blue"));
    repo.commit("swarm broken");
    let out = repo.berth(&["apply"]);
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    let h = repo.json(&["history", &s, "--json"]);
    assert_eq!(h[0]["status"], "rolled_back", "{}", h[0]);
    let env = crate::common::swarm::service_env(&format!("{s}_app"));
    assert!(env.contains("COLOR=red"), "{env}");
    wait_for("red tasks to run", Duration::from_secs(60), || {
        (crate::common::swarm::running_tasks(&format!("{s}_app")) == 2).then_some(())
    });
}

/// Services of a swarm stack, by name.
fn swarm_services(stack: &str) -> Vec<String> {
    let filter = format!("label=com.docker.stack.namespace={stack}");
    docker_out(&["service", "ls", "--filter", &filter, "--format", "{{.Name}}"]).lines().map(str::to_string).collect()
}

#[test]
fn swarm_stacks_gone_from_the_repo_are_pruned_and_stacks_berth_did_not_deploy_are_left_alone() {
    docker();
    let (keep, gone, by_hand) = (unique("skeep"), unique("sgone"), unique("shand"));
    let _swarm = Swarm::join(vec![keep.clone(), gone.clone(), by_hand.clone()]);
    let repo = Repo::new();
    repo.write("berth.toml", "[berth]\nprune = true\n[defaults]\nmode = \"swarm\"\nverify = { stable = \"1s\" }\n");
    for n in [&keep, &gone] {
        repo.stack(n, &sleeper(&["app"]));
    }
    repo.commit("two swarm stacks");
    repo.berth(&["apply"]).ok();
    // Deployed by hand, not by berth, and matching no stack of the repository.
    let hand = tempfile::tempdir().unwrap();
    std::fs::write(hand.path().join("compose.yaml"), sleeper(&["app"])).unwrap();
    let o = Command::new("docker")
        .args(["stack", "deploy", "--compose-file"])
        .arg(hand.path().join("compose.yaml"))
        .arg(&by_hand)
        .output()
        .unwrap();
    assert!(o.status.success(), "docker stack deploy: {}", String::from_utf8_lossy(&o.stderr));
    for n in [&keep, &gone, &by_hand] {
        assert_eq!(swarm_services(n), [format!("{n}_app")]);
    }

    repo.remove(&format!("stacks/{gone}"));
    repo.commit("drop one");
    let plan = repo.json(&["plan", "--json"]);
    let removal = step(&plan, &gone);
    assert_eq!(
        (removal["action"].as_str(), removal["reason"].as_str()),
        (Some("remove"), Some("removed")),
        "{removal}"
    );
    assert!(!plan["steps"].as_array().unwrap().iter().any(|s| s["stack"] == by_hand.as_str()), "{plan}");
    let out = repo.berth(&["apply"]).ok();
    assert!(out.stdout.contains(&format!("- {gone}")) && out.stdout.contains("removed"), "{}", out.stdout);
    assert!(swarm_services(&gone).is_empty(), "the removed stack's services remain");
    let namespace = format!("label=com.docker.stack.namespace={gone}");
    wait_for("the removed stack's containers to go", Duration::from_secs(60), || {
        docker_out(&["ps", "-aq", "--filter", &namespace]).is_empty().then_some(())
    });
    assert_eq!(swarm_services(&keep), [format!("{keep}_app")]);
    assert_eq!(swarm_services(&by_hand), [format!("{by_hand}_app")], "a stack berth did not deploy was touched");
    let h = repo.json(&["history", &gone, "--json"]);
    assert_eq!(h[0]["status"], "removed", "{}", h[0]);
    let log = repo.berth(&["logs", &h[0]["id"].to_string()]).ok().stdout;
    assert!(log.contains(&format!("docker stack rm {gone}")), "{log}");
    let status = repo.json(&["status", "--json"]);
    let row = status.as_array().unwrap().iter().find(|r| r["stack"] == gone.as_str()).unwrap();
    assert_eq!((row["status"].as_str(), row["in_repo"].as_bool()), (Some("removed"), Some(false)), "{row}");
    let again = repo.berth(&["apply"]).ok();
    assert!(!again.stdout.contains(&gone), "{}", again.stdout);
}

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn private_registry_pulls_use_the_servers_auth_file() {
    let f = Fixture::bare(&["registry"]);
    let s = f.stack();
    let registry = crate::common::registry::Registry::start();
    let image = registry.push(&s);
    let creds = registry.creds.clone();

    let repo = &f.repo;
    repo.stack(&s, &format!("services:\n  app:\n    image: {image}\n    command: [\"sleep\", \"2147483647\"]\n    stop_signal: SIGKILL\n"),
    );
    repo.write("berth.toml", "[defaults]\nverify = { stable = \"1s\" }\n");
    repo.commit("private image");
    let out = repo.berth(&["apply"]);
    assert_eq!(out.code, 1, "a pull without credentials must fail: {}", out.stdout);

    repo.write(
        "berth.toml",
        &format!(
            "[defaults]\nverify = {{ stable = \"1s\" }}\n[[server]]\nname = \"local\"\nregistry_auth = \"{}\"\n",
            creds.join("config.json").display()
        ),
    );
    repo.commit("with registry credentials");
    repo.berth(&["apply"]).ok();
    assert_eq!(inspect(&container(&s, "app"), "{{.Config.Image}}"), image);
}

#[test]
fn a_tls_endpoint_with_client_certificates_works_for_cli_and_engine_api() {
    docker();
    need("openssl", "openssl");
    need("stunnel", "stunnel4");
    let s = unique("tls");
    // Swarm mode: the docker CLI and the Engine API client both speak TLS with client
    // certificates; the standalone docker-compose 1.x fails its own certificate check here.
    let _swarm = Swarm::join(vec![s.clone()]);
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path());
    sign_cert(dir.path(), "server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
    sign_cert(dir.path(), "client", "extendedKeyUsage=clientAuth\n");
    let port = free_port();
    // The engine behind TLS that demands a client certificate, as a remote `tcp://host:2376` would.
    let conf = format!(
        "foreground = yes\npid =\n[docker]\naccept = 127.0.0.1:{port}\nconnect = /var/run/docker.sock\ncert = {d}/server.pem\nkey = {d}/server.key\nCAfile = {d}/ca.pem\nverifyChain = yes\n",
        d = dir.path().display()
    );
    std::fs::write(dir.path().join("stunnel.conf"), conf).unwrap();
    let _tls = Child(
        Command::new("stunnel")
            .arg(dir.path().join("stunnel.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("stunnel is needed: apt-get install stunnel4"),
    );
    wait_for("the TLS endpoint", Duration::from_secs(10), || std::net::TcpStream::connect(("127.0.0.1", port)).ok());
    let p = |f: &str| dir.path().join(f).display().to_string();
    let repo = Repo::new();
    repo.write(
        "berth.toml",
        &format!(
            "[defaults]\nmode = \"swarm\"\nverify = {{ stable = \"1s\" }}\n[[server]]\nname = \"secure\"\ndocker = \"tcp://127.0.0.1:{port}\"\ntls = {{ ca = \"{}\", cert = \"{}\", key = \"{}\" }}\n",
            p("ca.pem"),
            p("client.pem"),
            p("client.key")
        ),
    );
    repo.write(&format!("nodes/secure/{s}/compose.yaml"), &sleeper(&["app"]));
    repo.commit("over tls");
    let out = repo.berth(&["apply"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let h = repo.json(&["history", &s, "--json"]);
    assert_eq!(h[0]["status"], "succeeded", "{}", h[0]);
    let id = h[0]["id"].to_string();
    assert!(repo.berth(&["logs", &id]).stdout.contains("1/1 running"), "converged through the TLS endpoint");
    assert_eq!(
        docker_out(&["service", "ls", "--filter", &format!("name={s}_app"), "--format", "{{.Replicas}}"]),
        "1/1"
    );
}
