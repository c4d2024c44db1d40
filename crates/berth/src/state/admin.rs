//! The state store's administrative records: API keys, releases, refused configurations, pauses.

use rusqlite::{OptionalExtension, params};

use berth_core::record::decode_list;

use super::{State, StateError, now};

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

impl State {
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
}

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
