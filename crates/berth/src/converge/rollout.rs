//! What a start-first rollout reads from the engine: one service's containers (old ones to drain),
//! and whether the new ones became ready (healthy, else running for the stable window).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use berth_core::verify;
use bollard::Docker;
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptions};

use super::{CONFIG_HASH, ContainerState, ONEOFF, PROJECT, Report, SERVICE, Started, Verdict, diagnose, short, window};

/// A container of a service, as a rollout needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    /// The image id it runs.
    pub image: String,
    /// Compose's config-hash label.
    pub config_hash: String,
    /// The networks it is attached to (by name).
    pub networks: Vec<String>,
}

/// Every container (running or not, one-offs excluded) of `service` in compose project `project`.
pub async fn members(docker: &Docker, project: &str, service: &str) -> Result<Vec<Member>, String> {
    let mut filters = HashMap::new();
    filters.insert("label".to_string(), vec![format!("{PROJECT}={project}"), format!("{SERVICE}={service}")]);
    let opts = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
    let list = docker.list_containers(Some(opts)).await.map_err(|e| format!("cannot list containers: {e}"))?;
    let mut out: Vec<Member> = list
        .into_iter()
        .filter(|c| c.labels.as_ref().and_then(|l| l.get(ONEOFF)).map(String::as_str) != Some("True"))
        .map(|c| {
            let label = |k: &str| c.labels.as_ref().and_then(|l| l.get(k)).cloned().unwrap_or_default();
            let mut networks: Vec<String> = c
                .network_settings
                .as_ref()
                .and_then(|n| n.networks.as_ref())
                .map(|n| n.keys().cloned().collect())
                .unwrap_or_default();
            networks.sort();
            Member {
                id: c.id.clone().unwrap_or_default(),
                image: c.image_id.clone().unwrap_or_default(),
                config_hash: label(CONFIG_HASH),
                networks,
            }
        })
        .filter(|m| !m.id.is_empty())
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// The networks container `id` is attached to, each with its aliases (the short id Docker adds itself
/// left out), sorted by network.
pub async fn networks(docker: &Docker, id: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let i = docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .map_err(|e| format!("cannot inspect {}: {e}", short(id)))?;
    let nets = i.network_settings.and_then(|n| n.networks).unwrap_or_default();
    let mut out: Vec<(String, Vec<String>)> = nets
        .into_iter()
        .map(|(n, e)| {
            let aliases = e.aliases.unwrap_or_default().into_iter().filter(|a| !id.starts_with(a.as_str())).collect();
            (n, aliases)
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Wait until every container of `ids` (new containers of `service`) is healthy, or runs without a
/// health check for `stable`; fail as soon as one exits, restarts or turns unhealthy, or when
/// `timeout` passes first.
pub async fn ready(docker: &Docker, service: &str, ids: &[String], timeout: Duration, stable: Duration) -> Report {
    let mut first: HashMap<String, (i64, String, Instant)> = HashMap::new();
    window(timeout, stable, async || look(docker, service, ids, stable, &mut first).await).await
}

async fn look(
    docker: &Docker,
    service: &str,
    ids: &[String],
    stable: Duration,
    first: &mut HashMap<String, (i64, String, Instant)>,
) -> Verdict {
    let mut report = Report::default();
    let mut waiting = None;
    let mut seen = Vec::new();
    for id in ids {
        let inspect = match docker.inspect_container(id, None::<InspectContainerOptions>).await {
            Ok(i) => i,
            Err(e) => {
                let why = format!("new container {} of `{service}` is gone: {e}", short(id));
                return Verdict::Failed(Report { ok: false, summary: why, containers: report.containers });
            }
        };
        let restarts = inspect.restart_count.unwrap_or(0);
        let st = inspect.state.unwrap_or_default();
        let state = st.status.map(|s| s.to_string()).unwrap_or_default();
        let health =
            st.health.as_ref().and_then(|h| h.status).map(|h| h.to_string()).filter(|h| !h.is_empty() && h != "none");
        let started_at = st.started_at.clone().unwrap_or_default();
        let (restarts0, started0, since) =
            first.entry(id.clone()).or_insert_with(|| (restarts, started_at.clone(), Instant::now())).clone();
        let restarted =
            restarts > restarts0 || (started_at != started0 && verify::parse_timestamp(&started0).is_some());
        if started_at != started0 && !restarted {
            // First seen before it started (`created`): its window starts now.
            first.insert(id.clone(), (restarts, started_at.clone(), Instant::now()));
        }
        let failing = restarted
            || matches!(state.as_str(), "exited" | "dead" | "restarting")
            || health.as_deref() == Some("unhealthy");
        report.containers.push(ContainerState {
            service: service.to_string(),
            id: short(id).to_string(),
            image_ok: true,
            state: state.clone(),
            health: health.clone(),
            restarts,
            image: inspect.image.clone().unwrap_or_default(),
            config_hash: String::new(),
            diagnosis: None,
        });
        if failing {
            if let Some(last) = report.containers.last_mut() {
                last.diagnosis = Some(diagnose(docker, id, &st).await);
            }
            let why = match (state.as_str(), health.as_deref()) {
                _ if restarted => format!("new container {} of `{service}` restarted", short(id)),
                ("running", Some("unhealthy")) => format!("new container {} of `{service}` is unhealthy", short(id)),
                (s, _) => format!(
                    "new container {} of `{service}` is {s} (exit code {})",
                    short(id),
                    st.exit_code.unwrap_or(0)
                ),
            };
            return Verdict::Failed(Report { ok: false, summary: why, containers: report.containers });
        }
        match (state.as_str(), health.as_deref()) {
            ("running", Some("healthy")) => seen.push(Started::Healthy.seen(None)),
            ("running", None) => {
                let started_at = verify::parse_timestamp(&started_at);
                seen.push(Started::Running { started_at, first_seen: since }.seen(None));
            }
            (s, h) => {
                waiting.get_or_insert(format!(
                    "new container {} of `{service}` is {s}{}",
                    short(id),
                    h.map(|h| format!(" ({h})")).unwrap_or_default()
                ));
            }
        }
    }
    match waiting {
        Some(w) => Verdict::Waiting(Report { ok: false, summary: w, containers: report.containers }),
        None => {
            let left = verify::stable_left(&seen, stable);
            Verdict::Good(Report { ok: true, summary: "ready".into(), ..report }, left)
        }
    }
}
