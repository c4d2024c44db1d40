//! The dashboard as an operator uses it: what runs against what git wants, why a deploy failed
//! (smoke checks, health probes, exit codes), live containers and logs, on narrow and dark screens.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use crate::common::browser::Browser;
use crate::common::server::Server;
use crate::common::web::{card, client, csrf, get, login, post, row};
use crate::common::*;
use serde_json::Value;

/// An HTTP server on loopback that answers every request with 503 and a body.
fn unavailable() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in listener.incoming().flatten() {
            let mut buf = [0u8; 2048];
            let _ = c.read(&mut buf);
            let body = "down for maintenance";
            let _ = write!(
                c,
                "HTTP/1.1 503 Service Unavailable\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

fn id_of(deploys: &[Value], stack: &str, status: &str) -> i64 {
    deploys
        .iter()
        .find(|d| d["stack"] == stack && d["status"] == status)
        .unwrap_or_else(|| panic!("no {status} deploy of {stack}: {deploys:?}"))["id"]
        .as_i64()
        .unwrap()
}

/// Accessibility checks by hand (the rules of an audit that matter here): a language, one h1,
/// every control and link named, every field labelled, nothing taken out of the tab order.
const A11Y: &str = r#"(() => {
  const bad = [];
  if (!document.documentElement.lang) bad.push('no lang');
  if (document.querySelectorAll('h1').length !== 1) bad.push('h1 count');
  const name = e => (e.getAttribute('aria-label') || e.textContent || e.value || '').trim();
  document.querySelectorAll('a[href], button').forEach(e => { if (!name(e)) bad.push('unnamed ' + e.outerHTML.slice(0, 80)); });
  document.querySelectorAll('input:not([type=hidden]), select').forEach(e => {
    if (!e.closest('label') && !e.getAttribute('aria-label')) bad.push('unlabelled ' + e.outerHTML.slice(0, 80));
  });
  document.querySelectorAll('[tabindex]').forEach(e => { if (e.tabIndex < -1 || (e.tabIndex === -1 && e.tagName !== 'MAIN')) bad.push('tabindex ' + e.outerHTML.slice(0, 60)); });
  return bad;
})()"#;

