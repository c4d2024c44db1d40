//! The Docker Registry HTTP API v2 (OCI distribution): tag lists (paged by `Link`), manifest
//! digests (`HEAD` with the manifest and index media types), image creation dates; basic and
//! token auth (credentials from a Docker `config.json` and its credential helpers, see [`auth`]),
//! `429`/`503` retried after `Retry-After`
//! (a rate-limited registry is waited for by every request to it), and answers cached by `ETag`
//! in a file so a poll of many unchanged images costs one revalidation each.
//! The only module that speaks the registry API.

mod auth;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_core::images::reference::{ImageRef, is_loopback};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use auth::{Auths, Credential, load_auths};

/// The manifest media types berth accepts: an index answers for a multi-arch tag.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json";
const TRIES: u32 = 6;
const MAX_WAIT: Duration = Duration::from_secs(60);
const MAX_PAGES: usize = 200;

/// Why a registry gave no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    #[error("{registry}: {what}")]
    Refused { registry: String, what: String },
    #[error("{registry}: unreachable: {what}")]
    Unreachable { registry: String, what: String },
}

/// One cached answer: the validator and what it validated.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Cached {
    etag: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    next: Option<String>,
}

/// A registry client for one run: credentials, tokens, rate-limit pauses, the ETag cache.
pub struct Client {
    http: reqwest::Client,
    auths: Auths,
    tokens: Mutex<HashMap<String, String>>,
    paused: Mutex<HashMap<String, Instant>>,
    cache: Mutex<HashMap<String, Cached>>,
    cache_file: Option<PathBuf>,
    /// Requests sent and answers served from the cache (`304`), for `--json` and tests.
    pub stats: Mutex<(u64, u64)>,
    /// Tag lists read in this run, by registry and repository: services sharing a repository
    /// ask once per poll (registries send tag lists without an `ETag`).
    listed: Mutex<HashMap<String, Vec<String>>>,
}

impl Client {
    /// A client with `auths` (see [`load_auths`]) caching answers in `cache_file` (if any).
    pub fn new(auths: Auths, cache_file: Option<PathBuf>) -> Client {
        let cache = cache_file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Client {
            http,
            auths,
            tokens: Default::default(),
            paused: Default::default(),
            cache: Mutex::new(cache),
            cache_file,
            stats: Default::default(),
            listed: Default::default(),
        }
    }

