//! Notifications: tell webhooks, ntfy, Slack, Discord and Gotify what happened.
//!
//! Sending happens on its own threads with bounded retries: a failing target
//! never blocks or fails a deploy. `flush` waits (bounded) for what is in flight,
//! so a CLI run does not exit before its notifications left.

use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use berth_core::config::NotifyToml;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// Something worth telling.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Event {
    /// started, succeeded, failed, rolled_back, blocked, waiting, drift, config_rejected.
    pub event: String,
    pub stack: Option<String>,
    pub server: Option<String>,
    pub commit: Option<String>,
    pub deploy_id: Option<i64>,
    /// One line: the reason of a failure, the drift findings, the config errors.
    pub detail: Option<String>,
    /// What a deploy changes, when known: `recreates web, worker`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<String>,
    /// The diff whose summary becomes `changes` if it settles in time ([`CHANGES_WAIT`]); the
    /// wait happens on the sending thread, never in the deploy.
    #[serde(skip)]
    pub pending: Option<crate::deploydiff::Key>,
    pub at: i64,
}

/// How long a notification waits for its deploy's diff summary before it leaves without it.
const CHANGES_WAIT: Duration = Duration::from_secs(10);

impl Event {
    pub fn deploy(event: &str, stack: &str, server: &str, commit: &str, id: i64, detail: Option<String>) -> Event {
        Event {
            event: event.into(),
            stack: Some(stack.into()),
            server: Some(server.into()),
            commit: Some(commit.into()),
            deploy_id: Some(id),
            detail,
            changes: None,
            pending: None,
            at: crate::state::now(),
        }
    }

    /// With the summary of the deploy's diff (`stack` from `old` to `new`): now if it is known,
    /// else when it settles, for a bounded time, as the event is sent.
    pub fn with_changes(mut self, old: Option<&str>, wait: bool) -> Event {
        let (Some(stack), Some(new), Some(old)) = (&self.stack, &self.commit, old) else { return self };
        if old == new {
            return self;
        }
        let key = crate::deploydiff::Key { stack: stack.clone(), old: old.to_string(), new: new.clone() };
        self.changes = crate::deploydiff::summary(&key);
        if self.changes.is_none() && wait {
            self.pending = Some(key);
        }
        self
    }

    /// A one-line human summary.
    pub fn title(&self) -> String {
        let stack = self.stack.as_deref().unwrap_or("berth");
        let commit = self.commit.as_deref().map(|c| format!(" at {}", &c[..c.len().min(10)])).unwrap_or_default();
        let what = match self.event.as_str() {
            "started" => "deploy started",
            "succeeded" => "deployed",
            "failed" => "deploy failed",
            "rolled_back" => "deploy rolled back",
            "blocked" => "deploy blocked by CI",
            "waiting" => "deploy waits for its deploy window",
            "drift" => "drift detected",
            "config_rejected" => "configuration rejected",
            other => other,
        };
        let changes = self.changes.as_deref().map(|c| format!(" ({c})")).unwrap_or_default();
        format!("{stack}: {what}{commit}{changes}")
    }
}

/// The configured targets and the sends in flight.
#[derive(Default)]
pub struct Notifier {
    targets: Vec<NotifyToml>,
    inflight: Mutex<Vec<JoinHandle<()>>>,
}

impl Notifier {
    pub fn new(targets: Vec<NotifyToml>) -> Notifier {
        Notifier { targets, inflight: Mutex::new(Vec::new()) }
    }

    /// Send `event` to every target that wants it, in the background.
    pub fn send(&self, event: &Event) {
        for t in self.targets.iter().filter(|t| t.events.as_ref().is_none_or(|e| e.contains(&event.event))) {
            let (t, mut e) = (t.clone(), event.clone());
            let handle = std::thread::spawn(move || {
                if let Some(key) = e.pending.take() {
                    e.changes =
                        crate::deploydiff::wait(&key, CHANGES_WAIT).and_then(|_| crate::deploydiff::summary(&key));
                }
                if let Err(err) = deliver(&t, &e) {
                    tracing::warn!(kind = %t.kind, event = %e.event, error = %err, "notification not delivered");
                }
            });
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            inflight.retain(|h| !h.is_finished());
            inflight.push(handle);
        }
    }

