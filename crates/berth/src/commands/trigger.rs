//! `berth trigger`: the CI-side client that asks a server to deploy stacks.
//!
//! It speaks the Komodo execute API, so the same CI job works against berth
//! and Komodo: a stack the server does not know is a warning, any other
//! non-2xx answer fails the job.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::{Error, Result, exit};

pub fn trigger(stacks: &[String], server: &str, key: &str, secret: &str, wait: bool) -> Result<i32> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| Error::Io(format!("cannot build an HTTP client: {e}")))?;
    let base = server.trim_end_matches('/');
    let post = |path: &str, body: Value| {
        client.post(format!("{base}{path}")).header("X-Api-Key", key).header("X-Api-Secret", secret).json(&body).send()
    };
    let mut failed = 0;
    for stack in stacks {
        let resp = match post("/execute/DeployStack", json!({ "stack": stack })) {
            Ok(r) => r,
            Err(e) => {
                println!("{stack}: request failed: {e}");
                failed += 1;
                continue;
            }
        };
        let status = resp.status();
        let body: Value = resp.json().unwrap_or(Value::Null);
        let message = body.get("error").and_then(Value::as_str).unwrap_or("");
        if status.as_u16() == 404 {
            println!("{stack}: HTTP {} (warning: the server does not know this stack) {message}", status.as_u16());
            continue;
        }
        if !status.is_success() {
            println!("{stack}: HTTP {} {message}", status.as_u16());
            failed += 1;
            continue;
        }
        let id = update_id(&body);
        println!("{stack}: HTTP {} (update {})", status.as_u16(), id.as_deref().unwrap_or("?"));
        if wait && let Some(id) = id {
            let deadline = Instant::now() + Duration::from_secs(30 * 60);
            let mut delay = Duration::from_millis(500);
            loop {
                let u = post("/read", json!({ "type": "GetUpdate", "params": { "id": id } }))
                    .ok()
                    .and_then(|r| r.json::<Value>().ok());
                if let Some(u) = u
                    && u.get("status").and_then(Value::as_str) == Some("Complete")
                {
                    let ok = u.get("success").and_then(Value::as_bool) == Some(true);
                    println!("{stack}: {}", if ok { "deployed" } else { "deploy failed" });
                    if !ok {
                        failed += 1;
                    }
                    break;
                }
                if Instant::now() >= deadline {
                    println!("{stack}: still not finished after 30 minutes");
                    failed += 1;
                    break;
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    Ok(if failed > 0 { exit::FAILED } else { exit::OK })
}

/// The id of a Komodo `Update`: `{"_id": {"$oid": "..."}}` or a plain string.
fn update_id(u: &Value) -> Option<String> {
    let id = u.get("_id").or_else(|| u.get("id"))?;
    id.get("$oid").and_then(Value::as_str).or_else(|| id.as_str()).map(str::to_string)
}
