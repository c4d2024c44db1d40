//! A stack's containers, read live through the Engine API of its server: the list (and its
//! updates as server-sent events), a container's recent logs (tail, since, follow), restarts.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use askama::Template;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use bollard::Docker;
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptions, LogsOptions};
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;

use super::{Ctx, Page, html, message};
use crate::docker::Engine;

const PROJECT: &str = "com.docker.compose.project";
const SERVICE: &str = "com.docker.compose.service";
/// How long a page waits for the engine before it says so.
const ENGINE_WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_secs(2);

/// One container as the stack page lists it.
#[derive(Clone, PartialEq)]
pub struct Row {
    pub id: String,
    pub name: String,
    pub service: String,
    pub state: String,
    pub health: String,
    pub restarts: i64,
    pub image: String,
    pub started: String,
    pub started_iso: String,
    pub ports: String,
    pub exit_code: Option<i64>,
    /// The last health probe's output of an unhealthy (or starting) container.
    pub probe: String,
}

/// The engine of the server `stack` runs on, as the controller's current config says.
pub fn engine_of(ctx: &Ctx, stack: &str) -> Option<Engine> {
    let repo = ctx.dash.app.ctl.repo_of_stack(stack)?;
    let cur = repo.current.read().ok()?;
    let (_, project) = cur.as_ref()?;
    let def = project.stack(stack)?;
    let server = project.server(&def.server)?;
    Some(Engine::for_server(server, &ctx.dash.app.ctl.shared.compose))
}

async fn connect(engine: &Engine) -> Result<Docker, String> {
    tokio::time::timeout(ENGINE_WAIT, crate::converge::connect(engine))
        .await
        .unwrap_or_else(|_| Err(format!("the Docker engine at {} did not answer in time", engine.endpoint())))
}

/// The engine of `stack`, connected, or the page that says why not.
async fn docker_of(ctx: &Ctx, stack: &str) -> Result<Docker, Response> {
    let Some(engine) = engine_of(ctx, stack) else {
        return Err(message(
            ctx,
            StatusCode::NOT_FOUND,
            "No such stack",
            format!("There is no stack named `{stack}`."),
        ));
    };
    connect(&engine).await.map_err(|e| message(ctx, StatusCode::BAD_GATEWAY, "Engine unreachable", e))
}

/// The engine of `stack` and the full id of its container `id`, or the page that says why not.
async fn container_of(ctx: &Ctx, stack: &str, id: &str) -> Result<(Docker, String), Response> {
    let docker = docker_of(ctx, stack).await?;
    match owned(&docker, stack, id).await {
        Some(full) => Ok((docker, full)),
        None => {
            let text = format!("Stack `{stack}` has no container `{id}`.");
            Err(message(ctx, StatusCode::NOT_FOUND, "No such container", text))
        }
    }
}

/// Values of secret-named variables in a container's environment: registered, so no page or log shows them.
fn register_env(env: Option<&Vec<String>>) {
    let secrets = env
        .into_iter()
        .flatten()
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, v)| berth_core::vars::is_secret_key(k) && !v.is_empty())
        .map(|(_, v)| v.to_string());
    crate::redact::register(secrets);
}

fn clean(s: &str) -> String {
    crate::redact::apply(s).into_owned()
}

/// Every container of compose project `stack` (one-off runs included), by service then name.
pub async fn list(docker: &Docker, stack: &str) -> Result<Vec<Row>, String> {
    let filters = HashMap::from([("label".to_string(), vec![format!("{PROJECT}={stack}")])]);
    let opts = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
    let found = docker.list_containers(Some(opts)).await.map_err(|e| format!("cannot list containers: {e}"))?;
    let mut rows = Vec::new();
    for c in found {
        let Some(id) = c.id.clone() else { continue };
        let Ok(i) = docker.inspect_container(&id, None::<InspectContainerOptions>).await else { continue };
        register_env(i.config.as_ref().and_then(|c| c.env.as_ref()));
        let st = i.state.clone().unwrap_or_default();
        let health = st.health.as_ref().and_then(|h| h.status).map(|h| h.to_string()).unwrap_or_default();
        let health = if health == "none" { String::new() } else { health };
        let probe = st
            .health
            .as_ref()
            .filter(|_| health != "healthy")
            .and_then(|h| h.log.as_ref())
            .and_then(|l| l.last())
            .map(|p| format!("exit {}: {}", p.exit_code.unwrap_or(-1), p.output.clone().unwrap_or_default().trim()))
            .unwrap_or_default();
        let state = st.status.map(|s| s.to_string()).unwrap_or_default();
        let started = st.started_at.clone().unwrap_or_default();
        let started_iso =
            started.split('.').next().map(|s| format!("{}Z", s.trim_end_matches('Z'))).unwrap_or_default();
        let mut ports: Vec<String> = c
            .ports
            .unwrap_or_default()
            .iter()
            .map(|p| {
                let proto = p.typ.map(|t| t.to_string()).unwrap_or_else(|| "tcp".into());
                match (p.public_port, p.ip.as_deref()) {
                    (Some(pub_), Some(ip)) => format!("{ip}:{pub_}→{}/{proto}", p.private_port),
                    (Some(pub_), None) => format!("{pub_}→{}/{proto}", p.private_port),
                    _ => format!("{}/{proto}", p.private_port),
                }
            })
            .collect();
        ports.sort();
        ports.dedup();
        rows.push(Row {
            id: id.chars().take(12).collect(),
            name: c
                .names
                .unwrap_or_default()
                .first()
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default(),
            service: c.labels.as_ref().and_then(|l| l.get(SERVICE)).cloned().unwrap_or_default(),
            exit_code: st.exit_code.filter(|_| state == "exited" || state == "dead"),
            state,
            health,
            restarts: i.restart_count.unwrap_or(0),
            image: c.image.unwrap_or_default(),
            started: if started_iso.starts_with("0001") {
                String::new()
            } else {
                started_iso.replace('T', " ").replace('Z', " UTC")
            },
            started_iso,
            ports: ports.join(", "),
            probe: clean(&probe),
        });
    }
    rows.sort_by(|a, b| (&a.service, &a.name).cmp(&(&b.service, &b.name)));
    Ok(rows)
}

