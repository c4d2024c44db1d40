//! Compose's rendered model of a project: `config --format json` (the plugin) or `config` (1.x
//! YAML), and what berth reads from it: services, one-shots, bind-mount sources, config hashes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use super::{Compose, Engine, ProjectRef};

impl Engine {
    /// The command printing the project's model after interpolation, as this engine's compose renders it.
    pub fn compose_model(&self, project: &ProjectRef<'_>) -> std::process::Command {
        match self.compose {
            Compose::Plugin { .. } => self.compose(project, &["config", "--format", "json"]),
            Compose::Standalone { .. } => self.compose(project, &["config"]),
        }
    }
}

/// The output of [`Engine::compose_model`] as JSON (YAML is a superset of JSON, so one parser reads both).
pub fn parse_model(out: &str) -> Result<Value, String> {
    serde_yaml_ng::from_str::<Value>(out).map_err(|e| format!("cannot read the compose model: {e}"))
}

/// A service as `compose config` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: String,
    pub image: Option<String>,
    /// `restart: "no"`: an init or migration job, judged by exiting 0.
    pub one_shot: bool,
}

/// Services of the output of `compose config`.
pub fn services(config_yaml: &str) -> Result<Vec<ServiceSpec>, String> {
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(config_yaml).map_err(|e| format!("cannot read compose config: {e}"))?;
    let mut out = Vec::new();
    if let Some(services) = doc.get("services").and_then(|s| s.as_mapping()) {
        for (name, svc) in services {
            let Some(name) = name.as_str() else { continue };
            let restart = svc.get("restart").and_then(|r| r.as_str());
            out.push(ServiceSpec {
                name: name.to_string(),
                image: svc.get("image").and_then(|i| i.as_str()).map(str::to_string),
                one_shot: restart == Some("no"),
            });
        }
    }
    Ok(out)
}

/// The `service hash` lines of `compose config --hash '*'` (the plugin and docker-compose 1.29 alike).
pub fn config_hashes(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.trim().split_once(' '))
        .filter(|(_, h)| !h.trim().is_empty() && h.trim().bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|(s, h)| (s.to_string(), h.trim().to_string()))
        .collect()
}

/// Bind-mount sources per service in the output of `compose config`
/// (long syntax from Compose v2, `src:dst[:mode]` short syntax from v1).
pub fn bind_sources(config_yaml: &str) -> Result<Vec<(String, PathBuf)>, String> {
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(config_yaml).map_err(|e| format!("cannot read compose config: {e}"))?;
    let mut out = Vec::new();
    let Some(services) = doc.get("services").and_then(|s| s.as_mapping()) else { return Ok(out) };
    for (name, svc) in services {
        let Some(name) = name.as_str() else { continue };
        let Some(vols) = svc.get("volumes").and_then(|v| v.as_sequence()) else { continue };
        for v in vols {
            let source = match v {
                serde_yaml_ng::Value::String(s) => {
                    let src = s.split(':').next().unwrap_or("");
                    src.starts_with('/').then(|| src.to_string())
                }
                serde_yaml_ng::Value::Mapping(_) => {
                    let is_bind = v.get("type").and_then(|t| t.as_str()) == Some("bind");
                    v.get("source").and_then(|s| s.as_str()).filter(|_| is_bind).map(str::to_string)
                }
                _ => None,
            };
            if let Some(src) = source {
                out.push((name.to_string(), PathBuf::from(src)));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_services_and_one_shots() {
        let cfg =
            "services:\n  web:\n    image: x:1\n  init:\n    image: y\n    restart: 'no'\n  built:\n    build: .\n";
        let s = services(cfg).unwrap();
        assert_eq!(s.len(), 3);
        assert!(s.iter().any(|x| x.name == "init" && x.one_shot));
        assert!(s.iter().any(|x| x.name == "web" && !x.one_shot && x.image.as_deref() == Some("x:1")));
        assert!(s.iter().any(|x| x.name == "built" && x.image.is_none()));
    }

    /// `config` of one project as the plugin prints it (YAML and `--format json`) and as
    /// docker-compose 1.29 does: the same services, one-shots and bind sources from each.
    #[test]
    fn reads_the_config_output_of_every_implementation_alike() {
        let v2_yaml = "name: p\nservices:\n  init:\n    image: \"y\"\n    networks:\n      default: null\n    restart: \"no\"\n  web:\n    image: x:1\n    volumes:\n      - type: bind\n        source: /srv/p/site.conf\n        target: /etc/site.conf\n        read_only: true\n        bind:\n          create_host_path: true\n      - type: volume\n        source: data\n        target: /data\n        volume: {}\nvolumes:\n  data:\n    name: p_data\n";
        let v2_json = r#"{"name": "p", "services": {"init": {"command": null, "entrypoint": null, "image": "y",
            "networks": {"default": null}, "restart": "no"}, "web": {"command": null, "entrypoint": null,
            "image": "x:1", "volumes": [{"type": "bind", "source": "/srv/p/site.conf", "target": "/etc/site.conf",
            "read_only": true, "bind": {"create_host_path": true}}, {"type": "volume", "source": "data",
            "target": "/data", "volume": {}}]}}, "volumes": {"data": {"name": "p_data"}}}"#;
        let v1 = "services:\n  init:\n    image: \"y\"\n    restart: \"no\"\n  web:\n    image: x:1\n    volumes:\n    - /srv/p/site.conf:/etc/site.conf:ro\n    - data:/data:rw\nversion: '3.9'\nvolumes:\n  data: {}\n";
        for cfg in [v2_yaml, v2_json, v1] {
            let s = services(cfg).unwrap();
            assert_eq!(s.len(), 2, "{cfg}");
            assert!(s.iter().any(|x| x.name == "init" && x.one_shot && x.image.as_deref() == Some("y")), "{cfg}");
            assert!(s.iter().any(|x| x.name == "web" && !x.one_shot && x.image.as_deref() == Some("x:1")), "{cfg}");
            assert_eq!(bind_sources(cfg).unwrap(), [("web".to_string(), PathBuf::from("/srv/p/site.conf"))], "{cfg}");
        }
    }

    #[test]
    fn finds_bind_mounts_in_both_syntaxes() {
        let v2 = r#"
services:
  web:
    image: x
    volumes:
      - type: bind
        source: /w/stacks/app/nginx.conf
        target: /etc/nginx.conf
      - type: volume
        source: data
        target: /data
  db:
    image: y
"#;
        assert_eq!(bind_sources(v2).unwrap(), vec![("web".to_string(), PathBuf::from("/w/stacks/app/nginx.conf"))]);
        let v1 = "services:\n  web:\n    volumes:\n    - /w/conf:/etc/conf:ro\n    - data:/data:rw\n";
        assert_eq!(bind_sources(v1).unwrap(), vec![("web".to_string(), PathBuf::from("/w/conf"))]);
    }

    #[test]
    fn reads_json_and_yaml_models() {
        let json = parse_model(r#"{"name":"a","services":{"web":{"image":"x:1"}}}"#).unwrap();
        let yaml = parse_model("services:\n  web:\n    image: x:1\n").unwrap();
        assert_eq!(json["services"], yaml["services"]);
        assert!(parse_model("services: [").is_err());
    }
}
