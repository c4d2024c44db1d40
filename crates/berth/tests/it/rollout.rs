//! Start-first rollouts on the real engine: a client on the project's network keeps getting answers
//! through a deploy, a new version that fails its health check leaves the old containers serving,
//! and `validate` refuses what cannot run twice.

use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// A busybox web server `web` answering `version` after a second of start-up (as real services take),
/// with a health check that passes when `healthy`.
fn web(version: &str, healthy: bool) -> String {
    let health = if healthy {
        r#"["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]"#
    } else {
        r#"["CMD", "false"]"#
    };
    format!(
        r#"services:
  web:
    image: {IMAGE}
    environment:
      VERSION: {version}
    command:
      - sh
      - -c
      - |
        mkdir -p /tmp/w
        echo {version} > /tmp/w/index.html
        sleep 1
        exec httpd -f -p 8080 -h /tmp/w
    healthcheck:
      test: {health}
      interval: 1s
      timeout: 2s
      retries: 2
"#
    )
}

const START_FIRST: &str = "[defaults]\nverify = { timeout = \"60s\", stable = \"2s\" }\nrollout = { order = \"start-first\", drain = \"1s\" }\n";
const RECREATE: &str = "[defaults]\nverify = { timeout = \"60s\", stable = \"2s\" }\n";

/// A client container on `stack`'s network asking `web` (resolved anew each time) for `/` in a loop, one line per request:
/// `ok <body>` or `FAIL`. Removed with the stack's [`Cleanup`] (it carries the `berth.stack` label).
struct Client {
    id: String,
}

impl Client {
    fn start(stack: &str) -> Client {
        // busybox's static wget crashes on remote hosts and cannot resolve names (no NSS): nslookup
        // asks Docker's DNS itself, and nc speaks HTTP/1.0. A failed try is tried once more, resolved
        // anew, as reverse proxies retry a refused or unreachable upstream: an address resolved just
        // before the old container left the network is `RETRY`, a failed retry too is `FAIL`.
        let script = "get() { \
              ip=$(nslookup web 2>/dev/null | awk '/^Address: /{print $2; exit}'); \
              r=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 \"$ip\" 8080 2>/dev/null); \
              [ -n \"$ip\" ] && [ \"${r#HTTP/1.? 200}\" != \"$r\" ]; }; \
            while true; do \
              if get; then echo \"ok $(echo \"$r\" | tail -n 1)\"; \
              else echo RETRY; if get; then echo \"ok $(echo \"$r\" | tail -n 1)\"; else echo FAIL; fi; fi; \
              usleep 50000; done";
        let out = Command::new("docker")
            .args(["run", "-d", "--label", &format!("berth.stack={stack}"), "--network", &format!("{stack}_default")])
            .args([IMAGE, "sh", "-c", script])
            .output()
            .unwrap();
        assert!(out.status.success(), "client: {}", String::from_utf8_lossy(&out.stderr));
        let c = Client { id: String::from_utf8_lossy(&out.stdout).trim().to_string() };
        wait_for("the client's first answer", Duration::from_secs(120), || {
            c.lines().iter().any(|l| l.starts_with("ok")).then_some(())
        });
        c
    }

    fn lines(&self) -> Vec<String> {
        docker_out(&["logs", &self.id]).lines().map(str::to_string).collect()
    }

