//! The state store: deploy records in an embedded SQLite database (WAL) under the state dir.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use berth_core::record::{DeployRecord, DeployStatus, History, StoredDeploy, decode_list, decode_map, encode_map};
use rusqlite::{Connection, OptionalExtension, params};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state database {}: {source}{}", path.display(), storage_hint(path, source))]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("cannot create state dir {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("no deploy with id {0}")]
    NoSuchDeploy(i64),
}

/// What to do when the database cannot be written (berth records a deploy before it acts, so it
/// stops instead) or is damaged (berth keeps no copy of it: say what moving it aside costs).
fn storage_hint(path: &Path, e: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(C::CannotOpen | C::ReadOnly | C::DiskFull | C::SystemIoFailure | C::PermissionDenied) => {
            " (nothing was deployed: berth records every deploy before it touches an engine; make the state \
             directory writable and give its filesystem free space, then run again)"
                .into()
        }
        Some(C::NotADatabase | C::DatabaseCorrupt) => {
            let (p, dir) = (path.display(), path.parent().unwrap_or(Path::new(".")).join("damaged"));
            format!(
                " (the file is damaged and berth keeps no backup of it. To recover, move it and its -wal and -shm \
                 files aside: `mkdir {d} && mv {p}* {d}/`. berth then starts with an empty state: the deploy \
                 history (rollback targets, failed configs), API keys, pauses and release records are lost; \
                 running containers are untouched and the next `berth apply` redeploys every stack. \
                 `sqlite3 {d}/berth.db .recover` may save part of the history)",
                d = dir.display()
            )
        }
        _ => String::new(),
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS deploys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    stack       TEXT NOT NULL,
    server      TEXT NOT NULL,
    commit_sha  TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    vars        TEXT NOT NULL,
    overrides   TEXT NOT NULL,
    status      TEXT NOT NULL,
    reason      TEXT,
    trigger     TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    log         TEXT NOT NULL DEFAULT '',
    phase       TEXT NOT NULL DEFAULT '',
    verify      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS deploys_by_stack ON deploys (stack, id);
CREATE TABLE IF NOT EXISTS api_keys (
    key         TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    scope       TEXT NOT NULL,
    stacks      TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS releases (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    tag        TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    env        TEXT NOT NULL,
    kind       TEXT NOT NULL,
    from_tag   TEXT,
    by         TEXT NOT NULL,
    at         INTEGER NOT NULL,
    pushed     INTEGER NOT NULL,
    note       TEXT
);
CREATE TABLE IF NOT EXISTS paused (
    stack  TEXT PRIMARY KEY,
    by     TEXT NOT NULL,
    at     INTEGER NOT NULL,
    reason TEXT
);
CREATE TABLE IF NOT EXISTS config_rejections (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    repo       TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    errors     TEXT NOT NULL,
    at         INTEGER NOT NULL
);
";

/// A version tag berth made or deployed for an environment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Release {
    pub tag: String,
    pub commit: String,
    pub env: String,
    /// `patch` (a push deployed to an auto environment), `promotion`, or `deploy` (an existing tag, e.g. a hotfix).
    pub kind: String,
    pub from_tag: Option<String>,
    pub by: String,
    pub at: i64,
    /// Whether the tag reached the remote.
    pub pushed: bool,
    pub note: Option<String>,
}

/// A paused stack: (stack, by, unix time, reason).
pub type Paused = (String, String, i64, Option<String>);

/// A configuration the controller refused: (repo, commit, errors, unix time).
pub type Rejection = (String, String, Vec<String>, i64);

/// A stored API key (the secret itself is never stored, only its SHA-256).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiKey {
    pub key: String,
    pub name: String,
    pub scope: String,
    /// Glob of stack names the key may deploy (`*` for all).
    pub stacks: String,
    #[serde(skip)]
    pub secret_hash: String,
    pub created_at: i64,
}

/// A new deploy about to start.
pub struct NewDeploy<'a> {
    pub stack: &'a str,
    pub server: &'a str,
    pub commit: &'a str,
    pub config_hash: &'a str,
    /// Already redacted.
    pub vars: &'a BTreeMap<String, String>,
    /// Already redacted.
    pub overrides: &'a BTreeMap<String, String>,
    pub trigger: &'a str,
}