    /// Wait up to `timeout` for the notifications in flight.
    pub fn flush(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let handles: Vec<_> = std::mem::take(&mut *self.inflight.lock().unwrap_or_else(|p| p.into_inner()));
        for h in handles {
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }
}

/// The request a target gets for an event: (content type, body, extra headers).
pub fn payload(t: &NotifyToml, e: &Event) -> (String, Vec<u8>, Vec<(String, String)>) {
    // A failure reason may quote compose's output: hide every secret the process knows.
    let e = &Event { detail: e.detail.as_deref().map(|d| crate::redact::apply(d).into_owned()), ..e.clone() };
    let text = match &e.detail {
        Some(d) => format!("{}: {d}", e.title()),
        None => e.title(),
    };
    let json_body = |v: Value| ("application/json".to_string(), v.to_string().into_bytes(), Vec::new());
    match t.kind.as_str() {
        "slack" => json_body(json!({ "text": text })),
        "discord" => json_body(json!({ "content": text })),
        "gotify" => {
            let priority =
                if matches!(e.event.as_str(), "failed" | "rolled_back" | "blocked" | "drift" | "config_rejected") {
                    8
                } else {
                    4
                };
            json_body(
                json!({ "title": e.title(), "message": e.detail.clone().unwrap_or_else(|| e.title()), "priority": priority }),
            )
        }
        "ntfy" => {
            let tags = match e.event.as_str() {
                "succeeded" => "white_check_mark",
                "started" => "rocket",
                _ => "warning",
            };
            let mut headers = vec![("Title".to_string(), e.title()), ("Tags".to_string(), tags.to_string())];
            if matches!(e.event.as_str(), "failed" | "rolled_back" | "blocked" | "drift" | "config_rejected") {
                headers.push(("Priority".to_string(), "high".to_string()));
            }
            ("text/plain".to_string(), text.into_bytes(), headers)
        }
        _ => json_body(serde_json::to_value(e).unwrap_or_default()),
    }
}

fn deliver(t: &NotifyToml, e: &Event) -> Result<(), String> {
    let (content_type, body, mut headers) = payload(t, e);
    if t.kind == "webhook"
        && let Some(s) = &t.secret
    {
        let key = crate::secrets::resolve(s).map_err(|e| e.to_string())?;
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).map_err(|e| e.to_string())?;
        mac.update(&body);
        headers.push(("X-Berth-Signature-256".into(), format!("sha256={}", hex::encode(mac.finalize().into_bytes()))));
    }
    if let Some(tok) = &t.token {
        let tok = crate::secrets::resolve(tok).map_err(|e| e.to_string())?;
        headers.push(match t.kind.as_str() {
            "gotify" => ("X-Gotify-Key".into(), tok),
            _ => ("Authorization".into(), format!("Bearer {tok}")),
        });
    }
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().map_err(|e| e.to_string())?;
    let mut delay = Duration::from_millis(250);
    let mut last = String::new();
    for attempt in 1..=4 {
        let mut req =
            client.post(&t.url).header("Content-Type", &content_type).header("User-Agent", "berth").body(body.clone());
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        match crate::bridge::block_on(async { req.send().await }) {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if r.status().is_client_error() => return Err(format!("HTTP {}", r.status().as_u16())),
            Ok(r) => last = format!("HTTP {}", r.status().as_u16()),
            Err(e) => last = e.without_url().to_string(),
        }
        if attempt < 4 {
            std::thread::sleep(delay);
            delay *= 2;
        }
    }
    Err(format!("gave up after 4 tries: {last}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(kind: &str) -> NotifyToml {
        NotifyToml { kind: kind.into(), url: "http://127.0.0.1:9/".into(), events: None, secret: None, token: None }
    }

    #[test]
    fn payloads_follow_each_format() {
        let e = Event::deploy("failed", "web", "local", "0123456789abcdef", 7, Some("unhealthy".into()));
        let body = |k: &str| String::from_utf8(payload(&target(k), &e).1).unwrap();
        assert_eq!(body("slack"), r#"{"text":"web: deploy failed at 0123456789: unhealthy"}"#);
        assert_eq!(body("discord"), r#"{"content":"web: deploy failed at 0123456789: unhealthy"}"#);
        let g: Value = serde_json::from_str(&body("gotify")).unwrap();
        assert_eq!(g["priority"], 8);
        let (_, text, headers) = payload(&target("ntfy"), &e);
        assert_eq!(String::from_utf8(text).unwrap(), "web: deploy failed at 0123456789: unhealthy");
        assert!(headers.contains(&("Priority".to_string(), "high".to_string())));
        let w: Value = serde_json::from_str(&body("webhook")).unwrap();
        assert_eq!((w["event"].as_str(), w["deploy_id"].as_i64()), (Some("failed"), Some(7)));
        assert!(w.get("changes").is_none());
    }

    #[test]
    fn a_known_diff_summary_joins_the_title() {
        let mut e = Event::deploy("succeeded", "web", "local", "0123456789abcdef", 8, None);
        // Unknown and not waited for: no summary, nothing pending.
        let plain = e.clone().with_changes(Some("fedcba9876543210"), false);
        assert_eq!((plain.changes.as_deref(), plain.pending.is_some()), (None, false));
        assert!(e.clone().with_changes(Some("fedcba9876543210"), true).pending.is_some());
        assert!(e.clone().with_changes(Some("0123456789abcdef"), true).pending.is_none());
        e.changes = Some("recreates web, worker".into());
        let body = String::from_utf8(payload(&target("slack"), &e).1).unwrap();
        assert_eq!(body, r#"{"text":"web: deployed at 0123456789 (recreates web, worker)"}"#);
        let w: Value = serde_json::from_slice(&payload(&target("webhook"), &e).1).unwrap();
        assert_eq!(w["changes"], "recreates web, worker");
    }
}
