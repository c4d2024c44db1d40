//! Verification, smoke checks, rollback and watch on the real engine.

use std::process::Command;
use std::time::Duration;

use crate::common::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A busybox web server answering `version` at / and `status` at /cgi-bin/health.
fn web(version: &str, port: u16, healthy: bool, status: u16) -> String {
    let health = if healthy {
        r#"["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]"#
    } else {
        r#"["CMD", "false"]"#
    };
    format!(
        r#"services:
  web:
    image: {IMAGE}
    stop_signal: SIGKILL
    ports:
      - "127.0.0.1:{port}:8080"
    environment:
      VERSION: {version}
    command:
      - sh
      - -c
      - |
        mkdir -p /tmp/w/cgi-bin
        echo {version} > /tmp/w/index.html
        printf '#!/bin/sh\necho "HTTP/1.0 {status} X"\necho\necho {version}\n' > /tmp/w/cgi-bin/health
        chmod +x /tmp/w/cgi-bin/health
        exec httpd -f -p 8080 -h /tmp/w
    healthcheck:
      test: {health}
      interval: 1s
      timeout: 2s
      retries: 2
"#
    )
}

fn get(url: &str) -> Option<(u16, String)> {
    let r = reqwest::blocking::Client::new().get(url).timeout(Duration::from_secs(3)).send().ok()?;
    Some((r.status().as_u16(), r.text().ok()?.trim().to_string()))
}

const FAST: &str = "[defaults]\nverify = { timeout = \"60s\", stable = \"2s\" }\n";

#[test]
fn a_failing_health_check_rolls_back_to_the_version_that_serves() {
    let f = Fixture::bare(&["health"]);
    let s = f.stack();
    let port = free_port();
    let repo = &f.repo;
    repo.write("berth.toml", FAST);
    repo.stack(&s, &web("v1", port, true, 200));
    repo.commit("v1");
    repo.berth(&["apply"]).ok();
    assert_eq!(get(&format!("http://127.0.0.1:{port}/")).map(|r| r.1).as_deref(), Some("v1"));

    repo.stack(&s, &web("v2", port, false, 200));
    repo.commit("v2 with a failing health check");
    let out = repo.berth(&["apply"]);
    assert_eq!(out.code, 3, "a rollback exits 3: {}{}", out.stdout, out.stderr);
    let hist = repo.json(&["history", &s, "--json"]);
    assert_eq!(hist[0]["status"], "rolled_back", "{}", hist[0]);
    let reason = hist[0]["reason"].as_str().unwrap();
    assert!(reason.contains("unhealthy") && reason.contains("rolled back"), "{reason}");
    // The previous version serves again, as a client sees it.
    let body = wait_for("v1 to serve again", Duration::from_secs(30), || get(&format!("http://127.0.0.1:{port}/")));
    assert_eq!(body.1, "v1");
    assert!(inspect(&container(&s, "web"), "{{json .Config.Env}}").contains("VERSION=v1"));

    // watch reports the rollback with exit code 3; the failed config is not retried.
    let id = hist[0]["id"].as_i64().unwrap().to_string();
    assert_eq!(repo.berth(&["watch", &id]).code, 3);
    let plan = repo.json(&["plan", "--json"]);
    assert_eq!(plan["steps"][0]["reason"], "failed_before", "{plan}");
    let logs = repo.berth(&["logs", &id]);
    assert!(logs.stdout.contains("\"converge\""), "{}", logs.stdout);
}

#[test]
fn a_smoke_check_returning_500_rolls_back() {
    let f = Fixture::bare(&["smoke"]);
    let s = f.stack();
    let port = free_port();
    let repo = &f.repo;
    let cfg = format!(
        "{FAST}[[stack]]\nname = \"{s}\"\n[[stack.verify.http]]\nurl = \"http://127.0.0.1:{port}/cgi-bin/health\"\nbody = \"v\"\nretries = 3\ninterval = \"1s\"\n"
    );
    repo.write("berth.toml", &cfg);
    repo.stack(&s, &web("v1", port, true, 200));
    repo.commit("v1");
    repo.berth(&["apply"]).ok();
    repo.stack(&s, &web("v2", port, true, 500));
    repo.commit("v2 answers 500");
    let out = repo.berth(&["apply"]);
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    let hist = repo.json(&["history", &s, "--json"]);
    assert_eq!(hist[0]["status"], "rolled_back");
    assert!(hist[0]["reason"].as_str().unwrap().contains("HTTP 500"), "{}", hist[0]);
    let health =
        wait_for("v1 to answer", Duration::from_secs(30), || get(&format!("http://127.0.0.1:{port}/cgi-bin/health")));
    assert_eq!(health, (200, "v1".to_string()));
}