    /// Write the ETag cache back (best effort: a cache that cannot be written costs requests only).
    pub fn save(&self) {
        let Some(f) = &self.cache_file else { return };
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(text) = serde_json::to_string(&*cache) {
            let tmp = f.with_extension("tmp");
            if std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, f)).is_err() {
                tracing::debug!("could not write the registry cache {}", f.display());
            }
        }
    }

    fn base(registry: &str) -> String {
        match registry {
            "docker.io" => "https://registry-1.docker.io".into(),
            r if is_loopback(r) => format!("http://{r}"),
            r => format!("https://{r}"),
        }
    }

    /// Every tag of `image`, following `Link` pages.
    pub async fn tags(&self, image: &ImageRef) -> Result<Vec<String>, RegistryError> {
        let key = format!("{}/{}", image.registry, image.repository);
        if let Some(t) = self.listed.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(t.clone());
        }
        let tags = self.list_tags(image).await?;
        self.listed.lock().unwrap_or_else(|p| p.into_inner()).insert(key, tags.clone());
        Ok(tags)
    }

    async fn list_tags(&self, image: &ImageRef) -> Result<Vec<String>, RegistryError> {
        let base = Self::base(&image.registry);
        let mut url = format!("{base}/v2/{}/tags/list?n=1000", image.repository);
        let mut tags = Vec::new();
        for _ in 0..MAX_PAGES {
            let page = self.fetch(image, Method::GET, &url, None).await?;
            let doc: Value = serde_json::from_str(&page.body).map_err(|e| refused(image, format!("tag list: {e}")))?;
            if let Some(list) = doc.get("tags").and_then(Value::as_array) {
                tags.extend(list.iter().filter_map(Value::as_str).map(str::to_string));
            }
            match page.next {
                Some(n) if n.starts_with('/') => url = format!("{base}{n}"),
                Some(n) => url = n,
                None => return Ok(tags),
            }
        }
        Ok(tags)
    }

    /// The digest `tag` points at (an index's for a multi-arch image, as `docker pull` pins it).
    pub async fn digest(&self, image: &ImageRef, tag: &str) -> Result<String, RegistryError> {
        let url = format!("{}/v2/{}/manifests/{tag}", Self::base(&image.registry), image.repository);
        let head = self.fetch(image, Method::HEAD, &url, Some(MANIFEST_TYPES)).await?;
        if let Some(d) = head.digest {
            return Ok(d);
        }
        // No `Docker-Content-Digest` on HEAD: the digest of the manifest's bytes.
        let got = self.fetch(image, Method::GET, &url, Some(MANIFEST_TYPES)).await?;
        Ok(got.digest.unwrap_or_else(|| {
            use sha2::Digest;
            format!("sha256:{}", hex::encode(sha2::Sha256::digest(got.body.as_bytes())))
        }))
    }

    /// When the image `tag` names was built (its config's `created`), if it says.
    pub async fn created(&self, image: &ImageRef, tag: &str) -> Result<Option<jiff::Timestamp>, RegistryError> {
        let cfg = self.config(image, tag).await?;
        Ok(cfg.as_ref().and_then(|c| c.get("created")).and_then(Value::as_str).and_then(|c| c.parse().ok()))
    }

    /// Where to read about `tag`: the image's `org.opencontainers.image.url` or `.source` label
    /// (an http(s) URL), for the update's commit message.
    pub async fn notes_link(&self, image: &ImageRef, tag: &str) -> Result<Option<String>, RegistryError> {
        let cfg = self.config(image, tag).await?;
        let labels = cfg.as_ref().and_then(|c| c.pointer("/config/Labels"));
        Ok(["org.opencontainers.image.url", "org.opencontainers.image.source"]
            .iter()
            .find_map(|k| labels.and_then(|l| l.get(*k)).and_then(Value::as_str))
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            .map(str::to_string))
    }

    /// The image config of `tag` (linux/amd64 of an index, else its first image).
    async fn config(&self, image: &ImageRef, tag: &str) -> Result<Option<Value>, RegistryError> {
        let base = Self::base(&image.registry);
        let url = format!("{base}/v2/{}/manifests/{tag}", image.repository);
        let mut doc: Value = self.json(image, &url, Some(MANIFEST_TYPES)).await?;
        if let Some(list) = doc.get("manifests").and_then(Value::as_array) {
            let platform = |m: &&Value, os: &str, arch: &str| {
                m.pointer("/platform/os").and_then(Value::as_str) == Some(os)
                    && m.pointer("/platform/architecture").and_then(Value::as_str) == Some(arch)
            };
            let pick = list.iter().find(|m| platform(m, "linux", "amd64")).or_else(|| list.first());
            let Some(d) = pick.and_then(|m| m.get("digest")).and_then(Value::as_str) else { return Ok(None) };
            let url = format!("{base}/v2/{}/manifests/{d}", image.repository);
            doc = self.json(image, &url, Some(MANIFEST_TYPES)).await?;
        }
        let Some(config) = doc.pointer("/config/digest").and_then(Value::as_str) else { return Ok(None) };
        let url = format!("{base}/v2/{}/blobs/{config}", image.repository);
        self.json(image, &url, None).await.map(Some)
    }

    async fn json(&self, image: &ImageRef, url: &str, accept: Option<&str>) -> Result<Value, RegistryError> {
        let got = self.fetch(image, Method::GET, url, accept).await?;
        serde_json::from_str(&got.body).map_err(|e| refused(image, format!("{url}: {e}")))
    }

    /// One request with auth, retries of rate limits and the ETag cache.
    async fn fetch(
        &self,
        image: &ImageRef,
        method: Method,
        url: &str,
        accept: Option<&str>,
    ) -> Result<Cached, RegistryError> {
        let registry = &image.registry;
        let key = format!("{method} {url}");
        let cached = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned();
        let mut auth_tried = false;
        for attempt in 0..TRIES {
            self.wait_if_paused(registry).await;
            let mut req = self.http.request(method.clone(), url);
            if let Some(a) = accept {
                req = req.header("Accept", a);
            }
            if let Some(c) = &cached {
                req = req.header("If-None-Match", &c.etag);
            }
            if let Some(h) = self.authorization(registry).await {
                req = req.header("Authorization", h);
            }
            self.stats.lock().unwrap_or_else(|p| p.into_inner()).0 += 1;
            let res = req.send().await.map_err(|e| RegistryError::Unreachable {
                registry: registry.clone(),
                what: e.without_url().to_string(),
            })?;
            let status = res.status();
            let headers = res.headers().clone();
            match status {
                StatusCode::NOT_MODIFIED if cached.is_some() => {
                    self.stats.lock().unwrap_or_else(|p| p.into_inner()).1 += 1;
                    return Ok(cached.unwrap_or_default());
                }
                StatusCode::UNAUTHORIZED if !auth_tried => {
                    auth_tried = true;
                    self.authenticate(image, &headers).await?;
                }
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE if attempt + 1 < TRIES => {
                    let wait = retry_after(&headers).unwrap_or(Duration::from_millis(500 << attempt)).min(MAX_WAIT);
                    tracing::info!("{registry} answered {status}: waiting {}s", wait.as_secs_f32());
                    self.paused
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(registry.clone(), Instant::now() + wait);
                }
                s if s.is_success() => {
                    let text = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
                    let body = res.text().await.map_err(|e| RegistryError::Unreachable {
                        registry: registry.clone(),
                        what: e.without_url().to_string(),
                    })?;
                    let got = Cached {
                        etag: text("etag").unwrap_or_default(),
                        body,
                        digest: text("docker-content-digest"),
                        next: text("link").and_then(|l| next_link(&l)),
                    };
                    if !got.etag.is_empty() {
                        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(key, got.clone());
                    }
                    return Ok(got);
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    let has = self.auths.known(registry).await.is_some();
                    let help = if has {
                        "the credentials berth has for it were refused"
                    } else {
                        "no credentials for it: log in with `docker login` or set the server's registry_auth"
                    };
                    return Err(refused(image, format!("{status} for {}: {help}", image.repository)));
                }
                StatusCode::NOT_FOUND => return Err(refused(image, format!("{} not found", strip_base(url)))),
                s => return Err(refused(image, format!("{s} for {}", strip_base(url)))),
            }
        }
        Err(refused(image, format!("still rate-limited after {TRIES} tries")))
    }

    async fn wait_if_paused(&self, registry: &str) {
        let until = self.paused.lock().unwrap_or_else(|p| p.into_inner()).get(registry).copied();
        if let Some(u) = until {
            tokio::time::sleep_until(u.into()).await;
        }
    }

    /// The `Authorization` to send: a bearer token got for this registry, else basic credentials
    /// known without asking a helper (a helper is asked on the first challenge).
    async fn authorization(&self, registry: &str) -> Option<String> {
        if let Some(t) = self.tokens.lock().unwrap_or_else(|p| p.into_inner()).get(registry) {
            return Some(format!("Bearer {t}"));
        }
        match self.auths.known(registry).await {
            Some(Credential::Basic(a)) => Some(format!("Basic {a}")),
            _ => None,
        }
    }

    /// Answer a `401`'s challenge: basic needs the credentials (sent on the retry), bearer a token
    /// from the realm (asked with the credentials when berth has them, else anonymously; an
    /// identity token is traded in an OAuth2 `refresh_token` POST).
    async fn authenticate(&self, image: &ImageRef, headers: &HeaderMap) -> Result<(), RegistryError> {
        let cred = self.auths.get(&image.registry).await;
        let challenge = headers.get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("");
        let Some(params) = challenge.strip_prefix("Bearer ").or_else(|| challenge.strip_prefix("bearer ")) else {
            if let Some(Credential::Identity(_)) = cred {
                tracing::warn!(
                    "{}: berth has an identity token for it, which basic auth cannot send: log in with a password",
                    image.registry
                );
            }
            return Ok(());
        };
        let p = parse_challenge(params);
        let realm = p.get("realm").ok_or_else(|| refused(image, "a bearer challenge without realm".into()))?;
        let scope = p.get("scope").cloned().unwrap_or_else(|| format!("repository:{}:pull", image.repository));
        let service = p.get("service").map(String::as_str).unwrap_or("");
        let req = match cred {
            Some(Credential::Identity(t)) => self.http.post(realm).form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", t.as_str()),
                ("service", service),
                ("scope", scope.as_str()),
                ("client_id", "berth"),
            ]),
            cred => {
                let mut req = self.http.get(realm).query(&[("scope", scope.as_str())]);
                if !service.is_empty() {
                    req = req.query(&[("service", service)]);
                }
                if let Some(Credential::Basic(a)) = cred {
                    req = req.header("Authorization", format!("Basic {a}"));
                }
                req
            }
        };
        let res = req.send().await.map_err(|e| RegistryError::Unreachable {
            registry: image.registry.clone(),
            what: format!("token: {}", e.without_url()),
        })?;
        if !res.status().is_success() {
            return Err(refused(image, format!("the token service answered {}", res.status())));
        }
        let doc: Value = res.json().await.map_err(|e| refused(image, format!("token: {e}")))?;
        let token = doc
            .get("token")
            .or_else(|| doc.get("access_token"))
            .and_then(Value::as_str)
            .ok_or_else(|| refused(image, "the token service gave no token".into()))?;
        crate::redact::register([token]);
        self.tokens.lock().unwrap_or_else(|p| p.into_inner()).insert(image.registry.clone(), token.to_string());
        Ok(())
    }
}

