//! Convergence: watching a compose project through the Docker Engine API until
//! it really runs the new version, or proving that it does not.
//!
//! Order matters: first every service's containers must run the image resolved
//! at deploy time and share one compose config hash (no container of the old
//! configuration left); only then are they judged on being up, healthy and not
//! restarting, and the state must hold for a stable window. One-shot services
//! are judged by exiting 0.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptions};
use serde::Serialize;

use crate::docker::ServiceSpec;

const PROJECT: &str = "com.docker.compose.project";
const SERVICE: &str = "com.docker.compose.service";
const ONEOFF: &str = "com.docker.compose.oneoff";
const CONFIG_HASH: &str = "com.docker.compose.config-hash";
const POLL: Duration = Duration::from_millis(500);

/// What was checked, for the record.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    pub ok: bool,
    /// One line on the outcome.
    pub summary: String,
    pub containers: Vec<ContainerState>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContainerState {
    pub service: String,
    pub id: String,
    pub image_ok: bool,
    pub state: String,
    pub health: Option<String>,
    pub restarts: i64,
}

/// Connect to the engine at `host` (`None`: `DOCKER_HOST` or the local socket).
pub async fn connect(host: Option<&str>) -> Result<Docker, String> {
    let d = match host {
        None => Docker::connect_with_defaults(),
        Some(h) if h.starts_with("ssh://") => {
            return Err(format!("verification through {h} is not supported yet (use unix:// or tcp://)"));
        }
        Some(h) => Docker::connect_with_host(h),
    }
    .map_err(|e| format!("cannot connect to the Docker engine: {e}"))?;
    d.negotiate_version().await.map_err(|e| format!("the Docker engine does not answer: {e}"))
}

/// Image id of each service's image, resolved now (right after `up`).
pub async fn expected_images(docker: &Docker, services: &[ServiceSpec]) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for s in services {
        if let Some(image) = &s.image {
            let i = docker.inspect_image(image).await.map_err(|e| format!("cannot inspect image {image}: {e}"))?;
            if let Some(id) = i.id {
                out.insert(s.name.clone(), id);
            }
        }
    }
    Ok(out)
}

/// Wait until `project` converged or `timeout` passes.
pub async fn converge(
    docker: &Docker,
    project: &str,
    services: &[ServiceSpec],
    ignore: &[String],
    expected: &HashMap<String, String>,
    timeout: Duration,
    stable: Duration,
) -> Report {
    let deadline = Instant::now() + timeout;
    let mut baseline: HashMap<String, i64> = HashMap::new();
    let mut good_since: Option<Instant> = None;
    loop {
        let verdict = observe(docker, project, services, ignore, expected, &mut baseline).await;
        match verdict {
            Verdict::Failed(report) => return report,
            Verdict::Good(report) => {
                let since = *good_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= stable {
                    return Report {
                        ok: true,
                        summary: format!("converged and stable for {}s", stable.as_secs()),
                        ..report
                    };
                }
            }
            Verdict::Waiting(report) => {
                good_since = None;
                if Instant::now() >= deadline {
                    return Report {
                        ok: false,
                        summary: format!("did not converge within {}s: {}", timeout.as_secs(), report.summary),
                        ..report
                    };
                }
            }
        }
        if Instant::now() >= deadline && good_since.is_some() {
            // Converged late in the window: give the stable period its due once.
            tokio::time::sleep(stable).await;
            let last = observe(docker, project, services, ignore, expected, &mut baseline).await;
            return match last {
                Verdict::Good(r) => Report { ok: true, summary: "converged".into(), ..r },
                Verdict::Failed(r) | Verdict::Waiting(r) => Report { ok: false, ..r },
            };
        }
        tokio::time::sleep(POLL).await;
    }
}

enum Verdict {
    Good(Report),
    Waiting(Report),
    Failed(Report),
}