pub struct State {
    conn: Connection,
    path: PathBuf,
}

/// Something that can lend the state store for a moment: the store itself, or
/// the controller's shared, locked one (held only for the call).
pub trait WithState {
    fn with_state<T>(&self, f: impl FnOnce(&State) -> T) -> T;
}

impl WithState for State {
    fn with_state<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(self)
    }
}

/// The CLI's store, shared by the executors of one run.
impl WithState for std::sync::Mutex<State> {
    fn with_state<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        let guard = self.lock().unwrap_or_else(|p| p.into_inner());
        f(&guard)
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The tables, and the columns added after the first release of the schema.
fn create_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)?;
    for col in ["phase", "verify", "phases"] {
        let _ = conn.execute(&format!("ALTER TABLE deploys ADD COLUMN {col} TEXT NOT NULL DEFAULT ''"), []);
    }
    Ok(())
}

impl State {
    /// For read-only commands: the database in `dir` if there is one, else an empty one in memory,
    /// so that looking at a repository never creates a state dir in it.
    pub fn open_existing(dir: &Path) -> Result<State, StateError> {
        let path = dir.join("berth.db");
        if path.exists() {
            return State::open(dir);
        }
        let err = |source| StateError::Sqlite { path: path.clone(), source };
        let conn = Connection::open_in_memory().map_err(err)?;
        create_schema(&conn).map_err(err)?;
        Ok(State { conn, path })
    }

