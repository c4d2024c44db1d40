//! Who is asking, from where: key sessions (login form), basic auth, forward-auth headers,
//! CSRF tokens and the request's external origin behind trusted proxies.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use berth_core::dashboard::{Access, trusted};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{Dash, Page, html, message};
use crate::keys::Caller;

const COOKIE: &str = "berth_session";
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
const MAX_SESSIONS: usize = 10_000;
/// How long a checked basic-auth password is trusted without running bcrypt again.
const BASIC_CACHE: Duration = Duration::from_secs(300);

/// Open key sessions (by the SHA-256 of their id) and recently checked basic credentials.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<[u8; 32], Session>>,
    basic: Mutex<HashMap<[u8; 32], Instant>>,
}

struct Session {
    /// The API key's id: the session ends when the key is deleted.
    key: String,
    caller: Caller,
    csrf: String,
    expires: Instant,
}

fn sha(parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize().into()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Constant-time comparison of two tokens.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A signed-in identity.
#[derive(Clone)]
pub struct Who {
    pub name: String,
    /// The API key behind a key session.
    pub caller: Option<Caller>,
    pub csrf: String,
    /// Came from a key session (can log out).
    pub session: bool,
}

/// The request as the dashboard sees it: origin, base, and who reads and writes.
pub struct Ctx {
    pub dash: Arc<Dash>,
    /// `scheme://host` plus the base path.
    pub base: String,
    pub https: bool,
    pub reader: Option<Who>,
    pub writer: Option<Who>,
    /// Path (below the base path) and query asked for, to come back to after login.
    pub here: String,
}

impl FromRequestParts<Arc<Dash>> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, dash: &Arc<Dash>) -> Result<Ctx, Response> {
        let s = dash.settings();
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let (scheme, host) = origin(&parts.headers, peer, &s.trusted_proxies);
        let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let here = path.strip_prefix(s.base_path.as_str()).unwrap_or(path).to_string();
        let reader = identify(dash, s.read, &parts.headers, peer).await;
        let writer =
            if s.write == s.read { reader.clone() } else { identify(dash, s.write, &parts.headers, peer).await };
        Ok(Ctx {
            dash: dash.clone(),
            base: format!("{scheme}://{host}{}", s.base_path),
            https: scheme == "https",
            reader,
            writer,
            here,
        })
    }
}

/// The scheme and host the client used: forwarded headers count only from trusted proxies.
fn origin(headers: &HeaderMap, peer: Option<IpAddr>, proxies: &[berth_core::dashboard::Cidr]) -> (String, String) {
    let first = |name: &str| {
        headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.split(',').next()).map(|v| v.trim().to_string())
    };
    let via_proxy = peer.is_some_and(|ip| trusted(proxies, ip));
    let scheme = match first("x-forwarded-proto").filter(|_| via_proxy) {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    let host = via_proxy
        .then(|| first("x-forwarded-host"))
        .flatten()
        .or_else(|| first("host"))
        .filter(|h| valid_host(h))
        .unwrap_or_else(|| "localhost".into());
    (scheme.to_string(), host)
}

fn valid_host(h: &str) -> bool {
    !h.is_empty() && h.len() < 256 && h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]_".contains(c))
}