#[test]
fn a_container_that_exits_right_after_start_is_a_failure() {
    let f = Fixture::bare(&["exits", "loops"]);
    let (once, looping) = (f.stacks[0].clone(), f.stacks[1].clone());
    let repo = &f.repo;
    repo.write("berth.toml", FAST);
    repo.stack(
        &once,
        &format!("services:\n  app:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"sleep 1; exit 3\"]\n"),
    );
    repo.stack(&looping, &format!("services:\n  app:\n    image: {IMAGE}\n    restart: always\n    command: [\"sh\", \"-c\", \"sleep 1; exit 4\"]\n"),
    );
    repo.commit("crashers");
    let out = repo.berth(&["apply"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let h = repo.json(&["history", &once, "--json"]);
    assert_eq!(h[0]["status"], "failed");
    assert!(h[0]["reason"].as_str().unwrap().contains("exited with code 3"), "{}", h[0]);
    let h = repo.json(&["history", &looping, "--json"]);
    assert_eq!(h[0]["status"], "failed");
    let reason = h[0]["reason"].as_str().unwrap();
    assert!(reason.contains("restart") || reason.contains("exited with code 4"), "{reason}");
}

#[test]
fn one_shot_services_are_judged_by_their_exit_code() {
    let f = Fixture::bare(&["oneshot"]);
    let (s, repo) = (f.stack(), &f.repo);
    repo.write("berth.toml", FAST);
    repo.stack(&s, &format!(
            "services:\n  migrate:\n    image: {IMAGE}\n    restart: \"no\"\n    command: [\"sh\", \"-c\", \"sleep 1; exit 0\"]\n  app:\n    image: {IMAGE}\n    command: [\"sleep\", \"2147483647\"]\n    stop_signal: SIGKILL\n"
        ),
    );
    repo.commit("migration plus app");
    let out = repo.berth(&["apply"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}

/// A CA, and a certificate it signed for `app.berth.test` (`srv.pem`, `srv.key`).
fn tls_files(dir: &std::path::Path) {
    need("openssl", "openssl");
    make_ca(dir);
    sign_cert(dir, "srv", "subjectAltName=DNS:app.berth.test\n");
}

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_https_page_linking_http_assets_fails_the_assets_check() {
    let f = Fixture::bare(&["assets"]);
    let s = f.stack();
    let tls = tempfile::tempdir().unwrap();
    tls_files(tls.path());
    let page =
        |href: &str| format!("<html><head><link rel=\"stylesheet\" href=\"{href}\"></head><body>ok</body></html>\n");
    std::fs::write(tls.path().join("index.html"), page("http://app.berth.test/style.css")).unwrap();
    let port = free_port();
    // A real TLS-terminating server standing in for the reverse proxy.
    let _proxy = Kill(
        Command::new("openssl")
            .args(["s_server", "-quiet", "-WWW", "-accept", &port.to_string(), "-cert", "srv.pem", "-key", "srv.key"])
            .current_dir(tls.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the TLS server", Duration::from_secs(10), || std::net::TcpStream::connect(("127.0.0.1", port)).ok());
    let repo = &f.repo;
    let ca = tls.path().join("ca.pem");
    repo.write(
        "berth.toml",
        &format!(
            "{FAST}[[stack]]\nname = \"{s}\"\n[[stack.verify.http]]\nurl = \"https://app.berth.test:{port}/index.html\"\nresolve = \"127.0.0.1\"\nca = \"{}\"\nassets = true\nretries = 2\ninterval = \"1s\"\n",
            ca.display()
        ),
    );
    repo.stack(&s, &sleeper(&["app"]));
    repo.commit("https page with an http stylesheet");
    let out = repo.berth(&["apply"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let h = repo.json(&["history", &s, "--json"]);
    let reason = h[0]["reason"].as_str().unwrap();
    assert!(reason.contains("asset") && reason.contains("http://app.berth.test/style.css"), "{reason}");

    // Fixed page (relative link): the same check passes, through SNI and the CA file.
    std::fs::write(tls.path().join("index.html"), page("/style.css")).unwrap();
    repo.write(&format!("stacks/{s}/touch"), "1\n");
    repo.commit("retry");
    repo.berth(&["apply"]).ok();
}

#[test]
fn manual_rollback_puts_the_previous_version_back() {
    let f = Fixture::bare(&["manual"]);
    let (s, repo) = (f.stack(), &f.repo);
    repo.write("berth.toml", FAST);
    let stack = |color: &str| {
        format!(
            "services:\n  app:\n    image: {IMAGE}\n    command: [\"sleep\", \"2147483647\"]\n    stop_signal: SIGKILL\n    environment:\n      COLOR: {color}\n"
        )
    };
    repo.stack(&s, &stack("red"));
    repo.commit("red");
    repo.berth(&["apply"]).ok();
    repo.stack(&s, &stack("blue"));
    repo.commit("blue");
    repo.berth(&["apply"]).ok();
    assert!(inspect(&container(&s, "app"), "{{json .Config.Env}}").contains("COLOR=blue"));
    repo.berth(&["rollback", &s]).ok();
    assert!(inspect(&container(&s, "app"), "{{json .Config.Env}}").contains("COLOR=red"));
    let h = repo.json(&["history", &s, "--json"]);
    assert_eq!((h[0]["trigger"].as_str(), h[0]["status"].as_str()), (Some("rollback"), Some("succeeded")));
    assert_eq!(repo.berth(&["watch", "--stack", &s]).code, 0);
}

#[test]
fn rollback_manual_only_records_the_failure() {
    let f = Fixture::bare(&["norb"]);
    let s = f.stack();
    let port = free_port();
    let repo = &f.repo;
    repo.write("berth.toml", &format!("{FAST}[[stack]]\nname = \"{s}\"\nrollback = \"manual\"\n"));
    repo.stack(&s, &web("v1", port, true, 200));
    repo.commit("v1");
    repo.berth(&["apply"]).ok();
    repo.stack(&s, &web("v2", port, false, 200));
    repo.commit("v2 unhealthy");
    let out = repo.berth(&["apply"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let h = repo.json(&["history", &s, "--json"]);
    assert_eq!(h[0]["status"], "failed");
    assert!(!h[0]["reason"].as_str().unwrap().contains("rolled back"), "{}", h[0]);
    assert!(inspect(&container(&s, "web"), "{{json .Config.Env}}").contains("VERSION=v2"), "manual must not roll back");
}

#[test]
fn manual_changes_are_drift_and_self_heal_repairs_them_unless_paused() {
    let f = Fixture::bare(&["drift"]);
    let (s, repo) = (f.stack(), &f.repo);
    repo.write("berth.toml", &format!("{FAST}[[stack]]\nname = \"{s}\"\nself_heal = true\n"));
    repo.stack(&s, &sleeper(&["app", "side"]));
    repo.commit("two services");
    repo.berth(&["apply"]).ok();
    let out = repo.berth(&["drift"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(out.stdout.contains("no drift"), "{}", out.stdout);

    // Someone stops one container and removes the other by hand.
    docker_out(&["stop", &container(&s, "app")]);
    docker_out(&["rm", "-f", &container(&s, "side")]);
    let out = repo.berth(&["drift", "--json"]);
    assert_eq!(out.code, 1);
    let found: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let findings = found[0]["findings"].to_string();
    assert!(findings.contains("`app` is exited") && findings.contains("`side` has no container"), "{findings}");

    // Paused: reported, not healed, and not deployed by apply either.
    repo.berth(&["pause", &s, "--reason", "maintenance"]).ok();
    let out = repo.berth(&["drift", "--heal"]);
    assert!(out.stdout.contains("not healed (paused)"), "{}", out.stdout);
    assert!(containers(&s).iter().all(|(svc, _)| svc != "side"));
    let status = repo.berth(&["status"]).ok();
    assert!(status.stdout.contains("paused (succeeded)"), "{}", status.stdout);

    // Resumed: self-heal puts the recorded deploy back.
    repo.berth(&["resume", &s]).ok();
    let out = repo.berth(&["drift", "--heal"]);
    assert!(out.stdout.contains("healing"), "{}", out.stdout);
    container(&s, "app");
    container(&s, "side");
    assert_eq!(repo.berth(&["drift"]).code, 0);
    assert_eq!(repo.json(&["history", &s, "--json"])[0]["trigger"], "heal");
}
