//! The state database's schema and its migrations: numbered steps tracked in SQLite's
//! `user_version`, applied in one immediate transaction when a database is opened.

use rusqlite::{Connection, TransactionBehavior};

/// One step from schema version `i` to `i + 1`. Released steps are never edited: append.
enum Step {
    Sql(&'static str),
    /// A column added to a table. Databases from before versioning may already have it
    /// (they added columns on every open), so the step looks before it alters.
    Column {
        table: &'static str,
        column: &'static str,
        definition: &'static str,
    },
}

/// The tables of the first release (version 1).
const FIRST: &str = "
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
    log         TEXT NOT NULL DEFAULT ''
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
";

const STEPS: &[Step] = &[
    Step::Sql(FIRST),
    // The phase a running deploy is in, and its verification results.
    Step::Column { table: "deploys", column: "phase", definition: "TEXT NOT NULL DEFAULT ''" },
    Step::Column { table: "deploys", column: "verify", definition: "TEXT NOT NULL DEFAULT ''" },
    // Every phase a deploy entered, with when.
    Step::Column { table: "deploys", column: "phases", definition: "TEXT NOT NULL DEFAULT ''" },
    // Commits whose berth.toml was refused, kept for the dashboard and the API.
    Step::Sql(
        "CREATE TABLE IF NOT EXISTS config_rejections (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            repo       TEXT NOT NULL,
            commit_sha TEXT NOT NULL,
            errors     TEXT NOT NULL,
            at         INTEGER NOT NULL
        );",
    ),
    // The plan berth last posted on each pull request, for the dashboard's full-plan page.
    Step::Sql(
        "CREATE TABLE IF NOT EXISTS pr_plans (
            repo        TEXT NOT NULL,
            number      INTEGER NOT NULL,
            head        TEXT NOT NULL,
            base        TEXT,
            state       TEXT NOT NULL,
            description TEXT NOT NULL,
            body        TEXT NOT NULL,
            at          INTEGER NOT NULL,
            PRIMARY KEY (repo, number)
        );",
    ),
    // Freezes (`berth freeze`), and who forced a deploy through a closed window and why.
    Step::Sql(
        "CREATE TABLE IF NOT EXISTS freezes (
            id     INTEGER PRIMARY KEY AUTOINCREMENT,
            scope  TEXT NOT NULL,
            name   TEXT NOT NULL,
            until  INTEGER NOT NULL,
            reason TEXT NOT NULL,
            by     TEXT NOT NULL,
            at     INTEGER NOT NULL
        );
        CREATE TABLE IF NOT EXISTS window_overrides (
            deploy_id INTEGER PRIMARY KEY,
            by        TEXT NOT NULL,
            reason    TEXT NOT NULL,
            closed    TEXT NOT NULL,
            at        INTEGER NOT NULL
        );",
    ),
];

/// The schema version this berth writes.
pub const VERSION: u32 = STEPS.len() as u32;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "it has schema version {found}, written by a newer berth (this one knows up to {VERSION}); \
         run that berth or a newer one: an older berth does not change a newer database"
    )]
    Newer { found: u32 },
}

/// Bring `conn`'s schema to [`VERSION`]. Two processes opening one database at once are
/// ordered by the immediate transaction; the second finds nothing left to do.
pub fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: u32 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > VERSION {
        return Err(MigrateError::Newer { found });
    }
    for step in &STEPS[found as usize..] {
        match step {
            Step::Sql(sql) => tx.execute_batch(sql)?,
            Step::Column { table, column, definition } => {
                let exists: bool = tx.query_row(
                    "SELECT count(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
                    [table, column],
                    |r| r.get(0),
                )?;
                if !exists {
                    tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {definition}"))?;
                }
            }
        }
    }
    if found < VERSION {
        tx.pragma_update(None, "user_version", VERSION)?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(conn: &Connection, table: &str) -> Vec<String> {
        let mut q = conn.prepare("SELECT name FROM pragma_table_info(?1)").unwrap();
        q.query_map([table], |r| r.get(0)).unwrap().map(|c| c.unwrap()).collect()
    }

    fn version(conn: &Connection) -> u32 {
        conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap()
    }

    #[test]
    fn a_new_database_gets_every_step() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn), VERSION);
        assert!(columns(&conn, "deploys").contains(&"phases".to_string()));
        assert!(!columns(&conn, "config_rejections").is_empty());
        // Opening again changes nothing.
        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn), VERSION);
    }

    #[test]
    fn an_unversioned_database_that_already_added_some_columns_is_completed() {
        // What berth before versioning left: version 0, some added columns present.
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(FIRST).unwrap();
        conn.execute_batch("ALTER TABLE deploys ADD COLUMN phase TEXT NOT NULL DEFAULT ''").unwrap();
        migrate(&mut conn).unwrap();
        let cols = columns(&conn, "deploys");
        for c in ["phase", "verify", "phases"] {
            assert_eq!(cols.iter().filter(|x| *x == c).count(), 1, "{c} in {cols:?}");
        }
        assert_eq!(version(&conn), VERSION);
    }

    #[test]
    fn a_database_from_a_newer_berth_is_refused_untouched() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", VERSION + 1).unwrap();
        let e = migrate(&mut conn).unwrap_err();
        assert!(e.to_string().contains("newer berth"), "{e}");
        assert!(columns(&conn, "deploys").is_empty());
    }
}
