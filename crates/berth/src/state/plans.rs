//! The last plan of each pull request: the full comment, for the dashboard's `/plans/...` page
//! when the forge's comment had to be cut (already free of secrets: rendered with them masked).

use rusqlite::{OptionalExtension, params};

use super::{State, StateError};

/// A pull request's newest plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PrPlan {
    pub repo: String,
    pub number: u64,
    pub head: String,
    pub base: Option<String>,
    /// The `berth/plan` status: `success`, `failure` or `error`.
    pub state: String,
    pub description: String,
    /// The whole comment (markdown), uncut.
    pub body: String,
    pub at: i64,
}

impl State {
    /// Keep `p` as its request's newest plan.
    pub fn save_pr_plan(&self, p: &PrPlan) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO pr_plans (repo, number, head, base, state, description, body, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![p.repo, p.number as i64, p.head, p.base, p.state, p.description, p.body, p.at],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// The newest plan of request `number` of `repo`.
    pub fn pr_plan(&self, repo: &str, number: u64) -> Result<Option<PrPlan>, StateError> {
        self.conn
            .query_row(
                "SELECT head, base, state, description, body, at FROM pr_plans WHERE repo = ?1 AND number = ?2",
                params![repo, number as i64],
                |r| {
                    Ok(PrPlan {
                        repo: repo.to_string(),
                        number,
                        head: r.get(0)?,
                        base: r.get(1)?,
                        state: r.get(2)?,
                        description: r.get(3)?,
                        body: r.get(4)?,
                        at: r.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(self.err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_plan_of_a_request_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(dir.path()).unwrap();
        let mut p = PrPlan {
            repo: "stacks".into(),
            number: 7,
            head: "a".repeat(40),
            base: None,
            state: "success".into(),
            description: "1 stack change: web".into(),
            body: "<!-- berth-plan -->\nfirst".into(),
            at: 1,
        };
        s.save_pr_plan(&p).unwrap();
        p.body = "<!-- berth-plan -->\nsecond".into();
        s.save_pr_plan(&p).unwrap();
        assert_eq!(s.pr_plan("stacks", 7).unwrap(), Some(p));
        assert_eq!(s.pr_plan("stacks", 8).unwrap(), None);
    }
}