#[test]
fn the_dashboard_says_what_runs_what_git_wants_and_why_deploys_failed() {
    let f = Fixture::bare(&["web", "smoke", "sick", "bad"]);
    let (web, smoke, sick, bad) = (f.stacks[0].clone(), f.stacks[1].clone(), f.stacks[2].clone(), f.stacks[3].clone());
    let dir = tempfile::tempdir().unwrap();
    let planted = format!("planted-{}-s3cr3t", std::process::id());
    let literal = format!("literal-{}-t0ken", std::process::id());
    let file = dir.path().join("planted");
    std::fs::write(&file, &planted).unwrap();
    let block = dir.path().join("block");
    let port = unavailable();
    let toml = |smoke_check: bool| {
        format!(
            "[defaults]\nverify = {{ timeout = \"40s\", stable = \"1s\" }}\n[dashboard]\nread = \"public\"\n\
             [[stack]]\nname = \"{web}\"\npre_deploy = [\"sh\", \"-c\", \"test ! -e {}\"]\n\
             env = {{ DB_PASSWORD = {{ file = \"{}\" }} }}\n\
             [[stack]]\nname = \"{smoke}\"\n{}\
             [[stack]]\nname = \"{sick}\"\n[[stack]]\nname = \"{bad}\"\n",
            block.display(),
            file.display(),
            if smoke_check {
                format!("[[stack.verify.http]]\nurl = \"http://127.0.0.1:{port}/health\"\nretries = 1\n")
            } else {
                String::new()
            }
        )
    };
    let repo = &f.repo;
    repo.write("berth.toml", &toml(false));
    repo.stack(&web, &format!(
            "services:\n  app:\n    image: {IMAGE}\n    stop_signal: SIGKILL\n    environment:\n      DB_PASSWORD: ${{DB_PASSWORD}}\n      API_TOKEN: {literal}\n    \
             command: [\"sh\", \"-c\", \"echo db=$$DB_PASSWORD api=$$API_TOKEN; exec sleep 2147483647\"]\n"
        ),
    );
    repo.stack(&smoke, &sleeper(&["app"]));
    repo.stack(&sick, &format!(
            "services:\n  app:\n    image: {IMAGE}\n    command: [\"sleep\", \"2147483647\"]\n    stop_signal: SIGKILL\n    \
             healthcheck:\n      test: [\"CMD-SHELL\", \"echo probe-says-no; exit 1\"]\n      interval: 1s\n      retries: 1\n      timeout: 5s\n"
        ),
    );
    repo.stack(&bad, // Dies well inside the 1 s stable window (which counts from the container's start).
        &format!("services:\n  app:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"echo last-words; sleep 0.2; exit 3\"]\n"),
    );
    let first = repo.commit("four stacks");
    let server = Server::start(repo);
    server.settle();
    let base = server.base.clone();
    let http = client(None);
    let admin = login(&http, &base, &server.key, &server.secret);

    // A smoke check that answers 503: deployed, verified by HTTP, rolled back.
    repo.write("berth.toml", &toml(true));
    repo.stack(&smoke, &sleeper(&["app", "side"]));
    let second = repo.commit("smoke: check the health endpoint");
    let (code, body) = server.push(&first, &second, "?wait=true");
    assert_eq!(code, 200, "{body}");
    server.settle();
    // A later attempt of the healthy stack, refused before it touched anything.
    std::fs::write(&block, "").unwrap();
    let (_, page, _) = get(&http, &format!("{base}/stacks/{web}"), &[("Cookie", &admin)]);
    let (code, _) =
        post(&http, &format!("{base}/stacks/{web}/deploy"), &[("Cookie", &admin)], &format!("csrf={}", csrf(&page)));
    assert_eq!(code, 303);
    let all = server.settle();
    let web_ok = id_of(&all, &web, "succeeded");
    let web_failed = id_of(&all, &web, "failed");
    assert!(web_failed > web_ok);

    // State at a glance: running and in sync, the refused attempt beside it.
    let (_, html, _) = get(&http, &format!("{base}/"), &[]);
    let r = row(&html, &web);
    assert!(r.contains("class=\"badge ok\""), "{r}");
    assert!(r.contains("class=\"sync in_sync\""), "{r}");
    assert!(r.contains(&format!("<code>{}</code>", &first[..12])), "{r}");
    assert!(r.contains(&format!("/deploys/{web_failed}\" class=\"attempt\"><span class=\"badge failed\">")), "{r}");
    assert!(r.contains("<time datetime=\"20"), "absolute timestamps: {r}");
    assert!(row(&html, &sick).contains("class=\"badge failed\""), "{}", row(&html, &sick));
    let r = row(&html, &smoke);
    assert!(r.contains("class=\"badge ok\"") && r.contains("badge rolled_back"), "{r}");
    let (_, page, _) = get(&http, &format!("{base}/stacks/{web}"), &[]);
    assert!(card(&page, "runs").contains(&format!("deploy #{web_ok}")), "{page}");
    assert!(card(&page, "wants").contains("in sync"), "{page}");
    assert!(card(&page, "attempt").contains("refused before touching the engine"), "{page}");
    let (_, page, _) = get(&http, &format!("{base}/stacks/{smoke}"), &[]);
    assert!(card(&page, "wants").contains("failed before"), "{page}");

    // Why the smoke deploy failed: the check, its answer, the rollback target, the commit.
    let rolled = id_of(&all, &smoke, "rolled_back");
    let smoke_ok = id_of(&all, &smoke, "succeeded");
    let (_, page, _) = get(&http, &format!("{base}/deploys/{rolled}"), &[]);
    let check = format!("<strong class=\"step-name\">smoke http://127.0.0.1:{port}/health</strong>");
    let at = page.find(&check).unwrap_or_else(|| panic!("no smoke step: {page}"));
    let li = &page[page[..at].rfind("<li").unwrap()..at];
    assert!(li.contains("badge failed"), "{li}");
    assert!(
        page[at..].starts_with(&format!("{check}: <span class=\"summary\">HTTP 503, expected 2xx after 1 try")),
        "{page}"
    );
    assert!(page.contains("<strong class=\"step-name\">rollback: converge</strong>"), "{page}");
    assert!(page.contains(&format!("href=\"{base}/deploys/{smoke_ok}\" id=\"rollback-target\"")), "{page}");
    assert!(page.contains("<span class=\"subject\">smoke: check the health endpoint</span>"), "{page}");
    assert!(page.contains(&format!("<code>stacks/{smoke}/compose.yaml</code>")), "{page}");
    assert!(page.contains("<span class=\"phase\">smoke</span> <span class=\"took\">"), "{page}");

    // An unhealthy container: its probe's own output, on the deploy and live on the stack page.
    let sick_failed = id_of(&all, &sick, "failed");
    let (_, page, _) = get(&http, &format!("{base}/deploys/{sick_failed}"), &[]);
    assert!(page.contains("Health probe output") && page.contains("] probe-says-no"), "{page}");
    let (_, page, _) = get(&http, &format!("{base}/stacks/{sick}"), &[]);
    assert!(page.contains("<span class=\"health unhealthy\">unhealthy</span>"), "{page}");
    assert!(page.contains("exit 1: probe-says-no</pre>"), "{page}");
    // An exited container: its exit code and last words.
    let (_, page, _) = get(&http, &format!("{base}/deploys/{}", id_of(&all, &bad, "failed")), &[]);
    assert!(page.contains("Exit code <strong class=\"exit-code\">3</strong>") && page.contains("last-words"), "{page}");

    // Banners: a paused stack (from the dashboard), then a rejected berth.toml.
    let (_, page, _) = get(&http, &format!("{base}/stacks/{web}"), &[("Cookie", &admin)]);
    let form = format!("csrf={}&reason=disk+swap", csrf(&page));
    assert_eq!(post(&http, &format!("{base}/stacks/{web}/pause"), &[], &form).0, 403, "no writer");
    assert_eq!(
        post(&http, &format!("{base}/stacks/{web}/pause"), &[("Cookie", &admin)], "reason=x").0,
        403,
        "no token"
    );
    assert_eq!(post(&http, &format!("{base}/stacks/{web}/pause"), &[("Cookie", &admin)], &form).0, 303);
    let (_, html, _) = get(&http, &format!("{base}/"), &[]);
    assert!(html.contains(&format!("<strong>{web} is paused</strong>")) && html.contains("disk swap"), "{html}");
    repo.write("berth.toml", &format!("{}[[stack]]\nname = \"x\"\nbogus = 1\n", toml(true)));
    let third = repo.commit("a typo");
    server.push(&second, &third, "?wait=true");
    let (_, html, _) = get(&http, &format!("{base}/"), &[]);
    assert!(html.contains("berth.toml of") && html.contains(&format!("rejected at {}", &third[..12])), "{html}");
    assert!(html.contains("bogus"), "the error: {html}");
    let (_, page, _) = get(&http, &format!("{base}/stacks/{web}"), &[("Cookie", &admin)]);
    assert_eq!(
        post(&http, &format!("{base}/stacks/{web}/resume"), &[("Cookie", &admin)], &format!("csrf={}", csrf(&page))).0,
        303
    );

    // No page shows a secret: not the berth secret, nor a secret-named variable only compose knows.
    let engine_env = inspect(&container(&web, "app"), "{{json .Config.Env}}");
    assert!(engine_env.contains(&planted) && engine_env.contains(&literal), "{engine_env}");
    let web_app = container(&web, "app");
    let logs = docker_out(&["logs", &web_app]);
    assert!(logs.contains(&planted) && logs.contains(&literal), "the container must print them: {logs}");
    let mut pages = vec![format!("{base}/"), format!("{base}/stacks/{web}/containers/{}/logs", &web_app[..12])];
    for s in [&web, &smoke, &sick, &bad] {
        pages.push(format!("{base}/stacks/{s}"));
    }
    for d in server.deploys() {
        pages.push(format!("{base}/deploys/{}", d["id"]));
    }
    for p in &pages {
        let (code, body, _) = get(&http, p, &[("Cookie", &admin)]);
        assert_eq!(code, 200, "{p}");
        assert!(!body.contains(&planted) && !body.contains(&literal), "{p} shows a secret");
    }
    let (_, page, _) = get(&http, &pages[1], &[]);
    assert!(page.contains("db=********") && page.contains("api=********"), "{page}");

    // Any screen: 360 px without horizontal scrolling, dark mode, named controls; screenshots on demand.
    let shots = std::env::var("BERTH_SCREENSHOTS").ok();
    let mut b = Browser::start();
    let views = [
        ("overview", format!("{base}/")),
        ("stack", format!("{base}/stacks/{smoke}")),
        ("deploy", format!("{base}/deploys/{smoke_ok}")),
        ("failed-deploy", format!("{base}/deploys/{rolled}")),
        ("unhealthy", format!("{base}/deploys/{sick_failed}")),
    ];
    for (name, url) in &views {
        b.viewport(360, 740, true);
        b.dark(false);
        b.open(url);
        let wide = b.eval("document.documentElement.scrollWidth");
        assert!(wide.as_u64().unwrap() <= 360, "{name} scrolls sideways at 360 px: {wide}");
        assert_eq!(b.eval(A11Y), serde_json::json!([]), "{name}");
        let light = b.eval("getComputedStyle(document.body).backgroundColor");
        b.dark(true);
        let dark = b.eval("getComputedStyle(document.body).backgroundColor");
        assert_eq!((light.as_str(), dark.as_str()), (Some("rgb(247, 248, 250)"), Some("rgb(18, 22, 29)")), "{name}");
        if let Some(dir) = shots.as_ref().filter(|_| *name != "unhealthy") {
            for (w, h) in [(420, 900), (1400, 900)] {
                for dark in [false, true] {
                    b.viewport(w, h, w < 600);
                    b.dark(dark);
                    b.open(url);
                    let file = format!("{dir}/{name}-{w}-{}.png", if dark { "dark" } else { "light" });
                    std::fs::write(file, b.screenshot_full()).unwrap();
                }
            }
        }
    }
    // Keyboard: the first Tab reaches the skip link, which leads to the content.
    b.viewport(1400, 900, false);
    b.open(&format!("{base}/"));
    b.tab();
    assert_eq!(b.eval("document.activeElement.className"), "skip");
    b.tab();
    assert_eq!(b.eval("document.activeElement.getAttribute('aria-label')"), "berth: all stacks");

    // A failing sync: the config is fixed, then the repository the controller follows goes away.
    repo.write("berth.toml", &toml(true));
    let fourth = repo.commit("the typo fixed");
    server.push(&third, &fourth, "?wait=true");
    let moved = repo.path().with_extension("away");
    std::fs::rename(repo.path(), &moved).unwrap();
    let (code, _) = server.push(&fourth, &fourth, "?wait=true");
    let (_, html, _) = get(&http, &format!("{base}/"), &[]);
    std::fs::rename(&moved, repo.path()).unwrap();
    assert_eq!(code, 502, "a fetch that fails is a bad gateway");
    assert!(html.contains("Sync of default failing") && html.contains("What runs stays as it is."), "{html}");
    assert!(html.contains("last good sync"), "{html}");
}

