//! HTTP to forge and CI APIs: each provider's authentication, retries of transient answers
//! until a deadline, and paging through `Link` headers.
//!
//! Forges answer intermittently with 5xx, empty bodies or rate limits under load, so such an
//! answer is retried with capped backoff (honouring `Retry-After` and GitHub's rate-limit
//! headers) for as long as the caller's deadline allows, and each retry is logged.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use serde_json::Value;

/// Where to ask and as whom.
#[derive(Debug, Clone)]
pub struct Api {
    pub provider: String,
    /// Base URL of the API, without a trailing slash (GitLab and Gitea: the forge's root).
    pub base: String,
    pub token: Option<String>,
}

/// Why a request did not produce an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The API answered with a definite refusal (4xx other than rate limits).
    #[error("{0}")]
    Refused(String),
    /// Transient answers until the deadline.
    #[error("{0}")]
    GaveUp(String),
}

const FIRST_DELAY: Duration = Duration::from_millis(200);
const MAX_DELAY: Duration = Duration::from_secs(15);
/// Pages followed at most, against a `Link` that never ends.
const MAX_PAGES: usize = 100;

impl Api {
    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let req = req.header("User-Agent", "berth").header("Accept", "application/json");
        match (&self.token, self.provider.as_str()) {
            (None, _) => req,
            (Some(t), "gitea" | "forgejo") => req.header("Authorization", format!("token {t}")),
            (Some(t), "gitlab") => req.header("PRIVATE-TOKEN", t),
            (Some(t), _) => req.bearer_auth(t),
        }
    }

    /// GET a JSON document (transient answers retried until `deadline`).
    pub async fn get(
        &self,
        client: &reqwest::Client,
        path: &str,
        deadline: Instant,
        log: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Value, ApiError> {
        let url = format!("{}{path}", self.base);
        self.send(client, &url, None, deadline, true, log).await.map(|(v, _)| v)
    }

    /// GET every page of a list: `items` picks a page's entries; `Link: <…>; rel="next"` leads on.
    pub async fn get_all(
        &self,
        client: &reqwest::Client,
        path: &str,
        items: fn(&Value) -> Vec<Value>,
        deadline: Instant,
        log: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Vec<Value>, ApiError> {
        let mut url = format!("{}{path}", self.base);
        let mut all = Vec::new();
        for _ in 0..MAX_PAGES {
            let (v, next) = self.send(client, &url, None, deadline, true, log).await?;
            all.extend(items(&v));
            match next {
                Some(n) if self.same_origin(&n) => url = n,
                Some(n) => {
                    return Err(ApiError::Refused(format!("{} sent a next page on another host: {n}", self.provider)));
                }
                None => return Ok(all),
            }
        }
        Err(ApiError::Refused(format!("{} kept sending pages for {path} (more than {MAX_PAGES})", self.provider)))
    }

    /// POST a JSON body (transient answers retried until `deadline`).
    pub async fn post(
        &self,
        client: &reqwest::Client,
        path: &str,
        body: &Value,
        deadline: Instant,
        log: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(), ApiError> {
        self.write(client, reqwest::Method::POST, path, body, deadline, log).await.map(|_| ())
    }

    /// POST, PATCH or PUT a JSON body and read the answer (`null` when it has none).
    pub async fn write(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        body: &Value,
        deadline: Instant,
        log: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Value, ApiError> {
        let url = format!("{}{path}", self.base);
        self.send(client, &url, Some((method, body)), deadline, true, log).await.map(|(v, _)| v)
    }

    /// POST a JSON body once, not retried: a create whose answer is lost would be made twice by a
    /// retry. A transient failure is `GaveUp`; the caller looks before it tries again.
    pub async fn create(
        &self,
        client: &reqwest::Client,
        path: &str,
        body: &Value,
        deadline: Instant,
        log: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Value, ApiError> {
        let url = format!("{}{path}", self.base);
        self.send(client, &url, Some((reqwest::Method::POST, body)), deadline, false, log).await.map(|(v, _)| v)
    }

    /// The token goes only where the base URL points.
    fn same_origin(&self, url: &str) -> bool {
        match (reqwest::Url::parse(url), reqwest::Url::parse(&self.base)) {
            (Ok(a), Ok(b)) => a.origin() == b.origin(),
            _ => false,
        }
    }

    async fn send(
        &self,
        client: &reqwest::Client,
        url: &str,
        body: Option<(reqwest::Method, &Value)>,
        deadline: Instant,
        retry: bool,
        log: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(Value, Option<String>), ApiError> {
        let what = reqwest::Url::parse(url).map(|u| u.path().to_string()).unwrap_or_else(|_| url.to_string());
        let mut delay = FIRST_DELAY;
        loop {
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(500));
            let req = match &body {
                Some((m, b)) => client.request(m.clone(), url).json(b),
                None => client.get(url),
            };
            let (why, wait) = match self.auth(req).timeout(left).send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let headers = r.headers().clone();
                    if let Some(wait) = rate_limited(status, &headers) {
                        (format!("HTTP {status} (rate limited)"), Some(wait))
                    } else if r.status().is_server_error() {
                        (format!("HTTP {status}"), None)
                    } else if !r.status().is_success() {
                        let text = r.text().await.unwrap_or_default();
                        return Err(ApiError::Refused(format!(
                            "{} answered HTTP {status} for {what}{}",
                            self.provider,
                            message(&text).map(|m| format!(": {m}")).unwrap_or_default()
                        )));
                    } else {
                        let next = next_link(&headers);
                        match r.text().await {
                            // A status post may answer 201 or 204 with nothing to parse.
                            Ok(t) if body.is_some() => {
                                return Ok((serde_json::from_str(&t).unwrap_or(Value::Null), None));
                            }
                            Ok(t) if t.trim().is_empty() => ("an empty body".to_string(), None),
                            Ok(t) => match serde_json::from_str(&t) {
                                Ok(v) => return Ok((v, next)),
                                Err(e) => (format!("a body that is not JSON ({e})"), None),
                            },
                            Err(e) => (format!("a broken body ({})", chain(&e)), None),
                        }
                    }
                }
                Err(e) => (format!("no answer ({})", chain(&e.without_url())), None),
            };
            let pause = pause(wait, delay);
            if !retry || Instant::now() + pause >= deadline {
                return Err(ApiError::GaveUp(format!("{} API kept failing ({why}) for {what}", self.provider)));
            }
            let source = if wait.is_some() { " as the API asked" } else { "" };
            log(&format!("{} API gave {why} for {what}; retrying in {}ms{source}", self.provider, pause.as_millis()));
            tokio::time::sleep(pause).await;
            delay = (delay * 3 / 2).min(MAX_DELAY);
        }
    }
}

/// How long to wait before the next try: what the API asked for, but never less than the
/// backoff (a `Retry-After: 0` would otherwise retry in a tight loop until the deadline).
fn pause(asked: Option<Duration>, backoff: Duration) -> Duration {
    match asked {
        Some(w) => w.max(backoff),
        None => backoff + jitter(),
    }
}

/// How long a rate-limited answer asks to wait: `Retry-After` (seconds) on 429 or 403, or
/// GitHub's `x-ratelimit-remaining: 0` with `x-ratelimit-reset` (epoch seconds).
fn rate_limited(status: u16, h: &HeaderMap) -> Option<Duration> {
    if status != 429 && status != 403 {
        return None;
    }
    let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(secs) = header("retry-after").and_then(|v| v.parse::<u64>().ok()) {
        return Some(Duration::from_secs(secs));
    }
    if header("x-ratelimit-remaining") == Some("0") {
        let reset = header("x-ratelimit-reset").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        return Some(Duration::from_secs(reset.saturating_sub(now) + 1));
    }
    // A 429 without advice is still transient; a plain 403 is a refusal.
    (status == 429).then_some(Duration::from_secs(1))
}

/// The `rel="next"` URL of a `Link` header (RFC 8288), as GitHub, Gitea and GitLab send it.
pub fn next_link(h: &HeaderMap) -> Option<String> {
    h.get_all("link").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        let rel_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        rel_next.then(|| target.trim().trim_start_matches('<').trim_end_matches('>').to_string())
    })
}

