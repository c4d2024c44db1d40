//! Freezes from the dashboard: an admin freezes an environment with the overview's form (session
//! and CSRF token), the CLI's deploy is refused naming it, the admin deploys anyway from the
//! stack's page (recorded), lifts it and the CLI's deploy goes through; other users see the
//! freeze but may neither make, lift nor override one.

use std::time::Duration;

use crate::common::browser::Browser;
use crate::common::server::Server;
use crate::common::web::{client, csrf, get, login, post};
use crate::common::*;

fn new_key(repo: &Repo, name: &str, scope: &str) -> (String, String) {
    let out = repo.berth(&["keys", "create", "--name", name, "--scope", scope]).ok();
    let field = |n: &str| out.stdout.lines().find_map(|l| l.strip_prefix(n).map(|v| v.trim().to_string())).unwrap();
    (field("key:"), field("secret:"))
}

#[test]
fn an_admin_freezes_overrides_and_lifts_from_the_dashboard_and_the_cli_obeys() {
    let f = Fixture::with(&["dfz"], |n| Some(format!("[[environment]]\nname = \"prod\"\nstacks = [\"{}\"]\n", n[0])));
    let (app, repo) = (f.stack(), &f.repo);
    let server = f.serve();
    let web = client(None);
    let overview = server.url("/");
    let (freeze_url, lift_url) = (server.url("/freezes"), server.url("/freezes/lift"));
    let freezes = || server.get("/api/v1/freezes").unwrap()["freezes"].as_array().cloned().unwrap();

    // A deploy key may deploy from the dashboard but not freeze: no form, and its post is refused.
    let (dk, ds) = new_key(repo, "deployer", "deploy");
    let deployer = login(&web, &server.base, &dk, &ds);
    let (code, html, _) = get(&web, &overview, &[("Cookie", deployer.as_str())]);
    assert_eq!(code, 200);
    assert!(!html.contains("id=\"freeze-form\""), "a deploy key sees the freeze form");
    let form = format!("csrf={}&scope=all&until=2h&reason=mine", csrf(&html));
    assert_eq!(post(&web, &freeze_url, &[("Cookie", deployer.as_str())], &form).0, 403);
    assert!(freezes().is_empty(), "a deploy key froze");

    // The admin's form: refused without its token, recorded with it.
    let admin = login(&web, &server.base, &server.key, &server.secret);
    let (code, html, _) = get(&web, &overview, &[("Cookie", admin.as_str())]);
    assert_eq!(code, 200);
    assert!(html.contains("id=\"freeze-form\"") && html.contains("No freeze is in force."), "{html}");
    let token = csrf(&html);
    let form = "scope=environment&environment=prod&until=2h&reason=release+week";
    assert_eq!(post(&web, &freeze_url, &[("Cookie", admin.as_str())], form).0, 403, "no token");
    let bad = format!("csrf={token}&scope=environment&environment=qa&until=2h&reason=x");
    assert_eq!(post(&web, &freeze_url, &[("Cookie", admin.as_str())], &bad).0, 404, "unknown environment");
    let bad = format!("csrf={token}&scope=all&until=yesterday&reason=x");
    assert_eq!(post(&web, &freeze_url, &[("Cookie", admin.as_str())], &bad).0, 400, "not a time");
    assert!(freezes().is_empty(), "a refused form froze");
    let (code, location) = post(&web, &freeze_url, &[("Cookie", admin.as_str())], &format!("csrf={token}&{form}"));
    assert_eq!(code, 303);
    assert!(location.ends_with("/#freezes"), "{location}");
    let list = freezes();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!((list[0]["scope"].as_str(), list[0]["name"].as_str()), (Some("environment"), Some("prod")));
    assert_eq!((list[0]["by"].as_str(), list[0]["reason"].as_str()), (Some("admin"), Some("release week")));
    let status = repo.berth(&["status"]).ok();
    assert!(status.stdout.contains("by admin: release week"), "{}", status.stdout);

    // Everyone who reads sees it; only the admin has the unfreeze button.
    let (_, html, _) = get(&web, &overview, &[("Cookie", deployer.as_str())]);
    assert!(html.contains("data-freeze=\"environment:prod\"") && html.contains("release week"), "{html}");
    assert!(!html.contains("/freezes/lift"), "a deploy key sees the unfreeze button");
    let lift = format!("csrf={}&scope=environment&name=prod", csrf(&html));
    assert_eq!(post(&web, &lift_url, &[("Cookie", deployer.as_str())], &lift).0, 403);
    let (_, html, _) = get(&web, &overview, &[("Cookie", admin.as_str())]);
    assert!(html.contains("Unfreeze environment `prod`"), "{html}");
    let ahead = ["(in 1h59m)", "(in 2h00m)"].iter().any(|a| html.contains(&format!("<span class=\"ago\">{a}</span>")));
    assert!(ahead, "the end is ahead, not ago: {html}");

    // The CLI refuses to deploy the frozen stack, naming the freeze.
    repo.stack(&app, &colored("green"));
    repo.commit("green");
    let r = repo.berth(&["deploy", &app]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains("environment `prod` is frozen until") && r.stdout.contains("by admin: release week"),
        "{}",
        r.stdout
    );
    assert!(inspect(&container(&app, "app"), "{{json .Config.Env}}").contains("COLOR=red"));

    // The stack's page says what holds it; only an admin may deploy anyway, with a reason.
    let (stack_url, deploy_url) = (server.url(&format!("/stacks/{app}")), server.url(&format!("/stacks/{app}/deploy")));
    let (_, page, _) = get(&web, &stack_url, &[("Cookie", deployer.as_str())]);
    assert!(page.contains("<dt>Held</dt>") && page.contains("environment `prod` is frozen until"), "{page}");
    assert!(page.contains("id=\"deploy-now\"") && !page.contains("deploy-anyway"), "{page}");
    let forced = format!("csrf={}&force=1&reason=hotfix", csrf(&page));
    assert_eq!(post(&web, &deploy_url, &[("Cookie", deployer.as_str())], &forced).0, 403);
    let (_, page, _) = get(&web, &stack_url, &[("Cookie", admin.as_str())]);
    assert!(page.contains("id=\"deploy-anyway\""), "{page}");
    let cookie = [("Cookie", admin.as_str())];
    assert_eq!(post(&web, &deploy_url, &cookie, &format!("csrf={token}&force=1&reason=+")).0, 400, "no reason");
    let (code, location) = post(&web, &deploy_url, &cookie, &format!("csrf={token}&force=1&reason=hotfix"));
    assert_eq!(code, 303);
    let id = location.rsplit('/').next().unwrap().to_string();
    let done = wait_for("the forced deploy", Duration::from_secs(120), || {
        let d = server.get(&format!("/api/v1/deploys/{id}")).ok()?;
        (d["status"] != "queued" && d["status"] != "running").then_some(d)
    });
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(inspect(&container(&app, "app"), "{{json .Config.Env}}").contains("COLOR=green"));
    let logs = repo.berth(&["logs", &id]).ok();
    assert!(
        logs.stdout.contains("# forced through a closed window by admin: hotfix (environment `prod` is frozen"),
        "{}",
        logs.stdout
    );

    // Lifted from the dashboard, the CLI's deploy goes through.
    let (code, location) =
        post(&web, &lift_url, &[("Cookie", admin.as_str())], &format!("csrf={token}&scope=environment&name=prod"));
    assert_eq!(code, 303);
    assert!(location.ends_with("/#freezes"), "{location}");
    assert!(freezes().is_empty(), "still frozen");
    repo.stack(&app, &colored("blue"));
    repo.commit("blue");
    let r = repo.berth(&["deploy", &app]).ok();
    assert!(!r.stdout.contains("frozen"), "{}", r.stdout);
    assert!(inspect(&container(&app, "app"), "{{json .Config.Env}}").contains("COLOR=blue"));
    let (_, page, _) = get(&web, &stack_url, &[("Cookie", admin.as_str())]);
    assert!(!page.contains("<dt>Held</dt>") && !page.contains("deploy-anyway"), "{page}");
    let (_, html, _) = get(&web, &overview, &[("Cookie", admin.as_str())]);
    assert!(html.contains("No freeze is in force.") && !html.contains("data-freeze="), "{html}");
}