fn refused(image: &ImageRef, what: String) -> RegistryError {
    RegistryError::Refused { registry: image.registry.clone(), what }
}

fn strip_base(url: &str) -> &str {
    url.find("/v2/").map(|i| &url[i..]).unwrap_or(url)
}

/// `Retry-After` in seconds, or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("retry-after").and_then(|v: &HeaderValue| v.to_str().ok())?.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = jiff::fmt::rfc2822::parse(v).ok()?.timestamp();
    let secs = at.as_second() - jiff::Timestamp::now().as_second();
    Some(Duration::from_secs(secs.max(0) as u64))
}

/// The `rel="next"` target of a `Link` header.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find(|p| p.contains("rel=\"next\"")).and_then(|p| {
        let s = p.find('<')? + 1;
        let e = p.find('>')?;
        Some(p[s..e].to_string())
    })
}

/// `realm="..",service="..",scope=".."` into its pairs.
fn parse_challenge(params: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = params.trim();
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_ascii_lowercase();
        rest = &rest[eq + 1..];
        let value = if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').unwrap_or(r.len());
            let v = &r[..end];
            rest = r.get(end + 1..).unwrap_or("");
            v
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            let v = &rest[..end];
            rest = &rest[end..];
            v
        };
        out.insert(key, value.to_string());
        rest = rest.trim_start_matches(',').trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_links_and_retry_after_parse() {
        let p = parse_challenge(
            r#"realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/redis:pull""#,
        );
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["scope"], "repository:library/redis:pull");
        assert_eq!(
            next_link(r#"</v2/x/tags/list?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/x/tags/list?last=b&n=2")
        );
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after", HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
    }
}
