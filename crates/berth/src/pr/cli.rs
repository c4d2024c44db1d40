//! `berth ci plan`: a PR plan computed in CI, from the checkout, and posted from there: the same
//! comment (edited in place) and `berth/plan` status as `berth serve` posts.

use std::collections::HashMap;
use std::time::Instant;

use berth_core::prcomment::{self, Comment};

use super::comment::Thread;
use super::{API_DEADLINE, CONTEXT, judge};
use crate::ci::{Gate, Report, Status};
use crate::docker::Compose;
use crate::error::{Error, Result, exit};
use crate::stackdiff::{self, Secrets};
use crate::workspace::Workspace;

/// What `berth ci plan` was asked.
pub struct Ask<'a> {
    pub number: u64,
    pub head: &'a str,
    pub base: Option<&'a str>,
    /// Never decrypt secrets (a fork's request).
    pub no_secrets: bool,
    /// Print the comment, post nothing.
    pub dry_run: bool,
}

/// Plan the checkout's head against its base, then comment and post the status through `gate`.
pub fn ci_plan(ws: &Workspace, gate: &Gate, ask: &Ask) -> Result<i32> {
    if !berth_core::project::FORGE_PROVIDERS.contains(&gate.provider.as_str()) {
        return Err(Error::Usage(format!(
            "{} has no pull-request comments: give --provider {}",
            gate.provider,
            berth_core::project::FORGE_PROVIDERS.join("|")
        )));
    }
    let head = ws.repo.resolve(ask.head)?;
    let base = match ask.base {
        Some(b) => ws.repo.resolve(b)?,
        None => {
            let against = ws.repo.default_base().ok_or_else(|| {
                Error::Usage("no upstream branch, `main` or `master` to compare with; pass --base REV".into())
            })?;
            ws.repo.merge_base(&head, &against)?
        }
    };
    let (stacks, invalid) = match ws.snapshot(&head) {
        Err(Error::Config(errs)) => {
            (Vec::new(), Some(errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")))
        }
        Err(e) => return Err(e),
        Ok(new) => {
            let old = ws.snapshot(&base)?;
            let secrets = if ask.no_secrets { Secrets::References } else { Secrets::Decrypt };
            let history = || ws.read_state().and_then(|s| ws.history(&s)).or_else(|_| Ok(HashMap::new()));
            let touched = stackdiff::touched(ws, &old, &new, &[])?;
            let stacks = if touched.is_empty() {
                Vec::new()
            } else {
                stackdiff::compute(ws, &old, &new, &[], history, &Compose::detect()?, secrets)?
            };
            (stacks, None)
        }
    };
    let (state, description) = judge(&stacks, invalid.as_deref());
    let c = Comment {
        base: &base,
        head: &head,
        stacks: &stacks,
        fork: ask.no_secrets,
        error: invalid.as_deref(),
        full: None,
    };
    let body = crate::redact::apply(&prcomment::render(&c, prcomment::limit(&gate.provider))).into_owned();
    let description = crate::redact::apply(&description).into_owned();
    print!("{body}");
    if !ask.dry_run {
        let project = if gate.provider == "gitlab" {
            format!("{}/{}", gate.owner, gate.name).replace('/', "%2F")
        } else {
            format!("{}/{}", gate.owner, gate.name)
        };
        let thread = Thread { api: gate.api(), project, number: ask.number };
        let client = gate.client().map_err(Error::Io)?;
        let deadline = Instant::now() + API_DEADLINE;
        let mut log = |m: &str| eprintln!("{m}");
        let posted = crate::bridge::block_on(thread.upsert(&client, &body, deadline, &mut log))
            .map_err(|e| Error::Io(format!("cannot comment on request #{}: {e}", ask.number)))?;
        eprintln!("comment {} ({})", posted.id.map(|i| i.to_string()).unwrap_or_default(), posted.how);
        let status = Status { context: CONTEXT, state, description: &description, target_url: None };
        crate::bridge::block_on(gate.report(&head, &status, deadline, &mut log))
            .map_err(|e| Error::Io(format!("cannot post the {CONTEXT} status: {e}")))?;
    }
    eprintln!("{CONTEXT}: {} ({description})", state.word());
    Ok(if state == Report::Success { exit::OK } else { exit::FAILED })
}
