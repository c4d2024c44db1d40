//! Which versions of an image not to propose again: those a deploy brought in and that failed or
//! were rolled back, until a deploy with that version succeeds (then it was not the version's fault).

use crate::record::DeployStatus;

/// One deploy of a stack, with the version of the image it deployed (`None`: unknown, e.g. the
/// service or the commit is gone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    pub id: i64,
    pub status: DeployStatus,
    pub version: Option<String>,
}

/// The tag of a version (`1.3.0@sha256:..` → `1.3.0`).
fn tag(version: &str) -> &str {
    version.split_once('@').map_or(version, |(t, _)| t)
}

/// The deploy that failed with `candidate`, when no deploy with it succeeded. `history` is
/// oldest first. A candidate without digest matches a failed `tag@digest` of the same tag (the tag
/// is what a rule proposes); one with a digest matches only exactly. Only a deploy that changed the
/// version counts: a failure while the version stayed the same says nothing about it.
pub fn failed_with(history: &[Deployed], candidate: &str) -> Option<i64> {
    let same = |v: &str| if candidate.contains('@') { v == candidate } else { tag(v) == candidate };
    let mut failed = None;
    let mut previous_good: Option<&str> = None;
    for d in history {
        let Some(v) = d.version.as_deref() else { continue };
        match d.status {
            DeployStatus::Succeeded => {
                if same(v) {
                    failed = None;
                }
                previous_good = Some(v);
            }
            DeployStatus::Failed | DeployStatus::RolledBack if same(v) && previous_good != Some(v) => {
                failed = Some(d.id);
            }
            _ => {}
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(id: i64, status: DeployStatus, v: &str) -> Deployed {
        Deployed { id, status, version: Some(v.to_string()) }
    }

    #[test]
    fn a_version_whose_deploy_rolled_back_is_remembered_until_it_succeeds() {
        use DeployStatus::*;
        let h = [d(1, Succeeded, "1.2.0"), d(2, RolledBack, "1.3.0"), d(3, Succeeded, "1.2.0")];
        assert_eq!(failed_with(&h, "1.3.0"), Some(2));
        assert_eq!(failed_with(&h, "1.4.0"), None);
        // Later deployed fine (the failure was something else): proposed again.
        let mut later = h.to_vec();
        later.push(d(4, Succeeded, "1.3.0"));
        assert_eq!(failed_with(&later, "1.3.0"), None);
        // Digests: a failed tag@digest blocks the tag; a pinned candidate only its own digest.
        let h = [d(1, Succeeded, "1.2.0@sha256:a"), d(2, Failed, "1.3.0@sha256:b")];
        assert_eq!(failed_with(&h, "1.3.0"), Some(2));
        assert_eq!(failed_with(&h, "1.3.0@sha256:b"), Some(2));
        assert_eq!(failed_with(&h, "1.3.0@sha256:c"), None);
    }

    #[test]
    fn a_failure_that_kept_the_version_does_not_count() {
        use DeployStatus::*;
        let h = [d(1, Succeeded, "1.3.0"), d(2, Failed, "1.3.0"), d(3, Blocked, "1.4.0")];
        assert_eq!(failed_with(&h, "1.3.0"), None);
        assert_eq!(failed_with(&h, "1.4.0"), None, "blocked deploys never ran");
        let unknown = [Deployed { id: 1, status: Failed, version: None }];
        assert_eq!(failed_with(&unknown, "1.3.0"), None);
    }
}
