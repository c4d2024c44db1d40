//! Compose options that Swarm ignores or rejects, for `berth validate` warnings.

/// Service keys `docker stack deploy` ignores or refuses, and why.
const SWARM_UNSUPPORTED: [(&str, &str); 14] = [
    ("build", "swarm cannot build images; push an image and reference it"),
    ("container_name", "swarm names task containers itself"),
    ("network_mode", "swarm services cannot use network_mode (host networking needs an external `host` network)"),
    ("privileged", "swarm does not run privileged containers"),
    ("links", "swarm ignores links; services find each other by name on a shared network"),
    ("external_links", "swarm ignores external_links"),
    ("depends_on", "swarm ignores depends_on: order with `after` or make the service tolerate startup order"),
    ("restart", "swarm ignores restart; use deploy.restart_policy"),
    ("devices", "swarm does not pass devices to services"),
    ("cgroup_parent", "swarm ignores cgroup_parent"),
    ("userns_mode", "swarm ignores userns_mode"),
    ("security_opt", "swarm ignores security_opt"),
    ("pid", "swarm ignores pid"),
    ("ipc", "swarm ignores ipc"),
];

/// Warnings for a compose file that a swarm-mode stack would deploy, `file` naming it.
pub fn swarm_warnings(file: &str, compose_yaml: &str) -> Vec<String> {
    let Ok(doc) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(compose_yaml) else { return Vec::new() };
    let Some(services) = doc.get("services").and_then(|s| s.as_mapping()) else { return Vec::new() };
    let mut out = Vec::new();
    for (name, svc) in services {
        let name = name.as_str().unwrap_or("?");
        for (key, why) in SWARM_UNSUPPORTED {
            if svc.get(key).is_some() {
                out.push(format!("{file}: service `{name}` uses `{key}`: {why}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_options_swarm_does_not_honour() {
        let yaml =
            "services:\n  web:\n    image: x\n    container_name: web\n    network_mode: host\n  ok:\n    image: y\n";
        let w = swarm_warnings("stacks/web/compose.yaml", yaml);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("`web` uses `container_name`"));
        assert!(swarm_warnings("f", "services:\n  a:\n    image: y\n").is_empty());
    }
}
