//! `berth serve` end to end: a real server process, real HTTP, real git, the real engine.

use crate::common::server::{SECRET, Server};
use crate::common::*;
use serde_json::json;

#[test]
fn a_signed_push_redeploys_exactly_the_changed_stack() {
    let f = Fixture::bare(&["a", "b"]);
    let (a, b) = (f.stacks[0].clone(), f.stacks[1].clone());
    let repo = &f.repo;
    repo.stack(&a, &colored("red"));
    repo.stack(&b, &colored("blue"));
    let first = repo.commit("two stacks");
    let server = Server::start(repo);
    let startup = server.settle();
    assert_eq!(startup.len(), 2, "{startup:?}");
    assert!(startup.iter().all(|d| d["status"] == "succeeded" && d["trigger"] == "startup"), "{startup:?}");
    let a_id = container(&a, "app");
    let b_id = container(&b, "app");

    repo.stack(&b, &colored("green"));
    let second = repo.commit("b turns green");
    let (code, body) = server.push(&first, &second, "?wait=true");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["success"], true, "{body}");
    let deploys = body["deploys"].as_array().unwrap();
    assert_eq!(deploys.len(), 1, "{body}");
    assert_eq!(deploys[0]["stack"], b.as_str());
    assert_eq!(deploys[0]["commit"], second.as_str());
    assert_eq!(deploys[0]["trigger"], "webhook:github");

    let b_new = container(&b, "app");
    assert_ne!(b_new, b_id);
    assert!(inspect(&b_new, "{{json .Config.Env}}").contains("COLOR=green"));
    assert_eq!(container(&a, "app"), a_id, "the untouched stack was recreated");

    let health = server.get("/health").unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["repos"][0]["commit"], second.as_str());
}

