//! The CI gate in front of a deploy and the commit statuses people follow it by: `pending`
//! when the deploy starts and while it waits for CI, then the outcome with a description of
//! what happened and a link to the deploy's dashboard page. A CI timeout or an unreachable
//! forge is reported as `error`, never as a failure of the code. Rollbacks are not gated
//! unless `gate_rollbacks` says so.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use berth_core::record::DeployStatus;

use crate::bridge::block_on;
use crate::ci::{Gate, GateError, Report, Status, short};
use crate::deploy::{Job, Outcome, Progress};

/// How long posting one status may take (retries of transient answers included).
const POST_PENDING: Duration = Duration::from_secs(10);
const POST_OUTCOME: Duration = Duration::from_secs(20);

/// One deploy's gate and statuses, from its start to its outcome.
pub struct Session<'a> {
    job: &'a Job,
    /// The gate to wait for (`None`: not gated, or a rollback that is not).
    gate: Option<&'a Gate>,
    /// Statuses go here (`report = true`).
    reporter: Option<&'a Gate>,
    target_url: Option<String>,
    /// When the deploy itself began (after the gate).
    started: Instant,
    log: String,
    refused: Option<GateError>,
}

impl<'a> Session<'a> {
    /// Deploy `id` of `job` starts: say so on the forge.
    pub fn start(job: &'a Job, trigger: &str, id: i64) -> Session<'a> {
        let configured = job.ci.as_ref();
        let mut s = Session {
            job,
            gate: configured.filter(|g| !berth_core::record::is_rollback(trigger) || g.gate_rollbacks),
            reporter: configured.filter(|g| g.report),
            target_url: configured.and_then(|g| g.public_url.as_ref()).map(|u| format!("{u}/deploys/{id}")),
            started: Instant::now(),
            log: String::new(),
            refused: None,
        };
        if configured.is_some() && s.gate.is_none() {
            s.note("not waiting for CI: rollbacks are not gated (require_ci.gate_rollbacks = true gates them)");
        }
        let what = if s.gate.is_some() { "waiting for CI" } else { "deploying" };
        s.post(Report::Pending, &format!("deploy {id} started: {what}"), POST_PENDING);
        s
    }

    fn note(&mut self, line: &str) {
        tracing::info!(stack = %self.job.stack.name, "{line}");
        self.log.push_str(line);
        self.log.push('\n');
    }

    fn post(&mut self, state: Report, description: &str, within: Duration) {
        let Some(gate) = self.reporter else { return };
        let context = format!("{}{}", crate::ci::OWN_CONTEXT, self.job.stack.name);
        let mut retries = Vec::new();
        let status = Status { context: &context, state, description, target_url: self.target_url.as_deref() };
        let posted =
            block_on(gate.report(&self.job.commit, &status, Instant::now() + within, &mut |m: &str| {
                retries.push(m.to_string())
            }));
        for r in retries {
            self.note(&r);
        }
        if let Err(e) = posted {
            tracing::warn!(stack = %self.job.stack.name, error = %e, "cannot post the commit status");
            self.note(&format!("warning: could not report the deploy status to {}: {e}", gate.provider));
        }
    }

    /// Wait for CI when the deploy is gated. `Some(outcome)`: the deploy may not go on.
    pub fn gate(&mut self, progress: Progress<'_>) -> Option<Outcome> {
        if let Some(gate) = self.gate {
            progress("ci");
            let (commit, provider) = (&self.job.commit, &gate.provider);
            self.note(&format!("waiting for {provider} CI of {} ({}/{})", short(commit), gate.owner, gate.name));
            let mut notes = Vec::new();
            let result = block_on(gate.wait(commit, &mut |m: &str| notes.push(m.to_string())));
            for n in &notes {
                self.note(n);
            }
            match result {
                Ok(()) => {
                    self.note("CI is green");
                    self.post(Report::Pending, "CI passed: deploying", POST_PENDING);
                }
                Err(e) => {
                    self.note(&format!("error: {e}"));
                    let reason = e.to_string();
                    self.refused = Some(e);
                    progress("done");
                    // Blocked, not failed: the CI verdict is about the commit, not the stack's
                    // config, so a later green CI of the same config is not "failed before".
                    return Some(Outcome {
                        status: DeployStatus::Blocked,
                        reason: Some(reason),
                        log: String::new(),
                        vars: BTreeMap::new(),
                        recreated: Vec::new(),
                        verify: serde_json::Value::Object(Default::default()),
                    });
                }
            }
        }
        self.started = Instant::now();
        None
    }

    /// The deploy ended: post its outcome and put the gate's log in front of the deploy's.
    pub fn finish(mut self, outcome: &mut Outcome) {
        let (state, description) = describe(outcome, self.refused.as_ref(), self.started.elapsed());
        self.post(state, &description, POST_OUTCOME);
        if !self.log.is_empty() {
            outcome.log = format!("{}{}", crate::redact::apply(&self.log), outcome.log);
        }
    }
}

/// The status and description of a deploy's outcome.
fn describe(outcome: &Outcome, refused: Option<&GateError>, took: Duration) -> (Report, String) {
    let reason = outcome.reason.clone().unwrap_or_default();
    match (refused, outcome.status) {
        (Some(GateError::Red(why)), _) => (Report::Failure, format!("not deployed: {why}")),
        (Some(e @ (GateError::Timeout(_) | GateError::Unavailable(_))), _) => {
            (Report::Error, format!("not deployed: {e}"))
        }
        (None, DeployStatus::Succeeded) => (Report::Success, format!("deployed and verified in {}", secs(took))),
        (None, DeployStatus::RolledBack) => match reason.rsplit_once("; rolled back to ") {
            Some((why, to)) => (Report::Failure, format!("rolled back to {to} because {why}")),
            None => (Report::Failure, format!("rolled back: {reason}")),
        },
        (None, DeployStatus::Failed) if reason.is_empty() => (Report::Failure, "deploy failed".into()),
        (None, DeployStatus::Failed) => (Report::Failure, format!("deploy failed: {reason}")),
        (None, other) => (Report::Error, format!("deploy {}: {reason}", other.as_str())),
    }
}

fn secs(d: Duration) -> String {
    match d.as_secs() {
        0 => "under a second".into(),
        s if s < 120 => format!("{s} s"),
        s => format!("{}m{:02}s", s / 60, s % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: DeployStatus, reason: Option<&str>) -> Outcome {
        Outcome {
            status,
            reason: reason.map(str::to_string),
            log: String::new(),
            vars: BTreeMap::new(),
            recreated: Vec::new(),
            verify: serde_json::Value::Null,
        }
    }

    #[test]
    fn descriptions_say_what_happened() {
        let d = |o: &Outcome, r: Option<&GateError>| describe(o, r, Duration::from_secs(12));
        assert_eq!(
            d(&outcome(DeployStatus::Succeeded, None), None),
            (Report::Success, "deployed and verified in 12 s".into())
        );
        assert_eq!(
            d(&outcome(DeployStatus::RolledBack, Some("verification failed: web exited; rolled back to abc123")), None),
            (Report::Failure, "rolled back to abc123 because verification failed: web exited".into())
        );
        let failed = outcome(DeployStatus::Failed, Some("x"));
        assert_eq!(d(&failed, Some(&GateError::Timeout("CI still pending after 60s".into()))).0, Report::Error);
        assert_eq!(d(&failed, Some(&GateError::Unavailable("HTTP 502".into()))).0, Report::Error);
        assert_eq!(d(&failed, Some(&GateError::Red("CI failed".into()))).0, Report::Failure);
    }
}
