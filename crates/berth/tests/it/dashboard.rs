//! The web dashboard end to end: a real `berth serve` with deployed stacks, real HTTP, headless Chromium.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::common::browser::Browser;
use crate::common::server::Server;
use crate::common::web::{client, csrf, get, login, post, row};
use crate::common::*;
use serde_json::Value;

/// A one-request-per-connection HTTP proxy on loopback that connects to `upstream` from `from`
/// and adds `X-Forwarded-Proto: https` and `X-Forwarded-Host: host`. Returns its address.
fn proxy(upstream: SocketAddr, from: &str, host: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let from: SocketAddr = format!("{from}:0").parse().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = relay(client, upstream, from, host);
            });
        }
    });
    addr
}

fn relay(mut client: TcpStream, upstream: SocketAddr, from: SocketAddr, host: &str) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte)? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let mut lines = text.split("\r\n");
    let mut out = format!(
        "{}\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: {host}\r\nConnection: close\r\n",
        lines.next().unwrap_or_default()
    );
    for l in lines.filter(|l| !l.is_empty()) {
        let name = l.split(':').next().unwrap_or_default().to_ascii_lowercase();
        if !["connection", "x-forwarded-proto", "x-forwarded-host"].contains(&name.as_str()) {
            out.push_str(l);
            out.push_str("\r\n");
        }
    }
    out.push_str("\r\n");
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&from.into())?;
    socket.connect(&upstream.into())?;
    let mut server: TcpStream = socket.into();
    server.write_all(out.as_bytes())?;
    let (mut c2, mut s2) = (client.try_clone()?, server.try_clone()?);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut s2);
    });
    std::io::copy(&mut server, &mut client)?;
    client.shutdown(std::net::Shutdown::Both)
}

fn addr_of(server: &Server) -> SocketAddr {
    server.base.trim_start_matches("http://").parse().unwrap()
}

fn sleeper_with(env: &[(&str, &str)]) -> String {
    let mut s = format!(
        "services:\n  app:\n    image: {IMAGE}\n    command: [\"sleep\", \"2147483647\"]\n    stop_signal: SIGKILL\n    environment:\n"
    );
    for (k, v) in env {
        s.push_str(&format!("      {k}: {v}\n"));
    }
    s
}

fn new_key(repo: &Repo, name: &str, scope: &str) -> (String, String) {
    let out = repo.berth(&["keys", "create", "--name", name, "--scope", scope]).ok();
    let get = |n: &str| out.stdout.lines().find_map(|l| l.strip_prefix(n)).unwrap().trim().to_string();
    (get("key:"), get("secret:"))
}