#[test]
fn bad_requests_are_refused_and_deploy_nothing() {
    let f = Fixture::new(&["neg"]);
    let (s, repo, first) = (f.stack(), &f.repo, f.first.clone());
    let server = f.serve();
    repo.stack(&s, &colored("green"));
    let second = repo.commit("change");
    let before = server.deploys().len();

    let body = json!({"ref": "refs/heads/main", "before": first, "after": second}).to_string();
    let good = berth_core::webhook::sign(SECRET.as_bytes(), body.as_bytes());
    let wrong = berth_core::webhook::sign(b"not-the-secret", body.as_bytes());
    let push = |sig: Option<&str>, body: &str| {
        let mut h = vec![("X-GitHub-Event", "push")];
        if let Some(s) = sig {
            h.push(("X-Hub-Signature-256", s));
        }
        server.raw("/webhook", &h, body.as_bytes().to_vec())
    };
    assert_eq!(push(Some(&wrong), &body).0, 401, "wrong signature");
    assert_eq!(push(None, &body).0, 401, "missing signature");
    let malformed = "{\"ref\": ";
    let sig = berth_core::webhook::sign(SECRET.as_bytes(), malformed.as_bytes());
    assert_eq!(push(Some(&sig), malformed).0, 400, "malformed JSON");
    // Oversized: announce 2 MiB and read the answer before sending it (the server may
    // close the connection without reading a body it refuses).
    let big = vec![b'x'; 2 * 1024 * 1024];
    let sig = berth_core::webhook::sign(SECRET.as_bytes(), &big);
    let mut conn = std::net::TcpStream::connect(server.base.trim_start_matches("http://")).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\nX-Hub-Signature-256: {sig}\r\nContent-Length: {}\r\n\r\n",
        big.len()
    );
    std::io::Write::write_all(&mut conn, head.as_bytes()).unwrap();
    let _ = std::io::Write::write_all(&mut conn, &big[..64 * 1024]);
    let mut answer = [0u8; 64];
    let n = std::io::Read::read(&mut conn, &mut answer).unwrap();
    assert!(
        String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 413"),
        "oversized body: {}",
        String::from_utf8_lossy(&answer[..n])
    );

    let ping = json!({"zen": "Keep it logically awesome.", "hook_id": 1}).to_string();
    let sig = berth_core::webhook::sign(SECRET.as_bytes(), ping.as_bytes());
    let (code, _) =
        server.raw("/webhook", &[("X-GitHub-Event", "ping"), ("X-Hub-Signature-256", &sig)], ping.into_bytes());
    assert_eq!(code, 200, "ping");

    let other = json!({"ref": "refs/heads/feature", "before": first, "after": second}).to_string();
    let sig = berth_core::webhook::sign(SECRET.as_bytes(), other.as_bytes());
    let (code, body) = push(Some(&sig), &other);
    assert_eq!((code, body["status"].as_str()), (202, Some("ignored")), "{body}");
    assert!(body["reason"].as_str().unwrap().contains("feature"), "{body}");

    // /sync: unknown stack is a 404 naming it.
    let sync = json!({"services": ["no-such-stack"]}).to_string();
    let sig = berth_core::webhook::sign(SECRET.as_bytes(), sync.as_bytes());
    let (code, body) = server.raw("/sync", &[("X-Hub-Signature-256", &sig)], sync.into_bytes());
    assert_eq!(code, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("no-such-stack"), "{body}");
    // /deploy: unknown environment is a 400.
    let dep = json!({"env": "staging", "tag": "v1.2.4", "triggered_by": "ci"}).to_string();
    let sig = berth_core::webhook::sign(SECRET.as_bytes(), dep.as_bytes());
    let (code, body) = server.raw("/deploy", &[("X-Hub-Signature-256", &sig)], dep.into_bytes());
    assert_eq!(code, 400, "{body}");

    // API keys: wrong secret, and a scope that does not cover the stack.
    let url = format!("/api/v1/stacks/{s}/deploy");
    let r = server
        .http
        .post(server.url(&url))
        .header("X-Api-Key", &server.key)
        .header("X-Api-Secret", "bs_wrong")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let out = repo.berth(&["keys", "create", "--name", "narrow", "--scope", "deploy", "--stacks", "other-*"]).ok();
    let get = |n: &str| out.stdout.lines().find_map(|l| l.strip_prefix(n)).unwrap().trim().to_string();
    let (k, sec) = (get("key:"), get("secret:"));
    let r = server.http.post(server.url(&url)).header("X-Api-Key", &k).header("X-Api-Secret", &sec).send().unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = server
        .http
        .post(server.url("/api/v1/stacks/nope/deploy"))
        .header("X-Api-Key", &server.key)
        .header("X-Api-Secret", &server.secret)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);

    assert_eq!(server.deploys().len(), before, "a refused request deployed something");

    // The good signature does deploy; a replayed delivery id is ignored.
    let h = [("X-GitHub-Event", "push"), ("X-Hub-Signature-256", good.as_str()), ("X-GitHub-Delivery", "d-1")];
    let (code, _) = server.raw("/webhook?wait=true", &h, body_bytes(&first, &second));
    assert_eq!(code, 200);
    let (code, again) = server.raw("/webhook", &h, body_bytes(&first, &second));
    assert_eq!((code, again["status"].as_str()), (202, Some("ignored")), "{again}");
    assert_eq!(server.settle().len(), before + 1);
}

#[test]
fn a_redelivered_push_that_failed_is_synced_not_ignored_as_a_replay() {
    let f = Fixture::new(&["redeliver"]);
    let (s, repo, first) = (f.stack(), &f.repo, f.first.clone());
    let server = f.serve();
    repo.stack(&s, &colored("blue"));
    let second = repo.commit("blue");
    // The repository cannot be fetched: the delivery fails and says so.
    let moved = repo.path().with_extension("away");
    std::fs::rename(repo.path(), &moved).unwrap();
    let (code, body) = server.push_as(&first, &second, "", Some("delivery-1"));
    std::fs::rename(&moved, repo.path()).unwrap();
    assert_eq!(code, 502, "{body}");
    // The forge's "Redeliver" repeats the id: it is a new chance, not a replay.
    let (code, body) = server.push_as(&first, &second, "?wait=true", Some("delivery-1"));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["deploys"][0]["status"], "succeeded", "{body}");
    assert!(inspect(&container(&s, "app"), "{{json .Config.Env}}").contains("COLOR=blue"));
    // A delivery that was handled is a replay when it comes again.
    let (code, body) = server.push_as(&first, &second, "", Some("delivery-1"));
    assert_eq!((code, body["status"].as_str()), (202, Some("ignored")), "{body}");
}

