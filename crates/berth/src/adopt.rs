//! Adoption: whether the containers of a compose project started without berth run what a commit
//! would run (services, images, compose config hashes), and the verification record that makes
//! them the baseline of drift detection once adopted.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bollard::Docker;
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptions};

use crate::converge::{self, CONFIG_HASH, ContainerState, ONEOFF, PROJECT, SERVICE, WORKING_DIR};
use crate::docker::ServiceSpec;

/// What the commit would run, as compose computes it in berth's work tree of the stack.
pub struct Expected {
    pub services: Vec<ServiceSpec>,
    /// Per service, the hash of `compose config --hash '*'`.
    pub hashes: BTreeMap<String, String>,
    /// Per service with an `image:`, the image id it resolves to on the engine, or why it does not.
    pub images: BTreeMap<String, Result<String, String>>,
    /// The project folder compose ran in.
    pub dir: String,
}

/// A container of the project as it is now.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub service: String,
    pub id: String,
    pub state: String,
    pub exit_code: Option<i64>,
    pub health: Option<String>,
    pub restarts: i64,
    /// The image id it runs, and the name it was created from.
    pub image: String,
    pub image_name: String,
    pub config_hash: String,
    /// The folder compose ran in when it created the container.
    pub working_dir: String,
}

/// Every container (one-off `run` containers aside) of compose project `project`.
pub async fn observe(docker: &Docker, project: &str) -> Result<Vec<Seen>, String> {
    let mut filters = HashMap::new();
    filters.insert("label".to_string(), vec![format!("{PROJECT}={project}")]);
    let opts = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
    let list = docker.list_containers(Some(opts)).await.map_err(|e| format!("cannot list containers: {e}"))?;
    let mut out = Vec::new();
    for c in list {
        let labels = c.labels.unwrap_or_default();
        if labels.get(ONEOFF).map(String::as_str) == Some("True") {
            continue;
        }
        let id = c.id.unwrap_or_default();
        let inspect = docker
            .inspect_container(&id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| format!("cannot inspect container {}: {e}", short(&id)))?;
        let st = inspect.state.unwrap_or_default();
        let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
        out.push(Seen {
            service: label(SERVICE),
            id: short(&id).to_string(),
            state: st.status.map(|s| s.to_string()).unwrap_or_default(),
            exit_code: st.exit_code,
            health: st.health.and_then(|h| h.status).map(|h| h.to_string()).filter(|h| !h.is_empty() && h != "none"),
            restarts: inspect.restart_count.unwrap_or(0),
            image: c.image_id.unwrap_or_default(),
            image_name: c.image.unwrap_or_default(),
            config_hash: label(CONFIG_HASH),
            working_dir: label(WORKING_DIR),
        });
    }
    out.sort_by(|a, b| (&a.service, &a.id).cmp(&(&b.service, &b.id)));
    Ok(out)
}

/// The image id each service's `image:` resolves to on the engine (as a deploy resolves it after `up`).
pub async fn images(docker: &Docker, services: &[ServiceSpec]) -> BTreeMap<String, Result<String, String>> {
    let mut out = BTreeMap::new();
    for s in services.iter().filter(|s| s.image.is_some()) {
        let id = converge::expected_images(docker, std::slice::from_ref(s))
            .await
            .and_then(|m| m.get(&s.name).cloned().ok_or_else(|| "the engine gave no image id".to_string()));
        out.insert(s.name.clone(), id);
    }
    out
}

/// Every difference between what runs and what the commit would run, one line each naming the
/// service and what was expected and found. Empty when the project can be adopted.
pub fn compare(project: &str, expected: &Expected, seen: &[Seen]) -> Vec<String> {
    if seen.is_empty() {
        return vec![format!(
            "no container of compose project `{project}` exists on the engine (adopt looks for the project \
             named like the stack: was it started with `-p {project}`?)"
        )];
    }
    let mut out = Vec::new();
    let declared: BTreeSet<&str> = expected.services.iter().map(|s| s.name.as_str()).collect();
    for svc in &expected.services {
        let mine: Vec<&Seen> = seen.iter().filter(|c| c.service == svc.name).collect();
        if mine.is_empty() {
            out.push(format!("service `{}`: declared at the commit, but no container of it exists", svc.name));
            continue;
        }
        for c in mine {
            out.extend(compare_container(svc, expected, c));
        }
    }
    let mut extra: Vec<&Seen> = seen.iter().filter(|c| !declared.contains(c.service.as_str())).collect();
    extra.dedup_by(|a, b| a.service == b.service);
    for c in extra {
        out.push(format!("service `{}`: runs (container {}), but the commit does not declare it", c.service, c.id));
    }
    out
}