#[test]
fn the_dashboard_shows_stacks_in_a_real_browser_and_guards_its_buttons() {
    let f = Fixture::bare(&["web", "bad", "man"]);
    let (web, bad, man) = (f.stacks[0].clone(), f.stacks[1].clone(), f.stacks[2].clone());
    let secrets = tempfile::tempdir().unwrap();
    let planted = format!("planted-{}-s3cr3t", std::process::id());
    let planted_file = secrets.path().join("planted");
    std::fs::write(&planted_file, &planted).unwrap();
    let repo = &f.repo;
    repo.write(
        "berth.toml",
        &format!(
            "[defaults]\nverify = {{ timeout = \"60s\", stable = \"1s\" }}\n\
             [dashboard]\ntrusted_proxies = [\"127.0.0.2/32\"]\n\
             [[stack]]\nname = \"{web}\"\nenv = {{ DB_PASSWORD = {{ file = \"{f}\" }}, WELCOME = {{ file = \"{f}\" }} }}\n\
             [[stack]]\nname = \"{man}\"\nmanual = true\n",
            f = planted_file.display()
        ),
    );
    repo.stack(&web, &sleeper_with(&[("DB_PASSWORD", "${DB_PASSWORD}"), ("WELCOME", "${WELCOME}"), ("COLOR", "blue")]));
    repo.stack(
        &bad, // Dies well inside the 1 s stable window, which counts from the container's start.
        &format!("services:\n  app:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"sleep 0.2; exit 3\"]\n"),
    );
    repo.stack(&man, &sleeper(&["app"]));
    let first = repo.commit("three stacks");
    repo.git(&["tag", "v1.4.0"]);
    let server = Server::start(repo);
    let startup = server.settle();
    assert_eq!(startup.len(), 2, "{startup:?}");
    let env = inspect(&container(&web, "app"), "{{json .Config.Env}}");
    assert!(env.contains(&planted), "the planted secret must really be deployed for this test to mean anything");
    let base = server.base.clone();
    let http = client(None);

    // Reading needs a login (read = "key" by default); the login redirect comes back.
    let (code, _, location) = get(&http, &format!("{base}/"), &[]);
    assert_eq!((code, location.as_str()), (303, format!("{base}/login?next=/").as_str()));
    let (vk, vs) = new_key(repo, "viewer", "read");
    let bad_login = http
        .post(format!("{base}/login"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("key={vk}&secret=bs_wrong"))
        .send()
        .unwrap();
    assert_eq!(bad_login.status().as_u16(), 401);
    let admin = login(&http, &base, &server.key, &server.secret);
    let viewer = login(&http, &base, &vk, &vs);

    // Plain HTML without JavaScript: badges, links and filters by query parameters.
    let (code, html, _) = get(&http, &format!("{base}/"), &[("Cookie", &admin)]);
    assert_eq!(code, 200, "{html}");
    assert!(row(&html, &web).contains("class=\"badge ok\""), "{}", row(&html, &web));
    assert!(row(&html, &bad).contains("class=\"badge failed\""), "{}", row(&html, &bad));
    assert!(row(&html, &man).contains("class=\"badge manual\""), "{}", row(&html, &man));
    assert!(row(&html, &web).contains(&format!("href=\"{base}/stacks/{web}\"")), "{}", row(&html, &web));
    assert!(row(&html, &web).contains(&format!("<code>{}</code>", &first[..12])), "{}", row(&html, &web));
    assert!(row(&html, &web).contains("<td data-label=\"Tag\">v1.4.0</td>"), "{}", row(&html, &web));
    assert_eq!(html.matches("<script").count(), 1, "only the one external script");
    assert!(html.contains(&format!("<script src=\"{base}/assets/dashboard.js")), "{html}");
    let (_, failed, _) = get(&http, &format!("{base}/?status=failed"), &[("Cookie", &admin)]);
    assert!(failed.contains(&bad) && !failed.contains(&format!("data-stack=\"{web}\"")), "{failed}");
    let (_, other, _) = get(&http, &format!("{base}/?server=elsewhere"), &[("Cookie", &admin)]);
    assert!(!other.contains("data-stack="), "{other}");
    // A paused stack says so on the overview and on its page, until resumed.
    repo.berth(&["pause", &bad, "--reason", "disk swap"]).ok();
    let (_, html, _) = get(&http, &format!("{base}/"), &[("Cookie", &admin)]);
    assert!(row(&html, &bad).contains("class=\"tag paused\""), "{}", row(&html, &bad));
    assert!(!row(&html, &web).contains("paused"), "{}", row(&html, &web));
    let (_, page, _) = get(&http, &format!("{base}/stacks/{bad}"), &[("Cookie", &admin)]);
    assert!(page.contains("<dt>Paused</dt>") && page.contains("disk swap"), "{page}");
    repo.berth(&["resume", &bad]).ok();
    let (_, html, _) = get(&http, &format!("{base}/"), &[("Cookie", &admin)]);
    assert!(!row(&html, &bad).contains("paused"), "{}", row(&html, &bad));
    let css = http.get(format!("{base}/assets/dashboard.css")).send().unwrap();
    assert!(css.headers()["cache-control"].to_str().unwrap().contains("max-age"), "assets are cacheable");

    // The browser: login form, overview, follow a stack link, deploy from the button.
    let mut b = Browser::start();
    let at = b.open(&format!("{base}/"));
    assert!(at.starts_with(&format!("{base}/login")), "{at}");
    b.eval(&format!(
        "document.querySelector('[name=key]').value = '{}'; document.querySelector('[name=secret]').value = '{}'; \
         document.querySelector('form.login').submit(); true",
        server.key, server.secret
    ));
    b.loaded(|h| h == format!("{base}/"));
    let badge = |b: &mut Browser, s: &str| {
        b.eval(&format!("document.querySelector('tr[data-stack=\"{s}\"] .badge').textContent"))
    };
    assert_eq!(badge(&mut b, &web), "ok");
    assert_eq!(badge(&mut b, &bad), "failed");
    assert_eq!(badge(&mut b, &man), "manual");
    assert_eq!(b.eval("getComputedStyle(document.querySelector('.badge.ok')).backgroundColor"), "rgb(220, 245, 227)");
    if let Ok(path) = std::env::var("BERTH_SCREENSHOT") {
        std::fs::write(&path, b.screenshot()).unwrap();
    }
    b.eval(&format!("document.querySelector('tr[data-stack=\"{web}\"] a.stack').click(); true"));
    let at = b.loaded(|h| h.ends_with(&format!("/stacks/{web}")));
    assert_eq!(at, format!("{base}/stacks/{web}"));
    assert!(b.eval("document.querySelector('h1').textContent").as_str().unwrap().contains(&web));
    assert_eq!(b.eval("!!document.getElementById('deploy-now')"), true);
    let checks = b.eval("document.querySelector('.steps').textContent");
    assert!(checks.as_str().unwrap().contains("passed converge: converged and stable"), "{checks}");
    b.eval("document.getElementById('deploy-now').click(); true");
    let at = b.loaded(|h| h.contains("/deploys/"));
    wait_for("the deploy page to show the outcome", Duration::from_secs(120), || {
        (b.eval("document.getElementById('status').textContent") == "ok").then_some(())
    });
    wait_for("the log", Duration::from_secs(30), || {
        b.eval("document.getElementById('log').textContent.includes('compose')").as_bool()?.then_some(())
    });
    assert_eq!(b.eval(&format!("document.body.innerText.includes('{planted}')")), false);
    let deploy_id = at.rsplit('/').next().unwrap().to_string();
    server.settle();

    // The event stream of a settled deploy: its phases, the log and the outcome.
    let (code, events, _) = get(&http, &format!("{base}/deploys/{deploy_id}/events"), &[("Cookie", &admin)]);
    assert_eq!(code, 200);
    assert!(events.contains("event: phase\ndata: up\t"), "{events}");
    assert!(events.contains("event: done\ndata: succeeded"), "{events}");
    let (_, page, _) = get(&http, &format!("{base}/deploys/{deploy_id}"), &[("Cookie", &admin)]);
    let timing = page.split("<span class=\"phase\">up</span> <span class=\"took\">").nth(1).unwrap_or_default();
    assert!(timing.split('s').next().is_some_and(|t| t.parse::<f64>().is_ok()), "phase timings: {page}");

    // CSRF: the deploy button's form succeeds only with its token; a read key has no button at all.
    let stack_url = format!("{base}/stacks/{web}");
    let (_, page, _) = get(&http, &stack_url, &[("Cookie", &admin)]);
    let token = csrf(&page);
    let deploy_url = format!("{stack_url}/deploy");
    assert_eq!(post(&http, &deploy_url, &[("Cookie", &admin)], "").0, 403, "no token");
    assert_eq!(post(&http, &deploy_url, &[("Cookie", &admin)], "csrf=forged").0, 403, "wrong token");
    assert_eq!(post(&http, &deploy_url, &[], &format!("csrf={token}")).0, 403, "token without the session");
    let (code, location) = post(&http, &deploy_url, &[("Cookie", &admin)], &format!("csrf={token}"));
    assert_eq!(code, 303);
    assert!(location.starts_with(&format!("{base}/deploys/")), "{location}");
    let (_, page, _) = get(&http, &stack_url, &[("Cookie", &viewer)]);
    assert!(!page.contains("deploy-now"), "a read key sees the deploy button");
    assert_eq!(post(&http, &deploy_url, &[("Cookie", &viewer)], &format!("csrf={}", csrf(&page))).0, 403);
    server.settle();

    // A pushed change: the stack page sums up what changed, and rolls back to the deploy before it.
    repo.stack(
        &web,
        &sleeper_with(&[("DB_PASSWORD", "${DB_PASSWORD}"), ("WELCOME", "${WELCOME}"), ("COLOR", "green")]),
    );
    let second = repo.commit("web turns green");
    let (code, body) = server.push(&first, &second, "?wait=true");
    assert_eq!(code, 200, "{body}");
    let (_, page, _) = get(&http, &stack_url, &[("Cookie", &admin)]);
    assert!(page.contains(&format!("modified</span> <code>stacks/{web}/compose.yaml</code>")), "{page}");
    assert!(page.contains("id=\"roll-back\""), "{page}");
    let rollback = format!("{stack_url}/rollback");
    let (code, location) = post(&http, &rollback, &[("Cookie", &admin)], &format!("csrf={}", csrf(&page)));
    assert_eq!(code, 303, "{location}");
    let all = server.settle();
    let newest = all.iter().find(|d| d["stack"] == web.as_str()).unwrap();
    assert_eq!((newest["commit"].as_str(), newest["status"].as_str()), (Some(first.as_str()), Some("succeeded")));
    assert_eq!(newest["trigger"], "dashboard-rollback:admin");
    assert!(inspect(&container(&web, "app"), "{{json .Config.Env}}").contains("COLOR=blue"));

    // No page shows the planted secret, and the variables are shown redacted.
    let mut pages = vec![format!("{base}/"), stack_url.clone(), format!("{base}/stacks/{bad}")];
    for d in &all {
        pages.push(format!("{base}/deploys/{}", d["id"]));
        pages.push(format!("{base}/deploys/{}/log", d["id"]));
    }
    for p in &pages {
        let (code, body, _) = get(&http, p, &[("Cookie", &admin)]);
        assert_eq!(code, 200, "{p}");
        assert!(!body.contains(&planted), "{p} shows the secret");
    }
    let (_, page, _) = get(&http, &format!("{base}/deploys/{deploy_id}"), &[("Cookie", &admin)]);
    assert!(page.contains("<th>DB_PASSWORD</th><td><code>********</code>"), "{page}");

    // Behind a trusted TLS-terminating proxy every URL is https://<forwarded host>/...;
    // the same headers through an untrusted address are ignored.
    let trusted = proxy(addr_of(&server), "127.0.0.2", "dash.example.test");
    b.open(&format!("http://{trusted}/stacks/{web}"));
    let urls = b.urls();
    assert!(urls.len() >= 6, "{urls:?}");
    assert!(urls.iter().all(|u| u.starts_with("https://dash.example.test/")), "{urls:?}");
    let untrusted = proxy(addr_of(&server), "127.0.0.3", "dash.example.test");
    b.open(&format!("http://{untrusted}/stacks/{web}"));
    let urls = b.urls();
    assert!(urls.len() >= 6, "{urls:?}");
    assert!(urls.iter().all(|u| u.starts_with(&format!("http://{untrusted}/"))), "{urls:?}");
    let forged = [("Cookie", admin.as_str()), ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil.test")];
    let (_, html, _) = get(&http, &format!("{base}/"), &forged);
    assert!(!html.contains("evil.test") && html.contains(&format!("href=\"{base}/stacks/")), "{html}");

    // A session ends when its key is deleted, and at logout (which needs the session's token).
    assert_eq!(get(&http, &format!("{base}/"), &[("Cookie", &viewer)]).0, 200);
    repo.berth(&["keys", "delete", "viewer"]).ok();
    assert_eq!(get(&http, &format!("{base}/"), &[("Cookie", &viewer)]).0, 303, "the deleted key's session");
    let logout = format!("{base}/logout");
    assert_eq!(post(&http, &logout, &[("Cookie", &admin)], "csrf=forged").0, 403);
    assert_eq!(post(&http, &logout, &[("Cookie", &admin)], &format!("csrf={}", csrf(&html))).0, 303);
    assert_eq!(get(&http, &format!("{base}/"), &[("Cookie", &admin)]).0, 303, "the session outlived its logout");
}

#[test]
fn a_running_deploy_shows_its_log_live_and_without_javascript() {
    let f = Fixture::bare(&["slow"]);
    let s = f.stack();
    let gate = tempfile::tempdir().unwrap();
    let go = gate.path().join("go");
    let repo = &f.repo;
    repo.write(
        "berth.toml",
        &format!(
            "[defaults]\nverify = {{ stable = \"1s\" }}\n[dashboard]\nread = \"public\"\n\
             [[stack]]\nname = \"{s}\"\nmanual = true\n\
             timeout = \"90s\"\npre_deploy = [\"sh\", \"-c\", \"echo released; while [ ! -e {} ]; do sleep 0.2; done\"]\n",
            go.display()
        ),
    );
    repo.stack(&s, &sleeper(&["app"]));
    repo.commit("a stack whose deploy waits for a file");
    let server = Server::start(repo);
    let (http, base) = (client(None), server.base.clone());
    let admin = login(&http, &base, &server.key, &server.secret);
    let (_, page, _) = get(&http, &format!("{base}/stacks/{s}"), &[("Cookie", &admin)]);
    let (code, deploy) =
        post(&http, &format!("{base}/stacks/{s}/deploy"), &[("Cookie", &admin)], &format!("csrf={}", csrf(&page)));
    assert_eq!(code, 303);

    // Without JavaScript: the page and the plain log show the log so far.
    wait_for("the running deploy's log", Duration::from_secs(60), || {
        let (_, html, _) = get(&http, &deploy, &[]);
        (html.contains("badge deploying") && html.contains("while [ ! -e")).then_some(())
    });
    let (_, plain, _) = get(&http, &format!("{deploy}/log"), &[]);
    assert!(plain.contains("while [ ! -e") && !plain.contains("<"), "{plain}");

    // With JavaScript: the open page follows the deploy to its end without reloading.
    let mut b = Browser::start();
    b.open(&deploy);
    assert!(b.eval("document.getElementById('log').textContent").as_str().unwrap().contains("while [ ! -e"));
    assert_eq!(b.eval("document.getElementById('status').textContent"), "deploying");
    b.eval("window.stayed = true");
    std::fs::write(&go, "").unwrap();
    wait_for("the page to show the outcome", Duration::from_secs(120), || {
        (b.eval("document.getElementById('status').textContent") == "ok").then_some(())
    });
    assert_eq!(b.eval("window.stayed === true"), true, "the page reloaded");
    let log = b.eval("document.getElementById('log').textContent");
    assert!(log.as_str().unwrap().contains("released"), "{log}");
    let phases = b.eval("document.getElementById('phases').textContent");
    assert!(
        phases.as_str().unwrap().contains("pre-deploy") && phases.as_str().unwrap().contains("converging"),
        "{phases}"
    );
    let names =
        b.eval("Array.from(document.querySelectorAll('#phases li')).map(li => li.textContent.trim().split(' ')[0])");
    let unique: std::collections::HashSet<&str> = names.as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(unique.len(), names.as_array().unwrap().len(), "a phase shows twice: {names}");
    assert_eq!(server.settle()[0]["status"], "succeeded");
}

#[test]
fn forward_auth_counts_only_from_its_proxies_and_writers() {
    let f = Fixture::bare(&["fwd"]);
    let (s, repo) = (f.stack(), &f.repo);
    repo.write(
        "berth.toml",
        &format!(
            "[defaults]\nverify = {{ stable = \"1s\" }}\n[dashboard]\nread = \"public\"\nwrite = \"forward\"\n\
             writers = [\"alice\"]\nforward_auth = {{ header = \"X-Auth-User\", proxies = [\"127.0.0.2/32\"] }}\n\
             [[stack]]\nname = \"{s}\"\nmanual = true\n"
        ),
    );
    repo.stack(&s, &sleeper(&["app"]));
    repo.commit("one manual stack");
    let server = Server::start(repo);
    let (direct, proxied) = (client(None), client(Some("127.0.0.2")));
    let base = &server.base;
    let url = format!("{base}/stacks/{s}");

    let (code, html, _) = get(&direct, &format!("{base}/"), &[]);
    assert_eq!(code, 200, "read = public");
    assert!(row(&html, &s).contains("badge manual"), "{html}");
    let (_, html, _) = get(&direct, &url, &[("X-Auth-User", "alice")]);
    assert!(!html.contains("deploy-now"), "the user header counted from an untrusted address");
    let (_, html, _) = get(&proxied, &url, &[("X-Auth-User", "bob")]);
    assert!(!html.contains("deploy-now"), "bob is no writer");
    let (_, html, _) = get(&proxied, &url, &[("X-Auth-User", "alice")]);
    assert!(html.contains("deploy-now") && html.contains("alice"), "{html}");
    let token = csrf(&html);

    let deploy = format!("{url}/deploy");
    let form = format!("csrf={token}");
    assert_eq!(post(&direct, &deploy, &[("X-Auth-User", "alice")], &form).0, 403, "untrusted address");
    assert_eq!(post(&proxied, &deploy, &[("X-Auth-User", "bob")], &form).0, 403, "alice's token for bob");
    assert_eq!(post(&proxied, &deploy, &[("X-Auth-User", "alice")], "").0, 403, "no token");
    assert!(server.deploys().is_empty());
    let (code, location) = post(&proxied, &deploy, &[("X-Auth-User", "alice")], &form);
    assert_eq!(code, 303);
    assert!(location.contains("/deploys/"), "{location}");
    let d = server.settle();
    assert_eq!((d.len(), d[0]["status"].as_str()), (1, Some("succeeded")), "{d:?}");
    assert_eq!(d[0]["trigger"], "dashboard:alice");
    container(&s, "app");
}

#[test]
fn basic_auth_guards_the_dashboard_under_a_base_path() {
    let f = Fixture::bare(&["basic"]);
    need("htpasswd", "apache2-utils");
    let s = f.stack();
    let dir = tempfile::tempdir().unwrap();
    let out =
        std::process::Command::new("htpasswd").args(["-nbB", "-C", "5", "carol", "correct horse"]).output().unwrap();
    assert!(out.status.success());
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, &out.stdout).unwrap();
    let repo = &f.repo;
    repo.write(
        "berth.toml",
        &format!(
            "[dashboard]\nbase_path = \"/berth\"\nread = \"basic\"\nwrite = \"basic\"\nhtpasswd = {{ file = \"{}\" }}\n\
             [[stack]]\nname = \"{s}\"\nmanual = true\n",
            file.display()
        ),
    );
    repo.stack(&s, &sleeper(&["app"]));
    repo.commit("one manual stack");
    let server = Server::start(repo);
    let http = client(None);
    let base = format!("{}/berth", server.base);

    let r = http.get(format!("{base}/")).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"), "{:?}", r.headers());
    let r = http.get(format!("{base}/")).basic_auth("carol", Some("wrong")).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = http.get(format!("{base}/stacks/{s}")).basic_auth("carol", Some("correct horse")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let html = r.text().unwrap();
    assert!(html.contains("deploy-now"), "{html}");
    assert!(html.contains(&format!("href=\"{base}/assets/dashboard.css")), "{html}");
    let r = http.post(format!("{base}/stacks/{s}/deploy")).basic_auth("carol", Some("correct horse")).send().unwrap();
    assert_eq!(r.status().as_u16(), 403, "no CSRF token");
    assert_eq!(get(&http, &server.base, &[]).0, 404, "nothing outside the base path");
    let (code, _, location) = get(&http, &base, &[]);
    assert_eq!((code, location), (303, format!("{base}/")));
}