fn body_bytes(first: &str, second: &str) -> Vec<u8> {
    json!({"ref": "refs/heads/main", "before": first, "after": second}).to_string().into_bytes()
}

#[test]
fn an_invalid_config_push_is_rejected_and_the_old_one_keeps_running() {
    let f = Fixture::new(&["cfg"]);
    let (s, repo, first) = (f.stack(), &f.repo, f.first.clone());
    let server = f.serve();
    let id = container(&s, "app");
    repo.write("berth.toml", "[[stack]]\nname = \"x\"\nwach = []\n");
    repo.stack(&s, &colored("green"));
    let bad = repo.commit("broken config");
    let (code, body) = server.push(&first, &bad, "?wait=true");
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["code"], "config_rejected");
    assert!(body["trace"][0].as_str().unwrap().contains("wach"), "{body}");
    let rej = server.get("/api/v1/config/rejections").unwrap();
    assert_eq!(rej["rejections"][0]["commit"], bad.as_str());
    assert_eq!(container(&s, "app"), id, "a rejected config touched the running stack");
    let health = server.get("/health").unwrap();
    assert_eq!(health["repos"][0]["commit"], first.as_str(), "the controller switched to the rejected config");
}

#[test]
fn a_storm_of_pushes_coalesces_and_ends_on_the_last_commit() {
    let f = Fixture::bare(&["storm"]);
    let (s, repo) = (f.stack(), &f.repo);
    repo.stack(&s, &colored("c0"));
    let mut prev = repo.commit("c0");
    let server = Server::start(repo);
    server.settle();
    let mut last = prev.clone();
    for i in 1..=20 {
        repo.stack(&s, &colored(&format!("c{i}")));
        last = repo.commit(&format!("c{i}"));
        // Several deliveries per commit, as a forge retrying would send.
        for _ in 0..5 {
            let (code, _) = server.push(&prev, &last, "");
            assert_eq!(code, 202);
        }
        let d = server.deploys();
        let queued = d.iter().filter(|x| x["stack"] == s.as_str() && x["status"] == "queued").count();
        let running = d.iter().filter(|x| x["stack"] == s.as_str() && x["status"] == "running").count();
        assert!(queued <= 1 && running <= 1, "queued {queued}, running {running}");
        prev = last.clone();
    }
    // A final push with wait settles everything.
    let (code, body) = server.push(&prev, &last, "?wait=true");
    assert!(code == 200 || code == 202, "{body}");
    let d = server.settle();
    let ours: Vec<_> = d.iter().filter(|x| x["stack"] == s.as_str()).collect();
    assert!(ours.len() < 100, "pushes were not coalesced: {} deploys", ours.len());
    let newest = ours.iter().find(|x| x["status"] == "succeeded").unwrap();
    assert_eq!(newest["commit"], last.as_str());
    assert!(inspect(&container(&s, "app"), "{{json .Config.Env}}").contains("COLOR=c20"));
}

#[test]
fn sigterm_lets_the_running_deploy_finish_and_leaves_nothing_running() {
    let f = Fixture::new(&["term"]);
    let (s, repo, first) = (f.stack(), &f.repo, f.first.clone());
    let mut server = f.serve();
    repo.stack(&s, &colored("green"));
    let second = repo.commit("two");
    let (code, _) = server.push(&first, &second, "");
    assert_eq!(code, 202);
    wait_for("the deploy to start", std::time::Duration::from_secs(60), || {
        server.deploys().iter().any(|d| d["commit"] == second.as_str() && d["status"] != "queued").then_some(())
    });
    let status = server.stop();
    assert!(status.success(), "berth serve exited with {status}");
    let hist = repo.json(&["history", &s, "--json"]);
    for h in hist.as_array().unwrap() {
        assert!(h["status"] != "running" && h["status"] != "queued", "left behind: {h}");
    }
    assert_eq!(hist[0]["status"], "succeeded", "{}", hist[0]);
}

