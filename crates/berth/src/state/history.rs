//! The state store's deploy history: listings, single records and logs, the last success, summaries.

use std::collections::HashMap;

use berth_core::record::{DeployRecord, History, StoredDeploy, decode_map};
use rusqlite::{OptionalExtension, params};

use super::{State, StateError};

impl State {
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

pub(super) const SELECT: &str =
    "SELECT id, stack, server, commit_sha, config_hash, vars, overrides, status, reason, trigger,
                             started_at, finished_at, phase FROM deploys";

pub(super) fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeployRecord> {
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
