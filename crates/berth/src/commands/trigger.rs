//! `berth trigger`: the CI-side client that asks a server to deploy stacks.
//!
//! It speaks the Komodo execute API, so the same CI job works against berth
//! and Komodo: a stack the server does not know is a warning, any other
//! non-2xx answer fails the job.

use std::time::{Duration, Instant};

use berth_core::api::ErrorBody;
use berth_core::api::komodo::{IdParams, Read, StackParams, Update};
use serde_json::Value;

use crate::error::{Error, Result, exit};

pub fn trigger(stacks: &[String], server: &str, key: &str, secret: &str, wait: bool) -> Result<i32> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| Error::Io(format!("cannot build an HTTP client: {e}")))?;
    let base = server.trim_end_matches('/');
    let post = |path: &str, body: Value| {
        crate::bridge::block_on(async {
            client
                .post(format!("{base}{path}"))
                .header("X-Api-Key", key)
                .header("X-Api-Secret", secret)
                .json(&body)
                .send()
                .await
        })
    };
    let mut failed = 0;
    for stack in stacks {
        let resp = match post("/execute/DeployStack", wire(StackParams { stack: stack.clone(), services: Vec::new() }))
        {
            Ok(r) => r,
            Err(e) => {
                println!("{stack}: request failed: {e}");
                failed += 1;
                continue;
            }
        };
        let status = resp.status();
        let text = crate::bridge::block_on(async { resp.text().await }).unwrap_or_default();
        if !status.is_success() {
            let message = serde_json::from_str::<ErrorBody>(&text).map(|e| e.error).unwrap_or_default();
            if status.as_u16() == 404 {
                println!("{stack}: HTTP 404 (warning: the server does not know this stack) {message}");
            } else {
                println!("{stack}: HTTP {} {message}", status.as_u16());
                failed += 1;
            }
            continue;
        }
        let body = serde_json::from_str::<Update>(&text).ok();
        let id = body.map(|u| u.id.oid).filter(|id| !id.is_empty());
        println!("{stack}: HTTP {} (update {})", status.as_u16(), id.as_deref().unwrap_or("?"));
        if wait && let Some(id) = id {
            let deadline = Instant::now() + Duration::from_secs(30 * 60);
            let mut delay = Duration::from_millis(500);
            loop {
                let u = post("/read", wire(Read::GetUpdate(IdParams { id: id.clone() })))
                    .ok()
                    .and_then(|r| crate::bridge::block_on(async { r.json::<Update>().await }).ok());
                if let Some(u) = u
                    && u.status == "Complete"
                {
                    let ok = u.success;
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

/// A request body from the wire types the server reads (they hold only strings: serializing cannot fail).
fn wire(v: impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}
