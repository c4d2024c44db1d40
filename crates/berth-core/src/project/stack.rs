//! One resolved stack and how it is deployed (`Mode`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::config::{CiToml, SecretRef};
use crate::error::Location;
use crate::verify::{Rollback, Verify};

/// How a stack is deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Compose,
    /// `docker stack deploy` against a swarm manager.
    Swarm,
}

/// `mode = "..."` of `[defaults]` or a `[[stack]]`; absent is compose.
pub(super) fn parse_mode(m: Option<&str>) -> Result<Mode, String> {
    match m {
        None | Some("compose") => Ok(Mode::Compose),
        Some("swarm") => Ok(Mode::Swarm),
        Some(other) => Err(format!("unknown mode `{other}`; use mode = \"compose\" or \"swarm\"")),
    }
}

/// `pull = "..."`: whether images are pulled before `up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pull {
    /// Pull every image before `up` (`compose pull`).
    Always,
    /// Pull only images the engine lacks (what `up` does anyway).
    Missing,
}

pub(super) fn parse_pull(p: &str) -> Result<Pull, String> {
    match p {
        "always" => Ok(Pull::Always),
        "missing" => Ok(Pull::Missing),
        other => Err(format!("unknown pull `{other}`; use pull = \"always\" or \"missing\"")),
    }
}

/// One deployable stack, fully resolved. Every path is repo-relative.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stack {
    pub name: String,
    pub path: String,
    pub compose_files: Vec<String>,
    /// Whether its `[[stack]]` entry lists the compose files (`compose = [...]`) rather than discovery.
    #[serde(skip)]
    pub compose_declared: bool,
    pub server: String,
    pub mode: Mode,
    pub after: Vec<String>,
    pub watch: Vec<String>,
    pub ignore: Vec<String>,
    pub manual: bool,
    pub env: BTreeMap<String, String>,
    /// Variables whose values are secrets read at deploy time (the reference is hashed, never the value).
    pub secret_env: BTreeMap<String, SecretRef>,
    /// Encrypted env files: the folder's `*.env.age` (age) and `*.sops.{env,yaml,yml,json}` (SOPS), and the
    /// ones listed in `secrets`.
    pub secrets: Vec<String>,
    pub env_files: Vec<String>,
    #[serde(with = "secs")]
    pub timeout: Duration,
    pub pre_deploy: super::hooks::Hook,
    pub post_deploy: super::hooks::Hook,
    /// Pull policy before `up`; absent is compose's own (pull what is missing). Absent hashes as before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull: Option<Pull>,
    pub tier: Option<String>,
    /// CI gate of the stack itself (its environment's applies too).
    #[serde(skip)]
    pub require_ci: Option<CiToml>,
    /// Redeploy the recorded deploy when the stack drifts.
    #[serde(skip)]
    pub self_heal: bool,
    /// The age identity for `secrets` (`[berth] age_identity`).
    #[serde(skip)]
    pub age_identity: Option<SecretRef>,
    /// How a deploy is verified. Not part of the config hash: it does not change what runs.
    #[serde(skip)]
    pub verify: Verify,
    #[serde(skip)]
    pub rollback: Rollback,
    /// How services' containers are replaced. Not part of the config hash: what runs is the same.
    #[serde(skip)]
    pub rollout: crate::rollout::Rollout,
    /// Where the stack comes from: a discovery pattern, `berth.toml:LINE`, or both.
    #[serde(skip)]
    pub origin: String,
    /// The `[[stack]]` entry that declared or refined it, if any.
    #[serde(skip)]
    pub location: Option<Location>,
    /// `[[stack.image]]` update rules. Not part of the config hash: they change no deploy.
    #[serde(skip)]
    pub images: Vec<crate::images::Policy>,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_default_to_compose() {
        assert_eq!(parse_mode(None), Ok(Mode::Compose));
        assert_eq!(parse_mode(Some("swarm")), Ok(Mode::Swarm));
        assert!(parse_mode(Some("kube")).unwrap_err().contains("unknown mode `kube`"));
    }
}
