//! The HTTP wire contract: request and answer bodies of `/api/v1`, the error body, and the
//! Komodo-compatible `Update`. The server serializes these, the OpenAPI document describes
//! them (feature `openapi`) and the CLI clients (`berth watch`, `berth trigger`) read them,
//! so a renamed field breaks the build instead of a user.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::record::{DeployRecord, DeployStatus};

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What went wrong and what to do.
    pub error: String,
    /// A stable machine-readable code, e.g. `unknown_stack`.
    pub code: String,
    /// Details, e.g. each configuration error.
    #[serde(default)]
    pub trace: Vec<String>,
}

/// A stack as the repository defines it, with its latest deploy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StackSummary {
    pub name: String,
    pub repo: String,
    pub server: String,
    /// The stack's folder in the repository.
    pub path: String,
    /// Deployed only when asked (bootstrap stacks).
    pub manual: bool,
    pub after: Vec<String>,
    /// The repository commit berth knows.
    pub repo_commit: String,
    /// The latest deploy's status, `manual`, or `never_deployed`.
    pub status: String,
    pub last_deploy: Option<DeployRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StackList {
    pub stacks: Vec<StackSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StackDetail {
    pub name: String,
    pub repo: String,
    /// The stack's resolved definition (see the configuration reference).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub definition: serde_json::Value,
    /// The latest deploys, newest first.
    pub deploys: Vec<DeployRecord>,
}

/// A deploy a request created or joined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Enqueued {
    pub stack: String,
    pub id: i64,
    /// True when the request joined a deploy that was already pending.
    pub joined: bool,
}

/// The deploys a request created or joined, answered at once (202).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Accepted {
    pub commit: String,
    pub deploys: Vec<Enqueued>,
    /// Stacks that were considered and needed nothing.
    pub unchanged: Vec<String>,
}

/// The deploys a request created or joined, after waiting for them (`wait=true`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Waited {
    pub commit: String,
    pub deploys: Vec<DeployRecord>,
    pub unchanged: Vec<String>,
    /// Every deploy reached a final status (else the wait timed out: 202).
    pub settled: bool,
    /// Settled and every deploy succeeded.
    pub success: bool,
}

