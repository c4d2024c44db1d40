//! Convergence: watching a compose project through the Docker Engine API until
//! it really runs the new version, or proving that it does not.
//!
//! Order matters: first every service's containers must run the image resolved
//! at deploy time and share one compose config hash (no container of the old
//! configuration left); only then are they judged on being up, healthy and not
//! restarting, and the state must hold for a stable window. One-shot services
//! are judged by exiting 0. The window ends early once every container is healthy
//! (with a health check) or has run for the window since it started (without one,
//! by the engine's `StartedAt`): [`berth_core::verify::stable_left`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use berth_core::verify::{self, Seen};

use bollard::Docker;
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptions};
use serde::Serialize;

use crate::docker::{Engine, ServiceSpec};

mod drift;
pub mod rollout;
mod swarm;

pub use drift::{containers, drift};
pub use swarm::converge_swarm;

pub(crate) const PROJECT: &str = "com.docker.compose.project";
pub(crate) const SERVICE: &str = "com.docker.compose.service";
pub(crate) const ONEOFF: &str = "com.docker.compose.oneoff";
pub(crate) const CONFIG_HASH: &str = "com.docker.compose.config-hash";
pub(crate) const WORKING_DIR: &str = "com.docker.compose.project.working_dir";

/// The slowest poll; the first second after `up` is polled faster ([`next_poll`]).
const POLL: Duration = Duration::from_millis(500);

/// What was checked, for the record.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    pub ok: bool,
    /// One line on the outcome.
    pub summary: String,
    pub containers: Vec<ContainerState>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ContainerState {
    pub service: String,
    pub id: String,
    pub image_ok: bool,
    pub state: String,
    pub health: Option<String>,
    pub restarts: i64,
    /// Image id the container runs (the baseline for drift detection).
    #[serde(default)]
    pub image: String,
    /// Compose's config-hash label of the container.
    #[serde(default)]
    pub config_hash: String,
    /// Why the container failed verification, kept for the record (the container may be gone later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<Diagnosis>,
}

/// What Docker knows about a failing container: exit code, the health probes' own output, its last log lines.
#[derive(Debug, Clone, Serialize, serde::Deserialize, Default, PartialEq)]
pub struct Diagnosis {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(default)]
    pub oom_killed: bool,
    /// The engine's error for the container (a failed start), if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// The last health probes, oldest first: (exit code, output).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<(i64, String)>,
    /// The container's last log lines (stdout and stderr), with secrets redacted.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub log: String,
}

/// Lines of a failing container's log kept with its diagnosis.
pub const DIAGNOSIS_LINES: usize = 20;