async fn observe(
    docker: &Docker,
    project: &str,
    services: &[ServiceSpec],
    ignore: &[String],
    expected: &HashMap<String, String>,
    baseline: &mut HashMap<String, i64>,
) -> Verdict {
    let mut filters = HashMap::new();
    filters.insert("label".to_string(), vec![format!("{PROJECT}={project}")]);
    let opts = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
    let list = match docker.list_containers(Some(opts)).await {
        Ok(l) => l,
        Err(e) => {
            return Verdict::Waiting(Report { summary: format!("cannot list containers: {e}"), ..Default::default() });
        }
    };
    let mut report = Report::default();
    let mut waiting: Option<String> = None;
    for svc in services {
        let one_shot = svc.one_shot || ignore.contains(&svc.name);
        let mine: Vec<_> = list
            .iter()
            .filter(|c| {
                let l = c.labels.as_ref();
                l.and_then(|l| l.get(SERVICE)) == Some(&svc.name)
                    && l.and_then(|l| l.get(ONEOFF)).map(String::as_str) != Some("True")
            })
            .collect();
        if mine.is_empty() {
            waiting.get_or_insert(format!("service `{}` has no container yet", svc.name));
            continue;
        }
        // Identity first: the new image, one configuration.
        let hashes: std::collections::HashSet<_> =
            mine.iter().filter_map(|c| c.labels.as_ref().and_then(|l| l.get(CONFIG_HASH))).collect();
        if hashes.len() > 1 {
            waiting.get_or_insert(format!("service `{}` still has containers of an older configuration", svc.name));
        }
        for c in mine {
            let id = c.id.clone().unwrap_or_default();
            let image_ok = expected.get(&svc.name).is_none_or(|want| c.image_id.as_deref() == Some(want.as_str()));
            let inspect = match docker.inspect_container(&id, None::<InspectContainerOptions>).await {
                Ok(i) => i,
                Err(e) => {
                    waiting.get_or_insert(format!("cannot inspect {}: {e}", short(&id)));
                    continue;
                }
            };
            let restarts = inspect.restart_count.unwrap_or(0);
            let st = inspect.state.unwrap_or_default();
            let state = st.status.map(|s| s.to_string()).unwrap_or_default();
            let health =
                st.health.and_then(|h| h.status).map(|h| h.to_string()).filter(|h| !h.is_empty() && h != "none");
            report.containers.push(ContainerState {
                service: svc.name.clone(),
                id: short(&id).to_string(),
                image_ok,
                state: state.clone(),
                health: health.clone(),
                restarts,
            });
            if !image_ok {
                waiting.get_or_insert(format!(
                    "service `{}` container {} still runs the previous image",
                    svc.name,
                    short(&id)
                ));
                continue;
            }
            let base = *baseline.entry(id.clone()).or_insert(restarts);
            let fail = |why: String| Verdict::Failed(Report { ok: false, summary: why, containers: Vec::new() });
            if restarts > base {
                return with(
                    fail(format!("service `{}` restarted {} time(s) during verification", svc.name, restarts - base)),
                    &report,
                );
            }
            let exit = st.exit_code.unwrap_or(0);
            match state.as_str() {
                "running" if one_shot => {
                    waiting.get_or_insert(format!("one-shot service `{}` is still running", svc.name))
                }
                "running" => match health.as_deref() {
                    Some("healthy") | None => continue,
                    Some("unhealthy") => {
                        return with(fail(format!("service `{}` is unhealthy", svc.name)), &report);
                    }
                    Some(other) => waiting.get_or_insert(format!("service `{}` health is {other}", svc.name)),
                },
                "exited" if one_shot && exit == 0 => continue,
                "exited" | "dead" => {
                    return with(fail(format!("service `{}` exited with code {exit}", svc.name)), &report);
                }
                "restarting" => {
                    return with(fail(format!("service `{}` is restarting (exit code {exit})", svc.name)), &report);
                }
                other => waiting.get_or_insert(format!("service `{}` is {other}", svc.name)),
            };
        }
    }
    match waiting {
        Some(w) => Verdict::Waiting(Report { summary: w, ..report }),
        None => Verdict::Good(Report { ok: true, summary: "converged".into(), ..report }),
    }
}

fn with(v: Verdict, seen: &Report) -> Verdict {
    match v {
        Verdict::Failed(r) => Verdict::Failed(Report { containers: seen.containers.clone(), ..r }),
        other => other,
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