#[test]
fn containers_and_their_logs_update_live_and_keep_secrets_out() {
    let f = Fixture::bare(&["live"]);
    let s = f.stack();
    let dir = tempfile::tempdir().unwrap();
    let planted = format!("planted-{}-l1ve", std::process::id());
    let literal = format!("literal-{}-k3y", std::process::id());
    let file = dir.path().join("planted");
    std::fs::write(&file, &planted).unwrap();
    let repo = &f.repo;
    repo.write(
        "berth.toml",
        &format!(
            "[defaults]\nverify = {{ stable = \"1s\" }}\n[dashboard]\nread = \"public\"\n\
             [[stack]]\nname = \"{s}\"\nenv = {{ DB_PASSWORD = {{ file = \"{}\" }} }}\n",
            file.display()
        ),
    );
    repo.stack(&s, &format!(
            "services:\n  app:\n    image: {IMAGE}\n    stop_signal: SIGKILL\n    environment:\n      DB_PASSWORD: ${{DB_PASSWORD}}\n      SERVICE_TOKEN: {literal}\n    \
             command: [\"sh\", \"-c\", \"echo first line; echo db=$$DB_PASSWORD; exec sleep 2147483647\"]\n  \
             worker:\n    image: {IMAGE}\n    command: [\"sleep\", \"2147483647\"]\n    stop_signal: SIGKILL\n"
        ),
    );
    repo.commit("two services");
    let server = Server::start(repo);
    assert_eq!(server.settle()[0]["status"], "succeeded");
    let (base, http) = (server.base.clone(), client(None));
    let (app, worker) = (container(&s, "app"), container(&s, "worker"));

    // Read live: the list follows the engine without a reload.
    let mut b = Browser::start();
    b.open(&format!("{base}/stacks/{s}"));
    let state = |b: &mut Browser, svc: &str| {
        b.eval(&format!("(document.querySelector('tr[data-service=\"{svc}\"] .state') || {{}}).textContent || ''"))
    };
    assert_eq!(state(&mut b, "app"), "running");
    assert_eq!(state(&mut b, "worker"), "running");
    let image = b.eval("document.querySelector('tr[data-service=\"app\"] td[data-label=Image]').textContent");
    assert_eq!(image, IMAGE);
    b.eval("window.stayed = true");
    docker_out(&["kill", &worker]);
    wait_for("the worker to show as exited", Duration::from_secs(30), || {
        (state(&mut b, "worker") == "exited").then_some(())
    });
    assert_eq!(b.eval("window.stayed === true"), true, "the page reloaded");
    let exit = b.eval("document.querySelector('tr[data-service=\"worker\"] .exit').textContent");
    assert_eq!(exit, "exit code 137");

    // Restart a service: the write scope and the form's token.
    let (_, page, _) = get(&http, &format!("{base}/stacks/{s}"), &[]);
    assert!(!page.contains("Restart worker"), "an anonymous reader sees the restart button");
    let restart = format!("{base}/stacks/{s}/services/worker/restart");
    assert_eq!(post(&http, &restart, &[], "csrf=x").0, 403);
    let admin = login(&http, &base, &server.key, &server.secret);
    let (_, page, _) = get(&http, &format!("{base}/stacks/{s}"), &[("Cookie", &admin)]);
    assert!(page.contains("aria-label=\"Restart service worker\""), "{page}");
    assert_eq!(post(&http, &restart, &[("Cookie", &admin)], "csrf=forged").0, 403);
    assert_eq!(post(&http, &restart, &[("Cookie", &admin)], &format!("csrf={}", csrf(&page))).0, 303);
    assert_eq!(inspect(&worker, "{{.State.Running}}"), "true");
    wait_for("the worker to show as running again", Duration::from_secs(30), || {
        (state(&mut b, "worker") == "running").then_some(())
    });

    // Logs: tail and since limits, secrets redacted, then followed live.
    let logs = format!("{base}/stacks/{s}/containers/{}/logs", &app[..12]);
    let (code, page, _) = get(&http, &format!("{logs}?tail=1"), &[]);
    assert_eq!(code, 200);
    let pre = page.split("id=\"container-log\"").nth(1).unwrap();
    let pre = &pre[pre.find('>').unwrap() + 1..pre.find("</pre>").unwrap()];
    assert_eq!(pre.trim_end().lines().count(), 1, "{pre}");
    assert!(pre.contains("db=********"), "{pre}");
    let (_, page, _) = get(&http, &format!("{logs}?since=1h"), &[]);
    assert!(page.contains("first line"), "{page}");
    assert_eq!(get(&http, &format!("{base}/stacks/{s}/containers/notmine/logs"), &[]).0, 404);
    b.open(&logs);
    assert!(b.eval("document.getElementById('container-log').textContent").as_str().unwrap().contains("first line"));
    b.eval("window.stayed = true");
    let say = |text: &str| docker_out(&["exec", &app, "sh", "-c", &format!("echo {text} > /proc/1/fd/1")]);
    wait_for("the follow stream to open", Duration::from_secs(30), || {
        say("marker-one");
        let t = b.eval("document.getElementById('container-log').textContent");
        t.as_str()?.contains("marker-one").then_some(())
    });
    say(&format!("leak={planted}+{literal}"));
    wait_for("the leak line", Duration::from_secs(30), || {
        let t = b.eval("document.getElementById('container-log').textContent");
        t.as_str()?.contains("leak=").then_some(t)
    });
    let text = b.eval("document.body.innerText").as_str().unwrap().to_string();
    assert!(!text.contains(&planted) && !text.contains(&literal), "{text}");
    assert!(text.contains("leak=********+********"), "{text}");
    assert_eq!(b.eval("window.stayed === true"), true);
}
