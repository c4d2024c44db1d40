//! Fault injection on the real engine: the engine vanishing mid-deploy, git remote trouble, a state
//! directory that cannot be written, and a storm of webhooks.

use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::server::Server;
use crate::common::*;
use serde_json::Value;

/// A TCP endpoint in front of the local engine's socket that the test can take down (closing every
/// connection, as a dying daemon would) and bring back on the same port.
struct EngineProxy {
    port: u16,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EngineProxy {
    fn start(port: u16) -> EngineProxy {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (halt, open) = (stop.clone(), conns.clone());
        let thread = std::thread::spawn(move || {
            while !halt.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                let _ = client.set_nonblocking(false);
                if let Ok(c) = client.try_clone() {
                    open.lock().unwrap().push(c);
                }
                std::thread::spawn(move || relay_to_engine(client, None));
            }
        });
        EngineProxy { port, stop, conns, thread: Some(thread) }
    }

    /// Close the listener and cut every open connection.
    fn kill(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for EngineProxy {
    fn drop(&mut self) {
        self.kill();
    }
}

fn ours<'a>(deploys: &'a [Value], stack: &str) -> Vec<&'a Value> {
    deploys.iter().filter(|d| d["stack"] == stack).collect()
}

#[test]
fn an_engine_that_dies_mid_deploy_fails_it_clearly_and_the_deploy_is_retried_when_it_returns() {
    let f = Fixture::bare(&["engine"]);
    let s = f.stack();
    let mut proxy = EngineProxy::start(0);
    let hold = tempfile::tempdir().unwrap();
    let hold = hold.path().join("hold");
    let repo = &f.repo;
    repo.write(
        "berth.toml",
        &format!(
            "[defaults]\nverify = {{ stable = \"1s\" }}\n[[server]]\nname = \"edge\"\ndocker = \"tcp://127.0.0.1:{}\"\n\
             [[stack]]\nname = \"{s}\"\npath = \"nodes/edge/{s}\"\n\
             pre_deploy = [\"sh\", \"-c\", \"while [ -e {} ]; do sleep 0.1; done\"]\n",
            proxy.port,
            hold.display()
        ),
    );
    repo.write(&format!("nodes/edge/{s}/compose.yaml"), &colored("red"));
    let first = repo.commit("red");
    let server = Server::start(repo);
    let startup = server.settle();
    assert_eq!(ours(&startup, &s)[0]["status"], "succeeded", "{startup:?}");
    let before = container(&s, "app");

    // The pre-deploy hook holds the deploy while the engine goes away.
    std::fs::write(&hold, "").unwrap();
    repo.write(&format!("nodes/edge/{s}/compose.yaml"), &colored("green"));
    let second = repo.commit("green");
    assert_eq!(server.push(&first, &second, "").0, 202);
    wait_for("the deploy to run", Duration::from_secs(60), || {
        ours(&server.deploys(), &s)
            .iter()
            .any(|d| d["commit"] == second.as_str() && d["status"] == "running")
            .then_some(())
    });
    proxy.kill();
    std::fs::remove_file(&hold).unwrap();
    let failed = wait_for("the deploy to fail", Duration::from_secs(120), || {
        let d = server.deploys();
        ours(&d, &s).iter().find(|d| d["commit"] == second.as_str() && d["status"] == "failed").map(|d| (*d).clone())
    });
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("unreachable") && reason.contains("retries"), "unclear reason: {reason}");
    assert!(reason.contains(&format!("127.0.0.1:{}", proxy.port)), "the reason does not name the engine: {reason}");
    assert_eq!(container(&s, "app"), before, "a failed deploy against a dead engine changed what runs");

    // The engine comes back on the same address: the retry deploys the commit.
    let _back = EngineProxy::start(proxy.port);
    let retried = wait_for("the retry to succeed", Duration::from_secs(180), || {
        let d = server.deploys();
        ours(&d, &s).iter().find(|d| d["commit"] == second.as_str() && d["status"] == "succeeded").map(|d| (*d).clone())
    });
    assert!(retried["trigger"].as_str().is_some_and(|t| t.starts_with("retry:")), "{retried}");
    assert!(inspect(&container(&s, "app"), "{{json .Config.Env}}").contains("COLOR=green"));
    // State stays consistent: nothing left queued or running, every record final.
    let all = server.settle();
    assert!(ours(&all, &s).iter().all(|d| d["finished_at"].is_i64()), "{all:?}");
}

