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
    /// Never started because a dependency failed.
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
    /// Config hash and id of the most recent deploy.
    pub latest_hash: Option<String>,
    pub latest_id: Option<i64>,
}
