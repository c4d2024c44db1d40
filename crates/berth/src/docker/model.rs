//! Compose's rendered model of a project: `config --format json` (the plugin) or `config` (1.x YAML).

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_json_and_yaml_models() {
        let json = parse_model(r#"{"name":"a","services":{"web":{"image":"x:1"}}}"#).unwrap();
        let yaml = parse_model("services:\n  web:\n    image: x:1\n").unwrap();
        assert_eq!(json["services"], yaml["services"]);
        assert!(parse_model("services: [").is_err());
    }
}
