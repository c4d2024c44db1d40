//! A fake forge on loopback that keeps state like the real APIs: statuses posted to a commit
//! show up in its combined status (berth's own included), GitHub Actions reports through
//! check runs, lists come in pages (30 by default, `per_page`/`limit` honoured up to the
//! API's maximum) with `Link` headers, and scripted faults answer 502, empty bodies, or 429
//! with `Retry-After`. Shapes follow the documented APIs:
//! GitHub <https://docs.github.com/rest/commits/statuses>, <https://docs.github.com/rest/checks/runs>;
//! Gitea/Forgejo <https://docs.gitea.com/api> (`CommitStatus` has `status`, lists 30/50 with `limit`);
//! GitLab <https://docs.gitlab.com/api/commits/#commit-status> (20 per page, `per_page` up to 100).
//! Comments on requests: GitHub `POST/GET /repos/{o}/{r}/issues/{n}/comments`, `PATCH
//! /repos/{o}/{r}/issues/comments/{id}`; Gitea the same under `/api/v1`; GitLab `POST/GET
//! /api/v4/projects/{id}/merge_requests/{iid}/notes`, `PUT .../notes/{note_id}` (an edit with
//! the other forge's method is refused, as the real APIs do).
//! Pull requests: GitHub `GET/POST /repos/{o}/{r}/pulls` (`head=owner:branch` filter), `PATCH
//! .../pulls/{n}`; Gitea the same under `/api/v1` without a head filter; GitLab `GET/POST
//! /api/v4/projects/{id}/merge_requests` (`source_branch` filter, `iid`, `description`), `PUT
//! .../merge_requests/{iid}`. A second open request from one branch is refused (GitHub 422, Gitea
//! and GitLab 409).

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::http::Request;
use super::{Repo, colored};

/// A scripted answer to the next GET, before the API answers normally.
#[derive(Debug, Clone)]
pub enum Fault {
    Status(u16),
    EmptyBody,
    /// 429 with `Retry-After: secs`.
    RateLimited(u64),
    /// For the next pull request or comment created: created, but answered 502 (the answer was lost).
    LostCreate,
}

#[derive(Default)]
pub struct Data {
    /// Statuses of each commit in the order they were posted (the provider's own shape).
    pub statuses: BTreeMap<String, Vec<Value>>,
    pub check_runs: BTreeMap<String, Vec<Value>>,
    /// Every POST: path and JSON body.
    pub posts: Vec<(String, Value)>,
    /// Every request line (`GET /path?query`).
    pub hits: Vec<String>,
    /// Comments on pull/merge requests: id → (the list path they were posted to, body).
    pub comments: BTreeMap<u64, (String, String)>,
    /// Pull/merge requests by number, in the provider's own shape.
    pub pulls: BTreeMap<u64, Value>,
    pub faults: VecDeque<Fault>,
}

#[derive(Clone)]
pub struct Forge {
    pub base: String,
    pub kind: &'static str,
    pub data: Arc<Mutex<Data>>,
}

