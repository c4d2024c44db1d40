//! `berth watch`: follow deploys until they settle, from the local state or a server.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use berth_core::api::{DeployDetail, DeployList, ErrorBody, StackList};
use berth_core::record::{DeployRecord, DeployStatus};

use crate::error::{Error, Result, exit};
use crate::output::short;
use crate::workspace::Workspace;

/// What to follow.
pub struct Target {
    pub id: Option<i64>,
    pub commit: Option<String>,
    pub stack: Option<String>,
}

const POLL: Duration = Duration::from_millis(500);

/// Where deploy records come from.
trait Source {
    fn list(&self) -> Result<Vec<DeployRecord>>;
    fn get(&self, id: i64) -> Result<DeployRecord>;
}

struct Local<'a>(&'a Workspace);

impl Source for Local<'_> {
    fn list(&self) -> Result<Vec<DeployRecord>> {
        Ok(self.0.read_state()?.list(None, 200)?)
    }
    fn get(&self, id: i64) -> Result<DeployRecord> {
        Ok(self.0.read_state()?.get(id)?)
    }
}

struct Remote {
    base: String,
    key: String,
    secret: String,
    http: reqwest::Client,
}

impl Remote {
    /// GET `path` and read the answer as `T` (an error answer as the API's error body).
    fn fetch<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let request = self
            .http
            .get(format!("{}{path}", self.base))
            .header("X-Api-Key", &self.key)
            .header("X-Api-Secret", &self.secret);
        // Sent inside the runtime: the request's timeout is a timer of the runtime.
        let r = crate::bridge::block_on(async { request.send().await })
            .map_err(|e| Error::Io(format!("cannot reach {}: {e}", self.base)))?;
        let status = r.status();
        let text = crate::bridge::block_on(async { r.text().await }).unwrap_or_default();
        if !status.is_success() {
            let msg = serde_json::from_str::<ErrorBody>(&text).map(|e| e.error).unwrap_or_default();
            return Err(Error::Io(format!("{} answered {status}: {msg}", self.base)));
        }
        serde_json::from_str(&text).map_err(|e| Error::Io(format!("unexpected answer from {}{path}: {e}", self.base)))
    }
}

impl Source for Remote {
    fn list(&self) -> Result<Vec<DeployRecord>> {
        Ok(self.fetch::<DeployList>("/api/v1/deploys?limit=200")?.deploys)
    }
    fn get(&self, id: i64) -> Result<DeployRecord> {
        Ok(self.fetch::<DeployDetail>(&format!("/api/v1/deploys/{id}"))?.record)
    }
}

pub fn local(ws: &Workspace, target: &Target, timeout: Duration) -> Result<i32> {
    let src = Local(ws);
    let commit = match &target.commit {
        Some(c) => Some(local_commit(ws, &src, c)?),
        None => None,
    };
    if let Some(stack) = &target.stack {
        let known = src.list()?.iter().any(|d| &d.stack == stack);
        if !known && let Some(unknown) = local_projects(ws).into_iter().find_map(|p| unknown_stack(&p, stack)) {
            return Err(unknown);
        }
    }
    follow(&src, target, commit, timeout)
}

/// The commit `--commit` names: resolved in the checkout or in one of `berth serve`'s mirrors, or
/// the prefix of a recorded deploy's commit. Anything else can never deploy from here: say so now.
fn local_commit(ws: &Workspace, src: &Local<'_>, rev: &str) -> Result<String> {
    let mut repos = vec![ws.repo.clone()];
    repos.extend(mirrors(ws));
    if let Some(id) = repos.iter().find_map(|r| r.resolve(rev).ok()) {
        return Ok(id);
    }
    if is_hex(rev) && src.list()?.iter().any(|d| d.commit.starts_with(rev)) {
        return Ok(rev.to_string());
    }
    Err(crate::git::GitError::UnknownRev { rev: rev.to_string(), repo: ws.repo.root.clone() }.into())
}

/// The bare mirrors `berth serve` keeps under the state dir.
fn mirrors(ws: &Workspace) -> Vec<crate::git::Repo> {
    let Ok(dir) = std::fs::read_dir(ws.state_dir.join("mirrors")) else { return Vec::new() };
    dir.flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "git") && p.join("HEAD").exists())
        .map(|root| crate::git::Repo { root, mirror: true })
        .collect()
}

/// The projects stacks can come from: the checkout's HEAD and each mirror's.
fn local_projects(ws: &Workspace) -> Vec<berth_core::Project> {
    let mut out: Vec<berth_core::Project> = ws.snapshot("HEAD").map(|s| s.project.clone()).into_iter().collect();
    for m in mirrors(ws) {
        let mirror = Workspace::new(m, ws.state_dir.clone());
        out.extend(mirror.snapshot("HEAD").map(|s| s.project.clone()));
    }
    out
}

/// `Some(error)` when `project` lacks `stack` (`None`: it is there).
fn unknown_stack(project: &berth_core::Project, stack: &str) -> Option<Error> {
    project.stack(stack).is_none().then(|| Error::Unknown(project.unknown_stack(stack)))
}

