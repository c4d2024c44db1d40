//! Deploy windows and freezes end to end: `berth serve` holds a push until its window opens,
//! the CLI refuses a closed window or a freeze unless forced (deploy and promote), freezes through
//! the API.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::server::Server;
use crate::common::*;
use serde_json::{Value, json};

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The deploy of `stack` among the server's deploys.
fn deploy_of(server: &Server, stack: &str) -> Option<Value> {
    server.deploys().into_iter().find(|d| d["stack"] == stack)
}

#[test]
fn serve_holds_a_deploy_outside_its_window_and_starts_it_when_the_window_opens() {
    let hook = crate::common::http::Api::start(Box::new(|_, _| (200, "{}".into())));
    // The allow window opens at 10:00 UTC; the server's clock starts 8 s before.
    let toml = format!(
        "[[window]]\nname = \"ten\"\nkind = \"allow\"\nhours = \"10:00-11:00\"\ntimezone = \"UTC\"\n\
         [[notify]]\nkind = \"webhook\"\nurl = \"{}/hook\"\nevents = [\"waiting\"]\n",
        hook.base
    );
    let f = Fixture::with(&["win"], |_| Some(toml));
    let (app, repo) = (f.stack(), &f.repo);
    let before = unix_now();
    let started = Instant::now();
    let server = Server::start_env(repo, &[("BERTH_NOW", "2026-01-05T09:59:52Z")]);
    let opening = before + 8;

    let queued = wait_for("the startup deploy to be queued", Duration::from_secs(5), || deploy_of(&server, &app));
    assert_eq!(queued["status"], "queued", "{queued}");
    let why = queued["reason"].as_str().unwrap_or_default();
    assert!(why.contains("waiting: outside every allow window; next opening 2026-01-05 10:00"), "{queued}");
    assert!(containers(&app).is_empty(), "deployed before the window opened");
    let told =
        wait_for("the waiting notification", Duration::from_secs(10), || hook.posts.lock().unwrap().first().cloned());
    assert!(told.contains("\"event\":\"waiting\"") && told.contains("next opening"), "{told}");

    let done = wait_for("the deploy after the opening", Duration::from_secs(60), || {
        deploy_of(&server, &app).filter(|d| d["status"] != "queued" && d["status"] != "running")
    });
    assert_eq!(done["status"], "succeeded", "{done}");
    let at = done["started_at"].as_i64().unwrap();
    assert!(at >= opening - 1, "started at {at}, before the opening at {opening}");
    // A timer at the opening, not a once-a-minute poll.
    assert!(started.elapsed() < Duration::from_secs(40), "took {:?}", started.elapsed());
    assert!(inspect(&container(&app, "app"), "{{json .Config.Env}}").contains("COLOR=red"));
}