/// The `message` of an API error body, if it has one.
fn message(text: &str) -> Option<String> {
    let v: Value = serde_json::from_str(text).ok()?;
    let m = v["message"].as_str()?;
    Some(m.chars().take(200).collect())
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut why = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        why = format!("{why}: {inner}");
        src = inner.source();
    }
    why
}

/// Jitter from the clock's nanoseconds keeps retrying clients apart.
fn jitter() -> Duration {
    Duration::from_millis(u64::from(
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0) % 100,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn next_links_as_forges_send_them() {
        let h = headers(&[(
            "link",
            r#"<https://api.github.com/repositories/1/commits/x/check-runs?per_page=100&page=2>; rel="next", <https://api.github.com/repositories/1/commits/x/check-runs?per_page=100&page=3>; rel="last""#,
        )]);
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://api.github.com/repositories/1/commits/x/check-runs?per_page=100&page=2")
        );
        let last = headers(&[("link", r#"<https://g/api?page=1>; rel="first", <https://g/api?page=1>; rel="prev""#)]);
        assert_eq!(next_link(&last), None);
        assert_eq!(next_link(&HeaderMap::new()), None);
    }

    #[test]
    fn rate_limits_say_how_long_to_wait() {
        assert_eq!(rate_limited(429, &headers(&[("retry-after", "7")])), Some(Duration::from_secs(7)));
        assert_eq!(rate_limited(403, &headers(&[("retry-after", "2")])), Some(Duration::from_secs(2)));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let gh = headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &(now + 30).to_string())]);
        let w = rate_limited(403, &gh).unwrap();
        assert!(w >= Duration::from_secs(29) && w <= Duration::from_secs(32), "{w:?}");
        assert_eq!(rate_limited(403, &HeaderMap::new()), None, "a plain 403 is a refusal");
        assert_eq!(rate_limited(502, &headers(&[("retry-after", "7")])), None);
    }

    #[test]
    fn a_rate_limit_asking_for_no_wait_still_backs_off() {
        let zero = rate_limited(429, &headers(&[("retry-after", "0")]));
        assert_eq!(zero, Some(Duration::ZERO));
        assert_eq!(pause(zero, FIRST_DELAY), FIRST_DELAY);
        assert_eq!(pause(Some(Duration::from_secs(7)), FIRST_DELAY), Duration::from_secs(7));
        assert!(pause(None, FIRST_DELAY) >= FIRST_DELAY);
    }
}
