//! The OpenAPI document at `/api/openapi.json`, held to the running server by a schemathesis conformance run.

use std::process::Command;

use crate::common::server::Server;
use crate::common::*;

const SCHEMATHESIS: &str = "schemathesis==4.32.5";

#[test]
fn the_api_conforms_to_its_openapi_document() {
    let f = Fixture::bare(&["oas"]);
    let (s, repo) = (f.stack(), &f.repo);
    repo.stack(&s, &sleeper(&["app"]));
    // Deploys that random calls may trigger settle quickly.
    repo.write("berth.toml", "[defaults]\nverify = { stable = \"1s\" }\n");
    repo.commit("one stack");
    let server = Server::start(repo);
    server.settle();

    let doc = server.get("/api/openapi.json").unwrap();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{doc}");
    assert!(doc["paths"]["/api/v1/stacks/{name}/rollback"]["post"].is_object(), "{doc}");
    // An unknown route answers in the API's error shape, not an empty body.
    let (code, body) = server.raw("/api/v1/nope", &[], Vec::new());
    assert_eq!((code, body["code"].as_str()), (404, Some("not_found")), "{body}");

    let report = repo.state.path().join("schemathesis");
    let out = Command::new(pip_tool(SCHEMATHESIS, "schemathesis"))
        .arg("run")
        .arg(server.url("/api/openapi.json"))
        .args(["--checks", "all", "--max-examples", "15", "--workers", "1", "--seed", "1"])
        .args(["--request-timeout", "120", "--max-response-time", "120", "--no-color", "--generation-database", "none"])
        .args(["-H", &format!("X-Api-Key: {}", server.key), "-H", &format!("X-Api-Secret: {}", server.secret)])
        .arg("--report-dir")
        .arg(&report)
        .output()
        .unwrap();
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    assert!(!text.contains(&server.secret), "the API secret was echoed");

    // Whatever the generated calls deployed or rolled back went through the normal path: every deploy of
    // the stack settled and none failed.
    let deploys = server.settle();
    let ours: Vec<_> = deploys.iter().filter(|d| d["stack"] == s.as_str()).collect();
    assert!(!ours.is_empty() && ours.iter().all(|d| d["status"] == "succeeded"), "{ours:?}");
    container(&s, "app");
}
