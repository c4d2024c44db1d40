//! The HTTP contract of `berth serve` where the HTTP stack itself answers: oversized and chunked
//! bodies, ignored deliveries in the metrics, the webhook's answer, health, Komodo's `services`.

use std::io::{Read, Write};

use crate::common::server::Server;
use crate::common::*;
use serde_json::json;

/// Send raw HTTP/1.1 bytes and read the whole answer (the server closes after it).
fn raw_http(server: &Server, request: &[u8]) -> (u16, String, String) {
    let addr = server.base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    // The server may answer (413) before it read everything we send.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, head.to_ascii_lowercase(), body.to_string())
}

/// The JSON error body inside a possibly chunked HTTP/1.1 body.
fn error_code(body: &str) -> String {
    let start = body.find('{').unwrap_or(0);
    let end = body.rfind('}').map(|e| e + 1).unwrap_or(body.len());
    let v: serde_json::Value = serde_json::from_str(&body[start..end]).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert!(v["error"].is_string(), "{v}");
    v["code"].as_str().unwrap_or("").to_string()
}

fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn the_http_stack_answers_in_the_api_shape_and_the_metrics_count_what_it_refused() {
    let f = Fixture::bare(&["contract"]);
    let (s, repo) = (f.stack(), &f.repo);
    repo.write("berth.toml", "[berth]\nmax_body = 4096\n[defaults]\nverify = { stable = \"1s\" }\n");
    repo.stack(&s, &sleeper(&["app"]));
    let first = repo.commit("one");
    let server = Server::start(repo);
    server.settle();

    // An announced oversized body, and a chunked one that grows past the limit.
    let big = "x".repeat(10_000);
    let announced = format!(
        "POST /webhook HTTP/1.1\r\nHost: t\r\nX-GitHub-Event: push\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{big}",
        big.len()
    );
    let (code, head, body) = raw_http(&server, announced.as_bytes());
    assert_eq!(code, 413, "{head}{body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_eq!(error_code(&body), "payload_too_large");
    let chunked = format!(
        "POST /api/v1/stacks/{s}/deploy HTTP/1.1\r\nHost: t\r\nX-Api-Key: {}\r\nX-Api-Secret: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        server.key,
        server.secret,
        big.len()
    );
    let (code, head, body) = raw_http(&server, chunked.as_bytes());
    assert_eq!(code, 413, "{head}{body}");
    assert_eq!(error_code(&body), "payload_too_large");
    // A wrong method is an API error too, not an empty answer.
    let r = server.http.put(server.url("/webhook")).send().unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(error_code(&r.text().unwrap()), "method_not_allowed");

    // Accepted without waiting: the answer names the deploys when the plan is quick, and a link.
    repo.stack(&s, &sleeper(&["app", "side"]));
    let second = repo.commit("two");
    let (code, body) = server.push(&first, &second, "");
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["deploys"][0]["stack"], s.as_str(), "{body}");
    let follow = body["follow"].as_str().unwrap().to_string();
    assert!(follow.ends_with(&second), "{follow}");
    let listed = server.get(&follow).unwrap();
    assert_eq!(listed["deploys"][0]["id"], body["deploys"][0]["id"], "{listed}");
    let health = server.get("/health").unwrap();
    assert!(health["deploys"]["message"].as_str().unwrap().contains("queued"), "{health}");
    server.settle();
    // A repeated delivery and a push to another branch are ignored, and counted as such.
    let (code, body) = server.push(&first, &second, "");
    assert_eq!((code, body["synced"].as_bool()), (202, Some(true)), "{body}");
    let other = json!({"ref": "refs/heads/feature", "before": first, "after": second, "commits": []}).to_string();
    let sig = berth_core::webhook::sign(server::SECRET.as_bytes(), other.as_bytes());
    let (code, body) =
        server.raw("/webhook", &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)], other.into_bytes());
    assert_eq!((code, body["status"].as_str()), (202, Some("ignored")), "{body}");

    let r = server.http.get(server.url("/metrics")).send().unwrap();
    let kind = r.headers()["content-type"].to_str().unwrap().to_string();
    let text = r.text().unwrap();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    assert!(text.trim_end().ends_with("# EOF"), "the body is OpenMetrics: {text}");
    assert_eq!(metric(&text, "berth_webhook_requests_total", &["result=\"too_large\""]), 1.0, "{text}");
    assert_eq!(metric(&text, "berth_webhook_requests_total", &["result=\"ignored\""]), 1.0, "{text}");

    // Komodo's `services` is refused, never silently ignored.
    let (code, body) = server.post("/execute/DeployStack", &json!({"stack": s, "services": ["app"]}));
    assert_eq!(code, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("whole stacks"), "{body}");
}