fn is_hex(s: &str) -> bool {
    (4..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

pub fn remote(url: &str, key: Option<&str>, secret: Option<&str>, target: &Target, timeout: Duration) -> Result<i32> {
    let (Some(key), Some(secret)) = (key, secret) else {
        return Err(Error::Usage(
            "--server needs BERTH_API_KEY and BERTH_API_SECRET (or --api-key/--api-secret)".into(),
        ));
    };
    // A server can only know a commit by its id: a branch or tag name would never match a deploy.
    if let Some(c) = &target.commit
        && !is_hex(c)
    {
        return Err(Error::Usage(format!(
            "--commit {c}: give a commit id (4 to 64 hex digits) with --server; the server knows deploys by commit id"
        )));
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| Error::Io(format!("cannot build an HTTP client: {e}")))?;
    let src = Remote { base: url.trim_end_matches('/').to_string(), key: key.into(), secret: secret.into(), http };
    if let Some(stack) = &target.stack {
        let stacks: StackList = src.fetch("/api/v1/stacks")?;
        let names: Vec<&str> = stacks.stacks.iter().map(|s| s.name.as_str()).collect();
        if !names.contains(&stack.as_str()) && !src.list()?.iter().any(|d| &d.stack == stack) {
            let mut e = berth_core::ConfigError::new(format!("{} has no stack named `{stack}`", src.base));
            let list = match names.len() {
                0..=12 => format!("stacks there: {}", names.join(", ")),
                n => format!("{n} stacks there, `GET /api/v1/stacks` lists them"),
            };
            e = match berth_core::error::did_you_mean(stack, names.iter().copied()) {
                Some(best) => e.help(format!("did you mean `{best}`? {list}")),
                None => e.help(list),
            };
            return Err(Error::Unknown(e));
        }
    }
    follow(&src, target, target.commit.clone(), timeout)
}

fn follow(src: &dyn Source, target: &Target, commit: Option<String>, timeout: Duration) -> Result<i32> {
    let deadline = Instant::now() + timeout;
    let tty = std::io::stdout().is_terminal();
    // Which deploys: resolved once they exist (a commit's deploys may not be queued yet).
    let ids: Vec<i64> = loop {
        let found: Vec<i64> = match (target.id, &commit, &target.stack) {
            (Some(id), _, _) => vec![src.get(id)?.id],
            (None, Some(c), _) => {
                src.list()?.iter().filter(|d| d.commit.starts_with(c.as_str())).map(|d| d.id).collect()
            }
            (None, None, Some(s)) => src.list()?.iter().filter(|d| &d.stack == s).map(|d| d.id).take(1).collect(),
            (None, None, None) => return Err(Error::Usage("give a deploy id, --commit SHA or --stack NAME".into())),
        };
        if !found.is_empty() {
            break found;
        }
        if Instant::now() >= deadline {
            eprintln!("no deploy appeared within {}s", timeout.as_secs());
            return Ok(exit::FAILED);
        }
        std::thread::sleep(POLL);
    };
    let mut seen: BTreeMap<i64, (DeployStatus, String)> = BTreeMap::new();
    let spinner = ['|', '/', '-', '\\'];
    let mut tick = 0usize;
    loop {
        let records: Vec<DeployRecord> = ids.iter().map(|id| src.get(*id)).collect::<Result<_>>()?;
        for r in &records {
            let phase = if r.status == DeployStatus::Running { r.phase.clone() } else { String::new() };
            let now = (r.status, phase.clone());
            if seen.get(&r.id) != Some(&now) {
                let what = if phase.is_empty() { r.status.to_string() } else { phase };
                if tty {
                    print!("\r\x1b[2K");
                }
                println!("{} {:<20} deploy {:<5} {} {}", mark(r.status), r.stack, r.id, short(&r.commit), what);
                if r.status.is_final()
                    && let Some(why) = &r.reason
                {
                    println!("  {why}");
                }
                seen.insert(r.id, now);
            }
        }
        if records.iter().all(|r| r.status.is_final()) {
            let failed =
                records.iter().any(|r| !matches!(r.status, DeployStatus::Succeeded | DeployStatus::RolledBack));
            let code = if failed {
                exit::FAILED
            } else if records.iter().any(|r| r.status == DeployStatus::RolledBack) {
                exit::ROLLED_BACK
            } else {
                exit::OK
            };
            return Ok(code);
        }
        if Instant::now() >= deadline {
            eprintln!("still running after {}s", timeout.as_secs());
            return Ok(exit::FAILED);
        }
        if tty {
            tick += 1;
            print!("\r{} waiting", spinner[tick % spinner.len()]);
            let _ = std::io::stdout().flush();
        }
        std::thread::sleep(POLL);
    }
}

fn mark(s: DeployStatus) -> char {
    match s {
        DeployStatus::Succeeded => '✓',
        DeployStatus::RolledBack => '↩',
        s if s.is_final() => '✗',
        _ => '→',
    }
}