#[test]
fn the_freeze_form_works_in_a_real_browser_without_script_help() {
    let f = Fixture::new(&["fza", "fzb"]);
    let two = f.stacks[1].clone();
    let server = f.serve();
    let base = server.base.clone();
    let freezes = || server.get("/api/v1/freezes").unwrap()["freezes"].as_array().cloned().unwrap();

    let mut b = Browser::start();
    b.open(&format!("{base}/"));
    b.eval(&format!(
        "document.querySelector('[name=key]').value = '{}'; document.querySelector('[name=secret]').value = '{}'; \
         document.querySelector('form.login').submit(); true",
        server.key, server.secret
    ));
    b.loaded(|h| h == format!("{base}/"));
    // Narrow screens: nothing scrolls sideways and every field of the form is labelled.
    b.viewport(360, 740, true);
    b.open(&format!("{base}/"));
    let wide = b.eval("document.documentElement.scrollWidth");
    assert!(wide.as_u64().unwrap() <= 360, "the overview scrolls sideways at 360 px: {wide}");
    let unlabelled = b.eval(
        "Array.from(document.querySelectorAll('#freeze-form input:not([type=hidden]), #freeze-form select'))\
         .filter(e => !e.closest('label') && !e.getAttribute('aria-label')).length",
    );
    assert_eq!(unlabelled, 0);

    // Freeze only the second stack: its checkbox, until, reason, the button.
    b.eval(&format!(
        "const f = document.getElementById('freeze-form'); \
         f.querySelector('[name=scope][value=stacks]').checked = true; \
         f.querySelector('[name=stack][value=\"{two}\"]').checked = true; \
         f.querySelector('[name=until]').value = '3h'; f.querySelector('[name=reason]').value = 'disk swap'; \
         document.getElementById('freeze').click(); true"
    ));
    b.loaded(|h| h.ends_with("/#freezes"));
    let list = freezes();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!((list[0]["scope"].as_str(), list[0]["name"].as_str()), (Some("stack"), Some(two.as_str())));
    assert_eq!(list[0]["reason"], "disk swap");
    let row = format!("tr[data-freeze=\"stack:{two}\"]");
    assert_eq!(b.eval(&format!("!!document.querySelector('{row}')")), true);
    assert!(b.eval("document.querySelector('.banners').textContent").as_str().unwrap().contains("disk swap"));

    // Its Unfreeze button lifts it.
    b.eval(&format!("document.querySelector('{row} button').click(); true"));
    wait_for("the freeze to be lifted", Duration::from_secs(30), || freezes().is_empty().then_some(()));
    b.open(&format!("{base}/"));
    assert_eq!(b.eval(&format!("!!document.querySelector('{row}')")), false);
}