async fn identify(dash: &Arc<Dash>, mode: Access, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<Who> {
    let s = dash.settings();
    let sessionless = |name: String| {
        let csrf = dash.token(&[mode.as_str(), &name]);
        Some(Who { name, caller: None, csrf, session: false })
    };
    match mode {
        Access::None => None,
        Access::Public => sessionless("anonymous".into()),
        Access::Key => {
            let id = cookie(headers, COOKIE)?;
            let (key, who) = {
                let mut open = lock(&dash.sessions.open);
                let digest = sha(&[&id]);
                let session = open.get(&digest)?;
                if session.expires < Instant::now() {
                    open.remove(&digest);
                    return None;
                }
                let who = Who {
                    name: session.caller.name.clone(),
                    caller: Some(session.caller.clone()),
                    csrf: session.csrf.clone(),
                    session: true,
                };
                (session.key.clone(), who)
            };
            let exists = dash.app.ctl.shared.state(|st| st.key(&key)).ok().flatten().is_some();
            exists.then_some(who)
        }
        Access::Basic => {
            let (user, password) = basic_credentials(headers)?;
            let hash = dash.app.ctl.shared.dashboard.users.iter().find(|(u, _)| *u == user)?.1.clone();
            let digest = sha(&[&user, &password, &hash]);
            let fresh = lock(&dash.sessions.basic).get(&digest).is_some_and(|t| t.elapsed() < BASIC_CACHE);
            if !fresh {
                let ok = tokio::task::spawn_blocking(move || bcrypt::verify(&password, &hash).unwrap_or(false))
                    .await
                    .unwrap_or(false);
                if !ok {
                    return None;
                }
                let mut cache = lock(&dash.sessions.basic);
                cache.retain(|_, t| t.elapsed() < BASIC_CACHE);
                cache.insert(digest, Instant::now());
            }
            sessionless(user)
        }
        Access::Forward => {
            let ip = peer?;
            if !trusted(&s.forward_proxies, ip) {
                return None;
            }
            let user = headers.get(s.forward_header.as_str())?.to_str().ok()?.trim();
            (!user.is_empty()).then(|| user.to_string()).and_then(sessionless)
        }
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

impl Dash {
    /// A CSRF token for a sessionless identity: HMAC of who and how, under the process's key.
    fn token(&self, parts: &[&str]) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.csrf_key) else { return String::new() };
        mac.update(&sha(parts));
        hex::encode(mac.finalize().into_bytes())
    }
}

impl Ctx {
    pub fn page(&self, title: &str) -> Page {
        let s = self.dash.settings();
        let logout_csrf =
            [&self.reader, &self.writer].into_iter().flatten().find(|w| w.session).map(|w| w.csrf.clone());
        let login = logout_csrf.is_none()
            && (self.reader.is_none() || self.writer.is_none() && s.write != Access::None)
            && s.read != Access::Forward;
        Page {
            title: title.to_string(),
            base: self.base.clone(),
            url: format!("{}{}", self.base, self.here.split('#').next().unwrap_or_default()),
            asset_version: super::ASSET_VERSION,
            user: [&self.reader, &self.writer].into_iter().flatten().map(|w| w.name.clone()).find(|n| n != "anonymous"),
            logout_csrf,
            login,
        }
    }

    /// `None` when the request may read; otherwise the answer that asks to sign in.
    pub fn read_refusal(&self) -> Option<Response> {
        if self.reader.is_some() {
            return None;
        }
        Some(match self.dash.settings().read {
            Access::Key => Redirect::to(&format!("{}/login?next={}", self.base, encode(&self.here))).into_response(),
            Access::Basic => challenge(self),
            _ => message(self, StatusCode::FORBIDDEN, "Not signed in", "Sign in through your reverse proxy."),
        })
    }

    /// May the writer deploy and roll back `stack`?
    pub fn may_write(&self, stack: &str) -> bool {
        let Some(w) = &self.writer else { return false };
        match self.dash.settings().write {
            Access::Key => w.caller.as_ref().is_some_and(|c| c.may_deploy(stack)),
            Access::Basic | Access::Forward => {
                self.dash.settings().writers.as_ref().is_none_or(|l| l.contains(&w.name))
            }
            Access::Public | Access::None => false,
        }
    }

    /// May the writer freeze and unfreeze (an admin key; `basic`/`forward` users in `admins`)?
    pub fn may_admin(&self) -> bool {
        let Some(w) = &self.writer else { return false };
        match self.dash.settings().write {
            Access::Key => w.caller.as_ref().is_some_and(|c| c.scope == crate::keys::Scope::Admin),
            Access::Basic | Access::Forward => self.dash.settings().admins.contains(&w.name),
            Access::Public | Access::None => false,
        }
    }

    /// The writer's CSRF token, to put into forms.
    pub fn csrf(&self) -> String {
        self.writer.as_ref().map(|w| w.csrf.clone()).unwrap_or_default()
    }

    /// Is `token` the writer's CSRF token?
    pub fn csrf_ok(&self, token: &str) -> bool {
        self.writer.as_ref().is_some_and(|w| !w.csrf.is_empty() && same(&w.csrf, token))
    }
}

fn challenge(ctx: &Ctx) -> Response {
    let mut r = message(ctx, StatusCode::UNAUTHORIZED, "Sign in", "This dashboard needs a user name and password.");
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"berth\", charset=\"UTF-8\""));
    r
}