    /// The lines logged after the first `skip`, once the client answered `until` (so the window
    /// covers the whole deploy and the new version's first answers).
    fn since(&self, skip: usize, until: &str) -> Vec<String> {
        let want = format!("ok {until}");
        // Generous: on a loaded machine the client's lookups and the engine's logs are slow.
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let l = self.lines();
            if l.iter().skip(skip).any(|x| *x == want) {
                return l.into_iter().skip(skip).collect();
            }
            if std::time::Instant::now() > deadline {
                let state = docker_out(&["inspect", "--format", "{{.State.Status}}", &self.id]);
                let tail: Vec<&String> = l.iter().rev().take(20).collect();
                panic!("the client did not see {until} within 120 s (client {state}); its last lines: {tail:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn failures(lines: &[String]) -> usize {
    lines.iter().filter(|l| l.as_str() == "FAIL").count()
}

/// Running container ids of `stack`'s service `web`, sorted.
fn web_ids(stack: &str) -> Vec<String> {
    containers(stack).into_iter().filter(|(s, _)| s == "web").map(|(_, id)| id).collect()
}

#[test]
fn start_first_keeps_answering_through_a_deploy_while_recreate_drops_requests() {
    let f = Fixture::bare(&["sf"]);
    // Swarm tests running beside this one made the service's name unresolvable mid-deploy.
    let _calm = crate::common::swarm::calm();
    let s = f.stack();
    let repo = &f.repo;
    repo.write("berth.toml", RECREATE);
    repo.stack(&s, &web("v1", true));
    repo.commit("v1");
    repo.berth(&["apply"]).ok();
    let client = Client::start(&s);

    // recreate: compose stops the old container before the new one answers.
    let mark = client.lines().len();
    repo.stack(&s, &web("v2", true));
    repo.commit("v2");
    repo.berth(&["apply"]).ok();
    let recreate = client.since(mark, "v2");
    assert!(failures(&recreate) > 0, "recreate dropped nothing: {recreate:?}");

    // start-first: the new container answers before the old one leaves.
    repo.write("berth.toml", START_FIRST);
    for v in ["v3", "v4"] {
        let old = web_ids(&s);
        let mark = client.lines().len();
        repo.stack(&s, &web(v, true));
        repo.commit(v);
        repo.berth(&["apply"]).ok();
        let seen = client.since(mark, v);
        if failures(&seen) > 0 {
            // The deploy's own log (every engine command, timed) says what the client saw fail.
            let id = repo.json(&["history", &s, "--json"])[0]["id"].to_string();
            let log = repo.berth(&["logs", id.trim_matches('"')]).stdout;
            panic!("start-first dropped requests during {v}: {seen:?}\n{log}");
        }
        let new = web_ids(&s);
        assert_eq!(new.len(), 1, "back to the declared scale: {new:?}");
        assert!(!old.contains(&new[0]), "a new container serves {v}");
        assert!(inspect(&new[0], "{{json .Config.Env}}").contains(&format!("VERSION={v}")));
        // The old version is gone from the answers once the new one answered.
        let after = client.since(client.lines().len(), v);
        assert!(after.iter().all(|l| l == &format!("ok {v}") || l == "RETRY"), "{after:?}");
    }
    let hist = repo.json(&["history", &s, "--json"]);
    assert_eq!(hist[0]["status"], "succeeded", "{}", hist[0]);
    let log = repo.berth(&["logs", hist[0]["id"].to_string().trim_matches('"')]).ok().stdout;
    assert!(log.contains("--no-recreate") && log.contains("network disconnect"), "{log}");
}

#[test]
fn a_new_version_failing_its_health_check_leaves_the_old_containers_serving() {
    let f = Fixture::bare(&["sfbad"]);
    let s = f.stack();
    let repo = &f.repo;
    repo.write("berth.toml", START_FIRST);
    repo.stack(&s, &web("v1", true));
    repo.commit("v1");
    repo.berth(&["apply"]).ok();
    let client = Client::start(&s);
    let before = web_ids(&s);
    assert_eq!(before.len(), 1);

    let mark = client.lines().len();
    repo.stack(&s, &web("v2", false));
    repo.commit("v2 with a failing health check");
    let out = repo.berth(&["apply"]);
    assert_eq!(out.code, 1, "the deploy failed: {}{}", out.stdout, out.stderr);
    assert_eq!(web_ids(&s), before, "the same containers serve");
    let all = docker_out(&["ps", "-aq", "--no-trunc", "--filter", &format!("label=com.docker.compose.project={s}")]);
    assert_eq!(
        all.split_whitespace().collect::<Vec<_>>(),
        before.iter().map(String::as_str).collect::<Vec<_>>(),
        "the new container was removed"
    );
    assert!(inspect(&before[0], "{{json .Config.Env}}").contains("VERSION=v1"));
    let seen: Vec<String> = client.lines().into_iter().skip(mark).collect();
    assert_eq!(failures(&seen), 0, "{seen:?}");
    assert!(seen.iter().all(|l| l == "ok v1"), "only v1 answered: {seen:?}");

    let hist = repo.json(&["history", &s, "--json"]);
    assert_eq!(hist[0]["status"], "failed", "{}", hist[0]);
    let reason = hist[0]["reason"].as_str().unwrap();
    assert!(reason.contains("start-first rollout of `web`"), "{reason}");
    assert!(reason.contains("unhealthy") && reason.contains("kept serving"), "{reason}");

    // A fixed deploy rolls out over the same old container.
    repo.stack(&s, &web("v3", true));
    repo.commit("v3");
    repo.berth(&["apply"]).ok();
    let now = web_ids(&s);
    assert_eq!(now.len(), 1);
    assert_ne!(now, before);
}

#[test]
fn validate_refuses_what_cannot_run_beside_itself() {
    let repo = Repo::new();
    repo.write("berth.toml", "[[stack]]\nname = \"app\"\nrollout = \"start-first\"\n");
    repo.stack(
        "app",
        &format!(
            "services:\n  web:\n    image: {IMAGE}\n    container_name: web\n    ports:\n      - \"8080:80\"\n  db:\n    image: {IMAGE}\n    network_mode: host\n  api:\n    image: {IMAGE}\n    ports: [\"80\"]\n"
        ),
    );
    repo.commit("start-first with fixed names and ports");
    for args in [&["validate"][..], &["validate", "--ref", "HEAD"], &["plan"]] {
        let out = repo.berth(args);
        assert_eq!(out.code, 2, "berth {args:?}: {}{}", out.stdout, out.stderr);
        for (line, key) in [(4, "container_name"), (5, "ports"), (9, "network_mode")] {
            assert!(
                out.stderr.contains(&format!("stacks/app/compose.yaml:{line}:5"))
                    && out.stderr.contains(&format!("uses `{key}`")),
                "berth {args:?} names {key} at line {line}: {}",
                out.stderr
            );
        }
        assert!(out.stderr.contains("reverse proxy"), "{}", out.stderr);
        assert!(!out.stderr.contains("`api`"), "a container port alone scales: {}", out.stderr);
    }
    // Keeping the offending services on recreate is allowed.
    repo.write(
        "berth.toml",
        "[[stack]]\nname = \"app\"\n[stack.rollout]\norder = \"start-first\"\nservices = { web = \"recreate\", db = \"recreate\" }\n",
    );
    repo.commit("web and db recreate");
    repo.berth(&["validate"]).ok();
}

/// The swarm's own update order of service `svc` of stack `stack` (`null` when unset).
fn update_order(stack: &str, svc: &str) -> String {
    docker_out(&["service", "inspect", "--format", "{{json .Spec.UpdateConfig}}", &format!("{stack}_{svc}")])
}

#[test]
fn a_swarm_stack_rolls_out_start_first_through_its_update_config() {
    docker();
    let s = unique("swsf");
    let _swarm = crate::common::swarm::Swarm::join(vec![s.clone()]);
    let repo = Repo::new();
    repo.write(
        "berth.toml",
        &format!(
            "[defaults]\nverify = {{ timeout = \"90s\", stable = \"1s\" }}\n[[stack]]\nname = \"{s}\"\nmode = \"swarm\"\n\
             rollout = {{ order = \"start-first\", services = {{ side = \"recreate\" }} }}\n"
        ),
    );
    let stack = |color: &str| {
        let svc = |name: &str, extra: &str| {
            format!(
                "  {name}:\n    image: {IMAGE}\n    command: [\"sleep\", \"2147483647\"]\n    environment:\n      \
                 COLOR: {color}\n    deploy:\n      replicas: 1\n{extra}"
            )
        };
        format!(
            "services:\n{}{}{}",
            svc("app", ""),
            svc("own", "      update_config:\n        order: stop-first\n"),
            svc("side", "")
        )
    };
    repo.stack(&s, &stack("red"));
    repo.commit("swarm red");
    let out = repo.berth(&["apply"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(update_order(&s, "app").contains(r#""Order":"start-first""#), "{}", update_order(&s, "app"));
    // A service's own order wins; a service berth rolls out `recreate` keeps swarm's default.
    assert!(update_order(&s, "own").contains(r#""Order":"stop-first""#), "{}", update_order(&s, "own"));
    assert!(!update_order(&s, "side").contains("start-first"), "{}", update_order(&s, "side"));

    // An update converges: berth waits for the task of the new spec (same image, new environment).
    repo.stack(&s, &stack("green"));
    repo.commit("swarm green");
    let out = repo.berth(&["apply"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let h = repo.json(&["history", &s, "--json"]);
    assert_eq!(h[0]["status"], "succeeded", "{}", h[0]);
    let log = repo.berth(&["logs", &h[0]["id"].to_string()]).stdout;
    assert!(log.contains("1/1 running"), "{log}");
    assert!(update_order(&s, "app").contains(r#""Order":"start-first""#), "{}", update_order(&s, "app"));
    assert_eq!(crate::common::swarm::running_tasks(&format!("{s}_app")), 1);
    let env = crate::common::swarm::service_env(&format!("{s}_app"));
    assert!(env.contains("COLOR=green"), "{env}");
}
