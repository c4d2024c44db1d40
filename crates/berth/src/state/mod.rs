//! The state store: deploy records in an embedded SQLite database (WAL) under the state dir.
//! This file owns opening it, the schema and a deploy's lifecycle; [`admin`], [`history`] and [`plans`]
//! the rest.

mod admin;
mod freezes;
mod history;
mod plans;
mod schema;

pub use admin::{ApiKey, Release};
use history::{SELECT, row};
pub use plans::PrPlan;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_core::record::{DeployRecord, DeployStatus, encode_map};
use rusqlite::{Connection, OptionalExtension, params};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state database {}: {source}{}", path.display(), storage_hint(path, source))]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("cannot create state dir {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("state database {}: {source}", path.display())]
    Schema { path: PathBuf, source: schema::MigrateError },
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

/// How long a statement waits for another process's lock on the database.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Switch to WAL. SQLite answers "busy" to this without calling the busy handler while another
/// connection opens the same new database (two `berth apply` started together), so retry it here.
fn wal(conn: &Connection) -> Result<(), rusqlite::Error> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StateError> {
    schema::migrate(conn).map_err(|e| match e {
        schema::MigrateError::Sqlite(source) => StateError::Sqlite { path: path.to_path_buf(), source },
        e => StateError::Schema { path: path.to_path_buf(), source: e },
    })
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
        let mut conn = Connection::open_in_memory().map_err(err)?;
        migrate(&mut conn, &path)?;
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
        let mut conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        wal(&conn).map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
        migrate(&mut conn, &path)?;
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

    /// Say why a queued deploy has not started yet (a closed deploy window, a freeze).
    pub fn note_queued(&self, id: i64, reason: &str) -> Result<(), StateError> {
        self.conn
            .execute("UPDATE deploys SET reason = ?2 WHERE id = ?1 AND status = 'queued'", params![id, reason])
            .map_err(self.err())?;
        Ok(())
    }

    /// A queued deploy starts: its config hash and overrides are now known.
    pub fn start(&self, id: i64, config_hash: &str, overrides: &BTreeMap<String, String>) -> Result<(), StateError> {
        self.conn
            .execute(
                "UPDATE deploys SET status = 'running', config_hash = ?2, overrides = ?3, vars = ?3, started_at = ?4,
                 reason = NULL WHERE id = ?1",
                params![id, config_hash, encode_map(overrides), now()],
            )
            .map_err(self.err())?;
        Ok(())
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
        let mut interrupted = Vec::new();
        for r in running.into_iter().filter(|r| orphaned(r)) {
            if self.interrupt(r.id, reason_running)? {
                interrupted.push(r);
            }
        }
        self.conn
            .execute(
                "UPDATE deploys SET status = 'cancelled', reason = ?1, finished_at = ?2 WHERE status = 'queued'",
                params![reason_queued, now()],
            )
            .map_err(self.err())?;
        Ok(interrupted)
    }

    /// Record deploy `id` as interrupted if it is still `running`: whoever found its lock free may
    /// have looked just as its berth finished it, and that outcome stands. Whether it was.
    pub fn interrupt(&self, id: i64, reason: &str) -> Result<bool, StateError> {
        let n = self
            .conn
            .execute(
                "UPDATE deploys SET status = 'interrupted', reason = ?2, finished_at = ?3
                 WHERE id = ?1 AND status = 'running'",
                params![id, reason, now()],
            )
            .map_err(self.err())?;
        Ok(n > 0)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new<'a>(stack: &'a str, hash: &'a str, vars: &'a BTreeMap<String, String>) -> NewDeploy<'a> {
        NewDeploy { stack, server: "local", commit: "c1", config_hash: hash, vars, overrides: vars, trigger: "test" }
    }

    #[test]
    fn many_processes_opening_one_new_database_at_once_all_succeed() {
        // Two `berth apply` started together both create the database; neither may fail on the lock.
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let opened: Vec<_> = (0..8)
                .map(|_| {
                    let dir = dir.path().to_path_buf();
                    std::thread::spawn(move || State::open(&dir).map(|_| ()).map_err(|e| e.to_string()))
                })
                .collect();
            for t in opened {
                assert_eq!(t.join().unwrap(), Ok(()));
            }
        }
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

    #[test]
    fn a_database_of_the_first_release_opens_with_its_history() {
        let dir = tempfile::tempdir().unwrap();
        {
            // The first release's deploys table, with one finished deploy, no user_version.
            let conn = Connection::open(dir.path().join("berth.db")).unwrap();
            conn.execute_batch(
                "CREATE TABLE deploys (id INTEGER PRIMARY KEY AUTOINCREMENT, stack TEXT NOT NULL,
                 server TEXT NOT NULL, commit_sha TEXT NOT NULL, config_hash TEXT NOT NULL, vars TEXT NOT NULL,
                 overrides TEXT NOT NULL, status TEXT NOT NULL, reason TEXT, trigger TEXT NOT NULL,
                 started_at INTEGER NOT NULL, finished_at INTEGER, log TEXT NOT NULL DEFAULT '');
                 INSERT INTO deploys (stack, server, commit_sha, config_hash, vars, overrides, status, trigger,
                 started_at, finished_at, log) VALUES ('app', 'local', 'c0', 'h0', '', '', 'succeeded', 'apply', 1, 2, 'old');",
            )
            .unwrap();
        }
        let st = State::open(dir.path()).unwrap();
        let h = st.history("app", 10).unwrap();
        assert_eq!((h.len(), h[0].commit.as_str(), h[0].status), (1, "c0", DeployStatus::Succeeded));
        // The columns added since work on the old rows.
        st.set_phase(h[0].id, "done").unwrap();
        assert_eq!(st.phases(h[0].id).unwrap().len(), 1);
        let vars = BTreeMap::new();
        let id = st.begin(&new("app", "h1", &vars)).unwrap();
        assert!(id > h[0].id);
    }

    #[test]
    fn only_a_running_deploy_is_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let st = State::open(dir.path()).unwrap();
        let vars = BTreeMap::new();
        let done = st.begin(&new("app", "h1", &vars)).unwrap();
        st.finish(done, DeployStatus::Succeeded, None, "log", &vars).unwrap();
        let running = st.begin(&new("web", "h1", &vars)).unwrap();
        st.set_phase(running, "up").unwrap();
        // Its berth finished it between the look at the record and the look at the lock.
        assert!(!st.interrupt(done, "gone").unwrap());
        assert_eq!(st.get(done).unwrap().status, DeployStatus::Succeeded);
        assert!(st.interrupt(running, "gone").unwrap());
        let r = st.get(running).unwrap();
        assert_eq!((r.status, r.reason.as_deref()), (DeployStatus::Interrupted, Some("gone")));
        assert!(st.settle_abandoned("gone", "never started", |_| true).unwrap().is_empty());
    }
}
