//! Freezes (`berth freeze`) and the deploys that overrode a window or freeze (`--force --reason`).

use rusqlite::{OptionalExtension, params};

use berth_core::window::{Freeze, Scope};

use super::{State, StateError};

/// Who forced a deploy through a closed window, why, and what was closed: (by, reason, closed, at).
pub type Override = (String, String, String, i64);

fn scope_parts(scope: &Scope) -> (&'static str, &str) {
    match scope {
        Scope::All => ("all", ""),
        Scope::Environment(e) => ("environment", e),
        Scope::Stack(s) => ("stack", s),
    }
}

impl State {
    /// Freeze `scope` until `until`; a freeze of the same scope is replaced. Returns its id.
    pub fn freeze(&self, scope: &Scope, until: i64, reason: &str, by: &str, at: i64) -> Result<i64, StateError> {
        let (kind, name) = scope_parts(scope);
        self.conn
            .execute("DELETE FROM freezes WHERE scope = ?1 AND name = ?2", params![kind, name])
            .map_err(self.err())?;
        self.conn
            .execute(
                "INSERT INTO freezes (scope, name, until, reason, by, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![kind, name, until, reason, by, at],
            )
            .map_err(self.err())?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Freezes not over at `now`, the earliest end first.
    pub fn freezes(&self, now: i64) -> Result<Vec<Freeze>, StateError> {
        let mut st = self
            .conn
            .prepare("SELECT id, scope, name, until, reason, by, at FROM freezes WHERE until > ?1 ORDER BY until, id")
            .map_err(self.err())?;
        st.query_map([now], |r| {
            let (kind, name): (String, String) = (r.get(1)?, r.get(2)?);
            let scope = match kind.as_str() {
                "environment" => Scope::Environment(name),
                "stack" => Scope::Stack(name),
                _ => Scope::All,
            };
            Ok(Freeze { id: r.get(0)?, scope, until: r.get(3)?, reason: r.get(4)?, by: r.get(5)?, at: r.get(6)? })
        })
        .map_err(self.err())?
        .collect::<Result<_, _>>()
        .map_err(self.err())
    }

    /// Lift the freezes of `scopes` (none given: every freeze); returns those lifted that were not over.
    pub fn unfreeze(&self, scopes: &[Scope], now: i64) -> Result<Vec<Freeze>, StateError> {
        let lifted: Vec<Freeze> =
            self.freezes(now)?.into_iter().filter(|f| scopes.is_empty() || scopes.contains(&f.scope)).collect();
        for s in scopes {
            let (kind, name) = scope_parts(s);
            self.conn
                .execute("DELETE FROM freezes WHERE scope = ?1 AND name = ?2", params![kind, name])
                .map_err(self.err())?;
        }
        if scopes.is_empty() {
            self.conn.execute("DELETE FROM freezes", []).map_err(self.err())?;
        }
        Ok(lifted)
    }

    /// Record that deploy `id` was forced through a closed window or freeze.
    pub fn record_override(&self, id: i64, by: &str, reason: &str, closed: &str, at: i64) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO window_overrides (deploy_id, by, reason, closed, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, by, reason, closed, at],
            )
            .map_err(self.err())?;
        Ok(())
    }

    pub fn override_of(&self, id: i64) -> Result<Option<Override>, StateError> {
        self.conn
            .query_row("SELECT by, reason, closed, at FROM window_overrides WHERE deploy_id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
            .map_err(self.err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freezes_replace_expire_and_lift() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(dir.path()).unwrap();
        s.freeze(&Scope::All, 100, "audit", "ana", 1).unwrap();
        s.freeze(&Scope::Stack("web".into()), 50, "first", "ana", 1).unwrap();
        s.freeze(&Scope::Stack("web".into()), 200, "second", "bo", 2).unwrap();
        let f = s.freezes(10).unwrap();
        assert_eq!(f.iter().map(|f| f.reason.as_str()).collect::<Vec<_>>(), ["audit", "second"]);
        assert_eq!(s.freezes(150).unwrap().len(), 1, "the freeze of all ended at 100");
        let lifted = s.unfreeze(&[Scope::Stack("web".into())], 10).unwrap();
        assert_eq!(lifted[0].by, "bo");
        assert_eq!(s.unfreeze(&[], 10).unwrap().len(), 1);
        assert!(s.freezes(0).unwrap().is_empty());
        s.record_override(7, "ana", "hotfix", "frozen", 3).unwrap();
        assert_eq!(s.override_of(7).unwrap().unwrap().1, "hotfix");
        assert_eq!(s.override_of(8).unwrap(), None);
    }
}