#[test]
fn a_state_dir_and_repo_owned_by_another_user_still_sync() {
    let f = Fixture::new(&["owner"]);
    let (s, repo, first) = (f.stack(), &f.repo, f.first.clone());
    let server = f.serve();
    // Hand everything to another user, as when the state dir is a volume owned by a service account.
    for dir in [repo.path(), repo.state.path()] {
        let st = std::process::Command::new("chown").args(["-R", "65534:65534"]).arg(dir).status().unwrap();
        assert!(st.success());
    }
    repo.stack(&s, &colored("green"));
    let second = repo.commit("two");
    let (code, body) = server.push(&first, &second, "?wait=true");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["success"], true, "{body}");
    assert!(inspect(&container(&s, "app"), "{{json .Config.Env}}").contains("COLOR=green"));
}

#[test]
fn gitea_pushes_deploy_tags_rollback_and_watch_work_through_the_server() {
    let f = Fixture::bare(&["gitea"]);
    let (s, repo) = (f.stack(), &f.repo);
    repo.write(
        "berth.toml",
        "[defaults]\nverify = { stable = \"1s\" }\n[[environment]]\nname = \"staging\"\nservers = [\"local\"]\n",
    );
    repo.stack(&s, &colored("red"));
    let first = repo.commit("red");
    repo.git(&["tag", "v1.0.0"]);
    let server = Server::start(repo);
    server.settle();

    // A Gitea push, signed the Gitea way.
    repo.stack(&s, &colored("blue"));
    let second = repo.commit("blue");
    let body = json!({"ref": "refs/heads/main", "before": first, "after": second,
        "repository": {"full_name": "me/stacks", "clone_url": "https://gitea.example.com/me/stacks.git"},
        "pusher": {"login": "me"}})
    .to_string();
    let sig = berth_core::webhook::sign(SECRET.as_bytes(), body.as_bytes());
    let hex = sig.trim_start_matches("sha256=");
    let (code, _) = server.raw("/webhook", &[("X-Gitea-Event", "push"), ("X-Gitea-Signature", hex)], body.into_bytes());
    assert_eq!(code, 202);
    // `berth watch --commit` against the server waits for that commit's deploy.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["watch", "--commit", &second, "--server", &server.base, "--timeout", "2m"])
        .env("BERTH_API_KEY", &server.key)
        .env("BERTH_API_SECRET", &server.secret)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(inspect(&container(&s, "app"), "{{json .Config.Env}}").contains("COLOR=blue"));

    // POST /deploy of a tag to an environment.
    let dep = json!({"env": "staging", "tag": "v1.0.0", "triggered_by": "ci"}).to_string();
    let sig = berth_core::webhook::sign(SECRET.as_bytes(), dep.as_bytes());
    let (code, body) = server.raw("/deploy?wait=true", &[("X-Hub-Signature-256", &sig)], dep.into_bytes());
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["deploys"][0]["commit"], first.as_str(), "{body}");
    assert_eq!(body["deploys"][0]["trigger"], "deploy:ci");
    assert!(inspect(&container(&s, "app"), "{{json .Config.Env}}").contains("COLOR=red"));

    // The API's rollback puts back the success before the current one (blue).
    let (code, body) = server.post(&format!("/api/v1/stacks/{s}/rollback?wait=true"), &json!({}));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["success"], true, "{body}");
    assert!(inspect(&container(&s, "app"), "{{json .Config.Env}}").contains("COLOR=blue"));
    let detail = server.get(&format!("/api/v1/deploys/{}", body["deploys"][0]["id"])).unwrap();
    assert_eq!(detail["verify"]["converge"]["ok"], true, "{detail}");
}

#[test]
fn the_controller_notices_drift_and_heals_it() {
    let f = Fixture::bare(&["heal"]);
    let (s, repo) = (f.stack(), &f.repo);
    repo.write(
        "berth.toml",
        &format!("[berth]\ndrift_interval = \"2s\"\n[defaults]\nverify = {{ stable = \"1s\" }}\n[[stack]]\nname = \"{s}\"\nself_heal = true\n"),
    );
    repo.stack(&s, &colored("red"));
    repo.commit("one");
    let server = Server::start(repo);
    server.settle();
    let before = container(&s, "app");
    docker_out(&["rm", "-f", &before]);
    let healed = wait_for("the stack to be healed", std::time::Duration::from_secs(90), || {
        let d = server.deploys();
        d.iter().find(|x| x["trigger"] == "heal" && x["status"] == "succeeded").cloned()
    });
    assert_eq!(healed["stack"], s.as_str());
    assert!(inspect(&container(&s, "app"), "{{json .Config.Env}}").contains("COLOR=red"));
}

