//! A deploy's log: plain text, and server-sent events while it runs (phases and the log so far, then the outcome).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};

use super::{Ctx, blocking, message};
use crate::controller::Shared;

/// `GET …/deploys/{id}/log`: the (redacted) log as plain text, so far when the deploy still runs.
pub async fn log(ctx: Ctx, Path(id): Path<i64>) -> Response {
    if let Some(r) = ctx.read_refusal() {
        return r;
    }
    let shared = ctx.dash.app.ctl.shared.clone();
    let stored = blocking(move || {
        shared.state(|s| {
            let r = s.get(id)?;
            let live = if r.status.is_final() { None } else { crate::deploy::live_log(&r.stack) };
            s.log(id).map(|log| live.unwrap_or(log))
        })
    });
    match stored.await {
        Ok(Ok(log)) => {
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], log)
                .into_response()
        }
        Ok(Err(_)) => message(&ctx, StatusCode::NOT_FOUND, "No such deploy", format!("There is no deploy {id}.")),
        Err(r) => r,
    }
}

/// Where the event stream is: phases already sent, events not yet sent, and whether it ended.
struct Cursor {
    shared: Arc<Shared>,
    id: i64,
    sent: usize,
    /// The last log sent while the deploy ran.
    shown: String,
    pending: VecDeque<Event>,
    finished: bool,
    first: bool,
}

/// `?after=N`: the page already shows the first N phases.
#[derive(serde::Deserialize)]
pub struct After {
    #[serde(default)]
    after: usize,
}

const POLL: Duration = Duration::from_millis(500);

/// `GET …/deploys/{id}/events`: `phase` events as phases start, `log` as it grows, and `done` when it settles.
pub async fn events(ctx: Ctx, Path(id): Path<i64>, Query(q): Query<After>) -> Response {
    if let Some(r) = ctx.read_refusal() {
        return r;
    }
    let shared = ctx.dash.app.ctl.shared.clone();
    let cursor = Cursor {
        shared,
        id,
        sent: q.after,
        shown: String::new(),
        pending: VecDeque::new(),
        finished: false,
        first: true,
    };
    Sse::new(stream_of(cursor)).keep_alive(KeepAlive::default()).into_response()
}

fn stream_of(cursor: Cursor) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(e) = c.pending.pop_front() {
                return Some((Ok(e), c));
            }
            if c.finished {
                return None;
            }
            if !c.first {
                tokio::time::sleep(POLL).await;
            }
            c.first = false;
            let (shared, id) = (c.shared.clone(), c.id);
            let now = tokio::task::spawn_blocking(move || {
                shared.state(|s| Some((s.get(id).ok()?, s.phases(id).ok()?, s.log(id).ok()?)))
            })
            .await
            .ok()
            .flatten();
            let Some((record, phases, log)) = now else {
                c.pending.push_back(Event::default().event("done").data("unknown"));
                c.finished = true;
                continue;
            };
            for (name, at) in phases.iter().skip(c.sent) {
                c.pending.push_back(Event::default().event("phase").data(format!("{name}\t{at}")));
            }
            c.sent = phases.len();
            if !record.status.is_final()
                && let Some(live) = crate::deploy::live_log(&record.stack)
                && live != c.shown
            {
                c.pending.push_back(Event::default().event("log").data(live.replace('\r', "")));
                c.shown = live;
            }
            if record.status.is_final() {
                c.pending.push_back(Event::default().event("log").data(log.replace('\r', "")));
                c.pending.push_back(Event::default().event("done").data(record.status.as_str()));
                c.finished = true;
            }
        }
    })
}