#[test]
fn a_deny_window_refuses_apply_with_the_next_opening_and_a_bad_zone_is_located() {
    let app = unique("deny");
    let repo = Repo::new();
    repo.stack(&app, &colored("red"));
    repo.write(
        "berth.toml",
        "[[window]]\nname = \"weekend\"\nkind = \"deny\"\nschedule = \"0 18 * * FRI\"\nduration = \"62h\"\n\
         timezone = \"Europe/Berlin\"\n",
    );
    repo.commit("a weekend freeze window");
    // Saturday noon in Berlin.
    let sat = [("BERTH_NOW", "2026-01-10T11:00:00Z"), ("TZ", "UTC")];
    let r = repo.berth_with(&["apply"], &sat);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains("not deployed: deny window weekend is open; next opening 2026-01-12 07:00 UTC"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("--force --reason TEXT"), "{}", r.stdout);
    let plan = repo.berth_with(&["plan"], &sat).ok();
    assert!(plan.stdout.contains("held: deny window weekend is open"), "{}", plan.stdout);
    // The refusal is recorded as a blocked deploy with its reason; nothing ran.
    let h = repo.json(&["history", &app, "--json"]);
    assert_eq!(h.as_array().unwrap().len(), 1, "{h}");
    assert_eq!(h[0]["status"], "blocked", "{h}");
    assert!(h[0]["reason"].as_str().unwrap_or_default().contains("deny window weekend is open; next opening"), "{h}");
    assert!(r.stdout.contains(&format!("(deploy {})", h[0]["id"])), "{}", r.stdout);

    // A bad zone is a configuration error at its line.
    repo.write(
        "berth.toml",
        "[berth]\n[[window]]\nkind = \"deny\"\nhours = \"08:00-09:00\"\ntimezone = \"Europe/Berln\"\n",
    );
    repo.commit("typo");
    let r = repo.berth(&["validate"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("berth.toml:2:1") && r.stderr.contains("unknown time zone `Europe/Berln`"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_freeze_refuses_a_cli_deploy_and_force_records_who_and_why() {
    let f = Fixture::new(&["frz"]);
    let (app, repo) = (f.stack(), &f.repo);
    let who = [("BERTH_ACTOR", "ana")];
    let out = repo.berth_with(&["freeze", "--until", "2h", "--reason", "release week"], &who).ok();
    assert!(out.stdout.contains("froze every stack until"), "{}", out.stdout);
    let status = repo.berth(&["status"]).ok();
    assert!(
        status.stdout.contains("frozen: every stack until") && status.stdout.contains("by ana: release week"),
        "{}",
        status.stdout
    );

    let r = repo.berth(&["deploy", &app]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains("every stack is frozen until") && r.stdout.contains("by ana: release week"),
        "{}",
        r.stdout
    );
    assert!(containers(&app).is_empty());
    let r = repo.berth(&["deploy", &app, "--force"]);
    assert_eq!(r.code, 2, "--force needs --reason: {r:?}");

    let r = repo.berth_with(&["deploy", &app, "--force", "--reason", "security fix"], &[("BERTH_ACTOR", "bo")]).ok();
    assert!(r.stdout.contains("deploying anyway (--force: security fix)"), "{}", r.stdout);
    let history = repo.json(&["history", &app, "--json"]);
    let id = history[0]["id"].as_i64().unwrap();
    assert_eq!(history[0]["status"], "succeeded");
    let logs = repo.berth(&["logs", &id.to_string()]).ok();
    assert!(
        logs.stdout.contains("# forced through a closed window by bo: security fix (every stack is frozen"),
        "{}",
        logs.stdout
    );

    let out = repo.berth(&["unfreeze"]).ok();
    assert!(out.stdout.contains("unfroze every stack (frozen by ana"), "{}", out.stdout);
    repo.stack(&app, &colored("blue"));
    repo.commit("blue");
    repo.berth(&["apply"]).ok();
    assert!(inspect(&container(&app, "app"), "{{json .Config.Env}}").contains("COLOR=blue"));
}

#[test]
fn freezes_through_the_api_hold_pushes_until_lifted() {
    let f = Fixture::with(&["api"], |n| Some(format!("[[environment]]\nname = \"prod\"\nstacks = [\"{}\"]\n", n[0])));
    let (app, repo) = (f.stack(), &f.repo);
    let server = f.serve();

    // A read key may list freezes but not make them.
    let out = repo.berth(&["keys", "create", "--name", "reader", "--scope", "read"]).ok();
    let field = |n: &str| out.stdout.lines().find_map(|l| l.strip_prefix(n).map(|v| v.trim().to_string())).unwrap();
    let body = json!({ "environment": "prod", "until": "1h", "reason": "audit" }).to_string().into_bytes();
    let (k, s) = (field("key:"), field("secret:"));
    let headers = [("X-Api-Key", k.as_str()), ("X-Api-Secret", s.as_str()), ("Content-Type", "application/json")];
    let (code, answer) = server.raw("/api/v1/freezes", &headers, body);
    assert_eq!(code, 403, "{answer}");

    let (code, answer) =
        server.post("/api/v1/freezes", &json!({ "environment": "prod", "until": "1h", "reason": "audit" }));
    assert_eq!(code, 201, "{answer}");
    assert_eq!(answer["freezes"][0]["scope"], "environment");
    assert_eq!(answer["freezes"][0]["name"], "prod");
    let (code, answer) = server.post("/api/v1/freezes", &json!({ "environment": "qa", "until": "1h", "reason": "x" }));
    assert_eq!(code, 404, "{answer}");
    assert_eq!(server.get("/api/v1/freezes").unwrap()["freezes"].as_array().unwrap().len(), 1);
    // The dashboard shows it.
    let web = crate::common::web::client(None);
    let cookie = crate::common::web::login(&web, &server.base, &server.key, &server.secret);
    let (code, html, _) = crate::common::web::get(&web, &server.url("/"), &[("Cookie", cookie.as_str())]);
    assert_eq!(code, 200);
    assert!(html.contains("Environment prod is frozen") && html.contains("by admin: audit"), "{html}");

    repo.stack(&app, &colored("green"));
    let second = repo.commit("green");
    // `?wait=true` answers at once with the deploy held, not when the freeze ends.
    let (code, answer) = server.push(&f.first, &second, "?wait=true&timeout=120");
    assert_eq!(code, 202, "{answer}");
    assert_eq!(answer["deploys"][0]["status"], "queued", "{answer}");
    let held = wait_for("the push to be held", Duration::from_secs(30), || {
        deploy_of(&server, &app).filter(|d| d["commit"] == second.as_str())
    });
    assert_eq!(held["status"], "queued", "{held}");
    assert!(held["reason"].as_str().unwrap_or_default().contains("environment `prod` is frozen until"), "{held}");

    let (code, answer) = server.post("/api/v1/freezes/lift", &json!({}));
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["freezes"].as_array().unwrap().len(), 1, "{answer}");
    let done = wait_for("the held deploy after the lift", Duration::from_secs(60), || {
        deploy_of(&server, &app)
            .filter(|d| d["commit"] == second.as_str() && d["status"] != "queued" && d["status"] != "running")
    });
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(inspect(&container(&app, "app"), "{{json .Config.Env}}").contains("COLOR=green"));
}

#[test]
fn an_admin_forces_an_api_deploy_through_a_freeze_with_a_recorded_reason() {
    let f = Fixture::new(&["apif"]);
    let (app, repo) = (f.stack(), &f.repo);
    let server = f.serve();
    let (code, answer) = server.post("/api/v1/freezes", &json!({ "until": "1h", "reason": "release week" }));
    assert_eq!(code, 201, "{answer}");
    repo.stack(&app, &colored("green"));
    repo.commit("green");
    let path = format!("/api/v1/stacks/{app}/deploy?wait=true&timeout=120");

    // `force` needs a reason, and an admin key.
    let (code, answer) = server.post(&path, &json!({ "force": { "reason": "" } }));
    assert_eq!((code, answer["code"].as_str()), (400, Some("bad_request")), "{answer}");
    let out = repo.berth(&["keys", "create", "--name", "ci", "--scope", "deploy"]).ok();
    let field = |n: &str| out.stdout.lines().find_map(|l| l.strip_prefix(n).map(|v| v.trim().to_string())).unwrap();
    let (k, s) = (field("key:"), field("secret:"));
    let headers = [("X-Api-Key", k.as_str()), ("X-Api-Secret", s.as_str()), ("Content-Type", "application/json")];
    let body = json!({ "force": { "reason": "hotfix" } }).to_string().into_bytes();
    let (code, answer) = server.raw(&path, &headers, body);
    assert_eq!(code, 403, "{answer}");

    let (code, answer) = server.post(&path, &json!({ "force": { "reason": "hotfix" } }));
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["deploys"][0]["status"], "succeeded", "{answer}");
    assert!(inspect(&container(&app, "app"), "{{json .Config.Env}}").contains("COLOR=green"));
    let id = answer["deploys"][0]["id"].as_i64().unwrap();
    let logs = repo.berth(&["logs", &id.to_string()]).ok();
    assert!(
        logs.stdout.contains("# forced through a closed window by admin: hotfix (every stack is frozen"),
        "{}",
        logs.stdout
    );
}

#[test]
fn a_frozen_environment_refuses_a_promotion_until_forced_with_a_recorded_reason() {
    let f = Fixture::with(&["prm"], |n| {
        Some(format!("[[environment]]\nname = \"prod\"\nstacks = [\"{}\"]\nauto = false\n", n[0]))
    });
    let (app, repo) = (f.stack(), &f.repo);
    repo.git(&["tag", "-a", "-m", "release", "v1.0.0", &f.first]);
    repo.berth_with(&["freeze", "--env", "prod", "--until", "2h", "--reason", "audit"], &[("BERTH_ACTOR", "ana")]).ok();

    let r = repo.berth(&["promote", "--to", "prod", "--tag", "v1.0.0"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains("not deployed: environment `prod` is frozen until") && r.stdout.contains("by ana: audit"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("--force --reason TEXT"), "{}", r.stdout);
    assert!(r.stdout.contains("no release made"), "{}", r.stdout);
    assert!(containers(&app).is_empty(), "deployed while frozen");
    let releases = repo.json(&["history", "--env", "prod", "--json"]);
    assert!(releases.as_array().is_none_or(|a| a.is_empty()), "a refused promotion made a release: {releases}");
    let h = repo.json(&["history", &app, "--json"]);
    assert_eq!((h[0]["status"].as_str(), h[0]["trigger"].as_str()), (Some("blocked"), Some("promote")), "{h}");

    let r = repo.berth(&["promote", "--to", "prod", "--tag", "v1.0.0", "--force"]);
    assert_eq!(r.code, 2, "--force needs --reason: {r:?}");
    let r = repo
        .berth_with(
            &["promote", "--to", "prod", "--tag", "v1.0.0", "--force", "--reason", "x"],
            &[("BERTH_ACTOR", "bo")],
        )
        .ok();
    assert!(r.stdout.contains("deploying anyway (--force: x)"), "{}", r.stdout);
    assert!(inspect(&container(&app, "app"), "{{json .Config.Env}}").contains("COLOR=red"));
    let h = repo.json(&["history", &app, "--json"]);
    assert_eq!((h[0]["status"].as_str(), h[0]["trigger"].as_str()), (Some("succeeded"), Some("promote")), "{h}");
    let logs = repo.berth(&["logs", &h[0]["id"].to_string()]).ok();
    assert!(
        logs.stdout.contains("# forced through a closed window by bo: x (environment `prod` is frozen"),
        "{}",
        logs.stdout
    );
    let releases = repo.json(&["history", "--env", "prod", "--json"]);
    assert_eq!(releases[0]["release"]["tag"], "v1.0.0", "{releases}");
}

#[test]
fn a_rollback_held_by_a_window_without_self_heal_is_forced_with_a_recorded_reason() {
    // Red, no deploys 10:00-11:00 UTC, rollbacks included.
    let f = Fixture::with(&["rbw"], |_| {
        Some("[[window]]\nname = \"maint\"\nkind = \"deny\"\nhours = \"10:00-11:00\"\ntimezone = \"UTC\"\nself_heal = false\n".into())
    });
    let (app, repo) = (f.stack(), &f.repo);
    let (open, closed) = ([("BERTH_NOW", "2026-01-05T12:00:00Z")], [("BERTH_NOW", "2026-01-05T10:30:00Z")]);
    repo.berth_with(&["deploy", &app], &open).ok();
    repo.stack(&app, &colored("green"));
    repo.commit("green");
    repo.berth_with(&["deploy", &app], &open).ok();

    let r = repo.berth_with(&["rollback", &app], &closed);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("not deployed: deny window maint is open; next opening"), "{}", r.stdout);
    assert!(r.stdout.contains("--force --reason TEXT"), "{}", r.stdout);
    assert!(inspect(&container(&app, "app"), "{{json .Config.Env}}").contains("COLOR=green"));

    let forced = [closed[0], ("BERTH_ACTOR", "bo")];
    let r = repo.berth_with(&["rollback", &app, "--force", "--reason", "bad release"], &forced).ok();
    assert!(r.stdout.contains("deploying anyway (--force: bad release)"), "{}", r.stdout);
    assert!(inspect(&container(&app, "app"), "{{json .Config.Env}}").contains("COLOR=red"));
    let h = repo.json(&["history", &app, "--json"]);
    assert_eq!((h[0]["status"].as_str(), h[0]["trigger"].as_str()), (Some("succeeded"), Some("rollback")), "{h}");
    let logs = repo.berth(&["logs", &h[0]["id"].to_string()]).ok();
    assert!(
        logs.stdout.contains("# forced through a closed window by bo: bad release (deny window maint is open"),
        "{}",
        logs.stdout
    );
}

#[test]
fn an_api_rollback_held_by_a_window_without_self_heal_is_forced_by_an_admin() {
    // Red, no deploys 10:00-11:00 UTC, rollbacks included.
    let f = Fixture::with(&["rba"], |_| {
        Some("[[window]]\nname = \"maint\"\nkind = \"deny\"\nhours = \"10:00-11:00\"\ntimezone = \"UTC\"\nself_heal = false\n".into())
    });
    let (app, repo) = (f.stack(), &f.repo);
    let open = [("BERTH_NOW", "2026-01-05T12:00:00Z")];
    repo.berth_with(&["deploy", &app], &open).ok();
    repo.stack(&app, &colored("green"));
    repo.commit("green");
    repo.berth_with(&["deploy", &app], &open).ok();
    let server = Server::start_env(repo, &[("BERTH_NOW", "2026-01-05T10:30:00Z")]);
    server.settle();
    let path = format!("/api/v1/stacks/{app}/rollback?wait=true&timeout=120");

    // Held: answered at once with the rollback queued and why.
    let (code, answer) = server.post(&path, &json!({}));
    assert_eq!(code, 202, "{answer}");
    assert_eq!(answer["deploys"][0]["status"], "queued", "{answer}");
    let held = wait_for("the rollback to be held", Duration::from_secs(30), || {
        deploy_of(&server, &app).filter(|d| d["status"] == "queued" && d["reason"].as_str().is_some())
    });
    assert!(held["reason"].as_str().unwrap().contains("deny window maint is open"), "{held}");

    // `force` needs an admin key and a reason.
    let out = repo.berth(&["keys", "create", "--name", "ci", "--scope", "deploy"]).ok();
    let field = |n: &str| out.stdout.lines().find_map(|l| l.strip_prefix(n).map(|v| v.trim().to_string())).unwrap();
    let (k, s) = (field("key:"), field("secret:"));
    let headers = [("X-Api-Key", k.as_str()), ("X-Api-Secret", s.as_str()), ("Content-Type", "application/json")];
    let body = json!({ "force": { "reason": "bad release" } }).to_string().into_bytes();
    assert_eq!(server.raw(&path, &headers, body).0, 403);
    assert_eq!(server.post(&path, &json!({ "force": { "reason": "" } })).0, 400);

    let (code, answer) = server.post(&path, &json!({ "force": { "reason": "bad release" } }));
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["deploys"][0]["status"], "succeeded", "{answer}");
    assert!(inspect(&container(&app, "app"), "{{json .Config.Env}}").contains("COLOR=red"));
    let id = answer["deploys"][0]["id"].as_i64().unwrap();
    let logs = repo.berth(&["logs", &id.to_string()]).ok();
    assert!(
        logs.stdout.contains("# forced through a closed window by admin: bad release (deny window maint is open"),
        "{}",
        logs.stdout
    );
}