/// The containers of `stack` now, or why they cannot be read.
pub async fn current(ctx: &Ctx, stack: &str) -> Result<Vec<Row>, String> {
    let engine = engine_of(ctx, stack).ok_or_else(|| format!("stack `{stack}` has no server in the current config"))?;
    let docker = connect(&engine).await?;
    tokio::time::timeout(ENGINE_WAIT, list(&docker, stack))
        .await
        .unwrap_or_else(|_| Err("the engine did not list containers in time".into()))
}

#[derive(Template)]
#[template(path = "container_rows.html")]
pub struct Rows<'a> {
    pub base: &'a str,
    pub stack: &'a str,
    pub rows: &'a [Row],
}

/// `GET …/stacks/{name}/containers/events`: the container table's rows whenever they change.
pub async fn events(ctx: Ctx, Path(name): Path<String>) -> Response {
    if let Some(r) = ctx.read_refusal() {
        return r;
    }
    if engine_of(&ctx, &name).is_none() {
        return message(&ctx, StatusCode::NOT_FOUND, "No such stack", format!("There is no stack named `{name}`."));
    }
    let ctx = std::sync::Arc::new(ctx);
    let s = stream::unfold((ctx, name, String::new()), |(ctx, name, last)| async move {
        loop {
            let html = match current(&ctx, &name).await {
                Ok(rows) => Rows { base: &ctx.base, stack: &name, rows: &rows }.render().unwrap_or_default(),
                Err(e) => ErrorRow { text: &e }.render().unwrap_or_default(),
            };
            if html != last {
                let e = Event::default().event("containers").data(html.replace('\r', ""));
                return Some((Ok::<_, Infallible>(e), (ctx, name, html)));
            }
            tokio::time::sleep(POLL).await;
        }
    });
    Sse::new(s).keep_alive(KeepAlive::default()).into_response()
}

/// Why the rows cannot be read, in place of the rows (escaped as every template is).
#[derive(Template)]
#[template(source = "<tr><td colspan=\"8\">{{ text }}</td></tr>", ext = "html")]
struct ErrorRow<'a> {
    text: &'a str,
}

/// `?tail=N&since=10m`: how much of the log to show.
#[derive(Deserialize, Default)]
pub struct LogQuery {
    #[serde(default)]
    tail: Option<String>,
    #[serde(default)]
    since: Option<String>,
}

const DEFAULT_TAIL: usize = 200;
const MAX_TAIL: usize = 5000;

impl LogQuery {
    fn tail(&self) -> usize {
        self.tail.as_deref().and_then(|t| t.parse().ok()).unwrap_or(DEFAULT_TAIL).clamp(1, MAX_TAIL)
    }

    /// Unix seconds from a duration back from now (`10m`, `2h`, `90s`), 0 for all.
    fn since(&self) -> i64 {
        let Some(s) = self.since.as_deref().map(str::trim).filter(|s| !s.is_empty()) else { return 0 };
        match berth_core::duration::parse(s) {
            Ok(d) => (crate::state::now() - d.as_secs() as i64).max(1),
            Err(_) => 0,
        }
    }
}

/// The container `id` if it belongs to compose project `stack` (nothing else is shown or touched).
async fn owned(docker: &Docker, stack: &str, id: &str) -> Option<String> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        return None;
    }
    let i = docker.inspect_container(id, None::<InspectContainerOptions>).await.ok()?;
    let labels = i.config.as_ref().and_then(|c| c.labels.as_ref())?;
    register_env(i.config.as_ref().and_then(|c| c.env.as_ref()));
    (labels.get(PROJECT).map(String::as_str) == Some(stack)).then(|| i.id.unwrap_or_default())
}

