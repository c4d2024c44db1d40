//! The plan: for every stack, in dependency order, what to do and why.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::dag;
use crate::project::Project;
use crate::record::{DeployStatus, History};

/// What happens to a stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Deploy,
    Skip,
    /// A dependency failed or is blocked: not deployed this time.
    Blocked,
    /// `manual = true`: only an explicit `berth deploy` runs it.
    Manual,
    /// Removed from the repository and `prune` is on: take it down.
    Remove,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deploy => "deploy",
            Action::Skip => "skip",
            Action::Blocked => "blocked",
            Action::Manual => "manual",
            Action::Remove => "remove",
        }
    }
}

/// Why, as a stable code (the JSON `reason`) plus details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Never deployed successfully.
    New,
    /// Files of the stack changed since its last successful deploy.
    PathsChanged,
    /// The config hash differs but no changed path is known (definition or variables changed).
    HashDiffers,
    /// Same config hash as the last successful deploy.
    Unchanged,
    /// Asked for by name.
    Requested,
    Manual,
    /// A stack it comes after failed or is blocked.
    DependencyFailed,
    /// This exact config already failed (or was rolled back): not retried until it changes.
    FailedBefore,
    /// Paused by an operator (`berth pause`).
    Paused,
    /// No longer in the repository.
    Removed,
    /// Its last deploy was interrupted (berth died mid-deploy): what runs is unknown.
    Interrupted,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::New => "new",
            Reason::PathsChanged => "paths changed",
            Reason::HashDiffers => "hash differs",
            Reason::Unchanged => "unchanged",
            Reason::Requested => "requested",
            Reason::Manual => "manual",
            Reason::DependencyFailed => "dependency failed",
            Reason::FailedBefore => "failed before",
            Reason::Paused => "paused",
            Reason::Removed => "removed from the repository",
            Reason::Interrupted => "interrupted",
        }
    }
}

/// One line of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub stack: String,
    pub server: String,
    pub action: Action,
    pub reason: Reason,
    /// Free text completing the reason (the blocking dependency, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Paths that changed since the last successful deploy (when known).
    pub paths: Vec<String>,
    pub config_hash: String,
    pub previous_hash: Option<String>,
    pub after: Vec<String>,
}

/// The plan for one commit.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub commit: String,
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn to_deploy(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| s.action == Action::Deploy)
    }
}

/// Inputs to [`build`] besides the project.
pub struct Inputs<'a> {
    pub commit: &'a str,
    /// Config hash of every stack at `commit`.
    pub hashes: &'a BTreeMap<String, String>,
    /// Past deploys per stack.
    pub history: &'a HashMap<String, History>,
    /// Changed paths since each stack's last successful deploy, when known.
    pub touched: &'a BTreeMap<String, Vec<String>>,
    /// Deploy exactly these stacks whatever their state (`berth deploy`); `None` is a reconcile.
    pub requested: Option<&'a [String]>,
    /// Stacks berth deployed that are gone from the repository: (name, server).
    pub gone: &'a [(String, String)],
}

