//! What a compose project runs now, and how it differs from what a successful deploy left running.

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::ListContainersOptions;

use super::{CONFIG_HASH, ContainerState, ONEOFF, PROJECT, SERVICE};

/// Every container of compose project `project`, as (id, state), sorted.
pub async fn containers(docker: &Docker, project: &str) -> Result<Vec<(String, String)>, String> {
    let mut filters = HashMap::new();
    filters.insert("label".to_string(), vec![format!("{PROJECT}={project}")]);
    let opts = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
    let list = docker.list_containers(Some(opts)).await.map_err(|e| format!("cannot list containers: {e}"))?;
    let mut out: Vec<_> = list
        .into_iter()
        .map(|c| (c.id.unwrap_or_default(), c.state.map(|s| s.to_string()).unwrap_or_default()))
        .collect();
    out.sort();
    Ok(out)
}

/// What differs between the containers of `project` now and `baseline` (the
/// containers a successful deploy left running): missing, stopped, or running
/// another image or configuration. Empty when nothing drifted.
pub async fn drift(docker: &Docker, project: &str, baseline: &[ContainerState]) -> Result<Vec<String>, String> {
    let mut filters = HashMap::new();
    filters.insert("label".to_string(), vec![format!("{PROJECT}={project}")]);
    let opts = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
    let list = docker.list_containers(Some(opts)).await.map_err(|e| format!("cannot list containers: {e}"))?;
    let mut findings = Vec::new();
    let mut services: Vec<&ContainerState> = Vec::new();
    for b in baseline {
        if !services.iter().any(|s| s.service == b.service) {
            services.push(b);
        }
    }
    for b in services {
        let mine: Vec<_> = list
            .iter()
            .filter(|c| c.labels.as_ref().and_then(|l| l.get(SERVICE)) == Some(&b.service))
            .filter(|c| c.labels.as_ref().and_then(|l| l.get(ONEOFF)).map(String::as_str) != Some("True"))
            .collect();
        if mine.is_empty() {
            findings.push(format!("service `{}` has no container", b.service));
            continue;
        }
        for c in mine {
            let state = c.state.map(|s| s.to_string()).unwrap_or_default();
            if b.state == "running" && state != "running" {
                findings.push(format!("service `{}` is {state}", b.service));
            }
            if !b.image.is_empty() && c.image_id.as_deref() != Some(b.image.as_str()) {
                findings.push(format!("service `{}` runs another image than berth deployed", b.service));
            }
            let hash = c.labels.as_ref().and_then(|l| l.get(CONFIG_HASH)).cloned().unwrap_or_default();
            if !b.config_hash.is_empty() && hash != b.config_hash {
                findings.push(format!("service `{}` runs another configuration than berth deployed", b.service));
            }
        }
    }
    Ok(findings)
}
