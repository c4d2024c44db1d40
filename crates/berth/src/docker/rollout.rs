//! The command lines of a start-first rollout: scaling a service up beside its old containers
//! without recreating them, and draining (network disconnect, stop, remove) the old ones; for a
//! swarm stack, the compose file that asks swarm itself to start new tasks first.

use std::process::Command;

use super::Engine;

/// The `compose up` arguments that create (not start) `total - old` new containers of `service`
/// beside the old ones: `--no-recreate` keeps the old containers as they are, and the scale-up
/// creates the new ones from the current model (the plugin 2.x and docker-compose 1.29 alike);
/// `--no-deps` leaves every other service alone. They start once hidden from the service's name.
pub fn scale_up_args(service: &str, total: usize) -> Vec<String> {
    ["up", "--no-deps", "--no-recreate", "--no-start", "--scale"]
        .into_iter()
        .map(str::to_string)
        .chain([format!("{service}={total}"), service.to_string()])
        .collect()
}

/// How many containers `service` declares in the output of `compose config` (`scale`, else
/// `deploy.replicas`, else 1).
pub fn declared_scale(config_yaml: &str, service: &str) -> usize {
    let Ok(doc) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(config_yaml) else { return 1 };
    let Some(svc) = doc.get("services").and_then(|s| s.get(service)) else { return 1 };
    let n = |v: Option<&serde_yaml_ng::Value>| {
        v.and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
    };
    n(svc.get("scale")).or_else(|| n(svc.get("deploy").and_then(|d| d.get("replicas")))).map_or(1, |n| n as usize)
}

/// For a swarm stack: a compose file to pass after the stack's own (`docker stack deploy -c ... -c
/// it`) that sets `deploy.update_config.order: start-first` on each service of the rendered model
/// `config_yaml` (`docker stack config`) that `start_first` names, unless the service sets its own
/// order. `None`: no service needs it.
pub fn swarm_order_override(config_yaml: &str, start_first: impl Fn(&str) -> bool) -> Result<Option<String>, String> {
    use serde_yaml_ng::{Mapping, Value};
    let doc: Value = serde_yaml_ng::from_str(config_yaml).map_err(|e| format!("cannot read the stack's model: {e}"))?;
    let Some(services) = doc.get("services").and_then(Value::as_mapping) else { return Ok(None) };
    let mut out = Mapping::new();
    for (name, svc) in services {
        let Some(n) = name.as_str() else { continue };
        let own = svc.get("deploy").and_then(|d| d.get("update_config")).and_then(|u| u.get("order"));
        if !start_first(n) || own.is_some() {
            continue;
        }
        let order: Value = serde_yaml_ng::from_str("deploy:\n  update_config:\n    order: start-first\n")
            .map_err(|e| e.to_string())?;
        out.insert(name.clone(), order);
    }
    if out.is_empty() {
        return Ok(None);
    }
    let mut file = Mapping::new();
    // Older docker CLIs want every file of a stack to name a version; `order` needs 3.4 or later.
    if let Some(v) = doc.get("version") {
        file.insert("version".into(), v.clone());
    }
    file.insert("services".into(), Value::Mapping(out));
    serde_yaml_ng::to_string(&file).map(Some).map_err(|e| e.to_string())
}

impl Engine {
    /// `docker network disconnect NETWORK ID`: Docker's DNS stops answering with the container, and
    /// proxies reading the engine stop routing to it.
    pub fn network_disconnect(&self, network: &str, id: &str) -> Command {
        let mut c = self.docker();
        c.args(["network", "disconnect", network, id]);
        c
    }

    /// `docker network connect [--alias A]... NETWORK ID`.
    pub fn network_connect(&self, network: &str, id: &str, aliases: &[String]) -> Command {
        let mut c = self.docker();
        c.args(["network", "connect"]);
        for a in aliases {
            c.arg("--alias").arg(a);
        }
        c.args([network, id]);
        c
    }

    /// `docker start ID`.
    pub fn start_container(&self, id: &str) -> Command {
        let mut c = self.docker();
        c.args(["start", id]);
        c
    }

    /// `docker stop ID`: the container's own stop signal and grace period (compose sets both).
    pub fn stop_container(&self, id: &str) -> Command {
        let mut c = self.docker();
        c.args(["stop", id]);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_one_service_without_recreating_or_touching_others() {
        assert_eq!(
            scale_up_args("web", 3),
            ["up", "--no-deps", "--no-recreate", "--no-start", "--scale", "web=3", "web"]
        );
        let e = Engine {
            host: None,
            tls: None,
            docker_config: None,
            compose: crate::docker::Compose::Plugin { version: "2".into(), path: None },
        };
        let c = e.network_connect("p_default", "abc", &["web".into(), "p-web-2".into()]);
        let args: Vec<_> = c.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["network", "connect", "--alias", "web", "--alias", "p-web-2", "p_default", "abc"]);
    }

    #[test]
    fn swarm_services_start_first_unless_they_set_their_own_order() {
        let cfg = "version: \"3.8\"\nservices:\n  a:\n    image: x\n  b:\n    image: x\n    deploy:\n      \
                   update_config:\n        order: stop-first\n  c:\n    image: x\n";
        let out = swarm_order_override(cfg, |s| s != "c").unwrap().unwrap();
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&out).unwrap();
        assert_eq!(v["version"].as_str(), Some("3.8"));
        assert_eq!(v["services"]["a"]["deploy"]["update_config"]["order"].as_str(), Some("start-first"));
        assert!(v["services"].get("b").is_none() && v["services"].get("c").is_none(), "{out}");
        assert_eq!(swarm_order_override(cfg, |s| s == "b").unwrap(), None);
        assert!(swarm_order_override("services: [", |_| true).is_err());
    }

    #[test]
    fn reads_the_declared_scale() {
        let cfg = "services:\n  a:\n    image: x\n    scale: 3\n  b:\n    image: x\n    deploy:\n      replicas: 2\n  c:\n    image: x\n";
        assert_eq!([declared_scale(cfg, "a"), declared_scale(cfg, "b"), declared_scale(cfg, "c")], [3, 2, 1]);
        assert_eq!(declared_scale("not: [yaml", "a"), 1);
    }
}
