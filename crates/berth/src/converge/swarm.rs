//! Convergence of a swarm stack: every service updated and running its desired tasks of the new spec.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;

use super::{ContainerState, Report, Verdict, window};
use crate::docker::ServiceSpec;

/// Wait until every service of swarm stack `stack` finished its update and runs
/// the desired number of tasks on its image, or fail on paused or rolled-back
/// updates and tasks that keep failing.
pub async fn converge_swarm(
    docker: &Docker,
    stack: &str,
    services: &[ServiceSpec],
    ignore: &[String],
    timeout: Duration,
    stable: Duration,
) -> Report {
    let mut baseline: HashMap<String, usize> = HashMap::new();
    window(timeout, stable, async || observe_swarm(docker, stack, services, ignore, &mut baseline).await).await
}

async fn observe_swarm(
    docker: &Docker,
    stack: &str,
    services: &[ServiceSpec],
    ignore: &[String],
    baseline: &mut HashMap<String, usize>,
) -> Verdict {
    use bollard::query_parameters::{ListServicesOptions, ListTasksOptions};
    let mut filters = HashMap::new();
    filters.insert("label".to_string(), vec![format!("com.docker.stack.namespace={stack}")]);
    let list = match docker
        .list_services(Some(ListServicesOptions { filters: Some(filters), ..Default::default() }))
        .await
    {
        Ok(l) => l,
        Err(e) => {
            return Verdict::Waiting(Report { summary: format!("cannot list services: {e}"), ..Default::default() });
        }
    };
    let mut report = Report::default();
    let mut waiting = None;
    for svc in services.iter().filter(|s| !ignore.contains(&s.name)) {
        let full = format!("{stack}_{}", svc.name);
        let Some(service) =
            list.iter().find(|s| s.spec.as_ref().and_then(|sp| sp.name.as_deref()) == Some(full.as_str()))
        else {
            waiting.get_or_insert(format!("service `{full}` does not exist yet"));
            continue;
        };
        let state = service.update_status.as_ref().and_then(|u| u.state).map(|s| s.to_string()).unwrap_or_default();
        if state == "paused" || state.starts_with("rollback") {
            let msg = service.update_status.as_ref().and_then(|u| u.message.clone()).unwrap_or_default();
            return Verdict::Failed(Report {
                ok: false,
                summary: format!("service `{full}` update is {state}: {msg}"),
                ..report
            });
        }
        if state == "updating" {
            waiting.get_or_insert(format!("service `{full}` is updating"));
        }
        let spec = service.spec.as_ref();
        let want = spec
            .and_then(|s| s.task_template.as_ref())
            .and_then(|t| t.container_spec.as_ref())
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        let replicas = spec
            .and_then(|s| s.mode.as_ref())
            .and_then(|m| m.replicated.as_ref())
            .and_then(|r| r.replicas)
            .unwrap_or(1);
        let mut tf = HashMap::new();
        tf.insert("service".to_string(), vec![full.clone()]);
        let tasks = match docker.list_tasks(Some(ListTasksOptions { filters: Some(tf) })).await {
            Ok(t) => t,
            Err(e) => {
                waiting.get_or_insert(format!("cannot list tasks of `{full}`: {e}"));
                continue;
            }
        };
        let image_of = |t: &bollard::models::Task| {
            t.spec.as_ref().and_then(|s| s.container_spec.as_ref()).and_then(|c| c.image.clone()).unwrap_or_default()
        };
        let task_state = |t: &bollard::models::Task| {
            t.status.as_ref().and_then(|s| s.state).map(|s| s.to_string()).unwrap_or_default()
        };
        // A task of the new spec: the service's container spec and force counter, not only its image (an
        // update that changes the environment keeps the image; start-first keeps the old task running).
        let template = spec.and_then(|s| s.task_template.as_ref());
        let current = |t: &bollard::models::Task| {
            let ts = t.spec.as_ref();
            ts.and_then(|s| s.container_spec.as_ref()) == template.and_then(|s| s.container_spec.as_ref())
                && ts.and_then(|s| s.force_update) == template.and_then(|s| s.force_update)
        };
        let desired_running =
            |t: &bollard::models::Task| t.desired_state.map(|s| s.to_string()).is_none_or(|s| s == "running");
        let running =
            tasks.iter().filter(|t| task_state(t) == "running" && desired_running(t) && current(t)).count() as i64;
        let failed: Vec<_> = tasks
            .iter()
            .filter(|t| matches!(task_state(t).as_str(), "failed" | "rejected") && image_of(t) == want)
            .collect();
        let base = *baseline.entry(full.clone()).or_insert(failed.len());
        report.containers.push(ContainerState {
            service: full.clone(),
            id: service.id.clone().unwrap_or_default().chars().take(12).collect(),
            image_ok: running > 0,
            state: format!("{running}/{replicas} running, update {}", if state.is_empty() { "none" } else { &state }),
            health: None,
            restarts: (failed.len() - base.min(failed.len())) as i64,
            image: want.clone(),
            config_hash: String::new(),
            diagnosis: None,
        });
        if failed.len() >= base + 2 {
            let err = failed
                .iter()
                .find_map(|t| t.status.as_ref().and_then(|s| s.err.clone()))
                .unwrap_or_else(|| "no error given".into());
            return Verdict::Failed(Report {
                ok: false,
                summary: format!("tasks of `{full}` keep failing: {err}"),
                ..report
            });
        }
        if running < replicas {
            waiting.get_or_insert(format!("service `{full}` runs {running} of {replicas} tasks of the new spec"));
        }
    }
    match waiting {
        Some(w) => Verdict::Waiting(Report { summary: w, ..report }),
        // Tasks are judged by the window alone.
        None => Verdict::Good(Report { ok: true, summary: "converged".into(), ..report }, None),
    }
}