#[test]
fn behind_forward_auth_only_the_listed_admins_freeze_and_unfreeze() {
    let f = Fixture::bare(&["fwf"]);
    let (s, repo) = (f.stack(), &f.repo);
    repo.write(
        "berth.toml",
        &format!(
            "[dashboard]\nread = \"public\"\nwrite = \"forward\"\nwriters = [\"alice\", \"bob\"]\nadmins = [\"alice\"]\n\
             forward_auth = {{ header = \"X-Auth-User\", proxies = [\"127.0.0.2/32\"] }}\n\
             [[stack]]\nname = \"{s}\"\nmanual = true\n"
        ),
    );
    repo.stack(&s, &sleeper(&["app"]));
    repo.commit("one manual stack");
    let server = Server::start(repo);
    let (direct, proxied) = (client(None), client(Some("127.0.0.2")));
    let (overview, freeze_url, lift_url) = (server.url("/"), server.url("/freezes"), server.url("/freezes/lift"));
    let freezes = || server.get("/api/v1/freezes").unwrap()["freezes"].as_array().cloned().unwrap();

    // bob may deploy but is no admin; alice's header counts only through the proxy.
    let (_, html, _) = get(&proxied, &overview, &[("X-Auth-User", "bob")]);
    assert!(!html.contains("freeze-form"), "bob sees the freeze form");
    // bob's own token, from the stack page's deploy button.
    let (_, page, _) = get(&proxied, &server.url(&format!("/stacks/{s}")), &[("X-Auth-User", "bob")]);
    let bob = csrf(&page);
    let form = format!("csrf={bob}&scope=stacks&stack={s}&until=1h&reason=bob");
    assert_eq!(post(&proxied, &freeze_url, &[("X-Auth-User", "bob")], &form).0, 403);
    let (_, html, _) = get(&direct, &overview, &[("X-Auth-User", "alice")]);
    assert!(!html.contains("freeze-form"), "the user header counted from an untrusted address");
    assert!(freezes().is_empty());

    let (_, html, _) = get(&proxied, &overview, &[("X-Auth-User", "alice")]);
    assert!(html.contains("id=\"freeze-form\""), "{html}");
    let token = csrf(&html);
    let form = format!("csrf={token}&scope=stacks&stack={s}&until=1h&reason=disk+swap");
    assert_eq!(post(&proxied, &freeze_url, &[("X-Auth-User", "alice")], &form).0, 303);
    let list = freezes();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!((list[0]["scope"].as_str(), list[0]["name"].as_str()), (Some("stack"), Some(s.as_str())));
    assert_eq!(list[0]["by"], "alice");

    // A public reader sees it without buttons; bob may not lift it, alice may.
    let (_, html, _) = get(&direct, &overview, &[]);
    assert!(html.contains(&format!("data-freeze=\"stack:{s}\"")) && !html.contains("/freezes/lift"), "{html}");
    let lift = format!("scope=stack&name={s}");
    assert_eq!(post(&proxied, &lift_url, &[("X-Auth-User", "bob")], &format!("csrf={bob}&{lift}")).0, 403);
    assert_eq!(freezes().len(), 1);
    assert_eq!(post(&proxied, &lift_url, &[("X-Auth-User", "alice")], &format!("csrf={token}&{lift}")).0, 303);
    assert!(freezes().is_empty());
}
