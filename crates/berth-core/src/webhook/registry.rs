//! Registry notifications (Distribution's envelope, `application/vnd.docker.distribution.events.v1+json`):
//! which repositories got a tag pushed.

use serde::Deserialize;

/// A tag pushed to a repository of a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryPush {
    /// The registry's host as clients reached it (`request.host`), when given.
    pub host: Option<String>,
    pub repository: String,
    pub tag: String,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    events: Vec<Event>,
}

#[derive(Deserialize)]
struct Event {
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: Target,
    #[serde(default)]
    request: Request,
}

#[derive(Deserialize, Default)]
struct Target {
    #[serde(default)]
    repository: String,
    tag: Option<String>,
}

#[derive(Deserialize, Default)]
struct Request {
    host: Option<String>,
}

/// The tag pushes in a notification; pulls, deletes and pushes of blobs or untagged manifests are left out.
pub fn parse_registry(body: &[u8]) -> Result<Vec<RegistryPush>, String> {
    let env: Envelope = serde_json::from_slice(body).map_err(|e| format!("not a registry notification: {e}"))?;
    Ok(env
        .events
        .into_iter()
        .filter(|e| e.action == "push" && !e.target.repository.is_empty())
        .filter_map(|e| {
            let tag = e.target.tag.filter(|t| !t.is_empty())?;
            Some(RegistryPush { host: e.request.host, repository: e.target.repository, tag })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tag_pushes_and_skips_the_rest() {
        let body = br#"{"events":[
            {"id":"1","action":"push","target":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","repository":"me/app","tag":"1.4.0","digest":"sha256:ab"},"request":{"host":"registry.lan:5000"}},
            {"id":"2","action":"push","target":{"mediaType":"application/octet-stream","repository":"me/app","digest":"sha256:cd"}},
            {"id":"3","action":"pull","target":{"repository":"me/app","tag":"1.4.0"}}
        ]}"#;
        assert_eq!(
            parse_registry(body).unwrap(),
            vec![RegistryPush {
                host: Some("registry.lan:5000".into()),
                repository: "me/app".into(),
                tag: "1.4.0".into()
            }]
        );
        assert!(parse_registry(b"<html>").is_err());
        assert_eq!(parse_registry(b"{}").unwrap(), vec![]);
    }
}
