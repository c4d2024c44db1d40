//! The deploy page's per-service diff: what the deploy changed since the stack's previous
//! successful deploy, as `berth plan --diff` shows it, computed on demand (deploydiff) with a
//! bound on how long a page waits for it.

use std::sync::Arc;
use std::time::Duration;

use berth_core::diff::{StackOutcome, Status};

use crate::controller::{RepoHandle, Shared};
use crate::deploydiff::{self, Key};

/// How long a page waits for a diff being computed before it says to reload.
const WAIT: Duration = Duration::from_secs(20);

/// One service, folded under `<details>`.
pub struct ServiceView {
    pub name: String,
    pub status: &'static str,
    /// The image change and the changed bind-mounted files.
    pub notes: String,
    pub diff: String,
}

/// What the page shows under "Service changes".
pub struct DiffView {
    /// Why there is no diff to show (no earlier deploy, still computing, an error).
    pub note: String,
    /// `recreates web, worker`.
    pub summary: String,
    pub services: Vec<ServiceView>,
    pub project: String,
    pub files: Vec<(String, String)>,
}

impl DiffView {
    fn note(note: impl Into<String>) -> DiffView {
        DiffView { note: note.into(), summary: String::new(), services: vec![], project: String::new(), files: vec![] }
    }
}

/// The diff of `stack` from `before` (the previous successful deploy's commit) to `commit`, on
/// the calling (blocking) thread: cached, else computed and waited for up to [`WAIT`].
pub fn view(
    shared: &Arc<Shared>,
    repo: Option<&Arc<RepoHandle>>,
    stack: &str,
    before: Option<&str>,
    commit: &str,
) -> DiffView {
    let Some(old) = before else { return DiffView::note("No earlier successful deploy to compare with.") };
    if old == commit {
        return DiffView::note("Same commit as the previous successful deploy: no configuration change.");
    }
    let Some(repo) = repo else { return DiffView::note("The stack is in no repository berth serves now.") };
    let key = Key { stack: stack.to_string(), old: old.to_string(), new: commit.to_string() };
    // A failure is computed again: it may have been a transient one (a timeout, a busy engine).
    let done = match deploydiff::known(&key).filter(|d| d.is_ok()) {
        Some(d) => d,
        None => {
            let (s, r, k) = (shared.clone(), repo.clone(), key.clone());
            deploydiff::start(key.clone(), move || {
                let history = || s.state(|st| r.ws.history(st));
                deploydiff::compute(&r.ws, &k, history, &s.compose)
            });
            match deploydiff::wait(&key, WAIT) {
                Some(d) => d,
                None => return DiffView::note("The diff is still being computed: reload the page in a moment."),
            }
        }
    };
    match done.as_ref() {
        Ok(o) => from_outcome(o),
        Err(e) => DiffView::note(format!("Cannot compute the diff: {}", crate::redact::apply(e))),
    }
}

fn from_outcome(o: &StackOutcome) -> DiffView {
    let Some(d) = &o.diff else {
        let e = o.error.clone().unwrap_or_default();
        return DiffView::note(format!("Cannot render the stack: {}", crate::redact::apply(&e)));
    };
    let clean = |s: &str| crate::redact::apply(s).into_owned();
    let services = d
        .services
        .iter()
        .filter(|s| s.status != Status::Unchanged)
        .map(|s| {
            let notes = s.notes();
            ServiceView {
                name: s.name.clone(),
                status: s.status.as_str(),
                notes: clean(&notes.join("; ")),
                diff: clean(&s.diff),
            }
        })
        .collect();
    DiffView {
        note: String::new(),
        summary: o.summary().unwrap_or_default(),
        services,
        project: clean(&d.project),
        files: o.files.iter().map(|(p, t)| (p.clone(), clean(t))).collect(),
    }
}
