//! Why a deploy failed, and whether berth puts the last successful deploy back: a pure decision
//! over the failure, the stack's `rollback` policy and its history.

use std::fmt;

use crate::verify::Rollback;

/// What a deploy attempt stopped on. Each cause renders the reason text the records show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// The commit's CI gate said no (or could not be asked).
    CiRefused(String),
    /// The commit could not be checked out into the stack's work tree.
    Checkout { commit: String, error: String },
    /// An env file, an encrypted file or a secret reference could not be read or resolved.
    Variables(String),
    /// `compose config` (or `docker stack config`) rejected the stack's files before anything ran.
    ComposeRejected(String),
    /// A `pre_deploy` or `post_deploy` hook failed.
    Hook(String),
    /// `compose pull` failed.
    Pull(String),
    /// `compose up` (or `docker stack deploy`) failed; `unchanged`: no container was changed.
    UpFailed { error: String, unchanged: bool },
    /// A step after `up` (reading the resolved model, recreating services) failed.
    AfterUp(String),
    /// The services did not converge.
    Verification(String),
    /// An HTTP smoke check failed.
    Smoke { url: String, detail: String },
    /// The stack's timeout ran out before or during a step.
    Timeout(String),
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Checkout { commit, error } => {
                write!(f, "checkout of {} failed: {error}", &commit[..commit.len().min(12)])
            }
            Cause::UpFailed { error, unchanged: true } => write!(f, "{error} (no container was changed)"),
            Cause::UpFailed { error, unchanged: false } => f.write_str(error),
            Cause::Verification(summary) => write!(f, "verification failed: {summary}"),
            Cause::Smoke { url, detail } => write!(f, "smoke check {url} failed: {detail}"),
            Cause::CiRefused(m)
            | Cause::Variables(m)
            | Cause::ComposeRejected(m)
            | Cause::Hook(m)
            | Cause::Pull(m)
            | Cause::AfterUp(m)
            | Cause::Timeout(m) => f.write_str(m),
        }
    }
}

/// Why a failed deploy is left as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The failure changed nothing that runs: the previous version still serves.
    Untouched,
    /// `rollback = "manual"`: an operator decides.
    Manual,
}

/// What to do after a failed deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<T> {
    /// Put `to` back and verify it.
    RollBack { to: T },
    /// Record the failure and leave the engine as it is.
    Fail { why: Keep },
    /// A rollback was called for but there is no earlier successful deploy to put back.
    NoTarget,
}

/// Decide whether a failed deploy is rolled back to `previous`, the stack's last successful deploy.
/// `touched`: the failure came after the attempt changed what runs (a failure before that leaves
/// the previous version serving). A previous deploy of the same config is put back too: running
/// the last good deploy again undoes a forced redeploy that broke what ran.
pub fn decide<T>(cause: &Cause, touched: bool, policy: Rollback, previous: Option<T>) -> Decision<T> {
    // A CI refusal happens before anything runs, whatever the caller says.
    if !touched || matches!(cause, Cause::CiRefused(_)) {
        return Decision::Fail { why: Keep::Untouched };
    }
    if policy == Rollback::Manual {
        return Decision::Fail { why: Keep::Manual };
    }
    match previous {
        Some(to) => Decision::RollBack { to },
        None => Decision::NoTarget,
    }
}

impl<T> Decision<T> {
    /// The recorded reason when no rollback runs (`None` for [`Decision::RollBack`]).
    pub fn reason(&self, cause: &Cause) -> Option<String> {
        match self {
            Decision::RollBack { .. } => None,
            Decision::Fail { .. } => Some(cause.to_string()),
            Decision::NoTarget => Some(format!("{cause} (no earlier successful deploy to roll back to)")),
        }
    }
}

/// The recorded reason of a failure followed by a rollback to `commit`, or by a failed rollback.
pub fn rolled_back(cause: &Cause, commit: &str) -> String {
    format!("{cause}; rolled back to {}", &commit[..commit.len().min(12)])
}

/// The recorded reason of a failure whose rollback failed too.
pub fn rollback_failed(cause: &Cause, rollback: &Cause) -> String {
    format!("{cause}; the rollback failed too: {rollback}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smoke() -> Cause {
        Cause::Smoke { url: "http://localhost:8080/".into(), detail: "status 500".into() }
    }

    fn previous() -> Option<&'static str> {
        Some("abc")
    }

    #[test]
    fn a_touched_failure_rolls_back_to_the_last_success() {
        assert_eq!(decide(&smoke(), true, Rollback::Auto, previous()), Decision::RollBack { to: "abc" });
        let v = Cause::Verification("web exited (1)".into());
        assert_eq!(decide(&v, true, Rollback::Auto, previous()), Decision::RollBack { to: "abc" });
    }

    #[test]
    fn an_untouched_failure_is_only_recorded() {
        let c = Cause::UpFailed { error: "compose up failed: no such image".into(), unchanged: true };
        assert_eq!(decide(&c, false, Rollback::Auto, previous()), Decision::Fail { why: Keep::Untouched });
        let c = Cause::Checkout { commit: "0123456789abcdef".into(), error: "bad object".into() };
        assert_eq!(decide(&c, false, Rollback::Auto, previous()), Decision::Fail { why: Keep::Untouched });
    }

    #[test]
    fn a_ci_refusal_never_rolls_back() {
        let c = Cause::CiRefused("CI failed".into());
        assert_eq!(decide(&c, true, Rollback::Auto, previous()), Decision::Fail { why: Keep::Untouched });
    }

    #[test]
    fn manual_policy_only_records() {
        let d = decide(&smoke(), true, Rollback::Manual, previous());
        assert_eq!(d, Decision::Fail { why: Keep::Manual });
        assert_eq!(d.reason(&smoke()).as_deref(), Some("smoke check http://localhost:8080/ failed: status 500"));
    }

    #[test]
    fn no_previous_success_means_no_target() {
        let d = decide::<&str>(&smoke(), true, Rollback::Auto, None);
        assert_eq!(d, Decision::NoTarget);
        assert_eq!(
            d.reason(&smoke()).as_deref(),
            Some(
                "smoke check http://localhost:8080/ failed: status 500 (no earlier successful deploy to roll back to)"
            )
        );
        // Without a touched engine, nothing is missing.
        assert_eq!(decide::<&str>(&smoke(), false, Rollback::Auto, None), Decision::Fail { why: Keep::Untouched });
    }

    #[test]
    fn reasons_read_as_before() {
        let c = Cause::Checkout { commit: "0123456789abcdef".into(), error: "bad object".into() };
        assert_eq!(c.to_string(), "checkout of 0123456789ab failed: bad object");
        let up = Cause::UpFailed { error: "compose up failed: x".into(), unchanged: true };
        assert_eq!(up.to_string(), "compose up failed: x (no container was changed)");
        let up = Cause::UpFailed { error: "compose up failed: x".into(), unchanged: false };
        assert_eq!(up.to_string(), "compose up failed: x");
        assert_eq!(Cause::Verification("s".into()).to_string(), "verification failed: s");
        assert_eq!(rolled_back(&smoke(), "fedcba9876543210"), format!("{}; rolled back to fedcba987654", smoke()));
        assert_eq!(
            rollback_failed(&smoke(), &Cause::Verification("s".into())),
            format!("{}; the rollback failed too: verification failed: s", smoke())
        );
    }
}
