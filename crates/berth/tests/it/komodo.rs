//! The Komodo-compatible API and `berth trigger`, against a real server and the real engine.
//! Requests are byte-for-byte what Komodo's published clients send.

use std::time::Duration;

use crate::common::server::Server;
use crate::common::*;
use serde_json::{Value, json};

fn poll_until_complete(server: &Server, id: &str) -> Value {
    wait_for("the update to complete", Duration::from_secs(120), || {
        let (code, u) = server.post("/read", &json!({"type": "GetUpdate", "params": {"id": id}}));
        assert_eq!(code, 200, "{u}");
        (u["status"] == "Complete").then_some(u)
    })
}

fn assert_update_shape(u: &Value) {
    for k in ["operation", "start_ts", "success", "operator", "target", "logs", "status"] {
        assert!(u.get(k).is_some(), "Update lacks required `{k}`: {u}");
    }
    let oid = u["_id"]["$oid"].as_str().unwrap();
    assert!(oid.len() == 24 && oid.bytes().all(|b| b.is_ascii_hexdigit()), "{oid}");
    for l in u["logs"].as_array().unwrap() {
        for k in ["stage", "command", "stdout", "stderr", "success", "start_ts", "end_ts"] {
            assert!(l.get(k).is_some(), "Log lacks `{k}`: {l}");
        }
    }
}

#[test]
fn komodo_clients_deploy_poll_and_batch() {
    let f = Fixture::bare(&["web", "api"]);
    let (web, api) = (f.stacks[0].clone(), f.stacks[1].clone());
    let repo = &f.repo;
    repo.stack(&web, &sleeper(&["app"]));
    repo.stack(&api, &sleeper(&["app"]));
    repo.commit("two");
    let server = Server::start(repo);
    server.settle();

    // The client's health check.
    let (code, v) = server.post("/read", &json!({"type": "GetVersion", "params": {}}));
    assert_eq!(code, 200);
    assert!(v["version"].is_string());

    // execute(DeployStack) as the Rust client sends it, then poll_update_until_complete.
    let before = container(&web, "app");
    let (code, u) = server
        .post("/execute", &json!({"type": "DeployStack", "params": {"stack": web, "services": [], "stop_time": null}}));
    assert_eq!(code, 200, "{u}");
    assert_update_shape(&u);
    assert_eq!(u["target"], json!({"type": "Stack", "id": web}));
    let done = poll_until_complete(&server, u["_id"]["$oid"].as_str().unwrap());
    assert_update_shape(&done);
    assert_eq!(done["success"], true, "{done}");
    assert!(done["end_ts"].is_i64());
    assert_eq!(container(&web, "app"), before, "an unchanged stack's container was recreated by a redeploy");

    // Path style, as the TypeScript client sends it.
    let (code, u) = server.post("/execute/DeployStack", &json!({"stack": api}));
    assert_eq!(code, 200, "{u}");
    poll_until_complete(&server, u["_id"]["$oid"].as_str().unwrap());

    // IfChanged with nothing changed: a completed Update that can still be polled.
    let (code, u) = server.post("/execute/DeployStackIfChanged", &json!({"stack": web}));
    assert_eq!(code, 200, "{u}");
    assert_eq!(u["status"], "Complete");
    let again = poll_until_complete(&server, u["_id"]["$oid"].as_str().unwrap());
    assert!(again["logs"][0]["stdout"].as_str().unwrap().contains("no changes"));

    // Batch by wildcard and comma list; an unknown name matches nothing.
    let pattern = format!("{}*,nothing-like-this", &web[..web.len() - 3]);
    let (code, items) =
        server.post("/execute", &json!({"type": "BatchDeployStack", "params": {"pattern": pattern, "tags": []}}));
    assert_eq!(code, 200, "{items}");
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["status"], "Ok");
    poll_until_complete(&server, items[0]["data"]["_id"]["$oid"].as_str().unwrap());

    // Errors: Komodo's body shape, unknown stack distinct from auth failures.
    let (code, e) = server.post("/execute/DeployStack", &json!({"stack": "no-such-stack"}));
    assert_eq!(code, 404);
    assert!(e["error"].as_str().unwrap().contains("no-such-stack") && e["trace"].is_array(), "{e}");
    let r = server.http.post(server.url("/execute/DeployStack")).json(&json!({"stack": web})).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let (code, _) = server.post("/execute", &json!({"type": "RunBuild", "params": {}}));
    assert_eq!(code, 400);
}

#[test]
fn trigger_deploys_known_stacks_warns_on_unknown_and_fails_on_errors() {
    let f = Fixture::bare(&["trig"]);
    let (s, repo) = (f.stack(), &f.repo);
    repo.stack(&s, &sleeper(&["app"]));
    repo.commit("one");
    let server = Server::start(repo);
    server.settle();
    let n = server.deploys().len();
    let run = |secret: &str| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["trigger", &s, "not-a-stack", "--wait", "--server", &server.base])
            .env("BERTH_API_KEY", &server.key)
            .env("BERTH_API_SECRET", secret)
            .output()
            .unwrap();
        Run::from(o)
    };
    let out = run(&server.secret);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains(&format!("{s}: HTTP 200")), "{}", out.stdout);
    assert!(out.stdout.contains(&format!("{s}: deployed")), "{}", out.stdout);
    assert!(out.stdout.contains("not-a-stack: HTTP 404 (warning"), "{}", out.stdout);
    assert_eq!(server.deploys().len(), n + 1);
    let out = run("bs_wrong");
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stdout.contains("HTTP 401"), "{}", out.stdout);
}
