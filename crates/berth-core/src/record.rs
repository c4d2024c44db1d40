//! Record types shared by the state store, the CLI and the API: deploy outcomes and summaries.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Lifecycle of one deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeployStatus {
    /// Accepted by the controller, waiting for its turn.
    Queued,
    Running,
    Succeeded,
    Failed,
    /// Never started: a dependency failed, or the CI gate did not pass (red, timed out, unreachable).
    Blocked,
    /// berth stopped while the deploy was running.
    Interrupted,
    /// berth stopped before the queued deploy started.
    Cancelled,
    /// Taken down because it was removed from the repository (`prune`).
    Removed,
    /// The deploy failed verification and the previous deploy is serving again.
    RolledBack,
}

impl DeployStatus {
    pub const ALL: [DeployStatus; 9] = [
        DeployStatus::Queued,
        DeployStatus::Running,
        DeployStatus::Succeeded,
        DeployStatus::Failed,
        DeployStatus::Blocked,
        DeployStatus::Interrupted,
        DeployStatus::Cancelled,
        DeployStatus::RolledBack,
        DeployStatus::Removed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeployStatus::Queued => "queued",
            DeployStatus::Running => "running",
            DeployStatus::Succeeded => "succeeded",
            DeployStatus::Failed => "failed",
            DeployStatus::Blocked => "blocked",
            DeployStatus::Interrupted => "interrupted",
            DeployStatus::Cancelled => "cancelled",
            DeployStatus::RolledBack => "rolled_back",
            DeployStatus::Removed => "removed",
        }
    }

    pub fn parse(s: &str) -> Option<DeployStatus> {
        DeployStatus::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// Did the deploy leave its own version running and verified?
    pub fn is_failure(self) -> bool {
        matches!(self, DeployStatus::Failed | DeployStatus::RolledBack | DeployStatus::Blocked)
    }

    pub fn is_final(self) -> bool {
        !matches!(self, DeployStatus::Running | DeployStatus::Queued)
    }
}

impl fmt::Display for DeployStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One deploy as stored. Variables are stored redacted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeployRecord {
    pub id: i64,
    pub stack: String,
    pub server: String,
    pub commit: String,
    pub config_hash: String,
    /// Every variable the deploy resolved (redacted).
    pub vars: BTreeMap<String, String>,
    /// The variables set for this deploy (`--set`), replayed by later reconciles (redacted).
    pub overrides: BTreeMap<String, String>,
    pub status: DeployStatus,
    /// Why it failed or was blocked, in one line.
    pub reason: Option<String>,
    /// Who or what asked for it: `apply`, `deploy`, ...
    pub trigger: String,
    /// Unix seconds.
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// The phase a running deploy is in: checkout, up, converging, smoke, rollback, done.
    #[serde(default)]
    pub phase: String,
}

/// A `deploys` row as the state store reads it: maps as JSON text, the status as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredDeploy {
    pub id: i64,
    pub stack: String,
    pub server: String,
    pub commit: String,
    pub config_hash: String,
    pub vars: String,
    pub overrides: String,
    pub status: String,
    pub reason: Option<String>,
    pub trigger: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub phase: String,
}

impl StoredDeploy {
    /// Decode a stored row. A damaged map reads as empty and an unknown status as
    /// `interrupted`, so one bad row (or one from a newer berth) never hides the history.
    pub fn decode(self) -> DeployRecord {
        DeployRecord {
            id: self.id,
            vars: decode_map(&self.vars),
            overrides: decode_map(&self.overrides),
            status: DeployStatus::parse(&self.status).unwrap_or(DeployStatus::Interrupted),
            stack: self.stack,
            server: self.server,
            commit: self.commit,
            config_hash: self.config_hash,
            reason: self.reason,
            trigger: self.trigger,
            started_at: self.started_at,
            finished_at: self.finished_at,
            phase: self.phase,
        }
    }
}

/// A variable map as stored (JSON object text).
pub fn encode_map(map: &BTreeMap<String, String>) -> String {
    serde_json::to_string(map).unwrap_or_else(|_| "{}".into())
}

/// A stored variable map; anything but a JSON object of strings reads as empty.
pub fn decode_map(text: &str) -> BTreeMap<String, String> {
    serde_json::from_str(text).unwrap_or_default()
}

/// A stored list of messages (JSON array text); anything else reads as empty.
pub fn decode_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

/// What the plan needs to know about a stack's past.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// The last deploy that succeeded: (commit, config hash).
    pub last_success: Option<(String, String)>,
    /// Variables set on the last successful deploy, replayed by reconciles.
    pub overrides: BTreeMap<String, String>,
    /// Status of the most recent deploy of any outcome.
    pub latest: Option<DeployStatus>,
    /// Paused by an operator: never deployed or healed automatically.
    pub paused: bool,
    /// Server of the most recent deploy.
    pub server: Option<String>,
    /// Config hashes whose last finished deploy failed or was rolled back, with that deploy's id:
    /// not retried by a reconcile until the config changes.
    pub failed: BTreeMap<String, i64>,
}

/// Whether a deploy's `trigger` is a rollback an operator asked for: `berth rollback`
/// (`rollback`), or the API's and dashboard's (`rollback:<caller>`).
pub fn is_rollback(trigger: &str) -> bool {
    trigger == "rollback" || trigger.starts_with("rollback:")
}

#[cfg(test)]
mod tests {
    #[test]
    fn rollbacks_are_named_by_their_trigger() {
        assert!(is_rollback("rollback") && is_rollback("rollback:admin"));
        assert!(!is_rollback("push") && !is_rollback("heal") && !is_rollback("rollbacks"));
    }

    use super::*;

    #[test]
    fn stored_rows_round_trip_and_damage_reads_as_empty() {
        let vars = BTreeMap::from([("TAG".to_string(), "v1 \"quoted\"\n".to_string())]);
        let row = StoredDeploy {
            id: 7,
            vars: encode_map(&vars),
            overrides: "{}".into(),
            status: "rolled_back".into(),
            ..StoredDeploy::default()
        };
        let r = row.clone().decode();
        assert_eq!((r.id, &r.vars, r.status), (7, &vars, DeployStatus::RolledBack));
        let damaged =
            StoredDeploy { vars: "{\"A\":1}".into(), overrides: "[".into(), status: "exploded".into(), ..row };
        let r = damaged.decode();
        assert!(r.vars.is_empty() && r.overrides.is_empty());
        assert_eq!(r.status, DeployStatus::Interrupted);
        assert_eq!(decode_list("[\"a\",\"b\"]"), ["a", "b"]);
        assert!(decode_list("{}").is_empty());
    }

    #[test]
    fn every_status_parses_back() {
        for s in DeployStatus::ALL {
            assert_eq!(DeployStatus::parse(s.as_str()), Some(s));
        }
    }
}