/// 202: accepted without waiting, or waited and not yet settled.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum Pending {
    Waited(Waited),
    Accepted(Accepted),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeployList {
    pub deploys: Vec<DeployRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeployDetail {
    #[serde(flatten)]
    pub record: DeployRecord,
    /// Verification results (convergence and smoke checks), when the deploy got that far.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    #[serde(default)]
    pub verify: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeployLog {
    pub id: i64,
    pub status: DeployStatus,
    /// The deploy's log, secrets redacted.
    pub log: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rejection {
    pub repo: String,
    pub commit: String,
    pub errors: Vec<String>,
    /// Unix seconds.
    pub at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rejections {
    pub rejections: Vec<Rejection>,
}

/// `POST /api/v1/freezes`: `stacks`, or an `environment`, or neither for every stack.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FreezeBody {
    #[serde(default)]
    pub stacks: Vec<String>,
    pub environment: Option<String>,
    /// How long from now, e.g. `48h`, `90m`, `3d`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[1-9][0-9]{0,5}[smhd]$"))]
    pub until: String,
    /// Why: shown to whoever is held back.
    #[cfg_attr(feature = "openapi", schema(pattern = "\\S"))]
    pub reason: String,
}

/// `POST /api/v1/freezes/lift`: `stacks`, or an `environment`, or neither for every freeze.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LiftBody {
    #[serde(default)]
    pub stacks: Vec<String>,
    pub environment: Option<String>,
}

/// A freeze in force.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FreezeView {
    pub id: i64,
    /// `all`, `environment` or `stack`.
    pub scope: String,
    /// The environment or stack (absent for `all`).
    pub name: Option<String>,
    /// Unix seconds.
    pub until: i64,
    pub reason: String,
    pub by: String,
    pub at: i64,
}

impl From<&crate::window::Freeze> for FreezeView {
    fn from(f: &crate::window::Freeze) -> FreezeView {
        use crate::window::Scope;
        let (scope, name) = match &f.scope {
            Scope::All => ("all", None),
            Scope::Environment(e) => ("environment", Some(e.clone())),
            Scope::Stack(s) => ("stack", Some(s.clone())),
        };
        FreezeView {
            id: f.id,
            scope: scope.into(),
            name,
            until: f.until,
            reason: f.reason.clone(),
            by: f.by.clone(),
            at: f.at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Freezes {
    pub freezes: Vec<FreezeView>,
}

/// `POST /api/v1/stacks/{name}/deploy`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeployBody {
    /// Variables for this deploy (`--set`), replayed by later reconciles unless secret-named.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = variables))]
    pub vars: BTreeMap<String, String>,
    /// A revision (tag or commit) instead of the branch tip.
    #[serde(default, rename = "ref")]
    pub rev: Option<String>,
    /// Deploy through closed deploy windows and freezes (an `admin` key only), recording why.
    #[serde(default)]
    pub force: Option<Force>,
}

/// `"force": { "reason": "..." }`: a deploy through closed windows and freezes, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Force {
    /// Recorded with the deploy, like the CLI's `--force --reason`.
    #[cfg_attr(feature = "openapi", schema(min_length = 1))]
    pub reason: String,
}

/// Variable names as [`crate::vars::valid_key`] accepts them.
#[cfg(feature = "openapi")]
fn variables() -> utoipa::openapi::Object {
    use utoipa::openapi::{ObjectBuilder, Type};
    let name = ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[A-Za-z_][A-Za-z0-9_]*$"));
    let value = ObjectBuilder::new().schema_type(Type::String);
    ObjectBuilder::new().schema_type(Type::Object).property_names(Some(name)).additional_properties(Some(value)).build()
}

/// `POST /api/v1/stacks/{name}/rollback`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// The deploy to put back.
    pub to: Option<i64>,
    /// A revision (tag or commit) to put back instead.
    #[serde(rename = "ref")]
    pub rev: Option<String>,
    /// Roll back through a closed window with `self_heal = false` (an `admin` key only), recording why.
    #[serde(default)]
    pub force: Option<Force>,
}

/// Komodo's `Update` (the answer of `DeployStack`, and of `GetUpdate`), the fields berth fills.
pub mod komodo {
    use serde::{Deserialize, Serialize};

    /// A MongoDB-style id: `{"$oid": "<24 hex digits>"}`.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct ObjectId {
        #[serde(rename = "$oid")]
        pub oid: String,
    }

    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct Target {
        #[serde(rename = "type")]
        pub kind: String,
        pub id: String,
    }

    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct Log {
        pub stage: String,
        pub command: String,
        pub stdout: String,
        pub stderr: String,
        pub success: bool,
        pub start_ts: i64,
        pub end_ts: i64,
    }

    /// A stack execution's params.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct StackParams {
        pub stack: String,
        /// Komodo deploys only these services; berth deploys whole stacks and refuses a subset.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        #[cfg_attr(feature = "openapi", schema(ignore))]
        pub services: Vec<String>,
    }

    /// A batch execution's params: stack names or wildcards, comma or newline separated.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct BatchParams {
        #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_.*?,\n -]*$"))]
        pub pattern: String,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub struct IdParams {
        pub id: String,
    }

    /// `POST /execute`: the executions berth implements.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    #[serde(tag = "type", content = "params")]
    pub enum Execute {
        DeployStack(StackParams),
        DeployStackIfChanged(StackParams),
        BatchDeployStack(BatchParams),
        BatchDeployStackIfChanged(BatchParams),
    }

    /// `POST /read`: the reads berth implements.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    #[serde(tag = "type", content = "params")]
    pub enum Read {
        GetVersion,
        GetUpdate(IdParams),
    }

    /// `status` is `Queued`, `InProgress` or `Complete`; `success` is false until complete.
    /// Missing fields read as empty: a real Komodo server sends more, and sometimes less.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct Update {
        #[serde(rename = "_id")]
        pub id: ObjectId,
        pub operation: String,
        pub start_ts: i64,
        pub success: bool,
        pub operator: String,
        pub target: Target,
        pub logs: Vec<Log>,
        pub end_ts: Option<i64>,
        pub status: String,
        pub commit_hash: String,
        pub other_data: String,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_answers_read_back_as_what_was_sent() {
        let accepted = Accepted {
            commit: "c1".into(),
            deploys: vec![Enqueued { stack: "web".into(), id: 4, joined: false }],
            unchanged: vec!["db".into()],
        };
        let text = serde_json::to_string(&accepted).unwrap();
        match serde_json::from_str::<Pending>(&text).unwrap() {
            Pending::Accepted(a) => assert_eq!(a.deploys, accepted.deploys),
            Pending::Waited(w) => panic!("an accepted answer read as waited: {w:?}"),
        }
        let err: ErrorBody = serde_json::from_str(r#"{"error":"no","code":"unknown_stack"}"#).unwrap();
        assert_eq!((err.code.as_str(), err.trace.len()), ("unknown_stack", 0));
    }

    #[test]
    fn komodo_stack_params_read_with_or_without_services() {
        let p: komodo::StackParams = serde_json::from_str(r#"{"stack":"web"}"#).unwrap();
        assert!(p.services.is_empty());
        let p: komodo::StackParams = serde_json::from_str(r#"{"stack":"web","services":["a"]}"#).unwrap();
        assert_eq!(p.services, ["a"]);
        assert_eq!(
            serde_json::to_string(&komodo::StackParams { services: Vec::new(), ..p }).unwrap(),
            r#"{"stack":"web"}"#
        );
    }

    #[test]
    fn request_bodies_refuse_unknown_fields() {
        assert!(serde_json::from_str::<DeployBody>(r#"{"vars":{},"branch":"x"}"#).is_err());
        let b: DeployBody = serde_json::from_str(r#"{"ref":"v1"}"#).unwrap();
        assert_eq!(b.rev.as_deref(), Some("v1"));
    }
}