impl Forge {
    /// `kind`: `github`, `gitea` or `gitlab`.
    pub fn start(kind: &'static str) -> Forge {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let forge = Forge { base: base.clone(), kind, data: Arc::default() };
        let f = forge.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let Some(Request { method, target, body, .. }) = Request::read(&stream) else { continue };
                let (status, headers, text) = f.answer(&method, &target, &body);
                let mut out = stream;
                let mut head = format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n");
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                let _ = write!(out, "{head}Content-Length: {}\r\nConnection: close\r\n\r\n{text}", text.len());
            }
        });
        forge
    }

    /// A status as the forge's CI would post it.
    pub fn status(&self, commit: &str, context: &str, state: &str, description: &str, url: &str) {
        let v = self.shape(context, state, description, url);
        self.data.lock().unwrap().statuses.entry(commit.to_string()).or_default().push(v);
    }

    /// A GitHub check run (`conclusion` only when `status` is `completed`).
    pub fn check_run(&self, commit: &str, name: &str, status: &str, conclusion: Option<&str>) {
        let runs = &mut self.data.lock().unwrap().check_runs;
        let list = runs.entry(commit.to_string()).or_default();
        let id = list.len() + 1;
        list.push(json!({"id": id, "name": name, "status": status, "conclusion": conclusion,
            "details_url": format!("https://ci.example.com/runs/{id}"), "output": {"title": format!("{name} {status}")}}));
    }

    pub fn fault(&self, f: Fault, times: usize) {
        let mut d = self.data.lock().unwrap();
        for _ in 0..times {
            d.faults.push_back(f.clone());
        }
    }

    pub fn posts(&self) -> Vec<(String, Value)> {
        self.data.lock().unwrap().posts.clone()
    }

    /// The statuses posted under `context`, in order: (state, description, target_url).
    pub fn posted(&self, context: &str) -> Vec<(String, String, String)> {
        let key = if self.kind == "gitlab" { "name" } else { "context" };
        self.posts()
            .into_iter()
            .filter(|(_, v)| v[key] == context)
            .map(|(_, v)| {
                let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
                (s("state"), s("description"), s("target_url"))
            })
            .collect()
    }

    pub fn hits(&self) -> Vec<String> {
        self.data.lock().unwrap().hits.clone()
    }

    /// The path a request's comments are listed and created under, as each forge spells it.
    pub fn comments_path(&self, project: &str, number: u64) -> String {
        match self.kind {
            "gitea" => format!("/api/v1/repos/{project}/issues/{number}/comments"),
            "gitlab" => format!("/api/v4/projects/{project}/merge_requests/{number}/notes"),
            _ => format!("/repos/{project}/issues/{number}/comments"),
        }
    }

    /// The path one comment is edited at.
    pub fn comment_path(&self, project: &str, number: u64, id: u64) -> String {
        match self.kind {
            "gitea" => format!("/api/v1/repos/{project}/issues/comments/{id}"),
            "gitlab" => format!("/api/v4/projects/{project}/merge_requests/{number}/notes/{id}"),
            _ => format!("/repos/{project}/issues/comments/{id}"),
        }
    }

    /// A comment someone else wrote, as if posted through the API.
    pub fn seed_comment(&self, list_path: &str, body: &str) -> u64 {
        let mut d = self.data.lock().unwrap();
        let id = 1000 + d.comments.len() as u64;
        d.comments.insert(id, (list_path.to_string(), body.to_string()));
        id
    }

    /// The comments under a list path, oldest first: (id, body).
    pub fn comments(&self, list_path: &str) -> Vec<(u64, String)> {
        let d = self.data.lock().unwrap();
        d.comments.iter().filter(|(_, (p, _))| p == list_path).map(|(id, (_, b))| (*id, b.clone())).collect()
    }

    fn comment_json(&self, id: u64, body: &str) -> Value {
        match self.kind {
            "gitlab" => json!({"id": id, "body": body, "author": {"username": "berth"}, "system": false}),
            _ => json!({"id": id, "body": body, "user": {"login": "berth"}}),
        }
    }

    /// Comment routes: `Some(answer)` when `path` is one.
    fn comment_route(&self, d: &mut Data, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
        let is_list = path.ends_with("/comments") || path.ends_with("/notes");
        let seg: Vec<&str> = path.split('/').collect();
        let text = || serde_json::from_slice::<Value>(body).ok()?["body"].as_str().map(str::to_string);
        match method {
            "POST" if is_list => {
                let body = text()?;
                let id = 1000 + d.comments.len() as u64;
                d.comments.insert(id, (path.to_string(), body.clone()));
                if matches!(d.faults.front(), Some(Fault::LostCreate)) {
                    d.faults.pop_front();
                    return Some((502, "<html>bad gateway</html>".into()));
                }
                Some((201, self.comment_json(id, &body).to_string()))
            }
            "PATCH" | "PUT" => {
                let id: u64 = seg.last()?.parse().ok()?;
                let wanted = if self.kind == "gitlab" { "PUT" } else { "PATCH" };
                if method != wanted {
                    return Some((405, r#"{"message":"Method Not Allowed"}"#.into()));
                }
                let body = text()?;
                let Some(c) = d.comments.get_mut(&id) else {
                    return Some((404, r#"{"message":"Not Found"}"#.into()));
                };
                c.1 = body.clone();
                Some((200, self.comment_json(id, &body).to_string()))
            }
            _ => None,
        }
    }

    /// Pull request writes: `Some(answer)` when `path` is one.
    fn pull_route(&self, d: &mut Data, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
        let gitlab = self.kind == "gitlab";
        let list = if gitlab { "/merge_requests" } else { "/pulls" };
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let text_key = if gitlab { "description" } else { "body" };
        match method {
            "POST" if path.ends_with(list) => {
                let branch = v[if gitlab { "source_branch" } else { "head" }].as_str()?.to_string();
                let open = |p: &Value| {
                    let head = if gitlab { &p["source_branch"] } else { &p["head"]["ref"] };
                    head == branch.as_str() && p["state"] == if gitlab { "opened" } else { "open" }
                };
                if d.pulls.values().any(open) {
                    let status = if self.kind == "github" { 422 } else { 409 };
                    return Some((status, r#"{"message":"A pull request already exists for this branch"}"#.into()));
                }
                let lost = matches!(d.faults.front(), Some(Fault::LostCreate));
                if lost {
                    d.faults.pop_front();
                }
                let n = 1 + d.pulls.len() as u64;
                let pr = if gitlab {
                    json!({"iid": n, "id": 500 + n, "state": "opened", "title": v["title"], "description": v["description"],
                        "source_branch": branch, "target_branch": v["target_branch"]})
                } else {
                    json!({"number": n, "id": 500 + n, "state": "open", "title": v["title"], "body": v["body"],
                        "head": {"ref": branch}, "base": {"ref": v["base"]}})
                };
                d.pulls.insert(n, pr.clone());
                if lost {
                    return Some((502, "<html>bad gateway</html>".into()));
                }
                Some((201, pr.to_string()))
            }
            "PATCH" | "PUT" if path.rsplit_once('/').is_some_and(|(l, _)| l.ends_with(list)) => {
                if method != if gitlab { "PUT" } else { "PATCH" } {
                    return Some((405, r#"{"message":"Method Not Allowed"}"#.into()));
                }
                let n: u64 = path.rsplit('/').next()?.parse().ok()?;
                let Some(pr) = d.pulls.get_mut(&n) else { return Some((404, r#"{"message":"Not Found"}"#.into())) };
                for key in ["title", text_key] {
                    if !v[key].is_null() {
                        pr[key] = v[key].clone();
                    }
                }
                Some((200, pr.to_string()))
            }
            _ => None,
        }
    }

    fn shape(&self, context: &str, state: &str, description: &str, url: &str) -> Value {
        match self.kind {
            "gitea" => json!({"status": state, "context": context, "description": description, "target_url": url}),
            "gitlab" => json!({"status": state, "name": context, "description": description, "target_url": url,
                "allow_failure": false}),
            _ => json!({"state": state, "context": context, "description": description, "target_url": url}),
        }
    }

    fn answer(&self, method: &str, target: &str, body: &[u8]) -> (u16, Vec<(String, String)>, String) {
        let mut d = self.data.lock().unwrap();
        d.hits.push(format!("{method} {target}"));
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let q: BTreeMap<&str, &str> = query.split('&').filter_map(|kv| kv.split_once('=')).collect();
        if let Some((status, text)) = self.pull_route(&mut d, method, path, body) {
            return (status, Vec::new(), text);
        }
        if let Some((status, text)) = self.comment_route(&mut d, method, path, body) {
            return (status, Vec::new(), text);
        }
        if method == "POST" {
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            d.posts.push((path.to_string(), v.clone()));
            let sha = path.rsplit('/').next().unwrap_or("").to_string();
            let state = v["state"].as_str().unwrap_or("").to_string();
            let context = v[if self.kind == "gitlab" { "name" } else { "context" }].as_str().unwrap_or("").to_string();
            let s = self.shape(
                &context,
                &state,
                v["description"].as_str().unwrap_or(""),
                v["target_url"].as_str().unwrap_or(""),
            );
            d.statuses.entry(sha).or_default().push(s);
            return (201, Vec::new(), "{}".into());
        }
        // A lost create waits for its POST.
        let fault = if matches!(d.faults.front(), Some(Fault::LostCreate)) { None } else { d.faults.pop_front() };
        match fault {
            Some(Fault::Status(s)) => return (s, Vec::new(), "<html>bad gateway</html>".into()),
            Some(Fault::EmptyBody) => return (200, Vec::new(), String::new()),
            Some(Fault::RateLimited(s)) => {
                return (429, vec![("Retry-After".into(), s.to_string())], r#"{"message":"slow down"}"#.into());
            }
            Some(Fault::LostCreate) | None => {}
        }
        let seg: Vec<&str> = path.split('/').collect();
        let sha = |i: usize| seg.get(i).copied().unwrap_or("").to_string();
        let (default, max, size_key) = match self.kind {
            "gitea" => (30, 50, "limit"),
            "gitlab" => (20, 100, "per_page"),
            _ => (30, 100, "per_page"),
        };
        let size = q.get(size_key).and_then(|v| v.parse::<usize>().ok()).unwrap_or(default).clamp(1, max);
        let page = q.get("page").and_then(|v| v.parse::<usize>().ok()).unwrap_or(1).max(1);
        // The latest status of each context, newest first (combined status; GitLab's `all=false`).
        let latest = |all: &[Value]| {
            let key = if self.kind == "gitlab" { "name" } else { "context" };
            let mut seen = Vec::new();
            let mut out = Vec::new();
            for s in all.iter().rev() {
                let c = s[key].as_str().unwrap_or("").to_string();
                if !seen.contains(&c) {
                    seen.push(c);
                    out.push(s.clone());
                }
            }
            out
        };
        let word = |s: &Value| s["status"].as_str().or(s["state"].as_str()).unwrap_or("").to_string();
        let combined_state = |l: &[Value]| {
            let words: Vec<String> = l.iter().map(word).collect();
            if words.iter().any(|w| w == "failure" || w == "error") {
                "failure"
            } else if words.iter().any(|w| w == "pending") {
                "pending"
            } else if words.is_empty() {
                // Gitea answers an empty state when nothing reported; GitHub says pending.
                if self.kind == "gitea" { "" } else { "pending" }
            } else {
                "success"
            }
        };
        let paged = |items: &[Value]| -> (Vec<Value>, Vec<(String, String)>) {
            let pages = items.len().div_ceil(size).max(1);
            let chunk = items.iter().skip((page - 1) * size).take(size).cloned().collect();
            let mut headers = vec![("X-Total-Count".to_string(), items.len().to_string())];
            if page < pages {
                let mut others: Vec<String> = q
                    .iter()
                    .filter(|(k, _)| **k != "page" && **k != size_key)
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                others.push(format!("{size_key}={size}"));
                let link = |p: usize| format!("<{}{path}?{}&page={p}>", self.base, others.join("&"));
                headers
                    .push(("Link".into(), format!("{}; rel=\"next\", {}; rel=\"last\"", link(page + 1), link(pages))));
            }
            (chunk, headers)
        };
        match (self.kind, seg.as_slice()) {
            // GET /repos/{o}/{n}/commits/{ref}/status and /check-runs
            ("github", ["", "repos", _, _, "commits", _, "status"]) => {
                let l = latest(d.statuses.get(&sha(5)).map(Vec::as_slice).unwrap_or(&[]));
                let (chunk, h) = paged(&l);
                let v = json!({"state": combined_state(&l), "sha": sha(5), "total_count": l.len(), "statuses": chunk});
                (200, h, v.to_string())
            }
            ("github", ["", "repos", _, _, "commits", _, "check-runs"]) => {
                let runs = d.check_runs.get(&sha(5)).cloned().unwrap_or_default();
                let (chunk, h) = paged(&runs);
                (200, h, json!({"total_count": runs.len(), "check_runs": chunk}).to_string())
            }
            // GET /api/v1/repos/{o}/{n}/commits/{ref}/status
            ("gitea", ["", "api", "v1", "repos", _, _, "commits", _, "status"]) => {
                let l = latest(d.statuses.get(&sha(7)).map(Vec::as_slice).unwrap_or(&[]));
                let (chunk, h) = paged(&l);
                let v = json!({"state": combined_state(&l), "sha": sha(7), "total_count": l.len(), "statuses": chunk});
                (200, h, v.to_string())
            }
            // GET /api/v4/projects/{id}/repository/commits/{sha}/statuses
            ("gitlab", ["", "api", "v4", "projects", _, "repository", "commits", _, "statuses"]) => {
                let l = latest(d.statuses.get(&sha(7)).map(Vec::as_slice).unwrap_or(&[]));
                let (chunk, h) = paged(&l);
                (200, h, Value::Array(chunk).to_string())
            }
            // Open pull/merge requests (GitHub filters by `head`, GitLab by `source_branch`).
            (_, [.., "pulls" | "merge_requests"]) => {
                let gitlab = self.kind == "gitlab";
                let list: Vec<Value> = d
                    .pulls
                    .values()
                    .filter(|p| p["state"] == if gitlab { "opened" } else { "open" })
                    .filter(|p| match (self.kind, q.get("head"), q.get("source_branch")) {
                        ("github", Some(h), _) => h.split_once(':').is_some_and(|(_, b)| p["head"]["ref"] == b),
                        ("gitlab", _, Some(b)) => p["source_branch"] == *b,
                        _ => true,
                    })
                    .cloned()
                    .collect();
                let (chunk, h) = paged(&list);
                (200, h, Value::Array(chunk).to_string())
            }
            // The comments of a pull/merge request, oldest first.
            (_, [.., "comments" | "notes"]) => {
                let list: Vec<Value> = d
                    .comments
                    .iter()
                    .filter(|(_, (p, _))| p == path)
                    .map(|(id, (_, b))| self.comment_json(*id, b))
                    .collect();
                let (chunk, h) = paged(&list);
                (200, h, Value::Array(chunk).to_string())
            }
            _ => (404, Vec::new(), r#"{"message":"Not Found"}"#.into()),
        }
    }
}

/// A repository whose one stack (running `colored("red")`) waits for CI as `ci` (a TOML inline
/// table) says, with `extra` TOML before its defaults; its `origin` names the forge repository
/// `me/stacks`.
pub fn gated_repo(ci: &str, stack: &str, extra: &str) -> Repo {
    let repo = Repo::new();
    repo.git(&["remote", "add", "origin", "https://git.example.com/me/stacks.git"]);
    repo.write(
        "berth.toml",
        &format!(
            "{extra}[defaults]\nverify = {{ stable = \"1s\" }}\n[[stack]]\nname = \"{stack}\"\nrequire_ci = {ci}\n"
        ),
    );
    repo.stack(stack, &colored("red"));
    repo.commit("gated");
    repo
}