    /// Open (creating if needed) the database in `dir`.
    pub fn open(dir: &Path) -> Result<State, StateError> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::Dir { path: dir.to_path_buf(), source })?;
        // Keep berth's state out of `git status` when it lives inside the stacks repo.
        let ignore = dir.join(".gitignore");
        if !ignore.exists() {
            let _ = std::fs::write(&ignore, "*\n");
        }
        let path = dir.join("berth.db");
        let err = |source| StateError::Sqlite { path: path.clone(), source };
        let conn = Connection::open(&path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(err)?;
        create_schema(&conn).map_err(err)?;
        Ok(State { conn, path })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StateError + '_ {
        |source| StateError::Sqlite { path: self.path.clone(), source }
    }

    /// Record a deploy as running; returns its id.
    pub fn begin(&self, d: &NewDeploy<'_>) -> Result<i64, StateError> {
        self.conn
            .execute(
                "INSERT INTO deploys (stack, server, commit_sha, config_hash, vars, overrides, status, trigger, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', ?7, ?8)",
                params![
                    d.stack,
                    d.server,
                    d.commit,
                    d.config_hash,
                    encode_map(d.vars),
                    encode_map(d.overrides),
                    d.trigger,
                    now()
                ],
            )
            .map_err(self.err())?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Record a deploy accepted by the controller, waiting for its turn.
    pub fn enqueue(&self, d: &NewDeploy<'_>) -> Result<i64, StateError> {
        let id = self.begin(d)?;
        self.conn.execute("UPDATE deploys SET status = 'queued' WHERE id = ?1", [id]).map_err(self.err())?;
        Ok(id)
    }

    /// Point a queued deploy at a newer commit (a burst of pushes coalesces into it).
    pub fn retarget(&self, id: i64, commit: &str, trigger: &str) -> Result<(), StateError> {
        self.conn
            .execute(
                "UPDATE deploys SET commit_sha = ?2, trigger = ?3 WHERE id = ?1 AND status = 'queued'",
                params![id, commit, trigger],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// A queued deploy starts: its config hash and overrides are now known.
    pub fn start(&self, id: i64, config_hash: &str, overrides: &BTreeMap<String, String>) -> Result<(), StateError> {
        self.conn
            .execute(
                "UPDATE deploys SET status = 'running', config_hash = ?2, overrides = ?3, vars = ?3, started_at = ?4
                 WHERE id = ?1",
                params![id, config_hash, encode_map(overrides), now()],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// The newest deploys, optionally of one stack.
    /// The newest deploys of a commit (`prefix` of its id, lower-case hex), optionally of one stack.
    pub fn list_for_commit(
        &self,
        stack: Option<&str>,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<DeployRecord>, StateError> {
        let pattern = format!("{prefix}%");
        let mut st = self
            .conn
            .prepare(&format!(
                "{SELECT} WHERE commit_sha LIKE ?1 AND (?2 IS NULL OR stack = ?2) ORDER BY id DESC LIMIT ?3"
            ))
            .map_err(self.err())?;
        let rows = st.query_map(params![pattern, stack, limit as i64], row).map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// How many deploys are queued and how many running.
    pub fn active(&self) -> Result<(usize, usize), StateError> {
        let count = |status: &str| {
            self.conn
                .query_row("SELECT COUNT(*) FROM deploys WHERE status = ?1", params![status], |r| r.get::<_, i64>(0))
                .map(|n| n.max(0) as usize)
        };
        Ok((count("queued").map_err(self.err())?, count("running").map_err(self.err())?))
    }

    pub fn list(&self, stack: Option<&str>, limit: usize) -> Result<Vec<DeployRecord>, StateError> {
        match stack {
            Some(s) => self.history(s, limit),
            None => {
                let mut st = self.conn.prepare(&format!("{SELECT} ORDER BY id DESC LIMIT ?1")).map_err(self.err())?;
                st.query_map([limit as i64], row).map_err(self.err())?.collect::<Result<_, _>>().map_err(self.err())
            }
        }
    }

    /// Settle what a stopping or dead controller left: `running` deploys that `orphaned` says
    /// nobody will finish (another process may be deploying one right now) become
    /// interrupted, queued ones cancelled. Returns the interrupted ones.
    pub fn settle_abandoned(
        &self,
        reason_running: &str,
        reason_queued: &str,
        orphaned: impl Fn(&DeployRecord) -> bool,
    ) -> Result<Vec<DeployRecord>, StateError> {
        let running: Vec<DeployRecord> = {
            let mut st =
                self.conn.prepare(&format!("{SELECT} WHERE status = 'running' ORDER BY id")).map_err(self.err())?;
            st.query_map([], row).map_err(self.err())?.collect::<Result<_, _>>().map_err(self.err())?
        };
        let running: Vec<DeployRecord> = running.into_iter().filter(|r| orphaned(r)).collect();
        for r in &running {
            self.finish(r.id, DeployStatus::Interrupted, Some(reason_running), &self.log(r.id)?, &BTreeMap::new())?;
        }
        self.conn
            .execute(
                "UPDATE deploys SET status = 'cancelled', reason = ?1, finished_at = ?2 WHERE status = 'queued'",
                params![reason_queued, now()],
            )
            .map_err(self.err())?;
        Ok(running)
    }

    pub fn add_key(&self, k: &ApiKey) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT INTO api_keys (key, name, scope, stacks, secret_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![k.key, k.name, k.scope, k.stacks, k.secret_hash, k.created_at],
            )
            .map_err(self.err())?;
        Ok(())
    }

    pub fn key(&self, key: &str) -> Result<Option<ApiKey>, StateError> {
        self.conn
            .query_row(
                "SELECT key, name, scope, stacks, secret_hash, created_at FROM api_keys WHERE key = ?1",
                [key],
                key_row,
            )
            .optional()
            .map_err(self.err())
    }

    pub fn keys(&self) -> Result<Vec<ApiKey>, StateError> {
        let mut st = self
            .conn
            .prepare("SELECT key, name, scope, stacks, secret_hash, created_at FROM api_keys ORDER BY name")
            .map_err(self.err())?;
        st.query_map([], key_row).map_err(self.err())?.collect::<Result<_, _>>().map_err(self.err())
    }

    pub fn delete_key(&self, name: &str) -> Result<bool, StateError> {
        Ok(self.conn.execute("DELETE FROM api_keys WHERE name = ?1", [name]).map_err(self.err())? > 0)
    }

    /// Record a configuration the controller refused to run.
    pub fn reject_config(&self, repo: &str, commit: &str, errors: &[String]) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT INTO config_rejections (repo, commit_sha, errors, at) VALUES (?1, ?2, ?3, ?4)",
                params![repo, commit, serde_json::to_string(errors).unwrap_or_default(), now()],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// The newest rejections: (repo, commit, errors, at).
    pub fn rejections(&self, limit: usize) -> Result<Vec<Rejection>, StateError> {
        let mut st = self
            .conn
            .prepare("SELECT repo, commit_sha, errors, at FROM config_rejections ORDER BY id DESC LIMIT ?1")
            .map_err(self.err())?;
        st.query_map([limit as i64], |r| Ok((r.get(0)?, r.get(1)?, decode_list(&r.get::<_, String>(2)?), r.get(3)?)))
            .map_err(self.err())?
            .collect::<Result<_, _>>()
            .map_err(self.err())
    }

    /// The phase a running deploy is in (checkout, up, converging, smoke, rollback, ...); each
    /// entered phase is also kept with its start time for the timings.
    pub fn set_phase(&self, id: i64, phase: &str) -> Result<(), StateError> {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        self.conn
            .execute(
                "UPDATE deploys SET phase = ?2, phases = phases || ?3 WHERE id = ?1",
                params![id, phase, format!("{phase}\t{ms}\n")],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// The phases a deploy entered, in order, with their start (unix milliseconds).
    pub fn phases(&self, id: i64) -> Result<Vec<(String, i64)>, StateError> {
        let text: String = self
            .conn
            .query_row("SELECT phases FROM deploys WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(self.err())?
            .ok_or(StateError::NoSuchDeploy(id))?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .filter_map(|(p, ms)| Some((p.to_string(), ms.parse().ok()?)))
            .collect())
    }

    /// Verification results (JSON) of a deploy.
    pub fn verify_results(&self, id: i64) -> Result<String, StateError> {
        self.conn
            .query_row("SELECT verify FROM deploys WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(self.err())?
            .ok_or(StateError::NoSuchDeploy(id))
    }

    pub fn set_verify(&self, id: i64, results: &str) -> Result<(), StateError> {
        self.conn.execute("UPDATE deploys SET verify = ?2 WHERE id = ?1", params![id, results]).map_err(self.err())?;
        Ok(())
    }

    /// The last deploy of `stack` that succeeded, other than `except`.
    pub fn last_success(&self, stack: &str, except: Option<i64>) -> Result<Option<DeployRecord>, StateError> {
        self.conn
            .query_row(
                &format!("{SELECT} WHERE stack = ?1 AND status = 'succeeded' AND id != ?2 ORDER BY id DESC LIMIT 1"),
                params![stack, except.unwrap_or(-1)],
                row,
            )
            .optional()
            .map_err(self.err())
    }

    /// The last successful deploy of `stack` older than deploy `before` (what a rollback went back to).
    pub fn success_before(&self, stack: &str, before: i64) -> Result<Option<DeployRecord>, StateError> {
        self.conn
            .query_row(
                &format!("{SELECT} WHERE stack = ?1 AND status = 'succeeded' AND id < ?2 ORDER BY id DESC LIMIT 1"),
                params![stack, before],
                row,
            )
            .optional()
            .map_err(self.err())
    }

    pub fn add_release(&self, r: &Release) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT INTO releases (tag, commit_sha, env, kind, from_tag, by, at, pushed, note)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![r.tag, r.commit, r.env, r.kind, r.from_tag, r.by, r.at, r.pushed, r.note],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Releases of an environment (or all), newest first.
    pub fn releases(&self, env: Option<&str>) -> Result<Vec<Release>, StateError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT tag, commit_sha, env, kind, from_tag, by, at, pushed, note FROM releases
                 WHERE ?1 IS NULL OR env = ?1 ORDER BY id DESC",
            )
            .map_err(self.err())?;
        st.query_map([env], |r| {
            Ok(Release {
                tag: r.get(0)?,
                commit: r.get(1)?,
                env: r.get(2)?,
                kind: r.get(3)?,
                from_tag: r.get(4)?,
                by: r.get(5)?,
                at: r.get(6)?,
                pushed: r.get(7)?,
                note: r.get(8)?,
            })
        })
        .map_err(self.err())?
        .collect::<Result<_, _>>()
        .map_err(self.err())
    }

    /// Pause a stack (true) or resume it (false); returns whether anything changed.
    pub fn set_paused(&self, stack: &str, paused: bool, by: &str, reason: Option<&str>) -> Result<bool, StateError> {
        let n = if paused {
            self.conn.execute(
                "INSERT OR IGNORE INTO paused (stack, by, at, reason) VALUES (?1, ?2, ?3, ?4)",
                params![stack, by, now(), reason],
            )
        } else {
            self.conn.execute("DELETE FROM paused WHERE stack = ?1", [stack])
        }
        .map_err(self.err())?;
        Ok(n > 0)
    }

    /// Paused stacks: (stack, by, at, reason).
    pub fn paused(&self) -> Result<Vec<Paused>, StateError> {
        let mut st =
            self.conn.prepare("SELECT stack, by, at, reason FROM paused ORDER BY stack").map_err(self.err())?;
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .map_err(self.err())?
            .collect::<Result<_, _>>()
            .map_err(self.err())
    }

    /// How many deploys with `trigger` a stack had since `since` (unix seconds).
    pub fn count_since(&self, stack: &str, trigger: &str, since: i64) -> Result<usize, StateError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM deploys WHERE stack = ?1 AND trigger = ?2 AND started_at >= ?3",
                params![stack, trigger, since],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as usize)
            .map_err(self.err())
    }

    /// Is the database usable (for health checks)?
    pub fn ping(&self) -> Result<(), StateError> {
        self.conn.query_row("SELECT 1", [], |_| Ok(())).map_err(self.err())
    }

    /// Record a deploy that never started (blocked by a dependency).
    pub fn record_blocked(&self, d: &NewDeploy<'_>, reason: &str) -> Result<i64, StateError> {
        let id = self.begin(d)?;
        self.finish(id, DeployStatus::Blocked, Some(reason), "", &BTreeMap::new())?;
        Ok(id)
    }

    /// Settle a deploy. `vars` replaces the recorded variables when not empty (they are
    /// only fully known once env files were read).
    pub fn finish(
        &self,
        id: i64,
        status: DeployStatus,
        reason: Option<&str>,
        log: &str,
        vars: &BTreeMap<String, String>,
    ) -> Result<(), StateError> {
        let n = self
            .conn
            .execute(
                "UPDATE deploys SET status = ?2, reason = ?3, log = ?4, finished_at = ?5,
                        vars = CASE WHEN ?6 = '{}' THEN vars ELSE ?6 END
                 WHERE id = ?1",
                params![id, status.as_str(), reason, log, now(), encode_map(vars)],
            )
            .map_err(self.err())?;
        if n == 0 {
            return Err(StateError::NoSuchDeploy(id));
        }
        Ok(())
    }

    pub fn get(&self, id: i64) -> Result<DeployRecord, StateError> {
        self.conn
            .query_row(&format!("{SELECT} WHERE id = ?1"), [id], row)
            .optional()
            .map_err(self.err())?
            .ok_or(StateError::NoSuchDeploy(id))
    }

    pub fn log(&self, id: i64) -> Result<String, StateError> {
        self.conn
            .query_row("SELECT log FROM deploys WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(self.err())?
            .ok_or(StateError::NoSuchDeploy(id))
    }

    /// Deploys of `stack`, newest first.
    pub fn history(&self, stack: &str, limit: usize) -> Result<Vec<DeployRecord>, StateError> {
        let mut st =
            self.conn.prepare(&format!("{SELECT} WHERE stack = ?1 ORDER BY id DESC LIMIT ?2")).map_err(self.err())?;
        st.query_map(params![stack, limit as i64], row)
            .map_err(self.err())?
            .collect::<Result<_, _>>()
            .map_err(self.err())
    }

    /// The newest deploy of every stack.
    pub fn latest(&self) -> Result<Vec<DeployRecord>, StateError> {
        let mut st = self
            .conn
            .prepare(&format!("{SELECT} WHERE id IN (SELECT MAX(id) FROM deploys GROUP BY stack) ORDER BY stack"))
            .map_err(self.err())?;
        st.query_map([], row).map_err(self.err())?.collect::<Result<_, _>>().map_err(self.err())
    }

    /// What the planner needs: per stack, the last success and the latest outcome.
    pub fn summaries(&self) -> Result<HashMap<String, History>, StateError> {
        let mut out: HashMap<String, History> = HashMap::new();
        for r in self.latest()? {
            let h = out.entry(r.stack.clone()).or_default();
            h.latest = Some(r.status);
            h.server = Some(r.server);
        }
        // Per stack and config hash, the last deploy that finished; keep the failed ones.
        let mut st = self
            .conn
            .prepare(
                "SELECT stack, config_hash, id, status FROM deploys WHERE id IN
                   (SELECT MAX(id) FROM deploys
                     WHERE status IN ('succeeded', 'failed', 'rolled_back') AND config_hash != ''
                     GROUP BY stack, config_hash)
                 AND status != 'succeeded'",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))
            .map_err(self.err())?;
        for r in rows {
            let (stack, hash, id) = r.map_err(self.err())?;
            out.entry(stack).or_default().failed.insert(hash, id);
        }
        for (stack, ..) in self.paused()? {
            out.entry(stack).or_default().paused = true;
        }
        let mut st = self
            .conn
            .prepare(
                "SELECT stack, commit_sha, config_hash, overrides FROM deploys
                 WHERE id IN (SELECT MAX(id) FROM deploys WHERE status = 'succeeded' GROUP BY stack)",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get::<_, String>(3)?)))
            .map_err(self.err())?;
        for r in rows {
            let (stack, commit, hash, overrides) = r.map_err(self.err())?;
            let h = out.entry(stack).or_default();
            h.last_success = Some((commit, hash));
            h.overrides = decode_map(&overrides);
        }
        Ok(out)
    }
}

const SELECT: &str = "SELECT id, stack, server, commit_sha, config_hash, vars, overrides, status, reason, trigger,
                             started_at, finished_at, phase FROM deploys";

fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        key: r.get(0)?,
        name: r.get(1)?,
        scope: r.get(2)?,
        stacks: r.get(3)?,
        secret_hash: r.get(4)?,
        created_at: r.get(5)?,
    })
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeployRecord> {
    Ok(StoredDeploy {
        id: r.get(0)?,
        stack: r.get(1)?,
        server: r.get(2)?,
        commit: r.get(3)?,
        config_hash: r.get(4)?,
        vars: r.get(5)?,
        overrides: r.get(6)?,
        status: r.get(7)?,
        reason: r.get(8)?,
        trigger: r.get(9)?,
        started_at: r.get(10)?,
        finished_at: r.get(11)?,
        phase: r.get(12)?,
    }
    .decode())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new<'a>(stack: &'a str, hash: &'a str, vars: &'a BTreeMap<String, String>) -> NewDeploy<'a> {
        NewDeploy { stack, server: "local", commit: "c1", config_hash: hash, vars, overrides: vars, trigger: "test" }
    }

    #[test]
    fn records_and_summarises_deploys() {
        let dir = tempfile::tempdir().unwrap();
        let st = State::open(dir.path()).unwrap();
        let mut vars = BTreeMap::new();
        vars.insert("APP_TAG".to_string(), "abc".to_string());
        let a = st.begin(&new("app", "h1", &vars)).unwrap();
        st.finish(a, DeployStatus::Succeeded, None, "log a", &BTreeMap::new()).unwrap();
        let b = st.begin(&new("app", "h2", &vars)).unwrap();
        st.finish(b, DeployStatus::Failed, Some("boom"), "log b", &BTreeMap::new()).unwrap();
        let s = st.summaries().unwrap();
        assert_eq!(s["app"].last_success, Some(("c1".to_string(), "h1".to_string())));
        assert_eq!(s["app"].latest, Some(DeployStatus::Failed));
        assert_eq!(s["app"].overrides["APP_TAG"], "abc");
        let h = st.history("app", 10).unwrap();
        assert_eq!(h.iter().map(|r| r.id).collect::<Vec<_>>(), [b, a]);
        assert_eq!(h[0].reason.as_deref(), Some("boom"));
        assert_eq!(st.log(a).unwrap(), "log a");
        st.set_phase(b, "up").unwrap();
        st.set_phase(b, "done").unwrap();
        let p = st.phases(b).unwrap();
        assert_eq!(p.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["up", "done"]);
        assert!(p[0].1 > 0 && p[0].1 <= p[1].1, "{p:?}");
        assert!(matches!(st.get(999), Err(StateError::NoSuchDeploy(999))));
    }
}