/// Percent-encode a path for a query parameter.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Where to go after login: a path below the base, never another site.
fn next_path(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains(['\\', '\r', '\n']) => n.to_string(),
        _ => "/".to_string(),
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct Login {
    page: Page,
    next: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct Next {
    next: Option<String>,
}

pub async fn login_form(ctx: Ctx, Query(q): Query<Next>) -> Response {
    let s = ctx.dash.settings();
    let next = next_path(q.next.as_deref());
    if s.read == Access::Key || s.write == Access::Key {
        return html(StatusCode::OK, &Login { page: ctx.page("Log in"), next, error: None });
    }
    if s.read == Access::Basic || s.write == Access::Basic {
        let signed_in = (s.read == Access::Basic && ctx.reader.is_some()) || ctx.writer.is_some();
        return if signed_in { Redirect::to(&format!("{}{next}", ctx.base)).into_response() } else { challenge(&ctx) };
    }
    message(&ctx, StatusCode::OK, "Sign in", "Sign in through your reverse proxy.")
}

#[derive(Deserialize)]
pub struct LoginForm {
    key: String,
    secret: String,
    next: Option<String>,
}

/// Check an API key and open a session: the cookie holds a random id, never the key.
pub async fn login(ctx: Ctx, Form(f): Form<LoginForm>) -> Response {
    let next = next_path(f.next.as_deref());
    let shared = ctx.dash.app.ctl.shared.clone();
    let (key, secret) = (f.key.trim().to_string(), f.secret.trim().to_string());
    let k2 = key.clone();
    let caller = super::blocking(move || shared.state(|s| crate::keys::verify(s, &k2, &secret))).await;
    let caller = match caller {
        Ok(Ok(Some(c))) => c,
        Ok(Ok(None)) => {
            let error = Some("That key and secret do not match a berth API key.".to_string());
            return html(StatusCode::UNAUTHORIZED, &Login { page: ctx.page("Log in"), next, error });
        }
        Ok(Err(e)) => return message(&ctx, StatusCode::INTERNAL_SERVER_ERROR, "Error", e.to_string()),
        Err(r) => return r,
    };
    let (Ok(id), Ok(csrf)) = (crate::secrets::random_hex(32), crate::secrets::random_hex(32)) else {
        return message(&ctx, StatusCode::INTERNAL_SERVER_ERROR, "Error", "no randomness for a session id");
    };
    {
        let mut open = lock(&ctx.dash.sessions.open);
        let now = Instant::now();
        open.retain(|_, s| s.expires > now);
        if open.len() >= MAX_SESSIONS {
            return message(&ctx, StatusCode::SERVICE_UNAVAILABLE, "Too many sessions", "Try again later.");
        }
        open.insert(sha(&[&id]), Session { key, caller, csrf, expires: now + SESSION_TTL });
    }
    let cookie = set_cookie(&ctx, &id, SESSION_TTL.as_secs());
    let mut r = Redirect::to(&format!("{}{next}", ctx.base)).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

fn set_cookie(ctx: &Ctx, value: &str, max_age: u64) -> String {
    let path = ctx.dash.settings().base_path.clone();
    let path = if path.is_empty() { "/".to_string() } else { path };
    let secure = if ctx.https { "; Secure" } else { "" };
    format!("{COOKIE}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
    /// Why, for the forms that ask (pause, a forced deploy).
    #[serde(default)]
    pub reason: String,
    /// Non-empty: deploy through closed windows and freezes (admins only, with a reason).
    #[serde(default)]
    pub force: String,
}

/// A posted form; a missing or malformed body counts as a form without a token (refused with 403).
pub type Posted = Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>;

pub fn csrf_of(form: Posted) -> CsrfForm {
    form.map(|f| f.0).unwrap_or(CsrfForm { csrf: String::new(), reason: String::new(), force: String::new() })
}

pub async fn logout(ctx: Ctx, headers: HeaderMap, State(dash): State<Arc<Dash>>, form: Posted) -> Response {
    let f = csrf_of(form);
    let session = [&ctx.reader, &ctx.writer].into_iter().flatten().find(|w| w.session);
    if !session.is_some_and(|w| same(&w.csrf, &f.csrf)) {
        return message(&ctx, StatusCode::FORBIDDEN, "Refused", "The form was stale or not from this dashboard.");
    }
    if let Some(id) = cookie(&headers, COOKIE) {
        lock(&dash.sessions.open).remove(&sha(&[&id]));
    }
    let mut r = Redirect::to(&format!("{}/", ctx.base)).into_response();
    if let Ok(v) = HeaderValue::from_str(&set_cookie(&ctx, "", 0)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let proxies = [berth_core::dashboard::Cidr::parse("10.0.0.0/8").unwrap()];
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("127.0.0.1:8080"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert("x-forwarded-host", HeaderValue::from_static("ops.example.com, inner"));
        let trusted = origin(&h, Some("10.1.2.3".parse().unwrap()), &proxies);
        assert_eq!(trusted, ("https".to_string(), "ops.example.com".to_string()));
        let direct = origin(&h, Some("192.168.1.9".parse().unwrap()), &proxies);
        assert_eq!(direct, ("http".to_string(), "127.0.0.1:8080".to_string()));
        h.insert("host", HeaderValue::from_static("evil\"><script>"));
        assert_eq!(origin(&h, None, &proxies).1, "localhost");
    }

    #[test]
    fn login_returns_only_to_local_paths() {
        assert_eq!(next_path(Some("/stacks/web")), "/stacks/web");
        assert_eq!(next_path(Some("//evil.example")), "/");
        assert_eq!(next_path(Some("https://evil.example")), "/");
        assert_eq!(encode("/stacks/a?x=1&y"), "/stacks/a%3Fx%3D1%26y");
    }
}