/// Decide what to do with every stack.
pub fn build(project: &Project, input: &Inputs<'_>) -> Plan {
    // The project was validated acyclic when it was loaded.
    let order = dag::order(&project.stacks).unwrap_or_else(|_| (0..project.stacks.len()).collect());
    let mut decided: HashMap<&str, Action> = HashMap::new();
    let mut steps = Vec::with_capacity(order.len());
    for i in order {
        let s = &project.stacks[i];
        let hash = input.hashes.get(&s.name).cloned().unwrap_or_default();
        let hist = input.history.get(&s.name);
        let previous_hash = hist.and_then(|h| h.last_success.as_ref()).map(|(_, h)| h.clone());
        let paths = input.touched.get(&s.name).cloned().unwrap_or_default();
        // The last deploy of this exact config that failed (any earlier one, not only the latest).
        let failed = hist.and_then(|h| h.failed.get(&hash).copied());
        let interrupted = hist.is_some_and(|h| h.latest == Some(DeployStatus::Interrupted));
        let blocking = s.after.iter().find(|d| {
            let dep_failed = input.history.get(d.as_str()).and_then(|h| h.latest) == Some(DeployStatus::Failed);
            match decided.get(d.as_str()) {
                Some(Action::Blocked) => true,
                Some(Action::Deploy) => false,
                _ => dep_failed,
            }
        });
        let (action, reason, detail) = match input.requested {
            Some(req) if req.contains(&s.name) => (Action::Deploy, Reason::Requested, None),
            Some(_) => (Action::Skip, Reason::Unchanged, Some("not requested".to_string())),
            None if s.manual => (Action::Manual, Reason::Manual, None),
            None if hist.is_some_and(|h| h.paused) => {
                (Action::Skip, Reason::Paused, Some(format!("`berth resume {}` to deploy it again", s.name)))
            }
            None if !project.auto_deploys(s) => {
                (Action::Manual, Reason::Manual, Some("its environment moves only by `berth promote`".to_string()))
            }
            None if previous_hash.as_deref() == Some(hash.as_str()) && !interrupted => {
                (Action::Skip, Reason::Unchanged, None)
            }
            None if failed.is_some() => {
                let id = failed.unwrap_or_default();
                let detail =
                    format!("deploy {id} of this exact config failed; push a fix or run `berth deploy {}`", s.name);
                (Action::Skip, Reason::FailedBefore, Some(detail))
            }
            None => {
                let reason = if interrupted {
                    Reason::Interrupted
                } else if previous_hash.is_none() {
                    Reason::New
                } else if paths.is_empty() {
                    Reason::HashDiffers
                } else {
                    Reason::PathsChanged
                };
                match blocking {
                    Some(d) => (Action::Blocked, Reason::DependencyFailed, Some(format!("`{d}` failed"))),
                    None => (Action::Deploy, reason, None),
                }
            }
        };
        decided.insert(&s.name, action);
        steps.push(Step {
            stack: s.name.clone(),
            server: s.server.clone(),
            action,
            reason,
            detail,
            paths,
            config_hash: hash,
            previous_hash,
            after: s.after.clone(),
        });
    }
    if input.requested.is_none() {
        for (name, server) in input.gone {
            let prune = project.prunes(server);
            steps.push(Step {
                stack: name.clone(),
                server: server.clone(),
                action: if prune { Action::Remove } else { Action::Skip },
                reason: Reason::Removed,
                detail: (!prune).then(|| "set prune = true to take it down".to_string()),
                paths: Vec::new(),
                config_hash: String::new(),
                previous_hash: None,
                after: Vec::new(),
            });
        }
    }
    Plan { commit: input.commit.to_string(), steps }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Tree;

    fn project() -> Project {
        let tree = Tree::from_paths([
            "stacks/db/compose.yaml",
            "stacks/app/compose.yaml",
            "stacks/boot/compose.yaml",
            "stacks/web/compose.yaml",
        ]);
        let cfg = "[[stack]]\nname = \"app\"\nafter = [\"db\"]\n[[stack]]\nname = \"boot\"\nmanual = true\n";
        Project::load("berth.toml", Some(cfg), &tree).unwrap()
    }

    fn hashes() -> BTreeMap<String, String> {
        ["app", "boot", "db", "web"].iter().map(|s| (s.to_string(), format!("h-{s}"))).collect()
    }

    fn success(hash: &str) -> History {
        History {
            last_success: Some(("c0".into(), hash.into())),
            latest: Some(DeployStatus::Succeeded),
            ..Default::default()
        }
    }

    #[test]
    fn decides_each_stack_in_dependency_order() {
        let p = project();
        let mut history = HashMap::new();
        history.insert("web".to_string(), success("h-web"));
        history.insert("db".to_string(), success("old"));
        let mut touched = BTreeMap::new();
        touched.insert("db".to_string(), vec!["stacks/db/compose.yaml".to_string()]);
        let plan = build(
            &p,
            &Inputs {
                commit: "c1",
                hashes: &hashes(),
                history: &history,
                touched: &touched,
                requested: None,
                gone: &[],
            },
        );
        let got: Vec<_> = plan.steps.iter().map(|s| (s.stack.as_str(), s.action, s.reason)).collect();
        assert_eq!(
            got,
            [
                ("boot", Action::Manual, Reason::Manual),
                ("db", Action::Deploy, Reason::PathsChanged),
                ("app", Action::Deploy, Reason::New),
                ("web", Action::Skip, Reason::Unchanged),
            ]
        );
    }

    #[test]
    fn dependents_of_a_failed_stack_are_blocked() {
        let p = project();
        let mut history = HashMap::new();
        history.insert(
            "db".to_string(),
            History {
                last_success: Some(("c0".into(), "h-db".into())),
                latest: Some(DeployStatus::Failed),
                ..Default::default()
            },
        );
        let plan = build(
            &p,
            &Inputs {
                commit: "c1",
                hashes: &hashes(),
                history: &history,
                touched: &BTreeMap::new(),
                requested: None,
                gone: &[],
            },
        );
        let app = plan.steps.iter().find(|s| s.stack == "app").unwrap();
        assert_eq!(app.action, Action::Blocked);
        assert_eq!(app.detail.as_deref(), Some("`db` failed"));
    }

    #[test]
    fn a_config_that_failed_is_not_retried_until_it_changes() {
        let p = project();
        let mut history = HashMap::new();
        let failed = |hash: &str| History {
            latest: Some(DeployStatus::RolledBack),
            failed: BTreeMap::from([(hash.to_string(), 7)]),
            ..Default::default()
        };
        history.insert("web".to_string(), failed("h-web"));
        let (hs, none) = (hashes(), BTreeMap::new());
        let plan = build(
            &p,
            &Inputs { commit: "c1", hashes: &hs, history: &history, touched: &none, requested: None, gone: &[] },
        );
        let web = plan.steps.iter().find(|s| s.stack == "web").unwrap();
        assert_eq!((web.action, web.reason), (Action::Skip, Reason::FailedBefore));
        history.insert("web".to_string(), failed("older"));
        let plan = build(
            &p,
            &Inputs { commit: "c1", hashes: &hs, history: &history, touched: &none, requested: None, gone: &[] },
        );
        let web = plan.steps.iter().find(|s| s.stack == "web").unwrap();
        assert_eq!(web.action, Action::Deploy);
    }

    #[test]
    fn a_failed_config_stays_failed_after_an_unrelated_success() {
        let p = project();
        let none = BTreeMap::new();
        let hs = hashes();
        // h-web failed at deploy 6; a later deploy of another config (a `--set`) succeeded.
        let mut history = HashMap::from([(
            "web".to_string(),
            History {
                last_success: Some(("c0".into(), "h-set".into())),
                latest: Some(DeployStatus::Succeeded),
                failed: BTreeMap::from([("h-web".to_string(), 6)]),
                ..Default::default()
            },
        )]);
        let plan = build(
            &p,
            &Inputs { commit: "c1", hashes: &hs, history: &history, touched: &none, requested: None, gone: &[] },
        );
        let web = plan.steps.iter().find(|s| s.stack == "web").unwrap();
        assert_eq!((web.action, web.reason), (Action::Skip, Reason::FailedBefore));
        assert!(web.detail.as_deref().unwrap().starts_with("deploy 6 "), "{:?}", web.detail);
        // A config that failed once and succeeded later is not remembered as failed.
        history.get_mut("web").unwrap().failed.clear();
        let plan = build(
            &p,
            &Inputs { commit: "c1", hashes: &hs, history: &history, touched: &none, requested: None, gone: &[] },
        );
        assert_eq!(plan.steps.iter().find(|s| s.stack == "web").unwrap().action, Action::Deploy);
    }

    #[test]
    fn an_interrupted_deploy_is_redeployed_even_at_the_same_config() {
        let p = project();
        let none = BTreeMap::new();
        let hs = hashes();
        let mut web = success("h-web");
        web.latest = Some(DeployStatus::Interrupted);
        let history = HashMap::from([("web".to_string(), web)]);
        let plan = build(
            &p,
            &Inputs { commit: "c1", hashes: &hs, history: &history, touched: &none, requested: None, gone: &[] },
        );
        let web = plan.steps.iter().find(|s| s.stack == "web").unwrap();
        assert_eq!((web.action, web.reason), (Action::Deploy, Reason::Interrupted));
    }

    #[test]
    fn requested_stacks_deploy_even_when_manual_or_unchanged() {
        let p = project();
        let mut history = HashMap::new();
        history.insert("web".to_string(), success("h-web"));
        let req = vec!["boot".to_string(), "web".to_string()];
        let plan = build(
            &p,
            &Inputs {
                commit: "c1",
                hashes: &hashes(),
                history: &history,
                touched: &BTreeMap::new(),
                requested: Some(&req),
                gone: &[],
            },
        );
        let deploy: Vec<_> = plan.to_deploy().map(|s| s.stack.as_str()).collect();
        assert_eq!(deploy, ["boot", "web"]);
    }
}