#[test]
fn git_remote_trouble_is_reported_and_touches_nothing_running() {
    let f = Fixture::bare(&["git"]);
    let (s, repo) = (f.stack(), &f.repo);
    repo.write("berth.toml", "[defaults]\nverify = { stable = \"1s\" }\n");
    repo.stack(&s, &colored("red"));
    let red = repo.commit("red");
    let server = Server::start(repo);
    server.settle();
    let running = container(&s, "app");
    let deploy = format!("/api/v1/stacks/{s}/deploy?wait=true");

    // Remote unreachable: the repository is gone.
    let moved = repo.path().with_extension("moved");
    std::fs::rename(repo.path(), &moved).unwrap();
    let (code, body) = server.post(&deploy, &Value::Null);
    std::fs::rename(&moved, repo.path()).unwrap();
    assert_eq!((code, body["code"].as_str()), (502, Some("fetch_failed")), "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("fetch")), "{body}");
    let health = server.get("/health").unwrap();
    assert_eq!(health["status"], "unhealthy", "{health}");
    assert!(health["repos"][0]["last_sync"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{health}");
    assert_eq!(container(&s, "app"), running);

    // Force-push: history rewritten, the new tip is not a descendant of what runs.
    repo.stack(&s, &colored("green"));
    let green = repo.commit("green");
    assert_eq!(server.push(&red, &green, "?wait=true").0, 200);
    repo.git(&["reset", "-q", "--hard", &red]);
    repo.stack(&s, &colored("blue"));
    let blue = repo.commit("blue, force-pushed over green");
    let (code, body) = server.push(&green, &blue, "?wait=true");
    assert_eq!((code, body["success"].as_bool()), (200, Some(true)), "{body}");
    assert_eq!(body["deploys"][0]["commit"], blue.as_str());
    assert!(inspect(&container(&s, "app"), "{{json .Config.Env}}").contains("COLOR=blue"));
    let running = container(&s, "app");

    // The branch is deleted: a clear error naming it, and what runs stays.
    repo.git(&["branch", "-m", "main", "renamed"]);
    let (code, body) = server.post(&deploy, &Value::Null);
    repo.git(&["branch", "-m", "renamed", "main"]);
    assert_eq!(code, 502, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("main")), "the error does not name the branch: {body}");
    assert_eq!(container(&s, "app"), running);
    let d = server.settle();
    assert!(ours(&d, &s).iter().all(|d| d["status"] == "succeeded"), "{d:?}");
}

/// A small tmpfs mounted over a directory for the test's lifetime.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).status();
        assert!(matches!(ok, Ok(s) if s.success()), "mounting a tmpfs needs root (CI runs as root)");
        Tmpfs(dir.to_path_buf())
    }

    fn remount(&self, opt: &str) {
        let ok = Command::new("mount").args(["-o", &format!("remount,{opt}")]).arg(&self.0).status();
        assert!(matches!(ok, Ok(s) if s.success()));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_state_dir_that_cannot_be_written_stops_deploys_before_they_touch_the_engine() {
    let f = Fixture::bare(&["ro"]);
    let (s, repo) = (f.stack(), &f.repo);
    let fs = Tmpfs::mount(repo.state.path(), "8m");
    repo.write("berth.toml", "[defaults]\nverify = { stable = \"1s\" }\n");
    repo.stack(&s, &colored("red"));
    repo.commit("red");
    repo.berth(&["apply"]).ok();
    let running = container(&s, "app");

    // Read-only.
    repo.stack(&s, &colored("green"));
    repo.commit("green");
    fs.remount("ro");
    let r = repo.berth(&["apply"]);
    fs.remount("rw");
    assert_ne!(r.code, 0, "apply deployed with a read-only state dir: {}", r.stdout);
    assert!(r.stderr.contains("state") && r.stderr.contains("nothing was"), "unclear: {}", r.stderr);
    assert_eq!(container(&s, "app"), running, "deployed without recording");

    // Full.
    let fill = repo.state.path().join("fill");
    let _ = Command::new("dd").arg("if=/dev/zero").arg(format!("of={}", fill.display())).arg("bs=64k").output();
    let r = repo.berth(&["apply"]);
    assert_ne!(r.code, 0, "apply deployed with a full state dir: {}", r.stdout);
    assert!(r.stderr.contains("state") && r.stderr.contains("nothing was"), "unclear: {}", r.stderr);
    assert_eq!(container(&s, "app"), running, "deployed without recording");
    std::fs::remove_file(&fill).unwrap();

    // Space back: the same apply goes through and is recorded.
    repo.berth(&["apply"]).ok();
    assert!(inspect(&container(&s, "app"), "{{json .Config.Env}}").contains("COLOR=green"));
    let hist = repo.json(&["history", &s, "--json"]);
    assert_eq!(hist[0]["status"], "succeeded", "{hist}");
}

/// A wrapper of the compose berth uses that notes when each `up` starts and ends, then runs the
/// real one; returns the log and the environment that puts the wrapper in front.
fn compose_timeline(dir: &Path) -> (std::path::PathBuf, Vec<(&'static str, String)>) {
    let log = dir.join("compose.log");
    let env = wrap_compose(dir, |real| {
        format!(
            "#!/bin/sh\nlog={log}\np=''\nprev=''\nup=''\nfor a in \"$@\"; do\n  [ \"$prev\" = --project-name ] && p=\"$a\"\n  [ \"$a\" = up ] && up=1\n  prev=\"$a\"\ndone\n\
             [ -n \"$up\" ] && echo \"start $p $(date +%s%N)\" >> $log\n{real} \"$@\"\nrc=$?\n\
             [ -n \"$up\" ] && echo \"end $p $(date +%s%N)\" >> $log\nexit $rc\n",
            log = log.display()
        )
    });
    (log, env)
}

#[test]
fn a_thousand_webhooks_for_ten_stacks_never_overlap_a_project_and_end_on_the_last_commit() {
    docker();
    let names: Vec<String> = (0..10).map(|i| unique(&format!("w{i}"))).collect();
    let _c = Cleanup(names.clone());
    let bin = tempfile::tempdir().unwrap();
    let (log, env) = compose_timeline(bin.path());
    let repo = Repo::new();
    repo.write("berth.toml", "[berth]\nmax_parallel = 4\n[defaults]\nverify = { stable = \"1s\" }\n");
    for n in &names {
        repo.stack(n, &colored("v0"));
    }
    let first = repo.commit("ten stacks");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_env(&repo, &env);
    server.settle();

    // Commits land while 16 senders deliver 1,000 signed pushes over about two seconds.
    let head = Arc::new(Mutex::new((first.clone(), first)));
    let sent = std::thread::scope(|scope| {
        let senders: Vec<_> = (0..16)
            .map(|t| {
                let (head, server) = (head.clone(), &server);
                scope.spawn(move || {
                    let mut codes = Vec::new();
                    for i in 0..(1000 / 16 + usize::from(t < 1000 % 16)) {
                        let (before, after) = head.lock().unwrap().clone();
                        codes.push(server.push(&before, &after, "").0);
                        std::thread::sleep(Duration::from_millis(if i % 2 == 0 { 25 } else { 35 }));
                    }
                    codes
                })
            })
            .collect();
        for k in 1..=20 {
            let n = &names[k % names.len()];
            repo.stack(n, &colored(&format!("v{k}")));
            let c = repo.commit(&format!("v{k}"));
            let mut h = head.lock().unwrap();
            *h = (h.1.clone(), c);
            drop(h);
            std::thread::sleep(Duration::from_millis(100));
        }
        senders.into_iter().flat_map(|s| s.join().unwrap()).collect::<Vec<u16>>()
    });
    assert_eq!(sent.len(), 1000);
    assert!(sent.iter().all(|c| *c == 202), "not every push was accepted: {sent:?}");

    // One last delivery of the final head, then everything settles on it.
    let (before, last) = head.lock().unwrap().clone();
    server.push(&before, &last, "?wait=true");
    let all = server.settle();
    for (i, n) in names.iter().enumerate() {
        let want = (1..=20).rev().find(|k| k % names.len() == i).map(|k| format!("COLOR=v{k}")).unwrap();
        assert!(inspect(&container(n, "app"), "{{json .Config.Env}}").contains(&want), "{n} is not at the last commit");
        let mine = ours(&all, n);
        assert!(mine.iter().all(|d| d["status"] == "succeeded"), "a deploy of {n} was lost or failed: {mine:?}");
    }

    // Never two `compose up` at once for one project.
    let text = std::fs::read_to_string(&log).unwrap();
    let mut open = std::collections::HashSet::new();
    let mut ups = 0;
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let [what, project, _at] = f[..] else { panic!("odd line {line}") };
        match what {
            "start" => {
                ups += 1;
                assert!(open.insert(project), "two `compose up` overlapped for {project}:\n{text}");
            }
            _ => assert!(open.remove(project), "an end without a start for {project}:\n{text}"),
        }
    }
    assert!(ups >= names.len() * 2, "the wrapper saw {ups} ups:\n{text}");
}

#[test]
fn secrets_stay_redacted_on_failure_paths() {
    let f = Fixture::bare(&["leakhook", "leakgone"]);
    let (hook, gone) = (f.stacks[0].clone(), f.stacks[1].clone());
    let planted = "planted-fault-secret-5150";
    let repo = &f.repo;
    // One stack whose pre-deploy hook prints the secret and fails; one on an engine that is not there.
    repo.write(
        "berth.toml",
        &format!(
            "[defaults]\nverify = {{ stable = \"1s\" }}\n\
             [[server]]\nname = \"gone\"\ndocker = \"tcp://127.0.0.1:9\"\n\
             [[stack]]\nname = \"{hook}\"\npath = \"stacks/{hook}\"\n{secret}\
             pre_deploy = [\"sh\", \"-c\", \"echo checking with $DB_PASSWORD; exit 3\"]\n\
             [[stack]]\nname = \"{gone}\"\npath = \"nodes/gone/{gone}\"\nserver = \"gone\"\n{secret}",
            secret = "env = { DB_PASSWORD = { env = \"BERTH_TEST_FAULT_SECRET\" } }\n"
        ),
    );
    repo.stack(&hook, &colored("red"));
    repo.write(&format!("nodes/gone/{gone}/compose.yaml"), &colored("red"));
    repo.commit("two stacks that fail");
    let server = Server::start_env(repo, &[("BERTH_TEST_FAULT_SECRET", planted)]);
    let all = server.settle();
    let failed: Vec<&Value> = all.iter().filter(|d| d["status"] == "failed").collect();
    assert!(ours(&all, &hook).iter().any(|d| d["status"] == "failed"), "{all:?}");
    assert!(ours(&all, &gone).iter().any(|d| d["status"] == "failed"), "{all:?}");

    let mut seen = vec![("deploys".to_string(), serde_json::to_string(&all).unwrap())];
    for d in &failed {
        let id = d["id"].as_i64().unwrap();
        let log = server.get(&format!("/api/v1/deploys/{id}/log")).unwrap();
        seen.push((format!("deploy {id} log"), log.to_string()));
        seen.push((format!("deploy {id}"), server.get(&format!("/api/v1/deploys/{id}")).unwrap().to_string()));
    }
    let hook_id = failed.iter().find(|d| d["stack"] == hook.as_str()).and_then(|d| d["id"].as_i64()).unwrap();
    let hook_log = server.get(&format!("/api/v1/deploys/{hook_id}/log")).unwrap();
    assert!(hook_log["log"].as_str().is_some_and(|l| l.contains("checking with")), "no hook output: {hook_log}");
    for s in [&hook, &gone] {
        seen.push((format!("stack {s}"), server.get(&format!("/api/v1/stacks/{s}")).unwrap().to_string()));
    }
    seen.push(("metrics".into(), server.http.get(server.url("/metrics")).send().unwrap().text().unwrap()));
    seen.push(("health".into(), server.get("/health").unwrap().to_string()));
    assert!(repo.state.path().join("serve.log").is_file(), "the server's own log is not there to be checked");
    assert_no_leak(&seen, repo.state.path(), &[planted]);
}