/// Read a container's [`Diagnosis`] from its inspected state and its log tail.
pub async fn diagnose(docker: &Docker, id: &str, st: &bollard::models::ContainerState) -> Diagnosis {
    use futures_util::StreamExt;
    let probes = st
        .health
        .as_ref()
        .and_then(|h| h.log.as_ref())
        .map(|l| l.iter().map(|p| (p.exit_code.unwrap_or(-1), p.output.clone().unwrap_or_default())).collect())
        .unwrap_or_default();
    let opts = bollard::query_parameters::LogsOptions {
        stdout: true,
        stderr: true,
        tail: DIAGNOSIS_LINES.to_string(),
        ..Default::default()
    };
    let mut log = String::new();
    let mut stream = docker.logs(id, Some(opts));
    while let Some(Ok(chunk)) = stream.next().await {
        log.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    Diagnosis {
        exit_code: st.exit_code.filter(|_| st.running != Some(true)),
        oom_killed: st.oom_killed.unwrap_or(false),
        error: st.error.clone().unwrap_or_default(),
        probes,
        log: crate::redact::apply(&log).into_owned(),
    }
}

/// Connect to a server's engine the way the docker CLI would: the local socket,
/// `tcp://` (with TLS client certificates when configured) or `ssh://`.
pub async fn connect(engine: &Engine) -> Result<Docker, String> {
    const TIMEOUT: u64 = 120;
    let d = match (engine.host.as_deref(), &engine.tls) {
        (None, _) => Docker::connect_with_defaults(),
        // Through the docker CLI, as every other command: bollard's own ssh transport drops the port.
        (Some(h), _) if h.starts_with("ssh://") => crate::dial::connect(engine, TIMEOUT),
        (Some(h), Some(t)) => Docker::connect_with_ssl(
            h,
            std::path::Path::new(&t.key),
            std::path::Path::new(&t.cert),
            std::path::Path::new(&t.ca),
            TIMEOUT,
            bollard::API_DEFAULT_VERSION,
        ),
        (Some(h), None) => Docker::connect_with_host(h),
    }
    .map_err(|e| format!("cannot connect to the Docker engine at {}: {e}", engine.endpoint()))?;
    match d.negotiate_version().await {
        Ok(d) => Ok(d),
        // A dial-stdio stream only ends; the CLI's own check says why (ssh refused, key, host key).
        Err(_) if engine.host.as_deref().is_some_and(|h| h.starts_with("ssh://")) => {
            let probe = engine.clone();
            let why = tokio::task::spawn_blocking(move || probe.ping()).await;
            Err(match why {
                Ok(Err(e)) => e.to_string(),
                _ => format!("the Docker engine at {} does not answer through ssh", engine.endpoint()),
            })
        }
        Err(e) => Err(format!("the Docker engine at {} does not answer: {e}", engine.endpoint())),
    }
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
    let mut seen: HashMap<String, Track> = HashMap::new();
    // The engine's clock, read beside the first look (a remote engine's clock may differ from ours).
    let clock = {
        let docker = docker.clone();
        tokio::spawn(async move { Clock::read(&docker).await })
    };
    let mut clock = Pending::Waiting(clock);
    window(timeout, stable, async || {
        let (verdict, started) = observe(docker, project, services, ignore, expected, &mut seen).await;
        let Verdict::Good(report, _) = verdict else { return verdict };
        let clock = clock.get().await;
        let states: Vec<Seen> = started.iter().map(|s| s.seen(clock)).collect();
        Verdict::Good(report, verify::stable_left(&states, stable))
    })
    .await
}

/// The engine's wall clock, as of a local instant.
struct Clock {
    /// Nanoseconds since the epoch by the engine's clock, at (or before) `at`.
    engine: i128,
    at: Instant,
}

impl Clock {
    async fn read(docker: &Docker) -> Option<Clock> {
        let info = docker.info().await.ok()?;
        // The instant after the answer: the engine's now is at least this, so uptimes are never overstated.
        let at = Instant::now();
        Some(Clock { engine: verify::parse_timestamp(info.system_time.as_deref()?)?, at })
    }

    fn now(&self) -> i128 {
        self.engine + self.at.elapsed().as_nanos() as i128
    }
}

enum Pending {
    Waiting(tokio::task::JoinHandle<Option<Clock>>),
    Done(Option<Clock>),
}

impl Pending {
    async fn get(&mut self) -> Option<&Clock> {
        if let Pending::Waiting(h) = self {
            *self = Pending::Done(h.await.ok().flatten());
        }
        match self {
            Pending::Done(c) => c.as_ref(),
            Pending::Waiting(_) => None,
        }
    }
}

/// What verification remembers of a container between looks.
struct Track {
    restarts: i64,
    /// Its `State.StartedAt`, as first seen.
    started: String,
    /// When this process first saw it running since `started`.
    first_seen: Instant,
}

/// A container found good in one look, for deciding whether the window may end.
enum Started {
    Healthy,
    Finished,
    /// Running without a health check since `started_at` (engine nanoseconds, if known).
    Running {
        started_at: Option<i128>,
        first_seen: Instant,
    },
}

impl Started {
    fn seen(&self, clock: Option<&Clock>) -> Seen {
        match self {
            Started::Healthy => Seen::Healthy,
            Started::Finished => Seen::Finished,
            Started::Running { started_at, first_seen } => {
                // Both are lower bounds of its uptime; the engine's is the tighter one unless it is unknown.
                let by_engine = match (clock, started_at) {
                    (Some(c), Some(t)) => {
                        u64::try_from((c.now() - t).max(0)).map(Duration::from_nanos).unwrap_or_default()
                    }
                    _ => Duration::ZERO,
                };
                Seen::Running(by_engine.max(first_seen.elapsed()))
            }
        }
    }
}

/// How long to wait before the next look, `elapsed` after the first: a container that
/// starts slowly is usually seen within a second of `up`, so the first second is polled faster.
fn next_poll(elapsed: Duration) -> Duration {
    (elapsed / 4).clamp(Duration::from_millis(50), POLL)
}

/// Poll `observe` until it is good for `stable` in a row (or says the window may end
/// early), fails, or `timeout` passes.
async fn window(timeout: Duration, stable: Duration, mut observe: impl AsyncFnMut() -> Verdict) -> Report {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut good_since: Option<Instant> = None;
    loop {
        let mut wait = next_poll(start.elapsed());
        match observe().await {
            Verdict::Failed(report) => return report,
            Verdict::Good(report, Some(left)) if left.is_zero() => {
                return Report {
                    ok: true,
                    summary: format!(
                        "converged and stable (every container healthy or running for {}s)",
                        stable.as_secs_f64()
                    ),
                    ..report
                };
            }
            Verdict::Good(report, left) => {
                if let Some(left) = left {
                    wait = wait.min(left);
                }
                let since = *good_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= stable {
                    return Report {
                        ok: true,
                        summary: format!("converged and stable for {}s", stable.as_secs()),
                        ..report
                    };
                }
                if Instant::now() >= deadline + stable {
                    return Report { ok: true, summary: "converged".into(), ..report };
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
        tokio::time::sleep(wait).await;
    }
}

enum Verdict {
    /// Good now; and how much longer the window has to run, when the states tell.
    Good(Report, Option<Duration>),
    Waiting(Report),
    Failed(Report),
}

async fn observe(
    docker: &Docker,
    project: &str,
    services: &[ServiceSpec],
    ignore: &[String],
    expected: &HashMap<String, String>,
    seen: &mut HashMap<String, Track>,
) -> (Verdict, Vec<Started>) {
    let mut filters = HashMap::new();
    filters.insert("label".to_string(), vec![format!("{PROJECT}={project}")]);
    let opts = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
    let list = match docker.list_containers(Some(opts)).await {
        Ok(l) => l,
        Err(e) => {
            let summary = format!("cannot list containers: {e}");
            return (Verdict::Waiting(Report { summary, ..Default::default() }), Vec::new());
        }
    };
    let mut started = Vec::new();
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
            let health = st
                .health
                .as_ref()
                .and_then(|h| h.status)
                .map(|h| h.to_string())
                .filter(|h| !h.is_empty() && h != "none");
            report.containers.push(ContainerState {
                service: svc.name.clone(),
                id: short(&id).to_string(),
                image_ok,
                state: state.clone(),
                health: health.clone(),
                restarts,
                image: c.image_id.clone().unwrap_or_default(),
                config_hash: c.labels.as_ref().and_then(|l| l.get(CONFIG_HASH)).cloned().unwrap_or_default(),
                diagnosis: None,
            });
            if !image_ok {
                waiting.get_or_insert(format!(
                    "service `{}` container {} still runs the previous image",
                    svc.name,
                    short(&id)
                ));
                continue;
            }
            let started_at = st.started_at.clone().unwrap_or_default();
            let track = seen.entry(id.clone()).or_insert_with(|| Track {
                restarts,
                started: started_at.clone(),
                first_seen: Instant::now(),
            });
            let restarted = restarts > track.restarts
                || started_at != track.started && verify::parse_timestamp(&track.started).is_some();
            // The failing container's own story goes with the verdict.
            let failing = restarted
                || matches!(state.as_str(), "exited" | "dead" | "restarting") && !(one_shot && st.exit_code == Some(0))
                || state == "running" && !one_shot && health.as_deref() == Some("unhealthy");
            if failing && let Some(last) = report.containers.last_mut() {
                last.diagnosis = Some(diagnose(docker, &id, &st).await);
            }
            let fail = |why: String| {
                (Verdict::Failed(Report { ok: false, summary: why, containers: report.containers.clone() }), Vec::new())
            };
            if restarts > track.restarts {
                let n = restarts - track.restarts;
                return fail(format!("service `{}` restarted {n} time(s) during verification", svc.name));
            }
            if started_at != track.started {
                if verify::parse_timestamp(&track.started).is_some() {
                    // Started again without the restart policy (`docker restart`, a daemon restart).
                    return fail(format!("service `{}` restarted during verification", svc.name));
                }
                // First seen before it started (`created`): its window starts now.
                *track = Track { restarts, started: started_at.clone(), first_seen: Instant::now() };
            }
            let exit = st.exit_code.unwrap_or(0);
            match state.as_str() {
                "running" if one_shot => {
                    waiting.get_or_insert(format!("one-shot service `{}` is still running", svc.name))
                }
                "running" => match health.as_deref() {
                    Some("healthy") => {
                        started.push(Started::Healthy);
                        continue;
                    }
                    None => {
                        let started_at = verify::parse_timestamp(&started_at);
                        started.push(Started::Running { started_at, first_seen: track.first_seen });
                        continue;
                    }
                    Some("unhealthy") => return fail(format!("service `{}` is unhealthy", svc.name)),
                    Some(other) => waiting.get_or_insert(format!("service `{}` health is {other}", svc.name)),
                },
                "exited" if one_shot && exit == 0 => {
                    started.push(Started::Finished);
                    continue;
                }
                "exited" | "dead" => return fail(format!("service `{}` exited with code {exit}", svc.name)),
                "restarting" => return fail(format!("service `{}` is restarting (exit code {exit})", svc.name)),
                other => waiting.get_or_insert(format!("service `{}` is {other}", svc.name)),
            };
        }
    }
    match waiting {
        Some(w) => (Verdict::Waiting(Report { summary: w, ..report }), Vec::new()),
        None => (Verdict::Good(Report { ok: true, summary: "converged".into(), ..report }, None), started),
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i128 = 1_000_000_000;

    fn uptime(s: Seen) -> Duration {
        match s {
            Seen::Running(d) => d,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn uptime_is_the_engine_s_or_berth_s_own_whichever_is_longer_and_never_negative() {
        let clock = Clock { engine: 1_000 * SEC, at: Instant::now() };
        let started = |at: i128| Started::Running { started_at: Some(at), first_seen: Instant::now() };
        let up = uptime(started(997 * SEC).seen(Some(&clock)));
        assert!(up >= Duration::from_secs(3) && up < Duration::from_secs(4), "{up:?}");
        // A start after the engine's "now" (clock read before it) is no uptime, not a huge one.
        assert!(uptime(started(1_005 * SEC).seen(Some(&clock))) < Duration::from_secs(1));
        // No clock, or no start time: only what berth itself saw.
        assert!(uptime(started(0).seen(None)) < Duration::from_secs(1));
        let unknown = Started::Running { started_at: None, first_seen: Instant::now() };
        assert!(uptime(unknown.seen(Some(&clock))) < Duration::from_secs(1));
        assert_eq!(Started::Healthy.seen(None), Seen::Healthy);
        assert_eq!(Started::Finished.seen(None), Seen::Finished);
    }

    #[test]
    fn polls_are_quick_right_after_up_and_slow_down() {
        assert_eq!(next_poll(Duration::ZERO), Duration::from_millis(50));
        assert_eq!(next_poll(Duration::from_secs(1)), Duration::from_millis(250));
        assert_eq!(next_poll(Duration::from_secs(60)), POLL);
    }
}
