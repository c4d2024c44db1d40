//! A real `berth serve` process on loopback, and a real HTTP client for it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::{Repo, wait_for};

pub const SECRET: &str = "test-webhook-secret";

/// A running controller; stopped with SIGTERM (then SIGKILL) when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub key: String,
    pub secret: String,
    pub http: reqwest::blocking::Client,
}

impl Server {
    /// Create an admin key, start `berth serve` on a free port and wait for its first sync.
    pub fn start(repo: &Repo) -> Server {
        Server::start_env(repo, &[])
    }

    /// `start` with extra environment for the server process (e.g. a `PATH`).
    pub fn start_env(repo: &Repo, env: &[(&str, &str)]) -> Server {
        let out = repo.berth(&["keys", "create", "--name", "admin", "--scope", "admin"]).ok();
        let field = |name: &str| {
            out.stdout
                .lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
                .unwrap_or_else(|| panic!("no {name} in {}", out.stdout))
        };
        let (key, secret) = (field("key:"), field("secret:"));
        let mut child = repo
            .command(&["serve", "--listen", "127.0.0.1:0", "--shutdown-grace", "60s"])
            .env("BERTH_WEBHOOK_SECRET", SECRET)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(repo.state.path().join("serve.log")).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr =
            line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected: {line}")).to_string();
        let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(300)).build().unwrap();
        let s = Server { child, base: format!("http://{addr}"), key, secret, http };
        wait_for("the first sync", Duration::from_secs(60), || {
            let h = s.get("/health").ok()?;
            h["repos"][0]["last_sync"]["ok"].as_bool()?.then_some(())
        });
        s
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str) -> Result<Value, String> {
        let r = self
            .http
            .get(self.url(path))
            .header("X-Api-Key", &self.key)
            .header("X-Api-Secret", &self.secret)
            .send()
            .map_err(|e| e.to_string())?;
        r.json().map_err(|e| e.to_string())
    }

    /// POST JSON with the admin key; returns (status, body).
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .header("X-Api-Key", &self.key)
            .header("X-Api-Secret", &self.secret)
            .json(body)
            .send()
            .unwrap();
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    }

    /// POST raw bytes with headers; returns (status, body).
    pub fn raw(&self, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, Value) {
        let mut req = self.http.post(self.url(path)).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().unwrap();
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    }

    /// A correctly signed GitHub push webhook for `before..after` on main.
    pub fn push(&self, before: &str, after: &str, query: &str) -> (u16, Value) {
        self.push_as(before, after, query, None)
    }

    /// `push` with GitHub's delivery id (`X-GitHub-Delivery`), as a redelivery repeats it.
    pub fn push_as(&self, before: &str, after: &str, query: &str, delivery: Option<&str>) -> (u16, Value) {
        let body = json!({
            "ref": "refs/heads/main", "before": before, "after": after,
            "repository": { "full_name": "me/stacks", "clone_url": "https://git.example.com/me/stacks.git" },
            "pusher": { "name": "me" }, "commits": [],
        })
        .to_string();
        let sig = berth_core::webhook::sign(SECRET.as_bytes(), body.as_bytes());
        let mut headers = vec![
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", sig.as_str()),
            ("Content-Type", "application/json"),
        ];
        headers.extend(delivery.map(|d| ("X-GitHub-Delivery", d)));
        self.raw(&format!("/webhook{query}"), &headers, body.into_bytes())
    }

    /// A webhook delivery of event `event` signed as forge `kind` (`github`, `gitea`, `gitlab`)
    /// signs it: GitHub's `X-Hub-Signature-256`, Gitea's hex `X-Gitea-Signature`, GitLab's token.
    pub fn deliver(&self, kind: &str, event: &str, body: &Value, query: &str) -> (u16, Value) {
        self.deliver_with(kind, event, body, query, &[])
    }

    /// [`Server::deliver`] with more headers (a delivery id, say).
    pub fn deliver_with(
        &self,
        kind: &str,
        event: &str,
        body: &Value,
        query: &str,
        extra: &[(&str, &str)],
    ) -> (u16, Value) {
        let body = body.to_string();
        let sig = berth_core::webhook::sign(SECRET.as_bytes(), body.as_bytes());
        let hex = sig.trim_start_matches("sha256=").to_string();
        let headers: Vec<(&str, &str)> = match kind {
            "gitea" => vec![("X-Gitea-Event", event), ("X-Gitea-Signature", &hex)],
            "gitlab" => vec![("X-Gitlab-Event", event), ("X-Gitlab-Token", SECRET)],
            _ => vec![("X-GitHub-Event", event), ("X-Hub-Signature-256", &sig)],
        };
        let mut headers = headers;
        headers.push(("Content-Type", "application/json"));
        headers.extend_from_slice(extra);
        self.raw(&format!("/webhook{query}"), &headers, body.into_bytes())
    }

    /// Every deploy recorded so far, newest first.
    pub fn deploys(&self) -> Vec<Value> {
        self.get("/api/v1/deploys?limit=1000").unwrap()["deploys"].as_array().cloned().unwrap_or_default()
    }

    /// Wait until no deploy is queued or running.
    pub fn settle(&self) -> Vec<Value> {
        wait_for("deploys to settle", Duration::from_secs(180), || {
            let d = self.deploys();
            d.iter().all(|x| x["status"] != "queued" && x["status"] != "running").then_some(d)
        })
    }

    /// Send SIGTERM and wait for the process to exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        wait_for("berth serve to exit", Duration::from_secs(90), || self.child.try_wait().ok().flatten())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