/// Samples of a Prometheus text exposition: (name, labels, value).
/// The samples of a Prometheus text exposition, parsed by the reference parser (the official Python
/// client's `text_string_to_metric_families`), which rejects malformed text.
fn parse_metrics(text: &str) -> Vec<(String, std::collections::BTreeMap<String, String>, f64)> {
    use std::io::Write;
    let python = pip_venv("prometheus-client==0.21.1").join("bin/python");
    let script = "import json, sys\nfrom prometheus_client.parser import text_string_to_metric_families as parse\n\
                  print(json.dumps([[s.name, s.labels, s.value] for f in parse(sys.stdin.read()) for s in f.samples]))";
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "not valid Prometheus text: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn metrics_move_with_deploys_and_webhooks() {
    let f = Fixture::bare(&["metrics"]);
    let (s, repo) = (f.stack(), &f.repo);
    repo.write("berth.toml", "[defaults]\nverify = { stable = \"1s\" }\n");
    repo.stack(&s, &colored("red"));
    let first = repo.commit("one");
    let server = Server::start(repo);
    server.settle();
    repo.stack(&s, &colored("blue"));
    let second = repo.commit("two");
    assert_eq!(server.push(&first, &second, "?wait=true").0, 200);
    let text = server.http.get(server.url("/metrics")).send().unwrap().text().unwrap();
    let samples = parse_metrics(&text);
    let value = |name: &str, want: &[(&str, &str)]| {
        samples
            .iter()
            .filter(|(n, l, _)| n == name && want.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
            .map(|(_, _, v)| *v)
            .sum::<f64>()
    };
    assert_eq!(value("berth_deploys_total", &[("stack", &s), ("outcome", "succeeded")]), 2.0, "{text}");
    assert_eq!(value("berth_webhook_requests_total", &[("provider", "github"), ("result", "ok")]), 1.0, "{text}");
    assert_eq!(value("berth_deploy_duration_seconds_count", &[("stack", &s)]), 2.0, "{text}");
    assert!(value("berth_last_success_timestamp_seconds", &[("stack", &s)]) > 1.7e9, "{text}");
    assert_eq!(value("berth_build_info", &[]), 1.0);
    assert!(samples.iter().any(|(n, _, _)| n == "berth_queue_depth"));
}

#[test]
fn the_controller_takes_down_a_stack_removed_from_the_repo_when_prune_is_on() {
    let f = Fixture::with(&["keep", "gone"], |_| {
        Some("[berth]\nprune = true\n[defaults]\nverify = { stable = \"1s\" }\n".into())
    });
    let (keep, gone) = (f.stacks[0].clone(), f.stacks[1].clone());
    let (repo, first) = (&f.repo, f.first.clone());
    let server = f.serve();
    let kept = container(&keep, "app");
    container(&gone, "app");

    repo.remove(&format!("stacks/{gone}"));
    let second = repo.commit("drop one");
    let (code, body) = server.push(&first, &second, "?wait=true");
    assert_eq!(code, 200, "{body}");
    let deploys = body["deploys"].as_array().unwrap();
    assert_eq!(deploys.len(), 1, "{body}");
    assert_eq!((deploys[0]["stack"].as_str(), deploys[0]["status"].as_str()), (Some(gone.as_str()), Some("removed")));
    assert!(deploys[0]["trigger"].as_str().is_some_and(|t| t.starts_with("prune:")), "{body}");
    assert!(containers(&gone).is_empty(), "the removed stack still runs");
    assert_eq!(container(&keep, "app"), kept, "the kept stack was touched");
    let log = server.get(&format!("/api/v1/deploys/{}/log", deploys[0]["id"])).unwrap();
    assert!(log["log"].as_str().is_some_and(|l| l.contains("down")), "{log}");

    // Removed once: the next push does not try again.
    let third = repo.commit("nothing");
    let (_, body) = server.push(&second, &third, "?wait=true");
    assert!(body["deploys"].as_array().is_some_and(|d| d.is_empty()), "{body}");
}