fn log_opts(follow: bool, tail: usize, since: i64) -> LogsOptions {
    LogsOptions {
        follow,
        stdout: true,
        stderr: true,
        since: since.clamp(0, i32::MAX as i64) as i32,
        tail: if follow { "0".into() } else { tail.to_string() },
        timestamps: true,
        ..Default::default()
    }
}

#[derive(Template)]
#[template(path = "logs.html")]
struct LogsPage {
    page: Page,
    stack: String,
    id: String,
    tail: usize,
    since: String,
    log: String,
    error: String,
}

/// `GET …/stacks/{name}/containers/{id}/logs`: recent log lines, redacted; the script follows new ones.
pub async fn logs(ctx: Ctx, Path((name, id)): Path<(String, String)>, Query(q): Query<LogQuery>) -> Response {
    if let Some(r) = ctx.read_refusal() {
        return r;
    }
    let (docker, full) = match container_of(&ctx, &name, &id).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let (tail, since) = (q.tail(), q.since());
    let mut log = String::new();
    let mut error = String::new();
    let mut s = docker.logs(&full, Some(log_opts(false, tail, since)));
    let read = tokio::time::timeout(ENGINE_WAIT, async {
        while let Some(chunk) = s.next().await {
            match chunk {
                Ok(c) => log.push_str(&String::from_utf8_lossy(&c.into_bytes())),
                Err(e) => {
                    error = format!("cannot read the log: {e}");
                    break;
                }
            }
        }
    })
    .await;
    if read.is_err() {
        error = "the engine did not send the log in time".into();
    }
    let page = ctx.page(&format!("{name} · {}", &id[..id.len().min(12)]));
    let p = LogsPage {
        page,
        stack: name,
        id: id.chars().take(12).collect(),
        tail,
        since: q.since.clone().unwrap_or_default(),
        log: super::verify::clean_log(&log),
        error,
    };
    html(StatusCode::OK, &p)
}

/// `GET …/stacks/{name}/containers/{id}/follow`: new log lines as `line` events, redacted.
pub async fn follow(ctx: Ctx, Path((name, id)): Path<(String, String)>) -> Response {
    if let Some(r) = ctx.read_refusal() {
        return r;
    }
    let (docker, full) = match container_of(&ctx, &name, &id).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    // From now on: the page already shows what came before.
    let logs = docker.logs(&full, Some(log_opts(true, 0, crate::state::now())));
    let events = logs
        .map(|chunk| match chunk {
            Ok(c) => Event::default()
                .event("line")
                .data(super::verify::clean_log(&String::from_utf8_lossy(&c.into_bytes())).replace('\r', "")),
            Err(e) => Event::default().event("end").data(format!("the log ended: {e}")),
        })
        .chain(stream::once(async { Event::default().event("end").data("the container stopped") }))
        .map(Ok::<_, Infallible>);
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}

/// `POST …/stacks/{name}/services/{service}/restart`: restart every container of one service.
pub async fn restart(ctx: Ctx, Path((name, service)): Path<(String, String)>, form: super::auth::Posted) -> Response {
    if let Some(r) = super::actions::refusal(&ctx, &name, &super::auth::csrf_of(form)) {
        return r;
    }
    let docker = match docker_of(&ctx, &name).await {
        Ok(d) => d,
        Err(page) => return page,
    };
    let rows = match list(&docker, &name).await {
        Ok(r) => r,
        Err(e) => return message(&ctx, StatusCode::BAD_GATEWAY, "Engine unreachable", e),
    };
    let mine: Vec<&Row> = rows.iter().filter(|r| r.service == service).collect();
    if mine.is_empty() {
        let text = format!("Stack `{name}` has no container of service `{service}`.");
        return message(&ctx, StatusCode::NOT_FOUND, "No such service", text);
    }
    let who = ctx.writer.as_ref().map(|w| w.name.clone()).unwrap_or_default();
    for r in mine {
        if let Err(e) = docker.restart_container(&r.id, None).await {
            return message(&ctx, StatusCode::BAD_GATEWAY, "Restart failed", format!("container {}: {e}", r.id));
        }
    }
    tracing::info!(stack = %name, %service, by = %who, "service restarted from the dashboard");
    Redirect::to(&format!("{}/stacks/{name}#containers", ctx.base)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_error_in_place_of_the_rows_is_escaped() {
        let row = ErrorRow { text: "cannot list containers: <b>\"x\" & 'y'</b>" }.render().unwrap();
        assert!(row.starts_with("<tr><td colspan=\"8\">cannot list containers: &#60;b&#62;"), "{row}");
        assert!(!row.contains("<b>") && !row.contains("'y'"), "{row}");
    }
}