fn compare_container(svc: &ServiceSpec, expected: &Expected, c: &Seen) -> Vec<String> {
    let mut out = Vec::new();
    let name = &svc.name;
    let finished = svc.one_shot && c.state == "exited" && c.exit_code == Some(0);
    if c.state != "running" && !finished {
        out.push(format!(
            "service `{name}`: container {} is {}{}, expected running",
            c.id,
            c.state,
            c.exit_code.filter(|_| c.state == "exited").map(|e| format!(" (exit code {e})")).unwrap_or_default()
        ));
    } else if c.health.as_deref() == Some("unhealthy") {
        out.push(format!("service `{name}`: container {} is unhealthy, expected healthy", c.id));
    }
    match (expected.images.get(name), &svc.image) {
        (Some(Ok(want)), Some(image)) if *want != c.image => out.push(format!(
            "service `{name}`: image differs: the commit names {image} ({}), container {} runs {} ({})",
            short_id(want),
            c.id,
            c.image_name,
            short_id(&c.image)
        )),
        (Some(Err(e)), Some(image)) => {
            out.push(format!("service `{name}`: the commit's image {image} is not on the engine: {e}"))
        }
        _ => {}
    }
    match expected.hashes.get(name) {
        None => out.push(format!("service `{name}`: compose gave no config hash for it at the commit")),
        Some(want) if *want != c.config_hash => {
            let moved = if !c.working_dir.is_empty() && c.working_dir != expected.dir {
                format!(
                    " (it was started from {}, berth runs compose in {}: relative paths such as bind mounts and \
                     build contexts resolve there and are part of the hash)",
                    c.working_dir, expected.dir
                )
            } else {
                String::new()
            };
            out.push(format!(
                "service `{name}`: compose config hash differs: the commit's files and variables give {}, \
                 container {} carries {}{moved}",
                short(want),
                c.id,
                if c.config_hash.is_empty() { "none" } else { short(&c.config_hash) },
            ));
        }
        Some(_) => {}
    }
    out
}

/// The verification record of an adopted project: what runs, as a converged deploy records it
/// (drift detection compares with `converge.containers`).
pub fn verify_record(summary: &str, seen: &[Seen]) -> serde_json::Value {
    let containers: Vec<ContainerState> = seen
        .iter()
        .map(|c| ContainerState {
            service: c.service.clone(),
            id: c.id.clone(),
            image_ok: true,
            state: c.state.clone(),
            health: c.health.clone(),
            restarts: c.restarts,
            image: c.image.clone(),
            config_hash: c.config_hash.clone(),
            diagnosis: None,
        })
        .collect();
    let report = converge::Report { ok: true, summary: summary.to_string(), containers };
    serde_json::json!({
        "converge": serde_json::to_value(&report).unwrap_or_default(),
        "http": [],
    })
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn short_id(id: &str) -> &str {
    short(id.strip_prefix("sha256:").unwrap_or(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, image: Option<&str>, one_shot: bool) -> ServiceSpec {
        ServiceSpec { name: name.into(), image: image.map(str::to_string), one_shot }
    }

    fn expected() -> Expected {
        Expected {
            services: vec![spec("web", Some("nginx:1"), false), spec("init", Some("busybox"), true)],
            hashes: [("web".to_string(), "aaaa".to_string()), ("init".to_string(), "bbbb".to_string())].into(),
            images: [
                ("web".to_string(), Ok("sha256:1111".to_string())),
                ("init".to_string(), Ok("sha256:2222".into())),
            ]
            .into(),
            dir: "/state/work/app/stacks/app".into(),
        }
    }

    fn seen(service: &str, image: &str, hash: &str) -> Seen {
        Seen {
            service: service.into(),
            id: format!("{service}-id"),
            state: "running".into(),
            image: image.into(),
            image_name: "x".into(),
            config_hash: hash.into(),
            working_dir: "/state/work/app/stacks/app".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_project_that_runs_the_commit_matches() {
        let init = Seen { state: "exited".into(), exit_code: Some(0), ..seen("init", "sha256:2222", "bbbb") };
        let all = [seen("web", "sha256:1111", "aaaa"), init];
        assert_eq!(compare("app", &expected(), &all), Vec::<String>::new());
        let v = verify_record("adopted", &all);
        assert_eq!(v["converge"]["ok"], true);
        assert_eq!(v["converge"]["containers"][0]["config_hash"], "aaaa");
        assert_eq!(v["converge"]["containers"][0]["image"], "sha256:1111");
    }

    #[test]
    fn each_mismatch_names_the_service_and_both_sides() {
        let mut other = seen("web", "sha256:9999", "cccc");
        other.working_dir = "/home/me/stacks/app".into();
        let all = [other, seen("cache", "sha256:3", "d")];
        let m = compare("app", &expected(), &all);
        assert_eq!(m.len(), 4, "{m:#?}");
        assert!(m[0].starts_with("service `web`: image differs: the commit names nginx:1 (1111)"), "{}", m[0]);
        assert!(m[0].contains("runs x (9999)"), "{}", m[0]);
        assert!(m[1].starts_with("service `web`: compose config hash differs"), "{}", m[1]);
        assert!(m[1].contains("give aaaa, container web-id carries cccc"), "{}", m[1]);
        assert!(m[1].contains("started from /home/me/stacks/app"), "{}", m[1]);
        assert_eq!(m[2], "service `init`: declared at the commit, but no container of it exists");
        assert_eq!(m[3], "service `cache`: runs (container cache-id), but the commit does not declare it");
    }

    #[test]
    fn stopped_services_and_absent_projects_are_not_adopted() {
        let stopped = Seen { state: "exited".into(), exit_code: Some(137), ..seen("web", "sha256:1111", "aaaa") };
        let init = Seen { state: "exited".into(), exit_code: Some(1), ..seen("init", "sha256:2222", "bbbb") };
        let m = compare("app", &expected(), &[stopped, init]);
        assert_eq!(
            m,
            [
                "service `web`: container web-id is exited (exit code 137), expected running",
                "service `init`: container init-id is exited (exit code 1), expected running",
            ]
        );
        assert!(compare("app", &expected(), &[])[0].contains("no container of compose project `app`"));
    }
}
